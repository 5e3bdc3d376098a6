//! The file system steps a transaction takes: durable writes (temp file,
//! fsync, rename, directory fsync), directories made and removed, and files
//! reached through crontab(1) when featpkg may not write them directly.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{FileState, TxnError, io, test_point};
use crate::file_access::{self, FileAccess};
use crate::hash::{sha256_hex, sha256_hex_of};

/// Makes the entries of `dir` durable (a rename or create in it survives a power cut).
pub(super) fn fsync_dir(dir: &Path) -> Result<(), TxnError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// The directory `path` is in; `.` for a bare file name.
pub(super) fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` durably: temp file `temp` in the same directory, fsync,
/// mode and owner, rename, directory fsync. `point` is the test hook run between
/// the temp write and the rename.
pub(super) fn atomic_write(
    path: &Path,
    temp: &Path,
    state: &FileState,
    point: Option<&str>,
) -> Result<(), TxnError> {
    let _ = fs::remove_file(temp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(io(temp))?;
    f.write_all(&state.content).map_err(io(temp))?;
    f.sync_all().map_err(io(temp))?;
    let meta = f.metadata().map_err(io(temp))?;
    if meta.uid() != state.uid || meta.gid() != state.gid {
        std::os::unix::fs::chown(temp, Some(state.uid), Some(state.gid)).map_err(io(temp))?;
    }
    // After the chown, which clears set-uid/set-gid bits.
    fs::set_permissions(temp, fs::Permissions::from_mode(state.mode)).map_err(io(temp))?;
    drop(f);
    if let Some(point) = point {
        test_point(point)?;
    }
    fs::rename(temp, path).map_err(io(path))?;
    fsync_dir(parent(path))
}

/// Creates one directory with exactly `mode` (not masked by the umask), durably.
pub(super) fn make_dir(path: &Path, mode: u32) -> Result<(), TxnError> {
    fs::create_dir(path).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))?;
    fsync_dir(parent(path))
}

/// Removes a directory that must be empty, durably.
pub(super) fn remove_empty_dir(path: &Path) -> Result<(), TxnError> {
    fs::remove_dir(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::DirectoryNotEmpty => TxnError::DirNotEmpty(path.to_path_buf()),
        _ => io(path)(e),
    })?;
    fsync_dir(parent(path))
}

/// True for a file featpkg writes itself (serde leaves the default out of journals).
pub(super) fn is_direct(access: &FileAccess) -> bool {
    *access == FileAccess::Direct
}

/// Hash of the file at `path`, or None when it does not exist.
pub(super) fn current_hash(path: &Path, access: &FileAccess) -> Result<Option<String>, TxnError> {
    if let FileAccess::Crontab { program } = access {
        return Ok(file_access::read_crontab(program, path)?.map(|bytes| sha256_hex(&bytes)));
    }
    match fs::File::open(path) {
        Ok(file) => Ok(Some(sha256_hex_of(file).map_err(io(path))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `state` to the file at `path` the way `access` reaches it.
pub(super) fn write_file(
    path: &Path,
    temp: &Path,
    access: &FileAccess,
    state: &FileState,
    point: Option<&str>,
) -> Result<(), TxnError> {
    match access {
        FileAccess::Direct => atomic_write(path, temp, state, point),
        FileAccess::Crontab { program } => {
            // crontab(1) writes its own temp file and renames it; the hook
            // still runs before anything is installed.
            if let Some(point) = point {
                test_point(point)?;
            }
            Ok(file_access::write_crontab(program, path, &state.content)?)
        }
    }
}

/// Deletes the file at `path` the way `access` reaches it.
pub(super) fn remove_file(path: &Path, access: &FileAccess) -> Result<(), TxnError> {
    match access {
        FileAccess::Direct => {
            fs::remove_file(path).map_err(io(path))?;
            fsync_dir(parent(path))
        }
        FileAccess::Crontab { program } => Ok(file_access::remove_crontab(program, path)?),
    }
}

/// The temp file written beside `path` before the rename: `.<name>.featpkg-<txn_id>`
/// (hidden, unique to the transaction; the journal records it so recovery can remove it).
pub(super) fn temp_name(path: &Path, txn_id: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.featpkg-{txn_id}"))
}

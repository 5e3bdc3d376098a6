//! Opening a bundle a PBX extracted into its module directory: the same
//! manifest checks as for the archive, read from files that must be regular
//! files reached through real directories.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::manifest::{MANIFEST, check_features, check_listed, parse_manifest};
use super::open::MAX_TOTAL_BYTES;
use super::{Bundle, BundleError};
use crate::hash::sha256_hex;

/// Opens a bundle extracted into `dir` (a PBX module directory). `bundle.json`
/// must be a regular file there; every entry it lists must be a regular file
/// reached through real directories (no symbolic link anywhere on the way) with
/// the listed size and sha256. Files the manifest does not list (what the PBX
/// keeps beside the bundle: its database, its own files) are ignored. The size caps of an archive apply.
/// The bundle's "archive sha256" is the sha256 of its `bundle.json`, which pins
/// every entry.
pub(super) fn open_dir(dir: &Path) -> Result<Bundle, BundleError> {
    let bad = |entry: &str, rule: String| BundleError::DirEntry {
        dir: dir.to_path_buf(),
        entry: entry.to_string(),
        rule,
    };
    let manifest_bytes = match read_dir_entry(dir, MANIFEST, MAX_TOTAL_BYTES) {
        Ok(bytes) => bytes,
        Err(DirRead::Missing) => {
            return Err(BundleError::Manifest(format!(
                "missing from {}: this is not a featpkg bundle",
                dir.display()
            )));
        }
        Err(e) => return Err(bad(MANIFEST, e.to_string())),
    };
    let archive_sha256 = sha256_hex(&manifest_bytes);
    let manifest = parse_manifest(&manifest_bytes)?;
    let mut total: u64 = manifest_bytes.len() as u64;
    let mut files = BTreeMap::new();
    for listed in &manifest.entries {
        if listed.size > MAX_TOTAL_BYTES - total {
            return Err(bad(
                &listed.path,
                format!("the bundle's files add up past the {MAX_TOTAL_BYTES}-byte limit"),
            ));
        }
        let bytes = read_dir_entry(dir, &listed.path, listed.size)
            .map_err(|e| bad(&listed.path, e.to_string()))?;
        total += bytes.len() as u64;
        let file = check_listed(listed, bytes).map_err(|rule| bad(&listed.path, rule.into()))?;
        files.insert(listed.path.clone(), file);
    }
    check_features(&manifest, &files)?;
    Ok(Bundle {
        manifest,
        files,
        archive_sha256,
    })
}

/// Why an entry of an extracted bundle could not be read.
#[derive(Debug)]
enum DirRead {
    Missing,
    Symlink(String),
    NotRegular(String),
    TooBig(u64),
    Io(std::io::Error),
}

impl std::fmt::Display for DirRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirRead::Missing => {
                write!(f, "listed in the manifest but missing from the directory")
            }
            DirRead::Symlink(at) => write!(
                f,
                "{at} is a symbolic link; a bundle holds only regular files and directories"
            ),
            DirRead::NotRegular(at) => write!(f, "{at} is not a regular file or directory"),
            DirRead::TooBig(limit) => {
                write!(
                    f,
                    "size does not match the manifest (larger than {limit} bytes)"
                )
            }
            DirRead::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Reads `rel` (already a checked entry name) under `dir`, at most `limit` bytes:
/// every directory on the way must be a real directory and the file a regular
/// file, none of them a symbolic link.
fn read_dir_entry(dir: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, DirRead> {
    use std::os::unix::fs::OpenOptionsExt;
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = dir.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let shown = parts[..=i].join("/");
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(DirRead::Missing),
            Err(e) => return Err(DirRead::Io(e)),
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err(DirRead::Symlink(shown));
        }
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return Err(DirRead::NotRegular(shown));
        }
    }
    // O_NOFOLLOW: a file swapped for a link since the check is refused, not followed.
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    const O_NOFOLLOW: i32 = 0o100_000;
    #[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
    const O_NOFOLLOW: i32 = 0o400_000;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(40) => DirRead::Symlink(rel.to_string()), // ELOOP
            _ => DirRead::Io(e),
        })?;
    let meta = file.metadata().map_err(DirRead::Io)?;
    if !meta.is_file() {
        return Err(DirRead::NotRegular(rel.to_string()));
    }
    if meta.len() > limit {
        return Err(DirRead::TooBig(limit));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(DirRead::Io)?;
    if bytes.len() as u64 > limit {
        return Err(DirRead::TooBig(limit));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::bundle::fixture::source;
    use crate::bundle::{build, open};

    /// The built demo bundle extracted into a directory, as a PBX does it.
    fn extracted() -> (tempfile::TempDir, PathBuf) {
        let (d, opts) = source();
        let path = build(&opts).unwrap();
        let dir = d.path().join("module");
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        zip.extract(&dir).unwrap();
        (d, dir)
    }

    fn open_dir_err(change: impl FnOnce(&Path)) -> String {
        let (_d, dir) = extracted();
        change(&dir);
        open(&dir).unwrap_err().to_string()
    }

    #[test]
    fn an_extracted_directory_opens_like_the_archive() {
        let (d, dir) = extracted();
        let zipped = open(&d.path().join("dist/demo-1.2.0.zip")).unwrap();
        // What the PBX adds beside the bundle's files is not our business.
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(dir.join("db/module.db"), "sqlite").unwrap();
        std::fs::write(dir.join("module.sig"), "sig").unwrap();
        let opened = open(&dir).unwrap();
        assert_eq!(opened.manifest(), zipped.manifest());
        assert_eq!(opened.files, zipped.files);
        assert_eq!(
            opened.archive_sha256(),
            sha256_hex(&std::fs::read(dir.join(MANIFEST)).unwrap())
        );
    }

    #[test]
    fn a_tampered_extracted_directory_is_refused() {
        let conf = "features/demo/extensions.conf";
        let err = open_dir_err(|dir| std::fs::write(dir.join(conf), "[y]\n").unwrap());
        assert!(
            err.ends_with(&format!(
                "module: {conf}: sha256 does not match the manifest"
            )),
            "{err}"
        );
        let err = open_dir_err(|dir| std::fs::write(dir.join(conf), "[x]\n\n").unwrap());
        assert!(
            err.ends_with(&format!(
                "{conf}: size does not match the manifest (larger than 4 bytes)"
            )),
            "{err}"
        );
        let err = open_dir_err(|dir| std::fs::remove_file(dir.join(conf)).unwrap());
        assert!(
            err.ends_with(&format!(
                "{conf}: listed in the manifest but missing from the directory"
            )),
            "{err}"
        );
        let err = open_dir_err(|dir| std::fs::remove_file(dir.join(MANIFEST)).unwrap());
        assert!(err.contains("not a featpkg bundle"), "{err}");
    }

    #[test]
    fn symbolic_links_in_an_extracted_directory_are_refused() {
        let conf = "features/demo/extensions.conf";
        // A link to a file with exactly the right bytes is still refused.
        let err = open_dir_err(|dir| {
            let real = dir.parent().unwrap().join("elsewhere.conf");
            std::fs::rename(dir.join(conf), &real).unwrap();
            std::os::unix::fs::symlink(&real, dir.join(conf)).unwrap();
        });
        assert!(
            err.ends_with(&format!("{conf}: {conf} is a symbolic link; a bundle holds only regular files and directories")),
            "{err}"
        );
        // So is a linked directory on the way to an entry.
        let err = open_dir_err(|dir| {
            let real = dir.parent().unwrap().join("features-elsewhere");
            std::fs::rename(dir.join("features"), &real).unwrap();
            std::os::unix::fs::symlink(&real, dir.join("features")).unwrap();
        });
        assert!(err.contains(": features is a symbolic link"), "{err}");
        let err = open_dir_err(|dir| {
            std::fs::remove_file(dir.join(conf)).unwrap();
            std::fs::create_dir(dir.join(conf)).unwrap();
        });
        assert!(err.ends_with("is not a regular file or directory"), "{err}");
    }

    #[test]
    fn manifest_listing_a_path_outside_is_refused_in_a_directory() {
        let err = open_dir_err(|dir| {
            let text = std::fs::read_to_string(dir.join(MANIFEST))
                .unwrap()
                .replace("\"features/demo/extensions.conf\"", "\"../outside.conf\"");
            std::fs::write(dir.join(MANIFEST), text).unwrap();
        });
        assert_eq!(
            err,
            "bundle manifest bundle.json: entry \"../outside.conf\": path contains \"..\""
        );
    }
}

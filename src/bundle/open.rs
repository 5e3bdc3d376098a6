//! Opening a bundle as hostile input: the zip archive here, the directory a PBX
//! extracted it into in [`super::extracted`]. Every entry is read within the
//! caps below and checked against the manifest before anything uses it.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::Path;

use super::extracted::open_dir;
use super::manifest::{MANIFEST, Manifest, check_entry_name, check_features, check_listed};
use super::{Bundle, BundleError, BundleFile, io};
use crate::hash::sha256_hex;

/// Cap on the bundle's files added up, uncompressed.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// Cap on the number of entries.
pub const MAX_ENTRIES: usize = 10_000;
/// Cap on the archive file's size.
pub const MAX_ARCHIVE_BYTES: u64 = 256 * 1024 * 1024;
/// Cap on an entry's expansion ratio (above 1 MiB uncompressed).
pub const MAX_RATIO: u64 = 200;

/// Opens and verifies a bundle: the zip archive, or the directory a PBX
/// extracted it into (its module directory; the PBX may delete the zip), with
/// the same manifest checks and the files the PBX added ignored. Nothing in it
/// is trusted until checked.
pub fn open(path: &Path) -> Result<Bundle, BundleError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        return open_dir(path);
    }
    open_zip(path, &meta)
}

/// Opens and verifies a bundle zip archive.
fn open_zip(path: &Path, meta: &std::fs::Metadata) -> Result<Bundle, BundleError> {
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(BundleError::Archive(format!(
            "{} is larger than {MAX_ARCHIVE_BYTES} bytes",
            path.display()
        )));
    }
    let data = std::fs::read(path).map_err(io(path))?;
    let archive_sha256 = sha256_hex(&data);
    let mut zip = ZipArchive::new(Cursor::new(data)).map_err(not_zip(path))?;
    let mut raw = read_entries(&mut zip, path)?;
    let manifest_bytes = raw
        .remove(MANIFEST)
        .ok_or_else(|| BundleError::Manifest("missing: this is not a featpkg bundle".into()))?;
    let manifest = super::manifest::parse_manifest(&manifest_bytes)?;
    let files = check_against_manifest(&manifest, raw)?;
    check_features(&manifest, &files)?;
    Ok(Bundle {
        manifest,
        files,
        archive_sha256,
    })
}

type ZipArchive = zip::ZipArchive<Cursor<Vec<u8>>>;

/// Maps a zip reader's error on `archive` to [`BundleError::NotZip`].
fn not_zip(archive: &Path) -> impl Fn(zip::result::ZipError) -> BundleError + '_ {
    move |e| BundleError::NotZip {
        archive: archive.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every file entry of `zip` (of the file `archive`) by name, each once,
/// within the caps; directories are skipped (they carry nothing).
fn read_entries(
    zip: &mut ZipArchive,
    archive: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    if zip.len() > MAX_ENTRIES {
        return Err(BundleError::Archive(format!(
            "{} entries, more than {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let mut raw = BTreeMap::new();
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(not_zip(archive))?;
        let Some((name, bytes)) = read_entry(&mut entry, MAX_TOTAL_BYTES - total)? else {
            continue;
        };
        total += bytes.len() as u64;
        if raw.insert(name.clone(), bytes).is_some() {
            return Err(BundleError::Entry {
                entry: name,
                rule: "appears twice in the archive".into(),
            });
        }
    }
    Ok(raw)
}

/// One entry's checked name and its bytes, at most `remaining` of them; `None`
/// for a directory. Refuses links, special files and zip bombs.
fn read_entry(
    entry: &mut zip::read::ZipFile<'_, Cursor<Vec<u8>>>,
    remaining: u64,
) -> Result<Option<(String, Vec<u8>)>, BundleError> {
    let name = String::from_utf8(entry.name_raw().to_vec()).map_err(|_| BundleError::Entry {
        entry: String::from_utf8_lossy(entry.name_raw()).into_owned(),
        rule: "name is not UTF-8".into(),
    })?;
    let bad = |rule: String| BundleError::Entry {
        entry: name.clone(),
        rule,
    };
    check_entry_name(&name).map_err(bad)?;
    let unix = entry.unix_mode().unwrap_or(0o100644);
    let kind = unix & 0o170000;
    if entry.is_symlink() || kind == 0o120000 {
        return Err(bad(
            "is a symbolic link; bundles may hold only regular files".into(),
        ));
    }
    if entry.is_dir() || name.ends_with('/') {
        return Ok(None); // its files are checked one by one
    }
    if kind != 0 && kind != 0o100000 {
        return Err(bad(format!("is not a regular file (mode {unix:o})")));
    }
    let compressed = entry.compressed_size();
    let mut bytes = Vec::new();
    entry
        .take(remaining + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > remaining {
        return Err(bad(format!(
            "expands past the {MAX_TOTAL_BYTES}-byte limit for a bundle"
        )));
    }
    if bytes.len() as u64 > 1024 * 1024 && bytes.len() as u64 > compressed.max(1) * MAX_RATIO {
        return Err(bad(format!(
            "compression ratio above {MAX_RATIO}:1 (zip bomb?)"
        )));
    }
    Ok(Some((name, bytes)))
}

/// The archive's entries checked against the manifest: each listed entry
/// present with its size and sha256, and nothing the manifest does not list.
fn check_against_manifest(
    manifest: &Manifest,
    mut raw: BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, BundleFile>, BundleError> {
    let mut files = BTreeMap::new();
    for listed in &manifest.entries {
        let bad = |rule: &str| BundleError::Entry {
            entry: listed.path.clone(),
            rule: rule.to_string(),
        };
        let bytes = raw
            .remove(&listed.path)
            .ok_or_else(|| bad("listed in the manifest but missing from the archive"))?;
        files.insert(
            listed.path.clone(),
            check_listed(listed, bytes).map_err(bad)?,
        );
    }
    if let Some(extra) = raw.keys().next() {
        return Err(BundleError::Entry {
            entry: extra.clone(),
            rule: "is not listed in the manifest".into(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::bundle::build;
    use crate::bundle::fixture::source;

    /// Rewrites the built bundle with `change` applied to its (name, bytes, mode) list.
    fn tampered(
        change: impl FnOnce(&mut Vec<(String, Vec<u8>, u32)>),
    ) -> (tempfile::TempDir, PathBuf) {
        let (d, opts) = source();
        let path = build(&opts).unwrap();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut entries = Vec::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            entries.push((
                f.name().unwrap().to_string(),
                b,
                f.unix_mode().unwrap_or(0o644),
            ));
        }
        change(&mut entries);
        let out = d.path().join("bad.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
        for (name, bytes, mode) in entries {
            let o = zip::write::SimpleFileOptions::default().unix_permissions(mode);
            if mode & 0o170000 == 0o120000 {
                w.add_symlink(name, String::from_utf8(bytes).unwrap(), o)
                    .unwrap();
            } else {
                w.start_file(name, o).unwrap();
                w.write_all(&bytes).unwrap();
            }
        }
        w.finish().unwrap();
        (d, out)
    }

    fn open_err(change: impl FnOnce(&mut Vec<(String, Vec<u8>, u32)>)) -> String {
        let (_d, path) = tampered(change);
        open(&path).unwrap_err().to_string()
    }

    #[test]
    fn hostile_archives_are_refused() {
        assert_eq!(
            open_err(|e| e.push(("../../etc/passwd".into(), b"x".to_vec(), 0o644))),
            "bundle entry \"../../etc/passwd\": path contains \"..\""
        );
        assert_eq!(
            open_err(|e| e.push(("/etc/passwd".into(), b"x".to_vec(), 0o644))),
            "bundle entry \"/etc/passwd\": absolute path"
        );
        assert!(
            open_err(|e| e.push(("features/demo/l".into(), b"/etc/passwd".to_vec(), 0o120777)))
                .contains("\"features/demo/l\": is a symbolic link")
        );
        assert_eq!(
            open_err(|e| e.push(("features/demo/extra".into(), b"x".to_vec(), 0o644))),
            "bundle entry \"features/demo/extra\": is not listed in the manifest"
        );
        assert_eq!(
            open_err(|e| e.retain(|x| x.0 != "features/demo/extensions.conf")),
            "bundle entry \"features/demo/extensions.conf\": listed in the manifest but missing from the archive"
        );
        assert_eq!(
            open_err(|e| e
                .iter_mut()
                .find(|x| x.0 == "features/demo/extensions.conf")
                .unwrap()
                .1 = b"[y]\n".to_vec()),
            "bundle entry \"features/demo/extensions.conf\": sha256 does not match the manifest"
        );
        assert_eq!(
            open_err(|e| e
                .iter_mut()
                .find(|x| x.0 == "features/demo/extensions.conf")
                .unwrap()
                .1 = b"[x]\n\n".to_vec()),
            "bundle entry \"features/demo/extensions.conf\": size does not match the manifest"
        );
        assert!(
            open_err(|e| e.iter_mut().find(|x| x.0 == MANIFEST).unwrap().1 =
                br#"{"name":"demo"}"#.to_vec())
            .starts_with("bundle manifest bundle.json: missing field")
        );
        assert!(open_err(|e| e.retain(|x| x.0 != MANIFEST)).contains("not a featpkg bundle"));
    }

    #[test]
    fn zip_bomb_is_refused() {
        let err = open_err(|e| {
            e.push((
                "features/demo/bomb".into(),
                vec![0u8; 8 * 1024 * 1024],
                0o644,
            ))
        });
        assert!(err.contains("compression ratio"), "{err}");
    }

    #[test]
    fn setuid_and_group_write_are_stripped() {
        let (_d, path) = tampered(|e| {
            let m = e.iter_mut().find(|x| x.0 == MANIFEST).unwrap();
            let text = String::from_utf8(m.1.clone())
                .unwrap()
                .replace("\"0755\"", "\"6777\"");
            m.1 = text.into_bytes();
        });
        assert_eq!(
            open(&path)
                .unwrap()
                .file("bin/x86_64-linux/featpkg")
                .unwrap()
                .mode,
            0o755
        );
    }
}

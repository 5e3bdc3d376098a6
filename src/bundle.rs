//! The bundle: one zip archive with a manifest (`bundle.json`) listing every other
//! entry with sha256, size and mode. Built reproducibly (sorted entries, fixed
//! timestamps from `SOURCE_DATE_EPOCH`, fixed modes and compression); opened as
//! hostile input: every entry is checked against the manifest before anything
//! uses it (reference/installers.md §6).
//!
//! Archive layout: `bundle.json`; `module.json` (MikoPBX) and `module.xml`
//! (FreePBX) at the root; `bin/<arch>-linux/<name>` static binaries (0755);
//! `features/<id>/…` definitions and fragments (0644); `ui-assets/…`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::sha256_hex;

/// Name of the manifest entry.
pub const MANIFEST: &str = "bundle.json";
/// Caps for opening: total uncompressed bytes, entries, archive size, expansion ratio.
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 10_000;
pub const MAX_ARCHIVE_BYTES: u64 = 256 * 1024 * 1024;
pub const MAX_RATIO: u64 = 200;

/// Why a build or an open failed; names the entry or file and the rule.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error(
        "binary {path}: {message} (the bundle ships static x86_64 Linux binaries: run `bash .ci/build-static`)"
    )]
    NotStatic { path: PathBuf, message: String },
    #[error("{archive}: not a readable zip archive: {message}")]
    NotZip { archive: PathBuf, message: String },
    #[error("bundle entry {entry:?}: {rule}")]
    Entry { entry: String, rule: String },
    #[error("bundle manifest {MANIFEST}: {0}")]
    Manifest(String),
    #[error("bundle archive: {0}")]
    Archive(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Source-side bundle description (`module-manifest/bundle.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleMeta {
    name: String,
    version: String,
    description: String,
    binaries: Vec<String>,
}

/// The manifest inside the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Feature ids (directories under `features/`).
    pub features: Vec<String>,
    pub entries: Vec<ManifestEntry>,
}

/// One archive entry as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Octal permission bits as text, e.g. "0755".
    pub mode: String,
}

/// A verified entry's bytes and sanitised mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// An opened, fully verified bundle (entries held in memory; bundles are small).
#[derive(Debug, Clone)]
pub struct Bundle {
    manifest: Manifest,
    files: BTreeMap<String, BundleFile>,
    archive_sha256: String,
}

impl Bundle {
    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A verified entry by archive path.
    pub fn file(&self, path: &str) -> Option<&BundleFile> {
        self.files.get(path)
    }

    /// Entries whose path starts with `prefix`.
    pub fn files_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BundleFile)> + 'a {
        self.files
            .iter()
            .filter(move |(p, _)| p.starts_with(prefix))
            .map(|(p, f)| (p.as_str(), f))
    }

    /// sha256 of the archive file itself.
    pub fn archive_sha256(&self) -> &str {
        &self.archive_sha256
    }
}

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Repository root with `module-manifest/`, `packaging/features/`, `ui-assets/`.
    pub source_dir: PathBuf,
    /// Directory with the static binaries named in bundle.json.
    pub bin_dir: PathBuf,
    pub out_dir: PathBuf,
    /// Unix seconds for every entry's timestamp (else 1980-01-01, zip's epoch).
    pub source_date_epoch: Option<u64>,
}

/// Checks that `bytes` is a static ELF64 x86_64 executable (no PT_INTERP program header).
pub fn check_static_elf(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    if u16_at(18) != 62 {
        return Err(format!("machine {} is not x86_64", u16_at(18)));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    if phentsize < 56 {
        return Err("bad program header size".into());
    }
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        if off + 4 > bytes.len() {
            return Err("program headers run past the end of the file".into());
        }
        if u32_at(off) == 3 {
            return Err("dynamically linked (has an ELF interpreter, PT_INTERP)".into());
        }
    }
    Ok(())
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), BundleError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ty = entry.file_type().map_err(io(&path))?;
        let rel = format!("{prefix}{name}");
        if ty.is_dir() {
            walk(&path, &format!("{rel}/"), out)?;
        } else if ty.is_file() {
            out.push((rel, path));
        } else {
            return Err(BundleError::Source {
                path,
                message: "only regular files and directories can go into a bundle (no links)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Zip (DOS) timestamp for `epoch`, clamped to zip's 1980..2107 range.
fn zip_time(epoch: Option<u64>) -> zip::DateTime {
    let secs = epoch
        .unwrap_or(315_532_800)
        .clamp(315_532_800, 4_354_819_198) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    zip::DateTime::from_date_and_time(
        y as u16,
        mo as u8,
        d as u8,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
    )
    .unwrap_or_default()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
}

/// Builds `<out_dir>/<name>-<version>.zip` and returns its path.
pub fn build(opts: &BuildOptions) -> Result<PathBuf, BundleError> {
    let meta_path = opts.source_dir.join("module-manifest/bundle.json");
    let meta_bytes = std::fs::read(&meta_path).map_err(io(&meta_path))?;
    let meta: BundleMeta =
        serde_json::from_slice(&meta_bytes).map_err(|e| BundleError::Source {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
    if !valid_name(&meta.name) || !valid_version(&meta.version) {
        return Err(BundleError::Source {
            path: meta_path,
            message: "name must be [a-z0-9-]+ and version [A-Za-z0-9.+-]+".into(),
        });
    }
    // (archive path, bytes, mode)
    let mut entries: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for pbx_manifest in ["module.json", "module.xml"] {
        let path = opts.source_dir.join("module-manifest").join(pbx_manifest);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        entries.push((
            pbx_manifest.to_string(),
            text.replace("%VERSION%", &meta.version).into_bytes(),
            0o644,
        ));
    }
    let features_dir = opts.source_dir.join("packaging/features");
    let mut feature_files = Vec::new();
    walk(&features_dir, "features/", &mut feature_files)?;
    let mut features = BTreeSet::new();
    for (rel, path) in feature_files {
        if let Some(id) = rel
            .strip_prefix("features/")
            .and_then(|r| r.strip_suffix("/feature.json"))
        {
            features.insert(id.to_string());
        }
        entries.push((rel, std::fs::read(&path).map_err(io(&path))?, 0o644));
    }
    let ui = opts.source_dir.join("ui-assets");
    if ui.is_dir() {
        let mut ui_files = Vec::new();
        walk(&ui, "ui-assets/", &mut ui_files)?;
        for (rel, path) in ui_files {
            entries.push((rel, std::fs::read(&path).map_err(io(&path))?, 0o644));
        }
    }
    for name in &meta.binaries {
        let path = opts.bin_dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| BundleError::NotStatic {
            path: path.clone(),
            message: e.to_string(),
        })?;
        check_static_elf(&bytes).map_err(|message| BundleError::NotStatic {
            path: path.clone(),
            message,
        })?;
        entries.push((format!("bin/x86_64-linux/{name}"), bytes, 0o755));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let manifest = Manifest {
        name: meta.name.clone(),
        version: meta.version.clone(),
        description: meta.description.clone(),
        features: features.into_iter().collect(),
        entries: entries
            .iter()
            .map(|(path, bytes, mode)| ManifestEntry {
                path: path.clone(),
                sha256: sha256_hex(bytes),
                size: bytes.len() as u64,
                mode: format!("{mode:04o}"),
            })
            .collect(),
    };
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    manifest_bytes.push(b'\n');
    entries.push((MANIFEST.to_string(), manifest_bytes, 0o644));
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    std::fs::create_dir_all(&opts.out_dir).map_err(io(&opts.out_dir))?;
    let out = opts
        .out_dir
        .join(format!("{}-{}.zip", meta.name, meta.version));
    let tmp = opts
        .out_dir
        .join(format!(".{}-{}.zip.tmp", meta.name, meta.version));
    let time = zip_time(opts.source_date_epoch);
    {
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut zip = zip::ZipWriter::new(file);
        for (path, bytes, mode) in &entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(6))
                .last_modified_time(time)
                .unix_permissions(*mode);
            zip.start_file(path.as_str(), options)
                .map_err(|e| BundleError::Archive(format!("writing {path}: {e}")))?;
            zip.write_all(bytes).map_err(io(&tmp))?;
        }
        let file = zip
            .finish()
            .map_err(|e| BundleError::Archive(format!("finishing {}: {e}", tmp.display())))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &out).map_err(io(&out))?;
    Ok(out)
}

/// Checks an entry name: relative, plain components, no `..`, no backslash or NUL.
fn check_entry_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    if name.contains('\\') || name.contains('\0') {
        return Err("backslash or NUL in the name".into());
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        if part == ".." {
            return Err("path contains \"..\"".into());
        }
        if part.is_empty() || part == "." {
            return Err("empty or \".\" path component".into());
        }
    }
    Ok(())
}

/// Opens and verifies a bundle archive. Nothing in it is trusted until checked.
pub fn open(path: &Path) -> Result<Bundle, BundleError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(BundleError::Archive(format!(
            "{} is larger than {MAX_ARCHIVE_BYTES} bytes",
            path.display()
        )));
    }
    let data = std::fs::read(path).map_err(io(path))?;
    let archive_sha256 = sha256_hex(&data);
    let not_zip = |e: zip::result::ZipError| BundleError::NotZip {
        archive: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(not_zip)?;
    if zip.len() > MAX_ENTRIES {
        return Err(BundleError::Archive(format!(
            "{} entries, more than {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let mut raw: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(not_zip)?;
        let name =
            String::from_utf8(entry.name_raw().to_vec()).map_err(|_| BundleError::Entry {
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
            continue; // directories carry nothing; their files are checked one by one
        }
        if kind != 0 && kind != 0o100000 {
            return Err(bad(format!("is not a regular file (mode {unix:o})")));
        }
        let compressed = entry.compressed_size();
        let remaining = MAX_TOTAL_BYTES - total;
        let mut bytes = Vec::new();
        (&mut entry)
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
        total += bytes.len() as u64;
        if raw.insert(name.clone(), (bytes, unix & 0o7777)).is_some() {
            return Err(bad("appears twice in the archive".into()));
        }
    }
    let (manifest_bytes, _) = raw
        .remove(MANIFEST)
        .ok_or_else(|| BundleError::Manifest("missing: this is not a featpkg bundle".into()))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::Manifest(e.to_string()))?;
    if !valid_name(&manifest.name) || !valid_version(&manifest.version) {
        return Err(BundleError::Manifest(format!(
            "name {:?} / version {:?} must be [a-z0-9-]+ / [A-Za-z0-9.+-]+",
            manifest.name, manifest.version
        )));
    }
    for id in &manifest.features {
        if !valid_name(id) {
            return Err(BundleError::Manifest(format!(
                "feature id {id:?} must be [a-z0-9-]+"
            )));
        }
    }
    let mut files = BTreeMap::new();
    for listed in &manifest.entries {
        let bad = |rule: &str| BundleError::Entry {
            entry: listed.path.clone(),
            rule: rule.to_string(),
        };
        let (bytes, _) = raw
            .remove(&listed.path)
            .ok_or_else(|| bad("listed in the manifest but missing from the archive"))?;
        if bytes.len() as u64 != listed.size {
            return Err(bad("size does not match the manifest"));
        }
        if sha256_hex(&bytes) != listed.sha256 {
            return Err(bad("sha256 does not match the manifest"));
        }
        let mode =
            u32::from_str_radix(&listed.mode, 8).map_err(|_| bad("manifest mode is not octal"))?;
        // No setuid/setgid/sticky, no group/other write, whatever the manifest says.
        files.insert(
            listed.path.clone(),
            BundleFile {
                bytes,
                mode: mode & 0o755,
            },
        );
    }
    if let Some(extra) = raw.keys().next() {
        return Err(BundleError::Entry {
            entry: extra.clone(),
            rule: "is not listed in the manifest".into(),
        });
    }
    for id in &manifest.features {
        if !files.contains_key(&format!("features/{id}/feature.json")) {
            return Err(BundleError::Manifest(format!(
                "feature {id} has no features/{id}/feature.json"
            )));
        }
    }
    Ok(Bundle {
        manifest,
        files,
        archive_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static-looking ELF64 x86_64 header with one PT_LOAD (or PT_INTERP).
    fn elf(interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        b
    }

    fn source() -> (tempfile::TempDir, BuildOptions) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("module-manifest")).unwrap();
        std::fs::create_dir_all(root.join("packaging/features/demo")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(
            root.join("module-manifest/bundle.json"),
            r#"{"name":"demo","version":"1.2.0","description":"d","binaries":["featpkg"]}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("module-manifest/module.json"),
            r#"{"version":"%VERSION%"}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("module-manifest/module.xml"),
            "<module><version>%VERSION%</version></module>",
        )
        .unwrap();
        std::fs::write(root.join("packaging/features/demo/feature.json"), "{}").unwrap();
        std::fs::write(
            root.join("packaging/features/demo/extensions.conf"),
            "[x]\n",
        )
        .unwrap();
        std::fs::write(root.join("bin/featpkg"), elf(false)).unwrap();
        let opts = BuildOptions {
            source_dir: root.to_path_buf(),
            bin_dir: root.join("bin"),
            out_dir: root.join("dist"),
            source_date_epoch: None,
        };
        (dir, opts)
    }

    #[test]
    fn static_elf_check() {
        assert!(check_static_elf(&elf(false)).is_ok());
        assert!(
            check_static_elf(&elf(true))
                .unwrap_err()
                .contains("PT_INTERP")
        );
        assert!(check_static_elf(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn build_is_reproducible_and_opens() {
        let (_d, opts) = source();
        let first = std::fs::read(build(&opts).unwrap()).unwrap();
        let path = build(&opts).unwrap();
        assert_eq!(path.file_name().unwrap(), "demo-1.2.0.zip");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            first,
            "same sources, same bytes"
        );
        let bundle = open(&path).unwrap();
        assert_eq!(bundle.manifest().features, ["demo"]);
        assert_eq!(
            bundle.file("module.json").unwrap().bytes,
            br#"{"version":"1.2.0"}"#
        );
        assert_eq!(bundle.file("bin/x86_64-linux/featpkg").unwrap().mode, 0o755);
        assert_eq!(bundle.files_under("features/demo/").count(), 2);
    }

    #[test]
    fn source_date_epoch_sets_timestamps() {
        let (_d, mut opts) = source();
        let a = std::fs::read(build(&opts).unwrap()).unwrap();
        opts.source_date_epoch = Some(1_700_000_000);
        let path = build(&opts).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), a);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let t = zip.by_index(0).unwrap().last_modified().unwrap();
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour(), t.minute()),
            (2023, 11, 14, 22, 13)
        );
    }

    #[test]
    fn dynamic_binary_is_refused() {
        let (_d, opts) = source();
        std::fs::write(opts.bin_dir.join("featpkg"), elf(true)).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("featpkg") && err.contains("PT_INTERP"),
            "{err}"
        );
    }

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

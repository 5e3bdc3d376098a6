//! The bundle: one zip archive with a manifest (`bundle.json`) listing every other
//! entry with sha256, size and mode. Built reproducibly (sorted entries, fixed
//! timestamps from `SOURCE_DATE_EPOCH`, fixed modes and compression); opened as
//! hostile input: every entry is checked against the manifest before anything
//! uses it (reference/installers.md §6).
//!
//! Archive layout: `bundle.json`; `module.json` (MikoPBX) and `module.xml`
//! (FreePBX) at the root; the PHP shims from `packaging/shims/` at their own
//! paths (`Setup/`, `Lib/`, `bin/featpkg-reload.php`, `Featpkg.class.php`, …);
//! `bin/<arch>-linux/<name>` static binaries (0755) for every architecture in
//! [`ARCHES`]; `features/<id>/…` definitions and fragments (0644); `ui-assets/…`.
//!
//! [`open`] takes the archive or the directory a PBX extracted it into (MikoPBX
//! unpacks into its module directory and deletes the zip; FreePBX into
//! `admin/modules/<rawname>`): the same manifest checks, files the PBX added are
//! ignored.

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
        "binary {path}: {message} (the bundle ships static {arch} Linux binaries: run `bash .ci/build-static`)"
    )]
    NotStatic {
        path: PathBuf,
        arch: &'static str,
        message: String,
    },
    #[error(
        "{arch} binary {path} is missing: build the {arch} binaries with `bash .ci/build-static` (it runs `cargo zigbuild --release --target {triple}`), or point `--bin-dir {arch}=DIR` at them; `--arch` limits the bundle to fewer architectures"
    )]
    MissingBinary {
        path: PathBuf,
        arch: &'static str,
        triple: &'static str,
    },
    #[error("{archive}: not a readable zip archive: {message}")]
    NotZip { archive: PathBuf, message: String },
    #[error("bundle entry {entry:?}: {rule}")]
    Entry { entry: String, rule: String },
    #[error("bundle directory {}: {entry}: {rule}", dir.display())]
    DirEntry {
        dir: PathBuf,
        entry: String,
        rule: String,
    },
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

/// One CPU architecture the bundle carries binaries for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// `std::env::consts::ARCH` of a featpkg built for it; the archive directory is
    /// `bin/<name>-linux/` (see `feature::binary_path`).
    pub name: &'static str,
    /// The Rust target the static binaries are built for.
    pub triple: &'static str,
    /// ELF `e_machine` of its executables.
    pub elf_machine: u16,
}

impl Arch {
    /// Archive directory of this architecture's binaries.
    pub fn bin_dir(&self) -> String {
        format!("bin/{}-linux", self.name)
    }
}

/// Every architecture a bundle ships by default (MikoPBX runs on both).
pub const ARCHES: &[Arch] = &[
    Arch {
        name: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        elf_machine: 62,
    },
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-musl",
        elf_machine: 183,
    },
];

/// The architecture called `name` (`x86_64`, `aarch64`).
pub fn arch(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

/// The architecture whose ELF machine number is `machine`.
pub fn arch_of_machine(machine: u16) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.elf_machine == machine)
}

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Repository root with `module-manifest/`, `packaging/features/`,
    /// `packaging/shims/` (optional) and `ui-assets/` (optional).
    pub source_dir: PathBuf,
    /// For each architecture to ship (by [`Arch::name`]), the directory holding
    /// the static binaries bundle.json names. At least one.
    pub bin_dirs: BTreeMap<String, PathBuf>,
    pub out_dir: PathBuf,
    /// Unix seconds for every entry's timestamp (else 1980-01-01, zip's epoch).
    pub source_date_epoch: Option<u64>,
}

/// The names of [`ARCHES`], for messages (`x86_64, aarch64`).
pub fn known_arches() -> String {
    ARCHES.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// ELF `e_machine` of `bytes`, if it is an ELF file at all.
pub fn elf_machine(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    Some(if bytes[5] == 2 {
        u16::from_be_bytes([bytes[18], bytes[19]])
    } else {
        u16::from_le_bytes([bytes[18], bytes[19]])
    })
}

/// Checks that `bytes` is a static ELF64 little-endian executable for `arch`
/// (right machine, no PT_INTERP program header).
pub fn check_static_elf(bytes: &[u8], arch: &Arch) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let machine = u16_at(18);
    if machine != arch.elf_machine {
        let is = arch_of_machine(machine)
            .map_or_else(|| format!("machine {machine}"), |a| a.name.to_string());
        return Err(format!(
            "is built for {is}, not {} (it would go into {}/)",
            arch.name,
            arch.bin_dir()
        ));
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
        let off = phoff.saturating_add(i.saturating_mul(phentsize));
        if off.saturating_add(4) > bytes.len() {
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

/// `moduleUniqueID` rule of MikoPBX's REST API (`^[A-Za-z][A-Za-z0-9]*$`).
fn valid_module_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric())
}

/// Checks the rendered MikoPBX `module.json`: the fields MikoPBX and MIKO's
/// release pipeline require, and the module id rule. Returns the module id.
fn check_module_json(path: &Path, text: &str) -> Result<String, BundleError> {
    let bad = |message: String| BundleError::Source {
        path: path.to_path_buf(),
        message,
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    for field in [
        "moduleUniqueID",
        "version",
        "min_pbx_version",
        "developer",
        "support_email",
    ] {
        match json.get(field) {
            Some(serde_json::Value::String(v)) if !v.trim().is_empty() => {}
            _ => {
                return Err(bad(format!(
                    "{field} must be a non-empty string (MikoPBX refuses a module without it)"
                )));
            }
        }
    }
    let id = json["moduleUniqueID"].as_str().unwrap_or_default();
    if !valid_module_id(id) {
        return Err(bad(format!(
            "moduleUniqueID {id:?} must match ^[A-Za-z][A-Za-z0-9]*$ (MikoPBX's module id rule; it is also the PHP namespace Modules\\<id>)"
        )));
    }
    Ok(id.to_string())
}

/// The text of the first `<tag>…</tag>` in `xml` (module.xml is flat and simple).
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(xml[start..start + len].trim())
}

/// Checks the rendered FreePBX `module.xml` for the identity fields FreePBX
/// reads. Returns the rawname.
fn check_module_xml(path: &Path, text: &str, version: &str) -> Result<String, BundleError> {
    let bad = |message: String| BundleError::Source {
        path: path.to_path_buf(),
        message,
    };
    for tag in [
        "rawname",
        "name",
        "version",
        "publisher",
        "license",
        "category",
    ] {
        if xml_text(text, tag).is_none_or(str::is_empty) {
            return Err(bad(format!("<{tag}> is missing or empty")));
        }
    }
    if xml_text(text, "version") != Some(version) {
        return Err(bad(format!(
            "<version> must be the bundle version {version} (write %VERSION%)"
        )));
    }
    let rawname = xml_text(text, "rawname").unwrap_or_default();
    let mut bytes = rawname.bytes();
    if !(bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    {
        return Err(bad(format!(
            "<rawname> {rawname:?} must be lower-case letters and digits (FreePBX names the module directory and BMO class after it)"
        )));
    }
    Ok(rawname.to_string())
}

/// Where each PBX looks for the settings page's files (reference/ui.md §3):
/// MikoPBX renders `App/Views/<id>/index.volt` in its admin layout and serves
/// `public/assets/{js,css}/`; FreePBX includes the module's `assets/js/*.js`
/// and `assets/css/*.css` on its pages (`page.featpkg.php` prints the HTML
/// fragment from `ui-assets/`). The entries `ui-assets/<name>` gives besides itself.
fn place_ui_asset(
    rel: &str,
    bytes: &[u8],
    module_id: &str,
) -> Result<Vec<(String, Vec<u8>, u32)>, BundleError> {
    let placed = |paths: &[String], bytes: &[u8]| {
        paths
            .iter()
            .map(|p| (p.clone(), bytes.to_vec(), 0o644))
            .collect::<Vec<_>>()
    };
    Ok(match rel {
        "ui-assets/settings.html" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| BundleError::Archive(format!("{rel} is not UTF-8 text")))?;
            // Volt would run these as template code inside MikoPBX's page.
            if let Some(seq) = ["{{", "{%", "{#"].into_iter().find(|s| text.contains(s)) {
                return Err(BundleError::Archive(format!(
                    "{rel} contains {seq:?}: MikoPBX renders the page as a Volt template, which would run it as template code"
                )));
            }
            if !text.contains("data-pbx=\"\"") {
                return Err(BundleError::Archive(format!(
                    "{rel} must carry data-pbx=\"\" on its root element (the PBX's name is filled in there)"
                )));
            }
            let volt = text.replacen("data-pbx=\"\"", "data-pbx=\"mikopbx\"", 1);
            placed(
                &[format!("App/Views/{module_id}/index.volt")],
                volt.as_bytes(),
            )
        }
        "ui-assets/settings.js" => placed(
            &[
                "public/assets/js/featpkg-settings.js".into(),
                "assets/js/featpkg-settings.js".into(),
            ],
            bytes,
        ),
        "ui-assets/settings.css" => placed(
            &[
                "public/assets/css/featpkg-settings.css".into(),
                "assets/css/featpkg-settings.css".into(),
            ],
            bytes,
        ),
        _ => Vec::new(),
    })
}

/// Checks that the PHP shims are named after the module ids: MikoPBX loads
/// `Modules\<id>\Setup\PbxExtensionSetup` and `Modules\<id>\Lib\<X>Conf`
/// (X = id without "Module"); FreePBX loads `<Rawname>.class.php`.
fn check_shims(
    shims_dir: &Path,
    files: &[(String, PathBuf)],
    module_id: &str,
    rawname: &str,
) -> Result<(), BundleError> {
    let conf = format!("Lib/{}Conf.php", module_id.replace("Module", ""));
    let mut bmo = rawname.to_string();
    bmo[..1].make_ascii_uppercase();
    let bmo = format!("{bmo}.class.php");
    let wanted = [
        (
            "Setup/PbxExtensionSetup.php".to_string(),
            format!("namespace Modules\\{module_id}\\Setup;"),
        ),
        (conf, format!("namespace Modules\\{module_id}\\Lib;")),
        (bmo, "namespace FreePBX\\modules;".to_string()),
    ];
    for (rel, namespace) in wanted {
        let path = shims_dir.join(&rel);
        if !files.iter().any(|(r, _)| *r == rel) {
            return Err(BundleError::Source {
                path,
                message: "missing: the PBX looks for this file by the module id".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        if !text.contains(&namespace) {
            return Err(BundleError::Source {
                path,
                message: format!("must declare `{namespace}` (the module id)"),
            });
        }
    }
    Ok(())
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
    if opts.bin_dirs.is_empty() {
        return Err(BundleError::Archive(
            "no architecture to ship binaries for".into(),
        ));
    }
    // (archive path, bytes, mode)
    let mut entries: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let manifest_dir = opts.source_dir.join("module-manifest");
    let module_json_path = manifest_dir.join("module.json");
    let module_json = std::fs::read_to_string(&module_json_path)
        .map_err(io(&module_json_path))?
        .replace("%VERSION%", &meta.version);
    let module_id = check_module_json(&module_json_path, &module_json)?;
    entries.push(("module.json".into(), module_json.into_bytes(), 0o644));
    let module_xml_path = manifest_dir.join("module.xml");
    let module_xml = std::fs::read_to_string(&module_xml_path)
        .map_err(io(&module_xml_path))?
        .replace("%VERSION%", &meta.version);
    let rawname = check_module_xml(&module_xml_path, &module_xml, &meta.version)?;
    entries.push(("module.xml".into(), module_xml.into_bytes(), 0o644));
    let shims = opts.source_dir.join("packaging/shims");
    if shims.is_dir() {
        let mut shim_files = Vec::new();
        walk(&shims, "", &mut shim_files)?;
        check_shims(&shims, &shim_files, &module_id, &rawname)?;
        for (rel, path) in shim_files {
            entries.push((rel, std::fs::read(&path).map_err(io(&path))?, 0o644));
        }
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
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            for placed in place_ui_asset(&rel, &bytes, &module_id)? {
                entries.push(placed);
            }
            entries.push((rel, bytes, 0o644));
        }
    }
    for (arch_name, dir) in &opts.bin_dirs {
        let arch = arch(arch_name).ok_or_else(|| {
            BundleError::Archive(format!(
                "unknown architecture {arch_name:?} (known: {})",
                known_arches()
            ))
        })?;
        for name in &meta.binaries {
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BundleError::MissingBinary {
                        path,
                        arch: arch.name,
                        triple: arch.triple,
                    });
                }
                Err(e) => {
                    return Err(BundleError::NotStatic {
                        path,
                        arch: arch.name,
                        message: e.to_string(),
                    });
                }
            };
            check_static_elf(&bytes, arch).map_err(|message| BundleError::NotStatic {
                path: path.clone(),
                arch: arch.name,
                message,
            })?;
            entries.push((format!("{}/{name}", arch.bin_dir()), bytes, 0o755));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(BundleError::Archive(format!(
            "two sources give the archive entry {:?} (a shim in packaging/shims/ collides with a generated entry?)",
            w[0].0
        )));
    }
    if entries.iter().any(|e| e.0 == MANIFEST) {
        return Err(BundleError::Archive(format!(
            "{MANIFEST} is generated by featpkg build; remove it from packaging/shims/"
        )));
    }
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

/// Opens and verifies a bundle: the zip archive, or the directory a PBX
/// extracted it into (see [`open_dir`]). Nothing in it is trusted until checked.
pub fn open(path: &Path) -> Result<Bundle, BundleError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_dir() {
        return open_dir(path);
    }
    open_zip(path, &meta)
}

/// Parses and checks the manifest's own fields (names, versions, entry paths,
/// no entry listed twice).
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Manifest(e.to_string()))?;
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
    if manifest.entries.len() > MAX_ENTRIES {
        return Err(BundleError::Manifest(format!(
            "lists {} entries, more than {MAX_ENTRIES}",
            manifest.entries.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for listed in &manifest.entries {
        check_entry_name(&listed.path)
            .map_err(|rule| BundleError::Manifest(format!("entry {:?}: {rule}", listed.path)))?;
        if listed.path == MANIFEST || listed.path.ends_with('/') {
            return Err(BundleError::Manifest(format!(
                "entry {:?} cannot be listed",
                listed.path
            )));
        }
        if !seen.insert(listed.path.as_str()) {
            return Err(BundleError::Manifest(format!(
                "entry {:?} is listed twice",
                listed.path
            )));
        }
    }
    Ok(manifest)
}

/// Checks one listed entry's bytes against the manifest; returns it with its
/// sanitised mode.
fn check_listed(listed: &ManifestEntry, bytes: Vec<u8>) -> Result<BundleFile, &'static str> {
    if bytes.len() as u64 != listed.size {
        return Err("size does not match the manifest");
    }
    if sha256_hex(&bytes) != listed.sha256 {
        return Err("sha256 does not match the manifest");
    }
    let mode = u32::from_str_radix(&listed.mode, 8).map_err(|_| "manifest mode is not octal")?;
    // No setuid/setgid/sticky, no group/other write, whatever the manifest says.
    Ok(BundleFile {
        bytes,
        mode: mode & 0o755,
    })
}

/// Every feature the manifest names has its definition.
fn check_features(
    manifest: &Manifest,
    files: &BTreeMap<String, BundleFile>,
) -> Result<(), BundleError> {
    for id in &manifest.features {
        if !files.contains_key(&format!("features/{id}/feature.json")) {
            return Err(BundleError::Manifest(format!(
                "feature {id} has no features/{id}/feature.json"
            )));
        }
    }
    Ok(())
}

/// Opens a bundle extracted into `dir` (a PBX module directory). `bundle.json`
/// must be a regular file there; every entry it lists must be a regular file
/// reached through real directories (no symbolic link anywhere on the way) with
/// the listed size and sha256. Files the manifest does not list (MikoPBX's
/// `db/`, FreePBX's own files) are ignored. The size caps of an archive apply.
/// The bundle's "archive sha256" is the sha256 of its `bundle.json`, which pins
/// every entry.
pub fn open_dir(dir: &Path) -> Result<Bundle, BundleError> {
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
    let manifest = parse_manifest(&manifest_bytes)?;
    let mut files = BTreeMap::new();
    for listed in &manifest.entries {
        let bad = |rule: &str| BundleError::Entry {
            entry: listed.path.clone(),
            rule: rule.to_string(),
        };
        let (bytes, _) = raw
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
    check_features(&manifest, &files)?;
    Ok(Bundle {
        manifest,
        files,
        archive_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static-looking ELF64 header for `machine` with one PT_LOAD (or PT_INTERP).
    fn elf_for(machine: u16, interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        b
    }

    fn elf(interp: bool) -> Vec<u8> {
        elf_for(62, interp)
    }

    const MODULE_JSON: &str = r#"{"moduleUniqueID":"ModuleDemo","version":"%VERSION%","min_pbx_version":"2024.1.114","developer":"d","support_email":"d@example.invalid"}"#;
    const MODULE_XML: &str = "<module><rawname>demo</rawname><name>Demo</name><version>%VERSION%</version><publisher>d</publisher><license>MIT</license><category>Applications</category></module>";

    fn source() -> (tempfile::TempDir, BuildOptions) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("module-manifest")).unwrap();
        std::fs::create_dir_all(root.join("packaging/features/demo")).unwrap();
        std::fs::create_dir_all(root.join("bin/x86")).unwrap();
        std::fs::create_dir_all(root.join("bin/arm")).unwrap();
        std::fs::write(
            root.join("module-manifest/bundle.json"),
            r#"{"name":"demo","version":"1.2.0","description":"d","binaries":["featpkg"]}"#,
        )
        .unwrap();
        std::fs::write(root.join("module-manifest/module.json"), MODULE_JSON).unwrap();
        std::fs::write(root.join("module-manifest/module.xml"), MODULE_XML).unwrap();
        std::fs::write(root.join("packaging/features/demo/feature.json"), "{}").unwrap();
        std::fs::write(
            root.join("packaging/features/demo/extensions.conf"),
            "[x]\n",
        )
        .unwrap();
        std::fs::write(root.join("bin/x86/featpkg"), elf(false)).unwrap();
        std::fs::write(root.join("bin/arm/featpkg"), elf_for(183, false)).unwrap();
        let opts = BuildOptions {
            source_dir: root.to_path_buf(),
            bin_dirs: [
                ("x86_64".to_string(), root.join("bin/x86")),
                ("aarch64".to_string(), root.join("bin/arm")),
            ]
            .into_iter()
            .collect(),
            out_dir: root.join("dist"),
            source_date_epoch: None,
        };
        (dir, opts)
    }

    /// Adds the three PHP shims the module ids require.
    fn add_shims(root: &Path) {
        let shims = root.join("packaging/shims");
        std::fs::create_dir_all(shims.join("Setup")).unwrap();
        std::fs::create_dir_all(shims.join("Lib")).unwrap();
        std::fs::write(
            shims.join("Setup/PbxExtensionSetup.php"),
            "<?php\nnamespace Modules\\ModuleDemo\\Setup;\n",
        )
        .unwrap();
        std::fs::write(
            shims.join("Lib/DemoConf.php"),
            "<?php\nnamespace Modules\\ModuleDemo\\Lib;\n",
        )
        .unwrap();
        std::fs::write(
            shims.join("Demo.class.php"),
            "<?php\nnamespace FreePBX\\modules;\n",
        )
        .unwrap();
    }

    #[test]
    fn static_elf_check() {
        let x86 = arch("x86_64").unwrap();
        let arm = arch("aarch64").unwrap();
        assert!(check_static_elf(&elf(false), x86).is_ok());
        assert!(check_static_elf(&elf_for(183, false), arm).is_ok());
        assert!(
            check_static_elf(&elf(true), x86)
                .unwrap_err()
                .contains("PT_INTERP")
        );
        assert_eq!(
            check_static_elf(&elf(false), arm).unwrap_err(),
            "is built for x86_64, not aarch64 (it would go into bin/aarch64-linux/)"
        );
        assert!(check_static_elf(b"#!/bin/sh\n", x86).is_err());
        assert_eq!(elf_machine(&elf_for(183, false)), Some(183));
        assert_eq!(elf_machine(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn both_arches_are_shipped_and_checked() {
        let (_d, opts) = source();
        let bundle = open(&build(&opts).unwrap()).unwrap();
        assert_eq!(
            bundle.file("bin/aarch64-linux/featpkg").unwrap().bytes,
            elf_for(183, false)
        );
        // The arm binary in the x86_64 directory: refused, naming file and arch.
        std::fs::write(opts.bin_dirs["x86_64"].join("featpkg"), elf_for(183, false)).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("bin/x86/featpkg") && err.contains("built for aarch64, not x86_64"),
            "{err}"
        );
        // A missing architecture names it and how to build it.
        std::fs::remove_file(opts.bin_dirs["aarch64"].join("featpkg")).unwrap();
        std::fs::write(opts.bin_dirs["x86_64"].join("featpkg"), elf(false)).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.starts_with("aarch64 binary ")
                && err.contains("cargo zigbuild --release --target aarch64-unknown-linux-musl"),
            "{err}"
        );
    }

    #[test]
    fn module_manifests_are_checked() {
        let (d, opts) = source();
        let json = d.path().join("module-manifest/module.json");
        for (text, wanted) in [
            (
                MODULE_JSON.replace("ModuleDemo", "Module-Demo"),
                "moduleUniqueID \"Module-Demo\" must match ^[A-Za-z][A-Za-z0-9]*$",
            ),
            (
                MODULE_JSON.replace("ModuleDemo", "1Module"),
                "must match ^[A-Za-z][A-Za-z0-9]*$",
            ),
            (
                MODULE_JSON.replace(r#""support_email":"d@example.invalid""#, r#""x":1"#),
                "support_email must be a non-empty string",
            ),
            (
                MODULE_JSON.replace(r#""min_pbx_version":"2024.1.114","#, ""),
                "min_pbx_version must be a non-empty string",
            ),
            ("{".to_string(), "not valid JSON"),
        ] {
            std::fs::write(&json, text).unwrap();
            let err = build(&opts).unwrap_err().to_string();
            assert!(err.contains("module.json") && err.contains(wanted), "{err}");
        }
        std::fs::write(&json, MODULE_JSON).unwrap();
        let xml = d.path().join("module-manifest/module.xml");
        std::fs::write(&xml, MODULE_XML.replace("<publisher>d</publisher>", "")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("module.xml: <publisher> is missing"), "{err}");
        std::fs::write(&xml, MODULE_XML.replace("%VERSION%", "9.9")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("must be the bundle version 1.2.0"), "{err}");
    }

    #[test]
    fn shims_go_to_the_root_and_must_match_the_module_ids() {
        let (d, opts) = source();
        add_shims(d.path());
        std::fs::create_dir_all(d.path().join("packaging/shims/bin")).unwrap();
        std::fs::write(d.path().join("packaging/shims/bin/reload.php"), "<?php\n").unwrap();
        let bundle = open(&build(&opts).unwrap()).unwrap();
        for entry in [
            "Setup/PbxExtensionSetup.php",
            "Lib/DemoConf.php",
            "Demo.class.php",
            "bin/reload.php",
        ] {
            assert_eq!(bundle.file(entry).unwrap().mode, 0o644, "{entry}");
        }
        std::fs::write(
            d.path().join("packaging/shims/Lib/DemoConf.php"),
            "<?php\nnamespace Modules\\ModuleOther\\Lib;\n",
        )
        .unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("DemoConf.php: must declare `namespace Modules\\ModuleDemo\\Lib;`"),
            "{err}"
        );
        std::fs::remove_file(d.path().join("packaging/shims/Lib/DemoConf.php")).unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("Lib/DemoConf.php: missing"), "{err}");
        add_shims(d.path());
        std::fs::write(d.path().join("packaging/shims/module.json"), "{}").unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("two sources give the archive entry \"module.json\""),
            "{err}"
        );
    }

    #[test]
    fn the_settings_page_goes_where_each_pbx_looks_for_it() {
        let (d, opts) = source();
        let ui = d.path().join("ui-assets");
        std::fs::create_dir_all(&ui).unwrap();
        std::fs::write(
            ui.join("settings.html"),
            "<div id=\"featpkg-settings\" data-pbx=\"\">x</div>\n",
        )
        .unwrap();
        std::fs::write(ui.join("settings.js"), "var a = 1;\n").unwrap();
        std::fs::write(ui.join("settings.css"), "#featpkg-settings {}\n").unwrap();
        let bundle = open(&build(&opts).unwrap()).unwrap();
        let text = |p: &str| String::from_utf8(bundle.file(p).unwrap().bytes.clone()).unwrap();
        assert_eq!(
            text("App/Views/ModuleDemo/index.volt"),
            "<div id=\"featpkg-settings\" data-pbx=\"mikopbx\">x</div>\n"
        );
        assert_eq!(
            text("ui-assets/settings.html"),
            "<div id=\"featpkg-settings\" data-pbx=\"\">x</div>\n"
        );
        for js in [
            "public/assets/js/featpkg-settings.js",
            "assets/js/featpkg-settings.js",
        ] {
            assert_eq!(text(js), "var a = 1;\n", "{js}");
        }
        for css in [
            "public/assets/css/featpkg-settings.css",
            "assets/css/featpkg-settings.css",
        ] {
            assert_eq!(text(css), "#featpkg-settings {}\n", "{css}");
        }
        // Volt would run template code in MikoPBX's page.
        std::fs::write(
            ui.join("settings.html"),
            "<div data-pbx=\"\">{{ secret }}</div>\n",
        )
        .unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(
            err.contains("ui-assets/settings.html contains \"{{\""),
            "{err}"
        );
        std::fs::write(ui.join("settings.html"), "<div>x</div>\n").unwrap();
        let err = build(&opts).unwrap_err().to_string();
        assert!(err.contains("must carry data-pbx=\"\""), "{err}");
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
            MODULE_JSON.replace("%VERSION%", "1.2.0").into_bytes()
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
        std::fs::write(opts.bin_dirs["x86_64"].join("featpkg"), elf(true)).unwrap();
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
        assert_eq!(
            opened.files_under("").collect::<Vec<_>>(),
            zipped.files_under("").collect::<Vec<_>>()
        );
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

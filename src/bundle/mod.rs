//! The bundle: one zip archive with a manifest (`bundle.json`) listing every other
//! entry with sha256, size and mode. Built reproducibly (sorted entries, fixed
//! timestamps from `SOURCE_DATE_EPOCH`, fixed modes and compression); opened as
//! hostile input: every entry is checked against the manifest before anything
//! uses it (reference/installers.md §6).
//!
//! Archive layout: `bundle.json`; each PBX's module manifest at the root and
//! the PHP shims from `packaging/shims/` at their own paths (what each PBX
//! looks for is [`crate::pbx::package`]'s); `bin/<arch>-linux/<name>` static
//! binaries (0755) for every architecture in [`ARCHES`]; `features/<id>/…`
//! definitions and fragments (0644); `ui-assets/…`, and the copies of the
//! settings page's files where each PBX looks for them.
//!
//! The parts: [`build()`] (the archive from the sources), [`open()`] (the archive,
//! or the directory a PBX extracted it into), the manifest both agree on, and
//! the architectures and ELF checks of the binaries.

mod build;
mod elf;
mod extracted;
mod manifest;
mod open;

#[cfg(test)]
pub(crate) mod fixture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use build::{BuildOptions, build};
pub use elf::{ARCHES, Arch, arch, arch_of_machine, check_static_elf, elf_machine, known_arches};
pub use manifest::{MANIFEST, Manifest, ManifestEntry};
pub use open::{MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_RATIO, MAX_TOTAL_BYTES, open};

/// Why a build or an open failed; names the entry or file and the rule.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the sources or the output could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A source file breaks a rule of the bundle or of a PBX.
    #[error("{path}: {message}")]
    Source {
        /// The source file.
        path: PathBuf,
        /// The rule it breaks.
        message: String,
    },
    /// A binary to ship is not a static executable for its architecture.
    #[error(
        "binary {path}: {message} (the bundle ships static {arch} Linux binaries: run `bash .ci/build-static`)"
    )]
    NotStatic {
        /// The binary.
        path: PathBuf,
        /// The architecture it was to ship for.
        arch: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A binary to ship does not exist.
    #[error(
        "{arch} binary {path} is missing: build the {arch} binaries with `bash .ci/build-static` (it runs `cargo zigbuild --release --target {triple}`), or point `--bin-dir {arch}=DIR` at them; `--arch` limits the bundle to fewer architectures"
    )]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
        /// Its architecture.
        arch: &'static str,
        /// The Rust target that builds it.
        triple: &'static str,
    },
    /// The archive is not a zip file zip can read.
    #[error("{archive}: not a readable zip archive: {message}")]
    NotZip {
        /// The archive.
        archive: PathBuf,
        /// What the zip reader said.
        message: String,
    },
    /// An archive entry breaks a rule.
    #[error("bundle entry {entry:?}: {rule}")]
    Entry {
        /// The entry's name.
        entry: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A file of an extracted bundle breaks a rule.
    #[error("bundle directory {}: {entry}: {rule}", dir.display())]
    DirEntry {
        /// The directory the bundle was extracted into.
        dir: PathBuf,
        /// The entry (path under `dir`).
        entry: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The manifest is missing or breaks a rule.
    #[error("bundle manifest {MANIFEST}: {0}")]
    Manifest(String),
    /// The archive as a whole breaks a rule (size, entries, collisions).
    #[error("bundle archive: {0}")]
    Archive(String),
}

/// Maps an I/O error on `path` to [`BundleError::Io`].
fn io(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A verified entry's bytes and sanitised mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// The entry's content.
    pub bytes: Vec<u8>,
    /// Its permission bits: the manifest's, without setuid/setgid/sticky and
    /// group/other write.
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

    /// sha256 of the archive file itself (of `bundle.json` for an extracted
    /// bundle: it pins every entry).
    pub fn archive_sha256(&self) -> &str {
        &self.archive_sha256
    }
}

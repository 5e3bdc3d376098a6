//! `featpkg build`: one reproducible archive in `dist/` from the repository's sources.
//!
//! The bundle carries static binaries for every architecture in
//! [`bundle::ARCHES`] (or those `--arch` names). Where each architecture's
//! binaries come from, first match wins:
//!
//! 1. `--bin-dir ARCH=DIR`, or `--bin-dir DIR` whose architecture is told by a
//!    cargo triple in the path (`…/aarch64-unknown-linux-musl/release`) or else by
//!    the ELF machine of `DIR/featpkg`;
//! 2. `<target-dir>/<triple>/release`, where the target dir is `--target-dir`,
//!    else the cargo target dir a `--bin-dir …/<triple>/release` sits in, else
//!    `<source>/target` (what `bash .ci/build-static` fills).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::Error;
use crate::bundle::{self, ARCHES, Arch, BuildOptions};

/// What `featpkg build` was asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// Repository root holding `module-manifest/` and `packaging/`.
    pub source_dir: PathBuf,
    /// `--bin-dir` values: `ARCH=DIR` or `DIR`.
    pub bin_dirs: Vec<PathBuf>,
    /// `--target-dir`: a cargo target directory holding `<triple>/release`.
    pub target_dir: Option<PathBuf>,
    /// `--arch`: the architectures to ship (default: all of [`ARCHES`]).
    pub arches: Option<Vec<String>>,
    /// Output directory (default `<source>/dist`).
    pub out_dir: Option<PathBuf>,
}

fn arch_named(name: &str, what: &str) -> Result<&'static Arch, Error> {
    bundle::arch(name).ok_or_else(|| {
        Error::Refused(format!(
            "{what}: unknown architecture {name:?} (known: {})",
            bundle::known_arches()
        ))
    })
}

/// The architecture a cargo triple component of `dir` names (`…/<triple>/…`).
fn arch_from_path(dir: &Path) -> Option<&'static Arch> {
    dir.components().find_map(|c| match c {
        Component::Normal(part) => ARCHES.iter().find(|a| part == a.triple),
        _ => None,
    })
}

/// The cargo target directory `dir` is the release output of (`<root>/<triple>/release`).
fn target_root_of(dir: &Path) -> Option<PathBuf> {
    let release = dir.file_name()?;
    let triple = dir.parent()?;
    if release != "release"
        || !ARCHES
            .iter()
            .any(|a| triple.file_name() == Some(a.triple.as_ref()))
    {
        return None;
    }
    triple.parent().map(Path::to_path_buf)
}

/// Splits one `--bin-dir` value into (architecture, directory).
fn parse_bin_dir(value: &Path) -> Result<(&'static Arch, PathBuf), Error> {
    let what = format!("--bin-dir {}", value.display());
    if let Some((name, dir)) = value.to_str().and_then(|v| v.split_once('='))
        && !name.contains('/')
    {
        return Ok((arch_named(name, &what)?, PathBuf::from(dir)));
    }
    if let Some(arch) = arch_from_path(value) {
        return Ok((arch, value.to_path_buf()));
    }
    let probe = value.join("featpkg");
    let bytes = std::fs::read(&probe)
        .map_err(|e| Error::Refused(format!("{what}: cannot read {}: {e}", probe.display())))?;
    match bundle::elf_machine(&bytes).and_then(bundle::arch_of_machine) {
        Some(arch) => Ok((arch, value.to_path_buf())),
        None => Err(Error::Refused(format!(
            "{what}: cannot tell which architecture {} is built for; write ARCH=DIR ({})",
            probe.display(),
            bundle::known_arches()
        ))),
    }
}

/// Works out each architecture's binary directory (see the module doc).
pub fn resolve_bin_dirs(request: &BuildRequest) -> Result<BTreeMap<String, PathBuf>, Error> {
    let wanted: Vec<&'static Arch> = match &request.arches {
        Some(names) if names.is_empty() => {
            return Err(Error::Refused(
                "--arch: name at least one architecture".into(),
            ));
        }
        Some(names) => names
            .iter()
            .map(|n| arch_named(n.trim(), "--arch"))
            .collect::<Result<_, _>>()?,
        None => ARCHES.iter().collect(),
    };
    let mut explicit: BTreeMap<&'static str, PathBuf> = BTreeMap::new();
    let mut sibling_root = None;
    for value in &request.bin_dirs {
        let (arch, dir) = parse_bin_dir(value)?;
        if !wanted.contains(&arch) {
            return Err(Error::Refused(format!(
                "--bin-dir {}: {} is not among the architectures to ship (--arch)",
                value.display(),
                arch.name
            )));
        }
        if sibling_root.is_none() {
            sibling_root = target_root_of(&dir);
        }
        if explicit.insert(arch.name, dir).is_some() {
            return Err(Error::Refused(format!(
                "--bin-dir: {} binaries given twice",
                arch.name
            )));
        }
    }
    let root = request
        .target_dir
        .clone()
        .or(sibling_root)
        .unwrap_or_else(|| request.source_dir.join("target"));
    Ok(wanted
        .iter()
        .map(|arch| {
            let dir = explicit
                .remove(arch.name)
                .unwrap_or_else(|| root.join(arch.triple).join("release"));
            (arch.name.to_string(), dir)
        })
        .collect())
}

/// Builds the bundle. `SOURCE_DATE_EPOCH` (if set) fixes the archive timestamps.
pub fn build(request: &BuildRequest) -> Result<PathBuf, Error> {
    let bin_dirs = resolve_bin_dirs(request)?;
    let out_dir = request
        .out_dir
        .clone()
        .unwrap_or_else(|| request.source_dir.join("dist"));
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.trim().parse::<u64>().map_err(|_| {
            Error::Refused(format!(
                "SOURCE_DATE_EPOCH={v:?} must be a whole number of seconds"
            ))
        })?),
        Err(_) => None,
    };
    Ok(bundle::build(&BuildOptions {
        source_dir: request.source_dir.clone(),
        bin_dirs,
        out_dir,
        source_date_epoch,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bin_dirs: &[&str]) -> BuildRequest {
        BuildRequest {
            source_dir: PathBuf::from("/src"),
            bin_dirs: bin_dirs.iter().map(PathBuf::from).collect(),
            ..BuildRequest::default()
        }
    }

    fn dirs(r: &BuildRequest) -> Vec<(String, String)> {
        resolve_bin_dirs(r)
            .unwrap()
            .into_iter()
            .map(|(a, d)| (a, d.display().to_string()))
            .collect()
    }

    #[test]
    fn default_is_every_arch_under_source_target() {
        assert_eq!(
            dirs(&request(&[])),
            [
                (
                    "aarch64".into(),
                    "/src/target/aarch64-unknown-linux-musl/release".into()
                ),
                (
                    "x86_64".into(),
                    "/src/target/x86_64-unknown-linux-musl/release".into()
                ),
            ]
        );
    }

    #[test]
    fn a_bin_dir_in_a_target_dir_finds_its_sibling() {
        assert_eq!(
            dirs(&request(&["/t/x86_64-unknown-linux-musl/release"])),
            [
                (
                    "aarch64".into(),
                    "/t/aarch64-unknown-linux-musl/release".into()
                ),
                (
                    "x86_64".into(),
                    "/t/x86_64-unknown-linux-musl/release".into()
                ),
            ]
        );
    }

    #[test]
    fn explicit_arch_target_dir_and_arch_list() {
        let mut r = request(&["aarch64=/arm"]);
        r.target_dir = Some(PathBuf::from("/tt"));
        assert_eq!(
            dirs(&r),
            [
                ("aarch64".into(), "/arm".into()),
                (
                    "x86_64".into(),
                    "/tt/x86_64-unknown-linux-musl/release".into()
                ),
            ]
        );
        let mut r = request(&[]);
        r.arches = Some(vec!["x86_64".into()]);
        assert_eq!(
            dirs(&r),
            [(
                "x86_64".into(),
                "/src/target/x86_64-unknown-linux-musl/release".into()
            )]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let err = |r: &BuildRequest| resolve_bin_dirs(r).unwrap_err().to_string();
        assert!(err(&request(&["sparc=/x"])).contains("unknown architecture \"sparc\""));
        assert!(err(&request(&["x86_64=/a", "x86_64=/b"])).contains("x86_64 binaries given twice"));
        let mut r = request(&["aarch64=/a"]);
        r.arches = Some(vec!["x86_64".into()]);
        assert!(err(&r).contains("aarch64 is not among the architectures"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("featpkg"), "#!/bin/sh\n").unwrap();
        let r = BuildRequest {
            bin_dirs: vec![dir.path().to_path_buf()],
            ..request(&[])
        };
        assert!(
            err(&r).contains("cannot tell which architecture"),
            "{}",
            err(&r)
        );
    }

    #[test]
    fn a_plain_bin_dir_is_told_by_its_elf_machine() {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        std::fs::write(dir.path().join("featpkg"), elf).unwrap();
        let r = BuildRequest {
            bin_dirs: vec![dir.path().to_path_buf()],
            ..request(&[])
        };
        assert_eq!(
            resolve_bin_dirs(&r).unwrap()["aarch64"],
            dir.path().to_path_buf()
        );
    }
}

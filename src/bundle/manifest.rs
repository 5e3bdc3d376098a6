//! The manifest (`bundle.json`): what a build writes and what an open checks
//! every entry against. Its own fields are checked here, before any entry is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::open::MAX_ENTRIES;
use super::{BundleError, BundleFile};
use crate::hash::sha256_hex;

/// Name of the manifest entry.
pub const MANIFEST: &str = "bundle.json";

/// The manifest inside the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The bundle's name (`[a-z0-9-]+`).
    pub name: String,
    /// Its version (`[A-Za-z0-9.+-]+`).
    pub version: String,
    /// One line for people.
    pub description: String,
    /// Feature ids (directories under `features/`).
    pub features: Vec<String>,
    /// Every other entry of the archive.
    pub entries: Vec<ManifestEntry>,
}

/// One archive entry as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Archive path.
    pub path: String,
    /// sha256 of its bytes, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Octal permission bits as text, e.g. "0755".
    pub mode: String,
}

/// A bundle or feature name: `[a-z0-9-]+`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A bundle version: `[A-Za-z0-9.+-]+`.
pub(super) fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
}

/// Checks an entry name: relative, plain components, no `..`, no backslash or NUL.
pub(super) fn check_entry_name(name: &str) -> Result<(), String> {
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

/// Parses and checks the manifest's own fields (names, versions, entry paths,
/// no entry listed twice).
pub(super) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
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
pub(super) fn check_listed(
    listed: &ManifestEntry,
    bytes: Vec<u8>,
) -> Result<BundleFile, &'static str> {
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
pub(super) fn check_features(
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

//! `featpkg destinations`: the entry points the installed features offer to a
//! PBX's destination pickers (its drop-downs, through the module's
//! `<rawname>_destinations()` shim), as JSON.
//!
//! State keeps each installed feature's effective parameters; the destination
//! templates are in the feature definitions, read from the bundle (by default
//! the module directory this featpkg binary sits in: `<module>/bin/<arch>-linux/featpkg`).
//! It takes no lock and recovers nothing: a PBX may ask for destinations while
//! it reloads, which `featpkg install` itself runs while holding the lock.

use std::path::{Path, PathBuf};

use super::Error;
use crate::bundle;
use crate::feature::{FeatureDef, RenderedDestination};
use crate::pbx::{self, TargetKind, TargetOptions};
use crate::state::State;

/// The destinations of the installed features of the bundle at `bundle_path`
/// (None: the bundle featpkg's own binary belongs to). Bundles installed from
/// other archives are not listed; nothing installed is an empty list (and then
/// no bundle is needed).
pub fn destinations(
    kind: TargetKind,
    options: &TargetOptions,
    bundle_path: Option<&Path>,
) -> Result<Vec<RenderedDestination>, Error> {
    let target = pbx::open(kind, options)?;
    let state_dir = target.state_dir();
    if !state_dir.join("state.db").is_file() {
        return Ok(Vec::new()); // featpkg never installed anything here
    }
    let state = State::open(&state_dir)?;
    let installed = state.bundles()?;
    if installed.is_empty() {
        return Ok(Vec::new());
    }
    let path = match bundle_path {
        Some(p) => p.to_path_buf(),
        None => own_bundle_dir().ok_or_else(|| {
            Error::Refused(format!(
                "featpkg destinations needs the feature definitions of the installed bundle ({}): give --bundle PATH (its archive or module directory); no bundle.json was found around the featpkg binary",
                installed
                    .iter()
                    .map(|b| format!("{} {}", b.name, b.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
    };
    let opened = bundle::open(&path)?;
    let manifest = opened.manifest();
    let read = |p: &str| opened.file(p).map(|f| f.bytes.clone());
    let mut out = Vec::new();
    for b in installed.iter().filter(|b| b.name == manifest.name) {
        if b.version != manifest.version {
            return Err(Error::Refused(format!(
                "{} {} is installed, but {} holds version {}: install it first (featpkg install {})",
                b.name,
                b.version,
                path.display(),
                manifest.version,
                path.display()
            )));
        }
        for feature in &b.features {
            let def = FeatureDef::load(&feature.id, &read)?;
            out.extend(def.render_destinations(&feature.params, &b.name)?);
        }
    }
    Ok(out)
}

/// The bundle directory the running binary was shipped in, if it was
/// (`<dir>/bin/<arch>-linux/featpkg` with `<dir>/bundle.json`).
pub fn own_bundle_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let dir = exe.parent()?.parent()?.parent()?;
    dir.join("bundle.json").is_file().then(|| dir.to_path_buf())
}

//! `featpkg install`: install, reconfigure or upgrade a bundle's features in one transaction.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::bundle;
use crate::feature::{self, FeatureDef, FeatureError, RenderedFeature};
use crate::state::{BundleSnapshot, InstalledFeature};

/// What the admin asked for.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    pub archive: PathBuf,
    /// Features to install (None = all the bundle has). Already installed ones stay.
    pub features: Option<Vec<String>>,
    /// `feature.param=value` settings (they win over `params_file`).
    pub sets: Vec<String>,
    /// `--params FILE.json` (structured parameters such as queue-failover's rules).
    pub params_file: Option<PathBuf>,
    pub dry_run: bool,
    pub no_reload: bool,
    pub force: bool,
}

/// How an install ended.
#[derive(Debug, Clone)]
pub enum InstallOutcome {
    /// Nothing to change: the bundle is installed exactly like this already.
    UpToDate {
        bundle: String,
        version: String,
    },
    /// `--dry-run`: the unified diff of what would change.
    DryRun(super::Preview),
    Applied(Applied),
}

/// Installs (or upgrades/reconfigures) the bundle in `request.archive`.
pub fn install(session: &mut Session, request: &InstallRequest) -> Result<InstallOutcome, Error> {
    let bundle = bundle::open(&request.archive)?;
    let manifest = bundle.manifest().clone();
    let read = |path: &str| bundle.file(path).map(|f| f.bytes.clone());
    let installed = session.state.bundle(&manifest.name)?;
    let available = manifest.features.join(", ");

    // Without --features: every feature, but those whose required parameters
    // nobody gave are skipped (and said so) rather than failing the whole install.
    let mut skipped: Vec<String> = Vec::new();
    let requested: Vec<String> = match &request.features {
        Some(list) => list.clone(),
        None => manifest.features.clone(),
    };
    for id in &requested {
        if !manifest.features.contains(id) {
            return Err(FeatureError::UnknownFeature(id.clone(), available.clone()).into());
        }
    }
    // Already installed features stay (and move to this bundle's version).
    let mut wanted: Vec<String> = installed
        .iter()
        .flat_map(|b| b.features.iter().map(|f| f.id.clone()))
        .filter(|id| manifest.features.contains(id))
        .collect();
    for id in requested {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    wanted.sort();
    let dropped: Vec<String> = installed
        .iter()
        .flat_map(|b| b.features.iter().map(|f| f.id.clone()))
        .filter(|id| !manifest.features.contains(id))
        .collect();

    let mut sets = match &request.params_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                Error::Refused(format!(
                    "cannot read parameters file {}: {e}",
                    path.display()
                ))
            })?;
            feature::parse_params_file(&path.display().to_string(), &bytes)?
        }
        None => feature::UserParams::new(),
    };
    for (feature, values) in feature::parse_sets(&request.sets)? {
        sets.entry(feature).or_default().extend(values);
    }
    for id in sets.keys() {
        if !wanted.contains(id) {
            return Err(if manifest.features.contains(id) {
                Error::Refused(format!(
                    "--set {id}.…: feature {id} is not being installed (add it to --features)"
                ))
            } else {
                FeatureError::UnknownFeature(id.clone(), available.clone()).into()
            });
        }
    }

    // Features this PBX cannot run: skipped by a default install, refused when asked for.
    let target_name = session.target.name();
    let mut supported = Vec::new();
    for id in wanted {
        let def = FeatureDef::load(&id, &read)?;
        match def.unsupported.get(target_name) {
            None => supported.push(id),
            Some(reason) if request.features.is_none() => {
                skipped.push(format!("{id} (not on {target_name}: {reason})"));
            }
            Some(reason) => {
                return Err(Error::Refused(format!(
                    "feature {id} does not work on {target_name}: {reason}"
                )));
            }
        }
    }
    wanted = supported;
    if request.features.is_none() {
        let mut kept = Vec::new();
        for id in wanted {
            let def = FeatureDef::load(&id, &read)?;
            let mut given: BTreeMap<String, String> = installed
                .iter()
                .flat_map(|b| b.features.iter())
                .find(|f| f.id == id)
                .map(|f| f.user_params.clone())
                .unwrap_or_default();
            given.extend(sets.get(&id).cloned().unwrap_or_default());
            let missing = def.missing_required(&given);
            if missing.is_empty() {
                kept.push(id);
            } else {
                skipped.push(format!("{id} (needs {})", missing.join(", ")));
            }
        }
        wanted = kept;
    }
    let dirs = session.target.runtime_dirs();
    let ami = read_ami_address(session.target.as_ref(), &dirs)?;
    let mut rendered: Vec<RenderedFeature> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();
    let mut features = Vec::new();
    for id in &wanted {
        let def = FeatureDef::load(id, &read)?;
        let mut user: BTreeMap<String, String> = installed
            .iter()
            .flat_map(|b| b.features.iter())
            .find(|f| &f.id == id)
            .map(|f| f.user_params.clone())
            .unwrap_or_default();
        if let Some(s) = sets.get(id) {
            user.extend(s.clone());
        }
        // A parameter the new version no longer has is dropped rather than refused.
        user.retain(|k, _| {
            def.params.iter().any(|p| &p.name == k)
                || sets.get(id).is_some_and(|s| s.contains_key(k))
        });
        let params = def.resolve_params(&user)?;
        let secret = super::feature_secret(session.target.as_ref(), &manifest.name, id)?;
        secrets.push(secret.clone());
        let pbx = crate::feature::PbxVars {
            dirs: &dirs,
            ami: &ami,
        };
        let r = def.render(&params, &pbx, &manifest.name, &secret, &read)?;
        features.push(InstalledFeature {
            id: id.clone(),
            version: def.version.clone(),
            user_params: user,
            params,
        });
        rendered.push(r);
    }
    let desired = session.target.place(
        rendered
            .iter()
            .flat_map(|r| r.edits.iter().cloned())
            .collect(),
    )?;
    let plan = crate::plan::plan(
        session.target.as_ref(),
        &manifest.name,
        installed.as_ref(),
        &desired,
        request.force,
    )?;
    let after = BundleSnapshot {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        archive_sha256: bundle.archive_sha256().to_string(),
        features,
        edits: plan.edits.clone(),
        dirs: plan.dirs.clone(),
        row_baselines: plan.row_baselines.clone(),
    };
    let same_state = installed.as_ref().is_some_and(|b| {
        b.version == after.version
            && b.features == after.features
            && b.edits == after.edits
            && b.dirs == after.dirs
            && b.row_baselines == after.row_baselines
    });
    if plan.is_noop() && same_state {
        return Ok(InstallOutcome::UpToDate {
            bundle: manifest.name,
            version: manifest.version,
        });
    }

    let (kind, summary) = match &installed {
        Some(old) if old.version != manifest.version => (
            "upgrade",
            format!(
                "upgrade {} {} -> {} ({})",
                manifest.name,
                old.version,
                manifest.version,
                wanted.join(", ")
            ),
        ),
        Some(_) => (
            "install",
            format!(
                "reconfigure {} {} ({})",
                manifest.name,
                manifest.version,
                wanted.join(", ")
            ),
        ),
        None => (
            "install",
            format!(
                "install {} {} ({})",
                manifest.name,
                manifest.version,
                wanted.join(", ")
            ),
        ),
    };
    let mut summary = if dropped.is_empty() {
        summary
    } else {
        format!(
            "{summary}; removed features no longer in the bundle: {}",
            dropped.join(", ")
        )
    };
    if !skipped.is_empty() {
        summary.push_str(&format!(
            "; skipped {} (set with --set or --params)",
            skipped.join(", ")
        ));
    }
    if request.dry_run {
        let mut preview = super::preview(session, &plan, summary)?;
        for part in &mut preview.changes {
            for secret in &secrets {
                part.diff = part.diff.replace(secret.as_str(), super::SECRET_MASK);
            }
        }
        return Ok(InstallOutcome::DryRun(preview));
    }
    let previously_installed: Vec<&str> = installed
        .iter()
        .flat_map(|b| b.features.iter().map(|f| f.id.as_str()))
        .collect();
    let load_modules: Vec<String> = rendered
        .iter()
        .filter(|r| !previously_installed.contains(&r.id.as_str()))
        .flat_map(|r| r.modules.iter().cloned())
        .collect();
    let contexts: Vec<String> = rendered
        .iter()
        .flat_map(|r| r.contexts.iter().cloned())
        .collect();
    let reload = reload_for(&plan, load_modules, contexts);
    let applied = execute(
        session,
        Change {
            kind,
            bundle: &manifest.name,
            summary,
            plan,
            before: installed,
            after: Some(after),
            reload,
            undoes: None,
        },
        request.no_reload,
    )?;
    Ok(InstallOutcome::Applied(applied))
}

/// Where the PBX's AMI listens, from `<astetcdir>/manager.conf` (the PBX's
/// own file: on FreePBX and MikoPBX featpkg's AMI users go elsewhere, but the
/// port and address are set here).
fn read_ami_address(
    target: &dyn crate::pbx::Target,
    dirs: &BTreeMap<feature::PbxDir, String>,
) -> Result<crate::ami_address::AmiAddress, Error> {
    let Some(etc) = dirs.get(&feature::PbxDir::Etc) else {
        return Ok(crate::ami_address::AmiAddress::default());
    };
    let path = target.host_path(&format!("{etc}/manager.conf"));
    let text = crate::asterisk_config::read_if_exists(&path)
        .map_err(|source| crate::pbx::asterisk::TargetError::Read { path, source })?;
    Ok(crate::ami_address::read(text.as_deref()))
}

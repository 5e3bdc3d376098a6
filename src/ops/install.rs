//! `featpkg install`: install, reconfigure or upgrade a bundle's features in one transaction.
//!
//! The flow: open the bundle; resolve the selection (which features, each
//! definition loaded once with the parameters the admin gave); render them for
//! this PBX; plan; then preview (`--dry-run`) or execute; report the outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::bundle;
use crate::feature::{
    self, BundleReader, FeatureDef, FeatureError, Location, PbxVars, RenderedEdit, RenderedFeature,
};
use crate::pbx::Target;
use crate::state::{BundleSnapshot, InstalledFeature};

/// What the admin asked for.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// The bundle: its zip archive (`dist/featpkg-recipes-1.0.0.zip`) or the
    /// directory a PBX extracted it into.
    pub archive: PathBuf,
    /// Features to install (None = all the bundle has). Already installed ones stay.
    pub features: Option<Vec<String>>,
    /// `feature.param=value` settings (they win over `params_file`).
    pub sets: Vec<String>,
    /// `--params FILE.json` (structured parameters such as queue-failover's rules).
    pub params_file: Option<PathBuf>,
    /// `--dry-run`: show the diff of every change, change (and create) nothing.
    pub dry_run: bool,
    /// `--no-reload`: write the files but do not reload Asterisk (the admin will).
    pub no_reload: bool,
    /// `--force`: overwrite hand edits to featpkg's own blocks and files
    /// (each one is listed in [`Applied::forced`]).
    pub force: bool,
}

/// How an install ended.
#[derive(Debug, Clone)]
pub enum InstallOutcome {
    /// Nothing to change: the bundle is installed exactly like this already.
    UpToDate {
        /// The bundle's name: `featpkg-recipes`.
        bundle: String,
        /// Its version, installed and in the archive alike: `1.0.0`.
        version: String,
    },
    /// `--dry-run`: the unified diff of what would change.
    DryRun(super::Preview),
    /// The install, upgrade or reconfiguration ran as one transaction.
    Applied(Applied),
}

/// Installs (or upgrades/reconfigures) the bundle in `request.archive`:
/// selects the features, renders them for this PBX, plans, then previews or
/// applies the change.
pub fn install(session: &mut Session, request: &InstallRequest) -> Result<InstallOutcome, Error> {
    let bundle = bundle::open(&request.archive)?;
    let manifest = bundle.manifest().clone();
    let read = |path: &str| bundle.file(path).map(|f| f.bytes.clone());
    let read: BundleReader = &read;
    let installed = session.state.bundle(&manifest.name)?;
    let target = session.target.as_ref();
    let selection =
        Selection::resolve(request, &manifest, installed.as_ref(), target.name(), read)?;
    let rendered = render(target, &manifest.name, &selection.wanted, read)?;
    let desired = target.place(rendered.edits())?;
    let plan = crate::plan::plan(
        target,
        &manifest.name,
        installed.as_ref(),
        &desired,
        request.force,
    )?;
    let after = BundleSnapshot {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        archive_sha256: bundle.archive_sha256().to_string(),
        features: rendered.records.clone(),
        edits: plan.edits.clone(),
        dirs: plan.dirs.clone(),
        row_baselines: plan.row_baselines.clone(),
    };
    if plan.is_noop() && same_state(installed.as_ref(), &after) {
        return Ok(InstallOutcome::UpToDate {
            bundle: manifest.name,
            version: manifest.version,
        });
    }
    let (kind, summary) = summarize(&manifest, installed.as_ref(), &selection);
    if request.dry_run {
        let preview = masked_preview(session, &plan, summary, &rendered.secrets)?;
        return Ok(InstallOutcome::DryRun(preview));
    }
    let reload = reload_for(
        &plan,
        rendered.new_modules(installed.as_ref()),
        rendered.contexts(),
    );
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

/// Which of the bundle's features an install is about. A feature asked for
/// by name that this PBX cannot run is refused: [`Selection::resolve`] ends
/// with that error, and nothing is selected.
struct Selection {
    /// The features to install, sorted by id: the installed ones the bundle
    /// still has (they move to its version) and the ones asked for.
    wanted: Vec<WantedFeature>,
    /// Features a default install (no `--features`) leaves out, each with why:
    /// `x (not on <target>: …)`, `x (needs param, …)`.
    skipped: Vec<String>,
    /// Installed features this bundle no longer has: the change removes them.
    dropped: Vec<String>,
}

/// A feature to install: its definition, loaded once, and the parameters the admin gave.
struct WantedFeature {
    def: FeatureDef,
    /// The values kept from the last install (minus any parameter the new
    /// version no longer has), overridden by this request's `--set`/`--params`.
    user: BTreeMap<String, String>,
}

impl Selection {
    /// Selects the features of `manifest` that `request` installs on the target
    /// named `target`, given what is `installed` of the bundle already.
    fn resolve(
        request: &InstallRequest,
        manifest: &bundle::Manifest,
        installed: Option<&BundleSnapshot>,
        target: &str,
        read: BundleReader,
    ) -> Result<Selection, Error> {
        let ids = feature_ids(request, manifest, installed)?;
        let sets = given_params(request)?;
        check_sets_are_wanted(&sets, &ids, manifest)?;
        let default_install = request.features.is_none();
        let mut selection = Selection {
            wanted: Vec::new(),
            skipped: Vec::new(),
            dropped: installed_ids(installed)
                .filter(|id| !manifest.features.iter().any(|f| f == id))
                .map(str::to_string)
                .collect(),
        };
        for id in ids {
            let def = FeatureDef::load(&id, read)?;
            match def.unsupported_on(target) {
                None => {
                    let stored = installed
                        .and_then(|b| b.features.iter().find(|f| f.id == id))
                        .map(|f| &f.user_params);
                    selection
                        .wanted
                        .push(WantedFeature::new(def, stored, sets.get(&id)));
                }
                Some(reason) if default_install => {
                    selection
                        .skipped
                        .push(format!("{id} (not on {target}: {reason})"));
                }
                Some(reason) => {
                    return Err(Error::Refused(format!(
                        "feature {id} does not work on {target}: {reason}"
                    )));
                }
            }
        }
        // Without --features, a feature whose required parameters nobody gave
        // is skipped (and said so) rather than failing the whole install.
        if default_install {
            selection.skip_incomplete();
        }
        Ok(selection)
    }

    /// Moves the wanted features that lack a required parameter to `skipped`.
    fn skip_incomplete(&mut self) {
        for feature in std::mem::take(&mut self.wanted) {
            let missing = feature.def.missing_required(&feature.user);
            if missing.is_empty() {
                self.wanted.push(feature);
            } else {
                let skipped = format!("{} (needs {})", feature.def.id, missing.join(", "));
                self.skipped.push(skipped);
            }
        }
    }

    /// The ids of the wanted features.
    fn wanted_ids(&self) -> Vec<&str> {
        self.wanted.iter().map(|w| w.def.id.as_str()).collect()
    }
}

impl WantedFeature {
    /// `stored`: the admin's values from the last install; `set`: this request's.
    fn new(
        def: FeatureDef,
        stored: Option<&BTreeMap<String, String>>,
        set: Option<&BTreeMap<String, String>>,
    ) -> WantedFeature {
        let mut user = stored.cloned().unwrap_or_default();
        // A stored parameter the new version no longer has is dropped rather
        // than refused; one given now is kept, so an unknown name is refused.
        user.retain(|k, _| def.params.iter().any(|p| &p.name == k));
        user.extend(set.cloned().unwrap_or_default());
        WantedFeature { def, user }
    }
}

/// The ids of the features installed of the bundle.
fn installed_ids(installed: Option<&BundleSnapshot>) -> impl Iterator<Item = &str> {
    installed
        .into_iter()
        .flat_map(|b| b.features.iter().map(|f| f.id.as_str()))
}

/// The features to consider, sorted: those installed that the bundle still
/// has, and those asked for (all of the bundle's without `--features`), each
/// of which the bundle must have.
fn feature_ids(
    request: &InstallRequest,
    manifest: &bundle::Manifest,
    installed: Option<&BundleSnapshot>,
) -> Result<Vec<String>, Error> {
    let in_bundle = |id: &str| manifest.features.iter().any(|f| f == id);
    let requested = match &request.features {
        Some(list) => list.clone(),
        None => manifest.features.clone(),
    };
    if let Some(unknown) = requested.iter().find(|id| !in_bundle(id)) {
        let available = manifest.features.join(", ");
        return Err(FeatureError::UnknownFeature(unknown.clone(), available).into());
    }
    let mut ids: Vec<String> = installed_ids(installed)
        .filter(|id| in_bundle(id))
        .map(str::to_string)
        .collect();
    for id in requested {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// The parameter values the request gives: `--params FILE.json`, then each
/// `--set feature.param=value` over it.
fn given_params(request: &InstallRequest) -> Result<feature::UserParams, Error> {
    let mut given = match &request.params_file {
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
        given.entry(feature).or_default().extend(values);
    }
    Ok(given)
}

/// Parameters may only be given for features being installed.
fn check_sets_are_wanted(
    sets: &feature::UserParams,
    ids: &[String],
    manifest: &bundle::Manifest,
) -> Result<(), Error> {
    let Some(id) = sets.keys().find(|id| !ids.contains(id)) else {
        return Ok(());
    };
    Err(if manifest.features.contains(id) {
        Error::Refused(format!(
            "--set {id}.…: feature {id} is not being installed (add it to --features)"
        ))
    } else {
        let available = manifest.features.join(", ");
        FeatureError::UnknownFeature(id.clone(), available).into()
    })
}

/// The selected features rendered for this PBX.
struct Rendered {
    features: Vec<RenderedFeature>,
    /// What State records of each feature (its parameters).
    records: Vec<InstalledFeature>,
    /// Each feature's secret on this PBX, masked in a dry run's diff.
    secrets: Vec<String>,
}

impl Rendered {
    /// Every edit of every feature, for the target to place.
    fn edits(&self) -> Vec<(Location, RenderedEdit)> {
        self.features
            .iter()
            .flat_map(|r| r.edits.iter().cloned())
            .collect()
    }

    /// The contexts that must exist once the change is applied.
    fn contexts(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|r| r.contexts.iter().cloned())
            .collect()
    }

    /// The modules of the features that were not installed before (`module
    /// load` after the change).
    fn new_modules(&self, installed: Option<&BundleSnapshot>) -> Vec<String> {
        let before: Vec<&str> = installed_ids(installed).collect();
        self.features
            .iter()
            .filter(|r| !before.contains(&r.id.as_str()))
            .flat_map(|r| r.modules.iter().cloned())
            .collect()
    }
}

/// Renders each wanted feature with its effective parameters, what the PBX
/// contributes (directories, AMI address) and its secret.
fn render(
    target: &dyn Target,
    bundle_name: &str,
    wanted: &[WantedFeature],
    read: BundleReader,
) -> Result<Rendered, Error> {
    let dirs = target.runtime_dirs();
    let ami = read_ami_address(target, &dirs)?;
    let pbx = PbxVars {
        dirs: &dirs,
        ami: &ami,
    };
    let mut out = Rendered {
        features: Vec::new(),
        records: Vec::new(),
        secrets: Vec::new(),
    };
    for WantedFeature { def, user } in wanted {
        let params = def.resolve_params(user)?;
        let secret = super::feature_secret(target, bundle_name, &def.id)?;
        out.features
            .push(def.render(&params, &pbx, bundle_name, &secret, read)?);
        out.secrets.push(secret);
        out.records.push(InstalledFeature {
            id: def.id.clone(),
            version: def.version.clone(),
            user_params: user.clone(),
            params,
        });
    }
    Ok(out)
}

/// True when State already records the bundle exactly as `after` would.
fn same_state(installed: Option<&BundleSnapshot>, after: &BundleSnapshot) -> bool {
    installed.is_some_and(|b| {
        b.version == after.version
            && b.features == after.features
            && b.edits == after.edits
            && b.dirs == after.dirs
            && b.row_baselines == after.row_baselines
    })
}

/// The kind of change (`install` or `upgrade`) and its one-line summary.
fn summarize(
    manifest: &bundle::Manifest,
    installed: Option<&BundleSnapshot>,
    selection: &Selection,
) -> (&'static str, String) {
    let (name, version) = (&manifest.name, &manifest.version);
    let features = selection.wanted_ids().join(", ");
    let (kind, mut summary) = match installed {
        Some(old) if old.version != *version => (
            "upgrade",
            format!("upgrade {name} {} -> {version} ({features})", old.version),
        ),
        Some(_) => (
            "install",
            format!("reconfigure {name} {version} ({features})"),
        ),
        None => ("install", format!("install {name} {version} ({features})")),
    };
    if !selection.dropped.is_empty() {
        summary.push_str(&format!(
            "; removed features no longer in the bundle: {}",
            selection.dropped.join(", ")
        ));
    }
    if !selection.skipped.is_empty() {
        summary.push_str(&format!(
            "; skipped {} (set with --set or --params)",
            selection.skipped.join(", ")
        ));
    }
    (kind, summary)
}

/// The dry run's preview, with every feature secret masked in the diff.
fn masked_preview(
    session: &Session,
    plan: &crate::plan::Plan,
    summary: String,
    secrets: &[String],
) -> Result<super::Preview, Error> {
    let mut preview = super::preview(session, plan, summary)?;
    for part in &mut preview.changes {
        for secret in secrets {
            part.diff = part.diff.replace(secret.as_str(), super::SECRET_MASK);
        }
    }
    Ok(preview)
}

/// Where the PBX's AMI listens, from `<astetcdir>/manager.conf` (the PBX's
/// own file: on PBXs that put featpkg's AMI users elsewhere, the port and
/// address are still set here).
fn read_ami_address(
    target: &dyn Target,
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

//! `featpkg uninstall <bundle | feature | bundle:feature>`: take exactly our edits back out.

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::state::BundleSnapshot;

/// What the admin asked to remove.
#[derive(Debug, Clone, Default)]
pub struct UninstallRequest {
    pub name: String,
    pub dry_run: bool,
    pub no_reload: bool,
    pub force: bool,
}

/// How an uninstall ended.
#[derive(Debug, Clone)]
pub enum UninstallOutcome {
    DryRun(super::Preview),
    Applied(Applied),
}

/// Finds what `name` refers to: (bundle snapshot, Some(feature) or None for the whole bundle).
fn resolve(session: &Session, name: &str) -> Result<(BundleSnapshot, Option<String>), Error> {
    let bundles = session.state.bundles()?;
    if let Some(b) = bundles.iter().find(|b| b.name == name) {
        return Ok((b.clone(), None));
    }
    let (bundle_filter, feature) = match name.split_once(':') {
        Some((b, f)) => (Some(b), f),
        None => (None, name),
    };
    let matches: Vec<&BundleSnapshot> = bundles
        .iter()
        .filter(|b| bundle_filter.is_none_or(|f| f == b.name))
        .filter(|b| b.features.iter().any(|f| f.id == feature))
        .collect();
    match matches.as_slice() {
        [one] => Ok(((*one).clone(), Some(feature.to_string()))),
        [] => {
            let known: Vec<String> = bundles
                .iter()
                .flat_map(|b| {
                    std::iter::once(b.name.clone())
                        .chain(b.features.iter().map(|f| format!("{}:{}", b.name, f.id)))
                })
                .collect();
            Err(Error::Refused(format!(
                "nothing installed is called {name:?} (installed: {})",
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
        many => Err(Error::Refused(format!(
            "{name:?} is a feature of several bundles ({}); say bundle:feature",
            many.iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Removes a bundle, or one feature of it.
pub fn uninstall(
    session: &mut Session,
    request: &UninstallRequest,
) -> Result<UninstallOutcome, Error> {
    let (installed, feature) = resolve(session, &request.name)?;
    let removing = |f: &str| feature.as_deref().is_none_or(|x| x == f);
    // Plan only over the edits that go: the others are not touched at all.
    let going = BundleSnapshot {
        edits: installed
            .edits
            .iter()
            .filter(|e| removing(&e.feature))
            .cloned()
            .collect(),
        ..installed.clone()
    };
    let plan = crate::plan::plan(
        session.target.as_ref(),
        &installed.name,
        Some(&going),
        &[],
        request.force,
    )?;
    let remaining_features: Vec<_> = installed
        .features
        .iter()
        .filter(|f| !removing(&f.id))
        .cloned()
        .collect();
    let after = if remaining_features.is_empty() {
        None
    } else {
        Some(BundleSnapshot {
            features: remaining_features,
            edits: installed
                .edits
                .iter()
                .filter(|e| !removing(&e.feature))
                .cloned()
                .map(|mut e| {
                    // A removed block's "line ending added before me" fact
                    // passed to this one (the file lacked a final newline).
                    if plan
                        .added_newline_moved
                        .iter()
                        .any(|(path, edit)| *path == e.path && *edit == e.edit_id)
                    {
                        e.added_newline = true;
                    }
                    e
                })
                .collect(),
            dirs: plan.dirs.clone(),
            // Rows the removed features did not touch keep their baselines.
            row_baselines: installed
                .row_baselines
                .iter()
                .filter(|(path, _)| {
                    installed
                        .edits
                        .iter()
                        .any(|e| !removing(&e.feature) && &e.path == *path)
                })
                .map(|(path, row)| {
                    let row = plan.row_baselines.get(path).unwrap_or(row);
                    (path.clone(), row.clone())
                })
                .collect(),
            ..installed.clone()
        })
    };
    let what = match &feature {
        Some(f) => format!("feature {f} of {} {}", installed.name, installed.version),
        None => format!("{} {}", installed.name, installed.version),
    };
    let summary = format!("uninstall {what}");
    if request.dry_run {
        return Ok(UninstallOutcome::DryRun(super::preview(
            session, &plan, summary,
        )?));
    }
    let reload = reload_for(&plan, Vec::new(), Vec::new());
    let bundle = installed.name.clone();
    let applied = execute(
        session,
        Change {
            kind: "uninstall",
            bundle: &bundle,
            summary,
            plan,
            before: Some(installed),
            after,
            reload,
            undoes: None,
        },
        request.no_reload,
    )?;
    Ok(UninstallOutcome::Applied(applied))
}

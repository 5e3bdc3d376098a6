//! `featpkg uninstall <bundle | feature | bundle:feature>`: take exactly our edits back out.

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::feature::{RenderedContent, RenderedEdit};
use crate::plan::Plan;
use crate::state::BundleSnapshot;

/// What the admin asked to remove.
#[derive(Debug, Clone, Default)]
pub struct UninstallRequest {
    /// What to remove: a bundle (`featpkg-recipes`), one of its features
    /// (`busy-callback`, when only one bundle has it) or `bundle:feature`.
    pub name: String,
    /// `--dry-run`: show the diff of what would be removed, change nothing.
    pub dry_run: bool,
    /// `--no-reload`: change the files but do not reload Asterisk (the admin will).
    pub no_reload: bool,
    /// `--force`: remove featpkg's blocks and files even when edited by hand
    /// since, losing those edits.
    pub force: bool,
}

/// How an uninstall ended.
#[derive(Debug, Clone)]
pub enum UninstallOutcome {
    /// `--dry-run`: what the uninstall would do; nothing was changed.
    DryRun(super::Preview),
    /// The uninstall ran as one transaction.
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
    let removal = Removal {
        installed: &installed,
        feature: feature.as_deref(),
    };
    // Plan only over the edits that go: the others are not touched at all.
    let plan = crate::plan::plan(
        session.target.as_ref(),
        &installed.name,
        Some(&removal.going()),
        &[],
        request.force,
    )?;
    let after = removal.remaining(&plan);
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

/// What an uninstall takes out of an installed bundle: one feature, or all.
struct Removal<'a> {
    installed: &'a BundleSnapshot,
    /// `None`: the whole bundle.
    feature: Option<&'a str>,
}

impl Removal<'_> {
    /// True when the feature `id` goes.
    fn removes(&self, id: &str) -> bool {
        self.feature.is_none_or(|f| f == id)
    }

    /// The bundle as far as it goes: only the edits of the features removed.
    fn going(&self) -> BundleSnapshot {
        BundleSnapshot {
            edits: self
                .installed
                .edits
                .iter()
                .filter(|(_, e)| self.removes(&e.feature))
                .cloned()
                .collect(),
            ..self.installed.clone()
        }
    }

    /// What State records of the bundle once `plan` has removed the features:
    /// `None` when no feature is left.
    fn remaining(&self, plan: &Plan) -> Option<BundleSnapshot> {
        let features: Vec<_> = self
            .installed
            .features
            .iter()
            .filter(|f| !self.removes(&f.id))
            .cloned()
            .collect();
        if features.is_empty() {
            return None;
        }
        let mut after = BundleSnapshot {
            features,
            edits: self.remaining_edits(plan),
            dirs: plan.dirs.clone(),
            ..self.installed.clone()
        };
        self.keep_row_baselines(plan, &mut after);
        Some(after)
    }

    /// The edits of the features that stay.
    fn remaining_edits(&self, plan: &Plan) -> Vec<(String, RenderedEdit)> {
        self.installed
            .edits
            .iter()
            .filter(|(_, e)| !self.removes(&e.feature))
            .cloned()
            .map(|(path, mut e)| {
                // A removed block's "line ending added before me" fact
                // passed to this one (the file lacked a final newline).
                let moved = plan
                    .added_newline_moved
                    .iter()
                    .any(|(p, edit)| *p == path && *edit == e.edit_id);
                if let RenderedContent::Block { added_newline, .. } = &mut e.content
                    && moved
                {
                    *added_newline = true;
                }
                (path, e)
            })
            .collect()
    }

    /// Rows the removed features did not touch keep their baselines (as the
    /// plan has them, when it has them): `after` starts from the installed ones.
    fn keep_row_baselines(&self, plan: &Plan, after: &mut BundleSnapshot) {
        let edits = &self.installed.edits;
        after.row_baselines.retain(|path, _| {
            edits
                .iter()
                .any(|(p, e)| !self.removes(&e.feature) && p == path)
        });
        for (path, row) in &mut after.row_baselines {
            if let Some(planned) = plan.row_baselines.get(path) {
                *row = planned.clone();
            }
        }
    }
}

//! `featpkg rollback`: undo the last committed transaction (install, upgrade or
//! uninstall) to the exact bytes it replaced. Repeat to go further back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::change::{DocChange, DocState, Phase};
use crate::plan::{Plan, empty_after_plan};

/// Options for rollback.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    /// `--dry-run`: show the diff of what would be undone, change nothing.
    pub dry_run: bool,
    /// `--no-reload`: write the files back but do not reload Asterisk (the admin will).
    pub no_reload: bool,
    /// Undo even over files changed since that transaction.
    pub force: bool,
}

/// How a rollback ended.
#[derive(Debug, Clone)]
pub enum RollbackOutcome {
    /// History holds no committed transaction left to undo.
    NothingToUndo,
    /// `--dry-run`: what the rollback would do; nothing was changed.
    DryRun(super::Preview),
    /// The rollback ran as a transaction of its own (kind `rollback`).
    Applied(Applied),
}

/// Undoes the newest committed transaction that is not itself a rollback.
pub fn rollback(
    session: &mut Session,
    request: &RollbackRequest,
) -> Result<RollbackOutcome, Error> {
    let target = session.target.as_ref();
    let docs = |runtime_path: &str, is_dir: bool| target.recorded_doc(runtime_path, is_dir);
    let Some(txn) = session.state.last_undoable(&docs)? else {
        return Ok(RollbackOutcome::NothingToUndo);
    };
    let (mut plan, drift) = inverted(&txn.changes)?;
    if !drift.is_empty() {
        if !request.force {
            return Err(Error::Refused(format!(
                "cannot roll back transaction {} ({}): changed since then: {}; re-run with --force to restore the old bytes anyway",
                txn.id,
                txn.summary,
                drift.join(", ")
            )));
        }
        plan.forced = drift
            .iter()
            .map(|p| {
                format!(
                    "{p}: changes since transaction {} overwritten (--force)",
                    txn.id
                )
            })
            .collect();
    }
    // Directories: created ones go after the files that were in them, parents last,
    // and only when nothing else is left in them (as uninstall does); removed
    // ones come back before them, parents first.
    plan.changes.sort_by(|a, b| match (a.phase(), b.phase()) {
        (Phase::RemoveDir, Phase::RemoveDir) => b.runtime_path.cmp(&a.runtime_path),
        (Phase::MakeDir, Phase::MakeDir) => a.runtime_path.cmp(&b.runtime_path),
        (x, y) => x.cmp(&y),
    });
    keep_dirs_still_in_use(&mut plan);
    let summary = format!("rollback of transaction {} ({})", txn.id, txn.summary);
    if request.dry_run {
        return Ok(RollbackOutcome::DryRun(super::preview(
            session, &plan, summary,
        )?));
    }
    let contexts = Vec::new();
    let reload = reload_for(&plan, Vec::new(), contexts);
    let current = session.state.bundle(&txn.bundle)?;
    let applied = execute(
        session,
        Change {
            kind: "rollback",
            bundle: &txn.bundle,
            summary,
            plan,
            before: current,
            after: txn.bundle_before.clone(),
            reload,
            undoes: Some(txn.id),
        },
        request.no_reload,
    )?;
    Ok(RollbackOutcome::Applied(applied))
}

/// The recorded changes, newest first, inverted against what is there now:
/// each document goes back to its state before the transaction. Returns the
/// plan and the documents changed since (drift): their present state is not
/// the one the transaction left. A directory is only made or removed again,
/// never "drifted".
fn inverted(recorded: &[DocChange]) -> Result<(Plan, Vec<String>), Error> {
    let mut plan = Plan::default();
    let mut drift = Vec::new();
    for change in recorded.iter().rev() {
        let current = change.doc.read()?;
        let now = current.as_ref().map(DocState::fingerprint);
        if !change.is_dir() && now != change.after.as_ref().map(DocState::fingerprint) {
            drift.push(change.runtime_path.clone());
        }
        let unchanged = if change.is_dir() {
            current.is_some() == change.before.is_some()
        } else {
            current == change.before
        };
        if !unchanged {
            plan.changes.push(DocChange {
                runtime_path: change.runtime_path.clone(),
                doc: change.doc.clone(),
                before: current,
                after: change.before.clone(),
            });
        }
    }
    Ok((plan, drift))
}

/// Drops from the plan's directory removals (deepest first) every directory that would still
/// hold something once the plan's files and deeper directories are gone: a file
/// the admin put there since is not featpkg's to remove.
fn keep_dirs_still_in_use(plan: &mut Plan) {
    let removed_files = plan.removed_files();
    let mut removed_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut kept = Vec::new();
    plan.changes.retain(|c| {
        let (Phase::RemoveDir, Some(path)) = (c.phase(), c.host_path()) else {
            return true;
        };
        let empty = std::fs::read_dir(path)
            .is_ok_and(|entries| empty_after_plan(entries, &removed_files, &removed_dirs));
        if empty {
            removed_dirs.insert(path.clone());
        } else {
            kept.push(format!(
                "kept {}/: it holds files featpkg did not create",
                c.runtime_path
            ));
        }
        empty
    });
    plan.forced.extend(kept);
}

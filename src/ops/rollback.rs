//! `featpkg rollback`: undo the last committed transaction (install, upgrade or
//! uninstall) to the exact bytes it replaced. Repeat to go further back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::change::{DocChange, DocState, Phase};
use crate::plan::{Plan, empty_after_plan};
use crate::state::{RecordedChange, TxnRecord};

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
    // Each document is read once: drift is found, and the plan made, from these.
    let present = txn
        .changes
        .iter()
        .map(|r| r.change.doc.read())
        .collect::<Result<Vec<_>, _>>()?;
    let drift = drifted(&txn.changes, &present);
    if !drift.is_empty() && !request.force {
        return Err(Error::Refused(format!(
            "cannot roll back transaction {} ({}): changed since then: {}; re-run with --force to restore the old bytes anyway",
            txn.id,
            txn.summary,
            drift
                .iter()
                .map(|d| d.runtime_path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut plan = inverted(&txn, present, &drift)?;
    plan.forced = drift
        .iter()
        .map(|d| {
            if d.in_regions {
                format!(
                    "{}: featpkg's changes of transaction {} undone, the file's other changes since kept (--force)",
                    d.runtime_path, txn.id
                )
            } else {
                format!(
                    "{}: changes since transaction {} overwritten (--force)",
                    d.runtime_path, txn.id
                )
            }
        })
        .collect();
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

/// A document changed since the transaction: its present state is not the
/// one the transaction left. A directory is only made or removed again,
/// never "drifted".
struct Drift {
    runtime_path: String,
    /// History keeps only featpkg's regions of it: a forced rollback puts
    /// those back and keeps the rest of the file as it is now.
    in_regions: bool,
}

/// The recorded documents changed since the transaction, newest change
/// first; `present` holds each one's present state.
fn drifted(recorded: &[RecordedChange], present: &[Option<DocState>]) -> Vec<Drift> {
    recorded
        .iter()
        .zip(present)
        .rev()
        .filter(|(r, now)| {
            !r.change.is_dir()
                && now.as_ref().map(DocState::fingerprint)
                    != r.change.after.as_ref().map(DocState::fingerprint)
        })
        .map(|(r, _)| Drift {
            runtime_path: r.change.runtime_path.clone(),
            in_regions: r.before_regions.is_some(),
        })
        .collect()
}

/// The recorded changes, newest first, inverted against what is there now
/// (`present`, one state per change): each document goes back to its state
/// before the transaction (over the `drift`, which the caller allowed).
/// Refuses, naming the file, when a file's state before cannot be rebuilt
/// from its present bytes.
fn inverted(
    txn: &TxnRecord,
    present: Vec<Option<DocState>>,
    drift: &[Drift],
) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    for (r, current) in txn.changes.iter().zip(present).rev() {
        let change = &r.change;
        let drifted = drift.iter().any(|d| d.runtime_path == change.runtime_path);
        let before = r.before(current.as_ref(), drifted).map_err(|why| {
            Error::Refused(format!(
                "cannot roll back transaction {} ({}): {}: {why}; nothing was changed",
                txn.id, txn.summary, change.runtime_path
            ))
        })?;
        let unchanged = if change.is_dir() {
            current.is_some() == before.is_some()
        } else {
            current == before
        };
        if !unchanged {
            plan.changes.push(DocChange {
                runtime_path: change.runtime_path.clone(),
                doc: change.doc.clone(),
                before: current,
                after: before,
            });
        }
    }
    Ok(plan)
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

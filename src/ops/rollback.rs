//! `featpkg rollback`: undo the last committed transaction (install, upgrade or
//! uninstall) to the exact bytes it replaced. Repeat to go further back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::change::{Doc, DocChange, DocState, Phase};
use crate::plan::{Plan, empty_after_plan};
use crate::state::TxnFile;
use crate::txn::FileState;

/// Options for rollback.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    pub dry_run: bool,
    pub no_reload: bool,
    /// Undo even over files changed since that transaction.
    pub force: bool,
}

/// How a rollback ended.
#[derive(Debug, Clone)]
pub enum RollbackOutcome {
    NothingToUndo,
    DryRun(super::Preview),
    Applied(Applied),
}

/// Undoes the newest committed transaction that is not itself a rollback.
pub fn rollback(
    session: &mut Session,
    request: &RollbackRequest,
) -> Result<RollbackOutcome, Error> {
    let Some(txn) = session.state.last_undoable()? else {
        return Ok(RollbackOutcome::NothingToUndo);
    };
    // The recorded changes, inverted against what is there now.
    let mut plan = Plan::default();
    let mut drift = Vec::new();
    for f in txn.files.iter().rev() {
        let (doc, restored) = recorded(session.target.as_ref(), &txn.id, f)?;
        let current = doc.read()?;
        if f.is_dir {
            // A directory is only made or removed again, never "drifted".
            if current.is_some() != restored.is_some() {
                plan.changes.push(DocChange {
                    runtime_path: f.path.clone(),
                    doc,
                    before: current,
                    after: restored,
                });
            }
            continue;
        }
        if current.as_ref().map(DocState::fingerprint) != f.after_sha256 {
            drift.push(f.path.clone());
        }
        if restored != current {
            plan.changes.push(DocChange {
                runtime_path: f.path.clone(),
                doc,
                before: current,
                after: restored,
            });
        }
    }
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

/// The document a history record names and its state before that transaction.
/// Rows are kept in the history as JSON, files as their bytes and metadata.
fn recorded(
    target: &dyn crate::pbx::Target,
    txn_id: &i64,
    f: &TxnFile,
) -> Result<(Doc, Option<DocState>), Error> {
    if f.is_dir {
        let doc = Doc::Dir {
            path: target.host_path(&f.path),
        };
        let restored = f.before.as_ref().map(|_| DocState::Dir {
            mode: f.before_mode,
        });
        // A directory the transaction made is removed with the mode it was made with.
        return Ok((doc, restored));
    }
    Ok(match target.document(&f.path) {
        Doc::File { path, access } => (
            Doc::File { path, access },
            f.before.as_ref().map(|content| {
                DocState::File(FileState {
                    content: content.clone(),
                    mode: f.before_mode,
                    uid: f.before_uid,
                    gid: f.before_gid,
                })
            }),
        ),
        Doc::Dir { .. } => unreachable!("a target names files and rows, not directories"),
        Doc::Row(row) => {
            let restored = match &f.before {
                Some(json) => Some(DocState::Row(serde_json::from_slice(json).map_err(
                    |e| {
                        Error::Refused(format!(
                            "transaction {txn_id} keeps {} in a form this featpkg cannot read: {e}",
                            f.path
                        ))
                    },
                )?)),
                None => None,
            };
            (Doc::Row(row), restored)
        }
    })
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

//! `featpkg rollback`: undo the last committed transaction (install, upgrade or
//! uninstall) to the exact bytes it replaced. Repeat to go further back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{Applied, Change, Error, Session, execute, reload_for};
use crate::hash::sha256_hex;
use crate::pbx::Document;
use crate::plan::{DirChange, FileChange, Plan, RowChange, empty_after_plan, read_document_state};
use crate::row::RowState;
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
    let mut plan = Plan::default();
    let mut drift = Vec::new();
    for f in txn.files.iter().rev() {
        let (host_path, access) = match session.target.document(&f.path) {
            Document::File { path, access } => (path, access),
            Document::Row(row) => {
                // Rows are kept in the history as JSON (see ops::execute).
                let current = crate::row::read(&row)?;
                let current_hash = current
                    .as_ref()
                    .map(|c| sha256_hex(&serde_json::to_vec(c).expect("row serialises")));
                if current_hash != f.after_sha256 {
                    drift.push(f.path.clone());
                }
                let restored: Option<RowState> = match &f.before {
                    Some(json) => Some(serde_json::from_slice(json).map_err(|e| {
                        Error::Refused(format!(
                            "transaction {} keeps {} in a form this featpkg cannot read: {e}",
                            txn.id, f.path
                        ))
                    })?),
                    None => None,
                };
                if restored != current {
                    let text = |r: &Option<RowState>| {
                        crate::row::decode_content(r.as_ref().and_then(|r| r.content.as_deref()))
                    };
                    plan.rows.push(RowChange {
                        runtime_path: f.path.clone(),
                        before_text: text(&current),
                        after_text: text(&restored),
                        row,
                        before: current,
                        after: restored,
                    });
                }
                continue;
            }
        };
        if f.is_dir {
            let created = f.before.is_none();
            if created {
                if host_path.is_dir() {
                    plan.remove_dirs.push(DirChange {
                        runtime_path: f.path.clone(),
                        host_path,
                        create: false,
                        mode: f.after_mode,
                    });
                }
            } else if !host_path.exists() {
                plan.create_dirs.push(DirChange {
                    runtime_path: f.path.clone(),
                    host_path,
                    create: true,
                    mode: f.before_mode,
                });
            }
            continue;
        }
        let current = read_document_state(&host_path, &access)?;
        let current_hash = current.as_ref().map(|c| sha256_hex(&c.content));
        if current_hash != f.after_sha256 {
            drift.push(f.path.clone());
        }
        let restored = f.before.as_ref().map(|content| FileState {
            content: content.clone(),
            mode: f.before_mode,
            uid: f.before_uid,
            gid: f.before_gid,
        });
        if restored != current {
            plan.files.push(FileChange {
                runtime_path: f.path.clone(),
                host_path,
                access,
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
    // and only when nothing else is left in them (as uninstall does).
    plan.remove_dirs
        .sort_by(|a, b| b.runtime_path.cmp(&a.runtime_path));
    keep_dirs_still_in_use(&mut plan);
    plan.create_dirs
        .sort_by(|a, b| a.runtime_path.cmp(&b.runtime_path));
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

/// Drops from `plan.remove_dirs` (deepest first) every directory that would still
/// hold something once the plan's files and deeper directories are gone: a file
/// the admin put there since is not featpkg's to remove.
fn keep_dirs_still_in_use(plan: &mut Plan) {
    let removed_files = plan.removed_files();
    let mut removed_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut kept = Vec::new();
    plan.remove_dirs.retain(|d| {
        let empty = std::fs::read_dir(&d.host_path)
            .is_ok_and(|entries| empty_after_plan(entries, &removed_files, &removed_dirs));
        if empty {
            removed_dirs.insert(d.host_path.clone());
        } else {
            kept.push(format!(
                "kept {}/: it holds files featpkg did not create",
                d.runtime_path
            ));
        }
        empty
    });
    plan.forced.extend(kept);
}

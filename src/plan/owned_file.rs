//! Planning a whole file featpkg owns (a binary, its own conf file): written as
//! rendered, replaced or removed only while it is still what featpkg wrote.

use super::{DocEdits, PlanError, override_with_force, own_ids};
use crate::feature::{RenderedContent, RenderedEdit, Written};
use crate::hash::sha256_hex;
use crate::txn::FileState;

/// A whole file we own, whose state is `before` (None: it does not exist): its
/// state afterwards (None: removed, or stays absent) and its record. Hand
/// changes overridden by `--force` are noted in `forced`.
pub(super) fn plan_owned_file(
    edits: DocEdits,
    before: Option<&FileState>,
    forced: &mut Vec<String>,
) -> Result<(Option<FileState>, Vec<RenderedEdit>), PlanError> {
    let path = edits.path;
    let owner_for_new = edits.target.owner_for_new(path);
    check_owned_file(edits, before, forced)?;
    let Some(new) = edits.news.first() else {
        return Ok((None, Vec::new()));
    };
    let RenderedContent::File {
        bytes: Written::Full(bytes),
        mode,
    } = &new.content
    else {
        return Err(PlanError::Config {
            path: path.into(),
            message: format!(
                "{} mixes a block and an owned file on one path",
                new.edit_id
            ),
        });
    };
    // A file replaced keeps its owner; a new one gets the target's, else ours.
    let after = FileState {
        content: bytes.clone(),
        mode: *mode,
        uid: before
            .map(|b| b.uid)
            .or(owner_for_new.map(|o| o.0))
            .unwrap_or_else(|| own_ids().0),
        gid: before
            .map(|b| b.gid)
            .or(owner_for_new.map(|o| o.1))
            .unwrap_or_else(|| own_ids().1),
    };
    let edit = RenderedEdit {
        feature: new.feature.clone(),
        edit_id: new.edit_id.clone(),
        content: RenderedContent::File {
            bytes: Written::Sha256(sha256_hex(bytes)),
            mode: *mode,
        },
    };
    Ok((Some(after), vec![edit]))
}

/// The file on disk against featpkg's record of it: one changed or deleted by
/// hand is refused unless `--force`; one featpkg has no record of is never
/// overwritten.
fn check_owned_file(
    edits: DocEdits,
    before: Option<&FileState>,
    forced: &mut Vec<String>,
) -> Result<(), PlanError> {
    let path = edits.path;
    let new = edits.news.first();
    let action = if new.is_some() { "replace" } else { "remove" };
    match (edits.olds.first(), before) {
        (Some(old), Some(current)) if sha256_hex(&current.content) != old.sha256() => {
            override_with_force(
                edits.force,
                forced,
                PlanError::ModifiedFile {
                    path: path.into(),
                    edit: old.edit_id.clone(),
                    what: "changed",
                    action,
                },
                format!(
                    "{path}: hand changes to {} overwritten (--force)",
                    old.edit_id
                ),
            )
        }
        (Some(old), None) => override_with_force(
            edits.force,
            forced,
            PlanError::ModifiedFile {
                path: path.into(),
                edit: old.edit_id.clone(),
                what: "deleted",
                action,
            },
            format!("{path}: was deleted by hand (--force)"),
        ),
        (None, Some(_)) => Err(PlanError::FileInTheWay {
            path: path.into(),
            edit: new.map(|n| n.edit_id.clone()).unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

//! `featpkg status` and `featpkg verify`: what is installed, and whether the
//! files still hold exactly what featpkg wrote (drift).

use serde::Serialize;

use super::{Error, Session};
use crate::change::Doc;
use crate::feature::{RenderedContent, RenderedEdit};
use crate::hash::sha256_hex;
use crate::marker::{self, BlockId};
use crate::plan::PlanError;
use crate::state::BundleSnapshot;
use crate::txn::FileState;

/// Everything installed, from State.
pub fn status(session: &Session) -> Result<Vec<BundleSnapshot>, Error> {
    Ok(session.state.bundles()?)
}

/// One difference between what featpkg wrote and what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The bundle that installed the edit.
    pub bundle: String,
    /// The edit id, `<feature>/<edit>`: `busy-callback/dialplan`.
    pub edit: String,
    /// The document as the PBX names it: `/etc/asterisk/extensions.conf`.
    pub path: String,
    /// `modified`, `missing`, `markers` (broken/duplicated markers) or
    /// `not-applied` (intact, but the PBX does not use it: a PBX that
    /// generates modules.conf left the module hook's lines out).
    pub kind: String,
    /// What differs, for a person: `mode is 0644, featpkg installed 0755`.
    pub detail: String,
}

/// Checks every installed edit against the disk.
pub fn verify(session: &Session) -> Result<Vec<Drift>, Error> {
    let mut out = Vec::new();
    for bundle in session.state.bundles()? {
        for (path, edit) in &bundle.edits {
            if let Some((kind, detail)) = edit_drift(session, &bundle.name, path, edit)? {
                out.push(Drift {
                    bundle: bundle.name.clone(),
                    edit: edit.edit_id.clone(),
                    path: path.clone(),
                    kind: kind.into(),
                    detail,
                });
            }
        }
    }
    Ok(out)
}

/// How one installed edit differs from its document (at runtime `path`) now
/// (kind, detail), if it does. A document's text is checked whatever holds it
/// (a file, a database row).
fn edit_drift(
    session: &Session,
    bundle: &str,
    path: &str,
    edit: &RenderedEdit,
) -> Result<Option<(&'static str, String)>, Error> {
    let doc = session.target.document(path);
    let current = match doc.read() {
        Err(PlanError::Symlink { target, .. }) => {
            return Ok(Some((
                "modified",
                format!("replaced by a symbolic link to {target}"),
            )));
        }
        other => other?,
    };
    let Some(current) = current else {
        let what = if matches!(doc, Doc::Row(_)) {
            "row"
        } else {
            "file"
        };
        return Ok(Some(("missing", format!("{what} does not exist"))));
    };
    Ok(match &edit.content {
        RenderedContent::File { mode, .. } => owned_file_drift(edit, *mode, current.as_file()),
        RenderedContent::Block { .. } => {
            let text = current.text();
            block_drift(bundle, edit, &text).or_else(|| {
                session
                    .target
                    .not_applied(path, &block_text(bundle, edit, &text))
                    .map(|detail| ("not-applied", detail))
            })
        }
    })
}

/// How a whole file featpkg owns differs from what it installed (with `mode`), if it does.
fn owned_file_drift(
    edit: &RenderedEdit,
    mode: u32,
    current: Option<&FileState>,
) -> Option<(&'static str, String)> {
    let Some(current) = current else {
        return Some(("modified", "not a file any more".into()));
    };
    if sha256_hex(&current.content) != edit.sha256() {
        Some((
            "modified",
            "file content differs from what featpkg installed".into(),
        ))
    } else if current.mode != mode {
        Some((
            "modified",
            format!("mode is {:04o}, featpkg installed {mode:04o}", current.mode),
        ))
    } else {
        None
    }
}

/// The body of `edit`'s block in `text`: `None` when its markers are not there.
fn installed_block<'t>(
    bundle: &str,
    edit: &RenderedEdit,
    text: &'t [u8],
) -> Result<Option<&'t [u8]>, marker::MarkerError> {
    let id = BlockId {
        bundle: bundle.to_string(),
        edit: edit.edit_id.clone(),
    };
    let comment = edit.comment().unwrap_or(';');
    marker::block_body(text, crate::plan::style(comment), &id)
}

/// The body of an intact block in `text` (empty if it cannot be read).
fn block_text(bundle: &str, edit: &RenderedEdit, text: &[u8]) -> Vec<u8> {
    installed_block(bundle, edit, text)
        .ok()
        .flatten()
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// How a block in `text` differs from what featpkg wrote, if it does.
fn block_drift(bundle: &str, edit: &RenderedEdit, text: &[u8]) -> Option<(&'static str, String)> {
    match installed_block(bundle, edit, text) {
        Err(e) => Some(("markers", e.to_string())),
        Ok(None) => Some(("missing", "block markers not found".into())),
        Ok(Some(body)) if sha256_hex(body) != edit.sha256() => Some((
            "modified",
            "block content differs from what featpkg wrote".into(),
        )),
        Ok(Some(_)) => None,
    }
}

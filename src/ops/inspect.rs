//! `featpkg status` and `featpkg verify`: what is installed, and whether the
//! files still hold exactly what featpkg wrote (drift).

use serde::Serialize;

use super::{Error, Session};
use crate::change::Doc;
use crate::hash::sha256_hex;
use crate::marker::{self, BlockId, CommentStyle};
use crate::plan::{PlanError, read_document_state};
use crate::state::{BundleSnapshot, EditKind};

/// Everything installed, from State.
pub fn status(session: &Session) -> Result<Vec<BundleSnapshot>, Error> {
    Ok(session.state.bundles()?)
}

/// One difference between what featpkg wrote and what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub bundle: String,
    pub edit: String,
    pub path: String,
    /// `modified`, `missing`, `markers` (broken/duplicated markers) or
    /// `not-applied` (intact, but the PBX does not use it: MikoPBX's
    /// modules.conf lacks the module hook's lines).
    pub kind: String,
    pub detail: String,
}

/// Checks every installed edit against the disk.
pub fn verify(session: &Session) -> Result<Vec<Drift>, Error> {
    let mut out = Vec::new();
    for bundle in session.state.bundles()? {
        for edit in &bundle.edits {
            let drift_of = |kind: &str, detail: String| Drift {
                bundle: bundle.name.clone(),
                edit: edit.edit_id.clone(),
                path: edit.path.clone(),
                kind: kind.into(),
                detail,
            };
            let (host, access) = match session.target.document(&edit.path) {
                Doc::File { path, access } => (path, access),
                Doc::Dir { .. } => unreachable!("a target names files and rows, not directories"),
                Doc::Row(row) => {
                    // A row's text, decoded, is checked like a file's.
                    match crate::row::read(&row)? {
                        None => out.push(drift_of("missing", "row does not exist".into())),
                        Some(row_state) => {
                            let text = crate::row::decode_content(row_state.content.as_deref());
                            if let Some((kind, detail)) = block_drift(&bundle.name, edit, &text) {
                                out.push(drift_of(kind, detail));
                            }
                        }
                    }
                    continue;
                }
            };
            let current = match read_document_state(&host, &access) {
                Err(PlanError::Symlink { target, .. }) => {
                    out.push(drift_of(
                        "modified",
                        format!("replaced by a symbolic link to {target}"),
                    ));
                    continue;
                }
                other => other?,
            };
            let mut drift = |kind: &str, detail: String| out.push(drift_of(kind, detail));
            let Some(current) = current else {
                drift("missing", "file does not exist".into());
                continue;
            };
            match edit.kind {
                EditKind::File => {
                    if sha256_hex(&current.content) != edit.sha256 {
                        drift(
                            "modified",
                            "file content differs from what featpkg installed".into(),
                        );
                    } else if current.mode != edit.mode {
                        drift(
                            "modified",
                            format!(
                                "mode is {:04o}, featpkg installed {:04o}",
                                current.mode, edit.mode
                            ),
                        );
                    }
                }
                EditKind::Block => {
                    if let Some((kind, detail)) = block_drift(&bundle.name, edit, &current.content)
                    {
                        drift(kind, detail);
                    } else if let Some(detail) = session.target.not_applied(
                        &edit.path,
                        &block_text(&bundle.name, edit, &current.content),
                    ) {
                        drift("not-applied", detail);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The body of an intact block in `text` (empty if it cannot be read).
fn block_text(bundle: &str, edit: &crate::state::InstalledEdit, text: &[u8]) -> Vec<u8> {
    let style = if edit.comment == '#' {
        CommentStyle::Hash
    } else {
        CommentStyle::Semicolon
    };
    let id = BlockId {
        bundle: bundle.to_string(),
        edit: edit.edit_id.clone(),
    };
    marker::block_body(text, style, &id)
        .ok()
        .flatten()
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// How a block in `text` differs from what featpkg wrote, if it does.
fn block_drift(
    bundle: &str,
    edit: &crate::state::InstalledEdit,
    text: &[u8],
) -> Option<(&'static str, String)> {
    let style = if edit.comment == '#' {
        CommentStyle::Hash
    } else {
        CommentStyle::Semicolon
    };
    let id = BlockId {
        bundle: bundle.to_string(),
        edit: edit.edit_id.clone(),
    };
    match marker::block_body(text, style, &id) {
        Err(e) => Some(("markers", e.to_string())),
        Ok(None) => Some(("missing", "block markers not found".into())),
        Ok(Some(body)) if sha256_hex(body) != edit.sha256 => Some((
            "modified",
            "block content differs from what featpkg wrote".into(),
        )),
        Ok(Some(_)) => None,
    }
}

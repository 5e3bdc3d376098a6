//! `featpkg status` and `featpkg verify`: what is installed, and whether the
//! files still hold exactly what featpkg wrote (drift).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Serialize;

use super::{Error, Session};
use crate::change::{Doc, DocState};
use crate::feature::{RenderedContent, RenderedEdit};
use crate::hash::sha256_hex;
use crate::marker;
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
    // Each document is read and its markers scanned once, however many edits
    // it holds (a 30 MB dialplan holds several).
    let mut documents: BTreeMap<String, Current> = BTreeMap::new();
    for bundle in session.state.bundles()? {
        for (path, edit) in &bundle.edits {
            let current = match documents.entry(path.clone()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(Current::read(session, path)?),
            };
            if let Some((kind, detail)) = edit_drift(session, &bundle.name, path, edit, current) {
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

/// A document as verify finds it.
enum Current {
    /// Replaced by a symbolic link (to this target).
    Symlink(String),
    /// Not there: a file, or a row (`true`).
    Missing { row: bool },
    /// There: its state, its text, and its markers once scanned (per comment style).
    Present {
        state: DocState,
        text: Vec<u8>,
        blocks: BTreeMap<char, Result<Vec<marker::Block>, marker::MarkerError>>,
    },
}

impl Current {
    fn read(session: &Session, path: &str) -> Result<Current, Error> {
        let doc = session.target.document(path);
        Ok(match doc.read() {
            Err(PlanError::Symlink { target, .. }) => Current::Symlink(target),
            other => match other? {
                None => Current::Missing {
                    row: matches!(doc, Doc::Row(_)),
                },
                Some(DocState::File(file)) => Current::Present {
                    text: Vec::new(),
                    state: DocState::File(file),
                    blocks: BTreeMap::new(),
                },
                Some(state) => Current::Present {
                    text: state.text(),
                    state,
                    blocks: BTreeMap::new(),
                },
            },
        })
    }
}

/// How one installed edit differs from its document (at runtime `path`) now
/// (kind, detail), if it does. A document's text is checked whatever holds it
/// (a file, a database row).
fn edit_drift(
    session: &Session,
    bundle: &str,
    path: &str,
    edit: &RenderedEdit,
    current: &mut Current,
) -> Option<(&'static str, String)> {
    let (state, text, blocks) = match current {
        Current::Symlink(target) => {
            return Some((
                "modified",
                format!("replaced by a symbolic link to {target}"),
            ));
        }
        Current::Missing { row } => {
            let what = if *row { "row" } else { "file" };
            return Some(("missing", format!("{what} does not exist")));
        }
        Current::Present {
            state,
            text,
            blocks,
        } => (state, text, blocks),
    };
    match &edit.content {
        RenderedContent::File { mode, .. } => owned_file_drift(edit, *mode, state.as_file()),
        RenderedContent::Block { .. } => {
            // A file's text is its content (not copied); a row's, its text.
            let text: &[u8] = match state.as_file() {
                Some(file) => &file.content,
                None => text,
            };
            let comment = edit.comment().unwrap_or(';');
            let scanned = blocks
                .entry(comment)
                .or_insert_with(|| marker::scan(text, crate::plan::style(comment)));
            let body = installed_block(bundle, edit, text, scanned);
            block_drift(edit, &body).or_else(|| {
                let body = body.ok().flatten().unwrap_or_default();
                session
                    .target
                    .not_applied(path, body)
                    .map(|detail| ("not-applied", detail))
            })
        }
    }
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

/// The body of `edit`'s block in `text`, whose markers `scanned` found:
/// `None` when its markers are not there.
fn installed_block<'t>(
    bundle: &str,
    edit: &RenderedEdit,
    text: &'t [u8],
    scanned: &Result<Vec<marker::Block>, marker::MarkerError>,
) -> Result<Option<&'t [u8]>, marker::MarkerError> {
    let blocks = scanned.as_ref().map_err(Clone::clone)?;
    Ok(blocks
        .iter()
        .find(|b| b.id.bundle == bundle && b.id.edit == edit.edit_id)
        .map(|b| &text[b.body.clone()]))
}

/// How a block (its body in the document, as [`installed_block`] found it)
/// differs from what featpkg wrote, if it does.
fn block_drift(
    edit: &RenderedEdit,
    body: &Result<Option<&[u8]>, marker::MarkerError>,
) -> Option<(&'static str, String)> {
    match body {
        Err(e) => Some(("markers", e.to_string())),
        Ok(None) => Some(("missing", "block markers not found".into())),
        Ok(Some(body)) if sha256_hex(body) != edit.sha256() => Some((
            "modified",
            "block content differs from what featpkg wrote".into(),
        )),
        Ok(Some(_)) => None,
    }
}

//! How State writes down an installed edit: one row of the `edits` table, and
//! the same fields as JSON in `status --json` and in transaction snapshots.
//! The record is the 1.0 one, so older databases and snapshots read back as
//! they were written; in memory an installed edit is a [`RenderedEdit`] known
//! by fingerprint, beside its document's runtime path.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::feature::{RenderedContent, RenderedEdit, Written};

/// An installed edit as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct EditRecord {
    pub feature: String,
    pub edit_id: String,
    /// `block` or `file`.
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub added_newline: bool,
    /// The marker comment character (`;` for a whole file, which has none).
    pub comment: char,
    /// A whole file's permission bits. Records written before 0.2 also carry
    /// the document's mode for a block; nothing reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl EditRecord {
    /// The record of `edit`, installed in the document at `path`.
    pub fn of((path, edit): &(String, RenderedEdit)) -> EditRecord {
        let (kind, added_newline, comment, mode) = match &edit.content {
            RenderedContent::Block {
                comment,
                added_newline,
                ..
            } => ("block", *added_newline, *comment, None),
            RenderedContent::File { mode, .. } => ("file", false, ';', Some(*mode)),
        };
        EditRecord {
            feature: edit.feature.clone(),
            edit_id: edit.edit_id.clone(),
            kind: kind.to_string(),
            path: path.clone(),
            sha256: edit.sha256(),
            added_newline,
            comment,
            mode,
        }
    }

    /// The installed edit this record describes, beside its document's path.
    pub fn into_edit(self) -> (String, RenderedEdit) {
        let content = if self.kind == "file" {
            RenderedContent::File {
                bytes: Written::Sha256(self.sha256),
                mode: self.mode.unwrap_or(0o644),
            }
        } else {
            RenderedContent::Block {
                body: Written::Sha256(self.sha256),
                section: None,
                check: None,
                comment: self.comment,
                added_newline: self.added_newline,
            }
        };
        let edit = RenderedEdit {
            feature: self.feature,
            edit_id: self.edit_id,
            content,
        };
        (self.path, edit)
    }
}

/// `#[serde(with)]` for a bundle's installed edits: a list of [`EditRecord`]s.
pub(super) fn serialize<S: Serializer>(
    edits: &[(String, RenderedEdit)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(edits.iter().map(EditRecord::of))
}

/// `#[serde(with)]` for a bundle's installed edits: a list of [`EditRecord`]s.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, RenderedEdit)>, D::Error> {
    let records = Vec::<EditRecord>::deserialize(deserializer)?;
    Ok(records.into_iter().map(EditRecord::into_edit).collect())
}

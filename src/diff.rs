//! Unified diffs of planned changes, for `--dry-run`.

use similar::TextDiff;

use crate::change::{Doc, DocState};
use crate::plan::Plan;
use crate::txn::FileState;

/// The diff of one changed path (file, row or directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffPart {
    /// The path as the PBX sees it (a row: `<database>#<table>/<key>`).
    pub path: String,
    /// Unified diff text (or one line for a directory, a binary file, a mode change).
    pub diff: String,
}

/// A unified diff of every change in `plan`, paths as the PBX sees them, one
/// part per changed path (directories, files, rows, removed directories).
pub fn render_parts(plan: &Plan) -> Vec<DiffPart> {
    let mut out = Vec::new();
    let mut push = |path: &str, diff: String| {
        out.push(DiffPart {
            path: path.to_string(),
            diff,
        })
    };
    for change in &plan.changes {
        let path = change.runtime_path.as_str();
        let diff = match (&change.doc, &change.before, &change.after) {
            (Doc::Dir { .. }, _, Some(DocState::Dir { mode })) => {
                format!("mkdir {path} (mode {mode:04o})\n")
            }
            (Doc::Dir { .. }, _, _) => format!("rmdir {path}\n"),
            (Doc::File { .. }, before, after) => file_diff(
                path,
                before.as_ref().and_then(DocState::as_file),
                after.as_ref().and_then(DocState::as_file),
            ),
            (Doc::Row(_), before, after) => row_diff(path, before.as_ref(), after.as_ref()),
        };
        push(path, diff);
    }
    out
}

fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0)
}

/// A row's text diff, plus its mode column when that changes.
fn row_diff(path: &str, before: Option<&DocState>, after: Option<&DocState>) -> String {
    let (before_text, after_text) = (before.map(DocState::text), after.map(DocState::text));
    let mut diff = text_diff(path, before_text.as_deref(), after_text.as_deref());
    let mode = |s: Option<&DocState>| s.and_then(DocState::as_row).and_then(|r| r.mode.clone());
    if mode(before) != mode(after) {
        diff.push_str(&format!(
            "mode of {path}: {} -> {}\n",
            mode(before).unwrap_or_else(|| "(none)".into()),
            mode(after).unwrap_or_else(|| "(none)".into())
        ));
    }
    diff
}

fn file_diff(path: &str, before: Option<&FileState>, after: Option<&FileState>) -> String {
    let old = before.map(|s| s.content.as_slice());
    let new = after.map(|s| s.content.as_slice());
    let both_text = old.is_none_or(is_text) && new.is_none_or(is_text);
    if !both_text {
        let size =
            |c: Option<&[u8]>| c.map_or("absent".to_string(), |c| format!("{} bytes", c.len()));
        return format!(
            "binary file {path}: {} -> {}{}\n",
            size(old),
            size(new),
            after
                .map(|s| format!(" (mode {:04o})", s.mode))
                .unwrap_or_default()
        );
    }
    text_diff(path, old, new)
}

/// Unified diff of two texts (`None` = absent).
fn text_diff(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let (a, b) = (
        old.map_or("/dev/null".to_string(), |_| format!("a{path}")),
        new.map_or("/dev/null".to_string(), |_| format!("b{path}")),
    );
    let old_text = String::from_utf8_lossy(old.unwrap_or_default());
    let new_text = String::from_utf8_lossy(new.unwrap_or_default());
    let diff = TextDiff::from_lines(old_text.as_ref(), new_text.as_ref());
    let mut out = diff
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

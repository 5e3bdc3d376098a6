//! Unified diffs of planned changes, for `--dry-run`.

use similar::TextDiff;

use crate::plan::{FileChange, Plan};

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
    for d in &plan.create_dirs {
        push(
            &d.runtime_path,
            format!("mkdir {} (mode {:04o})\n", d.runtime_path, d.mode),
        );
    }
    for f in &plan.files {
        push(&f.runtime_path, file_diff(f));
    }
    for r in &plan.rows {
        let mut diff = text_diff(
            &r.runtime_path,
            r.before.as_ref().map(|_| r.before_text.as_slice()),
            r.after.as_ref().map(|_| r.after_text.as_slice()),
        );
        let mode = |s: &Option<crate::row::RowState>| s.as_ref().and_then(|s| s.mode.clone());
        if mode(&r.before) != mode(&r.after) {
            diff.push_str(&format!(
                "mode of {}: {} -> {}\n",
                r.runtime_path,
                mode(&r.before).unwrap_or_else(|| "(none)".into()),
                mode(&r.after).unwrap_or_else(|| "(none)".into())
            ));
        }
        push(&r.runtime_path, diff);
    }
    for d in &plan.remove_dirs {
        push(&d.runtime_path, format!("rmdir {}\n", d.runtime_path));
    }
    out
}

fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0)
}

fn file_diff(f: &FileChange) -> String {
    let old = f.before.as_ref().map(|s| s.content.as_slice());
    let new = f.after.as_ref().map(|s| s.content.as_slice());
    let both_text = old.is_none_or(is_text) && new.is_none_or(is_text);
    if !both_text {
        let size =
            |c: Option<&[u8]>| c.map_or("absent".to_string(), |c| format!("{} bytes", c.len()));
        return format!(
            "binary file {}: {} -> {}{}\n",
            f.runtime_path,
            size(old),
            size(new),
            f.after
                .as_ref()
                .map(|s| format!(" (mode {:04o})", s.mode))
                .unwrap_or_default()
        );
    }
    text_diff(&f.runtime_path, old, new)
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

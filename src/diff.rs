//! Unified diffs of planned changes, for `--dry-run`.

use std::collections::HashSet;

use similar::TextDiff;

use crate::byte_search::{common_prefix_len, common_suffix_len, count_newlines};
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

/// The file's bytes as text when they are: UTF-8 without a NUL.
fn as_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|_| !bytes.contains(&0))
}

/// A row's text diff, plus its mode column when that changes.
fn row_diff(path: &str, before: Option<&DocState>, after: Option<&DocState>) -> String {
    let (before_text, after_text) = (before.map(DocState::text), after.map(DocState::text));
    let (before_text, after_text) = (
        before_text.as_deref().map(String::from_utf8_lossy),
        after_text.as_deref().map(String::from_utf8_lossy),
    );
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
    // `None`: absent; `Some(None)`: there, and not text.
    match (old.map(as_text), new.map(as_text)) {
        (Some(None), _) | (_, Some(None)) => {
            let size =
                |c: Option<&[u8]>| c.map_or("absent".to_string(), |c| format!("{} bytes", c.len()));
            format!(
                "binary file {path}: {} -> {}{}\n",
                size(old),
                size(new),
                after
                    .map(|s| format!(" (mode {:04o})", s.mode))
                    .unwrap_or_default()
            )
        }
        (old_text, new_text) => text_diff(path, old_text.flatten(), new_text.flatten()),
    }
}

/// Unified diff of two texts (`None` = absent).
fn text_diff(path: &str, old: Option<&str>, new: Option<&str>) -> String {
    let (a, b) = (
        old.map_or("/dev/null".to_string(), |_| format!("a{path}")),
        new.map_or("/dev/null".to_string(), |_| format!("b{path}")),
    );
    let mut out = unified(old.unwrap_or_default(), new.unwrap_or_default(), &a, &b);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Lines of context around each change, as `diff -u` shows.
const CONTEXT: usize = 3;

/// The unified diff of `old` and `new` with headers `a` and `b`: the one
/// `similar` makes of the whole texts, made from the part that changed only
/// (featpkg changes a block in a big file: the diff costs what the block costs).
fn unified(old: &str, new: &str, a: &str, b: &str) -> String {
    match ChangedRegion::find(old, new) {
        Some(region) => region.unified(old, new, a, b),
        None => whole_unified(old, new, a, b),
    }
}

fn whole_unified(old: &str, new: &str, a: &str, b: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(CONTEXT)
        .header(a, b)
        .to_string()
}

/// `similar` has more than this many lines on a side take another path (it
/// trims, then diffs the middle): the region keeps to the same side of it.
const SIMILAR_TRIMS_ABOVE: usize = 100;

/// The lines of two texts that a diff of the whole would look at: the lines
/// that differ, with the common lines around them that a change can slide
/// over (`similar` moves a change up or down over lines equal to its own) and
/// the context shown. Byte offsets are at line starts (line ends included).
#[derive(Debug, PartialEq, Eq)]
struct ChangedRegion {
    /// Where the region starts, in both texts (the lines before are the same).
    start: usize,
    /// Where it ends in the old and the new text (the lines after are the same).
    old_end: usize,
    new_end: usize,
    /// How many lines come before it.
    lines_before: usize,
}

impl ChangedRegion {
    /// The region of `old` and `new` to diff; `None` when the whole is as
    /// cheap (small texts, or the same).
    fn find(old: &str, new: &str) -> Option<ChangedRegion> {
        if old == new || (has_at_most_lines(old) && has_at_most_lines(new)) {
            return None;
        }
        let (prefix, suffix) = common_lines(old, new);
        let (old_middle, new_middle) = (
            &old[prefix..old.len() - suffix],
            &new[prefix..new.len() - suffix],
        );
        let changed: HashSet<&str> = old_middle
            .split_inclusive('\n')
            .chain(new_middle.split_inclusive('\n'))
            .collect();
        let mut before: Vec<&str> = old[..prefix]
            .split_inclusive('\n')
            .rev()
            .collect_lines(&changed);
        let mut after: Vec<&str> = old[old.len() - suffix..]
            .split_inclusive('\n')
            .collect_lines(&changed);
        // Both sides of similar's size line as the whole is.
        let sides = (line_count(old_middle), line_count(new_middle));
        let mut prefix_lines = old[..prefix].split_inclusive('\n').rev().skip(before.len());
        let mut suffix_lines = old[old.len() - suffix..]
            .split_inclusive('\n')
            .skip(after.len());
        while sides.0.max(sides.1) + before.len() + after.len() <= SIMILAR_TRIMS_ABOVE {
            match prefix_lines.next() {
                Some(line) => before.push(line),
                None => match suffix_lines.next() {
                    Some(line) => after.push(line),
                    None => return None,
                },
            }
        }
        let before_bytes: usize = before.iter().map(|l| l.len()).sum();
        let after_bytes: usize = after.iter().map(|l| l.len()).sum();
        Some(ChangedRegion {
            start: prefix - before_bytes,
            old_end: old.len() - suffix + after_bytes,
            new_end: new.len() - suffix + after_bytes,
            lines_before: line_count(&old[..prefix - before_bytes]),
        })
    }

    /// The diff of the region, its hunk headers numbered as in the whole texts.
    fn unified(&self, old: &str, new: &str, a: &str, b: &str) -> String {
        let part = whole_unified(
            &old[self.start..self.old_end],
            &new[self.start..self.new_end],
            a,
            b,
        );
        let mut out = String::with_capacity(part.len() + 16);
        for line in part.split_inclusive('\n') {
            match shifted_hunk_header(line, self.lines_before) {
                Some(header) => out.push_str(&header),
                None => out.push_str(line),
            }
        }
        out
    }
}

/// Collecting the lines a change could slide over, then the context.
trait CollectLines<'t> {
    /// The lines in order while they are among `changed` (a change made of
    /// such lines can move over them), then [`CONTEXT`] more.
    fn collect_lines(self, changed: &HashSet<&str>) -> Vec<&'t str>;
}

impl<'t, I: Iterator<Item = &'t str>> CollectLines<'t> for I {
    fn collect_lines(self, changed: &HashSet<&str>) -> Vec<&'t str> {
        let mut out = Vec::new();
        let mut context = 0;
        for line in self {
            if context == 0 && changed.contains(line) {
                out.push(line);
                continue;
            }
            if context == CONTEXT {
                break;
            }
            context += 1;
            out.push(line);
        }
        out
    }
}

/// Lines as `similar` counts them: each ends after `\n`, and a last one may lack it.
fn line_count(text: &str) -> usize {
    count_newlines(text.as_bytes()) + usize::from(!text.is_empty() && !text.ends_with('\n'))
}

/// Whether `text` has at most [`SIMILAR_TRIMS_ABOVE`] lines (as
/// [`line_count`] counts them), without counting the lines of a big file: the
/// count stops one line ending past the limit.
fn has_at_most_lines(text: &str) -> bool {
    let newlines = text
        .bytes()
        .filter(|&b| b == b'\n')
        .take(SIMILAR_TRIMS_ABOVE + 1)
        .count();
    newlines + usize::from(!text.is_empty() && !text.ends_with('\n')) <= SIMILAR_TRIMS_ABOVE
}

/// Bytes of the whole lines `old` and `new` begin with and (after those) end
/// with alike: the common prefix and suffix `similar` trims, as bytes.
fn common_lines(old: &str, new: &str) -> (usize, usize) {
    let (o, n) = (old.as_bytes(), new.as_bytes());
    let same = common_prefix_len(o, n);
    let prefix = o[..same]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let (o, n) = (&o[prefix..], &n[prefix..]);
    let same = common_suffix_len(o, n);
    let (o_tail, n_tail) = (o.len() - same, n.len() - same);
    let at_line_start = |text: &[u8], at: usize| at == 0 || text[at - 1] == b'\n';
    let first_whole_line = if at_line_start(o, o_tail) && at_line_start(n, n_tail) {
        0
    } else {
        o[o_tail..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(same, |i| i + 1)
    };
    (prefix, same - first_whole_line)
}

/// A hunk header `@@ -<old> +<new> @@` with both ranges moved down by
/// `lines`, written as `similar` writes them (`start,len`, `start` for one
/// line, the line before for an empty range); `None` for any other line.
fn shifted_hunk_header(line: &str, lines: usize) -> Option<String> {
    let ranges = line.strip_prefix("@@ -")?.strip_suffix(" @@\n")?;
    let (old, new) = ranges.split_once(" +")?;
    Some(format!(
        "@@ -{} +{} @@\n",
        shifted_range(old, lines)?,
        shifted_range(new, lines)?
    ))
}

fn shifted_range(range: &str, lines: usize) -> Option<String> {
    let (first, len) = match range.split_once(',') {
        Some((first, len)) => (first.parse::<usize>().ok()?, len.parse::<usize>().ok()?),
        None => (range.parse::<usize>().ok()?, 1),
    };
    Some(match len {
        1 => format!("{}", first + lines),
        _ => format!("{},{len}", first + lines),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The region's diff against similar's diff of the whole texts.
    fn same_as_whole(old: &str, new: &str) {
        let whole = whole_unified(old, new, "a/x", "b/x");
        assert_eq!(
            unified(old, new, "a/x", "b/x"),
            whole,
            "old {old:?}\nnew {new:?}"
        );
    }

    fn numbered(lines: std::ops::Range<usize>) -> String {
        lines.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_block_anywhere_in_a_big_file_diffs_as_the_whole() {
        let base = numbered(0..500);
        let block = "; BEGIN featpkg:b:f/e\n[ctx]\n\nexten => 1,1,NoOp()\n; END featpkg:b:f/e\n";
        for at in [0, 1, 2, 3, 4, 250, 496, 497, 499, 500] {
            let cut: usize = base.split_inclusive('\n').take(at).map(str::len).sum();
            let new = format!("{}{block}{}", &base[..cut], &base[cut..]);
            same_as_whole(&base, &new);
            same_as_whole(&new, &base);
        }
    }

    #[test]
    fn a_big_text_with_few_lines_and_non_ascii_text_diffs_as_the_whole() {
        // One long line of two-byte characters starting at odd offsets: a cut
        // at an even byte offset would split one.
        let old = format!("a{}\n", "é".repeat(80_000));
        let new = format!("{old}x\n");
        same_as_whole(&old, &new);
        let many: String = (0..300).map(|i| format!("ligne é {i}\n")).collect();
        same_as_whole(&many, &format!("{many}fin\n"));
    }

    #[test]
    fn line_endings_and_a_missing_last_newline() {
        let base = numbered(0..300);
        let no_newline = base.trim_end_matches('\n');
        same_as_whole(no_newline, &format!("{no_newline}\n; block\n"));
        same_as_whole(&format!("{no_newline}\n; block\n"), no_newline);
        same_as_whole(no_newline, &format!("{no_newline}x"));
        same_as_whole(&base, &format!("{base}tail without newline"));
        let crlf = base.replace('\n', "\r\n");
        same_as_whole(&crlf, &format!("{crlf}; block\r\nx = 1\r\n"));
        same_as_whole(&crlf, &base);
        same_as_whole(&base, &crlf);
        same_as_whole(&base, "");
        same_as_whole("", &base);
        same_as_whole(&base, &base);
    }

    #[test]
    fn a_change_that_can_slide_over_equal_lines() {
        // similar moves an insert of lines equal to those around it up or down.
        let blanks = "\n".repeat(200);
        same_as_whole(&blanks, &format!("{blanks}\n"));
        same_as_whole(
            &format!("{blanks}x\n{blanks}"),
            &format!("{blanks}x\n\nx\n{blanks}"),
        );
        let ab = "a\nb\n".repeat(120);
        same_as_whole(&ab, &format!("{ab}a\nb\n"));
        same_as_whole(&format!("{ab}c\n{ab}"), &format!("{ab}a\nb\nc\n{ab}"));
    }

    #[test]
    fn random_edits_of_repetitive_texts_diff_as_the_whole() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let words = ["a\n", "b\n", "\n", "a", "c\r\n", "; x\n"];
        let mut trimmed = 0;
        for _ in 0..300 {
            let len = 100 + next(100);
            let mut lines: Vec<&str> = (0..len).map(|_| words[next(words.len())]).collect();
            // Only the last line may lack its newline.
            lines.retain(|l| l.ends_with('\n'));
            let old: String = lines.concat();
            let mut new_lines = lines.clone();
            for _ in 0..1 + next(3) {
                let at = next(new_lines.len() + 1);
                match next(3) {
                    0 => {
                        let added: Vec<&str> = (0..1 + next(5)).map(|_| words[next(3)]).collect();
                        new_lines.splice(at..at, added);
                    }
                    1 => {
                        new_lines.drain(at..(at + next(4)).min(new_lines.len()));
                    }
                    _ => {
                        new_lines.splice(at..(at + 1).min(new_lines.len()), ["z\n"]);
                    }
                }
            }
            let mut new: String = new_lines.concat();
            if next(4) == 0 {
                new.push_str(words[3]);
            }
            same_as_whole(&old, &new);
            same_as_whole(&new, &old);
            trimmed += usize::from(ChangedRegion::find(&old, &new).is_some());
        }
        assert!(trimmed > 200, "only {trimmed} diffs took the region");
    }
}

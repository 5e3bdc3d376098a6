//! Regions: how history keeps a big file's bytes before a transaction without
//! a copy of the whole file — as the few places where the file the
//! transaction left (its state after) differs from the one it found, each with
//! both versions of its bytes (a reverse delta). featpkg's edits are blocks,
//! so those places are small however big the file is.
//!
//! Each region carries a few lines of unchanged text on both sides, so that it
//! can be found again in a file edited since ([`FileRegions::undo_over_drift`]).

use std::collections::HashMap;

use crate::byte_search::{common_prefix_len, common_suffix_len};
use crate::hash::sha256_hex;

/// Files up to this size are kept whole: the copy costs little, and every
/// rollback of them stays the plain byte copy it always was.
const KEPT_WHOLE_UP_TO: usize = 64 * 1024;

/// Bytes compared at a line start to find where the two versions agree again
/// after a difference: long enough that a dialplan's repeated short lines
/// rarely match by chance.
const ANCHOR: usize = 48;

/// How far past a difference the versions are searched for agreeing again:
/// a block is far smaller. Beyond it, the rest is one region.
const RESYNC_WINDOW: usize = 256 * 1024;

/// More places than this: the file changed all over (line endings, say) and
/// is kept whole.
const MAX_HUNKS: usize = 256;

/// Unchanged lines kept on each side of a region, and their cap in bytes.
const CONTEXT_LINES: usize = 2;
const CONTEXT_MAX: usize = 256;

/// One place where a file's state after a transaction differs from its state before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Where the region starts in the state after.
    pub after_offset: usize,
    /// The region's bytes in the state after (with their context lines).
    pub after: Vec<u8>,
    /// What stood there before (with the same context lines).
    pub before: Vec<u8>,
}

/// A file's bytes before a transaction, kept as regions of its bytes after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRegions {
    /// The regions, in order of offset, not overlapping.
    pub regions: Vec<Region>,
    /// SHA-256 (lowercase hex) of the bytes before: what undoing must give.
    pub before_sha256: String,
}

/// Why the bytes before cannot be rebuilt from a file's present bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionsError {
    /// A region's bytes are not in the file, or not at one place only.
    #[error(
        "the text around featpkg's change at byte {offset} of the transaction's version is {found} in the file now"
    )]
    NotFound {
        /// The region's offset in the state after.
        offset: usize,
        /// `no longer` or `at more than one place`.
        found: &'static str,
    },
    /// The file is gone: only the regions were kept, not its other bytes.
    #[error("it no longer exists, and history keeps only the regions featpkg changed in it")]
    Gone,
    /// The regions applied, but the result is not the recorded state before.
    #[error("rebuilding its earlier bytes gave bytes other than the ones recorded")]
    Mismatch,
}

impl FileRegions {
    /// The regions where `after` differs from `before`, or `None` when they
    /// would not be smaller than keeping `before` whole (or `before` is small).
    pub fn between(before: &[u8], after: &[u8]) -> Option<FileRegions> {
        if before.len() <= KEPT_WHOLE_UP_TO {
            return None;
        }
        let raw = differences(before, after, before.len() / 2)?;
        let regions = with_context(&raw, before, after);
        let kept: usize = regions.iter().map(|r| r.after.len() + r.before.len()).sum();
        (kept < before.len() / 2).then(|| FileRegions {
            regions,
            before_sha256: sha256_hex(before),
        })
    }

    /// The bytes before, from `after` — the file exactly as the transaction left it.
    pub fn undo(&self, after: &[u8]) -> Result<Vec<u8>, RegionsError> {
        let mut at = Vec::with_capacity(self.regions.len());
        for r in &self.regions {
            let end = r.after_offset + r.after.len();
            if after.get(r.after_offset..end) != Some(&r.after[..]) {
                return Err(RegionsError::Mismatch);
            }
            at.push(r.after_offset);
        }
        let before = self.rebuilt(after, &at);
        if sha256_hex(&before) != self.before_sha256 {
            return Err(RegionsError::Mismatch);
        }
        Ok(before)
    }

    /// The bytes before, from `current` — the file edited since the
    /// transaction: each region's bytes after are looked up in it (from where
    /// the previous one ended) and replaced by its bytes before; the rest of
    /// the file, with its edits, stays. A region must be found at one place,
    /// or exactly where the edits before it moved it.
    pub fn undo_over_drift(&self, current: &[u8]) -> Result<Vec<u8>, RegionsError> {
        let mut at = Vec::with_capacity(self.regions.len());
        let (mut from, mut shift) = (0usize, 0isize);
        for r in &self.regions {
            let expected = r.after_offset.checked_add_signed(shift);
            let found = occurrences(&current[from..], &r.after);
            let pos = match found.as_slice() {
                [one] => from + one,
                [] => return Err(not_found(r, "no longer")),
                many => match expected {
                    Some(e) if e >= from && many.contains(&(e - from)) => e,
                    _ => return Err(not_found(r, "at more than one place")),
                },
            };
            shift = pos as isize - r.after_offset as isize;
            from = pos + r.after.len();
            at.push(pos);
        }
        Ok(self.rebuilt(current, &at))
    }

    /// `text` with region `i`'s bytes at `at[i]` replaced by its bytes before.
    fn rebuilt(&self, text: &[u8], at: &[usize]) -> Vec<u8> {
        let grown: usize = self.regions.iter().map(|r| r.before.len()).sum();
        let mut out = Vec::with_capacity(text.len() + grown);
        let mut copied = 0;
        for (r, &pos) in self.regions.iter().zip(at) {
            out.extend_from_slice(&text[copied..pos]);
            out.extend_from_slice(&r.before);
            copied = pos + r.after.len();
        }
        out.extend_from_slice(&text[copied..]);
        out
    }
}

fn not_found(r: &Region, found: &'static str) -> RegionsError {
    RegionsError::NotFound {
        offset: r.after_offset,
        found,
    }
}

/// Every start of `needle` in `haystack` (an empty needle matches nowhere).
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        match haystack[at..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            Some(p) => {
                let start = at + p;
                if &haystack[start + 1..start + needle.len()] == rest {
                    found.push(start);
                }
                at = start + 1;
            }
            None => break,
        }
    }
    found
}

/// A difference without context: `before[b]` became `after[a]`.
#[derive(Debug, Clone, Copy)]
struct Hunk {
    b: (usize, usize),
    a: (usize, usize),
}

/// The places where `after` differs from `before`, in order: common runs are
/// skipped eight bytes at a time; after each difference the next line of
/// `before` whose first bytes stand at a line start of `after` close by is
/// where the two agree again (a block inserted, removed or replaced).
/// `None` once there are more than [`MAX_HUNKS`] or their bytes exceed `budget`.
fn differences(before: &[u8], after: &[u8], budget: usize) -> Option<Vec<Hunk>> {
    let prefix = common_prefix_len(before, after);
    let suffix = common_suffix_len(&before[prefix..], &after[prefix..]);
    let (b_end, a_end) = (before.len() - suffix, after.len() - suffix);
    let (mut i, mut j) = (prefix, prefix);
    let mut hunks = Vec::new();
    let mut spent = 0;
    loop {
        let same = common_prefix_len(&before[i..b_end], &after[j..a_end]);
        i += same;
        j += same;
        if i == b_end && j == a_end {
            return Some(hunks);
        }
        let (di, dj) =
            agree_again(&before[i..b_end], &after[j..a_end]).unwrap_or((b_end - i, a_end - j));
        hunks.push(Hunk {
            b: (i, i + di),
            a: (j, j + dj),
        });
        i += di;
        j += dj;
        spent += di + dj;
        if hunks.len() > MAX_HUNKS || spent > budget {
            return None;
        }
    }
}

/// The first line start `di` of `b` (or its very start) whose next
/// [`ANCHOR`] bytes stand at a line start `dj` of `a`, both within
/// [`RESYNC_WINDOW`]; the earliest such `dj`.
fn agree_again(b: &[u8], a: &[u8]) -> Option<(usize, usize)> {
    let mut anchors: HashMap<&[u8], usize> = HashMap::new();
    for dj in line_starts(a, RESYNC_WINDOW) {
        if let Some(anchor) = a.get(dj..dj + ANCHOR) {
            anchors.entry(anchor).or_insert(dj);
        }
    }
    line_starts(b, RESYNC_WINDOW)
        .find_map(|di| {
            b.get(di..di + ANCHOR)
                .and_then(|k| anchors.get(k))
                .map(|&dj| (di, dj))
        })
        .filter(|&(di, dj)| di + dj > 0)
}

/// 0 and every position after a `\n` in `text`, below `limit`.
fn line_starts(text: &[u8], limit: usize) -> impl Iterator<Item = usize> + '_ {
    let end = text.len().min(limit);
    std::iter::once(0).chain(
        text[..end]
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'\n')
            .map(|(p, _)| p + 1)
            .filter(move |&p| p < end),
    )
}

/// The hunks grown by their context lines (never into a neighbour's own
/// bytes), those that then touch merged, as regions.
fn with_context(hunks: &[Hunk], before: &[u8], after: &[u8]) -> Vec<Region> {
    let mut grown: Vec<Hunk> = Vec::with_capacity(hunks.len());
    for (n, h) in hunks.iter().enumerate() {
        let floor = if n == 0 { 0 } else { hunks[n - 1].a.1 };
        let ceiling = hunks.get(n + 1).map_or(after.len(), |next| next.a.0);
        let left = h.a.0 - context_start(after, h.a.0, floor);
        let right = context_end(after, h.a.1, ceiling) - h.a.1;
        let g = Hunk {
            b: (h.b.0 - left, h.b.1 + right),
            a: (h.a.0 - left, h.a.1 + right),
        };
        match grown.last_mut() {
            Some(last) if last.a.1 >= g.a.0 => {
                // The unchanged run between them is common to both versions,
                // so one region covers both.
                last.a.1 = g.a.1;
                last.b.1 = g.b.1;
            }
            _ => grown.push(g),
        }
    }
    grown
        .into_iter()
        .map(|h| Region {
            after_offset: h.a.0,
            after: after[h.a.0..h.a.1].to_vec(),
            before: before[h.b.0..h.b.1].to_vec(),
        })
        .collect()
}

/// Where the [`CONTEXT_LINES`] lines before `at` start, not below `floor`
/// nor more than [`CONTEXT_MAX`] bytes back.
fn context_start(text: &[u8], at: usize, floor: usize) -> usize {
    let floor = floor.max(at.saturating_sub(CONTEXT_MAX));
    let mut start = at;
    for _ in 0..CONTEXT_LINES {
        if start <= floor {
            break;
        }
        // Skip the newline that ends the previous line, then to that line's start.
        let search_end = start - 1;
        start = text[floor..search_end]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(floor, |p| floor + p + 1);
    }
    start
}

/// Where the [`CONTEXT_LINES`] lines from `at` end (after their `\n`), not
/// beyond `ceiling` nor more than [`CONTEXT_MAX`] bytes on.
fn context_end(text: &[u8], at: usize, ceiling: usize) -> usize {
    let ceiling = ceiling.min(at + CONTEXT_MAX);
    let mut end = at;
    for _ in 0..CONTEXT_LINES {
        if end >= ceiling {
            break;
        }
        end = text[end..ceiling]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(ceiling, |p| end + p + 1);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dialplan of `contexts` contexts, about 300 bytes each.
    fn dialplan(contexts: usize) -> Vec<u8> {
        let mut text = String::new();
        for c in 0..contexts {
            text.push_str(&format!(
                "[t{c}-internal]\nexten => 200,1,NoOp(to ${{EXTEN}})\n same => n,Set(CDR(t)={c})\n same => n,Dial(PJSIP/t{c}-200,30)\n same => n,Hangup()\n\n"
            ));
        }
        text.into_bytes()
    }

    fn block(name: &str) -> Vec<u8> {
        format!(";; BEGIN featpkg {name}\nexten => 7{name},1,Answer()\n same => n,Hangup()\n;; END featpkg {name}\n").into_bytes()
    }

    /// `text` with `insert` placed after the first occurrence of `after_line`.
    fn placed(text: &[u8], after_line: &str, insert: &[u8]) -> Vec<u8> {
        let at = text
            .windows(after_line.len())
            .position(|w| w == after_line.as_bytes())
            .unwrap()
            + after_line.len();
        [&text[..at], insert, &text[at..]].concat()
    }

    #[test]
    fn blocks_far_apart_are_kept_as_small_regions_and_undone_exactly() {
        let before = dialplan(2000);
        let after = placed(&before, "[t5-internal]\n", &block("a"));
        let after = placed(&after, "[t1500-internal]\n", &block("b"));
        let after = [&after[..], &block("c")].concat();
        let kept = FileRegions::between(&before, &after).unwrap();
        assert_eq!(kept.regions.len(), 3);
        let stored: usize = kept
            .regions
            .iter()
            .map(|r| r.after.len() + r.before.len())
            .sum();
        assert!(stored < 2000, "{stored} bytes kept for three blocks");
        assert_eq!(kept.undo(&after).unwrap(), before);
        // And the other way round (an uninstall: the blocks go).
        let removal = FileRegions::between(&after, &before).unwrap();
        assert_eq!(removal.undo(&before).unwrap(), after);
    }

    #[test]
    fn a_replaced_block_is_one_region() {
        let base = dialplan(1000);
        let before = placed(&base, "[t9-internal]\n", &block("old"));
        let after = placed(&base, "[t9-internal]\n", &block("renamed"));
        let kept = FileRegions::between(&before, &after).unwrap();
        assert_eq!(kept.regions.len(), 1);
        assert_eq!(kept.undo(&after).unwrap(), before);
    }

    #[test]
    fn small_files_and_files_changed_all_over_are_kept_whole() {
        let small = dialplan(10);
        assert!(FileRegions::between(&small, &[&small[..], b"x\n"].concat()).is_none());
        let big = dialplan(1000);
        let crlf: Vec<u8> = big
            .iter()
            .flat_map(|&c| {
                if c == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![c]
                }
            })
            .collect();
        assert!(FileRegions::between(&big, &crlf).is_none());
    }

    #[test]
    fn undo_refuses_bytes_other_than_the_state_after() {
        let before = dialplan(1000);
        let after = placed(&before, "[t5-internal]\n", &block("a"));
        let kept = FileRegions::between(&before, &after).unwrap();
        let mut other = after.clone();
        let last = other.len() - 2;
        other[last] = b'X';
        assert_eq!(kept.undo(&other), Err(RegionsError::Mismatch));
    }

    #[test]
    fn undo_over_drift_keeps_edits_elsewhere_and_refuses_a_lost_region() {
        let before = dialplan(1000);
        let after = placed(&before, "[t500-internal]\n", &block("a"));
        let kept = FileRegions::between(&before, &after).unwrap();
        // Edits before and after the block survive, the block goes.
        let drifted = placed(&after, "[t3-internal]\n", b"; mine\n");
        let drifted = [&drifted[..], b"; also mine\n"].concat();
        let expected = placed(&before, "[t3-internal]\n", b"; mine\n");
        let expected = [&expected[..], b"; also mine\n"].concat();
        assert_eq!(kept.undo_over_drift(&drifted).unwrap(), expected);
        // The block edited by hand: nowhere to be found.
        let mangled = String::from_utf8(after.clone())
            .unwrap()
            .replace("7a,1,Answer()", "7a,1,Answer(x)");
        let err = kept.undo_over_drift(mangled.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                RegionsError::NotFound {
                    found: "no longer",
                    ..
                }
            ),
            "{err}"
        );
    }
}

//! Marked blocks: featpkg's only way into a shared text file, with an exact inverse.
//!
//! A block is one marker line, the body, one marker line, in the file's comment syntax:
//!
//! ```text
//! ; BEGIN featpkg:<bundle>:<edit>
//! load => func_extstate.so
//! ; END featpkg:<bundle>:<edit>
//! ```
//!
//! Markers are parsed strictly (whole line; a trailing `\r` tolerated). A line that
//! looks like a featpkg marker but is not exactly one, an orphan BEGIN or END, a
//! duplicated id or a nested block is drift: every function here refuses to act
//! on such a file and names the line (the blockinfile/whenever failure modes in
//! reference/installers.md). Everything outside our blocks is kept byte for byte.

use std::borrow::Cow;
use std::ops::Range;

use crate::byte_search::{count_newlines, fold_case_bits, has_byte};

/// Comment syntax of the file the block lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentStyle {
    /// `;` — Asterisk config files.
    Semicolon,
    /// `#` — crontabs.
    Hash,
}

impl CommentStyle {
    fn prefix(self) -> &'static str {
        match self {
            CommentStyle::Semicolon => ";",
            CommentStyle::Hash => "#",
        }
    }
}

/// Identifies a block: which bundle wrote it, and which of its edits it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// The bundle's name: `migration-demo` in `featpkg:migration-demo:greeting/dialplan`.
    pub bundle: String,
    /// The edit id, `<feature>/<edit>`: `greeting/dialplan`.
    pub edit: String,
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "featpkg:{}:{}", self.bundle, self.edit)
    }
}

/// Line ending of a file, detected from its first line terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// `\n` (Unix).
    Lf,
    /// `\r\n` (a file edited on Windows).
    CrLf,
}

impl LineEnding {
    /// `CrLf` when the first line of `text` ends in `\r\n`, else `Lf`.
    pub fn detect(text: &[u8]) -> LineEnding {
        match text.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && text[i - 1] == b'\r' => LineEnding::CrLf,
            _ => LineEnding::Lf,
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            LineEnding::Lf => b"\n",
            LineEnding::CrLf => b"\r\n",
        }
    }
}

/// One block found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The bundle and edit named by its markers.
    pub id: BlockId,
    /// 1-based line of the BEGIN marker.
    pub begin_line: usize,
    /// Byte range of the whole block, BEGIN line to END line including its terminator.
    pub span: Range<usize>,
    /// Byte range of the body between the marker lines.
    pub body: Range<usize>,
}

/// A marker problem; always names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// A line that mentions a featpkg marker but is not exactly one (edited
    /// by hand, wrong case, extra text).
    #[error(
        "line {line}: malformed featpkg marker {text:?} (expected exactly \"{prefix} BEGIN featpkg:<bundle>:<edit>\" or END)"
    )]
    Malformed {
        /// 1-based line number in the file.
        line: usize,
        /// The line as it is.
        text: String,
        /// The file's comment character (`;` or `#`), to show the expected form.
        prefix: &'static str,
    },
    /// A BEGIN whose END never comes.
    #[error("line {line}: BEGIN marker for {id} has no END marker")]
    UnclosedBegin {
        /// 1-based line of the BEGIN marker.
        line: usize,
        /// The block's id, `featpkg:<bundle>:<edit>`.
        id: String,
    },
    /// An END with no BEGIN before it.
    #[error("line {line}: END marker for {id} without a BEGIN")]
    OrphanEnd {
        /// 1-based line of the END marker.
        line: usize,
        /// The id it names, `featpkg:<bundle>:<edit>`.
        id: String,
    },
    /// A BEGIN inside another block.
    #[error(
        "line {line}: BEGIN marker for {id} inside block {outer} (opened at line {outer_line})"
    )]
    Nested {
        /// 1-based line of the inner BEGIN.
        line: usize,
        /// The inner block's id.
        id: String,
        /// The id of the block still open.
        outer: String,
        /// 1-based line of the open block's BEGIN.
        outer_line: usize,
    },
    /// An END that names another block than the one open.
    #[error("line {line}: END marker for {id} closes block {open} (opened at line {open_line})")]
    Mismatched {
        /// 1-based line of the END marker.
        line: usize,
        /// The id the END names.
        id: String,
        /// The id of the block open.
        open: String,
        /// 1-based line of the open block's BEGIN.
        open_line: usize,
    },
    /// Two blocks with the same id in one file.
    #[error("line {line}: second block {id} (the first starts at line {first_line})")]
    Duplicate {
        /// 1-based line of the second block's BEGIN.
        line: usize,
        /// The id both blocks have.
        id: String,
        /// 1-based line of the first block's BEGIN.
        first_line: usize,
    },
    /// Inserting a block (id given) the file already has.
    #[error("block {0} already exists")]
    AlreadyPresent(String),
    /// Replacing or removing a block (id given) the file does not have.
    #[error("block {0} not found")]
    NotFound(String),
    /// A rendered body with a line that would read as a marker, which would
    /// break the file's blocks apart.
    #[error("block {id}: body line {line} looks like a featpkg marker")]
    MarkerInBody {
        /// The block's id, `featpkg:<bundle>:<edit>`.
        id: String,
        /// 1-based line number within the body.
        line: usize,
    },
    /// A non-empty body whose last line has no line ending.
    #[error("block body must end with a newline")]
    BodyWithoutNewline,
    /// An insert position (byte offset) in the middle of a line.
    #[error("insert position {0} is not at the start of a line")]
    NotLineStart(usize),
}

enum MarkerKind {
    Begin,
    End,
}

/// Lines of `text` as (line number, start, end without terminator, end with terminator).
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    let mut start = 0;
    let mut number = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        number += 1;
        let (content_end, next) = match text[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (start + i, start + i + 1),
            None => (text.len(), text.len()),
        };
        let line = (number, start, content_end, next);
        start = next;
        Some(line)
    })
}

/// The lines of `text` that mention featpkg in any case, as [`lines`] numbers
/// them: only those can be markers (see [`parse_marker`]), and going from one
/// to the next skips the rest of a big file at memory speed.
fn lines_mentioning_featpkg(
    text: &[u8],
) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
    let mut from = 0;
    // Line `number` starts at `counted`.
    let (mut counted, mut number) = (0, 1);
    std::iter::from_fn(move || {
        let hit = find_featpkg(text, from)?;
        let start = text[..hit]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        number += count_newlines(&text[counted..start]);
        counted = start;
        let (content_end, next) = match text[hit..].iter().position(|&b| b == b'\n') {
            Some(i) => (hit + i, hit + i + 1),
            None => (text.len(), text.len()),
        };
        from = next;
        Some((number, start, content_end, next))
    })
}

/// Where `featpkg` (any ASCII case) first occurs in `text` at or after `from`.
fn find_featpkg(text: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < text.len() {
        // Eight bytes at a time (the binaries are built for size, which does
        // not vectorize): skip words without an `f` or `F`.
        let Some(chunk) = text.get(at..at + 8) else {
            return (at..text.len()).find(|&i| starts_with_featpkg(&text[i..]));
        };
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if has_byte(fold_case_bits(word), b'f')
            && let Some(hit) = (at..at + 8).find(|&i| starts_with_featpkg(&text[i..]))
        {
            return Some(hit);
        }
        at += 8;
    }
    None
}

fn starts_with_featpkg(text: &[u8]) -> bool {
    text.get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"featpkg"))
}

fn valid_id_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
}

/// Classifies one line: Ok(None) = not a marker, Ok(Some) = a well-formed marker,
/// Err = something that mentions a featpkg marker but is not one exactly.
fn parse_marker(
    line: &[u8],
    number: usize,
    style: CommentStyle,
) -> Result<Option<(MarkerKind, BlockId)>, MarkerError> {
    // Every line taken for a marker (below) names featpkg, in some case: the
    // others, nearly all of a big file, are let go without decoding them.
    if !mentions_featpkg(line) {
        return Ok(None);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let looks_like = {
        let t = text.trim_start();
        t.starts_with(style.prefix())
            && (t.contains("BEGIN featpkg") || t.contains("END featpkg") || {
                let lower = t.to_ascii_lowercase();
                (lower.contains("begin") || lower.contains("end")) && lower.contains("featpkg:")
            })
    };
    if !looks_like {
        return Ok(None);
    }
    let malformed = || MarkerError::Malformed {
        line: number,
        text: text.to_string(),
        prefix: style.prefix(),
    };
    let rest = text.strip_prefix(style.prefix()).ok_or_else(malformed)?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix(" BEGIN featpkg:") {
        (MarkerKind::Begin, r)
    } else if let Some(r) = rest.strip_prefix(" END featpkg:") {
        (MarkerKind::End, r)
    } else {
        return Err(malformed());
    };
    let (bundle, edit) = rest.split_once(':').ok_or_else(malformed)?;
    if !valid_id_part(bundle) || !valid_id_part(edit) {
        return Err(malformed());
    }
    Ok(Some((
        kind,
        BlockId {
            bundle: bundle.to_string(),
            edit: edit.to_string(),
        },
    )))
}

/// Whether `line` has `featpkg` in it, in any ASCII case.
fn mentions_featpkg(line: &[u8]) -> bool {
    const WORD: &[u8] = b"featpkg";
    line.len() >= WORD.len()
        && line[..=line.len() - WORD.len()]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b | 0x20 == b'f')
            .any(|(i, _)| line[i..i + WORD.len()].eq_ignore_ascii_case(WORD))
}

/// `text` with every block of `bundle` taken out (markers included).
pub fn without_blocks_of(
    text: &[u8],
    style: CommentStyle,
    bundle: &str,
) -> Result<Vec<u8>, MarkerError> {
    Ok(strip_blocks_of(text, style, bundle)?.into_owned())
}

/// [`without_blocks_of`], borrowing `text` when it has no block of `bundle`.
pub fn strip_blocks_of<'t>(
    text: &'t [u8],
    style: CommentStyle,
    bundle: &str,
) -> Result<Cow<'t, [u8]>, MarkerError> {
    let blocks = scan(text, style)?;
    if !blocks.iter().any(|b| b.id.bundle == bundle) {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for b in blocks.iter().filter(|b| b.id.bundle == bundle) {
        out.extend_from_slice(&text[pos..b.span.start]);
        pos = b.span.end;
    }
    out.extend_from_slice(&text[pos..]);
    Ok(Cow::Owned(out))
}

/// Finds every featpkg block; any marker problem is an error naming the line.
pub fn scan(text: &[u8], style: CommentStyle) -> Result<Vec<Block>, MarkerError> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut open: Option<(BlockId, usize, usize, usize)> = None; // id, line, span start, body start
    for (number, start, content_end, next) in lines_mentioning_featpkg(text) {
        let Some((kind, id)) = parse_marker(&text[start..content_end], number, style)? else {
            continue;
        };
        match (kind, open.take()) {
            (MarkerKind::Begin, None) => open = Some((id, number, start, next)),
            (MarkerKind::Begin, Some((outer, outer_line, ..))) => {
                return Err(MarkerError::Nested {
                    line: number,
                    id: id.to_string(),
                    outer: outer.to_string(),
                    outer_line,
                });
            }
            (MarkerKind::End, None) => {
                return Err(MarkerError::OrphanEnd {
                    line: number,
                    id: id.to_string(),
                });
            }
            (MarkerKind::End, Some((open_id, open_line, span_start, body_start))) => {
                if open_id != id {
                    return Err(MarkerError::Mismatched {
                        line: number,
                        id: id.to_string(),
                        open: open_id.to_string(),
                        open_line,
                    });
                }
                if let Some(first) = blocks.iter().find(|b| b.id == id) {
                    return Err(MarkerError::Duplicate {
                        line: open_line,
                        id: id.to_string(),
                        first_line: first.begin_line,
                    });
                }
                blocks.push(Block {
                    id,
                    begin_line: open_line,
                    span: span_start..next,
                    body: body_start..start,
                });
            }
        }
    }
    if let Some((id, line, ..)) = open {
        return Err(MarkerError::UnclosedBegin {
            line,
            id: id.to_string(),
        });
    }
    Ok(blocks)
}

/// The bytes of a whole block: markers and body, with `eol` line endings.
pub fn render_block(id: &BlockId, style: CommentStyle, body_lf: &str, eol: LineEnding) -> Vec<u8> {
    let mut out = Vec::with_capacity(body_lf.len() + 128);
    out.extend_from_slice(format!("{} BEGIN {id}", style.prefix()).as_bytes());
    out.extend_from_slice(eol.bytes());
    out.extend_from_slice(&convert_body(body_lf, eol));
    out.extend_from_slice(format!("{} END {id}", style.prefix()).as_bytes());
    out.extend_from_slice(eol.bytes());
    out
}

fn convert_body(body_lf: &str, eol: LineEnding) -> Vec<u8> {
    match eol {
        LineEnding::Lf => body_lf.as_bytes().to_vec(),
        LineEnding::CrLf => body_lf.replace('\n', "\r\n").into_bytes(),
    }
}

fn check_body(id: &BlockId, body_lf: &str, style: CommentStyle) -> Result<(), MarkerError> {
    if !body_lf.is_empty() && !body_lf.ends_with('\n') {
        return Err(MarkerError::BodyWithoutNewline);
    }
    for (number, start, end, _) in lines(body_lf.as_bytes()) {
        if parse_marker(&body_lf.as_bytes()[start..end], number, style) != Ok(None) {
            return Err(MarkerError::MarkerInBody {
                id: id.to_string(),
                line: number,
            });
        }
    }
    Ok(())
}

impl PartialEq for MarkerKind {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (MarkerKind::Begin, MarkerKind::Begin) | (MarkerKind::End, MarkerKind::End)
        )
    }
}

/// Result of [`insert_block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The whole file with the block in it.
    pub text: Vec<u8>,
    /// A line ending was added before the block because the file lacked a final
    /// newline; [`remove_block`] takes it back when told so.
    pub added_newline: bool,
}

/// Inserts a new block at `at` (a line start) or at the end of the file.
pub fn insert_block(
    text: &[u8],
    style: CommentStyle,
    id: &BlockId,
    body_lf: &str,
    at: Option<usize>,
) -> Result<Inserted, MarkerError> {
    let mut out = Vec::with_capacity(text.len() + body_lf.len() * 2 + 256);
    out.extend_from_slice(text);
    let added_newline = insert_block_in(&mut out, style, id, body_lf, at)?;
    Ok(Inserted {
        text: out,
        added_newline,
    })
}

/// [`insert_block`] into `text` itself (a big file is not copied again);
/// returns whether a line ending was added before the block. On an error
/// `text` is as it was.
pub fn insert_block_in(
    text: &mut Vec<u8>,
    style: CommentStyle,
    id: &BlockId,
    body_lf: &str,
    at: Option<usize>,
) -> Result<bool, MarkerError> {
    let blocks = scan(text, style)?;
    if blocks.iter().any(|b| &b.id == id) {
        return Err(MarkerError::AlreadyPresent(id.to_string()));
    }
    check_body(id, body_lf, style)?;
    // A position inside another block (e.g. "after the section's last entry" when
    // that entry is in our block, whose END marker is only a comment) moves to
    // just after that block: blocks follow each other, they never nest.
    let at = at.map(|pos| {
        blocks
            .iter()
            .find(|b| b.span.start < pos && pos < b.span.end)
            .map_or(pos, |b| b.span.end)
    });
    let eol = LineEnding::detect(text);
    let block = render_block(id, style, body_lf, eol);
    match at {
        Some(pos) if pos < text.len() => {
            if pos > text.len() || (pos > 0 && text[pos - 1] != b'\n') {
                return Err(MarkerError::NotLineStart(pos));
            }
            text.splice(pos..pos, block);
            Ok(false)
        }
        _ => {
            let added_newline = !text.is_empty() && !text.ends_with(b"\n");
            if added_newline {
                text.extend_from_slice(eol.bytes());
            }
            text.extend_from_slice(&block);
            Ok(added_newline)
        }
    }
}

fn find(text: &[u8], style: CommentStyle, id: &BlockId) -> Result<Block, MarkerError> {
    scan(text, style)?
        .into_iter()
        .find(|b| &b.id == id)
        .ok_or_else(|| MarkerError::NotFound(id.to_string()))
}

/// Replaces the body of an existing block in place (its position is kept).
pub fn replace_block_body(
    text: &[u8],
    style: CommentStyle,
    id: &BlockId,
    body_lf: &str,
) -> Result<Vec<u8>, MarkerError> {
    let mut out = Vec::with_capacity(text.len() + body_lf.len() * 2);
    out.extend_from_slice(text);
    replace_block_body_in(&mut out, style, id, body_lf)?;
    Ok(out)
}

/// [`replace_block_body`] in `text` itself; returns whether the body changed.
/// On an error `text` is as it was.
pub fn replace_block_body_in(
    text: &mut Vec<u8>,
    style: CommentStyle,
    id: &BlockId,
    body_lf: &str,
) -> Result<bool, MarkerError> {
    let block = find(text, style, id)?;
    check_body(id, body_lf, style)?;
    let eol = LineEnding::detect(text);
    let body = convert_body(body_lf, eol);
    if text[block.body.clone()] == body[..] {
        return Ok(false);
    }
    text.splice(block.body, body);
    Ok(true)
}

/// Removes a block. `strip_added_newline` takes back the line ending that
/// [`insert_block`] added before it (so insert + remove round-trips byte-exactly);
/// that line ending is only taken back while the block is the last thing in the
/// file (see [`remove_blocks`] for what happens otherwise).
pub fn remove_block(
    text: &[u8],
    style: CommentStyle,
    id: &BlockId,
    strip_added_newline: bool,
) -> Result<Vec<u8>, MarkerError> {
    let mut out = text.to_vec();
    remove_block_in(&mut out, style, id, strip_added_newline)?;
    Ok(out)
}

/// [`remove_block`] from `text` itself. On an error `text` is as it was.
fn remove_block_in(
    text: &mut Vec<u8>,
    style: CommentStyle,
    id: &BlockId,
    strip_added_newline: bool,
) -> Result<(), MarkerError> {
    let block = find(text, style, id)?;
    remove_found_block(text, &block, strip_added_newline);
    Ok(())
}

/// Removes `block` (as a scan of `text` found it) from `text`: the bytes
/// taken out, as a range of `text` before the removal.
fn remove_found_block(
    text: &mut Vec<u8>,
    block: &Block,
    strip_added_newline: bool,
) -> Range<usize> {
    let mut start = block.span.start;
    if strip_added_newline && block.span.end == text.len() {
        start -= added_eol_len(&text[..start]);
    }
    text.drain(start..block.span.end);
    start..block.span.end
}

/// Length of the line ending [`insert_block`] added at the end of `before` (the
/// text in front of the block): the ending it detected in the original text,
/// which is `before` without that last ending. When that ending is the only one
/// in `before`, the original had no line ending at all and `\n` was added.
fn added_eol_len(before: &[u8]) -> usize {
    if !before.ends_with(b"\n") {
        return 0;
    }
    let original = &before[..before.len() - 1];
    if !original.contains(&b'\n') {
        return 1;
    }
    match LineEnding::detect(original) {
        LineEnding::CrLf if original.ends_with(b"\r") => 2,
        _ => 1,
    }
}

/// Result of [`remove_blocks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The whole file without the blocks.
    pub text: Vec<u8>,
    /// Blocks that now carry the "a line ending was added before me" fact of a
    /// removed block (see [`remove_blocks`]); the caller records it for them.
    pub added_newline_passed_to: Vec<BlockId>,
}

/// Removes several blocks, each with its `added_newline` fact from
/// [`insert_block`], so that the file ends as it did before the blocks came,
/// whatever order they were added in.
///
/// Only the first block appended to a file lacking a final newline has the
/// fact, and later blocks were appended after it. So blocks are removed from
/// the end of the file backwards (the one with the fact is last when its turn
/// comes and takes its line ending back), and when a block with the fact is
/// not last because a block that stays follows it directly (another feature's,
/// kept by this change), the fact passes to that block: it is the one that
/// will be last once the others are gone. Anything else after it (text the
/// admin appended) keeps the line ending it now ends with.
pub fn remove_blocks(
    text: &[u8],
    style: CommentStyle,
    blocks: &[(BlockId, bool)],
) -> Result<Removed, MarkerError> {
    let mut out = text.to_vec();
    let passed_to = remove_blocks_in(&mut out, style, blocks)?;
    Ok(Removed {
        text: out,
        added_newline_passed_to: passed_to,
    })
}

/// [`remove_blocks`] from `text` itself (a big file is not copied again);
/// returns [`Removed::added_newline_passed_to`]. On an error `text` may be
/// partly changed: the caller drops it.
pub fn remove_blocks_in(
    text: &mut Vec<u8>,
    style: CommentStyle,
    blocks: &[(BlockId, bool)],
) -> Result<Vec<BlockId>, MarkerError> {
    // One scan; the blocks' spans are then kept up to date by hand as blocks
    // go (a big file is not scanned again for each).
    let mut now = scan(text, style)?;
    let mut order = Vec::with_capacity(blocks.len());
    for (id, added_newline) in blocks {
        let block = now
            .iter()
            .find(|b| &b.id == id)
            .ok_or_else(|| MarkerError::NotFound(id.to_string()))?;
        order.push((block.span.start, id, *added_newline));
    }
    order.sort_by_key(|(start, ..)| std::cmp::Reverse(*start));
    let mut passed_to = Vec::new();
    for (_, id, added_newline) in order {
        let at = now
            .iter()
            .position(|b| &b.id == id)
            .ok_or_else(|| MarkerError::NotFound(id.to_string()))?;
        let block = now.remove(at);
        if added_newline
            && block.span.end != text.len()
            && let Some(next) = now.iter().find(|b| b.span.start == block.span.end)
        {
            passed_to.push(next.id.clone());
        }
        let removed = remove_found_block(text, &block, added_newline);
        let gone = removed.len();
        for later in now.iter_mut().filter(|b| b.span.start >= removed.end) {
            later.span = later.span.start - gone..later.span.end - gone;
            later.body = later.body.start - gone..later.body.end - gone;
        }
    }
    Ok(passed_to)
}

/// The body bytes of a block as they are in the file, or None when the block is absent.
pub fn block_body<'a>(
    text: &'a [u8],
    style: CommentStyle,
    id: &BlockId,
) -> Result<Option<&'a [u8]>, MarkerError> {
    Ok(scan(text, style)?
        .into_iter()
        .find(|b| &b.id == id)
        .map(|b| &text[b.body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(edit: &str) -> BlockId {
        BlockId {
            bundle: "demo".into(),
            edit: edit.into(),
        }
    }
    const S: CommentStyle = CommentStyle::Semicolon;

    fn round_trip(original: &[u8], at: Option<usize>) {
        let ins = insert_block(original, S, &id("a/b"), "x = 1\n", at).unwrap();
        assert!(block_body(&ins.text, S, &id("a/b")).unwrap().is_some());
        let back = remove_block(&ins.text, S, &id("a/b"), ins.added_newline).unwrap();
        assert_eq!(
            back,
            original,
            "round trip of {:?}",
            String::from_utf8_lossy(original)
        );
    }

    #[test]
    fn the_lines_that_mention_featpkg_are_found_wherever_they_are() {
        let mut text = Vec::new();
        for i in 0..300 {
            match i % 7 {
                0 => text.extend_from_slice(b"; BEGIN featpkg:demo:a/b\n"),
                1 => text.extend_from_slice(b"exten => 1,1,NoOp(FeatPkG)\r\n"),
                2 => text.extend_from_slice("\u{e9}t\u{e9} featpk\n".as_bytes()),
                3 => text.extend_from_slice(&b"x".repeat(i % 70)),
                4 => text.extend_from_slice(b"featpkgfeatpkg\n\n"),
                _ => text.extend_from_slice(b"; plain comment\n"),
            }
        }
        text.extend_from_slice(b"; END featpkg:demo:a/b");
        for cut in [text.len(), text.len() - 3, 64, 63, 7, 0] {
            let text = &text[..cut];
            let every: Vec<_> = lines(text)
                .filter(|&(_, start, end, _)| mentions_featpkg(&text[start..end]))
                .collect();
            let found: Vec<_> = lines_mentioning_featpkg(text).collect();
            assert_eq!(found, every, "cut at {cut}");
            let newlines = text.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(count_newlines(text), newlines, "cut at {cut}");
        }
    }

    #[test]
    fn round_trips_every_shape() {
        round_trip(b"[modules]\nautoload=yes\n", None);
        round_trip(b"[modules]\r\nautoload=yes\r\n", None);
        round_trip(b"[modules]\nautoload=yes", None);
        round_trip(b"[modules]\r\nautoload=yes", None);
        round_trip(b"", None);
        round_trip(b"[a]\nx=1\n[b]\ny=2\n", Some(8));
        assert_eq!(
            insert_block(b"[a]\nx=1\n", S, &id("e"), "y\n", Some(5)),
            Err(MarkerError::NotLineStart(5))
        );
        round_trip(b"caf\xe9 latin-1 \xff\n", None);
    }

    /// Appends blocks a, b, c one after the other to `original`, as separate
    /// installs do, and returns the text with each block's added_newline fact.
    fn three_blocks(original: &[u8]) -> (Vec<u8>, Vec<(BlockId, bool)>) {
        let mut text = original.to_vec();
        let mut facts = Vec::new();
        for edit in ["a", "b", "c"] {
            let ins = insert_block(&text, S, &id(edit), "x = 1\n", None).unwrap();
            text = ins.text;
            facts.push((id(edit), ins.added_newline));
        }
        (text, facts)
    }

    #[test]
    fn removing_several_blocks_at_once_restores_the_missing_final_newline() {
        for original in [
            &b"[m]\r\nx=1"[..],
            b"[m]\nx=1",
            b"[m]\r\nx=1\r\n",
            b"[m]\nx=1\n",
            b"no newline at all",
            b"a\nb\r",
        ] {
            let (text, facts) = three_blocks(original);
            // Every order of the list: removal works from the end backwards.
            for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]] {
                let list: Vec<_> = order.iter().map(|&i| facts[i].clone()).collect();
                let removed = remove_blocks(&text, S, &list).unwrap();
                assert_eq!(
                    removed.text,
                    original,
                    "{:?} in order {order:?}",
                    String::from_utf8_lossy(original)
                );
                assert!(removed.added_newline_passed_to.is_empty());
            }
        }
    }

    #[test]
    fn the_fact_passes_to_the_block_that_stays_after_the_removed_one() {
        for original in [&b"[m]\r\nx=1"[..], b"[m]\nx=1"] {
            let (text, facts) = three_blocks(original);
            assert_eq!(
                facts.iter().map(|f| f.1).collect::<Vec<_>>(),
                [true, false, false]
            );
            // a goes first (forward order, one feature at a time): b inherits.
            let first = remove_blocks(&text, S, &facts[..1]).unwrap();
            assert_eq!(first.added_newline_passed_to, vec![id("b")]);
            let second = remove_blocks(&first.text, S, &[(id("b"), true)]).unwrap();
            assert_eq!(second.added_newline_passed_to, vec![id("c")]);
            let last = remove_blocks(&second.text, S, &[(id("c"), true)]).unwrap();
            assert_eq!(last.text, original);
            // a and c go together: b stays, and inherits.
            let some = remove_blocks(&text, S, &[facts[0].clone(), facts[2].clone()]).unwrap();
            assert_eq!(some.added_newline_passed_to, vec![id("b")]);
            assert_eq!(
                remove_blocks(&some.text, S, &[(id("b"), true)])
                    .unwrap()
                    .text,
                original
            );
        }
        // Text the admin appended after our block keeps the line ending.
        let ins = insert_block(b"[m]", S, &id("a"), "x\n", None).unwrap();
        let mut text = ins.text;
        text.extend_from_slice(b"[admin]\n");
        let removed = remove_blocks(&text, S, &[(id("a"), true)]).unwrap();
        assert_eq!(removed.text, b"[m]\n[admin]\n");
        assert!(removed.added_newline_passed_to.is_empty());
    }

    #[test]
    fn crlf_file_gets_crlf_block() {
        let ins = insert_block(
            b"[m]\r\nx=1\r\n",
            S,
            &id("e"),
            "load => a.so\nload => b.so\n",
            None,
        )
        .unwrap();
        assert_eq!(
            ins.text,
            b"[m]\r\nx=1\r\n; BEGIN featpkg:demo:e\r\nload => a.so\r\nload => b.so\r\n; END featpkg:demo:e\r\n"
        );
    }

    #[test]
    fn missing_final_newline_is_added_and_reported() {
        let ins = insert_block(b"[m]", S, &id("e"), "a\n", None).unwrap();
        assert!(ins.added_newline);
        assert_eq!(
            ins.text,
            b"[m]\n; BEGIN featpkg:demo:e\na\n; END featpkg:demo:e\n"
        );
    }

    #[test]
    fn replace_keeps_position_and_is_idempotent() {
        let text = b"[a]\n; BEGIN featpkg:demo:e\nold\n; END featpkg:demo:e\n[b]\n";
        let once = replace_block_body(text, S, &id("e"), "new\n").unwrap();
        assert_eq!(
            once,
            b"[a]\n; BEGIN featpkg:demo:e\nnew\n; END featpkg:demo:e\n[b]\n"
        );
        assert_eq!(
            replace_block_body(&once, S, &id("e"), "new\n").unwrap(),
            once
        );
    }

    #[test]
    fn a_position_inside_a_block_moves_after_it() {
        let text = b"[m]\n; BEGIN featpkg:demo:a\nx\n; END featpkg:demo:a\n[n]\n";
        let body_end = 4 + 23 + 2; // the line after `x`, inside block a
        let ins = insert_block(text, S, &id("b"), "y\n", Some(body_end)).unwrap();
        assert_eq!(
            ins.text,
            b"[m]\n; BEGIN featpkg:demo:a\nx\n; END featpkg:demo:a\n; BEGIN featpkg:demo:b\ny\n; END featpkg:demo:b\n[n]\n"
        );
        // At the very end, the block goes at the end of the file.
        let text = b"[m]\n; BEGIN featpkg:demo:a\nx\n; END featpkg:demo:a";
        let ins = insert_block(text, S, &id("b"), "y\n", Some(29)).unwrap();
        assert!(ins.added_newline);
        assert!(scan(&ins.text, S).unwrap().len() == 2);
    }

    #[test]
    fn second_copy_is_refused() {
        let ins = insert_block(b"", S, &id("e"), "a\n", None).unwrap();
        assert_eq!(
            insert_block(&ins.text, S, &id("e"), "a\n", None),
            Err(MarkerError::AlreadyPresent("featpkg:demo:e".into()))
        );
    }

    #[test]
    fn orphan_begin_names_its_line() {
        let err = scan(b"[a]\nx=1\n; BEGIN featpkg:demo:e\ny\n", S).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: BEGIN marker for featpkg:demo:e has no END marker"
        );
    }

    #[test]
    fn orphan_end_names_its_line() {
        let err = scan(b"[a]\n; END featpkg:demo:e\n", S).unwrap_err();
        assert!(
            matches!(err, MarkerError::OrphanEnd { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn reversed_markers_are_refused() {
        let err = scan(b"; END featpkg:demo:e\nx\n; BEGIN featpkg:demo:e\n", S).unwrap_err();
        assert!(
            matches!(err, MarkerError::OrphanEnd { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn duplicate_block_is_refused() {
        let one = "; BEGIN featpkg:demo:e\na\n; END featpkg:demo:e\n";
        let err = scan(format!("{one}{one}").as_bytes(), S).unwrap_err();
        assert!(
            matches!(
                err,
                MarkerError::Duplicate {
                    line: 4,
                    first_line: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn nested_and_mismatched_are_refused() {
        let err = scan(b"; BEGIN featpkg:demo:a\n; BEGIN featpkg:demo:b\n", S).unwrap_err();
        assert!(matches!(err, MarkerError::Nested { line: 2, .. }), "{err}");
        let err = scan(b"; BEGIN featpkg:demo:a\n; END featpkg:demo:b\n", S).unwrap_err();
        assert!(
            matches!(err, MarkerError::Mismatched { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn near_miss_markers_are_malformed_not_ignored() {
        for bad in [
            ";  BEGIN featpkg:demo:e",
            "; begin featpkg:demo:e",
            "; BEGIN featpkg:demo:e trailing",
            "; BEGIN featpkg:demo",
            " ; BEGIN featpkg:demo:e",
            "; BEGIN featpkg:demo:e ",
        ] {
            let err = scan(format!("[a]\n{bad}\n").as_bytes(), S).unwrap_err();
            assert!(
                matches!(err, MarkerError::Malformed { line: 2, .. }),
                "{bad:?}: {err}"
            );
        }
        // Unrelated comments mentioning the words are fine.
        assert!(
            scan(b"; the end of featpkg docs\n; BEGINNING\n", S)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn crlf_markers_are_tolerated() {
        let text = b"; BEGIN featpkg:demo:e\r\na\r\n; END featpkg:demo:e\r\n";
        let blocks = scan(text, S).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(&text[blocks[0].body.clone()], b"a\r\n");
    }

    #[test]
    fn body_with_a_marker_is_refused() {
        let err = insert_block(b"", S, &id("e"), "; END featpkg:demo:e\n", None).unwrap_err();
        assert!(
            matches!(err, MarkerError::MarkerInBody { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn hash_style_for_crontabs() {
        let ins = insert_block(
            b"0 * * * * true\n",
            CommentStyle::Hash,
            &id("cron"),
            "*/5 * * * * x\n",
            None,
        )
        .unwrap();
        assert_eq!(
            ins.text,
            b"0 * * * * true\n# BEGIN featpkg:demo:cron\n*/5 * * * * x\n# END featpkg:demo:cron\n"
        );
        // A `;` marker means nothing in a crontab.
        assert!(
            scan(b"; BEGIN featpkg:demo:e\n", CommentStyle::Hash)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn other_bundles_blocks_are_left_alone() {
        let text = b"; BEGIN featpkg:other:e\nx\n; END featpkg:other:e\n";
        let ins = insert_block(text, S, &id("e"), "y\n", None).unwrap();
        let back = remove_block(&ins.text, S, &id("e"), ins.added_newline).unwrap();
        assert_eq!(back, text);
    }
}

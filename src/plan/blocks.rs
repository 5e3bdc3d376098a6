//! Planning featpkg's marked blocks in a shared text document (a config file, a
//! crontab, the text of a database row): the installed blocks are checked for
//! hand changes and taken out, then the new ones are checked against the
//! configuration the PBX already has and put in place.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::{DocEdits, PlanError, override_with_force, own_ids};
use crate::asterisk_config::{self, ConfigFile, Conflict};
use crate::feature::{ConfigCheck, RenderedContent, RenderedEdit, Written};
use crate::hash::sha256_hex;
use crate::marker::{self, BlockId, CommentStyle};
use crate::pbx::ConfigDir;
use crate::txn::FileState;

/// The comment style of markers written with `comment`.
pub(crate) fn style(comment: char) -> CommentStyle {
    if comment == '#' {
        CommentStyle::Hash
    } else {
        CommentStyle::Semicolon
    }
}

/// The comment character of a document's markers: what the new blocks use, else
/// what the installed ones used, else `;`.
pub(crate) fn comment_of(olds: &[&RenderedEdit], news: &[&RenderedEdit]) -> char {
    news.iter()
        .find_map(|n| n.comment())
        .or_else(|| olds.first().and_then(|o| o.comment()))
        .unwrap_or(';')
}

/// Marked blocks in a shared text document whose state is `before` (None: it
/// does not exist): its state afterwards (None: it goes, or stays absent) and
/// the bundle's blocks in it. Hand changes overridden by `--force` are noted in
/// `forced`; this bundle's blocks that stay unplanned but inherit the "a line
/// ending was added before me" fact of a removed block, in `newline_moved`.
pub(crate) fn plan_blocks(
    edits: DocEdits,
    before: Option<&FileState>,
    forced: &mut Vec<String>,
    newline_moved: &mut Vec<String>,
) -> Result<(Option<FileState>, Vec<RenderedEdit>), PlanError> {
    let Some(before) = state_before(edits, before) else {
        return missing_document(edits, forced);
    };
    let mut doc = BlockText::new(edits, text_with_room(&before.content, edits.news))?;
    doc.remove_old_blocks(forced, newline_moved)?;
    // The checks' baseline: the existing configuration, then each block checked so far.
    let mut baseline = doc.existing_config()?;
    let present = doc.present_blocks()?;
    let mut placed = Vec::new();
    for new in edits.news {
        let RenderedContent::Block {
            body: Written::Full(body),
            section,
            check,
            ..
        } = &new.content
        else {
            continue;
        };
        let block = NewBlock {
            edit: new,
            id: doc.id(&new.edit_id),
            body,
            section: section.as_deref(),
        };
        let mut closes_its_comments = false;
        if let Some(check) = check {
            let added = checked_block_config(edits.path, &block, *check, &baseline)?;
            closes_its_comments = added.unclosed_comment.is_none();
            baseline.push(added);
        }
        let added_newline = if present.contains(&new.edit_id) {
            doc.replace(&block, forced)?
        } else {
            doc.insert(&block, check.is_some(), closes_its_comments)?
        };
        placed.push((block, added_newline));
    }
    let installed = doc.installed_edits(&placed)?;
    // A file featpkg may create goes again once nothing is left in it.
    if doc.text.is_empty()
        && installed.is_empty()
        && edits.target.create_missing(edits.path).is_some()
    {
        return Ok((None, installed));
    }
    let after = FileState {
        content: doc.text,
        ..before.into_owned()
    };
    Ok((Some(after), installed))
}

/// A copy of `content` to plan in, with room for the new blocks (markers,
/// and line endings that may become CRLF), so that placing them copies it no more.
fn text_with_room(content: &[u8], news: &[&RenderedEdit]) -> Vec<u8> {
    let room: usize = news
        .iter()
        .map(|n| match &n.content {
            RenderedContent::Block {
                body: Written::Full(body),
                ..
            } => body.len() * 2 + 256,
            _ => 0,
        })
        .sum();
    let mut text = Vec::with_capacity(content.len() + room);
    text.extend_from_slice(content);
    text
}

/// The document as the blocks are planned against: a missing file featpkg may
/// create (a user's crontab) starts out empty when a block goes into it.
fn state_before<'s>(edits: DocEdits, before: Option<&'s FileState>) -> Option<Cow<'s, FileState>> {
    match (before, edits.target.create_missing(edits.path)) {
        (Some(before), _) => Some(Cow::Borrowed(before)),
        (None, Some(mode)) if !edits.news.is_empty() => {
            let (uid, gid) = edits
                .target
                .owner_for_new(edits.path)
                .unwrap_or_else(own_ids);
            Some(Cow::Owned(FileState {
                content: Vec::new(),
                mode,
                uid,
                gid,
            }))
        }
        (None, _) => None,
    }
}

/// A document that is not there: featpkg adds blocks only to existing files,
/// and one with installed blocks was deleted by hand (gone on with `--force`).
fn missing_document(
    edits: DocEdits,
    forced: &mut Vec<String>,
) -> Result<(Option<FileState>, Vec<RenderedEdit>), PlanError> {
    let path = edits.path;
    if edits.olds.is_empty() {
        if let Some(new) = edits.news.first() {
            return Err(PlanError::MissingFile {
                path: path.into(),
                edit: new.edit_id.clone(),
            });
        }
    } else if !edits.force {
        return Err(PlanError::MissingBlock {
            path: path.into(),
            edit: edits.olds[0].edit_id.clone(),
        });
    }
    forced.push(format!("{path}: missing, nothing to remove (--force)"));
    Ok((None, Vec::new()))
}

/// How a marker problem in the document at `path` is reported.
fn marker_error(path: &str) -> impl Fn(marker::MarkerError) -> PlanError + '_ {
    move |e| PlanError::Markers {
        path: path.into(),
        message: e.to_string(),
    }
}

/// One new block to put into the document.
struct NewBlock<'a> {
    edit: &'a RenderedEdit,
    id: BlockId,
    body: &'a str,
    section: Option<&'a str>,
}

/// The document's text while its blocks are planned.
struct BlockText<'a> {
    edits: DocEdits<'a>,
    /// The blocks of the text as it came (its markers checked).
    found: Vec<marker::Block>,
    text: Vec<u8>,
    comment: char,
    style: CommentStyle,
    /// Whether a line ending was added before each block of ours that gets
    /// replaced in place (from the installed record, or passed on to it by a
    /// removed block right in front of it).
    added_newline: BTreeMap<String, bool>,
    /// Known: every `;--` block comment of the text is closed (a parse said
    /// so, and since then only blocks that close their own were appended).
    /// Saves parsing a big file again for each block appended to it.
    comments_closed: bool,
}

impl<'a> BlockText<'a> {
    /// The document's `text`, its markers checked.
    fn new(edits: DocEdits<'a>, text: Vec<u8>) -> Result<Self, PlanError> {
        let comment = comment_of(edits.olds, edits.news);
        let style = style(comment);
        let found = marker::scan(&text, style).map_err(marker_error(edits.path))?;
        Ok(BlockText {
            edits,
            found,
            text,
            comment,
            style,
            added_newline: BTreeMap::new(),
            comments_closed: false,
        })
    }

    fn id(&self, edit: &str) -> BlockId {
        BlockId {
            bundle: self.edits.bundle.to_string(),
            edit: edit.to_string(),
        }
    }

    /// The installed blocks: drift check, then keep (to be replaced in place) or
    /// remove.
    fn remove_old_blocks(
        &mut self,
        forced: &mut Vec<String>,
        newline_moved: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        let mut going: Vec<(BlockId, bool)> = Vec::new();
        for old in self.edits.olds {
            let still_wanted = self.edits.news.iter().any(|n| n.edit_id == old.edit_id);
            if !self.check_old_block(old, still_wanted, forced)? {
                continue;
            }
            if still_wanted {
                self.added_newline
                    .insert(old.edit_id.clone(), old.added_newline());
            } else {
                going.push((self.id(&old.edit_id), old.added_newline()));
            }
        }
        // All at once, from the end of the file backwards, so that a file that had
        // no final newline gets none back whatever order the blocks came in; the
        // fact passes on to a block of ours that stays right after a removed one.
        let heirs = marker::remove_blocks_in(&mut self.text, self.style, &going)
            .map_err(marker_error(self.edits.path))?;
        for heir in heirs {
            if heir.bundle != self.edits.bundle {
                continue; // another bundle's block: its own record says nothing of it
            }
            if self.edits.news.iter().any(|n| n.edit_id == heir.edit) {
                self.added_newline.insert(heir.edit, true);
            } else {
                newline_moved.push(heir.edit);
            }
        }
        Ok(())
    }

    /// Whether an installed block is still in the document (false: missing,
    /// gone on without it under `--force`); a hand change inside it is refused
    /// unless `--force`.
    fn check_old_block(
        &self,
        old: &RenderedEdit,
        still_wanted: bool,
        forced: &mut Vec<String>,
    ) -> Result<bool, PlanError> {
        let path = self.edits.path;
        let action = if still_wanted { "replace" } else { "remove" };
        let id = self.id(&old.edit_id);
        let body = self
            .found
            .iter()
            .find(|b| b.id == id)
            .map(|b| &self.text[b.body.clone()]);
        match body {
            None => {
                override_with_force(
                    self.edits.force,
                    forced,
                    PlanError::MissingBlock {
                        path: path.into(),
                        edit: old.edit_id.clone(),
                    },
                    format!("{path}: block {} was missing (--force)", old.edit_id),
                )?;
                return Ok(false);
            }
            Some(body) if sha256_hex(body) != old.sha256() => {
                override_with_force(
                    self.edits.force,
                    forced,
                    PlanError::ModifiedBlock {
                        path: path.into(),
                        edit: old.edit_id.clone(),
                        action,
                    },
                    format!(
                        "{path}: hand changes inside block {} overwritten (--force)",
                        old.edit_id
                    ),
                )?;
            }
            Some(_) => {}
        }
        Ok(true)
    }

    /// What the PBX already has, without this bundle's blocks: the baseline for
    /// the checks. Only Asterisk config files are parsed (a crontab block has no
    /// check): empty when no new block asks for one.
    fn existing_config(&self) -> Result<Vec<ConfigFile>, PlanError> {
        let needs_check = self
            .edits
            .news
            .iter()
            .any(|n| matches!(n.content, RenderedContent::Block { check: Some(_), .. }));
        if !needs_check {
            return Ok(Vec::new());
        }
        existing_config(self.edits, &self.text, self.style)
    }

    /// The edit ids of this bundle's blocks the document has (after the
    /// removals): those are replaced in place, the others inserted.
    fn present_blocks(&self) -> Result<BTreeSet<String>, PlanError> {
        Ok(marker::scan(&self.text, self.style)
            .map_err(marker_error(self.edits.path))?
            .into_iter()
            .filter(|b| b.id.bundle == self.edits.bundle)
            .map(|b| b.id.edit)
            .collect())
    }

    /// A block the document has: its body replaced in place.
    fn replace(&mut self, block: &NewBlock, forced: &mut Vec<String>) -> Result<bool, PlanError> {
        self.comments_closed = false;
        let path = self.edits.path;
        let edit_id = &block.edit.edit_id;
        let changed =
            marker::replace_block_body_in(&mut self.text, self.style, &block.id, block.body)
                .map_err(marker_error(path))?;
        // A block State does not know (state lost or restored from an older
        // copy): only what we would write ourselves is taken over silently.
        let known = self.edits.olds.iter().any(|o| &o.edit_id == edit_id);
        if !known && changed {
            override_with_force(
                self.edits.force,
                forced,
                PlanError::UnknownBlock {
                    path: path.into(),
                    edit: edit_id.clone(),
                },
                format!(
                    "{path}: block {edit_id} that featpkg had no record of overwritten (--force)"
                ),
            )?;
        }
        Ok(self.added_newline.get(edit_id).copied().unwrap_or(false))
    }

    /// A block the document does not have yet: at the end of its section, else
    /// at the end of the document. `closes_its_comments`: the block's own
    /// text leaves no `;--` comment open.
    fn insert(
        &mut self,
        block: &NewBlock,
        checked: bool,
        closes_its_comments: bool,
    ) -> Result<bool, PlanError> {
        let path = self.edits.path;
        // Asterisk files (checked or placed in a section) are parsed to place the
        // block; only where sections end, and whether a comment is left open, is
        // needed: no entries are kept. Appending after text known to close its
        // comments needs no parse.
        let appended_after_closed = block.section.is_none() && self.comments_closed;
        let parsed = if (checked || block.section.is_some()) && !appended_after_closed {
            Some(
                asterisk_config::parse_keeping(&self.text, path, None, &|_| false).map_err(
                    |e| PlanError::Config {
                        path: path.into(),
                        message: e.to_string(),
                    },
                )?,
            )
        } else {
            None
        };
        let at = match (block.section, &parsed) {
            (Some(section), Some(parsed)) => {
                let end = asterisk_config::section_end(parsed, section).ok_or_else(|| {
                    PlanError::MissingSection {
                        path: path.into(),
                        section: section.to_string(),
                        edit: block.edit.edit_id.clone(),
                    }
                })?;
                // At the very end of the file, let insert_block handle a missing final newline.
                if end >= self.text.len() {
                    None
                } else {
                    Some(end)
                }
            }
            _ => None,
        };
        if let (None, Some(line)) = (at, parsed.as_ref().and_then(|p| p.unclosed_comment)) {
            return Err(PlanError::Config {
                path: path.into(),
                message: format!(
                    "line {line}: block comment ';--' is never closed; Asterisk ignores everything after it, so featpkg's block {} would be dead text (close it with '--;')",
                    block.edit.edit_id
                ),
            });
        }
        let appended_closed = at.is_none()
            && closes_its_comments
            && (appended_after_closed || parsed.is_some_and(|p| p.unclosed_comment.is_none()));
        let added_newline =
            marker::insert_block_in(&mut self.text, self.style, &block.id, block.body, at)
                .map_err(marker_error(path))?;
        self.comments_closed = appended_closed;
        Ok(added_newline)
    }

    /// The blocks as State keeps them once written: the hash of each body in
    /// the document (one scan for all), and whether a line ending was added
    /// before it.
    fn installed_edits(&self, placed: &[(NewBlock, bool)]) -> Result<Vec<RenderedEdit>, PlanError> {
        let path = self.edits.path;
        let blocks = marker::scan(&self.text, self.style).map_err(marker_error(path))?;
        let mut installed = Vec::with_capacity(placed.len());
        for (block, added_newline) in placed {
            let new = block.edit;
            let written = blocks
                .iter()
                .find(|b| b.id == block.id)
                .map(|b| &self.text[b.body.clone()])
                .ok_or_else(|| PlanError::Markers {
                    path: path.into(),
                    message: format!("block {} vanished after writing it (bug)", new.edit_id),
                })?;
            installed.push(RenderedEdit {
                feature: new.feature.clone(),
                edit_id: new.edit_id.clone(),
                content: RenderedContent::Block {
                    body: Written::Sha256(sha256_hex(written)),
                    section: None,
                    check: None,
                    comment: self.comment,
                    added_newline: *added_newline,
                },
            });
        }
        Ok(installed)
    }
}

/// A new block's configuration, refused when Asterisk would not read it as
/// meant or when it conflicts with `baseline` (the existing configuration and
/// the blocks checked before it).
fn checked_block_config(
    path: &str,
    block: &NewBlock,
    check: ConfigCheck,
    baseline: &[ConfigFile],
) -> Result<ConfigFile, PlanError> {
    let edit_id = &block.edit.edit_id;
    let shown = format!("featpkg block {edit_id}");
    let added = asterisk_config::parse_in_section(block.body.as_bytes(), &shown, block.section)
        .map_err(|e| PlanError::Config {
            path: path.into(),
            message: format!("block {edit_id}: {e}"),
        })?;
    if check == ConfigCheck::Dialplan {
        refuse_non_contexts(path, block, &added)?;
    }
    let conflicts = conflicts(check, baseline, &added);
    if !conflicts.is_empty() {
        return Err(PlanError::Conflicts {
            edit: edit_id.clone(),
            conflicts: conflicts.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(added)
}

/// A dialplan block must define contexts: `[general]` and `[globals]` are
/// settings and global variables to Asterisk, in the block or as the section
/// it goes into.
fn refuse_non_contexts(path: &str, block: &NewBlock, added: &ConfigFile) -> Result<(), PlanError> {
    let edit_id = &block.edit.edit_id;
    if let Some(first) = asterisk_config::reserved_dialplan_sections(added).first() {
        return Err(PlanError::Config {
            path: path.into(),
            message: format!("block {edit_id}, line {}: {}", first.line, first.message),
        });
    }
    let in_section = block
        .section
        .filter(|s| asterisk_config::is_reserved_dialplan_section(s));
    if let Some(name) = in_section {
        return Err(PlanError::Config {
            path: path.into(),
            message: format!(
                "block {edit_id} would be placed in [{name}], which is not a context (Asterisk reads [general] and [globals] as settings and global variables)"
            ),
        });
    }
    Ok(())
}

/// What in `added` clashes with `baseline`, by the kind of check the block asks for.
fn conflicts(check: ConfigCheck, baseline: &[ConfigFile], added: &ConfigFile) -> Vec<Conflict> {
    let mut conflicts: Vec<Conflict> = match check {
        ConfigCheck::Dialplan => {
            let mut c = asterisk_config::dialplan_conflicts(baseline, added);
            c.extend(asterisk_config::append_conflicts(baseline, added));
            c
        }
        ConfigCheck::Modules => asterisk_config::module_conflicts(baseline, added),
        ConfigCheck::PjsipAppend => asterisk_config::append_conflicts(baseline, added),
        ConfigCheck::NewSections => asterisk_config::section_conflicts(baseline, added),
    };
    // A missing parent makes Asterisk reject any config file, like a bad `(+)`.
    conflicts.extend(asterisk_config::inheritance_conflicts(baseline, added));
    conflicts
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The config as the PBX has it (the file with this bundle's blocks taken out,
/// plus what it includes), with the entries of only the sections the checks
/// of `edits`' new blocks look at (see [`checked_sections`]).
fn existing_config(
    edits: DocEdits,
    text: &[u8],
    style: CommentStyle,
) -> Result<Vec<ConfigFile>, PlanError> {
    let path = edits.path;
    let stripped =
        marker::strip_blocks_of(text, style, edits.bundle).map_err(marker_error(path))?;
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let me = file_name(path);
    let mut wanted = checked_sections(edits);
    loop {
        let mut source = ConfigDir {
            target: edits.target,
            dir,
            overlay: None,
        };
        let keep = |name: &str| wanted.contains(&name.to_ascii_lowercase());
        let loaded = asterisk_config::load_with_includes_over(me, &stripped, &mut source, &keep)
            .map_err(|e| PlanError::Config {
                path: path.into(),
                message: e.to_string(),
            })?;
        // A section looked at may take keys from its templates: theirs too.
        let parents: Vec<String> = loaded
            .iter()
            .flat_map(|f| f.sections.iter())
            .filter(|s| wanted.contains(&s.name.to_ascii_lowercase()))
            .flat_map(|s| s.inherits.iter().map(|p| p.to_ascii_lowercase()))
            .filter(|p| !wanted.contains(p))
            .collect();
        if parents.is_empty() {
            return Ok(loaded);
        }
        wanted.extend(parents);
    }
}

/// The sections (names in lower case, as Asterisk compares them) whose entries
/// the checks of the new blocks compare against: those the blocks define or
/// append to (a dialplan context, `[modules]`, a PJSIP endpoint). A block
/// that does not parse adds none; its check refuses it later.
fn checked_sections(edits: DocEdits) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for new in edits.news {
        if let RenderedContent::Block {
            body: Written::Full(body),
            section,
            check: Some(_),
            ..
        } = &new.content
            && let Ok(added) =
                asterisk_config::parse_in_section(body.as_bytes(), "", section.as_deref())
        {
            names.extend(added.sections.iter().map(|s| s.name.to_ascii_lowercase()));
        }
    }
    names
}

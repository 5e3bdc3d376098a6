//! Plan: the ordered list of file changes for one request, computed without
//! touching the system. The same function plans install, reinstall, upgrade and
//! uninstall: it takes the bundle's installed edits (from State) and the edits it
//! should have afterwards, and works out every file's new bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod rows;

use crate::asterisk_config::{self, ConfigFile, Conflict};
pub use crate::change::{Doc, DocChange, DocState};
use crate::feature::{ConfigCheck, RenderedContent, RenderedEdit};
use crate::file_access::FileAccess;
use crate::hash::sha256_hex;
use crate::marker::{self, BlockId, CommentStyle};
use crate::pbx::{ConfigDir, PlacedEdit, Target};
use crate::pbx::{RowError, RowState};
use crate::state::{BundleSnapshot, EditKind, InstalledEdit};
use crate::txn::FileState;

/// Why a plan could not be made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {message}")]
    Markers { path: String, message: String },
    #[error(
        "{path}: featpkg block {edit} was changed by hand since featpkg wrote it; refusing to {action} it (re-run with --force to {action} it anyway, losing those changes)"
    )]
    ModifiedBlock {
        path: String,
        edit: String,
        action: &'static str,
    },
    #[error(
        "{path}: featpkg block {edit} is missing (removed by hand?); re-run with --force to go on without it"
    )]
    MissingBlock { path: String, edit: String },
    #[error(
        "{path}: file installed by featpkg ({edit}) was {what} by hand; re-run with --force to {action} it anyway"
    )]
    ModifiedFile {
        path: String,
        edit: String,
        what: &'static str,
        action: &'static str,
    },
    #[error(
        "{path} already exists and is not featpkg's ({edit} would overwrite it); move it away first"
    )]
    FileInTheWay { path: String, edit: String },
    #[error("{path} does not exist; featpkg adds its blocks only to existing files ({edit})")]
    MissingFile { path: String, edit: String },
    #[error("{path} has no [{section}] section to add {edit} to")]
    MissingSection {
        path: String,
        section: String,
        edit: String,
    },
    #[error("refusing {edit}, it conflicts with the existing configuration:\n  {}", conflicts.join("\n  "))]
    Conflicts {
        edit: String,
        conflicts: Vec<String>,
    },
    #[error(
        "{path}: featpkg block {edit} is in the file but featpkg has no record of it (state database lost or restored from an older copy?) and it differs from what featpkg would write; re-run with --force to overwrite it"
    )]
    UnknownBlock { path: String, edit: String },
    #[error(
        "{path} is a symbolic link (to {target}); featpkg changes only regular files, so that its rename never replaces your link and never writes outside the PBX tree: put the real file in its place, then run again"
    )]
    Symlink { path: String, target: String },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Row(#[from] RowError),
    #[error(transparent)]
    Crontab(#[from] crate::file_access::CrontabError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The computed plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every document the plan changes, in the order they are applied
    /// ([`Plan::into_phases`]): directories to create (parents first), files,
    /// rows (each its own SQLite transaction), directories to remove (deepest first).
    pub changes: Vec<DocChange>,
    /// For every row this bundle has blocks in afterwards: the row as it was
    /// before featpkg first touched it, so uninstall can put it back exactly.
    pub row_baselines: BTreeMap<String, Option<RowState>>,
    /// The bundle's edits after the plan is applied (hashes of what we wrote).
    pub edits: Vec<InstalledEdit>,
    /// Directories featpkg owns for this bundle afterwards.
    pub dirs: Vec<String>,
    /// Hand edits overridden by --force, reported to the user.
    pub forced: Vec<String>,
    /// (path, edit id) of this bundle's blocks that the plan does not change
    /// but that now carry the "a line ending was added before me" fact of a
    /// block removed right in front of them (see [`marker::remove_blocks`]):
    /// an uninstall of one feature records it for the features that stay.
    pub added_newline_moved: Vec<(String, String)>,
}

impl Plan {
    /// True when applying it would change nothing on disk.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }

    /// Host paths of the files this plan deletes.
    pub fn removed_files(&self) -> BTreeSet<PathBuf> {
        self.changes
            .iter()
            .filter(|c| matches!(c.doc, Doc::File { .. }) && c.after.is_none())
            .filter_map(|c| c.host_path().cloned())
            .collect()
    }

    /// Puts the changes in the order they are applied (stable: within a
    /// phase, the order they were planned in).
    pub fn into_phases(&mut self) {
        self.changes.sort_by_key(DocChange::phase);
    }
}

/// True when a directory with these `entries` is empty once the plan has
/// deleted `removed_files` and the deeper `removed_dirs`: anything else in it
/// (the admin's own files) is not featpkg's to remove.
pub fn empty_after_plan(
    entries: std::fs::ReadDir,
    removed_files: &BTreeSet<PathBuf>,
    removed_dirs: &BTreeSet<PathBuf>,
) -> bool {
    entries.flatten().all(|e| {
        let p = e.path();
        removed_files.contains(&p) || removed_dirs.contains(&p)
    })
}

/// A hand change featpkg overrides only when told to: without `--force` it is
/// refused with `refusal`; with it, `note` tells the user what was overridden.
fn override_with_force(
    force: bool,
    forced: &mut Vec<String>,
    refusal: PlanError,
    note: String,
) -> Result<(), PlanError> {
    if !force {
        return Err(refusal);
    }
    forced.push(note);
    Ok(())
}

fn style(comment: char) -> CommentStyle {
    if comment == '#' {
        CommentStyle::Hash
    } else {
        CommentStyle::Semicolon
    }
}

/// Reads a file's current state, or None when it does not exist. A symbolic
/// link is refused: the transaction renames a new file over the path, which
/// would replace the link (with the link's own mode, 0777) instead of editing
/// what it points to, and following it could lead out of the PBX tree.
pub fn read_file_state(path: &Path) -> Result<Option<FileState>, PlanError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(PlanError::Symlink {
            path: path.display().to_string(),
            target: std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|e| format!("unreadable: {e}")),
        }),
        Ok(meta) => {
            let content = std::fs::read(path).map_err(|source| PlanError::Io {
                path: path.display().to_string(),
                source,
            })?;
            Ok(Some(FileState {
                content,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PlanError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A document's content and metadata the way `access` reaches it (a crontab
/// read through crontab(1) is the caller's, 0600, as crontab(1) installs it).
pub fn read_document_state(
    path: &Path,
    access: &FileAccess,
) -> Result<Option<FileState>, PlanError> {
    match access {
        FileAccess::Direct => read_file_state(path),
        FileAccess::Crontab { program } => Ok(crate::file_access::read_crontab(program, path)?
            .map(|content| FileState {
                content,
                mode: 0o600,
                uid: current_uid(),
                gid: current_gid(),
            })),
    }
}

/// Computes the plan that takes `bundle` from `installed` (None = not installed)
/// to having exactly `desired` edits. `force` lets hand edits inside our blocks be overwritten.
pub fn plan(
    target: &dyn Target,
    bundle: &str,
    installed: Option<&BundleSnapshot>,
    desired: &[PlacedEdit],
    force: bool,
) -> Result<Plan, PlanError> {
    let no_edits = Vec::new();
    let old_edits = installed.map(|b| &b.edits).unwrap_or(&no_edits);
    let mut out = Plan::default();

    // Every path touched, in a stable order: paths of old edits, then new ones.
    let mut paths: Vec<String> = Vec::new();
    for p in old_edits
        .iter()
        .map(|e| e.path.clone())
        .chain(desired.iter().map(|e| e.runtime_path.clone()))
    {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }

    for runtime_path in &paths {
        let olds: Vec<&InstalledEdit> = old_edits
            .iter()
            .filter(|e| &e.path == runtime_path)
            .collect();
        let news: Vec<&RenderedEdit> = desired
            .iter()
            .filter(|e| &e.runtime_path == runtime_path)
            .map(|e| &e.edit)
            .collect();
        let (host_path, access) = match target.document(runtime_path) {
            Doc::File { path, access } => (path, access),
            Doc::Dir { .. } => unreachable!("a target names files and rows, not directories"),
            Doc::Row(row) => {
                let baseline = installed.and_then(|b| b.row_baselines.get(runtime_path));
                rows::plan_row(
                    target,
                    bundle,
                    runtime_path,
                    row,
                    baseline,
                    &olds,
                    &news,
                    force,
                    &mut out,
                )?;
                continue;
            }
        };
        let before = read_document_state(&host_path, &access)?;
        let is_owned_file = olds.iter().any(|e| e.kind == EditKind::File)
            || news
                .iter()
                .any(|e| matches!(e.content, RenderedContent::File { .. }));
        let (after, edits) = if is_owned_file {
            plan_owned_file(
                runtime_path,
                target.owner_for_new(runtime_path),
                before.as_ref(),
                &olds,
                &news,
                force,
                &mut out.forced,
            )?
        } else {
            let mut newline_moved = Vec::new();
            let planned = plan_blocks(
                target,
                bundle,
                runtime_path,
                before.as_ref(),
                &olds,
                &news,
                force,
                &mut out.forced,
                &mut newline_moved,
            )?;
            out.added_newline_moved.extend(
                newline_moved
                    .into_iter()
                    .map(|edit| (runtime_path.clone(), edit)),
            );
            planned
        };
        out.edits.extend(edits);
        if after != before {
            out.changes.push(DocChange::file(
                runtime_path.clone(),
                host_path,
                access,
                before,
                after,
            ));
        }
    }
    plan_dirs(target, installed, &mut out)?;
    out.into_phases();
    Ok(out)
}

/// A whole file we own (a binary, our own conf file).
fn plan_owned_file(
    path: &str,
    owner_for_new: Option<(u32, u32)>,
    before: Option<&FileState>,
    olds: &[&InstalledEdit],
    news: &[&RenderedEdit],
    force: bool,
    forced: &mut Vec<String>,
) -> Result<(Option<FileState>, Vec<InstalledEdit>), PlanError> {
    let old = olds.first();
    let new = news.first();
    let action = if new.is_some() { "replace" } else { "remove" };
    match (old, before) {
        (Some(old), Some(current)) if sha256_hex(&current.content) != old.sha256 => {
            override_with_force(
                force,
                forced,
                PlanError::ModifiedFile {
                    path: path.into(),
                    edit: old.edit_id.clone(),
                    what: "changed",
                    action,
                },
                format!(
                    "{path}: hand changes to {} overwritten (--force)",
                    old.edit_id
                ),
            )?;
        }
        (Some(old), None) => {
            override_with_force(
                force,
                forced,
                PlanError::ModifiedFile {
                    path: path.into(),
                    edit: old.edit_id.clone(),
                    what: "deleted",
                    action,
                },
                format!("{path}: was deleted by hand (--force)"),
            )?;
        }
        (None, Some(_)) => {
            let edit = new.map(|n| n.edit_id.clone()).unwrap_or_default();
            return Err(PlanError::FileInTheWay {
                path: path.into(),
                edit,
            });
        }
        _ => {}
    }
    let Some(new) = new else {
        return Ok((None, Vec::new()));
    };
    let RenderedContent::File { bytes, mode } = &new.content else {
        return Err(PlanError::Config {
            path: path.into(),
            message: format!(
                "{} mixes a block and an owned file on one path",
                new.edit_id
            ),
        });
    };
    let after = FileState {
        content: bytes.clone(),
        mode: *mode,
        uid: before
            .map(|b| b.uid)
            .or(owner_for_new.map(|o| o.0))
            .unwrap_or_else(current_uid),
        gid: before
            .map(|b| b.gid)
            .or(owner_for_new.map(|o| o.1))
            .unwrap_or_else(current_gid),
    };
    let edit = InstalledEdit {
        feature: new.feature.clone(),
        edit_id: new.edit_id.clone(),
        kind: EditKind::File,
        path: path.into(),
        sha256: sha256_hex(bytes),
        added_newline: false,
        comment: ';',
        mode: *mode,
    };
    Ok((Some(after), vec![edit]))
}

// std has no getuid(); /proc/self belongs to the process's effective uid and gid.
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

fn current_gid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.gid())
        .unwrap_or(0)
}

/// The comment character of a document's markers: what the new blocks use, else
/// what the installed ones used, else `;`.
fn comment_of(olds: &[&InstalledEdit], news: &[&RenderedEdit]) -> char {
    news.iter()
        .find_map(|n| match n.content {
            RenderedContent::Block { comment, .. } => Some(comment),
            _ => None,
        })
        .or_else(|| olds.first().map(|o| o.comment))
        .unwrap_or(';')
}

/// Marked blocks in a shared text file.
#[allow(clippy::too_many_arguments)]
fn plan_blocks(
    target: &dyn Target,
    bundle: &str,
    path: &str,
    before: Option<&FileState>,
    olds: &[&InstalledEdit],
    news: &[&RenderedEdit],
    force: bool,
    forced: &mut Vec<String>,
    newline_moved: &mut Vec<String>,
) -> Result<(Option<FileState>, Vec<InstalledEdit>), PlanError> {
    let created;
    let before = match (before, target.create_missing(path)) {
        (Some(before), _) => Some(before),
        (None, Some(mode)) if !news.is_empty() => {
            let (uid, gid) = target
                .owner_for_new(path)
                .unwrap_or_else(|| (current_uid(), current_gid()));
            created = FileState {
                content: Vec::new(),
                mode,
                uid,
                gid,
            };
            Some(&created)
        }
        (None, _) => None,
    };
    let Some(before) = before else {
        if olds.is_empty() {
            if let Some(new) = news.first() {
                return Err(PlanError::MissingFile {
                    path: path.into(),
                    edit: new.edit_id.clone(),
                });
            }
        } else if !force {
            return Err(PlanError::MissingBlock {
                path: path.into(),
                edit: olds[0].edit_id.clone(),
            });
        }
        forced.push(format!("{path}: missing, nothing to remove (--force)"));
        return Ok((None, Vec::new()));
    };
    let comment = comment_of(olds, news);
    let style = style(comment);
    let marker_err = |e: marker::MarkerError| PlanError::Markers {
        path: path.into(),
        message: e.to_string(),
    };
    let mut text = before.content.clone();
    marker::scan(&text, style).map_err(marker_err)?;
    let id_of = |edit: &str| BlockId {
        bundle: bundle.to_string(),
        edit: edit.to_string(),
    };
    let mut added_newline: BTreeMap<String, bool> = BTreeMap::new();
    let mut going: Vec<(BlockId, bool)> = Vec::new();

    // 1. Old blocks: drift check, then keep (to be replaced in place) or remove.
    for old in olds {
        let id = id_of(&old.edit_id);
        let still_wanted = news.iter().any(|n| n.edit_id == old.edit_id);
        let action = if still_wanted { "replace" } else { "remove" };
        match marker::block_body(&text, style, &id).map_err(marker_err)? {
            None => {
                override_with_force(
                    force,
                    forced,
                    PlanError::MissingBlock {
                        path: path.into(),
                        edit: old.edit_id.clone(),
                    },
                    format!("{path}: block {} was missing (--force)", old.edit_id),
                )?;
                continue;
            }
            Some(body) if sha256_hex(body) != old.sha256 => {
                override_with_force(
                    force,
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
        if still_wanted {
            added_newline.insert(old.edit_id.clone(), old.added_newline);
        } else {
            going.push((id, old.added_newline));
        }
    }
    // All at once, from the end of the file backwards, so that a file that had
    // no final newline gets none back whatever order the blocks came in; the
    // fact passes on to a block of ours that stays right after a removed one.
    let removed = marker::remove_blocks(&text, style, &going).map_err(marker_err)?;
    text = removed.text;
    for heir in removed.added_newline_passed_to {
        if heir.bundle != bundle {
            continue; // another bundle's block: its own record says nothing of it
        }
        if news.iter().any(|n| n.edit_id == heir.edit) {
            added_newline.insert(heir.edit, true);
        } else {
            newline_moved.push(heir.edit);
        }
    }

    // 2. What the PBX already has, without this bundle's blocks: the baseline for the checks.
    // (Only Asterisk config files are parsed: a crontab block has no check.)
    let needs_check = news
        .iter()
        .any(|n| matches!(n.content, RenderedContent::Block { check: Some(_), .. }));
    let existing = if needs_check {
        existing_config(target, bundle, path, &text, style)?
    } else {
        Vec::new()
    };
    let mut added_so_far: Vec<ConfigFile> = Vec::new();

    // 3. New blocks: check, then replace in place or insert.
    let mut edits = Vec::new();
    for new in news {
        let RenderedContent::Block {
            body,
            section,
            check,
            ..
        } = &new.content
        else {
            continue;
        };
        let id = id_of(&new.edit_id);
        if let Some(check) = check {
            let shown = format!("featpkg block {}", new.edit_id);
            let added =
                asterisk_config::parse_in_section(body.as_bytes(), &shown, section.as_deref())
                    .map_err(|e| PlanError::Config {
                        path: path.into(),
                        message: format!("block {}: {e}", new.edit_id),
                    })?;
            if *check == ConfigCheck::Dialplan {
                let reserved = asterisk_config::reserved_dialplan_sections(&added);
                let in_section = section
                    .as_deref()
                    .filter(|s| asterisk_config::is_reserved_dialplan_section(s));
                if let Some(first) = reserved.first() {
                    return Err(PlanError::Config {
                        path: path.into(),
                        message: format!(
                            "block {}, line {}: {}",
                            new.edit_id, first.line, first.message
                        ),
                    });
                }
                if let Some(name) = in_section {
                    return Err(PlanError::Config {
                        path: path.into(),
                        message: format!(
                            "block {} would be placed in [{name}], which is not a context (Asterisk reads [general] and [globals] as settings and global variables)",
                            new.edit_id
                        ),
                    });
                }
            }
            let mut baseline = existing.clone();
            baseline.extend(added_so_far.iter().cloned());
            let mut conflicts: Vec<Conflict> = match check {
                ConfigCheck::Dialplan => {
                    let mut c = asterisk_config::dialplan_conflicts(&baseline, &added);
                    c.extend(asterisk_config::append_conflicts(&baseline, &added));
                    c
                }
                ConfigCheck::Modules => asterisk_config::module_conflicts(&baseline, &added),
                ConfigCheck::PjsipAppend => asterisk_config::append_conflicts(&baseline, &added),
                ConfigCheck::NewSections => asterisk_config::section_conflicts(&baseline, &added),
            };
            // A missing parent makes Asterisk reject any config file, like a bad `(+)`.
            conflicts.extend(asterisk_config::inheritance_conflicts(&baseline, &added));
            if !conflicts.is_empty() {
                return Err(PlanError::Conflicts {
                    edit: new.edit_id.clone(),
                    conflicts: conflicts.iter().map(ToString::to_string).collect(),
                });
            }
            added_so_far.push(added);
        }
        let exists = marker::block_body(&text, style, &id)
            .map_err(marker_err)?
            .is_some();
        let added_nl = if exists {
            let replaced =
                marker::replace_block_body(&text, style, &id, body).map_err(marker_err)?;
            // A block State does not know (state lost or restored from an older
            // copy): only what we would write ourselves is taken over silently.
            let known = olds.iter().any(|o| o.edit_id == new.edit_id);
            if !known && replaced != text {
                override_with_force(
                    force,
                    forced,
                    PlanError::UnknownBlock {
                        path: path.into(),
                        edit: new.edit_id.clone(),
                    },
                    format!(
                        "{path}: block {} that featpkg had no record of overwritten (--force)",
                        new.edit_id
                    ),
                )?;
            }
            text = replaced;
            added_newline.get(&new.edit_id).copied().unwrap_or(false)
        } else {
            // Asterisk files (checked or placed in a section) are parsed to place the block.
            let parsed = if check.is_some() || section.is_some() {
                Some(
                    asterisk_config::parse(&text, path).map_err(|e| PlanError::Config {
                        path: path.into(),
                        message: e.to_string(),
                    })?,
                )
            } else {
                None
            };
            let at = match (section, &parsed) {
                (Some(section), Some(parsed)) => {
                    let end = asterisk_config::section_end(parsed, section).ok_or_else(|| {
                        PlanError::MissingSection {
                            path: path.into(),
                            section: section.clone(),
                            edit: new.edit_id.clone(),
                        }
                    })?;
                    // At the very end of the file, let insert_block handle a missing final newline.
                    if end >= text.len() { None } else { Some(end) }
                }
                _ => None,
            };
            if let (None, Some(line)) = (at, parsed.as_ref().and_then(|p| p.unclosed_comment)) {
                return Err(PlanError::Config {
                    path: path.into(),
                    message: format!(
                        "line {line}: block comment ';--' is never closed; Asterisk ignores everything after it, so featpkg's block {} would be dead text (close it with '--;')",
                        new.edit_id
                    ),
                });
            }
            let inserted = marker::insert_block(&text, style, &id, body, at).map_err(marker_err)?;
            text = inserted.text;
            inserted.added_newline
        };
        let written = marker::block_body(&text, style, &id)
            .map_err(marker_err)?
            .ok_or_else(|| PlanError::Markers {
                path: path.into(),
                message: format!("block {} vanished after writing it (bug)", new.edit_id),
            })?;
        edits.push(InstalledEdit {
            feature: new.feature.clone(),
            edit_id: new.edit_id.clone(),
            kind: EditKind::Block,
            path: path.into(),
            sha256: sha256_hex(written),
            added_newline: added_nl,
            comment,
            mode: before.mode,
        });
    }
    // A file featpkg may create goes again once nothing is left in it.
    if text.is_empty() && edits.is_empty() && target.create_missing(path).is_some() {
        return Ok((None, edits));
    }
    let after = FileState {
        content: text,
        ..before.clone()
    };
    Ok((Some(after), edits))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The config as the PBX has it (the file with this bundle's blocks taken out, plus what it includes).
fn existing_config(
    target: &dyn Target,
    bundle: &str,
    path: &str,
    text: &[u8],
    style: CommentStyle,
) -> Result<Vec<ConfigFile>, PlanError> {
    let stripped =
        marker::without_blocks_of(text, style, bundle).map_err(|e| PlanError::Markers {
            path: path.into(),
            message: e.to_string(),
        })?;

    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let me = file_name(path).to_string();
    let mut source = ConfigDir {
        target,
        dir,
        overlay: Some((&me, stripped)),
    };
    asterisk_config::load_with_includes(&me, &mut source).map_err(|e| PlanError::Config {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Directories: create missing parents of new files; remove owned ones left empty.
fn plan_dirs(
    target: &dyn Target,
    installed: Option<&BundleSnapshot>,
    out: &mut Plan,
) -> Result<(), PlanError> {
    let mut owned: BTreeSet<String> = installed
        .map(|b| b.dirs.iter().cloned().collect())
        .unwrap_or_default();
    // Parents of files that exist afterwards.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for f in out.changes.iter().filter(|c| {
        matches!(
            &c.doc,
            Doc::File {
                access: FileAccess::Direct,
                ..
            }
        ) && c.after.is_some()
            && c.before.is_none()
    }) {
        let mut p = f.runtime_path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            needed.insert(parent.to_string());
            p = parent;
        }
    }
    for dir in &needed {
        let host = target.host_path(dir);
        if !host.exists() {
            // BTreeSet order puts parents first.
            out.changes
                .push(DocChange::make_dir(dir.clone(), host, 0o755));
            owned.insert(dir.clone());
        }
    }

    // Owned dirs that will be empty: deepest first.
    let removed_files = out.removed_files();
    let remaining: Vec<&str> = out.edits.iter().map(|e| e.path.as_str()).collect();
    let mut removed_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut candidates: Vec<String> = owned.iter().cloned().collect();
    candidates.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for dir in candidates {
        let prefix = format!("{dir}/");
        if remaining.iter().any(|p| p.starts_with(&prefix)) {
            continue;
        }
        let host = target.host_path(&dir);
        let Ok(entries) = std::fs::read_dir(&host) else {
            owned.remove(&dir); // already gone
            continue;
        };
        if empty_after_plan(entries, &removed_files, &removed_dirs) {
            let mode = std::fs::metadata(&host)
                .map(|m| m.mode() & 0o7777)
                .unwrap_or(0o755);
            out.changes
                .push(DocChange::remove_dir(dir.clone(), host.clone(), mode));
            removed_dirs.insert(host);
            owned.remove(&dir);
        }
    }
    out.dirs = owned.into_iter().collect();
    Ok(())
}

//! Plan: the ordered list of file changes for one request, computed without
//! touching the system. The same function plans install, reinstall, upgrade and
//! uninstall: it takes the bundle's installed edits (from State) and the edits it
//! should have afterwards, and works out every file's new bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod blocks;
mod owned_file;

pub use crate::change::{Doc, DocChange, DocState};
use crate::feature::RenderedEdit;
use crate::file_access::FileAccess;
use crate::pbx::Target;
use crate::pbx::{RowError, RowState};
use crate::state::BundleSnapshot;
use crate::txn::FileState;
pub(crate) use blocks::{comment_of, plan_blocks, style};
use owned_file::plan_owned_file;

/// Why a plan could not be made; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// featpkg's begin/end marker lines in the document are broken (an
    /// unmatched or duplicated marker), so its blocks cannot be found safely.
    #[error("{path}: {message}")]
    Markers {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// What is wrong with the markers, from [`crate::marker::MarkerError`].
        message: String,
    },
    /// A block featpkg wrote no longer has the hash State recorded for it:
    /// someone edited inside it. Overridden with `--force`.
    #[error(
        "{path}: featpkg block {edit} was changed by hand since featpkg wrote it; refusing to {action} it (re-run with --force to {action} it anyway, losing those changes)"
    )]
    ModifiedBlock {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
        /// What the plan meant to do to the block: `replace` or `remove`.
        action: &'static str,
    },
    /// A block State records is no longer in the document. Overridden with
    /// `--force` (the plan goes on as if it were removed).
    #[error(
        "{path}: featpkg block {edit} is missing (removed by hand?); re-run with --force to go on without it"
    )]
    MissingBlock {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
    },
    /// A whole file featpkg installed was changed or deleted since (its hash
    /// differs from State's record, or it is gone). Overridden with `--force`.
    #[error(
        "{path}: file installed by featpkg ({edit}) was {what} by hand; re-run with --force to {action} it anyway"
    )]
    ModifiedFile {
        /// The file's runtime path: `/etc/asterisk/featpkg-ami/busy-callback.conf`.
        path: String,
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
        /// What happened to it: `changed` or `deleted`.
        what: &'static str,
        /// What the plan meant to do to it: `replace` or `remove`.
        action: &'static str,
    },
    /// A whole file featpkg would create already exists and State has no
    /// record of it: it belongs to someone else, and `--force` does not help.
    #[error(
        "{path} already exists and is not featpkg's ({edit} would overwrite it); move it away first"
    )]
    FileInTheWay {
        /// The file's runtime path: `/etc/asterisk/featpkg-ami/busy-callback.conf`.
        path: String,
        /// The edit that would create it, `<feature>/<edit>`.
        edit: String,
    },
    /// A block is meant for a shared file that does not exist (and the PBX
    /// does not create it): featpkg adds to existing configuration only.
    #[error("{path} does not exist; featpkg adds its blocks only to existing files ({edit})")]
    MissingFile {
        /// The missing file's runtime path: `/etc/asterisk/extensions.conf`.
        path: String,
        /// The edit that wanted it, `<feature>/<edit>`.
        edit: String,
    },
    /// A block that goes into a named section (`[from-internal]`) finds no
    /// such section in the document.
    #[error("{path} has no [{section}] section to add {edit} to")]
    MissingSection {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// The section's name without brackets: `from-internal`.
        section: String,
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
    },
    /// A new block clashes with configuration already there (e.g. the same
    /// dialplan extension and priority defined twice).
    #[error("refusing {edit}, it conflicts with the existing configuration:\n  {}", conflicts.join("\n  "))]
    Conflicts {
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
        /// One line per clash, `<file>:<line>: <message>`.
        conflicts: Vec<String>,
    },
    /// A document holds a block with featpkg's markers that State has no
    /// record of, and its body is not what featpkg would write. Overwritten
    /// with `--force`.
    #[error(
        "{path}: featpkg block {edit} is in the file but featpkg has no record of it (state database lost or restored from an older copy?) and it differs from what featpkg would write; re-run with --force to overwrite it"
    )]
    UnknownBlock {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// The edit's id, `<feature>/<edit>`.
        edit: String,
    },
    /// The document is a symbolic link; featpkg changes only regular files.
    #[error(
        "{path} is a symbolic link (to {target}); featpkg changes only regular files, so that its rename never replaces your link and never writes outside the PBX tree: put the real file in its place, then run again"
    )]
    Symlink {
        /// The link's path on this machine: `/etc/asterisk/extensions.conf`.
        path: String,
        /// Where the link points, as stored in it (or why it could not be read).
        target: String,
    },
    /// The document or a new block is not configuration that Asterisk would
    /// read as meant (a parse error, an unclosed block comment, a dialplan
    /// block in `[general]`), or the PBX cannot take the edit there.
    #[error("{path}: {message}")]
    Config {
        /// The document's runtime path: `/etc/asterisk/extensions.conf`, or a
        /// database row's `<table>:<key>`.
        path: String,
        /// What is wrong, with the line when known: `line 12: ...`.
        message: String,
    },
    /// Reading a database row the plan changes failed.
    #[error(transparent)]
    Row(#[from] RowError),
    /// Reading a crontab through crontab(1) failed.
    #[error(transparent)]
    Crontab(#[from] crate::file_access::CrontabError),
    /// Reading a file (or its metadata) failed for another reason than its absence.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file's path on this machine.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl PlanError {
    /// The same error naming `to` where it named the document `from`: a
    /// document planned through a stand-in (a database row's text checked as
    /// the file it ends up in) is named as the admin knows it.
    pub(crate) fn renamed(mut self, from: &str, to: &str) -> PlanError {
        if let PlanError::Markers { path, .. }
        | PlanError::ModifiedBlock { path, .. }
        | PlanError::MissingBlock { path, .. }
        | PlanError::MissingSection { path, .. }
        | PlanError::UnknownBlock { path, .. }
        | PlanError::Config { path, .. } = &mut self
            && path == from
        {
            *path = to.to_string();
        }
        self
    }
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
    /// The bundle's edits after the plan is applied, each beside its
    /// document's runtime path, as State keeps them (hashes of what we wrote).
    pub edits: Vec<(String, RenderedEdit)>,
    /// Directories featpkg owns for this bundle afterwards.
    pub dirs: Vec<String>,
    /// Hand edits overridden by --force, reported to the user.
    pub forced: Vec<String>,
    /// (path, edit id) of this bundle's blocks that the plan does not change
    /// but that now carry the "a line ending was added before me" fact of a
    /// block removed right in front of them (see [`crate::marker::remove_blocks`]):
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
                uid: own_ids().0,
                gid: own_ids().1,
            })),
    }
}

/// Computes the plan that takes `bundle` from `installed` (None = not installed)
/// to having exactly `desired` edits, each with the document it goes in (see
/// [`Target::place`]). `force` lets hand edits inside our blocks be overwritten.
pub fn plan(
    target: &dyn Target,
    bundle: &str,
    installed: Option<&BundleSnapshot>,
    desired: &[(String, RenderedEdit)],
    force: bool,
) -> Result<Plan, PlanError> {
    let request = Request {
        target,
        bundle,
        installed,
        desired,
        force,
    };
    let mut out = Plan::default();
    for runtime_path in request.touched_paths() {
        request.plan_document(&runtime_path, &mut out)?;
    }
    plan_dirs(target, installed, &mut out)?;
    out.into_phases();
    Ok(out)
}

/// What one [`plan`] is asked for: a bundle, what it has installed, and the
/// edits it should have afterwards.
struct Request<'a> {
    target: &'a dyn Target,
    bundle: &'a str,
    installed: Option<&'a BundleSnapshot>,
    desired: &'a [(String, RenderedEdit)],
    force: bool,
}

impl Request<'_> {
    fn old_edits(&self) -> &[(String, RenderedEdit)] {
        self.installed.map(|b| b.edits.as_slice()).unwrap_or(&[])
    }

    /// Every path touched, in a stable order: paths of old edits, then new ones.
    fn touched_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        for p in self
            .old_edits()
            .iter()
            .map(|(path, _)| path.clone())
            .chain(self.desired.iter().map(|(path, _)| path.clone()))
        {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths
    }

    /// The changes to the document at `runtime_path`, added to `out`.
    fn plan_document(&self, runtime_path: &str, out: &mut Plan) -> Result<(), PlanError> {
        let olds: Vec<&RenderedEdit> = self
            .old_edits()
            .iter()
            .filter(|(path, _)| path == runtime_path)
            .map(|(_, edit)| edit)
            .collect();
        let news: Vec<&RenderedEdit> = self
            .desired
            .iter()
            .filter(|(path, _)| path == runtime_path)
            .map(|(_, edit)| edit)
            .collect();
        let edits = DocEdits {
            target: self.target,
            bundle: self.bundle,
            path: runtime_path,
            olds: &olds,
            news: &news,
            force: self.force,
        };
        match self.target.document(runtime_path) {
            Doc::File { path, access } => plan_file(edits, path, access, out),
            Doc::Dir { .. } => unreachable!("a target names files and rows, not directories"),
            Doc::Row(row) => {
                let baseline = self
                    .installed
                    .and_then(|b| b.row_baselines.get(runtime_path));
                self.target.plan_row(edits, row, baseline, out)
            }
        }
    }
}

/// One bundle's edits on one document: those it has there now and those it
/// should have afterwards.
#[derive(Clone, Copy)]
pub struct DocEdits<'a> {
    /// The PBX the document is on.
    pub target: &'a dyn Target,
    /// The bundle whose edits these are.
    pub bundle: &'a str,
    /// The document's runtime path: what messages and State name.
    pub path: &'a str,
    /// The bundle's edits in the document now (from State).
    pub olds: &'a [&'a RenderedEdit],
    /// The bundle's edits it should have afterwards.
    pub news: &'a [&'a RenderedEdit],
    /// Hand changes are overridden (and noted) instead of refused.
    pub force: bool,
}

impl DocEdits<'_> {
    /// True when the document is a whole file featpkg owns, not a shared one
    /// it puts blocks in.
    pub fn is_owned_file(&self) -> bool {
        self.olds.iter().chain(self.news).any(|e| e.is_file())
    }
}

/// The changes to a file (at `host_path`, reached through `access`), added to `out`.
fn plan_file(
    edits: DocEdits,
    host_path: PathBuf,
    access: FileAccess,
    out: &mut Plan,
) -> Result<(), PlanError> {
    let before = read_document_state(&host_path, &access)?;
    let (after, installed) = if edits.is_owned_file() {
        plan_owned_file(edits, before.as_ref(), &mut out.forced)?
    } else {
        let mut newline_moved = Vec::new();
        let planned = plan_blocks(edits, before.as_ref(), &mut out.forced, &mut newline_moved)?;
        out.added_newline_moved.extend(
            newline_moved
                .into_iter()
                .map(|edit| (edits.path.to_string(), edit)),
        );
        planned
    };
    out.edits.extend(
        installed
            .into_iter()
            .map(|edit| (edits.path.to_string(), edit)),
    );
    if after != before {
        out.changes.push(DocChange::file(
            edits.path.to_string(),
            host_path,
            access,
            before,
            after,
        ));
    }
    Ok(())
}

/// Who owns a file featpkg creates when nothing says otherwise: the user it
/// runs as (root when that cannot be told, as files made by root are).
fn own_ids() -> (u32, u32) {
    crate::identity::effective_ids().unwrap_or((0, 0))
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
    let remaining: Vec<&str> = out.edits.iter().map(|(path, _)| path.as_str()).collect();
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

//! Transactions: a write-ahead journal on disk, then atomic file steps, undone in
//! reverse on any error — and after a crash, by the next featpkg command.
//!
//! Before the first change, `<journal_dir>/<txn_id>/journal.json` lists every
//! step (path, before-hash and backup, intended after-hash, mode and owner) and
//! the backups sit beside it, all fsynced. Each file is then written as a temp
//! file in the same directory, fsynced, renamed over, and the directory fsynced.
//! Undo is decided per file by hashes (on-disk == after → restore the backup;
//! == before → nothing to do; anything else → drift, stop), so it is idempotent
//! and safe to repeat after a crash in the middle of an undo.
//!
//! What a transaction does to the running PBX is journalled too, in
//! `<journal_dir>/<txn_id>/pbx.log`, one line appended and fsynced *before* each
//! action: `reload` (the PBX is about to read the new files) and `load <module>`
//! (the PBX is about to load a module that was not running). A rollback — in the
//! same run or by [`recover`] after a crash — hands these to the caller
//! ([`Undone`]) after the files are back and before the journal goes, so the
//! caller can reload the restored files and unload exactly those modules.
//!
//! Test hooks (always compiled, cheap): `FEATPKG_TEST_FAIL_AT=<point>` makes
//! [`test_point`] fail there; `FEATPKG_TEST_PAUSE_AT=<point>` prints
//! `featpkg: paused at <point>` on stderr and sleeps forever, so an end-to-end
//! test can `kill -9` the process at exactly that instant. Points: `journal-written`,
//! `step-<n>-temp` (temp file written, not yet renamed), `step-<n>-done`,
//! `applied`, plus the callers' own (`before-state-commit`, `state-committed`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::change::{Doc, DocChange, DocState};
use crate::file_access::{self, CrontabError, FileAccess};
use crate::hash::sha256_hex;
use crate::row::{self, RowRef, RowState};

/// Content and metadata of a file, before or after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Transaction failures; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} changed since featpkg planned this change (someone edited it meanwhile); nothing was written, run the command again"
    )]
    Changed(PathBuf),
    #[error("an unfinished transaction journal is in {0}; run `featpkg recover`")]
    Unfinished(PathBuf),
    #[error(
        "cannot undo the change to {0}: it no longer matches what featpkg wrote nor what was there before; fix it by hand (the journal in {1} keeps the original as a backup)"
    )]
    Drift(PathBuf, PathBuf),
    #[error(
        "{0} is a symbolic link; featpkg changes only regular files (a rename would replace the link)"
    )]
    Symlink(PathBuf),
    #[error("directory {0} is not empty, cannot remove it")]
    DirNotEmpty(PathBuf),
    #[error(
        "journal {path} is unreadable: {message}; featpkg will not guess what to undo: the backup-NNN files beside it hold the original bytes of the files it lists; put back what is needed, then remove that journal directory"
    )]
    BadJournal { path: PathBuf, message: String },
    #[error(
        "another featpkg run holds the lock {path}; waited {waited_s} s for it (try again when it has finished)"
    )]
    Locked { path: PathBuf, waited_s: u64 },
    #[error(
        "module name {0:?} is not a plain file name (letters, digits, '_', '-', '.'); featpkg will not pass it to Asterisk"
    )]
    BadModuleName(String),
    #[error("injected failure at {0} (FEATPKG_TEST_FAIL_AT)")]
    Injected(String),
    #[error(transparent)]
    Row(#[from] row::RowError),
    #[error(transparent)]
    Crontab(#[from] CrontabError),
    #[error(
        "cannot undo the change to {0}: it no longer matches what featpkg wrote nor what was there before; fix it by hand (the journal in {1} keeps the original row)"
    )]
    RowDrift(String, PathBuf),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TxnError + '_ {
    move |source| TxnError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Name of the file, in a transaction's journal directory, that records what
/// the transaction did to the running PBX (see the module doc).
pub const PBX_LOG: &str = "pbx.log";

/// One action on the running PBX, journalled before it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbxEvent {
    /// The PBX is about to be reloaded with the transaction's files.
    Reload,
    /// The PBX is about to load this module (it was not running).
    LoadModule(String),
}

/// True for a module name featpkg passes to Asterisk and keeps in a journal:
/// a plain file name (`func_extstate.so`): letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit (`-f` would be an option to `module unload`).
pub fn valid_module_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What a rolled-back transaction had done to the running PBX, as its journal
/// recorded it, with the documents it put back: what the caller needs to put
/// the running PBX back too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undone {
    /// Files and rows put back by this undo (empty when an earlier, interrupted
    /// undo had already put them back).
    pub restored: Vec<PathBuf>,
    /// Every file and row the transaction changes (rows by their runtime name).
    pub documents: Vec<PathBuf>,
    /// A reload with the transaction's files had started: the PBX may be
    /// running them, whatever `restored` says.
    pub reloaded: bool,
    /// Modules the PBX was about to load for the transaction, in load order,
    /// each once. Some may not have loaded (the load failed, or the run was
    /// killed first): the caller checks before unloading.
    pub loaded_modules: Vec<String>,
}

fn pbx_log_line(event: &PbxEvent) -> String {
    match event {
        PbxEvent::Reload => "reload\n".to_string(),
        PbxEvent::LoadModule(module) => format!("load {module}\n"),
    }
}

/// Reads a journal's PBX log. A last line without its newline is a write the
/// crash interrupted: its action had not started, so it is ignored.
fn read_pbx_log(dir: &Path) -> Result<(bool, Vec<String>), TxnError> {
    let path = dir.join(PBX_LOG);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((false, Vec::new())),
        Err(e) => return Err(io(&path)(e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end + 1],
        None => "",
    };
    let mut reloaded = false;
    let mut modules: Vec<String> = Vec::new();
    for (n, line) in complete.lines().enumerate() {
        let bad = |message: String| TxnError::BadJournal {
            path: path.clone(),
            message: format!("line {}: {message}", n + 1),
        };
        if line == "reload" {
            reloaded = true;
        } else if let Some(module) = line.strip_prefix("load ") {
            if !valid_module_name(module) {
                return Err(bad(format!("{module:?} is not a module name")));
            }
            if !modules.iter().any(|m| m == module) {
                modules.push(module.to_string());
            }
        } else {
            return Err(bad(format!("unknown entry {line:?}")));
        }
    }
    Ok((reloaded, modules))
}

/// The documents a journal's steps change (files by path, rows by runtime name).
fn journal_documents(journal: &Journal) -> Vec<PathBuf> {
    journal
        .steps
        .iter()
        .filter_map(|step| match step {
            JournalStep::File { path, .. } => Some(path.clone()),
            JournalStep::Row { row, .. } => Some(PathBuf::from(row.key.runtime_path())),
            JournalStep::CreateDir { .. } | JournalStep::RemoveDir { .. } => None,
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct JournalState {
    sha256: String,
    mode: u32,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JournalStep {
    CreateDir {
        path: PathBuf,
        mode: u32,
    },
    File {
        path: PathBuf,
        before: Option<JournalState>,
        /// Backup file name inside the journal directory, when `before` exists.
        backup: Option<String>,
        after: Option<JournalState>,
        /// Temp file written beside `path` before the rename.
        temp: PathBuf,
        /// Absent in journals of featpkg 1.0 (all direct).
        #[serde(default, skip_serializing_if = "is_direct")]
        access: FileAccess,
    },
    RemoveDir {
        path: PathBuf,
        mode: u32,
    },
    /// Rows are small: both states sit in the journal itself.
    Row {
        row: RowRef,
        before: Option<RowState>,
        after: Option<RowState>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    txn_id: String,
    steps: Vec<JournalStep>,
}

/// A transaction whose journal is on disk.
pub struct Transaction {
    dir: PathBuf,
    journal_dir: PathBuf,
    changes: Vec<DocChange>,
    journal: Journal,
}

fn fsync_dir(dir: &Path) -> Result<(), TxnError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` durably: temp file `temp` in the same directory, fsync,
/// mode and owner, rename, directory fsync. `point` is the test hook run between
/// the temp write and the rename.
fn atomic_write(
    path: &Path,
    temp: &Path,
    state: &FileState,
    point: Option<&str>,
) -> Result<(), TxnError> {
    let _ = fs::remove_file(temp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(io(temp))?;
    f.write_all(&state.content).map_err(io(temp))?;
    f.sync_all().map_err(io(temp))?;
    let meta = f.metadata().map_err(io(temp))?;
    if meta.uid() != state.uid || meta.gid() != state.gid {
        std::os::unix::fs::chown(temp, Some(state.uid), Some(state.gid)).map_err(io(temp))?;
    }
    // After the chown, which clears set-uid/set-gid bits.
    fs::set_permissions(temp, fs::Permissions::from_mode(state.mode)).map_err(io(temp))?;
    drop(f);
    if let Some(point) = point {
        test_point(point)?;
    }
    fs::rename(temp, path).map_err(io(path))?;
    fsync_dir(parent(path))
}

/// Creates one directory with exactly `mode` (not masked by the umask), durably.
fn make_dir(path: &Path, mode: u32) -> Result<(), TxnError> {
    fs::create_dir(path).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))?;
    fsync_dir(parent(path))
}

/// Removes a directory that must be empty, durably.
fn remove_empty_dir(path: &Path) -> Result<(), TxnError> {
    fs::remove_dir(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::DirectoryNotEmpty => TxnError::DirNotEmpty(path.to_path_buf()),
        _ => io(path)(e),
    })?;
    fsync_dir(parent(path))
}

fn is_direct(access: &FileAccess) -> bool {
    *access == FileAccess::Direct
}

/// Hash of the file at `path`, or None when it does not exist.
fn current_hash(path: &Path, access: &FileAccess) -> Result<Option<String>, TxnError> {
    if let FileAccess::Crontab { program } = access {
        return Ok(file_access::read_crontab(program, path)?.map(|bytes| sha256_hex(&bytes)));
    }
    match fs::read(path) {
        Ok(bytes) => Ok(Some(sha256_hex(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes `state` to the file at `path` the way `access` reaches it.
fn write_file(
    path: &Path,
    temp: &Path,
    access: &FileAccess,
    state: &FileState,
    point: Option<&str>,
) -> Result<(), TxnError> {
    match access {
        FileAccess::Direct => atomic_write(path, temp, state, point),
        FileAccess::Crontab { program } => {
            // crontab(1) writes its own temp file and renames it; the hook
            // still runs before anything is installed.
            if let Some(point) = point {
                test_point(point)?;
            }
            Ok(file_access::write_crontab(program, path, &state.content)?)
        }
    }
}

/// Deletes the file at `path` the way `access` reaches it.
fn remove_file(path: &Path, access: &FileAccess) -> Result<(), TxnError> {
    match access {
        FileAccess::Direct => {
            fs::remove_file(path).map_err(io(path))?;
            fsync_dir(parent(path))
        }
        FileAccess::Crontab { program } => Ok(file_access::remove_crontab(program, path)?),
    }
}

fn journal_state(s: &FileState) -> JournalState {
    JournalState {
        sha256: sha256_hex(&s.content),
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
    }
}

fn temp_name(path: &Path, txn_id: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.featpkg-{txn_id}"))
}

/// The journal's record of `change` (the `index`th), checked against the
/// disk first: a document that no longer holds its `before` is refused.
/// A file's old bytes go into a backup file in `staging`.
fn journal_step(
    change: &DocChange,
    index: usize,
    txn_id: &str,
    staging: &Path,
) -> Result<JournalStep, TxnError> {
    let file_state = |s: &Option<DocState>| s.as_ref().and_then(DocState::as_file).cloned();
    let row_state = |s: &Option<DocState>| s.as_ref().and_then(DocState::as_row).cloned();
    Ok(match &change.doc {
        Doc::Dir { path } => match (&change.before, &change.after) {
            (_, Some(DocState::Dir { mode })) => {
                if path.exists() {
                    return Err(TxnError::Changed(path.clone()));
                }
                JournalStep::CreateDir {
                    path: path.clone(),
                    mode: *mode,
                }
            }
            (before, _) => JournalStep::RemoveDir {
                path: path.clone(),
                mode: match before {
                    Some(DocState::Dir { mode }) => *mode,
                    _ => 0o755,
                },
            },
        },
        Doc::Row(row) => {
            let before = row_state(&change.before);
            if row::read(row)? != before {
                return Err(row::RowError::Changed(row.key.runtime_path()).into());
            }
            JournalStep::Row {
                row: row.clone(),
                before,
                after: row_state(&change.after),
            }
        }
        Doc::File { path, access } => {
            if *access == FileAccess::Direct
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(TxnError::Symlink(path.clone()));
            }
            let before = file_state(&change.before);
            let expected = before.as_ref().map(|b| sha256_hex(&b.content));
            if current_hash(path, access)? != expected {
                return Err(TxnError::Changed(path.clone()));
            }
            let backup = match &before {
                Some(b) => {
                    let name = format!("backup-{:03}", index + 1);
                    let bpath = staging.join(&name);
                    let mut f = File::create(&bpath).map_err(io(&bpath))?;
                    f.write_all(&b.content).map_err(io(&bpath))?;
                    f.sync_all().map_err(io(&bpath))?;
                    Some(name)
                }
                None => None,
            };
            JournalStep::File {
                path: path.clone(),
                before: before.as_ref().map(journal_state),
                backup,
                after: file_state(&change.after).as_ref().map(journal_state),
                temp: temp_name(path, txn_id),
                access: access.clone(),
            }
        }
    })
}

impl Transaction {
    /// Writes the journal (and backups) before any change. Refuses, with nothing
    /// changed, when another journal is unfinished or a file no longer matches its `before`.
    pub fn begin(
        journal_dir: &Path,
        txn_id: &str,
        changes: Vec<DocChange>,
    ) -> Result<Transaction, TxnError> {
        fs::create_dir_all(journal_dir).map_err(io(journal_dir))?;
        for entry in fs::read_dir(journal_dir).map_err(io(journal_dir))? {
            let entry = entry.map_err(io(journal_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // An incomplete journal write: nothing was changed under it.
                fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                continue;
            }
            return Err(TxnError::Unfinished(entry.path()));
        }
        let mut journal = Journal {
            txn_id: txn_id.to_string(),
            steps: Vec::new(),
        };
        let staging = journal_dir.join(format!(".{txn_id}.tmp"));
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        for (index, change) in changes.iter().enumerate() {
            match journal_step(change, index, txn_id, &staging) {
                Ok(step) => journal.steps.push(step),
                Err(e) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(e);
                }
            }
        }
        let jpath = staging.join("journal.json");
        let mut f = File::create(&jpath).map_err(io(&jpath))?;
        f.write_all(&serde_json::to_vec_pretty(&journal).expect("journal serialises"))
            .map_err(io(&jpath))?;
        f.sync_all().map_err(io(&jpath))?;
        fsync_dir(&staging)?;
        let dir = journal_dir.join(txn_id);
        fs::rename(&staging, &dir).map_err(io(&dir))?;
        fsync_dir(journal_dir)?;
        let transaction = Transaction {
            dir,
            journal_dir: journal_dir.to_path_buf(),
            changes,
            journal,
        };
        if let Err(e) = test_point("journal-written") {
            undo(
                &transaction.dir,
                &transaction.journal_dir,
                &transaction.journal,
            )?;
            return Err(e);
        }
        Ok(transaction)
    }

    /// Applies every step in order; on any error undoes everything, then returns the error.
    pub fn apply(&mut self) -> Result<(), TxnError> {
        let result = self.apply_steps();
        if let Err(e) = result {
            undo(&self.dir, &self.journal_dir, &self.journal)?;
            return Err(e);
        }
        Ok(())
    }

    fn apply_steps(&self) -> Result<(), TxnError> {
        for (index, (change, jstep)) in self.changes.iter().zip(&self.journal.steps).enumerate() {
            let n = index + 1;
            match (&change.doc, jstep) {
                (Doc::Dir { path }, JournalStep::CreateDir { mode, .. }) => make_dir(path, *mode)?,
                (Doc::Dir { path }, _) => remove_empty_dir(path)?,
                (Doc::Row(row), _) => row::compare_and_write(
                    row,
                    change.before.as_ref().and_then(DocState::as_row),
                    change.after.as_ref().and_then(DocState::as_row),
                )?,
                (Doc::File { path, access }, JournalStep::File { temp, .. }) => {
                    match change.after.as_ref().and_then(DocState::as_file) {
                        Some(state) => {
                            write_file(path, temp, access, state, Some(&format!("step-{n}-temp")))?
                        }
                        None => remove_file(path, access)?,
                    }
                }
                (Doc::File { .. }, _) => unreachable!("journal steps mirror the changes"),
            }
            test_point(&format!("step-{n}-done"))?;
        }
        test_point("applied")
    }

    /// Appends `event` to the journal's PBX log and makes it durable, before
    /// the caller acts on the PBX: a crash after this and before the action
    /// leaves a record of something that did not happen, which the undo copes
    /// with; the other order could leave an action nobody undoes.
    pub fn record(&self, event: &PbxEvent) -> Result<(), TxnError> {
        if let PbxEvent::LoadModule(module) = event
            && !valid_module_name(module)
        {
            return Err(TxnError::BadModuleName(module.clone()));
        }
        let path = self.dir.join(PBX_LOG);
        let created = !path.exists();
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(pbx_log_line(event).as_bytes())
            .map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        if created {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Undoes every applied step (e.g. after a failed reload), then calls `pbx`
    /// with what the journal recorded (the caller reloads the restored files and
    /// unloads the modules the transaction loaded), then removes the journal.
    /// A crash before the journal is gone makes [`recover`] do it all again.
    pub fn rollback(self, pbx: &mut dyn FnMut(&Undone)) -> Result<(), TxnError> {
        let undone = undo_journal(&self.dir, &self.journal)?;
        pbx(&undone);
        discard_journal(&self.dir, &self.journal_dir)
    }

    /// The caller recorded the transaction as committed: remove the journal.
    pub fn finish(self) -> Result<(), TxnError> {
        discard_journal(&self.dir, &self.journal_dir)
    }
}

/// Removes a journal directory that is no longer needed. It is first renamed to a
/// dot name in one atomic step, so a crash in the middle of deleting its files
/// leaves a directory every later run deletes, never a journal without its
/// `journal.json` that no run could read.
fn discard_journal(dir: &Path, journal_dir: &Path) -> Result<(), TxnError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = journal_dir.join(format!(".{name}.done"));
    let _ = fs::remove_dir_all(&doomed);
    fs::rename(dir, &doomed).map_err(io(dir))?;
    fsync_dir(journal_dir)?;
    fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
    fsync_dir(journal_dir)
}

/// Undoes a journal's steps in reverse by hashes, then deletes the journal.
/// Returns the paths it restored. Idempotent.
fn undo_steps(dir: &Path, journal: &Journal) -> Result<Vec<PathBuf>, TxnError> {
    let mut restored = Vec::new();
    for step in journal.steps.iter().rev() {
        match step {
            JournalStep::CreateDir { path, .. } => {
                if path.is_dir() {
                    remove_empty_dir(path)?;
                    restored.push(path.clone());
                }
            }
            JournalStep::RemoveDir { path, mode } => {
                if !path.exists() {
                    make_dir(path, *mode)?;
                    restored.push(path.clone());
                }
            }
            JournalStep::Row { row, before, after } => {
                let now = row::read(row)?;
                if now == *before {
                    continue;
                }
                if now != *after {
                    return Err(TxnError::RowDrift(
                        row.key.runtime_path(),
                        dir.to_path_buf(),
                    ));
                }
                row::compare_and_write(row, after.as_ref(), before.as_ref())?;
                restored.push(PathBuf::from(row.key.runtime_path()));
            }
            JournalStep::File {
                path,
                before,
                backup,
                after,
                temp,
                access,
            } => {
                if *access == FileAccess::Direct {
                    let _ = fs::remove_file(temp);
                }
                let now = current_hash(path, access)?;
                let before_hash = before.as_ref().map(|b| b.sha256.clone());
                let after_hash = after.as_ref().map(|a| a.sha256.clone());
                if now == before_hash {
                    // Not applied yet (or already undone). Mode may still differ if only it changed
                    // (crontab(1) sets its own).
                    if let Some(b) = before.as_ref().filter(|_| *access == FileAccess::Direct) {
                        let meta = fs::metadata(path).map_err(io(path))?;
                        if meta.mode() & 0o7777 != b.mode {
                            fs::set_permissions(path, fs::Permissions::from_mode(b.mode))
                                .map_err(io(path))?;
                        }
                    }
                    continue;
                }
                if now != after_hash {
                    return Err(TxnError::Drift(path.clone(), dir.to_path_buf()));
                }
                match (before, backup) {
                    (Some(b), Some(name)) => {
                        let bpath = dir.join(name);
                        let content = fs::read(&bpath).map_err(io(&bpath))?;
                        if sha256_hex(&content) != b.sha256 {
                            return Err(TxnError::BadJournal {
                                path: bpath,
                                message: "backup does not match its recorded hash".into(),
                            });
                        }
                        let state = FileState {
                            content,
                            mode: b.mode,
                            uid: b.uid,
                            gid: b.gid,
                        };
                        write_file(path, temp, access, &state, None)?;
                    }
                    _ => remove_file(path, access)?,
                }
                restored.push(path.clone());
            }
        }
    }
    Ok(restored)
}

/// Undoes a journal's steps (not yet deleting it) and reads what it recorded of the PBX.
fn undo_journal(dir: &Path, journal: &Journal) -> Result<Undone, TxnError> {
    // Read first: an unreadable PBX log stops the undo before anything moves.
    let (reloaded, loaded_modules) = read_pbx_log(dir)?;
    let restored = undo_steps(dir, journal)?;
    Ok(Undone {
        restored,
        documents: journal_documents(journal),
        reloaded,
        loaded_modules,
    })
}

/// Undo before the PBX was touched (a failed step, an injected failure): the
/// files go back and the journal goes.
fn undo(dir: &Path, journal_dir: &Path, journal: &Journal) -> Result<(), TxnError> {
    undo_steps(dir, journal)?;
    discard_journal(dir, journal_dir)
}

/// What [`recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub txn_id: String,
    /// true: rolled forward (the transaction had committed); false: rolled back.
    pub rolled_forward: bool,
    /// Files and directories put back.
    pub restored: Vec<PathBuf>,
    /// What was done to the running PBX after the files were back (reloads,
    /// modules unloaded), one line each, as the caller's `pbx` reported it.
    pub pbx: Vec<String>,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rolled_forward {
            write!(
                f,
                "found interrupted transaction {}: it had committed, rolled forward",
                self.txn_id
            )
        } else {
            write!(
                f,
                "found interrupted transaction {}: rolled back ({} paths restored to their original bytes)",
                self.txn_id,
                self.restored.len()
            )
        }
    }
}

/// Finishes an interrupted transaction, if any: rolls it forward when
/// `is_committed(txn_id)` (the state DB recorded it), else undoes it and then
/// calls `pbx` with what its journal recorded of the running PBX (reloads,
/// modules loaded), before the journal is deleted; `pbx` returns lines for the
/// report.
pub fn recover(
    journal_dir: &Path,
    is_committed: &dyn Fn(&str) -> bool,
    pbx: &mut dyn FnMut(&Undone) -> Vec<String>,
) -> Result<Option<RecoveryReport>, TxnError> {
    if !journal_dir.is_dir() {
        return Ok(None);
    }
    let mut report = None;
    let mut entries: Vec<PathBuf> = fs::read_dir(journal_dir)
        .map_err(io(journal_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            // The journal was never complete, so no step ran.
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            fsync_dir(journal_dir)?;
            continue;
        }
        let jpath = dir.join("journal.json");
        let bytes = match fs::read(&jpath) {
            Ok(bytes) => bytes,
            // A journal directory is renamed into place only once journal.json is
            // in it, so without one it is the rest of an interrupted removal
            // (by an older featpkg): its transaction was already finished or undone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                discard_journal(&dir, journal_dir)?;
                continue;
            }
            Err(e) => return Err(io(&jpath)(e)),
        };
        let journal: Journal =
            serde_json::from_slice(&bytes).map_err(|e| TxnError::BadJournal {
                path: jpath.clone(),
                message: e.to_string(),
            })?;
        if is_committed(&journal.txn_id) {
            for step in &journal.steps {
                if let JournalStep::File { temp, .. } = step {
                    let _ = fs::remove_file(temp);
                }
            }
            discard_journal(&dir, journal_dir)?;
            report = Some(RecoveryReport {
                txn_id: journal.txn_id,
                rolled_forward: true,
                restored: Vec::new(),
                pbx: Vec::new(),
            });
        } else {
            let undone = undo_journal(&dir, &journal)?;
            let said = pbx(&undone);
            discard_journal(&dir, journal_dir)?;
            report = Some(RecoveryReport {
                txn_id: journal.txn_id,
                rolled_forward: false,
                restored: undone.restored,
                pbx: said,
            });
        }
    }
    Ok(report)
}

/// Exclusive lock serialising featpkg runs on one PBX; released on drop.
pub struct PbxLock {
    _file: File,
}

/// Takes `<state_dir>/lock`, waiting up to `wait` for another run to release it.
pub fn acquire_lock(state_dir: &Path, wait: Duration) -> Result<PbxLock, TxnError> {
    let path = state_dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(PbxLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= wait {
                    return Err(TxnError::Locked {
                        path,
                        waited_s: wait.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
    }
}

thread_local! {
    /// Unit tests inject failures per thread (env vars are process-wide).
    static FAIL_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Test hook: fails or pauses at `name` when the environment (or a unit test) asks.
pub fn test_point(name: &str) -> Result<(), TxnError> {
    let injected = FAIL_AT.with(|f| f.borrow().as_deref() == Some(name));
    if injected || std::env::var("FEATPKG_TEST_FAIL_AT").is_ok_and(|p| p == name) {
        return Err(TxnError::Injected(name.to_string()));
    }
    if std::env::var("FEATPKG_TEST_PAUSE_AT").is_ok_and(|p| p == name) {
        eprintln!("featpkg: paused at {name}");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_pbx(_: &Undone) -> Vec<String> {
        Vec::new()
    }

    fn fail_at(point: Option<&str>) {
        FAIL_AT.with(|f| *f.borrow_mut() = point.map(str::to_string));
    }

    fn state(content: &[u8], mode: u32) -> FileState {
        let me = fs::metadata("/proc/self").unwrap();
        FileState {
            content: content.to_vec(),
            mode,
            uid: me.uid(),
            gid: me.gid(),
        }
    }

    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("etc")).unwrap();
            fs::write(dir.path().join("etc/a.conf"), b"[a]\nx=1\n").unwrap();
            fs::set_permissions(
                dir.path().join("etc/a.conf"),
                fs::Permissions::from_mode(0o640),
            )
            .unwrap();
            fs::write(dir.path().join("etc/gone.conf"), b"bye\n").unwrap();
            Tree { dir }
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn journal(&self) -> PathBuf {
            self.p("state/journal")
        }
        /// Every path under etc/ with content and mode.
        fn snapshot(&self) -> Vec<(String, Vec<u8>, u32)> {
            let mut out = Vec::new();
            let mut stack = vec![self.p("etc")];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    let rel = e
                        .path()
                        .strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string();
                    if m.is_dir() {
                        stack.push(e.path());
                        out.push((rel, Vec::new(), m.mode() & 0o7777));
                    } else {
                        out.push((rel, fs::read(e.path()).unwrap(), m.mode() & 0o7777));
                    }
                }
            }
            out.sort();
            out
        }
        fn steps(&self) -> Vec<DocChange> {
            let file = |rel: &str, before, after| {
                DocChange::file(rel.into(), self.p(rel), FileAccess::Direct, before, after)
            };
            vec![
                DocChange::make_dir("etc/featpkg".into(), self.p("etc/featpkg"), 0o755),
                file("etc/featpkg/new.conf", None, Some(state(b"new\n", 0o644))),
                file(
                    "etc/a.conf",
                    Some(state(b"[a]\nx=1\n", 0o640)),
                    Some(state(b"[a]\nx=1\n; ours\n", 0o640)),
                ),
                file("etc/gone.conf", Some(state(b"bye\n", 0o644)), None),
            ]
        }
    }

    #[test]
    fn journals_without_an_access_are_direct_and_crontab_steps_say_so() {
        // A journal featpkg 1.0 left behind (no `access`) reads as direct files.
        let old = r#"{"kind":"file","path":"/etc/a.conf","before":null,"backup":null,"after":null,"temp":"/etc/.a.conf.featpkg-1"}"#;
        let step: JournalStep = serde_json::from_str(old).unwrap();
        let JournalStep::File { access, .. } = &step else {
            panic!("{step:?}")
        };
        assert_eq!(*access, FileAccess::Direct);
        // Direct steps are written as before; crontab(1) steps name their program.
        assert_eq!(serde_json::to_string(&step).unwrap(), old);
        let JournalStep::File {
            path,
            before,
            backup,
            after,
            temp,
            ..
        } = step
        else {
            unreachable!()
        };
        let through = JournalStep::File {
            path,
            before,
            backup,
            after,
            temp,
            access: FileAccess::Crontab {
                program: PathBuf::from("/usr/bin/crontab"),
            },
        };
        let json = serde_json::to_string(&through).unwrap();
        assert!(
            json.ends_with(r#","access":{"via":"crontab","program":"/usr/bin/crontab"}}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<JournalStep>(&json).unwrap(), through);
    }

    #[test]
    fn apply_and_finish() {
        let t = Tree::new();
        let mut txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        assert!(t.journal().join("t1/journal.json").is_file());
        txn.apply().unwrap();
        txn.finish().unwrap();
        assert_eq!(fs::read(t.p("etc/a.conf")).unwrap(), b"[a]\nx=1\n; ours\n");
        assert_eq!(
            fs::metadata(t.p("etc/a.conf")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read(t.p("etc/featpkg/new.conf")).unwrap(), b"new\n");
        assert!(!t.p("etc/gone.conf").exists());
        assert_eq!(
            fs::read_dir(t.journal()).unwrap().count(),
            0,
            "journal removed"
        );
    }

    #[test]
    fn injected_failure_at_every_point_restores_the_tree() {
        let points = [
            "journal-written",
            "step-1-done",
            "step-2-temp",
            "step-2-done",
            "step-3-temp",
            "step-3-done",
            "step-4-done",
            "applied",
        ];
        for point in points {
            let t = Tree::new();
            let before = t.snapshot();
            fail_at(Some(point));
            let result =
                Transaction::begin(&t.journal(), "t1", t.steps()).and_then(|mut txn| txn.apply());
            fail_at(None);
            assert!(
                matches!(result, Err(TxnError::Injected(ref p)) if p == point),
                "{point}: {:?}",
                result.err()
            );
            assert_eq!(t.snapshot(), before, "{point}");
            assert_eq!(
                fs::read_dir(t.journal()).unwrap().count(),
                0,
                "{point}: journal left behind"
            );
        }
    }

    #[test]
    fn rollback_after_apply() {
        let t = Tree::new();
        let before = t.snapshot();
        let mut txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply().unwrap();
        txn.rollback(&mut |_| {}).unwrap();
        assert_eq!(t.snapshot(), before);
    }

    /// Simulates a crash: apply up to a point, then forget the Transaction without undo.
    fn crash_at(t: &Tree, point: &str) {
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        fail_at(Some(point));
        let _ = txn.apply_steps();
        fail_at(None);
        std::mem::forget(txn);
    }

    #[test]
    fn recover_rolls_back_an_interrupted_journal() {
        for point in [
            "step-1-done",
            "step-2-temp",
            "step-3-temp",
            "step-3-done",
            "applied",
        ] {
            let t = Tree::new();
            let before = t.snapshot();
            crash_at(&t, point);
            let report = recover(&t.journal(), &|_| false, &mut no_pbx)
                .unwrap()
                .unwrap();
            assert!(!report.rolled_forward);
            assert!(report.to_string().contains("rolled back"), "{report}");
            assert_eq!(t.snapshot(), before, "{point}");
            // Repeating is harmless.
            assert_eq!(
                recover(&t.journal(), &|_| false, &mut no_pbx).unwrap(),
                None
            );
        }
    }

    #[test]
    fn recover_rolls_forward_a_committed_journal() {
        let t = Tree::new();
        crash_at(&t, "never");
        let applied = t.snapshot();
        let report = recover(&t.journal(), &|id| id == "t1", &mut no_pbx)
            .unwrap()
            .unwrap();
        assert!(report.rolled_forward);
        assert_eq!(t.snapshot(), applied);
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);
    }

    #[test]
    fn recover_stops_on_drift() {
        let t = Tree::new();
        crash_at(&t, "applied");
        fs::write(t.p("etc/a.conf"), b"edited by someone else\n").unwrap();
        let err = recover(&t.journal(), &|_| false, &mut no_pbx).unwrap_err();
        assert!(
            matches!(err, TxnError::Drift(ref p, _) if p == &t.p("etc/a.conf")),
            "{err}"
        );
        assert!(
            t.journal().join("t1").is_dir(),
            "journal kept for the admin"
        );
    }

    #[test]
    fn begin_refuses_when_the_disk_changed_since_planning() {
        let t = Tree::new();
        fs::write(t.p("etc/a.conf"), b"changed\n").unwrap();
        let before = t.snapshot();
        let err = Transaction::begin(&t.journal(), "t1", t.steps())
            .err()
            .unwrap();
        assert!(
            matches!(err, TxnError::Changed(ref p) if p == &t.p("etc/a.conf")),
            "{err}"
        );
        assert_eq!(t.snapshot(), before);
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);
    }

    #[test]
    fn begin_refuses_a_symlink_and_a_crashed_removal_is_cleaned_up() {
        let t = Tree::new();
        fs::rename(t.p("etc/a.conf"), t.p("a.conf.real")).unwrap();
        std::os::unix::fs::symlink("../a.conf.real", t.p("etc/a.conf")).unwrap();
        let err = Transaction::begin(&t.journal(), "t1", t.steps())
            .err()
            .unwrap();
        assert!(
            matches!(err, TxnError::Symlink(ref p) if p == &t.p("etc/a.conf")),
            "{err}"
        );
        assert!(
            fs::symlink_metadata(t.p("etc/a.conf"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);

        // What a kill -9 in the middle of deleting a journal could leave.
        fs::create_dir_all(t.journal().join("t0")).unwrap();
        fs::write(t.journal().join("t0/backup-001"), b"x").unwrap();
        fs::create_dir_all(t.journal().join(".t9.done")).unwrap();
        assert_eq!(
            recover(&t.journal(), &|_| false, &mut no_pbx).unwrap(),
            None
        );
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);
    }

    #[test]
    fn owner_and_special_mode_bits_are_both_kept() {
        // chown(2) clears set-id bits, so the mode must be set after the owner.
        if fs::metadata("/proc/self").unwrap().uid() != 0 {
            return; // only root can give a file away
        }
        let t = Tree::new();
        let path = t.p("etc/setgid.bin");
        let state = FileState {
            content: b"x".to_vec(),
            mode: 0o6755,
            uid: 1234,
            gid: 1234,
        };
        atomic_write(&path, &t.p("etc/.tmp"), &state, None).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o6755, 1234, 1234)
        );
    }

    fn record_loads(txn: &Transaction, modules: &[&str]) {
        txn.record(&PbxEvent::Reload).unwrap();
        for m in modules {
            txn.record(&PbxEvent::LoadModule(m.to_string())).unwrap();
        }
    }

    #[test]
    fn rollback_hands_the_recorded_pbx_actions_over_before_the_journal_goes() {
        let t = Tree::new();
        let before = t.snapshot();
        let mut txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply().unwrap();
        record_loads(&txn, &["a.so", "b.so", "a.so"]);
        assert_eq!(
            fs::read_to_string(t.journal().join("t1").join(PBX_LOG)).unwrap(),
            "reload\nload a.so\nload b.so\nload a.so\n"
        );
        let mut seen = None;
        txn.rollback(&mut |undone| {
            // The files are back, the journal is still there.
            assert_eq!(t.snapshot(), before);
            assert!(t.journal().join("t1").join(PBX_LOG).is_file());
            seen = Some(undone.clone());
        })
        .unwrap();
        let undone = seen.expect("called");
        assert!(undone.reloaded);
        assert_eq!(undone.loaded_modules, ["a.so", "b.so"]);
        assert_eq!(
            undone.documents,
            [
                t.p("etc/featpkg/new.conf"),
                t.p("etc/a.conf"),
                t.p("etc/gone.conf")
            ]
        );
        assert_eq!(undone.restored.len(), 4, "{:?}", undone.restored);
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);
    }

    #[test]
    fn a_rollback_before_any_pbx_action_hands_over_nothing() {
        let t = Tree::new();
        let mut txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply().unwrap();
        let mut seen = None;
        txn.rollback(&mut |undone| seen = Some(undone.clone()))
            .unwrap();
        let undone = seen.unwrap();
        assert!(!undone.reloaded && undone.loaded_modules.is_empty());
    }

    #[test]
    fn recover_hands_the_recorded_pbx_actions_over_then_removes_the_journal() {
        let t = Tree::new();
        let before = t.snapshot();
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply_steps().unwrap();
        record_loads(&txn, &["func_extstate.so", "app_confbridge.so"]);
        std::mem::forget(txn); // kill -9
        let mut calls = 0;
        let report = recover(&t.journal(), &|_| false, &mut |undone| {
            calls += 1;
            assert!(t.journal().join("t1").join(PBX_LOG).is_file());
            assert!(undone.reloaded);
            assert_eq!(
                undone.loaded_modules,
                ["func_extstate.so", "app_confbridge.so"]
            );
            assert_eq!(undone.restored.len(), 4);
            vec!["module unload app_confbridge.so: Unloaded app_confbridge.so".into()]
        })
        .unwrap()
        .unwrap();
        assert_eq!(calls, 1);
        assert!(!report.rolled_forward);
        assert_eq!(
            report.pbx,
            ["module unload app_confbridge.so: Unloaded app_confbridge.so"]
        );
        assert_eq!(t.snapshot(), before);
        assert_eq!(fs::read_dir(t.journal()).unwrap().count(), 0);
    }

    #[test]
    fn recover_after_an_interrupted_rollback_still_reloads_and_unloads() {
        // Killed after the in-process rollback put the files back, before it
        // reloaded Asterisk and unloaded the modules.
        let t = Tree::new();
        let before = t.snapshot();
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply_steps().unwrap();
        record_loads(&txn, &["func_extstate.so"]);
        undo_steps(&txn.dir, &txn.journal).unwrap();
        std::mem::forget(txn);
        assert_eq!(t.snapshot(), before);
        let mut seen = None;
        recover(&t.journal(), &|_| false, &mut |undone| {
            seen = Some(undone.clone());
            Vec::new()
        })
        .unwrap()
        .unwrap();
        let undone = seen.unwrap();
        assert!(undone.restored.is_empty(), "{:?}", undone.restored);
        assert!(
            undone.reloaded,
            "the journal says Asterisk read the new files"
        );
        assert_eq!(undone.documents.len(), 3);
        assert_eq!(undone.loaded_modules, ["func_extstate.so"]);
    }

    #[test]
    fn a_committed_journal_rolls_forward_and_unloads_nothing() {
        let t = Tree::new();
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply_steps().unwrap();
        record_loads(&txn, &["func_extstate.so"]);
        std::mem::forget(txn);
        let report = recover(&t.journal(), &|_| true, &mut |_| {
            panic!("a committed transaction is not undone")
        })
        .unwrap()
        .unwrap();
        assert!(report.rolled_forward);
    }

    #[test]
    fn a_torn_last_pbx_log_line_is_an_action_that_never_started() {
        let t = Tree::new();
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        txn.apply_steps().unwrap();
        std::mem::forget(txn);
        fs::write(
            t.journal().join("t1").join(PBX_LOG),
            "reload\nload a.so\nload b.s",
        )
        .unwrap();
        let mut seen = None;
        recover(&t.journal(), &|_| false, &mut |undone| {
            seen = Some(undone.clone());
            Vec::new()
        })
        .unwrap();
        assert_eq!(seen.unwrap().loaded_modules, ["a.so"]);
    }

    #[test]
    fn a_garbled_pbx_log_stops_recovery_and_keeps_the_journal() {
        let t = Tree::new();
        crash_at(&t, "applied");
        let applied = t.snapshot();
        fs::write(
            t.journal().join("t1").join(PBX_LOG),
            "reload\nload a.so; rm -rf /\n",
        )
        .unwrap();
        let err = recover(&t.journal(), &|_| false, &mut no_pbx).unwrap_err();
        assert!(
            matches!(err, TxnError::BadJournal { ref message, .. } if message.contains("line 2")),
            "{err}"
        );
        assert_eq!(t.snapshot(), applied, "nothing undone on a guess");
        assert!(t.journal().join("t1").is_dir());
    }

    #[test]
    fn record_refuses_a_module_name_it_could_not_replay() {
        let t = Tree::new();
        let txn = Transaction::begin(&t.journal(), "t1", t.steps()).unwrap();
        for bad in ["a.so\nreload", "a.so b.so", "-f", "", "../x.so"] {
            let err = txn
                .record(&PbxEvent::LoadModule(bad.to_string()))
                .unwrap_err();
            assert!(matches!(err, TxnError::BadModuleName(_)), "{bad:?}: {err}");
        }
        assert!(!t.journal().join("t1").join(PBX_LOG).exists());
        txn.rollback(&mut |_| {}).unwrap();
    }

    #[test]
    fn begin_refuses_while_a_journal_is_unfinished() {
        let t = Tree::new();
        crash_at(&t, "step-1-done");
        let err = Transaction::begin(&t.journal(), "t2", Vec::new())
            .err()
            .unwrap();
        assert!(matches!(err, TxnError::Unfinished(_)), "{err}");
    }

    #[test]
    fn lock_waits_then_fails_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire_lock(dir.path(), Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = acquire_lock(dir.path(), Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            err.to_string()
                .contains("another featpkg run holds the lock"),
            "{err}"
        );
        drop(first);
        acquire_lock(dir.path(), Duration::ZERO).unwrap();
    }
}

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

use crate::change::{Doc, DocChange, DocState};
use crate::file_access::{CrontabError, FileAccess};
use crate::pbx::{RowError, RowRef};

mod files;
mod journal;

use files::{
    current_hash, fsync_dir, make_dir, remove_empty_dir, remove_file, temp_name, write_file,
};
use journal::{Journal, discard_journal, pbx_log_line, read_pbx_log};

/// Content and metadata of a file, before or after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// The file's bytes.
    pub content: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Numeric owner (uid), e.g. the `asterisk` user's.
    pub uid: u32,
    /// Numeric group (gid).
    pub gid: u32,
}

/// Transaction failures; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// A file system call failed on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The document (path given) no longer holds what the plan started from;
    /// found before anything was written.
    #[error(
        "{0} changed since featpkg planned this change (someone edited it meanwhile); nothing was written, run the command again"
    )]
    Changed(PathBuf),
    /// A journal directory (path given) of an earlier transaction that never
    /// finished: it must be recovered before a new transaction starts.
    #[error("an unfinished transaction journal is in {0}; run `featpkg recover`")]
    Unfinished(PathBuf),
    /// Undo found a file (first path) in neither its before nor its after
    /// state; the second path is the journal directory holding its backup.
    #[error(
        "cannot undo the change to {0}: it no longer matches what featpkg wrote nor what was there before; fix it by hand (the journal in {1} keeps the original as a backup)"
    )]
    Drift(PathBuf, PathBuf),
    /// A file to change (path given) is a symbolic link.
    #[error(
        "{0} is a symbolic link; featpkg changes only regular files (a rename would replace the link)"
    )]
    Symlink(PathBuf),
    /// A directory featpkg made and would remove (path given) holds files
    /// someone else put there.
    #[error("directory {0} is not empty, cannot remove it")]
    DirNotEmpty(PathBuf),
    /// A journal that cannot be read or parsed, so featpkg does not know what to undo.
    #[error(
        "journal {path} is unreadable: {message}; featpkg will not guess what to undo: the backup-NNN files beside it hold the original bytes of the files it lists; put back what is needed, then remove that journal directory"
    )]
    BadJournal {
        /// The journal file or directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Another featpkg run kept the PBX's lock for longer than this one waits.
    #[error(
        "another featpkg run holds the lock {path}; waited {waited_s} s for it (try again when it has finished)"
    )]
    Locked {
        /// The lock file: `<state_dir>/lock`.
        path: PathBuf,
        /// How long this run waited, in seconds.
        waited_s: u64,
    },
    /// A module name (given) that is not a plain file name such as
    /// `func_extstate.so` (see [`valid_module_name`]).
    #[error(
        "module name {0:?} is not a plain file name (letters, digits, '_', '-', '.'); featpkg will not pass it to Asterisk"
    )]
    BadModuleName(String),
    /// A failure a test asked for at this point (`FEATPKG_TEST_FAIL_AT`, see [`test_point`]).
    #[error("injected failure at {0} (FEATPKG_TEST_FAIL_AT)")]
    Injected(String),
    /// Reading or writing a row of the PBX's configuration database failed.
    #[error(transparent)]
    Row(#[from] RowError),
    /// Reading or writing a crontab through crontab(1) failed.
    #[error(transparent)]
    Crontab(#[from] CrontabError),
    /// Undo found a database row (named `<table>:<key>`) in neither its before
    /// nor its after state; the path is the journal directory holding the original.
    #[error(
        "cannot undo the change to {0}: it no longer matches what featpkg wrote nor what was there before; fix it by hand (the journal in {1} keeps the original row)"
    )]
    RowDrift(String, PathBuf),
}

/// For `map_err`: an I/O error on `path` as [`TxnError::Io`].
pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> TxnError + '_ {
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

/// A transaction whose journal is on disk.
pub struct Transaction {
    dir: PathBuf,
    journal_dir: PathBuf,
    txn_id: String,
    changes: Vec<DocChange>,
}

/// Refuses `change` when its document no longer holds the state the plan
/// started from (someone edited it since), or is a symbolic link. Returns a
/// file's fingerprint before (its content's hash), which the check computed.
fn check_unchanged(change: &DocChange) -> Result<Option<String>, TxnError> {
    match &change.doc {
        Doc::Dir { path } => {
            if change.after.is_some() && path.exists() {
                return Err(TxnError::Changed(path.clone()));
            }
        }
        Doc::Row(row) => {
            if row.read()?.as_ref() != change.before.as_ref().and_then(DocState::as_row) {
                return Err(RowError::Changed(row.name()).into());
            }
        }
        Doc::File { path, access } => {
            if *access == FileAccess::Direct
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(TxnError::Symlink(path.clone()));
            }
            let expected = change.before.as_ref().map(DocState::fingerprint);
            if current_hash(path, access)? != expected {
                return Err(TxnError::Changed(path.clone()));
            }
            return Ok(expected);
        }
    }
    Ok(None)
}

/// Removes what an interrupted journal write left (nothing was changed
/// under it); refuses when a finished journal is there.
fn clear_journal_dir(journal_dir: &Path) -> Result<(), TxnError> {
    fs::create_dir_all(journal_dir).map_err(io(journal_dir))?;
    for entry in fs::read_dir(journal_dir).map_err(io(journal_dir))? {
        let entry = entry.map_err(io(journal_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            continue;
        }
        return Err(TxnError::Unfinished(entry.path()));
    }
    Ok(())
}

/// Writes the journal of `changes` with its backups in `staging`.
fn stage_journal(staging: &Path, txn_id: &str, changes: &[DocChange]) -> Result<(), TxnError> {
    fs::create_dir_all(staging).map_err(io(staging))?;
    let mut journal = Journal {
        txn_id: txn_id.to_string(),
        steps: Vec::new(),
    };
    for (index, change) in changes.iter().enumerate() {
        let before_sha256 = check_unchanged(change)?;
        journal.steps.push(journal::step(
            change,
            index,
            txn_id,
            staging,
            before_sha256.as_deref(),
        )?);
    }
    journal::write_json(staging, &journal)
}

impl Transaction {
    /// The changes this transaction applies, in order (what history records).
    pub fn changes(&self) -> &[DocChange] {
        &self.changes
    }

    /// Writes the journal (and backups) before any change. Refuses, with nothing
    /// changed, when another journal is unfinished or a file no longer matches its `before`.
    pub fn begin(
        journal_dir: &Path,
        txn_id: &str,
        changes: Vec<DocChange>,
    ) -> Result<Transaction, TxnError> {
        clear_journal_dir(journal_dir)?;
        let staging = journal_dir.join(format!(".{txn_id}.tmp"));
        if let Err(e) = stage_journal(&staging, txn_id, &changes) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dir = journal_dir.join(txn_id);
        fs::rename(&staging, &dir).map_err(io(&dir))?;
        fsync_dir(journal_dir)?;
        let transaction = Transaction {
            dir,
            journal_dir: journal_dir.to_path_buf(),
            txn_id: txn_id.to_string(),
            changes,
        };
        if let Err(e) = test_point("journal-written") {
            transaction.undo()?;
            return Err(e);
        }
        Ok(transaction)
    }

    /// Applies every step in order; on any error undoes everything, then returns the error.
    pub fn apply(&mut self) -> Result<(), TxnError> {
        let result = self.apply_steps();
        if let Err(e) = result {
            self.undo()?;
            return Err(e);
        }
        Ok(())
    }

    fn apply_steps(&self) -> Result<(), TxnError> {
        for (index, change) in self.changes.iter().enumerate() {
            let n = index + 1;
            match &change.doc {
                Doc::Dir { path } => match &change.after {
                    Some(DocState::Dir { mode }) => make_dir(path, *mode)?,
                    _ => remove_empty_dir(path)?,
                },
                Doc::Row(row) => row.compare_and_write(
                    change.before.as_ref().and_then(DocState::as_row),
                    change.after.as_ref().and_then(DocState::as_row),
                )?,
                Doc::File { path, access } => {
                    match change.after.as_ref().and_then(DocState::as_file) {
                        Some(state) => write_file(
                            path,
                            &temp_name(path, &self.txn_id),
                            access,
                            state,
                            Some(&format!("step-{n}-temp")),
                        )?,
                        None => remove_file(path, access)?,
                    }
                }
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
        let undone = undo_journal(&self.dir, &self.txn_id, &self.changes)?;
        pbx(&undone);
        discard_journal(&self.dir, &self.journal_dir)
    }

    /// The caller recorded the transaction as committed: remove the journal.
    pub fn finish(self) -> Result<(), TxnError> {
        discard_journal(&self.dir, &self.journal_dir)
    }

    /// Undo before the PBX was touched (a failed step, an injected failure):
    /// the documents go back and the journal goes.
    fn undo(&self) -> Result<(), TxnError> {
        undo_changes(&self.dir, &self.txn_id, &self.changes)?;
        discard_journal(&self.dir, &self.journal_dir)
    }
}

/// How undo and reports name a document: files and directories by their
/// path on this machine, rows by their name.
fn shown_name(change: &DocChange) -> PathBuf {
    match change.host_path() {
        Some(path) => path.clone(),
        None => PathBuf::from(&change.runtime_path),
    }
}

/// Undoes `changes` (transaction `txn_id`, journal in `dir`) in reverse,
/// each decided by its document's present state: still as it was before →
/// nothing to do; as the change left it → put back; anything else → drift,
/// stop. So it is idempotent and safe to repeat after a crash in the middle
/// of an undo. Returns the documents it put back.
fn undo_changes(dir: &Path, txn_id: &str, changes: &[DocChange]) -> Result<Vec<PathBuf>, TxnError> {
    let mut restored = Vec::new();
    for change in changes.iter().rev() {
        let put_back = match &change.doc {
            Doc::Dir { path } => undo_dir(path, change)?,
            Doc::Row(row) => undo_row(dir, row, change)?,
            Doc::File { path, access } => undo_file(dir, txn_id, path, access, change)?,
        };
        if put_back {
            restored.push(shown_name(change));
        }
    }
    Ok(restored)
}

/// A directory made is removed again, one removed is made again.
fn undo_dir(path: &Path, change: &DocChange) -> Result<bool, TxnError> {
    match (&change.before, &change.after) {
        (None, Some(_)) if path.is_dir() => remove_empty_dir(path).map(|()| true),
        (Some(DocState::Dir { mode }), None) if !path.exists() => {
            make_dir(path, *mode).map(|()| true)
        }
        _ => Ok(false),
    }
}

fn undo_row(dir: &Path, row: &RowRef, change: &DocChange) -> Result<bool, TxnError> {
    let before = change.before.as_ref().and_then(DocState::as_row);
    let after = change.after.as_ref().and_then(DocState::as_row);
    let now = row.read()?;
    if now.as_ref() == before {
        return Ok(false);
    }
    if now.as_ref() != after {
        return Err(TxnError::RowDrift(row.name(), dir.to_path_buf()));
    }
    row.compare_and_write(after, before)?;
    Ok(true)
}

fn undo_file(
    dir: &Path,
    txn_id: &str,
    path: &Path,
    access: &FileAccess,
    change: &DocChange,
) -> Result<bool, TxnError> {
    let temp = temp_name(path, txn_id);
    if *access == FileAccess::Direct {
        let _ = fs::remove_file(&temp);
    }
    let before = change.before.as_ref().and_then(DocState::as_file);
    let now = current_hash(path, access)?;
    if now == change.before.as_ref().map(DocState::fingerprint) {
        // Not applied yet (or already undone). Mode may still differ if only it changed
        // (crontab(1) sets its own).
        if let Some(b) = before.filter(|_| *access == FileAccess::Direct) {
            let meta = fs::metadata(path).map_err(io(path))?;
            if meta.mode() & 0o7777 != b.mode {
                fs::set_permissions(path, fs::Permissions::from_mode(b.mode)).map_err(io(path))?;
            }
        }
        return Ok(false);
    }
    if now != change.after.as_ref().map(DocState::fingerprint) {
        return Err(TxnError::Drift(path.to_path_buf(), dir.to_path_buf()));
    }
    match before {
        Some(state) => write_file(path, &temp, access, state, None)?,
        None => remove_file(path, access)?,
    }
    Ok(true)
}

/// Undoes a journal's changes (not yet deleting it) and reads what it recorded of the PBX.
fn undo_journal(dir: &Path, txn_id: &str, changes: &[DocChange]) -> Result<Undone, TxnError> {
    // Read first: an unreadable PBX log stops the undo before anything moves.
    let (reloaded, loaded_modules) = read_pbx_log(dir)?;
    let restored = undo_changes(dir, txn_id, changes)?;
    Ok(Undone {
        restored,
        documents: changes
            .iter()
            .filter(|c| !c.is_dir())
            .map(shown_name)
            .collect(),
        reloaded,
        loaded_modules,
    })
}

/// What [`recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovered transaction's id, its journal directory's name
    /// (`<unix seconds>-<nanoseconds>-<pid>`).
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
        let Some(journal) = journal::read_json(&dir)? else {
            // A journal directory is renamed into place only once journal.json is
            // in it, so without one it is the rest of an interrupted removal
            // (by an older featpkg): its transaction was already finished or undone.
            discard_journal(&dir, journal_dir)?;
            continue;
        };
        report = Some(finish_interrupted(
            &dir,
            journal_dir,
            journal,
            is_committed,
            pbx,
        )?);
    }
    Ok(report)
}

/// Rolls one interrupted journal forward (committed) or back.
fn finish_interrupted(
    dir: &Path,
    journal_dir: &Path,
    journal: Journal,
    is_committed: &dyn Fn(&str) -> bool,
    pbx: &mut dyn FnMut(&Undone) -> Vec<String>,
) -> Result<RecoveryReport, TxnError> {
    if is_committed(&journal.txn_id) {
        for temp in journal::temps(&journal) {
            let _ = fs::remove_file(temp);
        }
        discard_journal(dir, journal_dir)?;
        return Ok(RecoveryReport {
            txn_id: journal.txn_id,
            rolled_forward: true,
            restored: Vec::new(),
            pbx: Vec::new(),
        });
    }
    let changes = journal
        .steps
        .into_iter()
        .map(|step| step.into_change(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let undone = undo_journal(dir, &journal.txn_id, &changes)?;
    let said = pbx(&undone);
    discard_journal(dir, journal_dir)?;
    Ok(RecoveryReport {
        txn_id: journal.txn_id,
        rolled_forward: false,
        restored: undone.restored,
        pbx: said,
    })
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
    use super::files::atomic_write;
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
        undo_changes(&txn.dir, &txn.txn_id, &txn.changes).unwrap();
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

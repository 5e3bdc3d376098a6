//! The journal of one transaction on disk, in `<journal_dir>/<txn_id>/`:
//! `journal.json` lists the transaction's changes (a [`DocChange`] each, in
//! the JSON schema below, unchanged since featpkg 1.0 so that a journal an
//! older featpkg left behind is still recovered), the old bytes of every file
//! sit beside it in `backup-NNN`, and `pbx.log` records what was done to the
//! running PBX (see the module doc of [`crate::txn`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{fsync_dir, is_direct, temp_name};
use super::{FileState, PBX_LOG, PbxEvent, TxnError, io, valid_module_name};
use crate::change::{Doc, DocChange, DocState};
use crate::file_access::FileAccess;
use crate::hash::sha256_hex;
use crate::pbx::{RowRef, RowState};

/// A file's state as the journal keeps it: the content only as its hash
/// (the bytes themselves are in the backup file, or in the file once written).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct JournalState {
    /// Lowercase hex SHA-256 of the content.
    sha256: String,
    /// Permission bits (`0o644`).
    mode: u32,
    /// Numeric owner.
    uid: u32,
    /// Numeric group.
    gid: u32,
}

/// One change as `journal.json` records it (`"kind": "file"`, `"create_dir"`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum JournalStep {
    /// A directory the transaction creates.
    CreateDir {
        /// Where it is on this machine (under `--root`).
        path: PathBuf,
        /// Its permission bits (`0o755`).
        mode: u32,
    },
    /// A file the transaction creates, changes or deletes.
    File {
        /// Where it is on this machine (under `--root`).
        path: PathBuf,
        /// Its state before; `None`: it did not exist.
        before: Option<JournalState>,
        /// Backup file name inside the journal directory, when `before` exists.
        backup: Option<String>,
        /// Its state after; `None`: the transaction deletes it.
        after: Option<JournalState>,
        /// Temp file written beside `path` before the rename.
        temp: PathBuf,
        /// Absent in journals of featpkg 1.0 (all direct).
        #[serde(default, skip_serializing_if = "is_direct")]
        access: FileAccess,
    },
    /// An empty directory the transaction removes.
    RemoveDir {
        /// Where it is on this machine (under `--root`).
        path: PathBuf,
        /// The permission bits it is recreated with on undo.
        mode: u32,
    },
    /// Rows are small: both states sit in the journal itself.
    Row {
        /// The database file and the row in it.
        row: RowRef,
        /// The row's columns before; `None`: the row did not exist.
        before: Option<RowState>,
        /// The row's columns after; `None`: the transaction deletes the row.
        after: Option<RowState>,
    },
}

/// The content of `journal.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Journal {
    /// The transaction's id, also its directory's name (`<unix seconds>-<nanoseconds>-<pid>`).
    pub(super) txn_id: String,
    /// One step per change, in the order they are applied (undone in reverse).
    pub(super) steps: Vec<JournalStep>,
}

impl JournalState {
    /// `s` as the journal keeps it; `sha256`: its content's hash when the
    /// caller has it already (a big file is hashed once per run, not per use).
    fn of(s: &FileState, sha256: Option<&str>) -> JournalState {
        JournalState {
            sha256: sha256.map_or_else(|| sha256_hex(&s.content), str::to_string),
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
        }
    }
}

/// The journal's record of `change`, the `index`th of transaction `txn_id`;
/// a file's old bytes go into a backup file in `staging`. `before_sha256`: the
/// hash of a file's state before, when the caller has it.
pub(super) fn step(
    change: &DocChange,
    index: usize,
    txn_id: &str,
    staging: &Path,
    before_sha256: Option<&str>,
) -> Result<JournalStep, TxnError> {
    fn file_state(s: &Option<DocState>) -> Option<&FileState> {
        s.as_ref().and_then(DocState::as_file)
    }
    let row_state = |s: &Option<DocState>| s.as_ref().and_then(DocState::as_row).cloned();
    Ok(match &change.doc {
        Doc::Dir { path } => match (&change.before, &change.after) {
            (_, Some(DocState::Dir { mode })) => JournalStep::CreateDir {
                path: path.clone(),
                mode: *mode,
            },
            (before, _) => JournalStep::RemoveDir {
                path: path.clone(),
                mode: match before {
                    Some(DocState::Dir { mode }) => *mode,
                    _ => 0o755,
                },
            },
        },
        Doc::Row(row) => JournalStep::Row {
            row: row.clone(),
            before: row_state(&change.before),
            after: row_state(&change.after),
        },
        Doc::File { path, access } => {
            let before = file_state(&change.before);
            let backup = match before {
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
                before: before.map(|b| JournalState::of(b, before_sha256)),
                backup,
                after: file_state(&change.after).map(|a| JournalState::of(a, None)),
                temp: temp_name(path, txn_id),
                access: access.clone(),
            }
        }
    })
}

impl JournalStep {
    /// The change this step records, as the undo needs it: a file's state
    /// before read back from its backup (and checked against its hash), its
    /// state after as a fingerprint. A journal names documents as this machine
    /// sees them: files and directories by their path, rows by their name.
    pub(super) fn into_change(self, dir: &Path) -> Result<DocChange, TxnError> {
        Ok(match self {
            JournalStep::CreateDir { path, mode } => {
                DocChange::make_dir(path.display().to_string(), path, mode)
            }
            JournalStep::RemoveDir { path, mode } => {
                DocChange::remove_dir(path.display().to_string(), path, mode)
            }
            JournalStep::Row { row, before, after } => {
                DocChange::row(row.name(), row, before, after)
            }
            JournalStep::File {
                path,
                before,
                backup,
                after,
                access,
                ..
            } => {
                let before = match (before, backup) {
                    (Some(b), Some(name)) => Some(DocState::File(read_backup(dir, &name, b)?)),
                    (Some(_), None) => {
                        return Err(TxnError::BadJournal {
                            path: dir.join("journal.json"),
                            message: format!("{} has a state before but no backup", path.display()),
                        });
                    }
                    (None, _) => None,
                };
                DocChange {
                    runtime_path: path.display().to_string(),
                    doc: Doc::File { path, access },
                    before,
                    after: after.map(|a| DocState::Fingerprint(a.sha256)),
                }
            }
        })
    }
}

/// A file's old bytes from the journal's backup, checked against their hash.
fn read_backup(dir: &Path, name: &str, recorded: JournalState) -> Result<FileState, TxnError> {
    let bpath = dir.join(name);
    let content = fs::read(&bpath).map_err(io(&bpath))?;
    if sha256_hex(&content) != recorded.sha256 {
        return Err(TxnError::BadJournal {
            path: bpath,
            message: "backup does not match its recorded hash".into(),
        });
    }
    Ok(FileState {
        content,
        mode: recorded.mode,
        uid: recorded.uid,
        gid: recorded.gid,
    })
}

/// Writes `journal` as `journal.json` in `dir`, durably.
pub(super) fn write_json(dir: &Path, journal: &Journal) -> Result<(), TxnError> {
    let jpath = dir.join("journal.json");
    let mut f = File::create(&jpath).map_err(io(&jpath))?;
    f.write_all(&serde_json::to_vec_pretty(journal).expect("journal serialises"))
        .map_err(io(&jpath))?;
    f.sync_all().map_err(io(&jpath))?;
    fsync_dir(dir)
}

/// Reads `journal.json` in `dir`; `None` when there is none.
pub(super) fn read_json(dir: &Path) -> Result<Option<Journal>, TxnError> {
    let jpath = dir.join("journal.json");
    let bytes = match fs::read(&jpath) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&jpath)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TxnError::BadJournal {
            path: jpath.clone(),
            message: e.to_string(),
        })
}

/// Temp files a file step may have left beside its file.
pub(super) fn temps(journal: &Journal) -> Vec<PathBuf> {
    journal
        .steps
        .iter()
        .filter_map(|step| match step {
            JournalStep::File { temp, .. } => Some(temp.clone()),
            _ => None,
        })
        .collect()
}

/// The line `pbx.log` records for `event`: `reload`, or `load <module>`.
pub(super) fn pbx_log_line(event: &PbxEvent) -> String {
    match event {
        PbxEvent::Reload => "reload\n".to_string(),
        PbxEvent::LoadModule(module) => format!("load {module}\n"),
    }
}

/// Reads a journal's PBX log. A last line without its newline is a write the
/// crash interrupted: its action had not started, so it is ignored.
pub(super) fn read_pbx_log(dir: &Path) -> Result<(bool, Vec<String>), TxnError> {
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

/// Removes a journal directory that is no longer needed. It is first renamed to a
/// dot name in one atomic step, so a crash in the middle of deleting its files
/// leaves a directory every later run deletes, never a journal without its
/// `journal.json` that no run could read.
pub(super) fn discard_journal(dir: &Path, journal_dir: &Path) -> Result<(), TxnError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Change: one record `{document, before, after}` — what the plan computes,
//! what a transaction applies (its journal is this record on disk, with the
//! old bytes in backup files beside it) and what history keeps (see
//! [`crate::state`]).
//!
//! A document is something featpkg changes as a whole: a directory, a file
//! (reached directly or through crontab(1), see [`FileAccess`]), or a row of
//! the PBX's configuration database (see [`RowRef`]). Its state before and
//! after is `None` when it does not exist.

use std::path::PathBuf;

use crate::file_access::FileAccess;
use crate::hash::sha256_hex;
use crate::pbx::{RowRef, RowState};
use crate::txn::FileState;

/// What a change is made to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    /// A directory on this machine (under `--root`).
    Dir {
        /// Where it is on this machine: `--root` joined with the PBX's path,
        /// e.g. `<root>/etc/asterisk/featpkg.d`.
        path: PathBuf,
    },
    /// A file on this machine (under `--root`), reached as `access` says.
    File {
        /// Where it is on this machine: `--root` joined with the PBX's path,
        /// e.g. `<root>/etc/asterisk/extensions.conf`.
        path: PathBuf,
        /// How its bytes are read and written (directly, or through crontab(1)).
        access: FileAccess,
    },
    /// A row of the PBX's configuration database.
    Row(RowRef),
}

/// A document's content and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocState {
    /// A directory and its permission bits.
    Dir {
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A file's bytes, mode and owner.
    File(FileState),
    /// The columns featpkg changes in a row.
    Row(RowState),
    /// A state known only by its [`DocState::fingerprint`]: what history keeps
    /// of the state a transaction left, compared against, never restored.
    Fingerprint(String),
}

/// One document's change: created (`before` None), changed, or deleted (`after` None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocChange {
    /// The document as the PBX names it (what messages and diffs show):
    /// `/etc/asterisk/extensions.conf`, or a row's name such as `<table>:<key>`.
    pub runtime_path: String,
    /// The document changed, and where featpkg reaches it.
    pub doc: Doc,
    /// Its state before the change; `None`: it did not exist (the change creates it).
    pub before: Option<DocState>,
    /// Its state after the change; `None`: the change deletes it.
    pub after: Option<DocState>,
}

/// When a change is applied relative to the others of its plan: directories
/// are made before the files in them, rows (each its own SQLite transaction)
/// after the files, emptied directories removed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Creating a directory (parents before children).
    MakeDir,
    /// Creating, changing or deleting a file.
    File,
    /// Changing a row of the PBX's configuration database.
    Row,
    /// Removing a directory featpkg made, now empty (deepest first).
    RemoveDir,
}

impl DocChange {
    /// A directory featpkg creates with `mode`.
    pub fn make_dir(runtime_path: String, path: PathBuf, mode: u32) -> DocChange {
        DocChange {
            runtime_path,
            doc: Doc::Dir { path },
            before: None,
            after: Some(DocState::Dir { mode }),
        }
    }

    /// A directory featpkg removes (it is empty by then), recreated with `mode` on undo.
    pub fn remove_dir(runtime_path: String, path: PathBuf, mode: u32) -> DocChange {
        DocChange {
            runtime_path,
            doc: Doc::Dir { path },
            before: Some(DocState::Dir { mode }),
            after: None,
        }
    }

    /// A file's change.
    pub fn file(
        runtime_path: String,
        path: PathBuf,
        access: FileAccess,
        before: Option<FileState>,
        after: Option<FileState>,
    ) -> DocChange {
        DocChange {
            runtime_path,
            doc: Doc::File { path, access },
            before: before.map(DocState::File),
            after: after.map(DocState::File),
        }
    }

    /// A database row's change.
    pub fn row(
        runtime_path: String,
        row: RowRef,
        before: Option<RowState>,
        after: Option<RowState>,
    ) -> DocChange {
        DocChange {
            runtime_path,
            doc: Doc::Row(row),
            before: before.map(DocState::Row),
            after: after.map(DocState::Row),
        }
    }

    /// Where it goes in its plan's order.
    pub fn phase(&self) -> Phase {
        match (&self.doc, &self.after) {
            (Doc::Dir { .. }, Some(_)) => Phase::MakeDir,
            (Doc::Dir { .. }, None) => Phase::RemoveDir,
            (Doc::File { .. }, _) => Phase::File,
            (Doc::Row(_), _) => Phase::Row,
        }
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.doc, Doc::Dir { .. })
    }

    /// The path on this machine of a file or directory (None for a row).
    pub fn host_path(&self) -> Option<&PathBuf> {
        match &self.doc {
            Doc::Dir { path } | Doc::File { path, .. } => Some(path),
            Doc::Row(_) => None,
        }
    }
}

impl Doc {
    /// The document's present state, None when it does not exist.
    pub fn read(&self) -> Result<Option<DocState>, crate::plan::PlanError> {
        Ok(match self {
            Doc::Dir { path } => std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    DocState::Dir {
                        mode: m.mode() & 0o7777,
                    }
                }),
            Doc::File { path, access } => {
                crate::plan::read_document_state(path, access)?.map(DocState::File)
            }
            Doc::Row(row) => row.read()?.map(DocState::Row),
        })
    }
}

impl DocState {
    /// The file state, when this is a file's.
    pub fn as_file(&self) -> Option<&FileState> {
        match self {
            DocState::File(f) => Some(f),
            _ => None,
        }
    }

    /// The row state, when this is a row's.
    pub fn as_row(&self) -> Option<&RowState> {
        match self {
            DocState::Row(r) => Some(r),
            _ => None,
        }
    }

    /// The text a diff shows: a file's bytes, a row's decoded content.
    pub fn text(&self) -> Vec<u8> {
        match self {
            DocState::Dir { .. } | DocState::Fingerprint(_) => Vec::new(),
            DocState::File(f) => f.content.clone(),
            DocState::Row(r) => r.text(),
        }
    }

    /// What history keeps to tell whether the document is still as featpkg
    /// left it: a file's content hash, a row's JSON hash, `""` for a directory.
    pub fn fingerprint(&self) -> String {
        match self {
            DocState::Dir { .. } => String::new(),
            DocState::File(f) => sha256_hex(&f.content),
            DocState::Row(r) => sha256_hex(&serde_json::to_vec(r).expect("row serialises")),
            DocState::Fingerprint(fingerprint) => fingerprint.clone(),
        }
    }
}

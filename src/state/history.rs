//! History: every committed transaction with the changes it made, kept so that
//! `featpkg rollback` can put each document back as it was.
//!
//! A change is stored as its [`DocChange`] minus what rollback never needs:
//! the state before in full (a file's bytes and owner, a row's columns, a
//! directory's mode) and the state after only as its fingerprint, which
//! rollback compares with the document's present state to find drift. The
//! document itself is stored by its runtime name and resolved again by the
//! PBX when the change is read back, so a rollback reaches the file the way
//! the PBX is reached today (e.g. through crontab(1) when run as a web user).

use rusqlite::{OptionalExtension, params};

use super::regions::{FileRegions, Region, RegionsError};
use super::{BundleSnapshot, State, StateError};
use crate::change::{Doc, DocChange, DocState};
use crate::txn::FileState;

/// v3: `txn_files` becomes `txn_changes`, one row per [`DocChange`]: its kind
/// (`dir`, `file`, `row`) is stored instead of being guessed from the runtime
/// name, and the state after is a fingerprint of any document kind. In v2 a
/// row was a `file` whose runtime name is not an absolute path (featpkg names
/// rows `table:key`). `after_mode` was never read and is dropped. The row
/// baselines become the documents' baselines (same JSON).
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE txn_changes (
    txn_id INTEGER NOT NULL REFERENCES transactions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('dir', 'file', 'row')),
    path TEXT NOT NULL,           -- the document's runtime name
    before BLOB,                  -- a file's bytes, a row's columns as JSON, '' for a directory; NULL = absent
    before_mode INTEGER,
    before_uid INTEGER,
    before_gid INTEGER,
    after_fingerprint TEXT,       -- DocState::fingerprint afterwards; NULL = absent afterwards
    PRIMARY KEY (txn_id, seq)
);
INSERT INTO txn_changes
    SELECT txn_id, seq,
           CASE WHEN kind = 'dir' THEN 'dir' WHEN substr(path, 1, 1) = '/' THEN 'file' ELSE 'row' END,
           path, before, before_mode, before_uid, before_gid, after_sha256
    FROM txn_files;
DROP TABLE txn_files;
ALTER TABLE bundles RENAME COLUMN row_baselines TO baselines;
";

/// v4: a big file's state before may be kept as regions of its state after
/// (`txn_regions`, see [`super::regions`]); such a change has `before` NULL
/// and `before_sha256` set, the hash its rebuilt bytes must have. Rows
/// written before keep their whole `before` and read back as they were.
pub(super) const SCHEMA_V4: &str = "
ALTER TABLE txn_changes ADD COLUMN before_sha256 TEXT;  -- set: the bytes before are in txn_regions
CREATE TABLE txn_regions (
    txn_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,         -- the change's seq in txn_changes
    n INTEGER NOT NULL,           -- the regions in order of offset
    after_offset INTEGER NOT NULL,
    after BLOB NOT NULL,          -- the region's bytes in the state after
    before BLOB NOT NULL,         -- what stood there before
    PRIMARY KEY (txn_id, seq, n),
    FOREIGN KEY (txn_id, seq) REFERENCES txn_changes(txn_id, seq)
);
";

/// A committed transaction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transaction's number in history: what `featpkg rollback` names.
    pub id: i64,
    /// The journal's key (`<epoch>-<nanos>-<pid>`), which crash recovery looks up.
    pub txn_key: String,
    /// install | upgrade | uninstall | rollback.
    pub kind: String,
    /// The name of the bundle it changed: `demo`.
    pub bundle: String,
    /// One line for the admin: `upgrade demo 1.0.0 -> 1.1.0 (greeting)`.
    pub summary: String,
    /// When it committed, in seconds since the Unix epoch.
    pub committed_at: i64,
    /// committed | rolled-back.
    pub status: String,
    /// The bundle as State recorded it before; `None`: not installed.
    pub bundle_before: Option<BundleSnapshot>,
    /// The bundle as State recorded it afterwards; `None`: removed.
    pub bundle_after: Option<BundleSnapshot>,
    /// The changes in the order they were applied; each `after` is a
    /// [`DocState::Fingerprint`] (see the module doc).
    pub changes: Vec<RecordedChange>,
}

/// A change as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChange {
    /// The change; its `after` is a [`DocState::Fingerprint`], its `before`
    /// the state in full unless `before_regions` holds it.
    pub change: DocChange,
    /// A big file's bytes before, as regions of its bytes after; then
    /// `change.before` is a [`DocState::File`] with empty content that
    /// carries only the mode and owner.
    pub before_regions: Option<FileRegions>,
}

impl RecordedChange {
    /// The document's state before the transaction, in full. `current` is its
    /// present state; `drifted`: it is not the state the transaction left,
    /// and a big file's regions are then looked up in it (see
    /// [`FileRegions::undo_over_drift`]): what the admin changed elsewhere stays.
    pub fn before(
        &self,
        current: Option<&DocState>,
        drifted: bool,
    ) -> Result<Option<DocState>, RegionsError> {
        let Some(regions) = &self.before_regions else {
            return Ok(self.change.before.clone());
        };
        let now = current
            .and_then(DocState::as_file)
            .ok_or(RegionsError::Gone)?;
        let content = if drifted {
            regions.undo_over_drift(&now.content)?
        } else {
            regions.undo(&now.content)?
        };
        let owner = self.change.before.as_ref().and_then(DocState::as_file);
        let (mode, uid, gid) =
            owner.map_or((now.mode, now.uid, now.gid), |f| (f.mode, f.uid, f.gid));
        Ok(Some(DocState::File(FileState {
            content,
            mode,
            uid,
            gid,
        })))
    }
}

/// What to record when a transaction commits.
#[derive(Debug, Clone)]
pub struct NewTxn<'a> {
    /// The journal's key (`<epoch>-<nanos>-<pid>`), which crash recovery looks up.
    pub txn_key: &'a str,
    /// `install`, `upgrade`, `uninstall` or `rollback`.
    pub kind: &'a str,
    /// The name of the bundle it changes: `demo`.
    pub bundle: &'a str,
    /// One line for the admin: `install demo 1.0.0 (greeting)`.
    pub summary: &'a str,
    /// The bundle as State records it before; `None`: not installed.
    pub bundle_before: Option<&'a BundleSnapshot>,
    /// The bundle as State will record it; `None`: removed.
    pub bundle_after: Option<&'a BundleSnapshot>,
    /// The changes the transaction applied, in order.
    pub changes: &'a [DocChange],
    /// For a rollback: the transaction it undoes (marked rolled-back).
    pub undoes: Option<i64>,
}

/// How the documents of stored changes are found again: `(runtime name,
/// is a directory) -> document`, answered by the PBX (`Target::recorded_doc`).
pub type DocResolver<'a> = &'a dyn Fn(&str, bool) -> Doc;

/// A change's row in `txn_changes`, as stored.
struct StoredChange {
    kind: String,
    path: String,
    before: Option<Vec<u8>>,
    before_owner: (u32, u32, u32),
    after_fingerprint: Option<String>,
    before_regions: Option<FileRegions>,
}

impl StoredChange {
    /// What history keeps of `change` (see the module doc).
    fn of(change: &DocChange) -> StoredChange {
        let (kind, before, before_owner) = match (&change.doc, &change.before) {
            (Doc::Dir { .. }, Some(DocState::Dir { mode })) => {
                ("dir", Some(Vec::new()), (*mode, 0, 0))
            }
            (Doc::Dir { .. }, _) => ("dir", None, (0, 0, 0)),
            (Doc::File { .. }, Some(DocState::File(f))) => {
                let after = change.after.as_ref().and_then(DocState::as_file);
                let regions = after.and_then(|a| FileRegions::between(&f.content, &a.content));
                let owner = (f.mode, f.uid, f.gid);
                if let Some(regions) = regions {
                    return StoredChange {
                        kind: "file".into(),
                        path: change.runtime_path.clone(),
                        before: None,
                        before_owner: owner,
                        after_fingerprint: change.after.as_ref().map(DocState::fingerprint),
                        before_regions: Some(regions),
                    };
                }
                ("file", Some(f.content.clone()), owner)
            }
            (Doc::File { .. }, _) => ("file", None, (0, 0, 0)),
            (Doc::Row(_), Some(DocState::Row(r))) => (
                "row",
                Some(serde_json::to_vec(r).expect("row serialises")),
                (0, 0, 0),
            ),
            (Doc::Row(_), _) => ("row", None, (0, 0, 0)),
        };
        StoredChange {
            kind: kind.to_string(),
            path: change.runtime_path.clone(),
            before,
            before_owner,
            after_fingerprint: change.after.as_ref().map(DocState::fingerprint),
            before_regions: None,
        }
    }

    /// The change again, its document resolved by `docs`.
    fn into_change(self, txn_id: i64, docs: DocResolver) -> Result<RecordedChange, StateError> {
        let doc = docs(&self.path, self.kind == "dir");
        let (mode, uid, gid) = self.before_owner;
        let before = match (&doc, self.before) {
            (Doc::File { .. }, None) if self.before_regions.is_some() => {
                Some(DocState::File(FileState {
                    content: Vec::new(),
                    mode,
                    uid,
                    gid,
                }))
            }
            (_, None) => None,
            (Doc::Dir { .. }, Some(_)) => Some(DocState::Dir { mode }),
            (Doc::File { .. }, Some(content)) => Some(DocState::File(FileState {
                content,
                mode,
                uid,
                gid,
            })),
            (Doc::Row(_), Some(json)) => Some(DocState::Row(
                serde_json::from_slice(&json).map_err(|e| {
                    StateError::Corrupt(format!(
                        "transaction {txn_id} keeps {} in a form this featpkg cannot read: {e}",
                        self.path
                    ))
                })?,
            )),
        };
        Ok(RecordedChange {
            change: DocChange {
                runtime_path: self.path,
                doc,
                before,
                after: self.after_fingerprint.map(DocState::Fingerprint),
            },
            before_regions: self.before_regions,
        })
    }
}

impl State {
    /// Records a committed transaction and the bundle's new state, in one SQLite transaction.
    pub fn commit(&mut self, txn: &NewTxn) -> Result<i64, StateError> {
        let path = self.path.clone();
        let e = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let to_json = |s: Option<&BundleSnapshot>| {
            s.map(|s| serde_json::to_string(s).expect("snapshot serialises"))
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("DELETE FROM bundles WHERE name = ?1", [txn.bundle])
            .map_err(e)?;
        if let Some(after) = txn.bundle_after {
            super::write_bundle(&tx, after).map_err(e)?;
        }
        tx.execute(
            "INSERT INTO transactions (txn_key, kind, bundle, summary, committed_at, status, undoes, bundle_before, bundle_after)
             VALUES (?1, ?2, ?3, ?4, ?5, 'committed', ?6, ?7, ?8)",
            params![
                txn.txn_key,
                txn.kind,
                txn.bundle,
                txn.summary,
                now,
                txn.undoes,
                to_json(txn.bundle_before),
                to_json(txn.bundle_after)
            ],
        )
        .map_err(e)?;
        let id = tx.last_insert_rowid();
        for (seq, change) in txn.changes.iter().enumerate() {
            insert_change(&tx, id, seq, &StoredChange::of(change)).map_err(e)?;
        }
        if let Some(undone) = txn.undoes {
            tx.execute(
                "UPDATE transactions SET status = 'rolled-back' WHERE id = ?1",
                [undone],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// The newest committed transaction that `rollback` may undo: not a rollback itself,
    /// not already rolled back.
    pub fn last_undoable(&self, docs: DocResolver) -> Result<Option<TxnRecord>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM transactions WHERE status = 'committed' AND kind != 'rollback'
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        match id {
            Some(id) => self.transaction(id, docs).map(Some),
            None => Ok(None),
        }
    }

    /// One stored transaction with its changes.
    pub fn transaction(&self, id: i64, docs: DocResolver) -> Result<TxnRecord, StateError> {
        let (mut record, before, after) = self
            .conn
            .query_row(
                "SELECT txn_key, kind, bundle, summary, committed_at, status, bundle_before, bundle_after
                 FROM transactions WHERE id = ?1",
                [id],
                |r| {
                    let record = TxnRecord {
                        id,
                        txn_key: r.get(0)?,
                        kind: r.get(1)?,
                        bundle: r.get(2)?,
                        summary: r.get(3)?,
                        committed_at: r.get(4)?,
                        status: r.get(5)?,
                        bundle_before: None,
                        bundle_after: None,
                        changes: Vec::new(),
                    };
                    Ok((record, r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?))
                },
            )
            .map_err(self.err())?;
        let snapshot = |s: Option<String>| -> Result<Option<BundleSnapshot>, StateError> {
            s.map(|s| serde_json::from_str(&s).map_err(|e| StateError::Corrupt(e.to_string())))
                .transpose()
        };
        record.bundle_before = snapshot(before)?;
        record.bundle_after = snapshot(after)?;
        for stored in self.stored_changes(id)? {
            record.changes.push(stored.into_change(id, docs)?);
        }
        Ok(record)
    }

    fn stored_changes(&self, id: i64) -> Result<Vec<StoredChange>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, path, before, before_mode, before_uid, before_gid, after_fingerprint, before_sha256, seq
                 FROM txn_changes WHERE txn_id = ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let number =
            |r: &rusqlite::Row, i| r.get::<_, Option<u32>>(i).map(Option::unwrap_or_default);
        let rows = stmt
            .query_map([id], |r| {
                let stored = StoredChange {
                    kind: r.get(0)?,
                    path: r.get(1)?,
                    before: r.get(2)?,
                    before_owner: (number(r, 3)?, number(r, 4)?, number(r, 5)?),
                    after_fingerprint: r.get(6)?,
                    before_regions: None,
                };
                Ok((stored, r.get::<_, Option<String>>(7)?, r.get::<_, i64>(8)?))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        let mut changes = Vec::with_capacity(rows.len());
        for (mut stored, before_sha256, seq) in rows {
            if let Some(before_sha256) = before_sha256 {
                stored.before_regions = Some(FileRegions {
                    regions: self.regions(id, seq)?,
                    before_sha256,
                });
            }
            changes.push(stored);
        }
        Ok(changes)
    }

    fn regions(&self, id: i64, seq: i64) -> Result<Vec<Region>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT after_offset, after, before FROM txn_regions
                 WHERE txn_id = ?1 AND seq = ?2 ORDER BY n",
            )
            .map_err(self.err())?;
        stmt.query_map([id, seq], |r| {
            Ok(Region {
                after_offset: r.get::<_, i64>(0)? as usize,
                after: r.get(1)?,
                before: r.get(2)?,
            })
        })
        .map_err(self.err())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(self.err())
    }
}

fn insert_change(
    tx: &rusqlite::Transaction,
    txn_id: i64,
    seq: usize,
    change: &StoredChange,
) -> rusqlite::Result<()> {
    let (mode, uid, gid) = change.before_owner;
    let regions = change.before_regions.as_ref();
    tx.execute(
        "INSERT INTO txn_changes (txn_id, seq, kind, path, before, before_mode, before_uid, before_gid, after_fingerprint, before_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            txn_id,
            seq as i64,
            change.kind,
            change.path,
            change.before,
            mode,
            uid,
            gid,
            change.after_fingerprint,
            regions.map(|r| &r.before_sha256)
        ],
    )?;
    for (n, region) in regions.iter().flat_map(|r| r.regions.iter()).enumerate() {
        tx.execute(
            "INSERT INTO txn_regions (txn_id, seq, n, after_offset, after, before)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                txn_id,
                seq as i64,
                n as i64,
                region.after_offset as i64,
                region.after,
                region.before
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::feature::{RenderedContent, RenderedEdit, Written};
    use crate::file_access::FileAccess;
    use crate::state::InstalledFeature;

    fn snapshot(version: &str) -> BundleSnapshot {
        BundleSnapshot {
            name: "demo".into(),
            version: version.into(),
            archive_sha256: "ab".into(),
            features: vec![InstalledFeature {
                id: "call-waiting".into(),
                version: version.into(),
                user_params: BTreeMap::from([("busy_at".into(), "4".into())]),
                params: BTreeMap::from([("busy_at".into(), "4".into())]),
            }],
            edits: vec![(
                "/etc/asterisk/modules.conf".into(),
                RenderedEdit {
                    feature: "call-waiting".into(),
                    edit_id: "call-waiting/modules".into(),
                    content: RenderedContent::Block {
                        body: Written::Sha256("cd".into()),
                        section: None,
                        check: None,
                        comment: ';',
                        added_newline: true,
                    },
                },
            )],
            dirs: vec![],
            row_baselines: BTreeMap::new(),
        }
    }

    fn file(content: &[u8], mode: u32) -> FileState {
        FileState {
            content: content.to_vec(),
            mode,
            uid: 7,
            gid: 8,
        }
    }

    /// Documents resolved as a plain PBX under `/root-of-test` would.
    fn docs(runtime_path: &str, is_dir: bool) -> Doc {
        let path = PathBuf::from(format!("/root-of-test{runtime_path}"));
        if is_dir {
            Doc::Dir { path }
        } else {
            Doc::File {
                path,
                access: FileAccess::Direct,
            }
        }
    }

    /// Changes as history reads them back when it kept every state before whole.
    fn kept_whole(changes: Vec<DocChange>) -> Vec<RecordedChange> {
        changes
            .into_iter()
            .map(|change| RecordedChange {
                change,
                before_regions: None,
            })
            .collect()
    }

    #[test]
    fn commit_then_read_back_and_roll_back_bookkeeping() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        assert!(state.bundle("demo").unwrap().is_none());
        let after = snapshot("1.0.0");
        let changes = vec![
            DocChange::make_dir(
                "/var/lib/asterisk/agi-bin/featpkg".into(),
                "/root-of-test/var/lib/asterisk/agi-bin/featpkg".into(),
                0o755,
            ),
            DocChange::file(
                "/etc/asterisk/modules.conf".into(),
                "/root-of-test/etc/asterisk/modules.conf".into(),
                FileAccess::Direct,
                Some(file(b"[modules]\n", 0o640)),
                Some(file(b"[modules]\nload => x.so\n", 0o640)),
            ),
        ];
        let id = state
            .commit(&NewTxn {
                txn_key: "k1",
                kind: "install",
                bundle: "demo",
                summary: "install demo 1.0.0",
                bundle_before: None,
                bundle_after: Some(&after),
                changes: &changes,
                undoes: None,
            })
            .unwrap();
        assert_eq!(state.bundle("demo").unwrap().unwrap(), after);
        assert!(state.is_committed("k1").unwrap());
        assert!(!state.is_committed("k2").unwrap());
        // Read back: the state before in full, the state after as its fingerprint.
        let last = state.last_undoable(&docs).unwrap().unwrap();
        assert_eq!(last.id, id);
        let expected: Vec<DocChange> = changes
            .iter()
            .map(|c| DocChange {
                after: c
                    .after
                    .as_ref()
                    .map(|a| DocState::Fingerprint(a.fingerprint())),
                ..c.clone()
            })
            .collect();
        assert_eq!(last.changes, kept_whole(expected));
        state
            .commit(&NewTxn {
                txn_key: "k2",
                kind: "rollback",
                bundle: "demo",
                summary: "rollback",
                bundle_before: Some(&after),
                bundle_after: None,
                changes: &[],
                undoes: Some(id),
            })
            .unwrap();
        assert!(state.bundle("demo").unwrap().is_none());
        assert!(state.last_undoable(&docs).unwrap().is_none());
        // Reopening keeps everything (schema version recorded).
        drop(state);
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.transaction(id, &docs).unwrap().status, "rolled-back");
    }

    #[test]
    fn a_big_files_state_before_is_kept_as_regions_and_rebuilt_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        let old: Vec<u8> = (0..20_000)
            .flat_map(|n| format!("exten => {n},1,NoOp()\n").into_bytes())
            .collect();
        let mut new = old.clone();
        new.extend_from_slice(
            b"; BEGIN featpkg:demo:x\nexten => 7,1,Answer()\n; END featpkg:demo:x\n",
        );
        let changes = vec![DocChange::file(
            "/etc/asterisk/extensions.conf".into(),
            "/root-of-test/etc/asterisk/extensions.conf".into(),
            FileAccess::Direct,
            Some(file(&old, 0o640)),
            Some(file(&new, 0o640)),
        )];
        let after = snapshot("1.0.0");
        state
            .commit(&NewTxn {
                txn_key: "k1",
                kind: "install",
                bundle: "demo",
                summary: "install demo 1.0.0",
                bundle_before: None,
                bundle_after: Some(&after),
                changes: &changes,
                undoes: None,
            })
            .unwrap();
        let kept: i64 = state
            .conn
            .query_row(
                "SELECT coalesce(length(before), 0) + (SELECT sum(length(after) + length(before)) FROM txn_regions)
                 FROM txn_changes",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            kept < 1000,
            "{kept} bytes kept of a {}-byte file",
            old.len()
        );
        let recorded = state.last_undoable(&docs).unwrap().unwrap().changes;
        let now = DocState::File(file(&new, 0o640));
        assert_eq!(
            recorded[0].before(Some(&now), false).unwrap(),
            Some(DocState::File(file(&old, 0o640)))
        );
        let gone = recorded[0].before(None, true);
        assert_eq!(gone, Err(RegionsError::Gone));
    }

    /// The v2 schema as featpkg 1.0 left it, with one install that made a
    /// directory, changed a file and a database row (`m:1` names a row).
    fn v2_database(dir: &std::path::Path) {
        let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
        conn.execute_batch(super::super::SCHEMA_V1).unwrap();
        conn.execute_batch(super::super::SCHEMA_V2).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO bundles (name, version, archive_sha256, dirs, row_baselines)
                 VALUES ('demo', '1.0.0', 'ab', '[]', '{\"m:1\":null}');
             INSERT INTO transactions (id, txn_key, kind, bundle, summary, committed_at, status)
                 VALUES (1, 'k1', 'install', 'demo', 'install demo 1.0.0', 0, 'committed');",
        )
        .unwrap();
        let row_json =
            br#"{"content":"W2FdCg==","mode":"append","changed":"1","description":null}"#;
        // kind, runtime path, before, before mode, after sha256
        type V2Change<'a> = (&'a str, &'a str, Option<&'a [u8]>, u32, Option<&'a str>);
        let rows: [V2Change; 3] = [
            ("dir", "/var/lib/featpkg", None, 0, Some("")),
            (
                "file",
                "/etc/asterisk/a.conf",
                Some(b"[a]\n"),
                0o640,
                Some("f1"),
            ),
            ("file", "m:1", Some(row_json), 0, Some("r1")),
        ];
        for (seq, (kind, path, before, mode, after)) in rows.iter().enumerate() {
            conn.execute(
                "INSERT INTO txn_files (txn_id, seq, kind, path, before, before_mode, before_uid, before_gid, after_sha256, after_mode)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, 7, 8, ?6, 420)",
                params![seq as i64, kind, path, before, mode, after],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_v2_database_migrates_forward_with_its_history_and_baselines() {
        let dir = tempfile::tempdir().unwrap();
        v2_database(dir.path());
        let state = State::open(dir.path()).unwrap();
        let version: i64 = state
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 4);
        let bundle = state.bundle("demo").unwrap().unwrap();
        assert_eq!(
            bundle.row_baselines,
            BTreeMap::from([("m:1".to_string(), None)])
        );
        let row = crate::pbx::RowRef {
            db: "/root-of-test/cf/conf/config.db".into(),
            key: crate::pbx::RowKey::CustomFile {
                filepath: "/etc/asterisk/a.conf".into(),
            },
        };
        let resolve = |runtime_path: &str, is_dir: bool| {
            if runtime_path == "m:1" {
                Doc::Row(row.clone())
            } else {
                docs(runtime_path, is_dir)
            }
        };
        let txn = state.last_undoable(&resolve).unwrap().unwrap();
        assert_eq!(
            txn.changes,
            kept_whole(vec![
                DocChange {
                    runtime_path: "/var/lib/featpkg".into(),
                    doc: docs("/var/lib/featpkg", true),
                    before: None,
                    after: Some(DocState::Fingerprint(String::new())),
                },
                DocChange {
                    runtime_path: "/etc/asterisk/a.conf".into(),
                    doc: docs("/etc/asterisk/a.conf", false),
                    before: Some(DocState::File(file(b"[a]\n", 0o640))),
                    after: Some(DocState::Fingerprint("f1".into())),
                },
                DocChange {
                    runtime_path: "m:1".into(),
                    doc: Doc::Row(row.clone()),
                    before: Some(DocState::Row(crate::pbx::RowState {
                        content: Some("W2FdCg==".into()),
                        mode: Some("append".into()),
                        changed: Some("1".into()),
                        description: None,
                    })),
                    after: Some(DocState::Fingerprint("r1".into())),
                },
            ])
        );
        let kinds: Vec<String> = state
            .conn
            .prepare("SELECT kind FROM txn_changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kinds, ["dir", "file", "row"]);
    }
}

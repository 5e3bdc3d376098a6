//! State: the SQLite database of what is installed (bundles, features, parameters,
//! every edit with its hash) and of every transaction. It is the only truth for
//! uninstall, status, verify and rollback.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::feature::RenderedEdit;
use edit_record::EditRecord;

mod edit_record;
mod history;
mod regions;
pub use history::{DocResolver, NewTxn, RecordedChange, TxnRecord};
pub use regions::{FileRegions, Region, RegionsError};

/// Version of the schema below; bumped with a migration step when it changes.
pub const SCHEMA_VERSION: i64 = 4;

const SCHEMA_V1: &str = "
CREATE TABLE bundles (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    dirs TEXT NOT NULL            -- JSON list of directories featpkg created for this bundle
);
CREATE TABLE features (
    bundle TEXT NOT NULL REFERENCES bundles(name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    version TEXT NOT NULL,
    user_params TEXT NOT NULL,    -- JSON object: values the admin set (kept across upgrades)
    params TEXT NOT NULL,         -- JSON object: effective values
    PRIMARY KEY (bundle, id)
);
CREATE TABLE edits (
    bundle TEXT NOT NULL REFERENCES bundles(name) ON DELETE CASCADE,
    feature TEXT NOT NULL,
    edit_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('block', 'file')),
    path TEXT NOT NULL,           -- runtime path (without --root)
    sha256 TEXT NOT NULL,         -- of the block body / whole file exactly as we wrote it
    added_newline INTEGER NOT NULL,
    comment TEXT NOT NULL,
    mode INTEGER NOT NULL,
    PRIMARY KEY (bundle, edit_id)
);
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY,
    txn_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,           -- install | upgrade | uninstall | rollback
    bundle TEXT NOT NULL,
    summary TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('committed', 'rolled-back')),
    undoes INTEGER REFERENCES transactions(id),
    bundle_before TEXT,           -- JSON BundleSnapshot or null
    bundle_after TEXT
);
CREATE TABLE txn_files (
    txn_id INTEGER NOT NULL REFERENCES transactions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    path TEXT NOT NULL,           -- runtime path
    before BLOB,                  -- previous content; NULL = did not exist
    before_mode INTEGER,
    before_uid INTEGER,
    before_gid INTEGER,
    after_sha256 TEXT,            -- NULL = absent afterwards
    after_mode INTEGER,
    PRIMARY KEY (txn_id, seq)
);
";

/// v2: rows of the PBX's configuration database as they were before featpkg
/// first changed them, per bundle: JSON object runtime name -> row or null.
const SCHEMA_V2: &str = "
ALTER TABLE bundles ADD COLUMN row_baselines TEXT NOT NULL DEFAULT '{}';
";

/// State database errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed to open, read or write the database.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file: `<state_dir>/state.db`.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer featpkg with a schema this one
    /// does not know; it is left untouched.
    #[error(
        "state database {path} has schema version {found}; this featpkg knows up to {SCHEMA_VERSION} (upgrade featpkg)"
    )]
    TooNew {
        /// The database file: `<state_dir>/state.db`.
        path: String,
        /// The schema version stored in it (greater than [`SCHEMA_VERSION`]).
        found: i64,
    },
    /// A value stored as JSON (a bundle's directories, baselines or
    /// snapshot, a row as it was) cannot be read back; the text says what.
    #[error("state database: corrupt record: {0}")]
    Corrupt(String),
    /// The directory that holds the database could not be created.
    #[error("cannot create state directory {path}: {source}")]
    Dir {
        /// The state directory.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// One installed feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFeature {
    /// The feature's id within its bundle: `greeting`.
    pub id: String,
    /// The feature's version as installed: `1.0.0`.
    pub version: String,
    /// Parameter values the admin set explicitly (name -> value); kept
    /// across upgrades.
    pub user_params: BTreeMap<String, String>,
    /// Every parameter's effective value (name -> value): the admin's where
    /// set, else the feature's default.
    pub params: BTreeMap<String, String>,
}

/// Everything State knows about one installed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSnapshot {
    /// The bundle's name: `demo`.
    pub name: String,
    /// The bundle's version as installed: `1.0.0`.
    pub version: String,
    /// Lowercase hex SHA-256 of the bundle archive it was installed from.
    pub archive_sha256: String,
    /// The bundle's installed features.
    pub features: Vec<InstalledFeature>,
    /// Every edit the bundle has on the system, across all its features,
    /// each beside the runtime path of the document it is in
    /// (`/etc/asterisk/extensions.conf`, or a database row's `<table>:<key>`);
    /// the content is known by its SHA-256 as featpkg wrote it.
    #[serde(with = "edit_record")]
    pub edits: Vec<(String, RenderedEdit)>,
    /// Directories featpkg created (runtime paths), removed again once empty.
    pub dirs: Vec<String>,
    /// Database rows this bundle has blocks in, as they were before featpkg first
    /// changed them (`None`: the row did not exist). See [`crate::pbx::RowRef`].
    #[serde(default)]
    pub row_baselines: BTreeMap<String, Option<crate::pbx::RowState>>,
}

/// The open state database.
pub struct State {
    conn: Connection,
    path: String,
}

impl State {
    /// Opens (creating if needed) `<state_dir>/state.db` and migrates its schema.
    pub fn open(state_dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::Dir {
            path: state_dir.display().to_string(),
            source,
        })?;
        let path = state_dir.join("state.db");
        let shown = path.display().to_string();
        let conn = Connection::open(&path).map_err(|source| StateError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        let mut state = State { conn, path: shown };
        state.migrate()?;
        Ok(state)
    }

    /// An empty database in memory, for read-only commands on a PBX featpkg never touched
    /// (so that `status` or a dry run does not create the state directory).
    pub fn empty_in_memory() -> Result<State, StateError> {
        let path = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|source| StateError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut state = State { conn, path };
        state.migrate()?;
        Ok(state)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let e = |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        };
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(e)?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        for (to, step) in [
            (1, SCHEMA_V1),
            (2, SCHEMA_V2),
            (3, history::SCHEMA_V3),
            (4, history::SCHEMA_V4),
        ] {
            if version < to {
                let tx = self.conn.transaction().map_err(e)?;
                tx.execute_batch(step).map_err(e)?;
                tx.execute_batch(&format!("PRAGMA user_version = {to}"))
                    .map_err(e)?;
                tx.commit().map_err(e)?;
            }
        }
        Ok(())
    }

    /// Names of installed bundles, sorted.
    pub fn bundle_names(&self) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM bundles ORDER BY name")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Everything about one installed bundle, or None.
    pub fn bundle(&self, name: &str) -> Result<Option<BundleSnapshot>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT version, archive_sha256, dirs, baselines FROM bundles WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err())?;
        let Some((version, archive_sha256, dirs, row_baselines)) = row else {
            return Ok(None);
        };
        let features = self.features(name)?;
        let edits = self.edits(name)?;
        Ok(Some(BundleSnapshot {
            name: name.to_string(),
            version,
            archive_sha256,
            features,
            edits,
            dirs: serde_json::from_str(&dirs).map_err(|e| StateError::Corrupt(e.to_string()))?,
            row_baselines: serde_json::from_str(&row_baselines)
                .map_err(|e| StateError::Corrupt(e.to_string()))?,
        }))
    }

    fn features(&self, bundle: &str) -> Result<Vec<InstalledFeature>, StateError> {
        let json = |text: &str| -> Result<BTreeMap<String, String>, StateError> {
            serde_json::from_str(text).map_err(|e| StateError::Corrupt(e.to_string()))
        };
        let mut stmt = self
            .conn
            .prepare("SELECT id, version, user_params, params FROM features WHERE bundle = ?1 ORDER BY id")
            .map_err(self.err())?;
        let raw: Vec<(String, String, String, String)> = stmt
            .query_map([bundle], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        let mut features = Vec::new();
        for (id, version, user, params) in raw {
            features.push(InstalledFeature {
                id,
                version,
                user_params: json(&user)?,
                params: json(&params)?,
            });
        }
        Ok(features)
    }

    fn edits(&self, bundle: &str) -> Result<Vec<(String, RenderedEdit)>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT feature, edit_id, kind, path, sha256, added_newline, comment, mode
                 FROM edits WHERE bundle = ?1 ORDER BY rowid",
            )
            .map_err(self.err())?;
        stmt.query_map([bundle], |r| {
            let comment: String = r.get(6)?;
            let record = EditRecord {
                feature: r.get(0)?,
                edit_id: r.get(1)?,
                kind: r.get(2)?,
                path: r.get(3)?,
                sha256: r.get(4)?,
                added_newline: r.get(5)?,
                comment: comment.chars().next().unwrap_or(';'),
                mode: r.get(7)?,
            };
            Ok(record.into_edit())
        })
        .map_err(self.err())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(self.err())
    }

    /// All installed bundles.
    pub fn bundles(&self) -> Result<Vec<BundleSnapshot>, StateError> {
        let mut out = Vec::new();
        for name in self.bundle_names()? {
            if let Some(b) = self.bundle(&name)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// True when a transaction with this journal key committed (used by crash recovery).
    pub fn is_committed(&self, txn_key: &str) -> Result<bool, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM transactions WHERE txn_key = ?1",
                [txn_key],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }
}

fn write_bundle(tx: &rusqlite::Transaction, b: &BundleSnapshot) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO bundles (name, version, archive_sha256, dirs, baselines) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            b.name,
            b.version,
            b.archive_sha256,
            serde_json::to_string(&b.dirs).expect("list serialises"),
            serde_json::to_string(&b.row_baselines).expect("map serialises")
        ],
    )?;
    for f in &b.features {
        tx.execute(
            "INSERT INTO features (bundle, id, version, user_params, params) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                b.name,
                f.id,
                f.version,
                serde_json::to_string(&f.user_params).expect("map serialises"),
                serde_json::to_string(&f.params).expect("map serialises")
            ],
        )?;
    }
    for e in b.edits.iter().map(EditRecord::of) {
        tx.execute(
            "INSERT INTO edits (bundle, feature, edit_id, kind, path, sha256, added_newline, comment, mode)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                b.name,
                e.feature,
                e.edit_id,
                e.kind,
                e.path,
                e.sha256,
                e.added_newline,
                e.comment.to_string(),
                e.mode.unwrap_or(0)
            ],
        )?;
    }
    Ok(())
}

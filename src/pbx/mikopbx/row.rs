//! Rows of a PBX's configuration database that featpkg edits as documents.
//!
//! MikoPBX regenerates `/etc/asterisk` and root's crontab from its SQLite
//! database (`/cf/conf/mikopbx.db`), so there a feature's block goes into the
//! text a row holds rather than into a file (reference/mikopbx.md §3):
//!
//! - `m_CustomFiles`: one row per file path; `content` is base64 of the text
//!   MikoPBX appends to (mode `append`) or puts in place of (`override`) the
//!   file it generates.
//! - `m_Sip.manualattributes`: an employee's extra PJSIP options, base64 of an
//!   INI text with sections such as `[endpoint]`.
//!
//! A row is named like a path so that state, messages and diffs can show it:
//! `m_CustomFiles:/etc/asterisk/extensions.conf`, `m_Sip:201`.
//! Every write is one SQLite transaction that first checks the row still holds
//! what featpkg expects (compare and swap), so undo can be decided by content,
//! exactly as for files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::feature::{RenderedContent, RenderedEdit, Written};
use crate::marker::{self, CommentStyle};

/// Prefix of the runtime name of a custom-file row.
pub const CUSTOM_FILE_PREFIX: &str = "m_CustomFiles:";
/// Prefix of the runtime name of an employee's endpoint options.
pub const SIP_PREFIX: &str = "m_Sip:";

/// Which row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum RowKey {
    /// `m_CustomFiles` row of one file path.
    CustomFile {
        /// The generated file the row belongs to: `/etc/asterisk/extensions.conf`.
        filepath: String,
    },
    /// `m_Sip.manualattributes` of one extension.
    SipAttributes {
        /// The employee's extension number: `201`.
        extension: String,
    },
}

impl RowKey {
    /// Parses a runtime name (`m_CustomFiles:/etc/…`, `m_Sip:201`); `None` for file paths.
    pub fn parse(runtime_path: &str) -> Option<RowKey> {
        if let Some(filepath) = runtime_path.strip_prefix(CUSTOM_FILE_PREFIX) {
            return Some(RowKey::CustomFile {
                filepath: filepath.to_string(),
            });
        }
        runtime_path
            .strip_prefix(SIP_PREFIX)
            .map(|extension| RowKey::SipAttributes {
                extension: extension.to_string(),
            })
    }

    /// The runtime name (inverse of [`RowKey::parse`]).
    pub fn runtime_path(&self) -> String {
        match self {
            RowKey::CustomFile { filepath } => format!("{CUSTOM_FILE_PREFIX}{filepath}"),
            RowKey::SipAttributes { extension } => format!("{SIP_PREFIX}{extension}"),
        }
    }
}

/// A row in one database file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRef {
    /// The SQLite file on this machine.
    pub db: PathBuf,
    /// The row in it.
    pub key: RowKey,
}

/// The columns featpkg changes, exactly as stored (`None` = SQL NULL).
/// For `m_Sip` only `content` (= `manualattributes`) is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    /// The text the row holds as stored, normally base64 (see
    /// [`decode_content`]): `m_CustomFiles.content` or `m_Sip.manualattributes`.
    pub content: Option<String>,
    /// How MikoPBX uses a custom file's text: `none`, `append`, `override`,
    /// `script` or `custom`.
    #[serde(default)]
    pub mode: Option<String>,
    /// MikoPBX's "saved but not yet applied" flag: `1` after a save, `0`
    /// once MikoPBX has regenerated the file.
    #[serde(default)]
    pub changed: Option<String>,
    /// The admin's note on the custom file, as shown in MikoPBX's web interface.
    #[serde(default)]
    pub description: Option<String>,
}

/// Database failures, each naming the row.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// SQLite failed to open, read or write the database.
    #[error("{db}: {source}")]
    Sqlite {
        /// The database file: `/cf/conf/mikopbx.db`.
        db: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database is not as featpkg needs it: missing, two rows for one
    /// file path, no employee with the extension, a row it must not delete.
    #[error("{db}: {message}")]
    Invalid {
        /// The database file: `/cf/conf/mikopbx.db`.
        db: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The row no longer holds what the plan was made from, so nothing was
    /// written to it; holds its runtime name (`m_Sip:201`).
    #[error(
        "{0} changed since featpkg planned this change (someone edited it meanwhile); nothing was written to it, run the command again"
    )]
    Changed(String),
}

fn sql(db: &Path) -> impl Fn(rusqlite::Error) -> RowError + '_ {
    move |source| RowError::Sqlite {
        db: db.to_path_buf(),
        source,
    }
}

/// Opens the database; a missing file is an error (featpkg never creates the PBX's database).
fn connect(db: &Path) -> Result<Connection, RowError> {
    if !db.is_file() {
        return Err(RowError::Invalid {
            db: db.to_path_buf(),
            message: "the PBX configuration database is not there (point to it with --config-db)"
                .into(),
        });
    }
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(db))?;
    // The PBX's own workers write this database too: wait for them, briefly.
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql(db))?;
    Ok(conn)
}

fn read_in(conn: &Connection, row: &RowRef) -> Result<Option<RowState>, RowError> {
    let e = sql(&row.db);
    match &row.key {
        RowKey::CustomFile { filepath } => {
            let mut stmt = conn
                .prepare(
                    "SELECT content, mode, changed, description FROM m_CustomFiles WHERE filepath = ?1",
                )
                .map_err(&e)?;
            let rows: Vec<RowState> = stmt
                .query_map([filepath], |r| {
                    Ok(RowState {
                        content: r.get(0)?,
                        mode: r.get(1)?,
                        changed: text_of(r.get(2)?),
                        description: r.get(3)?,
                    })
                })
                .map_err(&e)?
                .collect::<Result<_, _>>()
                .map_err(&e)?;
            // MikoPBX keeps paths unique in its model, not in the schema.
            if rows.len() > 1 {
                return Err(RowError::Invalid {
                    db: row.db.clone(),
                    message: format!(
                        "m_CustomFiles has {} rows for {filepath}; MikoPBX expects one, merge them first",
                        rows.len()
                    ),
                });
            }
            Ok(rows.into_iter().next())
        }
        RowKey::SipAttributes { extension } => {
            let found: Option<Option<String>> = conn
                .query_row(
                    "SELECT manualattributes FROM m_Sip WHERE extension = ?1 AND COALESCE(type, '') <> 'friend' ORDER BY id LIMIT 1",
                    [extension],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            match found {
                Some(content) => Ok(Some(RowState {
                    content,
                    mode: None,
                    changed: None,
                    description: None,
                })),
                None => Err(RowError::Invalid {
                    db: row.db.clone(),
                    message: format!(
                        "no employee with extension {extension} in m_Sip (endpoints must be existing MikoPBX extensions)"
                    ),
                }),
            }
        }
    }
}

/// A column read whatever SQLite type it holds: MikoPBX's shipped database
/// declares `m_CustomFiles.changed INTEGER` until its first boot migrates it
/// to text ('0'/'1'). Written back as text, SQLite's column affinity stores
/// it as it was (an INTEGER column turns '1' into 1 again).
fn text_of(value: rusqlite::types::Value) -> Option<String> {
    use rusqlite::types::Value;
    match value {
        Value::Null => None,
        Value::Integer(n) => Some(n.to_string()),
        Value::Real(x) => Some(x.to_string()),
        Value::Text(t) => Some(t),
        Value::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Reads one row (`None`: no such custom-file row).
fn read(row: &RowRef) -> Result<Option<RowState>, RowError> {
    let conn = connect(&row.db)?;
    read_in(&conn, row)
}

impl RowRef {
    /// The row's state (`None`: it does not exist).
    pub fn read(&self) -> Result<Option<RowState>, RowError> {
        read(self)
    }

    /// Writes `after` in one SQLite transaction if the row still holds
    /// `expected`; otherwise writes nothing and returns [`RowError::Changed`].
    pub fn compare_and_write(
        &self,
        expected: Option<&RowState>,
        after: Option<&RowState>,
    ) -> Result<(), RowError> {
        compare_and_write(self, expected, after)
    }

    /// The row's name in messages, state and diffs (`m_Sip:201`).
    pub fn name(&self) -> String {
        self.key.runtime_path()
    }

    /// The file on the PBX the row ends up in (MikoPBX writes it from the
    /// row): what a change to the row must reload.
    pub fn config_file(&self) -> String {
        match &self.key {
            RowKey::CustomFile { filepath } => filepath.clone(),
            // An employee's options go into the endpoints MikoPBX generates.
            RowKey::SipAttributes { .. } => "/etc/asterisk/pjsip.conf".into(),
        }
    }
}

impl RowState {
    /// The text the row holds, decoded (what diffs show and blocks go in).
    pub fn text(&self) -> Vec<u8> {
        decode_content(self.content.as_deref())
    }
}

fn write_in(conn: &Connection, row: &RowRef, after: Option<&RowState>) -> Result<(), RowError> {
    let e = sql(&row.db);
    match (&row.key, after) {
        (RowKey::CustomFile { filepath }, Some(a)) => {
            let updated = conn
                .execute(
                    "UPDATE m_CustomFiles SET content = ?2, mode = ?3, changed = ?4, description = ?5 WHERE filepath = ?1",
                    params![filepath, a.content, a.mode, a.changed, a.description],
                )
                .map_err(&e)?;
            if updated == 0 {
                conn.execute(
                    "INSERT INTO m_CustomFiles (filepath, content, mode, changed, description) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![filepath, a.content, a.mode, a.changed, a.description],
                )
                .map_err(&e)?;
            }
        }
        (RowKey::CustomFile { filepath }, None) => {
            conn.execute("DELETE FROM m_CustomFiles WHERE filepath = ?1", [filepath])
                .map_err(&e)?;
        }
        (RowKey::SipAttributes { extension }, Some(a)) => {
            conn.execute(
                "UPDATE m_Sip SET manualattributes = ?2 WHERE id = (SELECT id FROM m_Sip WHERE extension = ?1 AND COALESCE(type, '') <> 'friend' ORDER BY id LIMIT 1)",
                params![extension, a.content],
            )
            .map_err(&e)?;
        }
        (RowKey::SipAttributes { extension }, None) => {
            return Err(RowError::Invalid {
                db: row.db.clone(),
                message: format!("featpkg never deletes the employee row of {extension}"),
            });
        }
    }
    Ok(())
}

/// Writes `after` in one SQLite transaction if the row still holds `expected`;
/// otherwise writes nothing and returns [`RowError::Changed`].
fn compare_and_write(
    row: &RowRef,
    expected: Option<&RowState>,
    after: Option<&RowState>,
) -> Result<(), RowError> {
    let mut conn = connect(&row.db)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(&row.db))?;
    let now = read_in(&tx, row)?;
    if now.as_ref() != expected {
        return Err(RowError::Changed(row.key.runtime_path()));
    }
    write_in(&tx, row, after)?;
    tx.commit().map_err(sql(&row.db))
}

/// Where a custom file's own text ends up when MikoPBX writes the file: after
/// what MikoPBX generates and a blank line pair (`append`, which `none` becomes
/// once featpkg adds blocks), so inside the generated file's last section. This
/// returns that generated text and the blank lines, for featpkg to check and place
/// its blocks in the text as Asterisk will read it; empty when the row's text is
/// the whole file (`override`, `custom`) or the generated text is unknown.
/// `file` is the file on this machine (`name`: its path on the PBX, for
/// messages); MikoPBX keeps the generated text in
/// `<file>.orgn` in the modes that use the row, and writes it as is in mode `none`.
///
/// `section`: a block that belongs at the end of a section (`load =>` lines in
/// `[modules]`) has no header of its own, so the generated file's last section
/// must be that one; the prefix then ends with a copy of its header, so that the
/// block lands in the row's text even when that is empty. Err (the reason) when
/// the generated text is unknown or ends in another section.
pub fn generated_prefix(
    file: &Path,
    name: &str,
    mode: Option<&str>,
    text: &[u8],
    section: Option<&str>,
) -> Result<Vec<u8>, String> {
    let generated = match mode.unwrap_or("none") {
        "none" => std::fs::read(file).ok(),
        "append" => {
            let mut orgn = file.as_os_str().to_owned();
            orgn.push(".orgn");
            std::fs::read(PathBuf::from(orgn)).ok().or_else(|| {
                let written = std::fs::read(file).ok()?;
                let own = [b"\n\n".as_slice(), text].concat();
                written.strip_suffix(own.as_slice()).map(<[u8]>::to_vec)
            })
        }
        _ => return Ok(Vec::new()),
    };
    let Some(mut prefix) = generated else {
        return match section {
            None => Ok(Vec::new()),
            Some(section) => Err(format!(
                "{name} is not there (or does not end with this custom file's text), so featpkg cannot tell whether MikoPBX appends the text to [{section}]; let MikoPBX write the file first"
            )),
        };
    };
    prefix.extend_from_slice(b"\n\n");
    if let Some(section) = section {
        let last = crate::asterisk_config::parse(&prefix, name)
            .ok()
            .and_then(|f| f.sections.last().map(|s| s.name.clone()));
        if last.as_deref() != Some(section) {
            return Err(format!(
                "MikoPBX appends this custom file's text to the end of {name}, whose last section is {}, not [{section}]",
                last.map_or("none".to_string(), |l| format!("[{l}]"))
            ));
        }
        prefix.extend_from_slice(format!("[{section}]\n").as_bytes());
    }
    Ok(prefix)
}

/// The first line of an endpoint block featpkg writes into `manualattributes`.
pub const ENDPOINT_HEADER: &str = "[endpoint]\n";

/// An employee's options as MikoPBX reads them (`Util::parseIniSettings`): a
/// section whose name comes again starts afresh, so a second `[endpoint]` drops
/// every option of the first. When the text (without `bundle`'s blocks) already
/// has an `[endpoint]` section, an endpoint block therefore goes at the end of
/// that section, without its own header.
pub fn endpoint_edits(bundle: &str, text: &[u8], news: &[&RenderedEdit]) -> Vec<RenderedEdit> {
    let has_endpoint = marker::without_blocks_of(text, CommentStyle::Semicolon, bundle)
        .ok()
        .and_then(|t| crate::asterisk_config::parse(&t, "manualattributes").ok())
        .is_some_and(|f| f.sections.iter().any(|s| s.name == "endpoint"));
    news.iter()
        .map(|&new| {
            let mut new = new.clone();
            if let RenderedContent::Block {
                body: Written::Full(body),
                section,
                ..
            } = &mut new.content
                && has_endpoint
                && let Some(rest) = body.strip_prefix(ENDPOINT_HEADER)
            {
                *body = rest.to_string();
                *section = Some("endpoint".into());
            }
            new
        })
        .collect()
}

/// The text a row's content holds: base64 decoded when it is base64 (MikoPBX
/// stores it so), else the raw text (older `manualattributes` may be plain).
pub fn decode_content(raw: Option<&str>) -> Vec<u8> {
    let raw = raw.unwrap_or("");
    base64_decode(raw).unwrap_or_else(|| raw.as_bytes().to_vec())
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as PHP's `base64_encode`.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 (whitespace between groups allowed); `None` if `text` is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !clean.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for (index, group) in clean.chunks(4).enumerate() {
        let last = index == clean.len() / 4 - 1;
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &group[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_like_php() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            (
                "[endpoint]\ndevice_state_busy_at = 3\n",
                "W2VuZHBvaW50XQpkZXZpY2Vfc3RhdGVfYnVzeV9hdCA9IDMK",
            ),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(base64_decode("not base64!").is_none());
        assert!(base64_decode("Zg==Zg==").is_none());
        assert_eq!(
            decode_content(Some("max_contacts = 2")),
            b"max_contacts = 2"
        );
    }

    #[test]
    fn runtime_names_parse_back() {
        for key in [
            RowKey::CustomFile {
                filepath: "/etc/asterisk/extensions.conf".into(),
            },
            RowKey::SipAttributes {
                extension: "201".into(),
            },
        ] {
            assert_eq!(RowKey::parse(&key.runtime_path()), Some(key));
        }
        assert_eq!(RowKey::parse("/etc/asterisk/extensions.conf"), None);
    }

    fn endpoint_edit(body: &str) -> RenderedEdit {
        RenderedEdit {
            feature: "call-waiting".into(),
            edit_id: "call-waiting/endpoints/201".into(),
            content: RenderedContent::Block {
                body: Written::Full(body.into()),
                section: None,
                check: None,
                comment: ';',
                added_newline: false,
            },
        }
    }

    fn body_and_section(edit: &RenderedEdit) -> (String, Option<String>) {
        match &edit.content {
            RenderedContent::Block {
                body: Written::Full(body),
                section,
                ..
            } => (body.clone(), section.clone()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn endpoint_blocks_join_the_employees_own_endpoint_section() {
        let ours = endpoint_edit("[endpoint]\ndevice_state_busy_at = 3\n");
        let joined =
            |text: &str| body_and_section(&endpoint_edits("b", text.as_bytes(), &[&ours])[0]);
        assert_eq!(
            joined("[aor]\nmax_contacts = 2\n[endpoint]\nrtp_timeout = 30\n"),
            ("device_state_busy_at = 3\n".into(), Some("endpoint".into()))
        );
        for text in [
            "",
            "[aor]\nmax_contacts = 2\n",
            // Our own block's header does not count.
            "; BEGIN featpkg:b:call-waiting/endpoints/201\n[endpoint]\ndevice_state_busy_at = 3\n; END featpkg:b:call-waiting/endpoints/201\n",
        ] {
            assert_eq!(
                joined(text),
                ("[endpoint]\ndevice_state_busy_at = 3\n".into(), None),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_generated_text_comes_before_a_custom_files_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("modules.conf");
        let generated = "[modules]\nautoload=no\nload => pbx_config.so\n";
        std::fs::write(&file, generated).unwrap();
        let name = "/etc/asterisk/modules.conf";
        let prefix = |mode, text: &str, section| {
            generated_prefix(&file, name, mode, text.as_bytes(), section)
                .map(|p| String::from_utf8(p).unwrap())
        };
        // none: the file as MikoPBX wrote it; a block for [modules] gets its header again.
        assert_eq!(prefix(None, "", None).unwrap(), format!("{generated}\n\n"));
        assert_eq!(
            prefix(Some("none"), "", Some("modules")).unwrap(),
            format!("{generated}\n\n[modules]\n")
        );
        // append: the file ends with the row's own text…
        let own = "load => app_meetme.so\n";
        std::fs::write(&file, format!("{generated}\n\n{own}")).unwrap();
        assert_eq!(
            prefix(Some("append"), own, None).unwrap(),
            format!("{generated}\n\n")
        );
        // … and <file>.orgn, when there, is the generated text.
        std::fs::write(dir.path().join("modules.conf.orgn"), "[modules]\n").unwrap();
        assert_eq!(
            prefix(Some("append"), own, None).unwrap(),
            "[modules]\n\n\n"
        );
        // The row's text is the whole file.
        assert_eq!(prefix(Some("override"), own, Some("modules")).unwrap(), "");
        let err = prefix(Some("append"), own, Some("global")).unwrap_err();
        assert!(
            err.contains("last section is [modules], not [global]"),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(prefix(None, "", None).unwrap(), "");
        let err = prefix(None, "", Some("modules")).unwrap_err();
        assert!(
            err.starts_with("/etc/asterisk/modules.conf is not there"),
            "{err}"
        );
    }
}

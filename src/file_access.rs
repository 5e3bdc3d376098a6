//! How the bytes of a file document are read and written.
//!
//! Almost every document is a file featpkg opens itself ([`FileAccess::Direct`]:
//! temp file, fsync, rename). One is not: a user's own crontab when featpkg
//! runs as that user rather than root. Debian's spool
//! `/var/spool/cron/crontabs` is `root:crontab 1730`, so the user can neither
//! read nor rename files in it; `crontab(1)` (set-gid `crontab`) is the only
//! way in, and it is what a PBX's own web UI uses for the same job.
//! [`FileAccess::Crontab`] reads with `crontab -l`,
//! writes with `crontab -` (which installs the whole text at once: it writes
//! a temp file in the spool, renames it over and tells cron) and deletes with
//! `crontab -r`. The text `crontab -l` prints is exactly the text installed
//! (Debian's crontab(1) keeps its "DO NOT EDIT" header to itself), so the
//! transaction's compare-by-hash works on it as on a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// How a file document is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum FileAccess {
    /// Opened, written (temp + rename) and removed by featpkg itself.
    #[default]
    Direct,
    /// The invoking user's own crontab, through `program` (`crontab`).
    Crontab {
        /// The crontab(1) to run: `/usr/bin/crontab`, a bare `crontab` found
        /// on `PATH`, or the stand-in a test names with `--crontab-cmd`.
        program: PathBuf,
    },
}

/// A `crontab(1)` run that failed; the message quotes what crontab said.
#[derive(Debug, thiserror::Error)]
#[error("{path} (through {program}): {message}")]
pub struct CrontabError {
    /// The crontab as the PBX names it (`/var/spool/cron/crontabs/asterisk`).
    pub path: PathBuf,
    /// The crontab(1) that was run.
    pub program: PathBuf,
    /// Which command failed and how (exit status, what crontab printed), or
    /// why it could not be run at all.
    pub message: String,
}

/// What `crontab -l` prints on stderr when the user has no crontab
/// (Debian's cron 3.0pl1 and cronie: `no crontab for <user>`, exit 1).
const NO_CRONTAB: &str = "no crontab for ";

/// The crontab's bytes (`crontab -l`), or None when the user has none.
/// `path` only names it in errors.
pub fn read_crontab(program: &Path, path: &Path) -> Result<Option<Vec<u8>>, CrontabError> {
    let output = crontab(program, path, &["-l"], None)?;
    if output.status.success() {
        return Ok(Some(output.stdout));
    }
    let said = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(1) && said.trim_start().starts_with(NO_CRONTAB) {
        return Ok(None);
    }
    Err(failed(program, path, "crontab -l", &output))
}

/// Installs `bytes` as the whole crontab (`crontab -`).
pub fn write_crontab(program: &Path, path: &Path, bytes: &[u8]) -> Result<(), CrontabError> {
    let output = crontab(program, path, &["-"], Some(bytes))?;
    if output.status.success() {
        return Ok(());
    }
    Err(failed(program, path, "crontab -", &output))
}

/// Deletes the crontab (`crontab -r`); one that is already gone is fine.
pub fn remove_crontab(program: &Path, path: &Path) -> Result<(), CrontabError> {
    let output = crontab(program, path, &["-r"], None)?;
    let said = String::from_utf8_lossy(&output.stderr);
    if output.status.success()
        || (output.status.code() == Some(1) && said.trim_start().starts_with(NO_CRONTAB))
    {
        return Ok(());
    }
    Err(failed(program, path, "crontab -r", &output))
}

/// Runs `program args`, feeding `input` on stdin (or nothing).
fn crontab(
    program: &Path,
    path: &Path,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<std::process::Output, CrontabError> {
    let error = |message: String| CrontabError {
        path: path.to_path_buf(),
        program: program.to_path_buf(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| error(format!("cannot run it: {e}")))?;
    {
        // Dropped at the end of the block: crontab reads to EOF.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        if let Some(bytes) = input {
            stdin
                .write_all(bytes)
                .map_err(|e| error(format!("cannot send it the crontab: {e}")))?;
        }
    }
    child
        .wait_with_output()
        .map_err(|e| error(format!("cannot read its answer: {e}")))
}

fn failed(program: &Path, path: &Path, what: &str, output: &std::process::Output) -> CrontabError {
    let mut said = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if said.is_empty() {
        said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    CrontabError {
        path: path.to_path_buf(),
        program: program.to_path_buf(),
        message: format!(
            "`{what}` failed ({}): {}",
            output.status,
            if said.is_empty() {
                "it said nothing"
            } else {
                &said
            }
        ),
    }
}

//! What every featpkg watcher does around its AMI work: one instance at a time
//! (cron starts it every minute to keep it alive; a second copy exits 0 at
//! once), a log file, clean exit on SIGTERM/SIGINT, reconnect with backoff when
//! Asterisk restarts, and exit once its credentials file is gone (the feature
//! was uninstalled). Watchers never run inside an AGI, so they hold no call.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Ami, AmiError, Credentials, connect_with_retry};

/// Appends timestamped lines to a log file (or stderr when there is none).
pub struct Log {
    name: String,
    file: Option<std::fs::File>,
}

impl Log {
    /// Opens `path` for appending (stderr if None or unwritable).
    pub fn open(name: &str, path: Option<&Path>) -> Log {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Log {
            name: name.to_string(),
            file,
        }
    }

    /// Writes one line.
    pub fn line(&mut self, text: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line = format!("{now} {}: {text}\n", self.name);
        match self.file.as_mut() {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => eprint!("{line}"),
        }
    }
}

/// Where a watcher keeps its lock, credentials and log.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub lock: PathBuf,
    pub ami: PathBuf,
    pub log: Option<PathBuf>,
}

/// Runs `session` over an AMI connection until asked to stop, reconnecting as
/// needed. `session` gets the connection and a `stop()` to poll; it returns Ok
/// when asked to stop, or the error that ended the connection.
pub fn run(
    name: &str,
    paths: &DaemonPaths,
    events: &str,
    mut session: impl FnMut(&mut Ami, &dyn Fn() -> bool, &mut Log) -> Result<(), AmiError>,
) -> ExitCode {
    let lock = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: {}: {e}", paths.lock.display());
            return ExitCode::from(2);
        }
    };
    if lock.try_lock().is_err() {
        return ExitCode::SUCCESS; // another instance is running
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let mut log = Log::open(name, paths.log.as_deref());
    let creds = match Credentials::load(&paths.ami) {
        Ok(c) => c,
        Err(e) => {
            log.line(&e.to_string());
            return ExitCode::from(2);
        }
    };
    log.line("started");
    let ami_file = paths.ami.clone();
    let give_up = || stop.load(Ordering::SeqCst) || !ami_file.exists();
    while !give_up() {
        let mut ami = match connect_with_retry(&creds, events, Duration::from_secs(5), &give_up) {
            Ok(ami) => ami,
            Err(AmiError::AuthenticationFailed) => {
                log.line("AMI login failed; check featpkg's AMI user in manager.conf");
                return ExitCode::from(1);
            }
            Err(_) => break, // asked to stop while retrying
        };
        log.line(&format!("connected to Asterisk (AMI {})", ami.version));
        match session(&mut ami, &give_up, &mut log) {
            Ok(()) => {
                let _ = ami.logoff();
            }
            Err(e) => log.line(&format!("AMI connection lost ({e}); reconnecting")),
        }
    }
    log.line("stopped");
    drop(lock);
    ExitCode::SUCCESS
}

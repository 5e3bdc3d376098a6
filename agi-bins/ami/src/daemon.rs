//! What every featpkg watcher does around its AMI work: one instance at a time
//! (cron starts it every minute to keep it alive; a second copy exits 0 at
//! once), a log file, clean exit on SIGTERM/SIGINT, reconnect with backoff when
//! Asterisk restarts, and exit once its credentials file is gone (the feature
//! was uninstalled). Between events a watcher sleeps in [`Wakeups::wait`]:
//! no ticks (see `wake`). Watchers never run inside an AGI, so they hold no call.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::wake::{Change, Wakeups};
use crate::{Ami, AmiError, Credentials, Message, backoff};

/// A session that lasted this long was a working connection: the next loss
/// starts the reconnect delays from the beginning again.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// A watcher's reaction to the PBX: act on what it knows, learn from each
/// event and each change in the directories it follows.
pub trait Watch {
    /// Acts on the current state (e.g. originates what is due). Runs after
    /// every event, change and deadline, so it must be cheap: no rescans.
    fn dispatch(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError>;
    /// Learns from one event.
    fn on_event(&mut self, ami: &mut Ami, event: &Message, log: &mut Log) -> Result<(), AmiError>;
    /// The next instant at which [`Watch::dispatch`] has something to do
    /// though no event comes (a re-dial due, a bound to enforce); None when
    /// only events and changes can give it work. An idle watcher sleeps
    /// until then: no ticks.
    fn deadline(&self) -> Option<Instant>;
    /// Learns that something changed in a directory it follows
    /// ([`Wakeups::follow`]).
    fn on_change(&mut self, _change: &Change, _log: &mut Log) {}
}

/// Dispatches, then sleeps until an event, a change, the watcher's deadline
/// or a stop, until [`Wakeups::stop_requested`]; returns the error that ended
/// the connection.
pub fn event_loop(
    watch: &mut impl Watch,
    ami: &mut Ami,
    wake: &mut Wakeups,
    log: &mut Log,
) -> Result<(), AmiError> {
    while !wake.stop_requested() {
        watch.dispatch(ami, log)?;
        // Events read while an action waited for its reply come first.
        if let Some(event) = ami.take_event()? {
            watch.on_event(ami, &event, log)?;
            continue;
        }
        let woken = wake.wait(ami.socket().as_raw_fd(), watch.deadline())?;
        for change in &woken.changes {
            watch.on_change(change, log);
        }
        if woken.socket {
            ami.read_available()?;
        }
    }
    Ok(())
}

/// The watcher's log: lines go through `tracing` to the log file (or stderr).
pub struct Log {
    _private: (),
}

impl Log {
    /// Sends `tracing` output to `path` (appended; stderr if None or unwritable).
    /// Call once per process.
    pub fn open(name: &str, path: Option<&Path>) -> Log {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_target(false);
        let installed = match file {
            Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
        if installed.is_ok() {
            tracing::info!("{name}: logging");
        }
        Log { _private: () }
    }

    /// Logs one line at info level.
    pub fn line(&mut self, text: &str) {
        tracing::info!("{text}");
    }
}

/// Opens (creating it and its directory if needed) the single-instance lock
/// file: on a fresh install nothing else has made the directory yet. Every
/// long-running featpkg program (the watchers, featpkg-agid) holds one.
pub fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Where a watcher keeps its lock, credentials and log.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub lock: PathBuf,
    pub ami: PathBuf,
    pub log: Option<PathBuf>,
}

/// Runs `session` over an AMI connection until asked to stop, reconnecting as
/// needed. `session` gets the connection and the watcher's [`Wakeups`] (for
/// [`event_loop`]); it returns Ok when asked to stop, or the error that ended
/// the connection.
pub fn run(
    name: &str,
    paths: &DaemonPaths,
    events: &str,
    mut session: impl FnMut(&mut Ami, &mut Wakeups, &mut Log) -> Result<(), AmiError>,
) -> ExitCode {
    let lock = match open_lock(&paths.lock) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: {}: {e}", paths.lock.display());
            return ExitCode::from(2);
        }
    };
    if lock.try_lock().is_err() {
        return ExitCode::SUCCESS; // another instance is running
    }
    let mut wake = match Wakeups::new(&paths.ami) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{name}: cannot install the signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let mut log = Log::open(name, paths.log.as_deref());
    let creds = match Credentials::load(&paths.ami) {
        Ok(c) => c,
        Err(e) => {
            log.line(&e.to_string());
            return ExitCode::from(2);
        }
    };
    log.line("started");
    // Sessions that end soon after they began (Asterisk shutting down, an
    // action it refuses at start) are spaced by growing delays, not retried
    // in a tight loop that floods Asterisk and the log.
    let mut quick_losses = 0;
    while !wake.stop_requested() {
        let mut ami = match connect(&creds, events, &mut wake) {
            Ok(ami) => ami,
            Err(AmiError::AuthenticationFailed) => {
                log.line("AMI login failed; check featpkg's AMI user in manager.conf");
                return ExitCode::from(1);
            }
            Err(_) => break, // asked to stop while retrying
        };
        log.line(&format!("connected to Asterisk (AMI {})", ami.version));
        let began = Instant::now();
        match session(&mut ami, &mut wake, &mut log) {
            Ok(()) => {
                let _ = ami.logoff();
            }
            Err(e) => {
                log.line(&format!("AMI connection lost ({e}); reconnecting"));
                if began.elapsed() >= STABLE_SESSION {
                    quick_losses = 0;
                } else {
                    if pause(&mut wake, backoff(quick_losses)) {
                        break;
                    }
                    quick_losses += 1;
                }
            }
        }
    }
    log.line("stopped");
    drop(lock);
    ExitCode::SUCCESS
}

/// Connects, retrying with [`backoff`] until it works or a stop comes (Err
/// then). Authentication failures are not retried.
fn connect(creds: &Credentials, events: &str, wake: &mut Wakeups) -> Result<Ami, AmiError> {
    let mut attempt = 0;
    loop {
        match Ami::connect(creds, events, Duration::from_secs(5)) {
            Ok(ami) => return Ok(ami),
            Err(AmiError::AuthenticationFailed) => return Err(AmiError::AuthenticationFailed),
            Err(e) => {
                if pause(wake, backoff(attempt)) {
                    return Err(e);
                }
                attempt += 1;
            }
        }
    }
}

/// Sleeps `wait` unless a stop comes first (true then): asleep in
/// [`Wakeups::wait`], not polling, however long Asterisk stays down.
fn pause(wake: &mut Wakeups, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if wake.stop_requested() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        if wake.wait(-1, Some(until)).is_err() {
            // poll(2) itself failed (out of memory): do not spin.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

//! The two ways a feature's AGI code reaches a call on the real scratch
//! Asterisk (README, "FastAGI mode"): `agi_mode=process`, Asterisk starts the
//! per-call program for every call; `agi_mode=fastagi`, the dialplan calls
//! `agi://127.0.0.1:<port>/featpkg-<feature>` served by featpkg-agid (started
//! here from the cron line the install wrote) and runs the per-call program
//! only when the server did not serve the call.
//!
//! A feature test takes an [`AgiMode`], installs with [`Agi::sets`], starts
//! [`Agi::start`] after the install and ends with [`Agi::assert_served`]:
//! every AGI call of the test was served the mode's way (in fastagi mode by
//! the server, none silently by the fallback).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::asterisk::{Asterisk, Daemon, tail};

/// How long the server may take to listen once started.
const LISTEN_WAIT: Duration = Duration::from_secs(15);

/// The feature's `agi_mode` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgiMode {
    Process,
    Fastagi,
}

impl AgiMode {
    /// The parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            AgiMode::Process => "process",
            AgiMode::Fastagi => "fastagi",
        }
    }

    /// The dialplan priority of the feature's first AGI() on an extension:
    /// fastagi mode clears `FEATPKG_AGI_SERVED` at 1 and calls the server at 2.
    pub fn agi_priority(self) -> u32 {
        match self {
            AgiMode::Process => 1,
            AgiMode::Fastagi => 2,
        }
    }

    /// The start of the log line of the feature's (first) AGI() on `exten`
    /// in `context`; the channel's name follows it.
    pub fn agi_start(self, exten: &str, context: &str) -> String {
        format!(
            "Executing [{exten}@{context}:{}] AGI(\"",
            self.agi_priority()
        )
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One test's AGI serving: the mode, the feature, the server's port and,
/// once started in fastagi mode, the server.
pub struct Agi {
    pub mode: AgiMode,
    feature: &'static str,
    pub port: u16,
    server: Option<Daemon>,
}

impl Agi {
    /// `feature` (`operator-alert`, `busy-callback`) in `mode`, on a free port.
    pub fn new(mode: AgiMode, feature: &'static str) -> Agi {
        Agi {
            mode,
            feature,
            port: free_port(),
            server: None,
        }
    }

    /// The `--set` values that install the feature in this mode.
    pub fn sets(&self) -> Vec<String> {
        let f = self.feature;
        let mut sets = vec![format!("{f}.agi_mode={}", self.mode.name())];
        if self.mode == AgiMode::Fastagi {
            sets.push(format!("{f}.agid_port={}", self.port));
        }
        sets
    }

    /// The FastAGI address the dialplan calls.
    pub fn url(&self) -> String {
        format!("agi://127.0.0.1:{}/featpkg-{}", self.port, self.feature)
    }

    /// The per-call program (the fallback in fastagi mode).
    pub fn program(&self, ast: &Asterisk) -> PathBuf {
        ast.var_lib()
            .join(format!("agi-bin/featpkg-{}", self.feature))
    }

    /// After the install: in fastagi mode, runs the installed cron line once,
    /// as cron does, and waits until the server listens. Nothing in process
    /// mode.
    pub fn start(&mut self, ast: &Asterisk) {
        if self.mode == AgiMode::Fastagi {
            self.server = Some(start_agid(ast, self.port));
        }
    }

    /// The running server's pid (fastagi mode, once started).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|d| d.child.id())
    }

    /// `kill -9` of the server.
    pub fn kill_server(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.kill();
        }
    }

    /// Ends every call, then asserts from the log since `mark` that the
    /// test's calls ran the feature's AGI code at least `at_least` times, all
    /// the mode's way: in process mode each AGI() launched the per-call
    /// program; in fastagi mode each went to the server, which completed it,
    /// and the per-call program never ran (the server set
    /// `FEATPKG_AGI_SERVED`, so no fallback).
    pub fn assert_served(&self, ast: &Asterisk, mark: usize, at_least: usize) {
        ast.hang_up_all_and_wait();
        let log = ast.log_since(mark);
        let program = self.program(ast).display().to_string();
        let url = self.url();
        let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
        let to_program = count(&format!("\", \"{program},"));
        let launched = count(&format!("Launched AGI Script {program}"));
        let to_server = count(&format!("\", \"{url},"));
        let completed = count(&format!("AGI Script {url} completed"));
        let failed = count("FastAGI failed");
        let seen = format!(
            "{} mode: {to_server} AGI() to {url} ({completed} completed, {failed} FastAGI \
             failures), {to_program} AGI() naming {program} ({launched} launched)",
            self.mode.name()
        );
        match self.mode {
            AgiMode::Process => assert!(
                launched >= at_least && launched == to_program && to_server == 0,
                "{seen}; expected at least {at_least} per-call programs:\n{}",
                tail(&log, 60)
            ),
            AgiMode::Fastagi => assert!(
                completed >= at_least && completed == to_server && launched == 0 && failed == 0,
                "{seen}; expected at least {at_least} calls, all served by featpkg-agid:\n{}",
                tail(&log, 60)
            ),
        }
        eprintln!("{} calls: {seen}", self.feature);
    }
}

/// Runs the installed featpkg-agid cron line once, as cron does, and waits
/// until the server listens on `port`. The returned handle kills it on drop.
pub fn start_agid(ast: &Asterisk, port: u16) -> Daemon {
    let command = ast.cron_command_running("featpkg-agid");
    assert!(command.contains(&format!("--port {port}")), "{command}");
    let server = ast.start_cron_command_running("featpkg-agid");
    let until = Instant::now() + LISTEN_WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "featpkg-agid does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

//! The fakes against the real Asterisk: the suite keeps its fakes for fault
//! injection (a CLI that fails, an AMI connection that drops, a slow peer),
//! so they must answer with the texts Asterisk 22 gives. Each test here sends
//! the same commands to the scratch Asterisk (tests/common/asterisk.rs) and to
//! a fake, and compares what comes back:
//!
//! * the fake CLI (tests/support/fake-asterisk) for every `asterisk -rx`
//!   command featpkg sends (src/target/asterisk.rs, src/target/mikopbx.rs:
//!   `module load/unload/reload`, `module show like`, `manager reload`,
//!   `dialplan show`, `core waitfullybooted`), in their success and failure
//!   forms, and an unreachable daemon;
//! * the fake manager (agi-bins/ami/src/fake.rs): its session texts (banner,
//!   Login, Ping, Logoff, errors) and its builders for what the watchers read
//!   (Originate and OriginateResponse, Hangup, Getvar DEVICE_STATE,
//!   DeviceStateList and DeviceStateChange, ConfbridgeList, ConfbridgeJoin and
//!   Leave, the Hangup event), field for field;
//! * the fake AGI peer (agi-bins/agi/src/fake.rs): a relay runs as the AGI
//!   program, once under the real Asterisk (a real PJSIP call) and once under
//!   the fake peer, and the test speaks the program's side through it to
//!   both: the environment block, the reply of each command the AGI programs
//!   send, and a hangup (the interrupted command's reply, SIGHUP, then 511 for
//!   all but the commands Asterisk still runs on a dead channel).
//!
//! Only what legitimately differs between two systems is normalised, and each
//! normalisation says why where it is done.

mod common;

// The fakes, compiled into this test from their sources: the root package's
// dev-dependency on featpkg-ami does not enable `fake-server`, nor depend on
// featpkg-agi with `fake-peer`.
#[allow(dead_code)]
#[path = "../agi-bins/agi/src/fake.rs"]
mod agi_fake;
#[allow(dead_code)]
#[path = "../agi-bins/ami/src/fake.rs"]
mod ami_fake;

// What ami_fake takes from its crate root.
use featpkg_ami::{Message, take_message};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::asterisk::{self, Asterisk, PhoneMode, wait_user_event};
use common::repo;

// ---------------------------------------------------------------------------
// The CLI

/// What `asterisk -rx` printed, and how it exited.
#[derive(Debug, PartialEq, Eq)]
struct CliAnswer {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_cli(mut cmd: Command, command: &str) -> CliAnswer {
    let out = cmd.arg("-rx").arg(command).output().unwrap();
    CliAnswer {
        code: out.status.code(),
        stdout: normalise_cli(&String::from_utf8_lossy(&out.stdout)),
        stderr: normalise_cli(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// The scratch Asterisk's CLI, as featpkg runs it (`--asterisk-cmd`).
fn real_cli(ast: &Asterisk, conf: Option<&Path>, command: &str) -> CliAnswer {
    let words: Vec<String> = ast
        .cli_command()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut cmd = Command::new(&words[0]);
    match conf {
        // Another asterisk.conf (the daemon unreachable).
        Some(conf) => cmd.arg("-C").arg(conf),
        None => cmd.args(&words[1..]),
    };
    run_cli(cmd, command)
}

/// The fake CLI with `env` (its knobs), as tests/common/mod.rs Pbx runs it.
fn fake_cli(env: &[(&str, String)], command: &str) -> CliAnswer {
    let mut cmd = Command::new(repo().join("tests/support/fake-asterisk"));
    for var in [
        "FAKE_ASTERISK_LOG",
        "FAKE_ASTERISK_DOWN",
        "FAKE_ASTERISK_FAIL_RELOAD",
        "FAKE_ASTERISK_FAIL_LOAD",
        "FAKE_ASTERISK_MISSING",
        "FAKE_ASTERISK_RUNNING",
        "FAKE_ASTERISK_STATE_DIR",
        "FAKE_ASTERISK_ETC",
        "FAKE_ASTERISK_HIDE_CONTEXTS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_cli(cmd, command)
}

/// Replaces what differs between two Asterisks that run the same
/// configuration, and only that:
/// * `module show`: the use count (how many channels and modules hold the
///   module at that instant);
/// * `dialplan show`: the extension lines (the fake reads context names from
///   the files, it does not build the dialplan) and the counts of the summary
///   line (with their singular/plural);
/// * the control socket's path in "Unable to connect…" (the daemon's
///   `astrundir`).
fn normalise_cli(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_context = false;
    for line in text.lines() {
        if line.starts_with("[ Context '") {
            in_context = true;
            out.push(line.to_string());
            continue;
        }
        if in_context {
            if line.starts_with("-= ") {
                in_context = false;
                let mut counted = String::new();
                for c in line
                    .replace("extensions", "extension")
                    .replace("priorities", "priority")
                    .replace("contexts", "context")
                    .chars()
                {
                    match c {
                        '0'..='9' if counted.ends_with('N') => {}
                        '0'..='9' => counted.push('N'),
                        _ => counted.push(c),
                    }
                }
                out.push("<extension lines>".into());
                out.push(counted);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Unable to connect to remote asterisk (does ") {
            let file = rest.rsplit('/').next().unwrap_or(rest);
            out.push(format!(
                "Unable to connect to remote asterisk (does <astrundir>/{file}"
            ));
            continue;
        }
        // MODLIST_FORMAT "%-30s %-40.40s %-10d %-11s %13s": the use count is
        // the third column, at byte 72.
        let is_module_row = line.len() > 83
            && line.as_bytes()[30] == b' '
            && line.as_bytes()[71] == b' '
            && line[72..82].trim().chars().all(|c| c.is_ascii_digit())
            && !line[72..82].trim().is_empty();
        if is_module_row {
            out.push(format!("{}{:<10}{}", &line[..72], "<uses>", &line[82..]));
            continue;
        }
        out.push(line.to_string());
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// Sends `command` to both and asserts the same answer; returns the real one.
fn same_cli(
    ast: &Asterisk,
    fake_env: &[(&str, String)],
    command: &str,
    expect_in_real: &str,
) -> CliAnswer {
    let real = real_cli(ast, None, command);
    let fake = fake_cli(fake_env, command);
    assert!(
        real.stdout.contains(expect_in_real),
        "the real Asterisk no longer says {expect_in_real:?} to {command:?}: {real:?}"
    );
    assert_eq!(
        fake, real,
        "fake-asterisk (left) answers {command:?} unlike Asterisk (right)"
    );
    real
}

#[test]
fn the_fake_cli_answers_every_command_featpkg_sends_as_asterisk_does() {
    let ast = asterisk::shared();
    let state = tempfile::tempdir().unwrap();
    // The fake reads the same configuration directory as the real one.
    let base = vec![
        (
            "FAKE_ASTERISK_STATE_DIR",
            state.path().display().to_string(),
        ),
        ("FAKE_ASTERISK_ETC", ast.etc().display().to_string()),
    ];
    let with = |k: &'static str, v: &str| {
        let mut env = base.clone();
        env.push((k, v.to_string()));
        env
    };

    // Reloads featpkg asks for: running modules, and `manager reload`.
    same_cli(
        &ast,
        &base,
        "module reload pbx_config.so",
        "reloaded successfully",
    );
    same_cli(
        &ast,
        &base,
        "module reload res_pjsip.so",
        "reloaded successfully",
    );
    same_cli(&ast, &base, "manager reload", "");
    // A module that is not loaded is no reload success.
    same_cli(
        &ast,
        &base,
        "module reload func_extstate.so",
        "No such module 'func_extstate.so'",
    );
    // A dialplan Asterisk rejects (a template that does not exist):
    // `module reload pbx_config.so` reports it (FAKE_ASTERISK_FAIL_RELOAD).
    let extensions = ast.etc_file("extensions.conf");
    let good = std::fs::read_to_string(&extensions).unwrap();
    std::fs::write(
        &extensions,
        format!(
            "{good}\n[featpkg-fidelity-broken](featpkg-no-such-template)\nexten => s,1,NoOp()\n"
        ),
    )
    .unwrap();
    let real = real_cli(&ast, None, "module reload pbx_config.so");
    std::fs::write(&extensions, &good).unwrap();
    assert!(
        real.stdout.contains("reported a reload failure"),
        "{real:?}"
    );
    assert_eq!(
        fake_cli(
            &with("FAKE_ASTERISK_FAIL_RELOAD", "pbx_config.so"),
            "module reload pbx_config.so"
        ),
        real
    );
    same_cli(
        &ast,
        &base,
        "module reload pbx_config.so",
        "reloaded successfully",
    );

    // A module's life: absent, loaded, loaded again, unloaded, unloaded again.
    same_cli(
        &ast,
        &base,
        "module show like func_extstate.so",
        "0 modules loaded",
    );
    same_cli(
        &ast,
        &base,
        "module load func_extstate.so",
        "Loaded func_extstate.so",
    );
    same_cli(&ast, &base, "module show like func_extstate.so", "Running");
    same_cli(
        &ast,
        &base,
        "module load func_extstate.so",
        "Unable to load module func_extstate.so",
    );
    same_cli(
        &ast,
        &base,
        "module unload func_extstate.so",
        "Unloaded func_extstate.so",
    );
    same_cli(
        &ast,
        &base,
        "module unload func_extstate.so",
        "Unable to unload resource func_extstate.so",
    );
    same_cli(
        &ast,
        &base,
        "module show like func_extstate.so",
        "0 modules loaded",
    );
    // The other modules the features load, listed as Asterisk lists them.
    for module in ["res_manager_devicestate.so", "app_confbridge.so"] {
        same_cli(&ast, &base, &format!("module load {module}"), "Loaded");
        same_cli(
            &ast,
            &base,
            &format!("module show like {module}"),
            "Running",
        );
        same_cli(&ast, &base, &format!("module unload {module}"), "Unloaded");
    }

    // A module with no file: not loaded, not listed (FAKE_ASTERISK_MISSING).
    let missing = "app_featpkg_no_such_module.so";
    let missing_env = with("FAKE_ASTERISK_MISSING", missing);
    for (command, says) in [
        (format!("module load {missing}"), "Unable to load module"),
        (format!("module show like {missing}"), "0 modules loaded"),
        (format!("module reload {missing}"), "No such module"),
    ] {
        let real = real_cli(&ast, None, &command);
        assert!(real.stdout.contains(says), "{command}: {real:?}");
        assert_eq!(fake_cli(&missing_env, &command), real, "{command}");
    }

    // A module that declines to load (app_confbridge without confbridge.conf):
    // listed "Not Running", its reload refused, unloaded on request
    // (FAKE_ASTERISK_FAIL_LOAD).
    let confbridge = ast.etc_file("confbridge.conf");
    let aside = ast.etc_file("confbridge.conf.aside");
    std::fs::rename(&confbridge, &aside).unwrap();
    let declining = with("FAKE_ASTERISK_FAIL_LOAD", "app_confbridge.so");
    let mut answers = Vec::new();
    for (command, says) in [
        ("module load app_confbridge.so", "Unable to load module"),
        ("module show like app_confbridge.so", "Not Running"),
        (
            "module reload app_confbridge.so",
            "was not properly initialized",
        ),
        (
            "module unload app_confbridge.so",
            "Unloaded app_confbridge.so",
        ),
        ("module show like app_confbridge.so", "0 modules loaded"),
    ] {
        let real = real_cli(&ast, None, command);
        let fake = fake_cli(&declining, command);
        answers.push((command, says, real, fake));
    }
    std::fs::rename(&aside, &confbridge).unwrap();
    for (command, says, real, fake) in answers {
        assert!(real.stdout.contains(says), "{command}: {real:?}");
        assert_eq!(fake, real, "{command}");
    }

    // The context checks after a reload.
    same_cli(
        &ast,
        &base,
        "dialplan show internal",
        "[ Context 'internal' created by 'pbx_config' ]",
    );
    same_cli(
        &ast,
        &base,
        "dialplan show phones-hangup",
        "[ Context 'phones-hangup' created by 'pbx_config' ]",
    );
    same_cli(
        &ast,
        &base,
        "dialplan show featpkg-no-such-context",
        "There is no existence of 'featpkg-no-such-context' context",
    );
    // MikoPBX's wait after a restart.
    same_cli(&ast, &base, "core waitfullybooted", "fully booted");
}

#[test]
fn the_fake_cli_fails_as_asterisk_does_when_the_daemon_is_unreachable() {
    let ast = asterisk::shared();
    // An asterisk.conf whose astrundir has no control socket: what `asterisk
    // -rx` meets while Asterisk is stopped or still starting.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let conf = dir.path().join("asterisk.conf");
    std::fs::write(
        &conf,
        format!("[directories]\nastrundir => {}\n", run.display()),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    for command in [
        "module reload pbx_config.so",
        "core waitfullybooted",
        "dialplan show internal",
    ] {
        let real = real_cli(&ast, Some(&conf), command);
        assert_eq!(real.code, Some(1), "{real:?}");
        assert!(
            real.stderr
                .starts_with("Unable to connect to remote asterisk"),
            "{real:?}"
        );
        let down = fake_cli(&[("FAKE_ASTERISK_DOWN", "1".into())], command);
        assert_eq!(down, real, "FAKE_ASTERISK_DOWN, {command}");
        // A restarting Asterisk (as fake-mikopbx-reload leaves it): refused
        // once, then up.
        std::fs::write(state.path().join("booting"), "1\n").unwrap();
        let env = [(
            "FAKE_ASTERISK_STATE_DIR",
            state.path().display().to_string(),
        )];
        assert_eq!(fake_cli(&env, command), real, "booting, {command}");
        assert_eq!(fake_cli(&env, command).code, Some(0), "booted, {command}");
    }
}

// ---------------------------------------------------------------------------
// The manager

/// The scratch Asterisk's AMI login (tests/fixtures/real-asterisk/manager.conf).
const AMI_USER: &str = "featpkg-test";
const AMI_SECRET: &str = "featpkg-test-secret";

/// A raw manager connection: the messages exactly as they arrive.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    kept: Vec<Message>,
    closed: bool,
}

impl Raw {
    fn connect(addr: SocketAddr) -> (Raw, String) {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            kept: Vec::new(),
            closed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let banner = loop {
            if let Some(end) = raw.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = raw.buf.drain(..end + 2).collect();
                break String::from_utf8(line).unwrap();
            }
            assert!(Instant::now() < deadline, "no banner from {addr}");
            raw.fill();
        };
        (raw, banner)
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => self.closed = true,
        }
    }

    fn send(&mut self, action: &str, id: &str, fields: &[(&str, &str)]) {
        let mut all = vec![("ActionID", id)];
        all.extend_from_slice(fields);
        let msg = featpkg_ami::action(action, &all).unwrap();
        self.stream.write_all(msg.to_wire().as_bytes()).unwrap();
    }

    /// The next message (kept ones first) that `want` accepts, within `limit`;
    /// the others are kept for later.
    fn wait(&mut self, limit: Duration, want: impl Fn(&Message) -> bool) -> Option<Message> {
        if let Some(i) = self.kept.iter().position(&want) {
            return Some(self.kept.remove(i));
        }
        let deadline = Instant::now() + limit;
        loop {
            while let Some(m) = take_message(&mut self.buf).unwrap() {
                if want(&m) {
                    return Some(m);
                }
                self.kept.push(m);
            }
            if self.closed || Instant::now() >= deadline {
                return None;
            }
            self.fill();
        }
    }

    /// The reply to action `id`.
    fn reply(&mut self, id: &str) -> Message {
        self.wait(Duration::from_secs(10), |m| {
            m.event().is_none() && m.get("ActionID") == Some(id)
        })
        .unwrap_or_else(|| panic!("no reply to {id}"))
    }

    /// The event `name` whose fields include `fields`.
    fn event(&mut self, name: &str, fields: &[(&str, &str)], limit: Duration) -> Message {
        self.wait(limit, |m| {
            m.event() == Some(name) && fields.iter().all(|(k, v)| m.get(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no {name} event {fields:?} within {limit:?}"))
    }

    /// True once the other end closed the connection (within `limit`).
    fn closes(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.closed && Instant::now() < deadline {
            self.fill();
        }
        self.closed
    }

    fn login(&mut self, id: &str, secret: &str, events: &str) -> Message {
        self.send(
            "Login",
            id,
            &[
                ("Username", AMI_USER),
                ("Secret", secret),
                ("Events", events),
            ],
        );
        self.reply(id)
    }
}

/// The message with the values that differ from one system (or instant) to
/// the next replaced: unique and linked ids (`<id>`; `<unknown>` stays), the
/// bridge id, uptimes and timestamps, how long a member has been in, and how
/// many channels a bridge holds (ConfBridge's announcer comes and goes).
fn normal(msg: &Message) -> Vec<(String, String)> {
    msg.fields
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "Uniqueid" | "Linkedid" if v != "<unknown>" => "<id>".to_string(),
                "BridgeUniqueid" => "<bridge id>".to_string(),
                "Uptime" | "LastReload" | "Timestamp" | "AnsweredTime" | "BridgeNumChannels" => {
                    "<n>".to_string()
                }
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Parses a fake's wire text (one message).
fn parse(wire: &str) -> Message {
    let mut buf = wire.as_bytes().to_vec();
    let msg = take_message(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "{wire:?} is more than one message");
    msg
}

/// Asserts that the fake's `wire` is the real message `real`, field for field.
fn same_message(what: &str, fake: &str, real: &Message) {
    assert_eq!(
        normal(&parse(fake)),
        normal(real),
        "{what}: the fake (left) is not what Asterisk sent (right)"
    );
}

/// A channel name Asterisk made: `<prefix>` then its hexadecimal sequence.
fn assert_channel_name(name: &str, prefix: &str) {
    let rest = name
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("channel {name:?} does not start with {prefix:?}"));
    assert!(
        rest.len() == 8 && rest.chars().all(|c| c.is_ascii_hexdigit()),
        "channel {name:?}"
    );
}

fn ami_addr(ast: &Asterisk) -> SocketAddr {
    format!("127.0.0.1:{}", ast.ports.ami).parse().unwrap()
}

#[test]
fn the_fake_manager_session_speaks_as_asterisk_does() {
    let ast = asterisk::shared();
    let fake = ami_fake::FakeAmi::start(Arc::new(|a: &Message| {
        ami_fake::standard_reply(a, AMI_SECRET)
    }));
    let servers = [("Asterisk", ami_addr(&ast)), ("fake", fake.addr)];
    let mut seen: Vec<Vec<Vec<(String, String)>>> = Vec::new();
    for (who, addr) in servers {
        let mut said = Vec::new();
        let (mut c, banner) = Raw::connect(addr);
        said.push(vec![("banner".to_string(), banner)]);
        // Before the login only Login, Logoff and Challenge are served.
        c.send("Ping", "p0", &[]);
        said.push(normal(&c.reply("p0")));
        // A wrong secret: answered after a second, then the connection closes.
        let started = Instant::now();
        let failed = c.login("l0", "not-the-secret", "off");
        let delay = started.elapsed();
        assert!(
            delay >= Duration::from_millis(900),
            "{who}: a failed login answered after {delay:?}"
        );
        said.push(normal(&failed));
        assert!(c.closes(Duration::from_secs(3)), "{who}: still open");

        let (mut c, _) = Raw::connect(addr);
        said.push(normal(&c.login("l1", AMI_SECRET, "on")));
        // A user reading `system` (the fixture's reads all) hears FullyBooted.
        let booted = c.event("FullyBooted", &[], Duration::from_secs(2));
        said.push(normal(&booted));
        c.send("Ping", "p1", &[]);
        let pong = c.reply("p1");
        let stamp = pong.get("Timestamp").unwrap_or_default();
        assert!(
            stamp
                .split_once('.')
                .is_some_and(|(s, us)| { s.chars().all(|c| c.is_ascii_digit()) && us.len() == 6 }),
            "{who}: Timestamp {stamp:?}"
        );
        said.push(normal(&pong));
        c.send(
            "Login",
            "l2",
            &[("Username", AMI_USER), ("Secret", AMI_SECRET)],
        );
        said.push(normal(&c.reply("l2")));
        c.send("FeatpkgNoSuchAction", "x1", &[]);
        said.push(normal(&c.reply("x1")));
        c.send("Logoff", "o1", &[]);
        said.push(normal(&c.reply("o1")));
        assert!(c.closes(Duration::from_secs(3)), "{who}: open after Logoff");

        // The watchers' sessions (`Events: call`) and the commands' (`off`)
        // get no FullyBooted.
        for events in ["call", "off"] {
            let (mut c, _) = Raw::connect(addr);
            c.login("l3", AMI_SECRET, events);
            assert!(
                c.wait(Duration::from_millis(500), |m| m.event()
                    == Some("FullyBooted"))
                    .is_none(),
                "{who}: FullyBooted to an `Events: {events}` session"
            );
        }
        seen.push(said);
    }
    let (real, fake) = (&seen[0], &seen[1]);
    assert_eq!(real.len(), fake.len());
    for (r, f) in real.iter().zip(fake) {
        assert_eq!(f, r, "the fake manager (left) unlike Asterisk (right)");
    }
}

/// Phone 201 places a call to `dialled` into the PBX (answered there) and
/// stays on the line: the Originate's ActionID and its OriginateResponse.
fn phone_calls(c: &mut Raw, id: &str, dialled: &str) -> Message {
    c.send(
        "Originate",
        id,
        &[
            ("Channel", &format!("PJSIP/{dialled}@phone201")),
            ("Context", "phones-caller"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Timeout", "10000"),
            ("CallerID", "\"Phone 201\" <201>"),
            ("Async", "true"),
        ],
    );
    let queued = c.reply(id);
    same_message("Originate queued", &ami_fake::originate_queued(id), &queued);
    c.event(
        "OriginateResponse",
        &[("ActionID", id)],
        Duration::from_secs(15),
    )
}

#[test]
fn the_fake_managers_texts_for_the_watchers_are_asterisks() {
    let ast = asterisk::shared();
    // The modules the two watchers' features load.
    for module in ["res_manager_devicestate.so", "app_confbridge.so"] {
        let out = ast.cli(&format!("module load {module}"));
        assert!(out.contains("Loaded"), "{out}");
    }
    let (mut c, _) = Raw::connect(ami_addr(&ast));
    let ok = c.login("l", AMI_SECRET, "call");
    assert_eq!(ok.get("Response"), Some("Success"));

    // Getvar DEVICE_STATE(): the values busy-callback's watcher matches on.
    for (i, (device, state)) in [
        ("PJSIP/202", "NOT_INUSE"),
        ("PJSIP/209", "UNAVAILABLE"),
        ("IAX2/301", "UNKNOWN"),
        ("PJSIP/299", "INVALID"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("g{i}");
        let variable = format!("DEVICE_STATE({device})");
        c.send("Getvar", &id, &[("Variable", &variable)]);
        same_message(
            &variable,
            &ami_fake::getvar(&id, &variable, state),
            &c.reply(&id),
        );
    }

    // DeviceStateList: start, one DeviceStateChange per cached device, end.
    c.send("DeviceStateList", "d1", &[]);
    let start = c.reply("d1");
    let mut items = Vec::new();
    let complete = loop {
        let m = c
            .wait(Duration::from_secs(5), |m| m.get("ActionID") == Some("d1"))
            .expect("the DeviceStateList ends");
        if m.get("EventList") == Some("Complete") {
            break m;
        }
        items.push(m);
    };
    let phone = items
        .iter()
        .find(|m| m.get("Device") == Some("PJSIP/201"))
        .expect("PJSIP/201 is in the list");
    let fake = ami_fake::device_state_list("d1", &[("PJSIP/201", "NOT_INUSE")]);
    same_message("DeviceStateList start", &fake[0], &start);
    same_message("DeviceStateList item", &fake[1], phone);
    let all: Vec<(String, String)> = items
        .iter()
        .map(|m| {
            (
                m.get("Device").unwrap().to_string(),
                m.get("State").unwrap().to_string(),
            )
        })
        .collect();
    let all: Vec<(&str, &str)> = all.iter().map(|(d, s)| (d.as_str(), s.as_str())).collect();
    let fake = ami_fake::device_state_list("d1", &all);
    same_message("DeviceStateListComplete", fake.last().unwrap(), &complete);

    // ConfbridgeList before anyone is in a conference.
    c.send("ConfbridgeList", "c0", &[("Conference", "701")]);
    same_message(
        "ConfbridgeList, no conference",
        &ami_fake::no_active_conferences("c0"),
        &c.reply("c0"),
    );

    // Phone 201 dials conference 701: OriginateResponse, the PBX side's
    // device state, ConfbridgeJoin, ConfbridgeList.
    let answered = phone_calls(&mut c, "o1", "701");
    let phone_side = answered.get("Channel").unwrap().to_string();
    assert_channel_name(&phone_side, "PJSIP/phone201-");
    same_message(
        "OriginateResponse, answered",
        &ami_fake::originate_response_success(
            "o1",
            &phone_side,
            answered.get("Uniqueid").unwrap(),
            "phones-caller",
            "s",
            Some(("201", "Phone 201")),
        ),
        &answered,
    );
    let join = c.event(
        "ConfbridgeJoin",
        &[("Conference", "701")],
        Duration::from_secs(10),
    );
    let member_name = join.get("Channel").unwrap().to_string();
    assert_channel_name(&member_name, "PJSIP/201-");
    let member = ami_fake::Channel::up(&member_name, "201", "Phone 201", "internal", "701", 2);
    same_message(
        "ConfbridgeJoin",
        &ami_fake::confbridge_join("701", 2, &member),
        &join,
    );
    let busy = c.event(
        "DeviceStateChange",
        &[("Device", "PJSIP/201")],
        Duration::from_secs(5),
    );
    same_message(
        "DeviceStateChange",
        &ami_fake::device_state_change("PJSIP/201", "INUSE"),
        &busy,
    );
    c.send("ConfbridgeList", "c1", &[("Conference", "701")]);
    let start = c.reply("c1");
    let item = c.event(
        "ConfbridgeList",
        &[("ActionID", "c1")],
        Duration::from_secs(5),
    );
    let end = c.event(
        "ConfbridgeListComplete",
        &[("ActionID", "c1")],
        Duration::from_secs(5),
    );
    let fake = ami_fake::confbridge_list("c1", "701", std::slice::from_ref(&member));
    same_message("ConfbridgeList start", &fake[0], &start);
    same_message("ConfbridgeList item", &fake[1], &item);
    same_message("ConfbridgeListComplete", &fake[2], &end);
    // Another conference while 701 runs.
    c.send("ConfbridgeList", "c2", &[("Conference", "702")]);
    same_message(
        "ConfbridgeList, another conference",
        &ami_fake::no_such_conference("c2"),
        &c.reply("c2"),
    );

    // The guest's hang-up: Hangup, ConfbridgeLeave, the Hangup event; then
    // the channel is gone.
    c.send(
        "Hangup",
        "h1",
        &[("Channel", &member_name), ("Cause", "16")],
    );
    same_message("Hangup", &ami_fake::channel_hungup("h1"), &c.reply("h1"));
    let leave = c.event(
        "ConfbridgeLeave",
        &[("Channel", &member_name)],
        Duration::from_secs(5),
    );
    same_message(
        "ConfbridgeLeave",
        &ami_fake::confbridge_leave("701", 2, &member),
        &leave,
    );
    let gone = c.event(
        "Hangup",
        &[("Channel", &member_name)],
        Duration::from_secs(5),
    );
    same_message(
        "the Hangup event",
        &ami_fake::hangup_event(&member, 16, "Normal Clearing"),
        &gone,
    );
    c.send(
        "Hangup",
        "h2",
        &[("Channel", &member_name), ("Cause", "16")],
    );
    same_message(
        "Hangup of a channel that is gone",
        &ami_fake::no_such_channel("h2"),
        &c.reply("h2"),
    );
    ast.cli("channel request hangup all");

    // Originates that fail: busy, never answered, refused at once.
    ast.set_phone("203", PhoneMode::Busy);
    ast.set_phone("204", PhoneMode::Ring);
    for (id, requested, timeout, reason) in [
        ("f1", "PJSIP/203", "10000", ami_fake::REASON_FAILED),
        ("f2", "PJSIP/204", "1500", ami_fake::REASON_NO_ANSWER),
        ("f3", "PJSIP/209", "10000", ami_fake::REASON_FAILED),
    ] {
        c.send(
            "Originate",
            id,
            &[
                ("Channel", requested),
                ("Context", "phones-caller"),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Timeout", timeout),
                ("Async", "true"),
            ],
        );
        same_message(
            "Originate queued",
            &ami_fake::originate_queued(id),
            &c.reply(id),
        );
        let failed = c.event(
            "OriginateResponse",
            &[("ActionID", id)],
            Duration::from_secs(15),
        );
        same_message(
            &format!("OriginateResponse, {requested} not answered"),
            &ami_fake::originate_response_failure(
                id,
                requested,
                "phones-caller",
                "s",
                reason,
                None,
            ),
            &failed,
        );
    }
    c.send(
        "Originate",
        "f4",
        &[
            ("Channel", "PJSIP/201"),
            ("Context", "featpkg-no-such-context"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
        ],
    );
    same_message(
        "Originate into nothing",
        &ami_fake::error("f4", ami_fake::NO_SUCH_EXTENSION),
        &c.reply("f4"),
    );
}

// ---------------------------------------------------------------------------
// AGI

/// The relay that runs as the AGI program, under the real Asterisk and under
/// the fake peer alike: it connects to the test on 127.0.0.1:<argv[1]> and
/// passes lines both ways (Asterisk's stdin to the test, the test's lines to
/// Asterisk's stdout). A SIGHUP is passed on as the line `#SIGHUP`, after
/// whatever Asterisk had written before it sent the signal. Needs python3
/// (which `.ci/setup` installs; tests/support/fake-mikopbx-reload needs it too).
const RELAY: &str = r##"#!/usr/bin/env python3
import os, select, signal, socket, sys

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGHUP, lambda *_: None)
os.set_blocking(0, False)
stdin_open = True

def forward_stdin():
    global stdin_open
    while stdin_open:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        if not data:
            stdin_open = False
            sock.sendall(b"#EOF\n")
            return
        sock.sendall(data)

while True:
    watched = [sock, wake_r] + ([0] if stdin_open else [])
    ready, _, _ = select.select(watched, [], [])
    if wake_r in ready:
        signals = os.read(wake_r, 64)
        # Asterisk writes a reply before it signals: it is in the pipe now.
        forward_stdin()
        if signal.SIGHUP in signals:
            sock.sendall(b"#SIGHUP\n")
    if 0 in ready:
        forward_stdin()
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            break
        while data:
            data = data[os.write(1, data):]
"##;

/// The AGI program's side of a conversation, through the relay.
struct Program {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Program {
    fn accept(listener: &TcpListener, limit: Duration) -> Program {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + limit;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the AGI relay did not connect within {limit:?}: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Program {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the relay closed"),
            Ok(_) => line.trim_end_matches('\n').to_string(),
            Err(e) => panic!("no line from the relay within 20 s: {e}"),
        }
    }

    /// The environment block, up to its blank line.
    fn env_block(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                return lines;
            }
            lines.push(line);
        }
    }

    fn send(&mut self, command: &str) {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .unwrap();
    }

    /// The lines up to a whole reply (a `520-` usage text to its `520 ` end),
    /// `#SIGHUP` included where it came.
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = is_last_reply_line(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// The lines up to both a whole reply and the SIGHUP, in the order they came.
    fn reply_and_sighup(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while !(lines.iter().any(|l: &String| is_last_reply_line(l))
            && lines.iter().any(|l| l == "#SIGHUP"))
        {
            lines.push(self.line());
        }
        lines
    }
}

fn is_last_reply_line(line: &str) -> bool {
    ["200 ", "510 ", "511 ", "520 "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Lines with what differs between two runs replaced: where in the sound or
/// recording a command stopped (`endpos=`, depends on timing and on the
/// audio that arrived).
fn normal_agi(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.split_once(" endpos=") {
            Some((head, _)) => format!("{head} endpos=<n>"),
            None => l.clone(),
        })
        .collect()
}

/// A real call into an AGI program that is the relay: phone 201 dials 880,
/// which runs `AGI(<relay>,<port>)` in [internal].
struct RealAgi {
    program: Program,
    /// The PBX side of the call (the AGI's channel).
    channel: String,
    /// The phone's side, where its keys are pressed.
    phone: String,
    ami: featpkg_ami::Ami,
    block: Vec<String>,
}

fn relay(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("featpkg-fidelity-relay");
    std::fs::write(&path, RELAY).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn real_agi(ast: &Asterisk, relay: &Path) -> RealAgi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let extensions = ast.etc_file("extensions.conf");
    let mut text = std::fs::read_to_string(&extensions).unwrap();
    if !text.contains("featpkg-fidelity") {
        text.push_str(&format!(
            "\n; featpkg-fidelity: the AGI relay\n[internal](+)\nexten => 880,1,AGI({},${{FIDELITY_AGI_PORT}})\n",
            relay.display()
        ));
        std::fs::write(&extensions, text).unwrap();
        let out = ast.cli("module reload pbx_config.so");
        assert!(out.contains("reloaded successfully"), "{out}");
    }
    let out = ast.cli(&format!("dialplan set global FIDELITY_AGI_PORT {port}"));
    assert!(!out.contains("No such command"), "{out}");
    let mut ami = ast.ami();
    ast.call(&mut ami, "201", "880");
    let mut program = Program::accept(&listener, Duration::from_secs(15));
    let block = program.env_block();
    let channel = block
        .iter()
        .find_map(|l| l.strip_prefix("agi_channel: "))
        .expect("agi_channel")
        .to_string();
    RealAgi {
        program,
        channel,
        phone: String::new(),
        ami,
        block,
    }
}

impl RealAgi {
    fn command(&mut self, command: &str) -> Vec<String> {
        self.program.send(command);
        self.program.reply()
    }

    /// Answers the call, and learns the phone's side of it.
    fn answer(&mut self) -> Vec<String> {
        let reply = self.command("ANSWER");
        let answered = wait_user_event(
            &mut self.ami,
            "CallerAnswered",
            &[],
            Duration::from_secs(10),
        );
        self.phone = answered.get("Channel").unwrap().to_string();
        reply
    }

    /// `command`, and the phone presses `key` after `after`.
    fn command_pressing(&mut self, command: &str, key: &str, after: Duration) -> Vec<String> {
        self.program.send(command);
        std::thread::sleep(after);
        self.ami
            .send(
                featpkg_ami::action(
                    "PlayDTMF",
                    &[
                        ("Channel", &self.phone),
                        ("Digit", key),
                        ("Duration", "150"),
                    ],
                )
                .unwrap(),
            )
            .unwrap_or_else(|e| panic!("PlayDTMF {key} on {}: {e}", self.phone));
        self.program.reply()
    }

    /// Hangs the PBX side up.
    fn hang_up(&self, ast: &Asterisk) {
        let out = ast.cli(&format!("channel request hangup {}", self.channel));
        assert!(out.contains("Requested Hangup"), "{out}");
    }
}

/// The fake peer running the relay, with the block of `call`.
struct FakeAgi {
    program: Program,
    peer: agi_fake::FakePeer,
    block: Vec<String>,
}

fn fake_agi(relay: &Path, call: &agi_fake::Call) -> FakeAgi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut call = call.clone();
    call.args = vec![listener.local_addr().unwrap().port().to_string()];
    let peer = agi_fake::FakePeer::start(relay, &call, &[]);
    let mut program = Program::accept(&listener, Duration::from_secs(10));
    let block = program.env_block();
    FakeAgi {
        program,
        peer,
        block,
    }
}

impl FakeAgi {
    /// The program sends `command`; the fake peer answers `reply`.
    fn command(&mut self, command: &str, reply: &str) -> Vec<String> {
        self.program.send(command);
        self.peer.expect(command, reply);
        self.program.reply()
    }

    /// The program sends `command` after the hangup; the fake answers as it
    /// does on a dead channel.
    fn dead_command(&mut self, command: &str) -> Vec<String> {
        self.program.send(command);
        let got = self.peer.next_command(Duration::from_secs(5));
        assert_eq!(got.as_deref(), Some(command));
        self.peer.reply(&agi_fake::dead_channel_reply(command));
        self.program.reply()
    }
}

/// The fake's `Call` for the real call's block: same script, caller, number,
/// context and argument.
fn call_like(block: &[String], relay: &Path) -> agi_fake::Call {
    let get = |key: &str| {
        block
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} missing from {block:?}"))
            .to_string()
    };
    let mut call = agi_fake::Call::new(&relay.display().to_string(), "201", "internal", "880");
    call.calleridname = "Phone 201".into();
    // The channel's sequence number is Asterisk's to pick.
    call.channel = get("agi_channel");
    call
}

#[test]
fn the_fake_agi_peer_writes_the_block_and_replies_as_asterisk_does() {
    let ast = asterisk::shared();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path());
    let mut real = real_agi(&ast, &relay);
    assert_channel_name(&real.channel, "PJSIP/201-");

    // The environment block: the same keys in the same order, the same values
    // but for the channel's unique id and thread id (each run's own), the
    // version (each installation's own) and the relay's port (agi_arg_1).
    let call = call_like(&real.block, &relay);
    let mut fake = fake_agi(&relay, &call);
    let keys = |b: &[String]| -> Vec<String> {
        b.iter()
            .map(|l| l.split_once(": ").map_or(l.clone(), |(k, _)| k.to_string()))
            .collect()
    };
    assert_eq!(keys(&fake.block), keys(&real.block), "the block's keys");
    for (f, r) in fake.block.iter().zip(&real.block) {
        let (key, real_value) = r.split_once(": ").unwrap_or((r, ""));
        let fake_value = f.split_once(": ").map_or("", |(_, v)| v);
        match key {
            "agi_uniqueid" | "agi_threadid" | "agi_version" | "agi_arg_1" => {
                let numeric =
                    |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.');
                assert!(numeric(real_value) && numeric(fake_value), "{r} / {f}");
            }
            _ => assert_eq!(f, r, "the fake's block (left) unlike Asterisk's (right)"),
        }
    }

    // Each command the AGI programs send (operator-alert, busy-callback), in
    // the forms they meet, with the fake's builder for that form. Keys are
    // pressed on the calling phone (AMI PlayDTMF) while the command runs.
    use agi_fake::reply;
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let rec = rec.display().to_string();
    let cases: Vec<(String, Option<Press>, String)> = vec![
        // The unanswered caller operator-alert plays to (early media).
        ("CHANNEL STATUS".into(), None, reply::channel_status(4)),
        ("EXEC Progress".into(), None, reply::ZERO.into()),
        ("ANSWER".into(), None, reply::ZERO.into()),
        ("CHANNEL STATUS".into(), None, reply::channel_status(6)),
        // The menus' GET DATA: timeout, one key, a key then the timeout.
        (
            "GET DATA \"beep\" 500 1".into(),
            None,
            reply::digits_timeout(""),
        ),
        (
            "GET DATA \"beep\" 5000 1".into(),
            Some(("1", Duration::from_millis(300))),
            reply::digits("1"),
        ),
        (
            "GET DATA \"beep\" 1500 3".into(),
            Some(("2", Duration::from_millis(300))),
            reply::digits_timeout("2"),
        ),
        ("WAIT FOR DIGIT 300".into(), None, reply::ZERO.into()),
        (
            "WAIT FOR DIGIT 5000".into(),
            Some(("5", Duration::from_millis(300))),
            reply::digit('5'),
        ),
        (
            "STREAM FILE \"beep\" \"\"".into(),
            None,
            reply::stream_file(None, 3520),
        ),
        (
            "STREAM FILE \"featpkg-no-such-sound\" \"\"".into(),
            None,
            reply::STREAM_FILE_MISSING.into(),
        ),
        (
            "STREAM FILE \"vm-rec-temp\" \"#\"".into(),
            Some(("#", Duration::from_millis(300))),
            reply::stream_file(Some('#'), 3680),
        ),
        (
            format!("RECORD FILE \"{rec}/timeout\" \"wav\" \"#\" 500 BEEP"),
            None,
            reply::record_timeout(0),
        ),
        (
            format!("RECORD FILE \"{rec}/dtmf\" \"wav\" \"#\" 10000 BEEP"),
            Some(("#", Duration::from_millis(1500))),
            reply::record_dtmf('#', 0),
        ),
        (
            "RECORD FILE \"/nonexistent/featpkg-fidelity/x\" \"wav\" \"#\" 500 BEEP".into(),
            None,
            reply::RECORD_WRITEFILE.into(),
        ),
        (
            "DATABASE PUT \"featpkg-fidelity\" \"201\" \"1\"".into(),
            None,
            reply::OK.into(),
        ),
        (
            "DATABASE GET \"featpkg-fidelity\" \"201\"".into(),
            None,
            reply::value("1"),
        ),
        (
            "DATABASE DEL \"featpkg-fidelity\" \"201\"".into(),
            None,
            reply::OK.into(),
        ),
        // Asterisk 22 answers 1 for a key that is not there too.
        (
            "DATABASE DEL \"featpkg-fidelity\" \"201\"".into(),
            None,
            reply::OK.into(),
        ),
        (
            "DATABASE GET \"featpkg-fidelity\" \"201\"".into(),
            None,
            reply::UNSET.into(),
        ),
        (
            "SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"".into(),
            None,
            reply::OK.into(),
        ),
        (
            "GET VARIABLE \"BUSY_CALLBACK\"".into(),
            None,
            reply::value("QUEUED"),
        ),
        (
            "GET VARIABLE \"FEATPKG_FIDELITY_UNSET\"".into(),
            None,
            reply::UNSET.into(),
        ),
        (
            "VERBOSE \"featpkg fidelity: a line (with parentheses)\" 1".into(),
            None,
            reply::OK.into(),
        ),
        (
            "EXEC FeatpkgNoSuchApplication".into(),
            None,
            reply::NO_SUCH_APPLICATION.into(),
        ),
        (
            "FEATPKG NO SUCH COMMAND".into(),
            None,
            reply::UNKNOWN_COMMAND.into(),
        ),
    ];
    for (command, key, fake_reply) in &cases {
        let got = match key {
            Some((key, after)) => real.command_pressing(command, key, *after),
            None if command == "ANSWER" => real.answer(),
            None => real.command(command),
        };
        let from_fake = fake.command(command, fake_reply);
        assert_eq!(
            normal_agi(&from_fake),
            normal_agi(&got),
            "{command}: the fake's reply (left) unlike Asterisk's (right)"
        );
    }
    // A usage error: the multi-line 520 the AGI library reads to its end.
    let usage = real.command("DATABASE GET");
    assert_eq!(
        usage.first().map(String::as_str),
        Some("520-Invalid command syntax.  Proper usage follows:"),
        "{usage:?}"
    );
    assert_eq!(
        usage.last().map(String::as_str),
        Some("520 End of proper usage."),
        "{usage:?}"
    );
    drop(real.program);
    ast.cli("channel request hangup all");
}

/// A key the phone presses, and how long after the command went.
type Press = (&'static str, Duration);

/// What the program meets after a hangup, as the same lines from both.
fn after_hangup_commands(rec: &str) -> Vec<String> {
    vec![
        // Refused on a dead channel…
        "STREAM FILE \"beep\" \"\"".into(),
        "ANSWER".into(),
        "CHANNEL STATUS".into(),
        "GET DATA \"beep\" 500 1".into(),
        "WAIT FOR DIGIT 300".into(),
        format!("RECORD FILE \"{rec}/dead\" \"wav\" \"#\" 500 BEEP"),
        // …still run.
        "DATABASE PUT \"featpkg-fidelity\" \"202\" \"1\"".into(),
        "DATABASE DEL \"featpkg-fidelity\" \"202\"".into(),
        "DATABASE GET \"featpkg-fidelity\" \"202\"".into(),
        "SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"".into(),
        "GET VARIABLE \"FEATPKG_FIDELITY_UNSET\"".into(),
        "VERBOSE \"featpkg fidelity: after the hangup\" 1".into(),
        "EXEC Progress".into(),
    ]
}

#[test]
fn the_fake_agi_peer_hangs_up_as_asterisk_does() {
    let ast = asterisk::shared();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path());
    let rec = dir.path().display().to_string();
    // Hangups during a command (the command's reply, then SIGHUP) and
    // between commands (SIGHUP at once); what follows is the same.
    let interrupted: [(String, String); 3] = [
        (
            format!("RECORD FILE \"{rec}/hangup\" \"wav\" \"#\" 10000 BEEP"),
            agi_fake::reply::record_hangup(0),
        ),
        (
            "GET DATA \"vm-rec-temp\" 10000 1".into(),
            agi_fake::reply::HUNG_UP.into(),
        ),
        (
            "STREAM FILE \"vm-rec-temp\" \"\"".into(),
            agi_fake::reply::stream_file_hung_up(4000),
        ),
    ];
    let mut scenarios: Vec<Option<(String, String)>> = interrupted.into_iter().map(Some).collect();
    scenarios.push(None);
    for scenario in scenarios {
        let mut real = real_agi(&ast, &relay);
        let call = call_like(&real.block, &relay);
        let mut fake = fake_agi(&relay, &call);
        let answered = real.answer();
        assert_eq!(
            normal_agi(&fake.command("ANSWER", agi_fake::reply::ZERO)),
            normal_agi(&answered)
        );
        let (what, real_lines, fake_lines) = match &scenario {
            Some((command, fake_reply)) => {
                real.program.send(command);
                std::thread::sleep(Duration::from_millis(1500));
                real.hang_up(&ast);
                let real_lines = real.program.reply_and_sighup();
                fake.program.send(command);
                let got = fake.peer.next_command(Duration::from_secs(5));
                assert_eq!(got.as_deref(), Some(command.as_str()));
                fake.peer.hangup_after_reply(fake_reply);
                let fake_lines = fake.program.reply_and_sighup();
                (command.clone(), real_lines, fake_lines)
            }
            None => {
                real.hang_up(&ast);
                let real_lines = vec![real.program.line()];
                fake.peer.hangup();
                let fake_lines = vec![fake.program.line()];
                ("between commands".to_string(), real_lines, fake_lines)
            }
        };
        assert_eq!(
            real_lines.last().map(String::as_str),
            Some("#SIGHUP"),
            "{what}: Asterisk sent no SIGHUP after {real_lines:?}"
        );
        assert_eq!(
            normal_agi(&fake_lines),
            normal_agi(&real_lines),
            "hangup {what}: the fake (left) unlike Asterisk (right)"
        );
        for command in after_hangup_commands(&rec) {
            let real_reply = real.command(&command);
            let fake_reply = fake.dead_command(&command);
            assert_eq!(
                normal_agi(&fake_reply),
                normal_agi(&real_reply),
                "after a hangup {what}, {command}: the fake (left) unlike Asterisk (right)"
            );
        }
        drop(real.program);
        drop(fake);
        ast.cli("channel request hangup all");
    }
}

//! featpkg-agid holds 1000 calls at once on the real scratch Asterisk, and
//! serves every one of them: no call falls back to the per-call program.
//!
//! 1000 Local channels are originated; each answers and waits at a barrier
//! (a global variable) until all are up, so the FastAGI calls start within
//! half a second of each other. Each then runs operator-alert's `menu` over
//! FastAGI, as an operator dialling the service code does: `ANSWER`, then
//! `GET DATA beep 5000 1`, which holds the call's connection for the beep
//! and five seconds of waiting for a digit that never comes. Checked:
//!
//! * Asterisk's side: every call's `AGISTATUS` is `SUCCESS` and
//!   `FEATPKG_AGI_SERVED` is `1` (a `UserEvent` per call), and the `AGI()`
//!   steps of all 1000 overlap by at least a second;
//! * the server's side: at one moment at least 1000 established
//!   connections on its port (`/proc/net/tcp`), and no refused call in its log.

mod common;

#[path = "common/agid_server.rs"]
mod agid_server;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::asterisk::{self, Asterisk};

/// Calls held at once (the server's default cap is 1024).
const CALLS: usize = 1000;

/// Open files both processes need for the calls with room to spare: Asterisk
/// holds a FastAGI socket and a Local channel pair's alert pipes per call.
const OPEN_FILES: u64 = 16384;

fn dialplan(port: u16, spool: &std::path::Path) -> String {
    format!(
        "[agiload]\n\
         exten => 201,1,Answer()\n \
         same => n,Set(UNTIL=$[${{EPOCH}} + 60])\n \
         same => n,UserEvent(AgiLoadReady,Call: ${{UNIQUEID}})\n \
         same => n(barrier),Wait(0.5)\n \
         same => n,GotoIf($[\"${{GLOBAL(AGILOAD_GO)}}\" != \"1\" & ${{EPOCH}} < ${{UNTIL}}]?barrier)\n \
         same => n,Set(CALLERID(num)=201)\n \
         same => n,Set(FEATPKG_AGI_SERVED=)\n \
         same => n,Set(T0=${{STRFTIME(,,%s.%6q)}})\n \
         same => n,AGI(agi://127.0.0.1:{port}/featpkg-operator-alert,menu,family=agiload,pattern=_XXX,dir={}/operator-alert,deadline=30,menu_sound=beep)\n \
         same => n,Set(T1=${{STRFTIME(,,%s.%6q)}})\n \
         same => n,UserEvent(AgiLoadDone,Call: ${{UNIQUEID}},Status: ${{AGISTATUS}},Served: ${{FEATPKG_AGI_SERVED}},T0: ${{T0}},T1: ${{T1}})\n \
         same => n,Hangup()\n",
        spool.display()
    )
}

/// Raises the open-file limit of process `pid` to [`OPEN_FILES`] when it is lower.
fn raise_open_files(pid: u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if soft >= OPEN_FILES {
        return;
    }
    let out = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={OPEN_FILES}:{OPEN_FILES}"))
        .output()
        .expect("prlimit (util-linux)");
    assert!(
        out.status.success(),
        "cannot raise the open-file limit of {pid} from {soft} to {OPEN_FILES}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn asterisk_pid(ast: &Asterisk) -> u32 {
    let file = ast.ast_dir().join("var/run/asterisk/watchdog-child.pid");
    std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits for `n` distinct calls' `name` events; returns them.
fn user_events(
    ami: &mut featpkg_ami::Ami,
    name: &str,
    n: usize,
    limit: Duration,
) -> Vec<featpkg_ami::Message> {
    let until = Instant::now() + limit;
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    while events.len() < n {
        let left = until.saturating_duration_since(Instant::now());
        let m = ami
            .wait_event(left, |m| {
                m.event() == Some("UserEvent") && m.get("UserEvent") == Some(name)
            })
            .unwrap_or_else(|e| {
                panic!(
                    "{} of {n} calls sent {name} within {limit:?}: {e}",
                    events.len()
                )
            });
        if seen.insert(m.get("Call").unwrap_or_default().to_string()) {
            events.push(m);
        }
    }
    events
}

fn seconds(m: &featpkg_ami::Message, key: &str) -> f64 {
    m.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {}", m.to_wire()))
}

/// How long all calls' `AGI()` steps were under way together: from the last
/// start to the first end (negative when they never were).
fn overlap(done: &[featpkg_ami::Message]) -> f64 {
    let last_start = done
        .iter()
        .map(|m| seconds(m, "T0"))
        .fold(f64::MIN, f64::max);
    let first_end = done
        .iter()
        .map(|m| seconds(m, "T1"))
        .fold(f64::MAX, f64::min);
    first_end - last_start
}

#[test]
fn featpkg_agid_holds_a_thousand_calls_at_once() {
    let ast = asterisk::shared();
    common::static_bin_dir();
    raise_open_files(asterisk_pid(&ast));
    let spool = ast.spool().join("featpkg");
    std::fs::create_dir_all(spool.join("operator-alert")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let port = agid_server::free_port();
    let server = agid_server::start_agid(port, scratch.path(), &spool, &[]);
    raise_open_files(server.child.id());
    ast.cli("dialplan set global AGILOAD_GO 0");
    agid_server::add_dialplan(&ast, &dialplan(port, &spool));

    let mut ami = ast.control_ami();
    ami.send(featpkg_ami::action("Events", &[("EventMask", "user")]).unwrap())
        .unwrap();
    for _ in 0..CALLS {
        ami.originate(&[
            ("Channel", "Local/201@agiload/n"),
            ("Application", "Wait"),
            ("Data", "90"),
            ("Timeout", "60000"),
        ])
        .unwrap();
    }
    user_events(&mut ami, "AgiLoadReady", CALLS, Duration::from_secs(40));
    ast.cli("dialplan set global AGILOAD_GO 1");

    // While the calls wait for a digit, count the server's connections.
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until && most < CALLS {
        most = most.max(agid_server::tcp_sockets(port, "01"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = user_events(&mut ami, "AgiLoadDone", CALLS, Duration::from_secs(30));
    let overlap = overlap(&done);
    eprintln!(
        "{CALLS} calls: at most {most} connections on the server's port at once, AGI() steps all under way together for {overlap:.2} s"
    );
    ast.cli("dialplan set global AGILOAD_GO 0");

    let not_served: Vec<String> = done
        .iter()
        .filter(|m| m.get("Status") != Some("SUCCESS") || m.get("Served") != Some("1"))
        .map(|m| m.to_wire())
        .collect();
    assert!(
        not_served.is_empty(),
        "{} of {CALLS} calls were not served by featpkg-agid, e.g.:\n{}",
        not_served.len(),
        not_served.iter().take(3).cloned().collect::<String>()
    );
    let last_start = done
        .iter()
        .map(|m| seconds(m, "T0"))
        .fold(f64::MIN, f64::max);
    let first_end = done
        .iter()
        .map(|m| seconds(m, "T1"))
        .fold(f64::MAX, f64::min);
    assert!(
        first_end - last_start >= 1.0,
        "the {CALLS} AGI() steps overlap for {:.2} s only",
        first_end - last_start
    );
    assert!(
        most >= CALLS,
        "at most {most} connections were established on featpkg-agid's port at once"
    );
    let log =
        std::fs::read_to_string(scratch.path().join(format!("featpkg-agid-{port}.log"))).unwrap();
    assert!(
        !log.contains("refused"),
        "featpkg-agid refused calls:\n{}",
        asterisk::tail(&log, 20)
    );
    drop(server);
}

//! What the two watchers cost on a real Asterisk: `featpkg-busy-callback-watch`
//! and `featpkg-conference-guest-watch`, installed into the scratch Asterisk of
//! the real-Asterisk tests (tests/common/asterisk.rs) and started by their own
//! cron line, as the real tests start them.
//!
//! For each watcher, in one run:
//!
//! * **idle**: over a window with no calls (`FEATPKG_BENCH_IDLE_SECS`, default
//!   60), the CPU time it used (`/proc/PID/schedstat`, nanoseconds; `stat`'s
//!   utime+stime as well) and its context switches (every thread's
//!   `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches`: one per wakeup).
//!   Measured at the same time over the same window: an idle `sleep` (the
//!   floor of any process) and the *AMI floor*, this bench's own process
//!   logged in with the watcher's own AMI user and event filter and blocked
//!   reading its socket, so it wakes exactly for what Asterisk sends a watcher.
//!   The goal: the watcher wakes no more than the AMI floor (0 wakeups beyond
//!   the AMI socket).
//! * **memory**: `VmRSS` and `VmHWM` at the end of the idle window (goal ≤ 4 MB).
//! * **event to action**: many times over, the AMI event that calls for the
//!   watcher's action and Asterisk's first sign of that action, both as a
//!   listening AMI connection of this bench receives them:
//!   busy-callback — a request of 201 for 202 is waiting while 202 is in a
//!   call; 202 hangs up: from `DeviceStateChange PJSIP/202 NOT_INUSE` to the
//!   `Newchannel` of the callback to 201 (the Originate executing);
//!   conference-guest — from the first employee's `ConfbridgeJoin` to the
//!   `Newchannel` of the guest's leg to the provider. Median and p95 in ms
//!   (goal < 50 ms). `FEATPKG_BENCH_RUNS` (default 20) sets the repetitions.
//!
//!     bash .ci/build-static && cargo bench --bench watchers
//!
//! Needs the real Asterisk (`FEATPKG_ASTERISK_PREFIX`) and the static build;
//! without either it says why and exits 0. Asserts nothing but that the
//! scenario happens.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::asterisk::{Asterisk, Daemon, PhoneMode};
use common::events::Events;
use featpkg_ami::{Ami, AmiError, Credentials, Message};

/// Set in the child process that is the AMI floor; its value is the
/// credentials file to log in with.
const FLOOR_ENV: &str = "FEATPKG_BENCH_AMI_FLOOR";
const WAIT: Duration = Duration::from_secs(15);
const RSS_GOAL_KB: u64 = 4 * 1024;
const LATENCY_GOAL_MS: f64 = 50.0;

fn main() {
    if let Some(creds) = std::env::var_os(FLOOR_ENV) {
        ami_floor(Path::new(&creds));
        return;
    }
    if std::env::var_os("FEATPKG_ASTERISK_PREFIX").is_none() {
        println!(
            "watchers: skipped: needs the real Asterisk (set FEATPKG_ASTERISK_PREFIX to a \
             prefix built by .ci/setup-asterisk)"
        );
        return;
    }
    let bins = common::repo().join("target/x86_64-unknown-linux-musl/release");
    for name in [
        "featpkg-busy-callback-watch",
        "featpkg-conference-guest-watch",
    ] {
        if !bins.join(name).is_file() {
            println!(
                "watchers: skipped: {} is missing: run `bash .ci/build-static` first",
                bins.join(name).display()
            );
            return;
        }
    }
    let idle = Duration::from_secs(env_number("FEATPKG_BENCH_IDLE_SECS", 60).max(1));
    let runs = env_number("FEATPKG_BENCH_RUNS", 20).max(1) as usize;
    let mut ast = Asterisk::start();
    ast.reset();
    println!(
        "watchers on Asterisk {}: idle window {} s, {runs} runs of each reaction",
        common::asterisk::prefix().display(),
        idle.as_secs()
    );
    let busy = busy_callback(&mut ast, idle, runs);
    ast.reset();
    let guest = conference_guest(&mut ast, idle, runs);
    println!();
    busy.print("featpkg-busy-callback-watch");
    guest.print("featpkg-conference-guest-watch");
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The AMI floor: logs in as the watcher does (its credentials, events
/// `call`) and blocks reading; prints `ready`, then one line per event.
fn ami_floor(creds: &Path) {
    let creds = Credentials::load(creds).expect("the watcher's AMI credentials");
    let mut ami = Ami::connect(&creds, "call", Duration::from_secs(5)).expect("AMI login");
    println!("ready");
    loop {
        match ami.next_event(Duration::from_secs(24 * 3600)) {
            Ok(_) => println!("event"),
            Err(AmiError::Timeout) => {}
            Err(_) => return,
        }
    }
}

/// One process's counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_ns: u64,
    ticks: u64,
    switches: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn status_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn counters(pid: u32) -> Counters {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
    let mut c = Counters {
        rss_kb: status_field(&status, "VmRSS:"),
        hwm_kb: status_field(&status, "VmHWM:"),
        ..Counters::default()
    };
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime, stime are 14, 15.
    if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
        let f: Vec<&str> = rest.split(' ').collect();
        c.ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    }
    for task in std::fs::read_dir(proc.join("task")).into_iter().flatten() {
        let task = task.unwrap().path();
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        c.switches += status_field(&status, "voluntary_ctxt_switches:")
            + status_field(&status, "nonvoluntary_ctxt_switches:");
        let sched = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
        c.cpu_ns += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    c
}

/// What a process did over the idle window.
#[derive(Debug, Clone, Copy, Default)]
struct Idle {
    cpu_ns: u64,
    ticks: u64,
    switches: u64,
    end: Counters,
}

fn idle_between(a: Counters, b: Counters) -> Idle {
    Idle {
        cpu_ns: b.cpu_ns.saturating_sub(a.cpu_ns),
        ticks: b.ticks.saturating_sub(a.ticks),
        switches: b.switches.saturating_sub(a.switches),
        end: b,
    }
}

/// A watcher's figures from one run.
#[derive(Debug, Default)]
struct Report {
    window: Duration,
    watcher: Idle,
    floor: Idle,
    sleep: Idle,
    events: usize,
    reaction: &'static str,
    latencies_ms: Vec<f64>,
    /// The watcher's VmHWM once the reactions are over.
    hwm_after_kb: u64,
}

impl Report {
    fn print(&self, name: &str) {
        let secs = self.window.as_secs_f64();
        let line = |who: &str, i: &Idle| {
            println!(
                "  {who:<22} {:>6} wakeups ({:>6.2}/s)  CPU {:>8.3} ms ({} ticks)  RSS {:>6} kB  HWM {:>6} kB",
                i.switches,
                i.switches as f64 / secs,
                i.cpu_ns as f64 / 1e6,
                i.ticks,
                i.end.rss_kb,
                i.end.hwm_kb
            )
        };
        println!("{name}: idle {:.0} s", secs);
        line("watcher", &self.watcher);
        line("AMI floor", &self.floor);
        line("sleep", &self.sleep);
        let beyond = self.watcher.switches as i64 - self.floor.switches as i64;
        println!(
            "  AMI events to the watcher's user in the window: {}; wakeups beyond the AMI socket: {beyond} (goal 0); CPU {:.3} ms/min (AMI floor {:.3} ms/min)",
            self.events,
            self.watcher.cpu_ns as f64 / 1e6 * 60.0 / secs,
            self.floor.cpu_ns as f64 / 1e6 * 60.0 / secs
        );
        let peak = self.watcher.end.hwm_kb.max(self.hwm_after_kb);
        println!(
            "  RSS {} kB idle, peak {} kB after the reactions: {:.2}x the 4 MB goal",
            self.watcher.end.rss_kb,
            peak,
            peak as f64 / RSS_GOAL_KB as f64
        );
        let mut l = self.latencies_ms.clone();
        l.sort_by(f64::total_cmp);
        if l.is_empty() {
            return;
        }
        let pick = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} runs ({:.2}x the 50 ms goal at p95)",
            self.reaction,
            pick(0.5),
            pick(0.95),
            l[l.len() - 1],
            l.len(),
            pick(0.95) / LATENCY_GOAL_MS
        );
    }
}

/// Starts the AMI floor with `creds`; returns it and its event count.
fn start_floor(creds: &Path) -> (Child, Arc<AtomicUsize>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(FLOOR_ENV, creds)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the AMI floor");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the AMI floor did not log in");
    let events = Arc::new(AtomicUsize::new(0));
    let seen = events.clone();
    std::thread::spawn(move || {
        for _ in out.lines().map_while(Result::ok) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (child, events)
}

/// Measures the watcher `pid`, the AMI floor and an idle `sleep` over `window`.
fn measure_idle(pid: u32, creds: &Path, window: Duration) -> Report {
    let (mut floor, events) = start_floor(creds);
    let mut sleep = Command::new("sleep").arg("100000").spawn().unwrap();
    // Let every start-up settle before the window opens.
    std::thread::sleep(Duration::from_secs(2));
    let ids = [pid, floor.id(), sleep.id()];
    let before: Vec<Counters> = ids.iter().map(|&p| counters(p)).collect();
    let events_before = events.load(Ordering::SeqCst);
    std::thread::sleep(window);
    let after: Vec<Counters> = ids.iter().map(|&p| counters(p)).collect();
    let report = Report {
        window,
        watcher: idle_between(before[0], after[0]),
        floor: idle_between(before[1], after[1]),
        sleep: idle_between(before[2], after[2]),
        events: events.load(Ordering::SeqCst) - events_before,
        ..Report::default()
    };
    for child in [&mut floor, &mut sleep] {
        let _ = child.kill();
        let _ = child.wait();
    }
    report
}

fn install(ast: &Asterisk, feature: &str, sets: &[&str]) -> Daemon {
    let bundle = common::bundle();
    let mut args = vec!["install", bundle.to_str().unwrap(), "--features", feature];
    for s in sets {
        args.extend(["--set", s]);
    }
    ast.featpkg_ok(&args);
    let log = ast.log_dir().join(format!("featpkg-{feature}.log"));
    let _ = std::fs::remove_file(&log);
    let daemon = ast.start_cron_command(feature);
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("connected to Asterisk")
    {
        assert!(
            Instant::now() < deadline,
            "the {feature} watcher did not connect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

fn hang_up_all(ast: &Asterisk, ctl: &mut Ami, devices: &[&str]) {
    ast.cli("channel request hangup all");
    for d in devices {
        ast.wait_device_state(ctl, d, "NOT_INUSE", WAIT);
    }
}

/// Waits for the first event at or after `from` that `pred` accepts; on
/// failure shows the watcher's log `log`.
fn wait_for(
    ev: &mut Events,
    from: usize,
    what: &str,
    log: &Path,
    pred: impl Fn(&Message) -> bool,
) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(&i) = ev.all(from, &pred).first() {
            return i;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!(
                "no {what} within {WAIT:?}; the watcher's log:\n{}",
                common::asterisk::tail(&text, 30)
            );
        }
        ev.pump(Duration::from_millis(20));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn newchannel(prefix: &'static str) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("Newchannel") && m.get("Channel").is_some_and(|c| c.starts_with(prefix))
    }
}

fn device_state(device: &'static str, state: &'static str) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("DeviceStateChange")
            && m.get("Device") == Some(device)
            && m.get("State") == Some(state)
    }
}

/// Writes a waiting request of `caller` for `callee` into the store as the
/// AGI program would (the store's file format; temp file + rename).
fn write_request(store: &Path, caller: &str, callee: &str) {
    std::fs::create_dir_all(store).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tmp = store.join(format!(".{caller}-{callee}.tmp"));
    std::fs::write(&tmp, format!("{caller} {callee} {now} 0 0 waiting 0\n")).unwrap();
    std::fs::rename(&tmp, store.join(format!("{caller}-{callee}.req"))).unwrap();
}

fn busy_callback(ast: &mut Asterisk, idle: Duration, runs: usize) -> Report {
    let mut daemon = install(
        ast,
        "busy-callback",
        &["busy-callback.tech=PJSIP", "busy-callback.ring=10"],
    );
    let creds = ast.etc().join("featpkg-ami/busy-callback.conf");
    let mut report = measure_idle(daemon.child.id(), &creds, idle);
    report.reaction = "DeviceStateChange NOT_INUSE -> callback Originate (Newchannel)";
    let store = ast.spool().join("featpkg/busy-callback");
    let log = ast.log_dir().join("featpkg-busy-callback.log");
    let mut ctl = ast.control_ami();
    let mut ev = Events::new(ast);
    for exten in ["201", "202"] {
        ast.set_phone(exten, PhoneMode::Answer);
    }
    let mut early = 0;
    for _ in 0..runs {
        // 202 is in a call (and has settled in it) when 201's request comes.
        let m = ev.mark();
        ctl.originate(&[
            ("Channel", "PJSIP/202"),
            ("Application", "Wait"),
            ("Data", "60"),
        ])
        .unwrap();
        ev.wait(m, "202 in a call", WAIT, device_state("PJSIP/202", "INUSE"));
        ev.pump(Duration::from_millis(500));
        let m = ev.mark();
        write_request(&store, "201", "202");
        // The watcher has seen the request and that 202 is busy.
        ev.pump(Duration::from_millis(500));
        if !ev.all(m, newchannel("PJSIP/201-")).is_empty() {
            // A state change of 202 that the bench did not cause (the
            // device flapped): not a measurement.
            early += 1;
            hang_up_all(ast, &mut ctl, &["PJSIP/201", "PJSIP/202"]);
            let _ = std::fs::remove_file(store.join("201-202.req"));
            ev.pump(Duration::from_millis(300));
            continue;
        }
        let m = ev.mark();
        ast.cli("channel request hangup all");
        let free = ev.wait(m, "202 free", WAIT, device_state("PJSIP/202", "NOT_INUSE"));
        let call = wait_for(
            &mut ev,
            m,
            "callback to 201",
            &log,
            newchannel("PJSIP/201-"),
        );
        report.latencies_ms.push(ms(ev.at(call) - ev.at(free)));
        // The callback rings 201, which answers; the dial context rings 202.
        ev.pump(Duration::from_millis(300));
        hang_up_all(ast, &mut ctl, &["PJSIP/201", "PJSIP/202"]);
        let _ = std::fs::remove_file(store.join("201-202.req"));
        ev.pump(Duration::from_millis(300));
    }
    report.hwm_after_kb = counters(daemon.child.id()).hwm_kb;
    if early > 0 {
        println!("busy-callback: {early} runs left out: the callback came before 202 hung up");
    }
    daemon.kill();
    report
}

fn conference_guest(ast: &mut Asterisk, idle: Duration, runs: usize) -> Report {
    let mut daemon = install(
        ast,
        "conference-guest",
        &[
            "conference-guest.conference=700",
            "conference-guest.provider=provider",
            "conference-guest.number=5551234",
            "conference-guest.tech=PJSIP",
            "conference-guest.ring=10",
        ],
    );
    ast.set_phone("5551234", PhoneMode::Answer);
    let creds = ast.etc().join("featpkg-ami/conference-guest.conf");
    let mut report = measure_idle(daemon.child.id(), &creds, idle);
    report.reaction = "ConfbridgeJoin -> guest leg Originate (Newchannel)";
    let log = ast.log_dir().join("featpkg-conference-guest.log");
    let mut ctl = ast.control_ami();
    let mut ev = Events::new(ast);
    for _ in 0..runs {
        let m = ev.mark();
        ast.call(&mut ctl, "201", "700");
        let join = ev.wait(m, "201 in conference 700", WAIT, |m| {
            m.event() == Some("ConfbridgeJoin")
                && m.get("Conference") == Some("700")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/201-"))
        });
        let leg = wait_for(&mut ev, m, "guest leg", &log, newchannel("PJSIP/provider-"));
        report.latencies_ms.push(ms(ev.at(leg) - ev.at(join)));
        ev.pump(Duration::from_millis(300));
        hang_up_all(ast, &mut ctl, &["PJSIP/201"]);
        // The watcher has seen the conference empty before the next join.
        ev.pump(Duration::from_millis(500));
    }
    report.hwm_after_kb = counters(daemon.child.id()).hwm_kb;
    daemon.kill();
    report
}

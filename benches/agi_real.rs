//! What one AGI call costs through a real Asterisk 22: `AGI()` in the
//! dialplan, Asterisk forking the program (or connecting to the FastAGI
//! server), the whole exchange, and Asterisk reaping it.
//!
//! Needs the scratch Asterisk of the real-Asterisk tests
//! (`FEATPKG_ASTERISK_PREFIX`, see tests/common/asterisk.rs) and the static
//! binaries; without them it says why and exits 0.
//!
//!     bash .ci/build-static && cargo bench --bench agi_real
//!
//! Every contender does exactly the exchange `featpkg-operator-alert play`
//! does for an operator without a message (the issue's exchange): read the
//! environment block, `DATABASE GET agibench 201` (not there: `200
//! result=0`), `SET VARIABLE OPERATOR_ALERT_PLAYED 0`:
//!
//! * `C floor`: a tiny C program doing only that, compiled here with
//!   `musl-gcc -static` (or `gcc -static`): the cheapest program Asterisk can
//!   fork per call;
//! * `per-call`: the shipped static `featpkg-operator-alert play`;
//! * `FastAGI`: the shipped `featpkg-agid` serving the same program on
//!   127.0.0.1 (`AGI(agi://127.0.0.1:<port>/featpkg-operator-alert,…)`); it
//!   also sets `FEATPKG_AGI_SERVED`, one command more than the others;
//! * `Python FastAGI`: a minimal threaded FastAGI server in Python doing the
//!   exchange, the issue's reference for what FastAGI reaches;
//! * `PHP`: the same exchange as a PHP script (what MikoPBX and FreePBX ship).
//!
//! How it is timed: the cost of one `AGI()` is a few milliseconds at most,
//! well below what an AMI round trip or a channel set-up varies by, so a call
//! per originate would mostly measure those. Instead one Local channel per
//! batch runs `AGI()` [`BATCH`] times in a dialplan loop and takes
//! Asterisk's own clock (`STRFTIME(,,%s.%6q)`, microseconds) before the
//! first and after the last; a `UserEvent` brings both to the bench. Nothing
//! is subtracted: the loop's own dialplan steps (a few `Set`s, an `ExecIf`
//! that counts calls whose `AGISTATUS` or variables are wrong, a `GotoIf`)
//! are the same for everyone, and the `no AGI` line shows what they cost
//! alone. Batches go round-robin (the order rotating each round), so
//! machine noise hits every contender alike; one batch each first warms up
//! page cache, PHP and the server.
//!
//! `FEATPKG_BENCH_CALLS` (default 400) sets the calls per contender;
//! `FEATPKG_BENCH_AGID_BASELINE=<another featpkg-agid build>` adds that build
//! as one more contender (a before/after in one run). Prints
//! ms per call (total over all batches, and the median batch) and the ratio
//! to the C floor; panics if any call's `AGISTATUS` or variables were wrong.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "../tests/common/agid_server.rs"]
mod agid_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::asterisk::Asterisk;

/// `AGI()` calls per Local channel.
const BATCH: usize = 20;

/// Where the exchange looks: nothing is ever stored there.
const FAMILY: &str = "agibench";

/// The whole exchange in C: read the block, two commands, each reply read.
const C_AGI: &str = r#"#include <stdio.h>
#include <string.h>
int main(void) {
    char line[8192];
    while (fgets(line, sizeof line, stdin) && strcmp(line, "\n") != 0) {}
    fputs("DATABASE GET agibench 201\n", stdout); fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    fputs("SET VARIABLE OPERATOR_ALERT_PLAYED 0\n", stdout); fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;
    return 0;
}
"#;

/// The same exchange in PHP.
const PHP_AGI: &str = r#"<?php
$in = fopen('php://stdin', 'r');
$out = fopen('php://stdout', 'w');
while (($line = fgets($in)) !== false && $line !== "\n") {}
fwrite($out, "DATABASE GET agibench 201\n"); fflush($out); fgets($in);
fwrite($out, "SET VARIABLE OPERATOR_ALERT_PLAYED 0\n"); fflush($out); fgets($in);
"#;

/// A minimal FastAGI server in Python doing the same exchange (the issue's
/// reference for what FastAGI can reach), one thread per connection.
const PYTHON_FASTAGI: &str = r#"import socketserver, sys
class Call(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            if line == b"\n":
                break
        self.wfile.write(b"DATABASE GET agibench 201\n"); self.rfile.readline()
        self.wfile.write(b"SET VARIABLE OPERATOR_ALERT_PLAYED 0\n"); self.rfile.readline()
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
Server(("127.0.0.1", int(sys.argv[1])), Call).serve_forever()
"#;

/// One contender: its name, context suffix, the `AGI()` line (none for the
/// dialplan alone) and what `${AGISTATUS}${OPERATOR_ALERT_PLAYED}${FEATPKG_AGI_SERVED}`
/// must be after each call.
struct Contender {
    name: &'static str,
    key: &'static str,
    app: Option<String>,
    expect: &'static str,
}

fn main() {
    if let Some(why) = missing() {
        eprintln!("agi_real: skipped: {why}");
        return;
    }
    let calls: usize = std::env::var("FEATPKG_BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400)
        .max(BATCH);
    let rounds = calls.div_ceil(BATCH);
    let scratch = tempfile::tempdir().unwrap();
    let c_agi = compile_c_floor(scratch.path());
    let php_agi = scratch.path().join("agibench.php");
    let php = which("php").expect("php");
    std::fs::write(&php_agi, format!("#!{}\n{PHP_AGI}", php.display())).unwrap();
    make_executable(&php_agi);

    let ast = Asterisk::start();
    let spool = ast.spool().join("featpkg");
    std::fs::create_dir_all(spool.join("operator-alert")).unwrap();
    let port = agid_server::free_port();
    let _server = agid_server::start_agid(port, scratch.path(), &spool, &[]);
    let python_port = agid_server::free_port();
    let _python = start_python_fastagi(python_port);
    let mut contenders = contenders(&c_agi, &php_agi, port, python_port, &spool);
    let baseline = std::env::var_os("FEATPKG_BENCH_AGID_BASELINE").map(PathBuf::from);
    let baseline_port = agid_server::free_port();
    let _baseline = baseline.map(|binary| {
        let server =
            agid_server::start_agid_binary(&binary, baseline_port, scratch.path(), &spool, &[]);
        let agid = &contenders[2];
        let app = agid
            .app
            .as_ref()
            .unwrap()
            .replace(&format!(":{port}/"), &format!(":{baseline_port}/"));
        contenders.insert(
            3,
            Contender {
                name: "featpkg-agid (FEATPKG_BENCH_AGID_BASELINE)",
                key: "baseline",
                app: Some(app),
                expect: agid.expect,
            },
        );
        server
    });
    agid_server::add_dialplan(&ast, &contenders.iter().map(context).collect::<String>());

    let mut ami = ast.control_ami();
    ami.send(featpkg_ami::action("Events", &[("EventMask", "user")]).unwrap())
        .unwrap();
    for c in &contenders {
        batch(&mut ami, c); // warm-up
    }
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for i in 0..contenders.len() {
            let c = &contenders[(i + round) % contenders.len()];
            times.entry(c.name).or_default().push(batch(&mut ami, c));
        }
    }
    report(&contenders, &times, rounds * BATCH);
}

/// Why the bench cannot run here, if it cannot.
fn missing() -> Option<String> {
    let Some(prefix) = std::env::var_os("FEATPKG_ASTERISK_PREFIX") else {
        return Some(
            "it needs the real Asterisk: set FEATPKG_ASTERISK_PREFIX (the prefix .ci/setup-asterisk prints)"
                .into(),
        );
    };
    let asterisk = Path::new(&prefix).join("sbin/asterisk");
    if !asterisk.is_file() {
        return Some(format!("{} is missing", asterisk.display()));
    }
    for bin in [agid_server::static_agid(), static_operator_alert()] {
        if !bin.is_file() {
            return Some(format!(
                "{} is missing: run `bash .ci/build-static` first",
                bin.display()
            ));
        }
    }
    if which("musl-gcc").is_none() && which("gcc").is_none() {
        return Some("neither musl-gcc nor gcc is installed (the C floor)".into());
    }
    if which("python3").is_none() {
        return Some("python3 is not installed (the reference FastAGI server)".into());
    }
    if which("php").is_none() {
        return Some("php (php-cli) is not installed".into());
    }
    None
}

fn static_operator_alert() -> PathBuf {
    common::repo().join("target/x86_64-unknown-linux-musl/release/featpkg-operator-alert")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The C floor, static: musl-gcc when there is one, else gcc.
fn compile_c_floor(dir: &Path) -> PathBuf {
    let source = dir.join("agibench.c");
    let binary = dir.join("agibench-c");
    std::fs::write(&source, C_AGI).unwrap();
    let compiler = if which("musl-gcc").is_some() {
        "musl-gcc"
    } else {
        "gcc"
    };
    let out = Command::new(compiler)
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{compiler} -static failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// The Python reference server on `port`; waits until it listens.
fn start_python_fastagi(port: u16) -> common::asterisk::Daemon {
    let child = Command::new("python3")
        .arg("-c")
        .arg(PYTHON_FASTAGI)
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let until = std::time::Instant::now() + Duration::from_secs(15);
    // Not probed by connecting: that would be a call it fails on.
    while agid_server::tcp_sockets(port, "0A") == 0 {
        assert!(std::time::Instant::now() < until, "python3 does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    common::asterisk::Daemon { child }
}

fn contenders(
    c_agi: &Path,
    php_agi: &Path,
    port: u16,
    python_port: u16,
    spool: &Path,
) -> Vec<Contender> {
    let args = format!(
        "play,family={FAMILY},pattern=_XXX,dir={}/operator-alert,deadline=5",
        spool.display()
    );
    vec![
        Contender {
            name: "C floor (static, per call)",
            key: "c",
            app: Some(format!("AGI({},{args})", c_agi.display())),
            expect: "SUCCESS0",
        },
        Contender {
            name: "featpkg-operator-alert (per call)",
            key: "ours",
            app: Some(format!("AGI({},{args})", static_operator_alert().display())),
            expect: "SUCCESS0",
        },
        Contender {
            name: "featpkg-agid (FastAGI)",
            key: "agid",
            app: Some(format!(
                "AGI(agi://127.0.0.1:{port}/featpkg-operator-alert,{args})"
            )),
            expect: "SUCCESS01",
        },
        Contender {
            name: "Python FastAGI server (reference)",
            key: "python",
            app: Some(format!(
                "AGI(agi://127.0.0.1:{python_port}/agibench,{args})"
            )),
            expect: "SUCCESS0",
        },
        Contender {
            name: "PHP script (per call)",
            key: "php",
            app: Some(format!("AGI({},{args})", php_agi.display())),
            expect: "SUCCESS0",
        },
        Contender {
            name: "no AGI (the loop alone)",
            key: "none",
            app: None,
            expect: "",
        },
    ]
}

/// The contender's context: exten 201 (an operator per `_XXX`) runs its
/// `AGI()` [`BATCH`] times between two readings of Asterisk's clock.
fn context(c: &Contender) -> String {
    let check = match &c.app {
        Some(app) => format!(
            " same => n,{app}\n same => n,ExecIf($[\"${{AGISTATUS}}${{OPERATOR_ALERT_PLAYED}}${{FEATPKG_AGI_SERVED}}\" != \"{}\"]?Set(BAD=$[${{BAD}}+1]))\n",
            c.expect
        ),
        None => " same => n,ExecIf($[\"${OPERATOR_ALERT_PLAYED}\" != \"\"]?Set(BAD=$[${BAD}+1]))\n"
            .to_string(),
    };
    format!(
        "[agibench-{key}]\n\
         exten => 201,1,Set(I=0)\n \
         same => n,Set(BAD=0)\n \
         same => n,Set(T0=${{STRFTIME(,,%s.%6q)}})\n \
         same => n(loop),Set(OPERATOR_ALERT_PLAYED=)\n \
         same => n,Set(FEATPKG_AGI_SERVED=)\n\
         {check} \
         same => n,Set(I=$[${{I}}+1])\n \
         same => n,GotoIf($[${{I}} < {BATCH}]?loop)\n \
         same => n,Set(T1=${{STRFTIME(,,%s.%6q)}})\n \
         same => n,UserEvent(AgiBench,Who: {key},Calls: ${{I}},Bad: ${{BAD}},T0: ${{T0}},T1: ${{T1}})\n \
         same => n,Hangup()\n\n",
        key = c.key
    )
}

/// Runs one batch of `c`; returns its seconds per call.
fn batch(ami: &mut featpkg_ami::Ami, c: &Contender) -> f64 {
    ami.originate(&[
        ("Channel", &format!("Local/201@agibench-{}/n", c.key)),
        ("Application", "Wait"),
        ("Data", "1"),
        ("Timeout", "300000"),
    ])
    .unwrap();
    let event = ami
        .wait_event(Duration::from_secs(300), |m| {
            m.event() == Some("UserEvent")
                && m.get("UserEvent") == Some("AgiBench")
                && m.get("Who") == Some(c.key)
        })
        .unwrap_or_else(|e| panic!("no batch of {} ended: {e}", c.name));
    let field = |k: &str| event.get(k).unwrap_or_default().to_string();
    assert_eq!(field("Calls"), BATCH.to_string(), "{}", c.name);
    assert_eq!(
        field("Bad"),
        "0",
        "{}: calls whose AGISTATUS or variables were wrong",
        c.name
    );
    let t0: f64 = field("T0").parse().expect("T0");
    let t1: f64 = field("T1").parse().expect("T1");
    (t1 - t0) / BATCH as f64
}

fn report(contenders: &[Contender], times: &BTreeMap<&str, Vec<f64>>, calls: usize) {
    let mean = |name: &str| {
        let t = &times[name];
        t.iter().sum::<f64>() / t.len() as f64
    };
    let median = |name: &str| {
        let mut t = times[name].clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let floor = mean(contenders[0].name);
    println!(
        "AGI per call on the real Asterisk 22, {calls} calls each in batches of {BATCH}, interleaved:"
    );
    println!(
        "{:<44} {:>10} {:>14} {:>10}",
        "", "ms/call", "median batch", "vs C floor"
    );
    for c in contenders {
        println!(
            "{:<44} {:>10.3} {:>14.3} {:>9.3}x",
            c.name,
            mean(c.name) * 1e3,
            median(c.name) * 1e3,
            mean(c.name) / floor
        );
    }
}

//! What one call pays for an AGI program: Asterisk forks and execs it for every
//! call (reference/asterisk.md §1.1), so its start-up cost is per call.
//!
//! Runs the shipped static `featpkg-operator-alert` in `play` mode through a whole
//! conversation (the real `agi_*` environment block, `DATABASE GET`, `SET
//! VARIABLE`, with Asterisk's replies fed from a file, as in reference §6) and
//! compares it, in the same run, with two baselines doing the same on the same
//! stdin: `/bin/true` (a do-nothing program, dynamically linked like most of
//! what runs in agi-bin, so it also pays the loader: ours is static and may beat
//! it) and the same conversation as a plain Perl script (the cheapest of the
//! scripting AGIs in reference §6).
//!
//! It also runs the same call through the shipped `featpkg-agid` (FastAGI mode):
//! the bench plays Asterisk's side over a loopback connection (the network
//! block, then each reply once its command came), as Asterisk does instead of
//! forking, and reports it against the per-call program in the same run.
//!
//!     bash .ci/build-static && cargo bench --bench agi_start
//!
//! Prints the median wall time per run of each and the ratios; asserts nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

const PERL_AGI: &str = r#"$|=1; while (<STDIN>) { last if $_ eq "\n"; }
print "DATABASE GET op_alert 201\n"; my $r = <STDIN>;
print "SET VARIABLE OPERATOR_ALERT_PLAYED 0\n"; $r = <STDIN>; exit 0;"#;

/// Asterisk's environment block for a call to 201 in the no-answer context, then
/// its replies: the operator has no message (`DATABASE GET` → 0), `SET VARIABLE` → 1.
fn conversation() -> String {
    let env = [
        (
            "agi_request",
            "/var/lib/asterisk/agi-bin/featpkg-operator-alert",
        ),
        ("agi_channel", "PJSIP/202-00000001"),
        ("agi_language", "en"),
        ("agi_type", "PJSIP"),
        ("agi_uniqueid", "1700000000.1"),
        ("agi_version", "20.5.0"),
        ("agi_callerid", "202"),
        ("agi_calleridname", "Reception"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "201"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "featpkg-operator-alert-noanswer"),
        ("agi_extension", "201"),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "140000000000000"),
        ("agi_arg_1", "play"),
    ];
    let mut text: String = env.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    text.push('\n');
    text.push_str("200 result=0\n200 result=1\n");
    text
}

fn median_run(program: &Path, args: &[&str], stdin_file: &Path) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let stdin = std::fs::File::open(stdin_file).expect("stdin file");
            let start = Instant::now();
            let status = Command::new(program)
                .args(args)
                .stdin(stdin)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            let took = start.elapsed();
            assert!(status.success(), "{} failed: {status}", program.display());
            took
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

/// One FastAGI call to featpkg-agid on `port`: `block` sent, each command
/// answered, until the server closes.
fn fastagi_call(port: u16, block: &str) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("featpkg-agid listens");
    stream.set_nodelay(true).unwrap();
    stream.write_all(block.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let reply: &[u8] = if line.starts_with("DATABASE GET") {
            b"200 result=0\n"
        } else {
            b"200 result=1\n"
        };
        stream.write_all(reply).unwrap();
    }
    start.elapsed()
}

/// Starts featpkg-agid on a free port; returns it and the port.
fn start_agid(agid: &Path, dir: &Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(agid)
        .args(["--port", &port.to_string(), "--spool"])
        .arg(dir)
        .arg("--lock")
        .arg(dir.join("agid.lock"))
        .arg("--log")
        .arg(dir.join("agid.log"))
        .spawn()
        .expect("featpkg-agid starts");
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "featpkg-agid does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

/// The median FastAGI call: `conversation`'s block with the FastAGI header
/// and `args` as `agi_arg_N`.
fn median_fastagi(agid: &Path, dir: &Path, args: &[&str]) -> Duration {
    let (mut child, port) = start_agid(agid, dir);
    let local = conversation();
    let env = local.split("\nagi_arg_1").next().unwrap();
    let mut block =
        format!("agi_network: yes\nagi_network_script: featpkg-operator-alert\n{env}\n");
    for (i, a) in args.iter().enumerate() {
        block.push_str(&format!("agi_arg_{}: {a}\n", i + 1));
    }
    block.push('\n');
    let mut times: Vec<Duration> = (0..RUNS).map(|_| fastagi_call(port, &block)).collect();
    let _ = child.kill();
    let _ = child.wait();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let agi = repo.join("target/x86_64-unknown-linux-musl/release/featpkg-operator-alert");
    assert!(
        agi.is_file(),
        "{} is missing: run `bash .ci/build-static` first",
        agi.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let stdin_file = dir.path().join("asterisk-says");
    std::fs::write(&stdin_file, conversation()).expect("write stdin");
    let recordings = dir.path().join("recordings");
    let dir_arg = format!("dir={}", recordings.display());

    let floor = median_run(Path::new("/bin/true"), &[], &stdin_file);
    let ours = median_run(&agi, &["play", "pattern=_XXX", &dir_arg], &stdin_file);
    let perl = median_run(Path::new("perl"), &["-e", PERL_AGI], &stdin_file);
    let agid = agi.with_file_name("featpkg-agid");
    let fast = median_fastagi(&agid, dir.path(), &["play", "pattern=_XXX", &dir_arg]);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("AGI start-up, median of {RUNS} runs each (same stdin, same machine, this run):");
    println!("  /bin/true (dynamic, does nothing)  {:7.3} ms", ms(floor));
    println!(
        "  featpkg-operator-alert play        {:7.3} ms   {:5.2}x /bin/true",
        ms(ours),
        ms(ours) / ms(floor)
    );
    println!(
        "  same conversation in plain Perl    {:7.3} ms   {:5.2}x /bin/true, {:5.2}x ours",
        ms(perl),
        ms(perl) / ms(floor),
        ms(perl) / ms(ours)
    );
    println!(
        "  featpkg-agid, FastAGI round trip   {:7.3} ms   {:5.2}x ours (per-call program)",
        ms(fast),
        ms(fast) / ms(ours)
    );
}

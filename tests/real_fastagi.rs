//! operator-alert in fastagi mode on the real scratch Asterisk: the same call
//! to an operator who did not answer (a flagged message, played as early
//! media) is served
//!
//! * by featpkg-agid, started from the cron line the install wrote: Asterisk
//!   runs `AGI(agi://127.0.0.1:<port>/featpkg-operator-alert,play,…)`, the
//!   message plays, and the per-call program is never started;
//! * by the per-call program once the server is down: the FastAGI
//!   connection fails, and the dialplan's fallback runs the program, which
//!   plays the message;
//! * by the per-call program when the server is killed in the middle of a
//!   call (Asterisk reports that FastAGI call as a success: the fallback
//!   goes by the variable the server sets only once it served the call).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::agid::{free_port, start_agid};
use common::asterisk::{self, Asterisk};

const WAIT: Duration = Duration::from_secs(15);
const CONTEXT: &str = "featpkg-operator-alert-noanswer";

/// Installs operator-alert in fastagi mode on `port`, with a message for 203.
fn install(ast: &Asterisk, port: u16) -> PathBuf {
    ast.cli("database deltree op_alert");
    let bundle = common::bundle();
    ast.featpkg_ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "operator-alert",
        "--set",
        "operator-alert.agi_mode=fastagi",
        "--set",
        &format!("operator-alert.agid_port={port}"),
    ]);
    let dir = ast.spool().join("featpkg/operator-alert");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("203.wav"), wav_of_silence(1)).unwrap();
    ast.cli("database put op_alert 203 1");
    dir
}

/// A valid 8 kHz 16-bit mono WAV of `seconds` of silence.
fn wav_of_silence(seconds: u32) -> Vec<u8> {
    let data = 8000 * 2 * seconds;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.resize(out.len() + data as usize, 0);
    out
}

/// An unanswered call reaches the no-answer destination of operator 203:
/// a Local channel whose PBX half (`;2`) runs the feature's dialplan. Returns
/// the log since `mark` once that half's dialplan ended.
fn unanswered_call(ast: &Asterisk, ami: &mut featpkg_ami::Ami, mark: usize) -> String {
    ami.originate(&[
        ("Channel", &format!("Local/203@{CONTEXT}")),
        ("Application", "Wait"),
        ("Data", "10"),
        ("Timeout", "10000"),
    ])
    .unwrap();
    ast.wait_log(mark, "the end of the no-answer dialplan", WAIT, |log| {
        log.contains(&format!("Executing [203@{CONTEXT}:4] Hangup("))
    })
}

fn played(log: &str, dir: &std::path::Path) -> bool {
    log.contains(&format!("Playing '{}", dir.join("203").display()))
}

#[test]
fn a_call_is_served_by_featpkg_agid_and_by_the_program_when_the_server_is_down() {
    let ast = asterisk::shared();
    let port = free_port();
    let dir = install(&ast, port);
    let mut ami = ast.ami();
    let url = format!("agi://127.0.0.1:{port}/featpkg-operator-alert");

    let mut server = start_agid(&ast, port);
    let mark = ast.log_mark();
    let log = unanswered_call(&ast, &mut ami, mark);
    assert!(
        log.contains(&format!("AGI Script {url} completed")),
        "not served over FastAGI:\n{}",
        asterisk::tail(&log, 40)
    );
    assert!(played(&log, &dir), "{}", asterisk::tail(&log, 40));
    assert!(
        !log.contains("Launched AGI Script"),
        "the per-call program ran although the server served the call:\n{}",
        asterisk::tail(&log, 40)
    );

    server.kill();
    let mark = ast.log_mark();
    let log = unanswered_call(&ast, &mut ami, mark);
    assert!(
        log.contains("FastAGI failed"),
        "{}",
        asterisk::tail(&log, 40)
    );
    assert!(
        log.contains("Launched AGI Script") && log.contains("featpkg-operator-alert"),
        "no fallback to the per-call program:\n{}",
        asterisk::tail(&log, 40)
    );
    assert!(played(&log, &dir), "{}", asterisk::tail(&log, 40));
}

#[test]
fn a_server_killed_mid_call_leaves_the_call_to_the_per_call_program() {
    let ast = asterisk::shared();
    let port = free_port();
    let dir = install(&ast, port);
    // A long message: the server is killed while it plays.
    std::fs::write(dir.join("203.wav"), wav_of_silence(4)).unwrap();
    let mut ami = ast.ami();
    let mut server = start_agid(&ast, port);
    let mark = ast.log_mark();
    ami.originate(&[
        ("Channel", &format!("Local/203@{CONTEXT}")),
        ("Application", "Wait"),
        ("Data", "20"),
        ("Timeout", "20000"),
    ])
    .unwrap();
    ast.wait_log(mark, "the message playing over FastAGI", WAIT, |log| {
        played(log, &dir)
    });
    server.kill();
    let log = ast.wait_log(mark, "the end of the no-answer dialplan", WAIT * 2, |log| {
        log.contains(&format!("Executing [203@{CONTEXT}:4] Hangup("))
    });
    assert!(
        log.contains("Launched AGI Script"),
        "no fallback after the server died mid-call:\n{}",
        asterisk::tail(&log, 60)
    );
    assert_eq!(
        log.matches(&format!("Playing '{}", dir.join("203").display()))
            .count(),
        2,
        "the message plays again from the per-call program:\n{}",
        asterisk::tail(&log, 60)
    );
}

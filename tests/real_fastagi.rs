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
//!
//! And an installed feature switched from process to fastagi mode and back
//! by installing again with another `agi_mode` (the dialplan, the server's
//! file and cron line follow; back in process mode the tree is the first
//! install's, byte for byte), then uninstalled to the tree it found.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The tree featpkg touches on this PBX: path -> bytes (a link: its target;
/// a directory: nothing) and mode.
fn snapshot(ast: &Asterisk) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(path: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        let name = path.display().to_string();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).unwrap();
            out.insert(name, (target.as_os_str().as_encoded_bytes().to_vec(), 0));
        } else if meta.is_dir() {
            out.insert(format!("{name}/"), (Vec::new(), mode));
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
        } else {
            out.insert(name, (std::fs::read(path).unwrap(), mode));
        }
    }
    let mut out = BTreeMap::new();
    for base in [
        ast.etc(),
        ast.sys_etc(),
        ast.spool(),
        ast.var_lib().join("agi-bin"),
        ast.var_lib().join("featpkg-bin"),
    ] {
        walk(&base, &mut out);
    }
    out
}

/// The no-answer context as Asterisk has it loaded now.
fn loaded_noanswer_context(ast: &Asterisk) -> String {
    ast.cli(&format!("dialplan show {CONTEXT}"))
}

/// operator-alert installed in process mode is switched to fastagi by
/// installing the same bundle again with `agi_mode=fastagi` (a change of
/// parameters): the live dialplan calls the server with the fallback, the
/// server's file and cron line appear, and a call is served by the server
/// that cron line starts. Switched back to process mode, the tree is byte for
/// byte what the first install made and the running server exits by itself
/// (its file is gone); the uninstall then leaves the tree as it was.
#[test]
fn switching_agi_mode_on_an_installed_feature_and_back_then_uninstalling() {
    let ast = asterisk::shared();
    ast.cli("database deltree op_alert");
    let before = snapshot(&ast);
    let bundle = common::bundle();
    let bundle = bundle.to_str().unwrap();
    let agid_file = ast
        .var_lib()
        .join("featpkg-bin/featpkg-agid.operator-alert");
    let program = ast.var_lib().join("agi-bin/featpkg-operator-alert");
    let per_call = format!("AGI({},play,", program.display());
    // Any cron line (crontab or cron.d) that starts the server.
    let has_agid_cron = |ast: &Asterisk| {
        snapshot(ast).iter().any(|(path, (bytes, _))| {
            path.starts_with(&ast.sys_etc().display().to_string())
                && String::from_utf8_lossy(bytes)
                    .lines()
                    .any(|l| !l.starts_with('#') && l.contains("featpkg-agid"))
        })
    };

    ast.featpkg_ok(&["install", bundle, "--features", "operator-alert"]);
    let process = snapshot(&ast);
    let dialplan = loaded_noanswer_context(&ast);
    assert!(
        dialplan.contains(&per_call) && !dialplan.contains("agi://"),
        "{dialplan}"
    );
    assert!(!agid_file.exists() && !has_agid_cron(&ast));

    let port = free_port();
    let url = format!("agi://127.0.0.1:{port}/featpkg-operator-alert");
    let out = ast.featpkg_ok(&[
        "install",
        bundle,
        "--features",
        "operator-alert",
        "--set",
        "operator-alert.agi_mode=fastagi",
        "--set",
        &format!("operator-alert.agid_port={port}"),
    ]);
    eprintln!("switch to fastagi:\n{out}");
    let dialplan = loaded_noanswer_context(&ast);
    for line in [
        "Set(FEATPKG_AGI_SERVED=)".to_string(),
        format!("AGI({url},play,"),
        format!("ExecIf($[\"${{FEATPKG_AGI_SERVED}}\" != \"1\"]?{per_call}"),
    ] {
        assert!(dialplan.contains(&line), "no {line} in:\n{dialplan}");
    }
    assert!(has_agid_cron(&ast), "no cron line starts featpkg-agid");
    let meta = std::fs::metadata(&agid_file).expect("the server's file");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read(&agid_file).unwrap(),
        std::fs::read(common::static_bin_dir().join("featpkg-agid")).unwrap(),
        "{} is not featpkg-agid",
        agid_file.display()
    );
    assert!(program.is_file(), "the per-call program stays installed");

    let dir = ast.spool().join("featpkg/operator-alert");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("203.wav"), wav_of_silence(1)).unwrap();
    ast.cli("database put op_alert 203 1");
    let mut server = start_agid(&ast, port);
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let log = unanswered_call(&ast, &mut ami, mark);
    assert!(
        log.contains(&format!("AGI Script {url} completed"))
            && played(&log, &dir)
            && !log.contains("Launched AGI Script"),
        "not served by featpkg-agid after the switch:\n{}",
        asterisk::tail(&log, 40)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    ast.cli("database deltree op_alert");

    let out = ast.featpkg_ok(&[
        "install",
        bundle,
        "--features",
        "operator-alert",
        "--set",
        "operator-alert.agi_mode=process",
    ]);
    eprintln!("switch back to process:\n{out}");
    // The server notices its file is gone (it checks every 5 s) and exits.
    let until = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < until,
            "featpkg-agid still runs after its file was removed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What featpkg wrote is the first install's. The server's run left its
    // lock in the spool (the test's message is gone already): take them out
    // first, they are the run's, not featpkg's.
    let run_spool = ast.spool().join("featpkg");
    let mut left: Vec<String> = std::fs::read_dir(&run_spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [format!("agid-{port}.lock")]);
    std::fs::remove_dir_all(&run_spool).unwrap();
    common::assert_same_tree(&process, &snapshot(&ast));
    let dialplan = loaded_noanswer_context(&ast);
    assert!(
        dialplan.contains(&per_call) && !dialplan.contains("agi://"),
        "{dialplan}"
    );

    assert!(!agid_file.exists() && !has_agid_cron(&ast));

    ast.featpkg_ok(&["uninstall", "operator-alert"]);
    common::assert_same_tree(&before, &snapshot(&ast));
}

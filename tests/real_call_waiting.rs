//! call-waiting on the real scratch Asterisk: a caller to an employee who is
//! already on a call hears a beep, then music on hold instead of ringback;
//! a caller to an idle employee hears neither. Over PJSIP (2XX) and IAX2
//! (3XX), with and without the `endpoints` option (device_state_busy_at),
//! and gone again after an uninstall.
//!
//! What the caller hears is read from Asterisk's own log (verbose 5), line by
//! line for the caller's PBX-side channel: `Progress`, `Playing 'beep.…'`,
//! `Dial(…,Ttm(default))` and "Started music on hold, class 'default'". The
//! PBX's dialplan builds the Dial options as MikoPBX's does (Tt, reset to Tt
//! on a transferred call, then `${DIAL_QUEUE_OPTIONS}`): the transfer keys stay.

mod common;

use std::time::Duration;

use common::asterisk::{self, Asterisk, PhoneMode, wait_user_event};

const WAIT: Duration = Duration::from_secs(10);
const HOOK: &str = "featpkg-call-waiting";

fn install(ast: &Asterisk, extra: &[&str]) -> String {
    let bundle = common::bundle();
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "call-waiting",
    ];
    args.extend_from_slice(extra);
    ast.featpkg_ok(&args)
}

/// Polls the log (from `mark`) until `done` accepts it; returns it.
fn wait_log(ast: &Asterisk, mark: usize, what: &str, done: impl Fn(&str) -> bool) -> String {
    ast.wait_log(mark, what, WAIT, done)
}

/// What one call from `from` to `dialled` did on the PBX, read from the log.
struct CallLog {
    /// The caller's PBX-side channel (`PJSIP/201-00000007`, `IAX2/301-1234`).
    channel: String,
    /// The log lines about that channel, in order.
    lines: Vec<String>,
}

impl CallLog {
    fn has(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }

    fn position(&self, needle: &str) -> Option<usize> {
        self.lines.iter().position(|l| l.contains(needle))
    }

    /// The `Dial(...)` line's arguments (`PJSIP/202,2,Ttm(default)`).
    fn dial_args(&self) -> String {
        let line = self
            .lines
            .iter()
            .find(|l| l.contains("] Dial(\""))
            .unwrap_or_else(|| panic!("{} never dialled:\n{}", self.channel, self.text()));
        let args = line
            .split(&format!("Dial(\"{}\", \"", self.channel))
            .nth(1)
            .unwrap();
        args[..args.find("\")").unwrap()].to_string()
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// Phone `from` calls `dialled`, which does not answer (`ring`): waits until
/// the PBX's Dial gave up (PbxDialStatus) and returns what the log says
/// about the caller's PBX-side channel.
fn call_and_read_log(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    from: &str,
    dialled: &str,
) -> CallLog {
    call_number_and_read_log(ast, ami, from, dialled, dialled)
}

/// As [`call_and_read_log`], with `number` keyed on the caller's phone
/// (`8202` reaches 202 as a transferred call).
fn call_number_and_read_log(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    from: &str,
    number: &str,
    dialled: &str,
) -> CallLog {
    let mark = ast.log_mark();
    ast.call(ami, from, number);
    let ring = wait_user_event(
        ami,
        "PhoneRing",
        &[("Exten", dialled), ("CallerIDNum", from)],
        WAIT,
    );
    let status = wait_user_event(ami, "PbxDialStatus", &[("Exten", dialled)], WAIT);
    assert_eq!(
        status.get("Status"),
        Some("NOANSWER"),
        "{ring:?} {status:?}"
    );
    let tech = if from.starts_with('3') {
        "IAX2"
    } else {
        "PJSIP"
    };
    // The PBX's [internal] starts with a Set() on the caller's channel.
    let start = format!("Executing [{number}@internal:1] Set(\"{tech}/{from}-");
    let log = wait_log(ast, mark, "PbxDialStatus", |log| {
        log.contains(&start) && log.contains("PbxDialStatus")
    });
    let at = log.find(&start).unwrap() + start.len() - format!("{tech}/{from}-").len();
    let channel = log[at..at + log[at..].find('"').unwrap()].to_string();
    // Up to and including the UserEvent that reported the dial status.
    let log = wait_log(ast, mark, "the caller's PbxDialStatus", |log| {
        log.contains(&format!("UserEvent(\"{channel}\", \"PbxDialStatus"))
    });
    let lines = log
        .lines()
        .filter(|l| l.contains(&channel))
        .map(str::to_string)
        .collect();
    CallLog { channel, lines }
}

/// Puts `callee` on a call with `other` (which calls, `callee` answers);
/// waits until the PBX sees `device` (the callee's device) in `state`.
fn put_on_a_call(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    other: &str,
    callee: &str,
    device: &str,
    state: &str,
) {
    ast.set_phone(callee, PhoneMode::Answer);
    ast.call(ami, other, callee);
    wait_user_event(
        ami,
        "PhoneAnswer",
        &[("Exten", callee)],
        Duration::from_secs(10),
    );
    ast.wait_device_state(ami, device, state, Duration::from_secs(5));
}

/// Asserts the caller heard the beep and then music on hold instead of ringback.
fn assert_beep_then_moh(call: &CallLog, dialled: &str, tech: &str) {
    let text = call.text();
    let progress = call
        .position(&format!("@{HOOK}:5] Progress(\"{}\"", call.channel))
        .unwrap_or_else(|| panic!("no Progress for {}:\n{text}", call.channel));
    let beep = call
        .position(&format!("<{}> Playing 'beep.", call.channel))
        .unwrap_or_else(|| panic!("no beep played to {}:\n{text}", call.channel));
    let dial = call.position("] Dial(\"").unwrap();
    let moh = call
        .position(&format!(
            "Started music on hold, class 'default', on channel '{}'",
            call.channel
        ))
        .unwrap_or_else(|| panic!("no music on hold for {}:\n{text}", call.channel));
    assert!(progress < beep && beep < dial && dial < moh, "{text}");
    assert_eq!(
        call.dial_args(),
        format!("{tech}/{dialled},2,Ttm(default)"),
        "the transfer keys (Tt) and music on hold: {text}"
    );
}

/// Asserts the caller heard neither a beep nor music on hold: plain ringback.
fn assert_plain_ringback(call: &CallLog, dialled: &str, tech: &str) {
    let text = call.text();
    assert!(!call.has("Progress("), "{text}");
    assert!(!call.has("Playing 'beep."), "{text}");
    assert!(!call.has("Started music on hold"), "{text}");
    assert_eq!(call.dial_args(), format!("{tech}/{dialled},2,Tt"), "{text}");
}

/// Over PJSIP: 202 on a call with 203, then 201 calls 202 → beep, then music
/// on hold; 202 free, 201 calls 202 → ringback as usual (the hook ran, found
/// 202 idle and returned).
#[test]
fn pjsip_a_caller_to_a_busy_phone_hears_a_beep_then_music_on_hold() {
    let ast = asterisk::shared();
    let out = install(&ast, &[]);
    assert!(out.contains("call-waiting"), "{out}");
    ast.cli("dialplan set global RINGTIME 2");
    let mut ami = ast.ami();

    // Idle: 202 rings, the caller hears ringback.
    ast.set_phone("202", PhoneMode::Ring);
    assert_eq!(ast.device_state(&mut ami, "PJSIP/202"), "NOT_INUSE");
    let idle = call_and_read_log(&ast, &mut ami, "201", "202");
    assert!(
        idle.has(&format!("Executing [202@{HOOK}:1]")),
        "the hook did not run:\n{}",
        idle.text()
    );
    assert!(idle.has(&format!("Executing [202@{HOOK}:4] Return(")));
    assert_plain_ringback(&idle, "202", "PJSIP");
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "PJSIP/202", "NOT_INUSE", WAIT);

    // Busy: 203 talks to 202; 201 calls 202.
    put_on_a_call(&ast, &mut ami, "203", "202", "PJSIP/202", "INUSE");
    ast.set_phone("202", PhoneMode::Ring);
    let busy = call_and_read_log(&ast, &mut ami, "201", "202");
    assert_beep_then_moh(&busy, "202", "PJSIP");

    // A transferred call (MikoPBX resets TRANSFER_OPTIONS to Tt for it): the
    // caller still hears the beep and music on hold.
    let transferred = call_number_and_read_log(&ast, &mut ami, "201", "8202", "202");
    assert_beep_then_moh(&transferred, "202", "PJSIP");
    assert!(
        transferred.has("Set(\"PJSIP/201-") && transferred.has("ISTRANSFER=transfer_"),
        "the call was not marked transferred:\n{}",
        transferred.text()
    );
}

/// The same over IAX2 (`device_tech=IAX2`): 302 on a call with 303, then 301
/// calls 302 → beep, then music on hold; 302 free → ringback.
#[test]
fn iax2_a_caller_to_a_busy_phone_hears_a_beep_then_music_on_hold() {
    let ast = asterisk::shared();
    let def: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::repo().join("packaging/features/call-waiting/feature.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let techs = def["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "device_tech")
        .unwrap()["values"]
        .clone();
    assert!(
        techs.as_array().unwrap().iter().any(|v| v == "IAX2"),
        "call-waiting no longer offers IAX2: {techs}"
    );
    install(&ast, &["--set", "call-waiting.device_tech=IAX2"]);
    ast.cli("dialplan set global RINGTIME 2");
    let mut ami = ast.ami();

    ast.set_phone("302", PhoneMode::Ring);
    let idle = call_and_read_log(&ast, &mut ami, "301", "302");
    assert!(
        idle.has(&format!("Executing [302@{HOOK}:1]")),
        "{}",
        idle.text()
    );
    assert_plain_ringback(&idle, "302", "IAX2");
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "IAX2/302", "UNKNOWN", WAIT);

    put_on_a_call(&ast, &mut ami, "303", "302", "IAX2/302", "INUSE");
    ast.set_phone("302", PhoneMode::Ring);
    let busy = call_and_read_log(&ast, &mut ami, "301", "302");
    assert_beep_then_moh(&busy, "302", "IAX2");
}

/// `pjsip show endpoint <id>`'s device_state_busy_at.
fn busy_at(ast: &Asterisk, endpoint: &str) -> String {
    let out = ast.cli(&format!("pjsip show endpoint {endpoint}"));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("device_state_busy_at"))
        .unwrap_or_else(|| panic!("no device_state_busy_at in:\n{out}"));
    line.split(':').nth(1).unwrap().trim().to_string()
}

/// With `device_state_busy_at = 1` on 202 (as MikoPBX's core sets it), one
/// call makes 202 BUSY and the second caller hears no beep; installing with
/// `endpoints=202` makes it 3 (the res_pjsip reload reaches the endpoint):
/// 202 on one call is INUSE and the second caller hears the beep and music.
#[test]
fn endpoints_option_sets_device_state_busy_at_so_the_beep_can_play() {
    let ast = asterisk::shared();
    let mut ami = ast.ami();
    // The fixture: no limit.
    assert_eq!(busy_at(&ast, "202"), "0");

    // The admin's own busy_at = 1 on 202 (test-local; reset() restores it).
    let pjsip = ast.etc_file("pjsip.conf");
    let text = std::fs::read_to_string(&pjsip).unwrap();
    let anchor = "callerid = \"Phone 202\" <202>\n";
    assert!(text.contains(anchor));
    std::fs::write(
        &pjsip,
        text.replace(anchor, &format!("{anchor}device_state_busy_at = 1\n")),
    )
    .unwrap();
    ast.cli("module reload res_pjsip.so");
    assert_eq!(busy_at(&ast, "202"), "1");

    // call-waiting without endpoints: pjsip.conf untouched, 202 on a call is
    // BUSY, so the second caller gets no beep.
    let before = std::fs::read(&pjsip).unwrap();
    install(&ast, &[]);
    assert_eq!(std::fs::read(&pjsip).unwrap(), before);
    assert_eq!(busy_at(&ast, "202"), "1");
    // (Every install reloads the dialplan, and with it the globals.)
    ast.cli("dialplan set global RINGTIME 2");
    put_on_a_call(&ast, &mut ami, "203", "202", "PJSIP/202", "BUSY");
    ast.set_phone("202", PhoneMode::Ring);
    let without = call_and_read_log(&ast, &mut ami, "201", "202");
    assert!(without.has(&format!("Executing [202@{HOOK}:1]")));
    assert_plain_ringback(&without, "202", "PJSIP");
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "PJSIP/202", "NOT_INUSE", WAIT);

    // Again with endpoints=202 (busy_at default 3).
    let out = install(&ast, &["--set", "call-waiting.endpoints=202"]);
    let after = String::from_utf8(std::fs::read(&pjsip).unwrap()).unwrap();
    assert!(
        after.contains("[202](+type=endpoint)\ndevice_state_busy_at = 3\n"),
        "{out}\n{after}"
    );
    assert_eq!(busy_at(&ast, "202"), "3", "{out}");
    ast.cli("dialplan set global RINGTIME 2");
    put_on_a_call(&ast, &mut ami, "203", "202", "PJSIP/202", "INUSE");
    ast.set_phone("202", PhoneMode::Ring);
    let with = call_and_read_log(&ast, &mut ami, "201", "202");
    assert_beep_then_moh(&with, "202", "PJSIP");
}

/// busy_at = 1 would make every call BUSY (no beep ever): refused, naming
/// the parameter, and nothing written.
#[test]
fn busy_at_1_is_refused_and_nothing_is_written() {
    let ast = asterisk::shared();
    let files = ["extensions.conf", "modules.conf", "pjsip.conf"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(ast.etc_file(f)).unwrap())
        .collect();
    let bundle = common::bundle();
    let out = ast.featpkg(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "call-waiting",
        "--set",
        "call-waiting.endpoints=202",
        "--set",
        "call-waiting.busy_at=1",
    ]);
    let msg = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(
            "feature call-waiting: parameter busy_at = \"1\" refused: must be a whole number from 2 to 32"
        ),
        "{msg}"
    );
    for (file, bytes) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(ast.etc_file(file)).unwrap(), bytes, "{file}");
    }
    assert_eq!(busy_at(&ast, "202"), "0");
    assert!(
        ast.cli(&format!("dialplan show {HOOK}"))
            .contains("There is no existence")
    );
}

/// After `featpkg uninstall call-waiting` the hook is gone (the PBX's
/// DIALPLAN_EXISTS check skips it) and a caller to a busy 202 hears plain
/// ringback; extensions.conf, modules.conf and pjsip.conf are back to their
/// bytes.
#[test]
fn after_uninstall_a_caller_to_a_busy_phone_hears_no_beep() {
    let ast = asterisk::shared();
    let files = ["extensions.conf", "modules.conf", "pjsip.conf"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(ast.etc_file(f)).unwrap())
        .collect();
    install(&ast, &["--set", "call-waiting.endpoints=202"]);
    ast.cli("dialplan set global RINGTIME 2");
    let mut ami = ast.ami();
    // Installed: it beeps.
    put_on_a_call(&ast, &mut ami, "203", "202", "PJSIP/202", "INUSE");
    ast.set_phone("202", PhoneMode::Ring);
    let installed = call_and_read_log(&ast, &mut ami, "201", "202");
    assert_beep_then_moh(&installed, "202", "PJSIP");
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "PJSIP/202", "NOT_INUSE", WAIT);

    ast.featpkg_ok(&["uninstall", "call-waiting"]);
    for (file, bytes) in files.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(ast.etc_file(file)).unwrap(),
            bytes,
            "{file} is not back to its bytes"
        );
    }
    for context in [HOOK, "internal-users-custom"] {
        let shown = ast.cli(&format!("dialplan show {context}"));
        assert!(
            shown.contains("There is no existence"),
            "{context}: {shown}"
        );
    }
    assert_eq!(busy_at(&ast, "202"), "0");
    // The dialplan was reloaded: RINGTIME is back to the fixture's 4.
    ast.cli("dialplan set global RINGTIME 2");

    put_on_a_call(&ast, &mut ami, "203", "202", "PJSIP/202", "INUSE");
    ast.set_phone("202", PhoneMode::Ring);
    let gone = call_and_read_log(&ast, &mut ami, "201", "202");
    assert!(!gone.has(HOOK), "{}", gone.text());
    // The PBX's own GosubIf finds no hook and skips it.
    assert!(
        gone.has(&format!(
            "GosubIf(\"{}\", \"0?internal-users-custom,202,1\")",
            gone.channel
        )),
        "{}",
        gone.text()
    );
    assert_plain_ringback(&gone, "202", "PJSIP");
}

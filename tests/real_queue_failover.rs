//! queue-failover on the real scratch Asterisk: calls really leave queues
//! 610–614 (tests/fixtures/real-asterisk/queues.conf) with each QUEUESTATUS,
//! and the rule table (tests/fixtures/real-asterisk/queue-failover-rules.json)
//! sends each to its own phone, which rings. The PBX's [internal] runs
//! Queue(61X,,,,${QUEUE_TIMEOUT}) then Goto(notify-queue-failover,61X,1).
//!
//! | queue | how the call leaves | rule | rings |
//! |---|---|---|---|
//! | 610 | no members: JOINEMPTY | 610 JOINEMPTY | 201 |
//! | 611 | 203 never answers: TIMEOUT | 611 TIMEOUT | 202 |
//! | 612 | maxlen 1, a caller already waits: FULL | 612 FULL | 302 |
//! | 613 | its only member paused: LEAVEEMPTY | 613 LEAVEEMPTY | 301 |
//! | 614 | AMI QueueWithdrawCaller: WITHDRAW | 614 WITHDRAW | 303 |
//! | 614 | TIMEOUT: no rule | default | 209 (no contact: CHANUNAVAIL) |

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::asterisk::{self, Asterisk, PhoneMode, wait_user_event};

const WAIT: Duration = Duration::from_secs(15);
const CONTEXT: &str = "notify-queue-failover";

fn rules_file() -> PathBuf {
    common::repo().join("tests/fixtures/real-asterisk/queue-failover-rules.json")
}

/// Installs queue-failover with the fixture's rules; the queue member 203
/// rings and never answers.
fn install(ast: &Asterisk) {
    let bundle = common::bundle();
    let rules = rules_file();
    ast.featpkg_ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--params",
        rules.to_str().unwrap(),
    ]);
    ast.set_phone("203", PhoneMode::Ring);
}

/// Polls the log (from `mark`) until it contains `needle`; returns it.
fn wait_log(ast: &Asterisk, mark: usize, needle: &str) -> String {
    ast.wait_log(mark, &format!("{needle:?}"), WAIT, |log| {
        log.contains(needle)
    })
}

/// Phone `from` calls queue `queue`; returns the caller's PBX-side channel
/// (read from the log's `Queue(...)` line).
fn call_queue(ast: &Asterisk, ami: &mut featpkg_ami::Ami, from: &str, queue: &str) -> String {
    let mark = ast.log_mark();
    ast.call(ami, from, queue);
    let needle = format!("Executing [{queue}@internal:1] Queue(\"PJSIP/{from}-");
    let log = wait_log(ast, mark, &needle);
    let at = log.find(&needle).unwrap() + needle.len() - format!("PJSIP/{from}-").len();
    log[at..at + log[at..].find('"').unwrap()].to_string()
}

/// Waits until the queue reports `channel` waiting in it.
fn wait_joined(ami: &mut featpkg_ami::Ami, queue: &str, channel: &str) {
    ami.wait_event(WAIT, |m| {
        m.event() == Some("QueueCallerJoin")
            && m.get("Queue") == Some(queue)
            && m.get("Channel") == Some(channel)
    })
    .unwrap_or_else(|e| panic!("{channel} never joined queue {queue}: {e}"));
}

/// Asserts the caller's channel left `queue` with `status`, went through
/// notify-queue-failover and on to `dest` in [internal] (the first matching
/// rule's `GotoIf`, every rule before it not matching, or the default's
/// `Goto` after none matched).
fn assert_routed(
    ast: &Asterisk,
    mark: usize,
    channel: &str,
    queue: &str,
    status: &str,
    dest: &str,
) {
    let arrived = format!("Executing [{dest}@internal:1] Set(\"{channel}\"");
    let log = wait_log(ast, mark, &arrived);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(channel)).collect();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!(
            "Executing [{queue}@internal:2] GotoIf(\"{channel}\", \"1?{CONTEXT},{queue},1\")"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Executing [{queue}@{CONTEXT}:3] NoOp(\"{channel}\", \"featpkg queue-failover: queue {queue} ended with {status}\")"
        )),
        "{text}"
    );
    // The failover context decides once: its first pass (the loop guard's
    // GotoIf not taken), the rules' GotoIfs that did not match, then the one
    // that did (or the default Goto) straight into [internal].
    assert!(
        text.contains(&format!(
            "Executing [{queue}@{CONTEXT}:2] GotoIf(\"{channel}\", \"0?loop\")"
        )),
        "{text}"
    );
    let taken: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("@{CONTEXT}:")) && l.contains(&format!("internal,{dest},1"))
        })
        .collect();
    assert_eq!(taken.len(), 1, "{text}");
    let taken = taken[0];
    assert!(
        taken.contains(&format!("GotoIf(\"{channel}\", \"1?internal,{dest},1\")"))
            || taken.contains(&format!("Goto(\"{channel}\", \"internal,{dest},1\")")),
        "{text}"
    );
    let before_taken = lines.iter().position(|l| l == taken).unwrap();
    for line in &lines[..before_taken] {
        if line.contains(&format!("@{CONTEXT}:")) && line.contains("GotoIf(") {
            assert!(
                line.contains("\"0?internal,") || line.contains("\"0?loop\""),
                "an earlier rule matched: {line}\n{text}"
            );
        }
    }
    assert!(text.contains(&arrived), "{text}");
}

/// Waits for phone `exten` to ring with the queue caller `from` on the line
/// (on failure, shows the log since `mark`).
fn wait_rings(ast: &Asterisk, ami: &mut featpkg_ami::Ami, mark: usize, exten: &str, from: &str) {
    ami.wait_event(WAIT, |m| {
        m.event() == Some("UserEvent")
            && m.get("UserEvent") == Some("PhoneRing")
            && m.get("Exten") == Some(exten)
            && m.get("CallerIDNum") == Some(from)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{exten} did not ring with {from} within {WAIT:?} ({e}):\n{}",
            asterisk::tail(&ast.log_since(mark), 60)
        )
    });
}

/// 610 has no members: the call cannot even join (JOINEMPTY) → 201 rings.
#[test]
fn joinempty_goes_to_its_rule() {
    let ast = asterisk::shared();
    install(&ast);
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let channel = call_queue(&ast, &mut ami, "204", "610");
    wait_rings(&ast, &mut ami, mark, "201", "204");
    assert_routed(&ast, mark, &channel, "610", "JOINEMPTY", "201");
}

/// 611's member 203 rings and never answers; after QUEUE_TIMEOUT (3 s) the
/// call leaves with TIMEOUT → 202 rings.
#[test]
fn timeout_goes_to_its_rule() {
    let ast = asterisk::shared();
    install(&ast);
    ast.cli("dialplan set global QUEUE_TIMEOUT 3");
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let started = Instant::now();
    let channel = call_queue(&ast, &mut ami, "204", "611");
    wait_joined(&mut ami, "611", &channel);
    // The queue really rang its member first.
    wait_rings(&ast, &mut ami, mark, "203", "204");
    wait_rings(&ast, &mut ami, mark, "202", "204");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_routed(&ast, mark, &channel, "611", "TIMEOUT", "202");
}

/// 612 holds one caller (maxlen 1): with 202 waiting in it, 204's call is
/// refused with FULL → 302 (IAX2) rings.
#[test]
fn full_goes_to_its_rule() {
    let ast = asterisk::shared();
    install(&ast);
    let mut ami = ast.ami();
    let first = call_queue(&ast, &mut ami, "202", "612");
    wait_joined(&mut ami, "612", &first);
    let mark = ast.log_mark();
    let channel = call_queue(&ast, &mut ami, "204", "612");
    wait_rings(&ast, &mut ami, mark, "302", "204");
    assert_routed(&ast, mark, &channel, "612", "FULL", "302");
    // The first caller is still waiting in the queue.
    let members = ast.cli("queue show 612");
    assert!(members.contains(&first), "{members}");
}

/// Unpauses 203 in queue 613 when dropped (a paused static member stays
/// paused across app_queue reloads, so also after a failed test).
struct Unpause<'a>(&'a Asterisk);

impl Drop for Unpause<'_> {
    fn drop(&mut self) {
        self.0.cli("queue unpause member PJSIP/203 queue 613");
    }
}

/// 613 leaves when its members are all paused (leavewhenempty = paused): the
/// caller joins, 203 is paused, the call leaves with LEAVEEMPTY → 301 rings.
#[test]
fn leaveempty_goes_to_its_rule() {
    let ast = asterisk::shared();
    let _unpause = Unpause(&ast);
    ast.cli("queue unpause member PJSIP/203 queue 613");
    install(&ast);
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let channel = call_queue(&ast, &mut ami, "204", "613");
    wait_joined(&mut ami, "613", &channel);
    ami.send(
        featpkg_ami::action(
            "QueuePause",
            &[
                ("Interface", "PJSIP/203"),
                ("Queue", "613"),
                ("Paused", "true"),
                ("Reason", "featpkg test"),
            ],
        )
        .unwrap(),
    )
    .expect("QueuePause");
    wait_rings(&ast, &mut ami, mark, "301", "204");
    assert_routed(&ast, mark, &channel, "613", "LEAVEEMPTY", "301");
}

/// AMI QueueWithdrawCaller takes the caller out of 614 back to the dialplan
/// with WITHDRAW → 303 rings.
#[test]
fn withdraw_goes_to_its_rule() {
    let ast = asterisk::shared();
    install(&ast);
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let channel = call_queue(&ast, &mut ami, "204", "614");
    wait_joined(&mut ami, "614", &channel);
    ami.send(
        featpkg_ami::action(
            "QueueWithdrawCaller",
            &[
                ("Queue", "614"),
                ("Caller", &channel),
                ("WithdrawInfo", "featpkg-test"),
            ],
        )
        .unwrap(),
    )
    .expect("QueueWithdrawCaller");
    wait_rings(&ast, &mut ami, mark, "303", "204");
    assert_routed(&ast, mark, &channel, "614", "WITHDRAW", "303");
}

/// 614 has a rule for WITHDRAW only; its TIMEOUT (611 has a TIMEOUT rule,
/// 614 does not) takes the default: internal,209,1, whose phone has no
/// contact.
#[test]
fn a_status_without_a_rule_takes_the_default() {
    let ast = asterisk::shared();
    install(&ast);
    ast.cli("dialplan set global QUEUE_TIMEOUT 3");
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let channel = call_queue(&ast, &mut ami, "204", "614");
    wait_joined(&mut ami, "614", &channel);
    let status = wait_user_event(&mut ami, "PbxDialStatus", &[("Exten", "209")], WAIT);
    assert_eq!(status.get("Status"), Some("CHANUNAVAIL"), "{status:?}");
    assert_routed(&ast, mark, &channel, "614", "TIMEOUT", "209");
    // No rule's phone rang for it (203 is the queue member).
    let log = ast.log_since(mark);
    for phone in ["201", "202", "301", "302", "303"] {
        assert!(
            !log.contains(&format!("Executing [{phone}@internal:1] Set(\"{channel}\"")),
            "{phone}:\n{log}"
        );
    }
}

/// A rule sending an "empty" exit (JOINEMPTY) back into the same queue would
/// loop: refused with exit code 2 and a message naming the rule, and nothing
/// is written (extensions.conf byte for byte) or loaded.
#[test]
fn a_rule_looping_an_empty_queue_into_itself_is_refused() {
    let ast = asterisk::shared();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    // 610 has no members: its JOINEMPTY exit sent back into 610 would loop.
    assert_eq!(json["queue-failover"]["rules"][0]["status"], "JOINEMPTY");
    json["queue-failover"]["rules"][0]["destination"] = "internal,610,1".into();
    let dir = tempfile::tempdir().unwrap();
    let looping = dir.path().join("looping-rules.json");
    std::fs::write(&looping, serde_json::to_string_pretty(&json).unwrap()).unwrap();

    let before = std::fs::read(ast.etc_file("extensions.conf")).unwrap();
    let bundle = common::bundle();
    let out = ast.featpkg(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--params",
        looping.to_str().unwrap(),
    ]);
    let msg = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(
            "$.queue-failover.rules[0].destination: \"internal,610,1\" sends a JOINEMPTY exit back into queue 610: a loop (the queue is still empty)"
        ),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(ast.etc_file("extensions.conf")).unwrap(),
        before,
        "extensions.conf changed"
    );
    let shown = ast.cli(&format!("dialplan show {CONTEXT}"));
    assert!(shown.contains("There is no existence"), "{shown}");
    let status = ast.featpkg(&["status"]);
    assert!(
        !common::text(&status).contains("queue-failover"),
        "{}",
        common::text(&status)
    );
}

/// A loop the install-time check cannot see (the default leads back into the
/// empty queue): the context's pass guard hangs the call up after
/// `max_passes`, instead of spinning the channel through Queue() thousands of
/// times a second.
#[test]
fn a_default_that_loops_into_the_empty_queue_is_hung_up_after_max_passes() {
    let ast = asterisk::shared();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rules_file()).unwrap()).unwrap();
    json["queue-failover"]["rules"] = serde_json::json!([]);
    json["queue-failover"]["default"] = "internal,610,1".into();
    json["queue-failover"]["max_passes"] = "5".into();
    let dir = tempfile::tempdir().unwrap();
    let looping = dir.path().join("looping-default.json");
    std::fs::write(&looping, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let bundle = common::bundle();
    ast.featpkg_ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--params",
        looping.to_str().unwrap(),
    ]);

    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let started = Instant::now();
    let channel = call_queue(&ast, &mut ami, "204", "610");
    wait_log(
        &ast,
        mark,
        "the rules route this call in a loop, hanging up",
    );
    let log = wait_log(&ast, mark, &format!("Hangup(\"{channel}\""));
    let elapsed = started.elapsed();
    let passes = log
        .matches(&format!("Executing [610@internal:1] Queue(\"{channel}\""))
        .count();
    assert_eq!(
        passes,
        6,
        "the first Queue() and 5 passes back into it:\n{}",
        asterisk::tail(&log, 40)
    );
    assert!(
        log.contains("pass 6 through queue 610 with status JOINEMPTY: the rules route this call in a loop, hanging up"),
        "{}",
        asterisk::tail(&log, 40)
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

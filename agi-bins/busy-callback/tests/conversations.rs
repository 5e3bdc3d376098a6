//! The busy-callback AGI program against a fake Asterisk: storing, refusing
//! (bad numbers, per-caller limit, duplicate pair) and cancelling requests.

use std::path::Path;
use std::time::Duration;

use featpkg_agi::fake::{Call, FakePeer};
use featpkg_busy_callback::Store;

const BIN: &str = env!("CARGO_BIN_EXE_featpkg-busy-callback");
const SCRIPT: &str = "/var/lib/asterisk/agi-bin/featpkg-busy-callback";

fn start(mode: &str, caller: &str, callee: &str, dir: &Path) -> FakePeer {
    let mut call = Call::new(SCRIPT, caller, "featpkg-busy-callback", callee);
    call.args = vec![
        mode.to_string(),
        format!("dir={}", dir.display()),
        "pattern=_2XX".into(),
        "digit=5".into(),
        "max=2".into(),
        "expiry=1800".into(),
        "deadline=2".into(),
    ];
    FakePeer::start(Path::new(BIN), &call, &[])
}

/// An offer call up to the prompt, answered with the real GET DATA reply `reply`.
fn offer_reply(dir: &Path, caller: &str, callee: &str, reply: &str) -> FakePeer {
    let mut peer = start("offer", caller, callee, dir);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-isonphone\" 5000 1", reply);
    peer
}

fn offer(dir: &Path, caller: &str, callee: &str, press: &str) -> FakePeer {
    offer_reply(dir, caller, callee, &format!("200 result={press}"))
}

fn finish(peer: &mut FakePeer) {
    let (status, _) = peer.wait(Duration::from_secs(3)).expect("exits by itself");
    assert!(status.success(), "{status}: {:?}", peer.transcript);
}

fn pending(dir: &Path) -> Vec<(String, String)> {
    Store::new(dir)
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.caller, r.callee))
        .collect()
}

#[test]
fn pressing_the_digit_stores_the_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let mut peer = offer(&dir, "201", "202", "5");
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    finish(&mut peer);
    assert_eq!(pending(&dir), [("201".to_string(), "202".to_string())]);
}

#[test]
fn another_digit_or_silence_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    for reply in ["200 result=1", "200 result= (timeout)"] {
        let mut peer = offer_reply(&dir, "201", "202", reply);
        peer.expect(
            "SET VARIABLE \"BUSY_CALLBACK\" \"DECLINED\"",
            "200 result=1",
        );
        finish(&mut peer);
    }
    assert!(pending(&dir).is_empty());
}

#[test]
fn duplicate_pair_and_per_caller_limit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    for callee in ["202", "203"] {
        let mut peer = offer(&dir, "201", callee, "5");
        peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"", "200 result=1");
        peer.expect(
            "STREAM FILE \"auth-thankyou\" \"\"",
            "200 result=0 endpos=9600",
        );
        finish(&mut peer);
    }
    let mut peer = offer(&dir, "201", "202", "5");
    peer.expect("VERBOSE \"featpkg busy-callback: not stored: 201 already waits for a callback from 202\" 1", "200 result=1");
    peer.expect(
        "SET VARIABLE \"BUSY_CALLBACK\" \"DUPLICATE\"",
        "200 result=1",
    );
    peer.expect("STREAM FILE \"beeperr\" \"\"", "200 result=0 endpos=3200");
    finish(&mut peer);
    let mut peer = offer(&dir, "201", "204", "5");
    peer.expect(
        "VERBOSE \"featpkg busy-callback: not stored: 201 already has 2 pending callbacks\" 1",
        "200 result=1",
    );
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"LIMIT\"", "200 result=1");
    peer.expect("STREAM FILE \"beeperr\" \"\"", "200 result=0 endpos=3200");
    finish(&mut peer);
    assert_eq!(pending(&dir).len(), 2);
}

#[test]
fn bad_numbers_are_refused_before_anything_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let long = "2".repeat(200);
    for (caller, callee, what) in [
        ("../../etc/passwd", "202", "caller ID"),
        ("1;rm", "202", "caller ID"),
        ("", "202", "caller ID"),
        (long.as_str(), "202", "caller ID"),
        ("201", "999", "extension"),
        ("201", "2;0", "extension"),
        // Asterisk writes values unescaped: a line break reaches us raw.
        ("20\n1", "202", "caller ID"),
        ("201\n\nANSWER", "202", "caller ID"),
        ("+201", "202", "caller ID"),
        ("\u{ff12}\u{ff10}\u{ff11}", "202", "caller ID"),
        ("unknown", "202", "caller ID"),
        ("201", "20\n2", "extension"),
        ("201", "", "extension"),
    ] {
        let mut peer = start("offer", caller, callee, &dir);
        let line = peer.next_command(Duration::from_secs(2)).unwrap();
        assert!(
            line.starts_with(&format!("VERBOSE \"featpkg busy-callback: refused {what} ")),
            "{line}"
        );
        peer.reply("200 result=1");
        peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"REFUSED\"", "200 result=1");
        finish(&mut peer);
        assert!(
            !peer.transcript.iter().any(|c| c.starts_with("GET DATA")),
            "no prompt for a refused number"
        );
    }
    assert!(!dir.exists(), "nothing was created");
}

#[test]
fn cancel_drops_every_request_of_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let store = Store::new(&dir);
    store.add("201", "202", 100, 3, u64::MAX).unwrap();
    store.add("201", "203", 100, 3, u64::MAX).unwrap();
    store.add("205", "202", 100, 3, u64::MAX).unwrap();
    let mut peer = start("cancel", "201", "*601", &dir);
    peer.expect(
        "VERBOSE \"featpkg busy-callback: 201 cancelled 2 callback(s)\" 3",
        "200 result=1",
    );
    peer.expect(
        "SET VARIABLE \"BUSY_CALLBACK\" \"CANCELLED\"",
        "200 result=1",
    );
    peer.expect("ANSWER", "200 result=0");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    finish(&mut peer);
    assert_eq!(pending(&dir), [("205".to_string(), "202".to_string())]);
}

#[test]
fn a_callee_busy_again_puts_the_request_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let mut peer = start("requeue", "202", "202", &dir);
    peer.expect(
        "GET VARIABLE \"FEATPKG_CALLBACK_CALLER\"",
        "200 result=1 (201)",
    );
    let first_pressed = unix_now() - 600;
    peer.expect(
        "GET VARIABLE \"FEATPKG_CALLBACK_SINCE\"",
        &format!("200 result=1 ({first_pressed})"),
    );
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"", "200 result=1");
    finish(&mut peer);
    assert_eq!(pending(&dir), [("201".to_string(), "202".to_string())]);
    // It keeps the time the caller pressed the digit: the expiry counts from then.
    assert_eq!(Store::new(&dir).list().unwrap()[0].created, first_pressed);
    // A forged variable is refused like any number from the channel.
    let mut peer = start("requeue", "202", "202", &dir);
    peer.expect(
        "GET VARIABLE \"FEATPKG_CALLBACK_CALLER\"",
        "200 result=1 (../201)",
    );
    let line = peer.next_command(Duration::from_secs(2)).unwrap();
    assert!(
        line.starts_with("VERBOSE \"featpkg busy-callback: refused caller "),
        "{line}"
    );
    peer.reply("200 result=1");
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"REFUSED\"", "200 result=1");
    finish(&mut peer);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A callee busy again late in the request's life: it expires instead of
/// waiting another full expiry. A forged time is refused.
#[test]
fn a_requeue_past_the_expiry_is_dropped_and_a_forged_time_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let mut peer = start("requeue", "202", "202", &dir);
    peer.expect(
        "GET VARIABLE \"FEATPKG_CALLBACK_CALLER\"",
        "200 result=1 (201)",
    );
    peer.expect(
        "GET VARIABLE \"FEATPKG_CALLBACK_SINCE\"",
        &format!("200 result=1 ({})", unix_now() - 1800),
    );
    let line = peer.next_command(Duration::from_secs(2)).unwrap();
    assert!(
        line.starts_with("VERBOSE \"featpkg busy-callback: not requeued: the request of 201 for 202 has expired\""),
        "{line}"
    );
    peer.reply("200 result=1");
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"EXPIRED\"", "200 result=1");
    finish(&mut peer);
    assert!(pending(&dir).is_empty());

    for forged in ["-5", "1e9", "99999999999999999999", "12 34", ""] {
        let mut peer = start("requeue", "202", "202", &dir);
        peer.expect(
            "GET VARIABLE \"FEATPKG_CALLBACK_CALLER\"",
            "200 result=1 (201)",
        );
        peer.expect(
            "GET VARIABLE \"FEATPKG_CALLBACK_SINCE\"",
            &format!("200 result=1 ({forged})"),
        );
        let line = peer.next_command(Duration::from_secs(2)).unwrap();
        assert!(
            line.starts_with("VERBOSE \"featpkg busy-callback: refused FEATPKG_CALLBACK_SINCE "),
            "{forged:?}: {line}"
        );
        peer.reply("200 result=1");
        peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"REFUSED\"", "200 result=1");
        finish(&mut peer);
        assert!(pending(&dir).is_empty(), "{forged:?}");
    }
}

#[test]
fn a_torn_request_file_does_not_stop_new_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    std::fs::create_dir_all(&dir).unwrap();
    // What a crash could leave: a cut-short request, a temp file.
    std::fs::write(dir.join("201-203.req"), "201 2").unwrap();
    std::fs::write(dir.join(".201-204.tmp"), "201 204 1").unwrap();
    let mut peer = offer(&dir, "201", "202", "5");
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"QUEUED\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    finish(&mut peer);
    assert_eq!(pending(&dir), [("201".to_string(), "202".to_string())]);
    assert_eq!(
        std::fs::read_to_string(dir.join("201-202.req"))
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>(),
        ["201", "202"]
    );
}

#[test]
fn a_store_locked_elsewhere_cannot_hold_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let store = Store::new(&dir);
    let _held = store.lock().unwrap(); // a stuck watcher, say
    let mut peer = offer(&dir, "201", "202", "5");
    let line = peer.next_command(Duration::from_secs(3)).unwrap();
    assert!(
        line.starts_with("VERBOSE \"featpkg busy-callback: cannot store the request: ")
            && line.contains("busy"),
        "{line}"
    );
    peer.reply("200 result=1");
    peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"ERROR\"", "200 result=1");
    peer.expect("STREAM FILE \"beeperr\" \"\"", "200 result=0 endpos=3200");
    finish(&mut peer);
    assert!(pending(&dir).is_empty());
}

#[test]
fn a_caller_who_presses_and_hangs_up_at_once_is_still_called_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let mut peer = start("offer", "201", "202", &dir);
    peer.expect("ANSWER", "200 result=0");
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("GET DATA")
    );
    let hung = peer.hangup();
    peer.reply("200 result=5");
    peer.answer_dead_until_exit(Duration::from_secs(1));
    let (status, at) = peer.wait(Duration::from_secs(1)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(at.duration_since(hung) < Duration::from_millis(150));
    assert_eq!(pending(&dir), [("201".to_string(), "202".to_string())]);
}

//! The busy-callback AGI program against a fake Asterisk: storing, refusing
//! (bad numbers, per-caller limit, duplicate pair) and cancelling requests,
//! and settling a callback from its dial context (callee answered, busy again,
//! no answer, caller hung up).

use std::path::Path;
use std::time::Duration;

use featpkg_agi::fake::{Call, FakePeer};
use featpkg_busy_callback::{Outcome, Phase, Request, Rules, Settled, Store, now_ms};

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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The dial context's AGI program settling a callback: `ended` in the `h`
/// extension of the caller's channel, `connected` in Dial's U() subroutine on
/// the callee's (extension `s`).
fn settle_call(mode: &str, dir: &Path) -> FakePeer {
    let (context, exten) = if mode == "connected" {
        ("featpkg-busy-callback-connected", "s")
    } else {
        ("featpkg-busy-callback-dial", "h")
    };
    let mut call = Call::new(SCRIPT, "202", context, exten);
    call.args = vec![
        mode.to_string(),
        format!("dir={}", dir.display()),
        "pattern=_2XX".into(),
        "expiry=1800".into(),
        "retries=2".into(),
        "retry_wait=60".into(),
        "deadline=2".into(),
    ];
    FakePeer::start(Path::new(BIN), &call, &[])
}

/// The variables the watcher set on the callback, as GET VARIABLE answers
/// them (`200 result=1 (value)`; `200 result=0` for one that is not set).
fn names_the_callback(peer: &mut FakePeer, vars: [Option<&str>; 4]) {
    for (name, value) in [
        "FEATPKG_CALLBACK_CALLER",
        "FEATPKG_CALLBACK_CALLEE",
        "FEATPKG_CALLBACK_CREATED",
        "FEATPKG_CALLBACK_CALL",
    ]
    .into_iter()
    .zip(vars)
    {
        let reply = value.map_or("200 result=0".to_string(), |v| {
            format!("200 result=1 ({v})")
        });
        peer.expect(&format!("GET VARIABLE \"{name}\""), &reply);
    }
}

/// A request whose callback number 1 is under way, made `age` seconds ago.
fn calling(dir: &Path, age: u64) -> Request {
    let store = Store::new(dir);
    let r = store
        .add("201", "202", unix_now() - age, 3, u64::MAX)
        .unwrap();
    store.begin_call(&r, now_ms()).unwrap().unwrap()
}

fn status_and_log(peer: &mut FakePeer, log: &str, status: &str) {
    peer.expect(
        &format!("VERBOSE \"featpkg busy-callback: {log}\" 3"),
        "200 result=1",
    );
    peer.expect(
        &format!("SET VARIABLE \"BUSY_CALLBACK\" \"{status}\""),
        "200 result=1",
    );
    finish(peer);
}

/// The bug this replaces: the watcher deleted the request when the caller
/// answered while the dial context put it back, and the request was lost.
/// Now the request never leaves its file: busy again, it waits again, with
/// its first time, and not before retry_wait.
#[test]
fn a_callee_busy_again_sends_the_request_back_to_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let r = calling(&dir, 600);
    let created = r.created.to_string();
    let before = now_ms();
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [Some("201"), Some("202"), Some(&created), Some("1")],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (BUSY)");
    status_and_log(
        &mut peer,
        "the callback of 201 for 202 did not connect; waits again at least 60 s (attempt 1)",
        "WAITING",
    );
    let after = Store::new(&dir).get("201", "202").unwrap().expect("kept");
    assert_eq!(
        (after.created, after.attempts, after.calls),
        (r.created, 1, 1)
    );
    let Phase::Waiting { not_before_ms } = after.phase else {
        panic!("{after:?}")
    };
    assert!(
        not_before_ms >= before + 60_000 && not_before_ms <= now_ms() + 60_000,
        "{not_before_ms}"
    );
}

#[test]
fn every_other_end_but_a_hangup_waits_again_too() {
    // No answer, unreachable, congestion, and no Dial at all (the caller hung
    // up at once: DIALSTATUS unset).
    for status in [
        Some("NOANSWER"),
        Some("CHANUNAVAIL"),
        Some("CONGESTION"),
        None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("busy-callback");
        let r = calling(&dir, 10);
        let mut peer = settle_call("ended", &dir);
        names_the_callback(
            &mut peer,
            [
                Some("201"),
                Some("202"),
                Some(&r.created.to_string()),
                Some("1"),
            ],
        );
        let reply = status.map_or("200 result=0".to_string(), |s| {
            format!("200 result=1 ({s})")
        });
        peer.expect("GET VARIABLE \"DIALSTATUS\"", &reply);
        status_and_log(
            &mut peer,
            "the callback of 201 for 202 did not connect; waits again at least 60 s (attempt 1)",
            "WAITING",
        );
        let after = Store::new(&dir).get("201", "202").unwrap();
        assert!(
            after.is_some_and(|a| !a.calling() && a.attempts == 1),
            "{status:?}"
        );
    }
}

#[test]
fn the_callee_answering_makes_the_request_done() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let r = calling(&dir, 10);
    let created = r.created.to_string();
    // Dial's U() on the callee's channel, before the two are connected.
    let mut peer = settle_call("connected", &dir);
    names_the_callback(
        &mut peer,
        [Some("201"), Some("202"), Some(&created), Some("1")],
    );
    status_and_log(&mut peer, "the callback of 201 for 202 is done", "DONE");
    assert!(pending(&dir).is_empty());
    // When the conversation ends, h runs with DIALSTATUS=ANSWER: nothing left to do.
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [Some("201"), Some("202"), Some(&created), Some("1")],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (ANSWER)");
    status_and_log(
        &mut peer,
        "no request of 201 for 202 at callback 1 any more; nothing to do",
        "GONE",
    );
    assert!(pending(&dir).is_empty());
}

#[test]
fn a_caller_who_hangs_up_on_the_callback_ends_the_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let r = calling(&dir, 10);
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [
            Some("201"),
            Some("202"),
            Some(&r.created.to_string()),
            Some("1"),
        ],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (CANCEL)");
    status_and_log(&mut peer, "the callback of 201 for 202 is done", "DONE");
    assert!(pending(&dir).is_empty());
}

#[test]
fn a_late_outcome_of_an_older_callback_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let store = Store::new(&dir);
    let first = calling(&dir, 10);
    let rules = Rules {
        retries: 2,
        retry_wait: Duration::ZERO,
        expiry_s: 1800,
    };
    let Settled::Waiting(w) = store
        .settle(&first.call_ref(), Outcome::NotConnected, now_ms(), &rules)
        .unwrap()
    else {
        panic!()
    };
    let second = store.begin_call(&w, now_ms()).unwrap().unwrap();
    assert_eq!(second.calls, 2);
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [
            Some("201"),
            Some("202"),
            Some(&first.created.to_string()),
            Some("1"),
        ],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (BUSY)");
    status_and_log(
        &mut peer,
        "no request of 201 for 202 at callback 1 any more; nothing to do",
        "GONE",
    );
    assert_eq!(store.get("201", "202").unwrap(), Some(second));
}

#[test]
fn the_third_callback_that_does_not_connect_drops_the_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let store = Store::new(&dir);
    let r = calling(&dir, 10);
    // Two callbacks ended without a conversation already (retries=2).
    let mut at_two = r.clone();
    at_two.attempts = 2;
    at_two.calls = 3;
    {
        let _l = store.lock().unwrap();
        store.save(&at_two).unwrap();
    }
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [
            Some("201"),
            Some("202"),
            Some(&r.created.to_string()),
            Some("3"),
        ],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (BUSY)");
    status_and_log(
        &mut peer,
        "3 callbacks of 201 for 202 did not connect; dropped",
        "DROPPED",
    );
    assert!(pending(&dir).is_empty());
}

/// A callee busy again late in the request's life: it expires instead of
/// waiting again. Forged variables are refused and change nothing.
#[test]
fn a_callback_past_the_expiry_is_dropped_and_forged_variables_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("busy-callback");
    let r = calling(&dir, 1800);
    let mut peer = settle_call("ended", &dir);
    names_the_callback(
        &mut peer,
        [
            Some("201"),
            Some("202"),
            Some(&r.created.to_string()),
            Some("1"),
        ],
    );
    peer.expect("GET VARIABLE \"DIALSTATUS\"", "200 result=1 (BUSY)");
    status_and_log(
        &mut peer,
        "the request of 201 for 202 has expired",
        "EXPIRED",
    );
    assert!(pending(&dir).is_empty());

    let r = calling(&dir, 10);
    let created = r.created.to_string();
    let future = (unix_now() + 3600).to_string();
    for mode in ["ended", "connected"] {
        for (vars, refused) in [
            (
                [Some("../201"), Some("202"), Some("1"), Some("1")],
                "caller ",
            ),
            ([None, Some("202"), Some("1"), Some("1")], "caller "),
            (
                [Some("201"), Some("2;02"), Some("1"), Some("1")],
                "extension ",
            ),
            (
                [Some("201"), Some("202"), Some("-5"), Some("1")],
                "FEATPKG_CALLBACK_CREATED ",
            ),
            (
                [Some("201"), Some("202"), Some("1e9"), Some("1")],
                "FEATPKG_CALLBACK_CREATED ",
            ),
            (
                [Some("201"), Some("202"), Some("12 34"), Some("1")],
                "FEATPKG_CALLBACK_CREATED ",
            ),
            (
                [Some("201"), Some("202"), Some(""), Some("1")],
                "FEATPKG_CALLBACK_CREATED ",
            ),
            (
                [Some("201"), Some("202"), Some(&future), Some("1")],
                "FEATPKG_CALLBACK_CREATED ",
            ),
            (
                [
                    Some("201"),
                    Some("202"),
                    Some(&created),
                    Some("99999999999"),
                ],
                "FEATPKG_CALLBACK_CALL ",
            ),
            (
                [Some("201"), Some("202"), Some(&created), None],
                "FEATPKG_CALLBACK_CALL ",
            ),
        ] {
            let mut peer = settle_call(mode, &dir);
            // Asked in order; the first bad one ends it.
            let upto = match refused {
                "caller " => 1,
                "extension " => 2,
                "FEATPKG_CALLBACK_CREATED " => 3,
                _ => 4,
            };
            for (name, value) in [
                "FEATPKG_CALLBACK_CALLER",
                "FEATPKG_CALLBACK_CALLEE",
                "FEATPKG_CALLBACK_CREATED",
                "FEATPKG_CALLBACK_CALL",
            ]
            .into_iter()
            .zip(vars)
            .take(upto)
            {
                let reply = value.map_or("200 result=0".to_string(), |v| {
                    format!("200 result=1 ({v})")
                });
                peer.expect(&format!("GET VARIABLE \"{name}\""), &reply);
            }
            let line = peer.next_command(Duration::from_secs(2)).unwrap();
            assert!(
                line.starts_with(&format!(
                    "VERBOSE \"featpkg busy-callback: refused {refused}"
                )),
                "{mode} {vars:?}: {line}"
            );
            peer.reply("200 result=1");
            peer.expect("SET VARIABLE \"BUSY_CALLBACK\" \"REFUSED\"", "200 result=1");
            finish(&mut peer);
            assert_eq!(
                Store::new(&dir).get("201", "202").unwrap().as_ref(),
                Some(&r),
                "{mode} {vars:?}"
            );
        }
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

//! busy-callback on the real scratch Asterisk, with real PJSIP (201/202/203)
//! and IAX2 (301/302/303; installed with `tech=IAX2`) calls. Each scenario runs
//! once per technology:
//!
//! * offer → digit → request: the callee is on a call (and its phone refuses a
//!   second one), the caller's Dial ends BUSY, the PBX's [internal] jumps to
//!   the busy context: the offer answers, plays the prompt, the caller's phone
//!   presses 5 (RFC 4733 / IAX2 DTMF from the phone side), the request file
//!   appears, the confirm sound plays;
//! * both free → the caller is rung showing "Callback <callee>", answers, the
//!   callee is rung (showing the caller), answers, the two are bridged, the
//!   request is gone; the latency from the callee's DeviceStateChange (free)
//!   to the watcher's Originate is measured;
//! * the callee busy again when the caller answers: the request stays, waits
//!   `retry_wait`, the caller is rung exactly once more (gap measured), never a
//!   storm;
//! * callbacks the caller does not answer stop after `retries`;
//! * a request expires after `expiry` (a request file dated in the past: the
//!   feature's smallest expiry is 60 s);
//! * `*601` cancels every request of the caller, and only theirs;
//! * the request survives a restart of the watcher and of Asterisk.
//!
//! The scenarios whose calls run the feature's AGI code (not the unanswered
//! callbacks nor the expiry: only the watcher acts there) also run in
//! `agi_mode=fastagi` (the `_over_fastagi` tests: PJSIP, and the main one for
//! IAX2 too; the transport does not depend on the technology), with
//! featpkg-agid started from its installed cron line; each ends by asserting
//! from the log that every AGI call went the mode's way (in fastagi mode all
//! served by the server, none by the per-call fallback). And featpkg-agid
//! killed in the middle of the offer leaves the call to the per-call program:
//! the request is stored, the callback connects.
//!
//! The watcher runs as its installed cron line starts it. Phones are the
//! harness's: `PhoneRing`/`PhoneAnswer` UserEvents from the phone side,
//! `PbxDialStatus` from the PBX. The test listens on an AMI connection of its
//! own that sends nothing (so every event's arrival time is when it came in)
//! and acts over a second one with events off.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::agid::{Agi, AgiMode};
use common::asterisk::{self, Asterisk, PhoneMode};
use common::events::{Events, caller_answered, hangup_of, ring_of, user_event};
use featpkg_ami::{Ami, AmiError, Message, action};

const WAIT: Duration = Duration::from_secs(15);
/// The feature's smallest values (feature.json `min`), so the tests are short.
const RING: u64 = 10;
const RETRY_WAIT: u64 = 10;
const EXPIRY: u64 = 60;

/// One technology's phones: `caller` asks for a callback from `callee`, who is
/// on a call with `other`.
#[derive(Clone, Copy, Debug)]
struct Tech {
    name: &'static str,
    caller: &'static str,
    callee: &'static str,
    other: &'static str,
    /// DEVICE_STATE of an idle phone: chan_iax2 leaves an idle peer UNKNOWN.
    idle: &'static str,
}

const PJSIP: Tech = Tech {
    name: "PJSIP",
    caller: "201",
    callee: "202",
    other: "203",
    idle: "NOT_INUSE",
};

const IAX2: Tech = Tech {
    name: "IAX2",
    caller: "301",
    callee: "302",
    other: "303",
    idle: "UNKNOWN",
};

impl Tech {
    fn device(&self, ext: &str) -> String {
        format!("{}/{ext}", self.name)
    }

    /// How the channel a phone places its own calls on is named (phone side).
    fn phone_side(&self, ext: &str) -> String {
        match self.name {
            "PJSIP" => format!("PJSIP/phone{ext}-"),
            _ => format!("IAX2/pbx{ext}-"),
        }
    }

    /// How the PBX's channel to or from a phone is named.
    fn pbx_side(&self, ext: &str) -> String {
        format!("{}/{ext}-", self.name)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Installs busy-callback for `t` in `mode` with the smallest ring, retry
/// wait and expiry the feature allows; in fastagi mode starts featpkg-agid
/// from the installed cron line.
fn install(ast: &Asterisk, t: Tech, retries: u32, mode: AgiMode) -> Agi {
    let bundle = common::bundle();
    let mut agi = Agi::new(mode, "busy-callback");
    let mut sets = vec![
        format!("busy-callback.tech={}", t.name),
        format!("busy-callback.ring={RING}"),
        format!("busy-callback.retry_wait={RETRY_WAIT}"),
        format!("busy-callback.expiry={EXPIRY}"),
        format!("busy-callback.retries={retries}"),
    ];
    sets.extend(agi.sets());
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    ast.featpkg_ok(&args);
    // The harness's reset keeps the log directory: start this test's watcher
    // log afresh.
    let _ = std::fs::remove_file(ast.log_dir().join("featpkg-busy-callback.log"));
    agi.start(ast);
    agi
}

/// The request store the feature renders (`dir=`, `--store`).
fn store(ast: &Asterisk) -> PathBuf {
    ast.spool().join("featpkg/busy-callback")
}

fn req_path(ast: &Asterisk, caller: &str, callee: &str) -> PathBuf {
    store(ast).join(format!("{caller}-{callee}.req"))
}

fn read_req(ast: &Asterisk, caller: &str, callee: &str) -> Option<String> {
    std::fs::read_to_string(req_path(ast, caller, callee)).ok()
}

/// The requests on disk, by file name.
fn req_files(ast: &Asterisk) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store(ast))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".req"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Writes a request as the store does (`caller callee created attempts calls
/// phase at`), for the scenarios that do not need the offer again.
fn write_req(ast: &Asterisk, caller: &str, callee: &str, created: u64) {
    let dir = store(ast);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        req_path(ast, caller, callee),
        format!("{caller} {callee} {created} 0 0 waiting 0\n"),
    )
    .unwrap();
}

fn watcher_log(ast: &Asterisk) -> String {
    std::fs::read_to_string(ast.log_dir().join("featpkg-busy-callback.log")).unwrap_or_default()
}

/// Seconds since midnight (UTC) of a watcher log line
/// (`2026-12-04T18:15:48.213985Z  INFO …`).
fn watcher_line_secs(line: &str) -> f64 {
    let time = &line[line.find('T').unwrap() + 1..line.find('Z').unwrap()];
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 60.0 + m) * 60.0 + s
}

/// Seconds since midnight (UTC) of a wall-clock instant.
fn day_secs(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_micros()) / 1e6
}

/// The channel named in the first log line that contains `before` (the name
/// starts right after it and ends at the next `"` or `>`).
fn channel_after(log: &str, before: &str) -> Option<String> {
    let at = log.find(before)? + before.len();
    let rest = &log[at..];
    let end = rest.find(['"', '>'])?;
    Some(rest[..end].to_string())
}

/// An AMI connection with events off, for actions: nothing piles up unread
/// on it while the test waits.
/// Polls the log (from `mark`) until `done` accepts it, recording AMI events
/// meanwhile so their arrival times stay true; returns the log.
fn wait_log(
    ast: &Asterisk,
    ev: &mut Events,
    mark: usize,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    ev.until(what, WAIT, || done(&ast.log_since(mark)));
    ast.log_since(mark)
}

fn hang_up(ctl: &mut Ami, channel: &str) {
    match ctl.send(action("Hangup", &[("Channel", channel)]).unwrap()) {
        Ok(_) => {}
        Err(AmiError::Refused(m)) if m.contains("No such channel") => {}
        Err(e) => panic!("Hangup {channel}: {e}"),
    }
}

/// One test's view of the PBX.
struct Scene<'a> {
    ast: &'a Asterisk,
    t: Tech,
    mode: AgiMode,
    ctl: Ami,
    ev: Events,
}

impl<'a> Scene<'a> {
    fn new(ast: &'a Asterisk, t: Tech, mode: AgiMode) -> Scene<'a> {
        Scene {
            ast,
            t,
            mode,
            ctl: ast.control_ami(),
            ev: Events::new(ast),
        }
    }

    fn state(&mut self, ext: &str) -> String {
        let device = self.t.device(ext);
        let reply = self
            .ctl
            .send(
                action(
                    "Getvar",
                    &[("Variable", &format!("DEVICE_STATE({device})"))],
                )
                .unwrap(),
            )
            .unwrap();
        reply.get("Value").unwrap_or_default().to_string()
    }

    fn wait_state(&mut self, ext: &str, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let state = self.state(ext);
            if state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} is {state}, not {want}",
                self.t.device(ext)
            );
            self.ev.pump(Duration::from_millis(20));
        }
    }

    /// `callee` answers a call from `from` and stays on it; then its phone
    /// refuses a second call (a phone without call waiting: 486 / IAX2 busy).
    /// Returns the phone-side channel of `from`, which ends the call.
    fn put_on_a_call(&mut self, from: &str, callee: &str) -> String {
        self.ast.set_phone(callee, PhoneMode::Answer);
        let m = self.ev.mark();
        self.ast.call(&mut self.ctl, from, callee);
        let i = self.ev.wait(
            m,
            "the call answered",
            WAIT,
            caller_answered(self.t.phone_side(from)),
        );
        let phone = self.ev.msg(i).get("Channel").unwrap().to_string();
        self.ev.wait(
            m,
            "PhoneAnswer",
            WAIT,
            user_event("PhoneAnswer", &[("Exten", callee)]),
        );
        self.wait_state(callee, "INUSE");
        self.ast.set_phone(callee, PhoneMode::Busy);
        phone
    }

    /// The caller calls the (busy) callee, hears the offer and presses 5:
    /// asserts what they hear and that the request is stored; returns the
    /// request's `created`.
    fn offer_and_press(&mut self) -> u64 {
        self.offer_and_press_after(|_, _, _| {})
    }

    /// [`Scene::offer_and_press`], running `while_prompting` once the prompt
    /// plays (with the log mark of the call and the caller's PBX channel)
    /// and before the caller presses the digit.
    fn offer_and_press_after(
        &mut self,
        while_prompting: impl FnOnce(&mut Scene<'a>, usize, &str),
    ) -> u64 {
        let (caller, callee) = (self.t.caller, self.t.callee);
        let mark = self.ast.log_mark();
        let m = self.ev.mark();
        let before = unix_ms() / 1000;
        self.ast.call(&mut self.ctl, caller, callee);
        let status = self.ev.wait(
            m,
            "PbxDialStatus",
            WAIT,
            user_event("PbxDialStatus", &[("Exten", callee)]),
        );
        assert_eq!(
            self.ev.msg(status).get("Status"),
            Some("BUSY"),
            "{:?}",
            self.ev.msg(status)
        );
        // The offer answers the call (so the phone's keys reach the PBX).
        let i = self.ev.wait(
            m,
            "the offer answering",
            WAIT,
            caller_answered(self.t.phone_side(caller)),
        );
        let phone = self.ev.msg(i).get("Channel").unwrap().to_string();
        let start = self.mode.agi_start(callee, "featpkg-busy-callback");
        let log = wait_log(self.ast, &mut self.ev, mark, "the offer", |l| {
            l.contains(&start)
        });
        let pbx = channel_after(&log, &start).unwrap();
        assert!(pbx.starts_with(&self.t.pbx_side(caller)), "{pbx}");
        let prompt = format!("<{pbx}> Playing 'vm-isonphone.");
        wait_log(self.ast, &mut self.ev, mark, "the prompt", |l| {
            l.contains(&prompt)
        });
        while_prompting(self, mark, &pbx);
        assert!(read_req(self.ast, caller, callee).is_none());
        self.ctl
            .send(
                action(
                    "PlayDTMF",
                    &[("Channel", &phone), ("Digit", "5"), ("Duration", "150")],
                )
                .unwrap(),
            )
            .unwrap_or_else(|e| panic!("PlayDTMF on {phone}: {e}"));
        let confirm = format!("<{pbx}> Playing 'auth-thankyou.");
        let log = wait_log(self.ast, &mut self.ev, mark, "the confirm sound", |l| {
            l.contains(&confirm)
        });
        let after = unix_ms() / 1000;
        let dtmf = format!("DTMF end '5' received on {pbx}");
        let (p, d, c) = (
            log.find(&prompt).unwrap(),
            log.find(&dtmf)
                .unwrap_or_else(|| panic!("no {dtmf:?}:\n{}", asterisk::tail(&log, 40))),
            log.find(&confirm).unwrap(),
        );
        assert!(p < d && d < c, "prompt, digit, confirm:\n{log}");
        // The request, as the store writes it: waiting, no callback yet.
        let text = read_req(self.ast, caller, callee).expect("the request file");
        let words: Vec<&str> = text.trim_end().split(' ').collect();
        let created: u64 = words[2].parse().unwrap();
        assert_eq!(
            text,
            format!("{caller} {callee} {created} 0 0 waiting 0\n"),
            "{text:?}"
        );
        assert!(
            (before..=after).contains(&created),
            "{created} not in {before}..={after}"
        );
        // The PBX ends the call after the confirm.
        self.ev
            .wait(m, "the PBX ending the offer", WAIT, hangup_of(phone));
        created
    }

    /// Waits for the caller's phone to ring with a callback; returns the
    /// event's index. Asserts what the phone shows.
    fn wait_callback_ring(&mut self, from: usize, limit: Duration) -> usize {
        let (caller, callee) = (self.t.caller, self.t.callee);
        let i = self.ev.wait(
            from,
            "the callback ringing the caller",
            limit,
            ring_of(caller),
        );
        let ring = self.ev.msg(i);
        assert_eq!(
            (ring.get("CallerIDName"), ring.get("CallerIDNum")),
            (Some(format!("Callback {callee}").as_str()), Some(callee)),
            "the caller's phone shows which callback this is: {ring:?}"
        );
        i
    }

    /// The caller answers the callback, the callee is rung (showing the
    /// caller) and answers: asserts the two are bridged and the request gone.
    fn callee_answers_and_both_talk(&mut self, from: usize) {
        let (t, caller, callee) = (self.t, self.t.caller, self.t.callee);
        self.ev.wait(
            from,
            "the caller answering",
            WAIT,
            user_event("PhoneAnswer", &[("Exten", caller)]),
        );
        let ring = self
            .ev
            .wait(from, "the callee ringing", WAIT, ring_of(callee));
        let shown = (
            self.ev.msg(ring).get("CallerIDNum").map(str::to_string),
            self.ev.msg(ring).get("CallerIDName").map(str::to_string),
        );
        self.ev.wait(
            from,
            "the callee answering",
            WAIT,
            user_event("PhoneAnswer", &[("Exten", callee)]),
        );
        let bridged = |prefix: String| {
            move |m: &Message| {
                m.event() == Some("BridgeEnter")
                    && m.get("Channel").is_some_and(|c| c.starts_with(&prefix))
            }
        };
        let a = self.ev.wait(
            from,
            "the caller's leg bridged",
            WAIT,
            bridged(t.pbx_side(caller)),
        );
        let b = self.ev.wait(
            from,
            "the callee's leg bridged",
            WAIT,
            bridged(t.pbx_side(callee)),
        );
        assert_eq!(
            self.ev.msg(a).get("BridgeUniqueid"),
            self.ev.msg(b).get("BridgeUniqueid"),
            "one bridge: {:?} {:?}",
            self.ev.msg(a),
            self.ev.msg(b)
        );
        assert_eq!(
            self.ev.msg(a).get("Context"),
            Some("featpkg-busy-callback-dial")
        );
        let ast = self.ast;
        self.ev.until("the request done", WAIT, || {
            read_req(ast, caller, callee).is_none()
        });
        // Both phones are still on the line, in the conversation.
        let channels = ast.cli("core show channels concise");
        let up: Vec<&str> = channels
            .lines()
            .filter(|l| l.contains("!Up!") && l.contains("!Read!"))
            .collect();
        assert_eq!(up.len(), 2, "both phones in the call:\n{channels}");
        // The callee sees who asked for the callback, not their own number.
        assert_eq!(
            shown.0.as_deref(),
            Some(caller),
            "{callee}'s phone shows {shown:?} for the callback of {caller}"
        );
    }
}

/// Offer → 5 → request; both free → the caller is rung with "Callback
/// <callee>", answers, the callee is rung and answers, both bridged, request
/// done. Measures the latency from the callee's DeviceStateChange (free) to
/// the watcher's Originate and to the caller's phone ringing.
fn offer_then_callback_connects(t: Tech, mode: AgiMode) {
    let ast = asterisk::shared();
    let begin = ast.log_mark();
    let agi = install(&ast, t, 2, mode);
    let mut s = Scene::new(&ast, t, mode);
    let _watcher = ast.start_cron_command("busy-callback");
    let other_phone = s.put_on_a_call(t.other, t.callee);
    s.offer_and_press();
    // The callee still on its call: nobody is rung.
    s.wait_state(t.caller, t.idle);
    let m = s.ev.mark();
    s.ev.pump(Duration::from_millis(1500));
    assert!(
        s.ev.all(m, ring_of(t.caller)).is_empty(),
        "rung while the callee is busy"
    );
    assert!(read_req(&ast, t.caller, t.callee).is_some());

    // The callee hangs up: free (NOT_INUSE, or UNKNOWN for IAX2).
    ast.set_phone(t.callee, PhoneMode::Answer);
    let m = s.ev.mark();
    hang_up(&mut s.ctl, &other_phone);
    let device = t.device(t.callee);
    let free = s.ev.wait(m, "the callee's DeviceStateChange", WAIT, |e| {
        e.event() == Some("DeviceStateChange") && e.get("Device") == Some(device.as_str())
    });
    assert_eq!(s.ev.msg(free).get("State"), Some(t.idle));
    let ring = s.wait_callback_ring(m, WAIT);
    let calling = format!("calling {} back for {}", t.caller, t.callee);
    let ast_ref = &*ast;
    s.ev.until(&calling, WAIT, || watcher_log(ast_ref).contains(&calling));
    let log = watcher_log(&ast);
    let called = log.lines().find(|l| l.contains(&calling)).unwrap();
    let to_originate = (watcher_line_secs(called) - day_secs(s.ev.wall(free))) * 1000.0;
    let to_ring = s.ev.at(ring) - s.ev.at(free);
    eprintln!(
        "{}: callee {} -> {}: the watcher logged its Originate {to_originate:.1} ms after \
         the test received the same DeviceStateChange (watcher log timestamp vs receive \
         time; each gets the event on its own connection, so ±1 ms); the caller's phone \
         rang {:.1} ms after it (PhoneRing and DeviceStateChange receive times, one \
         connection)",
        t.name,
        s.ev.msg(free).get("State").unwrap(),
        device,
        to_ring.as_secs_f64() * 1000.0
    );
    assert!(to_ring < Duration::from_secs(2), "{to_ring:?}");
    s.callee_answers_and_both_talk(ring);
    // One callback, one ring.
    assert_eq!(s.ev.all(m, ring_of(t.caller)).len(), 1);
    // The offer, the callee's answer (connected) and the callback's end.
    agi.assert_served(&ast, begin, 3);
}

#[test]
fn pjsip_busy_offer_digit_request_then_callback_connects_both() {
    offer_then_callback_connects(PJSIP, AgiMode::Process);
}

#[test]
fn pjsip_busy_offer_digit_request_then_callback_connects_both_over_fastagi() {
    offer_then_callback_connects(PJSIP, AgiMode::Fastagi);
}

#[test]
fn iax2_busy_offer_digit_request_then_callback_connects_both() {
    offer_then_callback_connects(IAX2, AgiMode::Process);
}

#[test]
fn iax2_busy_offer_digit_request_then_callback_connects_both_over_fastagi() {
    offer_then_callback_connects(IAX2, AgiMode::Fastagi);
}

/// featpkg-agid is killed (`kill -9`) while it serves the offer, the prompt
/// playing: Asterisk reports that FastAGI call as a success, the server never
/// set `FEATPKG_AGI_SERVED`, so the dialplan runs the per-call program, which
/// plays the offer again. The caller presses 5, the request is stored and,
/// once the callee is free, the callback connects (its AGI calls, the server
/// being gone, fall back to the program too).
fn a_server_killed_mid_offer_leaves_the_call_to_the_per_call_program(t: Tech) {
    let ast = asterisk::shared();
    let begin = ast.log_mark();
    let mut agi = install(&ast, t, 2, AgiMode::Fastagi);
    let program = agi.program(&ast).display().to_string();
    let url = agi.url();
    let mut s = Scene::new(&ast, t, AgiMode::Fastagi);
    let _watcher = ast.start_cron_command("busy-callback");
    let other_phone = s.put_on_a_call(t.other, t.callee);
    let mut offers = String::new();
    s.offer_and_press_after(|s, mark, pbx| {
        let log = s.ast.log_since(mark);
        assert!(
            !log.contains("Launched AGI Script"),
            "the per-call program ran before the server was killed:\n{}",
            asterisk::tail(&log, 40)
        );
        agi.kill_server();
        let prompt = format!("<{pbx}> Playing 'vm-isonphone.");
        offers = wait_log(
            s.ast,
            &mut s.ev,
            mark,
            "the per-call program's offer",
            |l| {
                l.contains(&format!("Launched AGI Script {program}"))
                    && l.matches(&prompt).count() == 2
            },
        );
        assert!(
            offers.contains(&format!("<{pbx}>AGI Script {url} completed")),
            "{}",
            asterisk::tail(&offers, 40)
        );
    });
    let fallback = format!(
        "@featpkg-busy-callback:3] ExecIf(\"{}",
        t.pbx_side(t.caller)
    );
    let line = offers.lines().find(|l| l.contains(&fallback)).unwrap();
    assert!(
        line.contains(&format!("\"1?AGI({program},offer,")),
        "the fallback ran for another reason: {line}"
    );
    assert!(read_req(&ast, t.caller, t.callee).is_some());

    ast.set_phone(t.callee, PhoneMode::Answer);
    let m = s.ev.mark();
    hang_up(&mut s.ctl, &other_phone);
    let ring = s.wait_callback_ring(m, WAIT);
    s.callee_answers_and_both_talk(ring);
    assert_eq!(s.ev.all(m, ring_of(t.caller)).len(), 1);
    // With the server gone, the callback's AGI calls (the callee's answer,
    // the callback's end) find no server and run the program as well.
    ast.hang_up_all_and_wait();
    let log = ast.log_since(begin);
    let launched = log
        .matches(&format!("Launched AGI Script {program}"))
        .count();
    let refused = log.matches("FastAGI failed").count();
    eprintln!(
        "{}: after the kill: {launched} per-call programs (offer, connected, ended), \
         {refused} FastAGI connections failed",
        t.name
    );
    assert_eq!((launched, refused), (3, 2), "{}", asterisk::tail(&log, 60));
}

#[test]
fn pjsip_a_featpkg_agid_killed_mid_offer_leaves_the_call_to_the_per_call_program() {
    a_server_killed_mid_offer_leaves_the_call_to_the_per_call_program(PJSIP);
}

/// The caller answers the callback but the callee's phone refuses it (busy
/// again: it took another call, or do-not-disturb — its device state still
/// says idle): the request is not lost, waits `retry_wait`, and the caller is
/// rung exactly once more, then connected.
fn busy_again_keeps_the_request_and_waits(t: Tech, mode: AgiMode) {
    let ast = asterisk::shared();
    let begin = ast.log_mark();
    let agi = install(&ast, t, 2, mode);
    let log_mark = ast.log_mark();
    let mut s = Scene::new(&ast, t, mode);
    ast.set_phone(t.callee, PhoneMode::Busy);
    let created = unix_ms() / 1000 - 5;
    write_req(&ast, t.caller, t.callee, created);
    let m = s.ev.mark();
    let _watcher = ast.start_cron_command("busy-callback");
    let ring1 = s.wait_callback_ring(m, WAIT);
    let caller_phone = s.ev.msg(ring1).get("Channel").unwrap().to_string();
    s.ev.wait(ring1, "the callee refusing", WAIT, ring_of(t.callee));
    // The callback ends (Dial BUSY, then h): the caller's phone is hung up.
    let end1 = s.ev.wait(
        ring1,
        "the first callback's end",
        WAIT,
        hangup_of(caller_phone.clone()),
    );
    // The caller did answer (their phone ran Answer()); once the callee
    // refused, the PBX told them so (busy_again_sound) before hanging up.
    let log = ast.log();
    assert!(
        log.contains(&format!("] Answer(\"{caller_phone}\"")),
        "{}",
        asterisk::tail(&log, 40)
    );
    let told = format!(
        "@featpkg-busy-callback-dial:3] Playback(\"{}",
        t.pbx_side(t.caller)
    );
    let log = wait_log(&ast, &mut s.ev, log_mark, "the busy-again sound", |l| {
        l.contains(&told)
    });
    let line = log.lines().find(|l| l.contains(&told)).unwrap();
    assert!(line.ends_with("\"vm-isonphone\") in new stack"), "{line}");
    assert!(
        log.contains("Playing 'vm-isonphone.gsm'"),
        "{}",
        asterisk::tail(&log, 40)
    );
    let answered = format!("{} answered the callback for {}", t.caller, t.callee);
    let ast_ref = &*ast;
    s.ev.until(&answered, WAIT, || watcher_log(ast_ref).contains(&answered));
    eprintln!(
        "{}: busy again: the caller's callback lasted {:.0} ms from ringing to the PBX \
         hanging up (PhoneRing to Hangup)",
        t.name,
        (s.ev.at(end1) - s.ev.at(ring1)).as_secs_f64() * 1000.0
    );
    let end1_ms =
        s.ev.wall(end1)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
    let ast_ref = &*ast;
    s.ev.until("the request waiting again", WAIT, || {
        read_req(ast_ref, t.caller, t.callee).is_some_and(|r| r.contains(" waiting "))
    });
    let text = read_req(&ast, t.caller, t.callee).unwrap();
    let not_before: u64 = text.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        text,
        format!(
            "{} {} {created} 1 1 waiting {not_before}\n",
            t.caller, t.callee
        ),
        "the request is kept, one attempt counted"
    );
    let wait_ms = not_before as i64 - end1_ms as i64;
    assert!(
        (RETRY_WAIT as i64 * 1000 - 500..=RETRY_WAIT as i64 * 1000 + 1000).contains(&wait_ms),
        "waits {wait_ms} ms after the callback ended"
    );
    let waits = format!(
        "featpkg busy-callback: the callback of {} for {} did not connect; waits again at least {RETRY_WAIT} s (attempt 1)",
        t.caller, t.callee
    );
    wait_log(&ast, &mut s.ev, 0, "the dial context's verdict", |l| {
        l.contains(&waits)
    });

    // Free again before the wait is over: the second callback connects.
    ast.set_phone(t.callee, PhoneMode::Answer);
    let ring2 = s.wait_callback_ring(end1, Duration::from_secs(RETRY_WAIT + 5));
    let gap_end = s.ev.at(ring2) - s.ev.at(end1);
    let gap_ring = s.ev.at(ring2) - s.ev.at(ring1);
    eprintln!(
        "{}: busy again: second callback rang the caller {:.3} s after the first ended \
         ({:.3} s after the first rang); retry_wait {RETRY_WAIT} s",
        t.name,
        gap_end.as_secs_f64(),
        gap_ring.as_secs_f64()
    );
    assert!(
        gap_end >= Duration::from_millis(RETRY_WAIT * 1000 - 500),
        "rung again {gap_end:?} after a callback that did not connect"
    );
    assert!(
        gap_end <= Duration::from_secs(RETRY_WAIT + 2),
        "{gap_end:?}"
    );
    assert_eq!(
        s.ev.all(m, ring_of(t.caller)),
        [ring1, ring2],
        "the caller was rung exactly twice"
    );
    s.callee_answers_and_both_talk(ring2);
    s.ev.pump(Duration::from_secs(2));
    assert_eq!(s.ev.all(m, ring_of(t.caller)).len(), 2, "no storm");
    assert!(
        s.ev.all(m, ring_of(t.callee)).len() == 2,
        "the callee was rung once per callback"
    );
    // Each callback's end, and the second one's answer (connected).
    agi.assert_served(&ast, begin, 3);
}

#[test]
fn pjsip_callee_busy_again_keeps_the_request_and_waits_retry_wait() {
    busy_again_keeps_the_request_and_waits(PJSIP, AgiMode::Process);
}

#[test]
fn pjsip_callee_busy_again_keeps_the_request_and_waits_retry_wait_over_fastagi() {
    busy_again_keeps_the_request_and_waits(PJSIP, AgiMode::Fastagi);
}

#[test]
fn iax2_callee_busy_again_keeps_the_request_and_waits_retry_wait() {
    busy_again_keeps_the_request_and_waits(IAX2, AgiMode::Process);
}

/// The caller does not answer the callbacks: with retries = 1 they are rung
/// twice, `ring` seconds each, `retry_wait` apart, then the request is dropped
/// and nobody is rung again.
fn unanswered_callbacks_stop_after_retries(t: Tech, mode: AgiMode) {
    let ast = asterisk::shared();
    let _agi = install(&ast, t, 1, mode);
    let mut s = Scene::new(&ast, t, mode);
    ast.set_phone(t.caller, PhoneMode::Ring);
    let created = unix_ms() / 1000 - 5;
    write_req(&ast, t.caller, t.callee, created);
    let m = s.ev.mark();
    let _watcher = ast.start_cron_command("busy-callback");
    let mut rings = Vec::new();
    let mut ends = Vec::new();
    for n in 1..=2u32 {
        let from = ends.last().copied().unwrap_or(m);
        let ring = s.wait_callback_ring(from, Duration::from_secs(RETRY_WAIT + 5));
        let phone = s.ev.msg(ring).get("Channel").unwrap().to_string();
        let end = s.ev.wait(
            ring,
            "the unanswered callback's end",
            Duration::from_secs(RING + 5),
            hangup_of(phone),
        );
        let rang = s.ev.at(end) - s.ev.at(ring);
        eprintln!(
            "{}: callback {n} rang the caller {:.3} s{}",
            t.name,
            rang.as_secs_f64(),
            ends.last()
                .map(|&e| format!(
                    ", {:.3} s after the previous one ended",
                    (s.ev.at(ring) - s.ev.at(e)).as_secs_f64()
                ))
                .unwrap_or_default()
        );
        assert!(
            rang >= Duration::from_millis(RING * 1000 - 500)
                && rang <= Duration::from_secs(RING + 2),
            "rang {rang:?}, ring = {RING} s"
        );
        if let Some(&prev) = ends.last() {
            let gap = s.ev.at(ring) - s.ev.at(prev);
            assert!(
                gap >= Duration::from_millis(RETRY_WAIT * 1000 - 500)
                    && gap <= Duration::from_secs(RETRY_WAIT + 2),
                "{gap:?}"
            );
        }
        rings.push(ring);
        ends.push(end);
        if n == 1 {
            let ast_ref = &*ast;
            s.ev.until("the request waiting again", WAIT, || {
                read_req(ast_ref, t.caller, t.callee).is_some_and(|r| {
                    r.starts_with(&format!("{} {} {created} 1 1 waiting ", t.caller, t.callee))
                })
            });
        }
    }
    let ast_ref = &*ast;
    s.ev.until("the request dropped", WAIT, || {
        read_req(ast_ref, t.caller, t.callee).is_none()
    });
    // The watcher logs it right after removing the file.
    let dropped = format!(
        "{} did not answer 2 callbacks for {}; dropped",
        t.caller, t.callee
    );
    s.ev.until(&dropped, WAIT, || watcher_log(ast_ref).contains(&dropped));
    // Nothing after: no third ring, nothing on disk.
    s.ev.pump(Duration::from_secs(RETRY_WAIT + 2));
    assert_eq!(s.ev.all(m, ring_of(t.caller)), rings);
    assert_eq!(req_files(&ast), Vec::<String>::new());
    assert!(
        s.ev.all(m, ring_of(t.callee)).is_empty(),
        "the callee is never rung for a callback the caller did not answer"
    );
}

#[test]
fn pjsip_callbacks_the_caller_does_not_answer_stop_after_retries() {
    unanswered_callbacks_stop_after_retries(PJSIP, AgiMode::Process);
}

#[test]
fn iax2_callbacks_the_caller_does_not_answer_stop_after_retries() {
    unanswered_callbacks_stop_after_retries(IAX2, AgiMode::Process);
}

/// A request is dropped `expiry` seconds after the digit press, even while
/// the callee stays busy; once the callee is free nobody is rung. (The
/// smallest expiry is 60 s: the request is written as pressed 57 s ago.)
fn a_request_expires(t: Tech, mode: AgiMode) {
    let ast = asterisk::shared();
    let _agi = install(&ast, t, 2, mode);
    let mut s = Scene::new(&ast, t, mode);
    let other_phone = s.put_on_a_call(t.other, t.callee);
    let created = unix_ms() / 1000 - (EXPIRY - 3);
    write_req(&ast, t.caller, t.callee, created);
    let m = s.ev.mark();
    let _watcher = ast.start_cron_command("busy-callback");
    s.ev.pump(Duration::from_millis(1000));
    assert!(
        read_req(&ast, t.caller, t.callee).is_some(),
        "gone before its expiry"
    );
    let ast_ref = &*ast;
    s.ev.until("the request expired", Duration::from_secs(6), || {
        read_req(ast_ref, t.caller, t.callee).is_none()
    });
    let gone_ms = unix_ms();
    let late = gone_ms as i64 - ((created + EXPIRY) * 1000) as i64;
    eprintln!(
        "{}: request gone {late} ms after its expiry (whole seconds)",
        t.name
    );
    assert!((0..=2000).contains(&late), "{late} ms");
    let expired = format!("request {} -> {} expired", t.caller, t.callee);
    s.ev.until(&expired, WAIT, || watcher_log(ast_ref).contains(&expired));
    // The callee hangs up: nobody is called back.
    ast.set_phone(t.callee, PhoneMode::Answer);
    hang_up(&mut s.ctl, &other_phone);
    s.wait_state(t.callee, t.idle);
    s.ev.pump(Duration::from_secs(2));
    assert!(s.ev.all(m, ring_of(t.caller)).is_empty());
}

#[test]
fn pjsip_a_request_expires_after_expiry() {
    a_request_expires(PJSIP, AgiMode::Process);
}

#[test]
fn iax2_a_request_expires_after_expiry() {
    a_request_expires(IAX2, AgiMode::Process);
}

/// `*601` cancels every request of the caller (one made by the offer, one
/// more), and only theirs; the caller hears the confirm sound.
fn star601_cancels(t: Tech, mode: AgiMode) {
    let ast = asterisk::shared();
    let begin = ast.log_mark();
    let agi = install(&ast, t, 2, mode);
    let mut s = Scene::new(&ast, t, mode);
    s.put_on_a_call(t.other, t.callee);
    s.offer_and_press();
    let now = unix_ms() / 1000;
    write_req(&ast, t.caller, t.other, now);
    write_req(&ast, t.other, t.callee, now);
    let theirs = read_req(&ast, t.other, t.callee).unwrap();
    assert_eq!(req_files(&ast).len(), 3);

    let mark = ast.log_mark();
    let m = s.ev.mark();
    ast.call(&mut s.ctl, t.caller, "*601");
    let i = s.ev.wait(
        m,
        "the PBX answering *601",
        WAIT,
        caller_answered(t.phone_side(t.caller)),
    );
    let phone = s.ev.msg(i).get("Channel").unwrap().to_string();
    s.ev.wait(m, "the PBX ending *601", WAIT, hangup_of(phone));
    // [internal] includes the cancel context: *601 runs there.
    let start = mode.agi_start("*601", "internal");
    let log = wait_log(&ast, &mut s.ev, mark, "the cancel", |l| l.contains(&start));
    let pbx = channel_after(&log, &start).unwrap();
    assert!(pbx.starts_with(&t.pbx_side(t.caller)), "{pbx}");
    let log = ast.log_since(mark);
    assert!(
        log.contains(&format!("<{pbx}> Playing 'auth-thankyou.")),
        "{}",
        asterisk::tail(&log, 40)
    );
    assert!(
        log.contains(&format!(
            "featpkg busy-callback: {} cancelled 2 callback(s)",
            t.caller
        )),
        "{}",
        asterisk::tail(&log, 40)
    );
    assert_eq!(
        req_files(&ast),
        [format!("{}-{}.req", t.other, t.callee)],
        "only the caller's requests are gone"
    );
    assert_eq!(read_req(&ast, t.other, t.callee).unwrap(), theirs);
    // The offer and the cancel.
    agi.assert_served(&ast, begin, 2);
}

#[test]
fn pjsip_star601_cancels_all_the_callers_requests() {
    star601_cancels(PJSIP, AgiMode::Process);
}

#[test]
fn pjsip_star601_cancels_all_the_callers_requests_over_fastagi() {
    star601_cancels(PJSIP, AgiMode::Fastagi);
}

#[test]
fn iax2_star601_cancels_all_the_callers_requests() {
    star601_cancels(IAX2, AgiMode::Process);
}

/// A waiting request survives the watcher being killed (the next cron start
/// calls back) and Asterisk restarting (the watcher reconnects and calls
/// back).
fn requests_survive_restarts(t: Tech, mode: AgiMode) {
    let mut ast = asterisk::shared();
    let begin = ast.log_mark();
    let agi = install(&ast, t, 2, mode);
    {
        let mut s = Scene::new(&ast, t, mode);
        let other_phone = s.put_on_a_call(t.other, t.callee);
        s.offer_and_press();
        let stored = read_req(&ast, t.caller, t.callee).unwrap();
        let mut watcher = ast.start_cron_command("busy-callback");
        let ast_ref = &*ast;
        s.ev.until("the watcher connected", WAIT, || {
            watcher_log(ast_ref).contains("connected to Asterisk")
        });
        s.ev.pump(Duration::from_millis(500));
        watcher.kill();
        assert_eq!(read_req(&ast, t.caller, t.callee), Some(stored.clone()));
        let _watcher = ast.start_cron_command("busy-callback");
        s.ev.until("the new watcher connected", WAIT, || {
            watcher_log(ast_ref)
                .matches("connected to Asterisk")
                .count()
                == 2
        });
        assert_eq!(read_req(&ast, t.caller, t.callee), Some(stored));
        ast.set_phone(t.callee, PhoneMode::Answer);
        let m = s.ev.mark();
        hang_up(&mut s.ctl, &other_phone);
        let ring = s.wait_callback_ring(m, WAIT);
        s.callee_answers_and_both_talk(ring);
    }

    // Asterisk restarts while the callee is on a call and a request waits.
    ast.cli("channel request hangup all");
    let watcher = ast.start_cron_command("busy-callback");
    let stored;
    {
        let mut s = Scene::new(&ast, t, mode);
        s.wait_state(t.caller, t.idle);
        s.wait_state(t.callee, t.idle);
        s.put_on_a_call(t.other, t.callee);
        s.offer_and_press();
        stored = read_req(&ast, t.caller, t.callee).unwrap();
        ast.set_phone(t.callee, PhoneMode::Answer);
        s.ev.pump(Duration::from_millis(500));
        assert!(read_req(&ast, t.caller, t.callee).is_some());
    }
    let before = watcher_log(&ast).matches("connected to Asterisk").count();
    ast.restart();
    let booted = Instant::now();
    // Kept, no attempt counted (the restart's hangups may have brought a
    // callback Asterisk refused while shutting down: that is nobody's
    // attempt).
    let text = read_req(&ast, t.caller, t.callee).expect("the request after the restart");
    let (was, now): (Vec<&str>, Vec<&str>) =
        (stored.split(' ').collect(), text.split(' ').collect());
    assert_eq!(
        (&was[..4], now[3]),
        (&now[..4], "0"),
        "{stored:?} -> {text:?}"
    );
    let mut s = Scene::new(&ast, t, mode);
    let ring = s.wait_callback_ring(0, Duration::from_secs(45));
    eprintln!(
        "{}: after the Asterisk restart (fully booted), the caller rang {:.3} s later",
        t.name,
        (s.ev.at(ring) - booted).as_secs_f64()
    );
    let log = watcher_log(&ast);
    assert!(log.contains("AMI connection lost"), "{log}");
    assert!(
        log.matches("connected to Asterisk").count() > before,
        "{log}"
    );
    s.callee_answers_and_both_talk(ring);
    assert_eq!(s.ev.all(0, ring_of(t.caller)), [ring], "one callback");
    drop(watcher);
    // Two offers, two answers (connected), two callbacks' ends.
    agi.assert_served(&ast, begin, 6);
}

#[test]
fn pjsip_requests_survive_a_watcher_restart_and_an_asterisk_restart() {
    requests_survive_restarts(PJSIP, AgiMode::Process);
}

#[test]
fn pjsip_requests_survive_a_watcher_restart_and_an_asterisk_restart_over_fastagi() {
    requests_survive_restarts(PJSIP, AgiMode::Fastagi);
}

#[test]
fn iax2_requests_survive_a_watcher_restart_and_an_asterisk_restart() {
    requests_survive_restarts(IAX2, AgiMode::Process);
}

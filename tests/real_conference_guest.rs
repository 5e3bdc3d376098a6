//! conference-guest on the real scratch Asterisk, with real PJSIP (201–203)
//! and IAX2 (301–303) employees and the guest dialled over the PJSIP or the
//! IAX2 trunk `provider` (installed with `tech=IAX2`). Each scenario runs once
//! per technology:
//!
//! * two employees enter ConfBridge(700) within a millisecond: exactly one
//!   guest leg (one Originate in the watcher's log, with the technology's own
//!   dial string; one channel to the provider; one ring at the far end); the
//!   far end hears the DTMF `7`, `0`, `0`; the guest is in the conference
//!   (`confbridge list 700`); the first employee leaving keeps the guest; the
//!   last one leaving releases the guest's line at once (measured from the
//!   employee's ConfbridgeLeave to the Hangup of the PBX's channel to the
//!   provider and to the far end's PhoneHangup; the watcher's AMI Hangup and
//!   the far end's hang-up also timed from Asterisk's log) with no prompt
//!   (no `Playing` on the guest's channels, no conf-kicked); nobody is
//!   dialled for an empty conference;
//! * the end of a meeting: three employees hang up at the same instant (each
//!   queues ConfBridge's leave sound): the guest's line still goes at once;
//! * the only employee hangs up while the guest has answered but is not in
//!   yet: its line goes at once, it never joins, nobody is dialled again;
//! * the guest hangs up while an employee remains: re-dialled after the
//!   backoff (1 s, then 2 s: measured from the guest's ConfbridgeLeave to
//!   the next ring), and after `attempts` legs no more until the conference
//!   empties; a new employee then brings the guest back;
//! * a guest line that is busy: `attempts` tries, then none;
//! * the watcher killed and started again by its cron line while the guest is
//!   in: no second leg, and the new watcher still releases the guest's line;
//!   a second cron start while one runs exits at once;
//! * Asterisk restarted under the watcher: it reconnects and the next
//!   conference gets its guest (one leg) again.
//!
//! The watcher runs as its installed cron line starts it. The far end is the
//! harness's `[phones]` exten 5551234 (`PhoneRing`/`PhoneAnswer`/`PhoneDtmf`/
//! `PhoneHangup` UserEvents). The guest is whatever participant of the
//! conference is none of the employees, so the tests hold whichever channel
//! the feature joins it with. The test listens on an AMI connection of its
//! own that sends nothing (so every event's arrival time is when it came in)
//! and acts over a second one with events off.

mod common;

use std::time::{Duration, Instant};

use common::asterisk::{self, Asterisk, PhoneMode};
use common::events::{Events, caller_answered, hangup_of, user_event};
use featpkg_ami::{Ami, AmiError, Message, action};

const WAIT: Duration = Duration::from_secs(15);
const CONFERENCE: &str = "700";
const NUMBER: &str = "5551234";
/// The feature's smallest backoff (feature.json `min`), in seconds.
const BACKOFF: u64 = 1;
/// The feature's smallest ring time (feature.json `min`), in seconds.
const RING: u64 = 10;
const LOG: &str = "featpkg-conference-guest.log";

/// One technology's employees and trunk.
#[derive(Clone, Copy, Debug)]
struct Tech {
    name: &'static str,
    employees: [&'static str; 3],
    /// The Originate `Channel` the watcher must use for the guest.
    dial: &'static str,
}

const PJSIP: Tech = Tech {
    name: "PJSIP",
    employees: ["201", "202", "203"],
    dial: "PJSIP/5551234@provider",
};

const IAX2: Tech = Tech {
    name: "IAX2",
    employees: ["301", "302", "303"],
    dial: "IAX2/provider/5551234",
};

impl Tech {
    /// How the channel a phone places its own calls on is named (phone side).
    fn phone_side(&self, ext: &str) -> String {
        match self.name {
            "PJSIP" => format!("PJSIP/phone{ext}-"),
            _ => format!("IAX2/pbx{ext}-"),
        }
    }

    /// How the PBX's channel from a phone is named (what joins ConfBridge).
    fn pbx_side(&self, ext: &str) -> String {
        format!("{}/{ext}-", self.name)
    }

    /// How the PBX's channel to the provider trunk is named (the guest leg).
    fn guest_side(&self) -> String {
        format!("{}/provider-", self.name)
    }

    /// Is `channel` the PBX's channel from one of the employees' phones?
    fn is_employee(&self, channel: &str) -> bool {
        self.employees
            .iter()
            .any(|e| channel.starts_with(&self.pbx_side(e)))
    }
}

/// Installs conference-guest for `t`: conference 700, guest 5551234 through
/// the trunk `provider`, the smallest backoff and ring time the feature allows.
fn install(ast: &Asterisk, t: Tech, attempts: u32) {
    let bundle = common::bundle();
    let sets = [
        format!("conference-guest.conference={CONFERENCE}"),
        "conference-guest.provider=provider".to_string(),
        format!("conference-guest.number={NUMBER}"),
        format!("conference-guest.tech={}", t.name),
        format!("conference-guest.attempts={attempts}"),
        format!("conference-guest.backoff={BACKOFF}"),
        format!("conference-guest.ring={RING}"),
    ];
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "conference-guest",
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    ast.featpkg_ok(&args);
    // The harness's reset keeps the log directory: start this test's watcher
    // log afresh.
    let _ = std::fs::remove_file(ast.log_dir().join(LOG));
    ast.set_phone(NUMBER, PhoneMode::Answer);
}

fn watcher_log(ast: &Asterisk) -> String {
    std::fs::read_to_string(ast.log_dir().join(LOG)).unwrap_or_default()
}

/// The watcher's Originates of the guest leg, as its log records them.
fn dialled_lines(ast: &Asterisk) -> Vec<String> {
    watcher_log(ast)
        .lines()
        .filter(|l| l.contains("dialling the guest"))
        .map(str::to_string)
        .collect()
}

/// The far end (5551234) rings.
fn guest_ring(m: &Message) -> bool {
    user_event("PhoneRing", &[("Exten", NUMBER)])(m)
}

fn guest_answer(m: &Message) -> bool {
    user_event("PhoneAnswer", &[("Exten", NUMBER)])(m)
}

fn guest_far_hangup(m: &Message) -> bool {
    user_event("PhoneHangup", &[("Exten", NUMBER)])(m)
}

/// A channel whose name starts with `prefix` joined conference 700.
fn joined(prefix: String) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("ConfbridgeJoin")
            && m.get("Conference") == Some(CONFERENCE)
            && m.get("Channel").is_some_and(|c| c.starts_with(&prefix))
    }
}

fn left(channel: String) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("ConfbridgeLeave")
            && m.get("Conference") == Some(CONFERENCE)
            && m.get("Channel") == Some(channel.as_str())
    }
}

/// The PBX opens a channel whose name starts with `prefix`.
fn new_channel(prefix: String) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("Newchannel") && m.get("Channel").is_some_and(|c| c.starts_with(&prefix))
    }
}

fn hang_up(ctl: &mut Ami, channel: &str) {
    match ctl.send(action("Hangup", &[("Channel", channel)]).unwrap()) {
        Ok(_) => {}
        Err(AmiError::Refused(m)) if m.contains("No such channel") => {}
        Err(e) => panic!("Hangup {channel}: {e}"),
    }
}

/// Seconds since midnight of an Asterisk log line (`[2026-12-04 18:43:53.047] …`).
fn log_secs(line: &str) -> f64 {
    let time = &line[line.find(' ').unwrap() + 1..line.find(']').unwrap()];
    let mut parts = time.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 60.0 + m) * 60.0 + s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An employee in the conference: the phone's own channel (hanging it up is
/// the employee hanging up) and the PBX's channel in ConfBridge.
#[derive(Debug, Clone)]
struct Employee {
    phone: String,
    pbx: String,
    /// Index of their ConfbridgeJoin event.
    join: usize,
}

/// The guest in the conference.
#[derive(Debug, Clone)]
struct Guest {
    /// The far end's channel (5551234 in `[phones]`).
    far: String,
    /// The PBX's channel to the provider: the paid line.
    line: String,
    /// The guest's participant channel in ConfBridge (whatever channel the
    /// feature joins it with).
    member: String,
    ring: usize,
}

/// One test's view of the PBX.
struct Scene<'a> {
    ast: &'a Asterisk,
    t: Tech,
    ctl: Ami,
    ev: Events,
}

impl<'a> Scene<'a> {
    fn new(ast: &'a Asterisk, t: Tech) -> Scene<'a> {
        Scene {
            ast,
            t,
            ctl: ast.control_ami(),
            ev: Events::new(ast),
        }
    }

    /// Waits until the watcher's log says it connected `n` times.
    fn watcher_connected(&mut self, n: usize) {
        let ast = self.ast;
        self.ev.until("the watcher connected", WAIT, || {
            watcher_log(ast).matches("connected to Asterisk").count() >= n
        });
    }

    /// Phones `exts` dial 700 one right after the other; returns them once
    /// the PBX answered and each is in the conference.
    fn join(&mut self, exts: &[&str]) -> Vec<Employee> {
        let m = self.ev.mark();
        for ext in exts {
            self.ast.call(&mut self.ctl, ext, CONFERENCE);
        }
        exts.iter()
            .map(|ext| {
                let a = self.ev.wait(
                    m,
                    &format!("{ext}'s call answered"),
                    WAIT,
                    caller_answered(self.t.phone_side(ext)),
                );
                let join = self.ev.wait(
                    m,
                    &format!("{ext} in conference {CONFERENCE}"),
                    WAIT,
                    joined(self.t.pbx_side(ext)),
                );
                Employee {
                    phone: self.ev.channel(a),
                    pbx: self.ev.channel(join),
                    join,
                }
            })
            .collect()
    }

    /// The guest leg from `from` on: the PBX opens a channel to the
    /// provider, the far end rings and answers, the guest joins the
    /// conference (a participant that is none of the employees).
    fn guest_joins(&mut self, from: usize) -> Guest {
        let line = self.ev.wait(
            from,
            "the PBX's channel to the provider",
            WAIT,
            new_channel(self.t.guest_side()),
        );
        let ring = self.ev.wait(from, "the guest's ring", WAIT, guest_ring);
        let far = self.ev.channel(ring);
        self.ev.wait(ring, "the guest's answer", WAIT, guest_answer);
        let t = self.t;
        let join = self
            .ev
            .wait(ring, "the guest in the conference", WAIT, |m| {
                joined(String::new())(m) && !t.is_employee(m.get("Channel").unwrap_or_default())
            });
        Guest {
            far,
            line: self.ev.channel(line),
            member: self.ev.channel(join),
            ring,
        }
    }

    /// The conference as `confbridge list 700` shows it.
    fn conference(&self) -> String {
        self.ast.cli(&format!("confbridge list {CONFERENCE}"))
    }

    /// The employee hangs up; returns the index of their ConfbridgeLeave.
    fn leave(&mut self, e: &Employee) -> usize {
        let m = self.ev.mark();
        hang_up(&mut self.ctl, &e.phone);
        self.ev.wait(
            m,
            &format!("{} leaving the conference", e.pbx),
            WAIT,
            left(e.pbx.clone()),
        )
    }

    /// The last employee `e` hangs up: see [`Scene::last_leave_at_once`].
    fn last_leaves(&mut self, e: &Employee, guest: &Guest) -> Duration {
        self.last_leave_at_once(&[e], guest)
    }

    /// The employees `es` (the last ones in) hang up at once: waits for the
    /// guest's leg to go (the PBX channel's Hangup, the far end's
    /// PhoneHangup), reports the delays (events, and Asterisk's log: the
    /// watcher's AMI Hangup, what ConfBridge played into the conference
    /// meanwhile) and returns the far end's: from the last employee's
    /// ConfbridgeLeave to the far end's PhoneHangup.
    fn last_leave_at_once(&mut self, es: &[&Employee], guest: &Guest) -> Duration {
        let log_mark = self.ast.log_mark();
        let m = self.ev.mark();
        let sent = Instant::now();
        for e in es {
            hang_up(&mut self.ctl, &e.phone);
        }
        let (leave, e) = es
            .iter()
            .map(|e| {
                let i = self.ev.wait(
                    m,
                    &format!("{} leaving the conference", e.pbx),
                    WAIT,
                    left(e.pbx.clone()),
                );
                (i, *e)
            })
            .max_by_key(|(i, _)| *i)
            .unwrap();
        let pbx_hangup = self.ev.wait(
            leave,
            "the Hangup of the guest's line",
            WAIT,
            hangup_of(guest.line.clone()),
        );
        let far_hangup = self
            .ev
            .wait(leave, "the far end's hang-up", WAIT, guest_far_hangup);
        assert_eq!(
            self.ev.msg(far_hangup).get("Channel"),
            Some(guest.far.as_str())
        );
        let to_pbx = self.ev.at(pbx_hangup) - self.ev.at(leave);
        let to_far = self.ev.at(far_hangup) - self.ev.at(leave);
        let from_phone = self.ev.at(far_hangup) - sent;
        // The same from Asterisk's log: the employee leaving the bridge, the
        // watcher's AMI Hangup, the far end's hang-up handler.
        let pbx_log = self.ast.log_since(log_mark);
        let at = |what: &str| {
            pbx_log
                .lines()
                .find(|l| l.contains(what))
                .map(log_secs)
                .unwrap_or_else(|| panic!("the log shows no {what}:\n{pbx_log}"))
        };
        let employee_left = at(&format!("Channel {} left 'softmix'", e.pbx));
        let watcher_hangup =
            at("Manager 'featpkg-conference-guest' from 127.0.0.1, hanging up channel: ");
        let far_gone = at(&format!("UserEvent(\"{}\", \"PhoneHangup", guest.far));
        let played: Vec<String> = pbx_log
            .lines()
            .filter(|l| l.contains("<CBAnn/") && l.contains("Playing"))
            .filter(|l| log_secs(l) <= far_gone)
            .map(|l| {
                let at = (log_secs(l) - employee_left) * 1000.0;
                let what = &l[l.find("Playing").unwrap()..];
                format!("{at:+.0} ms {what}")
            })
            .collect();
        eprintln!(
            "{}: last employee's ConfbridgeLeave -> Hangup of the guest's line {:.1} ms, -> far end \
             PhoneHangup {:.1} ms; employee's hang-up sent -> far end PhoneHangup {:.1} ms. \
             Asterisk's log: employee left the bridge -> watcher's AMI Hangup {:.0} ms -> far \
             end hung up {:.0} ms; played into the conference meanwhile: {played:?}",
            self.t.name,
            ms(to_pbx),
            ms(to_far),
            ms(from_phone),
            (watcher_hangup - employee_left) * 1000.0,
            (far_gone - employee_left) * 1000.0,
        );
        // The watcher's part: at once.
        assert!(
            watcher_hangup - employee_left < 0.2,
            "the watcher hung the guest up {:.0} ms after the last employee left",
            (watcher_hangup - employee_left) * 1000.0
        );
        let log = watcher_log(self.ast);
        assert!(
            log.contains(&format!(
                "no employee in conference {CONFERENCE}; hanging up the guest "
            )),
            "{log}"
        );
        to_far
    }
}

/// Two employees join at once: one leg, DTMF, guest in; the last employee
/// leaving hangs the guest up at once and without a prompt.
fn one_guest_leg_then_dropped_with_the_last_employee(t: Tech) {
    let ast = asterisk::shared();
    install(&ast, t, 5);
    let mut s = Scene::new(&ast, t);
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);
    let log_mark = ast.log_mark();
    let m = s.ev.mark();

    let employees = s.join(&t.employees[..2]);
    let (a, b) = (&employees[0], &employees[1]);
    // Both entered ConfBridge() at once; the one ConfBridge took for the
    // first hears conf-onlyperson before it is in the bridge (its
    // ConfbridgeJoin comes seconds later).
    let pbx_log = ast.log_since(log_mark);
    let entered = |e: &Employee| {
        let call = format!("ConfBridge(\"{}\", \"{CONFERENCE}\")", e.pbx);
        let line = pbx_log
            .lines()
            .find(|l| l.contains(&call))
            .unwrap_or_else(|| panic!("the log shows no {call}"));
        log_secs(line)
    };
    let gap = (entered(a) - entered(b)).abs() * 1000.0;
    let joins = s.ev.at(b.join.max(a.join)) - s.ev.at(b.join.min(a.join));
    eprintln!(
        "{}: the two employees entered ConfBridge {gap:.0} ms apart (log); their \
         ConfbridgeJoin events arrived {:.1} ms apart",
        t.name,
        ms(joins)
    );
    assert!(
        gap <= 50.0,
        "the employees did not join at once: {gap} ms apart"
    );

    let guest = s.guest_joins(m);
    // The far end hears the conference number, digit by digit.
    s.ev.until("the DTMF at the far end", WAIT, || {
        ast.phone_dtmf(NUMBER).len() >= 3
    });
    // Long enough for a second leg to ring if one had been placed.
    s.ev.pump(Duration::from_secs(2));
    assert_eq!(ast.phone_dtmf(NUMBER), CONFERENCE, "DTMF the far end heard");
    let digits: Vec<&str> =
        s.ev.all(m, user_event("PhoneDtmf", &[("Exten", NUMBER)]))
            .into_iter()
            .map(|i| s.ev.msg(i).get("Digit").unwrap_or_default())
            .collect();
    assert_eq!(digits, ["7", "0", "0"]);
    assert_eq!(
        s.ev.all(m, guest_ring),
        [guest.ring],
        "exactly one guest leg for two simultaneous joins"
    );
    assert_eq!(
        s.ev.all(m, new_channel(t.guest_side())).len(),
        1,
        "one channel to the provider"
    );
    let dialled = dialled_lines(&ast);
    assert_eq!(dialled.len(), 1, "{}", watcher_log(&ast));
    assert!(
        dialled[0].contains(&format!(
            "dialling the guest {} for conference {CONFERENCE}",
            t.dial
        )),
        "{}",
        dialled[0]
    );
    let list = s.conference();
    for channel in [&a.pbx, &b.pbx, &guest.member] {
        assert!(list.contains(channel.as_str()), "{channel} not in:\n{list}");
    }
    let others = s.ev.all(m, |e| {
        joined(String::new())(e) && !t.is_employee(e.get("Channel").unwrap_or_default())
    });
    assert_eq!(others.len(), 1, "one guest in the conference");

    // The first employee leaves: the guest stays.
    s.leave(a);
    let after_first = s.ev.mark();
    s.ev.pump(Duration::from_millis(1500));
    assert!(
        s.ev.all(after_first, hangup_of(guest.line.clone()))
            .is_empty(),
        "the guest was dropped while {} was still in",
        b.pbx
    );
    assert!(s.conference().contains(guest.member.as_str()));

    // The last one leaves: the guest's line goes at once.
    let dropped = s.last_leaves(b, &guest);
    assert!(dropped < Duration::from_secs(1), "{dropped:?}");

    // Nobody is dialled for an empty conference (longer than the backoff).
    let gone = s.ev.mark();
    s.ev.pump(Duration::from_millis(BACKOFF * 1000 * 3));
    assert!(s.ev.all(gone, guest_ring).is_empty(), "re-dialled");
    assert_eq!(dialled_lines(&ast).len(), 1, "{}", watcher_log(&ast));
    assert!(!s.conference().contains(&guest.member));

    // What the guest heard: the DTMF, then the conference; ConfBridge played
    // nothing on the guest's channel (no conf-kicked, no prompt at all).
    // ConfBridge's prompts to a participant show as `<channel> Playing`:
    // the employee it took for the first heard conf-onlyperson.
    let pbx_log = ast.log_since(log_mark);
    for step in [
        format!("ConfBridge(\"{}\", \"{CONFERENCE}\")", guest.member),
        "> Playing 'conf-onlyperson.gsm'".to_string(),
    ] {
        assert!(
            pbx_log.contains(&step),
            "the log shows no {step}:\n{}",
            asterisk::tail(&pbx_log, 80)
        );
    }
    assert!(
        [&guest.line, &guest.member]
            .iter()
            .any(|c| pbx_log.contains(&format!("SendDTMF(\"{c}\", \"{CONFERENCE}\")"))),
        "the log shows no SendDTMF of {CONFERENCE} to the guest"
    );
    let played: Vec<&str> = pbx_log
        .lines()
        .filter(|l| {
            l.contains(&format!("<{}> Playing", guest.line))
                || l.contains(&format!("<{}> Playing", guest.member))
        })
        .collect();
    assert!(played.is_empty(), "played to the guest: {played:#?}");
    assert!(!pbx_log.contains("conf-kicked"), "conf-kicked was played");
}

#[test]
fn pjsip_two_employees_at_once_one_guest_leg_dtmf_then_dropped_with_the_last() {
    one_guest_leg_then_dropped_with_the_last_employee(PJSIP);
}

#[test]
fn iax2_two_employees_at_once_one_guest_leg_dtmf_then_dropped_with_the_last() {
    one_guest_leg_then_dropped_with_the_last_employee(IAX2);
}

/// The guest hangs up while an employee remains: dialled again after 1 s,
/// then 2 s; the third leg's hang-up is the last (attempts = 3) until the
/// conference empties; a new employee then brings the guest back.
fn guest_hangs_up_redialled_with_backoff_until_the_limit(t: Tech) {
    const ATTEMPTS: u32 = 3;
    let ast = asterisk::shared();
    install(&ast, t, ATTEMPTS);
    let mut s = Scene::new(&ast, t);
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);
    let m = s.ev.mark();
    let employee = s.join(&t.employees[..1]).remove(0);
    let mut guest = s.guest_joins(m);
    for attempt in 1..=ATTEMPTS {
        // The guest hangs up (their own phone: the far end's channel).
        let before = s.ev.mark();
        let sent = Instant::now();
        hang_up(&mut s.ctl, &guest.far);
        let far =
            s.ev.wait(before, "the guest hanging up", WAIT, guest_far_hangup);
        let out = s.ev.wait(
            before,
            "the guest leaving the conference",
            WAIT,
            left(guest.member.clone()),
        );
        let gone = s.ev.wait(
            before,
            "the guest's line hanging up",
            WAIT,
            hangup_of(guest.line.clone()),
        );
        if attempt == ATTEMPTS {
            break;
        }
        let next = s.guest_joins(out);
        let delay = s.ev.at(next.ring) - s.ev.at(out);
        // The backoff doubles: 1 s, 2 s, 4 s…
        let want = Duration::from_millis((BACKOFF * 1000) << (attempt - 1));
        eprintln!(
            "{}: guest hang-up {attempt} (far end PhoneHangup {:.0} ms after the hang-up \
             was sent; the guest's ConfbridgeLeave {:.0} ms, the Hangup of its line {:.0} ms) \
             -> the far end rings again {:.1} ms after the ConfbridgeLeave, {:.1} ms after the \
             far end hung up (backoff {} ms)",
            t.name,
            ms(s.ev.at(far) - sent),
            ms(s.ev.at(out) - sent),
            ms(s.ev.at(gone) - sent),
            ms(delay),
            ms(s.ev.at(next.ring) - s.ev.at(far)),
            want.as_millis()
        );
        assert!(
            delay + Duration::from_millis(50) >= want && delay < want + Duration::from_millis(800),
            "re-dial {attempt} after {delay:?}, backoff {want:?}"
        );
        // Each leg sends the DTMF again.
        let want = CONFERENCE.repeat(attempt as usize + 1);
        s.ev.until("the DTMF at the far end", WAIT, || {
            ast.phone_dtmf(NUMBER) == want
        });
        guest = next;
    }
    // After the third leg: no more while the employee stays (longer than
    // the next backoff, 4 s, would be).
    let last = s.ev.mark();
    s.ev.pump(Duration::from_millis(BACKOFF * 1000 * 6));
    assert!(
        s.ev.all(last, guest_ring).is_empty(),
        "dialled again after {ATTEMPTS} attempts"
    );
    assert_eq!(s.ev.all(m, guest_ring).len(), ATTEMPTS as usize);
    let log = watcher_log(&ast);
    assert_eq!(dialled_lines(&ast).len(), ATTEMPTS as usize, "{log}");
    assert!(
        log.contains(&format!(
            "guest leg failed {ATTEMPTS} times; giving up until the conference empties"
        )),
        "{log}"
    );
    assert!(
        s.conference().contains(&employee.pbx),
        "the employee is still in"
    );

    // The conference empties; the next employee brings the guest back.
    s.leave(&employee);
    s.ev.pump(Duration::from_millis(500));
    let again = s.ev.mark();
    let next = s.join(&t.employees[1..2]).remove(0);
    let guest = s.guest_joins(again);
    assert_eq!(s.ev.all(again, guest_ring), [guest.ring]);
    let dropped = s.last_leaves(&next, &guest);
    assert!(dropped < Duration::from_secs(1), "{dropped:?}");
}

#[test]
fn pjsip_guest_hangs_up_redialled_after_backoff_until_the_attempt_limit() {
    guest_hangs_up_redialled_with_backoff_until_the_limit(PJSIP);
}

#[test]
fn iax2_guest_hangs_up_redialled_after_backoff_until_the_attempt_limit() {
    guest_hangs_up_redialled_with_backoff_until_the_limit(IAX2);
}

/// A guest line that is busy: `attempts` tries (1 s, 2 s apart), then none.
fn busy_guest_tried_attempts_times(t: Tech) {
    const ATTEMPTS: u32 = 3;
    let ast = asterisk::shared();
    install(&ast, t, ATTEMPTS);
    ast.set_phone(NUMBER, PhoneMode::Busy);
    let mut s = Scene::new(&ast, t);
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);
    let m = s.ev.mark();
    let employee = s.join(&t.employees[..1]).remove(0);
    let ast_ref = &*ast;
    s.ev.until("the watcher giving up", WAIT, || {
        watcher_log(ast_ref).contains("giving up")
    });
    s.ev.pump(Duration::from_millis(BACKOFF * 1000 * 6));
    let rings = s.ev.all(m, guest_ring);
    let gaps: Vec<f64> = rings
        .windows(2)
        .map(|w| ms(s.ev.at(w[1]) - s.ev.at(w[0])))
        .collect();
    eprintln!(
        "{}: busy guest rung {} times, {gaps:.0?} ms apart",
        t.name,
        rings.len()
    );
    assert_eq!(rings.len(), ATTEMPTS as usize, "{}", watcher_log(&ast));
    assert_eq!(dialled_lines(&ast).len(), ATTEMPTS as usize);
    assert!(s.ev.all(m, guest_answer).is_empty());
    assert!(s.conference().contains(&employee.pbx));
}

#[test]
fn pjsip_busy_guest_is_tried_attempts_times_then_not_again() {
    busy_guest_tried_attempts_times(PJSIP);
}

#[test]
fn iax2_busy_guest_is_tried_attempts_times_then_not_again() {
    busy_guest_tried_attempts_times(IAX2);
}

/// The watcher is killed while the guest is in; cron starts it again: it
/// takes the guest in the conference for its own (no second leg) and drops
/// it with the last employee. A cron start while one runs exits at once.
fn watcher_restart_keeps_one_leg(t: Tech) {
    let ast = asterisk::shared();
    install(&ast, t, 5);
    let mut s = Scene::new(&ast, t);
    let mut watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);

    // A second copy (cron's next minute) leaves at once.
    let mut second = ast.start_cron_command("conference-guest");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a second watcher kept running"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    let m = s.ev.mark();
    let employee = s.join(&t.employees[..1]).remove(0);
    let guest = s.guest_joins(m);
    watcher.kill();
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(2);
    s.ev.pump(Duration::from_secs(3));
    assert_eq!(
        s.ev.all(m, guest_ring),
        [guest.ring],
        "a second leg after the watcher's restart:\n{}",
        watcher_log(&ast)
    );
    assert_eq!(dialled_lines(&ast).len(), 1, "{}", watcher_log(&ast));
    let list = s.conference();
    assert!(list.contains(&guest.member), "{list}");

    let dropped = s.last_leaves(&employee, &guest);
    assert!(dropped < Duration::from_secs(1), "{dropped:?}");
}

#[test]
fn pjsip_watcher_restarted_while_the_guest_is_in_places_no_second_leg() {
    watcher_restart_keeps_one_leg(PJSIP);
}

#[test]
fn iax2_watcher_restarted_while_the_guest_is_in_places_no_second_leg() {
    watcher_restart_keeps_one_leg(IAX2);
}

/// Asterisk restarts under the watcher while a conference with its guest is
/// on: the watcher reconnects and the next conference gets one guest leg,
/// dropped with the last employee.
fn asterisk_restart_watcher_reconnects(t: Tech) {
    let mut ast = asterisk::shared();
    install(&ast, t, 5);
    let watcher = ast.start_cron_command("conference-guest");
    {
        let mut s = Scene::new(&ast, t);
        s.watcher_connected(1);
        let m = s.ev.mark();
        s.join(&t.employees[..1]);
        s.guest_joins(m);
    }
    ast.restart();
    let booted = Instant::now();
    let mut s = Scene::new(&ast, t);
    s.watcher_connected(2);
    let reconnected = booted.elapsed();
    eprintln!(
        "{}: the watcher reconnected {:.0} ms after Asterisk was fully booted again",
        t.name,
        ms(reconnected)
    );
    let log = watcher_log(&ast);
    assert!(log.contains("AMI connection lost"), "{log}");
    // Nobody in the conference: nobody dialled.
    let m = s.ev.mark();
    s.ev.pump(Duration::from_secs(2));
    assert!(s.ev.all(m, guest_ring).is_empty());
    assert_eq!(dialled_lines(&ast).len(), 1, "{log}");

    let heard = ast.phone_dtmf(NUMBER);
    let employees = s.join(&t.employees[1..3]);
    let guest = s.guest_joins(m);
    let want = format!("{heard}{CONFERENCE}");
    s.ev.until("the DTMF at the far end", WAIT, || {
        ast.phone_dtmf(NUMBER) == want
    });
    s.ev.pump(Duration::from_secs(1));
    assert_eq!(s.ev.all(m, guest_ring), [guest.ring], "one leg");
    s.leave(&employees[0]);
    let dropped = s.last_leaves(&employees[1], &guest);
    assert!(dropped < Duration::from_secs(1), "{dropped:?}");
    drop(watcher);
}

#[test]
fn pjsip_asterisk_restarted_the_watcher_reconnects_and_still_dials_the_guest() {
    asterisk_restart_watcher_reconnects(PJSIP);
}

#[test]
fn iax2_asterisk_restarted_the_watcher_reconnects_and_still_dials_the_guest() {
    asterisk_restart_watcher_reconnects(IAX2);
}

/// The end of a meeting: three employees hang up at the same instant. The
/// guest's line goes within a second of the last one leaving.
fn everyone_hangs_up_at_once(t: Tech) {
    let ast = asterisk::shared();
    install(&ast, t, 5);
    let mut s = Scene::new(&ast, t);
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);
    let m = s.ev.mark();
    let employees = s.join(&t.employees);
    let guest = s.guest_joins(m);
    // Past the sounds of the joins.
    s.ev.pump(Duration::from_secs(2));
    let all: Vec<&Employee> = employees.iter().collect();
    let dropped = s.last_leave_at_once(&all, &guest);
    assert!(dropped < Duration::from_secs(1), "{dropped:?}");
}

#[test]
fn pjsip_everyone_hangs_up_at_once_the_guest_goes_within_a_second() {
    everyone_hangs_up_at_once(PJSIP);
}

#[test]
fn iax2_everyone_hangs_up_at_once_the_guest_goes_within_a_second() {
    everyone_hangs_up_at_once(IAX2);
}

/// The only employee hangs up while the guest has answered but is not in the
/// conference yet (the leg waits a second, then sends the DTMF): the guest's
/// line goes at once all the same, it never joins, nobody is dialled again.
fn last_employee_leaves_before_the_guest_is_in(t: Tech) {
    let ast = asterisk::shared();
    install(&ast, t, 5);
    let mut s = Scene::new(&ast, t);
    let _watcher = ast.start_cron_command("conference-guest");
    s.watcher_connected(1);
    let m = s.ev.mark();
    let employee = s.join(&t.employees[..1]).remove(0);
    let line = s.ev.wait(
        m,
        "the PBX's channel to the provider",
        WAIT,
        new_channel(t.guest_side()),
    );
    let line = s.ev.channel(line);
    let ring = s.ev.wait(m, "the guest's ring", WAIT, guest_ring);
    s.ev.wait(ring, "the guest's answer", WAIT, guest_answer);
    let leave = s.leave(&employee);
    let line_gone = s.ev.wait(
        leave,
        "the Hangup of the guest's line",
        WAIT,
        hangup_of(line.clone()),
    );
    let far_gone =
        s.ev.wait(leave, "the far end's hang-up", WAIT, guest_far_hangup);
    let to_line = s.ev.at(line_gone) - s.ev.at(leave);
    let to_far = s.ev.at(far_gone) - s.ev.at(leave);
    eprintln!(
        "{}: the employee left before the guest joined: ConfbridgeLeave -> Hangup of the \
         guest's line {:.1} ms, -> far end PhoneHangup {:.1} ms",
        t.name,
        ms(to_line),
        ms(to_far)
    );
    assert!(to_far < Duration::from_secs(1), "{to_far:?}");
    let log = watcher_log(&ast);
    assert!(
        log.contains(&format!(
            "no employee in conference {CONFERENCE}; hanging up the guest "
        )),
        "{log}"
    );
    // Longer than the leg's way into the conference and than the backoff.
    s.ev.pump(Duration::from_secs(3));
    let guests_in = s.ev.all(m, |e| {
        joined(String::new())(e) && !t.is_employee(e.get("Channel").unwrap_or_default())
    });
    assert!(guests_in.is_empty(), "the guest joined an empty conference");
    assert_eq!(s.ev.all(m, guest_ring), [ring], "dialled again");
    assert_eq!(dialled_lines(&ast).len(), 1, "{}", watcher_log(&ast));
}

#[test]
fn pjsip_last_employee_leaves_before_the_guest_is_in_its_line_goes_at_once() {
    last_employee_leaves_before_the_guest_is_in(PJSIP);
}

#[test]
fn iax2_last_employee_leaves_before_the_guest_is_in_its_line_goes_at_once() {
    last_employee_leaves_before_the_guest_is_in(IAX2);
}

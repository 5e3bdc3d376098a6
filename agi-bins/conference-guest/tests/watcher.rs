//! The conference-guest watcher against a fake Asterisk manager on 127.0.0.1
//! speaking the real framing: one guest leg per conference however employees
//! join, dialled with each technology's own dial string, its provider channel
//! hung up (AMI `Hangup`, never `ConfbridgeKick`) within a second of the last
//! employee leaving, re-dialled with bounded backoff, recognised again after a
//! restart. The guest's participant in ConfBridge is the Local channel half
//! that runs `join@featpkg-conference-guest-leg` (the leg context bridges the
//! provider channel to it); everybody else is an employee.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use featpkg_ami::Message;
use featpkg_ami::fake::{FakeAmi, msg, standard_reply};

const WATCH: &str = env!("CARGO_BIN_EXE_featpkg-conference-guest-watch");
/// The guest leg's provider channel (its OriginateResponse names it).
const GUEST: &str = "PJSIP/provider-0000000a";
/// The guest's participant in the conference: core_local names the halves
/// `Local/<exten>@<context>-<8 hex>;1` and `;2`, and `;2` runs `join`.
const MEMBER: &str = "Local/join@featpkg-conference-guest-leg-0000000b;2";
/// The half bridged to the provider channel: what a restarted watcher, which
/// does not know the provider channel's name, hangs up.
const MEMBER_LINE: &str = "Local/join@featpkg-conference-guest-leg-0000000b;1";
/// The guest leg's provider channel when the provider is an IAX2 peer
/// (chan_iax2 names channels `IAX2/<peer>-<call number>`).
const IAX2_GUEST: &str = "IAX2/provider-1234";

struct Pbx {
    dir: tempfile::TempDir,
    ami: FakeAmi,
    /// `Success`/`Failure`: the OriginateResponse; `Silent`: only queued;
    /// `Refused`: `Response: Error`.
    outcome: Arc<Mutex<&'static str>>,
    /// Who ConfbridgeList reports in conference 700.
    in_conf: Arc<Mutex<Vec<String>>>,
    /// `NoSuchChannel`: Hangup answers that the channel is gone already.
    hangup_reply: Arc<Mutex<&'static str>>,
    /// The channel an answered Originate produced (its OriginateResponse).
    guest: Arc<Mutex<&'static str>>,
}

fn join(conf: &str, channel: &str, num: &str) -> String {
    msg(&[
        ("Event", "ConfbridgeJoin"),
        ("Privilege", "call,all"),
        ("Conference", conf),
        ("Channel", channel),
        ("CallerIDNum", num),
        ("Admin", "No"),
        ("Muted", "No"),
    ])
}

fn leave(conf: &str, channel: &str, num: &str) -> String {
    msg(&[
        ("Event", "ConfbridgeLeave"),
        ("Privilege", "call,all"),
        ("Conference", conf),
        ("Channel", channel),
        ("CallerIDNum", num),
        ("Admin", "No"),
    ])
}

impl Pbx {
    fn new(already_in: &[&str]) -> Pbx {
        let dir = tempfile::tempdir().unwrap();
        let outcome = Arc::new(Mutex::new("Success"));
        let out = outcome.clone();
        let in_conf: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            already_in.iter().map(|s| s.to_string()).collect(),
        ));
        let hangup_reply = Arc::new(Mutex::new("Hungup"));
        let guest = Arc::new(Mutex::new(GUEST));
        let (conf, hr, g) = (in_conf.clone(), hangup_reply.clone(), guest.clone());
        let legs = Arc::new(AtomicUsize::new(0));
        let ami = FakeAmi::start(Arc::new(move |a: &Message| {
            let id = a.get("ActionID").unwrap_or("").to_string();
            let in_conf = conf.lock().unwrap().clone();
            match a.get("Action").unwrap_or("") {
                "ConfbridgeList" if in_conf.is_empty() => Some(vec![msg(&[
                    ("Response", "Error"),
                    ("ActionID", &id),
                    ("Message", "No active conferences."),
                ])]),
                "ConfbridgeList" => {
                    let mut r = vec![msg(&[
                        ("Response", "Success"),
                        ("ActionID", &id),
                        ("EventList", "start"),
                        ("Message", "Confbridge user list will follow"),
                    ])];
                    for ch in in_conf.iter() {
                        r.push(msg(&[
                            ("Event", "ConfbridgeList"),
                            ("ActionID", &id),
                            ("Conference", "700"),
                            ("Channel", ch),
                            ("CallerIDNum", "201"),
                        ]));
                    }
                    let n = in_conf.len().to_string();
                    r.push(msg(&[
                        ("Event", "ConfbridgeListComplete"),
                        ("ActionID", &id),
                        ("EventList", "Complete"),
                        ("ListItems", &n),
                    ]));
                    Some(r)
                }
                "Originate" if *out.lock().unwrap() == "Refused" => {
                    legs.fetch_add(1, Ordering::SeqCst);
                    Some(vec![msg(&[
                        ("Response", "Error"),
                        ("ActionID", &id),
                        ("Message", "Originate failed"),
                    ])])
                }
                "Originate" if *out.lock().unwrap() == "Silent" => {
                    legs.fetch_add(1, Ordering::SeqCst);
                    Some(vec![msg(&[
                        ("Response", "Success"),
                        ("ActionID", &id),
                        ("Message", "Originate successfully queued"),
                    ])])
                }
                "Originate" => {
                    legs.fetch_add(1, Ordering::SeqCst);
                    let outcome = *out.lock().unwrap();
                    // manager.c: the new channel's name, or on failure the
                    // requested one (tech/data, i.e. what Channel said).
                    let requested = a.get("Channel").unwrap_or("");
                    let channel = if outcome == "Success" {
                        *g.lock().unwrap()
                    } else {
                        requested
                    };
                    Some(vec![
                        msg(&[
                            ("Response", "Success"),
                            ("ActionID", &id),
                            ("Message", "Originate successfully queued"),
                        ]),
                        msg(&[
                            ("Event", "OriginateResponse"),
                            ("Privilege", "call,all"),
                            ("ActionID", &id),
                            ("Response", outcome),
                            ("Channel", channel),
                            ("Context", "featpkg-conference-guest-leg"),
                            ("Exten", "s"),
                            ("Reason", if outcome == "Success" { "4" } else { "1" }),
                            ("Uniqueid", "1763900000.20"),
                            ("CallerIDNum", "<unknown>"),
                            ("CallerIDName", "<unknown>"),
                        ]),
                    ])
                }
                // manager.c ast_manager_hangup_helper.
                "Hangup" if *hr.lock().unwrap() == "NoSuchChannel" => Some(vec![msg(&[
                    ("Response", "Error"),
                    ("ActionID", &id),
                    ("Message", "No such channel"),
                ])]),
                "Hangup" => Some(vec![msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Channel Hungup"),
                ])]),
                // Answered as app_confbridge does, should the watcher ever
                // send it again: the tests then see it and fail.
                "ConfbridgeKick" => Some(vec![msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "User kicked"),
                ])]),
                _ => standard_reply(a, "conf-secret"),
            }
        }));
        let creds = dir.path().join("ami.conf");
        std::fs::write(
            &creds,
            format!(
                "port={}\nusername=featpkg-conference-guest\nsecret=conf-secret\n",
                ami.addr.port()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        Pbx {
            dir,
            ami,
            outcome,
            in_conf,
            hangup_reply,
            guest,
        }
    }

    fn watcher(&self, extra: &[&str]) -> Child {
        let d = self.dir.path();
        Command::new(WATCH)
            .args([
                "--conference",
                "700",
                "--tech",
                "PJSIP",
                "--provider",
                "provider",
                "--number",
                "0551234567",
                "--backoff-ms",
                "100",
            ])
            .args(["--ami", d.join("ami.conf").to_str().unwrap()])
            .args(["--lock", d.join("watch.lock").to_str().unwrap()])
            .args(["--log", d.join("watch.log").to_str().unwrap()])
            .args(extra)
            .spawn()
            .unwrap()
    }

    fn actions(&self, name: &str) -> Vec<Message> {
        self.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.get("Action") == Some(name))
            .cloned()
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.actions(name).len()
    }

    fn connected(&self) {
        until("list at start", || self.count("ConfbridgeList") >= 1);
    }

    /// Waits for the guest to be hung up (the one and only Hangup), checks its
    /// channel, and that no ConfbridgeKick was ever sent.
    fn hung_up(&self, channel: &str) {
        until("the hangup", || self.count("Hangup") == 1);
        let h = self.actions("Hangup")[0].clone();
        assert_eq!(h.get("Channel"), Some(channel));
        assert_eq!(h.get("Cause"), Some("16"), "normal clearing");
        self.no_kick();
    }

    /// ConfBridge would play conf-kicked to the guest first: never a kick.
    fn no_kick(&self) {
        assert_eq!(self.count("ConfbridgeKick"), 0, "ConfbridgeKick sent");
    }
}

fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for: {what}");
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[test]
fn concurrent_joins_place_exactly_one_leg() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    // Two employees join in the same instant.
    pbx.ami.push_event(format!(
        "{}{}",
        join("700", "PJSIP/201-00000001", "201"),
        join("700", "PJSIP/202-00000002", "202")
    ));
    until("the guest leg", || pbx.count("Originate") == 1);
    let o = pbx.actions("Originate")[0].clone();
    assert_eq!(o.get("Channel"), Some("PJSIP/0551234567@provider"));
    assert_eq!(o.get("Context"), Some("featpkg-conference-guest-leg"));
    assert_eq!(o.get("Async"), Some("true"));
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    pbx.ami.push_event(join("700", "PJSIP/203-00000003", "203"));
    // Another conference does not count.
    pbx.ami.push_event(join("800", "PJSIP/204-00000004", "204"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.count("Originate"), 1, "still one leg");
    stop(w);
}

#[test]
fn the_guest_is_dropped_within_a_second_of_the_last_employee_leaving() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    pbx.ami.push_event(join("700", "PJSIP/202-00000002", "202"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pbx.count("Hangup"), 0, "one employee is still there");
    pbx.no_kick();
    let left = Instant::now();
    pbx.ami
        .push_event(leave("700", "PJSIP/202-00000002", "202"));
    // Hung up, not kicked: a kick makes ConfBridge play conf-kicked to the
    // guest first (the paid line stayed up 2.4 s on a real Asterisk). What is
    // hung up is the Local half bridged to the provider channel: its Dial
    // ends, and the line with it, while the participant half waits out
    // ConfBridge's queued sounds.
    pbx.hung_up(MEMBER_LINE);
    assert!(
        left.elapsed() < Duration::from_secs(1),
        "took {:?}",
        left.elapsed()
    );
    stop(w);
}

#[test]
fn a_failing_leg_is_redialled_with_bounded_backoff() {
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Failure";
    let w = pbx.watcher(&["--attempts", "3"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("three tries", || pbx.count("Originate") == 3);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(pbx.count("Originate"), 3, "bounded");
    let log = std::fs::read_to_string(pbx.dir.path().join("watch.log")).unwrap();
    assert!(
        log.contains("dialling again in 100 ms") && log.contains("dialling again in 200 ms"),
        "{log}"
    );
    assert!(log.contains("failed 3 times; giving up"), "{log}");
    stop(w);
}

#[test]
fn a_guest_who_hangs_up_is_called_again_while_employees_remain() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(200));
    pbx.ami.push_event(leave("700", MEMBER, "0551234567"));
    until("a second leg", || pbx.count("Originate") == 2);
    stop(w);
}

#[test]
fn after_a_restart_the_guest_already_in_is_recognised() {
    // The conference has an employee and the guest when the watcher starts.
    // The provider channel's name is unknown: the Local half bridged to it
    // is hung up, which ends the provider channel's Dial and so its line.
    let pbx = Pbx::new(&["PJSIP/201-00000001", MEMBER]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Originate"), 0, "the guest is already there");
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    stop(w);
}

#[test]
fn an_employee_alone_at_start_gets_the_guest() {
    let pbx = Pbx::new(&["PJSIP/201-00000001"]);
    let w = pbx.watcher(&[]);
    until("the guest leg", || pbx.count("Originate") == 1);
    stop(w);
}

#[test]
fn an_employee_calling_in_through_the_provider_is_not_the_guest() {
    // An employee dials into the conference from a mobile over the same trunk:
    // the channel looks like the guest's, but it is not the leg we placed.
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami
        .push_event(join("700", "PJSIP/provider-00000005", "0559999999"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Hangup"), 0, "nobody is hung up");
    pbx.no_kick();
    assert_eq!(pbx.count("Originate"), 1);
    pbx.ami
        .push_event(leave("700", "PJSIP/provider-00000005", "0559999999"));
    // The leg we placed is the one dropped.
    pbx.hung_up(MEMBER_LINE);
    stop(w);
}

#[test]
fn a_guest_who_keeps_hanging_up_is_redialled_a_bounded_number_of_times() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&["--attempts", "3"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    // Each leg answers, joins and hangs up at once (say, an answering machine).
    for leg in 1..=5 {
        let placed = || pbx.count("Originate") >= leg;
        if leg > 3 {
            std::thread::sleep(Duration::from_millis(1500));
            assert!(!placed(), "leg {leg} placed: the re-dials are bounded");
            break;
        }
        until("the next leg", placed);
        std::thread::sleep(Duration::from_millis(50));
        pbx.ami.push_event(join("700", MEMBER, "0551234567"));
        pbx.ami.push_event(leave("700", MEMBER, "0551234567"));
    }
    assert_eq!(pbx.count("Originate"), 3);
    stop(w);
}

#[test]
fn the_last_employee_leaving_before_the_guest_joined_hangs_the_leg_up() {
    // The guest answered (OriginateResponse) but is still hearing the DTMF,
    // not yet in the conference: hung up all the same.
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    std::thread::sleep(Duration::from_millis(200));
    let left = Instant::now();
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(GUEST);
    assert!(
        left.elapsed() < Duration::from_secs(1),
        "{:?}",
        left.elapsed()
    );
    stop(w);
}

#[test]
fn an_ami_drop_while_dialling_places_no_second_leg() {
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Silent";
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    // The manager drops while the leg rings; the employee is still there.
    pbx.in_conf
        .lock()
        .unwrap()
        .push("PJSIP/201-00000001".into());
    std::thread::sleep(Duration::from_millis(100));
    pbx.ami.drop_connection();
    until("the list after reconnecting", || {
        pbx.count("ConfbridgeList") == 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(pbx.count("Originate"), 1, "the first leg still rings");
    // It answers and joins (its OriginateResponse lost with the old
    // connection): that is the guest, hung up through its Local half.
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(200));
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    assert_eq!(pbx.count("Originate"), 1);
    stop(w);
}

#[test]
fn a_leg_whose_outcome_never_comes_is_redialled_after_the_ring_time() {
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Silent";
    let w = pbx.watcher(&["--ring", "1"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pbx.count("Originate"), 1, "still within the ring time");
    let end = Instant::now() + Duration::from_secs(10);
    while pbx.count("Originate") < 2 {
        assert!(Instant::now() < end, "never re-dialled");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(w);
}

#[test]
fn reconnecting_keeps_the_guest_it_placed() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    pbx.in_conf
        .lock()
        .unwrap()
        .extend(["PJSIP/201-00000001".to_string(), MEMBER.to_string()]);
    std::thread::sleep(Duration::from_millis(200));
    pbx.ami.drop_connection();
    until("the list after reconnecting", || {
        pbx.count("ConfbridgeList") == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.count("Originate"), 1, "the guest is still in");
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    stop(w);
}

#[test]
fn a_guest_who_hangs_up_before_joining_is_called_again() {
    // Answered, then gone during the DTMF: no ConfbridgeLeave, only a Hangup.
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    std::thread::sleep(Duration::from_millis(200));
    pbx.ami.push_event(msg(&[
        ("Event", "Hangup"),
        ("Privilege", "call,all"),
        ("Channel", GUEST),
        ("Uniqueid", "1763900000.20"),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    ]));
    until("a second leg", || pbx.count("Originate") == 2);
    stop(w);
}

#[test]
fn a_refused_originate_is_a_failed_attempt_not_a_lost_connection() {
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Refused";
    let w = pbx.watcher(&["--attempts", "3"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("three tries", || pbx.count("Originate") == 3);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(pbx.count("Originate"), 3, "bounded");
    assert_eq!(pbx.ami.connections(), 1);
    stop(w);
}

fn hangup_event(channel: &str) -> String {
    msg(&[
        ("Event", "Hangup"),
        ("Privilege", "call,all"),
        ("Channel", channel),
        ("Uniqueid", "1763900000.20"),
        ("Cause", "16"),
        ("Cause-txt", "Normal Clearing"),
    ])
}

#[test]
fn an_iax2_provider_is_dialled_as_peer_slash_number_and_its_leg_hung_up() {
    // IAX2/<number>@<provider> would be user <number> at peer <provider>:
    // Asterisk logs "I don't know how to authenticate" and the guest is never
    // reached. The number is the extension: IAX2/<provider>/<number>.
    let pbx = Pbx::new(&[]);
    *pbx.guest.lock().unwrap() = IAX2_GUEST;
    let w = pbx.watcher(&["--tech", "IAX2"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    assert_eq!(
        pbx.actions("Originate")[0].get("Channel"),
        Some("IAX2/provider/0551234567")
    );
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(200));
    let left = Instant::now();
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    assert!(
        left.elapsed() < Duration::from_secs(1),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(pbx.count("Originate"), 1);
    stop(w);
}

#[test]
fn after_a_restart_an_iax2_guest_already_in_is_recognised() {
    // The same Local participant, whatever the provider's technology.
    let pbx = Pbx::new(&["IAX2/301-1234", MEMBER]);
    let w = pbx.watcher(&["--tech", "IAX2"]);
    pbx.connected();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Originate"), 0, "the guest is already there");
    pbx.ami.push_event(leave("700", "IAX2/301-1234", "301"));
    pbx.hung_up(MEMBER_LINE);
    stop(w);
}

#[test]
fn after_a_restart_an_employee_on_the_provider_trunk_is_still_an_employee() {
    // An employee dialled in over the trunk the guest is dialled through:
    // their channel looks like a guest leg's, but only the Local participant
    // is the guest. No second leg, and that employee leaving drops the guest.
    let pbx = Pbx::new(&["PJSIP/provider-00000005", MEMBER]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Originate"), 0, "the guest is already there");
    assert_eq!(pbx.count("Hangup"), 0, "an employee is in");
    pbx.ami
        .push_event(leave("700", "PJSIP/provider-00000005", "0559999999"));
    pbx.hung_up(MEMBER_LINE);
    stop(w);
}

#[test]
fn an_employee_on_the_provider_trunk_alone_after_a_restart_gets_the_guest() {
    let pbx = Pbx::new(&["PJSIP/provider-00000005"]);
    let w = pbx.watcher(&[]);
    until("the guest leg", || pbx.count("Originate") == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pbx.count("Hangup"), 0, "the employee is not hung up");
    stop(w);
}

#[test]
fn a_second_guest_leg_in_the_conference_is_hung_up() {
    // One leg placed before a restart of the watcher joins late, next to the
    // one it placed since: exactly one guest stays.
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    let other = "Local/join@featpkg-conference-guest-leg-0000000c;2";
    pbx.ami.push_event(join("700", other, "0551234567"));
    pbx.hung_up("Local/join@featpkg-conference-guest-leg-0000000c;1");
    // The extra one leaving is no lost leg: nobody is dialled.
    pbx.ami.push_event(leave("700", other, "0551234567"));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Originate"), 1);
    stop(w);
}

#[test]
fn a_failed_iax2_leg_is_redialled_with_the_same_dial_string() {
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Failure";
    let w = pbx.watcher(&["--tech", "IAX2", "--attempts", "2"]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("two tries", || pbx.count("Originate") == 2);
    for o in pbx.actions("Originate") {
        assert_eq!(o.get("Channel"), Some("IAX2/provider/0551234567"));
    }
    stop(w);
}

#[test]
fn the_hung_up_guest_leaving_is_no_lost_leg_and_the_next_meeting_gets_one_leg() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(100));
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    // What Asterisk sends after the Hangup action: the guest leaves the
    // bridge, then its channel is gone.
    pbx.ami.push_event(leave("700", MEMBER, "0551234567"));
    pbx.ami.push_event(hangup_event(GUEST));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.count("Originate"), 1, "nobody is left to dial for");
    // The next meeting: one new leg.
    pbx.ami.push_event(join("700", "PJSIP/202-00000002", "202"));
    until("the next leg", || pbx.count("Originate") == 2);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Originate"), 2);
    assert_eq!(pbx.count("Hangup"), 1);
    stop(w);
}

#[test]
fn a_guest_already_gone_when_hung_up_is_no_lost_connection() {
    let pbx = Pbx::new(&[]);
    *pbx.hangup_reply.lock().unwrap() = "NoSuchChannel";
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", MEMBER, "0551234567"));
    std::thread::sleep(Duration::from_millis(100));
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    pbx.hung_up(MEMBER_LINE);
    pbx.ami.push_event(join("700", "PJSIP/202-00000002", "202"));
    until("the next leg", || pbx.count("Originate") == 2);
    assert_eq!(pbx.ami.connections(), 1);
    let log = std::fs::read_to_string(pbx.dir.path().join("watch.log")).unwrap();
    assert!(
        log.contains(&format!("guest {MEMBER_LINE}: No such channel")),
        "{log}"
    );
    stop(w);
}

#[test]
fn a_similarly_named_endpoint_joining_while_the_leg_rings_is_an_employee() {
    // Endpoint provider-b is not endpoint provider: its channel
    // PJSIP/provider-b-00000005 starts like ours but is an employee's.
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Silent";
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami
        .push_event(join("700", "PJSIP/provider-b-00000005", "0559999999"));
    std::thread::sleep(Duration::from_millis(100));
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.count("Hangup"), 0, "an employee is still in");
    pbx.no_kick();
    stop(w);
}

#[test]
fn an_unsupported_technology_or_the_old_dial_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["--tech", "DAHDI", "--provider", "provider", "--number", "1"][..],
        &["--dial", "IAX2/5551234@provider"][..],
    ] {
        let out = Command::new(WATCH)
            .args(["--conference", "700"])
            .args(bad)
            .args(["--lock", dir.path().join("l").to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("featpkg-conference-guest-watch: "),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn an_employee_on_the_provider_trunk_leaving_while_the_leg_rings_is_no_lost_leg() {
    // The first employee dialled in over the provider trunk; our leg rings
    // (no outcome yet) when they leave while another employee stays.
    let pbx = Pbx::new(&[]);
    *pbx.outcome.lock().unwrap() = "Silent";
    let w = pbx.watcher(&[]);
    pbx.connected();
    pbx.ami
        .push_event(join("700", "PJSIP/provider-00000005", "0559999999"));
    until("the guest leg", || pbx.count("Originate") == 1);
    pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
    std::thread::sleep(Duration::from_millis(100));
    pbx.ami
        .push_event(leave("700", "PJSIP/provider-00000005", "0559999999"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(pbx.count("Originate"), 1, "the first leg still rings");
    assert_eq!(pbx.count("Hangup"), 0);
    stop(w);
}

/// The context switches of process `pid` so far (each is one wake-up).
fn wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// An idle watcher sleeps until Asterisk sends something: no timer. With the
/// guest in the conference (nothing due), nor with it empty.
#[test]
fn an_idle_watcher_does_not_wake_up() {
    let pbx = Pbx::new(&[]);
    let w = pbx.watcher(&[]);
    pbx.connected();
    for (setting, join_first) in [("empty", false), ("guest in", true)] {
        if join_first {
            pbx.ami.push_event(join("700", "PJSIP/201-00000001", "201"));
            until("the guest leg", || pbx.count("Originate") == 1);
            pbx.ami.push_event(join("700", MEMBER, "0551234567"));
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = wakeups(w.id());
        std::thread::sleep(Duration::from_millis(1500));
        let woke = wakeups(w.id()) - before;
        // The 100 ms tick this replaced woke it 15 times in that time.
        assert!(woke <= 1, "{setting}: woke {woke} times while idle");
    }
    // Still awake to what matters: the last employee leaves, the guest goes.
    pbx.ami
        .push_event(leave("700", "PJSIP/201-00000001", "201"));
    until("the hangup", || pbx.count("Hangup") == 1);
    stop(w);
}

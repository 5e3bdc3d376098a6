//! The busy-callback watcher against a fake Asterisk manager on 127.0.0.1:
//! callbacks only when both sides are free (an idle IAX2 phone says UNKNOWN),
//! bounded retries, expiry, restarts of the watcher and of Asterisk, single
//! instance; and with the dial context's real AGI program settling each
//! callback (callee answered, busy again), the request is never lost and never
//! rung again before its wait.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use featpkg_agi::fake::{Call, FakePeer};
use featpkg_ami::Message;
use featpkg_ami::fake::{FakeAmi, msg, standard_reply};
use featpkg_busy_callback::{Phase, Request, Store};

const WATCH: &str = env!("CARGO_BIN_EXE_featpkg-busy-callback-watch");
const AGI: &str = env!("CARGO_BIN_EXE_featpkg-busy-callback");

struct Pbx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ami: FakeAmi,
    states: Arc<Mutex<Vec<(String, String)>>>,
    /// How Originate is answered: `Success`/`Failure` (the OriginateResponse),
    /// `Refused` (`Response: Error`), `ShuttingDown` (the error Asterisk
    /// answers every action with while it shuts down), `Silent` (queued, the
    /// outcome pushed later).
    outcome: Arc<Mutex<&'static str>>,
    /// `Drop`: DeviceStateList closes the connection (Asterisk going down).
    list_reply: Arc<Mutex<&'static str>>,
    /// Devices `DEVICE_STATE()` knows although they are not in Asterisk's
    /// device-state cache (no state change since it started), so
    /// DeviceStateList does not list them.
    uncached: Arc<Mutex<Vec<(String, String)>>>,
    /// The dial context's `retry_wait=` (the feature gives it and the
    /// watcher's `--retry-wait` the same value).
    retry_wait: Mutex<u64>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Pbx {
    fn new(states: &[(&str, &str)]) -> Pbx {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let states = Arc::new(Mutex::new(
            states
                .iter()
                .map(|(d, s)| (d.to_string(), s.to_string()))
                .collect::<Vec<_>>(),
        ));
        let outcome = Arc::new(Mutex::new("Success"));
        let list_reply = Arc::new(Mutex::new("Normal"));
        let uncached: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (st, out, lr, unc) = (
            states.clone(),
            outcome.clone(),
            list_reply.clone(),
            uncached.clone(),
        );
        let ami = FakeAmi::start(Arc::new(move |a: &Message| {
            let id = a.get("ActionID").unwrap_or("").to_string();
            match a.get("Action").unwrap_or("") {
                // manager.c action_getvar: a function is read on a "Bogus/manager" channel;
                // DEVICE_STATE of a device no driver knows is INVALID.
                "Getvar" => {
                    let variable = a.get("Variable").unwrap_or("");
                    let device = variable
                        .strip_prefix("DEVICE_STATE(")
                        .and_then(|v| v.strip_suffix(')'))
                        .unwrap_or("");
                    let known = st.lock().unwrap().clone();
                    let more = unc.lock().unwrap().clone();
                    let value = known
                        .iter()
                        .chain(more.iter())
                        .find(|(d, _)| d == device)
                        .map_or("INVALID".to_string(), |(_, s)| s.clone());
                    Some(vec![msg(&[
                        ("Response", "Success"),
                        ("ActionID", &id),
                        ("Variable", variable),
                        ("Value", &value),
                    ])])
                }
                "DeviceStateList" if *lr.lock().unwrap() == "Drop" => None,
                "Originate" if *out.lock().unwrap() == "Refused" => Some(vec![msg(&[
                    ("Response", "Error"),
                    ("ActionID", &id),
                    ("Message", "Originate failed"),
                ])]),
                // manager.c process_message while Asterisk shuts down.
                "Originate" if *out.lock().unwrap() == "ShuttingDown" => Some(vec![msg(&[
                    ("Response", "Error"),
                    ("ActionID", &id),
                    ("Message", "Asterisk is shutting down"),
                ])]),
                "Originate" if *out.lock().unwrap() == "Silent" => Some(vec![msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Originate successfully queued"),
                ])]),
                "DeviceStateList" => {
                    let mut replies = vec![msg(&[
                        ("Response", "Success"),
                        ("ActionID", &id),
                        ("EventList", "start"),
                        ("Message", "Device State Changes will follow"),
                    ])];
                    let list = st.lock().unwrap().clone();
                    for (d, s) in &list {
                        replies.push(msg(&[
                            ("Event", "DeviceStateChange"),
                            ("ActionID", &id),
                            ("Device", d),
                            ("State", s),
                        ]));
                    }
                    let n = list.len().to_string();
                    replies.push(msg(&[
                        ("Event", "DeviceStateListComplete"),
                        ("ActionID", &id),
                        ("EventList", "Complete"),
                        ("ListItems", &n),
                    ]));
                    Some(replies)
                }
                "Originate" => {
                    let outcome = *out.lock().unwrap();
                    let reason = if outcome == "Success" { "4" } else { "3" };
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
                            ("Channel", a.get("Channel").unwrap_or("")),
                            ("Context", a.get("Context").unwrap_or("")),
                            ("Exten", a.get("Exten").unwrap_or("")),
                            ("Reason", reason),
                            ("Uniqueid", "1763900000.9"),
                        ]),
                    ])
                }
                _ => standard_reply(a, "watch-secret"),
            }
        }));
        let creds = dir.join("ami.conf");
        std::fs::write(
            &creds,
            format!(
                "host=127.0.0.1\nport={}\nusername=featpkg-busy-callback\nsecret=watch-secret\n",
                ami.addr.port()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        Pbx {
            _tmp: tmp,
            dir,
            ami,
            states,
            outcome,
            list_reply,
            uncached,
            retry_wait: Mutex::new(60),
        }
    }

    /// Pushes the OriginateResponse for an originate answered `Silent`.
    fn originate_response(&self, originate: &Message, response: &str) {
        self.ami.push_event(msg(&[
            ("Event", "OriginateResponse"),
            ("Privilege", "call,all"),
            ("ActionID", originate.get("ActionID").unwrap()),
            ("Response", response),
            ("Channel", originate.get("Channel").unwrap()),
            ("Context", originate.get("Context").unwrap()),
            ("Exten", originate.get("Exten").unwrap()),
            ("Reason", if response == "Success" { "4" } else { "3" }),
            ("Uniqueid", "1763900000.11"),
        ]));
    }

    fn store(&self) -> Store {
        Store::new(&self.dir.join("requests"))
    }

    fn watcher(&self, extra: &[&str]) -> Child {
        let d = &self.dir;
        Command::new(WATCH)
            .args(["--store", d.join("requests").to_str().unwrap()])
            .args(["--ami", d.join("ami.conf").to_str().unwrap()])
            .args(["--lock", d.join("watch.lock").to_str().unwrap()])
            .args(["--log", d.join("watch.log").to_str().unwrap()])
            .args(extra)
            .spawn()
            .unwrap()
    }

    fn originates(&self) -> Vec<Message> {
        self.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.get("Action") == Some("Originate"))
            .cloned()
            .collect()
    }

    fn device(&self, device: &str, state: &str) {
        self.states.lock().unwrap().retain(|(d, _)| d != device);
        self.states
            .lock()
            .unwrap()
            .push((device.into(), state.into()));
        self.ami.push_event(msg(&[
            ("Event", "DeviceStateChange"),
            ("Privilege", "call,all"),
            ("Device", device),
            ("State", state),
        ]));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("watch.log")).unwrap_or_default()
    }

    /// The one request of 201 for 202.
    fn request(&self) -> Option<Request> {
        self.store().get("201", "202").unwrap()
    }

    /// What the dial context does with a callback whose caller answered: runs
    /// the real AGI program — `connected` in Dial's U() on the callee's
    /// channel, `ended` in the h extension with `dialstatus` — with the
    /// channel variables `originate` set (a `_` prefix only marks them
    /// inherited: Asterisk strips it from the name), answering as Asterisk
    /// does. Returns what it set BUSY_CALLBACK to.
    fn dial_context(&self, originate: &Message, mode: &str, dialstatus: Option<&str>) -> String {
        let vars: Vec<(String, String)> = originate
            .get("Variable")
            .unwrap()
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.trim_start_matches('_').to_string(), v.to_string())
            })
            .collect();
        let (context, exten) = if mode == "connected" {
            ("featpkg-busy-callback-connected", "s")
        } else {
            ("featpkg-busy-callback-dial", "h")
        };
        let mut call = Call::new(
            "/var/lib/asterisk/agi-bin/featpkg-busy-callback",
            "202",
            context,
            exten,
        );
        call.args = vec![
            mode.to_string(),
            format!("dir={}", self.dir.join("requests").display()),
            "pattern=_2XX".into(),
            "expiry=1800".into(),
            "retries=2".into(),
            format!("retry_wait={}", *self.retry_wait.lock().unwrap()),
        ];
        let mut peer = FakePeer::start(std::path::Path::new(AGI), &call, &[]);
        let mut status = String::new();
        while let Some(line) = peer.next_command(Duration::from_secs(3)) {
            if let Some(name) = line
                .strip_prefix("GET VARIABLE \"")
                .and_then(|n| n.strip_suffix('"'))
            {
                let value = if name == "DIALSTATUS" {
                    dialstatus.map(str::to_string)
                } else {
                    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                };
                peer.reply(&value.map_or("200 result=0".into(), |v| format!("200 result=1 ({v})")));
            } else if let Some(rest) = line.strip_prefix("SET VARIABLE \"BUSY_CALLBACK\" \"") {
                status = rest.trim_end_matches('"').to_string();
                peer.reply("200 result=1");
            } else if line.starts_with("VERBOSE ") {
                peer.reply("200 result=1");
            } else {
                panic!("the dial context's program sent {line:?}");
            }
        }
        let (exit, _) = peer.wait(Duration::from_secs(3)).expect("exits");
        assert!(exit.success(), "{exit}: {:?}", peer.transcript);
        status
    }
}

fn until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

fn stop(mut child: Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(Instant::now() < end, "watcher did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn calls_back_only_when_both_sides_are_free() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "INUSE")]);
    let pressed = now();
    pbx.store().add("201", "202", pressed, 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("login and device list", Duration::from_secs(5), || {
        pbx.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.get("Action") == Some("DeviceStateList"))
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(pbx.originates().is_empty(), "202 is still busy");
    pbx.device("PJSIP/201", "INUSE");
    pbx.device("PJSIP/202", "NOT_INUSE");
    std::thread::sleep(Duration::from_millis(600));
    assert!(pbx.originates().is_empty(), "now the caller is busy");
    pbx.device("PJSIP/201", "NOT_INUSE");
    until("the callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    let o = pbx.originates()[0].clone();
    assert_eq!(o.get("Channel"), Some("PJSIP/201"));
    assert_eq!(o.get("Context"), Some("featpkg-busy-callback-dial"));
    assert_eq!(o.get("Exten"), Some("202"));
    // 201's phone shows "Callback 202"; 202's phone, once rung, shows 201
    // (not a call from itself, as a CallerID header would make it).
    assert_eq!(o.get("CallerID"), None);
    assert_eq!(
        o.all("Variable")[1..],
        [
            "CONNECTEDLINE(name,i)=Callback 202",
            "CONNECTEDLINE(num,i)=202",
            "CALLERID(num)=201"
        ]
    );
    assert_eq!(o.get("Async"), Some("true"));
    assert_eq!(
        o.get("Variable"),
        Some(
            format!(
                "_FEATPKG_CALLBACK_CALLER=201,_FEATPKG_CALLBACK_CALLEE=202,\
                 _FEATPKG_CALLBACK_CREATED={pressed},_FEATPKG_CALLBACK_CALL=1"
            )
            .as_str()
        )
    );
    until("201 to answer", Duration::from_secs(3), || {
        pbx.log().contains("201 answered the callback for 202")
    });
    // The caller answering does not settle the request: the dial context
    // now rings 202 and owns it.
    let r = pbx.request().expect("kept while the callee rings");
    assert!(r.calling(), "{r:?}");
    // 202 answers: Dial's U() makes the request done.
    assert_eq!(pbx.dial_context(&o, "connected", None), "DONE");
    assert!(pbx.store().list().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.originates().len(), 1, "exactly one callback");
    stop(w);
    assert!(
        pbx.log().contains("201 answered the callback for 202"),
        "{}",
        pbx.log()
    );
}

/// After an Asterisk restart its device-state cache holds only phones whose
/// state changed since; DeviceStateList misses the others. The watcher asks
/// for those once and calls back when both are free, without waiting for an
/// event that may never come.
#[test]
fn phones_missing_from_the_device_list_are_asked_for() {
    let pbx = Pbx::new(&[]);
    *pbx.uncached.lock().unwrap() = vec![
        ("PJSIP/201".into(), "NOT_INUSE".into()),
        ("PJSIP/202".into(), "NOT_INUSE".into()),
    ];
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("the callback", Duration::from_secs(5), || {
        !pbx.originates().is_empty()
    });
    let asked: Vec<String> = pbx
        .ami
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.get("Action") == Some("Getvar"))
        .map(|m| m.get("Variable").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        asked,
        ["DEVICE_STATE(PJSIP/201)", "DEVICE_STATE(PJSIP/202)"],
        "each unknown phone asked for once"
    );
    assert_eq!(pbx.originates()[0].get("Channel"), Some("PJSIP/201"));
    stop(w);
}

/// A phone Asterisk reports busy when asked is not called back until its
/// state changes; it is asked once, not every tick.
#[test]
fn a_phone_asked_for_and_busy_waits_for_its_event() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE")]);
    *pbx.uncached.lock().unwrap() = vec![("PJSIP/202".into(), "INUSE".into())];
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(pbx.originates().is_empty(), "202 is busy");
    let getvars = || {
        pbx.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.get("Action") == Some("Getvar"))
            .count()
    };
    assert_eq!(getvars(), 1, "asked once, not on every tick");
    pbx.device("PJSIP/202", "NOT_INUSE");
    until("the callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    stop(w);
}

#[test]
fn unanswered_callbacks_are_retried_a_bounded_number_of_times() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    *pbx.outcome.lock().unwrap() = "Failure";
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&["--retries", "2", "--retry-wait", "0"]);
    until("the request to be dropped", Duration::from_secs(6), || {
        pbx.store().list().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.originates().len(), 3, "one try and two retries");
    stop(w);
    assert!(
        pbx.log()
            .contains("did not answer 3 callbacks for 202; dropped"),
        "{}",
        pbx.log()
    );
}

#[test]
fn expired_requests_are_dropped_without_a_call() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    let store = pbx.store();
    store.add("201", "202", now() - 4000, 3, u64::MAX).unwrap();
    let w = pbx.watcher(&["--expiry", "1800"]);
    until("expiry", Duration::from_secs(5), || {
        store.list().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(pbx.originates().is_empty());
    stop(w);
}

#[test]
fn requests_survive_a_watcher_restart() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "INUSE")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("device list", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    stop(w);
    assert_eq!(
        pbx.store().list().unwrap().len(),
        1,
        "the request is on disk"
    );
    pbx.states.lock().unwrap().retain(|(d, _)| d != "PJSIP/202");
    pbx.states
        .lock()
        .unwrap()
        .push(("PJSIP/202".into(), "NOT_INUSE".into()));
    let w = pbx.watcher(&[]);
    until(
        "the callback after the restart",
        Duration::from_secs(5),
        || !pbx.originates().is_empty(),
    );
    stop(w);
}

#[test]
fn reconnects_after_asterisk_restarts() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "INUSE")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("first connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    pbx.ami.drop_connection();
    until("reconnect", Duration::from_secs(5), || {
        pbx.ami.connections() == 2
    });
    until("device list again", Duration::from_secs(5), || {
        pbx.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.get("Action") == Some("DeviceStateList"))
            .count()
            == 2
    });
    pbx.device("PJSIP/202", "NOT_INUSE");
    until(
        "the callback after reconnecting",
        Duration::from_secs(3),
        || !pbx.originates().is_empty(),
    );
    stop(w);
    assert!(pbx.log().contains("reconnecting"), "{}", pbx.log());
}

#[test]
fn a_second_instance_exits_at_once() {
    let pbx = Pbx::new(&[]);
    let first = pbx.watcher(&[]);
    until("first connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    let started = Instant::now();
    let status = pbx.watcher(&[]).wait().unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(pbx.ami.connections(), 1, "the second one never connected");
    stop(first);
}

#[test]
fn exits_once_the_feature_is_uninstalled() {
    let pbx = Pbx::new(&[]);
    let mut w = pbx.watcher(&[]);
    until("connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::fs::remove_file(pbx.dir.join("ami.conf")).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = w.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            Instant::now() < end,
            "the watcher must leave when its credentials are gone"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_refused_originate_counts_as_an_attempt_and_keeps_the_connection() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    *pbx.outcome.lock().unwrap() = "Refused";
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&["--retries", "1", "--retry-wait", "0"]);
    until("the request to be dropped", Duration::from_secs(6), || {
        pbx.store().list().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pbx.originates().len(), 2, "one try and one retry");
    assert_eq!(
        pbx.ami.connections(),
        1,
        "a refusal is not a lost connection"
    );
    stop(w);
    assert!(pbx.log().contains("Originate failed"), "{}", pbx.log());
}

/// A restart hangs up the calls before AMI goes: the callee's state change
/// brings an Originate that Asterisk refuses because it is shutting down. The
/// caller was never rung: no attempt counted (with retries = 0 the request
/// would be lost), no wait; the watcher drops the connection and calls back
/// once Asterisk is back.
#[test]
fn an_originate_refused_while_asterisk_shuts_down_costs_no_attempt() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "INUSE")]);
    *pbx.outcome.lock().unwrap() = "ShuttingDown";
    let pressed = now();
    pbx.store().add("201", "202", pressed, 3, 1800).unwrap();
    let w = pbx.watcher(&["--retries", "0", "--retry-wait", "60"]);
    until("first connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    pbx.device("PJSIP/202", "NOT_INUSE");
    until("the refused callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    until("the request waiting again", Duration::from_secs(3), || {
        pbx.request().is_some_and(|r| !r.calling())
    });
    let r = pbx.request().expect("kept");
    assert_eq!(r.attempts, 0, "{r:?}");
    let Phase::Waiting { not_before_ms } = r.phase else {
        panic!("{r:?}")
    };
    assert!(
        not_before_ms
            <= SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        "no retry wait: {r:?}"
    );
    // Asterisk is back: the watcher reconnects and calls back.
    *pbx.outcome.lock().unwrap() = "Success";
    until("reconnect", Duration::from_secs(5), || {
        pbx.ami.connections() == 2
    });
    until("the callback", Duration::from_secs(3), || {
        pbx.originates().len() == 2
    });
    stop(w);
    assert!(
        pbx.log()
            .contains("Asterisk is shutting down: the callback of 201 for 202 waits for it"),
        "{}",
        pbx.log()
    );
}

#[test]
fn one_callback_per_callee_at_a_time() {
    let pbx = Pbx::new(&[
        ("PJSIP/201", "NOT_INUSE"),
        ("PJSIP/203", "NOT_INUSE"),
        ("PJSIP/202", "NOT_INUSE"),
    ]);
    *pbx.outcome.lock().unwrap() = "Silent";
    pbx.store().add("201", "202", now() - 2, 3, 1800).unwrap();
    pbx.store().add("203", "202", now() - 1, 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("the first callback", Duration::from_secs(5), || {
        !pbx.originates().is_empty()
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        pbx.originates().len(),
        1,
        "202 can take one callback; 203 waits while 201's rings"
    );
    let first = pbx.originates()[0].clone();
    assert_eq!(
        first.get("Channel"),
        Some("PJSIP/201"),
        "the older request first"
    );
    // 201 answers; the dial context now rings 202, whose state still says free
    // until Asterisk reports the ringing.
    pbx.originate_response(&first, "Success");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(pbx.originates().len(), 1, "202 is taken by 201's callback");
    pbx.device("PJSIP/202", "RINGING");
    assert_eq!(pbx.dial_context(&first, "connected", None), "DONE");
    pbx.device("PJSIP/202", "INUSE");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.originates().len(), 1);
    pbx.device("PJSIP/202", "NOT_INUSE");
    until("203's callback", Duration::from_secs(3), || {
        pbx.originates().len() == 2
    });
    // The conversation's end runs h: nothing left of 201's request.
    assert_eq!(pbx.dial_context(&first, "ended", Some("ANSWER")), "GONE");
    assert_eq!(pbx.originates()[1].get("Channel"), Some("PJSIP/203"));
    stop(w);
}

#[test]
fn a_session_that_fails_at_once_is_retried_with_growing_delays() {
    // Asterisk accepts the login, then the connection drops at once, again and
    // again (it is shutting down): no tight reconnect loop, no log flood.
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE")]);
    *pbx.list_reply.lock().unwrap() = "Drop";
    let w = pbx.watcher(&[]);
    until("a second connection", Duration::from_secs(5), || {
        pbx.ami.connections() >= 2
    });
    std::thread::sleep(Duration::from_millis(2500));
    let n = pbx.ami.connections();
    assert!((2..=5).contains(&n), "{n} connections in about 3 s");
    *pbx.list_reply.lock().unwrap() = "Normal";
    stop(w);
    let lost = pbx.log().matches("reconnecting").count();
    assert!(lost <= 5, "{lost} lines:\n{}", pbx.log());
}

#[test]
fn the_lock_directory_is_created_on_first_start() {
    let pbx = Pbx::new(&[]);
    let lock = pbx.dir.join("not-yet").join("watch.lock");
    let w = pbx.watcher(&["--lock", lock.to_str().unwrap()]);
    until("connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    assert!(lock.exists());
    stop(w);
}

#[test]
fn the_secret_never_reaches_the_log() {
    let pbx = Pbx::new(&[]);
    let creds = pbx.dir.join("ami.conf");
    // Wrong secret: the watcher says login failed and leaves (cron retries).
    std::fs::write(
        &creds,
        format!(
            "port={}\nusername=featpkg-busy-callback\nsecret=Zq9-wrong-secret\n",
            pbx.ami.addr.port()
        ),
    )
    .unwrap();
    let status = pbx.watcher(&[]).wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(pbx.log().contains("AMI login failed"), "{}", pbx.log());
    // Readable by others: refused before anything is read out of it.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let status = pbx.watcher(&[]).wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(pbx.log().contains("must be 0600"), "{}", pbx.log());
    // A malformed secret line.
    std::fs::write(&creds, "username=u\nSecret: Zq9-wrong-secret=\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let status = pbx.watcher(&[]).wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = pbx.log();
    assert!(!log.contains("Zq9-wrong-secret"), "{log}");
    let received = pbx.ami.received.lock().unwrap().clone();
    assert_eq!(
        received[0].get("Secret"),
        Some("Zq9-wrong-secret"),
        "the fake did see it, so the log had the chance to show it"
    );
}

#[test]
fn an_unreadable_store_is_logged_once_not_every_tick() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    // The store's place is taken by a file: every read of it fails.
    std::fs::write(pbx.dir.join("requests"), "not a directory\n").unwrap();
    let w = pbx.watcher(&[]);
    until("connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    stop(w);
    let n = pbx.log().matches("cannot read requests").count();
    assert_eq!(n, 1, "{}", pbx.log());
    assert!(pbx.originates().is_empty());
}

#[test]
fn sigterm_is_a_clean_stop_not_a_lost_connection() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE")]);
    let w = pbx.watcher(&[]);
    until("connection", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    // SIGTERM lands while the watcher waits for events on the socket.
    std::thread::sleep(Duration::from_millis(400));
    stop(w);
    let log = pbx.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("connection lost"), "{log}");
    assert!(
        pbx.ami
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.get("Action") == Some("Logoff")),
        "it logs off"
    );
}

/// An idle IAX2 peer reports UNKNOWN — in the device list, in DEVICE_STATE()
/// and in the DeviceStateChange after its call ends (chan_iax2 leaves "in use"
/// to the core's channel count). Free, so it is called back.
#[test]
fn an_idle_iax2_phone_saying_unknown_is_called_back() {
    let pbx = Pbx::new(&[("IAX2/201", "UNKNOWN"), ("IAX2/202", "INUSE")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&["--tech", "IAX2"]);
    until("device list", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(pbx.originates().is_empty(), "202 is in a call");
    // 202's call ends.
    pbx.device("IAX2/202", "UNKNOWN");
    until("the callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    assert_eq!(pbx.originates()[0].get("Channel"), Some("IAX2/201"));
    stop(w);
}

/// The same for IAX2 phones Asterisk's cache does not list: asked for, they
/// say UNKNOWN.
#[test]
fn iax2_phones_asked_for_and_unknown_are_free() {
    let pbx = Pbx::new(&[]);
    *pbx.uncached.lock().unwrap() = vec![
        ("IAX2/201".into(), "UNKNOWN".into()),
        ("IAX2/202".into(), "UNKNOWN".into()),
    ];
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&["--tech", "IAX2"]);
    until("the callback", Duration::from_secs(5), || {
        !pbx.originates().is_empty()
    });
    assert_eq!(pbx.originates()[0].get("Channel"), Some("IAX2/201"));
    stop(w);
}

/// A phone that is not registered (UNAVAILABLE) or does not exist (INVALID)
/// is never rung: the call would fail and cost an attempt.
#[test]
fn an_unreachable_phone_is_not_rung() {
    let pbx = Pbx::new(&[("IAX2/201", "UNAVAILABLE"), ("IAX2/202", "UNKNOWN")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&["--tech", "IAX2"]);
    until("device list", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::thread::sleep(Duration::from_millis(600));
    pbx.device("IAX2/201", "INVALID");
    std::thread::sleep(Duration::from_millis(600));
    assert!(pbx.originates().is_empty());
    // It registers again.
    pbx.device("IAX2/201", "UNKNOWN");
    until("the callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    stop(w);
}

/// The lost request of the real calls: the callee was busy again on the
/// callback; the watcher deleted the request on the caller's answer while the
/// dial context put it back, and rang the caller again 21 ms later. Now the
/// answer changes nothing on disk, the dial context's busy-again outcome puts
/// the request back to wait — whichever of the two Asterisk reports first —
/// and the caller is not rung again before --retry-wait, even with both
/// phones free all along (a callee that rejects calls while idle).
#[test]
fn a_callee_busy_again_is_never_lost_nor_rung_again_before_the_wait() {
    for busy_first in [false, true] {
        let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
        *pbx.retry_wait.lock().unwrap() = 2;
        *pbx.outcome.lock().unwrap() = "Silent";
        let created = now() - 5;
        pbx.store().add("201", "202", created, 3, 1800).unwrap();
        let w = pbx.watcher(&["--retry-wait", "2"]);
        until("the callback", Duration::from_secs(5), || {
            !pbx.originates().is_empty()
        });
        let first = pbx.originates()[0].clone();
        let r = pbx.request().expect("marked, not removed");
        assert_eq!((r.calls, r.calling()), (1, true), "{r:?}");
        let busy_at;
        if busy_first {
            // The dial context's h runs before the watcher reads the answer.
            busy_at = Instant::now();
            assert_eq!(pbx.dial_context(&first, "ended", Some("BUSY")), "WAITING");
            pbx.originate_response(&first, "Success");
        } else {
            pbx.originate_response(&first, "Success");
            until("201 to answer", Duration::from_secs(3), || {
                pbx.log().contains("201 answered the callback for 202")
            });
            assert!(pbx.request().is_some(), "an answer is not the end");
            busy_at = Instant::now();
            assert_eq!(pbx.dial_context(&first, "ended", Some("BUSY")), "WAITING");
        }
        until("the answer to be read", Duration::from_secs(3), || {
            pbx.log().contains("201 answered the callback for 202")
        });
        let r = pbx.request().expect("busy again: the request waits");
        assert_eq!((r.created, r.attempts, r.calling()), (created, 1, false));
        assert!(matches!(r.phase, Phase::Waiting { .. }), "{r:?}");
        std::thread::sleep(Duration::from_millis(1500).saturating_sub(busy_at.elapsed()));
        assert_eq!(
            pbx.originates().len(),
            1,
            "busy_first={busy_first}: not rung again within the wait"
        );
        until("the next callback", Duration::from_secs(4), || {
            pbx.originates().len() == 2
        });
        assert!(
            busy_at.elapsed() >= Duration::from_secs(2),
            "{:?}",
            busy_at.elapsed()
        );
        let second = pbx.originates()[1].clone();
        assert!(
            second
                .get("Variable")
                .unwrap()
                .ends_with("_FEATPKG_CALLBACK_CALL=2"),
            "{second:?}"
        );
        // This time 202 answers.
        pbx.originate_response(&second, "Success");
        assert_eq!(pbx.dial_context(&second, "connected", None), "DONE");
        std::thread::sleep(Duration::from_millis(500));
        assert!(pbx.store().list().unwrap().is_empty());
        assert_eq!(pbx.originates().len(), 2);
        stop(w);
    }
}

/// A restarted watcher finds a callback under way: it does not ring the
/// caller again; once the callback is older than --stale without an
/// outcome (Asterisk restarted mid-callback, say), it waits again — without
/// an attempt counted — and is called back.
#[test]
fn a_callback_under_way_survives_a_restart_and_a_lost_outcome() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    let store = pbx.store();
    let r = store.add("201", "202", now(), 3, 1800).unwrap();
    let marked = store
        .begin_call(&r, featpkg_busy_callback::now_ms())
        .unwrap()
        .unwrap();
    let w = pbx.watcher(&["--stale", "2", "--retry-wait", "0"]);
    until("device list", Duration::from_secs(5), || {
        pbx.ami.connections() == 1
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(pbx.originates().is_empty(), "the callback is under way");
    assert_eq!(pbx.request(), Some(marked));
    until(
        "the lost callback to be made again",
        Duration::from_secs(4),
        || !pbx.originates().is_empty(),
    );
    let o = pbx.originates()[0].clone();
    assert!(
        o.get("Variable")
            .unwrap()
            .ends_with("_FEATPKG_CALLBACK_CALL=2"),
        "{o:?}"
    );
    assert_eq!(pbx.request().unwrap().attempts, 0, "not counted");
    stop(w);
    assert!(
        pbx.log()
            .contains("no outcome of the callback of 201 for 202 after 2 s; it waits again"),
        "{}",
        pbx.log()
    );
}

/// A store the watcher cannot write to (its lock held elsewhere, a full
/// disk): nothing is rung unmarked, and the failure, retried every tick, is
/// logged once.
#[test]
fn a_request_that_cannot_be_marked_is_not_rung_and_logged_once() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "NOT_INUSE")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let held = pbx.store().lock().unwrap();
    let w = pbx.watcher(&[]);
    until("a failed mark", Duration::from_secs(6), || {
        pbx.log()
            .contains("cannot mark the callback of 201 for 202")
    });
    std::thread::sleep(Duration::from_millis(4500));
    assert!(pbx.originates().is_empty(), "never rung without its mark");
    drop(held);
    until("the callback", Duration::from_secs(5), || {
        !pbx.originates().is_empty()
    });
    stop(w);
    let n = pbx.log().matches("cannot mark the callback").count();
    assert_eq!(n, 1, "{}", pbx.log());
}

/// A callee who answers 201's callback at once: its request is gone from the
/// store before Asterisk's events say 202 is ringing or talking. 203's
/// callback for 202 waits for those events instead of ringing 203 for a
/// callee who is busy.
#[test]
fn a_callee_who_answered_is_taken_until_its_state_catches_up() {
    let pbx = Pbx::new(&[
        ("PJSIP/201", "NOT_INUSE"),
        ("PJSIP/203", "NOT_INUSE"),
        ("PJSIP/202", "NOT_INUSE"),
    ]);
    *pbx.outcome.lock().unwrap() = "Silent";
    pbx.store().add("201", "202", now() - 2, 3, 1800).unwrap();
    pbx.store().add("203", "202", now() - 1, 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("the first callback", Duration::from_secs(5), || {
        !pbx.originates().is_empty()
    });
    let first = pbx.originates()[0].clone();
    pbx.originate_response(&first, "Success");
    until("201 to answer", Duration::from_secs(3), || {
        pbx.log().contains("201 answered the callback for 202")
    });
    assert_eq!(pbx.dial_context(&first, "connected", None), "DONE");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        pbx.originates().len(),
        1,
        "202 still says NOT_INUSE, but talks"
    );
    pbx.device("PJSIP/202", "INUSE");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pbx.originates().len(), 1);
    pbx.device("PJSIP/202", "NOT_INUSE");
    until("203's callback", Duration::from_secs(3), || {
        pbx.originates().len() == 2
    });
    assert_eq!(pbx.originates()[1].get("Channel"), Some("PJSIP/203"));
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

/// The store is read whole once per connection; afterwards device events
/// read nothing, and a new request is noticed at once by its own file.
#[test]
fn the_store_is_read_whole_once_then_only_the_request_that_changed() {
    let pbx = Pbx::new(&[
        ("PJSIP/201", "INUSE"),
        ("PJSIP/202", "NOT_INUSE"),
        ("PJSIP/203", "NOT_INUSE"),
    ]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("the store read", Duration::from_secs(5), || {
        pbx.log().contains("read the request store: 1 requests")
    });
    for i in 0..50 {
        let state = if i % 2 == 0 { "INUSE" } else { "NOT_INUSE" };
        pbx.device("PJSIP/205", state);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(pbx.originates().is_empty(), "201 is still busy");
    // A new request (the AGI program's write): called back without a rescan.
    pbx.store().add("203", "202", now(), 3, 1800).unwrap();
    until("the callback of 203", Duration::from_secs(3), || {
        pbx.originates()
            .iter()
            .any(|o| o.get("Channel") == Some("PJSIP/203"))
    });
    stop(w);
    assert_eq!(
        pbx.log().matches("read the request store").count(),
        1,
        "{}",
        pbx.log()
    );
}

/// An idle watcher sleeps: no timer, no polling of the store. It has a
/// request waiting for a busy phone (no deadline before its expiry).
#[test]
fn an_idle_watcher_does_not_wake_up() {
    let pbx = Pbx::new(&[("PJSIP/201", "NOT_INUSE"), ("PJSIP/202", "INUSE")]);
    pbx.store().add("201", "202", now(), 3, 1800).unwrap();
    let w = pbx.watcher(&[]);
    until("the store read", Duration::from_secs(5), || {
        pbx.log().contains("read the request store: 1 requests")
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = wakeups(w.id());
    std::thread::sleep(Duration::from_millis(1500));
    let woke = wakeups(w.id()) - before;
    // The 250 ms tick this replaced woke it 6 times in that time.
    assert!(woke <= 1, "woke {woke} times while idle");
    // Still awake to what matters.
    pbx.device("PJSIP/202", "NOT_INUSE");
    until("the callback", Duration::from_secs(3), || {
        !pbx.originates().is_empty()
    });
    stop(w);
}

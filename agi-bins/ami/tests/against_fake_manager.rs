//! The AMI client against a fake Asterisk manager on 127.0.0.1 that speaks the
//! real framing and answers with real texts (reference/asterisk.md §2).

use std::sync::Arc;
use std::time::Duration;

use featpkg_ami::fake::{FakeAmi, msg, standard_reply};
use featpkg_ami::{Ami, AmiError, Credentials, Message, action, connect_with_retry};

const T: Duration = Duration::from_secs(2);

// Sessions that read events log in with `Events: call`, as the watchers do, so
// Asterisk's `FullyBooted` (class system) is not in their stream.

fn creds(server: &FakeAmi, secret: &str) -> Credentials {
    Credentials::new(server.addr, "featpkg-watch", secret)
}

/// The manager most tests talk to: login, Command, ConfbridgeList, Originate.
fn manager() -> FakeAmi {
    FakeAmi::start(Arc::new(|a: &Message| {
        let id = a.get("ActionID").unwrap_or("").to_string();
        match a.get("Action").unwrap_or("") {
            "Command" => Some(vec![
                // An event lands between the action and its response.
                msg(&[
                    ("Event", "DeviceStateChange"),
                    ("Privilege", "call,all"),
                    ("Device", "PJSIP/202"),
                    ("State", "INUSE"),
                ]),
                msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Command output follows"),
                    (
                        "Output",
                        "Channel              Location             State   Application(Data)             ",
                    ),
                    ("Output", "0 active channels"),
                ]),
            ]),
            "ConfbridgeList" => Some(vec![
                msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("EventList", "start"),
                    ("Message", "Confbridge user list will follow"),
                ]),
                msg(&[
                    ("Event", "ConfbridgeList"),
                    ("ActionID", &id),
                    ("Conference", "700"),
                    ("CallerIDNum", "201"),
                    ("Channel", "PJSIP/201-00000001"),
                    ("MarkedUser", "Yes"),
                ]),
                msg(&[
                    ("Event", "DeviceStateChange"),
                    ("Privilege", "call,all"),
                    ("Device", "confbridge:700"),
                    ("State", "INUSE"),
                ]),
                msg(&[
                    ("Event", "ConfbridgeList"),
                    ("ActionID", &id),
                    ("Conference", "700"),
                    ("CallerIDNum", "202"),
                    ("Channel", "PJSIP/202-00000002"),
                    ("MarkedUser", "Yes"),
                ]),
                msg(&[
                    ("Event", "ConfbridgeListComplete"),
                    ("ActionID", &id),
                    ("EventList", "Complete"),
                    ("ListItems", "2"),
                ]),
            ]),
            "Originate" => Some(vec![
                msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Originate successfully queued"),
                ]),
                msg(&[
                    ("Event", "Newchannel"),
                    ("Privilege", "call,all"),
                    ("Channel", "PJSIP/provider-00000003"),
                ]),
                msg(&[
                    ("Event", "OriginateResponse"),
                    ("Privilege", "call,all"),
                    ("ActionID", &id),
                    ("Response", "Success"),
                    ("Channel", "PJSIP/provider-00000003"),
                    ("Context", "featpkg-conference-guest"),
                    ("Exten", "s"),
                    ("Reason", "4"),
                    ("Uniqueid", "1763900000.7"),
                ]),
            ]),
            _ => standard_reply(a, "s3cret"),
        }
    }))
}

#[test]
fn login_reads_the_banner_and_authenticates() {
    let server = manager();
    let ami = Ami::connect(&creds(&server, "s3cret"), "on", T).unwrap();
    assert_eq!(ami.version, "11.0.0");
    let login = server.received.lock().unwrap()[0].clone();
    assert_eq!(login.get("Action"), Some("Login"));
    assert_eq!(login.get("Username"), Some("featpkg-watch"));
    assert_eq!(login.get("Events"), Some("on"));
    assert!(login.get("ActionID").is_some());
    ami.logoff().unwrap();
}

#[test]
fn wrong_secret_is_an_authentication_failure() {
    let server = manager();
    let err = Ami::connect(&creds(&server, "wrong"), "off", T)
        .err()
        .unwrap();
    assert!(matches!(err, AmiError::AuthenticationFailed), "{err}");
    // And it is not retried: a wrong password will not fix itself.
    let err = connect_with_retry(&creds(&server, "wrong"), "off", T, &|| false)
        .err()
        .unwrap();
    assert!(matches!(err, AmiError::AuthenticationFailed));
}

#[test]
fn command_output_with_an_event_in_between() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    let out = ami.command("core show channels").unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], "0 active channels");
    let sent = server.received.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (sent.get("Action"), sent.get("Command")),
        (Some("Command"), Some("core show channels"))
    );
    let ev = ami.next_event(T).unwrap();
    assert_eq!(
        (ev.event(), ev.get("State")),
        (Some("DeviceStateChange"), Some("INUSE"))
    );
}

#[test]
fn list_actions_collect_their_items_until_complete() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    let items = ami
        .list(action("ConfbridgeList", &[("Conference", "700")]).unwrap())
        .unwrap();
    let callers: Vec<_> = items
        .iter()
        .map(|m| m.get("CallerIDNum").unwrap())
        .collect();
    assert_eq!(callers, ["201", "202"]);
    // The unrelated event that interleaved is not lost.
    assert_eq!(
        ami.next_event(T).unwrap().get("Device"),
        Some("confbridge:700")
    );
}

#[test]
fn async_originate_reports_through_originate_response() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    let id = ami
        .originate(&[
            ("Channel", "PJSIP/0551234567@provider"),
            ("Context", "featpkg-conference-guest"),
            ("Exten", "s"),
            ("Priority", "1"),
        ])
        .unwrap();
    let sent = server.received.lock().unwrap().last().unwrap().clone();
    assert_eq!(sent.get("Async"), Some("true"));
    let done = ami
        .wait_event(T, |m| {
            m.event() == Some("OriginateResponse") && m.get("ActionID") == Some(id.as_str())
        })
        .unwrap();
    assert_eq!(done.get("Response"), Some("Success"));
    assert_eq!(
        ami.next_event(T).unwrap().event(),
        Some("Newchannel"),
        "skipped events stay queued"
    );
}

#[test]
fn unknown_actions_are_refused_with_asterisks_message() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "off", T).unwrap();
    let err = ami.send(action("Frobnicate", &[]).unwrap()).err().unwrap();
    assert!(
        err.to_string()
            .contains("Invalid/unknown command: Frobnicate"),
        "{err}"
    );
}

#[test]
fn events_pushed_in_pieces_are_framed_correctly() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    let wire = msg(&[
        ("Event", "ConfbridgeJoin"),
        ("Privilege", "call,all"),
        ("Conference", "700"),
        ("CallerIDNum", "201"),
    ]);
    let (a, b) = wire.split_at(17);
    server.push_event(a.to_string());
    // The first half alone is not an event yet: a short wait times out without losing it.
    assert!(matches!(
        ami.next_event(Duration::from_millis(100)),
        Err(AmiError::Timeout)
    ));
    server.push_event(b.to_string());
    let ev = ami.next_event(T).unwrap();
    assert_eq!(
        (ev.event(), ev.get("CallerIDNum")),
        (Some("ConfbridgeJoin"), Some("201"))
    );
}

#[test]
fn reconnects_after_asterisk_drops_the_connection() {
    let server = manager();
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    server.drop_connection();
    assert!(matches!(ami.next_event(T), Err(AmiError::Closed)));
    let mut ami = connect_with_retry(&creds(&server, "s3cret"), "call", T, &|| false).unwrap();
    assert_eq!(server.connections(), 2);
    assert_eq!(ami.command("core show version").unwrap().len(), 2);
}

#[test]
fn retry_stops_when_told_to() {
    // Nothing listens on this port (the fake is dropped at once), so every attempt fails.
    let addr = {
        let s = manager();
        s.addr
    };
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let err = connect_with_retry(
        &Credentials::new(addr, "u", "s"),
        "on",
        Duration::from_millis(200),
        &|| started.elapsed() > Duration::from_millis(300),
    );
    assert!(err.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up promptly"
    );
}

#[test]
fn a_peer_that_is_not_asterisk_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::Write;
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let err = Ami::connect(&Credentials::new(addr, "u", "s"), "off", T)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not an Asterisk manager"), "{err}");
}

/// A raw TCP client for checking the fake itself: reads up to the blank line
/// ending a message (or EOF).
struct Raw {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(server: &FakeAmi) -> Raw {
        let stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let banner = raw.read_until(b"\r\n");
        assert_eq!(banner, "Asterisk Call Manager/11.0.0\r\n");
        raw
    }

    fn send(&mut self, pieces: &[&str]) {
        use std::io::Write;
        for p in pieces {
            self.stream.write_all(p.as_bytes()).unwrap();
            self.stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Text up to and including `end`; "" at EOF.
    fn read_until(&mut self, end: &[u8]) -> String {
        use std::io::Read;
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                let got: Vec<u8> = self.buf.drain(..i + end.len()).collect();
                return String::from_utf8(got).unwrap();
            }
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return String::new(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn message(&mut self) -> String {
        self.read_until(b"\r\n\r\n")
    }
}

#[test]
fn the_fake_reads_an_action_split_across_tcp_writes() {
    let server = manager();
    let mut raw = Raw::connect(&server);
    // Pauses longer than the fake's read timeout between the pieces.
    raw.send(&[
        "Action: Lo",
        "gin\r\nActionID: 1\r\nUsername: featpkg-watch\r",
        "\nSecret: s3cret\r\nEvents: off\r\n",
        "\r\n",
    ]);
    let reply = raw.message();
    assert!(
        reply.starts_with(
            "Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n"
        ),
        "{reply:?}"
    );
}

#[test]
fn the_fake_refuses_actions_before_login() {
    let server = manager();
    let mut raw = Raw::connect(&server);
    raw.send(&["Action: Command\r\nActionID: 7\r\nCommand: core show version\r\n\r\n"]);
    assert_eq!(
        raw.message(),
        "Response: Error\r\nActionID: 7\r\nMessage: Permission denied\r\n\r\n"
    );
}

#[test]
fn the_fake_answers_a_failed_login_late_and_closes() {
    let server = manager();
    let mut raw = Raw::connect(&server);
    let sent = std::time::Instant::now();
    raw.send(&["Action: Login\r\nActionID: 1\r\nUsername: x\r\nSecret: nope\r\n\r\n"]);
    let reply = raw.message();
    assert!(
        reply.contains("Message: Authentication failed\r\n"),
        "{reply:?}"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "Asterisk waits about a second"
    );
    assert_eq!(raw.message(), "", "then it closes the connection");
}

#[test]
fn logoff_says_goodbye_and_closes() {
    let server = manager();
    let mut raw = Raw::connect(&server);
    raw.send(&["Action: Logoff\r\nActionID: 9\r\n\r\n"]);
    assert!(raw.message().starts_with("Response: Goodbye\r\n"));
    assert_eq!(raw.message(), "");
}

#[test]
fn an_originate_response_event_is_never_taken_for_the_reply() {
    // The OriginateResponse event carries `Response:` and the ActionID too; if
    // it is written before the `queued` reply it must stay an event.
    let server = FakeAmi::start(Arc::new(|a: &Message| {
        let id = a.get("ActionID").unwrap_or("").to_string();
        match a.get("Action").unwrap_or("") {
            "Originate" => Some(vec![
                msg(&[
                    ("Event", "OriginateResponse"),
                    ("Privilege", "call,all"),
                    ("ActionID", &id),
                    ("Response", "Failure"),
                    ("Channel", "PJSIP/201"),
                    ("Context", "featpkg-busy-callback-dial"),
                    ("Exten", "202"),
                    ("Reason", "0"),
                    ("Uniqueid", "<null>"),
                ]),
                msg(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Originate successfully queued"),
                ]),
            ]),
            _ => standard_reply(a, "s3cret"),
        }
    }));
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "call", T).unwrap();
    let id = ami
        .originate(&[
            ("Channel", "PJSIP/201"),
            ("Application", "Wait"),
            ("Data", "1"),
        ])
        .unwrap();
    let done = ami
        .wait_event(T, |m| m.event() == Some("OriginateResponse"))
        .unwrap();
    assert_eq!(
        (done.get("ActionID"), done.get("Response")),
        (Some(id.as_str()), Some("Failure"))
    );
}

#[test]
fn replies_and_events_written_a_few_bytes_at_a_time_are_framed() {
    let server = manager();
    server.dribble(true);
    let mut ami = Ami::connect(&creds(&server, "s3cret"), "on", T).unwrap();
    let out = ami.command("core show channels").unwrap();
    assert_eq!(out[1], "0 active channels");
    let items = ami
        .list(action("ConfbridgeList", &[("Conference", "700")]).unwrap())
        .unwrap();
    assert_eq!(items.len(), 2);
    let names: Vec<_> = std::iter::from_fn(|| ami.next_event(Duration::from_millis(300)).ok())
        .map(|e| e.event().unwrap().to_string())
        .collect();
    // Logged in with `Events: on`: FullyBooted first, then what interleaved.
    assert_eq!(
        names,
        ["FullyBooted", "DeviceStateChange", "DeviceStateChange"]
    );
}

#[test]
fn the_secret_never_appears_in_errors() {
    let server = manager();
    let secret = "Zq9-very-secret";
    let err = Ami::connect(&creds(&server, secret), "off", T)
        .err()
        .unwrap();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let c = creds(&server, secret);
    assert!(!format!("{c:?}").contains(secret));
    // A dead port: the connection error names the address, not the secret.
    let addr = {
        let s = manager();
        s.addr
    };
    std::thread::sleep(Duration::from_millis(50));
    let err = Ami::connect(&Credentials::new(addr, "u", secret), "off", T)
        .err()
        .unwrap();
    assert!(!format!("{err} {err:?}").contains(secret));
}

//! A fake Asterisk manager on 127.0.0.1 for tests: it sends the real banner,
//! reads actions with the real framing, and answers through a script the test
//! gives (responses and events as wire text, from reference/asterisk.md §2).
//! Tests can push events at any time and drop the connection (an Asterisk
//! restart). It stops by itself when dropped.
//!
//! What Asterisk's manager.c does whatever the script says is done here:
//! actions other than Login/Logoff/Challenge before a successful Login get
//! `Permission denied`; a failed Login is answered after a delay and the
//! connection closed; Logoff's `Goodbye` closes it; a session that logged in
//! with `Events: off` gets no events; actions may arrive in any number of TCP
//! reads. [`FakeAmi::dribble`] makes the fake write in small pieces too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Message, take_message};

/// The banner Asterisk 22 sends.
pub const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";

/// How long Asterisk waits before it answers a failed Login (then it closes).
pub const LOGIN_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Builds wire text for a message: `msg(&[("Response", "Success"), …])`.
pub fn msg(fields: &[(&str, &str)]) -> String {
    Message {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .to_wire()
}

/// Answers one action with wire text (zero or more messages); `None` drops the connection.
pub type Script = dyn Fn(&Message) -> Option<Vec<String>> + Send + Sync;

/// The script most tests start from: Login accepted for `secret`, Ping, Logoff.
pub fn standard_reply(action: &Message, secret: &str) -> Option<Vec<String>> {
    let id = action.get("ActionID").unwrap_or("");
    match action.get("Action").unwrap_or("") {
        a if a.eq_ignore_ascii_case("Login") => {
            if action.get("Secret") == Some(secret) {
                let mut replies = vec![msg(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("Message", "Authentication accepted"),
                ])];
                // A session that takes system events hears that Asterisk is up.
                let events = action.get("Events").unwrap_or("on").to_ascii_lowercase();
                if events
                    .split(',')
                    .any(|c| ["on", "all", "system"].contains(&c.trim()))
                {
                    replies.push(msg(&[
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", "3"),
                        ("LastReload", "3"),
                        ("Status", "Fully Booted"),
                    ]));
                }
                Some(replies)
            } else {
                // The fake waits LOGIN_FAILURE_DELAY before sending this, then closes.
                Some(vec![msg(&[
                    ("Response", "Error"),
                    ("ActionID", id),
                    ("Message", "Authentication failed"),
                ])])
            }
        }
        a if a.eq_ignore_ascii_case("Ping") => Some(vec![msg(&[
            ("Response", "Success"),
            ("ActionID", id),
            ("Ping", "Pong"),
            ("Timestamp", "1763900000.000000"),
        ])]),
        a if a.eq_ignore_ascii_case("Logoff") => Some(vec![msg(&[
            ("Response", "Goodbye"),
            ("ActionID", id),
            ("Message", "Thanks for all the fish."),
        ])]),
        other => Some(vec![msg(&[
            ("Response", "Error"),
            ("ActionID", id),
            (
                "Message",
                &format!(
                    "Invalid/unknown command: {other}. Use Action: ListCommands to show available commands."
                ),
            ),
        ])]),
    }
}

/// A running fake manager.
pub struct FakeAmi {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    push: Arc<Mutex<Option<Sender<Option<String>>>>>,
    /// Every action received, in order, across connections.
    pub received: Arc<Mutex<Vec<Message>>>,
    connections: Arc<AtomicUsize>,
    dribble: Arc<AtomicBool>,
}

impl FakeAmi {
    /// Listens on 127.0.0.1 (an ephemeral port) and serves connections one at a time.
    pub fn start(script: Arc<Script>) -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let push: Arc<Mutex<Option<Sender<Option<String>>>>> = Arc::new(Mutex::new(None));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let dribble = Arc::new(AtomicBool::new(false));
        let (s, p, r, c, d) = (
            stop.clone(),
            push.clone(),
            received.clone(),
            connections.clone(),
            dribble.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        let (tx, rx) = channel();
                        *p.lock().unwrap() = Some(tx);
                        let conn = Conn {
                            stream,
                            dribble: &d,
                            authenticated: false,
                            events: true,
                            held: Vec::new(),
                        };
                        conn.serve(&script, &r, rx, &s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeAmi {
            addr,
            stop,
            push,
            received,
            connections,
            dribble,
        }
    }

    /// From now on, writes every reply and event a few bytes at a time, so
    /// the client must put messages together from many TCP reads.
    pub fn dribble(&self, on: bool) {
        self.dribble.store(on, Ordering::SeqCst);
    }

    /// Sends an event (wire text) to the connected client.
    pub fn push_event(&self, wire: String) {
        if let Some(tx) = self.push.lock().unwrap().as_ref() {
            let _ = tx.send(Some(wire));
        }
    }

    /// Closes the current connection, as an Asterisk restart does.
    pub fn drop_connection(&self) {
        if let Some(tx) = self.push.lock().unwrap().as_ref() {
            let _ = tx.send(None);
        }
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeAmi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One client connection, as manager.c's session sees it.
struct Conn<'a> {
    stream: TcpStream,
    dribble: &'a AtomicBool,
    /// Logged in: before that only Login, Logoff and Challenge are served.
    authenticated: bool,
    /// The Login did not say `Events: off`.
    events: bool,
    /// Events pushed before the login; Asterisk sends none before it.
    held: Vec<String>,
}

impl Conn<'_> {
    /// Writes wire text, in pieces with short pauses when dribbling.
    fn write(&mut self, wire: &str) -> std::io::Result<()> {
        if !self.dribble.load(Ordering::SeqCst) {
            return self.stream.write_all(wire.as_bytes());
        }
        for piece in wire.as_bytes().chunks(7) {
            self.stream.write_all(piece)?;
            self.stream.flush()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Sends a pushed event if this session may get events now.
    fn event(&mut self, wire: String) -> std::io::Result<()> {
        match (self.authenticated, self.events) {
            (false, _) => {
                self.held.push(wire);
                Ok(())
            }
            (true, true) => self.write(&wire),
            (true, false) => Ok(()),
        }
    }

    /// Answers one action; false when the connection is to be closed.
    fn answer(&mut self, action: &Message, script: &Arc<Script>) -> bool {
        let name = action.get("Action").unwrap_or("").to_ascii_lowercase();
        if !self.authenticated && !["login", "logoff", "challenge"].contains(&name.as_str()) {
            let id = action.get("ActionID").unwrap_or("");
            return self
                .write(&msg(&[
                    ("Response", "Error"),
                    ("ActionID", id),
                    ("Message", "Permission denied"),
                ]))
                .is_ok();
        }
        let Some(replies) = script(action) else {
            self.close();
            return false;
        };
        let said = |text: &str| {
            replies
                .iter()
                .any(|w| w.contains(&format!("Message: {text}\r\n")))
        };
        let login_failed = name == "login" && said("Authentication failed");
        if login_failed {
            std::thread::sleep(LOGIN_FAILURE_DELAY);
        }
        if name == "login" && said("Authentication accepted") {
            self.authenticated = true;
            self.events = !action
                .get("Events")
                .is_some_and(|e| e.eq_ignore_ascii_case("off"));
        }
        for wire in &replies {
            if self.write(wire).is_err() {
                return false;
            }
        }
        if login_failed || name == "logoff" {
            self.close();
            return false;
        }
        if self.authenticated {
            for wire in std::mem::take(&mut self.held) {
                if self.event(wire).is_err() {
                    return false;
                }
            }
        }
        true
    }

    fn serve(
        mut self,
        script: &Arc<Script>,
        received: &Arc<Mutex<Vec<Message>>>,
        pushes: Receiver<Option<String>>,
        stop: &AtomicBool,
    ) {
        if self.write(BANNER).is_err() {
            return;
        }
        let mut reader = self.stream.try_clone().expect("clone");
        reader
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        // Bytes read and not yet a whole action: a pause in the middle of an
        // action must not lose its first half.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            while let Ok(push) = pushes.try_recv() {
                let Some(wire) = push else {
                    self.close();
                    return;
                };
                if self.event(wire).is_err() {
                    return;
                }
            }
            match take_message(&mut buf) {
                Ok(Some(action)) => {
                    received.lock().unwrap().push(action.clone());
                    if !self.answer(&action, script) {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => return,
            }
            match reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }
}

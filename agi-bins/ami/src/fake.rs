//! A fake Asterisk manager on 127.0.0.1 for tests: it sends the real banner,
//! reads actions with the real framing, and answers through a script the test
//! gives (responses and events as wire text, from reference/asterisk.md §2).
//! Tests can push events at any time and drop the connection (an Asterisk
//! restart). It stops by itself when dropped.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Message, read_message};

/// The banner Asterisk 22 sends.
pub const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";

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
                Some(vec![msg(&[
                    ("Response", "Success"),
                    ("ActionID", id),
                    ("Message", "Authentication accepted"),
                ])])
            } else {
                // Asterisk answers after a 1 s delay, then closes; the delay is left out here.
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
        let (s, p, r, c) = (
            stop.clone(),
            push.clone(),
            received.clone(),
            connections.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        let (tx, rx) = channel();
                        *p.lock().unwrap() = Some(tx);
                        serve(stream, &script, &r, rx, &s);
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
        }
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

fn serve(
    stream: TcpStream,
    script: &Arc<Script>,
    received: &Arc<Mutex<Vec<Message>>>,
    pushes: Receiver<Option<String>>,
    stop: &AtomicBool,
) {
    let mut writer = stream.try_clone().expect("clone");
    if writer.write_all(BANNER.as_bytes()).is_err() {
        return;
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream);
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        while let Ok(push) = pushes.try_recv() {
            match push {
                Some(wire) => {
                    if writer.write_all(wire.as_bytes()).is_err() {
                        return;
                    }
                }
                None => {
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
        match read_message(&mut reader) {
            Ok(action) => {
                received.lock().unwrap().push(action.clone());
                match script(&action) {
                    Some(replies) => {
                        for wire in replies {
                            if writer.write_all(wire.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                    None => {
                        let _ = writer.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            }
            Err(crate::AmiError::Timeout) => continue,
            Err(_) => return,
        }
    }
}

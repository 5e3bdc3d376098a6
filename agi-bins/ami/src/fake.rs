//! A fake Asterisk manager on 127.0.0.1 for tests: it sends the real banner,
//! reads actions with the real framing, and answers through a script the test
//! gives (responses and events as wire text, from reference/asterisk.md §2).
//! Tests can push events at any time and drop the connection (an Asterisk
//! restart). It stops by itself when dropped.
//!
//! What Asterisk's manager.c does whatever the script says is done here:
//! actions other than Login/Logoff/Challenge before a successful Login get
//! `Permission denied`; a failed Login is answered after a delay and the
//! connection closed; a second Login is `Already authenticated`; Logoff's
//! `Goodbye` closes it; a session that logged in with `Events: off` gets no
//! events; actions may arrive in any number of TCP reads.
//! [`FakeAmi::dribble`] makes the fake write in small pieces too.
//!
//! The builders below ([`originate_response_success`], [`confbridge_list`],
//! [`device_state_change`]…) write the replies and events of the actions the
//! watchers use exactly as Asterisk 22 does: same fields in the same order,
//! with values only a live system would differ in (unique ids, bridge ids)
//! made up. `tests/real_fakes.rs` sends the same actions to a real Asterisk
//! and compares its messages with these, and this fake's own session texts
//! (banner, login, Ping, Logoff, errors) with the real ones.

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

/// Like [`msg`], for a reply to an action: manager.c writes `ActionID` only
/// when the action had one.
fn reply(id: &str, fields: &[(&str, &str)]) -> String {
    let mut all: Vec<(&str, &str)> = Vec::with_capacity(fields.len() + 1);
    for (i, field) in fields.iter().enumerate() {
        all.push(*field);
        // Right after `Response:` (or `Event:`), as astman_send_response_full does.
        if i == 0 && !id.is_empty() {
            all.push(("ActionID", id));
        }
    }
    msg(&all)
}

/// Answers one action with wire text (zero or more messages); `None` drops the connection.
pub type Script = dyn Fn(&Message) -> Option<Vec<String>> + Send + Sync;

/// The script most tests start from: Login accepted for `secret`, Ping, Logoff.
pub fn standard_reply(action: &Message, secret: &str) -> Option<Vec<String>> {
    let id = action.get("ActionID").unwrap_or("");
    match action.get("Action").unwrap_or("") {
        a if a.eq_ignore_ascii_case("Login") => {
            if action.get("Secret") == Some(secret) {
                let mut replies = vec![login_accepted(id)];
                // A session that takes system events hears that Asterisk is up
                // (manager.c also needs the user's `read` to include system:
                // this fake's users read everything).
                let events = action.get("Events").unwrap_or("on").to_ascii_lowercase();
                if events
                    .split(',')
                    .any(|c| ["on", "all", "system"].contains(&c.trim()))
                {
                    replies.push(fully_booted(3, 3));
                }
                Some(replies)
            } else {
                // The fake waits LOGIN_FAILURE_DELAY before sending this, then closes.
                Some(vec![login_failed(id)])
            }
        }
        a if a.eq_ignore_ascii_case("Ping") => Some(vec![pong(id, "1763900000.000000")]),
        a if a.eq_ignore_ascii_case("Logoff") => Some(vec![goodbye(id)]),
        other => Some(vec![unknown_action(id, other)]),
    }
}

// --- Asterisk 22's texts (main/manager.c, main/manager_channels.c,
// --- apps/confbridge/confbridge_manager.c, res/res_manager_devicestate.c).

/// `Response: Error` with `message`.
pub fn error(id: &str, message: &str) -> String {
    reply(id, &[("Response", "Error"), ("Message", message)])
}

/// `Response: Success` with `message`.
pub fn success(id: &str, message: &str) -> String {
    reply(id, &[("Response", "Success"), ("Message", message)])
}

pub fn login_accepted(id: &str) -> String {
    success(id, "Authentication accepted")
}

pub fn login_failed(id: &str) -> String {
    error(id, "Authentication failed")
}

/// A Login on a session that is logged in already.
pub fn already_authenticated(id: &str) -> String {
    success(id, "Already authenticated")
}

/// Any action but Login, Logoff or Challenge before the login.
pub fn permission_denied(id: &str) -> String {
    error(id, "Permission denied")
}

pub fn pong(id: &str, timestamp: &str) -> String {
    reply(
        id,
        &[
            ("Response", "Success"),
            ("Ping", "Pong"),
            ("Timestamp", timestamp),
        ],
    )
}

pub fn goodbye(id: &str) -> String {
    reply(
        id,
        &[
            ("Response", "Goodbye"),
            ("Message", "Thanks for all the fish."),
        ],
    )
}

pub fn unknown_action(id: &str, action: &str) -> String {
    error(
        id,
        &format!(
            "Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
        ),
    )
}

/// The event a session reading `system` gets right after its login.
pub fn fully_booted(uptime: u64, last_reload: u64) -> String {
    msg(&[
        ("Event", "FullyBooted"),
        ("Privilege", "system,all"),
        ("Uptime", &uptime.to_string()),
        ("LastReload", &last_reload.to_string()),
        ("Status", "Fully Booted"),
    ])
}

/// An async Originate accepted; its outcome comes as an `OriginateResponse`.
pub fn originate_queued(id: &str) -> String {
    success(id, "Originate successfully queued")
}

/// Why Asterisk refuses an async Originate at once: the Context/Exten/Priority
/// it is to run does not exist. (Its `Originate failed` is only for a thread
/// that could not be started.)
pub const NO_SUCH_EXTENSION: &str = "Extension does not exist.";

/// `OriginateResponse` `Reason` values (the last control frame seen).
/// Busy (SIP 486), no contact, an unknown technology: 0.
pub const REASON_FAILED: u32 = 0;
/// Rang until the Originate's `Timeout`, never answered.
pub const REASON_NO_ANSWER: u32 = 3;
pub const REASON_ANSWERED: u32 = 4;

/// The Originate's `CallerID` as `OriginateResponse` repeats it (`<unknown>`
/// when the Originate had none).
fn originate_caller_id<'a>(caller_id: Option<(&'a str, &'a str)>) -> (&'a str, &'a str) {
    let (num, name) = caller_id.unwrap_or(("", ""));
    let or_unknown = |s: &'a str| if s.is_empty() { "<unknown>" } else { s };
    (or_unknown(num), or_unknown(name))
}

/// An answered Originate (Context/Exten form): `channel` is the new channel.
pub fn originate_response_success(
    id: &str,
    channel: &str,
    uniqueid: &str,
    context: &str,
    exten: &str,
    caller_id: Option<(&str, &str)>,
) -> String {
    let (num, name) = originate_caller_id(caller_id);
    msg(&[
        ("Event", "OriginateResponse"),
        ("Privilege", "call,all"),
        ("ActionID", id),
        ("Response", "Success"),
        ("Channel", channel),
        ("Context", context),
        ("Exten", exten),
        ("Reason", &REASON_ANSWERED.to_string()),
        ("Uniqueid", uniqueid),
        ("CallerIDNum", num),
        ("CallerIDName", name),
    ])
}

/// A failed Originate: no channel, so `Channel` is the requested `tech/data`
/// and `Uniqueid` is `<unknown>`.
pub fn originate_response_failure(
    id: &str,
    requested: &str,
    context: &str,
    exten: &str,
    reason: u32,
    caller_id: Option<(&str, &str)>,
) -> String {
    let (num, name) = originate_caller_id(caller_id);
    msg(&[
        ("Event", "OriginateResponse"),
        ("Privilege", "call,all"),
        ("ActionID", id),
        ("Response", "Failure"),
        ("Channel", requested),
        ("Context", context),
        ("Exten", exten),
        ("Reason", &reason.to_string()),
        ("Uniqueid", "<unknown>"),
        ("CallerIDNum", num),
        ("CallerIDName", name),
    ])
}

/// `Hangup` of a channel that exists.
pub fn channel_hungup(id: &str) -> String {
    success(id, "Channel Hungup")
}

/// `Hangup` (and others) naming a channel that is gone.
pub fn no_such_channel(id: &str) -> String {
    error(id, "No such channel")
}

/// `Getvar` (e.g. of `DEVICE_STATE(PJSIP/201)`: NOT_INUSE, INUSE, UNAVAILABLE,
/// UNKNOWN for an idle IAX2 peer, INVALID for a device that does not exist).
pub fn getvar(id: &str, variable: &str, value: &str) -> String {
    reply(
        id,
        &[
            ("Response", "Success"),
            ("Variable", variable),
            ("Value", value),
        ],
    )
}

/// The event a device's new state sends (res_manager_devicestate.so).
pub fn device_state_change(device: &str, state: &str) -> String {
    msg(&[
        ("Event", "DeviceStateChange"),
        ("Privilege", "call,all"),
        ("Device", device),
        ("State", state),
    ])
}

/// `DeviceStateList`: the start reply, one item per cached device, the end.
pub fn device_state_list(id: &str, devices: &[(&str, &str)]) -> Vec<String> {
    let mut out = vec![list_start(id, "Device State Changes will follow")];
    for (device, state) in devices {
        out.push(reply(
            id,
            &[
                ("Event", "DeviceStateChange"),
                ("Device", device),
                ("State", state),
            ],
        ));
    }
    out.push(list_complete(id, "DeviceStateListComplete", devices.len()));
    out
}

fn list_start(id: &str, message: &str) -> String {
    reply(
        id,
        &[
            ("Response", "Success"),
            ("EventList", "start"),
            ("Message", message),
        ],
    )
}

fn list_complete(id: &str, event: &str, items: usize) -> String {
    reply(
        id,
        &[
            ("Event", event),
            ("EventList", "Complete"),
            ("ListItems", &items.to_string()),
        ],
    )
}

/// A channel as channel events and list items show it (manager_channels.c
/// `ast_manager_build_channel_state_string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    /// `ChannelState` (6: Up).
    pub state: u32,
    pub caller_num: String,
    pub caller_name: String,
    pub connected_num: String,
    pub connected_name: String,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub uniqueid: String,
    pub linkedid: String,
}

impl Channel {
    /// An answered channel at `context,exten,priority`, caller ID `num`/`name`,
    /// no connected line known.
    pub fn up(
        name: &str,
        num: &str,
        caller_name: &str,
        context: &str,
        exten: &str,
        priority: u32,
    ) -> Channel {
        Channel {
            name: name.to_string(),
            state: 6,
            caller_num: num.to_string(),
            caller_name: caller_name.to_string(),
            connected_num: String::new(),
            connected_name: String::new(),
            context: context.to_string(),
            exten: exten.to_string(),
            priority,
            uniqueid: "1763900000.20".to_string(),
            linkedid: "1763900000.20".to_string(),
        }
    }

    /// `ChannelStateDesc` for a `ChannelState` (channel.c `ast_state2str`).
    pub fn state_desc(state: u32) -> &'static str {
        match state {
            0 => "Down",
            1 => "Rsrvd",
            2 => "OffHook",
            3 => "Dialing",
            4 => "Ring",
            5 => "Ringing",
            6 => "Up",
            7 => "Busy",
            8 => "Dialing Offhook",
            9 => "Pre-ring",
            _ => "Unknown",
        }
    }

    /// The channel's fields, in Asterisk's order.
    pub fn fields(&self) -> Vec<(String, String)> {
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "<unknown>".to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            ("Channel".into(), self.name.clone()),
            ("ChannelState".into(), self.state.to_string()),
            (
                "ChannelStateDesc".into(),
                Self::state_desc(self.state).into(),
            ),
            ("CallerIDNum".into(), or_unknown(&self.caller_num)),
            ("CallerIDName".into(), or_unknown(&self.caller_name)),
            ("ConnectedLineNum".into(), or_unknown(&self.connected_num)),
            ("ConnectedLineName".into(), or_unknown(&self.connected_name)),
            ("Language".into(), "en".into()),
            ("AccountCode".into(), String::new()),
            ("Context".into(), self.context.clone()),
            ("Exten".into(), self.exten.clone()),
            ("Priority".into(), self.priority.to_string()),
            ("Uniqueid".into(), self.uniqueid.clone()),
            ("Linkedid".into(), self.linkedid.clone()),
        ]
    }
}

fn wire(fields: Vec<(String, String)>) -> String {
    Message { fields }.to_wire()
}

fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A channel's `Hangup` event; `cause` 16 is "Normal Clearing" (an AMI
/// Hangup with `Cause: 16`, a caller who hung up).
pub fn hangup_event(channel: &Channel, cause: u32, cause_txt: &str) -> String {
    let mut fields = owned(&[("Event", "Hangup"), ("Privilege", "call,all")]);
    fields.extend(channel.fields());
    fields.extend(owned(&[
        ("Cause", &cause.to_string()),
        ("Cause-txt", cause_txt),
    ]));
    wire(fields)
}

/// The bridge fields ConfBridge events carry for `conference`.
fn conference_bridge(conference: &str, channels_in_bridge: usize) -> Vec<(String, String)> {
    owned(&[
        ("Conference", conference),
        ("BridgeUniqueid", "a1b2c3d4-0000-4000-8000-000000000700"),
        ("BridgeType", "base"),
        ("BridgeTechnology", "softmix"),
        ("BridgeCreator", "ConfBridge"),
        ("BridgeName", conference),
        ("BridgeNumChannels", &channels_in_bridge.to_string()),
        ("BridgeVideoSourceMode", "none"),
    ])
}

/// `ConfbridgeJoin`: `channel` joined `conference` (a user, not an admin, not
/// muted); `channels_in_bridge` counts it, and ConfBridge's announcer channel
/// while one plays.
pub fn confbridge_join(conference: &str, channels_in_bridge: usize, channel: &Channel) -> String {
    let mut fields = owned(&[("Event", "ConfbridgeJoin"), ("Privilege", "call,all")]);
    fields.extend(conference_bridge(conference, channels_in_bridge));
    fields.extend(channel.fields());
    fields.extend(owned(&[("Admin", "No"), ("Muted", "No")]));
    wire(fields)
}

/// `ConfbridgeLeave`: `channel` left `conference`.
pub fn confbridge_leave(conference: &str, channels_in_bridge: usize, channel: &Channel) -> String {
    let mut fields = owned(&[("Event", "ConfbridgeLeave"), ("Privilege", "call,all")]);
    fields.extend(conference_bridge(conference, channels_in_bridge));
    fields.extend(channel.fields());
    fields.extend(owned(&[("Admin", "No")]));
    wire(fields)
}

/// `ConfbridgeList` of a conference with `members` (users: not admins,
/// marked, muted or talking).
pub fn confbridge_list(id: &str, conference: &str, members: &[Channel]) -> Vec<String> {
    let mut out = vec![list_start(id, "Confbridge user list will follow")];
    for member in members {
        let mut fields = owned(&[("Event", "ConfbridgeList")]);
        if !id.is_empty() {
            fields.push(("ActionID".into(), id.into()));
        }
        fields.extend(owned(&[
            ("Conference", conference),
            ("Admin", "No"),
            ("MarkedUser", "No"),
            ("WaitMarked", "No"),
            ("EndMarked", "No"),
            ("EndMarkedAny", "No"),
            ("Waiting", "No"),
            ("Muted", "No"),
            ("Talking", "No"),
            ("AnsweredTime", "4"),
        ]));
        fields.extend(member.fields());
        out.push(wire(fields));
    }
    out.push(list_complete(id, "ConfbridgeListComplete", members.len()));
    out
}

/// `ConfbridgeList` when no conference at all is running.
pub fn no_active_conferences(id: &str) -> String {
    error(id, "No active conferences.")
}

/// `ConfbridgeList` of a conference that is not running while others are.
pub fn no_such_conference(id: &str) -> String {
    error(id, "No Conference by that name found.")
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
        let id = action.get("ActionID").unwrap_or("");
        if !self.authenticated && !["login", "logoff", "challenge"].contains(&name.as_str()) {
            return self.write(&permission_denied(id)).is_ok();
        }
        if self.authenticated && name == "login" {
            return self.write(&already_authenticated(id)).is_ok();
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

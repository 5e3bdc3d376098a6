//! A small synchronous AMI client for featpkg's watchers (reference/asterisk.md §2).
//!
//! AMI is line based over TCP: on connect Asterisk sends one banner line
//! (`Asterisk Call Manager/<version>`), then messages made of `Key: Value` lines
//! (CRLF; bare LF accepted) ended by an empty line. Actions carry an `ActionID`
//! that Asterisk echoes in the response and in list events; events interleave
//! with responses at any time, so responses are matched by ActionID and events
//! that arrive meanwhile are kept for [`Ami::next_event`].
//!
//! Credentials come from a featpkg-owned file (mode 0600) and are never logged.

pub mod daemon;
#[cfg(feature = "fake-server")]
pub mod fake;
pub mod wake;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Everything that can go wrong talking to AMI.
#[derive(Debug)]
pub enum AmiError {
    Io(std::io::Error),
    /// The peer is not an Asterisk manager (wrong banner) or broke the framing.
    Protocol(String),
    /// `Response: Error` with its `Message:`.
    Refused(String),
    /// Login rejected (`Authentication failed`).
    AuthenticationFailed,
    /// No answer within the time given.
    Timeout,
    /// Asterisk closed the connection.
    Closed,
    /// The credentials file is unusable; names the file and the rule, never the secret.
    Credentials(String),
}

impl std::fmt::Display for AmiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmiError::Io(e) => write!(f, "AMI connection error: {e}"),
            AmiError::Protocol(m) => write!(f, "AMI protocol error: {m}"),
            AmiError::Refused(m) => write!(f, "Asterisk refused the action: {m}"),
            AmiError::AuthenticationFailed => write!(f, "AMI login failed: Authentication failed"),
            AmiError::Timeout => write!(f, "no answer from Asterisk in time"),
            AmiError::Closed => write!(f, "Asterisk closed the AMI connection"),
            AmiError::Credentials(m) => write!(f, "AMI credentials: {m}"),
        }
    }
}

impl std::error::Error for AmiError {}

impl From<std::io::Error> for AmiError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => AmiError::Timeout,
            _ => AmiError::Io(e),
        }
    }
}

/// One AMI message: ordered `Key: Value` pairs (keys may repeat, e.g. `Output`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<(String, String)>,
}

impl Message {
    /// The first value of `key` (case-insensitive, as Asterisk treats keys).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The event name, for events.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// Serialises as AMI framing (CRLF, blank line at the end).
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out
    }
}

/// Builds an action message; values with CR/LF are refused (they would inject keys).
pub fn action(name: &str, fields: &[(&str, &str)]) -> Result<Message, AmiError> {
    let mut msg = Message {
        fields: vec![("Action".into(), name.into())],
    };
    for (k, v) in fields {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(AmiError::Protocol(format!(
                "field {k:?} would break the AMI framing"
            )));
        }
        msg.fields.push(((*k).into(), (*v).into()));
    }
    Ok(msg)
}

/// Reads one message (up to the blank line) from `reader`.
pub fn read_message(reader: &mut impl BufRead) -> Result<Message, AmiError> {
    let mut msg = Message::default();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(AmiError::Closed);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if msg.fields.is_empty() {
                continue; // stray blank line between messages
            }
            return Ok(msg);
        }
        match line.split_once(':') {
            Some((k, v)) => msg
                .fields
                .push((k.trim().to_string(), v.trim_start().to_string())),
            // Asterisk 13 and older `Response: Follows` bodies: keep as output.
            None => msg.fields.push(("Output".into(), line.to_string())),
        }
    }
}

/// Where and as whom to log in; read from a featpkg-owned file.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub addr: SocketAddr,
    pub username: String,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Credentials given directly (tests, tools).
    pub fn new(addr: SocketAddr, username: &str, secret: &str) -> Credentials {
        Credentials {
            addr,
            username: username.to_string(),
            secret: secret.to_string(),
        }
    }

    /// Reads `host=`, `port=`, `username=`, `secret=` lines from `path`, which must
    /// not be readable by group or others (mode 0600) and must point at a loopback address.
    pub fn load(path: &Path) -> Result<Credentials, AmiError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta =
            std::fs::metadata(path).map_err(|e| AmiError::Credentials(format!("{shown}: {e}")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(AmiError::Credentials(format!(
                "{shown} is readable by others (mode {:04o}); it must be 0600",
                meta.permissions().mode() & 0o7777
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| AmiError::Credentials(format!("{shown}: {e}")))?;
        let mut host = "127.0.0.1".to_string();
        let mut port = "5038".to_string();
        let (mut username, mut secret) = (None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                AmiError::Credentials(format!("{shown}:{}: expected key=value", n + 1))
            })?;
            match k.trim() {
                "host" => host = v.trim().to_string(),
                "port" => port = v.trim().to_string(),
                "username" => username = Some(v.trim().to_string()),
                "secret" => secret = Some(v.trim().to_string()),
                // Name the key only when it is a plain word: a malformed
                // line such as `Secret: c2VjcmV0=` has the secret left of `=`.
                other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    return Err(AmiError::Credentials(format!(
                        "{shown}:{}: unknown key {other:?} (expected host, port, username, secret)",
                        n + 1
                    )));
                }
                _ => {
                    return Err(AmiError::Credentials(format!(
                        "{shown}:{}: expected key=value with key host, port, username or secret",
                        n + 1
                    )));
                }
            }
        }
        let addr: SocketAddr = format!("{host}:{port}").parse().map_err(|_| {
            AmiError::Credentials(format!("{shown}: host/port is not an IP address and port"))
        })?;
        if !addr.ip().is_loopback() {
            return Err(AmiError::Credentials(format!(
                "{shown}: featpkg talks AMI on loopback only, not {}",
                addr.ip()
            )));
        }
        Ok(Credentials {
            addr,
            username: username
                .ok_or_else(|| AmiError::Credentials(format!("{shown}: username missing")))?,
            secret: secret
                .ok_or_else(|| AmiError::Credentials(format!("{shown}: secret missing")))?,
        })
    }
}

/// Bytes read from the socket and not yet framed: a read timeout in the middle
/// of a message must not lose its first half.
struct Framed {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Framed {
    fn fill(&mut self, until: Instant) -> Result<(), AmiError> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AmiError::Timeout);
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 4096];
        let n = match std::io::Read::read(&mut self.stream, &mut chunk) {
            // A signal (the watcher's SIGTERM) interrupted the wait: the
            // connection is fine; wait out the rest of the time, after which
            // the caller sees its stop flag.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return self.fill(until),
            other => other?,
        };
        if n == 0 {
            return Err(AmiError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn line(&mut self, until: Instant) -> Result<String, AmiError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string());
            }
            self.fill(until)?;
        }
    }

    fn message(&mut self, until: Instant) -> Result<Message, AmiError> {
        loop {
            if let Some(msg) = take_message(&mut self.buf)? {
                return Ok(msg);
            }
            self.fill(until)?;
        }
    }
}

/// Takes one complete message off the front of `buf`, if one is there: its
/// fields followed by a blank line (CRLF or bare LF; leading blank lines are
/// skipped). An incomplete message stays in `buf` untouched, so bytes that
/// arrive in several TCP reads are framed as one message.
pub fn take_message(buf: &mut Vec<u8>) -> Result<Option<Message>, AmiError> {
    let skipped = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let body = &buf[skipped..];
    let find = |pat: &[u8]| {
        body.windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + pat.len())
    };
    let Some(len) = [find(b"\r\n\r\n"), find(b"\n\n")]
        .into_iter()
        .flatten()
        .min()
    else {
        return Ok(None);
    };
    let consumed = skipped + len;
    let mut reader = &buf[..consumed];
    let msg = read_message(&mut reader)?;
    buf.drain(..consumed);
    Ok(Some(msg))
}

/// True for the response to action `id`: `Response:` and the ActionID, and not
/// an event — `OriginateResponse` events carry `Response:` and the ActionID too.
fn is_reply_to(msg: &Message, id: &str) -> bool {
    msg.event().is_none() && msg.get("Response").is_some() && msg.get("ActionID") == Some(id)
}

/// Sleeps for `wait` in short steps; returns true at once if `give_up()` says stop.
pub fn sleep_unless(wait: Duration, give_up: &dyn Fn() -> bool) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if give_up() {
            return true;
        }
        std::thread::sleep(
            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
        );
    }
    give_up()
}

/// A logged-in AMI connection.
pub struct Ami {
    conn: Framed,
    writer: TcpStream,
    /// Version from the banner (`11.0.0`).
    pub version: String,
    next_id: u64,
    id_prefix: String,
    pending_events: VecDeque<Message>,
    timeout: Duration,
}

impl Ami {
    /// Connects, checks the banner and logs in. `events`: `on` for watchers, `off` for commands.
    pub fn connect(creds: &Credentials, events: &str, timeout: Duration) -> Result<Ami, AmiError> {
        let stream = TcpStream::connect_timeout(&creds.addr, timeout)?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut conn = Framed {
            stream,
            buf: Vec::new(),
        };
        let banner = conn.line(Instant::now() + timeout)?;
        let version = banner
            .trim_end()
            .strip_prefix("Asterisk Call Manager/")
            .ok_or_else(|| {
                AmiError::Protocol(format!(
                    "not an Asterisk manager: banner {:?}",
                    banner.trim_end()
                ))
            })?
            .to_string();
        let mut ami = Ami {
            conn,
            writer,
            version,
            next_id: 0,
            id_prefix: format!("featpkg-{}-", std::process::id()),
            pending_events: VecDeque::new(),
            timeout,
        };
        let login = action(
            "Login",
            &[
                ("Username", &creds.username),
                ("Secret", &creds.secret),
                ("Events", events),
            ],
        )?;
        match ami.send(login) {
            Ok(_) => Ok(ami),
            Err(AmiError::Refused(m)) if m.contains("Authentication failed") => {
                Err(AmiError::AuthenticationFailed)
            }
            Err(e) => Err(e),
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.id_prefix, self.next_id)
    }

    fn write(&mut self, mut msg: Message, id: &str) -> Result<(), AmiError> {
        msg.fields.push(("ActionID".into(), id.into()));
        self.writer.write_all(msg.to_wire().as_bytes())?;
        self.writer.flush()?;
        Ok(())
    }

    /// Reads messages until one satisfies `done`, keeping events for later.
    fn read_until(
        &mut self,
        mut done: impl FnMut(&Message) -> bool,
        keep: bool,
    ) -> Result<Message, AmiError> {
        let until = Instant::now() + self.timeout;
        loop {
            let msg = self.conn.message(until)?;
            if done(&msg) {
                return Ok(msg);
            }
            if keep && msg.event().is_some() {
                self.pending_events.push_back(msg);
            }
        }
    }

    /// Sends an action and returns its `Response: Success` message (events that
    /// arrive meanwhile are kept). `Response: Error` is [`AmiError::Refused`].
    pub fn send(&mut self, msg: Message) -> Result<Message, AmiError> {
        let id = self.fresh_id();
        self.write(msg, &id)?;
        let reply = self.read_until(|m| is_reply_to(m, &id), true)?;
        match reply.get("Response") {
            Some(r) if r.eq_ignore_ascii_case("Success") || r.eq_ignore_ascii_case("Follows") => {
                Ok(reply)
            }
            _ => Err(AmiError::Refused(
                reply.get("Message").unwrap_or("(no message)").to_string(),
            )),
        }
    }

    /// A list action (`ConfbridgeList`, `QueueStatus`…): its item events up to the
    /// `…Complete` event (`EventList: Complete`).
    pub fn list(&mut self, msg: Message) -> Result<Vec<Message>, AmiError> {
        let id = self.fresh_id();
        self.write(msg, &id)?;
        let mut items = Vec::new();
        let reply = self.read_until(|m| is_reply_to(m, &id), true)?;
        if !reply
            .get("Response")
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
        {
            return Err(AmiError::Refused(
                reply.get("Message").unwrap_or("(no message)").to_string(),
            ));
        }
        loop {
            let msg = self.read_until(|m| m.get("ActionID") == Some(id.as_str()), true)?;
            if msg
                .get("EventList")
                .is_some_and(|e| e.eq_ignore_ascii_case("Complete"))
            {
                return Ok(items);
            }
            items.push(msg);
        }
    }

    /// `Action: Command`: the CLI output lines (`Output:` keys, Asterisk 14+).
    pub fn command(&mut self, cli: &str) -> Result<Vec<String>, AmiError> {
        let reply = self.send(action("Command", &[("Command", cli)])?)?;
        Ok(reply
            .all("Output")
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    /// `Originate` with `Async: true`; returns the ActionID that the final
    /// `OriginateResponse` event will carry (wait for it with [`Ami::wait_event`]).
    pub fn originate(&mut self, fields: &[(&str, &str)]) -> Result<String, AmiError> {
        let mut all = fields.to_vec();
        all.push(("Async", "true"));
        let id = self.fresh_id();
        self.write(action("Originate", &all)?, &id)?;
        let reply = self.read_until(|m| is_reply_to(m, &id), true)?;
        if reply
            .get("Response")
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
        {
            Ok(id)
        } else {
            Err(AmiError::Refused(
                reply.get("Message").unwrap_or("(no message)").to_string(),
            ))
        }
    }

    /// The next event (kept ones first), waiting up to `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Message, AmiError> {
        self.wait_event(timeout, |_| true)
    }

    /// Waits for the first event `matches` accepts (others stay queued), up to `timeout`.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Message) -> bool,
    ) -> Result<Message, AmiError> {
        if let Some(pos) = self.pending_events.iter().position(&matches) {
            return Ok(self.pending_events.remove(pos).expect("position is valid"));
        }
        let until = Instant::now() + timeout;
        loop {
            let m = self.conn.message(until)?;
            if m.event().is_none() {
                continue; // a late response nobody waits for
            }
            if matches(&m) {
                return Ok(m);
            }
            self.pending_events.push_back(m);
        }
    }

    /// The next event already read — kept while an action waited for its
    /// reply, or whole in the bytes read so far — without waiting for more.
    pub fn take_event(&mut self) -> Result<Option<Message>, AmiError> {
        if let Some(event) = self.pending_events.pop_front() {
            return Ok(Some(event));
        }
        while let Some(m) = take_message(&mut self.conn.buf)? {
            if m.event().is_some() {
                return Ok(Some(m));
            }
            // A late response nobody waits for.
        }
        Ok(None)
    }

    /// Reads what the socket has (call it once `poll` says it is readable;
    /// the events are then had from [`Ami::take_event`]). A closed
    /// connection is [`AmiError::Closed`].
    pub fn read_available(&mut self) -> Result<(), AmiError> {
        match self.conn.fill(Instant::now() + self.timeout) {
            // Readable was a false alarm: nothing lost, nothing to do.
            Err(AmiError::Timeout) => Ok(()),
            other => other,
        }
    }

    /// The connection's socket, to wait on with other sources
    /// ([`wake::Wakeups::wait`]).
    pub fn socket(&self) -> &TcpStream {
        &self.conn.stream
    }

    /// `Action: Logoff`.
    pub fn logoff(mut self) -> Result<(), AmiError> {
        let _ = self.send(action("Logoff", &[])?);
        Ok(())
    }
}

/// Reconnect delays: 0.5 s doubling to 30 s, so a restarting Asterisk is not hammered.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(30))
}

/// Connects, retrying with [`backoff`] until it works or `give_up` says stop
/// (e.g. SIGTERM). Authentication failures are not retried.
pub fn connect_with_retry(
    creds: &Credentials,
    events: &str,
    timeout: Duration,
    give_up: &dyn Fn() -> bool,
) -> Result<Ami, AmiError> {
    let mut attempt = 0;
    loop {
        match Ami::connect(creds, events, timeout) {
            Ok(ami) => return Ok(ami),
            Err(AmiError::AuthenticationFailed) => return Err(AmiError::AuthenticationFailed),
            Err(e) => {
                if give_up() {
                    return Err(e);
                }
                if sleep_unless(backoff(attempt), give_up) {
                    return Err(e);
                }
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_crlf_and_lf_messages_with_repeated_keys() {
        let wire = b"Response: Success\r\nMessage: Command output follows\r\nOutput: line one\r\nOutput: line two\r\n\r\nEvent: FullyBooted\nPrivilege: system,all\n\n";
        let mut r = &wire[..];
        let m = read_message(&mut r).unwrap();
        assert_eq!(m.all("output"), ["line one", "line two"]);
        let e = read_message(&mut r).unwrap();
        assert_eq!(e.event(), Some("FullyBooted"));
        assert!(matches!(read_message(&mut r), Err(AmiError::Closed)));
    }

    #[test]
    fn actions_refuse_injection() {
        assert!(action("Originate", &[("Channel", "PJSIP/201\r\nAction: Command")]).is_err());
        assert_eq!(
            action("Ping", &[]).unwrap().to_wire(),
            "Action: Ping\r\n\r\n"
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(10), Duration::from_secs(30));
    }

    #[test]
    fn credentials_file_must_be_private_and_loopback() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("featpkg-ami-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ami.conf");
        std::fs::write(&path, "username=featpkg-watch\nsecret=s3cret\nport=5038\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Credentials::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("must be 0600") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::load(&path).unwrap();
        assert_eq!(
            (c.username.as_str(), c.addr.port()),
            ("featpkg-watch", 5038)
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret is never printed"
        );
        // Lines the parser cannot use never repeat the secret in the error.
        for bad in [
            "username=a\nSecret: s3cret==\n",
            "username=a\nsecret s3cret=\n",
            "username=a\ns3cret\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = Credentials::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(":2: expected key=value") && !err.contains("s3cret"),
                "{err}"
            );
        }
        std::fs::write(&path, "username=a\nsecert=x\n").unwrap();
        let err = Credentials::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown key \"secert\""), "{err}");
        std::fs::write(&path, "host=10.0.0.5\nusername=a\nsecret=b\n").unwrap();
        assert!(
            Credentials::load(&path)
                .unwrap_err()
                .to_string()
                .contains("loopback only")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

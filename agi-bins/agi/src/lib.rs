//! A small synchronous AGI runtime for featpkg's AGI programs (reference/asterisk.md §1).
//!
//! Asterisk starts a local AGI program per call, writes the `agi_*` environment
//! block on its stdin, then reads one command line at a time from its stdout and
//! answers each with `200 result=…`, `510`, `511` or `520`. It waits until the
//! program closes stdout, with no timeout of its own — so a stuck program holds
//! the call forever. [`Watchdog`] gives every wait a deadline and bounds the time
//! after a hangup to 100 ms.
//!
//! ```no_run
//! use std::time::Duration;
//! // SIGHUP noted, a 5 s deadline on every answer, out within 100 ms of a hangup.
//! let mut agi = featpkg_agi::stdio_session(Duration::from_secs(5)).unwrap();
//! let caller = agi.env().callerid().to_string();
//! agi.verbose(&format!("hello {}", featpkg_agi::escape_for_log(&caller, 20)), 1).unwrap();
//! ```

#[cfg(feature = "fake-peer")]
pub mod fake;
pub mod pattern;
pub mod program;

pub use program::{AgiProgram, Ending, Route, Session, run_stdio};

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Asterisk's command buffer (AGI_BUF_LEN). It reads at most one byte less
/// (room for the NUL), newline included: a longer line is cut and its rest
/// read as a second command, so every later reply would answer the wrong one.
pub const MAX_COMMAND_LEN: usize = 8192;

/// Everything that can go wrong talking to Asterisk.
#[derive(Debug)]
pub enum AgiError {
    /// Reading or writing the pipe failed.
    Io(std::io::Error),
    /// Asterisk closed the pipe.
    Eof,
    /// The channel hung up: `511` reply, or the FastAGI `HANGUP` line.
    Hangup,
    /// `510 Invalid or unknown command`.
    UnknownCommand(String),
    /// `520` usage error, with the usage text lines.
    Usage(Vec<String>),
    /// A line that is not a valid reply.
    Protocol(String),
    /// An argument that cannot be sent safely (newline, NUL) or a command too long.
    BadArgument(String),
}

impl std::fmt::Display for AgiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgiError::Io(e) => write!(f, "AGI pipe error: {e}"),
            AgiError::Eof => write!(f, "Asterisk closed the AGI pipe"),
            AgiError::Hangup => write!(f, "the channel hung up"),
            AgiError::UnknownCommand(line) => {
                write!(f, "Asterisk does not know the command: {line}")
            }
            AgiError::Usage(lines) => write!(f, "invalid command syntax: {}", lines.join(" / ")),
            AgiError::Protocol(line) => write!(f, "unexpected reply from Asterisk: {line:?}"),
            AgiError::BadArgument(why) => write!(f, "refusing to send AGI command: {why}"),
        }
    }
}

impl std::error::Error for AgiError {}

impl From<std::io::Error> for AgiError {
    fn from(e: std::io::Error) -> Self {
        AgiError::Io(e)
    }
}

/// The variables of the environment block in the order Asterisk's `setup_env`
/// writes them (reference/asterisk.md §1.1); `agi_arg_1..N` follow the last one.
const ENV_ORDER: [&str; 20] = [
    "agi_request",
    "agi_channel",
    "agi_language",
    "agi_type",
    "agi_uniqueid",
    "agi_version",
    "agi_callerid",
    "agi_calleridname",
    "agi_callingpres",
    "agi_callingani2",
    "agi_callington",
    "agi_callingtns",
    "agi_dnid",
    "agi_rdnis",
    "agi_context",
    "agi_extension",
    "agi_priority",
    "agi_enhanced",
    "agi_accountcode",
    "agi_threadid",
];

/// Reads one line as Asterisk sent it, without its `\n`. Bytes that are not
/// UTF-8 (a Latin-1 caller name) become U+FFFD instead of failing the call:
/// no validation accepts that character, so nothing hostile gets through.
/// `None` at EOF.
fn read_line_lossy(reader: &mut impl BufRead) -> Result<Option<String>, AgiError> {
    let mut bytes = Vec::new();
    if reader.read_until(b'\n', &mut bytes)? == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The `agi_*` environment block, in the order Asterisk sent it.
///
/// Asterisk writes each value with `%s`, unescaped, so a value holding a line
/// break (a caller ID set from a SIP header, say) spreads over several lines.
/// Such lines are kept in the value they belong to — which no validation then
/// accepts — instead of ending the block early (the rest would be read as
/// replies) or becoming variables of their own (an injected `agi_extension`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgiEnv {
    vars: Vec<(String, String)>,
}

/// Where the reader of the block stands.
#[derive(Debug, Default)]
struct EnvReader {
    vars: Vec<(String, String)>,
    /// Index in [`ENV_ORDER`] of the last variable read from it.
    last: Option<usize>,
    /// `agi_arg_N` lines read so far.
    args: usize,
}

impl EnvReader {
    /// True once `agi_threadid`, the last variable before the arguments, was read.
    fn fixed_done(&self) -> bool {
        self.last == Some(ENV_ORDER.len() - 1)
    }

    /// Whether `name` starts a new variable at this point of the block. Only a
    /// name that comes later in Asterisk's order does (later, not next: a
    /// future Asterisk may drop one); a name already passed is part of a value.
    fn starts_variable(&self, name: &str) -> bool {
        if let Some(i) = ENV_ORDER.iter().position(|n| *n == name) {
            return self.last.is_none_or(|last| i > last);
        }
        if name == "agi_network" || name == "agi_network_script" {
            // FastAGI sends these before agi_request.
            return self.last.is_none();
        }
        if let Some(n) = name.strip_prefix("agi_arg_") {
            return self.fixed_done() && n.parse::<usize>().ok() == Some(self.args + 1);
        }
        // A variable a newer Asterisk added; no program reads it.
        name.len() > 4
            && name.starts_with("agi_")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }

    /// Takes one line; true when it was the blank line that ends the block.
    fn take(&mut self, line: String) -> Result<bool, AgiError> {
        if line.is_empty() && self.fixed_done() {
            return Ok(true);
        }
        let pair = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|n| (n, "")));
        if let Some((name, value)) = pair.filter(|(name, _)| self.starts_variable(name)) {
            if let Some(i) = ENV_ORDER.iter().position(|n| *n == name) {
                self.last = Some(i);
            } else if name.starts_with("agi_arg_") {
                self.args += 1;
            }
            self.vars.push((name.to_string(), value.to_string()));
            return Ok(false);
        }
        match self.vars.last_mut() {
            Some((_, value)) => {
                value.push('\n');
                value.push_str(&line);
                Ok(false)
            }
            None => Err(AgiError::Protocol(line)),
        }
    }
}

impl AgiEnv {
    /// Reads the block up to the blank line after `agi_threadid` and the arguments.
    pub fn read(reader: &mut impl BufRead) -> Result<AgiEnv, AgiError> {
        let mut block = EnvReader::default();
        loop {
            let line = read_line_lossy(reader)?.ok_or(AgiError::Eof)?;
            if block.take(line)? {
                return Ok(AgiEnv { vars: block.vars });
            }
        }
    }

    /// A variable by full name (`agi_callerid`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Caller ID number (`agi_callerid`); `unknown` when Asterisk has none.
    pub fn callerid(&self) -> &str {
        self.get("agi_callerid").unwrap_or("unknown")
    }

    /// The extension the channel is at (`agi_extension`).
    pub fn extension(&self) -> &str {
        self.get("agi_extension").unwrap_or("")
    }

    /// The channel name (`agi_channel`).
    pub fn channel(&self) -> &str {
        self.get("agi_channel").unwrap_or("")
    }

    /// Dialplan arguments `agi_arg_1..N`.
    pub fn args(&self) -> Vec<&str> {
        (1..)
            .map_while(|i| self.get(&format!("agi_arg_{i}")))
            .collect()
    }
}

/// One `200` reply: `200 result=<result>[ (<data>)][ key=value…]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The text after `result=` (a number for most commands, digits for GET DATA).
    pub result: String,
    /// The text in parentheses, e.g. `INUSE`, `dtmf`, `timeout`, `hangup`.
    pub data: Option<String>,
    /// `endpos=` of STREAM FILE / RECORD FILE.
    pub endpos: Option<u64>,
}

impl Reply {
    /// `result` as a number, when it is one.
    pub fn code(&self) -> Option<i64> {
        self.result.parse().ok()
    }
}

/// Parses the first line of a reply. `510`/`511`/`520` and `HANGUP` are errors;
/// a `520-` line needs the rest of the usage text, see [`Agi::read_reply`].
pub fn parse_reply(line: &str) -> Result<Reply, AgiError> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line == "HANGUP" {
        return Err(AgiError::Hangup);
    }
    if line.starts_with("511") {
        return Err(AgiError::Hangup);
    }
    if line.starts_with("510") {
        return Err(AgiError::UnknownCommand(line.to_string()));
    }
    if line.starts_with("520 ") {
        return Err(AgiError::Usage(vec![line.to_string()]));
    }
    let rest = line
        .strip_prefix("200 result=")
        .ok_or_else(|| AgiError::Protocol(line.to_string()))?;
    let (result, mut tail) = match rest.find(' ') {
        Some(i) => (&rest[..i], rest[i + 1..].trim_start()),
        None => (rest, ""),
    };
    let mut reply = Reply {
        result: result.to_string(),
        ..Reply::default()
    };
    if let Some(inner) = tail.strip_prefix('(') {
        // The last `)`: the data is written with `%s` and may hold one itself;
        // what follows it (`endpos=N`) never does.
        let close = inner
            .rfind(')')
            .ok_or_else(|| AgiError::Protocol(line.to_string()))?;
        reply.data = Some(inner[..close].to_string());
        tail = inner[close + 1..].trim_start();
    }
    for pair in tail.split_whitespace() {
        if let Some(v) = pair.strip_prefix("endpos=") {
            reply.endpos = v.parse().ok();
        }
    }
    Ok(reply)
}

/// Quotes one argument for an AGI command line (reference/asterisk.md §1.2):
/// `"…"` with `\` and `"` escaped. Newlines, CR and NUL cannot be sent: they
/// would end the command and start another one.
pub fn quote(arg: &str) -> Result<String, AgiError> {
    if arg.contains(['\n', '\r', '\0']) {
        return Err(AgiError::BadArgument(format!(
            "argument {:?} contains a line break or NUL",
            escape_for_log(arg, 40)
        )));
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// A value from outside shown safely in a log line: printable ASCII only, quotes
/// and backslashes neutralised, at most `max` characters.
pub fn escape_for_log(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if value.chars().count() > max {
        out.push_str("...");
    }
    out
}

/// Set when the channel hung up (SIGHUP for a local AGI, a 511 reply, `HANGUP`).
#[derive(Debug, Clone, Default)]
pub struct Hangup(Arc<AtomicBool>);

impl Hangup {
    /// The flag to hand to `signal_hook::flag::register(SIGHUP, …)`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
    /// True once the channel hung up.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Marks the channel as hung up.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
}

/// Ends the process when a wait for Asterisk outlives its deadline, or when the
/// program is still running `after_hangup` after the channel hung up.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// Milliseconds since `start` at which to give up; 0 = no wait in progress.
    deadline_ms: Arc<AtomicU64>,
    start: Instant,
}

/// Exit status when the watchdog ends the program because Asterisk did not answer.
pub const EXIT_DEADLINE: i32 = 3;

impl Watchdog {
    /// Starts the watchdog thread.
    pub fn start(hangup: Hangup, after_hangup: Duration) -> Watchdog {
        let dog = Watchdog {
            deadline_ms: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        };
        let shared = dog.clone();
        std::thread::spawn(move || {
            let mut hangup_seen: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(5));
                if hangup.is_set() && hangup_seen.is_none() {
                    hangup_seen = Some(Instant::now());
                }
                // No flush before exiting: the session holds the stdout lock; every
                // command was flushed when it was sent.
                if hangup_seen.is_some_and(|at| at.elapsed() >= after_hangup) {
                    std::process::exit(0);
                }
                let deadline = shared.deadline_ms.load(Ordering::SeqCst);
                if deadline != 0 && shared.start.elapsed().as_millis() as u64 >= deadline {
                    std::process::exit(EXIT_DEADLINE);
                }
            }
        });
        dog
    }

    /// A watchdog without its thread: nothing ends the process, the owner of
    /// the session enforces [`Watchdog::remaining`] itself (featpkg-agid does,
    /// with its socket's timeouts: one process serves many calls).
    pub fn passive() -> Watchdog {
        Watchdog {
            deadline_ms: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        }
    }

    /// Time left of the current wait; `None` when no wait is in progress.
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.deadline_ms.load(Ordering::SeqCst);
        (deadline != 0)
            .then(|| Duration::from_millis(deadline).saturating_sub(self.start.elapsed()))
    }

    /// Gives the current wait `timeout` before the process exits with [`EXIT_DEADLINE`].
    pub fn arm(&self, timeout: Duration) {
        let at = self.start.elapsed() + timeout;
        self.deadline_ms
            .store((at.as_millis() as u64).max(1), Ordering::SeqCst);
    }

    /// The wait is over.
    pub fn disarm(&self) {
        self.deadline_ms.store(0, Ordering::SeqCst);
    }
}

/// A local AGI session on stdin/stdout, set up the way every featpkg AGI program
/// needs it: SIGHUP noted instead of killing us, a watchdog that ends the program
/// when Asterisk does not answer within `deadline` (the environment block
/// included) and 80 ms after a hangup (with its 5 ms tick: out within 100 ms).
pub fn stdio_session(deadline: Duration) -> Result<Session, AgiError> {
    let hangup = Hangup::default();
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.flag())?;
    let watchdog = Watchdog::start(hangup.clone(), Duration::from_millis(80));
    watchdog.arm(deadline);
    let reader: Box<dyn BufRead> = Box::new(std::io::stdin().lock());
    let writer: Box<dyn Write> = Box::new(std::io::stdout().lock());
    let agi = Agi::new(reader, writer)?;
    watchdog.disarm();
    Ok(agi.with_watchdog(watchdog, deadline, hangup))
}

/// An AGI session over a reader (Asterisk's replies) and a writer (our commands).
pub struct Agi<R: BufRead, W: Write> {
    reader: R,
    writer: W,
    env: AgiEnv,
    watchdog: Option<Watchdog>,
    reply_timeout: Duration,
    hangup: Hangup,
}

impl<R: BufRead, W: Write> Agi<R, W> {
    /// Reads the environment block and returns the session.
    pub fn new(mut reader: R, writer: W) -> Result<Self, AgiError> {
        let env = AgiEnv::read(&mut reader)?;
        Ok(Agi {
            reader,
            writer,
            env,
            watchdog: None,
            reply_timeout: Duration::from_secs(5),
            hangup: Hangup::default(),
        })
    }

    /// Every wait for a reply gets `reply_timeout` (the watchdog exits the process
    /// after it); `hangup` is shared with the SIGHUP handler.
    pub fn with_watchdog(
        mut self,
        watchdog: Watchdog,
        reply_timeout: Duration,
        hangup: Hangup,
    ) -> Self {
        self.watchdog = Some(watchdog);
        self.reply_timeout = reply_timeout;
        self.hangup = hangup;
        self
    }

    /// Gives every later wait for a reply `timeout` (a program's own
    /// `deadline` argument, known only once its arguments are read).
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// The environment block Asterisk sent.
    pub fn env(&self) -> &AgiEnv {
        &self.env
    }

    /// True once the channel hung up (SIGHUP, 511, HANGUP).
    pub fn hung_up(&self) -> bool {
        self.hangup.is_set()
    }

    /// Sends one command line (already quoted) and reads its reply, waiting at most
    /// `extra` longer than the usual reply deadline.
    pub fn command_line(&mut self, line: &str, extra: Duration) -> Result<Reply, AgiError> {
        // The line, its `\n` and Asterisk's NUL must fit in AGI_BUF_LEN.
        if line.len() + 2 > MAX_COMMAND_LEN || line.contains(['\n', '\r', '\0']) {
            return Err(AgiError::BadArgument(
                "command line too long or contains a line break".into(),
            ));
        }
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\n")?;
        self.writer.flush()?;
        if let Some(w) = &self.watchdog {
            w.arm(self.reply_timeout + extra);
        }
        let result = self.read_reply();
        if let Some(w) = &self.watchdog {
            w.disarm();
        }
        if matches!(result, Err(AgiError::Hangup)) {
            self.hangup.set();
        }
        result
    }

    /// Reads one reply, including a multi-line `520-` usage text. A FastAGI
    /// `HANGUP` line may come at any line position (after the reply of the
    /// interrupted command, inside a usage text): it is noted and skipped.
    pub fn read_reply(&mut self) -> Result<Reply, AgiError> {
        let line = self.read_reply_line()?;
        if line.starts_with("520-") {
            let mut usage = vec![line];
            loop {
                let next = self.read_reply_line()?;
                let done = next.starts_with("520 ");
                usage.push(next);
                if done {
                    return Err(AgiError::Usage(usage));
                }
            }
        }
        parse_reply(&line)
    }

    /// The next line from Asterisk that is not a `HANGUP` announcement.
    fn read_reply_line(&mut self) -> Result<String, AgiError> {
        loop {
            let line = read_line_lossy(&mut self.reader)?.ok_or(AgiError::Eof)?;
            let line = line.trim_end_matches('\r');
            if line == "HANGUP" {
                self.hangup.set();
                continue;
            }
            return Ok(line.to_string());
        }
    }

    /// Sends a command made of plain words (sent as they are) and arguments (quoted).
    pub fn command(&mut self, words: &str, args: &[&str]) -> Result<Reply, AgiError> {
        self.command_extra(words, args, Duration::ZERO)
    }

    fn command_extra(
        &mut self,
        words: &str,
        args: &[&str],
        extra: Duration,
    ) -> Result<Reply, AgiError> {
        let mut line = words.to_string();
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg)?);
        }
        self.command_line(&line, extra)
    }

    /// `ANSWER`.
    pub fn answer(&mut self) -> Result<Reply, AgiError> {
        self.command("ANSWER", &[])
    }

    /// `GET DATA <sound> <timeout_ms> <max_digits>`: returns the digits (empty on timeout).
    pub fn get_data(
        &mut self,
        sound: &str,
        timeout_ms: u32,
        max_digits: u32,
    ) -> Result<String, AgiError> {
        let line = format!("GET DATA {} {timeout_ms} {max_digits}", quote(sound)?);
        let extra = Duration::from_millis(u64::from(timeout_ms)) + Duration::from_secs(60);
        let reply = self.command_line(&line, extra)?;
        if reply.result == "-1" {
            self.hangup.set();
            return Err(AgiError::Hangup);
        }
        Ok(reply.result)
    }

    /// `STREAM FILE <sound> "<escape digits>"`; the prompt's length is bounded by `max`.
    pub fn stream_file(
        &mut self,
        sound: &str,
        escape_digits: &str,
        max: Duration,
    ) -> Result<Reply, AgiError> {
        self.command_extra("STREAM FILE", &[sound, escape_digits], max)
    }

    /// `RECORD FILE <path> <format> "<escape digits>" <timeout_ms> BEEP`.
    /// A hangup while recording returns `result=-1 (hangup)`; Asterisk keeps the partial file.
    pub fn record_file(
        &mut self,
        path: &str,
        format: &str,
        escape_digits: &str,
        max: Duration,
    ) -> Result<Reply, AgiError> {
        let line = format!(
            "RECORD FILE {} {} {} {} BEEP",
            quote(path)?,
            quote(format)?,
            quote(escape_digits)?,
            max.as_millis()
        );
        self.command_line(&line, max)
    }

    /// `DATABASE GET <family> <key>`: the value, or None when the key is missing.
    pub fn database_get(&mut self, family: &str, key: &str) -> Result<Option<String>, AgiError> {
        let reply = self.command("DATABASE GET", &[family, key])?;
        Ok((reply.result == "1").then(|| reply.data.unwrap_or_default()))
    }

    /// `DATABASE PUT <family> <key> <value>`: true when stored.
    pub fn database_put(&mut self, family: &str, key: &str, value: &str) -> Result<bool, AgiError> {
        Ok(self.command("DATABASE PUT", &[family, key, value])?.result == "1")
    }

    /// `DATABASE DEL <family> <key>`: true when a key was deleted.
    pub fn database_del(&mut self, family: &str, key: &str) -> Result<bool, AgiError> {
        Ok(self.command("DATABASE DEL", &[family, key])?.result == "1")
    }

    /// `SET VARIABLE <name> <value>`.
    pub fn set_variable(&mut self, name: &str, value: &str) -> Result<(), AgiError> {
        self.command("SET VARIABLE", &[name, value]).map(|_| ())
    }

    /// `GET VARIABLE <name>`: None when unset.
    pub fn get_variable(&mut self, name: &str) -> Result<Option<String>, AgiError> {
        let reply = self.command("GET VARIABLE", &[name])?;
        Ok((reply.result == "1").then(|| reply.data.unwrap_or_default()))
    }

    /// `VERBOSE "<message>" <level>`; the message is made safe for one log line.
    pub fn verbose(&mut self, message: &str, level: u8) -> Result<(), AgiError> {
        let safe: String = message
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let line = format!("VERBOSE {} {level}", quote(&safe)?);
        self.command_line(&line, Duration::ZERO).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const ENV: &str = "agi_request: /var/lib/asterisk/agi-bin/x\nagi_channel: PJSIP/201-00000001\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1700000000.1\nagi_version: 22.5.0\nagi_callerid: 201\nagi_calleridname: Anna\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: *600\nagi_rdnis: unknown\nagi_context: menu\nagi_extension: *600\nagi_priority: 1\nagi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 1234\nagi_arg_1: menu\nagi_arg_2: family=op_alert\n\n";

    fn session(replies: &str) -> Agi<Cursor<Vec<u8>>, Vec<u8>> {
        Agi::new(
            Cursor::new(format!("{ENV}{replies}").into_bytes()),
            Vec::new(),
        )
        .unwrap()
    }

    fn sent(agi: &Agi<Cursor<Vec<u8>>, Vec<u8>>) -> String {
        String::from_utf8(agi.writer.clone()).unwrap()
    }

    #[test]
    fn reads_the_environment_block() {
        let agi = session("");
        assert_eq!(agi.env().callerid(), "201");
        assert_eq!(agi.env().extension(), "*600");
        assert_eq!(agi.env().get("agi_accountcode"), Some(""));
        assert_eq!(agi.env().args(), ["menu", "family=op_alert"]);
    }

    /// The test block with `agi_callerid`'s value replaced by raw bytes, as
    /// Asterisk's `setup_env` writes it (`%s`: no escaping of any kind).
    fn block_with_callerid(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in ENV.split_inclusive('\n') {
            if line.starts_with("agi_callerid: ") {
                out.extend_from_slice(b"agi_callerid: ");
                out.extend_from_slice(raw);
                out.push(b'\n');
            } else {
                out.extend_from_slice(line.as_bytes());
            }
        }
        out
    }

    fn session_with_callerid(raw: &[u8], replies: &str) -> Agi<Cursor<Vec<u8>>, Vec<u8>> {
        let mut input = block_with_callerid(raw);
        input.extend_from_slice(replies.as_bytes());
        Agi::new(Cursor::new(input), Vec::new()).unwrap()
    }

    #[test]
    fn a_line_break_in_a_value_stays_in_that_value() {
        // A caller ID with a line break (or two: an early blank line) must neither
        // end the block early nor turn into other variables or replies.
        for raw in ["20\n1", "201\n\nANSWER", "\n201", "201\nagi_callerid: 202"] {
            let mut agi = session_with_callerid(raw.as_bytes(), "200 result=0\n");
            assert!(agi.env().callerid().contains('\n'), "{raw:?}");
            assert_eq!(agi.env().extension(), "*600", "{raw:?}");
            assert_eq!(agi.env().args(), ["menu", "family=op_alert"], "{raw:?}");
            assert!(agi.answer().is_ok(), "{raw:?}: replies stay in step");
        }
    }

    #[test]
    fn an_injected_variable_never_replaces_a_real_one() {
        // The attacker jumps ahead to agi_extension; the real lines that follow
        // pollute the injected value instead of being lost.
        let agi = session_with_callerid(b"201\nagi_extension: 999", "");
        assert_ne!(agi.env().extension(), "999");
        assert!(agi.env().extension().starts_with("999\n"));
        assert_eq!(agi.env().get("agi_priority"), Some("1"));
    }

    #[test]
    fn bytes_that_are_not_utf8_do_not_end_the_session() {
        // A Latin-1 caller name from an old phone.
        let mut input = ENV.replace("Anna", "M\u{1}ller").into_bytes();
        let at = input.iter().position(|&b| b == 1).unwrap();
        input[at] = 0xfc;
        input.extend_from_slice(b"200 result=1 (\xfc)\n");
        let mut agi = Agi::new(Cursor::new(input), Vec::new()).unwrap();
        assert_eq!(agi.env().callerid(), "201");
        assert_eq!(agi.env().get("agi_calleridname"), Some("M\u{fffd}ller"));
        assert_eq!(agi.get_variable("X").unwrap(), Some("\u{fffd}".into()));
    }

    #[test]
    fn a_closing_parenthesis_inside_the_data_is_kept() {
        // `200 result=1 (%s)`: a value holding `)` must not be cut to a valid-looking prefix.
        assert_eq!(
            parse_reply("200 result=1 (201) x)")
                .unwrap()
                .data
                .as_deref(),
            Some("201) x")
        );
        assert_eq!(
            parse_reply("200 result=-1 (hangup) endpos=400")
                .unwrap()
                .data
                .as_deref(),
            Some("hangup")
        );
    }

    #[test]
    fn a_hangup_line_inside_a_usage_text_is_noticed() {
        let mut agi = session(
            "520-Invalid command syntax.  Proper usage follows:\nHANGUP\nUsage: DATABASE GET <family> <key>\n520 End of proper usage.\n",
        );
        match agi.command("DATABASE GET", &["a"]) {
            Err(AgiError::Usage(lines)) => assert_eq!(lines.len(), 3, "{lines:?}"),
            other => panic!("{other:?}"),
        }
        assert!(agi.hung_up());
    }

    #[test]
    fn eof_in_the_environment_block() {
        let err = Agi::new(Cursor::new(b"agi_request: x\n".to_vec()), Vec::new())
            .err()
            .unwrap();
        assert!(matches!(err, AgiError::Eof));
    }

    #[test]
    fn parses_replies() {
        assert_eq!(
            parse_reply("200 result=1 (INUSE)\n").unwrap(),
            Reply {
                result: "1".into(),
                data: Some("INUSE".into()),
                endpos: None
            }
        );
        assert_eq!(
            parse_reply("200 result=35 (dtmf) endpos=8000")
                .unwrap()
                .endpos,
            Some(8000)
        );
        assert_eq!(
            parse_reply("200 result=0 endpos=12345").unwrap(),
            Reply {
                result: "0".into(),
                data: None,
                endpos: Some(12345)
            }
        );
        assert_eq!(
            parse_reply("200 result=-1 (hangup) endpos=400")
                .unwrap()
                .code(),
            Some(-1)
        );
        assert_eq!(
            parse_reply("200 result=123 (timeout)").unwrap().result,
            "123"
        );
        assert!(matches!(
            parse_reply("510 Invalid or unknown command"),
            Err(AgiError::UnknownCommand(_))
        ));
        assert!(matches!(
            parse_reply("511 Command Not Permitted on a dead channel or intercept routine"),
            Err(AgiError::Hangup)
        ));
        assert!(matches!(parse_reply("garbage"), Err(AgiError::Protocol(_))));
    }

    #[test]
    fn multi_line_usage_is_read_to_its_end() {
        let mut agi = session(
            "520-Invalid command syntax.  Proper usage follows:\nUsage: DATABASE GET <family> <key>\n520 End of proper usage.\n200 result=1\n",
        );
        match agi.command("DATABASE GET", &["a"]) {
            Err(AgiError::Usage(lines)) => assert_eq!(lines.len(), 3),
            other => panic!("{other:?}"),
        }
        // The next reply is read correctly: the usage text was consumed whole.
        assert!(agi.answer().is_ok());
    }

    #[test]
    fn hangup_line_and_511_mark_the_session() {
        let mut agi = session(
            "HANGUP\n200 result=1\n511 Command Not Permitted on a dead channel or intercept routine\n",
        );
        assert!(agi.database_put("f", "k", "1").unwrap());
        assert!(agi.hung_up());
        assert!(matches!(
            agi.stream_file("x", "", Duration::ZERO),
            Err(AgiError::Hangup)
        ));
    }

    #[test]
    fn quoting_and_command_lines() {
        let mut agi = session("200 result=1\n200 result=1 (x y)\n200 result=1\n");
        agi.set_variable("A", "two words \"q\" \\").unwrap();
        assert_eq!(agi.database_get("fam", "").unwrap(), Some("x y".into()));
        agi.verbose("line1\nline2", 1).unwrap();
        assert_eq!(
            sent(&agi),
            "SET VARIABLE \"A\" \"two words \\\"q\\\" \\\\\"\nDATABASE GET \"fam\" \"\"\nVERBOSE \"line1?line2\" 1\n"
        );
    }

    #[test]
    fn line_breaks_in_arguments_are_refused() {
        let mut agi = session("");
        assert!(matches!(
            agi.set_variable("A", "x\nANSWER"),
            Err(AgiError::BadArgument(_))
        ));
        assert_eq!(sent(&agi), "", "nothing may be sent");
    }

    #[test]
    fn a_command_asterisk_would_cut_in_two_is_refused() {
        // 8190 characters + `\n` + NUL fill AGI_BUF_LEN exactly.
        let mut agi = session("200 result=1\n");
        let fits = "x".repeat(MAX_COMMAND_LEN - 2 - "VERBOSE \"\" 1".len());
        agi.verbose(&fits, 1).unwrap();
        let sent_len = sent(&agi).len();
        assert_eq!(sent_len, MAX_COMMAND_LEN - 1);
        assert!(matches!(
            agi.verbose(&format!("{fits}x"), 1),
            Err(AgiError::BadArgument(_))
        ));
        assert_eq!(sent(&agi).len(), sent_len, "nothing more was sent");
    }

    #[test]
    fn eof_mid_conversation() {
        let mut agi = session("");
        assert!(matches!(agi.answer(), Err(AgiError::Eof)));
    }

    #[test]
    fn log_escaping() {
        assert_eq!(escape_for_log("1;rm \"x\"\n", 40), "1;rm ?x??");
        assert_eq!(escape_for_log(&"9".repeat(200), 5), "99999...");
    }
}

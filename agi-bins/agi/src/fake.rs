//! A fake Asterisk AGI peer for tests: it starts the real AGI program with pipes
//! and the `AST_*` variables Asterisk sets, writes the real `agi_*` environment
//! block in Asterisk's order (reference/asterisk.md §1.1), and answers each
//! command line with whatever real reply the test scripts (`200 result=…`, `510`,
//! `511`, multi-line `520`; the builders in [`reply`] write each command's
//! forms). It can hang the channel up mid-conversation the way Asterisk does
//! for a local AGI: SIGHUP to the program (no `HANGUP` line: that is FastAGI's),
//! after the reply of a command the hangup interrupted
//! ([`FakePeer::hangup_after_reply`]); from then on only the commands
//! res_agi.c allows on a dead channel are served ([`dead_channel_reply`]).
//!
//! `tests/real_fakes.rs` runs a relay as a real AGI program on a real
//! Asterisk and checks the block, these reply forms and the hangup sequence
//! against what Asterisk sends.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The reply Asterisk sends for a command not allowed on a dead channel.
pub const DEAD_CHANNEL: &str = "511 Command Not Permitted on a dead channel or intercept routine";

/// Commands res_agi.c still runs once the channel hung up (the `dead` column
/// of its command table); every other one gets [`DEAD_CHANNEL`].
pub const ALLOWED_ON_DEAD_CHANNEL: &[&str] = &[
    "ASYNCAGI BREAK",
    "DATABASE DEL",
    "DATABASE DELTREE",
    "DATABASE GET",
    "DATABASE PUT",
    "EXEC",
    "GET FULL VARIABLE",
    "GET VARIABLE",
    "NOOP",
    "SET VARIABLE",
    "SPEECH DESTROY",
    "SPEECH UNLOAD GRAMMAR",
    "VERBOSE",
];

/// True when `command` (a whole command line) is one Asterisk runs on a dead channel.
pub fn allowed_on_dead_channel(command: &str) -> bool {
    let words: Vec<String> = command
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    ALLOWED_ON_DEAD_CHANNEL.iter().any(|allowed| {
        let want: Vec<&str> = allowed.split(' ').collect();
        words.len() >= want.len() && words.iter().zip(&want).all(|(w, a)| w == a)
    })
}

/// What Asterisk answers `command` once the channel hung up: [`DEAD_CHANNEL`],
/// or for the commands it still runs their plain success (a value the fake
/// does not know reads as unset: `200 result=0`).
pub fn dead_channel_reply(command: &str) -> String {
    if !allowed_on_dead_channel(command) {
        return DEAD_CHANNEL.to_string();
    }
    let upper = command.to_ascii_uppercase();
    if upper.starts_with("DATABASE GET")
        || upper.starts_with("GET VARIABLE")
        || upper.starts_with("GET FULL VARIABLE")
    {
        reply::UNSET.to_string()
    } else if upper.starts_with("EXEC") || upper.starts_with("NOOP") {
        reply::ZERO.to_string()
    } else {
        reply::OK.to_string()
    }
}

/// Asterisk's replies (res_agi.c, Asterisk 22), by command.
pub mod reply {
    /// ANSWER; EXEC of an application that returned 0; NOOP; WAIT FOR DIGIT
    /// that timed out.
    pub const ZERO: &str = "200 result=0";
    /// SET VARIABLE, VERBOSE, DATABASE PUT; DATABASE DEL and DELTREE whether
    /// or not the key existed (Asterisk 22's AstDB deletes without checking).
    pub const OK: &str = "200 result=1";
    /// DATABASE GET of a missing key, GET VARIABLE of an unset variable.
    pub const UNSET: &str = "200 result=0";
    /// EXEC of an application Asterisk does not have.
    pub const NO_SUCH_APPLICATION: &str = "200 result=-2";
    /// A command Asterisk does not know.
    pub const UNKNOWN_COMMAND: &str = "510 Invalid or unknown command";
    /// GET DATA, WAIT FOR DIGIT interrupted by a hangup.
    pub const HUNG_UP: &str = "200 result=-1";
    /// RECORD FILE into a directory that does not exist (or is not writable).
    pub const RECORD_WRITEFILE: &str = "200 result=-1 (writefile)";

    /// DATABASE GET of a key that is set, GET VARIABLE of a set variable.
    pub fn value(value: &str) -> String {
        format!("200 result=1 ({value})")
    }

    /// CHANNEL STATUS: the channel state (4: ringing, not answered; 6: up).
    pub fn channel_status(state: u32) -> String {
        format!("200 result={state}")
    }

    /// GET DATA that got all its digits (`max` of them, or `#`).
    pub fn digits(digits: &str) -> String {
        format!("200 result={digits}")
    }

    /// GET DATA that timed out after `digits` (none: `200 result= (timeout)`).
    pub fn digits_timeout(digits: &str) -> String {
        format!("200 result={digits} (timeout)")
    }

    /// WAIT FOR DIGIT that got a key: its ASCII code.
    pub fn digit(key: char) -> String {
        format!("200 result={}", key as u32)
    }

    /// STREAM FILE played to the end (`key` None; -1 when the sound does not
    /// exist, with endpos 0), or stopped by an escape digit (its ASCII code),
    /// at sample `endpos`.
    pub fn stream_file(key: Option<char>, endpos: u64) -> String {
        format!("200 result={} endpos={endpos}", key.map_or(0, |k| k as u32))
    }

    /// STREAM FILE of a sound that does not exist.
    pub const STREAM_FILE_MISSING: &str = "200 result=-1 endpos=0";

    /// STREAM FILE interrupted by a hangup at sample `endpos`.
    pub fn stream_file_hung_up(endpos: u64) -> String {
        format!("200 result=-1 endpos={endpos}")
    }

    /// RECORD FILE ended by an escape digit (its ASCII code: `#` is 35).
    pub fn record_dtmf(key: char, endpos: u64) -> String {
        format!("200 result={} (dtmf) endpos={endpos}", key as u32)
    }

    /// RECORD FILE that reached its timeout.
    pub fn record_timeout(endpos: u64) -> String {
        format!("200 result=0 (timeout) endpos={endpos}")
    }

    /// RECORD FILE ended by a hangup (Asterisk keeps what was recorded).
    pub fn record_hangup(endpos: u64) -> String {
        format!("200 result=-1 (hangup) endpos={endpos}")
    }
}

/// Values for the environment block; the rest are filled as Asterisk would.
#[derive(Debug, Clone)]
pub struct Call {
    pub script: String,
    pub channel: String,
    pub callerid: String,
    pub calleridname: String,
    pub dnid: String,
    pub context: String,
    pub extension: String,
    pub args: Vec<String>,
}

impl Call {
    /// A PJSIP call from `callerid` to `extension` in `context`.
    pub fn new(script: &str, callerid: &str, context: &str, extension: &str) -> Call {
        Call {
            script: script.to_string(),
            channel: "PJSIP/201-0000002a".to_string(),
            callerid: callerid.to_string(),
            calleridname: "Operator".to_string(),
            dnid: extension.to_string(),
            context: context.to_string(),
            extension: extension.to_string(),
            args: Vec::new(),
        }
    }

    /// The block exactly as Asterisk's `setup_env` writes it: fixed order, `: `,
    /// `\n` only, values unescaped (`%s`: a line break in a value goes out as
    /// it is, a NUL ends it), blank line.
    pub fn env_block(&self) -> String {
        // S_COR(valid, str, "unknown"): an absent or empty number or name.
        let or_unknown = |s: &str| match c_string(s) {
            "" => "unknown".to_string(),
            v => v.to_string(),
        };
        let lines = [
            ("agi_request", c_string(&self.script).to_string()),
            ("agi_channel", c_string(&self.channel).to_string()),
            ("agi_language", "en".into()),
            ("agi_type", "PJSIP".into()),
            ("agi_uniqueid", "1763900000.42".into()),
            ("agi_version", "22.5.0".into()),
            ("agi_callerid", or_unknown(&self.callerid)),
            ("agi_calleridname", or_unknown(&self.calleridname)),
            ("agi_callingpres", "0".into()),
            ("agi_callingani2", "0".into()),
            ("agi_callington", "0".into()),
            ("agi_callingtns", "0".into()),
            ("agi_dnid", or_unknown(&self.dnid)),
            ("agi_rdnis", "unknown".into()),
            ("agi_context", c_string(&self.context).to_string()),
            ("agi_extension", c_string(&self.extension).to_string()),
            ("agi_priority", "1".into()),
            ("agi_enhanced", "0.0".into()),
            ("agi_accountcode", String::new()),
            ("agi_threadid", "140234567890".into()),
        ];
        let args = self
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("agi_arg_{}", i + 1), c_string(a).to_string()));
        let mut out = String::new();
        for (k, v) in lines
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(args)
        {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out
    }

    /// The program's arguments as `execv` passes them: C strings, cut at a NUL.
    pub fn argv(&self) -> Vec<String> {
        self.args.iter().map(|a| c_string(a).to_string()).collect()
    }
}

/// What C code sees of a Rust string: everything before the first NUL.
fn c_string(s: &str) -> &str {
    s.split('\0').next().unwrap_or("")
}

/// A running AGI program and the fake Asterisk end of its pipes.
pub struct FakePeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    started: Instant,
    /// Every command line the program sent, in order.
    pub transcript: Vec<String>,
}

impl FakePeer {
    /// Starts `program` as Asterisk would (argv = script, then the dialplan arguments)
    /// and writes the environment block.
    pub fn start(program: &Path, call: &Call, env: &[(&str, &str)]) -> FakePeer {
        FakePeer::start_with_block(program, call, call.env_block().as_bytes(), env)
    }

    /// Like [`FakePeer::start`], with the environment block given byte for byte
    /// (a caller name in Latin-1, say).
    pub fn start_with_block(
        program: &Path,
        call: &Call,
        block: &[u8],
        env: &[(&str, &str)],
    ) -> FakePeer {
        let mut cmd = Command::new(program);
        cmd.args(call.argv())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("AST_CONFIG_DIR", "/etc/asterisk")
            .env("AST_AGI_DIR", "/var/lib/asterisk/agi-bin")
            .env("AST_SPOOL_DIR", "/var/spool/asterisk")
            .env("AST_VAR_DIR", "/var/lib/asterisk")
            .env("AST_DATA_DIR", "/var/lib/asterisk")
            .env("AST_LOG_DIR", "/var/log/asterisk");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the AGI program");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        stdin.write_all(block).expect("write env block");
        stdin.flush().expect("flush");
        FakePeer {
            child,
            stdin: Some(stdin),
            lines: rx,
            started: Instant::now(),
            transcript: Vec::new(),
        }
    }

    /// The next command line, or None when the program closed stdout (or was silent for `timeout`).
    pub fn next_command(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Expects exactly `command` next, then answers `reply`.
    pub fn expect(&mut self, command: &str, reply: &str) {
        let got = self.next_command(Duration::from_secs(5));
        assert_eq!(
            got.as_deref(),
            Some(command),
            "transcript so far: {:?}",
            self.transcript
        );
        self.reply(reply);
    }

    /// Writes one reply line (several for a multi-line 520).
    pub fn reply(&mut self, reply: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // The program may already be gone; a broken pipe is what Asterisk would see too.
            let _ = stdin.write_all(format!("{reply}\n").as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Closes Asterisk's end of the program's stdin: the program reads EOF.
    pub fn close(&mut self) {
        self.stdin = None;
    }

    /// Hangs the channel up while the program waits for the reply of a
    /// command the hangup interrupts (GET DATA, RECORD FILE, STREAM FILE…),
    /// in Asterisk's order: the command's `reply` first (e.g.
    /// [`reply::record_hangup`]), then SIGHUP. Returns when the SIGHUP went.
    pub fn hangup_after_reply(&mut self, reply: &str) -> Instant {
        self.reply(reply);
        self.hangup()
    }

    /// Hangs the channel up as Asterisk does for a local AGI: SIGHUP to the
    /// program (at once when it is between commands; see
    /// [`FakePeer::hangup_after_reply`] for one waiting for a reply).
    pub fn hangup(&mut self) -> Instant {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        Instant::now()
    }

    /// Answers every further command as Asterisk does on a dead channel
    /// ([`dead_channel_reply`]: 511 for most, the plain success for DATABASE,
    /// SET VARIABLE, VERBOSE, EXEC…), until the program exits.
    pub fn answer_dead_until_exit(&mut self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            match self.next_command(until - Instant::now()) {
                Some(command) => self.reply(&dead_channel_reply(&command)),
                None => break,
            }
        }
    }

    /// Waits up to `timeout` for the program to exit; returns its status and when it exited.
    pub fn wait(&mut self, timeout: Duration) -> Option<(ExitStatus, Instant)> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, Instant::now()));
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// When the program was started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! busy-callback's AGI commands ([`BusyCallback`]), served by the per-call
//! program `featpkg-busy-callback` and by featpkg-agid (FastAGI,
//! `agi://127.0.0.1:4573/featpkg-busy-callback`).
//!
//! * `offer` (the busy branch, entered as `Goto(<busy context>,<callee>,1)`): the
//!   caller (`agi_callerid`) hears the prompt and may press the callback digit;
//!   the request (caller, callee = `agi_extension`) is stored for the watcher,
//!   which calls the caller back once both are free. Sets `BUSY_CALLBACK` to
//!   QUEUED, DECLINED, DUPLICATE, LIMIT or REFUSED.
//! * `cancel` (the cancel code): drops every request the caller made. Sets
//!   `BUSY_CALLBACK` to CANCELLED (or REFUSED).
//! * `connected` (Dial's `U()` subroutine, on the callee's channel once they
//!   answer the callback): the request is done.
//! * `ended` (the `h` extension of the callback's dial context, whatever ended
//!   it): `DIALSTATUS` decides. ANSWER: done; CANCEL (the caller hung up while
//!   the callee rang): done; anything else — BUSY (busy again), NOANSWER,
//!   CHANUNAVAIL, CONGESTION, none (hung up before the Dial) — the request
//!   waits again, not before `retry_wait`, one attempt counted (dropped after
//!   `retries`; expired after `expiry`).
//!
//! `connected` and `ended` act on the callback the watcher originated, named by
//! the channel variables it set (inherited by the callee's channel):
//! `FEATPKG_CALLBACK_CALLER`, `FEATPKG_CALLBACK_CALLEE`, `FEATPKG_CALLBACK_CREATED`
//! (when the request was made) and `FEATPKG_CALLBACK_CALL` (which callback of
//! it). A request that is gone or at another callback is left alone (the
//! store's compare-and-set, see the library). They set `BUSY_CALLBACK` to DONE,
//! WAITING, DROPPED, EXPIRED, GONE (or REFUSED, ERROR).
//!
//! Keys: `dir` (request store), `pattern` (extensions served, digits only,
//! default `_XXX`), `digit` (5), `max` (pending requests per caller, 3),
//! `expiry` (seconds, 1800), `retries` (2), `retry_wait` (seconds, 60),
//! `deadline` (seconds, 5), `prompt`, `confirm`, `sorry` (sounds). Numbers from
//! the channel are checked against `pattern` before anything is stored;
//! refusals are logged with VERBOSE.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use featpkg_agi::pattern::{matches_pattern, pattern_ok};
use featpkg_agi::{AgiError, AgiProgram, Session, escape_for_log};

use crate::{CallRef, Outcome, Rules, Settled, Store, StoreError, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Offer,
    Cancel,
    Connected,
    Ended,
}

/// Parsed, checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    mode: Mode,
    dir: PathBuf,
    pattern: String,
    digit: String,
    max: usize,
    expiry: u64,
    retries: u32,
    retry_wait: Duration,
    deadline: Duration,
    prompt: String,
    confirm: String,
    sorry: String,
}

fn sound_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mode = match args.first().map(String::as_str) {
        Some("offer") => Mode::Offer,
        Some("cancel") => Mode::Cancel,
        Some("connected") => Mode::Connected,
        Some("ended") => Mode::Ended,
        other => {
            return Err(format!(
                "first argument must be offer, cancel, connected or ended, got {:?}",
                escape_for_log(other.unwrap_or(""), 20)
            ));
        }
    };
    let mut c = Config {
        mode,
        dir: PathBuf::from("/var/spool/asterisk/featpkg/busy-callback"),
        pattern: "_XXX".into(),
        digit: "5".into(),
        max: 3,
        expiry: 1800,
        retries: 2,
        retry_wait: Duration::from_secs(60),
        deadline: Duration::from_secs(5),
        prompt: "vm-isonphone".into(),
        confirm: "auth-thankyou".into(),
        sorry: "beeperr".into(),
    };
    for arg in &args[1..] {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("argument {:?} is not key=value", escape_for_log(arg, 40)))?;
        let bad = || format!("{key}={:?}: invalid value", escape_for_log(value, 40));
        let number_from = |min: u64, max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(bad)
        };
        let number = |max: u64| number_from(1, max);
        match key {
            "dir" if value.starts_with('/') && !value.split('/').any(|p| p == "..") => {
                c.dir = value.into()
            }
            "pattern" if pattern_ok(value) => c.pattern = value.into(),
            // Not `#`: GET DATA ends the input at `#` and never returns it.
            "digit"
                if value.len() == 1 && value.bytes().all(|b| b.is_ascii_digit() || b == b'*') =>
            {
                c.digit = value.into()
            }
            "max" => c.max = number(50)? as usize,
            "expiry" => c.expiry = number(86_400)?,
            "retries" => c.retries = number_from(0, 100)? as u32,
            "retry_wait" => c.retry_wait = Duration::from_secs(number_from(0, 86_400)?),
            "deadline" => c.deadline = Duration::from_secs(number(30)?),
            "prompt" if sound_ok(value) => c.prompt = value.into(),
            "confirm" if sound_ok(value) => c.confirm = value.into(),
            "sorry" if sound_ok(value) => c.sorry = value.into(),
            "dir" | "pattern" | "digit" | "prompt" | "confirm" | "sorry" => return Err(bad()),
            _ => return Err(format!("unknown key {:?}", escape_for_log(key, 40))),
        }
    }
    Ok(c)
}

/// A number the watcher put on the channel: digits only, at most 20 (anything
/// else did not come from our watcher).
fn parse_count(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Callback<'a> {
    agi: &'a mut Session,
    c: Config,
}

impl Callback<'_> {
    fn refuse(&mut self, what: &str, value: &str) -> Result<(), AgiError> {
        let msg = format!(
            "featpkg busy-callback: refused {what} \"{}\": not an extension matching {}",
            escape_for_log(value, 32),
            self.c.pattern
        );
        self.agi.verbose(&msg, 1)?;
        self.agi.set_variable("BUSY_CALLBACK", "REFUSED")
    }

    fn refuse_variable(&mut self, name: &str, value: &str, rule: &str) -> Result<(), AgiError> {
        let msg = format!(
            "featpkg busy-callback: refused {name} \"{}\": {rule}",
            escape_for_log(value, 32)
        );
        self.agi.verbose(&msg, 1)?;
        self.agi.set_variable("BUSY_CALLBACK", "REFUSED")
    }

    fn offer(&mut self) -> Result<(), AgiError> {
        let caller = self.agi.env().callerid().to_string();
        let callee = self.agi.env().extension().to_string();
        if !matches_pattern(&caller, &self.c.pattern) {
            return self.refuse("caller ID", &caller);
        }
        if !matches_pattern(&callee, &self.c.pattern) {
            return self.refuse("extension", &callee);
        }
        self.agi.answer()?;
        let prompt = self.c.prompt.clone();
        let pressed = self.agi.get_data(&prompt, 5000, 1)?;
        if pressed != self.c.digit {
            return self.agi.set_variable("BUSY_CALLBACK", "DECLINED");
        }
        let store = Store::new(&self.c.dir);
        let (status, sound) = match store.add(&caller, &callee, now(), self.c.max, self.c.expiry) {
            Ok(_) => ("QUEUED", self.c.confirm.clone()),
            Err(e @ (StoreError::Duplicate { .. } | StoreError::TooMany { .. })) => {
                self.agi
                    .verbose(&format!("featpkg busy-callback: not stored: {e}"), 1)?;
                let status = if matches!(e, StoreError::Duplicate { .. }) {
                    "DUPLICATE"
                } else {
                    "LIMIT"
                };
                (status, self.c.sorry.clone())
            }
            Err(e) => {
                self.agi.verbose(
                    &format!("featpkg busy-callback: cannot store the request: {e}"),
                    1,
                )?;
                ("ERROR", self.c.sorry.clone())
            }
        };
        self.agi.set_variable("BUSY_CALLBACK", status)?;
        self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
        Ok(())
    }

    /// The callback the watcher originated, from the variables it set; `None`
    /// once a bad one was refused (logged, `BUSY_CALLBACK` = REFUSED).
    fn which(&mut self) -> Result<Option<CallRef>, AgiError> {
        let get = |agi: &mut Session, name: &str| -> Result<String, AgiError> {
            Ok(agi.get_variable(name)?.unwrap_or_default())
        };
        let caller = get(self.agi, "FEATPKG_CALLBACK_CALLER")?;
        if !matches_pattern(&caller, &self.c.pattern) {
            self.refuse("caller", &caller)?;
            return Ok(None);
        }
        let callee = get(self.agi, "FEATPKG_CALLBACK_CALLEE")?;
        if !matches_pattern(&callee, &self.c.pattern) {
            self.refuse("extension", &callee)?;
            return Ok(None);
        }
        let text = get(self.agi, "FEATPKG_CALLBACK_CREATED")?;
        let Some(created) = parse_count(&text).filter(|&t| t <= now()) else {
            self.refuse_variable("FEATPKG_CALLBACK_CREATED", &text, "not a time in the past")?;
            return Ok(None);
        };
        let text = get(self.agi, "FEATPKG_CALLBACK_CALL")?;
        let Some(call) = parse_count(&text).and_then(|n| u32::try_from(n).ok()) else {
            self.refuse_variable("FEATPKG_CALLBACK_CALL", &text, "not a callback number")?;
            return Ok(None);
        };
        Ok(Some(CallRef {
            caller,
            callee,
            created,
            call,
        }))
    }

    /// The callee answered the callback (Dial's `U()` subroutine runs this on
    /// their channel before the two are connected): the request is done now,
    /// not when the conversation ends, so nothing can ring either of them for
    /// it again meanwhile.
    fn connected(&mut self) -> Result<(), AgiError> {
        let Some(which) = self.which()? else {
            return Ok(());
        };
        self.settle(&which, Outcome::Connected)
    }

    /// The callback's dial context ended (its `h` extension): `DIALSTATUS`
    /// says how, and decides what becomes of the request.
    fn ended(&mut self) -> Result<(), AgiError> {
        let Some(which) = self.which()? else {
            return Ok(());
        };
        let status = self.agi.get_variable("DIALSTATUS")?.unwrap_or_default();
        let outcome = match status.as_str() {
            "ANSWER" => Outcome::Connected,
            "CANCEL" => Outcome::Abandoned,
            // BUSY (busy again), NOANSWER, CHANUNAVAIL, CONGESTION, none (the
            // caller hung up before the Dial ran), anything else: the two did
            // not talk; the request must not be lost.
            _ => Outcome::NotConnected,
        };
        self.settle(&which, outcome)
    }

    fn settle(&mut self, w: &CallRef, outcome: Outcome) -> Result<(), AgiError> {
        let rules = Rules {
            retries: self.c.retries,
            retry_wait: self.c.retry_wait,
            expiry_s: self.c.expiry,
        };
        let store = Store::new(&self.c.dir);
        let settled = store.settle(w, outcome, now_ms(), &rules);
        let (caller, callee) = (&w.caller, &w.callee);
        let (status, msg) = match settled {
            Ok(Settled::Done(_)) => (
                "DONE",
                format!("the callback of {caller} for {callee} is done"),
            ),
            Ok(Settled::Waiting(r)) => (
                "WAITING",
                format!(
                    "the callback of {caller} for {callee} did not connect; waits again at least {} s (attempt {})",
                    self.c.retry_wait.as_secs(),
                    r.attempts
                ),
            ),
            Ok(Settled::Dropped(r)) => (
                "DROPPED",
                format!(
                    "{} callbacks of {caller} for {callee} did not connect; dropped",
                    r.attempts
                ),
            ),
            Ok(Settled::Expired(_)) => (
                "EXPIRED",
                format!("the request of {caller} for {callee} has expired"),
            ),
            Ok(Settled::Gone) => (
                "GONE",
                format!(
                    "no request of {caller} for {callee} at callback {} any more; nothing to do",
                    w.call
                ),
            ),
            Err(e) => {
                self.agi.verbose(
                    &format!("featpkg busy-callback: cannot settle the callback: {e}"),
                    1,
                )?;
                return self.agi.set_variable("BUSY_CALLBACK", "ERROR");
            }
        };
        self.agi
            .verbose(&format!("featpkg busy-callback: {msg}"), 3)?;
        self.agi.set_variable("BUSY_CALLBACK", status)
    }

    fn cancel(&mut self) -> Result<(), AgiError> {
        let caller = self.agi.env().callerid().to_string();
        if !matches_pattern(&caller, &self.c.pattern) {
            return self.refuse("caller ID", &caller);
        }
        match Store::new(&self.c.dir).cancel(&caller) {
            Ok(n) => {
                self.agi.verbose(
                    &format!("featpkg busy-callback: {caller} cancelled {n} callback(s)"),
                    3,
                )?;
                self.agi.set_variable("BUSY_CALLBACK", "CANCELLED")?;
            }
            Err(e) => {
                self.agi
                    .verbose(&format!("featpkg busy-callback: cannot cancel: {e}"), 1)?;
                self.agi.set_variable("BUSY_CALLBACK", "ERROR")?;
            }
        }
        self.agi.answer()?;
        let sound = self.c.confirm.clone();
        self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
        Ok(())
    }
}

/// busy-callback's AGI commands: `offer`, `cancel`, `connected`, `ended`.
pub struct BusyCallback;

impl AgiProgram for BusyCallback {
    const NAME: &'static str = "featpkg-busy-callback";
    const LOG_NAME: &'static str = "featpkg busy-callback";
    type Config = Config;

    fn parse_args(args: &[String]) -> Result<Config, String> {
        parse_args(args)
    }

    fn deadline(config: &Config) -> Duration {
        config.deadline
    }

    fn run(agi: &mut Session, c: Config) -> Result<(), AgiError> {
        let mode = c.mode;
        let mut cb = Callback { agi, c };
        match mode {
            Mode::Offer => cb.offer(),
            Mode::Cancel => cb.cancel(),
            Mode::Connected => cb.connected(),
            Mode::Ended => cb.ended(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let ok: Vec<String> = ["offer", "dir=/var/spool/x", "digit=5", "max=2", "expiry=60"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = parse_args(&ok).unwrap();
        assert_eq!((c.max, c.expiry, c.digit.as_str()), (2, 60, "5"));
        for bad in [
            "dir=x",
            "dir=/a/../b",
            "digit=55",
            "max=0",
            "prompt=../x",
            "colour=red",
        ] {
            assert!(parse_args(&["cancel".into(), bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_args(&["call".into()]).is_err());
        // The mode of the first version's dial context is gone with it.
        assert!(parse_args(&["requeue".into()]).is_err());
    }

    #[test]
    fn retry_rules_for_the_callback_outcome() {
        let args: Vec<String> = ["ended", "retries=0", "retry_wait=90"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = parse_args(&args).unwrap();
        assert_eq!(
            (c.mode, c.retries, c.retry_wait),
            (Mode::Ended, 0, Duration::from_secs(90))
        );
        for bad in ["retries=-1", "retries=x", "retry_wait=", "retry_wait=86401"] {
            assert!(parse_args(&["ended".into(), bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(
            parse_args(&["connected".into()]).unwrap().mode,
            Mode::Connected
        );
    }

    #[test]
    fn the_hash_key_cannot_be_the_callback_digit() {
        // GET DATA ends input at `#` and never returns it: the offer could
        // never be taken.
        assert!(parse_args(&["offer".into(), "digit=#".into()]).is_err());
        assert!(parse_args(&["offer".into(), "digit=*".into()]).is_ok());
    }
}

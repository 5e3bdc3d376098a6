//! featpkg-busy-callback: the AGI program of the busy-callback feature.
//!
//! * `offer` (the busy branch, entered as `Goto(<busy context>,<callee>,1)`): the
//!   caller (`agi_callerid`) hears the prompt and may press the callback digit;
//!   the request (caller, callee = `agi_extension`) is stored for the watcher,
//!   which calls the caller back once both are free. Sets `BUSY_CALLBACK` to
//!   QUEUED, DECLINED, DUPLICATE, LIMIT or REFUSED.
//! * `cancel` (the cancel code): drops every request the caller made. Sets
//!   `BUSY_CALLBACK` to CANCELLED (or REFUSED).
//! * `requeue` (the callback's dial context, when the callee is busy again): the
//!   request of `FEATPKG_CALLBACK_CALLER` (set by the watcher) for the callee
//!   (`agi_extension`) waits again, keeping the time it was first made
//!   (`FEATPKG_CALLBACK_SINCE`, also set by the watcher) so it still expires on
//!   time. Sets `BUSY_CALLBACK` to QUEUED, EXPIRED (or REFUSED).
//!
//! Keys: `dir` (request store), `pattern` (extensions served, digits only,
//! default `_XXX`), `digit` (5), `max` (pending requests per caller, 3),
//! `expiry` (seconds, 1800), `deadline` (seconds, 5), `prompt`, `confirm`,
//! `sorry` (sounds). Numbers from the channel are checked against `pattern`
//! before anything is stored; refusals are logged with VERBOSE.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use featpkg_agi::pattern::{matches_pattern, pattern_ok};
use featpkg_agi::{AgiError, StdioAgi, escape_for_log};
use featpkg_busy_callback::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Offer,
    Cancel,
    Requeue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    mode: Mode,
    dir: PathBuf,
    pattern: String,
    digit: String,
    max: usize,
    expiry: u64,
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
        Some("requeue") => Mode::Requeue,
        other => {
            return Err(format!(
                "first argument must be offer, cancel or requeue, got {:?}",
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
        let number = |max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(bad)
        };
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

/// A request's first time from the channel: Unix seconds, digits only, not
/// after `now` (anything else did not come from our watcher).
fn parse_since(text: &str, now: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&t| t <= now)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Callback<'a> {
    agi: &'a mut StdioAgi,
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

    fn refuse_since(&mut self, value: &str) -> Result<(), AgiError> {
        let msg = format!(
            "featpkg busy-callback: refused FEATPKG_CALLBACK_SINCE \"{}\": not a time in the past",
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

    fn requeue(&mut self) -> Result<(), AgiError> {
        let caller = self
            .agi
            .get_variable("FEATPKG_CALLBACK_CALLER")?
            .unwrap_or_default();
        let callee = self.agi.env().extension().to_string();
        if !matches_pattern(&caller, &self.c.pattern) {
            return self.refuse("caller", &caller);
        }
        if !matches_pattern(&callee, &self.c.pattern) {
            return self.refuse("extension", &callee);
        }
        // When the caller first pressed the digit (the watcher passes it on):
        // the expiry counts from then, however often the callee is busy again.
        let now = now();
        let since = match self.agi.get_variable("FEATPKG_CALLBACK_SINCE")? {
            None => now,
            Some(text) => match parse_since(&text, now) {
                Some(since) => since,
                None => return self.refuse_since(&text),
            },
        };
        let store = Store::new(&self.c.dir);
        match store.add_since(&caller, &callee, since, now, self.c.max, self.c.expiry) {
            Ok(_) | Err(StoreError::Duplicate { .. }) => {
                self.agi.set_variable("BUSY_CALLBACK", "QUEUED")
            }
            Err(e @ StoreError::Expired { .. }) => {
                self.agi
                    .verbose(&format!("featpkg busy-callback: not requeued: {e}"), 3)?;
                self.agi.set_variable("BUSY_CALLBACK", "EXPIRED")
            }
            Err(e) => {
                self.agi
                    .verbose(&format!("featpkg busy-callback: cannot requeue: {e}"), 1)?;
                self.agi.set_variable("BUSY_CALLBACK", "ERROR")
            }
        }
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    featpkg_agi::run_program(
        "featpkg busy-callback",
        parse_args(&args),
        |c| c.deadline,
        |agi, c| {
            let mode = c.mode;
            let mut cb = Callback { agi, c };
            match mode {
                Mode::Offer => cb.offer(),
                Mode::Cancel => cb.cancel(),
                Mode::Requeue => cb.requeue(),
            }
        },
    )
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
    }

    #[test]
    fn the_hash_key_cannot_be_the_callback_digit() {
        // GET DATA ends input at `#` and never returns it: the offer could
        // never be taken.
        assert!(parse_args(&["offer".into(), "digit=#".into()]).is_err());
        assert!(parse_args(&["offer".into(), "digit=*".into()]).is_ok());
    }
}

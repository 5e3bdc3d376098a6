//! featpkg-busy-callback-watch: the watcher of the busy-callback feature.
//!
//! Follows device states over AMI (`DeviceStateList` once, then
//! `DeviceStateChange` events, no polling; `Getvar DEVICE_STATE()` once for a
//! device Asterisk's cache does not list) and, when both the caller and the
//! callee of a pending request are free, originates the callback: the caller's
//! phone rings showing "Callback <callee>"; when they answer, the dial context
//! rings the callee. An unanswered callback is retried `--retries` times,
//! `--retry-wait` seconds apart; requests expire after `--expiry` seconds.
//!
//! Single instance (a second start exits 0 at once: cron starts it every
//! minute to keep it alive), survives Asterisk restarts (reconnects with
//! backoff) and its own (requests live on disk), exits cleanly on SIGTERM —
//! and by itself once its AMI credentials file is gone (the feature was
//! uninstalled).
//! It never runs inside an AGI, so it holds no call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use featpkg_ami::daemon::{self, DaemonPaths, Log, Watch};
use featpkg_ami::{Ami, AmiError, Message, action};
use featpkg_busy_callback::{Request, Store};

#[derive(Debug, Clone)]
struct Options {
    store: PathBuf,
    ami: PathBuf,
    lock: PathBuf,
    log: Option<PathBuf>,
    tech: String,
    context: String,
    retries: u32,
    retry_wait: Duration,
    expiry: u64,
    ring: Duration,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        store: PathBuf::from("/var/spool/asterisk/featpkg/busy-callback"),
        ami: PathBuf::from("/etc/asterisk/featpkg-ami/busy-callback.conf"),
        lock: PathBuf::from("/var/spool/asterisk/featpkg/busy-callback-watch.lock"),
        log: None,
        tech: "PJSIP".into(),
        context: "featpkg-busy-callback-dial".into(),
        retries: 2,
        retry_wait: Duration::from_secs(60),
        expiry: 1800,
        ring: Duration::from_secs(30),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let secs = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} {value:?}: not a number of seconds"))
        };
        match flag.as_str() {
            "--store" => o.store = value.into(),
            "--ami" => o.ami = value.into(),
            "--lock" => o.lock = value.into(),
            "--log" => o.log = Some(value.into()),
            "--tech" if ["PJSIP", "IAX2", "DAHDI", "SIP"].contains(&value.as_str()) => {
                o.tech = value.clone()
            }
            "--context"
                if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                o.context = value.clone()
            }
            "--retries" => {
                o.retries = value
                    .parse()
                    .map_err(|_| format!("--retries {value:?}: not a number"))?
            }
            "--retry-wait" => o.retry_wait = Duration::from_secs(secs()?),
            "--expiry" => o.expiry = secs()?,
            "--ring" => o.ring = Duration::from_secs(secs()?),
            _ => return Err(format!("unknown option or bad value: {flag} {value:?}")),
        }
    }
    Ok(o)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Device state is free for a callback: idle. Anything else, or a device whose
/// state Asterisk has not told us, is not.
fn free(state: Option<&String>) -> bool {
    matches!(state.map(String::as_str), Some("NOT_INUSE"))
}

/// (caller, callee) of one request.
type Pair = (String, String);

struct Watcher {
    o: Options,
    store: Store,
    states: BTreeMap<String, String>,
    /// ActionID of an originate in flight -> (caller, callee).
    in_flight: BTreeMap<String, Pair>,
    /// Earliest time of the next attempt per (caller, callee).
    not_before: BTreeMap<Pair, Instant>,
    /// Callees whose callback was just answered: the dial context is ringing
    /// them although their last known state may still say free. Taken until
    /// their next state change, or this instant at the latest.
    taken: BTreeMap<String, Instant>,
    /// The store error logged last, so a lasting one is logged once.
    store_error: Option<String>,
    /// Devices asked for with `Getvar DEVICE_STATE()` in this session.
    asked: BTreeSet<String>,
}

impl Watcher {
    fn device(&self, ext: &str) -> String {
        format!("{}/{ext}", self.o.tech)
    }

    /// One AMI session: initial states, then events until the connection drops.
    fn session(
        &mut self,
        ami: &mut Ami,
        stop: &dyn Fn() -> bool,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        self.states.clear();
        self.asked.clear();
        self.in_flight.clear();
        for item in ami.list(action("DeviceStateList", &[])?)? {
            if let (Some(d), Some(s)) = (item.get("Device"), item.get("State")) {
                self.states.insert(d.to_string(), s.to_string());
            }
        }
        daemon::event_loop(self, ami, stop, Duration::from_millis(250), log)
    }

    /// True when `r` may be called back now: both sides free, neither already
    /// in a callback of ours, and its retry delay over.
    fn ready(&self, r: &Request) -> bool {
        let busy_with_us = self
            .in_flight
            .values()
            .any(|(a, b)| a == &r.caller || b == &r.callee);
        let waiting = self
            .not_before
            .get(&(r.caller.clone(), r.callee.clone()))
            .is_some_and(|t| Instant::now() < *t);
        let taken = self
            .taken
            .get(&r.callee)
            .is_some_and(|t| Instant::now() < *t);
        !busy_with_us
            && !waiting
            && !taken
            && free(self.states.get(&self.device(&r.callee)))
            && free(self.states.get(&self.device(&r.caller)))
    }

    /// Rings the caller, showing which callee this callback is for.
    fn call_back(&mut self, ami: &mut Ami, r: &Request, log: &mut Log) -> Result<(), AmiError> {
        let caller_id = format!("\"Callback {}\" <{}>", r.callee, r.callee);
        let timeout = self.o.ring.as_millis().to_string();
        let channel = self.device(&r.caller);
        // The dial context hands both back to the AGI program if the callee is
        // busy again: who to call back, and since when the request waits (so
        // it keeps its expiry). One header, comma-separated, as Asterisk reads it.
        let variable = format!(
            "FEATPKG_CALLBACK_CALLER={},FEATPKG_CALLBACK_SINCE={}",
            r.caller, r.created
        );
        let sent = ami.originate(&[
            ("Channel", &channel),
            ("Context", &self.o.context),
            ("Exten", &r.callee),
            ("Priority", "1"),
            ("CallerID", &caller_id),
            ("Timeout", &timeout),
            ("Variable", &variable),
        ]);
        match sent {
            Ok(id) => {
                log.line(&format!("calling {} back for {}", r.caller, r.callee));
                self.in_flight
                    .insert(id, (r.caller.clone(), r.callee.clone()));
                Ok(())
            }
            // Asterisk refused this one call ("Originate failed"): an attempt
            // that did not ring, not a reason to drop the connection.
            Err(AmiError::Refused(why)) => {
                log.line(&format!(
                    "Asterisk refused the callback to {} for {}: {why}",
                    r.caller, r.callee
                ));
                self.unanswered(&r.caller, &r.callee, log);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Counts an attempt the caller did not answer; drops the request after
    /// `--retries` retries, else waits `--retry-wait` before the next one.
    fn unanswered(&mut self, caller: &str, callee: &str, log: &mut Log) {
        let _lock = self.store.lock();
        let current = self
            .store
            .list()
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.caller == caller && r.callee == callee);
        let Some(mut r) = current else { return };
        r.attempts += 1;
        if r.attempts > self.o.retries {
            let _ = self.store.remove(caller, callee);
            log.line(&format!(
                "{caller} did not answer {} callbacks for {callee}; dropped",
                r.attempts
            ));
        } else {
            let _ = self.store.save(&r);
            self.not_before.insert(
                (caller.to_string(), callee.to_string()),
                Instant::now() + self.o.retry_wait,
            );
            log.line(&format!(
                "{caller} did not answer the callback for {callee} (attempt {})",
                r.attempts
            ));
        }
    }

    /// The caller answered: the request is done and the callee is being rung.
    fn answered(&mut self, caller: &str, callee: &str, log: &mut Log) {
        let _lock = self.store.lock();
        let _ = self.store.remove(caller, callee);
        // Ringing the callee takes as long as the dial context's ring time.
        let until = Instant::now() + self.o.ring + Duration::from_secs(5);
        self.taken.insert(callee.to_string(), until);
        log.line(&format!("{caller} answered the callback for {callee}"));
    }

    /// A new device state; the callee's first change after its callback was
    /// answered is the real one (ringing, talking, or free again).
    /// DeviceStateList lists only Asterisk's device-state cache: a phone whose
    /// state has not changed since Asterisk started is missing from it, and
    /// would stay unknown (never free) until its first event. Ask Asterisk for
    /// such a device once per session with `Getvar DEVICE_STATE(<device>)`.
    fn ask_unknown(&mut self, ami: &mut Ami, r: &Request, log: &mut Log) -> Result<(), AmiError> {
        for ext in [&r.caller, &r.callee] {
            let device = self.device(ext);
            if self.states.contains_key(&device) || !self.asked.insert(device.clone()) {
                continue;
            }
            let variable = format!("DEVICE_STATE({device})");
            match ami.send(action("Getvar", &[("Variable", &variable)])?) {
                Ok(reply) => {
                    if let Some(state) = reply.get("Value").filter(|v| !v.is_empty()) {
                        let state = state.to_string();
                        self.device_state(&device, &state);
                    }
                }
                Err(AmiError::Refused(why)) => {
                    log.line(&format!("cannot read the state of {device}: {why}"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn device_state(&mut self, device: &str, state: &str) {
        self.states.insert(device.to_string(), state.to_string());
        let tech = format!("{}/", self.o.tech);
        if let Some(ext) = device.strip_prefix(&tech) {
            self.taken.remove(ext);
        }
    }
}

impl Watch for Watcher {
    /// Originates every request whose two sides are free.
    fn dispatch(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        for gone in self.store.expire(now(), self.o.expiry).unwrap_or_default() {
            log.line(&format!(
                "request {} -> {} expired",
                gone.caller, gone.callee
            ));
        }
        let pending = match self.store.list() {
            Ok(p) => {
                self.store_error = None;
                p
            }
            Err(e) => {
                // Dispatch runs every tick: say it once, not four times a second.
                let text = format!("cannot read requests: {e}");
                if self.store_error.as_ref() != Some(&text) {
                    log.line(&text);
                    self.store_error = Some(text);
                }
                return Ok(());
            }
        };
        for r in pending {
            self.ask_unknown(ami, &r, log)?;
            if self.ready(&r) {
                self.call_back(ami, &r, log)?;
            }
        }
        Ok(())
    }

    fn on_event(&mut self, _ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        match ev.event() {
            Some("DeviceStateChange") => {
                if let (Some(d), Some(s)) = (ev.get("Device"), ev.get("State")) {
                    self.device_state(d, s);
                }
            }
            Some("OriginateResponse") => {
                let Some((caller, callee)) =
                    ev.get("ActionID").and_then(|id| self.in_flight.remove(id))
                else {
                    return Ok(());
                };
                if ev
                    .get("Response")
                    .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
                {
                    self.answered(&caller, &callee, log);
                } else {
                    self.unanswered(&caller, &callee, log);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("featpkg-busy-callback-watch: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let paths = DaemonPaths {
        lock: o.lock.clone(),
        ami: o.ami.clone(),
        log: o.log.clone(),
    };
    let mut w = Watcher {
        store: Store::new(&o.store),
        o,
        states: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        not_before: BTreeMap::new(),
        taken: BTreeMap::new(),
        store_error: None,
        asked: BTreeSet::new(),
    };
    daemon::run(
        "featpkg-busy-callback-watch",
        &paths,
        "call",
        |ami, stop, log| w.session(ami, stop, log),
    )
}

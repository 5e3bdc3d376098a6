//! featpkg-busy-callback-watch: the watcher of the busy-callback feature.
//!
//! Follows device states over AMI (`DeviceStateList` once, then
//! `DeviceStateChange` events, no polling) and, when both the caller and the
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

use std::collections::BTreeMap;
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

/// Device state is free for a callback: idle, or unknown to Asterisk's hints.
fn free(state: Option<&String>) -> bool {
    matches!(state.map(String::as_str), Some("NOT_INUSE"))
}

struct Watcher {
    o: Options,
    store: Store,
    states: BTreeMap<String, String>,
    /// ActionID of an originate in flight -> (caller, callee).
    in_flight: BTreeMap<String, (String, String)>,
    /// Earliest time of the next attempt per (caller, callee).
    not_before: BTreeMap<(String, String), Instant>,
}

impl Watcher {
    fn device(&self, ext: &str) -> String {
        format!("{}/{ext}", self.o.tech)
    }

    fn busy_pair(&self, r: &Request) -> bool {
        self.in_flight
            .values()
            .any(|(a, b)| a == &r.caller && b == &r.callee)
    }

    /// One AMI session: initial states, then events until the connection drops.
    fn session(
        &mut self,
        ami: &mut Ami,
        stop: &dyn Fn() -> bool,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        self.states.clear();
        self.in_flight.clear();
        for item in ami.list(action("DeviceStateList", &[])?)? {
            if let (Some(d), Some(s)) = (item.get("Device"), item.get("State")) {
                self.states.insert(d.to_string(), s.to_string());
            }
        }
        daemon::event_loop(self, ami, stop, Duration::from_millis(250), log)
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
            Ok(p) => p,
            Err(e) => {
                log.line(&format!("cannot read requests: {e}"));
                return Ok(());
            }
        };
        for r in pending {
            let key = (r.caller.clone(), r.callee.clone());
            if self.busy_pair(&r)
                || self
                    .not_before
                    .get(&key)
                    .is_some_and(|t| Instant::now() < *t)
            {
                continue;
            }
            // One callback per caller at a time.
            if self.in_flight.values().any(|(a, _)| a == &r.caller) {
                continue;
            }
            if !free(self.states.get(&self.device(&r.callee)))
                || !free(self.states.get(&self.device(&r.caller)))
            {
                continue;
            }
            let caller_id = format!("\"Callback {}\" <{}>", r.callee, r.callee);
            let timeout = self.o.ring.as_millis().to_string();
            let channel = self.device(&r.caller);
            let variable = format!("FEATPKG_CALLBACK_CALLER={}", r.caller);
            let id = ami.originate(&[
                ("Channel", &channel),
                ("Context", &self.o.context),
                ("Exten", &r.callee),
                ("Priority", "1"),
                ("CallerID", &caller_id),
                ("Timeout", &timeout),
                ("Variable", &variable),
            ])?;
            log.line(&format!("calling {} back for {}", r.caller, r.callee));
            self.in_flight.insert(id, key);
        }
        Ok(())
    }

    fn on_event(&mut self, _ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        match ev.event() {
            Some("DeviceStateChange") => {
                if let (Some(d), Some(s)) = (ev.get("Device"), ev.get("State")) {
                    self.states.insert(d.to_string(), s.to_string());
                }
            }
            Some("OriginateResponse") => {
                let Some((caller, callee)) =
                    ev.get("ActionID").and_then(|id| self.in_flight.remove(id))
                else {
                    return Ok(());
                };
                let _lock = self.store.lock();
                let answered = ev
                    .get("Response")
                    .is_some_and(|r| r.eq_ignore_ascii_case("Success"));
                let current = self
                    .store
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|r| r.caller == caller && r.callee == callee);
                let Some(mut r) = current else { return Ok(()) };
                if answered {
                    let _ = self.store.remove(&caller, &callee);
                    log.line(&format!("{caller} answered the callback for {callee}"));
                } else {
                    r.attempts += 1;
                    if r.attempts > self.o.retries {
                        let _ = self.store.remove(&caller, &callee);
                        log.line(&format!(
                            "{caller} did not answer {} callbacks for {callee}; dropped",
                            r.attempts
                        ));
                    } else {
                        let _ = self.store.save(&r);
                        self.not_before.insert(
                            (caller.clone(), callee.clone()),
                            Instant::now() + self.o.retry_wait,
                        );
                        log.line(&format!(
                            "{caller} did not answer the callback for {callee} (attempt {})",
                            r.attempts
                        ));
                    }
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
    };
    daemon::run(
        "featpkg-busy-callback-watch",
        &paths,
        "call",
        |ami, stop, log| w.session(ami, stop, log),
    )
}

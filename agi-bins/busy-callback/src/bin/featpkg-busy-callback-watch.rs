//! featpkg-busy-callback-watch: the watcher of the busy-callback feature.
//!
//! Follows device states over AMI (`DeviceStateList` once, then
//! `DeviceStateChange` events, no polling; `Getvar DEVICE_STATE()` once for a
//! device Asterisk's cache does not list) and, when both the caller and the
//! callee of a waiting request are free (see [`availability`]), marks the
//! request calling and originates the callback: the caller's phone rings
//! showing "Callback <callee>"; when they answer, the dial context rings the
//! callee, whose phone shows the caller. From then on the callback's outcome
//! decides what becomes of the request (the library documents who owns it
//! when): the watcher settles only a callback the caller did not answer
//! (`OriginateResponse` Failure, or Originate refused), one Asterisk refused
//! because it is shutting down (no attempt: it waits for Asterisk to come
//! back), or one whose outcome never came (after `--stale`). A
//! request waits at least `--retry-wait` seconds after a callback that did not
//! connect, at most `--retries` such callbacks are made after the first one,
//! and requests expire `--expiry` seconds after the digit press.
//!
//! Single instance (a second start exits 0 at once: cron starts it every
//! minute to keep it alive), survives Asterisk restarts (reconnects with
//! backoff) and its own (requests and their phase live on disk), exits
//! cleanly on SIGTERM — and by itself once its AMI credentials file is gone
//! (the feature was uninstalled).
//! It never runs inside an AGI, so it holds no call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use featpkg_ami::daemon::{self, DaemonPaths, Log, Watch};
use featpkg_ami::wake::{Change, Wakeups};
use featpkg_ami::{Ami, AmiError, Message, action};
use featpkg_busy_callback::{Outcome, Phase, Request, Rules, Settled, Store, now_ms};

/// Added to the longest a callback can take without an outcome (the caller
/// rings, then the callee rings: twice `--ring`) before it counts as lost:
/// channel set-up, a slow OriginateResponse.
const STALE_MARGIN: Duration = Duration::from_secs(30);

/// What Asterisk answers every action while it shuts down (manager.c).
const SHUTTING_DOWN: &str = "Asterisk is shutting down";

/// How soon a store read or write that failed is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(1);

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
    /// A callback still without an outcome this long after it was originated
    /// is lost (Asterisk or the watcher restarted mid-callback).
    stale: Option<Duration>,
}

impl Options {
    fn stale(&self) -> Duration {
        self.stale.unwrap_or(self.ring * 2 + STALE_MARGIN)
    }

    fn rules(&self) -> Rules {
        Rules {
            retries: self.retries,
            retry_wait: self.retry_wait,
            expiry_s: self.expiry,
        }
    }
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
        stale: None,
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
            // The technologies the feature offers and its tests prove.
            "--tech" if ["PJSIP", "IAX2"].contains(&value.as_str()) => o.tech = value.clone(),
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
            "--stale" => o.stale = Some(Duration::from_secs(secs()?)),
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

/// What a device state says about ringing that phone for a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    /// Idle: ring it.
    Free,
    /// In a call, ringing or on hold: wait for its next state change.
    Busy,
    /// Not registered (UNAVAILABLE) or no such device (INVALID): ringing would
    /// fail and cost an attempt; wait until it comes back.
    Unreachable,
    /// Not told yet (nor a state name we know): do not ring blind.
    NotKnown,
}

/// The rule for "free" (names as `DEVICE_STATE()` and the `DeviceStateChange`
/// event write them, main/devicestate.c):
///
/// * free: NOT_INUSE, and UNKNOWN. A driver that does not track its own
///   phones' use (IAX2: chan_iax2.c `iax2_devicestate` answers UNKNOWN for
///   every registered peer) leaves it to the core, which counts the device's
///   channels (devicestate.c `ast_parse_device_state`): INUSE or RINGING while
///   it has a call, UNKNOWN again when it has none. So UNKNOWN is an idle,
///   reachable IAX2 phone — treating it as not free meant an IAX2 callee was
///   never called back. Asterisk's own generic call completion decides the
///   same way (ccss.c `cc_generic_is_device_available`: NOT_INUSE or UNKNOWN).
/// * busy: INUSE, BUSY, RINGING, RINGINUSE, ONHOLD.
/// * not reachable: UNAVAILABLE, INVALID — never rung.
fn availability(state: Option<&str>) -> Availability {
    match state {
        Some("NOT_INUSE" | "UNKNOWN") => Availability::Free,
        Some("INUSE" | "BUSY" | "RINGING" | "RINGINUSE" | "ONHOLD") => Availability::Busy,
        Some("UNAVAILABLE" | "INVALID") => Availability::Unreachable,
        _ => Availability::NotKnown,
    }
}

struct Watcher {
    o: Options,
    store: Store,
    /// The store as last read, by (caller, callee): read whole once per
    /// session, then one file at a time as the store's directory reports it
    /// changed. Events and dispatch work from this, never from a rescan.
    requests: BTreeMap<(String, String), Request>,
    /// The whole store must be read again (a session began, changes were
    /// lost, or a read failed).
    reload: bool,
    states: BTreeMap<String, String>,
    /// ActionID of an originate whose OriginateResponse has not come -> the
    /// request as marked for that callback.
    in_flight: BTreeMap<String, Request>,
    /// Callees whose callback the caller just answered (-> that caller): the
    /// dial context rings them, and once they answer the request is gone from
    /// the store, while their last known state may still say free (the events
    /// lag). Taken until their next state change, until the request is back to
    /// waiting (they did not answer: nothing to wait for), or this instant at
    /// the latest.
    taken: BTreeMap<String, (String, Instant)>,
    /// The store error logged last, so a lasting one is logged once.
    store_error: Option<String>,
    /// Likewise for a request that cannot be marked or settled (tried on
    /// every wake-up, at least every second, while it lasts); cleared by the next one that can.
    write_error: Option<String>,
    /// Devices asked for with `Getvar DEVICE_STATE()` in this session.
    asked: BTreeSet<String>,
}

impl Watcher {
    fn device(&self, ext: &str) -> String {
        format!("{}/{ext}", self.o.tech)
    }

    fn free(&self, ext: &str) -> bool {
        let state = self.states.get(&self.device(ext)).map(String::as_str);
        let taken = self
            .taken
            .get(ext)
            .is_some_and(|(_, t)| Instant::now() < *t);
        !taken && availability(state) == Availability::Free
    }

    /// One AMI session: initial states, then events until the connection drops.
    fn session(
        &mut self,
        ami: &mut Ami,
        wake: &mut Wakeups,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        // The store's directory exists from now on (the AGI program would
        // make it on the first request), so its changes can be followed;
        // followed before it is read, so no change falls in between. A store
        // that cannot be made is reported by that read.
        let _ = self.store.lock();
        wake.follow(self.store.dir());
        self.reload = true;
        self.states.clear();
        self.asked.clear();
        // Their OriginateResponse went with the old connection: a callback
        // the caller does not answer is settled by the stale rule.
        self.in_flight.clear();
        for item in ami.list(action("DeviceStateList", &[])?)? {
            if let (Some(d), Some(s)) = (item.get("Device"), item.get("State")) {
                self.states.insert(d.to_string(), s.to_string());
            }
        }
        daemon::event_loop(self, ami, wake, log)
    }

    /// Reads the whole store into the index (once per session, or after
    /// changes were lost).
    fn read_store(&mut self, log: &mut Log) {
        match self.store.list() {
            Ok(list) => {
                self.store_error = None;
                self.reload = false;
                self.requests = list
                    .into_iter()
                    .map(|r| ((r.caller.clone(), r.callee.clone()), r))
                    .collect();
                log.line(&format!(
                    "read the request store: {} requests",
                    self.requests.len()
                ));
            }
            Err(e) => self.store_failed(format!("cannot read requests: {e}"), log),
        }
    }

    /// Reads again the one request of `caller` for `callee` (it changed).
    fn read_one(&mut self, caller: &str, callee: &str, log: &mut Log) {
        let key = (caller.to_string(), callee.to_string());
        match self.store.get(caller, callee) {
            Ok(Some(r)) => {
                self.requests.insert(key, r);
            }
            Ok(None) => {
                self.requests.remove(&key);
            }
            Err(e) => self.store_failed(format!("cannot read requests: {e}"), log),
        }
    }

    /// Logs a store that cannot be read once while it lasts; it is read
    /// whole again [`RETRY_FAILED`] later.
    fn store_failed(&mut self, text: String, log: &mut Log) {
        self.reload = true;
        if self.store_error.as_ref() != Some(&text) {
            log.line(&text);
            self.store_error = Some(text);
        }
    }

    /// Drops the requests the index says are past their expiry.
    fn expire(&mut self, log: &mut Log) {
        let now = now();
        let due: Vec<(String, String)> = self
            .requests
            .values()
            .filter(|r| now.abs_diff(r.created) >= self.o.expiry)
            .map(|r| (r.caller.clone(), r.callee.clone()))
            .collect();
        for (caller, callee) in due {
            if let Ok(Some(gone)) = self.store.expire_one(&caller, &callee, now, self.o.expiry) {
                log.line(&format!(
                    "request {} -> {} expired",
                    gone.caller, gone.callee
                ));
            }
            self.read_one(&caller, &callee, log);
        }
    }

    /// True once a waiting request's wait is over. A wait longer than
    /// `--retry-wait` from now cannot be ours: the clock went back; over too.
    fn due(&self, not_before_ms: u64, now_ms: u64) -> bool {
        let longest = u64::try_from(self.o.retry_wait.as_millis()).unwrap_or(u64::MAX);
        now_ms >= not_before_ms || not_before_ms - now_ms > longest
    }

    /// Marks `r` calling and rings the caller, showing which callee this
    /// callback is for.
    fn call_back(&mut self, ami: &mut Ami, seen: &Request, log: &mut Log) -> Result<(), AmiError> {
        // Marked first: whatever happens next, the file says a callback is
        // under way, and no second one starts for it.
        let marked = self.store.begin_call(seen, now_ms());
        self.read_one(&seen.caller, &seen.callee, log);
        let r = match marked {
            Ok(Some(r)) => {
                self.write_error = None;
                r
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                let text = format!(
                    "cannot mark the callback of {} for {}: {e}",
                    seen.caller, seen.callee
                );
                self.write_failed(text, log);
                return Ok(());
            }
        };
        // What each phone shows. The caller's: which callback this is, as
        // the party it is connected to (CONNECTEDLINE, `i`: set, no update
        // sent before the call exists; the From header and IAX2's calling
        // number come from it). The callee's: the caller, as if they had
        // dialled — the channel's caller ID, which the dial context's Dial()
        // presents (its name stays what the channel driver set from the
        // caller's own endpoint). Originate's CallerID header would set both
        // to the callee, and the callee would see a call from itself.
        let shown = [
            format!("CONNECTEDLINE(name,i)=Callback {}", r.callee),
            format!("CONNECTEDLINE(num,i)={}", r.callee),
            format!("CALLERID(num)={}", r.caller),
        ];
        let timeout = self.o.ring.as_millis().to_string();
        let channel = self.device(&r.caller);
        // Which callback this is, for the dial context's AGI program that
        // settles it: on the caller's channel, and (one `_`: inherited one
        // level) on the callee's, where Dial's U() subroutine runs. One header,
        // comma-separated, as Asterisk reads it.
        let variable = format!(
            "_FEATPKG_CALLBACK_CALLER={},_FEATPKG_CALLBACK_CALLEE={},_FEATPKG_CALLBACK_CREATED={},_FEATPKG_CALLBACK_CALL={}",
            r.caller, r.callee, r.created, r.calls
        );
        let sent = ami.originate(&[
            ("Channel", &channel),
            ("Context", &self.o.context),
            ("Exten", &r.callee),
            ("Priority", "1"),
            ("Timeout", &timeout),
            ("Variable", &variable),
            // One header each: the functions' own commas stay theirs.
            ("Variable", &shown[0]),
            ("Variable", &shown[1]),
            ("Variable", &shown[2]),
        ]);
        match sent {
            Ok(id) => {
                log.line(&format!("calling {} back for {}", r.caller, r.callee));
                self.in_flight.insert(id, r);
                Ok(())
            }
            // Asterisk refuses every action while it shuts down (manager.c:
            // "Asterisk is shutting down"), and a restart hangs up the calls
            // first, so their DeviceStateChanges bring exactly this: the
            // caller was never rung, and it is nobody's attempt (counting it
            // would burn one per restart, and lose the request with retries
            // = 0). The request waits again at once; this connection ends and
            // the daemon reconnects once Asterisk is back.
            Err(AmiError::Refused(why)) if why.contains(SHUTTING_DOWN) => {
                let rules = Rules {
                    retry_wait: Duration::ZERO,
                    ..self.o.rules()
                };
                let settled = self
                    .store
                    .settle(&r.call_ref(), Outcome::Unknown, now_ms(), &rules);
                self.read_one(&r.caller, &r.callee, log);
                match settled {
                    Ok(Settled::Waiting(_)) => log.line(&format!(
                        "Asterisk is shutting down: the callback of {} for {} waits for it",
                        r.caller, r.callee
                    )),
                    Ok(Settled::Expired(_)) => {
                        log.line(&format!("request {} -> {} expired", r.caller, r.callee))
                    }
                    Ok(_) => {}
                    Err(e) => log.line(&format!(
                        "cannot settle the callback of {} for {}: {e}",
                        r.caller, r.callee
                    )),
                }
                Err(AmiError::Refused(why))
            }
            // Asterisk refused this one call ("Originate failed"): an attempt
            // that did not ring, not a reason to drop the connection.
            Err(AmiError::Refused(why)) => {
                log.line(&format!(
                    "Asterisk refused the callback to {} for {}: {why}",
                    r.caller, r.callee
                ));
                self.unanswered(&r, log);
                Ok(())
            }
            // The connection broke: whether Asterisk got the Originate is
            // unknown; the stale rule settles the mark if no outcome comes.
            Err(e) => Err(e),
        }
    }

    /// Settles a callback the caller did not answer: waits `--retry-wait`,
    /// or is dropped after `--retries` of them.
    fn unanswered(&mut self, r: &Request, log: &mut Log) {
        let (caller, callee) = (&r.caller, &r.callee);
        match self.settle(r, Outcome::NotConnected, log) {
            Ok(Settled::Dropped(d)) => log.line(&format!(
                "{caller} did not answer {} callbacks for {callee}; dropped",
                d.attempts
            )),
            Ok(Settled::Waiting(w)) => log.line(&format!(
                "{caller} did not answer the callback for {callee} (attempt {})",
                w.attempts
            )),
            Ok(Settled::Expired(_)) => log.line(&format!("request {caller} -> {callee} expired")),
            Ok(Settled::Done(_) | Settled::Gone) => {}
            Err(e) => log.line(&format!(
                "cannot settle the callback of {caller} for {callee}: {e}"
            )),
        }
    }

    /// Applies `outcome` to the callback `r` and reads the request back.
    fn settle(
        &mut self,
        r: &Request,
        outcome: Outcome,
        log: &mut Log,
    ) -> Result<Settled, featpkg_busy_callback::StoreError> {
        let settled = self
            .store
            .settle(&r.call_ref(), outcome, now_ms(), &self.o.rules());
        self.read_one(&r.caller, &r.callee, log);
        settled
    }

    /// A callback marked longer ago than `--stale` without an outcome: its
    /// OriginateResponse or its dial context's word was lost (Asterisk or the
    /// watcher restarted meanwhile). It waits again; no attempt is counted,
    /// as the caller may never have been rung.
    fn lost(&mut self, r: &Request, log: &mut Log) {
        self.in_flight
            .retain(|_, f| (&f.caller, &f.callee) != (&r.caller, &r.callee));
        let settled = self.settle(r, Outcome::Unknown, log);
        if settled.is_ok() {
            self.write_error = None;
        }
        match settled {
            Ok(Settled::Waiting(_)) => log.line(&format!(
                "no outcome of the callback of {} for {} after {} s; it waits again",
                r.caller,
                r.callee,
                self.o.stale().as_secs()
            )),
            Ok(Settled::Expired(_)) => {
                log.line(&format!("request {} -> {} expired", r.caller, r.callee))
            }
            Ok(_) => {}
            Err(e) => {
                let text = format!(
                    "cannot settle the callback of {} for {}: {e}",
                    r.caller, r.callee
                );
                self.write_failed(text, log);
            }
        }
    }

    /// Logs a failed mark or settle once while the same failure lasts.
    fn write_failed(&mut self, text: String, log: &mut Log) {
        if self.write_error.as_ref() != Some(&text) {
            log.line(&text);
            self.write_error = Some(text);
        }
    }

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
                        self.states.insert(device, state.to_string());
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
}

impl Watch for Watcher {
    /// Settles lost callbacks, then originates every waiting request that is
    /// due and whose two sides are free and in no other callback.
    fn dispatch(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        if self.reload {
            self.read_store(log);
        }
        self.expire(log);
        let mut pending: Vec<Request> = self.requests.values().cloned().collect();
        pending.sort_by(|a, b| {
            (a.created, &a.caller, &a.callee).cmp(&(b.created, &b.caller, &b.callee))
        });
        self.taken.retain(|callee, (caller, _)| {
            !pending
                .iter()
                .any(|r| (&r.caller, &r.callee) == (caller, callee) && !r.calling())
        });
        // A phone in a callback under way takes no other: the caller talks to
        // (or is being connected with) the callee, whose state may still say
        // free until Asterisk reports the ringing.
        let mut in_callback: BTreeSet<String> = pending
            .iter()
            .filter(|r| r.calling())
            .flat_map(|r| [r.caller.clone(), r.callee.clone()])
            .collect();
        let now = now_ms();
        let stale = u64::try_from(self.o.stale().as_millis()).unwrap_or(u64::MAX);
        for r in pending {
            match r.phase {
                Phase::Calling { since_ms } => {
                    if now.abs_diff(since_ms) >= stale {
                        self.lost(&r, log);
                    }
                }
                Phase::Waiting { not_before_ms } => {
                    if !self.due(not_before_ms, now)
                        || in_callback.contains(&r.caller)
                        || in_callback.contains(&r.callee)
                    {
                        continue;
                    }
                    self.ask_unknown(ami, &r, log)?;
                    if self.free(&r.caller) && self.free(&r.callee) {
                        in_callback.insert(r.caller.clone());
                        in_callback.insert(r.callee.clone());
                        self.call_back(ami, &r, log)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The first of: a request's expiry, the end of a retry wait, the bound
    /// on a callback without an outcome, the end of a callee's taken time;
    /// soon again after a failed store read or write. Nothing pending: none.
    fn deadline(&self) -> Option<Instant> {
        let now = now_ms();
        let stale = u64::try_from(self.o.stale().as_millis()).unwrap_or(u64::MAX);
        let mut next: Option<u64> = None;
        let mut at = |t: u64| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for r in self.requests.values() {
            at(r.created.saturating_add(self.o.expiry).saturating_mul(1000));
            match r.phase {
                Phase::Waiting { not_before_ms } if !self.due(not_before_ms, now) => {
                    at(not_before_ms)
                }
                Phase::Waiting { .. } => {}
                Phase::Calling { since_ms } => at(since_ms.saturating_add(stale)),
            }
        }
        let clock = Instant::now();
        let mut deadline = next.map(|t| clock + Duration::from_millis(t - now));
        let mut sooner = |t: Instant| {
            if t > clock {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        for (_, until) in self.taken.values() {
            sooner(*until);
        }
        if self.reload || self.store_error.is_some() || self.write_error.is_some() {
            sooner(clock + RETRY_FAILED);
        }
        deadline
    }

    /// A request file was written, renamed or removed: that request alone is
    /// read again.
    fn on_change(&mut self, change: &Change, log: &mut Log) {
        match change {
            Change::File { name, .. } => {
                if let Some((caller, callee)) = Store::request_named(name) {
                    self.read_one(&caller, &callee, log);
                }
            }
            Change::All { .. } => self.reload = true,
        }
    }

    fn on_event(&mut self, _ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        match ev.event() {
            Some("DeviceStateChange") => {
                if let (Some(d), Some(s)) = (ev.get("Device"), ev.get("State")) {
                    self.states.insert(d.to_string(), s.to_string());
                    let tech = format!("{}/", self.o.tech);
                    if let Some(ext) = d.strip_prefix(&tech) {
                        self.taken.remove(ext);
                    }
                }
            }
            Some("OriginateResponse") => {
                let Some(r) = ev.get("ActionID").and_then(|id| self.in_flight.remove(id)) else {
                    return Ok(());
                };
                if ev
                    .get("Response")
                    .is_some_and(|x| x.eq_ignore_ascii_case("Success"))
                {
                    // The dial context now rings the callee; its outcome
                    // settles the request, not this event.
                    let until = Instant::now() + self.o.ring + Duration::from_secs(5);
                    self.taken
                        .insert(r.callee.clone(), (r.caller.clone(), until));
                    log.line(&format!(
                        "{} answered the callback for {}",
                        r.caller, r.callee
                    ));
                } else {
                    self.unanswered(&r, log);
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
        requests: BTreeMap::new(),
        reload: true,
        o,
        states: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        taken: BTreeMap::new(),
        store_error: None,
        write_error: None,
        asked: BTreeSet::new(),
    };
    daemon::run(
        "featpkg-busy-callback-watch",
        &paths,
        "call",
        |ami, wake, log| w.session(ami, wake, log),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_busy_and_unreachable_device_states() {
        for free in ["NOT_INUSE", "UNKNOWN"] {
            assert_eq!(availability(Some(free)), Availability::Free, "{free}");
        }
        for busy in ["INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"] {
            assert_eq!(availability(Some(busy)), Availability::Busy, "{busy}");
        }
        for gone in ["UNAVAILABLE", "INVALID"] {
            assert_eq!(
                availability(Some(gone)),
                Availability::Unreachable,
                "{gone}"
            );
        }
        for unknown in [None, Some(""), Some("not_inuse"), Some("Idle")] {
            assert_eq!(availability(unknown), Availability::NotKnown, "{unknown:?}");
        }
    }

    #[test]
    fn options() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.stale(), Duration::from_secs(90), "2 x ring + margin");
        let args: Vec<String> = ["--tech", "IAX2", "--ring", "10", "--stale", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&args).unwrap();
        assert_eq!(
            (o.tech.as_str(), o.stale()),
            ("IAX2", Duration::from_secs(5))
        );
        for tech in ["DAHDI", "SIP", "pjsip", "Local"] {
            assert!(parse(&["--tech".into(), tech.into()]).is_err(), "{tech}");
        }
    }
}

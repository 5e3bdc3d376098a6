//! featpkg-conference-guest-watch: keeps one external guest in a ConfBridge
//! conference while employees are in it.
//!
//! Reacts to AMI events (no polling, unlike the recipe's 3 s PHP loop):
//! `ConfbridgeList` once per connection, then `ConfbridgeJoin`/`ConfbridgeLeave`.
//! When the first employee joins, it originates exactly one leg to the guest
//! (`--dial`, e.g. `PJSIP/0551234567@provider`) into `--context`, where the
//! dialplan sends the DTMF and joins the conference. Concurrent joins still give
//! one leg: this single watcher decides alone. When the last employee leaves,
//! the guest is kicked (`ConfbridgeKick`) at once. A guest leg that fails or
//! hangs up while employees remain is re-dialled with doubling delays
//! (`--backoff-ms`), at most `--attempts` times in a row.
//!
//! The guest is the participant whose channel starts with the provider's
//! channel prefix (`PJSIP/provider-`), so the watcher recognises it after its
//! own restart too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use featpkg_ami::daemon::{self, DaemonPaths, Log, Watch};
use featpkg_ami::{Ami, AmiError, Message, action};

#[derive(Debug, Clone)]
struct Options {
    conference: String,
    dial: String,
    context: String,
    attempts: u32,
    backoff: Duration,
    ring: Duration,
    paths: DaemonPaths,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        conference: String::new(),
        dial: String::new(),
        context: "featpkg-conference-guest-leg".into(),
        attempts: 5,
        backoff: Duration::from_secs(1),
        ring: Duration::from_secs(45),
        paths: DaemonPaths {
            lock: PathBuf::from("/var/spool/asterisk/featpkg/conference-guest-watch.lock"),
            ami: PathBuf::from("/etc/asterisk/featpkg-ami/conference-guest.conf"),
            log: None,
        },
    };
    let word = |v: &str, extra: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?}: not a number"))
        };
        match flag.as_str() {
            "--conference" if word(v, "") => o.conference = v.clone(),
            "--dial" if word(v, "/@-_.+") && v.contains('/') => o.dial = v.clone(),
            "--context" if word(v, "-_.") => o.context = v.clone(),
            "--attempts" => o.attempts = num()? as u32,
            "--backoff-ms" => o.backoff = Duration::from_millis(num()?),
            "--ring" => o.ring = Duration::from_secs(num()?),
            "--lock" => o.paths.lock = v.into(),
            "--ami" => o.paths.ami = v.into(),
            "--log" => o.paths.log = Some(v.into()),
            _ => return Err(format!("unknown option or bad value: {flag} {v:?}")),
        }
    }
    if o.conference.is_empty() || o.dial.is_empty() {
        return Err("--conference and --dial are required".into());
    }
    Ok(o)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Guest {
    /// No leg (and none wanted right now, or ready to dial).
    Absent,
    /// Originate sent; waiting for its OriginateResponse.
    Dialing(String),
    /// Answered (channel known), in or about to join the conference.
    Present(String),
    /// The last leg failed; next try not before this instant.
    Waiting(Instant),
}

struct Watcher {
    o: Options,
    /// `PJSIP/provider-`: how the guest's channel name starts.
    guest_prefix: String,
    employees: BTreeSet<String>,
    guest: Guest,
    failures: u32,
}

impl Watcher {
    fn new(o: Options) -> Watcher {
        // PJSIP/0551234567@provider -> PJSIP/provider-
        let (tech, rest) = o.dial.split_once('/').unwrap_or(("", ""));
        let endpoint = rest.rsplit('@').next().unwrap_or(rest);
        let guest_prefix = format!("{tech}/{endpoint}-");
        Watcher {
            o,
            guest_prefix,
            employees: BTreeSet::new(),
            guest: Guest::Absent,
            failures: 0,
        }
    }

    fn is_guest(&self, channel: &str) -> bool {
        channel.starts_with(&self.guest_prefix) || self.guest == Guest::Present(channel.to_string())
    }

    fn ours(&self, ev: &Message) -> bool {
        ev.get("Conference") == Some(self.o.conference.as_str())
    }

    fn kick(&mut self, ami: &mut Ami, channel: &str, log: &mut Log) -> Result<(), AmiError> {
        log.line(&format!(
            "last employee left conference {}; dropping the guest {channel}",
            self.o.conference
        ));
        let kick = action(
            "ConfbridgeKick",
            &[("Conference", &self.o.conference), ("Channel", channel)],
        )?;
        match ami.send(kick) {
            Ok(_) | Err(AmiError::Refused(_)) => {} // already gone
            Err(e) => return Err(e),
        }
        self.guest = Guest::Absent;
        Ok(())
    }

    fn leg_failed(&mut self, log: &mut Log) {
        self.failures += 1;
        if self.employees.is_empty() {
            self.guest = Guest::Absent;
        } else if self.failures >= self.o.attempts {
            log.line(&format!(
                "guest leg failed {} times; giving up until the conference empties",
                self.failures
            ));
            self.guest = Guest::Waiting(Instant::now() + Duration::from_secs(365 * 24 * 3600));
        } else {
            let delay = self
                .o
                .backoff
                .saturating_mul(1 << (self.failures - 1).min(6))
                .min(Duration::from_secs(60));
            log.line(&format!(
                "guest leg lost; dialling again in {} ms",
                delay.as_millis()
            ));
            self.guest = Guest::Waiting(Instant::now() + delay);
        }
    }

    fn session(
        &mut self,
        ami: &mut Ami,
        stop: &dyn Fn() -> bool,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        self.employees.clear();
        self.guest = Guest::Absent;
        match ami.list(action(
            "ConfbridgeList",
            &[("Conference", &self.o.conference)],
        )?) {
            Ok(items) => {
                for item in items {
                    let channel = item.get("Channel").unwrap_or("").to_string();
                    if self.is_guest(&channel) {
                        self.guest = Guest::Present(channel);
                    } else {
                        self.employees.insert(channel);
                    }
                }
            }
            // "No active conferences." / "No Conference by that name found."
            Err(AmiError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
        if let (true, Guest::Present(g)) = (self.employees.is_empty(), self.guest.clone()) {
            self.kick(ami, &g, log)?;
        }
        daemon::event_loop(self, ami, stop, Duration::from_millis(100), log)
    }
}

impl Watch for Watcher {
    /// Dials the guest when employees are in and no leg exists.
    fn dispatch(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        if self.employees.is_empty() {
            return Ok(());
        }
        let due = match &self.guest {
            Guest::Absent => true,
            Guest::Waiting(at) => Instant::now() >= *at,
            _ => false,
        };
        if due {
            let timeout = self.o.ring.as_millis().to_string();
            let id = ami.originate(&[
                ("Channel", &self.o.dial),
                ("Context", &self.o.context),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Timeout", &timeout),
            ])?;
            log.line(&format!(
                "dialling the guest {} for conference {}",
                self.o.dial, self.o.conference
            ));
            self.guest = Guest::Dialing(id);
        }
        Ok(())
    }

    fn on_event(&mut self, ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        let channel = ev.get("Channel").unwrap_or("").to_string();
        match ev.event() {
            Some("ConfbridgeJoin") if self.ours(ev) => {
                if self.is_guest(&channel) {
                    self.guest = Guest::Present(channel.clone());
                    self.failures = 0;
                    if self.employees.is_empty() {
                        self.kick(ami, &channel, log)?;
                    }
                } else {
                    self.employees.insert(channel);
                }
            }
            Some("ConfbridgeLeave") if self.ours(ev) => {
                if self.is_guest(&channel) {
                    if matches!(self.guest, Guest::Present(_)) {
                        self.leg_failed(log);
                    }
                } else {
                    self.employees.remove(&channel);
                    if self.employees.is_empty() {
                        self.failures = 0;
                        match self.guest.clone() {
                            Guest::Present(g) => self.kick(ami, &g, log)?,
                            Guest::Waiting(_) => self.guest = Guest::Absent,
                            _ => {}
                        }
                    }
                }
            }
            Some("OriginateResponse")
                if self.guest == Guest::Dialing(ev.get("ActionID").unwrap_or("").to_string()) =>
            {
                if ev
                    .get("Response")
                    .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
                {
                    self.guest = Guest::Present(channel);
                } else {
                    self.leg_failed(log);
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
            eprintln!("featpkg-conference-guest-watch: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let paths = o.paths.clone();
    let mut w = Watcher::new(o);
    daemon::run(
        "featpkg-conference-guest-watch",
        &paths,
        "call",
        |ami, stop, log| w.session(ami, stop, log),
    )
}

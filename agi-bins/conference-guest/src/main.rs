//! featpkg-conference-guest-watch: keeps one external guest in a ConfBridge
//! conference while employees are in it.
//!
//! Reacts to AMI events (no polling, unlike the recipe's 3 s PHP loop):
//! `ConfbridgeList` once per connection, then `ConfbridgeJoin`/`ConfbridgeLeave`.
//! When the first employee joins, it originates exactly one leg to the guest
//! (`--number` through the provider endpoint `--provider` of technology
//! `--tech`; [`Tech::dial_string`] writes each technology's own dial string)
//! into `--context`, where the dialplan sends the DTMF and joins the
//! conference. Concurrent joins still give one leg: this single watcher decides
//! alone. When the last employee leaves, the guest's channel is hung up at once
//! (AMI `Hangup`): no `ConfbridgeKick`, which would play `conf-kicked` to the
//! guest and keep the paid line up while it plays. A guest leg that fails or
//! hangs up while employees remain is re-dialled with doubling delays
//! (`--backoff-ms`), at most `--attempts` times in a row.
//!
//! The guest is the channel the watcher's own Originate produced (named by its
//! `OriginateResponse`), so an employee who dials in over the same provider
//! trunk is an employee. Only when that name is unknown — after the watcher's
//! own restart, or while a leg rings across an AMI reconnect — is the first
//! participant whose channel is one of the provider endpoint's
//! ([`Tech::is_endpoint_channel`]: `PJSIP/provider-0000000a`,
//! `IAX2/provider-1234`) taken for the guest.
//!
//! A guest leg that hangs up within [`STABLE_GUEST`] of joining counts as a
//! failed attempt, so a party that answers and drops at once is not re-dialled
//! forever. A leg whose `OriginateResponse` never comes is counted as failed
//! once the ring time and [`ORIGINATE_SLACK`] are over.
//!
//! AMI rights it needs (manager.conf): `read = call` (ConfBridge events,
//! `OriginateResponse`, `Hangup`); `write = originate` (Originate), `call`
//! (Hangup; Asterisk registers it for `system` or `call`, and `call` is the
//! narrower), `reporting` (ConfbridgeList).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use featpkg_ami::daemon::{self, DaemonPaths, Log, Watch};
use featpkg_ami::{Ami, AmiError, Message, action};

/// Channel technology of the provider endpoint. Only the ones the test suite
/// proves against a real Asterisk: PJSIP and IAX2 (not DAHDI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tech {
    Pjsip,
    Iax2,
}

impl Tech {
    /// `PJSIP` or `IAX2`, as Asterisk spells the technology.
    fn parse(name: &str) -> Option<Tech> {
        match name {
            "PJSIP" => Some(Tech::Pjsip),
            "IAX2" => Some(Tech::Iax2),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tech::Pjsip => "PJSIP",
            Tech::Iax2 => "IAX2",
        }
    }

    /// The Originate `Channel` that calls `number` through the provider
    /// endpoint `provider`. Each technology reads its dial string its own way:
    ///
    /// - PJSIP, `PJSIP/<number>@<provider>`: chan_pjsip's `request()` takes
    ///   `[user@]endpoint[/aor]`, so this is endpoint `provider` with `number`
    ///   as the request URI's user part.
    /// - IAX2, `IAX2/<provider>/<number>`: chan_iax2's `parse_dial_string()`
    ///   takes `[user[:secret]@]peer[:port][/exten[@context]]`, so this is peer
    ///   `provider`, extension `number`. (`IAX2/<number>@<provider>` would be
    ///   user `number` at peer `provider` calling extension `s`: Asterisk then
    ///   says "I don't know how to authenticate <number> to <host>".)
    fn dial_string(self, provider: &str, number: &str) -> String {
        match self {
            Tech::Pjsip => format!("PJSIP/{number}@{provider}"),
            Tech::Iax2 => format!("IAX2/{provider}/{number}"),
        }
    }

    /// Is `channel` a channel of the endpoint `provider`, as Asterisk names
    /// them: PJSIP `PJSIP/<endpoint>-<8 hex digits>` (chan_pjsip
    /// `"PJSIP/%s-%08x"`), IAX2 `IAX2/<peer>-<call number>` (chan_iax2
    /// `"IAX2/%s-%d"`). The suffix is checked too, so the endpoint
    /// `provider-b`'s channels are not `provider`'s.
    fn is_endpoint_channel(self, provider: &str, channel: &str) -> bool {
        let Some(suffix) = channel
            .strip_prefix(self.name())
            .and_then(|c| c.strip_prefix('/'))
            .and_then(|c| c.strip_prefix(provider))
            .and_then(|c| c.strip_prefix('-'))
        else {
            return false;
        };
        match self {
            Tech::Pjsip => suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
            Tech::Iax2 => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    conference: String,
    tech: Tech,
    /// The provider (trunk) endpoint: a PJSIP endpoint or an IAX2 peer.
    provider: String,
    /// The guest's number: digits, optionally after one `+`.
    number: String,
    context: String,
    attempts: u32,
    backoff: Duration,
    ring: Duration,
    paths: DaemonPaths,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        conference: String::new(),
        tech: Tech::Pjsip,
        provider: String::new(),
        number: String::new(),
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
    let number = |v: &str| {
        let digits = v.strip_prefix('+').unwrap_or(v);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let mut tech = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?}: not a number"))
        };
        match flag.as_str() {
            "--conference" if word(v, "") => o.conference = v.clone(),
            "--tech" => {
                tech = Some(
                    Tech::parse(v).ok_or_else(|| format!("--tech {v:?}: must be PJSIP or IAX2"))?,
                )
            }
            // No '/', '@' or ':': they would change what the dial string means.
            "--provider" if word(v, "-_.") => o.provider = v.clone(),
            "--number" if number(v) => o.number = v.clone(),
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
    match tech {
        Some(t) if !o.conference.is_empty() && !o.provider.is_empty() && !o.number.is_empty() => {
            o.tech = t;
            Ok(o)
        }
        _ => Err("--conference, --tech, --provider and --number are required".into()),
    }
}

/// A guest who stayed this long had a working leg: losing it later starts the
/// count of failed attempts afresh.
const STABLE_GUEST: Duration = Duration::from_secs(30);

/// How long after the ring time an `OriginateResponse` may still come.
const ORIGINATE_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Guest {
    /// No leg (and none wanted right now, or ready to dial).
    Absent,
    /// Originate sent (ActionID); its OriginateResponse is due by `until`.
    Dialing { id: String, until: Instant },
    /// Answered: the leg's channel, and since when it is in the conference.
    Present {
        channel: String,
        joined: Option<Instant>,
    },
    /// The last leg failed; next try not before this instant.
    Waiting(Instant),
}

struct Watcher {
    o: Options,
    /// The Originate `Channel` of the guest leg ([`Tech::dial_string`]).
    dial: String,
    employees: BTreeSet<String>,
    guest: Guest,
    failures: u32,
    /// Guest legs we hung up, until their Hangup event: their
    /// ConfbridgeLeave may still come, and they are not employees.
    dropped: BTreeSet<String>,
    /// A first session ran: a leg of ours placed before is known by name.
    started: bool,
}

impl Watcher {
    fn new(o: Options) -> Watcher {
        let dial = o.tech.dial_string(&o.provider, &o.number);
        Watcher {
            o,
            dial,
            employees: BTreeSet::new(),
            guest: Guest::Absent,
            failures: 0,
            dropped: BTreeSet::new(),
            started: false,
        }
    }

    /// Is `channel` one of the provider endpoint's channels?
    fn on_provider(&self, channel: &str) -> bool {
        self.o.tech.is_endpoint_channel(&self.o.provider, channel)
    }

    /// Is `channel` our guest leg? By name when we know it; by the provider
    /// endpoint only while a leg of ours rings with its name unknown.
    fn is_guest(&self, channel: &str) -> bool {
        match &self.guest {
            Guest::Present { channel: c, .. } => c == channel,
            Guest::Dialing { .. } => self.on_provider(channel),
            _ => false,
        }
    }

    /// A listed participant on the provider's trunk is taken for our leg only
    /// when its name is unknown: at our own first start (a leg placed before
    /// a restart), or while our leg rang across a reconnect.
    fn may_be_our_unnamed_leg(&self, channel: &str) -> bool {
        let unnamed = match self.guest {
            Guest::Dialing { .. } => true,
            Guest::Absent => !self.started,
            _ => false,
        };
        unnamed && self.on_provider(channel)
    }

    fn ours(&self, ev: &Message) -> bool {
        ev.get("Conference") == Some(self.o.conference.as_str())
    }

    /// Drops the guest leg at once: AMI `Hangup` of its channel, in the
    /// conference or not yet (answered, hearing the DTMF). Not
    /// `ConfbridgeKick`: ConfBridge would play `conf-kicked` to the guest
    /// first, the paid line up all the while.
    fn drop_guest(&mut self, ami: &mut Ami, channel: &str, log: &mut Log) -> Result<(), AmiError> {
        log.line(&format!(
            "no employee in conference {}; hanging up the guest {channel}",
            self.o.conference
        ));
        // Cause 16: normal clearing, what the provider is told.
        let hangup = action("Hangup", &[("Channel", channel), ("Cause", "16")])?;
        match ami.send(hangup) {
            Ok(_) => {}
            // "No such channel": the guest is gone already.
            Err(AmiError::Refused(why)) => log.line(&format!("guest {channel}: {why}")),
            Err(e) => return Err(e),
        }
        self.dropped.insert(channel.to_string());
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

    /// The conference as Asterisk lists it now, after (re)connecting. A leg of
    /// ours that was ringing or answered stays ours (exactly one leg).
    fn read_conference(&mut self, ami: &mut Ami) -> Result<Vec<String>, AmiError> {
        match ami.list(action(
            "ConfbridgeList",
            &[("Conference", &self.o.conference)],
        )?) {
            Ok(items) => Ok(items
                .iter()
                .map(|i| i.get("Channel").unwrap_or("").to_string())
                .collect()),
            // "No active conferences." / "No Conference by that name found."
            Err(AmiError::Refused(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn session(
        &mut self,
        ami: &mut Ami,
        stop: &dyn Fn() -> bool,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        let channels = self.read_conference(ami)?;
        self.employees.clear();
        // A leg we hung up that is no longer listed is gone: its Hangup event
        // may have come while we were away.
        self.dropped.retain(|c| channels.contains(c));
        let mut guest_seen = false;
        for channel in channels {
            if !guest_seen && self.may_be_our_unnamed_leg(&channel) {
                self.guest = Guest::Present {
                    channel: channel.clone(),
                    joined: None,
                };
            }
            if self.is_guest(&channel) {
                guest_seen = true;
                if let Guest::Present { joined, .. } = &mut self.guest {
                    joined.get_or_insert_with(Instant::now);
                }
            } else if !self.dropped.contains(&channel) {
                self.employees.insert(channel);
            }
        }
        self.started = true;
        // A guest that was in and is gone left while we were away.
        if !guest_seen
            && matches!(
                self.guest,
                Guest::Present {
                    joined: Some(_),
                    ..
                }
            )
        {
            self.leg_failed(log);
        }
        if self.employees.is_empty() {
            self.no_employees_left(ami, log)?;
        }
        daemon::event_loop(self, ami, stop, Duration::from_millis(100), log)
    }

    /// Nobody of ours is in the conference: the guest goes (a re-dial that
    /// was waiting is called off) and the re-dial count starts afresh.
    fn no_employees_left(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        self.failures = 0;
        match self.guest.clone() {
            Guest::Present { channel, .. } => self.drop_guest(ami, &channel, log),
            Guest::Waiting(_) => {
                self.guest = Guest::Absent;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_join(&mut self, ami: &mut Ami, channel: String, log: &mut Log) -> Result<(), AmiError> {
        if self.is_guest(&channel) {
            self.guest = Guest::Present {
                channel: channel.clone(),
                joined: Some(Instant::now()),
            };
            if self.employees.is_empty() {
                self.drop_guest(ami, &channel, log)?;
            }
        } else if !self.dropped.contains(&channel) {
            self.employees.insert(channel);
        }
        Ok(())
    }

    fn on_leave(&mut self, ami: &mut Ami, channel: String, log: &mut Log) -> Result<(), AmiError> {
        // The guest we hung up leaving: forgotten at its Hangup event.
        if self.dropped.contains(&channel) {
            return Ok(());
        }
        // An employee is one, even on the provider's trunk while a leg rings.
        if !self.employees.contains(&channel) && self.is_guest(&channel) {
            // A guest who stayed a while had a working leg: count afresh.
            let stayed = matches!(self.guest, Guest::Present { joined: Some(since), .. }
                if since.elapsed() >= STABLE_GUEST);
            if stayed {
                self.failures = 0;
            }
            self.leg_failed(log);
            return Ok(());
        }
        self.employees.remove(&channel);
        if self.employees.is_empty() {
            self.no_employees_left(ami, log)?;
        }
        Ok(())
    }

    /// A guest leg that answered but hung up before it joined (during the
    /// DTMF) has no ConfbridgeLeave: its Hangup event tells.
    fn on_hangup(&mut self, channel: String, log: &mut Log) {
        if self.dropped.remove(&channel) {
            return;
        }
        if self.guest
            == (Guest::Present {
                channel,
                joined: None,
            })
        {
            self.leg_failed(log);
        }
    }

    fn on_originate_response(
        &mut self,
        ami: &mut Ami,
        ev: &Message,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        let answered = ev
            .get("Response")
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        if !answered {
            self.leg_failed(log);
            return Ok(());
        }
        let channel = ev.get("Channel").unwrap_or("").to_string();
        self.guest = Guest::Present {
            channel: channel.clone(),
            joined: None,
        };
        if self.employees.is_empty() {
            self.drop_guest(ami, &channel, log)?;
        }
        Ok(())
    }
}

impl Watch for Watcher {
    /// Dials the guest when employees are in and no leg exists; gives up on a
    /// leg whose outcome did not come in time.
    fn dispatch(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        let overdue = matches!(self.guest, Guest::Dialing { until, .. } if Instant::now() >= until);
        if overdue {
            log.line("no outcome for the guest leg within the ring time");
            self.leg_failed(log);
        }
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
            let sent = ami.originate(&[
                ("Channel", &self.dial),
                ("Context", &self.o.context),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Timeout", &timeout),
            ]);
            let id = match sent {
                Ok(id) => id,
                // Asterisk refused this leg ("Originate failed"): a failed
                // attempt, not a lost connection.
                Err(AmiError::Refused(why)) => {
                    log.line(&format!("Asterisk refused the guest leg: {why}"));
                    self.leg_failed(log);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            log.line(&format!(
                "dialling the guest {} for conference {}",
                self.dial, self.o.conference
            ));
            let until = Instant::now() + self.o.ring + ORIGINATE_SLACK;
            self.guest = Guest::Dialing { id, until };
        }
        Ok(())
    }

    fn on_event(&mut self, ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        let channel = ev.get("Channel").unwrap_or("").to_string();
        match ev.event() {
            Some("ConfbridgeJoin") if self.ours(ev) => self.on_join(ami, channel, log),
            Some("ConfbridgeLeave") if self.ours(ev) => self.on_leave(ami, channel, log),
            Some("Hangup") => {
                self.on_hangup(channel, log);
                Ok(())
            }
            Some("OriginateResponse")
                if matches!(&self.guest, Guest::Dialing { id, .. }
                    if ev.get("ActionID") == Some(id.as_str())) =>
            {
                self.on_originate_response(ami, ev, log)
            }
            _ => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pjsip_dials_the_number_as_the_user_part_at_the_provider_endpoint() {
        assert_eq!(
            Tech::Pjsip.dial_string("provider", "5551234"),
            "PJSIP/5551234@provider"
        );
    }

    #[test]
    fn iax2_dials_the_number_as_the_extension_at_the_provider_peer() {
        // Not IAX2/5551234@provider: that is user 5551234 at peer provider,
        // extension s, which Asterisk cannot authenticate.
        assert_eq!(
            Tech::Iax2.dial_string("provider", "5551234"),
            "IAX2/provider/5551234"
        );
    }

    #[test]
    fn the_watcher_dials_what_its_flags_name() {
        for (tech, dial) in [
            ("PJSIP", "PJSIP/0551234567@trunk.1"),
            ("IAX2", "IAX2/trunk.1/0551234567"),
        ] {
            let o = parse(&args(&[
                "--conference",
                "700",
                "--tech",
                tech,
                "--provider",
                "trunk.1",
                "--number",
                "0551234567",
            ]))
            .unwrap();
            assert_eq!(Watcher::new(o).dial, dial);
        }
    }

    #[test]
    fn a_provider_endpoint_channel_is_named_per_technology() {
        let pjsip = Tech::Pjsip;
        assert!(pjsip.is_endpoint_channel("provider", "PJSIP/provider-0000000a"));
        assert!(!pjsip.is_endpoint_channel("provider", "PJSIP/provider-b-0000000a"));
        assert!(!pjsip.is_endpoint_channel("provider", "PJSIP/provider-0000000"));
        assert!(!pjsip.is_endpoint_channel("provider", "IAX2/provider-1234"));
        assert!(!pjsip.is_endpoint_channel("provider", "PJSIP/201-0000000a"));
        let iax2 = Tech::Iax2;
        assert!(iax2.is_endpoint_channel("provider", "IAX2/provider-1234"));
        assert!(iax2.is_endpoint_channel("provider", "IAX2/provider-7"));
        assert!(!iax2.is_endpoint_channel("provider", "IAX2/provider-b-1234"));
        assert!(!iax2.is_endpoint_channel("provider", "IAX2/provider-"));
        assert!(!iax2.is_endpoint_channel("provider", "PJSIP/provider-0000000a"));
    }

    #[test]
    fn tech_provider_and_number_are_required_and_checked() {
        let base = [
            "--conference",
            "700",
            "--tech",
            "IAX2",
            "--provider",
            "provider",
            "--number",
            "+4930123",
        ];
        assert!(parse(&args(&base)).is_ok());
        for missing in ["--tech", "--provider", "--number"] {
            let at = base.iter().position(|a| *a == missing).unwrap();
            let mut without = base.to_vec();
            without.drain(at..at + 2);
            let e = parse(&args(&without)).unwrap_err();
            assert_eq!(
                e, "--conference, --tech, --provider and --number are required",
                "{missing}"
            );
        }
        for (flag, bad) in [
            ("--tech", "DAHDI"),
            ("--tech", "pjsip"),
            ("--provider", "a/b"),
            ("--provider", "me@provider"),
            ("--provider", "provider:4569"),
            ("--number", "555 1234"),
            ("--number", "5551234@x"),
            ("--number", "+"),
        ] {
            let mut with = base.to_vec();
            let at = with.iter().position(|a| *a == flag).unwrap();
            with[at + 1] = bad;
            assert!(parse(&args(&with)).is_err(), "{flag} {bad}");
        }
        // The old form, which dialled IAX2 wrongly, is gone.
        let mut old = base.to_vec();
        old.extend(["--dial", "IAX2/5551234@provider"]);
        assert!(parse(&args(&old)).is_err());
    }
}

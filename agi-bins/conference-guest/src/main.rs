//! featpkg-conference-guest-watch: keeps one external guest in a ConfBridge
//! conference while employees are in it.
//!
//! Reacts to AMI events (no polling, unlike the recipe's 3 s PHP loop):
//! `ConfbridgeList` once per connection, then `ConfbridgeJoin`/`ConfbridgeLeave`.
//! When the first employee joins, it originates exactly one leg to the guest
//! (`--number` through the provider endpoint `--provider` of technology
//! `--tech`; [`Tech::dial_string`] writes each technology's own dial string)
//! into `--context`. Concurrent joins still give one leg: this single watcher
//! decides alone.
//!
//! The provider channel never enters ConfBridge itself. The leg context bridges
//! it (`Dial(Local/join@<context>/n)`) to a Local channel whose other half,
//! `Local/join@<context>-XXXXXXXX;2`, answers, sends the DTMF and joins the
//! conference: that is the guest's participant ([`is_member`]). When the last
//! employee leaves, the watcher hangs up (AMI `Hangup`) the Local half bridged
//! to the provider channel (`…;1`), which ends the provider channel's `Dial`
//! and so its line; a leg that answered but has not joined yet (still hearing
//! the DTMF) is hung up by its provider channel's name, from its
//! `OriginateResponse`. Either way the paid line is released in milliseconds.
//! The last channel out of a ConfBridge conference waits inside ConfBridge
//! until every sound queued for the conference has played (each participant
//! leaving queues its leave sound: on a real Asterisk, three employees hanging
//! up together kept a guest that was in ConfBridge itself on the line 1.14 s);
//! that wait is now the Local channel's, not the provider's. No
//! `ConfbridgeKick` either: ConfBridge would play `conf-kicked` first.
//!
//! A participant is the guest by its name alone: an employee who dials in over
//! the same provider trunk is an employee, before and after a restart.
//!
//! A guest leg that fails or hangs up while employees remain is re-dialled
//! with doubling delays (`--backoff-ms`), at most `--attempts` times in a row.
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
use featpkg_ami::wake::Wakeups;
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

/// The extension of the leg context that the provider channel's
/// `Dial(Local/join@<context>/n)` reaches: it joins the conference
/// (extensions.conf of the feature).
const JOIN_EXTEN: &str = "join";

/// Is `channel` a guest leg's participant: the Local channel half that runs
/// `join@<context>`, named `Local/join@<context>-<8 hex digits>;2` (core_local
/// `"Local/%s@%s-%08x"`, `;2` the half that runs the dialplan)?
fn is_member(context: &str, channel: &str) -> bool {
    channel
        .strip_prefix("Local/")
        .and_then(|c| c.strip_prefix(JOIN_EXTEN))
        .and_then(|c| c.strip_prefix('@'))
        .and_then(|c| c.strip_prefix(context))
        .and_then(|c| c.strip_prefix('-'))
        .and_then(|c| c.strip_suffix(";2"))
        .is_some_and(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The Local half bridged to the provider channel, for a participant `member`:
/// hanging it up ends the provider channel's `Dial`, and so its line.
fn provider_side_of(member: &str) -> String {
    format!("{};1", member.strip_suffix(";2").unwrap_or(member))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Guest {
    /// No leg (and none wanted right now, or ready to dial).
    Absent,
    /// Originate sent (ActionID); its OriginateResponse is due by `until`.
    Dialing { id: String, until: Instant },
    /// Answered. `line`: the provider channel (from the OriginateResponse;
    /// unknown for a leg found in the conference after a restart). `member`:
    /// its participant in the conference once it joined, and since when.
    Present {
        line: Option<String>,
        member: Option<(String, Instant)>,
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
    /// The ActionID of the last Originate: its OriginateResponse names the
    /// provider channel, even when the leg joined first.
    last_id: Option<String>,
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
            last_id: None,
        }
    }

    fn is_member(&self, channel: &str) -> bool {
        is_member(&self.o.context, channel)
    }

    /// The participant of the guest leg we keep, if it is in.
    fn member(&self) -> Option<&str> {
        match &self.guest {
            Guest::Present {
                member: Some((m, _)),
                ..
            } => Some(m),
            _ => None,
        }
    }

    fn ours(&self, ev: &Message) -> bool {
        ev.get("Conference") == Some(self.o.conference.as_str())
    }

    /// Hangs up `channel` (AMI `Hangup`, cause 16: normal clearing, what the
    /// provider is told); a channel already gone is no error.
    fn hang_up(ami: &mut Ami, channel: &str, log: &mut Log) -> Result<(), AmiError> {
        let hangup = action("Hangup", &[("Channel", channel), ("Cause", "16")])?;
        match ami.send(hangup) {
            Ok(_) => Ok(()),
            // "No such channel": the guest is gone already.
            Err(AmiError::Refused(why)) => {
                log.line(&format!("guest {channel}: {why}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Drops the guest leg at once: AMI `Hangup` of the Local half bridged
    /// to its provider channel once it is in the conference (the participant
    /// itself names it, whoever placed the leg), or of the provider channel
    /// while it is answered but not in yet (hearing the DTMF). Not
    /// `ConfbridgeKick`: ConfBridge would play `conf-kicked` to the guest
    /// first, the paid line up all the while.
    fn drop_guest(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        let Guest::Present { line, member } = std::mem::replace(&mut self.guest, Guest::Absent)
        else {
            return Ok(());
        };
        let target = match (member, line) {
            (Some((member, _)), _) => provider_side_of(&member),
            (None, Some(line)) => line,
            (None, None) => return Ok(()),
        };
        log.line(&format!(
            "no employee in conference {}; hanging up the guest {target}",
            self.o.conference
        ));
        Self::hang_up(ami, &target, log)
    }

    /// A participant of a guest leg that is not the one we keep (two legs:
    /// one placed before a restart of ours joined late): its line goes.
    fn drop_extra(&mut self, ami: &mut Ami, member: &str, log: &mut Log) -> Result<(), AmiError> {
        let target = provider_side_of(member);
        log.line(&format!(
            "a second guest leg {member} in conference {}; hanging up {target}",
            self.o.conference
        ));
        Self::hang_up(ami, &target, log)
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

    /// The conference's participants as Asterisk lists them now.
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

    /// After (re)connecting: the conference as listed now. A leg of ours that
    /// was ringing or answered stays ours (exactly one leg); a guest leg in
    /// the conference that we do not know (placed before our restart) is
    /// taken for ours.
    fn session(
        &mut self,
        ami: &mut Ami,
        wake: &mut Wakeups,
        log: &mut Log,
    ) -> Result<(), AmiError> {
        let channels = self.read_conference(ami)?;
        let (members, employees): (Vec<String>, Vec<String>) =
            channels.into_iter().partition(|c| self.is_member(c));
        self.employees = employees.into_iter().collect();
        match self.member().map(str::to_string) {
            // Still in.
            Some(m) if members.contains(&m) => {}
            // It was in and left while we were away.
            Some(_) => self.leg_failed(log),
            None => {}
        }
        for m in &members {
            if self.member() == Some(m.as_str()) {
                continue;
            }
            match &mut self.guest {
                // Ours, answered (or ringing) before and joined meanwhile.
                Guest::Present {
                    member: slot @ None,
                    ..
                } => {
                    *slot = Some((m.clone(), Instant::now()));
                }
                Guest::Present {
                    member: Some(_), ..
                } => self.drop_extra(ami, m, log)?,
                Guest::Dialing { .. } | Guest::Absent | Guest::Waiting(_) => {
                    self.guest = Guest::Present {
                        line: None,
                        member: Some((m.clone(), Instant::now())),
                    };
                }
            }
        }
        if self.employees.is_empty() {
            self.no_employees_left(ami, log)?;
        }
        daemon::event_loop(self, ami, wake, log)
    }

    /// Nobody of ours is in the conference: the guest goes (a re-dial that
    /// was waiting is called off) and the re-dial count starts afresh.
    fn no_employees_left(&mut self, ami: &mut Ami, log: &mut Log) -> Result<(), AmiError> {
        self.failures = 0;
        match self.guest {
            Guest::Present { .. } => self.drop_guest(ami, log),
            Guest::Waiting(_) => {
                self.guest = Guest::Absent;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_join(&mut self, ami: &mut Ami, channel: String, log: &mut Log) -> Result<(), AmiError> {
        if !self.is_member(&channel) {
            self.employees.insert(channel);
            return Ok(());
        }
        match &mut self.guest {
            Guest::Present {
                member: slot @ None,
                ..
            } => {
                *slot = Some((channel, Instant::now()));
            }
            Guest::Present {
                member: Some((m, _)),
                ..
            } if *m == channel => {}
            Guest::Present {
                member: Some(_), ..
            } => {
                return self.drop_extra(ami, &channel, log);
            }
            // Ours joining before its OriginateResponse came, or a leg placed
            // before our restart: the guest.
            Guest::Dialing { .. } | Guest::Absent | Guest::Waiting(_) => {
                self.guest = Guest::Present {
                    line: None,
                    member: Some((channel, Instant::now())),
                };
            }
        }
        if self.employees.is_empty() {
            self.drop_guest(ami, log)?;
        }
        Ok(())
    }

    fn on_leave(&mut self, ami: &mut Ami, channel: String, log: &mut Log) -> Result<(), AmiError> {
        if self.is_member(&channel) {
            // Our guest left (a leg we hung up, or an extra one, is no longer
            // the one we keep).
            if let Guest::Present {
                member: Some((m, since)),
                ..
            } = &self.guest
                && *m == channel
            {
                // A guest who stayed a while had a working leg: count afresh.
                if since.elapsed() >= STABLE_GUEST {
                    self.failures = 0;
                }
                self.leg_failed(log);
            }
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
    fn on_hangup(&mut self, channel: &str, log: &mut Log) {
        if let Guest::Present {
            line: Some(line),
            member: None,
        } = &self.guest
            && line == channel
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
        let channel = ev.get("Channel").unwrap_or("").to_string();
        match &mut self.guest {
            Guest::Dialing { .. } if !answered => {
                self.leg_failed(log);
                return Ok(());
            }
            Guest::Dialing { .. } => {
                self.guest = Guest::Present {
                    line: Some(channel),
                    member: None,
                };
            }
            // It joined before this came: now its line is known.
            Guest::Present {
                line: line @ None, ..
            } if answered => *line = Some(channel),
            _ => return Ok(()),
        }
        if self.employees.is_empty() {
            self.drop_guest(ami, log)?;
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
            self.last_id = Some(id.clone());
            self.guest = Guest::Dialing { id, until };
        }
        Ok(())
    }

    /// When a leg's outcome is overdue, or a re-dial is due while employees
    /// are in; otherwise only events give the watcher work.
    fn deadline(&self) -> Option<Instant> {
        match self.guest {
            Guest::Dialing { until, .. } => Some(until),
            Guest::Waiting(at) if !self.employees.is_empty() => Some(at),
            _ => None,
        }
    }

    fn on_event(&mut self, ami: &mut Ami, ev: &Message, log: &mut Log) -> Result<(), AmiError> {
        let channel = ev.get("Channel").unwrap_or("").to_string();
        match ev.event() {
            Some("ConfbridgeJoin") if self.ours(ev) => self.on_join(ami, channel, log),
            Some("ConfbridgeLeave") if self.ours(ev) => self.on_leave(ami, channel, log),
            Some("Hangup") => {
                self.on_hangup(&channel, log);
                Ok(())
            }
            Some("OriginateResponse")
                if self.last_id.is_some() && ev.get("ActionID") == self.last_id.as_deref() =>
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
        |ami, wake, log| w.session(ami, wake, log),
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
    fn the_guest_is_the_local_half_that_runs_the_join_extension() {
        let ctx = "featpkg-conference-guest-leg";
        assert!(is_member(
            ctx,
            "Local/join@featpkg-conference-guest-leg-0000000a;2"
        ));
        for not in [
            // The half bridged to the provider channel, not in ConfBridge.
            "Local/join@featpkg-conference-guest-leg-0000000a;1",
            // Someone else's Local channels.
            "Local/join@featpkg-conference-guest-leg-x-0000000a;2",
            "Local/700@internal-0000000a;2",
            "Local/join@featpkg-conference-guest-leg-000000a;2",
            // The provider's own channels: an employee calling in over the trunk.
            "PJSIP/provider-0000000a",
            "IAX2/provider-1234",
            "PJSIP/201-00000001",
        ] {
            assert!(!is_member(ctx, not), "{not}");
        }
        assert_eq!(
            provider_side_of("Local/join@featpkg-conference-guest-leg-0000000a;2"),
            "Local/join@featpkg-conference-guest-leg-0000000a;1"
        );
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

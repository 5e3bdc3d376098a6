//! One FastAGI call: the environment block read under its own deadline and
//! caps, the request path (`agi_network_script`) routed to a feature's
//! [`Route`], the program run exactly as its per-call program runs it, and its
//! end reported to Asterisk:
//!
//! * the program ran (whatever its result): `SET VARIABLE FEATPKG_AGI_SERVED 1`
//!   ([`SERVED_VARIABLE`]), so the dialplan does not run the per-call program
//!   again;
//! * it ended as a per-call program ending with a non-zero status would
//!   (bad arguments, an error): a `FAILURE` line, which res_agi.c reads as a
//!   program that could not run, so AGISTATUS is FAILURE as in process mode;
//! * nothing was served (an environment block no per-call program would
//!   accept, an unknown path, a `dir=` outside the server's spool): a
//!   `FAILURE` line and no marker, so the dialplan falls back to the per-call
//!   program.
//!
//! Then our side of the socket is shut and Asterisk's `HANGUP` and close are
//! read, so the socket never ends in a reset that could cost the last line.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use featpkg_agi::{Agi, AgiError, Ending, Hangup, Route, Session, Watchdog, escape_for_log};

use crate::stream::{BoundedStream, StreamControl};

/// The channel variable a served call sets; the dialplan runs the per-call
/// program when it is not `1` after `AGI(agi://…)`.
pub const SERVED_VARIABLE: &str = "FEATPKG_AGI_SERVED";

/// The line res_agi.c takes as "the program could not run": AGISTATUS=FAILURE.
pub const FAILURE_LINE: &[u8] = b"FAILURE\n";

/// Bounds on one call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole environment block must arrive within this.
    pub env_deadline: Duration,
    /// Longest line accepted from Asterisk, in bytes.
    pub max_line: usize,
    /// Largest environment block, in bytes.
    pub max_env: usize,
    /// No call holds its connection longer than this, however it goes.
    pub max_call: Duration,
    /// Longest wait to hand Asterisk one line.
    pub write_timeout: Duration,
    /// Where every `dir=` argument must point (at or under it).
    pub spool: std::path::PathBuf,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Asterisk writes the block as soon as it is connected.
            env_deadline: Duration::from_secs(2),
            // Asterisk's own command buffer is 8 KiB; replies are shorter.
            max_line: 16 * 1024,
            max_env: 64 * 1024,
            // operator-alert's longest recording is 10 minutes.
            max_call: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(5),
            spool: "/var/spool/asterisk/featpkg".into(),
        }
    }
}

/// How a call went, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// The program ran; its ending.
    Served {
        /// The route's name.
        program: &'static str,
        /// How it ended.
        ending: Ending,
    },
    /// Nothing was served; why, in words (already escaped).
    Refused(String),
}

/// Serves one accepted connection to its end.
pub fn serve(stream: TcpStream, routes: &[Route], limits: &Limits) -> CallEnd {
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let Ok(raw) = stream.try_clone() else {
        return CallEnd::Refused("cannot use the socket".into());
    };
    let end = match open_session(stream, limits, started) {
        Ok((mut agi, control)) => serve_session(&mut agi, &control, &raw, routes, limits),
        Err(why) => {
            let _ = (&raw).write_all(FAILURE_LINE);
            CallEnd::Refused(why)
        }
    };
    close_gently(&raw, Duration::from_millis(500));
    end
}

/// Reads the environment block under the call's limits.
fn open_session(
    stream: TcpStream,
    limits: &Limits,
    started: Instant,
) -> Result<(Session, StreamControl), String> {
    let dog = Watchdog::passive();
    let hangup = Hangup::default();
    let writer = BufWriter::new(stream.try_clone().map_err(|e| e.to_string())?);
    let (bounded, control) = BoundedStream::new(
        stream,
        dog.clone(),
        hangup.clone(),
        started + limits.max_call,
        limits.max_line,
        limits.max_env,
    );
    dog.arm(limits.env_deadline);
    let reader: Box<dyn std::io::BufRead> = Box::new(BufReader::new(bounded));
    let writer: Box<dyn Write> = Box::new(writer);
    let agi = Agi::new(reader, writer).map_err(|e| match e {
        AgiError::Io(io) => format!("environment block: {io}"),
        other => format!("environment block: {other}"),
    })?;
    dog.disarm();
    control.lift_budget();
    let agi = agi.with_watchdog(dog, featpkg_agi::program::DEFAULT_DEADLINE, hangup);
    Ok((agi, control))
}

/// Routes and runs the call, then tells Asterisk how it went.
fn serve_session(
    agi: &mut Session,
    control: &StreamControl,
    raw: &TcpStream,
    routes: &[Route],
    limits: &Limits,
) -> CallEnd {
    let path = agi.env().get("agi_network_script").unwrap_or("");
    let Some(route) = routes.iter().find(|r| r.name == path) else {
        let _ = (&*raw).write_all(FAILURE_LINE);
        return CallEnd::Refused(format!("no program {:?}", escape_for_log(path, 40)));
    };
    if let Some(dir) = dir_outside(&agi.env().args(), &limits.spool) {
        let _ = (&*raw).write_all(FAILURE_LINE);
        return CallEnd::Refused(format!(
            "{}: dir={:?} is not under {}",
            route.name,
            escape_for_log(&dir, 60),
            limits.spool.display()
        ));
    }
    let ending = route.serve(agi);
    let _ = (&*raw).write_all(&last_lines(control.broken(), &ending));
    CallEnd::Served {
        program: route.name,
        ending,
    }
}

/// What ends a call the program ran: the marker, unless the stream already
/// failed (Asterisk stopped answering: the per-call program's watchdog would
/// have ended it with a non-zero status), then a `FAILURE` line unless the
/// program ended as a zero exit status would.
///
/// The marker's reply is not waited for: Asterisk runs the commands it
/// reads in order, so it sets the variable, then reads our shut side as the
/// end of the call without one more round trip through this thread;
/// [`close_gently`] reads the reply.
fn last_lines(broken: bool, ending: &Ending) -> Vec<u8> {
    let mut lines = Vec::new();
    if !broken {
        lines.extend_from_slice(format!("SET VARIABLE \"{SERVED_VARIABLE}\" \"1\"\n").as_bytes());
    }
    if broken || *ending != Ending::Done {
        lines.extend_from_slice(FAILURE_LINE);
    }
    lines
}

/// The first `dir=` argument that is not `spool` or under it. Any local user
/// can reach 127.0.0.1; unlike the dialplan, they must not choose where the
/// server (often root) writes and deletes files.
fn dir_outside(args: &[&str], spool: &Path) -> Option<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("dir="))
        .find(|dir| {
            let dir = Path::new(dir);
            !dir.starts_with(spool) || dir.components().any(|c| c.as_os_str() == "..")
        })
        .map(str::to_string)
}

/// Shuts our side, then reads what Asterisk still sends (its `HANGUP` line)
/// until it closes or `wait` passes: closing with unread data would reset
/// the connection, and a reset may lose our last line before Asterisk reads it.
pub fn close_gently(stream: &TcpStream, wait: Duration) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + wait;
    let mut sink = [0u8; 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

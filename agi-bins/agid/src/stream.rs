//! The socket side of one FastAGI call, bounded the way a per-call program's
//! watchdog bounds it: every read waits at most until the session's current
//! deadline ([`Watchdog::remaining`]: the environment block's, then each
//! reply's), never beyond the call's own end, and at most 80 ms once the
//! channel hung up. A peer that sends nothing, or one byte at a time to
//! keep resetting a per-read timeout (slow loris), meets the same deadline.
//! Lines are capped, and so is the environment block, so no peer can make
//! the server hold more than a few kilobytes for it.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use featpkg_agi::{Hangup, Watchdog};

/// What a hangup leaves a session, as for a per-call program (then out within 100 ms).
const AFTER_HANGUP: Duration = Duration::from_millis(80);

/// A FastAGI socket read under deadlines and size caps.
pub struct BoundedStream {
    stream: TcpStream,
    dog: Watchdog,
    hangup: Hangup,
    hangup_seen: Option<Instant>,
    call_end: Instant,
    max_line: usize,
    line_len: usize,
    /// Bytes still allowed before [`BoundedStream::lift_budget`]: the
    /// environment block's cap. Shared: the session owns the stream.
    budget: Arc<AtomicUsize>,
    /// Set once a read failed or ended: later reads fail at once instead of
    /// waiting a fresh deadline on a peer already given up on.
    broken: Arc<AtomicBool>,
}

/// The session's owner's hold on its [`BoundedStream`], which the session owns.
#[derive(Debug, Clone)]
pub struct StreamControl {
    budget: Arc<AtomicUsize>,
    broken: Arc<AtomicBool>,
}

impl StreamControl {
    /// Lifts the environment block's cap once it is read; replies are
    /// bounded by the line cap.
    pub fn lift_budget(&self) {
        self.budget.store(usize::MAX, Ordering::SeqCst);
    }

    /// True once a read failed (a deadline, a cap) or the peer closed: the
    /// call is over, nothing more may be sent.
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

impl BoundedStream {
    /// Reads `stream` until `call_end` at the latest, each line at most
    /// `max_line` bytes, the first `budget` bytes (the environment block)
    /// before [`StreamControl::lift_budget`].
    pub fn new(
        stream: TcpStream,
        dog: Watchdog,
        hangup: Hangup,
        call_end: Instant,
        max_line: usize,
        budget: usize,
    ) -> (BoundedStream, StreamControl) {
        let budget = Arc::new(AtomicUsize::new(budget));
        let broken = Arc::new(AtomicBool::new(false));
        let bounded = BoundedStream {
            stream,
            dog,
            hangup,
            hangup_seen: None,
            call_end,
            max_line,
            line_len: 0,
            budget: budget.clone(),
            broken: broken.clone(),
        };
        (bounded, StreamControl { budget, broken })
    }

    /// The instant the current read must be done by.
    fn until(&mut self, now: Instant) -> Instant {
        let mut until = self.call_end;
        if let Some(left) = self.dog.remaining() {
            until = until.min(now + left);
        }
        if self.hangup.is_set() {
            until = until.min(*self.hangup_seen.get_or_insert(now) + AFTER_HANGUP);
        }
        until
    }

    fn fail(&mut self, kind: io::ErrorKind, why: String) -> io::Error {
        self.broken.store(true, Ordering::SeqCst);
        io::Error::new(kind, why)
    }

    /// Counts `bytes` against the line cap and the budget.
    fn account(&mut self, bytes: &[u8]) -> io::Result<()> {
        let left = self.budget.load(Ordering::SeqCst);
        if left != usize::MAX {
            if bytes.len() > left {
                return Err(self.fail(
                    io::ErrorKind::InvalidData,
                    "environment block too large".into(),
                ));
            }
            self.budget.store(left - bytes.len(), Ordering::SeqCst);
        }
        for (i, part) in bytes.split(|&b| b == b'\n').enumerate() {
            self.line_len = if i == 0 { self.line_len } else { 0 } + part.len();
            if self.line_len > self.max_line {
                let why = format!("a line longer than {} bytes", self.max_line);
                return Err(self.fail(io::ErrorKind::InvalidData, why));
            }
        }
        Ok(())
    }
}

impl Read for BoundedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "session over"));
        }
        let now = Instant::now();
        let until = self.until(now);
        if until <= now {
            return Err(self.fail(io::ErrorKind::TimedOut, "deadline passed".into()));
        }
        self.stream.set_read_timeout(Some(until - now))?;
        match self.stream.read(buf) {
            Ok(0) => {
                self.broken.store(true, Ordering::SeqCst);
                Ok(0)
            }
            Ok(n) => {
                self.account(&buf[..n])?;
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.fail(io::ErrorKind::TimedOut, "deadline passed".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.fail(e.kind(), e.to_string())),
        }
    }
}

//! A recorded AMI event stream for real-call tests: every event one listening
//! connection received, in order, with when it arrived, so a test can wait
//! for one, count them afterwards and measure the time between two.

use std::time::{Duration, Instant, SystemTime};

use featpkg_ami::{Ami, AmiError, Message};

use super::asterisk::Asterisk;

/// Every event one AMI connection received. The connection only listens, so
/// the recorded times are the events' arrival times.
pub struct Events {
    ami: Ami,
    seen: Vec<Seen>,
}

struct Seen {
    at: Instant,
    wall: SystemTime,
    message: Message,
}

impl Events {
    /// Logs in to `ast`'s AMI with events on and starts recording.
    pub fn new(ast: &Asterisk) -> Events {
        Events {
            ami: ast.ami(),
            seen: Vec::new(),
        }
    }

    /// The index the next event will get: pass it as `from` to look only at
    /// what comes after now.
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    fn take(&mut self, limit: Duration) -> Result<usize, AmiError> {
        let message = self.ami.next_event(limit)?;
        self.seen.push(Seen {
            at: Instant::now(),
            wall: SystemTime::now(),
            message,
        });
        Ok(self.seen.len() - 1)
    }

    /// Waits up to `limit` for an event at or after `from` that `pred`
    /// accepts, and returns its index; panics naming `what` otherwise.
    pub fn wait(
        &mut self,
        from: usize,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> usize {
        if let Some(i) = (from..self.seen.len()).find(|&i| pred(&self.seen[i].message)) {
            return i;
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.take(left) {
                Ok(i) if pred(&self.seen[i].message) => return i,
                Ok(_) => {}
                Err(e) => panic!("no {what} within {limit:?}: {e}"),
            }
        }
    }

    /// Records every event that comes for `d`.
    pub fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.take(left) {
                Ok(_) | Err(AmiError::Timeout) => {}
                Err(e) => panic!("AMI: {e}"),
            }
        }
    }

    /// Records events until `cond` holds (polled every 20 ms), up to `limit`.
    pub fn until(&mut self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < deadline, "no {what} within {limit:?}");
            self.pump(Duration::from_millis(20));
        }
    }

    /// The indexes of the recorded events at or after `from` that `pred` accepts.
    pub fn all(&self, from: usize, pred: impl Fn(&Message) -> bool) -> Vec<usize> {
        (from..self.seen.len())
            .filter(|&i| pred(&self.seen[i].message))
            .collect()
    }

    pub fn msg(&self, i: usize) -> &Message {
        &self.seen[i].message
    }

    /// The event's `Channel` field (empty when it has none).
    pub fn channel(&self, i: usize) -> String {
        self.msg(i).get("Channel").unwrap_or_default().to_string()
    }

    /// When event `i` arrived (monotonic: for durations).
    pub fn at(&self, i: usize) -> Instant {
        self.seen[i].at
    }

    /// When event `i` arrived (wall clock: to compare with files and logs).
    pub fn wall(&self, i: usize) -> SystemTime {
        self.seen[i].wall
    }
}

/// A `UserEvent` named `name` carrying `fields`.
pub fn user_event<'a>(
    name: &'a str,
    fields: &'a [(&'a str, &'a str)],
) -> impl Fn(&Message) -> bool + 'a {
    move |m| {
        m.event() == Some("UserEvent")
            && m.get("UserEvent") == Some(name)
            && fields.iter().all(|(k, v)| m.all(k).contains(v))
    }
}

/// The PBX answered a call that the phone whose channels start with `prefix`
/// placed (`[phones-caller]` says so).
pub fn caller_answered(prefix: String) -> impl Fn(&Message) -> bool {
    move |m| {
        m.event() == Some("UserEvent")
            && m.get("UserEvent") == Some("CallerAnswered")
            && m.get("Channel").is_some_and(|c| c.starts_with(&prefix))
    }
}

/// The `Hangup` event of `channel`.
pub fn hangup_of(channel: String) -> impl Fn(&Message) -> bool {
    move |m| m.event() == Some("Hangup") && m.get("Channel") == Some(channel.as_str())
}

/// Phone (or far end) `exten` rings.
pub fn ring_of(exten: &str) -> impl Fn(&Message) -> bool + '_ {
    move |m| {
        m.event() == Some("UserEvent")
            && m.get("UserEvent") == Some("PhoneRing")
            && m.get("Exten") == Some(exten)
    }
}

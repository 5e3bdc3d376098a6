//! busy-callback's request store: one small file per request in a directory
//! featpkg owns, so requests survive restarts of the watcher and of Asterisk.
//! Writes are temp file + rename; a lock file serialises the AGI programs
//! (several calls at once) and the watcher.
//!
//! A request is `<caller>-<callee>.req` holding
//! `caller callee created attempts calls phase at\n`. Both numbers are checked
//! digits before they name a file. A file that does not hold exactly that (cut
//! short by a crash or a full disk, junk, a name that disagrees with its
//! content) is ignored: one bad file must not stop every caller's requests and
//! the watcher. (A file of the first version, `caller callee created attempts\n`,
//! reads as waiting.)
//!
//! # Who owns a request
//!
//! A request lives in its file from the digit press until it is done, dropped
//! or expired; nothing deletes it to re-create it later. Its phase says who
//! may move it:
//!
//! * **waiting** (`at` = not before, Unix ms): the watcher's. Once both phones
//!   are free and `at` has passed it marks the request **calling**
//!   ([`Store::begin_call`], a compare-and-set on the waiting request it saw),
//!   then originates callback number `calls`.
//! * **calling** (`at` = when it was originated): the callback's. Only its
//!   outcome moves it, through [`Store::settle`], each a compare-and-set on
//!   (`created`, `calls`) so a late outcome of an older callback changes
//!   nothing: the caller did not answer (the watcher, from OriginateResponse);
//!   the callee answered (the dial context: done, removed); the dial ended
//!   otherwise — busy again, no answer (the dial context: back to waiting, not
//!   before `retry_wait`, one attempt counted). An outcome that never comes
//!   (Asterisk or the watcher restarted mid-callback) is settled by the watcher
//!   after a bound, without counting an attempt.

pub mod commands;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`Store::lock`] waits for another holder. Holders only do a few
/// file operations; an AGI program waiting longer would hold a live call.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Where a request stands; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waits for both phones to be free, and not before this instant (Unix ms;
    /// 0 = at once).
    Waiting { not_before_ms: u64 },
    /// Callback number `calls` was originated at this instant (Unix ms); only
    /// its outcome moves the request.
    Calling { since_ms: u64 },
}

/// One callback request: call `caller` back once `callee` is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub caller: String,
    pub callee: String,
    /// Unix seconds when the caller pressed the digit; expiry counts from here.
    pub created: u64,
    /// Callbacks that ended without a conversation so far.
    pub attempts: u32,
    /// Callbacks originated so far: the number of the current (or last) one.
    pub calls: u32,
    pub phase: Phase,
}

impl Request {
    /// Names the current (or last) callback of this request.
    pub fn call_ref(&self) -> CallRef {
        CallRef::new(&self.caller, &self.callee, self.created, self.calls)
    }

    /// True while a callback of this request is under way.
    pub fn calling(&self) -> bool {
        matches!(self.phase, Phase::Calling { .. })
    }
}

/// Names one callback of one request: what the dial context quotes back
/// (the watcher puts it on the callback's channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef {
    pub caller: String,
    pub callee: String,
    /// The request's `created`: another request of the same pair is not this one.
    pub created: u64,
    /// The callback's number (`calls` when it was originated).
    pub call: u32,
}

impl CallRef {
    pub fn new(caller: &str, callee: &str, created: u64, call: u32) -> CallRef {
        CallRef {
            caller: caller.into(),
            callee: callee.into(),
            created,
            call,
        }
    }
}

/// How a callback ended, as far as the request is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The callee answered: the two talk; the request is done.
    Connected,
    /// The caller hung up the callback before the callee answered: they do
    /// not want it any more; the request is done.
    Abandoned,
    /// The caller did not answer, or the callee was busy again, did not answer
    /// or could not be reached: one attempt; waits again, or is dropped after
    /// `retries` of them.
    NotConnected,
    /// No outcome came (Asterisk or the watcher restarted mid-callback): waits
    /// again without counting an attempt.
    Unknown,
}

/// The rules a settled request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Callbacks that may end without a conversation before the request is dropped
    /// (the first one does not count: `retries` + 1 callbacks in all).
    pub retries: u32,
    /// Least time between the end of one callback and the next.
    pub retry_wait: Duration,
    /// Seconds after the digit press the request is dropped.
    pub expiry_s: u64,
}

/// What [`Store::settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Removed: the callback connected, or the caller abandoned it.
    Done(Request),
    /// Waiting again, as saved.
    Waiting(Request),
    /// Removed: more than `retries` callbacks ended without a conversation.
    Dropped(Request),
    /// Removed: older than the expiry.
    Expired(Request),
    /// Nothing changed: no such request any more (done, cancelled, expired), or
    /// it is no longer at this callback (an outcome that came late).
    Gone,
}

/// Why a request was not stored or the store could not be used.
#[derive(Debug)]
pub enum StoreError {
    Io(PathBuf, std::io::Error),
    /// Not 1 to 20 digits.
    BadNumber(String),
    /// The caller already asked for a callback from this callee.
    Duplicate {
        caller: String,
        callee: String,
    },
    /// The caller has `max` pending requests already.
    TooMany {
        caller: String,
        max: usize,
    },
    /// A file in the store that is not a request we wrote.
    Corrupt(PathBuf),
    /// The lock file stayed locked for [`LOCK_WAIT`].
    Busy(PathBuf),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StoreError::BadNumber(n) => write!(f, "{n:?} is not an extension (1 to 20 digits)"),
            StoreError::Duplicate { caller, callee } => {
                write!(f, "{caller} already waits for a callback from {callee}")
            }
            StoreError::TooMany { caller, max } => {
                write!(f, "{caller} already has {max} pending callbacks")
            }
            StoreError::Corrupt(p) => write!(f, "{} is not a callback request", p.display()),
            StoreError::Busy(p) => write!(
                f,
                "{} is busy: another program held the request store's lock for {} ms",
                p.display(),
                LOCK_WAIT.as_millis()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// True for 1 to 20 ASCII digits: the only numbers that may name a request.
pub fn valid_number(n: &str) -> bool {
    !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit())
}

/// The directory of pending requests.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Holds the store's lock file while alive.
pub struct StoreLock(#[allow(dead_code)] File);

impl Store {
    /// The store in `dir` (created 0750 on first use).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
        let path = path.to_path_buf();
        move |e| StoreError::Io(path.clone(), e)
    }

    /// Takes the store's lock, waiting at most [`LOCK_WAIT`] for another holder.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o750))
                .map_err(self.io(&self.dir))?;
        }
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&path)
            .map_err(self.io(&path))?;
        let until = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock(file)),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Busy(path)),
                Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io(path, e)),
            }
        }
    }

    fn path_of(&self, caller: &str, callee: &str) -> PathBuf {
        self.dir.join(format!("{caller}-{callee}.req"))
    }

    /// Every pending request, oldest first. Files that are not a request we
    /// wrote are skipped (see the module documentation).
    pub fn list(&self) -> Result<Vec<Request>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io(self.dir.clone(), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(self.io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "req")
                && let Some(request) = self.read_request(&path)
            {
                out.push(request);
            }
        }
        out.sort_by(|a, b| {
            (a.created, &a.caller, &a.callee).cmp(&(b.created, &b.caller, &b.callee))
        });
        Ok(out)
    }

    /// The request of `caller` for `callee`, if there is one (and it is whole).
    pub fn get(&self, caller: &str, callee: &str) -> Result<Option<Request>, StoreError> {
        for n in [caller, callee] {
            if !valid_number(n) {
                return Err(StoreError::BadNumber(n.to_string()));
            }
        }
        Ok(self.read_request(&self.path_of(caller, callee)))
    }

    /// The request in `path`, if the file holds exactly what [`Store::save`]
    /// writes for that name (or a whole file of the first version). The final
    /// newline tells a whole write from a cut one.
    fn read_request(&self, path: &Path) -> Option<Request> {
        let text = fs::read_to_string(path).ok()?;
        let line = text.strip_suffix('\n')?;
        let words: Vec<&str> = line.split(' ').collect();
        let (caller, callee, created, attempts, calls, phase) = match words[..] {
            [caller, callee, created, attempts, calls, phase, at] => {
                let at: u64 = at.parse().ok()?;
                let phase = match phase {
                    "waiting" => Phase::Waiting { not_before_ms: at },
                    "calling" => Phase::Calling { since_ms: at },
                    _ => return None,
                };
                (
                    caller,
                    callee,
                    created,
                    attempts,
                    calls.parse().ok()?,
                    phase,
                )
            }
            // The first version: no callback under way, none numbered yet.
            [caller, callee, created, attempts] => (
                caller,
                callee,
                created,
                attempts,
                0,
                Phase::Waiting { not_before_ms: 0 },
            ),
            _ => return None,
        };
        let request = Request {
            caller: caller.to_string(),
            callee: callee.to_string(),
            created: created.parse().ok()?,
            attempts: attempts.parse().ok()?,
            calls,
            phase,
        };
        (valid_number(caller) && valid_number(callee) && self.path_of(caller, callee) == path)
            .then_some(request)
    }

    /// Writes (creates or updates) a request atomically. Call with the lock held.
    pub fn save(&self, r: &Request) -> Result<(), StoreError> {
        if !valid_number(&r.caller) || !valid_number(&r.callee) {
            return Err(StoreError::BadNumber(format!("{}/{}", r.caller, r.callee)));
        }
        let (phase, at) = match r.phase {
            Phase::Waiting { not_before_ms } => ("waiting", not_before_ms),
            Phase::Calling { since_ms } => ("calling", since_ms),
        };
        let path = self.path_of(&r.caller, &r.callee);
        let tmp = self.dir.join(format!(".{}-{}.tmp", r.caller, r.callee));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        let line = format!(
            "{} {} {} {} {} {phase} {at}\n",
            r.caller, r.callee, r.created, r.attempts, r.calls
        );
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(self.io(&tmp))?;
        fs::rename(&tmp, &path).map_err(self.io(&path))?;
        self.sync_dir()
    }

    /// Makes a rename or removal in the store survive a power cut.
    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(&self.dir))
    }

    /// Removes a request (absent is fine). Call with the lock held.
    pub fn remove(&self, caller: &str, callee: &str) -> Result<(), StoreError> {
        let path = self.path_of(caller, callee);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io(path, e)),
        }
    }

    /// Drops requests older than `expiry_s`; returns them. A request dated
    /// `expiry_s` or more in the future (the clock went back) goes too: it must
    /// not outlive its expiry by the size of the jump.
    pub fn expire(&self, now: u64, expiry_s: u64) -> Result<Vec<Request>, StoreError> {
        let _lock = self.lock()?;
        let mut gone = Vec::new();
        for r in self.list()? {
            if now.abs_diff(r.created) >= expiry_s {
                self.remove(&r.caller, &r.callee)?;
                gone.push(r);
            }
        }
        Ok(gone)
    }

    /// Drops the request of `caller` for `callee` if it is older than
    /// `expiry_s` (as [`Store::expire`] would); returns it if it went. Reads
    /// that one file only: the watcher expires what its index says is due.
    pub fn expire_one(
        &self,
        caller: &str,
        callee: &str,
        now: u64,
        expiry_s: u64,
    ) -> Result<Option<Request>, StoreError> {
        let _lock = self.lock()?;
        match self.get(caller, callee)? {
            Some(r) if now.abs_diff(r.created) >= expiry_s => {
                self.remove(caller, callee)?;
                Ok(Some(r))
            }
            _ => Ok(None),
        }
    }

    /// The caller and callee a store file name stands for (`<caller>-<callee>.req`),
    /// if it is one: what the watcher re-reads when that file changes.
    pub fn request_named(name: &std::ffi::OsStr) -> Option<(String, String)> {
        let (caller, callee) = name.to_str()?.strip_suffix(".req")?.split_once('-')?;
        (valid_number(caller) && valid_number(callee))
            .then(|| (caller.to_string(), callee.to_string()))
    }

    /// The directory the requests live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a new request after the rules: both numbers valid, expired ones
    /// dropped first, one per (caller, callee) — a request whose callback is
    /// under way counts —, at most `max_per_caller` per caller.
    pub fn add(
        &self,
        caller: &str,
        callee: &str,
        now: u64,
        max_per_caller: usize,
        expiry_s: u64,
    ) -> Result<Request, StoreError> {
        for n in [caller, callee] {
            if !valid_number(n) {
                return Err(StoreError::BadNumber(n.to_string()));
            }
        }
        self.expire(now, expiry_s)?;
        let _lock = self.lock()?;
        let pending = self.list()?;
        if pending
            .iter()
            .any(|r| r.caller == caller && r.callee == callee)
        {
            return Err(StoreError::Duplicate {
                caller: caller.into(),
                callee: callee.into(),
            });
        }
        if pending.iter().filter(|r| r.caller == caller).count() >= max_per_caller {
            return Err(StoreError::TooMany {
                caller: caller.into(),
                max: max_per_caller,
            });
        }
        let r = Request {
            caller: caller.into(),
            callee: callee.into(),
            created: now,
            attempts: 0,
            calls: 0,
            phase: Phase::Waiting { not_before_ms: 0 },
        };
        self.save(&r)?;
        Ok(r)
    }

    /// The watcher is about to originate a callback for `seen`: marks it
    /// calling, as callback number `calls + 1`, and returns it as saved. Only if
    /// the file still holds the waiting request the watcher saw (same
    /// `created` and `calls`): otherwise (cancelled, expired, settled or taken
    /// meanwhile) nothing is changed and nothing must be originated (`None`).
    /// Marking first means a watcher that dies right after can never ring the
    /// caller twice for one mark.
    pub fn begin_call(&self, seen: &Request, now_ms: u64) -> Result<Option<Request>, StoreError> {
        let _lock = self.lock()?;
        let Some(mut r) = self.get(&seen.caller, &seen.callee)? else {
            return Ok(None);
        };
        if r.created != seen.created || r.calls != seen.calls || r.calling() {
            return Ok(None);
        }
        r.calls += 1;
        r.phase = Phase::Calling { since_ms: now_ms };
        self.save(&r)?;
        Ok(Some(r))
    }

    /// Applies the outcome of the callback `which` names (see [`Outcome`]). Connected and
    /// abandoned remove the request if it is still this one (whatever its
    /// phase: the callback did happen); the others only move a request still
    /// calling with this very callback. A request already past its expiry is
    /// dropped instead of waiting again.
    pub fn settle(
        &self,
        which: &CallRef,
        outcome: Outcome,
        now_ms: u64,
        rules: &Rules,
    ) -> Result<Settled, StoreError> {
        let CallRef {
            caller,
            callee,
            created,
            call,
        } = which;
        let (created, call) = (*created, *call);
        let _lock = self.lock()?;
        let Some(mut r) = self.get(caller, callee)? else {
            return Ok(Settled::Gone);
        };
        if r.created != created {
            return Ok(Settled::Gone);
        }
        if matches!(outcome, Outcome::Connected | Outcome::Abandoned) {
            self.remove(caller, callee)?;
            return Ok(Settled::Done(r));
        }
        if !r.calling() || r.calls != call {
            return Ok(Settled::Gone);
        }
        if outcome == Outcome::NotConnected {
            r.attempts += 1;
        }
        if (now_ms / 1000).abs_diff(r.created) >= rules.expiry_s {
            self.remove(caller, callee)?;
            return Ok(Settled::Expired(r));
        }
        if r.attempts > rules.retries {
            self.remove(caller, callee)?;
            return Ok(Settled::Dropped(r));
        }
        let wait = u64::try_from(rules.retry_wait.as_millis()).unwrap_or(u64::MAX);
        r.phase = Phase::Waiting {
            not_before_ms: now_ms.saturating_add(wait),
        };
        self.save(&r)?;
        Ok(Settled::Waiting(r))
    }

    /// Cancels every request `caller` made; returns how many.
    pub fn cancel(&self, caller: &str) -> Result<usize, StoreError> {
        if !valid_number(caller) {
            return Err(StoreError::BadNumber(caller.to_string()));
        }
        let _lock = self.lock()?;
        let mut n = 0;
        for r in self.list()?.into_iter().filter(|r| r.caller == caller) {
            self.remove(&r.caller, &r.callee)?;
            n += 1;
        }
        Ok(n)
    }
}

/// The current time in Unix milliseconds (0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_of_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(&tmp.path().join("requests"));
        assert!(
            store.list().unwrap().is_empty(),
            "a missing directory is an empty store"
        );
        store.add("201", "202", 1000, 2, 1800).unwrap();
        assert!(matches!(
            store.add("201", "202", 1001, 2, 1800),
            Err(StoreError::Duplicate { .. })
        ));
        store.add("201", "203", 1002, 2, 1800).unwrap();
        assert!(matches!(
            store.add("201", "204", 1003, 2, 1800),
            Err(StoreError::TooMany { max: 2, .. })
        ));
        store.add("205", "202", 1004, 2, 1800).unwrap();
        assert_eq!(store.list().unwrap().len(), 3);
        // After the expiry the old ones make room again.
        let r = store.add("201", "204", 1000 + 1800, 2, 1800).unwrap();
        assert_eq!(r.created, 2800);
        let callees: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .filter(|r| r.caller == "201")
            .map(|r| r.callee)
            .collect();
        assert_eq!(callees, ["203", "204"]);
        assert_eq!(store.cancel("201").unwrap(), 2);
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(
            std::fs::metadata(tmp.path().join("requests"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o750
        );
    }

    const RULES: Rules = Rules {
        retries: 2,
        retry_wait: Duration::from_secs(60),
        expiry_s: 1800,
    };

    /// Unix ms `s` seconds after the request below was made.
    fn at(s: u64) -> u64 {
        (1000 + s) * 1000
    }

    #[test]
    fn a_callback_moves_its_request_only_through_its_own_outcome() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let seen = store.add("201", "202", 1000, 3, 1800).unwrap();
        assert_eq!(seen.phase, Phase::Waiting { not_before_ms: 0 });
        let call = store.begin_call(&seen, at(5)).unwrap().expect("marked");
        assert_eq!(
            (call.calls, call.phase),
            (1, Phase::Calling { since_ms: at(5) })
        );
        assert_eq!(store.get("201", "202").unwrap(), Some(call.clone()));
        // Marked once: a second watcher pass (or a stale view) gets nothing.
        assert_eq!(store.begin_call(&seen, at(6)).unwrap(), None);
        assert_eq!(store.begin_call(&call, at(6)).unwrap(), None);
        // Busy again: waits, the attempt counted, its first time kept.
        let Settled::Waiting(r) = store
            .settle(
                &CallRef::new("201", "202", 1000, 1),
                Outcome::NotConnected,
                at(10),
                &RULES,
            )
            .unwrap()
        else {
            panic!("waits again")
        };
        assert_eq!(
            (r.created, r.attempts, r.calls, r.phase),
            (
                1000,
                1,
                1,
                Phase::Waiting {
                    not_before_ms: at(70)
                }
            )
        );
        assert_eq!(store.get("201", "202").unwrap(), Some(r.clone()));
        // The same outcome again (twice reported) changes nothing.
        assert_eq!(
            store
                .settle(
                    &CallRef::new("201", "202", 1000, 1),
                    Outcome::NotConnected,
                    at(11),
                    &RULES
                )
                .unwrap(),
            Settled::Gone
        );
        let second = store.begin_call(&r, at(80)).unwrap().expect("marked");
        assert_eq!(second.calls, 2);
        // A late outcome of the first callback cannot touch the second.
        for late in [Outcome::NotConnected, Outcome::Unknown] {
            assert_eq!(
                store
                    .settle(&CallRef::new("201", "202", 1000, 1), late, at(81), &RULES)
                    .unwrap(),
                Settled::Gone
            );
        }
        assert_eq!(store.get("201", "202").unwrap(), Some(second.clone()));
        // Nor can an outcome for another request of the same pair.
        assert_eq!(
            store
                .settle(
                    &CallRef::new("201", "202", 999, 2),
                    Outcome::Connected,
                    at(82),
                    &RULES
                )
                .unwrap(),
            Settled::Gone
        );
        assert!(store.get("201", "202").unwrap().is_some());
        // The callee answered: done.
        assert_eq!(
            store
                .settle(
                    &CallRef::new("201", "202", 1000, 2),
                    Outcome::Connected,
                    at(90),
                    &RULES
                )
                .unwrap(),
            Settled::Done(second)
        );
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            store
                .settle(
                    &CallRef::new("201", "202", 1000, 2),
                    Outcome::NotConnected,
                    at(91),
                    &RULES
                )
                .unwrap(),
            Settled::Gone,
            "nothing comes back once done"
        );
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn retries_bound_the_callbacks_without_a_conversation() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let mut r = store.add("201", "202", 1000, 3, 1800).unwrap();
        for n in 1..=3u32 {
            let c = store
                .begin_call(&r, at(u64::from(n) * 100))
                .unwrap()
                .unwrap();
            let end = at(u64::from(n) * 100 + 10);
            match store
                .settle(
                    &CallRef::new("201", "202", 1000, c.calls),
                    Outcome::NotConnected,
                    end,
                    &RULES,
                )
                .unwrap()
            {
                Settled::Waiting(w) if n <= 2 => r = w,
                Settled::Dropped(d) if n == 3 => assert_eq!(d.attempts, 3),
                other => panic!("callback {n}: {other:?}"),
            }
        }
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn an_outcome_that_never_came_waits_again_without_an_attempt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let r = store.add("201", "202", 1000, 3, 1800).unwrap();
        store.begin_call(&r, at(1)).unwrap().unwrap();
        let Settled::Waiting(w) = store
            .settle(
                &CallRef::new("201", "202", 1000, 1),
                Outcome::Unknown,
                at(100),
                &RULES,
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((w.attempts, w.calls), (0, 1));
    }

    #[test]
    fn a_caller_who_hangs_up_on_the_callback_is_done() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let r = store.add("201", "202", 1000, 3, 1800).unwrap();
        store.begin_call(&r, at(1)).unwrap().unwrap();
        assert!(matches!(
            store
                .settle(
                    &CallRef::new("201", "202", 1000, 1),
                    Outcome::Abandoned,
                    at(20),
                    &RULES
                )
                .unwrap(),
            Settled::Done(_)
        ));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_callee_busy_again_keeps_the_first_time_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let r = store.add("201", "202", 1000, 3, 1800).unwrap();
        store.begin_call(&r, at(1790)).unwrap().unwrap();
        // Busy again 1800 s after the digit press: expired, not waiting again.
        assert!(matches!(
            store
                .settle(
                    &CallRef::new("201", "202", 1000, 1),
                    Outcome::NotConnected,
                    at(1800),
                    &RULES
                )
                .unwrap(),
            Settled::Expired(_)
        ));
        assert!(store.list().unwrap().is_empty(), "nothing stored");
    }

    #[test]
    fn the_phase_survives_a_reload_and_a_first_version_file_reads_as_waiting() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let r = store.add("201", "202", 5, 3, 60).unwrap();
        let c = store.begin_call(&r, 7_123).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("201-202.req")).unwrap(),
            "201 202 5 0 1 calling 7123\n"
        );
        assert_eq!(Store::new(tmp.path()).list().unwrap(), vec![c]);
        std::fs::write(tmp.path().join("203-202.req"), "203 202 9 1\n").unwrap();
        assert_eq!(
            store.get("203", "202").unwrap(),
            Some(Request {
                caller: "203".into(),
                callee: "202".into(),
                created: 9,
                attempts: 1,
                calls: 0,
                phase: Phase::Waiting { not_before_ms: 0 },
            })
        );
    }

    #[test]
    fn hostile_numbers_never_name_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        for bad in ["../../etc/passwd", "1;rm", "", "unknown", &"9".repeat(200)] {
            assert!(
                matches!(
                    store.add(bad, "202", 1, 3, 60),
                    Err(StoreError::BadNumber(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    store.add("201", bad, 1, 3, 60),
                    Err(StoreError::BadNumber(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(store.cancel(bad), Err(StoreError::BadNumber(_))),
                "{bad:?}"
            );
            assert!(
                matches!(
                    store.settle(
                        &CallRef::new(bad, "202", 1, 1),
                        Outcome::Connected,
                        1,
                        &RULES
                    ),
                    Err(StoreError::BadNumber(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    store.settle(
                        &CallRef::new("201", bad, 1, 1),
                        Outcome::NotConnected,
                        1,
                        &RULES
                    ),
                    Err(StoreError::BadNumber(_))
                ),
                "{bad:?}"
            );
        }
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn attempts_survive_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let mut r = store.add("201", "202", 5, 3, 60).unwrap();
        r.attempts = 2;
        {
            let _l = store.lock().unwrap();
            store.save(&r).unwrap();
        }
        assert_eq!(Store::new(tmp.path()).list().unwrap(), vec![r]);
    }

    #[test]
    fn a_torn_or_foreign_file_does_not_block_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        // A write cut short, junk, a file whose name and content disagree, a
        // directory, a temp file left by a crash, an unknown phase, a line
        // without its newline.
        std::fs::write(tmp.path().join("201-203.req"), "201 20").unwrap();
        std::fs::write(tmp.path().join("junk.req"), "x").unwrap();
        std::fs::write(tmp.path().join("202-204.req"), "205 206 1 0\n").unwrap();
        std::fs::create_dir(tmp.path().join("d.req")).unwrap();
        std::fs::write(tmp.path().join(".201-205.tmp"), "201 2").unwrap();
        std::fs::write(tmp.path().join("201-206.req"), "201 206 1 0 1 ringing 5\n").unwrap();
        std::fs::write(tmp.path().join("201-207.req"), "201 207 1 0 1 calling 5").unwrap();
        store.add("201", "202", 10, 3, 60).unwrap();
        let pairs: Vec<(String, String)> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|r| (r.caller, r.callee))
            .collect();
        assert_eq!(pairs, [("201".to_string(), "202".to_string())]);
        assert_eq!(store.cancel("201").unwrap(), 1);
        assert!(store.expire(1000, 60).is_ok());
    }

    #[test]
    fn a_lock_held_elsewhere_is_waited_for_briefly_then_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let held = store.lock().unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            store.add("201", "202", 10, 3, 60),
            Err(StoreError::Busy(_))
        ));
        let waited = started.elapsed();
        assert!(waited >= LOCK_WAIT && waited < LOCK_WAIT * 2, "{waited:?}");
        drop(held);
        store.add("201", "202", 10, 3, 60).unwrap();
    }

    #[test]
    fn a_request_from_the_future_expires_too() {
        // The clock went back (an RTC fixed by NTP): the request must not
        // outlive the expiry by the size of the jump.
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        store.add("201", "202", 10_000, 3, 60).unwrap();
        assert_eq!(store.expire(100, 60).unwrap().len(), 1);
        assert!(store.list().unwrap().is_empty());
    }
}

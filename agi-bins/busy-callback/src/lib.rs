//! busy-callback's request store: one small file per pending request in a
//! directory featpkg owns, so requests survive restarts of the watcher and of
//! Asterisk. Writes are temp file + rename; a lock file serialises the AGI
//! programs (several calls at once) and the watcher.
//!
//! A request is `<caller>-<callee>.req` holding `caller callee created attempts\n`.
//! Both numbers are checked digits before they name a file. A file that does not
//! hold exactly that (cut short by a crash or a full disk, junk, a name that
//! disagrees with its content) is ignored: one bad file must not stop every
//! caller's requests and the watcher.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`Store::lock`] waits for another holder. Holders only do a few
/// file operations; an AGI program waiting longer would hold a live call.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// One pending callback: call `caller` back once `callee` is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub caller: String,
    pub callee: String,
    /// Unix seconds when it was made.
    pub created: u64,
    /// Callback attempts the caller did not answer so far.
    pub attempts: u32,
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
    /// The request is older than the expiry already (a requeue late in its life).
    Expired {
        caller: String,
        callee: String,
    },
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
            StoreError::Expired { caller, callee } => {
                write!(f, "the request of {caller} for {callee} has expired")
            }
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

    /// The request in `path`, if the file holds exactly what [`Store::save`]
    /// writes for that name. The final newline tells a whole write from a cut one.
    fn read_request(&self, path: &Path) -> Option<Request> {
        let text = fs::read_to_string(path).ok()?;
        let line = text.strip_suffix('\n')?;
        let [caller, callee, created, attempts] = line.split(' ').collect::<Vec<_>>()[..] else {
            return None;
        };
        let request = Request {
            caller: caller.to_string(),
            callee: callee.to_string(),
            created: created.parse().ok()?,
            attempts: attempts.parse().ok()?,
        };
        (valid_number(caller) && valid_number(callee) && self.path_of(caller, callee) == path)
            .then_some(request)
    }

    /// Writes (creates or updates) a request atomically. Call with the lock held.
    pub fn save(&self, r: &Request) -> Result<(), StoreError> {
        if !valid_number(&r.caller) || !valid_number(&r.callee) {
            return Err(StoreError::BadNumber(format!("{}/{}", r.caller, r.callee)));
        }
        let path = self.path_of(&r.caller, &r.callee);
        let tmp = self.dir.join(format!(".{}-{}.tmp", r.caller, r.callee));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(self.io(&tmp))?;
        f.write_all(format!("{} {} {} {}\n", r.caller, r.callee, r.created, r.attempts).as_bytes())
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
            Ok(()) => Ok(()),
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

    /// Stores a new request after the rules: both numbers valid, expired ones
    /// dropped first, one per (caller, callee), at most `max_per_caller` per caller.
    pub fn add(
        &self,
        caller: &str,
        callee: &str,
        now: u64,
        max_per_caller: usize,
        expiry_s: u64,
    ) -> Result<Request, StoreError> {
        self.add_since(caller, callee, now, now, max_per_caller, expiry_s)
    }

    /// [`Store::add`] for a request first made at `created`: a
    /// callee busy again puts the request back with its first time, so the
    /// expiry counts from when the caller pressed the digit, not from the last
    /// try. Already expired: [`StoreError::Expired`], nothing stored.
    pub fn add_since(
        &self,
        caller: &str,
        callee: &str,
        created: u64,
        now: u64,
        max_per_caller: usize,
        expiry_s: u64,
    ) -> Result<Request, StoreError> {
        for n in [caller, callee] {
            if !valid_number(n) {
                return Err(StoreError::BadNumber(n.to_string()));
            }
        }
        // The same rule as `expire`, so it would not survive the next sweep.
        if now.abs_diff(created) >= expiry_s {
            return Err(StoreError::Expired {
                caller: caller.into(),
                callee: callee.into(),
            });
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
            created,
            attempts: 0,
        };
        self.save(&r)?;
        Ok(r)
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

    #[test]
    fn a_requeued_request_keeps_its_first_time_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let r = store.add_since("201", "202", 1000, 1500, 3, 1800).unwrap();
        assert_eq!(r.created, 1000);
        assert_eq!(store.list().unwrap()[0].created, 1000);
        store.remove("201", "202").unwrap();
        assert!(matches!(
            store.add_since("201", "202", 1000, 2800, 3, 1800),
            Err(StoreError::Expired { .. })
        ));
        assert!(store.list().unwrap().is_empty(), "nothing stored");
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
        // directory, and a temp file left by a crash.
        std::fs::write(tmp.path().join("201-203.req"), "201 20").unwrap();
        std::fs::write(tmp.path().join("junk.req"), "x").unwrap();
        std::fs::write(tmp.path().join("202-204.req"), "205 206 1 0\n").unwrap();
        std::fs::create_dir(tmp.path().join("d.req")).unwrap();
        std::fs::write(tmp.path().join(".201-205.tmp"), "201 2").unwrap();
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

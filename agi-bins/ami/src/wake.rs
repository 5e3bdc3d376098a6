//! What wakes a watcher, and nothing else: the AMI socket, a change in a
//! directory it follows, SIGTERM/SIGINT, or a deadline it set itself. An idle
//! watcher sleeps in one `poll(2)` with no timeout, so it costs no CPU and no
//! wakeups beyond what Asterisk sends it (README "The watchers").
//!
//! Directory changes come from inotify (raw syscalls through `libc`): the
//! name of each file written, renamed or removed, so a watcher re-reads only
//! what changed. The credentials file's directory is followed too: its
//! removal (uninstall) wakes the watcher, which then exits. Where inotify is
//! not available (no instances left), the wait is capped at [`FALLBACK_WAIT`]
//! and every directory is reported as possibly changed each time instead.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest wait without inotify: how late a change or an uninstall is
/// noticed then.
pub const FALLBACK_WAIT: Duration = Duration::from_secs(1);

/// What a followed directory says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `name` in `dir` was written, renamed in or out, or removed.
    File { dir: PathBuf, name: OsString },
    /// Anything in `dir` may have changed (events were lost, the directory
    /// was replaced, or there is no inotify): read it all again.
    All { dir: PathBuf },
}

/// Why [`Wakeups::wait`] returned.
#[derive(Debug, Default)]
pub struct Woken {
    /// The AMI socket has bytes (or was closed).
    pub socket: bool,
    /// What changed in the followed directories.
    pub changes: Vec<Change>,
}

/// A watcher's sources of wake-ups.
pub struct Wakeups {
    stop: Arc<AtomicBool>,
    /// Read end of the self-pipe SIGTERM/SIGINT write to: a signal that
    /// comes between the stop check and `poll` still ends the wait.
    signals: UnixStream,
    inotify: Option<OwnedFd>,
    /// Watch descriptor -> directory, for the watcher's own directories.
    dirs: Vec<(i32, PathBuf)>,
    credentials: PathBuf,
}

const DIR_EVENTS: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

impl Wakeups {
    /// Installs the SIGTERM/SIGINT handlers (they set the stop flag and wake
    /// the wait) and follows the directory of `credentials`, whose removal
    /// means the feature was uninstalled.
    pub fn new(credentials: &Path) -> std::io::Result<Wakeups> {
        let stop = Arc::new(AtomicBool::new(false));
        let (signals, writer) = UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, stop.clone())?;
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        // SAFETY: inotify_init1 takes flags only; a valid fd or -1 comes back.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        // SAFETY: fd is a fresh descriptor this struct alone owns.
        let inotify = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        let w = Wakeups {
            stop,
            signals,
            inotify,
            dirs: Vec::new(),
            credentials: credentials.to_path_buf(),
        };
        if let Some(dir) = credentials.parent().filter(|d| !d.as_os_str().is_empty()) {
            w.add_watch(dir);
        }
        Ok(w)
    }

    /// True once SIGTERM/SIGINT came or the credentials file is gone.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || !self.credentials.exists()
    }

    /// Reports changes in `dir` from now on ([`Change`]). False when they
    /// cannot be followed (no inotify, no such directory): the watcher is then
    /// told [`Change::All`] at every wake-up, at least every [`FALLBACK_WAIT`].
    pub fn follow(&mut self, dir: &Path) -> bool {
        if self.dirs.iter().any(|(wd, d)| d == dir && *wd >= 0) {
            return true;
        }
        self.dirs.retain(|(_, d)| d != dir);
        let wd = self.add_watch(dir).unwrap_or(-1);
        self.dirs.push((wd, dir.to_path_buf()));
        wd >= 0
    }

    fn add_watch(&self, dir: &Path) -> Option<i32> {
        let fd = self.inotify.as_ref()?;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), DIR_EVENTS) };
        (wd >= 0).then_some(wd)
    }

    /// Waits until the socket has bytes, a followed directory changed, a
    /// signal came, or `deadline` passed — whichever is first. No deadline
    /// and inotify working: no timeout at all.
    pub fn wait(&mut self, socket: RawFd, deadline: Option<Instant>) -> std::io::Result<Woken> {
        let mut woken = Woken::default();
        self.follow_again(&mut woken.changes);
        let degraded = self.inotify.is_none() || self.dirs.iter().any(|(wd, _)| *wd < 0);
        let cap = degraded.then(|| Instant::now() + FALLBACK_WAIT);
        let until = match (deadline, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout_ms = until.map_or(-1, |u| {
            let left = u.saturating_duration_since(Instant::now());
            // Round up: waking a little early would only wait again.
            i32::try_from(left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0))
                .unwrap_or(i32::MAX)
        });
        let inotify = self.inotify.as_ref().map_or(-1, |f| f.as_raw_fd());
        let mut fds = [
            pollfd(socket),
            pollfd(self.signals.as_raw_fd()),
            pollfd(inotify),
        ];
        // SAFETY: fds is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A signal: the caller checks its stop flag.
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(woken)
            } else {
                Err(e)
            };
        }
        woken.socket = fds[0].revents != 0;
        if fds[1].revents != 0 {
            let mut sink = [0u8; 64];
            while std::io::Read::read(&mut &self.signals, &mut sink).is_ok_and(|n| n > 0) {}
        }
        if fds[2].revents != 0 {
            self.read_changes(&mut woken.changes);
        }
        if degraded {
            for (wd, dir) in &self.dirs {
                if *wd < 0 {
                    woken.changes.push(Change::All { dir: dir.clone() });
                }
            }
        }
        Ok(woken)
    }

    /// Follows again a directory that went and is back (or was missing at
    /// first): everything in it is news.
    fn follow_again(&mut self, out: &mut Vec<Change>) {
        for i in 0..self.dirs.len() {
            if self.dirs[i].0 < 0
                && let Some(wd) = self.add_watch(&self.dirs[i].1)
            {
                self.dirs[i].0 = wd;
                out.push(Change::All {
                    dir: self.dirs[i].1.clone(),
                });
            }
        }
    }

    /// Drains the inotify queue into `out`.
    fn read_changes(&mut self, out: &mut Vec<Change>) {
        let Some(fd) = self.inotify.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            let mut at = 0;
            let header = std::mem::size_of::<libc::inotify_event>();
            while at + header <= n as usize {
                // SAFETY: the kernel wrote a whole event header at `at`.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                let name_bytes = &buf[at + header..at + header + ev.len as usize];
                let name = name_bytes.split(|&b| b == 0).next().unwrap_or_default();
                at += header + ev.len as usize;
                self.one_change(&ev, name, out);
            }
        }
    }

    fn one_change(&mut self, ev: &libc::inotify_event, name: &[u8], out: &mut Vec<Change>) {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            for (_, dir) in &self.dirs {
                out.push(Change::All { dir: dir.clone() });
            }
            return;
        }
        let Some(i) = self.dirs.iter().position(|(wd, _)| *wd == ev.wd) else {
            return; // the credentials directory: the stop check reads it
        };
        let dir = self.dirs[i].1.clone();
        if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED) != 0 {
            // The directory itself went: follow whatever stands there next.
            self.dirs[i].0 = -1;
            out.push(Change::All { dir });
        } else if !name.is_empty() {
            out.push(Change::File {
                dir,
                name: OsString::from_vec(name.to_vec()),
            });
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_file_written_renamed_or_removed_and_nothing_else() {
        let root = tempfile_dir("names");
        let creds = root.join("creds.conf");
        std::fs::write(&creds, "x").unwrap();
        let store = root.join("store");
        std::fs::create_dir(&store).unwrap();
        let mut w = Wakeups::new(&creds).unwrap();
        assert!(w.follow(&store));
        std::fs::write(store.join(".a.tmp"), "1").unwrap();
        std::fs::rename(store.join(".a.tmp"), store.join("a.req")).unwrap();
        std::fs::remove_file(store.join("a.req")).unwrap();
        let woken = w
            .wait(-1, Some(Instant::now() + Duration::from_secs(5)))
            .unwrap();
        let names: Vec<_> = woken
            .changes
            .iter()
            .map(|c| match c {
                Change::File { name, .. } => name.to_string_lossy().into_owned(),
                Change::All { .. } => "*".into(),
            })
            .collect();
        assert_eq!(names, [".a.tmp", ".a.tmp", "a.req", "a.req"]);
        // Nothing happens: the deadline ends the wait, with nothing to tell.
        let t = Instant::now();
        let woken = w
            .wait(-1, Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        assert!(woken.changes.is_empty() && !woken.socket);
        assert!(t.elapsed() >= Duration::from_millis(50));
        // The credentials file removed (uninstall): the wait ends at once.
        std::fs::remove_file(&creds).unwrap();
        let t = Instant::now();
        w.wait(-1, Some(Instant::now() + Duration::from_secs(5)))
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(2) && w.stop_requested());
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("featpkg-wake-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

//! The accept loop: one thread per call up to a cap ([`Workers`]: a thread
//! whose call ended takes the next). A call over the cap is
//! refused with a `FAILURE` line (AGISTATUS=FAILURE: the dialplan falls back
//! to the per-call program) by one refusing thread, so a flood of
//! connections costs neither threads nor the accept loop's time.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use featpkg_agi::Route;

use crate::connection::{self, CallEnd, FAILURE_LINE, Limits};
use crate::workers::Workers;

/// Stack of a call's thread: the feature code needs little, and a thousand
/// calls then reserve 256 MiB of address space, not 2 GiB.
const CALL_STACK: usize = 256 * 1024;

/// Refused connections waiting for Asterisk to close them; beyond this, a
/// refused socket is just closed.
const REFUSED_QUEUE: usize = 1024;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Calls served at once; one more is refused.
    pub max_calls: usize,
    /// Bounds on each call.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_calls: 1024,
            limits: Limits::default(),
        }
    }
}

/// Asks a running server to stop: no new call is accepted, calls under way
/// end on their own.
#[derive(Debug, Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Stopper {
    /// Stops the server (the accept loop is woken by a connection of its own).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }

    /// True once asked to stop.
    pub fn stopping(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Calls under way, to cap them and to wait for them at the end.
#[derive(Debug, Default)]
struct Active {
    count: Mutex<usize>,
    changed: Condvar,
}

/// One slot of [`Active`]; freed when the call's thread ends, however it ends.
struct Slot(Arc<Active>);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.changed.notify_all();
    }
}

/// A bound listener with its routes, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    routes: Vec<Route>,
    config: Config,
    stopper: Stopper,
    active: Arc<Active>,
    /// Calls served so far (for tests and the log).
    pub served: Arc<AtomicUsize>,
}

impl Server {
    /// Serves `routes` on `listener` (bound by the caller: 127.0.0.1).
    pub fn new(
        listener: TcpListener,
        routes: Vec<Route>,
        config: Config,
    ) -> std::io::Result<Server> {
        let stopper = Stopper {
            flag: Arc::new(AtomicBool::new(false)),
            addr: listener.local_addr()?,
        };
        Ok(Server {
            listener,
            routes,
            config,
            stopper,
            active: Arc::default(),
            served: Arc::default(),
        })
    }

    /// What stops this server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Accepts calls until stopped, then waits up to `drain` for the calls
    /// under way.
    pub fn run(self, drain: Duration) {
        let refuser = spawn_refuser();
        let routes: Arc<[Route]> = self.routes.clone().into();
        let limits = Arc::new(self.config.limits.clone());
        let workers = Workers::new(CALL_STACK);
        for stream in self.listener.incoming() {
            if self.stopper.stopping() {
                break;
            }
            let Ok(stream) = stream else { continue };
            match self.take_slot() {
                Some(slot) => self.spawn_call(stream, slot, &routes, &limits, &refuser, &workers),
                None => refuse(&refuser, stream, "too many calls at once"),
            }
        }
        let until = Instant::now() + drain;
        let mut count = self.active.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            count = match self.active.changed.wait_timeout(count, left) {
                Ok((c, _)) => c,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// A slot for one more call, if under the cap.
    fn take_slot(&self) -> Option<Slot> {
        let mut count = self.active.count.lock().unwrap_or_else(|e| e.into_inner());
        if *count >= self.config.max_calls {
            return None;
        }
        *count += 1;
        Some(Slot(self.active.clone()))
    }

    fn spawn_call(
        &self,
        stream: TcpStream,
        slot: Slot,
        routes: &Arc<[Route]>,
        limits: &Arc<Limits>,
        refuser: &SyncSender<TcpStream>,
        workers: &Workers,
    ) {
        let Ok(spare) = stream.try_clone() else {
            return;
        };
        let (routes, limits, served) = (routes.clone(), limits.clone(), self.served.clone());
        let started = workers.run(Box::new(move || {
            let _slot = slot;
            let end = connection::serve(stream, &routes, &limits);
            served.fetch_add(1, Ordering::SeqCst);
            log_call(&end);
        }));
        if !started {
            refuse(refuser, spare, "cannot start a thread for the call");
        }
    }
}

fn log_call(end: &CallEnd) {
    match end {
        CallEnd::Served { program, ending } => {
            tracing::debug!("{program}: served ({ending:?})")
        }
        CallEnd::Refused(why) => tracing::warn!("call refused: {why}"),
    }
}

/// Hands `stream` to the refusing thread (or, when it is swamped, closes it).
fn refuse(refuser: &SyncSender<TcpStream>, stream: TcpStream, why: &str) {
    tracing::warn!("call refused: {why}");
    if let Err(TrySendError::Full(s) | TrySendError::Disconnected(s)) = refuser.try_send(stream) {
        let _ = (&s).write_all(FAILURE_LINE);
    }
}

/// The thread that tells refused calls `FAILURE` and reads each until
/// Asterisk closes it (at most 2 s), polling them all without blocking.
fn spawn_refuser() -> SyncSender<TcpStream> {
    let (tx, rx) = sync_channel::<TcpStream>(REFUSED_QUEUE);
    std::thread::spawn(move || refuse_loop(rx));
    tx
}

fn refuse_loop(rx: Receiver<TcpStream>) {
    let mut open: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    loop {
        let next = if open.is_empty() {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(stream) => Some(stream),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
            }
        };
        if let Some(stream) = next {
            let _ = (&stream).write_all(FAILURE_LINE);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.set_nonblocking(true);
            open.push_back((stream, Instant::now() + Duration::from_secs(2)));
        } else if open.is_empty() {
            return; // the server is gone
        }
        open.retain(|(stream, until)| still_open(stream) && Instant::now() < *until);
    }
}

/// Reads what is there; false once the peer closed.
fn still_open(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    loop {
        match (&*stream).read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

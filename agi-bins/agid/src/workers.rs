//! The call threads: one per call under way, as before, but a thread whose
//! call ended waits a while for the next one. A call then starts on a thread
//! already there instead of one being made for it (its stack mapped, the
//! clone, the teardown) while Asterisk waits for the first command.
//!
//! A call is handed to an idle thread only when one is waiting for it, so
//! no call ever waits in a queue behind another; otherwise a new thread
//! takes it. The server's cap on calls under way caps the threads too.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One call to run, with everything it needs.
pub type Job = Box<dyn FnOnce() + Send>;

/// How long a thread with no call waits for one before it ends.
const IDLE: Duration = Duration::from_secs(30);

/// Calls handed over but not yet taken, and the threads waiting for one;
/// never more of the first than of the second.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

/// The call threads (cheap to clone: all clones share them).
#[derive(Clone)]
pub struct Workers {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    stack: usize,
}

impl Workers {
    /// Threads with `stack` bytes of stack each.
    pub fn new(stack: usize) -> Workers {
        Workers {
            shared: Arc::default(),
            stack,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on an idle thread, or on a new one; false when no thread
    /// could be started (the job is dropped).
    pub fn run(&self, job: Job) -> bool {
        {
            let mut queue = self.queue();
            if queue.idle > queue.jobs.len() {
                queue.jobs.push_back(job);
                self.shared.1.notify_one();
                return true;
            }
        }
        let workers = self.clone();
        std::thread::Builder::new()
            .name("agi-call".into())
            .stack_size(self.stack)
            .spawn(move || workers.work(job))
            .is_ok()
    }

    /// Runs `job`, then each call handed over, until none came for [`IDLE`].
    fn work(&self, mut job: Job) {
        loop {
            job();
            let until = Instant::now() + IDLE;
            let mut queue = self.queue();
            queue.idle += 1;
            job = loop {
                if let Some(next) = queue.jobs.pop_front() {
                    queue.idle -= 1;
                    break next;
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    queue.idle -= 1;
                    return;
                }
                queue = match self.shared.1.wait_timeout(queue, left) {
                    Ok((q, _)) => q,
                    Err(e) => e.into_inner().0,
                };
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_thread_whose_call_ended_takes_the_next_and_calls_never_wait() {
        let workers = Workers::new(64 * 1024);
        let (tx, rx) = mpsc::channel();
        let send = |tx: mpsc::Sender<std::thread::ThreadId>| -> Job {
            Box::new(move || tx.send(std::thread::current().id()).unwrap())
        };
        assert!(workers.run(send(tx.clone())));
        let first = rx.recv().unwrap();
        // Let the first thread become idle, then the next call reuses it.
        let until = Instant::now() + Duration::from_secs(5);
        while workers.queue().idle == 0 {
            assert!(Instant::now() < until, "the thread never became idle");
            std::thread::yield_now();
        }
        assert!(workers.run(send(tx.clone())));
        assert_eq!(rx.recv().unwrap(), first);
        // Two calls at once: the second is not queued behind a busy one.
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        assert!(workers.run(Box::new(move || {
            let _ = hold_rx.recv();
        })));
        assert!(workers.run(send(tx)));
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        drop(hold_tx);
    }
}

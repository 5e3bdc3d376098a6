//! The listening socket: 127.0.0.1 only, with an accept queue deep enough
//! for a burst of calls.
//!
//! Asterisk gives a FastAGI connect 2 s (`MAX_AGI_CONNECT` in res_agi.c).
//! The kernel completes a connection and queues it until the server accepts
//! it, so Asterisk's connect succeeds at once however busy the accept loop
//! is, as long as the queue has room. std listens with a queue of 128: a
//! thousand calls starting within a second overflowed it, the kernel
//! dropped their SYNs, and a call whose SYN was dropped twice (resent after
//! 1 s, then 3 s) timed out and fell back to the per-call program.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// Connections the kernel may hold before the server accepts them; the
/// kernel caps it at `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const BACKLOG: i32 = 4096;

unsafe extern "C" {
    /// listen(2), from the C library std already links.
    fn listen(fd: i32, backlog: i32) -> i32;
}

/// Listens on 127.0.0.1:`port` with an accept queue of [`BACKLOG`].
pub fn bind_loopback(port: u16) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    // Calling listen(2) again on a listening socket only resizes its queue.
    // SAFETY: listen reads its two integer arguments and nothing else; the
    // descriptor is the listener's own and stays open for the call.
    if unsafe { listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// 600 connections are all completed while nobody accepts (std's queue
    /// of 128 drops the SYNs of the rest, whose connects then time out).
    #[test]
    fn a_burst_of_connections_waits_in_the_queue() {
        let listener = bind_loopback(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let held: Vec<TcpStream> = (0..600)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} not completed: {e}"))
            })
            .collect();
        assert_eq!(held.len(), 600);
        assert!(listener.local_addr().unwrap().ip().is_loopback());
    }
}

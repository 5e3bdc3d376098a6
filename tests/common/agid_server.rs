//! What the FastAGI load test and the real-Asterisk AGI bench share: a
//! dialplan of their own added to the scratch Asterisk, and the shipped
//! static `featpkg-agid` started on a free loopback port.
//!
//! Included by path (`#[path = "common/agid_server.rs"] mod agid_server;`) next to
//! `mod common;`, so `common` and its users are left as they are.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::asterisk::{Asterisk, Daemon};

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped static server (`bash .ci/build-static` builds it).
pub fn static_agid() -> PathBuf {
    crate::common::repo().join("target/x86_64-unknown-linux-musl/release/featpkg-agid")
}

/// Appends `contexts` to the scratch `extensions.conf` and reloads the
/// dialplan; panics unless every `[context]` in it is then known.
pub fn add_dialplan(ast: &Asterisk, contexts: &str) {
    let file = ast.etc_file("extensions.conf");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push('\n');
    text.push_str(contexts);
    std::fs::write(&file, text).unwrap();
    ast.cli("dialplan reload");
    for name in contexts
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
    {
        let shown = ast.cli(&format!("dialplan show {name}"));
        assert!(
            shown.contains(&format!("'{name}'")),
            "the dialplan has no context {name} after the reload:\n{shown}"
        );
    }
}

/// Starts `featpkg-agid` on `port` with its lock and log under `dir`, `dir=`
/// arguments allowed under `spool`, plus `extra` options; waits until it
/// listens (seen in `/proc/net/tcp`: a probing connection would be a call
/// the server refuses and logs). Killed when the handle drops.
pub fn start_agid(port: u16, dir: &Path, spool: &Path, extra: &[&str]) -> Daemon {
    start_agid_binary(&static_agid(), port, dir, spool, extra)
}

/// [`start_agid`] with another build of the server (`binary`).
pub fn start_agid_binary(
    binary: &Path,
    port: u16,
    dir: &Path,
    spool: &Path,
    extra: &[&str],
) -> Daemon {
    let child = Command::new(binary)
        .arg("--port")
        .arg(port.to_string())
        .arg("--lock")
        .arg(dir.join(format!("agid-{port}.lock")))
        .arg("--log")
        .arg(dir.join(format!("featpkg-agid-{port}.log")))
        .arg("--spool")
        .arg(spool)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let until = Instant::now() + Duration::from_secs(15);
    while tcp_sockets(port, "0A") == 0 {
        assert!(
            Instant::now() < until,
            "featpkg-agid does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { child }
}

/// TCP sockets on 127.0.0.1 whose local port is `port`, in `state` (the
/// kernel's hex code: `01` established, `0A` listening), from `/proc/net/tcp`,
/// each counted once (a table changing while read may list one twice).
pub fn tcp_sockets(port: u16, state: &str) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let peers: std::collections::HashSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&state)).then(|| f[2])
        })
        .collect();
    peers.len()
}

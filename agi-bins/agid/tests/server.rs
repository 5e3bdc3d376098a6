//! featpkg-agid against a fake Asterisk on 127.0.0.1: what it sends for a call
//! (the same commands as the per-call program, then the served marker), and
//! how it bounds calls: the cap, the per-call deadline, slow and oversized
//! environment blocks, hostile blocks, requests it must not serve.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use featpkg_agi::fake::Call;
use featpkg_agi::program::conclude;
use featpkg_agi::{Agi, Session};
use featpkg_agid::connection::{Limits, SERVED_VARIABLE};
use featpkg_agid::routes;
use featpkg_agid::server::{Config, Server, Stopper};
use featpkg_operator_alert::OperatorAlert;

const SERVED: &str = "SET VARIABLE \"FEATPKG_AGI_SERVED\" \"1\"";

struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(spool: &Path, adjust: impl FnOnce(&mut Config)) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config {
        max_calls: 8,
        limits: Limits {
            spool: spool.to_path_buf(),
            ..Limits::default()
        },
    };
    adjust(&mut config);
    let addr = listener.local_addr().unwrap();
    let server = Server::new(listener, routes(), config).unwrap();
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run(Duration::from_secs(2)));
    Running {
        addr,
        stopper,
        thread: Some(thread),
    }
}

/// The block Asterisk sends a FastAGI server for `call`: `agi_network`,
/// the request path, then the local block with the URL as `agi_request`.
fn network_block(call: &Call, path: &str) -> String {
    let local = call.env_block();
    let rest = local.split_once('\n').unwrap().1;
    format!(
        "agi_network: yes\nagi_network_script: {path}\nagi_request: agi://127.0.0.1:4573/{path}\n{rest}"
    )
}

fn play_call(extension: &str, dir: &Path) -> Call {
    let mut call = Call::new(
        "featpkg-operator-alert",
        "202",
        "featpkg-operator-alert-noanswer",
        extension,
    );
    call.args = vec![
        "play".into(),
        "family=op_alert".into(),
        format!("dir={}", dir.display()),
        "deadline=1".into(),
    ];
    call
}

/// A fake Asterisk side of one FastAGI connection.
struct Peer {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, text: &[u8]) {
        let _ = self.writer.write_all(text);
    }

    /// The next line from the server; None at its end.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
        }
    }

    /// Answers every command with `reply(command)` until the server closes;
    /// returns the commands.
    fn converse(&mut self, reply: impl Fn(&str) -> String) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.line() {
            if line != "FAILURE" {
                self.send(format!("{}\n", reply(&line)).as_bytes());
            }
            lines.push(line);
        }
        lines
    }
}

/// What Asterisk answers on a live channel, for these tests: GET DATA times
/// out, a lookup finds nothing, everything else succeeds.
fn plain_reply(command: &str) -> String {
    if command.starts_with("GET DATA") {
        "200 result= (timeout)".into()
    } else if command.starts_with("DATABASE GET") || command.starts_with("GET VARIABLE") {
        "200 result=0".into()
    } else {
        "200 result=1".into()
    }
}

/// The commands the per-call program sends for the same block and replies:
/// the trait's code run on an in-memory session, as `run_stdio` runs it.
fn per_call_commands(block: &[u8], args: &[String]) -> Vec<String> {
    let replies: String = (0..40).map(|_| "200 result=1\n").collect();
    let mut input = block.to_vec();
    input.extend_from_slice(replies.as_bytes());
    let reader: Box<dyn BufRead> = Box::new(Cursor::new(input));
    let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let writer: Box<dyn Write> = Box::new(SharedVec(out.clone()));
    let mut agi: Session = match Agi::new(reader, writer) {
        Ok(agi) => agi,
        Err(_) => return vec!["FAILURE".into()],
    };
    let parsed = <OperatorAlert as featpkg_agi::AgiProgram>::parse_args(args);
    conclude::<OperatorAlert>(&mut agi, parsed);
    let text = String::from_utf8_lossy(&out.borrow()).into_owned();
    text.lines().map(str::to_string).collect()
}

struct SharedVec(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl Write for SharedVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn serves_a_call_with_the_per_call_programs_commands_then_marks_it_served() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let call = play_call("201", spool.path());
    let mut peer = Peer::connect(server.addr);
    peer.send(network_block(&call, "featpkg-operator-alert").as_bytes());
    let lines = peer.converse(plain_reply);
    assert_eq!(
        lines,
        [
            "DATABASE GET \"op_alert\" \"201\"",
            "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"0\"",
            SERVED,
        ]
    );
    assert_eq!(SERVED, format!("SET VARIABLE \"{SERVED_VARIABLE}\" \"1\""));
}

#[test]
fn hostile_blocks_get_exactly_what_the_per_call_program_sends() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let hostile: [&[u8]; 5] = [
        b"201\nagi_extension: 999",
        b"20\n1",
        b"201\n\nANSWER",
        b"2\xfc1",
        b"201;System(rm -rf /)",
    ];
    for extension in hostile {
        let call = play_call("201", spool.path());
        let block = network_block(&call, "featpkg-operator-alert").into_bytes();
        let block = replace_extension(&block, extension);
        let mut peer = Peer::connect(server.addr);
        peer.send(&block);
        let mut lines = peer.converse(|_| "200 result=1".into());
        assert_eq!(lines.pop().as_deref(), Some(SERVED), "{extension:?}");
        let local = &block[block.iter().position(|&b| b == b'\n').unwrap() + 1..];
        let local = &local[local.iter().position(|&b| b == b'\n').unwrap() + 1..];
        assert_eq!(lines, per_call_commands(local, &call.args), "{extension:?}");
        assert!(lines[0].contains("refused extension"), "{lines:?}");
    }
}

/// `block` with `agi_extension`'s value replaced by raw bytes.
fn replace_extension(block: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"agi_extension: ") {
            out.extend_from_slice(b"agi_extension: ");
            out.extend_from_slice(raw);
            out.push(b'\n');
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[test]
fn a_call_over_the_cap_is_refused_with_failure_and_the_slot_comes_back() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |c| c.max_calls = 1);
    let call = play_call("201", spool.path());
    let block = network_block(&call, "featpkg-operator-alert");
    let mut first = Peer::connect(server.addr);
    first.send(&block.as_bytes()[..20]); // holds the only slot
    std::thread::sleep(Duration::from_millis(100));
    let mut second = Peer::connect(server.addr);
    second.send(block.as_bytes());
    assert_eq!(second.line().as_deref(), Some("FAILURE"));
    assert_eq!(second.line(), None, "then the server closes");
    first.send(&block.as_bytes()[20..]);
    assert_eq!(
        first.converse(plain_reply).last().map(String::as_str),
        Some(SERVED)
    );
    drop(first);
    // The slot is freed once the first call's socket is closed on both sides.
    let served = (0..40).any(|_| {
        let mut third = Peer::connect(server.addr);
        third.send(block.as_bytes());
        let ok = third.converse(plain_reply).last().map(String::as_str) == Some(SERVED);
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(served, "a later call is served");
}

#[test]
fn no_reply_within_the_deadline_ends_the_call_with_failure() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |c| c.max_calls = 1);
    let call = play_call("201", spool.path()); // deadline=1
    let mut peer = Peer::connect(server.addr);
    peer.send(network_block(&call, "featpkg-operator-alert").as_bytes());
    assert_eq!(
        peer.line().as_deref(),
        Some("DATABASE GET \"op_alert\" \"201\"")
    );
    let asked = Instant::now();
    // Never answered: like the per-call program's watchdog, out after 1 s.
    assert_eq!(peer.line().as_deref(), Some("FAILURE"));
    assert_eq!(peer.line(), None);
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    drop(peer);
    // The slot is free again.
    let served = (0..40).any(|_| {
        let mut next = Peer::connect(server.addr);
        next.send(network_block(&call, "featpkg-operator-alert").as_bytes());
        let ok = next.converse(plain_reply).last().map(String::as_str) == Some(SERVED);
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(served, "a later call is served");
}

#[test]
fn a_slow_environment_block_is_cut_off_at_its_deadline() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |c| {
        c.limits.env_deadline = Duration::from_millis(400)
    });
    let call = play_call("201", spool.path());
    let block = network_block(&call, "featpkg-operator-alert").into_bytes();
    let mut peer = Peer::connect(server.addr);
    let mut dripper = peer.writer.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 20 ms: each read gets something, the block never ends in time.
    let drip = std::thread::spawn(move || {
        for b in block {
            if dripper.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(peer.line().as_deref(), Some("FAILURE"));
    assert_eq!(peer.line(), None);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    drop(peer);
    drip.join().unwrap();
}

#[test]
fn an_endless_line_or_block_is_refused_without_waiting_for_its_end() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let call = play_call("201", spool.path());
    let block = network_block(&call, "featpkg-operator-alert").into_bytes();
    // One 100 kB caller name; then a block of 100 kB spread over short lines.
    let long_line = replace_extension(&block, &vec![b'1'; 100_000]);
    let many_lines = replace_extension(&block, "1\n".repeat(50_000).as_bytes());
    for input in [long_line, many_lines] {
        let mut peer = Peer::connect(server.addr);
        let mut writer = peer.writer.try_clone().unwrap();
        let feed = std::thread::spawn(move || {
            let _ = writer.write_all(&input);
        });
        assert_eq!(peer.line().as_deref(), Some("FAILURE"));
        assert_eq!(peer.line(), None);
        drop(peer);
        feed.join().unwrap();
    }
}

#[test]
fn requests_it_must_not_serve_fail_without_the_served_mark() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let call = play_call("201", spool.path());
    // An unknown program, no path at all, a store outside the spool, a block cut short.
    let mut outside = call.clone();
    outside.args[2] = "dir=/etc/cron.d".into();
    let mut sneaky = call.clone();
    sneaky.args[2] = format!("dir={}/../../etc", spool.path().display());
    let cut = network_block(&call, "featpkg-operator-alert");
    let inputs = [
        network_block(&call, "featpkg-nothing"),
        network_block(&call, "").replace("agi_network_script: \n", ""),
        network_block(&outside, "featpkg-operator-alert"),
        network_block(&sneaky, "featpkg-operator-alert"),
        cut[..cut.len() / 2].to_string(),
    ];
    for (i, input) in inputs.iter().enumerate() {
        let mut peer = Peer::connect(server.addr);
        peer.send(input.as_bytes());
        if i == inputs.len() - 1 {
            peer.writer.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert_eq!(peer.converse(plain_reply), ["FAILURE"], "input {i}");
    }
    let files = std::fs::read_dir(spool.path()).unwrap().count();
    assert_eq!(files, 0, "nothing was written");
}

#[test]
fn bad_arguments_are_logged_marked_served_and_fail_as_in_process_mode() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let mut call = play_call("201", spool.path());
    call.args.push("colour=blue".into());
    let mut peer = Peer::connect(server.addr);
    peer.send(network_block(&call, "featpkg-operator-alert").as_bytes());
    let lines = peer.converse(plain_reply);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("VERBOSE \"featpkg operator-alert: bad arguments: unknown key"),
        "{lines:?}"
    );
    assert_eq!(lines[1..], [SERVED, "FAILURE"]);
}

#[test]
fn a_hangup_line_mid_call_ends_it_normally() {
    let spool = tempfile::tempdir().unwrap();
    let server = start(spool.path(), |_| {});
    let mut call = Call::new("featpkg-operator-alert", "201", "menu", "*600");
    call.args = vec!["menu".into(), format!("dir={}", spool.path().display())];
    let mut peer = Peer::connect(server.addr);
    peer.send(network_block(&call, "featpkg-operator-alert").as_bytes());
    assert_eq!(peer.line().as_deref(), Some("ANSWER"));
    peer.send(b"200 result=0\nHANGUP\n");
    let lines = peer.converse(featpkg_agi::fake::dead_channel_reply);
    assert_eq!(lines.last().map(String::as_str), Some(SERVED), "{lines:?}");
    assert!(!lines.contains(&"FAILURE".to_string()), "{lines:?}");
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = peer.reader.read_to_end(&mut rest);
}

//! The aarch64 binaries the bundle ships for ARM64 PBXs (MikoPBX runs on both
//! x86_64 and ARM64), from `target/aarch64-unknown-linux-musl/release`
//! (`bash .ci/build-static` builds them with cargo-zigbuild). Each must be a
//! static ELF for aarch64; under qemu-user they must do the same work as the
//! x86_64 ones: `featpkg` builds the same bundle bytes and installs, verifies
//! and uninstalls the same PBX tree (SQLite state included), the
//! operator-alert AGI program holds its conversations with the fake Asterisk
//! (`featpkg_agi::fake`), and the other programs start and refuse what they
//! must.
//!
//! The qemu runs need `qemu-aarch64-static` or `qemu-aarch64` on PATH
//! (`bash .ci/setup` installs qemu-user-static); without it cargo reports them
//! as ignored (build.rs sets the `qemu_aarch64` cfg), and the ELF check, which
//! always runs, says so on stderr.

mod common;

// The same fake AGI peer the AGI programs' own tests use (featpkg-agi's
// `fake-peer` module): it needs only std, so it is compiled in from its file.
#[allow(dead_code)]
#[path = "../agi-bins/agi/src/fake.rs"]
mod fake_agi;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use fake_agi::{Call, FakePeer};

const BINARIES: [&str; 5] = [
    "featpkg",
    "featpkg-operator-alert",
    "featpkg-busy-callback",
    "featpkg-busy-callback-watch",
    "featpkg-conference-guest-watch",
];

/// ELF e_machine of aarch64.
const EM_AARCH64: u16 = 183;

/// The aarch64 binaries; every one must be there.
fn aarch64_dir() -> PathBuf {
    let dir = repo().join("target/aarch64-unknown-linux-musl/release");
    for name in BINARIES {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `bash .ci/build-static` (bash .ci/run does; \
             bash .ci/setup installs the zig and cargo-zigbuild it needs)",
            dir.join(name).display()
        );
    }
    dir
}

/// qemu-user for aarch64 on PATH.
fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["qemu-aarch64-static", "qemu-aarch64"].map(|name| dir.join(name)))
        .find(|file| file.is_file())
}

fn qemu() -> PathBuf {
    find_qemu().expect(
        "qemu-aarch64-static (or qemu-aarch64) was on PATH when build.rs ran but is not now: \
         put it back, or `touch build.rs` to have these tests reported as skipped",
    )
}

/// One aarch64 binary under qemu.
fn aarch64(name: &str) -> Command {
    let mut cmd = Command::new(qemu());
    cmd.arg(aarch64_dir().join(name));
    cmd
}

/// The shipped x86_64 featpkg (what the aarch64 one is compared with).
fn x86_64_featpkg() -> Command {
    Command::new(static_bin_dir().join("featpkg"))
}

/// A PBX command (args, then `--root`) with `featpkg`, as `Pbx::command` runs the debug build.
fn on_pbx(mut featpkg: Command, pbx: &Pbx, args: &[&str]) -> Output {
    featpkg.args(args).arg("--root").arg(pbx.root());
    for (k, v) in &pbx.env {
        featpkg.env(k, v);
    }
    featpkg
        .env_remove("FEATPKG_TEST_FAIL_AT")
        .env_remove("FEATPKG_TEST_PAUSE_AT");
    featpkg.output().unwrap()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed: {}", text(out));
}

struct Elf {
    machine: u16,
    interpreter: bool,
    needed: usize,
}

/// The header, PT_INTERP and DT_NEEDED of a 64-bit little-endian ELF file.
fn parse_elf(bytes: &[u8]) -> Result<Elf, String> {
    let int = |at: usize, len: usize| -> Result<u64, String> {
        let field = bytes
            .get(at..at + len)
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(field
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    if !bytes.starts_with(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err(format!(
            "not a 64-bit little-endian ELF (class {}, data {})",
            bytes[4], bytes[5]
        ));
    }
    let machine = int(18, 2)? as u16;
    let phoff = int(32, 8)? as usize;
    let phentsize = int(54, 2)? as usize;
    let phnum = int(56, 2)? as usize;
    let (mut interpreter, mut needed) = (false, 0);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match int(ph, 4)? {
            3 => interpreter = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC (a static-pie binary has one): count DT_NEEDED.
                let (offset, size) = (int(ph + 8, 8)? as usize, int(ph + 32, 8)? as usize);
                for entry in (offset..offset + size).step_by(16) {
                    match int(entry, 8)? {
                        0 => break, // DT_NULL
                        1 => needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Elf {
        machine,
        interpreter,
        needed,
    })
}

#[test]
fn aarch64_binaries_are_static_aarch64_elf() {
    if cfg!(not(qemu_aarch64)) {
        // Straight to stderr: libtest would hold back an eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "cross_arch: SKIPPED the qemu runs of the aarch64 binaries: no qemu-aarch64-static or \
             qemu-aarch64 on PATH when build.rs ran (bash .ci/setup installs qemu-user-static; \
             after installing it, `touch build.rs`); only their ELF headers are checked"
        );
    }
    let dir = aarch64_dir();
    for name in BINARIES {
        let path = dir.join(name);
        let elf = parse_elf(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            elf.machine,
            EM_AARCH64,
            "{}: e_machine {} is not aarch64",
            path.display(),
            elf.machine
        );
        assert!(
            !elf.interpreter,
            "{}: has a program interpreter (PT_INTERP): not static",
            path.display()
        );
        assert_eq!(
            elf.needed,
            0,
            "{}: needs shared libraries (DT_NEEDED): not static",
            path.display()
        );
    }
}

#[test]
#[cfg_attr(
    not(qemu_aarch64),
    ignore = "skipped: no qemu-aarch64-static or qemu-aarch64 on PATH (bash .ci/setup installs qemu-user-static)"
)]
fn aarch64_featpkg_builds_installs_and_uninstalls_like_x86_64() {
    // --version
    let x86 = x86_64_featpkg().arg("--version").output().unwrap();
    let arm = aarch64("featpkg").arg("--version").output().unwrap();
    assert_ok("featpkg --version under qemu", &arm);
    assert_eq!(text(&arm), text(&x86));

    // build (the binaries from target/<triple>/release, as `featpkg build`
    // finds them by default): the same archive, byte for byte, as the x86_64
    // featpkg's.
    let build = |mut featpkg: Command| {
        let out = tempfile::tempdir().unwrap();
        let built = featpkg
            .current_dir(repo())
            .arg("build")
            .arg("--source")
            .arg(repo())
            .arg("--out")
            .arg(out.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert_ok("featpkg build", &built);
        let zips: Vec<PathBuf> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "zip"))
            .collect();
        assert_eq!(zips.len(), 1, "{zips:?}");
        (out, zips[0].clone())
    };
    let (_x86_dir, bundle) = build(x86_64_featpkg());
    let (_arm_dir, arm_bundle) = build(aarch64("featpkg"));
    assert!(
        std::fs::read(&arm_bundle).unwrap() == std::fs::read(&bundle).unwrap(),
        "the aarch64 featpkg built {} differently from the x86_64 featpkg's {}",
        arm_bundle.display(),
        bundle.display()
    );
    let bundle = bundle.to_str().unwrap();
    // Every feature, so every program is installed.
    let params = repo().join("tests/fixtures/queue-failover.json");
    let install = [
        "install",
        bundle,
        "--set",
        "call-waiting.endpoints=201,202",
        "--set",
        "conference-guest.conference=700",
        "--set",
        "conference-guest.provider=provider",
        "--set",
        "conference-guest.number=0551234567",
        "--params",
        params.to_str().unwrap(),
    ];

    // install: the same tree as the x86_64 featpkg's (same machine key, so the
    // same generated secrets), reload through the fake Asterisk CLI included.
    let x86_pbx = Pbx::new();
    assert_ok(
        "x86_64 featpkg install",
        &on_pbx(x86_64_featpkg(), &x86_pbx, &install),
    );
    let pbx = Pbx::new();
    pbx.share_machine_key(&x86_pbx);
    let before = pbx.snapshot();
    let installed = on_pbx(aarch64("featpkg"), &pbx, &install);
    assert_ok("featpkg install under qemu", &installed);
    assert!(
        text(&installed).contains("install featpkg-recipes"),
        "{}",
        text(&installed)
    );
    assert!(!pbx.asterisk_log().is_empty(), "no reload was asked for");
    // The same tree but for the programs: each install puts its own
    // architecture's binaries into agi-bin (the aarch64 featpkg the aarch64 ones).
    let (mut x86_tree, mut tree) = (x86_pbx.snapshot(), pbx.snapshot());
    let mut programs = 0;
    for (path, (bytes, _)) in x86_tree.iter_mut() {
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let name = Path::new(path).file_name().unwrap();
        assert!(
            *bytes == std::fs::read(static_bin_dir().join(name)).unwrap(),
            "x86_64 install: {path} is not the x86_64 build"
        );
        let arm = &mut tree
            .get_mut(path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .0;
        assert!(
            *arm == std::fs::read(aarch64_dir().join(name)).unwrap(),
            "install under qemu: {path} is not the aarch64 build"
        );
        bytes.clear();
        arm.clear();
        programs += 1;
    }
    assert_eq!(programs, 4, "programs installed");
    assert_same_tree(&x86_tree, &tree);

    // status and verify read the SQLite state the aarch64 build wrote.
    let status = on_pbx(aarch64("featpkg"), &pbx, &["status"]);
    assert_ok("featpkg status under qemu", &status);
    let x86_status = on_pbx(x86_64_featpkg(), &x86_pbx, &["status"]);
    assert_eq!(text(&status), text(&x86_status));
    assert_ok(
        "featpkg verify under qemu",
        &on_pbx(aarch64("featpkg"), &pbx, &["verify"]),
    );

    // uninstall: back to the exact bytes.
    let removed = on_pbx(aarch64("featpkg"), &pbx, &["uninstall", BUNDLE]);
    assert_ok("featpkg uninstall under qemu", &removed);
    assert_same_tree(&before, &pbx.snapshot());
}

/// An executable script that runs `name` under qemu with its arguments, for
/// `FakePeer`, which starts a program path. Written once per test process.
fn qemu_wrapper(name: &'static str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static WRAPPERS: std::sync::Mutex<Vec<(&str, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut wrappers = WRAPPERS.lock().unwrap();
    if let Some((_, path)) = wrappers.iter().find(|(n, _)| *n == name) {
        return path.clone();
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(name);
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec {} {} \"$@\"\n",
            quote(&qemu()),
            quote(&aarch64_dir().join(name))
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A child another test thread forked while the script was open for writing
    // holds that descriptor until it execs: running the script fails with
    // ETXTBSY until then. Once one run got through, none can fail that way.
    for attempt in 0.. {
        match Command::new(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(26) && attempt < 100 => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("run {}: {e}", path.display()),
        }
    }
    wrappers.push((name, path.clone()));
    path
}

const SCRIPT: &str = "/var/lib/asterisk/agi-bin/featpkg-operator-alert";

fn operator_alert(mode: &str, callerid: &str, exten: &str, dir: &Path) -> FakePeer {
    let context = if mode == "menu" {
        "featpkg-operator-alert-menu"
    } else {
        "featpkg-operator-alert-noanswer"
    };
    let mut call = Call::new(SCRIPT, callerid, context, exten);
    call.args = vec![
        mode.to_string(),
        "family=op_alert".to_string(),
        "pattern=_2XX".to_string(),
        format!("dir={}", dir.display()),
        "deadline=5".to_string(),
        "maxrec=60".to_string(),
    ];
    FakePeer::start(&qemu_wrapper("featpkg-operator-alert"), &call, &[])
}

fn exits_ok(peer: &mut FakePeer) {
    let (status, _) = peer
        .wait(Duration::from_secs(5))
        .expect("the program must exit by itself");
    assert!(
        status.success(),
        "exit status {status}; transcript {:?}",
        peer.transcript
    );
}

#[test]
#[cfg_attr(
    not(qemu_aarch64),
    ignore = "skipped: no qemu-aarch64-static or qemu-aarch64 on PATH (bash .ci/setup installs qemu-user-static)"
)]
fn aarch64_operator_alert_records_plays_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("operator-alert");

    // *600, 1: record.
    let mut peer = operator_alert("menu", "201", "*600", &dir);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=1");
    peer.expect(
        "STREAM FILE \"vm-rec-temp\" \"\"",
        "200 result=0 endpos=28800",
    );
    // Recorded to a temporary name, renamed over 201.wav once it holds audio.
    let record = format!(
        "RECORD FILE \"{}/201.new\" \"wav\" \"#\" 60000 BEEP",
        dir.display()
    );
    assert_eq!(
        peer.next_command(Duration::from_secs(5)).as_deref(),
        Some(record.as_str())
    );
    assert!(dir.is_dir(), "the program creates the recordings directory");
    // What Asterisk writes: format_wav's 44-byte header, then the audio.
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36u32 + 192_000).to_le_bytes());
    wav.extend_from_slice(
        b"WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data",
    );
    wav.extend_from_slice(&192_000u32.to_le_bytes());
    wav.resize(44 + 192_000, 0x11);
    std::fs::write(dir.join("201.new.wav"), &wav).unwrap();
    peer.reply("200 result=35 (dtmf) endpos=96000");
    peer.expect("DATABASE PUT \"op_alert\" \"201\" \"1\"", "200 result=1");
    assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), wav);
    assert!(!dir.join("201.new.wav").exists());
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    exits_ok(&mut peer);

    // A call to 201 that is not answered: the message plays.
    let mut peer = operator_alert("play", "300", "201", &dir);
    peer.expect("DATABASE GET \"op_alert\" \"201\"", "200 result=1 (1)");
    peer.expect("CHANNEL STATUS", "200 result=4");
    peer.expect("EXEC Progress", "200 result=0");
    peer.expect(
        &format!("STREAM FILE \"{}/201\" \"\"", dir.display()),
        "200 result=0 endpos=64000",
    );
    peer.expect(
        "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"1\"",
        "200 result=1",
    );
    exits_ok(&mut peer);

    // *600, 2: delete; only the caller's own message goes.
    std::fs::write(dir.join("203.wav"), b"someone else's").unwrap();
    let mut peer = operator_alert("menu", "201", "*600", &dir);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=2");
    peer.expect("DATABASE DEL \"op_alert\" \"201\"", "200 result=1");
    assert!(!dir.join("201.wav").exists());
    assert!(dir.join("203.wav").exists());
    peer.expect(
        "STREAM FILE \"vm-tempremoved\" \"\"",
        "200 result=0 endpos=12000",
    );
    exits_ok(&mut peer);

    // Hangup mid-menu: SIGHUP (qemu hands it to the program) ends the call.
    let mut peer = operator_alert("menu", "202", "*600", &dir);
    peer.expect("ANSWER", "200 result=0");
    assert!(
        peer.next_command(Duration::from_secs(5))
            .unwrap()
            .starts_with("GET DATA")
    );
    // Asterisk is slow to answer; the caller hangs up meanwhile.
    let hung = peer.hangup();
    let (status, at) = peer
        .wait(Duration::from_secs(4))
        .expect("must exit after SIGHUP, well before its 5 s deadline");
    let took = at.duration_since(hung);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(status.success(), "{status}");
}

#[test]
#[cfg_attr(
    not(qemu_aarch64),
    ignore = "skipped: no qemu-aarch64-static or qemu-aarch64 on PATH (bash .ci/setup installs qemu-user-static)"
)]
fn aarch64_busy_callback_and_watchers_start_and_refuse_like_x86_64() {
    // The busy-callback AGI program: the environment block read, bad
    // arguments reported to Asterisk's log, exit 2.
    let mut call = Call::new(
        "/var/lib/asterisk/agi-bin/featpkg-busy-callback",
        "201",
        "featpkg-busy-callback-offer",
        "202",
    );
    call.args = vec!["bogus".to_string()];
    let mut peer = FakePeer::start(&qemu_wrapper("featpkg-busy-callback"), &call, &[]);
    let verbose = peer.next_command(Duration::from_secs(5)).unwrap();
    assert!(
        verbose.starts_with("VERBOSE \"featpkg busy-callback: bad arguments: first argument"),
        "{verbose}"
    );
    peer.reply("200 result=1");
    let (status, _) = peer.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), Some(2));

    // The watchers: a bad option, and missing AMI credentials (lock taken, log
    // written, exit 2 so cron tries again), exactly as the x86_64 builds do.
    let x86_dir = static_bin_dir();
    for (name, required) in [
        ("featpkg-busy-callback-watch", &[][..]),
        (
            "featpkg-conference-guest-watch",
            &[
                "--conference",
                "700",
                "--tech",
                "PJSIP",
                "--provider",
                "provider",
                "--number",
                "0551234567",
            ][..],
        ),
    ] {
        let bad = ["--lock"];
        let arm = aarch64(name).args(bad).output().unwrap();
        let x86 = Command::new(x86_dir.join(name)).args(bad).output().unwrap();
        assert_eq!(arm.status.code(), Some(2), "{name}: {}", text(&arm));
        assert_eq!(text(&arm), text(&x86), "{name}");

        let tmp = tempfile::tempdir().unwrap();
        let (lock, log, ami) = (
            tmp.path().join("watch.lock"),
            tmp.path().join("watch.log"),
            tmp.path().join("ami.conf"),
        );
        let arm = aarch64(name)
            .args(required)
            .arg("--lock")
            .arg(&lock)
            .arg("--log")
            .arg(&log)
            .arg("--ami")
            .arg(&ami)
            .output()
            .unwrap();
        assert_eq!(arm.status.code(), Some(2), "{name}: {}", text(&arm));
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.contains(&format!(
                "AMI credentials: {}: No such file or directory",
                ami.display()
            )),
            "{name}: {logged}"
        );
    }
}

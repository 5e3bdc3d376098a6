//! A real Asterisk for the tests: Asterisk 22 built from `../shared/vendor` by
//! `.ci/setup-asterisk` (cached outside the clone), started in a temp tree of
//! its own with free loopback ports, configured from
//! `tests/fixtures/real-asterisk/` (PJSIP and IAX2 phones and a trunk looping
//! back into the same Asterisk; see that folder's README).
//!
//! One Asterisk per test binary ([`shared`]); the tests of a binary take turns
//! on it. It is stopped when its handle drops and, for the shared one that is
//! never dropped, when the test process ends however it ends: Asterisk runs
//! under a small shell whose standard input is a pipe from the test process,
//! and that shell kills Asterisk as soon as the pipe closes (a panic, an
//! abort, a `kill -9` of the test binary). No test touches a system Asterisk:
//! every directory, the control socket and every port are the scratch
//! instance's own.
//!
//! featpkg sees this PBX the way it sees any PBX tree: `--root <tree>/root`
//! with `--asterisk-conf` naming the scratch `asterisk.conf`. Asterisk itself
//! needs real absolute paths in `[directories]` (they are also what featpkg
//! renders into the dialplan), so `<root>/<the scratch tree's path>` is a link
//! back to the scratch tree: featpkg writes exactly where Asterisk reads, and
//! `<root>/etc` (cron.d, crontab) is the tree's own, never the system's.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::{featpkg_bin, repo, text};

/// The tests' own AMI login (tests/fixtures/real-asterisk/manager.conf).
pub const TEST_AMI_USER: &str = "featpkg-test";
const TEST_AMI_SECRET: &str = "featpkg-test-secret";

/// Modules the fixture's modules.conf does not load: the features' own
/// `load =>` lines bring them, and a reset unloads them again.
pub const FEATURE_MODULES: &[&str] = &[
    "func_extstate.so",
    "res_manager_devicestate.so",
    "app_confbridge.so",
];

/// Loopback ports the scratch Asterisk listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub ami: u16,
    pub sip: u16,
    pub phone: u16,
    pub iax: u16,
    /// One port per IAX2 phone (301–303) and one for the IAX2 trunk's far end.
    pub iax_phones: [u16; 4],
    pub rtp_start: u16,
}

/// One running scratch Asterisk.
pub struct Asterisk {
    tree: tempfile::TempDir,
    prefix: PathBuf,
    pub ports: Ports,
    /// The shell that runs Asterisk; closing its stdin stops Asterisk.
    watchdog: Option<(Child, ChildStdin)>,
}

/// The install prefix of the Asterisk that `.ci/setup-asterisk` built (it
/// builds it when the cache has none: about 10 minutes).
pub fn prefix() -> PathBuf {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("FEATPKG_ASTERISK_PREFIX") {
                return PathBuf::from(p);
            }
            let out = Command::new("bash")
                .arg(repo().join(".ci/setup-asterisk"))
                .stderr(Stdio::inherit())
                .output()
                .expect("bash .ci/setup-asterisk");
            assert!(out.status.success(), ".ci/setup-asterisk failed");
            let stdout = String::from_utf8(out.stdout).unwrap();
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("setup-asterisk printed no prefix"),
            )
        })
        .clone()
}

/// The test binary's Asterisk, started on first use. Tests hold the guard for
/// their whole run, so they take turns; a test that panicked leaves the lock
/// poisoned, which the next one ignores (it resets the PBX anyway).
pub fn shared() -> MutexGuard<'static, Asterisk> {
    static SHARED: OnceLock<Mutex<Asterisk>> = OnceLock::new();
    let mut guard = SHARED
        .get_or_init(|| Mutex::new(Asterisk::start()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.reset();
    guard
}

/// `n` distinct free UDP ports on loopback (held together while picked, so
/// the kernel cannot hand out the same one twice).
fn free_udp_ports<const N: usize>() -> [u16; N] {
    let sockets: Vec<UdpSocket> = (0..N)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| sockets[i].local_addr().unwrap().port())
}

impl Asterisk {
    /// Lays out a scratch tree, starts Asterisk in it and waits until it has
    /// fully booted.
    pub fn start() -> Asterisk {
        let prefix = prefix();
        let tree = tempfile::Builder::new()
            .prefix("featpkg-ast-")
            .tempdir()
            .unwrap();
        // RTP: 200 even-aligned ports of our own, picked from the pid so two
        // test binaries running at once do not share a range.
        let rtp_start = 20000 + (std::process::id() % 200) as u16 * 200;
        let [sip, phone, iax, iax_301, iax_302, iax_303, iax_provider] = free_udp_ports::<7>();
        let ami = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ports = Ports {
            ami,
            sip,
            phone,
            iax,
            iax_phones: [iax_301, iax_302, iax_303, iax_provider],
            rtp_start,
        };
        let mut ast = Asterisk {
            tree,
            prefix,
            ports,
            watchdog: None,
        };
        ast.lay_out();
        ast.write_configs();
        ast.boot();
        ast
    }

    /// The scratch tree's own directories, as Asterisk sees them.
    pub fn ast_dir(&self) -> PathBuf {
        self.tree.path().join("ast")
    }

    /// featpkg's `--root`.
    pub fn root(&self) -> PathBuf {
        self.tree.path().join("root")
    }

    /// astetcdir (a real path).
    pub fn etc(&self) -> PathBuf {
        self.ast_dir().join("etc/asterisk")
    }

    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.etc().join(name)
    }

    pub fn spool(&self) -> PathBuf {
        self.ast_dir().join("var/spool/asterisk")
    }

    pub fn var_lib(&self) -> PathBuf {
        self.ast_dir().join("var/lib/asterisk")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.ast_dir().join("var/log/asterisk")
    }

    /// The scratch asterisk.conf (a real path; also its runtime path).
    pub fn conf(&self) -> PathBuf {
        self.etc().join("asterisk.conf")
    }

    /// The tree's own /etc (where cron lines go), inside featpkg's root.
    pub fn sys_etc(&self) -> PathBuf {
        self.root().join("etc")
    }

    fn binary(&self) -> PathBuf {
        self.prefix.join("sbin/asterisk")
    }

    /// The CLI featpkg reloads with (`--asterisk-cmd`).
    pub fn cli_command(&self) -> String {
        format!("{} -C {}", self.binary().display(), self.conf().display())
    }

    fn lay_out(&self) {
        let ast = self.ast_dir();
        for dir in [
            "etc/asterisk",
            "var/lib/asterisk/agi-bin",
            "var/spool/asterisk",
            "var/log/asterisk",
            "var/run/asterisk",
            "var/cache/asterisk",
        ] {
            std::fs::create_dir_all(ast.join(dir)).unwrap();
        }
        let data = self.var_lib();
        let link = |target: &Path, at: &Path| std::os::unix::fs::symlink(target, at).unwrap();
        // Stasis fails to start without the XML documentation.
        link(
            &self.prefix.join("var/lib/asterisk/documentation"),
            &data.join("documentation"),
        );
        std::fs::create_dir_all(data.join("sounds")).unwrap();
        link(
            Path::new("/usr/share/asterisk/sounds/en_US_f_Allison"),
            &data.join("sounds/en"),
        );
        link(Path::new("/usr/share/asterisk/moh"), &data.join("moh"));
        // featpkg's view: <root>/<tree path>/ast is the tree's ast directory.
        let inner = self.root().join(ast.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
        link(&ast, &inner);
        std::fs::create_dir_all(self.sys_etc().join("cron.d")).unwrap();
    }

    /// Writes asterisk.conf and the fixture configs with this instance's ports.
    fn write_configs(&self) {
        let ast = self.ast_dir();
        let d = |rel: &str| ast.join(rel).display().to_string();
        let asterisk_conf = format!(
            "[directories]\n\
             astcachedir => {}\n\
             astetcdir => {}\n\
             astmoddir => {}\n\
             astvarlibdir => {}\n\
             astdbdir => {}\n\
             astkeydir => {}\n\
             astdatadir => {}\n\
             astagidir => {}\n\
             astspooldir => {}\n\
             astrundir => {}\n\
             astlogdir => {}\n\
             astsbindir => {}\n\
             \n\
             [options]\n\
             verbose = 5\n\
             nocolor = yes\n\
             hideconnect = yes\n",
            d("var/cache/asterisk"),
            d("etc/asterisk"),
            self.prefix.join("lib/asterisk/modules").display(),
            d("var/lib/asterisk"),
            d("var/lib/asterisk"),
            d("var/lib/asterisk"),
            d("var/lib/asterisk"),
            d("var/lib/asterisk/agi-bin"),
            d("var/spool/asterisk"),
            d("var/run/asterisk"),
            d("var/log/asterisk"),
            self.prefix.join("sbin").display(),
        );
        std::fs::write(self.conf(), asterisk_conf).unwrap();
        let fixtures = repo().join("tests/fixtures/real-asterisk");
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "conf") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(self.etc().join(path.file_name().unwrap()), self.fill(&text)).unwrap();
        }
    }

    /// Replaces the fixture's `@NAME@` placeholders with this instance's values.
    pub fn fill(&self, text: &str) -> String {
        let p = self.ports;
        text.replace("@AMI_PORT@", &p.ami.to_string())
            .replace("@SIP_PORT@", &p.sip.to_string())
            .replace("@PHONE_PORT@", &p.phone.to_string())
            .replace("@IAX_PORT@", &p.iax.to_string())
            .replace("@IAX_301_PORT@", &p.iax_phones[0].to_string())
            .replace("@IAX_302_PORT@", &p.iax_phones[1].to_string())
            .replace("@IAX_303_PORT@", &p.iax_phones[2].to_string())
            .replace("@IAX_PROVIDER_PORT@", &p.iax_phones[3].to_string())
            .replace("@RTP_START@", &p.rtp_start.to_string())
            .replace("@RTP_END@", &(p.rtp_start + 199).to_string())
    }

    fn boot(&mut self) {
        let console = self.log_dir().join("console.log");
        // The watchdog: Asterisk in the foreground (-f) under a shell that
        // kills it once its stdin (a pipe from this process) closes.
        let script = r#"
            "$1" -C "$2" -f -n >"$3" 2>&1 </dev/null &
            pid=$!
            echo "$pid" >"$4"
            cmd=
            read -r cmd || true
            kill -TERM "$pid" 2>/dev/null
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 "$pid" 2>/dev/null || exit 0
                sleep 0.2
            done
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            # The test process is gone (not a restart): take the tree too.
            [ "$cmd" = keep ] || rm -rf "$5"
            exit 0
        "#;
        let pid_file = self.ast_dir().join("var/run/asterisk/watchdog-child.pid");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("featpkg-asterisk-watchdog")
            .arg(self.binary())
            .arg(self.conf())
            .arg(&console)
            .arg(&pid_file)
            .arg(self.tree.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the scratch Asterisk");
        let stdin = child.stdin.take().unwrap();
        self.watchdog = Some((child, stdin));
        self.wait_fully_booted(Duration::from_secs(90));
    }

    /// Polls `core waitfullybooted` until Asterisk answers it.
    fn wait_fully_booted(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.cli_output("core waitfullybooted");
            if out.status.success() && text(&out).contains("fully booted") {
                return;
            }
            if let Some((child, _)) = &mut self.watchdog
                && let Ok(Some(_)) = child.try_wait()
            {
                panic!(
                    "the scratch Asterisk exited while booting:\n{}",
                    self.console_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the scratch Asterisk did not boot within {limit:?}:\n{}",
                self.console_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_dir().join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn cli_output(&self, command: &str) -> Output {
        Command::new(self.binary())
            .arg("-C")
            .arg(self.conf())
            .arg("-rx")
            .arg(command)
            .output()
            .unwrap()
    }

    /// One CLI command's output (`asterisk -rx`).
    pub fn cli(&self, command: &str) -> String {
        let out = self.cli_output(command);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops Asterisk as `core stop now` does, and waits for it.
    pub fn stop(&mut self) {
        self.stop_keeping_tree();
    }

    fn stop_keeping_tree(&mut self) {
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = self.cli_output("core stop now");
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Stops and starts Asterisk on the same tree (what a PBX restart does:
    /// AstDB, spool and configs stay).
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// The full log (verbose 5, notices, warnings, errors, DTMF) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir().join("full")).unwrap_or_default()
    }

    /// Where the log ends now: pass it to [`Asterisk::log_since`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    pub fn log_since(&self, mark: usize) -> String {
        let log = self.log();
        log.get(mark..).unwrap_or(&log).to_string()
    }

    /// A featpkg command on this PBX.
    pub fn featpkg_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(featpkg_bin());
        cmd.args(args)
            .arg("--root")
            .arg(self.root())
            .arg("--asterisk-conf")
            .arg(self.conf())
            .arg("--asterisk-cmd")
            .arg(self.cli_command())
            .env_remove("FEATPKG_ASTERISK_CMD")
            .env_remove("FEATPKG_TEST_FAIL_AT")
            .env_remove("FEATPKG_TEST_PAUSE_AT");
        cmd
    }

    pub fn featpkg(&self, args: &[&str]) -> Output {
        self.featpkg_command(args).output().unwrap()
    }

    /// Runs featpkg and asserts it succeeded; returns its output.
    pub fn featpkg_ok(&self, args: &[&str]) -> String {
        let out = self.featpkg(args);
        assert!(
            out.status.success(),
            "featpkg {args:?} failed:\n{}\n--- Asterisk log (tail)\n{}",
            text(&out),
            tail(&self.log(), 40)
        );
        text(&out)
    }

    /// The tests' own AMI connection, with events on.
    pub fn ami(&self) -> featpkg_ami::Ami {
        self.ami_login("on")
    }

    /// An AMI connection for actions only (no events to wade through).
    pub fn control_ami(&self) -> featpkg_ami::Ami {
        self.ami_login("off")
    }

    fn ami_login(&self, events: &str) -> featpkg_ami::Ami {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.ports.ami).parse().unwrap();
        let creds = featpkg_ami::Credentials::new(addr, TEST_AMI_USER, TEST_AMI_SECRET);
        featpkg_ami::Ami::connect(&creds, events, Duration::from_secs(5))
            .expect("log in to the scratch Asterisk's AMI")
    }

    /// Polls the log written since `mark` until `done` accepts it (up to
    /// `limit`), and returns it; panics naming `what`, with the log's tail.
    pub fn wait_log(
        &self,
        mark: usize,
        what: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log_since(mark);
            if done(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log shows no {what} within {limit:?}:\n{}",
                tail(&log, 80)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Puts the PBX back as the fixtures describe it, whatever a previous test
    /// left: featpkg's state, spool, programs and cron lines gone, configs
    /// rewritten, the features' modules unloaded, everything reloaded, AstDB
    /// phone behaviour cleared.
    pub fn reset(&mut self) {
        if self.watchdog.is_none() {
            self.boot();
        }
        let var_lib = self.var_lib();
        let _ = std::fs::remove_dir_all(var_lib.join("featpkg"));
        let _ = std::fs::remove_dir_all(var_lib.join("featpkg-bin"));
        let _ = std::fs::remove_dir_all(self.spool().join("featpkg"));
        let _ = std::fs::remove_dir_all(self.etc().join("featpkg-ami"));
        for entry in std::fs::read_dir(var_lib.join("agi-bin")).unwrap() {
            let _ = std::fs::remove_file(entry.unwrap().path());
        }
        let _ = std::fs::remove_dir_all(self.sys_etc());
        std::fs::create_dir_all(self.sys_etc().join("cron.d")).unwrap();
        self.write_configs();
        for module in FEATURE_MODULES {
            self.cli(&format!("module unload {module}"));
        }
        for reload in [
            "module reload pbx_config.so",
            "module reload res_pjsip.so",
            "module reload chan_iax2.so",
            "module reload manager",
            "module reload app_queue.so",
            "channel request hangup all",
            "database deltree phone",
            "database deltree phone-dtmf",
        ] {
            self.cli(reload);
        }
    }

    /// The cron command featpkg installed for `feature`'s watcher (the line
    /// without its schedule and user columns), found in the tree's cron.d
    /// files or crontab.
    pub fn cron_command(&self, feature: &str) -> String {
        self.cron_command_running(&format!("featpkg-{feature}-watch"))
    }

    /// The command of the first cron line that names `program` (the line
    /// without its schedule and user columns), from the tree's cron.d files
    /// or crontab.
    pub fn cron_command_running(&self, program: &str) -> String {
        let mut files = vec![self.sys_etc().join("crontab")];
        if let Ok(dir) = std::fs::read_dir(self.sys_etc().join("cron.d")) {
            files.extend(dir.map(|e| e.unwrap().path()));
        }
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for line in text.lines() {
                if line.starts_with('#') || !line.contains(program) {
                    continue;
                }
                // m h dom mon dow user command…
                let command: Vec<&str> = line.split_whitespace().skip(6).collect();
                return command.join(" ");
            }
        }
        panic!("no cron line runs {program}");
    }

    /// Runs a feature's watcher cron command once, as cron does each minute;
    /// the watcher it starts is killed when the handle drops.
    pub fn start_cron_command(&self, feature: &str) -> Daemon {
        self.start_cron_command_running(&format!("featpkg-{feature}-watch"))
    }

    /// Runs the cron command that names `program` once, as cron does; the
    /// daemon it starts (the shell `exec`s it: same pid) is killed when the
    /// handle drops.
    pub fn start_cron_command_running(&self, program: &str) -> Daemon {
        let command = self.cron_command_running(program);
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Daemon { child }
    }

    /// Hangs up every channel and waits until none is left, so that every
    /// dialplan (`h` extensions included) has ended and the log holds all
    /// that the calls did.
    pub fn hang_up_all_and_wait(&self) {
        self.cli("channel request hangup all");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let count = self.cli("core show channels count");
            if count.lines().any(|l| l.trim() == "0 active channels") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "channels left after hanging up all:\n{count}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A watcher the test started; killed on drop.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How a phone (or the trunk's far end) answers: AstDB `phone/<exten>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhoneMode {
    /// Answer, stay up, record the DTMF it hears (the default).
    Answer,
    /// Refuse with `Busy()` (SIP 486, IAX2 busy).
    Busy,
    /// Ring and never answer.
    Ring,
}

impl Asterisk {
    /// Sets how `exten` answers from now on.
    pub fn set_phone(&self, exten: &str, mode: PhoneMode) {
        let value = match mode {
            PhoneMode::Answer => "answer",
            PhoneMode::Busy => "busy",
            PhoneMode::Ring => "ring",
        };
        let out = self.cli(&format!("database put phone {exten} {value}"));
        assert!(out.contains("Updated database successfully"), "{out}");
    }

    /// The DTMF the phone or far end `exten` has heard so far.
    pub fn phone_dtmf(&self, exten: &str) -> String {
        let out = self.cli(&format!("database get phone-dtmf {exten}"));
        out.trim()
            .strip_prefix("Value: ")
            .unwrap_or_default()
            .to_string()
    }

    /// The channel a phone places a call on: a real PJSIP call for 2XX, a real
    /// IAX2 call for 3XX, from the phone side into the PBX.
    pub fn phone_channel(from: &str, dialled: &str) -> String {
        if from.starts_with('3') {
            format!("IAX2/pbx{from}/{dialled}")
        } else {
            format!("PJSIP/{dialled}@phone{from}")
        }
    }

    /// Phone `from` dials `dialled`; once the PBX answers, the phone stays on
    /// the line (`[phones-caller]`). Returns the Originate's ActionID.
    pub fn call(&self, ami: &mut featpkg_ami::Ami, from: &str, dialled: &str) -> String {
        let channel = Self::phone_channel(from, dialled);
        ami.originate(&[
            ("Channel", &channel),
            ("Context", "phones-caller"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Timeout", "60000"),
            ("CallerID", &format!("\"Phone {from}\" <{from}>")),
        ])
        .unwrap_or_else(|e| panic!("originate {channel}: {e}"))
    }

    /// `DEVICE_STATE(<device>)` as the dialplan reads it.
    pub fn device_state(&self, ami: &mut featpkg_ami::Ami, device: &str) -> String {
        let reply = ami
            .send(
                featpkg_ami::action(
                    "Getvar",
                    &[("Variable", &format!("DEVICE_STATE({device})"))],
                )
                .unwrap(),
            )
            .unwrap();
        reply.get("Value").unwrap_or_default().to_string()
    }

    /// Polls `DEVICE_STATE(<device>)` until it is `want` (up to `limit`).
    pub fn wait_device_state(
        &self,
        ami: &mut featpkg_ami::Ami,
        device: &str,
        want: &str,
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.device_state(ami, device);
            if state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{device} is {state}, not {want}, after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits for a `UserEvent` named `name` whose fields include `fields`.
pub fn wait_user_event(
    ami: &mut featpkg_ami::Ami,
    name: &str,
    fields: &[(&str, &str)],
    limit: Duration,
) -> featpkg_ami::Message {
    ami.wait_event(limit, |m| {
        m.event() == Some("UserEvent")
            && m.get("UserEvent") == Some(name)
            && fields.iter().all(|(k, v)| m.get(k) == Some(*v))
    })
    .unwrap_or_else(|e| panic!("no UserEvent {name} {fields:?} within {limit:?}: {e}"))
}

//! End-to-end on a MikoPBX-shaped PBX (`--target mikopbx`): blocks go into the
//! rows of MikoPBX's configuration database (custom files, employees' advanced
//! options), never into /etc/asterisk, which only MikoPBX (here the fake reload,
//! tests/support/fake-mikopbx-reload) writes.
//!
//! The tree is tests/fixtures/mikopbx/root; the database is created from
//! tests/fixtures/mikopbx/config.sql; the bundle is extracted into the module
//! directory the way MikoPBX does and installed from there, as the module's shim
//! does; then the fake reload "boots" the PBX (writes every file it generates,
//! modules.conf with the module's generateModulesConf() hook text) and the fake
//! Asterisk starts with modules.conf's modules.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BUNDLE, bundle, copy_tree, featpkg_bin, repo, text};
use rusqlite::types::Value;

/// Where MikoPBX extracts the module (runtime path).
const MODULE_DIR: &str = "/storage/usbdisk1/mikopbx/custom_modules/ModuleFeatpkg";
const CONFIG_DB: &str = "/cf/conf/mikopbx.db";
const EXTENSIONS: &str = "/etc/asterisk/extensions.conf";
const MODULES: &str = "/etc/asterisk/modules.conf";
const MANAGER: &str = "/etc/asterisk/manager.conf";
const PJSIP: &str = "/etc/asterisk/pjsip.conf";
const CRONTAB: &str = "/var/spool/cron/crontabs/root";
/// The text the module's generateModulesConf() hook hands MikoPBX (featpkg's file).
const HOOK: &str =
    "/storage/usbdisk1/mikopbx/custom_modules/ModuleFeatpkg/db/hooks/generateModulesConf.conf";
/// Every file MikoPBX generates, as the fake reload's words.
const ALL_WORDS: [&str; 5] = ["dialplan", "manager", "cron", "modules", "pjsip"];
const SPOOL: &str = "/storage/usbdisk1/mikopbx/astspool";
const LOGDIR: &str = "/storage/usbdisk1/mikopbx/astlogs/asterisk";

/// The admin's own text in the extensions.conf row (config.sql).
const ADMIN_DIALPLAN: &str = "[internal-users-custom]
exten => 200,1,NoOp(reception: record every call)
 same => n,Set(__RECORD_CALL=1)
 same => n,Return()

[helpdesk-hours]
exten => s,1,GotoIfTime(09:00-18:00,mon-fri,*,*?open)
 same => n,Playback(closed)
 same => n,Hangup()
 same => n(open),Return()
";

/// Employee 201's own advanced options (config.sql).
const OPTIONS_201: &str = "[endpoint]
rtp_timeout = 30
rtp_timeout_hold = 300

[aor]
max_contacts = 3
";

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/mikopbx")
}

fn fake_reload() -> PathBuf {
    repo().join("tests/support/fake-mikopbx-reload")
}

/// Every row of both tables, all columns, in id order.
type Dump = BTreeMap<&'static str, Vec<Vec<Value>>>;

/// A MikoPBX tree in a temp dir with its configuration database, the module
/// extracted, and the fake reload and Asterisk CLI wired in.
struct Miko {
    dir: tempfile::TempDir,
}

impl Miko {
    fn new() -> Miko {
        let miko = Miko {
            dir: tempfile::tempdir().unwrap(),
        };
        copy_tree(&fixtures().join("root"), &miko.root());
        // The module's db/ is where MikoPBX keeps module databases (featpkg's state goes there).
        for dir in [
            SPOOL,
            LOGDIR,
            "/var/lib/asterisk/agi-bin",
            "/cf/conf",
            &format!("{MODULE_DIR}/db"),
        ] {
            std::fs::create_dir_all(miko.host(dir)).unwrap();
        }
        let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle()).unwrap()).unwrap();
        zip.extract(miko.host(MODULE_DIR)).unwrap();
        let db = rusqlite::Connection::open(miko.host(CONFIG_DB)).unwrap();
        db.execute_batch(&std::fs::read_to_string(fixtures().join("config.sql")).unwrap())
            .unwrap();
        drop(db);
        std::fs::create_dir_all(miko.dir.path().join("fake-state")).unwrap();
        let mode = std::fs::metadata(fake_reload())
            .unwrap()
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "tests/support/fake-mikopbx-reload must be executable"
        );
        // MikoPBX starts: it writes every file it generates, then Asterisk starts.
        boot(&miko, &ALL_WORDS);
        miko.start_asterisk();
        miko
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A runtime path on this machine.
    fn host(&self, runtime: &str) -> PathBuf {
        self.root().join(runtime.trim_start_matches('/'))
    }

    fn module(&self) -> String {
        self.host(MODULE_DIR).display().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        let d = self.dir.path();
        let s = |p: PathBuf| p.display().to_string();
        [
            (
                "FEATPKG_ASTERISK_CMD",
                s(repo().join("tests/support/fake-asterisk")),
            ),
            ("FAKE_ASTERISK_LOG", s(d.join("asterisk.log"))),
            ("FAKE_ASTERISK_STATE_DIR", s(d.join("fake-state"))),
            ("FAKE_ASTERISK_ETC", s(self.host("/etc/asterisk"))),
            ("FAKE_MIKOPBX_ROOT", s(self.root())),
            ("FAKE_MIKOPBX_GENERATED", s(self.generated_dir())),
            ("FAKE_MIKOPBX_LOG", s(d.join("reload.log"))),
            (
                "FAKE_MIKOPBX_MODULES",
                s(self.host(MODULE_DIR).parent().unwrap().to_path_buf()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// featpkg ARGS --target mikopbx … with extra environment.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(featpkg_bin());
        cmd.args(args)
            .args(["--target", "mikopbx", "--root"])
            .arg(self.root())
            .args(["--module-dir", MODULE_DIR, "--config-db", CONFIG_DB])
            .arg("--reload-cmd")
            .arg(fake_reload())
            .envs(self.env())
            .env_remove("FEATPKG_TEST_FAIL_AT")
            .env_remove("FEATPKG_TEST_PAUSE_AT")
            .env_remove("FAKE_MIKOPBX_FAIL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "featpkg {args:?} failed: {}",
            text(&out)
        );
        text(&out)
    }

    /// `featpkg install <module dir> EXTRA…`, as the module's shim runs it.
    fn install(&self, extra: &[&str]) -> Output {
        self.install_env(extra, &[])
    }

    fn install_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let module = self.module();
        let mut args = vec!["install", module.as_str()];
        args.extend_from_slice(extra);
        self.run_env(&args, env)
    }

    fn install_ok(&self, extra: &[&str]) -> String {
        let out = self.install(extra);
        assert!(out.status.success(), "install failed: {}", text(&out));
        text(&out)
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.host(CONFIG_DB)).unwrap()
    }

    fn db_bytes(&self) -> Vec<u8> {
        std::fs::read(self.host(CONFIG_DB)).unwrap()
    }

    fn dump(&self) -> Dump {
        let db = self.db();
        let mut out = Dump::new();
        for table in ["m_CustomFiles", "m_Sip"] {
            let mut stmt = db
                .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
                .unwrap();
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..columns)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            out.insert(table, rows);
        }
        out
    }

    /// (content, mode, changed, description) of a custom-file row.
    fn custom_file(&self, filepath: &str) -> Option<[Option<String>; 4]> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT content, mode, changed, description FROM m_CustomFiles WHERE filepath = ?1",
            )
            .unwrap();
        let mut rows = stmt
            .query_map([filepath], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert!(rows.len() <= 1, "{filepath}: {} rows", rows.len());
        rows.pop()
    }

    /// A custom-file row's text, decoded.
    fn custom_text(&self, filepath: &str) -> String {
        let row = self
            .custom_file(filepath)
            .unwrap_or_else(|| panic!("no row for {filepath}"));
        decode(row[0].as_deref().unwrap_or(""))
    }

    fn set_custom_text(&self, filepath: &str, text: &str) {
        let n = self
            .db()
            .execute(
                "UPDATE m_CustomFiles SET content = ?2 WHERE filepath = ?1",
                [filepath, &encode(text.as_bytes())],
            )
            .unwrap();
        assert_eq!(n, 1);
    }

    /// An employee's manualattributes as stored.
    fn sip_raw(&self, extension: &str) -> Option<String> {
        self.db()
            .query_row(
                "SELECT manualattributes FROM m_Sip WHERE extension = ?1",
                [extension],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn sip_text(&self, extension: &str) -> String {
        decode(&self.sip_raw(extension).unwrap_or_default())
    }

    /// Every file under the root but featpkg's state directory and the database.
    fn files(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        let skip = [
            format!("{}/db/featpkg", MODULE_DIR.trim_start_matches('/')),
            CONFIG_DB.trim_start_matches('/').to_string(),
        ];
        snapshot_into(&self.root(), &self.root(), &skip, &mut out);
        out
    }

    fn read(&self, runtime: &str) -> String {
        std::fs::read_to_string(self.host(runtime)).unwrap_or_else(|e| panic!("{runtime}: {e}"))
    }

    /// What MikoPBX generates: the fixture's, unless this PBX has its own copy.
    fn generated_dir(&self) -> PathBuf {
        let own = self.dir.path().join("generated");
        if own.is_dir() {
            own
        } else {
            fixtures().join("generated")
        }
    }

    fn generated(&self, runtime: &str) -> String {
        std::fs::read_to_string(self.generated_dir().join(&runtime[1..])).unwrap()
    }

    /// MikoPBX generates something else from now on (e.g. another module's hook
    /// output): `edit` changes a copy of the generated texts; then MikoPBX starts.
    fn generate(&self, edit: impl FnOnce(&Path)) {
        let own = self.dir.path().join("generated");
        if !own.is_dir() {
            copy_tree(&fixtures().join("generated"), &own);
        }
        edit(&own);
        boot(self, &ALL_WORDS);
        self.start_asterisk();
    }

    /// Asterisk (re)starts: it loads what modules.conf lists, and nothing else.
    fn start_asterisk(&self) {
        let loads: String = self
            .read(MODULES)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("load => "))
            .map(|m| format!("{m}\n"))
            .collect();
        let state = self.dir.path().join("fake-state");
        std::fs::write(state.join("modules"), loads).unwrap();
        for name in ["declined", "unloaded", "booting"] {
            let _ = std::fs::remove_file(state.join(name));
        }
    }

    /// The reload script's calls, one line of words each.
    fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("reload.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn asterisk_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("asterisk.log")).unwrap_or_default()
    }

    fn mode_of(&self, runtime: &str) -> u32 {
        std::fs::metadata(self.host(runtime))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }
}

fn snapshot_into(
    base: &Path,
    dir: &Path,
    skip: &[String],
    out: &mut BTreeMap<String, (Vec<u8>, u32)>,
) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}-")))
        {
            continue; // featpkg's state; the database (and its journal) compare by dump
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.insert(format!("{rel}/"), (Vec::new(), mode));
            snapshot_into(base, &path, skip, out);
        } else {
            out.insert(rel, (std::fs::read(&path).unwrap(), mode));
        }
    }
}

/// Asserts two file snapshots are equal; names every differing path, with `label`.
fn assert_same_files(
    label: &str,
    before: &BTreeMap<String, (Vec<u8>, u32)>,
    after: &BTreeMap<String, (Vec<u8>, u32)>,
) {
    let mut differ = Vec::new();
    for path in before.keys().chain(after.keys()) {
        if before.get(path) != after.get(path) && !differ.contains(path) {
            differ.push(path.clone());
        }
    }
    if let Some(first) = differ.first() {
        let show = |s: Option<&(Vec<u8>, u32)>| {
            s.map_or("(absent)".to_string(), |(b, m)| {
                format!("mode {m:o}\n{}", String::from_utf8_lossy(b))
            })
        };
        panic!(
            "{label}: {} differ: {differ:?}\n--- {first} before\n{}\n--- after\n{}",
            differ.len(),
            show(before.get(first)),
            show(after.get(first))
        );
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 as PHP writes it (independent of featpkg's own codec).
fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                B64[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn decode(text: &str) -> String {
    let mut bytes = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}")) as u32;
        n = (n << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((n >> bits) as u8);
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// Lines of the `[ext]` section of `type = <kind>` in a pjsip.conf.
fn pjsip_section(pjsip: &str, ext: &str, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = pjsip.lines().peekable();
    while let Some(line) = lines.next() {
        if line == format!("[{ext}]") && lines.peek() == Some(&format!("type = {kind}").as_str()) {
            for l in lines.by_ref() {
                if l.is_empty() || l.starts_with('[') {
                    break;
                }
                out.push(l.to_string());
            }
            return out;
        }
    }
    panic!("no [{ext}] type = {kind} in pjsip.conf:\n{pjsip}");
}

fn block(comment: &str, id: &str, body: &str) -> String {
    format!("{comment} BEGIN featpkg:{BUNDLE}:{id}\n{body}{comment} END featpkg:{BUNDLE}:{id}\n")
}

fn modules_block() -> String {
    block(
        ";",
        "busy-callback/modules",
        "load => res_manager_devicestate.so\n",
    ) + &block(";", "call-waiting/modules", "load => func_extstate.so\n")
}

fn cron_block() -> String {
    block(
        "#",
        "busy-callback/cron",
        &format!(
            "* * * * * {MODULE_DIR}/bin/featpkg-busy-callback-watch --store {SPOOL}/featpkg/busy-callback --ami {MODULE_DIR}/etc/featpkg-ami/busy-callback.conf --lock {SPOOL}/featpkg/busy-callback-watch.lock --log {LOGDIR}/featpkg-busy-callback.log --tech PJSIP --retries 2 --retry-wait 60 --expiry 1800 --ring 30 >/dev/null 2>&1\n"
        ),
    )
}

fn endpoint_block(ext: &str) -> String {
    block(
        ";",
        &format!("call-waiting/endpoints/{ext}"),
        "[endpoint]\ndevice_state_busy_at = 3\n",
    )
}

/// The rows featpkg has no business with: everything but the rows it edits.
fn untouched_rows(dump: &Dump) -> Vec<Vec<Value>> {
    let edited = [EXTENSIONS, MANAGER, CRONTAB];
    let mut out: Vec<Vec<Value>> = dump["m_CustomFiles"]
        .iter()
        .filter(|r| !edited.iter().any(|p| r[1] == Value::Text(p.to_string())))
        .cloned()
        .collect();
    out.extend(
        dump["m_Sip"]
            .iter()
            .filter(|r| r[3] != Value::Text("201".into()) && r[3] != Value::Text("202".into()))
            .cloned(),
    );
    out
}

#[test]
fn install_puts_blocks_into_rows_and_mikopbx_writes_the_files() {
    let miko = Miko::new();
    let before = miko.dump();
    let out = miko.install_ok(&["--allow-restart", "--set", "call-waiting.endpoints=201,202"]);
    assert!(out.contains("install featpkg-recipes 1.0.0"), "{out}");
    for line in [
        format!("modified m_CustomFiles:{EXTENSIONS}"),
        format!("created  {HOOK}"),
        format!("created  m_CustomFiles:{MANAGER}"),
        format!("modified m_CustomFiles:{CRONTAB}"),
        "modified m_Sip:201".into(),
        "modified m_Sip:202".into(),
        format!("created  {MODULE_DIR}/agi-bin/featpkg-operator-alert"),
    ] {
        assert!(out.lines().any(|l| l.trim() == line), "no {line:?}:\n{out}");
    }
    // featpkg itself writes nothing in /etc/asterisk nor the crontab.
    assert!(
        !out.contains("modified /etc/") && !out.contains("created  /etc/"),
        "{out}"
    );
    assert!(!out.contains(" /var/spool/cron"), "{out}");

    // The rows: our blocks, mode append, marked changed like a save in MikoPBX.
    let after = miko.dump();
    // The load lines go into the module's hook text, not into modules.conf's
    // row (which untouched_rows shows unchanged).
    assert!(!out.contains(&format!("m_CustomFiles:{MODULES}")), "{out}");
    assert_eq!(miko.read(HOOK), modules_block());
    assert_eq!(miko.mode_of(HOOK), 0o644);
    assert_eq!(miko.custom_text(CRONTAB), cron_block());
    assert_eq!(
        miko.custom_file(CRONTAB).unwrap()[1].as_deref(),
        Some("append")
    );
    let ext = miko.custom_text(EXTENSIONS);
    assert!(
        ext.starts_with(ADMIN_DIALPLAN),
        "the admin's text stays in front, untouched:\n{ext}"
    );
    let row = miko.custom_file(EXTENSIONS).unwrap();
    assert_eq!(
        row[1..],
        [
            Some("append".into()),
            Some("1".into()),
            Some("Reception recording and helpdesk hours".into())
        ]
    );
    let agi = format!("{MODULE_DIR}/agi-bin");
    for line in [
        "; BEGIN featpkg:featpkg-recipes:call-waiting/dialplan".to_string(),
        "[featpkg-call-waiting]".into(),
        "exten => _X!,1,Gosub(featpkg-call-waiting,${EXTEN},1)".into(),
        "; END featpkg:featpkg-recipes:call-waiting/dialplan".into(),
        format!(
            "exten => *600,1,AGI({agi}/featpkg-operator-alert,menu,family=op_alert,pattern=_XXX,dir={SPOOL}/featpkg/operator-alert,deadline=5,maxrec=60,menu_sound=vm-tempgreeting2,record_sound=vm-rec-temp,saved_sound=auth-thankyou,deleted_sound=vm-tempremoved,empty_sound=vm-tooshort)"
        ),
        format!(
            "exten => _X!,1,AGI({agi}/featpkg-busy-callback,offer,dir={SPOOL}/featpkg/busy-callback,pattern=_XXX,digit=5,max=3,expiry=1800,prompt=vm-isonphone,confirm=auth-thankyou,sorry=beeperr)"
        ),
        "[notify-queue-failover]".into(),
    ] {
        assert!(
            ext.lines().any(|l| l == line),
            "no {line:?} in the row:\n{ext}"
        );
    }
    assert!(!ext.contains("/var/lib/asterisk/agi-bin"), "{ext}");
    let manager = miko.custom_text(MANAGER);
    assert!(manager.starts_with(
        "; BEGIN featpkg:featpkg-recipes:busy-callback/manager\n[featpkg-busy-callback]\n"
    ));
    let secret = manager
        .lines()
        .find_map(|l| l.strip_prefix("secret = "))
        .unwrap()
        .to_string();
    assert_eq!(secret.len(), 32, "{manager}");
    let row = miko.custom_file(MANAGER).unwrap();
    assert_eq!(row[1..3], [Some("append".into()), Some("1".into())]);

    // Employees: 201 keeps its options and gets ours; 202 gets ours; the rest untouched.
    // MikoPBX reads a second [endpoint] section as a fresh one, dropping the
    // first one's options: ours go at the end of the employee's own section.
    let sip201 = miko.sip_text("201");
    assert_eq!(
        sip201,
        format!(
            "[endpoint]\nrtp_timeout = 30\nrtp_timeout_hold = 300\n{}\n[aor]\nmax_contacts = 3\n",
            block(
                ";",
                "call-waiting/endpoints/201",
                "device_state_busy_at = 3\n"
            )
        )
    );
    assert_eq!(miko.sip_text("202"), endpoint_block("202"));
    for (b, a) in before["m_Sip"].iter().zip(&after["m_Sip"]) {
        for (i, (x, y)) in b.iter().zip(a).enumerate() {
            if i != 19 || !matches!(&b[3], Value::Text(e) if e == "201" || e == "202") {
                assert_eq!(x, y, "m_Sip row {:?} column {i} changed", b[3]);
            }
        }
    }
    assert_eq!(untouched_rows(&before), untouched_rows(&after));

    // Files featpkg owns live in the module directory.
    for (path, mode) in [
        (format!("{agi}/featpkg-operator-alert"), 0o755),
        (format!("{agi}/featpkg-busy-callback"), 0o755),
        (
            format!("{MODULE_DIR}/bin/featpkg-busy-callback-watch"),
            0o755,
        ),
        (
            format!("{MODULE_DIR}/etc/featpkg-ami/busy-callback.conf"),
            0o600,
        ),
    ] {
        assert_eq!(miko.mode_of(&path), mode, "{path}");
    }
    let arch = std::env::consts::ARCH;
    for name in ["featpkg-operator-alert", "featpkg-busy-callback"] {
        assert_eq!(
            std::fs::read(miko.host(&format!("{agi}/{name}"))).unwrap(),
            std::fs::read(miko.host(&format!("{MODULE_DIR}/bin/{arch}-linux/{name}"))).unwrap(),
            "{name}"
        );
    }
    // The watcher sits at the top of bin/, where MikoPBX's module removal
    // (`lsof bin/*`, UninstallModuleAction.php) finds it running and stops it.
    assert!(!miko.host(&format!("{MODULE_DIR}/bin/featpkg-bin")).exists());
    let ami = miko.read(&format!("{MODULE_DIR}/etc/featpkg-ami/busy-callback.conf"));
    assert!(ami.contains(&format!("secret={secret}\n")), "{ami}");
    assert!(!miko.host("/etc/asterisk/featpkg-ami").exists());
    assert!(
        !miko
            .host("/var/lib/asterisk/agi-bin/featpkg-operator-alert")
            .exists()
    );

    // MikoPBX (the fake) was asked whether endpoint options restart Asterisk
    // (no), then for everything that changed, and wrote the files from the rows
    // and the hook; Asterisk sees our contexts.
    assert_eq!(
        miko.reloads(),
        [
            "--would-restart pjsip",
            "dialplan manager cron modules pjsip"
        ]
    );
    for (file, row) in [
        (EXTENSIONS, EXTENSIONS),
        (MANAGER, MANAGER),
        (CRONTAB, CRONTAB),
    ] {
        assert_eq!(
            miko.read(file),
            format!("{}\n\n{}", miko.generated(file), miko.custom_text(row)),
            "{file}"
        );
        assert_eq!(miko.read(&format!("{file}.orgn")), miko.generated(file));
    }
    // modules.conf as MikoPBX's generator writes it: its own list, then the
    // module's hook text between its markers; the row stays in mode none.
    assert_eq!(
        miko.read(MODULES),
        format!(
            "{}; ***** BEGIN BY ModuleFeatpkg\n{}; ***** END BY ModuleFeatpkg\n",
            miko.generated(MODULES),
            modules_block()
        )
    );
    assert!(!miko.host(&format!("{MODULES}.orgn")).exists());
    let pjsip = miko.read(PJSIP);
    let ep201 = pjsip_section(&pjsip, "201", "endpoint");
    for line in [
        "rtp_timeout = 30",
        "rtp_timeout_hold = 300",
        "device_state_busy_at = 3",
    ] {
        assert!(
            ep201.iter().any(|l| l == line),
            "endpoint 201 lacks {line:?} once MikoPBX read its options: {ep201:?}\n(options: {sip201})"
        );
    }
    assert!(pjsip_section(&pjsip, "201", "aor").contains(&"max_contacts = 3".to_string()));
    assert!(pjsip_section(&pjsip, "202", "endpoint").contains(&"device_state_busy_at = 3".into()));
    assert!(pjsip_section(&pjsip, "203", "endpoint").contains(&"device_state_busy_at = 1".into()));
    let log = miko.asterisk_log();
    for cmd in [
        "module show like func_extstate.so",
        "module show like res_manager_devicestate.so",
        "dialplan show featpkg-call-waiting",
        "dialplan show internal-users-custom",
        "dialplan show featpkg-operator-alert-menu",
        "dialplan show featpkg-busy-callback",
        "dialplan show notify-queue-failover",
    ] {
        assert!(log.lines().any(|l| l == cmd), "no {cmd:?}:\n{log}");
    }
    // No restart: the modules were loaded live, once MikoPBX had written
    // modules.conf with them (so a restart keeps them).
    assert!(!log.contains("core waitfullybooted"), "{log}");
    for module in ["func_extstate.so", "res_manager_devicestate.so"] {
        assert!(
            log.lines().any(|l| l == format!("module load {module}")),
            "{module} not loaded live:\n{log}"
        );
    }
    assert!(!out.contains("Asterisk restarted"), "{out}");
}

#[test]
fn featpkg_never_writes_the_files_mikopbx_generates() {
    let miko = Miko::new();
    let files = miko.files();
    let out = miko.install_ok(&["--no-reload", "--set", "call-waiting.endpoints=201,202"]);
    assert!(out.contains("reload skipped"), "{out}");
    assert!(miko.read(HOOK).contains("func_extstate.so"));
    // Only the module's own directory got featpkg's files.
    let now = miko.files();
    let module = MODULE_DIR.trim_start_matches('/');
    for (path, content) in &now {
        if !path.starts_with(module) {
            assert_eq!(files.get(path), Some(content), "{path} changed");
        }
    }
    for path in files.keys() {
        assert!(now.contains_key(path), "{path} is gone");
    }
    assert!(miko.reloads().is_empty());
}

/// No feature restarts Asterisk on MikoPBX: the default enable (no "allow
/// restart") installs everything, modules included.
#[test]
fn no_feature_needs_an_asterisk_restart() {
    let miko = Miko::new();
    let out = miko.install_ok(&["--set", "call-waiting.endpoints=201,202"]);
    assert!(!out.contains("WARNING"), "{out}");
    assert!(out.contains("module load func_extstate.so"), "{out}");
    assert!(
        miko.ok(&["status"]).contains("conference-guest")
            || out.contains("skipped conference-guest"),
        "{out}"
    );
    // conference-guest alone (MikoPBX loads app_confbridge.so anyway: listed
    // twice, which Asterisk's loader merges) needs no consent either.
    let other = Miko::new();
    let out = other.install_ok(&[
        "--features",
        "conference-guest",
        "--set",
        "conference-guest.conference=700",
        "--set",
        "conference-guest.provider=sip-trunk",
        "--set",
        "conference-guest.number=5551234",
    ]);
    assert!(
        out.contains("module app_confbridge.so: already loaded"),
        "{out}"
    );
    assert!(
        other
            .read(MODULES)
            .contains("; ***** BEGIN BY ModuleFeatpkg\n")
    );
}

/// SIPConf::reload restarts Asterisk when MikoPBX's network settings changed
/// since it started: featpkg asks first, and an endpoint change then needs
/// the admin's consent, as any restart does; changes without endpoint
/// options go on.
#[test]
fn endpoint_options_after_a_network_change_need_consent_to_restart() {
    let miko = Miko::new();
    let changed = [("FAKE_MIKOPBX_TOPOLOGY_CHANGED", "1")];
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install_env(&["--set", "call-waiting.endpoints=201,202"], &changed);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    for words in [
        "endpoint options makes MikoPBX restart Asterisk",
        "network settings changed",
        "ends every call in progress",
        "--allow-restart",
        "{\"allow_restart\": true} in db/featpkg-settings.json",
    ] {
        assert!(msg.contains(words), "no {words:?} in: {msg}");
    }
    assert_eq!(miko.db_bytes(), db, "the database changed");
    assert_same_files("files", &files, &miko.files());
    assert_eq!(miko.reloads(), ["--would-restart pjsip"]);

    // The dry run (MikoPBX's before-enable check) is refused the same way;
    // with consent it warns.
    let out = miko.install_env(
        &["--dry-run", "--set", "call-waiting.endpoints=201,202"],
        &changed,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = miko.install_env(
        &[
            "--dry-run",
            "--allow-restart",
            "--set",
            "call-waiting.endpoints=201,202",
        ],
        &changed,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("WARNING") && said.contains("ends every live call"),
        "{said}"
    );
    assert_eq!(miko.db_bytes(), db, "the dry run changed the database");

    // Without endpoint options nothing is asked and nothing restarts.
    let out = miko.install_env(&[], &changed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!miko.asterisk_log().contains("core waitfullybooted"));

    // With consent: MikoPBX restarts Asterisk, featpkg waits for it.
    let out = miko.install_env(
        &["--allow-restart", "--set", "call-waiting.endpoints=201,202"],
        &changed,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Asterisk restarted and fully booted"),
        "{said}"
    );
}

#[test]
fn reinstall_changes_nothing() {
    let miko = Miko::new();
    let args = ["--allow-restart", "--set", "call-waiting.endpoints=201,202"];
    miko.install_ok(&args);
    let (dump, db, files) = (miko.dump(), miko.db_bytes(), miko.files());
    let out = miko.install_ok(&args);
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(miko.dump(), dump);
    assert_eq!(miko.db_bytes(), db, "the database was written");
    assert_same_files("files", &files, &miko.files());
    assert_eq!(
        miko.reloads(),
        [
            "--would-restart pjsip",
            "dialplan manager cron modules pjsip"
        ]
    );
    // Without --allow-restart too.
    let out = miko.install_ok(&["--set", "call-waiting.endpoints=201,202"]);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn uninstall_puts_every_row_back_exactly() {
    let miko = Miko::new();
    let (dump, files) = (miko.dump(), miko.files());
    assert!(miko.custom_file(MANAGER).is_none());
    assert_eq!(miko.sip_raw("202"), None);
    assert_eq!(miko.sip_raw("203").as_deref(), Some(""));
    miko.install_ok(&[
        "--allow-restart",
        "--set",
        "call-waiting.endpoints=201,202,203",
    ]);
    assert_ne!(miko.dump(), dump);

    // The modules stay loaded, harmlessly, until Asterisk next starts.
    let out = miko.ok(&["uninstall", BUNDLE]);
    assert!(
        out.contains(&format!("removed  m_CustomFiles:{MANAGER}")),
        "{out}"
    );
    let now = miko.dump();
    for table in ["m_CustomFiles", "m_Sip"] {
        assert_eq!(now[table], dump[table], "{table} differs after uninstall");
    }
    assert!(
        miko.custom_file(MANAGER).is_none(),
        "absent row stays absent"
    );
    assert_eq!(
        miko.custom_file(MODULES).unwrap(),
        [None, Some("none".into()), Some("0".into()), Some("".into())]
    );
    assert_eq!(miko.sip_raw("202"), None, "NULL stays NULL");
    assert_eq!(miko.sip_raw("203").as_deref(), Some(""), "'' stays ''");
    let round = [
        "--would-restart pjsip",
        "dialplan manager cron modules pjsip",
    ];
    assert_eq!(miko.reloads(), [round, round].concat());
    // MikoPBX wrote every file back as it was (no .orgn for the none rows),
    // modules.conf included: the hook text is gone with its folder.
    assert!(out.contains(&format!("removed  {HOOK}")), "{out}");
    assert_same_files("files", &files, &miko.files());
    assert!(miko.ok(&["status"]).contains("nothing installed"));
}

/// MikoPBX writes the files for WORDS (not logged), e.g. when Asterisk starts.
fn boot(miko: &Miko, words: &[&str]) {
    let out = Command::new(fake_reload())
        .args(words)
        .envs(miko.env())
        .env_remove("FAKE_MIKOPBX_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{words:?}: {}", text(&out));
    // The PBX has finished starting: Asterisk answers again.
    let _ = std::fs::remove_file(miko.dir.path().join("fake-state/booting"));
}

/// The changes featpkg lists, in step order (directories, files, rows).
fn steps(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            ["created ", "modified ", "removed "]
                .iter()
                .any(|v| l.starts_with(v))
                .then(|| l.split_whitespace().nth(1).unwrap().to_string())
        })
        .collect()
}

const INSTALL: [&str; 3] = ["--allow-restart", "--set", "call-waiting.endpoints=201,202"];

/// The 1-based numbers of the row steps of INSTALL (the steps are directories,
/// files, then rows, in the order featpkg lists its changes), from a twin PBX.
fn row_steps() -> Vec<usize> {
    let twin = Miko::new();
    let all = steps(&twin.install_ok(&INSTALL));
    let rows: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with("m_"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(rows.len(), 5, "{all:?}");
    assert_eq!(rows[4], all.len(), "rows are the last steps: {all:?}");
    rows
}

#[test]
fn a_failure_before_the_reload_puts_rows_and_files_back() {
    let rows = row_steps();
    for point in [
        format!("step-{}-done", rows[0] - 1),
        format!("step-{}-done", rows[0]),
        format!("step-{}-done", rows[3]),
        format!("step-{}-done", rows[4]),
        "applied".into(),
    ] {
        let miko = Miko::new();
        let (dump, files) = (miko.dump(), miko.files());
        let out = miko.install_env(&INSTALL, &[("FEATPKG_TEST_FAIL_AT", point.as_str())]);
        assert_eq!(out.status.code(), Some(2), "{point}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("injected failure at {point}")),
            "{point}: {}",
            text(&out)
        );
        assert_eq!(miko.dump(), dump, "{point}: rows differ");
        assert_same_files(&point, &files, &miko.files());
        assert!(miko.reloads().is_empty(), "{point}");
        assert!(
            miko.ok(&["status"]).contains("nothing installed"),
            "{point}"
        );
    }
}

#[test]
fn a_failed_reload_puts_rows_and_files_back() {
    // MikoPBX fails at once, or after it wrote the files of the words before.
    for fail in ["all", "dialplan", "cron"] {
        let miko = Miko::new();
        let (dump, files) = (miko.dump(), miko.files());
        let out = miko.install_env(&INSTALL, &[("FAKE_MIKOPBX_FAIL", fail)]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(2), "{fail}: {msg}");
        assert!(
            msg.contains("reload failed, every change was rolled back")
                && msg.contains("fake failure"),
            "{fail}: {msg}"
        );
        assert_eq!(miko.dump(), dump, "{fail}: rows differ");
        // Files MikoPBX already wrote from our rows are written again from the restored ones.
        assert_same_files(fail, &files, &miko.files());
        assert!(miko.ok(&["status"]).contains("nothing installed"), "{fail}");
    }
}

/// After a failure once MikoPBX applied the rows (its reload failed at the
/// last word, pjsip, after it wrote the others; or featpkg failed after the
/// reload), the rows and the hook text are restored, and MikoPBX writes its
/// files again from them, modules.conf included.
#[test]
fn a_failure_after_mikopbx_applied_the_rows_puts_its_files_back() {
    for (var, value) in [
        ("FAKE_MIKOPBX_FAIL", "pjsip"),
        ("FEATPKG_TEST_FAIL_AT", "before-state-commit"),
    ] {
        let miko = Miko::new();
        let (dump, files) = (miko.dump(), miko.files());
        let out = miko.install_env(&INSTALL, &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{value}: {}", text(&out));
        assert_eq!(miko.dump(), dump, "{value}: rows differ");
        assert_same_files(value, &files, &miko.files());
    }
}

#[test]
fn a_killed_install_is_rolled_back_row_by_row() {
    let rows = row_steps();
    let miko = Miko::new();
    let (dump, files) = (miko.dump(), miko.files());
    let point = format!("step-{}-done", rows[2]);
    let module = miko.module();
    let mut args = vec!["install", module.as_str()];
    args.extend_from_slice(&INSTALL);
    let mut child = miko
        .command(&args, &[("FEATPKG_TEST_PAUSE_AT", point.as_str())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.contains("paused at") {
            break;
        }
    }
    assert!(seen.contains(&format!("paused at {point}")), "{seen}");
    // Half of the rows are written.
    assert_ne!(miko.dump(), dump);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = miko.ok(&["recover"]);
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(miko.dump(), dump);
    assert_same_files("after recover", &files, &miko.files());
}

#[test]
fn a_hand_edit_inside_a_block_stops_uninstall_and_one_outside_survives() {
    let miko = Miko::new();
    miko.install_ok(&INSTALL);
    // The admin edits the custom file in MikoPBX's editor: inside our block and
    // after it.
    let ours = miko.custom_text(EXTENSIONS);
    let edited = ours.replacen(
        " same => n,Playback(beep,noanswer)",
        " same => n,Playback(custom/my-beep,noanswer)",
        1,
    );
    assert_ne!(edited, ours);
    let mine = "\n[after-hours]\nexten => s,1,Voicemail(200)\n";
    miko.set_custom_text(EXTENSIONS, &format!("{edited}{mine}"));
    let dump = miko.dump();

    let out = miko.run(&["uninstall", BUNDLE, "--allow-restart"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    for words in [
        format!("m_CustomFiles:{EXTENSIONS}"),
        "call-waiting/dialplan".into(),
        "changed by hand".into(),
        "--force".into(),
    ] {
        assert!(msg.contains(&words), "no {words:?} in: {msg}");
    }
    assert_eq!(miko.dump(), dump, "the refused uninstall changed rows");

    let out = miko.ok(&["uninstall", BUNDLE, "--allow-restart", "--force"]);
    assert!(out.contains("call-waiting/dialplan"), "{out}");
    // Our blocks are gone, the admin's text (and new context) stays, still appended.
    assert_eq!(
        miko.custom_text(EXTENSIONS),
        format!("{ADMIN_DIALPLAN}{mine}")
    );
    let row = miko.custom_file(EXTENSIONS).unwrap();
    assert_eq!(row[1].as_deref(), Some("append"));
    assert!(
        miko.read(EXTENSIONS)
            .ends_with(&format!("{ADMIN_DIALPLAN}{mine}"))
    );
    // The other rows went back exactly.
    assert!(miko.custom_file(MANAGER).is_none());
    assert_eq!(miko.sip_text("201"), OPTIONS_201);
}

#[test]
fn a_hand_edit_in_an_employee_row_is_named() {
    let miko = Miko::new();
    miko.install_ok(&["--allow-restart", "--set", "call-waiting.endpoints=201,202"]);
    let text202 = miko.sip_text("202").replace("busy_at = 3", "busy_at = 4");
    miko.db()
        .execute(
            "UPDATE m_Sip SET manualattributes = ?1 WHERE extension = '202'",
            [encode(text202.as_bytes())],
        )
        .unwrap();
    let out = miko.run(&["uninstall", BUNDLE, "--allow-restart"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("m_Sip:202") && msg.contains("call-waiting/endpoints/202"),
        "{msg}"
    );
}

#[test]
fn a_custom_file_in_script_mode_is_refused() {
    let miko = Miko::new();
    miko.db()
        .execute(
            "UPDATE m_CustomFiles SET mode = 'script', content = ?1 WHERE filepath = ?2",
            [
                encode(b"sed -i 's/^static=yes/static=no/' \"$1\"\n"),
                EXTENSIONS.into(),
            ],
        )
        .unwrap();
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install(&["--allow-restart"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&format!("m_CustomFiles:{EXTENSIONS}")) && msg.contains("`script`"),
        "{msg}"
    );
    assert_eq!(miko.db_bytes(), db);
    assert_same_files("files", &files, &miko.files());
    assert!(miko.reloads().is_empty());
}

#[test]
fn an_endpoint_that_is_not_an_employee_is_refused() {
    let miko = Miko::new();
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install(&["--allow-restart", "--set", "call-waiting.endpoints=201,999"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("999") && msg.contains("employee"), "{msg}");
    assert_eq!(miko.db_bytes(), db);
    assert_same_files("files", &files, &miko.files());
    assert!(miko.reloads().is_empty());
}

#[test]
fn disabled_custom_text_is_not_brought_back_to_life() {
    let miko = Miko::new();
    // The admin once added a line to root's crontab, then disabled it (mode none).
    miko.set_custom_text(CRONTAB, "0 3 * * * /usr/bin/php -f /root/nightly.php\n");
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install(&INSTALL);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&format!("m_CustomFiles:{CRONTAB}")) && msg.contains("mode `none`"),
        "{msg}"
    );
    assert_eq!(miko.db_bytes(), db);
    assert_same_files("files", &files, &miko.files());
    // Features that leave modules.conf alone go ahead.
    miko.install_ok(&["--features", "operator-alert"]);
}

#[test]
fn a_collision_with_what_mikopbx_generates_is_refused() {
    let miko = Miko::new();
    // Another module's hook puts a catch-all into internal-users-custom.
    miko.generate(|dir| {
        let path = dir.join("etc/asterisk/extensions.conf");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "; ***** END BY ModuleQueueCallBack\n",
            "[internal-users-custom]\nexten => _X!,1,NoOp(ModuleQueueCallBack)\n\tsame => n,Return()\n; ***** END BY ModuleQueueCallBack\n",
        );
        std::fs::write(path, text).unwrap();
    });
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install(&INSTALL);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("call-waiting/dialplan") && msg.contains("internal-users-custom"),
        "{msg}"
    );
    // The line is the one in the file MikoPBX wrote.
    let line = miko
        .read(EXTENSIONS)
        .lines()
        .position(|l| l == "exten => _X!,1,NoOp(ModuleQueueCallBack)")
        .unwrap()
        + 1;
    assert!(
        msg.contains(&format!("extensions.conf:{line}")),
        "line {line}: {msg}"
    );
    assert_eq!(miko.db_bytes(), db);
    assert_same_files("files", &files, &miko.files());
}

#[test]
fn an_endpoint_section_added_later_takes_our_option_in() {
    let miko = Miko::new();
    let args = ["--allow-restart", "--set", "call-waiting.endpoints=203"];
    miko.install_ok(&args);
    assert_eq!(miko.sip_text("203"), endpoint_block("203"));
    // The admin adds options of their own after ours: MikoPBX would drop ours.
    let mine = "[endpoint]\nrtp_timeout = 60\n";
    miko.db()
        .execute(
            "UPDATE m_Sip SET manualattributes = ?1 WHERE extension = '203'",
            [encode(
                format!("{}{mine}", endpoint_block("203")).as_bytes(),
            )],
        )
        .unwrap();
    // Installing again moves ours into their section, without a header.
    let out = miko.install_ok(&args);
    assert!(out.contains("modified m_Sip:203"), "{out}");
    assert_eq!(
        miko.sip_text("203"),
        format!(
            "{mine}{}",
            block(
                ";",
                "call-waiting/endpoints/203",
                "device_state_busy_at = 3\n"
            )
        )
    );
    let endpoint = pjsip_section(&miko.read(PJSIP), "203", "endpoint");
    for line in ["rtp_timeout = 60", "device_state_busy_at = 3"] {
        assert!(endpoint.contains(&line.to_string()), "{endpoint:?}");
    }
    assert!(miko.install_ok(&args).contains("up to date"));
    // Uninstall leaves the admin's own text.
    miko.ok(&["uninstall", BUNDLE]);
    assert_eq!(miko.sip_text("203"), mine);
}

#[test]
fn verify_and_rollback_work_on_rows() {
    let miko = Miko::new();
    let (dump, files) = (miko.dump(), miko.files());
    miko.install_ok(&INSTALL);
    assert!(miko.ok(&["verify"]).contains("no drift"));
    let ours = miko.custom_text(CRONTAB);
    miko.set_custom_text(CRONTAB, &ours.replace("--ring 30", "--ring 5"));
    let out = miko.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("m_CustomFiles:{CRONTAB}")),
        "{}",
        text(&out)
    );
    miko.set_custom_text(CRONTAB, &ours);
    let out = miko.ok(&["rollback"]);
    assert!(out.contains("rollback"), "{out}");
    assert_eq!(miko.dump(), dump);
    assert_same_files("after rollback", &files, &miko.files());
}

/// A MikoPBX that has not booted yet: its shipped database declares
/// `m_CustomFiles.changed INTEGER` (resources/db/mikopbx.db of MikoPBX Core
/// 2026.1.223; the first boot migrates it to text). featpkg reads and writes
/// it all the same, and uninstall leaves the same integers.
#[test]
fn an_unbooted_database_with_an_integer_changed_column_works() {
    let miko = Miko::new();
    miko.db()
        .execute_batch(
            "CREATE TABLE m_CustomFiles_shipped (
                 id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
                 filepath VARCHAR, content VARCHAR, mode VARCHAR DEFAULT 'none',
                 changed INTEGER DEFAULT 0, description VARCHAR);
             INSERT INTO m_CustomFiles_shipped SELECT * FROM m_CustomFiles;
             DROP TABLE m_CustomFiles;
             ALTER TABLE m_CustomFiles_shipped RENAME TO m_CustomFiles;",
        )
        .unwrap();
    let changed_type = |miko: &Miko| -> Vec<String> {
        let db = miko.db();
        let mut stmt = db
            .prepare("SELECT typeof(changed) FROM m_CustomFiles ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(changed_type(&miko).iter().all(|t| t == "integer"));
    let dump = miko.dump();
    let out = miko.install_ok(&["--set", "call-waiting.endpoints=201"]);
    assert!(
        out.contains(&format!("modified m_CustomFiles:{EXTENSIONS}")),
        "{out}"
    );
    let changed: Value = miko
        .db()
        .query_row(
            "SELECT changed FROM m_CustomFiles WHERE filepath = ?1",
            [EXTENSIONS],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(changed, Value::Integer(1), "marked changed, as an integer");
    assert!(miko.ok(&["verify"]).contains("no drift"));
    miko.ok(&["uninstall", BUNDLE]);
    assert_eq!(miko.dump(), dump);
    assert!(changed_type(&miko).iter().all(|t| t == "integer"));
}

/// MikoPBX's employee form saves at most 1024 characters of advanced options:
/// featpkg does not make an employee unsavable.
#[test]
fn advanced_options_over_the_employee_forms_limit_are_refused() {
    let miko = Miko::new();
    let long: String = (0..35)
        .map(|i| format!("set_var = FEATPKG_TEST_{i:02}=x\n"))
        .collect();
    let own = format!("[endpoint]\n{long}");
    assert!(own.len() <= 1024 && own.len() > 1024 - 60, "{}", own.len());
    miko.db()
        .execute(
            "UPDATE m_Sip SET manualattributes = ?1 WHERE extension = '203'",
            [encode(own.as_bytes())],
        )
        .unwrap();
    let (db, files) = (miko.db_bytes(), miko.files());
    let out = miko.install(&["--set", "call-waiting.endpoints=202,203"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    for words in [
        "m_Sip:203",
        "employee 203's advanced options would be",
        "at most 1024",
        "leave 203 out",
    ] {
        assert!(msg.contains(words), "no {words:?} in: {msg}");
    }
    assert_eq!(miko.db_bytes(), db);
    assert_same_files("files", &files, &miko.files());
    // 202 alone fits.
    miko.install_ok(&["--set", "call-waiting.endpoints=202"]);
}

/// A module this MikoPBX's Asterisk cannot load is named, and the change is
/// rolled back (modules.conf written again without it).
#[test]
fn a_module_mikopbxs_asterisk_lacks_is_named() {
    let miko = Miko::new();
    let (dump, files) = (miko.dump(), miko.files());
    let out = miko.install_env(
        &["--features", "call-waiting"],
        &[("FAKE_ASTERISK_MISSING", "func_extstate.so")],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("this MikoPBX's Asterisk could not load func_extstate.so")
            && msg.contains("/offload/asterisk/modules"),
        "{msg}"
    );
    assert_eq!(miko.dump(), dump);
    assert_same_files("files", &files, &miko.files());
}

/// The watchers reach AMI on the port MikoPBX's manager.conf says (an admin
/// setting, AMIPort), not a hard-coded 5038.
#[test]
fn the_watchers_use_mikopbxs_ami_port() {
    let miko = Miko::new();
    miko.generate(|dir| {
        let path = dir.join("etc/asterisk/manager.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, text.replace("port = 5038", "port = 5039")).unwrap();
    });
    miko.install_ok(&["--features", "busy-callback"]);
    let ami = miko.read(&format!("{MODULE_DIR}/etc/featpkg-ami/busy-callback.conf"));
    assert!(ami.contains("\nport=5039\n"), "{ami}");
    assert!(ami.contains("\nhost=127.0.0.1\n"), "{ami}");
}

/// What every module upgrade does (disable, then enable): uninstall, install.
/// The load lines are in modules.conf after the enable and after MikoPBX next
/// regenerates it; `verify` notices when MikoPBX writes modules.conf without
/// them (the module disabled behind featpkg's back).
#[test]
fn load_lines_survive_disable_enable_and_regeneration() {
    let miko = Miko::new();
    let generated = miko.generated(MODULES);
    miko.install_ok(&["--features", "call-waiting,busy-callback"]);
    miko.ok(&["uninstall", BUNDLE]);
    assert_eq!(miko.read(MODULES), generated, "disable: lines gone at once");
    assert!(!miko.host(HOOK).exists());
    miko.install_ok(&["--features", "call-waiting,busy-callback"]);
    let with_ours = format!(
        "{generated}; ***** BEGIN BY ModuleFeatpkg\n{}; ***** END BY ModuleFeatpkg\n",
        modules_block()
    );
    assert_eq!(miko.read(MODULES), with_ours);
    // MikoPBX regenerates everything (a boot): still there.
    boot(&miko, &ALL_WORDS);
    miko.start_asterisk();
    assert_eq!(miko.read(MODULES), with_ours);
    assert!(miko.ok(&["verify"]).contains("no drift"));

    // The module disabled in MikoPBX without featpkg: its hook is not called.
    let out = Command::new(fake_reload())
        .arg("modules")
        .envs(miko.env())
        .env_remove("FAKE_MIKOPBX_MODULES")
        .env_remove("FAKE_MIKOPBX_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(miko.read(MODULES), generated);
    let out = miko.run(&["verify"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for words in [
        "not-applied",
        "lacks load => func_extstate.so",
        "load => res_manager_devicestate.so",
        "ModuleFeatpkg is disabled",
    ] {
        assert!(said.contains(words), "no {words:?} in: {said}");
    }
}

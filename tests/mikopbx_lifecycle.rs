//! The module's whole life on MikoPBX's real code: MikoPBX Core 2026.1.223's
//! own PHP (the vendored release, unpacked by `.ci/setup-mikopbx`) uploads,
//! enables, disables, upgrades and deletes the module built from this
//! repository, and regenerates the configuration; after each step a real
//! call on the scratch Asterisk shows call-waiting and busy-callback working.
//!
//! What runs as MikoPBX's code (tests/mikopbx-php/lifecycle.php drives it):
//! PbxExtensionState (enable/disable), EnableModuleAction,
//! DisableModuleAction, ModuleInstallationBase's upgrade sequence,
//! WorkerModuleInstaller (unzip, PbxExtensionSetupBase::installModule:
//! installFiles restoring db/ on upgrade, fixFilesRights), postInstallModule,
//! UninstallModuleAction (the lsof kill, keepSettings backup),
//! ReloadModuleStateAction::handleModuleConfigChanges (the second hook call),
//! ModulesConf (the real generator with the modules' generateModulesConf()
//! hooks), Util::fileWriteContent (custom-file modes),
//! Util::parseIniSettings, PbxSettings, PbxExtensionModules, CustomFiles,
//! Codecs, Sip (the real models), and the module's own shims.
//!
//! Stand-ins (tests/mikopbx-php/standins.php, each described there): Phalcon
//! (DI, Injectable, Config, events, messages), the ORM under the real models
//! (PDO on the real SQLite; model events not fired), Redis and the model
//! cache, the event bus to the browser, the mutex, the license server,
//! syslog (a file), translation (message keys), Sentry, Whoops. The four
//! generators that need a whole PBX's models (extensions.conf, manager.conf,
//! pjsip.conf, the crontab) write fixture texts — the scratch Asterisk's own
//! configuration — through the real fileWriteContent
//! (tests/mikopbx-php/generators.php says why each is faithful). The first-boot
//! table migration applies the models' annotations (lifecycle.php `migrate`).
//!
//! The test's PBX: MikoPBX's database and modules directory in a temp dir,
//! Asterisk's directories the scratch Asterisk's; featpkg (the module's own
//! binary, run by the module's shims) sees them through the scratch tree's
//! root, as in the other real suites: FEATPKG_ROOT, FEATPKG_ASTERISK_CONF,
//! FEATPKG_CONFIG_DB and FEATPKG_ASTERISK_CMD, which the PHP processes pass
//! on, stand for MikoPBX's fixed paths.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::asterisk::{self, Asterisk, PhoneMode, wait_user_event};
use common::{repo, text};
use serde_json::{Value, json};

const MODULE: &str = "ModuleFeatpkg";
const WAIT: Duration = Duration::from_secs(15);
/// The block MikoPBX's ModulesConf wraps around the module's hook text.
const HOOK_BEGIN: &str = "; ***** BEGIN BY ModuleFeatpkg";
const LOAD_LINES: [&str; 2] = [
    "load => func_extstate.so",
    "load => res_manager_devicestate.so",
];
const CRONTAB: &str = "/var/spool/cron/crontabs/root";
/// MikoPBX's own crontab (the text its CronConf generates, here a fixture).
const MIKOPBX_CRONTAB: &str = "*/1 * * * * /usr/bin/php -f /usr/www/src/Core/Workers/Cron/WorkerSafeScriptsCore.php start > /dev/null 2> /dev/null\n";

/// The unpacked MikoPBX source (`.ci/setup-mikopbx`, run here when CI did not).
fn mikopbx_tree() -> PathBuf {
    static TREE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TREE.get_or_init(|| {
        if let Some(p) = std::env::var_os("FEATPKG_MIKOPBX_TREE") {
            return PathBuf::from(p);
        }
        let out = Command::new("bash")
            .arg(repo().join(".ci/setup-mikopbx"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash .ci/setup-mikopbx");
        assert!(out.status.success(), ".ci/setup-mikopbx failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

fn harness() -> PathBuf {
    repo().join("tests/mikopbx-php")
}

/// A bundle archive of this repository at `version`.
fn archive(dir: &Path, version: &str) -> PathBuf {
    let (keep, zip) = common::bundle_with_version(version, |_| {});
    let to = dir.join(format!("featpkg-recipes-{version}.zip"));
    std::fs::copy(zip, &to).unwrap();
    drop(keep);
    to
}

/// The test's MikoPBX: its database and modules in `dir`, Asterisk the scratch one.
struct Miko<'a> {
    ast: &'a Asterisk,
    dir: tempfile::TempDir,
}

impl<'a> Miko<'a> {
    /// A MikoPBX on the shipped database; `migrate` lists the models whose
    /// tables the first-boot migration updates (all of them: `None`).
    fn new(ast: &'a Asterisk, migrate: Option<&[&str]>) -> Miko<'a> {
        let dir = tempfile::Builder::new()
            .prefix("featpkg-miko-")
            .tempdir()
            .unwrap();
        let miko = Miko { ast, dir };
        let d = miko.dir.path();
        for sub in [
            "custom_modules",
            "cf",
            "var",
            "generated",
            "php-ini",
            "upload",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // featpkg's view: <root><dir> is dir (the PBX's own paths).
        let inner = ast.root().join(d.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&inner);
        std::os::unix::fs::symlink(d, &inner).unwrap();
        let _ = std::fs::remove_dir_all(ast.root().join("var/spool/cron"));
        std::fs::copy(mikopbx_tree().join("resources/db/mikopbx.db"), miko.db()).unwrap();
        let fixtures = repo().join("tests/fixtures/real-asterisk");
        for name in ["extensions.conf", "manager.conf", "pjsip.conf"] {
            let text = std::fs::read_to_string(fixtures.join(name)).unwrap();
            std::fs::write(d.join("generated").join(name), ast.fill(&text)).unwrap();
        }
        std::fs::write(d.join("generated/crontab"), MIKOPBX_CRONTAB).unwrap();
        std::fs::write(
            d.join("php-ini/harness.ini"),
            format!(
                "include_path=\".:/usr/share/php:{}\"\n",
                harness().display()
            ),
        )
        .unwrap();
        let ast_dir = |p: PathBuf| p.display().to_string();
        let settings = json!({
            "src": mikopbx_tree().join("src"),
            "root": ast.root(),
            "db": miko.db(),
            "modules_dir": d.join("custom_modules"),
            "ast_etc": ast_dir(ast.etc()),
            "ast_mod": ast_dir(asterisk::prefix().join("lib/asterisk/modules")),
            "ast_agi": ast_dir(ast.var_lib().join("agi-bin")),
            "ast_varlib": ast_dir(ast.var_lib()),
            "ast_spool": ast_dir(ast.spool()),
            "ast_log": ast_dir(ast.log_dir()),
            "asterisk_cli": ast.cli_command(),
            "asterisk_conf": ast.conf(),
            "generated": d.join("generated"),
            "var": d.join("var"),
            "pbx_version": "2026.1.223",
        });
        std::fs::write(d.join("harness.json"), settings.to_string()).unwrap();
        let mut args = vec!["migrate"];
        if let Some(models) = migrate {
            assert!(!models.is_empty());
            args.extend_from_slice(models);
        }
        miko.ok(&args);
        miko.ok(&["boot"]);
        miko
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("cf/mikopbx.db")
    }

    fn module_dir(&self) -> PathBuf {
        self.dir.path().join("custom_modules").join(MODULE)
    }

    fn var(&self) -> PathBuf {
        self.dir.path().join("var")
    }

    /// What every process of this PBX sees: the harness's settings, PHP's
    /// include_path with the harness's Globals.php, and featpkg's view of
    /// MikoPBX's paths.
    fn environment(&self, cmd: &mut Command) {
        cmd.env("MIKOPBX_HARNESS", self.dir.path().join("harness.json"))
            .env(
                "PHP_INI_SCAN_DIR",
                format!(":{}", self.dir.path().join("php-ini").display()),
            )
            .env("FEATPKG_ROOT", self.ast.root())
            .env("FEATPKG_ASTERISK_CONF", self.ast.conf())
            .env("FEATPKG_CONFIG_DB", self.db())
            .env("FEATPKG_ASTERISK_CMD", self.ast.cli_command())
            .env_remove("FEATPKG_TEST_FAIL_AT")
            .env_remove("FEATPKG_TEST_PAUSE_AT");
    }

    fn php_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("php");
        cmd.arg(harness().join("lifecycle.php")).args(args);
        self.environment(&mut cmd);
        cmd
    }

    /// One life-cycle step by MikoPBX's code; its JSON answer.
    fn step(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut cmd = self.php_command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        parse(args, &out)
    }

    /// A step that must succeed.
    fn ok(&self, args: &[&str]) -> Value {
        let v = self.step(args, &[]);
        assert_eq!(v["success"], true, "{args:?}: {v}\n{}", self.syslog());
        v
    }

    /// Runs the crontab line that starts `program`, as cron does (its
    /// command, after the schedule, through sh).
    fn start_cron_line(&self, program: &str) -> std::process::Child {
        let crontab = std::fs::read_to_string(self.ast.root().join(&CRONTAB[1..])).unwrap();
        let line = crontab
            .lines()
            .find(|l| !l.starts_with('#') && l.contains(program))
            .unwrap_or_else(|| panic!("no crontab line runs {program}:\n{crontab}"));
        // m h dom mon dow, then (a user crontab) the command.
        let command: Vec<&str> = line.split_whitespace().skip(5).collect();
        assert!(command[0].starts_with('/'), "{line}");
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", command.join(" ")))
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn syslog(&self) -> String {
        std::fs::read_to_string(self.var().join("syslog.log")).unwrap_or_default()
    }

    /// Uploads the archive (MikoPBX's module page: install, or upgrade).
    fn upload(&self, zip: &Path) -> Value {
        self.ok(&["install", zip.to_str().unwrap()])
    }

    fn params(&self, params: Value) {
        std::fs::write(
            self.module_dir().join("db/featpkg-params.json"),
            serde_json::to_string_pretty(&params).unwrap(),
        )
        .unwrap();
    }

    /// The module's featpkg, as its shims run it.
    fn featpkg(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.module_dir().join("bin/x86_64-linux/featpkg"));
        cmd.args(args)
            .args(["--target", "mikopbx", "--module-dir"])
            .arg(self.module_dir());
        self.environment(&mut cmd);
        cmd.output().unwrap()
    }

    /// `featpkg status --json`: the installed bundles.
    fn status(&self) -> Value {
        let out = self.featpkg(&["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The installed version of the bundle, with its features (none: not installed).
    fn installed(&self) -> Option<(String, Vec<String>)> {
        let status = self.status();
        let bundle = status
            .as_array()?
            .iter()
            .find(|b| b["name"] == "featpkg-recipes")?;
        let features = bundle["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        Some((bundle["version"].as_str().unwrap().to_string(), features))
    }

    fn verify_clean(&self) {
        let out = self.featpkg(&["verify"]);
        assert!(out.status.success(), "verify: {}", text(&out));
    }

    fn etc(&self, name: &str) -> String {
        std::fs::read_to_string(self.ast.etc_file(name)).unwrap()
    }

    /// What an admin would compare: every file MikoPBX generated, the
    /// custom-file rows and the employees' advanced options.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in [
            "extensions.conf",
            "manager.conf",
            "pjsip.conf",
            "modules.conf",
        ] {
            out.insert(name.to_string(), self.etc(name));
        }
        out.insert(
            CRONTAB.into(),
            std::fs::read_to_string(self.ast.root().join(&CRONTAB[1..])).unwrap(),
        );
        let db = rusqlite::Connection::open(self.db()).unwrap();
        let mut rows = db
            .prepare("SELECT id, filepath, content, mode, changed FROM m_CustomFiles ORDER BY id")
            .unwrap();
        let rows: Vec<String> = rows
            .query_map([], |r| {
                Ok(format!(
                    "{:?}",
                    (0..5)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i).unwrap())
                        .collect::<Vec<_>>()
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.insert("m_CustomFiles".into(), rows.join("\n"));
        let mut sip = db
            .prepare("SELECT extension, manualattributes FROM m_Sip ORDER BY id")
            .unwrap();
        let sip: Vec<String> = sip
            .query_map([], |r| {
                Ok(format!(
                    "{:?} {:?}",
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.insert("m_Sip".into(), sip.join("\n"));
        out
    }

    /// An employee's advanced options, decoded as MikoPBX reads them
    /// (Util::parseIniSettings: base64_decode when the text is base64).
    fn advanced_options(&self, extension: &str) -> String {
        let db = rusqlite::Connection::open(self.db()).unwrap();
        let stored = db
            .query_row(
                "SELECT manualattributes FROM m_Sip WHERE extension = ?1",
                [extension],
                |r| r.get::<_, Option<String>>(0),
            )
            .unwrap()
            .unwrap_or_default();
        let out = Command::new("php")
            .args([
                "-r",
                "$d = base64_decode($argv[1]); echo base64_encode($d) === $argv[1] ? $d : $argv[1];",
                &stored,
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

fn parse(args: &[&str], out: &Output) -> Value {
    assert!(
        out.status.success(),
        "php lifecycle.php {args:?} exited {:?}: {}",
        out.status.code(),
        text(out)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("php lifecycle.php {args:?}: no JSON ({e}): {}", text(out)))
}

/// Asserts the load lines are in MikoPBX's modules.conf, inside the module's
/// block, and the modules are running in Asterisk.
fn assert_load_lines(miko: &Miko) {
    let modules = miko.etc("modules.conf");
    let begin = modules
        .find(HOOK_BEGIN)
        .unwrap_or_else(|| panic!("modules.conf has no block of the module:\n{modules}"));
    for line in LOAD_LINES {
        let at = modules[begin..]
            .find(line)
            .unwrap_or_else(|| panic!("modules.conf lacks {line}:\n{modules}"));
        assert!(modules[begin + at..].contains("; ***** END BY ModuleFeatpkg"));
    }
    for module in ["func_extstate.so", "res_manager_devicestate.so"] {
        let shown = miko.ast.cli(&format!("module show like {module}"));
        assert!(shown.contains("Running"), "{module}: {shown}");
    }
}

/// Asserts the module's block is not in modules.conf.
fn assert_no_load_lines(miko: &Miko) {
    let modules = miko.etc("modules.conf");
    assert!(!modules.contains(HOOK_BEGIN), "{modules}");
}

/// Real calls: 202 on a call with 203, then 201 calls 202 → beep, then
/// music on hold (call-waiting); 202's phone refusing calls, 201 calls 202 →
/// the busy-callback offer answers and plays its prompt.
fn assert_calls_work(miko: &Miko) {
    let ast = miko.ast;
    assert_load_lines(miko);
    let mut ami = ast.ami();
    ast.cli("dialplan set global RINGTIME 2");

    // call-waiting
    ast.set_phone("202", PhoneMode::Answer);
    ast.call(&mut ami, "203", "202");
    wait_user_event(&mut ami, "PhoneAnswer", &[("Exten", "202")], WAIT);
    ast.wait_device_state(&mut ami, "PJSIP/202", "INUSE", Duration::from_secs(5));
    ast.set_phone("202", PhoneMode::Ring);
    let mark = ast.log_mark();
    ast.call(&mut ami, "201", "202");
    let status = wait_user_event(&mut ami, "PbxDialStatus", &[("Exten", "202")], WAIT);
    assert_eq!(status.get("Status"), Some("NOANSWER"), "{status:?}");
    let log = ast.wait_log(mark, "the waiting call's Dial", WAIT, |l| {
        l.contains("Playing 'beep.") && l.contains("Started music on hold")
    });
    assert!(
        log.contains(",2,Ttm(default)\")"),
        "the marked call's Dial keeps Tt and adds music on hold:\n{}",
        asterisk::tail(&log, 40)
    );
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "PJSIP/202", "NOT_INUSE", WAIT);

    // busy-callback
    ast.set_phone("202", PhoneMode::Busy);
    let mark = ast.log_mark();
    ast.call(&mut ami, "201", "202");
    let status = wait_user_event(&mut ami, "PbxDialStatus", &[("Exten", "202")], WAIT);
    assert_eq!(status.get("Status"), Some("BUSY"), "{status:?}");
    ast.wait_log(mark, "the busy-callback offer's prompt", WAIT, |l| {
        l.contains("Executing [202@featpkg-busy-callback:1] AGI(\"")
            && l.contains("Playing 'vm-isonphone.")
    });
    ast.cli("channel request hangup all");
    ast.set_phone("202", PhoneMode::Answer);
}

/// The defaults the module enables with: every feature whose parameters all
/// have defaults (conference-guest needs three the admin must give).
const DEFAULT_FEATURES: [&str; 4] = [
    "busy-callback",
    "call-waiting",
    "operator-alert",
    "queue-failover",
];

/// 1. Upload, then enable with the defaults: no Asterisk restart is needed,
///    the module is green, featpkg's status agrees, the rows carry the
///    blocks, MikoPBX's modules.conf carries the load lines, calls work.
#[test]
fn upload_then_enable_with_defaults() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    let zip = archive(miko.dir.path(), "1.0.0");
    let up = miko.upload(&zip);
    assert_eq!(up["module"]["disabled"], "1", "{up}");
    assert!(miko.installed().is_none());
    // fixFilesRights made bin/ executable again after the unzip.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(
            miko.module_dir()
                .join("bin/x86_64-linux/featpkg-busy-callback"),
        )
        .unwrap()
        .permissions(),
    );
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");

    let on = miko.ok(&["enable"]);
    assert_eq!(on["module"]["disabled"], "0", "{on}");
    let (version, mut features) = miko.installed().expect("installed after enable");
    features.sort();
    assert_eq!(version, "1.0.0");
    assert_eq!(features, DEFAULT_FEATURES);
    let extensions = miko.etc("extensions.conf");
    assert!(
        extensions.contains("[featpkg-call-waiting]"),
        "{extensions}"
    );
    assert!(
        extensions.contains("[featpkg-busy-callback]"),
        "{extensions}"
    );
    miko.verify_clean();
    assert_calls_work(&miko);
}

/// 2. Enable with the admin's parameters (db/featpkg-params.json): the
///    endpoint option lands in the employee's advanced options and, once
///    MikoPBX regenerated it, in pjsip.conf.
#[test]
fn enable_with_parameters() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    miko.params(json!({
        "call-waiting": {"endpoints": "202"},
        "busy-callback": {"ring": "10", "retry_wait": "10"},
    }));
    miko.ok(&["enable"]);
    let options = miko.advanced_options("202");
    assert!(options.contains("device_state_busy_at"), "{options:?}");
    let pjsip = miko.etc("pjsip.conf");
    let section = &pjsip[pjsip.find("[202](pbx-endpoint)").unwrap()..];
    let section = &section[..section.find("\n\n").unwrap_or(section.len())];
    // The feature's default value.
    assert!(section.contains("device_state_busy_at = 3"), "{section}");
    let shown = miko.ast.cli("pjsip show endpoint 202");
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("device_state_busy_at")
                && l.trim_end().ends_with(": 3")),
        "Asterisk runs 202 with the option:\n{shown}"
    );
    miko.verify_clean();
    assert_calls_work(&miko);
}

/// 3. Disable, then enable (what every upgrade does): after the disable
///    MikoPBX's regenerated modules.conf no longer has the module's block;
///    after the enable and another regeneration the load lines are back.
///    With the selection the settings page records (db/featpkg-features.json)
///    an enable installs just those features; with an empty one, nothing
///    (the module is enabled all the same, and the PBX is as booted).
#[test]
fn disable_then_enable_keeps_the_load_lines() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    let booted = miko.snapshot();
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    miko.ok(&["enable"]);
    let off = miko.ok(&["disable"]);
    assert_eq!(off["module"]["disabled"], "1", "{off}");
    assert!(miko.installed().is_none());
    miko.ok(&["boot"]);
    assert_no_load_lines(&miko);
    assert_eq!(miko.snapshot(), booted, "a disabled module leaves nothing");

    miko.ok(&["enable"]);
    miko.ok(&["boot"]);
    assert!(miko.installed().is_some());
    miko.verify_clean();
    assert_calls_work(&miko);

    // The selection the settings page records (db/featpkg-features.json):
    // the next enable installs exactly it, an empty one nothing at all.
    let selection = miko.module_dir().join("db/featpkg-features.json");
    miko.ok(&["disable"]);
    std::fs::write(
        &selection,
        "{\n    \"features\": [\n        \"call-waiting\"\n    ]\n}\n",
    )
    .unwrap();
    let on = miko.ok(&["enable"]);
    assert_eq!(on["module"]["disabled"], "0", "{on}");
    assert_eq!(
        miko.installed(),
        Some(("1.0.0".to_string(), vec!["call-waiting".to_string()]))
    );
    miko.verify_clean();
    miko.ok(&["disable"]);
    std::fs::write(&selection, "{\n    \"features\": []\n}\n").unwrap();
    let on = miko.ok(&["enable"]);
    assert_eq!(on["module"]["disabled"], "0", "{on}");
    assert_eq!(on["module"]["disableReason"], "", "{on}");
    assert!(miko.installed().is_none());
    miko.ok(&["boot"]);
    assert_no_load_lines(&miko);
    assert_eq!(miko.snapshot(), booted, "enabled with nothing installed");
    let off = miko.ok(&["disable"]);
    assert_eq!(off["module"]["disabled"], "1", "{off}");
}

/// 4. Upgrade to a newer bundle through MikoPBX's own sequence (disable,
///    uninstall keeping settings, unzip, installModule restoring db/, enable):
///    the parameters and featpkg's state come through, the new version is
///    installed with them.
#[test]
fn upgrade_keeps_parameters_and_state() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    miko.params(json!({"call-waiting": {"endpoints": "202"}}));
    miko.ok(&["enable"]);
    let params = std::fs::read_to_string(miko.module_dir().join("db/featpkg-params.json")).unwrap();

    let up = miko.upload(&archive(miko.dir.path(), "1.0.1"));
    assert_eq!(up["messages"]["moduleWasEnabled"], true, "{up}");
    assert_eq!(up["module"]["disabled"], "0", "{up}");
    assert_eq!(up["module"]["version"], "1.0.1", "{up}");
    assert_eq!(
        std::fs::read_to_string(miko.module_dir().join("db/featpkg-params.json")).unwrap(),
        params,
        "the admin's parameters survive the upgrade"
    );
    let (version, features) = miko.installed().expect("installed after the upgrade");
    assert_eq!(version, "1.0.1");
    assert!(features.contains(&"call-waiting".to_string()));
    assert!(
        miko.advanced_options("202")
            .contains("device_state_busy_at")
    );
    miko.ok(&["boot"]);
    miko.verify_clean();
    assert_calls_work(&miko);
}

/// 5. An enable whose install fails leaves the module disabled with
///    featpkg's message as the reason, and nothing installed; a disable whose
///    uninstall fails leaves it enabled, still installed and working.
#[test]
fn failed_enable_and_disable_leave_the_module_state_as_installed() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    let before = miko.snapshot();

    let on = miko.step(&["enable"], &[("FEATPKG_TEST_FAIL_AT", "applied")]);
    assert_eq!(on["module"]["disabled"], "1", "{on}");
    assert_eq!(on["module"]["disableReason"], "DisabledByException", "{on}");
    let reason = on["module"]["disableReasonText"].as_str().unwrap();
    assert!(reason.contains("featpkg install failed"), "{reason}");
    assert!(miko.syslog().contains("featpkg install failed"));
    assert!(miko.installed().is_none());
    miko.ok(&["boot"]);
    assert_eq!(miko.snapshot(), before, "a failed enable changes nothing");

    miko.ok(&["enable"]);
    let off = miko.step(&["disable"], &[("FEATPKG_TEST_FAIL_AT", "applied")]);
    assert_eq!(off["module"]["disabled"], "0", "{off}");
    assert!(miko.installed().is_some());
    miko.ok(&["boot"]);
    miko.verify_clean();
    assert_calls_work(&miko);
}

/// 6. WorkerModelsEvents calls the module's After hook a second time: while
///    the first run is still going (it waits for featpkg's lock) and after it
///    (it finds everything up to date): one install, nothing changed twice.
#[test]
fn the_second_hook_call_during_and_after_the_first() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    miko.upload(&archive(miko.dir.path(), "1.0.0"));

    std::fs::write(miko.var().join("slow-reload"), "3").unwrap();
    let first = miko
        .php_command(&["enable"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = miko.var().join("slow-reload.started");
    let deadline = std::time::Instant::now() + WAIT;
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(miko.var().join("slow-reload")).unwrap();
    let second = miko.ok(&["reload-state"]);
    let first = parse(&["enable"], &first.wait_with_output().unwrap());
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(second["module"]["disabled"], "0", "{second}");
    let after_both = miko.snapshot();
    let (_, features) = miko.installed().unwrap();
    assert_eq!(features.len(), DEFAULT_FEATURES.len());

    miko.ok(&["reload-state"]);
    assert_eq!(
        miko.snapshot(),
        after_both,
        "the hook again changes nothing"
    );
    miko.ok(&["boot"]);
    miko.verify_clean();
    assert_calls_work(&miko);
}

/// 7. Delete on the module page (enabled, with parameters): every file
///    MikoPBX generates and every row is byte for byte as before the upload.
#[test]
fn uninstall_restores_every_file_and_row() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    let before = miko.snapshot();
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    miko.params(json!({"call-waiting": {"endpoints": "202,203"}}));
    miko.ok(&["enable"]);
    miko.ok(&["boot"]);
    assert_calls_work(&miko);
    // The watcher cron started from the module's bin/, still running when
    // the admin deletes the module: MikoPBX's own kill (lsof on bin/*) ends it.
    let mut watcher = miko.start_cron_line("featpkg-busy-callback-watch");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        watcher.try_wait().unwrap().is_none(),
        "the watcher did not start"
    );

    let gone = miko.ok(&["uninstall"]);
    assert!(gone["module"].is_null(), "{gone}");
    assert!(!miko.module_dir().exists());
    let deadline = std::time::Instant::now() + WAIT;
    while watcher.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher outlived the module's removal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    miko.ok(&["boot"]);
    assert_eq!(miko.snapshot(), before);
    assert_no_load_lines(&miko);
}

/// 8. The shipped database before its boot migration
///    (m_CustomFiles.changed INTEGER) and after it (TEXT): enabled before, the
///    rows survive the migration and MikoPBX's regeneration, verify is clean,
///    calls work, and the disable restores everything.
#[test]
fn the_shipped_database_before_and_after_its_boot_migration() {
    let ast = asterisk::shared();
    // Every table MikoPBX's generators read, but m_CustomFiles as shipped.
    let miko = Miko::new(
        &ast,
        Some(&["PbxExtensionModules", "PbxSettings", "Codecs", "Sip"]),
    );
    let db = rusqlite::Connection::open(miko.db()).unwrap();
    let changed_type = |db: &rusqlite::Connection| -> String {
        db.query_row(
            "SELECT type FROM pragma_table_info('m_CustomFiles') WHERE name = 'changed'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(changed_type(&db), "INTEGER");
    let before = miko.snapshot();
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    miko.ok(&["enable"]);
    assert!(miko.installed().is_some());

    let migrated = miko.ok(&["migrate", "CustomFiles"]);
    assert_eq!(migrated["messages"], json!(["m_CustomFiles"]));
    assert_eq!(changed_type(&db), "TEXT");
    miko.ok(&["boot"]);
    miko.verify_clean();
    assert_calls_work(&miko);

    miko.ok(&["disable"]);
    miko.ok(&["boot"]);
    let after = miko.snapshot();
    for name in [
        "extensions.conf",
        "manager.conf",
        "pjsip.conf",
        "modules.conf",
        CRONTAB,
        "m_Sip",
    ] {
        assert_eq!(after[name], before[name], "{name}");
    }
}

/// 8 (SIPConf): with MikoPBX's network settings changed since Asterisk
/// started, applying endpoint options would make MikoPBX restart Asterisk and
/// end every call: the enable is refused with the way to consent, and nothing
/// changes; without endpoint options nothing restarts and the enable goes on.
#[test]
fn endpoint_options_after_a_network_change_need_consent() {
    let ast = asterisk::shared();
    let miko = Miko::new(&ast, None);
    miko.upload(&archive(miko.dir.path(), "1.0.0"));
    let before = miko.snapshot();
    std::fs::write(miko.var().join("topology-changed"), "").unwrap();
    miko.params(json!({"call-waiting": {"endpoints": "202"}}));

    let refused = miko.step(&["enable"], &[]);
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["module"]["disabled"], "1", "{refused}");
    let message = refused["messages"].to_string();
    assert!(message.contains("restart Asterisk"), "{message}");
    assert!(
        message.contains("{\\\"allow_restart\\\": true} in db/featpkg-settings.json"),
        "{message}"
    );
    assert!(miko.installed().is_none());
    miko.ok(&["boot"]);
    assert_eq!(miko.snapshot(), before);

    miko.params(json!({}));
    let on = miko.ok(&["enable"]);
    assert_eq!(on["module"]["disabled"], "0", "{on}");
    assert!(miko.installed().is_some());
    assert_calls_work(&miko);
}

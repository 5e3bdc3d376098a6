//! The bundle archive as each PBX reads it, and the PHP shims inside it run
//! by php-cli against stand-ins for the PBX classes (tests/fixtures/php/) with a
//! fake featpkg that records its arguments.
//!
//! Needs `php` with SimpleXML (`apt-get install php-cli php-xml`; `.ci/setup`
//! installs it). Without `php` every test here says so on stderr and passes.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};

const MODULE_ID: &str = "ModuleFeatpkg";

/// Every entry of the archive: (name, bytes, unix mode).
fn entries(path: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (
                f.name().unwrap().to_string(),
                bytes,
                f.unix_mode().unwrap_or(0),
            )
        })
        .collect()
}

fn entry(name: &str) -> Vec<u8> {
    entries(&bundle())
        .into_iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not in the archive"))
        .1
}

fn manifest() -> Value {
    serde_json::from_slice(&entry("bundle.json")).unwrap()
}

/// The archive extracted the way MikoPBX does it (straight into
/// `<modulesDir>/<moduleUniqueID>/`), with the fake featpkg in place of this
/// machine's binary.
struct Module {
    _dir: tempfile::TempDir,
    path: PathBuf,
    fake_log: PathBuf,
    stub_log: PathBuf,
}

impl Module {
    fn new() -> Module {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom_modules").join(MODULE_ID);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle()).unwrap()).unwrap();
        zip.extract(&path).unwrap();
        let fake = path.join(format!("bin/{}-linux/featpkg", std::env::consts::ARCH));
        assert!(fake.is_file(), "{} is not in the archive", fake.display());
        std::fs::copy(php_fixtures().join("fake-featpkg"), &fake).unwrap();
        Module {
            fake_log: dir.path().join("featpkg-calls.log"),
            stub_log: dir.path().join("stub.log"),
            path,
            _dir: dir,
        }
    }

    fn dir(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn php(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("php");
        cmd.args(args)
            .env("FAKE_FEATPKG_LOG", &self.fake_log)
            .env("STUB_LOG", &self.stub_log)
            .env_remove("FAKE_FEATPKG_FAIL")
            .env_remove("FAKE_FEATPKG_STATUS")
            .env_remove("FAKE_FEATPKG_DESTINATIONS")
            .env_remove("STUB_FAIL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs a driver script and returns the JSON it printed.
    fn driver(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
        let script = php_fixtures().join(script);
        let mut all = vec![script.to_str().unwrap(), self.dir()];
        all.extend_from_slice(args);
        let out = self.php(&all, env);
        assert!(out.status.success(), "php {all:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("php {all:?} printed no JSON ({e}): {}", text(&out)))
    }

    fn mikopbx(&self, hook: &str, env: &[(&str, &str)]) -> Value {
        self.driver("run-mikopbx.php", &[hook], env)
    }

    fn freepbx(&self, action: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut all = vec![action];
        all.extend_from_slice(args);
        self.driver("run-freepbx.php", &all, env)
    }

    /// Each featpkg run since the last call, as its argument list.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(&self.fake_log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.fake_log);
        let mut out = Vec::new();
        let mut current = Vec::new();
        for line in text.lines() {
            if line == "--END--" {
                out.push(std::mem::take(&mut current));
            } else {
                current.push(line.to_string());
            }
        }
        out
    }

    fn stub_log(&self) -> String {
        let text = std::fs::read_to_string(&self.stub_log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.stub_log);
        text
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const INSTALLED: &str = r#"[{"name":"featpkg-recipes","version":"1.0.0"}]"#;
const REFUSAL: &str = "a change to modules.conf restarts Asterisk, which drops every live call; allow it in the module settings";

// ---- the archive as MikoPBX reads it ----------------------------------

#[test]
fn mikopbx_finds_its_files_at_the_archive_root() {
    let list = entries(&bundle());
    let names: Vec<&str> = list.iter().map(|(n, _, _)| n.as_str()).collect();
    for required in [
        "module.json",
        "Setup/PbxExtensionSetup.php",
        "Lib/FeatpkgConf.php",
        "Lib/FeatpkgRunner.php",
        "bin/featpkg-reload.php",
        // Without db/, an upgrade's `cp -r Backup/db/* <module>/db/`
        // (PbxExtensionSetupBase::installFiles) fails and loses the settings.
        "db/.gitkeep",
    ] {
        assert!(names.contains(&required), "{required} missing: {names:?}");
    }
    // Both architectures, every binary, executable, and built for that machine.
    let binaries = manifest_binaries();
    for (arch, machine) in [("x86_64", 62u16), ("aarch64", 183)] {
        for name in &binaries {
            let path = format!("bin/{arch}-linux/{name}");
            let (_, bytes, mode) = list
                .iter()
                .find(|(n, _, _)| *n == path)
                .unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(mode & 0o777, 0o755, "{path}");
            assert_eq!(
                u16::from_le_bytes([bytes[18], bytes[19]]),
                machine,
                "{path} is not an {arch} ELF"
            );
        }
    }
    for name in &names {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|p| p == ".."),
            "{name}: MikoPBX aborts on such entries"
        );
    }
}

fn manifest_binaries() -> Vec<String> {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(repo().join("module-manifest/bundle.json")).unwrap())
            .unwrap();
    meta["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn module_json_has_what_mikopbx_requires() {
    let json: Value = serde_json::from_slice(&entry("module.json")).unwrap();
    let id = json["moduleUniqueID"].as_str().unwrap();
    assert_eq!(id, MODULE_ID);
    let mut chars = id.chars();
    assert!(
        chars.next().unwrap().is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric())
    );
    assert_eq!(json["version"], manifest()["version"]);
    for field in ["min_pbx_version", "developer", "support_email"] {
        assert!(
            json[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {json}"
        );
    }
    // The hook class MikoPBX looks for: id without "Module", plus "Conf".
    assert_eq!(
        format!("Lib/{}Conf.php", id.replace("Module", "")),
        "Lib/FeatpkgConf.php"
    );
}

// ---- the archive as FreePBX reads it ----------------------------------

#[test]
fn module_xml_parses_with_simplexml_as_freepbx_reads_it() {
    if !php_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("module.xml");
    std::fs::write(&xml, entry("module.xml")).unwrap();
    let out = Command::new("php")
        .arg(php_fixtures().join("read-module-xml.php"))
        .arg(&xml)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["root"], "module");
    assert_eq!(got["rawname"], "featpkg");
    assert_eq!(got["version"], manifest()["version"]);
    for field in ["name", "publisher", "license", "category", "description"] {
        assert!(
            got[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {got}"
        );
    }
    assert_eq!(got["supported"], json!(["16.0", "17.0"]));
    assert_eq!(got["depends_version"], json!(["16.0"]));
    assert_eq!(got["depends_engine"], json!(["asterisk ge 18"]));
    assert_eq!(got["menuitems"], true, "the settings page's menu item");
    // FreePBX's BMO class file is ucfirst(rawname).class.php, at the root
    // beside module.xml (a single-directory layout FreePBX also accepts is not used).
    let names: Vec<String> = entries(&bundle()).into_iter().map(|e| e.0).collect();
    assert!(names.contains(&"Featpkg.class.php".to_string()));
    assert!(names.contains(&"functions.inc.php".to_string()));
}

#[test]
fn every_php_file_is_lint_clean() {
    if !php_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let php: Vec<(String, Vec<u8>, u32)> = entries(&bundle())
        .into_iter()
        .filter(|(n, _, _)| n.ends_with(".php"))
        .collect();
    assert!(
        php.len() >= 6,
        "{:?}",
        php.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    for (name, bytes, _) in php {
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new("php").arg("-l").arg(&path).output().unwrap();
        assert!(out.status.success(), "php -l {name}: {}", text(&out));
    }
}

#[test]
fn the_runner_picks_the_binary_by_uname_machine() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let got = m.mikopbx("arch", &[]);
    assert_eq!(got["result"]["x86_64"], "x86_64-linux");
    assert_eq!(got["result"]["amd64"], "x86_64-linux");
    assert_eq!(got["result"]["aarch64"], "aarch64-linux");
    assert_eq!(got["result"]["arm64"], "aarch64-linux");
    assert_eq!(
        got["result"]["mips"],
        "error: featpkg ships binaries for x86_64 and aarch64 Linux only; this machine is \"mips\" (uname -m)"
    );
}

// ---- MikoPBX hooks ------------------------------------------------------

#[test]
fn mikopbx_enable_checks_then_installs() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let dir = m.dir();
    let install = args(&[
        "install",
        dir,
        "--target",
        "mikopbx",
        "--module-dir",
        dir,
        "--lock-wait",
        "25",
    ]);
    let got = m.mikopbx("onBeforeModuleEnable", &[]);
    assert_eq!(got["result"], true, "{got}");
    let mut dry = install.clone();
    dry.push("--dry-run".into());
    assert_eq!(m.calls(), [dry]);
    let got = m.mikopbx("onAfterModuleEnable", &[]);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(m.calls(), std::slice::from_ref(&install));

    // Parameters and the restart permission come from the module's db/.
    std::fs::create_dir_all(m.path.join("db")).unwrap();
    std::fs::write(m.path.join("db/featpkg-params.json"), "{}").unwrap();
    std::fs::write(
        m.path.join("db/featpkg-settings.json"),
        r#"{"allow_restart": true}"#,
    )
    .unwrap();
    m.mikopbx("onAfterModuleEnable", &[]);
    let params = format!("{dir}/db/featpkg-params.json");
    let mut full = install.clone();
    full.extend(args(&["--params", &params, "--allow-restart"]));
    assert_eq!(m.calls(), [full]);
    std::fs::write(
        m.path.join("db/featpkg-settings.json"),
        r#"{"allow_restart": false}"#,
    )
    .unwrap();
    m.mikopbx("onAfterModuleEnable", &[]);
    let mut no_restart = install;
    no_restart.extend(args(&["--params", &params]));
    assert_eq!(m.calls(), [no_restart]);
}

#[test]
fn mikopbx_enable_failure_refuses_and_shows_featpkgs_message() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let fail = [
        ("FAKE_FEATPKG_FAIL", "install"),
        ("FAKE_FEATPKG_MESSAGE", REFUSAL),
    ];
    let got = m.mikopbx("onBeforeModuleEnable", &fail);
    assert_eq!(got["result"], false, "{got}");
    let shown = format!("featpkg install failed (exit 1): featpkg: error: {REFUSAL}");
    assert_eq!(got["messages"], json!({"error": [shown]}));
    assert_eq!(
        m.stub_log(),
        format!("syslog level=3 ModuleFeatpkg: {shown}\n"),
        "logged with MikoPBX's logger"
    );
    // The real install fails after MikoPBX marked the module enabled: the
    // module goes back to disabled with featpkg's message as the reason, and
    // nothing is thrown (MikoPBX catches nothing there).
    let got = m.mikopbx("onAfterModuleEnable", &fail);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(got["messages"], json!({"error": [shown]}));
    assert_eq!(
        m.stub_log(),
        format!(
            "syslog level=3 ModuleFeatpkg: {shown}\nmodule ModuleFeatpkg saved disabled=1 reason=DisabledByException text={shown}\n"
        )
    );
}

#[test]
fn mikopbx_disable_uninstalls_the_bundle_named_in_bundle_json() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let dir = m.dir();
    let target = args(&[
        "--target",
        "mikopbx",
        "--module-dir",
        dir,
        "--lock-wait",
        "25",
    ]);
    let status = [args(&["status", "--json"]), target.clone()].concat();
    let installed = [("FAKE_FEATPKG_STATUS", INSTALLED)];
    let got = m.mikopbx("onBeforeModuleDisable", &installed);
    assert_eq!(got["result"], true, "{got}");
    let uninstall = [args(&["uninstall", "featpkg-recipes"]), target.clone()].concat();
    let mut dry = uninstall.clone();
    dry.push("--dry-run".into());
    assert_eq!(m.calls(), [status.clone(), dry]);
    m.mikopbx("onAfterModuleDisable", &installed);
    assert_eq!(m.calls(), [status.clone(), uninstall]);

    // Nothing installed (e.g. disabled before): nothing to take out.
    let got = m.mikopbx("onAfterModuleDisable", &[]);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(m.calls(), std::slice::from_ref(&status));

    // The name is read from the extracted bundle.json, not written into the shim.
    let manifest_path = m.path.join("bundle.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replacen(
            "\"name\": \"featpkg-recipes\"",
            "\"name\": \"other-bundle\"",
            1,
        ),
    )
    .unwrap();
    std::fs::create_dir_all(m.path.join("db")).unwrap();
    std::fs::write(
        m.path.join("db/featpkg-settings.json"),
        r#"{"allow_restart": true}"#,
    )
    .unwrap();
    m.mikopbx(
        "onAfterModuleDisable",
        &[("FAKE_FEATPKG_STATUS", r#"[{"name":"other-bundle"}]"#)],
    );
    assert_eq!(
        m.calls(),
        [
            status,
            [
                args(&["uninstall", "other-bundle"]),
                target,
                args(&["--allow-restart"])
            ]
            .concat()
        ]
    );
}

#[test]
fn mikopbx_disable_failure_refuses_and_shows_featpkgs_message() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let env = [
        ("FAKE_FEATPKG_STATUS", INSTALLED),
        ("FAKE_FEATPKG_FAIL", "uninstall"),
        (
            "FAKE_FEATPKG_MESSAGE",
            "extensions.conf: the featpkg block was edited by hand",
        ),
    ];
    let shown = "featpkg uninstall failed (exit 1): featpkg: error: extensions.conf: the featpkg block was edited by hand";
    let got = m.mikopbx("onBeforeModuleDisable", &env);
    assert_eq!(got["result"], false);
    assert_eq!(got["messages"], json!({"error": [shown]}));
    // The real uninstall fails after MikoPBX marked the module disabled: it
    // goes back to enabled, as featpkg's features are still installed.
    let got = m.mikopbx("onAfterModuleDisable", &env);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(got["messages"], json!({"error": [shown]}));
    assert!(
        m.stub_log().ends_with(&format!(
            "{shown}\nmodule ModuleFeatpkg saved disabled=0 reason= text=\n"
        )),
        "{}",
        m.stub_log()
    );
}

#[test]
fn mikopbx_module_uninstall_takes_the_features_out_before_the_files_go() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let dir = m.dir();
    let target = args(&[
        "--target",
        "mikopbx",
        "--module-dir",
        dir,
        "--lock-wait",
        "25",
    ]);
    let got = m.mikopbx("uninstallModule", &[("FAKE_FEATPKG_STATUS", INSTALLED)]);
    assert_eq!(got["result"], true, "{got}");
    assert_eq!(
        m.calls(),
        [
            [args(&["status", "--json"]), target.clone()].concat(),
            [args(&["uninstall", "featpkg-recipes"]), target.clone()].concat(),
        ]
    );
    assert_eq!(
        m.stub_log(),
        "PbxExtensionSetupBase::uninstallModule keepSettings=false\n",
        "then MikoPBX's own uninstall"
    );

    // featpkg refuses: the admin sees why, and MikoPBX's removal is not started here.
    let got = m.mikopbx(
        "uninstallModule",
        &[
            ("FAKE_FEATPKG_STATUS", INSTALLED),
            ("FAKE_FEATPKG_FAIL", "uninstall"),
            ("FAKE_FEATPKG_MESSAGE", "state.db is locked"),
        ],
    );
    let shown = "featpkg could not take the features back out, so they are still installed: featpkg uninstall failed (exit 1): featpkg: error: state.db is locked";
    assert_eq!(got["exception"], shown, "{got}");
    assert_eq!(got["messages"], json!([shown]));
    let log = m.stub_log();
    assert!(
        log.contains(shown) && !log.contains("PbxExtensionSetupBase"),
        "{log}"
    );
}

#[test]
fn mikopbx_module_deletion_overrides_hand_edits_rather_than_leave_blocks_calling_deleted_programs()
{
    if !php_available() {
        return;
    }
    let m = Module::new();
    let dir = m.dir();
    let target = args(&[
        "--target",
        "mikopbx",
        "--module-dir",
        dir,
        "--lock-wait",
        "25",
    ]);
    let got = m.mikopbx(
        "uninstallModule",
        &[
            ("FAKE_FEATPKG_STATUS", INSTALLED),
            ("FAKE_FEATPKG_REFUSE", "uninstall"),
            ("FAKE_FEATPKG_MESSAGE", "m_CustomFiles:/etc/asterisk/extensions.conf: block operator-alert/dialplan was edited by hand"),
        ],
    );
    assert_eq!(got["result"], true, "{got}");
    assert_eq!(
        m.calls(),
        [
            [args(&["status", "--json"]), target.clone()].concat(),
            [args(&["uninstall", "featpkg-recipes"]), target.clone()].concat(),
            [
                args(&["uninstall", "featpkg-recipes"]),
                target.clone(),
                args(&["--force"])
            ]
            .concat(),
        ]
    );
    let warning = "the module is being deleted, so featpkg removed its blocks although they were edited by hand: featpkg uninstall failed (exit 2): featpkg: error: m_CustomFiles:/etc/asterisk/extensions.conf: block operator-alert/dialplan was edited by hand (use --force)";
    assert_eq!(got["messages"], json!([warning]), "{got}");
    let log = m.stub_log();
    assert!(log.contains(warning), "{log}");
    assert!(
        log.ends_with("PbxExtensionSetupBase::uninstallModule keepSettings=false\n"),
        "then MikoPBX's own uninstall: {log}"
    );
}

#[test]
fn mikopbx_reload_script_calls_mikopbx_reloads_pjsip_last() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let script = m.path.join("bin/featpkg-reload.php");
    let include = format!(
        "include_path={}",
        php_fixtures().join("mikopbx-include").display()
    );
    let reload = |words: &[&str], env: &[(&str, &str)]| {
        // As featpkg runs it (its default --reload-cmd ends in `--`).
        let mut a = vec!["-d", &include, "-f", script.to_str().unwrap(), "--"];
        a.extend_from_slice(words);
        m.php(&a, env)
    };
    let out = reload(
        &[
            "pjsip", "dialplan", "modules", "manager", "cron", "dialplan",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    // modules.conf is regenerated without ModulesConf::reload's restart.
    assert_eq!(
        m.stub_log(),
        "ExtensionsConf::reload\nManagerConf::reload\nCronConf->reStart\nModulesConf->generateConfig\nSIPConf::reload\n"
    );
    let out = reload(&["dialplan", "pjsip"], &[("STUB_FAIL", "SIPConf")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "featpkg-reload: pjsip failed: SIPConf: Asterisk is not running\n"
    );
    assert_eq!(m.stub_log(), "ExtensionsConf::reload\nSIPConf::reload\n");
    for bad in [&["dialplan", "voicemail"][..], &["restart"]] {
        let out = reload(bad, &[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unknown reload"),
            "{}",
            text(&out)
        );
        assert_eq!(m.stub_log(), "", "nothing reloaded on a usage error");
    }

    // Asked whether a PJSIP reload restarts Asterisk: MikoPBX's own check,
    // nothing reloaded.
    let out = reload(&["--would-restart", "pjsip"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no\n");
    let out = reload(
        &["--would-restart", "pjsip"],
        &[("STUB_TOPOLOGY_CHANGED", "1")],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("yes: the network settings changed since Asterisk started"),
        "{}",
        text(&out)
    );
    assert_eq!(
        m.stub_log(),
        "SIPConf->needAsteriskRestart\nSIPConf->needAsteriskRestart\n"
    );
    let out = reload(&["--would-restart", "dialplan"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

// ---- FreePBX --------------------------------------------------------------

#[test]
fn freepbx_install_and_uninstall_call_featpkg() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let dir = m.dir();
    let got = m.freepbx("install", &[], &[]);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(m.calls(), [args(&["install", dir, "--target", "freepbx"])]);
    // Again (FreePBX runs install() on every upgrade): the same call; featpkg
    // answers "up to date" itself.
    m.freepbx("install", &[], &[]);
    assert_eq!(m.calls(), [args(&["install", dir, "--target", "freepbx"])]);

    let got = m.freepbx("uninstall", &[], &[("FAKE_FEATPKG_STATUS", INSTALLED)]);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(
        m.calls(),
        [
            args(&["status", "--json", "--target", "freepbx"]),
            args(&["uninstall", "featpkg-recipes", "--target", "freepbx"]),
        ]
    );
    m.freepbx("uninstall", &[], &[]);
    assert_eq!(
        m.calls(),
        [args(&["status", "--json", "--target", "freepbx"])],
        "nothing installed: nothing removed"
    );
    assert_eq!(m.freepbx("backup", &[], &[])["result"], json!([]));
}

#[test]
fn freepbx_install_failure_throws_featpkgs_message() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let got = m.freepbx(
        "install",
        &[],
        &[
            ("FAKE_FEATPKG_FAIL", "install"),
            (
                "FAKE_FEATPKG_MESSAGE",
                "extensions_custom.conf line 12: [from-internal-custom] already has *600",
            ),
        ],
    );
    assert_eq!(
        got["exception"],
        "featpkg install failed (exit 1): featpkg: error: extensions_custom.conf line 12: [from-internal-custom] already has *600"
    );
    let got = m.freepbx(
        "uninstall",
        &[],
        &[
            ("FAKE_FEATPKG_STATUS", INSTALLED),
            ("FAKE_FEATPKG_FAIL", "uninstall"),
            ("FAKE_FEATPKG_MESSAGE", "edited by hand"),
        ],
    );
    assert_eq!(
        got["exception"],
        "featpkg uninstall failed (exit 1): featpkg: error: edited by hand"
    );
}

#[test]
fn freepbx_destinations_come_from_featpkg_once_per_request() {
    if !php_available() {
        return;
    }
    let m = Module::new();
    let list = r#"[{"destination":"featpkg-operator-alert-noanswer,s,1","description":"Operator can't-answer message","feature":"operator-alert"}]"#;
    let env = [("FAKE_FEATPKG_DESTINATIONS", list)];
    let got = m.freepbx("destinations", &[], &env);
    let entry = json!([{
        "destination": "featpkg-operator-alert-noanswer,s,1",
        "description": "Operator can't-answer message",
        "category": "Feature packages",
        "id": "featpkg",
    }]);
    assert_eq!(
        got["result"],
        json!({"first": entry, "second": entry}),
        "{got}"
    );
    assert_eq!(
        m.calls(),
        [args(&["destinations", "--target", "freepbx"])],
        "asked once per request"
    );
    let got = m.freepbx(
        "getdestinfo",
        &["featpkg-operator-alert-noanswer,s,1", "ext-local,200,1"],
        &env,
    );
    assert_eq!(
        got["result"],
        json!({
            "featpkg-operator-alert-noanswer,s,1": {
                "description": "featpkg operator-alert: Operator can't-answer message",
                "edit_url": false,
            },
            "ext-local,200,1": false,
        })
    );
    // None installed: FreePBX's "no destinations" (null).
    assert_eq!(
        m.freepbx("destinations", &[], &[])["result"],
        json!({"first": null, "second": null})
    );
    // featpkg fails: no destinations, and the error is in FreePBX's log.
    m.calls();
    let got = m.freepbx(
        "destinations",
        &[],
        &[
            ("FAKE_FEATPKG_FAIL", "destinations"),
            ("FAKE_FEATPKG_MESSAGE", "state.db: unreadable"),
        ],
    );
    assert_eq!(got["result"], json!({"first": null, "second": null}));
    assert_eq!(m.calls().len(), 1);
    assert_eq!(
        m.stub_log(),
        "freepbx_log ERROR: featpkg: cannot list the feature destinations: featpkg destinations failed (exit 1): featpkg: error: state.db: unreadable\n"
    );
}

#[test]
fn the_extracted_module_directory_opens_as_the_bundle() {
    // What `featpkg install <moduleDir>` does first: MikoPBX added db/, the
    // manifest still covers every file featpkg ships.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MODULE_ID);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle()).unwrap()).unwrap();
    zip.extract(&path).unwrap();
    std::fs::create_dir_all(path.join("db")).unwrap();
    std::fs::write(path.join("db/module.db"), "x").unwrap();
    let opened = featpkg::bundle::open(&path).unwrap();
    let zipped = featpkg::bundle::open(&bundle()).unwrap();
    assert_eq!(opened.manifest(), zipped.manifest());
    std::fs::write(path.join("Lib/FeatpkgRunner.php"), "<?php // changed\n").unwrap();
    let err = featpkg::bundle::open(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("Lib/FeatpkgRunner.php: size does not match the manifest"),
        "{err}"
    );
}

//! The module's settings page, server side, as each PBX runs it: MikoPBX's
//! legacy module REST callback (`Lib/FeatpkgConf.php::moduleRestAPICallback`)
//! and FreePBX's ajax handler (`Featpkg.class.php::ajaxRequest/ajaxHandler`),
//! both routing to `Lib/FeatpkgPage.php`, run by php-cli against stand-ins
//! for the PBX classes (`tests/fixtures/php/page-*.php`) with the fake
//! featpkg (`tests/fixtures/php/fake-featpkg`) in place of the bundled
//! binary. What is checked is what an admin (or an attacker) would notice:
//! which actions exist, the exact argument lists featpkg gets, the
//! parameters file (0600, gone after a preview), hostile values, a change
//! running in the background while the page polls it, one change at a time,
//! featpkg's refusals, and the replies in each PBX's shape.
//!
//! Needs `php` (php-cli); without it every test here says so on stderr and passes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const MODULE_ID: &str = "ModuleFeatpkg";

/// Every variable the fake featpkg and the stand-ins read: none leaks in.
const FAKE_ENV: &[&str] = &[
    "FAKE_FEATPKG_FAIL",
    "FAKE_FEATPKG_REFUSE",
    "FAKE_FEATPKG_MESSAGE",
    "FAKE_FEATPKG_STATUS",
    "FAKE_FEATPKG_DESTINATIONS",
    "FAKE_FEATPKG_SCHEMA",
    "FAKE_FEATPKG_VERIFY",
    "FAKE_FEATPKG_JSON",
    "FAKE_FEATPKG_STEPS",
    "FAKE_FEATPKG_STEP_SLEEP",
    "FAKE_FEATPKG_EXIT",
    "FAKE_FEATPKG_EXIT_FOR",
    "FAKE_FEATPKG_STDERR",
    "STUB_FAIL",
    "STUB_WEB_ADMIN_LANGUAGE",
];

const ACTIONS: [&str; 7] = [
    "schema", "status", "preview", "apply", "remove", "rollback", "job",
];

const STEPS: [&str; 4] = ["plan", "write", "reload", "verify"];

/// What the fake prints for a change with --json unless told otherwise.
fn fake_result() -> Value {
    json!({"dry_run": false, "changed": true, "summary": "ok", "changes": [], "warnings": []})
}

const INSTALLED: &str = r#"[{"name":"featpkg-recipes","version":"1.0.0"}]"#;

/// `featpkg status --json` with call-waiting installed (and another bundle's feature).
const CALL_WAITING_INSTALLED: &str = r#"[{"name":"featpkg-recipes","version":"1.0.0","features":[{"id":"call-waiting","version":"1.0.0"}]}]"#;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The payload of a successful MikoPBX reply.
fn miko_ok(got: &Value) -> Value {
    assert_eq!(got["reply"]["result"], true, "{got}");
    got["reply"]["data"].clone()
}

/// The message of a failed MikoPBX reply, after checking its shape and code.
fn miko_err(got: &Value, code: u16) -> String {
    let reply = &got["reply"];
    assert_eq!(reply["result"], false, "{got}");
    assert_eq!(reply["data"], json!({"code": code}), "{got}");
    assert_eq!(reply["httpCode"], code, "{got}");
    assert_eq!(got["httpCode"], code, "{got}");
    let errors = reply["messages"]["error"]
        .as_array()
        .unwrap_or_else(|| panic!("{got}"));
    assert_eq!(errors.len(), 1, "{got}");
    errors[0].as_str().unwrap().to_string()
}

/// The payload of a successful FreePBX reply.
fn fpbx_ok(got: &Value) -> Value {
    assert_eq!(got["admitted"], true, "{got}");
    assert_eq!(got["http"], 200, "{got}");
    assert_eq!(got["reply"]["status"], true, "{got}");
    got["reply"]["data"].clone()
}

/// The message of a failed FreePBX reply, after checking the HTTP status.
fn fpbx_err(got: &Value, code: u16) -> String {
    assert_eq!(got["admitted"], true, "{got}");
    assert_eq!(
        got["http"], code,
        "the HTTP status survives FreePBX's 200: {got}"
    );
    assert_eq!(got["reply"]["status"], false, "{got}");
    assert_eq!(got["reply"]["code"], code, "{got}");
    got["reply"]["message"].as_str().unwrap().to_string()
}

/// The bundle extracted as a module (MikoPBX's custom_modules/<id>/; FreePBX
/// runs the same files), the fake featpkg in place of this machine's binary,
/// and a FreePBX ASTVARLIBDIR.
struct Page {
    tmp: tempfile::TempDir,
    path: PathBuf,
    astvar: PathBuf,
    fake_log: PathBuf,
    params_log: PathBuf,
    stub_log: PathBuf,
}

impl Page {
    fn new() -> Page {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom_modules").join(MODULE_ID);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle()).unwrap()).unwrap();
        zip.extract(&path).unwrap();
        let fake = path.join(format!("bin/{}-linux/featpkg", std::env::consts::ARCH));
        assert!(fake.is_file(), "{} is not in the archive", fake.display());
        std::fs::copy(php_fixtures().join("fake-featpkg"), &fake).unwrap();
        let html = path.join("ui-assets/settings.html");
        if !html.is_file() {
            // The fragment itself comes from ui-assets/ (not this test's
            // subject); the page only needs its root's data-pbx="".
            std::fs::create_dir_all(html.parent().unwrap()).unwrap();
            std::fs::write(&html, "<div id=\"featpkg-settings\" data-pbx=\"\"></div>\n").unwrap();
        }
        let astvar = dir.path().join("astvarlib");
        std::fs::create_dir_all(&astvar).unwrap();
        Page {
            fake_log: dir.path().join("featpkg-calls.log"),
            params_log: dir.path().join("params.log"),
            stub_log: dir.path().join("stub.log"),
            astvar,
            path,
            tmp: dir,
        }
    }

    fn dir(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn db(&self) -> PathBuf {
        self.path.join("db")
    }

    /// FreePBX: the page's data directory.
    fn fpbx_data(&self) -> PathBuf {
        self.astvar.join("featpkg-page")
    }

    fn php(&self, all: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("php");
        cmd.args(all)
            .env("FAKE_FEATPKG_LOG", &self.fake_log)
            .env("FAKE_FEATPKG_PARAMS_LOG", &self.params_log)
            .env("STUB_LOG", &self.stub_log);
        for k in FAKE_ENV {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn driver(&self, script: &str, arg: &str, env: &[(&str, &str)]) -> Value {
        let script = php_fixtures().join(script);
        let out = self.php(&[script.to_str().unwrap(), self.dir(), arg], env);
        assert!(
            out.status.success(),
            "php {} {arg}: {}",
            script.display(),
            text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "php {} {arg} printed no JSON ({e}): {}",
                script.display(),
                text(&out)
            )
        })
    }

    /// MikoPBX: FeatpkgConf::moduleRestAPICallback($request).
    fn miko_request(&self, request: Value, env: &[(&str, &str)]) -> Value {
        let got = self.driver("page-mikopbx.php", &request.to_string(), env);
        assert_eq!(got["exception"], Value::Null, "{got}");
        got
    }

    /// MikoPBX: a POST to /pbxcore/api/modules/ModuleFeatpkg/<action> with form fields.
    fn miko(&self, action: &str, data: Value, env: &[(&str, &str)]) -> Value {
        self.miko_request(
            json!({"action": action, "data": data, "input": "", "REQUEST_METHOD": "POST"}),
            env,
        )
    }

    /// FreePBX: ajax.php with the scenario (command, get, post, cookie, method).
    fn fpbx_scenario(&self, mut scenario: Value, env: &[(&str, &str)]) -> Value {
        scenario["settings"] = json!({"ASTVARLIBDIR": self.astvar.to_str().unwrap()});
        let got = self.driver("page-freepbx.php", &scenario.to_string(), env);
        assert_eq!(got["exception"], Value::Null, "{got}");
        got
    }

    /// FreePBX: a POST to ajax.php?module=featpkg&command=<command>.
    fn fpbx(&self, command: &str, post: Value, env: &[(&str, &str)]) -> Value {
        self.fpbx_scenario(
            json!({"command": command, "post": post, "method": "POST"}),
            env,
        )
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

    /// The files featpkg got with --params since the last call: (mode, content).
    fn params_files(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.params_log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.params_log);
        text.split_terminator("--END--\n")
            .map(|block| {
                let (first, content) = block.split_once('\n').unwrap_or((block, ""));
                (
                    first.strip_prefix("mode ").unwrap_or(first).to_string(),
                    content.to_string(),
                )
            })
            .collect()
    }

    fn stub_log(&self) -> String {
        let text = std::fs::read_to_string(&self.stub_log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.stub_log);
        text
    }

    /// Polls `job` (through `poll`) until the job is over: the last reply,
    /// and the steps each poll saw.
    fn wait(&self, poll: impl Fn() -> Value) -> (Value, Vec<Value>) {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let job = poll();
            seen.push(job["steps"].clone());
            if job["state"] != "running" {
                return (job, seen);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "still running after a minute: {job}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn miko_job_state(&self, id: &str) -> String {
        miko_ok(&self.miko("job", json!({"id": id}), &[]))["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn miko_wait(&self, id: &str) -> (Value, Vec<Value>) {
        self.wait(|| miko_ok(&self.miko("job", json!({"id": id}), &[])))
    }

    fn fpbx_wait(&self, id: &str) -> (Value, Vec<Value>) {
        self.wait(|| fpbx_ok(&self.fpbx("job", json!({"id": id}), &[])))
    }

    /// Files whose name starts with `.featpkg-` (temp files) in `dir`.
    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".featpkg-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn miko_target(dir: &str) -> Vec<String> {
    args(&[
        "--target",
        "mikopbx",
        "--module-dir",
        dir,
        "--lock-wait",
        "25",
    ])
}

fn fpbx_target() -> Vec<String> {
    args(&["--target", "freepbx"])
}

fn job_id(data: &Value) -> String {
    let id = data["job"]
        .as_str()
        .unwrap_or_else(|| panic!("no job: {data}"));
    assert!(
        id.len() == 24
            && id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{id}"
    );
    id.to_string()
}

/// The path featpkg got after --params in `call`.
fn params_arg(call: &[String]) -> String {
    let at = call
        .iter()
        .position(|a| a == "--params")
        .unwrap_or_else(|| panic!("no --params: {call:?}"));
    call[at + 1].clone()
}

// ---- what each PBX finds ------------------------------------------------------

#[test]
fn the_page_files_are_where_each_pbx_looks_for_them() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    for file in [
        "Lib/FeatpkgPage.php",
        "bin/featpkg-job.php",
        "App/Controllers/ModuleFeatpkgController.php",
        "Messages/en.php",
        "Messages/ru.php",
        "page.featpkg.php",
    ] {
        assert!(p.path.join(file).is_file(), "{file} is not in the archive");
        let out = p.php(&["-l", p.path.join(file).to_str().unwrap()], &[]);
        assert!(out.status.success(), "php -l {file}: {}", text(&out));
    }
    // FreePBX: the menu item (page key "featpkg" => page.featpkg.php).
    let xml = p.path.join("module.xml");
    let out = p.php(
        &[
            "-r",
            "$x = simplexml_load_file($argv[1]); echo json_encode(['page' => (string) $x->menuitems->featpkg]);",
            xml.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["page"], "featpkg recipes");
    // MikoPBX: the sidebar caption and sub-header in both languages.
    for lang in ["en", "ru"] {
        let file = p.path.join(format!("Messages/{lang}.php"));
        let out = p.php(
            &[
                "-r",
                "echo json_encode(include $argv[1], JSON_UNESCAPED_UNICODE);",
                file.to_str().unwrap(),
            ],
            &[],
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        for key in ["BreadcrumbModuleFeatpkg", "SubHeaderModuleFeatpkg"] {
            assert!(
                got[key].as_str().is_some_and(|v| !v.is_empty()),
                "{lang}: {key}: {got}"
            );
        }
    }
}

#[test]
fn mikopbx_controller_adds_the_page_script_and_style() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let got = p.driver("page-mikopbx.php", "controller", &[]);
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(
        p.stub_log(),
        "assets headerCSS addCss css/cache/ModuleFeatpkg/featpkg-settings.css local=true\n\
         assets footerJS addJs js/cache/ModuleFeatpkg/featpkg-settings.js local=true\n"
    );
}

#[test]
fn freepbx_page_prints_the_fragment_for_freepbx_and_nothing_without_login() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let html = std::fs::read_to_string(p.path.join("ui-assets/settings.html")).unwrap();
    let got = p.fpbx_scenario(json!({"page": true, "auth": true}), &[]);
    assert_eq!(
        got["output"],
        html.replacen("data-pbx=\"\"", "data-pbx=\"freepbx\"", 1)
    );
    let script = php_fixtures().join("page-freepbx.php");
    let scenario = json!({"page": true, "auth": false}).to_string();
    let out = p.php(&[script.to_str().unwrap(), p.dir(), scenario.as_str()], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "No direct script access allowed"
    );
}

// ---- which actions exist --------------------------------------------------------

#[test]
fn unknown_actions_are_400_and_featpkg_never_runs() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    for action in [
        "exec",
        "Schema",
        "schema;id",
        "../schema",
        "__construct",
        "handle",
        "startJob",
        "",
    ] {
        let got = p.miko(action, json!({"features": "call-waiting"}), &[]);
        assert_eq!(miko_err(&got, 400), "unknown action", "{action}");
        assert_eq!(
            got["reply"]["processor"],
            "Modules\\ModuleFeatpkg\\Lib\\FeatpkgConf::moduleRestAPICallback"
        );
    }
    // FreePBX: Ajax refuses (403) what ajaxRequest() does not admit.
    for command in [
        "exec",
        "Schema",
        "schema;id",
        "install",
        "uninstall",
        "ajaxHandler",
        "",
    ] {
        let got = p.fpbx(command, json!({}), &[]);
        assert_eq!(got["admitted"], false, "{command}: {got}");
        assert_eq!(got["http"], 403, "{command}");
    }
    assert_eq!(p.calls(), Vec::<Vec<String>>::new(), "featpkg never ran");
    // Every page action is admitted, with FreePBX's default protections kept.
    for command in ACTIONS {
        let got = p.fpbx_scenario(json!({"command": command, "method": "GET"}), &[]);
        assert_eq!(got["admitted"], true, "{command}: {got}");
        assert_eq!(
            got["setting"],
            json!({"authenticate": true, "allowremote": false})
        );
    }
}

#[test]
fn changes_must_be_posted() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let fields = json!({"params": "{}", "features": "call-waiting", "feature": "call-waiting"});
    for action in ["apply", "remove", "rollback"] {
        let got = p.miko_request(
            json!({"action": action, "data": fields.clone(), "input": "", "REQUEST_METHOD": "GET"}),
            &[],
        );
        assert_eq!(
            miko_err(&got, 400),
            format!("{action} changes the PBX: send it as POST")
        );
        let got = p.fpbx_scenario(
            json!({"command": action, "get": fields.clone(), "method": "GET"}),
            &[],
        );
        assert_eq!(
            fpbx_err(&got, 400),
            format!("{action} changes the PBX: send it as POST")
        );
    }
    assert_eq!(p.calls(), Vec::<Vec<String>>::new());
    assert!(!p.db().join("featpkg-params.json").exists());
}

// ---- reading --------------------------------------------------------------------

#[test]
fn schema_is_featpkgs_plus_the_pbx_language_saved_params_and_restart_setting() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let schema = json!({
        "bundle": {"name": "featpkg-recipes", "version": "1.0.0"},
        "features": [{"id": "call-waiting", "params": []}],
        "queue_statuses": ["TIMEOUT"],
    });
    let schema_text = schema.to_string();
    let env = [
        ("FAKE_FEATPKG_SCHEMA", schema_text.as_str()),
        ("STUB_WEB_ADMIN_LANGUAGE", "ru"),
    ];
    let data = miko_ok(&p.miko("schema", json!({}), &env));
    let mut want = schema.clone();
    want["pbx"] = json!("mikopbx");
    want["lang"] = json!("ru");
    want["saved_params"] = json!({});
    want["allow_restart"] = json!(false);
    want["job"] = Value::Null;
    assert_eq!(data, want);
    // The schema reads the bundle: only the PBX kind goes with it.
    assert_eq!(
        p.calls(),
        [args(&[
            "schema", "--json", "--bundle", dir, "--target", "mikopbx"
        ])]
    );

    // What the admin saved before (also what enabling the module uses).
    let saved = json!({"call-waiting": {"endpoints": "201,202"}});
    std::fs::write(p.db().join("featpkg-params.json"), saved.to_string()).unwrap();
    std::fs::write(
        p.db().join("featpkg-settings.json"),
        r#"{"allow_restart": true}"#,
    )
    .unwrap();
    let data = miko_ok(&p.miko("schema", json!({}), &env));
    assert_eq!(data["saved_params"], saved);
    assert_eq!(data["allow_restart"], true);

    // FreePBX: its own data directory, the admin's language cookie, no restarts.
    let got = p.fpbx_scenario(
        json!({"command": "schema", "method": "GET", "cookie": {"lang": "de_DE"}}),
        &env,
    );
    let data = fpbx_ok(&got);
    assert_eq!(data["pbx"], "freepbx");
    assert_eq!(data["lang"], "de_DE");
    assert_eq!(data["saved_params"], json!({}));
    assert_eq!(data["allow_restart"], false);
    assert_eq!(data["features"], schema["features"]);
    assert_eq!(
        p.calls(),
        [
            args(&["schema", "--json", "--bundle", dir, "--target", "mikopbx"]),
            args(&["schema", "--json", "--bundle", dir, "--target", "freepbx"]),
        ]
    );
}

#[test]
fn status_is_what_is_installed_and_the_drift_even_when_verify_exits_1() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let drift = json!([{"kind": "modified", "path": "/etc/asterisk/extensions.conf"}]);
    let drift_text = drift.to_string();
    let env = [
        ("FAKE_FEATPKG_STATUS", INSTALLED),
        ("FAKE_FEATPKG_VERIFY", drift_text.as_str()),
        ("FAKE_FEATPKG_EXIT", "1"),
        ("FAKE_FEATPKG_EXIT_FOR", "verify"),
    ];
    let data = miko_ok(&p.miko("status", json!({}), &env));
    let installed: Value = serde_json::from_str(INSTALLED).unwrap();
    let want = json!({"installed": installed, "drift": drift});
    assert_eq!(data, want);
    assert_eq!(
        p.calls(),
        [
            [args(&["status", "--json"]), miko_target(dir)].concat(),
            [args(&["verify", "--json"]), miko_target(dir)].concat(),
        ]
    );
    let data = fpbx_ok(&p.fpbx("status", json!({}), &env));
    assert_eq!(data, want);
    assert_eq!(
        p.calls(),
        [
            [args(&["status", "--json"]), fpbx_target()].concat(),
            [args(&["verify", "--json"]), fpbx_target()].concat(),
        ]
    );

    // featpkg fails: a 500 with its message, in each PBX's shape.
    let fail = [
        ("FAKE_FEATPKG_FAIL", "status"),
        ("FAKE_FEATPKG_MESSAGE", "state.db: database is locked"),
    ];
    let shown = "featpkg status failed (exit 1): featpkg: error: state.db: database is locked";
    assert_eq!(miko_err(&p.miko("status", json!({}), &fail), 500), shown);
    assert_eq!(
        p.stub_log(),
        format!("syslog level=3 ModuleFeatpkg: settings page: {shown}\n"),
        "logged with MikoPBX's logger"
    );
    assert_eq!(fpbx_err(&p.fpbx("status", json!({}), &fail), 500), shown);
    assert_eq!(
        p.stub_log(),
        format!("freepbx_log ERROR: featpkg settings page: {shown}\n")
    );
}

// ---- preview ----------------------------------------------------------------------

#[test]
fn preview_hands_featpkg_the_params_in_a_private_file_that_is_gone_afterwards() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let params = json!({"call-waiting": {"endpoints": "201,202"}, "operator-alert": {}});
    let dry = json!({"dry_run": true, "changed": true, "summary": "2 features", "changes": [{"path": "/etc/asterisk/extensions.conf", "diff": "--- a\n+++ b\n"}], "warnings": []});
    let dry_text = dry.to_string();
    let env = [("FAKE_FEATPKG_JSON", dry_text.as_str())];
    let fields = |allow: Option<&str>| {
        let mut f = json!({
            "params": params.to_string(),
            "features": " call-waiting,operator-alert ,call-waiting,",
        });
        if let Some(a) = allow {
            f["allow_restart"] = json!(a);
        }
        f
    };
    let data = miko_ok(&p.miko("preview", fields(Some("1")), &env));
    assert_eq!(data, dry, "featpkg's JSON as it printed it");
    let calls = p.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let file = params_arg(&calls[0]);
    assert!(
        file.starts_with(&format!("{dir}/db/.featpkg-preview-")) && file.ends_with(".json"),
        "{file}"
    );
    assert_eq!(
        calls[0],
        [
            args(&["install", dir]),
            miko_target(dir),
            args(&[
                "--params",
                &file,
                "--features",
                "call-waiting,operator-alert",
                "--dry-run",
                "--json",
                "--allow-restart",
            ]),
        ]
        .concat()
    );
    let files = p.params_files();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].0, "600",
        "only its owner could read the parameters"
    );
    assert_eq!(serde_json::from_str::<Value>(&files[0].1).unwrap(), params);
    assert!(!Path::new(&file).exists(), "{file} is left behind");
    assert_eq!(Page::temp_files(&p.db()), Vec::<String>::new());
    assert!(
        !p.db().join("featpkg-params.json").exists(),
        "a preview saves nothing"
    );

    // Restarts: as asked, else the saved setting.
    std::fs::write(
        p.db().join("featpkg-settings.json"),
        r#"{"allow_restart": true}"#,
    )
    .unwrap();
    miko_ok(&p.miko("preview", fields(Some("0")), &env));
    assert!(!p.calls()[0].contains(&"--allow-restart".to_string()));
    miko_ok(&p.miko("preview", fields(None), &env));
    assert!(p.calls()[0].contains(&"--allow-restart".to_string()));
    p.params_files();

    // FreePBX: the file in its own data directory (0700); never a restart flag.
    let data = fpbx_ok(&p.fpbx("preview", fields(Some("1")), &env));
    assert_eq!(data, dry);
    let calls = p.calls();
    let file = params_arg(&calls[0]);
    let data_dir = p.fpbx_data();
    assert!(
        file.starts_with(&format!("{}/.featpkg-preview-", data_dir.display())),
        "{file}"
    );
    assert_eq!(
        calls,
        [[
            args(&["install", dir]),
            fpbx_target(),
            args(&[
                "--params",
                &file,
                "--features",
                "call-waiting,operator-alert",
                "--dry-run",
                "--json",
            ]),
        ]
        .concat()]
    );
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(p.params_files()[0].0, "600");
    assert!(!Path::new(&file).exists());
    assert_eq!(Page::temp_files(&data_dir), Vec::<String>::new());
}

#[test]
fn preview_shows_featpkgs_refusal_and_fails_when_featpkg_prints_no_json() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let fields = json!({"params": r#"{"queue-failover": {"rules": "[{\"queue\":\"500\",\"status\":\"BUSY\"}]"}}"#, "features": "queue-failover"});
    let refusal = json!({"error": {"feature": "queue-failover", "param": "rules", "path": "$.queue-failover.rules[0].status", "message": "\"BUSY\" is not a QUEUESTATUS"}});
    let refusal_text = refusal.to_string();
    let env = [
        ("FAKE_FEATPKG_EXIT", "2"),
        ("FAKE_FEATPKG_JSON", refusal_text.as_str()),
        (
            "FAKE_FEATPKG_STDERR",
            "featpkg: error: feature queue-failover: rules",
        ),
    ];
    // A refusal is the answer to show, not a server failure.
    assert_eq!(miko_ok(&p.miko("preview", fields.clone(), &env)), refusal);
    assert_eq!(fpbx_ok(&p.fpbx("preview", fields.clone(), &env)), refusal);

    let env = [
        ("FAKE_FEATPKG_EXIT", "2"),
        ("FAKE_FEATPKG_JSON", "dry run: would change:"),
        (
            "FAKE_FEATPKG_STDERR",
            "featpkg: error: the archive is damaged",
        ),
    ];
    let shown = "featpkg install printed no JSON (exit 2): featpkg: error: the archive is damaged";
    assert_eq!(
        miko_err(&p.miko("preview", fields.clone(), &env), 500),
        shown
    );
    assert_eq!(
        fpbx_err(&p.fpbx("preview", fields.clone(), &env), 500),
        shown
    );
    let env = [
        ("FAKE_FEATPKG_FAIL", "install"),
        ("FAKE_FEATPKG_MESSAGE", "cannot read asterisk.conf"),
    ];
    assert_eq!(
        miko_err(&p.miko("preview", fields, &env), 500),
        "featpkg install failed (exit 1): featpkg: error: cannot read asterisk.conf"
    );
    assert_eq!(Page::temp_files(&p.db()), Vec::<String>::new());
}

// ---- hostile and bad input ---------------------------------------------------------

#[test]
fn hostile_values_reach_featpkg_only_as_file_content_or_not_at_all() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let marker = p.tmp.path().join("pwned");
    let m = marker.display();
    let hostile = format!(
        "201; touch {m} $(touch {m}) `touch {m}` \"quoted\" 'single' \\\nnext line\r\n; rm -rf /"
    );
    let params = json!({"call-waiting": {"endpoints": hostile.clone()}});
    let fields = json!({"params": params.to_string(), "features": "call-waiting"});
    miko_ok(&p.miko("preview", fields.clone(), &[]));
    let job = job_id(&miko_ok(&p.miko("apply", fields.clone(), &[])));
    p.miko_wait(&job);
    fpbx_ok(&p.fpbx("preview", fields.clone(), &[]));
    let files = p.params_files();
    assert_eq!(files.len(), 3, "{files:?}");
    for (file_mode, content) in &files {
        assert_eq!(file_mode, "600");
        let got: Value = serde_json::from_str(content).unwrap();
        assert_eq!(got["call-waiting"]["endpoints"], hostile, "byte for byte");
    }
    for call in p.calls() {
        assert!(
            !call.iter().any(|a| a.contains("touch")),
            "the value went on the command line: {call:?}"
        );
    }

    // Ids are checked before featpkg runs: an option or a shell word is refused.
    for bad in [
        "; rm -rf /",
        "$(id)",
        "`id`",
        "call-waiting;id",
        "a'b",
        "a\"b",
        "a\nb",
        "call-waiting\n",
        "--force",
        "-x",
        "../../etc",
        "Call-Waiting",
    ] {
        let features = format!("call-waiting,{bad}");
        let got = p.miko(
            "preview",
            json!({"params": "{}", "features": features}),
            &[],
        );
        assert!(
            miko_err(&got, 400).starts_with("features: "),
            "{bad:?}: {got}"
        );
        let got = p.miko("remove", json!({"feature": bad}), &[]);
        assert!(miko_err(&got, 400).starts_with("feature: "), "{bad:?}");
        let got = p.fpbx("remove", json!({"feature": bad}), &[]);
        assert!(fpbx_err(&got, 400).starts_with("feature: "), "{bad:?}");
        let got = p.miko("job", json!({"id": bad}), &[]);
        assert_eq!(miko_err(&got, 400), "id: not a job id", "{bad:?}");
    }
    assert_eq!(p.calls(), Vec::<Vec<String>>::new(), "featpkg never ran");
    assert!(!marker.exists(), "a shell ran a value");
}

#[test]
fn bad_fields_are_400_naming_what_was_wrong() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"features": "call-waiting"}), "params: missing"),
        (
            json!({"params": "{", "features": "call-waiting"}),
            "params: not JSON (Syntax error)",
        ),
        (
            json!({"params": "[]", "features": "call-waiting"}),
            "params: must be a JSON object {\"feature\": {\"parameter\": \"value\"}}",
        ),
        (
            json!({"params": r#"{"call-waiting": "201"}"#, "features": "call-waiting"}),
            "params: \"call-waiting\" must be an object of parameters",
        ),
        (
            json!({"params": r#"{"call-waiting": {"endpoints": 201}}"#, "features": "call-waiting"}),
            "params: \"call-waiting\".\"endpoints\" must be a string",
        ),
        (
            json!({"params": r#"{"call-waiting": {"endpoints": null}}"#, "features": "call-waiting"}),
            "params: \"call-waiting\".\"endpoints\" must be a string",
        ),
        (json!({"params": "{}"}), "features: missing"),
        (
            json!({"params": "{}", "features": " , "}),
            "features: choose at least one feature",
        ),
        (
            json!({"params": "{}", "features": "call-waiting", "allow_restart": "yes"}),
            "allow_restart: must be \"1\" or \"0\"",
        ),
        (
            json!({"params": "{}", "features": ["call-waiting"]}),
            "features: must be a string",
        ),
    ];
    for (fields, message) in &cases {
        for action in ["preview", "apply"] {
            let got = p.miko(action, fields.clone(), &[]);
            assert_eq!(miko_err(&got, 400), *message, "{action} {fields}");
        }
        let got = p.fpbx("apply", fields.clone(), &[]);
        assert_eq!(fpbx_err(&got, 400), *message, "{fields}");
    }
    let got = p.miko("remove", json!({}), &[]);
    assert_eq!(miko_err(&got, 400), "feature: missing");
    let got = p.miko("job", json!({"id": "0123456789abcdef0123"}), &[]);
    assert_eq!(
        miko_err(&got, 400),
        "id: no such job (only the last 20 are kept)"
    );
    assert_eq!(p.calls(), Vec::<Vec<String>>::new(), "featpkg never ran");
    assert!(
        !p.db().join("featpkg-params.json").exists(),
        "nothing saved"
    );
    assert!(!p.db().join("page-jobs").exists(), "no job started");
}

// ---- changes: background jobs ------------------------------------------------------

#[test]
fn apply_saves_then_runs_featpkg_in_the_background_while_the_page_polls() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let params = json!({"call-waiting": {"endpoints": "201"}});
    let fields =
        json!({"params": params.to_string(), "features": "call-waiting", "allow_restart": "1"});
    let started = Instant::now();
    let data = miko_ok(&p.miko(
        "apply",
        fields,
        &[
            ("FAKE_FEATPKG_STEP_SLEEP", "1"),
            ("FAKE_FEATPKG_STATUS", CALL_WAITING_INSTALLED),
        ],
    ));
    let answered = started.elapsed();
    let id = job_id(&data);
    // The request answers before featpkg is done (it takes 4 s here).
    assert!(answered < Duration::from_secs(3), "apply took {answered:?}");
    let first = miko_ok(&p.miko("job", json!({"id": id.as_str()}), &[]));
    assert_eq!(first["state"], "running", "{first}");
    assert_eq!(first["kind"], "apply");
    // The schema names the running job, for a page opened meanwhile.
    assert_eq!(
        miko_ok(&p.miko("schema", json!({}), &[]))["job"],
        json!(id.as_str())
    );

    let (job, seen) = p.miko_wait(&id);
    assert_eq!(
        job,
        json!({
            "id": id.as_str(),
            "kind": "apply",
            "state": "done",
            "steps": STEPS,
            "result": fake_result(),
            "message": "",
        })
    );
    // Steps only ever grow, in featpkg's order.
    for steps in &seen {
        let steps: Vec<&str> = steps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(steps, STEPS[..steps.len()], "{seen:?}");
    }
    assert!(seen.len() >= 3, "polled while it ran: {seen:?}");

    let saved = p.db().join("featpkg-params.json");
    let saved_arg = saved.to_str().unwrap();
    // (the schema asked meanwhile ran featpkg too)
    let installs: Vec<Vec<String>> = p
        .calls()
        .into_iter()
        .filter(|c| c[0] == "install")
        .collect();
    assert_eq!(
        installs,
        [[
            args(&["install", dir]),
            miko_target(dir),
            args(&[
                "--params",
                saved_arg,
                "--features",
                "call-waiting",
                "--json",
                "--progress",
                "--allow-restart",
            ]),
        ]
        .concat()]
    );
    // Saved where enabling the module (and every upgrade) reads them.
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&saved).unwrap()).unwrap(),
        params
    );
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(p.db().join("featpkg-settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(settings, json!({"allow_restart": true}));
    assert_eq!(mode(&p.db().join("page-jobs")), 0o700);
    assert_eq!(mode(&p.db().join("page-jobs").join(&id)), 0o700);
    assert_eq!(Page::temp_files(&p.db()), Vec::<String>::new());
    let data = miko_ok(&p.miko("schema", json!({}), &[]));
    assert_eq!(data["saved_params"], params);
    assert_eq!(data["allow_restart"], true);
    assert_eq!(data["job"], Value::Null);
    p.calls();

    // The enable path (also on every upgrade) uses what the page saved,
    // and installs what was installed after the change.
    assert_eq!(
        std::fs::read_to_string(p.db().join("featpkg-features.json")).unwrap(),
        "{\n    \"features\": [\n        \"call-waiting\"\n    ]\n}\n"
    );
    let script = php_fixtures().join("run-mikopbx.php");
    let out = p.php(&[script.to_str().unwrap(), dir, "onAfterModuleEnable"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        p.calls(),
        [[
            args(&["install", dir]),
            miko_target(dir),
            args(&[
                "--params",
                saved_arg,
                "--features",
                "call-waiting",
                "--allow-restart",
            ]),
        ]
        .concat()]
    );
}

#[test]
fn one_change_at_a_time_others_are_409() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let fields = json!({"params": "{}", "features": "operator-alert", "feature": "operator-alert"});
    let id = job_id(&miko_ok(&p.miko(
        "apply",
        fields.clone(),
        &[("FAKE_FEATPKG_STEP_SLEEP", "1")],
    )));
    for action in ["apply", "remove", "rollback"] {
        let got = p.miko(action, fields.clone(), &[]);
        assert_eq!(
            miko_err(&got, 409),
            "another change is running: wait for it to finish"
        );
    }
    // The bundle's schema is read meanwhile; preview and status would wait
    // for featpkg's lock: they answer 409 at once, featpkg does not run.
    p.calls();
    assert_eq!(
        miko_ok(&p.miko("schema", json!({}), &[]))["job"],
        json!(id.as_str())
    );
    let started = Instant::now();
    assert_eq!(
        miko_err(&p.miko("preview", fields.clone(), &[]), 409),
        format!("a change is running (job {id}): preview again when it has finished")
    );
    assert_eq!(
        miko_err(&p.miko("status", json!({}), &[]), 409),
        format!("a change is running (job {id}): status follows when it has finished")
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        p.calls()
            .into_iter()
            .map(|c| c[0].clone())
            .collect::<Vec<_>>(),
        ["schema"],
        "only the schema ran featpkg"
    );
    assert_eq!(
        p.miko_job_state(&id),
        "running",
        "still running: the 409s were not late"
    );
    let (job, _) = p.miko_wait(&id);
    assert_eq!(job["state"], "done");
    let next = job_id(&miko_ok(&p.miko("rollback", json!({}), &[])));
    assert_ne!(next, id);
    assert_eq!(p.miko_wait(&next).0["state"], "done");

    // FreePBX the same, answered with HTTP 409.
    let id = job_id(&fpbx_ok(&p.fpbx(
        "apply",
        fields.clone(),
        &[("FAKE_FEATPKG_STEP_SLEEP", "1")],
    )));
    let got = p.fpbx("rollback", json!({}), &[]);
    assert_eq!(
        fpbx_err(&got, 409),
        "another change is running: wait for it to finish"
    );
    assert_eq!(
        fpbx_err(&p.fpbx("preview", fields.clone(), &[]), 409),
        format!("a change is running (job {id}): preview again when it has finished")
    );
    assert_eq!(
        fpbx_err(&p.fpbx("status", json!({}), &[]), 409),
        format!("a change is running (job {id}): status follows when it has finished")
    );
    assert_eq!(p.fpbx_wait(&id).0["state"], "done");
    // Once it is over, both answer again.
    fpbx_ok(&p.fpbx("status", json!({}), &[]));
    fpbx_ok(&p.fpbx("preview", fields, &[]));
}

#[test]
fn remove_and_rollback_run_featpkg_with_the_target_and_the_saved_restart_setting() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    std::fs::write(
        p.db().join("featpkg-settings.json"),
        r#"{"allow_restart": true}"#,
    )
    .unwrap();
    let id = job_id(&miko_ok(&p.miko(
        "remove",
        json!({"feature": "operator-alert"}),
        &[],
    )));
    let (job, _) = p.miko_wait(&id);
    assert_eq!(job["kind"], "remove");
    assert_eq!(job["result"], fake_result());
    let id = job_id(&miko_ok(&p.miko("rollback", json!({}), &[])));
    assert_eq!(p.miko_wait(&id).0["kind"], "rollback");
    // After each change that succeeded: the status, to record the selection.
    let miko_status = [args(&["status", "--json"]), miko_target(dir)].concat();
    assert_eq!(
        p.calls(),
        [
            [
                args(&["uninstall", "operator-alert"]),
                miko_target(dir),
                args(&["--json", "--progress", "--allow-restart"]),
            ]
            .concat(),
            miko_status.clone(),
            [
                args(&["rollback"]),
                miko_target(dir),
                args(&["--json", "--progress", "--allow-restart"]),
            ]
            .concat(),
            miko_status,
        ]
    );

    let id = job_id(&fpbx_ok(&p.fpbx(
        "remove",
        json!({"feature": "operator-alert"}),
        &[],
    )));
    assert_eq!(p.fpbx_wait(&id).0["state"], "done");
    let id = job_id(&fpbx_ok(&p.fpbx("rollback", json!({}), &[])));
    assert_eq!(p.fpbx_wait(&id).0["state"], "done");
    let fpbx_status = [args(&["status", "--json"]), fpbx_target()].concat();
    assert_eq!(
        p.calls(),
        [
            [
                args(&["uninstall", "operator-alert"]),
                fpbx_target(),
                args(&["--json", "--progress"]),
            ]
            .concat(),
            fpbx_status.clone(),
            [
                args(&["rollback"]),
                fpbx_target(),
                args(&["--json", "--progress"])
            ]
            .concat(),
            fpbx_status,
        ]
    );
}

#[test]
fn a_refused_change_fails_its_job_with_featpkgs_error() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let refusal = json!({"error": {"feature": "call-waiting", "param": null, "path": "$.call-waiting", "message": "extensions.conf: block call-waiting/dialplan was edited by hand"}});
    let refusal_text = refusal.to_string();
    let env = [
        ("FAKE_FEATPKG_EXIT", "2"),
        ("FAKE_FEATPKG_STEPS", "plan"),
        ("FAKE_FEATPKG_JSON", refusal_text.as_str()),
        (
            "FAKE_FEATPKG_STDERR",
            "featpkg: error: extensions.conf: block call-waiting/dialplan was edited by hand",
        ),
    ];
    let id = job_id(&miko_ok(&p.miko(
        "remove",
        json!({"feature": "call-waiting"}),
        &env,
    )));
    let (job, _) = p.miko_wait(&id);
    assert_eq!(
        job,
        json!({
            "id": id.as_str(),
            "kind": "remove",
            "state": "failed",
            "steps": ["plan"],
            "result": refusal.clone(),
            "message": "featpkg: error: extensions.conf: block call-waiting/dialplan was edited by hand",
        })
    );
    let id = job_id(&fpbx_ok(&p.fpbx(
        "remove",
        json!({"feature": "call-waiting"}),
        &env,
    )));
    let (job, _) = p.fpbx_wait(&id);
    assert_eq!(job["state"], "failed");
    assert_eq!(job["result"], refusal);
}

#[test]
fn a_job_whose_runner_was_killed_is_failed_not_running_forever() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let id = job_id(&miko_ok(&p.miko(
        "rollback",
        json!({}),
        &[("FAKE_FEATPKG_STEP_SLEEP", "5")],
    )));
    let pid_file = p.db().join("page-jobs").join(&id).join("pid");
    let start = Instant::now();
    while !pid_file.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the runner never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    // The runner leads its own session (setsid): its group holds featpkg too.
    let group = format!("-{pid}");
    let out = Command::new("kill")
        .args(["-9", "--", group.as_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (job, _) = p.miko_wait(&id);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .starts_with("the change stopped without a result"),
        "{job}"
    );
    // And it blocks nothing.
    let next = job_id(&miko_ok(&p.miko("rollback", json!({}), &[])));
    assert_eq!(p.miko_wait(&next).0["state"], "done");
}

#[test]
fn only_the_last_20_jobs_are_kept() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let mut ids = Vec::new();
    for _ in 0..22 {
        let id = job_id(&miko_ok(&p.miko("rollback", json!({}), &[])));
        p.miko_wait(&id);
        ids.push(id);
    }
    let jobs = p.db().join("page-jobs");
    let mut left: Vec<String> = std::fs::read_dir(&jobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    left.sort();
    let mut want = ids[2..].to_vec();
    want.sort();
    assert_eq!(left, want, "the two oldest went");
    let got = p.miko("job", json!({"id": ids[0].as_str()}), &[]);
    assert_eq!(
        miko_err(&got, 400),
        "id: no such job (only the last 20 are kept)"
    );
}

// ---- each PBX's request and reply ------------------------------------------------

#[test]
fn mikopbx_reply_is_a_pbxapiresult_and_fields_come_from_data_or_the_raw_body() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let got = p.miko_request(
        json!({"action": "status", "data": {}, "input": "", "REQUEST_METHOD": "GET"}),
        &[],
    );
    assert_eq!(
        got["reply"],
        json!({
            "result": true,
            "data": {"installed": [], "drift": []},
            "messages": [],
            "function": "status",
            "processor": "Modules\\ModuleFeatpkg\\Lib\\FeatpkgConf::moduleRestAPICallback",
        })
    );
    assert_eq!(got["httpCode"], Value::Null);
    p.calls();

    let preview = |request: Value| {
        miko_ok(&p.miko_request(request, &[]));
        let calls = p.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let call = &calls[0];
        let at = call.iter().position(|a| a == "--features").unwrap();
        (
            call[at + 1].clone(),
            call.contains(&"--allow-restart".to_string()),
        )
    };
    // 2024.1: a form body is in data ($_REQUEST); fields only in the raw body are read from it.
    assert_eq!(
        preview(json!({
            "action": "preview",
            "data": {"ip_srv": "127.0.0.1"},
            "input": "params=%7B%7D&features=call-waiting&allow_restart=1",
            "REQUEST_METHOD": "POST",
        })),
        ("call-waiting".to_string(), true)
    );
    // A JSON body (2024.1 leaves it in input only).
    assert_eq!(
        preview(json!({
            "action": "preview",
            "data": {},
            "input": r#"{"params": "{}", "features": "operator-alert"}"#,
            "REQUEST_METHOD": "POST",
        })),
        ("operator-alert".to_string(), false)
    );
    // data wins; 2026 parses a JSON body into data (booleans included).
    assert_eq!(
        preview(json!({
            "action": "preview",
            "data": {"params": "{}", "features": "queue-failover", "allow_restart": true},
            "input": "features=operator-alert",
            "httpMethod": "POST",
        })),
        ("queue-failover".to_string(), true)
    );
    assert!(dir.ends_with(MODULE_ID));
}

#[test]
fn freepbx_saved_params_outlive_the_module_directory_and_install_passes_them() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let script = php_fixtures().join("page-freepbx.php");
    let install = || {
        let scenario =
            json!({"call": "install", "settings": {"ASTVARLIBDIR": p.astvar.to_str().unwrap()}});
        let scenario = scenario.to_string();
        let out = p.php(&[script.to_str().unwrap(), dir, scenario.as_str()], &[]);
        assert!(out.status.success(), "{}", text(&out));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["exception"], Value::Null, "{got}");
        p.calls()
    };
    assert_eq!(install(), [args(&["install", dir, "--target", "freepbx"])]);

    let params = json!({"operator-alert": {"extension": "*600"}});
    let id = job_id(&fpbx_ok(&p.fpbx(
        "apply",
        json!({"params": params.to_string(), "features": "operator-alert"}),
        &[(
            "FAKE_FEATPKG_STATUS",
            r#"[{"name":"featpkg-recipes","version":"1.0.0","features":[{"id":"operator-alert"}]}]"#,
        )],
    )));
    let (job, _) = p.fpbx_wait(&id);
    assert_eq!(job["state"], "done", "{job}");
    let data_dir = p.fpbx_data();
    let saved = data_dir.join("featpkg-params.json");
    let saved_arg = saved.to_str().unwrap();
    assert_eq!(
        p.calls(),
        [
            [
                args(&["install", dir]),
                fpbx_target(),
                args(&[
                    "--params",
                    saved_arg,
                    "--features",
                    "operator-alert",
                    "--json",
                    "--progress",
                ]),
            ]
            .concat(),
            [args(&["status", "--json"]), fpbx_target()].concat(),
        ]
    );
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&saved).unwrap()).unwrap(),
        params
    );
    assert!(
        !saved.starts_with(&p.path),
        "FreePBX replaces the module directory on upgrade"
    );
    // install() (every upgrade and reinstall) hands featpkg the saved
    // parameters and the features installed after the page's change.
    assert_eq!(
        install(),
        [args(&[
            "install",
            dir,
            "--target",
            "freepbx",
            "--params",
            saved_arg,
            "--features",
            "operator-alert",
        ])]
    );
    assert_eq!(
        fpbx_ok(&p.fpbx("schema", json!({}), &[]))["saved_params"],
        params
    );
}

// ---- the admin's selection (featpkg-features.json) ----------------------------------

/// The file's bytes for `ids` (already sorted).
fn features_file(ids: &[&str]) -> String {
    if ids.is_empty() {
        return "{\n    \"features\": []\n}\n".to_string();
    }
    let lines: Vec<String> = ids.iter().map(|id| format!("        \"{id}\"")).collect();
    format!(
        "{{\n    \"features\": [\n{}\n    ]\n}}\n",
        lines.join(",\n")
    )
}

#[test]
fn a_change_that_succeeds_records_the_installed_features_and_a_failed_one_does_not() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let file = p.db().join("featpkg-features.json");
    // Another bundle's features are not ours; ours come out sorted.
    let status = r#"[{"name":"other-bundle","version":"2.0.0","features":[{"id":"zzz"}]},{"name":"featpkg-recipes","version":"1.0.0","features":[{"id":"queue-failover","version":"1.0.0"},{"id":"call-waiting","version":"1.0.0"}]}]"#;
    let fields = json!({"params": "{}", "features": "queue-failover"});
    let id = job_id(&miko_ok(&p.miko(
        "apply",
        fields.clone(),
        &[
            ("FAKE_FEATPKG_STATUS", status),
            ("FAKE_FEATPKG_STEPS", "plan"),
            ("FAKE_FEATPKG_STEP_SLEEP", "1"),
        ],
    )));
    assert!(!file.exists(), "nothing recorded before featpkg is done");
    assert_eq!(p.miko_wait(&id).0["state"], "done");
    let recorded = features_file(&["call-waiting", "queue-failover"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(Page::temp_files(&p.db()), Vec::<String>::new());
    let calls = p.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0][0], "install");
    assert_eq!(
        calls[1],
        [args(&["status", "--json"]), miko_target(dir)].concat(),
        "the page's own status command"
    );

    // A change featpkg refuses or fails leaves the file as it was, and no status runs.
    for env in [
        vec![("FAKE_FEATPKG_EXIT", "2"), ("FAKE_FEATPKG_STATUS", "[]")],
        vec![
            ("FAKE_FEATPKG_FAIL", "uninstall"),
            ("FAKE_FEATPKG_MESSAGE", "reload failed"),
        ],
    ] {
        let id = job_id(&miko_ok(&p.miko(
            "remove",
            json!({"feature": "call-waiting"}),
            &env,
        )));
        assert_eq!(p.miko_wait(&id).0["state"], "failed");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);
        assert_eq!(
            p.calls()
                .into_iter()
                .map(|c| c[0].clone())
                .collect::<Vec<_>>(),
            ["uninstall"]
        );
    }

    // The last feature removed: the bundle is gone from the status, the list is empty.
    let id = job_id(&miko_ok(&p.miko(
        "rollback",
        json!({}),
        &[(
            "FAKE_FEATPKG_STATUS",
            r#"[{"name":"other-bundle","version":"2.0.0","features":[{"id":"zzz"}]}]"#,
        )],
    )));
    assert_eq!(p.miko_wait(&id).0["state"], "done");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), features_file(&[]));

    // The change succeeded but its status cannot be read: the job says so,
    // and the file (no longer true) goes, so the hooks fall back to the default.
    std::fs::write(&file, &recorded).unwrap();
    let id = job_id(&miko_ok(&p.miko(
        "apply",
        fields.clone(),
        &[
            ("FAKE_FEATPKG_FAIL", "status"),
            ("FAKE_FEATPKG_MESSAGE", "state.db: disk I/O error"),
        ],
    )));
    let job = p.miko_wait(&id).0;
    assert_eq!(job["state"], "failed");
    assert_eq!(
        job["result"],
        fake_result(),
        "featpkg's own result is still shown"
    );
    assert_eq!(
        job["message"],
        format!(
            "featpkg-job: the change was made, but which features are installed could not be recorded in {} \
             (featpkg status failed (exit 1): featpkg: error: state.db: disk I/O error); the file was removed, \
             so the next module enable or upgrade installs every feature: apply from this page again to record your selection",
            file.display()
        )
    );
    assert!(!file.exists());

    // FreePBX: in its data directory, with its status command.
    p.calls();
    let id = job_id(&fpbx_ok(&p.fpbx(
        "apply",
        fields,
        &[("FAKE_FEATPKG_STATUS", status)],
    )));
    assert_eq!(p.fpbx_wait(&id).0["state"], "done");
    let fpbx_file = p.fpbx_data().join("featpkg-features.json");
    assert_eq!(std::fs::read_to_string(&fpbx_file).unwrap(), recorded);
    assert_eq!(mode(&fpbx_file), 0o600);
    assert_eq!(
        p.calls()[1],
        [args(&["status", "--json"]), fpbx_target()].concat()
    );
    assert!(!file.exists(), "MikoPBX's file is not FreePBX's");
}

#[test]
fn module_hooks_install_the_recorded_selection_and_nothing_when_it_is_empty() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let dir = p.dir();
    let script = php_fixtures().join("run-mikopbx.php");
    let hook = |name: &str| -> Value {
        let out = p.php(&[script.to_str().unwrap(), dir, name], &[]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let fpbx_install = || -> Value {
        let scenario =
            json!({"call": "install", "settings": {"ASTVARLIBDIR": p.astvar.to_str().unwrap()}})
                .to_string();
        let out = p.php(
            &[
                php_fixtures().join("page-freepbx.php").to_str().unwrap(),
                dir,
                scenario.as_str(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let miko_file = p.db().join("featpkg-features.json");
    let fpbx_file = p.fpbx_data().join("featpkg-features.json");
    std::fs::create_dir_all(p.fpbx_data()).unwrap();
    let miko_params = p.db().join("featpkg-params.json");
    let fpbx_params = p.fpbx_data().join("featpkg-params.json");
    let params = json!({"queue-failover": {"rules": "[]"}});
    std::fs::write(&miko_params, params.to_string()).unwrap();
    std::fs::write(&fpbx_params, params.to_string()).unwrap();
    let miko_saved = miko_params.to_str().unwrap();
    let fpbx_saved = fpbx_params.to_str().unwrap();

    // The recorded features, in any order, one the bundle no longer ships
    // left out (an upgrade dropped it).
    let selection = r#"{"features": ["queue-failover", "dropped-by-upgrade", "call-waiting"]}"#;
    std::fs::write(&miko_file, selection).unwrap();
    std::fs::write(&fpbx_file, selection).unwrap();
    let got = hook("onBeforeModuleEnable");
    assert_eq!(got["result"], true, "{got}");
    let got = hook("onAfterModuleEnable");
    assert_eq!(got["exception"], Value::Null, "{got}");
    assert_eq!(got["messages"], json!([]), "{got}");
    let miko_install = [
        args(&["install", dir]),
        miko_target(dir),
        args(&[
            "--params",
            miko_saved,
            "--features",
            "call-waiting,queue-failover",
        ]),
    ]
    .concat();
    assert_eq!(
        p.calls(),
        [
            [miko_install.clone(), args(&["--dry-run"])].concat(),
            miko_install
        ]
    );
    assert_eq!(fpbx_install()["exception"], Value::Null);
    assert_eq!(
        p.calls(),
        [args(&[
            "install",
            dir,
            "--target",
            "freepbx",
            "--params",
            fpbx_saved,
            "--features",
            "call-waiting,queue-failover",
        ])]
    );
    p.params_files();

    // Saved parameters of a feature the admin removed: featpkg refuses
    // parameters for a feature it is not installing, so it gets a private
    // copy with the selected ones only, deleted afterwards.
    let params_text = r#"{"queue-failover": {"rules": "[]"}, "operator-alert": {"extension": "*600"}, "call-waiting": {"endpoints": "201"}}"#;
    std::fs::write(&miko_params, params_text).unwrap();
    std::fs::write(&fpbx_params, params_text).unwrap();
    let want_copy = "{\n    \"queue-failover\": {\n        \"rules\": \"[]\"\n    },\n    \"call-waiting\": {\n        \"endpoints\": \"201\"\n    }\n}\n";
    let mut copies = Vec::new();
    assert_eq!(hook("onAfterModuleEnable")["exception"], Value::Null);
    assert_eq!(fpbx_install()["exception"], Value::Null);
    let calls = p.calls();
    for (call, (data_dir, want)) in calls.iter().zip([
        (p.db(), [args(&["install", dir]), miko_target(dir)].concat()),
        (
            p.fpbx_data(),
            args(&["install", dir, "--target", "freepbx"]),
        ),
    ]) {
        let copy = params_arg(call);
        assert!(
            copy.starts_with(&format!("{}/.featpkg-install-params-", data_dir.display()))
                && copy.ends_with(".json"),
            "{copy}"
        );
        assert_eq!(
            *call,
            [
                want,
                args(&[
                    "--params",
                    &copy,
                    "--features",
                    "call-waiting,queue-failover"
                ])
            ]
            .concat()
        );
        assert!(!Path::new(&copy).exists(), "{copy} is left behind");
        copies.push(copy);
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(
        p.params_files(),
        [
            ("600".to_string(), want_copy.to_string()),
            ("600".to_string(), want_copy.to_string())
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&miko_params).unwrap(),
        params_text,
        "the saved file stays"
    );
    assert_eq!(Page::temp_files(&p.db()), Vec::<String>::new());
    assert_eq!(Page::temp_files(&p.fpbx_data()), Vec::<String>::new());

    // An empty list (the admin removed every feature from the page), or one
    // of features the bundle no longer has: the hooks install nothing, the
    // module enables and disables as usual.
    for selection in [
        r#"{"features": []}"#,
        r#"{"features": ["dropped-by-upgrade"]}"#,
    ] {
        std::fs::write(&miko_file, selection).unwrap();
        std::fs::write(&fpbx_file, selection).unwrap();
        let got = hook("onBeforeModuleEnable");
        assert_eq!(got["result"], true, "{got}");
        assert_eq!(got["messages"], json!([]), "{got}");
        let got = hook("onAfterModuleEnable");
        assert_eq!(got["exception"], Value::Null, "{got}");
        assert_eq!(got["messages"], json!([]), "{got}");
        assert_eq!(fpbx_install()["exception"], Value::Null);
        assert_eq!(p.calls(), Vec::<Vec<String>>::new(), "featpkg never ran");
        // Disabling asks featpkg's state, which has nothing to take out.
        let got = hook("onAfterModuleDisable");
        assert_eq!(got["exception"], Value::Null, "{got}");
        assert_eq!(got["messages"], json!([]), "{got}");
        assert_eq!(
            p.calls(),
            [[args(&["status", "--json"]), miko_target(dir)].concat()]
        );
        assert_eq!(
            p.stub_log(),
            "",
            "{selection}: no module row changed, nothing logged"
        );
    }

    // A malformed file fails the hook loudly, naming the file: nothing installed.
    let fix = "correct it, or delete it to let the module install every feature";
    for (text, what) in [
        ("call-waiting\n", "is not JSON (Syntax error)".to_string()),
        ("", "is not JSON (Syntax error)".to_string()),
        (
            r#"["call-waiting"]"#,
            "is not a JSON object {\"features\": [feature ids]}".to_string(),
        ),
        (
            r#"{"features": "call-waiting"}"#,
            "is not a JSON object {\"features\": [feature ids]}".to_string(),
        ),
        (
            r#"{"features": {"0": "call-waiting"}}"#,
            "is not a JSON object {\"features\": [feature ids]}".to_string(),
        ),
        (
            r#"{"feature": ["call-waiting"]}"#,
            "is not a JSON object {\"features\": [feature ids]}".to_string(),
        ),
        (
            r#"{"features": ["Call-Waiting"]}"#,
            "\"Call-Waiting\" is not a feature id (lower-case letters, digits and \"-\")"
                .to_string(),
        ),
        (
            r#"{"features": ["call-waiting", 1]}"#,
            "1 is not a feature id (lower-case letters, digits and \"-\")".to_string(),
        ),
        (
            r#"{"features": ["--force"]}"#,
            "\"--force\" is not a feature id (lower-case letters, digits and \"-\")".to_string(),
        ),
    ] {
        std::fs::write(&miko_file, text).unwrap();
        std::fs::write(&fpbx_file, text).unwrap();
        let sep = if what.starts_with("is ") { " " } else { ": " };
        let miko_message = format!("{}{sep}{what}: {fix}", miko_file.display());
        let got = hook("onBeforeModuleEnable");
        assert_eq!(got["result"], false, "{text:?}: {got}");
        assert_eq!(
            got["messages"],
            json!({"error": [miko_message]}),
            "{text:?}"
        );
        let got = hook("onAfterModuleEnable");
        assert_eq!(
            got["messages"],
            json!({"error": [miko_message]}),
            "{text:?}"
        );
        let got = fpbx_install();
        assert_eq!(
            got["exception"],
            format!(
                "RuntimeException: {}{sep}{what}: {fix}",
                fpbx_file.display()
            ),
            "{text:?}"
        );
        assert_eq!(
            p.calls(),
            Vec::<Vec<String>>::new(),
            "{text:?}: featpkg never ran"
        );
        p.stub_log();
    }

    // No file (a fresh install, or the CLI only): as before, featpkg's default.
    std::fs::remove_file(&miko_file).unwrap();
    std::fs::remove_file(&fpbx_file).unwrap();
    assert_eq!(hook("onAfterModuleEnable")["exception"], Value::Null);
    assert_eq!(fpbx_install()["exception"], Value::Null);
    assert_eq!(
        p.calls(),
        [
            [
                args(&["install", dir]),
                miko_target(dir),
                args(&["--params", miko_saved]),
            ]
            .concat(),
            args(&[
                "install", dir, "--target", "freepbx", "--params", fpbx_saved
            ]),
        ]
    );
}

// ---- FreePBX: ownership -------------------------------------------------------------

#[test]
fn freepbx_chown_hook_gives_the_web_user_featpkgs_state_and_the_page_data() {
    if !php_available() {
        return;
    }
    let p = Page::new();
    let stubs = php_fixtures().join("freepbx-stubs.php");
    let class = p.path.join("Featpkg.class.php");
    let chown = |settings: Value| -> Value {
        let code = "require $argv[1]; require $argv[2]; \
             $m = new FreePBX\\modules\\Featpkg(new FeatpkgStubFreePBX(json_decode($argv[3], true))); \
             echo json_encode(['hook' => $m->chownFreepbx(), 'public' => (new ReflectionMethod($m, 'chownFreepbx'))->isPublic()], JSON_UNESCAPED_SLASHES);";
        let settings = settings.to_string();
        let out = p.php(
            &[
                "-r",
                code,
                stubs.to_str().unwrap(),
                class.to_str().unwrap(),
                settings.as_str(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["public"], true);
        got["hook"].clone()
    };
    let astvar = p.astvar.to_str().unwrap();
    // FreePBX's Chown: rdir = the directory and those below it 0700, files 0600.
    assert_eq!(
        chown(json!({"ASTVARLIBDIR": format!("{astvar}/")})),
        json!([
            {"type": "rdir", "path": format!("{astvar}/featpkg"), "perms": 0o700},
            {"type": "rdir", "path": format!("{astvar}/featpkg-page"), "perms": 0o700},
        ])
    );
    assert_eq!(
        chown(json!({})),
        json!([
            {"type": "rdir", "path": "/var/lib/asterisk/featpkg", "perms": 0o700},
            {"type": "rdir", "path": "/var/lib/asterisk/featpkg-page", "perms": 0o700},
        ])
    );
}

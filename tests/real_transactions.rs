//! featpkg's transactions on the real scratch Asterisk (tests/common/asterisk.rs):
//! every install and uninstall really reloads it.
//!
//! - Byte-exact uninstall in every order, on a tree whose extensions.conf is
//!   CRLF without a final newline and whose modules.conf, manager.conf and
//!   pjsip.conf are LF without one; afterwards Asterisk's live dialplan has
//!   none of featpkg's contexts.
//! - `kill -9` at every pause point of an install (and of an uninstall),
//!   then `featpkg recover`: rolled back before the state commit (files and the
//!   live dialplan as before), rolled forward after it.
//! - A reload that really fails (a module that does not load, a dialplan
//!   Asterisk rejects, a context missing afterwards) leaves nothing behind in
//!   the running Asterisk; reserved section names are refused before anything
//!   is written.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::asterisk::{self, Asterisk, FEATURE_MODULES, tail};
use common::{BUNDLE, bundle, bundle_with_version, repo, text};

/// The bundle's features, in the order the bundle lists them.
const FEATURES: [&str; 5] = [
    "busy-callback",
    "call-waiting",
    "conference-guest",
    "operator-alert",
    "queue-failover",
];

/// The AMI users the features add to manager.conf.
const AMI_USERS: [&str; 2] = ["featpkg-busy-callback", "featpkg-conference-guest"];

// ---------------------------------------------------------------------------
// The PBX tree with odd line endings, snapshots, the live dialplan

/// Rewrites the scratch configs from the fixtures: extensions.conf with CRLF
/// line endings and no final newline; modules.conf, manager.conf and
/// pjsip.conf LF without a final newline. Asterisk reloads them (and must take
/// them: the checks below would mean nothing on a PBX that refused its own
/// files). Returns the snapshot every test compares against.
fn prepare(ast: &Asterisk) -> Snapshot {
    let fixture = |name: &str| {
        let path = repo().join("tests/fixtures/real-asterisk").join(name);
        ast.fill(&std::fs::read_to_string(&path).unwrap())
    };
    let ext = fixture("extensions.conf");
    let crlf = ext.trim_end_matches('\n').replace('\n', "\r\n");
    assert!(!crlf.contains("\r\r") && !crlf.ends_with('\n'));
    std::fs::write(ast.etc_file("extensions.conf"), &crlf).unwrap();
    for name in ["modules.conf", "manager.conf", "pjsip.conf"] {
        let lf = fixture(name);
        let lf = lf.trim_end_matches('\n');
        assert!(!lf.contains('\r'));
        std::fs::write(ast.etc_file(name), lf).unwrap();
    }
    for module in ["pbx_config.so", "res_pjsip.so"] {
        let out = ast.cli(&format!("module reload {module}"));
        assert!(out.contains("reloaded successfully"), "{module}: {out}");
    }
    ast.cli("manager reload");
    // Asterisk reads the rewritten files: the PBX's own dialplan, phones and AMI login.
    let internal = ast.cli("dialplan show internal");
    assert!(
        internal.contains("ConfBridge(${EXTEN})"),
        "extensions.conf with CRLF endings did not load:\n{internal}"
    );
    assert!(
        ast.cli("pjsip show endpoints").contains("201/201"),
        "pjsip.conf did not load"
    );
    assert!(
        ast.cli("manager show users")
            .contains(asterisk::TEST_AMI_USER),
        "manager.conf did not load"
    );
    let before = snapshot(ast);
    assert_eq!(
        before[&ast.etc_file("extensions.conf")].bytes.as_deref(),
        Some(crlf.as_bytes())
    );
    before
}

/// One path of a snapshot: bytes (None for a directory, the target for a link) and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    bytes: Option<Vec<u8>>,
    mode: u32,
}

type Snapshot = BTreeMap<PathBuf, Entry>;

/// Every file, directory and link under the scratch Asterisk's config
/// directory, the tree's own /etc (cron.d), agi-bin and featpkg-bin.
fn snapshot(ast: &Asterisk) -> Snapshot {
    let mut out = Snapshot::new();
    for base in [
        ast.etc(),
        ast.sys_etc(),
        ast.var_lib().join("agi-bin"),
        ast.var_lib().join("featpkg-bin"),
    ] {
        walk(&base, &mut out);
    }
    out
}

fn walk(path: &Path, out: &mut Snapshot) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).unwrap();
        let bytes = Some(target.as_os_str().as_encoded_bytes().to_vec());
        out.insert(path.to_path_buf(), Entry { bytes, mode: 0 });
    } else if meta.is_dir() {
        out.insert(path.to_path_buf(), Entry { bytes: None, mode });
        for entry in std::fs::read_dir(path).unwrap() {
            walk(&entry.unwrap().path(), out);
        }
    } else {
        let bytes = Some(std::fs::read(path).unwrap());
        out.insert(path.to_path_buf(), Entry { bytes, mode });
    }
}

/// Bytes shown so that line endings are visible.
fn shown(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Asserts that the tree is byte for byte (and mode for mode) what it was,
/// naming the first path that differs and where.
fn assert_same(what: &str, before: &Snapshot, after: &Snapshot) {
    for (path, entry) in before {
        let Some(now) = after.get(path) else {
            panic!("{what}: {} is gone", path.display());
        };
        if now.bytes != entry.bytes {
            let (a, b) = (
                entry.bytes.as_deref().unwrap_or_default(),
                now.bytes.as_deref().unwrap_or_default(),
            );
            let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            let from = at.saturating_sub(80);
            panic!(
                "{what}: {} differs from byte {at} on ({} bytes before, {} after)\n--- before from byte {from}\n{}\n--- after from byte {from}\n{}",
                path.display(),
                a.len(),
                b.len(),
                shown(&a[from.min(a.len())..(at + 200).min(a.len())]),
                shown(&b[from.min(b.len())..(at + 200).min(b.len())]),
            );
        }
        assert_eq!(
            now.mode,
            entry.mode,
            "{what}: {}: mode {:o}, was {:o}",
            path.display(),
            now.mode,
            entry.mode
        );
    }
    for path in after.keys() {
        assert!(
            before.contains_key(path),
            "{what}: {} was left behind",
            path.display()
        );
    }
}

/// The contexts a feature adds, with its parameters' defaults (feature.json).
fn contexts_of(feature: &str) -> Vec<String> {
    let path = repo().join(format!("packaging/features/{feature}/feature.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut defaults = BTreeMap::new();
    for p in json["params"].as_array().unwrap() {
        defaults.insert(
            p["name"].as_str().unwrap().to_string(),
            p["default"].as_str().unwrap_or_default().to_string(),
        );
    }
    json["contexts"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    let mut c = c.as_str().unwrap().to_string();
                    for (name, value) in &defaults {
                        c = c.replace(&format!("%{{{name}}}"), value);
                    }
                    assert!(!c.contains("%{"), "{feature}: {c}");
                    c
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_contexts() -> Vec<String> {
    FEATURES.iter().flat_map(|f| contexts_of(f)).collect()
}

/// Whether Asterisk's live dialplan has `context` (`dialplan show`).
fn context_loaded(ast: &Asterisk, context: &str) -> bool {
    let out = ast.cli(&format!("dialplan show {context}"));
    if out.contains("There is no existence of") {
        return false;
    }
    assert!(
        out.contains(&format!("[ Context '{context}'")),
        "dialplan show {context}: {out}"
    );
    true
}

fn assert_no_featpkg_context(ast: &Asterisk, what: &str) {
    let loaded: Vec<String> = all_contexts()
        .into_iter()
        .filter(|c| context_loaded(ast, c))
        .collect();
    assert!(
        loaded.is_empty(),
        "{what}: Asterisk still has featpkg's contexts {loaded:?}\n--- log\n{}",
        tail(&ast.log(), 30)
    );
}

fn assert_contexts_loaded(ast: &Asterisk, features: &[&str], what: &str) {
    for feature in features {
        for context in contexts_of(feature) {
            assert!(
                context_loaded(ast, &context),
                "{what}: [{context}] ({feature}) is not in Asterisk's dialplan\n--- log\n{}",
                tail(&ast.log(), 30)
            );
        }
    }
}

/// AMI users Asterisk knows now.
fn ami_users(ast: &Asterisk) -> String {
    ast.cli("manager show users")
}

fn assert_no_featpkg_ami_user(ast: &Asterisk, what: &str) {
    let users = ami_users(ast);
    for user in AMI_USERS {
        assert!(
            !users.lines().any(|l| l.trim() == user),
            "{what}: Asterisk still knows the AMI user {user}:\n{users}"
        );
    }
}

/// Whether a module is loaded (`module show like <name>`).
fn module_loaded(ast: &Asterisk, module: &str) -> bool {
    let name = module.trim_end_matches(".so");
    ast.cli(&format!("module show like {name}"))
        .lines()
        .any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|first| first.trim_end_matches(".so") == name)
        })
}

/// The global variables, as a set of `NAME=value` lines.
fn globals(ast: &Asterisk) -> BTreeSet<String> {
    ast.cli("dialplan show globals")
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('=') && !l.starts_with("--"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// featpkg commands

/// The parameters a feature needs on this PBX (call-waiting also gets
/// endpoints, so pjsip.conf is edited too).
fn params_for(feature: &str) -> Vec<String> {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    match feature {
        "conference-guest" => owned(&[
            "--set",
            "conference-guest.conference=700",
            "--set",
            "conference-guest.provider=provider",
            "--set",
            "conference-guest.number=5551234",
        ]),
        "queue-failover" => vec![
            "--params".into(),
            repo()
                .join("tests/fixtures/queue-failover.json")
                .display()
                .to_string(),
        ],
        "call-waiting" => owned(&["--set", "call-waiting.endpoints=201,202"]),
        _ => Vec::new(),
    }
}

/// `install <bundle> [--features …]` with the features' parameters.
fn install_args(archive: &Path, features: Option<&[&str]>) -> Vec<String> {
    let mut args = vec!["install".to_string(), archive.display().to_string()];
    let list: Vec<&str> = features.map_or(FEATURES.to_vec(), <[&str]>::to_vec);
    if let Some(f) = features {
        args.push("--features".into());
        args.push(f.join(","));
    }
    for feature in list {
        args.extend(params_for(feature));
    }
    args
}

fn run(ast: &Asterisk, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ast.featpkg(&args)
}

/// Runs featpkg, asserts success, says how long it took.
fn ok(ast: &Asterisk, args: &[String]) -> String {
    let started = Instant::now();
    let out = run(ast, args);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "featpkg {args:?} failed:\n{}\n--- Asterisk log (tail)\n{}",
        text(&out),
        tail(&ast.log(), 40)
    );
    eprintln!(
        "timing: featpkg {} {} took {took:.2?}",
        args[0],
        args.get(1)
            .filter(|_| args[0] != "install")
            .map_or("", |s| s)
    );
    text(&out)
}

fn install(ast: &Asterisk, features: Option<&[&str]>) -> String {
    ok(ast, &install_args(&bundle(), features))
}

fn uninstall(ast: &Asterisk, name: &str) -> String {
    ok(ast, &["uninstall".into(), name.into()])
}

fn assert_verify_clean(ast: &Asterisk, what: &str) {
    let out = ast.featpkg(&["verify"]);
    assert!(
        out.status.success() && text(&out).contains("no drift"),
        "{what}: featpkg verify: {}",
        text(&out)
    );
}

fn assert_nothing_installed(ast: &Asterisk, what: &str) {
    let out = ast.featpkg_ok(&["status"]);
    assert!(out.contains("nothing installed"), "{what}: {out}");
}

/// After an uninstall that should have taken everything out.
fn assert_pristine(ast: &Asterisk, before: &Snapshot, what: &str) {
    assert_same(what, before, &snapshot(ast));
    assert_no_featpkg_context(ast, what);
    assert_nothing_installed(ast, what);
}

// ---------------------------------------------------------------------------
// 1. Byte-exact uninstall in every order

#[test]
fn each_feature_alone_uninstalls_to_the_exact_bytes() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    for feature in FEATURES {
        install(&ast, Some(&[feature]));
        assert_contexts_loaded(&ast, &[feature], feature);
        assert_verify_clean(&ast, feature);
        assert_ne!(snapshot(&ast), before, "{feature} changed nothing");
        uninstall(&ast, feature);
        assert_pristine(&ast, &before, &format!("{feature} alone"));
    }
}

#[test]
fn the_whole_bundle_uninstalls_at_once_to_the_exact_bytes() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let out = install(&ast, None);
    assert!(!out.contains("skipped"), "every feature installs: {out}");
    assert_contexts_loaded(&ast, &FEATURES, "install all");
    assert_verify_clean(&ast, "install all");
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "bundle removed at once");
}

/// Installs everything, removes the features one by one in `order`, checking
/// the live dialplan after each step.
fn remove_one_by_one(order: &[&str]) {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    install(&ast, None);
    assert_contexts_loaded(&ast, &FEATURES, "install all");
    for (i, feature) in order.iter().enumerate() {
        uninstall(&ast, &format!("{BUNDLE}:{feature}"));
        let what = format!("after removing {:?}", &order[..=i]);
        for context in contexts_of(feature) {
            assert!(!context_loaded(&ast, &context), "{what}: [{context}]");
        }
        assert_contexts_loaded(&ast, &order[i + 1..], &what);
        if i + 1 < order.len() {
            assert_verify_clean(&ast, &what);
        }
    }
    assert_pristine(
        &ast,
        &before,
        &format!("features removed in order {order:?}"),
    );
}

#[test]
fn features_removed_in_reverse_order_leave_the_exact_bytes() {
    let mut order = FEATURES.to_vec();
    order.reverse();
    remove_one_by_one(&order);
}

#[test]
fn features_removed_in_forward_order_leave_the_exact_bytes() {
    remove_one_by_one(&FEATURES);
}

#[test]
fn features_installed_one_by_one_then_the_bundle_removed_at_once() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    for (i, feature) in FEATURES.iter().enumerate() {
        install(&ast, Some(&[feature]));
        assert_contexts_loaded(&ast, &FEATURES[..=i], feature);
        assert_verify_clean(&ast, feature);
    }
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "separate installs, bundle removed at once");
}

// ---------------------------------------------------------------------------
// 2. kill -9 at every pause point, with the real reload

/// Starts featpkg paused at `point`, waits (bounded) until it says so, and
/// kills it with SIGKILL. Returns what it printed before.
fn kill_at(ast: &Asterisk, args: &[String], point: &str) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = ast
        .featpkg_command(&args)
        .env("FEATPKG_TEST_PAUSE_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    let mut paused = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&format!("paused at {point}")) {
                    paused = true;
                    break;
                }
            }
            Err(_) => break, // timed out, or featpkg ended without pausing
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(
        paused,
        "featpkg {args:?} never reached {point} ({status}):\n{seen}"
    );
    seen
}

/// The pause points of the transaction whose journal featpkg wrote when
/// paused at `journal-written`: `step-<n>-temp` for each file it writes,
/// `step-<n>-done` for each step.
fn step_points(ast: &Asterisk, args: &[String]) -> Vec<String> {
    kill_at(ast, args, "journal-written");
    let journals = ast.var_lib().join("featpkg/journal");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&journals)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(dirs.len(), 1, "one journal: {dirs:?}");
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("journal.json")).unwrap()).unwrap();
    let mut points = Vec::new();
    for (i, step) in journal["steps"].as_array().unwrap().iter().enumerate() {
        let n = i + 1;
        if step["kind"] == "file" && !step["after"].is_null() {
            points.push(format!("step-{n}-temp"));
        }
        points.push(format!("step-{n}-done"));
    }
    // Recover from this probe too: nothing had been changed.
    let out = ast.featpkg_ok(&["recover"]);
    assert!(out.contains("rolled back"), "{out}");
    points
}

#[test]
fn killed_install_before_the_state_commit_is_rolled_back_everywhere() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let args = install_args(&bundle(), None);
    let mut points = vec!["journal-written".to_string()];
    points.extend(step_points(&ast, &args));
    points.push("applied".into());
    points.push("before-state-commit".into());
    assert!(points.len() > 20, "{points:?}");
    for point in &points {
        let started = Instant::now();
        kill_at(&ast, &args, point);
        if point == "before-state-commit" {
            // The reload ran: Asterisk had the new dialplan and AMI users when
            // featpkg was killed (else this point would prove nothing).
            assert_contexts_loaded(&ast, &FEATURES, point);
            assert!(ami_users(&ast).contains(AMI_USERS[0]), "{point}");
        }
        let out = ast.featpkg_ok(&["recover"]);
        assert!(out.contains("rolled back"), "{point}: {out}");
        assert!(!out.contains("by hand"), "{point}: {out}");
        assert_pristine(&ast, &before, &format!("killed at {point}"));
        assert_no_featpkg_ami_user(&ast, point);
        assert!(
            ast.featpkg_ok(&["recover"]).contains("nothing to recover"),
            "{point}: the journal is gone"
        );
        eprintln!(
            "timing: kill at {point} + recover: {:.2?}",
            started.elapsed()
        );
    }
}

#[test]
fn killed_install_after_the_state_commit_is_rolled_forward() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    // The reference: the same install, uninterrupted (same machine key, so the
    // same generated AMI secrets).
    install(&ast, None);
    let installed = snapshot(&ast);
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "reference install removed");

    let args = install_args(&bundle(), None);
    kill_at(&ast, &args, "state-committed");
    let out = ast.featpkg_ok(&["recover"]);
    assert!(out.contains("it had committed, rolled forward"), "{out}");
    assert_same("rolled forward", &installed, &snapshot(&ast));
    assert_contexts_loaded(&ast, &FEATURES, "rolled forward");
    assert_verify_clean(&ast, "rolled forward");
    let status = ast.featpkg_ok(&["status"]);
    assert!(status.contains("featpkg-recipes"), "{status}");
    for user in AMI_USERS {
        assert!(ami_users(&ast).contains(user), "{user}");
    }
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "rolled-forward install removed");
}

#[test]
fn killed_uninstall_is_rolled_back_and_the_installed_dialplan_reloaded() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    install(&ast, None);
    let installed = snapshot(&ast);
    for point in ["applied", "before-state-commit"] {
        kill_at(&ast, &["uninstall".into(), BUNDLE.into()], point);
        if point == "before-state-commit" {
            // The uninstall's reload ran: the contexts were gone when it was killed.
            assert_no_featpkg_context(&ast, "uninstall killed after its reload");
        }
        let out = ast.featpkg_ok(&["recover"]);
        assert!(out.contains("rolled back"), "{point}: {out}");
        assert_same(
            &format!("uninstall killed at {point}"),
            &installed,
            &snapshot(&ast),
        );
        assert_contexts_loaded(&ast, &FEATURES, &format!("uninstall killed at {point}"));
        for user in AMI_USERS {
            assert!(ami_users(&ast).contains(user), "{point}: {user}");
        }
        assert_verify_clean(&ast, point);
    }
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "uninstalled after the killed uninstalls");
}

// ---------------------------------------------------------------------------
// 3. A reload that fails for real leaves no residue in the running Asterisk

/// Edits one feature of a copy of the bundle's sources.
fn edit_feature(src: &Path, feature: &str, edit: impl FnOnce(&mut serde_json::Value, &Path)) {
    let dir = src.join("packaging/features").join(feature);
    let path = dir.join("feature.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json, &dir);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// What the running Asterisk holds that an install could leave behind.
struct Live {
    globals: BTreeSet<String>,
}

fn live_before(ast: &Asterisk) -> Live {
    for module in FEATURE_MODULES {
        assert!(
            !module_loaded(ast, module),
            "{module} loaded before the test"
        );
    }
    assert_no_featpkg_ami_user(ast, "before");
    assert_no_featpkg_context(ast, "before");
    Live {
        globals: globals(ast),
    }
}

/// After a failed install: the files as before, and nothing of it in Asterisk.
fn assert_no_residue(ast: &Asterisk, before: &Snapshot, live: &Live, what: &str) {
    assert_pristine(ast, before, what);
    assert_eq!(globals(ast), live.globals, "{what}: global variables");
    assert_no_featpkg_ami_user(ast, what);
    let loaded: Vec<&str> = FEATURE_MODULES
        .iter()
        .copied()
        .filter(|m| module_loaded(ast, m))
        .collect();
    assert!(
        loaded.is_empty(),
        "{what}: modules the install loaded are still loaded: {loaded:?}"
    );
    assert!(
        ast.featpkg_ok(&["recover"]).contains("nothing to recover"),
        "{what}"
    );
}

/// Installs everything from `archive`, expecting a failed reload that says `needle`.
fn failed_install(ast: &Asterisk, archive: &Path, needle: &str) -> String {
    let started = Instant::now();
    let out = run(ast, &install_args(archive, None));
    eprintln!(
        "timing: failed install + rollback: {:.2?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("reload failed, every change was rolled back"),
        "{said}"
    );
    assert!(said.contains(needle), "{said}");
    assert!(!said.contains("by hand"), "{said}");
    said
}

#[test]
fn a_module_that_does_not_load_leaves_nothing_loaded() {
    // queue-failover comes last: the other features' modules load first.
    let (_dir, archive) = bundle_with_version("1.0.0", |src| {
        edit_feature(src, "queue-failover", |json, dir| {
            json["modules"] = serde_json::json!(["app_featpkg_no_such_module.so"]);
            json["edits"].as_array_mut().unwrap().insert(
                0,
                serde_json::json!({"kind": "block", "id": "modules", "file": "etc:modules.conf",
                    "template": "modules.conf", "section": "modules", "check": "modules"}),
            );
            std::fs::write(
                dir.join("modules.conf"),
                "load => app_featpkg_no_such_module.so\n",
            )
            .unwrap();
        });
    });
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    failed_install(&ast, &archive, "module load app_featpkg_no_such_module.so");
    assert_no_residue(&ast, &before, &live, "a module that does not load");
}

/// A copy of the bundle whose queue-failover dialplan block has `line` right
/// after its context's header.
fn bundle_with_queue_failover_line(line: &str) -> (tempfile::TempDir, PathBuf) {
    let line = line.to_string();
    bundle_with_version("1.0.0", move |src| {
        let template = src.join("packaging/features/queue-failover/extensions.conf");
        let text = std::fs::read_to_string(&template).unwrap();
        let changed = text.replacen("[%{context}]\n", &format!("[%{{context}}]\n{line}\n"), 1);
        assert_ne!(changed, text);
        std::fs::write(&template, changed).unwrap();
    })
}

#[test]
fn a_dialplan_asterisk_rejects_leaves_no_residue() {
    // A line starting with a backslash and a space: Asterisk's config parser
    // rejects the whole file ("Invalid escape in line N"), so `module reload
    // pbx_config.so` fails, after the modules were loaded and manager.conf
    // reloaded. featpkg's planner does not look for this (it refuses what it
    // can: a bad `(+)` or a missing parent; see the next test), so only the
    // real reload can catch it.
    let (_dir, archive) = bundle_with_queue_failover_line("\\ featpkg-invalid-escape = 1");
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    let mark = ast.log_mark();
    failed_install(&ast, &archive, "module reload pbx_config.so");
    let log = ast.log_since(mark);
    assert!(
        log.contains("Invalid escape in line"),
        "Asterisk rejected the file for another reason:\n{}",
        tail(&log, 40)
    );
    assert_no_residue(&ast, &before, &live, "a dialplan Asterisk rejects");
    // The PBX's own dialplan is still the one that runs.
    assert!(
        ast.cli("dialplan show internal")
            .contains("ConfBridge(${EXTEN})")
    );
}

#[test]
fn inheritance_from_a_missing_section_is_refused_before_anything_is_written() {
    // Asterisk rejects the whole extensions.conf for `[ctx](parent)` when no
    // [parent] comes before it ("Inheritance requested, but category …
    // does not exist"): the planner refuses it, naming block, line and rule,
    // before any file is written or anything reloaded.
    let (_dir, archive) = bundle_with_version("1.0.0", |src| {
        let template = src.join("packaging/features/queue-failover/extensions.conf");
        let text = std::fs::read_to_string(&template).unwrap();
        let changed = text.replacen(
            "[%{context}]\n",
            "[%{context}](featpkg-no-such-template)\n",
            1,
        );
        assert_ne!(changed, text);
        std::fs::write(&template, changed).unwrap();
    });
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    let out = run(&ast, &install_args(&archive, None));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("queue-failover/dialplan")
            && said.contains(
                "[notify-queue-failover] inherits from [featpkg-no-such-template], but no [featpkg-no-such-template] section exists before it"
            ),
        "{said}"
    );
    assert!(
        !said.contains("reload"),
        "refused before any reload: {said}"
    );
    assert_no_residue(&ast, &before, &live, "a missing parent");
}

#[test]
fn inheritance_the_planner_accepts_asterisk_accepts_too() {
    // The check is Asterisk's rule, no stricter: a parent may be a template
    // earlier in the block or any section of the PBX's own file (a context,
    // not a template), named in any case. Asterisk takes the file and the
    // context gets the parents' extensions.
    let (_dir, archive) = bundle_with_version("1.0.0", |src| {
        let template = src.join("packaging/features/queue-failover/extensions.conf");
        let text = std::fs::read_to_string(&template).unwrap();
        let changed = text.replacen(
            "[%{context}]\n",
            "[featpkg-qf-tpl](!)\nexten => 999,1,NoOp(featpkg inherited from the template)\n\n[%{context}](FEATPKG-QF-TPL,phones-iax)\n",
            1,
        );
        assert_ne!(changed, text);
        std::fs::write(&template, changed).unwrap();
    });
    let ast = asterisk::shared();
    let before = prepare(&ast);
    ok(&ast, &install_args(&archive, None));
    let context = ast.cli("dialplan show notify-queue-failover");
    for inherited in [
        "NoOp(featpkg inherited from the template)",
        "Goto(phones,${PHONE},1)",
    ] {
        assert!(context.contains(inherited), "no {inherited}:\n{context}");
    }
    assert!(
        !context_loaded(&ast, "featpkg-qf-tpl"),
        "a template is not a context"
    );
    uninstall(&ast, BUNDLE);
    assert_pristine(&ast, &before, "inheriting install removed");
}

#[test]
fn a_module_the_admin_had_loaded_stays_loaded_when_an_install_is_undone() {
    // Only what the install itself loaded goes: func_extstate.so was running
    // before (the admin loaded it), so neither the rollback of a failed
    // install nor the recovery of a killed one unloads it.
    let (_dir, archive) = bundle_with_version("1.0.0", |src| {
        edit_feature(src, "queue-failover", |json, _| {
            json["contexts"]
                .as_array_mut()
                .unwrap()
                .push("featpkg-queue-failover-never-defined".into());
        });
    });
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    assert!(
        ast.cli("module load func_extstate.so")
            .contains("Loaded func_extstate.so")
    );
    let assert_only_the_admins_module = |what: &str| {
        assert_pristine(&ast, &before, what);
        assert_eq!(globals(&ast), live.globals, "{what}: global variables");
        assert_no_featpkg_ami_user(&ast, what);
        for module in FEATURE_MODULES {
            assert_eq!(
                module_loaded(&ast, module),
                *module == "func_extstate.so",
                "{what}: {module}"
            );
        }
    };

    let said = failed_install(
        &ast,
        &archive,
        "after reload, context [featpkg-queue-failover-never-defined] does not exist",
    );
    // Unloaded last loaded first, and only those two.
    assert!(
        said.contains(
            "(and the modules it had loaded unloaded again: app_confbridge.so, res_manager_devicestate.so)"
        ),
        "{said}"
    );
    assert_only_the_admins_module("failed install");

    kill_at(&ast, &install_args(&bundle(), None), "before-state-commit");
    for module in FEATURE_MODULES {
        assert!(module_loaded(&ast, module), "the reload loaded {module}");
    }
    let out = ast.featpkg_ok(&["recover"]);
    assert!(out.contains("rolled back"), "{out}");
    for module in ["app_confbridge.so", "res_manager_devicestate.so"] {
        assert!(
            out.contains(&format!("module unload {module}: Unloaded {module}")),
            "{out}"
        );
    }
    assert!(!out.contains("func_extstate"), "{out}");
    assert_only_the_admins_module("killed install recovered");
}

#[test]
fn a_context_missing_after_the_reload_leaves_no_residue() {
    // Asterisk takes the new dialplan (modules loaded, AMI users and featpkg's
    // contexts live), then the check finds a declared context missing.
    let (_dir, archive) = bundle_with_version("1.0.0", |src| {
        edit_feature(src, "queue-failover", |json, _| {
            json["contexts"]
                .as_array_mut()
                .unwrap()
                .push("featpkg-queue-failover-never-defined".into());
        });
    });
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    // featpkg checks the contexts in feature order, queue-failover's last: the
    // other features' contexts were live in Asterisk when this one was missed.
    failed_install(
        &ast,
        &archive,
        "after reload, context [featpkg-queue-failover-never-defined] does not exist",
    );
    assert_no_residue(&ast, &before, &live, "a context missing after the reload");
}

#[test]
fn an_install_killed_after_its_reload_leaves_no_residue_once_recovered() {
    // Killed after `module load` and the reloads, before the state commit: the
    // recovery rolls the files back and reloads them; what the run had loaded
    // into Asterisk must go too.
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    kill_at(&ast, &install_args(&bundle(), None), "before-state-commit");
    for module in FEATURE_MODULES {
        assert!(module_loaded(&ast, module), "the reload loaded {module}");
    }
    let out = ast.featpkg_ok(&["recover"]);
    assert!(out.contains("rolled back"), "{out}");
    assert_no_residue(&ast, &before, &live, "install killed after its reload");
}

#[test]
fn reserved_section_names_are_refused_before_anything_is_written() {
    let ast = asterisk::shared();
    let before = prepare(&ast);
    let live = live_before(&ast);
    for (param, value) in [
        ("queue-failover.context", "globals"),
        ("queue-failover.context", "general"),
        ("queue-failover.context", "GLOBALS"),
        ("busy-callback.busy_context", "globals"),
        ("operator-alert.noanswer_context", "General"),
    ] {
        let mut args = install_args(&bundle(), None);
        args.push("--set".into());
        args.push(format!("{param}={value}"));
        let out = run(&ast, &args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{param}={value}: {said}");
        let (feature, name) = param.split_once('.').unwrap();
        assert!(
            said.contains(&format!("feature {feature}"))
                && said.contains(&format!("parameter {name}")),
            "{param}={value}: the message must name the parameter: {said}"
        );
        assert!(
            !said.contains("reload"),
            "{param}={value}: refused before any reload: {said}"
        );
        assert_same(&format!("{param}={value}"), &before, &snapshot(&ast));
        assert_no_residue(&ast, &before, &live, &format!("{param}={value}"));
    }
}

//! End-to-end on a FreePBX-shaped PBX tree (tests/fixtures/freepbx/root) with
//! `--target freepbx`: core's extensions.conf linked in, the generated
//! extensions_additional.conf and pjsip.conf, the admin's *_custom files, the
//! asterisk user's crontab, a fake `fwconsole` (tests/fixtures/freepbx/fwconsole)
//! and the fake `asterisk` CLI. Install, reinstall, uninstall, failures,
//! hand edits, refusals and `featpkg destinations`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::web_user::{self, ADMIN_CRONTAB, WEB_USER, WebUser};
use common::*;

/// uid/gid of `asterisk` in the fixture's etc/passwd and etc/group.
const ASTERISK_IDS: (u32, u32) = (999, 998);
const CRONTAB: &str = "var/spool/cron/crontabs/asterisk";
const CORE_EXTENSIONS: &str = "var/www/html/admin/modules/core/etc/extensions.conf";

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/freepbx")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A FreePBX tree in a temp dir.
struct FreePbx {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl FreePbx {
    fn new() -> FreePbx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        copy_tree(&fixture().join("root"), &root);
        // Core's extensions.conf, linked in as fwconsole does (relative here: an
        // absolute link under --root would point into the host's /var/www).
        std::os::unix::fs::symlink(
            "../../var/www/html/admin/modules/core/etc/extensions.conf",
            root.join("etc/asterisk/extensions.conf"),
        )
        .unwrap();
        // crontab(1) writes 0600 files owned by the user; git keeps neither.
        let crontab = root.join(CRONTAB);
        std::fs::set_permissions(&crontab, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            // What `fwconsole chown` leaves: the config files are asterisk's.
            let (uid, gid) = ASTERISK_IDS;
            std::os::unix::fs::chown(&crontab, Some(uid), Some(gid)).unwrap();
            for entry in std::fs::read_dir(root.join("etc/asterisk")).unwrap() {
                let path = entry.unwrap().path();
                if !path.is_symlink() {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }
        }
        let state = dir.path().join("fake-state");
        std::fs::create_dir_all(&state).unwrap();
        let env = vec![
            (
                "FEATPKG_ASTERISK_CMD".to_string(),
                repo()
                    .join("tests/support/fake-asterisk")
                    .display()
                    .to_string(),
            ),
            (
                "FAKE_ASTERISK_LOG".to_string(),
                dir.path().join("asterisk.log").display().to_string(),
            ),
            (
                "FAKE_ASTERISK_STATE_DIR".to_string(),
                state.display().to_string(),
            ),
            (
                "FAKE_ASTERISK_ETC".to_string(),
                root.join("etc/asterisk").display().to_string(),
            ),
            (
                "FAKE_FWCONSOLE_LOG".to_string(),
                dir.path().join("fwconsole.log").display().to_string(),
            ),
        ];
        FreePbx { dir, env }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        String::from_utf8(std::fs::read(self.path(rel)).unwrap()).unwrap()
    }

    fn etc(&self, name: &str) -> String {
        self.read(&format!("etc/asterisk/{name}"))
    }

    /// featpkg ARGS --root … --target freepbx --reload-cmd "<fake fwconsole> reload".
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(featpkg_bin());
        self.configure(&mut cmd, args, env);
        cmd
    }

    /// Adds ARGS, this tree's target options and the fakes' environment to `cmd`.
    fn configure(&self, cmd: &mut Command, args: &[&str], env: &[(&str, &str)]) {
        cmd.args(args)
            .arg("--root")
            .arg(self.root())
            .args(["--target", "freepbx", "--reload-cmd"])
            .arg(format!("{} reload", fixture().join("fwconsole").display()))
            .env_remove("FEATPKG_TEST_FAIL_AT")
            .env_remove("FEATPKG_TEST_PAUSE_AT");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, &[]);
        assert!(
            out.status.success(),
            "featpkg {args:?} failed: {}",
            text(&out)
        );
        text(&out)
    }

    fn install(&self, extra: &[&str]) -> String {
        self.install_from(&bundle(), extra)
    }

    fn install_from(&self, bundle: &Path, extra: &[&str]) -> String {
        let mut args = vec!["install", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut snap = BTreeMap::new();
        snapshot_into(&self.root(), &self.root(), &mut snap);
        snap
    }

    fn fwconsole_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fwconsole.log")).unwrap_or_default()
    }

    fn asterisk_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("asterisk.log")).unwrap_or_default()
    }

    fn destinations(&self) -> serde_json::Value {
        let bundle = bundle();
        let out = self.ok(&["destinations", "--bundle", bundle.to_str().unwrap()]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// Like common's snapshot, plus owners and whether a path is a link: path ->
/// (bytes, mode); links are "-> target". Skips featpkg's own state dir.
fn snapshot_into(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        if rel == "var/lib/asterisk/featpkg" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let owner = format!(" {}:{}", meta.uid(), meta.gid());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(
                format!("{rel}{owner}"),
                (format!("-> {}", target.display()).into_bytes(), 0),
            );
        } else if meta.is_dir() {
            out.insert(format!("{rel}/{owner}"), (Vec::new(), meta.mode() & 0o7777));
            snapshot_into(base, &path, out);
        } else {
            out.insert(
                format!("{rel}{owner}"),
                (std::fs::read(&path).unwrap(), meta.mode() & 0o7777),
            );
        }
    }
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// The shipped call-waiting does not install on FreePBX (no hook reaches it);
/// this bundle's copy lacks that refusal, so the tests can see where a feature's
/// endpoint options, hook context and module load land on FreePBX.
fn endpoint_bundle() -> PathBuf {
    static BUNDLE_PATH: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> =
        std::sync::OnceLock::new();
    BUNDLE_PATH
        .get_or_init(|| {
            bundle_with_version("1.0.0", |src| {
                let def = src.join("packaging/features/call-waiting/feature.json");
                let mut json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&def).unwrap()).unwrap();
                assert!(
                    json["unsupported"]["freepbx"].is_string(),
                    "call-waiting no longer refuses FreePBX: use bundle() here"
                );
                json.as_object_mut().unwrap().remove("unsupported");
                std::fs::write(&def, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
            })
        })
        .1
        .clone()
}

#[test]
fn call_waiting_is_skipped_on_freepbx_and_refused_when_asked_for() {
    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.run(
        &[
            "install",
            bundle.to_str().unwrap(),
            "--features",
            "call-waiting",
        ],
        &[],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("feature call-waiting does not work on freepbx: FreePBX's generated dialplan enters no hook context"),
        "{said}"
    );
    assert_same_tree(&before, &pbx.snapshot());

    let out = pbx.install(&[]);
    assert!(
        out.contains("skipped call-waiting (not on freepbx: "),
        "{out}"
    );
    assert!(!pbx.etc("extensions_custom.conf").contains("call-waiting"));
    assert!(!pbx.etc("modules.conf").contains("func_extstate"));
    assert!(
        pbx.ok(&["status"])
            .lines()
            .all(|l| !l.contains("call-waiting")),
        "call-waiting is recorded as installed"
    );
}

/// The files of the fixture featpkg must never change.
const UNTOUCHED: [&str; 7] = [
    CORE_EXTENSIONS,
    "etc/asterisk/extensions_additional.conf",
    "etc/asterisk/extensions_override_freepbx.conf",
    "etc/asterisk/pjsip.conf",
    "etc/asterisk/pjsip.endpoint.conf",
    "etc/asterisk/manager.conf",
    "etc/crontab",
];

#[test]
fn install_puts_every_piece_where_freepbx_takes_it() {
    let pbx = FreePbx::new();
    let untouched: Vec<Vec<u8>> = UNTOUCHED
        .iter()
        .map(|f| std::fs::read(pbx.path(f)).unwrap())
        .collect();
    let custom_before = pbx.etc("extensions_custom.conf");
    let crontab_before = pbx.read(CRONTAB);
    let spool = pbx.path("var/spool/cron/crontabs");
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::open(&spool)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let out = pbx.install_from(
        &endpoint_bundle(),
        &["--set", "call-waiting.endpoints=201,202"],
    );
    for line in [
        "install featpkg-recipes 1.0.0",
        "modified /etc/asterisk/extensions_custom.conf",
        "modified /etc/asterisk/pjsip.endpoint_custom_post.conf",
        "modified /etc/asterisk/manager_custom.conf",
        "modified /etc/asterisk/modules.conf",
        "modified /var/spool/cron/crontabs/asterisk",
        "created  /var/lib/asterisk/agi-bin/featpkg-operator-alert",
        "reload: Reload Complete",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // Shared and generated files: not a byte changed, the link still a link.
    for (file, bytes) in UNTOUCHED.iter().zip(&untouched) {
        assert!(
            &std::fs::read(pbx.path(file)).unwrap() == bytes,
            "{file} changed"
        );
    }
    let link = pbx.path("etc/asterisk/extensions.conf");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Dialplan: the admin's text first, our blocks after it, no Macro anywhere.
    let custom = pbx.etc("extensions_custom.conf");
    assert!(custom.starts_with(&custom_before), "{custom}");
    for line in [
        "; BEGIN featpkg:featpkg-recipes:busy-callback/dialplan",
        "[featpkg-busy-callback]",
        "; BEGIN featpkg:featpkg-recipes:call-waiting/dialplan",
        "[featpkg-call-waiting]",
        "; BEGIN featpkg:featpkg-recipes:operator-alert/dialplan",
        "exten => *600,1,AGI(/var/lib/asterisk/agi-bin/featpkg-operator-alert,menu,family=op_alert,pattern=_XXX,dir=/var/spool/asterisk/featpkg/operator-alert,deadline=5,maxrec=60,menu_sound=vm-tempgreeting2,record_sound=vm-rec-temp,saved_sound=auth-thankyou,deleted_sound=vm-tempremoved,empty_sound=vm-tooshort)",
        "[featpkg-operator-alert-noanswer]",
        "; BEGIN featpkg:featpkg-recipes:queue-failover/dialplan",
        "[notify-queue-failover]",
        "; END featpkg:featpkg-recipes:queue-failover/dialplan",
    ] {
        assert!(
            custom.lines().any(|l| l == line),
            "extensions_custom.conf lacks {line:?}:\n{custom}"
        );
    }
    for file in [
        "etc/asterisk/extensions_custom.conf",
        "etc/asterisk/pjsip.endpoint_custom_post.conf",
        "etc/asterisk/manager_custom.conf",
        "etc/asterisk/modules.conf",
        CRONTAB,
    ] {
        let text = pbx.read(file).to_ascii_lowercase();
        assert!(
            !text.contains("macro(") && !text.contains("macroexit"),
            "{file} uses Macro:\n{text}"
        );
    }

    // Endpoint options after the generated endpoints; AMI user; modules.
    assert!(
        pbx.etc("pjsip.endpoint_custom_post.conf").ends_with(
            "rtp_keepalive=15\n\
             ; BEGIN featpkg:featpkg-recipes:call-waiting/endpoints\n\
             [201](+type=endpoint)\ndevice_state_busy_at = 3\n\
             [202](+type=endpoint)\ndevice_state_busy_at = 3\n\
             ; END featpkg:featpkg-recipes:call-waiting/endpoints\n"
        ),
        "{}",
        pbx.etc("pjsip.endpoint_custom_post.conf")
    );
    let manager = pbx.etc("manager_custom.conf");
    assert!(
        manager.starts_with("; AMI users the admin added by hand\n")
            && manager.contains("\n[featpkg-busy-callback]\n"),
        "{manager}"
    );
    assert!(
        pbx.etc("modules.conf").ends_with(
            "noload = res_hep.so\n\
             ; BEGIN featpkg:featpkg-recipes:busy-callback/modules\n\
             load => res_manager_devicestate.so\n\
             ; END featpkg:featpkg-recipes:busy-callback/modules\n\
             ; BEGIN featpkg:featpkg-recipes:call-waiting/modules\n\
             load => func_extstate.so\n\
             ; END featpkg:featpkg-recipes:call-waiting/modules\n"
        ),
        "{}",
        pbx.etc("modules.conf")
    );

    // Cron: the asterisk user's crontab, no user column, the admin's lines kept.
    let crontab = pbx.read(CRONTAB);
    assert!(crontab.starts_with(&crontab_before), "{crontab}");
    let job = crontab
        .lines()
        .find(|l| l.contains("featpkg-busy-callback-watch"))
        .unwrap_or_else(|| panic!("no watcher line:\n{crontab}"));
    assert!(
        job.starts_with("* * * * * /var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch --store /var/spool/asterisk/featpkg/busy-callback "),
        "{job}"
    );
    assert!(
        crontab.contains("# BEGIN featpkg:featpkg-recipes:busy-callback/cron\n")
            && crontab.ends_with("# END featpkg:featpkg-recipes:busy-callback/cron\n"),
        "{crontab}"
    );
    assert_eq!(mode(&pbx.path(CRONTAB)), 0o600);
    assert!(
        std::fs::metadata(&spool).unwrap().modified().unwrap() > long_ago,
        "the crontab spool's mtime was not bumped"
    );

    // Programs and credentials: mode as declared, the asterisk user's.
    for (file, want) in [
        ("var/lib/asterisk/agi-bin/featpkg-operator-alert", 0o755),
        ("var/lib/asterisk/agi-bin/featpkg-busy-callback", 0o755),
        (
            "var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch",
            0o755,
        ),
        ("etc/asterisk/featpkg-ami/busy-callback.conf", 0o600),
    ] {
        assert_eq!(mode(&pbx.path(file)), want, "{file}");
        if is_root() {
            assert_eq!(owner(&pbx.path(file)), ASTERISK_IDS, "{file}");
        }
    }
    if is_root() {
        for file in [CRONTAB, "etc/asterisk/extensions_custom.conf"] {
            assert_eq!(owner(&pbx.path(file)), ASTERISK_IDS, "{file} changed owner");
        }
    }

    // Reload: FreePBX's, then new modules and our contexts through the CLI.
    assert_eq!(pbx.fwconsole_log(), "fwconsole reload\n");
    let log = pbx.asterisk_log();
    for cmd in [
        "module load func_extstate.so",
        "module load res_manager_devicestate.so",
        "dialplan show featpkg-call-waiting",
        "dialplan show featpkg-operator-alert-menu",
        "dialplan show featpkg-operator-alert-noanswer",
        "dialplan show notify-queue-failover",
        "dialplan show featpkg-busy-callback",
    ] {
        assert!(
            log.lines().any(|l| l == cmd),
            "asterisk was not asked {cmd:?}:\n{log}"
        );
    }
    assert!(
        !log.contains("module reload"),
        "fwconsole reload did that: {log}"
    );
}

#[test]
fn reinstall_changes_nothing() {
    let pbx = FreePbx::new();
    pbx.install(&[]);
    let before = pbx.snapshot();
    let files = [
        "etc/asterisk/extensions_custom.conf",
        "etc/asterisk/modules.conf",
        CRONTAB,
    ];
    let mtimes: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(pbx.path(f)).unwrap().modified().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let out = pbx.install(&[]);
    assert!(
        out.contains("featpkg-recipes 1.0.0 is up to date; nothing changed"),
        "{out}"
    );
    assert_same_tree(&before, &pbx.snapshot());
    let after: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(pbx.path(f)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(mtimes, after);
    assert_eq!(
        pbx.fwconsole_log(),
        "fwconsole reload\n",
        "reloaded for nothing"
    );
}

#[test]
fn uninstall_restores_the_tree_byte_for_byte() {
    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    pbx.install_from(&endpoint_bundle(), &["--set", "call-waiting.endpoints=201"]);
    let out = pbx.ok(&["uninstall", BUNDLE]);
    assert!(out.contains("uninstall featpkg-recipes 1.0.0"), "{out}");
    assert!(
        out.contains("removed  /var/lib/asterisk/agi-bin/featpkg-operator-alert"),
        "{out}"
    );
    // Bytes, modes, owners, the link: all as before.
    assert_same_tree(&before, &pbx.snapshot());
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
    assert_eq!(pbx.fwconsole_log(), "fwconsole reload\nfwconsole reload\n");
}

#[test]
fn failures_mid_transaction_and_in_fwconsole_restore_everything() {
    for point in [
        "step-1-done",
        "step-4-done",
        "step-8-temp",
        "applied",
        "before-state-commit",
    ] {
        let pbx = FreePbx::new();
        let before = pbx.snapshot();
        let bundle = bundle();
        let out = pbx.run(
            &["install", bundle.to_str().unwrap()],
            &[("FEATPKG_TEST_FAIL_AT", point)],
        );
        assert_eq!(out.status.code(), Some(2), "{point}: {}", text(&out));
        assert!(text(&out).contains(point), "{point}: {}", text(&out));
        assert_same_tree(&before, &pbx.snapshot());
        assert!(pbx.ok(&["status"]).contains("nothing installed"), "{point}");
        assert!(
            pbx.ok(&["recover"]).contains("nothing to recover"),
            "{point}"
        );
    }

    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.run(
        &["install", bundle.to_str().unwrap()],
        &[("FAKE_FWCONSOLE_FAIL", "1")],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for part in [
        "reload failed, every change was rolled back",
        "fwconsole reload",
        "Reload failed because retrieve_conf encountered an error",
    ] {
        assert!(said.contains(part), "no {part:?} in: {said}");
    }
    assert_same_tree(&before, &pbx.snapshot());
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
    // FreePBX was asked again, on the restored files.
    assert_eq!(pbx.fwconsole_log(), "fwconsole reload\nfwconsole reload\n");
}

#[test]
fn a_hand_edit_inside_our_block_stops_uninstall_until_forced() {
    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    pbx.install(&[]);
    let custom = pbx.path("etc/asterisk/extensions_custom.conf");
    let text_now = std::fs::read_to_string(&custom).unwrap();
    let edited = text_now.replacen(
        "exten => *600,1,AGI(",
        "exten => *600,1,NoOp(hand edit)\n same => n,AGI(",
        1,
    );
    assert_ne!(edited, text_now);
    std::fs::write(&custom, &edited).unwrap();
    let edited_tree = pbx.snapshot();

    let out = pbx.run(&["uninstall", BUNDLE], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for part in [
        "/etc/asterisk/extensions_custom.conf",
        "operator-alert/dialplan",
        "changed by hand",
        "--force",
    ] {
        assert!(said.contains(part), "no {part:?} in: {said}");
    }
    assert_same_tree(&edited_tree, &pbx.snapshot());

    let out = pbx.ok(&["uninstall", BUNDLE, "--force"]);
    assert!(out.contains("overwritten (--force)"), "{out}");
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn destinations_list_what_is_installed() {
    let pbx = FreePbx::new();
    // Nothing installed: an empty list, no bundle needed, nothing created.
    assert_eq!(pbx.ok(&["destinations"]).trim(), "[]");
    assert!(!pbx.path("var/lib/asterisk/featpkg").exists());

    pbx.install(&["--set", "operator-alert.noanswer_context=op-noanswer"]);
    let list = pbx.destinations();
    let got: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(
                d["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{d}"
            );
            (
                d["feature"].as_str().unwrap().to_string(),
                d["destination"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("busy-callback", "featpkg-busy-callback,${EXTEN},1"),
            ("operator-alert", "op-noanswer,${EXTEN},1"),
            ("queue-failover", "notify-queue-failover,${QUEUENUM},1"),
        ]
        .map(|(f, d)| (f.to_string(), d.to_string()))
    );
    // Each one is a context featpkg installed.
    let custom = pbx.etc("extensions_custom.conf");
    for (_, dest) in &got {
        let context = dest.split(',').next().unwrap();
        assert!(custom.contains(&format!("\n[{context}]\n")), "{context}");
    }

    pbx.ok(&["uninstall", "queue-failover"]);
    assert_eq!(pbx.destinations().as_array().unwrap().len(), 2);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_eq!(pbx.destinations(), serde_json::json!([]));
}

#[test]
fn macro_in_a_fragment_is_refused() {
    let (_dir, bundle) = bundle_with_version("1.0.1", |src| {
        let fragment = src.join("packaging/features/operator-alert/extensions.conf");
        let text = std::fs::read_to_string(&fragment).unwrap();
        let text = text.replacen(
            " same => n,Hangup()\n",
            " same => n,Macro(hangupcall)\n same => n,Hangup()\n",
            1,
        );
        std::fs::write(&fragment, text).unwrap();
    });
    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    let out = pbx.run(&["install", bundle.to_str().unwrap()], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for part in [
        "operator-alert/dialplan",
        "Macro(hangupcall)",
        "Gosub/Return",
    ] {
        assert!(said.contains(part), "no {part:?} in: {said}");
    }
    assert_same_tree(&before, &pbx.snapshot());
    assert_eq!(pbx.fwconsole_log(), "");
}

#[test]
fn freepbx_refusals_name_the_file_and_change_nothing() {
    let pbx = FreePbx::new();
    let before = pbx.snapshot();
    let bundle = endpoint_bundle();
    let bundle = bundle.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 3] = [
        // An endpoint FreePBX does not generate.
        (
            &["--set", "call-waiting.endpoints=201,299"],
            &["call-waiting/endpoints", "[299]", "type = endpoint"],
        ),
        // A Gosub hook (ends in Return()) in a context FreePBX includes.
        (
            &["--set", "call-waiting.hook_context=from-internal-custom"],
            &[
                "[from-internal-custom] ends in Return()",
                "/etc/asterisk/extensions_additional.conf:",
                "[from-internal-xfer]",
            ],
        ),
        // The admin's dialplan already has the code.
        (
            &[
                "--set",
                "operator-alert.service_code=*43",
                "--set",
                "operator-alert.service_context=from-internal-custom",
            ],
            &["operator-alert/dialplan", "extensions_custom.conf"],
        ),
    ];
    for (extra, parts) in cases {
        let mut args = vec!["install", bundle];
        args.extend_from_slice(extra);
        let out = pbx.run(&args, &[]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {said}");
        for part in parts {
            assert!(said.contains(part), "{extra:?}: no {part:?} in: {said}");
        }
        assert_same_tree(&before, &pbx.snapshot());
    }
}

#[test]
fn a_missing_asterisk_crontab_is_created_and_removed_again() {
    let pbx = FreePbx::new();
    std::fs::remove_file(pbx.path(CRONTAB)).unwrap();
    let before = pbx.snapshot();
    let out = pbx.install(&[]);
    assert!(
        out.contains("created  /var/spool/cron/crontabs/asterisk"),
        "{out}"
    );
    let crontab = pbx.read(CRONTAB);
    assert!(
        crontab.starts_with("# BEGIN featpkg:featpkg-recipes:busy-callback/cron\n* * * * * /var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch "),
        "{crontab}"
    );
    assert_eq!(mode(&pbx.path(CRONTAB)), 0o600);
    if is_root() {
        assert_eq!(owner(&pbx.path(CRONTAB)), ASTERISK_IDS);
    }
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

// ---- As FreePBX's web UI runs it: featpkg as asterisk, not root --------------
//
// The crontab spool is root's (`root:crontab 1730`), so the web user's featpkg
// changes asterisk's crontab through the real crontab(1) (package cron), as
// FreePBX's own Cron class does. The system user `featpkg-web` (.ci/setup)
// stands in for asterisk: the tree's /etc/passwd gives asterisk its uid, the
// tree is its (what `fwconsole chown` does), and its real crontab is the one
// changed, then put back.

impl FreePbx {
    /// The tree as FreePBX leaves it for its web UI: `asterisk_uid` is
    /// asterisk's uid in its /etc/passwd, the tree is the web user's, and the
    /// crontab spool is root's, 1730, as on Debian.
    fn for_web_user(user: &WebUser, asterisk_uid: u32) -> FreePbx {
        let pbx = FreePbx::new();
        let root = pbx.root();
        web_user::make_asterisk(&root, asterisk_uid, user.gid);
        web_user::chown_tree(pbx.dir.path(), user.uid, user.gid);
        std::fs::set_permissions(pbx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let spool = root.join("var/spool/cron/crontabs");
        web_user::chown_tree(&spool, 0, 0);
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o1730)).unwrap();
        // The bundle where the web user can read it.
        std::fs::copy(bundle(), pbx.web_bundle()).unwrap();
        std::fs::set_permissions(pbx.web_bundle(), std::fs::Permissions::from_mode(0o644)).unwrap();
        pbx
    }

    fn web_bundle(&self) -> PathBuf {
        self.dir.path().join("featpkg-recipes.zip")
    }

    /// featpkg ARGS as the web user, with the real crontab(1).
    fn web_run(&self, user: &WebUser, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = user.command(&featpkg_bin());
        self.configure(&mut cmd, args, env);
        cmd.args(["--crontab-cmd", "/usr/bin/crontab"])
            .output()
            .unwrap()
    }

    fn web_ok(&self, user: &WebUser, args: &[&str]) -> String {
        let out = self.web_run(user, args, &[]);
        assert!(
            out.status.success(),
            "featpkg {args:?} as {WEB_USER} failed: {}",
            text(&out)
        );
        text(&out)
    }
}

/// The watcher block a root install writes into the tree's asterisk crontab
/// (what the web user's crontab must end with, byte for byte).
fn watcher_block_as_root_writes_it() -> String {
    let pbx = FreePbx::new();
    let before = pbx.read(CRONTAB);
    pbx.install(&["--features", "busy-callback"]);
    let after = pbx.read(CRONTAB);
    after
        .strip_prefix(&before)
        .unwrap_or_else(|| panic!("root's install rewrote the admin's lines:\n{after}"))
        .to_string()
}

#[test]
fn as_the_web_user_asterisks_crontab_changes_through_crontab1() {
    let block = watcher_block_as_root_writes_it();
    assert!(
        block.starts_with("# BEGIN featpkg:featpkg-recipes:busy-callback/cron\n* * * * * /var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch ")
            && block.ends_with("\n# END featpkg:featpkg-recipes:busy-callback/cron\n")
            && block.lines().count() == 3,
        "{block}"
    );
    let user = WebUser::take();
    let pbx = FreePbx::for_web_user(&user, user.uid);
    user.set_crontab(Some(ADMIN_CRONTAB));
    let before = pbx.snapshot();
    let bundle = pbx.web_bundle();
    let bundle = bundle.to_str().unwrap();

    let out = pbx.web_ok(&user, &["install", bundle, "--features", "busy-callback"]);
    assert!(
        out.contains("modified /var/spool/cron/crontabs/asterisk"),
        "{out}"
    );
    assert!(
        out.contains(
            "cron: crontab(1) installed /var/spool/cron/crontabs/asterisk, and told cron itself"
        ),
        "{out}"
    );
    assert_eq!(user.crontab(), Some(format!("{ADMIN_CRONTAB}{block}")));
    // The tree's spool file (root's) was neither read nor written.
    assert_eq!(
        before.get(&format!("{CRONTAB} {}:{}", ASTERISK_IDS.0, ASTERISK_IDS.1)),
        pbx.snapshot()
            .get(&format!("{CRONTAB} {}:{}", ASTERISK_IDS.0, ASTERISK_IDS.1))
    );
    let verify = pbx.web_run(&user, &["verify"], &[]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    // The same install again: nothing to do.
    let again = pbx.web_ok(&user, &["install", bundle, "--features", "busy-callback"]);
    assert!(again.contains("up to date"), "{again}");

    let out = pbx.web_ok(&user, &["uninstall", BUNDLE]);
    assert!(
        out.contains("modified /var/spool/cron/crontabs/asterisk"),
        "{out}"
    );
    assert_eq!(user.crontab().as_deref(), Some(ADMIN_CRONTAB));
    assert_same_tree(&before, &pbx.snapshot());

    // A crontab featpkg created is removed again, as root's spool file is.
    user.set_crontab(None);
    pbx.web_ok(&user, &["install", bundle, "--features", "busy-callback"]);
    assert_eq!(user.crontab(), Some(block.clone()));
    pbx.web_ok(&user, &["rollback"]);
    assert_eq!(user.crontab(), None);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn a_failed_change_as_the_web_user_puts_the_crontab_back() {
    let user = WebUser::take();
    let pbx = FreePbx::for_web_user(&user, user.uid);
    let bundle = pbx.web_bundle();
    let bundle = bundle.to_str().unwrap();
    let install = ["install", bundle, "--features", "busy-callback"];
    let before = pbx.snapshot();

    // Every step written, then a failure: the journal undoes them all,
    // the crontab through crontab(1) too (deleted: there was none).
    let out = pbx.web_run(&user, &install, &[("FEATPKG_TEST_FAIL_AT", "applied")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("injected failure at applied"),
        "{}",
        text(&out)
    );
    assert_eq!(user.crontab(), None);
    assert_same_tree(&before, &pbx.snapshot());

    user.set_crontab(Some(ADMIN_CRONTAB));
    let out = pbx.web_run(&user, &install, &[("FEATPKG_TEST_FAIL_AT", "applied")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(user.crontab().as_deref(), Some(ADMIN_CRONTAB));
    assert_same_tree(&before, &pbx.snapshot());

    // crontab(1) refuses the new crontab: its words reach the admin, and the
    // files written before it are put back. (A stand-in: the real one refuses
    // only text it cannot parse; its message here is Debian cron 3.0pl1's.)
    let refusing = pbx.dir.path().join("crontab-refusing");
    std::fs::write(
        &refusing,
        "#!/bin/sh\nif [ \"$1\" = - ]; then\n  cat >/dev/null\n  printf '\"-\":0: bad minute\\nerrors in crontab file, can'\"'\"'t install.\\n' >&2\n  exit 1\nfi\nexec /usr/bin/crontab \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&refusing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = user.command(&featpkg_bin());
    pbx.configure(&mut cmd, &install, &[]);
    let out = cmd.arg("--crontab-cmd").arg(&refusing).output().unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "/var/spool/cron/crontabs/asterisk (through {}): `crontab -` failed (exit status: 1): \"-\":0: bad minute\nerrors in crontab file, can't install.",
            refusing.display()
        )),
        "{said}"
    );
    assert_eq!(user.crontab().as_deref(), Some(ADMIN_CRONTAB));
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn as_a_user_other_than_asterisk_the_crontab_change_is_refused() {
    let user = WebUser::take();
    let asterisk_uid = user.uid + 1000;
    let pbx = FreePbx::for_web_user(&user, asterisk_uid);
    user.set_crontab(Some(ADMIN_CRONTAB));
    let before = pbx.snapshot();
    let bundle = pbx.web_bundle();
    let out = pbx.web_run(
        &user,
        &[
            "install",
            bundle.to_str().unwrap(),
            "--features",
            "busy-callback",
        ],
        &[],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "featpkg runs as uid {uid}, not as asterisk (uid {asterisk_uid}): /usr/bin/crontab would change uid {uid}'s own crontab, not /var/spool/cron/crontabs/asterisk; run featpkg as root or as asterisk",
            uid = user.uid
        )),
        "{said}"
    );
    assert_eq!(user.crontab().as_deref(), Some(ADMIN_CRONTAB));
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn after_a_run_as_root_the_web_user_can_still_run_featpkg() {
    let user = WebUser::take();
    let pbx = FreePbx::for_web_user(&user, user.uid);
    let before = pbx.snapshot();
    // As `fwconsole ma install` runs the module's install(): root.
    pbx.install(&["--features", "operator-alert"]);
    let state = pbx.path("var/lib/asterisk/featpkg");
    let mut not_theirs = Vec::new();
    let mut stack = vec![state.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if (meta.uid(), meta.gid()) != (user.uid, user.gid) {
            not_theirs.push(format!("{} {}:{}", path.display(), meta.uid(), meta.gid()));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(not_theirs.is_empty(), "left to root: {not_theirs:?}");
    let status = pbx.web_ok(&user, &["status"]);
    assert!(status.contains("operator-alert"), "{status}");
    pbx.web_ok(&user, &["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

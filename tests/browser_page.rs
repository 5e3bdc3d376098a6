//! The settings page in a real headless Chromium (Debian's `chromium`), as an
//! admin clicks through it, in a MikoPBX frame and a FreePBX frame: `php -S`
//! on loopback serves tests/browser/router.php (the PBX's layout and UI
//! toolkit, the module's real PHP), the bundled featpkg works on a PBX tree in
//! a temp dir (fake Asterisk CLI, fake MikoPBX reload / fwconsole), and
//! tests/browser/e2e.mjs (playwright-core) runs the scenario: five features,
//! conference-guest filled, `number=12a` refused beside the field, two queue
//! rules, preview diff, apply, remove, roll back. Screenshots go to
//! target/browser-shots/<pbx>/ (README's copies are in docs/screenshots/).
//! The FreePBX frame's server runs as `featpkg-web` (tests/common/web_user.rs),
//! as FreePBX's web server runs as asterisk: conference-guest's cron line goes
//! into that user's crontab through the real crontab(1).
//!
//! Needs `chromium` and `npm ci --prefix tests/browser` (`.ci/setup` and
//! `.ci/run` do both).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::web_user::{self, WebUser};
use common::{bundle, copy_tree, repo, text};

/// The php -S server, stopped when the test ends (even on a panic).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn extract(zip: &Path, to: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    archive.extract(to).unwrap();
    for entry in std::fs::read_dir(to.join("bin/x86_64-linux")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

/// Serves `env`'s PBX frame (as `web_user` when given, else as root), runs the
/// scenario against it, asserts it passed.
fn run_scenario(pbx: &str, page: &str, env: &[(String, String)], web_user: Option<&WebUser>) {
    let node_modules = repo().join("tests/browser/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir(),
        "run `npm ci --prefix tests/browser` first (.ci/run does)"
    );
    let port = free_port();
    let mut server = match web_user {
        Some(user) => user.command(Path::new("/usr/bin/php")),
        None => Command::new("php"),
    };
    server
        .args(["-S", &format!("127.0.0.1:{port}"), "router.php"])
        .current_dir(repo().join("tests/browser"))
        .env("FEATPKG_BROWSER_PBX", pbx)
        .env("FEATPKG_BROWSER_STUBS", repo().join("tests/fixtures/php"))
        .env("FEATPKG_BROWSER_NPM", &node_modules)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("FEATPKG_TEST_FAIL_AT")
        .env_remove("FEATPKG_TEST_PAUSE_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Server(server.spawn().expect("php -S"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "php -S did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shots = repo().join("target/browser-shots").join(pbx);
    let out = Command::new("node")
        .arg("e2e.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(page)
        .arg(&shots)
        .current_dir(repo().join("tests/browser"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "the {pbx} page scenario failed (screenshots in {}):\n{}",
        shots.display(),
        text(&out)
    );
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// featpkg's view of the PBX tree at `root` and the fake Asterisk CLI's
/// settings (its log and state in `w`).
fn pbx_env(w: &Path, root: &Path) -> Vec<(String, String)> {
    [
        ("FEATPKG_ROOT", s(root)),
        (
            "FEATPKG_ASTERISK_CMD",
            s(&repo().join("tests/support/fake-asterisk")),
        ),
        ("FAKE_ASTERISK_LOG", s(&w.join("asterisk.log"))),
        ("FAKE_ASTERISK_STATE_DIR", s(&w.join("fake-state"))),
        ("FAKE_ASTERISK_ETC", s(&root.join("etc/asterisk"))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn mikopbx_frame_edit_preview_apply_remove_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let root = w.join("root");
    copy_tree(&repo().join("tests/fixtures/mikopbx/root"), &root);
    for sub in [
        "cf/conf",
        "storage/usbdisk1/mikopbx/astspool",
        "storage/usbdisk1/mikopbx/astlogs/asterisk",
        "var/lib/asterisk/agi-bin",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let db = rusqlite::Connection::open(root.join("cf/conf/mikopbx.db")).unwrap();
    db.execute_batch(
        &std::fs::read_to_string(repo().join("tests/fixtures/mikopbx/config.sql")).unwrap(),
    )
    .unwrap();
    drop(db);
    // The module where MikoPBX unpacks it; featpkg sees the same path under its root.
    let mods = w.join("mods");
    let module = mods.join("ModuleFeatpkg");
    extract(&bundle(), &module);
    let inner = root.join(mods.strip_prefix("/").unwrap());
    std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&mods, &inner).unwrap();
    std::fs::create_dir_all(w.join("fake-state")).unwrap();
    let mut env = pbx_env(w, &root);
    env.extend(
        [
            ("FAKE_MIKOPBX_ROOT", s(&root)),
            (
                "FAKE_MIKOPBX_GENERATED",
                s(&repo().join("tests/fixtures/mikopbx/generated")),
            ),
            ("FAKE_MIKOPBX_MODULES", s(&mods)),
            (
                "FEATPKG_RELOAD_CMD",
                s(&repo().join("tests/support/fake-mikopbx-reload")),
            ),
            ("FEATPKG_BROWSER_MODULE", s(&module)),
            ("FEATPKG_BROWSER_TOKEN", "e2e-access-token".into()),
            (
                "FEATPKG_E2E_FEATPKG",
                s(&module.join("bin/x86_64-linux/featpkg")),
            ),
            (
                "FEATPKG_E2E_TARGET_ARGS",
                format!("--target mikopbx --module-dir {}", module.display()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    // MikoPBX has booted: every file it generates is written, Asterisk runs
    // with modules.conf's modules.
    let boot = Command::new(repo().join("tests/support/fake-mikopbx-reload"))
        .args(["dialplan", "manager", "cron", "modules", "pjsip"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(boot.status.success(), "{}", text(&boot));
    let modules = std::fs::read_to_string(root.join("etc/asterisk/modules.conf")).unwrap();
    let loaded: String = modules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("load => "))
        .map(|m| format!("{m}\n"))
        .collect();
    std::fs::write(w.join("fake-state/modules"), loaded).unwrap();
    run_scenario(
        "mikopbx",
        "/admin-cabinet/module-featpkg/module-featpkg/index",
        &env,
        None,
    );
}

#[test]
fn freepbx_frame_edit_preview_apply_remove_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let root = w.join("root");
    copy_tree(&repo().join("tests/fixtures/freepbx/root"), &root);
    // Core's extensions.conf, linked in as fwconsole does.
    std::os::unix::fs::symlink(
        "../../var/www/html/admin/modules/core/etc/extensions.conf",
        root.join("etc/asterisk/extensions.conf"),
    )
    .unwrap();
    let module: PathBuf = w.join("featpkg");
    extract(&bundle(), &module);
    for sub in ["fake-state", "varlib"] {
        std::fs::create_dir_all(w.join(sub)).unwrap();
    }
    let mut env = pbx_env(w, &root);
    env.extend(
        [
            ("FAKE_FWCONSOLE_LOG", s(&w.join("fwconsole.log"))),
            (
                "FEATPKG_RELOAD_CMD",
                format!(
                    "{} reload",
                    repo().join("tests/fixtures/freepbx/fwconsole").display()
                ),
            ),
            ("FEATPKG_BROWSER_MODULE", s(&module)),
            ("FEATPKG_BROWSER_VARLIB", s(&w.join("varlib"))),
            (
                "FEATPKG_E2E_FEATPKG",
                s(&module.join("bin/x86_64-linux/featpkg")),
            ),
            ("FEATPKG_E2E_TARGET_ARGS", "--target freepbx".into()),
            // asterisk's crontab through the real crontab(1), as on a box.
            ("FEATPKG_CRONTAB_CMD", "/usr/bin/crontab".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    // FreePBX's web server runs as asterisk: so does the page here, and with
    // it featpkg. The tree is asterisk's, as `fwconsole chown` leaves it; the
    // crontab spool is root's, as on Debian.
    let user = WebUser::take();
    web_user::make_asterisk(&root, user.uid, user.gid);
    web_user::chown_tree(w, user.uid, user.gid);
    std::fs::set_permissions(w, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spool = root.join("var/spool/cron/crontabs");
    web_user::chown_tree(&spool, 0, 0);
    std::fs::set_permissions(&spool, std::os::unix::fs::PermissionsExt::from_mode(0o1730)).unwrap();
    let tree_crontab = std::fs::read(spool.join("asterisk")).unwrap();
    run_scenario(
        "freepbx",
        "/admin/config.php?display=featpkg",
        &env,
        Some(&user),
    );
    // The scenario ends rolled back to conference-guest and queue-failover
    // installed: conference-guest's watcher line is in asterisk's crontab (through
    // crontab(1)); the spool file in the tree was never touched.
    let crontab = user.crontab().unwrap_or_default();
    assert!(
        crontab.contains("# BEGIN featpkg:featpkg-recipes:conference-guest/cron\n* * * * * /var/lib/asterisk/featpkg-bin/featpkg-conference-guest-watch "),
        "{crontab}"
    );
    assert_eq!(std::fs::read(spool.join("asterisk")).unwrap(), tree_crontab);
}

//! End-to-end: what the watcher features need from the engine — an AMI user in
//! manager.conf with a generated secret, its credentials file (0600), a crontab
//! line in a `#` marked block — exercised with a small feature made for the test.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn add_demo_feature(src: &Path) {
    let dir = src.join("packaging/features/demo-watch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("feature.json"),
        r##"{"id": "demo-watch", "version": "1.0.0", "summary": "test: AMI user, credentials, cron line",
            "edits": [
              {"kind": "block", "id": "manager", "file": "etc:manager.conf", "template": "manager.conf", "check": "new-sections"},
              {"kind": "file", "id": "ami", "file": "etc:featpkg-ami/demo-watch.conf", "template": "ami.conf", "mode": "0600"},
              {"kind": "block", "id": "cron", "file": "sysetc:crontab", "template": "crontab", "comment": "#"}
            ]}"##,
    )
    .unwrap();
    std::fs::write(
        dir.join("manager.conf"),
        "[featpkg-%{feature}]\nsecret = %{secret}\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\nread = call,reporting\nwrite = originate,call\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ami.conf"),
        "host=127.0.0.1\nport=5038\nusername=featpkg-%{feature}\nsecret=%{secret}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("crontab"),
        "* * * * * root %{dirs.agi}/featpkg-demo-watch --keepalive >/dev/null 2>&1\n",
    )
    .unwrap();
}

fn secret_in(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap()
        .to_string()
}

#[test]
fn ami_user_credentials_and_cron_line_round_trip() {
    let (_d, archive) = bundle_with_version("1.0.0", add_demo_feature);
    let archive = archive.to_str().unwrap();
    let pbx = Pbx::new();
    let before = pbx.snapshot();

    let dry = pbx.ok(&["install", archive, "--features", "demo-watch", "--dry-run"]);
    assert!(
        dry.contains("+secret = ********"),
        "secrets are masked in diffs: {dry}"
    );

    let out = pbx.ok(&["install", archive, "--features", "demo-watch"]);
    assert!(out.contains("created  /etc/asterisk/featpkg-ami/"), "{out}");
    let manager = pbx.read_etc("manager.conf");
    let creds_path = pbx.etc("featpkg-ami/demo-watch.conf");
    let creds = std::fs::read_to_string(&creds_path).unwrap();
    let ours = manager
        .split("[featpkg-demo-watch]\n")
        .nth(1)
        .expect("our AMI user");
    let secret = secret_in(ours, "secret = ");
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(secret, "admin-secret");
    assert_eq!(
        secret_in(&creds, "secret="),
        secret,
        "the watcher logs in with the same secret"
    );
    assert_eq!(
        std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        manager
            .contains("; BEGIN featpkg:featpkg-recipes:demo-watch/manager\n[featpkg-demo-watch]\n"),
        "{manager}"
    );
    assert!(
        !dry.contains(&secret),
        "the dry run did not print the real secret"
    );

    // On plain Asterisk the cron line goes into a cron.d file of the feature's
    // own (the system crontab's format, user column included), never /etc/crontab.
    let cron_d = pbx.root().join("etc/cron.d/featpkg-demo-watch");
    let crontab = std::fs::read_to_string(&cron_d).unwrap();
    assert_eq!(
        crontab,
        "# BEGIN featpkg:featpkg-recipes:demo-watch/cron\n\
         * * * * * root /var/lib/asterisk/agi-bin/featpkg-demo-watch --keepalive >/dev/null 2>&1\n\
         # END featpkg:featpkg-recipes:demo-watch/cron\n"
    );
    assert_eq!(
        std::fs::metadata(&cron_d).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    assert_eq!(
        pbx.read("etc/crontab"),
        before["etc/crontab"].0,
        "/etc/crontab is not featpkg's"
    );
    assert!(
        pbx.asterisk_log().lines().any(|l| l == "manager reload"),
        "{}",
        pbx.asterisk_log()
    );

    // Same secret on reinstall: nothing changes.
    assert!(
        pbx.ok(&["install", archive, "--features", "demo-watch"])
            .contains("up to date")
    );
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn an_ami_user_the_admin_already_has_is_refused() {
    let (_d, archive) = bundle_with_version("1.0.0", add_demo_feature);
    let pbx = Pbx::new();
    let mut manager = pbx.read_etc("manager.conf");
    manager.push_str("\n[featpkg-demo-watch]\nsecret = mine\n");
    pbx.write_etc("manager.conf", manager.as_bytes());
    let before = pbx.snapshot();
    let out = pbx.run(&[
        "install",
        archive.to_str().unwrap(),
        "--features",
        "demo-watch",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("manager.conf:13: [featpkg-demo-watch] already exists"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

/// A feature with its own block at the end of [modules], like call-waiting's.
fn add_modules_feature(src: &Path) {
    let dir = src.join("packaging/features/demo-modules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("feature.json"),
        r##"{"id": "demo-modules", "version": "1.0.0", "summary": "test: a second block in [modules]",
            "modules": ["res_demo.so"],
            "edits": [
              {"kind": "block", "id": "modules", "file": "etc:modules.conf", "template": "modules.conf", "section": "modules", "check": "modules"}
            ]}"##,
    )
    .unwrap();
    std::fs::write(dir.join("modules.conf"), "load => res_demo.so\n").unwrap();
}

#[test]
fn two_blocks_at_the_end_of_one_section_follow_each_other() {
    // The section's last entry is inside the first block (its END marker is a
    // comment): the second block must go after that END, never inside the block.
    let (_d, archive) = bundle_with_version("1.0.0", add_modules_feature);
    let archive = archive.to_str().unwrap();
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    pbx.ok(&[
        "install",
        archive,
        "--features",
        "call-waiting,demo-modules",
    ]);
    let modules = pbx.read_etc("modules.conf");
    assert!(
        modules.ends_with(
            "noload => res_hep.so\n\
             ; BEGIN featpkg:featpkg-recipes:call-waiting/modules\n\
             load => func_extstate.so\n\
             ; END featpkg:featpkg-recipes:call-waiting/modules\n\
             ; BEGIN featpkg:featpkg-recipes:demo-modules/modules\n\
             load => res_demo.so\n\
             ; END featpkg:featpkg-recipes:demo-modules/modules\n"
        ),
        "{modules}"
    );
    assert!(pbx.ok(&["verify"]).contains("no drift"));
    pbx.ok(&["uninstall", "demo-modules"]);
    pbx.ok(&["install", archive, "--features", "demo-modules"]);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

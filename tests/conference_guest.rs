//! End-to-end: conference-guest needs its site-specific parameters, and with
//! them installs the leg context, the watcher, its AMI user and cron line.

mod common;

use common::*;

const SETS: [&str; 6] = [
    "--set",
    "conference-guest.conference=700",
    "--set",
    "conference-guest.provider=provider",
    "--set",
    "conference-guest.number=0551234567",
];

#[test]
fn without_its_parameters_it_is_skipped_or_refused() {
    let pbx = Pbx::new();
    let bundle = bundle();
    let archive = bundle.to_str().unwrap();
    let before = pbx.snapshot();
    let out = pbx.run(&["install", archive, "--features", "conference-guest"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("feature conference-guest: parameter conference is required"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
    // Installing "everything" skips it and says why.
    let out = pbx.ok(&["install", archive, "--no-reload"]);
    assert!(
        out.contains("skipped conference-guest (needs conference, provider, number)"),
        "{out}"
    );
    assert!(!pbx.ok(&["status"]).contains("conference-guest"));
}

#[test]
fn with_its_parameters_it_installs_and_uninstalls_cleanly() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "conference-guest",
    ];
    args.extend(SETS);
    pbx.ok(&args);
    let ext = pbx.read_etc("extensions.conf");
    assert!(
        ext.contains("[featpkg-conference-guest-leg]\n")
            && ext.contains(" same => n,SendDTMF(700)\n same => n,ConfBridge(700)\n"),
        "{ext}"
    );
    let crontab = std::fs::read_to_string(pbx.root().join("etc/crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.contains("featpkg-conference-guest-watch"))
        .unwrap();
    assert!(
        line.contains(
            " --conference 700 --dial PJSIP/0551234567@provider --attempts 5 --backoff-ms 2000 "
        ),
        "{line}"
    );
    assert!(
        pbx.root()
            .join("var/lib/asterisk/featpkg-bin/featpkg-conference-guest-watch")
            .is_file()
    );
    assert!(
        pbx.read_etc("manager.conf")
            .contains("[featpkg-conference-guest]\n")
    );
    assert!(
        pbx.asterisk_log()
            .lines()
            .any(|l| l == "dialplan show featpkg-conference-guest-leg")
    );
    // The leg joins with ConfBridge() and the watcher follows ConfBridge events.
    assert!(
        pbx.read_etc("modules.conf").contains(
            "\nload => app_confbridge.so\n; END featpkg:featpkg-recipes:conference-guest/modules\n"
        ),
        "{}",
        pbx.read_etc("modules.conf")
    );
    assert!(
        pbx.asterisk_log()
            .lines()
            .any(|l| l == "module load app_confbridge.so"),
        "{}",
        pbx.asterisk_log()
    );
    pbx.ok(&["uninstall", "conference-guest"]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn dtmf_can_differ_from_the_conference_number() {
    let pbx = Pbx::new();
    let bundle = bundle();
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "conference-guest",
        "--no-reload",
    ];
    args.extend(SETS);
    args.extend(["--set", "conference-guest.dtmf=1234#"]);
    pbx.ok(&args);
    assert!(
        pbx.read_etc("extensions.conf")
            .contains(" same => n,SendDTMF(1234#)\n same => n,ConfBridge(700)\n")
    );
}

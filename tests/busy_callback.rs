//! End-to-end: what installing busy-callback puts on a plain Asterisk box, and
//! that every path its cron line and dialplan name is really there.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[test]
fn install_wires_agi_watcher_ami_user_and_cron_line() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
        "--set",
        "busy-callback.retries=1",
    ]);
    assert!(out.contains("manager reload"), "{out}");

    let crontab = std::fs::read_to_string(pbx.root().join("etc/crontab")).unwrap();
    let line = crontab
        .lines()
        .find(|l| l.contains("featpkg-busy-callback-watch"))
        .expect("cron line");
    assert!(
        line.starts_with(
            "* * * * * root /var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch "
        ),
        "{line}"
    );
    assert!(
        line.contains(" --retries 1 ") && line.ends_with(">/dev/null 2>&1"),
        "{line}"
    );
    assert!(
        !line.contains('%'),
        "an unescaped % would end the cron command: {line}"
    );
    // Every absolute path the cron line names exists (or is the watcher's own runtime file).
    let watcher = pbx
        .root()
        .join("var/lib/asterisk/featpkg-bin/featpkg-busy-callback-watch");
    assert_eq!(
        std::fs::metadata(&watcher).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let creds = pbx.etc("featpkg-ami/busy-callback.conf");
    assert!(
        line.contains(" --ami /etc/asterisk/featpkg-ami/busy-callback.conf "),
        "{line}"
    );
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let manager = pbx.read_etc("manager.conf");
    let user = manager
        .split("[featpkg-busy-callback]\n")
        .nth(1)
        .expect("AMI user");
    assert!(
        user.contains("permit = 127.0.0.1/255.255.255.255\n")
            && user.contains("deny = 0.0.0.0/0.0.0.0\n"),
        "{user}"
    );
    let secret = user
        .lines()
        .find_map(|l| l.strip_prefix("secret = "))
        .unwrap();
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains(&format!("secret={secret}\n"))
    );

    let ext = pbx.read_etc("extensions.conf");
    assert!(ext.contains("exten => _X!,1,AGI(/var/lib/asterisk/agi-bin/featpkg-busy-callback,offer,dir=/var/spool/asterisk/featpkg/busy-callback,pattern=_XXX,digit=5,max=3,expiry=1800,"), "{ext}");
    assert!(
        ext.contains("exten => *601,1,AGI(/var/lib/asterisk/agi-bin/featpkg-busy-callback,cancel,"),
        "{ext}"
    );
    assert!(
        ext.contains(
            " same => n(again),AGI(/var/lib/asterisk/agi-bin/featpkg-busy-callback,requeue,"
        ),
        "{ext}"
    );
    for ctx in [
        "featpkg-busy-callback",
        "featpkg-busy-callback-cancel",
        "featpkg-busy-callback-dial",
    ] {
        assert!(
            pbx.asterisk_log()
                .lines()
                .any(|l| l == format!("dialplan show {ctx}")),
            "{ctx}"
        );
    }

    // DeviceStateChange events and DeviceStateList come from res_manager_devicestate:
    // without it the watcher would never see a phone become free.
    assert!(
        pbx.read_etc("modules.conf").contains(
            "; BEGIN featpkg:featpkg-recipes:busy-callback/modules\n\
             load => res_manager_devicestate.so\n\
             ; END featpkg:featpkg-recipes:busy-callback/modules\n"
        ),
        "{}",
        pbx.read_etc("modules.conf")
    );
    assert!(
        pbx.asterisk_log()
            .lines()
            .any(|l| l == "module load res_manager_devicestate.so"),
        "{}",
        pbx.asterisk_log()
    );

    pbx.ok(&["uninstall", "busy-callback"]);
    assert_same_tree(&before, &pbx.snapshot());
}

/// GET DATA treats `#` as the end of input and never returns it, so a `#`
/// callback digit could never be pressed: refused at install, nothing written.
#[test]
fn hash_as_the_callback_digit_is_refused() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.run(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
        "--set",
        "busy-callback.digit=#",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("parameter digit = \"#\" refused"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

//! End-to-end: what installing busy-callback puts on a plain Asterisk box, and
//! that every path its cron line and dialplan name is really there.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// The watcher's keep-alive line, from the one file featpkg wrote it to on
/// plain Asterisk (`tests/install.rs` pins which: its own file in
/// `/etc/cron.d`, or a block in `/etc/crontab`).
fn watcher_cron_line(pbx: &Pbx) -> String {
    let found: Vec<String> = ["etc/cron.d/featpkg-busy-callback", "etc/crontab"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(pbx.root().join(f)).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.contains("featpkg-busy-callback-watch"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(found.len(), 1, "one cron line: {found:?}");
    found[0].clone()
}

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

    let line = watcher_cron_line(&pbx);
    let line = line.as_str();
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
    // The callback's outcome settles the request: the callee answering (Dial's
    // U() on their channel) and every other end (h, with DIALSTATUS), with
    // the same retry rules as the watcher's.
    for line in [
        "exten => _X!,1,Dial(PJSIP/${EXTEN},30,U(featpkg-busy-callback-connected))",
        "exten => h,1,AGI(/var/lib/asterisk/agi-bin/featpkg-busy-callback,ended,dir=/var/spool/asterisk/featpkg/busy-callback,pattern=_XXX,expiry=1800,retries=1,retry_wait=60)",
        "exten => s,1,AGI(/var/lib/asterisk/agi-bin/featpkg-busy-callback,connected,dir=/var/spool/asterisk/featpkg/busy-callback,pattern=_XXX,expiry=1800)",
        " same => n,Return()",
    ] {
        assert!(ext.lines().any(|l| l == line), "no {line:?} in:\n{ext}");
    }
    assert!(!ext.contains("requeue"), "{ext}");
    assert!(
        line.contains(" --retries 1 --retry-wait 60 "),
        "the watcher follows the same rules: {line}"
    );
    for ctx in [
        "featpkg-busy-callback",
        "featpkg-busy-callback-cancel",
        "featpkg-busy-callback-dial",
        "featpkg-busy-callback-connected",
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

/// The suite proves the phones' technology with PJSIP and IAX2 only: DAHDI is
/// not offered (refused at install, nothing written); IAX2 reaches the dial
/// string and the watcher.
#[test]
fn tech_is_pjsip_or_iax2() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.run(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
        "--set",
        "busy-callback.tech=DAHDI",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("parameter tech = \"DAHDI\" refused"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());

    pbx.ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
        "--set",
        "busy-callback.tech=IAX2",
    ]);
    let ext = pbx.read_etc("extensions.conf");
    assert!(
        ext.lines().any(
            |l| l == "exten => _X!,1,Dial(IAX2/${EXTEN},30,U(featpkg-busy-callback-connected))"
        ),
        "{ext}"
    );
    let line = watcher_cron_line(&pbx);
    assert!(line.contains(" --tech IAX2 "), "{line}");
    pbx.ok(&["uninstall", "busy-callback"]);
    assert_same_tree(&before, &pbx.snapshot());
}

/// The watcher's credentials and AMI user follow where the PBX's AMI listens
/// (manager.conf `[general]` port and bindaddr), not a fixed 127.0.0.1:5038.
#[test]
fn the_watcher_connects_where_the_pbxs_ami_listens() {
    let pbx = Pbx::new();
    let manager = pbx.read_etc("manager.conf");
    let moved = manager.replacen(
        "port = 5038\nbindaddr = 127.0.0.1\n",
        "port = 15038\nbindaddr = 127.0.0.2\n",
        1,
    );
    assert_ne!(
        moved, manager,
        "the fixture's manager.conf sets port and bindaddr"
    );
    pbx.write_etc("manager.conf", moved.as_bytes());
    let bundle = bundle();
    pbx.ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "busy-callback",
    ]);
    let creds = pbx.read_etc("featpkg-ami/busy-callback.conf");
    assert!(creds.contains("\nhost=127.0.0.2\nport=15038\n"), "{creds}");
    let manager = pbx.read_etc("manager.conf");
    let user = manager
        .split("[featpkg-busy-callback]\n")
        .nth(1)
        .expect("AMI user");
    assert!(
        user.contains("permit = 127.0.0.2/255.255.255.255\n"),
        "{user}"
    );
}

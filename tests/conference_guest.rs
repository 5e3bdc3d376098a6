//! End-to-end: conference-guest needs its site-specific parameters, and with
//! them installs the leg context, the watcher, its AMI user and cron line.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use featpkg_ami::{Message, take_message};

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
    let line = cron_line(&pbx);
    assert!(
        line.contains(
            " --conference 700 --tech PJSIP --provider provider --number 0551234567 --attempts 5 --backoff-ms 2000 "
        ),
        "{line}"
    );
    // The watcher writes the dial string per technology: no ready-made one
    // (`--dial IAX2/<number>@<provider>` reached no IAX2 guest).
    assert!(!line.contains("--dial"), "{line}");
    assert!(
        pbx.root()
            .join("var/lib/asterisk/featpkg-bin/featpkg-conference-guest-watch")
            .is_file()
    );
    let manager = pbx.read_etc("manager.conf");
    assert!(
        manager.contains("[featpkg-conference-guest]\n"),
        "{manager}"
    );
    // Events in (class call); Originate, Hangup (call, not system) and
    // ConfbridgeList (reporting) out; nothing more.
    let user = manager
        .split("[featpkg-conference-guest]\n")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let rights: Vec<&str> = user
        .lines()
        .filter(|l| l.starts_with("read") || l.starts_with("write"))
        .collect();
    assert_eq!(
        rights,
        ["read = call", "write = originate,call,reporting"],
        "{user}"
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

#[test]
fn dahdi_is_offered_by_neither_conference_guest_nor_call_waiting() {
    // Only the technologies the suite proves on a real Asterisk: PJSIP, IAX2.
    let pbx = Pbx::new();
    let bundle = bundle();
    for (set, param) in [
        ("conference-guest.tech=DAHDI", "tech"),
        ("call-waiting.device_tech=DAHDI", "device_tech"),
    ] {
        let before = pbx.snapshot();
        let mut args = vec!["install", bundle.to_str().unwrap(), "--no-reload"];
        args.extend(SETS);
        args.extend(["--set", set]);
        let out = pbx.run(&args);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "parameter {param} = \"DAHDI\" refused: must be one of PJSIP, IAX2"
            )),
            "{set}: {}",
            text(&out)
        );
        assert_same_tree(&before, &pbx.snapshot());
    }
}

/// The watcher's installed cron line: in the feature's own cron.d file, or
/// (before cron lines moved there) in the system crontab.
fn cron_line(pbx: &Pbx) -> String {
    let cron_d = pbx.root().join("etc/cron.d/featpkg-conference-guest");
    let file = if cron_d.exists() {
        cron_d
    } else {
        pbx.root().join("etc/crontab")
    };
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines()
        .find(|l| l.contains("featpkg-conference-guest-watch"))
        .unwrap_or_else(|| panic!("no watcher line in {}:\n{text}", file.display()))
        .to_string()
}

/// Wire text of one AMI message.
fn wire(fields: &[(&str, &str)]) -> String {
    Message {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .to_wire()
}

/// Runs the installed watcher with the arguments of its installed crontab
/// line (its AMI login, lock and log moved into `tmp`) against a manager on
/// 127.0.0.1 that answers as Asterisk 22 does: an empty conference, then one
/// employee joins. Returns the Originate the watcher sends.
fn first_originate(pbx: &Pbx, tmp: &std::path::Path) -> Message {
    let line = cron_line(pbx);
    // minute hour day month weekday user program args… >/dev/null 2>&1
    let args: Vec<&str> = line
        .split_whitespace()
        .skip(7)
        .take_while(|a| !a.starts_with('>'))
        .collect();
    let installed = std::fs::read_to_string(
        pbx.root()
            .join("etc/asterisk/featpkg-ami/conference-guest.conf"),
    )
    .unwrap();
    let value = |key: &str| {
        installed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_string()
    };
    let (username, secret) = (value("username"), value("secret"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let creds = tmp.join("ami.conf");
    std::fs::write(
        &creds,
        format!(
            "port={}\nusername={username}\nsecret={secret}\n",
            listener.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut watcher = Command::new(
        pbx.root()
            .join("var/lib/asterisk/featpkg-bin/featpkg-conference-guest-watch"),
    )
    .args(&args)
    .arg("--ami")
    .arg(&creds)
    .arg("--lock")
    .arg(tmp.join("watch.lock"))
    .arg("--log")
    .arg(tmp.join("watch.log"))
    .spawn()
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the watcher never connected: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    stream
        .write_all(b"Asterisk Call Manager/11.0.0\r\n")
        .unwrap();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let originate = loop {
        assert!(Instant::now() < end, "no Originate came");
        let Some(action) = take_message(&mut buf).unwrap() else {
            match stream.read(&mut chunk) {
                Ok(0) => panic!("the watcher closed the connection"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            continue;
        };
        let id = action.get("ActionID").unwrap_or("").to_string();
        match action.get("Action").unwrap_or("") {
            "Login" => {
                assert_eq!(action.get("Username"), Some(username.as_str()));
                assert_eq!(action.get("Secret"), Some(secret.as_str()));
                let reply = wire(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Authentication accepted"),
                ]);
                stream.write_all(reply.as_bytes()).unwrap();
            }
            "ConfbridgeList" => {
                let reply = wire(&[
                    ("Response", "Error"),
                    ("ActionID", &id),
                    ("Message", "No active conferences."),
                ]);
                let joined = wire(&[
                    ("Event", "ConfbridgeJoin"),
                    ("Privilege", "call,all"),
                    ("Conference", "700"),
                    ("Channel", "PJSIP/201-00000001"),
                    ("CallerIDNum", "201"),
                    ("Admin", "No"),
                    ("Muted", "No"),
                ]);
                stream
                    .write_all(format!("{reply}{joined}").as_bytes())
                    .unwrap();
            }
            "Originate" => {
                let reply = wire(&[
                    ("Response", "Success"),
                    ("ActionID", &id),
                    ("Message", "Originate successfully queued"),
                ]);
                stream.write_all(reply.as_bytes()).unwrap();
                break action;
            }
            other => panic!("unexpected action {other}: {action:?}"),
        }
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(watcher.id().to_string())
        .status();
    let _ = watcher.wait();
    originate
}

#[test]
fn the_installed_watcher_dials_each_technology_its_own_way() {
    let bundle = bundle();
    for (tech, dial) in [
        ("PJSIP", "PJSIP/0551234567@provider"),
        ("IAX2", "IAX2/provider/0551234567"),
    ] {
        let pbx = Pbx::new();
        let set = format!("conference-guest.tech={tech}");
        let mut args = vec![
            "install",
            bundle.to_str().unwrap(),
            "--features",
            "conference-guest",
            "--no-reload",
        ];
        args.extend(SETS);
        args.extend(["--set", &set]);
        pbx.ok(&args);
        let line = cron_line(&pbx);
        assert!(
            line.contains(&format!(
                " --tech {tech} --provider provider --number 0551234567 "
            )),
            "{line}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let originate = first_originate(&pbx, tmp.path());
        assert_eq!(originate.get("Channel"), Some(dial), "{tech}");
        assert_eq!(
            originate.get("Context"),
            Some("featpkg-conference-guest-leg")
        );
    }
}

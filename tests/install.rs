//! End-to-end: install, reinstall, uninstall, hand edits, line endings, dry run,
//! status and verify, on a PBX tree in a temp dir with the real bundle.

mod common;

use common::*;

/// modules.conf after installing call-waiting alone.
const MODULES_AFTER: &str = ";
; Asterisk module loader configuration (admin's own file)
;
[modules]
autoload=yes
noload => chan_alsa.so
noload => res_hep.so
; BEGIN featpkg:featpkg-recipes:call-waiting/modules
load => func_extstate.so
; END featpkg:featpkg-recipes:call-waiting/modules
";

/// modules.conf after a bare install (every feature whose parameters have
/// defaults): two blocks at the end of [modules], one after the other.
const MODULES_AFTER_ALL: &str = ";
; Asterisk module loader configuration (admin's own file)
;
[modules]
autoload=yes
noload => chan_alsa.so
noload => res_hep.so
; BEGIN featpkg:featpkg-recipes:busy-callback/modules
load => res_manager_devicestate.so
; END featpkg:featpkg-recipes:busy-callback/modules
; BEGIN featpkg:featpkg-recipes:call-waiting/modules
load => func_extstate.so
; END featpkg:featpkg-recipes:call-waiting/modules
";

fn install(pbx: &Pbx, extra: &[&str]) -> String {
    let bundle = bundle();
    let mut args = vec!["install", bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    pbx.ok(&args)
}

#[test]
fn install_writes_the_expected_files() {
    let pbx = Pbx::new();
    let out = install(&pbx, &["--set", "call-waiting.endpoints=201,202"]);
    assert!(out.contains("install featpkg-recipes 1.0.0"), "{out}");
    assert!(out.contains("modified /etc/asterisk/modules.conf"), "{out}");
    assert!(
        out.contains("created  /var/lib/asterisk/agi-bin/featpkg-operator-alert"),
        "{out}"
    );

    assert_eq!(pbx.read_etc("modules.conf"), MODULES_AFTER_ALL);

    let ext = pbx.read_etc("extensions.conf");
    let original =
        std::fs::read_to_string(repo().join("tests/fixtures/pbx/etc/asterisk/extensions.conf"))
            .unwrap();
    assert!(
        ext.starts_with(&original),
        "admin's text must stay in front, untouched"
    );
    for line in [
        "; BEGIN featpkg:featpkg-recipes:call-waiting/dialplan",
        "[featpkg-call-waiting]",
        "exten => _X!,1,Set(FEATPKG_CW_EXT=${EXTENSION_STATE(${EXTEN}@internal-hints)})",
        " same => n,Set(FEATPKG_CW_DEV=${DEVICE_STATE(PJSIP/${EXTEN})})",
        " same => n,Set(DIAL_QUEUE_OPTIONS=${DIAL_QUEUE_OPTIONS}m(default))",
        "[internal-users-custom]",
        "exten => _X!,1,Gosub(featpkg-call-waiting,${EXTEN},1)",
        "; END featpkg:featpkg-recipes:call-waiting/dialplan",
        "; BEGIN featpkg:featpkg-recipes:operator-alert/dialplan",
        "exten => *600,1,AGI(/var/lib/asterisk/agi-bin/featpkg-operator-alert,menu,family=op_alert,pattern=_XXX,dir=/var/spool/asterisk/featpkg/operator-alert,deadline=5,maxrec=60,menu_sound=vm-tempgreeting2,record_sound=vm-rec-temp,saved_sound=auth-thankyou,deleted_sound=vm-tempremoved,empty_sound=vm-tooshort)",
        "exten => _X!,1,AGI(/var/lib/asterisk/agi-bin/featpkg-operator-alert,play,family=op_alert,pattern=_XXX,dir=/var/spool/asterisk/featpkg/operator-alert,deadline=5)",
        " same => n,Hangup()",
    ] {
        assert!(
            ext.lines().any(|l| l == line),
            "extensions.conf lacks {line:?}:\n{ext}"
        );
    }

    let pjsip = pbx.read_etc("pjsip.conf");
    assert!(
        pjsip.ends_with(
            "; BEGIN featpkg:featpkg-recipes:call-waiting/endpoints\n\
         [201](+type=endpoint)\ndevice_state_busy_at = 3\n\
         [202](+type=endpoint)\ndevice_state_busy_at = 3\n\
         ; END featpkg:featpkg-recipes:call-waiting/endpoints\n"
        ),
        "{pjsip}"
    );

    let agi = pbx
        .root()
        .join("var/lib/asterisk/agi-bin/featpkg-operator-alert");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&agi).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read(&agi).unwrap(),
        std::fs::read(static_bin_dir().join("featpkg-operator-alert")).unwrap()
    );

    // Reload went through the CLI forms that report failure, then checked our contexts.
    let log = pbx.asterisk_log();
    for cmd in [
        "module load func_extstate.so",
        "module reload res_pjsip.so",
        "module reload pbx_config.so",
        "dialplan show featpkg-call-waiting",
        "dialplan show internal-users-custom",
        "dialplan show featpkg-operator-alert-menu",
        "dialplan show featpkg-operator-alert-noanswer",
    ] {
        assert!(
            log.lines().any(|l| l == cmd),
            "asterisk was not asked {cmd:?}:\n{log}"
        );
    }
    assert!(
        !log.contains("dialplan reload"),
        "dialplan reload never reports failure: {log}"
    );
}

#[test]
fn install_again_changes_nothing() {
    let pbx = Pbx::new();
    install(&pbx, &[]);
    let before = pbx.snapshot();
    let mtimes: Vec<_> = ["modules.conf", "extensions.conf", "pjsip.conf"]
        .iter()
        .map(|f| std::fs::metadata(pbx.etc(f)).unwrap().modified().unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = install(&pbx, &[]);
    assert!(
        out.contains("featpkg-recipes 1.0.0 is up to date; nothing changed"),
        "{out}"
    );
    assert_same_tree(&before, &pbx.snapshot());
    let mtimes_after: Vec<_> = ["modules.conf", "extensions.conf", "pjsip.conf"]
        .iter()
        .map(|f| std::fs::metadata(pbx.etc(f)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(mtimes, mtimes_after);
}

#[test]
fn uninstall_restores_the_tree_byte_for_byte() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    install(&pbx, &["--set", "call-waiting.endpoints=201"]);
    let out = pbx.ok(&["uninstall", BUNDLE]);
    assert!(out.contains("uninstall featpkg-recipes 1.0.0"), "{out}");
    assert!(
        out.contains("removed  /var/lib/asterisk/agi-bin/featpkg-operator-alert"),
        "{out}"
    );
    assert_same_tree(&before, &pbx.snapshot());
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
}

#[test]
fn uninstalled_directories_we_created_are_removed() {
    let pbx = Pbx::new();
    std::fs::remove_dir_all(pbx.root().join("var/lib/asterisk/agi-bin")).unwrap();
    let before = pbx.snapshot();
    let out = install(&pbx, &[]);
    assert!(out.contains("created  /var/lib/asterisk/agi-bin/"), "{out}");
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn uninstall_one_feature_keeps_the_other() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    install(&pbx, &["--features", "operator-alert"]);
    let only_operator = pbx.snapshot();
    pbx.ok(&["uninstall", "featpkg-recipes"]);
    assert_same_tree(&before, &pbx.snapshot());

    install(&pbx, &["--features", "call-waiting,operator-alert"]);
    pbx.ok(&["uninstall", "call-waiting"]);
    assert_same_tree(&only_operator, &pbx.snapshot());
    let status = pbx.ok(&["status"]);
    assert!(
        status.contains("operator-alert") && !status.contains("call-waiting"),
        "{status}"
    );
}

#[test]
fn hand_edits_outside_our_blocks_survive_install_and_uninstall() {
    let pbx = Pbx::new();
    install(&pbx, &[]);
    let mut ext = pbx.read_etc("extensions.conf");
    ext = ext.replacen(
        "[internal]\n",
        "[internal]\n; admin note added after install\n",
        1,
    );
    ext.push_str("\n[admin-later]\nexten => 999,1,Hangup()\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    let out = pbx.ok(&["verify"]);
    assert!(out.contains("no drift"), "{out}");
    pbx.ok(&["uninstall", BUNDLE]);
    let after = pbx.read_etc("extensions.conf");
    assert!(after.contains("; admin note added after install\n"));
    assert!(
        after.ends_with("\n[admin-later]\nexten => 999,1,Hangup()\n"),
        "{after}"
    );
    assert!(!after.contains("featpkg"), "{after}");
}

#[test]
fn hand_edit_inside_our_block_blocks_uninstall_unless_forced() {
    let pbx = Pbx::new();
    install(&pbx, &[]);
    let ext = pbx.read_etc("extensions.conf").replace(
        " same => n,Playback(beep,noanswer)",
        " same => n,Playback(custom-beep,noanswer)",
    );
    pbx.write_etc("extensions.conf", ext.as_bytes());

    let verify = pbx.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        text(&verify).contains("/etc/asterisk/extensions.conf: modified call-waiting/dialplan"),
        "{}",
        text(&verify)
    );
    let json = pbx.run(&["verify", "--json"]);
    let drift: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(drift[0]["kind"], "modified");
    assert_eq!(drift[0]["edit"], "call-waiting/dialplan");

    let before = pbx.snapshot();
    let out = pbx.run(&["uninstall", BUNDLE]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("featpkg block call-waiting/dialplan was changed by hand"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_same_tree(&before, &pbx.snapshot());

    let out = pbx.ok(&["uninstall", BUNDLE, "--force"]);
    assert!(out.contains("overwritten (--force)"), "{out}");
    assert!(!pbx.read_etc("extensions.conf").contains("featpkg"));
}

#[test]
fn crlf_file_round_trips() {
    let pbx = Pbx::new();
    let crlf = pbx.read_etc("modules.conf").replace('\n', "\r\n");
    pbx.write_etc("modules.conf", crlf.as_bytes());
    let before = pbx.snapshot();
    install(&pbx, &["--features", "call-waiting"]);
    let during = pbx.read_etc("modules.conf");
    assert_eq!(
        during,
        MODULES_AFTER.replace('\n', "\r\n"),
        "our block must use the file's CRLF"
    );
    pbx.ok(&["verify"]);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn file_without_final_newline_round_trips() {
    let pbx = Pbx::new();
    let text = pbx.read_etc("modules.conf");
    pbx.write_etc("modules.conf", text.trim_end_matches('\n').as_bytes());
    let before = pbx.snapshot();
    install(&pbx, &["--features", "call-waiting"]);
    assert_eq!(pbx.read_etc("modules.conf"), MODULES_AFTER);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn dry_run_prints_a_diff_and_changes_nothing() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let bundle = bundle();
    let out = pbx.ok(&["install", bundle.to_str().unwrap(), "--dry-run"]);
    assert!(
        out.contains("--- a/etc/asterisk/modules.conf\n+++ b/etc/asterisk/modules.conf\n"),
        "{out}"
    );
    assert!(out.contains("+load => func_extstate.so\n"), "{out}");
    assert!(
        out.contains("binary file /var/lib/asterisk/agi-bin/featpkg-operator-alert: absent ->"),
        "{out}"
    );
    assert_same_tree(&before, &pbx.snapshot());
    assert!(
        pbx.asterisk_log().is_empty(),
        "a dry run must not reload Asterisk"
    );
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
}

#[test]
fn status_lists_features_and_parameters() {
    let pbx = Pbx::new();
    install(&pbx, &["--set", "call-waiting.busy_at=4"]);
    let out = pbx.ok(&["status"]);
    assert!(out.contains("featpkg-recipes 1.0.0"), "{out}");
    assert!(out.contains("    busy_at = 4 (set)"), "{out}");
    assert!(out.contains("    moh_class = default\n"), "{out}");
    let json = pbx.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["name"], BUNDLE);
    let cw = v[0]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "call-waiting")
        .unwrap();
    assert_eq!(cw["params"]["busy_at"], "4");
    assert_eq!(cw["user_params"]["busy_at"], "4");
}

#[test]
fn no_reload_says_so_and_does_not_call_asterisk() {
    let pbx = Pbx::new();
    let out = install(&pbx, &["--no-reload"]);
    assert!(out.contains("reload skipped (--no-reload)"), "{out}");
    assert!(pbx.asterisk_log().is_empty());
}

#[test]
fn default_asterisk_cli_is_found_on_path() {
    let pbx = Pbx::new();
    let bin = pbx.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        repo().join("tests/support/fake-asterisk"),
        bin.join("asterisk"),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let bundle = bundle();
    let out = pbx
        .command(&["install", bundle.to_str().unwrap()], &[("PATH", &path)])
        .env_remove("FEATPKG_ASTERISK_CMD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("module reload pbx_config.so: Module 'pbx_config.so' reloaded successfully."),
        "{}",
        text(&out)
    );
    assert!(
        pbx.asterisk_log()
            .lines()
            .any(|l| l == "dialplan show featpkg-call-waiting")
    );
}

#[test]
fn directories_come_from_asterisk_conf() {
    let pbx = Pbx::new();
    let root = pbx.root();
    std::fs::create_dir_all(root.join("opt/pbx")).unwrap();
    std::fs::rename(root.join("etc/asterisk"), root.join("opt/pbx/etc")).unwrap();
    std::fs::create_dir_all(root.join("opt/pbx/agi")).unwrap();
    std::fs::write(
        root.join("opt/pbx/etc/asterisk.conf"),
        "[directories](!)\nastetcdir => /opt/pbx/etc\nastagidir => /opt/pbx/agi\nastvarlibdir => /opt/pbx/lib\nastspooldir => /opt/pbx/spool\n",
    )
    .unwrap();
    let bundle = bundle();
    let out = pbx
        .command(
            &[
                "install",
                bundle.to_str().unwrap(),
                "--no-reload",
                "--asterisk-conf",
                "/opt/pbx/etc/asterisk.conf",
            ],
            &[],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("modified /opt/pbx/etc/extensions.conf"),
        "{}",
        text(&out)
    );
    assert!(root.join("opt/pbx/agi/featpkg-operator-alert").is_file());
    assert!(
        root.join("opt/pbx/lib/featpkg/state.db").is_file(),
        "state lives under astvarlibdir"
    );
    let ext = std::fs::read_to_string(root.join("opt/pbx/etc/extensions.conf")).unwrap();
    assert!(
        ext.contains("AGI(/opt/pbx/agi/featpkg-operator-alert,menu,"),
        "{ext}"
    );
    assert!(
        ext.contains("dir=/opt/pbx/spool/featpkg/operator-alert"),
        "{ext}"
    );
}

#[test]
fn non_utf8_bytes_before_our_section_round_trip() {
    // A cp1251/Latin-1 comment (not UTF-8) above [modules], and text after its
    // last entry: the block goes right after `noload => res_hep.so`, at a byte
    // offset counted in the file's own bytes.
    let pbx = Pbx::new();
    let original = pbx
        .read_etc("modules.conf")
        .into_bytes()
        .splitn(2, |&b| b == b'\n')
        .enumerate()
        .fold(Vec::new(), |mut out, (i, part)| {
            out.extend_from_slice(part);
            out.push(b'\n');
            if i == 0 {
                out.extend_from_slice(b"; \xcf\xf0\xe8\xe2\xe5\xf2 caf\xe9 (cp1251)\n");
            }
            out
        });
    let mut original = original[..original.len() - 1].to_vec();
    original.extend_from_slice(b"\n; the end \xe9\n");
    pbx.write_etc("modules.conf", &original);
    let before = pbx.snapshot();
    install(&pbx, &["--features", "call-waiting"]);
    let during = std::fs::read(pbx.etc("modules.conf")).unwrap();
    let block = b"noload => res_hep.so\n; BEGIN featpkg:featpkg-recipes:call-waiting/modules\nload => func_extstate.so\n; END featpkg:featpkg-recipes:call-waiting/modules\n\n; the end \xe9\n";
    assert!(
        during.ends_with(block),
        "{}",
        String::from_utf8_lossy(&during)
    );
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn a_block_featpkg_has_no_record_of_is_not_overwritten() {
    // The state database was lost (or restored from an old backup) while our
    // blocks stayed in the files: featpkg must not treat them as its own.
    let pbx = Pbx::new();
    install(&pbx, &["--features", "call-waiting"]);
    let state_dir = pbx.root().join("var/lib/asterisk/featpkg");
    std::fs::remove_dir_all(&state_dir).unwrap();
    // Untouched blocks, identical to what featpkg would write: taken back over.
    let before = pbx.snapshot();
    install(&pbx, &["--features", "call-waiting"]);
    assert_same_tree(&before, &pbx.snapshot());
    assert!(pbx.ok(&["verify"]).contains("no drift"));

    std::fs::remove_dir_all(&state_dir).unwrap();
    let modules = pbx.read_etc("modules.conf").replace(
        "load => func_extstate.so\n",
        "load => func_extstate.so\nload => res_admin_added.so\n",
    );
    pbx.write_etc("modules.conf", modules.as_bytes());
    let before = pbx.snapshot();
    let bundle = bundle();
    let args = [
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "call-waiting",
    ];
    let out = pbx.run(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "/etc/asterisk/modules.conf: featpkg block call-waiting/modules is in the file but featpkg has no record of it"
        ),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_same_tree(&before, &pbx.snapshot());

    let out = pbx.ok(&[&args[..], &["--force"]].concat());
    assert!(out.contains("overwritten (--force)"), "{out}");
    assert!(!pbx.read_etc("modules.conf").contains("res_admin_added"));
}

#[test]
fn glob_and_in_section_includes_are_followed_not_refused() {
    let pbx = Pbx::new();
    std::fs::create_dir(pbx.etc("pjsip.d")).unwrap();
    pbx.write_etc(
        "pjsip.d/301.conf",
        b"[301]\ntype = aor\n\n[301]\ntype = endpoint\n#include pjsip_301_options.conf\n",
    );
    pbx.write_etc(
        "pjsip_301_options.conf",
        b"context = internal\naors = 301\n",
    );
    let mut pjsip = pbx.read_etc("pjsip.conf");
    pjsip.push_str("\n#include <pjsip.d/*.conf>\n#tryinclude pjsip.nothing/*.conf\n");
    pbx.write_etc("pjsip.conf", pjsip.as_bytes());
    let before = pbx.snapshot();
    install(
        &pbx,
        &[
            "--features",
            "call-waiting",
            "--set",
            "call-waiting.endpoints=201,301",
        ],
    );
    assert!(
        pbx.read_etc("pjsip.conf")
            .contains("[301](+type=endpoint)\ndevice_state_busy_at = 3\n")
    );
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

// ---- Line endings and the final newline, in every uninstall order ----------
//
// Every block after the first one appended to a file lacking a final newline
// goes after that first block; whatever order the blocks then leave in (the
// whole bundle at once, one feature at a time forwards or backwards, after one
// install or several), the file must end exactly as it did.

/// Every feature, in the order a single install places their blocks.
const ALL_FEATURES: [&str; 5] = [
    "busy-callback",
    "call-waiting",
    "conference-guest",
    "operator-alert",
    "queue-failover",
];

/// Parameters that make every feature install and put a block in each shared
/// file (call-waiting's endpoints put one in pjsip.conf).
fn sets_for(feature: &str) -> &'static [&'static str] {
    match feature {
        "call-waiting" => &["--set", "call-waiting.endpoints=201"],
        "conference-guest" => &[
            "--set",
            "conference-guest.conference=700",
            "--set",
            "conference-guest.provider=provider",
            "--set",
            "conference-guest.number=0551234567",
        ],
        _ => &[],
    }
}

fn install_features(pbx: &Pbx, features: &[&str]) {
    let list = features.join(",");
    let mut args = vec!["--features", list.as_str()];
    for f in features {
        args.extend_from_slice(sets_for(f));
    }
    install(pbx, &args);
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    crlf: bool,
    final_newline: bool,
}

/// A PBX whose shared Asterisk files have `shape`.
fn shaped_pbx(shape: Shape) -> Pbx {
    let pbx = Pbx::new();
    for name in [
        "extensions.conf",
        "modules.conf",
        "manager.conf",
        "pjsip.conf",
    ] {
        let mut text = pbx.read_etc(name);
        if !shape.final_newline {
            text = text.trim_end_matches('\n').to_string();
        }
        if shape.crlf {
            text = text.replace('\n', "\r\n");
        }
        pbx.write_etc(name, text.as_bytes());
    }
    pbx
}

fn tail(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(40);
    format!("{:?}", String::from_utf8_lossy(&bytes[from..]))
}

/// The tree is back to `before`, every file byte for byte; says which order broke it.
fn assert_restored(
    what: &str,
    before: &std::collections::BTreeMap<String, (Vec<u8>, u32)>,
    pbx: &Pbx,
) {
    let after = pbx.snapshot();
    for (path, (bytes, _)) in before {
        if let Some((now, _)) = after.get(path) {
            assert!(
                now == bytes,
                "{what}: {path} is not restored byte for byte: it ends {}, it ended {}",
                tail(now),
                tail(bytes)
            );
        }
    }
    assert_same_tree(before, &after);
}

fn every_uninstall_order_restores(shape: Shape) {
    let label = |what: &str| format!("{shape:?}, {what}");
    // The blocks really go in after a line ending featpkg adds (or not).
    let pbx = shaped_pbx(shape);
    let original = pbx.read_etc("extensions.conf");
    install_features(&pbx, &ALL_FEATURES);
    let eol = if shape.crlf { "\r\n" } else { "\n" };
    let expected_start = if shape.final_newline {
        format!("{original}; BEGIN featpkg:")
    } else {
        format!("{original}{eol}; BEGIN featpkg:")
    };
    assert!(
        pbx.read_etc("extensions.conf").starts_with(&expected_start),
        "{}",
        label("blocks follow the admin's text")
    );

    // Each feature alone.
    for feature in ALL_FEATURES {
        let pbx = shaped_pbx(shape);
        let before = pbx.snapshot();
        install_features(&pbx, &[feature]);
        pbx.ok(&["uninstall", BUNDLE]);
        assert_restored(&label(&format!("{feature} alone")), &before, &pbx);
    }

    // The whole bundle, installed and removed at once.
    let pbx = shaped_pbx(shape);
    let before = pbx.snapshot();
    install_features(&pbx, &ALL_FEATURES);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_restored(&label("whole bundle"), &before, &pbx);

    // Installed at once, removed one feature at a time, backwards and forwards.
    for (what, order) in [
        (
            "reverse order",
            ALL_FEATURES.iter().rev().copied().collect::<Vec<_>>(),
        ),
        ("forward order", ALL_FEATURES.to_vec()),
    ] {
        let pbx = shaped_pbx(shape);
        let before = pbx.snapshot();
        install_features(&pbx, &ALL_FEATURES);
        for feature in order {
            pbx.ok(&["uninstall", feature]);
        }
        assert_restored(&label(what), &before, &pbx);
    }

    // Installed in separate transactions (each one's blocks after the last
    // one's), then removed at once, forwards, or backwards.
    for removal in ["bundle at once", "forward order", "reverse order"] {
        let pbx = shaped_pbx(shape);
        let before = pbx.snapshot();
        for feature in ALL_FEATURES {
            install_features(&pbx, &[feature]);
        }
        match removal {
            "bundle at once" => {
                pbx.ok(&["uninstall", BUNDLE]);
            }
            "forward order" => {
                for feature in ALL_FEATURES {
                    pbx.ok(&["uninstall", feature]);
                }
            }
            _ => {
                for feature in ALL_FEATURES.iter().rev() {
                    pbx.ok(&["uninstall", feature]);
                }
            }
        }
        assert_restored(
            &label(&format!("separate installs, then {removal}")),
            &before,
            &pbx,
        );
    }
}

#[test]
fn crlf_file_without_final_newline_is_restored_in_every_order() {
    every_uninstall_order_restores(Shape {
        crlf: true,
        final_newline: false,
    });
}

#[test]
fn lf_file_without_final_newline_is_restored_in_every_order() {
    every_uninstall_order_restores(Shape {
        crlf: false,
        final_newline: false,
    });
}

#[test]
fn crlf_file_with_final_newline_is_restored_in_every_order() {
    every_uninstall_order_restores(Shape {
        crlf: true,
        final_newline: true,
    });
}

#[test]
fn lf_file_with_final_newline_is_restored_in_every_order() {
    every_uninstall_order_restores(Shape {
        crlf: false,
        final_newline: true,
    });
}

#[test]
fn a_block_added_after_a_partial_uninstall_still_restores_the_file() {
    // The block that inherited the missing-final-newline fact is the one a
    // later install must append after: a mixed history ends byte for byte too.
    let pbx = shaped_pbx(Shape {
        crlf: true,
        final_newline: false,
    });
    let before = pbx.snapshot();
    install_features(&pbx, &["operator-alert", "queue-failover"]);
    pbx.ok(&["uninstall", "operator-alert"]);
    install_features(&pbx, &["operator-alert"]);
    pbx.ok(&["uninstall", "queue-failover"]);
    pbx.ok(&["uninstall", BUNDLE]);
    assert_restored("mixed history", &before, &pbx);
}

// ---- Cron lines on plain Asterisk: /etc/cron.d, never /etc/crontab -----------

const CONFERENCE_SETS: [&str; 6] = [
    "--set",
    "conference-guest.conference=700",
    "--set",
    "conference-guest.provider=provider",
    "--set",
    "conference-guest.number=0551234567",
];

#[test]
fn cron_lines_go_into_cron_d_files_of_their_own() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    install(&pbx, &CONFERENCE_SETS);
    assert_eq!(
        pbx.read("etc/crontab"),
        before["etc/crontab"].0,
        "a package never edits /etc/crontab"
    );
    for (feature, watcher) in [
        ("busy-callback", "featpkg-busy-callback-watch"),
        ("conference-guest", "featpkg-conference-guest-watch"),
    ] {
        let path = pbx.root().join(format!("etc/cron.d/featpkg-{feature}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            format!("# BEGIN featpkg:featpkg-recipes:{feature}/cron")
        );
        // cron.d has the user column, as /etc/crontab does.
        assert!(
            lines[1].starts_with(&format!(
                "* * * * * root /var/lib/asterisk/featpkg-bin/{watcher} "
            )) && lines[1].ends_with(" >/dev/null 2>&1"),
            "{text}"
        );
        assert_eq!(
            lines[2],
            format!("# END featpkg:featpkg-recipes:{feature}/cron")
        );
        assert!(text.ends_with('\n'), "cron wants a final newline");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "cron reads only root's files"
        );
    }
    // Debian's cron ignores names with a dot: nothing else of ours is in there.
    let names: Vec<String> = std::fs::read_dir(pbx.root().join("etc/cron.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')),
        "{names:?}"
    );
    assert!(pbx.ok(&["verify"]).contains("no drift"));

    // One feature out: its file goes, the other stays.
    pbx.ok(&["uninstall", "busy-callback"]);
    assert!(!pbx.root().join("etc/cron.d/featpkg-busy-callback").exists());
    assert!(
        pbx.root()
            .join("etc/cron.d/featpkg-conference-guest")
            .is_file()
    );
    // All out: the files and the cron.d directory featpkg created are gone.
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn install_works_without_etc_crontab() {
    let pbx = Pbx::new();
    std::fs::remove_file(pbx.root().join("etc/crontab")).unwrap();
    let before = pbx.snapshot();
    let out = install(&pbx, &[]);
    assert!(
        out.contains("created  /etc/cron.d/featpkg-busy-callback"),
        "{out}"
    );
    assert!(!pbx.root().join("etc/crontab").exists());
    assert!(pbx.ok(&["verify"]).contains("no drift"));
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn an_existing_cron_d_keeps_the_admins_files_and_our_file_takes_their_edits_along() {
    let pbx = Pbx::new();
    let cron_d = pbx.root().join("etc/cron.d");
    std::fs::create_dir_all(&cron_d).unwrap();
    std::fs::write(
        cron_d.join("admin-job"),
        "0 3 * * * root /usr/local/bin/backup\n",
    )
    .unwrap();
    let before = pbx.snapshot();
    install(&pbx, &["--features", "busy-callback"]);
    // The admin adds a line of their own to our file, outside our block.
    let ours = cron_d.join("featpkg-busy-callback");
    let mut text = std::fs::read_to_string(&ours).unwrap();
    text.push_str("# admin: also see /etc/cron.d/admin-job\n");
    std::fs::write(&ours, &text).unwrap();
    pbx.ok(&["uninstall", BUNDLE]);
    assert_eq!(
        std::fs::read_to_string(&ours).unwrap(),
        "# admin: also see /etc/cron.d/admin-job\n",
        "the admin's line stays, so the file does"
    );
    std::fs::remove_file(&ours).unwrap();
    assert_same_tree(&before, &pbx.snapshot());
}

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
        " same => n,Set(TRANSFER_OPTIONS=${TRANSFER_OPTIONS}m(default))",
        "[internal-users-custom]",
        "exten => _X!,1,Gosub(featpkg-call-waiting,${EXTEN},1)",
        "; END featpkg:featpkg-recipes:call-waiting/dialplan",
        "; BEGIN featpkg:featpkg-recipes:operator-alert/dialplan",
        "exten => *600,1,AGI(/var/lib/asterisk/agi-bin/featpkg-operator-alert,menu,family=op_alert,pattern=_XXX,dir=/var/spool/asterisk/featpkg/operator-alert,deadline=5,maxrec=60,menu_sound=vm-tempgreeting2,record_sound=vm-rec-temp,saved_sound=auth-thankyou,deleted_sound=vm-tempremoved)",
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

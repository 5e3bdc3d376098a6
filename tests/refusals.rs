//! End-to-end: every bad input is refused before anything is written, with a
//! message naming the thing and the rule, and a non-zero exit.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;

/// Runs featpkg and asserts: exit 2, the message contains `needle`, the tree is unchanged.
fn refused(pbx: &Pbx, args: &[&str], needle: &str) {
    let before = pbx.snapshot();
    let out = pbx.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    assert!(
        text(&out).contains(needle),
        "{args:?}: expected {needle:?} in:\n{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
    assert!(
        pbx.asterisk_log().is_empty(),
        "nothing may reach Asterisk: {}",
        pbx.asterisk_log()
    );
}

fn install_args(extra: &[&str]) -> Vec<String> {
    let mut v = vec!["install".to_string(), bundle().display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn refused_install(pbx: &Pbx, extra: &[&str], needle: &str) {
    let args = install_args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(pbx, &args, needle);
}

#[test]
fn unknown_feature() {
    refused_install(
        &Pbx::new(),
        &["--features", "call-forking"],
        "unknown feature \"call-forking\"",
    );
}

#[test]
fn unknown_parameter() {
    refused_install(
        &Pbx::new(),
        &["--set", "call-waiting.colour=blue"],
        "feature call-waiting: unknown parameter \"colour\"",
    );
}

#[test]
fn badly_typed_parameters() {
    let pbx = Pbx::new();
    refused_install(
        &pbx,
        &["--set", "operator-alert.operator_pattern=_X."],
        "parameter operator_pattern = \"_X.\" refused",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.endpoints=201,2 02"],
        "parameter endpoints",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.hook_context=a]b"],
        "parameter hook_context = \"a]b\" refused: a context name may contain only letters",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.hook_context=a,b"],
        "parameter hook_context = \"a,b\" refused",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.beep_sound=../../etc/passwd"],
        "must not contain '/' or '..'",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.beep_sound=custom/beep"],
        "must not contain '/' or '..'",
    );
    refused_install(
        &pbx,
        &["--set", "call-waiting.busy_at=1"],
        "must be a whole number from 2 to 32",
    );
    refused_install(
        &pbx,
        &["--set", "operator-alert.service_code=*6;00"],
        "a service code must be",
    );
    refused_install(
        &pbx,
        &["--set", "operator-alert.fallback=ctx,1;0,1"],
        "parameter fallback",
    );
    refused_install(
        &pbx,
        &["--set", "nofeature"],
        "expected feature.param=value",
    );
}

#[test]
fn general_and_globals_are_not_context_names() {
    // Asterisk reads [general] and [globals] (strcasecmp) as settings and global
    // variables: the block's `exten=`/`same=` lines would become variables in
    // the running PBX even after a failed reload was rolled back.
    let pbx = Pbx::new();
    for value in ["globals", "general", "GLOBALS", "General"] {
        refused_install(
            &pbx,
            &["--set", &format!("queue-failover.context={value}")],
            &format!(
                "feature queue-failover: parameter context = \"{value}\" refused: \"{value}\" is not a context name: extensions.conf's [general] and [globals] sections"
            ),
        );
    }
    refused_install(
        &pbx,
        &["--set", "call-waiting.hook_context=Globals"],
        "parameter hook_context = \"Globals\" refused: \"Globals\" is not a context name",
    );
    // As the context of a destination, too.
    refused_install(
        &pbx,
        &["--set", "queue-failover.default=globals,200,1"],
        "parameter default = \"globals,200,1\" refused: a destination must be context,exten,priority: context: \"globals\" is not a context name",
    );
    // Names that merely contain the words are contexts like any other.
    pbx.ok(&[
        "install",
        bundle().to_str().unwrap(),
        "--features",
        "queue-failover",
        "--set",
        "queue-failover.context=globals-failover",
        "--no-reload",
    ]);
}

/// A feature whose template opens a context named by a `word` parameter (a
/// type that does not know about contexts), so only the planner stands between
/// `[globals]` and extensions.conf.
fn add_word_context_feature(src: &Path) {
    let dir = src.join("packaging/features/demo-ctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("feature.json"),
        r##"{"id": "demo-ctx", "version": "1.0.0", "summary": "test: a context named by a word parameter",
            "params": [{"name": "ctx", "type": "word", "default": "demo-ctx", "help": "context"}],
            "edits": [
              {"kind": "block", "id": "dialplan", "file": "etc:extensions.conf", "template": "extensions.conf", "check": "dialplan"}
            ]}"##,
    )
    .unwrap();
    std::fs::write(
        dir.join("extensions.conf"),
        "; demo\n[demo-ctx-entry]\nexten => 1,1,Goto(%{ctx},1,1)\n[%{ctx}]\nexten => _X!,1,NoOp(demo)\n same => n,Hangup()\n",
    )
    .unwrap();
}

#[test]
fn a_dialplan_block_opening_general_or_globals_is_refused_by_the_planner() {
    let (_d, archive) = bundle_with_version("1.0.0", add_word_context_feature);
    let archive = archive.to_str().unwrap();
    let pbx = Pbx::new();
    for value in ["globals", "GENERAL"] {
        refused(
            &pbx,
            &[
                "install",
                archive,
                "--features",
                "demo-ctx",
                "--set",
                &format!("demo-ctx.ctx={value}"),
            ],
            &format!(
                "/etc/asterisk/extensions.conf: block demo-ctx/dialplan, line 4: [{value}] is not a context"
            ),
        );
    }
    // The same feature with a real context name installs.
    pbx.ok(&[
        "install",
        archive,
        "--features",
        "demo-ctx",
        "--set",
        "demo-ctx.ctx=demo-target",
        "--no-reload",
    ]);
}

/// The demo-ctx feature with its context's header rewritten to `header`.
fn add_inheriting_context_feature(src: &Path, header: &str) {
    add_word_context_feature(src);
    let path = src.join("packaging/features/demo-ctx/extensions.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("[%{ctx}]\n", &format!("{header}\n"))).unwrap();
}

#[test]
fn a_context_inheriting_from_a_section_that_does_not_exist_is_refused() {
    // Asterisk rejects the whole extensions.conf for it (main/config.c:
    // "Inheritance requested, but category … does not exist").
    for (header, line, parent) in [
        ("[%{ctx}](demo-missing-tpl)", 4, "demo-missing-tpl"),
        // A template defined only after the context that inherits from it.
        (
            "[%{ctx}](demo-later-tpl)\n[demo-later-tpl](!)",
            4,
            "demo-later-tpl",
        ),
    ] {
        let (_d, archive) =
            bundle_with_version("1.0.0", |src| add_inheriting_context_feature(src, header));
        refused(
            &Pbx::new(),
            &[
                "install",
                archive.to_str().unwrap(),
                "--features",
                "demo-ctx",
            ],
            &format!(
                "featpkg block demo-ctx/dialplan:{line}: [demo-ctx] inherits from [{parent}], but no [{parent}] section exists before it (Asterisk would reject the whole file)"
            ),
        );
    }
    // Asterisk takes any earlier section as a parent, template or not, in any
    // case: so does the planner.
    let (_d, archive) = bundle_with_version("1.0.0", |src| {
        add_inheriting_context_feature(src, "[demo-tpl](!)\n[%{ctx}](DEMO-TPL,demo-ctx-entry)")
    });
    Pbx::new().ok(&[
        "install",
        archive.to_str().unwrap(),
        "--features",
        "demo-ctx",
        "--no-reload",
    ]);
}

#[test]
fn missing_asterisk_conf() {
    let pbx = Pbx::new();
    std::fs::remove_file(pbx.etc("asterisk.conf")).unwrap();
    refused_install(&pbx, &[], "asterisk.conf not found at");
    refused_install(
        &pbx,
        &["--asterisk-conf", "/opt/pbx/asterisk.conf"],
        "opt/pbx/asterisk.conf",
    );
}

#[test]
fn orphan_marker_is_drift_and_nothing_is_written() {
    let pbx = Pbx::new();
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("; BEGIN featpkg:featpkg-recipes:call-waiting/dialplan\n[half]\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(&pbx, &[], "/etc/asterisk/extensions.conf: line 16");
}

#[test]
fn collision_with_an_existing_priority_names_file_and_line() {
    let pbx = Pbx::new();
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("\n[internal-users-custom]\nexten => _X!,1,NoOp(admin's own hook)\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(&pbx, &[], "extensions.conf:18");
}

#[test]
fn collision_inside_an_included_file_is_found_too() {
    let pbx = Pbx::new();
    pbx.write_etc(
        "extensions_local.conf",
        b"[featpkg-operator-alert-menu]\nexten => *600,1,NoOp(taken)\n",
    );
    refused_install(&pbx, &[], "extensions_local.conf:2");
}

#[test]
fn load_of_a_module_the_admin_noloads() {
    let pbx = Pbx::new();
    let mut m = pbx.read_etc("modules.conf");
    m.push_str("noload => func_extstate.so\n");
    pbx.write_etc("modules.conf", m.as_bytes());
    refused_install(&pbx, &[], "modules.conf:8");
}

#[test]
fn pjsip_append_to_an_endpoint_that_does_not_exist() {
    refused_install(
        &Pbx::new(),
        &["--set", "call-waiting.endpoints=201,299"],
        "299",
    );
}

/// Rewrites the bundle, letting `change` edit the entry list (name, bytes, is_symlink).
fn tampered(
    change: impl FnOnce(&mut Vec<(String, Vec<u8>, bool)>),
) -> (tempfile::TempDir, PathBuf) {
    let mut entries = Vec::new();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle()).unwrap()).unwrap();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        entries.push((f.name().unwrap().to_string(), bytes, false));
    }
    change(&mut entries);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.zip");
    write_zip(&path, &entries);
    (dir, path)
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>, bool)]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes, symlink) in entries {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        if *symlink {
            w.add_symlink(name.as_str(), String::from_utf8_lossy(bytes).as_ref(), opts)
                .unwrap();
        } else {
            w.start_file(name.as_str(), opts).unwrap();
            w.write_all(bytes).unwrap();
        }
    }
    w.finish().unwrap();
}

fn refused_archive(path: &Path, needle: &str) {
    let pbx = Pbx::new();
    refused(&pbx, &["install", path.to_str().unwrap()], needle);
}

#[test]
fn archive_entry_that_does_not_match_its_hash() {
    let (_d, path) = tampered(|entries| {
        let e = entries
            .iter_mut()
            .find(|e| e.0 == "features/call-waiting/extensions.conf")
            .unwrap();
        e.1.extend_from_slice(b"exten => _X!,2,System(rm -rf /)\n");
    });
    refused_archive(&path, "features/call-waiting/extensions.conf");
}

#[test]
fn archive_entry_with_dotdot() {
    let (_d, path) =
        tampered(|entries| entries.push(("../../etc/evil.conf".into(), b"x".to_vec(), false)));
    refused_archive(&path, "../../etc/evil.conf");
}

#[test]
fn archive_entry_with_absolute_path() {
    let (_d, path) =
        tampered(|entries| entries.push(("/etc/evil.conf".into(), b"x".to_vec(), false)));
    refused_archive(&path, "/etc/evil.conf");
}

#[test]
fn archive_entry_that_is_a_symlink() {
    let (_d, path) = tampered(|entries| {
        entries.push((
            "features/call-waiting/link".into(),
            b"/etc/passwd".to_vec(),
            true,
        ))
    });
    refused_archive(&path, "features/call-waiting/link");
}

#[test]
fn archive_entry_not_in_the_manifest() {
    let (_d, path) = tampered(|entries| {
        entries.push((
            "features/call-waiting/extra.conf".into(),
            b"x".to_vec(),
            false,
        ))
    });
    refused_archive(&path, "features/call-waiting/extra.conf");
}

#[test]
fn not_a_zip_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.zip");
    std::fs::write(&path, b"this is not a zip archive").unwrap();
    refused_archive(&path, "junk.zip");
}

#[test]
fn include_outside_the_config_directory_is_not_followed() {
    let pbx = Pbx::new();
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("#include /root/elsewhere.conf\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(&pbx, &[], "#include \"/root/elsewhere.conf\"");
}

#[test]
fn an_included_link_leading_outside_the_config_directory_is_not_followed() {
    // Under --root an absolute link target is the host's own file, not the PBX
    // tree's: the checks must not read it.
    let pbx = Pbx::new();
    let outside = pbx.root().join("elsewhere.conf");
    std::fs::write(&outside, "[internal-users-custom]\nexten => _X!,1,NoOp()\n").unwrap();
    std::os::unix::fs::symlink(&outside, pbx.etc("extensions_local.conf")).unwrap();
    refused_install(
        &pbx,
        &[],
        "outside /etc/asterisk; featpkg's checks only follow includes inside the config directory",
    );
}

#[test]
fn a_symlinked_config_file_is_refused_and_stays_a_link() {
    // Writing through rename would replace the admin's link with a copy (and the
    // link's own mode 0777); following it could write outside the PBX tree.
    let pbx = Pbx::new();
    let real = pbx.root().join("etc/modules.conf.real");
    std::fs::rename(pbx.etc("modules.conf"), &real).unwrap();
    std::os::unix::fs::symlink("../modules.conf.real", pbx.etc("modules.conf")).unwrap();
    refused_install(
        &pbx,
        &["--features", "call-waiting"],
        "/etc/asterisk/modules.conf is a symbolic link (to ../modules.conf.real)",
    );
    let meta = std::fs::symlink_metadata(pbx.etc("modules.conf")).unwrap();
    assert!(meta.file_type().is_symlink());
}

#[test]
fn collision_inside_a_glob_included_file_is_found() {
    let pbx = Pbx::new();
    std::fs::create_dir(pbx.etc("extensions.d")).unwrap();
    pbx.write_etc(
        "extensions.d/05-other.conf",
        b"[other]\nexten => 1,1,NoOp()\n",
    );
    pbx.write_etc(
        "extensions.d/10-admin.conf",
        b"[internal-users-custom]\nexten => _X!,1,NoOp(admin hook)\n",
    );
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("#INCLUDE \"extensions.d/*.conf\"\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(
        &pbx,
        &[],
        "extensions.d/10-admin.conf:2: [internal-users-custom] already has exten _X! priority 1",
    );
}

#[test]
fn collision_in_an_include_that_continues_the_current_section() {
    // Asterisk splices an included file in place: lines before its first
    // header belong to the section the #include is in.
    let pbx = Pbx::new();
    pbx.write_etc(
        "hooks.conf",
        b"; the admin's hook lines\nexten => _X!,1,NoOp(admin hook)\n",
    );
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("\n[internal-users-custom]\n#include hooks.conf\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(
        &pbx,
        &[],
        "hooks.conf:2: [internal-users-custom] already has exten _X! priority 1",
    );
}

#[test]
fn a_block_comment_left_open_at_the_end_of_the_file_is_refused() {
    // Asterisk ignores everything after an unclosed `;--` (with only a log
    // warning): a block appended there would be dead text.
    let pbx = Pbx::new();
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str(";-- the old hook, kept for reference\n[old]\nexten => 1,1,NoOp()\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    refused_install(
        &pbx,
        &["--features", "call-waiting"],
        "/etc/asterisk/extensions.conf: line 16: block comment ';--' is never closed",
    );
}

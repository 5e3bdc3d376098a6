//! End-to-end: every failure leaves the PBX tree byte-identical to before —
//! reload failures, injected failures, kill -9 at several instants, a second
//! concurrent run — plus upgrade and rollback.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

// A full install is, in order: steps 1-3 create /etc/asterisk/featpkg-ami,
// /etc/cron.d (missing in the fixture) and /var/lib/asterisk/featpkg-bin, steps
// 4-10 busy-callback's files (modules.conf, AGI program, watcher,
// extensions.conf, manager.conf, AMI credentials, /etc/cron.d/featpkg-busy-callback),
// then operator-alert's AGI program. The points below land in each kind.
fn bundle_arg() -> String {
    bundle().display().to_string()
}

#[test]
fn reload_failure_rolls_everything_back() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let out = pbx.run_env(
        &["install", &bundle_arg()],
        &[("FAKE_ASTERISK_FAIL_RELOAD", "pbx_config.so")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("reload failed, every change was rolled back"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("module reload pbx_config.so"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
    // Asterisk was reloaded again on the restored files.
    let reloads = pbx
        .asterisk_log()
        .lines()
        .filter(|l| *l == "module reload pbx_config.so")
        .count();
    assert_eq!(reloads, 2, "{}", pbx.asterisk_log());
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
}

#[test]
fn missing_context_after_reload_rolls_back() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let out = pbx.run_env(
        &["install", &bundle_arg()],
        &[("FAKE_ASTERISK_HIDE_CONTEXTS", "featpkg-operator-alert-menu")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("context [featpkg-operator-alert-menu] does not exist"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn module_load_failure_rolls_back() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let out = pbx.run_env(
        &["install", &bundle_arg()],
        &[("FAKE_ASTERISK_FAIL_LOAD", "func_extstate.so")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("module load func_extstate.so"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

/// The Asterisk CLI for the module tests below: tests/support/fake-asterisk
/// for everything but modules, which this wrapper (written into the PBX's temp
/// dir) models itself, so that these tests do not depend on how the shared
/// fake models them (the committed one has no `module unload`). Its answers are
/// Asterisk 22's (main/cli.c handle_load, handle_unload, handle_modlist): a
/// module listed in `$WRAPPED_DECLINE` declines to load and stays listed "Not
/// Running" until unloaded; one in `$WRAPPED_MISSING` has no file. State:
/// `<dir>/wrapped/running` and `…/declined`, one module a line.
fn with_module_model(pbx: &Pbx) -> String {
    use std::os::unix::fs::PermissionsExt;
    let fake = repo().join("tests/support/fake-asterisk");
    let state = pbx.dir.path().join("wrapped");
    std::fs::create_dir_all(&state).unwrap();
    let path = pbx.dir.path().join("asterisk-modules");
    let script = format!(
        r#"#!/usr/bin/env bash
state={state}
cmd=""
args=("$@")
while [ $# -gt 0 ]; do case "$1" in -rx) cmd="$2"; shift 2 ;; *) shift ;; esac; done
read -r -a w <<< "$cmd"
case "${{w[0]:-}} ${{w[1]:-}}" in
"module show"|"module load"|"module unload") ;;
*) exec {fake} "${{args[@]}}" ;;
esac
[ -n "${{FAKE_ASTERISK_LOG:-}}" ] && printf '%s
' "$cmd" >> "$FAKE_ASTERISK_LOG"
if [ "${{FAKE_ASTERISK_DOWN:-0}}" = 1 ]; then
    echo "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)" >&2
    exit 1
fi
touch "$state/running" "$state/declined"
in_list() {{ [[ ",${{2:-}}," == *",$1,"* ]]; }}
has() {{ grep -qxF "$1" "$state/$2"; }}
drop() {{ grep -vxF "$1" "$state/$2" > "$state/$2.tmp"; mv "$state/$2.tmp" "$state/$2"; }}
m="${{w[2]:-}}"
case "${{w[1]}}" in
show)
    printf '%-30s %-40.40s %-10s %-11s %13s
' Module Description "Use Count" Status "Support Level"
    n=0
    for f in running declined; do
        while read -r x; do
            [[ "$x" == *"${{w[3]:-}}"* ]] || continue
            status=Running; [ $f = declined ] && status="Not Running"
            printf '%-30s %-40.40s %-10d %-11s %13s
' "$x" "a module" 0 "$status" core
            n=$((n + 1))
        done < "$state/$f"
    done
    echo "$n modules loaded" ;;
load)
    if has "$m" running || in_list "$m" "${{WRAPPED_MISSING:-}}"; then
        echo "Unable to load module $m"; echo "Command 'module load $m' failed."
    elif in_list "$m" "${{WRAPPED_DECLINE:-}}"; then
        has "$m" declined || echo "$m" >> "$state/declined"
        echo "Unable to load module $m"; echo "Command 'module load $m' failed."
    else
        drop "$m" declined; echo "$m" >> "$state/running"; echo "Loaded $m"
    fi ;;
unload)
    if has "$m" running || has "$m" declined; then
        drop "$m" running; drop "$m" declined; echo "Unloaded $m"
    else
        echo "Unable to unload resource $m"; echo "Command 'module unload $m' failed."
    fi ;;
esac
exit 0
"#,
        state = state.display(),
        fake = fake.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The modules the wrapped Asterisk lists now (running, then declined).
fn loaded_modules(pbx: &Pbx) -> Vec<String> {
    ["running", "declined"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(pbx.dir.path().join("wrapped").join(f))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The fake Asterisk's log from line `from` on, without the `module show` checks.
fn actions_since(pbx: &Pbx, from: usize) -> Vec<String> {
    pbx.asterisk_log()
        .lines()
        .skip(from)
        .filter(|l| !l.starts_with("module show like") && !l.starts_with("dialplan show"))
        .map(str::to_string)
        .collect()
}

// A default install loads res_manager_devicestate.so (busy-callback), then
// func_extstate.so (call-waiting); conference-guest is skipped without its
// parameters.

#[test]
fn a_failed_reload_unloads_what_the_install_loaded_last_first() {
    let pbx = Pbx::new();
    let cli = with_module_model(&pbx);
    let before = pbx.snapshot();
    let out = pbx.run_env(
        &["install", &bundle_arg()],
        &[
            ("FEATPKG_ASTERISK_CMD", &cli),
            ("FAKE_ASTERISK_HIDE_CONTEXTS", "notify-queue-failover"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "reload failed, every change was rolled back (and the modules it had loaded unloaded again: func_extstate.so, res_manager_devicestate.so): after reload, context [notify-queue-failover] does not exist"
        ),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("by hand"), "{}", text(&out));
    assert_same_tree(&before, &pbx.snapshot());
    // The restored files are reloaded first, then the modules go, last loaded first.
    assert_eq!(
        actions_since(&pbx, 0),
        [
            "module load res_manager_devicestate.so",
            "module load func_extstate.so",
            "manager reload",
            "module reload pbx_config.so",
            "manager reload",
            "module reload pbx_config.so",
            "module unload func_extstate.so",
            "module unload res_manager_devicestate.so",
        ],
        "{}",
        pbx.asterisk_log()
    );
    assert!(
        loaded_modules(&pbx).is_empty(),
        "{:?}",
        loaded_modules(&pbx)
    );
    assert!(pbx.ok(&["recover"]).contains("nothing to recover"));
}

#[test]
fn a_module_that_was_running_before_the_install_is_left_alone() {
    let pbx = Pbx::new();
    let cli = with_module_model(&pbx);
    std::fs::write(pbx.dir.path().join("wrapped/running"), "func_extstate.so\n").unwrap();
    let out = pbx.run_env(
        &["install", &bundle_arg()],
        &[
            ("FEATPKG_ASTERISK_CMD", &cli),
            ("FAKE_ASTERISK_FAIL_RELOAD", "pbx_config.so"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("(and the modules it had loaded unloaded again: res_manager_devicestate.so): `module reload pbx_config.so` failed"),
        "{}",
        text(&out)
    );
    let log = pbx.asterisk_log();
    assert!(!log.contains("module load func_extstate.so"), "{log}");
    assert!(!log.contains("module unload func_extstate.so"), "{log}");
    assert_eq!(loaded_modules(&pbx), ["func_extstate.so"]);
}

#[test]
fn a_module_load_that_fails_unloads_the_ones_loaded_before_it() {
    // A module with no file is not listed after its failed load: nothing to
    // unload. One whose load() declined stays listed "Not Running" (as
    // Asterisk lists it): unloaded too, so that no trace of the try is left.
    for (knob, unloads) in [
        ("WRAPPED_MISSING", &["res_manager_devicestate.so"][..]),
        (
            "WRAPPED_DECLINE",
            &["func_extstate.so", "res_manager_devicestate.so"][..],
        ),
    ] {
        let pbx = Pbx::new();
        let cli = with_module_model(&pbx);
        let before = pbx.snapshot();
        let out = pbx.run_env(
            &["install", &bundle_arg()],
            &[("FEATPKG_ASTERISK_CMD", &cli), (knob, "func_extstate.so")],
        );
        assert_eq!(out.status.code(), Some(2), "{knob}: {}", text(&out));
        assert!(
            text(&out).contains("`module load func_extstate.so` failed: Unable to load module"),
            "{knob}: {}",
            text(&out)
        );
        assert_same_tree(&before, &pbx.snapshot());
        // func_extstate.so was recorded before its load was tried; what is
        // unloaded goes once Asterisk is back on the restored files.
        let mut expected = vec![
            "module load res_manager_devicestate.so".to_string(),
            "module load func_extstate.so".into(),
            "manager reload".into(),
            "module reload pbx_config.so".into(),
        ];
        expected.extend(unloads.iter().map(|m| format!("module unload {m}")));
        assert_eq!(
            actions_since(&pbx, 0),
            expected,
            "{knob}: {}",
            pbx.asterisk_log()
        );
        assert!(loaded_modules(&pbx).is_empty(), "{knob}");
    }
}

#[test]
fn an_install_killed_after_its_reload_is_recovered_with_its_modules_unloaded() {
    let pbx = Pbx::new();
    let cli = with_module_model(&pbx);
    let before = pbx.snapshot();
    kill_at(
        &pbx,
        &["install", &bundle_arg()],
        "before-state-commit",
        &[("FEATPKG_ASTERISK_CMD", &cli)],
    );
    // What the killed run journalled, each line before it acted.
    let journals: Vec<_> = std::fs::read_dir(pbx.root().join("var/lib/asterisk/featpkg/journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    assert_eq!(
        std::fs::read_to_string(journals[0].join("pbx.log")).unwrap(),
        "reload\nload res_manager_devicestate.so\nload func_extstate.so\n"
    );
    assert_eq!(
        loaded_modules(&pbx),
        ["res_manager_devicestate.so", "func_extstate.so"]
    );
    let from = pbx.asterisk_log().lines().count();
    let out = pbx.run_env(&["recover"], &[("FEATPKG_ASTERISK_CMD", &cli)]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("rolled back"), "{said}");
    assert!(
        said.contains("module unload func_extstate.so: Unloaded func_extstate.so")
            && said.contains(
                "module unload res_manager_devicestate.so: Unloaded res_manager_devicestate.so"
            ),
        "{said}"
    );
    assert!(!said.contains("by hand"), "{said}");
    assert_same_tree(&before, &pbx.snapshot());
    assert_eq!(
        actions_since(&pbx, from),
        [
            "manager reload",
            "module reload pbx_config.so",
            "module unload func_extstate.so",
            "module unload res_manager_devicestate.so",
        ],
        "{}",
        pbx.asterisk_log()
    );
    assert!(loaded_modules(&pbx).is_empty());
    assert!(!journals[0].exists());
}

#[test]
fn an_install_killed_before_its_reload_is_recovered_without_touching_asterisk() {
    let pbx = Pbx::new();
    let cli = with_module_model(&pbx);
    kill_at(
        &pbx,
        &["install", &bundle_arg()],
        "applied",
        &[("FEATPKG_ASTERISK_CMD", &cli)],
    );
    let journals: Vec<_> = std::fs::read_dir(pbx.root().join("var/lib/asterisk/featpkg/journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!journals[0].join("pbx.log").exists());
    let from = pbx.asterisk_log().lines().count();
    let out = pbx.run_env(&["recover"], &[("FEATPKG_ASTERISK_CMD", &cli)]);
    assert!(out.status.success(), "{}", text(&out));
    // The files were put back before Asterisk ever read them: reloading them
    // again is harmless (and what recovery has always done); nothing to unload.
    assert!(
        !actions_since(&pbx, from)
            .iter()
            .any(|l| l.starts_with("module unload")),
        "{}",
        pbx.asterisk_log()
    );
}

#[test]
fn injected_failure_after_some_files_were_written_rolls_back() {
    for point in [
        "step-1-done",
        "step-4-temp",
        "step-6-done",
        "step-9-temp",
        "applied",
        "before-state-commit",
    ] {
        let pbx = Pbx::new();
        let before = pbx.snapshot();
        let out = pbx.run_env(
            &["install", &bundle_arg()],
            &[("FEATPKG_TEST_FAIL_AT", point)],
        );
        assert_eq!(out.status.code(), Some(2), "{point}: {}", text(&out));
        assert_same_tree(&before, &pbx.snapshot());
        assert!(pbx.ok(&["status"]).contains("nothing installed"), "{point}");
        // No journal is left behind: nothing to recover.
        assert!(
            pbx.ok(&["recover"]).contains("nothing to recover"),
            "{point}"
        );
    }
}

/// Starts featpkg with a pause at `point`, waits until it is there, kills it with SIGKILL.
fn kill_at(pbx: &Pbx, args: &[&str], point: &str, env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("FEATPKG_TEST_PAUSE_AT", point));
    let mut child = pbx
        .command(args, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(&format!("paused at {point}")) {
            break;
        }
    }
    assert!(
        seen.contains("paused at"),
        "featpkg never reached {point}: {seen}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn killed_install_is_rolled_back_by_the_next_command() {
    for point in [
        "journal-written",
        "step-2-done",
        "step-4-temp",
        "step-6-done",
        "step-10-temp",
        "applied",
        "before-state-commit",
    ] {
        let pbx = Pbx::new();
        let before = pbx.snapshot();
        kill_at(&pbx, &["install", &bundle_arg()], point, &[]);
        // Any command recovers first; status is the least intrusive.
        let out = pbx.run(&["status"]);
        assert!(out.status.success(), "{point}: {}", text(&out));
        assert!(
            text(&out).contains("rolled back"),
            "{point}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains("nothing installed"),
            "{point}: {}",
            text(&out)
        );
        assert_same_tree(&before, &pbx.snapshot());
    }
}

#[test]
fn killed_uninstall_is_rolled_back_by_recover() {
    let pbx = Pbx::new();
    pbx.ok(&["install", &bundle_arg()]);
    let installed = pbx.snapshot();
    let reloads_before = pbx
        .asterisk_log()
        .lines()
        .filter(|l| *l == "module reload pbx_config.so")
        .count();
    // Uninstall removes files first: step 3 is extensions.conf, step 4 manager.conf.
    kill_at(&pbx, &["uninstall", BUNDLE], "step-4-done", &[]);
    let out = pbx.ok(&["recover"]);
    assert!(out.contains("rolled back"), "{out}");
    // The restored dialplan is loaded again, whatever Asterisk saw before the crash.
    let reloads_after = pbx
        .asterisk_log()
        .lines()
        .filter(|l| *l == "module reload pbx_config.so")
        .count();
    assert_eq!(reloads_after, reloads_before + 1, "{}", pbx.asterisk_log());
    assert_same_tree(&installed, &pbx.snapshot());
    assert!(pbx.ok(&["verify"]).contains("no drift"));
}

#[test]
fn killed_after_state_commit_is_rolled_forward() {
    let pbx = Pbx::new();
    let reference = Pbx::new();
    reference.ok(&["install", &bundle_arg()]);
    pbx.share_machine_key(&reference);
    kill_at(&pbx, &["install", &bundle_arg()], "state-committed", &[]);
    let out = pbx.ok(&["status"]);
    assert!(out.contains("it had committed, rolled forward"), "{out}");
    assert!(out.contains("featpkg-recipes 1.0.0"), "{out}");
    assert!(
        pbx.ok(&["recover"]).contains("nothing to recover"),
        "the journal is gone"
    );
    assert_same_tree(&reference.snapshot(), &pbx.snapshot());
    assert!(pbx.ok(&["verify"]).contains("no drift"));
}

#[test]
fn a_second_run_waits_then_fails_cleanly() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let mut first = pbx
        .command(
            &["install", &bundle_arg()],
            &[("FEATPKG_TEST_PAUSE_AT", "journal-written")],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("paused at journal-written")));
    let started = std::time::Instant::now();
    let second = pbx.run(&["install", &bundle_arg(), "--lock-wait", "1"]);
    let waited = started.elapsed();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(
        text(&second).contains("another featpkg run"),
        "{}",
        text(&second)
    );
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "it should wait ~1 s, waited {waited:?}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The killed first run is rolled back; the second changed nothing.
    pbx.ok(&["recover"]);
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn upgrade_is_one_transaction_and_keeps_user_parameters() {
    let pbx = Pbx::new();
    pbx.ok(&[
        "install",
        &bundle_arg(),
        "--set",
        "call-waiting.moh_class=quiet",
    ]);
    let v1 = pbx.snapshot();
    let (_dir, v11) = bundle_with_version("1.1.0", |src| {
        let f = src.join("packaging/features/call-waiting/extensions.conf");
        let text = std::fs::read_to_string(&f).unwrap();
        let changed = text.replace(
            " same => n,Playback(",
            " same => n,NoOp(1.1)\n same => n,Playback(",
        );
        assert_ne!(changed, text, "the 1.1 fragment must differ");
        std::fs::write(&f, changed).unwrap();
    });
    let out = pbx.ok(&["install", v11.to_str().unwrap()]);
    assert!(
        out.contains("upgrade featpkg-recipes 1.0.0 -> 1.1.0"),
        "{out}"
    );
    assert_eq!(out.matches("done: transaction").count(), 1, "{out}");
    let ext = pbx.read_etc("extensions.conf");
    assert!(ext.contains(" same => n,NoOp(1.1)\n"), "{ext}");
    assert!(
        ext.contains("m(quiet)"),
        "user parameter must survive the upgrade: {ext}"
    );
    assert_eq!(
        ext.matches("; BEGIN featpkg:featpkg-recipes:call-waiting/dialplan")
            .count(),
        1
    );
    let status = pbx.ok(&["status"]);
    assert!(
        status.contains("featpkg-recipes 1.1.0") && status.contains("moh_class = quiet (set)"),
        "{status}"
    );
    assert!(pbx.ok(&["verify"]).contains("no drift"));
    // The upgrade can be taken back as a whole.
    let out = pbx.ok(&["rollback"]);
    assert!(out.contains("rollback of transaction"), "{out}");
    assert_same_tree(&v1, &pbx.snapshot());
    assert!(pbx.ok(&["status"]).contains("featpkg-recipes 1.0.0"));
}

#[test]
fn rollback_walks_back_through_transactions() {
    let pbx = Pbx::new();
    let empty = pbx.snapshot();
    pbx.ok(&["install", &bundle_arg()]);
    let installed = pbx.snapshot();
    pbx.ok(&["uninstall", BUNDLE]);
    assert_same_tree(&empty, &pbx.snapshot());

    let out = pbx.ok(&["rollback"]);
    assert!(
        out.contains("uninstall featpkg-recipes"),
        "undoes the uninstall first: {out}"
    );
    assert_same_tree(&installed, &pbx.snapshot());
    assert!(pbx.ok(&["verify"]).contains("no drift"));

    let out = pbx.ok(&["rollback"]);
    assert!(out.contains("install featpkg-recipes"), "{out}");
    assert_same_tree(&empty, &pbx.snapshot());
    assert!(pbx.ok(&["status"]).contains("nothing installed"));

    assert!(pbx.ok(&["rollback"]).contains("nothing to roll back"));
}

#[test]
fn rollback_refuses_over_later_hand_edits() {
    let pbx = Pbx::new();
    pbx.ok(&["install", &bundle_arg()]);
    let mut ext = pbx.read_etc("extensions.conf");
    ext.push_str("; admin edit after install\n");
    pbx.write_etc("extensions.conf", ext.as_bytes());
    let before = pbx.snapshot();
    let out = pbx.run(&["rollback"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("changed since then: /etc/asterisk/extensions.conf"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn a_journal_whose_removal_was_interrupted_does_not_block_featpkg() {
    let pbx = Pbx::new();
    pbx.ok(&["install", &bundle_arg(), "--features", "call-waiting"]);
    let installed = pbx.snapshot();
    // A crash while a finished journal was being deleted: journal.json already
    // gone, a backup still there. Nothing in it is needed any more.
    let dir = pbx
        .root()
        .join("var/lib/asterisk/featpkg/journal/1700000000-000000001-4242");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("backup-001"), b"old bytes\n").unwrap();
    let out = pbx.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("featpkg-recipes 1.0.0"),
        "{}",
        text(&out)
    );
    assert!(!dir.exists(), "the leftover is cleaned up");
    assert_same_tree(&installed, &pbx.snapshot());
    pbx.ok(&["uninstall", BUNDLE]);
}

#[test]
fn rollback_keeps_a_directory_we_created_that_now_holds_the_admins_files() {
    // Like uninstall: a directory featpkg created goes only when it is left empty.
    let pbx = Pbx::new();
    std::fs::remove_dir_all(pbx.root().join("var/lib/asterisk/agi-bin")).unwrap();
    pbx.ok(&["install", &bundle_arg()]);
    let admins = pbx.root().join("var/lib/asterisk/agi-bin/admin-script");
    std::fs::write(&admins, b"#!/bin/sh\n").unwrap();
    let out = pbx.ok(&["rollback"]);
    assert!(
        out.contains("kept /var/lib/asterisk/agi-bin/: it holds files featpkg did not create"),
        "{out}"
    );
    assert_eq!(std::fs::read(&admins).unwrap(), b"#!/bin/sh\n");
    let left: Vec<_> = std::fs::read_dir(pbx.root().join("var/lib/asterisk/agi-bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["admin-script"]);
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
}

#[test]
fn a_corrupt_journal_stops_every_command_and_is_kept() {
    let pbx = Pbx::new();
    pbx.ok(&["install", &bundle_arg(), "--features", "call-waiting"]);
    let dir = pbx
        .root()
        .join("var/lib/asterisk/featpkg/journal/1700000000-000000001-4242");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("journal.json"), b"{\"txn_id\": \"1700").unwrap();
    let before = pbx.snapshot();
    for args in [&["status"][..], &["uninstall", BUNDLE], &["recover"]] {
        let out = pbx.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("1700000000-000000001-4242/journal.json is unreadable"),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("remove that journal directory"),
            "{}",
            text(&out)
        );
        assert_same_tree(&before, &pbx.snapshot());
        assert!(dir.join("journal.json").is_file());
    }
}

/// extensions.conf grown to about 2 MB with tenant contexts behind the
/// fixture's own text, as a big hosted PBX has; returns the bytes written.
fn big_extensions_conf(pbx: &Pbx) -> Vec<u8> {
    let mut text = pbx.read_etc("extensions.conf");
    let mut tenant = 0;
    while text.len() < 2 << 20 {
        text.push_str(&format!(
            "\n[t{tenant}-internal]\nexten => 200,1,NoOp(to ${{EXTEN}})\n same => n,Set(CDR(t)={tenant})\n same => n,Dial(PJSIP/t{tenant}-200,30)\n same => n,Hangup()\n"
        ));
        tenant += 1;
    }
    pbx.write_etc("extensions.conf", text.as_bytes());
    text.into_bytes()
}

/// Size of featpkg's state database, 0 before it exists.
fn state_db_size(pbx: &Pbx) -> u64 {
    std::fs::metadata(pbx.root().join("var/lib/asterisk/featpkg/state.db")).map_or(0, |m| m.len())
}

/// The size of the change from one tree to another: per file, the bytes
/// between the common start and end of its two versions (all of a file
/// created or deleted).
fn change_size(
    from: &BTreeMap<String, (Vec<u8>, u32)>,
    to: &BTreeMap<String, (Vec<u8>, u32)>,
) -> u64 {
    let paths: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    let none = Vec::new();
    paths
        .into_iter()
        .map(|path| {
            common::changed_bytes(
                from.get(path).map_or(&none, |(bytes, _)| bytes),
                to.get(path).map_or(&none, |(bytes, _)| bytes),
            )
        })
        .sum()
}

/// What a transaction may add to state.db besides the size of its change:
/// the bundle's record, its edits, SQLite's pages.
const HISTORY_OVERHEAD: u64 = 64 * 1024;

#[test]
fn history_of_a_big_dialplan_grows_by_the_change_and_rolls_back_exactly() {
    let pbx = Pbx::new();
    let original = big_extensions_conf(&pbx);
    let empty = pbx.snapshot();
    pbx.ok(&["install", &bundle_arg(), "--no-reload"]);
    let installed = pbx.snapshot();
    let change = change_size(&empty, &installed);
    let after_install = state_db_size(&pbx);
    assert!(
        after_install < HISTORY_OVERHEAD + change,
        "the install made a state.db of {after_install} bytes for a {change}-byte change"
    );

    pbx.ok(&["uninstall", BUNDLE, "--no-reload"]);
    assert_same_tree(&empty, &pbx.snapshot());
    let after_uninstall = state_db_size(&pbx);
    assert!(
        after_uninstall - after_install < HISTORY_OVERHEAD + change,
        "the uninstall added {} bytes to state.db for a {change}-byte change",
        after_uninstall - after_install,
    );

    // Rolling back the uninstall, then the install: the exact bytes each time.
    pbx.ok(&["rollback", "--no-reload"]);
    assert_same_tree(&installed, &pbx.snapshot());
    let after_rollback = state_db_size(&pbx);
    assert!(
        after_rollback - after_uninstall < HISTORY_OVERHEAD + change,
        "the rollback added {} bytes to state.db for a {change}-byte change",
        after_rollback - after_uninstall
    );
    pbx.ok(&["rollback", "--no-reload"]);
    assert_same_tree(&empty, &pbx.snapshot());
    assert_eq!(std::fs::read(pbx.etc("extensions.conf")).unwrap(), original);
}

#[test]
fn forced_rollback_of_a_big_dialplan_keeps_hand_edits_outside_the_blocks() {
    let pbx = Pbx::new();
    let original = String::from_utf8(big_extensions_conf(&pbx)).unwrap();
    pbx.ok(&["install", &bundle_arg(), "--no-reload"]);
    let installed = pbx.read_etc("extensions.conf");
    // The admin edits a tenant in the middle, and adds a context at the end.
    let mine = "[t100-internal]\n; moved to the new trunk\n";
    let edited = |text: &str| {
        format!(
            "{}; the admin's own\n",
            text.replacen("[t100-internal]\n", mine, 1)
        )
    };
    pbx.write_etc("extensions.conf", edited(&installed).as_bytes());

    let out = pbx.run(&["rollback", "--no-reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("changed since then: /etc/asterisk/extensions.conf"),
        "{}",
        text(&out)
    );
    let out = pbx.ok(&["rollback", "--no-reload", "--force"]);
    assert!(
        out.contains("/etc/asterisk/extensions.conf: featpkg's changes of transaction 1 undone, the file's other changes since kept (--force)"),
        "{out}"
    );
    assert_eq!(pbx.read_etc("extensions.conf"), edited(&original));
    assert!(pbx.ok(&["status"]).contains("nothing installed"));
}

#[test]
fn forced_rollback_of_a_big_dialplan_refuses_when_its_blocks_were_edited() {
    let pbx = Pbx::new();
    big_extensions_conf(&pbx);
    pbx.ok(&["install", &bundle_arg(), "--no-reload"]);
    let installed = pbx.read_etc("extensions.conf");
    // The admin edits the first line inside featpkg's first block.
    let begin = installed.find("; BEGIN featpkg:").expect("a featpkg block");
    let inside = begin + installed[begin..].find('\n').unwrap() + 1;
    let edited = format!("{}; mine\n{}", &installed[..inside], &installed[inside..]);
    pbx.write_etc("extensions.conf", edited.as_bytes());
    let before = pbx.snapshot();
    let out = pbx.run(&["rollback", "--no-reload", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot roll back transaction 1 (install featpkg-recipes")
            && text(&out).contains(
                "/etc/asterisk/extensions.conf: the text around featpkg's change at byte"
            )
            && text(&out).contains("is no longer in the file now; nothing was changed"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

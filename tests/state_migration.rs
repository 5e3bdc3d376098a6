//! End-to-end: a PBX left by the last release whose state database has schema
//! v2 (commit f2d027a) is taken over by this featpkg. Its database migrates to
//! v4 (through v3) on first use, and status, verify, rollback (through the history the old
//! release recorded) and uninstall then work as they did, down to the bytes and
//! modes of the files.
//!
//! The fixture, tests/fixtures/state-v2/, was made with the real v2 featpkg
//! (README.md there says how, remake.sh remakes it): `installed/` is the tree
//! after two v2 transactions (install of two features, then a reconfigure),
//! with featpkg's state directory; `original/` the tree before them; the
//! `*.tree` files list every path of those trees (and of the tree between the
//! two transactions) with its mode and sha256, since git keeps neither 0600
//! nor 0640.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::{Digest, Sha256};

use common::{copy_tree, featpkg_bin, repo, text};

/// The fixture's bundle.
const BUNDLE: &str = "migration-demo";

/// featpkg's state directory under the PBX root (the plain-Asterisk target's).
const STATE_DIR: &str = "var/lib/asterisk/featpkg";

/// `status` of the fixture as the v2 release left it.
const STATUS_INSTALLED: &str = "migration-demo 1.0.0
  greeting 1.0.0
    word = goodbye (set)
  notes 1.0.0
    owner = operator (set)
";

/// `status` once the reconfigure (transaction 2) is rolled back.
const STATUS_AFTER_FIRST_ROLLBACK: &str = "migration-demo 1.0.0
  greeting 1.0.0
    word = hello
  notes 1.0.0
    owner = admin
";

const NO_DRIFT: &str = "no drift: every installed file and block is as featpkg wrote it\n";

/// `rollback --dry-run` of the reconfigure the v2 release recorded.
const DRY_RUN_ROLLBACK_2: &str = "\
dry run: rollback of transaction 2 (reconfigure migration-demo 1.0.0 (greeting, notes)) would change:
--- a/etc/asterisk/featpkg-notes.conf
+++ b/etc/asterisk/featpkg-notes.conf
@@ -1,2 +1,2 @@
 [notes]
-owner=operator
+owner=admin
--- a/var/spool/asterisk/featpkg-greeting/words.txt
+++ b/var/spool/asterisk/featpkg-greeting/words.txt
@@ -1 +1 @@
-word=goodbye
+word=hello
--- a/etc/asterisk/extensions.conf
+++ b/etc/asterisk/extensions.conf
@@ -15,6 +15,6 @@
 #tryinclude extensions_local.conf
 ; BEGIN featpkg:migration-demo:greeting/dialplan
 [featpkg-greeting]
-exten => *700,1,Verbose(1,goodbye)
+exten => *700,1,Verbose(1,hello)
  same => n,Hangup()
 ; END featpkg:migration-demo:greeting/dialplan
";

/// `rollback --dry-run` of the install the v2 release recorded (after the
/// reconfigure was rolled back).
const DRY_RUN_ROLLBACK_1: &str = "\
dry run: rollback of transaction 1 (install migration-demo 1.0.0 (greeting, notes)) would change:
--- a/etc/asterisk/featpkg-notes.conf
+++ /dev/null
@@ -1,2 +0,0 @@
-[notes]
-owner=admin
--- a/var/spool/asterisk/featpkg-greeting/words.txt
+++ /dev/null
@@ -1 +0,0 @@
-word=hello
--- a/etc/asterisk/extensions.conf
+++ b/etc/asterisk/extensions.conf
@@ -13,8 +13,3 @@
  same => n,Hangup()
 
 #tryinclude extensions_local.conf
-; BEGIN featpkg:migration-demo:greeting/dialplan
-[featpkg-greeting]
-exten => *700,1,Verbose(1,hello)
- same => n,Hangup()
-; END featpkg:migration-demo:greeting/dialplan
--- a/etc/asterisk/modules.conf
+++ b/etc/asterisk/modules.conf
@@ -5,6 +5,3 @@
 autoload=yes
 noload => chan_alsa.so
 noload => res_hep.so
-; BEGIN featpkg:migration-demo:greeting/modules
-load => res_demo_greeting.so
-; END featpkg:migration-demo:greeting/modules
rmdir /var/spool/asterisk/featpkg-greeting
";

/// `uninstall --dry-run` of the fixture as the v2 release left it.
const DRY_RUN_UNINSTALL: &str = "\
dry run: uninstall migration-demo 1.0.0 would change:
--- a/etc/asterisk/modules.conf
+++ b/etc/asterisk/modules.conf
@@ -5,6 +5,3 @@
 autoload=yes
 noload => chan_alsa.so
 noload => res_hep.so
-; BEGIN featpkg:migration-demo:greeting/modules
-load => res_demo_greeting.so
-; END featpkg:migration-demo:greeting/modules
--- a/etc/asterisk/extensions.conf
+++ b/etc/asterisk/extensions.conf
@@ -13,8 +13,3 @@
  same => n,Hangup()
 
 #tryinclude extensions_local.conf
-; BEGIN featpkg:migration-demo:greeting/dialplan
-[featpkg-greeting]
-exten => *700,1,Verbose(1,goodbye)
- same => n,Hangup()
-; END featpkg:migration-demo:greeting/dialplan
--- a/var/spool/asterisk/featpkg-greeting/words.txt
+++ /dev/null
@@ -1 +0,0 @@
-word=goodbye
--- a/etc/asterisk/featpkg-notes.conf
+++ /dev/null
@@ -1,2 +0,0 @@
-[notes]
-owner=operator
rmdir /var/spool/asterisk/featpkg-greeting
";

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/state-v2")
}

/// A tree as listed: relative path (directories end in `/`) -> (mode, sha256
/// of a file's bytes or `dir`).
type Listing = BTreeMap<String, (u32, String)>;

/// Reads one of the fixture's `*.tree` files (`<mode> <sha256|dir> <path>`).
fn read_listing(name: &str) -> Listing {
    let path = fixture().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mode = u32::from_str_radix(parts.next().unwrap(), 8).unwrap();
            let hash = parts.next().unwrap().to_string();
            let rel = parts.next().unwrap_or_else(|| panic!("{name}: {line:?}"));
            (rel.to_string(), (mode, hash))
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lists `dir` as the `*.tree` files do, skipping `skip` (relative).
fn listing_of(dir: &Path, skip: Option<&str>) -> Listing {
    fn walk(base: &Path, dir: &Path, skip: Option<&str>, out: &mut Listing) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if Some(rel.as_str()) == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(format!("{rel}/"), (mode, "dir".into()));
                walk(base, &path, skip, out);
            } else {
                let hash = sha256_hex(&std::fs::read(&path).unwrap());
                out.insert(rel, (mode, hash));
            }
        }
    }
    let mut out = Listing::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// The fixture's tree in a temp dir, as the v2 release left it, and the
/// present featpkg to run on it.
struct V2Pbx {
    dir: tempfile::TempDir,
}

impl V2Pbx {
    fn new() -> V2Pbx {
        let dir = tempfile::tempdir().unwrap();
        let pbx = V2Pbx { dir };
        copy_tree(&fixture().join("installed"), &pbx.root());
        let state = pbx.root().join(STATE_DIR);
        for (listing, base) in [
            ("installed.tree", pbx.root()),
            ("state.tree", state.clone()),
        ] {
            for (rel, (mode, _)) in read_listing(listing) {
                let path = base.join(rel.trim_end_matches('/'));
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        // The copy is the fixture exactly, or the fixture was changed without remake.sh.
        pbx.assert_tree(
            &read_listing("installed.tree"),
            "the fixture's installed.tree",
        );
        assert_eq!(
            listing_of(&state, None),
            read_listing("state.tree"),
            "the fixture's state directory differs from state.tree (remake it: README.md)"
        );
        assert_eq!(pbx.schema_version(), 2, "the fixture's state.db must be v2");
        pbx.hand_recorded_owners_to_runner();
        pbx
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The fixture was recorded as root, so its history gives the files it
    /// changed to uid 0 and gid 0. Run as another user, a rollback could not
    /// give a file back to root: the runner, who owns the copy, stands in for
    /// root in the (still v2) history.
    fn hand_recorded_owners_to_runner(&self) {
        let meta = std::fs::metadata(self.root().join("etc/asterisk/modules.conf")).unwrap();
        if meta.uid() == 0 {
            return;
        }
        let db = rusqlite::Connection::open(self.root().join(STATE_DIR).join("state.db")).unwrap();
        db.execute(
            "UPDATE txn_files SET before_uid = ?1, before_gid = ?2 WHERE before_uid = 0",
            [meta.uid(), meta.gid()],
        )
        .unwrap();
    }

    /// `PRAGMA user_version` of featpkg's state database.
    fn schema_version(&self) -> i64 {
        let db = rusqlite::Connection::open(self.root().join(STATE_DIR).join("state.db")).unwrap();
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(featpkg_bin());
        cmd.args(args).arg("--root").arg(self.root());
        for var in [
            "FEATPKG_ROOT",
            "FEATPKG_ASTERISK_CONF",
            "FEATPKG_RELOAD_CMD",
            "FEATPKG_CONFIG_DB",
            "FEATPKG_TEST_FAIL_AT",
            "FEATPKG_TEST_PAUSE_AT",
        ] {
            cmd.env_remove(var);
        }
        cmd.output().unwrap()
    }

    /// Runs, asserts exit 0 and nothing on stderr; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "featpkg {args:?}: {}",
            text(&out)
        );
        assert!(
            out.stderr.is_empty(),
            "featpkg {args:?} complained: {}",
            text(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The PBX tree (without featpkg's state) is `expected`, path by path:
    /// same files and directories, same bytes, same modes.
    fn assert_tree(&self, expected: &Listing, what: &str) {
        let actual = listing_of(&self.root(), Some(STATE_DIR));
        for (rel, want) in expected {
            match actual.get(rel) {
                None => panic!("{rel} is missing; expected {what}"),
                Some(got) if got.0 != want.0 => {
                    panic!(
                        "{rel}: mode {:04o}, expected {:04o} ({what})",
                        got.0, want.0
                    )
                }
                Some(got) if got.1 != want.1 => panic!(
                    "{rel} differs from {what}; it holds:\n{}",
                    String::from_utf8_lossy(&std::fs::read(self.root().join(rel)).unwrap())
                ),
                Some(_) => {}
            }
        }
        for rel in actual.keys() {
            assert!(expected.contains_key(rel), "{rel} was left behind ({what})");
        }
    }

    /// The tree is the original one, byte for byte against the fixture's
    /// own copy of it, and with its listed modes.
    fn assert_original(&self) {
        self.assert_tree(
            &read_listing("original.tree"),
            "the tree before the install",
        );
        for rel in read_listing("original.tree").keys() {
            if !rel.ends_with('/') {
                assert!(
                    std::fs::read(self.root().join(rel)).unwrap()
                        == std::fs::read(fixture().join("original").join(rel)).unwrap(),
                    "{rel} differs from tests/fixtures/state-v2/original/{rel}"
                );
            }
        }
    }
}

#[test]
fn status_and_verify_report_what_the_v2_release_installed() {
    let pbx = V2Pbx::new();

    assert_eq!(pbx.ok(&["status"]), STATUS_INSTALLED);
    assert_eq!(
        pbx.schema_version(),
        4,
        "the first command migrates the database"
    );

    let json: serde_json::Value = serde_json::from_str(&pbx.ok(&["status", "--json"])).unwrap();
    let bundles = json.as_array().unwrap();
    assert_eq!(bundles.len(), 1, "{json}");
    let bundle = &bundles[0];
    assert_eq!(bundle["name"], BUNDLE);
    assert_eq!(bundle["version"], "1.0.0");
    let features: Vec<(&str, &str, &serde_json::Value)> = bundle["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap(),
                f["version"].as_str().unwrap(),
                &f["params"],
            )
        })
        .collect();
    assert_eq!(
        features,
        [
            ("greeting", "1.0.0", &serde_json::json!({"word": "goodbye"})),
            ("notes", "1.0.0", &serde_json::json!({"owner": "operator"})),
        ]
    );
    let edits: Vec<(&str, &str, &str)> = bundle["edits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["edit_id"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edits,
        [
            ("greeting/modules", "block", "/etc/asterisk/modules.conf"),
            (
                "greeting/dialplan",
                "block",
                "/etc/asterisk/extensions.conf"
            ),
            (
                "greeting/words",
                "file",
                "/var/spool/asterisk/featpkg-greeting/words.txt"
            ),
            ("notes/notes", "file", "/etc/asterisk/featpkg-notes.conf"),
        ]
    );
    assert_eq!(
        bundle["dirs"],
        serde_json::json!(["/var/spool/asterisk/featpkg-greeting"])
    );

    assert_eq!(pbx.ok(&["verify"]), NO_DRIFT);
    assert_eq!(pbx.ok(&["verify", "--json"]).trim(), "[]");
    assert_eq!(pbx.schema_version(), 4);
    pbx.assert_tree(&read_listing("installed.tree"), "the tree as installed");
}

#[test]
fn rollback_walks_the_v2_history_back_to_the_original_tree() {
    let pbx = V2Pbx::new();
    let installed = read_listing("installed.tree");

    // The first command is a dry run: it migrates, shows the diff, changes no file.
    assert_eq!(pbx.ok(&["rollback", "--dry-run"]), DRY_RUN_ROLLBACK_2);
    assert_eq!(pbx.schema_version(), 4);
    pbx.assert_tree(&installed, "the tree as installed (after a dry run)");

    assert_eq!(
        pbx.ok(&["rollback", "--no-reload"]),
        "rollback of transaction 2 (reconfigure migration-demo 1.0.0 (greeting, notes))
  modified /etc/asterisk/featpkg-notes.conf
  modified /var/spool/asterisk/featpkg-greeting/words.txt
  modified /etc/asterisk/extensions.conf
  reload skipped (--no-reload): reload Asterisk yourself to activate the changes
done: transaction 3
"
    );
    pbx.assert_tree(
        &read_listing("after-install.tree"),
        "the tree between the v2 install and the reconfigure",
    );
    assert_eq!(pbx.ok(&["status"]), STATUS_AFTER_FIRST_ROLLBACK);
    assert_eq!(pbx.ok(&["verify"]), NO_DRIFT);

    assert_eq!(pbx.ok(&["rollback", "--dry-run"]), DRY_RUN_ROLLBACK_1);
    pbx.assert_tree(
        &read_listing("after-install.tree"),
        "the tree between the v2 install and the reconfigure (after a dry run)",
    );
    assert_eq!(
        pbx.ok(&["rollback", "--no-reload"]),
        "rollback of transaction 1 (install migration-demo 1.0.0 (greeting, notes))
  removed  /etc/asterisk/featpkg-notes.conf
  removed  /var/spool/asterisk/featpkg-greeting/words.txt
  modified /etc/asterisk/extensions.conf
  modified /etc/asterisk/modules.conf
  removed  /var/spool/asterisk/featpkg-greeting/
  reload skipped (--no-reload): reload Asterisk yourself to activate the changes
done: transaction 4
"
    );
    pbx.assert_original();
    assert_eq!(pbx.ok(&["status"]), "nothing installed\n");
    assert_eq!(
        pbx.ok(&["rollback", "--no-reload"]),
        "nothing to roll back\n"
    );
    pbx.assert_original();
}

#[test]
fn uninstall_after_the_migration_restores_the_original_tree() {
    let pbx = V2Pbx::new();
    let installed = read_listing("installed.tree");

    assert_eq!(
        pbx.ok(&["uninstall", BUNDLE, "--dry-run"]),
        DRY_RUN_UNINSTALL
    );
    assert_eq!(pbx.schema_version(), 4);
    pbx.assert_tree(&installed, "the tree as installed (after a dry run)");

    assert_eq!(
        pbx.ok(&["uninstall", BUNDLE, "--no-reload"]),
        "uninstall migration-demo 1.0.0
  modified /etc/asterisk/modules.conf
  modified /etc/asterisk/extensions.conf
  removed  /var/spool/asterisk/featpkg-greeting/words.txt
  removed  /etc/asterisk/featpkg-notes.conf
  removed  /var/spool/asterisk/featpkg-greeting/
  reload skipped (--no-reload): reload Asterisk yourself to activate the changes
done: transaction 3
"
    );
    pbx.assert_original();
    assert_eq!(pbx.ok(&["status"]), "nothing installed\n");
    assert_eq!(pbx.ok(&["verify"]), NO_DRIFT);

    // The uninstall, recorded by this featpkg on top of the v2 history, rolls
    // back to the tree the v2 release left.
    assert_eq!(
        pbx.ok(&["rollback", "--no-reload"]),
        "rollback of transaction 3 (uninstall migration-demo 1.0.0)
  created  /var/spool/asterisk/featpkg-greeting/
  created  /etc/asterisk/featpkg-notes.conf
  created  /var/spool/asterisk/featpkg-greeting/words.txt
  modified /etc/asterisk/extensions.conf
  modified /etc/asterisk/modules.conf
  reload skipped (--no-reload): reload Asterisk yourself to activate the changes
done: transaction 4
"
    );
    pbx.assert_tree(&installed, "the tree as installed");
    assert_eq!(pbx.ok(&["status"]), STATUS_INSTALLED);
    assert_eq!(pbx.ok(&["verify"]), NO_DRIFT);
}

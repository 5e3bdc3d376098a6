//! Shared end-to-end test harness: a PBX tree in a temp dir (a copy of
//! tests/fixtures/pbx), the real bundle built from this repository, the real
//! featpkg binary, and the fake `asterisk` CLI from tests/support.

#![allow(dead_code)]

pub mod agid;
pub mod asterisk;
pub mod events;
pub mod web_user;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BUNDLE: &str = "featpkg-recipes";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn featpkg_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_featpkg"))
}

/// Whether php-cli is here; says on stderr why the caller's tests are skipped if not.
pub fn php_available() -> bool {
    let ok = Command::new("php")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipping: php (php-cli) is not installed; `apt-get install -y php-cli php-xml php-sqlite3 php-zip` (.ci/setup) runs these tests"
        );
    }
    ok
}

/// The PHP stand-ins and drivers the shim tests run (tests/fixtures/php).
pub fn php_fixtures() -> PathBuf {
    repo().join("tests/fixtures/php")
}

/// Directory with the static musl binaries the bundle ships (built by `.ci/build-static`).
pub fn static_bin_dir() -> PathBuf {
    let dir = repo().join("target/x86_64-unknown-linux-musl/release");
    for name in [
        "featpkg",
        "featpkg-operator-alert",
        "featpkg-busy-callback",
        "featpkg-busy-callback-watch",
        "featpkg-conference-guest-watch",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `bash .ci/build-static` (bash .ci/run does) before the tests",
            dir.join(name).display()
        );
    }
    dir
}

/// Copies `src` into `dst` recursively (files keep their mode).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Builds a bundle from a source tree into `out`, returns the archive path.
pub fn build_bundle(source: &Path, out: &Path) -> PathBuf {
    let output = Command::new(featpkg_bin())
        .arg("build")
        .arg("--source")
        .arg(source)
        .arg("--bin-dir")
        .arg(static_bin_dir())
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(output.status.success(), "build failed: {}", text(&output));
    let mut zips: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zip"))
        .collect();
    assert_eq!(zips.len(), 1, "expected one archive in {}", out.display());
    zips.pop().unwrap()
}

/// The repository's bundle, built once per test process.
pub fn bundle() -> PathBuf {
    static BUNDLE_PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    BUNDLE_PATH
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = build_bundle(&repo(), dir.path());
            (dir, path)
        })
        .1
        .clone()
}

/// A copy of the repository's bundle sources with the version (and optionally a fragment) changed.
pub fn bundle_with_version(
    version: &str,
    edit: impl FnOnce(&Path),
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_tree(
        &repo().join("module-manifest"),
        &src.join("module-manifest"),
    );
    copy_tree(&repo().join("packaging"), &src.join("packaging"));
    let manifest = src.join("module-manifest/bundle.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["version"] = serde_json::Value::String(version.into());
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    edit(&src);
    let out = dir.path().join("dist");
    let path = build_bundle(&src, &out);
    (dir, path)
}

/// A PBX tree in a temp dir, with a fake Asterisk CLI.
pub struct Pbx {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Pbx {
    pub fn new() -> Pbx {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("tests/fixtures/pbx"), &dir.path().join("root"));
        let log = dir.path().join("asterisk.log");
        let state = dir.path().join("fake-state");
        std::fs::create_dir_all(&state).unwrap();
        let fake = repo().join("tests/support/fake-asterisk");
        let mode = std::fs::metadata(&fake).unwrap().permissions().mode();
        assert!(
            mode & 0o111 != 0,
            "tests/support/fake-asterisk must be executable"
        );
        let env = vec![
            (
                "FEATPKG_ASTERISK_CMD".to_string(),
                fake.display().to_string(),
            ),
            ("FAKE_ASTERISK_LOG".to_string(), log.display().to_string()),
            (
                "FAKE_ASTERISK_STATE_DIR".to_string(),
                state.display().to_string(),
            ),
            (
                "FAKE_ASTERISK_ETC".to_string(),
                dir.path().join("root/etc/asterisk").display().to_string(),
            ),
        ];
        Pbx { dir, log, env }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn etc(&self, name: &str) -> PathBuf {
        self.root().join("etc/asterisk").join(name)
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root().join(rel)).unwrap()
    }

    pub fn read_etc(&self, name: &str) -> String {
        String::from_utf8(std::fs::read(self.etc(name)).unwrap()).unwrap()
    }

    pub fn write_etc(&self, name: &str, text: &[u8]) {
        std::fs::write(self.etc(name), text).unwrap();
    }

    /// A featpkg command against this PBX (args first, then --root), with extra env.
    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(featpkg_bin());
        cmd.args(args).arg("--root").arg(self.root());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.env_remove("FEATPKG_TEST_FAIL_AT")
            .env_remove("FEATPKG_TEST_PAUSE_AT");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "featpkg {args:?} failed: {}",
            text(&out)
        );
        text(&out)
    }

    /// Every file under the root except featpkg's own state dir: path -> (bytes, mode).
    pub fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        snapshot_into(&self.root(), &self.root(), &mut out);
        out
    }

    /// Gives this PBX the same machine key (so the same generated secrets) as
    /// `other`, which must have installed something already: lets two PBXs be
    /// compared byte for byte.
    pub fn share_machine_key(&self, other: &Pbx) {
        let rel = "var/lib/asterisk/featpkg/machine.key";
        std::fs::create_dir_all(self.root().join("var/lib/asterisk/featpkg")).unwrap();
        std::fs::copy(other.root().join(rel), self.root().join(rel)).unwrap();
    }

    pub fn asterisk_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn snapshot_into(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        if rel == "var/lib/asterisk/featpkg" {
            continue; // featpkg's own state (database, journal, lock)
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.insert(format!("{rel}/"), (Vec::new(), mode));
            snapshot_into(base, &path, out);
        } else {
            out.insert(rel, (std::fs::read(&path).unwrap(), mode));
        }
    }
}

/// The size of a change from `a` to `b` (absent: empty): the bytes between
/// their common start and common end, all of a file created or deleted.
pub fn changed_bytes(a: &[u8], b: &[u8]) -> u64 {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (a.len().max(b.len()) - suffix) as u64
}

/// stdout + stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts two snapshots are equal, naming the first differing path.
pub fn assert_same_tree(
    before: &BTreeMap<String, (Vec<u8>, u32)>,
    after: &BTreeMap<String, (Vec<u8>, u32)>,
) {
    for (path, (bytes, mode)) in before {
        match after.get(path) {
            None => panic!("{path} is gone"),
            Some((b, m)) => {
                assert!(
                    b == bytes,
                    "{path} differs:\n--- before\n{}\n--- after\n{}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(b)
                );
                assert_eq!(m, mode, "{path}: mode differs");
            }
        }
    }
    for path in after.keys() {
        assert!(before.contains_key(path), "{path} was left behind");
    }
}

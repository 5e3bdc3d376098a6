//! FreePBX's web UI runs featpkg as asterisk, not root. These helpers let a
//! test (run as root) do the same: `featpkg-web`, a system user .ci/setup
//! creates, stands in for asterisk (a tree's /etc/passwd gives asterisk its
//! uid), and its real crontab, changed through the real crontab(1) (package
//! cron), is the one featpkg edits, then put back.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::text;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// The system user .ci/setup creates to stand in for FreePBX's web user.
pub const WEB_USER: &str = "featpkg-web";
/// What the admin already has in asterisk's crontab.
pub const ADMIN_CRONTAB: &str = "MAILTO=\"\"\n0 3 * * * /usr/bin/true the admin's own job\n";

/// The web user's real crontab is one per machine: one test at a time.
static WEB_CRONTAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct WebUser {
    pub uid: u32,
    pub gid: u32,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl WebUser {
    /// Waits for the web user's crontab to be free; needs root (to become
    /// the user) and .ci/setup's `featpkg-web` and cron.
    pub fn take() -> WebUser {
        assert!(
            is_root(),
            "these tests become {WEB_USER} with setpriv: run them as root"
        );
        let turn = WEB_CRONTAB.lock().unwrap_or_else(|e| e.into_inner());
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, WEB_USER]).output().unwrap();
            assert!(out.status.success(), "no user {WEB_USER}: run .ci/setup");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        assert!(
            Path::new("/usr/bin/crontab").is_file(),
            "no crontab(1): run .ci/setup (it installs cron)"
        );
        let user = WebUser {
            uid: id("-u"),
            gid: id("-g"),
            _turn: turn,
        };
        user.set_crontab(None);
        user
    }

    /// `program` run as the web user, with none of root's groups.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(program);
        cmd
    }

    /// The web user's crontab as `crontab -l` prints it; None when there is none.
    pub fn crontab(&self) -> Option<String> {
        let out = self
            .command(Path::new("/usr/bin/crontab"))
            .arg("-l")
            .output()
            .unwrap();
        if out.status.success() {
            return Some(String::from_utf8(out.stdout).unwrap());
        }
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("no crontab for {WEB_USER}\n")
        );
        None
    }

    pub fn set_crontab(&self, wanted: Option<&str>) {
        let mut cmd = self.command(Path::new("/usr/bin/crontab"));
        let out = match wanted {
            Some(wanted) => {
                use std::io::Write;
                let mut child = cmd
                    .arg("-")
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(wanted.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
            None => cmd.arg("-r").output().unwrap(),
        };
        assert!(out.status.success() || wanted.is_none(), "{}", text(&out));
    }
}

impl Drop for WebUser {
    fn drop(&mut self) {
        self.set_crontab(None);
    }
}

/// Makes `root`'s /etc/passwd and /etc/group give asterisk `uid` and `gid`.
pub fn make_asterisk(root: &Path, uid: u32, gid: u32) {
    let rewrite = |file: &str, entry: String| {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().any(|l| l.starts_with("asterisk:")),
            "no asterisk in {file}"
        );
        let text: String = text
            .lines()
            .map(|line| {
                if line.starts_with("asterisk:") {
                    format!("{entry}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(path, text).unwrap();
    };
    rewrite(
        "etc/passwd",
        format!("asterisk:x:{uid}:{gid}::/home/asterisk:/bin/bash"),
    );
    rewrite("etc/group", format!("asterisk:x:{gid}:"));
}

/// Gives `path` and everything under it to `uid:gid` (links themselves), as `fwconsole chown` does.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

//! The features against a real Asterisk. The suite runs when the environment
//! names one (FEATPKG_REAL_ASTERISK_CMD); without it, cargo reports the suite
//! as ignored (skipped) — build.rs makes that choice. On a test PBX — never a
//! production one: it installs, reloads and uninstalls for real — run it as
//! root with:
//!
//!     FEATPKG_REAL_ASTERISK_CMD="asterisk"          # the CLI featpkg reloads with (required)
//!     FEATPKG_REAL_ROOT=/                           # PBX root (default /)
//!     FEATPKG_REAL_ASTERISK_CONF=/etc/asterisk/asterisk.conf   (optional)
//!     cargo test --test real_asterisk
//!
//! The AMI checks log in with the credentials featpkg generated for the
//! watcher features, so manager.conf must have `[general] enabled = yes`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

struct Real {
    cli: String,
    root: PathBuf,
    conf: Option<String>,
}

fn real() -> Real {
    let cli = std::env::var("FEATPKG_REAL_ASTERISK_CMD").expect(
        "FEATPKG_REAL_ASTERISK_CMD must name the Asterisk CLI of a test PBX (see tests/real_asterisk.rs)",
    );
    Real {
        cli,
        root: std::env::var("FEATPKG_REAL_ROOT")
            .unwrap_or_else(|_| "/".into())
            .into(),
        conf: std::env::var("FEATPKG_REAL_ASTERISK_CONF").ok(),
    }
}

impl Real {
    fn featpkg(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(featpkg_bin());
        cmd.args(args)
            .arg("--root")
            .arg(&self.root)
            .arg("--asterisk-cmd")
            .arg(&self.cli);
        if let Some(conf) = &self.conf {
            cmd.arg("--asterisk-conf").arg(conf);
        }
        cmd.output().unwrap()
    }

    fn cli(&self, command: &str) -> String {
        let words: Vec<&str> = self.cli.split_whitespace().collect();
        let out = Command::new(words[0])
            .args(&words[1..])
            .arg("-rx")
            .arg(command)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
#[cfg_attr(
    not(real_asterisk),
    ignore = "skipped: no real Asterisk named; set FEATPKG_REAL_ASTERISK_CMD=asterisk to run it on a test PBX"
)]
fn all_features_install_reload_and_uninstall_on_a_real_asterisk() {
    let real = real();
    let bundle = bundle();
    let params = repo().join("tests/fixtures/queue-failover.json");
    let install = real.featpkg(&[
        "install",
        bundle.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--set",
        "conference-guest.conference=7999",
        "--set",
        "conference-guest.provider=featpkg-test-provider",
        "--set",
        "conference-guest.number=0000000000",
    ]);
    assert!(install.status.success(), "{}", text(&install));
    // The reload really happened and every context is loaded.
    for ctx in [
        "featpkg-call-waiting",
        "featpkg-operator-alert-menu",
        "featpkg-operator-alert-noanswer",
        "notify-queue-failover",
        "featpkg-busy-callback",
        "featpkg-busy-callback-dial",
        "featpkg-conference-guest-leg",
    ] {
        let shown = real.cli(&format!("dialplan show {ctx}"));
        assert!(shown.contains(&format!("'{ctx}'")), "{ctx}: {shown}");
    }
    assert!(
        real.cli("module show like func_extstate")
            .contains("func_extstate.so")
    );
    // The generated AMI user works: log in as the watcher would.
    let creds_path = real
        .root
        .join("etc/asterisk/featpkg-ami/busy-callback.conf");
    let creds = featpkg_ami::Credentials::load(&creds_path).unwrap();
    let mut ami = featpkg_ami::Ami::connect(&creds, "off", Duration::from_secs(5)).unwrap();
    ami.send(featpkg_ami::action("Ping", &[]).unwrap()).unwrap();
    let out = real.featpkg(&["verify"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = real.featpkg(&["uninstall", BUNDLE]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = real.cli("dialplan show featpkg-call-waiting");
    assert!(shown.contains("There is no existence"), "{shown}");
}

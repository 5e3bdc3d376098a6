//! The machine-readable commands a settings page reads (README "For a
//! settings page"): `schema --json`, `install|uninstall|rollback --json`,
//! errors as `{"error": …}` with exit 2, and `--progress` lines. Run against
//! a PBX tree with the fake Asterisk CLI.

mod common;

use common::{Pbx, bundle, text};
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(out)))
}

fn progress_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("featpkg: progress "))
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_lists_every_feature_with_its_parameters_and_what_a_pbx_cannot_run() {
    let bundle = bundle();
    let run = |target: &str| {
        let out = std::process::Command::new(common::featpkg_bin())
            .args(["schema", "--json", "--target", target, "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        json_of(&out)
    };
    let freepbx = run("freepbx");
    assert_eq!(freepbx["bundle"]["name"], "featpkg-recipes");
    assert_eq!(freepbx["target"], "freepbx");
    let ids: Vec<&str> = freepbx["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "busy-callback",
            "call-waiting",
            "conference-guest",
            "operator-alert",
            "queue-failover"
        ]
    );
    let feature = |schema: &Value, id: &str| -> Value {
        schema["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    let cw = feature(&freepbx, "call-waiting");
    assert!(
        cw["unsupported"].as_str().is_some_and(|r| !r.is_empty()),
        "call-waiting says why FreePBX cannot run it: {cw}"
    );
    assert_eq!(
        feature(&run("mikopbx"), "call-waiting")["unsupported"],
        Value::Null
    );
    let guest = feature(&freepbx, "conference-guest");
    let required: Vec<&str> = guest["params"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["required"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(required, ["conference", "provider", "number"]);
    let dtmf = guest["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dtmf")
        .unwrap();
    assert_eq!(dtmf["default_from"], "conference");
    let bc = feature(&freepbx, "busy-callback");
    let ring = bc["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ring")
        .unwrap();
    assert_eq!(ring["type"], "integer");
    assert!(ring["min"].is_i64() && ring["max"].is_i64(), "{ring}");
    let tech = bc["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tech")
        .unwrap();
    assert_eq!(tech["values"], serde_json::json!(["PJSIP", "IAX2"]));
    assert!(
        freepbx["queue_statuses"]
            .as_array()
            .unwrap()
            .contains(&Value::from("JOINEMPTY"))
    );
}

#[test]
fn a_dry_run_in_json_gives_each_path_its_diff_and_changes_nothing() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let b = bundle();
    let out = pbx.run(&[
        "install",
        b.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--dry-run",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["changed"], true);
    assert_eq!(v["warnings"], serde_json::json!([]));
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{v}");
    assert_eq!(changes[0]["path"], "/etc/asterisk/extensions.conf");
    let diff = changes[0]["diff"].as_str().unwrap();
    assert!(
        diff.starts_with(
            "--- a/etc/asterisk/extensions.conf\n+++ b/etc/asterisk/extensions.conf\n@@"
        ),
        "{diff}"
    );
    assert!(diff.contains("+[notify-queue-failover]\n"), "{diff}");
    assert_eq!(pbx.snapshot(), before);
}

#[test]
fn an_applied_change_reports_its_steps_and_its_paths_then_rolls_back() {
    let pbx = Pbx::new();
    let b = bundle();
    let out = pbx.run(&[
        "install",
        b.to_str().unwrap(),
        "--features",
        "operator-alert",
        "--json",
        "--progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(progress_lines(&out), ["plan", "write", "reload", "verify"]);
    let v = json_of(&out);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["changed"], true);
    assert!(v["transaction"].is_i64(), "{v}");
    let paths: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/etc/asterisk/extensions.conf"),
        "{paths:?}"
    );

    // The same again: nothing to do, said as JSON.
    let again = pbx.run(&[
        "install",
        b.to_str().unwrap(),
        "--features",
        "operator-alert",
        "--json",
    ]);
    let v = json_of(&again);
    assert_eq!(v["changed"], false, "{v}");
    assert!(v["summary"].as_str().unwrap().contains("up to date"));

    let back = pbx.run(&["rollback", "--json", "--progress"]);
    assert!(back.status.success(), "{}", text(&back));
    assert_eq!(progress_lines(&back), ["plan", "write", "reload", "verify"]);
    assert!(
        json_of(&back)["summary"]
            .as_str()
            .unwrap()
            .starts_with("rollback of transaction")
    );
}

#[test]
fn a_refused_value_is_json_naming_the_feature_the_parameter_and_the_place() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let b = bundle();
    let out = pbx.run(&[
        "install",
        b.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--set",
        r#"queue-failover.rules=[{"queue":"500","status":"TIMEOUT","destination":"a,s,1"},{"queue":"501","status":"BUSY","destination":"a,s,1"}]"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["error"]["feature"], "queue-failover");
    assert_eq!(v["error"]["param"], "rules");
    assert_eq!(v["error"]["path"], "$.queue-failover.rules[1].status");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"BUSY\" is not a QUEUESTATUS"),
        "{v}"
    );
    // The person-readable message still goes to stderr.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("featpkg: error: feature queue-failover")
    );

    let out = pbx.run(&[
        "install",
        b.to_str().unwrap(),
        "--features",
        "conference-guest",
        "--set",
        "conference-guest.conference=800",
        "--set",
        "conference-guest.provider=trunk",
        "--set",
        "conference-guest.number=12a",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    assert_eq!(v["error"]["path"], "$.conference-guest.number", "{v}");
    assert_eq!(pbx.snapshot(), before, "a refusal changes nothing");
}

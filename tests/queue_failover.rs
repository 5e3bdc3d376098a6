//! End-to-end: queue-failover's rule table from `--params FILE.json`, its
//! refusals (with the JSON path), and removing one feature alone.

mod common;

use common::*;

fn params(pbx: &Pbx, json: &str) -> String {
    let path = pbx.dir.path().join("params.json");
    std::fs::write(&path, json).unwrap();
    path.display().to_string()
}

const RULES: &str = r#"{
  "queue-failover": {
    "rules": [
      {"queue": "2000", "status": "TIMEOUT", "destination": "internal,201,1"},
      {"queue": "2000", "status": "JOINEMPTY", "destination": "internal,202,1"},
      {"queue": "2001", "status": "LEAVEEMPTY", "destination": "ext-queues,2000,1"}
    ],
    "default": "internal,200,1"
  }
}"#;

#[test]
fn rules_from_a_params_file_are_rendered_in_order() {
    let pbx = Pbx::new();
    let file = params(&pbx, RULES);
    let bundle = bundle();
    pbx.ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "queue-failover",
        "--params",
        &file,
    ]);
    let ext = pbx.read_etc("extensions.conf");
    let block = ext
        .split("; BEGIN featpkg:featpkg-recipes:queue-failover/dialplan\n")
        .nth(1)
        .unwrap();
    assert!(block.contains(
        " same => n,GotoIf($[\"${EXTEN}\" = \"2000\" & \"${QUEUESTATUS}\" = \"TIMEOUT\"]?internal,201,1)\n \
         same => n,GotoIf($[\"${EXTEN}\" = \"2000\" & \"${QUEUESTATUS}\" = \"JOINEMPTY\"]?internal,202,1)\n \
         same => n,GotoIf($[\"${EXTEN}\" = \"2001\" & \"${QUEUESTATUS}\" = \"LEAVEEMPTY\"]?ext-queues,2000,1)\n \
         same => n,Goto(internal,200,1)\n \
         same => n(loop),Log(WARNING,featpkg queue-failover: pass ${FEATPKG_QF_PASSES} through queue ${EXTEN} with status ${QUEUESTATUS}: the rules route this call in a loop, hanging up)\n \
         same => n,Hangup()\n\
         ; END featpkg:featpkg-recipes:queue-failover/dialplan\n"
    ), "{block}");
    assert!(
        pbx.asterisk_log()
            .lines()
            .any(|l| l == "dialplan show notify-queue-failover")
    );
    // The table is a parameter like any other: kept, shown, and the same install is a no-op.
    let out = pbx.ok(&[
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "queue-failover",
    ]);
    assert!(out.contains("up to date"), "{out}");
}

#[test]
fn a_bad_status_is_refused_with_its_json_path() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let file = params(&pbx, &RULES.replace("\"JOINEMPTY\"", "\"NOANSWER\""));
    let bundle = bundle();
    let out = pbx.run(&["install", bundle.to_str().unwrap(), "--params", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("$.queue-failover.rules[1].status: \"NOANSWER\" is not a QUEUESTATUS"),
        "{}",
        text(&out)
    );
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn a_loop_back_into_an_empty_queue_is_refused() {
    let pbx = Pbx::new();
    let before = pbx.snapshot();
    let file = params(&pbx, &RULES.replace("internal,202,1", "ext-queues,2000,1"));
    let bundle = bundle();
    let out = pbx.run(&["install", bundle.to_str().unwrap(), "--params", &file]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("$.queue-failover.rules[1].destination:") && t.contains("a loop"),
        "{t}"
    );
    assert_same_tree(&before, &pbx.snapshot());
}

#[test]
fn malformed_destinations_and_files_name_the_path() {
    let pbx = Pbx::new();
    let bundle = bundle();
    for (json, needle) in [
        (
            RULES.replace("internal,201,1", "internal;201"),
            "$.queue-failover.rules[0].destination:",
        ),
        (
            RULES.replace("\"2001\"", "\"20 01\""),
            "$.queue-failover.rules[2].queue:",
        ),
        (
            r#"{"queue-failover": {"rules": null}}"#.to_string(),
            "$.queue-failover.rules: null is not a value",
        ),
        (
            r#"{"queue-failover": ["x"]}"#.to_string(),
            "$.queue-failover: must be an object of parameters",
        ),
        ("{not json".to_string(), "$: not valid JSON"),
    ] {
        let before = pbx.snapshot();
        let file = params(&pbx, &json);
        let out = pbx.run(&["install", bundle.to_str().unwrap(), "--params", &file]);
        assert_eq!(out.status.code(), Some(2), "{json}");
        assert!(text(&out).contains(needle), "{needle}: {}", text(&out));
        assert_same_tree(&before, &pbx.snapshot());
    }
}

#[test]
fn uninstalling_one_feature_equals_installing_only_the_others() {
    let bundle = bundle();
    let archive = bundle.to_str().unwrap();
    let all = [
        "busy-callback",
        "call-waiting",
        "conference-guest",
        "operator-alert",
        "queue-failover",
    ];
    // Parameters for all five; each run passes those of the features it installs.
    let sets = |features: &[&str]| -> Vec<String> {
        let mut v = Vec::new();
        if features.contains(&"call-waiting") {
            v.extend(["--set".into(), "call-waiting.endpoints=201".into()]);
        }
        if features.contains(&"conference-guest") {
            for s in [
                "conference-guest.conference=700",
                "conference-guest.provider=provider",
                "conference-guest.number=0551234567",
            ] {
                v.extend(["--set".into(), s.into()]);
            }
        }
        v
    };
    let full = Pbx::new();
    let mut args: Vec<String> = vec![
        "install".into(),
        archive.into(),
        "--features".into(),
        all.join(","),
    ];
    args.extend(sets(&all));
    let out = full.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.contains(
            "(busy-callback, call-waiting, conference-guest, operator-alert, queue-failover)"
        ),
        "{out}"
    );
    for removed in all {
        let others: Vec<&str> = all.iter().copied().filter(|f| *f != removed).collect();
        let only_others = Pbx::new();
        let mut only_args: Vec<String> = vec![
            "install".into(),
            archive.into(),
            "--features".into(),
            others.join(","),
        ];
        only_args.extend(sets(&others));
        only_others.ok(&only_args.iter().map(String::as_str).collect::<Vec<_>>());

        let pbx = Pbx::new();
        pbx.share_machine_key(&only_others);
        pbx.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        pbx.ok(&["uninstall", removed]);
        assert_same_tree(&only_others.snapshot(), &pbx.snapshot());
        let status = pbx.ok(&["status"]);
        assert!(
            !status.contains(&format!("  {removed} ")),
            "{removed}: {status}"
        );
        assert!(
            pbx.ok(&["verify"]).contains("no drift"),
            "{removed}: the others are intact"
        );
    }
}

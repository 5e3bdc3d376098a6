//! The shipped feature definitions load, their defaults pass their own types, and
//! they render to the dialplan a PBX admin expects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use featpkg::ami_address::AmiAddress;
use featpkg::feature::{FeatureDef, PbxDir, PbxVars, RenderedContent, Written};

fn read(path: &str) -> Option<Vec<u8>> {
    let rel = path.strip_prefix("features/")?;
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("packaging/features")
            .join(rel),
    )
    .ok()
}

fn dirs() -> BTreeMap<PbxDir, String> {
    BTreeMap::from([
        (PbxDir::Etc, "/etc/asterisk".to_string()),
        (PbxDir::Agi, "/var/lib/asterisk/agi-bin".to_string()),
        (PbxDir::VarLib, "/var/lib/asterisk".to_string()),
        (PbxDir::Data, "/var/lib/asterisk".to_string()),
        (PbxDir::Spool, "/var/spool/asterisk".to_string()),
        (PbxDir::Log, "/var/log/asterisk".to_string()),
        (PbxDir::SysEtc, "/etc".to_string()),
    ])
}

fn block(def: &FeatureDef, user: &[(&str, &str)], edit: &str) -> Option<String> {
    let user: BTreeMap<String, String> = user
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = def.resolve_params(&user).unwrap();
    // Binaries are not needed to render blocks; give the reader an empty stand-in.
    let reader = |p: &str| read(p).or_else(|| p.starts_with("bin/").then(Vec::new));
    let r = def
        .render(
            &params,
            &PbxVars {
                dirs: &dirs(),
                ami: &AmiAddress::default(),
            },
            "demo",
            "0123abcd",
            &reader,
        )
        .unwrap();
    r.edits
        .into_iter()
        .find(|(_, e)| e.edit_id == edit)
        .map(|(_, e)| match e.content {
            RenderedContent::Block {
                body: Written::Full(body),
                ..
            } => body,
            _ => panic!("{edit} is not a rendered block"),
        })
}

#[test]
fn call_waiting_renders_with_parameters() {
    let def = FeatureDef::load("call-waiting", &read).unwrap();
    let dialplan = block(
        &def,
        &[("moh_class", "quiet"), ("hook_context", "my-hook")],
        "call-waiting/dialplan",
    )
    .unwrap();
    assert!(
        dialplan.contains(" same => n,Set(DIAL_QUEUE_OPTIONS=${DIAL_QUEUE_OPTIONS}m(quiet))\n"),
        "{dialplan}"
    );
    assert!(
        dialplan.contains("\n[my-hook]\nexten => _X!,1,Gosub(featpkg-call-waiting,${EXTEN},1)\n"),
        "{dialplan}"
    );
    assert_eq!(
        block(&def, &[], "call-waiting/modules").unwrap(),
        "load => func_extstate.so\n"
    );
    // No endpoints listed: pjsip.conf is left alone.
    assert_eq!(block(&def, &[], "call-waiting/endpoints"), None);
    assert_eq!(
        block(
            &def,
            &[("endpoints", "201, 202"), ("busy_at", "5")],
            "call-waiting/endpoints"
        )
        .unwrap(),
        "[201](+type=endpoint)\ndevice_state_busy_at = 5\n[202](+type=endpoint)\ndevice_state_busy_at = 5\n"
    );
}

#[test]
fn operator_alert_fallback_goes_on_or_hangs_up() {
    let def = FeatureDef::load("operator-alert", &read).unwrap();
    let hangup = block(&def, &[], "operator-alert/dialplan").unwrap();
    assert!(hangup.ends_with(" same => n,Hangup()\n"), "{hangup}");
    let goto = block(
        &def,
        &[("fallback", "from-internal,100,1")],
        "operator-alert/dialplan",
    )
    .unwrap();
    assert!(
        goto.ends_with(" same => n,Goto(from-internal,100,1)\n"),
        "{goto}"
    );
    assert!(
        goto.contains("exten => *600,1,AGI(/var/lib/asterisk/agi-bin/featpkg-operator-alert,menu,"),
        "{goto}"
    );
}

#[test]
fn refusals_name_the_parameter_and_rule() {
    let def = FeatureDef::load("call-waiting", &read).unwrap();
    let user = BTreeMap::from([("hint_context".to_string(), "x]y".to_string())]);
    let err = def.resolve_params(&user).unwrap_err().to_string();
    assert!(
        err.contains("feature call-waiting: parameter hint_context = \"x]y\" refused"),
        "{err}"
    );
}

#[test]
fn queue_failover_renders_every_status_in_order() {
    let def = FeatureDef::load("queue-failover", &read).unwrap();
    let statuses = featpkg::feature::param::QUEUE_STATUSES;
    let rules: Vec<String> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(r#"{{"queue":"2000","status":"{s}","destination":"internal,30{i},1"}}"#)
        })
        .collect();
    let rules = format!("[{}]", rules.join(","));
    let body = block(
        &def,
        &[("rules", &rules), ("default", "internal,200,1")],
        "queue-failover/dialplan",
    )
    .unwrap();
    let mut expected = String::from(
        "[notify-queue-failover]\n\
         ; Goto(notify-queue-failover,<queue number>,1) right after Queue(): the first rule that\n\
         ; matches the queue and ${QUEUESTATUS} decides where the call goes.\n\
         ; A route that leads back into an empty queue (a rule or the default pointing\n\
         ; at the queue's own entry, two queues pointing at each other) would spin the\n\
         ; channel through here thousands of times a second: after 10 passes the\n\
         ; call is logged and hung up instead.\n\
         exten => _X!,1,Set(FEATPKG_QF_PASSES=$[0${FEATPKG_QF_PASSES} + 1])\n\
         \x20same => n,GotoIf($[${FEATPKG_QF_PASSES} > 10]?loop)\n\
         \x20same => n,NoOp(featpkg queue-failover: queue ${EXTEN} ended with ${QUEUESTATUS})\n",
    );
    for (i, s) in statuses.iter().enumerate() {
        expected.push_str(&format!(
            " same => n,GotoIf($[\"${{EXTEN}}\" = \"2000\" & \"${{QUEUESTATUS}}\" = \"{s}\"]?internal,30{i},1)\n"
        ));
    }
    let guard = " same => n(loop),Log(WARNING,featpkg queue-failover: pass ${FEATPKG_QF_PASSES} through queue ${EXTEN} with status ${QUEUESTATUS}: the rules route this call in a loop, hanging up)\n same => n,Hangup()\n";
    expected.push_str(" same => n,Goto(internal,200,1)\n");
    expected.push_str(guard);
    assert_eq!(body, expected);
    // No rules, no default: the context still exists and hangs up.
    let empty = block(&def, &[], "queue-failover/dialplan").unwrap();
    assert!(
        empty.ends_with(&format!("QUEUESTATUS}})\n same => n,Hangup()\n{guard}")),
        "{empty}"
    );
}

//! The scratch Asterisk itself (tests/common/asterisk.rs): its phones and trunk
//! behave as real ones do, so the feature suites can trust them.

mod common;

use std::time::Duration;

use common::asterisk::{self, PhoneMode, wait_user_event};

#[test]
fn pjsip_phones_ring_answer_and_report_device_states() {
    let ast = asterisk::shared();
    let mut ami = ast.ami();
    assert_eq!(ast.device_state(&mut ami, "PJSIP/202"), "NOT_INUSE");
    assert_eq!(ast.device_state(&mut ami, "PJSIP/209"), "UNAVAILABLE");
    ast.call(&mut ami, "201", "202");
    let ring = wait_user_event(
        &mut ami,
        "PhoneRing",
        &[("Exten", "202")],
        Duration::from_secs(10),
    );
    assert_eq!(ring.get("CallerIDNum"), Some("201"), "{ring:?}");
    wait_user_event(
        &mut ami,
        "PhoneAnswer",
        &[("Exten", "202")],
        Duration::from_secs(10),
    );
    ast.wait_device_state(&mut ami, "PJSIP/202", "INUSE", Duration::from_secs(5));
    ast.wait_device_state(&mut ami, "PJSIP/201", "INUSE", Duration::from_secs(5));
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "PJSIP/202", "NOT_INUSE", Duration::from_secs(5));
}

#[test]
fn iax2_phones_ring_answer_and_report_device_states() {
    let ast = asterisk::shared();
    let mut ami = ast.ami();
    assert_eq!(ast.device_state(&mut ami, "IAX2/302"), "UNKNOWN");
    ast.call(&mut ami, "301", "302");
    let ring = wait_user_event(
        &mut ami,
        "PhoneRing",
        &[("Exten", "302")],
        Duration::from_secs(10),
    );
    assert_eq!(ring.get("CallerIDNum"), Some("301"), "{ring:?}");
    wait_user_event(
        &mut ami,
        "PhoneAnswer",
        &[("Exten", "302")],
        Duration::from_secs(10),
    );
    ast.wait_device_state(&mut ami, "IAX2/302", "INUSE", Duration::from_secs(5));
    ast.cli("channel request hangup all");
    ast.wait_device_state(&mut ami, "IAX2/302", "UNKNOWN", Duration::from_secs(5));
}

#[test]
fn a_busy_phone_refuses_with_busy() {
    let ast = asterisk::shared();
    let mut ami = ast.ami();
    for (caller, callee) in [("201", "202"), ("301", "302")] {
        ast.set_phone(callee, PhoneMode::Busy);
        ast.call(&mut ami, caller, callee);
        wait_user_event(
            &mut ami,
            "PhoneRing",
            &[("Exten", callee)],
            Duration::from_secs(10),
        );
        let status = wait_user_event(
            &mut ami,
            "PbxDialStatus",
            &[("Exten", callee)],
            Duration::from_secs(10),
        );
        assert_eq!(
            status.get("Status"),
            Some("BUSY"),
            "{caller} -> {callee}: {status:?}"
        );
    }
}

#[test]
fn the_trunk_far_end_hears_dtmf_over_pjsip_and_iax2() {
    let ast = asterisk::shared();
    let mut ami = ast.ami();
    for (channel, number) in [
        ("PJSIP/5551234@provider", "5551234"),
        ("IAX2/provider/5551235", "5551235"),
    ] {
        ami.originate(&[
            ("Channel", channel),
            ("Application", "SendDTMF"),
            ("Data", "7001#"),
        ])
        .unwrap();
        wait_user_event(
            &mut ami,
            "PhoneAnswer",
            &[("Exten", number)],
            Duration::from_secs(10),
        );
        wait_user_event(
            &mut ami,
            "PhoneDtmf",
            &[("Exten", number), ("Digit", "#")],
            Duration::from_secs(10),
        );
        assert_eq!(ast.phone_dtmf(number), "7001#", "{channel}");
    }
}

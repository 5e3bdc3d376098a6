//! The operator-alert AGI program in full conversations with a fake Asterisk:
//! the real environment block, real replies, hangups, silence, hostile caller IDs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use featpkg_agi::fake::{Call, DEAD_CHANNEL, FakePeer};

const BIN: &str = env!("CARGO_BIN_EXE_featpkg-operator-alert");
const SCRIPT: &str = "/var/lib/asterisk/agi-bin/featpkg-operator-alert";

fn args(mode: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        mode.to_string(),
        "family=op_alert".to_string(),
        "pattern=_2XX".to_string(),
        format!("dir={}", dir.display()),
        "deadline=2".to_string(),
        "maxrec=60".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start(mode: &str, callerid: &str, exten: &str, dir: &Path, extra: &[&str]) -> FakePeer {
    let context = if mode == "menu" {
        "featpkg-operator-alert-menu"
    } else {
        "featpkg-operator-alert-noanswer"
    };
    let mut call = Call::new(SCRIPT, callerid, context, exten);
    call.args = args(mode, dir, extra);
    FakePeer::start(Path::new(BIN), &call, &[])
}

fn recordings() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("operator-alert");
    (tmp, dir)
}

/// A WAV file as Asterisk's format_wav writes it: the 44-byte header (RIFF,
/// `fmt ` 16-bit mono PCM at 8 kHz, `data`) and `samples` samples of audio.
/// `wav(0)` is what an empty recording leaves.
fn wav(samples: u32) -> Vec<u8> {
    let data = samples * 2;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.extend((0..samples).flat_map(|i| (((i % 40) as i16 - 20) * 500).to_le_bytes()));
    assert_eq!(out.len(), 44 + data as usize);
    out
}

/// The menu up to RECORD FILE, which is returned unanswered: the operator
/// pressed 1 and heard the record prompt.
fn until_record_file(peer: &mut FakePeer) -> String {
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=1");
    peer.expect(
        "STREAM FILE \"vm-rec-temp\" \"\"",
        "200 result=0 endpos=28800",
    );
    peer.next_command(Duration::from_secs(2))
        .expect("RECORD FILE")
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn exits_ok(peer: &mut FakePeer) {
    let (status, _) = peer
        .wait(Duration::from_secs(3))
        .expect("the program must exit by itself");
    assert!(
        status.success(),
        "exit status {status}; transcript {:?}",
        peer.transcript
    );
}

/// A recording with audio replaces the older message: Asterisk records to
/// `<op>.new.wav`, the program renames it over `<op>.wav`, then flags it.
#[test]
fn record_flow_saves_the_message_and_sets_the_flag() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    let record = until_record_file(&mut peer);
    assert_eq!(
        record,
        format!(
            "RECORD FILE \"{}/201.new\" \"wav\" \"#\" 60000 BEEP",
            dir.display()
        )
    );
    assert!(dir.is_dir(), "the program creates the recordings directory");
    // What Asterisk leaves for 1.5 s said, then # (the last 200 ms cut).
    std::fs::write(dir.join("201.new.wav"), wav(12000)).unwrap();
    peer.reply("200 result=35 (dtmf) endpos=12000");
    let put = peer.next_command(Duration::from_secs(2));
    // The flag comes once the message is in place: a caller who gets the
    // flag finds the file.
    assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), wav(12000));
    assert_eq!(
        put.as_deref(),
        Some("DATABASE PUT \"op_alert\" \"201\" \"1\"")
    );
    peer.reply("200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    exits_ok(&mut peer);
    assert!(
        peer.next_command(Duration::from_millis(50)).is_none(),
        "nothing after the goodbye"
    );
    assert_eq!(names(&dir), ["201.wav"], "no temporary file is left");
}

#[test]
fn a_new_message_replaces_the_older_one() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("201.wav"), wav(30000)).unwrap();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    until_record_file(&mut peer);
    assert_eq!(
        std::fs::read(dir.join("201.wav")).unwrap(),
        wav(30000),
        "the older message stays while the new one is recorded"
    );
    std::fs::write(dir.join("201.new.wav"), wav(480_000)).unwrap();
    // maxrec reached: res_agi answers (timeout) with the samples recorded.
    peer.reply("200 result=0 (timeout) endpos=480000");
    peer.expect("DATABASE PUT \"op_alert\" \"201\" \"1\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    exits_ok(&mut peer);
    assert_eq!(names(&dir), ["201.wav"]);
    assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), wav(480_000));
}

/// gsm has no header: any byte is audio (one 20 ms frame is 33 bytes).
#[test]
fn a_gsm_message_is_saved_under_its_own_extension() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &["format=gsm"]);
    let record = until_record_file(&mut peer);
    assert!(
        record.starts_with(&format!(
            "RECORD FILE \"{}/201.new\" \"gsm\" ",
            dir.display()
        )),
        "{record}"
    );
    std::fs::write(dir.join("201.new.gsm"), vec![0xd8; 33 * 50]).unwrap();
    peer.reply("200 result=35 (dtmf) endpos=8000");
    peer.expect("DATABASE PUT \"op_alert\" \"201\" \"1\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    exits_ok(&mut peer);
    assert_eq!(names(&dir), ["201.gsm"]);
}

/// Nothing was said: `#` right after the tone (res_agi cuts the last 200 ms
/// and answers endpos=0), a phone that sends no audio until maxrec, `#`
/// during the tone itself (no file is opened: `(randomerror)` with the key).
/// No message is saved: the older one and its flag stay as they were, and
/// the operator hears that it was too short instead of "thank you".
#[test]
fn an_empty_recording_is_not_saved_and_the_older_message_is_kept() {
    for (older, reply, leaves) in [
        (true, "200 result=35 (dtmf) endpos=0", Some(wav(0))),
        (true, "200 result=0 (timeout) endpos=0", Some(wav(0))),
        (true, "200 result=35 (randomerror) endpos=0", None),
        (false, "200 result=35 (dtmf) endpos=0", Some(wav(0))),
        // endpos>0 but nothing on disk past the header: not a message either.
        (true, "200 result=35 (dtmf) endpos=160", Some(wav(0))),
    ] {
        let (_t, dir) = recordings();
        std::fs::create_dir_all(&dir).unwrap();
        if older {
            std::fs::write(dir.join("201.wav"), wav(16000)).unwrap();
        }
        let mut peer = start("menu", "201", "*600", &dir, &[]);
        until_record_file(&mut peer);
        if let Some(bytes) = &leaves {
            std::fs::write(dir.join("201.new.wav"), bytes).unwrap();
        }
        peer.reply(reply);
        let verbose = peer.next_command(Duration::from_secs(2)).unwrap();
        assert!(
            verbose.starts_with(
                "VERBOSE \"featpkg operator-alert: the recording for 201 held no audio"
            ) && verbose.ends_with(" 2"),
            "{reply}: {verbose}"
        );
        peer.reply("200 result=1");
        peer.expect(
            "STREAM FILE \"vm-tooshort\" \"\"",
            "200 result=0 endpos=11000",
        );
        exits_ok(&mut peer);
        assert!(
            !peer
                .transcript
                .iter()
                .any(|c| c.starts_with("DATABASE") || c.contains("auth-thankyou")),
            "{reply}: the flag is untouched and nothing is called saved: {:?}",
            peer.transcript
        );
        if older {
            assert_eq!(names(&dir), ["201.wav"], "{reply}");
            assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), wav(16000));
        } else {
            assert!(names(&dir).is_empty(), "{reply}: {:?}", names(&dir));
        }
    }
}

#[test]
fn the_sound_for_an_empty_recording_can_be_chosen() {
    let (_t, dir) = recordings();
    let mut peer = start(
        "menu",
        "201",
        "*600",
        &dir,
        &["empty_sound=vm-pls-try-again"],
    );
    until_record_file(&mut peer);
    std::fs::write(dir.join("201.new.wav"), wav(0)).unwrap();
    peer.reply("200 result=35 (dtmf) endpos=0");
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("VERBOSE ")
    );
    peer.reply("200 result=1");
    peer.expect(
        "STREAM FILE \"vm-pls-try-again\" \"\"",
        "200 result=0 endpos=8000",
    );
    exits_ok(&mut peer);
}

/// The operator hangs up mid-recording: what was said is kept (RECORD FILE
/// keeps the partial file, complete), saved and flagged; nothing is played.
#[test]
fn hangup_while_recording_keeps_the_message() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("202.wav"), wav(16000)).unwrap();
    let mut peer = start("menu", "202", "*600", &dir, &[]);
    assert!(until_record_file(&mut peer).starts_with("RECORD FILE"));
    std::fs::write(dir.join("202.new.wav"), wav(41000)).unwrap(); // Asterisk keeps the partial file
    let hung = peer.hangup();
    peer.reply("200 result=-1 (hangup) endpos=41000");
    // DATABASE PUT is allowed on a dead channel; nothing else may be sent.
    peer.expect("DATABASE PUT \"op_alert\" \"202\" \"1\"", "200 result=1");
    let (status, at) = peer
        .wait(Duration::from_secs(1))
        .expect("must exit after hangup");
    assert!(status.success());
    assert!(
        at.duration_since(hung) < Duration::from_millis(250),
        "exited {:?} after SIGHUP",
        at.duration_since(hung)
    );
    assert_eq!(peer.transcript.len(), 5, "{:?}", peer.transcript);
    assert_eq!(names(&dir), ["202.wav"]);
    assert_eq!(std::fs::read(dir.join("202.wav")).unwrap(), wav(41000));
}

/// The operator hangs up as the recording starts: nothing was recorded, the
/// older message and its flag stay, and the program leaves at once.
#[test]
fn hangup_as_the_recording_starts_keeps_the_older_message() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("202.wav"), wav(16000)).unwrap();
    let mut peer = start("menu", "202", "*600", &dir, &[]);
    assert!(until_record_file(&mut peer).starts_with("RECORD FILE"));
    std::fs::write(dir.join("202.new.wav"), wav(0)).unwrap();
    let hung = peer.hangup();
    peer.reply("200 result=-1 (hangup) endpos=0");
    let (status, at) = peer
        .wait(Duration::from_secs(1))
        .expect("must exit after hangup");
    assert!(status.success());
    assert!(
        at.duration_since(hung) < Duration::from_millis(250),
        "exited {:?} after SIGHUP",
        at.duration_since(hung)
    );
    assert_eq!(
        peer.transcript.len(),
        4,
        "nothing after RECORD FILE: {:?}",
        peer.transcript
    );
    assert_eq!(names(&dir), ["202.wav"]);
    assert_eq!(std::fs::read(dir.join("202.wav")).unwrap(), wav(16000));
}

/// A run ended mid-recording (its deadline, an Asterisk restart) leaves
/// `<op>.new.wav`: play never reads it, the next recording removes it first
/// (so a recording that never started cannot pick it up), delete removes it.
#[test]
fn a_leftover_temporary_recording_is_never_taken_for_a_message() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("201.wav"), wav(16000)).unwrap();
    std::fs::write(dir.join("201.new.wav"), wav(5000)).unwrap();

    let mut peer = start("menu", "201", "*600", &dir, &[]);
    until_record_file(&mut peer);
    assert!(
        !dir.join("201.new.wav").exists(),
        "the leftover is gone before RECORD FILE"
    );
    // The channel went away before the recording started.
    peer.reply(DEAD_CHANNEL);
    let (status, _) = peer.wait(Duration::from_secs(1)).expect("exit after 511");
    assert!(status.success());
    assert_eq!(peer.transcript.len(), 4, "{:?}", peer.transcript);
    assert_eq!(names(&dir), ["201.wav"]);
    assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), wav(16000));

    // Only the leftover (no message): play finds nothing to play.
    std::fs::remove_file(dir.join("201.wav")).unwrap();
    std::fs::write(dir.join("201.new.wav"), wav(5000)).unwrap();
    let mut peer = start("play", "300", "201", &dir, &[]);
    peer.expect("DATABASE GET \"op_alert\" \"201\"", "200 result=1 (1)");
    peer.expect(
        "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"0\"",
        "200 result=1",
    );
    exits_ok(&mut peer);

    // *600, 2 takes the leftover with the message.
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=2");
    peer.expect("DATABASE DEL \"op_alert\" \"201\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"vm-tempremoved\" \"\"",
        "200 result=0 endpos=12000",
    );
    exits_ok(&mut peer);
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

#[test]
fn delete_flow_removes_the_file_with_a_file_system_call() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("201.wav"), b"old").unwrap();
    std::fs::write(dir.join("203.wav"), b"someone else's").unwrap();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=2");
    peer.expect("DATABASE DEL \"op_alert\" \"201\"", "200 result=1");
    assert!(!dir.join("201.wav").exists());
    assert!(
        dir.join("203.wav").exists(),
        "only the caller's own message goes"
    );
    peer.expect(
        "STREAM FILE \"vm-tempremoved\" \"\"",
        "200 result=0 endpos=12000",
    );
    exits_ok(&mut peer);
    assert!(
        !peer
            .transcript
            .iter()
            .any(|c| c.contains("EXEC") || c.contains("System")),
        "{:?}",
        peer.transcript
    );
}

#[test]
fn menu_timeout_ends_quietly() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect(
        "GET DATA \"vm-tempgreeting2\" 5000 1",
        "200 result= (timeout)",
    );
    exits_ok(&mut peer);
    assert!(!dir.exists());
}

/// A channel already up (answered by an earlier step, or a Local channel):
/// the message plays as it is, no Progress, no ANSWER.
#[test]
fn play_flow_with_a_message() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("205.wav"), b"msg").unwrap();
    let mut peer = start("play", "300", "205", &dir, &[]);
    peer.expect("DATABASE GET \"op_alert\" \"205\"", "200 result=1 (1)");
    // res_agi.c handle_channelstatus: the channel's state, 6 = AST_STATE_UP.
    peer.expect("CHANNEL STATUS", "200 result=6");
    peer.expect(
        &format!("STREAM FILE \"{}/205\" \"\"", dir.display()),
        "200 result=0 endpos=64000",
    );
    peer.expect(
        "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"1\"",
        "200 result=1",
    );
    exits_ok(&mut peer);
    assert!(
        !peer
            .transcript
            .iter()
            .any(|c| c.starts_with("EXEC") || c == "ANSWER"),
        "{:?}",
        peer.transcript
    );
}

/// The usual no-answer path: the caller's call was never answered (Ring, 4,
/// for a call coming in; Ringing, 5, once Dial passed the ringing back).
/// STREAM FILE alone sends a SIP caller no media: early media first, and the
/// call is not answered (it would be billed as a connected call).
#[test]
fn play_on_an_unanswered_call_sends_progress_before_the_message() {
    for state in ["4", "5"] {
        let (_t, dir) = recordings();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("205.wav"), b"msg").unwrap();
        let mut peer = start("play", "300", "205", &dir, &[]);
        peer.expect("DATABASE GET \"op_alert\" \"205\"", "200 result=1 (1)");
        peer.expect("CHANNEL STATUS", &format!("200 result={state}"));
        // res_agi.c handle_exec: the application's return, 0 for Progress.
        peer.expect("EXEC Progress", "200 result=0");
        peer.expect(
            &format!("STREAM FILE \"{}/205\" \"\"", dir.display()),
            "200 result=0 endpos=64000",
        );
        peer.expect(
            "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"1\"",
            "200 result=1",
        );
        exits_ok(&mut peer);
        assert!(
            !peer.transcript.iter().any(|c| c == "ANSWER"),
            "the no-answer path is not answered: {:?}",
            peer.transcript
        );
    }
}

/// The caller hangs up just as the message would start: out at once, nothing
/// streamed to a dead channel.
#[test]
fn a_hangup_before_the_message_ends_play_at_once() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("205.wav"), b"msg").unwrap();
    let mut peer = start("play", "300", "205", &dir, &["deadline=10"]);
    peer.expect("DATABASE GET \"op_alert\" \"205\"", "200 result=1 (1)");
    assert_eq!(
        peer.next_command(Duration::from_secs(2)).as_deref(),
        Some("CHANNEL STATUS")
    );
    let hung = peer.hangup();
    let (status, at) = peer
        .wait(Duration::from_secs(2))
        .expect("must exit after SIGHUP");
    assert!(status.success(), "{status}");
    let took = at.duration_since(hung);
    assert!(took < Duration::from_millis(150), "took {took:?}");
    assert!(
        !peer
            .transcript
            .iter()
            .any(|c| c.starts_with("STREAM FILE") || c.starts_with("EXEC")),
        "{:?}",
        peer.transcript
    );
}

#[test]
fn play_flow_without_a_message() {
    let (_t, dir) = recordings();
    let mut peer = start("play", "300", "205", &dir, &[]);
    peer.expect("DATABASE GET \"op_alert\" \"205\"", "200 result=0");
    peer.expect(
        "SET VARIABLE \"OPERATOR_ALERT_PLAYED\" \"0\"",
        "200 result=1",
    );
    exits_ok(&mut peer);
}

#[test]
fn hostile_caller_ids_are_refused_without_touching_anything() {
    let long = "2".repeat(200);
    for hostile in [
        "../../etc/passwd",
        "1;rm",
        "",
        "unknown",
        long.as_str(),
        "2\"01",
        "20 1",
        // Asterisk writes the value unescaped: the line break reaches us raw.
        "20\n1",
        "\n201",
        "201\n\nANSWER",
        "201\r",
        // A NUL ends the C string: Asterisk sends `unknown`.
        "\u{0}201",
        "+201",
        "\u{ff12}\u{ff10}\u{ff11}",
        "\u{662}\u{660}\u{661}",
    ] {
        let (_t, dir) = recordings();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("201.wav"), b"keep").unwrap();
        let before: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mut peer = start("menu", hostile, "*600", &dir, &[]);
        let verbose = peer.next_command(Duration::from_secs(2)).unwrap();
        assert!(
            verbose.starts_with("VERBOSE \"featpkg operator-alert: refused caller ID "),
            "{hostile:?}: {verbose}"
        );
        assert!(verbose.ends_with(" 1"), "{verbose}");
        assert!(
            !verbose.contains(&long),
            "a 200-digit value is shown truncated"
        );
        peer.reply("200 result=1");
        exits_ok(&mut peer);
        assert_eq!(
            peer.transcript.len(),
            1,
            "{hostile:?}: only the refusal is logged: {:?}",
            peer.transcript
        );
        let after: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before, after);
        assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), b"keep");
    }
}

#[test]
fn hostile_extension_in_play_mode_is_refused() {
    let (_t, dir) = recordings();
    let mut peer = start("play", "201", "../201", &dir, &[]);
    let verbose = peer.next_command(Duration::from_secs(2)).unwrap();
    assert!(
        verbose.starts_with("VERBOSE \"featpkg operator-alert: refused extension \\\"../201\\\""),
        "{verbose}"
    );
    peer.reply("200 result=1");
    exits_ok(&mut peer);
    assert_eq!(peer.transcript.len(), 1);
}

#[test]
fn sighup_mid_conversation_exits_within_100_ms() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &["deadline=10"]);
    peer.expect("ANSWER", "200 result=0");
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("GET DATA")
    );
    // Asterisk is slow to answer; the caller hangs up meanwhile.
    let hung = peer.hangup();
    let (status, at) = peer
        .wait(Duration::from_secs(2))
        .expect("must exit after SIGHUP");
    let took = at.duration_since(hung);
    assert!(took < Duration::from_millis(150), "took {took:?}");
    assert!(status.success(), "{status}");
}

#[test]
fn silent_asterisk_cannot_hold_the_call() {
    let (_t, dir) = recordings();
    let started = Instant::now();
    let mut peer = start("play", "300", "205", &dir, &["deadline=1"]);
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("DATABASE GET")
    );
    // Never answer.
    let (status, at) = peer
        .wait(Duration::from_secs(4))
        .expect("deadline must end the program");
    let took = at.duration_since(started);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
    assert_eq!(status.code(), Some(featpkg_agi::EXIT_DEADLINE));
}

#[test]
fn dead_channel_reply_stops_everything_but_persistence() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=1");
    peer.expect("STREAM FILE \"vm-rec-temp\" \"\"", DEAD_CHANNEL);
    let (status, _) = peer.wait(Duration::from_secs(1)).expect("exit after 511");
    assert!(status.success());
    assert_eq!(peer.transcript.len(), 3, "{:?}", peer.transcript);
}

#[test]
fn bad_arguments_are_logged_and_fail() {
    let (_t, dir) = recordings();
    let mut call = Call::new(SCRIPT, "201", "x", "*600");
    call.args = args("menu", &dir, &["dir=../../tmp"]);
    let mut peer = FakePeer::start(Path::new(BIN), &call, &[]);
    let verbose = peer.next_command(Duration::from_secs(2)).unwrap();
    assert!(verbose.contains("bad arguments: dir="), "{verbose}");
    peer.reply("200 result=1");
    let (status, _) = peer.wait(Duration::from_secs(2)).unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn a_caller_name_that_is_not_utf8_does_not_break_the_call() {
    let (_t, dir) = recordings();
    let mut call = Call::new(SCRIPT, "201", "featpkg-operator-alert-menu", "*600");
    call.calleridname = "M\u{1}ller".into();
    call.args = args("menu", &dir, &[]);
    // Latin-1 "Müller", as an old phone sends it.
    let block: Vec<u8> = call
        .env_block()
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xfc } else { b })
        .collect();
    let mut peer = FakePeer::start_with_block(Path::new(BIN), &call, &block, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect(
        "GET DATA \"vm-tempgreeting2\" 5000 1",
        "200 result= (timeout)",
    );
    exits_ok(&mut peer);
}

#[test]
fn a_recording_asterisk_could_not_write_is_not_reported_as_saved() {
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("201.wav"), b"old").unwrap();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=1");
    peer.expect(
        "STREAM FILE \"vm-rec-temp\" \"\"",
        "200 result=0 endpos=28800",
    );
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("RECORD FILE")
    );
    assert!(!dir.join("201.new.wav").exists());
    peer.reply("200 result=-1 (writefile)");
    let verbose = peer.next_command(Duration::from_secs(2)).unwrap();
    assert!(
        verbose
            .starts_with("VERBOSE \"featpkg operator-alert: recording for 201 failed (writefile)"),
        "{verbose}"
    );
    peer.reply("200 result=1");
    exits_ok(&mut peer);
    assert!(
        !peer
            .transcript
            .iter()
            .any(|c| c.contains("auth-thankyou") || c.starts_with("DATABASE")),
        "{:?}",
        peer.transcript
    );
    assert_eq!(std::fs::read(dir.join("201.wav")).unwrap(), b"old");
    assert_eq!(names(&dir), ["201.wav"]);
}

#[test]
fn asterisk_closing_the_pipe_ends_the_program_at_once() {
    let (_t, dir) = recordings();
    let mut peer = start("menu", "201", "*600", &dir, &["deadline=10"]);
    peer.expect("ANSWER", "200 result=0");
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("GET DATA")
    );
    let closed = Instant::now();
    peer.close();
    let (status, at) = peer.wait(Duration::from_secs(2)).expect("exits on EOF");
    assert!(status.success(), "{status}");
    assert!(at.duration_since(closed) < Duration::from_millis(100));
}

#[test]
fn the_fake_peer_writes_the_block_as_asterisk_does() {
    let mut call = Call::new(SCRIPT, "", "ctx", "*600");
    call.calleridname = String::new();
    call.args = vec!["menu".into(), "a b".into(), "x\0y".into()];
    assert_eq!(
        call.env_block(),
        "agi_request: /var/lib/asterisk/agi-bin/featpkg-operator-alert\n\
         agi_channel: PJSIP/201-0000002a\n\
         agi_language: en\n\
         agi_type: PJSIP\n\
         agi_uniqueid: 1763900000.42\n\
         agi_version: 22.5.0\n\
         agi_callerid: unknown\n\
         agi_calleridname: unknown\n\
         agi_callingpres: 0\n\
         agi_callingani2: 0\n\
         agi_callington: 0\n\
         agi_callingtns: 0\n\
         agi_dnid: *600\n\
         agi_rdnis: unknown\n\
         agi_context: ctx\n\
         agi_extension: *600\n\
         agi_priority: 1\n\
         agi_enhanced: 0.0\n\
         agi_accountcode: \n\
         agi_threadid: 140234567890\n\
         agi_arg_1: menu\n\
         agi_arg_2: a b\n\
         agi_arg_3: x\n\
         \n"
    );
    assert_eq!(call.argv(), ["menu", "a b", "x"]);
}

#[test]
fn recording_leaves_the_mode_of_an_existing_directory_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (_t, dir) = recordings();
    std::fs::create_dir_all(&dir).unwrap();
    // The admin lets a web UI's group write the messages too.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut peer = start("menu", "201", "*600", &dir, &[]);
    peer.expect("ANSWER", "200 result=0");
    peer.expect("GET DATA \"vm-tempgreeting2\" 5000 1", "200 result=1");
    peer.expect(
        "STREAM FILE \"vm-rec-temp\" \"\"",
        "200 result=0 endpos=28800",
    );
    assert!(
        peer.next_command(Duration::from_secs(2))
            .unwrap()
            .starts_with("RECORD FILE")
    );
    std::fs::write(dir.join("201.new.wav"), wav(96000)).unwrap();
    peer.reply("200 result=0 (timeout) endpos=96000");
    peer.expect("DATABASE PUT \"op_alert\" \"201\" \"1\"", "200 result=1");
    peer.expect(
        "STREAM FILE \"auth-thankyou\" \"\"",
        "200 result=0 endpos=9600",
    );
    exits_ok(&mut peer);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o770);
}

//! operator-alert on the real scratch Asterisk, with real PJSIP calls:
//!
//! * an operator (phone 201) dials `*600`, presses 1 and speaks: their
//!   message is on disk as a valid WAV with real audio in it, and AstDB
//!   `op_alert/201` flags it;
//! * a SIP caller (202) whose call to that operator (203, never answers) is
//!   not answered hears the message: the PBX sends it early media (183
//!   Session Progress with SDP) and the audio reaches the caller's phone;
//! * `*600` then 2 deletes the file and the flag;
//! * the operator hanging up in the middle of the recording ends the AGI
//!   program at once (the time is measured two ways) and leaves a complete
//!   WAV, flagged, as main.rs documents;
//! * an empty recording (nothing said, a phone that sends no audio while
//!   silent) is not saved as a message;
//! * hostile caller IDs are refused before anything is answered, written or
//!   flagged. A SIP phone cannot bring one (the PBX's endpoint sets 201's
//!   caller ID whatever the phone sends, checked here), so they come in
//!   through a Local channel into [internal] whose caller ID the test sets.
//!
//! Each scenario runs in both `agi_mode`s (README, "FastAGI mode"): the
//! per-call program, and featpkg-agid started from its installed cron line
//! (the `_over_fastagi` tests). Each ends by asserting, from the log, that
//! every AGI call went the mode's way: in fastagi mode all served by the
//! server, none by the per-call fallback.
//!
//! "Speaking" is the operator's phone playing music on hold into the call:
//! the phone-side channel is originated with `MusicOnHold()` as its
//! application, so it stays on the line and sends real audio (ulaw RTP)
//! to the PBX; the operator's keys are AMI `PlayDTMF` on that phone-side
//! channel (RFC 4733 events over RTP, as a phone sends them).
//!
//! What a caller hears is read from the caller's own side: the SIP responses
//! its phone received (`pjsip set logger on`: res_pjsip_logger writes every
//! SIP message to the log) and the audio its phone received (`MixMonitor`
//! on the caller's phone-side channel, recording what it reads).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agid::{Agi, AgiMode};
use common::asterisk::{self, Asterisk, PhoneMode, wait_user_event};

const WAIT: Duration = Duration::from_secs(15);
/// How long the operator speaks into a recording.
const SPEAK: Duration = Duration::from_millis(2500);

/// Installs operator-alert in `mode` on a PBX with no operator messages (the
/// harness's reset clears the spool, not this feature's AstDB family); in
/// fastagi mode starts featpkg-agid from the installed cron line.
fn install(ast: &Asterisk, mode: AgiMode) -> Agi {
    ast.cli("database deltree op_alert");
    let bundle = common::bundle();
    let mut agi = Agi::new(mode, "operator-alert");
    let sets = agi.sets();
    let mut args = vec![
        "install",
        bundle.to_str().unwrap(),
        "--features",
        "operator-alert",
    ];
    for set in &sets {
        args.extend(["--set", set]);
    }
    ast.featpkg_ok(&args);
    agi.start(ast);
    agi
}

/// The recordings directory the feature renders (`dir=` of the AGI program).
fn messages_dir(ast: &Asterisk) -> PathBuf {
    ast.spool().join("featpkg/operator-alert")
}

/// AstDB `op_alert` as `database show op_alert` lists it: (key, value).
fn flags(ast: &Asterisk) -> Vec<(String, String)> {
    ast.cli("database show op_alert")
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(" : ")?;
            let key = key.trim().strip_prefix("/op_alert/")?;
            Some((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

fn flag(ast: &Asterisk, operator: &str) -> Option<String> {
    flags(ast)
        .into_iter()
        .find(|(k, _)| k == operator)
        .map(|(_, v)| v)
}

/// Every file and directory under `dir` (relative paths), sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Polls the log (from `mark`) until `done` accepts it; returns it.
fn wait_log(ast: &Asterisk, mark: usize, what: &str, done: impl Fn(&str) -> bool) -> String {
    ast.wait_log(mark, what, WAIT, done)
}

/// The channel named in the first log line that contains `before` (the name
/// starts right after it and ends at the next `"` or `>`).
fn channel_after(log: &str, before: &str) -> Option<String> {
    let at = log.find(before)? + before.len();
    let rest = &log[at..];
    let end = rest.find(['"', '>'])?;
    Some(rest[..end].to_string())
}

/// The log entries (one per timestamped line, continuation lines included).
fn entries(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        if line.starts_with("[20") || out.is_empty() {
            out.push(line.to_string());
        } else {
            let last = out.last_mut().unwrap();
            last.push('\n');
            last.push_str(line);
        }
    }
    out
}

/// Milliseconds since midnight of an entry's `[YYYY-MM-DD HH:MM:SS.mmm]`.
fn entry_ms(entry: &str) -> i64 {
    let stamp = &entry[1..entry.find(']').expect("a timestamped entry")];
    let time = stamp.split(' ').nth(1).unwrap();
    let (hms, ms) = time.split_once('.').unwrap();
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().unwrap());
    let (h, m, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    ((h * 60 + m) * 60 + s) * 1000 + ms.parse::<i64>().unwrap()
}

/// One call a phone placed, seen from both ends.
struct PhoneCall {
    /// The phone's own channel (`PJSIP/phone201-00000003`): where its keys
    /// are pressed and where it hangs up.
    phone: String,
    /// The caller's channel on the PBX (`PJSIP/201-00000004`).
    pbx: String,
}

/// What a phone sends into its call once the PBX answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Voice {
    /// Music on hold played into the line: real ulaw RTP, as speech is.
    Speaks,
    /// No RTP at all, as a phone with silence suppression sends while the
    /// operator says nothing.
    Quiet,
}

/// Phone `from` dials the service code; once the PBX answers, the phone
/// speaks into the call for as long as it lasts (or stays quiet). Waits
/// until the menu prompt is playing.
fn dial_service(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    mode: AgiMode,
    from: &str,
    voice: Voice,
    mark: usize,
) -> PhoneCall {
    let channel = Asterisk::phone_channel(from, "*600");
    let (app, data) = match voice {
        Voice::Speaks => ("MusicOnHold", "default"),
        Voice::Quiet => ("Wait", "60"),
    };
    let id = ami
        .originate(&[
            ("Channel", &channel),
            ("Application", app),
            ("Data", data),
            ("Timeout", "20000"),
            ("CallerID", &format!("\"Phone {from}\" <{from}>")),
        ])
        .unwrap();
    let answered = ami
        .wait_event(WAIT, |m| {
            m.event() == Some("OriginateResponse") && m.get("ActionID") == Some(id.as_str())
        })
        .unwrap_or_else(|e| panic!("{channel}: no OriginateResponse: {e}"));
    assert_eq!(
        answered.get("Response"),
        Some("Success"),
        "the PBX did not answer *600 from {from}: {answered:?}\n{}",
        asterisk::tail(&ast.log_since(mark), 60)
    );
    let phone = answered.get("Channel").unwrap().to_string();
    let log = wait_log(ast, mark, "menu prompt", |log| {
        log.contains("Playing 'vm-tempgreeting2.")
    });
    let pbx = channel_after(&log, &mode.agi_start("*600", "internal"))
        .expect("*600 ran the operator-alert AGI program");
    assert!(pbx.starts_with(&format!("PJSIP/{from}-")), "{pbx}");
    PhoneCall { phone, pbx }
}

/// The phone presses `digit` (RFC 4733 from the phone's side of the call).
fn press(ami: &mut featpkg_ami::Ami, call: &PhoneCall, digit: &str) {
    ami.send(
        featpkg_ami::action(
            "PlayDTMF",
            &[
                ("Channel", &call.phone),
                ("Digit", digit),
                ("Duration", "150"),
            ],
        )
        .unwrap(),
    )
    .unwrap_or_else(|e| panic!("PlayDTMF {digit} on {}: {e}", call.phone));
}

fn hang_up(ami: &mut featpkg_ami::Ami, channel: &str) {
    ami.send(featpkg_ami::action("Hangup", &[("Channel", channel)]).unwrap())
        .unwrap_or_else(|e| panic!("Hangup {channel}: {e}"));
}

/// Hangs `channel` up unless the PBX already ended the call.
fn hang_up_if_up(ami: &mut featpkg_ami::Ami, channel: &str) {
    match ami.send(featpkg_ami::action("Hangup", &[("Channel", channel)]).unwrap()) {
        Ok(_) => {}
        Err(featpkg_ami::AmiError::Refused(m)) if m.contains("No such channel") => {}
        Err(e) => panic!("Hangup {channel}: {e}"),
    }
}

/// The log line res_agi writes once the program closed its end of the pipe
/// (it exited).
fn agi_done(pbx: &str) -> String {
    format!("<{pbx}>AGI Script ")
}

/// Waits until the AGI program on `pbx` is done; returns the log.
fn wait_agi_done(ast: &Asterisk, mark: usize, pbx: &str) -> String {
    let done = agi_done(pbx);
    wait_log(ast, mark, "end of the AGI program", |log| {
        log.lines()
            .any(|l| l.contains(&done) && l.contains("completed"))
    })
}

/// An operator records a message through `*600`, 1, speaking, `#`; asserts
/// what they hear and what is stored. Returns the message file.
fn record_message(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    mode: AgiMode,
    operator: &str,
) -> PathBuf {
    let mark = ast.log_mark();
    let call = dial_service(ast, ami, mode, operator, Voice::Speaks, mark);
    press(ami, &call, "1");
    wait_log(ast, mark, "record prompt and beep", |log| {
        log.contains(&format!("<{}> Playing 'beep.", call.pbx))
    });
    std::thread::sleep(SPEAK);
    press(ami, &call, "#");
    let log = wait_agi_done(ast, mark, &call.pbx);
    hang_up_if_up(ami, &call.phone);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&call.pbx)).collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    // What the operator heard, in order: menu, "record after the tone", the
    // tone, and "thank you" once the message was saved.
    let order = [
        at("Playing 'vm-tempgreeting2."),
        at("Playing 'vm-rec-temp."),
        at("Playing 'beep."),
        at("Playing 'auth-thankyou."),
    ];
    assert!(
        order.iter().all(Option::is_some) && order.is_sorted(),
        "{operator} heard {order:?} (menu, record prompt, beep, thank you):\n{}",
        lines.join("\n")
    );
    let file = messages_dir(ast).join(format!("{operator}.wav"));
    let wav = Wav::read(&file);
    eprintln!(
        "{}: {} bytes, {:.2} s, {:.2} s of it loud, rms {:.0}",
        file.display(),
        std::fs::metadata(&file).unwrap().len(),
        wav.seconds(),
        wav.loud_seconds(),
        wav.rms()
    );
    assert!(
        wav.seconds() >= SPEAK.as_secs_f64() - 1.0 && wav.seconds() <= SPEAK.as_secs_f64() + 2.0,
        "{} holds {:.2} s for {SPEAK:?} spoken",
        file.display(),
        wav.seconds()
    );
    assert!(
        wav.loud_seconds() >= 1.0,
        "{}: only {:.2} s of its {:.2} s carry sound (rms {:.0}): the operator's voice is not in it",
        file.display(),
        wav.loud_seconds(),
        wav.seconds(),
        wav.rms()
    );
    assert_eq!(
        flag(ast, operator).as_deref(),
        Some("1"),
        "AstDB op_alert/{operator}: {}",
        ast.cli("database show op_alert")
    );
    file
}

/// A WAV file as Asterisk's format_wav writes it (16-bit mono PCM, 8 kHz).
struct Wav {
    samples: Vec<i16>,
    rate: u32,
}

impl Wav {
    /// Reads and checks the whole file: RIFF/WAVE, PCM 16-bit mono, and
    /// lengths in the header that match the bytes on disk (a file Asterisk
    /// was still writing, or never closed, fails here).
    fn read(path: &Path) -> Wav {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Wav::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn parse(bytes: &[u8]) -> Result<Wav, String> {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
        if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(format!("not a RIFF/WAVE file ({} bytes)", bytes.len()));
        }
        if u32_at(4) as usize != bytes.len() - 8 {
            return Err(format!(
                "RIFF size {} but {} bytes follow it: not finished",
                u32_at(4),
                bytes.len() - 8
            ));
        }
        let (mut at, mut rate, mut data) = (12, None, None);
        while at + 8 <= bytes.len() {
            let (id, len) = (&bytes[at..at + 4], u32_at(at + 4) as usize);
            let body = at + 8;
            if body + len > bytes.len() {
                return Err(format!(
                    "chunk {:?} claims {len} bytes, {} left",
                    String::from_utf8_lossy(id),
                    bytes.len() - body
                ));
            }
            match id {
                b"fmt " => {
                    let (format, channels, bits) =
                        (u16_at(body), u16_at(body + 2), u16_at(body + 14));
                    if (format, channels, bits) != (1, 1, 16) {
                        return Err(format!(
                            "format {format}, {channels} channels, {bits} bits: not 16-bit mono PCM"
                        ));
                    }
                    rate = Some(u32_at(body + 4));
                }
                b"data" => data = Some(&bytes[body..body + len]),
                _ => {}
            }
            at = body + len + len % 2;
        }
        let (Some(rate), Some(data)) = (rate, data) else {
            return Err("no fmt or no data chunk".into());
        };
        let samples = data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Wav { samples, rate })
    }

    fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    fn rms(&self) -> f64 {
        rms(&self.samples)
    }

    /// Time in 20 ms frames whose level is above a quiet room's.
    fn loud_seconds(&self) -> f64 {
        let frame = (self.rate / 50) as usize;
        let loud = self
            .samples
            .chunks(frame)
            .filter(|f| rms(f) > LOUD_RMS)
            .count();
        loud as f64 * 0.02
    }
}

/// 16-bit RMS above which a 20 ms frame carries sound (digital silence and
/// comfort-noise-level hiss stay far below; speech and music far above).
const LOUD_RMS: f64 = 150.0;

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Loads a module the fixture does not (a reset leaves it loaded, which
/// changes nothing for the other tests).
fn load_module(ast: &Asterisk, module: &str) {
    let name = module.trim_end_matches(".so");
    if !ast
        .cli(&format!("module show like {name}"))
        .contains(module)
    {
        let out = ast.cli(&format!("module load {module}"));
        assert!(out.contains("Loaded"), "module load {module}: {out}");
    }
}

fn an_operator_records_a_message(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    let mut ami = ast.ami();
    assert!(flags(&ast).is_empty());
    let file = record_message(&ast, &mut ami, mode, "201");
    assert_eq!(file, messages_dir(&ast).join("201.wav"));
    // Exactly the message: no temp file, no other name.
    assert_eq!(tree(&messages_dir(&ast)), ["201.wav"]);
    assert_eq!(flags(&ast), [("201".to_string(), "1".to_string())]);
    agi.assert_served(&ast, start, 1);
}

#[test]
fn an_operator_records_a_message_with_star600_then_1() {
    an_operator_records_a_message(AgiMode::Process);
}

#[test]
fn an_operator_records_a_message_with_star600_then_1_over_fastagi() {
    an_operator_records_a_message(AgiMode::Fastagi);
}

fn an_unanswered_caller_hears_the_message(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    let mut ami = ast.ami();
    let message = Wav::read(&record_message(&ast, &mut ami, mode, "203"));

    ast.set_phone("203", PhoneMode::Ring);
    ast.cli("dialplan set global RINGTIME 2");
    load_module(&ast, "res_pjsip_logger.so");
    load_module(&ast, "app_mixmonitor.so");
    ast.cli("pjsip set logger on");
    let heard_dir = tempfile::tempdir().unwrap();
    let heard = heard_dir.path().join("heard-by-202.wav");

    let mark = ast.log_mark();
    ast.call(&mut ami, "202", "203");
    // The caller's phone-side channel: record what it receives from the PBX.
    let phone = ami
        .wait_event(WAIT, |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/phone202-"))
        })
        .expect("202's phone placed the call")
        .get("Channel")
        .unwrap()
        .to_string();
    ami.send(
        featpkg_ami::action(
            "MixMonitor",
            &[
                ("Channel", &phone),
                (
                    "File",
                    &heard_dir.path().join("both.wav").display().to_string(),
                ),
                ("Options", &format!("r({})", heard.display())),
            ],
        )
        .unwrap(),
    )
    .unwrap_or_else(|e| panic!("MixMonitor on {phone}: {e}"));
    wait_user_event(&mut ami, "PhoneRing", &[("Exten", "203")], WAIT);
    let status = wait_user_event(&mut ami, "PbxDialStatus", &[("Exten", "203")], WAIT);
    assert_eq!(status.get("Status"), Some("NOANSWER"), "{status:?}");
    let noanswer = mode.agi_start("203", "featpkg-operator-alert-noanswer");
    let log = wait_log(&ast, mark, "no-answer destination", |log| {
        log.contains(&noanswer)
    });
    let pbx = channel_after(&log, &noanswer).unwrap();
    assert!(pbx.starts_with("PJSIP/202-"), "{pbx}");
    // The message plays to the end, then the PBX ends the call.
    let log = wait_agi_done(&ast, mark, &pbx);
    ami.wait_event(WAIT, |m| {
        m.event() == Some("Hangup") && m.get("Channel") == Some(phone.as_str())
    })
    .unwrap_or_else(|e| panic!("{phone} was not hung up: {e}"));
    ast.cli("pjsip set logger off");

    let message_file = messages_dir(&ast).join("203.");
    assert!(
        log.contains(&format!("<{pbx}> Playing '{}", message_file.display())),
        "the PBX never played 203's message to {pbx}:\n{}",
        asterisk::tail(&log, 80)
    );
    // What the caller's phone received: a 183 with an SDP answer, i.e. early
    // media it may (and a real phone will) play. Without it the phone stays
    // on its own ringback and the message goes nowhere.
    let from_pbx = "Received SIP response";
    let pbx_addr = format!("from UDP:127.0.0.1:{} --->", ast.ports.sip);
    let responses: Vec<String> = entries(&log)
        .into_iter()
        .filter(|e| {
            e.contains(from_pbx)
                && e.contains(&pbx_addr)
                && e.contains("CSeq: ")
                && e.contains(" INVITE")
        })
        .collect();
    let status_lines: Vec<&str> = responses
        .iter()
        .filter_map(|e| e.lines().find(|l| l.starts_with("SIP/2.0 ")))
        .collect();
    let early = responses.iter().find(|e| {
        e.contains("\nSIP/2.0 183 ") && e.contains("application/sdp") && e.contains("\nm=audio ")
    });
    let answered = responses.iter().any(|e| e.contains("\nSIP/2.0 200 "));
    assert!(
        early.is_some() || answered,
        "202's phone got no early media and no answer, only {status_lines:?}: it cannot hear the message"
    );
    eprintln!("202's phone received, for its INVITE: {status_lines:?}");
    if let (Some(early), Some(playing)) = (
        early,
        entries(&log)
            .iter()
            .find(|e| e.contains(&format!("<{pbx}> Playing '{}", message_file.display()))),
    ) {
        eprintln!(
            "the 183 reached 202's phone {} ms after the message started playing (log timestamps)",
            entry_ms(early) - entry_ms(playing)
        );
    }

    // And what the caller's phone actually received: the message's sound.
    let deadline = Instant::now() + WAIT;
    let heard = loop {
        match std::fs::read(&heard).map(|b| Wav::parse(&b)) {
            Ok(Ok(wav)) => break wav,
            other => assert!(
                Instant::now() < deadline,
                "MixMonitor never finished {}: {:?}",
                heard.display(),
                other.map(|r| r.err())
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "message: {:.2} s ({:.2} s loud); 202's phone received {:.2} s ({:.2} s loud)",
        message.seconds(),
        message.loud_seconds(),
        heard.seconds(),
        heard.loud_seconds()
    );
    assert!(
        heard.loud_seconds() >= 0.9 * message.loud_seconds(),
        "202's phone received {:.2} s of sound; the message has {:.2} s",
        heard.loud_seconds(),
        message.loud_seconds()
    );
    agi.assert_served(&ast, start, 2);
}

#[test]
fn an_unanswered_sip_caller_hears_the_operators_message_as_early_media() {
    an_unanswered_caller_hears_the_message(AgiMode::Process);
}

#[test]
fn an_unanswered_sip_caller_hears_the_operators_message_as_early_media_over_fastagi() {
    an_unanswered_caller_hears_the_message(AgiMode::Fastagi);
}

fn star600_then_2_deletes(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    let mut ami = ast.ami();
    let file = record_message(&ast, &mut ami, mode, "201");
    assert!(file.is_file());

    let mark = ast.log_mark();
    let call = dial_service(&ast, &mut ami, mode, "201", Voice::Speaks, mark);
    press(&mut ami, &call, "2");
    let log = wait_agi_done(&ast, mark, &call.pbx);
    hang_up_if_up(&mut ami, &call.phone);
    assert!(
        log.contains(&format!("<{}> Playing 'vm-tempremoved.", call.pbx)),
        "201 did not hear that the message was removed:\n{}",
        asterisk::tail(&log, 60)
    );
    assert!(!file.exists(), "{} is still there", file.display());
    assert_eq!(tree(&messages_dir(&ast)), Vec::<String>::new());
    assert_eq!(flag(&ast, "201"), None, "{:?}", flags(&ast));
    agi.assert_served(&ast, start, 2);
}

#[test]
fn star600_then_2_deletes_the_message_and_the_flag() {
    star600_then_2_deletes(AgiMode::Process);
}

#[test]
fn star600_then_2_deletes_the_message_and_the_flag_over_fastagi() {
    star600_then_2_deletes(AgiMode::Fastagi);
}

/// The pid of the AGI program running `args0` (its first argument), found in
/// /proc by its path under this PBX's agi-bin (read only: nothing is
/// signalled).
fn agi_pid(ast: &Asterisk, first_arg: &str) -> Option<u32> {
    let program = ast.var_lib().join("agi-bin/featpkg-operator-alert");
    let program = program.to_str().unwrap();
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.first() == Some(&program.as_bytes()) && args.get(1) == Some(&first_arg.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// featpkg-agid's thread serving the one call under way (its threads that
/// serve calls are named `agi-call`), as its /proc task directory.
fn call_thread(server: u32) -> Option<PathBuf> {
    let mut threads: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{server}/task"))
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|task| {
            std::fs::read_to_string(task.join("comm")).is_ok_and(|c| c.trim_end() == "agi-call")
        })
        .collect();
    assert!(threads.len() <= 1, "featpkg-agid serves {threads:?}");
    threads.pop()
}

/// What runs the feature's code for the call whose AGI program got
/// `first_arg`: the per-call program (process mode) or featpkg-agid's thread
/// for it (fastagi mode), as its /proc directory.
fn agi_runner(ast: &Asterisk, agi: &Agi, first_arg: &str) -> Option<PathBuf> {
    match agi.server_pid() {
        None => agi_pid(ast, first_arg).map(|pid| PathBuf::from(format!("/proc/{pid}"))),
        Some(server) => call_thread(server),
    }
}

/// True while the process or thread at `proc_dir` runs (a zombie has exited).
fn running(proc_dir: &Path) -> bool {
    match std::fs::read_to_string(proc_dir.join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn hanging_up_while_recording(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    load_module(&ast, "res_pjsip_logger.so");
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let call = dial_service(&ast, &mut ami, mode, "201", Voice::Speaks, mark);
    press(&mut ami, &call, "1");
    wait_log(&ast, mark, "beep", |log| {
        log.contains(&format!("<{}> Playing 'beep.", call.pbx))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let runner = agi_runner(&ast, &agi, "menu").expect("the AGI program runs while recording");
    ast.cli("pjsip set logger on");
    let hangup_mark = ast.log_mark();

    // The operator hangs up: the phone sends BYE.
    let hung_up = Instant::now();
    hang_up(&mut ami, &call.phone);
    let deadline = hung_up + WAIT;
    while running(&runner) {
        assert!(
            Instant::now() < deadline,
            "the AGI program ({}) still runs {WAIT:?} after the hangup",
            runner.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let exited = hung_up.elapsed();
    let log = wait_agi_done(&ast, hangup_mark, &call.pbx);
    ast.cli("pjsip set logger off");

    // From the log: the PBX receiving the BYE, and res_agi seeing the
    // program close its pipe (it exited).
    let entries = entries(&log);
    let bye = entries
        .iter()
        .find(|e| {
            e.contains("Received SIP request")
                && e.contains(&format!("from UDP:127.0.0.1:{} --->", ast.ports.phone))
                && e.contains("\nBYE sip:")
        })
        .unwrap_or_else(|| panic!("the PBX got no BYE:\n{}", asterisk::tail(&log, 60)));
    let done = entries
        .iter()
        .find(|e| e.contains(&agi_done(&call.pbx)) && e.contains("completed"))
        .unwrap();
    let after_bye = entry_ms(done) - entry_ms(bye);
    eprintln!(
        "{}: AGI program exit after the hangup: {after_bye} ms from the PBX's BYE to res_agi's \
         'AGI Script … completed' (log timestamps); {} ms from the AMI Hangup to the process \
         (fastagi: the server's call thread) gone from /proc (polled every 1 ms)",
        mode.name(),
        exited.as_millis()
    );
    assert!(
        after_bye < 500,
        "the AGI program needed {after_bye} ms after the BYE to exit"
    );
    assert!(
        exited < Duration::from_millis(1000),
        "the AGI program needed {exited:?} after the hangup to exit"
    );
    assert!(
        !log.contains(&format!("<{}> Playing 'auth-thankyou.", call.pbx)),
        "nothing is played to a caller who hung up"
    );

    // main.rs: "A hangup ends the recording; Asterisk keeps the partial file …
    // Either way, flag what is on disk." The partial message is kept — as a
    // complete WAV (header lengths match the data), not a half-written one —
    // and flagged, so it plays like any other.
    assert_eq!(tree(&messages_dir(&ast)), ["201.wav"]);
    let wav = Wav::read(&messages_dir(&ast).join("201.wav"));
    assert!(
        wav.seconds() >= 1.0 && wav.loud_seconds() >= 0.5,
        "the kept message holds {:.2} s ({:.2} s loud)",
        wav.seconds(),
        wav.loud_seconds()
    );
    assert_eq!(flag(&ast, "201").as_deref(), Some("1"), "{:?}", flags(&ast));
    if let Some(server) = agi.server_pid() {
        assert!(
            running(Path::new(&format!("/proc/{server}"))),
            "featpkg-agid died with the call"
        );
    }
    agi.assert_served(&ast, start, 1);
}

#[test]
fn hanging_up_while_recording_ends_the_program_at_once_and_keeps_a_complete_message() {
    hanging_up_while_recording(AgiMode::Process);
}

#[test]
fn hanging_up_while_recording_ends_the_program_at_once_and_keeps_a_complete_message_over_fastagi() {
    hanging_up_while_recording(AgiMode::Fastagi);
}

/// Adds, until the next dialplan reload, a context of the test's own where a
/// caller with any caller ID enters the PBX: `s` sets CALLERID(num) from the
/// channel variable HOSTILE, then goes to `*600` in [internal].
fn add_hostile_entry(ast: &Asterisk) {
    for line in [
        "dialplan add extension s,1,Set(CALLERID(num)=${HOSTILE}) into oa-test-hostile",
        "dialplan add extension s,2,Goto(internal,*600,1) into oa-test-hostile",
    ] {
        let out = ast.cli(line);
        assert!(out.contains("added into"), "{line}: {out}");
    }
}

/// A caller whose caller ID is `number` dials *600 through a Local channel;
/// its own half plays music into the call (it would speak). Returns the
/// PBX-side (`;2`) channel and the log since `mark` once the AGI program is
/// done with it.
fn hostile_call(
    ast: &Asterisk,
    ami: &mut featpkg_ami::Ami,
    mode: AgiMode,
    number: &str,
    mark: usize,
) -> (String, String) {
    ami.originate(&[
        ("Channel", "Local/s@oa-test-hostile"),
        ("Application", "MusicOnHold"),
        ("Data", "default"),
        ("Timeout", "10000"),
        ("Variable", &format!("HOSTILE={number}")),
    ])
    .unwrap();
    let start = mode.agi_start("*600", "internal");
    let log = wait_log(ast, mark, "the operator-alert AGI program", |log| {
        log.contains(&start)
    });
    let chan = channel_after(&log, &start).unwrap();
    let set =
        format!("Executing [s@oa-test-hostile:1] Set(\"{chan}\", \"CALLERID(num)={number}\")");
    assert!(
        log.contains(&set),
        "{number:?} was not set as given:\n{log}"
    );
    (chan.clone(), wait_agi_done(ast, mark, &chan))
}

/// The log line of the caller's own half (`;1`) of the Local channel whose
/// PBX side is `chan` (`;2`) starting its music: the PBX answered.
fn caller_music(chan: &str) -> String {
    let own = chan.replace(";2", ";1");
    format!("Started music on hold, class 'default', on channel '{own}'")
}

fn hostile_caller_ids_are_refused(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    add_hostile_entry(&ast);
    let mut ami = ast.ami();
    let spool_before = tree(&ast.spool());

    // A SIP phone cannot bring its own caller ID: the PBX's endpoint sets it.
    ast.cli("agi set debug on");
    let mark = ast.log_mark();
    let id = ami
        .originate(&[
            ("Channel", "PJSIP/*600@phone201"),
            ("Application", "Wait"),
            ("Data", "10"),
            ("Timeout", "10000"),
            ("CallerID", "\"x\" <201;rm -rf />"),
        ])
        .unwrap();
    let log = wait_log(&ast, mark, "the AGI environment", |log| {
        log.contains("AGI Tx >> agi_callerid: ")
    });
    let seen = log
        .lines()
        .find_map(|l| l.split("AGI Tx >> agi_callerid: ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    ast.cli("agi set debug off");
    assert_eq!(seen, "201", "the PBX saw 201's call as {seen:?}");
    let answered = ami
        .wait_event(WAIT, |m| {
            m.event() == Some("OriginateResponse") && m.get("ActionID") == Some(id.as_str())
        })
        .unwrap();
    if let Some(ch) = answered.get("Channel") {
        hang_up_if_up(&mut ami, ch);
    }
    wait_agi_done(
        &ast,
        mark,
        &channel_after(&log, &mode.agi_start("*600", "internal")).unwrap(),
    );

    // So hostile numbers come in through a Local channel into [internal].
    let twenty = "12345678901234567890";
    for (number, shown) in [
        ("201;rm -rf /", "201;rm -rf /"),
        ("../../etc/x", "../../etc/x"),
        ("*600", "*600"),
        ("", "unknown"),
        (twenty, twenty),
        ("2011", "2011"),
        ("20", "20"),
    ] {
        let (chan, log) = hostile_call(&ast, &mut ami, mode, number, ast.log_mark());
        // The program's VERBOSE lines name the AGI() data, not the channel.
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&chan) || l.contains("featpkg operator-alert"))
            .collect();
        let refused = format!(
            "featpkg operator-alert: refused caller ID \"{shown}\": not an operator extension (pattern _XXX)"
        );
        assert!(
            lines.iter().any(|l| l.contains(&refused)),
            "{number:?} was not refused:\n{}",
            lines.join("\n")
        );
        assert!(
            !lines.iter().any(|l| l.contains(" Playing '")),
            "{number:?} heard a prompt:\n{}",
            lines.join("\n")
        );
        // Never answered: the caller's own half would have started its music.
        assert!(
            !log.contains(&caller_music(&chan)),
            "{number:?}'s call was answered:\n{log}"
        );
        assert_eq!(
            tree(&ast.spool()),
            spool_before,
            "{number:?} wrote to the spool"
        );
        assert!(flags(&ast).is_empty(), "{number:?}: {:?}", flags(&ast));
    }

    // The same way in with an operator's number reaches the menu: the
    // refusals above are the caller IDs', not the Local channel's.
    let mark = ast.log_mark();
    let (chan, log) = hostile_call(&ast, &mut ami, mode, "204", mark);
    assert!(
        log.contains(&format!("<{chan}> Playing 'vm-tempgreeting2."))
            && log.contains(&caller_music(&chan)),
        "204 was not answered with the menu:\n{}",
        asterisk::tail(&log, 40)
    );
    assert!(
        !log.lines()
            .any(|l| l.contains(&chan) && l.contains("refused"))
    );
    // 201's call, the seven refused ones and 204's.
    agi.assert_served(&ast, start, 9);
}

#[test]
fn hostile_caller_ids_are_refused_before_anything_is_answered_or_written() {
    hostile_caller_ids_are_refused(AgiMode::Process);
}

#[test]
fn hostile_caller_ids_are_refused_before_anything_is_answered_or_written_over_fastagi() {
    hostile_caller_ids_are_refused(AgiMode::Fastagi);
}

/// An operator who says nothing (their phone sends no audio) and presses #
/// right after the tone has recorded nothing: Asterisk leaves a WAV header
/// with no sound. That is no message: it is not flagged (an unanswered
/// caller would be given silence instead of the fallback) and the operator
/// is not thanked for saving it.
fn an_empty_recording_is_not_saved(mode: AgiMode) {
    let ast = asterisk::shared();
    let start = ast.log_mark();
    let agi = install(&ast, mode);
    let mut ami = ast.ami();
    let mark = ast.log_mark();
    let call = dial_service(&ast, &mut ami, mode, "201", Voice::Quiet, mark);
    press(&mut ami, &call, "1");
    wait_log(&ast, mark, "beep", |log| {
        log.contains(&format!("<{}> Playing 'beep.", call.pbx))
    });
    std::thread::sleep(Duration::from_millis(1000));
    press(&mut ami, &call, "#");
    let log = wait_agi_done(&ast, mark, &call.pbx);
    hang_up_if_up(&mut ami, &call.phone);
    let file = messages_dir(&ast).join("201.wav");
    let recorded = std::fs::read(&file).ok().map(|b| Wav::parse(&b));
    eprintln!(
        "after an empty recording: {:?} holds {:?} s; op_alert: {:?}",
        tree(&messages_dir(&ast)),
        recorded.as_ref().map(|w| w.as_ref().map(|w| w.seconds())),
        flags(&ast)
    );
    assert_eq!(
        flag(&ast, "201"),
        None,
        "an empty recording was flagged as 201's message ({:?} s of audio)",
        recorded.map(|w| w.map(|w| w.seconds()))
    );
    assert!(
        !log.contains(&format!("<{}> Playing 'auth-thankyou.", call.pbx)),
        "201 was thanked for saving an empty message"
    );
    agi.assert_served(&ast, start, 1);
}

#[test]
fn an_empty_recording_is_not_saved_as_a_message() {
    an_empty_recording_is_not_saved(AgiMode::Process);
}

#[test]
fn an_empty_recording_is_not_saved_as_a_message_over_fastagi() {
    an_empty_recording_is_not_saved(AgiMode::Fastagi);
}

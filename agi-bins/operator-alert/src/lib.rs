//! operator-alert's AGI commands ([`OperatorAlert`]), served by the per-call
//! program `featpkg-operator-alert` and by featpkg-agid (FastAGI).
//!
//! Invoked by the dialplan as
//! `AGI(/…/featpkg-operator-alert,<menu|play>,key=value,…)` or
//! `AGI(agi://127.0.0.1:4573/featpkg-operator-alert,<menu|play>,key=value,…)`:
//!
//! * `menu` (service code): the calling operator (caller ID) presses 1 to record
//!   their personal message or 2 to delete it; an AstDB flag `<family>/<operator>`
//!   marks who has one.
//! * `play` (no-answer destination): plays the dialled operator's (`agi_extension`)
//!   message if flagged, as early media (`EXEC Progress` first) when the call
//!   is not answered; sets `OPERATOR_ALERT_PLAYED` to 1 or 0.
//!
//! Keys: `family` (op_alert), `pattern` (operator extension pattern, digits only,
//! default `_XXX`), `dir` (absolute recordings directory), `format` (wav; wav16 or gsm),
//! `deadline` (seconds to wait for any reply, 5), `maxrec` (seconds, 60),
//! `menu_sound`, `record_sound`, `saved_sound`, `deleted_sound`, `empty_sound`
//! (played when a recording held no audio: `vm-tooshort`, "Your message is too
//! short.", from asterisk-core-sounds-en).
//!
//! A message is recorded to `<dir>/<operator>.new.<format>` and renamed over
//! `<operator>.<format>` (the name `play` and `delete` use) only when it holds
//! audio; an empty recording leaves the older message and its flag as they
//! were (see [`Alert::record`]).
//!
//! Every number from the channel is hostile: it must match `pattern` before it
//! is used; the file path is built here from `dir` and that number, and deletion
//! is a file-system call (the original recipe ran `System(rm -rf …${CALLERID(num)}…)`).
//! A hangup (SIGHUP or 511) lets it finish what must persist (a recording with
//! audio renamed into place, the AstDB flag) and exit within 100 ms; no reply
//! within `deadline` ends it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use featpkg_agi::pattern::{matches_pattern, pattern_ok};
use featpkg_agi::{AgiError, AgiProgram, Reply, Session, escape_for_log};

/// Parsed, checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    mode: Mode,
    family: String,
    pattern: String,
    dir: PathBuf,
    format: String,
    deadline: Duration,
    maxrec: Duration,
    menu_sound: String,
    record_sound: String,
    saved_sound: String,
    deleted_sound: String,
    empty_sound: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Menu,
    Play,
}

/// Recording formats whose file extension is the format's name.
const RECORD_FORMATS: [&str; 3] = ["wav", "wav16", "gsm"];

fn word_ok(v: &str, extra: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mode = match args.first().map(String::as_str) {
        Some("menu") => Mode::Menu,
        Some("play") => Mode::Play,
        other => {
            return Err(format!(
                "first argument must be menu or play, got {:?}",
                other.unwrap_or("")
            ));
        }
    };
    let mut c = Config {
        mode,
        family: "op_alert".into(),
        pattern: "_XXX".into(),
        dir: PathBuf::from("/var/spool/asterisk/featpkg/operator-alert"),
        format: "wav".into(),
        deadline: Duration::from_secs(5),
        maxrec: Duration::from_secs(60),
        menu_sound: "vm-tempgreeting2".into(),
        record_sound: "vm-rec-temp".into(),
        saved_sound: "auth-thankyou".into(),
        deleted_sound: "vm-tempremoved".into(),
        // "Your message is too short." (asterisk-core-sounds-en): played
        // when a recording held no audio and was not saved.
        empty_sound: "vm-tooshort".into(),
    };
    for arg in &args[1..] {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("argument {:?} is not key=value", escape_for_log(arg, 40)))?;
        let bad = |rule: &str| format!("{key}={:?}: {rule}", escape_for_log(value, 40));
        let seconds = |max: u64| -> Result<Duration, String> {
            match value.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
                _ => Err(bad(&format!("must be 1 to {max} seconds"))),
            }
        };
        match key {
            "family" if word_ok(value, "-_") => c.family = value.into(),
            "pattern" if pattern_ok(value) => c.pattern = value.into(),
            "dir"
                if value.starts_with('/')
                    && !value.split('/').any(|p| p == "..")
                    && word_ok(&value.replace('/', ""), "-_.") =>
            {
                c.dir = value.into()
            }
            // Only formats whose file Asterisk names `<base>.<format>` (it uses the
            // format's first extension: ulaw writes `.pcm`, wav49 `.WAV`), so
            // the file checked, played and deleted here is the one recorded.
            "format" if RECORD_FORMATS.contains(&value) => c.format = value.into(),
            "deadline" => c.deadline = seconds(30)?,
            "maxrec" => c.maxrec = seconds(600)?,
            "menu_sound" | "record_sound" | "saved_sound" | "deleted_sound" | "empty_sound"
                if word_ok(value, "-_") =>
            {
                let slot = match key {
                    "menu_sound" => &mut c.menu_sound,
                    "record_sound" => &mut c.record_sound,
                    "saved_sound" => &mut c.saved_sound,
                    "deleted_sound" => &mut c.deleted_sound,
                    _ => &mut c.empty_sound,
                };
                *slot = value.into();
            }
            "family" | "pattern" | "dir" | "format" | "menu_sound" | "record_sound"
            | "saved_sound" | "deleted_sound" | "empty_sound" => {
                return Err(bad("invalid value"));
            }
            _ => return Err(format!("unknown key {:?}", escape_for_log(key, 40))),
        }
    }
    Ok(c)
}

struct Alert<'a> {
    agi: &'a mut Session,
    c: Config,
}

impl Alert<'_> {
    /// Logs a refusal on the Asterisk console and ends the call's use of us.
    fn refuse(&mut self, what: &str, value: &str) -> Result<(), AgiError> {
        let msg = format!(
            "featpkg operator-alert: refused {what} \"{}\": not an operator extension (pattern {})",
            escape_for_log(value, 32),
            self.c.pattern
        );
        self.agi.verbose(&msg, 1)
    }

    /// The operator's message: the name STREAM FILE takes (no extension) and
    /// the file on disk, `<dir>/<operator>.<format>`.
    fn recording(&self, operator: &str) -> (String, PathBuf) {
        let base = self.c.dir.join(operator);
        let file = self.c.dir.join(format!("{operator}.{}", self.c.format));
        (base.display().to_string(), file)
    }

    /// Where a new message is recorded before it replaces the old one:
    /// `<dir>/<operator>.new.<format>`. The same directory, so the rename is
    /// atomic; a name that is no operator's message (operators are digits
    /// only), which `play` never looks for.
    fn new_recording(&self, operator: &str) -> (String, PathBuf) {
        self.recording(&format!("{operator}.new"))
    }

    fn menu(&mut self) -> Result<(), AgiError> {
        let operator = self.agi.env().callerid().to_string();
        if !matches_pattern(&operator, &self.c.pattern) {
            return self.refuse("caller ID", &operator);
        }
        self.agi.answer()?;
        let prompt = self.c.menu_sound.clone();
        let choice = self.agi.get_data(&prompt, 5000, 1)?;
        match choice.as_str() {
            "1" => self.record(&operator),
            "2" => self.delete(&operator),
            _ => Ok(()),
        }
    }

    /// Records a new message and makes it the operator's only when it holds
    /// audio.
    ///
    /// RECORD FILE truncates the file it records to as the recording starts,
    /// and an empty recording (`#` pressed right after the tone, a phone that
    /// sends no audio, a hangup as the recording starts) leaves a bare header
    /// (44 bytes for wav, `endpos=0`). Recorded over `<operator>.<format>`,
    /// that would destroy the older message and, flagged, give an unanswered
    /// caller silence instead of the fallback. So Asterisk records to
    /// [`Alert::new_recording`]; a recording with audio (`endpos` > 0 and more
    /// than the format's header on disk) is renamed over the message (a caller
    /// never hears half of one) and then flagged; an empty one is removed, the
    /// older message and its flag stay as they were, and the operator hears
    /// `empty_sound` instead of `saved_sound`.
    ///
    /// A hangup ends the recording; Asterisk keeps what was recorded (RECORD
    /// FILE keeps it, like Record's `k`) as a complete file (the header is
    /// written on close): with audio it is saved and flagged like any other,
    /// within the time the watchdog leaves after a hangup, and nothing is played.
    fn record(&mut self, operator: &str) -> Result<(), AgiError> {
        let (_, file) = self.recording(operator);
        let (new_base, new_file) = self.new_recording(operator);
        // Only a directory made here gets our mode: an existing one keeps the
        // admin's (a group that may also write the messages, say).
        if !self.c.dir.is_dir() {
            if let Err(e) = std::fs::create_dir_all(&self.c.dir) {
                return self.agi.verbose(
                    &format!(
                        "featpkg operator-alert: cannot create {}: {e}",
                        self.c.dir.display()
                    ),
                    1,
                );
            }
            set_mode(&self.c.dir, 0o750);
        }
        // A temporary file left by a run that ended mid-recording (its
        // deadline, an Asterisk restart) must not pass for this recording.
        remove_quietly(&new_file);
        let sound = self.c.record_sound.clone();
        self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
        let format = self.c.format.clone();
        let outcome = self.agi.record_file(&new_base, &format, "#", self.c.maxrec);
        let (endpos, hung_up) = match outcome {
            Ok(reply) => match recorded(&reply) {
                Ok(outcome) => outcome,
                Err(why) => {
                    remove_quietly(&new_file);
                    return self.record_failed(operator, why);
                }
            },
            // 511: the channel was gone before the recording started.
            Err(e) => {
                remove_quietly(&new_file);
                return match e {
                    AgiError::Hangup => Ok(()),
                    e => Err(e),
                };
            }
        };
        let size = std::fs::metadata(&new_file).map_or(0, |m| m.len());
        let has_audio = endpos != Some(0) && size > header_len(&format);
        let hung_up = hung_up || self.agi.hung_up();
        if !has_audio {
            remove_quietly(&new_file);
            if hung_up {
                return Ok(());
            }
            let msg = format!(
                "featpkg operator-alert: the recording for {operator} held no audio \
                 (endpos={}, {size} bytes); not saved, any older message is kept",
                endpos.map_or("?".to_string(), |n| n.to_string())
            );
            self.agi.verbose(&msg, 2)?;
            let sound = self.c.empty_sound.clone();
            self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
            return Ok(());
        }
        if let Err(e) = std::fs::rename(&new_file, &file) {
            remove_quietly(&new_file);
            return self.record_failed(operator, &format!("rename: {e}"));
        }
        self.agi
            .database_put(&self.c.family.clone(), operator, "1")?;
        if !hung_up && !self.agi.hung_up() {
            let sound = self.c.saved_sound.clone();
            self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Logs a RECORD FILE that Asterisk could not carry out; nothing is flagged.
    fn record_failed(&mut self, operator: &str, why: &str) -> Result<(), AgiError> {
        let msg = format!(
            "featpkg operator-alert: recording for {operator} failed ({}); nothing new was saved",
            escape_for_log(why, 32)
        );
        self.agi.verbose(&msg, 1)
    }

    fn delete(&mut self, operator: &str) -> Result<(), AgiError> {
        let (_, file) = self.recording(operator);
        // A temporary recording left by a run that ended mid-recording goes too.
        remove_quietly(&self.new_recording(operator).1);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.agi.verbose(
                &format!(
                    "featpkg operator-alert: cannot delete {}: {e}",
                    file.display()
                ),
                1,
            )?,
        }
        self.agi.database_del(&self.c.family.clone(), operator)?;
        let sound = self.c.deleted_sound.clone();
        self.agi.stream_file(&sound, "", Duration::from_secs(30))?;
        Ok(())
    }

    fn play(&mut self) -> Result<(), AgiError> {
        let operator = self.agi.env().extension().to_string();
        if !matches_pattern(&operator, &self.c.pattern) {
            return self.refuse("extension", &operator);
        }
        let flagged = self
            .agi
            .database_get(&self.c.family.clone(), &operator)?
            .as_deref()
            == Some("1");
        let (base, file) = self.recording(&operator);
        let mut played = false;
        if flagged && file.is_file() {
            self.early_media()?;
            self.agi.stream_file(&base, "", self.c.maxrec)?;
            played = true;
        }
        self.agi
            .set_variable("OPERATOR_ALERT_PLAYED", if played { "1" } else { "0" })
    }
}

/// `CHANNEL STATUS` of a channel that is up (AST_STATE_UP).
const STATE_UP: i64 = 6;

impl Alert<'_> {
    /// Opens the audio path to a caller whose call was not answered, so the
    /// message is heard: `STREAM FILE` neither answers nor indicates progress.
    /// On a Local channel that goes unnoticed, but a SIP phone or trunk whose
    /// call is still ringing gets no media at all, and the caller hears nothing.
    ///
    /// Early media (`Progress`: SIP 183 Session Progress with SDP), not
    /// `ANSWER`: this is the no-answer path, and answering would turn an
    /// unanswered call into an answered one — a connected call in the CDR and
    /// the caller's bill for a trunk caller, for hearing "I can't answer". The
    /// message needs only one-way audio, which early media gives; whatever
    /// comes after it (the fallback) answers itself if it needs to. A channel
    /// already up (answered by an earlier step, or a Local channel that is)
    /// gets nothing: the status is asked first (Asterisk sends no channel
    /// state in the AGI environment).
    fn early_media(&mut self) -> Result<(), AgiError> {
        let status = self.agi.command("CHANNEL STATUS", &[])?;
        if status.code() != Some(STATE_UP) {
            // `200 result=0` from Progress; its result says nothing more.
            self.agi.command("EXEC Progress", &[])?;
        }
        Ok(())
    }
}

/// What RECORD FILE's reply says was recorded: the samples in the file
/// (`endpos`) and whether the channel hung up, or why nothing new was.
fn recorded(reply: &Reply) -> Result<(Option<u64>, bool), &str> {
    // res_agi.c handle_recordfile: `(dtmf) endpos=N` for `#`,
    // `(timeout) endpos=N` at maxrec, `(hangup) endpos=N` when the
    // channel hung up; N is the samples in the file.
    match reply.data.as_deref() {
        Some("dtmf" | "timeout") => Ok((reply.endpos, false)),
        Some("hangup") => Ok((reply.endpos, true)),
        // `#` during the tone: the tone's wait returns the key, and
        // nothing is recorded (no file is opened).
        Some("randomerror") if reply.code().is_some_and(|c| c > 0) => Ok((Some(0), false)),
        // `(writefile)`, `(randomerror)` (-1: the tone could not be
        // played, or a hangup during it), `(waitfor)`: nothing new was
        // recorded. An older message may still be on disk; saying
        // "saved" now would be a lie.
        other => Err(other.unwrap_or("error")),
    }
}

/// Bytes a recording in `format` holds before any audio: format_wav writes
/// a 44-byte header (wav and wav16); gsm files are bare frames.
fn header_len(format: &str) -> u64 {
    match format {
        "wav" | "wav16" => 44,
        _ => 0,
    }
}

/// Removes `file` if it is there; a file that cannot be removed is left to
/// the next recording, which truncates it (and `play` never reads it).
fn remove_quietly(file: &Path) {
    let _ = std::fs::remove_file(file);
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
}

/// operator-alert's AGI commands: `menu` and `play`.
pub struct OperatorAlert;

impl AgiProgram for OperatorAlert {
    const NAME: &'static str = "featpkg-operator-alert";
    const LOG_NAME: &'static str = "featpkg operator-alert";
    type Config = Config;

    fn parse_args(args: &[String]) -> Result<Config, String> {
        parse_args(args)
    }

    fn deadline(config: &Config) -> Duration {
        config.deadline
    }

    fn run(agi: &mut Session, c: Config) -> Result<(), AgiError> {
        let mode = c.mode;
        let mut alert = Alert { agi, c };
        match mode {
            Mode::Menu => alert.menu(),
            Mode::Play => alert.play(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args: Vec<String> = [
            "menu",
            "family=op_alert",
            "pattern=_2XX",
            "dir=/var/spool/x",
            "deadline=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = parse_args(&args).unwrap();
        assert_eq!(
            (c.mode, c.pattern.as_str(), c.deadline),
            (Mode::Menu, "_2XX", Duration::from_secs(3))
        );
        for bad in [
            "dir=relative",
            "dir=/a/../b",
            "family=a;b",
            "menu_sound=../x",
            "empty_sound=vm tooshort",
            "deadline=0",
            "colour=blue",
            "pattern=_X!",
        ] {
            let args = vec!["play".to_string(), bad.to_string()];
            assert!(parse_args(&args).is_err(), "{bad}");
        }
        assert!(parse_args(&["record".to_string()]).is_err());
        let c = parse_args(&["menu".into(), "empty_sound=vm-pls-try-again".into()]).unwrap();
        assert_eq!(
            (c.empty_sound.as_str(), c.saved_sound.as_str()),
            ("vm-pls-try-again", "auth-thankyou")
        );
        assert_eq!(
            parse_args(&["menu".into()]).unwrap().empty_sound,
            "vm-tooshort"
        );
    }

    #[test]
    fn only_formats_whose_file_is_named_after_them() {
        // Asterisk names the file with the format's first extension: ulaw
        // writes `.pcm`, wav49 `.WAV`; the program would never find those.
        for bad in ["format=ulaw", "format=wav49", "format=alaw"] {
            assert!(parse_args(&["menu".into(), bad.into()]).is_err(), "{bad}");
        }
        for good in ["format=wav", "format=wav16", "format=gsm"] {
            assert!(parse_args(&["menu".into(), good.into()]).is_ok(), "{good}");
        }
    }
}

//! Typed feature parameters: every value that reaches the dialplan or a path is
//! checked against its type here, before anything is planned or written.

use serde::{Deserialize, Serialize};

/// The type of one parameter, as written in a feature definition (`"type": "..."`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ParamType {
    /// Dialable extension: digits only, 1 to 20 of them.
    Extension,
    /// Feature/service code such as `*600`: `*`, `#` and digits, 1 to 10 characters.
    ServiceCode,
    /// Asterisk extension pattern restricted to digits: `_` then `X Z N 0-9 [..]`, or plain digits.
    DigitPattern,
    /// Dialplan context name: letters, digits, `-`, `_`, `.`; never `]`, `,` or spaces.
    Context,
    /// Sound file name without extension: letters, digits, `-`, `_` (no `/`, no `..`).
    Sound,
    /// A single word such as a music-on-hold class or AstDB family: letters, digits, `-`, `_`.
    Word,
    /// Channel variable name: a letter or `_`, then letters, digits, `_`.
    VarName,
    /// Integer within `min..=max`.
    Integer {
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// One of the listed values.
    Enum {
        /// The values allowed, as written (`["PJSIP", "IAX2"]`).
        values: Vec<String>,
    },
    /// Comma-separated list of PJSIP endpoint names (letters, digits, `-`, `_`, `.`); may be empty.
    EndpointList,
    /// `context,exten,priority` dialplan destination, or empty for "none".
    Destination,
    /// queue-failover's rule table: a JSON array of
    /// `{"queue": "<digits>", "status": "<QUEUESTATUS>", "destination": "context,exten,priority"}`.
    QueueRules,
}

/// Every QUEUESTATUS app_queue sets (reference/asterisk.md §4.2).
pub const QUEUE_STATUSES: [&str; 9] = [
    "TIMEOUT",
    "FULL",
    "JOINEMPTY",
    "LEAVEEMPTY",
    "JOINUNAVAIL",
    "LEAVEUNAVAIL",
    "CONTINUE",
    "WITHDRAW",
    "UNKNOWN",
];

/// Exits on which the queue had nobody to ring: sending them back into the same
/// queue loops (the recipe's own comment thread warns about it).
const EMPTY_STATUSES: [&str; 4] = ["JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL"];

/// One rule of the queue-failover table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRule {
    /// The queue's extension, digits only (`600`).
    pub queue: String,
    /// The QUEUESTATUS the rule is for: one of [`QUEUE_STATUSES`] (`TIMEOUT`).
    pub status: String,
    /// Where the call goes on that exit: `context,exten,priority`.
    pub destination: String,
}

/// Checks a rule table; errors start with the JSON path inside the value (`[2].status`).
pub fn check_queue_rules(value: &str) -> Result<Vec<QueueRule>, ParamRuleError> {
    let items: Vec<serde_json::Value> = serde_json::from_str(value)
        .map_err(|e| ParamRuleError(format!(": must be a JSON array of rules ({e})")))?;
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str, rule: String| ParamRuleError(format!("[{i}]{field}: {rule}"));
        let obj = item.as_object().ok_or_else(|| {
            at(
                "",
                "must be an object with queue, status, destination".into(),
            )
        })?;
        for key in obj.keys() {
            if !["queue", "status", "destination"].contains(&key.as_str()) {
                return Err(at(
                    &format!(".{key}"),
                    "unknown field (expected queue, status, destination)".into(),
                ));
            }
        }
        let field = |name: &str| -> Result<String, ParamRuleError> {
            match obj.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) if name == "queue" => Ok(n.to_string()),
                Some(_) => Err(at(&format!(".{name}"), "must be a string".into())),
                None => Err(at(&format!(".{name}"), "is missing".into())),
            }
        };
        let rule = QueueRule {
            queue: field("queue")?,
            status: field("status")?,
            destination: field("destination")?,
        };
        ParamType::Extension
            .check(&rule.queue)
            .map_err(|e| at(".queue", format!("{:?}: {}", rule.queue, e.0)))?;
        if !QUEUE_STATUSES.contains(&rule.status.as_str()) {
            return Err(at(
                ".status",
                format!(
                    "{:?} is not a QUEUESTATUS (one of {})",
                    rule.status,
                    QUEUE_STATUSES.join(", ")
                ),
            ));
        }
        if rule.destination.is_empty() {
            return Err(at(".destination", "is empty".into()));
        }
        ParamType::Destination
            .check(&rule.destination)
            .map_err(|e| at(".destination", format!("{:?}: {}", rule.destination, e.0)))?;
        let exten = rule.destination.split(',').nth(1).unwrap_or("");
        if EMPTY_STATUSES.contains(&rule.status.as_str()) && exten == rule.queue {
            return Err(at(
                ".destination",
                format!(
                    "{:?} sends a {} exit back into queue {}: a loop (the queue is still empty)",
                    rule.destination, rule.status, rule.queue
                ),
            ));
        }
        if rules
            .iter()
            .any(|r: &QueueRule| r.queue == rule.queue && r.status == rule.status)
        {
            return Err(at(
                "",
                format!(
                    "a second rule for queue {} status {}",
                    rule.queue, rule.status
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// One parameter of a feature definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// The name used in `--set <feature>.<name>=…` and as `%{<name>}` in templates.
    pub name: String,
    /// What values it takes, checked before anything is planned.
    #[serde(flatten)]
    pub ty: ParamType,
    /// The value when the admin gives none (`*601`); empty means not set
    /// (an optional list, destination or code, or a required value).
    pub default: String,
    /// One sentence for the admin, shown by `featpkg schema` and the settings page.
    pub help: String,
    /// No usable default: the admin must give a value (`--set`/`--params`).
    #[serde(default)]
    pub required: bool,
    /// When neither the admin nor `default` gives a value, this other
    /// parameter's value is used (conference-guest's DTMF is its conference
    /// number unless set), so fragments need no run-time fallback.
    #[serde(default)]
    pub default_from: Option<String>,
}

/// Why a value was refused; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRuleError(pub String);

fn charset_ok(value: &str, extra: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn check_word(value: &str, what: &str, extra: &str, max: usize) -> Result<(), ParamRuleError> {
    if value.is_empty() {
        return Err(ParamRuleError(format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(ParamRuleError(format!(
            "{what} must be at most {max} characters"
        )));
    }
    if !charset_ok(value, extra) {
        let allowed: Vec<String> = extra.chars().map(|c| format!("'{c}'")).collect();
        return Err(ParamRuleError(format!(
            "{what} may contain only letters, digits and {}",
            allowed.join(" ")
        )));
    }
    Ok(())
}

/// Checks an Asterisk digit pattern (`_2XX`, `_[1-5]XX`, `201`).
pub fn check_digit_pattern(value: &str) -> Result<(), ParamRuleError> {
    let rule =
        "an extension pattern must be digits, or '_' followed by X, Z, N, digits and [a-b] classes";
    let Some(body) = value.strip_prefix('_') else {
        if !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return Err(ParamRuleError(rule.into()));
    };
    if body.is_empty() || body.len() > 40 {
        return Err(ParamRuleError(rule.into()));
    }
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            'X' | 'Z' | 'N' | 'x' | 'z' | 'n' | '0'..='9' => {}
            '[' => {
                let mut closed = false;
                let mut any = false;
                for c in chars.by_ref() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '0'..='9' | '-' => any = true,
                        _ => return Err(ParamRuleError(rule.into())),
                    }
                }
                if !closed || !any {
                    return Err(ParamRuleError(rule.into()));
                }
            }
            _ => return Err(ParamRuleError(rule.into())),
        }
    }
    Ok(())
}

impl ParamType {
    /// Checks `value` against this type. The message says what the rule is.
    pub fn check(&self, value: &str) -> Result<(), ParamRuleError> {
        match self {
            ParamType::Extension => check_extension(value),
            ParamType::ServiceCode => check_service_code(value),
            ParamType::DigitPattern => check_digit_pattern(value),
            ParamType::Context => check_context(value),
            ParamType::Sound => check_sound(value),
            ParamType::Word => check_word(value, "this value", "-_", 64),
            ParamType::VarName => check_var_name(value),
            ParamType::Integer { min, max } => match value.parse::<i64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err(ParamRuleError(format!(
                    "must be a whole number from {min} to {max}"
                ))),
            },
            ParamType::Enum { values } => {
                if values.iter().any(|v| v == value) {
                    Ok(())
                } else {
                    Err(ParamRuleError(format!(
                        "must be one of {}",
                        values.join(", ")
                    )))
                }
            }
            ParamType::EndpointList => {
                for item in list_items(value) {
                    check_word(item, "an endpoint name", "-_.", 64)?;
                }
                Ok(())
            }
            ParamType::QueueRules => check_queue_rules(value).map(|_| ()),
            ParamType::Destination => check_destination(value),
        }
    }
}

/// A dialable extension: 1 to 20 digits.
fn check_extension(value: &str) -> Result<(), ParamRuleError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParamRuleError("an extension must be 1 to 20 digits".into()));
    }
    Ok(())
}

/// A service code: 1 to 10 of `0-9 * #`.
fn check_service_code(value: &str) -> Result<(), ParamRuleError> {
    if value.is_empty()
        || value.len() > 10
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        return Err(ParamRuleError(
            "a service code must be 1 to 10 of the characters 0-9 * #".into(),
        ));
    }
    Ok(())
}

/// A context name, never one of extensions.conf's reserved sections.
fn check_context(value: &str) -> Result<(), ParamRuleError> {
    check_word(value, "a context name", "-_.", 79)?;
    if crate::asterisk_config::is_reserved_dialplan_section(value) {
        return Err(ParamRuleError(format!(
            "{value:?} is not a context name: extensions.conf's [general] and [globals] sections (any case; Asterisk compares them with strcasecmp) hold settings and global variables, so the dialplan lines would become global variables"
        )));
    }
    Ok(())
}

/// A sound name: a name, not a path.
fn check_sound(value: &str) -> Result<(), ParamRuleError> {
    if value.contains('/') || value.contains("..") {
        return Err(ParamRuleError(
            "a sound name must not contain '/' or '..' (name a sound, not a path)".into(),
        ));
    }
    check_word(value, "a sound name", "-_", 64)
}

/// A channel variable name: a word of letters, digits and `_`, not starting with a digit.
fn check_var_name(value: &str) -> Result<(), ParamRuleError> {
    check_word(value, "a variable name", "_", 64)?;
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(ParamRuleError(
            "a variable name must start with a letter or '_'".into(),
        ));
    }
    Ok(())
}

/// A dialplan destination `context,exten,priority`, or empty for "none".
fn check_destination(value: &str) -> Result<(), ParamRuleError> {
    if value.is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = value.split(',').collect();
    let rule = "a destination must be context,exten,priority";
    let [context, exten, priority] = parts.as_slice() else {
        return Err(ParamRuleError(rule.into()));
    };
    check_context(context).map_err(|e| ParamRuleError(format!("{rule}: context: {}", e.0)))?;
    let exten_ok =
        check_service_code(exten).is_ok() || *exten == "s" || check_digit_pattern(exten).is_ok();
    if !exten_ok {
        return Err(ParamRuleError(format!(
            "{rule}: exten must be digits, * #, 's' or a digit pattern"
        )));
    }
    let prio_ok = priority.parse::<u32>().is_ok_and(|p| p >= 1)
        || check_word(priority, "", "_", 32).is_ok()
            && priority.starts_with(|c: char| c.is_ascii_alphabetic());
    if !prio_ok {
        return Err(ParamRuleError(format!(
            "{rule}: priority must be a number from 1 or a label"
        )));
    }
    Ok(())
}

/// Items of a comma-separated list value, trimmed, empty items skipped.
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_must_be_digits() {
        assert!(ParamType::Extension.check("201").is_ok());
        for bad in ["", "20a", "1;rm", "../1", &"1".repeat(21)] {
            assert!(ParamType::Extension.check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn context_refuses_bracket_and_comma() {
        assert!(ParamType::Context.check("internal-users-custom").is_ok());
        let err = ParamType::Context.check("a]b").unwrap_err();
        assert!(err.0.contains("letters, digits"), "{}", err.0);
        assert!(ParamType::Context.check("a,b").is_err());
        assert!(ParamType::Context.check("a b").is_err());
    }

    #[test]
    fn context_refuses_general_and_globals_in_any_case() {
        for reserved in ["general", "globals", "GLOBALS", "General", "gLoBaLs"] {
            let err = ParamType::Context.check(reserved).unwrap_err();
            assert!(
                err.0.contains("is not a context name") && err.0.contains("[globals]"),
                "{reserved}: {}",
                err.0
            );
            // Also as the context of a destination.
            assert!(
                ParamType::Destination
                    .check(&format!("{reserved},100,1"))
                    .is_err(),
                "{reserved}"
            );
        }
        for fine in ["globals2", "my-general", "general_ctx", "from-globals"] {
            assert!(ParamType::Context.check(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn sound_refuses_paths() {
        assert!(ParamType::Sound.check("beep").is_ok());
        assert!(
            ParamType::Sound
                .check("../beep")
                .unwrap_err()
                .0
                .contains("'/'")
        );
        assert!(
            ParamType::Sound
                .check("a..b")
                .unwrap_err()
                .0
                .contains("'..'")
        );
    }

    #[test]
    fn digit_patterns() {
        for good in ["_XXX", "_2XX", "_[1-5]XX", "201", "_NXX"] {
            assert!(check_digit_pattern(good).is_ok(), "{good}");
        }
        for bad in ["_X.", "_X!", "", "_", "_[a]X", "_[1-5", "2O1"] {
            assert!(check_digit_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations() {
        assert!(ParamType::Destination.check("").is_ok());
        assert!(ParamType::Destination.check("from-internal,100,1").is_ok());
        assert!(ParamType::Destination.check("ctx,s,start").is_ok());
        assert!(ParamType::Destination.check("ctx,100").is_err());
        assert!(ParamType::Destination.check("c]x,100,1").is_err());
        assert!(ParamType::Destination.check("ctx,1;0,1").is_err());
        assert!(ParamType::Destination.check("ctx,100,0").is_err());
    }

    #[test]
    fn queue_rules() {
        let ok = r#"[{"queue":"2000","status":"TIMEOUT","destination":"internal,201,1"},
                     {"queue":2000,"status":"JOINEMPTY","destination":"internal,202,1"}]"#;
        assert_eq!(check_queue_rules(ok).unwrap().len(), 2);
        for status in QUEUE_STATUSES {
            let one = format!(r#"[{{"queue":"1","status":"{status}","destination":"c,2,1"}}]"#);
            assert!(check_queue_rules(&one).is_ok(), "{status}");
        }
        let err = |v: &str| check_queue_rules(v).unwrap_err().0;
        assert!(
            err(r#"[{"queue":"1","status":"BUSY","destination":"c,2,1"}]"#)
                .starts_with("[0].status: \"BUSY\" is not a QUEUESTATUS")
        );
        assert!(err(r#"[{"queue":"1","status":"TIMEOUT","destination":"c,2,1"},{"queue":"1x","status":"TIMEOUT","destination":"c,2,1"}]"#).starts_with("[1].queue:"));
        assert!(
            err(r#"[{"queue":"1","status":"TIMEOUT","destination":"c]x,2,1"}]"#)
                .starts_with("[0].destination:")
        );
        assert!(
            err(r#"[{"queue":"1","status":"TIMEOUT"}]"#).starts_with("[0].destination: is missing")
        );
        assert!(
            err(r#"[{"queue":"1","status":"TIMEOUT","destination":"c,2,1","x":1}]"#)
                .starts_with("[0].x: unknown field")
        );
        let looped =
            err(r#"[{"queue":"2000","status":"LEAVEEMPTY","destination":"ext-queues,2000,1"}]"#);
        assert!(
            looped.starts_with("[0].destination:") && looped.contains("loop"),
            "{looped}"
        );
        // A timeout may go back to the queue: it had members, they just did not answer.
        assert!(
            check_queue_rules(
                r#"[{"queue":"2000","status":"TIMEOUT","destination":"ext-queues,2000,1"}]"#
            )
            .is_ok()
        );
        assert!(err("{}").starts_with(": must be a JSON array"));
    }

    #[test]
    fn integers_and_enums() {
        let t = ParamType::Integer { min: 2, max: 32 };
        assert!(t.check("3").is_ok());
        assert!(t.check("1").is_err());
        assert!(t.check("x").is_err());
        let e = ParamType::Enum {
            values: vec!["PJSIP".into()],
        };
        assert!(e.check("PJSIP").is_ok());
        assert!(e.check("SIP").unwrap_err().0.contains("PJSIP"));
    }
}

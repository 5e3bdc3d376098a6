//! Asterisk extension patterns restricted to digits (`_2XX`, `_[1-5]0X`, `201`):
//! how AGI programs decide that a number from the channel is one they serve.

/// A digits-only Asterisk pattern: `_` + X Z N digits `[a-b]` classes, or literal digits.
pub fn pattern_ok(p: &str) -> bool {
    let body = p.strip_prefix('_').unwrap_or(p);
    !body.is_empty() && body.len() <= 40 && parse_pattern(p).is_some()
}

/// The pattern as one digit set per position.
fn parse_pattern(p: &str) -> Option<Vec<Vec<u8>>> {
    let Some(body) = p.strip_prefix('_') else {
        return p
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.bytes().map(|b| vec![b]).collect());
    };
    let mut out = Vec::new();
    let mut chars = body.bytes().peekable();
    while let Some(c) = chars.next() {
        out.push(match c.to_ascii_uppercase() {
            b'X' => (b'0'..=b'9').collect(),
            b'Z' => (b'1'..=b'9').collect(),
            b'N' => (b'2'..=b'9').collect(),
            d @ b'0'..=b'9' => vec![d],
            b'[' => {
                let mut set = Vec::new();
                let mut prev: Option<u8> = None;
                loop {
                    match chars.next()? {
                        b']' => break,
                        b'-' => {
                            let from = prev?;
                            let to = chars.next().filter(u8::is_ascii_digit)?;
                            set.extend(from..=to);
                            prev = None;
                        }
                        d if d.is_ascii_digit() => {
                            set.push(d);
                            prev = Some(d);
                        }
                        _ => return None,
                    }
                }
                if set.is_empty() {
                    return None;
                }
                set
            }
            _ => return None,
        });
    }
    Some(out)
}

/// True when `number` is all digits and matches `pattern` position by position.
/// An empty pattern matches nothing (an empty number is never an extension).
pub fn matches_pattern(number: &str, pattern: &str) -> bool {
    let Some(sets) = parse_pattern(pattern) else {
        return false;
    };
    !sets.is_empty()
        && number.len() == sets.len()
        && number.bytes().zip(&sets).all(|(b, set)| set.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern("201", "_XXX"));
        assert!(matches_pattern("201", "_2XX"));
        assert!(!matches_pattern("101", "_2XX"));
        assert!(matches_pattern("305", "_[1-3]0[05]"));
        assert!(!matches_pattern("2010", "_XXX"));
        assert!(!matches_pattern("", "_XXX"));
        assert!(matches_pattern("201", "201"));
        for hostile in ["../../etc/passwd", "1;rm", "unknown", "2 1", "２01"] {
            assert!(!matches_pattern(hostile, "_XXX"), "{hostile}");
        }
        // An empty pattern body matches nothing, not the empty number.
        assert!(!matches_pattern("", "_"));
        assert!(!matches_pattern("", ""));
        assert!(!pattern_ok("_X."));
        assert!(!pattern_ok("_[a]X"));
        assert!(!pattern_ok("_[1-"));
    }
}

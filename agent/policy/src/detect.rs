//! Secret and PII detectors, run over rebuilt text. Each returns the character ranges to
//! redact; the caller maps characters back to the key events that typed them.

use regex::Regex;
use std::ops::Range;

/// One detector.
pub struct Detector {
    pub name: String,
    regex: Regex,
    /// The capture group whose text is redacted (0: the whole match).
    group: usize,
    check: Check,
}

#[derive(Clone, Copy)]
enum Check {
    None,
    Luhn,
    Iban,
}

/// Built-in detectors: (name, regex, group to redact).
const BUILTIN: &[(&str, &str, usize)] = &[
    (
        "aws_access_key",
        r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}",
        0,
    ),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        0,
    ),
    ("gitlab_token", r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,}", 0),
    ("slack_token", r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}", 0),
    (
        "stripe_key",
        r"(?-u:\b)(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
        0,
    ),
    ("openai_key", r"(?-u:\b)sk-(?:proj-)?[A-Za-z0-9_-]{20,}", 0),
    ("google_api_key", r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", 0),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        0,
    ),
    (
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        0,
    ),
    ("phone", r"\+[1-9][0-9 ()-]{7,16}[0-9]", 0),
    (
        "assignment",
        r"(?i)(?-u:\b)(?:password|passwd|passphrase|pwd|secret|api_?key|token)\s*[=:]\s*(\S+)",
        1,
    ),
];

const CARD: &str = r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)";
const IBAN: &str = r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}";

/// The PEM private-key block markers: everything from BEGIN to END is redacted.
pub const PEM_BEGIN: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----";
pub const PEM_END: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY-----$";

/// The detector set in force.
pub struct Detectors {
    list: Vec<Detector>,
    pub pem_begin: Regex,
    pub pem_end: Regex,
}

/// An operator-supplied detector.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    pub name: String,
    pub regex: String,
}

impl Detectors {
    /// No detectors (the fallback when nothing else compiles).
    pub fn empty() -> Detectors {
        Detectors {
            list: Vec::new(),
            pem_begin: Regex::new("a^").unwrap_or_else(|_| unreachable_regex()),
            pem_end: Regex::new("a^").unwrap_or_else(|_| unreachable_regex()),
        }
    }

    /// The built-in detectors plus `custom` ones (errors name the bad detector).
    pub fn new(custom: &[CustomDetector]) -> Result<Detectors, String> {
        let mut list = Vec::new();
        for (name, re, group) in BUILTIN {
            list.push(Detector {
                name: (*name).into(),
                regex: Regex::new(re).map_err(|e| format!("built-in {name}: {e}"))?,
                group: *group,
                check: Check::None,
            });
        }
        list.push(Detector {
            name: "card_number".into(),
            regex: Regex::new(CARD).map_err(|e| e.to_string())?,
            group: 0,
            check: Check::Luhn,
        });
        list.push(Detector {
            name: "iban".into(),
            regex: Regex::new(IBAN).map_err(|e| e.to_string())?,
            group: 0,
            check: Check::Iban,
        });
        for c in custom {
            if c.name.is_empty() {
                return Err("a detector needs a name".into());
            }
            list.push(Detector {
                name: c.name.clone(),
                regex: Regex::new(&c.regex).map_err(|e| format!("detector `{}`: {e}", c.name))?,
                group: 0,
                check: Check::None,
            });
        }
        Ok(Detectors {
            list,
            pem_begin: Regex::new(PEM_BEGIN).map_err(|e| e.to_string())?,
            pem_end: Regex::new(PEM_END).map_err(|e| e.to_string())?,
        })
    }

    /// Checks operator-supplied detectors without building the whole set.
    pub fn check_custom(custom: &[CustomDetector]) -> Result<(), String> {
        for c in custom {
            if c.name.is_empty() {
                return Err("a detector needs a name".into());
            }
            Regex::new(&c.regex).map_err(|e| format!("detector `{}`: {e}", c.name))?;
        }
        Ok(())
    }

    /// Every (detector, byte range) match in `text`.
    pub fn scan<'a>(&'a self, text: &str) -> Vec<(&'a str, Range<usize>)> {
        let mut out = Vec::new();
        for d in &self.list {
            if let Check::Luhn = d.check {
                luhn_matches(&d.regex, text, |r| out.push((d.name.as_str(), r)));
                continue;
            }
            for caps in d.regex.captures_iter(text) {
                let Some(m) = caps.get(d.group) else { continue };
                let ok = match d.check {
                    Check::None => true,
                    Check::Luhn => luhn(m.as_str()),
                    Check::Iban => iban(m.as_str()),
                };
                if ok && !m.range().is_empty() {
                    out.push((d.name.as_str(), m.range()));
                }
            }
        }
        out
    }
}

/// Card numbers: a match that fails Luhn is retried from its next digit group, or a digit
/// before the card ("item 9 4111 1111 1111 1111") would hide it.
fn luhn_matches(re: &Regex, text: &str, mut found: impl FnMut(Range<usize>)) {
    let mut at = 0;
    while let Some(m) = re.find_at(text, at) {
        if luhn(m.as_str()) {
            found(m.range());
            at = m.end();
        } else {
            at = match m.as_str().find([' ', '-']) {
                Some(i) => m.start() + i + 1,
                None => m.end(),
            };
        }
    }
}

fn unreachable_regex() -> Regex {
    // `a^` is a valid pattern; this only exists to avoid a panic path.
    std::process::abort()
}

/// The Luhn checksum of the digits in `s` (13–19 of them).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 mod-97 check.
pub fn iban(s: &str) -> bool {
    let c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if c.len() < 15 || c.len() > 34 {
        return false;
    }
    let rearranged = c[4..].iter().chain(c[..4].iter());
    let mut rem: u32 = 0;
    for ch in rearranged {
        let v = match ch.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Detectors, t: &str) -> Vec<String> {
        d.scan(t).into_iter().map(|(n, _)| n.to_owned()).collect()
    }

    #[test]
    fn detectors_find_canaries() {
        let d = Detectors::new(&[]).expect("detectors");
        assert!(names(&d, "key AKIAIOSFODNN7EXAMPLE here").contains(&"aws_access_key".into()));
        assert!(names(&d, "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB")
            .contains(&"github_token".into()));
        assert!(names(&d, "pay 4111 1111 1111 1111 now").contains(&"card_number".into()));
        assert!(!names(&d, "4111 1111 1111 1112").contains(&"card_number".into()));
        let m = d.scan("item 9 4111111111111111 x");
        assert!(
            m.iter().any(|(n, r)| *n == "card_number" && *r == (7..23)),
            "{m:?}"
        );
        assert!(names(&d, "mail bob.smith@example.com").contains(&"email".into()));
        assert!(names(&d, "GB82 WEST 1234 5698 7654 32").contains(&"iban".into()));
        let m = d.scan("export PASSWORD=hunter2");
        let (_, r) = m
            .iter()
            .find(|(n, _)| *n == "assignment")
            .expect("assignment");
        assert_eq!(&"export PASSWORD=hunter2"[r.clone()], "hunter2");
        assert!(d.scan("hello world, nothing to see").is_empty());
        assert!(d.pem_begin.is_match("-----BEGIN RSA PRIVATE KEY-----"));
        let custom = Detectors::new(&[CustomDetector {
            name: "ticket".into(),
            regex: "TICKET-[0-9]+".into(),
        }])
        .expect("custom");
        assert!(names(&custom, "see TICKET-42").contains(&"ticket".into()));
        assert!(Detectors::new(&[CustomDetector {
            name: "bad".into(),
            regex: "(".into(),
        }])
        .is_err());
    }
}

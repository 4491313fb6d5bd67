//! Secret and PII detectors, run over rebuilt text. Each returns the character ranges to
//! redact; the caller maps characters back to the key events that typed them.
//!
//! - [`rules`]: provider formats (after gitleaks, trufflehog, Nosey Parker) and PII (email,
//!   phone numbers),
//! - [`assignment`]: secrets assigned in code and config (`password = "…"`),
//! - [`entropy`]: generic high-entropy base64 and hex tokens (after detect-secrets),
//! - card numbers (Luhn) and IBANs (mod 97), here, and PEM / PGP private-key blocks, which
//!   the caller follows from their BEGIN line to their END line.
//!
//! Cost: the scan runs on every key release over at most 256 chars. Each regex runs on its
//! own: most start with a literal that their prefilter finds (or not) at memchr speed. A
//! `RegexSet` of all the built-ins as a prefilter was measured and dropped: over the test
//! corpora in 256-byte chunks (release build, warm caches) the set alone took ~370–580 µs a
//! scan, the whole scan without it ~55 µs (the entropy detectors ~4 µs of that).

pub mod assignment;
pub mod entropy;
pub mod rules;

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
    /// `regex` is [`assignment::PATTERN`]; the key and value are checked in code.
    Assignment,
    /// `regex` only says a candidate run exists; [`entropy`] finds and judges the runs.
    Hex,
    Base64,
}

const CARD: &str = r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)";
const IBAN: &str = r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}";
/// Candidate runs for the entropy detectors (unused but for names: [`entropy`] scans itself).
const HEX_RUN: &str = r"[0-9a-fA-F]{20}";
const BASE64_RUN: &str = r"[A-Za-z0-9+/_-]{20}";

/// The PEM private-key block markers: everything from BEGIN to END is redacted. PGP's
/// `-----BEGIN PGP PRIVATE KEY BLOCK-----` is one too.
pub const PEM_BEGIN: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----";
pub const PEM_END: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----$";
/// `PEM_END` anywhere (not only at the end of the text).
const PEM_END_ANY: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----";

/// The detector set in force.
pub struct Detectors {
    list: Vec<Detector>,
    pub pem_begin: Regex,
    pub pem_end: Regex,
    pem_end_any: Regex,
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
            pem_end_any: Regex::new("a^").unwrap_or_else(|_| unreachable_regex()),
        }
    }

    /// The built-in detectors plus `custom` ones (errors name the bad detector).
    pub fn new(custom: &[CustomDetector]) -> Result<Detectors, String> {
        let mut list = Vec::new();
        let mut add = |name: &str, re: &str, group: usize, check: Check| -> Result<(), String> {
            list.push(Detector {
                name: name.into(),
                regex: Regex::new(re).map_err(|e| format!("built-in {name}: {e}"))?,
                group,
                check,
            });
            Ok(())
        };
        for (name, re, group) in rules::PROVIDERS {
            add(name, re, *group, Check::None)?;
        }
        add("card_number", CARD, 0, Check::Luhn)?;
        add("iban", IBAN, 0, Check::Iban)?;
        add("assignment", assignment::PATTERN, 0, Check::Assignment)?;
        add("assignment", assignment::FLAG_PATTERN, 0, Check::Assignment)?;
        add("high_entropy_hex", HEX_RUN, 0, Check::Hex)?;
        add("high_entropy_base64", BASE64_RUN, 0, Check::Base64)?;
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
            pem_end_any: Regex::new(PEM_END_ANY).map_err(|e| e.to_string())?,
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

    /// Every (detector, byte range) match in `text`: built-in detectors first, most specific
    /// first (the first match to claim a char names its redaction), then the operator's.
    pub fn scan<'a>(&'a self, text: &str) -> Vec<(&'a str, Range<usize>)> {
        let mut out = Vec::new();
        for d in &self.list {
            let name = d.name.as_str();
            let found = match d.check {
                Check::Luhn => {
                    luhn_matches(&d.regex, text, |r| out.push((name, r)));
                    continue;
                }
                Check::Iban => iban_matches(&d.regex, text),
                Check::Assignment => assignment::matches(&d.regex, text),
                Check::Hex => entropy::hex_matches(text),
                Check::Base64 => entropy::base64_matches(text),
                Check::None => d
                    .regex
                    .captures_iter(text)
                    .filter_map(|caps| caps.get(d.group))
                    .map(|m| m.range())
                    .collect(),
            };
            out.extend(
                found
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| (name, r)),
            );
        }
        out
    }

    /// The byte ranges `scan` finds plus private-key blocks (from a BEGIN line to its END
    /// line, or to the end of `text`), merged and sorted: what the caller redacts of `text`.
    pub fn ranges(&self, text: &str) -> Vec<Range<usize>> {
        let mut all: Vec<Range<usize>> = self.scan(text).into_iter().map(|(_, r)| r).collect();
        let mut at = 0;
        while let Some(b) = self.pem_begin.find_at(text, at) {
            let end = self
                .pem_end_any
                .find_at(text, b.end())
                .map_or(text.len(), |m| m.end());
            all.push(b.start()..end);
            at = end;
        }
        merge(all)
    }
}

/// `ranges` sorted, overlapping and touching ones merged.
pub fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(l) if r.start <= l.end => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
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

/// IBANs: a match that fails mod 97 is retried without its last space-separated group (the
/// pattern also takes a following word in capitals, "DE89… EUR"), then from its next group.
fn iban_matches(re: &Regex, text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(m) = re.find_at(text, at) {
        let mut s = m.as_str();
        let found = loop {
            if iban(s) {
                break true;
            }
            match s.rfind(' ') {
                Some(i) if i > 4 => s = &s[..i],
                _ => break false,
            }
        };
        if found {
            out.push(m.start()..m.start() + s.len());
            at = m.start() + s.len();
        } else {
            at = match m.as_str().find(' ') {
                Some(i) => m.start() + i + 1,
                None => m.end(),
            };
        }
    }
    out
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

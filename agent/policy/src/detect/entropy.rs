//! Generic high-entropy tokens, after Yelp detect-secrets' `Base64HighEntropyString`
//! (limit 4.5) and `HexHighEntropyString` (limit 3.0): Shannon entropy, in bits per char,
//! over the token's own characters.
//!
//! What we chose, and why:
//!
//! - **Tokens.** detect-secrets only looks inside quotes; typed text is rarely quoted, so every
//!   maximal run is a candidate: base64 runs are `[A-Za-z0-9+/_-]` (standard and URL-safe
//!   alphabets) with up to two trailing `=`; hex runs are maximal `[A-Za-z0-9]` runs made only
//!   of `[0-9a-f]` or only of `[0-9A-F]`. `.`, `:`, `@` and whitespace end a token, so URLs and
//!   dotted names split into short pieces; `-` ends a hex run, so UUIDs (8-4-4-4-12) are never
//!   a 20-char hex token and are kept: they name things in code and logs far more often than
//!   they are secrets (the Heroku rule catches the UUIDs that are keys, by context).
//! - **Minimum length 20.** Shorter random strings cannot be told from words.
//! - **Base64 threshold.** A fixed 4.5 bits (detect-secrets) is out of reach for short tokens:
//!   the entropy of a string is at most log2 of its length, and a random 24-char base64 string
//!   has about 4.25 (measured: 1st percentile 3.62 at 20 chars, 3.89 at 24, 4.23 at 32, 4.47 at
//!   40, 4.93 at 64). So the threshold grows with the length: `3.7 + 0.035 * (len - 20)`, capped
//!   at detect-secrets' 4.5 (reached at 43 chars). On its own that would take long identifiers
//!   and paths (`very_long_snake_case_identifier…` has 4.06), so a base64 token must also mix
//!   upper case, lower case and digits, and switch between those classes (or symbols) on at
//!   least 30% of its adjacent pairs (random base64: 1st percentile 0.37; CamelCase and
//!   `snake_case` names: 0.15–0.30). That keeps prose, `snake_case_names`, `CamelCase` words,
//!   paths, version strings and most code, at the cost of missing the ~3% of random 20–24
//!   char tokens that happen to have no digit.
//! - **Hex threshold 3.0** (detect-secrets' limit; random 20-char hex: 1st percentile 2.91,
//!   median 3.38), and at least one digit and one letter (a run of digits is a number; card
//!   numbers have their own Luhn rule). Git object names (40 hex) are redacted too: typed, they
//!   cannot be told from hex API secrets (Twilio auth tokens, OAuth client secrets).
//! - **Tokens still being typed.** A token at the very end of the text that starts like a
//!   provider token (`ghp_`, `sk-`, … see [`super::rules::PREFIXES`]) is left alone until it
//!   ends, so the provider rule (which runs first) names the redaction.

use super::rules::PREFIXES;
use std::ops::Range;

/// Minimum token length.
pub const MIN_LEN: usize = 20;
/// detect-secrets' Base64HighEntropyString limit, reached at 43 chars.
pub const BASE64_LIMIT: f64 = 4.5;
/// detect-secrets' HexHighEntropyString limit.
pub const HEX_LIMIT: f64 = 3.0;
/// Minimum share of adjacent char pairs in different classes, for base64 tokens.
pub const MIN_SWITCHES: f64 = 0.3;

/// Shannon entropy of `s` in bits per char.
pub fn shannon(s: &str) -> f64 {
    let mut counts = [0u32; 128];
    let mut n = 0u32;
    let mut other = 0u32;
    for b in s.bytes() {
        n += 1;
        match counts.get_mut(b as usize) {
            Some(c) => *c += 1,
            None => other += 1,
        }
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .chain(std::iter::once(&other))
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The base64 threshold for a token of `len` chars.
pub fn base64_threshold(len: usize) -> f64 {
    (3.7 + 0.035 * (len.saturating_sub(MIN_LEN) as f64)).min(BASE64_LIMIT)
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

fn class(b: u8) -> u8 {
    if b.is_ascii_uppercase() {
        0
    } else if b.is_ascii_lowercase() {
        1
    } else if b.is_ascii_digit() {
        2
    } else {
        3
    }
}

/// Whether `t` (a base64 run) reads as random.
pub fn base64_secret(t: &str) -> bool {
    let b = t.trim_end_matches('=').as_bytes();
    if b.len() < MIN_LEN {
        return false;
    }
    let (up, low, dig) = (
        b.iter().any(u8::is_ascii_uppercase),
        b.iter().any(u8::is_ascii_lowercase),
        b.iter().any(u8::is_ascii_digit),
    );
    if !(up && low && dig) {
        return false;
    }
    let switches = b.windows(2).filter(|w| class(w[0]) != class(w[1])).count();
    if (switches as f64) < MIN_SWITCHES * ((b.len() - 1) as f64) {
        return false;
    }
    shannon(t) >= base64_threshold(b.len())
}

/// Whether `t` (an alphanumeric run) is a random hex string.
pub fn hex_secret(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < MIN_LEN {
        return false;
    }
    let lower = b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let upper = b.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F'));
    if !(lower || upper) {
        return false;
    }
    if !b.iter().any(u8::is_ascii_digit) || !b.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    shannon(t) >= HEX_LIMIT
}

/// Byte ranges of maximal runs of bytes satisfying `f`, at least `MIN_LEN` long.
fn runs(text: &str, f: fn(u8) -> bool) -> impl Iterator<Item = Range<usize>> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            while i < b.len() && !f(b[i]) {
                i += 1;
            }
            let start = i;
            while i < b.len() && f(b[i]) {
                i += 1;
            }
            if i - start >= MIN_LEN {
                return Some(start..i);
            }
        }
        None
    })
}

/// Whether the run `r` is at the end of `text` and starts like a provider token.
fn still_typed(text: &str, r: &Range<usize>) -> bool {
    r.end == text.len() && PREFIXES.iter().any(|p| text[r.clone()].starts_with(p))
}

/// High-entropy hex tokens in `text`.
pub fn hex_matches(text: &str) -> Vec<Range<usize>> {
    runs(text, |b: u8| b.is_ascii_alphanumeric())
        .filter(|r| hex_secret(&text[r.clone()]) && !still_typed(text, r))
        .collect()
}

/// High-entropy base64 tokens in `text` (with their `=` padding).
pub fn base64_matches(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    runs(text, is_b64)
        .map(|r| {
            let mut end = r.end;
            while end < b.len() && end < r.end + 2 && b[end] == b'=' {
                end += 1;
            }
            r.start..end
        })
        .filter(|r| base64_secret(&text[r.clone()]) && !still_typed(text, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(shannon(""), 0.0);
        assert_eq!(shannon("aaaa"), 0.0);
        assert!((shannon("abcd") - 2.0).abs() < 1e-9);
        assert!((shannon("0123456789abcdef") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn random_tokens_are_found_and_words_are_not() {
        for t in [
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "Zx9Qm2Lr7Tp4Wv8Kb3Nh6Yd1",
            "dGhpcyBpcyBhIHNlY3JldCBrZXkgMTIzNDU2Nzg5MA==",
        ] {
            assert!(!base64_matches(&format!("x {t} y")).is_empty(), "{t}");
        }
        for t in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
            "9f86d081884c7d659a2feaa0c55ad015",
        ] {
            assert!(!hex_matches(&format!("x {t} y")).is_empty(), "{t}");
        }
        for t in [
            "very_long_snake_case_identifier_name",
            "HTTPServerRequestHandlerFactory",
            "/usr/lib/python3/dist-packages/requests/adapters.py",
            "123e4567-e89b-12d3-a456-426614174000",
            "x86_64-unknown-linux-gnu",
            "12345678901234567890123",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        ] {
            let s = format!("x {t} y");
            assert!(base64_matches(&s).is_empty(), "{t}");
            assert!(hex_matches(&s).is_empty(), "{t}");
        }
    }

    #[test]
    fn a_provider_token_being_typed_is_left_to_its_rule() {
        let t = "x ghp_Zx9Qm2Lr7Tp4Wv8Kb3Nh6Yd1Qz";
        assert!(base64_matches(t).is_empty());
        assert!(!base64_matches(&format!("{t} ")).is_empty());
    }
}

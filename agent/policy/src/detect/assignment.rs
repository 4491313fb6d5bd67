//! Secrets assigned in code and config: `password=hunter2`, `export TOKEN=…`,
//! `"client_secret": "…"`, `CLIENT_SECRET = "…"`, `secret_access_key = '…'`,
//! `'vm_password': "…"`, YAML `api_key: …`, `DB_PASS := …`, `token => …`.
//!
//! The key name stays; the value is redacted: a quoted value whole (spaces included, up to
//! its closing quote, or to the end of the line while it is still being typed), a bare value
//! up to the next whitespace.
//!
//! The key is a run of `[A-Za-z0-9_.-]` split into words at `_`, `.`, `-` and camelCase humps;
//! its last word (or last two, joined) must be one of [`LAST_WORDS`] / [`LAST_TWO`], in any
//! case, with any prefix (`DB_`, `aws_`, `spring.datasource.`). So `DB_PASSWORD`,
//! `aws_secret_access_key`, `authToken` and `client_secret` are keys, while `bypass`,
//! `author`, `token_type`, `password_file` and `passenger` are not.
//!
//! Bare values that read as code rather than a literal are left: comparisons (`==`), paths
//! (`::`), references (`$VAR`, `${…}`, `{{ … }}`), structures (`{`, `[`), type annotations and
//! literals (`str`, `None`, `true`, …) and expressions with a call, a member access or a
//! generic (`self.next_token()`, `Option<String>`, `Token,`), lists of names
//! (`user, password = user, password`), and a key inside a string literal
//! (`prompt='Password: '`).
//!
//! The text is scanned after every key, so a bare value that ends the text may still be
//! growing: one that could be the start of a literal or code root (`Non`, `sel`) or that is a
//! `snake_case` name waits for the next char; any other (`hunter2`, `letmein`) is redacted at
//! once, because nothing may follow it before its keys leave the holdback queue. As typed,
//! code can still lose the first word of an expression (`password = lexer` before
//! `.get_token()`): a few chars, a price for not leaking `password=letmein`.

use regex::{Captures, Regex};
use std::ops::Range;

/// The candidate pattern: a key containing one of the stems, a separator, a value.
pub const PATTERN: &str = r#"(?P<key>[A-Za-z0-9_.-]*(?i:pass|pwd|secret|key|token|auth|credential|creds)[A-Za-z0-9_.-]*)["'`]?[ \t]*(?P<sep>:=|=>|=|:)[ \t]*(?:"(?P<dq>[^"\n]*)"?|'(?P<sq>[^'\n]*)'?|`(?P<bq>[^`\n]*)`?|(?P<bare>[^\s"'`;][^\s;]*))"#;

/// Command-line flags: `--password hunter2`, `-Password VMware1!`, `--token=…`, `--api-key …`.
pub const FLAG_PATTERN: &str = r#"(?:^|[\s(])--?(?P<key>[A-Za-z][A-Za-z0-9_-]*)(?:=|[ \t]+)(?:"(?P<dq>[^"\n]*)"?|'(?P<sq>[^'\n]*)'?|(?P<bare>[^\s"'`;-][^\s;]*))"#;

/// Last words that make a key a secret's name.
pub const LAST_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "passcode",
    "secret",
    "clientsecret",
    "secretkey",
    "accesskey",
    "apikey",
    "privatekey",
    "token",
    "authtoken",
    "accesstoken",
    "refreshtoken",
    "auth",
    "credential",
    "credentials",
    "creds",
];

/// Last two words, joined, that make a key a secret's name (`secret_key`, `API-Key`).
pub const LAST_TWO: &[&str] = &[
    "secretkey",
    "accesskey",
    "apikey",
    "privatekey",
    "authkey",
    "masterkey",
    "encryptionkey",
    "signingkey",
    "clientsecret",
];

/// Bare values that are literals or type names, not secrets.
const NOT_VALUES: &[&str] = &[
    "null",
    "none",
    "nil",
    "true",
    "false",
    "undefined",
    "str",
    "string",
    "&str",
    "int",
    "bool",
    "bytes",
    "required",
    "optional",
    // Roots of member-access chains, read before the `.` that follows them is typed.
    "self",
    "this",
    "cls",
    "os",
    "env",
    "process",
    "config",
    "settings",
    "request",
    "ctx",
    "new",
    "await",
    // Python statements after a block's colon: `if x == password: return`.
    "return",
    "raise",
    "pass",
    "break",
    "continue",
    "yield",
];

/// The words of a key, lower-cased: `DB_PASSWORD` → `db password`, `authToken` → `auth token`.
fn words(key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if matches!(c, '_' | '.' | '-') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `key` names a secret.
pub fn secret_key(key: &str) -> bool {
    let w = words(key);
    let Some(last) = w.last() else { return false };
    if LAST_WORDS.contains(&last.as_str()) {
        return true;
    }
    if w.len() >= 2 {
        let two = format!("{}{}", w[w.len() - 2], last);
        return LAST_TWO.contains(&two.as_str());
    }
    false
}

/// Whether a bare value reads as code (or a reference), not as a literal secret.
fn code_like(v: &str) -> bool {
    if v.starts_with([
        '=', ':', '>', '$', '{', '}', '[', ']', '(', ')', '<', '%', '&', '*', '#', '|', '\\', '?',
    ]) {
        return true;
    }
    if NOT_VALUES.iter().any(|n| v.eq_ignore_ascii_case(n)) {
        return true;
    }
    // An identifier followed by a call, member access, path, generic or list punctuation.
    let b = v.as_bytes();
    let ident_len = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let starts_ident = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
    starts_ident
        && ident_len < b.len()
        && matches!(b[ident_len], b'(' | b'.' | b'<' | b'[' | b',' | b')' | b':')
}

/// The byte range of the value in one candidate match, if it is a secret's value.
pub fn value(text: &str, caps: &Captures) -> Option<Range<usize>> {
    let key = caps.name("key")?;
    if !secret_key(key.as_str()) {
        return None;
    }
    let sep = caps.name("sep").map_or("", |m| m.as_str());
    // `"$PWD":/src`: a shell variable, not a key (PHP's `$password = …` is one).
    let before = key
        .start()
        .checked_sub(1)
        .and_then(|i| text.as_bytes().get(i));
    if sep == ":" && before == Some(&b'$') {
        return None;
    }
    let quoted = caps
        .name("dq")
        .or_else(|| caps.name("sq"))
        .or_else(|| caps.name("bq"));
    if let Some(v) = quoted {
        // `prompt='Password: '`: the key is inside a string literal, and the "value" starts
        // at that literal's closing quote.
        let b = text.as_bytes();
        let at = |i: Option<usize>| i.and_then(|i| b.get(i)).copied();
        let q = at(v.start().checked_sub(1));
        let before = at(key.start().checked_sub(1));
        if q.is_some() && before == q && at(Some(key.end())) != q {
            return None;
        }
        let s = v.as_str();
        if s.trim().is_empty() || s.starts_with("${") || s.starts_with("{{") {
            return None;
        }
        return Some(v.range());
    }
    let v = caps.name("bare")?;
    let s = v.as_str().trim_end_matches([',', ';']);
    if s.is_empty() || code_like(s) {
        return None;
    }
    // A field or parameter type: `token: Token,`, `f(password: Secret)`.
    let type_name = s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if sep == ":" && type_name && v.as_str().len() > s.len() {
        return None;
    }
    // A list of names: `user, password = user, password`.
    let name = s.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_');
    if name && v.as_str()[s.len()..].starts_with(',') {
        return None;
    }
    // Still being typed (the value ends the text): the start of a literal or code root
    // (`Non…`, `sel…`) or of a snake_case name (`fallback_getp…`) waits for the next char.
    if v.end() == text.len() {
        let lower = s.to_ascii_lowercase();
        if NOT_VALUES.iter().any(|n| n.starts_with(&lower))
            || (s.contains('_') && s.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'))
        {
            return None;
        }
    }
    Some(v.start()..v.start() + s.len())
}

/// Every assigned secret value in `text`.
pub fn matches(re: &Regex, text: &str) -> Vec<Range<usize>> {
    re.captures_iter(text)
        .filter_map(|c| value(text, &c))
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(t: &str) -> Vec<&str> {
        let re = Regex::new(PATTERN).expect("pattern");
        matches(&re, t).into_iter().map(|r| &t[r]).collect()
    }

    #[test]
    fn keys() {
        for k in [
            "password",
            "DB_PASSWORD",
            "aws_secret_access_key",
            "client_secret",
            "authToken",
            "API-Key",
            "spring.datasource.password",
            "vm_password",
            "GITHUB_TOKEN",
            "credentials",
            "private_key",
            "apikey",
            "DB_PASS",
        ] {
            assert!(secret_key(k), "{k}");
        }
        for k in [
            "bypass",
            "author",
            "token_type",
            "password_file",
            "passenger",
            "tokenizer",
            "keyboard",
            "primary_key",
        ] {
            assert!(!secret_key(k), "{k}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(redacted(r#""client_secret": "a b c""#), ["a b c"]);
        assert_eq!(
            redacted("CLIENT_SECRET = \"s3cr3t value\""),
            ["s3cr3t value"]
        );
        assert_eq!(redacted("secret_access_key = 'abc/def+g'"), ["abc/def+g"]);
        assert_eq!(redacted(r#"'vm_password': "pa ss""#), ["pa ss"]);
        assert_eq!(redacted("api_key: 12345abcde"), ["12345abcde"]);
        assert_eq!(redacted("export TOKEN=abc123, next"), ["abc123"]);
        assert_eq!(redacted("password=hunter"), ["hunter"]);
        assert_eq!(redacted("password=smtp_password # x"), ["smtp_password"]);
        assert_eq!(redacted("password = \"still typ"), ["still typ"]);
        for code in [
            "if password == other:",
            "token = self.lexer.get_token()",
            "fn f(token: &str) -> bool",
            "def f(password: str, token: Optional[str] = None):",
            "password=$DB_PASSWORD",
            "token: Token,",
            "\"token\": {",
            "password = \"\"",
            "use token::Kind;",
            "docker run -v \"$PWD\":/src -w /src img",
            "println!(\"{token:?}\");",
            "    token = self",
            "    token = sel",
            "    passwd = Non",
            "    passwd = fallback_getp",
            "def unix_getpass(prompt='Password: ', stream=None):",
            "self.user, self.password = user, password",
        ] {
            assert!(redacted(code).is_empty(), "{code}: {:?}", redacted(code));
        }
    }
}

//! Object keys: `{prefix}/{machine}/{spool_id}/{first_seq:020}-{sha256[..32]}.sealed`.
//!
//! A key is a function of the segment's place in its spool and of its content, so a retry or
//! a crash between the PUT and the marker re-sends to the same key, and one key always names
//! one content.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How many hex digits of the content's SHA-256 go into a key (128 bits).
pub const HASH_HEX_LEN: usize = 32;

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The key of the segment starting at `first_seq` with content hash `sha256_hex` (full hex).
/// `machine` is the keyed machine pseudonym, when one is configured.
pub fn object_key(
    prefix: &str,
    machine: Option<&str>,
    spool_id: &str,
    first_seq: u64,
    sha256_hex: &str,
) -> String {
    let mut parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(m) = machine {
        parts.push(m);
    }
    parts.push(spool_id);
    let hash = &sha256_hex[..sha256_hex.len().min(HASH_HEX_LEN)];
    let name = format!("{first_seq:020}-{hash}.sealed");
    parts.push(&name);
    parts.join("/")
}

/// The machine pseudonym the exporter uses (`imprint export`'s `machine` id): HMAC-SHA256 of
/// `machine` in the `machine` domain under the operator's pseudonym key, 128 bits hex.
pub fn machine_pseudonym(key: &[u8], machine_source: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(b"machine");
    mac.update(&[0]);
    mac.update(machine_source.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// What identifies this machine: `/etc/machine-id`, else the host name (as the exporter).
pub fn machine_source() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(|s| format!("machine-id:{s}"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| format!("hostname:{}", s.trim()))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Parses a key's file name back: (first_seq, hash prefix).
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".sealed")?;
    let (seq, hash) = stem.split_once('-')?;
    if seq.len() != 20 || hash.len() != HASH_HEX_LEN {
        return None;
    }
    if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((seq.parse().ok()?, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_shaped() {
        let h = sha256_hex(b"segment");
        let k = object_key("fleet/a/", Some("m1"), "0123", 7, &h);
        assert_eq!(
            k,
            format!("fleet/a/m1/0123/00000000000000000007-{}.sealed", &h[..32])
        );
        assert_eq!(k, object_key("/fleet/a", Some("m1"), "0123", 7, &h));
        assert_eq!(
            object_key("", None, "0123", u64::MAX, &h),
            format!("0123/{}-{}.sealed", u64::MAX, &h[..32])
        );
        let name = k.rsplit('/').next().unwrap();
        assert_eq!(parse_name(name), Some((7, &h[..32])));
        assert_eq!(parse_name("7-abc.sealed"), None);
        assert_ne!(
            k,
            object_key("fleet/a", Some("m1"), "0123", 7, &sha256_hex(b"other"))
        );
        assert_ne!(k, object_key("fleet/a", Some("m1"), "0123", 8, &h));
    }

    #[test]
    fn machine_id_is_the_exporters() {
        let key = [7u8; 32];
        let exporter = imprint_export::pseudonym::Key::from_bytes(&key);
        let src = machine_source();
        assert_eq!(machine_pseudonym(&key, &src), exporter.id("machine", &src));
        assert_eq!(src, imprint_export::pseudonym::machine_source());
    }
}

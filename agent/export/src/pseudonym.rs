//! Pseudonymous ids: keyed HMAC-SHA256, so ids are stable across exports made with one key
//! and cannot be reversed (or recomputed from a guessed uid or hostname) without it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The shortest key accepted, in bytes.
pub const KEY_MIN_BYTES: usize = 16;
/// How to make a key, for error messages.
pub const MAKE_KEY: &str = "head -c32 /dev/urandom > key; chmod 600 key";

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:04o}); the pseudonym key must be private: chmod 600 {path}")]
    Permissions { path: String, mode: u32 },
    #[error("{path} holds {len} bytes; a pseudonym key needs at least {KEY_MIN_BYTES} (make one with: {MAKE_KEY})")]
    Short { path: String, len: usize },
}

/// The operator's pseudonym key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.key_id())
    }
}

impl Key {
    /// A key from bytes (tests, benchmarks).
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes.to_vec())
    }

    /// Reads a key file, which must not be readable by group or others.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let shown = path.display().to_string();
        let read_err = |source| KeyError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown, mode });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        if bytes.len() < KEY_MIN_BYTES {
            return Err(KeyError::Short {
                path: shown,
                len: bytes.len(),
            });
        }
        Ok(Key(bytes))
    }

    /// The id of `value` in `domain` (so a uid and a machine id never share an id): 128 bits
    /// of HMAC-SHA256, hex.
    pub fn id(&self, domain: &str, value: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let out = mac.finalize().into_bytes();
        hex::encode(&out[..16])
    }

    /// Names the key in a manifest without revealing it: a hash of the key.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"imprint pseudonym key id\0");
        h.update(&self.0);
        hex::encode(&h.finalize()[..8])
    }
}

/// What identifies this machine: `/etc/machine-id`, else the host name.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_keyed_and_separated_by_domain() {
        let a = Key::from_bytes(&[1; 32]);
        let b = Key::from_bytes(&[2; 32]);
        assert_eq!(a.id("uid", "1000"), a.id("uid", "1000"));
        assert_ne!(a.id("uid", "1000"), b.id("uid", "1000"));
        assert_ne!(a.id("uid", "1000"), a.id("machine", "1000"));
        assert_eq!(a.id("uid", "1000").len(), 32);
        assert_ne!(a.key_id(), b.key_id());
        assert!(!format!("{a:?}").contains("0101"));
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key");
        std::fs::write(&p, [7u8; 32]).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = Key::load(&p).expect_err("group-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(Key::load(&p).is_ok());
        std::fs::write(&p, [7u8; 4]).expect("write");
        let e = Key::load(&p).expect_err("short");
        assert!(e.to_string().contains("head -c32"), "{e}");
    }
}

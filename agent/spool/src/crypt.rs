//! Encryption at rest: every byte the spool writes is age-encrypted to the operators'
//! X25519 recipients, so the workstation that captured it cannot read it back.
//!
//! Open segments hold one age file per frame (written before the frame reaches the disk), so
//! no plaintext is ever on disk, not even between fsyncs. A frame's envelope keeps a small
//! clear tag beside the ciphertext: the ring position the agent resumes from after a crash,
//! which says where, never what. Sealed segments are one age file over the compressed
//! container.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Start of an encrypted frame payload: `"IMPE" | tag_len u16 | tag | age file`.
pub const ENVELOPE_MAGIC: &[u8; 4] = b"IMPE";
/// Start of an encrypted sealed segment:
/// `"IMPRSEAE" | last_seq u64 | tag_len u16 | tag | age file (the compressed container)`.
/// The clear last sequence number and tag let a restarted agent resume without a key.
pub const SEALED_ENVELOPE_MAGIC: &[u8; 8] = b"IMPRSEAE";
/// Start of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const MAX_TAG: usize = 256;

/// Encryption failures.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("recipient {index} is not an age X25519 recipient (age1…): {why}")]
    BadRecipient { index: usize, why: String },
    #[error("{path}: {why}")]
    Identity { path: String, why: String },
    #[error("encrypted to none of the given identities; pass --identity with an operator's age identity file")]
    NoIdentity,
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
}

/// The operators' public keys that new data is encrypted to.
#[derive(Clone)]
pub struct Recipients(Arc<Vec<age::x25519::Recipient>>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

impl Recipients {
    /// Parses `age1…` strings; an empty list is an error (say "no encryption" with `None`).
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Recipients, CryptError> {
        if keys.is_empty() {
            return Err(CryptError::BadRecipient {
                index: 0,
                why: "the list is empty".into(),
            });
        }
        let parsed = keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                k.as_ref()
                    .trim()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|why| CryptError::BadRecipient {
                        index,
                        why: why.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recipients(Arc::new(parsed)))
    }

    /// How many keys new data is encrypted to.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a parsed list (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One age file holding `plaintext`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptError> {
        let enc = age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() + 200 * self.0.len() + 64);
        let mut w = enc
            .wrap_output(&mut out)
            .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        w.write_all(plaintext)
            .and_then(|()| w.finish().map(|_| ()))
            .map_err(|e| CryptError::Encrypt(e.to_string()))?;
        Ok(out)
    }

    /// An encrypted frame payload: the clear `tag`, then `payload` as an age file.
    pub fn envelope(&self, tag: &[u8], payload: &[u8]) -> Result<Vec<u8>, CryptError> {
        if tag.len() > MAX_TAG {
            return Err(CryptError::Encrypt(format!(
                "clear tag of {} bytes (at most {MAX_TAG})",
                tag.len()
            )));
        }
        let age = self.encrypt(payload)?;
        let mut out = Vec::with_capacity(6 + tag.len() + age.len());
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        out.extend_from_slice(tag);
        out.extend_from_slice(&age);
        Ok(out)
    }
}

/// An encrypted sealed segment holding `container`, whose newest frame is `last_seq` with
/// the clear `tag`.
pub fn seal_envelope(
    r: &Recipients,
    last_seq: u64,
    tag: &[u8],
    container: &[u8],
) -> Result<Vec<u8>, CryptError> {
    let tag = &tag[..tag.len().min(MAX_TAG)];
    let age = r.encrypt(container)?;
    let mut out = Vec::with_capacity(18 + tag.len() + age.len());
    out.extend_from_slice(SEALED_ENVELOPE_MAGIC);
    out.extend_from_slice(&last_seq.to_le_bytes());
    out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(&age);
    Ok(out)
}

/// The last sequence number, clear tag and age file of an encrypted sealed segment.
pub fn open_seal_envelope(data: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let rest = data.strip_prefix(SEALED_ENVELOPE_MAGIC.as_slice())?;
    let last_seq = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let len = u16::from_le_bytes(rest.get(8..10)?.try_into().ok()?) as usize;
    let tag = rest.get(10..10 + len)?;
    Some((last_seq, tag, &rest[10 + len..]))
}

/// The clear tag and the age file of an encrypted frame payload, or `None` for plaintext.
pub fn open_envelope(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = payload.strip_prefix(ENVELOPE_MAGIC.as_slice())?;
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let tag = rest.get(2..2 + len)?;
    Some((tag, &rest[2 + len..]))
}

/// The operators' private keys, for reading data back (`dump`, `export`, `verify`).
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl Identities {
    /// Loads an age identity file (`AGE-SECRET-KEY-1…` lines; several keys allowed, so old
    /// segments stay readable after a rotation).
    pub fn load(path: &Path) -> Result<Identities, CryptError> {
        let err = |why: String| CryptError::Identity {
            path: path.display().to_string(),
            why,
        };
        let file = age::IdentityFile::from_file(path.display().to_string())
            .map_err(|e| err(e.to_string()))?;
        let ids = file.into_identities().map_err(|e| err(e.to_string()))?;
        if ids.is_empty() {
            return Err(err("no identities in the file".into()));
        }
        Ok(Identities(ids))
    }

    /// Identities from in-memory keys (tests and benchmarks).
    pub fn from_keys(keys: Vec<age::x25519::Identity>) -> Identities {
        Identities(
            keys.into_iter()
                .map(|k| Box::new(k) as Box<dyn age::Identity>)
                .collect(),
        )
    }

    /// The plaintext of one age file. A file damaged part-way yields what decrypted before
    /// the damage, with the error.
    pub fn decrypt(&self, age_file: &[u8]) -> (Vec<u8>, Option<CryptError>) {
        let dec = match age::Decryptor::new_buffered(age_file) {
            Ok(d) => d,
            Err(e) => return (Vec::new(), Some(CryptError::Decrypt(e.to_string()))),
        };
        let mut r = match dec.decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity)) {
            Ok(r) => r,
            // Not for these keys (written before a rotation, say): locked, not damaged.
            Err(age::DecryptError::NoMatchingKeys) => {
                return (Vec::new(), Some(CryptError::NoIdentity))
            }
            Err(e) => return (Vec::new(), Some(CryptError::Decrypt(e.to_string()))),
        };
        let mut out = Vec::with_capacity(age_file.len());
        let mut buf = [0u8; 64 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(CryptError::Decrypt(e.to_string()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rotation() {
        let old = age::x25519::Identity::generate();
        let new = age::x25519::Identity::generate();
        let r_old = Recipients::parse(&[old.to_public().to_string()]).unwrap();
        let r_both =
            Recipients::parse(&[old.to_public().to_string(), new.to_public().to_string()]).unwrap();
        let a = r_old.encrypt(b"typed text").unwrap();
        assert!(a.starts_with(AGE_MAGIC));
        assert!(!a.windows(5).any(|w| w == b"typed"));
        let only_new = Identities::from_keys(vec![new.clone()]);
        assert!(
            only_new.decrypt(&a).1.is_some(),
            "the new key cannot read old data"
        );
        let both = Identities::from_keys(vec![new, old]);
        let (plain, err) = both.decrypt(&a);
        assert_eq!(plain, b"typed text");
        assert!(err.is_none());
        let env = r_both.envelope(b"pos", b"secret").unwrap();
        let (tag, file) = open_envelope(&env).unwrap();
        assert_eq!(tag, b"pos");
        assert_eq!(both.decrypt(file).0, b"secret");
        assert!(open_envelope(b"plain capnp").is_none());
        let sealed = seal_envelope(&r_both, 42, b"pos", b"container").unwrap();
        let (last, tag, file) = open_seal_envelope(&sealed).unwrap();
        assert_eq!((last, tag), (42, &b"pos"[..]));
        assert_eq!(both.decrypt(file).0, b"container");
    }

    #[test]
    fn bad_recipients_are_refused_with_their_index() {
        let good = age::x25519::Identity::generate().to_public().to_string();
        let e = Recipients::parse(&[good.as_str(), "age1nope"]).unwrap_err();
        assert!(e.to_string().contains("recipient 1"), "{e}");
        assert!(Recipients::parse::<&str>(&[]).is_err());
    }

    #[test]
    fn damage_yields_the_error_not_garbage() {
        let id = age::x25519::Identity::generate();
        let r = Recipients::parse(&[id.to_public().to_string()]).unwrap();
        let mut a = r.encrypt(&vec![7u8; 200_000]).unwrap();
        let n = a.len();
        a[n - 10] ^= 1;
        let (plain, err) = Identities::from_keys(vec![id]).decrypt(&a);
        assert!(err.is_some());
        assert!(plain.len() < 200_000 && plain.iter().all(|&b| b == 7));
    }
}

//! HMAC-SHA256 keys and the sign/verify primitive used by manifests and probe tokens.
//!
//! Verification compares in constant time (`hmac`'s `verify_slice`), so a forger learns
//! nothing from response timing about how many signature bytes were right.

use std::fmt;

use hmac::{KeyInit, Mac};

use crate::encoding::{Absorb, Encoder};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A secret key for HMAC-SHA256 (manifest signing key, probe key). Never printed.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

/// A key that is too short to be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: a secret key must be at least {min} bytes long (got {len}); generate one with `openssl rand -hex 32`")]
pub struct InvalidSecret {
    /// What the key is for (an env variable or config name).
    pub name: &'static str,
    /// The length given.
    pub len: usize,
    /// The minimum length.
    pub min: usize,
}

impl SecretKey {
    /// The minimum key length: 32 bytes, the HMAC-SHA256 output size.
    pub const MIN_LEN: usize = 32;

    /// Wraps key bytes; `name` says which key this is, for the error.
    ///
    /// # Errors
    /// [`InvalidSecret`] when `bytes` is shorter than [`SecretKey::MIN_LEN`].
    pub fn new(name: &'static str, bytes: impl Into<Vec<u8>>) -> Result<Self, InvalidSecret> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(InvalidSecret { name, len: bytes.len(), min: Self::MIN_LEN });
        }
        Ok(SecretKey(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// HMAC over the message that `write` encodes under `domain`.
    pub(crate) fn sign(&self, domain: &'static str, write: impl FnOnce(&mut Encoder<'_, MacSink>)) -> [u8; 32] {
        let mut sink = MacSink(self.mac());
        write(&mut Encoder::new(&mut sink, domain));
        sink.0.finalize().into_bytes().into()
    }

    /// Checks `tag` against the HMAC of the message, in constant time.
    pub(crate) fn verify(
        &self,
        domain: &'static str,
        tag: &[u8],
        write: impl FnOnce(&mut Encoder<'_, MacSink>),
    ) -> bool {
        let mut sink = MacSink(self.mac());
        write(&mut Encoder::new(&mut sink, domain));
        sink.0.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({} bytes, redacted)", self.0.len())
    }
}

/// Parses a tag in its one accepted spelling (64 lower-case hex digits), so that one signed
/// value has exactly one valid text.
pub(crate) fn parse_tag(hex_text: &str) -> Option<[u8; 32]> {
    if hex_text.len() != 64 || !hex_text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut tag).ok()?;
    Some(tag)
}

/// Adapts an HMAC state to [`Absorb`].
pub(crate) struct MacSink(HmacSha256);

impl Absorb for MacSink {
    fn absorb(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_rejected_by_name() {
        let err = SecretKey::new("EDGEGEN_PROBE_KEY", "short").unwrap_err();
        assert!(err.to_string().starts_with("EDGEGEN_PROBE_KEY: a secret key must be at least 32 bytes"));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = SecretKey::new("k", "super-secret-key-material-0123456789").unwrap();
        assert!(!format!("{key:?}").contains("super"));
    }

    #[test]
    fn domains_separate_signatures() {
        let key = SecretKey::new("k", [7u8; 32]).unwrap();
        let a = key.sign("edgegen/a/v1", |e| {
            e.field(b"x");
        });
        let b = key.sign("edgegen/b/v1", |e| {
            e.field(b"x");
        });
        assert_ne!(a, b);
        assert!(key.verify("edgegen/a/v1", &a, |e| {
            e.field(b"x");
        }));
        assert!(!key.verify("edgegen/b/v1", &a, |e| {
            e.field(b"x");
        }));
    }
}

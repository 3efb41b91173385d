//! The length-prefixed, domain-separated encoding under every hash and MAC in this crate.
//!
//! A message is a domain tag (e.g. `edgegen/key/v1`, fixed per purpose and version) followed
//! by fields, each written as its byte length (`u32`, big-endian) and then its bytes. Because
//! every field carries its length, no two distinct field tuples share an encoding (unlike
//! delimiter concatenation, where `("a:b", "c")` and `("a", "b:c")` collide), and because the
//! tag differs per purpose, a key can never be mistaken for a manifest signature or a token.
//!
//! Fields are limited to [`MAX_FIELD_LEN`] bytes; callers check their inputs against their own,
//! smaller limits first, so the `u32` prefix can never truncate.

/// Upper bound for one field; every caller's own limit is below it.
pub(crate) const MAX_FIELD_LEN: usize = 1 << 20;

/// Something that absorbs bytes: a hash, a MAC, or a buffer (tests, debugging).
pub(crate) trait Absorb {
    fn absorb(&mut self, bytes: &[u8]);
}

impl Absorb for sha2::Sha256 {
    fn absorb(&mut self, bytes: &[u8]) {
        sha2::Digest::update(self, bytes);
    }
}

impl Absorb for Vec<u8> {
    fn absorb(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes one message in the encoding above into `sink`.
pub(crate) struct Encoder<'a, A: Absorb> {
    sink: &'a mut A,
}

impl<'a, A: Absorb> Encoder<'a, A> {
    /// Starts a message with its domain tag (written raw: tags are fixed constants).
    pub(crate) fn new(sink: &'a mut A, domain: &'static str) -> Self {
        sink.absorb(domain.as_bytes());
        Encoder { sink }
    }

    /// Continues a message whose domain tag (and first fields) `sink` already absorbed.
    pub(crate) fn resume(sink: &'a mut A) -> Self {
        Encoder { sink }
    }

    /// Writes one length-prefixed field.
    pub(crate) fn field(&mut self, bytes: &[u8]) -> &mut Self {
        assert!(bytes.len() <= MAX_FIELD_LEN, "field of {} bytes passed the caller's limit", bytes.len());
        // Cannot truncate: MAX_FIELD_LEN < u32::MAX, asserted above.
        self.sink.absorb(&(bytes.len() as u32).to_be_bytes());
        self.sink.absorb(bytes);
        self
    }

    /// Writes a `u64` as an 8-byte big-endian field.
    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// Writes an optional field: a one-byte presence flag field, then the value if present,
    /// so that "absent" and "present but empty" encode differently.
    pub(crate) fn optional(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            None => self.field(&[0]),
            Some(b) => self.field(&[1]).field(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(fields: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, "t");
        for f in fields {
            enc.field(f.as_bytes());
        }
        out
    }

    #[test]
    fn layout_is_tag_then_length_prefixed_fields() {
        assert_eq!(encode(&["ab", ""]), b"t\0\0\0\x02ab\0\0\0\0".to_vec());
    }

    #[test]
    fn delimiter_collisions_are_impossible() {
        assert_ne!(encode(&["a:b", "c"]), encode(&["a", "b:c"]));
        assert_ne!(encode(&["ab", ""]), encode(&["a", "b"]));
    }

    #[test]
    fn absent_and_empty_differ() {
        let mut a = Vec::new();
        Encoder::new(&mut a, "t").optional(None);
        let mut b = Vec::new();
        Encoder::new(&mut b, "t").optional(Some(b""));
        assert_ne!(a, b);
    }
}

//! What the edge keeps as Core Cache user metadata next to a cached body: the
//! [`ObjectMetadata`] of `edgegen-shared` (who stored it, under which generation) followed by
//! the response head (status and headers) to replay on a hit.
//!
//! Layout: `u16` BE length of the object metadata, the object metadata, `u16` BE status,
//! `u16` BE header count, then per header `u16` BE name length, name, `u16` BE value length,
//! value. Decoding checks every length; anything that does not decode is treated as stale.

use edgegen_shared::metadata::{MetadataError, ObjectMetadata};

/// Response headers never stored with an object: hop-by-hop, per-response, cookies,
/// surrogate control, and edgegen's own namespace.
const UNSTORED_HEADERS: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "surrogate-key",
    "surrogate-control",
    "age",
    "content-length",
];

/// Whether a response header is stored with the object.
pub fn is_stored_header(name: &str) -> bool {
    !UNSTORED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) && !crate::is_edgegen_header(name)
}

/// An object's metadata and response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    /// Who stored it, under which scope.
    pub metadata: ObjectMetadata,
    /// HTTP status.
    pub status: u16,
    /// Headers to replay (already filtered by [`is_stored_header`]).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Stored metadata that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    /// Ran out of bytes.
    #[error("stored head: truncated")]
    Truncated,
    /// The object metadata is invalid.
    #[error("stored head: {0}")]
    Metadata(#[from] MetadataError),
    /// A header name that is not UTF-8.
    #[error("stored head: header name is not UTF-8")]
    BadName,
    /// Bytes after the last header.
    #[error("stored head: trailing bytes")]
    Trailing,
}

fn u16_len(n: usize) -> [u8; 2] {
    // Callers bound every length (metadata ≤ 148 bytes, headers by Fastly's 64 KiB limits).
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

impl StoredHead {
    /// Encodes the head. Headers whose name or value exceeds 65535 bytes are left out rather
    /// than cut (Fastly's own header limits are far below that).
    pub fn encode(&self) -> Vec<u8> {
        let meta = self.metadata.encode();
        let mut out = Vec::with_capacity(meta.len() + 64);
        out.extend_from_slice(&u16_len(meta.len()));
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.status.to_be_bytes());
        let headers: Vec<_> =
            self.headers.iter().filter(|(n, v)| n.len() <= u16::MAX as usize && v.len() <= u16::MAX as usize).collect();
        out.extend_from_slice(&u16_len(headers.len()));
        for (name, value) in headers {
            out.extend_from_slice(&u16_len(name.len()));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&u16_len(value.len()));
            out.extend_from_slice(value);
        }
        out
    }

    /// Decodes a head.
    ///
    /// # Errors
    /// [`StoredError`] for anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<StoredHead, StoredError> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], StoredError> {
            if rest.len() < n {
                return Err(StoredError::Truncated);
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let read_u16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]) as usize;
        let meta_len = read_u16(take(2)?);
        let metadata = ObjectMetadata::decode(take(meta_len)?)?;
        let status = read_u16(take(2)?) as u16;
        let count = read_u16(take(2)?);
        let mut headers = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            let n = read_u16(take(2)?);
            let name = std::str::from_utf8(take(n)?).map_err(|_| StoredError::BadName)?.to_owned();
            let v = read_u16(take(2)?);
            headers.push((name, take(v)?.to_vec()));
        }
        if !rest.is_empty() {
            return Err(StoredError::Trailing);
        }
        Ok(StoredHead { metadata, status, headers })
    }
}

#[cfg(test)]
mod tests {
    use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

    use super::*;

    fn head() -> StoredHead {
        StoredHead {
            metadata: ObjectMetadata {
                tenant: TenantId::new("acme").unwrap(),
                generation: Generation(3),
                schema_version: SchemaVersion::new("1.8.3").unwrap(),
                contract_hash: ContractHash::from_digest([9; 32]),
                stored_at: 1234,
            },
            status: 200,
            headers: vec![("content-type".into(), b"application/json".to_vec()), ("etag".into(), b"\"x\"".to_vec())],
        }
    }

    #[test]
    fn round_trip_and_truncation() {
        let bytes = head().encode();
        assert_eq!(StoredHead::decode(&bytes).unwrap(), head());
        for len in 0..bytes.len() {
            assert!(StoredHead::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(StoredHead::decode(&longer), Err(StoredError::Trailing));
    }

    #[test]
    fn unstored_headers() {
        for h in ["Set-Cookie", "surrogate-key", "edgegen-schema", "Transfer-Encoding", "content-length"] {
            assert!(!is_stored_header(h), "{h}");
        }
        for h in ["content-type", "etag", "cache-control", "vary"] {
            assert!(is_stored_header(h), "{h}");
        }
    }
}

//! What the edge keeps as Core Cache user metadata next to a cached body: a [`Record`].
//!
//! - [`Record::Object`]: the [`ObjectMetadata`] of `edgegen-shared` (who stored it, under
//!   which generation), the response head (status, headers) to replay on a hit, its
//!   [`Timing`] and its body length.
//! - [`Record::VaryIndex`]: stored under a URL's primary key (no vary values) when its
//!   response varies: the nominated request header names and the variant keys seen so far
//!   (capped), so a lookup knows which request headers select the variant.
//! - [`Record::Tombstone`]: an invalidated object (§4.4); lookups treat it as absent.
//!
//! Layout (all integers big-endian): version byte `2`, kind byte, `u16` length + object
//! metadata, then per kind. Object: `u16` status, `u64` body length, timing (`u64`
//! response time, `u64` initial age, `u64` lifetime, `u64` swr, `u64` sie, `u8` flags),
//! `u16` header count, per header `u16` name length, name, `u16` value length, value.
//! VaryIndex: `u16` name count, names (`u16` + bytes), `u16` variant count, 32-byte keys.
//! Decoding checks every length; anything that does not decode is treated as stale.

use edgegen_shared::key::KeyScope;
use edgegen_shared::metadata::{MetadataError, ObjectMetadata};

use crate::fields::{HOP_BY_HOP, Headers};
use crate::freshness::Timing;

const VERSION: u8 = 2;

/// Response headers never stored with an object: hop-by-hop, per-response, cookies,
/// surrogate control, and edgegen's own namespace (fields nominated by `Connection` are
/// removed before this check).
const UNSTORED_HEADERS: [&str; 6] =
    ["set-cookie", "surrogate-key", "surrogate-control", "age", "content-length", "proxy-authentication-info"];

/// Whether a response header is stored with the object.
pub fn is_stored_header(name: &str) -> bool {
    !UNSTORED_HEADERS.iter().chain(HOP_BY_HOP.iter()).any(|h| h.eq_ignore_ascii_case(name))
        && !crate::is_edgegen_header(name)
}

/// A stored object's metadata, response head and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead {
    /// Who stored it, under which scope.
    pub metadata: ObjectMetadata,
    /// HTTP status.
    pub status: u16,
    /// Body length in bytes.
    pub body_len: u64,
    /// Freshness bookkeeping.
    pub timing: Timing,
    /// Headers to replay (already filtered by [`is_stored_header`]).
    pub headers: Headers,
}

/// One Core Cache entry's user metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A stored response.
    Object(StoredHead),
    /// The variants of a URL whose response varies.
    VaryIndex {
        /// Who stored it, under which scope.
        metadata: ObjectMetadata,
        /// The nominated request header names, lower case.
        names: Vec<String>,
        /// Variant keys stored so far.
        variants: Vec<[u8; 32]>,
    },
    /// An invalidated entry.
    Tombstone,
}

/// Stored metadata that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    /// Ran out of bytes.
    #[error("stored record: truncated")]
    Truncated,
    /// Another layout version or kind.
    #[error("stored record: unknown version or kind")]
    Unknown,
    /// The object metadata is invalid.
    #[error("stored record: {0}")]
    Metadata(#[from] MetadataError),
    /// A header name that is not UTF-8.
    #[error("stored record: header name is not UTF-8")]
    BadName,
    /// Stored under another scope (tenant, generation, schema or contract).
    #[error("stored record: another scope's")]
    OtherScope,
    /// Bytes after the end.
    #[error("stored record: trailing bytes")]
    Trailing,
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    // Callers bound every length (metadata ≤ 148 bytes, headers by Fastly's limits).
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u16(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoredError> {
        if self.0.len() < n {
            return Err(StoredError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoredError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, StoredError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, StoredError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoredError> {
        let n = self.u16()?;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, StoredError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| StoredError::BadName)
    }
    fn text(&mut self) -> Result<String, StoredError> {
        Ok(self.str()?.to_owned())
    }
}

impl Record {
    /// Encodes the record. Headers longer than 65535 bytes are left out rather than cut.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(VERSION);
        match self {
            Record::Object(head) => {
                out.push(1);
                put_bytes(&mut out, &head.metadata.encode());
                out.extend_from_slice(&head.status.to_be_bytes());
                out.extend_from_slice(&head.body_len.to_be_bytes());
                let t = &head.timing;
                for n in [t.response_time_ms, t.initial_age, t.lifetime, t.stale_while_revalidate, t.stale_if_error] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                out.push(u8::from(t.no_cache) | (u8::from(t.must_revalidate) << 1));
                let headers: Vec<_> = head
                    .headers
                    .iter()
                    .filter(|(n, v)| n.len() <= u16::MAX as usize && v.len() <= u16::MAX as usize)
                    .collect();
                put_u16(&mut out, headers.len());
                for (name, value) in headers {
                    put_bytes(&mut out, name.as_bytes());
                    put_bytes(&mut out, value);
                }
            }
            Record::VaryIndex { metadata, names, variants } => {
                out.push(2);
                put_bytes(&mut out, &metadata.encode());
                put_u16(&mut out, names.len());
                for name in names {
                    put_bytes(&mut out, name.as_bytes());
                }
                put_u16(&mut out, variants.len());
                for v in variants {
                    out.extend_from_slice(v);
                }
            }
            Record::Tombstone => out.push(3),
        }
        out
    }

    /// Decodes a record.
    ///
    /// # Errors
    /// [`StoredError`] for anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Record, StoredError> {
        Record::decode_with(bytes, |m| Ok(ObjectMetadata::decode(m)?))
    }

    /// Decodes a record only if it was stored under exactly `scope` (the lookup path):
    /// the metadata is compared as bytes, not decoded, and a record of any other scope stops
    /// the decoding there. Equal to `decode` followed by `matches(scope)` (property-tested).
    ///
    /// # Errors
    /// [`StoredError::OtherScope`] for another scope, [`StoredError`] for anything malformed.
    pub fn decode_in_scope(bytes: &[u8], scope: &KeyScope) -> Result<Record, StoredError> {
        Record::decode_with(bytes, |m| {
            ObjectMetadata::stored_at_in_scope(m, scope)
                .map(|stored_at| ObjectMetadata::new(scope, stored_at))
                .ok_or(StoredError::OtherScope)
        })
    }

    fn decode_with(
        bytes: &[u8],
        metadata: impl Fn(&[u8]) -> Result<ObjectMetadata, StoredError>,
    ) -> Result<Record, StoredError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(StoredError::Unknown);
        }
        let record = match r.u8()? {
            1 => {
                let metadata = metadata(r.bytes()?)?;
                let status = r.u16()? as u16;
                let body_len = r.u64()?;
                let timing = Timing {
                    response_time_ms: r.u64()?,
                    initial_age: r.u64()?,
                    lifetime: r.u64()?,
                    stale_while_revalidate: r.u64()?,
                    stale_if_error: r.u64()?,
                    no_cache: false,
                    must_revalidate: false,
                };
                let flags = r.u8()?;
                let timing = Timing { no_cache: flags & 1 != 0, must_revalidate: flags & 2 != 0, ..timing };
                let count = r.u16()?;
                // Room for the `Age` and `Content-Length` a HIT adds.
                let mut headers = Headers::with_capacity(count.min(64) + 2);
                for _ in 0..count {
                    let name = r.str()?;
                    // Stored names were lower-cased when stored; anything else is not ours.
                    if name.bytes().any(|b| b.is_ascii_uppercase()) {
                        return Err(StoredError::BadName);
                    }
                    headers.append(name, r.bytes()?);
                }
                Record::Object(StoredHead { metadata, status, body_len, timing, headers })
            }
            2 => {
                let metadata = metadata(r.bytes()?)?;
                let names = (0..r.u16()?).map(|_| r.text()).collect::<Result<_, _>>()?;
                let count = r.u16()?;
                let mut variants = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    let mut key = [0; 32];
                    key.copy_from_slice(r.take(32)?);
                    variants.push(key);
                }
                Record::VaryIndex { metadata, names, variants }
            }
            3 => Record::Tombstone,
            _ => return Err(StoredError::Unknown),
        };
        if !r.0.is_empty() {
            return Err(StoredError::Trailing);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

    use super::*;

    fn metadata() -> ObjectMetadata {
        ObjectMetadata {
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(3),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([9; 32]),
            stored_at: 1234,
        }
    }

    fn records() -> Vec<Record> {
        let mut headers = Headers::new();
        headers.append("content-type", b"application/json".to_vec());
        headers.append("etag", b"\"x\"".to_vec());
        let timing = Timing {
            response_time_ms: 5,
            initial_age: 6,
            lifetime: 7,
            stale_while_revalidate: 8,
            stale_if_error: 9,
            no_cache: true,
            must_revalidate: true,
        };
        vec![
            Record::Object(StoredHead { metadata: metadata(), status: 200, body_len: 10, timing, headers }),
            Record::VaryIndex { metadata: metadata(), names: vec!["accept-encoding".into()], variants: vec![[7; 32]] },
            Record::Tombstone,
        ]
    }

    #[test]
    fn round_trip_and_truncation() {
        for record in records() {
            let bytes = record.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), record);
            for len in 0..bytes.len() {
                assert!(Record::decode(&bytes[..len]).is_err(), "prefix {len} of {record:?}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Record::decode(&longer), Err(StoredError::Trailing));
        }
        assert_eq!(Record::decode(&[1, 1]), Err(StoredError::Unknown), "the previous layout is not read");
    }

    #[test]
    fn unstored_headers() {
        for h in [
            "Set-Cookie",
            "surrogate-key",
            "Surrogate-Control",
            "edgegen-schema",
            "Transfer-Encoding",
            "content-length",
            "connection",
            "keep-alive",
            "age",
        ] {
            assert!(!is_stored_header(h), "{h}");
        }
        for h in ["content-type", "etag", "cache-control", "vary", "date"] {
            assert!(is_stored_header(h), "{h}");
        }
    }
}

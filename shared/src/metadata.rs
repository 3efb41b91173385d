//! What the edge stores next to each cached object (Core Cache user metadata), so that a
//! read can tell which tenant, generation, schema and contract produced the object.
//!
//! Binary and compact (at most 148 bytes; 62 for a tenant like `acme`), versioned by its first bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `eg` |
//! | 1 | version, `1` |
//! | 1 + n | tenant: length (1–63), then the text |
//! | 1 + n | schema version: length, then the text |
//! | 32 | contract hash digest |
//! | 8 | generation, `u64` big-endian |
//! | 8 | stored_at, Unix milliseconds, `u64` big-endian |
//!
//! Decoding validates every field and rejects trailing bytes: metadata the edge cannot read is
//! treated as a stale object, never trusted.

use serde::{Deserialize, Serialize};

use crate::ids::{ContractHash, Generation, InvalidField, SchemaVersion, TenantId};
use crate::key::KeyScope;

const MAGIC: &[u8; 2] = b"eg";
const VERSION: u8 = 1;

/// The metadata of one cached object (its JSON form is for tooling and test vectors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMetadata {
    /// The tenant that stored the object.
    pub tenant: TenantId,
    /// The generation the object was stored under.
    pub generation: Generation,
    /// The schema version the origin produced it under.
    pub schema_version: SchemaVersion,
    /// The contract hash the origin produced it under.
    pub contract_hash: ContractHash,
    /// When the edge stored it, Unix milliseconds.
    pub stored_at: u64,
}

/// Metadata bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not edgegen metadata.
    #[error("object metadata: bad magic (not edgegen metadata)")]
    BadMagic,
    /// A newer or unknown version.
    #[error("object metadata: version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// Ran out of bytes while reading a field.
    #[error("object metadata: truncated while reading {0}")]
    Truncated(&'static str),
    /// A field that does not validate.
    #[error("object metadata: {0}")]
    InvalidField(#[from] InvalidField),
    /// A field that is not UTF-8.
    #[error("object metadata: {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes after the last field.
    #[error("object metadata: {0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

impl ObjectMetadata {
    /// Metadata for an object stored now under `scope`.
    pub fn new(scope: &KeyScope, stored_at: u64) -> Self {
        ObjectMetadata {
            tenant: scope.tenant.clone(),
            generation: scope.generation,
            schema_version: scope.schema_version,
            contract_hash: scope.contract_hash,
            stored_at,
        }
    }

    /// Whether this object was stored under exactly `scope` (tenant, generation, schema
    /// version and contract hash): the only objects the edge may serve.
    pub fn matches(&self, scope: &KeyScope) -> bool {
        self.tenant == scope.tenant
            && self.generation == scope.generation
            && self.schema_version == scope.schema_version
            && self.contract_hash == scope.contract_hash
    }

    /// Encodes the metadata.
    pub fn encode(&self) -> Vec<u8> {
        let schema = self.schema_version.text();
        let schema = schema.as_str();
        let mut out = Vec::with_capacity(4 + self.tenant.as_str().len() + schema.len() + 48);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        // Both lengths fit a byte: a tenant is at most 63 bytes, a version at most 32.
        out.push(self.tenant.as_str().len() as u8);
        out.extend_from_slice(self.tenant.as_str().as_bytes());
        out.push(schema.len() as u8);
        out.extend_from_slice(schema.as_bytes());
        out.extend_from_slice(self.contract_hash.digest());
        out.extend_from_slice(&self.generation.0.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out
    }

    /// The `stored_at` of `bytes` when they are exactly the encoding of
    /// `ObjectMetadata::new(scope, stored_at)`: the HIT path's scope check, without decoding
    /// (or allocating) anything. `None` for any other bytes — another scope, or metadata that
    /// does not decode — so it agrees with `decode(bytes)?.matches(scope)` (property-tested).
    pub fn stored_at_in_scope(bytes: &[u8], scope: &KeyScope) -> Option<u64> {
        let tenant = scope.tenant.as_str().as_bytes();
        let schema = scope.schema_version.text();
        let schema = schema.as_str().as_bytes();
        let mut r = Reader(bytes);
        let same = r.take(2, "magic").ok()? == MAGIC
            && r.take(1, "version").ok()? == [VERSION]
            && r.take(1, "tenant").ok()? == [tenant.len() as u8]
            && r.take(tenant.len(), "tenant").ok()? == tenant
            && r.take(1, "schema_version").ok()? == [schema.len() as u8]
            && r.take(schema.len(), "schema_version").ok()? == schema
            && r.take(32, "contract_hash").ok()? == scope.contract_hash.digest()
            && r.array("generation").ok()? == scope.generation.0.to_be_bytes();
        let stored_at = u64::from_be_bytes(r.array("stored_at").ok()?);
        (same && r.0.is_empty()).then_some(stored_at)
    }

    /// Decodes and validates metadata.
    ///
    /// # Errors
    /// [`MetadataError`] naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetadataError> {
        let mut r = Reader(bytes);
        if r.take(2, "magic")? != MAGIC {
            return Err(MetadataError::BadMagic);
        }
        let version = r.take(1, "version")?[0];
        if version != VERSION {
            return Err(MetadataError::UnsupportedVersion(version));
        }
        let tenant = TenantId::new(r.text("tenant")?)?;
        let schema_version = SchemaVersion::new(r.text("schema_version")?)?;
        let contract_hash = ContractHash::from_digest(r.array("contract_hash")?);
        let generation = Generation(u64::from_be_bytes(r.array("generation")?));
        let stored_at = u64::from_be_bytes(r.array("stored_at")?);
        if !r.0.is_empty() {
            return Err(MetadataError::TrailingBytes(r.0.len()));
        }
        Ok(ObjectMetadata { tenant, generation, schema_version, contract_hash, stored_at })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MetadataError> {
        if self.0.len() < n {
            return Err(MetadataError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MetadataError> {
        Ok(self.take(N, field)?.try_into().expect("took N bytes"))
    }

    fn text(&mut self, field: &'static str) -> Result<&'a str, MetadataError> {
        let len = self.take(1, field)?[0] as usize;
        std::str::from_utf8(self.take(len, field)?).map_err(|_| MetadataError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectMetadata {
        ObjectMetadata {
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(42),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([7; 32]),
            stored_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn round_trip_and_size() {
        let bytes = sample().encode();
        assert_eq!(ObjectMetadata::decode(&bytes).unwrap(), sample());
        assert_eq!(bytes.len(), 3 + 1 + 4 + 1 + 5 + 32 + 8 + 8);
        let widest = ObjectMetadata {
            tenant: TenantId::new("a".repeat(63)).unwrap(),
            schema_version: SchemaVersion::new("4294967295.4294967295.4294967295").unwrap(),
            ..sample()
        };
        assert_eq!(ObjectMetadata::decode(&widest.encode()).unwrap(), widest);
        assert_eq!(widest.encode().len(), 148);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(ObjectMetadata::decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn garbage_is_named() {
        assert_eq!(ObjectMetadata::decode(b"xx\x01"), Err(MetadataError::BadMagic));
        assert_eq!(ObjectMetadata::decode(b"eg\x02"), Err(MetadataError::UnsupportedVersion(2)));
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(ObjectMetadata::decode(&bytes), Err(MetadataError::TrailingBytes(1)));
        let mut bytes = sample().encode();
        bytes[4] = b'A'; // upper-case tenant
        assert!(matches!(ObjectMetadata::decode(&bytes), Err(MetadataError::InvalidField(f)) if f.field == "tenant"));
        let mut bytes = sample().encode();
        bytes[4] = 0xFF;
        assert_eq!(ObjectMetadata::decode(&bytes), Err(MetadataError::NotUtf8("tenant")));
    }

    #[test]
    fn matches_requires_every_scope_field() {
        let m = sample();
        let scope = KeyScope {
            tenant: m.tenant.clone(),
            schema_version: m.schema_version,
            contract_hash: m.contract_hash,
            generation: m.generation,
        };
        assert!(m.matches(&scope));
        assert!(!m.matches(&KeyScope { generation: Generation(43), ..scope.clone() }));
        assert!(!m.matches(&KeyScope { tenant: TenantId::new("beta").unwrap(), ..scope.clone() }));
        assert!(!m.matches(&KeyScope { schema_version: SchemaVersion::new("1.8.2").unwrap(), ..scope.clone() }));
        assert!(!m.matches(&KeyScope { contract_hash: ContractHash::from_digest([8; 32]), ..scope }));
    }

    fn scope_of(m: &ObjectMetadata) -> KeyScope {
        KeyScope {
            tenant: m.tenant.clone(),
            schema_version: m.schema_version,
            contract_hash: m.contract_hash,
            generation: m.generation,
        }
    }

    proptest::proptest! {
        /// The HIT path's byte-level scope check agrees with decoding and `matches`, for
        /// metadata of any scope and for every single-byte corruption of it.
        #[test]
        fn stored_at_in_scope_agrees_with_decode(
            tenants in proptest::sample::subsequence(vec!["acme", "acme-eu", "beta"], 2),
            versions in proptest::sample::subsequence(vec!["1.8.3", "1.8.30", "0.0.0", "4294967295.1.10"], 2),
            digests in proptest::sample::subsequence(vec![1u8, 2], 2),
            generations in proptest::sample::subsequence(vec![0u64, 7, u64::MAX], 2),
            stored_at in proptest::prelude::any::<u64>(),
            pick in proptest::prelude::any::<[bool; 4]>(),
            corrupt in proptest::option::of((proptest::prelude::any::<proptest::sample::Index>(), 1u8..=255)),
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let stored = ObjectMetadata {
                tenant: TenantId::new(tenants[0]).unwrap(),
                schema_version: SchemaVersion::new(versions[0]).unwrap(),
                contract_hash: ContractHash::from_digest([digests[0]; 32]),
                generation: Generation(generations[0]),
                stored_at,
            };
            let current = KeyScope {
                tenant: TenantId::new(tenants[usize::from(pick[0])]).unwrap(),
                schema_version: SchemaVersion::new(versions[usize::from(pick[1])]).unwrap(),
                contract_hash: ContractHash::from_digest([digests[usize::from(pick[2])]; 32]),
                generation: Generation(generations[usize::from(pick[3])]),
            };
            let mut bytes = stored.encode();
            if let Some((at, flip)) = corrupt {
                let at = at.index(bytes.len());
                bytes[at] ^= flip;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            let expected = ObjectMetadata::decode(&bytes).ok().filter(|m| m.matches(&current)).map(|m| m.stored_at);
            proptest::prop_assert_eq!(ObjectMetadata::stored_at_in_scope(&bytes, &current), expected);
            proptest::prop_assert_eq!(ObjectMetadata::stored_at_in_scope(&stored.encode(), &scope_of(&stored)), Some(stored_at));
        }
    }
}

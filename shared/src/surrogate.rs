//! Tenant-scoped surrogate keys (ARCHITECTURE.md, "Contract between the parts") and
//! Fastly's limits on them.
//!
//! Every surrogate key edgegen emits starts with its tenant, so purging a tenant's key can
//! never touch another tenant's objects, and a key an origin names is always re-scoped under
//! the tenant that served it. Keys that break Fastly's limits are errors: a truncated key
//! set would silently leave objects that a later purge can no longer reach.

use std::fmt;

use crate::ids::{Generation, TenantId};

/// Longest surrogate key Fastly accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest `Surrogate-Key` header Fastly accepts, in bytes.
pub const MAX_HEADER_LEN: usize = 16384;

/// A surrogate key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SurrogateError {
    /// Empty key.
    #[error("surrogate key: must not be empty")]
    Empty,
    /// A byte outside printable ASCII 0x21–0x7E (space separates keys in the header).
    #[error("surrogate key {key}: byte 0x{byte:02X} at offset {offset} is not printable ASCII (0x21-0x7E)")]
    InvalidByte {
        /// The key, quoted (shortened if long).
        key: String,
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A key over [`MAX_KEY_LEN`].
    #[error("surrogate key {key}: {len} bytes is over Fastly's limit of {MAX_KEY_LEN}")]
    KeyTooLong {
        /// The key, quoted (shortened).
        key: String,
        /// Its length.
        len: usize,
    },
    /// A key set whose header would exceed [`MAX_HEADER_LEN`].
    #[error("surrogate keys: the header would be {len} bytes, over Fastly's limit of {MAX_HEADER_LEN} ({count} keys)")]
    HeaderTooLong {
        /// Header length.
        len: usize,
        /// Number of keys.
        count: usize,
    },
}

/// One valid surrogate key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SurrogateKey(String);

impl SurrogateKey {
    /// Validates a key against Fastly's rules.
    ///
    /// # Errors
    /// [`SurrogateError`] for an empty key, a byte outside 0x21–0x7E or a key over 1024 bytes.
    pub fn new(key: impl Into<String>) -> Result<Self, SurrogateError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SurrogateError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(SurrogateError::KeyTooLong { key: crate::ids::preview(&key), len: key.len() });
        }
        if let Some(offset) = key.bytes().position(|b| !(0x21..=0x7E).contains(&b)) {
            let byte = key.as_bytes()[offset];
            return Err(SurrogateError::InvalidByte { key: crate::ids::preview(&key), offset, byte });
        }
        Ok(SurrogateKey(key))
    }

    /// `t/{tenant}`: every object of the tenant.
    pub fn tenant(tenant: &TenantId) -> Self {
        SurrogateKey(format!("t/{tenant}"))
    }

    /// `t/{tenant}/g/{generation}`: every object the tenant stored under one generation.
    pub fn generation(tenant: &TenantId, generation: Generation) -> Self {
        SurrogateKey(format!("t/{tenant}/g/{generation}"))
    }

    /// `t/{tenant}/k/{origin key}`: a key the origin named, scoped to the tenant.
    ///
    /// # Errors
    /// [`SurrogateError`] if the scoped key breaks Fastly's rules.
    pub fn origin(tenant: &TenantId, origin_key: &str) -> Result<Self, SurrogateError> {
        SurrogateKey::new(format!("t/{tenant}/k/{origin_key}"))
    }

    /// `edgegen-manifest/{tenant}`: the tenant's cached manifest at the edge.
    pub fn manifest(tenant: &TenantId) -> Self {
        SurrogateKey(format!("edgegen-manifest/{tenant}"))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SurrogateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The surrogate keys of an object the tenant stores under `generation`: `t/{tenant}`,
/// `t/{tenant}/g/{generation}`, then each key of the origin's `Surrogate-Key` header (split on
/// whitespace) re-scoped as `t/{tenant}/k/{key}`, duplicates removed, order kept.
///
/// # Errors
/// [`SurrogateError`] if any key, or the header they form, breaks Fastly's limits.
pub fn object_keys(
    tenant: &TenantId,
    generation: Generation,
    origin_header: Option<&str>,
) -> Result<Vec<SurrogateKey>, SurrogateError> {
    let mut keys = vec![SurrogateKey::tenant(tenant), SurrogateKey::generation(tenant, generation)];
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut header_len = keys.iter().map(|k| k.0.len() + 1).sum::<usize>() - 1;
    for origin_key in origin_header.unwrap_or("").split_ascii_whitespace() {
        if !seen.insert(origin_key) {
            continue;
        }
        let key = SurrogateKey::origin(tenant, origin_key)?;
        header_len += 1 + key.0.len();
        // Fail as soon as the set cannot fit, so an oversized header costs linear time.
        if header_len > MAX_HEADER_LEN {
            let count = keys.len() + 1 + origin_header.unwrap_or("").split_ascii_whitespace().skip(seen.len()).count();
            return Err(SurrogateError::HeaderTooLong { len: header_len, count });
        }
        keys.push(key);
    }
    Ok(keys)
}

/// The `Surrogate-Key` header for `keys`: space-separated.
///
/// # Errors
/// [`SurrogateError::HeaderTooLong`] when it would exceed 16384 bytes.
pub fn header_value(keys: &[SurrogateKey]) -> Result<String, SurrogateError> {
    let len = keys.iter().map(|k| k.0.len()).sum::<usize>() + keys.len().saturating_sub(1);
    if len > MAX_HEADER_LEN {
        return Err(SurrogateError::HeaderTooLong { len, count: keys.len() });
    }
    Ok(keys.iter().map(SurrogateKey::as_str).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    #[test]
    fn object_keys_are_tenant_scoped() {
        let keys = object_keys(&acme(), Generation(7), Some(" users  user/42 users t/other ")).unwrap();
        let keys: Vec<&str> = keys.iter().map(SurrogateKey::as_str).collect();
        assert_eq!(keys, ["t/acme", "t/acme/g/7", "t/acme/k/users", "t/acme/k/user/42", "t/acme/k/t/other"]);
        assert_eq!(SurrogateKey::manifest(&acme()).as_str(), "edgegen-manifest/acme");
    }

    #[test]
    fn limits_are_errors_not_truncation() {
        assert_eq!(SurrogateKey::new(""), Err(SurrogateError::Empty));
        assert!(matches!(SurrogateKey::new("a b"), Err(SurrogateError::InvalidByte { offset: 1, byte: b' ', .. })));
        assert!(matches!(SurrogateKey::new("caf\u{e9}"), Err(SurrogateError::InvalidByte { offset: 3, .. })));
        assert!(SurrogateKey::new("k".repeat(1024)).is_ok());
        assert!(matches!(SurrogateKey::new("k".repeat(1025)), Err(SurrogateError::KeyTooLong { len: 1025, .. })));
        // "t/acme/k/" is 9 bytes: an origin key of 1016 bytes fits exactly, 1017 does not.
        assert!(SurrogateKey::origin(&acme(), &"k".repeat(1015)).is_ok());
        assert!(SurrogateKey::origin(&acme(), &"k".repeat(1016)).is_err());
    }

    #[test]
    fn header_limit_counts_separators() {
        // 16 keys of 1023 bytes + 15 spaces = 16383 bytes: fits. One byte more does not.
        let mut keys: Vec<SurrogateKey> =
            (0..16).map(|i| SurrogateKey::new(format!("{i:x}{}", "k".repeat(1022))).unwrap()).collect();
        assert_eq!(header_value(&keys).unwrap().len(), 16383);
        keys[0] = SurrogateKey::new(format!("0{}", "k".repeat(1023))).unwrap();
        assert_eq!(header_value(&keys).unwrap().len(), 16384);
        keys.push(SurrogateKey::new("x").unwrap());
        assert_eq!(header_value(&keys), Err(SurrogateError::HeaderTooLong { len: 16386, count: 17 }));
    }

    #[test]
    fn too_many_origin_keys_fail_the_whole_set() {
        let many: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
        let err = object_keys(&acme(), Generation(1), Some(&many.join(" "))).unwrap_err();
        assert!(matches!(err, SurrogateError::HeaderTooLong { .. }), "{err}");
    }
}

//! The signed manifest: the coordinator's statement of a tenant's current state, which the
//! edge trusts only after checking its signature.
//!
//! Wire form (the body of `GET /v1/edge/manifests/{tenant}`):
//!
//! ```json
//! {"manifest":{"format":1,"tenant":"acme",...},"signature":"<64 hex>"}
//! ```
//!
//! The signature is HMAC-SHA256 under `EDGEGEN_MANIFEST_KEY` over the domain tag
//! `edgegen/manifest/v1` and the *exact bytes* of the `manifest` object as they appear in the
//! body (one length-prefixed field). Signing exact bytes rather than re-serialized values means
//! no canonicalization can disagree between signer and verifier, and fields a newer
//! coordinator adds are covered by the signature yet ignored by an older edge. Missing
//! required fields, a newer `format`, or a manifest for another tenant are rejected.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::ids::{ContractHash, Generation, ReleaseId, SchemaVersion, TenantId};
use crate::key::KeyScope;
use crate::mac::SecretKey;

/// Domain tag of manifest signatures.
pub const MANIFEST_DOMAIN: &str = "edgegen/manifest/v1";
/// Domain tag of [`Manifest::state_digest`].
pub const STATE_DOMAIN: &str = "edgegen/manifest-state/v1";
/// The manifest format this crate writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// Largest manifest body accepted, in bytes (a manifest is a few hundred bytes).
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// Largest `max_age_ms` a manifest may carry: one minute. The max age is the staleness
/// bound of invariant 3, so an absurd value is refused rather than trusted.
pub const MAX_MAX_AGE_MS: u64 = 60_000;
/// Largest `max_stale_ms` a manifest or lease may carry: one day. `max_stale` bounds how
/// long a PoP that cannot reach the coordinator keeps serving its last verified generation
/// (invariant 3 under a partition), so it is bounded like `max_age`.
pub const MAX_MAX_STALE_MS: u64 = 24 * 60 * 60 * 1000;

/// A tenant's current state, as the coordinator publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    /// Wire format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The tenant.
    pub tenant: TenantId,
    /// The tenant's current generation.
    pub generation: Generation,
    /// The schema version objects must have been produced under.
    pub schema_version: SchemaVersion,
    /// The API-contract hash objects must have been produced under.
    pub contract_hash: ContractHash,
    /// The release that set this generation; `null` for the registration generation.
    #[serde(deserialize_with = "required_nullable")]
    pub release_id: Option<ReleaseId>,
    /// When the coordinator issued this manifest, Unix time in milliseconds.
    pub issued_at: u64,
    /// How long the edge may rely on this manifest without re-fetching it, in milliseconds.
    pub max_age_ms: u64,
    /// How long after `issued_at` a PoP that cannot reach the coordinator may keep using
    /// this manifest, in milliseconds (at least `max_age_ms`). Absent (a coordinator that
    /// predates leases) means no stale use: the manifest expires with its max age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stale_ms: Option<u64>,
}

/// Like the default for `Option`, but a missing field is an error rather than `None`.
fn required_nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Why a manifest body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_LEN`].
    #[error("manifest: body of {0} bytes is over the limit of {MAX_MANIFEST_LEN}")]
    TooLarge(usize),
    /// Not a signed-manifest envelope, or a manifest with missing or invalid fields.
    #[error("manifest: malformed: {0}")]
    Malformed(String),
    /// The signature does not match (wrong key, or the body was altered).
    #[error("manifest: signature does not verify")]
    BadSignature,
    /// A format this build does not understand.
    #[error("manifest: format {0} is not supported (this build reads format {MANIFEST_FORMAT})")]
    UnsupportedFormat(u32),
    /// A valid manifest, but for another tenant.
    #[error("manifest: issued for tenant {got}, expected {expected}")]
    WrongTenant {
        /// The tenant asked for.
        expected: TenantId,
        /// The tenant in the manifest.
        got: TenantId,
    },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    manifest: &'a RawValue,
    signature: &'a str,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    manifest: &'a RawValue,
    signature: &'a str,
}

impl Manifest {
    /// The key scope objects cached under this manifest belong to.
    pub fn scope(&self) -> KeyScope {
        KeyScope {
            tenant: self.tenant.clone(),
            schema_version: self.schema_version,
            contract_hash: self.contract_hash,
            generation: self.generation,
        }
    }

    /// Serializes and signs this manifest, returning the wire body.
    pub fn sign(&self, key: &SecretKey) -> String {
        let body = serde_json::to_string(self).expect("a manifest always serializes");
        sign_raw(&body, key)
    }

    /// Whether this manifest may still be relied on at `now_ms`, given when it was fetched.
    /// A fetch time in the future (a clock that stepped back) counts as stale: the safe
    /// answer is to fetch again.
    pub fn is_fresh(&self, fetched_at_ms: u64, now_ms: u64) -> bool {
        fetched_at_ms <= now_ms && now_ms - fetched_at_ms < self.max_age_ms
    }

    /// The digest of the state this manifest states — tenant, generation, schema version,
    /// contract hash and release — without its issue time or ages: what a
    /// [`crate::lease::Lease`] vouches is still current. SHA-256 over the domain tag
    /// `edgegen/manifest-state/v1` and those fields, length-prefixed (the release optional).
    pub fn state_digest(&self) -> [u8; 32] {
        let mut hash = <sha2::Sha256 as sha2::Digest>::new();
        crate::encoding::Encoder::new(&mut hash, STATE_DOMAIN)
            .field(self.tenant.as_str().as_bytes())
            .u64(self.generation.0)
            .field(self.schema_version.to_string().as_bytes())
            .field(self.contract_hash.to_string().as_bytes())
            .optional(self.release_id.as_ref().map(|r| r.as_str().as_bytes()));
        sha2::Digest::finalize(hash).into()
    }

    /// Until when (Unix ms, exclusive) a PoP that cannot reach the coordinator may keep using
    /// this manifest: `issued_at + max_stale`, or `issued_at + max_age` without a stale bound.
    /// Measured from the coordinator's `issued_at`, not from the fetch, so a release committed
    /// at `c` is never contradicted later than `c + max_stale`.
    pub fn stale_until(&self) -> u64 {
        self.issued_at.saturating_add(self.max_stale_ms.unwrap_or(self.max_age_ms))
    }

    /// Whether the coordinator issued this manifest recently enough to be current at
    /// `now_ms`, allowing `skew_ms` of clock difference: a replayed or long-cached old
    /// manifest is not.
    pub fn is_current(&self, now_ms: u64, skew_ms: u64) -> bool {
        let issued = self.issued_at;
        issued <= now_ms.saturating_add(skew_ms)
            && now_ms <= issued.saturating_add(self.max_age_ms).saturating_add(skew_ms)
    }
}

/// Signs an already-serialized manifest object. Exposed for tests of forward compatibility
/// (a newer coordinator's manifest with extra fields).
#[doc(hidden)]
pub fn sign_raw(manifest_json: &str, key: &SecretKey) -> String {
    let raw = RawValue::from_string(manifest_json.to_owned()).expect("caller passes a JSON object");
    let tag = key.sign(MANIFEST_DOMAIN, |e| {
        e.field(raw.get().as_bytes());
    });
    let signature = hex::encode(tag);
    serde_json::to_string(&EnvelopeOut { manifest: &raw, signature: &signature }).expect("serializes")
}

/// Verifies a manifest body and parses it.
///
/// The signature is checked before any manifest field is read.
///
/// # Errors
/// [`ManifestError`]: too large, malformed, bad signature, unsupported format, wrong tenant.
pub fn verify(body: &[u8], key: &SecretKey, expected_tenant: &TenantId) -> Result<Manifest, ManifestError> {
    if body.len() > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLarge(body.len()));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    // Only the canonical spelling of the signature (64 lower-case hex digits) is accepted:
    // one manifest object has exactly one valid signature text.
    let tag = crate::mac::parse_tag(envelope.signature).ok_or(ManifestError::BadSignature)?;
    let ok = key.verify(MANIFEST_DOMAIN, &tag, |e| {
        e.field(envelope.manifest.get().as_bytes());
    });
    if !ok {
        return Err(ManifestError::BadSignature);
    }
    // Read the format first so a future format gets its own error, not a field error.
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let Format { format } =
        serde_json::from_str(envelope.manifest.get()).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if format != MANIFEST_FORMAT {
        return Err(ManifestError::UnsupportedFormat(format));
    }
    let manifest: Manifest =
        serde_json::from_str(envelope.manifest.get()).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if manifest.generation.0 == 0 {
        return Err(ManifestError::Malformed("generation: must be at least 1".into()));
    }
    if manifest.max_age_ms == 0 || manifest.max_age_ms > MAX_MAX_AGE_MS {
        return Err(ManifestError::Malformed(format!(
            "max_age_ms: must be 1-{MAX_MAX_AGE_MS} (got {})",
            manifest.max_age_ms
        )));
    }
    if let Some(max_stale) = manifest.max_stale_ms
        && (max_stale < manifest.max_age_ms || max_stale > MAX_MAX_STALE_MS)
    {
        return Err(ManifestError::Malformed(format!(
            "max_stale_ms: must be between max_age_ms ({}) and {MAX_MAX_STALE_MS} (got {max_stale})",
            manifest.max_age_ms
        )));
    }
    if &manifest.tenant != expected_tenant {
        return Err(ManifestError::WrongTenant { expected: expected_tenant.clone(), got: manifest.tenant });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::new("test", "manifest-key-0123456789abcdef0123456789").unwrap()
    }

    fn manifest() -> Manifest {
        Manifest {
            format: 1,
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(3),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([0xab; 32]),
            release_id: Some(ReleaseId::new("rel_1").unwrap()),
            issued_at: 1_700_000_000_000,
            max_age_ms: 1000,
            max_stale_ms: None,
        }
    }

    fn acme() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    #[test]
    fn round_trip() {
        let body = manifest().sign(&key());
        assert_eq!(verify(body.as_bytes(), &key(), &acme()).unwrap(), manifest());
    }

    #[test]
    fn wrong_key_wrong_tenant_and_tampering_fail() {
        let body = manifest().sign(&key());
        let other = SecretKey::new("test", "another-key-0123456789abcdef0123456789").unwrap();
        assert_eq!(verify(body.as_bytes(), &other, &acme()), Err(ManifestError::BadSignature));
        let beta = TenantId::new("beta").unwrap();
        assert!(matches!(verify(body.as_bytes(), &key(), &beta), Err(ManifestError::WrongTenant { .. })));
        let tampered = body.replace("\"generation\":3", "\"generation\":4");
        assert_eq!(verify(tampered.as_bytes(), &key(), &acme()), Err(ManifestError::BadSignature));
        let reformatted = body.replace("\"generation\":3", "\"generation\": 3");
        assert_eq!(verify(reformatted.as_bytes(), &key(), &acme()), Err(ManifestError::BadSignature));
        // The signature has one spelling: upper-case hex of the right bytes is refused.
        let (head, sig) = body.split_at(body.rfind("\"signature\":\"").unwrap());
        let upper = format!("{head}{}", sig.to_uppercase().replace("SIGNATURE", "signature"));
        assert_eq!(verify(upper.as_bytes(), &key(), &acme()), Err(ManifestError::BadSignature));
    }

    #[test]
    fn unknown_fields_are_tolerated_missing_ones_rejected() {
        let mut value = serde_json::to_value(manifest()).unwrap();
        value["regions"] = serde_json::json!(["eu"]);
        let body = sign_raw(&value.to_string(), &key());
        assert_eq!(verify(body.as_bytes(), &key(), &acme()).unwrap(), manifest());

        for field in
            ["tenant", "generation", "schema_version", "contract_hash", "release_id", "issued_at", "max_age_ms"]
        {
            let mut value = serde_json::to_value(manifest()).unwrap();
            value.as_object_mut().unwrap().remove(field);
            let body = sign_raw(&value.to_string(), &key());
            match verify(body.as_bytes(), &key(), &acme()) {
                Err(ManifestError::Malformed(msg)) => {
                    assert!(msg.contains(field), "{field}: {msg}")
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn release_id_may_be_null() {
        let mut m = manifest();
        m.release_id = None;
        let body = m.sign(&key());
        assert!(body.contains("\"release_id\":null"));
        assert_eq!(verify(body.as_bytes(), &key(), &acme()).unwrap(), m);
    }

    #[test]
    fn future_format_is_named() {
        let mut value = serde_json::to_value(manifest()).unwrap();
        value["format"] = 2.into();
        let body = sign_raw(&value.to_string(), &key());
        assert_eq!(verify(body.as_bytes(), &key(), &acme()), Err(ManifestError::UnsupportedFormat(2)));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for body in ["", "{}", "null", "[1]", "{\"manifest\":1}", "{\"manifest\":{},\"signature\":\"zz\"}"] {
            assert!(verify(body.as_bytes(), &key(), &acme()).is_err(), "{body:?}");
        }
        let big = vec![b' '; MAX_MANIFEST_LEN + 1];
        assert_eq!(verify(&big, &key(), &acme()), Err(ManifestError::TooLarge(MAX_MANIFEST_LEN + 1)));
    }

    #[test]
    fn freshness() {
        let m = manifest();
        assert!(m.is_fresh(10_000, 10_999));
        assert!(!m.is_fresh(10_000, 11_000));
        assert!(!m.is_fresh(10_000, 9_000), "a fetch time in the future is stale");
        // issued_at is 1_700_000_000_000, max age 1000 ms.
        assert!(m.is_current(1_700_000_000_500, 0));
        assert!(!m.is_current(1_700_000_001_001, 0), "too old");
        assert!(m.is_current(1_700_000_001_100, 200), "within skew");
        assert!(!m.is_current(1_699_999_999_000, 200), "issued in the future");
    }

    #[test]
    fn stale_bound_is_optional_and_checked() {
        let mut m = manifest();
        assert_eq!(m.stale_until(), 1_700_000_001_000, "without max_stale, the max age bounds stale use");
        assert!(!m.sign(&key()).contains("max_stale_ms"), "absent stays absent on the wire");
        m.max_stale_ms = Some(300_000);
        assert_eq!(m.stale_until(), 1_700_000_300_000);
        let body = m.sign(&key());
        assert_eq!(verify(body.as_bytes(), &key(), &acme()).unwrap(), m);
        for bad in [999, MAX_MAX_STALE_MS + 1] {
            m.max_stale_ms = Some(bad);
            let body = m.sign(&key());
            assert!(
                matches!(verify(body.as_bytes(), &key(), &acme()), Err(ManifestError::Malformed(e)) if e.contains("max_stale_ms")),
                "{bad}"
            );
        }
    }

    #[test]
    fn state_digest_covers_the_state_not_the_issue() {
        let m = manifest();
        let mut reissued = manifest();
        reissued.issued_at += 1;
        reissued.max_age_ms = 2000;
        reissued.max_stale_ms = Some(9000);
        assert_eq!(m.state_digest(), reissued.state_digest());
        let mut other = manifest();
        other.generation = Generation(4);
        assert_ne!(m.state_digest(), other.state_digest());
        let mut other = manifest();
        other.release_id = None;
        assert_ne!(m.state_digest(), other.state_digest());
        let mut other = manifest();
        other.contract_hash = ContractHash::from_digest([0xac; 32]);
        assert_ne!(m.state_digest(), other.state_digest());
    }

    #[test]
    fn absurd_values_are_refused() {
        for (field, value) in [("generation", 0u64), ("max_age_ms", 0), ("max_age_ms", MAX_MAX_AGE_MS + 1)] {
            let mut v = serde_json::to_value(manifest()).unwrap();
            v[field] = value.into();
            let body = sign_raw(&v.to_string(), &key());
            assert!(
                matches!(verify(body.as_bytes(), &key(), &acme()), Err(ManifestError::Malformed(m)) if m.contains(field))
            );
        }
    }
}

//! The manifest lease: the coordinator's small signed statement "at `issued_at`, this exact
//! manifest is still the tenant's current one", sent on a `304 Not Modified` answer to the
//! edge's conditional manifest request, so an unchanged manifest costs one small exchange.
//!
//! Form (the `edgegen-lease` response header):
//!
//! ```text
//! v1.{tenant}.{generation}.{issued_at}.{max_age_ms}.{max_stale_ms}.{state}.{signature}
//! ```
//!
//! Numbers are decimal without leading zeros; `issued_at` is Unix milliseconds; `state` is the
//! 64-hex [`Manifest::state_digest`] of the manifest the lease extends (tenant, generation,
//! schema version, contract hash, release — everything but its issue time and ages);
//! `signature` is 64 lower-case hex digits of HMAC-SHA256 under `EDGEGEN_MANIFEST_KEY` over the
//! domain tag `edgegen/lease/v1`, the tenant, the four numbers (u64 big-endian) and the 32
//! state bytes. Tenants never contain `.`, so the form splits unambiguously.
//!
//! Why a lease cannot be misused:
//! - **Another tenant's lease** fails the tenant check: the tenant is signed.
//! - **A lease for another state** (an older generation of the same tenant, or the same
//!   generation number with another schema or contract after a lost database) fails the
//!   binding: it extends only a manifest whose state digest it carries, so it can never make a
//!   PoP keep a generation it does not vouch for.
//! - **A replayed lease** is at most as good as it was: its validity is measured from its
//!   signed `issued_at`, and [`verify`] refuses one that is no longer current (older than its
//!   own max age plus the allowed clock skew) or issued in the future. Replaying the newest
//!   lease within its max age tells the PoP only what was true at `issued_at`.
//!
//! [`verify`] checks the signature before it believes anything the lease says.

use crate::ids::{Generation, TenantId};
use crate::mac::SecretKey;
use crate::manifest::{MAX_MAX_AGE_MS, MAX_MAX_STALE_MS, Manifest};

/// Domain tag of lease signatures.
pub const LEASE_DOMAIN: &str = "edgegen/lease/v1";
/// The response header that carries a lease.
pub const LEASE_HEADER: &str = "edgegen-lease";
const MAX_LEASE_LEN: usize = 512;

/// A verified (or to-be-signed) lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The tenant.
    pub tenant: TenantId,
    /// The generation of the manifest the lease extends.
    pub generation: Generation,
    /// When the coordinator issued the lease, Unix milliseconds.
    pub issued_at: u64,
    /// How long the edge may rely on the manifest before re-checking, in milliseconds.
    pub max_age_ms: u64,
    /// How long after `issued_at` a PoP that cannot reach the coordinator may keep using the
    /// manifest, in milliseconds (at least `max_age_ms`).
    pub max_stale_ms: u64,
    /// The [`Manifest::state_digest`] of the manifest this lease extends.
    pub state: [u8; 32],
}

/// Why a lease was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Not of the lease form, or with out-of-range ages.
    #[error("lease: malformed")]
    Malformed,
    /// The signature does not verify (forged, altered, or another key).
    #[error("lease: signature does not verify")]
    Forged,
    /// Valid, but for another tenant.
    #[error("lease: issued for another tenant")]
    WrongTenant,
    /// Valid, but for another state than the manifest the PoP holds.
    #[error("lease: issued for another manifest")]
    WrongManifest,
    /// Issued further in the future than the allowed clock skew.
    #[error("lease: issued in the future")]
    FromTheFuture,
    /// Older than its own max age plus the allowed skew: a replay, or a delayed answer.
    #[error("lease: no longer current")]
    NotCurrent,
}

impl Lease {
    /// A lease extending `manifest`'s state, issued at `issued_at` with the given ages.
    pub fn new(manifest: &Manifest, issued_at: u64, max_age_ms: u64, max_stale_ms: u64) -> Lease {
        Lease {
            tenant: manifest.tenant.clone(),
            generation: manifest.generation,
            issued_at,
            max_age_ms,
            max_stale_ms,
            state: manifest.state_digest(),
        }
    }

    /// The lease's header value, signed under `key`.
    pub fn sign(&self, key: &SecretKey) -> String {
        let tag = self.tag(key);
        format!(
            "v1.{}.{}.{}.{}.{}.{}.{}",
            self.tenant,
            self.generation.0,
            self.issued_at,
            self.max_age_ms,
            self.max_stale_ms,
            hex::encode(self.state),
            hex::encode(tag)
        )
    }

    fn tag(&self, key: &SecretKey) -> [u8; 32] {
        key.sign(LEASE_DOMAIN, |e| self.absorb(e))
    }

    fn absorb<S: crate::encoding::Absorb>(&self, e: &mut crate::encoding::Encoder<'_, S>) {
        e.field(self.tenant.as_str().as_bytes())
            .u64(self.generation.0)
            .u64(self.issued_at)
            .u64(self.max_age_ms)
            .u64(self.max_stale_ms)
            .field(&self.state);
    }

    /// Until when (Unix ms, exclusive) the PoP may rely on the manifest without re-checking,
    /// measured from the signed `issued_at`.
    pub fn fresh_until(&self) -> u64 {
        self.issued_at.saturating_add(self.max_age_ms)
    }

    /// Until when (Unix ms, exclusive) a PoP that cannot reach the coordinator may keep using
    /// the manifest.
    pub fn stale_until(&self) -> u64 {
        self.issued_at.saturating_add(self.max_stale_ms)
    }
}

/// Parses a decimal u64 in its one spelling (no sign, no leading zeros).
fn number(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Verifies a lease header for the manifest a PoP holds (`held`) at `now_ms`, allowing
/// `skew_ms` of clock difference.
///
/// # Errors
/// [`LeaseError`], checked in this order: malformed, forged, wrong tenant, wrong manifest,
/// from the future, not current.
pub fn verify(header: &str, key: &SecretKey, held: &Manifest, now_ms: u64, skew_ms: u64) -> Result<Lease, LeaseError> {
    if header.len() > MAX_LEASE_LEN {
        return Err(LeaseError::Malformed);
    }
    let parts: Vec<&str> = header.split('.').collect();
    let ["v1", tenant, generation, issued_at, max_age, max_stale, state, sig] = parts[..] else {
        return Err(LeaseError::Malformed);
    };
    let tenant = TenantId::new(tenant).map_err(|_| LeaseError::Malformed)?;
    let lease = Lease {
        tenant,
        generation: Generation(number(generation).ok_or(LeaseError::Malformed)?),
        issued_at: number(issued_at).ok_or(LeaseError::Malformed)?,
        max_age_ms: number(max_age).ok_or(LeaseError::Malformed)?,
        max_stale_ms: number(max_stale).ok_or(LeaseError::Malformed)?,
        state: crate::mac::parse_tag(state).ok_or(LeaseError::Malformed)?,
    };
    let tag = crate::mac::parse_tag(sig).ok_or(LeaseError::Malformed)?;
    if !key.verify(LEASE_DOMAIN, &tag, |e| lease.absorb(e)) {
        return Err(LeaseError::Forged);
    }
    // Signed, but the ages must still make sense: the same bounds as a manifest's.
    if lease.max_age_ms == 0
        || lease.max_age_ms > MAX_MAX_AGE_MS
        || lease.max_stale_ms < lease.max_age_ms
        || lease.max_stale_ms > MAX_MAX_STALE_MS
    {
        return Err(LeaseError::Malformed);
    }
    if lease.tenant != held.tenant {
        return Err(LeaseError::WrongTenant);
    }
    if lease.generation != held.generation || lease.state != held.state_digest() {
        return Err(LeaseError::WrongManifest);
    }
    if lease.issued_at > now_ms.saturating_add(skew_ms) {
        return Err(LeaseError::FromTheFuture);
    }
    if now_ms > lease.fresh_until().saturating_add(skew_ms) {
        return Err(LeaseError::NotCurrent);
    }
    Ok(lease)
}

/// What a PoP may do with the manifest it holds at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Within its max age: use it without asking the coordinator.
    Fresh,
    /// Past its max age but within its stale bound: re-check with the coordinator, and keep
    /// using it only if the coordinator cannot be reached.
    Stale,
    /// Past its stale bound: never use it (bypass the cache, or 503).
    Expired,
}

/// The standing at `now_ms` of a manifest whose newest verified statement (the manifest
/// itself or a lease) says it is fresh until `fresh_until` and usable until `stale_until`.
/// A PoP whose clock reads before `issued_at` treats the manifest as stale: the safe answer
/// is to ask again.
pub fn standing(issued_at: u64, fresh_until: u64, stale_until: u64, now_ms: u64) -> Standing {
    if now_ms >= stale_until.max(fresh_until) {
        Standing::Expired
    } else if now_ms >= issued_at && now_ms < fresh_until {
        Standing::Fresh
    } else {
        Standing::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ContractHash, SchemaVersion};

    const NOW: u64 = 1_800_000_000_000;

    fn key() -> SecretKey {
        SecretKey::new("test", "manifest-key-0123456789abcdef0123456789").unwrap()
    }

    fn manifest(tenant: &str, generation: u64) -> Manifest {
        Manifest {
            format: 1,
            tenant: TenantId::new(tenant).unwrap(),
            generation: Generation(generation),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([0xab; 32]),
            release_id: None,
            issued_at: NOW - 5_000,
            max_age_ms: 1_000,
            max_stale_ms: Some(300_000),
        }
    }

    #[track_caller]
    fn check(header: &str, held: &Manifest, now: u64, expected: Result<(), LeaseError>) {
        let got = verify(header, &key(), held, now, 200).map(|_| ());
        assert_eq!(got, expected, "{header}");
    }

    #[test]
    fn verify_cases() {
        let held = manifest("acme", 7);
        let lease = Lease::new(&held, NOW, 1_000, 300_000);
        let header = lease.sign(&key());
        assert_eq!(verify(&header, &key(), &held, NOW, 200), Ok(lease.clone()));
        check(&header, &held, NOW + 1_200, Ok(()));
        check(&header, &held, NOW + 1_201, Err(LeaseError::NotCurrent));
        check(&header, &held, NOW - 201, Err(LeaseError::FromTheFuture));

        // Another tenant's manifest: the lease is not for it.
        check(&header, &manifest("beta", 7), NOW, Err(LeaseError::WrongTenant));
        // The same tenant's older generation, or the same generation with another contract.
        check(&header, &manifest("acme", 6), NOW, Err(LeaseError::WrongManifest));
        let mut other_state = manifest("acme", 7);
        other_state.contract_hash = ContractHash::from_digest([0xac; 32]);
        check(&header, &other_state, NOW, Err(LeaseError::WrongManifest));
        // A re-issue of the same state (another issue time) is the same state: the lease holds.
        let mut reissued = manifest("acme", 7);
        reissued.issued_at += 1;
        check(&header, &reissued, NOW, Ok(()));

        // Re-targeting or stretching a valid lease breaks its signature.
        check(&header.replace("v1.acme.", "v1.beta."), &manifest("beta", 7), NOW, Err(LeaseError::Forged));
        check(&header.replace(".300000.", ".900000."), &held, NOW, Err(LeaseError::Forged));
        let other = SecretKey::new("o", "another-key-0123456789abcdef0123456789").unwrap();
        check(&lease.sign(&other), &held, NOW, Err(LeaseError::Forged));

        for bad in [
            String::new(),
            "v1".into(),
            header.replacen("v1.", "v2.", 1),
            format!("{header}."),
            header.to_uppercase(),
            header.replace(&format!(".{NOW}."), &format!(".0{NOW}.")),
            header.replace(&format!(".{NOW}."), ".+1."),
            "x".repeat(MAX_LEASE_LEN + 1),
        ] {
            check(&bad, &held, NOW, Err(LeaseError::Malformed));
        }
    }

    #[test]
    fn signed_ages_out_of_range_are_malformed() {
        let held = manifest("acme", 7);
        for (max_age, max_stale) in
            [(0, 10), (MAX_MAX_AGE_MS + 1, MAX_MAX_STALE_MS), (1_000, 999), (1, MAX_MAX_STALE_MS + 1)]
        {
            let header = Lease::new(&held, NOW, max_age, max_stale).sign(&key());
            check(&header, &held, NOW, Err(LeaseError::Malformed));
        }
    }

    #[test]
    fn standing_boundaries() {
        let (issued, fresh, stale) = (1_000, 2_000, 301_000);
        assert_eq!(standing(issued, fresh, stale, 1_000), Standing::Fresh);
        assert_eq!(standing(issued, fresh, stale, 1_999), Standing::Fresh);
        assert_eq!(standing(issued, fresh, stale, 2_000), Standing::Stale);
        assert_eq!(standing(issued, fresh, stale, 300_999), Standing::Stale);
        assert_eq!(standing(issued, fresh, stale, 301_000), Standing::Expired);
        assert_eq!(standing(issued, fresh, stale, 999), Standing::Stale, "clock behind issued_at: ask again");
        assert_eq!(standing(issued, fresh, fresh, 2_000), Standing::Expired, "no stale bound");
    }
}

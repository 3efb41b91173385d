//! The PoP's record of its last verified manifest: when it was last confirmed, until when it
//! is fresh and until when it may still be used while the coordinator cannot be reached.
//! Stored as the user metadata of the manifest's Core Cache entry (`edgegen/manifest/{tenant}`,
//! the signed body beside it) and decided here, without I/O; [`crate::pipeline::load_manifest`]
//! does the fetching.
//!
//! - **Fresh** is measured on the PoP's clock from the last confirmation (the full fetch or
//!   the 304 whose lease verified), for the manifest's or lease's `max_age_ms`, capped by the
//!   edge's `manifest_max_age_cap_ms`.
//! - **Stale until** is the coordinator's signed `issued_at + max_stale_ms` of the newest
//!   verified statement (manifest or lease): a release committed at `c` is never contradicted
//!   later than `c + max_stale`, however long the PoP is cut off.
//!
//! - **Quiet until** remembers a failure: when the coordinator could not be reached (or
//!   answered 5xx) while the manifest was stale but within its bound, the PoP does not ask
//!   again before this time ([`Held::after_failure`]: one max age later, never past the stale
//!   bound). Each Fastly request is a fresh wasm instance, so without this record every
//!   request past max age would retry the dead coordinator; with it, a cut-off PoP asks once
//!   per max age per tenant, as a connected one does. The wait is one max age, not a growing
//!   backoff, so that invariant 3's first bound survives a recovery: a commit after the
//!   failure is seen by `failure + max_age < commit + max_age`. The record lives in the
//!   manifest's own entry, so a push purge of `edgegen-manifest/{tenant}` removes it with the
//!   manifest, and any confirmation (fetch or lease) clears it: a PoP that reaches the
//!   coordinator still re-checks at every max age.
//!
//! Metadata layout (big-endian u64s): confirmed at, fresh until, stale until, generation
//! (32 bytes), optionally followed by quiet until (40 bytes). A 32-byte
//! record (an edge from before the backoff) decodes with no backoff; any other length (an
//! older edge's 8-byte fetch time) decodes as expired, so it is re-fetched, never trusted
//! past its max age.

use edgegen_shared::lease::{self, Lease, Standing};
use edgegen_shared::manifest::Manifest;

/// When the held manifest was confirmed and how long it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When this PoP last confirmed the manifest (fetch or verified lease), its own clock, ms.
    pub confirmed_at: u64,
    /// Until when (exclusive) it is used without asking the coordinator.
    pub fresh_until: u64,
    /// Until when (exclusive) it may be used while the coordinator cannot be reached.
    pub stale_until: u64,
    /// The generation it states (checked against the body on decode).
    pub generation: u64,
    /// Until when (exclusive) the coordinator is not asked again after a failure; 0 if the
    /// last exchange did not fail.
    pub quiet_until: u64,
}

/// Length of an encoded [`Held`].
pub const HELD_LEN: usize = 40;
/// Length of a record written before the failure backoff (no quiet time).
const HELD_V1_LEN: usize = 32;

impl Held {
    /// A manifest fetched in full at `now`.
    pub fn fetched(m: &Manifest, now: u64, cap_ms: u64) -> Held {
        Held {
            confirmed_at: now,
            fresh_until: now.saturating_add(m.max_age_ms.min(cap_ms)),
            stale_until: m.stale_until(),
            generation: m.generation.0,
            quiet_until: 0,
        }
    }

    /// The held manifest extended by a verified `lease` at `now`. The stale bound never moves
    /// back (a lease with a shorter stale age than an earlier statement keeps the later end).
    pub fn extended(&self, lease: &Lease, now: u64, cap_ms: u64) -> Held {
        Held {
            confirmed_at: now,
            fresh_until: now.saturating_add(lease.max_age_ms.min(cap_ms)),
            stale_until: lease.stale_until().max(self.stale_until),
            generation: self.generation,
            quiet_until: 0,
        }
    }

    /// The manifest's max age as this PoP applies it (the period it was last fresh for), ms.
    pub fn max_age_ms(&self) -> u64 {
        self.fresh_until.saturating_sub(self.confirmed_at)
    }

    /// The record after the coordinator failed at `now` while this manifest was kept stale:
    /// do not ask again for one max age, and never past the stale bound.
    pub fn after_failure(&self, now: u64) -> Held {
        Held { quiet_until: now.saturating_add(self.max_age_ms()).min(self.stale_until), ..*self }
    }

    /// Whether the PoP serves this manifest at `now` without asking the coordinator: while
    /// fresh, or while stale within a failure backoff.
    pub fn usable_without_asking(&self, now: u64) -> bool {
        match self.standing(now) {
            Standing::Fresh => true,
            Standing::Stale => now < self.quiet_until,
            Standing::Expired => false,
        }
    }

    /// What the PoP may do with the manifest at `now`.
    pub fn standing(&self, now: u64) -> Standing {
        lease::standing(self.confirmed_at, self.fresh_until, self.stale_until, now)
    }

    /// How long the Core Cache must keep the entry from `now`: until the stale bound, whole
    /// seconds rounded up, at least one.
    pub fn keep_secs(&self, now: u64) -> u64 {
        self.stale_until.max(self.fresh_until).saturating_sub(now).div_ceil(1000).max(1)
    }

    /// The metadata bytes.
    pub fn encode(&self) -> [u8; HELD_LEN] {
        let mut out = [0; HELD_LEN];
        let fields = [self.confirmed_at, self.fresh_until, self.stale_until, self.generation, self.quiet_until];
        for (chunk, n) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    /// Decodes metadata for the held manifest `m`: `None` if it is not a [`Held`] record or
    /// names another generation (then the entry is treated as expired). A record written
    /// before the backoff (32 bytes) decodes with none.
    pub fn decode(meta: &[u8], m: &Manifest) -> Option<Held> {
        if meta.len() != HELD_LEN && meta.len() != HELD_V1_LEN {
            return None;
        }
        let mut n = meta.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])));
        let held = Held {
            confirmed_at: n.next()?,
            fresh_until: n.next()?,
            stale_until: n.next()?,
            generation: n.next()?,
            quiet_until: n.next().unwrap_or(0),
        };
        (held.generation == m.generation.0).then_some(held)
    }
}

#[cfg(test)]
mod tests {
    use edgegen_shared::ids::{ContractHash, Generation, SchemaVersion, TenantId};
    use proptest::prelude::*;

    use super::*;

    fn manifest(issued_at: u64) -> Manifest {
        Manifest {
            format: 1,
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(7),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([0xab; 32]),
            release_id: None,
            issued_at,
            max_age_ms: 1_000,
            max_stale_ms: Some(300_000),
        }
    }

    #[test]
    fn fresh_then_stale_until_the_signed_bound_then_expired() {
        let m = manifest(10_000);
        let h = Held::fetched(&m, 10_050, 60_000);
        assert_eq!(h.standing(10_050), Standing::Fresh);
        assert_eq!(h.standing(11_049), Standing::Fresh);
        assert_eq!(h.standing(11_050), Standing::Stale);
        assert_eq!(h.standing(309_999), Standing::Stale, "measured from the coordinator's issued_at");
        assert_eq!(h.standing(310_000), Standing::Expired);
        assert_eq!(h.keep_secs(10_050), 300, "the entry outlives max_age: it is kept until the stale bound");
        assert_eq!(Held::fetched(&m, 10_050, 200).standing(10_250), Standing::Stale, "the edge cap shortens fresh");
        let old = Manifest { max_stale_ms: None, ..m.clone() };
        assert_eq!(
            Held::fetched(&old, 10_050, 60_000).standing(11_050),
            Standing::Expired,
            "no stale bound, no stale use"
        );
    }

    #[test]
    fn a_lease_extends_from_its_issue_and_never_shortens_the_bound() {
        let m = manifest(10_000);
        let h = Held::fetched(&m, 10_000, 60_000);
        let lease = Lease::new(&m, 200_000, 1_000, 300_000);
        let e = h.extended(&lease, 200_010, 60_000);
        assert_eq!((e.confirmed_at, e.fresh_until, e.stale_until), (200_010, 201_010, 500_000));
        let short = Lease::new(&m, 200_000, 1_000, 1_000);
        assert_eq!(h.extended(&short, 200_010, 60_000).stale_until, 310_000);
    }

    #[test]
    fn older_records_and_other_generations_do_not_decode() {
        let m = manifest(10_000);
        let h = Held::fetched(&m, 10_000, 60_000);
        assert_eq!(Held::decode(&h.encode(), &m), Some(h));
        assert_eq!(Held::decode(&10_000u64.to_be_bytes(), &m), None);
        let quiet = h.after_failure(11_500);
        assert_eq!(Held::decode(&quiet.encode(), &m), Some(quiet));
        assert_eq!(Held::decode(&quiet.encode()[..32], &m), Some(h), "a record from before the backoff has none");
        assert_eq!(Held::decode(&quiet.encode()[..36], &m), None);
        let newer = Manifest { generation: Generation(8), ..m.clone() };
        assert_eq!(Held::decode(&h.encode(), &newer), None);
    }

    #[test]
    fn a_failure_quiets_the_pop_for_one_max_age_never_past_the_bound() {
        let m = manifest(10_000);
        let h = Held::fetched(&m, 10_000, 60_000);
        assert!(h.usable_without_asking(10_999));
        assert!(!h.usable_without_asking(11_000), "past max age with no failure: ask");
        let q = h.after_failure(11_200);
        assert_eq!(q.quiet_until, 12_200, "one max age after the failure");
        assert!(q.usable_without_asking(12_199));
        assert!(!q.usable_without_asking(12_200));
        assert_eq!(q.after_failure(12_200).quiet_until, 13_200, "each failure: one more max age");
        assert_eq!(Held::fetched(&m, 10_000, 300).after_failure(11_000).quiet_until, 11_300, "the capped max age");
        let near_bound = h.after_failure(309_500);
        assert_eq!(near_bound.quiet_until, 310_000, "never past the stale bound");
        assert!(!near_bound.usable_without_asking(310_000));
        let lease = Lease::new(&m, 12_000, 1_000, 300_000);
        let e = q.extended(&lease, 12_000, 60_000);
        assert_eq!(e.quiet_until, 0, "a confirmation clears the backoff");
        assert!(!e.usable_without_asking(13_000), "a PoP that reaches the coordinator re-checks at max age");
    }

    proptest! {
        /// For all records and failures, the PoP never serves without asking past the stale
        /// bound, waits at most one max age after a failure, and never waits after max age
        /// unless it has failed.
        #[test]
        fn backoff_never_passes_the_stale_bound(
            confirmed_at in 0u64..1 << 40, fresh in 1u64..60_000, stale in 0u64..86_400_000,
            fails in proptest::collection::vec(0u64..20_000, 0..6), later in 0u64..100_000,
        ) {
            let m = manifest(0);
            let h = Held { confirmed_at, fresh_until: confirmed_at + fresh, stale_until: confirmed_at + stale,
                generation: 7, quiet_until: 0 };
            prop_assert_eq!(h.usable_without_asking(confirmed_at + fresh + later), false);
            let mut q = h;
            let mut at = confirmed_at + fresh;
            for gap in fails {
                at += gap;
                if q.standing(at) != Standing::Stale { break; }
                q = q.after_failure(at);
                prop_assert!(q.quiet_until <= q.stale_until);
                prop_assert!(q.quiet_until <= at + fresh);
                prop_assert_eq!(Held::decode(&q.encode(), &m), Some(q));
            }
            let t = at + later;
            if q.usable_without_asking(t) {
                prop_assert!(t < q.stale_until.max(q.fresh_until));
            }
        }


        /// For all records, encoding round-trips, and the entry is kept at least as long as
        /// the manifest may be used.
        #[test]
        fn round_trips_and_is_kept_while_usable(
            confirmed_at in 0u64..1 << 50, fresh in 1u64..60_000, stale in 0u64..86_400_000, now in 0u64..1 << 50,
        ) {
            let h = Held { confirmed_at, fresh_until: confirmed_at + fresh, stale_until: confirmed_at + stale,
                generation: 3, quiet_until: 0 };
            let m = Manifest { generation: Generation(3), ..manifest(0) };
            prop_assert_eq!(Held::decode(&h.encode(), &m), Some(h));
            if h.standing(now) != Standing::Expired {
                prop_assert!(now + h.keep_secs(now) * 1000 >= h.stale_until.max(h.fresh_until));
            }
        }
    }
}

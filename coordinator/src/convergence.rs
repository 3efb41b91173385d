//! Convergence tracking, in memory and pure: which open releases each acknowledgement
//! advances, and whether every live PoP has acknowledged every tenant of a release. The
//! store feeds it acks after they are durable and asks it which releases to check; an
//! acknowledgement costs a few hash lookups, never a query.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use edgegen_shared::{Ack, Generation, PopId, ReleaseId, TenantId};

/// A release waiting for convergence, tracked in memory so an acknowledgement costs a few
/// hash lookups, not a query: SQL runs only when some PoP completes the release.
#[derive(Default)]
pub struct OpenRelease {
    /// When it was committed (Unix ms).
    pub committed_at: u64,
    /// Whether it is a rollback (a rollback is never rolled back automatically).
    pub rollback: bool,
    /// Tenant → the generation this release moved it to.
    pub targets: HashMap<TenantId, Generation>,
    /// PoP → tenants it acknowledged at or past their target.
    pub acked: HashMap<PopId, HashSet<TenantId>>,
}

/// Releases waiting for convergence, indexed by tenant.
#[derive(Default)]
pub struct OpenReleases {
    /// By id.
    pub releases: HashMap<ReleaseId, OpenRelease>,
    by_tenant: HashMap<TenantId, HashSet<ReleaseId>>,
}

impl OpenReleases {
    /// Starts tracking `id`.
    pub fn insert(&mut self, id: ReleaseId, release: OpenRelease) {
        for tenant in release.targets.keys() {
            self.by_tenant.entry(tenant.clone()).or_default().insert(id.clone());
        }
        self.releases.insert(id, release);
    }

    /// Stops tracking `id` (converged, rolled back or superseded).
    pub fn remove(&mut self, id: &ReleaseId) {
        if let Some(release) = self.releases.remove(id) {
            for tenant in release.targets.keys() {
                if let Some(ids) = self.by_tenant.get_mut(tenant) {
                    ids.remove(id);
                }
            }
        }
    }

    /// Records an acknowledgement; returns the releases that its PoP has now fully acknowledged.
    pub fn record(&mut self, ack: &Ack) -> Vec<ReleaseId> {
        let mut completed = Vec::new();
        let Some(ids) = self.by_tenant.get(&ack.tenant) else { return completed };
        for id in ids {
            let Some(release) = self.releases.get_mut(id) else { continue };
            if release.targets.get(&ack.tenant).is_some_and(|target| ack.generation >= *target) {
                let set = release.acked.entry(ack.pop.clone()).or_default();
                if set.insert(ack.tenant.clone()) && set.len() == release.targets.len() {
                    completed.push(id.clone());
                }
            }
        }
        completed
    }

    /// Releases (not rollbacks: a rollback is never rolled back automatically) still open
    /// `deadline_ms` after their commit, with the moment the deadline passed; sorted by id.
    pub fn past_deadline(&self, deadline_ms: u64, now: u64) -> Vec<(ReleaseId, u64)> {
        let mut due: Vec<(ReleaseId, u64)> = self
            .releases
            .iter()
            .filter(|(_, r)| !r.rollback && r.committed_at.saturating_add(deadline_ms) <= now)
            .map(|(id, r)| (id.clone(), r.committed_at.saturating_add(deadline_ms)))
            .collect();
        due.sort();
        due
    }

    /// Whether every PoP in `live` (at least one) acknowledged every tenant of `id`.
    pub fn complete_for(&self, id: &ReleaseId, live: &[PopId]) -> bool {
        self.releases.get(id).is_some_and(|r| {
            !live.is_empty() && live.iter().all(|p| r.acked.get(p).is_some_and(|s| s.len() == r.targets.len()))
        })
    }
}

/// Which generation of which tenant's manifest each PoP was last served (200 or 304), so an
/// acknowledgement is accepted only from a PoP that fetched that tenant's manifest at (or
/// past) the acknowledged generation. PoP identity itself rests on the shared edge token:
/// a holder of the token can name any PoP, but cannot make a PoP that never fetched a
/// generation count as having seen it without also fetching it under that name.
#[derive(Default)]
pub struct ManifestFetches {
    served: RwLock<HashMap<(PopId, TenantId), Generation>>,
}

impl ManifestFetches {
    /// Records that `pop` was served `tenant`'s manifest at `generation`; true when that
    /// is newer than what was known (so the caller shares it with other replicas once).
    pub fn record(&self, pop: PopId, tenant: TenantId, generation: Generation) -> bool {
        let known = self.served.read().unwrap_or_else(|p| p.into_inner()).get(&(pop.clone(), tenant.clone())).copied();
        if known.is_some_and(|g| g >= generation) {
            return false;
        }
        let mut map = self.served.write().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry((pop, tenant)).or_insert(generation);
        let newer = *slot < generation || known.is_none();
        *slot = (*slot).max(generation);
        newer
    }

    /// Whether `ack`'s PoP fetched its tenant's manifest at or past its generation.
    pub fn vouches_for(&self, ack: &Ack) -> bool {
        let map = self.served.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(ack.pop.clone(), ack.tenant.clone())).is_some_and(|served| *served >= ack.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(pop: &str, tenant: &str, generation: u64) -> Ack {
        Ack {
            pop: PopId::new(pop).unwrap(),
            tenant: TenantId::new(tenant).unwrap(),
            generation: Generation(generation),
            observed_at: 0,
        }
    }

    fn open(tenants: &[(&str, u64)], committed_at: u64, rollback: bool) -> OpenRelease {
        OpenRelease {
            committed_at,
            rollback,
            targets: tenants.iter().map(|(t, g)| (TenantId::new(*t).unwrap(), Generation(*g))).collect(),
            acked: HashMap::new(),
        }
    }

    fn id(s: &str) -> ReleaseId {
        ReleaseId::new(s).unwrap()
    }

    #[test]
    fn a_pop_completes_a_release_once_it_acked_every_tenant_at_or_past_its_target() {
        let mut o = OpenReleases::default();
        o.insert(id("rel-1"), open(&[("a", 2), ("b", 5)], 0, false));
        assert!(o.record(&ack("p1", "a", 1)).is_empty(), "below the target does not count");
        assert!(o.record(&ack("p1", "a", 2)).is_empty(), "one of two tenants");
        assert!(o.record(&ack("p1", "a", 3)).is_empty(), "the same tenant again completes nothing");
        assert_eq!(o.record(&ack("p1", "b", 6)), vec![id("rel-1")], "past the target counts");
        let live = |names: &[&str]| names.iter().map(|n| PopId::new(*n).unwrap()).collect::<Vec<_>>();
        assert!(o.complete_for(&id("rel-1"), &live(&["p1"])));
        assert!(!o.complete_for(&id("rel-1"), &live(&["p1", "p2"])), "p2 is live and has not acked");
        assert!(!o.complete_for(&id("rel-1"), &[]), "no live PoP is not convergence");
        o.remove(&id("rel-1"));
        assert!(o.record(&ack("p2", "a", 2)).is_empty(), "removed releases are not tracked");
    }

    proptest::proptest! {
        /// For every sequence of acks, a PoP is reported as completing the release exactly
        /// once, and exactly when its acks at or past each target cover every tenant (the
        /// naive model below).
        #[test]
        fn completion_matches_the_model(acks in proptest::collection::vec((0..3u8, 0..4u8, 0..6u64), 0..60)) {
            let targets = [("t0", 2u64), ("t1", 3), ("t2", 1), ("t3", 5)];
            let mut o = OpenReleases::default();
            o.insert(id("rel-1"), open(&targets, 0, false));
            let mut covered: HashMap<u8, HashSet<u8>> = HashMap::new();
            let mut completions: HashMap<u8, usize> = HashMap::new();
            for (pop, tenant, generation) in acks {
                let a = ack(&format!("p{pop}"), &format!("t{tenant}"), generation);
                let completed = o.record(&a);
                if generation >= targets[tenant as usize].1 {
                    covered.entry(pop).or_default().insert(tenant);
                }
                let model_done_now = covered.get(&pop).is_some_and(|c| c.len() == targets.len());
                if !completed.is_empty() {
                    proptest::prop_assert!(model_done_now);
                    *completions.entry(pop).or_default() += 1;
                }
            }
            for (pop, c) in &covered {
                let expected = usize::from(c.len() == targets.len());
                proptest::prop_assert_eq!(completions.get(pop).copied().unwrap_or(0), expected);
            }
        }
    }

    #[test]
    fn only_releases_pass_their_deadline() {
        let mut o = OpenReleases::default();
        o.insert(id("rel-1"), open(&[("a", 2)], 1_000, false));
        o.insert(id("rel-2"), open(&[("a", 3)], 1_000, true));
        o.insert(id("rel-3"), open(&[("b", 2)], 5_000, false));
        assert_eq!(o.past_deadline(500, 1_499), vec![]);
        assert_eq!(o.past_deadline(500, 1_500), vec![(id("rel-1"), 1_500)]);
        assert_eq!(o.past_deadline(500, 9_000), vec![(id("rel-1"), 1_500), (id("rel-3"), 5_500)]);
    }

    #[test]
    fn acks_need_a_matching_manifest_fetch() {
        let f = ManifestFetches::default();
        assert!(!f.vouches_for(&ack("p1", "a", 1)), "never fetched");
        assert!(f.record(PopId::new("p1").unwrap(), TenantId::new("a").unwrap(), Generation(3)), "new");
        assert!(!f.record(PopId::new("p1").unwrap(), TenantId::new("a").unwrap(), Generation(2)), "older");
        assert!(!f.record(PopId::new("p1").unwrap(), TenantId::new("a").unwrap(), Generation(3)), "known");
        assert!(f.vouches_for(&ack("p1", "a", 3)), "the highest generation served is kept");
        assert!(f.vouches_for(&ack("p1", "a", 1)));
        assert!(!f.vouches_for(&ack("p1", "a", 4)), "not served yet");
        assert!(!f.vouches_for(&ack("p2", "a", 1)), "another PoP's fetch does not count");
        assert!(!f.vouches_for(&ack("p1", "b", 1)), "another tenant's fetch does not count");
    }
}

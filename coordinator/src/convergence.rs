//! Convergence tracking, in memory and pure: which open releases each acknowledgement
//! advances, and whether every live PoP has acknowledged every tenant of a release. The
//! store feeds it acks after they are durable and asks it which releases to check; an
//! acknowledgement costs a few hash lookups, never a query.
//!
//! It also owns the lease side of a release's report ([`lease_groups`]): from the store's
//! fetch records (an upper bound on when each PoP's last statement for a tenant expires,
//! recorded before the statement is handed out, see [`ManifestFetches::served`]) and the
//! acknowledgements, which PoPs confirmed, which provably can no longer serve the old
//! generation, and until when each of the others still may.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::RwLock;

use edgegen_shared::api::{LeaseGroups, PopLease};
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

/// What the coordinator durably knows of the statements (manifests and leases) it handed a
/// PoP for a tenant: the highest generation, and a time no statement's expiry
/// (`issued_at + max_stale`) is later than.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRecord {
    /// The highest generation served.
    pub generation: Generation,
    /// No statement handed out expires later (Unix ms); `None` for a record written before
    /// the coordinator kept it (then only commit + max stale bounds it).
    pub lease_until: Option<u64>,
}

/// How the durable fetch record must move for a manifest answer ([`advance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The lease bound moves (a first statement, or one that would outlive the recorded
    /// bound): the record must be durable before the statement goes out, or the report's
    /// `old_until` could be earlier than a statement the PoP holds.
    Bound(FetchRecord),
    /// Only the generation moves; the recorded bound already covers the statement, so the
    /// report's bound stays true whether or not this record is durable yet. It vouches for
    /// the PoP's ack: a store whose replicas vouch from the durable record needs it written
    /// first; a single-process store vouches from memory and may write it afterwards.
    Generation(FetchRecord),
}

impl Advance {
    /// The record to write.
    pub fn record(self) -> FetchRecord {
        match self {
            Advance::Bound(r) | Advance::Generation(r) => r,
        }
    }
}

/// The write a manifest answer needs: `Some` when the durable record must move (a newer
/// generation, or a statement that would outlive the recorded bound), `None` when the
/// recorded one already covers it.
///
/// The bound is written ahead by `slack_ms`, so a PoP that refreshes every `max_age` costs
/// one write per `slack_ms`, not one per request; the report's bound is late by at most
/// that much.
pub fn advance(
    recorded: Option<FetchRecord>,
    generation: Generation,
    expires_at: u64,
    slack_ms: u64,
) -> Option<Advance> {
    let ahead = FetchRecord { generation, lease_until: Some(expires_at.saturating_add(slack_ms)) };
    match recorded {
        None => Some(Advance::Bound(ahead)),
        Some(r) => {
            let covered = r.lease_until.is_some_and(|u| u >= expires_at);
            match (r.generation >= generation, covered) {
                (true, true) => None,
                (_, false) => Some(Advance::Bound(FetchRecord {
                    generation: r.generation.max(generation),
                    lease_until: ahead.lease_until,
                })),
                (false, true) => Some(Advance::Generation(FetchRecord { generation, lease_until: r.lease_until })),
            }
        }
    }
}

/// How far ahead of a statement's expiry its fetch record is written: a quarter of the max
/// stale, so a PoP refreshing a tenant costs one store write per quarter max stale (75 s at
/// the default 300 s) and the report's bound is at most that late.
pub fn record_slack_ms(max_stale_ms: u64) -> u64 {
    max_stale_ms / 4
}

/// Which generation of which tenant's manifest each PoP was last served (200 or 304), so an
/// acknowledgement is accepted only from a PoP that fetched that tenant's manifest at (or
/// past) the acknowledged generation, and until when its statements may be used (the
/// lease bound of the convergence report). PoP identity itself rests on the shared edge
/// token: a holder of the token can name any PoP, but cannot make a PoP that never fetched
/// a generation count as having seen it without also fetching it under that name.
#[derive(Default)]
pub struct ManifestFetches {
    served: RwLock<HashMap<(PopId, TenantId), FetchRecord>>,
}

impl ManifestFetches {
    /// How the record must move before `pop` is handed a statement of `tenant` at
    /// `generation` expiring at `expires_at` ([`advance`]); `None` when the known record
    /// covers it. Call [`ManifestFetches::record`] once it is written (or, for an
    /// [`Advance::Generation`] in a single-process store, at once).
    pub fn served(
        &self,
        pop: &PopId,
        tenant: &TenantId,
        generation: Generation,
        expires_at: u64,
        slack_ms: u64,
    ) -> Option<Advance> {
        let known = self.served.read().unwrap_or_else(|p| p.into_inner()).get(&(pop.clone(), tenant.clone())).copied();
        advance(known, generation, expires_at, slack_ms)
    }

    /// Remembers a durably written record (merged with what is known: both only grow).
    pub fn record(&self, pop: PopId, tenant: TenantId, record: FetchRecord) {
        let mut map = self.served.write().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry((pop, tenant)).or_insert(record);
        slot.generation = slot.generation.max(record.generation);
        slot.lease_until = slot.lease_until.max(record.lease_until);
    }

    /// Whether `ack`'s PoP fetched its tenant's manifest at or past its generation.
    pub fn vouches_for(&self, ack: &Ack) -> bool {
        let map = self.served.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(ack.pop.clone(), ack.tenant.clone())).is_some_and(|served| served.generation >= ack.generation)
    }
}

/// One tenant of a release, for its lease report.
#[derive(Debug, Clone)]
pub struct LeaseTenant {
    /// The tenant.
    pub tenant: TenantId,
    /// Its max stale (the fallback bound for a PoP without a fetch record: commit + this).
    pub max_stale_ms: u64,
}

/// The inputs of [`lease_groups`], read by the store.
pub struct LeaseInput<'a> {
    /// Commit time of the release (Unix ms).
    pub committed_at: u64,
    /// The report's time.
    pub now: u64,
    /// The release's tenants.
    pub tenants: &'a [LeaseTenant],
    /// PoPs live now (each is in the report, with or without a fetch record).
    pub live_pops: &'a [PopId],
    /// Fetch records of the release's tenants.
    pub fetches: &'a [(PopId, TenantId, FetchRecord)],
    /// (PoP, tenant) pairs acknowledged at or past the release's generation.
    pub acked: &'a [(PopId, TenantId)],
}

/// Sorts the PoPs of a release into confirmed / provably expired / unconfirmed.
///
/// A PoP is in the report when it is live, acknowledged a tenant of the release, or holds a
/// fetch record for one whose bound outlives the commit (it held a usable statement then).
/// It is confirmed when it acknowledged every tenant at or past its target. Otherwise it may
/// serve an older generation of an unacknowledged tenant until that tenant's bound: the
/// fetch record's `lease_until` (recorded before any statement went out, so later than
/// every statement's expiry), or commit + the tenant's max stale without one (no statement
/// for an older generation is issued after the commit). The PoP's `old_until` is the
/// latest of those; past it, the PoP is provably expired.
pub fn lease_groups(input: &LeaseInput<'_>) -> LeaseGroups {
    let acked: HashSet<(&PopId, &TenantId)> = input.acked.iter().map(|(p, t)| (p, t)).collect();
    let records: HashMap<(&PopId, &TenantId), &FetchRecord> =
        input.fetches.iter().map(|(p, t, r)| ((p, t), r)).collect();
    let mut pops: BTreeSet<&PopId> = input.live_pops.iter().collect();
    pops.extend(input.acked.iter().map(|(p, _)| p));
    pops.extend(
        input
            .fetches
            .iter()
            .filter(|(_, _, r)| r.lease_until.is_none_or(|u| u > input.committed_at))
            .map(|(p, _, _)| p),
    );
    let mut groups = LeaseGroups::default();
    let mut by_pop: BTreeMap<&PopId, (usize, u64)> = BTreeMap::new();
    for pop in pops {
        let mut open = 0;
        let mut until = 0u64;
        for t in input.tenants {
            if acked.contains(&(pop, &t.tenant)) {
                continue;
            }
            open += 1;
            let fallback = input.committed_at.saturating_add(t.max_stale_ms);
            let bound = records.get(&(pop, &t.tenant)).and_then(|r| r.lease_until).unwrap_or(fallback);
            until = until.max(bound);
        }
        by_pop.insert(pop, (open, until));
    }
    for (pop, (open, until)) in by_pop {
        if open == 0 {
            groups.confirmed.push(pop.clone());
            continue;
        }
        let lease = PopLease {
            pop: pop.clone(),
            tenants_unconfirmed: open,
            old_until: until,
            remaining_ms: until.saturating_sub(input.now),
        };
        if until <= input.now { groups.expired.push(lease) } else { groups.unconfirmed.push(lease) }
    }
    groups
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

    fn rec(generation: u64, until: u64) -> FetchRecord {
        FetchRecord { generation: Generation(generation), lease_until: Some(until) }
    }

    #[test]
    fn acks_need_a_matching_manifest_fetch() {
        let f = ManifestFetches::default();
        let (p1, a) = (PopId::new("p1").unwrap(), TenantId::new("a").unwrap());
        assert!(!f.vouches_for(&ack("p1", "a", 1)), "never fetched");
        assert_eq!(f.served(&p1, &a, Generation(3), 100, 10), Some(Advance::Bound(rec(3, 110))), "new");
        assert!(!f.vouches_for(&ack("p1", "a", 3)), "not recorded yet");
        f.record(p1.clone(), a.clone(), rec(3, 110));
        assert_eq!(f.served(&p1, &a, Generation(2), 100, 10), None, "older, covered");
        assert_eq!(f.served(&p1, &a, Generation(3), 110, 10), None, "known, covered");
        f.record(p1.clone(), a.clone(), rec(2, 50));
        assert!(f.vouches_for(&ack("p1", "a", 3)), "the highest generation served is kept");
        assert!(f.vouches_for(&ack("p1", "a", 1)));
        assert!(!f.vouches_for(&ack("p1", "a", 4)), "not served yet");
        assert!(!f.vouches_for(&ack("p2", "a", 1)), "another PoP's fetch does not count");
        assert!(!f.vouches_for(&ack("p1", "b", 1)), "another tenant's fetch does not count");
    }

    #[test]
    fn the_recorded_bound_moves_ahead_by_the_slack_only_when_a_statement_would_outlive_it() {
        let check = |recorded: Option<FetchRecord>, generation: u64, expires: u64, expected: Option<Advance>| {
            assert_eq!(
                advance(recorded, Generation(generation), expires, 50),
                expected,
                "{recorded:?} g{generation} {expires}"
            );
        };
        let (bound, generation) = (|r| Some(Advance::Bound(r)), |r| Some(Advance::Generation(r)));
        check(None, 1, 1000, bound(rec(1, 1050)));
        check(Some(rec(1, 1050)), 1, 1050, None);
        check(Some(rec(1, 1050)), 1, 1051, bound(rec(1, 1101)));
        check(Some(rec(1, 1050)), 2, 1010, generation(rec(2, 1050)));
        check(Some(rec(1, 1050)), 2, 1051, bound(rec(2, 1101)));
        check(Some(rec(3, 1050)), 2, 1010, None);
        check(Some(rec(3, 1050)), 2, 1060, bound(rec(3, 1110)));
        check(Some(FetchRecord { generation: Generation(1), lease_until: None }), 1, 10, bound(rec(1, 60)));
        check(Some(FetchRecord { generation: Generation(1), lease_until: None }), 2, 10, bound(rec(2, 60)));
    }

    proptest::proptest! {
        /// A store that loses every [`Advance::Generation`] write (written after the answer,
        /// then a crash) still holds a bound covering every statement handed out, and the
        /// in-memory record vouches for every generation served.
        #[test]
        fn only_bound_moves_must_be_durable_first(
            statements in proptest::collection::vec((1..6u64, 0..10_000u64), 1..40),
        ) {
            let (mut durable, mut memory): (Option<FetchRecord>, Option<FetchRecord>) = (None, None);
            let mut latest_expiry = 0;
            for (generation, expires) in statements {
                let step = advance(memory, Generation(generation), expires, 500);
                if let Some(step) = step {
                    let record = step.record();
                    if matches!(step, Advance::Bound(_)) {
                        durable = Some(record);
                    }
                    memory = Some(record);
                }
                latest_expiry = latest_expiry.max(expires);
                let bound = durable.and_then(|r| r.lease_until);
                proptest::prop_assert!(bound.is_some_and(|b| b >= latest_expiry), "{durable:?} vs {latest_expiry}");
                proptest::prop_assert!(memory.is_some_and(|m| m.generation >= Generation(generation)));
                proptest::prop_assert_eq!(memory.and_then(|m| m.lease_until), bound, "memory and disk agree on the bound");
            }
        }
    }

    fn pops(names: &[&str]) -> Vec<PopId> {
        names.iter().map(|n| PopId::new(*n).unwrap()).collect()
    }

    /// Confirmed PoPs; expired (PoP, bound); unconfirmed (PoP, bound, remaining).
    type Named = (Vec<String>, Vec<(String, u64)>, Vec<(String, u64, u64)>);

    fn groups(live: &[&str], fetches: &[(&str, &str, Option<u64>)], acked: &[(&str, &str)], now: u64) -> Named {
        let tenants = [
            LeaseTenant { tenant: TenantId::new("a").unwrap(), max_stale_ms: 3000 },
            LeaseTenant { tenant: TenantId::new("b").unwrap(), max_stale_ms: 5000 },
        ];
        let fetches: Vec<(PopId, TenantId, FetchRecord)> = fetches
            .iter()
            .map(|(p, t, u)| {
                (
                    PopId::new(*p).unwrap(),
                    TenantId::new(*t).unwrap(),
                    FetchRecord { generation: Generation(1), lease_until: *u },
                )
            })
            .collect();
        let acked: Vec<(PopId, TenantId)> =
            acked.iter().map(|(p, t)| (PopId::new(*p).unwrap(), TenantId::new(*t).unwrap())).collect();
        let g = lease_groups(&LeaseInput {
            committed_at: 1000,
            now,
            tenants: &tenants,
            live_pops: &pops(live),
            fetches: &fetches,
            acked: &acked,
        });
        (
            g.confirmed.iter().map(|p| p.to_string()).collect(),
            g.expired.iter().map(|l| (l.pop.to_string(), l.old_until)).collect(),
            g.unconfirmed.iter().map(|l| (l.pop.to_string(), l.old_until, l.remaining_ms)).collect(),
        )
    }

    #[test]
    fn pops_fall_in_three_groups_by_acks_and_lease_bounds() {
        let fetches = [
            ("p1", "a", Some(2500)),
            ("p1", "b", Some(2600)),
            ("p2", "a", Some(1800)),
            ("p2", "b", Some(4000)),
            ("p3", "a", Some(900)),
            ("p3", "b", Some(950)),
            ("p4", "a", None),
        ];
        let acked = [("p1", "a"), ("p1", "b"), ("p2", "b")];
        let (confirmed, expired, unconfirmed) = groups(&["p5"], &fetches, &acked, 2000);
        assert_eq!(confirmed, ["p1"]);
        assert_eq!(expired, [("p2".to_owned(), 1800)], "b is acked: only a's bound counts");
        assert_eq!(
            unconfirmed,
            [("p4".to_owned(), 6000, 4000), ("p5".to_owned(), 6000, 4000)],
            "no record (or a record without a bound): commit + the longest max stale"
        );
        // p3's statements expired before the commit: it held no lease then, and is not live.
        let (_, expired, unconfirmed) = groups(&["p5"], &fetches, &acked, 6000);
        assert_eq!(expired, [("p2".to_owned(), 1800), ("p4".to_owned(), 6000), ("p5".to_owned(), 6000)]);
        assert!(unconfirmed.is_empty());
        let (_, expired, _) = groups(&["p3"], &fetches, &acked, 2000);
        assert!(expired.contains(&("p3".to_owned(), 950)), "a live PoP is reported even if expired at commit");
    }

    proptest::proptest! {
        /// For all records and acks: every PoP in the report is in exactly one group; a
        /// confirmed PoP acknowledged both tenants; an expired or unconfirmed PoP's bound is
        /// the latest over its unacknowledged tenants of (record bound, else commit + max
        /// stale), and it is expired exactly when that bound is past.
        #[test]
        fn groups_match_the_model(
            records in proptest::collection::vec((0..4u8, 0..2u8, proptest::option::of(0..8000u64)), 0..10),
            acks in proptest::collection::vec((0..4u8, 0..2u8), 0..8),
            now in 0..9000u64,
        ) {
            let name = |i: u8| format!("p{i}");
            let tenant = |i: u8| if i == 0 { "a" } else { "b" };
            let mut latest: HashMap<(u8, u8), Option<u64>> = HashMap::new();
            for (p, t, u) in &records {
                latest.insert((*p, *t), *u);
            }
            let fetches: Vec<(String, &str, Option<u64>)> =
                latest.iter().map(|((p, t), u)| (name(*p), tenant(*t), *u)).collect();
            let fetches: Vec<(&str, &str, Option<u64>)> = fetches.iter().map(|(p, t, u)| (p.as_str(), *t, *u)).collect();
            let acks_named: Vec<(String, &str)> = acks.iter().map(|(p, t)| (name(*p), tenant(*t))).collect();
            let acked: Vec<(&str, &str)> = acks_named.iter().map(|(p, t)| (p.as_str(), *t)).collect();
            let (confirmed, expired, unconfirmed) = groups(&[], &fetches, &acked, now);
            let all: Vec<&String> = confirmed.iter().chain(expired.iter().map(|e| &e.0)).chain(unconfirmed.iter().map(|u| &u.0)).collect();
            let unique: HashSet<&String> = all.iter().copied().collect();
            proptest::prop_assert_eq!(all.len(), unique.len(), "one group per PoP");
            for p in 0..4u8 {
                let is_acked = |t: u8| acks.contains(&(p, t));
                let bound = |t: u8| latest.get(&(p, t)).copied().flatten().unwrap_or(1000 + [3000, 5000][t as usize]);
                let in_report = acks.iter().any(|(q, _)| *q == p)
                    || latest.iter().any(|((q, _), u)| *q == p && u.is_none_or(|u| u > 1000));
                let reported = unique.contains(&name(p));
                proptest::prop_assert_eq!(reported, in_report);
                if !in_report {
                    continue;
                }
                if is_acked(0) && is_acked(1) {
                    proptest::prop_assert!(confirmed.contains(&name(p)));
                    continue;
                }
                let until = (0..2u8).filter(|t| !is_acked(*t)).map(bound).max().unwrap();
                if until <= now {
                    proptest::prop_assert!(expired.contains(&(name(p), until)));
                } else {
                    proptest::prop_assert!(unconfirmed.contains(&(name(p), until, until - now)));
                }
            }
        }
    }
}

//! Each replica's completion checker: after an ack batch committed, which releases did its
//! new acks complete for their PoPs (every tenant acknowledged at or past the release's
//! generation)? Those are checked for convergence and marked converged, once across
//! replicas (a conditional update, [`super::Inner::mark_converged`]).
//!
//! The check runs on its own thread, off the acks' answers: an ack is answered once its
//! batch committed, and the batch hands its new acks to the checker, which takes everything
//! queued in one pass (one query for all of it, [`Pending`] coalesces). Nothing is missed:
//!
//! - **Only what an ack changed is checked.** A PoP covers a release's tenant when it
//!   acknowledged a generation at or past the release's; an ack at `g` from a PoP whose
//!   highest ack of that tenant was `prior` (read by the ack's own statement) changes the
//!   coverage of exactly the releases whose generation for the tenant lies in `(prior, g]`.
//!   A concurrent ack the statement did not see only makes `prior` smaller (more checked).
//! - **The last ack sees the rest.** A pass reads a snapshot taken after the batches it
//!   checks committed; whichever ack completes a release commits last among the acks it
//!   needs (on any replica), so its pass sees them all.
//!
//! A pass that fails is logged and dropped: the release is still found converged by the next
//! read of its convergence (which computes it) and by the deadline pass. A replica's own
//! reads of release status wait for the passes of the acks it answered before
//! ([`Completion::settled`]), so an ack and a read through one replica stay in order;
//! through different replicas, the stored status trails the ack by one pass (milliseconds),
//! and `GET …/convergence` is always computed from the acks. The wait is bounded
//! ([`SETTLE_WAIT`]): behind a backlog a read shows the stored status, which only trails.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, Weak};

use edgegen_shared::ReleaseId;
use tokio::sync::watch;

use super::{Inner, corrupt, pool::Session};
use crate::store::StoreError;

/// The acks a pass checks, coalesced per (PoP, tenant): the generations whose releases the
/// acks may have completed, as one range `(above, upto]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    ranges: BTreeMap<(String, String), (i64, i64)>,
}

impl Pending {
    /// A new ack of `tenant` at `generation` by `pop`, whose highest earlier ack of that
    /// tenant was `prior`: releases of that tenant with a generation in `(prior, generation]`
    /// may be complete now. An ack at or below `prior` changes nothing and is dropped.
    pub(super) fn add(&mut self, pop: &str, tenant: &str, prior: Option<i64>, generation: i64) {
        // Generations start at 1: "no earlier ack" is below every generation.
        let above = prior.unwrap_or(0);
        if above >= generation {
            return;
        }
        self.widen((pop.to_owned(), tenant.to_owned()), (above, generation));
    }

    /// Takes `other`'s ranges in.
    fn merge(&mut self, other: Pending) {
        for (key, range) in other.ranges {
            self.widen(key, range);
        }
    }

    /// The range of `key` widened to cover `(above, upto]` too.
    fn widen(&mut self, key: (String, String), (above, upto): (i64, i64)) {
        let range = self.ranges.entry(key).or_insert((above, upto));
        *range = (range.0.min(above), range.1.max(upto));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The query's columns: PoPs, tenants, lower (exclusive) and upper (inclusive) bounds.
    fn columns(&self) -> (Vec<&str>, Vec<&str>, Vec<i64>, Vec<i64>) {
        let mut out = (vec![], vec![], vec![], vec![]);
        for ((pop, tenant), (above, upto)) in &self.ranges {
            out.0.push(pop.as_str());
            out.1.push(tenant.as_str());
            out.2.push(*above);
            out.3.push(*upto);
        }
        out
    }

    #[cfg(test)]
    fn range(&self, pop: &str, tenant: &str) -> Option<(i64, i64)> {
        self.ranges.get(&(pop.to_owned(), tenant.to_owned())).copied()
    }
}

/// Longest a read waits for the completion checker ([`Completion::settled`]).
pub(super) const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The queue between the ack writers and the checker thread.
struct Queue {
    pending: Pending,
    /// Ack batches handed over so far (a read waits until the checker finished them).
    submitted: u64,
    stopped: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Batches whose pass finished (the `submitted` count it took).
    checked: watch::Sender<u64>,
}

/// A replica's completion checker (its thread stops when this is dropped).
pub(super) struct Completion {
    shared: Arc<Shared>,
}

impl Completion {
    pub(super) fn new() -> Self {
        Completion {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue { pending: Pending::default(), submitted: 0, stopped: false }),
                wake: Condvar::new(),
                checked: watch::Sender::new(0),
            }),
        }
    }

    /// Starts the checker thread; it reaches the store through `inner` (weak: it never
    /// keeps it alive).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(super) fn start(&self, inner: Weak<Inner>) -> Result<(), StoreError> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("edgegen-completion".into())
            .spawn(move || checker(&shared, &inner))
            .map_err(|e| StoreError::caused("starting the completion checker", e))?;
        Ok(())
    }

    /// Hands a committed batch's new acks to the checker.
    pub(super) fn submit(&self, acks: Pending) {
        if acks.is_empty() {
            return;
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.pending.merge(acks);
        queue.submitted += 1;
        self.shared.wake.notify_one();
    }

    /// Waits until every batch handed over before this call was checked, or [`SETTLE_WAIT`]
    /// passed. The bound keeps a read answering while the checker works through a backlog
    /// (a burst of acks on a slow machine was seen to hold reads past the request timeout):
    /// what the reader then sees is the status as stored, which trails the acks and errs
    /// on the safe side — a release still shown `committed`, a tenant removal refused as
    /// "still converging" — never a convergence that did not happen.
    ///
    /// # Errors
    /// When the checker stopped.
    pub(super) async fn settled(&self) -> Result<(), StoreError> {
        self.settled_within(SETTLE_WAIT).await
    }

    /// [`Self::settled`] with the bound as a parameter.
    async fn settled_within(&self, bound: std::time::Duration) -> Result<(), StoreError> {
        let need = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).submitted;
        let mut checked = self.shared.checked.subscribe();
        match tokio::time::timeout(bound, checked.wait_for(|done| *done >= need)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::internal("the completion checker stopped")),
            Err(_) => {
                tracing::warn!(
                    wait_ms = bound.as_millis(),
                    "the completion checker is behind; reading the stored release status without waiting further"
                );
                Ok(())
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
        self.shared.wake.notify_all();
    }
}

fn checker(shared: &Shared, inner: &Weak<Inner>) {
    loop {
        let (pending, taken) = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while !queue.stopped && queue.pending.is_empty() {
                queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.stopped {
                return;
            }
            (std::mem::take(&mut queue.pending), queue.submitted)
        };
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.with_session(|s, inner| inner.converge_completed(s, &pending)) {
            tracing::error!(cause = %e.chain(), "checking acknowledged releases for convergence failed");
        }
        drop(inner);
        shared.checked.send_if_modified(|done| {
            let newer = taken > *done;
            *done = (*done).max(taken);
            newer
        });
    }
}

/// The releases a pass finds complete for a PoP. The candidates are the distinct (PoP,
/// release) pairs of the coalesced ranges (a release of one of the ranges' tenants, at a
/// generation in the range, still `committed`) — once per pair, not once per acknowledged
/// tenant: a pass over the acks of many tenants of one big release checks that release once
/// per PoP. Each is ruled out by the first of its tenants the PoP has not acknowledged
/// (`LIMIT 1`: the scan stops there), each tenant checked by one probe of the acks' primary
/// key (the `NOT EXISTS` kept a per-row subplan by `OFFSET 0`). Pulled up into an anti
/// join, its generic plans read more: on the load bench, a merge with the acks of *every*
/// PoP in tenant order; with statistics from smaller tables, a sequential scan of
/// `release_tenants` per candidate. `coordinator/benches/plan_ab.py` compares the two
/// shapes at production-like sizes.
///
/// The candidates are found from each range through `release_tenants_by_tenant` (a lateral
/// subquery, kept apart by `OFFSET 0`): the statement is prepared, and its generic plan,
/// which guesses ten rows for an `unnest`, otherwise joins every committed release with
/// every range — measured on the load bench's database with 5,000 ranges and 280 open
/// releases: 1.4 million index probes, 1,491 ms a pass, against 36 ms this way.
const COMPLETED: &str = "WITH c AS MATERIALIZED (SELECT DISTINCT n.pop, x.id
       FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS n(pop, tenant_id, above, upto)
       CROSS JOIN LATERAL (SELECT r.id FROM release_tenants rt
         JOIN releases r ON r.id = rt.release_id AND r.status = 'committed'
         WHERE rt.tenant_id = n.tenant_id AND rt.to_generation > n.above AND rt.to_generation <= n.upto
         OFFSET 0) x)
     SELECT DISTINCT c.id FROM c
     LEFT JOIN LATERAL (SELECT 1 AS missing FROM release_tenants o WHERE o.release_id = c.id AND NOT EXISTS (
       SELECT 1 FROM acks a WHERE a.pop = c.pop AND a.tenant_id = o.tenant_id AND a.generation >= o.to_generation
       OFFSET 0)
       LIMIT 1) m ON TRUE
     WHERE m.missing IS NULL";

impl Inner {
    /// One pass: the releases `pending` completed for a PoP, each checked for convergence
    /// (and marked converged when it is).
    fn converge_completed(&self, s: &mut Session, pending: &Pending) -> Result<(), StoreError> {
        let (pops, tenants, above, upto) = pending.columns();
        let completed = s.prepared(COMPLETED)?;
        let rows = s.client.query(&completed, &[&pops, &tenants, &above, &upto])?;
        for row in rows {
            let id = ReleaseId::new(row.get::<_, String>(0)).map_err(corrupt)?;
            if let Err(e) = self.converge_if_done(&mut s.client, &id) {
                tracing::error!(cause = %e.chain(), release = %id, "convergence check failed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::explain::{explain, max_loops, rows_read, with_database};
    use super::{Completion, Pending};

    fn one_ack() -> Pending {
        let mut p = Pending::default();
        p.add("p1", "a", None, 1);
        p
    }

    #[tokio::test]
    async fn a_read_waits_for_the_pass_of_the_acks_answered_before_it() {
        let c = Completion::new();
        c.submit(one_ack());
        let shared = std::sync::Arc::clone(&c.shared);
        let t = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shared.checked.send_replace(1);
        });
        c.settled_within(Duration::from_secs(30)).await.unwrap();
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "returned before the pass finished ({waited:?})");
        assert!(waited < Duration::from_secs(30), "waited for the bound, not the pass ({waited:?})");
    }

    #[tokio::test]
    async fn a_read_behind_a_stuck_checker_answers_after_the_bound() {
        let c = Completion::new(); // no checker thread: the pass never comes
        c.submit(one_ack());
        let t = Instant::now();
        c.settled_within(Duration::from_millis(100)).await.expect("the stored status is read after the bound");
        assert!(t.elapsed() >= Duration::from_millis(100));
        // With nothing handed over, nothing to wait for.
        let idle = Completion::new();
        let t = Instant::now();
        idle.settled_within(Duration::from_secs(30)).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_ack_at_or_below_the_prior_one_changes_nothing() {
        let mut p = Pending::default();
        p.add("p1", "a", Some(5), 5);
        p.add("p1", "a", Some(5), 3);
        assert!(p.is_empty());
        p.add("p1", "a", None, 1);
        assert_eq!(p.range("p1", "a"), Some((0, 1)), "a first ack covers every generation up to its own");
        p.add("p1", "a", Some(4), 7);
        assert_eq!(p.range("p1", "a"), Some((0, 7)), "ranges of one PoP and tenant merge");
        p.add("p2", "a", Some(6), 7);
        assert_eq!(p.range("p2", "a"), Some((6, 7)), "another PoP keeps its own range");
    }

    /// Regression: the statement is prepared, so PostgreSQL runs it with its generic plan,
    /// which guesses ten rows for the `unnest` of the ranges. The query must still reach
    /// the candidates from each range, not visit every open release for every range (the
    /// earlier shape did: 1,491 ms a pass on the load bench's database, whose statistics
    /// — like any live database's, where most releases have converged — counted few open
    /// releases). Statistics taken while every release had converged, then every release
    /// open again: one range among many open releases of its tenant finds its one release,
    /// and no plan node runs once per open release.
    #[test]
    fn a_pass_reaches_its_candidates_from_the_ranges_whatever_the_open_releases() {
        const OPEN: i64 = 120;
        with_database(|c| {
            c.batch_execute(
                "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, created_at, updated_at)
                   SELECT 't' || i, '[]', 200, '1.0.0', 'h', 0, 0 FROM generate_series(0, 9) i;
                 INSERT INTO releases (seq, id, kind, status, committed_at, execution_log)
                   SELECT g, 'r' || g, 'release', 'converged', 0, '{}' FROM generate_series(1, 120) g;
                 INSERT INTO release_tenants (release_id, tenant_id, position, from_generation, to_generation,
                     from_schema_version, to_schema_version, from_contract_hash, to_contract_hash)
                   SELECT 'r' || g, 't' || i, i, g - 1, g, '1.0.0', '1.0.0', 'h', 'h'
                     FROM generate_series(1, 120) g, generate_series(0, 9) i;
                 ANALYZE;
                 UPDATE releases SET status = 'committed';
                 SET plan_cache_mode = force_generic_plan;",
            )
            .unwrap();
            c.batch_execute(&format!("PREPARE completed(text[], text[], bigint[], bigint[]) AS {}", super::COMPLETED))
                .unwrap();
            // PoP p acknowledged generation 7 of every tenant: release r7 is complete for it.
            c.batch_execute(
                "INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
                   SELECT 'p', 't' || i, 7, 0, 0 FROM generate_series(0, 9) i",
            )
            .unwrap();
            let run = "EXECUTE completed('{p}', '{t3}', '{6}', '{7}')";
            let found: Vec<String> = c.query(run, &[]).unwrap().iter().map(|r| r.get(0)).collect();
            assert_eq!(found, ["r7"], "the range (6, 7] of t3 completes exactly r7 for p");
            let plan = explain(c, run);
            let loops = max_loops(&plan);
            assert!(loops < OPEN / 2, "a plan node ran {loops} times for one range among {OPEN} open releases: {plan}");
        });
    }

    /// Regression: checking a candidate (PoP, release) walks the release's tenants by
    /// primary key and probes the acks' primary key once for each, whatever else is stored.
    /// Pulled up into an anti join, the `NOT EXISTS` got generic plans that read far more:
    /// on the load bench, a merge with every PoP's acks in tenant order (filtering out the
    /// other PoPs' rows, a cost that grew with the acks stored); here, with statistics from
    /// before the acks, a sequential scan of all 6,000 release tenants per candidate.
    #[test]
    fn a_candidate_is_checked_against_its_own_pops_acks_only() {
        const TENANTS: i64 = 200;
        const OTHER_POPS: i64 = 50;
        with_database(|c| {
            c.batch_execute(&format!(
                "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, created_at, updated_at)
                   SELECT 't' || i, '[]', 200, '1.0.0', 'h', 0, 0 FROM generate_series(1, {TENANTS}) i;
                 INSERT INTO releases (seq, id, kind, status, committed_at, execution_log)
                   SELECT g, 'r' || g, 'release', 'committed', 0, '{{}}' FROM generate_series(1, 30) g;
                 INSERT INTO release_tenants (release_id, tenant_id, position, from_generation, to_generation,
                     from_schema_version, to_schema_version, from_contract_hash, to_contract_hash)
                   SELECT 'r' || g, 't' || i, i, g - 1, g, '1.0.0', '1.0.0', 'h', 'h'
                     FROM generate_series(1, 30) g, generate_series(1, {TENANTS}) i;
                 -- Statistics from before the acks (a live database's statistics lag behind its inserts).
                 ANALYZE;
                 -- Every other PoP acknowledged every tenant up to generation 6; p, generation 7.
                 INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
                   SELECT 'q' || n, 't' || i, g, 0, 0
                     FROM generate_series(1, {OTHER_POPS}) n, generate_series(1, {TENANTS}) i, generate_series(1, 6) g;
                 INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
                   SELECT 'p', 't' || i, 7, 0, 0 FROM generate_series(1, {TENANTS}) i;
                 SET plan_cache_mode = force_generic_plan;"
            ))
            .unwrap();
            c.batch_execute(&format!("PREPARE completed(text[], text[], bigint[], bigint[]) AS {}", super::COMPLETED))
                .unwrap();
            let run = "EXECUTE completed('{p,p}', '{t3,t4}', '{6,6}', '{7,7}')";
            let found: Vec<String> = c.query(run, &[]).unwrap().iter().map(|r| r.get(0)).collect();
            assert_eq!(found, ["r7"], "r7 is complete for p, once however many of its tenants p acknowledged");
            let plan = explain(c, run);
            // r7's tenants and one probe for each, not a scan through other releases or PoPs.
            for table in ["acks", "release_tenants"] {
                let read = rows_read(&plan, table);
                assert!(
                    read <= 2 * TENANTS,
                    "checking r7 ({TENANTS} tenants) for p read {read} rows of {table}: {plan}"
                );
            }
        });
    }

    proptest::proptest! {
        /// For all acks, every generation an ack newly covers (in `(prior, generation]`)
        /// lies in its PoP and tenant's coalesced range: no release it may complete is
        /// left unchecked.
        #[test]
        fn every_newly_covered_generation_is_checked(
            acks in proptest::collection::vec((0..3u8, 0..3u8, proptest::option::of(0..20i64), 1..20i64), 0..60),
        ) {
            let mut p = Pending::default();
            for (pop, tenant, prior, generation) in &acks {
                p.add(&format!("p{pop}"), &format!("t{tenant}"), *prior, *generation);
            }
            for (pop, tenant, prior, generation) in acks {
                for covered in prior.unwrap_or(0) + 1..=generation {
                    let range = p.range(&format!("p{pop}"), &format!("t{tenant}"));
                    proptest::prop_assert!(
                        range.is_some_and(|(above, upto)| above < covered && covered <= upto),
                        "generation {covered} of p{pop}/t{tenant} is outside {range:?}"
                    );
                }
            }
        }
    }
}

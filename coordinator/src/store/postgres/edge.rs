//! What the edge sends, on PostgreSQL: acknowledgements (rows, so they pool across
//! replicas; the releases they complete are checked off the answer, [`super::completion`]),
//! convergence marked once by a conditional update, reports and the rows the report policy
//! reads, and the releases past the convergence deadline (listed to one replica at a time,
//! under a transaction advisory lock). The policies themselves are the engine's.

use edgegen_shared::api::{Convergence, ExecutionLog, Release, ReleaseKind, ReleaseStatus};
use edgegen_shared::{Ack, Generation, PopId, ReleaseId, Report, TenantId};
use postgres::{Client, GenericClient};

use super::completion::Pending;
use super::group::BatchResult;
use super::pool::Session;
use super::{DEADLINE_LOCK, Inner, corrupt, live_pops, load_release, sql_gen};
use crate::clock::now_ms;
use crate::convergence::FetchRecord;
use crate::domain::{self, AckRow, Refusal};
use crate::execlog;
use crate::store::{AckOutcome, StoreError};

/// A batch of acks in one statement (atomic on its own: one round trip, no explicit
/// transaction, prepared once per connection): each ack joined with its tenant's
/// generation, with the fetch record that vouches for it when the caller's memory did not
/// (`vouched`), and with its PoP's highest earlier ack of the tenant (`prior`, what the
/// completion check narrows to); the accepted ones inserted in key order (concurrent
/// batches lock in one order), their PoPs' last-seen refreshed where it is due (`touch`,
/// [`super::seen`]; in id order, for the same reason); and for each ack whether it was new.
///
/// The fetch record and `prior` are scalar subqueries: one primary-key probe per ack (the
/// fetch record only for an ack the caller's memory did not vouch for). As a join, the
/// prepared statement's generic plan could read the whole `fetches` table on every batch:
/// on the load bench it did (a hash join over 8,000 rows a batch, every ack vouched).
const RECORD_ACKS: &str = "WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                                          $5::bigint[], $6::bool[], $7::bool[])
                   AS i(pop, tenant_id, generation, observed_at, ord, vouched, touch)),
      t AS (SELECT i.*, tn.generation AS current,
                   CASE WHEN NOT i.vouched THEN
                     (SELECT f.generation FROM fetches f WHERE f.pop = i.pop AND f.tenant_id = i.tenant_id) END AS fetched,
                   (SELECT MAX(a.generation) FROM acks a WHERE a.pop = i.pop AND a.tenant_id = i.tenant_id) AS prior
              FROM i
              LEFT JOIN tenants tn ON tn.id = i.tenant_id AND tn.removed_at IS NULL),
      ok AS (SELECT * FROM t WHERE (t.vouched OR t.fetched >= t.generation) AND t.current >= t.generation),
      ins AS (INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
              SELECT pop, tenant_id, generation, observed_at, $8 FROM ok ORDER BY pop, tenant_id, generation
              ON CONFLICT DO NOTHING RETURNING pop, tenant_id, generation),
      seen AS (INSERT INTO pops (id, first_seen, last_seen)
              SELECT DISTINCT pop, $8::bigint, $8::bigint FROM ok WHERE ok.touch ORDER BY pop
              ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST(pops.last_seen, EXCLUDED.last_seen))
 SELECT t.ord, t.current, t.fetched, ins.pop IS NOT NULL, t.prior, t.touch FROM t
 LEFT JOIN ins ON ins.pop = t.pop AND ins.tenant_id = t.tenant_id AND ins.generation = t.generation";

impl Inner {
    pub(super) fn compute_convergence(
        &self,
        c: &mut impl GenericClient,
        release: &Release,
        now: u64,
    ) -> Result<Convergence, StoreError> {
        let live = live_pops(c, now, self.settings.pop_live_window_ms)?;
        let rows = c.query(
            "SELECT a.pop, a.tenant_id, MIN(a.received_at) FROM release_tenants rt
             JOIN acks a ON a.tenant_id = rt.tenant_id AND a.generation >= rt.to_generation
             WHERE rt.release_id = $1 GROUP BY a.pop, a.tenant_id",
            &[&release.id.as_str()],
        )?;
        let mut acks = Vec::with_capacity(rows.len());
        for r in rows {
            acks.push(AckRow {
                pop: PopId::new(r.get::<_, String>(0)).map_err(corrupt)?,
                tenant: TenantId::new(r.get::<_, String>(1)).map_err(corrupt)?,
                received_at: r.get::<_, i64>(2) as u64,
            });
        }
        let rows = c.query(
            "SELECT f.pop, f.tenant_id, f.generation, f.lease_until FROM release_tenants rt
             JOIN fetches f ON f.tenant_id = rt.tenant_id WHERE rt.release_id = $1",
            &[&release.id.as_str()],
        )?;
        let mut fetches = Vec::with_capacity(rows.len());
        for r in rows {
            fetches.push((
                PopId::new(r.get::<_, String>(0)).map_err(corrupt)?,
                TenantId::new(r.get::<_, String>(1)).map_err(corrupt)?,
                FetchRecord {
                    generation: Generation(r.get::<_, i64>(2) as u64),
                    lease_until: r.get::<_, Option<i64>>(3).map(|u| u as u64),
                },
            ));
        }
        Ok(self.settings.convergence(release, &live, &acks, &fetches, now))
    }

    /// Marks a release converged, once: the conditional update succeeds on one replica.
    pub(super) fn mark_converged(
        &self,
        c: &mut Client,
        id: &ReleaseId,
        conv: &Convergence,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = c.transaction()?;
        let Some(row) = tx.query_opt(
            "SELECT execution_log FROM releases WHERE id = $1 AND status = 'committed' FOR UPDATE",
            &[&id.as_str()],
        )?
        else {
            return Ok(());
        };
        let mut log: ExecutionLog = serde_json::from_str(row.get(0))?;
        execlog::mark_converged(&mut log, conv);
        tx.execute(
            "UPDATE releases SET status = 'converged', converged_at = $1, execution_log = $2 WHERE id = $3",
            &[&(now as i64), &serde_json::to_string(&log)?, &id.as_str()],
        )?;
        tx.commit()?;
        let latency = conv.max_ms.unwrap_or(0);
        self.metrics.converged(latency);
        tracing::info!(release = %id, latency_ms = latency, pops = conv.total, "release converged");
        Ok(())
    }

    /// Records a batch of acknowledgements in one statement ([`super::group`]): each is
    /// accepted if a fetch vouches for it (the caller's memory, or else a fetch record any
    /// replica wrote) and its tenant is at or past its generation, stored once (a retry or
    /// another replica's copy is a no-op), and refreshes its PoP's last-seen. After the
    /// statement committed, the new acks go to the replica's completion checker
    /// ([`super::completion`]), off the answer.
    pub(super) fn record_acks(&self, s: &mut Session, acks: &[(Ack, bool)]) -> BatchResult<AckOutcome> {
        let at = now_ms();
        let now = at as i64;
        let mut results: Vec<Result<AckOutcome, StoreError>> = Vec::with_capacity(acks.len());
        let (mut pops, mut tenants, mut generations, mut observed, mut ords, mut vouched, mut touch) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for (i, (ack, known)) in acks.iter().enumerate() {
            match sql_gen(ack.generation) {
                Ok(g) => {
                    pops.push(ack.pop.as_str());
                    tenants.push(ack.tenant.as_str());
                    generations.push(g);
                    observed.push(i64::try_from(ack.observed_at).unwrap_or(i64::MAX));
                    ords.push(i as i64);
                    vouched.push(*known);
                    touch.push(self.seen.due(&ack.pop, at));
                    results.push(Ok(AckOutcome::Recorded { fetched: None }));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let record = s.prepared(RECORD_ACKS)?;
        let rows =
            s.client.query(&record, &[&pops, &tenants, &generations, &observed, &ords, &vouched, &touch, &now])?;
        let mut new_acks = Pending::default();
        let mut written = Vec::new();
        let mut accepted = 0;
        for row in &rows {
            let i = usize::try_from(row.get::<_, i64>(0)).map_err(|e| StoreError::caused("an ack's position", e))?;
            let (ack, known) = acks.get(i).ok_or_else(|| StoreError::internal("an ack's position is out of range"))?;
            let fetched = row.get::<_, Option<i64>>(2).map(|g| Generation(g as u64));
            if !known && fetched.is_none_or(|g| g < ack.generation) {
                results[i] = Ok(AckOutcome::Unvouched);
                continue;
            }
            let Some(current) = row.get::<_, Option<i64>>(1) else {
                results[i] = Err(Refusal::NotFound(format!("tenant {} does not exist", ack.tenant)).into());
                continue;
            };
            let current = Generation(current as u64);
            if ack.generation > current {
                results[i] = Err(Refusal::Unprocessable(format!(
                    "generation: tenant {} is at generation {current}; a PoP cannot have seen {}",
                    ack.tenant, ack.generation
                ))
                .into());
                continue;
            }
            accepted += 1;
            results[i] = Ok(AckOutcome::Recorded { fetched: fetched.filter(|_| !known) });
            if row.get::<_, bool>(5) {
                written.push(&ack.pop);
            }
            if row.get::<_, bool>(3) {
                new_acks.add(ack.pop.as_str(), ack.tenant.as_str(), row.get(4), sql_gen(ack.generation)?);
            }
        }
        self.metrics.acks(accepted);
        self.seen.wrote(written, at);
        self.completion.submit(new_acks);
        Ok(results)
    }

    pub(super) fn converge_if_done(&self, c: &mut Client, id: &ReleaseId) -> Result<(), StoreError> {
        let Some(release) = load_release(c, id)? else { return Ok(()) };
        if release.status != ReleaseStatus::Committed {
            return Ok(());
        }
        let now = now_ms();
        let conv = self.compute_convergence(c, &release, now)?;
        if conv.converged {
            self.mark_converged(c, id, &conv, now)?;
        }
        Ok(())
    }

    pub(super) fn record_report(&self, c: &mut Client, report: Report) -> Result<i64, StoreError> {
        if c.query_opt("SELECT 1 FROM tenants WHERE id = $1 AND removed_at IS NULL", &[&report.tenant.as_str()])?
            .is_none()
        {
            return Err(Refusal::NotFound(format!("tenant {} does not exist", report.tenant)).into());
        }
        let now = now_ms();
        let body = serde_json::to_string(&report)?;
        let kind =
            serde_json::to_value(report.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let id: i64 = c
            .query_one(
                "INSERT INTO reports (pop, tenant_id, kind, generation, body, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &report.pop.as_str(),
                    &report.tenant.as_str(),
                    &kind,
                    &sql_gen(report.generation)?,
                    &body,
                    &(now as i64),
                ],
            )?
            .get(0);
        Ok(id)
    }
}

/// [`crate::store::Store::reports_against`].
pub(super) fn reports_against(
    c: &mut Client,
    tenant: &TenantId,
    generation: Generation,
    window_ms: u64,
) -> Result<Option<domain::ReportedRelease>, StoreError> {
    let Some(row) = c.query_opt(
        "SELECT r.id, r.committed_at FROM generations g JOIN releases r ON r.id = g.release_id
         WHERE g.tenant_id = $1 AND g.generation = $2 AND r.kind = $3 AND r.status IN ('committed', 'converged')",
        &[&tenant.as_str(), &sql_gen(generation)?, &ReleaseKind::Release.as_str()],
    )?
    else {
        return Ok(None);
    };
    let (id, committed_at): (String, i64) = (row.get(0), row.get(1));
    let window_end = committed_at.saturating_add(i64::try_from(window_ms).unwrap_or(i64::MAX));
    let rows = c.query(
        "SELECT rp.pop, rp.body FROM reports rp JOIN release_tenants rt
           ON rt.tenant_id = rp.tenant_id AND rt.to_generation = rp.generation
         WHERE rt.release_id = $1 AND rp.received_at BETWEEN $2 AND $3",
        &[&id, &committed_at, &window_end],
    )?;
    let mut reports = Vec::with_capacity(rows.len());
    for r in rows {
        let stored: Report = serde_json::from_str(r.get(1))?;
        reports.push(domain::ReportRow { pop: PopId::new(r.get::<_, String>(0)).map_err(corrupt)?, path: stored.path });
    }
    Ok(Some(domain::ReportedRelease {
        id: ReleaseId::new(id).map_err(corrupt)?,
        committed_at: committed_at as u64,
        reports,
    }))
}

/// [`crate::store::Store::past_deadline`]: one replica at a time (a transaction advisory
/// lock; another replica's pass finds none due meanwhile). Passes that still overlap are
/// harmless: a rollback re-reads its release under its tenants' row locks, so a second
/// one is refused.
pub(super) fn past_deadline(c: &mut Client, deadline: u64, now: u64) -> Result<Vec<(ReleaseId, u64)>, StoreError> {
    let mut tx = c.transaction()?;
    let leader: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&DEADLINE_LOCK])?.get(0);
    if !leader {
        return Ok(Vec::new());
    }
    let due = tx.query(
        // A release a later one superseded (a tenant moved on) can no longer be rolled back
        // alone: it is left as it is.
        "SELECT r.id, r.committed_at FROM releases r WHERE r.status = 'committed' AND r.kind = 'release'
           AND r.committed_at <= $1
           AND NOT EXISTS (SELECT 1 FROM release_tenants rt JOIN tenants t ON t.id = rt.tenant_id
                           WHERE rt.release_id = r.id AND t.generation <> rt.to_generation)
         ORDER BY r.committed_at, r.id",
        &[&i64::try_from(now.saturating_sub(deadline)).unwrap_or(i64::MAX)],
    )?;
    tx.commit()?;
    due.into_iter()
        .map(|row| {
            let id = ReleaseId::new(row.get::<_, String>(0)).map_err(corrupt)?;
            Ok((id, (row.get::<_, i64>(1) as u64).saturating_add(deadline)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::explain::{explain, rows_read, with_database};

    /// Regression: an ack batch reads the fetch record of each ack its caller did not vouch
    /// for, by primary key, and no other. As a join, the generic plan of the prepared
    /// statement read the whole `fetches` table on every batch on the load bench (8,000
    /// rows a batch, every ack vouched); here, with fresh statistics, it probed every ack's
    /// record, vouched or not (4 rows where 2 are needed: checked against that statement).
    #[test]
    fn an_ack_batch_reads_only_the_fetch_records_it_needs() {
        const POPS: i64 = 500;
        with_database(|c| {
            c.batch_execute(&format!(
                "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, created_at, updated_at)
                   SELECT 't' || i, '[]', 9, '1.0.0', 'h', 0, 0 FROM generate_series(0, 9) i;
                 INSERT INTO fetches (pop, tenant_id, generation, lease_until)
                   SELECT 'p' || n, 't' || i, 8, 0 FROM generate_series(1, {POPS}) n, generate_series(0, 9) i;
                 ANALYZE;
                 SET plan_cache_mode = force_generic_plan;"
            ))
            .unwrap();
            c.batch_execute(&format!(
                "PREPARE record(text[], text[], bigint[], bigint[], bigint[], bool[], bool[], bigint) AS {}",
                super::RECORD_ACKS
            ))
            .unwrap();
            // Two acks the caller vouched for, two it did not: p2's fetch of t1 (generation 8)
            // vouches for its ack of 7; p3 never fetched t9 at generation 9, so its ack of 9
            // is not vouched (the statement reports the fetch it found, 8).
            let run = "EXECUTE record('{p1,p1,p2,p3}', '{t0,t1,t1,t9}', '{7,7,7,9}', '{0,0,0,0}', '{0,1,2,3}',
                       '{t,t,f,f}', '{f,f,f,f}', 1)";
            let rows = c.query(run, &[]).unwrap();
            let mut answers: Vec<(i64, Option<i64>, bool)> =
                rows.iter().map(|r| (r.get(0), r.get(2), r.get(3))).collect();
            answers.sort_unstable();
            assert_eq!(
                answers,
                [(0, None, true), (1, None, true), (2, Some(8), true), (3, Some(8), false)],
                "vouched acks are stored without a fetch; the others carry the fetch found, stored if it vouches"
            );
            let run = "EXECUTE record('{p4,p4,p5,p6}', '{t0,t1,t1,t2}', '{7,7,7,7}', '{0,0,0,0}', '{0,1,2,3}',
                       '{t,t,f,f}', '{f,f,f,f}', 1)";
            let read = rows_read(&explain(c, run), "fetches");
            assert_eq!(read, 2, "one fetch record for each of the two acks not vouched for, of {} stored", POPS * 10);
        });
    }
}

//! What the edge sends, on PostgreSQL: acknowledgements (rows, so they pool across
//! replicas), convergence marked once by a conditional update, reports with the
//! auto-rollback policy (acting once: a rollback re-checks under row locks), and the
//! deadline pass under a session advisory lock.

use edgegen_shared::api::{Convergence, ExecutionLog, Release, ReleaseKind, ReleaseStatus};
use edgegen_shared::{Ack, Generation, PopId, ReleaseId, Report, TenantId};
use postgres::{Client, GenericClient};

use super::{DEADLINE_LOCK, Inner, corrupt, live_pops, load_release, sql_gen};
use crate::clock::now_ms;
use crate::convergence::FetchRecord;
use crate::domain::{self, AckRow, ConvergenceInput, Refusal};
use crate::execlog;
use crate::store::{ReportOutcome, StoreError};

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
        let tenants: Vec<TenantId> = release.tenants.iter().map(|ch| ch.tenant.clone()).collect();
        Ok(domain::convergence(&ConvergenceInput {
            release_id: &release.id,
            status: release.status,
            committed_at: release.committed_at,
            tenants: &tenants,
            live_pops: &live,
            acks: &acks,
            now,
            bound_ms: self.settings.manifest_max_age_ms,
            live_window_ms: self.settings.pop_live_window_ms,
            leases: &self.settings.leases,
            fetches: &fetches,
        }))
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

    pub(super) fn record_ack(&self, c: &mut Client, ack: &Ack) -> Result<(), StoreError> {
        let now = now_ms() as i64;
        let generation = sql_gen(ack.generation)?;
        let observed = i64::try_from(ack.observed_at).unwrap_or(i64::MAX);
        // One statement (atomic on its own): check the tenant, store the ack, refresh the
        // PoP's last-seen; it answers the tenant's generation and whether the ack was new.
        let row = c.query_opt(
            "WITH t AS (SELECT generation FROM tenants WHERE id = $2 AND removed_at IS NULL),
                  ins AS (INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at)
                          SELECT $1, $2, $3, $4, $5 FROM t WHERE t.generation >= $3
                          ON CONFLICT DO NOTHING RETURNING 1),
                  seen AS (INSERT INTO pops (id, first_seen, last_seen) SELECT $1, $5, $5 FROM t WHERE t.generation >= $3
                           ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST(pops.last_seen, EXCLUDED.last_seen))
             SELECT t.generation, (SELECT COUNT(*) FROM ins) FROM t",
            &[&ack.pop.as_str(), &ack.tenant.as_str(), &generation, &observed, &now],
        )?;
        let Some(row) = row else {
            return Err(Refusal::NotFound(format!("tenant {} does not exist", ack.tenant)).into());
        };
        let current = Generation(row.get::<_, i64>(0) as u64);
        if ack.generation > current {
            return Err(Refusal::Unprocessable(format!(
                "generation: tenant {} is at generation {current}; a PoP cannot have seen {}",
                ack.tenant, ack.generation
            ))
            .into());
        }
        self.metrics.acks(1);
        if row.get::<_, i64>(1) == 0 {
            // Already stored (a retry, or another replica): it completes nothing new.
            return Ok(());
        }
        // Releases of this tenant that this PoP has now acknowledged completely: check them
        // (acks that landed on other replicas count too: they are rows).
        let completed = c.query(
            "SELECT r.id FROM releases r JOIN release_tenants rt ON rt.release_id = r.id
             WHERE rt.tenant_id = $1 AND rt.to_generation <= $2 AND r.status = 'committed'
               AND NOT EXISTS (SELECT 1 FROM release_tenants o WHERE o.release_id = r.id AND NOT EXISTS (
                 SELECT 1 FROM acks a WHERE a.pop = $3 AND a.tenant_id = o.tenant_id AND a.generation >= o.to_generation))",
            &[&ack.tenant.as_str(), &generation, &ack.pop.as_str()],
        )?;
        for row in completed {
            let id = ReleaseId::new(row.get::<_, String>(0)).map_err(corrupt)?;
            if let Err(e) = self.converge_if_done(c, &id) {
                tracing::error!(cause = %e.chain(), release = %id, "convergence check failed");
            }
        }
        Ok(())
    }

    fn converge_if_done(&self, c: &mut Client, id: &ReleaseId) -> Result<(), StoreError> {
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

    pub(super) fn record_report(&self, c: &mut Client, report: Report) -> Result<ReportOutcome, StoreError> {
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
        self.metrics.report(report.kind);
        let auto_rollback = match self.settings.auto_rollback {
            Some(policy) => self.apply_report_policy(c, &report, policy, now)?,
            None => None,
        };
        Ok(ReportOutcome { id, auto_rollback })
    }

    fn apply_report_policy(
        &self,
        c: &mut Client,
        report: &Report,
        policy: crate::config::AutoRollback,
        now: u64,
    ) -> Result<Option<ReleaseId>, StoreError> {
        let Some(row) = c.query_opt(
            "SELECT r.id, r.committed_at FROM generations g JOIN releases r ON r.id = g.release_id
             WHERE g.tenant_id = $1 AND g.generation = $2 AND r.kind = $3 AND r.status IN ('committed', 'converged')",
            &[&report.tenant.as_str(), &sql_gen(report.generation)?, &ReleaseKind::Release.as_str()],
        )?
        else {
            return Ok(None);
        };
        let (id, committed_at): (String, i64) = (row.get(0), row.get(1));
        let window_end = committed_at.saturating_add(policy.window.as_millis() as i64);
        if now as i64 > window_end {
            return Ok(None);
        }
        let rows = c.query(
            "SELECT rp.pop, rp.body FROM reports rp JOIN release_tenants rt
               ON rt.tenant_id = rp.tenant_id AND rt.to_generation = rp.generation
             WHERE rt.release_id = $1 AND rp.received_at BETWEEN $2 AND $3",
            &[&id, &committed_at, &window_end],
        )?;
        let mut counted = Vec::with_capacity(rows.len());
        for r in rows {
            let stored: Report = serde_json::from_str(r.get(1))?;
            counted.push(domain::ReportRow {
                pop: PopId::new(r.get::<_, String>(0)).map_err(corrupt)?,
                path: stored.path,
            });
        }
        let tally = domain::ReportTally::of(&counted);
        if !tally.fires(&policy) {
            return Ok(None);
        }
        let id = ReleaseId::new(id).map_err(corrupt)?;
        let reason = tally.rollback_reason(&policy);
        match self.rollback(c, &id, &reason, true, Some(now)) {
            Ok(rollback) => Ok(Some(rollback.id)),
            // Another replica (or report) rolled it back first: the policy acted once.
            Err(StoreError::Refused(Refusal::Conflict(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rolls back every release still unconverged past the deadline. One replica at a
    /// time (session advisory lock); a rollback already made elsewhere is refused and
    /// skipped.
    pub(super) fn enforce_deadline(&self, c: &mut Client, now: u64) -> Result<(), StoreError> {
        let Some(deadline) = self.settings.convergence_deadline_ms else { return Ok(()) };
        let leader: bool = c.query_one("SELECT pg_try_advisory_lock($1)", &[&DEADLINE_LOCK])?.get(0);
        if !leader {
            return Ok(());
        }
        let result = (|| -> Result<(), StoreError> {
            let due = c.query(
                // A release a later one superseded (a tenant moved on) can no longer be
                // rolled back alone: it is left as it is, like the SQLite store does.
                "SELECT r.id, r.committed_at FROM releases r WHERE r.status = 'committed' AND r.kind = 'release'
                   AND r.committed_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM release_tenants rt JOIN tenants t ON t.id = rt.tenant_id
                                   WHERE rt.release_id = r.id AND t.generation <> rt.to_generation)
                 ORDER BY r.committed_at, r.id",
                &[&(now.saturating_sub(deadline) as i64)],
            )?;
            for row in due {
                let id = ReleaseId::new(row.get::<_, String>(0)).map_err(corrupt)?;
                let trigger_at = (row.get::<_, i64>(1) as u64).saturating_add(deadline);
                let Some(release) = load_release(c, &id)? else { continue };
                let conv = self.compute_convergence(c, &release, now)?;
                if conv.converged {
                    self.mark_converged(c, &id, &conv, now)?;
                    continue;
                }
                let reason = format!(
                    "automatic: not converged within the deadline of {deadline} ms ({}/{} live PoPs acknowledged)",
                    conv.acked, conv.total
                );
                if let Err(e) = self.rollback(c, &id, &reason, true, Some(trigger_at)) {
                    tracing::error!(release = %id, cause = %e.chain(), "automatic rollback failed");
                }
            }
            Ok(())
        })();
        c.execute("SELECT pg_advisory_unlock($1)", &[&DEADLINE_LOCK])?;
        result
    }
}

//! What the edge sends: acknowledgements and manifest fetch records (group-committed together),
//! reports and the rows the report policy reads, convergence, and the releases past the
//! convergence deadline. The policies are the engine's ([`crate::engine`]), their decisions
//! pure ([`crate::domain`], [`crate::convergence`]); this module reads and writes their inputs.

use std::collections::HashSet;

use edgegen_shared::api::{Convergence, Release, ReleaseKind, ReleaseStatus};
use edgegen_shared::{Generation, PopId, ReleaseId, Report, TenantId};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::load::{live_pops, load_release};
use super::{AckWrite, FetchWrite, Writer, corrupt, sql_gen};
use crate::clock::now_ms;
use crate::convergence::FetchRecord;
use crate::domain::{self, AckRow, Refusal};
use crate::execlog;
use crate::store::StoreError;

impl Writer {
    pub(super) fn convergence(&mut self, id: &ReleaseId) -> Result<Option<Convergence>, StoreError> {
        let Some(release) = load_release(&self.conn, id)? else { return Ok(None) };
        let now = now_ms();
        let conv = self.compute_convergence(&release, now)?;
        if conv.converged && release.status == ReleaseStatus::Committed {
            self.mark_converged(&release, &conv, now)?;
            return Ok(Some(Convergence { status: ReleaseStatus::Converged, ..conv }));
        }
        Ok(Some(conv))
    }

    fn compute_convergence(&self, release: &Release, now: u64) -> Result<Convergence, StoreError> {
        let live = live_pops(&self.conn, now, self.settings.pop_live_window_ms)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.pop, a.tenant_id, MIN(a.received_at) FROM release_tenants rt
             JOIN acks a ON a.tenant_id = rt.tenant_id AND a.generation >= rt.to_generation
             WHERE rt.release_id = ?1 GROUP BY a.pop, a.tenant_id",
        )?;
        let rows = stmt.query_map([release.id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        let mut acks = Vec::new();
        for row in rows {
            let (pop, tenant, at) = row?;
            acks.push(AckRow {
                pop: PopId::new(pop).map_err(corrupt)?,
                tenant: TenantId::new(tenant).map_err(corrupt)?,
                received_at: at as u64,
            });
        }
        drop(stmt);
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.pop, f.tenant_id, f.generation, f.lease_until FROM release_tenants rt
             JOIN fetches f ON f.tenant_id = rt.tenant_id WHERE rt.release_id = ?1",
        )?;
        let rows = stmt.query_map([release.id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
        })?;
        let mut fetches = Vec::new();
        for row in rows {
            let (pop, tenant, generation, until) = row?;
            fetches.push((
                PopId::new(pop).map_err(corrupt)?,
                TenantId::new(tenant).map_err(corrupt)?,
                FetchRecord { generation: Generation(generation as u64), lease_until: until.map(|u| u as u64) },
            ));
        }
        Ok(self.settings.convergence(release, &live, &acks, &fetches, now))
    }

    fn mark_converged(&mut self, release: &Release, conv: &Convergence, now: u64) -> Result<(), StoreError> {
        let mut log = release.execution_log.clone();
        execlog::mark_converged(&mut log, conv);
        let latency = conv.max_ms.unwrap_or(0);
        let json = serde_json::to_string(&log)?;
        self.conn.execute(
            "UPDATE releases SET status = 'converged', converged_at = ?1, execution_log = ?2 WHERE id = ?3 AND status = 'committed'",
            params![now as i64, json, release.id.as_str()],
        )?;
        self.open.remove(&release.id);
        self.metrics.converged(latency);
        tracing::info!(release = %release.id, latency_ms = latency, pops = conv.total, "release converged");
        Ok(())
    }

    /// One group commit of the edge's writes: the acknowledgements (each checked against
    /// its tenant first; a refused one is answered at once; each stored with the time the
    /// store received it, not the time its batch reached the writer, so its ack latency does
    /// not include waiting behind other writes) and the manifest fetch records
    /// (the bounds only grow) in one transaction, so a pass costs one durable commit; then
    /// every caller is answered and the acknowledged releases are checked for convergence.
    pub(super) fn flush_edge(&mut self, acks: Vec<AckWrite>, fetches: Vec<FetchWrite>) {
        if acks.is_empty() && fetches.is_empty() {
            return;
        }
        let now = now_ms();
        let mut accepted = Vec::with_capacity(acks.len());
        for (ack, received_at, reply) in acks {
            match self.tenant(&ack.tenant) {
                None => {
                    let _ = reply.send(Err(Refusal::NotFound(format!("tenant {} does not exist", ack.tenant)).into()));
                }
                Some(state) if ack.generation > state.generation => {
                    let _ = reply.send(Err(Refusal::Unprocessable(format!(
                        "generation: tenant {} is at generation {}; a PoP cannot have seen {}",
                        ack.tenant, state.generation, ack.generation
                    ))
                    .into()));
                }
                Some(_) => accepted.push((ack, received_at, reply)),
            }
        }
        if accepted.is_empty() && fetches.is_empty() {
            return;
        }
        let result = self.write_edge(&accepted, &fetches, now);
        for (_, _, _, reply) in fetches {
            let _ = reply.send(result.clone());
        }
        let n = accepted.len() as u64;
        let mut stored = Vec::with_capacity(accepted.len());
        for (ack, _, reply) in accepted {
            stored.push(ack);
            let _ = reply.send(result.clone());
        }
        if result.is_ok() && !stored.is_empty() {
            self.metrics.acks(n);
            let mut completed = HashSet::new();
            for ack in &stored {
                self.pops.insert(ack.pop.clone(), now);
                completed.extend(self.open.record(ack));
            }
            for id in completed {
                if let Err(e) = self.converge_if_complete(&id, now) {
                    tracing::error!(cause = %e.chain(), release = %id, "convergence check failed");
                }
            }
        }
    }

    fn live_pops_now(&self, now: u64) -> Vec<PopId> {
        let since = now.saturating_sub(self.settings.pop_live_window_ms);
        let mut live: Vec<PopId> =
            self.pops.iter().filter(|(_, seen)| **seen >= since).map(|(p, _)| p.clone()).collect();
        live.sort();
        live
    }

    /// Marks `id` converged if every live PoP acknowledged all its tenants (checked in memory
    /// first; the stored figures come from the acks table).
    fn converge_if_complete(&mut self, id: &ReleaseId, now: u64) -> Result<(), StoreError> {
        if !self.open.complete_for(id, &self.live_pops_now(now)) {
            return Ok(());
        }
        let Some(release) = load_release(&self.conn, id)? else { return Ok(()) };
        if release.status != ReleaseStatus::Committed {
            self.open.remove(id);
            return Ok(());
        }
        let conv = self.compute_convergence(&release, now)?;
        if conv.converged {
            self.mark_converged(&release, &conv, now)?;
        }
        Ok(())
    }

    fn write_edge(&mut self, acks: &[AckWrite], fetches: &[FetchWrite], now: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO acks (pop, tenant_id, generation, observed_at, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut seen = tx.prepare_cached(
                "INSERT INTO pops (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            )?;
            let mut pops = HashSet::new();
            for (ack, received_at, _) in acks {
                let observed = i64::try_from(ack.observed_at).unwrap_or(i64::MAX);
                insert.execute(params![
                    ack.pop.as_str(),
                    ack.tenant.as_str(),
                    sql_gen(ack.generation)?,
                    observed,
                    i64::try_from(*received_at).unwrap_or(i64::MAX)
                ])?;
                if pops.insert(ack.pop.as_str()) {
                    seen.execute(params![ack.pop.as_str(), now as i64])?;
                }
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO fetches (pop, tenant_id, generation, lease_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pop, tenant_id) DO UPDATE SET generation = MAX(generation, excluded.generation),
                   lease_until = CASE WHEN excluded.lease_until IS NULL THEN lease_until
                     ELSE MAX(COALESCE(lease_until, 0), excluded.lease_until) END",
            )?;
            for (pop, tenant, record, _) in fetches {
                let until = record.lease_until.map(|u| i64::try_from(u).unwrap_or(i64::MAX));
                upsert.execute(params![pop.as_str(), tenant.as_str(), sql_gen(record.generation)?, until])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn record_report(&mut self, report: Report) -> Result<i64, StoreError> {
        if self.tenant(&report.tenant).is_none() {
            return Err(Refusal::NotFound(format!("tenant {} does not exist", report.tenant)).into());
        }
        let body = serde_json::to_string(&report)?;
        let kind =
            serde_json::to_value(report.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.conn.execute(
            "INSERT INTO reports (pop, tenant_id, kind, generation, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                report.pop.as_str(),
                report.tenant.as_str(),
                kind,
                sql_gen(report.generation)?,
                body,
                now_ms() as i64
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub(super) fn reports_against(
        &mut self,
        tenant: &TenantId,
        generation: Generation,
        window_ms: u64,
    ) -> Result<Option<domain::ReportedRelease>, StoreError> {
        let release: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT r.id, r.committed_at FROM generations g JOIN releases r ON r.id = g.release_id
                 WHERE g.tenant_id = ?1 AND g.generation = ?2 AND r.kind = ?3
                   AND r.status IN ('committed', 'converged')",
                params![tenant.as_str(), sql_gen(generation)?, ReleaseKind::Release.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, committed_at)) = release else { return Ok(None) };
        let window_end = committed_at.saturating_add(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let mut stmt = self.conn.prepare_cached(
            "SELECT rp.pop, rp.body FROM reports rp JOIN release_tenants rt
               ON rt.tenant_id = rp.tenant_id AND rt.to_generation = rp.generation
             WHERE rt.release_id = ?1 AND rp.received_at BETWEEN ?2 AND ?3",
        )?;
        let rows = stmt.query_map(params![id, committed_at, window_end], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut reports = Vec::new();
        for row in rows {
            let (pop, body) = row?;
            let stored: Report = serde_json::from_str(&body)?;
            reports.push(domain::ReportRow { pop: PopId::new(pop).map_err(corrupt)?, path: stored.path });
        }
        Ok(Some(domain::ReportedRelease {
            id: ReleaseId::new(id).map_err(corrupt)?,
            committed_at: committed_at as u64,
            reports,
        }))
    }

    /// [`crate::store::Store::past_deadline`], from the open releases this process tracks
    /// (one that is no longer `committed` or was superseded leaves the tracking).
    pub(super) fn past_deadline(&mut self, deadline: u64, now: u64) -> Result<Vec<(ReleaseId, u64)>, StoreError> {
        let mut due = Vec::new();
        for (id, trigger_at) in self.open.past_deadline(deadline, now) {
            let standing =
                load_release(&self.conn, &id)?.filter(|r| r.status == ReleaseStatus::Committed).is_some_and(|r| {
                    r.tenants.iter().all(|t| self.tenant(&t.tenant).is_some_and(|s| s.generation == t.to_generation))
                });
            if standing {
                due.push((id, trigger_at));
            } else {
                self.open.remove(&id);
            }
        }
        Ok(due)
    }
}

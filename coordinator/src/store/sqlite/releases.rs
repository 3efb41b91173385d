//! The write path of releases: registering, re-hosting and removing tenants (with the
//! host-map sync), committing a release or a rollback in one `BEGIN IMMEDIATE` transaction
//! (with its outbox effects), and the checks that run inside that transaction. The
//! decisions come from [`crate::domain`], the log text from [`crate::execlog`].

use std::collections::HashMap;
use std::time::Instant;

use edgegen_shared::api::{
    ExecutionLog, NewTenant, Phase, Release, ReleaseRequest, Step, StepStatus, Tenant, TenantChange,
};
use edgegen_shared::{Generation, ReleaseId, TenantId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::load::{live_pops, load_release};
use super::{Writer, corrupt, sql_gen};
use crate::clock::now_ms;
use crate::convergence::OpenRelease;
use crate::domain::{self, Refusal, ReleaseFacts, TenantState};
use crate::execlog::{self, LogBuilder};
use crate::outbox::EffectKind;
use crate::store::{Commit, Committed, PurgePlan, Removal, StoreError, StoreSettings, release_id};

impl Writer {
    pub(super) fn register_tenant(&mut self, t: NewTenant) -> Result<Tenant, StoreError> {
        domain::check_new_tenant(&t)?;
        let now = now_ms() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed: Option<Option<i64>> =
            tx.query_row("SELECT removed_at FROM tenants WHERE id = ?1", [t.id.as_str()], |r| r.get(0)).optional()?;
        match removed {
            Some(Some(_)) => return Err(domain::id_of_removed_tenant(&t.id).into()),
            Some(None) => return Err(Refusal::Conflict(format!("tenant {} is already registered", t.id)).into()),
            None => {}
        }
        claim_hosts(&tx, &self.settings, &t.id, &t.hosts, now)?;
        let hosts = serde_json::to_string(&t.hosts)?;
        let schema_doc = t.contract_schema.as_ref().map(|v| v.to_string());
        tx.execute(
            "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, contract_schema, release_id, created_at, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?5, NULL, ?6, ?6)",
            params![t.id.as_str(), hosts, t.schema_version.to_string(), t.contract_hash.to_string(), schema_doc, now],
        )?;
        write_hosts(&tx, &t.id, &t.hosts)?;
        tx.execute(
            "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
             VALUES (?1, 1, ?2, ?3, NULL, ?4)",
            params![t.id.as_str(), t.schema_version.to_string(), t.contract_hash.to_string(), now],
        )?;
        tx.commit()?;
        let state = TenantState {
            id: t.id.clone(),
            hosts: t.hosts.clone(),
            generation: Generation::FIRST,
            schema_version: t.schema_version,
            contract_hash: t.contract_hash,
            release_id: None,
        };
        self.publish([state]);
        self.wake_host_sync();
        Ok(Tenant {
            id: t.id,
            hosts: t.hosts,
            generation: Generation::FIRST,
            schema_version: t.schema_version,
            contract_hash: t.contract_hash,
        })
    }

    pub(super) fn set_tenant_hosts(&mut self, id: &TenantId, hosts: Vec<String>) -> Result<Tenant, StoreError> {
        domain::check_hosts(&hosts)?;
        let mut state = self.tenant(id).ok_or_else(|| domain::unknown_tenant(id))?;
        if state.hosts == hosts {
            return Ok(state.view());
        }
        let now = now_ms() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        claim_hosts(&tx, &self.settings, id, &hosts, now)?;
        write_hosts(&tx, id, &hosts)?;
        tx.execute(
            "UPDATE tenants SET hosts = ?1, updated_at = ?2 WHERE id = ?3",
            params![serde_json::to_string(&hosts)?, now, id.as_str()],
        )?;
        tx.commit()?;
        state.hosts = hosts;
        self.publish([state.clone()]);
        self.wake_host_sync();
        Ok(state.view())
    }

    pub(super) fn remove_tenant(&mut self, id: &TenantId) -> Result<Removal, StoreError> {
        let now = now_ms() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT t.removed_at, r.id FROM tenants t
                   LEFT JOIN releases r ON r.id = t.release_id AND r.status = 'committed'
                 WHERE t.id = ?1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let converging = match row {
            None => return Err(domain::unknown_tenant(id).into()),
            Some((Some(_), _)) => return Ok(Removal::AlreadyRemoved),
            Some((None, converging)) => converging,
        };
        domain::check_removal(id, converging.as_deref())?;
        tx.execute("DELETE FROM tenant_hosts WHERE tenant_id = ?1", [id.as_str()])?;
        tx.execute("UPDATE tenants SET removed_at = ?1, updated_at = ?1 WHERE id = ?2", params![now, id.as_str()])?;
        if self.settings.hosts_max_entries.is_some() {
            super::outbox::enqueue(&tx, None, &EffectKind::SyncHosts, now as u64)?;
        }
        tx.commit()?;
        self.tenants.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.wake_host_sync();
        Ok(Removal::Removed)
    }

    /// After a tenant change is committed and published (the worker's sync reads the
    /// tenants from memory): wakes the outbox worker when the change wrote a host sync.
    fn wake_host_sync(&self) {
        if self.settings.hosts_max_entries.is_some()
            && let Some(wake) = &self.settings.outbox_wake
        {
            wake.notify_one();
        }
    }

    pub(super) fn commit_release(
        &mut self,
        req: ReleaseRequest,
        key: Option<String>,
        analysis: Vec<Step>,
        purge: PurgePlan,
    ) -> Result<Committed, StoreError> {
        let started = Instant::now();
        let request_hash = domain::request_hash(&req).map_err(StoreError::internal)?;
        if let Some(key) = &key {
            let prior: Option<(String, Option<String>)> = self
                .conn
                .query_row("SELECT id, request_hash FROM releases WHERE idempotency_key = ?1", [key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some((id, hash)) = prior {
                if hash.as_deref() != Some(request_hash.as_str()) {
                    return Err(Refusal::Conflict(format!(
                        "Idempotency-Key {key:?} was already used for a different request (release {id})"
                    ))
                    .into());
                }
                let id = ReleaseId::new(id).map_err(corrupt)?;
                let release = load_release(&self.conn, &id)?
                    .ok_or_else(|| StoreError::internal("idempotent release vanished"))?;
                return Ok(Committed { release, replayed: true });
            }
        }

        let now = now_ms();
        let changes = domain::plan_release(&req, |id| self.tenant(id))?;
        let log = execlog::release_log(&req, &analysis, &changes, now)?;
        let seq = self.next_seq()?;
        let id = release_id(seq)?;
        let commit = Commit::release(&id, seq, &changes, purge(&changes), key.as_deref(), &request_hash);
        self.apply(commit, log, now, started)?;
        self.metrics.release(false, false);
        let release =
            load_release(&self.conn, &id)?.ok_or_else(|| StoreError::internal("committed release vanished"))?;
        Ok(Committed { release, replayed: false })
    }

    fn next_seq(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM releases", [], |r| r.get(0))?)
    }

    /// Writes a release (or rollback), its tenant changes and its outbox effects in one
    /// transaction, then publishes the new generations to the manifest path at once.
    fn apply(&mut self, c: Commit<'_>, log: LogBuilder, now: u64, started: Instant) -> Result<(), StoreError> {
        let Commit { id, seq, kind, rollback_of, changes, purge_keys, key, request_hash, trigger_at: _ } = c;
        let commit_started = Instant::now();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE tenants SET generation = ?1, schema_version = ?2, contract_hash = ?3, release_id = ?4, updated_at = ?5
                 WHERE id = ?6 AND generation = ?7",
            )?;
            let mut history = tx.prepare_cached(
                "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut member = tx.prepare_cached(
                "INSERT INTO release_tenants (release_id, tenant_id, position, from_generation, to_generation,
                   from_schema_version, to_schema_version, from_contract_hash, to_contract_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            tx.execute(
                "INSERT INTO releases (seq, id, kind, idempotency_key, request_hash, rollback_of, status, committed_at, execution_log)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'committed', ?7, '{}')",
                params![
                    seq,
                    id.as_str(),
                    kind.as_str(),
                    key,
                    request_hash,
                    rollback_of.map(ReleaseId::as_str),
                    now as i64
                ],
            )?;
            for (position, c) in changes.iter().enumerate() {
                let (from, to) = (sql_gen(c.from_generation)?, sql_gen(c.to_generation)?);
                let (schema, contract) = (c.to_schema_version.to_string(), c.to_contract_hash.to_string());
                let moved =
                    update.execute(params![to, schema, contract, id.as_str(), now as i64, c.tenant.as_str(), from])?;
                if moved != 1 {
                    return Err(Refusal::Conflict(format!(
                        "tenant {} changed during the release (it left generation {}); nothing moved, retry the release",
                        c.tenant, c.from_generation
                    ))
                    .into());
                }
                history.execute(params![c.tenant.as_str(), to, schema, contract, id.as_str(), now as i64])?;
                member.execute(params![
                    id.as_str(),
                    c.tenant.as_str(),
                    position as i64,
                    from,
                    to,
                    c.from_schema_version.to_string(),
                    schema,
                    c.from_contract_hash.to_string(),
                    contract
                ])?;
            }
            if let Some(original) = rollback_of {
                tx.execute(
                    "UPDATE releases SET status = 'rolled_back', rolled_back_by = ?1 WHERE id = ?2",
                    params![id.as_str(), original.as_str()],
                )?;
            }
        }
        // Checked inside the transaction, logged last (the phase order of the execution log).
        let verification =
            if rollback_of.is_some() { verify_rollback(&tx, changes)? } else { verify_rollback_path(&tx, changes)? };
        let live = live_pops(&tx, now, self.settings.pop_live_window_ms)?;
        let service = self.settings.cdn_service.clone();
        if service.is_some() {
            super::outbox::enqueue(&tx, Some(id), &EffectKind::CdnPurge { keys: purge_keys.clone() }, now)?;
        }
        let tail = execlog::CommitTail {
            kind,
            tenants: changes.len(),
            manifest_max_age_ms: self.settings.manifest_max_age_ms,
            cdn_service: service.as_deref(),
            purge_keys: purge_keys.len(),
            live_pops: live.len(),
            verification,
        };
        let mut execution_log = execlog::finish_commit(log, tail, id, commit_started, started);
        let log_json = serde_json::to_string(&execution_log)?;
        tx.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![log_json, id.as_str()])?;
        tx.commit()?;

        // Durable: publish to the manifest path at once (nothing fallible before this), and
        // track convergence.
        let states: Vec<TenantState> = changes
            .iter()
            .filter_map(|c| {
                self.tenant(&c.tenant).map(|s| TenantState {
                    generation: c.to_generation,
                    schema_version: c.to_schema_version,
                    contract_hash: c.to_contract_hash,
                    release_id: Some(id.clone()),
                    ..s
                })
            })
            .collect();
        self.publish(states);
        if let Some(original) = rollback_of {
            self.open.remove(original);
        }
        let targets = changes.iter().map(|c| (c.tenant.clone(), c.to_generation)).collect();
        self.open.insert(
            id.clone(),
            OpenRelease { committed_at: now, rollback: rollback_of.is_some(), targets, acked: HashMap::new() },
        );
        if service.is_some()
            && let Some(wake) = &self.settings.outbox_wake
        {
            wake.notify_one();
        }

        // The commit step's figure must include the durable commit (the fsync), which only
        // ends after the log was written: record it again now. This is a refinement of a
        // figure already stored: if it fails, the release stands and only the log keeps the
        // figure measured before COMMIT.
        let commit_ms = commit_started.elapsed().as_secs_f64() * 1000.0;
        if let Some(step) = execution_log.steps.iter_mut().find(|s| s.step == execlog::COMMIT_STEP) {
            step.duration_ms = commit_ms;
        }
        execution_log.summary.insert("duration_ms".into(), (started.elapsed().as_secs_f64() * 1000.0).into());
        let refined = serde_json::to_string(&execution_log).map_err(StoreError::from).and_then(|json| {
            self.without_fsync(|conn| {
                conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![json, id.as_str()])
                    .map(drop)
                    .map_err(StoreError::from)
            })
        });
        if let Err(e) = refined {
            tracing::warn!(release = %id, cause = %e.chain(), "could not refine the commit figure (release stands)");
        }
        Ok(())
    }

    /// Rolls `id` back. `trigger_at` (Unix ms) is when an automatic rollback's cause arose:
    /// the time from it to the durable commit is recorded in the rollback's log summary.
    pub(super) fn rollback(
        &mut self,
        id: &ReleaseId,
        reason: &str,
        automatic: bool,
        trigger_at: Option<u64>,
    ) -> Result<Release, StoreError> {
        let started = Instant::now();
        let original =
            load_release(&self.conn, id)?.ok_or_else(|| Refusal::NotFound(format!("release {id} does not exist")))?;
        let facts = ReleaseFacts {
            id: original.id.clone(),
            kind: original.kind,
            rolled_back_by: original.rolled_back_by.clone(),
            changes: original.tenants.clone(),
        };
        let changes = domain::plan_rollback(&facts, |t| self.tenant(t))?;
        let now = now_ms();
        let log = execlog::rollback_log(id, reason, &changes, now);
        let seq = self.next_seq()?;
        let rollback_id = release_id(seq)?;
        let commit = Commit::rollback(&rollback_id, seq, id, &changes, trigger_at);
        self.apply(commit, log, now, started)?;
        self.metrics.release(true, automatic);
        // Durable from here on: what follows only annotates logs.
        if let Some(trigger) = trigger_at {
            let trigger_to_commit = now_ms().saturating_sub(trigger);
            self.annotate(&rollback_id, |log| {
                log.summary.insert("trigger_to_rollback_commit_ms".into(), trigger_to_commit.into());
            });
            tracing::warn!(release = %id, trigger_to_commit_ms = trigger_to_commit, "automatic rollback committed");
        }
        let why = format!("superseded by rollback {rollback_id}");
        self.annotate(id, |log| {
            execlog::close_ack_wait(log, &why);
        });
        tracing::info!(release = %id, rollback = %rollback_id, automatic, reason, "rolled back");
        load_release(&self.conn, &rollback_id)?.ok_or_else(|| StoreError::internal("committed rollback vanished"))
    }

    /// Rewrites a committed release's stored log with `edit`. Best effort: the release is
    /// durable already, so a failure here is logged, never reported as the release failing.
    /// Written without its own fsync ([`Self::without_fsync`]).
    pub(super) fn annotate(&mut self, id: &ReleaseId, edit: impl FnOnce(&mut ExecutionLog)) {
        let result = self.without_fsync(|conn| {
            let log: String =
                conn.query_row("SELECT execution_log FROM releases WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
            let mut log: ExecutionLog = serde_json::from_str(&log)?;
            edit(&mut log);
            let json = serde_json::to_string(&log)?;
            conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![json, id.as_str()])?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(release = %id, cause = %e.chain(), "could not annotate the execution log");
        }
    }

    /// Runs `write` (an annotation of data already durable) on the writer's second
    /// connection, whose WAL commits do not wait for their own fsync (`synchronous =
    /// NORMAL`). What this trades: after a power loss (not a process crash: the page cache
    /// keeps it) the annotation can be lost until the next `FULL` commit, whose WAL fsync
    /// also covers every frame before it — the annotated release itself was made durable by
    /// its own commit. What it buys: the writer thread, which the outbox's `DueEffects` read
    /// and every ack batch queue behind, is not held for a second fsync after each commit.
    pub(super) fn without_fsync<T>(
        &mut self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        write(&self.annotations)
    }
}

/// Reads back every tenant a rollback moved, inside its transaction, and checks it now
/// carries the pre-release schema version and contract hash under the new generation.
fn verify_rollback(tx: &Connection, changes: &[TenantChange]) -> Result<Step, StoreError> {
    let t = Instant::now();
    let mut stmt = tx.prepare_cached("SELECT generation, schema_version, contract_hash FROM tenants WHERE id = ?1")?;
    for c in changes {
        let (generation, schema, contract): (i64, String, String) =
            stmt.query_row([c.tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if generation as u64 != c.to_generation.0
            || schema != c.to_schema_version.to_string()
            || contract != c.to_contract_hash.to_string()
        {
            return Err(StoreError::internal(format!("rollback verification failed for tenant {}", c.tenant)));
        }
    }
    let example = changes.first().map_or(String::new(), |c| {
        format!(" (e.g. {}: generation {} carries schema {})", c.tenant, c.to_generation, c.to_schema_version)
    });
    Ok(step(
        "verify rollback",
        format!(
            "read back {} tenant(s): each carries its pre-release schema version and contract hash under a new \
             generation{example}",
            changes.len()
        ),
        t,
    ))
}

/// Checks, inside a release's transaction, that the state each tenant leaves is recorded in
/// the generation history, so the release can be rolled back.
fn verify_rollback_path(tx: &Connection, changes: &[TenantChange]) -> Result<Step, StoreError> {
    let t = Instant::now();
    let mut stmt = tx.prepare_cached(
        "SELECT schema_version, contract_hash FROM generations WHERE tenant_id = ?1 AND generation = ?2",
    )?;
    for c in changes {
        let recorded: Option<(String, String)> = stmt
            .query_row(params![c.tenant.as_str(), sql_gen(c.from_generation)?], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let expected = (c.from_schema_version.to_string(), c.from_contract_hash.to_string());
        if recorded.as_ref() != Some(&expected) {
            return Err(StoreError::internal(format!(
                "generation history of tenant {} lacks generation {}: a rollback would be impossible",
                c.tenant, c.from_generation
            )));
        }
    }
    Ok(step(
        "verify rollback path",
        format!(
            "pre-release state of {} tenant(s) is recorded in the generation history; a rollback can restore it",
            changes.len()
        ),
        t,
    ))
}

fn step(name: &str, detail: String, started: Instant) -> Step {
    execlog::step(name, Phase::RollbackVerification, StepStatus::Ok, detail, started)
}

/// Checks, inside a tenant change's transaction, that no other tenant holds one of `hosts`
/// (refused naming the host and its owner); when the coordinator owns the host map, that
/// the store stays within its entry limit, and writes the sync effect.
fn claim_hosts(
    tx: &Connection,
    settings: &StoreSettings,
    tenant: &TenantId,
    hosts: &[String],
    now: i64,
) -> Result<(), StoreError> {
    let mut owner_of = tx.prepare_cached("SELECT tenant_id FROM tenant_hosts WHERE host = ?1 AND tenant_id <> ?2")?;
    for (i, host) in hosts.iter().enumerate() {
        let owner: Option<String> = owner_of.query_row([host, tenant.as_str()], |r| r.get(0)).optional()?;
        if let Some(owner) = owner {
            return Err(domain::host_taken(i, host, &owner).into());
        }
    }
    if let Some(max) = settings.hosts_max_entries {
        let others: i64 =
            tx.query_row("SELECT COUNT(*) FROM tenant_hosts WHERE tenant_id <> ?1", [tenant.as_str()], |r| r.get(0))?;
        crate::hostmap::check_entries(others as usize, hosts.len(), max).map_err(Refusal::Unprocessable)?;
        super::outbox::enqueue(tx, None, &EffectKind::SyncHosts, now as u64)?;
    }
    Ok(())
}

/// Makes `tenant_hosts` hold exactly `hosts` for `tenant`.
fn write_hosts(tx: &Connection, tenant: &TenantId, hosts: &[String]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM tenant_hosts WHERE tenant_id = ?1", [tenant.as_str()])?;
    for host in hosts {
        tx.execute("INSERT INTO tenant_hosts (host, tenant_id) VALUES (?1, ?2)", params![host, tenant.as_str()])?;
    }
    Ok(())
}

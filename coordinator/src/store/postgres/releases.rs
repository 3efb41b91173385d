//! The write path of releases on PostgreSQL: registering, re-hosting and removing tenants, committing a release or a
//! rollback in one transaction (tenant rows locked in id order, one statement per table over
//! `unnest`ed columns, the outbox row), and the history check inside it.

use std::time::Instant;

use edgegen_shared::api::{NewTenant, Phase, Release, ReleaseRequest, Step, StepStatus, Tenant, TenantChange};
use edgegen_shared::{Generation, ReleaseId, TenantId};
use postgres::{Client, GenericClient};

use super::{
    Inner, corrupt, edit_log, is_unique_violation, live_pops, load_release, lock_tenants, sql_gen, tenant_cache,
};
use crate::clock::now_ms;
use crate::domain::{self, Refusal, ReleaseFacts};
use crate::execlog::{self, LogBuilder};
use crate::outbox::EffectKind;
use crate::store::{Commit, Committed, PurgePlan, Removal, StoreError, StoreSettings, release_id};

/// Key of the transaction-level advisory lock that serializes tenant changes (registering,
/// changing hosts, removing) when the coordinator owns the host map, so two replicas cannot both pass the entry-limit check.
const HOST_MAP_LOCK: i64 = 0x6564_6765_686f_7374; // "edgehost"

pub(super) fn register_tenant(c: &mut Client, settings: &StoreSettings, t: NewTenant) -> Result<Tenant, StoreError> {
    domain::check_new_tenant(&t)?;
    let now = now_ms() as i64;
    let mut tx = c.transaction()?;
    if settings.hosts_max_entries.is_some() {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HOST_MAP_LOCK])?;
    }
    if let Some(row) = tx.query_opt("SELECT removed_at FROM tenants WHERE id = $1", &[&t.id.as_str()])? {
        return Err(match row.get::<_, Option<i64>>(0) {
            Some(_) => domain::id_of_removed_tenant(&t.id),
            None => Refusal::Conflict(format!("tenant {} is already registered", t.id)),
        }
        .into());
    }
    claim_hosts(&mut tx, settings, &t.id, &t.hosts, now)?;
    let hosts = serde_json::to_string(&t.hosts)?;
    let schema_doc = t.contract_schema.as_ref().map(|v| v.to_string());
    let (schema, contract) = (t.schema_version.to_string(), t.contract_hash.to_string());
    let written = (|| -> Result<i64, postgres::Error> {
        tx.execute(
            "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, contract_schema, release_id,
               created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $5, NULL, $6, $6)",
            &[&t.id.as_str(), &hosts, &schema, &contract, &schema_doc, &now],
        )?;
        write_hosts(&mut tx, &t.id, &t.hosts)?;
        tx.execute(
            "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
             VALUES ($1, 1, $2, $3, NULL, $4)",
            &[&t.id.as_str(), &schema, &contract, &now],
        )?;
        // The new row first, then the epoch row (the order every tenant write takes).
        let epoch = super::bump_epoch(&mut tx)?;
        tx.execute("UPDATE tenants SET epoch = $1 WHERE id = $2", &[&epoch, &t.id.as_str()])?;
        Ok(epoch)
    })();
    let epoch = match written {
        // Another replica registered the same id or host between our checks and inserts.
        Err(e) if is_unique_violation(&e) => {
            return Err(
                Refusal::Conflict(format!("tenant {} or one of its hosts was registered concurrently", t.id)).into()
            );
        }
        other => other?,
    };
    tx.commit()?;
    tenant_cache::fence(c, epoch)?;
    wake_host_sync(settings);
    Ok(Tenant {
        id: t.id,
        hosts: t.hosts,
        generation: Generation::FIRST,
        schema_version: t.schema_version,
        contract_hash: t.contract_hash,
    })
}

pub(super) fn set_tenant_hosts(
    c: &mut Client,
    settings: &StoreSettings,
    id: &TenantId,
    hosts: Vec<String>,
) -> Result<Tenant, StoreError> {
    domain::check_hosts(&hosts)?;
    let now = now_ms() as i64;
    let mut tx = c.transaction()?;
    if settings.hosts_max_entries.is_some() {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HOST_MAP_LOCK])?;
    }
    let mut state =
        lock_tenants(&mut tx, std::slice::from_ref(id))?.remove(id).ok_or_else(|| domain::unknown_tenant(id))?;
    if state.hosts == hosts {
        // Already in place — perhaps by a change still being fenced: fence it too.
        tx.rollback()?;
        tenant_cache::fence_current(c)?;
        return Ok(state.view());
    }
    claim_hosts(&mut tx, settings, id, &hosts, now)?;
    let json = serde_json::to_string(&hosts)?;
    let written = (|| -> Result<i64, postgres::Error> {
        write_hosts(&mut tx, id, &hosts)?;
        // The row is locked (above), then the epoch row: the order every tenant write takes.
        let epoch = super::bump_epoch(&mut tx)?;
        tx.execute(
            "UPDATE tenants SET hosts = $1, updated_at = $2, epoch = $3 WHERE id = $4",
            &[&json, &now, &epoch, &id.as_str()],
        )?;
        Ok(epoch)
    })();
    let epoch = match written {
        // Another replica gave one of these hosts to another tenant between our check and insert.
        Err(e) if is_unique_violation(&e) => {
            return Err(Refusal::Conflict(format!("tenant {id}: one of its hosts was registered concurrently")).into());
        }
        other => other?,
    };
    tx.commit()?;
    tenant_cache::fence(c, epoch)?;
    wake_host_sync(settings);
    state.hosts = hosts;
    Ok(state.view())
}

pub(super) fn remove_tenant(c: &mut Client, settings: &StoreSettings, id: &TenantId) -> Result<Removal, StoreError> {
    let now = now_ms() as i64;
    let mut tx = c.transaction()?;
    if settings.hosts_max_entries.is_some() {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HOST_MAP_LOCK])?;
    }
    // The row lock orders the removal with a release of the tenant (which locks it too).
    let Some(row) = tx.query_opt("SELECT removed_at FROM tenants WHERE id = $1 FOR UPDATE", &[&id.as_str()])? else {
        return Err(domain::unknown_tenant(id).into());
    };
    if row.get::<_, Option<i64>>(0).is_some() {
        // Already removed — perhaps by a removal still being fenced: fence it too.
        tx.rollback()?;
        tenant_cache::fence_current(c)?;
        return Ok(Removal::AlreadyRemoved);
    }
    // A statement of its own, so its snapshot is taken after the lock was granted: it sees
    // a release that committed while this transaction waited for the lock (the locking
    // statement's own snapshot predates that release).
    let converging = tx.query_opt(
        "SELECT r.id FROM tenants t JOIN releases r ON r.id = t.release_id
          WHERE t.id = $1 AND r.status = 'committed'",
        &[&id.as_str()],
    )?;
    domain::check_removal(id, converging.as_ref().map(|r| r.get::<_, &str>(0)))?;
    tx.execute("DELETE FROM tenant_hosts WHERE tenant_id = $1", &[&id.as_str()])?;
    // Stamped like any tenant write, so every replica's manifest cache drops the tenant.
    let epoch = super::bump_epoch(&mut tx)?;
    tx.execute(
        "UPDATE tenants SET removed_at = $1, updated_at = $1, epoch = $2 WHERE id = $3",
        &[&now, &epoch, &id.as_str()],
    )?;
    if settings.hosts_max_entries.is_some() {
        enqueue_host_sync(&mut tx, now)?;
    }
    tx.commit()?;
    tenant_cache::fence(c, epoch)?;
    wake_host_sync(settings);
    Ok(Removal::Removed)
}

/// Checks, inside a tenant change's transaction, that no other tenant holds one of `hosts`
/// (refused naming the host and its owner); when the coordinator owns the host map (the
/// caller holds [`HOST_MAP_LOCK`]), that the store stays within its entry limit, and
/// writes the sync effect.
fn claim_hosts(
    tx: &mut impl GenericClient,
    settings: &StoreSettings,
    tenant: &TenantId,
    hosts: &[String],
    now: i64,
) -> Result<(), StoreError> {
    for (i, host) in hosts.iter().enumerate() {
        let sql = "SELECT tenant_id FROM tenant_hosts WHERE host = $1 AND tenant_id <> $2";
        if let Some(owner) = tx.query_opt(sql, &[host, &tenant.as_str()])? {
            return Err(domain::host_taken(i, host, owner.get(0)).into());
        }
    }
    if let Some(max) = settings.hosts_max_entries {
        let others: i64 =
            tx.query_one("SELECT COUNT(*) FROM tenant_hosts WHERE tenant_id <> $1", &[&tenant.as_str()])?.get(0);
        crate::hostmap::check_entries(others as usize, hosts.len(), max).map_err(Refusal::Unprocessable)?;
        enqueue_host_sync(tx, now)?;
    }
    Ok(())
}

/// Writes the host-map sync effect (no release) to the outbox.
fn enqueue_host_sync(tx: &mut impl GenericClient, now: i64) -> Result<(), StoreError> {
    let effect = serde_json::to_string(&EffectKind::SyncHosts)?;
    tx.execute(
        "INSERT INTO outbox (release_id, effect, attempts, next_attempt_at) VALUES (NULL, $1, 0, $2)",
        &[&effect, &now],
    )?;
    Ok(())
}

/// Makes `tenant_hosts` hold exactly `hosts` for `tenant`.
fn write_hosts(tx: &mut impl GenericClient, tenant: &TenantId, hosts: &[String]) -> Result<(), postgres::Error> {
    tx.execute("DELETE FROM tenant_hosts WHERE tenant_id = $1", &[&tenant.as_str()])?;
    for host in hosts {
        tx.execute("INSERT INTO tenant_hosts (host, tenant_id) VALUES ($1, $2)", &[host, &tenant.as_str()])?;
    }
    Ok(())
}

/// After a committed tenant change: wakes the outbox worker when it wrote a host sync.
fn wake_host_sync(settings: &StoreSettings) {
    if settings.hosts_max_entries.is_some()
        && let Some(wake) = &settings.outbox_wake
    {
        wake.notify_one();
    }
}

impl Inner {
    fn replay(&self, c: &mut Client, key: &str, request_hash: &str) -> Result<Option<Committed>, StoreError> {
        let Some(row) = c.query_opt("SELECT id, request_hash FROM releases WHERE idempotency_key = $1", &[&key])?
        else {
            return Ok(None);
        };
        let (id, hash): (String, Option<String>) = (row.get(0), row.get(1));
        if hash.as_deref() != Some(request_hash) {
            return Err(Refusal::Conflict(format!(
                "Idempotency-Key {key:?} was already used for a different request (release {id})"
            ))
            .into());
        }
        let id = ReleaseId::new(id).map_err(corrupt)?;
        // The original may have committed through another replica a moment ago, not yet
        // confirmed by every replica's cache: fence what has committed so far.
        tenant_cache::fence_current(c)?;
        let release = load_release(c, &id)?.ok_or_else(|| StoreError::internal("idempotent release vanished"))?;
        Ok(Some(Committed { release, replayed: true }))
    }

    pub(super) fn commit_release(
        &self,
        c: &mut Client,
        req: ReleaseRequest,
        key: Option<String>,
        analysis: Vec<Step>,
        purge: PurgePlan,
    ) -> Result<Committed, StoreError> {
        let started = Instant::now();
        let request_hash = domain::request_hash(&req).map_err(StoreError::internal)?;
        if let Some(key) = &key
            && let Some(replayed) = self.replay(c, key, &request_hash)?
        {
            return Ok(replayed);
        }
        let now = now_ms();
        let mut tx = c.transaction()?;
        let current = lock_tenants(&mut tx, &req.tenants)?;
        let changes = domain::plan_release(&req, |id| current.get(id).cloned())?;
        let log = execlog::release_log(&req, &analysis, &changes, now)?;
        let seq: i64 = tx.query_one("SELECT nextval('release_seq')", &[])?.get(0);
        let id = release_id(seq)?;
        let commit = Commit::release(&id, seq, &changes, purge(&changes), key.as_deref(), &request_hash);
        match self.apply(tx, commit, log, now, started) {
            Ok(epoch) => tenant_cache::fence(c, epoch)?,
            // The same key committed concurrently through another replica: replay it.
            Err(ApplyError::Unique(e)) => {
                let replayed = match &key {
                    Some(key) => self.replay(c, key, &request_hash)?,
                    None => None,
                };
                return replayed.ok_or_else(|| e.into());
            }
            Err(ApplyError::Store(e)) => return Err(e),
        }
        self.metrics.release(false, false);
        let release = load_release(c, &id)?.ok_or_else(|| StoreError::internal("committed release vanished"))?;
        Ok(Committed { release, replayed: false })
    }

    /// Writes a release (or rollback), its tenant changes and its outbox effects in `tx`
    /// and commits; returns the epoch to [`tenant_cache::fence`] before acknowledging it.
    fn apply(
        &self,
        mut tx: postgres::Transaction<'_>,
        c: Commit<'_>,
        log: LogBuilder,
        now: u64,
        started: Instant,
    ) -> Result<i64, ApplyError> {
        let Commit { id, seq, kind, rollback_of, changes, purge_keys, key, request_hash, trigger_at } = c;
        let commit_started = Instant::now();
        let now_i = now as i64;
        let inserted = tx.execute(
            "INSERT INTO releases (seq, id, kind, idempotency_key, request_hash, rollback_of, status, committed_at,
               execution_log) VALUES ($1, $2, $3, $4, $5, $6, 'committed', $7, '{}')",
            &[&seq, &id.as_str(), &kind.as_str(), &key, &request_hash, &rollback_of.map(ReleaseId::as_str), &now_i],
        );
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(ApplyError::Unique(e)),
            other => other.map_err(StoreError::from)?,
        };
        // One statement per table for all tenants (arrays unnested server-side): the
        // round trips of a 1,000-tenant release stay constant.
        let cols = Columns::of(changes)?;
        // The tenants' rows are locked already (`lock_tenants`): the epoch row comes second
        // in every transaction, so the two locks never deadlock.
        let epoch = super::bump_epoch(&mut tx).map_err(StoreError::from)?;
        let moved = tx
            .query(
                "UPDATE tenants t SET generation = u.to_gen, schema_version = u.schema, contract_hash = u.contract,
                   release_id = $1, updated_at = $2, epoch = $8
                 FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[])
                   AS u(id, from_gen, to_gen, schema, contract)
                 WHERE t.id = u.id AND t.generation = u.from_gen RETURNING t.id",
                &[
                    &id.as_str(),
                    &now_i,
                    &cols.tenants,
                    &cols.from,
                    &cols.to,
                    &cols.to_schema,
                    &cols.to_contract,
                    &epoch,
                ],
            )
            .map_err(StoreError::from)?;
        if moved.len() != changes.len() {
            let moved: std::collections::HashSet<String> = moved.iter().map(|r| r.get(0)).collect();
            let ch = changes.iter().find(|ch| !moved.contains(ch.tenant.as_str())).unwrap_or(&changes[0]);
            return Err(StoreError::from(Refusal::Conflict(format!(
                "tenant {} changed during the release (it left generation {}); nothing moved, retry the release",
                ch.tenant, ch.from_generation
            )))
            .into());
        }
        tx.execute(
            "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
             SELECT u.id, u.to_gen, u.schema, u.contract, $1, $2
             FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[]) AS u(id, to_gen, schema, contract)",
            &[&id.as_str(), &now_i, &cols.tenants, &cols.to, &cols.to_schema, &cols.to_contract],
        )
        .map_err(StoreError::from)?;
        tx.execute(
            "INSERT INTO release_tenants (release_id, tenant_id, position, from_generation, to_generation,
               from_schema_version, to_schema_version, from_contract_hash, to_contract_hash)
             SELECT $1, u.id, u.pos, u.from_gen, u.to_gen, u.from_schema, u.to_schema, u.from_contract, u.to_contract
             FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[],
               $9::text[]) AS u(id, pos, from_gen, to_gen, from_schema, to_schema, from_contract, to_contract)",
            &[
                &id.as_str(),
                &cols.tenants,
                &cols.positions,
                &cols.from,
                &cols.to,
                &cols.from_schema,
                &cols.to_schema,
                &cols.from_contract,
                &cols.to_contract,
            ],
        )
        .map_err(StoreError::from)?;
        if let Some(original) = rollback_of {
            tx.execute(
                "UPDATE releases SET status = 'rolled_back', rolled_back_by = $1 WHERE id = $2",
                &[&id.as_str(), &original.as_str()],
            )
            .map_err(StoreError::from)?;
        }
        let verification = verify_history(&mut tx, changes, rollback_of.is_some())?;
        let live = live_pops(&mut tx, now, self.settings.pop_live_window_ms)?;
        let service = self.settings.cdn_service.as_deref();
        if service.is_some() {
            let effect =
                serde_json::to_string(&EffectKind::CdnPurge { keys: purge_keys.clone() }).map_err(StoreError::from)?;
            tx.execute(
                "INSERT INTO outbox (release_id, effect, attempts, next_attempt_at) VALUES ($1, $2, 0, $3)",
                &[&id.as_str(), &effect, &now_i],
            )
            .map_err(StoreError::from)?;
        }
        let tail = execlog::CommitTail {
            kind,
            tenants: changes.len(),
            manifest_max_age_ms: self.settings.manifest_max_age_ms,
            cdn_service: service,
            purge_keys: purge_keys.len(),
            live_pops: live.len(),
            verification,
        };
        let mut execution_log = execlog::finish_commit(log, tail, id, commit_started, started);
        if let Some(trigger) = trigger_at {
            // Written with the rollback, so no reader sees the rollback without it: measured
            // up to the COMMIT statement.
            let ms = now_ms().saturating_sub(trigger);
            execution_log.summary.insert("trigger_to_rollback_commit_ms".into(), ms.into());
        }
        let json = serde_json::to_string(&execution_log).map_err(StoreError::from)?;
        tx.execute("UPDATE releases SET execution_log = $1 WHERE id = $2", &[&json, &id.as_str()])
            .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        if service.is_some()
            && let Some(wake) = &self.settings.outbox_wake
        {
            wake.notify_one();
        }
        Ok(epoch)
    }

    pub(super) fn rollback(
        &self,
        c: &mut Client,
        id: &ReleaseId,
        reason: &str,
        automatic: bool,
        trigger_at: Option<u64>,
    ) -> Result<Release, StoreError> {
        let started = Instant::now();
        let mut tx = c.transaction()?;
        let original =
            load_release(&mut tx, id)?.ok_or_else(|| Refusal::NotFound(format!("release {id} does not exist")))?;
        let tenants: Vec<TenantId> = original.tenants.iter().map(|ch| ch.tenant.clone()).collect();
        let current = lock_tenants(&mut tx, &tenants)?;
        // Read again under the tenants' locks: another replica may have just rolled it back.
        let rolled_back_by: Option<String> =
            tx.query_one("SELECT rolled_back_by FROM releases WHERE id = $1", &[&id.as_str()])?.get(0);
        let facts = ReleaseFacts {
            id: original.id.clone(),
            kind: original.kind,
            rolled_back_by: rolled_back_by.map(ReleaseId::new).transpose().map_err(corrupt)?,
            changes: original.tenants.clone(),
        };
        let changes = domain::plan_rollback(&facts, |t| current.get(t).cloned())?;
        let now = now_ms();
        let log = execlog::rollback_log(id, reason, &changes, now);
        let seq: i64 = tx.query_one("SELECT nextval('release_seq')", &[])?.get(0);
        let rollback_id = release_id(seq)?;
        let commit = Commit::rollback(&rollback_id, seq, id, &changes, trigger_at);
        let epoch = self.apply(tx, commit, log, now, started).map_err(ApplyError::into_store)?;
        tenant_cache::fence(c, epoch)?;
        self.metrics.release(true, automatic);
        // Durable from here on: what follows only annotates logs (best effort).
        let why = format!("superseded by rollback {rollback_id}");
        let annotated = (|| -> Result<(), StoreError> {
            let mut tx = c.transaction()?;
            edit_log(&mut tx, id.as_str(), |log| {
                execlog::close_ack_wait(log, &why);
            })?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = annotated {
            tracing::warn!(release = %id, cause = %e.chain(), "could not annotate the execution logs");
        }
        tracing::info!(release = %id, rollback = %rollback_id, automatic, reason, "rolled back");
        load_release(c, &rollback_id)?.ok_or_else(|| StoreError::internal("committed rollback vanished"))
    }
}

/// A failure of [`Inner::apply`]: a unique violation (a concurrent duplicate) is told apart.
enum ApplyError {
    Unique(postgres::Error),
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Store(e)
    }
}

impl ApplyError {
    fn into_store(self) -> StoreError {
        match self {
            ApplyError::Unique(e) => e.into(),
            ApplyError::Store(e) => e,
        }
    }
}

/// Inside a release's transaction: for a release, that the state each tenant leaves is in
/// the generation history (so it can be rolled back); for a rollback, that each tenant now
/// carries its pre-release state under the new generation.
fn verify_history(tx: &mut impl GenericClient, changes: &[TenantChange], rollback: bool) -> Result<Step, StoreError> {
    let t = Instant::now();
    let cols = Columns::of(changes)?;
    let (generation, schema, contract) = if rollback {
        (&cols.to, &cols.to_schema, &cols.to_contract)
    } else {
        (&cols.from, &cols.from_schema, &cols.from_contract)
    };
    let missing = tx.query_opt(
        "SELECT u.id, u.gen FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS u(id, gen, schema, contract)
         LEFT JOIN generations g ON g.tenant_id = u.id AND g.generation = u.gen
           AND g.schema_version = u.schema AND g.contract_hash = u.contract
         WHERE g.tenant_id IS NULL LIMIT 1",
        &[&cols.tenants, generation, schema, contract],
    )?;
    if let Some(row) = missing {
        return Err(StoreError::internal(format!(
            "generation history of tenant {} does not hold the expected state at generation {}",
            row.get::<_, String>(0),
            row.get::<_, i64>(1)
        )));
    }
    let (name, detail) = if rollback {
        (
            "verify rollback",
            format!(
                "read back {} tenant(s): each carries its pre-release schema version and contract hash under a new \
                 generation",
                changes.len()
            ),
        )
    } else {
        (
            "verify rollback path",
            format!(
                "pre-release state of {} tenant(s) is recorded in the generation history; a rollback can restore it",
                changes.len()
            ),
        )
    };
    Ok(execlog::step(name, Phase::RollbackVerification, StepStatus::Ok, detail, t))
}

/// A release's tenant changes as columns, for `unnest`.
struct Columns {
    tenants: Vec<String>,
    positions: Vec<i64>,
    from: Vec<i64>,
    to: Vec<i64>,
    from_schema: Vec<String>,
    to_schema: Vec<String>,
    from_contract: Vec<String>,
    to_contract: Vec<String>,
}

impl Columns {
    fn of(changes: &[TenantChange]) -> Result<Self, StoreError> {
        let mut c = Columns {
            tenants: Vec::with_capacity(changes.len()),
            positions: Vec::with_capacity(changes.len()),
            from: Vec::with_capacity(changes.len()),
            to: Vec::with_capacity(changes.len()),
            from_schema: Vec::with_capacity(changes.len()),
            to_schema: Vec::with_capacity(changes.len()),
            from_contract: Vec::with_capacity(changes.len()),
            to_contract: Vec::with_capacity(changes.len()),
        };
        for (i, ch) in changes.iter().enumerate() {
            c.tenants.push(ch.tenant.to_string());
            c.positions.push(i as i64);
            c.from.push(sql_gen(ch.from_generation)?);
            c.to.push(sql_gen(ch.to_generation)?);
            c.from_schema.push(ch.from_schema_version.to_string());
            c.to_schema.push(ch.to_schema_version.to_string());
            c.from_contract.push(ch.from_contract_hash.to_string());
            c.to_contract.push(ch.to_contract_hash.to_string());
        }
        Ok(c)
    }
}

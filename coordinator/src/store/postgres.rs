//! The PostgreSQL store: one database shared by any number of coordinator replicas
//! (`--store postgres://USER@HOST:PORT/DB`). The decisions are the same pure functions the
//! SQLite store applies ([`crate::domain`], [`crate::execlog`], [`crate::outbox`]); this
//! module only sequences SQL, and every guarantee across replicas rests on the database:
//!
//! - **Manifests never go back.** Manifest reads go through to the database
//!   ([`Store::tenant`] is one indexed `SELECT`): a commit is acknowledged to its caller
//!   only after `COMMIT` returned, so every later read on any replica sees it.
//! - **No collisions.** Release ids come from one sequence (`rel-{nextval}`); a release
//!   locks its tenants' rows (`SELECT … ORDER BY id FOR UPDATE`) and plans from the locked
//!   rows, so concurrent releases through different replicas serialize per tenant and
//!   never skip or reuse a generation. An idempotency key is `UNIQUE`: a concurrent
//!   duplicate replays the release that won.
//! - **Acks pool.** Acks are rows, and so is the first fetch of each manifest generation by
//!   each PoP (what vouches for its ack), so a PoP may fetch through one replica and
//!   acknowledge through another. Acks are rows; convergence is computed from them, whichever replica
//!   received each, and a release is marked converged by a conditional `UPDATE` (once).
//! - **Singletons act once.** The deadline pass runs under a session advisory lock (one
//!   replica at a time); a rollback re-checks the release under its tenants' row locks, so
//!   two replicas deciding the same rollback commit it once (the other is refused and
//!   counts as "not triggered"); outbox effects are claimed with `FOR UPDATE SKIP LOCKED`
//!   and a lease, so each attempt is made by one replica.
//!
//! Connections come from a small pool; each call runs on a blocking thread.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use edgegen_shared::api::{
    Convergence, ExecutionLog, NewTenant, Phase, Release, ReleaseKind, ReleaseRequest, ReleaseStatus, Step, StepStatus,
    Tenant, TenantChange,
};
use edgegen_shared::{Ack, ContractHash, Generation, PopId, ReleaseId, Report, SchemaVersion, TenantId};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Row};

use super::{BoxFuture, Committed, PurgePlan, ReportOutcome, Store, StoreError, StoreSettings};
use crate::clock::now_ms;
use crate::domain::{self, AckRow, ConvergenceInput, Refusal, ReleaseFacts, TenantState};
use crate::execlog::{self, LogBuilder};
use crate::metrics::Metrics;
use crate::outbox::{Effect, EffectKind};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    hosts TEXT NOT NULL,
    generation BIGINT NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    contract_schema TEXT,
    release_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_hosts (
    host TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id)
);
CREATE SEQUENCE IF NOT EXISTS release_seq;
CREATE TABLE IF NOT EXISTS releases (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('release', 'rollback')),
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    rollback_of TEXT REFERENCES releases(id),
    rolled_back_by TEXT REFERENCES releases(id),
    status TEXT NOT NULL CHECK (status IN ('committed', 'converged', 'rolled_back', 'failed')),
    committed_at BIGINT NOT NULL,
    converged_at BIGINT,
    execution_log TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_open ON releases (committed_at) WHERE status = 'committed';
CREATE TABLE IF NOT EXISTS release_tenants (
    release_id TEXT NOT NULL REFERENCES releases(id),
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    position BIGINT NOT NULL,
    from_generation BIGINT NOT NULL,
    to_generation BIGINT NOT NULL,
    from_schema_version TEXT NOT NULL,
    to_schema_version TEXT NOT NULL,
    from_contract_hash TEXT NOT NULL,
    to_contract_hash TEXT NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
);
CREATE INDEX IF NOT EXISTS release_tenants_by_tenant ON release_tenants (tenant_id, to_generation);
CREATE TABLE IF NOT EXISTS generations (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    generation BIGINT NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    release_id TEXT REFERENCES releases(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, generation)
);
CREATE TABLE IF NOT EXISTS pops (
    id TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS fetches (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (pop, tenant_id)
);
CREATE TABLE IF NOT EXISTS acks (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    observed_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (pop, tenant_id, generation)
);
CREATE INDEX IF NOT EXISTS acks_by_tenant ON acks (tenant_id, generation);
CREATE TABLE IF NOT EXISTS reports (
    id BIGSERIAL PRIMARY KEY,
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    generation BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_tenant ON reports (tenant_id, generation);
CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY,
    release_id TEXT NOT NULL REFERENCES releases(id),
    effect TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;
";

/// Advisory lock keys (one namespace for edgegen).
const SCHEMA_LOCK: i64 = 0x6564_6765_0001;
const DEADLINE_LOCK: i64 = 0x6564_6765_0002;

/// How long a claimed outbox effect stays with the replica that claimed it; after that,
/// another replica may take it (the claimer died mid-delivery).
const CLAIM_LEASE_MS: u64 = 30_000;

/// How often the deadline pass runs.
const TICK_MS: u64 = 200;

/// Connections one replica opens at most (PostgreSQL's default `max_connections` is 100:
/// several replicas must fit under it).
const POOL_MAX: usize = 16;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::caused("PostgreSQL", e)
    }
}

fn corrupt(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::corrupt("a stored value", source)
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Generations are stored as BIGINT: refuse the ones above that range.
fn sql_gen(g: Generation) -> Result<i64, StoreError> {
    i64::try_from(g.0).map_err(|_| Refusal::Unprocessable(format!("generation {g} is beyond the store's range")).into())
}

/// At most [`POOL_MAX`] connections: idle ones are reused, callers beyond the bound wait.
struct Pool {
    url: String,
    idle: Mutex<Vec<Client>>,
    /// Connections handed out and not yet returned.
    out: Mutex<usize>,
    returned: Condvar,
}

impl Pool {
    fn new(url: &str) -> Self {
        Pool { url: url.to_owned(), idle: Mutex::new(Vec::new()), out: Mutex::new(0), returned: Condvar::new() }
    }

    fn get(&self) -> Result<Client, StoreError> {
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            while *out >= POOL_MAX {
                out = self.returned.wait(out).unwrap_or_else(|p| p.into_inner());
            }
            *out += 1;
        }
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(c) if !c.is_closed() => return Ok(c),
                Some(_) => {}
                None => break,
            }
        }
        Client::connect(&self.url, NoTls).map_err(|e| {
            self.release();
            StoreError::caused("connecting to PostgreSQL", e)
        })
    }

    fn put(&self, c: Client) {
        if !c.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
        self.release();
    }

    fn release(&self) {
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.returned.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A synchronous client closes its connection on drop by blocking on its own
        // runtime, which must not happen on an async thread (where the last handle to the
        // store may be dropped): close them on a plain thread.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

struct Inner {
    pool: Pool,
    settings: StoreSettings,
    metrics: Arc<Metrics>,
}

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl PostgresStore {
    /// Connects, creates the schema if needed (under an advisory lock, so replicas starting
    /// together do not race), and starts the deadline ticker when a deadline is set.
    ///
    /// # Errors
    /// When the database cannot be reached or the schema created.
    pub fn open(url: &str, settings: StoreSettings, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let pool = Pool::new(url);
        let mut c = pool.get()?;
        c.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])?;
        let created = c.batch_execute(SCHEMA);
        c.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])?;
        created?;
        pool.put(c);
        let deadline = settings.convergence_deadline_ms;
        let inner = Arc::new(Inner { pool, settings, metrics });
        if deadline.is_some() {
            // A weak handle: the ticker never keeps the store alive after it is dropped.
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("edgegen-deadline".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_millis(TICK_MS));
                        let Some(inner) = weak.upgrade() else { break };
                        if let Err(e) = inner.with(|c, s| s.enforce_deadline(c, now_ms())) {
                            tracing::error!(cause = %e.chain(), "enforcing the convergence deadline failed");
                        }
                    }
                })
                .map_err(|e| StoreError::caused("starting the deadline ticker", e))?;
        }
        Ok(PostgresStore { inner })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.with(f))
                .await
                .map_err(|e| StoreError::caused("the store task did not complete", e))?
        })
    }
}

impl Inner {
    fn with<T>(&self, f: impl FnOnce(&mut Client, &Inner) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut c = self.pool.get()?;
        let out = f(&mut c, self);
        self.pool.put(c);
        out
    }
}

impl Store for PostgresStore {
    fn tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Option<TenantState>, StoreError>> {
        self.call(move |c, _| {
            let row = c.query_opt(
                "SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants WHERE id = $1",
                &[&id.as_str()],
            )?;
            row.map(|r| tenant_row(&r)).transpose()
        })
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>> {
        self.call(|c, _| {
            let rows = c.query(
                "SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants ORDER BY id",
                &[],
            )?;
            rows.iter().map(tenant_row).collect()
        })
    }

    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |c, _| register_tenant(c, tenant))
    }

    fn commit_release(
        &self,
        request: ReleaseRequest,
        key: Option<String>,
        analysis_steps: Vec<Step>,
        purge: PurgePlan,
    ) -> BoxFuture<'_, Result<Committed, StoreError>> {
        self.call(move |c, s| s.commit_release(c, request, key, analysis_steps, purge))
    }

    fn rollback(&self, id: ReleaseId, reason: String) -> BoxFuture<'_, Result<Release, StoreError>> {
        self.call(move |c, s| s.rollback(c, &id, &reason, false, None))
    }

    fn release(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Release>, StoreError>> {
        self.call(move |c, _| load_release(c, &id))
    }

    fn convergence(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Convergence>, StoreError>> {
        self.call(move |c, s| {
            let Some(release) = load_release(c, &id)? else { return Ok(None) };
            let now = now_ms();
            let conv = s.compute_convergence(c, &release, now)?;
            if conv.converged && release.status == ReleaseStatus::Committed {
                s.mark_converged(c, &release.id, &conv, now)?;
                return Ok(Some(Convergence { status: ReleaseStatus::Converged, ..conv }));
            }
            Ok(Some(conv))
        })
    }

    fn record_ack(&self, ack: Ack) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |c, s| s.record_ack(c, &ack))
    }

    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<ReportOutcome, StoreError>> {
        self.call(move |c, s| s.record_report(c, report))
    }

    fn record_fetch(
        &self,
        pop: PopId,
        tenant: TenantId,
        generation: Generation,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |c, _| {
            c.execute(
                "INSERT INTO fetches (pop, tenant_id, generation) VALUES ($1, $2, $3)
                 ON CONFLICT (pop, tenant_id) DO UPDATE SET generation = GREATEST(fetches.generation, EXCLUDED.generation)",
                &[&pop.as_str(), &tenant.as_str(), &sql_gen(generation)?],
            )?;
            Ok(())
        })
    }

    fn fetched(&self, pop: PopId, tenant: TenantId) -> BoxFuture<'_, Result<Option<Generation>, StoreError>> {
        self.call(move |c, _| {
            let row = c.query_opt(
                "SELECT generation FROM fetches WHERE pop = $1 AND tenant_id = $2",
                &[&pop.as_str(), &tenant.as_str()],
            )?;
            Ok(row.map(|r| Generation(r.get::<_, i64>(0) as u64)))
        })
    }

    fn due_effects(&self, now: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Effect>, StoreError>> {
        self.call(move |c, _| {
            let rows = c.query(
                "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (
                   SELECT id FROM outbox WHERE done_at IS NULL AND next_attempt_at <= $2
                   ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, release_id, effect, attempts",
                &[&((now + CLAIM_LEASE_MS) as i64), &(now as i64), &(limit as i64)],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(Effect {
                    id: r.get(0),
                    release: ReleaseId::new(r.get::<_, String>(1)).map_err(corrupt)?,
                    kind: serde_json::from_str(r.get(2))?,
                    attempts: u32::try_from(r.get::<_, i64>(3)).unwrap_or(u32::MAX),
                });
            }
            out.sort_by_key(|e| e.id);
            Ok(out)
        })
    }

    fn record_attempt(&self, effect: i64, step: Step, retry_at: Option<u64>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |c, _| {
            let mut tx = c.transaction()?;
            let release: String = tx
                .query_opt("SELECT release_id FROM outbox WHERE id = $1 FOR UPDATE", &[&effect])?
                .ok_or_else(|| StoreError::internal(format!("outbox effect {effect} vanished")))?
                .get(0);
            match retry_at {
                Some(at) => tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2",
                    &[&(at as i64), &effect],
                )?,
                None => tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, done_at = $1 WHERE id = $2",
                    &[&(now_ms() as i64), &effect],
                )?,
            };
            edit_log(&mut tx, &release, |log| execlog::replace_step(log, step))?;
            tx.commit()?;
            Ok(())
        })
    }
}

fn tenant_row(r: &Row) -> Result<TenantState, StoreError> {
    Ok(TenantState {
        id: TenantId::new(r.get::<_, String>(0)).map_err(corrupt)?,
        hosts: serde_json::from_str(r.get(1))?,
        generation: Generation(r.get::<_, i64>(2) as u64),
        schema_version: SchemaVersion::new(r.get::<_, &str>(3)).map_err(corrupt)?,
        contract_hash: ContractHash::new(r.get::<_, &str>(4)).map_err(corrupt)?,
        release_id: r.get::<_, Option<String>>(5).map(ReleaseId::new).transpose().map_err(corrupt)?,
    })
}

/// Locks the rows of `tenants` (in id order, so concurrent releases never deadlock) and
/// returns their current state.
fn lock_tenants(
    tx: &mut impl GenericClient,
    tenants: &[TenantId],
) -> Result<HashMap<TenantId, TenantState>, StoreError> {
    let mut ids: Vec<&str> = tenants.iter().map(TenantId::as_str).collect();
    ids.sort_unstable();
    let rows = tx.query(
        "SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )?;
    rows.iter().map(|r| tenant_row(r).map(|t| (t.id.clone(), t))).collect()
}

/// Rewrites the stored log of `release` under its row lock.
fn edit_log(
    tx: &mut impl GenericClient,
    release: &str,
    edit: impl FnOnce(&mut ExecutionLog),
) -> Result<(), StoreError> {
    let row = tx
        .query_opt("SELECT execution_log FROM releases WHERE id = $1 FOR UPDATE", &[&release])?
        .ok_or_else(|| StoreError::internal(format!("release {release} vanished")))?;
    let mut log: ExecutionLog = serde_json::from_str(row.get(0))?;
    edit(&mut log);
    tx.execute("UPDATE releases SET execution_log = $1 WHERE id = $2", &[&serde_json::to_string(&log)?, &release])?;
    Ok(())
}

fn register_tenant(c: &mut Client, t: NewTenant) -> Result<Tenant, StoreError> {
    domain::check_new_tenant(&t)?;
    let now = now_ms() as i64;
    let mut tx = c.transaction()?;
    if tx.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&t.id.as_str()])?.is_some() {
        return Err(Refusal::Conflict(format!("tenant {} is already registered", t.id)).into());
    }
    for (i, host) in t.hosts.iter().enumerate() {
        if let Some(owner) = tx.query_opt("SELECT tenant_id FROM tenant_hosts WHERE host = $1", &[host])? {
            let owner: String = owner.get(0);
            return Err(Refusal::Conflict(format!("hosts[{i}]: {host} already belongs to tenant {owner}")).into());
        }
    }
    let hosts = serde_json::to_string(&t.hosts)?;
    let schema_doc = t.contract_schema.as_ref().map(|v| v.to_string());
    let (schema, contract) = (t.schema_version.to_string(), t.contract_hash.to_string());
    let written = (|| -> Result<(), postgres::Error> {
        tx.execute(
            "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, contract_schema, release_id,
               created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $5, NULL, $6, $6)",
            &[&t.id.as_str(), &hosts, &schema, &contract, &schema_doc, &now],
        )?;
        for host in &t.hosts {
            tx.execute("INSERT INTO tenant_hosts (host, tenant_id) VALUES ($1, $2)", &[host, &t.id.as_str()])?;
        }
        tx.execute(
            "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
             VALUES ($1, 1, $2, $3, NULL, $4)",
            &[&t.id.as_str(), &schema, &contract, &now],
        )?;
        Ok(())
    })();
    match written {
        // Another replica registered the same id or host between our checks and inserts.
        Err(e) if is_unique_violation(&e) => {
            return Err(
                Refusal::Conflict(format!("tenant {} or one of its hosts was registered concurrently", t.id)).into()
            );
        }
        other => other?,
    }
    tx.commit()?;
    Ok(Tenant {
        id: t.id,
        hosts: t.hosts,
        generation: Generation::FIRST,
        schema_version: t.schema_version,
        contract_hash: t.contract_hash,
    })
}

/// What [`Inner::apply`] writes.
struct Commit<'a> {
    id: &'a ReleaseId,
    seq: i64,
    kind: ReleaseKind,
    rollback_of: Option<&'a ReleaseId>,
    changes: &'a [TenantChange],
    purge_keys: Vec<String>,
    key: Option<&'a str>,
    request_hash: Option<&'a str>,
    /// For an automatic rollback: when its cause arose (Unix ms).
    trigger_at: Option<u64>,
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
        let release = load_release(c, &id)?.ok_or_else(|| StoreError::internal("idempotent release vanished"))?;
        Ok(Some(Committed { release, replayed: true }))
    }

    fn commit_release(
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
        let id = ReleaseId::new(format!("rel-{seq}")).map_err(corrupt)?;
        let commit = Commit {
            id: &id,
            seq,
            kind: ReleaseKind::Release,
            rollback_of: None,
            changes: &changes,
            purge_keys: purge(&changes),
            key: key.as_deref(),
            request_hash: Some(&request_hash),
            trigger_at: None,
        };
        match self.apply(tx, commit, log, now, started) {
            Ok(()) => {}
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
    /// and commits.
    fn apply(
        &self,
        mut tx: postgres::Transaction<'_>,
        c: Commit<'_>,
        log: LogBuilder,
        now: u64,
        started: Instant,
    ) -> Result<(), ApplyError> {
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
        let moved = tx
            .query(
                "UPDATE tenants t SET generation = u.to_gen, schema_version = u.schema, contract_hash = u.contract,
                   release_id = $1, updated_at = $2
                 FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[])
                   AS u(id, from_gen, to_gen, schema, contract)
                 WHERE t.id = u.id AND t.generation = u.from_gen RETURNING t.id",
                &[&id.as_str(), &now_i, &cols.tenants, &cols.from, &cols.to, &cols.to_schema, &cols.to_contract],
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
        Ok(())
    }

    fn rollback(
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
        let rollback_id = ReleaseId::new(format!("rel-{seq}")).map_err(corrupt)?;
        let commit = Commit {
            id: &rollback_id,
            seq,
            kind: ReleaseKind::Rollback,
            rollback_of: Some(id),
            changes: &changes,
            purge_keys: crate::outbox::rollback_purge_keys(&changes),
            key: None,
            request_hash: None,
            trigger_at,
        };
        self.apply(tx, commit, log, now, started).map_err(ApplyError::into_store)?;
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

    fn compute_convergence(
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
        }))
    }

    /// Marks a release converged, once: the conditional update succeeds on one replica.
    fn mark_converged(&self, c: &mut Client, id: &ReleaseId, conv: &Convergence, now: u64) -> Result<(), StoreError> {
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

    fn record_ack(&self, c: &mut Client, ack: &Ack) -> Result<(), StoreError> {
        let Some(row) = c.query_opt("SELECT generation FROM tenants WHERE id = $1", &[&ack.tenant.as_str()])? else {
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
        let now = now_ms() as i64;
        let generation = sql_gen(ack.generation)?;
        let observed = i64::try_from(ack.observed_at).unwrap_or(i64::MAX);
        let mut tx = c.transaction()?;
        tx.execute(
            "INSERT INTO acks (pop, tenant_id, generation, observed_at, received_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&ack.pop.as_str(), &ack.tenant.as_str(), &generation, &observed, &now],
        )?;
        tx.execute(
            "INSERT INTO pops (id, first_seen, last_seen) VALUES ($1, $2, $2)
             ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST(pops.last_seen, EXCLUDED.last_seen)",
            &[&ack.pop.as_str(), &now],
        )?;
        tx.commit()?;
        self.metrics.acks(1);
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

    fn record_report(&self, c: &mut Client, report: Report) -> Result<ReportOutcome, StoreError> {
        if c.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&report.tenant.as_str()])?.is_none() {
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
        let reason = format!(
            "automatic: {} edge report(s) from {} PoP(s) naming {} path(s) within {} s of commit (policy: {} reports, \
             {} PoPs, {} paths)",
            tally.reports,
            tally.pops,
            tally.paths,
            policy.window.as_secs(),
            policy.reports,
            policy.min_pops,
            policy.min_paths
        );
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
    fn enforce_deadline(&self, c: &mut Client, now: u64) -> Result<(), StoreError> {
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

fn live_pops(c: &mut impl GenericClient, now: u64, window_ms: u64) -> Result<Vec<PopId>, StoreError> {
    let since = now.saturating_sub(window_ms) as i64;
    let rows = c.query("SELECT id FROM pops WHERE last_seen >= $1 ORDER BY id", &[&since])?;
    rows.iter().map(|r| PopId::new(r.get::<_, String>(0)).map_err(corrupt)).collect()
}

fn load_release(c: &mut impl GenericClient, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
    let Some(row) = c.query_opt(
        "SELECT kind, rollback_of, rolled_back_by, status, committed_at, converged_at, execution_log
         FROM releases WHERE id = $1",
        &[&id.as_str()],
    )?
    else {
        return Ok(None);
    };
    let kind: String = row.get(0);
    let status: String = row.get(3);
    let rows = c.query(
        "SELECT tenant_id, from_generation, to_generation, from_schema_version, to_schema_version,
                from_contract_hash, to_contract_hash
         FROM release_tenants WHERE release_id = $1 ORDER BY position",
        &[&id.as_str()],
    )?;
    let mut tenants = Vec::with_capacity(rows.len());
    for r in rows {
        tenants.push(TenantChange {
            tenant: TenantId::new(r.get::<_, String>(0)).map_err(corrupt)?,
            from_generation: Generation(r.get::<_, i64>(1) as u64),
            to_generation: Generation(r.get::<_, i64>(2) as u64),
            from_schema_version: SchemaVersion::new(r.get::<_, &str>(3)).map_err(corrupt)?,
            to_schema_version: SchemaVersion::new(r.get::<_, &str>(4)).map_err(corrupt)?,
            from_contract_hash: ContractHash::new(r.get::<_, &str>(5)).map_err(corrupt)?,
            to_contract_hash: ContractHash::new(r.get::<_, &str>(6)).map_err(corrupt)?,
        });
    }
    let bad = |what: &str, text: &str| StoreError::internal(format!("stored data does not validate: {what} {text:?}"));
    Ok(Some(Release {
        id: id.clone(),
        kind: ReleaseKind::parse(&kind).ok_or_else(|| bad("release kind", &kind))?,
        rollback_of: row.get::<_, Option<String>>(1).map(ReleaseId::new).transpose().map_err(corrupt)?,
        rolled_back_by: row.get::<_, Option<String>>(2).map(ReleaseId::new).transpose().map_err(corrupt)?,
        status: [ReleaseStatus::Committed, ReleaseStatus::Converged, ReleaseStatus::RolledBack, ReleaseStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| bad("release status", &status))?,
        committed_at: row.get::<_, i64>(4) as u64,
        converged_at: row.get::<_, Option<i64>>(5).map(|t| t as u64),
        tenants,
        execution_log: serde_json::from_str(row.get(6))?,
    }))
}

//! The SQLite store: one file (`edgegen.db`) under the data directory, WAL journal,
//! `synchronous = FULL` (a commit is on disk before it is acknowledged), foreign keys on.
//!
//! One writer thread owns the connection and executes commands in arrival order, so
//! releases are serialized without lock contention: each release or rollback is one
//! `BEGIN IMMEDIATE` transaction (all tenants or none, also across `kill -9`). Consecutive
//! acknowledgements are group-committed: one transaction for a batch, each caller answered
//! after that transaction is durable. The in-memory tenant map that serves manifests is
//! updated only after a commit returned.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use edgegen_shared::api::{
    Convergence, ExecutionLog, NewTenant, Release, ReleaseRequest, ReleaseStatus, Step, StoredReport, Tenant,
    TenantChange,
};
use edgegen_shared::surrogate::SurrogateKey;
use edgegen_shared::{Ack, ContractHash, Generation, PopId, ReleaseId, Report, SchemaVersion, TenantId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Committed, ReportOutcome, Store, StoreError};
use crate::clock::{now_ms, rfc3339};
use crate::config::AutoRollback;
use crate::domain::{self, AckRow, ConvergenceInput, Refusal, ReleaseFacts, TenantState};
use crate::metrics::Metrics;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    hosts TEXT NOT NULL,
    generation INTEGER NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    contract_schema TEXT,
    release_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tenant_hosts (
    host TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id)
) STRICT;
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('release', 'rollback')),
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    rollback_of TEXT REFERENCES releases(id),
    rolled_back_by TEXT REFERENCES releases(id),
    status TEXT NOT NULL CHECK (status IN ('committed', 'converged', 'rolled_back', 'failed')),
    committed_at INTEGER NOT NULL,
    converged_at INTEGER,
    execution_log TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS release_tenants (
    release_id TEXT NOT NULL REFERENCES releases(id),
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    position INTEGER NOT NULL,
    from_generation INTEGER NOT NULL,
    to_generation INTEGER NOT NULL,
    from_schema_version TEXT NOT NULL,
    to_schema_version TEXT NOT NULL,
    from_contract_hash TEXT NOT NULL,
    to_contract_hash TEXT NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
) STRICT;
CREATE TABLE IF NOT EXISTS generations (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    generation INTEGER NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    release_id TEXT REFERENCES releases(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, generation)
) STRICT;
CREATE TABLE IF NOT EXISTS pops (
    id TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS acks (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (pop, tenant_id, generation)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acks_by_tenant ON acks (tenant_id, generation);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS reports_by_tenant ON reports (tenant_id, generation);
";

/// Settings the store applies to releases.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Manifest max age: the convergence bound.
    pub manifest_max_age_ms: u64,
    /// PoPs seen within this window count as live.
    pub pop_live_window_ms: u64,
    /// Auto-rollback policy on reports.
    pub auto_rollback: Option<AutoRollback>,
    /// Roll a release back automatically when it has not converged this long after its
    /// commit (`None`: never).
    pub convergence_deadline_ms: Option<u64>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    RegisterTenant(NewTenant, Reply<Tenant>),
    CommitRelease(ReleaseRequest, Option<String>, Vec<Step>, Reply<Committed>),
    Rollback(ReleaseId, String, Reply<Release>),
    Release(ReleaseId, Reply<Option<Release>>),
    Releases(u32, u32, Reply<(u64, Vec<Release>)>),
    Reports(u32, u32, Reply<(u64, Vec<StoredReport>)>),
    Convergence(ReleaseId, Reply<Option<Convergence>>),
    Ack(Ack, Reply<()>),
    Report(Report, Reply<ReportOutcome>),
    /// Periodic: enforce the convergence deadline.
    Tick,
    ReplaceStep(ReleaseId, Step, Reply<()>),
}

/// The execution-log step of the atomic commit.
const COMMIT_STEP: &str = "commit new generations in one transaction";

/// The execution-log step of the CDN purge (filled in after the commit when a CDN is configured).
pub const PURGE_STEP: &str = "purge CDN surrogate keys";

/// How often the convergence deadline is checked.
const TICK_MS: u64 = 50;

/// Most commands one writer pass takes (bounds the latency a batch adds).
const MAX_BATCH: usize = 1024;

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    commands: mpsc::Sender<Command>,
    tenants: Arc<RwLock<HashMap<TenantId, TenantState>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `edgegen.db` under `data_dir` and starts the writer thread.
    ///
    /// # Errors
    /// When the directory or database cannot be created or read.
    pub fn open(data_dir: &Path, settings: StoreSettings, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Internal(format!("creating {}: {e}", data_dir.display())))?;
        let conn = Connection::open(data_dir.join("edgegen.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;

        let tenants = Arc::new(RwLock::new(load_tenants(&conn)?));
        let open = load_open_releases(&conn)?;
        let pops = load_pops(&conn)?;
        let (tx, rx) = mpsc::channel(4096);
        let mut writer = Writer { conn, tenants: Arc::clone(&tenants), open, pops, settings, metrics };
        let deadline = writer.settings.convergence_deadline_ms;
        std::thread::Builder::new()
            .name("edgegen-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Internal(format!("starting the store thread: {e}")))?;
        if deadline.is_some() {
            // A weak sender: the ticker never keeps the store alive after it is dropped.
            let weak = tx.downgrade();
            std::thread::Builder::new()
                .name("edgegen-deadline".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_millis(TICK_MS));
                        let Some(tx) = weak.upgrade() else { break };
                        if tx.blocking_send(Command::Tick).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| StoreError::Internal(format!("starting the deadline ticker: {e}")))?;
        }
        Ok(SqliteStore { commands: tx, tenants })
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.commands.send(make(tx)).await.map_err(|_| StoreError::Internal("the store thread stopped".into()))?;
            rx.await.map_err(|_| StoreError::Internal("the store thread dropped a request".into()))?
        })
    }
}

impl Store for SqliteStore {
    fn tenant_state(&self, id: &TenantId) -> Option<TenantState> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn tenant_states(&self) -> Vec<TenantState> {
        let mut all: Vec<TenantState> =
            self.tenants.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |r| Command::RegisterTenant(tenant, r))
    }

    fn commit_release(
        &self,
        request: ReleaseRequest,
        key: Option<String>,
        analysis_steps: Vec<Step>,
    ) -> BoxFuture<'_, Result<Committed, StoreError>> {
        self.call(move |r| Command::CommitRelease(request, key, analysis_steps, r))
    }

    fn rollback(&self, id: ReleaseId, reason: String) -> BoxFuture<'_, Result<Release, StoreError>> {
        self.call(move |r| Command::Rollback(id, reason, r))
    }

    fn release(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Release>, StoreError>> {
        self.call(move |r| Command::Release(id, r))
    }

    fn convergence(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Convergence>, StoreError>> {
        self.call(move |r| Command::Convergence(id, r))
    }

    fn releases(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<Release>), StoreError>> {
        self.call(move |r| Command::Releases(offset, limit, r))
    }

    fn reports(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<StoredReport>), StoreError>> {
        self.call(move |r| Command::Reports(offset, limit, r))
    }

    fn record_ack(&self, ack: Ack) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |r| Command::Ack(ack, r))
    }

    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<ReportOutcome, StoreError>> {
        self.call(move |r| Command::Report(report, r))
    }

    fn replace_step(&self, id: ReleaseId, step: Step) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |r| Command::ReplaceStep(id, step, r))
    }
}

/// A release waiting for convergence, tracked in memory so an acknowledgement costs a few
/// hash lookups, not a query: SQL runs only when some PoP completes the release.
#[derive(Default)]
struct OpenRelease {
    /// When it was committed (Unix ms).
    committed_at: u64,
    /// Whether it is a rollback (a rollback is never rolled back automatically).
    rollback: bool,
    /// Tenant → the generation this release moved it to.
    targets: HashMap<TenantId, Generation>,
    /// PoP → tenants it acknowledged at or past their target.
    acked: HashMap<PopId, HashSet<TenantId>>,
}

/// Releases waiting for convergence, indexed by tenant.
#[derive(Default)]
struct OpenReleases {
    releases: HashMap<ReleaseId, OpenRelease>,
    by_tenant: HashMap<TenantId, HashSet<ReleaseId>>,
}

impl OpenReleases {
    fn insert(&mut self, id: ReleaseId, release: OpenRelease) {
        for tenant in release.targets.keys() {
            self.by_tenant.entry(tenant.clone()).or_default().insert(id.clone());
        }
        self.releases.insert(id, release);
    }

    fn remove(&mut self, id: &ReleaseId) {
        if let Some(release) = self.releases.remove(id) {
            for tenant in release.targets.keys() {
                if let Some(ids) = self.by_tenant.get_mut(tenant) {
                    ids.remove(id);
                }
            }
        }
    }

    /// Records an acknowledgement; returns the releases that its PoP has now fully acknowledged.
    fn record(&mut self, ack: &Ack) -> Vec<ReleaseId> {
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

    /// Whether every PoP in `live` (at least one) acknowledged every tenant of `id`.
    fn complete_for(&self, id: &ReleaseId, live: &[PopId]) -> bool {
        self.releases.get(id).is_some_and(|r| {
            !live.is_empty() && live.iter().all(|p| r.acked.get(p).is_some_and(|s| s.len() == r.targets.len()))
        })
    }
}

struct Writer {
    conn: Connection,
    tenants: Arc<RwLock<HashMap<TenantId, TenantState>>>,
    open: OpenReleases,
    /// PoP → last time it acknowledged anything (mirrors the `pops` table).
    pops: HashMap<PopId, u64>,
    settings: StoreSettings,
    metrics: Arc<Metrics>,
}

/// Generations are stored as SQLite integers (i64): refuse the ones above that range.
fn sql_gen(g: Generation) -> Result<i64, StoreError> {
    i64::try_from(g.0).map_err(|_| Refusal::Unprocessable(format!("generation {g} is beyond the store's range")).into())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored data does not validate: {what}"))
}

fn load_tenants(conn: &Connection) -> Result<HashMap<TenantId, TenantState>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, hosts, generation, schema, contract, release) = row?;
        let state = TenantState {
            id: TenantId::new(id).map_err(corrupt)?,
            hosts: serde_json::from_str(&hosts).map_err(corrupt)?,
            generation: Generation(generation as u64),
            schema_version: SchemaVersion::new(&schema).map_err(corrupt)?,
            contract_hash: ContractHash::new(&contract).map_err(corrupt)?,
            release_id: release.map(ReleaseId::new).transpose().map_err(corrupt)?,
        };
        out.insert(state.id.clone(), state);
    }
    Ok(out)
}

fn load_open_releases(conn: &Connection) -> Result<OpenReleases, StoreError> {
    let mut open: HashMap<ReleaseId, OpenRelease> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT r.id, rt.tenant_id, rt.to_generation, r.committed_at, r.kind FROM releases r
         JOIN release_tenants rt ON rt.release_id = r.id WHERE r.status = 'committed'",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (id, tenant, to, committed_at, kind) = row?;
        let release = open.entry(ReleaseId::new(id).map_err(corrupt)?).or_default();
        release.committed_at = committed_at as u64;
        release.rollback = kind == "rollback";
        release.targets.insert(TenantId::new(tenant).map_err(corrupt)?, Generation(to as u64));
    }
    let mut stmt = conn.prepare(
        "SELECT DISTINCT r.id, a.pop, a.tenant_id FROM releases r
         JOIN release_tenants rt ON rt.release_id = r.id
         JOIN acks a ON a.tenant_id = rt.tenant_id AND a.generation >= rt.to_generation
         WHERE r.status = 'committed'",
    )?;
    let rows =
        stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?;
    for row in rows {
        let (id, pop, tenant) = row?;
        if let Some(release) = open.get_mut(&ReleaseId::new(id).map_err(corrupt)?) {
            let set = release.acked.entry(PopId::new(pop).map_err(corrupt)?).or_default();
            set.insert(TenantId::new(tenant).map_err(corrupt)?);
        }
    }
    let mut releases = OpenReleases::default();
    for (id, release) in open {
        releases.insert(id, release);
    }
    Ok(releases)
}

fn load_pops(conn: &Connection) -> Result<HashMap<PopId, u64>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, last_seen FROM pops")?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (id, last_seen) = row?;
        Ok((PopId::new(id).map_err(corrupt)?, last_seen as u64))
    })
    .collect()
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            for cmd in batch {
                match cmd {
                    Command::Ack(ack, reply) => acks.push((ack, reply)),
                    other => {
                        self.flush_acks(std::mem::take(&mut acks));
                        self.execute(other);
                    }
                }
            }
            self.flush_acks(acks);
        }
    }

    fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::RegisterTenant(t, reply) => {
                let _ = reply.send(self.register_tenant(t));
            }
            Command::CommitRelease(req, key, steps, reply) => {
                let _ = reply.send(self.commit_release(req, key, steps));
            }
            Command::Rollback(id, reason, reply) => {
                let _ = reply.send(self.rollback(&id, &reason, false, None));
            }
            Command::Release(id, reply) => {
                let _ = reply.send(self.load_release(&id));
            }
            Command::Releases(offset, limit, reply) => {
                let _ = reply.send(self.list_releases(offset, limit));
            }
            Command::Reports(offset, limit, reply) => {
                let _ = reply.send(self.list_reports(offset, limit));
            }
            Command::Convergence(id, reply) => {
                let _ = reply.send(self.convergence(&id));
            }
            Command::Report(report, reply) => {
                let _ = reply.send(self.record_report(report));
            }
            Command::Ack(ack, reply) => self.flush_acks(vec![(ack, reply)]),
            Command::ReplaceStep(id, step, reply) => {
                let _ = reply.send(self.replace_step(&id, step));
            }
            Command::Tick => {
                if let Err(e) = self.enforce_deadline(now_ms()) {
                    tracing::error!(cause = %e, "enforcing the convergence deadline failed");
                }
            }
        }
    }

    fn tenant(&self, id: &TenantId) -> Option<TenantState> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn publish(&self, states: impl IntoIterator<Item = TenantState>) {
        let mut map = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        for state in states {
            map.insert(state.id.clone(), state);
        }
    }

    fn register_tenant(&mut self, t: NewTenant) -> Result<Tenant, StoreError> {
        domain::check_new_tenant(&t)?;
        let now = now_ms() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [t.id.as_str()], |r| r.get(0))?;
        if exists {
            return Err(Refusal::Conflict(format!("tenant {} is already registered", t.id)).into());
        }
        for (i, host) in t.hosts.iter().enumerate() {
            let owner: Option<String> =
                tx.query_row("SELECT tenant_id FROM tenant_hosts WHERE host = ?1", [host], |r| r.get(0)).optional()?;
            if let Some(owner) = owner {
                return Err(Refusal::Conflict(format!("hosts[{i}]: {host} already belongs to tenant {owner}")).into());
            }
        }
        let hosts = serde_json::to_string(&t.hosts).map_err(|e| StoreError::Internal(e.to_string()))?;
        let schema_doc = t.contract_schema.as_ref().map(|v| v.to_string());
        tx.execute(
            "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, contract_schema, release_id, created_at, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?5, NULL, ?6, ?6)",
            params![t.id.as_str(), hosts, t.schema_version.to_string(), t.contract_hash.to_string(), schema_doc, now],
        )?;
        for host in &t.hosts {
            tx.execute("INSERT INTO tenant_hosts (host, tenant_id) VALUES (?1, ?2)", params![host, t.id.as_str()])?;
        }
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
        Ok(Tenant {
            id: t.id,
            hosts: t.hosts,
            generation: Generation::FIRST,
            schema_version: t.schema_version,
            contract_hash: t.contract_hash,
        })
    }

    fn commit_release(
        &mut self,
        req: ReleaseRequest,
        key: Option<String>,
        analysis: Vec<Step>,
    ) -> Result<Committed, StoreError> {
        let started = Instant::now();
        let request_hash = request_hash(&req)?;
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
                let release = self.load_release(&id)?.ok_or_else(|| corrupt("idempotent release vanished"))?;
                return Ok(Committed { release, replayed: true });
            }
        }

        let now = now_ms();
        let task = req.description.clone().unwrap_or_else(|| {
            format!(
                "release schema {} / contract {} to {} tenant(s)",
                req.schema_version,
                req.contract_hash,
                req.tenants.len()
            )
        });
        let mut log = LogBuilder::new(task, now);
        let analysed = |phase: &str| analysis.iter().filter(|s| s.phase == phase).cloned().collect::<Vec<_>>();
        let schema_steps = analysed("schema_analysis");
        if schema_steps.is_empty() {
            log.skipped(
                "analyse SQL schema changes",
                "schema_analysis",
                "the request carries no analysis input (analysis.schema_from/schema_to)",
            );
        }
        log.steps.extend(schema_steps);
        let t = Instant::now();
        match domain::check_contract(&req.contract_hash, req.contract_schema.as_ref())? {
            Some(detail) => {
                log.push("verify contract hash against its schema", "contract_verification", "ok", detail, t)
            }
            None => log.skipped(
                "verify contract hash against its schema",
                "contract_verification",
                "no contract_schema in the request; contract_hash taken as given",
            ),
        }
        log.steps.extend(analysed("contract_verification"));
        let changes = domain::plan_release(&req, |id| self.tenant(id))?;
        let seq = self.next_seq()?;
        let id = ReleaseId::new(format!("rel-{seq}")).map_err(corrupt)?;
        self.key_generation_step(&mut log, &changes);
        let isolation_steps = analysed("tenant_isolation_check");
        if isolation_steps.is_empty() {
            log.skipped(
                "check tenant isolation",
                "tenant_isolation_check",
                "the request carries no analysis input (analysis.schema_to)",
            );
        }
        log.steps.extend(isolation_steps);
        self.apply(&id, seq, "release", None, &changes, log, now, started, key.as_deref(), Some(&request_hash))?;
        self.metrics.release(false, false);
        let release = self.load_release(&id)?.ok_or_else(|| corrupt("committed release vanished"))?;
        Ok(Committed { release, replayed: false })
    }

    fn next_seq(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM releases", [], |r| r.get(0))?)
    }

    fn key_generation_step(&self, log: &mut LogBuilder, changes: &[TenantChange]) {
        let t = Instant::now();
        let mut retired = Vec::with_capacity(changes.len());
        for change in changes {
            // The new scope is what every key of the tenant is derived under from now on.
            let _scope = edgegen_shared::KeyScope {
                tenant: change.tenant.clone(),
                schema_version: change.to_schema_version,
                contract_hash: change.to_contract_hash,
                generation: change.to_generation,
            };
            retired.push(SurrogateKey::generation(&change.tenant, change.from_generation).to_string());
        }
        let shown = retired.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = retired.len().saturating_sub(5);
        let detail = format!(
            "derived new key scopes for {} tenant(s); objects stored under the previous generations can no longer \
             match a key; retired generation surrogate keys: {shown}{}",
            changes.len(),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
        log.push("derive key scopes and retired surrogate keys", "deterministic_key_generation", "ok", detail, t);
    }

    /// Writes a release (or rollback) and its tenant changes in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        id: &ReleaseId,
        seq: i64,
        kind: &str,
        rollback_of: Option<&ReleaseId>,
        changes: &[TenantChange],
        mut log: LogBuilder,
        now: u64,
        started: Instant,
        key: Option<&str>,
        request_hash: Option<&str>,
    ) -> Result<(), StoreError> {
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
                params![seq, id.as_str(), kind, key, request_hash, rollback_of.map(ReleaseId::as_str), now as i64],
            )?;
            for (position, c) in changes.iter().enumerate() {
                let (from, to) = (sql_gen(c.from_generation)?, sql_gen(c.to_generation)?);
                let (schema, contract) = (c.to_schema_version.to_string(), c.to_contract_hash.to_string());
                let moved =
                    update.execute(params![to, schema, contract, id.as_str(), now as i64, c.tenant.as_str(), from])?;
                if moved != 1 {
                    return Err(StoreError::Internal(format!("tenant {} changed during the release", c.tenant)));
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
        // Checked inside the transaction, logged last (the phase order of DESIGN.md).
        let verification =
            if rollback_of.is_some() { verify_rollback(&tx, changes)? } else { verify_rollback_path(&tx, changes)? };
        let live = live_pops(&tx, now, self.settings.pop_live_window_ms)?;
        log.push(
            COMMIT_STEP,
            "edge_node_invalidation",
            "ok",
            format!(
                "{} tenant(s) moved to new generations atomically; each PoP stops serving their older objects once it \
                 re-fetches the manifest (max age {} ms)",
                changes.len(),
                self.settings.manifest_max_age_ms
            ),
            commit_started,
        );
        log.skipped(
            PURGE_STEP,
            "edge_node_invalidation",
            "no CDN is configured ([fastly] / FASTLY_SERVICE_ID); the generation bump alone invalidates",
        );
        log.pending(
            "await PoP acknowledgements",
            "edge_node_invalidation",
            format!("waiting for {} live PoP(s) to acknowledge every tenant's new generation", live.len()),
        );
        log.steps.push(verification);
        let mut summary = serde_json::Map::new();
        summary.insert("release_id".into(), id.as_str().into());
        summary.insert("kind".into(), kind.into());
        summary.insert("tenants".into(), changes.len().into());
        summary.insert("live_pops_at_commit".into(), live.len().into());
        summary.insert("manifest_max_age_ms".into(), self.settings.manifest_max_age_ms.into());
        summary.insert("converged".into(), false.into());
        let mut execution_log = log.finish(id, started, summary);
        let log_json = serde_json::to_string(&execution_log).map_err(|e| StoreError::Internal(e.to_string()))?;
        tx.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![log_json, id.as_str()])?;
        tx.commit()?;
        // The commit step's figure must include the durable commit (the fsync), which only
        // ends after the log was written: record it again now. Should the process die
        // before this, the stored figure is the one measured before COMMIT.
        let commit_ms = commit_started.elapsed().as_secs_f64() * 1000.0;
        if let Some(step) = execution_log.steps.iter_mut().find(|s| s.step == COMMIT_STEP) {
            step.duration_ms = commit_ms;
        }
        execution_log.summary.insert("duration_ms".into(), (started.elapsed().as_secs_f64() * 1000.0).into());
        let log_json = serde_json::to_string(&execution_log).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![log_json, id.as_str()])?;

        // Durable: publish to the manifest path and track convergence.
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
        Ok(())
    }

    /// Rolls `id` back. `trigger_at` (Unix ms) is when an automatic rollback's cause arose:
    /// the time from it to the durable commit is recorded in the rollback's log summary.
    fn rollback(
        &mut self,
        id: &ReleaseId,
        reason: &str,
        automatic: bool,
        trigger_at: Option<u64>,
    ) -> Result<Release, StoreError> {
        let started = Instant::now();
        let original =
            self.load_release(id)?.ok_or_else(|| Refusal::NotFound(format!("release {id} does not exist")))?;
        let facts = ReleaseFacts {
            id: original.id.clone(),
            kind: original.kind.clone(),
            rolled_back_by: original.rolled_back_by.clone(),
            changes: original.tenants.clone(),
        };
        let changes = domain::plan_rollback(&facts, |t| self.tenant(t))?;
        let now = now_ms();
        let mut log = LogBuilder::new(format!("roll back {id}: {reason}"), now);
        log.skipped(
            "analyse SQL schema changes",
            "schema_analysis",
            "a rollback restores the schema version recorded before the release; nothing to analyse",
        );
        log.skipped(
            "verify contract hash against its schema",
            "contract_verification",
            "a rollback restores the contract hash recorded before the release",
        );
        let seq = self.next_seq()?;
        let rollback_id = ReleaseId::new(format!("rel-{seq}")).map_err(corrupt)?;
        self.key_generation_step(&mut log, &changes);
        log.skipped("check tenant isolation", "tenant_isolation_check", "a rollback returns to a released state");
        self.apply(&rollback_id, seq, "rollback", Some(id), &changes, log, now, started, None, None)?;
        if let Some(trigger) = trigger_at {
            let trigger_to_commit = now_ms().saturating_sub(trigger);
            self.patch_summary(&rollback_id, "trigger_to_rollback_commit_ms", trigger_to_commit.into())?;
            tracing::warn!(release = %id, trigger_to_commit_ms = trigger_to_commit, "automatic rollback committed");
        }
        self.close_pending_step(id, &format!("superseded by rollback {rollback_id}"))?;
        self.metrics.release(true, automatic);
        tracing::info!(release = %id, rollback = %rollback_id, automatic, reason, "rolled back");
        self.load_release(&rollback_id)?.ok_or_else(|| corrupt("committed rollback vanished"))
    }

    /// Rolls back every release (not rollbacks) still unconverged past the deadline.
    fn enforce_deadline(&mut self, now: u64) -> Result<(), StoreError> {
        let Some(deadline) = self.settings.convergence_deadline_ms else { return Ok(()) };
        let due: Vec<(ReleaseId, u64)> = self
            .open
            .releases
            .iter()
            .filter(|(_, r)| !r.rollback && r.committed_at.saturating_add(deadline) <= now)
            .map(|(id, r)| (id.clone(), r.committed_at.saturating_add(deadline)))
            .collect();
        for (id, trigger_at) in due {
            let Some(release) = self.load_release(&id)? else { continue };
            if release.status != ReleaseStatus::Committed {
                self.open.remove(&id);
                continue;
            }
            let conv = self.compute_convergence(&release, now)?;
            if conv.converged {
                self.mark_converged(&release, &conv, now)?;
                continue;
            }
            let reason = format!(
                "automatic: not converged within the deadline of {deadline} ms ({}/{} live PoPs acknowledged)",
                conv.acked, conv.total
            );
            if let Err(e) = self.rollback(&id, &reason, true, Some(trigger_at)) {
                // e.g. a later release superseded it: it can no longer be rolled back alone.
                tracing::error!(release = %id, cause = %e, "automatic rollback impossible");
                self.open.remove(&id);
            }
        }
        Ok(())
    }

    fn replace_step(&mut self, id: &ReleaseId, step: Step) -> Result<(), StoreError> {
        let log: Option<String> = self
            .conn
            .query_row("SELECT execution_log FROM releases WHERE id = ?1", [id.as_str()], |r| r.get(0))
            .optional()?;
        let log = log.ok_or_else(|| Refusal::NotFound(format!("release {id} does not exist")))?;
        let mut log: ExecutionLog = serde_json::from_str(&log).map_err(corrupt)?;
        match log.steps.iter_mut().find(|s| s.step == step.step) {
            Some(slot) => *slot = step,
            None => log.steps.push(step),
        }
        let json = serde_json::to_string(&log).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![json, id.as_str()])?;
        Ok(())
    }

    fn patch_summary(&mut self, id: &ReleaseId, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let log: String =
            self.conn.query_row("SELECT execution_log FROM releases WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
        let mut log: ExecutionLog = serde_json::from_str(&log).map_err(corrupt)?;
        log.summary.insert(key.to_owned(), value);
        let json = serde_json::to_string(&log).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![json, id.as_str()])?;
        Ok(())
    }

    /// Marks a release's still-pending acknowledgement step as ended without convergence.
    fn close_pending_step(&mut self, id: &ReleaseId, why: &str) -> Result<(), StoreError> {
        let log: String =
            self.conn.query_row("SELECT execution_log FROM releases WHERE id = ?1", [id.as_str()], |r| r.get(0))?;
        let mut log: ExecutionLog = serde_json::from_str(&log).map_err(corrupt)?;
        let mut changed = false;
        for step in log.steps.iter_mut().filter(|s| s.status == "pending") {
            step.status = "skipped".into();
            step.detail = format!("{}; {why} before every PoP acknowledged", step.detail);
            changed = true;
        }
        if changed {
            let json = serde_json::to_string(&log).map_err(|e| StoreError::Internal(e.to_string()))?;
            self.conn.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![json, id.as_str()])?;
        }
        Ok(())
    }

    /// The total number of releases and a page of them, newest first.
    fn list_releases(&self, offset: u32, limit: u32) -> Result<(u64, Vec<Release>), StoreError> {
        let total: i64 = self.conn.query_row("SELECT COUNT(*) FROM releases", [], |r| r.get(0))?;
        let mut stmt = self.conn.prepare_cached("SELECT id FROM releases ORDER BY seq DESC LIMIT ?1 OFFSET ?2")?;
        let ids = stmt
            .query_map([i64::from(limit), i64::from(offset)], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut releases = Vec::with_capacity(ids.len());
        for id in ids {
            let id = ReleaseId::new(id).map_err(corrupt)?;
            releases.extend(self.load_release(&id)?);
        }
        Ok((u64::try_from(total).unwrap_or(0), releases))
    }

    /// The total number of edge reports and a page of them, newest first.
    fn list_reports(&self, offset: u32, limit: u32) -> Result<(u64, Vec<StoredReport>), StoreError> {
        let total: i64 = self.conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, received_at, body FROM reports ORDER BY id DESC LIMIT ?1 OFFSET ?2")?;
        let rows = stmt
            .query_map([i64::from(limit), i64::from(offset)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let reports = rows
            .into_iter()
            .map(|(id, received_at, body)| {
                let report = serde_json::from_str(&body).map_err(|e| corrupt(format!("report {id}: {e}")))?;
                Ok(StoredReport { id, received_at: u64::try_from(received_at).unwrap_or(0), report })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((u64::try_from(total).unwrap_or(0), reports))
    }

    fn load_release(&self, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT kind, rollback_of, rolled_back_by, status, committed_at, converged_at, execution_log
                 FROM releases WHERE id = ?1",
                [id.as_str()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((kind, rollback_of, rolled_back_by, status, committed_at, converged_at, log)) = row else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT tenant_id, from_generation, to_generation, from_schema_version, to_schema_version,
                    from_contract_hash, to_contract_hash
             FROM release_tenants WHERE release_id = ?1 ORDER BY position",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut tenants = Vec::new();
        for row in rows {
            let (tenant, from, to, from_schema, to_schema, from_contract, to_contract) = row?;
            tenants.push(TenantChange {
                tenant: TenantId::new(tenant).map_err(corrupt)?,
                from_generation: Generation(from as u64),
                to_generation: Generation(to as u64),
                from_schema_version: SchemaVersion::new(&from_schema).map_err(corrupt)?,
                to_schema_version: SchemaVersion::new(&to_schema).map_err(corrupt)?,
                from_contract_hash: ContractHash::new(&from_contract).map_err(corrupt)?,
                to_contract_hash: ContractHash::new(&to_contract).map_err(corrupt)?,
            });
        }
        Ok(Some(Release {
            id: id.clone(),
            kind,
            rollback_of: rollback_of.map(ReleaseId::new).transpose().map_err(corrupt)?,
            rolled_back_by: rolled_back_by.map(ReleaseId::new).transpose().map_err(corrupt)?,
            status: parse_status(&status)?,
            committed_at: committed_at as u64,
            converged_at: converged_at.map(|t| t as u64),
            tenants,
            execution_log: serde_json::from_str(&log).map_err(corrupt)?,
        }))
    }

    fn convergence(&mut self, id: &ReleaseId) -> Result<Option<Convergence>, StoreError> {
        let Some(release) = self.load_release(id)? else { return Ok(None) };
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
        let tenants: Vec<TenantId> = release.tenants.iter().map(|c| c.tenant.clone()).collect();
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

    fn mark_converged(&mut self, release: &Release, conv: &Convergence, now: u64) -> Result<(), StoreError> {
        let mut log = release.execution_log.clone();
        let latency = conv.max_ms.unwrap_or(0);
        for step in log.steps.iter_mut().filter(|s| s.status == "pending") {
            step.status = "ok".into();
            step.duration_ms = latency as f64;
            step.detail = format!(
                "{}/{} live PoPs acknowledged every tenant's new generation; ack latency from commit p50 {} ms, \
                 p99 {} ms, max {} ms (bound: manifest max age {} ms)",
                conv.acked,
                conv.total,
                conv.p50_ms.unwrap_or(0),
                conv.p99_ms.unwrap_or(0),
                latency,
                conv.bound_ms
            );
        }
        log.summary.insert("converged".into(), true.into());
        log.summary.insert("convergence_ms".into(), latency.into());
        log.summary.insert("pops_acked".into(), conv.acked.into());
        let json = serde_json::to_string(&log).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.conn.execute(
            "UPDATE releases SET status = 'converged', converged_at = ?1, execution_log = ?2 WHERE id = ?3 AND status = 'committed'",
            params![now as i64, json, release.id.as_str()],
        )?;
        self.open.remove(&release.id);
        self.metrics.converged(latency);
        tracing::info!(release = %release.id, latency_ms = latency, pops = conv.total, "release converged");
        Ok(())
    }

    fn flush_acks(&mut self, acks: Vec<(Ack, Reply<()>)>) {
        if acks.is_empty() {
            return;
        }
        let now = now_ms();
        let mut accepted = Vec::with_capacity(acks.len());
        for (ack, reply) in acks {
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
                Some(_) => accepted.push((ack, reply)),
            }
        }
        let result = self.insert_acks(&accepted, now);
        let ok = result.is_ok();
        let err_text = result.err().map(|e| e.to_string());
        let n = accepted.len() as u64;
        let mut stored = Vec::with_capacity(accepted.len());
        for (ack, reply) in accepted {
            stored.push(ack);
            let _ = reply.send(match &err_text {
                None => Ok(()),
                Some(e) => Err(StoreError::Internal(e.clone())),
            });
        }
        if ok {
            self.metrics.acks(n);
            let mut completed = HashSet::new();
            for ack in &stored {
                self.pops.insert(ack.pop.clone(), now);
                completed.extend(self.open.record(ack));
            }
            for id in completed {
                if let Err(e) = self.converge_if_complete(&id, now) {
                    tracing::error!(cause = %e, release = %id, "convergence check failed");
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
        let Some(release) = self.load_release(id)? else { return Ok(()) };
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

    fn insert_acks(&mut self, acks: &[(Ack, Reply<()>)], now: u64) -> Result<(), StoreError> {
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
            for (ack, _) in acks {
                let observed = i64::try_from(ack.observed_at).unwrap_or(i64::MAX);
                insert.execute(params![
                    ack.pop.as_str(),
                    ack.tenant.as_str(),
                    sql_gen(ack.generation)?,
                    observed,
                    now as i64
                ])?;
                if pops.insert(ack.pop.as_str()) {
                    seen.execute(params![ack.pop.as_str(), now as i64])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn record_report(&mut self, report: Report) -> Result<ReportOutcome, StoreError> {
        if self.tenant(&report.tenant).is_none() {
            return Err(Refusal::NotFound(format!("tenant {} does not exist", report.tenant)).into());
        }
        let now = now_ms();
        let body = serde_json::to_string(&report).map_err(|e| StoreError::Internal(e.to_string()))?;
        let kind =
            serde_json::to_value(report.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.conn.execute(
            "INSERT INTO reports (pop, tenant_id, kind, generation, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![report.pop.as_str(), report.tenant.as_str(), kind, sql_gen(report.generation)?, body, now as i64],
        )?;
        let id = self.conn.last_insert_rowid();
        self.metrics.report(report.kind);
        let auto_rollback = match self.settings.auto_rollback {
            Some(policy) => self.apply_auto_rollback(&report, policy, now)?,
            None => None,
        };
        Ok(ReportOutcome { id, auto_rollback })
    }

    /// Rolls back the release that set the reported generation, if the policy's number of
    /// reports against that release arrived within its window after commit.
    fn apply_auto_rollback(
        &mut self,
        report: &Report,
        policy: AutoRollback,
        now: u64,
    ) -> Result<Option<ReleaseId>, StoreError> {
        let release: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT r.id, r.committed_at FROM generations g JOIN releases r ON r.id = g.release_id
                 WHERE g.tenant_id = ?1 AND g.generation = ?2 AND r.kind = 'release'
                   AND r.status IN ('committed', 'converged')",
                params![report.tenant.as_str(), sql_gen(report.generation)?],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, committed_at)) = release else { return Ok(None) };
        let window_end = committed_at.saturating_add(policy.window.as_millis() as i64);
        if now as i64 > window_end {
            return Ok(None);
        }
        let count: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM reports rp JOIN release_tenants rt
               ON rt.tenant_id = rp.tenant_id AND rt.to_generation = rp.generation
             WHERE rt.release_id = ?1 AND rp.received_at BETWEEN ?2 AND ?3",
            params![id, committed_at, window_end],
            |r| r.get(0),
        )?;
        if count < i64::from(policy.reports) {
            return Ok(None);
        }
        let id = ReleaseId::new(id).map_err(corrupt)?;
        let reason = format!(
            "automatic: {count} edge report(s) within {} s of commit (policy: {} reports)",
            policy.window.as_secs(),
            policy.reports
        );
        let rollback = self.rollback(&id, &reason, true, Some(now))?;
        Ok(Some(rollback.id))
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
            return Err(StoreError::Internal(format!("rollback verification failed for tenant {}", c.tenant)));
        }
    }
    let example = changes.first().map_or(String::new(), |c| {
        format!(" (e.g. {}: generation {} carries schema {})", c.tenant, c.to_generation, c.to_schema_version)
    });
    Ok(step(
        "verify rollback",
        "ok",
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
            return Err(StoreError::Internal(format!(
                "generation history of tenant {} lacks generation {}: a rollback would be impossible",
                c.tenant, c.from_generation
            )));
        }
    }
    Ok(step(
        "verify rollback path",
        "ok",
        format!(
            "pre-release state of {} tenant(s) is recorded in the generation history; a rollback can restore it",
            changes.len()
        ),
        t,
    ))
}

fn step(name: &str, status: &str, detail: String, started: Instant) -> Step {
    Step {
        step: name.into(),
        phase: "rollback_verification".into(),
        status: status.into(),
        detail,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// PoPs that acknowledged something within `window_ms` before `now`.
fn live_pops(conn: &Connection, now: u64, window_ms: u64) -> Result<Vec<PopId>, StoreError> {
    let since = now.saturating_sub(window_ms) as i64;
    let mut stmt = conn.prepare_cached("SELECT id FROM pops WHERE last_seen >= ?1 ORDER BY id")?;
    let ids = stmt.query_map([since], |r| r.get::<_, String>(0))?;
    ids.map(|id| PopId::new(id?).map_err(corrupt)).collect()
}

fn parse_status(s: &str) -> Result<ReleaseStatus, StoreError> {
    Ok(match s {
        "committed" => ReleaseStatus::Committed,
        "converged" => ReleaseStatus::Converged,
        "rolled_back" => ReleaseStatus::RolledBack,
        "failed" => ReleaseStatus::Failed,
        other => return Err(corrupt(format!("release status {other:?}"))),
    })
}

/// SHA-256 of the canonical JSON of a release request: what idempotency compares.
fn request_hash(req: &ReleaseRequest) -> Result<String, StoreError> {
    let value = serde_json::to_value(req).map_err(|e| StoreError::Internal(e.to_string()))?;
    let canonical =
        edgegen_shared::contract::canonical_json(&value).map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Collects execution-log steps with measured durations.
struct LogBuilder {
    task: String,
    timestamp: String,
    steps: Vec<Step>,
}

impl LogBuilder {
    fn new(task: String, now: u64) -> Self {
        LogBuilder { task, timestamp: rfc3339(now), steps: Vec::new() }
    }

    fn push(&mut self, step: &str, phase: &str, status: &str, detail: String, started: Instant) {
        self.steps.push(Step {
            step: step.into(),
            phase: phase.into(),
            status: status.into(),
            detail,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
    }

    fn skipped(&mut self, step: &str, phase: &str, reason: &str) {
        self.steps.push(Step {
            step: step.into(),
            phase: phase.into(),
            status: "skipped".into(),
            detail: reason.into(),
            duration_ms: 0.0,
        });
    }

    fn pending(&mut self, step: &str, phase: &str, detail: String) {
        self.steps.push(Step {
            step: step.into(),
            phase: phase.into(),
            status: "pending".into(),
            detail,
            duration_ms: 0.0,
        });
    }

    fn finish(
        self,
        id: &ReleaseId,
        started: Instant,
        mut summary: serde_json::Map<String, serde_json::Value>,
    ) -> ExecutionLog {
        summary.insert("duration_ms".into(), (started.elapsed().as_secs_f64() * 1000.0).into());
        ExecutionLog {
            execution_id: id.to_string(),
            timestamp: self.timestamp,
            task: self.task,
            steps: self.steps,
            summary,
        }
    }
}

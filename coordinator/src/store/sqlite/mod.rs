//! The SQLite store: one file (`edgegen.db`) under the data directory, WAL journal,
//! `synchronous = FULL` (a commit is on disk before it is acknowledged), foreign keys on.
//!
//! One writer thread owns the connection and executes commands in arrival order, so
//! releases are serialized without lock contention: each release or rollback is one
//! `BEGIN IMMEDIATE` transaction (all tenants or none, also across `kill -9`). Consecutive
//! acknowledgements and manifest fetch records (the lease bounds of the convergence report)
//! are group-committed: one transaction for a batch of both, each caller answered after
//! that transaction is durable. The in-memory tenant map that serves manifests is updated
//! only after a commit returned.

mod edge;
mod load;
mod outbox;
mod releases;
mod schema;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use edgegen_shared::api::{Convergence, NewTenant, Release, ReleaseRequest, Step, StoredReport, Tenant};
use edgegen_shared::{Ack, Generation, PopId, ReleaseId, Report, TenantId};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Committed, PurgePlan, Removal, Store, StoreError};
use crate::clock::now_ms;
use crate::convergence::{FetchRecord, OpenReleases};
use crate::domain::{Refusal, TenantState};
use crate::metrics::Metrics;
use crate::outbox::Effect;

pub use crate::store::StoreSettings;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// An acknowledgement, when the store received it, and its caller.
type AckWrite = (Ack, u64, Reply<()>);
/// A manifest fetch record to write, and its caller.
type FetchWrite = (PopId, TenantId, FetchRecord, Reply<()>);

enum Command {
    RegisterTenant(NewTenant, Reply<Tenant>),
    SetTenantHosts(TenantId, Vec<String>, Reply<Tenant>),
    RemoveTenant(TenantId, Reply<Removal>),
    CommitRelease(ReleaseRequest, Option<String>, Vec<Step>, PurgePlan, Reply<Committed>),
    Rollback(ReleaseId, String, Option<u64>, Reply<Release>),
    Release(ReleaseId, Reply<Option<Release>>),
    Releases(u32, u32, Reply<(u64, Vec<Release>)>),
    Reports(u32, u32, Reply<(u64, Vec<StoredReport>)>),
    Convergence(ReleaseId, Reply<Option<Convergence>>),
    /// An acknowledgement and when the store received it (Unix ms, before it queued).
    Ack(Ack, u64, Reply<()>),
    Fetch(PopId, TenantId, FetchRecord, Reply<()>),
    Report(Report, Reply<i64>),
    ReportsAgainst(TenantId, Generation, u64, Reply<Option<crate::domain::ReportedRelease>>),
    PastDeadline(u64, u64, Reply<Vec<(ReleaseId, u64)>>),
    DueEffects(u64, usize, Reply<Vec<Effect>>),
    RecordAttempt(i64, Option<Step>, Option<u64>, Reply<()>),
}

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
            .map_err(|e| StoreError::caused(format!("creating {}", data_dir.display()), e))?;
        let conn = Connection::open(data_dir.join("edgegen.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::create(&conn)?;

        let tenants = Arc::new(RwLock::new(load::load_tenants(&conn)?));
        let open = load::load_open_releases(&conn)?;
        let pops = load::load_pops(&conn)?;
        // Annotations of data already durable (execution-log refinements) go through a
        // second connection whose commits skip their own fsync: see `Writer::without_fsync`.
        let annotations = Connection::open(data_dir.join("edgegen.db"))?;
        annotations.pragma_update(None, "synchronous", "NORMAL")?;
        annotations.pragma_update(None, "foreign_keys", "ON")?;
        annotations.busy_timeout(std::time::Duration::from_secs(5))?;
        let (tx, rx) = mpsc::channel(4096);
        let mut writer = Writer { conn, annotations, tenants: Arc::clone(&tenants), open, pops, settings, metrics };
        std::thread::Builder::new()
            .name("edgegen-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::caused("starting the store thread", e))?;
        Ok(SqliteStore { commands: tx, tenants })
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.commands.send(make(tx)).await.map_err(|_| StoreError::internal("the store thread stopped"))?;
            rx.await.map_err(|_| StoreError::internal("the store thread dropped a request"))?
        })
    }
}

impl Store for SqliteStore {
    fn tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Option<TenantState>, StoreError>> {
        let found = self.tenants.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>> {
        let mut all: Vec<TenantState> =
            self.tenants.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Box::pin(std::future::ready(Ok(all)))
    }

    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |r| Command::RegisterTenant(tenant, r))
    }

    fn set_tenant_hosts(&self, id: TenantId, hosts: Vec<String>) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |r| Command::SetTenantHosts(id, hosts, r))
    }

    fn remove_tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Removal, StoreError>> {
        self.call(move |r| Command::RemoveTenant(id, r))
    }

    fn commit_release(
        &self,
        request: ReleaseRequest,
        key: Option<String>,
        analysis_steps: Vec<Step>,
        purge: PurgePlan,
    ) -> BoxFuture<'_, Result<Committed, StoreError>> {
        self.call(move |r| Command::CommitRelease(request, key, analysis_steps, purge, r))
    }

    fn rollback(
        &self,
        id: ReleaseId,
        reason: String,
        trigger_at: Option<u64>,
    ) -> BoxFuture<'_, Result<Release, StoreError>> {
        self.call(move |r| Command::Rollback(id, reason, trigger_at, r))
    }

    fn release(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Release>, StoreError>> {
        self.call(move |r| Command::Release(id, r))
    }

    fn releases(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<Release>), StoreError>> {
        self.call(move |r| Command::Releases(offset, limit, r))
    }

    fn reports(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<StoredReport>), StoreError>> {
        self.call(move |r| Command::Reports(offset, limit, r))
    }

    fn convergence(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Convergence>, StoreError>> {
        self.call(move |r| Command::Convergence(id, r))
    }

    fn record_ack(&self, ack: Ack) -> BoxFuture<'_, Result<(), StoreError>> {
        let received_at = now_ms();
        self.call(move |r| Command::Ack(ack, received_at, r))
    }

    fn past_deadline(&self, deadline_ms: u64, now: u64) -> BoxFuture<'_, Result<Vec<(ReleaseId, u64)>, StoreError>> {
        self.call(move |r| Command::PastDeadline(deadline_ms, now, r))
    }

    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.call(move |r| Command::Report(report, r))
    }

    fn reports_against(
        &self,
        tenant: TenantId,
        generation: Generation,
        window_ms: u64,
    ) -> BoxFuture<'_, Result<Option<crate::domain::ReportedRelease>, StoreError>> {
        self.call(move |r| Command::ReportsAgainst(tenant, generation, window_ms, r))
    }

    fn record_fetch(&self, pop: PopId, tenant: TenantId, record: FetchRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |r| Command::Fetch(pop, tenant, record, r))
    }

    fn single_process(&self) -> bool {
        true
    }

    fn fetched(&self, _: PopId, _: TenantId) -> BoxFuture<'_, Result<Option<Generation>, StoreError>> {
        // One process: the engine's in-memory ledger vouches for acks (after a restart, a
        // PoP's next manifest request records it again).
        Box::pin(std::future::ready(Ok(None)))
    }

    fn due_effects(&self, now: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Effect>, StoreError>> {
        self.call(move |r| Command::DueEffects(now, limit, r))
    }

    fn record_attempt(
        &self,
        effect: i64,
        step: Option<Step>,
        retry_at: Option<u64>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |r| Command::RecordAttempt(effect, step, retry_at, r))
    }
}

struct Writer {
    conn: Connection,
    /// The same database, `synchronous = NORMAL`: only for annotations of durable data.
    annotations: Connection,
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

fn corrupt(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::corrupt("a stored value", source)
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
            // Every command of a batch was sent before any of them ran, so none depends on
            // another's effect and any order is a valid one: the edge's writes
            // (acknowledgements and fetch records) go first, in one group commit, so they
            // never wait behind the batch's other writes (a report's or a commit's own
            // durable commit); the rest follow in arrival order.
            let mut acks = Vec::new();
            let mut fetches = Vec::new();
            let mut rest = Vec::new();
            for cmd in batch {
                match cmd {
                    Command::Ack(ack, at, reply) => acks.push((ack, at, reply)),
                    Command::Fetch(pop, tenant, record, reply) => fetches.push((pop, tenant, record, reply)),
                    other => rest.push(other),
                }
            }
            self.flush_edge(acks, fetches);
            for other in rest {
                self.execute(other);
            }
        }
    }

    fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::RegisterTenant(t, reply) => {
                let _ = reply.send(self.register_tenant(t));
            }
            Command::SetTenantHosts(id, hosts, reply) => {
                let _ = reply.send(self.set_tenant_hosts(&id, hosts));
            }
            Command::RemoveTenant(id, reply) => {
                let _ = reply.send(self.remove_tenant(&id));
            }
            Command::CommitRelease(req, key, steps, purge, reply) => {
                let _ = reply.send(self.commit_release(req, key, steps, purge));
            }
            Command::Rollback(id, reason, trigger_at, reply) => {
                let _ = reply.send(self.rollback(&id, &reason, trigger_at.is_some(), trigger_at));
            }
            Command::Release(id, reply) => {
                let _ = reply.send(load::load_release(&self.conn, &id));
            }
            Command::Releases(offset, limit, reply) => {
                let _ = reply.send(load::list_releases(&self.conn, offset, limit));
            }
            Command::Reports(offset, limit, reply) => {
                let _ = reply.send(load::list_reports(&self.conn, offset, limit));
            }
            Command::Convergence(id, reply) => {
                let _ = reply.send(self.convergence(&id));
            }
            Command::Report(report, reply) => {
                let _ = reply.send(self.record_report(report));
            }
            Command::ReportsAgainst(tenant, generation, window_ms, reply) => {
                let _ = reply.send(self.reports_against(&tenant, generation, window_ms));
            }
            Command::Ack(ack, at, reply) => self.flush_edge(vec![(ack, at, reply)], Vec::new()),
            Command::Fetch(pop, tenant, record, reply) => {
                self.flush_edge(Vec::new(), vec![(pop, tenant, record, reply)])
            }
            Command::DueEffects(now, limit, reply) => {
                let _ = reply.send(self.due_effects(now, limit));
            }
            Command::RecordAttempt(effect, step, retry_at, reply) => {
                let _ = reply.send(self.record_attempt(effect, step, retry_at));
            }
            Command::PastDeadline(deadline_ms, now, reply) => {
                let _ = reply.send(self.past_deadline(deadline_ms, now));
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
}

/// Reads a typed enum stored as its wire name.
fn enum_column<T>(text: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::internal(format!("stored data does not validate: {what} {text:?}")))
}

//! The PostgreSQL store: one database shared by any number of coordinator replicas
//! (`--store postgres://USER@HOST:PORT/DB`). The decisions are the same pure functions the
//! SQLite store applies ([`crate::domain`], [`crate::execlog`], [`crate::outbox`]); this
//! module only sequences SQL, and every guarantee across replicas rests on the database:
//!
//! - **Manifests never go back.** Once a release's commit has been acknowledged to its
//!   caller, a manifest served by any replica carries the new generation. Each replica
//!   serves [`Store::tenant`] from its own cache. Every tenant write bumps a one-row epoch;
//!   each replica holds a lease row stating the epoch its cache has applied, and a change
//!   is acknowledged only once every replica holding a live lease has applied it (the
//!   others' leases have lapsed, and a replica serves from memory only inside its lease).
//!   Without a lease, a replica validates each read by a round that *started after the
//!   read arrived*, one cheap query shared by all concurrent readers ([`tenant_cache`] has
//!   the argument).
//! - **No collisions.** Release ids come from one sequence (`rel-{nextval}`); a release
//!   locks its tenants' rows (`SELECT … ORDER BY id FOR UPDATE`) and plans from the locked
//!   rows, so concurrent releases through different replicas serialize per tenant and
//!   never skip or reuse a generation. An idempotency key is `UNIQUE`: a concurrent
//!   duplicate replays the release that won.
//! - **Acks pool.** Acks are rows, and so is the first fetch of each manifest generation by
//!   each PoP (what vouches for its ack), so a PoP may fetch through one replica and
//!   acknowledge through another (the ack's statement checks the fetch record). Convergence
//!   is computed from the rows, whichever replica received each; each replica checks the
//!   releases its acks completed right after they committed ([`completion`]), and a release
//!   is marked converged by a conditional `UPDATE` (once).
//! - **Singletons act once.** The releases past the convergence deadline are listed to one
//!   replica at a time (a transaction advisory lock); a rollback re-checks the release
//!   under its tenants' row locks, so
//!   two replicas deciding the same rollback commit it once (the other is refused and
//!   counts as "not triggered"); outbox effects are claimed with `FOR UPDATE SKIP LOCKED`
//!   and a lease, so each attempt is made by one replica.
//!
//! Connections come from a small pool and keep their prepared statements; each call runs
//! on a blocking thread. Acks and the fetch records that vouch for them are group-committed
//! ([`group`]): one statement per batch, each caller answered after it committed (an ack
//! answered 204 is durable). The manifest path reads the replica's validated cache
//! ([`tenant_cache`]) on its own connection.

mod completion;
mod edge;
#[cfg(test)]
mod explain;
mod group;
mod pool;
mod releases;
mod schema;
mod seen;
mod tenant_cache;

use std::collections::HashMap;
use std::sync::Arc;

use edgegen_shared::api::{
    Convergence, ExecutionLog, NewTenant, Release, ReleaseKind, ReleaseRequest, ReleaseStatus, Step, StoredReport,
    Tenant, TenantChange,
};
use edgegen_shared::{Ack, ContractHash, Generation, PopId, ReleaseId, Report, SchemaVersion, TenantId};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, Row};

use super::{AckOutcome, BoxFuture, Committed, PurgePlan, Removal, Store, StoreError, StoreSettings};
use crate::clock::now_ms;
use crate::domain::{Refusal, TenantState};
use crate::execlog;
use crate::metrics::Metrics;
use crate::outbox::Effect;

/// Advisory lock keys (one namespace for edgegen).
const SCHEMA_LOCK: i64 = 0x6564_6765_0001;
const DEADLINE_LOCK: i64 = 0x6564_6765_0002;

/// How long a claimed outbox effect stays with the replica that claimed it; after that,
/// another replica may take it (the claimer died mid-delivery).
const CLAIM_LEASE_MS: u64 = 30_000;

/// Ack writer threads per replica: while one batch commits, the next gathers on the other.
/// (One writer, larger batches, measured within the noise of the 2-core bench machine:
/// BENCHMARKS.md.)
const ACK_WRITERS: usize = 2;

/// Fetch-record writer threads per replica.
const FETCH_WRITERS: usize = 2;

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

struct Inner {
    pool: pool::Pool,
    /// The manifest path's tenant states, served under a lease or validated per read
    /// ([`tenant_cache`]).
    cache: tenant_cache::TenantCache,
    /// Acks (and whether this replica's memory vouches for each), group-committed.
    acks: group::Group<(Ack, bool), AckOutcome>,
    /// Which releases committed acks completed, checked off the acks' answers.
    completion: completion::Completion,
    /// When this replica last wrote each PoP's `last_seen`.
    seen: seen::Refresh,
    /// First fetches of a manifest generation by a PoP, group-committed.
    fetches: group::Group<Fetch, ()>,
    settings: StoreSettings,
    metrics: Arc<Metrics>,
}

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl PostgresStore {
    /// Connects, creates the schema if needed (under an advisory lock, so replicas starting
    /// together do not race), and starts its writer threads.
    ///
    /// # Errors
    /// When the database cannot be reached or the schema created.
    pub fn open(url: &str, settings: StoreSettings, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let pool = pool::Pool::new(url);
        let mut c = pool.get()?;
        c.client.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])?;
        let created = c.client.batch_execute(schema::SCHEMA);
        c.client.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])?;
        created?;
        pool.put(c);
        let cache = tenant_cache::TenantCache::start(url, Arc::clone(&metrics))?;
        let (acks, ack_writers) = group::Group::new();
        let (fetches, fetch_writers) = group::Group::new();
        let completion = completion::Completion::new();
        let seen = seen::Refresh::new(settings.pop_live_window_ms);
        let inner = Arc::new(Inner { pool, cache, acks, completion, seen, fetches, settings, metrics });
        inner.completion.start(Arc::downgrade(&inner))?;
        ack_writers.start("acks", ACK_WRITERS, &Arc::downgrade(&inner), Inner::record_acks)?;
        fetch_writers.start("fetches", FETCH_WRITERS, &Arc::downgrade(&inner), record_fetches)?;
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
        self.with_session(|s, inner| f(&mut s.client, inner))
    }

    /// Like [`Inner::with`], with the connection's prepared statements.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&mut pool::Session, &Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut s = self.pool.get()?;
        let out = f(&mut s, self);
        self.pool.put(s);
        out
    }
}

impl Store for PostgresStore {
    fn tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Option<TenantState>, StoreError>> {
        Box::pin(async move { Ok(self.inner.cache.tenants(std::slice::from_ref(&id)).await?.pop()) })
    }

    fn tenants_of(&self, ids: Vec<TenantId>) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>> {
        Box::pin(async move { self.inner.cache.tenants(&ids).await })
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>> {
        self.call(|c, _| {
            let rows = c.query(
                "SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants
                 WHERE removed_at IS NULL ORDER BY id",
                &[],
            )?;
            rows.iter().map(tenant_row).collect()
        })
    }

    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |c, inner| releases::register_tenant(c, &inner.settings, tenant))
    }

    fn set_tenant_hosts(&self, id: TenantId, hosts: Vec<String>) -> BoxFuture<'_, Result<Tenant, StoreError>> {
        self.call(move |c, inner| releases::set_tenant_hosts(c, &inner.settings, &id, hosts))
    }

    fn remove_tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Removal, StoreError>> {
        // Refused while a release converges: first, the acks answered before it are checked.
        Box::pin(async move {
            self.inner.completion.settled().await?;
            self.call(move |c, inner| releases::remove_tenant(c, &inner.settings, &id)).await
        })
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

    fn rollback(
        &self,
        id: ReleaseId,
        reason: String,
        trigger_at: Option<u64>,
    ) -> BoxFuture<'_, Result<Release, StoreError>> {
        self.call(move |c, s| s.rollback(c, &id, &reason, trigger_at.is_some(), trigger_at))
    }

    fn release(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Release>, StoreError>> {
        // The status reflects the acks this replica answered before the read.
        Box::pin(async move {
            self.inner.completion.settled().await?;
            self.call(move |c, _| load_release(c, &id)).await
        })
    }

    fn releases(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<Release>), StoreError>> {
        let listed = self.call(move |c, _| {
            let total: i64 = c.query_one("SELECT COUNT(*) FROM releases", &[])?.get(0);
            let rows = c.query(
                "SELECT id FROM releases ORDER BY seq DESC LIMIT $1 OFFSET $2",
                &[&i64::from(limit), &i64::from(offset)],
            )?;
            let mut releases = Vec::with_capacity(rows.len());
            for row in rows {
                let id = ReleaseId::new(row.get::<_, String>(0)).map_err(|e| StoreError::corrupt("a release id", e))?;
                releases.extend(load_release(c, &id)?);
            }
            Ok((u64::try_from(total).unwrap_or(0), releases))
        });
        Box::pin(async move {
            self.inner.completion.settled().await?;
            listed.await
        })
    }

    fn reports(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<StoredReport>), StoreError>> {
        self.call(move |c, _| {
            let total: i64 = c.query_one("SELECT COUNT(*) FROM reports", &[])?.get(0);
            let rows = c.query(
                "SELECT id, received_at, body FROM reports ORDER BY id DESC LIMIT $1 OFFSET $2",
                &[&i64::from(limit), &i64::from(offset)],
            )?;
            let reports = rows
                .into_iter()
                .map(|row| {
                    let (id, received_at, body): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
                    let report =
                        serde_json::from_str(&body).map_err(|e| StoreError::corrupt(format!("report {id}"), e))?;
                    Ok(StoredReport { id, received_at: u64::try_from(received_at).unwrap_or(0), report })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok((u64::try_from(total).unwrap_or(0), reports))
        })
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
        Box::pin(async move {
            match self.inner.acks.write((ack, true)).await? {
                AckOutcome::Recorded { .. } => Ok(()),
                AckOutcome::Unvouched => Err(StoreError::internal("an ack vouched for was refused as unvouched")),
            }
        })
    }

    fn record_vouched_ack(&self, ack: Ack, vouched: bool) -> BoxFuture<'_, Result<AckOutcome, StoreError>> {
        Box::pin(self.inner.acks.write((ack, vouched)))
    }

    fn past_deadline(&self, deadline_ms: u64, now: u64) -> BoxFuture<'_, Result<Vec<(ReleaseId, u64)>, StoreError>> {
        self.call(move |c, _| edge::past_deadline(c, deadline_ms, now))
    }

    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.call(move |c, s| s.record_report(c, report))
    }

    fn reports_against(
        &self,
        tenant: TenantId,
        generation: Generation,
        window_ms: u64,
    ) -> BoxFuture<'_, Result<Option<crate::domain::ReportedRelease>, StoreError>> {
        self.call(move |c, _| edge::reports_against(c, &tenant, generation, window_ms))
    }

    fn record_fetch(
        &self,
        pop: PopId,
        tenant: TenantId,
        record: crate::convergence::FetchRecord,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.fetches.write(Fetch {
            pop,
            tenant,
            generation: record.generation,
            lease_until: record.lease_until,
        }))
    }

    fn fetched(&self, pop: PopId, tenant: TenantId) -> BoxFuture<'_, Result<Option<Generation>, StoreError>> {
        // The engine asks through `record_vouched_ack` (one statement with the ack); this
        // stays for the trait's other callers.
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
                    release: r.get::<_, Option<String>>(1).map(ReleaseId::new).transpose().map_err(corrupt)?,
                    kind: serde_json::from_str(r.get(2))?,
                    attempts: u32::try_from(r.get::<_, i64>(3)).unwrap_or(u32::MAX),
                });
            }
            out.sort_by_key(|e| e.id);
            Ok(out)
        })
    }

    fn record_attempt(
        &self,
        effect: i64,
        step: Option<Step>,
        retry_at: Option<u64>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(move |c, _| {
            let mut tx = c.transaction()?;
            let release: Option<String> = tx
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
            if let (Some(release), Some(step)) = (release, step) {
                edit_log(&mut tx, &release, |log| execlog::replace_step(log, step))?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// That a PoP was served a tenant's manifest at a generation.
struct Fetch {
    pop: PopId,
    tenant: TenantId,
    generation: Generation,
    /// No statement handed to the PoP expires after this (Unix ms), when known.
    lease_until: Option<u64>,
}

/// Records a batch of fetches in one statement: per (PoP, tenant), the highest generation
/// and the latest lease bound (rows in key order, so concurrent batches lock them in one
/// order). `GREATEST` ignores NULL: a row from before lease bounds were kept takes the new
/// one (its statements were issued earlier, so they expire before it).
fn record_fetches(_: &Inner, s: &mut pool::Session, fetches: &[Fetch]) -> group::BatchResult<()> {
    let mut results = Vec::with_capacity(fetches.len());
    let mut highest: std::collections::BTreeMap<(&str, &str), (i64, Option<i64>)> = std::collections::BTreeMap::new();
    for f in fetches {
        match sql_gen(f.generation) {
            Ok(g) => {
                let until = f.lease_until.map(|u| i64::try_from(u).unwrap_or(i64::MAX));
                let entry = highest.entry((f.pop.as_str(), f.tenant.as_str())).or_insert((g, until));
                *entry = (entry.0.max(g), entry.1.max(until));
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let (mut pops, mut tenants, mut generations, mut untils) = (vec![], vec![], vec![], vec![]);
    for ((pop, tenant), (g, until)) in highest {
        pops.push(pop);
        tenants.push(tenant);
        generations.push(g);
        untils.push(until);
    }
    if !pops.is_empty() {
        let record = s.prepared(
            "INSERT INTO fetches (pop, tenant_id, generation, lease_until)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) ORDER BY 1, 2
             ON CONFLICT (pop, tenant_id) DO UPDATE SET generation = GREATEST(fetches.generation, EXCLUDED.generation),
               lease_until = GREATEST(fetches.lease_until, EXCLUDED.lease_until)",
        )?;
        s.client.execute(&record, &[&pops, &tenants, &generations, &untils])?;
    }
    Ok(results)
}

/// Bumps the tenant epoch in `tx` and returns it, to stamp the tenants `tx` changes with,
/// and announces it to every replica's lease keeper when `tx` commits. The epoch row stays
/// locked until `tx` ends, so epochs are handed out in commit order: call it after locking
/// (or inserting) the tenants' rows, never before. Once `tx` committed,
/// [`tenant_cache::fence`] it before acknowledging it.
fn bump_epoch(tx: &mut impl GenericClient) -> Result<i64, postgres::Error> {
    Ok(tx
        .query_one(
            "WITH b AS (UPDATE tenant_epoch SET n = n + 1 RETURNING n) SELECT n, pg_notify('edgegen_epoch', '') FROM b",
            &[],
        )?
        .get(0))
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
         WHERE id = ANY($1) AND removed_at IS NULL ORDER BY id FOR UPDATE",
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

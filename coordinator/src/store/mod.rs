//! Durable state behind a small trait, so the engine and handlers never see SQL. Only this
//! module's implementations speak SQL to the coordinator's own database.
//!
//! A store applies the pure decisions ([`crate::domain`] plans, [`crate::execlog`] logs,
//! [`crate::convergence`] tracking) inside its transactions, so "all tenants or none" holds
//! across crashes, and writes a release's post-commit effects ([`crate::outbox`]) in the
//! same transaction. Reads that must be fast (the manifest path, [`Store::tenant`]) never
//! return a state older than a commit already acknowledged: the SQLite store serves them
//! from memory, updated right after a commit is durable with nothing fallible in between;
//! each PostgreSQL replica serves them from a cache validated, per read, by a database
//! snapshot taken after the read arrived (one query shared by concurrent reads).

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use edgegen_shared::api::{
    Convergence, NewTenant, Release, ReleaseKind, ReleaseRequest, Step, StoredReport, Tenant, TenantChange,
};
use edgegen_shared::{Ack, Generation, PopId, ReleaseId, Report, TenantId};

use crate::domain::{Refusal, TenantState};
use crate::outbox::Effect;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cause of a store failure, shared so one failed batch can answer every caller in it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation that did not happen.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// Refused: the request conflicts with the state or is impossible. Nothing changed.
    Refused(Refusal),
    /// The store failed (I/O, corruption). Nothing changed: the transaction rolled back.
    /// `context` says what was being done; `source` keeps the underlying error.
    Internal {
        /// What the store was doing.
        context: String,
        /// The underlying error, if there is one.
        source: Option<Cause>,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Refused(r) => write!(f, "refused: {r:?}"),
            StoreError::Internal { context, .. } => f.write_str(context),
        }
    }
}

/// The source of an internal failure is the underlying error itself (not the `Arc` that
/// shares it), so a caller can downcast it to its own type.
impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Internal { source: Some(cause), .. } => Some(&**cause),
            _ => None,
        }
    }
}

impl StoreError {
    /// A failure with no underlying error.
    pub fn internal(context: impl Into<String>) -> Self {
        StoreError::Internal { context: context.into(), source: None }
    }

    /// A failure caused by `source` while doing `context`.
    pub fn caused(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Internal { context: context.into(), source: Some(Arc::new(source)) }
    }

    /// Stored data that does not validate (`what` names it).
    pub fn corrupt(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::caused(format!("stored data does not validate: {}", what.into()), source)
    }

    /// The message and every source below it, joined by `: ` (for logs).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        StoreError::Refused(r)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::caused("SQLite", e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::caused("encoding or decoding stored JSON", e)
    }
}

/// What [`Store::record_vouched_ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded (or already recorded: acks are idempotent). `fetched`: the fetch record
    /// that vouched for it, when the store looked one up.
    Recorded {
        /// The highest generation any replica recorded serving the ack's PoP.
        fetched: Option<Generation>,
    },
    /// No fetch vouches for it: nothing was written.
    Unvouched,
}

/// Settings the store applies to releases.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Manifest max age: the convergence bound.
    pub manifest_max_age_ms: u64,
    /// Each tenant's max age and max stale (the convergence report's lease bound for a PoP
    /// without a fetch record is commit + the tenant's max stale).
    pub leases: crate::config::LeasePolicy,
    /// PoPs seen within this window count as live.
    pub pop_live_window_ms: u64,
    /// The CDN service releases purge through (its effects go to the outbox), if any.
    pub cdn_service: Option<String>,
    /// `Some(max entries)` when the coordinator owns the edge's `edgegen_hosts` Config
    /// Store: a registration is refused past that many hosts in all, and writes the
    /// store's sync ([`crate::outbox::EffectKind::SyncHosts`]) to the outbox.
    pub hosts_max_entries: Option<usize>,
    /// Woken after each commit that wrote an outbox effect.
    pub outbox_wake: Option<Arc<tokio::sync::Notify>>,
}

impl StoreSettings {
    /// The convergence report of `release` at `now` from the rows a store read: the live
    /// PoPs, the acks at or past the release's generations and the fetch records of its
    /// tenants ([`crate::domain::convergence`] decides; both stores call this).
    pub fn convergence(
        &self,
        release: &Release,
        live_pops: &[PopId],
        acks: &[crate::domain::AckRow],
        fetches: &[(PopId, TenantId, crate::convergence::FetchRecord)],
        now: u64,
    ) -> Convergence {
        let tenants: Vec<TenantId> = release.tenants.iter().map(|c| c.tenant.clone()).collect();
        crate::domain::convergence(&crate::domain::ConvergenceInput {
            release_id: &release.id,
            status: release.status,
            committed_at: release.committed_at,
            tenants: &tenants,
            live_pops,
            acks,
            now,
            bound_ms: self.manifest_max_age_ms,
            live_window_ms: self.pop_live_window_ms,
            leases: &self.leases,
            fetches,
        })
    }
}

/// The result of storing an edge report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The report's id.
    pub id: i64,
    /// The rollback the report triggered under the auto-rollback policy, if any.
    pub auto_rollback: Option<ReleaseId>,
}

/// What removing a tenant did. A removed tenant leaves [`Store::tenant`] and
/// [`Store::tenants`] (its manifest answers 404, so PoPs stop serving it from the
/// coordinator; acks and reports for it are refused), and its hosts are freed (the host
/// map drops them, so they no longer route to it) — but its row, generations, releases
/// and acks stay as history, and its id is never registered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed by this call.
    Removed,
    /// It was removed before (the call is a repeat: nothing changed).
    AlreadyRemoved,
}

/// A committed release, and whether this call replayed an earlier one (same idempotency key).
pub struct Committed {
    /// The release.
    pub release: Release,
    /// True when the release already existed and nothing was bumped.
    pub replayed: bool,
}

/// What a store writes for one release or rollback in its commit transaction: the
/// `releases` row, the tenants' new generations and the outbox purge. Built only by
/// [`Commit::release`] and [`Commit::rollback`], so both stores commit the same facts.
pub(crate) struct Commit<'a> {
    /// The new release's id ([`release_id`] of `seq`).
    pub(crate) id: &'a ReleaseId,
    /// Its sequence number.
    pub(crate) seq: i64,
    /// Release or rollback.
    pub(crate) kind: ReleaseKind,
    /// For a rollback: the release it rolls back.
    pub(crate) rollback_of: Option<&'a ReleaseId>,
    /// Every tenant's change, in order.
    pub(crate) changes: &'a [TenantChange],
    /// The surrogate keys the outbox purges.
    pub(crate) purge_keys: Vec<String>,
    /// The release's idempotency key, if any.
    pub(crate) key: Option<&'a str>,
    /// What the idempotency key replays against (a release's request hash).
    pub(crate) request_hash: Option<&'a str>,
    /// For an automatic rollback: when its cause arose (Unix ms).
    pub(crate) trigger_at: Option<u64>,
}

impl<'a> Commit<'a> {
    /// A release: `changes` from [`crate::domain::plan_release`], purging `purge_keys`.
    pub(crate) fn release(
        id: &'a ReleaseId,
        seq: i64,
        changes: &'a [TenantChange],
        purge_keys: Vec<String>,
        key: Option<&'a str>,
        request_hash: &'a str,
    ) -> Self {
        Commit {
            id,
            seq,
            kind: ReleaseKind::Release,
            rollback_of: None,
            changes,
            purge_keys,
            key,
            request_hash: Some(request_hash),
            trigger_at: None,
        }
    }

    /// A rollback of `of`: `changes` from [`crate::domain::plan_rollback`], purging
    /// [`crate::outbox::rollback_purge_keys`]; `trigger_at` for an automatic one.
    pub(crate) fn rollback(
        id: &'a ReleaseId,
        seq: i64,
        of: &'a ReleaseId,
        changes: &'a [TenantChange],
        trigger_at: Option<u64>,
    ) -> Self {
        Commit {
            id,
            seq,
            kind: ReleaseKind::Rollback,
            rollback_of: Some(of),
            changes,
            purge_keys: crate::outbox::rollback_purge_keys(changes),
            key: None,
            request_hash: None,
            trigger_at,
        }
    }
}

/// The id of the release numbered `seq` (`rel-{seq}`).
///
/// # Errors
/// When the id does not validate (a sequence out of range: corrupt state).
pub(crate) fn release_id(seq: i64) -> Result<ReleaseId, StoreError> {
    ReleaseId::new(format!("rel-{seq}")).map_err(|e| StoreError::corrupt("a release sequence number", e))
}

/// The surrogate keys a release must purge, computed from its tenant changes inside the
/// commit's transaction (the changes are only known there). Written to the outbox.
pub type PurgePlan = Box<dyn FnOnce(&[TenantChange]) -> Vec<String> + Send>;

/// The coordinator's durable state: transactional data access. The decisions it applies
/// come from [`crate::domain`], [`crate::convergence`] and [`crate::execlog`]; the use case
/// around them (analysis gate, shard verification, effects) is [`crate::engine`]'s.
pub trait Store: Send + Sync + 'static {
    /// A tenant's current state (the manifest path): never older than the last commit
    /// acknowledged to any caller.
    fn tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Option<TenantState>, StoreError>>;
    /// The current state of each of `ids` that exists (one read for all: the same
    /// guarantee as [`Store::tenant`]).
    fn tenants_of(&self, ids: Vec<TenantId>) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(self.tenant(id).await?);
            }
            Ok(out)
        })
    }
    /// Every tenant's current state, sorted by id.
    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantState>, StoreError>>;
    /// Registers a tenant at generation 1 (and, with [`StoreSettings::hosts_max_entries`],
    /// writes the host-map sync to the outbox in the same transaction).
    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>>;
    /// Replaces a tenant's hosts with `hosts` (idempotent: the same list changes nothing)
    /// under the registration's rules — a host another tenant holds is refused, naming it
    /// and its owner; the entry limit is checked — and, when the coordinator owns the host
    /// map, writes its sync to the outbox in the same transaction.
    fn set_tenant_hosts(&self, id: TenantId, hosts: Vec<String>) -> BoxFuture<'_, Result<Tenant, StoreError>>;
    /// Removes a tenant ([`Removal`] says what that keeps), refused while the release that
    /// set its current generation is still converging; writes the host-map sync like a
    /// registration does.
    fn remove_tenant(&self, id: TenantId) -> BoxFuture<'_, Result<Removal, StoreError>>;
    /// Commits a release: every listed tenant to its next generation, in one transaction,
    /// with the outbox effects `purge` yields (when a CDN is configured). `analysis_steps`
    /// (from [`crate::analysis`]) replace the log's placeholders for the phases they cover.
    fn commit_release(
        &self,
        request: ReleaseRequest,
        idempotency_key: Option<String>,
        analysis_steps: Vec<Step>,
        purge: PurgePlan,
    ) -> BoxFuture<'_, Result<Committed, StoreError>>;
    /// Rolls a release back (a new release restoring the previous state), in one
    /// transaction with its outbox effects: by an operator (`trigger_at` `None`), or
    /// automatically, by a policy that fired at `trigger_at`. Refused (409) when the release
    /// was already rolled back or a later release superseded it.
    fn rollback(
        &self,
        id: ReleaseId,
        reason: String,
        trigger_at: Option<u64>,
    ) -> BoxFuture<'_, Result<Release, StoreError>>;
    /// A release with its tenants and execution log.
    fn release(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Release>, StoreError>>;
    /// The number of releases (rollbacks included) and `limit` of them from `offset`, newest first.
    fn releases(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<Release>), StoreError>>;
    /// The number of stored edge reports and `limit` of them from `offset`, newest first.
    fn reports(&self, offset: u32, limit: u32) -> BoxFuture<'_, Result<(u64, Vec<StoredReport>), StoreError>>;
    /// A release's convergence now (and its status moved to `converged` if it just did).
    fn convergence(&self, id: ReleaseId) -> BoxFuture<'_, Result<Option<Convergence>, StoreError>>;
    /// Records that a PoP saw a generation (idempotent per pop, tenant, generation).
    fn record_ack(&self, ack: Ack) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Releases (not rollbacks) still `committed` `deadline_ms` after their commit, at
    /// `now`, whose tenants all still carry the generation they set (a superseded release
    /// can no longer be rolled back alone), each with the moment its deadline passed,
    /// oldest first. The convergence-deadline pass ([`crate::engine::Engine::enforce_deadline`])
    /// reads it; on PostgreSQL one replica reads it at a time.
    fn past_deadline(&self, deadline_ms: u64, now: u64) -> BoxFuture<'_, Result<Vec<(ReleaseId, u64)>, StoreError>>;
    /// Stores an edge report of an existing tenant; its id.
    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<i64, StoreError>>;
    /// The release that set `tenant` to `generation` (not a rollback; only while it stands,
    /// committed or converged) and the reports against its generations received within
    /// `window_ms` of its commit.
    fn reports_against(
        &self,
        tenant: TenantId,
        generation: Generation,
        window_ms: u64,
    ) -> BoxFuture<'_, Result<Option<crate::domain::ReportedRelease>, StoreError>>;
    /// Records durably, where every replica can see it, that `pop` was (or is about to be)
    /// served `tenant`'s manifest up to `record` (merged: the generation and the lease bound
    /// only grow). Called before the statement goes out (after it, for a generation-only
    /// move in a [`Store::single_process`] store), once per new generation or lease bound
    /// ([`crate::convergence::advance`]), not per request.
    fn record_fetch(
        &self,
        pop: PopId,
        tenant: TenantId,
        record: crate::convergence::FetchRecord,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Whether one process owns this store (SQLite): every ack then reaches the engine that
    /// served the manifest, whose in-memory ledger vouches for it, and no other replica reads
    /// [`Store::fetched`]. A fetch record that only moves the generation
    /// ([`crate::convergence::Advance::Generation`]) may then be written after the answer.
    fn single_process(&self) -> bool {
        false
    }
    /// The highest generation of `tenant`'s manifest any replica recorded serving `pop`.
    fn fetched(&self, pop: PopId, tenant: TenantId) -> BoxFuture<'_, Result<Option<Generation>, StoreError>>;
    /// Records `ack` if a manifest fetch vouches for it: `vouched` when the caller already
    /// knows one does (this process served it); otherwise only if a fetch record of its PoP
    /// and tenant at or past its generation exists ([`Store::fetched`]: any replica's), else
    /// nothing is written and the answer is [`AckOutcome::Unvouched`]. The default looks the
    /// record up, then records; a store may do both in one round trip.
    fn record_vouched_ack(&self, ack: Ack, vouched: bool) -> BoxFuture<'_, Result<AckOutcome, StoreError>> {
        Box::pin(async move {
            let fetched = if vouched {
                None
            } else {
                match self.fetched(ack.pop.clone(), ack.tenant.clone()).await? {
                    Some(g) if g >= ack.generation => Some(g),
                    _ => return Ok(AckOutcome::Unvouched),
                }
            };
            self.record_ack(ack).await?;
            Ok(AckOutcome::Recorded { fetched })
        })
    }
    /// Outbox effects due at `now` (Unix ms), oldest first, at most `limit`.
    fn due_effects(&self, now: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Effect>, StoreError>>;
    /// Records an attempt at an effect: `step` (its outcome, for a release's effect)
    /// replaces the release's execution-log step of that name; `retry_at` schedules another
    /// attempt, `None` ends the effect (delivered, or given up).
    fn record_attempt(
        &self,
        effect: i64,
        step: Option<Step>,
        retry_at: Option<u64>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
}

#[cfg(test)]
mod error_tests {
    use super::StoreError;

    /// A store failure keeps its cause: the underlying error is its `source()`, of its own
    /// type, and the chain logged names both what the store was doing and why it failed.
    #[test]
    fn a_store_error_keeps_its_sources() {
        let sqlite = rusqlite::Connection::open_in_memory().unwrap();
        let cause = sqlite.execute("INSERT INTO no_such_table VALUES (1)", []).unwrap_err();
        let message = cause.to_string();
        let e = StoreError::from(cause);
        let source = std::error::Error::source(&e).expect("the SQLite error is kept");
        assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "kept as itself, not as text: {source:?}");
        assert!(e.chain().starts_with(&format!("SQLite: {message}: ")), "and the cause's own source: {}", e.chain());
        assert!(message.contains("no_such_table"), "{message}");

        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = StoreError::corrupt("release rel-1's execution log", json);
        assert!(
            e.chain().starts_with("stored data does not validate: release rel-1's execution log: EOF"),
            "{}",
            e.chain()
        );
        // A clone (one failed batch answers every caller in it) shares the cause.
        assert_eq!(e.clone().chain(), e.chain());
        assert!(std::error::Error::source(&StoreError::internal("no cause")).is_none());
    }
}

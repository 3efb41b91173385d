//! Durable state behind a small trait, so handlers never see SQL and a PostgreSQL backend
//! can follow without touching them. Only this module's implementations speak SQL.
//!
//! A store owns the whole write path of a release: it plans (with [`crate::domain`]),
//! records the execution log, and commits in one transaction, so "all tenants or none" holds
//! across crashes. Reads that must be fast (the manifest path) are served from memory
//! ([`Store::tenant_state`]), which the store updates only after a commit is durable.

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use edgegen_shared::api::{Convergence, NewTenant, Release, ReleaseRequest, StoredReport, Tenant};
use edgegen_shared::{Ack, ReleaseId, Report, TenantId};

use crate::domain::{Refusal, TenantState};

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store operation that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Refused: the request conflicts with the state or is impossible. Nothing changed.
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// The store failed (I/O, corruption). Nothing changed: the transaction rolled back.
    #[error("store failure: {0}")]
    Internal(String),
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        StoreError::Refused(r)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Internal(e.to_string())
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

/// A committed release, and whether this call replayed an earlier one (same idempotency key).
pub struct Committed {
    /// The release.
    pub release: Release,
    /// True when the release already existed and nothing was bumped.
    pub replayed: bool,
}

/// The coordinator's durable state.
pub trait Store: Send + Sync + 'static {
    /// A tenant's current state, from memory (the manifest path).
    fn tenant_state(&self, id: &TenantId) -> Option<TenantState>;
    /// Every tenant's current state, from memory, sorted by id.
    fn tenant_states(&self) -> Vec<TenantState>;
    /// Registers a tenant at generation 1.
    fn register_tenant(&self, tenant: NewTenant) -> BoxFuture<'_, Result<Tenant, StoreError>>;
    /// Commits a release: every listed tenant to its next generation, in one transaction.
    /// `analysis_steps` (from [`crate::analysis`]) replace the log's placeholders for the
    /// phases they cover.
    fn commit_release(
        &self,
        request: ReleaseRequest,
        idempotency_key: Option<String>,
        analysis_steps: Vec<edgegen_shared::api::Step>,
    ) -> BoxFuture<'_, Result<Committed, StoreError>>;
    /// Rolls a release back (a new release restoring the previous state), in one transaction.
    fn rollback(&self, id: ReleaseId, reason: String) -> BoxFuture<'_, Result<Release, StoreError>>;
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
    /// Stores an edge report and applies the auto-rollback policy.
    fn record_report(&self, report: Report) -> BoxFuture<'_, Result<ReportOutcome, StoreError>>;
    /// Replaces the release's execution-log step of the same name (a step finished after
    /// the commit, such as the CDN purge).
    fn replace_step(&self, id: ReleaseId, step: edgegen_shared::api::Step) -> BoxFuture<'_, Result<(), StoreError>>;
}

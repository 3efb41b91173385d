//! Bodies of the coordinator's admin API (ARCHITECTURE.md, "Contract between the parts"):
//! what `edgegen` (the CLI), the end-to-end harness and release pipelines send and read.
//! Times are Unix milliseconds.
//!
//! Request types reject unknown fields (a misspelt field must not be silently ignored in a
//! release); response types tolerate them (a newer coordinator may add fields).

use serde::{Deserialize, Serialize};

use crate::ids::{ContractHash, Generation, PopId, ReleaseId, SchemaVersion, TenantId};

/// `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The tenant id.
    pub id: TenantId,
    /// Host names routed to the tenant (lower case, no port); each host belongs to one tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::HostName>, min_items = 1))]
    pub hosts: Vec<String>,
    /// Initial schema version.
    pub schema_version: SchemaVersion,
    /// Initial contract hash.
    pub contract_hash: ContractHash,
    /// The JSON Schema document the contract hash was computed from, if available; when
    /// given, the hash is verified against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_schema: Option<serde_json::Value>,
}

/// The host set replacing a tenant's hosts (`PUT /v1/tenants/{id}/hosts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantHosts {
    /// Host names routed to the tenant from now on (lower case, no port); each host belongs
    /// to one tenant. Hosts left out stop routing to it.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::HostName>, min_items = 1))]
    pub hosts: Vec<String>,
}

/// A tenant as the coordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// The tenant id.
    pub id: TenantId,
    /// Its host names.
    pub hosts: Vec<String>,
    /// Its current generation.
    pub generation: Generation,
    /// Its current schema version.
    pub schema_version: SchemaVersion,
    /// Its current contract hash.
    pub contract_hash: ContractHash,
}

/// `POST /v1/releases`: move every listed tenant to its next generation with this schema
/// version and contract hash, all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The tenants to release (non-empty, no duplicates, all registered).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub tenants: Vec<TenantId>,
    /// The schema version after the release.
    pub schema_version: SchemaVersion,
    /// The contract hash after the release.
    pub contract_hash: ContractHash,
    /// The JSON Schema document of the new contract; when given, the hash is verified
    /// against it (`contract_verification` step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_schema: Option<serde_json::Value>,
    /// Free text recorded as the execution log's `task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the release changes, for the coordinator to analyse before committing: a
    /// blocked analysis refuses the release (nothing moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisInput>,
}

/// Inputs of a release's analysis. The new contract is the request's `contract_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnalysisInput {
    /// `postgres` (default), `mysql` or `sqlite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    /// The schema before the release (full DDL).
    pub schema_from: String,
    /// The schema after the release (full DDL).
    pub schema_to: String,
    /// The contract's JSON Schema before the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_from: Option<serde_json::Value>,
}

/// Lifecycle of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Generations moved; not every live PoP has acknowledged yet.
    Committed,
    /// Every live PoP acknowledged the new generations.
    Converged,
    /// A later rollback moved its tenants to new generations carrying the previous state.
    RolledBack,
    /// It did not complete (e.g. stopped by a failed check).
    Failed,
}

impl ReleaseStatus {
    /// The snake_case name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Committed => "committed",
            ReleaseStatus::Converged => "converged",
            ReleaseStatus::RolledBack => "rolled_back",
            ReleaseStatus::Failed => "failed",
        }
    }
}

/// Defines a wire enum (snake_case on the wire) with `as_str` and a padding-aware `Display`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The snake_case name used on the wire and in storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `text` (its wire name), if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Whether a release moves tenants forward or restores an earlier state.
    ReleaseKind {
        /// A release requested by an operator.
        Release => "release",
        /// A new generation carrying the state before an earlier release.
        Rollback => "rollback",
    }
}

wire_enum! {
    /// The phases of an execution log, in the order a release runs them.
    Phase {
        /// SQL schema changes analysed.
        SchemaAnalysis => "schema_analysis",
        /// The contract hash checked against its schema.
        ContractVerification => "contract_verification",
        /// New key scopes derived, old ones retired.
        DeterministicKeyGeneration => "deterministic_key_generation",
        /// Tenant isolation checked (analysis, shards).
        TenantIsolationCheck => "tenant_isolation_check",
        /// Generations committed, CDN purged, PoPs acknowledging.
        EdgeNodeInvalidation => "edge_node_invalidation",
        /// The way back checked.
        RollbackVerification => "rollback_verification",
    }
}

wire_enum! {
    /// What became of an execution-log step.
    StepStatus {
        /// It ran and succeeded.
        Ok => "ok",
        /// It ran and failed.
        Failed => "failed",
        /// It did not run; the detail says why.
        Skipped => "skipped",
        /// It ran and found problems that the configured policy lets through (e.g. the
        /// live-data contract check under policy `warn`); the detail names them.
        Warning => "warning",
        /// It has not finished yet (e.g. waiting for acknowledgements, or queued for delivery).
        Pending => "pending",
    }
}

/// What a release did to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantChange {
    /// The tenant.
    pub tenant: TenantId,
    /// Generation before.
    pub from_generation: Generation,
    /// Generation after.
    pub to_generation: Generation,
    /// Schema version before.
    pub from_schema_version: SchemaVersion,
    /// Schema version after.
    pub to_schema_version: SchemaVersion,
    /// Contract hash before.
    pub from_contract_hash: ContractHash,
    /// Contract hash after.
    pub to_contract_hash: ContractHash,
}

/// A release (or a rollback, which is a release of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    /// The id.
    pub id: ReleaseId,
    /// `release` or `rollback`.
    pub kind: ReleaseKind,
    /// For a rollback: the release it rolled back.
    #[serde(default)]
    pub rollback_of: Option<ReleaseId>,
    /// For a rolled-back release: the rollback that undid it.
    #[serde(default)]
    pub rolled_back_by: Option<ReleaseId>,
    /// Status.
    pub status: ReleaseStatus,
    /// When it was committed.
    pub committed_at: u64,
    /// When it converged.
    #[serde(default)]
    pub converged_at: Option<u64>,
    /// Per-tenant changes.
    pub tenants: Vec<TenantChange>,
    /// The execution log.
    pub execution_log: ExecutionLog,
}

/// The execution log of a release (ARCHITECTURE.md, "Execution log"): every figure in it is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionLog {
    /// The release id.
    pub execution_id: String,
    /// When the release started, RFC 3339.
    pub timestamp: String,
    /// What it was for.
    pub task: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Totals.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub summary: serde_json::Map<String, serde_json::Value>,
}

/// One step of an execution log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    /// What was done.
    pub step: String,
    /// The phase of the execution log it belongs to.
    pub phase: Phase,
    /// What became of it.
    pub status: StepStatus,
    /// What happened, with the figures.
    pub detail: String,
    /// How long it took.
    pub duration_ms: f64,
}

/// `GET /v1/releases/{id}/convergence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Convergence {
    /// The release.
    pub release_id: ReleaseId,
    /// Its status.
    pub status: ReleaseStatus,
    /// Whether every live PoP acknowledged every tenant's new generation.
    pub converged: bool,
    /// Live PoPs that acknowledged all of the release's tenants.
    pub acked: usize,
    /// Live PoPs (seen within the live window).
    pub total: usize,
    /// Per PoP.
    pub pops: Vec<PopConvergence>,
    /// Latency percentiles over the PoPs that acknowledged, ms from commit.
    pub p50_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
    /// Slowest.
    pub max_ms: Option<u64>,
    /// From commit until the slowest live PoP acknowledged (or until now while some are
    /// pending): an upper bound of when the last PoP switched. A PoP acknowledges on its first
    /// request after its cached manifest expired (at most `bound_ms` after commit), so this can
    /// exceed the bound without any stale read having been served.
    pub max_staleness_ms: u64,
    /// The bound the manifest max age guarantees (a PoP re-fetches within it).
    pub bound_ms: u64,
    /// The live window used to decide which PoPs count.
    pub live_window_ms: u64,
    /// Every PoP that held a lease on one of the release's tenants at commit (or that
    /// acknowledged the release), in three groups: confirmed, provably expired, unconfirmed.
    #[serde(default)]
    pub leases: LeaseGroups,
}

/// The PoPs of a release's convergence report by what they may still serve: a PoP that
/// has not confirmed the release can serve the old generation only until its last
/// statement for that tenant (manifest or lease) expires, `issued_at + max_stale` (the
/// coordinator records that bound before it hands the statement out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseGroups {
    /// PoPs that acknowledged every tenant of the release at or past its generation, sorted.
    pub confirmed: Vec<PopId>,
    /// PoPs that did not, but whose every statement for an older generation has expired: they
    /// can no longer serve the old generation (they bypass or fetch the new manifest).
    pub expired: Vec<PopLease>,
    /// PoPs that did not, and may still serve the old generation until `old_until`.
    pub unconfirmed: Vec<PopLease>,
}

/// A PoP that has not confirmed a release, and until when it may serve the old generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PopLease {
    /// The PoP.
    pub pop: PopId,
    /// Tenants of the release it has not acknowledged at or past the release's generation.
    pub tenants_unconfirmed: usize,
    /// Unix ms until which it may serve an older generation of one of those tenants (the
    /// latest expiry of the statements it was handed; for a PoP without a fetch record,
    /// commit + the tenant's max stale).
    pub old_until: u64,
    /// `old_until` minus the report's time (0 once expired).
    pub remaining_ms: u64,
}

/// One PoP's progress on a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PopConvergence {
    /// The PoP.
    pub pop: PopId,
    /// Tenants of the release it acknowledged at or past the release's generation.
    pub tenants_acked: usize,
    /// Tenants in the release.
    pub tenants_total: usize,
    /// ms from commit to its last needed acknowledgement (received), once complete.
    pub latency_ms: Option<u64>,
}

/// The error body of every failed request: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_tenant`, `unauthorized`, `no_route`.
    pub code: String,
    /// One sentence for a human, naming the field or the rule that was broken.
    pub message: String,
}

/// `POST /v1/edge/reports` answer: the stored report, and the rollback it triggered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportReceipt {
    /// The report's id.
    pub id: i64,
    /// The rollback the report triggered under the auto-rollback policy, if any.
    pub auto_rollback: Option<ReleaseId>,
}

/// What a release's analysis concluded (`edgegen plan`'s verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlanVerdict {
    /// Nothing a release needs.
    Safe,
    /// Changes that break cached data: release them (new generations).
    NeedsRelease,
    /// Isolation violations, unparsable or unsupported input: the release would be refused.
    Blocked,
    /// The request carried no `analysis`.
    NotAnalysed,
}

impl PlanVerdict {
    /// The exit code of `edgegen plan` / `edgegen release --plan-only` for this verdict:
    /// 0 safe (or not analysed), 1 needs a release, 2 blocked.
    pub fn exit_code(self) -> u8 {
        match self {
            PlanVerdict::Safe | PlanVerdict::NotAnalysed => 0,
            PlanVerdict::NeedsRelease => 1,
            PlanVerdict::Blocked => 2,
        }
    }
}

/// `POST /v1/releases/plan` answer: what a release would do, computed without changing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleasePlan {
    /// Always `true`: nothing was changed.
    pub dry_run: bool,
    /// SHA-256 over the canonical per-tenant plan (and the analysis plan hash): identical
    /// inputs give identical hashes.
    pub plan_hash: String,
    /// The analysis verdict.
    pub verdict: PlanVerdict,
    /// Per-tenant invalidation plan, sorted by tenant.
    pub tenants: Vec<TenantPlan>,
    /// Outcome of checking `contract_hash` against `contract_schema`.
    pub contract_verification: String,
    /// The analysis report (as `edgegen plan --json` prints it), when the request asked for one.
    pub analysis: Option<AnalysisReport>,
    /// The analysis as execution-log steps, when the request asked for one.
    pub steps: Option<Vec<Step>>,
}

/// A tenant's part of an invalidation plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantPlan {
    /// The change.
    #[serde(flatten)]
    pub change: TenantChange,
    /// Surrogate keys whose objects the release retires (for scoped purges).
    pub purge_surrogate_keys: Vec<String>,
    /// Cached routes the analysis findings affect (from the dependency map), tenant-scoped.
    pub affected_routes: Vec<AffectedRoute>,
    /// What to verify after the commit.
    pub verify: Vec<String>,
}

/// A route a release affects, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AffectedRoute {
    /// The route.
    pub route: String,
    /// The surrogate key to purge (tenant-scoped in a tenant's plan).
    pub surrogate_key: String,
    /// The findings that affect it: `code (table or contract path)`.
    pub reasons: Vec<String>,
}

/// An analysis report as the coordinator returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalysisReport {
    /// Input dialect: `postgres`, `mysql` or `sqlite`.
    pub dialect: String,
    /// The verdict (never `not_analysed`).
    pub verdict: PlanVerdict,
    /// The exit code `edgegen plan` returns for it.
    pub exit_code: i32,
    /// Counts per severity.
    pub summary: FindingCounts,
    /// Sorted findings.
    pub findings: Vec<Finding>,
    /// Why the analysis was blocked before any finding could be made, if it was.
    pub blocked: Option<String>,
    /// SHA-256 over the location-free, sorted findings.
    pub plan_hash: String,
}

/// Counts of findings per severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindingCounts {
    /// Isolation violations.
    pub blocking: u64,
    /// Changes that break cached data.
    pub breaking: u64,
    /// Changes that may.
    pub risky: u64,
    /// Changes that do not.
    pub safe: u64,
}

/// One classified change or violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// Stable code, e.g. `column_dropped`.
    pub code: String,
    /// `blocking`, `breaking`, `risky` or `safe`.
    pub severity: Severity,
    /// Table.
    pub table: Option<String>,
    /// Column (or enum value, policy, constraint, contract path).
    pub column: Option<String>,
    /// Where in the input.
    pub location: FindingLocation,
    /// One sentence of why.
    pub message: String,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A tenant-isolation violation: the release is blocked.
    Blocking,
    /// Breaks readers of cached data.
    Breaking,
    /// May break them.
    Risky,
    /// Does not.
    Safe,
}

/// A place in an analysed input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindingLocation {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// `GET /healthz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

/// Query of the paged listings (`GET /v1/releases`, `GET /v1/reports`): one page, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Releases to skip (default 0).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 0, maximum = 4294967295u32))]
    pub offset: u32,
    /// Page size, 1-200 (default 50).
    #[serde(default = "PageQuery::default_limit")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 200))]
    pub limit: u32,
}

impl PageQuery {
    /// Largest page.
    pub const MAX_LIMIT: u32 = 200;

    fn default_limit() -> u32 {
        50
    }
}

/// `GET /v1/releases` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleasePage {
    /// All releases (rollbacks included).
    pub total: u64,
    /// The page's offset.
    pub offset: u32,
    /// The page size asked for.
    pub limit: u32,
    /// The page, newest first.
    pub releases: Vec<Release>,
}

/// An edge report as the coordinator stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredReport {
    /// The report's id (as `POST /v1/edge/reports` answered).
    pub id: i64,
    /// When the coordinator received it, Unix ms.
    pub received_at: u64,
    /// The report as the PoP sent it.
    pub report: crate::wire::Report,
}

/// `GET /v1/reports` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportPage {
    /// All stored reports.
    pub total: u64,
    /// The page's offset.
    pub offset: u32,
    /// The page size asked for.
    pub limit: u32,
    /// The page, newest first.
    pub reports: Vec<StoredReport>,
}

//! The release use case, independent of HTTP and of SQL: the analysis gate, shard
//! verification, the per-tenant plan whose keys the outbox purges, the commit through the
//! [`Store`], the edge-facing checks (which acks are accepted) and the two automatic
//! rollback policies: edge reports ([`Engine::report`]) and the convergence deadline
//! ([`Engine::enforce_deadline`], run by [`Engine::run_deadline`]). Handlers in [`crate::server`] parse
//! and answer; the store persists; this module decides the order and what blocks a release.

use std::sync::Arc;
use std::time::Instant;

use edgegen_shared::api::{Phase, ReleaseRequest, Step, StepStatus};
use edgegen_shared::{Ack, Generation, PopId, ReleaseId, Report, TenantId};

use crate::analysis::{Analysis, AnalysisConfig};
use crate::convergence::{Advance, ManifestFetches};
use crate::domain::{self, Refusal};
use crate::execlog;
use crate::metrics::Metrics;
use crate::shards::{ShardMap, SharedRls};
use crate::store::{AckOutcome, Committed, ReportOutcome, Store, StoreError};

/// How often the convergence-deadline pass runs.
pub const DEADLINE_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// The request header in which the edge names its PoP when it fetches a manifest.
pub const POP_HEADER: &str = edgegen_shared::wire::POP_HEADER;

/// Why the engine did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The release is blocked (analysis, shard verification, plan): nothing moved. `code` is
    /// the stable machine-readable reason.
    #[error("{message}")]
    Blocked {
        /// `analysis_blocked`, `shard_verification_failed`, `invalid_plan`.
        code: &'static str,
        /// What blocked it, naming the field, tenant or route.
        message: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An acknowledgement no manifest fetch vouches for.
    #[error("{0}")]
    AckRefused(String),
    /// A worker thread did not complete.
    #[error("the analysis did not complete: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<Refusal> for EngineError {
    fn from(r: Refusal) -> Self {
        EngineError::Store(StoreError::Refused(r))
    }
}

/// What the engine works with: cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Settings of release analysis.
    pub analysis: Arc<AnalysisConfig>,
    /// Tenant database shards, verified before analysed releases commit.
    pub shards: Arc<ShardMap>,
    /// How tenants see shared PostgreSQL shards.
    pub shard_rls: Arc<SharedRls>,
    /// Which PoP fetched which manifest (what vouches for an ack).
    pub fetches: Arc<ManifestFetches>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Roll a release back when edge reports against it fire this policy (`None`: never).
    pub auto_rollback: Option<crate::config::AutoRollback>,
}

/// A dry run's answer.
pub struct Planned {
    /// The per-tenant plan.
    pub tenants: Vec<crate::analysis::TenantPlan>,
    /// Its hash.
    pub plan_hash: String,
    /// The analysis, if the request asked for one.
    pub analysis: Option<Analysis>,
    /// What the contract verification found.
    pub contract: Option<String>,
}

impl Engine {
    /// The current state of `tenants` (those that exist).
    async fn current(
        &self,
        tenants: &[TenantId],
    ) -> Result<std::collections::HashMap<TenantId, crate::domain::TenantState>, EngineError> {
        let states = self.store.tenants_of(tenants.to_vec()).await?;
        Ok(states.into_iter().map(|s| (s.id.clone(), s)).collect())
    }

    /// Runs the request's analysis off the async threads (a large schema takes CPU time).
    async fn analyse(&self, request: &ReleaseRequest) -> Result<Option<Analysis>, EngineError> {
        let Some(input) = request.analysis.clone() else { return Ok(None) };
        let (contract_to, config) = (request.contract_schema.clone(), Arc::clone(&self.analysis));
        let analysis =
            tokio::task::spawn_blocking(move || crate::analysis::analyse(&input, contract_to.as_ref(), &config))
                .await?
                .map_err(|message| EngineError::Blocked { code: "analysis_blocked", message })?;
        Ok(Some(analysis))
    }

    /// A dry run: the plan a release would commit, no state change.
    ///
    /// # Errors
    /// When the request is refused (unknown tenant, bad contract) or its plan is invalid.
    pub async fn plan(&self, request: &ReleaseRequest) -> Result<Planned, EngineError> {
        let contract = domain::check_contract(&request.contract_hash, request.contract_schema.as_ref())?;
        let current = self.current(&request.tenants).await?;
        let changes = domain::plan_release(request, |id| current.get(id).cloned())?;
        let analysis = self.analyse(request).await?;
        let (tenants, plan_hash) =
            crate::analysis::tenant_plans(&changes, analysis.as_ref().map(|a| &a.report), &self.analysis)
                .map_err(|message| EngineError::Blocked { code: "invalid_plan", message })?;
        Ok(Planned { tenants, plan_hash, analysis, contract })
    }

    /// Commits a release: analysis gate, shard verification, then one transaction moving
    /// every tenant and writing the purge of the plan's keys to the outbox.
    ///
    /// # Errors
    /// [`EngineError::Blocked`] when analysis, shards or the plan block it (nothing moved);
    /// the store's refusal or failure otherwise.
    pub async fn commit(
        &self,
        request: ReleaseRequest,
        idempotency_key: Option<String>,
    ) -> Result<Committed, EngineError> {
        let analysis = self.analyse(&request).await?;
        if let Some(a) = &analysis
            && a.report.exit_code == edgegen_analysis::plan::EXIT_BLOCKED
        {
            let why = a.report.blocked.clone().unwrap_or_else(|| {
                let codes: Vec<String> = a
                    .report
                    .findings
                    .iter()
                    .filter(|f| f.severity == edgegen_analysis::Severity::Blocking)
                    .map(|f| format!("{} ({})", f.code, f.table.as_deref().or(f.column.as_deref()).unwrap_or("-")))
                    .collect();
                codes.join(", ")
            });
            return Err(EngineError::Blocked {
                code: "analysis_blocked",
                message: format!("release blocked by analysis, nothing moved: {why}"),
            });
        }
        let report = analysis.as_ref().map(|a| a.report.clone());
        // The plan's origin keys are checked before anything moves: an invalid key refuses
        // the release instead of reaching the CDN. Inside the transaction the plan derives
        // the committed keys from the same routes.
        if let Some(report) = &report {
            crate::analysis::check_origin_keys(&request.tenants, report, &self.analysis)
                .map_err(|message| EngineError::Blocked { code: "invalid_plan", message })?;
        }
        let mut steps = analysis.map(|a| a.steps).unwrap_or_default();
        if let Some(step) = self.verify_shards(&request).await? {
            steps.push(step);
        }
        // The tenants' live data against the new contract ([`crate::live_check`]): a tenant
        // whose sampled responses the new contract cannot read refuses the release (policy
        // `block`) or is recorded (policy `warn`).
        let hosts: Vec<(String, Vec<String>)> = self
            .store
            .tenants_of(request.tenants.clone())
            .await?
            .into_iter()
            .map(|state| (state.id.as_str().to_owned(), state.hosts))
            .collect();
        let analysed_contract = request.analysis.as_ref().and(request.contract_schema.as_ref());
        match crate::live_check::before_commit(&self.analysis, &hosts, analysed_contract).await {
            Ok(step) => steps.extend(step),
            Err(message) => return Err(EngineError::Blocked { code: "contract_verification_failed", message }),
        }
        let config = Arc::clone(&self.analysis);
        let purge: crate::store::PurgePlan = Box::new(move |changes| {
            match crate::analysis::purge_keys(changes, report.as_ref(), &config) {
                Ok(keys) => keys,
                // Unreachable: the origin keys were checked above for these tenants and
                // routes. Should it happen, the generation and manifest keys still purge.
                Err(_) => crate::outbox::rollback_purge_keys(changes),
            }
        });
        Ok(self.store.commit_release(request, idempotency_key, steps, purge).await?)
    }

    /// Checks the release's tenants' shards against the schema it expects; drift or
    /// leakage refuses the release (nothing moves). `None` when there is nothing to check.
    async fn verify_shards(&self, request: &ReleaseRequest) -> Result<Option<Step>, EngineError> {
        let Some(input) = &request.analysis else { return Ok(None) };
        if !request.tenants.iter().any(|t| self.shards.contains_key(t)) {
            return Ok(None);
        }
        let started = Instant::now();
        let blocked = |message: String| EngineError::Blocked { code: "analysis_blocked", message };
        let dialect = crate::analysis::dialect(input).map_err(blocked)?;
        let expected = edgegen_analysis::plan::schema_from(&[("schema_to".into(), input.schema_to.clone())], dialect)
            .map_err(|e| blocked(format!("release blocked by analysis, nothing moved: {e}")))?;
        let settings = Arc::new(self.analysis.settings(dialect));
        let reports = crate::shards::verify(
            &self.shards,
            &request.tenants,
            Arc::new(expected),
            settings,
            Arc::clone(&self.shard_rls),
        )
        .await;
        let problems: Vec<String> = reports
            .iter()
            .filter(|r| !r.clean())
            .map(|r| {
                let mut items: Vec<String> = r.drift.clone();
                items.extend(r.leakage.iter().map(|l| format!("leak: {l}")));
                items.extend(r.error.clone());
                format!("{}: {}", r.tenant, items.join("; "))
            })
            .collect();
        if !problems.is_empty() {
            return Err(EngineError::Blocked {
                code: "shard_verification_failed",
                message: format!("release blocked by shard verification, nothing moved: {}", problems.join(" | ")),
            });
        }
        Ok(Some(execlog::step(
            "verify tenant shards",
            Phase::TenantIsolationCheck,
            StepStatus::Ok,
            format!(
                "{} shard(s) ({}) match the release's schema and hold no row of another tenant",
                reports.len(),
                reports.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>().join(", ")
            ),
            started,
        )))
    }

    /// Records, before the answer goes out, that `pop` is being handed a statement of
    /// `tenant`'s manifest (a manifest or a lease) at `generation` that expires at
    /// `expires_at` (its `issued_at + max_stale`): in memory, and in the store whenever the
    /// durable record must move ([`crate::convergence::advance`], `slack_ms` ahead), so
    /// other replicas can vouch for the PoP's ack and the convergence report can bound
    /// until when the PoP may serve an older generation. In a single-process store, a record
    /// that only moves the generation (a PoP fetching a release's new generation within its
    /// recorded bound) vouches from memory at once and is written after the answer: the
    /// durable bound already covers the statement, so the manifest path of a release waits
    /// for no store write.
    ///
    /// # Errors
    /// When the store fails to record it (the statement must then not be handed out).
    pub async fn manifest_served(
        &self,
        pop: PopId,
        tenant: TenantId,
        generation: Generation,
        expires_at: u64,
        slack_ms: u64,
    ) -> Result<(), EngineError> {
        match self.fetches.served(&pop, &tenant, generation, expires_at, slack_ms) {
            None => {}
            Some(Advance::Generation(record)) if self.store.single_process() => {
                self.fetches.record(pop.clone(), tenant.clone(), record);
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    if let Err(e) = store.record_fetch(pop.clone(), tenant.clone(), record).await {
                        // The bound is already durable; only the stored generation lags.
                        tracing::warn!(%pop, %tenant, cause = %e.chain(), "writing a fetch record's generation failed");
                    }
                });
            }
            Some(advance) => {
                let record = advance.record();
                self.store.record_fetch(pop.clone(), tenant.clone(), record).await?;
                self.fetches.record(pop, tenant, record);
            }
        }
        Ok(())
    }

    /// Stores an edge report, then applies the auto-rollback policy to the release that set
    /// the reported generation: within the policy window after its commit, once the reports
    /// against it come from enough PoPs and name enough paths
    /// ([`domain::ReportedRelease::auto_rollback_reason`]), it is rolled back. Replicas may
    /// tally the same reports at once: the store refuses every rollback of a release but
    /// the first, so the policy acts once; a release a later one superseded can no longer
    /// be rolled back alone and is left as it is (logged).
    ///
    /// # Errors
    /// When the tenant does not exist, or the store fails.
    pub async fn report(&self, report: Report) -> Result<ReportOutcome, EngineError> {
        let (tenant, generation, kind) = (report.tenant.clone(), report.generation, report.kind);
        let id = self.store.record_report(report).await?;
        self.metrics.report(kind);
        let auto_rollback = match self.auto_rollback {
            Some(policy) => self.apply_report_policy(tenant, generation, policy).await?,
            None => None,
        };
        Ok(ReportOutcome { id, auto_rollback })
    }

    /// The report policy against the release that set `tenant` to `generation`: the
    /// rollback it made, if it fired.
    async fn apply_report_policy(
        &self,
        tenant: TenantId,
        generation: Generation,
        policy: crate::config::AutoRollback,
    ) -> Result<Option<ReleaseId>, EngineError> {
        let window_ms = u64::try_from(policy.window.as_millis()).unwrap_or(u64::MAX);
        let Some(reported) = self.store.reports_against(tenant, generation, window_ms).await? else {
            return Ok(None);
        };
        let now = crate::clock::now_ms();
        match reported.auto_rollback_reason(&policy, now) {
            Some(reason) => self.automatic_rollback(&reported.id, reason, now).await,
            None => Ok(None),
        }
    }

    /// One pass of the convergence-deadline policy at `now`: every release still committed
    /// `deadline_ms` after its commit ([`Store::past_deadline`]) is checked once more
    /// ([`Store::convergence`], which marks it converged if it just did) and, if it has
    /// not converged, rolled back with the moment its deadline passed as the trigger.
    /// Returns the rollbacks made. On PostgreSQL every replica runs the pass; the store
    /// hands the due releases to one at a time, and a rollback another pass already made is
    /// refused, so each release is rolled back once.
    ///
    /// # Errors
    /// When the store fails (the next pass tries again).
    pub async fn enforce_deadline(&self, deadline_ms: u64, now: u64) -> Result<Vec<ReleaseId>, EngineError> {
        let mut rolled_back = Vec::new();
        for (id, trigger_at) in self.store.past_deadline(deadline_ms, now).await? {
            let Some(conv) = self.store.convergence(id.clone()).await? else { continue };
            if conv.converged {
                continue;
            }
            let reason = format!(
                "automatic: not converged within the deadline of {deadline_ms} ms ({}/{} live PoPs acknowledged)",
                conv.acked, conv.total
            );
            if let Some(rollback) = self.automatic_rollback(&id, reason, trigger_at).await? {
                rolled_back.push(rollback);
            }
        }
        Ok(rolled_back)
    }

    /// Runs [`Engine::enforce_deadline`] every [`DEADLINE_TICK`] until `shutdown`
    /// resolves; a failed pass is logged and the next one tries again.
    pub async fn run_deadline(self, deadline_ms: u64, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(DEADLINE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.enforce_deadline(deadline_ms, crate::clock::now_ms()).await {
                tracing::error!(cause = %e, "the convergence-deadline pass failed");
            }
        }
    }

    /// Rolls `release` back for a policy that fired at `trigger_at`; `None` when the store
    /// refuses (already rolled back, by this or another replica, or superseded).
    async fn automatic_rollback(
        &self,
        release: &ReleaseId,
        reason: String,
        trigger_at: u64,
    ) -> Result<Option<ReleaseId>, EngineError> {
        match self.store.rollback(release.clone(), reason, Some(trigger_at)).await {
            Ok(rollback) => Ok(Some(rollback.id)),
            Err(StoreError::Refused(Refusal::Conflict(why))) => {
                tracing::warn!(%release, %why, "automatic rollback not made");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records an acknowledgement if its PoP fetched that tenant's manifest at (or past)
    /// that generation; refuses it (and counts the refusal) otherwise.
    ///
    /// # Errors
    /// [`EngineError::AckRefused`] when no matching fetch vouches for it; the store's
    /// refusal or failure otherwise.
    ///
    /// This replica's memory vouches for the acks of the PoPs it served; for another
    /// replica's PoP, the store checks the durable fetch record as it records the ack
    /// ([`crate::store::Store::record_vouched_ack`]), and this replica remembers it.
    pub async fn ack(&self, ack: Ack) -> Result<(), EngineError> {
        let vouched = self.fetches.vouches_for(&ack);
        let (pop, tenant, generation) = (ack.pop.clone(), ack.tenant.clone(), ack.generation);
        match self.store.record_vouched_ack(ack, vouched).await? {
            AckOutcome::Recorded { fetched: Some(g) } => {
                self.fetches.record(pop, tenant, crate::convergence::FetchRecord { generation: g, lease_until: None });
                Ok(())
            }
            AckOutcome::Recorded { fetched: None } => Ok(()),
            AckOutcome::Unvouched => {
                self.metrics.ack_refused();
                Err(EngineError::AckRefused(format!(
                    "ack refused: PoP {pop} was not served tenant {tenant}'s manifest at generation {generation} (the \
                     manifest request must name its PoP in the {POP_HEADER} header)"
                )))
            }
        }
    }
}

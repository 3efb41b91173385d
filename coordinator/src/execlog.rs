//! The execution log of a release, built from values: which steps a release or rollback
//! records, in phase order, and how later events (a CDN purge delivered, convergence, a
//! rollback superseding it) rewrite a step. No I/O; the only clock read is the monotonic
//! `Instant` that times a step this module runs itself (the key derivation, the rollback
//! path check); other steps are timed from the `Instant`s callers pass in. The store
//! persists what this module builds.
//!
//! Every step states what actually happened: a step that did not run is `skipped` with the
//! reason, a step that has not finished yet is `pending`, and no figure is invented.

use std::time::Instant;

use edgegen_shared::ReleaseId;
use edgegen_shared::api::{
    Convergence, ExecutionLog, Phase, ReleaseKind, ReleaseRequest, Step, StepStatus, TenantChange,
};
use edgegen_shared::key::{CacheKey, KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::surrogate::SurrogateKey;

use crate::clock::rfc3339;

/// The step of the atomic commit.
pub const COMMIT_STEP: &str = "commit new generations in one transaction";
/// The step of the CDN purge (delivered after the commit from the outbox).
pub const PURGE_STEP: &str = "purge CDN surrogate keys";
/// The step that waits for PoP acknowledgements.
pub const ACK_STEP: &str = "await PoP acknowledgements";
/// The step deriving the new key scopes.
pub const KEY_STEP: &str = "derive key scopes and retired surrogate keys";

/// A step measured from `started` until now.
pub fn step(name: &str, phase: Phase, status: StepStatus, detail: String, started: Instant) -> Step {
    Step { step: name.into(), phase, status, detail, duration_ms: started.elapsed().as_secs_f64() * 1000.0 }
}

/// A step that did not run, and why.
pub fn skipped(name: &str, phase: Phase, reason: &str) -> Step {
    Step { step: name.into(), phase, status: StepStatus::Skipped, detail: reason.into(), duration_ms: 0.0 }
}

/// Collects execution-log steps with measured durations.
pub struct LogBuilder {
    task: String,
    timestamp: String,
    /// The steps so far, in order.
    pub steps: Vec<Step>,
}

impl LogBuilder {
    /// A log for `task` that started at `now` (Unix ms).
    pub fn new(task: String, now: u64) -> Self {
        LogBuilder { task, timestamp: rfc3339(now), steps: Vec::new() }
    }

    /// Appends a step measured from `started`.
    pub fn push(&mut self, name: &str, phase: Phase, status: StepStatus, detail: String, started: Instant) {
        self.steps.push(step(name, phase, status, detail, started));
    }

    /// Appends a step that did not run.
    pub fn skipped(&mut self, name: &str, phase: Phase, reason: &str) {
        self.steps.push(skipped(name, phase, reason));
    }

    /// Appends a step that has not finished.
    pub fn pending(&mut self, name: &str, phase: Phase, detail: String) {
        self.steps.push(Step { step: name.into(), phase, status: StepStatus::Pending, detail, duration_ms: 0.0 });
    }

    /// Appends `given` (steps measured elsewhere, e.g. by the analysis) of `phase`, or a
    /// skipped step named `name` with `reason` when there are none.
    pub fn extend_or_skip(&mut self, given: &[Step], phase: Phase, name: &str, reason: &str) {
        let before = self.steps.len();
        self.steps.extend(given.iter().filter(|s| s.phase == phase).cloned());
        if self.steps.len() == before {
            self.skipped(name, phase, reason);
        }
    }

    /// The finished log; `summary.duration_ms` is measured from `started`.
    pub fn finish(
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

/// The steps of a release before its commit: the analysis steps it carries (or skipped
/// placeholders saying why there are none), the contract check, the key scopes.
///
/// # Errors
/// When the contract hash does not match the contract schema the request carries.
pub fn release_log(
    req: &ReleaseRequest,
    analysis: &[Step],
    changes: &[TenantChange],
    now: u64,
) -> Result<LogBuilder, crate::domain::Refusal> {
    let task = req.description.clone().unwrap_or_else(|| {
        format!(
            "release schema {} / contract {} to {} tenant(s)",
            req.schema_version,
            req.contract_hash,
            req.tenants.len()
        )
    });
    let mut log = LogBuilder::new(task, now);
    log.extend_or_skip(
        analysis,
        Phase::SchemaAnalysis,
        "analyse SQL schema changes",
        "the request carries no analysis input (analysis.schema_from/schema_to)",
    );
    let t = Instant::now();
    const CONTRACT_STEP: &str = "verify contract hash against its schema";
    match crate::domain::check_contract(&req.contract_hash, req.contract_schema.as_ref())? {
        Some(detail) => log.push(CONTRACT_STEP, Phase::ContractVerification, StepStatus::Ok, detail, t),
        None => log.skipped(
            CONTRACT_STEP,
            Phase::ContractVerification,
            "no contract_schema in the request; contract_hash taken as given",
        ),
    }
    log.steps.extend(analysis.iter().filter(|s| s.phase == Phase::ContractVerification).cloned());
    log.steps.push(key_generation_step(changes));
    log.extend_or_skip(
        analysis,
        Phase::TenantIsolationCheck,
        "check tenant isolation",
        "the request carries no analysis input (analysis.schema_to)",
    );
    Ok(log)
}

/// The steps of a rollback of `id` before its commit.
pub fn rollback_log(id: &ReleaseId, reason: &str, changes: &[TenantChange], now: u64) -> LogBuilder {
    let mut log = LogBuilder::new(format!("roll back {id}: {reason}"), now);
    log.skipped(
        "analyse SQL schema changes",
        Phase::SchemaAnalysis,
        "a rollback restores the schema version recorded before the release; nothing to analyse",
    );
    log.skipped(
        "verify contract hash against its schema",
        Phase::ContractVerification,
        "a rollback restores the contract hash recorded before the release",
    );
    log.steps.push(key_generation_step(changes));
    log.skipped("check tenant isolation", Phase::TenantIsolationCheck, "a rollback returns to a released state");
    log
}

/// What the commit itself contributes to the log, measured inside its transaction.
pub struct CommitTail<'a> {
    /// Release or rollback.
    pub kind: ReleaseKind,
    /// Tenants moved.
    pub tenants: usize,
    /// The convergence bound.
    pub manifest_max_age_ms: u64,
    /// The CDN service whose purge went to the outbox, if any.
    pub cdn_service: Option<&'a str>,
    /// Keys in that purge.
    pub purge_keys: usize,
    /// Live PoPs at commit.
    pub live_pops: usize,
    /// The rollback verification step (checked inside the transaction).
    pub verification: Step,
}

/// The complete log of a commit: `log`'s steps, then commit, purge, acknowledgement wait and
/// rollback verification (the phase order), with the summary.
pub fn finish_commit(
    mut log: LogBuilder,
    tail: CommitTail<'_>,
    id: &ReleaseId,
    commit_started: Instant,
    started: Instant,
) -> ExecutionLog {
    log.steps.push(commit_step(tail.tenants, tail.manifest_max_age_ms, commit_started));
    log.steps.push(purge_step_at_commit(tail.cdn_service, tail.purge_keys));
    log.pending(
        ACK_STEP,
        Phase::EdgeNodeInvalidation,
        format!("waiting for {} live PoP(s) to acknowledge every tenant's new generation", tail.live_pops),
    );
    log.steps.push(tail.verification);
    let mut summary = serde_json::Map::new();
    summary.insert("release_id".into(), id.as_str().into());
    summary.insert("kind".into(), tail.kind.as_str().into());
    summary.insert("tenants".into(), tail.tenants.into());
    summary.insert("live_pops_at_commit".into(), tail.live_pops.into());
    summary.insert("manifest_max_age_ms".into(), tail.manifest_max_age_ms.into());
    summary.insert("converged".into(), false.into());
    log.finish(id, started, summary)
}

/// Derives, for every tenant, the cache key of `GET /` under the scope it leaves and under
/// the scope it moves to, and checks that they differ (so no object stored before the
/// release can match a key derived after it). The step reports the keys it derived.
pub fn key_generation_step(changes: &[TenantChange]) -> Step {
    let started = Instant::now();
    let root = NormalizedRequest::new(&RequestParts { method: "GET", path: "/", query: None, vary: &[] });
    let root = match root {
        Ok(r) => r,
        Err(e) => {
            return step(
                KEY_STEP,
                Phase::DeterministicKeyGeneration,
                StepStatus::Failed,
                format!("cannot normalize the probe request GET /: {e}"),
                started,
            );
        }
    };
    let scope = |c: &TenantChange, to: bool| KeyScope {
        tenant: c.tenant.clone(),
        schema_version: if to { c.to_schema_version } else { c.from_schema_version },
        contract_hash: if to { c.to_contract_hash } else { c.from_contract_hash },
        generation: if to { c.to_generation } else { c.from_generation },
    };
    let mut collisions = Vec::new();
    let mut examples = Vec::new();
    for c in changes {
        let (old, new) = (CacheKey::derive(&scope(c, false), &root), CacheKey::derive(&scope(c, true), &root));
        if old == new {
            collisions.push(c.tenant.to_string());
        }
        if examples.len() < 3 {
            examples.push(format!("{}: {} -> {}", c.tenant, &old.to_hex()[..16], &new.to_hex()[..16]));
        }
    }
    let retired = retired_keys(changes);
    let shown = retired.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = retired.len().saturating_sub(5);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    if !collisions.is_empty() {
        return step(
            KEY_STEP,
            Phase::DeterministicKeyGeneration,
            StepStatus::Failed,
            format!("the new scope derives the same key as the old one for: {}", collisions.join(", ")),
            started,
        );
    }
    step(
        KEY_STEP,
        Phase::DeterministicKeyGeneration,
        StepStatus::Ok,
        format!(
            "derived the key of GET / under the old and the new scope of {} tenant(s); every pair differs, so no \
             object stored before can match a key derived after (e.g. {}); retired generation surrogate keys: \
             {shown}{more}",
            changes.len(),
            examples.join("; ")
        ),
        started,
    )
}

/// The `t/{tenant}/g/{generation}` surrogate keys a release retires.
pub fn retired_keys(changes: &[TenantChange]) -> Vec<String> {
    changes.iter().map(|c| SurrogateKey::generation(&c.tenant, c.from_generation).to_string()).collect()
}

/// The commit step: `n` tenants moved atomically.
pub fn commit_step(n: usize, manifest_max_age_ms: u64, started: Instant) -> Step {
    step(
        COMMIT_STEP,
        Phase::EdgeNodeInvalidation,
        StepStatus::Ok,
        format!(
            "{n} tenant(s) moved to new generations atomically; each PoP stops serving their older objects once it \
             re-fetches the manifest (max age {manifest_max_age_ms} ms)"
        ),
        started,
    )
}

/// The purge step as recorded at commit: queued in the outbox when a CDN is configured,
/// skipped otherwise.
pub fn purge_step_at_commit(cdn: Option<&str>, keys: usize) -> Step {
    match cdn {
        Some(service) => Step {
            step: PURGE_STEP.into(),
            phase: Phase::EdgeNodeInvalidation,
            status: StepStatus::Pending,
            detail: format!(
                "{keys} surrogate key(s) queued in the outbox (same transaction as the commit) for service {service}"
            ),
            duration_ms: 0.0,
        },
        None => skipped(
            PURGE_STEP,
            Phase::EdgeNodeInvalidation,
            "no purge service is configured ([fastly] service_id / FASTLY_SERVICE_ID); the generation bump alone \
             invalidates",
        ),
    }
}

/// Replaces the step of the same name in `log` (appends it when there is none).
pub fn replace_step(log: &mut ExecutionLog, step: Step) {
    match log.steps.iter_mut().find(|s| s.step == step.step) {
        Some(slot) => *slot = step,
        None => log.steps.push(step),
    }
}

/// Records convergence: the acknowledgement step becomes `ok` with the measured latencies.
pub fn mark_converged(log: &mut ExecutionLog, conv: &Convergence) {
    let latency = conv.max_ms.unwrap_or(0);
    for step in log.steps.iter_mut().filter(|s| s.step == ACK_STEP && s.status == StepStatus::Pending) {
        step.status = StepStatus::Ok;
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
}

/// Ends the acknowledgement wait of a release that will never converge (`why`: e.g.
/// superseded by a rollback). Returns whether anything changed.
pub fn close_ack_wait(log: &mut ExecutionLog, why: &str) -> bool {
    let mut changed = false;
    for step in log.steps.iter_mut().filter(|s| s.step == ACK_STEP && s.status == StepStatus::Pending) {
        step.status = StepStatus::Skipped;
        step.detail = format!("{}; {why} before every PoP acknowledged", step.detail);
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

    use super::*;

    fn change(tenant: &str, from: u64) -> TenantChange {
        TenantChange {
            tenant: TenantId::new(tenant).unwrap(),
            from_generation: Generation(from),
            to_generation: Generation(from + 1),
            from_schema_version: SchemaVersion::new("1.0.0").unwrap(),
            to_schema_version: SchemaVersion::new("1.0.1").unwrap(),
            from_contract_hash: ContractHash::new(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            to_contract_hash: ContractHash::new(&format!("sha256:{}", "b".repeat(64))).unwrap(),
        }
    }

    #[test]
    fn key_generation_reports_the_keys_it_derived() {
        let s = key_generation_step(&[change("acme", 1), change("globex", 7)]);
        assert_eq!((s.phase, s.status), (Phase::DeterministicKeyGeneration, StepStatus::Ok));
        assert!(s.detail.contains("2 tenant(s)") && s.detail.contains("acme: "), "{}", s.detail);
        assert!(s.detail.contains("t/acme/g/1") && s.detail.contains("t/globex/g/7"), "{}", s.detail);
    }

    #[test]
    fn purge_step_says_what_will_happen() {
        assert_eq!(purge_step_at_commit(None, 3).status, StepStatus::Skipped);
        let queued = purge_step_at_commit(Some("svc"), 3);
        assert_eq!(queued.status, StepStatus::Pending);
        assert!(queued.detail.contains("outbox") && queued.detail.contains("svc"));
    }

    #[test]
    fn only_the_ack_step_converges_or_closes() {
        let mut b = LogBuilder::new("t".into(), 0);
        b.pending(ACK_STEP, Phase::EdgeNodeInvalidation, "waiting".into());
        b.steps.push(purge_step_at_commit(Some("svc"), 1));
        let mut log = b.finish(&ReleaseId::new("rel-1").unwrap(), Instant::now(), Default::default());
        assert!(close_ack_wait(&mut log, "superseded"));
        assert_eq!(log.steps[0].status, StepStatus::Skipped);
        assert_eq!(log.steps[1].status, StepStatus::Pending, "the purge is not the ack wait");
        assert!(!close_ack_wait(&mut log, "again"));
    }
}

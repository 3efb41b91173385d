//! Durable post-commit effects. A release or rollback writes its effects (the CDN purge of
//! its plan's surrogate keys and of its tenants' `edgegen-manifest/{tenant}` keys) to the
//! store's outbox in the same transaction as the commit, and a tenant registration writes
//! the sync of the edge's `edgegen_hosts` Config Store (when the coordinator owns it) in the
//! same transaction as the registration; [`run_worker`] delivers each at least once, with
//! exponential backoff. The outcome of every purge attempt is recorded in the release's
//! execution log; that of every host-map sync in `edgegen_host_syncs_total` at `/metrics`
//! and a log line (a registration has no execution log). A crash between the commit and the
//! delivery only delays it: the next process finds the effect still due.
//!
//! Pure parts (the effect's wire form, the backoff schedule, the step text) are functions
//! of values; the worker is the thin shell that calls the CDN and the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgegen_shared::ReleaseId;
use edgegen_shared::api::{Phase, Step, StepStatus, TenantChange};
use edgegen_shared::surrogate::SurrogateKey;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::execlog::PURGE_STEP;
use crate::hostmap;
use crate::hostsync;
use crate::metrics::Metrics;
use crate::store::Store;

/// What an effect does (stored as JSON in the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum EffectKind {
    /// Purge these surrogate keys through the configured CDN.
    CdnPurge {
        /// The keys, in plan order.
        keys: Vec<String>,
    },
    /// Make the `edgegen_hosts` Config Store hold the host map of all tenants registered
    /// at delivery time ([`crate::hostsync::reconcile`]): idempotent, so one sync covers
    /// every registration before it.
    SyncHosts,
}

/// An effect due for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// The outbox row.
    pub id: i64,
    /// The release (or rollback) that wrote it; `None` for a registration's host sync.
    pub release: Option<ReleaseId>,
    /// What to do.
    pub kind: EffectKind,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Attempts after which an effect is given up (and its step marked failed).
pub const MAX_ATTEMPTS: u32 = 12;
/// Delay before the second attempt; doubled after each failure.
pub const FIRST_BACKOFF_MS: u64 = 100;
/// Longest delay between attempts.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// The delay after the `attempts`-th failed attempt (1-based), or `None` once the effect is
/// given up.
pub fn backoff_ms(attempts: u32) -> Option<u64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exp = attempts.saturating_sub(1).min(20);
    Some(FIRST_BACKOFF_MS.saturating_mul(1 << exp).min(MAX_BACKOFF_MS))
}

/// The keys a rollback purges: each tenant's retired generation key and its manifest key.
/// (A release purges the keys of its plan, [`crate::analysis::purge_keys`], which start
/// with the same two.)
pub fn rollback_purge_keys(changes: &[TenantChange]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|c| {
            [
                SurrogateKey::generation(&c.tenant, c.from_generation).to_string(),
                SurrogateKey::manifest(&c.tenant).to_string(),
            ]
        })
        .collect()
}

/// What one purge attempt did, for the execution log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeAttempt {
    /// Keys asked for.
    pub keys: usize,
    /// Keys the CDN did not purge, with its error for each.
    pub failed: Vec<String>,
    /// API calls made.
    pub calls: usize,
    /// The service.
    pub service: String,
    /// Soft purge.
    pub soft: bool,
}

/// The execution-log step for the `attempt`-th attempt (1-based) with its outcome, and when
/// to try again (`None`: done, delivered or given up).
pub fn purge_outcome(outcome: &PurgeAttempt, attempt: u32, now: u64, duration_ms: f64) -> (Step, Option<u64>) {
    let mode = if outcome.soft { "soft" } else { "hard" };
    let (status, detail, retry) = if outcome.failed.is_empty() {
        (
            StepStatus::Ok,
            format!(
                "{} surrogate key(s) purged ({mode}) from service {} in {} API call(s), attempt {attempt}",
                outcome.keys, outcome.service, outcome.calls
            ),
            None,
        )
    } else {
        let what = format!(
            "attempt {attempt}: {} of {} surrogate key(s) not purged ({mode}, service {}, {} API call(s)): {}",
            outcome.failed.len(),
            outcome.keys,
            outcome.service,
            outcome.calls,
            outcome.failed.join("; ")
        );
        match backoff_ms(attempt) {
            Some(delay) => (StepStatus::Pending, format!("{what}; retrying in {delay} ms"), Some(now + delay)),
            None => (
                StepStatus::Failed,
                format!("{what}; given up after {attempt} attempts (the generation bump still invalidates them)"),
                None,
            ),
        }
    };
    (Step { step: PURGE_STEP.into(), phase: Phase::EdgeNodeInvalidation, status, detail, duration_ms }, retry)
}

/// The CDN the worker purges through.
pub struct Cdn {
    /// The API client.
    pub client: crate::fastly::FastlyClient,
    /// The service id (`None`: the coordinator only keeps the host map).
    pub service: Option<String>,
    /// Soft purges (mark stale) instead of hard ones.
    pub soft: bool,
    /// The `edgegen_hosts` Config Store the coordinator keeps in line with its tenants, if
    /// it owns one.
    pub hosts: Option<HostsStore>,
}

/// The edge's `edgegen_hosts` Config Store, owned by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsStore {
    /// Its id (`fastly config-store list`).
    pub store_id: String,
    /// Entries it may hold ([`crate::hostmap::DEFAULT_MAX_ENTRIES`] unless raised).
    pub max_entries: usize,
}

/// How a host-map sync attempt ended, for the log and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSyncOutcome {
    // The discriminants index the counters of [`Metrics`].
    /// The store holds the tenants' host map (repaired, or already in sync).
    Synced = 0,
    /// The attempt failed; another follows after a backoff.
    Retrying = 1,
    /// Given up: the tenants break a Config Store limit, or every attempt failed.
    Failed = 2,
}

/// What to do after the `attempt`-th host-map sync attempt (1-based) that ended with
/// `result` (`Err(true)`: a final error, `Err(false)`: one worth retrying): the outcome and
/// when to try again.
pub fn host_sync_outcome(result: Result<(), bool>, attempt: u32, now: u64) -> (HostSyncOutcome, Option<u64>) {
    match result {
        Ok(()) => (HostSyncOutcome::Synced, None),
        Err(true) => (HostSyncOutcome::Failed, None),
        Err(false) => match backoff_ms(attempt) {
            Some(delay) => (HostSyncOutcome::Retrying, Some(now + delay)),
            None => (HostSyncOutcome::Failed, None),
        },
    }
}

/// How often the worker looks for due effects when nothing wakes it.
const POLL: Duration = Duration::from_millis(200);
/// Effects taken per pass.
const BATCH: usize = 64;

/// Delivers due effects until `shutdown` resolves. `wake` is notified after each commit so a
/// fresh effect goes out at once rather than at the next poll.
pub async fn run_worker(
    store: Arc<dyn Store>,
    cdn: Arc<Cdn>,
    metrics: Arc<Metrics>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = deliver_due(&*store, &cdn, &metrics).await {
            tracing::error!(cause = %e.chain(), "outbox pass failed");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One pass: every effect due now, attempted once.
///
/// # Errors
/// When the store fails (the effects stay due).
pub async fn deliver_due(store: &dyn Store, cdn: &Cdn, metrics: &Metrics) -> Result<usize, crate::store::StoreError> {
    let due = store.due_effects(now_ms(), BATCH).await?;
    let n = due.len();
    for effect in due {
        match &effect.kind {
            EffectKind::CdnPurge { keys } => deliver_purge(store, cdn, &effect, keys).await?,
            EffectKind::SyncHosts => deliver_host_sync(store, cdn, metrics, &effect).await?,
        }
    }
    Ok(n)
}

async fn deliver_purge(
    store: &dyn Store,
    cdn: &Cdn,
    effect: &Effect,
    keys: &[String],
) -> Result<(), crate::store::StoreError> {
    let Some(service) = &cdn.service else {
        // Written while a service was configured; this process has none.
        let detail = format!(
            "{} surrogate key(s) not purged: no Fastly service is configured now (FASTLY_SERVICE_ID); \
             the generation bump still invalidates them",
            keys.len()
        );
        let step = Step {
            step: PURGE_STEP.into(),
            phase: Phase::EdgeNodeInvalidation,
            status: StepStatus::Failed,
            detail,
            duration_ms: 0.0,
        };
        tracing::warn!(release = ?effect.release, "CDN purge given up: no Fastly service is configured");
        return store.record_attempt(effect.id, Some(step), None).await;
    };
    let started = Instant::now();
    let report = cdn.client.purge(service, keys, cdn.soft).await;
    let attempt = PurgeAttempt {
        keys: keys.len(),
        failed: report.failed().map(|r| format!("{} ({})", r.key, r.error.as_deref().unwrap_or("?"))).collect(),
        calls: report.calls,
        service: service.clone(),
        soft: cdn.soft,
    };
    let (step, retry) =
        purge_outcome(&attempt, effect.attempts + 1, now_ms(), started.elapsed().as_secs_f64() * 1000.0);
    if step.status != StepStatus::Ok {
        tracing::warn!(release = ?effect.release, detail = %step.detail, "CDN purge attempt failed");
    }
    store.record_attempt(effect.id, Some(step), retry).await
}

/// The host map of the tenants registered now.
async fn desired_now(
    store: &dyn Store,
    max_entries: usize,
) -> Result<Result<hostmap::HostMap, hostmap::HostMapError>, crate::store::StoreError> {
    let tenants: Vec<_> = store.tenants().await?.into_iter().map(crate::domain::TenantState::view).collect();
    Ok(hostmap::desired(&tenants, max_entries))
}

/// One attempt at the host-map sync: the host map of every tenant registered now, written
/// to the Config Store. A [`HostMapError`] is final (retrying cannot fix the tenants); API
/// failures are retried.
async fn deliver_host_sync(
    store: &dyn Store,
    cdn: &Cdn,
    metrics: &Metrics,
    effect: &Effect,
) -> Result<(), crate::store::StoreError> {
    let attempt = effect.attempts + 1;
    let result = match &cdn.hosts {
        None => Err((true, "no hosts Config Store is configured (EDGEGEN_HOSTS_STORE_ID)".to_owned())),
        Some(hosts) => {
            let desired = desired_now(store, hosts.max_entries).await?;
            match desired {
                Err(e) => Err((true, format!("edgegen_hosts: {e}; nothing was written"))),
                Ok(desired) => match hostsync::reconcile(&cdn.client, &hosts.store_id, &desired, false).await {
                    // Another replica may have synced a newer registration meanwhile, which
                    // this (older) map undid: sync again until the map held still.
                    Ok(_) if desired_now(store, hosts.max_entries).await?.as_ref() != Ok(&desired) => {
                        Err((false, "the tenants changed during the sync; syncing again".to_owned()))
                    }
                    Ok(done) => {
                        tracing::info!(
                            store = %hosts.store_id,
                            hosts = desired.len(),
                            changed = done.drift.len(),
                            attempt,
                            "host map synced"
                        );
                        Ok(())
                    }
                    Err(e) => Err((false, e.to_string())),
                },
            }
        }
    };
    let (outcome, retry) =
        host_sync_outcome(result.as_ref().map(|_| ()).map_err(|(fatal, _)| *fatal), attempt, now_ms());
    if let Err((_, why)) = &result {
        match outcome {
            HostSyncOutcome::Retrying => {
                tracing::warn!(attempt, retry_at = ?retry, "host map sync failed, retrying: {why}")
            }
            _ => tracing::error!(attempt, "host map sync given up: {why}"),
        }
    }
    metrics.host_sync(outcome);
    store.record_attempt(effect.id, None, retry).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let delays: Vec<Option<u64>> = (1..=MAX_ATTEMPTS).map(backoff_ms).collect();
        assert_eq!(&delays[..4], &[Some(100), Some(200), Some(400), Some(800)]);
        assert!(delays[..(MAX_ATTEMPTS as usize - 1)].iter().all(|d| d.is_some_and(|d| d <= MAX_BACKOFF_MS)));
        assert_eq!(delays.last(), Some(&None));
    }

    #[test]
    fn the_step_states_what_happened() {
        let mut a = PurgeAttempt { keys: 4, failed: vec![], calls: 1, service: "svc".into(), soft: false };
        let (step, retry) = purge_outcome(&a, 1, 1000, 2.0);
        assert_eq!((step.status, retry), (StepStatus::Ok, None));
        assert!(step.detail.contains("4 surrogate key(s) purged (hard) from service svc"), "{}", step.detail);
        a.failed = vec!["t/a/g/1 (HTTP 500)".into()];
        let (step, retry) = purge_outcome(&a, 2, 1000, 2.0);
        assert_eq!((step.status, retry), (StepStatus::Pending, Some(1200)));
        assert!(step.detail.contains("1 of 4") && step.detail.contains("HTTP 500"), "{}", step.detail);
        let (step, retry) = purge_outcome(&a, MAX_ATTEMPTS, 1000, 2.0);
        assert_eq!((step.status, retry), (StepStatus::Failed, None));
    }

    #[test]
    fn host_syncs_retry_api_failures_and_stop_on_a_bad_host_map() {
        assert_eq!(host_sync_outcome(Ok(()), 3, 1000), (HostSyncOutcome::Synced, None));
        assert_eq!(host_sync_outcome(Err(false), 1, 1000), (HostSyncOutcome::Retrying, Some(1100)));
        assert_eq!(host_sync_outcome(Err(false), MAX_ATTEMPTS, 1000), (HostSyncOutcome::Failed, None));
        assert_eq!(host_sync_outcome(Err(true), 1, 1000), (HostSyncOutcome::Failed, None));
    }

    #[test]
    fn rollbacks_purge_the_retired_generation_and_the_manifest() {
        use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};
        let c = TenantChange {
            tenant: TenantId::new("acme").unwrap(),
            from_generation: Generation(3),
            to_generation: Generation(4),
            from_schema_version: SchemaVersion::new("1.0.1").unwrap(),
            to_schema_version: SchemaVersion::new("1.0.0").unwrap(),
            from_contract_hash: ContractHash::from_digest([2; 32]),
            to_contract_hash: ContractHash::from_digest([1; 32]),
        };
        assert_eq!(rollback_purge_keys(&[c]), ["t/acme/g/3", "edgegen-manifest/acme"]);
    }
}

//! Live data against the new contract: before an analysed release commits, the coordinator
//! fetches a bounded sample of responses per tenant from the origin — as that tenant (its
//! `Host`, and the `edgegen-tenant` header the edge sends) — and validates each body against the release's new contract with the
//! `jsonschema` validator. It reports which tenants hold data that clients of the new
//! contract cannot read (tenant, path, JSON pointer, reason) and records a
//! `contract_verification` step with the measured figures. `edgegen plan --samples DIR`
//! runs the same validation offline on saved responses.
//!
//! Settings (`[analysis.live_check]` of edgegen.toml), and the sample paths per route
//! (`[[analysis.routes]] samples = [...]`):
//!
//! ```toml
//! [analysis.live_check]
//! origin = "http://127.0.0.1:9000"   # where tenants' responses are fetched
//! policy = "block"                   # or "warn": record the step, commit anyway
//! samples_per_tenant = 5             # default 5
//! concurrency = 8                    # requests in flight, default 8
//! timeout_ms = 2000                  # per request, default 2000
//! ```
//!
//! A sample that cannot be verified (unreachable origin, timeout, non-2xx status, a body that
//! is not JSON) is a failure like an invalid one: it never passes silently.
//!
//! Pure parts: [`targets`], [`validator`], [`validate`], [`LiveReport`] (figures, step,
//! verdict). The I/O shells: [`fetch`] (HTTP) and [`read_dir`] (offline).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgegen_shared::api::{Phase, Step, StepStatus};
use serde::Deserialize;
use serde_json::Value;

/// What a failing live check does to the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Refuse the release (nothing moves).
    #[default]
    Block,
    /// Record the failures in the step and commit.
    Warn,
}

/// `[analysis.live_check]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveCheckConfig {
    /// The origin's base URL (`http://host:port`).
    pub origin: String,
    /// Block or warn.
    #[serde(default)]
    pub policy: Policy,
    /// Sample paths fetched per tenant (the first ones of the routes' `samples`).
    #[serde(default = "default_samples")]
    pub samples_per_tenant: usize,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_samples() -> usize {
    5
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout_ms() -> u64 {
    2000
}

/// Largest response body read.
const MAX_BODY_BYTES: usize = 4 << 20;

/// One response to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The tenant.
    pub tenant: String,
    /// The `Host` it is fetched as.
    pub host: String,
    /// The path.
    pub path: String,
}

/// The sample requests: for each tenant (sorted), the first `per_tenant` sample paths, as
/// the tenant's first host.
pub fn targets(tenants: &[(String, Vec<String>)], samples: &[String], per_tenant: usize) -> Vec<Target> {
    let mut sorted: Vec<&(String, Vec<String>)> = tenants.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (tenant, hosts) in sorted {
        let Some(host) = hosts.first() else { continue };
        for path in samples.iter().take(per_tenant) {
            out.push(Target { tenant: tenant.clone(), host: host.clone(), path: path.clone() });
        }
    }
    out
}

/// A place in a body the contract rejects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the body.
    pub pointer: String,
    /// Why.
    pub reason: String,
}

/// What one sample showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The body is valid under the new contract.
    Valid,
    /// The body violates the new contract.
    Invalid {
        /// Where and why (at most 10).
        violations: Vec<Violation>,
    },
    /// The sample could not be verified.
    Unverified {
        /// Why (unreachable, timeout, status, not JSON).
        reason: String,
    },
}

/// One sample's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SampleResult {
    /// The tenant.
    pub tenant: String,
    /// The path (or file, offline).
    pub path: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Adds the bounds of integer `format`s (which serde enforces) as `minimum`/`maximum` where
/// the schema leaves them out, so the validator checks widths too.
fn with_integer_bounds(schema: &mut Value) {
    match schema {
        Value::Object(m) => {
            if let Some((lo, hi)) =
                m.get("format").and_then(Value::as_str).and_then(edgegen_analysis::contract::integer_format_bounds)
            {
                let fit =
                    |x: i128| i64::try_from(x).map(Value::from).ok().or_else(|| u64::try_from(x).map(Value::from).ok());
                if let (false, Some(lo)) = (m.contains_key("minimum"), fit(lo)) {
                    m.insert("minimum".into(), lo);
                }
                if let (false, Some(hi)) = (m.contains_key("maximum"), fit(hi)) {
                    m.insert("maximum".into(), hi);
                }
            }
            m.values_mut().for_each(with_integer_bounds);
        }
        Value::Array(a) => a.iter_mut().for_each(with_integer_bounds),
        _ => {}
    }
}

/// Compiles the new contract.
///
/// # Errors
/// The contract is not a schema the validator accepts.
pub fn validator(contract: &Value) -> Result<jsonschema::Validator, String> {
    let mut schema = contract.clone();
    with_integer_bounds(&mut schema);
    jsonschema::validator_for(&schema).map_err(|e| format!("the new contract cannot be compiled: {e}"))
}

/// Validates one response body.
pub fn validate(validator: &jsonschema::Validator, body: &[u8]) -> Outcome {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Outcome::Unverified { reason: format!("body is not JSON: {e}") },
    };
    let violations: Vec<Violation> = validator
        .iter_errors(&value)
        .take(10)
        .map(|e| Violation { pointer: e.instance_path().to_string(), reason: e.to_string() })
        .collect();
    if violations.is_empty() { Outcome::Valid } else { Outcome::Invalid { violations } }
}

/// The results of one live check, with its measured figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveReport {
    /// Every sample, sorted by tenant and path.
    pub samples: Vec<SampleResult>,
    /// Wall time of the check.
    pub duration_ms: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
}

impl LiveReport {
    fn count(&self, pick: impl Fn(&Outcome) -> bool) -> usize {
        self.samples.iter().filter(|s| pick(&s.outcome)).count()
    }

    /// Every sample was valid.
    pub fn passed(&self) -> bool {
        !self.samples.is_empty() && self.samples.iter().all(|s| s.outcome == Outcome::Valid)
    }

    /// Tenants with at least one failing sample, sorted.
    pub fn failing_tenants(&self) -> Vec<&str> {
        let mut t: Vec<&str> =
            self.samples.iter().filter(|s| s.outcome != Outcome::Valid).map(|s| s.tenant.as_str()).collect();
        t.dedup();
        t
    }

    /// One line per failure: `tenant path pointer: reason`.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.samples {
            match &s.outcome {
                Outcome::Valid => {}
                Outcome::Invalid { violations } => {
                    for v in violations {
                        let at = if v.pointer.is_empty() { "/" } else { &v.pointer };
                        out.push(format!("{} {} at {at}: {}", s.tenant, s.path, v.reason));
                    }
                }
                Outcome::Unverified { reason } => out.push(format!("{} {}: not verified: {reason}", s.tenant, s.path)),
            }
        }
        out
    }

    /// The `contract_verification` step: `ok`, `failed` (policy block) or `warning`.
    pub fn step(&self, policy: Policy) -> Step {
        let tenants: std::collections::BTreeSet<&str> = self.samples.iter().map(|s| s.tenant.as_str()).collect();
        let invalid = self.count(|o| matches!(o, Outcome::Invalid { .. }));
        let unverified = self.count(|o| matches!(o, Outcome::Unverified { .. }));
        let status = match (self.passed(), policy) {
            (true, _) => StepStatus::Ok,
            (false, Policy::Block) => StepStatus::Failed,
            (false, Policy::Warn) => StepStatus::Warning,
        };
        let mut detail = format!(
            "{} sample(s) of {} tenant(s) in {:.1} ms (concurrency {}): {} valid, {} invalid, {} not verified",
            self.samples.len(),
            tenants.len(),
            self.duration_ms,
            self.concurrency,
            self.count(|o| *o == Outcome::Valid),
            invalid,
            unverified
        );
        if self.samples.is_empty() {
            detail.push_str("; no sample paths configured ([[analysis.routes]] samples)");
        }
        let failures = self.failures();
        if !failures.is_empty() {
            detail.push_str(&format!(
                "; tenants holding data the new contract cannot read: {}; {}",
                self.failing_tenants().join(", "),
                failures.join(" | ")
            ));
        }
        Step {
            step: "check tenants' live data against the new contract".into(),
            phase: Phase::ContractVerification,
            status,
            detail,
            duration_ms: self.duration_ms,
        }
    }
}

fn sorted(mut samples: Vec<SampleResult>) -> Vec<SampleResult> {
    samples.sort_by(|a, b| (&a.tenant, &a.path).cmp(&(&b.tenant, &b.path)));
    samples
}

/// Fetches every target from `origin` (at most `concurrency` at once, each within `timeout`)
/// and validates the bodies.
pub async fn fetch(
    origin: &str,
    targets: Vec<Target>,
    validator: Arc<jsonschema::Validator>,
    concurrency: usize,
    timeout: Duration,
) -> LiveReport {
    let started = Instant::now();
    let concurrency = concurrency.max(1);
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| e.to_string());
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let origin = origin.trim_end_matches('/').to_owned();
    for t in targets {
        let (client, permits, validator) = (client.clone(), Arc::clone(&permits), Arc::clone(&validator));
        let url = format!("{origin}{}", t.path);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = match client {
                Err(e) => Outcome::Unverified { reason: format!("HTTP client: {e}") },
                Ok(client) => match get(&client, &url, &t.host, &t.tenant).await {
                    Ok(body) => validate(&validator, &body),
                    Err(reason) => Outcome::Unverified { reason },
                },
            };
            SampleResult { tenant: t.tenant, path: t.path, outcome }
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(s) => samples.push(s),
            Err(e) => samples.push(SampleResult {
                tenant: "?".into(),
                path: "?".into(),
                outcome: Outcome::Unverified { reason: format!("sample task failed: {e}") },
            }),
        }
    }
    LiveReport { samples: sorted(samples), duration_ms: started.elapsed().as_secs_f64() * 1000.0, concurrency }
}

/// One sample, as the edge asks the origin for it: the tenant's `Host` and `edgegen-tenant`.
async fn get(client: &reqwest::Client, url: &str, host: &str, tenant: &str) -> Result<Vec<u8>, String> {
    let response = client
        .get(url)
        .header(reqwest::header::HOST, host)
        .header("edgegen-tenant", tenant)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("origin unreachable: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("origin answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
    }
    Ok(body.to_vec())
}

/// Offline: validates saved responses laid out as `DIR/<tenant>/<file>.json`.
///
/// # Errors
/// `DIR` cannot be read.
pub fn read_dir(dir: &Path, validator: &jsonschema::Validator) -> Result<LiveReport, String> {
    let started = Instant::now();
    let unreadable = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let mut samples = Vec::new();
    let mut tenants: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let entry = entry.map_err(|e| unreadable(dir, e))?;
        if entry.path().is_dir() {
            tenants.insert(entry.file_name().to_string_lossy().into_owned(), entry.path());
        }
    }
    for (tenant, path) in tenants {
        for entry in std::fs::read_dir(&path).map_err(|e| unreadable(&path, e))? {
            let file = entry.map_err(|e| unreadable(&path, e))?.path();
            if file.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let outcome = match std::fs::read(&file) {
                Ok(body) => validate(validator, &body),
                Err(e) => Outcome::Unverified { reason: e.to_string() },
            };
            samples.push(SampleResult { tenant: tenant.clone(), path: file.display().to_string(), outcome });
        }
    }
    Ok(LiveReport { samples: sorted(samples), duration_ms: started.elapsed().as_secs_f64() * 1000.0, concurrency: 1 })
}

/// The release hook: with `[analysis.live_check]` configured and a new contract in the
/// request, fetches and validates the samples of `tenants` (id, hosts). `Ok(None)` when
/// there is nothing to check; `Err(message)` when the policy blocks the release.
///
/// # Errors
/// The check failed under the `block` policy, or the contract cannot be compiled.
pub async fn before_commit(
    config: &crate::analysis::AnalysisConfig,
    tenants: &[(String, Vec<String>)],
    contract: Option<&Value>,
) -> Result<Option<Step>, String> {
    let (Some(live), Some(contract)) = (&config.live_check, contract) else { return Ok(None) };
    let validator = Arc::new(validator(contract)?);
    let samples: Vec<String> = config.routes.iter().flat_map(|r| r.samples.iter().cloned()).collect();
    let targets = targets(tenants, &samples, live.samples_per_tenant);
    let report =
        fetch(&live.origin, targets, validator, live.concurrency, Duration::from_millis(live.timeout_ms)).await;
    let step = report.step(live.policy);
    if !report.passed() && live.policy == Policy::Block {
        return Err(format!("release blocked by the live-data contract check, nothing moved: {}", step.detail));
    }
    Ok(Some(step))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contract() -> Value {
        json!({"type": "object", "properties": {
            "id": {"type": "integer", "format": "uint32", "minimum": 0},
            "kind": {"type": "string", "enum": ["V1", "V3"]}}, "required": ["id", "kind"]})
    }

    #[test]
    fn bodies_are_validated_with_pointers_and_integer_widths() {
        let v = validator(&contract()).unwrap();
        assert_eq!(validate(&v, br#"{"id": 1, "kind": "V3"}"#), Outcome::Valid);
        let Outcome::Invalid { violations } = validate(&v, br#"{"id": 1, "kind": "V2"}"#) else { panic!() };
        assert_eq!(violations[0].pointer, "/kind");
        assert!(violations[0].reason.contains("V2"), "{violations:?}");
        let Outcome::Invalid { violations } = validate(&v, br#"{"id": 4294967296, "kind": "V1"}"#) else { panic!() };
        assert_eq!(violations[0].pointer, "/id", "u32 width enforced");
        assert!(matches!(validate(&v, b"<html>"), Outcome::Unverified { .. }));
    }

    #[test]
    fn targets_are_bounded_per_tenant_and_sorted() {
        let tenants = vec![("b".to_owned(), vec!["b.test".to_owned()]), ("a".to_owned(), vec!["a.test".to_owned()])];
        let samples: Vec<String> = (1..=7).map(|i| format!("/v1/users/{i}")).collect();
        let t = targets(&tenants, &samples, 5);
        assert_eq!(t.len(), 10);
        assert_eq!((t[0].tenant.as_str(), t[0].host.as_str()), ("a", "a.test"));
        assert_eq!(t[9].path, "/v1/users/5");
    }

    #[test]
    fn a_failing_report_names_tenant_path_pointer_and_blocks_or_warns() {
        let report = LiveReport {
            samples: vec![
                SampleResult { tenant: "acme".into(), path: "/v1/users/1".into(), outcome: Outcome::Valid },
                SampleResult {
                    tenant: "beta".into(),
                    path: "/v1/users/1".into(),
                    outcome: Outcome::Invalid {
                        violations: vec![Violation { pointer: "/kind".into(), reason: "\"V2\" is not one of".into() }],
                    },
                },
                SampleResult {
                    tenant: "gamma".into(),
                    path: "/v1/users/1".into(),
                    outcome: Outcome::Unverified { reason: "origin unreachable".into() },
                },
            ],
            duration_ms: 3.0,
            concurrency: 8,
        };
        assert!(!report.passed());
        assert_eq!(report.failing_tenants(), ["beta", "gamma"]);
        let step = report.step(Policy::Block);
        assert_eq!((step.phase.as_str(), step.status.as_str()), ("contract_verification", "failed"));
        assert!(step.detail.contains("beta /v1/users/1 at /kind"), "{}", step.detail);
        assert!(step.detail.contains("1 valid, 1 invalid, 1 not verified"), "{}", step.detail);
        assert_eq!(report.step(Policy::Warn).status, StepStatus::Warning);
        let empty = LiveReport { samples: vec![], duration_ms: 0.0, concurrency: 1 };
        assert!(!empty.passed(), "no sample is not a pass");
    }
}

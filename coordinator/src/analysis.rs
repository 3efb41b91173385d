//! Runs a release's analysis (schema diff, contract compatibility, tenant-isolation lint)
//! with `edgegen-analysis` and turns it into execution-log steps and a per-tenant,
//! deterministic invalidation plan. Pure: the handler calls it before the store commits.

use std::collections::BTreeSet;
use std::time::Instant;

use edgegen_analysis::isolation::{self, IsolationSettings};
use edgegen_analysis::plan::{self, Report, Severity, schema_from};
use edgegen_analysis::{Dialect, diff};
use edgegen_shared::api::{AnalysisInput, Step, TenantChange};
use edgegen_shared::surrogate::SurrogateKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `[analysis]` of `edgegen.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Tenant column (default `tenant_id`).
    pub tenant_column: Option<String>,
    /// Tables shared by all tenants.
    #[serde(default)]
    pub global_tables: Vec<String>,
}

impl AnalysisConfig {
    /// Lint settings for `dialect`.
    pub fn settings(&self, dialect: Dialect) -> IsolationSettings {
        IsolationSettings {
            tenant_column: self.tenant_column.clone().unwrap_or_else(|| "tenant_id".into()),
            global_tables: self.global_tables.iter().cloned().collect::<BTreeSet<_>>(),
            dialect,
        }
    }
}

/// The analysis of one release request.
pub struct Analysis {
    /// The report (findings, verdict, plan hash).
    pub report: Report,
    /// Steps for the execution log, in phase order.
    pub steps: Vec<Step>,
}

fn step(name: &str, phase: &str, status: &str, detail: String, started: Instant) -> Step {
    Step {
        step: name.into(),
        phase: phase.into(),
        status: status.into(),
        detail,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

fn codes(report: &Report, pick: impl Fn(&edgegen_analysis::Finding) -> bool) -> String {
    let c: BTreeSet<String> = report
        .findings
        .iter()
        .filter(|f| pick(f))
        .map(|f| format!("{}{}", f.code, f.table.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()))
        .collect();
    if c.is_empty() { "none".into() } else { c.into_iter().collect::<Vec<_>>().join(", ") }
}

/// Analyses `input` (with the request's new contract schema, if any).
pub fn analyse(input: &AnalysisInput, contract_to: Option<&serde_json::Value>, config: &AnalysisConfig) -> Analysis {
    let dialect: Dialect = input.dialect.as_deref().unwrap_or("postgres").parse().unwrap_or(Dialect::Postgres);
    let settings = config.settings(dialect);
    let mut steps = Vec::new();

    let t = Instant::now();
    let schemas = schema_from(&[("schema_from".into(), input.schema_from.clone())], dialect)
        .and_then(|b| schema_from(&[("schema_to".into(), input.schema_to.clone())], dialect).map(|a| (b, a)));
    let mut findings = Vec::new();
    let outcome = match schemas {
        Ok((before, after)) => {
            findings.extend(diff::diff(&before, &after));
            let schema_report = plan::report(dialect, Ok(findings.clone()));
            steps.push(step(
                "analyse SQL schema changes",
                "schema_analysis",
                "ok",
                format!(
                    "{} breaking, {} risky, {} safe change(s): {}",
                    schema_report.summary.breaking,
                    schema_report.summary.risky,
                    schema_report.summary.safe,
                    codes(&schema_report, |_| true)
                ),
                t,
            ));
            Ok(after)
        }
        Err(blocked) => {
            steps.push(step(
                "analyse SQL schema changes",
                "schema_analysis",
                "failed",
                format!("blocked: {blocked}"),
                t,
            ));
            Err(blocked)
        }
    };

    let t = Instant::now();
    let mut contract_blocked = None;
    match (&input.contract_from, contract_to) {
        (Some(from), Some(to)) => {
            let (from, to) = (from.to_string(), to.to_string());
            match edgegen_analysis::contract::findings(("contract_from", &from), ("contract_to", &to)) {
                Ok(f) => {
                    let r = plan::report(dialect, Ok(f.clone()));
                    let status = if r.summary.blocking > 0 { "failed" } else { "ok" };
                    steps.push(step(
                        "check contract compatibility",
                        "contract_verification",
                        status,
                        format!(
                            "{} change(s) breaking both ways, {} backward-only, {} forward-only, {} compatible: {}",
                            r.summary.blocking,
                            r.summary.breaking,
                            r.summary.risky,
                            r.summary.safe,
                            codes(&r, |_| true)
                        ),
                        t,
                    ));
                    findings.extend(f);
                }
                Err(blocked) => {
                    steps.push(step(
                        "check contract compatibility",
                        "contract_verification",
                        "failed",
                        format!("blocked: {blocked}"),
                        t,
                    ));
                    contract_blocked = Some(blocked);
                }
            }
        }
        _ => steps.push(Step {
            step: "check contract compatibility".into(),
            phase: "contract_verification".into(),
            status: "skipped".into(),
            detail: "needs analysis.contract_from and contract_schema".into(),
            duration_ms: 0.0,
        }),
    }

    let t = Instant::now();
    let report = match (outcome, contract_blocked) {
        (Ok(after), None) => {
            let violations = isolation::lint(&after, &settings);
            let status = if violations.is_empty() { "ok" } else { "failed" };
            let blocking = violations.len();
            findings.extend(violations);
            let report = plan::report(dialect, Ok(findings));
            steps.push(step(
                "check tenant isolation",
                "tenant_isolation_check",
                status,
                format!(
                    "{blocking} violation(s) in {} table(s) (tenant column {}): {}",
                    after.tables.len(),
                    settings.tenant_column,
                    codes(&report, |f| f.severity == Severity::Blocking && f.code.starts_with(|c: char| c != 'c'))
                ),
                t,
            ));
            report
        }
        (Err(b), _) | (Ok(_), Some(b)) => {
            steps.push(step(
                "check tenant isolation",
                "tenant_isolation_check",
                "skipped",
                "the analysis was blocked".into(),
                t,
            ));
            plan::report(dialect, Err(b))
        }
    };
    Analysis { report, steps }
}

/// A tenant's part of an invalidation plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantPlan {
    /// The change.
    #[serde(flatten)]
    pub change: TenantChange,
    /// Surrogate keys whose objects the release retires (for scoped purges).
    pub purge_surrogate_keys: Vec<String>,
    /// What to verify after the commit.
    pub verify: Vec<String>,
}

/// The deterministic per-tenant plan of a release: sorted by tenant, no times or ids, with a
/// hash over its canonical JSON (and the analysis plan hash, when there is one).
pub fn tenant_plans(changes: &[TenantChange], analysis: Option<&Report>) -> (Vec<TenantPlan>, String) {
    let mut plans: Vec<TenantPlan> = changes
        .iter()
        .map(|c| TenantPlan {
            change: c.clone(),
            purge_surrogate_keys: vec![
                SurrogateKey::generation(&c.tenant, c.from_generation).to_string(),
                SurrogateKey::manifest(&c.tenant).to_string(),
            ],
            verify: vec![
                format!("manifest of {} carries generation {}", c.tenant, c.to_generation),
                format!("every live PoP acknowledges generation {} of {}", c.to_generation, c.tenant),
                format!("origin stamps schema {} and contract {}", c.to_schema_version, c.to_contract_hash),
            ],
        })
        .collect();
    plans.sort_by(|a, b| a.change.tenant.cmp(&b.change.tenant));
    let body = serde_json::json!({ "tenants": plans, "analysis": analysis.map(|r| &r.plan_hash) });
    let canonical = edgegen_shared::contract::canonical_json(&body).unwrap_or_else(|_| body.to_string());
    (plans, format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes()))))
}

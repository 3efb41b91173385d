//! Runs a release's analysis (schema diff, contract compatibility, tenant-isolation lint)
//! with `edgegen-analysis` and turns it into execution-log steps and a per-tenant,
//! deterministic invalidation plan. Pure: the release engine calls it before the store commits.

use std::collections::BTreeSet;
use std::time::Instant;

use edgegen_analysis::isolation::{self, IsolationSettings};
use edgegen_analysis::plan::{self, Report, schema_from};
use edgegen_analysis::{Dialect, diff};
use edgegen_shared::TenantId;
pub use edgegen_shared::api::{AffectedRoute, TenantPlan};
use edgegen_shared::api::{
    AnalysisInput, AnalysisReport, FindingCounts, FindingLocation, Phase, PlanVerdict, Step, StepStatus, TenantChange,
};
use edgegen_shared::surrogate::SurrogateKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::execlog::step;

/// `[analysis]` of `edgegen.toml`:
///
/// ```toml
/// [analysis]
/// tenant_column = "tenant_id"        # default
/// global_tables = ["countries"]      # shared by all tenants: not linted
///
/// [[analysis.routes]]                # the dependency map
/// route = "GET /v1/users/{id}/profile"
/// surrogate_key = "profiles"         # the origin's Surrogate-Key for these responses
/// tables = ["users", "profiles"]
/// types = ["UserProfile"]            # contract types (JSON Schema titles / $defs)
/// samples = ["/v1/users/1/profile"]  # paths the live-data check fetches per tenant
///
/// [analysis.live_check]              # optional: see crate::live_check
/// origin = "http://127.0.0.1:9000"
/// policy = "block"                   # or "warn"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Tenant column (default `tenant_id`).
    pub tenant_column: Option<String>,
    /// Tables shared by all tenants.
    #[serde(default)]
    pub global_tables: Vec<String>,
    /// Which cached routes depend on which tables and contract types.
    #[serde(default)]
    pub routes: Vec<RouteDependency>,
    /// `[analysis.live_check]`: tenants' live responses validated against the new contract
    /// before a release commits (see [`crate::live_check`]).
    #[serde(default)]
    pub live_check: Option<crate::live_check::LiveCheckConfig>,
}

/// One entry of the dependency map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDependency {
    /// The route, as documentation (e.g. `GET /v1/users/{id}`).
    pub route: String,
    /// The origin's surrogate key for its responses (scoped per tenant at the edge).
    pub surrogate_key: String,
    /// Tables it reads.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Contract types it returns.
    #[serde(default)]
    pub types: Vec<String>,
    /// Concrete paths of this route sampled by the live-data contract check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

/// The routes of the dependency map that the report's changes touch (isolation violations
/// change no cached data and are left out).
pub fn affected_routes(report: &Report, config: &AnalysisConfig) -> Vec<AffectedRoute> {
    let mut out = Vec::new();
    for dep in &config.routes {
        let mut reasons = BTreeSet::new();
        for f in report.findings.iter().filter(|f| !edgegen_analysis::isolation::CODES.contains(&f.code)) {
            let by_table = f.table.as_ref().is_some_and(|t| dep.tables.contains(t));
            let by_type = f.table.is_none()
                && f.column.as_ref().is_some_and(|path| {
                    dep.types.iter().any(|ty| {
                        path == ty || path.starts_with(&format!("{ty}.")) || path.starts_with(&format!("{ty}["))
                    })
                });
            if by_table || by_type {
                let place = f.table.clone().or_else(|| f.column.clone()).unwrap_or_default();
                reasons.insert(format!("{} ({place})", f.code));
            }
        }
        if !reasons.is_empty() {
            out.push(AffectedRoute {
                route: dep.route.clone(),
                surrogate_key: dep.surrogate_key.clone(),
                reasons: reasons.into_iter().collect(),
            });
        }
    }
    out.sort_by(|a, b| (&a.surrogate_key, &a.route).cmp(&(&b.surrogate_key, &b.route)));
    out
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

/// The wire verdict of an analysis verdict.
pub fn plan_verdict(v: plan::Verdict) -> PlanVerdict {
    match v {
        plan::Verdict::Safe => PlanVerdict::Safe,
        plan::Verdict::NeedsRelease => PlanVerdict::NeedsRelease,
        plan::Verdict::Blocked => PlanVerdict::Blocked,
    }
}

/// The wire form of an analysis report (`POST /v1/releases/plan`'s `analysis`): the same
/// fields `edgegen plan --json` prints, typed for the API.
pub fn wire_report(r: &Report) -> AnalysisReport {
    let severity = |s: edgegen_analysis::Severity| match s {
        edgegen_analysis::Severity::Blocking => edgegen_shared::api::Severity::Blocking,
        edgegen_analysis::Severity::Breaking => edgegen_shared::api::Severity::Breaking,
        edgegen_analysis::Severity::Risky => edgegen_shared::api::Severity::Risky,
        edgegen_analysis::Severity::Safe => edgegen_shared::api::Severity::Safe,
    };
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    AnalysisReport {
        dialect: r.dialect.as_str().to_owned(),
        verdict: plan_verdict(r.verdict),
        exit_code: r.exit_code,
        summary: FindingCounts {
            blocking: count(r.summary.blocking),
            breaking: count(r.summary.breaking),
            risky: count(r.summary.risky),
            safe: count(r.summary.safe),
        },
        findings: r
            .findings
            .iter()
            .map(|f| edgegen_shared::api::Finding {
                code: f.code.to_owned(),
                severity: severity(f.severity),
                table: f.table.clone(),
                column: f.column.clone(),
                location: FindingLocation {
                    file: f.location.file.clone(),
                    line: f.location.line,
                    column: f.location.column,
                },
                message: f.message.clone(),
            })
            .collect(),
        blocked: r.blocked.clone(),
        plan_hash: r.plan_hash.clone(),
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

/// The SQL dialect `input` names (PostgreSQL when it names none).
///
/// # Errors
/// When it names a dialect that is not `postgres`, `mysql` or `sqlite`: a mistyped dialect
/// is refused, never taken for PostgreSQL.
pub fn dialect(input: &AnalysisInput) -> Result<Dialect, String> {
    input.dialect.as_deref().map_or(Ok(Dialect::Postgres), |d| d.parse().map_err(|e| format!("analysis.{e}")))
}

/// Analyses `input` (with the request's new contract schema, if any).
///
/// # Errors
/// When the input names an unknown dialect ([`dialect`]).
pub fn analyse(
    input: &AnalysisInput,
    contract_to: Option<&serde_json::Value>,
    config: &AnalysisConfig,
) -> Result<Analysis, String> {
    let dialect = dialect(input)?;
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
                Phase::SchemaAnalysis,
                StepStatus::Ok,
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
                Phase::SchemaAnalysis,
                StepStatus::Failed,
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
                    let status = if r.summary.blocking > 0 { StepStatus::Failed } else { StepStatus::Ok };
                    steps.push(step(
                        "check contract compatibility",
                        Phase::ContractVerification,
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
                        Phase::ContractVerification,
                        StepStatus::Failed,
                        format!("blocked: {blocked}"),
                        t,
                    ));
                    contract_blocked = Some(blocked);
                }
            }
        }
        _ => steps.push(Step {
            step: "check contract compatibility".into(),
            phase: Phase::ContractVerification,
            status: StepStatus::Skipped,
            detail: "needs analysis.contract_from and contract_schema".into(),
            duration_ms: 0.0,
        }),
    }

    let t = Instant::now();
    let report = match (outcome, contract_blocked) {
        (Ok(after), None) => {
            let violations = isolation::lint(&after, &settings);
            let status = if violations.is_empty() { StepStatus::Ok } else { StepStatus::Failed };
            let blocking = violations.len();
            findings.extend(violations);
            let report = plan::report(dialect, Ok(findings));
            steps.push(step(
                "check tenant isolation",
                Phase::TenantIsolationCheck,
                status,
                format!(
                    "{blocking} violation(s) in {} table(s) (tenant column {}): {}",
                    after.tables.len(),
                    settings.tenant_column,
                    codes(&report, |f| edgegen_analysis::isolation::CODES.contains(&f.code))
                ),
                t,
            ));
            report
        }
        (Err(b), _) | (Ok(_), Some(b)) => {
            steps.push(step(
                "check tenant isolation",
                Phase::TenantIsolationCheck,
                StepStatus::Skipped,
                "the analysis was blocked".into(),
                t,
            ));
            plan::report(dialect, Err(b))
        }
    };
    Ok(Analysis { report, steps })
}

/// Checks that every route's origin surrogate key, scoped to each of `tenants`, is a valid
/// surrogate key (what [`tenant_plans`] would refuse), without needing the tenants' state.
///
/// # Errors
/// The first key that cannot be formed, naming the route, the key and the tenant.
pub fn check_origin_keys(tenants: &[TenantId], analysis: &Report, config: &AnalysisConfig) -> Result<(), String> {
    for r in affected_routes(analysis, config) {
        for tenant in tenants {
            SurrogateKey::origin(tenant, &r.surrogate_key).map_err(|e| {
                format!("route {:?}: surrogate key {:?} of tenant {tenant} is invalid: {e}", r.route, r.surrogate_key)
            })?;
        }
    }
    Ok(())
}

/// One tenant's keys in a plan: what it purges (its retired generation key, its manifest
/// key, then each affected route's origin key scoped to it) and the affected routes with
/// their scoped keys.
fn tenant_keys(c: &TenantChange, routes: &[AffectedRoute]) -> Result<(Vec<String>, Vec<AffectedRoute>), String> {
    let scoped = routes
        .iter()
        .map(|r| {
            let key = SurrogateKey::origin(&c.tenant, &r.surrogate_key).map_err(|e| {
                format!(
                    "route {:?}: surrogate key {:?} of tenant {} is invalid: {e}",
                    r.route, r.surrogate_key, c.tenant
                )
            })?;
            Ok(AffectedRoute { surrogate_key: key.to_string(), ..r.clone() })
        })
        .collect::<Result<Vec<AffectedRoute>, String>>()?;
    let mut purge = vec![
        SurrogateKey::generation(&c.tenant, c.from_generation).to_string(),
        SurrogateKey::manifest(&c.tenant).to_string(),
    ];
    purge.extend(scoped.iter().map(|r| r.surrogate_key.clone()));
    Ok((purge, scoped))
}

/// The surrogate keys a release of `changes` purges, in its plan's order: the keys of
/// [`tenant_plans`] without the plan's text and hash, which the commit does not need (it
/// computes them inside its transaction: for 1,000 tenants the hash alone took 8–13 ms).
///
/// # Errors
/// As [`tenant_plans`].
pub fn purge_keys(
    changes: &[TenantChange],
    analysis: Option<&Report>,
    config: &AnalysisConfig,
) -> Result<Vec<String>, String> {
    let routes = analysis.map(|r| affected_routes(r, config)).unwrap_or_default();
    let mut sorted: Vec<&TenantChange> = changes.iter().collect();
    sorted.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let mut keys = Vec::with_capacity(changes.len() * (2 + routes.len()));
    for c in sorted {
        keys.extend(tenant_keys(c, &routes)?.0);
    }
    Ok(keys)
}

/// The deterministic per-tenant plan of a release: sorted by tenant, no times or ids, with a
/// hash over its canonical JSON (and the analysis plan hash, when there is one).
///
/// # Errors
/// When a route's origin surrogate key (from `[analysis]` routes) cannot be scoped to a
/// tenant as a valid surrogate key: the message names the route, the tenant and the rule.
/// Such a key is refused, never sent to the CDN.
pub fn tenant_plans(
    changes: &[TenantChange],
    analysis: Option<&Report>,
    config: &AnalysisConfig,
) -> Result<(Vec<TenantPlan>, String), String> {
    let routes = analysis.map(|r| affected_routes(r, config)).unwrap_or_default();
    let mut plans: Vec<TenantPlan> = changes
        .iter()
        .map(|c| {
            let (purge, scoped) = tenant_keys(c, &routes)?;
            Ok(TenantPlan {
                change: c.clone(),
                purge_surrogate_keys: purge,
                affected_routes: scoped,
                verify: vec![
                    format!("manifest of {} carries generation {}", c.tenant, c.to_generation),
                    format!("every live PoP acknowledges generation {} of {}", c.to_generation, c.tenant),
                    format!("origin stamps schema {} and contract {}", c.to_schema_version, c.to_contract_hash),
                ],
            })
        })
        .collect::<Result<_, String>>()?;
    plans.sort_by(|a, b| a.change.tenant.cmp(&b.change.tenant));
    let body = serde_json::json!({ "tenants": plans, "analysis": analysis.map(|r| &r.plan_hash) });
    let canonical = edgegen_shared::contract::canonical_json(&body).unwrap_or_else(|_| body.to_string());
    Ok((plans, format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())))))
}

#[cfg(test)]
mod tests {
    use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

    use super::*;

    fn config() -> AnalysisConfig {
        toml::from_str(
            r#"
            [[routes]]
            route = "GET /v1/users/{id}"
            surrogate_key = "users"
            tables = ["users"]

            [[routes]]
            route = "GET /v1/profile"
            surrogate_key = "profiles"
            types = ["UserProfile"]

            [[routes]]
            route = "GET /v1/orders"
            surrogate_key = "orders"
            tables = ["orders"]
            "#,
        )
        .unwrap()
    }

    fn change(tenant: &str) -> TenantChange {
        TenantChange {
            tenant: TenantId::new(tenant).unwrap(),
            from_generation: Generation(3),
            to_generation: Generation(4),
            from_schema_version: SchemaVersion::new("1.8.2").unwrap(),
            to_schema_version: SchemaVersion::new("1.8.3").unwrap(),
            from_contract_hash: ContractHash::from_digest([1; 32]),
            to_contract_hash: ContractHash::from_digest([2; 32]),
        }
    }

    #[test]
    fn findings_map_to_tenant_scoped_routes() {
        let input = AnalysisInput {
            dialect: None,
            schema_from: "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id)); \
                 CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));"
                .into(),
            schema_to: "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, ekv integer NOT NULL, PRIMARY KEY (tenant_id, id)); \
                 CREATE TABLE orders (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));"
                .into(),
            contract_from: Some(serde_json::json!({"title": "UserProfile", "type": "object", "properties": {"id": {"type": "string"}}})),
        };
        let to =
            serde_json::json!({"title": "UserProfile", "type": "object", "properties": {"id": {"type": "integer"}}});
        let settings = AnalysisConfig { global_tables: vec!["users".into(), "orders".into()], ..config() };
        let analysis = analyse(&input, Some(&to), &settings).unwrap();
        let (plans, hash) = tenant_plans(&[change("beta"), change("acme")], Some(&analysis.report), &settings).unwrap();
        assert_eq!(plans[0].change.tenant.as_str(), "acme");
        let routes: Vec<(&str, &str)> =
            plans[0].affected_routes.iter().map(|r| (r.route.as_str(), r.surrogate_key.as_str())).collect();
        assert_eq!(routes, [("GET /v1/profile", "t/acme/k/profiles"), ("GET /v1/users/{id}", "t/acme/k/users")]);
        assert_eq!(plans[0].affected_routes[1].reasons, ["not_null_column_added_without_default (users)"]);
        assert_eq!(plans[0].affected_routes[0].reasons, ["contract_type_changed (UserProfile.id)"]);
        assert!(plans[0].purge_surrogate_keys.contains(&"t/acme/k/users".to_owned()));
        assert!(!plans[0].purge_surrogate_keys.iter().any(|k| k.contains("orders")), "untouched routes are not purged");
        let keys = purge_keys(&[change("beta"), change("acme")], Some(&analysis.report), &settings).unwrap();
        let planned: Vec<String> = plans.iter().flat_map(|p| p.purge_surrogate_keys.clone()).collect();
        assert_eq!(keys, planned, "the commit purges exactly the plan's keys, in the plan's order");
        let (_, again) = tenant_plans(&[change("acme"), change("beta")], Some(&analysis.report), &settings).unwrap();
        assert_eq!(hash, again, "order of tenants in the request does not matter");
    }

    fn users_change_input(dialect: Option<&str>) -> AnalysisInput {
        AnalysisInput {
            dialect: dialect.map(Into::into),
            schema_from: "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));".into(),
            schema_to: "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, ekv integer NOT NULL, \
                        PRIMARY KEY (tenant_id, id));"
                .into(),
            contract_from: None,
        }
    }

    #[test]
    fn a_mistyped_dialect_is_refused_not_taken_for_postgres() {
        let err = analyse(&users_change_input(Some("postgress")), None, &config()).err().unwrap();
        assert!(err.starts_with("analysis.dialect: \"postgress\""), "{err}");
        assert_eq!(dialect(&users_change_input(None)), Ok(Dialect::Postgres));
        assert_eq!(dialect(&users_change_input(Some("sqlite"))), Ok(Dialect::Sqlite));
    }

    #[test]
    fn an_invalid_origin_surrogate_key_is_refused_not_sent() {
        let settings: AnalysisConfig = toml::from_str(
            r#"
            global_tables = ["users"]
            [[routes]]
            route = "GET /v1/users/{id}"
            surrogate_key = "users by id"
            tables = ["users"]
            "#,
        )
        .unwrap();
        let analysis = analyse(&users_change_input(None), None, &settings).unwrap();
        let err = tenant_plans(&[change("acme")], Some(&analysis.report), &settings).unwrap_err();
        assert!(err.contains("GET /v1/users/{id}") && err.contains("users by id") && err.contains("acme"), "{err}");
        assert_eq!(purge_keys(&[change("acme")], Some(&analysis.report), &settings), Err(err.clone()));
        let tenants = [TenantId::new("acme").unwrap()];
        assert_eq!(check_origin_keys(&tenants, &analysis.report, &settings), Err(err));
    }
}

//! The tenant-isolation lint: every table that holds tenant data must carry the tenant
//! column, never let uniqueness span tenants, and (PostgreSQL) be fenced by forced row-level
//! security with policies that actually compare the tenant column. Violations block a
//! release.

use std::collections::BTreeSet;

use crate::model::{Policy, Schema};
use crate::plan::{Finding, Severity};
use crate::sql::Dialect;

/// Every code the lint emits: violations of isolation, not changes to cached data.
pub const CODES: [&str; 9] = [
    "tenant_column_missing",
    "tenant_column_nullable",
    "primary_key_without_tenant",
    "unique_without_tenant",
    "rls_not_enabled",
    "rls_not_forced",
    "policy_missing",
    "policy_without_tenant",
    "policy_always_true",
];

/// What the lint needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationSettings {
    /// The tenant column (default `tenant_id`).
    pub tenant_column: String,
    /// Tables declared global (shared by all tenants): not linted.
    pub global_tables: BTreeSet<String>,
    /// Dialect (RLS checks are PostgreSQL-only).
    pub dialect: Dialect,
}

impl Default for IsolationSettings {
    fn default() -> Self {
        IsolationSettings {
            tenant_column: "tenant_id".into(),
            global_tables: BTreeSet::new(),
            dialect: Dialect::Postgres,
        }
    }
}

fn mentions(expr: &str, column: &str) -> bool {
    expr.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|word| word.eq_ignore_ascii_case(column))
}

fn always_true(expr: &str) -> bool {
    let e: String =
        expr.chars().filter(|c| !c.is_whitespace() && *c != '(' && *c != ')').collect::<String>().to_lowercase();
    e == "true" || e == "1=1" || e == "'t'" || e == "nottrue=false"
}

/// Lints `schema`.
pub fn lint(schema: &Schema, settings: &IsolationSettings) -> Vec<Finding> {
    let mut out = Vec::new();
    let tc = settings.tenant_column.as_str();
    for (name, table) in &schema.tables {
        if settings.global_tables.contains(name) {
            continue;
        }
        let t = Some(name.as_str());
        match table.columns.get(tc) {
            None => {
                out.push(Finding::new("tenant_column_missing", Severity::Blocking, t, None, &table.at, format!(
                    "table {name} has no {tc} column and is not declared global: its rows cannot be attributed to a tenant"
                )));
                continue;
            }
            Some(col) if !col.not_null => out.push(Finding::new(
                "tenant_column_nullable",
                Severity::Blocking,
                t,
                Some(tc),
                &col.at,
                format!("{name}.{tc} is nullable: a row without a tenant is visible to no tenant's policy, or to all"),
            )),
            Some(_) => {}
        }
        if let Some(pk) = &table.primary_key
            && !pk.columns.iter().any(|c| c == tc)
        {
            out.push(Finding::new("primary_key_without_tenant", Severity::Blocking, t, Some(&pk.columns.join(",")), &pk.at, format!(
                "primary key of {name} ({}) omits {tc}: identity is unique across tenants, so one tenant's keys constrain another's",
                pk.columns.join(", ")
            )));
        }
        for (unique, key) in &table.uniques {
            if !key.columns.iter().any(|c| c == tc) {
                out.push(Finding::new("unique_without_tenant", Severity::Blocking, t, Some(&key.columns.join(",")), &key.at, format!(
                    "unique constraint {unique} on {name} ({}) omits {tc}: a value one tenant uses is refused to every other tenant",
                    key.columns.join(", ")
                )));
            }
        }
        if settings.dialect != Dialect::Postgres {
            continue;
        }
        if !table.rls_enabled {
            out.push(Finding::new("rls_not_enabled", Severity::Blocking, t, None, &table.at, format!(
                "row-level security is not enabled on {name}: nothing stops a query from reading other tenants' rows"
            )));
        } else if !table.rls_forced {
            out.push(Finding::new("rls_not_forced", Severity::Blocking, t, None, &table.at, format!(
                "row-level security on {name} is not forced: the table owner (often the application role) bypasses it"
            )));
        }
        if table.policies.is_empty() {
            out.push(Finding::new(
                "policy_missing",
                Severity::Blocking,
                t,
                None,
                &table.at,
                format!("{name} has no row-level-security policy"),
            ));
        }
        for (policy_name, Policy { using, with_check, at }) in &table.policies {
            let exprs: Vec<&String> = using.iter().chain(with_check.iter()).collect();
            if exprs.iter().any(|e| always_true(e)) {
                out.push(Finding::new(
                    "policy_always_true",
                    Severity::Blocking,
                    t,
                    Some(policy_name),
                    at,
                    format!("policy {policy_name} on {name} is always true: it admits every tenant's rows"),
                ));
            } else if exprs.is_empty() || exprs.iter().any(|e| !mentions(e, tc)) {
                out.push(Finding::new(
                    "policy_without_tenant",
                    Severity::Blocking,
                    t,
                    Some(policy_name),
                    at,
                    format!(
                        "policy {policy_name} on {name} has a USING/WITH CHECK expression that does not compare {tc}"
                    ),
                ));
            }
        }
    }
    out
}

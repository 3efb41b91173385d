//! Cross-shard tenant verification: before a release that carries its analysis commits,
//! each of its tenants' database shards is checked against the schema the release expects
//! (`analysis.schema_to`) and for leakage. Drift or leakage blocks the release.
//!
//! Shards (`[shards]` in edgegen.toml) are SQLite files (`tenant = "path/to/tenant.db"`) or
//! PostgreSQL databases (`tenant = "postgres://user@host:port/db"`, a role that bypasses
//! row-level security, e.g. a superuser, so leakage is visible). SQLite is
//! introspected through `sqlite_master` and `PRAGMA table_info`; PostgreSQL through
//! `information_schema`, `pg_class` (RLS enabled/forced) and `pg_policies`. The leakage query
//! counts, per tenant table, rows whose tenant column is not the shard's tenant (NULL
//! included). A PostgreSQL URL shared by several tenants is a shared database: there the
//! check is each tenant's row-level-security view instead — as the application role
//! (`[shard_rls] role`), with the tenant setting (`[shard_rls] tenant_setting`) set to the
//! tenant, no row of another tenant may be visible. Checks run concurrently (at most [`CONCURRENCY`] at a time), each within
//! [`TIMEOUT`]. Column types are not compared (each engine spells them its own way).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use edgegen_analysis::isolation::IsolationSettings;
use edgegen_analysis::model::Schema;
use edgegen_shared::TenantId;

/// Shards checked at the same time.
pub const CONCURRENCY: usize = 4;
/// Time allowed per shard.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a tenant's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shard {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (never printed: it may hold a password).
    Postgres(String),
}

/// Where each tenant's shard is.
pub type ShardMap = BTreeMap<TenantId, Shard>;

/// How tenants see a shared PostgreSQL database (`[shard_rls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRls {
    /// The application role, subject to row-level security.
    pub role: Option<String>,
    /// The setting the policies read the tenant from, e.g. `app.tenant`.
    pub tenant_setting: Option<String>,
}

/// Parses `[shards]`: tenant id → SQLite path (`sqlite://` prefix optional) or
/// `postgres://` URL.
///
/// # Errors
/// A bad tenant id.
pub fn parse(table: &BTreeMap<String, String>) -> Result<ShardMap, String> {
    let mut out = ShardMap::new();
    for (tenant, location) in table {
        let tenant = TenantId::new(tenant.as_str()).map_err(|e| format!("shards: {e}"))?;
        let shard = if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Shard::Postgres(location.clone())
        } else {
            Shard::Sqlite(PathBuf::from(location.strip_prefix("sqlite://").unwrap_or(location)))
        };
        out.insert(tenant, shard);
    }
    Ok(out)
}

/// What a shard check found for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardReport {
    /// The tenant.
    pub tenant: TenantId,
    /// Schema objects that differ from the expected model.
    pub drift: Vec<String>,
    /// Leakage: tables with rows of another tenant.
    pub leakage: Vec<String>,
    /// A failure to check (unreadable file, timeout): blocks like drift.
    pub error: Option<String>,
}

impl ShardReport {
    /// Whether the shard passed.
    pub fn clean(&self) -> bool {
        self.drift.is_empty() && self.leakage.is_empty() && self.error.is_none()
    }
}

/// Checks the shards of `tenants` (those without a configured shard are skipped) against
/// `expected`; reports sorted by tenant.
pub async fn verify(
    shards: &ShardMap,
    tenants: &[TenantId],
    expected: Arc<Schema>,
    settings: Arc<IsolationSettings>,
    rls: Arc<SharedRls>,
) -> Vec<ShardReport> {
    let check: Check = Arc::new(move |tenant: &TenantId, shard: &Shard, shared: bool| match shard {
        Shard::Sqlite(path) => check_sqlite(tenant, path, &expected, &settings),
        Shard::Postgres(url) => check_postgres(tenant, url, &expected, &settings, shared.then_some(&*rls)),
    });
    verify_with(shards, tenants, check).await
}

/// One shard's check: (tenant, its shard, whether other tenants share that database).
type Check = Arc<dyn Fn(&TenantId, &Shard, bool) -> ShardReport + Send + Sync>;

/// [`verify`] with the check given: runs it for every listed tenant with a shard, at most
/// [`CONCURRENCY`] at a time, each within [`TIMEOUT`]; a check that fails, panics or times
/// out is a report with an error, never a missing one.
async fn verify_with(shards: &ShardMap, tenants: &[TenantId], check: Check) -> Vec<ShardReport> {
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut checking = std::collections::HashMap::new();
    for tenant in tenants {
        let Some(shard) = shards.get(tenant).cloned() else { continue };
        let shared = shards.values().filter(|s| **s == shard).count() > 1;
        let (tenant, check, gate) = (tenant.clone(), Arc::clone(&check), Arc::clone(&gate));
        let of = tenant.clone();
        let handle = tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let t = tenant.clone();
            let check = tokio::task::spawn_blocking(move || check(&t, &shard, shared));
            match tokio::time::timeout(TIMEOUT, check).await {
                Ok(Ok(report)) => report,
                Ok(Err(e)) => {
                    ShardReport { tenant, drift: vec![], leakage: vec![], error: Some(format!("check failed: {e}")) }
                }
                Err(_) => ShardReport {
                    tenant,
                    drift: vec![],
                    leakage: vec![],
                    error: Some(format!("no answer within {TIMEOUT:?}")),
                },
            }
        });
        checking.insert(handle.id(), of);
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let tenant = match &done {
            Ok(report) => report.tenant.clone(),
            Err(e) => checking.get(&e.id()).cloned().unwrap_or_else(|| tenants[0].clone()),
        };
        reports.push(completed(tenant, done));
    }
    reports.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    reports
}

/// The report of a check task: a task that panicked or was cancelled fails the
/// verification (its shard was not verified), it is never dropped.
fn completed(tenant: TenantId, done: Result<ShardReport, tokio::task::JoinError>) -> ShardReport {
    done.unwrap_or_else(|e| ShardReport {
        tenant,
        drift: vec![],
        leakage: vec![],
        error: Some(format!("check did not complete: {e}")),
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn check_sqlite(
    tenant: &TenantId,
    path: &std::path::Path,
    expected: &Schema,
    settings: &IsolationSettings,
) -> ShardReport {
    let mut report = ShardReport { tenant: tenant.clone(), drift: vec![], leakage: vec![], error: None };
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match rusqlite::Connection::open_with_flags(path, flags) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("{}: {e}", path.display()));
            return report;
        }
    };
    let result = (|| -> rusqlite::Result<()> {
        let live: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (table, model) in &expected.tables {
            if !live.iter().any(|t| t.eq_ignore_ascii_case(table)) {
                report.drift.push(format!("table {table} is missing"));
                continue;
            }
            let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
            let columns: Vec<(String, bool)> = stmt
                .query_map([], |r| Ok((r.get::<_, String>(1)?.to_lowercase(), r.get::<_, i64>(3)? != 0)))?
                .collect::<Result<_, _>>()?;
            compare_columns(table, model, &columns, &mut report.drift);
            let global = settings.global_tables.contains(table);
            if !global && model.columns.contains_key(&settings.tenant_column) {
                let sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE {} IS NOT ?1",
                    quote_ident(table),
                    quote_ident(&settings.tenant_column)
                );
                let foreign: i64 = conn.query_row(&sql, [tenant.as_str()], |r| r.get(0))?;
                if foreign > 0 {
                    report
                        .leakage
                        .push(format!("{table}: {foreign} row(s) whose {} is not {tenant}", settings.tenant_column));
                }
            }
        }
        for table in &live {
            if !expected.tables.keys().any(|t| t.eq_ignore_ascii_case(table)) {
                report.drift.push(format!("table {table} is not in the release's schema"));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        report.error = Some(format!("{}: {e}", path.display()));
    }
    report
}

/// Compares live tables and columns (name → NOT NULL) with the expected model; appends drift.
fn compare_columns(
    table: &str,
    model: &edgegen_analysis::model::Table,
    columns: &[(String, bool)],
    drift: &mut Vec<String>,
) {
    for (name, col) in &model.columns {
        let in_pk = model.primary_key.as_ref().is_some_and(|k| k.columns.contains(name));
        match columns.iter().find(|(n, _)| n == name) {
            None => drift.push(format!("column {table}.{name} is missing")),
            Some((_, not_null)) if *not_null != col.not_null && !in_pk => drift.push(format!(
                "column {table}.{name} is {} but the release expects {}",
                if *not_null { "NOT NULL" } else { "nullable" },
                if col.not_null { "NOT NULL" } else { "nullable" }
            )),
            Some(_) => {}
        }
    }
    for (name, _) in columns {
        if !model.columns.contains_key(name) {
            drift.push(format!("column {table}.{name} is not in the release's schema"));
        }
    }
}

fn check_postgres(
    tenant: &TenantId,
    url: &str,
    expected: &Schema,
    settings: &IsolationSettings,
    shared: Option<&SharedRls>,
) -> ShardReport {
    let mut report = ShardReport { tenant: tenant.clone(), drift: vec![], leakage: vec![], error: None };
    let mut client = match postgres::Config::from_str(url).and_then(|mut c| {
        c.connect_timeout(TIMEOUT);
        c.connect(postgres::NoTls)
    }) {
        Ok(c) => c,
        Err(e) => {
            // The URL may carry a password: only the error's kind is reported.
            report.error = Some(format!("cannot connect to the PostgreSQL shard: {e}"));
            return report;
        }
    };
    let result = (|| -> Result<(), postgres::Error> {
        let live: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (table, model) in &expected.tables {
            if !live.contains(table) {
                report.drift.push(format!("table {table} is missing"));
                continue;
            }
            let columns: Vec<(String, bool)> = client
                .query(
                    "SELECT column_name::text, is_nullable = 'NO' FROM information_schema.columns
                     WHERE table_schema = 'public' AND table_name = $1",
                    &[table],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            compare_columns(table, model, &columns, &mut report.drift);
            let rls = client.query_opt(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = to_regclass($1)",
                &[&format!("public.{}", quote_ident(table))],
            )?;
            if let Some(row) = rls {
                let (enabled, forced): (bool, bool) = (row.get(0), row.get(1));
                if enabled != model.rls_enabled {
                    report.drift.push(format!(
                        "row-level security on {table} is {}",
                        if enabled { "enabled but the release expects it disabled" } else { "not enabled" }
                    ));
                }
                if forced != model.rls_forced {
                    report.drift.push(format!(
                        "row-level security on {table} is {}",
                        if forced { "forced but the release does not force it" } else { "not forced" }
                    ));
                }
            }
            let policies: Vec<String> = client
                .query(
                    "SELECT policyname::text FROM pg_policies WHERE schemaname = 'public' AND tablename = $1",
                    &[table],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for name in model.policies.keys() {
                if !policies.contains(name) {
                    report.drift.push(format!("policy {name} on {table} is missing"));
                }
            }
            let global = settings.global_tables.contains(table);
            if !global && model.columns.contains_key(&settings.tenant_column) {
                let sql = format!(
                    "SELECT count(*) FROM public.{} WHERE {}::text IS DISTINCT FROM $1",
                    quote_ident(table),
                    quote_ident(&settings.tenant_column)
                );
                match shared {
                    None => {
                        let foreign: i64 = client.query_one(&sql, &[&tenant.as_str()])?.get(0);
                        if foreign > 0 {
                            report.leakage.push(format!(
                                "{table}: {foreign} row(s) whose {} is not {tenant}",
                                settings.tenant_column
                            ));
                        }
                    }
                    Some(SharedRls { role: Some(role), tenant_setting: Some(setting) }) => {
                        // What the application sees as this tenant: other tenants' rows must be invisible.
                        let mut tx = client.transaction()?;
                        tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(role)))?;
                        tx.execute("SELECT set_config($1, $2, true)", &[setting, &tenant.as_str()])?;
                        let visible: i64 = tx.query_one(&sql, &[&tenant.as_str()])?.get(0);
                        tx.rollback()?;
                        if visible > 0 {
                            report.leakage.push(format!(
                                "{table}: {visible} row(s) of other tenants are visible to role {role} as {tenant} (shared database)"
                            ));
                        }
                    }
                    Some(_) => report.drift.push(
                        "shared database: set [shard_rls] role and tenant_setting so each tenant's view can be checked"
                            .into(),
                    ),
                }
            }
        }
        for table in &live {
            if !expected.tables.contains_key(table) {
                report.drift.push(format!("table {table} is not in the release's schema"));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        report.error = Some(format!("PostgreSQL shard: {e}"));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_that_panics_fails_the_verification_and_the_others_still_report() {
        let shards: ShardMap = ["a", "b", "c"]
            .into_iter()
            .map(|t| (TenantId::new(t).unwrap(), Shard::Sqlite(PathBuf::from(format!("/nonexistent/{t}.db")))))
            .collect();
        let tenants: Vec<TenantId> = shards.keys().cloned().collect();
        let check: Check = Arc::new(|tenant: &TenantId, _: &Shard, _| {
            #[allow(clippy::panic)]
            if tenant.as_str() == "b" {
                panic!("check exploded");
            }
            ShardReport { tenant: tenant.clone(), drift: vec![], leakage: vec![], error: None }
        });
        let reports = verify_with(&shards, &tenants, check).await;
        let names: Vec<&str> = reports.iter().map(|r| r.tenant.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "one report per tenant, none dropped");
        assert!(reports[0].clean() && reports[2].clean());
        assert!(!reports[1].clean(), "a panicked check must not pass: {:?}", reports[1]);
        assert!(reports[1].error.as_deref().is_some_and(|e| e.contains("panicked")), "{:?}", reports[1]);
    }

    #[tokio::test]
    async fn a_panicked_check_task_fails_the_verification() {
        #[allow(clippy::panic)]
        let panicked = tokio::spawn(async { panic!("check exploded") }).await.map(|()| unreachable!());
        let tenant = TenantId::new("acme").unwrap();
        let report = completed(tenant.clone(), panicked);
        assert_eq!(report.tenant, tenant);
        assert!(!report.clean(), "a panicked check must not pass");
        assert!(report.error.as_deref().is_some_and(|e| e.contains("did not complete")), "{report:?}");
    }
}

//! Release-analysis cost (a program; results in BENCHMARKS.md):
//!
//! - parse, model, diff and lint a generated schema of 2,000 tables plus 5,000 migration
//!   statements (target ≤ 1 s);
//! - the per-tenant invalidation plan of a release of 10,000 tenants (target ≤ 1 s).
//!
//! Run: `cargo bench -p edgegen-coordinator --bench analysis`. Each figure is the median of
//! 5 runs (min and max shown).

use std::time::Instant;

use edgegen_analysis::isolation::{self, IsolationSettings};
use edgegen_analysis::plan::{self, schema_from};
use edgegen_analysis::{Dialect, diff};
use edgegen_shared::api::TenantChange;
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

const TABLES: usize = 2000;
const MIGRATIONS: usize = 5000;
const TENANTS: usize = 10_000;

fn base_schema() -> String {
    let mut sql = String::new();
    for t in 0..TABLES {
        sql.push_str(&format!(
            "CREATE TABLE t{t} (tenant_id uuid NOT NULL, id bigint, name text, score integer, created_at timestamptz DEFAULT now(), PRIMARY KEY (tenant_id, id));\n\
             ALTER TABLE t{t} ENABLE ROW LEVEL SECURITY;\nALTER TABLE t{t} FORCE ROW LEVEL SECURITY;\n\
             CREATE POLICY p{t} ON t{t} USING (tenant_id = current_setting('app.tenant')::uuid);\n"
        ));
    }
    sql
}

fn migrations() -> String {
    let mut sql = String::new();
    for m in 0..MIGRATIONS {
        let t = (m * 7) % TABLES;
        sql.push_str(&match m % 5 {
            0 => format!("ALTER TABLE t{t} ADD COLUMN c{m} text;\n"),
            1 => format!("ALTER TABLE t{t} ALTER COLUMN score SET DEFAULT {m};\n"),
            2 => format!("CREATE INDEX i{m} ON t{t} (name);\n"),
            3 => format!("ALTER TABLE t{t} ADD COLUMN n{m} integer NOT NULL DEFAULT 0;\n"),
            _ => format!("COMMENT ON TABLE t{t} IS 'migration {m}';\n"),
        });
    }
    sql
}

fn median(mut runs: Vec<f64>) -> (f64, f64, f64) {
    runs.sort_by(f64::total_cmp);
    (runs[0], runs[runs.len() / 2], runs[runs.len() - 1])
}

fn main() {
    let (base, migrations) = (base_schema(), migrations());
    let mut runs = Vec::new();
    let mut findings = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let before = schema_from(&[("base.sql".into(), base.clone())], Dialect::Postgres).unwrap();
        let after = schema_from(
            &[("base.sql".into(), base.clone()), ("migrations.sql".into(), migrations.clone())],
            Dialect::Postgres,
        )
        .unwrap();
        let mut f = diff::diff(&before, &after);
        f.extend(isolation::lint(&after, &IsolationSettings::default()));
        let report = plan::report(Dialect::Postgres, Ok(f));
        findings = report.findings.len();
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (lo, med, hi) = median(runs);
    println!(
        "| analysis: {TABLES} tables ({} statements) + {MIGRATIONS} migration statements, {findings} findings | {med:.0} ms | [{lo:.0}, {hi:.0}] ms | ≤ 1000 ms |",
        TABLES * 4
    );

    let changes: Vec<TenantChange> = (0..TENANTS)
        .map(|i| TenantChange {
            tenant: TenantId::new(format!("tenant-{i:05}")).unwrap(),
            from_generation: Generation(41),
            to_generation: Generation(42),
            from_schema_version: SchemaVersion::new("1.8.2").unwrap(),
            to_schema_version: SchemaVersion::new("1.8.3").unwrap(),
            from_contract_hash: ContractHash::from_digest([1; 32]),
            to_contract_hash: ContractHash::from_digest([2; 32]),
        })
        .collect();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (plans, hash) = edgegen_coordinator::analysis::tenant_plans(&changes, None, &Default::default()).unwrap();
        assert_eq!(plans.len(), TENANTS);
        assert!(hash.starts_with("sha256:"));
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (lo, med, hi) = median(runs);
    println!("| per-tenant plan: {TENANTS} tenants | {med:.0} ms | [{lo:.0}, {hi:.0}] ms | ≤ 1000 ms |");
}

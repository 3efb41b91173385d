//! The fixture corpus in `testdata/`: every case's expected findings, as data. Also the
//! determinism and self-diff properties.

use std::collections::BTreeSet;

use edgegen_analysis::isolation::{self, IsolationSettings};
use edgegen_analysis::plan::{self, schema_from};
use edgegen_analysis::{Dialect, diff::diff};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases<T> {
    case: Vec<T>,
}

#[derive(Deserialize)]
struct DiffCase {
    name: String,
    #[serde(default)]
    dialect: Option<String>,
    before: String,
    after: Option<String>,
    #[serde(default)]
    migrations: Vec<String>,
    expect: Vec<String>,
}

#[derive(Deserialize)]
struct IsolationCase {
    name: String,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    global: Vec<String>,
    #[serde(default)]
    tenant_column: Option<String>,
    schema: String,
    expect: Vec<String>,
}

#[derive(Deserialize)]
struct BlockedCase {
    name: String,
    sql: String,
    at: String,
    contains: String,
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str::<Cases<T>>(&text).unwrap_or_else(|e| panic!("{path}: {e}")).case
}

fn dialect(d: &Option<String>) -> Dialect {
    d.as_deref().unwrap_or("postgres").parse().unwrap()
}

fn codes(findings: &[edgegen_analysis::Finding]) -> Vec<String> {
    let mut c: Vec<String> = findings.iter().map(|f| f.code.to_owned()).collect();
    c.sort();
    c
}

/// `before` and `after` of a diff case (`after` = before + migrations when no full DDL).
fn schemas(case: &DiffCase) -> (edgegen_analysis::model::Schema, edgegen_analysis::model::Schema) {
    let d = dialect(&case.dialect);
    let before =
        schema_from(&[("before.sql".into(), case.before.clone())], d).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let after = match &case.after {
        Some(after) => schema_from(&[("after.sql".into(), after.clone())], d),
        None => {
            let migrations: Vec<(String, String)> =
                case.migrations.iter().enumerate().map(|(i, m)| (format!("{:03}.sql", i + 1), m.clone())).collect();
            plan::migrated(&[("before.sql".to_owned(), case.before.clone())], &migrations, d).map(|(_, after)| after)
        }
    }
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    (before, after)
}

#[test]
fn diff_cases() {
    let cases: Vec<DiffCase> = load("diff_cases.toml");
    let mut failures = Vec::new();
    for case in &cases {
        let (before, after) = schemas(case);
        let got = codes(&diff(&before, &after));
        if got != case.expect {
            failures.push(format!("{}: expected {:?}, got {:?}", case.name, case.expect, got));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn isolation_cases() {
    let cases: Vec<IsolationCase> = load("isolation_cases.toml");
    let mut failures = Vec::new();
    for case in &cases {
        let d = dialect(&case.dialect);
        let schema = schema_from(&[("schema.sql".into(), case.schema.clone())], d)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let settings = IsolationSettings {
            tenant_column: case.tenant_column.clone().unwrap_or_else(|| "tenant_id".into()),
            global_tables: case.global.iter().cloned().collect::<BTreeSet<_>>(),
            dialect: d,
        };
        let got = codes(&isolation::lint(&schema, &settings));
        if got != case.expect {
            failures.push(format!("{}: expected {:?}, got {:?}", case.name, case.expect, got));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn blocked_cases_fail_closed_with_a_location() {
    let cases: Vec<BlockedCase> = load("blocked_cases.toml");
    for case in &cases {
        let err = schema_from(&[("m.sql".into(), case.sql.clone())], Dialect::Postgres).expect_err(&case.name);
        assert_eq!(format!("{}:{}", err.location.line, err.location.column), case.at, "{}: {err}", case.name);
        assert!(err.to_string().starts_with("m.sql:"), "{}: {err}", case.name);
        assert!(err.message.contains(&case.contains), "{}: {err}", case.name);
        let report = plan::report(Dialect::Postgres, Err(err));
        assert_eq!((report.exit_code, report.verdict), (plan::EXIT_BLOCKED, plan::Verdict::Blocked), "{}", case.name);
    }
}

#[test]
fn corpus_is_large_enough() {
    let n = load::<DiffCase>("diff_cases.toml").len()
        + load::<IsolationCase>("isolation_cases.toml").len()
        + load::<BlockedCase>("blocked_cases.toml").len();
    assert!(n >= 60, "only {n} fixture cases");
}

/// Independent statements in another order: the same plan (hash, verdict, findings apart
/// from their locations).
#[test]
fn plans_do_not_depend_on_statement_order() {
    let before = "CREATE TABLE a (id bigint PRIMARY KEY, x text); CREATE TABLE b (id bigint PRIMARY KEY, y int);";
    let one =
        ["ALTER TABLE a DROP COLUMN x;", "ALTER TABLE b ALTER COLUMN y TYPE bigint;", "CREATE TYPE e AS ENUM ('v');"];
    let plan_of = |order: &[usize]| {
        let mut files = vec![("before.sql".to_owned(), before.to_owned())];
        files.extend(order.iter().map(|&i| (format!("m{i}.sql"), one[i].to_owned())));
        let b = schema_from(&files[..1], Dialect::Postgres).unwrap();
        let a = schema_from(&files, Dialect::Postgres).unwrap();
        plan::report(Dialect::Postgres, Ok(diff(&b, &a)))
    };
    let first = plan_of(&[0, 1, 2]);
    let second = plan_of(&[2, 1, 0]);
    assert_eq!(first.plan_hash, second.plan_hash);
    assert_eq!(codes(&first.findings), codes(&second.findings));
    assert_eq!(plan_of(&[0, 1, 2]), first, "same input twice: identical report");
    assert_eq!(first.exit_code, plan::EXIT_NEEDS_RELEASE);
}

fn column_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("bigint"), Just("text"), Just("integer NOT NULL"), Just("boolean DEFAULT false"), Just("numeric")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Diffing any schema against itself yields no finding.
    #[test]
    fn a_schema_diffed_with_itself_has_no_finding(
        tables in prop::collection::btree_map("[a-z]{1,6}", prop::collection::btree_map("[a-z]{1,6}", column_type(), 1..5), 1..5),
    ) {
        let ddl: String = tables
            .iter()
            .map(|(t, cols)| {
                let cols: Vec<String> = cols.iter().map(|(c, ty)| format!("c_{c} {ty}")).collect();
                format!("CREATE TABLE t_{t} (id bigint PRIMARY KEY, {});\n", cols.join(", "))
            })
            .collect();
        let s = schema_from(&[("s.sql".into(), ddl)], Dialect::Postgres).unwrap();
        prop_assert!(diff(&s, &s).is_empty());
    }
}

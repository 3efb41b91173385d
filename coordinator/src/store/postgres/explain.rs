//! Test support: a throwaway database with the store's schema, and what a statement's plan
//! did, read from `EXPLAIN (ANALYZE, FORMAT JSON)` — for the regression tests that pin the
//! shape of the store's prepared statements (their generic plans).

use postgres::{Client, SimpleQueryMessage};
use serde_json::Value;

/// Runs `test` on a connection to a fresh database of a throwaway cluster, with the store's
/// schema, on its own thread (the sync client runs its own runtime: kept off the caller's
/// thread-locals).
pub(super) fn with_database(test: impl FnOnce(&mut Client) + Send + 'static) {
    let cluster = edgegen_tests::postgres::TempCluster::start().expect("PostgreSQL (cargo xtask bootstrap)");
    let url = cluster.create_database("plans").expect("a database");
    std::thread::spawn(move || {
        let mut c = Client::connect(&url, postgres::NoTls).expect("a connection");
        c.batch_execute(super::schema::SCHEMA).expect("the schema");
        test(&mut c);
    })
    .join()
    .expect("the test thread");
}

/// The root node of the plan `statement` ran with (`EXPLAIN (ANALYZE, FORMAT JSON)`: the
/// statement is executed).
pub(super) fn explain(c: &mut Client, statement: &str) -> Value {
    let answer = c.simple_query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {statement}")).expect("EXPLAIN");
    let json = answer.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    let plan: Value = serde_json::from_str(&json.expect("a plan")).expect("a JSON plan");
    plan[0]["Plan"].clone()
}

/// The most times any node of `plan` ran.
pub(super) fn max_loops(plan: &Value) -> i64 {
    let own = plan["Actual Loops"].as_i64().unwrap_or(0);
    children(plan).map(max_loops).fold(own, i64::max)
}

/// The rows the nodes of `plan` that scan `table` read, over all their runs: those they
/// returned and those their filters removed.
pub(super) fn rows_read(plan: &Value, table: &str) -> i64 {
    let own = if plan["Relation Name"] == table {
        let per_run: i64 = ["Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck"]
            .iter()
            .map(|k| plan[*k].as_i64().unwrap_or(0))
            .sum();
        per_run * plan["Actual Loops"].as_i64().unwrap_or(1)
    } else {
        0
    };
    own + children(plan).map(|p| rows_read(p, table)).sum::<i64>()
}

fn children(plan: &Value) -> impl Iterator<Item = &Value> {
    plan["Plans"].as_array().into_iter().flatten()
}

//! Contract checks (a program; results in BENCHMARKS.md):
//!
//! - the compatibility check of two generated 500-type contracts (objects with integer
//!   formats, nullable fields, maps, arrays, internally tagged enums and `$ref` cycles; the
//!   new one changes 1 type in 10) — target ≤ 100 ms;
//! - the live-data check of 12 tenants × 5 samples against a real origin on a local socket
//!   (HTTP fetch as each tenant, JSON Schema validation) — target ≤ 1 s.
//!
//! Run: `cargo bench -p edgegen-coordinator --bench contracts`. Each figure is the median of
//! 5 runs (min and max shown).

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgegen_coordinator::live_check;
use serde_json::{Value, json};

const TYPES: usize = 500;

/// Type `i` of a generated contract; `changed` applies this type's change.
fn def(i: usize, changed: bool) -> Value {
    let next = format!("#/$defs/T{}", (i + 1) % TYPES);
    let other = format!("#/$defs/T{}", (i * 7 + 3) % TYPES);
    match i % 5 {
        // An internally tagged enum.
        4 => {
            let variants: Vec<Value> = ["A", "B", "C"]
                .iter()
                .filter(|v| !(changed && **v == "C"))
                .map(|v| json!({"type": "object", "properties": {"kind": {"type": "string", "const": v}, "x": {"type": "integer", "format": "int32"}}, "required": ["kind", "x"]}))
                .collect();
            json!({"oneOf": variants})
        }
        _ => {
            let count = if changed {
                json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255})
            } else {
                json!({"type": "integer", "format": "uint32", "minimum": 0})
            };
            json!({"type": "object", "properties": {
                "id": {"type": "integer", "format": "uint64", "minimum": 0},
                "name": {"type": "string"},
                "bio": {"type": ["string", "null"]},
                "count": count,
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "attrs": {"type": "object", "additionalProperties": {"type": "integer", "format": "int64"}},
                "next": {"anyOf": [{"$ref": next}, {"type": "null"}]},
                "other": {"type": "array", "items": {"$ref": other}}
            }, "required": ["id", "name", "count", "tags", "attrs"]})
        }
    }
}

fn contract(changed: bool) -> Value {
    let defs: serde_json::Map<String, Value> =
        (0..TYPES).map(|i| (format!("T{i}"), def(i, changed && (i % 10 == 3 || i % 10 == 9)))).collect();
    let props: serde_json::Map<String, Value> =
        (0..TYPES).map(|i| (format!("t{i}"), json!({"$ref": format!("#/$defs/T{i}")}))).collect();
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Api", "type": "object",
        "properties": props, "$defs": defs})
}

fn median(mut runs: Vec<f64>) -> (f64, f64, f64) {
    runs.sort_by(f64::total_cmp);
    (runs[0], runs[runs.len() / 2], runs[runs.len() - 1])
}

fn profile() -> Value {
    json!({"title": "UserProfile", "type": "object", "properties": {
        "tenant": {"type": "string"}, "user_id": {"type": "integer", "format": "int64"},
        "display_name": {"type": ["string", "null"]},
        "plan": {"type": "string", "enum": ["free", "pro"]}}, "required": ["tenant", "user_id", "plan"]})
}

fn main() {
    let (old, new) = (contract(false), contract(true));
    let mut runs = Vec::new();
    let mut changes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        changes = edgegen_analysis::contract::compare(&old, &new).unwrap().len();
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (lo, med, hi) = median(runs);
    println!(
        "| compatibility: two {TYPES}-type contracts, {changes} changed paths | {med:.1} ms | [{lo:.1}, {hi:.1}] ms | ≤ 100 ms |"
    );

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/users/{id}/profile",
            axum::routing::get(|headers: axum::http::HeaderMap, axum::extract::Path(id): axum::extract::Path<i64>| async move {
                let tenant = headers.get("edgegen-tenant").and_then(|h| h.to_str().ok()).unwrap_or("?").to_owned();
                axum::Json(json!({"tenant": tenant, "user_id": id, "display_name": null, "plan": "free"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let tenants: Vec<(String, Vec<String>)> =
            (1..=12).map(|i| (format!("t{i:02}"), vec![format!("t{i:02}.localhost")])).collect();
        let samples: Vec<String> = (1..=5).map(|i| format!("/users/{i}/profile")).collect();
        let mut runs = Vec::new();
        let mut valid = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let validator = Arc::new(live_check::validator(&profile()).unwrap());
            let targets = live_check::targets(&tenants, &samples, 5);
            let report =
                live_check::fetch(&format!("http://{addr}"), targets, validator, 8, Duration::from_secs(2)).await;
            valid = report.samples.iter().filter(|s| s.outcome == live_check::Outcome::Valid).count();
            runs.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (lo, med, hi) = median(runs);
        println!("| live data: 12 tenants × 5 samples ({valid}/60 valid), concurrency 8 | {med:.1} ms | [{lo:.1}, {hi:.1}] ms | ≤ 1000 ms |");
    });
}

//! Convergence and stale reads with N real PoPs (results in BENCHMARKS.md):
//!
//! `cargo run --release -p edgegen-tests --bin edgegen-convergence -- PoPs [TENANTS]`
//!
//! Starts the real coordinator, the sample origin and N Viceroy processes running the
//! release edge wasm (one PoP each). A checker reads continuously through every PoP for
//! every tenant with a probe token, recording the generation each response was served under
//! (`edgegen-generation`). Mid-run, one release moves every tenant to its next generation
//! (the origin deploys its new build at the same moment). Reported: acknowledgements
//! (acked/total, ack latency from commit p50/p99/max), the observed staleness (the last read
//! served under the old generation, from commit), and reads after the bound (commit +
//! manifest max age) served under the old generation — which must be zero.

use std::time::{Duration, Instant};

use anyhow::ensure;
use edgegen_shared::TenantId;
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use reqwest::Method;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pops: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let tenants: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let c1 = format!("sha256:{}", "11".repeat(32));
    let c2 = format!("sha256:{}", "22".repeat(32));
    let dir = tempfile::tempdir()?;
    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: c1.clone() })?;
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start(&data)).await??;
    let names: Vec<String> = (0..tenants).map(|i| format!("tenant-{i}")).collect();
    for t in &names {
        let body = json!({"id": t, "hosts": [format!("{t}.test")], "schema_version": "1.0.0", "contract_hash": c1});
        coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    }
    let hosts: Vec<(String, TenantId)> =
        names.iter().map(|t| (format!("{t}.test"), TenantId::new(t.as_str()).unwrap())).collect();
    let started = Instant::now();
    let mut edges = Vec::new();
    for p in 0..pops {
        let config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), hosts.clone(), &format!("pop-{}", p + 1));
        edges.push(tokio::task::spawn_blocking(move || Viceroy::start(&config)).await??);
    }
    eprintln!("{pops} PoPs up in {:.1} s", started.elapsed().as_secs_f64());

    let urls: Vec<String> = edges.iter().map(|e| e.url("")).collect();
    let checker = edgegen_tests::checker::start(urls, names.clone(), "test", "/item", (2 * pops).max(4))?;
    tokio::time::sleep(Duration::from_millis(2500)).await; // every PoP live, caches warm

    let release = coordinator
        .admin(
            Method::POST,
            "/v1/releases",
            Some(json!({"tenants": names, "schema_version": "1.1.0", "contract_hash": c2})),
        )
        .await?;
    let commit = Instant::now();
    origin.set_stamp(Stamp { schema_version: "1.1.0".into(), contract_hash: c2.clone() });
    let id = release["id"].as_str().unwrap_or("?").to_owned();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let reads = checker.stop().await;
    let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await?;

    let bound = Duration::from_millis(conv["bound_ms"].as_u64().unwrap_or(1000));
    let summary = edgegen_tests::checker::summarize(&reads, commit, bound, 2);
    let (after_bound, stale_after_bound, last_old) = (summary.after_bound, summary.stale_after_bound, summary.last_old);
    let ms = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), |v| format!("{v} ms"));
    println!(
        "| {pops} | {tenants} | {}/{} | {} | {} | {} | {} | {} | {:.2} % ({}/{}) | {} |",
        conv["acked"],
        conv["total"],
        ms(&conv["p50_ms"]),
        ms(&conv["p99_ms"]),
        ms(&conv["max_ms"]),
        last_old.map_or("none".to_owned(), |d| format!("{} ms", d.as_millis())),
        summary.reads,
        100.0 * (after_bound - stale_after_bound) as f64 / after_bound.max(1) as f64,
        after_bound - stale_after_bound,
        after_bound,
        stale_after_bound,
    );
    ensure!(conv["converged"] == true, "not converged: {conv}");
    ensure!(stale_after_bound == 0, "{stale_after_bound} stale reads after commit + max age");
    ensure!(summary.foreign == 0, "{} reads carried another tenant's data", summary.foreign);
    Ok(())
}

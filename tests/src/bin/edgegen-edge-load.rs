//! HIT throughput of the edgegen edge against a minimal Core Cache edge, both the release
//! wasm of this tree under Viceroy, measured in the same run (results in BENCHMARKS.md):
//!
//! `cargo run --release -p edgegen-tests --bin edgegen-edge-load [-- SECONDS]`
//!
//! One origin and one coordinator (one tenant); each edge is warmed so every measured
//! request is a HIT (checked with a probe for edgegen); then 32 concurrent keep-alive
//! clients send GETs for SECONDS (default 5) per round, alternating edges over 3 rounds.
//! The edgegen edge pays for what the minimal one skips: tenant resolution, secret and
//! config store reads, the manifest (cached; re-fetched from the coordinator once per max
//! age), normalization, key derivation, and the stored-metadata check.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use edgegen_shared::{SecretKey, TenantId};
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use edgegen_tests::workspace;
use reqwest::Method;
use serde_json::json;

const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let contract = format!("sha256:{}", "11".repeat(32));
    let dir = tempfile::tempdir()?;
    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: contract.clone() })?;
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start(&data)).await??;
    let body = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.0.0", "contract_hash": contract});
    coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    let hosts = vec![("acme.test".to_owned(), TenantId::new("acme")?)];
    let config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), hosts, "bench-1");
    let minimal_wasm = workspace::target_dir().join("wasm32-wasip1/release/edgegen-minimal-edge.wasm");
    let (edgegen, minimal) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let edgegen = Viceroy::start(&config)?;
        ensure!(minimal_wasm.exists(), "{} is missing: run `cargo xtask build-edge`", minimal_wasm.display());
        let minimal = Viceroy::start_with_wasm(&config, &minimal_wasm)?;
        Ok((edgegen, minimal))
    })
    .await??;

    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let probe =
        edgegen_shared::probe::mint(&TenantId::new("acme")?, now, now + 3600, &SecretKey::new("probe", PROBE_KEY)?)?;
    for _ in 0..2 {
        client.get(edgegen.url("/bench/object")).header("host", "acme.test").send().await?.bytes().await?;
        client.get(minimal.url("/bench/object")).header("host", "acme.test").send().await?.bytes().await?;
    }
    let check = client
        .get(edgegen.url("/bench/object"))
        .header("host", "acme.test")
        .header("edgegen-probe", &probe)
        .send()
        .await?;
    ensure!(check.headers().get("edgegen-cache").is_some_and(|v| v == "HIT"), "edgegen edge is not serving HITs");

    let (mut edgegen_total, mut minimal_total) = (0.0, 0.0);
    println!("| round | edgegen edge (req/s) | minimal edge (req/s) | ratio |\n|---|---|---|---|");
    for round in 1..=ROUNDS {
        let e = throughput(&client, edgegen.url("/bench/object"), secs).await;
        let m = throughput(&client, minimal.url("/bench/object"), secs).await;
        println!("| {round} | {e:.0} | {m:.0} | {:.3} |", e / m);
        edgegen_total += e;
        minimal_total += m;
    }
    println!(
        "| mean | {:.0} | {:.0} | **{:.3}** |",
        edgegen_total / ROUNDS as f64,
        minimal_total / ROUNDS as f64,
        edgegen_total / minimal_total
    );
    let origin_requests = origin.hits("acme", "/bench/object") + origin.hits("", "/bench/object");
    println!("\norigin requests during the run: {origin_requests} (warm-up only: every measured request was a HIT)");

    // What a revalidation costs the origin against a refetch: the same 16 KiB object, stale
    // after 1 s, once with an ETag (the edge revalidates; the origin answers 304) and once
    // without (the edge refetches it whole).
    println!("\n| expired 16 KiB object | origin requests | origin bytes |\n|---|---|---|");
    for (name, target) in [
        ("revalidated (ETag, 304)", "/bench/reval?etag=v1&size=16384&h=Cache-Control:max-age%3D1"),
        ("refetched (no validator)", "/bench/refetch?size=16384&h=Cache-Control:max-age%3D1"),
    ] {
        client.get(edgegen.url(target)).header("host", "acme.test").send().await?.bytes().await?;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let before = origin.scripted_bytes();
        let resp = client.get(edgegen.url(target)).header("host", "acme.test").send().await?;
        ensure!(resp.status() == 200 && resp.bytes().await?.len() > 16384, "{name}: not served whole");
        println!("| {name} | 1 | {} |", origin.scripted_bytes() - before);
    }
    Ok(())
}

async fn throughput(client: &reqwest::Client, url: String, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, done) = (client.clone(), url.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Ok(resp) = client.get(&url).header("host", "acme.test").send().await
                    && resp.status() == 200
                    && resp.bytes().await.is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

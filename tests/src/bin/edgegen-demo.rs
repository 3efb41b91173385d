//! `cargo xtask demo`: what exists of the stack, running locally, driven for real.
//!
//! Starts the real coordinator (SQLite in a temporary directory), the sample origin and the
//! release edge wasm under Viceroy as one PoP, then: registers three tenants; sends requests
//! through the edge (MISS then HIT per tenant, routing by Host, the `edgegen-*` boundary);
//! commits a release of all three tenants from schema 1.8.2 to 1.8.3 and prints its execution
//! log; deploys the origin's new build; after one manifest max age sends the requests again
//! (MISS under the new generation's keys, then HIT) and shows the release converge on the
//! PoP's real acknowledgement. Without `--once` it keeps the stack up with copy-paste
//! commands until Ctrl-C. Exit code: 0 when every check passed and the release converged.

use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use edgegen_shared::key::{KeyInput, KeyScope};
use edgegen_shared::{CacheKey, SecretKey, TenantId};
use edgegen_tests::coordinator::{ADMIN_TOKEN, Coordinator, MANIFEST_KEY};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use reqwest::Method;
use serde_json::json;

const TENANTS: [(&str, &str); 3] =
    [("acme.localhost", "acme"), ("globex.localhost", "globex"), ("initech.localhost", "initech")];
const REQUEST: (&str, &str) = ("/users/42", "lang=en");

#[tokio::main]
async fn main() -> ExitCode {
    let once = std::env::args().any(|a| a == "--once");
    match run(once).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn key_of(scope: KeyScope) -> anyhow::Result<CacheKey> {
    let input =
        KeyInput { scope, method: "GET".into(), path: REQUEST.0.into(), query: Some(REQUEST.1.into()), vary: vec![] };
    Ok(input.derive()?.1)
}

async fn run(once: bool) -> anyhow::Result<()> {
    let contract_v1 = format!("sha256:{}", "5a".repeat(32));
    let contract_v2 = format!("sha256:{}", "7c".repeat(32));
    let data = tempfile::Builder::new().prefix("edgegen-demo-").tempdir()?;
    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract_v1.clone() })?;
    let hosts =
        TENANTS.iter().map(|(h, t)| Ok(((*h).to_owned(), TenantId::new(*t)?))).collect::<anyhow::Result<_>>()?;
    let origin_addr = origin.addr();
    let data_dir = data.path().to_owned();
    let (edge, coordinator) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let coordinator = Coordinator::start(&data_dir)?;
        let edge = Viceroy::start(&EdgeConfig::new(origin_addr, Some(coordinator.addr()), hosts, "local-1"))?;
        Ok((edge, coordinator))
    })
    .await??;
    println!("edgegen demo");
    println!("  sample origin  http://{}", origin.addr());
    println!("  edge (Viceroy, release wasm, PID {})  http://{}", edge.pid(), edge.addr());
    println!(
        "  coordinator (edgegen serve, PID {}, SQLite in {})  http://{}\n",
        coordinator.pid(),
        data.path().display(),
        coordinator.addr()
    );

    println!("1. register tenants at generation 1 (schema 1.8.2)");
    for (host, tenant) in TENANTS {
        let body = json!({"id": tenant, "hosts": [host], "schema_version": "1.8.2", "contract_hash": contract_v1});
        let t = coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
        println!("   {tenant:<8} generation {}  host {host}", t["generation"]);
    }

    println!("\n2. requests through the edge, with a debug probe (each also claims to be 'someone-else' in a header)");
    let client = reqwest::Client::new();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let probe_key = SecretKey::new("probe", PROBE_KEY)?;
    let mut probes = Vec::new();
    for (_, tenant) in TENANTS {
        probes.push(edgegen_shared::probe::mint(&TenantId::new(tenant)?, now_s, now_s + 3600, &probe_key)?);
    }
    let send = |host: &'static str, probe: String| {
        let client = client.clone();
        let url = edge.url(&format!("{}?{}", REQUEST.0, REQUEST.1));
        async move {
            let resp = client
                .get(url)
                .header("host", host)
                .header("edgegen-tenant", "someone-else")
                .header("edgegen-probe", probe)
                .send()
                .await
                .with_context(|| format!("GET via {host}"))?;
            let status = resp.status();
            let cache = resp.headers().get("edgegen-cache").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            let generation =
                resp.headers().get("edgegen-generation").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            let body: serde_json::Value = resp.json().await?;
            anyhow::Ok((status, cache, generation, body))
        }
    };
    for ((host, tenant), probe) in TENANTS.iter().zip(&probes) {
        for _ in 0..2 {
            let (status, cache, generation, body) = send(host, probe.clone()).await?;
            println!(
                "   {host:<18} -> {} {cache:<6} generation {generation}  served tenant {}",
                status.as_u16(),
                body["tenant"]
            );
            ensure!(status == 200, "{host}: status {status}");
            ensure!(body["tenant"] == *tenant, "{host}: origin served tenant {}", body["tenant"]);
        }
    }
    let resp = client.get(edge.url("/")).header("host", "unknown.localhost").send().await?;
    let status = resp.status();
    println!("   {:<18} -> {} {}", "unknown.localhost", status.as_u16(), resp.text().await?);
    ensure!(status == 404, "unknown host: status {status}");

    let key = SecretKey::new("demo", MANIFEST_KEY)?;
    let mut before = Vec::new();
    for (_, tenant) in TENANTS {
        let m = edgegen_shared::manifest::verify(&coordinator.manifest(tenant).await?, &key, &TenantId::new(tenant)?)?;
        before.push(key_of(m.scope())?);
    }

    println!(
        "\n3. release: schema 1.8.2 -> 1.8.3 (encryption_key_version NOT NULL), all three tenants in one transaction"
    );
    let release = coordinator
        .admin(
            Method::POST,
            "/v1/releases",
            Some(json!({"tenants": ["acme", "globex", "initech"], "schema_version": "1.8.3",
                "contract_hash": contract_v2, "description": "migration 1.8.3: users.encryption_key_version NOT NULL"})),
        )
        .await?;
    let id = release["id"].as_str().unwrap_or("?").to_owned();
    for c in release["tenants"].as_array().into_iter().flatten() {
        println!(
            "   {:<8} generation {} -> {}",
            c["tenant"].as_str().unwrap_or("?"),
            c["from_generation"],
            c["to_generation"]
        );
    }
    let log = &release["execution_log"];
    println!(
        "\n   execution log {} ({})",
        log["execution_id"].as_str().unwrap_or("?"),
        log["timestamp"].as_str().unwrap_or("?")
    );
    for s in log["steps"].as_array().into_iter().flatten() {
        println!(
            "   {:<29} {:<8} {:>8.3} ms  {}",
            s["phase"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["duration_ms"].as_f64().unwrap_or(0.0),
            s["detail"].as_str().unwrap_or("")
        );
    }

    println!("\n4. signed manifests, verified as the edge verifies them; the same request's cache key per tenant");
    for ((_, tenant), old_key) in TENANTS.iter().zip(&before) {
        let m = edgegen_shared::manifest::verify(&coordinator.manifest(tenant).await?, &key, &TenantId::new(*tenant)?)?;
        let new_key = key_of(m.scope())?;
        println!(
            "   {tenant:<8} generation {} schema {}  key {}… -> {}…",
            m.generation,
            m.schema_version,
            &old_key.to_hex()[..16],
            &new_key.to_hex()[..16]
        );
        ensure!(
            m.generation.0 == 2 && m.schema_version.to_string() == "1.8.3",
            "{tenant}: manifest not at the release"
        );
        ensure!(&new_key != old_key, "{tenant}: the key did not change with the generation");
    }

    println!(
        "\n5. deploy the origin's 1.8.3 build; after one manifest max age the PoP re-fetches, acknowledges, and keys anew"
    );
    origin.set_stamp(Stamp { schema_version: "1.8.3".into(), contract_hash: contract_v2.clone() });
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for ((host, _), probe) in TENANTS.iter().zip(&probes) {
        for expected in ["MISS", "HIT"] {
            let (status, cache, generation, _) = send(host, probe.clone()).await?;
            println!("   {host:<18} -> {} {cache:<6} generation {generation}", status.as_u16());
            ensure!(
                cache == expected && generation == "2",
                "{host}: expected {expected} at generation 2, got {cache} at {generation}"
            );
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await?;
    println!(
        "\n6. convergence of {id}: {}/{} live PoPs acknowledged; ack latency max {} ms; max staleness {} ms (bound {} ms)",
        conv["acked"], conv["total"], conv["max_ms"], conv["max_staleness_ms"], conv["bound_ms"]
    );
    ensure!(conv["converged"] == true, "the release did not converge: {conv}");
    println!("\nall checks passed.");

    if once {
        return Ok(());
    }
    let (edge_port, coord) = (edge.addr().port(), coordinator.addr());
    println!("\nThe stack stays up until Ctrl-C. Try:");
    println!("  curl -si -H 'host: acme.localhost' 'http://127.0.0.1:{edge_port}/users/42?lang=en'");
    println!("  export EDGEGEN_URL=http://{coord} EDGEGEN_ADMIN_TOKEN={ADMIN_TOKEN}");
    println!("  cargo run -q -p edgegen-coordinator -- tenant list");
    println!("  cargo run -q -p edgegen-coordinator -- status {id}");
    println!("  cargo run -q -p edgegen-coordinator -- rollback {id}");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    println!("\nstopping: coordinator PID {}, Viceroy PID {}, sample origin", coordinator.pid(), edge.pid());
    Ok(())
}

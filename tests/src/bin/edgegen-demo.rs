//! `cargo xtask demo`: what exists of the stack, running locally.
//!
//! Today that is the release edge wasm under Viceroy in front of the sample origin, with
//! three tenants: it sends real requests through the edge, checks tenant routing and the
//! `edgegen-*` header boundary, shows the cache keys `edgegen-shared` derives for them, then
//! (without `--once`) keeps the stack up with copy-paste `curl` lines until Ctrl-C.
//! Exit code: 0 when every check passed.

use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use edgegen_shared::key::{KeyInput, KeyScope};
use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};

const TENANTS: [(&str, &str); 3] =
    [("acme.localhost", "acme"), ("globex.localhost", "globex"), ("initech.localhost", "initech")];

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

async fn run(once: bool) -> anyhow::Result<()> {
    let stamp = Stamp { schema_version: "1.8.2".into(), contract_hash: format!("sha256:{}", "5a".repeat(32)) };
    let origin = SampleOrigin::start(stamp.clone())?;
    let hosts =
        TENANTS.iter().map(|(h, t)| Ok(((*h).to_owned(), TenantId::new(*t)?))).collect::<anyhow::Result<_>>()?;
    let edge = tokio::task::spawn_blocking(move || {
        Viceroy::start(&EdgeConfig { origin: origin.addr(), hosts, pop: "local-1".into() }).map(|e| (origin, e))
    })
    .await??;
    let (origin, edge) = edge;
    println!(
        "edgegen demo: sample origin on {}, edge (Viceroy PID {}) on {}\n",
        origin.addr(),
        edge.pid(),
        edge.addr()
    );

    let client = reqwest::Client::new();
    println!("{:<20} {:<8} {:<7} {:<9} cache key (generation 1)", "host", "status", "origin", "leaked");
    for (host, tenant) in TENANTS {
        let resp = client
            .get(edge.url("/users/42?lang=en"))
            .header("host", host)
            .header("edgegen-tenant", "someone-else")
            .send()
            .await
            .with_context(|| format!("GET via {host}"))?;
        let status = resp.status();
        let leaked = resp.headers().keys().filter(|k| k.as_str().starts_with("edgegen-")).count();
        let body: serde_json::Value = resp.json().await?;
        let key = KeyInput {
            scope: KeyScope {
                tenant: TenantId::new(tenant)?,
                schema_version: SchemaVersion::new(&stamp.schema_version)?,
                contract_hash: ContractHash::new(&stamp.contract_hash)?,
                generation: Generation::FIRST,
            },
            method: "GET".into(),
            path: "/users/42".into(),
            query: Some("lang=en".into()),
            vary: vec![],
        }
        .derive()?
        .1;
        println!("{host:<20} {:<8} {:<7} {leaked:<9} {key}", status.as_u16(), body["tenant"].as_str().unwrap_or("?"));
        ensure!(status == 200, "{host}: status {status}");
        ensure!(
            body["tenant"] == tenant,
            "{host}: origin served tenant {} (the client claimed someone-else)",
            body["tenant"]
        );
        ensure!(leaked == 0, "{host}: {leaked} edgegen-* headers reached the client");
    }
    let resp = client.get(edge.url("/")).header("host", "unknown.localhost").send().await?;
    println!("{:<20} {:<8} {}", "unknown.localhost", resp.status().as_u16(), resp.text().await?);
    println!(
        "\nall checks passed: each host reached its own tenant, client edgegen-* headers were replaced, none leaked back."
    );

    if once {
        return Ok(());
    }
    let port = edge.addr().port();
    println!("\nThe stack stays up until Ctrl-C. Try:");
    println!("  curl -si -H 'host: acme.localhost' 'http://127.0.0.1:{port}/users/42?lang=en'");
    println!("  curl -si -H 'host: unknown.localhost' http://127.0.0.1:{port}/");
    println!(
        "  cargo run -q -p edgegen-coordinator -- key --tenant acme --schema {} --contract {} --generation 1 '/users/42?lang=en'",
        stamp.schema_version, stamp.contract_hash
    );
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    println!("\nstopping (Viceroy PID {}, sample origin)", edge.pid());
    Ok(())
}

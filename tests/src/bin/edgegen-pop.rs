//! One local PoP in front of any HTTP origin, for trying the edge against an existing
//! service or an HTTP-cache conformance suite's origin:
//!
//! `cargo run --release -p edgegen-tests --bin edgegen-pop -- ORIGIN_ADDR [HOST...]`
//!
//! Starts the real coordinator (temporary data directory) with one tenant, `site`, serving
//! the given hosts (default `127.0.0.1` and `localhost`) at generation 1, and the release edge
//! wasm under Viceroy with the origin as its backend. The origin is an arbitrary server, so
//! the tenant is configured as unstamped (no `edgegen-schema`/`-contract` check). Extra edge
//! settings come from `EDGEGEN_POP_SETTINGS` (`key=value;key=value`). Prints the edge's
//! address and runs until interrupted (Ctrl-C or SIGTERM), then stops both processes.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use edgegen_shared::TenantId;
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use reqwest::Method;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(origin) = args.next() else {
        bail!("usage: edgegen-pop ORIGIN_ADDR [HOST...]   (e.g. edgegen-pop 127.0.0.1:8000)");
    };
    let origin: SocketAddr = origin.parse().with_context(|| format!("ORIGIN_ADDR {origin:?} is not IP:PORT"))?;
    let mut hosts: Vec<String> = args.collect();
    if hosts.is_empty() {
        hosts = vec!["127.0.0.1".into(), "localhost".into()];
    }
    let tenant = TenantId::new("site")?;
    let contract = format!("sha256:{}", "00".repeat(32));
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start(&data)).await??;
    let body = json!({"id": tenant, "hosts": hosts, "schema_version": "1.0.0", "contract_hash": contract});
    coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    let mut config = EdgeConfig::new(
        origin,
        Some(coordinator.addr()),
        hosts.iter().map(|h| (h.clone(), tenant.clone())).collect(),
        "pop-1",
    );
    config.settings.push(("unstamped_tenants".into(), tenant.to_string()));
    for pair in std::env::var("EDGEGEN_POP_SETTINGS").unwrap_or_default().split(';').filter(|p| !p.is_empty()) {
        let (k, v) =
            pair.split_once('=').with_context(|| format!("EDGEGEN_POP_SETTINGS: {pair:?} is not key=value"))?;
        config.settings.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await??;
    println!("edge listening on http://{} (origin {origin}, coordinator {})", edge.addr(), coordinator.addr());
    // Ctrl-C or SIGTERM: stop both child processes (their guards) before exiting.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    drop(edge);
    drop(coordinator);
    Ok(())
}

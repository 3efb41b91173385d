//! Convergence and stale reads with N real PoPs (results in BENCHMARKS.md):
//!
//! `cargo run --release -p edgegen-tests --bin edgegen-convergence -- PoPs [TENANTS] [--no-push | --compare]`
//!
//! Starts the real coordinator, the sample origin and N Viceroy processes (one PoP each). A
//! checker reads continuously through every PoP for every tenant with a probe token,
//! recording the generation each response was served under (`edgegen-generation`). Mid-run,
//! one release moves every tenant to its next generation (the origin deploys its new build at
//! the same moment).
//!
//! - **push** (the default): the coordinator purges the tenants' manifest keys through the
//!   Fastly API stand-in, which applies the purge at every PoP (the local-stack wasm); a read
//!   is bound to the new generation once its PoP applied the purge.
//! - **poll** (`--no-push`): no purge; every PoP re-fetches when its manifest's max age ends
//!   (the release wasm); a read is bound once commit + max age passed.
//! - `--compare` runs push, then poll, in the same process on the same machine.
//!
//! Reported per mode: acknowledgements (acked/total, ack latency from commit p50/p99/max),
//! the observed staleness (the last read served under the old generation, from commit), and
//! reads past their bound served under the old generation — which must be zero. Besides its
//! table row, each mode prints one machine-readable line:
//! `convergence pops=N mode=push|poll p50_ms=… p99_ms=… max_ms=… stale_after_bound=N reads=N`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use edgegen_shared::TenantId;
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::fastly_api::{self, FastlyApi};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::process::free_port;
use edgegen_tests::viceroy::{EdgeConfig, LOCAL_PURGE_TOKEN, Viceroy};
use reqwest::Method;
use serde_json::json;

/// How a release reaches the PoPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The outbox purges the manifest keys; the stand-in applies it at every PoP.
    Push,
    /// Every PoP re-fetches when its manifest's max age ends.
    Poll,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Poll => "poll",
        }
    }
}

/// The Fastly service the stand-in purges for the PoPs.
const SERVICE: &str = "convergenceBench01";

/// The generation the measured release moves every tenant to (each registers at 1).
const NEW_GENERATION: u64 = 2;

struct Args {
    pops: usize,
    tenants: usize,
    modes: Vec<Mode>,
}

fn parse_args(args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut numbers = Vec::new();
    let mut modes = vec![Mode::Push];
    for arg in args {
        match arg.as_str() {
            "--no-push" => modes = vec![Mode::Poll],
            "--compare" => modes = vec![Mode::Push, Mode::Poll],
            a if a.starts_with('-') => bail!("unknown option {a:?} (expected --no-push or --compare)"),
            a => numbers.push(
                a.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| anyhow::anyhow!("{a:?}: PoPs and tenants are numbers from 1 to 64"))?,
            ),
        }
    }
    if numbers.len() > 2 {
        bail!("usage: edgegen-convergence PoPs [TENANTS] [--no-push | --compare]");
    }
    Ok(Args { pops: numbers.first().copied().unwrap_or(4), tenants: numbers.get(1).copied().unwrap_or(4), modes })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    println!(
        "| mode | PoPs | tenants | acked | ack latency p50 | p99 | max | last old read | reads | consistent after bound | stale after bound |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for mode in &args.modes {
        run(args.pops, args.tenants, *mode).await?;
    }
    Ok(())
}

async fn run(pops: usize, tenants: usize, mode: Mode) -> anyhow::Result<()> {
    let c1 = format!("sha256:{}", "11".repeat(32));
    let c2 = format!("sha256:{}", "22".repeat(32));
    let dir = tempfile::tempdir()?;
    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: c1.clone() })?;
    let api = FastlyApi::start(500)?;
    let env: Vec<(&str, String)> = match mode {
        Mode::Push => vec![
            ("FASTLY_API_URL", api.url()),
            ("FASTLY_API_TOKEN", fastly_api::TOKEN.to_owned()),
            ("FASTLY_SERVICE_ID", SERVICE.to_owned()),
        ],
        Mode::Poll => Vec::new(),
    };
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Coordinator::start_on(&data, ([127, 0, 0, 1], free_port()?).into(), &env)
    })
    .await??;
    let names: Vec<String> = (0..tenants).map(|i| format!("tenant-{i}")).collect();
    for t in &names {
        let body = json!({"id": t, "hosts": [format!("{t}.test")], "schema_version": "1.0.0", "contract_hash": c1});
        coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    }
    let hosts: Vec<(String, TenantId)> =
        names.iter().map(|t| Ok((format!("{t}.test"), TenantId::new(t.as_str())?))).collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let mut edges = Vec::new();
    let mut pop_names = Vec::new();
    for p in 0..pops {
        let name = format!("pop-{}", p + 1);
        let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), hosts.clone(), &name);
        if mode == Mode::Push {
            config.purge_token = Some(LOCAL_PURGE_TOKEN.to_owned());
        }
        let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await??;
        if mode == Mode::Push {
            api.add_pop(SERVICE, &name, &edge.url(""), LOCAL_PURGE_TOKEN);
        }
        edges.push(edge);
        pop_names.push(name);
    }
    eprintln!("{pops} PoPs up in {:.1} s ({})", started.elapsed().as_secs_f64(), mode.name());

    let urls: Vec<String> = edges.iter().map(|e| e.url("")).collect();
    let checker = edgegen_tests::checker::start(urls, names.clone(), "test", "/item", (2 * pops).max(4))?;
    tokio::time::sleep(Duration::from_millis(2500)).await; // every PoP live, caches warm

    // The purge may reach a PoP before the release call's answer reaches us (the outbox is
    // woken by the commit): purges are matched from the moment the call was sent.
    let sent = Instant::now();
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

    let max_age = Duration::from_millis(conv["bound_ms"].as_u64().unwrap_or(1000));
    let summary = match mode {
        Mode::Poll => edgegen_tests::checker::summarize(&reads, commit, max_age, NEW_GENERATION),
        Mode::Push => {
            // When each PoP applied the purge of each tenant's manifest (the first after the
            // release call was sent).
            let mut applied: HashMap<(String, String), Instant> = HashMap::new();
            for a in api.purges().into_iter().filter(|a| a.applied_at > sent) {
                for key in &a.keys {
                    if let Some(tenant) = key.strip_prefix("edgegen-manifest/") {
                        applied.entry((a.pop.clone(), tenant.to_owned())).or_insert(a.applied_at);
                    }
                }
            }
            // Where the push time goes: the release call, then the purge at each PoP.
            let mut after: Vec<u128> = applied.values().map(|at| at.duration_since(sent).as_millis()).collect();
            after.sort_unstable();
            let mut first_new: HashMap<(usize, &str), u128> = HashMap::new();
            for r in reads.iter().filter(|r| r.at > sent && r.generation.is_some_and(|g| g >= NEW_GENERATION)) {
                let ms = r.at.duration_since(sent).as_millis();
                first_new.entry((r.pop, r.tenant.as_str())).and_modify(|m| *m = (*m).min(ms)).or_insert(ms);
            }
            let mut first_new: Vec<u128> = first_new.into_values().collect();
            first_new.sort_unstable();
            if let (Some(first), Some(last), Some(read)) = (after.first(), after.last(), first_new.last()) {
                eprintln!(
                    "push: release call returned after {} ms; each (PoP, tenant) manifest purge applied after {first}-{last} ms, p50 {} ms; its first read under the new generation sent after p50 {} ms, max {read} ms (from the call sent)",
                    commit.duration_since(sent).as_millis(),
                    after[after.len() / 2],
                    first_new[first_new.len() / 2],
                );
            }
            ensure!(
                applied.len() == pops * tenants,
                "the purge reached {} of {} (PoP, tenant) pairs",
                applied.len(),
                pops * tenants
            );
            edgegen_tests::checker::summarize_with(&reads, sent, NEW_GENERATION, |r| {
                applied.get(&(pop_names[r.pop].clone(), r.tenant.clone())).copied()
            })
        }
    };
    let (after_bound, stale_after_bound, last_old) = (summary.after_bound, summary.stale_after_bound, summary.last_old);
    let ms = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), |v| format!("{v} ms"));
    println!(
        "| {} | {pops} | {tenants} | {}/{} | {} | {} | {} | {} | {} | {:.2} % ({}/{}) | {} |",
        mode.name(),
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
    let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_owned(), |v| v.to_string());
    println!(
        "convergence pops={pops} mode={} p50_ms={} p99_ms={} max_ms={} stale_after_bound={stale_after_bound} reads={}",
        mode.name(),
        n(&conv["p50_ms"]),
        n(&conv["p99_ms"]),
        n(&conv["max_ms"]),
        summary.reads,
    );
    ensure!(conv["converged"] == true, "not converged: {conv}");
    ensure!(stale_after_bound == 0, "{stale_after_bound} stale reads after their bound ({})", mode.name());
    ensure!(summary.foreign == 0, "{} reads carried another tenant's data", summary.foreign);
    Ok(())
}

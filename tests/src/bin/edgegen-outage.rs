//! The cache through a coordinator outage, with N real PoPs (results in BENCHMARKS.md):
//!
//! `cargo run --release -p edgegen-tests --bin edgegen-outage -- [PoPs] [TENANTS] [--outage-secs S]`
//! (defaults: 4 PoPs, 4 tenants, 60 s).
//!
//! Starts the real coordinator (manifest max age 1 s, max stale 300 s), the sample origin
//! (objects `max-age=60`) and N Viceroy PoPs, and reads continuously through every PoP for
//! every tenant over a set of paths, with a probe token so each answer names its verdict
//! (`edgegen-cache`). After a warm-up it measures the hit ratio for S seconds, kills the
//! coordinator (SIGKILL) for S seconds while the reads go on, then restarts it on the same
//! data and measures a few seconds more. Reported: reads, hit ratio and BYPASS answers per
//! window, and one machine-readable line:
//!
//! `outage pops=N tenants=T outage_s=S max_stale_s=300 before_hit_ratio=… during_hit_ratio=… during_bypass=N during_reads=N after_hit_ratio=…`
//!
//! It fails (exit 1) when a PoP bypassed during the outage or the hit ratio moved by more
//! than one point: within max stale, an outage must not reach the origin.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use edgegen_shared::{SecretKey, TenantId};
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::process::free_port;
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use reqwest::Method;
use serde_json::json;

/// The stale bound under test (the default; set explicitly so the figure is the one named).
const MAX_STALE_MS: u64 = 300_000;
/// Distinct paths read per tenant (each object lives 60 s at the edge, so misses go on).
const PATHS: u64 = 200;
/// Warm-up before the first window: every PoP live, the caches filling.
const WARM_UP: Duration = Duration::from_secs(10);
/// How long the restarted coordinator is measured.
const AFTER: Duration = Duration::from_secs(5);

/// The window a read falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    WarmUp,
    Before,
    During,
    After,
}

/// Verdict counts of one window.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    reads: u64,
    hits: u64,
    misses: u64,
    bypass: u64,
    failed: u64,
}

impl Tally {
    fn ratio(&self) -> f64 {
        100.0 * self.hits as f64 / self.reads.max(1) as f64
    }
}

struct Args {
    pops: usize,
    tenants: usize,
    outage: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let mut outage = 60;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--outage-secs" {
            let v = args.next().context("--outage-secs needs a number of seconds")?;
            outage = v.parse().with_context(|| format!("--outage-secs: not a number of seconds: {v:?}"))?;
        } else if arg.starts_with('-') {
            bail!("unknown option {arg:?} (usage: edgegen-outage [PoPs] [TENANTS] [--outage-secs S])");
        } else {
            positional.push(arg.parse::<usize>().with_context(|| format!("not a count: {arg:?}"))?);
        }
    }
    ensure!(positional.len() <= 2, "at most two counts: PoPs and tenants");
    let pops = positional.first().copied().unwrap_or(4);
    let tenants = positional.get(1).copied().unwrap_or(4);
    ensure!(pops >= 1 && tenants >= 1 && outage >= 1, "PoPs, tenants and the outage must be at least 1");
    ensure!(outage * 1000 < MAX_STALE_MS, "the outage must be shorter than max stale ({MAX_STALE_MS} ms)");
    Ok(Args { pops, tenants, outage: Duration::from_secs(outage) })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let contract = format!("sha256:{}", "11".repeat(32));
    let dir = tempfile::tempdir()?;
    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: contract.clone() })?;
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let max_stale = MAX_STALE_MS.to_string();
    let env = [("EDGEGEN_MANIFEST_MAX_STALE_MS", max_stale.as_str())];
    let data = dir.path().to_owned();
    let (d, e) = (data.clone(), env.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let coordinator = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Coordinator::start_on(&d, addr, &env)
    })
    .await??;
    let names: Vec<String> = (0..args.tenants).map(|i| format!("tenant-{i}")).collect();
    for t in &names {
        let body =
            json!({"id": t, "hosts": [format!("{t}.test")], "schema_version": "1.0.0", "contract_hash": contract});
        coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await?;
    }
    let hosts: Vec<(String, TenantId)> =
        names.iter().map(|t| Ok((format!("{t}.test"), TenantId::new(t.as_str())?))).collect::<anyhow::Result<_>>()?;
    let mut edges = Vec::new();
    for p in 0..args.pops {
        let config = EdgeConfig::new(origin.addr(), Some(addr), hosts.clone(), &format!("pop-{}", p + 1));
        edges.push(tokio::task::spawn_blocking(move || Viceroy::start(&config)).await??);
    }
    eprintln!("{} PoPs up; warming up {} s", args.pops, WARM_UP.as_secs());

    let window = Arc::new(Mutex::new(Window::WarmUp));
    let tallies: Arc<Mutex<[Tally; 4]>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let readers = readers(&edges, &names, (2 * args.pops).max(4), &window, &tallies, &stop)?;
    let set = |w: Window| *window.lock().unwrap_or_else(|p| p.into_inner()) = w;

    tokio::time::sleep(WARM_UP).await;
    set(Window::Before);
    tokio::time::sleep(args.outage).await;
    drop(coordinator); // SIGKILL to its PID
    set(Window::During);
    let down = Instant::now();
    eprintln!("coordinator killed; outage of {} s", args.outage.as_secs());
    tokio::time::sleep(args.outage).await;
    let (d, e) = (data.clone(), env.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let restarted = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Coordinator::start_on(&d, addr, &env)
    })
    .await??;
    set(Window::After);
    eprintln!("coordinator restarted after {:.1} s down", down.elapsed().as_secs_f64());
    tokio::time::sleep(AFTER).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    drop(restarted);

    let t = *tallies.lock().unwrap_or_else(|p| p.into_inner());
    let [_, before, during, after] = t;
    println!("| window | seconds | reads | reads/s | hit ratio | MISS | BYPASS | failed |");
    println!("|---|---|---|---|---|---|---|---|");
    let windows = [
        ("before", before, args.outage),
        ("during the outage", during, args.outage),
        ("after the restart", after, AFTER),
    ];
    for (name, w, span) in windows {
        println!(
            "| {name} | {} | {} | {:.0} | {:.2} % | {} | {} | {} |",
            span.as_secs(),
            w.reads,
            w.reads as f64 / span.as_secs_f64(),
            w.ratio(),
            w.misses,
            w.bypass,
            w.failed
        );
    }
    println!(
        "outage pops={} tenants={} outage_s={} max_stale_s={} before_hit_ratio={:.2} during_hit_ratio={:.2} during_bypass={} during_reads={} after_hit_ratio={:.2}",
        args.pops,
        args.tenants,
        args.outage.as_secs(),
        MAX_STALE_MS / 1000,
        before.ratio(),
        during.ratio(),
        during.bypass,
        during.reads,
        after.ratio(),
    );
    ensure!(during.reads > 0 && before.reads > 0, "no reads measured");
    ensure!(during.bypass == 0, "{} BYPASS answers during the outage", during.bypass);
    ensure!(during.failed == 0, "{} failed reads during the outage", during.failed);
    ensure!((before.ratio() - during.ratio()).abs() <= 1.0, "the hit ratio moved by more than one point");
    Ok(())
}

/// Starts `concurrency` readers over every PoP × tenant × path; each answer is counted in
/// the window current when its request was sent.
fn readers(
    edges: &[Viceroy],
    tenants: &[String],
    concurrency: usize,
    window: &Arc<Mutex<Window>>,
    tallies: &Arc<Mutex<[Tally; 4]>>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let key = SecretKey::new("probe", PROBE_KEY)?;
    let probes: Vec<String> = tenants
        .iter()
        .map(|t| Ok(edgegen_shared::probe::mint(&TenantId::new(t.as_str())?, now, now + 7200, &key)?))
        .collect::<anyhow::Result<_>>()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let urls: Vec<String> = edges.iter().map(|e| e.url("")).collect();
    let mut handles = Vec::new();
    for worker in 0..concurrency {
        let (client, urls, tenants, probes) = (client.clone(), urls.clone(), tenants.to_vec(), probes.clone());
        let (window, tallies, stop) = (Arc::clone(window), Arc::clone(tallies), Arc::clone(stop));
        handles.push(tokio::spawn(async move {
            // xorshift64: a fixed, seeded path sequence per reader (no platform randomness).
            let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (worker as u64 + 1);
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (pop, t) = (i % urls.len(), (i / urls.len()) % tenants.len());
                i += 1;
                let url = format!("{}/item/{}", urls[pop].trim_end_matches('/'), state % PATHS);
                let w = *window.lock().unwrap_or_else(|p| p.into_inner());
                let sent = client
                    .get(&url)
                    .header("host", format!("{}.test", tenants[t]))
                    .header("edgegen-probe", &probes[t])
                    .send()
                    .await;
                let verdict = match sent {
                    Ok(resp) if resp.status().is_success() => {
                        let cache =
                            resp.headers().get("edgegen-cache").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let _ = resp.bytes().await;
                        cache
                    }
                    _ => None,
                };
                let mut all = tallies.lock().unwrap_or_else(|p| p.into_inner());
                let tally = &mut all[w as usize];
                tally.reads += 1;
                match verdict.as_deref() {
                    Some("HIT") => tally.hits += 1,
                    Some("MISS") => tally.misses += 1,
                    Some("BYPASS") => tally.bypass += 1,
                    Some(_) => {}
                    None => tally.failed += 1,
                }
            }
        }));
    }
    Ok(handles)
}

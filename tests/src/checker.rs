//! The read checker: reads continuously through every PoP for every tenant (same path for
//! all tenants, so isolation is exercised), with a probe token, and records for each
//! response the generation it was served under and the tenant its body names. After a
//! release, [`summarize`] classifies every read by time since commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgegen_shared::{SecretKey, TenantId};

use crate::viceroy::PROBE_KEY;

/// One response.
#[derive(Debug, Clone)]
pub struct Read {
    /// When it was sent. Reads are classified by send time: the edge judges its manifest's
    /// freshness after the request was sent, so a read sent after the bound must be new.
    pub at: Instant,
    /// The PoP read through (an index into the checker's `edge_urls`).
    pub pop: usize,
    /// The tenant asked for.
    pub tenant: String,
    /// The edge's `edgegen-cache` verdict (HIT, MISS, BYPASS, ...), if any.
    pub cache: Option<String>,
    /// The generation the edge served it under (`edgegen-generation`), if any.
    pub generation: Option<u64>,
    /// The tenant the body names.
    pub served_tenant: Option<String>,
}

/// A running checker.
pub struct Checker {
    reads: Arc<Mutex<Vec<Read>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `concurrency` readers over `edge_urls` (PoP base URLs) × `tenants` (hosts are
/// `{tenant}.{domain}`), all reading `path`; reader `w` reads pairs `w`, `w + concurrency`,
/// `w + 2 × concurrency`, … so every (PoP, tenant) pair sees continuous traffic.
///
/// # Errors
/// When probe tokens cannot be minted.
pub fn start(
    edge_urls: Vec<String>,
    tenants: Vec<String>,
    domain: &str,
    path: &str,
    concurrency: usize,
) -> anyhow::Result<Checker> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let key = SecretKey::new("probe", PROBE_KEY)?;
    let probes: Vec<String> = tenants
        .iter()
        .map(|t| {
            edgegen_shared::probe::mint(&TenantId::new(t.as_str())?, now, now + 3600, &key).map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<_>>()?;
    let (reads, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let urls: Vec<String> = edge_urls.iter().map(|u| format!("{}{path}", u.trim_end_matches('/'))).collect();
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (client, urls, tenants, probes, reads, stop, domain) = (
            client.clone(),
            urls.clone(),
            tenants.clone(),
            probes.clone(),
            Arc::clone(&reads),
            Arc::clone(&stop),
            domain.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let (pop, t) = (i % urls.len(), (i / urls.len()) % tenants.len());
                // Strided, not `+ 1`: readers that all stepped to the next (PoP, tenant) would
                // move as one window over the grid and leave each pair unread for half a sweep.
                // With the stride, every pair is read every `pairs / concurrency` reads.
                i += concurrency;
                let host = format!("{}.{domain}", tenants[t]);
                let sent = Instant::now();
                let Ok(resp) =
                    client.get(&urls[pop]).header("host", host).header("edgegen-probe", &probes[t]).send().await
                else {
                    continue;
                };
                let generation =
                    resp.headers().get("edgegen-generation").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                let cache = resp.headers().get("edgegen-cache").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
                let served_tenant = body["tenant"].as_str().map(str::to_owned);
                reads.lock().unwrap_or_else(|p| p.into_inner()).push(Read {
                    at: sent,
                    pop,
                    tenant: tenants[t].clone(),
                    cache,
                    generation,
                    served_tenant,
                });
            }
        }));
    }
    Ok(Checker { reads, stop, workers })
}

impl Checker {
    /// Stops the readers and returns every read.
    pub async fn stop(self) -> Vec<Read> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What the reads show about a release committed at `commit` with manifest max age `bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// All reads.
    pub reads: usize,
    /// Reads later than their bound (commit + max age, or when their PoP applied the purge).
    pub after_bound: usize,
    /// Of those, served under a generation older than `new_generation` (or none).
    pub stale_after_bound: usize,
    /// The latest read served under an older generation, from commit.
    pub last_old: Option<Duration>,
    /// Reads whose body named another tenant than the one asked for (must be zero).
    pub foreign: usize,
}

/// Classifies reads against a release that moved every tenant to `new_generation`, with
/// bound commit + `bound` for every read.
pub fn summarize(reads: &[Read], commit: Instant, bound: Duration, new_generation: u64) -> Summary {
    summarize_with(reads, commit, new_generation, |_| Some(commit + bound))
}

/// Classifies reads against a release that moved every tenant to `new_generation`, each read
/// against its own bound: the moment after which it must be served under the new generation
/// (e.g. when its PoP applied the purge of its tenant's manifest; `None`: never bound, as for
/// a PoP the purge did not reach).
pub fn summarize_with(
    reads: &[Read],
    commit: Instant,
    new_generation: u64,
    bound: impl Fn(&Read) -> Option<Instant>,
) -> Summary {
    let mut s = Summary { reads: reads.len(), after_bound: 0, stale_after_bound: 0, last_old: None, foreign: 0 };
    for r in reads {
        if r.served_tenant.as_deref() != Some(r.tenant.as_str()) {
            s.foreign += 1;
        }
        if r.at <= commit {
            continue;
        }
        let since = r.at - commit;
        let old = r.generation.is_none_or(|g| g < new_generation);
        if old {
            s.last_old = Some(s.last_old.map_or(since, |l| l.max(since)));
        }
        if bound(r).is_some_and(|b| r.at > b) {
            s.after_bound += 1;
            s.stale_after_bound += usize::from(old);
        }
    }
    s
}

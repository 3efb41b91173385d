//! The control plane losing a node, over real processes end to end: three `edgegen serve
//! --store postgres://…` replicas on one PostgreSQL database behind a real HAProxy, and four
//! PoPs running the release edge wasm under Viceroy whose coordinator backend is the load
//! balancer. Clients read every tenant through every PoP the whole time; the PoPs fetch
//! manifests, revalidate them and acknowledge new generations themselves. 100 releases run
//! concurrently through the load balancer and one replica is SIGKILLed in the middle.
//!
//! Checked: no release lost or half-applied (answered = stored, generations contiguous, ids
//! unique), every release converges from the PoPs' own acknowledgements (pooled across the
//! replicas, the dead one's included), every PoP ends on every tenant's last generation, the
//! convergence-deadline policy rolls back exactly once a release committed before the kill
//! that cannot converge (no PoP serves its tenant), whichever replica led the deadline pass,
//! the report policy rolls a bad release back exactly once while the PoPs' reports and a
//! burst of reports race through different replicas, and the time any PoP bypassed its cache.
//!
//! The manifests' stale bound is set to their max age (1 s), the strictest setting: a PoP
//! whose manifest refresh failed bypasses at once instead of riding out the failure on its
//! last verified manifest (the default five minutes would hide any gap), so every failed
//! refresh shows as a BYPASS answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgegen_shared::{SecretKey, TenantId, probe};
use edgegen_tests::coordinator::{ADMIN_TOKEN, Coordinator, EDGE_TOKEN, get_json};
use edgegen_tests::haproxy::HaProxy;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::postgres::TempCluster;
use edgegen_tests::process::free_port;
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use serde_json::{Value, json};

const TENANTS: usize = 12;
const POPS: usize = 4;
const RELEASES: usize = 100;
/// The convergence deadline: far above what the 100 releases need (about 1 s each, a few
/// seconds under CI load), so only the release no PoP can acknowledge misses it.
const DEADLINE_MS: &str = "20000";

fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

fn tenant(i: usize) -> String {
    format!("t{i}")
}

fn probe_token(tenant: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    probe::mint(&TenantId::new(tenant).unwrap(), now, now + 600, &SecretKey::new("p", PROBE_KEY).unwrap()).unwrap()
}

/// What the readers saw through one PoP.
#[derive(Default)]
struct PopView {
    reads: usize,
    bypass: usize,
    failed: usize,
    /// Per tenant: when the current run of BYPASS answers began.
    bypassing_since: BTreeMap<String, Instant>,
    longest_bypass_ms: u128,
}

impl PopView {
    fn saw(&mut self, tenant: &str, cache: Option<&str>) {
        self.reads += 1;
        match cache {
            Some("BYPASS") => {
                self.bypass += 1;
                self.bypassing_since.entry(tenant.to_owned()).or_insert_with(Instant::now);
            }
            Some(_) => {
                if let Some(since) = self.bypassing_since.remove(tenant) {
                    self.longest_bypass_ms = self.longest_bypass_ms.max(since.elapsed().as_millis());
                }
            }
            None => self.failed += 1,
        }
    }
}

async fn admin_post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> reqwest::Response {
    http.post(format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).json(body).send().await.unwrap()
}

/// The ids of the rollbacks of `release` (every page of `GET /v1/releases`).
async fn rollbacks_of(http: &reqwest::Client, base: &str, release: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = get_json(http, format!("{base}/v1/releases?offset={offset}&limit=200"), ADMIN_TOKEN).await;
        let releases = page["releases"].as_array().unwrap();
        for r in releases {
            if r["rollback_of"].as_str() == Some(release) {
                found.insert(r["id"].as_str().unwrap().to_owned());
            }
        }
        offset += releases.len();
        if releases.is_empty() || offset as u64 >= page["total"].as_u64().unwrap() {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viceroy_pops_behind_haproxy_lose_a_replica_during_100_releases_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        tokio::task::spawn_blocking(TempCluster::start).await.unwrap().expect("PostgreSQL (cargo xtask bootstrap)");
    let url = cluster.create_database("scenario").unwrap();
    let mut replicas: Vec<Option<Coordinator>> = Vec::new();
    let mut addrs = Vec::new();
    for n in 0..3 {
        let (url, data) = (url.clone(), dir.path().join(format!("replica-{n}")));
        let replica = tokio::task::spawn_blocking(move || {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
            let env = [
                ("EDGEGEN_STORE", url.as_str()),
                ("EDGEGEN_MANIFEST_MAX_STALE_MS", "1000"),
                ("EDGEGEN_AUTO_ROLLBACK_REPORTS", "2"),
                ("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", "2"),
                ("EDGEGEN_CONVERGENCE_DEADLINE_MS", DEADLINE_MS),
            ];
            Coordinator::start_on(&data, addr, &env)
        })
        .await
        .unwrap()
        .unwrap();
        addrs.push(replica.addr());
        replicas.push(Some(replica));
    }
    let lb = HaProxy::start(dir.path(), &addrs).unwrap();
    let base = format!("http://{}", lb.addr());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    for i in 0..TENANTS {
        let t = json!({"id": tenant(i), "hosts": [format!("{}.test", tenant(i))], "schema_version": "1.0.0",
            "contract_hash": contract(1)});
        assert_eq!(admin_post(&http, &base, "/v1/tenants", &t).await.status(), 201);
    }
    // A tenant no PoP serves: its release can never converge.
    let silent =
        json!({"id": "silent", "hosts": ["silent.test"], "schema_version": "1.0.0", "contract_hash": contract(1)});
    assert_eq!(admin_post(&http, &base, "/v1/tenants", &silent).await.status(), 201);

    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: contract(1) }).unwrap();
    let hosts: Vec<(String, TenantId)> =
        (0..TENANTS).map(|i| (format!("{}.test", tenant(i)), TenantId::new(tenant(i)).unwrap())).collect();
    let mut starting = Vec::new();
    for p in 0..POPS {
        let config = EdgeConfig::new(origin.addr(), Some(lb.addr()), hosts.clone(), &format!("pop-{p}"));
        starting.push(tokio::task::spawn_blocking(move || Viceroy::start(&config)));
    }
    let mut pops = Vec::new();
    for s in starting {
        pops.push(Arc::new(s.await.unwrap().unwrap()));
    }

    // Readers: every tenant through every PoP, continuously, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let views: Arc<Mutex<Vec<PopView>>> = Arc::new(Mutex::new((0..POPS).map(|_| PopView::default()).collect()));
    let tokens: Arc<Vec<String>> = Arc::new((0..TENANTS).map(|i| probe_token(&tenant(i))).collect());
    let mut readers = Vec::new();
    for (p, edge) in pops.iter().enumerate() {
        let (edge, stop, views, tokens) =
            (Arc::clone(edge), Arc::clone(&stop), Arc::clone(&views), Arc::clone(&tokens));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        readers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let i = n % TENANTS;
                n += 1;
                let sent = client
                    .get(edge.url(&format!("/item/{}", n % 7)))
                    .header("host", format!("{}.test", tenant(i)))
                    .header("edgegen-probe", &tokens[i])
                    .send()
                    .await;
                let cache = match sent {
                    Ok(r) if r.status().is_success() => {
                        let cache = r.headers().get("edgegen-cache").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let _ = r.bytes().await;
                        cache
                    }
                    _ => None,
                };
                views.lock().unwrap()[p].saw(&tenant(i), cache.as_deref());
                if n.is_multiple_of(TENANTS) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stuck = json!({"tenants": ["silent"], "schema_version": "1.0.0", "contract_hash": contract(1)});
    let r = admin_post(&http, &base, "/v1/releases", &stuck).await;
    assert_eq!(r.status(), 201);
    let stuck_id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // 100 releases, 10 at a time, each retried with its idempotency key until it is
    // answered (a request on the killed replica may die with it). Same schema and contract
    // as the origin's: generation bumps the PoPs must apply, without contract reports.
    let outcomes: Arc<Mutex<BTreeMap<usize, Value>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(10));
    let releases_started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..RELEASES {
        let (http, base, outcomes, gate) = (http.clone(), base.clone(), Arc::clone(&outcomes), Arc::clone(&gate));
        clients.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let tenants: BTreeSet<String> = (0..3).map(|k| tenant((i * 5 + k * 7) % TENANTS)).collect();
            let body = json!({"tenants": tenants, "schema_version": "1.0.0", "contract_hash": contract(1)});
            for _ in 0..50 {
                let sent = http
                    .post(format!("{base}/v1/releases"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("idempotency-key", format!("scenario-{i}"))
                    .json(&body)
                    .send()
                    .await;
                if let Ok(r) = sent
                    && (r.status() == 201 || r.status() == 200)
                {
                    let release = r.json::<Value>().await.unwrap();
                    outcomes.lock().unwrap().insert(i, release);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("release {i} never answered");
        }));
    }
    let killed_after = loop {
        if outcomes.lock().unwrap().len() >= RELEASES / 3 {
            replicas[1] = None; // the harness's drop: SIGKILL to the PID it started, reaped
            break releases_started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for c in clients {
        c.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), RELEASES, "every release answered");

    // Nothing lost or half-applied.
    let mut used: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (i, release) in &outcomes {
        let id = release["id"].as_str().unwrap();
        assert!(ids.insert(id.to_owned()), "release id {id} reused");
        let stored = get_json(&http, format!("{base}/v1/releases/{id}"), ADMIN_TOKEN).await;
        assert_eq!(stored["tenants"], release["tenants"], "release {i} stored as answered");
        for change in release["tenants"].as_array().unwrap() {
            let to = change["to_generation"].as_u64().unwrap();
            assert!(used.entry(change["tenant"].as_str().unwrap().to_owned()).or_default().insert(to));
        }
    }
    let mut last_generation = BTreeMap::new();
    for (t, gens) in &used {
        let stored = get_json(&http, format!("{base}/v1/tenants/{t}"), ADMIN_TOKEN).await;
        let last = stored["generation"].as_u64().unwrap();
        assert_eq!(gens.iter().copied().collect::<Vec<_>>(), (2..=last).collect::<Vec<_>>(), "{t}");
        last_generation.insert(t.clone(), last);
    }

    // Every release converges from the PoPs' own acknowledgements.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = ids.clone();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = BTreeSet::new();
        for id in &pending {
            let c = http.get(format!("{base}/v1/releases/{id}/convergence")).bearer_auth(ADMIN_TOKEN).send().await;
            let converged = match c {
                Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null)["converged"] == true,
                Err(_) => false,
            };
            if !converged {
                still.insert(id.clone());
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converged_after = releases_started.elapsed();
    assert!(pending.is_empty(), "releases not converged after 60 s: {pending:?}");

    // The measured window ends here: the rollback below makes PoPs answer without storing.
    let (reads, bypass, failed, longest) = {
        let views = views.lock().unwrap();
        (
            views.iter().map(|v| v.reads).sum::<usize>(),
            views.iter().map(|v| v.bypass).sum::<usize>(),
            views.iter().map(|v| v.failed).sum::<usize>(),
            views.iter().map(|v| v.longest_bypass_ms).max().unwrap_or(0),
        )
    };

    // Every PoP serves every tenant's last generation.
    for edge in &pops {
        for (t, last) in &last_generation {
            let r = reqwest::Client::new()
                .get(edge.url("/item/0"))
                .header("host", format!("{t}.test"))
                .header("edgegen-probe", probe_token(t))
                .send()
                .await
                .unwrap();
            let generation = r.headers().get("edgegen-generation").and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(generation, Some(last.to_string()), "{t} at {}", edge.url("/"));
        }
    }

    // The release that could not converge is rolled back once, by whichever replica leads
    // the deadline pass after the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stuck = get_json(&http, format!("{base}/v1/releases/{stuck_id}"), ADMIN_TOKEN).await;
        if stuck["status"] == "rolled_back" {
            break;
        }
        assert!(Instant::now() < deadline, "the deadline policy never fired: {stuck}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rollbacks = rollbacks_of(&http, &base, &stuck_id).await;
    assert_eq!(rollbacks.len(), 1, "the deadline policy fired exactly once: {rollbacks:?}");

    // A bad release (the origin still answers the old contract): the PoPs report it, and a
    // burst of reports from two PoP names races through different replicas; the policy
    // (two reports from two PoPs) rolls it back exactly once.
    let body = json!({"tenants": ["t0"], "schema_version": "3.0.0", "contract_hash": contract(3)});
    let r = admin_post(&http, &base, "/v1/releases", &body).await;
    assert_eq!(r.status(), 201);
    let bad: Value = r.json().await.unwrap();
    let bad_id = bad["id"].as_str().unwrap().to_owned();
    let generation = bad["tenants"][0]["to_generation"].as_u64().unwrap();
    let mut reports = Vec::new();
    for k in 0..8 {
        let (http, base) = (http.clone(), base.clone());
        let report = json!({"pop": format!("pop-{}", k % 2), "tenant": "t0", "kind": "contract_mismatch",
            "generation": generation, "path": "/item/0", "expected_schema": "3.0.0",
            "expected_contract": contract(3), "observed_schema": "1.0.0", "observed_at": 1});
        reports.push(tokio::spawn(async move {
            let r = http.post(format!("{base}/v1/edge/reports")).bearer_auth(EDGE_TOKEN).json(&report).send().await;
            r.unwrap().status()
        }));
    }
    for r in reports {
        assert_eq!(r.await.unwrap(), 202);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the PoPs' own reports land too
    let rollbacks = rollbacks_of(&http, &base, &bad_id).await;
    assert_eq!(rollbacks.len(), 1, "the policy fired exactly once: {rollbacks:?}");
    let rolled = get_json(&http, format!("{base}/v1/releases/{bad_id}"), ADMIN_TOKEN).await;
    assert_eq!(rolled["status"], "rolled_back");
    assert_eq!(rolled["rolled_back_by"].as_str(), rollbacks.iter().next().map(String::as_str));

    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    println!(
        "scenario: 3 replicas behind HAProxy, one SIGKILLed {} ms into {RELEASES} concurrent releases; {POPS} \
         Viceroy PoPs x {TENANTS} tenants; all releases converged {} ms after the first was sent; {reads} reads, \
         {bypass} BYPASS, {failed} failed; longest stretch a PoP bypassed a tenant's cache: {longest} ms",
        killed_after.as_millis(),
        converged_after.as_millis()
    );
    assert_eq!(failed, 0, "reads through the PoPs failed");
    // The load balancer's health checks (100 ms) and retries keep every PoP's manifest
    // refresh answered: with a stale bound of one max age, a refresh that failed would be a
    // BYPASS answer at once.
    assert_eq!(bypass, 0, "PoPs bypassed their cache (longest stretch {longest} ms)");
}

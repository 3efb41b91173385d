//! End-to-end release scenarios over the whole stack: the real coordinator binary, PoPs
//! running the release edge wasm under Viceroy, and the sample origin.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgegen_shared::{SecretKey, TenantId, probe};
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::process::free_port;
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use reqwest::Method;
use serde_json::{Value, json};

fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

fn stamp(schema: &str, byte: u8) -> Stamp {
    Stamp { schema_version: schema.into(), contract_hash: contract(byte) }
}

fn token(tenant: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    probe::mint(&TenantId::new(tenant).unwrap(), now, now + 600, &SecretKey::new("p", PROBE_KEY).unwrap()).unwrap()
}

/// (status, edgegen-cache, edgegen-generation)
async fn read(edge: &Viceroy, tenant: &str) -> (u16, String, Option<u64>) {
    let resp = reqwest::Client::new()
        .get(edge.url("/item"))
        .header("host", format!("{tenant}.test"))
        .header("edgegen-probe", token(tenant))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.log_tail(20)));
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let out = (
        resp.status().as_u16(),
        header("edgegen-cache").unwrap_or_default(),
        header("edgegen-generation").and_then(|g| g.parse().ok()),
    );
    let _ = resp.bytes().await;
    out
}

/// Commits the 1.8.3 release (contract 2) for `tenants`.
async fn release(c: &Coordinator, tenants: &[&str]) -> Value {
    let body = json!({"tenants": tenants, "schema_version": "1.8.3", "contract_hash": contract(2)});
    c.admin(Method::POST, "/v1/releases", Some(body)).await.unwrap()
}

async fn register(c: &Coordinator, tenants: &[&str]) {
    for t in tenants {
        let body =
            json!({"id": t, "hosts": [format!("{t}.test")], "schema_version": "1.8.2", "contract_hash": contract(1)});
        c.admin(Method::POST, "/v1/tenants", Some(body)).await.unwrap();
    }
}

async fn edge(origin: SocketAddr, coordinator: SocketAddr, tenants: &[&str], pop: &str) -> Viceroy {
    let hosts = tenants.iter().map(|t| (format!("{t}.test"), TenantId::new(*t).unwrap())).collect();
    let config = EdgeConfig::new(origin, Some(coordinator), hosts, pop);
    tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap()
}

/// The origin stays on the old build after a release: every response is MISMATCH (served,
/// never stored), the reports reach the coordinator, its policy rolls the release back, and
/// the PoP converges on the rollback's generation, which the old build matches again.
#[tokio::test]
async fn origin_left_on_the_old_build_is_rolled_back_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let origin = SampleOrigin::start(stamp("1.8.2", 1)).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || {
        Coordinator::start_on(
            &data,
            addr,
            // One PoP in this stack, and it reports a generation's mismatch once per report
            // window (edge-side dedupe): let that one report from that one PoP fire the policy
            // (the default asks for two distinct PoPs, so one PoP's traffic cannot roll back).
            &[
                ("EDGEGEN_AUTO_ROLLBACK_REPORTS", "1"),
                ("EDGEGEN_AUTO_ROLLBACK_WINDOW_SECS", "60"),
                ("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", "1"),
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    register(&coordinator, &["acme"]).await;
    let pop = edge(origin.addr(), coordinator.addr(), &["acme"], "pop-1").await;
    assert_eq!(read(&pop, "acme").await.1, "MISS");

    let release = coordinator
        .admin(
            Method::POST,
            "/v1/releases",
            Some(json!({"tenants": ["acme"], "schema_version": "1.8.3", "contract_hash": contract(2)})),
        )
        .await
        .unwrap();
    let id = release["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut mismatches = 0;
    for _ in 0..3 {
        let (status, cache, generation) = read(&pop, "acme").await;
        assert_eq!(status, 200);
        if cache == "MISMATCH" {
            assert_eq!(generation, Some(2));
            mismatches += 1;
        }
    }
    assert!(mismatches >= 3, "the old build's answers are never stored: {mismatches}");
    // The reports are posted after each response; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let r = coordinator.admin(Method::GET, &format!("/v1/releases/{id}"), None).await.unwrap();
        if r["status"] == "rolled_back" || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["status"], "rolled_back", "{status}");
    let rollback = status["rolled_back_by"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after: Vec<(u16, String, Option<u64>)> = vec![read(&pop, "acme").await, read(&pop, "acme").await];
    assert_eq!(after[0].2, Some(3), "the rollback's generation: {after:?}");
    assert_eq!(
        (after[0].1.as_str(), after[1].1.as_str()),
        ("MISS", "HIT"),
        "the old build matches the rollback: {after:?}"
    );
    let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{rollback}/convergence"), None).await.unwrap();
    assert_eq!(conv["converged"], true, "{conv}");
}

/// The coordinator's stale bound in the kill test: short, so the test shows it ends.
const STALE_BOUND: [(&str, &str); 1] = [("EDGEGEN_MANIFEST_MAX_STALE_MS", "1500")];

/// The coordinator dies (SIGKILL) right after committing a release. The PoPs keep their last
/// verified manifest only until its signed stale bound (`max_stale`, 1.5 s here, measured from
/// the manifest's issue, so before commit + 1.5 s); after it they answer BYPASS — never a
/// cached object of either generation — and after a restart on the same data the release is
/// there, whole, and converges.
#[tokio::test]
async fn coordinator_killed_mid_rollout_never_makes_a_pop_serve_stale() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = ["acme", "beta"];
    let origin = SampleOrigin::start(stamp("1.8.2", 1)).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let data = dir.path().to_owned();
    let coordinator =
        tokio::task::spawn_blocking(move || Coordinator::start_on(&data, addr, &STALE_BOUND)).await.unwrap().unwrap();
    register(&coordinator, &tenants).await;
    let pops = [edge(origin.addr(), addr, &tenants, "pop-1").await, edge(origin.addr(), addr, &tenants, "pop-2").await];
    for pop in &pops {
        for t in tenants {
            read(pop, t).await;
            assert_eq!(read(pop, t).await.1, "HIT");
        }
    }

    let release = release(&coordinator, &tenants).await;
    let commit = Instant::now();
    origin.set_stamp(stamp("1.8.3", 2));
    drop(coordinator); // SIGKILL to its PID

    // Reads for 2.5 s: after the stale bound (before commit + 1.5 s) nothing of generation 1
    // may be served, and nothing can come from the cache without a confirmed manifest.
    let mut bypassed = 0;
    while commit.elapsed() < Duration::from_millis(2500) {
        for pop in &pops {
            for t in tenants {
                let (status, cache, generation) = read(pop, t).await;
                assert_eq!(status, 200, "the origin still answers");
                if commit.elapsed() > Duration::from_millis(1550) {
                    assert_eq!(
                        cache, "BYPASS",
                        "{t}: after the bound without a coordinator only BYPASS is possible (got {cache} {generation:?})"
                    );
                    bypassed += 1;
                }
            }
        }
    }
    assert!(bypassed > 0);

    let data = dir.path().to_owned();
    let restarted =
        tokio::task::spawn_blocking(move || Coordinator::start_on(&data, addr, &STALE_BOUND)).await.unwrap().unwrap();
    let id = release["id"].as_str().unwrap();
    let stored: Value = restarted.admin(Method::GET, &format!("/v1/releases/{id}"), None).await.unwrap();
    assert_eq!(stored["tenants"].as_array().unwrap().len(), 2, "the release survived whole");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for pop in &pops {
            for t in tenants {
                let (_, cache, generation) = read(pop, t).await;
                assert_ne!(generation, Some(1), "{t}: generation 1 after the restart ({cache})");
            }
        }
        let conv = restarted.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await.unwrap();
        if conv["converged"] == true {
            assert_eq!(conv["acked"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "not converged after the restart: {conv}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A release with three PoPs under continuous reads of the same path for every tenant:
/// every PoP acknowledges, no read after commit + max age is served under the old
/// generation, and no response ever carries another tenant's data.
#[tokio::test]
async fn release_under_load_has_no_stale_read_after_the_bound_and_no_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = ["acme", "beta", "gamma"];
    let origin = SampleOrigin::start(stamp("1.8.2", 1)).unwrap();
    let data = dir.path().to_owned();
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start(&data)).await.unwrap().unwrap();
    register(&coordinator, &tenants).await;
    let mut pops = Vec::new();
    for p in 1..=3 {
        pops.push(edge(origin.addr(), coordinator.addr(), &tenants, &format!("pop-{p}")).await);
    }
    let urls = pops.iter().map(|p| p.url("")).collect();
    let names = tenants.iter().map(|t| (*t).to_owned()).collect();
    let checker = edgegen_tests::checker::start(urls, names, "test", "/same/path", 6).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let release = release(&coordinator, &tenants).await;
    let commit = Instant::now();
    origin.set_stamp(stamp("1.8.3", 2));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reads = checker.stop().await;
    let id = release["id"].as_str().unwrap();
    let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await.unwrap();
    let summary = edgegen_tests::checker::summarize(&reads, commit, Duration::from_millis(1000), 2);
    println!("{summary:?}; convergence {conv}");
    assert_eq!(conv["converged"], true, "{conv}");
    assert_eq!(conv["acked"], 3);
    assert!(summary.after_bound > 50, "too few reads after the bound to mean anything: {summary:?}");
    assert_eq!(summary.stale_after_bound, 0, "{summary:?}");
    assert_eq!(summary.foreign, 0, "{summary:?}");
    assert!(summary.last_old.is_none_or(|d| d <= Duration::from_millis(1100)), "{summary:?}");
}

/// The coordinator is killed (SIGKILL) mid-rollout, as soon as its convergence report shows
/// some PoPs confirmed and some not, with three PoPs under continuous probed reads and a
/// 3 s stale bound. Every PoP the report called confirmed keeps the new generation (no read
/// of the old one after the kill, and it keeps serving the new one from its cache while its
/// lease lasts); every PoP it called unconfirmed serves the old generation no later than
/// the `old_until` the report gave it, and none serves it past commit + max stale.
#[tokio::test]
async fn coordinator_killed_mid_rollout_confirmed_pops_keep_the_new_generation_and_the_rest_stop_at_their_bound() {
    const MAX_STALE_MS: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let tenants = ["acme"];
    let origin = SampleOrigin::start(stamp("1.8.2", 1)).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let data = dir.path().to_owned();
    let env = [("EDGEGEN_MANIFEST_MAX_STALE_MS", "3000")];
    let coordinator =
        tokio::task::spawn_blocking(move || Coordinator::start_on(&data, addr, &env)).await.unwrap().unwrap();
    register(&coordinator, &tenants).await;
    let mut pops = Vec::new();
    for p in 1..=3 {
        pops.push(edge(origin.addr(), addr, &tenants, &format!("pop-{p}")).await);
    }
    // Each PoP takes its first manifest 300 ms after the previous one, so under continuous
    // reads their refreshes (every max age, 1 s) stay staggered: the rollout is spread.
    for pop in &pops {
        read(pop, "acme").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let urls = pops.iter().map(|p| p.url("")).collect();
    let checker = edgegen_tests::checker::start(urls, vec!["acme".into()], "test", "/item", 6).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let release = release(&coordinator, &tenants).await;
    let commit_unix = unix_ms();
    let commit = Instant::now();
    origin.set_stamp(stamp("1.8.3", 2));
    let id = release["id"].as_str().unwrap().to_owned();
    let report = loop {
        let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await.unwrap();
        let confirmed = conv["leases"]["confirmed"].as_array().unwrap().len();
        let unconfirmed = conv["leases"]["unconfirmed"].as_array().unwrap().len();
        if confirmed > 0 && unconfirmed > 0 {
            break conv;
        }
        assert!(confirmed < 3, "every PoP confirmed before the kill: the rollout was not spread: {conv}");
        assert!(commit.elapsed() < Duration::from_secs(3), "no PoP confirmed: {conv}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(coordinator); // SIGKILL to its PID
    let (killed, killed_unix) = (Instant::now(), unix_ms());
    tokio::time::sleep(Duration::from_millis(MAX_STALE_MS + 1500)).await;
    let reads = checker.stop().await;

    let pop_index = |name: &str| name.strip_prefix("pop-").unwrap().parse::<usize>().unwrap() - 1;
    let confirmed: Vec<usize> =
        report["leases"]["confirmed"].as_array().unwrap().iter().map(|p| pop_index(p.as_str().unwrap())).collect();
    let unconfirmed: Vec<(usize, u64)> = report["leases"]["unconfirmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (pop_index(p["pop"].as_str().unwrap()), p["old_until"].as_u64().unwrap()))
        .collect();
    // Unix ms at which a read was sent (the report's bounds are Unix ms).
    let sent_unix = |r: &edgegen_tests::checker::Read| {
        if r.at >= killed {
            killed_unix + (r.at - killed).as_millis() as u64
        } else {
            killed_unix.saturating_sub((killed - r.at).as_millis() as u64)
        }
    };
    let old = |r: &edgegen_tests::checker::Read| r.generation.is_some_and(|g| g < 2);
    for &pop in &confirmed {
        let after: Vec<_> = reads.iter().filter(|r| r.pop == pop && r.at > killed).collect();
        assert!(after.iter().all(|r| !old(r)), "confirmed pop-{} served generation 1 after the kill", pop + 1);
        // Its last lease was issued less than a max age before the kill: it lasts at least
        // 2 s more, and the PoP serves the new generation all along.
        let within: Vec<_> = after.iter().filter(|r| r.at < killed + Duration::from_millis(1800)).collect();
        assert!(within.len() > 10, "too few reads at pop-{}", pop + 1);
        assert!(
            within.iter().all(|r| r.generation == Some(2) && r.cache.as_deref() != Some("BYPASS")),
            "confirmed pop-{} must keep serving generation 2: {:?}",
            pop + 1,
            within.iter().map(|r| (r.cache.clone(), r.generation)).collect::<Vec<_>>()
        );
    }
    for &(pop, old_until) in &unconfirmed {
        let late_old = reads.iter().filter(|r| r.pop == pop && old(r) && sent_unix(r) > old_until).count();
        assert_eq!(late_old, 0, "unconfirmed pop-{} served generation 1 after its stated bound {old_until}", pop + 1);
    }
    let past_stale = reads.iter().filter(|r| old(r) && sent_unix(r) > commit_unix + MAX_STALE_MS).count();
    assert_eq!(past_stale, 0, "generation 1 served past commit + max stale");
    let foreign = reads.iter().filter(|r| r.served_tenant.as_deref() != Some("acme")).count();
    assert_eq!(foreign, 0);
    println!("report before the kill: {}; {} reads", report["leases"], reads.len());
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

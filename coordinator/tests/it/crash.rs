//! Crash safety of the real binary: releases fire concurrently, the coordinator is killed
//! with SIGKILL mid-stream and restarted on the same data directory. Every release must be
//! either fully applied or absent, every acknowledged release must have survived, and the
//! manifests must agree with the tenants' state.

use edgegen_tests::coordinator::get_json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgegen_shared::{SecretKey, TenantId};
use edgegen_tests::process::{ChildGuard, free_port};
use serde_json::{Value, json};

use crate::support::{ADMIN, EDGE, MANIFEST_KEY, contract};

const TENANTS: usize = 8;

fn start(data_dir: &Path, log: &Path) -> (ChildGuard, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgegen"));
    cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(data_dir)
        .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
        .env("EDGEGEN_EDGE_TOKEN", EDGE)
        .env("EDGEGEN_MANIFEST_KEY", MANIFEST_KEY)
        .env("RUST_LOG", "warn");
    let mut child = ChildGuard::spawn("edgegen serve", cmd, log).unwrap();
    child.wait_for_port(addr, Duration::from_secs(30)).unwrap();
    (child, addr)
}

fn tenants_of(i: usize) -> Vec<String> {
    (0..3).map(|k| format!("t{}", (i * 5 + k * 3) % TENANTS)).collect::<BTreeSet<_>>().into_iter().collect()
}

fn body(i: usize) -> Value {
    json!({"tenants": tenants_of(i), "schema_version": format!("2.0.{i}"), "contract_hash": contract(2)})
}

/// What a client saw for request `i`: the release it got back, or nothing (the server died).
type Outcomes = BTreeMap<usize, Option<Value>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_loses_nothing_and_half_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), &dir.path().join("first.log"));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let base = format!("http://{addr}");
    for i in 0..TENANTS {
        let t = json!({"id": format!("t{i}"), "hosts": [format!("t{i}.test")], "schema_version": "1.0.0", "contract_hash": contract(1)});
        let r = http.post(format!("{base}/v1/tenants")).bearer_auth(ADMIN).json(&t).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }

    // Four clients release continuously, each request with its own idempotency key.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (http, base, stop) = (http.clone(), base.clone(), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut seen = Outcomes::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) && i < 4000 {
                let sent = http
                    .post(format!("{base}/v1/releases"))
                    .bearer_auth(ADMIN)
                    .header("idempotency-key", format!("req-{i}"))
                    .json(&body(i))
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(r) if r.status() == 201 => Some(r.json::<Value>().await.unwrap()),
                    Ok(r) => panic!("request {i}: unexpected status {}", r.status()),
                    Err(_) => None, // the server died under this request
                };
                let died = outcome.is_none();
                seen.insert(i, outcome);
                if died {
                    break;
                }
                i += 4;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(server); // SIGKILL to the PID we started, then reaped
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Outcomes::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    let acknowledged = outcomes.values().filter(|o| o.is_some()).count();
    assert!(acknowledged >= 10, "too few releases before the kill ({acknowledged}) for the test to mean anything");

    let (_server, addr) = start(dir.path(), &dir.path().join("second.log"));
    let base = format!("http://{addr}");
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth(ADMIN).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Every acknowledged release survived, exactly as acknowledged.
    for (i, outcome) in &outcomes {
        if let Some(release) = outcome {
            let (status, stored) = get(format!("{base}/v1/releases/{}", release["id"].as_str().unwrap())).await;
            assert_eq!(status, 200, "acknowledged request {i} lost");
            assert_eq!(stored["tenants"], release["tenants"], "request {i}");
        }
    }

    // Every stored release is whole, and the generations it used are each tenant's history.
    let mut used: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut n = 1;
    loop {
        let (status, r) = get(format!("{base}/v1/releases/rel-{n}")).await;
        if status == 404 {
            break;
        }
        let changes = r["tenants"].as_array().unwrap();
        let names: Vec<&str> = changes.iter().map(|c| c["tenant"].as_str().unwrap()).collect();
        let schema = r["tenants"][0]["to_schema_version"].as_str().unwrap();
        let i: usize = schema.trim_start_matches("2.0.").parse().unwrap();
        assert_eq!(names, tenants_of(i), "rel-{n} is missing tenants (half-applied)");
        for c in changes {
            let (from, to) = (c["from_generation"].as_u64().unwrap(), c["to_generation"].as_u64().unwrap());
            assert_eq!(to, from + 1);
            assert!(used.entry(c["tenant"].as_str().unwrap().to_owned()).or_default().insert(to), "generation reused");
        }
        n += 1;
    }
    let in_flight = outcomes.len() - acknowledged;
    println!(
        "crash test: {acknowledged} releases acknowledged before SIGKILL, {in_flight} in flight, {} stored",
        n - 1
    );
    let key = SecretKey::new("test", MANIFEST_KEY).unwrap();
    for t in 0..TENANTS {
        let tenant = format!("t{t}");
        let (_, state) = get(format!("{base}/v1/tenants/{tenant}")).await;
        let generation = state["generation"].as_u64().unwrap();
        let history: Vec<u64> = used.get(&tenant).map(|s| s.iter().copied().collect()).unwrap_or_default();
        assert_eq!(history, (2..=generation).collect::<Vec<_>>(), "{tenant}: generation moved without a whole release");
        let manifest = http.get(format!("{base}/v1/edge/manifests/{tenant}")).bearer_auth(EDGE).send().await.unwrap();
        let body = manifest.bytes().await.unwrap();
        let m = edgegen_shared::manifest::verify(&body, &key, &TenantId::new(&tenant).unwrap()).unwrap();
        assert_eq!(m.generation.0, generation, "{tenant}: manifest disagrees with the tenant state");
        assert_eq!(m.schema_version.to_string(), state["schema_version"].as_str().unwrap());
    }

    // A request whose answer was lost is safe to retry: it either replays or commits once.
    for (i, outcome) in &outcomes {
        if outcome.is_none() {
            let before: Vec<u64> = current_generations(&http, &base, &tenants_of(*i)).await;
            let r = http
                .post(format!("{base}/v1/releases"))
                .bearer_auth(ADMIN)
                .header("idempotency-key", format!("req-{i}"))
                .json(&body(*i))
                .send()
                .await
                .unwrap();
            let replayed = r.status() == 200;
            assert!(replayed || r.status() == 201, "retry of {i}: {}", r.status());
            let after = current_generations(&http, &base, &tenants_of(*i)).await;
            let bump = if replayed { 0 } else { 1 };
            assert_eq!(after, before.iter().map(|g| g + bump).collect::<Vec<_>>(), "retry of {i}");
        }
    }
}

async fn current_generations(http: &reqwest::Client, base: &str, tenants: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for t in tenants {
        let v: Value = get_json(http, format!("{base}/v1/tenants/{t}"), ADMIN).await;
        out.push(v["generation"].as_u64().unwrap());
    }
    out
}

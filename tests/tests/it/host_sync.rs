//! The host map through the local stand-in for Fastly's Config Store API: `edgegen sync
//! hosts` against the real coordinator binary, the store a JSON file that PoPs running the
//! release edge under Viceroy read on every request. Drift is reported, repaired, and the
//! PoPs route by the repaired map without a restart; limits are refused before any write.

use std::path::Path;
use std::process::Output;

use edgegen_tests::config_store_api::{self, ConfigStoreApi};
use edgegen_tests::coordinator::{ADMIN_TOKEN, Coordinator};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use edgegen_tests::workspace;
use reqwest::Method;
use serde_json::{Value, json};

const STORE: &str = "hostsStore01";

fn contract() -> String {
    format!("sha256:{}", hex::encode([1u8; 32]))
}

async fn register(c: &Coordinator, id: &str, hosts: &[&str]) -> anyhow::Result<Value> {
    let body = json!({"id": id, "hosts": hosts, "schema_version": "1.8.2", "contract_hash": contract()});
    c.admin(Method::POST, "/v1/tenants", Some(body)).await
}

/// Runs `edgegen sync hosts --store-id STORE` against `coordinator` and `api`.
async fn sync(coordinator: &Coordinator, api: &ConfigStoreApi, token: &str, args: &[&str]) -> Output {
    sync_store(coordinator, api, token, STORE, args).await
}

async fn sync_store(
    coordinator: &Coordinator,
    api: &ConfigStoreApi,
    token: &str,
    store: &str,
    args: &[&str],
) -> Output {
    let mut cmd = std::process::Command::new(workspace::coordinator_bin().unwrap());
    cmd.args(["sync", "hosts", "--store-id", store])
        .args(args)
        .env("EDGEGEN_URL", format!("http://{}", coordinator.addr()))
        .env("EDGEGEN_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("FASTLY_API_URL", api.url())
        .env("FASTLY_API_TOKEN", token)
        .env_remove("EDGEGEN_HOSTS_STORE_ID");
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// (status, the tenant the origin was told) for a request to `host` through `edge`.
async fn route(edge: &Viceroy, host: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(edge.url("/whoami"))
        .header("host", host)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.log_tail(20)));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["tenant"].as_str().unwrap_or("-").to_owned())
}

async fn start_coordinator(dir: &Path) -> Coordinator {
    let data = dir.join("coordinator");
    tokio::task::spawn_blocking(move || Coordinator::start(&data)).await.unwrap().unwrap()
}

#[tokio::test]
async fn sync_hosts_repairs_drift_and_the_pops_route_by_it_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_coordinator(dir.path()).await;
    register(&coordinator, "acme", &["acme.localhost"]).await.unwrap();
    register(&coordinator, "beta", &["beta.localhost", "www.beta.localhost"]).await.unwrap();

    // A host claimed by two tenants is refused at registration, naming host and owner.
    let err = register(&coordinator, "gamma", &["gamma.localhost", "acme.localhost"]).await.unwrap_err();
    assert!(err.to_string().contains("acme.localhost already belongs to tenant acme"), "{err}");

    // The store as a hand-maintained map left it: one right, one stale, one misrouted, one missing.
    let api = ConfigStoreApi::start(500).unwrap();
    let file = dir.path().join("edgegen_hosts.json");
    let stale = [("acme.localhost", "acme"), ("beta.localhost", "acme"), ("old.localhost", "gone")];
    api.add_store(STORE, &file, &stale).unwrap();

    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract() }).unwrap();
    let mut pops = Vec::new();
    for pop in ["local-1", "local-2"] {
        let mut config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), Vec::new(), pop);
        config.hosts_file = Some(file.clone());
        pops.push(tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap());
    }
    let pids: Vec<u32> = pops.iter().map(Viceroy::pid).collect();
    assert_eq!(route(&pops[0], "beta.localhost").await, (200, "acme".into()), "misrouted before the sync");
    assert_eq!(route(&pops[0], "www.beta.localhost").await.0, 404, "missing before the sync");

    // --dry-run: the drift, exit 1, nothing written.
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &["--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "pointing-elsewhere beta.localhost -> acme (the coordinator says beta)",
        "extra              old.localhost -> gone (no tenant claims it)",
        "missing            www.beta.localhost -> beta",
        "3 difference(s); --dry-run: nothing changed",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    assert_eq!(api.items(STORE).len(), 3);
    assert!(!api.calls().iter().any(|c| c.starts_with("PATCH")), "{:?}", api.calls());

    // The repair: exit 1 (it changed something), the store is the coordinator's map.
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &["--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["in_sync"].as_bool(), report["repaired"].as_bool()), (Some(false), Some(true)));
    let kinds: Vec<&str> = report["drift"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pointing_elsewhere", "extra", "missing"]);
    let expected = [("acme.localhost", "acme"), ("beta.localhost", "beta"), ("www.beta.localhost", "beta")];
    let expected: std::collections::BTreeMap<String, String> =
        expected.iter().map(|(h, t)| ((*h).to_owned(), (*t).to_owned())).collect();
    assert_eq!(api.items(STORE), expected);

    // Every PoP routes by the repaired map at once, still the same processes.
    for pop in &pops {
        assert_eq!(route(pop, "beta.localhost").await, (200, "beta".into()));
        assert_eq!(route(pop, "www.beta.localhost").await, (200, "beta".into()));
        assert_eq!(route(pop, "old.localhost").await.0, 404);
    }
    assert_eq!(pops.iter().map(Viceroy::pid).collect::<Vec<_>>(), pids);

    // In sync: exit 0.
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 host(s), in sync"), "{}", text(&out));

    // A tenant registered while the PoPs run is served once the map is synced.
    register(&coordinator, "gamma", &["gamma.localhost"]).await.unwrap();
    assert_eq!(route(&pops[1], "gamma.localhost").await.0, 404);
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for pop in &pops {
        assert_eq!(route(pop, "gamma.localhost").await, (200, "gamma".into()));
    }

    // A hand edit (a host deleted in the web interface) is found and undone.
    api.edit_by_hand(STORE, "acme.localhost", None);
    assert_eq!(route(&pops[0], "acme.localhost").await.0, 404);
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing            acme.localhost -> acme"));
    assert_eq!(route(&pops[0], "acme.localhost").await, (200, "acme".into()));
}

#[tokio::test]
async fn sync_hosts_refuses_a_map_over_the_limits_and_reports_api_failures() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_coordinator(dir.path()).await;
    register(&coordinator, "acme", &["a.localhost", "b.localhost", "c.localhost"]).await.unwrap();
    let api = ConfigStoreApi::start(500).unwrap();
    api.add_store(STORE, &dir.path().join("hosts.json"), &[("z.localhost", "zed")]).unwrap();

    // Three hosts in a store limited to two: exit 2, the limit named, nothing written.
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &["--max-entries", "2"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 hosts; a Config Store holds at most 2 entries"), "{stderr}");
    assert!(api.calls().is_empty(), "nothing is read or written: {:?}", api.calls());
    assert_eq!(api.items(STORE).len(), 1);

    // A store whose account allows fewer entries than --max-entries said: the API refuses
    // the whole update (exit 5, its reason shown), nothing is dropped to fit.
    let small = ConfigStoreApi::start(2).unwrap();
    small.add_store(STORE, &dir.path().join("small.json"), &[]).unwrap();
    let out = sync(&coordinator, &small, config_store_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the limit is 2"), "{}", text(&out));
    assert!(small.items(STORE).is_empty());

    // Writes accepted but not applied (someone else rewrites the store): the read-back
    // catches it, exit 5, naming the hosts.
    api.lose_writes(true);
    let out = sync(&coordinator, &api, config_store_api::TOKEN, &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("still differs after the repair for a.localhost, b.localhost, c.localhost, z.localhost"),
        "{stderr}"
    );
    api.lose_writes(false);

    // The Fastly API refuses the token: exit 5, the store untouched.
    let out = sync(&coordinator, &api, "not-the-token", &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{}", text(&out));

    // An unknown store: exit 5, named.
    let out = sync_store(&coordinator, &api, config_store_api::TOKEN, "nosuchstore", &[]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchstore"), "{}", text(&out));

    // Invalid input: no Fastly token, or a store id that is not one.
    let out = sync(&coordinator, &api, "", &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sync_store(&coordinator, &api, config_store_api::TOKEN, "a/b", &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store-id: \"a/b\""), "{}", text(&out));
}

//! The Fastly API client and `edgegen purge` against the harness's Fastly API stand-in
//! (`edgegen_tests::fastly_api`: the documented endpoints — purge one key, batch purge,
//! Config Store upsert and bulk update — recording what it receives, with failures and
//! unconfirmed keys on demand), and the outbox's purges through it on both stores.

use edgegen_tests::coordinator::get_json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use edgegen_coordinator::fastly::FastlyClient;
use edgegen_tests::fastly_api::{self, FastlyApi};
use serde_json::{Value, json};

const TOKEN: &str = fastly_api::TOKEN;

/// The stand-in with service `SVC1` known (no local PoP: purges are answered and recorded).
fn api() -> FastlyApi {
    let api = FastlyApi::start(500).unwrap();
    api.add_service("SVC1");
    api
}

fn client(api: &FastlyApi, deadline: Duration) -> FastlyClient {
    FastlyClient::new(&api.url(), TOKEN, deadline).unwrap()
}

/// The outbox's CDN: purges of service `SVC1` through `api`, each call within `deadline`.
fn purging_cdn(api: &FastlyApi, deadline: Duration, soft: bool) -> edgegen_coordinator::server::Cdn {
    edgegen_coordinator::server::Cdn { client: client(api, deadline), service: Some("SVC1".into()), soft, hosts: None }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t/acme/k/item-{i}")).collect()
}

#[tokio::test]
async fn batches_of_256_with_soft_purge_and_results_per_key() {
    let api = api();
    let report = client(&api, Duration::from_secs(10)).purge("SVC1", &keys(300), true).await;
    assert_eq!(report.failed().count(), 0, "{report:?}");
    assert_eq!(report.results.len(), 300);
    assert!(report.results.iter().all(|r| r.purge_id.is_some()), "a purge id per key");
    let seen = api.requests();
    assert_eq!(seen.len(), 2, "300 keys take two calls");
    for (call, expected) in seen.iter().zip([256, 44]) {
        assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/service/SVC1/purge"));
        assert_eq!(call.headers["fastly-soft-purge"], "1");
        assert_eq!(call.headers["content-type"], "application/json");
        let body: Value = serde_json::from_str(&call.body).unwrap();
        assert_eq!(body["surrogate_keys"].as_array().unwrap().len(), expected);
    }
}

#[tokio::test]
async fn one_key_uses_the_single_key_endpoint_without_soft_header() {
    let api = api();
    let report = client(&api, Duration::from_secs(10)).purge("SVC1", &["t/acme/g/41".to_owned()], false).await;
    assert!(report.results[0].purge_id.is_some(), "{report:?}");
    let seen = api.requests();
    assert_eq!(seen[0].path, "/service/SVC1/purge/t%2Facme%2Fg%2F41", "the key travels percent-encoded");
    assert_eq!(api.calls(), ["POST /service/SVC1/purge/t/acme/g/41"], "and arrives decoded");
    assert!(!seen[0].headers.contains_key("fastly-soft-purge"));
}

#[tokio::test]
async fn retries_honour_retry_after_and_5xx() {
    let api = api();
    api.fail_next([429, 503]);
    let started = Instant::now();
    let report = client(&api, Duration::from_secs(20)).purge("SVC1", &keys(3), false).await;
    assert_eq!(report.failed().count(), 0, "{report:?}");
    assert_eq!(report.calls, 3, "429, 503, then success");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
}

#[tokio::test]
async fn partial_failures_are_reported_per_key_and_deadlines_hold() {
    let api = api();
    api.leave_unconfirmed(&["t/acme/k/item-1"]);
    let report = client(&api, Duration::from_secs(10)).purge("SVC1", &keys(3), false).await;
    let failed: Vec<&str> = report.failed().map(|r| r.key.as_str()).collect();
    assert_eq!(failed, ["t/acme/k/item-1"]);
    assert!(report.results[1].error.as_deref().unwrap().contains("did not confirm"));

    let api = self::api();
    api.fail_next([500; 100]);
    let started = Instant::now();
    let report = client(&api, Duration::from_millis(800)).purge("SVC1", &keys(2), false).await;
    assert!(started.elapsed() < Duration::from_secs(3), "the deadline bounds the retries");
    assert_eq!(report.failed().count(), 2);
    for r in &report.results {
        let e = r.error.as_deref().unwrap();
        assert!(e.contains("HTTP 500") && e.contains("deadline"), "{e}");
        assert!(!e.contains(TOKEN), "the token never appears in errors");
    }
}

#[tokio::test]
async fn config_store_upsert_and_bulk_update() {
    let api = api();
    let dir = tempfile::tempdir().unwrap();
    api.add_store("store1", &dir.path().join("store1.json"), &[]).unwrap();
    let c = client(&api, Duration::from_secs(10));
    c.config_store_upsert("store1", "manifest/acme", "{\"manifest\":1}").await.unwrap();
    c.config_store_bulk_upsert("store1", &[("a".into(), "1".into()), ("b".into(), "2".into())]).await.unwrap();
    let seen = api.requests();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("PUT", "/resources/stores/config/store1/item/manifest%2Facme")
    );
    assert_eq!(seen[0].headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(seen[0].body, "item_value=%7B%22manifest%22%3A1%7D");
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("PATCH", "/resources/stores/config/store1/items"));
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["items"][1], json!({"op": "upsert", "item_key": "b", "item_value": "2"}));
    let items = api.items("store1");
    let expected = [("a", "1"), ("b", "2"), ("manifest/acme", "{\"manifest\":1}")];
    assert_eq!(items, expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
}

#[tokio::test]
async fn edgegen_purge_cli() {
    let api = api();
    api.leave_unconfirmed(&["t/acme/k/b"]);
    let url = api.url();
    let run = |args: Vec<&'static str>, token: Option<&'static str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edgegen"));
        cmd.args(args).env("FASTLY_API_URL", &url).env_remove("FASTLY_API_TOKEN");
        if let Some(t) = token {
            cmd.env("FASTLY_API_TOKEN", t);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let out = run(vec!["purge", "--service", "SVC1", "--soft", "t/acme/g/3", "t/acme/k/a"], Some(TOKEN)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(vec!["purge", "--service", "SVC1", "t/acme/k/a", "t/acme/k/b"], Some(TOKEN)).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED  t/acme/k/b"), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !String::from_utf8_lossy(&out.stderr).contains(TOKEN));
    assert_eq!(run(vec!["purge", "--service", "SVC1", "t/a"], None).await.unwrap().status.code(), Some(2));
    assert_eq!(run(vec!["purge", "--service", "SVC1", "bad key"], Some(TOKEN)).await.unwrap().status.code(), Some(2));
}

/// The purge step of release `id` once it is no longer `pending` (the outbox worker
/// delivers it after the commit), within `within`.
async fn purge_step_settled(router: &Router, id: &str, within: Duration) -> Value {
    purge_step_when(router, id, within, |step| step["status"] != "pending").await
}

/// The purge step of release `id` once `done` holds for it (or after `within`).
async fn purge_step_when(router: &Router, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    use crate::support::{ADMIN, send};
    let started = Instant::now();
    loop {
        let r = send(router, "GET", &format!("/v1/releases/{id}"), Some(ADMIN), None).await.body;
        let step = r["execution_log"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "purge CDN surrogate keys")
            .unwrap()
            .clone();
        if done(&step) || started.elapsed() > within {
            return step;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The CDN API answers errors (HTTP 503) for as long as one delivery attempt lasts: the
/// attempt fails, the execution log says so and that the outbox retries, the release
/// stands; once the API answers again the outbox's next attempt purges every key and the
/// log records that final outcome.
#[tokio::test]
async fn a_purge_the_api_refuses_is_retried_by_the_outbox_and_logged() {
    use crate::support::{ADMIN, add_tenant, release_body, router_with_cdn, send};
    let api = api();
    api.fail_next([503; 10_000]);
    let dir = tempfile::tempdir().unwrap();
    let cdn = purging_cdn(&api, Duration::from_millis(300), false);
    let router = router_with_cdn(dir.path(), None, None, Some(std::sync::Arc::new(cdn)));
    add_tenant(&router, "a").await;
    let a = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"]))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let failed = purge_step_when(&router, "rel-1", Duration::from_secs(5), |step| {
        step["detail"].as_str().unwrap().starts_with("attempt 1:")
    })
    .await;
    assert_eq!(failed["status"], "pending", "{failed}");
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.contains("HTTP 503") && detail.contains("retrying in"), "{failed}");
    let refused = api.requests().len();
    assert!(refused >= 1, "the API was called");
    let tenant = send(&router, "GET", "/v1/tenants/a", Some(ADMIN), None).await.body;
    assert_eq!(tenant["generation"], 2, "the release stands while its purge is retried");

    api.fail_next([]);
    let step = purge_step_settled(&router, "rel-1", Duration::from_secs(10)).await;
    assert_eq!(step["status"], "ok", "{step}");
    let detail = step["detail"].as_str().unwrap();
    assert!(detail.contains("2 surrogate key(s) purged") && detail.contains("attempt"), "{step}");
    assert!(!detail.starts_with("attempt 1:"), "the final outcome is a later attempt's: {step}");
    let seen = api.requests();
    assert!(seen.len() > refused, "purged after the refusals");
    let body: Value = serde_json::from_str(&seen.last().unwrap().body).unwrap();
    assert_eq!(body["surrogate_keys"], json!(["t/a/g/1", "edgegen-manifest/a"]));
}

/// A release purges its plan's surrogate keys (retired generation, manifest) through the
/// CDN from the outbox after the commit, and the execution log carries the real outcome;
/// a rollback purges too. On PostgreSQL three replicas run an outbox worker each over the
/// one outbox: every effect is delivered once, by one of them, and logged.
#[tokio::test]
async fn releases_and_rollbacks_purge_their_keys_and_log_the_outcome_on_sqlite() {
    releases_and_rollbacks_purge_their_keys_and_log_the_outcome(crate::support::Backend::Sqlite).await;
}

#[tokio::test]
async fn releases_and_rollbacks_purge_their_keys_once_across_three_replicas_on_postgres() {
    releases_and_rollbacks_purge_their_keys_and_log_the_outcome(crate::support::Backend::Postgres).await;
}

async fn releases_and_rollbacks_purge_their_keys_and_log_the_outcome(backend: crate::support::Backend) {
    use crate::support::{ADMIN, add_tenant, release_body, send, test_app_with_cdn};
    let api = api();
    let cdn = purging_cdn(&api, Duration::from_secs(10), true);
    let app = test_app_with_cdn(backend, None, std::sync::Arc::new(cdn));
    let router = app.router.clone();
    for t in ["a", "b"] {
        add_tenant(&router, t).await;
    }
    let a = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a", "b"]))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let step = purge_step_settled(&router, "rel-1", Duration::from_secs(5)).await;
    assert_eq!(step["status"], "ok", "{step}");
    assert!(
        step["detail"].as_str().unwrap().starts_with("4 surrogate key(s) purged (soft) from service SVC1"),
        "{step}"
    );
    let seen = api.requests();
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["surrogate_keys"], json!(["t/a/g/1", "edgegen-manifest/a", "t/b/g/1", "edgegen-manifest/b"]));
    assert_eq!(seen[0].headers["fastly-soft-purge"], "1");

    // A rollback purges the generation it retires and the manifests.
    let rb = send(&router, "POST", "/v1/releases/rel-1/rollback", Some(ADMIN), None).await;
    assert_eq!(rb.status, StatusCode::CREATED, "{}", rb.text);
    let step = purge_step_settled(&router, "rel-2", Duration::from_secs(5)).await;
    assert_eq!(step["status"], "ok", "{step}");
    let body: Value = serde_json::from_str(&api.requests()[1].body).unwrap();
    assert_eq!(body["surrogate_keys"], json!(["t/a/g/2", "edgegen-manifest/a", "t/b/g/2", "edgegen-manifest/b"]));

    // A key the API does not confirm is reported in the log and retried with backoff; the
    // release stands, and once the API confirms it the step says so.
    api.leave_unconfirmed(&["t/a/g/3"]);
    let a = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"]))).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let retrying = loop {
        let r = send(&router, "GET", &format!("/v1/releases/{id}"), Some(ADMIN), None).await.body;
        let step = r["execution_log"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "purge CDN surrogate keys")
            .unwrap()
            .clone();
        if step["detail"].as_str().unwrap().starts_with("attempt 1:") || started.elapsed() > Duration::from_secs(5) {
            break step;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(retrying["status"], "pending", "{retrying}");
    assert!(retrying["detail"].as_str().unwrap().contains("t/a/g/3 (the API did not confirm this key)"), "{retrying}");
    assert!(retrying["detail"].as_str().unwrap().contains("retrying in 100 ms"), "{retrying}");
    api.leave_unconfirmed(&[]);
    let step = purge_step_settled(&router, &id, Duration::from_secs(5)).await;
    assert_eq!(step["status"], "ok", "{step}");
    assert!(step["detail"].as_str().unwrap().contains("attempt 2"), "{step}");
    // Every replica sees the outcome its worker or another one logged.
    for replica in &app.replicas {
        assert_eq!(purge_step_settled(replica, &id, Duration::from_secs(1)).await["status"], "ok");
    }
    // Release, rollback, and the third release's two attempts: no effect delivered twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.requests().len(), 4, "{:?}", api.requests().iter().map(|s| s.body.clone()).collect::<Vec<_>>());
}

/// An automatic rollback (the report policy firing) purges what it retires like a manual
/// one, on either store.
#[tokio::test]
async fn an_automatic_rollback_purges_its_keys_on_sqlite() {
    an_automatic_rollback_purges_its_keys(crate::support::Backend::Sqlite).await;
}

#[tokio::test]
async fn an_automatic_rollback_purges_its_keys_on_postgres() {
    an_automatic_rollback_purges_its_keys(crate::support::Backend::Postgres).await;
}

async fn an_automatic_rollback_purges_its_keys(backend: crate::support::Backend) {
    use crate::support::{ADMIN, EDGE, add_tenant, mismatch_report, release_body, send, test_app_with_cdn};
    let api = api();
    let cdn = purging_cdn(&api, Duration::from_secs(10), false);
    let policy = edgegen_coordinator::config::AutoRollback {
        reports: 2,
        window: Duration::from_secs(60),
        min_pops: 2,
        min_paths: 1,
    };
    let app = test_app_with_cdn(backend, Some(policy), std::sync::Arc::new(cdn));
    add_tenant(&app.router, "a").await;
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"]))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let mut rollback = Value::Null;
    for pop in ["p1", "p2"] {
        let r = send(&app.router, "POST", "/v1/edge/reports", Some(EDGE), Some(mismatch_report(pop))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        rollback = r.body["auto_rollback"].clone();
    }
    let rollback = rollback.as_str().expect("the policy fired").to_owned();
    let step = purge_step_settled(&app.router, &rollback, Duration::from_secs(5)).await;
    assert_eq!(step["status"], "ok", "{step}");
    let bodies: Vec<Value> = api.requests().iter().map(|s| serde_json::from_str(&s.body).unwrap()).collect();
    assert!(
        bodies.iter().any(|b| b["surrogate_keys"] == json!(["t/a/g/2", "edgegen-manifest/a"])),
        "the rollback purged the generation it retires and the manifest: {bodies:?}"
    );
}

/// The purge is in the outbox of the release's transaction: SIGKILL the coordinator right
/// after it acknowledged the commit (before the CDN confirmed the purge), restart it on the
/// same data directory, and the new process delivers the purge and logs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_commit_then_restart_delivers_the_purge() {
    use edgegen_tests::process::{ChildGuard, free_port};

    use crate::support::{ADMIN, EDGE, MANIFEST_KEY, contract};
    let api = api();
    let fastly = api.url();
    let dir = tempfile::tempdir().unwrap();
    let start = |log: &str| {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edgegen"));
        cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir.path())
            .env("EDGEGEN_ADMIN_TOKEN", ADMIN)
            .env("EDGEGEN_EDGE_TOKEN", EDGE)
            .env("EDGEGEN_MANIFEST_KEY", MANIFEST_KEY)
            .env("FASTLY_SERVICE_ID", "SVC1")
            .env("FASTLY_API_TOKEN", TOKEN)
            .env("FASTLY_API_URL", &fastly)
            .env("RUST_LOG", "warn");
        let mut child = ChildGuard::spawn("edgegen serve", cmd, &dir.path().join(log)).unwrap();
        child.wait_for_port(addr, Duration::from_secs(30)).unwrap();
        (child, format!("http://{addr}"))
    };
    let http = reqwest::Client::new();
    let (server, base) = start("first.log");
    let t = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.0.0", "contract_hash": contract(1)});
    let r = http.post(format!("{base}/v1/tenants")).bearer_auth(ADMIN).json(&t).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // The CDN accepts the calls but confirms none of these keys: the purge stays undelivered.
    api.leave_unconfirmed(&["t/acme/g/1", "edgegen-manifest/acme"]);
    let body = json!({"tenants": ["acme"], "schema_version": "1.0.1", "contract_hash": contract(2)});
    let r = http.post(format!("{base}/v1/releases")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    drop(server); // SIGKILL the PID we started, right after the commit was acknowledged
    let before = api.requests().len();
    api.leave_unconfirmed(&[]);

    let (_server, base) = start("second.log");
    let started = Instant::now();
    let step = loop {
        let r: Value = get_json(&http, format!("{base}/v1/releases/rel-1"), ADMIN).await;
        let step = r["execution_log"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "purge CDN surrogate keys")
            .unwrap()
            .clone();
        if step["status"] == "ok" || started.elapsed() > Duration::from_secs(10) {
            break step;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(step["status"], "ok", "{step}");
    assert!(
        step["detail"].as_str().unwrap().starts_with("2 surrogate key(s) purged (hard) from service SVC1"),
        "{step}"
    );
    let last = api.requests().into_iter().rev().find(|s| s.path == "/service/SVC1/purge").unwrap();
    let keys: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(keys["surrogate_keys"], json!(["t/acme/g/1", "edgegen-manifest/acme"]));
    assert!(api.requests().len() > before, "the restarted process made the call");
}

/// An origin surrogate key the plan cannot form refuses the release (422, naming the
/// route, the key and the tenant) before anything moves, and nothing reaches the
/// CDN: the real binary, configured with such a route and with the Fastly API stand-in.
#[tokio::test]
async fn an_invalid_origin_surrogate_key_refuses_the_release_and_reaches_no_cdn() {
    use edgegen_tests::coordinator::Coordinator;
    use edgegen_tests::process::free_port;
    use reqwest::Method;
    let api = api();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgegen.toml");
    std::fs::write(
        &config,
        "[analysis]\nglobal_tables = [\"users\"]\n[[analysis.routes]]\nroute = \"GET /v1/users/{id}\"\nsurrogate_key = \"users by id\"\ntables = [\"users\"]\n",
    )
    .unwrap();
    let (config, url, data) = (config.to_string_lossy().into_owned(), api.url(), dir.path().join("data"));
    let coordinator = tokio::task::spawn_blocking(move || {
        let env = [
            ("EDGEGEN_CONFIG", config.as_str()),
            ("FASTLY_API_URL", url.as_str()),
            ("FASTLY_API_TOKEN", TOKEN),
            ("FASTLY_SERVICE_ID", "SVC1"),
        ];
        Coordinator::start_on(&data, ([127, 0, 0, 1], free_port().unwrap()).into(), &env)
    })
    .await
    .unwrap()
    .unwrap();
    let tenant = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.0.0",
        "contract_hash": crate::support::contract(1)});
    coordinator.admin(Method::POST, "/v1/tenants", Some(tenant)).await.unwrap();
    let release = json!({"tenants": ["acme"], "schema_version": "1.1.0", "contract_hash": crate::support::contract(2),
    "analysis": {
        "schema_from": "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));",
        "schema_to": "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, ekv integer NOT NULL, PRIMARY KEY (tenant_id, id));"
    }});
    let err = coordinator.admin(Method::POST, "/v1/releases", Some(release)).await.unwrap_err().to_string();
    assert!(err.contains("HTTP 422") && !err.contains("blocked by analysis"), "refused for its key alone: {err}");
    assert!(err.contains("GET /v1/users/{id}") && err.contains("users by id") && err.contains("acme"), "{err}");
    let acme = coordinator.admin(Method::GET, "/v1/tenants/acme", None).await.unwrap();
    assert_eq!(acme["generation"], 1, "nothing moved: {acme}");
    assert_eq!(coordinator.admin(Method::GET, "/v1/releases", None).await.unwrap()["releases"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await; // an outbox worker would have sent by now
    assert!(api.requests().is_empty(), "{:?}", api.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>());
}

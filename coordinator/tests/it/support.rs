//! Shared fixtures: an app over a fresh SQLite data dir or a fresh PostgreSQL database (three
//! replicas on it), request helpers, constants.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use edgegen_coordinator::config::{AutoRollback, LeasePolicy, ManifestAges};
use edgegen_coordinator::metrics::Metrics;
use edgegen_coordinator::server::{AppParts, AppState, RouterSettings, app};
use edgegen_coordinator::store::postgres::PostgresStore;
use edgegen_coordinator::store::sqlite::SqliteStore;
use edgegen_coordinator::store::{Store, StoreSettings};
use edgegen_shared::SecretKey;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const ADMIN: &str = "admin-token-0123456789";
pub const EDGE: &str = "edge-token-0123456789";
pub const MANIFEST_KEY: &str = "manifest-key-0123456789abcdef0123456789";

pub fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on a throwaway PostgreSQL cluster, shared by three replicas.
    Postgres,
}

pub struct TestApp {
    /// The first (or only) replica.
    pub router: Router,
    /// Every replica on the same store (one for SQLite, three for PostgreSQL).
    pub replicas: Vec<Router>,
    pub _dir: tempfile::TempDir,
    pub _cluster: Option<Arc<edgegen_tests::postgres::TempCluster>>,
    /// The PostgreSQL database's URL (`None` on SQLite: the file is in `_dir`).
    pub database_url: Option<String>,
}

impl TestApp {
    /// Runs `statement` on the store's database behind the coordinator's back (another
    /// writer on the same database).
    pub fn sql(&self, statement: &str) {
        let statement = statement.to_owned();
        match &self.database_url {
            None => {
                let conn = rusqlite::Connection::open(self._dir.path().join("edgegen.db")).unwrap();
                conn.execute_batch(&statement).unwrap();
            }
            Some(_) => self.on_pg(move |c| c.batch_execute(&statement).unwrap()),
        }
    }

    /// Runs one query on the store's PostgreSQL database behind the coordinator's back and
    /// returns its rows (panics on SQLite).
    pub fn pg_query(&self, statement: &str) -> Vec<postgres::Row> {
        let statement = statement.to_owned();
        self.on_pg(move |c| c.query(&statement, &[]).unwrap())
    }

    /// `f` on a connection of its own to the PostgreSQL database.
    fn on_pg<T: Send + 'static>(&self, f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static) -> T {
        let url = self.database_url.clone().expect("a PostgreSQL app");
        // The synchronous client must not run inside the test's runtime.
        std::thread::spawn(move || f(&mut postgres::Client::connect(&url, postgres::NoTls).unwrap())).join().unwrap()
    }
}

/// A router over a fresh SQLite store (for tests of the HTTP surface, which is the same on
/// either store).
pub fn test_app() -> TestApp {
    test_app_on(Backend::Sqlite)
}

pub fn test_app_on(backend: Backend) -> TestApp {
    test_app_with_on(backend, None, None)
}

pub fn test_app_with_on(
    backend: Backend,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
) -> TestApp {
    test_app_leased(backend, auto_rollback, convergence_deadline_ms, default_leases())
}

/// The manifest ages of the test apps unless a test chooses its own.
pub fn default_leases() -> LeasePolicy {
    LeasePolicy::global(ManifestAges { max_age_ms: 1000, max_stale_ms: 300_000 })
}

/// An app whose manifests carry `leases` (in the answers and in the convergence report).
pub fn test_app_leased(
    backend: Backend,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
    leases: LeasePolicy,
) -> TestApp {
    test_app_full(backend, auto_rollback, convergence_deadline_ms, leases, None)
}

/// An app purging through `cdn`: every replica runs its own outbox worker (on PostgreSQL
/// the three workers share one outbox and claim effects with `SKIP LOCKED`).
pub fn test_app_with_cdn(
    backend: Backend,
    auto_rollback: Option<AutoRollback>,
    cdn: Arc<edgegen_coordinator::server::Cdn>,
) -> TestApp {
    test_app_full(backend, auto_rollback, None, default_leases(), Some(cdn))
}

fn test_app_full(
    backend: Backend,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
    leases: LeasePolicy,
    cdn: Option<Arc<edgegen_coordinator::server::Cdn>>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let router = router_shared(
                dir.path(),
                auto_rollback,
                convergence_deadline_ms,
                cdn,
                Default::default(),
                Default::default(),
                leases,
            );
            TestApp { router: router.clone(), replicas: vec![router], _dir: dir, _cluster: None, database_url: None }
        }
        Backend::Postgres => {
            let (cluster, url) = fresh_database();
            let database_url = Some(url.clone());
            let replicas: Vec<Router> = (0..3)
                .map(|_| {
                    let url = url.clone();
                    let leases = leases.clone();
                    let for_router = leases.clone();
                    let service = cdn.as_ref().and_then(|c| c.service.clone());
                    let wake = Arc::new(tokio::sync::Notify::new());
                    let for_settings = Arc::clone(&wake);
                    // The synchronous client must not start inside the test's runtime.
                    let metrics = Arc::new(Metrics::default());
                    let for_store = Arc::clone(&metrics);
                    let store: Arc<dyn Store> = Arc::new(
                        std::thread::spawn(move || {
                            let settings = settings(service, Some(for_settings), leases);
                            PostgresStore::open(&url, settings, for_store)
                        })
                        .join()
                        .unwrap()
                        .unwrap(),
                    );
                    if let Some(cdn) = &cdn {
                        spawn_worker(&store, cdn, &metrics, wake);
                    }
                    let parts =
                        (Default::default(), Default::default(), for_router, auto_rollback, convergence_deadline_ms);
                    router_over(store, metrics, cdn.clone(), parts)
                })
                .collect();
            TestApp { router: replicas[0].clone(), replicas, _dir: dir, _cluster: Some(cluster), database_url }
        }
    }
}

/// Runs the outbox worker of `store` until the test's runtime ends.
fn spawn_worker(
    store: &Arc<dyn Store>,
    cdn: &Arc<edgegen_coordinator::server::Cdn>,
    metrics: &Arc<Metrics>,
    wake: Arc<tokio::sync::Notify>,
) {
    tokio::spawn(edgegen_coordinator::outbox::run_worker(
        Arc::clone(store),
        Arc::clone(cdn),
        Arc::clone(metrics),
        wake,
        std::future::pending(),
    ));
}

/// The cluster the PostgreSQL tests share while any of them runs (stopped when the last
/// one drops it, so no server outlives the tests).
static CLUSTER: Mutex<Weak<edgegen_tests::postgres::TempCluster>> = Mutex::new(Weak::new());
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database on the shared cluster: its URL.
pub fn fresh_database() -> (Arc<edgegen_tests::postgres::TempCluster>, String) {
    let cluster = {
        let mut slot = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
        match slot.upgrade() {
            Some(c) => c,
            None => {
                let c = Arc::new(
                    std::thread::spawn(edgegen_tests::postgres::TempCluster::start)
                        .join()
                        .unwrap()
                        .expect("a PostgreSQL cluster (server binaries from `cargo xtask bootstrap`)"),
                );
                *slot = Arc::downgrade(&c);
                c
            }
        }
    };
    let name = format!("coordinator_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
    let admin = cluster.url("postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        postgres::Client::connect(&admin, postgres::NoTls).unwrap().batch_execute(&create).unwrap();
    })
    .join()
    .unwrap();
    let url = cluster.url(&name);
    (cluster, url)
}

fn settings(
    cdn_service: Option<String>,
    outbox_wake: Option<Arc<tokio::sync::Notify>>,
    leases: LeasePolicy,
) -> StoreSettings {
    StoreSettings {
        manifest_max_age_ms: 1000,
        leases,
        pop_live_window_ms: 30_000,
        cdn_service,
        hosts_max_entries: None,
        outbox_wake,
    }
}

pub fn router_with_cdn(
    path: &std::path::Path,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
    cdn: Option<Arc<edgegen_coordinator::server::Cdn>>,
) -> Router {
    router_full(path, auto_rollback, convergence_deadline_ms, cdn, Default::default())
}

pub fn router_full(
    path: &std::path::Path,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
    cdn: Option<Arc<edgegen_coordinator::server::Cdn>>,
    shards: edgegen_coordinator::shards::ShardMap,
) -> Router {
    router_shared(path, auto_rollback, convergence_deadline_ms, cdn, shards, Default::default(), default_leases())
}

pub fn router_shared(
    path: &std::path::Path,
    auto_rollback: Option<AutoRollback>,
    convergence_deadline_ms: Option<u64>,
    cdn: Option<Arc<edgegen_coordinator::server::Cdn>>,
    shards: edgegen_coordinator::shards::ShardMap,
    shard_rls: edgegen_coordinator::shards::SharedRls,
    leases: LeasePolicy,
) -> Router {
    let wake = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            path,
            settings(cdn.as_ref().and_then(|c| c.service.clone()), Some(Arc::clone(&wake)), leases.clone()),
            Arc::clone(&metrics),
        )
        .unwrap(),
    );
    if let Some(cdn) = &cdn {
        spawn_worker(&store, cdn, &metrics, wake);
    }
    router_over(store, metrics, cdn, (shards, shard_rls, leases, auto_rollback, convergence_deadline_ms))
}

/// What a replica's router is configured with besides its store: shards, their RLS
/// settings, manifest ages, the report policy and the convergence deadline (whose pass the
/// replica runs until the test's runtime ends).
type Policies = (
    edgegen_coordinator::shards::ShardMap,
    edgegen_coordinator::shards::SharedRls,
    LeasePolicy,
    Option<AutoRollback>,
    Option<u64>,
);

/// The router of one replica over `store`.
pub fn router_over(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    cdn: Option<Arc<edgegen_coordinator::server::Cdn>>,
    (shards, shard_rls, leases, auto_rollback, convergence_deadline_ms): Policies,
) -> Router {
    let state = AppState::new(AppParts {
        store,
        metrics,
        manifest_key: SecretKey::new("test", MANIFEST_KEY).unwrap(),
        leases: Arc::new(leases),
        analysis: Arc::new(Default::default()),
        cdn,
        shards: Arc::new(shards),
        shard_rls: Arc::new(shard_rls),
        fetches: Arc::default(),
        auto_rollback,
    });
    if let Some(deadline) = convergence_deadline_ms {
        tokio::spawn(state.engine().clone().run_deadline(deadline, std::future::pending()));
    }
    app(
        state,
        &RouterSettings {
            admin_token: ADMIN.into(),
            edge_token: EDGE.into(),
            request_timeout: Duration::from_secs(10),
            body_limit_bytes: 64 * 1024,
        },
    )
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Sends one request through the router.
pub async fn send(router: &Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
    send_with(router, method, path, token, body, &[]).await
}

pub async fn send_with(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some(body) => req.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

pub async fn add_tenant(router: &Router, id: &str) {
    let body =
        json!({"id": id, "hosts": [format!("{id}.test")], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let a = send(router, "POST", "/v1/tenants", Some(ADMIN), Some(body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

/// A PoP's contract-mismatch report against generation 2 of tenant `a` (released by
/// [`release_body`]: the origin still answers 1.8.2).
pub fn mismatch_report(pop: &str) -> Value {
    json!({"pop": pop, "tenant": "a", "kind": "contract_mismatch", "generation": 2, "path": "/v1/users/1",
        "expected_schema": "1.8.3", "expected_contract": contract(2), "observed_schema": "1.8.2", "observed_at": 1})
}

pub fn release_body(tenants: &[&str]) -> Value {
    json!({"tenants": tenants, "schema_version": "1.8.3", "contract_hash": contract(2)})
}

pub async fn release(router: &Router, tenants: &[&str]) -> Value {
    let a = send(router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(tenants))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.body
}

/// What a PoP does: fetches the tenant's manifest naming itself, then acknowledges.
pub async fn ack(router: &Router, pop: &str, tenant: &str, generation: u64) -> Answer {
    fetch_manifest(router, pop, tenant).await;
    raw_ack(router, pop, tenant, generation).await
}

/// Fetches `tenant`'s manifest as PoP `pop` (the `edgegen-pop` header).
pub async fn fetch_manifest(router: &Router, pop: &str, tenant: &str) -> Answer {
    send_with(router, "GET", &format!("/v1/edge/manifests/{tenant}"), Some(EDGE), None, &[("edgegen-pop", pop)]).await
}

/// An acknowledgement alone, with no manifest fetch before it.
pub async fn raw_ack(router: &Router, pop: &str, tenant: &str, generation: u64) -> Answer {
    let body = json!({"pop": pop, "tenant": tenant, "generation": generation, "observed_at": 1});
    send(router, "POST", "/v1/edge/acks", Some(EDGE), Some(body)).await
}

pub async fn generation(router: &Router, tenant: &str) -> u64 {
    send(router, "GET", &format!("/v1/tenants/{tenant}"), Some(ADMIN), None).await.body["generation"].as_u64().unwrap()
}

//! The host-map sync as an outbox effect, on both stores (a SQLite file, a PostgreSQL
//! database): a registration, a change of a tenant's hosts and a removal each write it in
//! their own transaction, and a refused or empty change writes nothing; a worker pass delivers it to the local Config Store API stand-in,
//! schedules another attempt when the API loses the write, and gives up on a host map the
//! Config Store cannot hold. Each outcome is counted in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use edgegen_coordinator::domain::Refusal;
use edgegen_coordinator::fastly::FastlyClient;
use edgegen_coordinator::metrics::Metrics;
use edgegen_coordinator::outbox::{Cdn, HostsStore, deliver_due};
use edgegen_coordinator::store::postgres::PostgresStore;
use edgegen_coordinator::store::sqlite::SqliteStore;
use edgegen_coordinator::store::{Removal, Store, StoreError, StoreSettings};
use edgegen_shared::TenantId;
use edgegen_tests::fastly_api::{self, FastlyApi};
use serde_json::json;

use crate::support::{contract, fresh_database};

const STORE: &str = "hostsStore01";

fn settings(max_entries: usize) -> StoreSettings {
    StoreSettings {
        manifest_max_age_ms: 1000,
        leases: edgegen_coordinator::config::LeasePolicy::global(edgegen_coordinator::config::ManifestAges {
            max_age_ms: 1000,
            max_stale_ms: 300_000,
        }),
        pop_live_window_ms: 30_000,
        cdn_service: None,
        hosts_max_entries: Some(max_entries),
        outbox_wake: None,
    }
}

fn worker_cdn(api: &FastlyApi, max_entries: usize) -> Cdn {
    Cdn {
        client: FastlyClient::new(&api.url(), fastly_api::TOKEN, Duration::from_secs(10)).unwrap(),
        service: None,
        soft: false,
        hosts: Some(HostsStore { store_id: STORE.into(), max_entries }),
    }
}

async fn register(store: &dyn Store, id: &str, hosts: &[&str]) -> Result<(), StoreError> {
    let tenant = json!({"id": id, "hosts": hosts, "schema_version": "1.0.0", "contract_hash": contract(1)});
    store.register_tenant(serde_json::from_value(tenant).unwrap()).await.map(drop)
}

fn syncs(metrics: &Metrics, outcome: &str) -> u64 {
    let text = metrics.render();
    let prefix = format!("edgegen_host_syncs_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap()
}

fn items(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(h, t)| ((*h).to_owned(), (*t).to_owned())).collect()
}

/// The scenario, on a store opened with a limit of 4 host entries.
async fn registrations_sync_the_host_map(store: Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let api = FastlyApi::start(500).unwrap();
    api.add_store(STORE, &dir.path().join("hosts.json"), &[]).unwrap();
    let cdn = worker_cdn(&api, 4);
    let metrics = Metrics::default();

    // Registered: one effect, delivered once.
    register(&*store, "acme", &["a.test", "www.a.test"]).await.unwrap();
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 1);
    assert_eq!(api.items(STORE), items(&[("a.test", "acme"), ("www.a.test", "acme")]));
    assert_eq!(syncs(&metrics, "synced"), 1);
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 0, "delivered effects are done");

    // Over the limit: refused, and neither the tenant nor an effect is written.
    let err = register(&*store, "big", &["b1.test", "b2.test", "b3.test"]).await.unwrap_err();
    let StoreError::Refused(Refusal::Unprocessable(message)) = err else { panic!("{err:?}") };
    assert!(message.contains("5 entries; it holds at most 4"), "{message}");
    assert!(store.tenant(TenantId::new("big").unwrap()).await.unwrap().is_none());
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 0, "a refused registration writes no effect");

    // The API loses the write: the read-back catches it, another attempt is scheduled
    // after the backoff and delivers.
    api.lose_writes(true);
    register(&*store, "beta", &["beta.test"]).await.unwrap();
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 1);
    assert_eq!(syncs(&metrics, "retrying"), 1);
    assert!(!api.items(STORE).contains_key("beta.test"));
    api.lose_writes(false);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 1);
    assert_eq!(api.items(STORE), items(&[("a.test", "acme"), ("beta.test", "beta"), ("www.a.test", "acme")]));
    assert_eq!(syncs(&metrics, "synced"), 2);

    // A host map the Config Store cannot hold (the worker's limit lower than the store's):
    // final at once, nothing written, no further attempt.
    register(&*store, "gamma", &["gamma.test"]).await.unwrap();
    assert_eq!(deliver_due(&*store, &worker_cdn(&api, 3), &metrics).await.unwrap(), 1);
    assert_eq!(syncs(&metrics, "failed"), 1);
    assert!(!api.items(STORE).contains_key("gamma.test"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 0, "given up");
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).unwrap()
}

fn hosts(list: &[&str]) -> Vec<String> {
    list.iter().map(|h| (*h).to_owned()).collect()
}

/// Changes of hosts and a removal, on a store opened with a limit of 4 host entries.
async fn host_changes_and_removals_sync_the_host_map(store: Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let api = FastlyApi::start(500).unwrap();
    api.add_store(STORE, &dir.path().join("hosts.json"), &[]).unwrap();
    let cdn = worker_cdn(&api, 4);
    let metrics = Metrics::default();
    register(&*store, "acme", &["a.test", "shop.test"]).await.unwrap();
    register(&*store, "beta", &["b.test"]).await.unwrap();
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 2);

    // A host moved from acme to beta: two changes, each with its effect.
    store.set_tenant_hosts(tenant("acme"), hosts(&["a.test"])).await.unwrap();
    store.set_tenant_hosts(tenant("beta"), hosts(&["b.test", "shop.test"])).await.unwrap();
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 2);
    assert_eq!(api.items(STORE), items(&[("a.test", "acme"), ("b.test", "beta"), ("shop.test", "beta")]));

    // The same list again, a taken host, the entry limit: no change, no effect.
    store.set_tenant_hosts(tenant("beta"), hosts(&["b.test", "shop.test"])).await.unwrap();
    let err = store.set_tenant_hosts(tenant("acme"), hosts(&["a.test", "b.test"])).await.unwrap_err();
    let StoreError::Refused(Refusal::Conflict(message)) = err else { panic!("{err:?}") };
    assert_eq!(message, "hosts[1]: b.test already belongs to tenant beta");
    let err = store.set_tenant_hosts(tenant("acme"), hosts(&["a.test", "x.test", "y.test"])).await.unwrap_err();
    let StoreError::Refused(Refusal::Unprocessable(message)) = err else { panic!("{err:?}") };
    assert!(message.contains("5 entries; it holds at most 4"), "{message}");
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 0, "nothing changed, nothing to sync");

    // Removed: its hosts leave the store; a repeat changes nothing.
    assert_eq!(store.remove_tenant(tenant("acme")).await.unwrap(), Removal::Removed);
    assert_eq!(store.remove_tenant(tenant("acme")).await.unwrap(), Removal::AlreadyRemoved);
    assert_eq!(deliver_due(&*store, &cdn, &metrics).await.unwrap(), 1);
    assert_eq!(api.items(STORE), items(&[("b.test", "beta"), ("shop.test", "beta")]));
    assert_eq!(syncs(&metrics, "synced"), 5);
}

/// Runs `scenario` on a fresh SQLite store and on a fresh PostgreSQL database, both opened
/// with a limit of 4 host entries.
macro_rules! on_both_stores {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path(), settings(4), Arc::new(Metrics::default())).unwrap();
            $scenario(Arc::new(store)).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let (_cluster, url) = fresh_database();
            // The synchronous client must not start inside the test's runtime.
            let store =
                std::thread::spawn(move || PostgresStore::open(&url, settings(4), Arc::new(Metrics::default())))
                    .join()
                    .unwrap()
                    .unwrap();
            $scenario(Arc::new(store)).await;
        }
    };
}

on_both_stores!(
    registrations_sync_the_host_map,
    registrations_sync_the_host_map_on_sqlite,
    registrations_sync_the_host_map_on_postgres
);
on_both_stores!(
    host_changes_and_removals_sync_the_host_map,
    host_changes_and_removals_sync_the_host_map_on_sqlite,
    host_changes_and_removals_sync_the_host_map_on_postgres
);

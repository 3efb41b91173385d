//! The PostgreSQL store's replica leases (`store/postgres/tenant_cache.rs`): a change is
//! acknowledged only once every replica holding a live lease has applied it, or that lease
//! has lapsed — observed against a real database, with a lease row standing for a replica
//! that stopped confirming (frozen, partitioned, or killed without a chance to remove it).

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::*;

/// A replica that holds a lease but never confirms (its row says it applied nothing) holds
/// back every acknowledgement until its lease lapses in the database; then the release is
/// acknowledged, and every live replica serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waits_for_a_silent_lease_to_lapse_then_every_live_replica_serves_it() {
    let app = test_app_on(Backend::Postgres);
    add_tenant(&app.router, "a").await;
    let inserted = silent_lease(&app);
    let committed = release(&app.router, &["a"]).await;
    let waited = inserted.elapsed();
    assert_eq!(committed["tenants"][0]["to_generation"], 2, "{committed}");
    assert!(waited >= LAPSED, "acknowledged after {waited:?}, before the silent replica's lease lapsed");
    for replica in &app.replicas {
        let m = fetch_manifest(replica, "pop-1", "a").await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.text);
        assert_eq!(m.headers["etag"], "\"2\"", "{}", m.text);
    }
}

/// A request that finds its change already in place (the same hosts again, a removal
/// repeated) is answered only once every live lease has applied what committed so far: the
/// change it found may be one whose own request is still waiting for a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_found_already_in_place_is_fenced_like_the_change_itself() {
    let app = test_app_on(Backend::Postgres);
    add_tenant(&app.router, "a").await;
    let inserted = silent_lease(&app);
    let body = serde_json::json!({"hosts": ["a.test"]});
    let a = send(&app.router, "PUT", "/v1/tenants/a/hosts", Some(ADMIN), Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let waited = inserted.elapsed();
    assert!(waited >= LAPSED, "the same hosts were answered after {waited:?}, unfenced");
}

/// Every replica's keeper loses its connection (the database terminates it): each stops
/// trusting its lease, reconnects and takes its own row back (no orphan row left to hold
/// commits back), and a release acknowledged meanwhile is served by every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepers_that_lose_their_connection_take_their_lease_back_and_reads_stay_current() {
    let app = test_app_on(Backend::Postgres);
    add_tenant(&app.router, "a").await;
    let rows = || lease_rows(&app);
    let before = wait_for(|| {
        let r = rows();
        (r.len() == app.replicas.len() && r.iter().all(|(_, live)| *live)).then_some(r)
    })
    .await;
    let terminated = app
        .pg_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'edgegen-lease-keeper' AND datname = current_database()",
        )
        .len();
    assert_eq!(terminated, app.replicas.len(), "one keeper session per replica");
    let committed = release(&app.router, &["a"]).await;
    assert_eq!(committed["tenants"][0]["to_generation"], 2, "{committed}");
    for replica in &app.replicas {
        let m = fetch_manifest(replica, "pop-1", "a").await;
        assert_eq!(m.headers["etag"], "\"2\"", "{}", m.text);
    }
    // Back: the same rows (ids), live again, and no others.
    let after = wait_for(|| {
        let r = rows();
        let ids: Vec<i64> = r.iter().map(|(id, _)| *id).collect();
        let same = ids == before.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        (same && r.iter().all(|(_, live)| *live)).then_some(r)
    })
    .await;
    assert_eq!(after.len(), app.replicas.len());
}

/// The lease rows: id and whether the database holds the lease now.
fn lease_rows(app: &TestApp) -> Vec<(i64, bool)> {
    app.pg_query(
        "SELECT id, lease_until > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
           FROM replica_leases ORDER BY id",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// A lease no replica holds: it lapses 1.5 s from now (database clock) and never confirms
/// anything (a replica frozen or killed without removing its row). Returns when it was
/// inserted.
fn silent_lease(app: &TestApp) -> Instant {
    app.sql(
        "INSERT INTO replica_leases (applied, lease_until)
           VALUES (-1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 1500)",
    );
    Instant::now()
}

/// Less than a silent lease's 1.5 s by more than the time to insert it: an answer sooner
/// than this did not wait for it to lapse.
const LAPSED: Duration = Duration::from_millis(1200);

/// Polls `probe` until it yields, for at most 10 s.
async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "not reached within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

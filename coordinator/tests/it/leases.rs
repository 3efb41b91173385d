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
    // Lapses 1.5 s from now (database clock), never confirms anything.
    app.sql(
        "INSERT INTO replica_leases (applied, lease_until)
           VALUES (-1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 1500)",
    );
    let inserted = Instant::now();
    let committed = release(&app.router, &["a"]).await;
    let waited = inserted.elapsed();
    assert_eq!(committed["tenants"][0]["to_generation"], 2, "{committed}");
    assert!(
        waited >= Duration::from_millis(1200),
        "acknowledged after {waited:?}, before the silent replica's lease lapsed"
    );
    for replica in &app.replicas {
        let m = fetch_manifest(replica, "pop-1", "a").await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.text);
        assert_eq!(m.headers["etag"], "\"2\"", "{}", m.text);
    }
}

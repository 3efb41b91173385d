//! Regressions specific to the SQLite store, injected from outside through the database
//! file itself, and state its in-memory tenant map must find again when the file is reopened.

use axum::http::StatusCode;

use crate::support::*;

/// Regression: a failure after the commit (here, refining the stored log) must not keep
/// manifests at the old generation nor break later releases.
#[tokio::test]
async fn a_failure_after_the_commit_still_publishes_the_new_generation() {
    let app = test_app_on(Backend::Sqlite);
    add_tenant(&app.router, "a").await;
    // Inject the failure from outside: any rewrite of a stored, non-empty log aborts.
    let conn = rusqlite::Connection::open(app._dir.path().join("edgegen.db")).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refine_fails BEFORE UPDATE OF execution_log ON releases
         WHEN OLD.execution_log <> '{}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    release(&app.router, &["a"]).await;
    let m = fetch_manifest(&app.router, "pop-1", "a").await;
    assert_eq!(m.headers["etag"], "\"2\"", "the manifest serves the committed generation");
    release(&app.router, &["a"]).await;
    assert_eq!(generation(&app.router, "a").await, 3);
}

/// Host changes and removals are in the database, not only in the in-memory tenant map: a
/// store opened again on the file serves the new hosts and not the removed tenant.
#[tokio::test]
async fn host_changes_and_removals_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let router = router_with_cdn(dir.path(), None, None, None);
    add_tenant(&router, "a").await;
    add_tenant(&router, "b").await;
    let hosts = serde_json::json!({"hosts": ["b.test", "www.b.test"]});
    assert_eq!(send(&router, "PUT", "/v1/tenants/b/hosts", Some(ADMIN), Some(hosts)).await.status, StatusCode::OK);
    assert_eq!(send(&router, "DELETE", "/v1/tenants/a", Some(ADMIN), None).await.status, StatusCode::NO_CONTENT);
    drop(router);

    let router = router_with_cdn(dir.path(), None, None, None);
    assert_eq!(send(&router, "GET", "/v1/tenants/a", Some(ADMIN), None).await.status, StatusCode::NOT_FOUND);
    let b = send(&router, "GET", "/v1/tenants/b", Some(ADMIN), None).await.body;
    assert_eq!(b["hosts"], serde_json::json!(["b.test", "www.b.test"]));
    let again =
        serde_json::json!({"id": "a", "hosts": ["a.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let a = send(&router, "POST", "/v1/tenants", Some(ADMIN), Some(again)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "a removed id stays taken: {}", a.text);
}

/// The lease bound of each PoP's fetch record is durable: after a restart on the same data,
/// the convergence report states the bound recorded before the restart (the fetch time +
/// max stale + a quarter of it), not the fallback of commit + max stale.
#[tokio::test]
async fn fetch_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = router_with_cdn(dir.path(), None, None, None);
    add_tenant(&router, "a").await;
    let before = edgegen_coordinator::clock::now_ms();
    assert_eq!(fetch_manifest(&router, "pop-1", "a").await.status, StatusCode::OK);
    drop(router);
    // The store's writer stops once its last handle is gone; give it a moment to close.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let conn = rusqlite::Connection::open(dir.path().join("edgegen.db")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT lease_until FROM fetches WHERE pop = 'pop-1' AND tenant_id = 'a'", [], |r| r.get(0))
        .unwrap();
    assert!(stored as u64 >= before + 375_000, "written a quarter max stale ahead: {stored}");

    let router = router_with_cdn(dir.path(), None, None, None);
    release(&router, &["a"]).await;
    let c = send(&router, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await.body;
    let unconfirmed = c["leases"]["unconfirmed"].as_array().unwrap();
    assert_eq!(unconfirmed.len(), 1, "{c}");
    assert_eq!(unconfirmed[0]["pop"], "pop-1");
    assert_eq!(unconfirmed[0]["old_until"].as_i64(), Some(stored), "the recorded bound, not a fallback");
}

/// Regression: a PoP fetching a release's new generation within its recorded lease bound is
/// answered without waiting for its fetch record (single process: memory vouches for its
/// ack; the durable bound already covers the statement). Injected from outside: the record's
/// move to generation 2 fails; the manifest is still served, the ack still counts, and the
/// stored bound (what the convergence report states) is unchanged.
#[tokio::test]
async fn a_new_generation_is_served_without_waiting_for_its_fetch_record() {
    let app = test_app_on(Backend::Sqlite);
    add_tenant(&app.router, "a").await;
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    let conn = rusqlite::Connection::open(app._dir.path().join("edgegen.db")).unwrap();
    let bound = || -> (i64, i64) {
        conn.query_row("SELECT generation, lease_until FROM fetches WHERE pop = 'pop-1' AND tenant_id = 'a'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let before = bound();
    conn.execute_batch(
        "CREATE TRIGGER generation_write_fails BEFORE UPDATE ON fetches WHEN NEW.generation = 2
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    release(&app.router, &["a"]).await;
    let m = fetch_manifest(&app.router, "pop-1", "a").await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text);
    assert_eq!(m.headers["etag"], "\"2\"");
    // The failed write runs after the answer; let it end before the ack (which would share
    // its group commit and fail with it).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(raw_ack(&app.router, "pop-1", "a", 2).await.status, StatusCode::NO_CONTENT);
    assert_eq!(bound(), before, "the bound stays the one recorded before the answer");
    let c = send(&app.router, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await.body;
    assert_eq!(c["leases"]["confirmed"], serde_json::json!(["pop-1"]), "{c}");
}

/// The new generation's fetch record follows the answer: it reaches the file.
#[tokio::test]
async fn a_new_generation_s_fetch_record_is_written_after_the_answer() {
    let app = test_app_on(Backend::Sqlite);
    add_tenant(&app.router, "a").await;
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    release(&app.router, &["a"]).await;
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    let conn = rusqlite::Connection::open(app._dir.path().join("edgegen.db")).unwrap();
    let mut stored = 0;
    for _ in 0..50 {
        stored = conn
            .query_row("SELECT generation FROM fetches WHERE pop = 'pop-1' AND tenant_id = 'a'", [], |r| r.get(0))
            .unwrap();
        if stored == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored, 2);
}

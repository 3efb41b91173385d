//! Shard verification before analysed releases (SQLite shards, PostgreSQL shards on a real
//! server, shared PostgreSQL databases with RLS): independent of the coordinator's store.

use axum::http::StatusCode;
use edgegen_shared::TenantId;

use crate::api_sqlite::analysed_release;
use crate::support::*;

/// Before an analysed release commits, each tenant's SQLite shard must match the schema the
/// release expects and hold no row of another tenant; otherwise nothing moves.
#[tokio::test]
async fn shard_drift_or_leakage_blocks_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let shard = |tenant: &str, ddl: &str, rows: &[&str]| {
        let path = dir.path().join(format!("{tenant}.db"));
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(ddl).unwrap();
        for row_tenant in rows {
            conn.execute("INSERT INTO users (tenant_id, id) VALUES (?1, abs(random()))", [row_tenant]).unwrap();
        }
        path
    };
    let good = "CREATE TABLE users (tenant_id TEXT NOT NULL, id INTEGER, ekv INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (tenant_id, id));";
    let drifted = "CREATE TABLE users (tenant_id TEXT NOT NULL, id INTEGER, PRIMARY KEY (tenant_id, id));";
    let mut shards = edgegen_coordinator::shards::ShardMap::new();
    shards
        .insert(TenantId::new("a").unwrap(), edgegen_coordinator::shards::Shard::Sqlite(shard("a", good, &["a", "a"])));
    shards.insert(TenantId::new("b").unwrap(), edgegen_coordinator::shards::Shard::Sqlite(shard("b", drifted, &["b"])));
    shards
        .insert(TenantId::new("c").unwrap(), edgegen_coordinator::shards::Shard::Sqlite(shard("c", good, &["c", "a"])));
    let router = crate::support::router_full(&dir.path().join("data"), None, None, None, shards);
    for t in ["a", "b", "c"] {
        add_tenant(&router, t).await;
    }
    let ok = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["a"]))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let step = ok.body["execution_log"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "verify tenant shards")
        .unwrap()
        .clone();
    assert_eq!(step["status"], "ok");
    assert!(step["detail"].as_str().unwrap().starts_with("1 shard(s) (a) match"), "{step}");

    let drift = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["a", "b"]))).await;
    assert_eq!(drift.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", drift.text);
    assert_eq!(drift.body["error"]["code"], "shard_verification_failed");
    assert!(
        drift.body["error"]["message"].as_str().unwrap().contains("b: column users.ekv is missing"),
        "{}",
        drift.text
    );

    let leak = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["c"]))).await;
    assert_eq!(leak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        leak.body["error"]["message"].as_str().unwrap().contains("c: leak: users: 1 row(s) whose tenant_id is not c"),
        "{}",
        leak.text
    );
    assert_eq!(
        (generation(&router, "a").await, generation(&router, "b").await, generation(&router, "c").await),
        (2, 1, 1)
    );
}

/// The same checks against PostgreSQL shards on a real server (a throwaway cluster; the
/// test fails if it cannot start): live schema, RLS flags and policies, and leakage.
#[tokio::test]
async fn postgres_shard_drift_or_leakage_blocks_the_release() {
    let cluster = tokio::task::spawn_blocking(edgegen_tests::postgres::TempCluster::start).await.unwrap().unwrap();
    let fenced = "CREATE TABLE users (tenant_id text NOT NULL, id bigint, ekv integer NOT NULL DEFAULT 1, PRIMARY KEY (tenant_id, id));
        ALTER TABLE users ENABLE ROW LEVEL SECURITY; ALTER TABLE users FORCE ROW LEVEL SECURITY;
        CREATE POLICY p ON users USING (tenant_id = current_setting('app.tenant'));";
    let setups = [
        ("a", fenced.to_owned(), vec!["a", "a"]),
        ("b", fenced.replace("ALTER TABLE users FORCE ROW LEVEL SECURITY;", ""), vec!["b"]),
        ("c", fenced.to_owned(), vec!["c", "a"]),
    ];
    let admin_url = cluster.url("postgres");
    let mut shards = edgegen_coordinator::shards::ShardMap::new();
    for (tenant, ddl, rows) in &setups {
        let name = tenant.to_string();
        shards.insert(
            TenantId::new(name.clone()).unwrap(),
            edgegen_coordinator::shards::Shard::Postgres(cluster.url(&name)),
        );
        let (admin_url, db_url, ddl, rows, tenant) =
            (admin_url.clone(), cluster.url(&name), ddl.clone(), rows.clone(), name);
        tokio::task::spawn_blocking(move || {
            let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE {tenant}")).unwrap();
            let mut db = postgres::Client::connect(&db_url, postgres::NoTls).unwrap();
            db.batch_execute(&ddl).unwrap();
            for (i, row) in rows.iter().enumerate() {
                db.execute("INSERT INTO users (tenant_id, id) VALUES ($1, $2)", &[row, &(i as i64)]).unwrap();
            }
        })
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let router = crate::support::router_full(dir.path(), None, None, None, shards);
    for t in ["a", "b", "c"] {
        add_tenant(&router, t).await;
    }
    let ok = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["a"]))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let drift = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["b"]))).await;
    assert_eq!(drift.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", drift.text);
    assert!(
        drift.body["error"]["message"].as_str().unwrap().contains("b: row-level security on users is not forced"),
        "{}",
        drift.text
    );
    let leak = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["c"]))).await;
    assert_eq!(leak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        leak.body["error"]["message"].as_str().unwrap().contains("c: leak: users: 1 row(s) whose tenant_id is not c"),
        "{}",
        leak.text
    );
    assert_eq!((generation(&router, "b").await, generation(&router, "c").await), (1, 1));
    drop(cluster);
}

/// A PostgreSQL database shared by several tenants: each tenant's RLS view, as the
/// application role, must show no other tenant's rows.
#[tokio::test]
async fn shared_postgres_database_checks_each_tenants_view() {
    let cluster = tokio::task::spawn_blocking(edgegen_tests::postgres::TempCluster::start).await.unwrap().unwrap();
    let ddl = |using: &str| {
        format!(
            "CREATE TABLE users (tenant_id text NOT NULL, id bigint, ekv integer NOT NULL DEFAULT 1, PRIMARY KEY (tenant_id, id));
             ALTER TABLE users ENABLE ROW LEVEL SECURITY; ALTER TABLE users FORCE ROW LEVEL SECURITY;
             CREATE POLICY p ON users USING ({using});
             GRANT SELECT ON users TO app_user;
             INSERT INTO users (tenant_id, id) VALUES ('d', 1), ('e', 2), ('f', 3), ('g', 4);"
        )
    };
    let (admin_url, fenced_url, open_url) = (cluster.url("postgres"), cluster.url("fenced"), cluster.url("open"));
    let (a, f, o) = (admin_url.clone(), fenced_url.clone(), open_url.clone());
    let (fenced_ddl, open_ddl) = (ddl("tenant_id = current_setting('app.tenant')"), ddl("true"));
    tokio::task::spawn_blocking(move || {
        let mut admin = postgres::Client::connect(&a, postgres::NoTls).unwrap();
        for statement in ["CREATE ROLE app_user NOLOGIN", "CREATE DATABASE fenced", "CREATE DATABASE open"] {
            admin.batch_execute(statement).unwrap();
        }
        postgres::Client::connect(&f, postgres::NoTls).unwrap().batch_execute(&fenced_ddl).unwrap();
        postgres::Client::connect(&o, postgres::NoTls).unwrap().batch_execute(&open_ddl).unwrap();
    })
    .await
    .unwrap();
    let mut shards = edgegen_coordinator::shards::ShardMap::new();
    for (t, url) in [("d", &fenced_url), ("e", &fenced_url), ("f", &open_url), ("g", &open_url)] {
        shards.insert(TenantId::new(t).unwrap(), edgegen_coordinator::shards::Shard::Postgres(url.clone()));
    }
    let rls = edgegen_coordinator::shards::SharedRls {
        role: Some("app_user".into()),
        tenant_setting: Some("app.tenant".into()),
    };
    let dir = tempfile::tempdir().unwrap();
    let router = crate::support::router_shared(
        dir.path(),
        None,
        None,
        None,
        shards.clone(),
        rls,
        crate::support::default_leases(),
    );
    for t in ["d", "e", "f", "g"] {
        add_tenant(&router, t).await;
    }
    let ok = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["d", "e"]))).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let leak = send(&router, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["f"]))).await;
    assert_eq!(leak.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", leak.text);
    assert!(
        leak.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 row(s) of other tenants are visible to role app_user as f (shared database)"),
        "{}",
        leak.text
    );
    // Without [shard_rls] a shared database cannot be checked: refused, with what to set.
    let dir2 = tempfile::tempdir().unwrap();
    let unconfigured = crate::support::router_full(dir2.path(), None, None, None, shards);
    add_tenant(&unconfigured, "d").await;
    let a = send(&unconfigured, "POST", "/v1/releases", Some(ADMIN), Some(analysed_release(&["d"]))).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body["error"]["message"].as_str().unwrap().contains("set [shard_rls] role and tenant_setting"),
        "{}",
        a.text
    );
    drop(cluster);
}

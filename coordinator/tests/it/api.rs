// The HTTP API through `Router::oneshot`, once per store: this file is included by
// `api_sqlite` and `api_postgres` in main.rs, each defining `BACKEND`.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use edgegen_coordinator::config::AutoRollback;
use edgegen_shared::{SecretKey, TenantId};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn auth_is_required_and_roles_are_separate() {
    let app = test_app_on(BACKEND);
    let a = send(&app.router, "GET", "/v1/tenants", None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body["error"]["code"], "unauthorized");
    assert!(a.headers.contains_key("www-authenticate"));
    assert_eq!(
        send(&app.router, "GET", "/v1/tenants", Some("wrong-token-000000"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&app.router, "GET", "/v1/tenants", Some(EDGE), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app.router, "GET", "/v1/edge/manifests/acme", Some(ADMIN), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&app.router, "GET", "/v1/edge/manifests/acme", None, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&app.router, "GET", "/v1/tenants", Some(ADMIN), None).await.status, StatusCode::OK);
    assert_eq!(send(&app.router, "GET", "/healthz", None, None).await.body["status"], "ok");
}

#[tokio::test]
async fn bad_input_gets_a_named_400_never_a_500() {
    let app = test_app_on(BACKEND);
    let check = |body: serde_json::Value, needle: &'static str| {
        let router = app.router.clone();
        async move {
            let a = send(&router, "POST", "/v1/tenants", Some(ADMIN), Some(body)).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
            let message = a.body["error"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(needle), "{message:?} should mention {needle:?}");
        }
    };
    let ok = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let with = |field: &str, value: serde_json::Value| {
        let mut b = ok.clone();
        b[field] = value;
        b
    };
    check(with("id", json!("Acme")), "tenant: may contain only").await;
    check(with("schema_version", json!("1.8")), "schema_version: must be MAJOR.MINOR.PATCH").await;
    check(with("contract_hash", json!("sha256:XYZ")), "contract_hash: must be 'sha256:'").await;
    check(with("surprise", json!(1)), "unknown field `surprise`").await;
    check(json!({"id": "acme"}), "missing field `hosts`").await;

    let a =
        send_with(&app.router, "POST", "/v1/tenants", Some(ADMIN), None, &[("content-type", "application/json")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(&app.router, "GET", "/v1/tenants/Not_A_Tenant", Some(ADMIN), None).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_tenant")));
    let a = send(&app.router, "GET", "/v1/releases/rel%2F1", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let big = json!({"tenants": vec!["a"; 40_000], "schema_version": "1.8.3", "contract_hash": contract(2)});
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(big)).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")));
    let a = send(&app.router, "GET", "/nope", None, None).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_route")));
    let a = send(&app.router, "DELETE", "/v1/tenants", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tenants_register_once_and_own_their_hosts() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "acme").await;
    let a = send(&app.router, "GET", "/v1/tenants/acme", Some(ADMIN), None).await;
    assert_eq!(
        a.body,
        json!({"id": "acme", "hosts": ["acme.test"], "generation": 1, "schema_version": "1.8.2", "contract_hash": contract(1)})
    );
    let dup = json!({"id": "acme", "hosts": ["other.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    assert_eq!(send(&app.router, "POST", "/v1/tenants", Some(ADMIN), Some(dup)).await.status, StatusCode::CONFLICT);
    let steal = json!({"id": "beta", "hosts": ["beta.test", "acme.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let a = send(&app.router, "POST", "/v1/tenants", Some(ADMIN), Some(steal)).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.body["error"]["message"], "hosts[1]: acme.test already belongs to tenant acme");
    let a = send(&app.router, "GET", "/v1/tenants/beta", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "a refused registration leaves nothing behind");

    let schema = json!({"type": "object", "properties": {"id": {"type": "string"}}});
    let wrong = json!({"id": "gamma", "hosts": ["g.test"], "schema_version": "1.0.0", "contract_hash": contract(9), "contract_schema": schema});
    let a = send(&app.router, "POST", "/v1/tenants", Some(ADMIN), Some(wrong)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("does not match contract_schema"));
}

#[tokio::test]
async fn a_tenants_hosts_are_replaced_under_the_registration_rules() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "acme").await;
    add_tenant(&app.router, "beta").await;
    let put = |id: &'static str, body: serde_json::Value| {
        let router = app.router.clone();
        async move { send(&router, "PUT", &format!("/v1/tenants/{id}/hosts"), Some(ADMIN), Some(body)).await }
    };

    // Replaced as a whole, answered with the tenant; the same list again changes nothing.
    let a = put("acme", json!({"hosts": ["acme.test", "shop.test"]})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!((a.body["hosts"].clone(), a.body["generation"].clone()), (json!(["acme.test", "shop.test"]), json!(1)));
    assert_eq!(put("acme", json!({"hosts": ["acme.test", "shop.test"]})).await.body, a.body, "idempotent");

    // Another tenant's host: refused naming host and owner, nothing changed.
    let a = put("beta", json!({"hosts": ["beta.test", "shop.test"]})).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.body["error"]["message"], "hosts[1]: shop.test already belongs to tenant acme");
    assert_eq!(send(&app.router, "GET", "/v1/tenants/beta", Some(ADMIN), None).await.body["hosts"], json!(["beta.test"]));

    // Moved: acme lets it go, then beta may take it (on every replica's view).
    assert_eq!(put("acme", json!({"hosts": ["acme.test"]})).await.status, StatusCode::OK);
    assert_eq!(put("beta", json!({"hosts": ["shop.test", "beta.test"]})).await.status, StatusCode::OK);
    for replica in &app.replicas {
        let a = send(replica, "GET", "/v1/tenants", Some(ADMIN), None).await;
        let hosts: Vec<_> = a.body.as_array().unwrap().iter().map(|t| t["hosts"].clone()).collect();
        assert_eq!(hosts, [json!(["acme.test"]), json!(["shop.test", "beta.test"])]);
    }
    let steal = json!({"id": "gamma", "hosts": ["shop.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let a = send(&app.router, "POST", "/v1/tenants", Some(ADMIN), Some(steal)).await;
    assert_eq!(a.body["error"]["message"], "hosts[0]: shop.test already belongs to tenant beta");

    // Bad input names its field; an unknown tenant is a 404.
    for (body, status, needle) in [
        (json!({"hosts": []}), StatusCode::UNPROCESSABLE_ENTITY, "hosts: must list at least one host name"),
        (json!({"hosts": ["a.test", "a.test"]}), StatusCode::UNPROCESSABLE_ENTITY, "hosts[1]: \"a.test\" is listed twice"),
        (json!({"hosts": ["Shop.test"]}), StatusCode::UNPROCESSABLE_ENTITY, "hosts[0]: may contain only"),
        (json!({"hosts": ["a.test"], "id": "acme"}), StatusCode::BAD_REQUEST, "unknown field `id`"),
    ] {
        let a = put("acme", body).await;
        assert_eq!(a.status, status, "{}", a.text);
        assert!(a.body["error"]["message"].as_str().unwrap().contains(needle), "{}", a.text);
    }
    assert_eq!(put("ghost", json!({"hosts": ["g.test"]})).await.status, StatusCode::NOT_FOUND);
    let a = send(&app.router, "PUT", "/v1/tenants/Bad_Id/hosts", Some(ADMIN), Some(json!({"hosts": ["g.test"]}))).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_tenant")));
    let a = send(&app.router, "PUT", "/v1/tenants/acme/hosts", Some(EDGE), Some(json!({"hosts": ["a.test"]}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "the admin token only");
}

#[tokio::test]
async fn a_removed_tenant_stops_routing_keeps_its_history_and_its_id() {
    let app = test_app_on(BACKEND);
    for t in ["a", "b"] {
        add_tenant(&app.router, t).await;
    }
    assert_eq!(ack(&app.router, "p1", "a", 1).await.status, StatusCode::NO_CONTENT);
    release(&app.router, &["a"]).await;
    let delete = |id: &'static str| {
        let router = app.router.clone();
        async move { send(&router, "DELETE", &format!("/v1/tenants/{id}"), Some(ADMIN), None).await }
    };

    // Refused while the release that set its generation converges: the release is named.
    let a = delete("a").await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("release rel-1 is still converging"), "{}", a.text);
    ack(&app.router, "p1", "a", 2).await;
    let c = send(&app.router, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await;
    assert_eq!(c.body["status"], "converged", "{}", c.text);

    // Removed: gone from the tenants and the edge API, on every replica; a repeat is a 204 too.
    let a = delete("a").await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(delete("a").await.status, StatusCode::NO_CONTENT, "idempotent");
    for replica in &app.replicas {
        assert_eq!(send(replica, "GET", "/v1/tenants/a", Some(ADMIN), None).await.status, StatusCode::NOT_FOUND);
        let all = send(replica, "GET", "/v1/tenants", Some(ADMIN), None).await.body;
        assert_eq!(all.as_array().unwrap().iter().map(|t| t["id"].clone()).collect::<Vec<_>>(), [json!("b")]);
        let m = fetch_manifest(replica, "p1", "a").await;
        assert_eq!(m.status, StatusCode::NOT_FOUND, "the edge bypasses a tenant it gets no manifest for");
    }
    let a = raw_ack(&app.router, "p1", "a", 2).await;
    assert_eq!((a.status, a.body["error"]["message"].as_str()), (StatusCode::NOT_FOUND, Some("tenant a does not exist")));

    // History stays: its release still names it.
    let r = send(&app.router, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
    assert_eq!((r["tenants"][0]["tenant"].as_str(), r["status"].as_str()), (Some("a"), Some("converged")));

    // Its host is free; its id is not reused; it cannot be released, re-hosted or rolled back.
    let a = send(&app.router, "PUT", "/v1/tenants/b/hosts", Some(ADMIN), Some(json!({"hosts": ["b.test", "a.test"]}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let again = json!({"id": "a", "hosts": ["new-a.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    let a = send(&app.router, "POST", "/v1/tenants", Some(ADMIN), Some(again)).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("tenant a was removed; its id is not reused"));
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"]))).await;
    assert!(a.body["error"]["message"].as_str().unwrap().contains("not registered: a"), "{}", a.text);
    let a = send(&app.router, "PUT", "/v1/tenants/a/hosts", Some(ADMIN), Some(json!({"hosts": ["x.test"]}))).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(&app.router, "POST", "/v1/releases/rel-1/rollback", Some(ADMIN), Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("tenant a no longer exists"), "{}", a.text);

    assert_eq!(delete("ghost").await.status, StatusCode::NOT_FOUND, "no tenant ever had this id");
    // A tenant still at its registered generation has nothing converging.
    assert_eq!(delete("b").await.status, StatusCode::NO_CONTENT);
}

/// For every race of a removal with a release of the same tenant (on two replicas when the
/// store is PostgreSQL): exactly one wins — either the release commits and the removal is
/// refused while it converges, or the removal happens and the release is refused.
#[tokio::test]
async fn a_removal_racing_a_release_of_the_tenant_lets_exactly_one_win() {
    let app = test_app_on(BACKEND);
    let tenants: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    for t in &tenants {
        add_tenant(&app.router, t).await;
    }
    let mut races = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        let (a, b) = (app.replicas[i % app.replicas.len()].clone(), app.replicas[(i + 1) % app.replicas.len()].clone());
        let t = t.clone();
        races.push(tokio::spawn(async move {
            let path = format!("/v1/tenants/{t}");
            let (removal, release) = tokio::join!(
                send(&a, "DELETE", &path, Some(ADMIN), None),
                send(&b, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&[&t]))),
            );
            (t, removal, release)
        }));
    }
    for race in races {
        let (t, removal, release) = race.await.unwrap();
        match (removal.status, release.status) {
            (StatusCode::CONFLICT, StatusCode::CREATED) => {
                assert_eq!(generation(&app.router, &t).await, 2, "{t}: the release won");
            }
            (StatusCode::NO_CONTENT, StatusCode::UNPROCESSABLE_ENTITY) => {
                let a = send(&app.router, "GET", &format!("/v1/tenants/{t}"), Some(ADMIN), None).await;
                assert_eq!(a.status, StatusCode::NOT_FOUND, "{t}: the removal won");
            }
            other => panic!("{t}: {other:?}: {} / {}", removal.text, release.text),
        }
    }
}

#[tokio::test]
async fn releases_are_all_or_nothing() {
    let app = test_app_on(BACKEND);
    for t in ["a", "b", "c"] {
        add_tenant(&app.router, t).await;
    }
    let r = release(&app.router, &["a", "b"]).await;
    assert_eq!(r["id"], "rel-1");
    assert_eq!(r["status"], "committed");
    assert_eq!(
        (generation(&app.router, "a").await, generation(&app.router, "b").await, generation(&app.router, "c").await),
        (2, 2, 1)
    );

    for (tenants, needle) in [
        (vec!["a", "nope"], "not registered: nope"),
        (vec![], "must list at least one tenant"),
        (vec!["a", "c", "a"], "tenants[2]: a is listed twice"),
    ] {
        let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&tenants))).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{tenants:?}");
        assert!(a.body["error"]["message"].as_str().unwrap().contains(needle), "{}", a.text);
    }
    assert_eq!((generation(&app.router, "a").await, generation(&app.router, "c").await), (2, 1), "nothing moved");
    assert_eq!(send(&app.router, "GET", "/v1/releases/rel-2", Some(ADMIN), None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn execution_log_has_every_phase_measured_or_skipped_with_a_reason() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    let schema = json!({"type": "object"});
    let hash = edgegen_shared::contract::contract_hash_value(&schema).unwrap().to_string();
    let body = json!({"tenants": ["a"], "schema_version": "1.8.3", "contract_hash": hash, "contract_schema": schema, "description": "migration 1.8.3"});
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(body)).await;
    let log = &a.body["execution_log"];
    assert_eq!(log["execution_id"], "rel-1");
    assert_eq!(log["task"], "migration 1.8.3");
    let phases: Vec<&str> = log["steps"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(
        phases,
        [
            "schema_analysis",
            "contract_verification",
            "deterministic_key_generation",
            "tenant_isolation_check",
            "edge_node_invalidation",
            "edge_node_invalidation",
            "edge_node_invalidation",
            "rollback_verification",
        ]
    );
    for step in log["steps"].as_array().unwrap() {
        let status = step["status"].as_str().unwrap();
        assert!(["ok", "skipped", "pending"].contains(&status), "{step}");
        assert!(!step["detail"].as_str().unwrap().is_empty(), "{step}");
        assert!(step["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(log["steps"][1]["status"], "ok", "contract verified against its schema");
    assert_eq!(log["steps"][6]["status"], "pending", "acks awaited");
    assert_eq!(log["summary"]["tenants"], 1);
}

#[tokio::test]
async fn idempotency_key_replays_or_conflicts() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    let key = [("idempotency-key", "deploy-42")];
    let first = send_with(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"])), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send_with(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"])), &key).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(generation(&app.router, "a").await, 2, "the retry bumped nothing");
    let mut other = release_body(&["a"]);
    other["schema_version"] = json!("1.9.0");
    let a = send_with(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(other), &key).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("different request (release rel-1)"));
    let bad = send_with(
        &app.router,
        "POST",
        "/v1/releases",
        Some(ADMIN),
        Some(release_body(&["a"])),
        &[("idempotency-key", "")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// Regression: a tenant that another writer on the same database moved (with its history)
/// behind this replica's back is never a 500. SQLite plans from the process's published
/// view, so the stale view is a 409 naming the tenant and nothing moves; PostgreSQL plans
/// from the tenants' rows it locked, so the release applies on top of the move.
#[tokio::test]
async fn a_tenant_changed_during_the_release_is_a_conflict_or_applied_on_top_never_a_500() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    add_tenant(&app.router, "b").await;
    app.sql(&format!(
        "INSERT INTO generations (tenant_id, generation, schema_version, contract_hash, release_id, created_at)
           VALUES ('a', 7, '1.8.2', '{}', NULL, 0);
         UPDATE tenants SET generation = 7 WHERE id = 'a';",
        contract(1)
    ));
    let r = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["b", "a"]))).await;
    match BACKEND {
        Backend::Sqlite => {
            assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
            let message = r.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("tenant a changed during the release"), "{}", r.text);
            assert_eq!(generation(&app.router, "b").await, 1, "nothing moved");
        }
        Backend::Postgres => {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            let a = r.body["tenants"].as_array().unwrap().iter().find(|t| t["tenant"] == "a").unwrap().clone();
            assert_eq!((a["from_generation"].as_u64(), a["to_generation"].as_u64()), (Some(7), Some(8)));
            assert_eq!(generation(&app.router, "b").await, 2);
        }
    }
}

/// One idempotency key sent to every replica at once: one release commits, every other
/// answer replays it, and the generation moves once.
#[tokio::test]
async fn one_idempotency_key_sent_to_every_replica_at_once_commits_once() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    let mut sends = Vec::new();
    for k in 0..6 {
        let router = app.replicas[k % app.replicas.len()].clone();
        sends.push(tokio::spawn(async move {
            let key = [("idempotency-key", "deploy-race")];
            send_with(&router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&["a"])), &key).await
        }));
    }
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }
    let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    assert_eq!(created, 1, "{:?}", answers.iter().map(|a| (a.status, a.text.clone())).collect::<Vec<_>>());
    for a in &answers {
        assert!(a.status == StatusCode::CREATED || a.status == StatusCode::OK, "{} {}", a.status, a.text);
        assert_eq!(a.body["id"], answers[0].body["id"], "every answer names the one release");
    }
    assert_eq!(generation(&app.router, "a").await, 2, "the generation moved once");
}

#[tokio::test]
async fn rollback_moves_forward_to_the_previous_state() {
    let app = test_app_on(BACKEND);
    for t in ["a", "b"] {
        add_tenant(&app.router, t).await;
    }
    release(&app.router, &["a", "b"]).await;
    let a = send(&app.router, "POST", "/v1/releases/rel-1/rollback", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.body["kind"], "rollback");
    assert_eq!(a.body["rollback_of"], "rel-1");
    let change = &a.body["tenants"][0];
    assert_eq!((change["from_generation"].as_u64(), change["to_generation"].as_u64()), (Some(2), Some(3)));
    assert_eq!(change["to_schema_version"], "1.8.2");
    assert_eq!(change["to_contract_hash"], contract(1));
    let steps = a.body["execution_log"]["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["status"], "ok", "rollback verified: {}", steps.last().unwrap());
    let original = send(&app.router, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await;
    assert_eq!(
        (original.body["status"].as_str(), original.body["rolled_back_by"].as_str()),
        (Some("rolled_back"), Some("rel-2"))
    );

    let twice = send(&app.router, "POST", "/v1/releases/rel-1/rollback", Some(ADMIN), None).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(twice.body["error"]["message"], "release rel-1 was already rolled back by rel-2");
    let of_rollback = send(&app.router, "POST", "/v1/releases/rel-2/rollback", Some(ADMIN), None).await;
    assert_eq!(of_rollback.status, StatusCode::CONFLICT);
    assert_eq!(
        send(&app.router, "POST", "/v1/releases/rel-9/rollback", Some(ADMIN), None).await.status,
        StatusCode::NOT_FOUND
    );

    // Superseded: a later release moved tenant b on.
    release(&app.router, &["a", "b"]).await; // rel-3: a 3->4, b 3->4
    release(&app.router, &["b"]).await; // rel-4: b 4->5
    let a = send(&app.router, "POST", "/v1/releases/rel-3/rollback", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("tenant b has moved on to generation 5 (release rel-4)"),
        "{}",
        a.text
    );
    assert_eq!((generation(&app.router, "a").await, generation(&app.router, "b").await), (4, 5), "nothing moved");
}

#[tokio::test]
async fn manifests_are_signed_with_etag_and_304() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "acme").await;
    release(&app.router, &["acme"]).await;
    let a = send(&app.router, "GET", "/v1/edge/manifests/acme", Some(EDGE), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["etag"], "\"2\"");
    let key = SecretKey::new("test", MANIFEST_KEY).unwrap();
    let m = edgegen_shared::manifest::verify(a.text.as_bytes(), &key, &TenantId::new("acme").unwrap()).unwrap();
    assert_eq!((m.generation.0, m.schema_version.to_string(), m.max_age_ms), (2, "1.8.3".into(), 1000));
    assert_eq!(m.release_id.unwrap().as_str(), "rel-1");
    let a =
        send_with(&app.router, "GET", "/v1/edge/manifests/acme", Some(EDGE), None, &[("if-none-match", "\"2\"")]).await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let a =
        send_with(&app.router, "GET", "/v1/edge/manifests/acme", Some(EDGE), None, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        send(&app.router, "GET", "/v1/edge/manifests/nope", Some(EDGE), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app.router, "GET", "/v1/edge/manifests/NOPE", Some(EDGE), None).await.status,
        StatusCode::BAD_REQUEST
    );
}

/// A 304 carries a fresh signed lease that extends exactly the manifest the PoP holds: it
/// verifies against the current manifest, and is refused for another tenant's manifest or
/// for the previous generation of the same tenant.
#[tokio::test]
async fn not_modified_carries_a_lease_for_exactly_the_current_manifest() {
    use edgegen_shared::lease::{self, LEASE_HEADER, LeaseError, Standing};
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "acme").await;
    add_tenant(&app.router, "beta").await;
    let key = SecretKey::new("test", MANIFEST_KEY).unwrap();
    let fetch = |tenant: &'static str| {
        let router = app.router.clone();
        let key = key.clone();
        async move {
            let a = send(&router, "GET", &format!("/v1/edge/manifests/{tenant}"), Some(EDGE), None).await;
            assert_eq!(a.status, StatusCode::OK);
            edgegen_shared::manifest::verify(a.text.as_bytes(), &key, &TenantId::new(tenant).unwrap()).unwrap()
        }
    };
    let first = fetch("acme").await;
    assert_eq!((first.max_age_ms, first.max_stale_ms), (1000, Some(300_000)), "manifests carry both ages");
    let other = fetch("beta").await;
    release(&app.router, &["acme"]).await;
    let current = fetch("acme").await;

    let a =
        send_with(&app.router, "GET", "/v1/edge/manifests/acme", Some(EDGE), None, &[("if-none-match", "\"2\"")]).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(a.headers["etag"], "\"2\"");
    let header = a.headers[LEASE_HEADER].to_str().unwrap().to_owned();
    let now = edgegen_coordinator::clock::now_ms();
    let leased = lease::verify(&header, &key, &current, now, 1000).unwrap();
    assert_eq!((leased.generation.0, leased.max_age_ms, leased.max_stale_ms), (2, 1000, 300_000));
    assert!(leased.issued_at >= current.issued_at, "the lease is issued on the revalidation, not copied");
    assert_eq!(lease::standing(leased.issued_at, leased.fresh_until(), leased.stale_until(), now), Standing::Fresh);
    assert_eq!(lease::verify(&header, &key, &other, now, 1000), Err(LeaseError::WrongTenant));
    assert_eq!(lease::verify(&header, &key, &first, now, 1000), Err(LeaseError::WrongManifest));
    // Replayed after its max age (plus skew), it is no longer current.
    assert_eq!(lease::verify(&header, &key, &current, now + 2_500, 1000), Err(LeaseError::NotCurrent));

    // An old ETag gets the full manifest, and no lease.
    let a =
        send_with(&app.router, "GET", "/v1/edge/manifests/acme", Some(EDGE), None, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get(LEASE_HEADER).is_none());
}

/// An operator's per-tenant ages reach that tenant's manifests and leases, and only that
/// tenant's; the others keep the global ages.
#[tokio::test]
async fn a_tenants_own_ages_are_in_its_manifests_and_leases() {
    use edgegen_coordinator::config::{LeasePolicy, ManifestAges};
    use edgegen_shared::lease::{self, LEASE_HEADER};
    let mut policy = LeasePolicy::global(ManifestAges { max_age_ms: 1000, max_stale_ms: 300_000 });
    policy.tenants.insert(TenantId::new("slow").unwrap(), ManifestAges { max_age_ms: 500, max_stale_ms: 60_000 });
    let app = test_app_leased(BACKEND, None, None, policy);
    add_tenant(&app.router, "slow").await;
    add_tenant(&app.router, "other").await;
    let key = SecretKey::new("test", MANIFEST_KEY).unwrap();
    for (tenant, ages) in [("slow", (500, 60_000)), ("other", (1000, 300_000))] {
        let path = format!("/v1/edge/manifests/{tenant}");
        let a = send(&app.router, "GET", &path, Some(EDGE), None).await;
        assert_eq!(a.status, StatusCode::OK);
        let m = edgegen_shared::manifest::verify(a.text.as_bytes(), &key, &TenantId::new(tenant).unwrap()).unwrap();
        assert_eq!((m.max_age_ms, m.max_stale_ms), (ages.0, Some(ages.1)), "{tenant}'s manifest");
        let r = send_with(&app.router, "GET", &path, Some(EDGE), None, &[("if-none-match", "\"1\"")]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        let now = edgegen_coordinator::clock::now_ms();
        let leased = lease::verify(r.headers[LEASE_HEADER].to_str().unwrap(), &key, &m, now, 1000).unwrap();
        assert_eq!((leased.max_age_ms, leased.max_stale_ms), ages, "{tenant}'s lease");
    }
}

#[tokio::test]
async fn convergence_follows_acks_of_live_pops() {
    let app = test_app_on(BACKEND);
    for t in ["a", "b"] {
        add_tenant(&app.router, t).await;
    }
    // Two PoPs are live before the release (they acknowledged generation 1).
    for pop in ["p1", "p2"] {
        assert_eq!(ack(&app.router, pop, "a", 1).await.status, StatusCode::NO_CONTENT);
    }
    release(&app.router, &["a", "b"]).await;
    let conv =
        |router| async move { send(router, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await.body };
    let c = conv(&app.router).await;
    assert_eq!((c["acked"].as_u64(), c["total"].as_u64(), c["converged"].as_bool()), (Some(0), Some(2), Some(false)));
    ack(&app.router, "p1", "a", 2).await;
    ack(&app.router, "p1", "b", 2).await;
    assert_eq!(ack(&app.router, "p1", "b", 2).await.status, StatusCode::NO_CONTENT, "acks are idempotent");
    ack(&app.router, "p2", "a", 2).await;
    let c = conv(&app.router).await;
    assert_eq!((c["acked"].as_u64(), c["converged"].as_bool()), (Some(1), Some(false)));
    assert_eq!(c["pops"][1]["tenants_acked"], 1);
    ack(&app.router, "p2", "b", 2).await;
    let c = conv(&app.router).await;
    assert_eq!(
        (c["acked"].as_u64(), c["converged"].as_bool(), c["status"].as_str()),
        (Some(2), Some(true), Some("converged"))
    );
    assert!(c["max_ms"].as_u64().unwrap() <= c["max_staleness_ms"].as_u64().unwrap());
    assert_eq!(c["bound_ms"], 1000);
    let r = send(&app.router, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
    assert_eq!(r["status"], "converged");
    let waited = r["execution_log"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "await PoP acknowledgements")
        .unwrap()
        .clone();
    assert_eq!(waited["status"], "ok");
    assert!(waited["detail"].as_str().unwrap().starts_with("2/2 live PoPs acknowledged"), "{waited}");

    // A generation the PoP was not served, and a tenant without a manifest: nothing vouches.
    let future = ack(&app.router, "p1", "a", 9).await;
    assert_eq!(future.status, StatusCode::FORBIDDEN, "{}", future.text);
    assert_eq!(ack(&app.router, "p1", "ghost", 1).await.status, StatusCode::FORBIDDEN);
    let metrics = send(&app.router, "GET", "/metrics", None, None).await.text;
    assert!(metrics.contains("edgegen_acks_total 7\n"), "{metrics}");
    assert!(metrics.contains("edgegen_acks_refused_total 2\n"), "{metrics}");
    assert!(metrics.contains("edgegen_convergence_latency_ms_count 1\n"));
}

/// The report's three lease groups, on short leases (max stale 1 s) so they expire during
/// the test: a PoP that acknowledged every tenant is confirmed; one that did not may serve
/// the old generation until its last statement's recorded bound (issued_at + max stale,
/// written ahead by a quarter of it), then is provably expired. On PostgreSQL each PoP
/// fetches through another replica: the bounds are shared rows.
#[tokio::test]
async fn convergence_separates_confirmed_expired_and_unconfirmed_pops() {
    let ages = edgegen_coordinator::config::ManifestAges { max_age_ms: 200, max_stale_ms: 1000 };
    let app = test_app_leased(BACKEND, None, None, edgegen_coordinator::config::LeasePolicy::global(ages));
    let replica = |i: usize| &app.replicas[i % app.replicas.len()];
    for t in ["a", "b"] {
        add_tenant(&app.router, t).await;
    }
    let before = edgegen_coordinator::clock::now_ms();
    for (i, pop) in ["p1", "p2", "p3"].into_iter().enumerate() {
        for t in ["a", "b"] {
            assert_eq!(fetch_manifest(replica(i), pop, t).await.status, StatusCode::OK);
        }
    }
    // p1 and p2 are live (they acknowledged generation 1); p3 only fetched.
    for pop in ["p1", "p2"] {
        assert_eq!(raw_ack(&app.router, pop, "a", 1).await.status, StatusCode::NO_CONTENT);
    }
    let after = edgegen_coordinator::clock::now_ms();
    release(&app.router, &["a", "b"]).await;
    ack(replica(1), "p1", "a", 2).await;
    ack(replica(2), "p1", "b", 2).await;
    ack(replica(1), "p2", "b", 2).await;

    let report = || async {
        let a = send(&app.router, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        serde_json::from_value::<edgegen_shared::api::Convergence>(a.body).unwrap()
    };
    let c = report().await;
    let names = |pops: &[edgegen_shared::api::PopLease]| pops.iter().map(|p| p.pop.to_string()).collect::<Vec<_>>();
    assert_eq!(c.leases.confirmed.iter().map(ToString::to_string).collect::<Vec<_>>(), ["p1"]);
    assert_eq!(names(&c.leases.unconfirmed), ["p2", "p3"], "{:?}", c.leases);
    assert!(c.leases.expired.is_empty());
    // p2 acknowledged b (not a); p3 acknowledged nothing. Their bounds are those recorded
    // when they fetched before the commit.
    assert_eq!(c.leases.unconfirmed.iter().map(|p| p.tenants_unconfirmed).collect::<Vec<_>>(), [1, 2]);
    for p in &c.leases.unconfirmed {
        assert!(p.old_until >= before + 1000, "covers every statement: {p:?}");
        assert!(p.old_until <= after + 1250, "at most a quarter max stale late: {p:?}");
        assert!(p.remaining_ms > 0 && p.remaining_ms <= 1250, "{p:?}");
    }

    let last = c.leases.unconfirmed.iter().map(|p| p.old_until).max().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(
        last.saturating_sub(edgegen_coordinator::clock::now_ms()) + 20,
    ))
    .await;
    let c = report().await;
    assert_eq!(names(&c.leases.expired), ["p2", "p3"], "{:?}", c.leases);
    assert!(c.leases.unconfirmed.is_empty());
    assert!(c.leases.expired.iter().all(|p| p.remaining_ms == 0));
    assert!(!c.converged, "p2 is live and has not acknowledged b: expiry is not confirmation");
}

#[tokio::test]
async fn reports_trigger_the_auto_rollback_policy() {
    let policy = AutoRollback { reports: 2, window: std::time::Duration::from_secs(60), min_pops: 2, min_paths: 1 };
    let app = test_app_with_on(BACKEND, Some(policy), None);
    add_tenant(&app.router, "a").await;
    release(&app.router, &["a"]).await;
    let report = mismatch_report;
    // Anonymous traffic through one PoP can make that PoP report as often as it likes: that
    // alone never rolls a release back.
    for _ in 0..10 {
        let one_pop = send(&app.router, "POST", "/v1/edge/reports", Some(EDGE), Some(report("p1"))).await;
        assert_eq!((one_pop.status, one_pop.body["auto_rollback"].is_null()), (StatusCode::ACCEPTED, true));
    }
    assert_eq!(generation(&app.router, "a").await, 2);
    let second_pop = send(&app.router, "POST", "/v1/edge/reports", Some(EDGE), Some(report("p2"))).await;
    assert_eq!(second_pop.body["auto_rollback"], "rel-2", "{}", second_pop.text);
    let r = send(&app.router, "GET", "/v1/releases/rel-2", Some(ADMIN), None).await.body;
    let task = r["execution_log"]["task"].as_str().unwrap();
    assert!(task.contains("automatic: 11 edge report(s) from 2 PoP(s) naming 1 path(s)"), "{task}");
    assert_eq!(generation(&app.router, "a").await, 3);
    assert_eq!(send(&app.router, "GET", "/v1/tenants/a", Some(ADMIN), None).await.body["schema_version"], "1.8.2");
}

/// Reports against a release a later one superseded fire the policy, but the release can
/// no longer be rolled back alone: every store answers 202 with no rollback, and nothing
/// moves.
#[tokio::test]
async fn reports_against_a_superseded_release_roll_nothing_back() {
    let policy = AutoRollback { reports: 2, window: std::time::Duration::from_secs(60), min_pops: 2, min_paths: 1 };
    let app = test_app_with_on(BACKEND, Some(policy), None);
    add_tenant(&app.router, "a").await;
    release(&app.router, &["a"]).await;
    release(&app.router, &["a"]).await;
    for pop in ["p1", "p2"] {
        let r = send(&app.router, "POST", "/v1/edge/reports", Some(EDGE), Some(mismatch_report(pop))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert!(r.body["auto_rollback"].is_null(), "{}", r.text);
    }
    assert_eq!(generation(&app.router, "a").await, 3, "nothing moved");
    let rel1 = send(&app.router, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
    assert!(rel1["rolled_back_by"].is_null(), "{rel1}");
}

#[tokio::test]
async fn reports_without_a_policy_change_nothing() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    release(&app.router, &["a"]).await;
    for _ in 0..5 {
        let report = json!({"pop": "p1", "tenant": "a", "kind": "deserialization_failure", "generation": 2,
            "expected_schema": "1.8.3", "expected_contract": contract(2), "observed_at": 1});
        assert_eq!(
            send(&app.router, "POST", "/v1/edge/reports", Some(EDGE), Some(report)).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(generation(&app.router, "a").await, 2);
}

/// 100 concurrent releases over overlapping tenants, spread over every replica (three on
/// PostgreSQL): each tenant's generations advance by exactly one per release that names it,
/// with no gaps and no duplicates, and release ids never collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_releases_never_skip_or_reuse_a_generation() {
    let app = test_app_on(BACKEND);
    let tenants: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for t in &tenants {
        add_tenant(&app.router, t).await;
    }
    let mut tasks = Vec::new();
    for i in 0..100usize {
        let chosen: Vec<String> = (0..3).map(|k| tenants[(i * 7 + k * 3) % 10].clone()).collect();
        let router = app.replicas[i % app.replicas.len()].clone();
        tasks.push(tokio::spawn(async move {
            let refs: Vec<&str> = chosen.iter().map(String::as_str).collect();
            (chosen.clone(), send(&router, "POST", "/v1/releases", Some(ADMIN), Some(release_body(&refs))).await)
        }));
    }
    let mut expected: BTreeMap<String, u64> = tenants.iter().map(|t| (t.clone(), 1)).collect();
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for task in tasks {
        let (chosen, a) = task.await.unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        assert!(ids.insert(a.body["id"].as_str().unwrap().to_owned()), "release id reused: {}", a.body["id"]);
        for t in &chosen {
            *expected.get_mut(t).unwrap() += 1;
        }
        for change in a.body["tenants"].as_array().unwrap() {
            let (from, to) = (change["from_generation"].as_u64().unwrap(), change["to_generation"].as_u64().unwrap());
            assert_eq!(to, from + 1);
            let fresh = seen.entry(change["tenant"].as_str().unwrap().to_owned()).or_default().insert(to);
            assert!(fresh, "generation {to} of {} used twice", change["tenant"]);
        }
    }
    for (tenant, last) in &expected {
        assert_eq!(generation(&app.router, tenant).await, *last, "{tenant}");
        let used: Vec<u64> = seen[tenant].iter().copied().collect();
        assert_eq!(used, (2..=*last).collect::<Vec<_>>(), "{tenant}: generations without gaps");
    }
}

/// The generation a manifest answer carries (its ETag is the quoted generation).
fn etag_generation(a: &Answer) -> u64 {
    a.headers["etag"].to_str().unwrap().trim_matches('"').parse().unwrap()
}

/// Manifests never go back: once a commit (or a registration) has been acknowledged
/// through one replica, a manifest served by any replica carries it — every time, while
/// other readers keep each replica's validation rounds busy (so a round that started before
/// the commit is in flight when the read arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_after_an_acknowledged_commit_is_never_older_on_any_replica() {
    let app = test_app_on(BACKEND);
    let n = app.replicas.len();
    let manifest_generation = |router: axum::Router, tenant: String| async move {
        let a = send(&router, "GET", &format!("/v1/edge/manifests/{tenant}"), Some(EDGE), None).await;
        assert_eq!(a.status, StatusCode::OK, "{tenant}: {}", a.text);
        etag_generation(&a)
    };
    for i in 0..5 {
        let id = format!("fresh{i}");
        add_tenant(&app.replicas[i % n], &id).await;
        assert_eq!(manifest_generation(app.replicas[(i + 1) % n].clone(), id).await, 1, "registration seen");
    }
    add_tenant(&app.router, "hot").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pollers = Vec::new();
    for k in 0..8 {
        let (router, stop) = (app.replicas[k % n].clone(), std::sync::Arc::clone(&stop));
        pollers.push(tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let a = send(&router, "GET", "/v1/edge/manifests/hot", Some(EDGE), None).await;
                assert_eq!(a.status, StatusCode::OK, "{}", a.text);
                let g = etag_generation(&a);
                assert!(g >= last, "a replica's manifest went back from generation {last} to {g}");
                last = g;
                // An in-memory store answers without ever being pending: let the committer run.
                tokio::task::yield_now().await;
            }
        }));
    }
    for i in 0..60 {
        let committed = release(&app.replicas[i % n], &["hot"]).await;
        let to = committed["tenants"][0]["to_generation"].as_u64().unwrap();
        let reads: Vec<_> = (0..n)
            .map(|r| tokio::spawn(manifest_generation(app.replicas[(i + 1 + r) % n].clone(), "hot".to_owned())))
            .collect();
        for (r, read) in reads.into_iter().enumerate() {
            let seen = read.await.unwrap();
            assert!(seen >= to, "release {i}: replica {} served generation {seen} after {to} was acknowledged", (i + 1 + r) % n);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pollers {
        p.await.unwrap();
    }
    if matches!(BACKEND, Backend::Postgres) {
        // The reads above were served from memory under each replica's lease (not only by
        // round trips), so the guarantee checked is the lease's.
        for (r, replica) in app.replicas.iter().enumerate() {
            let metrics = send(replica, "GET", "/metrics", None, None).await.text;
            let leased: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("edgegen_tenant_reads_total{path=\"lease\"} "))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(leased > 0, "replica {r} served no read under its lease:\n{metrics}");
        }
    }
}

/// `server::run` on a real socket: answers over TCP and returns once shutdown resolves.
#[tokio::test]
async fn serves_on_a_real_socket_and_shuts_down_gracefully() {
    let app = test_app_on(BACKEND);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(edgegen_coordinator::server::run(listener, app.router.clone(), async {
        let _ = stopped.await;
    }));
    let r = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new().get(format!("http://{addr}/v1/tenants")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.is_err(), "no longer listening");
}

/// A release of `tenants` carrying its analysis: FENCED migrated by a NOT NULL column with a
/// default (what the shard tests' databases hold).
pub(crate) fn analysed_release(tenants: &[&str]) -> serde_json::Value {
    let mut body = release_body(tenants);
    let migrated = FENCED.replace("id bigint,", "id bigint, ekv integer NOT NULL DEFAULT 1,");
    body["analysis"] = json!({"schema_from": FENCED, "schema_to": migrated});
    body
}

const FENCED: &str = "CREATE TABLE users (tenant_id uuid NOT NULL, id bigint, PRIMARY KEY (tenant_id, id));
ALTER TABLE users ENABLE ROW LEVEL SECURITY; ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON users USING (tenant_id = current_setting('app.tenant')::uuid);";

/// A release carrying its analysis: the analysis is the log's first steps; a blocked
/// analysis refuses the release and nothing moves.
#[tokio::test]
async fn analysed_releases_log_their_analysis_and_blocked_ones_move_nothing() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    let migrated = FENCED.replace("id bigint,", "id bigint, encryption_key_version integer NOT NULL,");
    let mut body = release_body(&["a"]);
    body["analysis"] = json!({"schema_from": FENCED, "schema_to": migrated});
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let steps = a.body["execution_log"]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["phase"], "schema_analysis");
    assert_eq!(steps[0]["status"], "ok");
    assert!(
        steps[0]["detail"].as_str().unwrap().contains("not_null_column_added_without_default (users)"),
        "{}",
        steps[0]
    );
    let isolation = steps.iter().find(|s| s["phase"] == "tenant_isolation_check").unwrap();
    assert_eq!(
        (isolation["status"].as_str(), isolation["detail"].as_str().unwrap().starts_with("0 violation")),
        (Some("ok"), true)
    );

    let mut leaky = release_body(&["a"]);
    leaky["analysis"] =
        json!({"schema_from": FENCED, "schema_to": format!("{FENCED} CREATE TABLE audit (id bigint PRIMARY KEY);")});
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(leaky)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.body["error"]["code"], "analysis_blocked");
    assert!(a.body["error"]["message"].as_str().unwrap().contains("tenant_column_missing (audit)"), "{}", a.text);
    let mut garbage = release_body(&["a"]);
    garbage["analysis"] = json!({"schema_from": FENCED, "schema_to": "DROP EVERYTHING"});
    let a = send(&app.router, "POST", "/v1/releases", Some(ADMIN), Some(garbage)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("schema_to:1:1"), "{}", a.text);
    assert_eq!(generation(&app.router, "a").await, 2, "blocked releases moved nothing");
}

/// The dry run: a per-tenant invalidation plan whose hash depends only on the inputs.
#[tokio::test]
async fn plan_is_deterministic_and_changes_nothing() {
    let app = test_app_on(BACKEND);
    for t in ["b", "a"] {
        add_tenant(&app.router, t).await;
    }
    let v1 =
        json!({"title": "UserProfile", "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]});
    let v2 = json!({"title": "UserProfile", "type": "object", "properties": {"id": {"type": "string"}, "ekv": {"type": "integer"}}, "required": ["id", "ekv"]});
    let hash = edgegen_shared::contract::contract_hash_value(&v2).unwrap().to_string();
    let body = json!({"tenants": ["b", "a"], "schema_version": "1.8.3", "contract_hash": hash, "contract_schema": v2,
        "analysis": {"schema_from": FENCED, "schema_to": FENCED, "contract_from": v1}});
    let first = send(&app.router, "POST", "/v1/releases/plan", Some(ADMIN), Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second = send(&app.router, "POST", "/v1/releases/plan", Some(ADMIN), Some(body)).await;
    assert_eq!(first.body["plan_hash"], second.body["plan_hash"]);
    assert_eq!(first.body["tenants"], second.body["tenants"]);
    assert_eq!(first.body["verdict"], "needs_release", "a required contract field breaks old cached objects");
    let tenants = first.body["tenants"].as_array().unwrap();
    assert_eq!(tenants[0]["tenant"], "a", "sorted by tenant");
    assert_eq!(tenants[0]["purge_surrogate_keys"], json!(["t/a/g/1", "edgegen-manifest/a"]));
    assert_eq!((tenants[0]["from_generation"].as_u64(), tenants[0]["to_generation"].as_u64()), (Some(1), Some(2)));
    assert_eq!(generation(&app.router, "a").await, 1, "a plan changes nothing");
}

/// A release not converged by the deadline is rolled back automatically, quickly.
#[tokio::test]
async fn convergence_deadline_rolls_back_automatically() {
    let app = test_app_with_on(BACKEND, None, Some(600));
    add_tenant(&app.router, "a").await;
    assert_eq!(ack(&app.router, "p1", "a", 1).await.status, StatusCode::NO_CONTENT); // one live PoP
    release(&app.router, &["a"]).await; // p1 never acknowledges generation 2
    let mut rolled_back = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let r = send(&app.router, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
        if r["status"] == "rolled_back" {
            rolled_back = true;
            break;
        }
    }
    assert!(rolled_back, "not rolled back after the deadline");
    let rollback = send(&app.router, "GET", "/v1/releases/rel-2", Some(ADMIN), None).await.body;
    assert_eq!(rollback["kind"], "rollback");
    assert!(
        rollback["execution_log"]["task"]
            .as_str()
            .unwrap()
            .contains("not converged within the deadline of 600 ms (0/1")
    );
    let trigger_to_commit = rollback["execution_log"]["summary"]["trigger_to_rollback_commit_ms"].as_u64().unwrap();
    // Recorded, and of the order of the pass period, not of a deadline: the ≤ 500 ms target
    // is a benchmark figure (BENCHMARKS.md), not a timed assertion that flakes on a loaded
    // machine (558 ms was seen once in a clean CI run on two busy cores).
    assert!(trigger_to_commit < 5_000, "trigger to rollback commit took {trigger_to_commit} ms");
    assert_eq!(generation(&app.router, "a").await, 3);
    // The rollback itself is never rolled back, whatever its convergence.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(generation(&app.router, "a").await, 3);

    // A release that converges in time stays.
    release(&app.router, &["a"]).await; // rel-3: a 3 -> 4
    ack(&app.router, "p1", "a", 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let r = send(&app.router, "GET", "/v1/releases/rel-3", Some(ADMIN), None).await.body;
    assert_eq!(r["status"], "converged");
}

/// Holding the edge token is not enough to make a release converge: an ack counts only from
/// a PoP that was served that tenant's manifest at that generation, and refusals are counted.
#[tokio::test]
async fn acks_under_invented_pop_names_are_refused() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    release(&app.router, &["a"]).await;
    let forged = raw_ack(&app.router, "invented-pop", "a", 2).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(forged.body["error"]["code"], "ack_refused");
    // A PoP that fetched generation 2 under its name may acknowledge it; another name may not.
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    assert_eq!(raw_ack(&app.router, "pop-1", "a", 2).await.status, StatusCode::NO_CONTENT);
    assert_eq!(raw_ack(&app.router, "pop-2", "a", 2).await.status, StatusCode::FORBIDDEN);
    // A 304 also counts as being served that generation.
    let revalidated = send_with(
        &app.router,
        "GET",
        "/v1/edge/manifests/a",
        Some(EDGE),
        None,
        &[("edgegen-pop", "pop-3"), ("if-none-match", "\"2\"")],
    )
    .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(raw_ack(&app.router, "pop-3", "a", 2).await.status, StatusCode::NO_CONTENT);
    let bad =
        send_with(&app.router, "GET", "/v1/edge/manifests/a", Some(EDGE), None, &[("edgegen-pop", "no spaces")]).await;
    assert_eq!((bad.status, bad.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_pop")));
    // Fetched through one replica, acknowledged through another (PostgreSQL: three
    // replicas; SQLite: the one): the ack counts, and the convergence is one.
    let other = app.replicas.last().unwrap();
    assert_eq!(fetch_manifest(&app.router, "pop-4", "a").await.status, StatusCode::OK);
    assert_eq!(raw_ack(other, "pop-4", "a", 2).await.status, StatusCode::NO_CONTENT);
    let c = send(other, "GET", "/v1/releases/rel-1/convergence", Some(ADMIN), None).await.body;
    assert_eq!((c["acked"].as_u64(), c["total"].as_u64()), (Some(3), Some(3)), "{c}");
    let metrics = send(&app.router, "GET", "/metrics", None, None).await.text;
    assert!(metrics.contains("edgegen_acks_refused_total 2\n"), "{metrics}");
}

/// Through a replica that did not serve the manifest, an ack is vouched for by the durable
/// fetch record, checked by the ack's own statement: a name that fetched nothing, or a
/// generation past the one fetched, is refused there too. The ack that completes a release
/// marks it converged off the ack's answer, and a read of the release through the replica
/// that took the ack already shows it (no convergence read first).
#[tokio::test]
async fn acks_through_another_replica_are_vouched_by_the_fetch_record() {
    let app = test_app_on(BACKEND);
    let other = app.replicas.last().unwrap();
    add_tenant(&app.router, "a").await;
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    assert_eq!(raw_ack(other, "pop-1", "a", 1).await.status, StatusCode::NO_CONTENT);
    release(&app.router, &["a"]).await; // rel-1: a 1 -> 2
    let early = raw_ack(other, "pop-1", "a", 2).await;
    assert_eq!((early.status, early.body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("ack_refused")));
    assert_eq!(raw_ack(other, "pop-9", "a", 2).await.status, StatusCode::FORBIDDEN, "never fetched");
    let r = send(other, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
    assert_eq!(r["status"], "committed", "refused acks complete nothing");
    assert_eq!(fetch_manifest(&app.router, "pop-1", "a").await.status, StatusCode::OK);
    assert_eq!(raw_ack(other, "pop-1", "a", 2).await.status, StatusCode::NO_CONTENT);
    let r = send(other, "GET", "/v1/releases/rel-1", Some(ADMIN), None).await.body;
    assert_eq!(r["status"], "converged", "{r}");
    let metrics = send(other, "GET", "/metrics", None, None).await.text;
    assert!(metrics.contains("edgegen_acks_refused_total 2\n"), "{metrics}");
}

/// Regression: a mistyped dialect is refused, never analysed as PostgreSQL.
#[tokio::test]
async fn a_mistyped_dialect_is_refused() {
    let app = test_app_on(BACKEND);
    add_tenant(&app.router, "a").await;
    let mut body = analysed_release(&["a"]);
    body["analysis"]["dialect"] = json!("postgress");
    for path in ["/v1/releases", "/v1/releases/plan"] {
        let a = send(&app.router, "POST", path, Some(ADMIN), Some(body.clone())).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", a.text);
        assert!(a.body["error"]["message"].as_str().unwrap().contains("analysis.dialect: \"postgress\""), "{}", a.text);
    }
    assert_eq!(generation(&app.router, "a").await, 1);
}

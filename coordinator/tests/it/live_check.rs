//! The live-data contract check against a real origin on a real socket: twelve tenants, one
//! of which still serves a legacy enum variant; an unreachable origin; the warn policy.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use edgegen_coordinator::analysis::AnalysisConfig;
use edgegen_coordinator::live_check::{self, Policy};
use edgegen_shared::api::StepStatus;
use serde_json::{Value, json};

/// The new contract: `kind` lost its `V2` variant.
fn contract() -> Value {
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "UserProfile", "type": "object",
        "properties": {"id": {"type": "integer", "format": "uint64", "minimum": 0},
                       "profile": {"oneOf": [
                           {"type": "object", "properties": {"kind": {"type": "string", "const": "V1"}, "email": {"type": "string"}}, "required": ["kind", "email"]},
                           {"type": "object", "properties": {"kind": {"type": "string", "const": "V3"}, "email": {"type": "string"}, "verified": {"type": "boolean"}}, "required": ["kind", "email", "verified"]}]}},
        "required": ["id", "profile"]})
}

/// An origin answering as the tenant named by the Host; `t07` still stores `V2` profiles.
async fn origin() -> SocketAddr {
    let app = axum::Router::new().route(
        "/v1/users/{id}",
        get(|headers: HeaderMap, Path(id): Path<u64>| async move {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
            let profile = if host.starts_with("t07.") {
                json!({"kind": "V2", "email": "a@b.c", "phone": null})
            } else {
                json!({"kind": "V3", "email": "a@b.c", "verified": true})
            };
            axum::Json(json!({"id": id, "profile": profile}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(origin: &str, policy: &str) -> AnalysisConfig {
    toml::from_str(&format!(
        r#"
        [[routes]]
        route = "GET /v1/users/{{id}}"
        surrogate_key = "users"
        types = ["UserProfile"]
        samples = ["/v1/users/1", "/v1/users/2", "/v1/users/3", "/v1/users/4", "/v1/users/5", "/v1/users/6"]

        [live_check]
        origin = "{origin}"
        policy = "{policy}"
        timeout_ms = 500
        "#
    ))
    .unwrap()
}

fn tenants() -> Vec<(String, Vec<String>)> {
    (1..=12).map(|i| (format!("t{i:02}"), vec![format!("t{i:02}.test")])).collect()
}

#[tokio::test]
async fn a_tenant_with_a_legacy_variant_blocks_the_release() {
    let addr = origin().await;
    let err = live_check::before_commit(&config(&format!("http://{addr}"), "block"), &tenants(), Some(&contract()))
        .await
        .unwrap_err();
    assert!(err.contains("60 sample(s) of 12 tenant(s)"), "{err}");
    assert!(err.contains("55 valid, 5 invalid, 0 not verified"), "five samples per tenant: {err}");
    assert!(err.contains("tenants holding data the new contract cannot read: t07;"), "{err}");
    assert!(err.contains("t07 /v1/users/1 at /profile"), "tenant, path and pointer: {err}");

    let step = live_check::before_commit(&config(&format!("http://{addr}"), "warn"), &tenants(), Some(&contract()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((step.phase.as_str(), step.status.as_str()), ("contract_verification", "warning"));
    assert!(step.duration_ms > 0.0 && step.duration_ms < 1000.0, "{}", step.duration_ms);

    let clean: Vec<(String, Vec<String>)> = tenants().into_iter().filter(|(t, _)| t != "t07").collect();
    let step = live_check::before_commit(&config(&format!("http://{addr}"), "block"), &clean, Some(&contract()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(step.status, StepStatus::Ok, "{}", step.detail);
}

#[tokio::test]
async fn an_unreachable_origin_never_passes() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = live_check::before_commit(&config(&format!("http://{closed}"), "block"), &tenants(), Some(&contract()))
        .await
        .unwrap_err();
    assert!(err.contains("0 valid, 0 invalid, 60 not verified"), "{err}");
    assert!(err.contains("origin unreachable"), "{err}");
    // Without a new contract or a [analysis.live_check], nothing is checked.
    let none = live_check::before_commit(&AnalysisConfig::default(), &tenants(), Some(&contract())).await.unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn a_slow_origin_times_out_within_the_bound() {
    let app = axum::Router::new().route(
        "/v1/users/{id}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "{}"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let started = std::time::Instant::now();
    let targets = live_check::targets(&tenants()[..2], &["/v1/users/1".to_owned()], 5);
    let validator = std::sync::Arc::new(live_check::validator(&contract()).unwrap());
    let report = live_check::fetch(&format!("http://{addr}"), targets, validator, 2, Duration::from_millis(200)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(report.step(Policy::Block).status, StepStatus::Failed);
    assert!(report.failures()[0].contains("not verified"), "{:?}", report.failures());
}

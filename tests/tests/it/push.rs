//! Push invalidation end to end: the real coordinator's outbox purges each moved tenant's
//! `edgegen-manifest/{tenant}` through the Fastly API stand-in, which applies it at every
//! local PoP (Viceroy, local-stack wasm) through the edge's authenticated purge endpoint. With
//! a manifest max age of 30 s, every PoP re-fetches and acknowledges within a couple of
//! seconds only because of the push. A wrong token changes nothing, and the release wasm has
//! no purge endpoint at all.

use std::time::{Duration, Instant};

use edgegen_shared::{SecretKey, TenantId, probe};
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::fastly_api::{self, FastlyApi};
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, LOCAL_PURGE_TOKEN, PROBE_KEY, Viceroy};
use edgegen_tests::workspace;
use reqwest::Method;
use serde_json::json;

const SERVICE: &str = "pushService01";
const MAX_AGE_MS: &str = "30000";

fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

fn probe_token() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    probe::mint(&TenantId::new("acme").unwrap(), now, now + 600, &SecretKey::new("probe", PROBE_KEY).unwrap()).unwrap()
}

struct Stack {
    api: FastlyApi,
    origin: SampleOrigin,
    coordinator: Coordinator,
    _dir: tempfile::TempDir,
}

/// The stand-in, the origin and a coordinator that purges `SERVICE` through the stand-in,
/// with manifests valid for 30 s; tenant `acme` registered.
async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let api = FastlyApi::start(500).unwrap();
    let origin = SampleOrigin::start(Stamp { schema_version: "1.0.0".into(), contract_hash: contract(1) }).unwrap();
    let env = [
        ("FASTLY_API_URL", api.url()),
        ("FASTLY_API_TOKEN", fastly_api::TOKEN.to_owned()),
        ("FASTLY_SERVICE_ID", SERVICE.to_owned()),
        ("EDGEGEN_MANIFEST_MAX_AGE_MS", MAX_AGE_MS.to_owned()),
    ];
    let data = dir.path().join("coordinator");
    let coordinator = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let addr = ([127, 0, 0, 1], edgegen_tests::process::free_port().unwrap()).into();
        Coordinator::start_on(&data, addr, &env)
    })
    .await
    .unwrap()
    .unwrap();
    let body = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.0.0", "contract_hash": contract(1)});
    coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await.unwrap();
    Stack { api, origin, coordinator, _dir: dir }
}

impl Stack {
    /// A PoP trusting manifests for 30 s.
    fn config(&self, pop: &str) -> EdgeConfig {
        let hosts = vec![("acme.test".to_owned(), TenantId::new("acme").unwrap())];
        let mut config = EdgeConfig::new(self.origin.addr(), Some(self.coordinator.addr()), hosts, pop);
        config.settings = vec![("manifest_max_age_cap_ms".into(), MAX_AGE_MS.into())];
        config
    }
}

/// What a probed read through `edge` shows: (generation, manifest age in ms).
async fn read(edge: &Viceroy) -> (u64, u64) {
    let resp = reqwest::Client::new()
        .get(edge.url("/item"))
        .header("host", "acme.test")
        .header("edgegen-probe", probe_token())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.log_tail(30)));
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let seen = (header("edgegen-generation"), header("edgegen-manifest-age"));
    match seen {
        (Some(g), Some(age)) => (g, age),
        _ => panic!("no probe headers: {:?}\n{}", resp.headers(), edge.log_tail(30)),
    }
}

/// A purge request at `edge` with `token`: (status, body).
async fn purge_at(edge: &Viceroy, token: Option<&str>) -> (u16, String) {
    purge_with(edge, token, false).await
}

/// A purge request at `edge`, soft or hard: (status, body).
async fn purge_with(edge: &Viceroy, token: Option<&str>, soft: bool) -> (u16, String) {
    let mut req =
        reqwest::Client::new().post(edge.url("/.edgegen/purge")).header("surrogate-key", "edgegen-manifest/acme");
    if soft {
        req = req.header("fastly-soft-purge", "1");
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_is_pushed_to_every_pop_long_before_the_manifest_max_age() {
    let s = stack().await;
    let mut edges = Vec::new();
    for p in 1..=3 {
        let config = EdgeConfig { purge_token: Some(LOCAL_PURGE_TOKEN.to_owned()), ..s.config(&format!("pop-{p}")) };
        let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
        s.api.add_pop(SERVICE, &format!("pop-{p}"), &edge.url(""), LOCAL_PURGE_TOKEN);
        edges.push(edge);
    }
    for edge in &edges {
        assert_eq!(read(edge).await.0, 1);
    }

    let release = s
        .coordinator
        .admin(
            Method::POST,
            "/v1/releases",
            Some(json!({"tenants": ["acme"], "schema_version": "1.1.0", "contract_hash": contract(2)})),
        )
        .await
        .unwrap();
    let committed = Instant::now();
    s.origin.set_stamp(Stamp { schema_version: "1.1.0".into(), contract_hash: contract(2) });
    let id = release["id"].as_str().unwrap().to_owned();

    // Every PoP serves generation 2 and has acknowledged it, long before the 30 s max age.
    let deadline = Duration::from_secs(5);
    loop {
        let mut fresh = 0;
        for edge in &edges {
            fresh += usize::from(read(edge).await.0 == 2);
        }
        let conv = s.coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await.unwrap();
        if fresh == edges.len() && conv["acked"] == 3 {
            break;
        }
        assert!(committed.elapsed() < deadline, "not converged {:?} after commit: {conv}", committed.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Through the stand-in: each PoP applied the purge of the tenant's manifest key.
    let purges = s.api.purges();
    for p in 1..=3 {
        let pop = format!("pop-{p}");
        assert!(
            purges.iter().any(|a| a.pop == pop && a.keys.iter().any(|k| k == "edgegen-manifest/acme")),
            "{pop} never applied the manifest purge: {purges:?}"
        );
    }
    let calls = s.api.calls();
    assert!(calls.iter().any(|c| c.starts_with(&format!("POST /service/{SERVICE}/purge"))), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_purge_token_changes_nothing_and_learns_nothing() {
    let s = stack().await;
    let config = s.config("pop-1");
    let config = EdgeConfig { purge_token: Some(LOCAL_PURGE_TOKEN.to_owned()), ..config };
    let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    read(&edge).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, before) = read(&edge).await;
    assert!(before >= 300, "the manifest is held: age {before}");

    let none = purge_at(&edge, None).await;
    for wrong in ["wrong", "harness-purge-token-0123456789abcdef01X", &format!("{LOCAL_PURGE_TOKEN}0")] {
        assert_eq!(purge_at(&edge, Some(wrong)).await, none, "a wrong token is answered as no token");
    }
    assert_ne!(none.0, 200);
    assert!(!none.1.contains("purge"), "{none:?}");
    let (_, after) = read(&edge).await;
    assert!(after >= before, "a wrong token purged the manifest: age {before} -> {after}");

    // The right token purges: the next read re-fetches the manifest.
    let (status, body) = purge_at(&edge, Some(LOCAL_PURGE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("edgegen-manifest/acme"), "{body}");
    let (_, refetched) = read(&edge).await;
    assert!(refetched < after, "the manifest was not purged: age {after} -> {refetched}");

    // A soft purge (Viceroy marks the entry stale) also makes the next read re-fetch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, held) = read(&edge).await;
    assert!(held >= 300, "the manifest is held again: age {held}");
    let (status, body) = purge_with(&edge, Some(LOCAL_PURGE_TOKEN), true).await;
    assert_eq!(status, 200, "{body}");
    let (_, refetched) = read(&edge).await;
    assert!(refetched < held, "the soft purge was ignored: age {held} -> {refetched}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_release_wasm_has_no_purge_endpoint_even_when_a_token_is_configured() {
    let release = std::fs::read(workspace::edge_wasm().unwrap()).unwrap();
    let local = std::fs::read(workspace::edge_wasm_local_stack().unwrap()).unwrap();
    let contains = |wasm: &[u8], needle: &str| wasm.windows(needle.len()).any(|w| w == needle.as_bytes());
    // The purge hostcall's import (`fastly_purge.purge_surrogate_key`) and the token's
    // Secret Store entry: in the local-stack wasm, absent from the release wasm.
    for needle in ["purge_surrogate_key", edgegen_edge::purge::PURGE_TOKEN_SECRET] {
        assert!(contains(&local, needle), "the local-stack wasm has {needle}");
        assert!(!contains(&release, needle), "the release wasm must not have {needle}");
    }

    let s = stack().await;
    let config = EdgeConfig { purge_token: Some(LOCAL_PURGE_TOKEN.to_owned()), ..s.config("pop-1") };
    let wasm = workspace::edge_wasm().unwrap();
    let edge = tokio::task::spawn_blocking(move || Viceroy::start_with_wasm(&config, &wasm)).await.unwrap().unwrap();
    read(&edge).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, before) = read(&edge).await;
    let with_token = purge_at(&edge, Some(LOCAL_PURGE_TOKEN)).await;
    assert_eq!(with_token, purge_at(&edge, None).await, "the release wasm answers a purge as any request");
    assert_ne!(with_token.0, 200);
    let (_, after) = read(&edge).await;
    assert!(after >= before, "the release wasm purged: age {before} -> {after}");
}

/// Fastly's purge endpoints as the stand-in serves them, each applied at the PoP: one key
/// (`POST /service/{id}/purge/{key}`, the key URL-encoded), a batch named by a
/// `Surrogate-Key` header, a soft purge (`Fastly-Soft-Purge: 1`); a wrong `Fastly-Key` and an
/// unknown service purge nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_fastly_stand_in_applies_every_documented_purge_form_at_the_pop() {
    let s = stack().await;
    let config = EdgeConfig { purge_token: Some(LOCAL_PURGE_TOKEN.to_owned()), ..s.config("pop-1") };
    let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    s.api.add_pop(SERVICE, "pop-1", &edge.url(""), LOCAL_PURGE_TOKEN);
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", s.api.url().trim_end_matches('/'));
    // Holds the manifest for at least 300 ms, then `purge` must make the next read re-fetch it.
    async fn held_then_refetched(edge: &Viceroy, purge: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        read(edge).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, held) = read(edge).await;
        assert!(held >= 300, "the manifest is held: age {held}");
        let resp = purge.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or_default();
        let (_, after) = read(edge).await;
        if status == 200 {
            assert!(after < held, "the purge was not applied: age {held} -> {after}");
        } else {
            assert!(after >= held, "a refused purge was applied: age {held} -> {after}");
        }
        (status, body)
    }

    let wrong = http
        .post(api(&format!("/service/{SERVICE}/purge/edgegen-manifest%2Facme")))
        .header("fastly-key", "not-the-token");
    assert_eq!(held_then_refetched(&edge, wrong).await.0, 401);
    let unknown =
        http.post(api("/service/noSuchService/purge/edgegen-manifest%2Facme")).header("fastly-key", fastly_api::TOKEN);
    assert_eq!(held_then_refetched(&edge, unknown).await.0, 404);
    assert!(s.api.purges().is_empty(), "nothing was applied: {:?}", s.api.purges());

    let one = http
        .post(api(&format!("/service/{SERVICE}/purge/edgegen-manifest%2Facme")))
        .header("fastly-key", fastly_api::TOKEN);
    let (status, body) = held_then_refetched(&edge, one).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    let applied = s.api.purges().last().cloned().unwrap();
    assert_eq!(
        (applied.pop.as_str(), applied.keys.clone(), applied.soft),
        ("pop-1", vec!["edgegen-manifest/acme".to_owned()], false)
    );

    let batch = http
        .post(api(&format!("/service/{SERVICE}/purge")))
        .header("fastly-key", fastly_api::TOKEN)
        .header("fastly-soft-purge", "1")
        .header("surrogate-key", "t/acme/g/1 edgegen-manifest/acme");
    let (status, body) = held_then_refetched(&edge, batch).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["t/acme/g/1"].is_string() && body["edgegen-manifest/acme"].is_string(), "an id per key: {body}");
    let applied = s.api.purges().last().cloned().unwrap();
    assert_eq!(applied.keys, ["t/acme/g/1", "edgegen-manifest/acme"]);
    assert!(applied.soft, "the soft purge reached the PoP as one");
}

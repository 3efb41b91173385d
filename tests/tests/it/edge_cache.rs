//! Generation-scoped caching: the release edge wasm under Viceroy, the real coordinator
//! binary and the sample origin, all on 127.0.0.1.

use std::time::Duration;

use edgegen_shared::{SecretKey, TenantId, probe};
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, PROBE_KEY, Viceroy};
use reqwest::Method;
use serde_json::{Value, json};

fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

fn stamp(schema: &str, byte: u8) -> Stamp {
    Stamp { schema_version: schema.into(), contract_hash: contract(byte) }
}

struct Stack {
    origin: SampleOrigin,
    coordinator: Option<Coordinator>,
    edge: Viceroy,
    _dir: tempfile::TempDir,
}

const TENANTS: [&str; 2] = ["acme", "beta"];

/// Origin at build 1.8.2/contract 1, coordinator with both tenants registered at that state
/// (or no coordinator at all), one PoP.
async fn stack(with_coordinator: bool, settings: &[(&str, &str)]) -> Stack {
    stack_with(with_coordinator, settings, false, &[]).await
}

/// A stack whose coordinator (if any) runs with `coordinator_env`.
async fn stack_with(
    with_coordinator: bool,
    settings: &[(&str, &str)],
    test_hooks: bool,
    coordinator_env: &[(&str, &str)],
) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let origin = SampleOrigin::start(stamp("1.8.2", 1)).unwrap();
    let coordinator = if with_coordinator {
        let addr = ([127, 0, 0, 1], edgegen_tests::process::free_port().unwrap()).into();
        Some(Coordinator::start_on(dir.path(), addr, coordinator_env).unwrap())
    } else {
        None
    };
    if let Some(c) = &coordinator {
        for t in TENANTS {
            let body = json!({"id": t, "hosts": [format!("{t}.test")], "schema_version": "1.8.2", "contract_hash": contract(1)});
            c.admin(Method::POST, "/v1/tenants", Some(body)).await.unwrap();
        }
    }
    let hosts = TENANTS.iter().map(|t| (format!("{t}.test"), TenantId::new(*t).unwrap())).collect();
    let mut config = EdgeConfig::new(origin.addr(), coordinator.as_ref().map(Coordinator::addr), hosts, "pop-1");
    config.settings = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    config.test_hooks = test_hooks;
    let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    Stack { origin, coordinator, edge, _dir: dir }
}

fn token(tenant: &str, ttl: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let key = SecretKey::new("probe", PROBE_KEY).unwrap();
    let expires = now.saturating_add_signed(ttl);
    probe::mint(&TenantId::new(tenant).unwrap(), now.min(expires), expires, &key).unwrap()
}

struct Seen {
    status: u16,
    cache: Option<String>,
    key: Option<String>,
    edgegen_headers: usize,
    body: Value,
}

async fn get(s: &Stack, tenant: &str, path: &str, probe: Option<&str>, extra: &[(&str, &str)]) -> Seen {
    let mut req = reqwest::Client::new().get(s.edge.url(path)).header("host", format!("{tenant}.test"));
    if let Some(p) = probe {
        req = req.header("edgegen-probe", p);
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}\n{}", s.edge.log_tail(30)));
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (cache, key) = (header("edgegen-cache"), header("edgegen-key"));
    let edgegen_headers = resp.headers().keys().filter(|k| k.as_str().starts_with("edgegen-")).count();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Seen { status, cache, key, edgegen_headers, body }
}

async fn release(s: &Stack, tenants: &[&str], schema: &str, byte: u8) -> String {
    let body = json!({"tenants": tenants, "schema_version": schema, "contract_hash": contract(byte)});
    let r = s.coordinator.as_ref().unwrap().admin(Method::POST, "/v1/releases", Some(body)).await.unwrap();
    r["id"].as_str().unwrap().to_owned()
}

/// Longer than the manifest max age (1 s): every PoP has re-fetched by then.
async fn past_max_age() {
    tokio::time::sleep(Duration::from_millis(1150)).await;
}

#[tokio::test]
async fn miss_then_hit_then_new_generation_misses_under_a_new_key() {
    let s = stack(true, &[]).await;
    let t = token("acme", 300);
    let first = get(&s, "acme", "/users/1?b=2&a=1", Some(&t), &[]).await;
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("MISS")), "{}", s.edge.log_tail(20));
    let second = get(&s, "acme", "/users/1?a=1&b=2", Some(&t), &[]).await;
    assert_eq!(second.cache.as_deref(), Some("HIT"), "equivalent query, same key");
    assert_eq!(second.key, first.key);
    assert_eq!(second.body, first.body);
    assert_eq!(s.origin.hits("acme", "/users/1?a=1&b=2"), 1, "the origin saw the normalized target once");

    // Release with the origin deployed at the new build.
    let id = release(&s, &["acme"], "1.8.3", 2).await;
    s.origin.set_stamp(stamp("1.8.3", 2));
    past_max_age().await;
    let after = get(&s, "acme", "/users/1?a=1&b=2", Some(&t), &[]).await;
    assert_eq!(after.cache.as_deref(), Some("MISS"));
    assert_ne!(after.key, first.key, "the new generation keys differently");
    assert_eq!(get(&s, "acme", "/users/1?a=1&b=2", Some(&t), &[]).await.cache.as_deref(), Some("HIT"));
    assert_eq!(s.origin.hits("acme", "/users/1?a=1&b=2"), 2);

    // The PoP acknowledged the new generation exactly once: the release converged.
    let coordinator = s.coordinator.as_ref().unwrap();
    let conv = coordinator.admin(Method::GET, &format!("/v1/releases/{id}/convergence"), None).await.unwrap();
    assert_eq!((conv["converged"].as_bool(), conv["acked"].as_u64()), (Some(true), Some(1)), "{conv}");
    for _ in 0..3 {
        get(&s, "acme", "/users/1?a=1&b=2", None, &[]).await;
        past_max_age().await;
    }
    let metrics = reqwest::get(format!("http://{}/metrics", coordinator.addr())).await.unwrap().text().await.unwrap();
    // One ack for generation 1 (first manifest fetch) and one for generation 2; re-fetches of
    // an unchanged generation acknowledge nothing.
    assert!(metrics.contains("edgegen_acks_total 2\n"), "{metrics}");
}

#[tokio::test]
async fn origin_on_another_build_is_served_not_stored_and_reported() {
    let s = stack(true, &[]).await;
    release(&s, &["acme"], "1.8.3", 2).await; // the origin still stamps 1.8.2
    let t = token("acme", 300);
    for _ in 0..2 {
        let seen = get(&s, "acme", "/profile", Some(&t), &[]).await;
        assert_eq!((seen.status, seen.cache.as_deref()), (200, Some("MISMATCH")), "{}", s.edge.log_tail(20));
    }
    assert_eq!(s.origin.hits("acme", "/profile"), 2, "a mismatched response is never stored");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let coordinator = s.coordinator.as_ref().unwrap();
    let metrics = reqwest::get(format!("http://{}/metrics", coordinator.addr())).await.unwrap().text().await.unwrap();
    // Once per (PoP, tenant, generation, kind) within the report window.
    assert!(metrics.contains("edgegen_reports_total{kind=\"contract_mismatch\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn coordinator_down_means_bypass_with_nothing_cached() {
    let s = stack(false, &[]).await;
    let t = token("acme", 300);
    for _ in 0..2 {
        let seen = get(&s, "acme", "/users/1", Some(&t), &[]).await;
        assert_eq!((seen.status, seen.cache.as_deref()), (200, Some("BYPASS")));
        assert_eq!(seen.body["tenant"], "acme");
    }
    assert_eq!(s.origin.hits("acme", "/users/1"), 2);

    let strict = stack(false, &[("no_manifest", "unavailable")]).await;
    let seen = get(&strict, "acme", "/users/1", None, &[]).await;
    assert_eq!(seen.status, 503);
    assert_eq!(strict.origin.hits("acme", "/users/1"), 0);
}

/// Past its max age the PoP revalidates (304 + lease) and keeps its cache; with the
/// coordinator gone it keeps serving from the cache under its last verified manifest until
/// the manifest's stale bound (3 s here), then bypasses.
#[tokio::test]
async fn revalidated_by_lease_and_kept_until_the_stale_bound_without_a_coordinator() {
    kept_until_the_stale_bound(&[]).await;
}

/// The same under `no_manifest = unavailable`: past the stale bound the PoP answers 503,
/// and the origin is not asked.
#[tokio::test]
async fn past_the_stale_bound_a_strict_pop_answers_503() {
    kept_until_the_stale_bound(&[("no_manifest", "unavailable")]).await;
}

async fn kept_until_the_stale_bound(edge_config: &[(&str, &str)]) {
    let strict = edge_config.contains(&("no_manifest", "unavailable"));
    let mut s = stack_with(true, edge_config, false, &[("EDGEGEN_MANIFEST_MAX_STALE_MS", "3000")]).await;
    let t = token("acme", 300);
    assert_eq!(get(&s, "acme", "/users/1", Some(&t), &[]).await.cache.as_deref(), Some("MISS"));
    past_max_age().await;
    assert_eq!(
        get(&s, "acme", "/users/1", Some(&t), &[]).await.cache.as_deref(),
        Some("HIT"),
        "{}",
        s.edge.log_tail(20)
    );
    let revalidated = std::time::Instant::now(); // the lease was issued before this
    let coordinator = s.coordinator.take().unwrap();
    let metrics = reqwest::get(format!("http://{}/metrics", coordinator.addr())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("edgegen_manifests_total{result=\"not_modified\"} 1\n"), "{metrics}");
    drop(coordinator); // SIGKILL to its PID

    // The lease is usable until 3 s after its issue, no longer.
    past_max_age().await;
    assert_eq!(
        get(&s, "acme", "/users/1", Some(&t), &[]).await.cache.as_deref(),
        Some("HIT"),
        "within max_stale: {}",
        s.edge.log_tail(20)
    );
    assert_eq!(s.origin.hits("acme", "/users/1"), 1);
    let state = get(&s, "acme", "/.edgegen/state", Some(&t), &[]).await.body;
    assert_eq!(state["manifest"]["standing"], "stale", "{state}");
    // The failed attempt is remembered in the PoP's Core Cache across requests (each a fresh
    // wasm instance): the PoP does not ask again for one max age (1 s), never past the bound.
    let (now, quiet) = (state["now"].as_u64().unwrap(), state["manifest"]["quiet_until"].as_u64().unwrap());
    assert!(now < quiet && quiet <= now + 1000, "quiet until {quiet} at {now}: {state}");
    assert!(quiet <= state["manifest"]["stale_until"].as_u64().unwrap(), "{state}");
    tokio::time::sleep(Duration::from_millis(3200).saturating_sub(revalidated.elapsed())).await;
    let seen = get(&s, "acme", "/users/1", Some(&t), &[]).await;
    if strict {
        assert_eq!(seen.status, 503, "past max_stale, no_manifest = unavailable: {}", s.edge.log_tail(20));
        assert_eq!(s.origin.hits("acme", "/users/1"), 1, "the origin is not asked");
    } else {
        assert_eq!((seen.status, seen.cache.as_deref()), (200, Some("BYPASS")), "past max_stale");
        assert_eq!(s.origin.hits("acme", "/users/1"), 2);
    }
}

#[tokio::test]
async fn tenants_never_share_an_object_and_unkeyed_headers_never_reach_the_origin() {
    let s = stack(true, &[]).await;
    let spoof = [
        ("x-forwarded-host", "evil.test"),
        ("x-original-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("forwarded", "host=evil.test"),
        ("edgegen-tenant", "beta"),
        ("edgegen_tenant", "beta"),
    ];
    for round in 0..2 {
        for tenant in TENANTS {
            let seen = get(&s, tenant, "/same/path", Some(&token(tenant, 300)), &spoof).await;
            assert_eq!(seen.body["tenant"], tenant, "round {round}: {tenant} got another tenant's object");
            let names: Vec<&str> =
                seen.body["header_names"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            for (spoofed, _) in spoof {
                assert!(
                    !names.contains(&spoofed) || spoofed == "edgegen-tenant",
                    "{spoofed} reached the origin: {names:?}"
                );
            }
            assert_eq!(seen.body["edgegen_headers"]["edgegen-tenant"], tenant);
        }
    }
    assert_eq!((s.origin.hits("acme", "/same/path"), s.origin.hits("beta", "/same/path")), (1, 1));
}

#[tokio::test]
async fn probes_need_a_valid_token_for_this_tenant() {
    let s = stack(true, &[]).await;
    let valid = get(&s, "acme", "/p", Some(&token("acme", 300)), &[]).await;
    assert_eq!(valid.cache.as_deref(), Some("MISS"));
    assert_eq!(valid.edgegen_headers, 8, "all debug headers");
    let genuine = token("acme", 300);
    let (head, last) = genuine.split_at(genuine.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    for (name, t) in [
        ("forged", forged),
        ("expired", token("acme", -10)),
        ("other tenant", token("beta", 300)),
        ("garbage", "x".into()),
    ] {
        let seen = get(&s, "acme", "/p", Some(&t), &[]).await;
        assert_eq!(seen.edgegen_headers, 0, "{name}: no debug header without a valid token");
        assert_eq!(seen.body, valid.body, "{name}: same answer as without a token");
    }
    // The state endpoint answers only a valid probe; otherwise it is an ordinary path.
    let state = get(&s, "acme", "/.edgegen/state", Some(&token("acme", 300)), &[]).await;
    assert_eq!(state.body["manifest"]["valid"], true, "{}", state.body);
    assert_eq!(state.body["manifest"]["manifest"]["generation"], 1);
    let plain = get(&s, "acme", "/.edgegen/state", None, &[]).await;
    assert_eq!(plain.body["target"], "/.edgegen/state", "passed to the origin like any path");
}

#[tokio::test]
async fn cookie_and_no_store_responses_are_never_stored() {
    let s = stack(true, &[]).await;
    // A 500 with explicit freshness may be stored (RFC 9111 §3); these may not.
    for path in ["/set-cookie", "/no-store"] {
        for _ in 0..2 {
            get(&s, "acme", path, None, &[]).await;
        }
        assert_eq!(s.origin.hits("acme", path), 2, "{path} was stored");
    }
    // Credentialed and non-GET requests pass.
    let t = token("acme", 300);
    let seen = get(&s, "acme", "/private", Some(&t), &[("authorization", "Bearer x")]).await;
    assert_eq!(seen.cache.as_deref(), Some("PASS"));
}

/// An object found under the current key but stored under another generation is never
/// served: it is refetched (STALE-REJECTED) and overwritten. Planting such an object needs
/// the test wasm's hook: from outside, every scope change also changes the key.
#[tokio::test]
async fn an_object_with_stale_metadata_is_rejected_and_overwritten() {
    let s = stack_with(true, &[], true, &[]).await;
    let t = token("acme", 300);
    let planted = reqwest::Client::new()
        .get(s.edge.url("/users/7"))
        .header("host", "acme.test")
        .header("edgegen-probe", &t)
        .header("edgegen-test-plant", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(planted.status(), 204, "{}", s.edge.log_tail(20));
    let seen = get(&s, "acme", "/users/7", Some(&t), &[]).await;
    assert_eq!(seen.cache.as_deref(), Some("STALE-REJECTED"));
    assert_eq!(seen.body["tenant"], "acme", "the origin's answer, not the planted object: {}", seen.body);
    let again = get(&s, "acme", "/users/7", Some(&t), &[]).await;
    assert_eq!(again.cache.as_deref(), Some("HIT"), "the stale object was overwritten");
    assert_eq!(again.body, seen.body);
    assert_eq!(s.origin.hits("acme", "/users/7"), 1);
}

/// Concurrent misses for one key wait on one Core Cache transaction: one origin fetch.
#[tokio::test]
async fn concurrent_misses_collapse_to_one_origin_fetch() {
    let s = stack(true, &[]).await;
    get(&s, "acme", "/warm", None, &[]).await; // the manifest is cached before the burst
    let mut burst = Vec::new();
    for _ in 0..12 {
        let req = reqwest::Client::new().get(s.edge.url("/collapsed")).header("host", "acme.test");
        burst.push(tokio::spawn(async move { req.send().await.unwrap().json::<Value>().await.unwrap() }));
    }
    for r in burst {
        assert_eq!(r.await.unwrap()["tenant"], "acme");
    }
    assert_eq!(s.origin.hits("acme", "/collapsed"), 1, "{}", s.edge.log_tail(20));
}

/// `edgegen probe URL` shows the edge's view with a freshly minted token.
#[tokio::test]
async fn edgegen_probe_cli_shows_the_edge_view() {
    let s = stack(true, &[]).await;
    let bin = edgegen_tests::workspace::coordinator_bin().unwrap();
    let url = s.edge.url("/via/cli");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["--json", "probe", "--tenant", "acme", "--host", "acme.test", &url])
            .env("EDGEGEN_PROBE_KEY", PROBE_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["status"], 200);
    assert_eq!(view["edge"]["edgegen-cache"], "MISS");
    assert_eq!(view["edge"]["edgegen-tenant"], "acme");
    assert_eq!(view["edge"]["edgegen-generation"], "1");
}

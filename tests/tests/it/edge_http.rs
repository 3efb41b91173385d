//! RFC 9111 behaviour of the release edge wasm under Viceroy, in front of the scripted sample
//! origin and the real coordinator: Vary, whole field values, Age, validation, ranges, stale
//! serving, invalidation, poisoning hardening and report abuse. Each behaviour's rules are
//! unit-tested natively in `edgegen-edge`; these show the Fastly shell carries them out.

use std::time::Duration;

use edgegen_shared::TenantId;
use edgegen_tests::coordinator::Coordinator;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use reqwest::Method;
use serde_json::{Value, json};

fn contract(byte: u8) -> String {
    format!("sha256:{}", hex::encode([byte; 32]))
}

struct Stack {
    origin: Option<SampleOrigin>,
    coordinator: Coordinator,
    edge: Viceroy,
    _dir: tempfile::TempDir,
}

async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let origin = SampleOrigin::start(Stamp { schema_version: "1.8.2".into(), contract_hash: contract(1) }).unwrap();
    let coordinator = Coordinator::start(dir.path()).unwrap();
    let body = json!({"id": "acme", "hosts": ["acme.test"], "schema_version": "1.8.2", "contract_hash": contract(1)});
    coordinator.admin(Method::POST, "/v1/tenants", Some(body)).await.unwrap();
    let hosts = vec![("acme.test".to_owned(), TenantId::new("acme").unwrap())];
    let config = EdgeConfig::new(origin.addr(), Some(coordinator.addr()), hosts, "pop-1");
    let edge = tokio::task::spawn_blocking(move || Viceroy::start(&config)).await.unwrap().unwrap();
    Stack { origin: Some(origin), coordinator, edge, _dir: dir }
}

struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// The origin's per-target hit count carried in the body: which origin answer this is.
    fn n(&self) -> u64 {
        self.json()["n"].as_u64().unwrap_or(0)
    }
}

impl Stack {
    async fn send(&self, method: Method, target: &str, headers: &[(&str, &str)], body: Option<&str>) -> Seen {
        let mut req = reqwest::Client::new().request(method, self.edge.url(target)).header("host", "acme.test");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{target}: {e}\n{}", self.edge.log_tail(30)));
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        Seen { status, headers, body: resp.text().await.unwrap_or_default() }
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Seen {
        self.send(Method::GET, target, headers, None).await
    }

    fn hits(&self, target: &str) -> u64 {
        self.origin.as_ref().map_or(0, |o| o.hits("acme", target))
    }

    /// Contract-mismatch reports the coordinator received.
    async fn reports(&self) -> u64 {
        let url = format!("http://{}/metrics", self.coordinator.addr());
        let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("edgegen_reports_total{kind=\"contract_mismatch\"} "))
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

#[tokio::test]
async fn vary_variants_and_every_cache_control_line() {
    let s = stack().await;
    // Two Vary lines: Accept-Encoding, then X-Lang.
    let t = "/vary?h=Cache-Control:max-age%3D60&h=Vary:Accept-Encoding&h=Vary:X-Lang";
    let gzip_en = s.get(t, &[("accept-encoding", "gzip, br"), ("x-lang", "en")]).await;
    assert_eq!(gzip_en.status, 200, "{}", s.edge.log_tail(20));
    assert_eq!(s.get(t, &[("accept-encoding", "br,gzip"), ("x-lang", "en")]).await.n(), gzip_en.n(), "same codings");
    let fr = s.get(t, &[("accept-encoding", "gzip, br"), ("x-lang", "fr")]).await;
    assert_ne!(fr.n(), gzip_en.n(), "the second Vary line selects the variant too");
    assert_eq!(s.get(t, &[("accept-encoding", "gzip, br"), ("x-lang", "fr")]).await.n(), fr.n());
    assert_eq!(s.hits(t), 2);

    // A private on a second Cache-Control line is never served to another client.
    let p = "/me?h=Cache-Control:max-age%3D3600&h=Cache-Control:private";
    s.get(p, &[("x-user", "alice")]).await;
    let bob = s.get(p, &[("x-user", "bob")]).await;
    assert_eq!(bob.n(), 2, "bob got alice's answer");
}

#[tokio::test]
async fn age_validation_head_and_ranges() {
    let s = stack().await;
    let aged = "/aged?h=Cache-Control:max-age%3D100&h=Age:50";
    s.get(aged, &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = s.get(aged, &[]).await;
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((51..=53).contains(&age), "the origin's Age counts: {age}");
    assert!(hit.header("content-length").is_some(), "HITs keep Content-Length");

    // A stale object with an ETag is revalidated; the 304 refreshes it.
    let r = "/reval?etag=v1&h=Cache-Control:max-age%3D1";
    let first = s.get(r, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let revalidated = s.get(r, &[]).await;
    assert_eq!((revalidated.status, revalidated.body.as_str()), (200, first.body.as_str()), "{}", s.edge.log_tail(20));
    assert_eq!(s.hits(r), 2, "one conditional request, answered 304");
    // The client's own conditional gets a 304 from the edge.
    let client = s.get(r, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((client.status, client.body.as_str()), (304, ""));

    let body = "/range?h=Cache-Control:max-age%3D60";
    let full = s.get(body, &[]).await;
    let head = s.send(Method::HEAD, body, &[], None).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let part = s.get(body, &[("range", "bytes=2-5")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, full.body[2..=5]);
    assert_eq!(part.header("content-range"), Some(format!("bytes 2-5/{}", full.body.len()).as_str()));
    assert_eq!(s.hits(body), 1);
}

#[tokio::test]
async fn stale_while_revalidate_and_stale_if_error() {
    let mut s = stack().await;
    let swr = "/swr?h=Cache-Control:max-age%3D1,stale-while-revalidate%3D30";
    s.get(swr, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = s.get(swr, &[]).await;
    assert_eq!(stale.n(), 1, "served stale");
    // The refresh runs after the response: it shows up at the origin, then as a HIT.
    let mut refreshed = false;
    for _ in 0..40 {
        if s.hits(swr) == 2 {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refreshed, "{}", s.edge.log_tail(20));
    // The origin counts the refresh when it receives it; the PoP stores the answer a moment
    // later, so the refreshed object is served as soon as that write lands.
    let mut served = 0;
    for _ in 0..40 {
        served = s.get(swr, &[]).await.n();
        if served >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 2, "the refreshed object is served (got version {served})");

    let sie = "/sie?h=Cache-Control:max-age%3D1,stale-if-error%3D60";
    let good = s.get(sie, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.origin.as_ref().unwrap().set_failing(true);
    let on_503 = s.get(sie, &[]).await;
    assert_eq!((on_503.status, on_503.body.as_str()), (200, good.body.as_str()), "stale-if-error on a 503");
    let plain = "/plain?h=Cache-Control:max-age%3D1";
    s.origin.as_ref().unwrap().set_failing(false);
    s.get(plain, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.origin = None; // the origin goes away: unreachable
    let unreachable = s.get(sie, &[]).await;
    assert_eq!(
        (unreachable.status, unreachable.body.as_str()),
        (200, good.body.as_str()),
        "stale-if-error when unreachable"
    );
    assert_eq!(s.get(plain, &[]).await.status, 502, "without stale-if-error the error is shown");
}

#[tokio::test]
async fn post_invalidates_the_target() {
    let s = stack().await;
    let t = "/item?h=Cache-Control:max-age%3D600";
    s.get(t, &[]).await;
    assert_eq!(s.get(t, &[]).await.n(), 1);
    let post = s.send(Method::POST, t, &[], Some("update")).await;
    assert_eq!(post.json()["body_len"], 6, "a POST body reaches the origin");
    assert_eq!(s.get(t, &[]).await.n(), 3, "the POST invalidated the stored GET");
}

#[tokio::test]
async fn fat_gets_and_override_headers_never_reach_the_origin() {
    let s = stack().await;
    let t = "/fat?h=Cache-Control:max-age%3D60";
    let headers = [
        ("x-forwarded-ssl", "on"),
        ("front-end-https", "on"),
        ("x-forwarded-uri", "/admin"),
        ("x-forwarded-path", "/admin"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-port", "8443"),
        ("x_forwarded_host", "evil.test"),
        ("x_http_method_override", "DELETE"),
        ("x_original_url", "/admin"),
        ("connection", "x-nominated"),
        ("x-nominated", "1"),
        ("x-middleware-subrequest", "middleware"),
        ("x-now-route-matches", "1"),
        ("fastly-client-ip", "10.0.0.1"),
        ("cf-connecting-ip", "10.0.0.1"),
    ];
    let seen = s.send(Method::GET, t, &headers, Some("smuggled body")).await;
    assert_eq!(seen.status, 200, "{}", s.edge.log_tail(20));
    let body = seen.json();
    assert_eq!(body["body_len"], 0, "the GET body was dropped");
    let names: Vec<&str> = body["header_names"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for (name, _) in headers {
        assert!(!names.contains(&name), "{name} reached the origin: {names:?}");
    }
}

#[tokio::test]
async fn anonymous_requests_cannot_trigger_reports() {
    let s = stack().await;
    for _ in 0..5 {
        assert_eq!(s.get("/no-such-page", &[]).await.status, 404);
    }
    // A release the origin has not deployed: its storable answers mismatch, reported once.
    let body = json!({"tenants": ["acme"], "schema_version": "1.8.3", "contract_hash": contract(2)});
    s.coordinator.admin(Method::POST, "/v1/releases", Some(body)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1150)).await;
    for _ in 0..5 {
        s.get("/no-such-page", &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.reports().await, 0, "unstamped, unstorable 404s are no evidence");
    for path in ["/a", "/b", "/a"] {
        s.get(path, &[]).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.reports().await, 1, "{}", s.edge.log_tail(20));
}

#[tokio::test]
async fn a_duplicate_host_is_refused() {
    use std::io::{Read, Write};
    let s = stack().await;
    let mut stream = std::net::TcpStream::connect(s.edge.addr()).unwrap();
    write!(stream, "GET /x HTTP/1.1\r\nHost: acme.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    let refused_by_platform = out.is_empty() || out.starts_with("HTTP/1.1 400");
    assert!(refused_by_platform, "{out}");
    assert_eq!(s.hits("/x"), 0);
}

/// An object stored with generous stale windows under generation 1 is never the stale answer
/// of generation 2: after a release, an origin error is shown, not the old object.
#[tokio::test]
async fn stale_serving_never_crosses_a_release() {
    let s = stack().await;
    let t = "/gen?h=Cache-Control:max-age%3D1,stale-while-revalidate%3D600,stale-if-error%3D600";
    let old = s.get(t, &[]).await;
    assert_eq!(old.status, 200);
    let body = json!({"tenants": ["acme"], "schema_version": "1.8.3", "contract_hash": contract(2)});
    s.coordinator.admin(Method::POST, "/v1/releases", Some(body)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.origin.as_ref().unwrap().set_failing(true);
    let after = s.get(t, &[]).await;
    assert_eq!(after.status, 503, "generation 1's object was served stale: {}", after.body);
    assert_ne!(after.body, old.body);
}

/// Sends one raw HTTP/1.1 request (for request forms `reqwest` never produces) and returns
/// the response text, empty when the platform closed the connection.
fn raw(s: &Stack, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(s.edge.addr()).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// An absolute-form request target names another authority than `Host`: the tenant still
/// comes from `Host` only, the origin never sees the other authority, and the answer is the
/// one a plain request for that path gets.
#[tokio::test]
async fn absolute_form_targets_never_choose_the_tenant() {
    let s = stack().await;
    let t = "/abs?h=Cache-Control:max-age%3D60";
    let out = raw(&s, &format!("GET http://evil.test{t} HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n"));
    let served = out.starts_with("HTTP/1.1 200");
    assert!(served || out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    if served {
        assert_eq!(s.hits(t), 1, "served for acme (the origin counts per tenant): {out}");
        assert!(!out.contains("evil.test"), "the other authority reached the origin: {out}");
    }
    let plain = s.get(t, &[]).await;
    assert_eq!(plain.n(), 1, "one object for the path, whatever the request form");
    // The other way round: a known tenant's authority in the target, an unknown Host.
    let out = raw(
        &s,
        "GET http://acme.test/abs2?h=Cache-Control:max-age%3D60 HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    );
    assert!(!out.starts_with("HTTP/1.1 200"), "an unknown Host was served as acme: {out}");
    assert_eq!(s.hits("/abs2?h=Cache-Control:max-age%3D60"), 0);
}

/// CPDoS: an error the origin marks cacheable (here for every request) is never stored, so
/// an attacker's malformed request cannot become every client's answer.
#[tokio::test]
async fn request_provoked_errors_are_never_stored() {
    let s = stack().await;
    for status in [400, 431, 500] {
        // Parameters in key order: the origin counts the target as the edge forwards it.
        let t = format!("/cpdos?h=Cache-Control:public,max-age%3D600&status={status}");
        assert_eq!(s.get(&t, &[("x-oversized", &"x".repeat(4000))]).await.status, status);
        assert_eq!(s.get(&t, &[]).await.status, status);
        assert_eq!(s.hits(&t), 2, "status {status} was stored");
    }
}

/// A CORS grant for one origin, sent without `Vary: Origin`, is keyed by `Origin` anyway.
#[tokio::test]
async fn a_cors_grant_is_keyed_by_origin() {
    let s = stack().await;
    let t = "/cors?h=Cache-Control:max-age%3D60&h=Access-Control-Allow-Origin:https://app.example";
    let app = s.get(t, &[("origin", "https://app.example")]).await;
    assert!(app.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")), "{:?}", app.headers);
    s.get(t, &[("origin", "https://evil.example")]).await;
    assert_eq!(s.get(t, &[("origin", "https://app.example")]).await.n(), app.n());
    assert_eq!(s.hits(t), 2, "one object per Origin");
}

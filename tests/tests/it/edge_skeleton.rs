//! The release edge wasm under Viceroy, in front of the sample origin: tenant routing by
//! Host, the `edgegen-*` header boundary in both directions, and JSON errors.

use edgegen_shared::TenantId;
use edgegen_tests::origin::{SampleOrigin, Stamp};
use edgegen_tests::viceroy::{EdgeConfig, Viceroy};
use serde_json::Value;

fn stack() -> (SampleOrigin, Viceroy) {
    let origin = SampleOrigin::start(Stamp {
        schema_version: "1.8.2".into(),
        contract_hash: format!("sha256:{}", "11".repeat(32)),
    })
    .unwrap();
    let hosts = vec![
        ("acme.test".into(), TenantId::new("acme").unwrap()),
        ("beta.test".into(), TenantId::new("beta").unwrap()),
    ];
    let edge = Viceroy::start(&EdgeConfig::new(origin.addr(), None, hosts, "local-1")).unwrap();
    (origin, edge)
}

async fn get(edge: &Viceroy, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(edge.url(path)).header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap_or_else(|e| panic!("GET {path} via {host}: {e}\n{}", edge.log_tail(20)))
}

#[tokio::test]
async fn routes_by_host_and_guards_the_edgegen_namespace() {
    let (_origin, edge) = stack();

    for (host, tenant) in [("acme.test", "acme"), ("BETA.test:443", "beta")] {
        // A client claiming another tenant, or sending a probe, changes nothing it can see.
        let spoofing = [
            ("edgegen-tenant", "evil"),
            ("edgegen_tenant", "evil"),
            ("edgegen-probe", "x"),
            ("x-original-url", "/admin"),
        ];
        let resp = get(&edge, host, "/users/42?b=2&a=1", &spoofing).await;
        assert_eq!(resp.status(), 200, "{host}");
        let leaked: Vec<_> = resp.headers().keys().filter(|k| k.as_str().starts_with("edgegen-")).collect();
        assert!(leaked.is_empty(), "{host}: origin's edgegen-* headers reached the client: {leaked:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["tenant"], tenant, "{host}");
        assert_eq!(body["edgegen_headers"], serde_json::json!({ "edgegen-tenant": tenant }), "{host}");
        assert_eq!(body["target"], "/users/42?b=2&a=1");
        assert_eq!(body["host"], host.to_ascii_lowercase().trim_end_matches(":443"), "canonical host, no port");
        assert_eq!(body["path_override"], Value::Null, "path-override headers never reach the origin");
    }
}

#[tokio::test]
async fn unknown_and_missing_hosts_get_json_errors() {
    let (_origin, edge) = stack();

    let resp = get(&edge, "other.test", "/", &[]).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_host");
    assert_eq!(body["error"]["message"], "no tenant is configured for host \"other.test\"");

    // HTTP clients refuse to send a malformed Host, so speak HTTP/1.1 by hand. Viceroy itself
    // drops some (as Fastly does); whatever gets through must get a 400, never origin data.
    for host_line in ["Host: a_b.test\r\n", "Host: acme test\r\n", "Host: acme.test/evil\r\n", ""] {
        let raw = raw_get(&edge, host_line);
        let refused_by_platform = raw.is_empty();
        let bad_host = raw.starts_with("HTTP/1.1 400") && raw.contains("\"code\":\"bad_host\"");
        assert!(refused_by_platform || bad_host, "{host_line:?}: {raw}");
    }
    assert!(raw_get(&edge, "Host: a_b.test\r\n").contains("bad_host"), "our own check must answer");
}

fn raw_get(edge: &Viceroy, host_line: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(edge.addr()).unwrap();
    write!(stream, "GET / HTTP/1.1\r\n{host_line}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    // A connection the platform closes without answering reads as empty.
    let _ = stream.read_to_string(&mut out);
    out
}

/// The repository's own `fastly.toml` runs the edge under Viceroy as the README says.
#[tokio::test]
async fn repository_fastly_toml_runs_under_viceroy() {
    let edge = Viceroy::start_with_fastly_toml(&edgegen_tests::workspace::root().join("fastly.toml")).unwrap();
    let resp = get(&edge, "unknown.localhost", "/", &[]).await;
    assert_eq!(resp.status(), 404, "{}", edge.log_tail(20));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_host");
    // acme.localhost is mapped, but nothing listens on its origin port here: the edge must
    // say so explicitly rather than fail with a platform error.
    let resp = get(&edge, "acme.localhost", "/", &[]).await;
    assert_eq!(resp.status(), 502, "{}", edge.log_tail(20));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_unreachable");
}

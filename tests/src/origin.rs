//! A sample multi-tenant origin (axum) for exercising the edge. Every answer is JSON naming
//! the tenant the edge said it serves, the target, and the request headers it received; it
//! stamps `edgegen-schema`/`edgegen-contract` from its current build (switchable, to play an
//! origin mid-rollout) and counts requests per target. Special paths: `/status/500`,
//! `/set-cookie`, `/no-store` (responses that must never be stored), `/no-such-page` (an
//! unstamped 404 without cache directives, as a framework answers an unknown route).
//!
//! Scripted answers for HTTP-caching tests come from the query string: `status=N`, one
//! `h=Name:Value` per response field line (replacing the default `Cache-Control`), and
//! `etag=V` (sent as `ETag: "V"`; a request whose `If-None-Match` carries it gets a 304),
//! `size=N` (N bytes of padding in the body).
//! The JSON names the hit count `n` for the target and the request body's length.
//! [`SampleOrigin::set_failing`] makes every answer a 503. It runs as a [`BackgroundServer`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

use crate::server::BackgroundServer;

/// What the origin stamps on its responses (its "build").
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `edgegen-schema`.
    pub schema_version: String,
    /// `edgegen-contract`.
    pub contract_hash: String,
}

#[derive(Clone)]
struct Shared {
    stamp: Arc<Mutex<Stamp>>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    scripted_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// A running sample origin; stopped (gracefully) on drop.
pub struct SampleOrigin {
    server: BackgroundServer,
    shared: Shared,
}

impl SampleOrigin {
    /// Starts the origin on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(stamp: Stamp) -> anyhow::Result<Self> {
        let shared = Shared {
            stamp: Arc::new(Mutex::new(stamp)),
            hits: Arc::new(Mutex::new(HashMap::new())),
            failing: Arc::default(),
            scripted_bytes: Arc::default(),
        };
        let state = shared.clone();
        let app =
            Router::new().fallback(move |method, uri, headers, body| handle(state.clone(), method, uri, headers, body));
        Ok(SampleOrigin { server: BackgroundServer::start("sample-origin", app)?, shared })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Switches the build it stamps (a deploy of the origin).
    pub fn set_stamp(&self, stamp: Stamp) {
        *self.shared.stamp.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
    }

    /// Makes every answer a 503 (`true`) or normal again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes of the scripted answers sent so far: status line, header lines and body, as
    /// HTTP/1.1 frames them (what a 304 saves over a refetch).
    pub fn scripted_bytes(&self) -> u64 {
        self.shared.scripted_bytes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests reached it for `tenant` and `target` (path and query, as received).
    pub fn hits(&self, tenant: &str, target: &str) -> u64 {
        let hits = self.shared.hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.get(&format!("{tenant} {target}")).copied().unwrap_or(0)
    }
}

/// `%XX` and `+` decoding of one query component (lossy on invalid UTF-8).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let edgegen: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("edgegen-"))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into()))
        .collect();
    let tenant = header("edgegen-tenant").unwrap_or_default();
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let n = {
        let mut hits = shared.hits.lock().unwrap_or_else(|p| p.into_inner());
        let count = hits.entry(format!("{tenant} {target}")).or_insert(0);
        *count += 1;
        *count
    };
    let stamp = shared.stamp.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stamps = [("edgegen-schema", stamp.schema_version.clone()), ("edgegen-contract", stamp.contract_hash.clone())];
    if uri.path() == "/no-such-page" {
        // What a framework answers for an unknown route: no stamps, no cache directives.
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if shared.failing.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, stamps, "origin failing").into_response();
    }
    let params: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let scripted = params.iter().any(|(k, _)| matches!(k.as_str(), "h" | "status" | "etag"));
    if scripted {
        let etag = param("etag").map(|e| format!("\"{e}\""));
        let not_modified =
            etag.as_ref().is_some_and(|e| header("if-none-match").is_some_and(|inm| inm.contains(e.as_str())));
        let status = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            param("status")
                .and_then(|s| s.parse().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK)
        };
        let size = param("size").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0).min(1 << 20);
        let body = serde_json::json!({
            "n": n,
            "method": method.as_str(),
            "target": target,
            "body_len": body.len(),
            "header_names": headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            "pad": "x".repeat(size),
        });
        let mut response =
            if not_modified { status.into_response() } else { (status, body.to_string()).into_response() };
        let out = response.headers_mut();
        for (name, value) in stamps {
            if let Ok(v) = value.parse() {
                out.insert(name, v);
            }
        }
        if !not_modified {
            out.insert("content-type", axum::http::HeaderValue::from_static("application/json"));
        }
        if let Some(Ok(v)) = etag.map(|e| e.parse()) {
            out.insert("etag", v);
        }
        for (k, v) in &params {
            if k != "h" {
                continue;
            }
            if let Some((name, value)) = v.split_once(':')
                && let (Ok(name), Ok(value)) =
                    (axum::http::HeaderName::try_from(name.trim()), axum::http::HeaderValue::try_from(value.trim()))
            {
                out.append(name, value);
            }
        }
        let head: usize = response.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let body_len = if not_modified { 0 } else { body.to_string().len() };
        let framed = "HTTP/1.1 200 OK\r\n".len() + head + 2 + body_len;
        shared.scripted_bytes.fetch_add(framed as u64, std::sync::atomic::Ordering::SeqCst);
        return response;
    }
    let body = serde_json::json!({
        "tenant": tenant,
        "method": method.as_str(),
        "target": target,
        "host": header("host"),
        "path_override": header("x-original-url").or_else(|| header("x-rewrite-url")),
        "header_names": headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        "edgegen_headers": edgegen,
        "build": stamp.schema_version,
    });
    let (status, cache_control, cookie) = match uri.path() {
        "/status/500" => (StatusCode::INTERNAL_SERVER_ERROR, "public, max-age=60", false),
        "/set-cookie" => (StatusCode::OK, "public, max-age=60", true),
        "/no-store" => (StatusCode::OK, "no-store", false),
        _ => (StatusCode::OK, "public, max-age=60", false),
    };
    let mut response = (
        status,
        [
            ("content-type", "application/json".to_owned()),
            ("cache-control", cache_control.to_owned()),
            ("surrogate-key", "sample".to_owned()),
            ("edgegen-schema", stamp.schema_version),
            ("edgegen-contract", stamp.contract_hash),
        ],
        body.to_string(),
    )
        .into_response();
    let _ = n;
    if cookie && let Ok(v) = "session=abc".parse() {
        response.headers_mut().insert("set-cookie", v);
    }
    response
}

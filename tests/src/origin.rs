//! A sample multi-tenant origin (axum) for exercising the edge. Every answer is JSON naming
//! the tenant the edge said it serves, the target, and the request headers it received; it
//! stamps `edgegen-schema`/`edgegen-contract` from its current build (switchable, to play an
//! origin mid-rollout) and counts requests per target. Special paths: `/status/500`,
//! `/set-cookie`, `/no-store` (responses that must never be stored). It runs as a
//! [`BackgroundServer`]. The richer demo
//! origin (per-tenant SQLite shards, two builds) arrives with the local-stack issue.

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
        let shared = Shared { stamp: Arc::new(Mutex::new(stamp)), hits: Arc::new(Mutex::new(HashMap::new())) };
        let state = shared.clone();
        let app = Router::new().fallback(move |method, uri, headers| handle(state.clone(), method, uri, headers));
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

    /// How many requests reached it for `tenant` and `target` (path and query, as received).
    pub fn hits(&self, tenant: &str, target: &str) -> u64 {
        let hits = self.shared.hits.lock().unwrap_or_else(|p| p.into_inner());
        hits.get(&format!("{tenant} {target}")).copied().unwrap_or(0)
    }
}

async fn handle(shared: Shared, method: Method, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let edgegen: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("edgegen-"))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into()))
        .collect();
    let tenant = header("edgegen-tenant").unwrap_or_default();
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    *shared.hits.lock().unwrap_or_else(|p| p.into_inner()).entry(format!("{tenant} {target}")).or_insert(0) += 1;
    let stamp = shared.stamp.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
    if cookie && let Ok(v) = "session=abc".parse() {
        response.headers_mut().insert("set-cookie", v);
    }
    response
}

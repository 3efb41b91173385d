//! A sample multi-tenant origin (axum) for exercising the edge: it answers every GET with a
//! JSON body naming the tenant the edge said it serves and every `edgegen-*` header it
//! received, stamps `edgegen-schema`/`edgegen-contract`, and sends `Cache-Control` and
//! `Surrogate-Key`. It runs on its own thread and runtime, so blocking test code (waiting for
//! Viceroy, which probes its backends at start-up) never stalls it. The richer demo origin
//! (per-tenant SQLite shards, two builds) arrives with the local-stack issue.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use tokio::sync::oneshot;

/// What the origin stamps on its responses.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `edgegen-schema`.
    pub schema_version: String,
    /// `edgegen-contract`.
    pub contract_hash: String,
}

/// A running sample origin; stopped (gracefully) on drop.
pub struct SampleOrigin {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SampleOrigin {
    /// Starts the origin on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(stamp: Stamp) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the sample origin")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("sample-origin".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
                let app =
                    Router::new().fallback(move |method, uri, headers| handle(stamp.clone(), method, uri, headers));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        })?;
        Ok(SampleOrigin { addr, shutdown: Some(tx), thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SampleOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(stamp: Stamp, method: Method, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    let edgegen: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("edgegen-"))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into()))
        .collect();
    let tenant = headers.get("edgegen-tenant").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = serde_json::json!({
        "tenant": tenant,
        "host": header("host"),
        "path_override": header("x-original-url").or_else(|| header("x-rewrite-url")),
        "method": method.as_str(),
        "target": uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "edgegen_headers": edgegen,
    });
    (
        [
            ("content-type", "application/json".to_owned()),
            ("cache-control", "public, max-age=60".to_owned()),
            ("surrogate-key", "sample".to_owned()),
            ("edgegen-schema", stamp.schema_version),
            ("edgegen-contract", stamp.contract_hash),
        ],
        body.to_string(),
    )
}

//! `edgegen serve`: resolves the config, opens the store, serves until Ctrl-C or SIGTERM.
//!
//! Exit codes: 0 after a graceful shutdown; 1 when it cannot start (the reason is printed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Flags, ProcessEnv};
use crate::metrics::Metrics;
use crate::server::{self, AppParts, AppState, RouterSettings};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreSettings};

/// `edgegen serve` arguments (secrets come from the environment or the config file).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, env = "EDGEGEN_LISTEN")]
    listen: Option<String>,
    /// Directory of the SQLite database (created if missing).
    #[arg(long, env = "EDGEGEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL database shared by several replicas, postgres://USER@HOST:PORT/DB
    /// (default: SQLite in --data-dir).
    #[arg(long, env = "EDGEGEN_STORE")]
    store: Option<String>,
    /// Config file (default: ./edgegen.toml if it exists).
    #[arg(long, env = "EDGEGEN_CONFIG")]
    config: Option<PathBuf>,
}

/// Runs the server.
///
/// # Errors
/// When the configuration is invalid, the store cannot be opened or the address bound.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")))
        .with_writer(std::io::stderr)
        .init();
    let flags = Flags { listen: args.listen, data_dir: args.data_dir, store: args.store, config: args.config };
    let config = Config::resolve(&flags, &ProcessEnv)?;
    let metrics = Arc::new(Metrics::default());
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let settings = StoreSettings {
        manifest_max_age_ms: config.manifest_max_age_ms,
        leases: config.leases.clone(),
        pop_live_window_ms: config.pop_live_window_ms,
        cdn_service: config.fastly.as_ref().and_then(|f| f.service_id.clone()),
        hosts_max_entries: config.fastly.as_ref().and_then(|f| f.hosts.as_ref()).map(|h| h.max_entries),
        outbox_wake: Some(Arc::clone(&outbox_wake)),
    };
    let store: Arc<dyn Store> = match &config.store {
        Some(url) => Arc::new(
            PostgresStore::open(url.as_str(), settings, Arc::clone(&metrics))
                .with_context(|| format!("opening the store {url:?}"))?,
        ),
        None => Arc::new(
            SqliteStore::open(&config.data_dir, settings, Arc::clone(&metrics))
                .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
        ),
    };
    let state = AppState::new(AppParts {
        store,
        metrics,
        manifest_key: config.manifest_key.clone(),
        leases: Arc::new(config.leases.clone()),
        analysis: Arc::new(config.analysis.clone()),
        shards: Arc::new(config.shards.clone()),
        shard_rls: Arc::new(config.shard_rls.clone()),
        fetches: Arc::default(),
        auto_rollback: config.auto_rollback,
        cdn: match &config.fastly {
            None => None,
            Some(f) => Some(Arc::new(crate::server::Cdn {
                client: crate::fastly::FastlyClient::new(&f.api_url, &f.token, std::time::Duration::from_secs(30))
                    .map_err(|e| anyhow::anyhow!("Fastly client: {e}"))?,
                service: f.service_id.clone(),
                soft: f.soft_purge,
                hosts: f.hosts.clone(),
            })),
        },
    });
    let settings = RouterSettings {
        admin_token: config.admin_token.clone(),
        edge_token: config.edge_token.clone(),
        request_timeout: config.request_timeout,
        body_limit_bytes: config.body_limit_bytes,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, data_dir = %config.data_dir.display(), max_age_ms = config.manifest_max_age_ms, "edgegen coordinator listening");
        // The outbox worker delivers post-commit effects (also those a previous process
        // committed but did not deliver) until the server stops.
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = state.cdn.clone().map(|cdn| {
            let store = Arc::clone(&state.store);
            let metrics = Arc::clone(&state.metrics);
            tokio::spawn(crate::outbox::run_worker(store, cdn, metrics, outbox_wake, async move {
                let _ = worker_stopped.await;
            }))
        });
        // The convergence-deadline policy (engine), until the server stops.
        let (stop_deadline, deadline_stopped) = tokio::sync::oneshot::channel::<()>();
        let deadline = config.convergence_deadline_ms.map(|ms| {
            tokio::spawn(state.engine().clone().run_deadline(ms, async move {
                let _ = deadline_stopped.await;
            }))
        });
        server::run(listener, server::app(state, &settings), shutdown_signal()).await.context("serving")?;
        let _ = stop_worker.send(());
        let _ = stop_deadline.send(());
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        if let Some(deadline) = deadline {
            let _ = deadline.await;
        }
        tracing::info!("shut down");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

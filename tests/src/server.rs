//! An axum app served on its own thread and runtime, on a free 127.0.0.1 port, stopped
//! gracefully on drop. Origins run this way so blocking test code (waiting for Viceroy,
//! which probes its backends at start-up) never stalls them.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::Context as _;
use tokio::sync::oneshot;

/// A running background server.
pub struct BackgroundServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds a free port and serves `app` on a thread named `name`.
    ///
    /// # Errors
    /// When the port cannot be bound or the thread started.
    pub fn start(name: &str, app: axum::Router) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").with_context(|| format!("binding the {name}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        })?;
        Ok(BackgroundServer { addr, shutdown: Some(tx), thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

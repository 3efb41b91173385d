//! Group commit on PostgreSQL: callers queue small writes of one kind (acks, manifest
//! fetches); one or a few writer threads each take every queued write (up to [`MAX_BATCH`]), run
//! them as one transaction on one pooled connection, and answer each caller only after
//! that transaction committed. Under load one commit serves many callers; alone, a write
//! costs what it did before (the writer takes it at once).

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::pool::Session;
use crate::store::StoreError;

/// Most writes one transaction takes (bounds the latency a batch adds).
pub(super) const MAX_BATCH: usize = 512;

/// What a batch answers: one result per write, in order; `Err` fails the whole batch.
pub(super) type BatchResult<R> = Result<Vec<Result<R, StoreError>>, StoreError>;

/// Runs one batch on a connection (with its prepared statements), in one transaction.
pub(super) type RunBatch<T, R> = fn(&Inner, &mut Session, &[T]) -> BatchResult<R>;

type Queued<T, R> = (T, oneshot::Sender<Result<R, StoreError>>);

/// A queue of writes of one kind; its writer threads stop when it is dropped.
pub(super) struct Group<T, R> {
    queue: mpsc::Sender<Queued<T, R>>,
}

/// The receiving end of a [`Group`], until its writers start.
pub(super) struct Writers<T, R> {
    rx: mpsc::Receiver<Queued<T, R>>,
}

impl<T: Send + 'static, R: Send + 'static> Writers<T, R> {
    /// Starts `writers` writer threads; they reach the store through `inner` (weak: they
    /// never keep it alive). With one, a batch gathers while the previous one commits; with
    /// more, batches also commit side by side (smaller, each paying a statement's fixed
    /// cost).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(super) fn start(
        self,
        name: &str,
        writers: usize,
        inner: &Weak<Inner>,
        run: RunBatch<T, R>,
    ) -> Result<(), StoreError> {
        let rx = Arc::new(Mutex::new(self.rx));
        for n in 0..writers {
            let (rx, inner) = (Arc::clone(&rx), inner.clone());
            std::thread::Builder::new()
                .name(format!("edgegen-{name}-{n}"))
                .spawn(move || writer(&rx, &inner, run))
                .map_err(|e| StoreError::caused(format!("starting the {name} writer"), e))?;
        }
        Ok(())
    }
}

impl<T: Send + 'static, R: Send + 'static> Group<T, R> {
    /// A queue, and its receiving end to start the writers on once the store exists.
    pub(super) fn new() -> (Self, Writers<T, R>) {
        let (queue, rx) = mpsc::channel(MAX_BATCH * 8);
        (Group { queue }, Writers { rx })
    }

    /// Queues `write` and waits until the transaction holding it committed (or failed).
    ///
    /// # Errors
    /// The write's own refusal, or its batch's failure.
    pub(super) async fn write(&self, write: T) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((write, tx)).await.map_err(|_| StoreError::internal("the store's writers stopped"))?;
        rx.await.map_err(|_| StoreError::internal("the store's writer dropped a write"))?
    }
}

fn writer<T, R>(rx: &Mutex<mpsc::Receiver<Queued<T, R>>>, inner: &Weak<Inner>, run: RunBatch<T, R>) {
    loop {
        let batch = {
            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(first) = rx.blocking_recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let (writes, replies): (Vec<T>, Vec<_>) = batch.into_iter().unzip();
        let results = match inner.upgrade() {
            Some(inner) => inner.with_session(|s, inner| run(inner, s, &writes)),
            None => Err(StoreError::internal("the store was closed")),
        };
        match results {
            Ok(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(_) => {
                let e = StoreError::internal("a batch answered a different number of writes");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

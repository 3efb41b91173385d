//! A bounded pool of synchronous PostgreSQL connections: at most [`POOL_MAX`] per replica,
//! callers beyond the bound wait; connections are closed on a plain thread, never on an
//! async one. Each connection keeps the statements prepared on it ([`Session`]), so a hot
//! statement costs one round trip, not a parse and a plan every call.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use postgres::{Client, NoTls, Statement};

use crate::store::StoreError;

/// Connections one replica opens at most (PostgreSQL's default `max_connections` is 100:
/// several replicas must fit under it).
pub(super) const POOL_MAX: usize = 16;

/// A pooled connection and the statements prepared on it (they live as long as it does).
pub(super) struct Session {
    pub(super) client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Session {
    /// `sql`, prepared on this connection the first time it is asked for.
    ///
    /// # Errors
    /// When PostgreSQL refuses to prepare it.
    pub(super) fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// At most [`POOL_MAX`] connections: idle ones are reused, callers beyond the bound wait.
pub(super) struct Pool {
    url: String,
    idle: Mutex<Vec<Session>>,
    /// Connections handed out and not yet returned.
    out: Mutex<usize>,
    returned: Condvar,
}

impl Pool {
    pub(super) fn new(url: &str) -> Self {
        Pool { url: url.to_owned(), idle: Mutex::new(Vec::new()), out: Mutex::new(0), returned: Condvar::new() }
    }

    pub(super) fn get(&self) -> Result<Session, StoreError> {
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            while *out >= POOL_MAX {
                out = self.returned.wait(out).unwrap_or_else(|p| p.into_inner());
            }
            *out += 1;
        }
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(s) if !s.client.is_closed() => return Ok(s),
                Some(_) => {}
                None => break,
            }
        }
        match Client::connect(&self.url, NoTls) {
            Ok(client) => Ok(Session { client, prepared: HashMap::new() }),
            Err(e) => {
                self.release();
                Err(StoreError::caused("connecting to PostgreSQL", e))
            }
        }
    }

    pub(super) fn put(&self, s: Session) {
        if !s.client.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
        self.release();
    }

    fn release(&self) {
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.returned.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A synchronous client closes its connection on drop by blocking on its own
        // runtime, which must not happen on an async thread (where the last handle to the
        // store may be dropped): close them on a plain thread.
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

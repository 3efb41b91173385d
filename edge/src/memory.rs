//! An in-memory [`Platform`]: the pipeline's reference runtime for native tests and the
//! benchmark. The object cache keeps entries until their keep time passes on the platform's
//! own clock; the origin and the coordinator are closures the caller scripts. Not a mock of
//! Fastly: it implements the same four capabilities the Fastly shell does, in memory.

use std::collections::HashMap;
use std::rc::Rc;

use crate::pipeline::{Entry, Fetched, OnAccepted, Platform, Request};

type Backend = Box<dyn FnMut(&Request) -> Result<Fetched, String>>;
type Coordinator = Box<dyn FnMut(&str, &[(&str, &str)]) -> Result<Fetched, String>>;
/// A stored entry: user metadata, body, and until when it is kept (Unix ms).
type Stored = (Vec<u8>, Rc<[u8]>, u64);

/// The in-memory runtime.
pub struct MemoryPlatform {
    /// The clock entries expire by, Unix ms (tests advance it together with `Env::now_ms`).
    pub now_ms: u64,
    /// Host → tenant id.
    pub hosts: HashMap<String, String>,
    entries: HashMap<Vec<u8>, Stored>,
    origin: Backend,
    coordinator: Coordinator,
    /// Every request the origin received, in order.
    pub origin_requests: Vec<Request>,
    /// Every background POST to the coordinator: (path, JSON body).
    pub posts: Vec<(String, String)>,
    /// Whether the coordinator accepts background POSTs (default `true`; `false` plays a
    /// coordinator that fails them, so nothing they would record is written).
    pub accept_posts: bool,
    /// The extra request headers of every GET to the coordinator, in order.
    pub coordinator_headers: Vec<Vec<(String, String)>>,
    /// Log lines.
    pub logs: Vec<String>,
}

impl MemoryPlatform {
    /// A runtime at `now_ms` whose origin and coordinator are the given closures.
    pub fn new(
        now_ms: u64,
        origin: impl FnMut(&Request) -> Result<Fetched, String> + 'static,
        coordinator: impl FnMut(&str) -> Result<Fetched, String> + 'static,
    ) -> Self {
        let mut coordinator = coordinator;
        MemoryPlatform {
            now_ms,
            hosts: HashMap::new(),
            entries: HashMap::new(),
            origin: Box::new(origin),
            coordinator: Box::new(move |path, _| coordinator(path)),
            origin_requests: Vec::new(),
            posts: Vec::new(),
            accept_posts: true,
            coordinator_headers: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Replaces the origin.
    pub fn set_origin(&mut self, origin: impl FnMut(&Request) -> Result<Fetched, String> + 'static) {
        self.origin = Box::new(origin);
    }

    /// Replaces the coordinator with one that also sees the request headers (conditional
    /// requests).
    pub fn set_coordinator(
        &mut self,
        coordinator: impl FnMut(&str, &[(&str, &str)]) -> Result<Fetched, String> + 'static,
    ) {
        self.coordinator = Box::new(coordinator);
    }

    /// Drops the entry under `key`, as a purge of its surrogate key does on Fastly.
    pub fn evict(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// The number of live entries.
    pub fn entries(&self) -> usize {
        self.entries.values().filter(|(_, _, until)| *until > self.now_ms).count()
    }
}

impl Platform for MemoryPlatform {
    /// Shared, like a platform's handle to a stored body: a lookup does not copy it.
    type Body = Rc<[u8]>;

    fn host_tenant(&mut self, host: &str) -> Option<String> {
        self.hosts.get(host).cloned()
    }

    fn lookup(&mut self, key: &[u8], _collapse: bool) -> Result<Option<Entry<Rc<[u8]>>>, String> {
        Ok(self
            .entries
            .get(key)
            .filter(|(_, _, until)| *until > self.now_ms)
            .map(|(m, b, _)| (m.clone(), Rc::clone(b))))
    }

    fn insert(&mut self, key: &[u8], meta: &[u8], body: &[u8], keep_secs: u64, _keys: &[&str]) -> Result<(), String> {
        let until = self.now_ms.saturating_add(keep_secs.saturating_mul(1000));
        self.entries.insert(key.to_vec(), (meta.to_vec(), Rc::from(body), until));
        Ok(())
    }

    fn read_body(&mut self, body: Rc<[u8]>) -> Result<Vec<u8>, String> {
        Ok(body.to_vec())
    }

    fn origin(&mut self, req: &Request) -> Result<Fetched, String> {
        self.origin_requests.push(req.clone());
        (self.origin)(req)
    }

    fn coordinator_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Fetched, String> {
        self.coordinator_headers.push(headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect());
        (self.coordinator)(path, headers)
    }

    fn coordinator_post(&mut self, path: &str, json: String, on_accepted: Option<OnAccepted>) {
        self.posts.push((path.to_owned(), json));
        if let (true, Some(record)) = (self.accept_posts, on_accepted) {
            let until = self.now_ms.saturating_add(record.keep_secs.saturating_mul(1000));
            self.entries.insert(record.key, (record.meta, Rc::from(&[][..]), until));
        }
    }

    fn log(&mut self, line: &str) {
        self.logs.push(line.to_owned());
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

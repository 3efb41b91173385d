//! The thin shell between Fastly Compute and the platform-free pipeline
//! (`edgegen_edge::pipeline`): it reads the Config and Secret Stores and the clock, converts
//! requests and responses, and implements the pipeline's `Platform` trait with the Core
//! Cache and backends. It decides nothing; expected failures become explicit responses and
//! nothing here panics on input.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgegen_edge::fields::Headers;
use edgegen_edge::pipeline::{
    self, Body, Deferred, Env, Fetched, OnAccepted, Platform, Request as PRequest, Response as PResponse,
};
use edgegen_edge::settings::Settings;
use edgegen_edge::{
    CONFIG_STORE, COORDINATOR_BACKEND, EDGE_TOKEN_SECRET, HOSTS_STORE, MANIFEST_KEY_SECRET, ORIGIN_BACKEND,
    PROBE_KEY_SECRET, SECRET_STORE,
};
use edgegen_shared::SecretKey;
use fastly::cache::core::{self as cache, Transaction};
use fastly::http::request::PendingRequest;
use fastly::{ConfigStore, Request, Response, SecretStore};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The Fastly side of one request: its stores, the transactions it holds (request
/// collapsing), and the background requests to await after the response.
pub struct Fastly {
    hosts: Option<ConfigStore>,
    edge_token: String,
    pending: HashMap<Vec<u8>, Transaction>,
    /// Coordinator posts to await after the response was sent.
    pub background: Vec<(PendingRequest, Option<OnAccepted>)>,
}

fn headers_of(names: Vec<(String, Vec<u8>)>) -> Headers {
    names.into_iter().collect()
}

impl Platform for Fastly {
    type Body = fastly::Body;

    fn host_tenant(&mut self, host: &str) -> Option<String> {
        self.hosts.as_ref().and_then(|s| s.try_get(host).ok().flatten())
    }

    fn lookup(&mut self, key: &[u8], collapse: bool) -> Result<Option<pipeline::Entry<fastly::Body>>, String> {
        // edgegen stores every entry without stale-while-revalidate and decides freshness from
        // its own metadata, so the only stale entry is a soft-purged one: it is treated as
        // absent (re-fetched, and replaced by this request's insert), as after a hard purge.
        let cache_key: cache::CacheKey = key.to_vec().into();
        if !collapse {
            let found = cache::lookup(cache_key).execute().map_err(|e| format!("cache lookup: {e}"))?;
            return match found {
                Some(f) if !f.is_stale() => {
                    Ok(Some((f.user_metadata().to_vec(), f.to_stream().map_err(|e| format!("cache read: {e}"))?)))
                }
                _ => Ok(None),
            };
        }
        let txn = Transaction::lookup(cache_key).execute().map_err(|e| format!("cache lookup: {e}"))?;
        if let Some(found) = txn.found().filter(|f| !f.is_stale()) {
            let body = found.to_stream().map_err(|e| format!("cache read: {e}"))?;
            return Ok(Some((found.user_metadata().to_vec(), body)));
        }
        if txn.must_insert_or_update() {
            self.pending.insert(key.to_vec(), txn);
        }
        Ok(None)
    }

    fn insert(
        &mut self,
        key: &[u8],
        meta: &[u8],
        body: &[u8],
        keep_secs: u64,
        surrogate_keys: &[&str],
    ) -> Result<(), String> {
        let keep = Duration::from_secs(keep_secs);
        let writer = match self.pending.remove(key) {
            Some(txn) => txn
                .insert(keep)
                .user_metadata(meta.to_vec().into())
                .surrogate_keys(surrogate_keys.iter().copied())
                .known_length(body.len() as u64)
                .execute(),
            None => cache::insert(key.to_vec().into(), keep)
                .user_metadata(meta.to_vec().into())
                .surrogate_keys(surrogate_keys.iter().copied())
                .known_length(body.len() as u64)
                .execute(),
        };
        let mut w = writer.map_err(|e| format!("cache insert: {e}"))?;
        w.write_all(body).and_then(|()| w.finish()).map_err(|e| format!("cache write: {e}"))
    }

    fn read_body(&mut self, body: fastly::Body) -> Result<Vec<u8>, String> {
        Ok(body.into_bytes())
    }

    fn origin(&mut self, req: &PRequest) -> Result<Fetched, String> {
        let url = match &req.query {
            Some(q) => format!("http://origin{}?{q}", req.path),
            None => format!("http://origin{}", req.path),
        };
        let mut out = Request::new(req.method.as_str(), url);
        for (name, value) in req.headers.iter() {
            out.append_header(name, value);
        }
        if !req.body.is_empty() {
            out.set_body(req.body.clone());
        }
        let mut resp = out.send(ORIGIN_BACKEND).map_err(|e| format!("origin: {e}"))?;
        Ok(fetched(&mut resp))
    }

    fn coordinator_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Fetched, String> {
        let mut req = Request::get(format!("http://coordinator{path}"))
            .with_header("authorization", format!("Bearer {}", self.edge_token));
        for (name, value) in headers {
            req.set_header(*name, *value);
        }
        let mut resp = req.send(COORDINATOR_BACKEND).map_err(|e| e.to_string())?;
        Ok(fetched(&mut resp))
    }

    fn coordinator_post(&mut self, path: &str, json: String, on_accepted: Option<OnAccepted>) {
        let req = Request::post(format!("http://coordinator{path}"))
            .with_header("authorization", format!("Bearer {}", self.edge_token))
            .with_header("content-type", "application/json")
            .with_body(json);
        match req.send_async(COORDINATOR_BACKEND) {
            Ok(pending) => self.background.push((pending, on_accepted)),
            Err(e) => eprintln!("edgegen-edge: POST {path} failed: {e}"),
        }
    }

    fn log(&mut self, line: &str) {
        eprintln!("edgegen-edge: {line}");
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

fn fetched(resp: &mut Response) -> Fetched {
    let headers = headers_of(
        resp.get_header_names_str()
            .into_iter()
            .flat_map(|n| resp.get_header_all(n).map(move |v| (n.to_owned(), v.as_bytes().to_vec())))
            .collect(),
    );
    Fetched { status: resp.get_status().as_u16(), headers, body: resp.take_body_bytes() }
}

struct Secrets {
    manifest_key: SecretKey,
    probe_key: SecretKey,
    edge_token: String,
    /// The local stack's purge token (`local-purge` builds only; `None` when not configured).
    #[cfg(feature = "local-purge")]
    purge_token: Option<Vec<u8>>,
}

/// The Compute purge hostcall; Viceroy applies it to its Core Cache.
#[cfg(feature = "local-purge")]
struct HostcallPurger;

#[cfg(feature = "local-purge")]
impl edgegen_edge::purge::Purger for HostcallPurger {
    fn purge_surrogate_key(&mut self, key: &str, soft: bool) -> Result<(), String> {
        let result = if soft {
            fastly::http::purge::soft_purge_surrogate_key(key)
        } else {
            fastly::http::purge::purge_surrogate_key(key)
        };
        result.map_err(|e| e.to_string())
    }
}

fn secrets() -> Result<Secrets, String> {
    let store = SecretStore::open(SECRET_STORE).map_err(|e| format!("secret store {SECRET_STORE}: {e}"))?;
    let get = |name: &str| -> Result<Vec<u8>, String> {
        let secret = store.try_get(name).map_err(|e| format!("{name}: {e}"))?.ok_or(format!("{name} is missing"))?;
        Ok(secret.try_plaintext().map_err(|e| format!("{name}: {e}"))?.to_vec())
    };
    Ok(Secrets {
        manifest_key: SecretKey::new(MANIFEST_KEY_SECRET, get(MANIFEST_KEY_SECRET)?).map_err(|e| e.to_string())?,
        probe_key: SecretKey::new(PROBE_KEY_SECRET, get(PROBE_KEY_SECRET)?).map_err(|e| e.to_string())?,
        edge_token: String::from_utf8(get(EDGE_TOKEN_SECRET)?).map_err(|_| "edge_token is not UTF-8".to_owned())?,
        #[cfg(feature = "local-purge")]
        purge_token: get(edgegen_edge::purge::PURGE_TOKEN_SECRET).ok(),
    })
}

fn to_fastly(resp: PResponse<fastly::Body>) -> Response {
    let mut out = Response::from_status(resp.status);
    for (name, value) in resp.headers.iter() {
        out.append_header(name, value);
    }
    match resp.body {
        Body::Bytes(b) if b.is_empty() => {}
        Body::Bytes(b) => out.set_body(b),
        // Read whole so the platform sends the `Content-Length` of a HIT (a streamed body goes
        // out chunked, without it). Stored bodies are at most MAX_STORED_BODY.
        Body::Stored(b) => out.set_body(b.into_bytes()),
    }
    out
}

fn misconfigured(detail: &str) -> Response {
    eprintln!("edgegen-edge: misconfigured: {detail}");
    to_fastly(pipeline::json_error(503, "edge_misconfigured", "the edge is not configured for this request"))
}

/// What a request leaves to do after its response was sent.
pub struct After {
    platform: Option<Fastly>,
    env: Option<Env>,
    deferred: Vec<Deferred>,
}

impl After {
    /// Runs the deferred work (background refreshes), then awaits the coordinator posts,
    /// writing the record of each one the coordinator accepted.
    pub fn run(self) {
        let (Some(mut platform), Some(env)) = (self.platform, self.env) else { return };
        for work in self.deferred {
            let env = Env { now_ms: now_ms(), ..env.clone() };
            pipeline::run_deferred(&mut platform, &env, work);
        }
        platform.pending.clear();
        for (pending, on_accepted) in std::mem::take(&mut platform.background) {
            match pending.wait() {
                Ok(resp) if resp.get_status().is_success() => {
                    if let Some(record) = on_accepted
                        && let Err(e) = platform.insert(&record.key, &record.meta, &[], record.keep_secs, &[])
                    {
                        eprintln!("edgegen-edge: record of an accepted post: {e}");
                    }
                }
                Ok(resp) => eprintln!("edgegen-edge: background request answered {}", resp.get_status()),
                Err(err) => eprintln!("edgegen-edge: background request failed: {err}"),
            }
        }
    }
}

/// Handles one request; returns the response and what to do after it was sent.
pub fn handle(mut req: Request) -> (Response, After) {
    let nothing = || After { platform: None, env: None, deferred: Vec::new() };
    let config = ConfigStore::try_open(CONFIG_STORE).ok();
    let settings = match Settings::read(|k| config.as_ref().and_then(|c| c.try_get(k).ok().flatten())) {
        Ok(s) => s,
        Err(e) => return (misconfigured(&e), nothing()),
    };
    let pop = settings.pop.clone().unwrap_or_else(|| fastly::compute_runtime::pop().to_owned());
    let hosts = match ConfigStore::try_open(HOSTS_STORE) {
        Ok(store) => store,
        Err(_) => return (misconfigured(&format!("config store {HOSTS_STORE} is missing")), nothing()),
    };
    let secrets = match secrets() {
        Ok(s) => s,
        Err(e) => return (misconfigured(&e), nothing()),
    };
    let headers = headers_of(
        req.get_header_names_str()
            .into_iter()
            .flat_map(|n| req.get_header_all(n).map(move |v| (n.to_owned(), v.as_bytes().to_vec())))
            .collect(),
    );
    let method = req.get_method_str().to_owned();
    // GET/HEAD bodies are dropped by the pipeline; never read them.
    let body = if matches!(method.as_str(), "GET" | "HEAD") { Vec::new() } else { req.take_body_bytes() };
    let request = PRequest {
        method,
        path: req.get_path().to_owned(),
        query: req.get_query_str().map(str::to_owned),
        headers,
        body,
    };
    #[cfg(feature = "local-purge")]
    {
        use edgegen_edge::purge;
        let call = purge::classify(&request.method, &request.path, &request.headers, secrets.purge_token.as_deref());
        if let Some(resp) = purge::respond(call, &mut HostcallPurger) {
            return (to_fastly(resp), nothing());
        }
    }
    let env = Env { settings, pop, manifest_key: secrets.manifest_key, probe_key: secrets.probe_key, now_ms: now_ms() };
    let mut platform =
        Fastly { hosts: Some(hosts), edge_token: secrets.edge_token, pending: HashMap::new(), background: Vec::new() };
    let handled = pipeline::handle(&mut platform, &env, request);
    // Transactions this request did not fill release their waiters now.
    platform.pending.clear();
    let response = to_fastly(handled.response);
    (response, After { platform: Some(platform), env: Some(env), deferred: handled.deferred })
}

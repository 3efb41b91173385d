//! A local stand-in for the parts of Fastly's API edgegen calls, served on 127.0.0.1 as a
//! [`BackgroundServer`] (point `FASTLY_API_URL` at [`FastlyApi::url`]). The only mock in the
//! harness: everything behind it (the PoPs, their stores and caches) is real.
//!
//! **Config Stores** — list a store's items, upsert or delete one, bulk update. Each store is
//! a JSON file in the format of a Viceroy JSON config store, and the local PoPs' `fastly.toml`
//! names that file (see [`crate::viceroy::EdgeConfig::hosts_file`]), so a change made through
//! the API reaches every PoP on its next request: Viceroy re-reads a JSON config store each
//! time the edge opens it. Files are replaced atomically (written beside, then renamed), so a
//! PoP never reads half a store. Fastly's rules are enforced as Fastly does: item keys of at
//! most 256 characters, values of at most 8,000, a bounded number of entries per store; a
//! bulk update that breaks one is refused whole, with a 400 naming the item.
//!
//! **Purge by surrogate key** — as Fastly documents it:
//! - `POST /service/{service_id}/purge/{surrogate_key}` answers `{"status": "ok", "id": …}`;
//! - `POST /service/{service_id}/purge` takes up to 256 keys, in a JSON body
//!   `{"surrogate_keys": […]}` or space-separated in a `Surrogate-Key` header, and answers a
//!   JSON object of key → purge id;
//! - `Fastly-Soft-Purge: 1` marks objects stale instead of removing them.
//!
//! A purge is applied at every local PoP registered for the service
//! ([`FastlyApi::add_pop`]), through the edge's authenticated local purge endpoint
//! (`edgegen_edge::purge`, in the local-stack wasm only), which calls the Compute purge
//! hostcall on the PoP's Core Cache. The call is answered once every PoP applied it, and the
//! moment each did is recorded ([`FastlyApi::purges`]); if a PoP fails or cannot be reached,
//! the call answers 503 (so a caller retries, as it would after a Fastly 5xx).
//!
//! Not emulated: purge-all and URL purges, Fastly's global propagation delay (about 150 ms;
//! here a purge is in effect at every PoP when the call returns), API rate limits, token
//! scopes (`purge_select`), services other than those registered (404), and PoPs that were
//! not registered (they never see a purge).
//!
//! Every call needs the `Fastly-Key` token ([`TOKEN`]); a call without it gets Fastly's 401.
//!
//! For tests of the API client itself, every request is recorded as received
//! ([`FastlyApi::requests`]: method, raw path, fields, body), the next calls can be made to
//! fail with given statuses ([`FastlyApi::fail_next`]; a 429 carries `Retry-After: 1`), a
//! batch purge can leave keys out of its answer as if Fastly had not confirmed them
//! ([`FastlyApi::leave_unconfirmed`]; those keys are not purged), and a service can exist
//! with no local PoP ([`FastlyApi::add_service`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::BackgroundServer;

/// The API token the stand-in accepts (`FASTLY_API_TOKEN`).
pub const TOKEN: &str = "harness-fastly-token-0123456789";
/// Fastly's longest item key, in characters (API reference).
pub const MAX_KEY_CHARS: usize = 256;
/// Fastly's longest item value, in characters.
pub const MAX_VALUE_CHARS: usize = 8_000;

struct Store {
    file: PathBuf,
    items: BTreeMap<String, String>,
}

struct Stores {
    stores: BTreeMap<String, Store>,
    max_entries: usize,
    /// Answer writes with success but change nothing (a store someone else keeps rewriting).
    lose_writes: bool,
    /// `METHOD path` of every authorised call, in order.
    calls: Vec<String>,
    /// Service id → the local PoPs a purge of it reaches.
    services: BTreeMap<String, Vec<Pop>>,
    /// Every purge applied at a PoP, in order.
    purges: Vec<AppliedPurge>,
    /// Purge ids handed out so far.
    purge_ids: u64,
    /// Every request as received, in order.
    requests: Vec<ApiRequest>,
    /// Statuses the next authorised calls answer, one each, before the API works again.
    failures: VecDeque<u16>,
    /// Keys a batch purge leaves out of its answer (and does not purge).
    unconfirmed: Vec<String>,
}

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path as sent (percent-encoding kept).
    pub path: String,
    /// The request's fields.
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

/// A local PoP purges reach: its base URL and its purge token.
#[derive(Debug, Clone)]
struct Pop {
    name: String,
    url: String,
    token: String,
}

/// One purge as one PoP applied it.
#[derive(Debug, Clone)]
pub struct AppliedPurge {
    /// The PoP's name.
    pub pop: String,
    /// The keys purged.
    pub keys: Vec<String>,
    /// Soft purge.
    pub soft: bool,
    /// When the PoP answered that it applied the purge.
    pub applied_at: Instant,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Stores>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Stores> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stand-in; stopped on drop.
pub struct FastlyApi {
    server: BackgroundServer,
    shared: Shared,
}

fn write_store(file: &Path, items: &BTreeMap<String, String>) -> std::io::Result<()> {
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(items)?)?;
    std::fs::rename(&tmp, file)
}

impl FastlyApi {
    /// Starts it with no stores; each store holds at most `max_entries` items.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(max_entries: usize) -> anyhow::Result<Self> {
        let shared = Shared(Arc::new(Mutex::new(Stores {
            stores: BTreeMap::new(),
            max_entries,
            lose_writes: false,
            calls: Vec::new(),
            services: BTreeMap::new(),
            purges: Vec::new(),
            purge_ids: 0,
            requests: Vec::new(),
            failures: VecDeque::new(),
            unconfirmed: Vec::new(),
        })));
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
        let app = Router::new()
            .route("/resources/stores/config/{store}/items", get(list).patch(bulk_update))
            .route("/resources/stores/config/{store}/item/{key}", put(upsert).delete(delete))
            .with_state(shared.clone())
            .merge(
                Router::new()
                    .route("/service/{service}/purge", post(purge_batch))
                    .route("/service/{service}/purge/{key}", post(purge_one))
                    .with_state(Purging { shared: shared.clone(), http }),
            )
            .layer(axum::middleware::from_fn_with_state(shared.clone(), record));
        Ok(FastlyApi { server: BackgroundServer::start("fastly-api", app)?, shared })
    }

    /// The API base URL (`FASTLY_API_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Creates store `id`, backed by the JSON file `file`, holding `items`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn add_store(&self, id: &str, file: &Path, items: &[(&str, &str)]) -> anyhow::Result<()> {
        let items: BTreeMap<String, String> = items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        write_store(file, &items).with_context(|| format!("writing {}", file.display()))?;
        self.shared.lock().stores.insert(id.to_owned(), Store { file: file.to_owned(), items });
        Ok(())
    }

    /// Changes store `id` behind edgegen's back (as an operator in Fastly's web interface
    /// would): sets `key` to `value`, or removes it when `value` is `None`.
    ///
    /// # Panics
    /// When the store does not exist or its file cannot be written (test setup errors).
    pub fn edit_by_hand(&self, id: &str, key: &str, value: Option<&str>) {
        let mut stores = self.shared.lock();
        let store = stores.stores.get_mut(id).expect("no such store");
        match value {
            Some(v) => store.items.insert(key.to_owned(), v.to_owned()),
            None => store.items.remove(key),
        };
        write_store(&store.file, &store.items).expect("writing the store file");
    }

    /// Registers the local PoP `name` at `url` (its base URL), whose purge endpoint takes
    /// `token`, as part of service `service` (created on first use): every purge of the
    /// service reaches it from now on.
    pub fn add_pop(&self, service: &str, name: &str, url: &str, token: &str) {
        let pop = Pop { name: name.to_owned(), url: url.trim_end_matches('/').to_owned(), token: token.to_owned() };
        self.shared.lock().services.entry(service.to_owned()).or_default().push(pop);
    }

    /// Every purge applied at a PoP so far, in order.
    pub fn purges(&self) -> Vec<AppliedPurge> {
        self.shared.lock().purges.clone()
    }

    /// From now on, accept writes without applying them (`true`), or apply them again.
    pub fn lose_writes(&self, lose: bool) {
        self.shared.lock().lose_writes = lose;
    }

    /// What store `id` holds now.
    pub fn items(&self, id: &str) -> BTreeMap<String, String> {
        self.shared.lock().stores.get(id).map(|s| s.items.clone()).unwrap_or_default()
    }

    /// `METHOD path` of every authorised call so far (the path's parameters decoded).
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// Every request so far, as received (authorised or not).
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.lock().requests.clone()
    }

    /// The next authorised calls answer these statuses, one each (replacing any still
    /// queued; none: the API works again).
    pub fn fail_next(&self, statuses: impl IntoIterator<Item = u16>) {
        self.shared.lock().failures = statuses.into_iter().collect();
    }

    /// Batch purges leave these keys out of their answers and do not purge them (replacing
    /// the previous list; none: every key is confirmed again).
    pub fn leave_unconfirmed(&self, keys: &[&str]) {
        self.shared.lock().unconfirmed = keys.iter().map(|k| (*k).to_owned()).collect();
    }

    /// Makes `service` known even with no local PoP (its purges are answered and applied
    /// nowhere).
    pub fn add_service(&self, service: &str) {
        self.shared.lock().services.entry(service.to_owned()).or_default();
    }
}

/// Middleware: records each request as received.
async fn record(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    shared.lock().requests.push(ApiRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "msg": msg }))).into_response()
}

/// A call the stand-in does not serve.
enum Refused {
    /// Without the right `Fastly-Key`.
    Unauthorized,
    /// A failure a test queued ([`FastlyApi::fail_next`]).
    Injected(u16),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unauthorized => error(StatusCode::UNAUTHORIZED, "Provided credentials are missing or invalid"),
            Refused::Injected(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut r = error(status, "try later");
                if status == StatusCode::TOO_MANY_REQUESTS {
                    r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                }
                r
            }
        }
    }
}

/// Checks the token, records the call, and answers a queued failure if there is one.
fn admit<'a>(shared: &'a Shared, headers: &HeaderMap, call: String) -> Result<MutexGuard<'a, Stores>, Refused> {
    if headers.get("fastly-key").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return Err(Refused::Unauthorized);
    }
    let mut stores = shared.lock();
    stores.calls.push(call);
    match stores.failures.pop_front() {
        Some(status) => Err(Refused::Injected(status)),
        None => Ok(stores),
    }
}

/// The item `key = value` against Fastly's limits.
fn check_item(key: &str, value: Option<&str>) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(format!("item_key {key:?}: must be 1-{MAX_KEY_CHARS} characters"));
    }
    if value.is_some_and(|v| v.chars().count() > MAX_VALUE_CHARS) {
        return Err(format!("item_value of {key:?}: must be at most {MAX_VALUE_CHARS} characters"));
    }
    Ok(())
}

/// Replaces a store's items after checking the entry limit, and rewrites its file.
fn commit(stores: &mut Stores, id: &str, items: BTreeMap<String, String>) -> Response {
    let (max, lose_writes) = (stores.max_entries, stores.lose_writes);
    let Some(store) = stores.stores.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "Record not found");
    };
    if items.len() > max {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("the store would hold {} entries; the limit is {max}", items.len()),
        );
    }
    if lose_writes {
        return Json(json!({ "status": "ok" })).into_response();
    }
    if let Err(e) = write_store(&store.file, &items) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("writing the store: {e}"));
    }
    store.items = items;
    Json(json!({ "status": "ok" })).into_response()
}

async fn list(State(shared): State<Shared>, UrlPath(id): UrlPath<String>, headers: HeaderMap) -> Response {
    let stores = match admit(&shared, &headers, format!("GET /resources/stores/config/{id}/items")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(store) = stores.stores.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Record not found");
    };
    let items: Vec<Value> =
        store.items.iter().map(|(k, v)| json!({ "store_id": id, "item_key": k, "item_value": v })).collect();
    Json(items).into_response()
}

#[derive(Deserialize)]
struct BulkItem {
    op: String,
    item_key: String,
    item_value: Option<String>,
}

#[derive(Deserialize)]
struct Bulk {
    items: Vec<BulkItem>,
}

async fn bulk_update(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut stores = match admit(&shared, &headers, format!("PATCH /resources/stores/config/{id}/items")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let bulk: Bulk = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let Some(store) = stores.stores.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Record not found");
    };
    let mut items = store.items.clone();
    for (i, item) in bulk.items.iter().enumerate() {
        if let Err(e) = check_item(&item.item_key, item.item_value.as_deref()) {
            return error(StatusCode::BAD_REQUEST, &format!("items[{i}]: {e}"));
        }
        match (item.op.as_str(), &item.item_value) {
            ("upsert", Some(v)) => {
                items.insert(item.item_key.clone(), v.clone());
            }
            ("delete", _) => {
                if items.remove(&item.item_key).is_none() {
                    return error(StatusCode::BAD_REQUEST, &format!("items[{i}]: {:?} does not exist", item.item_key));
                }
            }
            (op, _) => return error(StatusCode::BAD_REQUEST, &format!("items[{i}]: unsupported op {op:?} here")),
        }
    }
    commit(&mut stores, &id, items)
}

async fn upsert(
    State(shared): State<Shared>,
    UrlPath((id, key)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let mut stores = match admit(&shared, &headers, format!("PUT /resources/stores/config/{id}/item/{key}")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(value) = form.get("item_value") else {
        return error(StatusCode::BAD_REQUEST, "item_value is required");
    };
    if let Err(e) = check_item(&key, Some(value)) {
        return error(StatusCode::BAD_REQUEST, &e);
    }
    let Some(store) = stores.stores.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Record not found");
    };
    let mut items = store.items.clone();
    items.insert(key, value.clone());
    commit(&mut stores, &id, items)
}

async fn delete(
    State(shared): State<Shared>,
    UrlPath((id, key)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut stores = match admit(&shared, &headers, format!("DELETE /resources/stores/config/{id}/item/{key}")) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(store) = stores.stores.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Record not found");
    };
    let mut items = store.items.clone();
    if items.remove(&key).is_none() {
        return error(StatusCode::NOT_FOUND, "Record not found");
    }
    commit(&mut stores, &id, items)
}

/// The purge routes' state: the stores and a client for the PoPs.
#[derive(Clone)]
struct Purging {
    shared: Shared,
    http: reqwest::Client,
}

/// Most bytes of keys sent to a PoP in one `Surrogate-Key` header (Fastly's header limit).
const MAX_HEADER_BYTES: usize = 16_384;

/// Applies a purge of `keys` at every PoP of `service`, then answers with one purge id per
/// key (`None`: the service is unknown; `Err`: the PoPs that did not apply it).
async fn apply(purging: &Purging, service: &str, keys: &[String], soft: bool) -> Option<Result<Vec<String>, String>> {
    let (pops, first_id) = {
        let mut stores = purging.shared.lock();
        let pops = stores.services.get(service)?.clone();
        let first = stores.purge_ids;
        stores.purge_ids += keys.len() as u64;
        (pops, first)
    };
    // Batches whose header fits Fastly's limit (keys are at most 1,024 bytes each).
    let mut batches: Vec<String> = Vec::new();
    for key in keys {
        match batches.last_mut() {
            Some(b) if b.len() + 1 + key.len() <= MAX_HEADER_BYTES => {
                b.push(' ');
                b.push_str(key);
            }
            _ => batches.push(key.clone()),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for pop in pops {
        let (http, batches) = (purging.http.clone(), batches.clone());
        tasks.spawn(async move {
            for batch in &batches {
                let mut req = http
                    .post(format!("{}{}", pop.url, edgegen_edge::purge::PURGE_PATH))
                    .bearer_auth(&pop.token)
                    .header("surrogate-key", batch.as_str());
                if soft {
                    req = req.header("fastly-soft-purge", "1");
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => {}
                    Ok(resp) => return Err(format!("{}: HTTP {}", pop.name, resp.status().as_u16())),
                    Err(e) => return Err(format!("{}: {}", pop.name, e.without_url())),
                }
            }
            Ok((pop.name, Instant::now()))
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok((pop, applied_at))) => {
                purging.shared.lock().purges.push(AppliedPurge { pop, keys: keys.to_vec(), soft, applied_at })
            }
            Ok(Err(why)) => failed.push(why),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if !failed.is_empty() {
        return Some(Err(failed.join("; ")));
    }
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Some(Ok((0..keys.len() as u64).map(|i| format!("{}-{secs}-{}", first_id + i + 1, 100 + i)).collect()))
}

/// `Fastly-Soft-Purge`: present with `1` for a soft purge.
fn soft(headers: &HeaderMap) -> bool {
    headers.get("fastly-soft-purge").and_then(|v| v.to_str().ok()).map(str::trim) == Some("1")
}

/// A key Fastly accepts: 1-1,024 printable ASCII bytes.
fn check_key(key: &str) -> Result<(), String> {
    edgegen_shared::surrogate::SurrogateKey::new(key).map(|_| ()).map_err(|e| e.to_string())
}

async fn purge_one(
    State(purging): State<Purging>,
    UrlPath((service, key)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&purging.shared, &headers, format!("POST /service/{service}/purge/{key}")) {
        return r.into_response();
    }
    if let Err(e) = check_key(&key) {
        return error(StatusCode::BAD_REQUEST, &e);
    }
    match apply(&purging, &service, std::slice::from_ref(&key), soft(&headers)).await {
        None => error(StatusCode::NOT_FOUND, "Record not found"),
        Some(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("purge not applied at every PoP: {why}")),
        Some(Ok(ids)) => Json(json!({ "status": "ok", "id": ids[0] })).into_response(),
    }
}

#[derive(Deserialize)]
struct PurgeKeys {
    surrogate_keys: Vec<String>,
}

async fn purge_batch(
    State(purging): State<Purging>,
    UrlPath(service): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unconfirmed = match admit(&purging.shared, &headers, format!("POST /service/{service}/purge")) {
        Ok(stores) => stores.unconfirmed.clone(),
        Err(r) => return r.into_response(),
    };
    // The keys: a `Surrogate-Key` header, else the JSON body.
    let keys: Vec<String> = match headers.get("surrogate-key").map(|v| v.to_str()) {
        Some(Ok(list)) => list.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "Surrogate-Key: not printable ASCII"),
        None => match serde_json::from_slice::<PurgeKeys>(&body) {
            Ok(k) => k.surrogate_keys,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
        },
    };
    if keys.is_empty() || keys.len() > 256 {
        return error(StatusCode::BAD_REQUEST, &format!("{} surrogate keys: a batch holds 1-256", keys.len()));
    }
    for (i, key) in keys.iter().enumerate() {
        if let Err(e) = check_key(key) {
            return error(StatusCode::BAD_REQUEST, &format!("surrogate_keys[{i}]: {e}"));
        }
    }
    let keys: Vec<String> = keys.into_iter().filter(|k| !unconfirmed.contains(k)).collect();
    match apply(&purging, &service, &keys, soft(&headers)).await {
        None => error(StatusCode::NOT_FOUND, "Record not found"),
        Some(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("purge not applied at every PoP: {why}")),
        Some(Ok(ids)) => {
            let answer: serde_json::Map<String, Value> =
                keys.into_iter().zip(ids).map(|(k, id)| (k, Value::String(id))).collect();
            Json(answer).into_response()
        }
    }
}

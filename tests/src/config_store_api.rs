//! A local stand-in for Fastly's Config Store API — the endpoints edgegen calls: list a
//! store's items, upsert or delete one, bulk update — served on 127.0.0.1 as a
//! [`BackgroundServer`] (point `FASTLY_API_URL` at [`ConfigStoreApi::url`]).
//!
//! Each store is a JSON file in the format of a Viceroy JSON config store, and the local
//! PoPs' `fastly.toml` names that file (see [`crate::viceroy::EdgeConfig::hosts_file`]), so a
//! change made through the API reaches every PoP on its next request: Viceroy re-reads a JSON
//! config store each time the edge opens it. Files are replaced atomically (written beside,
//! then renamed), so a PoP never reads half a store.
//!
//! Fastly's rules are enforced as Fastly does: the `Fastly-Key` token, item keys of at most
//! 256 characters, values of at most 8,000, a bounded number of entries per store; a bulk
//! update that breaks one is refused whole, with a 400 naming the item.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
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
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Stores>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Stores> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stand-in; stopped on drop.
pub struct ConfigStoreApi {
    server: BackgroundServer,
    shared: Shared,
}

fn write_store(file: &Path, items: &BTreeMap<String, String>) -> std::io::Result<()> {
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(items)?)?;
    std::fs::rename(&tmp, file)
}

impl ConfigStoreApi {
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
        })));
        let app = Router::new()
            .route("/resources/stores/config/{store}/items", get(list).patch(bulk_update))
            .route("/resources/stores/config/{store}/item/{key}", put(upsert).delete(delete))
            .with_state(shared.clone());
        Ok(ConfigStoreApi { server: BackgroundServer::start("fastly-config-store-api", app)?, shared })
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

    /// From now on, accept writes without applying them (`true`), or apply them again.
    pub fn lose_writes(&self, lose: bool) {
        self.shared.lock().lose_writes = lose;
    }

    /// What store `id` holds now.
    pub fn items(&self, id: &str) -> BTreeMap<String, String> {
        self.shared.lock().stores.get(id).map(|s| s.items.clone()).unwrap_or_default()
    }

    /// `METHOD path` of every authorised call so far.
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "msg": msg }))).into_response()
}

/// A call without the right `Fastly-Key`.
struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        error(StatusCode::UNAUTHORIZED, "Provided credentials are missing or invalid")
    }
}

/// Checks the token and records the call.
fn admit<'a>(shared: &'a Shared, headers: &HeaderMap, call: String) -> Result<MutexGuard<'a, Stores>, Unauthorized> {
    if headers.get("fastly-key").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return Err(Unauthorized);
    }
    let mut stores = shared.lock();
    stores.calls.push(call);
    Ok(stores)
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

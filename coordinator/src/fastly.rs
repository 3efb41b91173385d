//! A client of the Fastly API for what edgegen needs: purging surrogate keys (one, or
//! batches of at most 256 per call, chunked) and Config Store items (list, upsert, bulk
//! update with upserts and deletes).
//!
//! Every call has a deadline; 429 and 5xx answers and transport errors are retried with
//! exponential backoff and jitter, honouring `Retry-After`, until the deadline. Results are
//! per key: a key the API did not confirm is reported as failed, never dropped. The API token
//! (`Fastly-Key`) is never printed: `Debug` redacts it and errors never contain it.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::hostmap::ItemOp;

/// Fastly's limit of surrogate keys per batch purge.
pub const MAX_KEYS_PER_BATCH: usize = 256;
/// Item operations per Config Store bulk-update call (a store holds at most 500 entries on
/// a paid account, so one call usually suffices).
pub const MAX_OPS_PER_BULK_UPDATE: usize = 500;
/// Fastly's public API.
pub const DEFAULT_API_URL: &str = "https://api.fastly.com";

/// Client settings.
#[derive(Clone)]
pub struct FastlyClient {
    base: String,
    token: String,
    http: reqwest::Client,
    deadline: Duration,
    first_backoff: Duration,
}

impl fmt::Debug for FastlyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastlyClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The outcome for one surrogate key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyResult {
    /// The key.
    pub key: String,
    /// Fastly's purge id when the purge was accepted.
    pub purge_id: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl KeyResult {
    /// The result for `key` from an API answer: the purge id on success, else why not
    /// (`unconfirmed` when the API succeeded without naming the key).
    fn from_answer(key: &str, status: StatusCode, id: Option<String>, body: &str, unconfirmed: &str) -> KeyResult {
        let (purge_id, error) = match (status.is_success(), id) {
            (true, Some(id)) => (Some(id), None),
            (true, None) => (None, Some(unconfirmed.to_owned())),
            (false, _) => (None, Some(format!("HTTP {status}: {}", body.trim()))),
        };
        KeyResult { key: key.to_owned(), purge_id, error }
    }
}

/// The outcome of a purge: one result per key, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Per key.
    pub results: Vec<KeyResult>,
    /// API calls made (retries included).
    pub calls: usize,
}

impl PurgeReport {
    /// Keys that failed.
    pub fn failed(&self) -> impl Iterator<Item = &KeyResult> {
        self.results.iter().filter(|r| r.error.is_some())
    }
}

/// A call that did not succeed before its deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CallError(pub String);

fn jitter(max: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(random % nanos)
}

fn percent_encode(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl FastlyClient {
    /// A client of `base` (e.g. [`DEFAULT_API_URL`]) with `token`; each call gives up after
    /// `deadline`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, token: &str, deadline: Duration) -> Result<Self, CallError> {
        let http = reqwest::Client::builder()
            .timeout(deadline)
            .build()
            .map_err(|e| CallError(format!("building the HTTP client: {e}")))?;
        Ok(FastlyClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            deadline,
            first_backoff: Duration::from_millis(100),
        })
    }

    /// Sends one request, retrying 429/5xx/transport errors until the deadline. Returns the
    /// status, body and number of calls.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Result<(StatusCode, String, usize), (CallError, usize)> {
        let started = Instant::now();
        let mut backoff = self.first_backoff;
        let mut calls = 0;
        loop {
            calls += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("Fastly-Key", &self.token)
                .header("Accept", "application/json");
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            if let Some((content_type, body)) = &body {
                req = req.header("Content-Type", *content_type).body(body.clone());
            }
            let remaining = self.deadline.saturating_sub(started.elapsed());
            let outcome = tokio::time::timeout(remaining, req.send()).await;
            let (retry_after, why) = match outcome {
                Err(_) => {
                    return Err((CallError(format!("{method} {path}: deadline of {:?} passed", self.deadline)), calls));
                }
                Ok(Err(e)) => (None, format!("transport error: {}", e.without_url())),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        let retry_after = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        (retry_after, format!("HTTP {status}"))
                    } else {
                        let text = resp.text().await.unwrap_or_default();
                        return Ok((status, text, calls));
                    }
                }
            };
            let wait = retry_after.unwrap_or(backoff + jitter(backoff / 2));
            if started.elapsed() + wait >= self.deadline {
                return Err((
                    CallError(format!("{method} {path}: {why}; no retry fits the deadline of {:?}", self.deadline)),
                    calls,
                ));
            }
            tracing::warn!(path, why = %why, wait_ms = wait.as_millis() as u64, "Fastly API call will be retried");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Purges `keys` from `service`, in batches of at most [`MAX_KEYS_PER_BATCH`] (a single
    /// key uses the single-key endpoint). Soft purges mark objects stale instead of removing.
    pub async fn purge(&self, service: &str, keys: &[String], soft: bool) -> PurgeReport {
        let soft_header: &[(&str, &str)] = if soft { &[("Fastly-Soft-Purge", "1")] } else { &[] };
        let mut results = Vec::with_capacity(keys.len());
        let mut calls = 0;
        let service_path = percent_encode(service);
        if let [key] = keys {
            let path = format!("/service/{service_path}/purge/{}", percent_encode(key));
            let result = match self.call(reqwest::Method::POST, &path, soft_header, None).await {
                Ok((status, body, n)) => {
                    calls += n;
                    let id = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned));
                    KeyResult::from_answer(key, status, id, &body, "the API did not return a purge id")
                }
                Err((e, n)) => {
                    calls += n;
                    KeyResult { key: key.clone(), purge_id: None, error: Some(e.0) }
                }
            };
            return PurgeReport { results: vec![result], calls };
        }
        for chunk in keys.chunks(MAX_KEYS_PER_BATCH) {
            let path = format!("/service/{service_path}/purge");
            let body = serde_json::json!({ "surrogate_keys": chunk }).to_string();
            match self.call(reqwest::Method::POST, &path, soft_header, Some(("application/json", body))).await {
                Ok((status, text, n)) => {
                    calls += n;
                    let ids = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).ok();
                    for key in chunk {
                        let id = ids.as_ref().and_then(|m| m.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
                        results.push(KeyResult::from_answer(
                            key,
                            status,
                            id,
                            &text,
                            "the API did not confirm this key",
                        ));
                    }
                }
                Err((e, n)) => {
                    calls += n;
                    results.extend(chunk.iter().map(|k| KeyResult {
                        key: k.clone(),
                        purge_id: None,
                        error: Some(e.0.clone()),
                    }));
                }
            }
        }
        PurgeReport { results, calls }
    }

    /// Creates or updates one Config Store item.
    ///
    /// # Errors
    /// [`CallError`] when the API refuses or the deadline passes.
    pub async fn config_store_upsert(&self, store: &str, key: &str, value: &str) -> Result<(), CallError> {
        let path = format!("/resources/stores/config/{}/item/{}", percent_encode(store), percent_encode(key));
        let body = format!("item_value={}", percent_encode(value));
        let (status, text, _) = self
            .call(reqwest::Method::PUT, &path, &[], Some(("application/x-www-form-urlencoded", body)))
            .await
            .map_err(|(e, _)| e)?;
        if status.is_success() { Ok(()) } else { Err(CallError(format!("PUT {path}: HTTP {status}: {}", text.trim()))) }
    }

    /// Upserts many Config Store items in one call.
    ///
    /// # Errors
    /// [`CallError`] when the API refuses or the deadline passes.
    pub async fn config_store_bulk_upsert(&self, store: &str, items: &[(String, String)]) -> Result<(), CallError> {
        let ops: Vec<ItemOp> =
            items.iter().map(|(key, value)| ItemOp::Upsert { key: key.clone(), value: value.clone() }).collect();
        self.config_store_bulk_update(store, &ops).await
    }

    /// Applies item operations (upserts and deletes) to a Config Store, at most
    /// [`MAX_OPS_PER_BULK_UPDATE`] per call, in order. Calls before a failed one stay applied:
    /// the error says how many operations were.
    ///
    /// # Errors
    /// [`CallError`] when the API refuses or the deadline passes.
    pub async fn config_store_bulk_update(&self, store: &str, ops: &[ItemOp]) -> Result<(), CallError> {
        let path = format!("/resources/stores/config/{}/items", percent_encode(store));
        let mut applied = 0;
        for chunk in ops.chunks(MAX_OPS_PER_BULK_UPDATE) {
            let items: Vec<_> = chunk
                .iter()
                .map(|op| match op {
                    ItemOp::Upsert { key, value } => {
                        serde_json::json!({"op": "upsert", "item_key": key, "item_value": value})
                    }
                    ItemOp::Delete { key } => serde_json::json!({"op": "delete", "item_key": key}),
                })
                .collect();
            let body = serde_json::json!({ "items": items }).to_string();
            let (status, text, _) = self
                .call(reqwest::Method::PATCH, &path, &[], Some(("application/json", body)))
                .await
                .map_err(|(e, _)| CallError(format!("{e} ({applied} of {} operations applied before)", ops.len())))?;
            if !status.is_success() {
                return Err(CallError(format!(
                    "PATCH {path}: HTTP {status}: {} ({applied} of {} operations applied before)",
                    text.trim(),
                    ops.len()
                )));
            }
            applied += chunk.len();
        }
        Ok(())
    }

    /// Every item of a Config Store, key → value.
    ///
    /// # Errors
    /// [`CallError`] when the API refuses, answers something else than a list of items, or
    /// the deadline passes.
    pub async fn config_store_items(&self, store: &str) -> Result<BTreeMap<String, String>, CallError> {
        #[derive(Deserialize)]
        struct Item {
            item_key: String,
            item_value: String,
        }
        let path = format!("/resources/stores/config/{}/items", percent_encode(store));
        let (status, text, _) = self.call(reqwest::Method::GET, &path, &[], None).await.map_err(|(e, _)| e)?;
        if !status.is_success() {
            return Err(CallError(format!("GET {path}: HTTP {status}: {}", text.trim())));
        }
        let items: Vec<Item> = serde_json::from_str(&text)
            .map_err(|e| CallError(format!("GET {path}: not a list of Config Store items: {e}")))?;
        Ok(items.into_iter().map(|i| (i.item_key, i.item_value)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let c = FastlyClient::new("http://127.0.0.1:1", "super-secret-token", Duration::from_secs(1)).unwrap();
        assert!(!format!("{c:?}").contains("super-secret"));
    }

    #[test]
    fn keys_are_path_encoded() {
        assert_eq!(percent_encode("t/acme/k/user 42"), "t%2Facme%2Fk%2Fuser%2042");
    }
}

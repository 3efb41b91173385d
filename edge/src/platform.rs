//! The thin shell between Fastly Compute and the pure logic in the library: reads stores,
//! talks to the Core Cache and backends, builds responses. Every decision is the library's;
//! expected failures become explicit responses and nothing here panics on input.
//!
//! Per request: resolve the tenant from `Host`; drop unkeyed and `edgegen-*` client headers
//! (keeping the probe token aside); load the tenant's manifest (Core Cache, else the
//! coordinator, verified, acknowledged once per new generation); then answer from the cache
//! under the manifest's scope, refetching anything of another scope, or pass/bypass.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgegen_edge::decision::{self, ContractCheck, Found, Outcome};
use edgegen_edge::settings::{NoManifest, Settings};
use edgegen_edge::stored::{StoredHead, is_stored_header};
use edgegen_edge::{
    CONFIG_STORE, COORDINATOR_BACKEND, EDGE_TOKEN_SECRET, HOSTS_STORE, MANIFEST_KEY_SECRET, ORIGIN_BACKEND,
    PROBE_KEY_SECRET, SECRET_STORE, STATE_PATH, TenantResolution, error_body, host_key, is_edgegen_header,
    is_unkeyed_request_header, policy, resolve_tenant,
};
use edgegen_shared::key::{CacheKey, KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::manifest::{self, Manifest};
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::surrogate::{self, SurrogateKey};
use edgegen_shared::{Ack, PopId, Report, ReportKind, SecretKey, TenantId, probe};
use fastly::cache::core::{self as cache, Transaction};
use fastly::http::StatusCode;
use fastly::http::request::PendingRequest;
use fastly::{ConfigStore, Request, Response, SecretStore};

/// Largest origin body the edge stores (larger ones are served, not stored).
const MAX_STORED_BODY: usize = 8 << 20;
/// Clock difference tolerated between coordinator and edge when checking `issued_at`.
const MANIFEST_SKEW_MS: u64 = 5_000;
/// How long the "last acknowledged generation" record of a tenant is kept per PoP.
const ACKED_RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::from_status(status)
        .with_header("content-type", "application/json")
        .with_header("cache-control", "no-store")
        .with_body(error_body(code, message))
}

fn misconfigured(detail: &str) -> Response {
    eprintln!("edgegen-edge: misconfigured: {detail}");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "edge_misconfigured", "the edge is not configured for this request")
}

struct Secrets {
    manifest_key: SecretKey,
    probe_key: SecretKey,
    edge_token: String,
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
    })
}

/// Handles one request; returns the response and the background requests to await after
/// it was sent.
pub fn handle(mut req: Request) -> (Response, Vec<PendingRequest>) {
    let mut background = Vec::new();
    let config = ConfigStore::try_open(CONFIG_STORE).ok();
    let settings = match Settings::read(|k| config.as_ref().and_then(|c| c.try_get(k).ok().flatten())) {
        Ok(s) => s,
        Err(e) => return (misconfigured(&e), background),
    };
    let pop = settings.pop.clone().unwrap_or_else(|| fastly::compute_runtime::pop().to_owned());

    let hosts = match ConfigStore::try_open(HOSTS_STORE) {
        Ok(store) => store,
        Err(_) => return (misconfigured(&format!("config store {HOSTS_STORE} is missing")), background),
    };
    let host = req.get_header_str("host").map(str::to_owned);
    let tenant = match resolve_tenant(host.as_deref(), |key| hosts.try_get(key).ok().flatten()) {
        TenantResolution::Tenant(tenant) => tenant,
        TenantResolution::BadHost => {
            let r = json_error(StatusCode::BAD_REQUEST, "bad_host", "the request has no valid Host header");
            return (r, background);
        }
        TenantResolution::UnknownHost(host) => {
            let message = format!("no tenant is configured for host {host:?}");
            return (json_error(StatusCode::NOT_FOUND, "unknown_host", &message), background);
        }
        TenantResolution::Misconfigured { host, value } => {
            return (misconfigured(&format!("host {host:?} maps to {value:?}, which is not a tenant id")), background);
        }
    };

    // Client headers edgegen does not key never reach the origin; the probe token is kept aside.
    let probe_token = req.get_header_str("edgegen-probe").map(str::to_owned);
    #[cfg(feature = "test-hooks")]
    let plant: Option<u64> = req.get_header_str("edgegen-test-plant").and_then(|g| g.parse().ok());
    let unkeyed: Vec<_> = req.get_header_names().filter(|n| is_unkeyed_request_header(n.as_str())).cloned().collect();
    for name in unkeyed {
        req.remove_header(&name);
    }
    if let Some(canonical) = host.as_deref().and_then(host_key) {
        req.set_header("host", canonical);
    }

    let secrets = match secrets() {
        Ok(s) => s,
        Err(e) => return (misconfigured(&e), background),
    };
    let now = now_ms();
    // An invalid, expired or other-tenant token is treated exactly like no token.
    let probing = probe_token.is_some_and(|t| probe::verify(&t, &tenant, now / 1000, &secrets.probe_key).is_ok());

    let loaded = load_manifest(&tenant, &settings, &secrets, &pop, now, &mut background);
    if probing && req.get_path() == STATE_PATH {
        return (state_response(&tenant, &pop, &settings, &loaded, now), background);
    }
    let (manifest, fetched_at) = match loaded {
        Ok(m) => m,
        Err(reason) => {
            eprintln!("edgegen-edge: no valid manifest for tenant {tenant}: {reason}");
            if settings.no_manifest == NoManifest::Unavailable {
                let r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_manifest",
                    "the tenant's state cannot be confirmed",
                );
                return (r, background);
            }
            let mut resp = forward(req, &tenant, None);
            if probing {
                add_probe_headers(&mut resp, Outcome::Bypass, None, None, &tenant, &pop, None);
            }
            return (resp, background);
        }
    };
    let scope = manifest.scope();
    let manifest_age = Some(now.saturating_sub(fetched_at));

    let method = req.get_method_str().to_owned();
    let cacheable = policy::request_cacheable(
        &method,
        req.contains_header("authorization"),
        req.contains_header("cookie"),
        settings.credentials_allowed(&tenant),
    );
    let query = req.get_query_str().map(str::to_owned);
    let path = req.get_path().to_owned();
    // HEAD shares GET's object: the key is derived for GET and the origin is asked for GET.
    let normalized =
        NormalizedRequest::new(&RequestParts { method: "GET", path: &path, query: query.as_deref(), vary: &[] });
    let normalized = match normalized {
        Ok(n) if cacheable => n,
        _ => {
            let mut resp = forward(req, &tenant, Some(&scope));
            if probing {
                add_probe_headers(&mut resp, Outcome::Pass, None, Some(&scope), &tenant, &pop, manifest_age);
            }
            return (resp, background);
        }
    };
    let key = CacheKey::derive(&scope, &normalized);
    #[cfg(feature = "test-hooks")]
    if let (true, Some(generation)) = (probing, plant) {
        return (test_hooks::plant(&key, &scope, generation, now), background);
    }
    let head_only = method == "HEAD";
    let (mut resp, outcome) =
        match cached(req, &tenant, &scope, &normalized, &key, &settings, &pop, now, &secrets, &mut background) {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("edgegen-edge: cache error for tenant {tenant}: {e}");
                let r = json_error(StatusCode::BAD_GATEWAY, "origin_unreachable", "the origin could not be reached");
                (r, Outcome::Miss)
            }
        };
    if head_only {
        resp.set_body(Vec::<u8>::new());
    }
    if probing {
        add_probe_headers(&mut resp, outcome, Some(&key.to_hex()), Some(&scope), &tenant, &pop, manifest_age);
    }
    (resp, background)
}

fn add_probe_headers(
    resp: &mut Response,
    outcome: Outcome,
    key: Option<&str>,
    scope: Option<&KeyScope>,
    tenant: &TenantId,
    pop: &str,
    manifest_age: Option<u64>,
) {
    for (name, value) in decision::probe_headers(outcome, key, scope, tenant.as_str(), pop, manifest_age) {
        resp.set_header(name, value);
    }
}

/// Sends `req` to the origin with edgegen's expectations (when a manifest is known) and
/// returns its answer without edgegen's response headers. Nothing is cached.
fn forward(mut req: Request, tenant: &TenantId, scope: Option<&KeyScope>) -> Response {
    set_expectations(&mut req, tenant, scope);
    match req.send(ORIGIN_BACKEND) {
        Ok(mut resp) => {
            strip_edgegen(&mut resp);
            resp
        }
        Err(err) => {
            eprintln!("edgegen-edge: origin request failed for tenant {tenant}: {err}");
            json_error(StatusCode::BAD_GATEWAY, "origin_unreachable", "the origin could not be reached")
        }
    }
}

fn set_expectations(req: &mut Request, tenant: &TenantId, scope: Option<&KeyScope>) {
    req.set_header("edgegen-tenant", tenant.as_str());
    if let Some(scope) = scope {
        req.set_header("edgegen-schema", scope.schema_version.to_string());
        req.set_header("edgegen-contract", scope.contract_hash.to_string());
    }
}

fn strip_edgegen(resp: &mut Response) {
    let names: Vec<_> = resp.get_header_names().filter(|n| is_edgegen_header(n.as_str())).cloned().collect();
    for name in names {
        resp.remove_header(&name);
    }
}

/// Answers a cacheable request under `scope`: HIT, or fetch (MISS / STALE-REJECTED /
/// MISMATCH). Concurrent misses for one key wait on one transaction (one origin fetch).
#[allow(clippy::too_many_arguments)]
fn cached(
    mut req: Request,
    tenant: &TenantId,
    scope: &KeyScope,
    normalized: &NormalizedRequest,
    key: &CacheKey,
    settings: &Settings,
    pop: &str,
    now: u64,
    secrets: &Secrets,
    background: &mut Vec<PendingRequest>,
) -> Result<(Response, Outcome), String> {
    let cache_key: cache::CacheKey = key.as_bytes().to_vec().into();
    let txn = Transaction::lookup(cache_key.clone()).execute().map_err(|e| format!("cache lookup: {e}"))?;
    let mut stale = false;
    if let Some(found) = txn.found() {
        match decision::judge_found(&found.user_metadata(), scope) {
            Found::Serve(head) => {
                let body = found.to_stream().map_err(|e| format!("cache read: {e}"))?;
                let mut resp = Response::from_status(head.status).with_body(body);
                for (name, value) in &head.headers {
                    resp.append_header(name.as_str(), value.as_slice());
                }
                resp.set_header("age", found.age().as_secs().to_string());
                return Ok((resp, Outcome::Hit));
            }
            Found::Reject => {
                // Counted in the service's log stream: one line per rejected object.
                eprintln!("edgegen-edge: stale-rejected tenant={tenant} generation={} key={}", scope.generation, key);
                stale = true;
            }
        }
    }

    // Fetch exactly the request that was keyed.
    req.set_method("GET");
    req.set_path(normalized.path());
    if normalized.query().is_empty() {
        req.remove_query();
    } else {
        req.set_query_str(normalized.query());
    }
    set_expectations(&mut req, tenant, Some(scope));
    let mut resp = req.send(ORIGIN_BACKEND).map_err(|e| format!("origin: {e}"))?;
    let check = decision::check_origin_contract(
        scope,
        resp.get_header_str("edgegen-schema"),
        resp.get_header_str("edgegen-contract"),
        settings.unstamped(tenant),
    );
    strip_edgegen(&mut resp);
    if let ContractCheck::Mismatch { observed_schema, observed_contract } = check {
        let report = Report {
            pop: PopId::new(pop).unwrap_or_else(|_| PopId::new("invalid-pop").expect("valid")),
            tenant: tenant.clone(),
            kind: ReportKind::ContractMismatch,
            generation: scope.generation,
            expected_schema: scope.schema_version,
            expected_contract: scope.contract_hash,
            observed_schema,
            observed_contract,
            path: Some(normalized.path().to_owned()),
            observed_at: now,
        };
        post_to_coordinator("/v1/edge/reports", &report, secrets, background);
        return Ok((resp, Outcome::Mismatch));
    }

    let ttl = policy::response_ttl_secs(
        resp.get_status().as_u16(),
        resp.get_header_str("cache-control"),
        resp.contains_header("set-cookie"),
        resp.get_header_str("vary"),
    );
    let outcome = if stale { Outcome::StaleRejected } else { Outcome::Miss };
    let Some(ttl) = ttl else { return Ok((resp, outcome)) };
    let keys = match surrogate::object_keys(tenant, scope.generation, resp.get_header_str("surrogate-key")) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("edgegen-edge: not storing (surrogate keys): {e}");
            return Ok((resp, outcome));
        }
    };
    let body = resp.take_body_bytes();
    if body.len() > MAX_STORED_BODY {
        resp.set_body(body);
        return Ok((resp, outcome));
    }
    let head = StoredHead {
        metadata: ObjectMetadata::new(scope, now),
        status: resp.get_status().as_u16(),
        headers: resp
            .get_header_names_str()
            .into_iter()
            .filter(|n| is_stored_header(n))
            .flat_map(|n| resp.get_header_all(n).map(move |v| (n.to_owned(), v.as_bytes().to_vec())))
            .collect(),
    };
    let key_strs: Vec<&str> = keys.iter().map(SurrogateKey::as_str).collect();
    let ttl = Duration::from_secs(ttl);
    let writer = if stale {
        // A found object cannot be updated through its transaction: overwrite it.
        cache::insert(cache_key, ttl).user_metadata(head.encode().into()).surrogate_keys(key_strs).execute()
    } else if txn.must_insert_or_update() {
        txn.insert(ttl).user_metadata(head.encode().into()).surrogate_keys(key_strs).execute()
    } else {
        return Ok((resp.with_body(body), outcome));
    };
    match writer {
        Ok(mut w) => {
            if let Err(e) = w.write_all(&body).and_then(|()| w.finish()) {
                eprintln!("edgegen-edge: cache write failed: {e}");
            }
        }
        Err(e) => eprintln!("edgegen-edge: cache insert failed: {e}"),
    }
    resp.remove_header("surrogate-key");
    Ok((resp.with_body(body), outcome))
}

/// Sends a JSON body to the coordinator in the background.
fn post_to_coordinator(
    path: &str,
    body: &impl serde::Serialize,
    secrets: &Secrets,
    background: &mut Vec<PendingRequest>,
) {
    let Ok(json) = serde_json::to_string(body) else { return };
    let req = Request::post(format!("http://coordinator{path}"))
        .with_header("authorization", format!("Bearer {}", secrets.edge_token))
        .with_header("content-type", "application/json")
        .with_body(json);
    match req.send_async(COORDINATOR_BACKEND) {
        Ok(pending) => background.push(pending),
        Err(e) => eprintln!("edgegen-edge: POST {path} failed: {e}"),
    }
}

/// The tenant's manifest and when this PoP fetched it: from the Core Cache while fresh,
/// else from the coordinator (one fetch per PoP at a time: concurrent requests wait on the
/// transaction), verified before use. A newer generation than the last acknowledged one is
/// acknowledged in the background.
fn load_manifest(
    tenant: &TenantId,
    settings: &Settings,
    secrets: &Secrets,
    pop: &str,
    now: u64,
    background: &mut Vec<PendingRequest>,
) -> Result<(Manifest, u64), String> {
    let key: cache::CacheKey = format!("edgegen/manifest/{tenant}").into_bytes().into();
    let txn = Transaction::lookup(key.clone()).execute().map_err(|e| format!("cache lookup: {e}"))?;
    let mut found_stale = false;
    if let Some(found) = txn.found() {
        let fetched_at =
            found.user_metadata().get(..8).map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
        let body = found.to_stream().map_err(|e| format!("cache read: {e}"))?.into_bytes();
        match manifest::verify(&body, &secrets.manifest_key, tenant) {
            Ok(m) if m.is_fresh(fetched_at, now) && fetched_at + settings.manifest_max_age_cap_ms > now => {
                return Ok((m, fetched_at));
            }
            _ => found_stale = true,
        }
    }
    let req = Request::get(format!("http://coordinator/v1/edge/manifests/{tenant}"))
        .with_header("authorization", format!("Bearer {}", secrets.edge_token));
    let mut resp = req.send(COORDINATOR_BACKEND).map_err(|e| format!("coordinator unreachable: {e}"))?;
    if resp.get_status() != StatusCode::OK {
        return Err(format!("coordinator answered {}", resp.get_status()));
    }
    let body = resp.take_body_bytes();
    let m = manifest::verify(&body, &secrets.manifest_key, tenant).map_err(|e| e.to_string())?;
    if !m.is_current(now, MANIFEST_SKEW_MS) {
        return Err(format!("manifest issued at {} is not current at {now}", m.issued_at));
    }
    let ttl = Duration::from_millis(m.max_age_ms.min(settings.manifest_max_age_cap_ms));
    let manifest_keys = [SurrogateKey::manifest(tenant)];
    let surrogate: Vec<&str> = manifest_keys.iter().map(SurrogateKey::as_str).collect();
    let writer = if found_stale {
        cache::insert(key, ttl).user_metadata(now.to_be_bytes().to_vec().into()).surrogate_keys(surrogate).execute()
    } else if txn.must_insert_or_update() {
        txn.insert(ttl).user_metadata(now.to_be_bytes().to_vec().into()).surrogate_keys(surrogate).execute()
    } else {
        return Ok((m, now));
    };
    if let Ok(mut w) = writer
        && let Err(e) = w.write_all(&body).and_then(|()| w.finish())
    {
        eprintln!("edgegen-edge: manifest cache write failed: {e}");
    }
    acknowledge(&m, pop, now, secrets, background);
    Ok((m, now))
}

/// Posts an ack if `m` is newer than the last generation this PoP acknowledged for the tenant.
fn acknowledge(m: &Manifest, pop: &str, now: u64, secrets: &Secrets, background: &mut Vec<PendingRequest>) {
    let key: cache::CacheKey = format!("edgegen/acked/{}", m.tenant).into_bytes().into();
    let last = cache::lookup(key.clone())
        .execute()
        .ok()
        .flatten()
        .and_then(|f| f.user_metadata().get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))))
        .unwrap_or(0);
    if m.generation.0 <= last {
        return;
    }
    if let Ok(w) =
        cache::insert(key, ACKED_RECORD_TTL).user_metadata(m.generation.0.to_be_bytes().to_vec().into()).execute()
    {
        let _ = w.finish();
    }
    let Ok(pop) = PopId::new(pop) else {
        eprintln!("edgegen-edge: PoP name {pop:?} is not a valid PoP id; not acknowledging");
        return;
    };
    let ack = Ack { pop, tenant: m.tenant.clone(), generation: m.generation, observed_at: now };
    post_to_coordinator("/v1/edge/acks", &ack, secrets, background);
}

fn state_response(
    tenant: &TenantId,
    pop: &str,
    settings: &Settings,
    loaded: &Result<(Manifest, u64), String>,
    now: u64,
) -> Response {
    let manifest = match loaded {
        Ok((m, fetched_at)) => serde_json::json!({
            "valid": true,
            "manifest": m,
            "fetched_at": fetched_at,
            "age_ms": now.saturating_sub(*fetched_at),
        }),
        Err(reason) => serde_json::json!({ "valid": false, "reason": reason }),
    };
    let body = serde_json::json!({
        "tenant": tenant,
        "pop": pop,
        "now": now,
        "manifest": manifest,
        "manifest_max_age_cap_ms": settings.manifest_max_age_cap_ms,
        "no_manifest": format!("{:?}", settings.no_manifest).to_lowercase(),
    });
    Response::from_status(StatusCode::OK)
        .with_header("content-type", "application/json")
        .with_header("cache-control", "no-store")
        .with_body(body.to_string())
}

/// Test-only: plants an object under a request's key with another generation's metadata,
/// so tests can show it is never served. Compiled only with the `test-hooks` feature.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::io::Write as _;
    use std::time::Duration;

    use edgegen_edge::stored::StoredHead;
    use edgegen_shared::Generation;
    use edgegen_shared::key::{CacheKey, KeyScope};
    use edgegen_shared::metadata::ObjectMetadata;
    use fastly::Response;
    use fastly::cache::core as cache;
    use fastly::http::StatusCode;

    pub fn plant(key: &CacheKey, scope: &KeyScope, generation: u64, now: u64) -> Response {
        let stale = KeyScope { generation: Generation(generation), ..scope.clone() };
        let head = StoredHead {
            metadata: ObjectMetadata::new(&stale, now),
            status: 200,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
        };
        let cache_key: cache::CacheKey = key.as_bytes().to_vec().into();
        let planted = cache::insert(cache_key, Duration::from_secs(300))
            .user_metadata(head.encode().into())
            .execute()
            .map_err(|e| e.to_string())
            .and_then(|mut w| w.write_all(br#"{"planted":true}"#).and_then(|()| w.finish()).map_err(|e| e.to_string()));
        match planted {
            Ok(()) => Response::from_status(StatusCode::NO_CONTENT),
            Err(e) => Response::from_status(StatusCode::INTERNAL_SERVER_ERROR).with_body(e),
        }
    }
}

//! The edge's request pipeline, platform-free: everything between "a client request
//! arrived" and "this response goes back", written against the small [`Platform`] trait (the
//! hosts map, the object cache, the origin, the coordinator) in the style of pingora-cache's
//! storage/phase split. The Fastly shell implements [`Platform`] and does I/O only; native
//! tests implement it in memory. No `fastly` here.
//!
//! Phases of one request ([`handle`]): routing (duplicate `Host` → 400, tenant from `Host`
//! only), request hygiene (unkeyed, `edgegen-*`, hop-by-hop and `Connection`-nominated
//! headers dropped; bodies of GET/HEAD dropped), manifest (trusted from the cache while
//! fresh, else revalidated with `If-None-Match` — a 304's lease must verify against the held
//! manifest — or fetched and verified; kept while the coordinator is unreachable until its
//! signed stale bound, asking again once per max age, not per request; acknowledged once
//! per generation), then either
//! pass/bypass (with §4.4 invalidation after unsafe methods) or the cache: lookup (through a
//! Vary index when the URL varies), reuse if fresh, serve stale while revalidating in the
//! background ([`Deferred`], run by [`run_deferred`] after the response is sent), revalidate
//! with a conditional request (304 refreshes the stored head), serve stale on origin errors
//! within `stale-if-error`, else fetch, check the origin's contract stamps and store.
//! Every stored object is scoped to the manifest's generation: no path serves an object of
//! another generation.

use edgegen_shared::key::{CacheKey, KeyDeriver, KeyScope, NormalizedRequest, RequestParts};
use edgegen_shared::lease::{self, LEASE_HEADER, Lease, Standing};
use edgegen_shared::manifest::{self, Manifest};
use edgegen_shared::metadata::ObjectMetadata;
use edgegen_shared::surrogate::{self, SurrogateKey};
use edgegen_shared::{Ack, PopId, Report, ReportKind, SecretKey, TenantId, probe};

use crate::decision::{self, ContractCheck, Found, Outcome};
use crate::fields::{Directives, Headers, decimal, format_http_date, parse_http_date, split_list, strip_hop_by_hop};
use crate::freshness::{self, Exchange, Timing};
use crate::held::Held;
use crate::settings::{NoManifest, Settings};
use crate::stored::{Record, StoredHead, is_stored_header};
use crate::{STATE_PATH, TenantResolution, error_body, host_key, is_edgegen_header, is_unkeyed_request_header};

/// Largest origin body the edge stores (larger ones are served, not stored).
pub const MAX_STORED_BODY: usize = 8 << 20;
/// Clock difference tolerated between coordinator and edge when checking `issued_at`.
const MANIFEST_SKEW_MS: u64 = 5_000;
/// How long a PoP waits before sending again a contract report the coordinator has not (yet)
/// accepted.
pub const REPORT_RETRY_SECS: u64 = 2;

/// How long the "last acknowledged generation" record of a tenant is kept per PoP.
const ACKED_RECORD_SECS: u64 = 24 * 60 * 60;
/// How long an invalidation tombstone is kept (it only has to outlive the object it replaced,
/// which the insert already overwrote).
const TOMBSTONE_SECS: u64 = 1;
/// Most variants indexed per URL; a further variant replaces the oldest.
pub const MAX_VARIANTS: usize = 16;

/// A request as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Path, percent-encoded, starting with `/`.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Field lines.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A body: bytes in memory, or a stored object's body as the platform hands it out (so a
/// HIT streams it without copying).
#[derive(Debug)]
pub enum Body<B> {
    /// In memory.
    Bytes(Vec<u8>),
    /// A cached body.
    Stored(B),
}

/// A response as the pipeline produces it.
#[derive(Debug)]
pub struct Response<B> {
    /// Status.
    pub status: u16,
    /// Field lines.
    pub headers: Headers,
    /// Body (empty for HEAD and 304).
    pub body: Body<B>,
}

/// An origin or coordinator answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Status.
    pub status: u16,
    /// Field lines.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

/// A found cache entry: its user metadata and its body.
pub type Entry<B> = (Vec<u8>, B);

/// What the pipeline needs from a runtime.
pub trait Platform {
    /// A stored object's body.
    type Body;
    /// The tenant id configured for a canonical host name (the hosts Config Store).
    fn host_tenant(&mut self, host: &str) -> Option<String>;
    /// Looks `key` up: its user metadata and body. With `collapse`, concurrent lookups of a
    /// missing key from other requests wait until this request inserts it or finishes.
    ///
    /// # Errors
    /// A platform failure, as text.
    fn lookup(&mut self, key: &[u8], collapse: bool) -> Result<Option<Entry<Self::Body>>, String>;
    /// Stores `body` under `key` with `meta`, kept `keep_secs`, tagged with surrogate keys.
    ///
    /// # Errors
    /// A platform failure, as text.
    fn insert(
        &mut self,
        key: &[u8],
        meta: &[u8],
        body: &[u8],
        keep_secs: u64,
        surrogate_keys: &[&str],
    ) -> Result<(), String>;
    /// Reads a stored body into memory.
    ///
    /// # Errors
    /// A platform failure, as text.
    fn read_body(&mut self, body: Self::Body) -> Result<Vec<u8>, String>;
    /// Sends a request to the tenants' origin.
    ///
    /// # Errors
    /// The origin cannot be reached.
    fn origin(&mut self, req: &Request) -> Result<Fetched, String>;
    /// `GET` on the coordinator's edge API, with the given extra request headers.
    ///
    /// # Errors
    /// The coordinator cannot be reached.
    fn coordinator_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Fetched, String>;
    /// `POST` of a JSON body to the coordinator's edge API, in the background (awaited after
    /// the response is sent). Only once the coordinator accepted it (2xx) does the platform
    /// write `on_accepted`; a failure is logged and writes nothing.
    fn coordinator_post(&mut self, path: &str, json: String, on_accepted: Option<OnAccepted>);
    /// A log line (the platform's stderr).
    fn log(&mut self, line: &str);
    /// The clock, Unix ms: when an origin response arrived (its delay counts in its age).
    fn now_ms(&self) -> u64;
}

/// A cache entry (no body, no surrogate keys) a platform writes once the coordinator
/// accepted a background POST: what makes the post's effect known to the PoP's later
/// requests only when it really happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnAccepted {
    /// The entry's key.
    pub key: Vec<u8>,
    /// Its user metadata.
    pub meta: Vec<u8>,
    /// How long it is kept, seconds.
    pub keep_secs: u64,
}

/// Per-request inputs the shell reads from its stores and clock.
#[derive(Debug, Clone)]
pub struct Env {
    /// Edge settings.
    pub settings: Settings,
    /// This PoP's name.
    pub pop: String,
    /// Manifest verification key.
    pub manifest_key: SecretKey,
    /// Probe token key.
    pub probe_key: SecretKey,
    /// Now, Unix ms.
    pub now_ms: u64,
}

/// Work to do after the response was sent.
#[derive(Debug, Clone)]
pub enum Deferred {
    /// Refresh a stale object served under `stale-while-revalidate`.
    Refresh(Refresh),
}

/// A background refresh of one stored object.
#[derive(Debug, Clone)]
pub struct Refresh {
    scope: KeyScope,
    target: Target,
    origin_req: Request,
    head: StoredHead,
    authorized: bool,
}

/// The outcome of [`handle`].
#[derive(Debug)]
pub struct Handled<B> {
    /// The response for the client.
    pub response: Response<B>,
    /// Work to run after it was sent.
    pub deferred: Vec<Deferred>,
}

impl<B> Handled<B> {
    fn now(response: Response<B>) -> Self {
        Handled { response, deferred: Vec::new() }
    }
}

/// A JSON error response of the edge itself (never stored).
pub fn json_error<B>(status: u16, code: &str, message: &str) -> Response<B> {
    let mut headers = Headers::new();
    headers.append("content-type", b"application/json".to_vec());
    headers.append("cache-control", b"no-store".to_vec());
    Response { status, headers, body: Body::Bytes(error_body(code, message).into_bytes()) }
}

fn misconfigured<B, P: Platform>(p: &mut P, detail: &str) -> Response<B> {
    p.log(&format!("misconfigured: {detail}"));
    json_error(503, "edge_misconfigured", "the edge is not configured for this request")
}

/// The request fields a client must never be able to steer the origin with; matched
/// case-insensitively and in their underscore spelling (see [`crate::is_unkeyed_request_header`]).
fn sanitize_request(headers: &mut Headers) {
    strip_hop_by_hop(headers);
    headers.retain(|n| !is_unkeyed_request_header(n));
}

/// Handles one client request.
pub fn handle<P: Platform>(p: &mut P, env: &Env, mut req: Request) -> Handled<P::Body> {
    if req.headers.count("host") > 1 {
        return Handled::now(json_error(400, "duplicate_host", "the request has more than one Host header"));
    }
    let host = req.headers.get("host").map(str::to_owned);
    let tenant = match crate::resolve_tenant(host.as_deref(), |key| p.host_tenant(key)) {
        TenantResolution::Tenant(tenant) => tenant,
        TenantResolution::BadHost => {
            return Handled::now(json_error(400, "bad_host", "the request has no valid Host header"));
        }
        TenantResolution::UnknownHost(host) => {
            let message = format!("no tenant is configured for host {host:?}");
            return Handled::now(json_error(404, "unknown_host", &message));
        }
        TenantResolution::Misconfigured { host, value } => {
            let detail = format!("host {host:?} maps to {value:?}, which is not a tenant id");
            return Handled::now(misconfigured(p, &detail));
        }
    };

    let probe_token = req.headers.get("edgegen-probe").map(str::to_owned);
    #[cfg(feature = "test-hooks")]
    let plant: Option<u64> = req.headers.get("edgegen-test-plant").and_then(|g| g.parse().ok());
    sanitize_request(&mut req.headers);
    if let Some(canonical) = host.as_deref().and_then(host_key) {
        req.headers.set("host", canonical);
    }
    let now = env.now_ms;
    // An invalid, expired or other-tenant token is treated exactly like no token.
    let probing = probe_token.is_some_and(|t| probe::verify(&t, &tenant, now / 1000, &env.probe_key).is_ok());
    let view = View { tenant: tenant.clone(), pop: env.pop.clone(), probing };

    let loaded = load_manifest(p, env, &tenant);
    if probing && req.path == STATE_PATH {
        return Handled::now(state_response(&tenant, env, &loaded));
    }
    let (manifest, held) = match loaded {
        Ok(m) => m,
        Err(reason) => {
            p.log(&format!("no valid manifest for tenant {tenant}: {reason}"));
            if env.settings.no_manifest == NoManifest::Unavailable {
                return Handled::now(json_error(503, "no_manifest", "the tenant's state cannot be confirmed"));
            }
            let resp = forward(p, req, &tenant, None);
            return Handled::now(view.finish(resp, Outcome::Bypass, None, None, None));
        }
    };
    let scope = manifest.scope();
    let manifest_age = Some(now.saturating_sub(held.confirmed_at));

    let safe = matches!(req.method.as_str(), "GET" | "HEAD");
    if safe {
        // A body on a GET/HEAD is never part of the key: it never reaches the origin.
        req.body.clear();
        req.headers.remove("content-length");
    }
    // §3.5's conditions apply to any credentialed request: a cookie-selected answer is as
    // personal as an authenticated one.
    let credentialed = req.headers.contains("authorization") || req.headers.contains("cookie");
    let cacheable = safe && (!credentialed || env.settings.credentials_allowed(&tenant));
    let target = Target::of(&req);
    let target = match target {
        Ok(t) if cacheable => t,
        _ => {
            let unsafe_method = !safe && !matches!(req.method.as_str(), "OPTIONS" | "TRACE");
            let host = req.headers.get("host").map(str::to_owned);
            let path = (req.path.clone(), req.query.clone());
            let resp = forward(p, req, &tenant, Some(&scope));
            if unsafe_method && (200..400).contains(&resp.status) {
                invalidate_after_unsafe(p, &scope, &path, host.as_deref(), &resp.headers);
            }
            return Handled::now(view.finish(resp, Outcome::Pass, None, Some(&scope), manifest_age));
        }
    };
    #[cfg(feature = "test-hooks")]
    if let (true, Some(generation)) = (probing, plant) {
        return Handled::now(test_hooks::plant(p, &target, &scope, generation, now));
    }
    let mut handled =
        Cached { p, env, scope: &scope, tenant: &tenant, authorized: credentialed, keys: KeyDeriver::new(&scope) }
            .serve(req, &target);
    let key = handled.key.map(|k| k.to_hex());
    handled.response = view.finish(handled.response, handled.outcome, key.as_deref(), Some(&scope), manifest_age);
    Handled { response: handled.response, deferred: handled.deferred }
}

/// The cache phase alone, for a request that already passed routing and hygiene and whose
/// tenant's manifest `scope` is verified: the per-request decision path a HIT pays (key
/// derivation through the Vary index, the found entries' verdicts, freshness, the client's
/// view). Used by the benchmark; [`handle`] calls the same code.
pub fn serve_cached<P: Platform>(p: &mut P, env: &Env, scope: &KeyScope, req: Request) -> Handled<P::Body> {
    let Ok(target) = Target::of(&req) else {
        return Handled::now(json_error(400, "unkeyable", "the request target cannot be keyed"));
    };
    let authorized = req.headers.contains("authorization") || req.headers.contains("cookie");
    let answer =
        Cached { p, env, scope, tenant: &scope.tenant, authorized, keys: KeyDeriver::new(scope) }.serve(req, &target);
    Handled { response: answer.response, deferred: answer.deferred }
}

/// What a response is finished with: the tenant, PoP and whether a valid probe asked.
struct View {
    tenant: TenantId,
    pop: String,
    probing: bool,
}

impl View {
    /// Hygiene every client response gets, then the probe's headers if one asked.
    fn finish<B>(
        &self,
        mut resp: Response<B>,
        outcome: Outcome,
        key: Option<&str>,
        scope: Option<&KeyScope>,
        manifest_age: Option<u64>,
    ) -> Response<B> {
        resp.headers.retain(|n| !matches!(n, "surrogate-key" | "surrogate-control") && !is_edgegen_header(n));
        strip_hop_by_hop(&mut resp.headers);
        if self.probing {
            let headers = decision::probe_headers(outcome, key, scope, self.tenant.as_str(), &self.pop, manifest_age);
            for (name, value) in headers {
                resp.headers.set(name, value.into_bytes());
            }
        }
        resp
    }
}

/// The normalized GET target of a request (HEAD shares GET's object).
#[derive(Debug, Clone)]
struct Target {
    primary: NormalizedRequest,
}

impl Target {
    fn of(req: &Request) -> Result<Target, edgegen_shared::key::KeyError> {
        Target::at(&req.path, req.query.as_deref())
    }

    fn at(path: &str, query: Option<&str>) -> Result<Target, edgegen_shared::key::KeyError> {
        let primary = NormalizedRequest::new(&RequestParts { method: "GET", path, query, vary: &[] })?;
        Ok(Target { primary })
    }

    /// The key of the variant `headers` select among a URL's Vary `names`; `None` when a
    /// nominated field is not UTF-8 (read lossily, two different values would share a key).
    fn variant_key(&self, keys: &KeyDeriver, names: &[String], headers: &Headers) -> Option<CacheKey> {
        if names.iter().any(|n| headers.all(n).any(|v| std::str::from_utf8(v).is_err())) {
            return None;
        }
        if let [name] = names {
            // The usual `Vary: Accept-Encoding`: no list to build.
            return keys.derive_with_vary(&self.primary, &[(name.as_str(), normalized_vary_value(name, headers))]).ok();
        }
        let values: Vec<(&str, Option<String>)> =
            names.iter().map(|n| (n.as_str(), normalized_vary_value(n, headers))).collect();
        keys.derive_with_vary(&self.primary, &values).ok()
    }
}

/// The value a nominated request header selects a variant by (RFC 9111 §4.1 allows
/// normalizing): all lines combined, members trimmed; `Accept-Encoding` reduced to the set of
/// acceptable codings (plus a refused `identity` or `*`, which change what is acceptable),
/// sorted, so equivalent spellings share one variant; `Accept-Language`
/// lower-cased (its order is a preference and is kept).
pub fn normalized_vary_value(name: &str, headers: &Headers) -> Option<String> {
    let combined = headers.combined(name)?;
    if name.eq_ignore_ascii_case("accept-encoding") {
        // Codings are case-insensitive: lower-case the whole value once (rarely needed).
        let combined: std::borrow::Cow<'_, str> = if combined.bytes().any(|b| b.is_ascii_uppercase()) {
            combined.to_ascii_lowercase().into()
        } else {
            combined
        };
        let accepted = split_list(&combined).filter_map(|member| {
            let mut parts = member.split(';').map(str::trim);
            let coding = parts.next()?;
            let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            // A refused coding that is not listed is not acceptable anyway, except
            // `identity` (acceptable unless refused) and `*`: their refusal is kept.
            match (refused, coding) {
                (true, "identity") => Some("!identity"),
                (true, "*") => Some("!*"),
                (false, c) if !c.is_empty() => Some(c),
                _ => None,
            }
        });
        // The usual handful of codings is sorted on the stack; a longer list in a Vec.
        let mut few = [""; 8];
        let mut n = 0;
        let mut more = Vec::new();
        for coding in accepted {
            if n < few.len() {
                few[n] = coding;
                n += 1;
            } else {
                more.push(coding);
            }
        }
        let codings: &mut [&str] = if more.is_empty() {
            &mut few[..n]
        } else {
            more.extend_from_slice(&few);
            &mut more
        };
        codings.sort_unstable();
        let mut out = String::with_capacity(combined.len());
        let mut last = None;
        for &coding in codings.iter() {
            if last != Some(coding) {
                if last.is_some() {
                    out.push(',');
                }
                out.push_str(coding);
                last = Some(coding);
            }
        }
        return Some(out);
    }
    let joined = split_list(&combined).collect::<Vec<_>>().join(", ");
    // Language tags are case-insensitive (RFC 4647 §2.1).
    Some(if name.eq_ignore_ascii_case("accept-language") { joined.to_ascii_lowercase() } else { joined })
}

/// The result of the cache phase.
struct CacheAnswer<B> {
    response: Response<B>,
    outcome: Outcome,
    key: Option<CacheKey>,
    deferred: Vec<Deferred>,
}

/// A stored object found for a request, with where it lives.
struct Candidate<B> {
    key: CacheKey,
    head: StoredHead,
    body: B,
}

/// The cache phase of one cacheable request.
struct Cached<'a, P: Platform> {
    p: &'a mut P,
    env: &'a Env,
    scope: &'a KeyScope,
    tenant: &'a TenantId,
    authorized: bool,
    keys: KeyDeriver,
}

/// What the client's own cache directives ask for (when the tenant honours them).
#[derive(Debug, Default, Clone, Copy)]
struct ClientWants {
    no_cache: bool,
    no_store: bool,
    max_age: Option<u64>,
    min_fresh: Option<u64>,
    max_stale: Option<Option<u64>>,
    stale_if_error: Option<u64>,
    only_if_cached: bool,
}

impl ClientWants {
    fn of(headers: &Headers, honour: bool) -> ClientWants {
        let cc = Directives::of(headers, "cache-control");
        let only_if_cached = cc.as_ref().is_some_and(|d| d.only_if_cached);
        if !honour {
            return ClientWants { only_if_cached, ..ClientWants::default() };
        }
        let pragma_no_cache = cc.is_none() && headers.tokens("pragma").iter().any(|t| t == "no-cache");
        let d = cc.unwrap_or_default();
        ClientWants {
            no_cache: d.no_cache || pragma_no_cache,
            no_store: d.no_store,
            max_age: d.max_age.map(|m| m.unwrap_or(0)),
            min_fresh: d.min_fresh,
            max_stale: d.max_stale,
            stale_if_error: d.stale_if_error,
            only_if_cached,
        }
    }

    /// Whether a stored object with `timing` may be reused at `now` without validation.
    fn reusable(&self, t: &Timing, now: u64) -> bool {
        if self.no_cache || t.no_cache {
            return false;
        }
        let age = t.current_age(now);
        if self.max_age.is_some_and(|m| age > m) {
            return false;
        }
        let fresh_for = t.lifetime.saturating_sub(age);
        if t.is_fresh(now) {
            return self.min_fresh.is_none_or(|m| fresh_for >= m);
        }
        // Stale: only with the client's max-stale, never for must-revalidate objects.
        !t.must_revalidate && self.max_stale.is_some_and(|limit| limit.is_none_or(|l| t.staleness(now) <= l))
    }
}

impl<P: Platform> Cached<'_, P> {
    fn serve(&mut self, req: Request, target: &Target) -> CacheAnswer<P::Body> {
        let now = self.env.now_ms;
        let wants = ClientWants::of(&req.headers, self.env.settings.request_directives_honoured(self.tenant));
        let primary_key = self.keys.derive(&target.primary);
        let (candidate, index, rejected) = self.find(&req, target, primary_key);
        let mut outcome = if rejected { Outcome::StaleRejected } else { Outcome::Miss };

        if let Some(c) = candidate {
            if wants.reusable(&c.head.timing, now) {
                let key = c.key;
                return self.answer_stored(&req, c, Outcome::Hit, Some(key));
            }
            if wants.only_if_cached {
                return CacheAnswer {
                    response: gateway_timeout(),
                    outcome: Outcome::Miss,
                    key: Some(c.key),
                    deferred: vec![],
                };
            }
            if !wants.no_cache && c.head.timing.within_stale_while_revalidate(now) {
                let refresh = Refresh {
                    scope: self.scope.clone(),
                    target: target.clone(),
                    origin_req: origin_request(&req, target, self.tenant, self.scope),
                    head: c.head.clone(),
                    authorized: self.authorized,
                };
                let key = c.key;
                let mut answer = self.answer_stored(&req, c, Outcome::Stale, Some(key));
                answer.deferred.push(Deferred::Refresh(refresh));
                return answer;
            }
            return self.revalidate(req, target, c, index, wants);
        }
        if wants.only_if_cached {
            return CacheAnswer { response: gateway_timeout(), outcome, key: Some(primary_key), deferred: vec![] };
        }
        let origin_req = origin_request(&req, target, self.tenant, self.scope);
        let request_time = now;
        match self.p.origin(&origin_req) {
            Ok(fetched) => {
                let stored = self.store(&req, target, index, fetched, request_time, wants.no_store);
                if stored.mismatch {
                    outcome = Outcome::Mismatch;
                }
                let key = stored.key.or(Some(primary_key));
                let response = self.answer_fetched(&req, stored.status, stored.headers, stored.body);
                CacheAnswer { response, outcome, key, deferred: vec![] }
            }
            Err(e) => {
                self.p.log(&format!("origin request failed for tenant {}: {e}", self.tenant));
                CacheAnswer { response: bad_gateway(), outcome, key: Some(primary_key), deferred: vec![] }
            }
        }
    }

    /// Looks up the object for `req`: through the URL's Vary index when it has one. Returns
    /// the candidate, the index (names, variants) and whether an object of another scope was
    /// found and rejected.
    #[allow(clippy::type_complexity)]
    fn find(
        &mut self,
        req: &Request,
        target: &Target,
        primary_key: CacheKey,
    ) -> (Option<Candidate<P::Body>>, Option<(Vec<String>, Vec<[u8; 32]>)>, bool) {
        let found = match self.p.lookup(primary_key.as_bytes(), true) {
            Ok(found) => found,
            Err(e) => {
                self.p.log(&format!("cache lookup: {e}"));
                None
            }
        };
        let Some((meta, body)) = found else { return (None, None, false) };
        match decision::judge_found(&meta, self.scope) {
            Found::Serve(head) => (Some(Candidate { key: primary_key, head, body }), None, false),
            Found::Absent => (None, None, false),
            Found::Reject => {
                self.p.log(&format!(
                    "stale-rejected tenant={} generation={} key={primary_key}",
                    self.tenant, self.scope.generation
                ));
                (None, None, true)
            }
            Found::Variants { names, variants } => {
                let Some(key) = target.variant_key(&self.keys, &names, &req.headers) else {
                    return (None, Some((names, variants)), false);
                };
                let found = self.p.lookup(key.as_bytes(), true).ok().flatten();
                let index = Some((names, variants));
                match found.map(|(meta, body)| (decision::judge_found(&meta, self.scope), body)) {
                    Some((Found::Serve(head), body)) => (Some(Candidate { key, head, body }), index, false),
                    Some((Found::Reject, _)) => (None, index, true),
                    _ => (None, index, false),
                }
            }
        }
    }

    /// Answers from a stored object (HIT or stale), conditionally and by range as asked.
    fn answer_stored(
        &mut self,
        req: &Request,
        c: Candidate<P::Body>,
        outcome: Outcome,
        key: Option<CacheKey>,
    ) -> CacheAnswer<P::Body> {
        let age = c.head.timing.current_age(self.env.now_ms);
        let mut headers = c.head.headers;
        headers.set("age", decimal(age));
        let len = c.head.body_len;
        let response = self.answer(req, c.head.status, headers, Body::Stored(c.body), len);
        CacheAnswer { response, outcome, key, deferred: vec![] }
    }

    fn answer_fetched(&mut self, req: &Request, status: u16, headers: Headers, body: Vec<u8>) -> Response<P::Body> {
        let len = body.len() as u64;
        self.answer(req, status, headers, Body::Bytes(body), len)
    }

    /// The client's view of a complete response: 304 for a matching conditional, 206 for a
    /// single satisfiable range, no body for HEAD.
    fn answer(
        &mut self,
        req: &Request,
        status: u16,
        mut headers: Headers,
        body: Body<P::Body>,
        len: u64,
    ) -> Response<P::Body> {
        headers.set("content-length", decimal(len));
        let head_only = req.method == "HEAD";
        if (200..300).contains(&status) && not_modified(&req.headers, &headers) {
            headers.remove("content-length");
            return Response { status: 304, headers, body: Body::Bytes(Vec::new()) };
        }
        if status == 200
            && !head_only
            && let Some(range) = requested_range(&req.headers, &headers, len)
        {
            let bytes = match body {
                Body::Bytes(b) => b,
                Body::Stored(b) => match self.p.read_body(b) {
                    Ok(b) => b,
                    Err(e) => {
                        self.p.log(&format!("cache read: {e}"));
                        return bad_gateway();
                    }
                },
            };
            return match range {
                ByteRange::Satisfiable(first, last) => {
                    headers.set("content-range", format!("bytes {first}-{last}/{len}").into_bytes());
                    headers.set("content-length", (last - first + 1).to_string().into_bytes());
                    let slice = bytes.get(first as usize..=last as usize).unwrap_or_default().to_vec();
                    Response { status: 206, headers, body: Body::Bytes(slice) }
                }
                ByteRange::Unsatisfiable => {
                    let mut h = Headers::new();
                    h.append("content-range", format!("bytes */{len}").into_bytes());
                    h.append("content-length", b"0".to_vec());
                    Response { status: 416, headers: h, body: Body::Bytes(Vec::new()) }
                }
            };
        }
        let body = if head_only { Body::Bytes(Vec::new()) } else { body };
        Response { status, headers, body }
    }

    /// Revalidates a stale candidate with a conditional request; 304 refreshes it, an origin
    /// error within `stale-if-error` serves it, anything else replaces it.
    fn revalidate(
        &mut self,
        req: Request,
        target: &Target,
        c: Candidate<P::Body>,
        index: Option<(Vec<String>, Vec<[u8; 32]>)>,
        wants: ClientWants,
    ) -> CacheAnswer<P::Body> {
        let now = self.env.now_ms;
        let mut origin_req = origin_request(&req, target, self.tenant, self.scope);
        add_validators(&mut origin_req.headers, &c.head.headers);
        match self.p.origin(&origin_req) {
            Ok(fetched) if fetched.status == 304 && self.stamps_match(&fetched.headers) => {
                let key = c.key;
                match self.refresh_stored(c, &fetched.headers, now) {
                    Ok(c) => self.answer_stored(&req, c, Outcome::Revalidated, Some(key)),
                    Err(response) => {
                        CacheAnswer { response, outcome: Outcome::Revalidated, key: Some(key), deferred: vec![] }
                    }
                }
            }
            Ok(fetched) if fetched.status >= 500 && c.head.timing.within_stale_if_error(now, wants.stale_if_error) => {
                let key = c.key;
                self.answer_stored(&req, c, Outcome::Stale, Some(key))
            }
            Err(e) if c.head.timing.within_stale_if_error(now, wants.stale_if_error) => {
                self.p.log(&format!("origin request failed for tenant {}: {e}; serving stale-if-error", self.tenant));
                let key = c.key;
                self.answer_stored(&req, c, Outcome::Stale, Some(key))
            }
            Err(e) => {
                self.p.log(&format!("origin request failed for tenant {}: {e}", self.tenant));
                CacheAnswer { response: bad_gateway(), outcome: Outcome::Miss, key: Some(c.key), deferred: vec![] }
            }
            Ok(fetched) => {
                // Not a usable 304 (or stamps on the 304 do not match): fetch whole if needed.
                let fetched = if fetched.status == 304 {
                    match self.p.origin(&origin_request(&req, target, self.tenant, self.scope)) {
                        Ok(f) => f,
                        Err(_) => {
                            return CacheAnswer {
                                response: bad_gateway(),
                                outcome: Outcome::Miss,
                                key: Some(c.key),
                                deferred: vec![],
                            };
                        }
                    }
                } else {
                    fetched
                };
                let stored = self.store(&req, target, index, fetched, now, wants.no_store);
                let outcome = if stored.mismatch { Outcome::Mismatch } else { Outcome::Miss };
                let key = stored.key.or(Some(c.key));
                let response = self.answer_fetched(&req, stored.status, stored.headers, stored.body);
                CacheAnswer { response, outcome, key, deferred: vec![] }
            }
        }
    }

    fn stamps_match(&self, headers: &Headers) -> bool {
        let check = decision::check_origin_contract(
            self.scope,
            headers.get("edgegen-schema"),
            headers.get("edgegen-contract"),
            self.env.settings.unstamped(self.tenant),
        );
        check == ContractCheck::Match
    }

    /// §3.2/§4.3.4: a 304 updates the stored head (its fields replace the stored ones) and
    /// the timing; the body is kept. Returns the refreshed candidate, or the response to send
    /// when the updated head may no longer be stored.
    fn refresh_stored(
        &mut self,
        c: Candidate<P::Body>,
        not_modified: &Headers,
        now: u64,
    ) -> Result<Candidate<P::Body>, Response<P::Body>> {
        let mut update = not_modified.clone();
        strip_hop_by_hop(&mut update);
        // §3.2: every field of the 304 replaces the stored one, except Content-Length.
        update.retain(|n| is_stored_header(n) && n != "content-length");
        let mut headers = c.head.headers.clone();
        let names: Vec<String> = update.iter().map(|(n, _)| n.to_owned()).collect();
        for name in &names {
            headers.remove(name);
        }
        for (n, v) in update.iter() {
            headers.append(n, v.to_vec());
        }
        vary_on_cors_origin(&mut headers);
        let mut with_age = headers.clone();
        if let Some(age) = not_modified.get("age") {
            with_age.set("age", age.as_bytes().to_vec());
        }
        let ex = Exchange {
            request_time_ms: now,
            response_time_ms: now,
            authorized: self.authorized,
            heuristics: self.env.settings.heuristics(self.tenant),
        };
        let body = match self.p.read_body(c.body) {
            Ok(b) => b,
            Err(e) => {
                self.p.log(&format!("cache read: {e}"));
                return Err(bad_gateway());
            }
        };
        let timing = match freshness::storable(c.head.status, &with_age, &ex) {
            Ok(t) => t,
            Err(_) => {
                // No longer storable: serve the updated response once, drop the object.
                self.tombstone(&c.key);
                let len = body.len();
                headers.set("content-length", len.to_string().into_bytes());
                return Err(Response { status: c.head.status, headers, body: Body::Bytes(body) });
            }
        };
        let head = StoredHead { metadata: ObjectMetadata::new(self.scope, now), timing, headers, ..c.head };
        let keys = surrogate::object_keys(self.tenant, self.scope.generation, head.headers.get("surrogate-key"))
            .unwrap_or_default();
        self.write(&c.key, &Record::Object(head.clone()), &body, &keys);
        match self.p.lookup(c.key.as_bytes(), false) {
            Ok(Some((_, stored_body))) => Ok(Candidate { key: c.key, head, body: stored_body }),
            _ => Err(Response { status: head.status, headers: head.headers, body: Body::Bytes(body) }),
        }
    }

    fn tombstone(&mut self, key: &CacheKey) {
        if let Err(e) = self.p.insert(key.as_bytes(), &Record::Tombstone.encode(), &[], TOMBSTONE_SECS, &[]) {
            self.p.log(&format!("cache invalidate failed: {e}"));
        }
    }

    fn write(&mut self, key: &CacheKey, record: &Record, body: &[u8], keys: &[SurrogateKey]) {
        let keep = match record {
            Record::Object(head) => {
                let validators = head.headers.contains("etag") || head.headers.contains("last-modified");
                head.timing.keep_secs(self.env.now_ms, validators)
            }
            _ => freshness::REVALIDATION_KEEP_SECS,
        };
        let strs: Vec<&str> = keys.iter().map(SurrogateKey::as_str).collect();
        if let Err(e) = self.p.insert(key.as_bytes(), &record.encode(), body, keep, &strs) {
            self.p.log(&format!("cache insert failed: {e}"));
        }
    }

    /// Checks the origin's answer, stores it when allowed, and returns what to send on.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        req: &Request,
        target: &Target,
        index: Option<(Vec<String>, Vec<[u8; 32]>)>,
        mut fetched: Fetched,
        request_time: u64,
        client_no_store: bool,
    ) -> StoreResult {
        let now = self.p.now_ms().max(request_time);
        let check = decision::check_origin_contract(
            self.scope,
            fetched.headers.get("edgegen-schema"),
            fetched.headers.get("edgegen-contract"),
            self.env.settings.unstamped(self.tenant),
        );
        fetched.headers.retain(|n| !is_edgegen_header(n));
        strip_hop_by_hop(&mut fetched.headers);
        if !fetched.headers.contains("date") {
            fetched.headers.append("date", format_http_date(now / 1000).into_bytes());
        }
        let ex = Exchange {
            request_time_ms: request_time,
            response_time_ms: now,
            authorized: self.authorized,
            heuristics: self.env.settings.heuristics(self.tenant),
        };
        let timing = freshness::storable(fetched.status, &fetched.headers, &ex);
        let mut result = StoreResult {
            status: fetched.status,
            headers: Headers::new(),
            body: Vec::new(),
            key: None,
            mismatch: false,
        };
        let storable = timing.is_ok() && fetched.body.len() <= MAX_STORED_BODY && !client_no_store;
        if let ContractCheck::Mismatch { observed_schema, observed_contract } = check {
            result.mismatch = true;
            // Only a successful response the edge would otherwise store is evidence worth a
            // report: an anonymous client cannot make an error page, a redirect or a default
            // 404 of some layer in front of the application roll a release back.
            if storable && (200..300).contains(&fetched.status) {
                self.report(target, observed_schema, observed_contract);
            }
            result.headers = fetched.headers;
            result.body = fetched.body;
            return result;
        }
        let (Ok(timing), true) = (timing, storable) else {
            result.headers = fetched.headers;
            result.body = fetched.body;
            return result;
        };
        let keys =
            match surrogate::object_keys(self.tenant, self.scope.generation, fetched.headers.get("surrogate-key")) {
                Ok(keys) => keys,
                Err(e) => {
                    self.p.log(&format!("not storing (surrogate keys): {e}"));
                    result.headers = fetched.headers;
                    result.body = fetched.body;
                    return result;
                }
            };
        // A response that aged on its way (origin Age, or a slow origin) says so (§4.2.3).
        if timing.initial_age > 0 && !fetched.headers.contains("age") {
            fetched.headers.append("age", timing.initial_age.to_string().into_bytes());
        }
        vary_on_cors_origin(&mut fetched.headers);
        let mut stored_headers = fetched.headers.clone();
        let qualified = freshness::effective_directives(&fetched.headers).0.qualified_fields;
        stored_headers.retain(|n| is_stored_header(n) && !qualified.iter().any(|q| q == n));
        let head = StoredHead {
            metadata: ObjectMetadata::new(self.scope, now),
            status: fetched.status,
            body_len: fetched.body.len() as u64,
            timing,
            headers: stored_headers,
        };
        let primary_key = self.keys.derive(&target.primary);
        let names = vary_names(&fetched.headers);
        let key = if names.is_empty() {
            primary_key
        } else {
            let Some(key) = target.variant_key(&self.keys, &names, &req.headers) else {
                result.headers = fetched.headers;
                result.body = fetched.body;
                return result;
            };
            let mut variants = match index {
                Some((old_names, variants)) if old_names == names => variants,
                _ => Vec::new(),
            };
            if !variants.contains(key.as_bytes()) {
                // At the cap the oldest variant makes room (and is invalidated): a client
                // sending junk header values can churn the variants but never lock the
                // URL's real variants out of the cache.
                if variants.len() >= MAX_VARIANTS {
                    let evicted = variants.remove(0);
                    if let Err(e) = self.p.insert(&evicted, &Record::Tombstone.encode(), &[], TOMBSTONE_SECS, &[]) {
                        self.p.log(&format!("variant eviction: {e}"));
                    }
                }
                variants.push(*key.as_bytes());
            }
            let index = Record::VaryIndex { metadata: ObjectMetadata::new(self.scope, now), names, variants };
            self.write(&primary_key, &index, &[], &keys);
            key
        };
        self.write(&key, &Record::Object(head), &fetched.body, &keys);
        result.key = Some(key);
        result.headers = fetched.headers;
        result.body = fetched.body;
        result
    }

    /// Posts a contract-mismatch report unless this PoP already reported this (tenant,
    /// generation, kind) within the report window; the marker lives in the cache because a
    /// Compute instance keeps no memory between requests. Until the coordinator accepted the
    /// report the marker lasts only [`REPORT_RETRY_SECS`]: a report lost on its way is sent
    /// again by a later mismatch (the automatic rollback counts reports), while a burst of
    /// mismatching requests still sends one.
    fn report(&mut self, target: &Target, observed_schema: Option<String>, observed_contract: Option<String>) {
        let kind = ReportKind::ContractMismatch;
        let marker = report_marker(self.tenant, self.scope.generation.0, kind);
        if matches!(self.p.lookup(&marker, false), Ok(Some(_))) {
            return;
        }
        let window = self.env.settings.report_window_secs;
        if let Err(e) = self.p.insert(&marker, &[], &[], REPORT_RETRY_SECS.min(window), &[]) {
            self.p.log(&format!("report marker: {e}"));
        }
        let accepted = OnAccepted { key: marker, meta: Vec::new(), keep_secs: window };
        let report = Report {
            pop: PopId::new(&self.env.pop).unwrap_or_else(|_| PopId::new("invalid-pop").expect("valid")),
            tenant: self.tenant.clone(),
            kind,
            generation: self.scope.generation,
            expected_schema: self.scope.schema_version,
            expected_contract: self.scope.contract_hash,
            observed_schema,
            observed_contract,
            path: Some(target.primary.path().to_owned()),
            observed_at: self.env.now_ms,
        };
        if let Ok(json) = serde_json::to_string(&report) {
            self.p.coordinator_post("/v1/edge/reports", json, Some(accepted));
        }
    }
}

struct StoreResult {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
    key: Option<CacheKey>,
    mismatch: bool,
}

/// The cache key of the report-dedupe marker of (tenant, generation, kind) at this PoP.
pub fn report_marker(tenant: &TenantId, generation: u64, kind: ReportKind) -> Vec<u8> {
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    format!("edgegen/reported/{tenant}/{generation}/{}", kind.trim_matches('"')).into_bytes()
}

/// A CORS answer naming one origin depends on the request's `Origin`: it is keyed by it (and
/// says so) even when the origin forgot `Vary: Origin`, so one site's grant is never served
/// to another.
fn vary_on_cors_origin(headers: &mut Headers) {
    if headers.get("access-control-allow-origin").is_some_and(|o| o != "*")
        && !headers.tokens("vary").iter().any(|n| n == "origin")
    {
        headers.append("vary", b"Origin".to_vec());
    }
}

/// The request header names a response varies on, lower case, de-duplicated.
fn vary_names(headers: &Headers) -> Vec<String> {
    let mut names = headers.tokens("vary");
    let mut seen = Vec::new();
    names.retain(|n| {
        let new = !seen.contains(n);
        seen.push(n.clone());
        new
    });
    names
}

/// The request the edge sends the origin for a cacheable target: GET of the normalized
/// target, the client's headers minus its own conditionals and ranges (the edge answers
/// those from the full response), plus edgegen's expectations.
fn origin_request(req: &Request, target: &Target, tenant: &TenantId, scope: &KeyScope) -> Request {
    let mut headers = req.headers.clone();
    headers.retain(|n| {
        !matches!(n, "if-none-match" | "if-modified-since" | "if-match" | "if-unmodified-since" | "if-range" | "range")
    });
    set_expectations(&mut headers, tenant, Some(scope));
    let query = target.primary.query();
    Request {
        method: "GET".into(),
        path: target.primary.path().to_owned(),
        query: (!query.is_empty()).then(|| query.to_owned()),
        headers,
        body: Vec::new(),
    }
}

fn add_validators(origin: &mut Headers, stored: &Headers) {
    if let Some(etag) = stored.get("etag") {
        origin.set("if-none-match", etag.as_bytes().to_vec());
    }
    if let Some(lm) = stored.get("last-modified") {
        origin.set("if-modified-since", lm.as_bytes().to_vec());
    }
}

fn set_expectations(headers: &mut Headers, tenant: &TenantId, scope: Option<&KeyScope>) {
    headers.set("edgegen-tenant", tenant.as_str().as_bytes().to_vec());
    if let Some(scope) = scope {
        headers.set("edgegen-schema", scope.schema_version.to_string().into_bytes());
        headers.set("edgegen-contract", scope.contract_hash.to_string().into_bytes());
    }
}

/// Passes a request to the origin as it is (after hygiene); nothing is cached.
fn forward<P: Platform>(p: &mut P, mut req: Request, tenant: &TenantId, scope: Option<&KeyScope>) -> Response<P::Body> {
    set_expectations(&mut req.headers, tenant, scope);
    match p.origin(&req) {
        Ok(mut f) => {
            f.headers.retain(|n| !is_edgegen_header(n));
            strip_hop_by_hop(&mut f.headers);
            Response { status: f.status, headers: f.headers, body: Body::Bytes(f.body) }
        }
        Err(e) => {
            p.log(&format!("origin request failed for tenant {tenant}: {e}"));
            bad_gateway()
        }
    }
}

/// §4.4: a non-error answer to an unsafe method invalidates the stored object of the target
/// URI and of same-origin `Location` / `Content-Location`, for this tenant at this PoP.
fn invalidate_after_unsafe(
    p: &mut impl Platform,
    scope: &KeyScope,
    target: &(String, Option<String>),
    host: Option<&str>,
    headers: &Headers,
) {
    let mut targets = vec![target.clone()];
    for field in ["location", "content-location"] {
        if let Some(t) = headers.get(field).and_then(|v| same_origin_target(v, host)) {
            targets.push(t);
        }
    }
    for (path, query) in targets {
        if let Ok(t) = Target::at(&path, query.as_deref()) {
            let key = CacheKey::derive(scope, &t.primary);
            if let Err(e) = p.insert(key.as_bytes(), &Record::Tombstone.encode(), &[], TOMBSTONE_SECS, &[]) {
                p.log(&format!("invalidate: {e}"));
            }
        }
    }
}

/// The path and query of a `Location`-style reference if it points at this origin: a
/// path-absolute reference, or an absolute URI whose host is this request's host.
fn same_origin_target(value: &str, host: Option<&str>) -> Option<(String, Option<String>)> {
    let rest = if value.starts_with('/') && !value.starts_with("//") {
        value
    } else {
        let after_scheme = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"))?;
        let (authority, rest) = after_scheme.split_at(after_scheme.find('/').unwrap_or(after_scheme.len()));
        if host_key(authority)? != host.and_then(host_key)? {
            return None;
        }
        if rest.is_empty() { "/" } else { rest }
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    Some(match rest.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (rest.to_owned(), None),
    })
}

/// Whether a client's conditional matches the response (RFC 9110 §13.1.2 / §13.1.3):
/// `If-None-Match` by weak comparison (ignoring `If-Modified-Since`), else
/// `If-Modified-Since` against `Last-Modified`.
fn not_modified(request: &Headers, response: &Headers) -> bool {
    if let Some(inm) = request.combined("if-none-match") {
        let Some(etag) = response.get("etag") else { return false };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return split_list(&inm).any(|t| t == "*" || weak(t) == weak(etag));
    }
    if let Some(ims) = request.get("if-modified-since").and_then(parse_http_date) {
        let lm = response.get("last-modified").and_then(parse_http_date);
        return lm.is_some_and(|lm| lm <= ims);
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    Satisfiable(u64, u64),
    Unsatisfiable,
}

/// A single `bytes` range of a complete representation of `len` bytes (RFC 9110 §14).
/// Multiple ranges, other units, or a failing `If-Range` mean "serve it whole" (`None`).
fn requested_range(request: &Headers, response: &Headers, len: u64) -> Option<ByteRange> {
    let range = request.get("range")?;
    if let Some(if_range) = request.get("if-range") {
        let strong_etag = response.get("etag").filter(|e| !e.starts_with("W/"));
        let matches = if if_range.starts_with('"') {
            strong_etag == Some(if_range)
        } else {
            parse_http_date(if_range)
                .is_some_and(|d| response.get("last-modified").and_then(parse_http_date) == Some(d))
        };
        if !matches {
            return None;
        }
    }
    let spec = range.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    let (first, last) = match (first.is_empty(), last.is_empty()) {
        (true, false) => {
            let suffix = parse(last)?;
            if suffix == 0 || len == 0 {
                return Some(ByteRange::Unsatisfiable);
            }
            (len.saturating_sub(suffix), len - 1)
        }
        (false, _) => {
            let first = parse(first)?;
            let last = if last.is_empty() { u64::MAX } else { parse(last)? };
            if last < first {
                return None;
            }
            if first >= len {
                return Some(ByteRange::Unsatisfiable);
            }
            (first, last.min(len - 1))
        }
        (true, true) => return None,
    };
    Some(ByteRange::Satisfiable(first, last))
}

fn bad_gateway<B>() -> Response<B> {
    json_error(502, "origin_unreachable", "the origin could not be reached")
}

fn gateway_timeout<B>() -> Response<B> {
    json_error(504, "not_cached", "only-if-cached: no usable stored response")
}

/// Runs work deferred until after the response was sent: a `stale-while-revalidate`
/// refresh (conditional when the object has validators; a 304 refreshes the stored head).
pub fn run_deferred<P: Platform>(p: &mut P, env: &Env, work: Deferred) {
    let Deferred::Refresh(r) = work;
    let tenant = r.scope.tenant.clone();
    let mut cached =
        Cached { p, env, scope: &r.scope, tenant: &tenant, authorized: r.authorized, keys: KeyDeriver::new(&r.scope) };
    let mut origin_req = r.origin_req.clone();
    add_validators(&mut origin_req.headers, &r.head.headers);
    let now = env.now_ms;
    let Ok(fetched) = cached.p.origin(&origin_req) else { return };
    let primary_key = cached.keys.derive(&r.target.primary);
    let names = vary_names(&r.head.headers);
    let key = if names.is_empty() {
        primary_key
    } else {
        match r.target.variant_key(&cached.keys, &names, &r.origin_req.headers) {
            Some(key) => key,
            None => return,
        }
    };
    if fetched.status == 304 && cached.stamps_match(&fetched.headers) {
        if let Ok(Some((_, body))) = cached.p.lookup(key.as_bytes(), false) {
            let _ = cached.refresh_stored(Candidate { key, head: r.head, body }, &fetched.headers, now);
        }
        return;
    }
    if fetched.status >= 500 {
        return;
    }
    let index = if names.is_empty() {
        None
    } else {
        match cached
            .p
            .lookup(primary_key.as_bytes(), false)
            .ok()
            .flatten()
            .map(|(m, _)| decision::judge_found(&m, &r.scope))
        {
            Some(Found::Variants { names, variants }) => Some((names, variants)),
            _ => None,
        }
    };
    let fetched = if fetched.status == 304 {
        match cached.p.origin(&r.origin_req) {
            Ok(f) => f,
            Err(_) => return,
        }
    } else {
        fetched
    };
    let req = Request { method: "GET".into(), ..r.origin_req.clone() };
    let _ = cached.store(&req, &r.target, index, fetched, now, false);
}

/// The tenant's manifest and its [`Held`] record (when this PoP last confirmed it, until
/// when it is fresh and usable): from the cache while fresh;
/// past its max age, revalidated with `If-None-Match` (a 304 whose signed lease verifies
/// against the held manifest extends it; any other lease is refused and the manifest is
/// fetched in full); while the coordinator cannot be reached or fails (5xx), the last
/// verified manifest is kept until its signed stale bound ([`Held`]), and the coordinator is
/// not asked again for one max age after a failure ([`Held::after_failure`]). A newer generation than
/// the last acknowledged one is acknowledged once.
///
/// # Errors
/// Why no trustworthy manifest is available (the request is then bypassed, or answered 503).
pub fn load_manifest<P: Platform>(p: &mut P, env: &Env, tenant: &TenantId) -> Result<(Manifest, Held), String> {
    let now = env.now_ms;
    let cap = env.settings.manifest_max_age_cap_ms;
    let key = format!("edgegen/manifest/{tenant}").into_bytes();
    let held = match p.lookup(&key, true)? {
        Some((meta, body)) => {
            let body = p.read_body(body)?;
            manifest::verify(&body, &env.manifest_key, tenant)
                .ok()
                .and_then(|m| Held::decode(&meta, &m).map(|h| (m, h, body)))
        }
        None => None,
    };
    if let Some((m, h, _)) = &held
        && h.usable_without_asking(now)
    {
        return Ok((m.clone(), *h));
    }
    let etag = held.as_ref().map(|(m, _, _)| format!("\"{}\"", m.generation.0));
    let mut answer = ask_coordinator(p, env, tenant, etag.as_deref());
    let leased = match (&answer, &held) {
        (Ok(resp), Some((m, _, _))) if resp.status == 304 => Some(lease_of(resp, env, m)),
        _ => None,
    };
    match (leased, &held) {
        (Some(Ok(lease)), Some((m, h, body))) => {
            let extended = h.extended(&lease, now, cap);
            keep_manifest(p, &key, &extended, body, now, tenant);
            acknowledge(p, env, m);
            return Ok((m.clone(), extended));
        }
        (Some(Err(reason)), _) => {
            // Never trusted: a lease that does not vouch for exactly the held manifest, now.
            p.log(&format!("manifest lease for {tenant} refused ({reason}); fetching the manifest in full"));
            answer = ask_coordinator(p, env, tenant, None);
        }
        _ => {}
    }
    let reason = match answer {
        Ok(resp) if resp.status == 200 => {
            let m = manifest::verify(&resp.body, &env.manifest_key, tenant).map_err(|e| e.to_string())?;
            if !m.is_current(now, MANIFEST_SKEW_MS) {
                return Err(format!("manifest issued at {} is not current at {now}", m.issued_at));
            }
            let held = Held::fetched(&m, now, cap);
            keep_manifest(p, &key, &held, &resp.body, now, tenant);
            acknowledge(p, env, &m);
            return Ok((m, held));
        }
        Ok(resp) if resp.status < 500 => return Err(format!("coordinator answered {}", resp.status)),
        Ok(resp) => format!("coordinator answered {}", resp.status),
        Err(e) => format!("coordinator unreachable: {e}"),
    };
    // The coordinator cannot confirm anything: keep the last verified manifest while its
    // signed stale bound allows, never after, and remember the failure in its entry so the
    // PoP's next requests do not ask again for one max age.
    match held {
        Some((m, h, body)) if h.standing(now) == Standing::Stale => {
            // Written back over the entry: a purge that lands between this request's lookup
            // and this write is undone, but only until `quiet_until` (one max age), when the
            // PoP asks again; the stale bound is untouched.
            let quiet = h.after_failure(now);
            keep_manifest(p, &key, &quiet, &body, now, tenant);
            p.log(&format!(
                "{reason}; keeping generation {} of {tenant} until its stale bound {}, not asking again before {}",
                m.generation.0, h.stale_until, quiet.quiet_until
            ));
            Ok((m, quiet))
        }
        _ => Err(reason),
    }
}

/// `GET` of the tenant's manifest, conditional on `etag` if given. The PoP names itself: the
/// coordinator accepts its acknowledgement of a generation only because it served it.
fn ask_coordinator<P: Platform>(
    p: &mut P,
    env: &Env,
    tenant: &TenantId,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    let mut headers = vec![(edgegen_shared::wire::POP_HEADER, env.pop.as_str())];
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    p.coordinator_get(&format!("/v1/edge/manifests/{tenant}"), &headers)
}

/// The verified lease of a 304 answer for the held manifest `m`.
fn lease_of(resp: &Fetched, env: &Env, m: &Manifest) -> Result<Lease, String> {
    let header = resp.headers.get(LEASE_HEADER).ok_or_else(|| "304 without a lease".to_owned())?;
    lease::verify(header, &env.manifest_key, m, env.now_ms, MANIFEST_SKEW_MS).map_err(|e| e.to_string())
}

/// Stores the verified manifest `body` with its [`Held`] record, kept until its stale bound.
fn keep_manifest<P: Platform>(p: &mut P, key: &[u8], held: &Held, body: &[u8], now: u64, tenant: &TenantId) {
    let surrogate = [SurrogateKey::manifest(tenant)];
    let strs: Vec<&str> = surrogate.iter().map(SurrogateKey::as_str).collect();
    if let Err(e) = p.insert(key, &held.encode(), body, held.keep_secs(now), &strs) {
        p.log(&format!("manifest cache write failed: {e}"));
    }
}

/// Posts an ack if `m` is newer than the last generation the coordinator accepted an ack of
/// from this PoP for the tenant. The "acknowledged" record is written only once the
/// coordinator accepted the ack, so an ack lost on its way (a coordinator replica killed
/// mid-request, a load balancer that does not retry a POST) is sent again at the PoP's next
/// manifest refresh instead of leaving the release unconverged; repeats are idempotent.
fn acknowledge<P: Platform>(p: &mut P, env: &Env, m: &Manifest) {
    let key = format!("edgegen/acked/{}", m.tenant).into_bytes();
    let last = p
        .lookup(&key, false)
        .ok()
        .flatten()
        .and_then(|(meta, _)| meta.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))))
        .unwrap_or(0);
    if m.generation.0 <= last {
        return;
    }
    let Ok(pop) = PopId::new(&env.pop) else {
        p.log(&format!("PoP name {:?} is not a valid PoP id; not acknowledging", env.pop));
        return;
    };
    let ack = Ack { pop, tenant: m.tenant.clone(), generation: m.generation, observed_at: env.now_ms };
    if let Ok(json) = serde_json::to_string(&ack) {
        let record = OnAccepted { key, meta: m.generation.0.to_be_bytes().to_vec(), keep_secs: ACKED_RECORD_SECS };
        p.coordinator_post("/v1/edge/acks", json, Some(record));
    }
}

fn state_response<B>(tenant: &TenantId, env: &Env, loaded: &Result<(Manifest, Held), String>) -> Response<B> {
    let manifest = match loaded {
        Ok((m, held)) => serde_json::json!({
            "valid": true,
            "manifest": m,
            "fetched_at": held.confirmed_at,
            "age_ms": env.now_ms.saturating_sub(held.confirmed_at),
            "fresh_until": held.fresh_until,
            "stale_until": held.stale_until,
            "quiet_until": held.quiet_until,
            "standing": format!("{:?}", held.standing(env.now_ms)).to_lowercase(),
        }),
        Err(reason) => serde_json::json!({ "valid": false, "reason": reason }),
    };
    let body = serde_json::json!({
        "tenant": tenant,
        "pop": env.pop,
        "now": env.now_ms,
        "manifest": manifest,
        "manifest_max_age_cap_ms": env.settings.manifest_max_age_cap_ms,
        "no_manifest": format!("{:?}", env.settings.no_manifest).to_lowercase(),
    });
    let mut headers = Headers::new();
    headers.append("content-type", b"application/json".to_vec());
    headers.append("cache-control", b"no-store".to_vec());
    Response { status: 200, headers, body: Body::Bytes(body.to_string().into_bytes()) }
}

/// Test-only: plants an object under a request's key with another generation's metadata, so
/// tests can show it is never served by any path. Compiled only with `test-hooks`.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use edgegen_shared::Generation;

    use super::*;

    pub(super) fn plant<P: Platform>(
        p: &mut P,
        target: &Target,
        scope: &KeyScope,
        generation: u64,
        now: u64,
    ) -> Response<P::Body> {
        let other = KeyScope { generation: Generation(generation), ..scope.clone() };
        let mut headers = Headers::new();
        headers.append("content-type", b"application/json".to_vec());
        headers.append("cache-control", b"max-age=300, stale-while-revalidate=300, stale-if-error=300".to_vec());
        let body = br#"{"planted":true}"#;
        let timing = Timing {
            response_time_ms: now,
            initial_age: 0,
            lifetime: 300,
            stale_while_revalidate: 300,
            stale_if_error: 300,
            no_cache: false,
            must_revalidate: false,
        };
        let head = StoredHead {
            metadata: ObjectMetadata::new(&other, now),
            status: 200,
            body_len: body.len() as u64,
            timing,
            headers,
        };
        let key = CacheKey::derive(scope, &target.primary);
        match p.insert(key.as_bytes(), &Record::Object(head).encode(), body, 300, &[]) {
            Ok(()) => Response { status: 204, headers: Headers::new(), body: Body::Bytes(Vec::new()) },
            Err(e) => Response { status: 500, headers: Headers::new(), body: Body::Bytes(e.into_bytes()) },
        }
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

//! The HTTP service: [`app`] builds the router (so tests drive it without a socket) and
//! [`run`] serves it until a shutdown future resolves.
//!
//! Handlers parse, call [`crate::engine`] or the store, and answer; the release logic is
//! not here.
//!
//! Routes (the API table in ARCHITECTURE.md): the admin API behind `EDGEGEN_ADMIN_TOKEN`, the
//! edge API behind `EDGEGEN_EDGE_TOKEN`, `/healthz`, `/metrics`, `/openapi.json`
//! ([`crate::openapi`]) and the dashboard's static files at `/ui` ([`crate::ui`]) open. Every
//! error is the JSON error body;
//! the router has a request timeout and a body-size limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use edgegen_shared::api::{
    ErrorBody, NewTenant, PlanVerdict, Release, ReleasePlan, ReleaseRequest, Tenant, TenantHosts,
};
use edgegen_shared::lease::{LEASE_HEADER, Lease};
use edgegen_shared::manifest::{MANIFEST_FORMAT, Manifest};
use edgegen_shared::{Ack, PopId, ReleaseId, Report, SecretKey, TenantId};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Guard, require_token};
use crate::clock::now_ms;
use crate::domain::TenantState;
use crate::engine::Engine;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::{Removal, Store};

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What every handler can reach: one shared allocation, so the clone axum makes for each
/// request is one reference count (not one per field, nor a copy of the signing key), and
/// the release engine over it is built once. Its fields are [`AppParts`]'s (`Deref`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    parts: AppParts,
    engine: Engine,
}

/// What the coordinator's state is made of ([`AppState::new`]).
pub struct AppParts {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Manifest signing key.
    pub manifest_key: SecretKey,
    /// The ages of every tenant's manifests and leases.
    pub leases: Arc<crate::config::LeasePolicy>,
    /// Settings of release analysis (`[analysis]` of edgegen.toml).
    pub analysis: Arc<crate::analysis::AnalysisConfig>,
    /// The CDN the outbox purges through, if configured (the worker is started by the
    /// caller, [`crate::outbox::run_worker`]).
    pub cdn: Option<Arc<Cdn>>,
    /// Tenant database shards, verified before analysed releases commit.
    pub shards: Arc<crate::shards::ShardMap>,
    /// How tenants see shared PostgreSQL shards.
    pub shard_rls: Arc<crate::shards::SharedRls>,
    /// Which PoP was served which manifest generation (what vouches for an ack).
    pub fetches: Arc<crate::convergence::ManifestFetches>,
    /// The auto-rollback policy on edge reports (`None`: reports never roll back).
    pub auto_rollback: Option<crate::config::AutoRollback>,
}

impl AppState {
    /// The state of `parts`, with the release engine over them.
    pub fn new(parts: AppParts) -> Self {
        let engine = Engine {
            store: Arc::clone(&parts.store),
            analysis: Arc::clone(&parts.analysis),
            shards: Arc::clone(&parts.shards),
            shard_rls: Arc::clone(&parts.shard_rls),
            fetches: Arc::clone(&parts.fetches),
            metrics: Arc::clone(&parts.metrics),
            auto_rollback: parts.auto_rollback,
        };
        AppState(Arc::new(Shared { parts, engine }))
    }

    /// The release engine over this state (clone it to move it into a task).
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0.parts
    }
}

/// The CDN the outbox worker purges through.
pub use crate::outbox::Cdn;

/// Limits and tokens the router enforces.
#[derive(Clone)]
pub struct RouterSettings {
    /// Admin bearer token.
    pub admin_token: String,
    /// Edge bearer token.
    pub edge_token: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Largest request body.
    pub body_limit_bytes: usize,
}

/// The coordinator's router.
pub fn app(state: AppState, settings: &RouterSettings) -> Router {
    let admin_guard = Guard::new("admin", &settings.admin_token, &settings.edge_token);
    let edge_guard = Guard::new("edge", &settings.edge_token, &settings.admin_token);
    let admin = Router::new()
        .route("/v1/tenants", post(register_tenant).get(list_tenants))
        .route("/v1/tenants/{id}", get(show_tenant).delete(remove_tenant))
        .route("/v1/tenants/{id}/hosts", put(set_tenant_hosts))
        .route("/v1/releases/plan", post(plan_release))
        .route("/v1/releases", post(commit_release).get(crate::listing::list_releases))
        .route("/v1/releases/{id}", get(show_release))
        .route("/v1/releases/{id}/rollback", post(rollback_release))
        .route("/v1/releases/{id}/convergence", get(convergence))
        .route("/v1/reports", get(crate::listing::list_reports))
        .route_layer(middleware::from_fn_with_state(admin_guard, require_token));
    let edge = Router::new()
        .route("/v1/edge/manifests/{tenant}", get(manifest))
        .route("/v1/edge/acks", post(ack))
        .route("/v1/edge/reports", post(report))
        .route_layer(middleware::from_fn_with_state(edge_guard, require_token));
    let metrics = Arc::clone(&state.metrics);
    Router::new()
        .merge(admin)
        .merge(edge)
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/ui", get(crate::ui::page))
        .route("/ui/{asset}", get(crate::ui::file))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
        .layer(middleware::map_response(crate::rejection::json_errors))
        .layer(middleware::from_fn_with_state(metrics, count_status))
        .layer(TraceLayer::new_for_http())
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
///
/// # Errors
/// When the listener fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn count_status(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    metrics.http_status(response.status().as_u16());
    response
}

async fn no_route(method: Method, uri: Uri) -> AppError {
    AppError::not_found("no_route", format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves requests", body = edgegen_shared::api::Health)))]
async fn healthz() -> Json<edgegen_shared::api::Health> {
    Json(edgegen_shared::api::Health { status: "ok".into() })
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

fn tenant_id(raw: &str) -> Result<TenantId, AppError> {
    TenantId::new(raw).map_err(|e| AppError::bad_request("invalid_tenant", e.to_string()))
}

fn release_id(raw: &str) -> Result<ReleaseId, AppError> {
    ReleaseId::new(raw).map_err(|e| AppError::bad_request("invalid_release_id", e.to_string()))
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", security(("admin" = [])),
    request_body = NewTenant,
    responses((status = 201, description = "Registered at generation 1", body = Tenant),
        (status = 409, description = "The id or a host is taken", body = ErrorBody),
        (status = 422, description = "A field breaks a rule (named in the message)", body = ErrorBody)))]
async fn register_tenant(
    State(state): State<AppState>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Json(tenant) = body?;
    let created = state.store.register_tenant(tenant).await?;
    tracing::info!(tenant = %created.id, "tenant registered");
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", security(("admin" = [])),
    responses((status = 200, description = "Every tenant, sorted by id", body = Vec<Tenant>),
        (status = 500, description = "The store failed", body = ErrorBody)))]
async fn list_tenants(State(state): State<AppState>) -> Result<Json<Vec<Tenant>>, AppError> {
    Ok(Json(state.store.tenants().await?.into_iter().map(TenantState::view).collect()))
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", security(("admin" = [])),
    params(("id" = TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody)))]
async fn show_tenant(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Tenant>, AppError> {
    let id = tenant_id(&id)?;
    let tenant = state
        .store
        .tenant(id.clone())
        .await?
        .ok_or_else(|| AppError::not_found("unknown_tenant", format!("tenant {id} does not exist")))?;
    Ok(Json(tenant.view()))
}

#[utoipa::path(put, path = "/v1/tenants/{id}/hosts", tag = "tenants", security(("admin" = [])),
    params(("id" = TenantId, Path, description = "Tenant id")),
    request_body = TenantHosts,
    responses((status = 200, description = "The tenant with its new hosts (the same list again changes nothing); \
            when the coordinator owns the host map, the edgegen_hosts sync is queued", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "A host belongs to another tenant (named)", body = ErrorBody),
        (status = 422, description = "A host breaks a rule, or the Config Store limit (named in the message)", body = ErrorBody)))]
async fn set_tenant_hosts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<TenantHosts>, JsonRejection>,
) -> Result<Json<Tenant>, AppError> {
    let id = tenant_id(&id)?;
    let Json(TenantHosts { hosts }) = body?;
    let tenant = state.store.set_tenant_hosts(id, hosts).await?;
    tracing::info!(tenant = %tenant.id, hosts = ?tenant.hosts, "tenant hosts set");
    Ok(Json(tenant))
}

#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", security(("admin" = [])),
    params(("id" = TenantId, Path, description = "Tenant id")),
    responses((status = 204, description = "Removed (or removed before): its hosts no longer route, its manifest \
            answers 404; its releases and generations stay as history and its id is not reused"),
        (status = 404, description = "No tenant ever had this id", body = ErrorBody),
        (status = 409, description = "The release that set its current generation is still converging (named)", body = ErrorBody)))]
async fn remove_tenant(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    let id = tenant_id(&id)?;
    if state.store.remove_tenant(id.clone()).await? == Removal::Removed {
        tracing::info!(tenant = %id, "tenant removed");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/releases/plan", tag = "releases", security(("admin" = [])),
    request_body = ReleaseRequest,
    responses((status = 200, description = "What the release would do; nothing changed", body = edgegen_shared::api::ReleasePlan),
        (status = 404, description = "A listed tenant does not exist", body = ErrorBody),
        (status = 409, description = "Conflicts with the current state", body = ErrorBody),
        (status = 422, description = "The release is impossible (named in the message)", body = ErrorBody)))]
async fn plan_release(
    State(state): State<AppState>,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<Json<ReleasePlan>, AppError> {
    let Json(request) = body?;
    let planned = state.engine().plan(&request).await?;
    let report = planned.analysis.as_ref().map(|a| &a.report);
    Ok(Json(ReleasePlan {
        dry_run: true,
        plan_hash: planned.plan_hash,
        verdict: report.map_or(PlanVerdict::NotAnalysed, |r| crate::analysis::plan_verdict(r.verdict)),
        tenants: planned.tenants,
        contract_verification: planned.contract.unwrap_or_else(|| "no contract_schema given".into()),
        analysis: report.map(crate::analysis::wire_report),
        steps: planned.analysis.map(|a| a.steps),
    }))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().ok().filter(|k| {
        !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| (0x21..=0x7E).contains(&b))
    });
    let key = key.ok_or_else(|| {
        AppError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key: must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    })?;
    Ok(Some(key.to_owned()))
}

#[utoipa::path(post, path = "/v1/releases", tag = "releases", security(("admin" = [])),
    request_body = ReleaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "1-255 visible ASCII characters; a retry with the same key returns the original release and moves nothing")),
    responses((status = 201, description = "Committed: every listed tenant moved to its next generation", body = Release,
            headers(("location" = String, description = "The release's URL"))),
        (status = 200, description = "Idempotent replay of an earlier commit", body = Release,
            headers(("idempotent-replayed" = String, description = "`true`"))),
        (status = 404, description = "A listed tenant does not exist", body = ErrorBody),
        (status = 409, description = "Conflicts with the current state", body = ErrorBody),
        (status = 422, description = "Refused by validation, analysis or shard verification; nothing moved", body = ErrorBody)))]
async fn commit_release(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    let key = idempotency_key(&headers)?;
    let Json(request) = body?;
    let committed = state.engine().commit(request, key).await?;
    let release = committed.release;
    if committed.replayed {
        let mut response = (StatusCode::OK, Json(release)).into_response();
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }
    tracing::info!(release = %release.id, tenants = release.tenants.len(), "release committed");
    let location = format!("/v1/releases/{}", release.id);
    let mut response = (StatusCode::CREATED, Json(release)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/releases/{id}", tag = "releases", security(("admin" = [])),
    params(("id" = ReleaseId, Path, description = "Release id")),
    responses((status = 200, description = "Status, per-tenant changes and execution log", body = Release),
        (status = 404, description = "No such release", body = ErrorBody)))]
async fn show_release(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = release_id(&id)?;
    match state.store.release(id.clone()).await? {
        Some(release) => Ok(Json(release).into_response()),
        None => Err(AppError::not_found("unknown_release", format!("release {id} does not exist"))),
    }
}

#[utoipa::path(post, path = "/v1/releases/{id}/rollback", tag = "releases", security(("admin" = [])),
    params(("id" = ReleaseId, Path, description = "Release id")),
    responses((status = 201, description = "The rollback: new generations carrying the previous state", body = Release),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Already rolled back, or a tenant moved on since", body = ErrorBody),
        (status = 422, description = "A tenant is at the last generation", body = ErrorBody)))]
async fn rollback_release(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = release_id(&id)?;
    let rollback = state.store.rollback(id, "requested through the admin API".into(), None).await?;
    Ok((StatusCode::CREATED, Json(rollback)).into_response())
}

#[utoipa::path(get, path = "/v1/releases/{id}/convergence", tag = "releases", security(("admin" = [])),
    params(("id" = ReleaseId, Path, description = "Release id")),
    responses((status = 200, description = "Acknowledgements per live PoP, and every PoP by lease: confirmed, provably expired, unconfirmed (with until when it may serve the old generation)", body = edgegen_shared::api::Convergence),
        (status = 404, description = "No such release", body = ErrorBody)))]
async fn convergence(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = release_id(&id)?;
    match state.store.convergence(id.clone()).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(AppError::not_found("unknown_release", format!("release {id} does not exist"))),
    }
}

#[utoipa::path(get, path = "/v1/edge/manifests/{tenant}", tag = "edge", security(("edge" = [])),
    params(("tenant" = TenantId, Path, description = "Tenant id"),
        ("If-None-Match" = Option<String>, Header, description = "ETags held (the quoted generation)")),
    responses((status = 200, description = "The signed manifest", body = crate::openapi::SignedManifest,
            headers(("etag" = String, description = "The quoted generation"))),
        (status = 304, description = "The held generation is current: a fresh signed lease extends it",
            headers(("etag" = String), ("edgegen-lease" = String, description = "The signed lease (shared::lease)"))),
        (status = 404, description = "No such tenant", body = ErrorBody)))]
async fn manifest(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let tenant = tenant_id(&tenant)?;
    let current = state
        .store
        .tenant(tenant.clone())
        .await?
        .ok_or_else(|| AppError::not_found("unknown_tenant", format!("tenant {tenant} does not exist")))?;
    let etag = format!("\"{}\"", current.generation);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    state.metrics.manifest(not_modified);
    let ages = state.leases.ages(&current.id);
    let issued_at = now_ms();
    // The PoP that asked (if it named itself) is served this generation until issued_at +
    // max stale: recorded before the answer goes out, it vouches for the PoP's
    // acknowledgement and bounds the convergence report's lease groups.
    if let Some(pop) = headers.get(crate::engine::POP_HEADER).and_then(|v| v.to_str().ok()) {
        let pop = PopId::new(pop)
            .map_err(|e| AppError::bad_request("invalid_pop", format!("{} header: {e}", crate::engine::POP_HEADER)))?;
        let expires_at = issued_at.saturating_add(ages.max_stale_ms);
        let slack = crate::convergence::record_slack_ms(ages.max_stale_ms);
        state.engine().manifest_served(pop, current.id.clone(), current.generation, expires_at, slack).await?;
    }
    let etag_value = HeaderValue::from_str(&etag).map_err(AppError::internal)?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        tenant: current.id,
        generation: current.generation,
        schema_version: current.schema_version,
        contract_hash: current.contract_hash,
        release_id: current.release_id,
        issued_at,
        max_age_ms: ages.max_age_ms,
        max_stale_ms: Some(ages.max_stale_ms),
    };
    if not_modified {
        // The lease vouches for exactly this manifest's state (tenant, generation, schema,
        // contract, release), so it extends only a PoP that holds this very manifest.
        let lease = Lease::new(&manifest, manifest.issued_at, ages.max_age_ms, ages.max_stale_ms);
        let lease_value = HeaderValue::from_str(&lease.sign(&state.manifest_key)).map_err(AppError::internal)?;
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (header::HeaderName::from_static(LEASE_HEADER), lease_value),
            ],
        )
            .into_response());
    }
    let body = manifest.sign(&state.manifest_key);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/edge/acks", tag = "edge", security(("edge" = [])),
    request_body = Ack,
    responses((status = 204, description = "Recorded"),
        (status = 403, description = "`ack_refused`: no replica served this PoP the tenant's manifest at this generation (or later); counted in `edgegen_acks_refused_total`", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A field breaks a rule", body = ErrorBody)))]
async fn ack(State(state): State<AppState>, body: Result<Json<Ack>, JsonRejection>) -> Result<StatusCode, AppError> {
    let Json(ack) = body?;
    state.engine().ack(ack).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/edge/reports", tag = "edge", security(("edge" = [])),
    request_body = Report,
    responses((status = 202, description = "Recorded; may have triggered an automatic rollback", body = edgegen_shared::api::ReportReceipt),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A field breaks a rule", body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    body: Result<Json<Report>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Json(report) = body?;
    tracing::warn!(tenant = %report.tenant, pop = %report.pop, kind = ?report.kind, "edge report");
    let outcome = state.engine().report(report).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": outcome.id, "auto_rollback": outcome.auto_rollback }))))
}

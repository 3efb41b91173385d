//! The HTTP service: [`app`] builds the router (so tests drive it without a socket) and
//! [`run`] serves it until a shutdown future resolves.
//!
//! Routes (DESIGN.md): the admin API behind `EDGEGEN_ADMIN_TOKEN`, the edge API behind
//! `EDGEGEN_EDGE_TOKEN`, `/healthz`, `/metrics`, `/openapi.json` ([`crate::openapi`]) and the
//! dashboard's static files at `/ui` ([`crate::ui`]) open. Every error is the JSON error body;
//! the router has a request timeout and a body-size limit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgegen_shared::api::{ErrorBody, NewTenant, Release, ReleaseRequest, Tenant};
use edgegen_shared::manifest::{MANIFEST_FORMAT, Manifest};
use edgegen_shared::{Ack, ReleaseId, Report, SecretKey, TenantId};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Guard, require_token};
use crate::clock::now_ms;
use crate::domain::{self, TenantState};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::Store;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What every handler can reach: cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Manifest signing key.
    pub manifest_key: SecretKey,
    /// `max_age_ms` of every manifest.
    pub manifest_max_age_ms: u64,
    /// Settings of release analysis (`[analysis]` of edgegen.toml).
    pub analysis: Arc<crate::analysis::AnalysisConfig>,
    /// The CDN to purge after each commit, if configured.
    pub cdn: Option<Arc<Cdn>>,
    /// Tenant database shards, verified before analysed releases commit.
    pub shards: Arc<crate::shards::ShardMap>,
    /// How tenants see shared PostgreSQL shards.
    pub shard_rls: Arc<crate::shards::SharedRls>,
}

/// A Fastly service the coordinator purges after each release.
pub struct Cdn {
    /// The API client.
    pub client: crate::fastly::FastlyClient,
    /// The service id.
    pub service: String,
    /// Soft purges (mark stale) instead of hard ones.
    pub soft: bool,
}

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
        .route("/v1/tenants/{id}", get(show_tenant))
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

fn tenant_view(s: TenantState) -> Tenant {
    Tenant {
        id: s.id,
        hosts: s.hosts,
        generation: s.generation,
        schema_version: s.schema_version,
        contract_hash: s.contract_hash,
    }
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
    responses((status = 200, description = "Every tenant, sorted by id", body = Vec<Tenant>)))]
async fn list_tenants(State(state): State<AppState>) -> Json<Vec<Tenant>> {
    Json(state.store.tenant_states().into_iter().map(tenant_view).collect())
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", security(("admin" = [])),
    params(("id" = TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody)))]
async fn show_tenant(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Tenant>, AppError> {
    let id = tenant_id(&id)?;
    let tenant = state
        .store
        .tenant_state(&id)
        .ok_or_else(|| AppError::not_found("unknown_tenant", format!("tenant {id} does not exist")))?;
    Ok(Json(tenant_view(tenant)))
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
) -> Result<Json<serde_json::Value>, AppError> {
    let Json(request) = body?;
    let contract = domain::check_contract(&request.contract_hash, request.contract_schema.as_ref())
        .map_err(crate::store::StoreError::from)?;
    let changes =
        domain::plan_release(&request, |id| state.store.tenant_state(id)).map_err(crate::store::StoreError::from)?;
    let analysis = run_analysis(&state, &request).await?;
    let report = analysis.as_ref().map(|a| &a.report);
    let (tenants, plan_hash) = crate::analysis::tenant_plans(&changes, report, &state.analysis);
    Ok(Json(serde_json::json!({
        "dry_run": true,
        "plan_hash": plan_hash,
        "verdict": report.map_or("not_analysed", |r| r.verdict),
        "tenants": tenants,
        "contract_verification": contract.unwrap_or_else(|| "no contract_schema given".into()),
        "analysis": report,
        "steps": analysis.as_ref().map(|a| &a.steps),
    })))
}

/// Checks the release's tenants' shards against the schema it expects; drift or leakage
/// refuses the release (nothing moves). `None` when there is nothing to check.
async fn verify_shards(
    state: &AppState,
    request: &ReleaseRequest,
) -> Result<Option<edgegen_shared::api::Step>, AppError> {
    let Some(input) = &request.analysis else { return Ok(None) };
    if !request.tenants.iter().any(|t| state.shards.contains_key(t)) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let dialect: edgegen_analysis::Dialect =
        input.dialect.as_deref().unwrap_or("postgres").parse().unwrap_or(edgegen_analysis::Dialect::Postgres);
    let expected = edgegen_analysis::plan::schema_from(&[("schema_to".into(), input.schema_to.clone())], dialect)
        .map_err(|e| {
            AppError::unprocessable("analysis_blocked", format!("release blocked by analysis, nothing moved: {e}"))
        })?;
    let settings = Arc::new(state.analysis.settings(dialect));
    let reports = crate::shards::verify(
        &state.shards,
        &request.tenants,
        Arc::new(expected),
        settings,
        Arc::clone(&state.shard_rls),
    )
    .await;
    let problems: Vec<String> = reports
        .iter()
        .filter(|r| !r.clean())
        .map(|r| {
            let mut items: Vec<String> = r.drift.clone();
            items.extend(r.leakage.iter().map(|l| format!("leak: {l}")));
            items.extend(r.error.clone());
            format!("{}: {}", r.tenant, items.join("; "))
        })
        .collect();
    if !problems.is_empty() {
        return Err(AppError::unprocessable(
            "shard_verification_failed",
            format!("release blocked by shard verification, nothing moved: {}", problems.join(" | ")),
        ));
    }
    Ok(Some(edgegen_shared::api::Step {
        step: "verify tenant shards".into(),
        phase: "tenant_isolation_check".into(),
        status: "ok".into(),
        detail: format!(
            "{} shard(s) ({}) match the release's schema and hold no row of another tenant",
            reports.len(),
            reports.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>().join(", ")
        ),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

/// Purges `keys` through the CDN and describes the outcome as an execution-log step.
async fn purge_step(cdn: &Cdn, keys: &[String]) -> edgegen_shared::api::Step {
    let started = std::time::Instant::now();
    let report = cdn.client.purge(&cdn.service, keys, cdn.soft).await;
    let failed: Vec<String> =
        report.failed().map(|r| format!("{} ({})", r.key, r.error.as_deref().unwrap_or("?"))).collect();
    let mode = if cdn.soft { "soft" } else { "hard" };
    let detail = if failed.is_empty() {
        format!(
            "{} surrogate key(s) purged ({mode}) from service {} in {} API call(s)",
            keys.len(),
            cdn.service,
            report.calls
        )
    } else {
        tracing::error!(failed = failed.len(), "CDN purge incomplete");
        format!(
            "{} of {} surrogate key(s) not purged ({mode}, {} API call(s)); the generation bump still invalidates them: {}",
            failed.len(),
            keys.len(),
            report.calls,
            failed.join("; ")
        )
    };
    edgegen_shared::api::Step {
        step: crate::store::sqlite::PURGE_STEP.into(),
        phase: "edge_node_invalidation".into(),
        status: if failed.is_empty() { "ok" } else { "failed" }.into(),
        detail,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs the request's analysis off the async threads (a large schema takes CPU time).
async fn run_analysis(
    state: &AppState,
    request: &ReleaseRequest,
) -> Result<Option<crate::analysis::Analysis>, AppError> {
    let Some(input) = request.analysis.clone() else { return Ok(None) };
    let (contract_to, config) = (request.contract_schema.clone(), Arc::clone(&state.analysis));
    let analysis = tokio::task::spawn_blocking(move || crate::analysis::analyse(&input, contract_to.as_ref(), &config))
        .await
        .map_err(AppError::internal)?;
    Ok(Some(analysis))
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
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().ok().filter(|k| {
                !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| (0x21..=0x7E).contains(&b))
            });
            Some(
                key.ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_idempotency_key",
                        format!("Idempotency-Key: must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
                    )
                })?
                .to_owned(),
            )
        }
    };
    let Json(request) = body?;
    let analysis = run_analysis(&state, &request).await?;
    if let Some(a) = &analysis
        && a.report.exit_code == edgegen_analysis::plan::EXIT_BLOCKED
    {
        let why = a.report.blocked.clone().unwrap_or_else(|| {
            let codes: Vec<String> = a
                .report
                .findings
                .iter()
                .filter(|f| f.severity == edgegen_analysis::Severity::Blocking)
                .map(|f| format!("{} ({})", f.code, f.table.as_deref().or(f.column.as_deref()).unwrap_or("-")))
                .collect();
            codes.join(", ")
        });
        return Err(AppError::unprocessable(
            "analysis_blocked",
            format!("release blocked by analysis, nothing moved: {why}"),
        ));
    }
    let report = analysis.as_ref().map(|a| a.report.clone());
    let mut steps = analysis.map(|a| a.steps).unwrap_or_default();
    if let Some(step) = verify_shards(&state, &request).await? {
        steps.push(step);
    }
    // BEGIN live-data contract check (crate::live_check; issue 13)
    let hosts: Vec<(String, Vec<String>)> = (request.tenants.iter())
        .filter_map(|t| state.store.tenant_state(t).map(|s| (t.as_str().to_owned(), s.hosts)))
        .collect();
    let analysed_contract = request.analysis.as_ref().and(request.contract_schema.as_ref());
    match crate::live_check::before_commit(&state.analysis, &hosts, analysed_contract).await {
        Ok(step) => steps.extend(step),
        Err(why) => return Err(AppError::unprocessable("contract_verification_failed", why)),
    }
    // END live-data contract check
    let committed = state.store.commit_release(request, key, steps).await?;
    let mut release = committed.release;
    if let (Some(cdn), false) = (&state.cdn, committed.replayed) {
        let (plans, _) = crate::analysis::tenant_plans(&release.tenants, report.as_ref(), &state.analysis);
        let keys: Vec<String> = plans.into_iter().flat_map(|p| p.purge_surrogate_keys).collect();
        let step = purge_step(cdn, &keys).await;
        state.store.replace_step(release.id.clone(), step).await?;
        release = state.store.release(release.id.clone()).await?.unwrap_or(release);
    }
    let location = format!("/v1/releases/{}", release.id);
    if committed.replayed {
        let mut response = (StatusCode::OK, Json(release)).into_response();
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }
    tracing::info!(release = %release.id, tenants = release.tenants.len(), "release committed");
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
    let rollback = state.store.rollback(id, "requested through the admin API".into()).await?;
    Ok((StatusCode::CREATED, Json(rollback)).into_response())
}

#[utoipa::path(get, path = "/v1/releases/{id}/convergence", tag = "releases", security(("admin" = [])),
    params(("id" = ReleaseId, Path, description = "Release id")),
    responses((status = 200, description = "Acknowledgements per live PoP", body = edgegen_shared::api::Convergence),
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
        (status = 304, description = "The held generation is current", headers(("etag" = String))),
        (status = 404, description = "No such tenant", body = ErrorBody)))]
async fn manifest(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let tenant = tenant_id(&tenant)?;
    let current = state
        .store
        .tenant_state(&tenant)
        .ok_or_else(|| AppError::not_found("unknown_tenant", format!("tenant {tenant} does not exist")))?;
    let etag = format!("\"{}\"", current.generation);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    state.metrics.manifest(not_modified);
    let etag_value = HeaderValue::from_str(&etag).map_err(AppError::internal)?;
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        tenant: current.id,
        generation: current.generation,
        schema_version: current.schema_version,
        contract_hash: current.contract_hash,
        release_id: current.release_id,
        issued_at: now_ms(),
        max_age_ms: state.manifest_max_age_ms,
        max_stale_ms: None,
    };
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
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A field breaks a rule", body = ErrorBody)))]
async fn ack(State(state): State<AppState>, body: Result<Json<Ack>, JsonRejection>) -> Result<StatusCode, AppError> {
    let Json(ack) = body?;
    state.store.record_ack(ack).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/edge/reports", tag = "edge", security(("edge" = [])),
    request_body = Report,
    responses((status = 202, description = "Recorded; may have triggered an automatic rollback", body = edgegen_shared::api::ReportReceipt),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The automatic rollback conflicted with the current state", body = ErrorBody),
        (status = 422, description = "A field breaks a rule", body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    body: Result<Json<Report>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Json(report) = body?;
    tracing::warn!(tenant = %report.tenant, pop = %report.pop, kind = ?report.kind, "edge report");
    let outcome = state.store.record_report(report).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": outcome.id, "auto_rollback": outcome.auto_rollback }))))
}

//! The OpenAPI 3.1 document of the coordinator's HTTP API, served at `GET /openapi.json`
//! without auth.
//!
//! Nothing here is written by hand that the code already says: operations come from the
//! `#[utoipa::path]` attributes on the handlers in [`crate::server`], bodies from the wire
//! types in `edgegen_shared::api` (their `openapi` feature). This module only adds what is
//! common to every operation — the two bearer security schemes, the error answers that the
//! router's layers produce before a handler runs (401/403 from the guards, 400/413/415 from
//! the extractors, 408 from the timeout) — and the links between operations (a created
//! tenant → its manifest and its page; a committed release → its status, convergence and
//! rollback) that stateful clients and fuzzers follow.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use edgegen_shared::Manifest;
use edgegen_shared::api::ErrorBody;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::server;

/// Body of `GET /v1/edge/manifests/{tenant}`. The coordinator writes it as signed bytes
/// (`Manifest::sign`), so this type exists only to describe them.
#[derive(ToSchema)]
#[allow(dead_code)] // described, never built: the body is produced by `Manifest::sign`
pub struct SignedManifest {
    /// The manifest; its exact bytes in the body are what the signature covers.
    manifest: Manifest,
    /// HMAC-SHA256 under `EDGEGEN_MANIFEST_KEY`, 64 lower-case hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    signature: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgegen coordinator",
        description = "Generation authority for deterministic edge-cache invalidation: the admin API \
            (tenants, releases, convergence, rollback), the edge API (signed manifests, acknowledgements, \
            reports) and operations endpoints. Every error is `{\"error\":{\"code\":\"...\",\"message\":\"...\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        server::register_tenant,
        server::list_tenants,
        server::show_tenant,
        server::set_tenant_hosts,
        server::remove_tenant,
        server::plan_release,
        server::commit_release,
        crate::listing::list_releases,
        crate::listing::list_reports,
        server::show_release,
        server::rollback_release,
        server::convergence,
        server::manifest,
        server::ack,
        server::report,
        server::healthz,
        server::render_metrics,
        openapi_json,
        crate::ui::page,
        crate::ui::file,
    ),
    components(schemas(ErrorBody, crate::ui::Asset)),
    modifiers(&Common),
    tags(
        (name = "tenants", description = "Admin API: tenants and their current generation"),
        (name = "releases", description = "Admin API: atomic releases across tenants, convergence, rollback"),
        (name = "edge", description = "Edge API: what PoPs fetch and post"),
        (name = "operations", description = "Liveness, metrics, this document, the dashboard"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_pretty_json().expect("the OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}

/// Adds the security schemes, the common error answers and the links.
struct Common;

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .into()
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, role) in [("admin", "EDGEGEN_ADMIN_TOKEN"), ("edge", "EDGEGEN_EDGE_TOKEN")] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(format!("`Authorization: Bearer <{role}>`"));
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
        for (path, item) in &mut doc.paths.paths {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                add_common_errors(path, op);
            }
        }
        link(
            doc,
            "/v1/tenants",
            "post",
            "201",
            "tenant",
            &["show_tenant", "manifest", "set_tenant_hosts", "remove_tenant"],
            "id",
        );
        link(doc, "/v1/releases", "post", "201", "release", &["show_release", "convergence", "rollback_release"], "id");
        release_link(doc, "/v1/tenants", "post", "201");
        release_link(doc, "/v1/tenants/{id}", "get", "200");
        edge_links(doc);
    }
}

fn add_common_errors(path: &str, op: &mut Operation) {
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_owned()).or_insert_with(|| error(description));
    };
    if op.security.is_some() {
        add("401", "Missing or invalid bearer token");
        add("403", "The other role's token (admin on the edge API or the reverse)");
    }
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || path.contains('{');
    if op.request_body.is_some() {
        add("400", "Malformed request: the message names the field");
        add("413", "Request body over the size limit");
        add("415", "Request body is not JSON (Content-Type: application/json)");
    } else if has_params {
        add("400", "A path or header parameter breaks its rule: the message names it");
    }
    if path.starts_with("/v1/") {
        add("408", "The request took longer than the request timeout");
    }
}

/// Links `path`'s `status` answer to `targets` (operation ids), passing the answer's
/// `field` as each target's one path parameter.
fn link(
    doc: &mut utoipa::openapi::OpenApi,
    path: &str,
    method: &str,
    status: &str,
    what: &str,
    targets: &[&str],
    field: &str,
) {
    let Some(item) = doc.paths.paths.get_mut(path) else { return };
    let op = match method {
        "post" => item.post.as_mut(),
        _ => item.get.as_mut(),
    };
    let Some(RefOr::T(response)) = op.and_then(|op| op.responses.responses.get_mut(status)) else { return };
    for target in targets {
        let param = if *target == "manifest" { "tenant" } else { "id" };
        let link = LinkBuilder::new()
            .operation_id(*target)
            .parameter(param, format!("$response.body#/{field}"))
            .description(format!("The created {what}"))
            .build();
        response.links.insert((*target).to_owned(), RefOr::T(link));
    }
}

/// Links a tenant answer to `commit_release` of that tenant (at its own schema version and
/// contract hash), so stateful clients go from tenants to releases.
fn release_link(doc: &mut utoipa::openapi::OpenApi, path: &str, method: &str, status: &str) {
    let Some(item) = doc.paths.paths.get_mut(path) else { return };
    let op = match method {
        "post" => item.post.as_mut(),
        _ => item.get.as_mut(),
    };
    let Some(RefOr::T(response)) = op.and_then(|op| op.responses.responses.get_mut(status)) else { return };
    let body = serde_json::json!({
        "tenants": ["$response.body#/id"],
        "schema_version": "$response.body#/schema_version",
        "contract_hash": "$response.body#/contract_hash",
    });
    let link = LinkBuilder::new()
        .operation_id("commit_release")
        .request_body(Some(body))
        .description("Release this tenant (a new generation at its current schema and contract)")
        .build();
    response.links.insert("commit_release".to_owned(), RefOr::T(link));
}

/// Links a registered tenant to what a PoP posts about it: an acknowledgement of its
/// generation and a contract-mismatch report, so stateful clients reach the edge API with
/// tenants that exist.
fn edge_links(doc: &mut utoipa::openapi::OpenApi) {
    let Some(RefOr::T(response)) = doc
        .paths
        .paths
        .get_mut("/v1/tenants")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.responses.responses.get_mut("201"))
    else {
        return;
    };
    let ack = serde_json::json!({
        "pop": "LCY",
        "tenant": "$response.body#/id",
        "generation": "$response.body#/generation",
        "observed_at": 1_700_000_000_000_u64,
    });
    let report = serde_json::json!({
        "pop": "LCY",
        "tenant": "$response.body#/id",
        "kind": "contract_mismatch",
        "generation": "$response.body#/generation",
        "expected_schema": "$response.body#/schema_version",
        "expected_contract": "$response.body#/contract_hash",
        "observed_at": 1_700_000_000_000_u64,
    });
    for (op, body, what) in [
        ("ack", ack, "A PoP acknowledges the tenant's generation"),
        ("report", report, "A PoP reports a contract mismatch"),
    ] {
        let link = LinkBuilder::new().operation_id(op).request_body(Some(body)).description(what).build();
        response.links.insert(op.to_owned(), RefOr::T(link));
    }
}

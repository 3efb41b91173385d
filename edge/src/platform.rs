//! The thin shell between Fastly Compute and the pure logic in the library: reads stores,
//! sends to backends, builds responses. Expected failures (unknown host, misconfiguration,
//! origin unreachable) become explicit JSON responses; nothing here panics on input.

use edgegen_edge::{HOSTS_STORE, ORIGIN_BACKEND, TenantResolution, error_body, is_edgegen_header, resolve_tenant};
use fastly::http::StatusCode;
use fastly::{ConfigStore, Request, Response};

/// Handles one request: resolve the tenant, pass the request to the origin with edgegen's
/// expectations attached, strip edgegen's headers from the answer.
pub fn handle(mut req: Request) -> Response {
    let hosts = match ConfigStore::try_open(HOSTS_STORE) {
        Ok(store) => store,
        Err(_) => return misconfigured(&format!("config store {HOSTS_STORE} is missing")),
    };
    let host = req.get_header_str("host").map(str::to_owned);
    let tenant = match resolve_tenant(host.as_deref(), |key| hosts.try_get(key).ok().flatten()) {
        TenantResolution::Tenant(tenant) => tenant,
        TenantResolution::BadHost => {
            return json_error(StatusCode::BAD_REQUEST, "bad_host", "the request has no valid Host header");
        }
        TenantResolution::UnknownHost(host) => {
            return json_error(
                StatusCode::NOT_FOUND,
                "unknown_host",
                &format!("no tenant is configured for host {host:?}"),
            );
        }
        TenantResolution::Misconfigured { host, value } => {
            return misconfigured(&format!("host {host:?} maps to {value:?}, which is not a tenant id"));
        }
    };

    // A client never speaks for edgegen: drop its edgegen-* headers before the origin sees them.
    let client_edgegen: Vec<_> = req.get_header_names().filter(|n| is_edgegen_header(n.as_str())).cloned().collect();
    for name in client_edgegen {
        req.remove_header(&name);
    }
    for name in edgegen_edge::PATH_OVERRIDE_HEADERS {
        req.remove_header(name);
    }
    // The origin sees the canonical host (no port, lower case), never the client's spelling.
    if let Some(canonical) = host.as_deref().and_then(edgegen_edge::host_key) {
        req.set_header("host", canonical);
    }
    req.set_header("edgegen-tenant", tenant.as_str());

    let mut resp = match req.send(ORIGIN_BACKEND) {
        Ok(resp) => resp,
        Err(err) => {
            eprintln!("edgegen-edge: origin request failed for tenant {tenant}: {err}");
            return json_error(StatusCode::BAD_GATEWAY, "origin_unreachable", "the origin could not be reached");
        }
    };
    let origin_edgegen: Vec<_> = resp.get_header_names().filter(|n| is_edgegen_header(n.as_str())).cloned().collect();
    for name in origin_edgegen {
        resp.remove_header(&name);
    }
    resp
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

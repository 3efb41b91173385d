//! `edgegen-edge`'s platform-free logic: everything the Fastly shell (`platform.rs`)
//! decides, written as functions of values so native unit tests cover it without Fastly or
//! Viceroy.
//!
//! - this module: tenant resolution from `Host`, the `edgegen-*` namespace and the request
//!   headers that never reach the origin, JSON error bodies;
//! - [`settings`]: the edge's Config Store settings;
//! - [`policy`]: which requests and responses may be cached, and for how long;
//! - [`decision`]: serve or reject a found object, the origin contract check, outcomes and
//!   the probe's debug headers;
//! - [`stored`]: the response head stored next to each cached body.

pub mod decision;
pub mod policy;
pub mod settings;
pub mod stored;

use edgegen_shared::TenantId;

/// Config Store mapping host names (lower case, no port) to tenant ids.
pub const HOSTS_STORE: &str = "edgegen_hosts";
/// Config Store with this edge's own settings (see [`settings`]).
pub const CONFIG_STORE: &str = "edgegen_config";
/// Secret Store with `manifest_key`, `probe_key` and `edge_token`.
pub const SECRET_STORE: &str = "edgegen_secrets";
/// Backend name of the coordinator (manifests, acks, reports).
pub const COORDINATOR_BACKEND: &str = "coordinator";
/// The probe-only path that returns the edge's view of a tenant without calling the origin.
pub const STATE_PATH: &str = "/.edgegen/state";
/// Backend name of the tenants' origin.
pub const ORIGIN_BACKEND: &str = "origin";
/// Prefix of every header edgegen reads or writes.
pub const HEADER_PREFIX: &str = "edgegen-";

/// The Config Store key for a `Host` header value: lower-cased, without port or trailing dot.
/// `None` for an empty or malformed host (the request then has no tenant).
pub fn host_key(host: &str) -> Option<String> {
    let host = host.trim();
    let without_port = match host.rsplit_once(':') {
        // IPv6 literals ("[::1]:80") keep their brackets; a port is digits only.
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'));
    valid.then_some(name)
}

/// Why a request has no tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantResolution {
    /// The host maps to this tenant.
    Tenant(TenantId),
    /// No `Host` header, or one that is not a host name.
    BadHost,
    /// A well-formed host with no tenant configured.
    UnknownHost(String),
    /// The store maps the host to something that is not a tenant id (a deployment error).
    Misconfigured {
        /// The host.
        host: String,
        /// The invalid value found.
        value: String,
    },
}

/// Resolves the tenant of a request from its `Host` header, using `lookup` (the hosts
/// Config Store). Never consults any other header: a client cannot choose its tenant.
pub fn resolve_tenant(host: Option<&str>, lookup: impl FnOnce(&str) -> Option<String>) -> TenantResolution {
    let Some(key) = host.and_then(host_key) else {
        return TenantResolution::BadHost;
    };
    match lookup(&key) {
        None => TenantResolution::UnknownHost(key),
        Some(value) => match TenantId::new(value.trim()) {
            Ok(tenant) => TenantResolution::Tenant(tenant),
            Err(_) => TenantResolution::Misconfigured { host: key, value },
        },
    }
}

/// Whether a header belongs to edgegen's namespace (case-insensitive, and with `_` for `-`:
/// CGI-style servers map both `edgegen-tenant` and `edgegen_tenant` to `HTTP_EDGEGEN_TENANT`).
/// Such headers from a client are dropped before the origin sees them, and such headers
/// from the origin never reach a client unless a valid probe asked for them.
pub fn is_edgegen_header(name: &str) -> bool {
    name.as_bytes().get(..HEADER_PREFIX.len()).is_some_and(|head| {
        head.iter().zip(HEADER_PREFIX.as_bytes()).all(|(h, p)| h.eq_ignore_ascii_case(p) || (*p == b'-' && *h == b'_'))
    })
}

/// Client headers that change what an origin produces without being part of the key (host,
/// scheme, path and method overrides, forwarding claims): dropped before the origin sees
/// the request, so it serves exactly the request the edge keyed.
pub const UNKEYED_REQUEST_HEADERS: [&str; 16] = [
    "x-forwarded-host",
    "x-host",
    "x-forwarded-server",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-scheme",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-scheme",
    "forwarded",
];

/// Whether a client request header must be dropped before the origin sees it.
pub fn is_unkeyed_request_header(name: &str) -> bool {
    is_edgegen_header(name) || UNKEYED_REQUEST_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The JSON error body (ARCHITECTURE.md, "Coordinator HTTP API"): `{"error":{"code":..,"message":..}}`.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        let cases = [
            ("acme.example.com", Some("acme.example.com")),
            ("ACME.Example.COM", Some("acme.example.com")),
            ("acme.example.com:8443", Some("acme.example.com")),
            ("acme.example.com.", Some("acme.example.com")),
            ("127.0.0.1:7676", Some("127.0.0.1")),
            ("[::1]:80", Some("[::1]")),
            ("", None),
            ("acme example", None),
            ("acme/evil", None),
        ];
        for (host, expected) in cases {
            assert_eq!(host_key(host).as_deref(), expected, "{host:?}");
        }
    }

    #[test]
    fn tenant_comes_only_from_the_host_map() {
        let map = |h: &str| match h {
            "a.test" => Some("acme".to_owned()),
            "bad.test" => Some("Not A Tenant".to_owned()),
            _ => None,
        };
        assert_eq!(resolve_tenant(Some("A.test:443"), map), TenantResolution::Tenant(TenantId::new("acme").unwrap()));
        assert_eq!(resolve_tenant(Some("b.test"), map), TenantResolution::UnknownHost("b.test".into()));
        assert_eq!(resolve_tenant(None, map), TenantResolution::BadHost);
        assert!(matches!(resolve_tenant(Some("bad.test"), map), TenantResolution::Misconfigured { .. }));
    }

    #[test]
    fn edgegen_header_namespace() {
        assert!(is_edgegen_header("edgegen-tenant"));
        assert!(is_edgegen_header("EdgeGen-Probe"));
        assert!(!is_edgegen_header("edgegen"));
        assert!(!is_edgegen_header("x-edgegen-tenant"));
        assert!(is_edgegen_header("edgegen_tenant"), "CGI maps '_' and '-' alike");
        assert!(is_edgegen_header("EDGEGEN_PROBE"));
        assert!(!is_edgegen_header("edgegen\u{e9}x"), "no panic on a non-ASCII boundary");
    }

    #[test]
    fn error_bodies_escape_their_input() {
        let body = error_body("unknown_host", "no tenant for \"x\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["message"], "no tenant for \"x\"");
    }
}

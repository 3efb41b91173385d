//! `edgegen-edge`'s platform-free logic: everything the Fastly shell (`platform.rs`)
//! decides, written as functions of values so native unit tests cover it without Fastly or
//! Viceroy.
//!
//! - this module: tenant resolution from `Host`, the `edgegen-*` namespace and the request
//!   headers that never reach the origin, JSON error bodies;
//! - [`pipeline`]: the whole request pipeline against a small `Platform` trait (the Fastly
//!   shell implements it; tests implement it in memory);
//! - [`memory`]: the in-memory `Platform` (native tests, benchmark);
//! - [`fields`]: header lists read whole, cache directives, dates, hop-by-hop hygiene;
//! - [`freshness`]: what may be stored, lifetime precedence, §4.2.3 age, stale windows;
//! - [`settings`]: the edge's Config Store settings;
//! - [`decision`]: serve or reject a found entry, the origin contract check, outcomes and
//!   the probe's debug headers;
//! - [`purge`]: the local stack's authenticated purge endpoint (compiled into the Fastly
//!   shell only with the `local-purge` feature);
//! - [`stored`]: the records stored next to each cached body (object head, Vary index,
//!   tombstone).

pub mod decision;
pub mod fields;
pub mod freshness;
pub mod held;
pub mod memory;
pub mod pipeline;
// Only in local-stack builds (and native unit tests): the release wasm has no purge endpoint.
#[cfg(test)]
mod properties;
#[cfg(any(test, feature = "local-purge"))]
pub mod purge;
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
/// [`SECRET_STORE`] entry: the key that verifies manifest signatures.
pub const MANIFEST_KEY_SECRET: &str = "manifest_key";
/// [`SECRET_STORE`] entry: the key that verifies probe tokens.
pub const PROBE_KEY_SECRET: &str = "probe_key";
/// [`SECRET_STORE`] entry: the edge's bearer token for the coordinator's edge API.
pub const EDGE_TOKEN_SECRET: &str = "edge_token";

/// Every backend the edge sends requests to.
pub const BACKENDS: [&str; 2] = [ORIGIN_BACKEND, COORDINATOR_BACKEND];
/// Every Config Store the edge opens (the keys of [`CONFIG_STORE`] are [`settings::KEYS`]).
pub const CONFIG_STORES: [&str; 2] = [HOSTS_STORE, CONFIG_STORE];
/// Every entry of [`SECRET_STORE`] the edge reads.
pub const SECRET_KEYS: [&str; 3] = [MANIFEST_KEY_SECRET, PROBE_KEY_SECRET, EDGE_TOKEN_SECRET];

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
/// scheme, port, path and method overrides, forwarding claims, framework TLS hints): dropped
/// before the origin sees the request, so it serves exactly the request the edge keyed.
pub const UNKEYED_REQUEST_HEADERS: [&str; 52] = [
    "x-forwarded-host",
    "x-host",
    "x-forwarded-server",
    "x-original-host",
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-originating-url",
    "x-override-url",
    "x-proxy-url",
    "x-forwarded-url",
    "x-forwarded-request-uri",
    "x-http-host-override",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-scheme",
    "x-forwarded-proto",
    "x-forwarded-protocol",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-uri",
    "x-forwarded-ssl",
    "x-forwarded-for-original",
    "x-url-scheme",
    "x-scheme",
    "x-real-ip",
    "front-end-https",
    "x-forwarded-for",
    "x-client-ip",
    "true-client-ip",
    "forwarded",
    "x-forwarded",
    "forwarded-for",
    "x-forwarded-hostname",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "cf-connecting-ip",
    "fastly-client-ip",
    "fastly-ssl",
    "x-arr-ssl",
    "x-http-destinationurl",
    // Framework-internal routing headers (Next.js) a client must never set: route/cache
    // selection and middleware bypass.
    "x-middleware-prefetch",
    "x-middleware-subrequest",
    "x-now-route-matches",
    "x-invoke-path",
    "x-invoke-query",
    "x-invoke-output",
];

/// Whether a client request header must be dropped before the origin sees it: edgegen's
/// namespace and [`UNKEYED_REQUEST_HEADERS`], case-insensitively and with `_` matching `-`
/// (CGI-style servers map `X_Forwarded_Host` and `X-Forwarded-Host` to the same variable).
pub fn is_unkeyed_request_header(name: &str) -> bool {
    let same = |listed: &str| {
        listed.len() == name.len()
            && listed.bytes().zip(name.bytes()).all(|(l, n)| l.eq_ignore_ascii_case(&n) || (l == b'-' && n == b'_'))
    };
    is_edgegen_header(name) || UNKEYED_REQUEST_HEADERS.iter().any(|h| same(h))
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
    fn unkeyed_headers_in_every_spelling() {
        for name in [
            "X-Forwarded-Host",
            "X_Forwarded_Host",
            "x_http_method_override",
            "X_Original_URL",
            "X-Forwarded-Ssl",
            "Front-End-Https",
            "front_end_https",
            "X-Forwarded-Uri",
            "X-Forwarded-Path",
            "X-Forwarded-Prefix",
            "X-Forwarded-Port",
            "edgegen_tenant",
            "X-Middleware-Subrequest",
            "x_middleware_prefetch",
            "X-Now-Route-Matches",
            "X-Invoke-Path",
            "Fastly-Client-IP",
            "CF-Connecting-IP",
            "X-Cluster-Client-IP",
            "X-Forwarded",
        ] {
            assert!(is_unkeyed_request_header(name), "{name}");
        }
        for name in ["accept", "accept-encoding", "x-forwarded-hostx", "x-forwardedx", "user-agent"] {
            assert!(!is_unkeyed_request_header(name), "{name}");
        }
    }

    #[test]
    fn error_bodies_escape_their_input() {
        let body = error_body("unknown_host", "no tenant for \"x\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["message"], "no tenant for \"x\"");
    }
}

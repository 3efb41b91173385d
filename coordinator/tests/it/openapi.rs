//! The OpenAPI document against the router it describes: every route the router registers is
//! documented with its methods, every documented operation is routed, both security schemes
//! are declared and used, and answers no handler writes (path rejections) are JSON errors.

use axum::http::StatusCode;
use edgegen_shared::api::{ErrorBody, ReleasePlan};
use serde_json::{Value, json};

use crate::support::{ADMIN, add_tenant, contract, send, test_app};

/// The `.route("PATH", get(..).post(..))` registrations of the router, read from its source:
/// the router does not list its routes, and this keeps the check independent of the document.
fn registered_routes() -> Vec<(String, Vec<String>)> {
    let source = include_str!("../../src/server.rs");
    let mut routes = Vec::new();
    for chunk in source.split(".route(\"").skip(1) {
        let Some((path, rest)) = chunk.split_once('"') else { continue };
        let call = rest.split("))").next().unwrap_or_default();
        let methods: Vec<String> = ["get", "post", "put", "patch", "delete"]
            .into_iter()
            .filter(|m| call.contains(&format!("{m}(")))
            .map(str::to_owned)
            .collect();
        assert!(!methods.is_empty(), "route {path}: no method found in {call:?}");
        routes.push((path.to_owned(), methods));
    }
    assert!(routes.len() >= 15, "found only {} routes in server.rs: {routes:?}", routes.len());
    routes
}

async fn document() -> Value {
    let app = test_app();
    let a = send(&app.router, "GET", "/openapi.json", None, None).await;
    assert_eq!(a.status, StatusCode::OK, "served without auth: {}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    a.body
}

#[tokio::test]
async fn document_is_openapi_3_1_with_both_security_schemes() {
    let doc = document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    for scheme in ["admin", "edge"] {
        let s = &doc["components"]["securitySchemes"][scheme];
        assert_eq!((s["type"].as_str(), s["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}: {s}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            let expected: &[&str] = if path.starts_with("/v1/edge/") {
                &["edge"]
            } else if path.starts_with("/v1/") {
                &["admin"]
            } else {
                &[]
            };
            assert_eq!(security, expected, "{method} {path}");
            if !expected.is_empty() {
                for status in ["401", "403"] {
                    let schema = &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
                }
            }
        }
    }
}

#[tokio::test]
async fn every_registered_route_is_documented_with_its_methods() {
    let doc = document().await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in registered_routes() {
        let item = paths.get(&path).unwrap_or_else(|| panic!("route {path} is not in /openapi.json"));
        let documented: Vec<&String> = item.as_object().unwrap().keys().collect();
        for method in &methods {
            assert!(documented.contains(&method), "{method} {path} is not documented (has {documented:?})");
        }
        assert_eq!(documented.len(), methods.len(), "{path}: documented {documented:?}, routed {methods:?}");
    }
    assert_eq!(paths.len(), registered_routes().len(), "documented paths that are not routed");
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let doc = document().await;
    let app = test_app();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "x").replace("{tenant}", "x").replace("{asset}", "app.js");
        for method in item.as_object().unwrap().keys() {
            let a = send(&app.router, &method.to_uppercase(), &concrete, None, None).await;
            let code = a.body["error"]["code"].as_str().unwrap_or_default();
            assert!(
                !matches!(code, "no_route" | "method_not_allowed"),
                "{method} {path} is documented but not routed: {} {}",
                a.status,
                a.text
            );
        }
    }
}

#[tokio::test]
async fn tenant_and_release_answers_link_to_the_next_operations() {
    let doc = document().await;
    let links = &doc["paths"]["/v1/tenants"]["post"]["responses"]["201"]["links"];
    for op in ["show_tenant", "set_tenant_hosts", "remove_tenant"] {
        assert_eq!(links[op]["parameters"]["id"], "$response.body#/id", "{op}");
    }
    assert_eq!(links["commit_release"]["requestBody"]["tenants"][0], "$response.body#/id");
    let links = &doc["paths"]["/v1/releases"]["post"]["responses"]["201"]["links"];
    for op in ["show_release", "convergence", "rollback_release"] {
        assert_eq!(links[op]["operationId"], op);
        assert_eq!(links[op]["parameters"]["id"], "$response.body#/id");
    }
}

/// Rejections that axum writes before a handler runs are JSON errors too.
#[tokio::test]
async fn path_rejections_answer_with_the_json_error_body() {
    let app = test_app();
    for path in ["/v1/tenants/%FF", "/v1/releases/%C3%28", "/v1/releases/%FF/convergence"] {
        let a = send(&app.router, "GET", path, Some(ADMIN), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.text);
        assert_eq!(a.headers["content-type"], "application/json", "{path}");
        let body: ErrorBody =
            serde_json::from_value(a.body.clone()).unwrap_or_else(|e| panic!("{path}: {e}: {}", a.text));
        assert_eq!(body.error.code, "invalid_request", "{path}");
        assert!(body.error.message.contains("UTF-8") || body.error.message.contains("utf-8"), "{path}: {}", a.text);
    }
}

/// The dry run's answer is the typed `ReleasePlan` (the CLI and pipelines read it as one).
#[tokio::test]
async fn plan_answer_is_the_typed_release_plan() {
    let app = test_app();
    add_tenant(&app.router, "a").await;
    let body = json!({
        "tenants": ["a"], "schema_version": "1.8.3", "contract_hash": contract(2),
        "analysis": {"schema_from": "CREATE TABLE t (id INT, tenant_id INT);", "schema_to": "CREATE TABLE t (tenant_id INT);"},
    });
    let a = send(&app.router, "POST", "/v1/releases/plan", Some(ADMIN), Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let plan: ReleasePlan = serde_json::from_value(a.body.clone()).unwrap_or_else(|e| panic!("{e}: {}", a.text));
    assert_eq!(plan.verdict, edgegen_shared::api::PlanVerdict::Blocked, "{}", a.text);
    assert_eq!(plan.verdict.exit_code(), 2);
    assert_eq!(plan.tenants.len(), 1);
    assert_eq!(plan.analysis.expect("analysed").verdict, plan.verdict);
}

/// `GET /v1/releases` pages newest first and names a bad parameter in a JSON error.
#[tokio::test]
async fn releases_are_listed_newest_first_in_pages() {
    let app = test_app();
    for t in ["a", "b", "c"] {
        add_tenant(&app.router, t).await;
        crate::support::release(&app.router, &[t]).await;
    }
    let a = send(&app.router, "GET", "/v1/releases?limit=2", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let page: edgegen_shared::api::ReleasePage = serde_json::from_value(a.body).unwrap();
    assert_eq!((page.total, page.offset, page.limit), (3, 0, 2));
    let tenants: Vec<&str> = page.releases.iter().map(|r| r.tenants[0].tenant.as_str()).collect();
    assert_eq!(tenants, ["c", "b"], "newest first");
    let a = send(&app.router, "GET", "/v1/releases?offset=2&limit=2", Some(ADMIN), None).await;
    assert_eq!(a.body["releases"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("offset=-1", "offset"),
        ("limit=x", "limit"),
        ("page=2", "page"),
    ] {
        let a = send(&app.router, "GET", &format!("/v1/releases?{query}"), Some(ADMIN), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.text);
        assert_eq!(a.body["error"]["code"], "invalid_query", "{query}");
        assert!(a.body["error"]["message"].as_str().unwrap().contains(field), "{query}: {}", a.text);
    }
    assert_eq!(send(&app.router, "GET", "/v1/releases", None, None).await.status, StatusCode::UNAUTHORIZED);
}

/// Every `$ref` in the document resolves (Schemathesis refused a path parameter whose schema
/// was referenced but never registered among the components).
#[tokio::test]
async fn every_reference_resolves() {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let doc = document().await;
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(refs.len() > 20, "{} references", refs.len());
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

/// The document's id patterns (and length bounds) accept exactly what the parsers accept, so
/// a client that follows the document is never refused for an id and a fuzzer that breaks
/// one always is. (Schemathesis found `schema_version` parts above `u32::MAX` that the
/// document allowed and the parser refused.)
mod id_rules {
    use std::sync::OnceLock;

    use edgegen_shared::{ContractHash, PopId, ReleaseId, SchemaVersion, TenantId};
    use proptest::prelude::*;
    use regex::Regex;
    use serde_json::Value;

    fn doc() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| serde_json::to_value(edgegen_coordinator::openapi::document()).unwrap())
    }

    /// Whether `value` satisfies the document's schema `name` (pattern and length bounds).
    fn allowed(name: &str, value: &str) -> bool {
        let schema = &doc()["components"]["schemas"][name];
        let pattern = Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        let len = value.chars().count() as u64;
        pattern.is_match(value)
            && schema["minLength"].as_u64().is_none_or(|min| len >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| len <= max)
    }

    #[track_caller]
    fn check(name: &str, value: &str, parsed: bool) {
        assert_eq!(allowed(name, value), parsed, "{name} {value:?}: document and parser disagree");
    }

    #[test]
    fn boundaries() {
        for v in ["0.0.0", "4294967295.4294967295.4294967295", "4294967296.0.0", "1.02.3", "9087229984.0.0", "1.2"] {
            check("SchemaVersion", v, SchemaVersion::new(v).is_ok());
        }
        for v in ["a", "-a", "a-", &"a".repeat(63), &"a".repeat(64), "A"] {
            check("TenantId", v, TenantId::new(v).is_ok());
        }
    }

    proptest! {
        #[test]
        fn schema_version(a in 0u64..=5_000_000_000, b in 0u64..=5_000_000_000, c in 0u64..=20, raw in "[0-9.]{0,14}") {
            let v = format!("{a}.{b}.{c}");
            check("SchemaVersion", &v, SchemaVersion::new(&v).is_ok());
            check("SchemaVersion", &raw, SchemaVersion::new(&raw).is_ok());
        }

        #[test]
        fn tenant_release_and_pop_ids(v in "[a-zA-Z0-9_.-]{0,70}") {
            check("TenantId", &v, TenantId::new(v.as_str()).is_ok());
            check("ReleaseId", &v, ReleaseId::new(v.as_str()).is_ok());
            check("PopId", &v, PopId::new(v.as_str()).is_ok());
        }

        #[test]
        fn contract_hash(v in "(sha256:)?[0-9a-fA-F]{62,66}") {
            check("ContractHash", &v, ContractHash::new(&v).is_ok());
        }
    }
}

/// `GET /v1/reports` pages the edge's reports newest first, as the PoPs sent them.
#[tokio::test]
async fn reports_are_listed_newest_first_in_pages() {
    let app = test_app();
    add_tenant(&app.router, "a").await;
    for (i, path) in ["/one", "/two", "/three"].iter().enumerate() {
        let report = json!({"pop": "p1", "tenant": "a", "kind": "contract_mismatch", "generation": 1,
            "expected_schema": "1.8.2", "expected_contract": contract(1), "path": path, "observed_at": i});
        let a = send(&app.router, "POST", "/v1/edge/reports", Some(crate::support::EDGE), Some(report)).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    }
    let a = send(&app.router, "GET", "/v1/reports?limit=2", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let page: edgegen_shared::api::ReportPage = serde_json::from_value(a.body).unwrap();
    assert_eq!(page.total, 3);
    let paths: Vec<&str> = page.reports.iter().map(|r| r.report.path.as_deref().unwrap()).collect();
    assert_eq!(paths, ["/three", "/two"]);
    let a = send(&app.router, "GET", "/v1/reports?limit=500", Some(ADMIN), None).await;
    assert_eq!((a.status, a.body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
    assert_eq!(
        send(&app.router, "GET", "/v1/reports", Some(crate::support::EDGE), None).await.status,
        StatusCode::FORBIDDEN
    );
}

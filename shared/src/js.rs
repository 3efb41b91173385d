//! JavaScript bindings (feature `js`, built with wasm-bindgen for `wasm32-unknown-unknown`).
//!
//! Tooling in JavaScript (release dashboards, test harnesses, origin middleware in Node)
//! derives the same keys and hashes as the edge by calling this crate, never by
//! re-implementing it. Structured inputs and outputs are JSON strings; failures throw an
//! `Error` whose message is the Rust error's.

use wasm_bindgen::prelude::*;

use crate::ids::{Generation, TenantId};
use crate::key::KeyInput;
use crate::mac::SecretKey;

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// `cacheKey(inputJson)`: derives a cache key. Input: `{"tenant","schema_version",
/// "contract_hash","generation","method","path","query"?, "vary"?: [[name, value|null]]}`.
/// Returns JSON `{"key","path","query"}` (the hex key and the normalized path and query).
#[wasm_bindgen(js_name = cacheKey)]
pub fn cache_key(input_json: &str) -> Result<String, JsError> {
    let input: KeyInput = serde_json::from_str(input_json).map_err(js_err)?;
    let (request, key) = input.derive().map_err(js_err)?;
    Ok(
        serde_json::json!({"key": key.to_hex(), "path": request.path(), "query": request.query()})
            .to_string(),
    )
}

/// `contractHash(schemaJson)`: `sha256:<hex>` of the canonical form of a JSON Schema document.
#[wasm_bindgen(js_name = contractHash)]
pub fn contract_hash(schema_json: &str) -> Result<String, JsError> {
    crate::contract::contract_hash(schema_json)
        .map(|h| h.to_string())
        .map_err(js_err)
}

/// `surrogateKeys(tenant, generation, originHeader)`: the space-separated surrogate keys of
/// an object stored under `generation` (a BigInt), with the origin's `Surrogate-Key` header
/// (or `undefined`) re-scoped under the tenant.
#[wasm_bindgen(js_name = surrogateKeys)]
pub fn surrogate_keys(
    tenant: &str,
    generation: u64,
    origin_header: Option<String>,
) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let keys =
        crate::surrogate::object_keys(&tenant, Generation(generation), origin_header.as_deref())
            .map_err(js_err)?;
    crate::surrogate::header_value(&keys).map_err(js_err)
}

/// `verifyProbeToken(token, tenant, nowSeconds, key)`: returns JSON
/// `{"tenant","expires_at"}` for a valid token; throws with the reason otherwise.
#[wasm_bindgen(js_name = verifyProbeToken)]
pub fn verify_probe_token(
    token: &str,
    tenant: &str,
    now_seconds: u64,
    key: &str,
) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let key = SecretKey::new("probe key", key.as_bytes()).map_err(js_err)?;
    let claims = crate::probe::verify(token, &tenant, now_seconds, &key).map_err(js_err)?;
    Ok(serde_json::json!({"tenant": claims.tenant, "expires_at": claims.expires_at}).to_string())
}

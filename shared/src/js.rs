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
use crate::manifest::Manifest;

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// `cacheKey(inputJson)`: derives a cache key. Input: `{"tenant","schema_version",
/// "contract_hash","generation","method","path","query"?, "vary"?: [[name, value|null]]}`,
/// where `generation` is a number or, above 2^53, a decimal string.
/// Returns JSON `{"key","path","query"}` (the hex key and the normalized path and query).
#[wasm_bindgen(js_name = cacheKey)]
pub fn cache_key(input_json: &str) -> Result<String, JsError> {
    // Through `Value` so errors read exactly as the Rust vectors record them (no position).
    let mut value: serde_json::Value = serde_json::from_str(input_json).map_err(js_err)?;
    exact_integers(&mut value)?;
    let input: KeyInput = serde_json::from_value(value).map_err(js_err)?;
    let (request, key) = input.derive().map_err(js_err)?;
    Ok(serde_json::json!({"key": key.to_hex(), "path": request.path(), "query": request.query()}).to_string())
}

/// JavaScript numbers are exact only up to 2^53, so the 64-bit integer fields
/// (`generation`, `stored_at`) may also be given as decimal strings; they are turned into
/// the JSON numbers the Rust wire types expect.
fn exact_integers(value: &mut serde_json::Value) -> Result<(), JsError> {
    for field in ["generation", "stored_at"] {
        if let Some(serde_json::Value::String(s)) = value.get(field) {
            let n: Generation = s.parse().map_err(|_| JsError::new(&format!("{field}: {s:?} is not a decimal u64")))?;
            value[field] = n.0.into();
        }
    }
    Ok(())
}

/// `contractHash(schemaJson)`: `sha256:<hex>` of the canonical form of a JSON Schema document.
#[wasm_bindgen(js_name = contractHash)]
pub fn contract_hash(schema_json: &str) -> Result<String, JsError> {
    crate::contract::contract_hash(schema_json).map(|h| h.to_string()).map_err(js_err)
}

/// `canonicalJson(json)`: the RFC 8785 canonical form of a JSON document.
#[wasm_bindgen(js_name = canonicalJson)]
pub fn canonical_json(json: &str) -> Result<String, JsError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(js_err)?;
    crate::contract::canonical_json(&value).map_err(js_err)
}

/// `signManifest(manifestJson, key)`: the signed wire body of a manifest.
#[wasm_bindgen(js_name = signManifest)]
pub fn sign_manifest(manifest_json: &str, key: &str) -> Result<String, JsError> {
    let manifest: Manifest = serde_json::from_str(manifest_json).map_err(js_err)?;
    let key = SecretKey::new("manifest key", key.as_bytes()).map_err(js_err)?;
    Ok(manifest.sign(&key))
}

/// `verifyManifest(body, tenant, key)`: the manifest JSON of a verified body; throws with the
/// reason otherwise.
#[wasm_bindgen(js_name = verifyManifest)]
pub fn verify_manifest(body: &str, tenant: &str, key: &str) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let key = SecretKey::new("manifest key", key.as_bytes()).map_err(js_err)?;
    let manifest = crate::manifest::verify(body.as_bytes(), &key, &tenant).map_err(js_err)?;
    serde_json::to_string(&manifest).map_err(js_err)
}

/// `signLease(manifestJson, key, issuedAtMs, maxAgeMs, maxStaleMs)`: the `edgegen-lease`
/// header extending the manifest's state (BigInt times).
#[wasm_bindgen(js_name = signLease)]
pub fn sign_lease(
    manifest_json: &str,
    key: &str,
    issued_at: u64,
    max_age_ms: u64,
    max_stale_ms: u64,
) -> Result<String, JsError> {
    let (manifest, key) = held_manifest(manifest_json, key)?;
    Ok(crate::lease::Lease::new(&manifest, issued_at, max_age_ms, max_stale_ms).sign(&key))
}

/// `verifyLease(header, manifestJson, key, nowMs, skewMs)`: JSON `{"tenant","generation",
/// "issued_at","max_age_ms","max_stale_ms"}` of a lease valid for the held manifest; throws
/// with the reason otherwise.
#[wasm_bindgen(js_name = verifyLease)]
pub fn verify_lease(
    header: &str,
    manifest_json: &str,
    key: &str,
    now_ms: u64,
    skew_ms: u64,
) -> Result<String, JsError> {
    let (manifest, key) = held_manifest(manifest_json, key)?;
    let lease = crate::lease::verify(header, &key, &manifest, now_ms, skew_ms).map_err(js_err)?;
    Ok(serde_json::json!({
        "tenant": lease.tenant, "generation": lease.generation, "issued_at": lease.issued_at,
        "max_age_ms": lease.max_age_ms, "max_stale_ms": lease.max_stale_ms,
    })
    .to_string())
}

/// A manifest and the manifest key, parsed.
fn held_manifest(manifest_json: &str, key: &str) -> Result<(Manifest, SecretKey), JsError> {
    let manifest: Manifest = serde_json::from_str(manifest_json).map_err(js_err)?;
    let key = SecretKey::new("manifest key", key.as_bytes()).map_err(js_err)?;
    Ok((manifest, key))
}

/// `mintProbeToken(tenant, nowSeconds, expiresAtSeconds, key)`: a probe token (BigInt times).
#[wasm_bindgen(js_name = mintProbeToken)]
pub fn mint_probe_token(tenant: &str, now_seconds: u64, expires_at: u64, key: &str) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let key = SecretKey::new("probe key", key.as_bytes()).map_err(js_err)?;
    crate::probe::mint(&tenant, now_seconds, expires_at, &key).map_err(js_err)
}

/// `encodeObjectMetadata(json)`: the hex of the binary object metadata for
/// `{"tenant","generation","schema_version","contract_hash","stored_at"}`.
#[wasm_bindgen(js_name = encodeObjectMetadata)]
pub fn encode_object_metadata(json: &str) -> Result<String, JsError> {
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(js_err)?;
    exact_integers(&mut value)?;
    let metadata: crate::metadata::ObjectMetadata = serde_json::from_value(value).map_err(js_err)?;
    Ok(hex::encode(metadata.encode()))
}

/// `decodeObjectMetadata(hex)`: the JSON of decoded object metadata; throws for garbage.
#[wasm_bindgen(js_name = decodeObjectMetadata)]
pub fn decode_object_metadata(hex_bytes: &str) -> Result<String, JsError> {
    let bytes = hex::decode(hex_bytes).map_err(js_err)?;
    let metadata = crate::metadata::ObjectMetadata::decode(&bytes).map_err(js_err)?;
    serde_json::to_string(&metadata).map_err(js_err)
}

/// `surrogateKeys(tenant, generation, originHeader)`: the space-separated surrogate keys of
/// an object stored under `generation` (a BigInt), with the origin's `Surrogate-Key` header
/// (or `undefined`) re-scoped under the tenant.
#[wasm_bindgen(js_name = surrogateKeys)]
pub fn surrogate_keys(tenant: &str, generation: u64, origin_header: Option<String>) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let keys =
        crate::surrogate::object_keys(&tenant, Generation(generation), origin_header.as_deref()).map_err(js_err)?;
    crate::surrogate::header_value(&keys).map_err(js_err)
}

/// `verifyProbeToken(token, tenant, nowSeconds, key)`: returns JSON
/// `{"tenant","expires_at"}` for a valid token; throws with the reason otherwise.
#[wasm_bindgen(js_name = verifyProbeToken)]
pub fn verify_probe_token(token: &str, tenant: &str, now_seconds: u64, key: &str) -> Result<String, JsError> {
    let tenant = TenantId::new(tenant).map_err(js_err)?;
    let key = SecretKey::new("probe key", key.as_bytes()).map_err(js_err)?;
    let claims = crate::probe::verify(token, &tenant, now_seconds, &key).map_err(js_err)?;
    Ok(serde_json::json!({"tenant": claims.tenant, "expires_at": claims.expires_at}).to_string())
}

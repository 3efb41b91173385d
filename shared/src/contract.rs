//! API-contract hashes: `sha256:` + SHA-256 of the RFC 8785 (JCS) canonical form of a JSON
//! Schema document (what `schemars` emits for a serialize-side response type).
//!
//! Canonical form sorts object members, drops insignificant whitespace and fixes number and
//! string spelling, so the same schema written with another key order or layout has the same
//! hash. No domain tag is mixed in, on purpose: anyone can reproduce a hash with any JCS
//! implementation and `sha256sum`. Canonicalization is `serde_json_canonicalizer`'s.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::ContractHash;

/// A document that cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// Not JSON.
    #[error("contract schema: invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// JSON that has no canonical form (e.g. a number outside the IEEE 754 double range).
    #[error("contract schema: cannot canonicalize: {0}")]
    Canonicalization(String),
}

/// The contract hash of a JSON Schema document given as text.
///
/// # Errors
/// [`ContractError`] for invalid JSON (with its position) or JSON without a canonical form.
pub fn contract_hash(schema_json: &str) -> Result<ContractHash, ContractError> {
    let value: Value = serde_json::from_str(schema_json).map_err(|e| ContractError::InvalidJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    contract_hash_value(&value)
}

/// The contract hash of a parsed JSON Schema document.
///
/// # Errors
/// [`ContractError::Canonicalization`] for values without a canonical form.
pub fn contract_hash_value(schema: &Value) -> Result<ContractHash, ContractError> {
    let canonical = canonical_json(schema)?;
    Ok(ContractHash::from_digest(Sha256::digest(canonical.as_bytes()).into()))
}

/// The RFC 8785 canonical form of `value`.
///
/// # Errors
/// [`ContractError::Canonicalization`] for values without a canonical form.
pub fn canonical_json(value: &Value) -> Result<String, ContractError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| ContractError::Canonicalization(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a =
            r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}"#;
        let b = "{\n  \"required\": [\"id\"],\n  \"properties\": {\n    \"name\": {\"type\": \"string\"},\n    \"id\": {\"type\": \"integer\"}\n  },\n  \"type\": \"object\"\n}";
        assert_eq!(contract_hash(a).unwrap(), contract_hash(b).unwrap());
        // Array order is meaningful and changes the hash.
        let c = a.replace(r#"["id"]"#, r#"["id","name"]"#);
        assert_ne!(contract_hash(a).unwrap(), contract_hash(&c).unwrap());
    }

    #[test]
    fn rfc8785_example_canonicalizes_as_published() {
        // RFC 8785 §3.2.2 input and §3.2.3 output.
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).unwrap();
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canonical_json(&value).unwrap(), expected);
    }

    #[test]
    fn invalid_json_names_the_position() {
        let err = contract_hash("{\n  \"type\": \"object\",,\n}").unwrap_err();
        assert!(matches!(err, ContractError::InvalidJson { line: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("contract schema: invalid JSON at line 2"));
    }
}

//! Bodies the edge posts to the coordinator: acknowledgements (`POST /v1/edge/acks`) and
//! reports (`POST /v1/edge/reports`).
//!
//! Fields are validated on deserialization (through the id types). Unknown fields are
//! ignored, so a newer edge can add fields without breaking an older coordinator.
//! Times are Unix milliseconds.

/// The request header in which the edge names its PoP when it fetches a manifest. The
/// coordinator accepts a PoP's acknowledgement of a generation only after it served that PoP
/// that generation's manifest.
pub const POP_HEADER: &str = "edgegen-pop";

use serde::{Deserialize, Serialize};

use crate::ids::{ContractHash, Generation, PopId, SchemaVersion, TenantId};

/// A PoP saw a tenant's generation (it fetched and verified a manifest carrying it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ack {
    /// The PoP.
    pub pop: PopId,
    /// The tenant.
    pub tenant: TenantId,
    /// The generation the PoP now uses.
    pub generation: Generation,
    /// When the PoP verified the manifest, Unix milliseconds (the PoP's clock).
    pub observed_at: u64,
}

/// What went wrong in a [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// The origin stamped another schema version or contract hash than the manifest's, or
    /// none at all.
    ContractMismatch,
    /// A consumer could not deserialize an object produced under the current contract.
    DeserializationFailure,
}

/// An edge PoP met a response that does not fit the tenant's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// The PoP.
    pub pop: PopId,
    /// The tenant.
    pub tenant: TenantId,
    /// What happened.
    pub kind: ReportKind,
    /// The manifest generation the edge held.
    pub generation: Generation,
    /// The schema version the manifest expects.
    pub expected_schema: SchemaVersion,
    /// The contract hash the manifest expects.
    pub expected_contract: ContractHash,
    /// What the origin stamped as `edgegen-schema`, verbatim (absent if it stamped nothing).
    /// Untrusted text: shown, never parsed into a version.
    #[serde(default)]
    pub observed_schema: Option<String>,
    /// What the origin stamped as `edgegen-contract`, verbatim.
    #[serde(default)]
    pub observed_contract: Option<String>,
    /// The normalized request path, for locating the route.
    #[serde(default)]
    pub path: Option<String>,
    /// When the edge saw it, Unix milliseconds.
    pub observed_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_json_shape_is_stable() {
        let ack = Ack {
            pop: PopId::new("LCY").unwrap(),
            tenant: TenantId::new("acme").unwrap(),
            generation: Generation(5),
            observed_at: 1_700_000_000_000,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(json, r#"{"pop":"LCY","tenant":"acme","generation":5,"observed_at":1700000000000}"#);
        let with_extra = r#"{"pop":"LCY","tenant":"acme","generation":5,"observed_at":1700000000000,"new":1}"#;
        assert_eq!(serde_json::from_str::<Ack>(with_extra).unwrap(), ack);
    }

    #[test]
    fn invalid_fields_are_named() {
        let err =
            serde_json::from_str::<Ack>(r#"{"pop":"LCY","tenant":"ACME","generation":5,"observed_at":1}"#).unwrap_err();
        assert!(err.to_string().starts_with("tenant: "), "{err}");
        let err = serde_json::from_str::<Ack>(r#"{"pop":"LCY","tenant":"acme","observed_at":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `generation`"), "{err}");
    }

    #[test]
    fn report_kinds_are_snake_case() {
        let json = r#"{"pop":"p1","tenant":"acme","kind":"contract_mismatch","generation":2,
            "expected_schema":"1.8.3","expected_contract":"sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "observed_schema":"1.8.2","observed_at":5}"#;
        let report: Report = serde_json::from_str(json).unwrap();
        assert_eq!(report.kind, ReportKind::ContractMismatch);
        assert_eq!(report.observed_contract, None);
    }
}

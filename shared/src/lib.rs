//! `edgegen-shared`: the pure core that the edge, the coordinator and JavaScript tooling
//! share, so that all of them agree byte for byte.
//!
//! It owns every value that crosses a process boundary and every derivation that two
//! parties must compute identically:
//!
//! - [`ids`]: validated identifiers ([`TenantId`], [`SchemaVersion`], [`ContractHash`],
//!   [`Generation`], [`ReleaseId`], [`PopId`]);
//! - [`key`]: request normalization and cache-key derivation;
//! - [`surrogate`]: tenant-scoped surrogate keys checked against Fastly's limits;
//! - [`manifest`]: the signed per-tenant manifest the edge trusts;
//! - [`lease`]: the signed extension of a manifest sent on a conditional refresh (304);
//! - [`metadata`]: what the edge stores next to each cached object;
//! - [`probe`]: the `edgegen-probe` debug token;
//! - [`wire`]: acknowledgement and report bodies the edge posts to the coordinator;
//! - [`contract`]: API-contract hashes over canonical JSON Schema documents;
//! - [`api`]: bodies of the coordinator's admin API (with OpenAPI schemas under the
//!   `openapi` feature, which the edge and the JavaScript build leave off).
//!
//! This crate does no I/O and reads no clock: callers pass times in. It depends on neither
//! `fastly` nor `tokio`, and builds natively, for `wasm32-wasip1` and for
//! `wasm32-unknown-unknown` (with the `js` feature, through `wasm-bindgen`).
#![warn(missing_docs)]

pub mod api;
pub mod contract;
mod encoding;
pub mod ids;
#[cfg(feature = "js")]
pub mod js;
pub mod key;
pub mod lease;
mod mac;
pub mod manifest;
pub mod metadata;
#[cfg(feature = "openapi")]
mod openapi;
pub mod probe;
pub mod surrogate;
pub mod wire;

pub use contract::{ContractError, contract_hash};
pub use ids::{ContractHash, Generation, InvalidField, PopId, ReleaseId, SchemaVersion, TenantId};
pub use key::{CacheKey, KeyError, KeyScope, NormalizedRequest, RequestParts};
pub use lease::{Lease, LeaseError};
pub use mac::{InvalidSecret, SecretKey};
pub use manifest::{Manifest, ManifestError};
pub use metadata::{MetadataError, ObjectMetadata};
pub use probe::{ProbeClaims, ProbeError};
pub use surrogate::{SurrogateError, SurrogateKey};
pub use wire::{Ack, Report, ReportKind};

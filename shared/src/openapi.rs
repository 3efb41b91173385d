//! OpenAPI schemas of the validated identifiers (feature `openapi`), so the coordinator's
//! `/openapi.json` states the same rules [`crate::ids`] enforces: a client that follows the
//! document sends values the parsers accept, and a fuzzer that breaks them gets a 400.
//!
//! The id types serialize as strings (or, for [`Generation`], a number) through their own
//! serde impls, so their schemas are written here against those impls rather than derived
//! from their Rust fields. The patterns are the parsers' rules; `ids` tests pin the rules.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::ids::{ContractHash, Generation, PopId, ReleaseId, SchemaVersion, TenantId};

/// A string schema with a pattern and length bounds.
fn string(description: &str, pattern: &str, min: usize, max: usize, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .examples([serde_json::Value::from(example)])
        .into()
}

/// A decimal `u32` without leading zeros (0 to 4294967295), as a regular expression: the
/// parts of a [`SchemaVersion`].
const U32: &str = "(0|[1-9][0-9]{0,8}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}\
    |4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])";

/// Implements `ToSchema` for an id type from a schema function.
macro_rules! schema {
    ($ty:ident, $body:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
        }
    };
}

schema!(
    TenantId,
    string(
        "A tenant: a DNS label (a-z, 0-9, '-', not starting or ending with '-').",
        "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        1,
        63,
        "acme"
    )
);
/// A host name routed to a tenant (schema only: hosts stay `String`s on the wire and the
/// coordinator checks them when a tenant registers).
pub(crate) struct HostName;

schema!(
    HostName,
    string(
        "A lower-case DNS name without port: dot-separated labels of a-z, 0-9, '-'.",
        "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
        1,
        253,
        "acme.example.com"
    )
);
schema!(ReleaseId, string("A release identifier.", "^[A-Za-z0-9_-]+$", 1, 64, "rel-000001"));
schema!(PopId, string("An edge point of presence.", "^[A-Za-z0-9_-]+$", 1, 64, "LCY"));
schema!(
    SchemaVersion,
    string(
        "MAJOR.MINOR.PATCH, decimal u32 parts without leading zeros.",
        &format!("^{U32}\\.{U32}\\.{U32}$"),
        5,
        32,
        "1.8.3"
    )
);
schema!(
    ContractHash,
    string(
        "An API-contract hash: 'sha256:' and 64 lower-case hex digits.",
        "^sha256:[0-9a-f]{64}$",
        71,
        71,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000"
    )
);
schema!(
    Generation,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .description(Some("A tenant's generation: only moves forward."))
        .into()
);

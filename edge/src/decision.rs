//! The per-request decisions of the edge, as functions of values: whether a found object may
//! be served, whether the origin produced what the manifest expects, and how the outcome is
//! reported. The platform shell only gathers the inputs and carries out the verdicts.

use edgegen_shared::key::KeyScope;

use crate::stored::{Record, StoredHead};

/// How a request was answered (the `edgegen-cache` probe header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache under the current generation.
    Hit,
    /// Fetched from the origin (and stored if the response allowed it).
    Miss,
    /// A found object of another generation/schema/contract was refused, refetched and overwritten.
    StaleRejected,
    /// No valid manifest: passed to the origin, nothing served from or stored in the cache.
    Bypass,
    /// The origin stamped another schema/contract than the manifest's: served, not stored, reported.
    Mismatch,
    /// Not cacheable (method, credentials, unkeyable target): passed to the origin.
    Pass,
    /// A stale object of the current generation served under `stale-while-revalidate` or
    /// `stale-if-error`.
    Stale,
    /// A stale object of the current generation revalidated with the origin (304) and served.
    Revalidated,
}

impl Outcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::StaleRejected => "STALE-REJECTED",
            Outcome::Bypass => "BYPASS",
            Outcome::Mismatch => "MISMATCH",
            Outcome::Pass => "PASS",
            Outcome::Stale => "STALE",
            Outcome::Revalidated => "REVALIDATED",
        }
    }
}

/// What to do with an entry the cache found under the request's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An object stored under exactly the current scope: a candidate for reuse (freshness
    /// decides how).
    Serve(StoredHead),
    /// The URL's responses vary: the variant is under the key these request headers select.
    Variants {
        /// Nominated request header names.
        names: Vec<String>,
        /// Variant keys stored so far.
        variants: Vec<[u8; 32]>,
    },
    /// An invalidated entry: as if nothing were stored.
    Absent,
    /// Anything else (other tenant, generation, schema or contract, or unreadable metadata):
    /// never served by any path; refetched and overwritten.
    Reject,
}

/// Judges a found entry by its stored metadata against the manifest's scope. Anything
/// unreadable is rejected: unknown is uncached (invariant 5).
pub fn judge_found(user_metadata: &[u8], scope: &KeyScope) -> Found {
    // Only a record of exactly this scope is decoded past its metadata.
    match Record::decode_in_scope(user_metadata, scope) {
        Ok(Record::Object(head)) => Found::Serve(head),
        Ok(Record::VaryIndex { names, variants, .. }) => Found::Variants { names, variants },
        Ok(Record::Tombstone) => Found::Absent,
        Err(_) => Found::Reject,
    }
}

/// Whether the origin produced what the manifest expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractCheck {
    /// Stamps match (or the tenant's origin is configured as unstamped).
    Match,
    /// Stamps differ or are missing: serve, do not store, report.
    Mismatch {
        /// `edgegen-schema` as sent, if any.
        observed_schema: Option<String>,
        /// `edgegen-contract` as sent, if any.
        observed_contract: Option<String>,
    },
}

/// Compares the origin's `edgegen-schema`/`edgegen-contract` stamps with the manifest.
pub fn check_origin_contract(
    scope: &KeyScope,
    schema: Option<&str>,
    contract: Option<&str>,
    unstamped_origin: bool,
) -> ContractCheck {
    if unstamped_origin {
        return ContractCheck::Match;
    }
    let schema_ok = schema.map(str::trim) == Some(scope.schema_version.to_string().as_str());
    let contract_ok = contract.map(str::trim) == Some(scope.contract_hash.to_string().as_str());
    if schema_ok && contract_ok {
        ContractCheck::Match
    } else {
        ContractCheck::Mismatch {
            observed_schema: schema.map(|s| bounded(s, 128)),
            observed_contract: contract.map(|s| bounded(s, 128)),
        }
    }
}

/// Untrusted header text for a report: at most `max` bytes (on a char boundary), marked when
/// shortened so it is never mistaken for the full value.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The debug headers a valid probe gets (ARCHITECTURE.md, "HTTP headers"), in order.
pub fn probe_headers(
    outcome: Outcome,
    key_hex: Option<&str>,
    scope: Option<&KeyScope>,
    tenant: &str,
    pop: &str,
    manifest_age_ms: Option<u64>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![("edgegen-cache", outcome.as_str().to_owned()), ("edgegen-tenant", tenant.to_owned())];
    if let Some(key) = key_hex {
        headers.push(("edgegen-key", key.to_owned()));
    }
    if let Some(scope) = scope {
        headers.push(("edgegen-generation", scope.generation.to_string()));
        headers.push(("edgegen-schema", scope.schema_version.to_string()));
        headers.push(("edgegen-contract", scope.contract_hash.to_string()));
    }
    headers.push(("edgegen-pop", pop.to_owned()));
    if let Some(age) = manifest_age_ms {
        headers.push(("edgegen-manifest-age", age.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use edgegen_shared::metadata::ObjectMetadata;
    use edgegen_shared::{ContractHash, Generation, SchemaVersion, TenantId};

    use super::*;

    fn scope(generation: u64) -> KeyScope {
        KeyScope {
            tenant: TenantId::new("acme").unwrap(),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([2; 32]),
            generation: Generation(generation),
        }
    }

    fn stored(scope: &KeyScope) -> Vec<u8> {
        let timing = crate::freshness::Timing {
            response_time_ms: 5,
            initial_age: 0,
            lifetime: 60,
            stale_while_revalidate: 60,
            stale_if_error: 60,
            no_cache: false,
            must_revalidate: false,
        };
        let head = StoredHead {
            metadata: ObjectMetadata::new(scope, 5),
            status: 200,
            body_len: 0,
            timing,
            headers: crate::fields::Headers::new(),
        };
        Record::Object(head).encode()
    }

    #[test]
    fn only_the_current_scope_is_served() {
        let current = scope(7);
        assert!(matches!(judge_found(&stored(&current), &current), Found::Serve(_)));
        assert_eq!(judge_found(&stored(&scope(6)), &current), Found::Reject, "older generation");
        let other_tenant = KeyScope { tenant: TenantId::new("beta").unwrap(), ..current.clone() };
        assert_eq!(judge_found(&stored(&other_tenant), &current), Found::Reject, "another tenant's object");
        let old_schema = KeyScope { schema_version: SchemaVersion::new("1.8.2").unwrap(), ..current.clone() };
        assert_eq!(judge_found(&stored(&old_schema), &current), Found::Reject);
        assert_eq!(judge_found(b"garbage", &current), Found::Reject, "unknown is uncached");
        assert_eq!(judge_found(&[], &current), Found::Reject);
        assert_eq!(judge_found(&Record::Tombstone.encode(), &current), Found::Absent);
        let index = |s: &KeyScope| {
            Record::VaryIndex { metadata: ObjectMetadata::new(s, 5), names: vec!["accept".into()], variants: vec![] }
                .encode()
        };
        assert!(matches!(judge_found(&index(&current), &current), Found::Variants { .. }));
        assert_eq!(judge_found(&index(&scope(6)), &current), Found::Reject, "another generation's index");
    }

    #[test]
    fn origin_contract_stamps() {
        let s = scope(1);
        let contract = s.contract_hash.to_string();
        assert_eq!(check_origin_contract(&s, Some("1.8.3"), Some(&contract), false), ContractCheck::Match);
        assert_eq!(check_origin_contract(&s, None, None, true), ContractCheck::Match, "unstamped origin");
        let m = check_origin_contract(&s, Some("1.8.2"), Some(&contract), false);
        assert_eq!(
            m,
            ContractCheck::Mismatch {
                observed_schema: Some("1.8.2".into()),
                observed_contract: Some(contract.clone())
            }
        );
        assert!(
            matches!(check_origin_contract(&s, None, None, false), ContractCheck::Mismatch { .. }),
            "missing stamps"
        );
        let long = "x".repeat(500);
        let ContractCheck::Mismatch { observed_schema, .. } = check_origin_contract(&s, Some(&long), None, false)
        else {
            panic!("mismatch expected")
        };
        assert!(observed_schema.unwrap().ends_with('…'));
    }

    #[test]
    fn probe_headers_show_the_edge_view() {
        let s = scope(4);
        let h = probe_headers(Outcome::StaleRejected, Some("ab"), Some(&s), "acme", "LCY", Some(12));
        let names: Vec<&str> = h.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "edgegen-cache",
                "edgegen-tenant",
                "edgegen-key",
                "edgegen-generation",
                "edgegen-schema",
                "edgegen-contract",
                "edgegen-pop",
                "edgegen-manifest-age"
            ]
        );
        assert_eq!(h[0].1, "STALE-REJECTED");
    }
}

//! The local stack's purge endpoint, decided without I/O: whether a request is an
//! authenticated purge of surrogate keys at this PoP, and what it asks for.
//!
//! On Fastly, a purge reaches every PoP through Fastly's own API. Locally there is no such
//! network: the harness's stand-in for Fastly's API (`edgegen_tests::fastly_api`) relays each
//! purge to every local PoP through this endpoint, and the edge applies it with the Compute
//! purge hostcall (`fastly::http::purge`), which Viceroy implements on its Core Cache.
//!
//! The endpoint exists only in a wasm built with the `local-purge` cargo feature (the harness
//! builds one for the local stack; `fastly compute build` and `cargo xtask build-edge` never
//! enable it), and even there only once the local configuration holds a
//! [`PURGE_TOKEN_SECRET`]. A request without the exact token is not a purge: it goes through
//! the ordinary pipeline like any other request, so its answer says nothing about the
//! endpoint (the token is compared in constant time).
//!
//! The request: `POST /.edgegen/purge`, `Authorization: Bearer <token>`, the keys in a
//! space-separated `Surrogate-Key` header (as Fastly's batch purge takes them), and
//! `Fastly-Soft-Purge: 1` for a soft purge. At most [`MAX_KEYS`] keys, each a valid surrogate
//! key: anything else is refused whole with a 400 naming the key.

use edgegen_shared::surrogate::SurrogateKey;

use crate::fields::Headers;
use crate::pipeline::{Body, Response, json_error};

/// The path of the purge endpoint.
pub const PURGE_PATH: &str = "/.edgegen/purge";
/// The entry of the edge's Secret Store holding the purge token; local configurations only
/// (the repository's `fastly.toml` never declares it).
pub const PURGE_TOKEN_SECRET: &str = "purge_token";
/// Most keys one purge request names (Fastly's batch limit).
pub const MAX_KEYS: usize = 256;
/// Shortest accepted token: a short one is a configuration error, and the endpoint stays off.
pub const MIN_TOKEN_LEN: usize = 32;

/// An authenticated purge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// The keys to purge, in the order given, duplicates removed.
    pub keys: Vec<SurrogateKey>,
    /// Mark stale (`Fastly-Soft-Purge: 1`) instead of removing.
    pub soft: bool,
}

/// What the endpoint makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeCall {
    /// Not an authenticated purge (another path or method, no token configured, a missing
    /// or wrong token): handle it as any other request.
    NotPurge,
    /// An authenticated purge.
    Purge(Purge),
    /// An authenticated request that is not a valid purge: why, naming the field.
    Invalid(String),
}

/// Equality of two byte strings whose time depends only on their lengths, not on where they
/// differ.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, b) in given.iter().enumerate() {
        diff |= b ^ expected.get(i).copied().unwrap_or(!b);
    }
    std::hint::black_box(diff) == 0
}

/// Classifies a request, given the configured token (`None`: the endpoint is off).
pub fn classify(method: &str, path: &str, headers: &Headers, token: Option<&[u8]>) -> PurgeCall {
    let Some(token) = token.filter(|t| t.len() >= MIN_TOKEN_LEN) else {
        return PurgeCall::NotPurge;
    };
    if path != PURGE_PATH || method != "POST" || headers.count("authorization") != 1 {
        return PurgeCall::NotPurge;
    }
    let given = headers.get("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token) {
        return PurgeCall::NotPurge;
    }
    let soft = match headers.get("fastly-soft-purge").map(str::trim) {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return PurgeCall::Invalid(format!("Fastly-Soft-Purge: {other:?} is not 0 or 1")),
    };
    let Some(list) = headers.combined("surrogate-key") else {
        return PurgeCall::Invalid("Surrogate-Key: missing (the space-separated keys to purge)".into());
    };
    let mut keys: Vec<SurrogateKey> = Vec::new();
    for (i, word) in list.split_ascii_whitespace().enumerate() {
        let key = match SurrogateKey::new(word) {
            Ok(k) => k,
            Err(e) => return PurgeCall::Invalid(format!("Surrogate-Key: key {}: {e}", i + 1)),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return PurgeCall::Invalid("Surrogate-Key: no key".into());
    }
    if keys.len() > MAX_KEYS {
        return PurgeCall::Invalid(format!("Surrogate-Key: {} keys, more than {MAX_KEYS}", keys.len()));
    }
    PurgeCall::Purge(Purge { keys, soft })
}

/// What applies a purge at this PoP (the Fastly shell: the Compute purge hostcall).
pub trait Purger {
    /// Purges (or, with `soft`, marks stale) every object tagged with `key` at this PoP.
    ///
    /// # Errors
    /// The platform's refusal, as text.
    fn purge_surrogate_key(&mut self, key: &str, soft: bool) -> Result<(), String>;
}

/// The answer to a request: `None` when it is not a purge (the pipeline handles it), else
/// the purge applied through `purger` and its JSON answer (200 when every key was purged,
/// 500 naming the keys that were not, 400 for an invalid purge). Never stored.
pub fn respond<B>(call: PurgeCall, purger: &mut impl Purger) -> Option<Response<B>> {
    match call {
        PurgeCall::NotPurge => None,
        PurgeCall::Invalid(why) => Some(json_error(400, "bad_purge", &why)),
        PurgeCall::Purge(purge) => {
            let results: Vec<(SurrogateKey, Result<(), String>)> = purge
                .keys
                .into_iter()
                .map(|k| {
                    let r = purger.purge_surrogate_key(k.as_str(), purge.soft);
                    (k, r)
                })
                .collect();
            let status = if results.iter().all(|(_, r)| r.is_ok()) { 200 } else { 500 };
            let mut headers = Headers::new();
            headers.append("content-type", b"application/json".to_vec());
            headers.append("cache-control", b"no-store".to_vec());
            Some(Response { status, headers, body: Body::Bytes(answer_body(&results).into_bytes()) })
        }
    }
}

/// The JSON body answering a purge: each key with whether it was purged, or why not.
pub fn answer_body(results: &[(SurrogateKey, Result<(), String>)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(k, r)| {
            let v = match r {
                Ok(()) => serde_json::json!({ "status": "ok" }),
                Err(e) => serde_json::json!({ "status": "error", "error": e }),
            };
            (k.as_str().to_owned(), v)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TOKEN: &[u8] = b"local-purge-token-0123456789abcdef";

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect()
    }

    fn check(method: &str, path: &str, pairs: &[(&str, &str)], token: Option<&[u8]>, expected: &PurgeCall) {
        assert_eq!(&classify(method, path, &headers(pairs), token), expected, "{method} {path} {pairs:?}");
    }

    fn purge(keys: &[&str], soft: bool) -> PurgeCall {
        PurgeCall::Purge(Purge { keys: keys.iter().map(|k| SurrogateKey::new(*k).unwrap()).collect(), soft })
    }

    #[test]
    fn only_an_exact_token_on_the_exact_route_purges() {
        let auth = "Bearer local-purge-token-0123456789abcdef";
        let keys = ("surrogate-key", "edgegen-manifest/acme t/acme/g/3 edgegen-manifest/acme");
        let both = purge(&["edgegen-manifest/acme", "t/acme/g/3"], false);
        check("POST", PURGE_PATH, &[("authorization", auth), keys], Some(TOKEN), &both);
        check("POST", PURGE_PATH, &[("authorization", auth), keys, ("fastly-soft-purge", "1")], Some(TOKEN), &{
            purge(&["edgegen-manifest/acme", "t/acme/g/3"], true)
        });
        // Off, or not for us: the ordinary pipeline answers.
        check("POST", PURGE_PATH, &[("authorization", auth), keys], None, &PurgeCall::NotPurge);
        check("POST", PURGE_PATH, &[("authorization", auth), keys], Some(b"short"), &PurgeCall::NotPurge);
        check("GET", PURGE_PATH, &[("authorization", auth), keys], Some(TOKEN), &PurgeCall::NotPurge);
        check("POST", "/.edgegen/purge/", &[("authorization", auth), keys], Some(TOKEN), &PurgeCall::NotPurge);
        check("POST", PURGE_PATH, &[keys], Some(TOKEN), &PurgeCall::NotPurge);
        let wrong = "Bearer local-purge-token-0123456789abcdeF";
        check("POST", PURGE_PATH, &[("authorization", wrong), keys], Some(TOKEN), &PurgeCall::NotPurge);
        let longer = "Bearer local-purge-token-0123456789abcdef0";
        check("POST", PURGE_PATH, &[("authorization", longer), keys], Some(TOKEN), &PurgeCall::NotPurge);
        check("POST", PURGE_PATH, &[("authorization", auth), ("authorization", auth), keys], Some(TOKEN), &{
            PurgeCall::NotPurge
        });
    }

    #[test]
    fn an_authenticated_bad_purge_names_the_field() {
        let auth = ("authorization", "Bearer local-purge-token-0123456789abcdef");
        let invalid = |pairs: &[(&str, &str)]| match classify("POST", PURGE_PATH, &headers(pairs), Some(TOKEN)) {
            PurgeCall::Invalid(why) => why,
            other => panic!("{pairs:?}: {other:?}"),
        };
        assert!(invalid(&[auth]).starts_with("Surrogate-Key: missing"));
        assert!(invalid(&[auth, ("surrogate-key", "  ")]).starts_with("Surrogate-Key: no key"));
        assert!(invalid(&[auth, ("surrogate-key", "ok caf\u{e9}")]).starts_with("Surrogate-Key: key 2: "));
        assert!(
            invalid(&[auth, ("surrogate-key", "k"), ("fastly-soft-purge", "yes")]).starts_with("Fastly-Soft-Purge")
        );
        let many: String = (0..=MAX_KEYS).map(|i| format!("k{i} ")).collect();
        assert!(invalid(&[auth, ("surrogate-key", &many)]).contains("more than 256"));
    }

    proptest! {
        #[test]
        fn constant_time_eq_is_equality(a in proptest::collection::vec(any::<u8>(), 0..48),
                                        b in proptest::collection::vec(any::<u8>(), 0..48)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            prop_assert!(constant_time_eq(&a, &a));
        }
    }

    struct Recorder(Vec<(String, bool)>);

    impl Purger for Recorder {
        fn purge_surrogate_key(&mut self, key: &str, soft: bool) -> Result<(), String> {
            self.0.push((key.to_owned(), soft));
            if key == "refused" { Err("no".into()) } else { Ok(()) }
        }
    }

    #[test]
    fn a_purge_is_applied_key_by_key_and_answered() {
        let mut r = Recorder(Vec::new());
        assert!(respond::<()>(PurgeCall::NotPurge, &mut r).is_none());
        let resp = respond::<()>(purge(&["a", "b"], true), &mut r).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(r.0, [("a".to_owned(), true), ("b".to_owned(), true)]);
        let resp = respond::<()>(purge(&["refused"], false), &mut r).unwrap();
        assert_eq!(resp.status, 500);
        let resp = respond::<()>(PurgeCall::Invalid("Surrogate-Key: missing".into()), &mut r).unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(r.0.len(), 3, "an invalid purge applies nothing");
    }

    #[test]
    fn the_answer_names_each_key() {
        let k = SurrogateKey::new("edgegen-manifest/acme").unwrap();
        let body = answer_body(&[(k, Ok(()))]);
        assert_eq!(body, r#"{"edgegen-manifest/acme":{"status":"ok"}}"#);
    }
}

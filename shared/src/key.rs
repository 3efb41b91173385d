//! Request normalization and cache-key derivation (ARCHITECTURE.md, "Contract between the
//! parts": cache key).
//!
//! A cache key is `SHA-256("edgegen/key/v1" ‖ fields)` in the length-prefixed encoding of
//! [`crate::encoding`], with these fields in this order:
//!
//! | # | field | bytes |
//! |---|---|---|
//! | 1 | tenant | its text form |
//! | 2 | schema version | its text form, e.g. `1.8.3` |
//! | 3 | contract hash | the raw 32-byte digest |
//! | 4 | generation | `u64` big-endian |
//! | 5 | method | verbatim, e.g. `GET` |
//! | 6 | normalized path | see below |
//! | 7 | normalized query | see below; empty when absent |
//! | 8 | vary count | `u64` big-endian |
//! | 9… | per vary header | name (lower case), then presence flag and value |
//!
//! The tenant is the first field, so two tenants can never derive one key (invariant 4).
//!
//! # Normalization
//!
//! Normalization maps requests that every RFC 3986 server treats as the same resource to one
//! key, and *nothing else*. The edge forwards the normalized path and query to the origin, so
//! the key and the object stored under it always describe the same request.
//!
//! - Bytes outside visible ASCII (controls, space, non-ASCII) must arrive percent-encoded;
//!   a malformed escape (`%zz`, `%4`) is an error, never guessed at.
//! - Path: must start with `/`. Percent-encoded *unreserved* characters
//!   (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape keeps its byte but gets upper-case
//!   hex (`%2f` → `%2F`), then dot segments are removed (RFC 3986 §5.2.4, so `%2E%2E` counts
//!   as `..`). Repeated slashes are kept.
//! - **Verbatim paths**: a path containing an encoded slash (`%2F`/`%2f`) or a `;` is keyed
//!   exactly as received: no decoding, no dot-segment removal. Servers disagree about what
//!   `/a%2Fb/../c` or `/a/..;/b` mean, and a key that guessed differently from the origin
//!   would let one resource's response be served for another.
//! - Query: split on `&`, empty parameters dropped, each parameter percent-normalized as
//!   above (`+` is left alone: its meaning is the application's), then sorted by name (the
//!   part before the first `=`), keeping the original order of parameters with equal names
//!   (`a=2&a=1` stays as is: repeated parameters are often ordered lists).
//! - Method: an HTTP token, kept verbatim (methods are case-sensitive).
//! - Vary headers: names lower-cased and sorted, each at most once; values with surrounding
//!   spaces and tabs removed; an absent header and an empty one are different keys.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::{Absorb, Encoder};
use crate::ids::{ContractHash, Generation, SchemaVersion, TenantId};

/// Domain tag of cache-key derivation; bump the version to change the encoding.
pub const KEY_DOMAIN: &str = "edgegen/key/v1";
/// Longest accepted path, in bytes (Fastly's URL limit is 8 KiB).
pub const MAX_PATH_LEN: usize = 8192;
/// Longest accepted query, in bytes.
pub const MAX_QUERY_LEN: usize = 8192;
/// Most vary headers one key can take.
pub const MAX_VARY_HEADERS: usize = 16;
/// Longest accepted vary header value, in bytes.
pub const MAX_VARY_VALUE_LEN: usize = 8192;
const MAX_METHOD_LEN: usize = 32;

/// Why a request cannot be keyed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The path does not start with `/`.
    #[error("path: must start with '/' (got {0})")]
    PathNotAbsolute(String),
    /// A byte that must be percent-encoded arrived raw.
    #[error("{field}: byte 0x{byte:02X} at offset {offset} must be percent-encoded")]
    InvalidByte {
        /// `path`, `query` or `vary`.
        field: &'static str,
        /// Byte offset in that field.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A `%` not followed by two hex digits.
    #[error("{field}: malformed percent-encoding at offset {offset} (a '%' must be followed by two hex digits)")]
    BadPercentEncoding {
        /// `path` or `query`.
        field: &'static str,
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// A field over its length limit.
    #[error("{field}: {len} bytes is over the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The method is not an HTTP token.
    #[error("method: must be an HTTP method token of 1-32 characters (got {0})")]
    BadMethod(String),
    /// A vary header name is not an HTTP token.
    #[error("vary: {0} is not a header name")]
    BadVaryName(String),
    /// A vary header named twice.
    #[error("vary: header {0:?} is listed twice")]
    DuplicateVary(String),
    /// Too many vary headers.
    #[error("vary: {count} headers is over the limit of {max}")]
    TooManyVary {
        /// Headers given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// What a key is scoped to: the tenant's state from its current manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyScope {
    /// The tenant (from routing, never from a client header).
    pub tenant: TenantId,
    /// The tenant's schema version.
    pub schema_version: SchemaVersion,
    /// The tenant's API-contract hash.
    pub contract_hash: ContractHash,
    /// The tenant's generation.
    pub generation: Generation,
}

/// A request as it arrived, before normalization.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, starting with `/`, still percent-encoded.
    pub path: &'a str,
    /// The query without its `?`, if any.
    pub query: Option<&'a str>,
    /// The headers the response varies on: (name, value if the request had the header). A
    /// header sent on several field lines must be passed as one value, the lines joined with
    /// `", "` (RFC 9110 §5.3), so the key sees what the origin sees.
    pub vary: &'a [(&'a str, Option<&'a str>)],
}

/// A request after normalization: what is keyed, and what the edge forwards to the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NormalizedRequest {
    method: Cow<'static, str>,
    path: String,
    query: String,
    vary: Vec<(String, Option<String>)>,
}

impl NormalizedRequest {
    /// Normalizes a request as the module documentation describes.
    ///
    /// # Errors
    /// [`KeyError`] naming the part of the request that cannot be keyed, and where.
    pub fn new(parts: &RequestParts<'_>) -> Result<Self, KeyError> {
        Ok(NormalizedRequest {
            method: normalize_method(parts.method)?,
            path: normalize_path(parts.path)?,
            query: normalize_query(parts.query.unwrap_or(""))?,
            vary: normalize_vary(parts.vary)?,
        })
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The normalized path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The normalized query without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The vary headers as keyed: lower-case names, sorted.
    pub fn vary(&self) -> &[(String, Option<String>)] {
        &self.vary
    }

    /// The same request with other vary values (normalized as in [`NormalizedRequest::new`]),
    /// without normalizing the path and query again: a Vary-keyed lookup derives the
    /// primary key first, then the variant's.
    ///
    /// # Errors
    /// [`KeyError`] naming the vary header that cannot be keyed.
    pub fn with_vary(&self, vary: &[(&str, Option<&str>)]) -> Result<Self, KeyError> {
        Ok(NormalizedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            vary: normalize_vary(vary)?,
        })
    }

    /// `path` or `path?query`: the request target to send to the origin.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, self.query) }
    }
}

/// Derives the keys of several requests within one scope (a Vary-keyed lookup derives the
/// primary key, then the variant's): the scope's part of the encoding is hashed once.
/// Every key equals [`CacheKey::derive`]'s.
#[derive(Clone)]
pub struct KeyDeriver(Sha256);

impl KeyDeriver {
    /// Absorbs `scope` once.
    pub fn new(scope: &KeyScope) -> Self {
        let mut hasher = Sha256::new();
        encode_scope(&mut hasher, scope);
        KeyDeriver(hasher)
    }

    /// The key of `request` within the scope.
    pub fn derive(&self, request: &NormalizedRequest) -> CacheKey {
        let mut hasher = self.0.clone();
        encode_request(&mut hasher, request);
        CacheKey(hasher.finalize().into())
    }
}

impl KeyDeriver {
    /// The key of `request` with other vary values: equal to deriving
    /// [`NormalizedRequest::with_vary`]'s request, without copying the path and query.
    ///
    /// # Errors
    /// [`KeyError`] naming the vary header that cannot be keyed.
    pub fn derive_with_vary<S: AsRef<str>>(
        &self,
        request: &NormalizedRequest,
        vary: &[(&str, Option<S>)],
    ) -> Result<CacheKey, KeyError> {
        let mut hasher = self.0.clone();
        if let [(name, value)] = vary {
            // The usual single `Vary` name: nothing to sort, no list to build.
            let (name, value) = normalize_vary_pair(name, value.as_ref().map(AsRef::as_ref))?;
            encode_target(&mut hasher, request, 1, std::iter::once((name.as_ref(), value)));
        } else {
            let vary = normalize_vary_borrowed(vary)?;
            encode_target(&mut hasher, request, vary.len(), vary.iter().map(|(name, value)| (name.as_ref(), *value)));
        }
        Ok(CacheKey(hasher.finalize().into()))
    }
}

impl fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDeriver")
    }
}

/// A cache key: 32 bytes of SHA-256, shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Derives the key of `request` within `scope`.
    pub fn derive(scope: &KeyScope, request: &NormalizedRequest) -> CacheKey {
        let mut hasher = Sha256::new();
        encode(&mut hasher, scope, request);
        CacheKey(hasher.finalize().into())
    }

    /// The exact bytes [`CacheKey::derive`] hashes: for debugging and for checking another
    /// implementation of the encoding.
    pub fn preimage(scope: &KeyScope, request: &NormalizedRequest) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, scope, request);
        out
    }

    /// The raw digest (what the Core Cache is keyed by).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters (how keys are shown: headers, logs, CLI).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// Everything a key is derived from, as one serializable value: what `edgegen key`, the
/// JavaScript bindings and the known-answer vectors take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    /// Scope fields.
    #[serde(flatten)]
    pub scope: KeyScope,
    /// The method.
    pub method: String,
    /// The raw path.
    pub path: String,
    /// The raw query without `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// Vary headers: `[name, value or null]`.
    #[serde(default)]
    pub vary: Vec<(String, Option<String>)>,
}

impl KeyInput {
    /// Normalizes the request and derives its key.
    ///
    /// # Errors
    /// [`KeyError`] when the request cannot be keyed.
    pub fn derive(&self) -> Result<(NormalizedRequest, CacheKey), KeyError> {
        let vary: Vec<(&str, Option<&str>)> = self.vary.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
        let request = NormalizedRequest::new(&RequestParts {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            vary: &vary,
        })?;
        let key = CacheKey::derive(&self.scope, &request);
        Ok((request, key))
    }
}

fn encode(sink: &mut impl Absorb, scope: &KeyScope, request: &NormalizedRequest) {
    encode_scope(sink, scope);
    encode_request(sink, request);
}

fn encode_scope(sink: &mut impl Absorb, scope: &KeyScope) {
    Encoder::new(sink, KEY_DOMAIN)
        .field(scope.tenant.as_str().as_bytes())
        .field(scope.schema_version.text().as_str().as_bytes())
        .field(scope.contract_hash.digest())
        .u64(scope.generation.0);
}

fn encode_request(sink: &mut impl Absorb, request: &NormalizedRequest) {
    let vary = request.vary.iter().map(|(name, value)| (name.as_str(), value.as_deref()));
    encode_target(sink, request, vary.len(), vary);
}

/// The request's method, path and query, then `count` normalized vary pairs.
fn encode_target<'a>(
    sink: &mut impl Absorb,
    request: &NormalizedRequest,
    count: usize,
    vary: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) {
    let mut enc = Encoder::resume(sink);
    enc.field(request.method.as_bytes())
        .field(request.path.as_bytes())
        .field(request.query.as_bytes())
        .u64(count as u64);
    for (name, value) in vary {
        enc.field(name.as_bytes()).optional(value.map(str::as_bytes));
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    // `#`..=`'` is `# $ % & '`, `^`..=`` ` `` is `` ^ _ ` ``.
    b.is_ascii_alphanumeric()
        || matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// What one validating pass over a path or query saw (so nothing scans it again).
#[derive(Debug, Default)]
struct Scanned {
    /// An encoded slash (`%2F`).
    encoded_slash: bool,
    /// The offset of the first literal `?`.
    question: Option<usize>,
    /// A literal `;`.
    semicolon: bool,
}

/// Checks that every byte is visible ASCII other than `#` and that every `%` starts a valid
/// escape, noting encoded slashes, `?` and `;` on the way.
fn validate_target(field: &'static str, s: &str, max: usize) -> Result<Scanned, KeyError> {
    if s.len() > max {
        return Err(KeyError::TooLong { field, len: s.len(), max });
    }
    let bytes = s.as_bytes();
    let mut seen = Scanned::default();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x21..=0x7E).contains(&b) || b == b'#' {
            return Err(KeyError::InvalidByte { field, offset: i, byte: b });
        }
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).and_then(|&h| hex_value(h)), bytes.get(i + 2).and_then(|&l| hex_value(l)))
                else {
                    return Err(KeyError::BadPercentEncoding { field, offset: i });
                };
                seen.encoded_slash |= hi * 16 + lo == b'/';
                i += 3;
                continue;
            }
            b'?' if seen.question.is_none() => seen.question = Some(i),
            b';' => seen.semicolon = true,
            _ => {}
        }
        i += 1;
    }
    Ok(seen)
}

/// Decodes escapes of unreserved characters and upper-cases the hex of the others.
/// Input must have passed [`validate_target`].
fn normalize_percent(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    // Runs without an escape are copied whole.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push_str(&s[run..i]);
            let decoded = hex_value(bytes[i + 1]).unwrap_or(0) * 16 + hex_value(bytes[i + 2]).unwrap_or(0);
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push(bytes[i + 1].to_ascii_uppercase() as char);
                out.push(bytes[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
            run = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[run..]);
}

/// Normalizes a path (see the module documentation).
///
/// # Errors
/// [`KeyError`] for a relative, over-long or malformed path.
pub fn normalize_path(path: &str) -> Result<String, KeyError> {
    if !path.starts_with('/') {
        return Err(KeyError::PathNotAbsolute(crate::ids::preview(path)));
    }
    let seen = validate_target("path", path, MAX_PATH_LEN)?;
    // A '?' ends the path in a request target: one inside a path would make two different
    // (path, query) splits send the same target to the origin.
    if let Some(offset) = seen.question {
        return Err(KeyError::InvalidByte { field: "path", offset, byte: b'?' });
    }
    if seen.encoded_slash || seen.semicolon {
        return Ok(path.to_owned());
    }
    let mut decoded = String::with_capacity(path.len());
    normalize_percent(path, &mut decoded);
    // Most paths have no dot segment (one starts with "/."): keep the decoded copy, no second one.
    if decoded.as_bytes().windows(2).any(|w| w == b"/.") { Ok(remove_dot_segments(&decoded)) } else { Ok(decoded) }
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    if !segments.iter().any(|s| *s == "." || *s == "..") {
        return path.to_owned();
    }
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        // A trailing `.` or `..` names a directory: keep the trailing slash.
        if i == last && (*segment == "." || *segment == "..") {
            out.push("");
        }
    }
    let mut result = String::with_capacity(path.len());
    for segment in out {
        result.push('/');
        result.push_str(segment);
    }
    if result.is_empty() {
        result.push('/');
    }
    result
}

/// Normalizes a query string given without its `?` (see the module documentation).
///
/// # Errors
/// [`KeyError`] for an over-long or malformed query.
pub fn normalize_query(query: &str) -> Result<String, KeyError> {
    validate_target("query", query, MAX_QUERY_LEN)?;
    // Every parameter is normalized into one buffer; `spans` are their (start, end of name,
    // end) in it, so sorting compares names without searching for `=` again.
    let mut decoded = String::with_capacity(query.len());
    // The usual handful of parameters is tracked on the stack; more spill to a Vec.
    let mut few = [(0usize, 0usize, 0usize); 16];
    let mut count = 0;
    let mut more: Vec<(usize, usize, usize)> = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        let start = decoded.len();
        normalize_percent(p, &mut decoded);
        // `=` is never produced by decoding (it is reserved), so the decoded name ends at the
        // decoded text's first `=`.
        let name_end = decoded.as_bytes()[start..].iter().position(|&b| b == b'=').map_or(decoded.len(), |i| start + i);
        let span = (start, name_end, decoded.len());
        if count < few.len() {
            few[count] = span;
            count += 1;
        } else {
            more.push(span);
        }
    }
    let spans: &mut [(usize, usize, usize)] = if more.is_empty() {
        &mut few[..count]
    } else {
        more.splice(0..0, few);
        &mut more
    };
    let name = |&(start, name_end, _): &(usize, usize, usize)| &decoded[start..name_end];
    // `sort_by` is stable: parameters with equal names keep their order.
    spans.sort_by(|a, b| name(a).cmp(name(b)));
    if spans.len() <= 1 {
        // No separator to add: the buffer is the query.
        return Ok(decoded);
    }
    let mut out = String::with_capacity(decoded.len() + spans.len());
    for (i, &(start, _, end)) in spans.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&decoded[start..end]);
    }
    Ok(out)
}

fn normalize_method(method: &str) -> Result<Cow<'static, str>, KeyError> {
    // The methods a cache keys are constants: no copy per request.
    if let Some(known) = ["GET", "HEAD"].into_iter().find(|m| *m == method) {
        return Ok(Cow::Borrowed(known));
    }
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(is_tchar) {
        return Err(KeyError::BadMethod(crate::ids::preview(method)));
    }
    Ok(Cow::Owned(method.to_owned()))
}

fn normalize_vary(vary: &[(&str, Option<&str>)]) -> Result<Vec<(String, Option<String>)>, KeyError> {
    Ok(normalize_vary_borrowed(vary)?
        .into_iter()
        .map(|(name, value)| (name.into_owned(), value.map(str::to_owned)))
        .collect())
}

/// [`normalize_vary`] without copying what is already normalized: names are copied only to
/// lower-case them, values are the trimmed input.
#[allow(clippy::type_complexity)]
fn normalize_vary_borrowed<'a, S: AsRef<str>>(
    vary: &'a [(&'a str, Option<S>)],
) -> Result<Vec<(Cow<'a, str>, Option<&'a str>)>, KeyError> {
    if vary.len() > MAX_VARY_HEADERS {
        return Err(KeyError::TooManyVary { count: vary.len(), max: MAX_VARY_HEADERS });
    }
    let mut out = Vec::with_capacity(vary.len());
    for (name, value) in vary {
        out.push(normalize_vary_pair(name, value.as_ref().map(AsRef::as_ref))?);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(KeyError::DuplicateVary(pair[0].0.to_string()));
    }
    Ok(out)
}

/// One vary header as keyed: the name checked and lower-cased, the value trimmed and checked.
fn normalize_vary_pair<'a>(name: &'a str, value: Option<&'a str>) -> Result<(Cow<'a, str>, Option<&'a str>), KeyError> {
    // `Vary: *` means "never the same response": such a response must not be cached at all.
    if name.is_empty() || name.len() > 256 || !name.bytes().all(is_tchar) || name == "*" {
        return Err(KeyError::BadVaryName(crate::ids::preview(name)));
    }
    let value = match value {
        None => None,
        Some(v) => {
            let v = v.trim_matches([' ', '\t']);
            if v.len() > MAX_VARY_VALUE_LEN {
                return Err(KeyError::TooLong { field: "vary", len: v.len(), max: MAX_VARY_VALUE_LEN });
            }
            if let Some(offset) = v.bytes().position(|b| b != b'\t' && (b < 0x20 || b == 0x7F)) {
                return Err(KeyError::InvalidByte { field: "vary", offset, byte: v.as_bytes()[offset] });
            }
            Some(v)
        }
    };
    let name: Cow<'a, str> =
        if name.bytes().any(|b| b.is_ascii_uppercase()) { name.to_ascii_lowercase().into() } else { name.into() };
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_path(input: &str, expected: &str) {
        assert_eq!(normalize_path(input).unwrap(), expected, "path {input:?}");
    }

    #[test]
    fn paths() {
        let cases = [
            ("/", "/"),
            ("/users/42", "/users/42"),
            ("/%7Euser/%41%62c", "/~user/Abc"),
            ("/a%2db", "/a-b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a/./b/../c", "/a/c"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/a/..", "/"),
            ("/a/b/.", "/a/b/"),
            ("/a/%2E%2E/b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("//double//slash", "//double//slash"),
            ("/a//../b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/.hidden/..x/x..", "/.hidden/..x/x.."),
            ("/a%20b", "/a%20b"),
            ("/a+b", "/a+b"),
            ("/api/items[0]", "/api/items[0]"),
            // Verbatim: encoded slash or `;` anywhere disables all normalization.
            ("/a%2Fb/../c", "/a%2Fb/../c"),
            ("/a%2fb/%7e", "/a%2fb/%7e"),
            ("/a/..;/b", "/a/..;/b"),
            ("/a;jsessionid=1/%7e", "/a;jsessionid=1/%7e"),
        ];
        for (input, expected) in cases {
            check_path(input, expected);
        }
    }

    #[test]
    fn a_key_deriver_gives_derives_keys() {
        let scope = KeyScope {
            tenant: TenantId::new("acme").unwrap(),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([7; 32]),
            generation: Generation(9),
        };
        let deriver = KeyDeriver::new(&scope);
        for vary in [&[][..], &[("accept-encoding", Some("br,gzip"))][..]] {
            let req =
                NormalizedRequest::new(&RequestParts { method: "GET", path: "/a", query: Some("x=1"), vary }).unwrap();
            assert_eq!(deriver.derive(&req), CacheKey::derive(&scope, &req));
        }
    }

    #[test]
    fn with_vary_equals_normalizing_again() {
        let vary = [("Accept-Encoding", Some(" br,gzip ")), ("x-lang", None)];
        let parts = RequestParts { method: "GET", path: "/a/./b", query: Some("b=2&a=1"), vary: &[] };
        let primary = NormalizedRequest::new(&parts).unwrap();
        let again = NormalizedRequest::new(&RequestParts { vary: &vary, ..parts }).unwrap();
        assert_eq!(primary.with_vary(&vary).unwrap(), again);
        assert!(primary.with_vary(&[("*", None)]).is_err());
        let scope = KeyScope {
            tenant: TenantId::new("acme").unwrap(),
            schema_version: SchemaVersion::new("1.8.3").unwrap(),
            contract_hash: ContractHash::from_digest([7; 32]),
            generation: Generation(9),
        };
        let deriver = KeyDeriver::new(&scope);
        assert_eq!(deriver.derive_with_vary(&primary, &vary).unwrap(), CacheKey::derive(&scope, &again));
        let unsorted = [("x-lang", Some("EN")), ("accept-encoding", Some("gzip"))];
        assert_eq!(
            deriver.derive_with_vary(&primary, &unsorted).unwrap(),
            deriver.derive(&primary.with_vary(&unsorted).unwrap())
        );
        assert!(deriver.derive_with_vary(&primary, &[("*", None::<&str>)]).is_err());
        assert!(deriver.derive_with_vary(&primary, &[("a", None::<&str>), ("A", None)]).is_err());
    }

    #[test]
    fn bad_paths() {
        assert_eq!(normalize_path("users"), Err(KeyError::PathNotAbsolute("\"users\"".into())));
        assert_eq!(normalize_path(""), Err(KeyError::PathNotAbsolute("\"\"".into())));
        assert_eq!(normalize_path("/a b"), Err(KeyError::InvalidByte { field: "path", offset: 2, byte: b' ' }));
        assert_eq!(normalize_path("/caf\u{e9}"), Err(KeyError::InvalidByte { field: "path", offset: 4, byte: 0xC3 }));
        assert_eq!(normalize_path("/a#frag"), Err(KeyError::InvalidByte { field: "path", offset: 2, byte: b'#' }));
        assert_eq!(normalize_path("/%zz"), Err(KeyError::BadPercentEncoding { field: "path", offset: 1 }));
        assert_eq!(normalize_path("/a?b=1"), Err(KeyError::InvalidByte { field: "path", offset: 2, byte: b'?' }));
        assert_eq!(normalize_path("/a%4"), Err(KeyError::BadPercentEncoding { field: "path", offset: 2 }));
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(
            normalize_path(&long),
            Err(KeyError::TooLong { field: "path", len: MAX_PATH_LEN + 1, max: MAX_PATH_LEN })
        );
    }

    #[test]
    fn queries() {
        let cases = [
            ("", ""),
            ("a=1", "a=1"),
            ("b=2&a=1", "a=1&b=2"),
            ("a=2&b=1&a=1", "a=2&a=1&b=1"),
            ("a=1&&b=2&", "a=1&b=2"),
            ("%61=%7e&%2a=1", "%2A=1&a=~"),
            ("q=a+b&q=a%20b", "q=a+b&q=a%20b"),
            ("flag&flag=", "flag&flag="),
            ("x=%26&y=%3d", "x=%26&y=%3D"),
            ("ids[]=1&ids[]=2", "ids[]=1&ids[]=2"),
            ("next=/a/../b?c", "next=/a/../b?c"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_query(input).unwrap(), expected, "query {input:?}");
        }
        assert_eq!(normalize_query("a=%G0"), Err(KeyError::BadPercentEncoding { field: "query", offset: 2 }));
    }

    proptest::proptest! {
        /// The query is its parameters, each percent-normalized, stably sorted by name, for
        /// any number of parameters (past the 16 tracked on the stack too).
        #[test]
        fn query_is_the_stably_sorted_parameters(
            params in proptest::collection::vec(("[a-c]{0,2}", proptest::option::of("[a-b%4Z1]{0,3}")), 0..40)
        ) {
            let raw: Vec<String> = params.iter().map(|(n, v)| match v {
                Some(v) => format!("{n}={}", v.replace('%', "%41")),
                None => n.clone(),
            }).collect();
            let query = raw.join("&");
            let mut model: Vec<String> = raw.iter().filter(|p| !p.is_empty()).map(|p| {
                let mut out = String::new();
                normalize_percent(p, &mut out);
                out
            }).collect();
            model.sort_by(|a, b| a.split('=').next().cmp(&b.split('=').next()));
            proptest::prop_assert_eq!(normalize_query(&query).unwrap(), model.join("&"));
        }
    }

    #[test]
    fn tchar_is_rfc_9110s() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), expected, "{b:#x}");
        }
    }

    #[test]
    fn vary_headers() {
        let v = normalize_vary(&[("Accept-Language", Some(" en ")), ("accept-encoding", None)]).unwrap();
        assert_eq!(v, vec![("accept-encoding".into(), None), ("accept-language".into(), Some("en".into()))]);
        assert_eq!(
            normalize_vary(&[("Accept", None), ("accept", Some("x"))]),
            Err(KeyError::DuplicateVary("accept".into()))
        );
        assert!(matches!(normalize_vary(&[("bad name", None)]), Err(KeyError::BadVaryName(_))));
        assert!(matches!(normalize_vary(&[("*", None)]), Err(KeyError::BadVaryName(_))));
        assert!(matches!(normalize_vary(&[("x", Some("a\r\nb"))]), Err(KeyError::InvalidByte { field: "vary", .. })));
    }

    fn scope(tenant: &str, generation: u64) -> KeyScope {
        KeyScope {
            tenant: TenantId::new(tenant).unwrap(),
            schema_version: SchemaVersion::new("1.8.2").unwrap(),
            contract_hash: ContractHash::from_digest([0x11; 32]),
            generation: Generation(generation),
        }
    }

    fn key(scope: &KeyScope, method: &str, path: &str, query: Option<&str>) -> CacheKey {
        let request = NormalizedRequest::new(&RequestParts { method, path, query, vary: &[] }).unwrap();
        CacheKey::derive(scope, &request)
    }

    #[test]
    fn every_scope_field_changes_the_key() {
        let base = scope("acme", 1);
        let k = key(&base, "GET", "/u", None);
        let mut other = base.clone();
        other.tenant = TenantId::new("acme2").unwrap();
        assert_ne!(k, key(&other, "GET", "/u", None));
        let mut other = base.clone();
        other.generation = Generation(2);
        assert_ne!(k, key(&other, "GET", "/u", None));
        let mut other = base.clone();
        other.schema_version = SchemaVersion::new("1.8.3").unwrap();
        assert_ne!(k, key(&other, "GET", "/u", None));
        let mut other = base.clone();
        other.contract_hash = ContractHash::from_digest([0x12; 32]);
        assert_ne!(k, key(&other, "GET", "/u", None));
        assert_ne!(k, key(&base, "HEAD", "/u", None));
        assert_ne!(k, key(&base, "GET", "/u", Some("a=1")));
        // Equivalent spellings share a key.
        assert_eq!(key(&base, "GET", "/x/../u", Some("")), k);
        assert_eq!(key(&base, "GET", "/%75", None), k);
    }

    #[test]
    fn key_shows_as_64_lower_hex() {
        let hex = key(&scope("acme", 1), "GET", "/", None).to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
}

//! Freshness (RFC 9111 §4.2) and storability (§3) of origin responses, as the edge computes
//! them once when it stores a response and then on every reuse: which field sets the edge's
//! lifetime, the corrected initial age of §4.2.3, how long stale serving is allowed, and how
//! long the platform keeps the object.
//!
//! Lifetime precedence: `Surrogate-Control` (Fastly's convention) and `CDN-Cache-Control`
//! (RFC 9213) replace `Cache-Control` entirely when present; then `s-maxage`, `max-age`,
//! `Expires` minus `Date`. Heuristic freshness only when the tenant opts in.

use crate::fields::{Directives, Headers, delta_seconds, parse_http_date, parse_targeted};

/// Statuses an edge may store with heuristic freshness (RFC 9110 §15.1), used only when the
/// tenant opts into heuristics.
const HEURISTIC_STATUSES: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];
/// Upper bound of any heuristic lifetime (one day).
const MAX_HEURISTIC_SECS: u64 = 86_400;
/// How long an object with validators is kept past its stale windows, so a later request can
/// revalidate it (304) instead of refetching the body.
pub const REVALIDATION_KEEP_SECS: u64 = 3_600;
/// How long any object is kept past its lifetime and stale windows, so a client's
/// `max-stale` can still be honoured.
pub const STALE_KEEP_SECS: u64 = 60;
/// Upper bound of how long the platform keeps any object (one year).
const MAX_KEEP_SECS: u64 = 365 * 86_400;

/// Errors a client can provoke with the parts of its request that are not keyed (oversized or
/// malformed headers, meta characters, method overrides, a body: the CPDoS attacks), or that
/// an origin answers for one client's sake (403 from a WAF or an IP rule, 406 from content
/// negotiation on a field the response does not `Vary` on, 429 for this client's rate):
/// never stored, whatever their freshness, so one client's request is never every client's
/// answer for the URL.
pub const REQUEST_ERROR_STATUSES: [u16; 12] = [400, 403, 406, 408, 411, 413, 417, 421, 429, 431, 494, 500];

/// Statuses whose caching rules the edge implements, for `must-understand` (RFC 9111 §5.2.2.3).
const UNDERSTOOD_STATUSES: [u16; 17] =
    [200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 404, 405, 410, 414, 500, 501, 502];

/// The cache directives that govern the edge's storage of a response: the targeted field
/// (`Surrogate-Control`, else a valid `CDN-Cache-Control`) when present, else `Cache-Control`.
pub fn effective_directives(headers: &Headers) -> (Directives, bool) {
    if let Some(d) = Directives::of(headers, "surrogate-control") {
        return (d, true);
    }
    if let Some(d) = headers.combined("cdn-cache-control").and_then(|v| parse_targeted(&v)) {
        return (d, true);
    }
    (Directives::of(headers, "cache-control").unwrap_or_default(), false)
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// `no-store` (any line, any governing field).
    NoStore,
    /// `private` (a shared cache never stores it).
    Private,
    /// Not a final status, or 206 (partial content is never stored).
    Status,
    /// No explicit freshness (and no opted-in heuristic).
    NoFreshness,
    /// An error the request itself can provoke ([`REQUEST_ERROR_STATUSES`]; deliberate).
    RequestError,
    /// `Set-Cookie`: one client's session is never stored for others (deliberate).
    SetCookie,
    /// An authenticated request without `public`, `s-maxage` or `must-revalidate` (§3.5).
    Credentials,
    /// `Vary: *`: no later request can be known to match.
    VaryStar,
}

/// The timing an object is stored with; enough to compute its age and freshness on reuse
/// without re-reading fields the edge strips (`Surrogate-Control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When the response was received, Unix ms.
    pub response_time_ms: u64,
    /// §4.2.3 corrected initial age, seconds.
    pub initial_age: u64,
    /// Freshness lifetime, seconds (0: stale on arrival, reuse only after validation).
    pub lifetime: u64,
    /// `stale-while-revalidate` window, seconds.
    pub stale_while_revalidate: u64,
    /// `stale-if-error` window, seconds.
    pub stale_if_error: u64,
    /// `no-cache`: every reuse needs validation.
    pub no_cache: bool,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served stale.
    pub must_revalidate: bool,
}

impl Timing {
    /// Current age at `now_ms` (§4.2.3), seconds.
    pub fn current_age(&self, now_ms: u64) -> u64 {
        self.initial_age.saturating_add(now_ms.saturating_sub(self.response_time_ms) / 1000)
    }

    /// Whether the object is fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.lifetime > self.current_age(now_ms)
    }

    /// Seconds past its lifetime at `now_ms` (0 while fresh).
    pub fn staleness(&self, now_ms: u64) -> u64 {
        self.current_age(now_ms).saturating_sub(self.lifetime)
    }

    /// Whether a stale object may be served while it is refreshed in the background.
    pub fn within_stale_while_revalidate(&self, now_ms: u64) -> bool {
        !self.no_cache
            && !self.must_revalidate
            && self.staleness(now_ms) <= self.stale_while_revalidate
            && self.stale_while_revalidate > 0
    }

    /// Whether a stale object may be served because the origin failed; `request_window` is
    /// the client's own `stale-if-error`, if any.
    pub fn within_stale_if_error(&self, now_ms: u64, request_window: Option<u64>) -> bool {
        let window = self.stale_if_error.max(request_window.unwrap_or(0));
        !self.no_cache && !self.must_revalidate && window > 0 && self.staleness(now_ms) <= window
    }

    /// How long the platform should keep the object from now: its remaining lifetime, the
    /// stale windows, and a revalidation allowance when it has validators.
    pub fn keep_secs(&self, now_ms: u64, has_validators: bool) -> u64 {
        let remaining = self.lifetime.saturating_sub(self.current_age(now_ms));
        let stale = self.stale_while_revalidate.max(self.stale_if_error);
        let revalidation = if has_validators { REVALIDATION_KEEP_SECS } else { STALE_KEEP_SECS };
        remaining.saturating_add(stale).saturating_add(revalidation).clamp(1, MAX_KEEP_SECS)
    }
}

/// What the edge needs from the request/response exchange to judge a response.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// When the request was sent to the origin, Unix ms.
    pub request_time_ms: u64,
    /// When the response arrived, Unix ms.
    pub response_time_ms: u64,
    /// The request carried `Authorization`.
    pub authorized: bool,
    /// The tenant opted into heuristic freshness.
    pub heuristics: bool,
}

/// §4.2.3: the corrected initial age of a response, seconds.
pub fn initial_age(headers: &Headers, ex: &Exchange) -> u64 {
    let response_secs = ex.response_time_ms / 1000;
    let date = headers.get("date").and_then(parse_http_date);
    let apparent_age = date.map_or(0, |d| response_secs.saturating_sub(d));
    // The first line's first member: `Age: 7200, 0` is 7200 (an old response), not 0.
    let age_value = headers.get("age").and_then(|v| v.split(',').next()).and_then(delta_seconds).unwrap_or(0);
    let response_delay = ex.response_time_ms.saturating_sub(ex.request_time_ms) / 1000;
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// The freshness lifetime of a response, seconds, and whether it was explicit. `None` when
/// neither explicit nor (opted-in) heuristic freshness applies.
fn lifetime(status: u16, headers: &Headers, d: &Directives, targeted: bool, ex: &Exchange) -> Option<(u64, bool)> {
    if targeted && let Some(max_age) = d.max_age {
        return Some((max_age.unwrap_or(0), true));
    }
    if let Some(s) = d.s_maxage {
        return Some((s.unwrap_or(0), true));
    }
    if let Some(m) = d.max_age {
        return Some((m.unwrap_or(0), true));
    }
    if headers.contains("expires") {
        // An invalid Expires (or several) means already expired (§5.3).
        let expires = (headers.count("expires") == 1).then(|| headers.get("expires").and_then(parse_http_date));
        let date = headers.get("date").and_then(parse_http_date).unwrap_or(ex.response_time_ms / 1000);
        return Some((expires.flatten().map_or(0, |e| e.saturating_sub(date)), true));
    }
    let heuristic_ok = ex.heuristics && (HEURISTIC_STATUSES.contains(&status) || d.public) && status != 206;
    if heuristic_ok && let Some(lm) = headers.get("last-modified").and_then(parse_http_date) {
        let date = headers.get("date").and_then(parse_http_date).unwrap_or(ex.response_time_ms / 1000);
        return Some(((date.saturating_sub(lm) / 10).min(MAX_HEURISTIC_SECS), false));
    }
    None
}

/// Judges a response to a GET for storage: its [`Timing`] if the edge may store it.
///
/// # Errors
/// [`NotStored`] naming the rule that forbids storing it.
pub fn storable(status: u16, headers: &Headers, ex: &Exchange) -> Result<Timing, NotStored> {
    let (d, targeted) = effective_directives(headers);
    let cc = if targeted { Directives::of(headers, "cache-control").unwrap_or_default() } else { d.clone() };
    // `must-understand` overrides `no-store` for statuses whose rules the edge implements,
    // and forbids storing any other.
    if d.must_understand && !targeted {
        if !UNDERSTOOD_STATUSES.contains(&status) {
            return Err(NotStored::Status);
        }
    } else if d.no_store {
        return Err(NotStored::NoStore);
    }
    if d.private {
        return Err(NotStored::Private);
    }
    if !(200..=599).contains(&status) || status == 206 || status == 304 {
        return Err(NotStored::Status);
    }
    if REQUEST_ERROR_STATUSES.contains(&status) {
        return Err(NotStored::RequestError);
    }
    if headers.contains("set-cookie") {
        return Err(NotStored::SetCookie);
    }
    if ex.authorized && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStored::Credentials);
    }
    if headers.tokens("vary").iter().any(|v| v == "*") {
        return Err(NotStored::VaryStar);
    }
    // A `no-cache` response with validators is kept stale-on-arrival: every reuse
    // revalidates it, and a 304 saves the body transfer.
    let validators = headers.contains("etag") || headers.contains("last-modified");
    let lifetime = match lifetime(status, headers, &d, targeted, ex) {
        Some((lifetime, _explicit)) => lifetime,
        None if d.no_cache && validators => 0,
        None => return Err(NotStored::NoFreshness),
    };
    Ok(Timing {
        response_time_ms: ex.response_time_ms,
        initial_age: initial_age(headers, ex),
        lifetime,
        stale_while_revalidate: d.stale_while_revalidate.unwrap_or(0),
        stale_if_error: d.stale_if_error.unwrap_or(0),
        no_cache: d.no_cache || cc.no_cache,
        must_revalidate: d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::format_http_date;

    const NOW: u64 = 1_790_000_000_000;

    fn ex() -> Exchange {
        Exchange { request_time_ms: NOW, response_time_ms: NOW, authorized: false, heuristics: false }
    }

    fn h(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.append(n, v.as_bytes());
        }
        h
    }

    fn life(lines: &[(&str, &str)]) -> Result<u64, NotStored> {
        storable(200, &h(lines), &ex()).map(|t| t.lifetime)
    }

    #[test]
    fn lifetime_precedence() {
        let date = format_http_date(NOW / 1000);
        let in_100 = format_http_date(NOW / 1000 + 100);
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<u64, NotStored>);
        let cases: Vec<Case<'_>> = vec![
            (vec![("cache-control", "max-age=60")], Ok(60)),
            (vec![("cache-control", "max-age=60, s-maxage=5")], Ok(5)),
            (vec![("cache-control", "max-age=60"), ("cdn-cache-control", "max-age=7")], Ok(7)),
            (vec![("cdn-cache-control", "max-age=7"), ("surrogate-control", "max-age=9")], Ok(9)),
            (vec![("cache-control", "private"), ("cdn-cache-control", "max-age=7")], Ok(7)),
            (vec![("cache-control", "max-age=60"), ("cdn-cache-control", "no-store")], Err(NotStored::NoStore)),
            (vec![("date", &date), ("expires", &in_100)], Ok(100)),
            (vec![("date", &date), ("expires", "0")], Ok(0)),
            (vec![("expires", &in_100), ("cache-control", "max-age=5")], Ok(5)),
            (vec![("cache-control", "max-age=60"), ("cache-control", "private")], Err(NotStored::Private)),
            (vec![("cache-control", "max-age=60"), ("cache-control", "no-store")], Err(NotStored::NoStore)),
            (vec![("cache-control", "public")], Err(NotStored::NoFreshness)),
            (vec![("last-modified", &date)], Err(NotStored::NoFreshness)),
            (vec![("cache-control", "max-age=60"), ("vary", "a"), ("vary", "*")], Err(NotStored::VaryStar)),
            (vec![("cache-control", "max-age=60"), ("set-cookie", "a=b")], Err(NotStored::SetCookie)),
        ];
        for (lines, expected) in cases {
            assert_eq!(life(&lines), expected, "{lines:?}");
        }
    }

    #[test]
    fn statuses() {
        let lines = h(&[("cache-control", "max-age=60")]);
        for status in [200, 203, 204, 299, 301, 302, 404, 410, 501, 502, 503, 599] {
            assert!(storable(status, &lines, &ex()).is_ok(), "{status}");
        }
        for status in [100, 206, 304, 600] {
            assert_eq!(storable(status, &lines, &ex()), Err(NotStored::Status), "{status}");
        }
        // CPDoS: errors an unkeyed part of the request can provoke, even when the origin
        // (or a blanket header rule) marks them fresh.
        let blanket = h(&[("cache-control", "public, max-age=31536000"), ("surrogate-control", "max-age=3600")]);
        for status in REQUEST_ERROR_STATUSES {
            assert_eq!(storable(status, &lines, &ex()), Err(NotStored::RequestError), "{status}");
            assert_eq!(storable(status, &blanket, &ex()), Err(NotStored::RequestError), "{status}");
        }
    }

    #[test]
    fn must_understand_and_invalid_targeted_fields() {
        let mu = h(&[("cache-control", "must-understand, no-store, max-age=60")]);
        assert!(storable(200, &mu, &ex()).is_ok());
        assert_eq!(storable(599, &mu, &ex()), Err(NotStored::Status));
        let invalid = h(&[("cdn-cache-control", "max-age=10000, &&&&&"), ("cache-control", "no-store")]);
        assert_eq!(storable(200, &invalid, &ex()), Err(NotStored::NoStore), "an invalid CDN-Cache-Control is ignored");
    }

    #[test]
    fn heuristics_only_when_opted_in() {
        let lines =
            h(&[("date", &format_http_date(NOW / 1000)), ("last-modified", &format_http_date(NOW / 1000 - 1000))]);
        assert_eq!(storable(200, &lines, &ex()), Err(NotStored::NoFreshness));
        let t = storable(200, &lines, &Exchange { heuristics: true, ..ex() }).unwrap();
        assert_eq!(t.lifetime, 100);
    }

    #[test]
    fn credentials_need_an_explicit_shared_permission() {
        let auth = Exchange { authorized: true, ..ex() };
        assert_eq!(storable(200, &h(&[("cache-control", "max-age=60")]), &auth), Err(NotStored::Credentials));
        for cc in ["public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"] {
            assert!(storable(200, &h(&[("cache-control", cc)]), &auth).is_ok(), "{cc}");
        }
    }

    #[test]
    fn age_arithmetic() {
        // The origin's Age counts; so does the time the response took.
        let lines = h(&[("cache-control", "max-age=100"), ("age", "50"), ("date", &format_http_date(NOW / 1000))]);
        let t = storable(200, &lines, &Exchange { request_time_ms: NOW - 2000, ..ex() }).unwrap();
        assert_eq!(t.initial_age, 52);
        assert_eq!(t.current_age(NOW + 10_000), 62);
        assert!(t.is_fresh(NOW + 47_000) && !t.is_fresh(NOW + 48_000));
        // An apparent age from an old Date wins over a smaller Age.
        let old = h(&[("cache-control", "max-age=100"), ("date", &format_http_date(NOW / 1000 - 30))]);
        assert_eq!(storable(200, &old, &ex()).unwrap().initial_age, 30);
        let listed = h(&[("cache-control", "max-age=100"), ("age", "7200, 0")]);
        assert_eq!(storable(200, &listed, &ex()).unwrap().initial_age, 7200);
        for bad in ["-1", "abc", "1.5"] {
            let lines = h(&[("cache-control", "max-age=100"), ("age", bad)]);
            assert_eq!(storable(200, &lines, &ex()).unwrap().initial_age, 0, "{bad}");
        }
    }

    #[test]
    fn stale_windows() {
        let t =
            storable(200, &h(&[("cache-control", "max-age=1, stale-while-revalidate=10, stale-if-error=20")]), &ex())
                .unwrap();
        assert!(t.within_stale_while_revalidate(NOW + 5_000));
        assert!(!t.within_stale_while_revalidate(NOW + 12_000));
        assert!(t.within_stale_if_error(NOW + 12_000, None));
        assert!(!t.within_stale_if_error(NOW + 22_000, None));
        assert!(t.within_stale_if_error(NOW + 22_000, Some(60)));
        for cc in [
            "max-age=1, stale-if-error=20, must-revalidate",
            "max-age=1, stale-if-error=20, no-cache",
            "s-maxage=1, stale-if-error=20",
            "max-age=1, stale-if-error=20, proxy-revalidate",
        ] {
            let t = storable(200, &h(&[("cache-control", cc)]), &ex()).unwrap();
            assert!(!t.within_stale_if_error(NOW + 5_000, None), "{cc}");
        }
        assert_eq!(t.keep_secs(NOW, true), 1 + 20 + REVALIDATION_KEEP_SECS);
        assert_eq!(t.keep_secs(NOW, false), 1 + 20 + STALE_KEEP_SECS);
    }
}

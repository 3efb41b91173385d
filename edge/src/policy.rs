//! What may be cached: requests (method, credentials) and responses (status, directives).

/// Statuses whose responses may be stored (RFC 9111 heuristically cacheable, minus those
/// that need more care than a multi-tenant edge should take).
const STORABLE_STATUSES: [u16; 6] = [200, 203, 204, 301, 404, 410];

/// Whether a request may be answered from, and stored in, the cache: GET or HEAD, and no
/// credentials unless the tenant allows caching credentialed requests.
pub fn request_cacheable(method: &str, has_authorization: bool, has_cookie: bool, credentials_allowed: bool) -> bool {
    matches!(method, "GET" | "HEAD") && (credentials_allowed || (!has_authorization && !has_cookie))
}

/// How long a response may be stored, in seconds, or `None` if it must not be stored:
/// status in [`STORABLE_STATUSES`], no `Set-Cookie`, no `Vary` (the edge keys no request
/// headers yet, so a varying response would be served to requests it does not fit), no
/// `private`/`no-store`/`no-cache`, and a positive `s-maxage` (preferred) or `max-age`.
pub fn response_ttl_secs(
    status: u16,
    cache_control: Option<&str>,
    has_set_cookie: bool,
    vary: Option<&str>,
) -> Option<u64> {
    if !STORABLE_STATUSES.contains(&status) || has_set_cookie || vary.is_some_and(|v| !v.trim().is_empty()) {
        return None;
    }
    let (mut max_age, mut s_maxage) = (None, None);
    for directive in cache_control?.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "private" | "no-store" | "no-cache" => return None,
            "max-age" => max_age = value.and_then(|v| v.parse::<u64>().ok()),
            "s-maxage" => s_maxage = value.and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    s_maxage.or(max_age).filter(|ttl| *ttl > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert!(request_cacheable("GET", false, false, false));
        assert!(request_cacheable("HEAD", false, false, false));
        assert!(!request_cacheable("POST", false, false, true));
        assert!(!request_cacheable("GET", true, false, false));
        assert!(!request_cacheable("GET", false, true, false));
        assert!(request_cacheable("GET", true, true, true));
    }

    #[test]
    fn responses() {
        let cases: [(u16, Option<&str>, bool, Option<u64>); 14] = [
            (200, Some("public, max-age=60"), false, Some(60)),
            (200, Some("max-age=60, s-maxage=5"), false, Some(5)),
            (404, Some("max-age=10"), false, Some(10)),
            (301, Some("S-MAXAGE=\"30\""), false, Some(30)),
            (200, None, false, None),
            (200, Some("max-age=0"), false, None),
            (200, Some("public"), false, None),
            (200, Some("max-age=60, private"), false, None),
            (200, Some("no-store, max-age=60"), false, None),
            (200, Some("no-cache, max-age=60"), false, None),
            (200, Some("max-age=60"), true, None),
            (500, Some("max-age=60"), false, None),
            (503, Some("max-age=60"), false, None),
            (302, Some("max-age=60"), false, None),
        ];
        for (status, cc, cookie, expected) in cases {
            assert_eq!(response_ttl_secs(status, cc, cookie, None), expected, "{status} {cc:?} set-cookie={cookie}");
        }
        assert_eq!(response_ttl_secs(200, Some("max-age=60"), false, Some("Accept-Encoding")), None);
        assert_eq!(response_ttl_secs(200, Some("max-age=60"), false, Some(" ")), Some(60));
    }
}

//! HTTP fields as the cache reads them: an ordered, case-insensitive header list
//! ([`Headers`]) whose list-valued fields are always read whole — every field line joined
//! with `", "` (RFC 9110 §5.3) — and the parsers built on it: cache directives
//! ([`Directives`], for `Cache-Control`, `Surrogate-Control`, `CDN-Cache-Control`), list
//! tokens (`Vary`, `Connection`, `Pragma`), HTTP dates and hop-by-hop hygiene.
//!
//! Reading only the first field line is how a `Cache-Control: private` on a second line gets
//! ignored; nothing in the edge reads a list-valued field any other way than through
//! [`Headers::combined`].

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An ordered list of header field lines; names are kept lower-case (the common ones as
/// static strings, see [`field_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, Vec<u8>)>);

/// Field names common enough on the HIT path (request, stored head, what the edge sets) to be
/// kept without a copy of their own.
const COMMON_NAMES: [&str; 26] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "authorization",
    "cache-control",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expires",
    "host",
    "if-modified-since",
    "if-none-match",
    "last-modified",
    "location",
    "range",
    "server",
    "strict-transport-security",
    "user-agent",
    "vary",
    "x-content-type-options",
];

/// `name` in lower case: a common name as its static spelling (no allocation), any other
/// as a lower-cased copy.
fn field_name(name: &str) -> Cow<'static, str> {
    // Names usually arrive lower case (HTTP/2, stored heads, the edge's own): an exact
    // comparison first, the case-insensitive one only when needed.
    let lower = !name.bytes().any(|b| b.is_ascii_uppercase());
    let common = if lower {
        COMMON_NAMES.iter().find(|c| **c == name)
    } else {
        COMMON_NAMES.iter().find(|c| c.len() == name.len() && c.eq_ignore_ascii_case(name))
    };
    match common {
        Some(common) => Cow::Borrowed(common),
        None if lower => Cow::Owned(name.to_owned()),
        None => Cow::Owned(name.to_ascii_lowercase()),
    }
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// An empty list with room for `n` lines.
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }

    /// Appends a field line (the name is lower-cased).
    pub fn append(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.0.push((field_name(name), value.into()));
    }

    /// Replaces every line of `name` by one line.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Keeps only the lines for which `keep(name)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// Whether any line of `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// How many lines `name` has.
    pub fn count(&self, name: &str) -> usize {
        self.all(name).count()
    }

    /// Every line of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The first line of a singleton field (`Date`, `ETag`, `Age`...), as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (_, v) = self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(v).ok().map(str::trim)
    }

    /// The whole value of a list-valued field: every line joined with `", "` (RFC 9110 §5.3).
    /// `None` when the field is absent.
    pub fn combined(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut lines = self.0.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice());
        let first = lines.next()?;
        let mut rest = lines.peekable();
        if rest.peek().is_none() {
            // The common case, one line: borrowed, no allocation.
            return Some(String::from_utf8_lossy(first));
        }
        let mut out = String::from_utf8_lossy(first).into_owned();
        for line in rest {
            out.push_str(", ");
            out.push_str(&String::from_utf8_lossy(line));
        }
        Some(Cow::Owned(out))
    }

    /// The comma-separated members of a list-valued field across all its lines, trimmed,
    /// lower-cased, empty members dropped.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.combined(name).map(|v| split_list(&v).map(str::to_ascii_lowercase).collect()).unwrap_or_default()
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_slice()))
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Vec<u8>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(mut n, v)| {
                    let name = field_name(&n);
                    if let Cow::Owned(_) = name {
                        // Reuse the caller's copy rather than keep a second one.
                        n.make_ascii_lowercase();
                        return (Cow::Owned(n), v);
                    }
                    (name, v)
                })
                .collect(),
        )
    }
}

/// Splits a list value on commas outside quoted strings; members trimmed, empty ones dropped.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    ListMembers { rest: value, done: false }.map(str::trim).filter(|p| !p.is_empty())
}

/// The members of a list value, without allocating.
struct ListMembers<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Iterator for ListMembers<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in self.rest.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    let member = &self.rest[..i];
                    self.rest = &self.rest[i + 1..];
                    return Some(member);
                }
                _ => {}
            }
        }
        self.done = true;
        Some(self.rest)
    }
}

/// `n` in decimal, as a header value (no formatting machinery on the HIT path).
pub fn decimal(mut n: u64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].to_vec()
}

/// Hop-by-hop fields (RFC 9110 §7.6.1): meaningful for one connection only, so neither
/// stored nor forwarded. Fields that `Connection` nominates are treated the same way.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop fields and every field `Connection` nominates.
pub fn strip_hop_by_hop(headers: &mut Headers) {
    let nominated = headers.tokens("connection");
    headers.retain(|n| !HOP_BY_HOP.contains(&n) && !nominated.iter().any(|t| t == n));
}

/// A delta-seconds value (RFC 9111 §1.2.2): digits only; too large saturates at 2^31.
pub fn delta_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// Parsed cache directives of one field (`Cache-Control`, `Surrogate-Control`,
/// `CDN-Cache-Control`), read from its combined value. For a directive given twice, the first
/// occurrence counts (RFC 9111 §4.2.1 allows "use the first"); an argument that is not a
/// valid delta-seconds makes that directive count as present but invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age`: `Some(None)` when present with an invalid value.
    pub max_age: Option<Option<u64>>,
    /// `s-maxage`.
    pub s_maxage: Option<Option<u64>>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
    /// `max-stale` (request): `Some(None)` means any staleness.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh` (request).
    pub min_fresh: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// Unqualified `no-cache`: revalidate before every reuse.
    pub no_cache: bool,
    /// Unqualified `private`: a shared cache never stores it.
    pub private: bool,
    /// Field names of qualified `no-cache="..."` and `private="..."`: the response may be
    /// stored, without these fields.
    pub qualified_fields: Vec<String>,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `must-understand`.
    pub must_understand: bool,
}

impl Directives {
    /// Parses a combined directive list; unknown directives are ignored.
    pub fn parse(value: &str) -> Directives {
        let mut d = Directives::default();
        for member in split_list(value) {
            let (name, arg) = match member.split_once('=') {
                Some((n, a)) => (n, Some(a)),
                None => (member, None),
            };
            // `max-age =60` is not the directive max-age (no whitespace around `=`).
            if name != name.trim_end() || arg.is_some_and(|a| a != a.trim_start()) {
                continue;
            }
            let number = || arg.and_then(unquote).and_then(|a| delta_seconds(&a));
            match name.to_ascii_lowercase().as_str() {
                "max-age" if d.max_age.is_none() => d.max_age = Some(number()),
                "s-maxage" if d.s_maxage.is_none() => d.s_maxage = Some(number()),
                "stale-while-revalidate" if d.stale_while_revalidate.is_none() => d.stale_while_revalidate = number(),
                "stale-if-error" if d.stale_if_error.is_none() => d.stale_if_error = number(),
                "max-stale" if d.max_stale.is_none() => d.max_stale = Some(number()),
                "min-fresh" if d.min_fresh.is_none() => d.min_fresh = number(),
                "no-store" => d.no_store = true,
                "no-cache" | "private" => match arg.and_then(unquote) {
                    Some(fields) => {
                        d.qualified_fields.extend(split_list(&fields).map(str::to_ascii_lowercase));
                    }
                    None if name.eq_ignore_ascii_case("no-cache") => d.no_cache = true,
                    None => d.private = true,
                },
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "only-if-cached" => d.only_if_cached = true,
                "no-transform" => d.no_transform = true,
                "must-understand" => d.must_understand = true,
                _ => {}
            }
        }
        d
    }

    /// The directives of `name` in `headers`, all lines combined.
    pub fn of(headers: &Headers, name: &str) -> Option<Directives> {
        headers.combined(name).map(|v| Directives::parse(&v))
    }
}

/// Parses a targeted field (`CDN-Cache-Control`, RFC 9213) as the Structured Field
/// Dictionary it is (RFC 8941): `None` — ignore the whole field — when it is not a valid
/// dictionary or a known directive has the wrong type (a quoted `max-age`, a valued
/// `no-store`).
pub fn parse_targeted(value: &str) -> Option<Directives> {
    let mut d = Directives::default();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        // Parameters (`;a=b`) are allowed and ignored.
        let item = member.split(';').next().unwrap_or("");
        let (key, val) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*'));
        if !key_ok {
            return None;
        }
        let integer = match val {
            Some(v) if !v.is_empty() && v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit()) => {
                Some(v.parse::<u64>().ok()?)
            }
            _ => None,
        };
        let boolean = matches!(val, None | Some("?1"));
        if let Some(v) = val
            && integer.is_none()
            && !sf_bare_item(v)
        {
            return None;
        }
        let first = |slot: &Option<Option<u64>>| slot.is_none();
        match key {
            "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error" if integer.is_none() => return None,
            "no-store" | "no-cache" | "private" | "public" | "must-revalidate" | "proxy-revalidate"
                if val.is_some() && !boolean =>
            {
                return None;
            }
            "max-age" if first(&d.max_age) => d.max_age = Some(integer),
            "s-maxage" if first(&d.s_maxage) => d.s_maxage = Some(integer),
            "stale-while-revalidate" => d.stale_while_revalidate = d.stale_while_revalidate.or(integer),
            "stale-if-error" => d.stale_if_error = d.stale_if_error.or(integer),
            "no-store" => d.no_store = true,
            "no-cache" => d.no_cache = true,
            "private" => d.private = true,
            "public" => d.public = true,
            "must-revalidate" => d.must_revalidate = true,
            "proxy-revalidate" => d.proxy_revalidate = true,
            _ => {}
        }
    }
    Some(d)
}

/// Whether `v` is an RFC 8941 bare item: integer/decimal, string, token, byte sequence or
/// boolean.
fn sf_bare_item(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        None => false,
        Some(b'"') => v.len() >= 2 && v.ends_with('"') && v[1..v.len() - 1].bytes().all(|c| (0x20..0x7f).contains(&c)),
        Some(b':') => v.len() >= 2 && v.ends_with(':'),
        Some(b'?') => matches!(v, "?0" | "?1"),
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let digits = v.trim_start_matches('-');
            !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => {
            b.iter().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c))
        }
        _ => false,
    }
}

/// A directive argument: a token, or a double-quoted string (RFC 9110 §5.6.4). Single
/// quotes are not quotes.
fn unquote(arg: &str) -> Option<String> {
    match arg.strip_prefix('"') {
        None => Some(arg.to_owned()),
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                match c {
                    '\\' if !escaped => escaped = true,
                    c => {
                        out.push(c);
                        escaped = false;
                    }
                }
            }
            Some(out)
        }
    }
}

/// Parses an HTTP date (IMF-fixdate, RFC 850 or asctime) into Unix seconds.
/// Names in the wrong case (`sun, 06 nov 1994 08:49:37 gmt`) are accepted, as most caches do.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let value = value.trim();
    let t = httpdate::parse_http_date(value).ok().or_else(|| {
        let mut fixed = String::with_capacity(value.len());
        let mut word_start = true;
        for c in value.chars() {
            fixed.push(if word_start { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
            word_start = !c.is_ascii_alphabetic();
        }
        httpdate::parse_http_date(&fixed.replace("Gmt", "GMT")).ok()
    })?;
    Some(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Formats Unix seconds as an IMF-fixdate.
pub fn format_http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.append(n, v.as_bytes());
        }
        h
    }

    #[test]
    fn names_are_lower_case_whether_common_or_not() {
        assert!(matches!(field_name("Content-Type"), Cow::Borrowed("content-type")));
        assert_eq!(field_name("X-Custom-Thing"), "x-custom-thing");
        let h: Headers = [("ETag".to_owned(), b"1".to_vec()), ("X-A".to_owned(), b"2".to_vec())].into_iter().collect();
        assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["etag", "x-a"]);
        assert_eq!(h.get("etag"), Some("1"));
    }

    #[test]
    fn list_fields_are_read_whole() {
        let h = headers(&[("Cache-Control", "max-age=3600"), ("cache-control", "private")]);
        assert_eq!(h.combined("cache-control").as_deref(), Some("max-age=3600, private"));
        let d = Directives::of(&h, "Cache-Control").unwrap();
        assert!(d.private, "a private on a later line wins");
        assert_eq!(d.max_age, Some(Some(3600)));
        let v = headers(&[("vary", "Accept"), ("Vary", "Accept-Encoding, , X-Foo")]);
        assert_eq!(v.tokens("vary"), ["accept", "accept-encoding", "x-foo"]);
        assert_eq!(Headers::new().combined("vary"), None);
        assert_eq!(h.combined("CACHE-CONTROL").as_deref(), Some("max-age=3600, private"));
        assert!(v.combined("content-type").is_none());
        assert!(matches!(headers(&[("a", "x")]).combined("a"), Some(Cow::Borrowed("x"))));
    }

    #[test]
    fn directive_parsing() {
        let check = |value: &str, max_age: Option<Option<u64>>| {
            assert_eq!(Directives::parse(value).max_age, max_age, "{value:?}");
        };
        check("max-age=60", Some(Some(60)));
        check("MAX-AGE=60", Some(Some(60)));
        check("max-age=\"60\"", Some(Some(60)));
        check("max-age='60'", Some(None));
        check("max-age=003600", Some(Some(3600)));
        check("max-age=3600.0", Some(None));
        check("max-age=a100", Some(None));
        check("max-age=60, max-age=0", Some(Some(60)));
        check("foo=\"max-age=1, x\", max-age=60", Some(Some(60)));
        check("max-age =60", None);
        check("max-age= 60", None);
        check("max-age=99999999999999999999", Some(Some(1 << 31)));
        let d = Directives::parse("no-cache=\"Set-Cookie, x\", stale-while-revalidate=30, stale-if-error=60");
        assert!(!d.no_cache && !d.no_store, "a qualified no-cache only names fields");
        assert_eq!(d.qualified_fields, ["set-cookie", "x"]);
        assert!(
            Directives::parse("private=\"a\"").qualified_fields == ["a"] && !Directives::parse("private=\"a\"").private
        );
        assert_eq!((d.stale_while_revalidate, d.stale_if_error), (Some(30), Some(60)));
        let r = Directives::parse("max-stale, min-fresh=5, only-if-cached");
        assert_eq!((r.max_stale, r.min_fresh, r.only_if_cached), (Some(None), Some(5), true));
    }

    #[test]
    fn targeted_fields_are_structured_dictionaries() {
        assert_eq!(
            parse_targeted("max-age=60, stale-if-error=5").map(|d| (d.max_age, d.stale_if_error)),
            Some((Some(Some(60)), Some(5)))
        );
        assert!(parse_targeted("no-store").is_some_and(|d| d.no_store));
        assert!(parse_targeted("max-age=60;foo=bar, x=\"y\", t=tok, b=?1").is_some());
        for invalid in
            ["max-age=10000, &&&&&", "max-age=\"10000\"", "Max-Age=10", "max-age=1.5", "no-store=3", "max-age= 5"]
        {
            assert_eq!(parse_targeted(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn hop_by_hop_and_nominated_fields_go() {
        let mut h = headers(&[
            ("connection", "X-Secret, close"),
            ("Connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["content-type"]);
    }

    #[test]
    fn list_members_and_decimals() {
        let members: Vec<&str> = split_list(" a, \"b,c\" ,,d=\"x\\\",y\", ").collect();
        assert_eq!(members, ["a", "\"b,c\"", "d=\"x\\\",y\""]);
        assert_eq!(split_list("").count(), 0);
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(decimal(n), n.to_string().into_bytes());
        }
    }

    #[test]
    fn dates_and_deltas() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(parse_http_date("sun, 06 NOV 1994 08:49:37 gmt"), Some(784_111_777));
        assert_eq!(parse_http_date("0"), None);
        assert_eq!(format_http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(delta_seconds("10"), Some(10));
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(delta_seconds("1.5"), None);
    }
}

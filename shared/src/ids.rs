//! Validated identifiers. Every value that names a tenant, a version or a release is parsed
//! once, at the boundary, into one of these types; code behind the boundary never re-checks.
//!
//! Each type's canonical text form is what keys, manifests and URLs use, so the parsers
//! reject every non-canonical spelling (upper-case hex, leading zeros, surrounding space)
//! instead of normalizing it: two spellings of one value would otherwise be two keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that broke a field's rule. Names the field, the rule and (a preview of) the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule} (got {value})")]
pub struct InvalidField {
    /// The field that was being parsed, e.g. `tenant`.
    pub field: &'static str,
    /// The rule the value broke, as a sentence fragment.
    pub rule: &'static str,
    /// The offending value, quoted; values over 64 bytes are shortened for display only.
    pub value: String,
}

impl InvalidField {
    pub(crate) fn new(field: &'static str, rule: &'static str, value: &str) -> Self {
        InvalidField { field, rule, value: preview(value) }
    }
}

/// Quotes `value` for an error message, shortening long values (with their full length).
pub(crate) fn preview(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        return format!("{value:?}");
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

/// Implements `Display`, `FromStr`, `AsRef<str>`, `TryFrom<String>`/`&str` and serde (as a
/// validated string) for a newtype over `String` with a `fn parse(&str) -> Result<(), InvalidField>`
/// rule check.
macro_rules! string_id {
    ($ty:ident) => {
        impl $ty {
            /// Parses and validates `value`.
            ///
            /// # Errors
            /// [`InvalidField`] naming the rule `value` broke.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                Self::check(&value)?;
                Ok($ty(value))
            }

            /// The canonical text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = InvalidField;
            fn from_str(s: &str) -> Result<Self, InvalidField> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = InvalidField;
            fn try_from(s: String) -> Result<Self, InvalidField> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = InvalidField;
            fn try_from(s: &str) -> Result<Self, InvalidField> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }
    };
}

/// A tenant: 1–63 characters of `[a-z0-9-]`, not starting or ending with `-` (a DNS label,
/// so it can appear in host names, URLs and surrogate keys unescaped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);
string_id!(TenantId);

impl TenantId {
    fn check(v: &str) -> Result<(), InvalidField> {
        let err = |rule| Err(InvalidField::new("tenant", rule, v));
        if v.is_empty() || v.len() > 63 {
            return err("must be 1-63 characters long");
        }
        if !v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return err("may contain only a-z, 0-9 and '-'");
        }
        if v.starts_with('-') || v.ends_with('-') {
            return err("must not start or end with '-'");
        }
        Ok(())
    }
}

/// A release identifier: 1–64 characters of `[A-Za-z0-9_-]` (safe in URL paths unescaped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);
string_id!(ReleaseId);

impl ReleaseId {
    fn check(v: &str) -> Result<(), InvalidField> {
        check_url_token("release_id", v)
    }
}

/// An edge point of presence, e.g. `LCY` or `local-1`: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PopId(String);
string_id!(PopId);

impl PopId {
    fn check(v: &str) -> Result<(), InvalidField> {
        check_url_token("pop", v)
    }
}

fn check_url_token(field: &'static str, v: &str) -> Result<(), InvalidField> {
    if v.is_empty() || v.len() > 64 {
        return Err(InvalidField::new(field, "must be 1-64 characters long", v));
    }
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(InvalidField::new(field, "may contain only A-Z, a-z, 0-9, '-' and '_'", v));
    }
    Ok(())
}

/// A schema version `MAJOR.MINOR.PATCH`, each part a decimal `u32` without leading zeros.
///
/// Ordered numerically (`1.10.0 > 1.9.0`). Its text form is canonical, so it can be keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl SchemaVersion {
    /// Parses `MAJOR.MINOR.PATCH`.
    ///
    /// # Errors
    /// [`InvalidField`] (field `schema_version`) for anything else, including leading zeros,
    /// signs, spaces, pre-release suffixes and parts above `u32::MAX`.
    pub fn new(v: &str) -> Result<Self, InvalidField> {
        let rule = "must be MAJOR.MINOR.PATCH, decimal numbers without leading zeros";
        let mut parts = [0u32; 3];
        let mut split = v.split('.');
        for part in &mut parts {
            let s = split.next().ok_or_else(|| InvalidField::new("schema_version", rule, v))?;
            let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
            *part = ok.then(|| s.parse().ok()).flatten().ok_or_else(|| InvalidField::new("schema_version", rule, v))?;
        }
        if split.next().is_some() {
            return Err(InvalidField::new("schema_version", rule, v));
        }
        Ok(SchemaVersion { major: parts[0], minor: parts[1], patch: parts[2] })
    }
}

impl SchemaVersion {
    /// The canonical text form, `MAJOR.MINOR.PATCH`, without allocating (what keys and
    /// stored metadata absorb on every request).
    pub fn text(&self) -> SchemaText {
        let mut text = SchemaText { bytes: [0; 32], len: 0 };
        for (i, part) in [self.major, self.minor, self.patch].into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            let mut digits = [0u8; 10];
            let mut n = part;
            let mut start = digits.len();
            loop {
                start -= 1;
                digits[start] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            for &d in &digits[start..] {
                text.push(d);
            }
        }
        text
    }
}

/// A [`SchemaVersion`]'s text on the stack: three `u32` and two dots fit in 32 bytes.
#[derive(Debug, Clone, Copy)]
pub struct SchemaText {
    bytes: [u8; 32],
    len: u8,
}

impl SchemaText {
    fn push(&mut self, b: u8) {
        self.bytes[usize::from(self.len)] = b;
        self.len += 1;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and dots are ever pushed.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.text().as_str())
    }
}

impl FromStr for SchemaVersion {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, InvalidField> {
        Self::new(s)
    }
}

impl TryFrom<String> for SchemaVersion {
    type Error = InvalidField;
    fn try_from(s: String) -> Result<Self, InvalidField> {
        Self::new(&s)
    }
}

impl From<SchemaVersion> for String {
    fn from(v: SchemaVersion) -> String {
        v.to_string()
    }
}

/// The hash of an API contract: `sha256:` followed by 64 lower-case hex digits
/// (see [`crate::contract`] for how it is computed).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContractHash([u8; 32]);

impl ContractHash {
    /// The text prefix naming the hash function.
    pub const PREFIX: &'static str = "sha256:";

    /// Parses `sha256:<64 lower-case hex>`.
    ///
    /// # Errors
    /// [`InvalidField`] (field `contract_hash`) for any other form, upper-case hex included.
    pub fn new(v: &str) -> Result<Self, InvalidField> {
        let rule = "must be 'sha256:' followed by 64 lower-case hex digits";
        let hex_part = v
            .strip_prefix(Self::PREFIX)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| InvalidField::new("contract_hash", rule, v))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut digest).map_err(|_| InvalidField::new("contract_hash", rule, v))?;
        Ok(ContractHash(digest))
    }

    /// Wraps a raw SHA-256 digest.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        ContractHash(digest)
    }

    /// The raw 32-byte digest (what cache keys and object metadata encode).
    pub const fn digest(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContractHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}{}", Self::PREFIX, hex::encode(self.0)))
    }
}

impl fmt::Debug for ContractHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContractHash({self})")
    }
}

impl FromStr for ContractHash {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, InvalidField> {
        Self::new(s)
    }
}

impl TryFrom<String> for ContractHash {
    type Error = InvalidField;
    fn try_from(s: String) -> Result<Self, InvalidField> {
        Self::new(&s)
    }
}

impl From<ContractHash> for String {
    fn from(h: ContractHash) -> String {
        h.to_string()
    }
}

/// A tenant's generation: a counter that only moves forward. A tenant is registered at
/// [`Generation::FIRST`]; every release and every rollback takes the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation a newly registered tenant starts at.
    pub const FIRST: Generation = Generation(1);

    /// The generation after this one, or `None` at `u64::MAX` (never wraps: a wrapped
    /// generation would make every cached object look newer than the manifest).
    pub fn next(self) -> Option<Generation> {
        self.0.checked_add(1).map(Generation)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Generation {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, InvalidField> {
        let rule = "must be a decimal unsigned 64-bit integer without leading zeros";
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
            return Err(InvalidField::new("generation", rule, s));
        }
        s.parse().map(Generation).map_err(|_| InvalidField::new("generation", rule, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_tenant(input: &str, expected: Result<(), &str>) {
        let got = TenantId::new(input).map(|_| ()).map_err(|e| e.rule);
        assert_eq!(got, expected, "tenant {input:?}");
    }

    #[test]
    fn tenant_rules() {
        check_tenant("acme", Ok(()));
        check_tenant("a", Ok(()));
        check_tenant("tenant-01", Ok(()));
        check_tenant(&"a".repeat(63), Ok(()));
        check_tenant("", Err("must be 1-63 characters long"));
        check_tenant(&"a".repeat(64), Err("must be 1-63 characters long"));
        check_tenant("Acme", Err("may contain only a-z, 0-9 and '-'"));
        check_tenant("acme.com", Err("may contain only a-z, 0-9 and '-'"));
        check_tenant("acme/x", Err("may contain only a-z, 0-9 and '-'"));
        check_tenant(" acme", Err("may contain only a-z, 0-9 and '-'"));
        check_tenant("-acme", Err("must not start or end with '-'"));
        check_tenant("acme-", Err("must not start or end with '-'"));
    }

    #[test]
    fn tenant_error_names_field_and_value() {
        let err = TenantId::new("Bad Tenant").unwrap_err();
        assert_eq!(err.to_string(), "tenant: may contain only a-z, 0-9 and '-' (got \"Bad Tenant\")");
    }

    #[test]
    fn long_values_are_previewed_with_their_length() {
        let err = TenantId::new("x".repeat(500)).unwrap_err();
        assert!(err.value.ends_with("… (500 bytes)"), "{}", err.value);
    }

    #[test]
    fn schema_version_rules() {
        for ok in ["0.0.0", "1.8.2", "10.20.30", "4294967295.0.1"] {
            assert_eq!(SchemaVersion::new(ok).unwrap().to_string(), ok);
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "v1.2.3",
            "1.2.3-rc1",
            " 1.2.3",
            "+1.2.3",
            "1..3",
            "4294967296.0.0",
        ] {
            let err = SchemaVersion::new(bad).unwrap_err();
            assert_eq!(err.field, "schema_version", "{bad:?}");
        }
        assert!(SchemaVersion::new("1.10.0").unwrap() > SchemaVersion::new("1.9.9").unwrap());
    }

    proptest::proptest! {
        /// The stack-built text form is the decimal `MAJOR.MINOR.PATCH` and parses back.
        #[test]
        fn schema_text_is_canonical(major: u32, minor: u32, patch: u32) {
            let v = SchemaVersion { major, minor, patch };
            let text = format!("{major}.{minor}.{patch}");
            let stacked = v.text();
            proptest::prop_assert_eq!(stacked.as_str(), text.as_str());
            proptest::prop_assert_eq!(format!("{v:>40}"), format!("{text:>40}"), "padding still applies");
            proptest::prop_assert_eq!(SchemaVersion::new(&text).unwrap(), v);
        }
    }

    #[test]
    fn contract_hash_rules() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(ContractHash::new(&ok).unwrap().to_string(), ok);
        for bad in [
            String::new(),
            "ab".repeat(32),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}", "ab".repeat(33)),
            format!("SHA256:{}", "ab".repeat(32)),
            format!("sha256:{}g", "a".repeat(63)),
            format!("sha512:{}", "ab".repeat(32)),
        ] {
            assert_eq!(ContractHash::new(&bad).unwrap_err().field, "contract_hash", "{bad:?}");
        }
    }

    #[test]
    fn url_tokens() {
        assert!(ReleaseId::new("rel_01HZX-abc").is_ok());
        assert!(ReleaseId::new("rel/1").is_err());
        assert!(ReleaseId::new("").is_err());
        assert!(PopId::new("LCY").is_ok());
        assert!(PopId::new("local 1").is_err());
        assert_eq!(PopId::new("a.b").unwrap_err().field, "pop");
    }

    #[test]
    fn generation_never_wraps() {
        assert_eq!(Generation(7).next(), Some(Generation(8)));
        assert_eq!(Generation(u64::MAX).next(), None);
        assert_eq!("42".parse::<Generation>().unwrap(), Generation(42));
        assert!("-1".parse::<Generation>().is_err());
        assert!("007".parse::<Generation>().is_err());
        assert_eq!("0".parse::<Generation>().unwrap(), Generation(0));
        assert!("+1".parse::<Generation>().is_err());
        assert!("18446744073709551616".parse::<Generation>().is_err());
    }

    #[test]
    fn serde_validates() {
        let t: Result<TenantId, _> = serde_json::from_str("\"UPPER\"");
        assert!(t.unwrap_err().to_string().contains("tenant: may contain only"));
        let v: SchemaVersion = serde_json::from_str("\"1.8.3\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.8.3\"");
    }
}

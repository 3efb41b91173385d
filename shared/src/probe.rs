//! The `edgegen-probe` debug token: lets an engineer see the edge's view of a request
//! (`edgegen-*` response headers) for one tenant, until it expires.
//!
//! Form: `v1.{tenant}.{expires_at}.{signature}` where `expires_at` is Unix seconds (decimal)
//! and `signature` is 64 lower-case hex digits of HMAC-SHA256 under `EDGEGEN_PROBE_KEY` over
//! the domain tag `edgegen/probe/v1`, the tenant and `expires_at` (u64 big-endian). Tenants
//! never contain `.`, so the form splits unambiguously.
//!
//! [`verify`] checks the signature before it believes anything the token says, and gives a
//! typed reason for logs; the edge must answer every failure the same way (as if no token had
//! been sent), so the reason is never an oracle for a forger.

use crate::ids::TenantId;
use crate::mac::SecretKey;

/// Domain tag of probe-token signatures.
pub const PROBE_DOMAIN: &str = "edgegen/probe/v1";
/// Longest lifetime a token may have: one day. Longer-lived tokens are refused at minting
/// and at verification (a leaked token must not stay useful for long).
pub const MAX_TTL_SECS: u64 = 24 * 60 * 60;
const MAX_TOKEN_LEN: usize = 256;

/// The verified content of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeClaims {
    /// The tenant the token is bound to.
    pub tenant: TenantId,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Not of the token form.
    #[error("probe token: malformed")]
    Malformed,
    /// Signature does not verify (forged, altered, or another key).
    #[error("probe token: signature does not verify")]
    Forged,
    /// Past its expiry.
    #[error("probe token: expired")]
    Expired,
    /// Valid, but for another tenant.
    #[error("probe token: issued for another tenant")]
    WrongTenant,
    /// Expires further ahead than [`MAX_TTL_SECS`].
    #[error("probe token: lifetime over the maximum of {MAX_TTL_SECS} s")]
    TooLongLived,
}

/// Mints a token for `tenant` valid until `expires_at` (Unix seconds).
///
/// # Errors
/// [`ProbeError::TooLongLived`] when `expires_at` is more than [`MAX_TTL_SECS`] after `now`.
pub fn mint(tenant: &TenantId, now: u64, expires_at: u64, key: &SecretKey) -> Result<String, ProbeError> {
    if expires_at.saturating_sub(now) > MAX_TTL_SECS {
        return Err(ProbeError::TooLongLived);
    }
    Ok(format!("v1.{tenant}.{expires_at}.{}", hex::encode(signature(tenant.as_str(), expires_at, key))))
}

fn signature(tenant: &str, expires_at: u64, key: &SecretKey) -> [u8; 32] {
    key.sign(PROBE_DOMAIN, |e| {
        e.field(tenant.as_bytes()).u64(expires_at);
    })
}

/// Verifies `token` for a request to `tenant` at `now` (Unix seconds).
///
/// # Errors
/// [`ProbeError`]: malformed, forged, wrong tenant, expired or too long-lived, in that order
/// of checking.
pub fn verify(token: &str, tenant: &TenantId, now: u64, key: &SecretKey) -> Result<ProbeClaims, ProbeError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(ProbeError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some("v1"), Some(token_tenant), Some(expires), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProbeError::Malformed);
    };
    // One spelling per token: decimal without leading zeros.
    let expires_at: u64 = (expires.bytes().all(|b| b.is_ascii_digit())
        && (expires == "0" || !expires.starts_with('0')))
    .then(|| expires.parse().ok())
    .flatten()
    .ok_or(ProbeError::Malformed)?;
    let tag = crate::mac::parse_tag(sig).ok_or(ProbeError::Malformed)?;
    let ok = key.verify(PROBE_DOMAIN, &tag, |e| {
        e.field(token_tenant.as_bytes()).u64(expires_at);
    });
    if !ok {
        return Err(ProbeError::Forged);
    }
    if token_tenant != tenant.as_str() {
        return Err(ProbeError::WrongTenant);
    }
    if now >= expires_at {
        return Err(ProbeError::Expired);
    }
    if expires_at - now > MAX_TTL_SECS {
        return Err(ProbeError::TooLongLived);
    }
    Ok(ProbeClaims { tenant: tenant.clone(), expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> SecretKey {
        SecretKey::new("test", "probe-key-0123456789abcdef0123456789ab").unwrap()
    }

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[track_caller]
    fn check(token: &str, tenant: &str, now: u64, expected: Result<(), ProbeError>) {
        assert_eq!(verify(token, &t(tenant), now, &key()).map(|_| ()), expected, "{token}");
    }

    #[test]
    fn verify_cases() {
        let token = mint(&t("acme"), NOW, NOW + 600, &key()).unwrap();
        check(&token, "acme", NOW, Ok(()));
        check(&token, "acme", NOW + 599, Ok(()));
        check(&token, "acme", NOW + 600, Err(ProbeError::Expired));
        check(&token, "beta", NOW, Err(ProbeError::WrongTenant));
        let other_key = SecretKey::new("o", "another-probe-key-0123456789abcdef01").unwrap();
        let forged = mint(&t("acme"), NOW, NOW + 600, &other_key).unwrap();
        check(&forged, "acme", NOW, Err(ProbeError::Forged));
        // Re-targeting a valid token at another tenant breaks the signature.
        check(&token.replace("acme", "beta"), "beta", NOW, Err(ProbeError::Forged));
        check(
            &token.replace(&(NOW + 600).to_string(), &(NOW + 6000).to_string()),
            "acme",
            NOW,
            Err(ProbeError::Forged),
        );
        for bad in [
            "",
            "v1",
            "v2.acme.1.00",
            "v1.acme.x.00",
            "v1.acme.1.zz",
            "v1.acme.1.2.3",
            "v1.acme.+1.00",
            &format!("{token}."),
        ] {
            check(bad, "acme", NOW, Err(ProbeError::Malformed));
        }
        check(&token.to_uppercase(), "acme", NOW, Err(ProbeError::Malformed));
        let padded = token.replace(&format!(".{}.", NOW + 600), &format!(".0{}.", NOW + 600));
        check(&padded, "acme", NOW, Err(ProbeError::Malformed));
    }

    #[test]
    fn lifetime_is_bounded() {
        assert_eq!(mint(&t("acme"), NOW, NOW + MAX_TTL_SECS + 1, &key()), Err(ProbeError::TooLongLived));
        let long = mint(&t("acme"), NOW - 10, NOW + MAX_TTL_SECS - 10, &key()).unwrap();
        check(&long, "acme", NOW - 20, Err(ProbeError::TooLongLived));
        check(&long, "acme", NOW, Ok(()));
    }
}

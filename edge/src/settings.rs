//! The edge's own settings, read from the `edgegen_config` Config Store (all optional):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `pop` | this PoP's name (Viceroy reports every PoP as `XXX`) | the runtime's PoP |
//! | `manifest_max_age_cap_ms` | cap on how long a manifest is trusted, whatever it says | `1000` |
//! | `no_manifest` | `bypass` (pass to origin, uncached) or `unavailable` (answer 503) | `bypass` |
//! | `credentials_tenants` | comma-separated tenants whose credentialed GETs may be cached | none |
//! | `unstamped_tenants` | comma-separated tenants whose origin sends no `edgegen-schema`/`-contract` | none |
//! | `honour_request_directives_tenants` | tenants whose clients' `Cache-Control`/`Pragma` request directives (`no-cache`, `max-age`, `min-fresh`, `max-stale`, `no-store`, `stale-if-error`) are followed (RFC 9111 §5.2.1); for every other tenant they are ignored, as CDNs commonly do, so a client cannot force origin traffic; `only-if-cached` is always honoured | none |
//! | `heuristic_tenants` | tenants whose responses without explicit freshness get heuristic freshness (10% of `Date - Last-Modified`, at most a day) | none |
//! | `report_window_s` | a PoP posts at most one contract-mismatch report per (tenant, generation, kind) within this many seconds | `300` |

use edgegen_shared::TenantId;

/// Every key [`Settings::read`] reads (the table above).
pub const KEYS: [&str; 8] = [
    "pop",
    "manifest_max_age_cap_ms",
    "no_manifest",
    "report_window_s",
    "credentials_tenants",
    "unstamped_tenants",
    "honour_request_directives_tenants",
    "heuristic_tenants",
];

/// What to do when no valid manifest can be had for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoManifest {
    /// Pass the request to the origin, uncached (`BYPASS`).
    Bypass,
    /// Answer 503.
    Unavailable,
}

/// Parsed edge settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// PoP name from the store, if set.
    pub pop: Option<String>,
    /// Cap on manifest trust, ms.
    pub manifest_max_age_cap_ms: u64,
    /// Behaviour without a manifest.
    pub no_manifest: NoManifest,
    /// Report dedupe window, seconds.
    pub report_window_secs: u64,
    credentials_tenants: Vec<TenantId>,
    unstamped_tenants: Vec<TenantId>,
    honour_request_directives_tenants: Vec<TenantId>,
    heuristic_tenants: Vec<TenantId>,
}

impl Settings {
    /// Reads the settings through `get` (the Config Store).
    ///
    /// # Errors
    /// A sentence naming the key and the bad value.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let cap = match get("manifest_max_age_cap_ms") {
            None => 1000,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=edgegen_shared::manifest::MAX_MAX_AGE_MS).contains(n))
                .ok_or_else(|| format!("manifest_max_age_cap_ms: {v:?} is not 1-60000"))?,
        };
        let no_manifest = match get("no_manifest").as_deref().map(str::trim) {
            None | Some("bypass") => NoManifest::Bypass,
            Some("unavailable") => NoManifest::Unavailable,
            Some(other) => return Err(format!("no_manifest: {other:?} is not 'bypass' or 'unavailable'")),
        };
        let report_window_secs = match get("report_window_s") {
            None => 300,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .ok_or_else(|| format!("report_window_s: {v:?} is not 1-86400"))?,
        };
        Ok(Settings {
            pop: get("pop").map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()),
            manifest_max_age_cap_ms: cap,
            no_manifest,
            report_window_secs,
            credentials_tenants: tenant_list(&get, "credentials_tenants")?,
            unstamped_tenants: tenant_list(&get, "unstamped_tenants")?,
            honour_request_directives_tenants: tenant_list(&get, "honour_request_directives_tenants")?,
            heuristic_tenants: tenant_list(&get, "heuristic_tenants")?,
        })
    }

    /// Whether `tenant`'s credentialed GETs may be cached.
    pub fn credentials_allowed(&self, tenant: &TenantId) -> bool {
        self.credentials_tenants.contains(tenant)
    }

    /// Whether `tenant`'s clients' request cache directives are followed (opt-in).
    pub fn request_directives_honoured(&self, tenant: &TenantId) -> bool {
        self.honour_request_directives_tenants.contains(tenant)
    }

    /// Whether `tenant` opted into heuristic freshness.
    pub fn heuristics(&self, tenant: &TenantId) -> bool {
        self.heuristic_tenants.contains(tenant)
    }

    /// Whether `tenant`'s origin is exempt from the contract stamp check.
    pub fn unstamped(&self, tenant: &TenantId) -> bool {
        self.unstamped_tenants.contains(tenant)
    }
}

fn tenant_list(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Vec<TenantId>, String> {
    get(key)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| TenantId::new(t).map_err(|e| format!("{key}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let s = Settings::read(|_| None).unwrap();
        assert_eq!((s.manifest_max_age_cap_ms, s.no_manifest, s.pop), (1000, NoManifest::Bypass, None));
        let s = Settings::read(|k| match k {
            "pop" => Some("LCY".into()),
            "no_manifest" => Some("unavailable".into()),
            "unstamped_tenants" => Some("acme, beta".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.pop.as_deref(), Some("LCY"));
        assert!(s.unstamped(&TenantId::new("beta").unwrap()));
        assert!(!s.credentials_allowed(&TenantId::new("beta").unwrap()));
        assert!(!s.request_directives_honoured(&TenantId::new("beta").unwrap()), "ignored by default");
        assert!(!s.heuristics(&TenantId::new("beta").unwrap()));
        assert_eq!(s.report_window_secs, 300);
    }

    #[test]
    fn reads_exactly_the_declared_keys() {
        let asked = std::cell::RefCell::new(Vec::new());
        Settings::read(|k| {
            asked.borrow_mut().push(k.to_owned());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.sort();
        asked.dedup();
        let mut keys = KEYS.map(str::to_owned).to_vec();
        keys.sort();
        assert_eq!(asked, keys);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Settings::read(|k| (k == "no_manifest").then(|| "maybe".into())).unwrap_err();
        assert!(err.starts_with("no_manifest: "));
        let err = Settings::read(|k| (k == "manifest_max_age_cap_ms").then(|| "0".into())).unwrap_err();
        assert!(err.starts_with("manifest_max_age_cap_ms: "));
        let err = Settings::read(|k| (k == "report_window_s").then(|| "0".into())).unwrap_err();
        assert!(err.starts_with("report_window_s: "));
        let err = Settings::read(|k| (k == "unstamped_tenants").then(|| "Bad".into())).unwrap_err();
        assert!(err.starts_with("unstamped_tenants: tenant:"));
    }
}

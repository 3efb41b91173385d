//! The edge's host map — the `edgegen_hosts` Config Store, host name → tenant id — as the
//! coordinator's tenants define it: deriving it (with Fastly's Config Store limits checked,
//! never truncated), comparing it with what a store holds (the drift), and the item
//! operations that repair the drift. Pure: no I/O; `edgegen sync hosts` is the shell.

use std::collections::BTreeMap;
use std::fmt;

use edgegen_shared::TenantId;
use edgegen_shared::api::Tenant;
use serde::Serialize;

/// Longest Config Store key, in characters. Fastly's guide says 255 and its API reference
/// 256: the stricter one.
pub const MAX_KEY_CHARS: usize = 255;
/// Longest Config Store value, in characters (Fastly: 8,000).
pub const MAX_VALUE_CHARS: usize = 8_000;
/// Entries per Config Store on a paid Fastly account (trials: 100). Accounts with a
/// raised limit pass theirs to `edgegen sync hosts --max-entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 500;

/// The host map: host → tenant, ordered by host.
pub type HostMap = BTreeMap<String, TenantId>;

/// Why the coordinator's tenants cannot be written to a Config Store as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostMapError {
    /// Two tenants claim the same host.
    #[error("host {host:?} is claimed by tenants {first} and {second}")]
    Conflict {
        /// The host.
        host: String,
        /// One tenant claiming it.
        first: TenantId,
        /// The other.
        second: TenantId,
    },
    /// A host is longer than a Config Store key may be.
    #[error("tenant {tenant}: host {host:?} is {chars} characters; Config Store keys are at most {MAX_KEY_CHARS}")]
    KeyTooLong {
        /// The tenant.
        tenant: TenantId,
        /// The host.
        host: String,
        /// Its length in characters.
        chars: usize,
    },
    /// A tenant id is longer than a Config Store value may be.
    #[error("tenant {tenant}: its id is {chars} characters; Config Store values are at most {MAX_VALUE_CHARS}")]
    ValueTooLong {
        /// The tenant.
        tenant: TenantId,
        /// Its length in characters.
        chars: usize,
    },
    /// More hosts than the store may hold.
    #[error(
        "the tenants have {entries} hosts; a Config Store holds at most {max} entries \
         (Fastly's limit for the account: raise it with Fastly, then pass --max-entries)"
    )]
    TooManyEntries {
        /// Hosts in the map.
        entries: usize,
        /// The limit applied.
        max: usize,
    },
}

/// The host map the tenants define, checked against the Config Store limits (`max_entries`
/// entries; see [`DEFAULT_MAX_ENTRIES`]).
///
/// # Errors
/// The first [`HostMapError`]; nothing is ever dropped to fit.
pub fn desired(tenants: &[Tenant], max_entries: usize) -> Result<HostMap, HostMapError> {
    let mut map = HostMap::new();
    for tenant in tenants {
        let chars = tenant.id.as_str().chars().count();
        if chars > MAX_VALUE_CHARS {
            return Err(HostMapError::ValueTooLong { tenant: tenant.id.clone(), chars });
        }
        for host in &tenant.hosts {
            let chars = host.chars().count();
            if chars > MAX_KEY_CHARS {
                return Err(HostMapError::KeyTooLong { tenant: tenant.id.clone(), host: host.clone(), chars });
            }
            if let Some(first) = map.insert(host.clone(), tenant.id.clone())
                && first != tenant.id
            {
                return Err(HostMapError::Conflict { host: host.clone(), first, second: tenant.id.clone() });
            }
        }
    }
    if map.len() > max_entries {
        return Err(HostMapError::TooManyEntries { entries: map.len(), max: max_entries });
    }
    Ok(map)
}

/// Whether giving a tenant `hosts` hosts (registering it, or replacing its hosts), when the
/// other tenants hold `others` (each host belongs to one tenant, so the store holds one
/// entry per host), keeps the `edgegen_hosts` Config Store within `max_entries`; the
/// refusal names the limit.
///
/// # Errors
/// The refusal's message.
pub fn check_entries(others: usize, hosts: usize, max_entries: usize) -> Result<(), String> {
    let entries = others.saturating_add(hosts);
    if entries > max_entries {
        return Err(format!(
            "hosts: these {hosts} host(s) would give the edgegen_hosts Config Store {entries} entries; it \
             holds at most {max_entries} (fastly.hosts_max_entries, Fastly's limit for the account); \
             nothing was changed"
        ));
    }
    Ok(())
}

/// One difference between the coordinator's host map and a store's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The coordinator routes the host to `tenant`; the store lacks it.
    Missing {
        /// The host.
        host: String,
        /// The coordinator's tenant.
        tenant: TenantId,
    },
    /// The store routes a host no tenant claims.
    Extra {
        /// The host.
        host: String,
        /// What the store maps it to (not necessarily a tenant id).
        value: String,
    },
    /// The store routes the host to another tenant than the coordinator does.
    PointingElsewhere {
        /// The host.
        host: String,
        /// What the store maps it to.
        value: String,
        /// The coordinator's tenant.
        tenant: TenantId,
    },
}

impl Drift {
    /// The host it concerns.
    pub fn host(&self) -> &str {
        match self {
            Drift::Missing { host, .. } | Drift::Extra { host, .. } | Drift::PointingElsewhere { host, .. } => host,
        }
    }

    /// The store operation that repairs it.
    pub fn repair(&self) -> ItemOp {
        match self {
            Drift::Missing { host, tenant } | Drift::PointingElsewhere { host, tenant, .. } => {
                ItemOp::Upsert { key: host.clone(), value: tenant.as_str().to_owned() }
            }
            Drift::Extra { host, .. } => ItemOp::Delete { key: host.clone() },
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing { host, tenant } => write!(f, "missing            {host} -> {tenant}"),
            Drift::Extra { host, value } => write!(f, "extra              {host} -> {value} (no tenant claims it)"),
            Drift::PointingElsewhere { host, value, tenant } => {
                write!(f, "pointing-elsewhere {host} -> {value} (the coordinator says {tenant})")
            }
        }
    }
}

/// A Config Store item operation (Fastly's bulk update `op`s `upsert` and `delete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOp {
    /// Create or replace the item.
    Upsert {
        /// Item key.
        key: String,
        /// Item value.
        value: String,
    },
    /// Remove the item.
    Delete {
        /// Item key.
        key: String,
    },
}

/// Every difference between `desired` and what the store holds (`actual`), ordered by host.
pub fn drift(desired: &HostMap, actual: &BTreeMap<String, String>) -> Vec<Drift> {
    let mut out = Vec::new();
    for (host, tenant) in desired {
        match actual.get(host) {
            None => out.push(Drift::Missing { host: host.clone(), tenant: tenant.clone() }),
            Some(value) if value != tenant.as_str() => {
                out.push(Drift::PointingElsewhere { host: host.clone(), value: value.clone(), tenant: tenant.clone() })
            }
            Some(_) => {}
        }
    }
    for (host, value) in actual {
        if !desired.contains_key(host) {
            out.push(Drift::Extra { host: host.clone(), value: value.clone() });
        }
    }
    out.sort_by(|a, b| a.host().cmp(b.host()));
    out
}

/// Applies `ops` to a store's contents (what a Config Store does with a bulk update).
pub fn apply(store: &mut BTreeMap<String, String>, ops: &[ItemOp]) {
    for op in ops {
        match op {
            ItemOp::Upsert { key, value } => {
                store.insert(key.clone(), value.clone());
            }
            ItemOp::Delete { key } => {
                store.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use edgegen_shared::{ContractHash, Generation, SchemaVersion};
    use proptest::prelude::*;

    use super::*;

    fn tenant(id: &str, hosts: &[&str]) -> Tenant {
        Tenant {
            id: TenantId::new(id).unwrap(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            generation: Generation::FIRST,
            schema_version: SchemaVersion::new("1.0.0").unwrap(),
            contract_hash: ContractHash::from_digest([1; 32]),
        }
    }

    fn store(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn drift_names_missing_extra_and_elsewhere() {
        let map = desired(&[tenant("acme", &["a.test", "www.a.test"]), tenant("beta", &["b.test"])], 10).unwrap();
        let actual = store(&[("a.test", "acme"), ("b.test", "acme"), ("old.test", "gone")]);
        let d = drift(&map, &actual);
        let acme = TenantId::new("acme").unwrap();
        let beta = TenantId::new("beta").unwrap();
        assert_eq!(
            d,
            [
                Drift::PointingElsewhere { host: "b.test".into(), value: "acme".into(), tenant: beta },
                Drift::Extra { host: "old.test".into(), value: "gone".into() },
                Drift::Missing { host: "www.a.test".into(), tenant: acme },
            ]
        );
        assert_eq!(d[0].to_string(), "pointing-elsewhere b.test -> acme (the coordinator says beta)");
    }

    #[test]
    fn limits_and_conflicts_are_refused_never_truncated() {
        let err = desired(&[tenant("acme", &["a.test"]), tenant("beta", &["b.test", "a.test"])], 10).unwrap_err();
        assert_eq!(err.to_string(), "host \"a.test\" is claimed by tenants acme and beta");

        let many: Vec<String> = (0..4).map(|i| format!("h{i}.test")).collect();
        let hosts: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = desired(&[tenant("acme", &hosts)], 3).unwrap_err();
        assert_eq!(err, HostMapError::TooManyEntries { entries: 4, max: 3 });
        assert!(desired(&[tenant("acme", &hosts)], 4).is_ok(), "exactly at the limit is fine");
        assert_eq!(check_entries(3, 1, 4), Ok(()), "a registration may reach the limit");
        let refusal = check_entries(3, 2, 4).unwrap_err();
        assert!(refusal.contains("5 entries") && refusal.contains("at most 4"), "{refusal}");

        let long = format!("{}.test", "a".repeat(MAX_KEY_CHARS));
        let err = desired(&[tenant("acme", &[&long])], 10).unwrap_err();
        assert!(
            matches!(&err, HostMapError::KeyTooLong { host, chars, .. } if host == &long && *chars == MAX_KEY_CHARS + 5),
            "{err}"
        );
        assert!(err.to_string().contains("at most 255"));
    }

    fn arb_store() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map("[a-e]\\.test", "[a-c]", 0..6)
    }

    proptest! {
        /// For all store contents and host maps: applying the repairs of the drift yields
        /// exactly the host map, after which there is no drift.
        #[test]
        fn repairs_converge(actual in arb_store(), wanted in arb_store()) {
            let map: HostMap = wanted.iter().map(|(h, t)| (h.clone(), TenantId::new(t).unwrap())).collect();
            let d = drift(&map, &actual);
            let ops: Vec<ItemOp> = d.iter().map(Drift::repair).collect();
            let mut repaired = actual.clone();
            apply(&mut repaired, &ops);
            prop_assert_eq!(&repaired, &wanted);
            prop_assert!(drift(&map, &repaired).is_empty());
            prop_assert_eq!(d.is_empty(), actual == wanted);
        }

        /// For all registered tenants (hosts unique, as registration enforces), a new
        /// tenant and a limit: the entry check (a registration's or a host change's) refuses exactly when the
        /// host map of all tenants plus the new one breaks the entry limit.
        #[test]
        fn the_registration_check_agrees_with_the_host_map(
            hosts in prop::collection::btree_set("[a-z]{1,3}\\.test", 0..12),
            split in 0usize..12,
            max in 1usize..14,
        ) {
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let (old, new) = hosts.split_at(split.min(hosts.len()));
            let (a, b) = old.split_at(old.len() / 2);
            let all = [tenant("acme", a), tenant("beta", b), tenant("newco", new)];
            prop_assert_eq!(check_entries(old.len(), new.len(), max).is_ok(), desired(&all, max).is_ok());
        }
    }
}

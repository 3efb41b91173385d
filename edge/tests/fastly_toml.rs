//! The repository's `fastly.toml` declares exactly what the edge reads: its `[setup]` (what a
//! first `fastly compute publish` creates) and its `[local_server]` (what Viceroy runs with)
//! name every backend, Config Store, Config Store key and Secret Store entry the edge code
//! uses, and nothing else. The names come from the edge crate's own constants, which the
//! platform shell uses, so renaming one without the manifest fails here.

use std::collections::BTreeSet;

use edgegen_edge::settings::{self, Settings};
use edgegen_edge::{BACKENDS, CONFIG_STORE, CONFIG_STORES, HOSTS_STORE, SECRET_KEYS, SECRET_STORE, host_key};
use edgegen_shared::TenantId;
use toml::{Table, Value};

fn manifest() -> Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fastly.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.parse::<Table>().unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// A sub-table at a dotted path, or a problem naming the path.
fn table<'a>(t: &'a Table, path: &str, problems: &mut Vec<String>) -> Option<&'a Table> {
    let mut current = t;
    for part in path.split('.') {
        match current.get(part) {
            Some(Value::Table(next)) => current = next,
            Some(_) => {
                problems.push(format!("{path}: {part} is not a table"));
                return None;
            }
            None => {
                problems.push(format!("{path}: missing"));
                return None;
            }
        }
    }
    Some(current)
}

fn keys(t: &Table) -> BTreeSet<String> {
    t.keys().cloned().collect()
}

/// Compares a table's keys with what the edge reads, naming what is missing or extra.
fn same_keys(path: &str, found: &BTreeSet<String>, wanted: &BTreeSet<String>, problems: &mut Vec<String>) {
    for missing in wanted.difference(found) {
        problems.push(format!("{path}: {missing:?} is read by the edge but not declared"));
    }
    for extra in found.difference(wanted) {
        problems.push(format!("{path}: {extra:?} is declared but the edge never reads it"));
    }
}

fn non_empty_str(t: &Table, key: &str) -> Option<String> {
    t.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

/// Every problem of `manifest` against the edge's reads; empty when it matches exactly.
fn problems(manifest: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    let p = &mut problems;
    let backends = set(&BACKENDS);
    let config_stores = set(&CONFIG_STORES);
    let secret_stores = set(&[SECRET_STORE]);
    let secret_keys = set(&SECRET_KEYS);
    let settings_keys = set(&settings::KEYS);

    if manifest.get("language").and_then(Value::as_str) != Some("other") {
        p.push("language: must be \"other\" (the root Cargo.toml is a virtual workspace)".into());
    }
    if table(manifest, "scripts", p).and_then(|s| non_empty_str(s, "build")).is_none() {
        p.push("scripts.build: missing (the CLI runs it to produce bin/main.wasm)".into());
    }

    // [setup]: only the three kinds of resource the edge uses.
    if let Some(setup) = table(manifest, "setup", p) {
        same_keys("setup", &keys(setup), &set(&["backends", "config_stores", "secret_stores"]), p);
    }
    if let Some(t) = table(manifest, "setup.backends", p) {
        same_keys("setup.backends", &keys(t), &backends, p);
        for (name, b) in t {
            let Some(b) = b.as_table() else { continue };
            if non_empty_str(b, "address").is_none() || non_empty_str(b, "description").is_none() {
                p.push(format!("setup.backends.{name}: needs an address and a description"));
            }
            if !b.get("port").and_then(Value::as_integer).is_some_and(|n| (1..=65535).contains(&n)) {
                p.push(format!("setup.backends.{name}.port: must be 1-65535"));
            }
        }
    }
    if let Some(t) = table(manifest, "setup.config_stores", p) {
        same_keys("setup.config_stores", &keys(t), &config_stores, p);
        for (name, store) in t {
            let Some(store) = store.as_table() else { continue };
            if non_empty_str(store, "description").is_none() {
                p.push(format!("setup.config_stores.{name}: needs a description"));
            }
            let items = store.get("items").and_then(Value::as_table).cloned().unwrap_or_default();
            if name == HOSTS_STORE && !items.is_empty() {
                p.push(format!("setup.config_stores.{name}.items: the coordinator owns the host map; declare none"));
            }
            if name == CONFIG_STORE {
                let found = keys(&items);
                for extra in found.difference(&settings_keys) {
                    p.push(format!("setup.config_stores.{name}.items: {extra:?} is not a setting the edge reads"));
                }
                // An item without a value would be created as "example" by the CLI.
                let mut values = Vec::new();
                for (key, item) in &items {
                    match item.as_table().and_then(|i| non_empty_str(i, "value")) {
                        Some(v) => values.push((key.clone(), v)),
                        None => p.push(format!("setup.config_stores.{name}.items.{key}: needs a value")),
                    }
                    if item.as_table().and_then(|i| non_empty_str(i, "description")).is_none() {
                        p.push(format!("setup.config_stores.{name}.items.{key}: needs a description"));
                    }
                }
                if let Err(e) = Settings::read(|k| values.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())) {
                    p.push(format!("setup.config_stores.{name}.items: {e}"));
                }
            }
        }
    }
    if let Some(t) = table(manifest, "setup.secret_stores", p) {
        same_keys("setup.secret_stores", &keys(t), &secret_stores, p);
        if let Some(store) = t.get(SECRET_STORE).and_then(Value::as_table) {
            let entries = store.get("entries").and_then(Value::as_table).cloned().unwrap_or_default();
            same_keys(&format!("setup.secret_stores.{SECRET_STORE}.entries"), &keys(&entries), &secret_keys, p);
            for (key, entry) in &entries {
                let entry = entry.as_table().cloned().unwrap_or_default();
                if non_empty_str(&entry, "description").is_none() {
                    p.push(format!("setup.secret_stores.{SECRET_STORE}.entries.{key}: needs a description"));
                }
                if entry.contains_key("value") || entry.contains_key("data") {
                    p.push(format!(
                        "setup.secret_stores.{SECRET_STORE}.entries.{key}: a secret never lives in the manifest"
                    ));
                }
            }
        }
    }

    // [local_server]: the same names, with values Viceroy can run.
    if let Some(local) = table(manifest, "local_server", p) {
        same_keys("local_server", &keys(local), &set(&["backends", "config_stores", "secret_stores"]), p);
    }
    if let Some(t) = table(manifest, "local_server.backends", p) {
        same_keys("local_server.backends", &keys(t), &backends, p);
        for (name, b) in t {
            if !b.as_table().and_then(|b| non_empty_str(b, "url")).is_some_and(|u| u.starts_with("http")) {
                p.push(format!("local_server.backends.{name}.url: must be an http(s) URL"));
            }
        }
    }
    if let Some(t) = table(manifest, "local_server.config_stores", p) {
        same_keys("local_server.config_stores", &keys(t), &config_stores, p);
        let contents = |name: &str| -> Table {
            t.get(name).and_then(|s| s.get("contents")).and_then(Value::as_table).cloned().unwrap_or_default()
        };
        let local_settings = contents(CONFIG_STORE);
        for extra in keys(&local_settings).difference(&settings_keys) {
            p.push(format!("local_server.config_stores.{CONFIG_STORE}: {extra:?} is not a setting the edge reads"));
        }
        if let Err(e) = Settings::read(|k| local_settings.get(k).and_then(Value::as_str).map(str::to_owned)) {
            p.push(format!("local_server.config_stores.{CONFIG_STORE}: {e}"));
        }
        for (host, tenant) in &contents(HOSTS_STORE) {
            if host_key(host).as_deref() != Some(host.as_str()) {
                p.push(format!("local_server.config_stores.{HOSTS_STORE}: {host:?} is not a canonical host key"));
            }
            if tenant.as_str().and_then(|t| TenantId::new(t).ok()).is_none() {
                p.push(format!("local_server.config_stores.{HOSTS_STORE}.{host}: {tenant} is not a tenant id"));
            }
        }
    }
    if let Some(t) = table(manifest, "local_server.secret_stores", p) {
        same_keys("local_server.secret_stores", &keys(t), &secret_stores, p);
        let entries = t.get(SECRET_STORE).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut found = BTreeSet::new();
        for entry in &entries {
            let key = entry.get("key").and_then(Value::as_str).unwrap_or_default().to_owned();
            if entry.get("data").and_then(Value::as_str).is_none_or(|d| d.len() < 32) {
                p.push(format!("local_server.secret_stores.{SECRET_STORE}: {key:?} needs data of at least 32 bytes"));
            }
            found.insert(key);
        }
        same_keys(&format!("local_server.secret_stores.{SECRET_STORE}"), &found, &secret_keys, p);
    }
    problems
}

#[test]
fn fastly_toml_declares_exactly_what_the_edge_reads() {
    let problems = problems(&manifest());
    assert!(problems.is_empty(), "fastly.toml:\n  {}", problems.join("\n  "));
}

/// The check fails, naming the place, for each way the manifest can drift from the code.
#[test]
fn drift_is_named() {
    let edit = |path: &[&str], f: &dyn Fn(&mut Table)| {
        let mut m = manifest();
        let mut t = &mut m;
        for part in path {
            t = t.get_mut(*part).and_then(Value::as_table_mut).unwrap();
        }
        f(t);
        problems(&m)
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            edit(&["setup", "backends"], &|t| {
                t.insert("logs".into(), t["origin"].clone());
            }),
            "setup.backends: \"logs\" is declared but the edge never reads it",
        ),
        (
            edit(&["setup", "secret_stores", SECRET_STORE, "entries"], &|t| {
                t.remove("probe_key");
            }),
            "setup.secret_stores.edgegen_secrets.entries: \"probe_key\" is read by the edge but not declared",
        ),
        (
            edit(&["local_server", "config_stores"], &|t| {
                t.remove(HOSTS_STORE);
            }),
            "local_server.config_stores: \"edgegen_hosts\" is read by the edge but not declared",
        ),
        (
            edit(&["setup", "config_stores", CONFIG_STORE, "items", "no_manifest"], &|t| {
                t.insert("value".into(), Value::String("maybe".into()));
            }),
            "setup.config_stores.edgegen_config.items: no_manifest: \"maybe\"",
        ),
        (
            edit(&["local_server", "config_stores", CONFIG_STORE, "contents"], &|t| {
                t.insert("popp".into(), Value::String("x".into()));
            }),
            "local_server.config_stores.edgegen_config: \"popp\" is not a setting the edge reads",
        ),
        (
            edit(&["setup"], &|t| {
                t.insert("kv_stores".into(), Value::Table(Table::new()));
            }),
            "setup: \"kv_stores\" is declared but the edge never reads it",
        ),
    ];
    for (found, expected) in cases {
        assert!(found.iter().any(|p| p.starts_with(expected)), "expected {expected:?} in {found:#?}");
    }
}

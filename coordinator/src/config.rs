//! Coordinator settings: resolved from command-line flags, then `EDGEGEN_*` environment
//! variables, then an optional `edgegen.toml`, then defaults (first one set wins).
//!
//! | setting | flag | env | `edgegen.toml` | default |
//! |---|---|---|---|---|
//! | listen address | `--listen` | `EDGEGEN_LISTEN` | `listen` | `127.0.0.1:8080` |
//! | data directory (SQLite file `edgegen.db`) | `--data-dir` | `EDGEGEN_DATA_DIR` | `data_dir` | `./edgegen-data` |
//! | shared store (`postgres://USER@HOST:PORT/DB`) instead of SQLite | `--store` | `EDGEGEN_STORE` | `store` | SQLite in the data directory |
//! | admin bearer token (≥ 16 bytes) | | `EDGEGEN_ADMIN_TOKEN` | `admin_token` | required |
//! | edge bearer token (≥ 16 bytes) | | `EDGEGEN_EDGE_TOKEN` | `edge_token` | required |
//! | manifest signing key (≥ 32 bytes) | | `EDGEGEN_MANIFEST_KEY` | `manifest_key` | required |
//! | manifest max age, ms | | `EDGEGEN_MANIFEST_MAX_AGE_MS` | `manifest_max_age_ms` | `1000` |
//! | manifest stale bound, ms (how long a PoP cut off from the coordinator keeps its last verified manifest) | | `EDGEGEN_MANIFEST_MAX_STALE_MS` | `manifest_max_stale_ms` | `300000` |
//! | per-tenant ages (max age at most the global one) | | | `[tenant_leases.<tenant>]` `max_age_ms`, `max_stale_ms` | the global ages |
//! | PoP live window, ms | | `EDGEGEN_POP_LIVE_WINDOW_MS` | `pop_live_window_ms` | `30000` |
//! | request timeout, ms | | `EDGEGEN_REQUEST_TIMEOUT_MS` | `request_timeout_ms` | `10000` |
//! | request body limit, bytes | | `EDGEGEN_BODY_LIMIT_BYTES` | `body_limit_bytes` | `1048576` |
//! | auto-rollback: reports | | `EDGEGEN_AUTO_ROLLBACK_REPORTS` | `auto_rollback.reports` | off |
//! | auto-rollback: window, s | | `EDGEGEN_AUTO_ROLLBACK_WINDOW_SECS` | `auto_rollback.window_secs` | `60` |
//! | auto-rollback: distinct PoPs reporting | | `EDGEGEN_AUTO_ROLLBACK_MIN_POPS` | `auto_rollback.min_pops` | `2` |
//! | auto-rollback: distinct paths reported | | `EDGEGEN_AUTO_ROLLBACK_MIN_PATHS` | `auto_rollback.min_paths` | `1` |
//! | auto-rollback: convergence deadline, ms | | `EDGEGEN_CONVERGENCE_DEADLINE_MS` | `convergence_deadline_ms` | off |
//! | Fastly service to purge after releases | | `FASTLY_SERVICE_ID` | `fastly.service_id` | off |
//! | Fastly API token | | `FASTLY_API_TOKEN` | `fastly.token` | required with a service or a hosts store |
//! | Fastly API base URL | | `FASTLY_API_URL` | `fastly.api_url` | `https://api.fastly.com` |
//! | soft purges | | | `fastly.soft_purge` | `false` |
//! | the edge's `edgegen_hosts` Config Store, kept in line with the tenants | | `EDGEGEN_HOSTS_STORE_ID` | `fastly.hosts_store_id` | off |
//! | entries that Config Store may hold | | `EDGEGEN_HOSTS_MAX_ENTRIES` | `fastly.hosts_max_entries` | `500` |
//! | tenant database shards | | | `[shards]` `tenant = "path.db"` or `"postgres://..."` | none |
//! | shared PostgreSQL shards: app role, tenant setting | | | `[shard_rls]` `role`, `tenant_setting` | none |
//!
//! The config file is `--config PATH` (or `EDGEGEN_CONFIG`); without one, `./edgegen.toml`
//! is read if it exists. Unknown keys in it are errors, so a misspelt setting is never
//! silently ignored. Secrets are never printed (`Debug` redacts them).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use edgegen_shared::SecretKey;
use serde::Deserialize;

/// Minimum length of a bearer token.
pub const MIN_TOKEN_LEN: usize = 16;

/// The policy that rolls a release back when edge reports pile up right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRollback {
    /// Reports (contract mismatch / deserialization failure) that trigger a rollback.
    pub reports: u32,
    /// Counted within this long after the release's commit.
    pub window: Duration,
    /// Distinct PoPs the reports must come from. Reports are triggered by client traffic,
    /// so anonymous requests through one PoP must not be able to roll a release back on
    /// their own: the default is 2.
    pub min_pops: u32,
    /// Distinct request paths the reports must name (a report without a path counts as
    /// the path `-`). Default 1.
    pub min_paths: u32,
}

/// Default of [`AutoRollback::min_pops`].
pub const DEFAULT_MIN_POPS: u32 = 2;
/// Default of [`AutoRollback::min_paths`].
pub const DEFAULT_MIN_PATHS: u32 = 1;

/// Default of `manifest_max_stale_ms`: five minutes. Long enough that a coordinator restart,
/// a deploy or a short network partition (minutes) never turns into an origin outage, short
/// enough that a PoP cut off from the coordinator stops serving a superseded generation
/// within minutes of a commit (invariant 3's bound under a partition).
pub const DEFAULT_MAX_STALE_MS: u64 = 300_000;

/// The two ages of a tenant's manifest: re-check after `max_age_ms`; keep using the last
/// verified manifest while the coordinator cannot be reached until `max_stale_ms` after it
/// was issued (or after the last lease extending it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestAges {
    /// Re-check after this long.
    pub max_age_ms: u64,
    /// Usable this long after issue while the coordinator cannot be reached.
    pub max_stale_ms: u64,
}

impl ManifestAges {
    /// Checks the bounds the edge enforces: `1 ≤ max_age ≤ MAX_MAX_AGE_MS` and
    /// `max_age ≤ max_stale ≤ MAX_MAX_STALE_MS`.
    ///
    /// # Errors
    /// A message naming `what` and the broken bound.
    pub fn checked(max_age_ms: u64, max_stale_ms: u64, what: &str) -> anyhow::Result<ManifestAges> {
        let max_age = edgegen_shared::manifest::MAX_MAX_AGE_MS;
        let max_stale = edgegen_shared::manifest::MAX_MAX_STALE_MS;
        if max_age_ms == 0 || max_age_ms > max_age {
            bail!("{what} max age must be 1-{max_age} ms (the edge refuses longer ones); got {max_age_ms}");
        }
        if max_stale_ms < max_age_ms || max_stale_ms > max_stale {
            bail!("{what} max stale must be between its max age ({max_age_ms}) and {max_stale} ms; got {max_stale_ms}");
        }
        Ok(ManifestAges { max_age_ms, max_stale_ms })
    }
}

/// The ages of every tenant's manifests and leases: the global ones, and per-tenant
/// overrides (`[tenant_leases.<tenant>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasePolicy {
    /// The ages of tenants without an override.
    pub global: ManifestAges,
    /// Per-tenant ages. A tenant's max age is never longer than the global one, so the
    /// convergence bound (the global max age) holds for every tenant.
    pub tenants: std::collections::BTreeMap<edgegen_shared::TenantId, ManifestAges>,
}

impl LeasePolicy {
    /// The same ages for every tenant.
    pub fn global(ages: ManifestAges) -> LeasePolicy {
        LeasePolicy { global: ages, tenants: std::collections::BTreeMap::new() }
    }

    /// The ages of `tenant`'s manifests.
    pub fn ages(&self, tenant: &edgegen_shared::TenantId) -> ManifestAges {
        self.tenants.get(tenant).copied().unwrap_or(self.global)
    }

    /// Resolves `[tenant_leases.*]` over the global ages.
    fn resolve(
        global: ManifestAges,
        file: &std::collections::BTreeMap<String, FileTenantLease>,
    ) -> anyhow::Result<LeasePolicy> {
        let mut tenants = std::collections::BTreeMap::new();
        for (id, lease) in file {
            let what = format!("tenant_leases.{id}:");
            let tenant = edgegen_shared::TenantId::new(id).map_err(|e| anyhow::anyhow!("{what} {e}"))?;
            let max_age_ms = lease.max_age_ms.unwrap_or(global.max_age_ms);
            if max_age_ms > global.max_age_ms {
                bail!(
                    "{what} max_age_ms ({max_age_ms}) must not exceed the global manifest max age ({}): \
                     the convergence bound is the global one",
                    global.max_age_ms
                );
            }
            let max_stale_ms = lease.max_stale_ms.unwrap_or(global.max_stale_ms);
            tenants.insert(tenant, ManifestAges::checked(max_age_ms, max_stale_ms, &what)?);
        }
        Ok(LeasePolicy { global, tenants })
    }
}

/// Resolved coordinator settings.
#[derive(Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared by every replica, instead of SQLite in `data_dir`.
    pub store: Option<PostgresUrl>,
    /// Admin API bearer token.
    pub admin_token: String,
    /// Edge API bearer token.
    pub edge_token: String,
    /// Manifest signing key.
    pub manifest_key: SecretKey,
    /// `max_age_ms` of every manifest (the global one of [`Config::leases`]).
    pub manifest_max_age_ms: u64,
    /// The ages of every tenant's manifests and leases.
    pub leases: LeasePolicy,
    /// A PoP counts as live if it acknowledged something within this window.
    pub pop_live_window_ms: u64,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Automatic rollback on reports, if enabled.
    pub auto_rollback: Option<AutoRollback>,
    /// Automatic rollback of releases not converged this long after commit, if enabled.
    pub convergence_deadline_ms: Option<u64>,
    /// `[analysis]`: tenant column and global tables for release analysis.
    pub analysis: crate::analysis::AnalysisConfig,
    /// The Fastly service to purge after each release, if configured.
    pub fastly: Option<FastlyConfig>,
    /// Tenant database shards verified before analysed releases commit.
    pub shards: crate::shards::ShardMap,
    /// How tenants see shared PostgreSQL shards.
    pub shard_rls: crate::shards::SharedRls,
}

/// A `postgres://` connection URL (its password, if any, is never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Checks the scheme and that a database is named.
    ///
    /// # Errors
    /// When `text` is not `postgres://USER@HOST:PORT/DB` (or `postgresql://…`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .with_context(|| "must be a postgres://USER@HOST:PORT/DB URL (omit it for SQLite in --data-dir)")?;
        let (authority, db) = rest.split_once('/').context("names no database (postgres://USER@HOST:PORT/DB)")?;
        if authority.is_empty() || db.split('?').next().is_none_or(str::is_empty) {
            bail!("names no host or no database (postgres://USER@HOST:PORT/DB)");
        }
        Ok(PostgresUrl(text.to_owned()))
    }

    /// The URL, for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // userinfo may carry a password: show only what follows the last '@'.
        let shown = self.0.rsplit_once('@').map_or(self.0.as_str(), |(_, host)| host);
        write!(f, "postgres://…@{shown}")
    }
}

/// The Fastly account the coordinator calls: the service it purges after each release
/// and/or the `edgegen_hosts` Config Store it keeps in line with the tenants.
#[derive(Clone)]
pub struct FastlyConfig {
    /// Service id (`None`: no purges).
    pub service_id: Option<String>,
    /// API token (never printed).
    pub token: String,
    /// API base URL.
    pub api_url: String,
    /// Soft purges.
    pub soft_purge: bool,
    /// The `edgegen_hosts` Config Store every registration syncs, if the coordinator owns
    /// the host map.
    pub hosts: Option<crate::outbox::HostsStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFastly {
    service_id: Option<String>,
    token: Option<String>,
    api_url: Option<String>,
    #[serde(default)]
    soft_purge: bool,
    hosts_store_id: Option<String>,
    hosts_max_entries: Option<u64>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("admin_token", &"<redacted>")
            .field("edge_token", &"<redacted>")
            .field("manifest_key", &self.manifest_key)
            .field("manifest_max_age_ms", &self.manifest_max_age_ms)
            .field("leases", &self.leases)
            .field("pop_live_window_ms", &self.pop_live_window_ms)
            .field("request_timeout", &self.request_timeout)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("auto_rollback", &self.auto_rollback)
            .field("convergence_deadline_ms", &self.convergence_deadline_ms)
            .field("fastly", &self.fastly.as_ref().map(|f| (&f.service_id, &f.api_url, "token <redacted>")))
            .field("analysis", &self.analysis)
            .finish()
    }
}

/// `edgegen.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    admin_token: Option<String>,
    edge_token: Option<String>,
    manifest_key: Option<String>,
    manifest_max_age_ms: Option<u64>,
    manifest_max_stale_ms: Option<u64>,
    #[serde(default)]
    tenant_leases: std::collections::BTreeMap<String, FileTenantLease>,
    pop_live_window_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    body_limit_bytes: Option<usize>,
    auto_rollback: Option<FileAutoRollback>,
    convergence_deadline_ms: Option<u64>,
    fastly: Option<FileFastly>,
    #[serde(default)]
    shards: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    shard_rls: crate::shards::SharedRls,
    /// Release analysis settings (also read by `edgegen plan` / `lint-schema`).
    #[serde(default)]
    analysis: crate::analysis::AnalysisConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenantLease {
    max_age_ms: Option<u64>,
    max_stale_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAutoRollback {
    reports: u32,
    window_secs: Option<u64>,
    min_pops: Option<u64>,
    min_paths: Option<u64>,
}

/// Values given on the command line (already merged with their env variables by clap).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--store`.
    pub store: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
}

/// Where settings come from besides flags: the process environment in production, a map in
/// tests.
pub trait Env {
    /// The value of `name`, if set and non-empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }
}

impl Config {
    /// Resolves the settings.
    ///
    /// # Errors
    /// A missing secret, a secret that is too short, an unparsable value or config file,
    /// each naming the setting and where it came from.
    pub fn resolve(flags: &Flags, env: &impl Env) -> anyhow::Result<Config> {
        let file = load_file(
            flags.config.as_deref().map(Path::to_owned).or_else(|| env.var("EDGEGEN_CONFIG").map(PathBuf::from)),
        )?;

        let listen_text = flags
            .listen
            .clone()
            .or_else(|| env.var("EDGEGEN_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text
            .parse()
            .with_context(|| format!("listen: {listen_text:?} is not an address like 127.0.0.1:8080"))?;
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env.var("EDGEGEN_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("edgegen-data"));

        let store = match (flags.store.clone(), env.var("EDGEGEN_STORE"), file.store) {
            (Some(s), _, _) => Some(PostgresUrl::parse(&s).context("--store")?),
            (None, Some(s), _) => Some(PostgresUrl::parse(&s).context("EDGEGEN_STORE")?),
            (None, None, Some(s)) => Some(PostgresUrl::parse(&s).context("store in edgegen.toml")?),
            (None, None, None) => None,
        };

        let admin_token = secret_text(env, "EDGEGEN_ADMIN_TOKEN", file.admin_token, "admin_token", MIN_TOKEN_LEN)?;
        let edge_token = secret_text(env, "EDGEGEN_EDGE_TOKEN", file.edge_token, "edge_token", MIN_TOKEN_LEN)?;
        if admin_token == edge_token {
            bail!("EDGEGEN_ADMIN_TOKEN and EDGEGEN_EDGE_TOKEN must differ: an edge must not be able to release");
        }
        let key_text = secret_text(env, "EDGEGEN_MANIFEST_KEY", file.manifest_key, "manifest_key", SecretKey::MIN_LEN)?;
        let manifest_key = SecretKey::new("EDGEGEN_MANIFEST_KEY", key_text.into_bytes())?;

        let number = |name: &str, file_value: Option<u64>, default: u64| -> anyhow::Result<u64> {
            match env.var(name) {
                Some(v) => v.parse().with_context(|| format!("{name}: {v:?} is not a whole number")),
                None => Ok(file_value.unwrap_or(default)),
            }
        };
        let manifest_max_age_ms = number("EDGEGEN_MANIFEST_MAX_AGE_MS", file.manifest_max_age_ms, 1000)?;
        let manifest_max_stale_ms = number(
            "EDGEGEN_MANIFEST_MAX_STALE_MS",
            file.manifest_max_stale_ms,
            DEFAULT_MAX_STALE_MS.max(manifest_max_age_ms),
        )?;
        let global = ManifestAges::checked(manifest_max_age_ms, manifest_max_stale_ms, "manifest")?;
        let leases = LeasePolicy::resolve(global, &file.tenant_leases)?;
        let pop_live_window_ms = number("EDGEGEN_POP_LIVE_WINDOW_MS", file.pop_live_window_ms, 30_000)?;
        let request_timeout =
            Duration::from_millis(number("EDGEGEN_REQUEST_TIMEOUT_MS", file.request_timeout_ms, 10_000)?);
        let body_limit_bytes =
            number("EDGEGEN_BODY_LIMIT_BYTES", file.body_limit_bytes.map(|b| b as u64), 1 << 20)? as usize;

        let file_fastly = file.fastly.unwrap_or_default();
        let hosts = match env.var("EDGEGEN_HOSTS_STORE_ID").or(file_fastly.hosts_store_id) {
            None => None,
            Some(id) if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                bail!(
                    "EDGEGEN_HOSTS_STORE_ID (or fastly.hosts_store_id): {id:?} is not a Fastly Config Store id (alphanumeric)"
                )
            }
            Some(store_id) => {
                let max = number(
                    "EDGEGEN_HOSTS_MAX_ENTRIES",
                    file_fastly.hosts_max_entries,
                    crate::hostmap::DEFAULT_MAX_ENTRIES as u64,
                )?;
                if max == 0 {
                    bail!("EDGEGEN_HOSTS_MAX_ENTRIES (or fastly.hosts_max_entries) must be at least 1");
                }
                Some(crate::outbox::HostsStore { store_id, max_entries: usize::try_from(max).unwrap_or(usize::MAX) })
            }
        };
        let fastly = match (env.var("FASTLY_SERVICE_ID").or(file_fastly.service_id), hosts) {
            (None, None) => None,
            (service_id, hosts) => Some(FastlyConfig {
                token: env.var("FASTLY_API_TOKEN").or(file_fastly.token).ok_or_else(|| {
                    anyhow::anyhow!(
                        "a Fastly service or hosts Config Store is configured but FASTLY_API_TOKEN (or fastly.token) \
                         is not set"
                    )
                })?,
                api_url: env
                    .var("FASTLY_API_URL")
                    .or(file_fastly.api_url)
                    .unwrap_or_else(|| crate::fastly::DEFAULT_API_URL.into()),
                soft_purge: file_fastly.soft_purge,
                hosts,
                service_id,
            }),
        };
        let file_reports = file.auto_rollback.as_ref().map(|a| a.reports as u64);
        let file_window = file.auto_rollback.as_ref().and_then(|a| a.window_secs);
        let file_pops = file.auto_rollback.as_ref().and_then(|a| a.min_pops);
        let file_paths = file.auto_rollback.as_ref().and_then(|a| a.min_paths);
        let at_least_one = |name: &str, value: u64| -> anyhow::Result<u32> {
            match u32::try_from(value) {
                Ok(0) => bail!("{name}: must be at least 1"),
                Ok(v) => Ok(v),
                Err(_) => bail!("{name}: {value} is too large"),
            }
        };
        let auto_rollback = match number("EDGEGEN_AUTO_ROLLBACK_REPORTS", file_reports, 0)? {
            0 => None,
            reports => Some(AutoRollback {
                reports: u32::try_from(reports).context("EDGEGEN_AUTO_ROLLBACK_REPORTS is too large")?,
                window: Duration::from_secs(number("EDGEGEN_AUTO_ROLLBACK_WINDOW_SECS", file_window, 60)?),
                min_pops: at_least_one(
                    "EDGEGEN_AUTO_ROLLBACK_MIN_POPS (auto_rollback.min_pops)",
                    number("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", file_pops, DEFAULT_MIN_POPS.into())?,
                )?,
                min_paths: at_least_one(
                    "EDGEGEN_AUTO_ROLLBACK_MIN_PATHS (auto_rollback.min_paths)",
                    number("EDGEGEN_AUTO_ROLLBACK_MIN_PATHS", file_paths, DEFAULT_MIN_PATHS.into())?,
                )?,
            }),
        };

        Ok(Config {
            listen,
            data_dir,
            store,
            admin_token,
            edge_token,
            manifest_key,
            manifest_max_age_ms,
            leases,
            pop_live_window_ms,
            request_timeout,
            body_limit_bytes,
            auto_rollback,
            convergence_deadline_ms: match number("EDGEGEN_CONVERGENCE_DEADLINE_MS", file.convergence_deadline_ms, 0)? {
                0 => None,
                ms => Some(ms),
            },
            analysis: file.analysis,
            fastly,
            shards: crate::shards::parse(&file.shards).map_err(anyhow::Error::msg)?,
            shard_rls: file.shard_rls,
        })
    }
}

fn load_file(explicit: Option<PathBuf>) -> anyhow::Result<FileConfig> {
    let (path, required) = match explicit {
        Some(p) => (p, true),
        None => (PathBuf::from("edgegen.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

fn secret_text(
    env: &impl Env,
    var: &str,
    file_value: Option<String>,
    file_key: &str,
    min: usize,
) -> anyhow::Result<String> {
    let (value, source) = match env.var(var) {
        Some(v) => (v, var.to_owned()),
        None => match file_value {
            Some(v) => (v, format!("{file_key} in edgegen.toml")),
            None => {
                bail!("{var} is not set (nor {file_key} in edgegen.toml); generate one with `openssl rand -hex 32`")
            }
        },
    };
    if value.len() < min {
        bail!("{source}: must be at least {min} bytes long (got {})", value.len());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [(&str, &str); 3] = [
        ("EDGEGEN_ADMIN_TOKEN", "admin-token-0123456789"),
        ("EDGEGEN_EDGE_TOKEN", "edge-token-0123456789"),
        ("EDGEGEN_MANIFEST_KEY", "manifest-key-0123456789abcdef0123456789"),
    ];

    #[test]
    fn defaults() {
        let c = Config::resolve(&Flags::default(), &SECRETS).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.manifest_max_age_ms, 1000);
        assert_eq!(c.auto_rollback, None);
        assert!(!format!("{c:?}").contains("admin-token"), "secrets never printed");
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgegen.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nmanifest_max_age_ms = 500\n[auto_rollback]\nreports = 3\n")
            .unwrap();
        let flags = Flags { config: Some(path.clone()), ..Flags::default() };
        let c = Config::resolve(&flags, &SECRETS).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.manifest_max_age_ms, 500);
        assert_eq!(
            c.auto_rollback,
            Some(AutoRollback {
                reports: 3,
                window: Duration::from_secs(60),
                min_pops: DEFAULT_MIN_POPS,
                min_paths: DEFAULT_MIN_PATHS
            })
        );
        let env = [
            SECRETS[0],
            SECRETS[1],
            SECRETS[2],
            ("EDGEGEN_LISTEN", "127.0.0.1:2"),
            ("EDGEGEN_AUTO_ROLLBACK_REPORTS", "0"),
        ];
        let c = Config::resolve(&flags, &env).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.auto_rollback, None);
        let flags = Flags { listen: Some("127.0.0.1:3".into()), ..flags };
        assert_eq!(Config::resolve(&flags, &env).unwrap().listen.port(), 3);
    }

    #[test]
    fn a_hosts_store_needs_a_token_but_no_service() {
        let resolve = |extra: [(&'static str, &'static str); 3]| {
            let env = [SECRETS[0], SECRETS[1], SECRETS[2], extra[0], extra[1], extra[2]];
            Config::resolve(&Flags::default(), &env)
        };
        let c = resolve([("EDGEGEN_HOSTS_STORE_ID", "hosts01"), ("FASTLY_API_TOKEN", "t"), ("X", "")]).unwrap();
        let fastly = c.fastly.unwrap();
        assert_eq!(fastly.service_id, None);
        assert_eq!(
            fastly.hosts,
            Some(crate::outbox::HostsStore {
                store_id: "hosts01".into(),
                max_entries: crate::hostmap::DEFAULT_MAX_ENTRIES
            })
        );
        let c = resolve([
            ("EDGEGEN_HOSTS_STORE_ID", "hosts01"),
            ("FASTLY_API_TOKEN", "t"),
            ("EDGEGEN_HOSTS_MAX_ENTRIES", "3"),
        ]);
        assert_eq!(c.unwrap().fastly.unwrap().hosts.unwrap().max_entries, 3);

        let err = |extra| resolve(extra).unwrap_err().to_string();
        let no_token = err([("EDGEGEN_HOSTS_STORE_ID", "hosts01"), ("X", ""), ("Y", "")]);
        assert!(no_token.contains("FASTLY_API_TOKEN (or fastly.token) is not set"), "{no_token}");
        let bad_id = err([("EDGEGEN_HOSTS_STORE_ID", "hosts/01"), ("FASTLY_API_TOKEN", "t"), ("X", "")]);
        assert!(bad_id.starts_with("EDGEGEN_HOSTS_STORE_ID (or fastly.hosts_store_id): \"hosts/01\""), "{bad_id}");
        let zero =
            err([("EDGEGEN_HOSTS_STORE_ID", "hosts01"), ("FASTLY_API_TOKEN", "t"), ("EDGEGEN_HOSTS_MAX_ENTRIES", "0")]);
        assert!(zero.contains("EDGEGEN_HOSTS_MAX_ENTRIES (or fastly.hosts_max_entries) must be at least 1"), "{zero}");
    }

    #[test]
    fn errors_name_the_setting() {
        let err = |env: &[(&str, &str); 3]| Config::resolve(&Flags::default(), env).unwrap_err().to_string();
        let mut env = SECRETS;
        env[0].1 = "short";
        assert!(err(&env).starts_with("EDGEGEN_ADMIN_TOKEN: must be at least 16 bytes"), "{}", err(&env));
        let mut env = SECRETS;
        env[2] = ("UNRELATED", "x");
        assert!(err(&env).starts_with("EDGEGEN_MANIFEST_KEY is not set"), "{}", err(&env));
        let mut env = SECRETS;
        env[1].1 = SECRETS[0].1;
        assert!(err(&env).contains("must differ"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgegen.toml");
        std::fs::write(&path, "manifest_max_age = 5\n").unwrap();
        let flags = Flags { config: Some(path), ..Flags::default() };
        let msg = format!("{:#}", Config::resolve(&flags, &SECRETS).unwrap_err());
        assert!(msg.contains("unknown field `manifest_max_age`"), "{msg}");
    }

    #[test]
    fn lease_ages_default_globally_and_per_tenant_within_bounds() {
        let c = Config::resolve(&Flags::default(), &SECRETS).unwrap();
        assert_eq!(c.leases.global, ManifestAges { max_age_ms: 1000, max_stale_ms: DEFAULT_MAX_STALE_MS });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgegen.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::resolve(&Flags { config: Some(path.clone()), ..Flags::default() }, &SECRETS)
                .map_err(|e| format!("{e:#}"))
        };
        let c = resolve(
            "manifest_max_age_ms = 2000\nmanifest_max_stale_ms = 60000\n\
             [tenant_leases.acme]\nmax_stale_ms = 600000\n[tenant_leases.beta]\nmax_age_ms = 500\n",
        )
        .unwrap();
        let id = |t: &str| edgegen_shared::TenantId::new(t).unwrap();
        assert_eq!(c.leases.ages(&id("acme")), ManifestAges { max_age_ms: 2000, max_stale_ms: 600_000 });
        assert_eq!(c.leases.ages(&id("beta")), ManifestAges { max_age_ms: 500, max_stale_ms: 60_000 });
        assert_eq!(c.leases.ages(&id("other")), ManifestAges { max_age_ms: 2000, max_stale_ms: 60_000 });
        for (text, named) in [
            ("manifest_max_stale_ms = 999\n", "manifest max stale must be between its max age (1000)"),
            ("manifest_max_stale_ms = 86400001\n", "manifest max stale must be between"),
            ("[tenant_leases.acme]\nmax_age_ms = 5000\n", "tenant_leases.acme: max_age_ms (5000) must not exceed"),
            ("[tenant_leases.acme]\nmax_age_ms = 0\n", "tenant_leases.acme: max age must be 1-"),
            ("[tenant_leases.acme]\nmax_stale_ms = 10\n", "tenant_leases.acme: max stale must be between"),
            ("[tenant_leases.\"Bad Id\"]\nmax_stale_ms = 10\n", "tenant_leases.Bad Id:"),
            ("[tenant_leases.acme]\nmax_stale = 10\n", "unknown field `max_stale`"),
        ] {
            let msg = resolve(text).unwrap_err();
            assert!(msg.contains(named), "{text:?}: {msg}");
        }
        let env = [SECRETS[0], SECRETS[1], SECRETS[2], ("EDGEGEN_MANIFEST_MAX_STALE_MS", "1000")];
        assert_eq!(Config::resolve(&Flags::default(), &env).unwrap().leases.global.max_stale_ms, 1000);
    }

    #[test]
    fn the_store_is_a_postgres_url_from_flag_env_or_file() {
        assert_eq!(Config::resolve(&Flags::default(), &SECRETS).unwrap().store, None);
        let env = [SECRETS[0], SECRETS[1], SECRETS[2], ("EDGEGEN_STORE", "postgres://u:secret@db:5432/edgegen")];
        let c = Config::resolve(&Flags::default(), &env).unwrap();
        assert_eq!(c.store.as_ref().map(PostgresUrl::as_str), Some("postgres://u:secret@db:5432/edgegen"));
        assert!(!format!("{c:?}").contains("secret"), "the password is never printed");
        let flags = Flags { store: Some("mysql://db/x".into()), ..Flags::default() };
        let msg = format!("{:#}", Config::resolve(&flags, &env).unwrap_err());
        assert!(msg.starts_with("--store: must be a postgres://"), "{msg}");
        let flags = Flags { store: Some("postgres://u@db:5432".into()), ..Flags::default() };
        let msg = format!("{:#}", Config::resolve(&flags, &SECRETS).unwrap_err());
        assert!(msg.contains("names no database"), "{msg}");
        // The file's `store`, overridden by the environment, overridden by the flag.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgegen.toml");
        std::fs::write(&path, "store = \"postgres://file@db:5432/from_file\"\n").unwrap();
        let flags = Flags { config: Some(path.clone()), ..Flags::default() };
        fn store(flags: &Flags, env: &impl Env) -> Option<String> {
            Config::resolve(flags, env).unwrap().store.map(|s| s.as_str().to_owned())
        }
        assert_eq!(store(&flags, &SECRETS).as_deref(), Some("postgres://file@db:5432/from_file"));
        assert_eq!(store(&flags, &env).as_deref(), Some("postgres://u:secret@db:5432/edgegen"));
        let flags = Flags { store: Some("postgres://flag@db:5432/from_flag".into()), ..flags };
        assert_eq!(store(&flags, &env).as_deref(), Some("postgres://flag@db:5432/from_flag"));
        std::fs::write(&path, "store = \"sqlite:///tmp/x\"\n").unwrap();
        let flags = Flags { config: Some(path), ..Flags::default() };
        let msg = format!("{:#}", Config::resolve(&flags, &SECRETS).unwrap_err());
        assert!(msg.contains("store") && msg.contains("postgres://"), "{msg}");
    }

    #[test]
    fn auto_rollback_thresholds_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgegen.toml");
        std::fs::write(&path, "[auto_rollback]\nreports = 5\nmin_pops = 3\nmin_paths = 2\n").unwrap();
        let flags = Flags { config: Some(path), ..Flags::default() };
        let policy = Config::resolve(&flags, &SECRETS).unwrap().auto_rollback.unwrap();
        assert_eq!((policy.reports, policy.min_pops, policy.min_paths), (5, 3, 2));
        let env = [SECRETS[0], SECRETS[1], SECRETS[2], ("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", "4")];
        assert_eq!(Config::resolve(&flags, &env).unwrap().auto_rollback.unwrap().min_pops, 4);
        let env = [SECRETS[0], SECRETS[1], SECRETS[2], ("EDGEGEN_AUTO_ROLLBACK_MIN_POPS", "0")];
        let msg = format!("{:#}", Config::resolve(&flags, &env).unwrap_err());
        assert!(
            msg.starts_with("EDGEGEN_AUTO_ROLLBACK_MIN_POPS (auto_rollback.min_pops): must be at least 1"),
            "{msg}"
        );
    }
}

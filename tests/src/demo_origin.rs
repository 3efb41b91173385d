//! The demo origin: a small multi-tenant API (users, profiles) with one SQLite shard per
//! tenant and two builds selectable at run time.
//!
//! - build 1.8.2 serves `UserProfile` v1, whose `plan` still has the legacy `trial` variant;
//! - build 1.8.3 expects the 1.8.3 migration (`profiles.encryption_key_version`, NOT NULL)
//!   and serves `UserProfile` v2, which carries it and has retired `trial`.
//!
//! A tenant can be made to hold legacy data ([`DemoOrigin::hold_legacy_plan`]): its
//! profiles on `trial` are what the live-data contract check finds before the release.
//!
//! Response types derive `schemars::JsonSchema`: each build's contract hash is computed from
//! its own type, and stamped (`edgegen-schema`/`edgegen-contract`) on every response with
//! `Cache-Control` and `Surrogate-Key`. The tenant comes from the edge's `edgegen-tenant`
//! header and selects the shard; every body names its tenant so checkers can verify
//! isolation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use edgegen_shared::{ContractHash, TenantId};
use schemars::JsonSchema;
use serde::Serialize;

use crate::server::BackgroundServer;

/// A subscription plan (build 1.8.3: the trial plan is retired).
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Plan")]
pub enum Plan {
    /// Free.
    Free,
    /// Paid.
    Pro,
}

/// A subscription plan of build 1.8.2, with the legacy `trial` variant.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Plan")]
pub enum LegacyPlan {
    /// Free.
    Free,
    /// Paid.
    Pro,
    /// The retired trial plan.
    Trial,
}

/// `GET /users/{id}/profile` of build 1.8.2.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "UserProfile")]
pub struct UserProfileV1 {
    /// The tenant that served it.
    pub tenant: String,
    /// User id.
    pub user_id: i64,
    /// Display name.
    pub display_name: Option<String>,
    /// Plan.
    pub plan: LegacyPlan,
}

/// `GET /users/{id}/profile` of build 1.8.3.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "UserProfile")]
pub struct UserProfileV2 {
    /// The tenant that served it.
    pub tenant: String,
    /// User id.
    pub user_id: i64,
    /// Display name.
    pub display_name: Option<String>,
    /// Plan.
    pub plan: Plan,
    /// Key version the profile's secrets are encrypted under (readers default it, so
    /// profiles written before 1.8.3 stay readable).
    #[serde(default)]
    pub encryption_key_version: u32,
}

/// A build of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Schema 1.8.2, contract v1.
    V1,
    /// Schema 1.8.3, contract v2.
    V2,
}

impl Build {
    /// Its schema version.
    pub fn schema_version(self) -> &'static str {
        match self {
            Build::V1 => "1.8.2",
            Build::V2 => "1.8.3",
        }
    }

    /// The JSON Schema of its response type, as schemars emits it.
    pub fn contract_schema(self) -> serde_json::Value {
        let schema = match self {
            Build::V1 => schemars::schema_for!(UserProfileV1),
            Build::V2 => schemars::schema_for!(UserProfileV2),
        };
        serde_json::to_value(schema).expect("a schema serializes")
    }

    /// Its contract hash (computed once per build: it is stamped on every response).
    pub fn contract_hash(self) -> ContractHash {
        static HASHES: OnceLock<[ContractHash; 2]> = OnceLock::new();
        let hash = |b: Build| {
            edgegen_shared::contract::contract_hash_value(&b.contract_schema()).expect("schemars output canonicalizes")
        };
        let hashes = HASHES.get_or_init(|| [hash(Build::V1), hash(Build::V2)]);
        match self {
            Build::V1 => hashes[0],
            Build::V2 => hashes[1],
        }
    }
}

/// The SQLite DDL of schema 1.8.2 for one shard.
const SHARD_DDL: &str = "
CREATE TABLE users (tenant_id TEXT NOT NULL, id INTEGER NOT NULL, email TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, email));
CREATE TABLE profiles (tenant_id TEXT NOT NULL, user_id INTEGER NOT NULL, display_name TEXT,
    plan TEXT NOT NULL DEFAULT 'free', PRIMARY KEY (tenant_id, user_id));";

/// The 1.8.3 migration for a shard (SQLite needs a default to add a NOT NULL column: it
/// backfills existing rows).
const MIGRATION_1_8_3: &str = "ALTER TABLE profiles ADD COLUMN encryption_key_version INTEGER NOT NULL DEFAULT 1;";

struct Shared {
    build: RwLock<Build>,
    shards: BTreeMap<String, Mutex<rusqlite::Connection>>,
}

/// A running demo origin; stopped (gracefully) on drop.
pub struct DemoOrigin {
    server: BackgroundServer,
    shared: Arc<Shared>,
    paths: BTreeMap<TenantId, PathBuf>,
}

impl DemoOrigin {
    /// Creates one shard per tenant under `dir` (schema 1.8.2, a few users each) and starts
    /// the origin on build 1.8.2.
    ///
    /// # Errors
    /// When a shard cannot be created or the port bound.
    pub fn start(dir: &Path, tenants: &[TenantId]) -> anyhow::Result<Self> {
        let mut shards = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for tenant in tenants {
            let path = dir.join(format!("{tenant}.db"));
            let conn = rusqlite::Connection::open(&path).with_context(|| format!("creating {}", path.display()))?;
            conn.execute_batch(SHARD_DDL)?;
            for id in 1..=50i64 {
                conn.execute(
                    "INSERT INTO users (tenant_id, id, email) VALUES (?1, ?2, ?3)",
                    rusqlite::params![tenant.as_str(), id, format!("user{id}@{tenant}.example")],
                )?;
                conn.execute(
                    "INSERT INTO profiles (tenant_id, user_id, display_name, plan) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        tenant.as_str(),
                        id,
                        format!("{tenant} user {id}"),
                        if id % 3 == 0 { "pro" } else { "free" }
                    ],
                )?;
            }
            shards.insert(tenant.to_string(), Mutex::new(conn));
            paths.insert(tenant.clone(), path);
        }
        let shared = Arc::new(Shared { build: RwLock::new(Build::V1), shards });
        let app = Router::new().route("/users/{id}/profile", get(profile)).with_state(Arc::clone(&shared));
        let server = BackgroundServer::start("demo-origin", app)?;
        Ok(DemoOrigin { server, shared, paths })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The shard files, per tenant (for the coordinator's `[shards]`).
    pub fn shard_paths(&self) -> &BTreeMap<TenantId, PathBuf> {
        &self.paths
    }

    /// Applies the 1.8.3 migration to every shard (the build does not change).
    ///
    /// # Errors
    /// When a shard refuses the migration.
    pub fn migrate_to_1_8_3(&self) -> anyhow::Result<()> {
        for (tenant, conn) in &self.shared.shards {
            conn.lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute_batch(MIGRATION_1_8_3)
                .with_context(|| format!("migrating {tenant}"))?;
        }
        Ok(())
    }

    /// Puts users 2 and 4 of `tenant` on the legacy `trial` plan (data the 1.8.3 contract
    /// cannot read).
    ///
    /// # Errors
    /// Unknown tenant, or the shard refuses the update.
    pub fn hold_legacy_plan(&self, tenant: &str) -> anyhow::Result<()> {
        self.set_plans(tenant, "UPDATE profiles SET plan = 'trial' WHERE tenant_id = ?1 AND user_id IN (2, 4)")
    }

    /// The data fix: `tenant`'s trial profiles move to the free plan.
    ///
    /// # Errors
    /// Unknown tenant, or the shard refuses the update.
    pub fn retire_legacy_plan(&self, tenant: &str) -> anyhow::Result<()> {
        self.set_plans(tenant, "UPDATE profiles SET plan = 'free' WHERE tenant_id = ?1 AND plan = 'trial'")
    }

    fn set_plans(&self, tenant: &str, sql: &str) -> anyhow::Result<()> {
        let shard = self.shared.shards.get(tenant).with_context(|| format!("no shard for {tenant}"))?;
        shard.lock().unwrap_or_else(|p| p.into_inner()).execute(sql, rusqlite::params![tenant])?;
        Ok(())
    }

    /// Deploys a build.
    pub fn deploy(&self, build: Build) {
        *self.shared.build.write().unwrap_or_else(|p| p.into_inner()) = build;
    }
}

async fn profile(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<i64>, headers: HeaderMap) -> Response {
    let Some(tenant) = headers.get("edgegen-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return (StatusCode::BAD_REQUEST, "no tenant").into_response();
    };
    let Some(shard) = shared.shards.get(&tenant) else {
        return (StatusCode::NOT_FOUND, "unknown tenant").into_response();
    };
    let build = *shared.build.read().unwrap_or_else(|p| p.into_inner());
    let row = {
        let conn = shard.lock().unwrap_or_else(|p| p.into_inner());
        let sql = match build {
            Build::V1 => "SELECT display_name, plan, 0 FROM profiles WHERE tenant_id = ?1 AND user_id = ?2",
            Build::V2 => {
                "SELECT display_name, plan, encryption_key_version FROM profiles WHERE tenant_id = ?1 AND user_id = ?2"
            }
        };
        conn.query_row(sql, rusqlite::params![tenant, id], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })
    };
    let (display_name, plan, key_version) = match row {
        Ok(row) => row,
        Err(rusqlite::Error::QueryReturnedNoRows) => {
            return ([("cache-control", "public, max-age=30")], (StatusCode::NOT_FOUND, "no such user"))
                .into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let body = match build {
        Build::V1 => {
            let plan = match plan.as_str() {
                "pro" => LegacyPlan::Pro,
                "trial" => LegacyPlan::Trial,
                _ => LegacyPlan::Free,
            };
            serde_json::to_string(&UserProfileV1 { tenant, user_id: id, display_name, plan })
        }
        Build::V2 => serde_json::to_string(&UserProfileV2 {
            tenant,
            user_id: id,
            display_name,
            plan: if plan == "pro" { Plan::Pro } else { Plan::Free },
            encryption_key_version: u32::try_from(key_version).unwrap_or(0),
        }),
    };
    let Ok(body) = body else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    (
        [
            ("content-type", "application/json".to_owned()),
            ("cache-control", "public, max-age=60".to_owned()),
            ("surrogate-key", format!("profiles user-{id}")),
            ("edgegen-schema", build.schema_version().to_owned()),
            ("edgegen-contract", build.contract_hash().to_string()),
        ],
        body,
    )
        .into_response()
}

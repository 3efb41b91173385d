//! Reading rows back into values: the tenant map, open releases, PoPs and releases. Every
//! stored value is validated on the way out; one that does not validate is a
//! [`StoreError`] naming it, never a panic.

use std::collections::HashMap;

use edgegen_shared::api::{Release, ReleaseKind, ReleaseStatus, StoredReport, TenantChange};
use edgegen_shared::{ContractHash, Generation, PopId, ReleaseId, SchemaVersion, TenantId};
use rusqlite::{Connection, OptionalExtension};

use super::{corrupt, enum_column};
use crate::convergence::{OpenRelease, OpenReleases};
use crate::domain::TenantState;
use crate::store::StoreError;

pub(super) fn load_tenants(conn: &Connection) -> Result<HashMap<TenantId, TenantState>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, hosts, generation, schema_version, contract_hash, release_id FROM tenants
         WHERE removed_at IS NULL",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, hosts, generation, schema, contract, release) = row?;
        let state = TenantState {
            id: TenantId::new(id).map_err(corrupt)?,
            hosts: serde_json::from_str(&hosts).map_err(corrupt)?,
            generation: Generation(generation as u64),
            schema_version: SchemaVersion::new(&schema).map_err(corrupt)?,
            contract_hash: ContractHash::new(&contract).map_err(corrupt)?,
            release_id: release.map(ReleaseId::new).transpose().map_err(corrupt)?,
        };
        out.insert(state.id.clone(), state);
    }
    Ok(out)
}

pub(super) fn load_open_releases(conn: &Connection) -> Result<OpenReleases, StoreError> {
    let mut open: HashMap<ReleaseId, OpenRelease> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT r.id, rt.tenant_id, rt.to_generation, r.committed_at, r.kind FROM releases r
         JOIN release_tenants rt ON rt.release_id = r.id WHERE r.status = 'committed'",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (id, tenant, to, committed_at, kind) = row?;
        let release = open.entry(ReleaseId::new(id).map_err(corrupt)?).or_default();
        release.committed_at = committed_at as u64;
        release.rollback = enum_column(&kind, ReleaseKind::parse, "release kind")? == ReleaseKind::Rollback;
        release.targets.insert(TenantId::new(tenant).map_err(corrupt)?, Generation(to as u64));
    }
    let mut stmt = conn.prepare(
        "SELECT DISTINCT r.id, a.pop, a.tenant_id FROM releases r
         JOIN release_tenants rt ON rt.release_id = r.id
         JOIN acks a ON a.tenant_id = rt.tenant_id AND a.generation >= rt.to_generation
         WHERE r.status = 'committed'",
    )?;
    let rows =
        stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))?;
    for row in rows {
        let (id, pop, tenant) = row?;
        if let Some(release) = open.get_mut(&ReleaseId::new(id).map_err(corrupt)?) {
            let set = release.acked.entry(PopId::new(pop).map_err(corrupt)?).or_default();
            set.insert(TenantId::new(tenant).map_err(corrupt)?);
        }
    }
    let mut releases = OpenReleases::default();
    for (id, release) in open {
        releases.insert(id, release);
    }
    Ok(releases)
}

pub(super) fn load_pops(conn: &Connection) -> Result<HashMap<PopId, u64>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, last_seen FROM pops")?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
    rows.map(|row| {
        let (id, last_seen) = row?;
        Ok((PopId::new(id).map_err(corrupt)?, last_seen as u64))
    })
    .collect()
}

/// PoPs that acknowledged something within `window_ms` before `now`.
pub(super) fn live_pops(conn: &Connection, now: u64, window_ms: u64) -> Result<Vec<PopId>, StoreError> {
    let since = now.saturating_sub(window_ms) as i64;
    let mut stmt = conn.prepare_cached("SELECT id FROM pops WHERE last_seen >= ?1 ORDER BY id")?;
    let ids = stmt.query_map([since], |r| r.get::<_, String>(0))?;
    ids.map(|id| PopId::new(id?).map_err(corrupt)).collect()
}

/// The total number of releases (rollbacks included) and a page of them, newest first.
pub(super) fn list_releases(conn: &Connection, offset: u32, limit: u32) -> Result<(u64, Vec<Release>), StoreError> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM releases", [], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached("SELECT id FROM releases ORDER BY seq DESC LIMIT ?1 OFFSET ?2")?;
    let ids = stmt
        .query_map([i64::from(limit), i64::from(offset)], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut releases = Vec::with_capacity(ids.len());
    for id in ids {
        releases.extend(load_release(conn, &ReleaseId::new(id).map_err(corrupt)?)?);
    }
    Ok((u64::try_from(total).unwrap_or(0), releases))
}

/// The total number of stored edge reports and a page of them, newest first.
pub(super) fn list_reports(conn: &Connection, offset: u32, limit: u32) -> Result<(u64, Vec<StoredReport>), StoreError> {
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0))?;
    let mut stmt =
        conn.prepare_cached("SELECT id, received_at, body FROM reports ORDER BY id DESC LIMIT ?1 OFFSET ?2")?;
    let rows = stmt
        .query_map([i64::from(limit), i64::from(offset)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let reports = rows
        .into_iter()
        .map(|(id, received_at, body)| {
            let report = serde_json::from_str(&body).map_err(|e| StoreError::corrupt(format!("report {id}"), e))?;
            Ok(StoredReport { id, received_at: u64::try_from(received_at).unwrap_or(0), report })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((u64::try_from(total).unwrap_or(0), reports))
}

pub(super) fn load_release(conn: &Connection, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
    let row = conn
        .query_row(
            "SELECT kind, rollback_of, rolled_back_by, status, committed_at, converged_at, execution_log
                 FROM releases WHERE id = ?1",
            [id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((kind, rollback_of, rolled_back_by, status, committed_at, converged_at, log)) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT tenant_id, from_generation, to_generation, from_schema_version, to_schema_version,
                    from_contract_hash, to_contract_hash
             FROM release_tenants WHERE release_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut tenants = Vec::new();
    for row in rows {
        let (tenant, from, to, from_schema, to_schema, from_contract, to_contract) = row?;
        tenants.push(TenantChange {
            tenant: TenantId::new(tenant).map_err(corrupt)?,
            from_generation: Generation(from as u64),
            to_generation: Generation(to as u64),
            from_schema_version: SchemaVersion::new(&from_schema).map_err(corrupt)?,
            to_schema_version: SchemaVersion::new(&to_schema).map_err(corrupt)?,
            from_contract_hash: ContractHash::new(&from_contract).map_err(corrupt)?,
            to_contract_hash: ContractHash::new(&to_contract).map_err(corrupt)?,
        });
    }
    Ok(Some(Release {
        id: id.clone(),
        kind: enum_column(&kind, ReleaseKind::parse, "release kind")?,
        rollback_of: rollback_of.map(ReleaseId::new).transpose().map_err(corrupt)?,
        rolled_back_by: rolled_back_by.map(ReleaseId::new).transpose().map_err(corrupt)?,
        status: enum_column(&status, parse_status, "release status")?,
        committed_at: committed_at as u64,
        converged_at: converged_at.map(|t| t as u64),
        tenants,
        execution_log: serde_json::from_str(&log).map_err(corrupt)?,
    }))
}

fn parse_status(text: &str) -> Option<ReleaseStatus> {
    [ReleaseStatus::Committed, ReleaseStatus::Converged, ReleaseStatus::RolledBack, ReleaseStatus::Failed]
        .into_iter()
        .find(|s| s.as_str() == text)
}

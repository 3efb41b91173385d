//! The outbox table: effects written inside a release's or a registration's transaction
//! ([`enqueue`]), taken when due, and each attempt's outcome recorded together with the
//! release's execution-log step (a registration's effect has none) in one transaction.

use edgegen_shared::ReleaseId;
use edgegen_shared::api::{ExecutionLog, Step};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Writer, corrupt};
use crate::execlog;
use crate::outbox::{Effect, EffectKind};
use crate::store::StoreError;

/// Writes `effect` for `release` (`None`: a registration), due at once, on `tx` (the
/// transaction that wrote the release or the tenant).
pub(super) fn enqueue(
    tx: &Connection,
    release: Option<&ReleaseId>,
    effect: &EffectKind,
    now: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox (release_id, effect, attempts, next_attempt_at) VALUES (?1, ?2, 0, ?3)",
        params![release.map(ReleaseId::as_str), serde_json::to_string(effect)?, now as i64],
    )?;
    Ok(())
}

/// Replaces the step of the same name in the stored execution log of `release`.
pub(super) fn replace_step(tx: &Connection, release: &str, step: Step) -> Result<(), StoreError> {
    let log: Option<String> =
        tx.query_row("SELECT execution_log FROM releases WHERE id = ?1", [release], |r| r.get(0)).optional()?;
    let log = log.ok_or_else(|| StoreError::internal(format!("release {release} of an outbox effect vanished")))?;
    let mut log: ExecutionLog = serde_json::from_str(&log)?;
    execlog::replace_step(&mut log, step);
    tx.execute("UPDATE releases SET execution_log = ?1 WHERE id = ?2", params![serde_json::to_string(&log)?, release])?;
    Ok(())
}

impl Writer {
    pub(super) fn due_effects(&mut self, now: u64, limit: usize) -> Result<Vec<Effect>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, release_id, effect, attempts FROM outbox
             WHERE done_at IS NULL AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, release, effect, attempts) = row?;
            out.push(Effect {
                id,
                release: release.map(ReleaseId::new).transpose().map_err(corrupt)?,
                kind: serde_json::from_str(&effect)?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        Ok(out)
    }

    pub(super) fn record_attempt(
        &mut self,
        effect: i64,
        step: Option<Step>,
        retry_at: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms() as i64;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let release: Option<String> = tx
            .query_row("SELECT release_id FROM outbox WHERE id = ?1", [effect], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::internal(format!("outbox effect {effect} vanished")))?;
        match retry_at {
            Some(at) => tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1 WHERE id = ?2",
                params![at as i64, effect],
            )?,
            None => tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, done_at = ?1 WHERE id = ?2",
                params![now, effect],
            )?,
        };
        if let (Some(release), Some(step)) = (release, step) {
            replace_step(&tx, &release, step)?;
        }
        tx.commit()?;
        Ok(())
    }
}

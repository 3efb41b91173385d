//! The SQLite schema, created on open (`CREATE ... IF NOT EXISTS`), and the migrations of
//! an older database: the only DDL of the SQLite store.

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    hosts TEXT NOT NULL,
    generation INTEGER NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    contract_schema TEXT,
    release_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    removed_at INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS tenant_hosts (
    host TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id)
) STRICT;
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('release', 'rollback')),
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    rollback_of TEXT REFERENCES releases(id),
    rolled_back_by TEXT REFERENCES releases(id),
    status TEXT NOT NULL CHECK (status IN ('committed', 'converged', 'rolled_back', 'failed')),
    committed_at INTEGER NOT NULL,
    converged_at INTEGER,
    execution_log TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS release_tenants (
    release_id TEXT NOT NULL REFERENCES releases(id),
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    position INTEGER NOT NULL,
    from_generation INTEGER NOT NULL,
    to_generation INTEGER NOT NULL,
    from_schema_version TEXT NOT NULL,
    to_schema_version TEXT NOT NULL,
    from_contract_hash TEXT NOT NULL,
    to_contract_hash TEXT NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
) STRICT;
CREATE TABLE IF NOT EXISTS generations (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    generation INTEGER NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    release_id TEXT REFERENCES releases(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, generation)
) STRICT;
CREATE TABLE IF NOT EXISTS pops (
    id TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS fetches (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    lease_until INTEGER,
    PRIMARY KEY (pop, tenant_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (pop, tenant_id, generation)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acks_by_tenant ON acks (tenant_id, generation);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS reports_by_tenant ON reports (tenant_id, generation);
";

/// The outbox. `release_id` is NULL for a registration's host-map sync.
const OUTBOX: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    release_id TEXT REFERENCES releases(id),
    effect TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    done_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;
";

/// Creates what is missing; adds `tenants.removed_at` to a database made before tenants
/// could be removed; rebuilds an outbox made when every effect had a release
/// (`release_id NOT NULL`), keeping its rows.
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(OUTBOX)?;
    let removable: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('tenants') WHERE name = 'removed_at')",
        [],
        |r| r.get(0),
    )?;
    if !removable {
        conn.execute_batch("ALTER TABLE tenants ADD COLUMN removed_at INTEGER")?;
    }
    let release_required: bool =
        conn.query_row("SELECT \"notnull\" FROM pragma_table_info('outbox') WHERE name = 'release_id'", [], |r| {
            r.get(0)
        })?;
    if release_required {
        // The rename takes the old index along; it goes with the old table.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             ALTER TABLE outbox RENAME TO outbox_before_host_sync;
             {OUTBOX}
             INSERT INTO outbox (id, release_id, effect, attempts, next_attempt_at, done_at)
               SELECT id, release_id, effect, attempts, next_attempt_at, done_at FROM outbox_before_host_sync;
             DROP TABLE outbox_before_host_sync;
             {OUTBOX}
             COMMIT;"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_that_required_a_release_is_rebuilt_with_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(&OUTBOX.replace("release_id TEXT REFERENCES", "release_id TEXT NOT NULL REFERENCES"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO releases (seq, id, kind, status, committed_at, execution_log)
               VALUES (1, 'rel-1', 'release', 'committed', 1, '{}');
             INSERT INTO outbox (release_id, effect, next_attempt_at) VALUES ('rel-1', '{}', 5);",
        )
        .unwrap();
        assert!(
            conn.execute("INSERT INTO outbox (release_id, effect, next_attempt_at) VALUES (NULL, '{}', 5)", [])
                .is_err()
        );
        create(&conn).unwrap();
        create(&conn).unwrap(); // idempotent
        conn.execute("INSERT INTO outbox (release_id, effect, next_attempt_at) VALUES (NULL, '{}', 6)", []).unwrap();
        let rows: Vec<(Option<String>, i64)> = conn
            .prepare("SELECT release_id, next_attempt_at FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(Some("rel-1".to_owned()), 5), (None, 6)]);
        let indexed: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'outbox_due'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(indexed, 1);
    }

    #[test]
    fn tenants_made_before_removal_gain_removed_at_with_their_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&SCHEMA.replace(",\n    removed_at INTEGER", "")).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, hosts, generation, schema_version, contract_hash, created_at, updated_at)
               VALUES ('acme', '[]', 1, '1.0.0', 'x', 1, 1)",
        )
        .unwrap();
        assert!(conn.prepare("SELECT removed_at FROM tenants").is_err(), "the old schema lacks the column");
        create(&conn).unwrap();
        create(&conn).unwrap(); // idempotent
        let removed: Option<i64> = conn.query_row("SELECT removed_at FROM tenants", [], |r| r.get(0)).unwrap();
        assert_eq!(removed, None);
    }
}

//! The SQLite schema, created on open (`CREATE ... IF NOT EXISTS`): the only DDL of the
//! SQLite store.

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
    updated_at INTEGER NOT NULL
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

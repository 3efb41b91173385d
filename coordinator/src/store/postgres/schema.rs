//! The PostgreSQL schema, created on open under an advisory lock: the only DDL of the
//! PostgreSQL store.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    hosts TEXT NOT NULL,
    generation BIGINT NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    contract_schema TEXT,
    release_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE TABLE IF NOT EXISTS tenant_hosts (
    host TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id)
);
CREATE SEQUENCE IF NOT EXISTS release_seq;
CREATE TABLE IF NOT EXISTS releases (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('release', 'rollback')),
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    rollback_of TEXT REFERENCES releases(id),
    rolled_back_by TEXT REFERENCES releases(id),
    status TEXT NOT NULL CHECK (status IN ('committed', 'converged', 'rolled_back', 'failed')),
    committed_at BIGINT NOT NULL,
    converged_at BIGINT,
    execution_log TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_open ON releases (committed_at) WHERE status = 'committed';
CREATE TABLE IF NOT EXISTS release_tenants (
    release_id TEXT NOT NULL REFERENCES releases(id),
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    position BIGINT NOT NULL,
    from_generation BIGINT NOT NULL,
    to_generation BIGINT NOT NULL,
    from_schema_version TEXT NOT NULL,
    to_schema_version TEXT NOT NULL,
    from_contract_hash TEXT NOT NULL,
    to_contract_hash TEXT NOT NULL,
    PRIMARY KEY (release_id, tenant_id)
);
CREATE INDEX IF NOT EXISTS release_tenants_by_tenant ON release_tenants (tenant_id, to_generation);
CREATE TABLE IF NOT EXISTS generations (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    generation BIGINT NOT NULL,
    schema_version TEXT NOT NULL,
    contract_hash TEXT NOT NULL,
    release_id TEXT REFERENCES releases(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, generation)
);
CREATE TABLE IF NOT EXISTS pops (
    id TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS fetches (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    PRIMARY KEY (pop, tenant_id)
);
-- No statement handed to the PoP for the tenant expires later (NULL: rows from before it was kept).
ALTER TABLE fetches ADD COLUMN IF NOT EXISTS lease_until BIGINT;
CREATE TABLE IF NOT EXISTS acks (
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    observed_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (pop, tenant_id, generation)
);
CREATE INDEX IF NOT EXISTS acks_by_tenant ON acks (tenant_id, generation);
CREATE TABLE IF NOT EXISTS reports (
    id BIGSERIAL PRIMARY KEY,
    pop TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    generation BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_tenant ON reports (tenant_id, generation);
CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY,
    release_id TEXT REFERENCES releases(id),
    effect TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;
-- The tenant epoch: one row, bumped by every transaction that changes a tenant (and held
-- locked until that transaction commits), which also stamps the tenants it changed. A
-- snapshot that reads epoch N sees exactly the tenant changes stamped 1..=N: what each
-- replica's manifest cache (postgres/tenant_cache.rs) validates against.
CREATE TABLE IF NOT EXISTS tenant_epoch (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    n BIGINT NOT NULL
);
INSERT INTO tenant_epoch (singleton, n) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS tenants_by_epoch ON tenants (epoch);
-- A registration's host-map sync has no release (databases made before it required one).
ALTER TABLE outbox ALTER COLUMN release_id DROP NOT NULL;
-- Tenants can be removed (databases made before that lack the column).
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS removed_at BIGINT;
-- One row per running replica: the tenant epoch its manifest cache has applied, and until
-- when (database clock, ms) it may serve that cache without a round trip. A commit is
-- acknowledged once every live row has applied it (postgres/tenant_cache.rs).
CREATE TABLE IF NOT EXISTS replica_leases (
    id BIGSERIAL PRIMARY KEY,
    applied BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
";

-- The demo service's schema before the release: tenant tables fenced by forced RLS.
CREATE TABLE users (
    tenant_id text NOT NULL,
    id bigint NOT NULL,
    email text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_tenant ON users USING (tenant_id = current_setting('app.tenant'));

CREATE TABLE profiles (
    tenant_id text NOT NULL,
    user_id bigint NOT NULL,
    display_name text,
    plan text NOT NULL DEFAULT 'free',
    PRIMARY KEY (tenant_id, user_id)
);
ALTER TABLE profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY profiles_tenant ON profiles USING (tenant_id = current_setting('app.tenant'));

-- 0001_init: principals and their tokens, wrapped keys, and the append-only audit trail.
-- Applied inside one transaction by `sluice init` / `sluice serve`; recorded in
-- schema_migrations. The gateway's runtime role, sluice_gw, gets only what it needs.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice_gw') THEN
        CREATE ROLE sluice_gw NOLOGIN;
    END IF;
END
$$;
GRANT sluice_gw TO CURRENT_USER;

CREATE TABLE principals (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    kind        text NOT NULL CHECK (kind IN ('user', 'service')),
    roles       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(roles) = 'array'),
    attributes  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a keyed hash (HMAC-SHA-256) of each token's secret is stored.
CREATE TABLE tokens (
    token_id     text PRIMARY KEY CHECK (token_id ~ '^[0-9a-f]{16}$'),
    principal_id bigint NOT NULL REFERENCES principals (id),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX tokens_principal ON tokens (principal_id);

-- Keys of the key hierarchy below the master key, wrapped by it (XChaCha20-Poly1305).
CREATE TABLE wrapped_keys (
    purpose        text PRIMARY KEY,
    master_version integer NOT NULL,
    wrapped        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The audit trail. `canon` is the RFC 8785 text of the event without its hash, exactly
-- as hashed; the other columns repeat fields of it for filtering, and verification
-- checks that they agree.
CREATE TABLE audit_events (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    ts        timestamptz NOT NULL,
    principal text,
    action    text NOT NULL,
    resource  text NOT NULL,
    decision  text NOT NULL,
    status    integer NOT NULL,
    canon     text NOT NULL,
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_events_ts ON audit_events (ts);
CREATE INDEX audit_events_principal ON audit_events (principal, seq);

-- A signed head for every group commit.
CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY,
    hash      text NOT NULL,
    ts        text NOT NULL,
    key_id    text NOT NULL,
    signature text NOT NULL
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO sluice_gw;
GRANT SELECT, INSERT, UPDATE ON principals, tokens TO sluice_gw;
GRANT USAGE ON SEQUENCE principals_id_seq TO sluice_gw;
GRANT SELECT, INSERT ON wrapped_keys TO sluice_gw;
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO sluice_gw;
GRANT SELECT ON schema_migrations TO sluice_gw;

-- 0002_auth_check: lets gateways cache authentications without weakening revocation.
-- A principal's version grows with every change to it (roles, attributes, disabled), so
-- a cached principal can be checked against the database cheaply. The audit writer
-- checks, in the statement that appends a batch's events, that every authentication
-- taken from a cache still holds; when one does not, nothing of the batch is written
-- and the requests concerned are authenticated again from the database, so revoking a
-- token or changing a principal takes effect on the next request whichever gateway
-- serves it.

ALTER TABLE principals ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);

-- Every change to a principal moves its version on, whoever makes it (a gateway, or an
-- operator with SQL), so no cached copy of the old one is believed.
CREATE FUNCTION principals_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER principals_version BEFORE UPDATE ON principals
    FOR EACH ROW EXECUTE FUNCTION principals_next_version();

-- The ordinals (1-based) of the (token, principal version) pairs that no longer hold:
-- unknown or revoked token, expired, principal disabled or changed since. The audit
-- writer's INSERT appends a batch only when this is empty (it is inlined there).
CREATE FUNCTION sluice_auth_stale(token_ids text[], versions bigint[])
RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    SELECT u.o
      FROM unnest(token_ids, versions) WITH ORDINALITY AS u(tid, ver, o)
      LEFT JOIN tokens t ON t.token_id = u.tid
      LEFT JOIN principals p ON p.id = t.principal_id
     WHERE t.token_id IS NULL OR p.id IS NULL OR t.revoked_at IS NOT NULL
        OR t.expires_at <= now() OR p.disabled OR p.version IS DISTINCT FROM u.ver
$$;

REVOKE ALL ON FUNCTION sluice_auth_stale(text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sluice_auth_stale(text[], bigint[]) TO sluice_gw;

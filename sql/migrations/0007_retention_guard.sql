-- 0007_retention_guard: retention and legal holds enforced by the database as well as by
-- the gateway, so that a bug in the gateway cannot shred a protected version or shorten
-- compliance retention. A version may leave 'live' for 'shredded' only when its dataset
-- has no legal hold and its min_days have passed (by the database's clock), or, in
-- governance mode, when the transaction declared an admin's bypass
-- (SET LOCAL sluice.bypass_governance = 'on', which the gateway does only for one).

CREATE FUNCTION sluice_retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    IF OLD.state = 'live' AND NEW.state = 'shredded' THEN
        SELECT name, legal_hold, retention_min_days, retention_mode INTO d
            FROM datasets WHERE id = OLD.dataset_id;
        IF d.legal_hold THEN
            RAISE EXCEPTION 'sluice: dataset % is under a legal hold', d.name;
        END IF;
        IF d.retention_min_days IS NOT NULL AND
           now() < OLD.live_at + d.retention_min_days * interval '1 day' AND
           NOT (d.retention_mode = 'governance' AND
                coalesce(current_setting('sluice.bypass_governance', true), '') = 'on') THEN
            RAISE EXCEPTION 'sluice: version % of dataset % is under % retention',
                OLD.version, d.name, d.retention_mode;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER dataset_versions_retention BEFORE UPDATE ON dataset_versions
    FOR EACH ROW EXECUTE FUNCTION sluice_retention_guard();

CREATE FUNCTION sluice_compliance_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.retention_mode = 'compliance' AND (
        NEW.retention_mode IS DISTINCT FROM 'compliance' OR
        coalesce(NEW.retention_min_days, 0) < coalesce(OLD.retention_min_days, 0) OR
        (NEW.retention_max_days IS NOT NULL AND
         (OLD.retention_max_days IS NULL OR NEW.retention_max_days < OLD.retention_max_days))) THEN
        RAISE EXCEPTION 'sluice: compliance retention of dataset % cannot be shortened', OLD.name;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER datasets_compliance BEFORE UPDATE ON datasets
    FOR EACH ROW EXECUTE FUNCTION sluice_compliance_guard();

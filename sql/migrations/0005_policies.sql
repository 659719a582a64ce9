-- 0005_policies: data owners' policies on their datasets and administrators' global
-- policies. Every change makes a new version and versions are never changed, so the
-- policy versions an audit event names always say what decided it.

CREATE TABLE dataset_policies (
    dataset_id bigint NOT NULL REFERENCES datasets (id),
    version    integer NOT NULL CHECK (version > 0),
    document   jsonb NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    created_by bigint NOT NULL REFERENCES principals (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, version)
);
-- the dataset's current policy version (0: none yet)
ALTER TABLE datasets ADD COLUMN policy_version integer NOT NULL DEFAULT 0
    CHECK (policy_version >= 0);

-- A global policy's versions; a deletion is a version without a document.
CREATE TABLE global_policies (
    name       text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    version    integer NOT NULL CHECK (version > 0),
    document   jsonb CHECK (document IS NULL OR jsonb_typeof(document) = 'object'),
    created_by bigint NOT NULL REFERENCES principals (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

GRANT SELECT, INSERT ON dataset_policies, global_policies TO sluice_gw;

-- 0004_datasets: datasets, their immutable versions, and each version's data key.
-- A version's row is made when its upload begins (state 'uploading', which reserves its
-- number) and becomes visible only when the transaction that records its manifest sets
-- it 'live', after the upload's fragments are written and fsynced and its audit event is
-- committed. Deleting a version destroys its wrapped data key (crypto-shredding): the
-- row stays, 'shredded', so its number is never given again.

CREATE TABLE datasets (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    owner_id       bigint NOT NULL REFERENCES principals (id),
    classification text NOT NULL
                   CHECK (classification IN ('public', 'internal', 'confidential', 'restricted')),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 4096),
    -- [{"name", "type" (absent: inferred at upload), "tags": [...]}], in column order
    columns        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(columns) = 'array'),
    next_version   integer NOT NULL DEFAULT 1 CHECK (next_version > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX datasets_owner ON datasets (owner_id, name);

CREATE TABLE dataset_versions (
    dataset_id     bigint NOT NULL REFERENCES datasets (id),
    version        integer NOT NULL CHECK (version > 0),
    state          text NOT NULL CHECK (state IN ('uploading', 'live', 'shredded')),
    -- the version's data key, wrapped by master key `master_version` (XChaCha20-Poly1305,
    -- its AAD naming the dataset and version); NULL once shredded
    master_version integer NOT NULL,
    wrapped_key    bytea CHECK (wrapped_key IS NULL OR length(wrapped_key) = 72),
    key_version    integer NOT NULL DEFAULT 1,
    -- what st_ingest_finish records (no values); NULL until live
    manifest       jsonb,
    rows           bigint,
    bytes_in       bigint,
    bytes_stored   bigint,
    sha256         text,
    created_by     bigint NOT NULL REFERENCES principals (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    live_at        timestamptz,
    shredded_at    timestamptz,
    PRIMARY KEY (dataset_id, version),
    CHECK (state <> 'live' OR (manifest IS NOT NULL AND wrapped_key IS NOT NULL)),
    CHECK (state <> 'shredded' OR wrapped_key IS NULL)
);
CREATE INDEX dataset_versions_live ON dataset_versions (dataset_id, version) WHERE state = 'live';

GRANT SELECT, INSERT, UPDATE ON datasets, dataset_versions TO sluice_gw;
GRANT USAGE ON SEQUENCE datasets_id_seq TO sluice_gw;
-- the token key is rewrapped when the master key rotates
GRANT UPDATE ON wrapped_keys TO sluice_gw;
-- uploads that never finished are removed at start
GRANT DELETE ON dataset_versions TO sluice_gw;

-- 0006_retention: how long a dataset's versions live, and legal holds. Retention counts
-- from a version's becoming live: no deletion before min_days; after max_days the version
-- is crypto-shredded by the sweeper. A legal hold blocks every deletion, expiry included.

ALTER TABLE datasets
    ADD COLUMN retention_min_days double precision
        CHECK (retention_min_days >= 0 AND retention_min_days <= 36500),
    ADD COLUMN retention_max_days double precision
        CHECK (retention_max_days > 0 AND retention_max_days <= 36500),
    ADD COLUMN retention_mode text CHECK (retention_mode IN ('governance', 'compliance')),
    ADD COLUMN legal_hold boolean NOT NULL DEFAULT false,
    ADD COLUMN legal_hold_reason text NOT NULL DEFAULT '' CHECK (length(legal_hold_reason) <= 1024),
    ADD CONSTRAINT datasets_retention_order CHECK (retention_min_days IS NULL OR
        retention_max_days IS NULL OR retention_max_days >= retention_min_days),
    ADD CONSTRAINT datasets_retention_mode CHECK ((retention_mode IS NULL) =
        (retention_min_days IS NULL AND retention_max_days IS NULL));

-- the sweeper's question: which live versions are past their dataset's max_days
CREATE INDEX dataset_versions_live_at ON dataset_versions (live_at) WHERE state = 'live';

-- 0008_jobs: governed compute jobs and privacy budgets. A job is queued by POST /v1/jobs
-- and claimed by any gateway (FOR UPDATE SKIP LOCKED); its spec is the gateway's
-- normalised one, its result holds only what the release rules let out, with its signed
-- receipt. A principal's differential-privacy budget is kept per dataset.

CREATE TABLE jobs (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    principal_id  bigint NOT NULL REFERENCES principals (id),
    dataset_id    bigint NOT NULL REFERENCES datasets (id),
    version       integer NOT NULL CHECK (version > 0),
    kind          text NOT NULL CHECK (kind IN ('train', 'features')),
    purpose       text NOT NULL,
    spec          text NOT NULL CHECK (length(spec) <= 65536),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'refused',
                                    'cancelled')),
    progress_iteration integer,
    progress_loss double precision,
    error         text CHECK (length(error) <= 1024),
    result        text,
    time_limit_s  integer NOT NULL CHECK (time_limit_s > 0 AND time_limit_s <= 86400),
    epsilon       double precision CHECK (epsilon > 0 AND epsilon <= 10),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    heartbeat_at  timestamptz,
    claimed_by    text
);
CREATE INDEX jobs_queued ON jobs (created_at) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_principal ON jobs (principal_id, id);

CREATE TABLE privacy_budgets (
    dataset_id   bigint NOT NULL REFERENCES datasets (id),
    principal_id bigint NOT NULL REFERENCES principals (id),
    spent        double precision NOT NULL DEFAULT 0 CHECK (spent >= 0),
    total        double precision NOT NULL DEFAULT 10 CHECK (total >= 0),
    PRIMARY KEY (dataset_id, principal_id),
    CHECK (spent <= total)
);

GRANT SELECT, INSERT, UPDATE ON jobs, privacy_budgets TO sluice_gw;

/*
 * sql/db.h: sluice's data-access layer over libpq. Connections and a pool, migrations,
 * principals and tokens, wrapped keys, and the audit trail's rows. Every query is
 * parameterised; every PGresult is cleared before a function returns. Functions taking a
 * PGconn are as thread-safe as the connection: one thread per connection at a time.
 * Errors: SL_EUNAVAIL when the database cannot be reached or fails (the connection is
 * then marked broken), SL_ENOTFOUND / SL_ECONFLICT where stated.
 */
#ifndef DB_H
#define DB_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "sl.h"

/*
 * Bounds on every statement of the gateway's sessions: an answer waits at most about
 * the audit bound, so no query may hold it much longer (a locked table, a stalled
 * server). Audit exports and verification lift the statement bound for their stream.
 */
#define DB_STATEMENT_TIMEOUT "'3s'"
#define DB_LOCK_TIMEOUT      "'1s'"
/* The runtime role every pooled connection switches to (SET ROLE). */
#define DB_GW_ROLE "sluice_gw"
/* Advisory lock keys: migrations, and the audit chain's head (one writer at a time). */
#define DB_LOCK_MIGRATE 0x736c6d67LL
#define DB_LOCK_AUDIT   0x736c6175LL

typedef struct {
    int version;
    const char *name;
    const char *sql;
} db_migration;
extern const db_migration db_migrations[];
extern const int db_migration_count;

/*
 * Opens a connection (connect_timeout applies); with as_gateway it switches to the
 * runtime role DB_GW_ROLE so the session holds only the gateway's grants.
 */
sl_code db_connect(const char *conninfo, int as_gateway, PGconn **out, sl_err *err) SL_WUR;
/*
 * Applies every migration newer than the database's, each in its own transaction under an
 * advisory lock, and records it. Refuses (SL_ECONFLICT) a database whose schema is newer
 * than this binary knows. *applied counts the migrations applied now (may be NULL).
 */
sl_code db_migrate(const char *conninfo, int *applied, sl_err *err) SL_WUR;
/* Rolls back whatever transaction is open; best effort (a broken connection is dropped by
 * its owner anyway). */
void db_rollback(PGconn *c);
/* Runs a fixed statement with no parameters (BEGIN, COMMIT, ...). */
sl_code db_exec(PGconn *c, const char *sql, sl_err *err) SL_WUR;

/* A fixed-size pool of runtime connections, connected lazily and re-connected when broken. */
typedef struct db_pool db_pool;
db_pool *db_pool_new(const char *conninfo, int size);
void db_pool_free(db_pool *p);
/* Waits up to timeout_ms for a connection; SL_EUNAVAIL when none works. */
sl_code db_acquire(db_pool *p, int timeout_ms, PGconn **out, sl_err *err) SL_WUR;
/* Returns a connection; broken (or a bad status) closes it so it is re-made next time. */
void db_release(db_pool *p, PGconn *c, int broken);
/* 1 when a connection works now (SELECT 1). */
int db_pool_ping(db_pool *p);

/* Principals. JSON arguments are borrowed; results are new references the caller owns. */
typedef struct {
    int64_t id;
    char name[SL_MAX_NAME + 1];
    char kind[16];
    json_t *roles;      /* array of strings */
    json_t *attributes; /* object of strings */
    int disabled;
    int64_t created_us;
    int64_t version; /* grows with every change (see 0002_auth_check.sql) */
} db_principal;
void db_principal_clear(db_principal *p);
sl_code db_principal_insert(PGconn *c, const char *name, const char *kind, const json_t *roles,
                            const json_t *attributes, int64_t *id, sl_err *err) SL_WUR;
sl_code db_principal_get(PGconn *c, const char *name, db_principal *out, sl_err *err) SL_WUR;
/* Names after `after` (NULL = from the start) in order; *more set when a next page exists. */
sl_code db_principal_list(PGconn *c, const char *after, int limit, db_principal **out, int *n,
                          int *more, sl_err *err) SL_WUR;
void db_principal_list_free(db_principal *list, int n);
/* Changes what is not NULL / not negative. */
sl_code db_principal_update(PGconn *c, int64_t id, const json_t *roles, const json_t *attributes,
                            int disabled, sl_err *err) SL_WUR;
/* Serialises changes that could remove the last admin (inside the caller's transaction). */
sl_code db_lock_admins(PGconn *c, sl_err *err) SL_WUR;
/* Enabled principals holding the role `admin` other than `except_id`. */
sl_code db_admin_count_except(PGconn *c, int64_t except_id, int64_t *n, sl_err *err) SL_WUR;

typedef struct {
    int64_t principal_id;
    unsigned char hash[32];
    int64_t expires_us;
    int revoked;
} db_token;
sl_code db_token_insert(PGconn *c, const char *token_id, int64_t principal_id,
                        const unsigned char hash[32], int64_t expires_us, sl_err *err) SL_WUR;
/* The token and its principal in one round trip; SL_ENOTFOUND when no such token id. */
sl_code db_auth_lookup(PGconn *c, const char *token_id, db_token *tok, db_principal *p,
                       sl_err *err) SL_WUR;
/* The principal owning a token; SL_ENOTFOUND when none. */
sl_code db_token_owner(PGconn *c, const char *token_id, int64_t *principal_id, sl_err *err) SL_WUR;
/* Revokes; SL_ENOTFOUND when no such token or already revoked. */
sl_code db_token_revoke(PGconn *c, const char *token_id, sl_err *err) SL_WUR;
/* The tokens of a principal as a JSON array of {token_id, created_at, expires_at, revoked}. */
sl_code db_tokens_json(PGconn *c, int64_t principal_id, json_t **out, sl_err *err) SL_WUR;

/* Wrapped keys: SL_ENOTFOUND when absent. *blob is malloc'd. */
sl_code db_wrapped_key_get(PGconn *c, const char *purpose, int *master_version,
                           unsigned char **blob, size_t *len, sl_err *err) SL_WUR;
sl_code db_wrapped_key_put(PGconn *c, const char *purpose, int master_version,
                           const unsigned char *blob, size_t len, sl_err *err) SL_WUR;

/* Datasets (0004_datasets.sql). JSON documents are new references the caller owns. */
typedef struct {
    int64_t id;
    int64_t owner_id;
    char name[SL_MAX_NAME + 1];
    char classification[16];
    json_t *doc; /* {name, classification, owner, description, columns, versions, latest,
                    policy_version, retention, legal_hold, legal_hold_reason, created_at} */
    char retention_mode[16];   /* "governance", "compliance", or "" (none) */
    double min_days, max_days; /* -1: not set */
    int legal_hold;
} db_dataset;
void db_dataset_clear(db_dataset *d);
/* SL_ECONFLICT when the name is taken. */
sl_code db_dataset_insert(PGconn *c, const char *name, int64_t owner_id, const char *classification,
                          const char *description, const json_t *columns, int64_t *id,
                          sl_err *err) SL_WUR;
/* SL_ENOTFOUND when absent; for_update locks the row until the transaction ends. */
sl_code db_dataset_get(PGconn *c, const char *name, int for_update, db_dataset *out,
                       sl_err *err) SL_WUR;
/* Summaries after `after` by name, of one owner (owner_id > 0) or all. */
sl_code db_dataset_list(PGconn *c, int64_t owner_id, const char *after, int limit, json_t **items,
                        int *more, sl_err *err) SL_WUR;
/* Changes what is not NULL. */
sl_code db_dataset_update(PGconn *c, int64_t id, const char *description,
                          const char *classification, const json_t *columns, sl_err *err) SL_WUR;

/*
 * Policies (0005_policies.sql). A dataset's current policy: *doc a new reference (NULL
 * and *version 0 when it has none).
 */
sl_code db_policy_get(PGconn *c, int64_t dataset_id, json_t **doc, int *version,
                      sl_err *err) SL_WUR;
/* Records a new version of a dataset's policy and makes it current; the caller holds
 * the dataset's row locked (db_dataset_get for_update) in its transaction. */
sl_code db_policy_put(PGconn *c, int64_t dataset_id, const json_t *doc, int64_t created_by,
                      int *version, sl_err *err) SL_WUR;

/* The current global policies (deleted ones left out), by name. */
typedef struct {
    char name[SL_MAX_NAME + 1];
    int version;
    json_t *doc;
    char created_at[32];
} db_global;
sl_code db_globals_current(PGconn *c, db_global **out, size_t *n, sl_err *err) SL_WUR;
void db_globals_free(db_global *g, size_t n);
/*
 * A new version of global policy `name` (doc NULL: its deletion). SL_ENOTFOUND when
 * deleting one that does not exist; SL_ECONFLICT when another change of it came first.
 */
sl_code db_global_put(PGconn *c, const char *name, const json_t *doc, int64_t created_by,
                      int *version, sl_err *err) SL_WUR;

/*
 * Retention (0006_retention.sql): min_days/max_days -1 for not set; mode "governance" or
 * "compliance" (NULL clears all three).
 */
sl_code db_retention_set(PGconn *c, int64_t dataset_id, double min_days, double max_days,
                         const char *mode, sl_err *err) SL_WUR;
sl_code db_legal_hold_set(PGconn *c, int64_t dataset_id, int hold, const char *reason,
                          sl_err *err) SL_WUR;
/* The oldest live version past its dataset's max_days and not under a legal hold, locked
 * for the caller's transaction (skipping those another transaction holds). */
typedef struct {
    int64_t dataset_id;
    int version;
    char name[SL_MAX_NAME + 1];
    int master_version;
    char sha256[65];
    double max_days;
    int64_t live_us;
} db_expired;
sl_code db_version_expired(PGconn *c, db_expired *out, int *found, sl_err *err) SL_WUR;

/* A data key wrapped by a master key: 32 bytes + CRY_WRAP_OVERHEAD. */
#define DB_WRAPPED_DATA_KEY 72
typedef struct {
    int64_t dataset_id;
    int version;
    int master_version;
    int key_version;
    unsigned char wrapped[DB_WRAPPED_DATA_KEY];
    json_t *manifest; /* as st_ingest_finish made it */
    json_t *doc;      /* {version, rows, bytes_in, bytes_stored, sha256, row_groups,
                         created_by, created_at} */
    int64_t live_us;  /* when it became live (Unix microseconds, the database's clock) */
    int64_t age_us;   /* how long ago, by the database's clock (its transaction's start) */
} db_version;
void db_version_clear(db_version *v);
/* Takes the dataset's next version number (never given twice). */
sl_code db_version_next(PGconn *c, int64_t dataset_id, int *version, sl_err *err) SL_WUR;
/* Records an upload in progress (not visible) with its wrapped data key. */
sl_code db_version_insert(PGconn *c, int64_t dataset_id, int version, int64_t created_by,
                          int master_version, const unsigned char *wrapped, size_t wrapped_len,
                          sl_err *err) SL_WUR;
/* The key lock (DB_LOCK_KEYS) for the caller's transaction: shared or exclusive. */
sl_code db_lock_keys(PGconn *c, int exclusive, sl_err *err) SL_WUR;
/* Makes an upload's version live with its manifest (in the caller's transaction). */
sl_code db_version_publish(PGconn *c, int64_t dataset_id, int version, const json_t *manifest,
                           sl_err *err) SL_WUR;
/* Locks an upload's row while it is still in progress (*found 1), for the caller's
 * transaction: it cannot become live meanwhile. */
sl_code db_version_hold_upload(PGconn *c, int64_t dataset_id, int version, int *found,
                               sl_err *err) SL_WUR;
/* Forgets an upload that failed (its number is not given again); *gone is 1 when its
 * row was still an upload in progress (and is now gone), 0 otherwise. */
sl_code db_version_discard(PGconn *c, int64_t dataset_id, int version, int64_t *gone,
                           sl_err *err) SL_WUR;
/* A live version (0 = the latest); SL_ENOTFOUND when none. */
sl_code db_version_get(PGconn *c, int64_t dataset_id, int version, int for_update, db_version *out,
                       sl_err *err) SL_WUR;
/* Destroys a live version's wrapped key (crypto-shredding); SL_ENOTFOUND when not live. */
sl_code db_version_shred(PGconn *c, int64_t dataset_id, int version, sl_err *err) SL_WUR;
/* Every version the database knows, in every state: 'l'ive, 'u'ploading, 's'hredded. */
typedef struct {
    int64_t dataset_id;
    int version;
    char state;
} db_version_ref;
sl_code db_versions_all(PGconn *c, db_version_ref **out, size_t *n, sl_err *err) SL_WUR;
/* Forgets every upload in progress (at start: a crash interrupted them); *n how many. */
sl_code db_versions_drop_uploading(PGconn *c, int64_t *n, sl_err *err) SL_WUR;
/* Every wrapped data key, locked for the caller's transaction (master key rotation). */
typedef struct {
    int64_t dataset_id;
    int version;
    int master_version;
    unsigned char wrapped[DB_WRAPPED_DATA_KEY];
} db_wrapped;
sl_code db_keys_wrapped(PGconn *c, db_wrapped **out, size_t *n, sl_err *err) SL_WUR;
/* Every dataset's wrapped mask key (wrapped_keys "mask:<dataset>"), locked likewise;
 * version is 0. */
sl_code db_mask_keys(PGconn *c, db_wrapped **out, size_t *n, sl_err *err) SL_WUR;
sl_code db_key_rewrap(PGconn *c, int64_t dataset_id, int version, int master_version,
                      const unsigned char *wrapped, size_t len, sl_err *err) SL_WUR;
sl_code db_wrapped_key_update(PGconn *c, const char *purpose, int master_version,
                              const unsigned char *blob, size_t len, sl_err *err) SL_WUR;
/* 1 in *in_use when anything is still wrapped by that master key version. */
sl_code db_master_in_use(PGconn *c, int master_version, int *in_use, sl_err *err) SL_WUR;
/* Serialises master key rotation against the uploads that wrap new data keys: shared by
 * uploads, exclusive for a rotation (transaction-scoped; db_lock_keys). */
#define DB_LOCK_KEYS 0x736c6b79LL

/* The audit trail. */
typedef struct {
    int64_t seq;
    const char *ts;        /* RFC 3339 with microseconds, as in canon */
    int64_t ts_us;         /* the same time in microseconds since 1970 */
    const char *principal; /* NULL when unauthenticated */
    const char *action;
    const char *resource;
    const char *decision;
    int status;
    const char *canon;
    size_t canon_len;
    unsigned char hash[32];
} db_audit_row;
/* The latest checkpoint; strings are copied into the caller's buffers. */
typedef struct {
    int64_t seq;
    char hash[65], ts[SL_TS_LEN], key_id[24], signature[100];
} db_checkpoint;

/* Prepares the writer's statements on its connection; once per connection. */
sl_code db_audit_prepare(PGconn *c, sl_err *err) SL_WUR;
/*
 * Opens the audit writer's transaction in one round trip (libpq pipeline mode): BEGIN,
 * the chain's advisory lock (one writer at a time across gateways), then the head of the
 * chain (*seq 0 and a zero hash when empty) and the latest checkpoint (*cp_found 0 when
 * none). On failure the transaction is rolled back.
 */
/* The hash of the event at seq (*found 0 when there is none), read under the trail's
 * lock so that a commit still under way has finished: whether a batch whose commit went
 * unanswered is in the trail. old_pid (> 0): the broken session's backend, ended first
 * if it still waits inside its transaction. */
sl_code db_audit_hash_at(PGconn *c, int64_t seq, int old_pid, unsigned char hash[32], int *found,
                         sl_err *err) SL_WUR;
sl_code db_audit_begin(PGconn *c, int64_t *seq, unsigned char hash[32], db_checkpoint *cp,
                       int *cp_found, sl_err *err) SL_WUR;
/* From this many rows a batch goes by COPY (three round trips, much less work per row);
 * smaller ones by one pipelined INSERT (one round trip). */
#define DB_AUDIT_COPY_MIN 256
/*
 * Authentications taken from a gateway's cache, checked when their events commit: token
 * ids and the principal versions seen (n pairs).
 */
typedef struct {
    const char *const *token_ids;
    const int64_t *versions;
    size_t n;
} db_auth_claims;
/*
 * Appends the rows and their checkpoint and commits, in one round trip. With expect_seq
 * 0 it continues the transaction db_audit_begin opened. Otherwise it opens its own (BEGIN,
 * the lock) and appends only if the chain's head is still (expect_seq, expect_hash): when
 * it is not, nothing is written and *stale is set, so the caller reads the head again.
 * With claims (may be NULL), the transaction first checks that every claim still holds;
 * when one does not, nothing is written and SL_EAUTH is returned (db_auth_stale says
 * which). On failure the transaction is rolled back and nothing of the batch exists.
 */
sl_code db_audit_append(PGconn *c, const db_audit_row *rows, size_t n, const db_checkpoint *cp,
                        int64_t expect_seq, const unsigned char *expect_hash,
                        const db_auth_claims *claims, int *stale, sl_err *err) SL_WUR;
/* Marks in stale[] (n entries, 1 = no longer holds) the claims that no longer hold; on a
 * connection db_audit_prepare prepared. */
sl_code db_auth_stale(PGconn *c, const db_auth_claims *claims, unsigned char *stale,
                      sl_err *err) SL_WUR;

/* Filters of an audit read; NULL fields do not filter. Times are RFC 3339. */
typedef struct {
    const char *since, *until, *principal, *dataset, *action, *decision;
    int64_t limit;               /* 0 = all */
    int with_orphan_checkpoints; /* verify: also checkpoints whose event is missing */
} db_audit_filter;

/*
 * Streams the trail in seq order, one row per call of db_audit_next (libpq single-row
 * mode), each with the event's columns and, when present, its checkpoint's. The
 * connection is busy until db_audit_next returns 0 or db_audit_close is called.
 */
typedef struct {
    int has_event;
    int64_t seq;
    const char *canon;
    const char *hash_hex;
    const char *ts, *principal, *action, *resource, *decision;
    int status;
    int has_checkpoint;
    int64_t cp_seq;
    const char *cp_hash, *cp_ts, *cp_key_id, *cp_signature;
} db_audit_item;
typedef struct db_audit_stream db_audit_stream;
sl_code db_audit_open(PGconn *c, const db_audit_filter *f, db_audit_stream **out,
                      sl_err *err) SL_WUR;
/* 1 with *item filled (valid until the next call), 0 at the end, -1 on error (err set). */
int db_audit_next(db_audit_stream *s, db_audit_item *item, sl_err *err);
void db_audit_close(db_audit_stream *s);
/* Checkpoints from since_seq (inclusive), at most limit, as JSON objects. */
sl_code db_checkpoints_json(PGconn *c, int64_t since_seq, int limit, json_t **items, int *more,
                            sl_err *err) SL_WUR;

/* ---- compute jobs and privacy budgets (0008_jobs.sql) ---- */
typedef struct {
    char id[33];
    int64_t principal_id;
    char principal[SL_MAX_NAME + 1];
    int64_t dataset_id;
    char dataset[SL_MAX_NAME + 1];
    int version;
    char kind[16];
    char purpose[65];
    char status[16];
    char *spec;   /* the normalised spec (JSON text), malloc'd */
    char *result; /* the result with its receipt (JSON text), malloc'd, or NULL */
    int has_progress;
    int iteration;
    double loss;
    char error[1025];
    int time_limit_s;
    double epsilon; /* 0: none */
    char created_at[SL_TS_LEN], started_at[SL_TS_LEN], finished_at[SL_TS_LEN];
} db_job;
void db_job_clear(db_job *j);
sl_code db_job_insert(PGconn *c, const db_job *j, sl_err *err) SL_WUR;
/* SL_ENOTFOUND when there is no such job. */
sl_code db_job_get(PGconn *c, const char *id, db_job *out, sl_err *err) SL_WUR;
/* The principal's jobs ({job_id, dataset, version, kind, status, created_at}), by id after
 * `after`, at most limit (more set when there are others). */
sl_code db_job_list(PGconn *c, int64_t principal_id, const char *after, int limit, json_t **items,
                    int *more, sl_err *err) SL_WUR;
/* Claims the oldest queued job (running from now, claimed by `by`), skipping those another
 * gateway is claiming: *found 0 when none. */
sl_code db_job_claim(PGconn *c, const char *by, db_job *out, int *found, sl_err *err) SL_WUR;
/* A running job's heartbeat (and its progress when has_progress); *status its status now
 * (a cancellation shows as "cancelled"). */
sl_code db_job_heartbeat(PGconn *c, const char *id, int has_progress, int iteration, double loss,
                         char status[16], sl_err *err) SL_WUR;
/* Ends a running job: SL_ECONFLICT when it is no longer running (cancelled meanwhile). */
sl_code db_job_finish(PGconn *c, const char *id, const char *status, const char *error,
                      const char *result, sl_err *err) SL_WUR;
/* Cancels a queued or running job: SL_ECONFLICT when it is neither. */
sl_code db_job_cancel(PGconn *c, const char *id, sl_err *err) SL_WUR;
/* Running jobs whose gateway stopped beating for stale_s seconds end failed; their ids
 * (a JSON array). */
sl_code db_jobs_reap(PGconn *c, int stale_s, json_t **ids, sl_err *err) SL_WUR;
/* Charges epsilon to the principal's budget on the dataset (total `total` when first
 * used): *ok 0 when it would pass the total (nothing charged); *left what remains. */
sl_code db_budget_charge(PGconn *c, int64_t dataset_id, int64_t principal_id, double epsilon,
                         double total, int *ok, double *left, sl_err *err) SL_WUR;

#endif

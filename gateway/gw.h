/*
 * gateway/gw.h: the gateway's internal contract, shared by its files: configuration,
 * the data directory, the embedded PostgreSQL, the audit writer, authentication, the
 * HTTPS server with its routes and handlers, and the command-line client.
 * Lifetimes: a gw_server lives from serve's start to its end; a gw_req from the
 * request line to the completion callback, on one connection thread.
 */
#ifndef GW_H
#define GW_H

#include <sys/types.h>

#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cry.h"
#include "db.h"
#include "sl.h"

#define GW_DEFAULT_LISTEN "127.0.0.1:8443"
#define GW_DEFAULT_USER   "sluice"
#define GW_PG_SUPERUSER   "sluice_admin"
#define GW_PG_DBNAME      "sluice"
#define GW_MAX_KEYS       16

/* ---- configuration and the data directory (gw_datadir.c) ---- */
typedef struct {
    char data_dir[PATH_MAX - 256]; /* room for the files under it */
    char listen[128];
    char conninfo[1024]; /* the database (embedded or --db) */
    int embedded_pg;
    char run_as[64]; /* unprivileged user when started as root */
    char tls_cert[PATH_MAX], tls_key[PATH_MAX];
    int max_connections;
    int conn_timeout_s;
    int audit_bound_ms;
    int db_pool;
    int auth_fail_burst;
    double auth_fail_per_min;
    int64_t max_token_ttl_s;
    int master_key_version;
    char storage[4096]; /* storage directories, comma-separated (absolute paths) */
    int parity;         /* parity fragments per chunk (the last `parity` directories) */
    char signing_key_id[CRY_KEY_ID_HEX + 1];
    int retention_sweep_s; /* how often expired versions are looked for (serve only) */
    /* compute jobs (serve only) */
    int job_workers;         /* jobs this gateway runs at once (0: none) */
    char zone_bin[PATH_MAX]; /* the zone executable ("": sluice-zone beside this one) */
    int zone_mem_mib;        /* a zone's address space */
    int zone_threads;        /* a zone's OpenBLAS threads (0: the processors online) */
} gw_config;

typedef struct {
    char id[CRY_KEY_ID_HEX + 1];
    unsigned char pk[CRY_SIGN_PK_BYTES];
    int active;
} gw_pubkey;

/* What wrapped keys are bound to (their AAD). */
#define GW_AAD_TOKEN_KEY "sluice:wrapped-key:token-hmac"
/* Master key versions kept at once (older ones are retired by rotation). */
#define GW_MAX_MASTERS 16

typedef struct {
    int version;
    cry_key *key; /* 32 bytes */
} gw_master;

typedef struct {
    cry_key *master;    /* the current master key (one of masters[]) */
    int master_version; /* its version */
    gw_master masters[GW_MAX_MASTERS];
    int nmasters;
    int master_from_env;  /* SLUICE_MASTER_KEY: one version, no rotation */
    pthread_mutex_t lock; /* masters[], master, master_version after start */
    int lock_ready;
    int keyd_fd;      /* the key helper's socket (gw_keys.c), or -1 */
    cry_key *token;   /* token HMAC key, unwrapped from the database */
    cry_key *signing; /* Ed25519 secret key of the active signing key */
    char signing_id[CRY_KEY_ID_HEX + 1];
    gw_pubkey pub[GW_MAX_KEYS];
    int npub;
} gw_keys;

void gw_config_defaults(gw_config *cfg);
/* sluice init: everything in a new data directory; prints the admin token once. */
sl_code gw_init(gw_config *cfg, int argc_tls_given, sl_err *err) SL_WUR;
/* Reads DIR/config.json over cfg's defaults (flags given later override). */
sl_code gw_config_load(gw_config *cfg, sl_err *err) SL_WUR;
/* Loads the master and signing keys and the public keys (not the token key). */
sl_code gw_keys_load(const gw_config *cfg, gw_keys *keys, sl_err *err) SL_WUR;
/* Unwraps (or on first use creates and stores) the token HMAC key. */
sl_code gw_keys_token(const gw_config *cfg, gw_keys *keys, sl_err *err) SL_WUR;
void gw_keys_free(gw_keys *keys);

/* ---- master key versions and the key helper (gw_keys.c) ---- */
/*
 * Wraps a 32-byte key under the current master key; *version tells which. out holds
 * n + CRY_WRAP_OVERHEAD bytes.
 */
void gw_master_wrap(gw_keys *k, const char *aad, const unsigned char *plain, size_t n,
                    unsigned char *out, int *version);
/* Wraps under a given held version (a rotation's new one); aborts when not held. */
void gw_master_wrap_with(gw_keys *k, int version, const char *aad, const unsigned char *plain,
                         size_t n, unsigned char *out);
/* Unwraps under master key `version`; SL_EINVALID when it does not open or that version
 * is not held. */
sl_code gw_master_unwrap(gw_keys *k, int version, const char *aad, const unsigned char *in,
                         size_t n, cry_key **out) SL_WUR;
/*
 * Starts the key helper: a small process that keeps the privileges serve started with
 * (root) so that a rotation can write a new master key file into DIR/keys, which the
 * unprivileged gateway cannot. It does nothing else: make key file N, remove key file N.
 * Called before privileges are dropped and before any thread starts.
 */
sl_code gw_keyd_start(const gw_config *cfg, gw_keys *k, sl_err *err) SL_WUR;
void gw_keyd_stop(gw_keys *k);
/* A new master key version (the highest held + 1), its file written and fsynced by the
 * helper; held but not current until gw_master_activate. */
sl_code gw_master_create(gw_keys *k, int *version, sl_err *err) SL_WUR;
/* The current master key version. */
int gw_master_current(gw_keys *k);
/* Makes a held version current (new wraps use it). */
void gw_master_activate(gw_keys *k, int version);
/* Forgets a version that nothing is wrapped by any more and removes its file. */
sl_code gw_master_retire(gw_keys *k, int version, sl_err *err) SL_WUR;
/* Reads a whole small file (at most max bytes); *out malloc'd and NUL-terminated. */
sl_code gw_file_read(const char *path, size_t max, char **out, size_t *len, sl_err *err) SL_WUR;
/* Writes a file atomically (temp + fsync + rename) with the given mode. */
sl_code gw_file_write(const char *path, const void *p, size_t n, mode_t mode, sl_err *err) SL_WUR;
/* Splits cfg->storage into at most max absolute paths (pointers into buf); the count. */
int gw_storage_dirs(const gw_config *cfg, char *buf, size_t n, const char **dirs, int max);
/* The unprivileged user: uid/gid, when running as root; 0 when not root. */
sl_code gw_user_lookup(const char *name, uid_t *uid, gid_t *gid, sl_err *err) SL_WUR;

/* ---- embedded PostgreSQL (gw_pg.c) ---- */
sl_code gw_pg_initdb(const gw_config *cfg, sl_err *err) SL_WUR;
sl_code gw_pg_start(const gw_config *cfg, sl_err *err) SL_WUR;
sl_code gw_pg_stop(const gw_config *cfg, sl_err *err) SL_WUR;
/* The conninfo of the embedded cluster for a data directory. */
void gw_pg_conninfo(const char *data_dir, char *out, size_t n);

/* ---- the audit writer (gw_audit.c) ---- */
typedef struct gw_audit gw_audit;
/*
 * Starts the writer thread; it connects lazily and reconnects forever. A request waits
 * for its event at most bound_ms (plus a second's grace when its batch is being written).
 */
gw_audit *gw_audit_start(const char *conninfo, const gw_keys *keys, int bound_ms);
/*
 * A request waiting for its event. done(w) is called exactly once, from the writer's
 * notifier thread (or from gw_audit_submit itself when the queue is full), after rc and
 * seq are set: SL_OK when the event is committed in PostgreSQL (seq is its place);
 * SL_EUNAVAIL when it was not within the bound: the event has then been rewritten to
 * record a 503 answer and stays queued, so the request's one event is written once the
 * trail is back. The record must stay valid until done runs; after it, it is not touched.
 */
typedef struct gw_audit_wait {
    void (*done)(struct gw_audit_wait *w);
    void *ctx;
    /* An authentication the request took from the cache: checked in the transaction that
     * commits its event. When it no longer holds, nothing is written and rc is SL_EAUTH:
     * the request must be authenticated again from the database and made anew. */
    int claim;
    char claim_token[CRY_TOKEN_ID_HEX + 1];
    int64_t claim_version;
    sl_code rc;
    int64_t seq;
} gw_audit_wait;
/* Submits an event (ownership taken) for w's request; never blocks on the database. */
void gw_audit_submit(gw_audit *a, json_t *event, gw_audit_wait *w);
/* gw_audit_submit, then waits for the outcome and leaves it in w (its done is not used). */
sl_code gw_audit_commit(gw_audit *a, json_t *event, gw_audit_wait *w);
/* Queues an event without waiting (ownership taken). */
void gw_audit_post(gw_audit *a, json_t *event);
/*
 * For a server that stops: every request still waiting is answered now (SL_EUNAVAIL; its
 * event records the 503, as when its bound passes), so none stays suspended.
 */
void gw_audit_release_waiters(gw_audit *a);
/* Returns once no request's done callback is running (none may touch the HTTP server
 * after this while it is stopped). */
void gw_audit_quiet(gw_audit *a);
/* Stops the writer after draining the queue for at most drain_ms; logs what is left. */
void gw_audit_stop(gw_audit *a, int drain_ms);
int gw_audit_healthy(gw_audit *a);
long gw_audit_depth(gw_audit *a);

/* ---- metrics (gw_server.c) ---- */
#define GW_LAT_BUCKETS 14
typedef struct {
    atomic_long auth_failures;
    atomic_long rate_limited;
    atomic_long auth_cache_hits;
    atomic_long auth_claims_failed;
    atomic_long audit_commits;
    atomic_long audit_events;
    atomic_long audit_failures;
    atomic_long audit_overflow;
    atomic_long audit_lat[GW_LAT_BUCKETS + 1]; /* by bucket, last = +Inf */
    atomic_long audit_lat_sum_us;
    atomic_long store_rebuilt;       /* fragments read around (missing or damaged) */
    atomic_long store_read_failures; /* chunks that could not be given back intact */
    atomic_long store_bytes_in;      /* CSV bytes of committed uploads */
} gw_metrics;
extern const double gw_lat_bounds[GW_LAT_BUCKETS];
void gw_metrics_observe(atomic_long *buckets, atomic_long *sum_us, int64_t us);
extern gw_metrics gw_stats;

/* ---- authentication (gw_auth.c) ---- */
typedef struct gw_ratelimit gw_ratelimit;
gw_ratelimit *gw_ratelimit_new(int burst, double per_min);
void gw_ratelimit_free(gw_ratelimit *rl);
/*
 * 1 when the address may try to authenticate now (it has failed less than its allowance).
 * Attempts in flight at the same moment are not counted until they fail, so the limit
 * can be passed by at most the connections one address holds at once; a token taken up
 * front instead would refuse busy honest clients behind one address. IPv6 addresses
 * count by their /64, which one host usually holds whole.
 */
int gw_ratelimit_allow(gw_ratelimit *rl, const char *addr);
/* Records a failed authentication of the address. */
void gw_ratelimit_fail(gw_ratelimit *rl, const char *addr);

/*
 * Authentications already looked up (gw_authcache.c): a hit only spares the database
 * lookup; the caller still checks the secret and expiry, and the request's audit event
 * carries the claim so its commit checks it against the database (gw_audit_wait).
 */
typedef struct gw_authcache gw_authcache;
gw_authcache *gw_authcache_new(int ttl_s);
void gw_authcache_free(gw_authcache *c);
/* 1 with tok and p filled (p's JSON owned by the caller) when the token id is cached. */
int gw_authcache_get(gw_authcache *c, const char *token_id, db_token *tok, db_principal *p);
/* Caches a valid authentication (never a revoked token or a disabled principal). */
void gw_authcache_put(gw_authcache *c, const char *token_id, const db_token *tok,
                      const db_principal *p);
void gw_authcache_forget(gw_authcache *c, const char *token_id);
void gw_authcache_forget_principal(gw_authcache *c, int64_t principal_id);

/* ---- the server (gw_server.c) ---- */
typedef struct gw_server gw_server;
typedef struct gw_req gw_req;

/* Runs the gateway until SIGTERM/SIGINT. */
int gw_serve(gw_config *cfg);

/* ---- request-facing JSON (gw_json.c) ---- */
/*
 * Parses a request body as one JSON object: valid UTF-8, no duplicate keys, at most
 * SL_MAX_JSON_DEPTH deep, no NUL in strings. SL_EBADREQ with a message otherwise.
 */
sl_code gw_json_parse_object(const char *body, size_t len, json_t **out, sl_err *err) SL_WUR;
/* SL_EINVALID naming the first field of obj not in the NULL-terminated list. */
sl_code gw_json_only(const json_t *obj, const char *const *allowed, sl_err *err) SL_WUR;
/* Validates a principal creation body; fills the out fields (borrowed from obj). */
typedef struct {
    const char *name;
    const char *kind;
    const json_t *roles;
    const json_t *attributes;
    int64_t ttl_s; /* 0 = default */
    int has_disabled;
    int disabled;
} gw_principal_body;
sl_code gw_json_principal_create(const json_t *obj, int64_t max_ttl_s, gw_principal_body *out,
                                 sl_err *err) SL_WUR;
sl_code gw_json_principal_patch(const json_t *obj, gw_principal_body *out, sl_err *err) SL_WUR;
sl_code gw_json_token_create(const json_t *obj, int64_t max_ttl_s, int64_t *ttl_s,
                             sl_err *err) SL_WUR;

/*
 * A retention rule {"min_days"?, "max_days"?, "mode"}: day counts (fractional allowed)
 * with -1 for not given (at least one is), max_days >= min_days, mode "governance" or
 * "compliance" (borrowed).
 */
typedef struct {
    double min_days, max_days;
    const char *mode;
} gw_retention;
sl_code gw_json_retention(const json_t *obj, gw_retention *out, sl_err *err) SL_WUR;
/* {"hold": bool, "reason": text (required to set a hold)}; reason borrowed. */
sl_code gw_json_legal_hold(const json_t *obj, int *hold, const char **reason, sl_err *err) SL_WUR;

/* Validates a dataset creation (or, with _patch, change) body; fields borrowed from obj. */
typedef struct {
    const char *name;
    const char *classification;
    const char *description;
    const json_t *columns; /* [{"name","type"?,"tags"?}] or NULL */
    gw_retention retention;
    int has_retention;
} gw_dataset_body;
sl_code gw_json_dataset_create(const json_t *obj, gw_dataset_body *out, sl_err *err) SL_WUR;
sl_code gw_json_dataset_patch(const json_t *obj, gw_dataset_body *out, sl_err *err) SL_WUR;
/* public 0 < internal 1 < confidential 2 < restricted 3; -1 for anything else. */
int gw_classification_rank(const char *c);

/* ---- command line (gw_cli.c) ---- */
int gw_cli_main(const char *cmd, int argc, char **argv);
/* 1 when receipt's signature (Ed25519 over the JCS of the receipt without it) verifies
 * under pk (gw_jobs.c; also the offline `sluice receipt verify`). */
int gw_receipt_verify(const json_t *receipt, const unsigned char pk[CRY_SIGN_PK_BYTES]);
int gw_cli_audit_verify_file(const char *file, const char *key, int json_out, int partial);
void gw_usage(const char *topic);
/* The sluice command (main calls it). */
int gw_main(int argc, char **argv);

#endif

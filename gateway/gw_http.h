/*
 * gateway/gw_http.h: the request and server records shared by the HTTP core
 * (gw_server.c) and the handlers (gw_handlers.c, gw_audit_api.c). Private to gateway/.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "gw.h"
#include "pol.h"
#include "st.h"

#define GW_MAX_PARAMS      4
#define GW_NSTATUS         20
#define GW_MAX_JOB_WORKERS 64

struct gw_route;
typedef void (*gw_handler)(gw_req *r);

#define GW_BODY_NONE 0
#define GW_BODY_JSON 1
/* A text/csv body fed to the handler as it arrives: the handler runs once the headers
 * are in (authenticated from the database, roles checked) and sets the up_* callbacks. */
#define GW_BODY_CSV 2

/* Roles a route requires (any of), or none for "any principal". */
typedef struct gw_route {
    const char *method;
    const char *pattern; /* "/v1/principals/{name}" */
    const char *action;  /* audit action */
    gw_handler fn;
    int auth;             /* 1: a bearer token is required */
    int audited;          /* 0 only for /healthz, /readyz, /metrics */
    int body;             /* GW_BODY_NONE, GW_BODY_JSON, or GW_BODY_CSV (streamed) */
    const char *roles[4]; /* any of these roles; {NULL} = any principal */
} gw_route;

struct gw_server {
    gw_config *cfg;
    gw_keys *keys;
    db_pool *pool;
    gw_audit *audit;
    gw_ratelimit *rl;
    st_storage *storage;
    gw_authcache *auth_cache;
    struct MHD_Daemon *daemon;
    atomic_int active; /* requests between the request line and completion */
    atomic_int stopping;
    /* metrics: requests by route and status, latency histogram */
    atomic_long req_count[64][GW_NSTATUS];
    atomic_long req_lat[GW_LAT_BUCKETS + 1];
    atomic_long req_lat_sum_us;
    atomic_long streams;  /* audit exports in progress */
    atomic_llong ping_ns; /* /readyz: when the database was last checked, and the result */
    atomic_int ping_ok;
    /* the retention sweeper (gw_retention.c) */
    pthread_t sweeper;
    int sweeper_started;
    pthread_mutex_t sweep_mu;
    pthread_cond_t sweep_cv;
    /* compute jobs' workers (gw_jobs.c) */
    pthread_t job_workers[GW_MAX_JOB_WORKERS];
    int njob_workers;
    pthread_mutex_t jobs_mu;
    pthread_cond_t jobs_cv;
};

/* A streamed response body: produce() appends to out; returns 1 more, 0 done, -1 error. */
typedef struct {
    int (*produce)(void *state, sl_buf *out);
    void (*release)(void *state);
    void *state;
} gw_stream;

struct gw_req {
    gw_server *srv;
    struct MHD_Connection *conn;
    int64_t t0_ns;
    int phase; /* 0 new, 1 receiving the body, 3 waiting for its audit event, 2 answered */
    char method[16];
    char path[SL_MAX_PATH + 1];
    int path_bad;
    char request_id[SL_MAX_REQUEST_ID + 1];
    char client[64];
    const gw_route *route;
    int route_index;
    char params[GW_MAX_PARAMS][SL_MAX_PATH + 1];
    int nparams;
    sl_buf body;
    int body_too_large;
    size_t discarded; /* bytes of an oversized body read and thrown away */
    /* the authenticated principal */
    int authed;
    int auth_cached; /* from the cache: a claim checked when the event commits */
    int auth_fresh;  /* made anew after a failed claim: authenticate from the database */
    db_principal who;
    char token_id[CRY_TOKEN_ID_HEX + 1];
    int64_t token_expires_us;
    char purpose[65];
    /* the answer */
    int status;
    sl_buf out;
    const char *ctype;
    const char *allow; /* for 405 */
    gw_stream stream;
    int streaming;
    /* a mutation's transaction, committed only after its audit event is */
    PGconn *txn;
    int committed;                   /* it was */
    void (*after_commit)(gw_req *r); /* then runs (e.g. removing shredded fragments) */
    /* a streamed body (GW_BODY_CSV): each piece, then the end (which answers) */
    sl_code (*up_feed)(gw_req *r, const char *p, size_t n, sl_err *err);
    void (*up_end)(gw_req *r);
    void (*up_release)(gw_req *r); /* always called once the request completes */
    void *up;
    int up_failed;
    /* data answers: the policy that decided and the columns masked */
    char x_policy_version[24];
    char x_masked[SL_MAX_AUDIT_TEXT + 1];
    /* the audit event */
    char action[48];
    char resource[SL_MAX_AUDIT_TEXT + 1];
    char reason[SL_MAX_AUDIT_TEXT + 1];
    json_t *detail;
    int audited;
    gw_audit_wait wait; /* while suspended for its event (phase 3) */
    char location[SL_MAX_PATH + 1];
};

/* Answers a JSON body (ownership of v taken) with the status. */
void gw_reply_json(gw_req *r, int status, json_t *v);
/* Answers a status with an empty body (204). */
void gw_reply_status(gw_req *r, int status);
/* Answers the API error shape for err (message only; detail is logged). */
void gw_reply_err(gw_req *r, const sl_err *err);
void gw_reply_error(gw_req *r, sl_code code, const char *fmt, ...) SL_PRINTF(3, 4);
/* Answers with a streamed body of the content type. */
void gw_reply_stream(gw_req *r, const char *ctype, gw_stream stream);
/* Sets the audit reason. */
void gw_reason(gw_req *r, const char *fmt, ...) SL_PRINTF(2, 3);
/* A query-string argument, or NULL. */
const char *gw_arg(gw_req *r, const char *key);
/* 1 when the principal holds the role. */
int gw_has_role(const gw_req *r, const char *role);
/* The request's JSON body as an object (empty body allowed when allow_empty). */
sl_code gw_body_object(gw_req *r, int allow_empty, json_t **out, sl_err *err) SL_WUR;
/* The request's JSON body as an object, or NULL with a 400/422 answer set. */
json_t *gw_body_or_reply(gw_req *r, int allow_empty);
/* Parses limit (1..SL_LIST_MAX) and after; replies 422 and returns 0 on a bad value. */
int gw_list_args(gw_req *r, int *limit, const char **after);

/* Handlers. */
void gw_h_whoami(gw_req *r);
void gw_h_keys_public(gw_req *r);
void gw_h_principal_create(gw_req *r);
void gw_h_principal_list(gw_req *r);
void gw_h_principal_show(gw_req *r);
void gw_h_principal_patch(gw_req *r);
void gw_h_token_create(gw_req *r);
void gw_h_token_revoke(gw_req *r);
void gw_h_audit_export(gw_req *r);
void gw_h_audit_verify(gw_req *r);
void gw_h_audit_checkpoints(gw_req *r);
void gw_h_dataset_create(gw_req *r);
void gw_h_dataset_list(gw_req *r);
void gw_h_dataset_show(gw_req *r);
void gw_h_dataset_patch(gw_req *r);
void gw_h_version_upload(gw_req *r);
void gw_h_version_show(gw_req *r);
void gw_h_version_rows(gw_req *r);
void gw_h_version_delete(gw_req *r);
void gw_h_keys_rotate(gw_req *r);
void gw_h_store_scrub(gw_req *r);

/* An audit event for something that happens after the answer began (a stream that fails
 * midway): the request's event as it stands, to be changed and posted. */
json_t *gw_event_now(gw_req *r);
/* Startup: removes the fragments of versions that are neither live nor being uploaded
 * (uploads a crash interrupted, shredded versions whose removal did not finish). */
sl_code gw_store_recover(gw_server *s, sl_err *err) SL_WUR;

/*
 * Takes a pooled connection and opens the transaction of a mutation; the HTTP core
 * commits it once the request's audit event is durable, or rolls it back.
 */
sl_code gw_txn_begin(gw_req *r, PGconn **c, sl_err *err) SL_WUR;
/* A pooled connection for reads; give it back with gw_db_put. */
sl_code gw_db_get(gw_req *r, PGconn **c, sl_err *err) SL_WUR;
void gw_db_put(gw_req *r, PGconn *c, sl_code rc);
/* gw_db_get, or NULL with the 503 answer set. */
PGconn *gw_db_or_reply(gw_req *r);

/* ---- decisions (gw_policy.c) ---- */

/*
 * A decision on a dataset with what it was made from: the dataset's columns as policy/
 * sees them, its policy and the global ones compiled, the principal. Owns everything;
 * the view of an allowed read comes from d.
 */
typedef struct {
    json_t *columns; /* the dataset's, referenced: cols borrow their names */
    pol_column *cols;
    const char **tags;
    size_t ncols;
    pol_dataset ds;
    json_t *doc; /* the dataset's policy document (NULL: none) */
    int policy_version;
    db_global *globals;
    size_t nglobals;
    pol_compiled *policy;
    const char *roles[POL_SUBJECT_MAX + 1], *akeys[POL_SUBJECT_MAX + 1],
        *avals[POL_SUBJECT_MAX + 1];
    size_t nroles, nattrs;
    pol_subject who;
    pol_decision d;
} gw_decision;
void gw_decision_free(gw_decision *g);
/* Decides action (one POL_ACT_ bit) on ds for principal who, reading the policies on c.
 * SL_EUNAVAIL when the database fails; SL_EINTERNAL when a stored policy no longer
 * compiles (nothing is allowed then). */
sl_code gw_decide_for(gw_req *r, PGconn *c, const db_dataset *ds, const db_principal *who,
                      uint32_t action, const char *purpose, gw_decision **out, sl_err *err) SL_WUR;
/* The same with the global policies read once for many decisions (shared, borrowed: it
 * must outlive the decision; NULL reads them as gw_decide_for does). */
sl_code gw_decide_with(gw_req *r, PGconn *c, const db_dataset *ds, const db_principal *who,
                       uint32_t action, const char *purpose, const db_global *shared,
                       size_t nshared, gw_decision **out, sl_err *err) SL_WUR;
/* Decides action (its name) for the request's principal and purpose, records the decision
 * in the request's audit event; 1 when allowed (with *out, when not NULL, the decision the
 * caller then frees), otherwise 0 with the answer (403, or the error) set. */
int gw_allowed(gw_req *r, PGconn *c, const db_dataset *ds, const char *action, gw_decision **out);
/* The dataset named in the path (params[0]), read on c (for_update: locked until the
 * transaction ends); 0 with the answer set otherwise. */
int gw_path_dataset(gw_req *r, PGconn *c, int for_update, db_dataset *ds);
/*
 * The view a read applies for an allowed decision (g, which must outlive it): the row
 * filters that hold, and the masks of the projected columns (manifest indexes proj, their
 * stored types). None of proj may be denied (SL_EINTERNAL: the projection is the
 * caller's to refuse). Takes the dataset's mask key when a hash mask applies.
 */
typedef struct gw_view gw_view;
sl_code gw_view_new(gw_keys *keys, PGconn *c, const gw_decision *g, int64_t dataset,
                    const size_t *proj, const st_type *types, size_t nproj, gw_view **out,
                    sl_err *err) SL_WUR;
const st_view *gw_view_get(const gw_view *v);
void gw_view_free(gw_view *v);
/* The data key of a live version, unwrapped; SL_EUNAVAIL (logged) when it cannot be. */
sl_code gw_version_key(gw_keys *keys, const db_version *v, cry_key **key, sl_err *err) SL_WUR;
/* 1 when a version's columns (its manifest's) are the decision's, in order. */
int gw_same_columns(const json_t *mcols, const gw_decision *g);
/* A dataset's mask key: its wrapped_keys purpose and its wrapping AAD. */
void gw_mask_key_names(int64_t dataset, char purpose[48], char aad[64]);
/* Makes a dataset's mask key (its creation's transaction on c). */
sl_code gw_mask_key_create(gw_keys *keys, PGconn *c, int64_t dataset, sl_err *err) SL_WUR;
/* ---- compute jobs (gw_jobs.c) ---- */
void gw_h_job_submit(gw_req *r);
void gw_h_job_list(gw_req *r);
void gw_h_job_status(gw_req *r);
void gw_h_job_result(gw_req *r);
void gw_h_job_cancel(gw_req *r);
void gw_h_receipt_verify(gw_req *r);
/* The job workers (cfg->job_workers threads), stopped with the server. */
void gw_jobs_start(gw_server *s);
void gw_jobs_stop(gw_server *s);
/* ---- retention and legal holds (gw_retention.c) ---- */
void gw_h_retention_put(gw_req *r);
void gw_h_legal_hold_put(gw_req *r);
/* 1 when version v of ds may be deleted now (legal hold, min_days, governance bypass by
 * an admin); otherwise 0 with the 423 answer set. */
int gw_retention_may_delete(gw_req *r, const db_dataset *ds, const db_version *v);
/* Sets a new dataset's retention in its creation's transaction. */
sl_code gw_retention_create(PGconn *c, int64_t dataset, const gw_retention *rt, sl_err *err) SL_WUR;
/* The sweeper: every cfg->retention_sweep_s, versions past max_days are shredded, each
 * with its audit event committed first. Stopped before the audit writer. */
void gw_sweeper_start(gw_server *s);
void gw_sweeper_stop(gw_server *s);

void gw_h_policy_put(gw_req *r);
void gw_h_policy_get(gw_req *r);
void gw_h_global_put(gw_req *r);
void gw_h_global_delete(gw_req *r);
void gw_h_global_list(gw_req *r);
void gw_h_authorize(gw_req *r);

/* Makes a new token for a principal; fills the JSON answer fields. */
sl_code gw_token_issue(gw_req *r, PGconn *c, int64_t principal_id, int64_t ttl_s, json_t *answer,
                       sl_err *err) SL_WUR;
/* Builds the JSON of a principal. */
json_t *gw_principal_json(const db_principal *p);

#endif

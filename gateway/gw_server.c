/*
 * gateway/gw_server.c: the HTTPS server. libmicrohttpd over GnuTLS, a thread per
 * connection (a request waits for its audit event without holding anything but its own
 * thread). Every request gets a record at its request line (the URI log callback), so
 * that even one refused by the HTTP layer or abandoned by its client leaves exactly one
 * audit event; answered requests get theirs committed before the answer is queued.
 */
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_http.h"

gw_metrics gw_stats;

/* Mozilla "intermediate": TLS 1.2 and 1.3, AEAD ciphers with forward secrecy only, and its
 * group order (X25519 first, so common clients need no HelloRetryRequest). */
#define GW_TLS_PRIORITIES                                                                  \
    "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA:"          \
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-FFDHE2048:"         \
    "%SERVER_PRECEDENCE"

/* Event-loop threads: a few per core (handlers block their thread while they query). */
#define GW_THREADS_PER_CPU 2
#define GW_THREADS_MIN     4
#define GW_THREADS_MAX     64
/* Free memory a heap keeps before returning it to the kernel. */
#define GW_MALLOC_TRIM (64 * 1024 * 1024)
/* Allocations from this size are mapped on their own (returned to the kernel at once). */
#define GW_MALLOC_MMAP (32 * 1024 * 1024)

static void h_healthz(gw_req *r);
static void h_readyz(gw_req *r);
static void h_metrics(gw_req *r);

static const gw_route routes[] = {
    {"GET", "/healthz", "health", h_healthz, 0, 0, 0, {NULL}},
    {"GET", "/readyz", "ready", h_readyz, 0, 0, 0, {NULL}},
    {"GET", "/metrics", "metrics", h_metrics, 1, 0, 0, {"admin", "monitor", NULL}},
    {"GET", "/v1/whoami", "whoami", gw_h_whoami, 1, 1, 0, {NULL}},
    {"GET", "/v1/keys/public", "keys.public", gw_h_keys_public, 1, 1, 0, {NULL}},
    {"POST", "/v1/principals", "principal.create", gw_h_principal_create, 1, 1, 1, {"admin", NULL}},
    {"GET", "/v1/principals", "principal.list", gw_h_principal_list, 1, 1, 0, {"admin", NULL}},
    {"GET",
     "/v1/principals/{name}",
     "principal.show",
     gw_h_principal_show,
     1,
     1,
     0,
     {"admin", NULL}},
    {"PATCH",
     "/v1/principals/{name}",
     "principal.update",
     gw_h_principal_patch,
     1,
     1,
     1,
     {"admin", NULL}},
    {"POST",
     "/v1/principals/{name}/tokens",
     "token.create",
     gw_h_token_create,
     1,
     1,
     1,
     {"admin", NULL}},
    {"DELETE", "/v1/tokens/{token_id}", "token.revoke", gw_h_token_revoke, 1, 1, 0, {NULL}},
    {"GET", "/v1/audit", "audit.read", gw_h_audit_export, 1, 1, 0, {"admin", "auditor", NULL}},
    {"GET",
     "/v1/audit/verify",
     "audit.verify",
     gw_h_audit_verify,
     1,
     1,
     0,
     {"admin", "auditor", NULL}},
    {"POST", "/v1/keys/rotate", "keys.rotate", gw_h_keys_rotate, 1, 1, 0, {"admin", NULL}},
    {"POST", "/v1/store/scrub", "store.scrub", gw_h_store_scrub, 1, 1, 0, {"admin", NULL}},
    {"POST",
     "/v1/datasets",
     "dataset.create",
     gw_h_dataset_create,
     1,
     1,
     GW_BODY_JSON,
     {"owner", "admin", NULL}},
    {"GET", "/v1/datasets", "dataset.list", gw_h_dataset_list, 1, 1, 0, {NULL}},
    {"GET", "/v1/datasets/{ds}", "dataset.describe", gw_h_dataset_show, 1, 1, 0, {NULL}},
    {"PATCH",
     "/v1/datasets/{ds}",
     "dataset.manage",
     gw_h_dataset_patch,
     1,
     1,
     GW_BODY_JSON,
     {NULL}},
    {"POST",
     "/v1/datasets/{ds}/versions",
     "dataset.write",
     gw_h_version_upload,
     1,
     1,
     GW_BODY_CSV,
     {NULL}},
    {"GET",
     "/v1/datasets/{ds}/versions/{v}",
     "dataset.describe",
     gw_h_version_show,
     1,
     1,
     0,
     {NULL}},
    {"GET",
     "/v1/datasets/{ds}/versions/{v}/rows",
     "dataset.read",
     gw_h_version_rows,
     1,
     1,
     0,
     {NULL}},
    {"DELETE",
     "/v1/datasets/{ds}/versions/{v}",
     "dataset.delete",
     gw_h_version_delete,
     1,
     1,
     0,
     {NULL}},
    {"PUT", "/v1/datasets/{ds}/policy", "policy.put", gw_h_policy_put, 1, 1, GW_BODY_JSON, {NULL}},
    {"GET", "/v1/datasets/{ds}/policy", "policy.get", gw_h_policy_get, 1, 1, 0, {NULL}},
    {"PUT",
     "/v1/datasets/{ds}/retention",
     "retention.put",
     gw_h_retention_put,
     1,
     1,
     GW_BODY_JSON,
     {NULL}},
    {"PUT",
     "/v1/datasets/{ds}/legal-hold",
     "legal_hold.put",
     gw_h_legal_hold_put,
     1,
     1,
     GW_BODY_JSON,
     {"auditor", "admin", NULL}},
    {"PUT",
     "/v1/policies/{name}",
     "global_policy.put",
     gw_h_global_put,
     1,
     1,
     GW_BODY_JSON,
     {"admin", NULL}},
    {"DELETE",
     "/v1/policies/{name}",
     "global_policy.delete",
     gw_h_global_delete,
     1,
     1,
     0,
     {"admin", NULL}},
    {"GET",
     "/v1/policies",
     "global_policy.list",
     gw_h_global_list,
     1,
     1,
     0,
     {"admin", "auditor", NULL}},
    {"POST",
     "/v1/authorize",
     "authorize",
     gw_h_authorize,
     1,
     1,
     GW_BODY_JSON,
     {"admin", "owner", "auditor"}},
    {"POST", "/v1/jobs", "job.submit", gw_h_job_submit, 1, 1, GW_BODY_JSON, {NULL}},
    {"GET", "/v1/jobs", "job.list", gw_h_job_list, 1, 1, 0, {NULL}},
    {"GET", "/v1/jobs/{id}", "job.status", gw_h_job_status, 1, 1, 0, {NULL}},
    {"GET", "/v1/jobs/{id}/result", "job.result", gw_h_job_result, 1, 1, 0, {NULL}},
    {"DELETE", "/v1/jobs/{id}", "job.cancel", gw_h_job_cancel, 1, 1, 0, {NULL}},
    {"POST",
     "/v1/receipts/verify",
     "receipt.verify",
     gw_h_receipt_verify,
     1,
     1,
     GW_BODY_JSON,
     {NULL}},
    {"GET",
     "/v1/audit/checkpoints",
     "audit.checkpoints",
     gw_h_audit_checkpoints,
     1,
     1,
     0,
     {"admin", "auditor", NULL}},
};
#define NROUTES       ((int)(sizeof routes / sizeof routes[0]))
#define ROUTE_UNKNOWN 63

static const int statuses[GW_NSTATUS] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413,
                                         415, 422, 423, 429, 431, 500, 503, 0,   0,   0};

static int
status_index(int status)
{
    int i;

    for (i = 0; i < GW_NSTATUS; i++)
        if (statuses[i] == status)
            return i;
    return GW_NSTATUS - 1; /* other */
}

/* ---- answers ---- */

static void
set_body(gw_req *r, int status, const char *ctype, const char *text, size_t n)
{
    if (r->out.data != NULL)
        sodium_memzero(r->out.data, r->out.len);
    sl_buf_free(&r->out);
    sl_buf_init_wiped(&r->out, SIZE_MAX / 2); /* may hold a token shown once */
    if (sl_buf_append(&r->out, text, n) != SL_OK)
        sl_panic("answer too large");
    r->status = status;
    r->ctype = ctype;
}

void
gw_reply_json(gw_req *r, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_SORT_KEYS) : NULL;
    json_t *tok = json_object_get(v, "token");

    if (text == NULL) {
        /* only a bug can get here (every string is checked UTF-8): fail closed, not abort */
        static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":"
                                       "\"the answer could not be encoded\"}}";
        sl_error("request %s: an answer could not be encoded", r->request_id);
        set_body(r, 500, "application/json", fallback, sizeof fallback - 1);
    } else {
        set_body(r, status, "application/json", text, strlen(text));
        sodium_memzero(text, strlen(text)); /* it may hold a token shown once */
        free(text);
    }
    if (json_is_string(tok)) /* and so may the object */
        sodium_memzero((char *)json_string_value(tok), json_string_length(tok));
    json_decref(v);
}

void
gw_reply_status(gw_req *r, int status)
{
    set_body(r, status, NULL, "", 0);
}

static void
reply_code(gw_req *r, sl_code code, const char *msg)
{
    char clean[161];
    json_t *v;

    sl_text_clean(clean, msg, strlen(msg), sizeof clean - 1);
    v = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", sl_code_word(code), "message", clean,
                  "request_id", r->request_id);

    if (r->reason[0] == '\0')
        snprintf(r->reason, sizeof r->reason, "%s", msg);
    gw_reply_json(r, sl_code_status(code), v);
}

void
gw_reply_err(gw_req *r, const sl_err *err)
{
    if (err->detail[0] != '\0')
        sl_warn("request %s: %s: %s", r->request_id, err->msg, err->detail);
    reply_code(r, err->code, err->msg);
}

void
gw_reply_error(gw_req *r, sl_code code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_code(r, code, msg);
}

void
gw_reply_stream(gw_req *r, const char *ctype, gw_stream stream)
{
    r->status = 200;
    r->ctype = ctype;
    r->stream = stream;
    r->streaming = 1;
}

void
gw_reason(gw_req *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

const char *
gw_arg(gw_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

int
gw_has_role(const gw_req *r, const char *role)
{
    size_t i;
    json_t *v;

    if (!r->authed)
        return 0;
    json_array_foreach(r->who.roles, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), role) == 0)
            return 1;
    }
    return 0;
}

sl_code
gw_body_object(gw_req *r, int allow_empty, json_t **out, sl_err *err)
{
    if (r->body.len == 0 && allow_empty) {
        *out = json_object();
        return SL_OK;
    }
    return gw_json_parse_object(r->body.data ? r->body.data : "", r->body.len, out, err);
}

int
gw_list_args(gw_req *r, int *limit, const char **after)
{
    const char *l = gw_arg(r, "limit");
    int64_t v = SL_LIST_DEFAULT;

    if (l != NULL && sl_parse_i64(l, 1, SL_LIST_MAX, &v) != SL_OK) {
        gw_reply_error(r, SL_EINVALID, "limit must be an integer from 1 to %d", SL_LIST_MAX);
        return 0;
    }
    *limit = (int)v;
    *after = gw_arg(r, "after");
    if (*after != NULL && (strlen(*after) > 256 || !sl_utf8_valid(*after, strlen(*after)))) {
        gw_reply_error(r, SL_EINVALID, "after is not a valid cursor");
        return 0;
    }
    return 1;
}

/* ---- health and metrics ---- */

static void
h_healthz(gw_req *r)
{
    gw_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Anyone may ask /readyz: it checks the database at most once a second, so it cannot
 * take the handlers' connections away. */
static int
database_ready(gw_server *s)
{
    long long now = sl_mono_ns(), last = atomic_load(&s->ping_ns);

    if (now - last > 1000000000LL && atomic_compare_exchange_strong(&s->ping_ns, &last, now))
        atomic_store(&s->ping_ok, db_pool_ping(s->pool));
    return atomic_load(&s->ping_ok);
}

static void
h_readyz(gw_req *r)
{
    int db = database_ready(r->srv), audit = gw_audit_healthy(r->srv->audit);

    gw_reply_json(r, db && audit ? 200 : 503,
                  json_pack("{s:s, s:b, s:b}", "status", db && audit ? "ready" : "unavailable",
                            "database", db, "audit_writer", audit));
}

/* Metrics text: the buffer is far larger than the output; a failure only truncates. */
static void mput(sl_buf *b, const char *fmt, ...) SL_PRINTF(2, 3);

static void
mput(sl_buf *b, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 &&
        sl_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) != SL_OK)
        sl_warn("metrics output truncated");
}

static void
histogram(sl_buf *b, const char *name, atomic_long *buckets, atomic_long *sum_us)
{
    long cum = 0;
    int i;

    for (i = 0; i <= GW_LAT_BUCKETS; i++) {
        cum += atomic_load(&buckets[i]);
        if (i < GW_LAT_BUCKETS)
            mput(b, "%s_bucket{le=\"%g\"} %ld\n", name, gw_lat_bounds[i], cum);
        else
            mput(b, "%s_bucket{le=\"+Inf\"} %ld\n", name, cum);
    }
    mput(b, "%s_sum %.6f\n%s_count %ld\n", name, (double)atomic_load(sum_us) / 1e6, name, cum);
}

static void
h_metrics(gw_req *r)
{
    gw_server *s = r->srv;
    sl_buf b;
    int i, j;

    sl_buf_init(&b, 4 * 1024 * 1024);
    mput(&b, "# HELP sluice_requests_total HTTP requests by route and status.\n"
             "# TYPE sluice_requests_total counter\n");
    for (i = 0; i <= ROUTE_UNKNOWN; i++) {
        const char *route = i < NROUTES ? routes[i].pattern : "unmatched";
        const char *method = i < NROUTES ? routes[i].method : "";
        if (i >= NROUTES && i != ROUTE_UNKNOWN)
            continue;
        for (j = 0; j < GW_NSTATUS; j++) {
            long n = atomic_load(&s->req_count[i][j]);
            if (n == 0)
                continue;
            mput(&b,
                 "sluice_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} "
                 "%ld\n",
                 method, route, statuses[j], n);
        }
    }
    mput(&b, "# HELP sluice_request_duration_seconds Request latency, request line "
             "to answer queued (audit commit included).\n"
             "# TYPE sluice_request_duration_seconds histogram\n");
    histogram(&b, "sluice_request_duration_seconds", s->req_lat, &s->req_lat_sum_us);
    mput(&b,
         "# HELP sluice_audit_queue_depth Audit events waiting to be committed.\n"
         "# TYPE sluice_audit_queue_depth gauge\nsluice_audit_queue_depth %ld\n"
         "# HELP sluice_audit_events_total Audit events committed.\n"
         "# TYPE sluice_audit_events_total counter\nsluice_audit_events_total "
         "%ld\n"
         "# HELP sluice_audit_commits_total Group commits of the audit trail.\n"
         "# TYPE sluice_audit_commits_total counter\nsluice_audit_commits_total "
         "%ld\n"
         "# HELP sluice_audit_commit_failures_total Group commits that failed "
         "(retried).\n# TYPE sluice_audit_commit_failures_total counter\n"
         "sluice_audit_commit_failures_total %ld\n"
         "# HELP sluice_audit_overflow_total Events that found the queue full.\n"
         "# TYPE sluice_audit_overflow_total counter\nsluice_audit_overflow_total "
         "%ld\n"
         "# HELP sluice_auth_failures_total Failed authentications.\n"
         "# TYPE sluice_auth_failures_total counter\nsluice_auth_failures_total "
         "%ld\n"
         "# HELP sluice_auth_rate_limited_total Requests refused by the failed-"
         "authentication limit.\n# TYPE sluice_auth_rate_limited_total counter\n"
         "sluice_auth_rate_limited_total %ld\n"
         "# HELP sluice_auth_cache_hits_total Authentications taken from the cache (each "
         "checked when its event commits).\n# TYPE sluice_auth_cache_hits_total counter\n"
         "sluice_auth_cache_hits_total %ld\n"
         "# HELP sluice_auth_claims_failed_total Cached authentications found no longer "
         "valid at commit (request made anew).\n"
         "# TYPE sluice_auth_claims_failed_total counter\nsluice_auth_claims_failed_total %ld\n",
         gw_audit_depth(s->audit), atomic_load(&gw_stats.audit_events),
         atomic_load(&gw_stats.audit_commits), atomic_load(&gw_stats.audit_failures),
         atomic_load(&gw_stats.audit_overflow), atomic_load(&gw_stats.auth_failures),
         atomic_load(&gw_stats.rate_limited), atomic_load(&gw_stats.auth_cache_hits),
         atomic_load(&gw_stats.auth_claims_failed));
    mput(&b,
         "# HELP sluice_store_fragments_rebuilt_total Fragments missing or damaged that reads "
         "rebuilt from parity.\n# TYPE sluice_store_fragments_rebuilt_total counter\n"
         "sluice_store_fragments_rebuilt_total %ld\n"
         "# HELP sluice_store_read_failures_total Chunks that could not be given back intact "
         "(beyond parity).\n# TYPE sluice_store_read_failures_total counter\n"
         "sluice_store_read_failures_total %ld\n"
         "# HELP sluice_store_upload_bytes_total CSV bytes of committed uploads.\n"
         "# TYPE sluice_store_upload_bytes_total counter\nsluice_store_upload_bytes_total %ld\n",
         atomic_load(&gw_stats.store_rebuilt), atomic_load(&gw_stats.store_read_failures),
         atomic_load(&gw_stats.store_bytes_in));
    mput(&b, "# HELP sluice_audit_commit_seconds Time of one group commit.\n"
             "# TYPE sluice_audit_commit_seconds histogram\n");
    histogram(&b, "sluice_audit_commit_seconds", gw_stats.audit_lat, &gw_stats.audit_lat_sum_us);
    set_body(r, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
    sl_buf_free(&b);
}

/* ---- routing ---- */

/* Matches path against a pattern, capturing {x} segments. */
static int
match(const char *pattern, const char *path, gw_req *r)
{
    const char *p = pattern, *s = path;
    int n = 0;

    while (*p != '\0' && *s != '\0') {
        if (*p == '{') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || len > SL_MAX_PATH || n == GW_MAX_PARAMS)
                return 0;
            memcpy(r->params[n], s, len);
            r->params[n][len] = '\0';
            n++;
            s += len;
            p = strchr(p, '}');
            if (p == NULL)
                return 0;
            p++;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    if (*p != '\0' || *s != '\0')
        return 0;
    r->nparams = n;
    return 1;
}

/* Finds the route; on a path match with another method, sets r->allow. */
static void
route(gw_req *r)
{
    int i, path_match = -1;

    r->route = NULL;
    r->route_index = ROUTE_UNKNOWN;
    for (i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, r->path, r))
            continue;
        if (strcmp(routes[i].method, r->method) == 0) {
            r->route = &routes[i];
            r->route_index = i;
            return;
        }
        path_match = i;
    }
    if (path_match >= 0) {
        r->route_index = path_match;
        r->allow = "";
    }
}

/* The Allow header for a path that matched with another method. */
static void
allow_header(gw_req *r, char *out, size_t n)
{
    gw_req probe;
    int i;
    size_t off = 0;

    out[0] = '\0';
    memset(&probe, 0, sizeof probe);
    for (i = 0; i < NROUTES; i++) {
        if (match(routes[i].pattern, r->path, &probe)) {
            int w = snprintf(out + off, n - off, "%s%s", off ? ", " : "", routes[i].method);
            if (w < 0 || (size_t)w >= n - off)
                break;
            off += (size_t)w;
        }
    }
}

/* ---- the audit event ---- */

static void
clean_into(char *dst, size_t cap, const char *src)
{
    const char *tok;

    sl_text_clean(dst, src, strlen(src), cap - 1);
    /* a token pasted into a URL must not reach the trail */
    tok = strstr(dst, "slc_");
    if (tok != NULL)
        snprintf((char *)tok, cap - (size_t)(tok - dst), "[redacted]");
}

static json_t *
build_event(gw_req *r)
{
    json_t *detail = r->detail ? json_incref(r->detail) : json_object();
    int status = r->status;
    const char *decision;
    json_t *ev;

    json_object_set_new(detail, "method", json_string(r->method[0] ? r->method : "?"));
    if (status >= 200 && status < 400)
        decision = "allow";
    else if (status == 401 || status == 403 || status == 429 || status == 423)
        decision = "deny";
    else
        decision = "error";
    ev = json_pack("{s:s, s:s?, s:s, s:s, s:s, s:s, s:s?, s:i, s:o, s:s, s:o}", "request_id",
                   r->request_id, "principal", r->authed ? r->who.name : NULL, "action", r->action,
                   "resource", r->resource, "decision", decision, "reason",
                   r->reason[0] ? r->reason : (status < 400 ? "ok" : "refused"), "purpose",
                   r->purpose[0] ? r->purpose : NULL, "status", status, "bytes",
                   r->streaming ? json_null() : json_integer((json_int_t)r->out.len), "client",
                   r->client, "detail", detail);
    if (ev == NULL) {
        /* cannot happen with checked strings; never lose the request for it */
        sl_error("request %s: its audit event could not be built", r->request_id);
        ev = json_pack("{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:n, s:s, s:{}}", "request_id",
                       r->request_id, "principal", "action", "http.request", "resource", "?",
                       "decision", decision, "reason", "event fields not encodable", "purpose",
                       "status", status, "bytes", "client", "?", "detail");
    }
    return ev;
}

json_t *
gw_event_now(gw_req *r)
{
    return build_event(r);
}

/* ---- authentication ---- */

static void
auth_fail(gw_req *r, const char *why)
{
    atomic_fetch_add(&gw_stats.auth_failures, 1);
    gw_ratelimit_fail(r->srv->rl, r->client);
    gw_reason(r, "unauthenticated: %s", why);
    reply_code(r, SL_EAUTH, "authentication failed: a valid bearer token is required");
}

/* 1 when authenticated; otherwise the answer is set. */
static int
authenticate(gw_req *r)
{
    static const unsigned char dummy[CRY_HASH_BYTES];
    char id[CRY_TOKEN_ID_HEX + 1], secret[CRY_TOKEN_SECRET_HEX + 1];
    unsigned char hash[CRY_HASH_BYTES];
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    db_token tok;
    PGconn *c = NULL;
    sl_err err;
    sl_code rc;
    int ok = 0, found, cached = 0;

    sl_err_clear(&err);
    if (!gw_ratelimit_allow(r->srv->rl, r->client)) {
        atomic_fetch_add(&gw_stats.rate_limited, 1);
        gw_reason(r, "too many failed authentications from this address");
        reply_code(r, SL_ERATE, "too many failed authentications; try again later");
        return 0;
    }
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        auth_fail(r, h == NULL ? "no bearer token" : "not a bearer token");
        return 0;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (cry_token_parse(h, strlen(h), id, secret) != SL_OK) {
        auth_fail(r, "malformed token");
        goto out;
    }
    /* Only audited routes use the cache: their event's commit checks the claim. */
    if (r->route->audited && !r->auth_fresh &&
        gw_authcache_get(r->srv->auth_cache, id, &tok, &r->who)) {
        cached = 1;
        rc = SL_OK;
    } else {
        if ((rc = db_acquire(r->srv->pool, SL_DB_ACQUIRE_MS, &c, &err)) != SL_OK) {
            gw_reply_err(r, &err);
            goto out;
        }
        rc = db_auth_lookup(c, id, &tok, &r->who, &err);
        db_release(r->srv->pool, c, rc == SL_EUNAVAIL);
        if (rc != SL_OK && rc != SL_ENOTFOUND) {
            gw_reply_err(r, &err);
            goto out;
        }
    }
    found = rc == SL_OK;
    /* the same work whether or not the id exists */
    cry_token_hash(r->srv->keys->token, id, secret, hash);
    if (!cry_hash_equal(hash, found ? tok.hash : dummy) || !found) {
        auth_fail(r, found ? "wrong secret" : "unknown token id");
        goto out;
    }
    snprintf(r->token_id, sizeof r->token_id, "%s", id);
    r->token_expires_us = tok.expires_us;
    if (tok.revoked) {
        auth_fail(r, "token revoked");
        goto out;
    }
    if (tok.expires_us <= sl_now_us()) {
        auth_fail(r, "token expired");
        goto out;
    }
    if (r->who.disabled) {
        auth_fail(r, "principal disabled");
        goto out;
    }
    if (cached)
        atomic_fetch_add(&gw_stats.auth_cache_hits, 1);
    else
        gw_authcache_put(r->srv->auth_cache, id, &tok, &r->who);
    r->authed = 1;
    r->auth_cached = cached;
    ok = 1;
out:
    if (!ok) {
        db_principal_clear(&r->who);
        memset(&r->who, 0, sizeof r->who);
    }
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(hash, sizeof hash);
    return ok;
}

/* ---- the request lifecycle ---- */

static void
request_id(gw_req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    unsigned char raw[16];
    size_t i, n;

    if (h != NULL) {
        n = strlen(h);
        for (i = 0; i < n; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.'))
                break;
        }
        if (n >= 1 && n <= SL_MAX_REQUEST_ID && i == n) {
            memcpy(r->request_id, h, n + 1);
            return;
        }
    }
    cry_random(raw, sizeof raw);
    cry_hex(raw, sizeof raw, r->request_id);
}

static void
client_addr(gw_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(r->client, sizeof r->client, "unknown");
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client,
                  sizeof r->client);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client,
                  sizeof r->client);
}

/* Per connection: how many request lines libmicrohttpd handed us. */
typedef struct {
    long requests;
} conn_state;

static void
note_request(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    if (ci != NULL && ci->socket_context != NULL)
        ((conn_state *)ci->socket_context)->requests++;
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn);

/*
 * A connection that closes before libmicrohttpd handed us any request line sent
 * something it refused (a request line that is not HTTP, an unknown version, a URI over
 * its limit), or nothing at all, or failed its TLS handshake. It gets one event too:
 * nothing reaches sluice unrecorded.
 */
static void
connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode code)
{
    gw_server *s = cls;
    conn_state *cs = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = sl_xcalloc(1, sizeof(conn_state));
        return;
    }
    if (cs == NULL)
        return;
    if (cs->requests == 0 && !atomic_load(&s->stopping)) {
        gw_req *r = uri_log(s, "", conn);
        snprintf(r->method, sizeof r->method, "?");
        snprintf(r->resource, sizeof r->resource, "(connection)");
        snprintf(r->action, sizeof r->action, "http.connection");
        request_id(r);
        client_addr(r);
        gw_reason(r, "connection closed without a request sluice could read: not HTTP, an "
                     "unsupported version, a request line over the limit, a failed TLS "
                     "handshake, or nothing sent");
        gw_audit_post(s->audit, build_event(r));
        sl_buf_free(&r->body);
        sl_buf_free(&r->out);
        free(r);
        atomic_fetch_sub(&s->active, 1);
    }
    free(cs);
    *socket_context = NULL;
}

static void *
uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    gw_server *s = cls;
    gw_req *r = sl_xcalloc(1, sizeof *r);
    const char *q = strchr(uri, '?');
    size_t n = q ? (size_t)(q - uri) : strlen(uri);

    r->srv = s;
    r->conn = conn;
    r->t0_ns = sl_mono_ns();
    if (uri[0] != '\0')
        note_request(conn);
    r->route_index = ROUTE_UNKNOWN;
    sl_buf_init(&r->body, SL_MAX_JSON_BODY);
    sl_buf_init_wiped(&r->out, SIZE_MAX / 2); /* may hold a token shown once */
    if (n > SL_MAX_PATH) {
        r->path_bad = 1;
        n = SL_MAX_PATH;
    }
    /* libmicrohttpd decodes %00 into a NUL that would silently cut the path or a query
     * value (GET /v1/principals/a%00b would name "a"): refuse it outright */
    if (strstr(uri, "%00") != NULL)
        r->path_bad = 1;
    clean_into(r->resource, sizeof r->resource, "");
    {
        char raw[SL_MAX_PATH + 1];
        memcpy(raw, uri, n);
        raw[n] = '\0';
        clean_into(r->resource, sizeof r->resource, raw);
    }
    snprintf(r->action, sizeof r->action, "http.request");
    atomic_fetch_add(&s->active, 1);
    return r;
}

static enum MHD_Result
add_common_headers(gw_req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    if (r->ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    if (r->status == 405) {
        char allow[128];
        allow_header(r, allow, sizeof allow);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (r->location[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->x_policy_version[0] != '\0') {
        MHD_add_response_header(resp, "X-Sluice-Policy-Version", r->x_policy_version);
        if (r->x_masked[0] != '\0')
            MHD_add_response_header(resp, "X-Sluice-Masked-Columns", r->x_masked);
    }
    if (atomic_load(&r->srv->stopping)) /* stopping: let keep-alive clients go */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return MHD_YES;
}

/* Streaming: MHD pulls, we produce into a buffer a piece at a time. */
typedef struct {
    gw_stream stream;
    sl_buf pending;
    size_t off;
    int done;
    gw_server *srv;
} stream_state;

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_state *st = cls;
    size_t n;

    (void)pos;
    while (st->off == st->pending.len) {
        int more;
        if (st->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        sl_buf_reset(&st->pending);
        st->off = 0;
        more = st->stream.produce(st->stream.state, &st->pending);
        if (more < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (more == 0)
            st->done = 1;
    }
    n = st->pending.len - st->off;
    if (n > max)
        n = max;
    memcpy(buf, st->pending.data + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void
stream_free(void *cls)
{
    stream_state *st = cls;

    if (st->stream.release)
        st->stream.release(st->stream.state);
    if (st->pending.data != NULL) /* rows that were served */
        sodium_memzero(st->pending.data, st->pending.cap);
    sl_buf_free(&st->pending);
    free(st);
}

/* Answer bodies may hold a token shown once: wiped when MHD is done with them. */
typedef struct {
    char *p;
    size_t n;
} wiped;

static void
wipe_free(void *cls)
{
    wiped *w = cls;

    sodium_memzero(w->p, w->n);
    free(w->p);
    free(w);
}

static enum MHD_Result
send_answer(gw_req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    int idx;

    if (r->streaming) {
        stream_state *st = sl_xcalloc(1, sizeof *st);
        st->stream = r->stream;
        st->srv = r->srv;
        /* a piece: a slice of rows (about a MiB; 16 records of the largest size past it) */
        sl_buf_init_wiped(&st->pending, (size_t)1 << 30);
        r->streaming = 0; /* ownership moves to the response */
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, st,
                                                 stream_free);
    } else {
        wiped *w = sl_xmalloc(sizeof *w);
        w->p = sl_buf_take(&r->out, &w->n);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(w->n, w->p, wipe_free, w);
        if (resp == NULL)
            wipe_free(w);
    }
    if (resp == NULL)
        return MHD_NO;
    add_common_headers(r, resp);
    ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    idx = r->route_index;
    atomic_fetch_add(&r->srv->req_count[idx][status_index(r->status)], 1);
    gw_metrics_observe(r->srv->req_lat, &r->srv->req_lat_sum_us, (sl_mono_ns() - r->t0_ns) / 1000);
    r->phase = 2;
    return ret;
}

/* Ends a mutation's transaction; 0 when its COMMIT failed. */
static int
end_txn(gw_req *r, int commit)
{
    sl_err err;
    int ok = 1;

    if (r->txn == NULL)
        return 1;
    if (commit) {
        ok = db_exec(r->txn, "COMMIT", &err) == SL_OK;
        if (!ok)
            sl_error("request %s: commit after its audit event failed: %s", r->request_id,
                     err.detail);
        r->committed = ok;
    } else {
        db_rollback(r->txn);
    }
    db_release(r->srv->pool, r->txn, !ok);
    r->txn = NULL;
    return ok;
}

static enum MHD_Result dispatch(gw_req *r);

/* Undoes what authenticating and handling did, so the request can be made anew. */
static void
forget_answer(gw_req *r)
{
    end_txn(r, 0);
    if (r->streaming && r->stream.release)
        r->stream.release(r->stream.state);
    r->streaming = 0;
    memset(&r->stream, 0, sizeof r->stream);
    if (r->out.data != NULL)
        sodium_memzero(r->out.data, r->out.len);
    r->out.len = 0;
    r->status = 0;
    r->ctype = NULL;
    r->allow = NULL;
    r->location[0] = r->reason[0] = '\0';
    json_decref(r->detail);
    r->detail = NULL;
    r->authed = r->auth_cached = 0;
    db_principal_clear(&r->who);
    memset(&r->who, 0, sizeof r->who);
    r->token_id[0] = '\0';
    r->token_expires_us = 0;
    r->audited = 0;
    r->phase = 1;
    memset(&r->wait, 0, sizeof r->wait);
    /* what the handler left for after its commit (streamed uploads are never made anew:
     * they authenticate from the database) */
    if (r->up_release != NULL)
        r->up_release(r);
    r->up = NULL;
    r->up_release = NULL;
    r->after_commit = NULL;
    r->committed = 0;
}

/* The audit writer's notifier tells a suspended request its event's outcome. */
static void
event_done(gw_audit_wait *w)
{
    gw_req *r = w->ctx;

    MHD_resume_connection(r->conn);
}

/*
 * Answers once the event's outcome is known; 503 without data when the trail could not
 * take it. A mutation's own transaction stays open until its event is durable, and is
 * rolled back when the event cannot be: a change is never made without its record.
 */
static enum MHD_Result
after_event(gw_req *r)
{
    if (r->wait.rc == SL_EAUTH) {
        /* the cached authentication no longer holds: nothing was written or sent */
        atomic_fetch_add(&gw_stats.auth_claims_failed, 1);
        gw_authcache_forget(r->srv->auth_cache, r->token_id);
        forget_answer(r);
        r->auth_fresh = 1;
        return dispatch(r);
    }
    if (r->wait.rc != SL_OK) {
        end_txn(r, 0);
        if (r->streaming && r->stream.release) {
            r->stream.release(r->stream.state);
            r->streaming = 0;
        }
        r->location[0] = '\0';
        reply_code(r, SL_EUNAVAIL, "the audit trail is unavailable; nothing was served");
    } else if (r->status >= 400) {
        end_txn(r, 0); /* a refusal changes nothing, whatever the handler did first */
    } else if (!end_txn(r, 1)) {
        /* the event says it happened, the database says not: record the correction */
        json_t *fix;
        r->location[0] = '\0';
        r->reason[0] = '\0';
        reply_code(r, SL_EUNAVAIL, "database unavailable; the change was not made");
        snprintf(r->reason, sizeof r->reason,
                 "correction: the change recorded at seq %lld was not committed",
                 (long long)r->wait.seq);
        fix = build_event(r);
        gw_audit_post(r->srv->audit, fix);
    } else if (r->after_commit != NULL) {
        r->after_commit(r);
    }
    return send_answer(r);
}

/*
 * Hands the request's event to the audit writer and suspends the connection until it is
 * committed (or its bound passes): the connection's thread serves others meanwhile, and
 * the answer is made in after_event once the notifier resumes it.
 */
static enum MHD_Result
finish(gw_req *r)
{
    /* /metrics is not audited, but a refusal there is: guessing tokens leaves a record */
    if (r->route == NULL || r->route->audited || r->status == 401 || r->status == 403 ||
        r->status == 429) {
        json_t *ev = build_event(r);
        r->audited = 1;
        r->phase = 3;
        r->wait.done = event_done;
        r->wait.ctx = r;
        r->wait.claim = r->authed && r->auth_cached;
        if (r->wait.claim) {
            snprintf(r->wait.claim_token, sizeof r->wait.claim_token, "%s", r->token_id);
            r->wait.claim_version = r->who.version;
        }
        if (atomic_load(&r->srv->stopping)) {
            /* No connection may be left suspended when the server stops: a request
             * arriving once stopping has begun waits on its thread instead. */
            gw_audit_commit(r->srv->audit, ev, &r->wait);
            return after_event(r);
        }
        /* suspended first: the outcome may come before this returns */
        MHD_suspend_connection(r->conn);
        gw_audit_submit(r->srv->audit, ev, &r->wait);
        return MHD_YES;
    }
    if (end_txn(r, r->status < 400) && r->committed && r->after_commit != NULL)
        r->after_commit(r);
    return send_answer(r);
}

static int
content_type_json(gw_req *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = strlen("application/json");

    return ct != NULL && strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* An HTTP method is a token (RFC 9110 5.6.2) of at most 15 characters. */
static int
method_ok(const char *m)
{
    size_t i;

    for (i = 0; m[i] != '\0'; i++) {
        char ch = m[i];
        if (i >= 15 || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                         (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch) != NULL))
            return 0;
    }
    return i > 0;
}

typedef struct {
    const char *name;
    int n;
} counter;

static enum MHD_Result
count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    counter *c = cls;

    (void)kind;
    (void)value;
    if (strcasecmp(key, c->name) == 0)
        c->n++;
    return MHD_YES;
}

static int
header_count(struct MHD_Connection *conn, const char *name)
{
    counter c = {name, 0};

    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &c);
    return c.n;
}

static int
content_type_csv(gw_req *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = strlen("text/csv");

    return ct != NULL && strncasecmp(ct, "text/csv", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static int authorize_route(gw_req *r);

/*
 * A streamed upload: authenticated and checked as soon as its headers are in, so that a
 * refused one is answered before its body is read; the handler then takes the body a
 * piece at a time. Always authenticated from the database: a cached authentication is
 * only a claim checked at commit, and a body already consumed cannot be made anew.
 */
static enum MHD_Result
begin_upload(gw_req *r)
{
    r->auth_fresh = 1;
    if (!authenticate(r) || !authorize_route(r))
        return finish(r);
    if (!content_type_csv(r)) {
        gw_reply_error(r, SL_EMEDIA, "an upload's body must be text/csv");
        return finish(r);
    }
    r->route->fn(r);
    if (r->status != 0 || r->up_feed == NULL) {
        if (r->status == 0)
            gw_reply_error(r, SL_EUNAVAIL, "the upload could not begin");
        return finish(r);
    }
    return MHD_YES;
}

static enum MHD_Result
upload_piece(gw_req *r, const char *data, size_t *size)
{
    sl_err err;

    if (*size > 0) {
        size_t got = *size;
        *size = 0;
        if (r->up_failed) {
            /* Read the rest and answer at its end: a client still sending does not read
             * an early answer (curl and most others), and closing on unread data resets
             * the connection and loses it. Past a bound, answer and let it go. */
            r->discarded += got;
            if (r->discarded > SL_MAX_UPLOAD_DISCARD)
                return finish(r);
            return MHD_YES;
        }
        sl_err_clear(&err);
        if (r->up_feed(r, data, got, &err) != SL_OK) {
            r->up_failed = 1;
            gw_reply_err(r, &err);
        }
        return MHD_YES;
    }
    if (!r->up_failed)
        r->up_end(r);
    return finish(r);
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
               const char *version, const char *upload_data, size_t *upload_data_size,
               void **req_cls)
{
    gw_req *r = *req_cls;
    const char *cl, *te;

    (void)cls;
    (void)version;
    if (r == NULL)
        return MHD_NO; /* no URI log callback ran: cannot happen */
    if (r->phase == 2)
        return MHD_YES;
    if (r->phase == 3) {
        /* resumed: the event's outcome is known; a body still arriving is not read */
        *upload_data_size = 0;
        return after_event(r);
    }
    if (r->phase == 0) {
        r->phase = 1;
        request_id(r);
        client_addr(r);
        if (!method_ok(method)) {
            snprintf(r->method, sizeof r->method, "?");
            gw_reply_error(r, SL_EBADREQ, "malformed request method");
            return finish(r);
        }
        snprintf(r->method, sizeof r->method, "%s", method);
        if (r->path_bad || strlen(url) > SL_MAX_PATH || !sl_utf8_valid(url, strlen(url))) {
            gw_reply_error(r, SL_EBADREQ,
                           "request path is too long, not valid UTF-8, or holds a NUL");
            return finish(r);
        }
        snprintf(r->path, sizeof r->path, "%s", url);
        route(r);
        if (r->route != NULL) {
            snprintf(r->action, sizeof r->action, "%s", r->route->action);
            clean_into(r->resource, sizeof r->resource,
                       strncmp(r->path, "/v1/", 4) == 0 ? r->path + 4 : r->path + 1);
        }
        /* ambiguous framing is how requests are smuggled: refuse it (RFC 9112 6.3) */
        if (header_count(conn, MHD_HTTP_HEADER_CONTENT_LENGTH) > 1 ||
            header_count(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING) > 1) {
            gw_reply_error(r, SL_EBADREQ, "repeated Content-Length or Transfer-Encoding");
            return finish(r);
        }
        te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (te != NULL && strcasecmp(te, "chunked") != 0) {
            gw_reply_error(r, SL_EBADREQ, "only the chunked transfer coding is accepted");
            return finish(r);
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && te != NULL) {
            gw_reply_error(r, SL_EBADREQ, "both Content-Length and Transfer-Encoding given");
            return finish(r);
        }
        if (cl != NULL) {
            int64_t len;
            if (sl_parse_i64(cl, 0, INT64_MAX, &len) != SL_OK) {
                gw_reply_error(r, SL_EBADREQ, "bad Content-Length");
                return finish(r);
            }
            if (len > SL_MAX_JSON_BODY && (r->route == NULL || r->route->body != GW_BODY_CSV)) {
                gw_reply_error(r, SL_ETOOLARGE, "request body larger than %d bytes",
                               SL_MAX_JSON_BODY);
                return finish(r);
            }
        }
        if (r->route != NULL && r->route->body == GW_BODY_CSV)
            return begin_upload(r);
        return MHD_YES;
    }
    if (r->up_feed != NULL)
        return upload_piece(r, upload_data, upload_data_size);
    if (*upload_data_size > 0) {
        size_t got = *upload_data_size;
        *upload_data_size = 0;
        if (r->body_too_large || sl_buf_append(&r->body, upload_data, got) != SL_OK) {
            /* Read a little past the limit so the client, still sending, can read the 413
             * (closing on unread data resets the connection and loses it); far past it,
             * answer now and let the connection go. */
            r->body_too_large = 1;
            r->discarded += got;
            if (r->discarded > SL_MAX_DISCARD) {
                gw_reply_error(r, SL_ETOOLARGE, "request body larger than %d bytes",
                               SL_MAX_JSON_BODY);
                return finish(r);
            }
        }
        return MHD_YES;
    }
    /* the whole request is here */
    if (r->body_too_large) {
        gw_reply_error(r, SL_ETOOLARGE, "request body larger than %d bytes", SL_MAX_JSON_BODY);
        return finish(r);
    }
    if (r->route == NULL) {
        if (r->allow != NULL)
            gw_reply_error(r, SL_EMETHOD, "method %s not allowed here", r->method);
        else
            gw_reply_error(r, SL_ENOTFOUND, "no such endpoint");
        return finish(r);
    }
    return dispatch(r);
}

/* 1 when the principal holds one of the route's roles (or it needs none); else the
 * answer is set. */
static int
authorize_route(gw_req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sluice-Purpose");
    char need[96] = "";
    int i, ok = 0;

    if (h != NULL) {
        if (!sl_name_valid(h)) {
            gw_reason(r, "bad X-Sluice-Purpose header");
            gw_reply_error(r, SL_EBADREQ,
                           "header X-Sluice-Purpose must be a word matching "
                           "^[a-z][a-z0-9_.-]{0,62}$");
            return 0;
        }
        snprintf(r->purpose, sizeof r->purpose, "%s", h);
    }
    if (r->route->roles[0] == NULL)
        return 1;
    for (i = 0; i < 4 && r->route->roles[i] != NULL; i++) {
        ok |= gw_has_role(r, r->route->roles[i]);
        snprintf(need + strlen(need), sizeof need - strlen(need), "%s%s",
                 i == 0 ? "" : (i + 1 < 4 && r->route->roles[i + 1] != NULL ? ", " : " or "),
                 r->route->roles[i]);
    }
    if (!ok) {
        gw_reason(r, "requires role %s", need);
        gw_reply_error(r, SL_EDENIED, "this needs the role %s", need);
    }
    return ok;
}

/* Authenticates, checks the route's roles and runs its handler; then the event. */
static enum MHD_Result
dispatch(gw_req *r)
{
    if (r->route->auth && !authenticate(r))
        return finish(r);
    if (!authorize_route(r))
        return finish(r);
    if (r->route->body == GW_BODY_JSON && r->body.len > 0 && !content_type_json(r)) {
        gw_reply_error(r, SL_EMEDIA, "request body must be application/json");
        return finish(r);
    }
    if (!r->route->body && r->body.len > 0) {
        gw_reply_error(r, SL_EBADREQ, "this endpoint takes no request body");
        return finish(r);
    }
    r->route->fn(r);
    return finish(r);
}

static void
completed(void *cls, struct MHD_Connection *conn, void **req_cls,
          enum MHD_RequestTerminationCode toe)
{
    gw_server *s = cls;
    gw_req *r = *req_cls;

    (void)conn;
    if (r == NULL)
        return;
    if (!r->audited && (r->route == NULL || r->route->audited)) {
        /* refused by the HTTP layer (header limits, malformed request) or abandoned:
         * still exactly one event */
        static const char *why[] = {"completed",       "connection error", "timed out",
                                    "server shutdown", "read error",       "client aborted"};
        if (r->method[0] == '\0')
            snprintf(r->method, sizeof r->method, "?");
        if (r->request_id[0] == '\0') {
            request_id(r);
            client_addr(r);
        }
        r->status = 0;
        r->out.len = 0;
        gw_reason(r,
                  "refused by the HTTP layer (its own answer, e.g. 400, 413, 414 or 431) or "
                  "abandoned by the client: %s",
                  (unsigned)toe < sizeof why / sizeof why[0] ? why[toe] : "terminated");
        gw_audit_post(s->audit, build_event(r));
    }
    if (r->streaming && r->stream.release)
        r->stream.release(r->stream.state);
    if (r->txn != NULL) {
        db_rollback(r->txn);
        db_release(s->pool, r->txn, 1);
        r->txn = NULL;
    }
    if (r->up_release != NULL)
        r->up_release(r);
    db_principal_clear(&r->who);
    json_decref(r->detail);
    sl_buf_free(&r->body);
    sl_buf_free(&r->out);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) SL_PRINTF(2, 0);

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    sl_debug("http: %s", line);
}

/* ---- start, run, stop ---- */

static sl_code
listen_socket(const char *listen_at, int *fd_out, int *v6, sl_err *err)
{
    char host[128], *port;
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, one = 1, e;

    snprintf(host, sizeof host, "%s", listen_at);
    port = strrchr(host, ':');
    if (port == NULL)
        return sl_err_set(err, SL_EINVALID, "--listen must be HOST:PORT");
    *port++ = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((e = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0)
        return sl_err_set(err, SL_EINVALID, "cannot listen on %s: %s", listen_at, gai_strerror(e));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
            *v6 = ai->ai_family == AF_INET6;
            break;
        }
        close(fd);
        fd = -1;
    }
    e = errno;
    freeaddrinfo(res);
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "cannot listen on %s: %s", listen_at, strerror(e));
    *fd_out = fd;
    return SL_OK;
}

static sl_code
drop_privileges(const gw_config *cfg, sl_err *err)
{
    uid_t uid;
    gid_t gid;
    sl_code rc;

    if (geteuid() != 0)
        return SL_OK;
    if ((rc = gw_user_lookup(cfg->run_as, &uid, &gid, err)) != SL_OK)
        return rc;
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
        return sl_err_set(err, SL_EIO, "could not drop privileges to %s: %s", cfg->run_as,
                          strerror(errno));
    if (setuid(0) == 0)
        return sl_err_set(err, SL_EIO, "privileges were not dropped");
    return SL_OK;
}

/* Waits up to ms for the requests in flight to complete. */
static void
wait_active(gw_server *s, int64_t ms)
{
    int64_t end = sl_mono_ns() + ms * 1000000;

    while (atomic_load(&s->active) > 0 && sl_mono_ns() < end) {
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
    }
}

int
gw_serve(gw_config *cfg)
{
    gw_server *s = sl_xcalloc(1, sizeof *s);
    gw_keys keys;
    char *cert = NULL, *key = NULL;
    sigset_t sigs;
    sl_err err;
    int fd = -1, v6 = 0, sig = 0, pg_started = 0, rcode = 1, threads, lock_fd = -1;
    unsigned flags;

    sl_err_clear(&err);
    memset(&keys, 0, sizeof keys);
    s->cfg = cfg;
    s->keys = &keys;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_DUMPABLE, 0);
    /* Requests allocate and free on many threads: without this glibc hands each thread's
     * freed top of heap back to the kernel (a madvise per request) and takes it again. */
    mallopt(M_TRIM_THRESHOLD, GW_MALLOC_TRIM);
    /* Setting the trim threshold also fixes the mmap threshold at 128 KiB: every row
     * group's buffers (a MiB or so each) would be mapped, faulted in, zeroed by the
     * kernel and unmapped again. They come from the heap, and are reused, below this. */
    mallopt(M_MMAP_THRESHOLD, GW_MALLOC_MMAP);

    if (gw_keys_load(cfg, &keys, &err) != SL_OK ||
        gw_file_read(cfg->tls_cert, 1 << 20, &cert, NULL, &err) != SL_OK ||
        gw_file_read(cfg->tls_key, 1 << 20, &key, NULL, &err) != SL_OK)
        goto out;
    /* one gateway per data directory: held until this process (and its key helper) ends */
    {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/serve.lock", cfg->data_dir);
        lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            sl_err_set(&err, SL_ECONFLICT, "another sluice serve is running on %s", cfg->data_dir);
            goto out;
        }
    }
    if (cfg->embedded_pg) {
        if (gw_pg_start(cfg, &err) != SL_OK)
            goto out;
        pg_started = 1;
    }
    if (db_migrate(cfg->conninfo, NULL, &err) != SL_OK)
        goto out;
    if (listen_socket(cfg->listen, &fd, &v6, &err) != SL_OK)
        goto out;
    {
        char buf[sizeof cfg->storage];
        const char *dirs[ST_MAX_FRAGMENTS];
        int n = gw_storage_dirs(cfg, buf, sizeof buf, dirs, ST_MAX_FRAGMENTS);
        if (st_storage_new(dirs, n, cfg->parity, &s->storage, &err) != SL_OK)
            goto out;
    }
    /* before any thread starts: the key helper is a fork */
    if (gw_keyd_start(cfg, &keys, &err) != SL_OK)
        goto out;
    /* started while still root, so its threads can be given precedence (gw_audit_start) */
    s->audit = gw_audit_start(cfg->conninfo, &keys, cfg->audit_bound_ms);
    if (drop_privileges(cfg, &err) != SL_OK)
        goto out;
    prctl(PR_SET_DUMPABLE, 0);
    if (gw_keys_token(cfg, &keys, &err) != SL_OK)
        goto out;
    s->pool = db_pool_new(cfg->conninfo, cfg->db_pool);
    s->rl = gw_ratelimit_new(cfg->auth_fail_burst, cfg->auth_fail_per_min);
    s->auth_cache = gw_authcache_new(SL_AUTH_CACHE_TTL_S);
    if (gw_store_recover(s, &err) != SL_OK)
        goto out;
    gw_sweeper_start(s);
    gw_jobs_start(s);
    /*
     * A few event-loop threads (epoll), each serving many connections: a request waiting
     * for its audit event is suspended, not parked on a thread, and resumed by the
     * writer's notifier. Handlers that query PostgreSQL block their thread for that
     * query (bounded by the statement timeout), so there are a few per core.
     */
    threads = (int)sysconf(_SC_NPROCESSORS_ONLN) * GW_THREADS_PER_CPU;
    threads = threads < GW_THREADS_MIN ? GW_THREADS_MIN : threads;
    threads = threads > GW_THREADS_MAX ? GW_THREADS_MAX : threads;
    flags = MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
            MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, s, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT,
        cert, MHD_OPTION_HTTPS_PRIORITIES, GW_TLS_PRIORITIES, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->conn_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(SL_MAX_HEADER_BYTES + 16 * 1024), MHD_OPTION_URI_LOG_CALLBACK, uri_log, s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_NOTIFY_CONNECTION, connection_notify,
        s, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024), MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_END);
    if (s->daemon == NULL) {
        sl_err_set(&err, SL_EIO, "could not start the HTTPS server on %s", cfg->listen);
        goto out;
    }
    fd = -1; /* the daemon owns it */
    sl_info("serving https://%s (pid %d, audit bound %d ms)", cfg->listen, (int)getpid(),
            cfg->audit_bound_ms);
    printf("sluice: serving https://%s\n", cfg->listen);
    fflush(stdout);
    while (sigwait(&sigs, &sig) != 0)
        ;
    sl_info("signal %d: stopping (in-flight requests finish, the audit queue drains)", sig);
    atomic_store(&s->stopping, 1);
    {
        MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
        if (lfd != MHD_INVALID_SOCKET)
            close(lfd);
        /* in-flight requests finish: a waiting one within its bound and grace */
        wait_active(s, (int64_t)cfg->audit_bound_ms + 3000);
        /* libmicrohttpd must not stop with a suspended connection: whoever still waits
         * for the trail (the database is away) is answered 503 now, as its bound would */
        if (atomic_load(&s->active) > 0) {
            gw_audit_release_waiters(s->audit);
            wait_active(s, 30000); /* streams and handlers' queries */
        }
        gw_audit_quiet(s->audit); /* no resume may reach the daemon once it is stopped */
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    rcode = 0;
out:
    if (err.code != SL_OK) {
        sl_error("%s%s%s", err.msg, err.detail[0] ? ": " : "", err.detail);
        fprintf(stderr, "sluice serve: %s\n", err.msg);
    }
    if (s->daemon != NULL)
        MHD_stop_daemon(s->daemon);
    gw_sweeper_stop(s); /* before the writer: a shred waits for its event */
    gw_jobs_stop(s);    /* likewise a job's release */
    gw_audit_stop(s->audit, 10000);
    db_pool_free(s->pool);
    gw_ratelimit_free(s->rl);
    gw_authcache_free(s->auth_cache);
    if (fd >= 0)
        close(fd);
    if (pg_started && gw_pg_stop(cfg, &err) != SL_OK)
        sl_error("could not stop the embedded PostgreSQL: %s", err.msg);
    if (lock_fd >= 0)
        close(lock_fd); /* last: the cluster is stopped */
    free(cert);
    cry_pem_free(key);
    gw_keyd_stop(&keys);
    st_storage_free(s->storage);
    gw_keys_free(&keys);
    free(s);
    if (rcode == 0)
        sl_info("stopped");
    return rcode;
}

/*
 * gateway/gw_audit_api.c: reading the trail: streamed export (jsonl with its signed
 * checkpoints, or csv), verification of the whole chain, and the checkpoint list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_http.h"

#define EXPORT_CHUNK (64 * 1024)

typedef struct {
    gw_server *srv;
    PGconn *c;
    db_audit_stream *st;
    db_audit_filter f;
    char since[SL_TS_LEN], until[SL_TS_LEN];
    char principal[SL_MAX_NAME + 1], dataset[SL_MAX_NAME + 1], action[64], decision[16];
    int csv;
    int header_done;
    int failed;
} export_state;

static void
export_release(void *p)
{
    export_state *e = p;

    if (e == NULL)
        return;
    atomic_fetch_sub(&e->srv->streams, 1);
    db_audit_close(e->st);
    if (e->c != NULL)
        db_release(e->srv->pool, e->c, e->failed);
    free(e);
}

static sl_code
checkpoint_line(const db_audit_item *it, sl_buf *out)
{
    json_t *cp = json_pack("{s:{s:I, s:s, s:s, s:s, s:s}}", "checkpoint", "seq",
                           (json_int_t)it->cp_seq, "hash", it->cp_hash, "ts", it->cp_ts, "key_id",
                           it->cp_key_id, "signature", it->cp_signature);
    char *text = json_dumps(cp, JSON_COMPACT | JSON_SORT_KEYS);
    sl_code rc = sl_buf_puts(out, text);

    if (rc == SL_OK)
        rc = sl_buf_append(out, "\n", 1);
    free(text);
    json_decref(cp);
    return rc;
}

/* CSV field per RFC 4180; text that a spreadsheet would run as a formula gets a quote. */
static sl_code
csv_field(sl_buf *out, const char *s, int last)
{
    size_t i;
    sl_code rc = SL_OK;

    if (s == NULL)
        s = "";
    if (strpbrk(s, ",\"\r\n") != NULL || strchr("=+-@\t", s[0]) != NULL) {
        rc = sl_buf_append(out, "\"", 1);
        if (rc == SL_OK && s[0] != '\0' && strchr("=+-@\t", s[0]) != NULL)
            rc = sl_buf_append(out, "'", 1);
        for (i = 0; s[i] != '\0' && rc == SL_OK; i++)
            rc = s[i] == '"' ? sl_buf_append(out, "\"\"", 2) : sl_buf_append(out, &s[i], 1);
        if (rc == SL_OK)
            rc = sl_buf_append(out, "\"", 1);
    } else {
        rc = sl_buf_puts(out, s);
    }
    if (rc == SL_OK)
        rc = sl_buf_append(out, last ? "\n" : ",", 1);
    return rc;
}

static const char *const csv_cols[] = {
    "seq",     "ts",     "request_id", "principal", "action", "resource",  "decision", "reason",
    "purpose", "status", "bytes",      "client",    "detail", "prev_hash", "hash",     NULL};

static sl_code
csv_line(const db_audit_item *it, sl_buf *out)
{
    json_t *ev = json_loads(it->canon, 0, NULL);
    sl_code rc = SL_OK;
    int i;

    if (ev == NULL)
        return SL_EINVALID;
    json_object_set_new(ev, "hash", json_string(it->hash_hex));
    for (i = 0; csv_cols[i] != NULL && rc == SL_OK; i++) {
        json_t *v = json_object_get(ev, csv_cols[i]);
        char *text = NULL;
        if (json_is_string(v))
            rc = csv_field(out, json_string_value(v), csv_cols[i + 1] == NULL);
        else {
            text = v == NULL || json_is_null(v)
                       ? NULL
                       : json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            rc = csv_field(out, text, csv_cols[i + 1] == NULL);
            free(text);
        }
    }
    json_decref(ev);
    return rc;
}

static int
export_produce(void *p, sl_buf *out)
{
    export_state *e = p;
    db_audit_item it;
    sl_err err;
    int more;

    sl_err_clear(&err);
    if (e->st == NULL) {
        if (db_acquire(e->srv->pool, SL_DB_ACQUIRE_MS, &e->c, &err) != SL_OK ||
            db_audit_open(e->c, &e->f, &e->st, &err) != SL_OK) {
            sl_warn("audit export: %s (%s)", err.msg, err.detail);
            e->failed = 1;
            return -1;
        }
    }
    if (e->csv && !e->header_done) {
        int i;
        for (i = 0; csv_cols[i] != NULL; i++)
            (void)csv_field(out, csv_cols[i], csv_cols[i + 1] == NULL);
        e->header_done = 1;
    }
    while (out->len < EXPORT_CHUNK) {
        more = db_audit_next(e->st, &it, &err);
        if (more < 0) {
            sl_warn("audit export: %s (%s)", err.msg, err.detail);
            e->failed = 1;
            return -1;
        }
        if (more == 0)
            return 0;
        if (!it.has_event)
            continue;
        if (e->csv) {
            if (csv_line(&it, out) != SL_OK)
                return -1;
            continue;
        }
        /* the stored text with its hash added: {...,"hash":"..."} */
        if (sl_buf_append(out, it.canon, strlen(it.canon) - 1) != SL_OK ||
            sl_buf_printf(out, ",\"hash\":\"%s\"}\n", it.hash_hex) != SL_OK)
            return -1;
        if (it.has_checkpoint && checkpoint_line(&it, out) != SL_OK)
            return -1;
    }
    return 1;
}

/* Copies an optional filter argument after checking it; 0 with an answer when bad. */
static int
filter_arg(gw_req *r, const char *key, char *dst, size_t cap, const char **field, int kind)
{
    const char *v = gw_arg(r, key);
    int64_t us;

    *field = NULL;
    if (v == NULL)
        return 1;
    if (kind == 't') {
        if (sl_time_parse(v, &us) != SL_OK) {
            gw_reply_error(r, SL_EINVALID, "%s must be an RFC 3339 time", key);
            return 0;
        }
        sl_time_format_us(us, dst);
    } else if (kind == 'n') {
        if (!sl_name_valid(v)) {
            gw_reply_error(r, SL_EINVALID, "%s must be a name", key);
            return 0;
        }
        snprintf(dst, cap, "%s", v);
    } else {
        size_t i, n = strlen(v);
        for (i = 0; i < n; i++)
            if (!((v[i] >= 'a' && v[i] <= 'z') || v[i] == '.' || v[i] == '_'))
                break;
        if (n == 0 || n >= cap || i != n) {
            gw_reply_error(r, SL_EINVALID, "%s is not a valid value", key);
            return 0;
        }
        snprintf(dst, cap, "%s", v);
    }
    *field = dst;
    if (r->detail == NULL)
        r->detail = json_object();
    json_object_set_new(r->detail, key, json_string(dst));
    return 1;
}

void
gw_h_audit_export(gw_req *r)
{
    export_state *e = sl_xcalloc(1, sizeof *e);
    const char *format = gw_arg(r, "format"), *limit = gw_arg(r, "limit");
    gw_stream s;

    e->srv = r->srv;
    if (format != NULL && strcmp(format, "jsonl") != 0 && strcmp(format, "csv") != 0) {
        gw_reply_error(r, SL_EINVALID, "format must be jsonl or csv");
        goto fail;
    }
    e->csv = format != NULL && strcmp(format, "csv") == 0;
    if (limit != NULL && sl_parse_i64(limit, 1, INT64_MAX, &e->f.limit) != SL_OK) {
        gw_reply_error(r, SL_EINVALID, "limit must be a positive integer");
        goto fail;
    }
    if (!filter_arg(r, "since", e->since, sizeof e->since, &e->f.since, 't') ||
        !filter_arg(r, "until", e->until, sizeof e->until, &e->f.until, 't') ||
        !filter_arg(r, "principal", e->principal, sizeof e->principal, &e->f.principal, 'n') ||
        !filter_arg(r, "dataset", e->dataset, sizeof e->dataset, &e->f.dataset, 'n') ||
        !filter_arg(r, "action", e->action, sizeof e->action, &e->f.action, 'a') ||
        !filter_arg(r, "decision", e->decision, sizeof e->decision, &e->f.decision, 'a'))
        goto fail;
    if (e->f.decision != NULL && strcmp(e->f.decision, "allow") != 0 &&
        strcmp(e->f.decision, "deny") != 0 && strcmp(e->f.decision, "error") != 0) {
        gw_reply_error(r, SL_EINVALID, "decision must be allow, deny or error");
        goto fail;
    }
    /* counted from here; export_release gives the place back on every path */
    if (atomic_fetch_add(&r->srv->streams, 1) >= r->srv->cfg->db_pool / 2 + 1) {
        atomic_fetch_sub(&r->srv->streams, 1);
        gw_reply_error(r, SL_EUNAVAIL, "too many audit exports in progress; try again");
        goto fail;
    }
    s.produce = export_produce;
    s.release = export_release;
    s.state = e;
    gw_reply_stream(r, e->csv ? "text/csv; charset=utf-8" : "application/x-ndjson", s);
    return;
fail:
    free(e);
}

/* Cross-checks a row's filter columns against its hashed text; NULL when they agree. */
static const char *
columns_disagree(const db_audit_item *it, const json_t *ev)
{
    const json_t *p = json_object_get(ev, "principal");

    if (!json_is_integer(json_object_get(ev, "seq")) ||
        json_integer_value(json_object_get(ev, "seq")) != it->seq)
        return "seq column disagrees with the hashed event (rows moved)";
    if ((it->principal == NULL) != (p == NULL || json_is_null(p)) ||
        (it->principal != NULL &&
         (!json_is_string(p) || strcmp(it->principal, json_string_value(p)) != 0)))
        return "principal column altered";
#define SAME(col, field)                                                         \
    (json_string_value(json_object_get(ev, field)) != NULL && it->col != NULL && \
     strcmp(it->col, json_string_value(json_object_get(ev, field))) == 0)
    if (!SAME(action, "action") || !SAME(resource, "resource") || !SAME(decision, "decision") ||
        !SAME(ts, "ts"))
        return "a filter column (action, resource, decision or ts) was altered";
#undef SAME
    if (json_integer_value(json_object_get(ev, "status")) != it->status)
        return "status column altered";
    return NULL;
}

void
gw_h_audit_verify(gw_req *r)
{
    cry_verifier *v = cry_verifier_new();
    db_audit_filter f;
    db_audit_stream *st = NULL;
    db_audit_item it;
    cry_verify_result res;
    PGconn *c = NULL;
    sl_err err;
    int i, more;

    sl_err_clear(&err);
    memset(&f, 0, sizeof f);
    f.with_orphan_checkpoints = 1;
    for (i = 0; i < r->srv->keys->npub; i++)
        cry_verifier_add_key(v, r->srv->keys->pub[i].pk);
    cry_verifier_require_genesis(v);
    if (gw_db_get(r, &c, &err) != SL_OK || db_audit_open(c, &f, &st, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    while ((more = db_audit_next(st, &it, &err)) == 1) {
        if (it.has_event) {
            json_t *ev = json_loads(it.canon, JSON_REJECT_DUPLICATES, NULL);
            const char *bad = ev == NULL ? "event text is not JSON" : columns_disagree(&it, ev);
            if (ev != NULL)
                json_object_set_new(ev, "hash", json_string(it.hash_hex));
            if (bad != NULL)
                cry_verifier_fail(v, it.seq, bad);
            if (ev != NULL)
                cry_verifier_event(v, ev, it.canon, strlen(it.canon));
            json_decref(ev);
        }
        if (it.has_checkpoint) {
            json_t *cp = json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)it.cp_seq,
                                   "hash", it.cp_hash, "ts", it.cp_ts, "key_id", it.cp_key_id,
                                   "signature", it.cp_signature);
            cry_verifier_checkpoint(v, cp);
            json_decref(cp);
        }
    }
    if (more < 0) {
        gw_reply_err(r, &err);
        goto out;
    }
    cry_verifier_finish(v, &res);
    gw_reply_json(r, 200,
                  json_pack("{s:b, s:I, s:I, s:o, s:O?, s:s?}", "ok", res.ok, "events",
                            (json_int_t)res.events, "checkpoints", (json_int_t)res.checkpoints,
                            "first_bad_seq",
                            res.first_bad_seq ? json_integer(res.first_bad_seq) : json_null(),
                            "last_checkpoint", res.last_checkpoint, "error",
                            res.ok ? NULL : res.error));
    if (!res.ok)
        gw_reason(r, "trail verification failed at seq %lld: %s", (long long)res.first_bad_seq,
                  res.error);
out:
    db_audit_close(st);
    gw_db_put(r, c, err.code);
    cry_verifier_free(v);
}

void
gw_h_audit_checkpoints(gw_req *r)
{
    const char *since = gw_arg(r, "since_seq"), *after;
    int64_t from = 1, a;
    json_t *items = NULL;
    PGconn *c = NULL;
    int limit, more = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    if (!gw_list_args(r, &limit, &after))
        return;
    if (since != NULL && sl_parse_i64(since, 0, INT64_MAX, &from) != SL_OK) {
        gw_reply_error(r, SL_EINVALID, "since_seq must be a non-negative integer");
        return;
    }
    if (after != NULL) {
        if (sl_parse_i64(after, 0, INT64_MAX - 1, &a) != SL_OK) {
            gw_reply_error(r, SL_EINVALID, "after is not a valid cursor");
            return;
        }
        if (a + 1 > from)
            from = a + 1;
    }
    if ((rc = gw_db_get(r, &c, &err)) == SL_OK)
        rc = db_checkpoints_json(c, from, limit, &items, &more, &err);
    gw_db_put(r, c, rc);
    if (rc != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    {
        char next[24];
        size_t n = json_array_size(items);
        if (more && n > 0)
            snprintf(next, sizeof next, "%lld",
                     (long long)json_integer_value(
                         json_object_get(json_array_get(items, n - 1), "seq")));
        gw_reply_json(r, 200,
                      json_pack("{s:o, s:s?}", "items", items, "next", more && n ? next : NULL));
    }
}

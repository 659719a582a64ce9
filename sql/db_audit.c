/*
 * sql/db_audit.c: the audit trail's rows: the chain head, COPY of a batch, checkpoints,
 * and streamed reads for export and verification.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

#define TS_US_SQL(col)                                                                             \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

static sl_code
pgfail(sl_err *err, PGconn *c, PGresult *r, const char *what)
{
    sl_err_set(err, SL_EUNAVAIL, "database unavailable");
    sl_err_detail(err, "%s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return SL_EUNAVAIL;
}

sl_code
db_audit_head(PGconn *c, int64_t *seq, unsigned char hash[32], sl_err *err)
{
    PGresult *r = PQexecParams(c, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                               0, NULL, NULL, NULL, NULL, 1);

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pgfail(err, c, r, "audit head");
    *seq = 0;
    memset(hash, 0, 32);
    if (PQntuples(r) == 1) {
        const unsigned char *v = (const unsigned char *)PQgetvalue(r, 0, 0);
        uint64_t s = 0;
        int i;
        if (PQgetlength(r, 0, 0) != 8 || PQgetlength(r, 0, 1) != 32)
            return pgfail(err, c, r, "audit head has an unexpected shape");
        for (i = 0; i < 8; i++)
            s = s << 8 | v[i];
        *seq = (int64_t)s;
        memcpy(hash, PQgetvalue(r, 0, 1), 32);
    }
    PQclear(r);
    return SL_OK;
}

/* Appends a COPY text-format field: backslash escapes for \ and control characters. */
static sl_code
copy_field(sl_buf *b, const char *s, size_t n)
{
    size_t i, start = 0;

    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[2] = {'\\', 0};
        if (ch == '\\')
            esc[1] = '\\';
        else if (ch == '\n')
            esc[1] = 'n';
        else if (ch == '\r')
            esc[1] = 'r';
        else if (ch == '\t')
            esc[1] = 't';
        else
            continue;
        if (sl_buf_append(b, s + start, i - start) != SL_OK || sl_buf_append(b, esc, 2) != SL_OK)
            return SL_ETOOLARGE;
        start = i + 1;
    }
    return sl_buf_append(b, s + start, n - start);
}

static sl_code
copy_text(sl_buf *b, const char *s, int last)
{
    sl_code rc;

    if (s == NULL)
        rc = sl_buf_append(b, "\\N", 2);
    else
        rc = copy_field(b, s, strlen(s));
    if (rc == SL_OK)
        rc = sl_buf_append(b, last ? "\n" : "\t", 1);
    return rc;
}

sl_code
db_audit_copy(PGconn *c, const db_audit_row *rows, size_t n, sl_err *err)
{
    static const char hexd[] = "0123456789abcdef";
    PGresult *r;
    sl_buf b;
    size_t i, k;
    sl_code rc = SL_OK;

    r = PQexecParams(c,
                     "COPY audit_events (seq, ts, principal, action, resource, decision, status,"
                     " canon, hash) FROM STDIN",
                     0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COPY_IN)
        return pgfail(err, c, r, "copy audit events");
    PQclear(r);
    sl_buf_init(&b, (size_t)1 << 30);
    for (i = 0; i < n && rc == SL_OK; i++) {
        const db_audit_row *e = &rows[i];
        char hash[2 + 64 + 2];
        rc = sl_buf_printf(&b, "%lld\t", (long long)e->seq);
        if (rc == SL_OK)
            rc = copy_text(&b, e->ts, 0);
        if (rc == SL_OK)
            rc = copy_text(&b, e->principal, 0);
        if (rc == SL_OK)
            rc = copy_text(&b, e->action, 0);
        if (rc == SL_OK)
            rc = copy_text(&b, e->resource, 0);
        if (rc == SL_OK)
            rc = copy_text(&b, e->decision, 0);
        if (rc == SL_OK)
            rc = sl_buf_printf(&b, "%d\t", e->status);
        if (rc == SL_OK)
            rc = copy_field(&b, e->canon, e->canon_len);
        hash[0] = '\\';
        hash[1] = '\\';
        hash[2] = 'x';
        for (k = 0; k < 32; k++) {
            hash[3 + 2 * k] = hexd[e->hash[k] >> 4];
            hash[4 + 2 * k] = hexd[e->hash[k] & 15];
        }
        if (rc == SL_OK)
            rc = sl_buf_append(&b, "\t", 1);
        if (rc == SL_OK)
            rc = sl_buf_append(&b, hash, 3 + 64);
        if (rc == SL_OK)
            rc = sl_buf_append(&b, "\n", 1);
        if (rc == SL_OK && (b.len > 256 * 1024 || i + 1 == n)) {
            if (PQputCopyData(c, b.data, (int)b.len) != 1)
                rc = SL_EUNAVAIL;
            sl_buf_reset(&b);
        }
    }
    sl_buf_free(&b);
    if (PQputCopyEnd(c, rc == SL_OK ? NULL : "sluice: batch abandoned") != 1)
        rc = SL_EUNAVAIL;
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pgfail(err, c, r, "copy audit events");
        rc = SL_EUNAVAIL;
    } else {
        PQclear(r);
    }
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    if (rc != SL_OK && err != NULL && err->code == SL_OK)
        sl_err_set(err, SL_EUNAVAIL, "database unavailable");
    return rc;
}

sl_code
db_checkpoint_insert(PGconn *c, int64_t seq, const char *hash_hex, const char *ts,
                     const char *key_id, const char *signature, sl_err *err)
{
    char s[24];
    const char *params[5] = {s, hash_hex, ts, key_id, signature};
    PGresult *r;

    snprintf(s, sizeof s, "%lld", (long long)seq);
    r = PQexecParams(c,
                     "INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature)"
                     " VALUES ($1, $2, $3, $4, $5)",
                     5, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return pgfail(err, c, r, "insert checkpoint");
    PQclear(r);
    return SL_OK;
}

struct db_audit_stream {
    PGconn *c;
    PGresult *row;
    int done;
};

sl_code
db_audit_open(PGconn *c, const db_audit_filter *f, db_audit_stream **out, sl_err *err)
{
    char limit[24];
    const char *params[7] = {f->since,    f->until,    f->principal, f->dataset,
                             f->action,   f->decision, limit};
    const char *sql;
    db_audit_stream *s;

    *out = NULL;
    snprintf(limit, sizeof limit, "%lld", (long long)(f->limit > 0 ? f->limit : INT64_MAX));
    if (f->with_orphan_checkpoints) {
        sql = "SELECT e.seq, e.canon, encode(e.hash, 'hex'), " TS_US_SQL("e.ts")
              ", e.principal, e.action, e.resource, e.decision, e.status,"
              " c.seq, c.hash, c.ts, c.key_id, c.signature"
              " FROM audit_events e FULL JOIN audit_checkpoints c ON c.seq = e.seq"
              " WHERE $1::text IS NULL AND $2::text IS NULL AND $3::text IS NULL"
              " AND $4::text IS NULL AND $5::text IS NULL AND $6::text IS NULL"
              " ORDER BY coalesce(e.seq, c.seq) LIMIT $7::bigint";
    } else {
        sql = "SELECT e.seq, e.canon, encode(e.hash, 'hex'), " TS_US_SQL("e.ts")
              ", e.principal, e.action, e.resource, e.decision, e.status,"
              " c.seq, c.hash, c.ts, c.key_id, c.signature"
              " FROM audit_events e LEFT JOIN audit_checkpoints c ON c.seq = e.seq"
              " WHERE ($1::timestamptz IS NULL OR e.ts >= $1::timestamptz)"
              " AND ($2::timestamptz IS NULL OR e.ts < $2::timestamptz)"
              " AND ($3::text IS NULL OR e.principal = $3)"
              " AND ($4::text IS NULL OR (split_part(e.resource, '/', 1) = 'datasets'"
              "      AND split_part(e.resource, '/', 2) = $4))"
              " AND ($5::text IS NULL OR e.action = $5)"
              " AND ($6::text IS NULL OR e.decision = $6)"
              " ORDER BY e.seq LIMIT $7::bigint";
    }
    if (!PQsendQueryParams(c, sql, 7, NULL, params, NULL, NULL, 0) || !PQsetSingleRowMode(c))
        return pgfail(err, c, NULL, "audit read");
    s = sl_xcalloc(1, sizeof *s);
    s->c = c;
    *out = s;
    return SL_OK;
}

static const char *
val(PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
}

int
db_audit_next(db_audit_stream *s, db_audit_item *it, sl_err *err)
{
    PGresult *r;

    PQclear(s->row);
    s->row = NULL;
    if (s->done)
        return 0;
    r = PQgetResult(s->c);
    if (r == NULL) {
        s->done = 1;
        return 0;
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        /* the end of the rows; drain to the final NULL */
        PQclear(r);
        while ((r = PQgetResult(s->c)) != NULL)
            PQclear(r);
        s->done = 1;
        return 0;
    }
    if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
        pgfail(err, s->c, r, "audit read");
        while ((r = PQgetResult(s->c)) != NULL)
            PQclear(r);
        s->done = 1;
        return -1;
    }
    s->row = r;
    memset(it, 0, sizeof *it);
    it->has_event = !PQgetisnull(r, 0, 0);
    if (it->has_event) {
        it->seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        it->canon = val(r, 1);
        it->hash_hex = val(r, 2);
        it->ts = val(r, 3);
        it->principal = val(r, 4);
        it->action = val(r, 5);
        it->resource = val(r, 6);
        it->decision = val(r, 7);
        it->status = atoi(PQgetvalue(r, 0, 8));
    }
    it->has_checkpoint = !PQgetisnull(r, 0, 9);
    if (it->has_checkpoint) {
        it->cp_seq = strtoll(PQgetvalue(r, 0, 9), NULL, 10);
        it->cp_hash = val(r, 10);
        it->cp_ts = val(r, 11);
        it->cp_key_id = val(r, 12);
        it->cp_signature = val(r, 13);
    }
    return 1;
}

void
db_audit_close(db_audit_stream *s)
{
    PGresult *r;

    if (s == NULL)
        return;
    PQclear(s->row);
    if (!s->done) {
        /* abandon the rest: cancel the query and drain, so the connection is reusable */
        PGcancel *cancel = PQgetCancel(s->c);
        char buf[256];
        if (cancel != NULL) {
            PQcancel(cancel, buf, sizeof buf);
            PQfreeCancel(cancel);
        }
        while ((r = PQgetResult(s->c)) != NULL)
            PQclear(r);
    }
    free(s);
}

sl_code
db_checkpoints_json(PGconn *c, int64_t since_seq, int limit, json_t **items, int *more,
                    sl_err *err)
{
    char since[24], lim[16];
    const char *params[2] = {since, lim};
    PGresult *r;
    int i, rows;

    snprintf(since, sizeof since, "%lld", (long long)since_seq);
    snprintf(lim, sizeof lim, "%d", limit + 1);
    r = PQexecParams(c,
                     "SELECT seq, hash, ts, key_id, signature FROM audit_checkpoints"
                     " WHERE seq >= $1 ORDER BY seq LIMIT $2",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pgfail(err, c, r, "checkpoints");
    rows = PQntuples(r);
    *more = rows > limit;
    if (rows > limit)
        rows = limit;
    *items = json_array();
    for (i = 0; i < rows; i++)
        json_array_append_new(*items,
                              json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq",
                                        (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10),
                                        "hash", PQgetvalue(r, i, 1), "ts", PQgetvalue(r, i, 2),
                                        "key_id", PQgetvalue(r, i, 3), "signature",
                                        PQgetvalue(r, i, 4)));
    PQclear(r);
    return SL_OK;
}

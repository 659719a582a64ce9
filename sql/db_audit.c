/*
 * sql/db_audit.c: the audit trail's rows: the chain head, COPY of a batch, checkpoints,
 * and streamed reads for export and verification.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

#define TS_US_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

static sl_code
pgfail(sl_err *err, PGconn *c, PGresult *r, const char *what)
{
    sl_err_set(err, SL_EUNAVAIL, "database unavailable");
    sl_err_detail(err, "%s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return SL_EUNAVAIL;
}

/*
 * Runs n statements in one round trip (pipeline mode). results[i] receives each
 * statement's result (the caller clears them); SL_EUNAVAIL when any failed.
 */
typedef struct {
    const char *sql; /* or the name of a statement prepared by db_audit_prepare */
    int n;
    const char *const *values;
    int prepared;
    const int *lengths; /* NULL: all text */
    const int *formats;
} stmt;

static sl_code
pipeline(PGconn *c, const stmt *st, int n, PGresult **results, sl_err *err)
{
    PGresult *r;
    sl_code rc = SL_OK;
    int i;

    for (i = 0; i < n; i++)
        results[i] = NULL;
    if (!PQenterPipelineMode(c))
        return pgfail(err, c, NULL, "pipeline");
    for (i = 0; i < n; i++)
        if (!(st[i].prepared ? PQsendQueryPrepared(c, st[i].sql, st[i].n, st[i].values,
                                                   st[i].lengths, st[i].formats, 0)
                             : PQsendQueryParams(c, st[i].sql, st[i].n, NULL, st[i].values,
                                                 st[i].lengths, st[i].formats, 0)))
            break;
    if (i < n || !PQpipelineSync(c)) {
        rc = pgfail(err, c, NULL, "pipeline send");
        /* the connection is in an unknown state: its owner drops it */
        return rc;
    }
    for (i = 0; i < n; i++) {
        ExecStatusType want;
        results[i] = PQgetResult(c);
        want = PQresultStatus(results[i]);
        if (want != PGRES_COMMAND_OK && want != PGRES_TUPLES_OK && rc == SL_OK) {
            sl_err_set(err, SL_EUNAVAIL, "database unavailable");
            sl_err_detail(err, "%.60s: %s", st[i].sql,
                          results[i] ? PQresultErrorMessage(results[i]) : PQerrorMessage(c));
            rc = SL_EUNAVAIL;
        }
        if (results[i] != NULL)
            while ((r = PQgetResult(c)) != NULL) /* the NULL that ends each statement */
                PQclear(r);
    }
    r = PQgetResult(c); /* PGRES_PIPELINE_SYNC */
    PQclear(r);
    if (!PQexitPipelineMode(c) && rc == SL_OK)
        rc = pgfail(err, c, NULL, "pipeline exit");
    return rc;
}

static void
clear_all(PGresult **r, int n)
{
    int i;

    for (i = 0; i < n; i++)
        PQclear(r[i]);
}

sl_code
db_audit_prepare(PGconn *c, sl_err *err)
{
    static const struct {
        const char *name, *sql;
    } ps[] = {
        {"sl_audit_lock", "SELECT pg_advisory_xact_lock(1936482677)"},
        {"sl_audit_stale", "SELECT o FROM sluice_auth_stale($1::text[], $2::bigint[]) AS o"},
        {"sl_audit_tip", "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"},
        {"sl_audit_head",
         "SELECT h.seq, encode(h.hash, 'hex'), c.seq, c.hash, c.ts, c.key_id, c.signature"
         " FROM (SELECT 1) AS one"
         " LEFT JOIN LATERAL (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1) h"
         " ON true"
         " LEFT JOIN LATERAL (SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1) c"
         " ON true"},
        /* every row of a batch shares the batch's time; seqs follow the array order */
        /* with $10 > 0, only when the head is still ($10, $11) */
        {"sl_audit_rows",
         "INSERT INTO audit_events (seq, ts, principal, action, resource, decision, status,"
         " canon, hash)"
         " SELECT $1::bigint + u.o - 1, $2::timestamptz, u.p, u.a, u.r, u.d, u.s, u.c, u.h"
         " FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[],"
         " $9::bytea[]) WITH ORDINALITY AS u(p, a, r, d, s, c, h, o)"
         " WHERE ($10::bigint = 0 OR coalesce((SELECT seq = $10::bigint AND hash = $11::bytea"
         " FROM audit_events ORDER BY seq DESC LIMIT 1), false))"
         /* and only if every cached authentication of the batch still holds */
         " AND NOT EXISTS (SELECT FROM sluice_auth_stale($12::text[], $13::bigint[]))"},
        /* only over the rows just appended */
        {"sl_audit_checkpoint",
         "INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature)"
         " SELECT $1::bigint, $2, $3, $4, $5"
         " WHERE (SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 1) = $1::bigint"},
        /* after a COPY whose head was checked under the lock: no guard, so a failure aborts
         * the transaction instead of committing the rows without their checkpoint */
        {"sl_audit_checkpoint_copy",
         "INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature)"
         " VALUES ($1::bigint, $2, $3, $4, $5)"},
    };
    size_t i;

    for (i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        PGresult *r = PQprepare(c, ps[i].name, ps[i].sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return pgfail(err, c, r, ps[i].name);
        PQclear(r);
    }
    return SL_OK;
}

sl_code
db_audit_hash_at(PGconn *c, int64_t seq, int old_pid, unsigned char hash[32], int *found,
                 sl_err *err)
{
    static const stmt st0 = {"BEGIN", 0, NULL, 0, NULL, NULL};
    char seqs[24], pids[24];
    const char *seqv[1] = {seqs}, *pidv[1] = {pids};
    stmt st[5];
    PGresult *res[5], *r;
    sl_code rc;

    *found = 0;
    memset(hash, 0, 32);
    snprintf(seqs, sizeof seqs, "%lld", (long long)seq);
    snprintf(pids, sizeof pids, "%d", old_pid);
    /* the old session, if it still waits in its transaction for a COMMIT that will not
     * come, is ended now rather than at idle_in_transaction_session_timeout; best effort */
    if (old_pid > 0) {
        r = PQexecParams(c,
                         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1"
                         " AND state = 'idle in transaction'"
                         " AND application_name = 'sluice audit writer'",
                         1, NULL, pidv, NULL, NULL, 0);
        PQclear(r);
    }
    /* under the trail's lock: a commit still under way is done (or undone) by then */
    st[0] = st0;
    st[1] = (stmt){"SET LOCAL lock_timeout = '15s'", 0, NULL, 0, NULL, NULL};
    st[2] = (stmt){"sl_audit_lock", 0, NULL, 1, NULL, NULL};
    st[3] = (stmt){"SELECT encode(hash, 'hex') FROM audit_events WHERE seq = $1::bigint",
                   1,
                   seqv,
                   0,
                   NULL,
                   NULL};
    st[4] = (stmt){"COMMIT", 0, NULL, 0, NULL, NULL};
    if ((rc = pipeline(c, st, 5, res, err)) != SL_OK) {
        clear_all(res, 5);
        db_rollback(c);
        return rc;
    }
    if (PQntuples(res[3]) == 1 && !PQgetisnull(res[3], 0, 0)) {
        *found = 1;
        db_unhex32(PQgetvalue(res[3], 0, 0), hash);
    }
    clear_all(res, 5);
    return SL_OK;
}

sl_code
db_audit_begin(PGconn *c, int64_t *seq, unsigned char hash[32], db_checkpoint *cp, int *cp_found,
               sl_err *err)
{
    static const stmt st[] = {
        {"BEGIN", 0, NULL, 0, NULL, NULL},
        {"sl_audit_lock", 0, NULL, 1, NULL, NULL},
        /* read after the lock, in a statement of its own: a fresh snapshot */
        {"sl_audit_head", 0, NULL, 1, NULL, NULL},
    };
    PGresult *res[3];
    PGresult *r;
    sl_code rc;

    *seq = 0;
    *cp_found = 0;
    memset(hash, 0, 32);
    memset(cp, 0, sizeof *cp);
    if ((rc = pipeline(c, st, 3, res, err)) != SL_OK) {
        clear_all(res, 3);
        db_rollback(c);
        return rc;
    }
    r = res[2];
    if (PQntuples(r) != 1) {
        clear_all(res, 3);
        db_rollback(c);
        return pgfail(err, c, NULL, "audit head has an unexpected shape");
    }
    if (!PQgetisnull(r, 0, 0)) {
        *seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        db_unhex32(PQgetvalue(r, 0, 1), hash);
    }
    if (!PQgetisnull(r, 0, 2)) {
        *cp_found = 1;
        cp->seq = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        snprintf(cp->hash, sizeof cp->hash, "%s", PQgetvalue(r, 0, 3));
        snprintf(cp->ts, sizeof cp->ts, "%s", PQgetvalue(r, 0, 4));
        snprintf(cp->key_id, sizeof cp->key_id, "%s", PQgetvalue(r, 0, 5));
        snprintf(cp->signature, sizeof cp->signature, "%s", PQgetvalue(r, 0, 6));
    }
    clear_all(res, 3);
    return SL_OK;
}

/*
 * One-dimensional arrays in PostgreSQL's binary format (array_send): the server reads
 * each element's bytes as they are, with no quoting to parse. Big-endian throughout.
 */
#define OID_INT4  23
#define OID_TEXT  25
#define OID_BYTEA 17

static sl_code
put32(sl_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    return sl_buf_append(b, x, 4);
}

static sl_code
array_head(sl_buf *b, uint32_t oid, size_t n)
{
    sl_code rc = put32(b, 1); /* dimensions */

    if (rc == SL_OK)
        rc = put32(b, 1); /* may hold NULLs */
    if (rc == SL_OK)
        rc = put32(b, oid);
    if (rc == SL_OK)
        rc = put32(b, (uint32_t)n);
    if (rc == SL_OK)
        rc = put32(b, 1); /* lower bound */
    return rc;
}

/* An element: its length then its bytes; NULL as length -1. */
static sl_code
array_elem(sl_buf *b, const void *p, size_t n)
{
    sl_code rc;

    if (p == NULL)
        return put32(b, 0xffffffffu);
    rc = put32(b, (uint32_t)n);
    return rc == SL_OK ? sl_buf_append(b, p, n) : rc;
}

/* The claims (none when NULL) as two array literals ('{...}'); token ids are hex. */
static sl_code
claims_text(const db_auth_claims *cl, sl_buf *ids, sl_buf *vers)
{
    sl_code rc = sl_buf_append(ids, "{", 1);
    size_t i;

    if (rc == SL_OK)
        rc = sl_buf_append(vers, "{", 1);
    for (i = 0; cl != NULL && i < cl->n && rc == SL_OK; i++) {
        const char *id = cl->token_ids[i];
        char v[24];
        size_t k;
        for (k = 0; id[k] != '\0'; k++)
            if (!((id[k] >= '0' && id[k] <= '9') || (id[k] >= 'a' && id[k] <= 'f')))
                return SL_EINVALID;
        snprintf(v, sizeof v, "%s%lld", i ? "," : "", (long long)cl->versions[i]);
        if (i > 0)
            rc = sl_buf_append(ids, ",", 1);
        if (rc == SL_OK)
            rc = sl_buf_append(ids, id, k);
        if (rc == SL_OK)
            rc = sl_buf_append(vers, v, strlen(v));
    }
    if (rc == SL_OK)
        rc = sl_buf_append(ids, "}", 1);
    if (rc == SL_OK)
        rc = sl_buf_append(vers, "}", 1);
    return rc;
}

sl_code
db_auth_stale(PGconn *c, const db_auth_claims *claims, unsigned char *stale, sl_err *err)
{
    sl_buf ids, vers;
    const char *params[2];
    PGresult *r;
    int i;

    memset(stale, 0, claims->n);
    sl_buf_init(&ids, (size_t)1 << 20);
    sl_buf_init(&vers, (size_t)1 << 20);
    if (claims_text(claims, &ids, &vers) != SL_OK) {
        sl_buf_free(&ids);
        sl_buf_free(&vers);
        return sl_err_set(err, SL_EINTERNAL, "bad authentication claims");
    }
    params[0] = ids.data;
    params[1] = vers.data;
    r = PQexecPrepared(c, "sl_audit_stale", 2, params, NULL, NULL, 0);
    sl_buf_free(&ids);
    sl_buf_free(&vers);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return pgfail(err, c, r, "authentication check");
    for (i = 0; i < PQntuples(r); i++) {
        long long o = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        if (o >= 1 && (size_t)o <= claims->n)
            stale[o - 1] = 1;
    }
    PQclear(r);
    return SL_OK;
}

/* 1 when some claim no longer holds, 0 when all do, -1 on failure (err set). */
static int
claims_stale(PGconn *c, const db_auth_claims *claims, sl_err *err)
{
    unsigned char *bad = sl_xcalloc(claims->n ? claims->n : 1, 1);
    int any = 0;
    size_t i;

    if (db_auth_stale(c, claims, bad, err) != SL_OK) {
        free(bad);
        return -1;
    }
    for (i = 0; i < claims->n; i++)
        any |= bad[i];
    free(bad);
    return any;
}

static sl_code
append_insert(PGconn *c, const db_audit_row *rows, size_t n, const db_checkpoint *cp,
              int64_t expect_seq, const unsigned char *expect_hash, const db_auth_claims *claims,
              int *stale, sl_err *err)
{
    sl_buf cl_ids, cl_vers;
    static const char hexd[] = "0123456789abcdef";
    enum { PRINCIPAL, ACTION, RESOURCE, DECISION, STATUS, CANON, HASH, NCOL };
    sl_buf col[NCOL];
    char first_seq[24], cp_seq[24], exp_seq[24], exp_hash[3 + 64 + 1];
    const char *ev_params[NCOL + 6], *cp_params[5];
    int ev_len[NCOL + 6] = {0}, ev_fmt[NCOL + 6] = {0};
    int nclaims = claims != NULL ? (int)claims->n : 0, inserted;
    stmt st[5];
    PGresult *res[5];
    int nst = 0, rows_at;
    size_t i, k;
    int j;
    sl_code rc = SL_OK;

    static const uint32_t oids[NCOL] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
                                        OID_INT4, OID_TEXT, OID_BYTEA};

    for (j = 0; j < NCOL; j++) {
        sl_buf_init(&col[j], (size_t)1 << 30);
        if (rc == SL_OK)
            rc = array_head(&col[j], oids[j], n);
    }
    for (i = 0; i < n && rc == SL_OK; i++) {
        const db_audit_row *e = &rows[i];
        unsigned char status[4] = {
            (unsigned char)((uint32_t)e->status >> 24), (unsigned char)((uint32_t)e->status >> 16),
            (unsigned char)((uint32_t)e->status >> 8), (unsigned char)e->status};
        rc = array_elem(&col[PRINCIPAL], e->principal, e->principal ? strlen(e->principal) : 0);
        if (rc == SL_OK)
            rc = array_elem(&col[ACTION], e->action, strlen(e->action));
        if (rc == SL_OK)
            rc = array_elem(&col[RESOURCE], e->resource, strlen(e->resource));
        if (rc == SL_OK)
            rc = array_elem(&col[DECISION], e->decision, strlen(e->decision));
        if (rc == SL_OK)
            rc = array_elem(&col[STATUS], status, 4);
        if (rc == SL_OK)
            rc = array_elem(&col[CANON], e->canon, e->canon_len);
        if (rc == SL_OK)
            rc = array_elem(&col[HASH], e->hash, 32);
    }
    if (rc != SL_OK) {
        for (j = 0; j < NCOL; j++)
            sl_buf_free(&col[j]);
        db_rollback(c);
        return sl_err_set(err, SL_EINTERNAL, "audit batch too large");
    }
    snprintf(first_seq, sizeof first_seq, "%lld", (long long)(n > 0 ? rows[0].seq : 0));
    snprintf(cp_seq, sizeof cp_seq, "%lld", (long long)cp->seq);
    ev_params[0] = first_seq;
    ev_params[1] = n > 0 ? rows[0].ts : "";
    for (j = 0; j < NCOL; j++) {
        ev_params[j + 2] = col[j].data;
        ev_len[j + 2] = (int)col[j].len;
        ev_fmt[j + 2] = 1;
    }
    snprintf(exp_seq, sizeof exp_seq, "%lld", (long long)expect_seq);
    exp_hash[0] = '\\';
    exp_hash[1] = 'x';
    for (k = 0; k < 32; k++) {
        exp_hash[2 + 2 * k] = expect_hash ? hexd[expect_hash[k] >> 4] : '0';
        exp_hash[3 + 2 * k] = expect_hash ? hexd[expect_hash[k] & 15] : '0';
    }
    exp_hash[2 + 64] = '\0';
    ev_params[NCOL + 2] = exp_seq;
    ev_params[NCOL + 3] = exp_hash;
    *stale = 0;
    cp_params[0] = cp_seq;
    cp_params[1] = cp->hash;
    cp_params[2] = cp->ts;
    cp_params[3] = cp->key_id;
    cp_params[4] = cp->signature;
    /* every row of a batch shares the batch's time; seqs follow the array order */
    if (expect_seq > 0) {
        st[nst++] = (stmt){"BEGIN", 0, NULL, 0, NULL, NULL};
        st[nst++] = (stmt){"sl_audit_lock", 0, NULL, 1, NULL, NULL};
    }
    sl_buf_init(&cl_ids, (size_t)1 << 20);
    sl_buf_init(&cl_vers, (size_t)1 << 20);
    if (claims_text(claims, &cl_ids, &cl_vers) != SL_OK) {
        rc = sl_err_set(err, SL_EINTERNAL, "bad authentication claims");
        goto out;
    }
    ev_params[NCOL + 4] = cl_ids.data;
    ev_params[NCOL + 5] = cl_vers.data;
    rows_at = nst;
    st[nst++] = (stmt){"sl_audit_rows", NCOL + 6, ev_params, 1, ev_len, ev_fmt};
    st[nst++] = (stmt){"sl_audit_checkpoint", 5, cp_params, 1, NULL, NULL};
    st[nst++] = (stmt){"COMMIT", 0, NULL, 0, NULL, NULL};
    rc = pipeline(c, st, nst, res, err);
    inserted = rc == SL_OK ? atoi(PQcmdTuples(res[rows_at])) : -1;
    clear_all(res, nst);
    if (inserted == 0 && nclaims > 0) {
        /* Nothing written (the head moved, or a claim failed): which? A claim that failed
         * still fails now (revocation, expiry and versions only move forward). */
        int bad = claims_stale(c, claims, err);
        if (bad < 0)
            rc = SL_EUNAVAIL;
        else if (bad > 0)
            rc = sl_err_set(err, SL_EAUTH, "a cached authentication no longer holds");
    }
    if (rc == SL_OK && inserted != (int)n) {
        if (expect_seq > 0 && inserted == 0)
            *stale = 1; /* the head moved: nothing was written */
        else
            rc = pgfail(err, c, NULL, "audit batch: row count differs");
    }
out:
    for (j = 0; j < NCOL; j++)
        sl_buf_free(&col[j]);
    sl_buf_free(&cl_ids);
    sl_buf_free(&cl_vers);
    if (rc != SL_OK)
        db_rollback(c);
    return rc;
}

/* PostgreSQL's binary COPY format: big-endian integers; timestamps count from 2000. */
#define PG_EPOCH_US 946684800000000LL

static sl_code
put16(sl_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    return sl_buf_append(b, x, 2);
}

static sl_code
put64(sl_buf *b, uint64_t v)
{
    sl_code rc = put32(b, (uint32_t)(v >> 32));

    return rc == SL_OK ? put32(b, (uint32_t)v) : rc;
}

static sl_code
copy_field(sl_buf *b, const void *p, size_t n)
{
    return array_elem(b, p, n); /* the same framing: length, then bytes; -1 for NULL */
}

static sl_code
copy_rows(const db_audit_row *rows, size_t n, sl_buf *b)
{
    static const char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\377', '\r', '\n', '\0'};
    sl_code rc = sl_buf_append(b, sig, sizeof sig);
    size_t i;

    if (rc == SL_OK)
        rc = put32(b, 0); /* flags */
    if (rc == SL_OK)
        rc = put32(b, 0); /* header extension */
    for (i = 0; i < n && rc == SL_OK; i++) {
        const db_audit_row *e = &rows[i];
        rc = put16(b, 9);
        if (rc == SL_OK)
            rc = put32(b, 8);
        if (rc == SL_OK)
            rc = put64(b, (uint64_t)e->seq);
        if (rc == SL_OK)
            rc = put32(b, 8);
        if (rc == SL_OK)
            rc = put64(b, (uint64_t)(e->ts_us - PG_EPOCH_US));
        if (rc == SL_OK)
            rc = copy_field(b, e->principal, e->principal ? strlen(e->principal) : 0);
        if (rc == SL_OK)
            rc = copy_field(b, e->action, strlen(e->action));
        if (rc == SL_OK)
            rc = copy_field(b, e->resource, strlen(e->resource));
        if (rc == SL_OK)
            rc = copy_field(b, e->decision, strlen(e->decision));
        if (rc == SL_OK)
            rc = put32(b, 4);
        if (rc == SL_OK)
            rc = put32(b, (uint32_t)e->status);
        if (rc == SL_OK)
            rc = copy_field(b, e->canon, e->canon_len);
        if (rc == SL_OK)
            rc = copy_field(b, e->hash, 32);
    }
    if (rc == SL_OK)
        rc = put16(b, 0xffff); /* end of data */
    return rc;
}

/* Sends the rows by COPY in the open transaction; SL_OK when all n were taken. */
static sl_code
copy_in(PGconn *c, const db_audit_row *rows, size_t n, sl_err *err)
{
    PGresult *r;
    sl_buf b;
    sl_code rc;
    size_t off;

    sl_buf_init(&b, (size_t)1 << 30);
    if (copy_rows(rows, n, &b) != SL_OK) {
        sl_buf_free(&b);
        return sl_err_set(err, SL_EINTERNAL, "audit batch too large");
    }
    r = PQexec(c, "COPY audit_events (seq, ts, principal, action, resource, decision, status,"
                  " canon, hash) FROM STDIN (FORMAT binary)");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        sl_buf_free(&b);
        return pgfail(err, c, r, "audit COPY");
    }
    PQclear(r);
    rc = SL_OK;
    for (off = 0; off < b.len && rc == SL_OK; off += (size_t)1 << 20) {
        size_t len = b.len - off < ((size_t)1 << 20) ? b.len - off : (size_t)1 << 20;
        if (PQputCopyData(c, b.data + off, (int)len) != 1)
            rc = pgfail(err, c, NULL, "audit COPY data");
    }
    sl_buf_free(&b);
    if (PQputCopyEnd(c, rc == SL_OK ? NULL : "sluice: batch abandoned") != 1 && rc == SL_OK)
        rc = pgfail(err, c, NULL, "audit COPY end");
    while ((r = PQgetResult(c)) != NULL) {
        if (rc == SL_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = pgfail(err, c, r, "audit COPY");
            continue;
        }
        if (rc == SL_OK && strtoull(PQcmdTuples(r), NULL, 10) != n)
            rc = pgfail(err, c, NULL, "audit COPY: row count differs");
        PQclear(r);
    }
    return rc;
}

/*
 * A large batch: open (the lock, the claims and the head, in one round trip), COPY, then
 * the checkpoint and COMMIT in one more. The head is checked before anything is written.
 */
static sl_code
append_copy(PGconn *c, const db_audit_row *rows, size_t n, const db_checkpoint *cp,
            int64_t expect_seq, const unsigned char *expect_hash, const db_auth_claims *claims,
            int *stale, sl_err *err)
{
    sl_buf cl_ids, cl_vers;
    const char *cl_params[2], *cp_params[5];
    char cp_seq[24];
    stmt st[4];
    PGresult *res[4];
    int nst = 0, auth_at = -1, tip_at = -1;
    sl_code rc = SL_OK;

    *stale = 0;
    sl_buf_init(&cl_ids, (size_t)1 << 20);
    sl_buf_init(&cl_vers, (size_t)1 << 20);
    if (expect_seq > 0) {
        st[nst++] = (stmt){"BEGIN", 0, NULL, 0, NULL, NULL};
        st[nst++] = (stmt){"sl_audit_lock", 0, NULL, 1, NULL, NULL};
    }
    if (claims != NULL && claims->n > 0) {
        if (claims_text(claims, &cl_ids, &cl_vers) != SL_OK) {
            rc = sl_err_set(err, SL_EINTERNAL, "bad authentication claims");
            goto out;
        }
        cl_params[0] = cl_ids.data;
        cl_params[1] = cl_vers.data;
        auth_at = nst;
        st[nst++] = (stmt){"sl_audit_stale", 2, cl_params, 1, NULL, NULL};
    }
    if (expect_seq > 0) {
        tip_at = nst;
        st[nst++] = (stmt){"sl_audit_tip", 0, NULL, 1, NULL, NULL};
    }
    if (nst > 0) {
        rc = pipeline(c, st, nst, res, err);
        if (rc == SL_OK && auth_at >= 0 && PQntuples(res[auth_at]) > 0)
            rc = sl_err_set(err, SL_EAUTH, "a cached authentication no longer holds");
        if (rc == SL_OK && tip_at >= 0) {
            unsigned char tip[32];
            PGresult *t = res[tip_at];
            int same = PQntuples(t) == 1 && strtoll(PQgetvalue(t, 0, 0), NULL, 10) == expect_seq &&
                       PQgetlength(t, 0, 1) == 66 && strncmp(PQgetvalue(t, 0, 1), "\\x", 2) == 0;
            if (same) {
                db_unhex32(PQgetvalue(t, 0, 1) + 2, tip);
                same = memcmp(tip, expect_hash, 32) == 0;
            }
            if (!same)
                *stale = 1; /* the head moved: write nothing */
        }
        clear_all(res, nst);
        if (rc != SL_OK || *stale)
            goto out;
    }
    if ((rc = copy_in(c, rows, n, err)) != SL_OK)
        goto out;
    snprintf(cp_seq, sizeof cp_seq, "%lld", (long long)cp->seq);
    cp_params[0] = cp_seq;
    cp_params[1] = cp->hash;
    cp_params[2] = cp->ts;
    cp_params[3] = cp->key_id;
    cp_params[4] = cp->signature;
    st[0] = (stmt){"sl_audit_checkpoint_copy", 5, cp_params, 1, NULL, NULL};
    st[1] = (stmt){"COMMIT", 0, NULL, 0, NULL, NULL};
    rc = pipeline(c, st, 2, res, err);
    clear_all(res, 2);
out:
    sl_buf_free(&cl_ids);
    sl_buf_free(&cl_vers);
    if (rc != SL_OK || *stale)
        db_rollback(c);
    return rc;
}

sl_code
db_audit_append(PGconn *c, const db_audit_row *rows, size_t n, const db_checkpoint *cp,
                int64_t expect_seq, const unsigned char *expect_hash, const db_auth_claims *claims,
                int *stale, sl_err *err)
{
    if (n >= DB_AUDIT_COPY_MIN)
        return append_copy(c, rows, n, cp, expect_seq, expect_hash, claims, stale, err);
    return append_insert(c, rows, n, cp, expect_seq, expect_hash, claims, stale, err);
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
    const char *params[7] = {f->since,  f->until,    f->principal, f->dataset,
                             f->action, f->decision, limit};
    const char *sql;
    db_audit_stream *s;

    *out = NULL;
    snprintf(limit, sizeof limit, "%lld", (long long)(f->limit > 0 ? f->limit : INT64_MAX));
    if (f->with_orphan_checkpoints) {
        sql = "SELECT e.seq, e.canon, encode(e.hash, 'hex'), " TS_US_SQL(
            "e.ts") ", e.principal, e.action, e.resource, e.decision, e.status,"
                    " c.seq, c.hash, c.ts, c.key_id, c.signature"
                    " FROM audit_events e FULL JOIN audit_checkpoints c ON c.seq = e.seq"
                    " WHERE $1::text IS NULL AND $2::text IS NULL AND $3::text IS NULL"
                    " AND $4::text IS NULL AND $5::text IS NULL AND $6::text IS NULL"
                    " ORDER BY coalesce(e.seq, c.seq) LIMIT $7::bigint";
    } else {
        sql = "SELECT e.seq, e.canon, encode(e.hash, 'hex'), " TS_US_SQL(
            "e.ts") ", e.principal, e.action, e.resource, e.decision, e.status,"
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
    /* a whole trail takes longer to read than any request: lift the bound for it */
    if (db_exec(c, "SET statement_timeout = 0", err) != SL_OK)
        return SL_EUNAVAIL;
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
    if (db_exec(s->c, "SET statement_timeout = " DB_STATEMENT_TIMEOUT, NULL) != SL_OK)
        sl_warn("could not restore the statement timeout of a database session");
    free(s);
}

sl_code
db_checkpoints_json(PGconn *c, int64_t since_seq, int limit, json_t **items, int *more, sl_err *err)
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
                                        (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), "hash",
                                        PQgetvalue(r, i, 1), "ts", PQgetvalue(r, i, 2), "key_id",
                                        PQgetvalue(r, i, 3), "signature", PQgetvalue(r, i, 4)));
    PQclear(r);
    return SL_OK;
}

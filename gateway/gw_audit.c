/*
 * gateway/gw_audit.c: the audit writer. Handlers hand it events; one thread
 * group-commits them: under an advisory lock it reads the chain's head, gives each event
 * its seq, time and prev_hash, hashes its RFC 8785 text, COPYs the batch, signs a
 * checkpoint of the batch's last event, and commits, all in one transaction. A request
 * waits for its event; if the trail cannot take it within the bound the request is
 * answered 503 and its event, rewritten to say so, stays queued until the trail is back.
 */
#include <sys/resource.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

enum { QUEUED, WRITING, COMMITTED };

/* The writer's nice value when the gateway starts as root (ahead of connection threads). */
#define GW_AUDIT_NICE (-5)
/* Past the bound, an answer whose event is being written waits this much longer. */
#define GW_AUDIT_GRACE_S 1
/* Group commit: with concurrent requests, wait up to this long for this many events. */
#define GW_AUDIT_GATHER    48
#define GW_AUDIT_GATHER_US 200

typedef struct item {
    /* The event's columns (the strings live in cols_buf) and its RFC 8785 text with
     * placeholders. The JSON it came from is freed by the thread that made it: the
     * writer's threads see only these, so they free a few blocks per event, not the
     * dozens a JSON object is made of (allocations freed far from where they were made
     * are slow). */
    char *cols_buf;
    const char *principal, *action, *resource, *decision;
    int status;
    int state;
    gw_audit_wait *w; /* the request waiting for it, until told the outcome */
    int abandoned;    /* its request was answered 503 while it was being written */
    sl_code outcome;  /* for the notifier: SL_OK written, SL_EAUTH its claim failed */
    int claim;        /* an authentication from the cache, checked at commit */
    char claim_token[CRY_TOKEN_ID_HEX + 1];
    int64_t claim_version;
    int64_t deadline_ns;
    struct item *wprev, *wnext; /* the waiting list, in submission (= deadline) order */
    /* The event's RFC 8785 text with placeholders for seq, ts and prev_hash, made by the
     * submitting thread; the writer only splices the three values in. */
    char *pre;
    size_t pre_len, off_prev, off_seq, off_ts;
    int64_t seq;
    struct item *next;
} item;

/* A committed batch's waiting requests, for the notifier to wake. */
typedef struct wake {
    item **items;
    size_t n;
    struct wake *next;
} wake;

struct gw_audit {
    pthread_t thread;
    pthread_t notifier;
    pthread_cond_t wake_cv; /* the notifier waits for commits and deadlines */
    wake *wake_head, *wake_tail;
    item *wait_head, *wait_tail; /* items whose request waits, oldest first */
    int notifier_stop;
    int firing; /* threads running requests' callbacks outside the lock */
    int bound_ms;
    pthread_mutex_t lock;
    pthread_cond_t work; /* writer waits for events */
    pthread_cond_t done; /* gw_audit_stop waits for batches */
    item *head, *tail;
    long depth;
    long overflow;          /* events that found the queue full; written as one event later */
    int inflight;           /* a batch is being written */
    int64_t batch_start_ns; /* when the batch in flight began */
    int64_t last_seq;       /* the last head this writer signed (0: read it from the database) */
    unsigned char last_hash[CRY_HASH_BYTES];
    /* the last batch sent to be appended: its last seq and hash (0: none yet) */
    int64_t sent_seq;
    unsigned char sent_hash[CRY_HASH_BYTES];
    /* a batch whose commit went unanswered (the connection broke): it may be in the trail
     * or not; its items stay WRITING until the trail says which */
    item **doubt;
    size_t ndoubt;
    int64_t doubt_seq;
    unsigned char doubt_hash[CRY_HASH_BYTES];
    int doubt_pid; /* the broken session's backend */
    int stopping;
    int healthy;
    char *conninfo;
    const gw_keys *keys;
    PGconn *conn;
};

const double gw_lat_bounds[GW_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10};

void
gw_metrics_observe(atomic_long *buckets, atomic_long *sum_us, int64_t us)
{
    int i;

    for (i = 0; i < GW_LAT_BUCKETS; i++)
        if ((double)us / 1e6 <= gw_lat_bounds[i])
            break;
    atomic_fetch_add(&buckets[i], 1);
    atomic_fetch_add(sum_us, us);
}

static void
push_back(gw_audit *a, item *it)
{
    it->next = NULL;
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    a->depth++;
}

#define PH_PREV  "\"prev_hash\":\"0000000000000000000000000000000000000000000000000000000000000000\""
#define PH_SEQ   ",\"seq\":0,"
#define PH_TS    "\"ts\":\"0000-00-00T00:00:00.000000Z\""
#define TS_WIDTH 27

/* The last occurrence of needle: top-level keys come last in their sorted place, after
 * any nested key of the same name inside "detail", and no string holds a bare quote. */
static const char *
last_of(const char *hay, const char *needle)
{
    const char *p = hay, *found = NULL;

    while ((p = strstr(p, needle)) != NULL)
        found = p++;
    return found;
}

/* Canonical text with placeholders; 0 when the event cannot be canonicalised. The event
 * keeps the placeholders (only the text says what was written). */
static int
prepare_text(item *it, json_t *e)
{
    const char *p, *q, *t;
    sl_buf b;
    int ok = 0;

    sl_buf_init(&b, (size_t)1 << 20);
    json_object_set_new(e, "seq", json_integer(0));
    json_object_set_new(e, "ts", json_string("0000-00-00T00:00:00.000000Z"));
    json_object_set_new(
        e, "prev_hash",
        json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    if (cry_jcs(e, &b) == SL_OK && (p = last_of(b.data, PH_PREV)) != NULL &&
        (q = last_of(b.data, PH_SEQ)) != NULL && (t = last_of(b.data, PH_TS)) != NULL && p < q &&
        q < t) {
        free(it->pre);
        it->off_prev = (size_t)(p - b.data) + strlen("\"prev_hash\":\"");
        it->off_seq = (size_t)(q - b.data) + strlen(",\"seq\":");
        it->off_ts = (size_t)(t - b.data) + strlen("\"ts\":\"");
        it->pre = sl_buf_take(&b, &it->pre_len);
        ok = 1;
    }
    sl_buf_free(&b);
    return ok;
}

/* Copies the columns the trail's table repeats out of the event. */
static void
take_columns(item *it, const json_t *e)
{
    const char *v[4];
    static const char *const keys[4] = {"principal", "action", "resource", "decision"};
    size_t len[4], total = 0, i;
    char *o;

    for (i = 0; i < 4; i++) {
        v[i] = json_string_value(json_object_get(e, keys[i]));
        len[i] = v[i] ? strlen(v[i]) : 0;
        total += len[i] + 1;
    }
    free(it->cols_buf);
    it->cols_buf = o = sl_xmalloc(total);
    for (i = 0; i < 4; i++) {
        const char *at = NULL;
        if (v[i] != NULL) {
            memcpy(o, v[i], len[i] + 1);
            at = o;
            o += len[i] + 1;
        }
        if (i == 0)
            it->principal = at;
        else if (i == 1)
            it->action = at ? at : "?";
        else if (i == 2)
            it->resource = at ? at : "?";
        else
            it->decision = at ? at : "?";
    }
    it->status = (int)json_integer_value(json_object_get(e, "status"));
}

/*
 * Makes an item's text and columns from the event (ownership taken; freed here, by the
 * calling thread). An event that cannot be written as it is becomes a minimal one (a bug
 * in its builder must not lose the request, nor abort the gateway).
 */
static void
prepare(item *it, json_t *ev)
{
    if (!prepare_text(it, ev)) {
        sl_error("audit: an event could not be canonicalised; recording a minimal one");
        json_decref(ev);
        ev = json_pack("{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:n, s:s, s:{}}", "request_id",
                       "unencodable", "principal", "action", "audit.unencodable", "resource", "?",
                       "decision", "error", "reason", "an event could not be encoded", "purpose",
                       "status", 0, "bytes", "client", "?", "detail");
        if (ev == NULL || !prepare_text(it, ev))
            sl_panic("audit: the minimal event cannot be canonicalised");
    }
    take_columns(it, ev);
    json_decref(ev);
}

/* The event back as JSON, from its text (the rare paths that change or quote it). */
static json_t *
item_event(const item *it)
{
    json_t *e = json_loadb(it->pre, it->pre_len, 0, NULL);

    if (e == NULL)
        sl_panic("audit: an event's own canonical text does not parse");
    return e;
}

static item *
item_new(json_t *ev)
{
    item *it = sl_xcalloc(1, sizeof *it);

    prepare(it, ev);
    return it;
}

static void
item_free(item *it)
{
    free(it->cols_buf);
    free(it->pre);
    free(it);
}

static int
ensure_conn(gw_audit *a)
{
    sl_err err;

    if (a->conn != NULL && PQstatus(a->conn) == CONNECTION_OK)
        return 1;
    PQfinish(a->conn);
    a->conn = NULL;
    if (db_connect(a->conninfo, 1, &a->conn, &err) != SL_OK) {
        sl_debug("audit writer: %s (%s)", err.msg, err.detail);
        return 0;
    }
    /* bound every statement so a stuck database turns into an error, not a hang */
    if (db_exec(a->conn, "SET application_name = 'sluice audit writer'", &err) != SL_OK ||
        db_exec(a->conn, "SET idle_in_transaction_session_timeout = '10s'", &err) != SL_OK ||
        db_audit_prepare(a->conn, &err) != SL_OK) {
        PQfinish(a->conn);
        a->conn = NULL;
        return 0;
    }
    return 1;
}

static int
probe(gw_audit *a)
{
    sl_err err;

    if (!ensure_conn(a))
        return 0;
    if (db_exec(a->conn, "SELECT 1", &err) != SL_OK) {
        PQfinish(a->conn);
        a->conn = NULL;
        return 0;
    }
    return 1;
}

/*
 * In an honest trail the newest event is always covered by a checkpoint, since each
 * batch commits with its own. When it is not (rows inserted after the last signed head,
 * or the signed tail deleted), the trail was changed by someone with the database: the
 * new events then chain from the last head we signed and take seqs after both, so the
 * change stays visible to verification instead of being signed over.
 */
static sl_code
signed_head(gw_audit *a, const db_checkpoint *cp, int found, int64_t *seq,
            unsigned char prev[CRY_HASH_BYTES], sl_err *err)
{
    char head_hex[CRY_HASH_HEX + 1];
    int i, good = 0;

    cry_hex(prev, CRY_HASH_BYTES, head_hex);
    if (!found && *seq == 0)
        return SL_OK; /* a new trail */
    if (found && cp->seq == *seq && strcmp(cp->hash, head_hex) == 0 && cp->seq == a->last_seq)
        return SL_OK; /* what we wrote last: no need to check the signature again */
    if (found) {
        unsigned char pks[GW_MAX_KEYS][CRY_SIGN_PK_BYTES];
        json_t *j =
            json_pack("{s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)cp->seq, "hash", cp->hash,
                      "ts", cp->ts, "key_id", cp->key_id, "signature", cp->signature);
        for (i = 0; i < a->keys->npub; i++)
            memcpy(pks[i], a->keys->pub[i].pk, CRY_SIGN_PK_BYTES);
        good = cry_checkpoint_check(j, (const unsigned char(*)[CRY_SIGN_PK_BYTES])pks,
                                    (size_t)a->keys->npub);
        json_decref(j);
    }
    if (found && good && cp->seq == *seq && strcmp(cp->hash, head_hex) == 0) {
        if (cp->seq < a->last_seq)
            sl_error("audit trail: its signed head went back from seq %lld to %lld: events "
                     "and checkpoints were deleted in the database; compare with an exported "
                     "checkpoint",
                     (long long)a->last_seq, (long long)cp->seq);
        a->last_seq = cp->seq;
        return SL_OK;
    }
    sl_error("audit trail: the newest event (seq %lld) is not the last signed head (seq %lld): "
             "the trail was changed in the database; new events chain from the signed head "
             "and GET /v1/audit/verify will show where",
             (long long)*seq, (long long)(found ? cp->seq : 0));
    if (found && good) {
        if (cry_unhex(cp->hash, strlen(cp->hash), prev, CRY_HASH_BYTES) != SL_OK)
            return sl_err_set(err, SL_EINTERNAL, "bad checkpoint hash");
        if (cp->seq > *seq)
            *seq = cp->seq;
    }
    return SL_OK;
}

/*
 * Gives each event of the batch its seq, time and prev_hash after (seq, prev), hashes its
 * canonical text into rows[], and signs the batch's checkpoint into cp. canon[] holds the
 * texts rows[] point into.
 */
static void
stamp(gw_audit *a, item **batch, size_t n, int64_t seq, const unsigned char head[CRY_HASH_BYTES],
      db_audit_row *rows, char **canon, db_checkpoint *cp, unsigned char last[CRY_HASH_BYTES])
{
    unsigned char prev[CRY_HASH_BYTES], hash[CRY_HASH_BYTES];
    char prev_hex[CRY_HASH_HEX + 1], ts[SL_TS_LEN];
    json_t *signed_cp;
    int64_t now_us;
    size_t i;

    memcpy(prev, head, CRY_HASH_BYTES);
    now_us = sl_now_us();
    sl_time_format_us(now_us, ts);
    if (strlen(ts) != TS_WIDTH)
        sl_panic("audit: the clock is outside years 0000-9999");
    for (i = 0; i < n; i++) {
        const item *it = batch[i];
        char seqs[24], *o;
        size_t nseq, len;
        cry_hex(prev, CRY_HASH_BYTES, prev_hex);
        nseq = (size_t)snprintf(seqs, sizeof seqs, "%lld", (long long)++seq);
        /* the canonical text with seq, ts and prev_hash in their sorted places */
        len = it->pre_len + nseq - 1;
        free(canon[i]);
        canon[i] = o = sl_xmalloc(len + 1);
        memcpy(o, it->pre, it->off_prev);
        o += it->off_prev;
        memcpy(o, prev_hex, CRY_HASH_HEX);
        o += CRY_HASH_HEX;
        memcpy(o, it->pre + it->off_prev + CRY_HASH_HEX, it->off_seq - it->off_prev - CRY_HASH_HEX);
        o += it->off_seq - it->off_prev - CRY_HASH_HEX;
        memcpy(o, seqs, nseq);
        o += nseq;
        memcpy(o, it->pre + it->off_seq + 1, it->off_ts - it->off_seq - 1);
        o += it->off_ts - it->off_seq - 1;
        memcpy(o, ts, TS_WIDTH);
        o += TS_WIDTH;
        memcpy(o, it->pre + it->off_ts + TS_WIDTH, it->pre_len - it->off_ts - TS_WIDTH);
        o += it->pre_len - it->off_ts - TS_WIDTH;
        *o = '\0';
        cry_chain_hash(prev, canon[i], len, hash);
        rows[i].seq = seq;
        rows[i].principal = it->principal;
        rows[i].action = it->action;
        rows[i].resource = it->resource;
        rows[i].decision = it->decision;
        rows[i].status = it->status;
        rows[i].canon = canon[i];
        rows[i].canon_len = len;
        memcpy(rows[i].hash, hash, CRY_HASH_BYTES);
        memcpy(prev, hash, CRY_HASH_BYTES);
        batch[i]->seq = seq;
    }
    memset(cp, 0, sizeof *cp);
    cp->seq = seq;
    cry_hex(prev, CRY_HASH_BYTES, cp->hash);
    snprintf(cp->ts, sizeof cp->ts, "%s", ts);
    for (i = 0; i < n; i++) {
        rows[i].ts = cp->ts;
        rows[i].ts_us = now_us;
    }
    snprintf(cp->key_id, sizeof cp->key_id, "%s", a->keys->signing_id);
    signed_cp = cry_checkpoint_new(a->keys->signing, a->keys->signing_id, seq, cp->hash, ts);
    snprintf(cp->signature, sizeof cp->signature, "%s",
             json_string_value(json_object_get(signed_cp, "signature")));
    json_decref(signed_cp);
    memcpy(last, prev, CRY_HASH_BYTES);
}

/*
 * Writes one batch in one transaction. Usually one round trip: the batch chains from the
 * head this writer committed last, and the append commits only if that is still the
 * database's head. Otherwise (first batch, another gateway wrote, or the trail was
 * changed) two: read the head under the lock, then append. On failure nothing of the
 * batch is committed.
 */
static sl_code
write_batch(gw_audit *a, item **batch, size_t n, const db_auth_claims *claims, sl_err *err)
{
    unsigned char head[CRY_HASH_BYTES], last[CRY_HASH_BYTES];
    db_audit_row *rows = sl_xcalloc(n, sizeof *rows);
    char **canon = sl_xcalloc(n, sizeof *canon);
    db_checkpoint cp, prev_cp;
    int64_t seq = 0;
    int found = 0, stale = 1;
    size_t i;
    sl_code rc = SL_OK;

    if (a->last_seq > 0) {
        stamp(a, batch, n, a->last_seq, a->last_hash, rows, canon, &cp, last);
        a->sent_seq = cp.seq;
        memcpy(a->sent_hash, last, CRY_HASH_BYTES);
        rc = db_audit_append(a->conn, rows, n, &cp, a->last_seq, a->last_hash, claims, &stale, err);
        if (rc != SL_OK)
            goto out;
        if (stale)
            a->sent_seq = 0; /* the head had moved: nothing of it was written */
    }
    if (stale) {
        if ((rc = db_audit_begin(a->conn, &seq, head, &prev_cp, &found, err)) != SL_OK)
            goto out;
        if ((rc = signed_head(a, &prev_cp, found, &seq, head, err)) != SL_OK) {
            db_rollback(a->conn);
            goto out;
        }
        stamp(a, batch, n, seq, head, rows, canon, &cp, last);
        a->sent_seq = cp.seq;
        memcpy(a->sent_hash, last, CRY_HASH_BYTES);
        rc = db_audit_append(a->conn, rows, n, &cp, 0, NULL, claims, &stale, err);
        if (rc == SL_OK && stale)
            rc = sl_err_set(err, SL_EINTERNAL, "audit batch not appended");
    }
    if (rc == SL_OK) {
        a->last_seq = cp.seq;
        memcpy(a->last_hash, last, CRY_HASH_BYTES);
    }
out:
    if (rc != SL_OK && rc != SL_EAUTH)
        a->last_seq = 0; /* re-read the head next time (a failed claim wrote nothing) */
    for (i = 0; i < n; i++)
        free(canon[i]);
    free(canon);
    free(rows);
    return rc;
}

static void rewrite_unavailable(item *it);

/*
 * An event committed after its request gave up and answered 503 (the lock is held): the
 * trail must say what the client got, so a correction follows it. Frees the item.
 */
static void
late_commit(gw_audit *a, item *it)
{
    json_t *ev = item_event(it);
    json_t *fix =
        json_pack("{s:O?, s:O?, s:s, s:O?, s:s, s:s, s:O?, s:i, s:i, s:O?, s:{s:I}}", "request_id",
                  json_object_get(ev, "request_id"), "principal", json_object_get(ev, "principal"),
                  "action", "audit.correction", "resource", json_object_get(ev, "resource"),
                  "decision", "error", "reason",
                  "the request's event was committed after its answer had become 503 "
                  "(no data served)",
                  "purpose", json_object_get(ev, "purpose"), "status", 503, "bytes", 0, "client",
                  json_object_get(ev, "client"), "detail", "corrects_seq", (json_int_t)it->seq);
    item *c;

    json_decref(ev);
    if (fix != NULL) {
        c = item_new(fix);
        push_back(a, c);
        pthread_cond_signal(&a->work);
    }
    item_free(it);
}

static json_t *
overflow_event(long n)
{
    return json_pack(
        "{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:n, s:s, s:{s:I}}", "request_id",
        "audit-overflow", "principal", "action", "audit.overflow", "resource", "audit", "decision",
        "error", "reason", "events lost: the audit queue was full while the trail was unavailable",
        "purpose", "status", 503, "bytes", "client", "", "detail", "lost_events", (json_int_t)n);
}

typedef struct {
    const char *id;
    int64_t ver;
    size_t at; /* the item's place in the batch */
} claim_ref;

static int
claim_cmp(const void *x, const void *y)
{
    const claim_ref *a = x, *b = y;
    int c = strcmp(a->id, b->id);

    if (c != 0)
        return c;
    return (a->ver > b->ver) - (a->ver < b->ver);
}

/*
 * The batch's distinct claims (a busy client's requests share one) into ids/vers;
 * slot[i] is the claim of batch[i] (unused when it has none). Returns their number.
 */
static size_t
distinct_claims(item **batch, size_t n, claim_ref *refs, const char **ids, int64_t *vers,
                size_t *slot)
{
    size_t i, nref = 0, nu = 0;

    for (i = 0; i < n; i++)
        if (batch[i]->claim)
            refs[nref++] = (claim_ref){batch[i]->claim_token, batch[i]->claim_version, i};
    qsort(refs, nref, sizeof *refs, claim_cmp);
    for (i = 0; i < nref; i++) {
        if (nu == 0 || claim_cmp(&refs[i], &refs[i - 1]) != 0) {
            ids[nu] = refs[i].id;
            vers[nu++] = refs[i].ver;
        }
        slot[refs[i].at] = nu - 1;
    }
    return nu;
}

/*
 * Writes a batch whose cached authentications are checked at commit. Items whose claim
 * no longer holds are moved to stale[] (*nstale) and the rest written without them; the
 * batch shrinks in place (*n). If the database says a claim failed but not which, every
 * claimed item is taken as stale: redoing a request costs less than trusting it.
 */
static sl_code
write_checked(gw_audit *a, item **batch, size_t *n, item **stale, size_t *nstale, sl_err *err)
{
    size_t cap = *n ? *n : 1;
    claim_ref *refs = sl_xcalloc(cap, sizeof *refs);
    const char **ids = sl_xcalloc(cap, sizeof *ids);
    int64_t *vers = sl_xcalloc(cap, sizeof *vers);
    size_t *slot = sl_xcalloc(cap, sizeof *slot);
    unsigned char *bad = sl_xcalloc(cap, 1);
    sl_code rc = SL_OK;
    int tries;

    *nstale = 0;
    for (tries = 0;; tries++) {
        db_auth_claims cl = {ids, vers, 0};
        size_t i, k, m;
        int any = 0;
        if (*n == 0) {
            rc = SL_OK; /* every item went stale: nothing left to write */
            break;
        }
        if (tries == 3) {
            /* claims keep failing under us: write nothing now, the batch goes back */
            rc = sl_err_set(err, SL_EUNAVAIL, "authentication checks keep failing");
            break;
        }
        cl.n = distinct_claims(batch, *n, refs, ids, vers, slot);
        rc = write_batch(a, batch, *n, &cl, err);
        if (rc != SL_EAUTH)
            break;
        a->sent_seq = 0; /* a claim failed: nothing of the batch was written */
        sl_err_clear(err);
        if ((rc = db_auth_stale(a->conn, &cl, bad, err)) != SL_OK)
            break;
        for (k = 0; k < cl.n; k++)
            any |= bad[k];
        for (i = m = 0; i < *n; i++) {
            if (batch[i]->claim && (!any || bad[slot[i]]))
                stale[(*nstale)++] = batch[i];
            else
                batch[m++] = batch[i];
        }
        *n = m;
    }
    free(refs);
    free(ids);
    free(vers);
    free(slot);
    free(bad);
    return rc;
}

/*
 * An event never written whose request was already answered 503 (the lock is held): it
 * now records that answer, with no claim to check, and goes back to the queue's front.
 */
static void
requeue_answered(gw_audit *a, item *it)
{
    rewrite_unavailable(it);
    it->abandoned = 0;
    it->claim = 0;
    it->state = QUEUED;
    it->next = a->head;
    a->head = it;
    if (a->tail == NULL)
        a->tail = it;
    a->depth++;
}

/*
 * A batch committed (the lock is held): its items go to the notifier, which tells their
 * requests while this thread writes the next batch (items stay WRITING until then, so no
 * request frees one the notifier still holds); items whose request gave up get a
 * correction; stale items (never written) are made anew or their 503 recorded.
 */
static void
batch_done(gw_audit *a, item **batch, size_t n, item **stale, size_t nstale)
{
    wake *w = sl_xcalloc(1, sizeof *w);
    size_t i;

    w->items = sl_xcalloc(n + nstale ? n + nstale : 1, sizeof *w->items);
    for (i = 0; i < n; i++) {
        if (batch[i]->abandoned)
            late_commit(a, batch[i]);
        else if (batch[i]->w != NULL)
            w->items[w->n++] = batch[i];
        else
            item_free(batch[i]);
    }
    for (i = 0; i < nstale; i++) {
        stale[i]->outcome = SL_EAUTH;
        if (stale[i]->w != NULL && !stale[i]->abandoned)
            w->items[w->n++] = stale[i];
        else
            requeue_answered(a, stale[i]);
    }
    if (a->wake_tail)
        a->wake_tail->next = w;
    else
        a->wake_head = w;
    a->wake_tail = w;
    pthread_cond_signal(&a->wake_cv);
}

/* A batch not written goes back in front of the queue, in order (the lock is held):
 * nothing is dropped. */
static void
batch_back(gw_audit *a, item **batch, size_t n)
{
    size_t i;

    for (i = n; i-- > 0;) {
        batch[i]->state = QUEUED;
        if (batch[i]->abandoned) {
            rewrite_unavailable(batch[i]);
            batch[i]->abandoned = 0;
        }
        batch[i]->next = a->head;
        a->head = batch[i];
        if (a->tail == NULL)
            a->tail = batch[i];
        a->depth++;
    }
    pthread_cond_signal(&a->wake_cv); /* some may be past their bound now */
}

/* After a failure: the connection dropped if broken, then a pause that doubles up to a
 * second. 0 when the drain time is over and the writer must stop. */
static int
back_off(gw_audit *a, int *backoff_ms)
{
    struct timespec ts = {*backoff_ms / 1000, (long)(*backoff_ms % 1000) * 1000000L};
    int go_on;

    if (a->conn != NULL && PQstatus(a->conn) != CONNECTION_OK) {
        PQfinish(a->conn);
        a->conn = NULL;
    }
    nanosleep(&ts, NULL);
    *backoff_ms = *backoff_ms * 2 > 1000 ? 1000 : *backoff_ms * 2;
    pthread_mutex_lock(&a->lock);
    go_on = a->stopping != 2; /* drain time is over */
    pthread_mutex_unlock(&a->lock);
    return go_on;
}

/*
 * Settles a batch whose commit went unanswered, before anything else is written: the
 * event at its last seq is looked up, and if it holds the hash the batch would have given
 * it, the batch is in the trail (its requests are told so; those that gave up meanwhile
 * get a correction); otherwise it goes back to the queue and is written again. Without
 * this, a commit whose reply was lost wrote its events twice. 0 while the database
 * cannot say (retried after a pause).
 */
static int
settle_doubt(gw_audit *a)
{
    unsigned char h[CRY_HASH_BYTES];
    int found = 0, in_trail;
    sl_err err;

    sl_err_clear(&err);
    if (!ensure_conn(a) ||
        db_audit_hash_at(a->conn, a->doubt_seq, a->doubt_pid, h, &found, &err) != SL_OK)
        return 0;
    a->doubt_pid = 0;
    in_trail = found && memcmp(h, a->doubt_hash, CRY_HASH_BYTES) == 0;
    pthread_mutex_lock(&a->lock);
    if (in_trail) {
        batch_done(a, a->doubt, a->ndoubt, NULL, 0);
        a->last_seq = a->doubt_seq;
        memcpy(a->last_hash, a->doubt_hash, CRY_HASH_BYTES);
        a->healthy = 1;
    } else {
        batch_back(a, a->doubt, a->ndoubt);
    }
    sl_info("audit trail: a batch of %zu events whose commit went unanswered is %s", a->ndoubt,
            in_trail ? "in the trail" : "not in the trail: written again");
    if (in_trail) {
        atomic_fetch_add(&gw_stats.audit_commits, 1);
        atomic_fetch_add(&gw_stats.audit_events, (long)a->ndoubt);
    }
    a->ndoubt = 0;
    pthread_cond_broadcast(&a->done);
    pthread_mutex_unlock(&a->lock);
    return 1;
}

static void *
writer_main(void *arg)
{
    gw_audit *a = arg;
    item **batch = sl_xcalloc(SL_AUDIT_BATCH_MAX, sizeof *batch);
    item **stale = sl_xcalloc(SL_AUDIT_BATCH_MAX, sizeof *stale);
    int backoff_ms = 50;
    size_t last_n = 0;

    a->doubt = sl_xcalloc(SL_AUDIT_BATCH_MAX, sizeof *a->doubt);
    for (;;) {
        size_t n = 0, nstale = 0;
        sl_err err;
        int64_t t0;
        sl_code rc;
        int doubtful;

        if (a->ndoubt > 0) {
            if (settle_doubt(a)) {
                backoff_ms = 50;
                continue;
            }
            if (!back_off(a, &backoff_ms))
                break;
            continue;
        }
        pthread_mutex_lock(&a->lock);
        while (a->head == NULL && a->overflow == 0 && !a->stopping) {
            struct timespec until;
            sl_deadline_ms(&until, 1000);
            if (pthread_cond_timedwait(&a->work, &a->lock, &until) != 0 && !a->healthy) {
                /* idle and unhealthy: see whether the database is back */
                pthread_mutex_unlock(&a->lock);
                int ok = probe(a);
                pthread_mutex_lock(&a->lock);
                a->healthy = ok;
            }
        }
        if (a->head == NULL && a->overflow == 0 && a->stopping) {
            pthread_mutex_unlock(&a->lock);
            break;
        }
        if (a->overflow > 0 && a->depth < SL_AUDIT_QUEUE_MAX) {
            item *it = item_new(overflow_event(a->overflow));
            a->overflow = 0;
            push_back(a, it);
        }
        /* Under concurrency (the last batch had company), gather a little longer: each
         * commit costs PostgreSQL a WAL flush whatever its size. A lone request does not
         * wait. */
        if (last_n > 1 && a->depth < GW_AUDIT_GATHER && !a->stopping) {
            struct timespec until;
            sl_deadline_ms(&until, 0);
            until.tv_nsec += GW_AUDIT_GATHER_US * 1000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (a->depth < GW_AUDIT_GATHER && !a->stopping &&
                   pthread_cond_timedwait(&a->work, &a->lock, &until) == 0)
                ;
        }
        while (a->head != NULL && n < SL_AUDIT_BATCH_MAX) {
            item *it = a->head;
            a->head = it->next;
            if (a->head == NULL)
                a->tail = NULL;
            a->depth--;
            it->state = WRITING;
            batch[n++] = it;
        }
        a->inflight = 1;
        a->batch_start_ns = sl_mono_ns();
        last_n = n;
        pthread_mutex_unlock(&a->lock);

        t0 = sl_mono_ns();
        sl_err_clear(&err);
        a->sent_seq = 0;
        rc = ensure_conn(a) ? write_checked(a, batch, &n, stale, &nstale, &err)
                            : sl_err_set(&err, SL_EUNAVAIL, "database unavailable");
        /* the connection broke with a batch sent: its commit may have happened */
        doubtful = rc != SL_OK && rc != SL_EAUTH && a->sent_seq > 0 && n > 0 &&
                   (a->conn == NULL || PQstatus(a->conn) != CONNECTION_OK);
        pthread_mutex_lock(&a->lock);
        a->inflight = 0;
        if (rc == SL_OK || nstale > 0)
            batch_done(a, batch, rc == SL_OK ? n : 0, stale, nstale);
        if (rc == SL_OK) {
            a->healthy = 1;
            backoff_ms = 50;
        } else if (doubtful) {
            memcpy(a->doubt, batch, n * sizeof *batch);
            a->ndoubt = n;
            a->doubt_seq = a->sent_seq;
            memcpy(a->doubt_hash, a->sent_hash, CRY_HASH_BYTES);
            a->doubt_pid = a->conn != NULL ? PQbackendPID(a->conn) : 0;
            a->healthy = 0;
        } else {
            batch_back(a, batch, n);
            a->healthy = 0;
        }
        pthread_cond_broadcast(&a->done);
        pthread_mutex_unlock(&a->lock);
        if (rc == SL_OK) {
            atomic_fetch_add(&gw_stats.audit_commits, 1);
            atomic_fetch_add(&gw_stats.audit_events, (long)n);
            gw_metrics_observe(gw_stats.audit_lat, &gw_stats.audit_lat_sum_us,
                               (sl_mono_ns() - t0) / 1000);
        } else {
            atomic_fetch_add(&gw_stats.audit_failures, 1);
            sl_warn("audit trail: could not commit %zu events%s: %s (%s)", n,
                    doubtful ? " (or their commit's answer was lost)" : "", err.msg, err.detail);
            if (!back_off(a, &backoff_ms))
                break;
        }
    }
    /* stopped with a batch unsettled: one last look; if the trail still cannot say, the
     * requests are answered 503 with the rest, and the operator is told that their events
     * may be in the trail all the same */
    if (a->ndoubt > 0 && !settle_doubt(a)) {
        size_t i;
        for (i = 0; i < a->ndoubt; i++) {
            json_t *e = item_event(a->doubt[i]);
            sl_error("audit trail: stopping without knowing whether the event of request %s "
                     "(seq %lld or before) was committed; its request is answered 503",
                     json_string_value(json_object_get(e, "request_id")), (long long)a->doubt_seq);
            json_decref(e);
        }
        pthread_mutex_lock(&a->lock);
        batch_back(a, a->doubt, a->ndoubt);
        a->ndoubt = 0;
        pthread_mutex_unlock(&a->lock);
    }
    free(a->doubt);
    a->doubt = NULL;
    free(batch);
    free(stale);
    return NULL;
}

/* Requests to resume once the lock is released. */
typedef struct {
    gw_audit_wait **w;
    size_t n, cap;
} fireset;

static void
wait_link(gw_audit *a, item *it)
{
    it->wnext = NULL;
    it->wprev = a->wait_tail;
    if (a->wait_tail)
        a->wait_tail->wnext = it;
    else
        a->wait_head = it;
    a->wait_tail = it;
}

static void
wait_unlink(gw_audit *a, item *it)
{
    if (it->wprev)
        it->wprev->wnext = it->wnext;
    else
        a->wait_head = it->wnext;
    if (it->wnext)
        it->wnext->wprev = it->wprev;
    else
        a->wait_tail = it->wprev;
    it->wprev = it->wnext = NULL;
}

/* Gives an item's request its outcome (the lock is held); fire() tells it later. */
static void
tell(gw_audit *a, item *it, sl_code rc, fireset *f)
{
    gw_audit_wait *w = it->w;

    w->rc = rc;
    w->seq = rc == SL_OK ? it->seq : 0;
    it->w = NULL;
    wait_unlink(a, it);
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->w = sl_xreallocarray(f->w, f->cap, sizeof *f->w);
    }
    f->w[f->n++] = w;
}

/* Runs the requests' callbacks, without the lock: a request may be gone once told. */
static void
fire(fireset *f)
{
    size_t i;

    for (i = 0; i < f->n; i++)
        f->w[i]->done(f->w[i]);
    f->n = 0;
}

/*
 * Answers 503 for the requests past their bound (the lock is held): an event not yet
 * being written is rewritten to record the 503 and stays queued; one being written gets
 * a short grace for the batch's outcome (a commit may be just done), then its request is
 * answered and the writer records a correction if the event lands after all. Returns
 * when to look again.
 */
static int64_t
expire(gw_audit *a, int64_t now, fireset *f)
{
    int64_t next = now + (int64_t)a->bound_ms * 1000000;
    item *it, *nx;

    for (it = a->wait_head; it != NULL; it = nx) {
        nx = it->wnext;
        if (it->deadline_ns > now) {
            if (it->deadline_ns < next)
                next = it->deadline_ns;
            break; /* the rest are younger */
        }
        if (it->state == QUEUED) {
            rewrite_unavailable(it);
            tell(a, it, SL_EUNAVAIL, f);
        } else {
            int64_t grace = it->deadline_ns + GW_AUDIT_GRACE_S * 1000000000LL;
            if (now >= grace) {
                it->abandoned = 1; /* the writer or the notifier frees it */
                tell(a, it, SL_EUNAVAIL, f);
            } else if (grace < next) {
                next = grace;
            }
        }
    }
    return next;
}

/*
 * Tells waiting requests their outcome: the batches the writer committed, and the
 * bounds that passed. Resuming a request is a system call; this thread makes them while
 * the writer writes the next batch. Items stay WRITING until then.
 */
static void *
notifier_main(void *arg)
{
    gw_audit *a = arg;
    fireset f = {NULL, 0, 0};
    size_t i;
    item *it;

    pthread_mutex_lock(&a->lock);
    for (;;) {
        struct timespec until;
        int64_t next;
        wake *w;

        while ((w = a->wake_head) != NULL) {
            a->wake_head = w->next;
            if (a->wake_head == NULL)
                a->wake_tail = NULL;
            for (i = 0; i < w->n; i++) {
                it = w->items[i];
                if (it->outcome == SL_EAUTH) {
                    if (it->abandoned) {
                        requeue_answered(a, it);
                        continue;
                    }
                    tell(a, it, SL_EAUTH, &f);
                    item_free(it);
                    continue;
                }
                if (it->abandoned) {
                    late_commit(a, it);
                    continue;
                }
                it->state = COMMITTED;
                tell(a, it, SL_OK, &f);
                item_free(it);
            }
            free(w->items);
            free(w);
        }
        next = expire(a, sl_mono_ns(), &f);
        if (f.n > 0) {
            a->firing++;
            pthread_cond_broadcast(&a->done);
            pthread_mutex_unlock(&a->lock);
            fire(&f);
            pthread_mutex_lock(&a->lock);
            a->firing--;
            pthread_cond_broadcast(&a->done);
            continue;
        }
        if (a->notifier_stop)
            break;
        until.tv_sec = (time_t)(next / 1000000000LL);
        until.tv_nsec = (long)(next % 1000000000LL);
        pthread_cond_timedwait(&a->wake_cv, &a->lock, &until);
    }
    /* the writer has stopped: whoever still waits is answered 503 */
    while ((it = a->wait_head) != NULL)
        tell(a, it, SL_EUNAVAIL, &f);
    pthread_mutex_unlock(&a->lock);
    fire(&f);
    free(f.w);
    return NULL;
}

gw_audit *
gw_audit_start(const char *conninfo, const gw_keys *keys, int bound_ms)
{
    gw_audit *a = sl_xcalloc(1, sizeof *a);
    pthread_condattr_t mono;
    int boosted = 0;

    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->done, NULL);
    /* deadlines are on the monotonic clock */
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&a->wake_cv, &mono);
    pthread_condattr_destroy(&mono);
    a->bound_ms = bound_ms > 0 ? bound_ms : 1;
    a->conninfo = sl_xstrdup(conninfo);
    a->keys = keys;
    a->healthy = ensure_conn(a);
    /*
     * Every answer waits for the writer, so on a busy machine it should not queue behind
     * the connection threads. Started as root (before privileges are dropped), its
     * threads and its database session get a higher priority; threads inherit the
     * creating thread's nice value, which is then put back.
     */
    if (geteuid() == 0 && setpriority(PRIO_PROCESS, 0, GW_AUDIT_NICE) == 0) {
        boosted = 1;
        if (a->conn != NULL &&
            setpriority(PRIO_PROCESS, (id_t)PQbackendPID(a->conn), GW_AUDIT_NICE) != 0)
            sl_debug("could not raise the priority of the audit writer's session");
    }
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0 ||
        pthread_create(&a->notifier, NULL, notifier_main, a) != 0)
        sl_panic("could not start the audit writer threads");
    if (boosted && setpriority(PRIO_PROCESS, 0, 0) != 0)
        sl_warn("could not restore the main thread's priority");
    return a;
}

/* Marks a request's event as answered 503 because the trail could not take it. */
static void
rewrite_unavailable(item *it)
{
    json_t *ev = item_event(it);

    json_object_set_new(ev, "status", json_integer(503));
    json_object_set_new(ev, "decision", json_string("error"));
    json_object_set_new(ev, "reason",
                        json_string("audit trail unavailable: answered 503 without data"));
    json_object_set_new(ev, "bytes", json_integer(0));
    it->claim = 0; /* the 503 was answered whoever asked */
    prepare(it, ev);
}

void
gw_audit_submit(gw_audit *a, json_t *event, gw_audit_wait *w)
{
    item *it = item_new(event);

    pthread_mutex_lock(&a->lock);
    if (a->depth >= SL_AUDIT_QUEUE_MAX) {
        a->overflow++;
        atomic_fetch_add(&gw_stats.audit_overflow, 1);
        pthread_mutex_unlock(&a->lock);
        item_free(it);
        w->rc = SL_EUNAVAIL;
        w->seq = 0;
        w->done(w);
        return;
    }
    it->w = w;
    it->claim = w->claim;
    if (w->claim)
        snprintf(it->claim_token, sizeof it->claim_token, "%s", w->claim_token);
    it->claim_version = w->claim_version;
    /* The notifier looks at least once per bound, so a first waiter need not wake it. */
    it->deadline_ns = sl_mono_ns() + (int64_t)a->bound_ms * 1000000;
    wait_link(a, it);
    push_back(a, it);
    pthread_cond_signal(&a->work);
    pthread_mutex_unlock(&a->lock);
}

typedef struct {
    gw_audit_wait w;
    pthread_mutex_t m;
    pthread_cond_t c;
    int done;
} sync_wait;

static void
sync_done(gw_audit_wait *w)
{
    sync_wait *s = w->ctx;

    pthread_mutex_lock(&s->m);
    s->done = 1;
    pthread_cond_signal(&s->c);
    pthread_mutex_unlock(&s->m);
}

sl_code
gw_audit_commit(gw_audit *a, json_t *event, gw_audit_wait *w)
{
    sync_wait s;

    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.m, NULL);
    pthread_cond_init(&s.c, NULL);
    s.w = *w;
    s.w.done = sync_done;
    s.w.ctx = &s;
    gw_audit_submit(a, event, &s.w);
    pthread_mutex_lock(&s.m);
    while (!s.done)
        pthread_cond_wait(&s.c, &s.m);
    pthread_mutex_unlock(&s.m);
    pthread_mutex_destroy(&s.m);
    pthread_cond_destroy(&s.c);
    w->rc = s.w.rc;
    w->seq = s.w.seq;
    return w->rc;
}

void
gw_audit_post(gw_audit *a, json_t *event)
{
    item *it = item_new(event);

    pthread_mutex_lock(&a->lock);
    if (a->depth >= SL_AUDIT_QUEUE_MAX) {
        a->overflow++;
        atomic_fetch_add(&gw_stats.audit_overflow, 1);
        pthread_mutex_unlock(&a->lock);
        item_free(it);
        return;
    }
    push_back(a, it);
    pthread_cond_signal(&a->work);
    pthread_mutex_unlock(&a->lock);
}

void
gw_audit_release_waiters(gw_audit *a)
{
    fireset f = {NULL, 0, 0};
    item *it;

    pthread_mutex_lock(&a->lock);
    while ((it = a->wait_head) != NULL) {
        if (it->state == QUEUED) {
            rewrite_unavailable(it);
        } else {
            it->abandoned = 1; /* being written: the writer or the notifier frees it */
        }
        tell(a, it, SL_EUNAVAIL, &f);
    }
    a->firing++;
    pthread_mutex_unlock(&a->lock);
    fire(&f);
    free(f.w);
    pthread_mutex_lock(&a->lock);
    a->firing--;
    pthread_cond_broadcast(&a->done);
    pthread_mutex_unlock(&a->lock);
}

void
gw_audit_quiet(gw_audit *a)
{
    pthread_mutex_lock(&a->lock);
    while (a->firing > 0) {
        struct timespec until;
        sl_deadline_ms(&until, 100);
        pthread_cond_timedwait(&a->done, &a->lock, &until);
    }
    pthread_mutex_unlock(&a->lock);
}

void
gw_audit_stop(gw_audit *a, int drain_ms)
{
    int64_t end = sl_mono_ns() + (int64_t)drain_ms * 1000000;
    item *it, *next;

    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = 1;
    pthread_cond_broadcast(&a->work);
    while ((a->head != NULL || a->overflow > 0 || a->inflight || a->ndoubt > 0 ||
            a->wake_head != NULL) &&
           sl_mono_ns() < end) {
        struct timespec until;
        sl_deadline_ms(&until, 100);
        pthread_cond_timedwait(&a->done, &a->lock, &until);
    }
    a->stopping = 2;
    pthread_cond_broadcast(&a->work);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_mutex_lock(&a->lock);
    a->notifier_stop = 1;
    pthread_cond_signal(&a->wake_cv);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->notifier, NULL);
    if (a->depth > 0 || a->overflow > 0)
        sl_error("audit trail: %ld events could not be written before shutdown "
                 "(the database was unavailable); their requests were answered 503",
                 a->depth + a->overflow);
    for (it = a->head; it != NULL; it = next) {
        next = it->next;
        item_free(it);
    }
    PQfinish(a->conn);
    free(a->conninfo);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->done);
    pthread_cond_destroy(&a->wake_cv);
    free(a);
}

int
gw_audit_healthy(gw_audit *a)
{
    int h;

    pthread_mutex_lock(&a->lock);
    h = a->healthy && !(a->inflight && sl_mono_ns() - a->batch_start_ns > 2000000000LL);
    pthread_mutex_unlock(&a->lock);
    return h;
}

long
gw_audit_depth(gw_audit *a)
{
    long d;

    pthread_mutex_lock(&a->lock);
    d = a->depth;
    pthread_mutex_unlock(&a->lock);
    return d;
}

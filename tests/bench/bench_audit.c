/*
 * tests/bench/bench_audit.c: audit events/s sustained through the real writer
 * (gw_audit_commit from many threads, each waiting for its event to be durable, as
 * requests do) next to a plain COPY of the same rows into a scratch table, same run.
 * Usage: bench_audit DATA_DIR [--events N] [--threads T]; DATA_DIR from `sluice init`.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

#define BENCH_DEFAULT_EVENTS  200000
#define BENCH_DEFAULT_THREADS 64
#define BENCH_MAX_THREADS     4096
/* Bound a submitter waits for its event: far above any healthy commit, so that a 503
 * here means the writer really fell behind. */
#define BENCH_BOUND_MS 30000
/* Bytes handed to PQputCopyData at a time, as db_audit_copy does. */
#define BENCH_COPY_CHUNK (256 * 1024)

typedef struct {
    gw_audit *audit;
    int64_t events;
    atomic_llong next;   /* next ticket to take */
    atomic_long unavail; /* commits that came back SL_EUNAVAIL */
    int32_t *wait_us;    /* per event: how long its submitter waited */
} bench;

static void
usage(void)
{
    fprintf(stderr, "usage: bench_audit DATA_DIR [--events N] [--threads T]\n");
    exit(2);
}

static json_t *
event_new(int64_t i)
{
    char rid[32];

    snprintf(rid, sizeof rid, "bench-%012lld", (long long)i);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:i, s:i, s:s, s:{s:s}}", "request_id",
                     rid, "principal", "admin", "action", "whoami", "resource", "whoami",
                     "decision", "allow", "reason", "ok", "purpose", "status", 200, "bytes", 187,
                     "client", "127.0.0.1", "detail", "method", "GET");
}

static void *
submitter(void *arg)
{
    bench *b = arg;

    for (;;) {
        long long i = atomic_fetch_add(&b->next, 1);
        gw_audit_wait w = {0};
        int64_t t0;
        json_t *ev;

        if (i >= b->events)
            break;
        ev = event_new(i);
        if (ev == NULL)
            sl_panic("could not build a benchmark event");
        t0 = sl_mono_ns();
        if (gw_audit_commit(b->audit, ev, &w) != SL_OK)
            atomic_fetch_add(&b->unavail, 1);
        b->wait_us[i] = (int32_t)((sl_mono_ns() - t0) / 1000);
    }
    return NULL;
}

static int
cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, c = *(const int32_t *)y;

    return (a > c) - (a < c);
}

static double
seconds_since(int64_t t0_ns)
{
    return (double)(sl_mono_ns() - t0_ns) / 1e9;
}

/* Runs a fixed statement; prints the server's message and returns 0 on failure. */
static int
exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "bench_audit: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* COPY (query) TO STDOUT into memory; *rows counts the lines. */
static int
copy_out(PGconn *c, const char *sql, sl_buf *out, int64_t *rows)
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    char *line;
    int n, ok = 1;

    *rows = 0;
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        fprintf(stderr, "bench_audit: copy out: %s", PQerrorMessage(c));
        PQclear(r);
        return 0;
    }
    PQclear(r);
    while ((n = PQgetCopyData(c, &line, 0)) > 0) {
        if (ok && sl_buf_append(out, line, (size_t)n) != SL_OK)
            ok = 0;
        (*rows)++;
        PQfreemem(line);
    }
    r = PQgetResult(c);
    if (n != -1 || PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_audit: copy out: %s", PQerrorMessage(c));
        ok = 0;
    }
    PQclear(r);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    return ok;
}

/* Runs copy_sql (COPY ... FROM STDIN) with the buffer in one transaction, timed in *secs. */
static int
copy_in(PGconn *c, const char *copy_sql, const sl_buf *in, double *secs)
{
    int64_t t0 = sl_mono_ns();
    PGresult *r;
    size_t off;
    int ok = 1;

    if (!exec_ok(c, "BEGIN"))
        return 0;
    r = PQexecParams(c, copy_sql, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        fprintf(stderr, "bench_audit: copy in: %s", PQerrorMessage(c));
        PQclear(r);
        (void)exec_ok(c, "ROLLBACK");
        return 0;
    }
    PQclear(r);
    for (off = 0; off < in->len && ok; off += BENCH_COPY_CHUNK) {
        size_t n = in->len - off < BENCH_COPY_CHUNK ? in->len - off : BENCH_COPY_CHUNK;
        ok = PQputCopyData(c, in->data + off, (int)n) == 1;
    }
    if (PQputCopyEnd(c, ok ? NULL : "bench_audit: abandoned") != 1)
        ok = 0;
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_audit: copy in: %s", PQerrorMessage(c));
        ok = 0;
    }
    PQclear(r);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    ok = ok && exec_ok(c, "COMMIT");
    if (!ok)
        (void)exec_ok(c, "ROLLBACK");
    *secs = seconds_since(t0);
    return ok;
}

/* The writer's run: T threads, N events; 0 on failure. */
static int
run_writer(const gw_config *cfg, const gw_keys *keys, int64_t events, int threads, double *rate)
{
    bench b;
    pthread_t *tid = sl_xcalloc((size_t)threads, sizeof *tid);
    long ev0, commits0, fail0, events_done, commits_done;
    gw_audit_wait first = {0};
    int64_t t0;
    double secs;
    int i, ok = 1;

    memset(&b, 0, sizeof b);
    b.events = events;
    b.wait_us = sl_xcalloc((size_t)events, sizeof *b.wait_us);
    b.audit = gw_audit_start(cfg->conninfo, keys, BENCH_BOUND_MS);
    /* one event first, untimed: the writer's connection and the table's first pages */
    if (gw_audit_commit(b.audit, event_new(-1), &first) != SL_OK) {
        fprintf(stderr, "bench_audit: the audit writer could not commit a first event\n");
        ok = 0;
        goto out;
    }
    ev0 = atomic_load(&gw_stats.audit_events);
    commits0 = atomic_load(&gw_stats.audit_commits);
    fail0 = atomic_load(&gw_stats.audit_failures);
    t0 = sl_mono_ns();
    for (i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, submitter, &b) != 0)
            sl_panic("could not start submitter thread %d", i);
    for (i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    secs = seconds_since(t0);
    events_done = atomic_load(&gw_stats.audit_events) - ev0;
    commits_done = atomic_load(&gw_stats.audit_commits) - commits0;
    *rate = (double)events / secs;
    qsort(b.wait_us, (size_t)events, sizeof *b.wait_us, cmp_i32);
    printf("writer: %lld events from %d threads in %.2f s; %ld group commits, average batch "
           "%.1f events; commit wait p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           (long long)events, threads, secs, commits_done,
           commits_done ? (double)events_done / (double)commits_done : 0.0,
           b.wait_us[events / 2] / 1e3, b.wait_us[events * 99 / 100] / 1e3,
           b.wait_us[events - 1] / 1e3);
    if (atomic_load(&b.unavail) > 0 || atomic_load(&gw_stats.audit_failures) > fail0) {
        printf("writer: %ld events answered unavailable, %ld failed batches\n",
               atomic_load(&b.unavail), atomic_load(&gw_stats.audit_failures) - fail0);
        ok = 0;
    }
out:
    gw_audit_stop(b.audit, 10000);
    free(b.wait_us);
    free(tid);
    return ok;
}

static int64_t
cpu_ns(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * The writer's sustained rate: events handed over as fast as it takes them (as from
 * many requests at once, without their wake-ups), timed until the last is committed.
 */
static int
run_fed(const gw_config *cfg, const gw_keys *keys, int64_t events, double *rate)
{
    gw_audit *a = gw_audit_start(cfg->conninfo, keys, BENCH_BOUND_MS);
    long ev0, commits0, fail0;
    gw_audit_wait first = {0};
    int64_t t0, i, feed0, proc0;
    double secs;
    int ok = 1;

    if (gw_audit_commit(a, event_new(-1), &first) != SL_OK) {
        fprintf(stderr, "bench_audit: the audit writer could not commit a first event\n");
        gw_audit_stop(a, 10000);
        return 0;
    }
    ev0 = atomic_load(&gw_stats.audit_events);
    commits0 = atomic_load(&gw_stats.audit_commits);
    fail0 = atomic_load(&gw_stats.audit_failures);
    t0 = sl_mono_ns();
    feed0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    proc0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (i = 0; i < events; i++) {
        while (gw_audit_depth(a) > 4 * SL_AUDIT_BATCH_MAX) {
            struct timespec ts = {0, 200000L};
            nanosleep(&ts, NULL);
        }
        gw_audit_post(a, event_new(i));
    }
    feed0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - feed0;
    while (atomic_load(&gw_stats.audit_events) - ev0 < events) {
        struct timespec ts = {0, 200000L};
        nanosleep(&ts, NULL);
        if (seconds_since(t0) > 600) {
            ok = 0;
            break;
        }
    }
    secs = seconds_since(t0);
    proc0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - proc0;
    *rate = (double)events / secs;
    printf("CPU per event in this process: %.1f us building and canonicalising events (the "
           "requests' share), %.1f us in the writer (stamping, hashing, sending)\n",
           (double)feed0 / 1e3 / (double)events, (double)(proc0 - feed0) / 1e3 / (double)events);
    printf("writer fed continuously: %lld events in %.2f s; %ld group commits, average batch "
           "%.1f events\n",
           (long long)events, secs, atomic_load(&gw_stats.audit_commits) - commits0,
           (double)events / (double)(atomic_load(&gw_stats.audit_commits) - commits0));
    if (atomic_load(&gw_stats.audit_failures) > fail0 || atomic_load(&gw_stats.audit_overflow))
        ok = 0;
    gw_audit_stop(a, 10000);
    return ok;
}

/* The peer: the same N rows COPYed into a scratch table in one transaction; 0 on failure. */
static int
run_copy(const gw_config *cfg, int64_t events, double *rate, double *rate_indexed)
{
    char sql[160];
    sl_buf rows;
    int64_t n = 0;
    double secs = 0, secs_ix = 0;
    PGconn *c = PQconnectdb(cfg->conninfo);
    int ok = 0;

    sl_buf_init(&rows, (size_t)8 << 30);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_audit: %s", PQerrorMessage(c));
        goto out;
    }
    /* COPY takes no bind parameters; the limit is an integer we parsed ourselves. */
    snprintf(sql, sizeof sql,
             "COPY (SELECT * FROM audit_events ORDER BY seq DESC LIMIT %lld) TO STDOUT",
             (long long)events);
    if (!copy_out(c, sql, &rows, &n))
        goto out;
    if (n != events) {
        fprintf(stderr, "bench_audit: the trail holds %lld events, %lld wanted\n", (long long)n,
                (long long)events);
        goto out;
    }
    if (!exec_ok(c, "SET client_min_messages = warning") ||
        !exec_ok(c, "DROP TABLE IF EXISTS bench_copy, bench_copy_ix") ||
        !exec_ok(c, "CREATE TABLE bench_copy (LIKE audit_events)") ||
        !exec_ok(c, "CREATE TABLE bench_copy_ix (LIKE audit_events INCLUDING ALL)") ||
        !exec_ok(c, "CHECKPOINT"))
        goto out;
    if (!copy_in(c, "COPY bench_copy FROM STDIN", &rows, &secs) ||
        !copy_in(c, "COPY bench_copy_ix FROM STDIN", &rows, &secs_ix))
        goto out;
    *rate = (double)n / secs;
    *rate_indexed = (double)n / secs_ix;
    printf("COPY: %lld rows (%.1f MB) in %.2f s into a plain table; %.2f s into one with "
           "audit_events' indexes (%.0f rows/s)\n",
           (long long)n, (double)rows.len / 1e6, secs, secs_ix, *rate_indexed);
    ok = 1;
out:
    if (PQstatus(c) == CONNECTION_OK &&
        !exec_ok(c, "DROP TABLE IF EXISTS bench_copy, bench_copy_ix"))
        ok = 0;
    PQfinish(c);
    sl_buf_free(&rows);
    return ok;
}

int
main(int argc, char **argv)
{
    gw_config cfg;
    gw_keys keys;
    sl_err err;
    int64_t events = BENCH_DEFAULT_EVENTS, v;
    int threads = BENCH_DEFAULT_THREADS, i, pg_started = 0, rc = 1;
    double writer_rate = 0, fed_rate = 0, copy_rate = 0, copy_ix_rate = 0;

    if (cry_init() != SL_OK) {
        fprintf(stderr, "bench_audit: libsodium could not start\n");
        return 1;
    }
    if (argc < 2 || argv[1][0] == '-')
        usage();
    for (i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--events") == 0 &&
            sl_parse_i64(argv[i + 1], 1, 100000000, &v) == SL_OK)
            events = v;
        else if (strcmp(argv[i], "--threads") == 0 &&
                 sl_parse_i64(argv[i + 1], 1, BENCH_MAX_THREADS, &v) == SL_OK)
            threads = (int)v;
        else
            usage();
        i++;
    }
    sl_log_set_level(SL_LOG_WARN);
    memset(&keys, 0, sizeof keys);
    sl_err_clear(&err);
    gw_config_defaults(&cfg);
    if (strlen(argv[1]) >= sizeof cfg.data_dir - 64) {
        fprintf(stderr, "bench_audit: data directory path too long\n");
        return 1;
    }
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", argv[1]);
    if (gw_config_load(&cfg, &err) != SL_OK || gw_keys_load(&cfg, &keys, &err) != SL_OK)
        goto out;
    if (cfg.embedded_pg) {
        if (gw_pg_start(&cfg, &err) != SL_OK)
            goto out;
        pg_started = 1;
    }
    if (db_migrate(cfg.conninfo, NULL, &err) != SL_OK)
        goto out;
    if (!run_writer(&cfg, &keys, events, threads, &writer_rate) ||
        !run_fed(&cfg, &keys, events, &fed_rate) ||
        !run_copy(&cfg, events, &copy_rate, &copy_ix_rate))
        goto out;
    printf("requests waiting (%d threads): %.0f events/s; ratio %.2f to plain COPY, %.2f to "
           "COPY into an indexed table like audit_events\n",
           threads, writer_rate, writer_rate / copy_rate, writer_rate / copy_ix_rate);
    printf("audit writer: %.0f events/s sustained; COPY: %.0f rows/s; ratio %.2f (target >= "
           "0.5)\n",
           fed_rate, copy_rate, fed_rate / copy_rate);
    printf("(against COPY into a table with audit_events' indexes, %.0f rows/s: ratio %.2f)\n",
           copy_ix_rate, fed_rate / copy_ix_rate);
    rc = 0;
out:
    if (err.code != SL_OK)
        fprintf(stderr, "bench_audit: %s%s%s\n", err.msg, err.detail[0] ? ": " : "", err.detail);
    if (pg_started && gw_pg_stop(&cfg, &err) != SL_OK)
        fprintf(stderr, "bench_audit: could not stop PostgreSQL: %s\n", err.msg);
    gw_keys_free(&keys);
    return rc;
}

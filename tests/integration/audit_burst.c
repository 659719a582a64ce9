/*
 * tests/integration/audit_burst.c: a second audit writer for the integration tests. It
 * loads a data directory's configuration and keys, starts its own writer on the same
 * database as the running gateway, and hands it N events while holding the chain's lock
 * from another session, so that they queue and go in large batches (the COPY path) once
 * it is released; it stops once they are committed. Two writers then extend one chain;
 * the test verifies the result through the gateway.
 * Usage: audit_burst DATA_DIR N        Exit 0 when every event was committed.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gw.h"

int
main(int argc, char **argv)
{
    gw_config cfg;
    gw_keys keys;
    gw_audit *a;
    gw_audit_wait first = {0};
    PGconn *hold = NULL;
    PGresult *r;
    char lock[24];
    const char *params[1];
    sl_err err;
    int64_t n, i, committed, t0;
    long ev0;
    int rc = 1;

    if (argc != 3 || sl_parse_i64(argv[2], 1, 1000000, &n) != SL_OK) {
        fprintf(stderr, "usage: audit_burst DATA_DIR N\n");
        return 2;
    }
    if (cry_init() != SL_OK)
        return 1;
    sl_log_set_level(SL_LOG_WARN);
    memset(&keys, 0, sizeof keys);
    sl_err_clear(&err);
    gw_config_defaults(&cfg);
    if (strlen(argv[1]) >= sizeof cfg.data_dir - 64)
        return 2;
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", argv[1]);
    if (gw_config_load(&cfg, &err) != SL_OK || gw_keys_load(&cfg, &keys, &err) != SL_OK) {
        fprintf(stderr, "audit_burst: %s (%s)\n", err.msg, err.detail);
        return 1;
    }
    a = gw_audit_start(cfg.conninfo, &keys, 30000);
    if (gw_audit_commit(a,
                        json_pack("{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:i, s:s, s:{}}",
                                  "request_id", "burst-start", "principal", "action", "test.burst",
                                  "resource", "burst", "decision", "allow", "reason",
                                  "a second writer starts", "purpose", "status", 0, "bytes", 0,
                                  "client", "test", "detail"),
                        &first) != SL_OK) {
        fprintf(stderr, "audit_burst: the first event was not committed\n");
        goto out;
    }
    /* hold the chain's lock (the writers' transaction-level one) while the events queue */
    hold = PQconnectdb(cfg.conninfo);
    if (PQstatus(hold) != CONNECTION_OK) {
        fprintf(stderr, "audit_burst: %s", PQerrorMessage(hold));
        goto out;
    }
    snprintf(lock, sizeof lock, "%lld", (long long)DB_LOCK_AUDIT);
    params[0] = lock;
    r = PQexecParams(hold, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "audit_burst: %s", PQerrorMessage(hold));
        PQclear(r);
        goto out;
    }
    PQclear(r);
    ev0 = atomic_load(&gw_stats.audit_events);
    for (i = 0; i < n; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "burst-%08lld", (long long)i);
        gw_audit_post(a,
                      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:i, s:i, s:s, s:{s:I}}",
                                "request_id", rid, "principal", "burst", "action", "test.burst",
                                "resource", "burst", "decision", "allow", "reason",
                                "a quoted \"reason\" with a \\ and \xc3\xa9", "purpose", "status",
                                200, "bytes", 0, "client", "test", "detail", "i", (json_int_t)i));
    }
    PQfinish(hold); /* releases the lock */
    hold = NULL;
    t0 = sl_mono_ns();
    do {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
        committed = atomic_load(&gw_stats.audit_events) - ev0;
    } while (committed < n && sl_mono_ns() - t0 < 120LL * 1000000000LL);
    printf("audit_burst: %lld events committed in %ld group commits\n", (long long)committed,
           atomic_load(&gw_stats.audit_commits));
    /* the first event's batch may be counted just after ev0 was read: the test counts rows */
    rc = committed >= n && atomic_load(&gw_stats.audit_overflow) == 0 ? 0 : 1;
out:
    PQfinish(hold);
    gw_audit_stop(a, 10000);
    gw_keys_free(&keys);
    return rc;
}

/*
 * tests/bench/bench_policy.c: policy decisions in process (scripts/bench.sh, (d)).
 * 1,000 datasets with 10 statements each (10,000 in all: allows and denies by role,
 * name and attribute, purposes, validity windows, column denies and masks, row filters)
 * and 4 global policies by classification and tag, compiled once; then decisions for
 * random (principal, dataset, action, purpose) requests, each timed on its own with the
 * monotonic clock. Prints decisions per second (over a batch timed whole), p50, p99 and
 * p99.9 latency, and the targets (p50 <= 1 us, p99 <= 10 us).
 *   bench_policy [--decisions N]   (default 2,000,000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pol.h"

#define NDATASETS 1000
#define PER_DS    10
#define NCOLS     12

static const char *const roles[] = {"trainer", "analyst", "researcher", "intern", "auditor",
                                    "owner",   "admin",   "validator",  "guest",  "ops"};
static const char *const depts[] = {"research", "sales", "ops", "finance"};
static const char *const purposes[] = {"model-training", "evaluation", "marketing", "debugging"};
static const char *const actions[] = {"dataset.describe", "dataset.read", "compute.train",
                                      "compute.features"};
static const char *const classes[] = {"public", "internal", "confidential", "restricted"};
static const char *const pii[] = {"pii"}, *const label[] = {"label"};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* One statement of dataset d, statement k: varied on purpose. */
static json_t *
statement(int d, int k)
{
    json_t *s = json_object(), *p = json_object();
    char id[32], col[16];

    snprintf(id, sizeof id, "s%d-%d", d, k);
    json_object_set_new(s, "id", json_string(id));
    json_object_set_new(s, "effect", json_string(k % 5 == 4 ? "deny" : "allow"));
    json_object_set_new(p, "roles",
                        json_pack("[s, s]", roles[(d + k) % 10], roles[(d + 3 * k + 1) % 10]));
    if (k % 3 == 0)
        json_object_set_new(p, "attributes", json_pack("{s:s}", "department", depts[(d + k) % 4]));
    if (k % 7 == 6)
        json_object_set_new(p, "names", json_pack("[s]", "user7"));
    json_object_set_new(s, "principals", p);
    json_object_set_new(s, "actions", json_pack("[s, s]", actions[k % 4], actions[(k + 1) % 4]));
    if (k % 2 == 0)
        json_object_set_new(s, "purposes",
                            json_pack("[s, s]", purposes[k % 4], purposes[(k + 1) % 4]));
    if (k % 4 == 1)
        json_object_set_new(s, "not_after", json_string("2030-01-01T00:00:00Z"));
    if (k % 5 != 4) {
        snprintf(col, sizeof col, "c%d", 4 + (d + k) % (NCOLS - 4));
        json_object_set_new(s, "columns",
                            json_pack("{s:[s], s:{s:s}}", "deny", col, "mask", "c0", "hash"));
        if (k % 3 == 1)
            json_object_set_new(s, "row_filter", json_string("c1 > 10 and c2 == \"EU\""));
    }
    return s;
}

int
main(int argc, char **argv)
{
    long n = argc > 2 && strcmp(argv[1], "--decisions") == 0 ? atol(argv[2]) : 2000000;
    pol_compiled **ds = calloc(NDATASETS, sizeof *ds);
    pol_column cols[NCOLS];
    char names[NCOLS][8];
    json_t *gdocs[4];
    pol_global globals[4];
    pol_subject subj[64];
    const char *sroles[64][2], *akeys[1] = {"department"}, *avals[64][1];
    char snames[64][16];
    int64_t *lat, t0, t1, now;
    long i, allowed = 0, statements = 0;
    int d, k;
    sl_err err;

    if (n < 1000)
        n = 1000;
    for (k = 0; k < NCOLS; k++) {
        snprintf(names[k], sizeof names[k], "c%d", k);
        cols[k].name = names[k];
        cols[k].type = k == 1 ? POL_INT64 : k == 3 ? POL_FLOAT64 : POL_STRING;
        cols[k].tags = k == 0 ? pii : k == 3 ? label : NULL;
        cols[k].ntags = k == 0 || k == 3;
    }
    gdocs[0] =
        json_pack("{s:{s:[s]}, s:[{s:s, s:s, s:{s:[s]}, s:[s], s:{s:{s:s}}}]}", "applies_to",
                  "tags", "pii", "statements", "id", "g0", "effect", "deny", "principals", "roles",
                  "intern", "actions", "dataset.read", "columns", "mask", "tag:pii", "redact");
    gdocs[1] = json_pack("{s:{s:[s]}, s:[{s:s, s:s, s:{s:[s]}, s:[s]}]}", "applies_to",
                         "classifications", "confidential", "statements", "id", "g1", "effect",
                         "deny", "principals", "roles", "guest", "actions", "*");
    gdocs[2] = json_pack("{s:{s:[s]}, s:[{s:s, s:s, s:{s:[s]}, s:[s]}]}", "applies_to",
                         "classifications", "public", "statements", "id", "g2", "effect", "allow",
                         "principals", "roles", "analyst", "actions", "dataset.describe");
    gdocs[3] =
        json_pack("{s:{s:[s]}, s:[{s:s, s:s, s:{s:[s]}, s:[s], s:s}]}", "applies_to", "tags",
                  "label", "statements", "id", "g3", "effect", "allow", "principals", "roles",
                  "validator", "actions", "compute.features", "row_filter", "c3 >= 0.5");
    for (k = 0; k < 4; k++) {
        char gname[8];
        snprintf(gname, sizeof gname, "g%d", k);
        globals[k].name = strdup(gname);
        globals[k].doc = gdocs[k];
        globals[k].version = 1;
    }
    t0 = now_ns();
    for (d = 0; d < NDATASETS; d++) {
        json_t *doc = json_object(), *st = json_array();
        pol_dataset pd = {classes[d % 3], cols, NCOLS};

        for (k = 0; k < PER_DS; k++)
            json_array_append_new(st, statement(d, k));
        json_object_set_new(doc, "statements", st);
        sl_err_clear(&err);
        if (pol_compile(&pd, doc, 1, globals, 4, &ds[d], &err) != SL_OK) {
            fprintf(stderr, "bench_policy: dataset %d does not compile: %s\n", d, err.msg);
            return 1;
        }
        statements += (long)pol_compiled_statements(ds[d]);
        json_decref(doc);
    }
    t1 = now_ns();
    for (k = 0; k < 64; k++) {
        snprintf(snames[k], sizeof snames[k], "user%d", k);
        sroles[k][0] = roles[k % 10];
        sroles[k][1] = roles[(k * 7 + 3) % 10];
        avals[k][0] = depts[k % 4];
        pol_subject_init(&subj[k], snames[k], sroles[k], 2, akeys, avals[k], 1, k % 13 == 0);
    }
    printf("policies: %d datasets, %ld statements compiled (globals included) in %.1f ms\n",
           NDATASETS, statements, (double)(t1 - t0) / 1e6);
    lat = malloc((size_t)n * sizeof *lat);
    now = (int64_t)1800000000 * 1000000;
    /* throughput: a batch timed whole */
    t0 = now_ns();
    for (i = 0; i < n; i++) {
        uint64_t r = next();
        pol_request req;
        pol_decision dec;
        uint32_t bit;

        if (pol_action_parse(actions[r % 4], &bit) != SL_OK)
            return 1;
        pol_request_init(&req, bit, (r >> 8) % 5 == 4 ? NULL : purposes[(r >> 8) % 4], now);
        pol_decide(ds[(r >> 16) % NDATASETS], &subj[(r >> 32) % 64], &req, &dec);
        allowed += dec.allow;
    }
    t1 = now_ns();
    printf("decisions: %ld in %.3f s: %.0f decisions/s (one thread), %.1f%% allowed\n", n,
           (double)(t1 - t0) / 1e9, (double)n / ((double)(t1 - t0) / 1e9),
           100.0 * (double)allowed / (double)n);
    /* latency: each decision timed on its own (the clock's own cost included) */
    for (i = 0; i < n; i++) {
        uint64_t r = next();
        pol_request req;
        pol_decision dec;
        uint32_t bit = 1u << (r % 8);
        int64_t a, b;

        a = now_ns();
        pol_request_init(&req, bit, (r >> 8) % 5 == 4 ? NULL : purposes[(r >> 8) % 4], now);
        pol_decide(ds[(r >> 16) % NDATASETS], &subj[(r >> 32) % 64], &req, &dec);
        b = now_ns();
        lat[i] = b - a;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp64);
    {
        int64_t a = now_ns(), b = now_ns(), c = now_ns();
        (void)a;
        printf("latency: p50 %.3f us, p99 %.3f us, p99.9 %.3f us, max %.3f us (clock read ~%lld "
               "ns)\n",
               (double)lat[n / 2] / 1e3, (double)lat[n * 99 / 100] / 1e3,
               (double)lat[n * 999 / 1000] / 1e3, (double)lat[n - 1] / 1e3, (long long)(c - b));
        printf("targets: p50 <= 1 us: %s; p99 <= 10 us: %s\n",
               lat[n / 2] <= 1000 ? "met" : "NOT met",
               lat[n * 99 / 100] <= 10000 ? "met" : "NOT met");
    }
    for (d = 0; d < NDATASETS; d++)
        pol_compiled_free(ds[d]);
    for (k = 0; k < 4; k++) {
        json_decref(gdocs[k]);
        free((void *)globals[k].name);
    }
    free(ds);
    free(lat);
    return 0;
}

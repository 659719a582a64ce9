/*
 * tests/fuzz/fuzz_filter.c: row filters, compiled against a fixed schema of five columns
 * (one of each type and a second string) and, when they compile, evaluated over a small
 * row group with nulls. A refusal must be SL_EINVALID or SL_ETOOLARGE with a message; a
 * filter X that compiles must agree with itself and with `not (X)`, `(X) and not (X)` and
 * `(X) or not (X)` as three-valued logic says: no row both TRUE and FALSE, FALSE exactly
 * where not X is TRUE, none kept by the conjunction, and the disjunction keeping exactly
 * the rows where X is known.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROWS 24

static const pol_column schema[] = {{"i", POL_INT64, NULL, 0},
                                    {"f", POL_FLOAT64, NULL, 0},
                                    {"b", POL_BOOL, NULL, 0},
                                    {"s", POL_STRING, NULL, 0},
                                    {"t", POL_STRING, NULL, 0}};

static const uint8_t nulls_i[ROWS] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                      0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
static const int64_t vals_i[ROWS] = {0,
                                     1,
                                     -1,
                                     INT64_MAX,
                                     INT64_MIN,
                                     0,
                                     9007199254740993LL,
                                     9007199254740992LL,
                                     42,
                                     -42,
                                     1000000,
                                     7,
                                     3,
                                     0,
                                     100,
                                     -9007199254740993LL,
                                     INT64_MAX - 1,
                                     INT64_MIN + 1,
                                     2,
                                     5,
                                     30,
                                     31,
                                     0,
                                     18};
static const uint8_t nulls_f[ROWS] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
                                      0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
static const double vals_f[ROWS] = {0.0,
                                    0.0,
                                    -0.0,
                                    0.5,
                                    1e300,
                                    -1e300,
                                    9007199254740992.0,
                                    9223372036854775808.0,
                                    -9223372036854775808.0,
                                    42.0,
                                    0.0,
                                    0.1,
                                    -2.5,
                                    4.9e-324,
                                    1.7976931348623157e308,
                                    3.0,
                                    100.0,
                                    7.25,
                                    -1.0,
                                    0.0,
                                    1e-5,
                                    31.0,
                                    18.0,
                                    2.0};
static const uint8_t nulls_b[ROWS] = {0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                                      0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
static const uint8_t vals_b[ROWS] = {1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1,
                                     0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 1};
static const uint8_t nulls_s[ROWS] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
static const char *const vals_s[ROWS] = {
    "EU",  "US",   "",   "",     "eu",   "EU ",  "\xc3\xa9", "\xf0\x9f\x98\x80",
    "a`b", "a\"b", "EU", "APAC", "x",    "",     "zz",       "",
    "\t",  "a\\b", "0",  "-1",   "true", "null", "EUR",      "E"};
static const uint8_t nulls_t[ROWS] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                                      1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const char *const vals_t[ROWS] = {
    "EU",  "EU",   "",   "x",    "",      "EU",   "\xc3\xa9", "\xf0\x9f\x98\x81",
    "a`b", "b",    "US", "APAC", "y",     "",     "z",        "q",
    "\t",  "a\\b", "1",  "-1",   "false", "null", "EU",       "EU"};

static uint32_t off_s[ROWS + 1], off_t_[ROWS + 1];
static char str_s[256], str_t[256];
static pol_colview views[5];

static void
strings(const char *const *vals, const uint8_t *nulls, uint32_t *off, char *str)
{
    uint32_t r, o = 0;

    for (r = 0; r < ROWS; r++) {
        size_t n = nulls[r] ? 0 : strlen(vals[r]);
        off[r] = o;
        memcpy(str + o, vals[r], n);
        o += (uint32_t)n;
    }
    off[ROWS] = o;
}

static void
setup(void)
{
    static int done;
    static uint8_t b[ROWS];
    static int64_t i[ROWS];
    static double f[ROWS];
    size_t r;

    if (done)
        return;
    done = 1;
    /* the values of null rows are zero, as the store holds them */
    for (r = 0; r < ROWS; r++) {
        i[r] = nulls_i[r] ? 0 : vals_i[r];
        f[r] = nulls_f[r] ? 0.0 : vals_f[r];
        b[r] = nulls_b[r] ? 0 : vals_b[r];
    }
    strings(vals_s, nulls_s, off_s, str_s);
    strings(vals_t, nulls_t, off_t_, str_t);
    views[0] = (pol_colview){.type = POL_INT64, .nulls = nulls_i, .i64 = i};
    views[1] = (pol_colview){.type = POL_FLOAT64, .nulls = nulls_f, .f64 = f};
    views[2] = (pol_colview){.type = POL_BOOL, .nulls = nulls_b, .b = b};
    views[3] = (pol_colview){.type = POL_STRING, .nulls = nulls_s, .off = off_s, .str = str_s};
    views[4] = (pol_colview){.type = POL_STRING, .nulls = nulls_t, .off = off_t_, .str = str_t};
}

/* Compiles and evaluates text; 1 with keep (TRUE) and no (FALSE) filled when it
 * compiles. */
static int
run(const char *text, size_t n, uint8_t keep[ROWS], uint8_t no[ROWS])
{
    pol_filter *f = NULL;
    uint32_t idx[8];
    size_t k, j;
    sl_err err;
    sl_code rc;

    memset(&err, 0, sizeof err);
    rc = pol_filter_compile(text, n, schema, 5, &f, &err);
    if (rc != SL_OK) {
        if ((rc != SL_EINVALID && rc != SL_ETOOLARGE && rc != SL_EINTERNAL) || f != NULL ||
            strncmp(err.msg, "row filter", 10) != 0)
            __builtin_trap();
        return 0;
    }
    k = pol_filter_columns(f, idx, sizeof idx / sizeof idx[0]);
    if (k == 0 || k > 5)
        __builtin_trap();
    for (j = 0; j < k; j++)
        if (idx[j] >= 5 || (j > 0 && idx[j] <= idx[j - 1]))
            __builtin_trap();
    if (pol_filter_eval(f, views, ROWS, keep) != SL_OK ||
        pol_filter_eval_false(f, views, ROWS, no) != SL_OK)
        __builtin_trap();
    for (j = 0; j < ROWS; j++)
        if (keep[j] > 1 || no[j] > 1 || (keep[j] && no[j]))
            __builtin_trap();
    pol_filter_free(f);
    return 1;
}

/* "(" X ") <op> not (" X ")" into buf; its length. */
static size_t
wrap(char *buf, const uint8_t *x, size_t n, const char *op)
{
    size_t m = 0, k = strlen(op);

    buf[m++] = '(';
    memcpy(buf + m, x, n);
    m += n;
    buf[m++] = ')';
    memcpy(buf + m, op, k);
    m += k;
    memcpy(buf + m, "not (", 5);
    m += 5;
    memcpy(buf + m, x, n);
    m += n;
    buf[m++] = ')';
    return m;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t keep[ROWS], no[ROWS], neg[ROWS], scratch[ROWS], both[ROWS], either[ROWS];
    char *buf;
    size_t r;
    int neg_ok;

    setup();
    if (!run((const char *)data, size, keep, no))
        return 0;
    buf = malloc(2 * size + 32);
    if (buf == NULL)
        return 0;
    /* a wrapped form may pass a limit X alone does not: then there is nothing to check */
    memcpy(buf, "not (", 5);
    memcpy(buf + 5, data, size);
    buf[5 + size] = ')';
    neg_ok = run(buf, size + 6, neg, scratch);
    if (neg_ok && (memcmp(neg, no, ROWS) != 0 || memcmp(scratch, keep, ROWS) != 0))
        __builtin_trap();
    if (run(buf, wrap(buf, data, size, " and "), both, scratch))
        for (r = 0; r < ROWS; r++)
            if (both[r])
                __builtin_trap();
    if (neg_ok && run(buf, wrap(buf, data, size, " or "), either, scratch))
        for (r = 0; r < ROWS; r++)
            if (either[r] != (keep[r] | neg[r]))
                __builtin_trap();
    free(buf);
    return 0;
}

/*
 * tests/fuzz/fuzz_table.c: what a features or training zone does with its input: frames
 * parsed strictly, column frames added to a table (a refused frame ends the stream, as it
 * ends the zone), the table finished, then features over every column (exact, restricted
 * and private) and each transform fitted and applied. Nothing may crash, leak, loop, or
 * answer anything but valid JSON; the table's codes must stay within its dictionary.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Design matrices bigger than this are not applied (one_hot of many categories). */
#define MAX_CELLS ((size_t)1 << 20)

static void
check_table(const cmp_table *t)
{
    size_t k, i;

    for (k = 0; k < t->ncol; k++) {
        const cmp_col *c = &t->col[k];

        if (c->n != t->nrows || c->ncat > CMP_MAX_CATEGORIES)
            abort();
        for (i = 0; c->is_string && i < c->n; i++)
            if (c->code[i] != CMP_NULL_CODE && c->code[i] >= c->ncat)
                abort();
    }
}

static void
features(const cmp_table *t, const char *const *names, int restricted, double epsilon)
{
    static double lo[CMP_MAX_COLUMNS], hi[CMP_MAX_COLUMNS];
    cmp_feat_spec s;
    json_t *out = NULL;
    char *text;
    sl_err err;
    size_t k;

    memset(&s, 0, sizeof s);
    for (k = 0; k < t->ncol; k++) {
        lo[k] = -10;
        hi[k] = 1000;
    }
    s.columns = names;
    s.ncolumns = t->ncol;
    s.min_cell = 2;
    s.restricted = restricted;
    s.epsilon = epsilon;
    s.lo = lo;
    s.hi = hi;
    memset(s.seed, 0x5a, sizeof s.seed);
    s.bins = 7;
    if (cmp_features_run(t, &s, &out, &err) != SL_OK) {
        if (err.code != SL_ETOOLARGE || out != NULL)
            abort();
        return;
    }
    if (out == NULL || json_object_size(out) != t->ncol)
        abort();
    text = json_dumps(out, 0); /* fails on a NaN or an infinity that slipped in */
    if (text == NULL)
        abort();
    free(text);
    json_decref(out);
}

static void
transforms(const cmp_table *t)
{
    uint8_t *train = malloc(t->nrows > 0 ? t->nrows : 1);
    size_t *rows = malloc((t->nrows > 0 ? t->nrows : 1) * sizeof *rows);
    size_t k, i, m, j;
    int tr;

    if (train == NULL || rows == NULL)
        goto out;
    for (i = 0; i < t->nrows; i++)
        train[i] = i % 3 != 2;
    for (k = 0; k < t->ncol; k++) {
        for (tr = CMP_T_IDENTITY; tr <= CMP_T_ONE_HOT; tr++) {
            cmp_feature f;
            sl_err err;
            json_t *j0, *j1;
            double *x;

            memset(&f, 0, sizeof f);
            f.col = &t->col[k];
            f.t = (cmp_transform)tr;
            if (cmp_transform_fit(&f, train, t->nrows, 2, &err) != SL_OK) {
                cmp_transform_free(&f);
                continue;
            }
            if (f.nout == 0)
                abort();
            for (m = 0, i = 0; i < t->nrows; i++)
                if (cmp_transform_complete(&f, i))
                    rows[m++] = i;
            if (m > 0 && (size_t)f.nout <= MAX_CELLS / m &&
                (x = malloc(m * f.nout * sizeof *x)) != NULL) {
                cmp_transform_apply(&f, rows, m, x, 0);
                for (i = 0; tr == CMP_T_ONE_HOT && i < m; i++) {
                    double sum = 0;
                    for (j = 0; j < f.nout; j++) {
                        if (x[j * m + i] != 0 && x[j * m + i] != 1)
                            abort();
                        sum += x[j * m + i];
                    }
                    if (sum > 1 || (sum == 0 && f.has_other))
                        abort();
                }
                for (i = 0; i < m * f.nout; i++)
                    if (isnan(x[i]))
                        abort();
                free(x);
            }
            j0 = cmp_transform_json(&f, 0);
            j1 = cmp_transform_json(&f, 1);
            if (j0 == NULL || j1 == NULL)
                abort();
            json_decref(j0);
            json_decref(j1);
            cmp_transform_free(&f);
        }
    }
out:
    free(train);
    free(rows);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[CMP_MAX_COLUMNS];
    cmp_table t;
    size_t at = 0, used, k;
    cmp_frame f;
    sl_err err;

    memset(&t, 0, sizeof t);
    while (at < size) {
        if (cmp_frame_parse(data + at, size - at, &f, &used) != SL_OK)
            break;
        if (used < CMP_FRAME_HEAD || used > size - at)
            abort();
        at += used;
        if (f.type == CMP_F_END)
            break;
        if (cmp_table_add(&t, &f, &err) != SL_OK)
            goto out; /* a refused frame ends the zone */
    }
    if (cmp_table_finish(&t, &err) != SL_OK)
        goto out;
    check_table(&t);
    for (k = 0; k < t.ncol; k++)
        names[k] = t.col[k].name;
    features(&t, names, 0, 0);
    features(&t, names, 1, 0);
    features(&t, names, 0, 1);
    transforms(&t);
out:
    cmp_table_free(&t);
    return 0;
}

/*
 * compute/cmp_transform.c: the transforms that turn a table's columns into a design
 * matrix. Parameters are fitted on the training rows only and applied to any row; the
 * one_hot categories with fewer than min_cell training rows fold into one `other` column.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_data.h"

#define NOMEM_MSG "the job's data does not fit the zone's memory"

static const char *const tname[] = {
    [CMP_T_IDENTITY] = "identity", [CMP_T_STANDARDIZE] = "standardize", [CMP_T_MINMAX] = "minmax",
    [CMP_T_LOG1P] = "log1p",       [CMP_T_ONE_HOT] = "one_hot",
};

/* A column name for a message: cut at a character boundary, so msg stays UTF-8. */
static const char *
shown(char out[72], const char *name)
{
    return sl_text_clean(out, name, strlen(name), 64);
}

static int
in_train(const uint8_t *train, size_t i)
{
    return train == NULL || train[i] != 0;
}

/* A distinct training value of a numeric column: its value, first row and rows. */
typedef struct {
    double v;
    size_t first;
    size_t rows;
} level;

static int
by_value_then_row(const void *a, const void *b)
{
    const level *x = a, *y = b;

    if (x->v < y->v)
        return -1;
    if (x->v > y->v)
        return 1;
    return (x->first > y->first) - (x->first < y->first);
}

static int
by_first_row(const void *a, const void *b)
{
    const level *x = a, *y = b;

    return (x->first > y->first) - (x->first < y->first);
}

/*
 * one_hot on a numeric column. levels holds 3 * nlevels doubles: the kept values in order
 * of first appearance (what the header promises), then the same values sorted and, beside
 * them, each one's output index, so that cmp_transform_apply finds a value by bisection
 * without allocating.
 */
static sl_code
fit_numeric_levels(cmp_feature *f, const uint8_t *train, size_t n, uint32_t thr, sl_err *err)
{
    const cmp_col *c = f->col;
    level *lv = NULL;
    size_t m = 0, d = 0, i, kept = 0, folded = 0;
    char nm[72];
    sl_code rc = SL_ETOOLARGE;

    for (i = 0; i < n; i++)
        m += in_train(train, i) && !isnan(c->v[i]);
    if ((lv = malloc((m > 0 ? m : 1) * sizeof *lv)) == NULL) {
        sl_err_set(err, rc, NOMEM_MSG);
        goto out;
    }
    for (i = 0; i < n; i++)
        if (in_train(train, i) && !isnan(c->v[i]))
            lv[d++] = (level){c->v[i], i, 1};
    qsort(lv, m, sizeof *lv, by_value_then_row);
    /* one entry per distinct value, at its first row (-0 and 0 are one value) */
    for (d = 0, i = 0; i < m; i++) {
        if (d > 0 && lv[d - 1].v == lv[i].v) {
            lv[d - 1].rows++;
            continue;
        }
        if (d == CMP_MAX_CATEGORIES) {
            rc = sl_err_set(err, SL_EINVALID, "too many categories in column \"%s\"",
                            shown(nm, c->name));
            goto out;
        }
        lv[d++] = lv[i];
    }
    qsort(lv, d, sizeof *lv, by_first_row);
    for (i = 0; i < d; i++) {
        if (lv[i].rows >= thr)
            kept++;
        else
            folded++;
    }
    if (kept + folded == 0) {
        rc = sl_err_set(err, SL_EINVALID, "column \"%s\" has no training values",
                        shown(nm, c->name));
        goto out;
    }
    if ((f->levels = malloc((kept > 0 ? 3 * kept : 1) * sizeof *f->levels)) == NULL) {
        sl_err_set(err, rc, NOMEM_MSG);
        goto out;
    }
    f->nlevels = (uint32_t)kept;
    f->has_other = folded > 0;
    f->nout = f->nlevels + (uint32_t)f->has_other;
    for (kept = 0, i = 0; i < d; i++)
        if (lv[i].rows >= thr) {
            f->levels[kept] = lv[i].v;
            lv[kept] = (level){lv[i].v, kept, 0}; /* first: the output index */
            kept++;
        }
    qsort(lv, kept, sizeof *lv, by_value_then_row);
    for (i = 0; i < kept; i++) {
        f->levels[kept + i] = lv[i].v;
        f->levels[2 * kept + i] = (double)lv[i].first;
    }
    rc = SL_OK;
out:
    free(lv);
    return rc;
}

/* one_hot on a string column: keep[code] for every code of the dictionary. */
static sl_code
fit_string_levels(cmp_feature *f, const uint8_t *train, size_t n, uint32_t thr, sl_err *err)
{
    const cmp_col *c = f->col;
    size_t *rows = NULL, i;
    uint32_t k, kept = 0;
    char nm[72];
    sl_code rc = SL_ETOOLARGE;

    if (c->overflow)
        return sl_err_set(err, SL_EINVALID, "too many categories in column \"%s\"",
                          shown(nm, c->name));
    if ((rows = calloc(c->ncat > 0 ? c->ncat : 1, sizeof *rows)) == NULL ||
        (f->keep = malloc((c->ncat > 0 ? c->ncat : 1) * sizeof *f->keep)) == NULL) {
        sl_err_set(err, rc, NOMEM_MSG);
        goto out;
    }
    for (i = 0; i < n; i++)
        if (in_train(train, i) && c->code[i] != CMP_NULL_CODE)
            rows[c->code[i]]++;
    for (k = 0; k < c->ncat; k++) {
        if (rows[k] >= thr)
            f->keep[k] = kept++;
        else if (rows[k] > 0)
            f->has_other = 1;
    }
    if (kept == 0 && !f->has_other) {
        rc = sl_err_set(err, SL_EINVALID, "column \"%s\" has no training values",
                        shown(nm, c->name));
        goto out;
    }
    f->nout = kept + (uint32_t)f->has_other;
    /* folded categories go to `other`; one never seen in training too when there is an
     * `other`, and to no column (all zeros) when there is none */
    for (k = 0; k < c->ncat; k++)
        if (rows[k] < thr)
            f->keep[k] = f->has_other ? kept : UINT32_MAX;
    rc = SL_OK;
out:
    free(rows);
    return rc;
}

sl_code
cmp_transform_fit(cmp_feature *f, const uint8_t *train, size_t n, uint32_t min_cell, sl_err *err)
{
    const cmp_col *c = f->col;
    double mean = 0, m2 = 0, lo = INFINITY, hi = -INFINITY;
    uint32_t thr = min_cell > 0 ? min_cell : 1;
    size_t i, count = 0;
    char nm[72];
    sl_code rc;

    if (c == NULL || n != c->n || f->t < CMP_T_IDENTITY || f->t > CMP_T_ONE_HOT)
        sl_panic("cmp_transform_fit: a feature without its column, rows or transform");
    f->a = f->b = 0;
    f->nout = 0;
    f->keep = NULL;
    f->levels = NULL;
    f->nlevels = 0;
    f->has_other = 0;
    if (c->is_string && f->t != CMP_T_ONE_HOT)
        return sl_err_set(err, SL_EINVALID, "%s needs a numeric column, \"%s\" holds strings",
                          tname[f->t], shown(nm, c->name));
    if (f->t == CMP_T_ONE_HOT) {
        rc = c->is_string ? fit_string_levels(f, train, n, thr, err)
                          : fit_numeric_levels(f, train, n, thr, err);
        if (rc != SL_OK)
            cmp_transform_free(f);
        return rc;
    }
    f->nout = 1;
    if (f->t == CMP_T_LOG1P) {
        for (i = 0; i < n; i++) /* every row it will be applied to, not only training ones */
            if (c->v[i] <= -1)
                return sl_err_set(err, SL_EINVALID, "log1p of a value <= -1 in column \"%s\"",
                                  shown(nm, c->name));
        return SL_OK;
    }
    if (f->t == CMP_T_IDENTITY)
        return SL_OK;
    for (i = 0; i < n; i++) {
        double v = c->v[i], d;

        if (!in_train(train, i) || isnan(v))
            continue;
        count++;
        d = v - mean; /* Welford: no sum to overflow */
        mean += d / (double)count;
        m2 += d * (v - mean);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (count == 0)
        return sl_err_set(err, SL_EINVALID, "column \"%s\" has no training values",
                          shown(nm, c->name));
    if (f->t == CMP_T_STANDARDIZE) {
        f->a = mean;
        f->b = sqrt(m2 / (double)count);
        if (f->b == 0)
            f->b = 1;
    } else {
        f->a = lo;
        f->b = hi;
    }
    if (!isfinite(f->a) || !isfinite(f->b) || !isfinite(hi - lo))
        return sl_err_set(err, SL_EINVALID, "the values of column \"%s\" are too large to %s",
                          shown(nm, c->name), tname[f->t]);
    return SL_OK;
}

int
cmp_transform_complete(const cmp_feature *f, size_t i)
{
    const cmp_col *c = f->col;

    if (i >= c->n)
        sl_panic("cmp_transform_complete: row %zu of %zu", i, c->n);
    return c->is_string ? c->code[i] != CMP_NULL_CODE : !isnan(c->v[i]);
}

/* The output index of numeric value v: bisection in the sorted copy; UINT32_MAX for
 * none. */
static uint32_t
level_index(const cmp_feature *f, double v)
{
    const double *sorted = f->levels + f->nlevels, *index = f->levels + 2 * (size_t)f->nlevels;
    size_t lo = 0, hi = f->nlevels;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < f->nlevels && sorted[lo] == v)
        return (uint32_t)index[lo];
    return f->has_other ? f->nlevels : UINT32_MAX;
}

void
cmp_transform_apply(const cmp_feature *f, const size_t *rows, size_t m, double *x, size_t col0)
{
    const cmp_col *c = f->col;
    double *out = x + col0 * m;
    size_t r, j;

    for (r = 0; r < m; r++) {
        size_t i = rows[r];
        double v;
        uint32_t k;

        if (!cmp_transform_complete(f, i)) {
            for (j = 0; j < f->nout; j++)
                out[j * m + r] = NAN;
            continue;
        }
        switch (f->t) {
        case CMP_T_IDENTITY:
            out[r] = c->v[i];
            break;
        case CMP_T_STANDARDIZE:
            out[r] = (c->v[i] - f->a) / f->b;
            break;
        case CMP_T_MINMAX:
            out[r] = f->b == f->a ? 0 : (c->v[i] - f->a) / (f->b - f->a);
            break;
        case CMP_T_LOG1P:
            out[r] = log1p(c->v[i]);
            break;
        case CMP_T_ONE_HOT:
            for (j = 0; j < f->nout; j++)
                out[j * m + r] = 0;
            if (c->is_string) {
                k = f->keep[c->code[i]];
            } else {
                v = c->v[i];
                k = level_index(f, v);
            }
            if (k != UINT32_MAX)
                out[(size_t)k * m + r] = 1;
            break;
        default:
            sl_panic("cmp_transform_apply: transform %d", (int)f->t);
        }
    }
}

/* A double for JSON: null for what JSON cannot say. */
static json_t *
jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* Sets o[k] = v (taking v); -1 when v is NULL or the set fails. */
static int
put(json_t *o, const char *k, json_t *v)
{
    return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

json_t *
cmp_transform_json(const cmp_feature *f, int withhold)
{
    const cmp_col *c = f->col;
    json_t *o = json_object(), *cats;
    uint32_t k;
    int bad = o == NULL;

    if (bad)
        return NULL;
    bad |= put(o, "column", json_string(c->name));
    bad |= put(o, "transform", json_string(tname[f->t]));
    /* withheld: the numbers that can be one row's value; one_hot's categories each have at
     * least min_cell training rows and stay */
    if (f->t == CMP_T_STANDARDIZE && !withhold) {
        bad |= put(o, "mean", jreal(f->a));
        bad |= put(o, "std", jreal(f->b));
    } else if (f->t == CMP_T_MINMAX && !withhold) {
        bad |= put(o, "min", jreal(f->a));
        bad |= put(o, "max", jreal(f->b));
    } else if (f->t == CMP_T_ONE_HOT) {
        bad |= put(o, "categories", cats = json_array());
        for (k = 0; !bad && c->is_string && k < c->ncat; k++)
            if (f->keep[k] < f->nout - (uint32_t)f->has_other)
                bad |= cats == NULL || json_array_append_new(cats, json_string(c->cat[k])) != 0;
        for (k = 0; !bad && !c->is_string && k < f->nlevels; k++)
            bad |= cats == NULL || json_array_append_new(cats, jreal(f->levels[k])) != 0;
        bad |= put(o, "other", json_boolean(f->has_other));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void
cmp_transform_free(cmp_feature *f)
{
    if (f == NULL)
        return;
    free(f->keep);
    free(f->levels);
    f->keep = NULL;
    f->levels = NULL;
    f->nlevels = 0;
    f->nout = 0;
    f->has_other = 0;
}

/*
 * compute/cmp_job.c: a job inside the zone. From the gateway's spec and the table of
 * rows the policy let through, either a model (the design matrix built by the
 * transforms, a validation split by seed, a fit, metrics on held-out rows) or aggregate
 * statistics; and the release rules the zone can check itself: enough rows, numbers at
 * most the training rows / 10, k-means clusters of at least min_cell rows, transform
 * statistics withheld on restricted datasets. A refusal names the rule, never a value or
 * a row count.
 */
#include "cmp_job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmp_model.h"

static json_t *
jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *
jarr(const double *v, size_t n)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < n; i++)
        json_array_append_new(a, jnum(v[i]));
    return a;
}

static sl_code
refuse(char rule[CMP_RULE_MAX], const char *which)
{
    snprintf(rule, CMP_RULE_MAX, "%s", which);
    return SL_EDENIED;
}

/* splitmix64: the split's shuffle (deterministic by seed, no system call). */
static uint64_t
mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A transform's name; 0 for anything else. */
static cmp_transform
transform_parse(const char *s)
{
    if (s == NULL)
        return 0;
    if (strcmp(s, "identity") == 0)
        return CMP_T_IDENTITY;
    if (strcmp(s, "standardize") == 0)
        return CMP_T_STANDARDIZE;
    if (strcmp(s, "minmax") == 0)
        return CMP_T_MINMAX;
    if (strcmp(s, "log1p") == 0)
        return CMP_T_LOG1P;
    if (strcmp(s, "one_hot") == 0)
        return CMP_T_ONE_HOT;
    return 0;
}

/* The design columns' names: a feature's column, or one_hot's "column=value" (and
 * "column=other"). */
static void
design_names(const cmp_feature *f, json_t *out)
{
    uint32_t i, c;
    char buf[CMP_NAME_MAX + 64];

    if (f->t != CMP_T_ONE_HOT) {
        json_array_append_new(out, json_string(f->col->name));
        return;
    }
    for (i = 0; i < f->nout - (f->has_other ? 1u : 0u); i++) {
        json_t *s = NULL;
        if (f->col->is_string) {
            for (c = 0; c < f->col->ncat; c++)
                if (f->keep[c] == i) {
                    snprintf(buf, sizeof buf, "%s=", f->col->name);
                    s = json_pack("s++", buf, f->col->cat[c], "");
                    break;
                }
        } else if (i < f->nlevels) {
            snprintf(buf, sizeof buf, "%s=%.17g", f->col->name, f->levels[i]);
            s = json_string(buf);
        }
        json_array_append_new(out, s ? s : json_string("?"));
    }
    if (f->has_other) {
        snprintf(buf, sizeof buf, "%s=other", f->col->name);
        json_array_append_new(out, json_string(buf));
    }
}

typedef struct {
    cmp_feature *f;
    size_t nf;
    size_t *train, *valid; /* row indexes */
    size_t ntrain, nvalid;
    double *x, *xv, *y, *yv;
} design;

static void
design_free(design *d)
{
    size_t i;

    for (i = 0; i < d->nf; i++)
        cmp_transform_free(&d->f[i]);
    free(d->f);
    free(d->train);
    free(d->valid);
    free(d->x);
    free(d->xv);
    free(d->y);
    free(d->yv);
    memset(d, 0, sizeof *d);
}

static double *
alloc_matrix(size_t n, size_t p)
{
    if (p != 0 && n > SIZE_MAX / sizeof(double) / p)
        return NULL;
    return malloc((n * p > 0 ? n * p : 1) * sizeof(double));
}

/* The spec's numbers within what the gateway sends: anything else is refused (the zone
 * treats its input as hostile, the spec included). */
static int
in_range(const json_t *o, const char *key, double lo, double hi, int integer)
{
    const json_t *v = json_object_get(o, key);

    if (v == NULL || !json_is_number(v) || (integer && !json_is_integer(v)))
        return 0;
    return json_number_value(v) >= lo && json_number_value(v) <= hi;
}

static sl_code
spec_check(const json_t *spec, int train, sl_err *err)
{
    const json_t *m = json_object_get(spec, "model"), *val = json_object_get(spec, "validation");
    const json_t *priv = json_object_get(spec, "privacy");
    int ok = in_range(spec, "min_rows", 0, 1e9, 1) && in_range(spec, "min_cell", 1, 1e6, 1);

    if (train)
        ok = ok && in_range(val, "fraction", 0, 0.9, 0) && in_range(val, "seed", 0, 1e18, 1) &&
             in_range(m, "l2", 0, 1e6, 0) && in_range(m, "max_iter", 1, 10000, 1) &&
             in_range(m, "tol", 1e-300, 1, 0) && in_range(m, "seed", 0, 1e18, 1) &&
             (json_object_get(m, "k") == NULL || in_range(m, "k", 1, 1024, 1)) &&
             (json_object_get(m, "components") == NULL || in_range(m, "components", 1, 4096, 1));
    else
        ok = ok && in_range(spec, "bins", 1, 100, 1) &&
             (priv == NULL || in_range(priv, "epsilon", 1e-300, 10, 0));
    return ok ? SL_OK : sl_err_set(err, SL_EINVALID, "the job's spec is malformed");
}

static sl_code
run_train(const json_t *spec, const cmp_table *t, cmp_progress_fn progress, void *pctx,
          json_t **out, char rule[CMP_RULE_MAX], sl_err *err)
{
    const json_t *feats = json_object_get(spec, "features"), *m = json_object_get(spec, "model");
    const json_t *val = json_object_get(spec, "validation");
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *label = json_string_value(json_object_get(spec, "label"));
    size_t min_rows = (size_t)json_integer_value(json_object_get(spec, "min_rows"));
    uint32_t min_cell = (uint32_t)json_integer_value(json_object_get(spec, "min_cell"));
    int restricted = json_is_true(json_object_get(spec, "restricted"));
    const cmp_col *ycol = NULL;
    cmp_model_params mp;
    struct timespec t0, t1;
    cmp_model model;
    cmp_metrics met;
    design d;
    uint8_t *mask = NULL;
    size_t i, r, m_rows = 0, p = 0, *rows = NULL;
    uint64_t seed;
    json_t *mj = NULL, *names = NULL, *tj = NULL, *metrics = NULL;
    sl_code rc = SL_OK;

    memset(&d, 0, sizeof d);
    memset(&model, 0, sizeof model);
    memset(&mp, 0, sizeof mp);
    if (type == NULL || !json_is_array(feats) || json_array_size(feats) == 0 ||
        json_array_size(feats) > CMP_MAX_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "the job's spec is not a train job's");
    if ((rc = spec_check(spec, 1, err)) != SL_OK)
        return rc;
    if (strcmp(type, "linear_regression") != 0 && strcmp(type, "logistic_regression") != 0 &&
        strcmp(type, "kmeans") != 0 && strcmp(type, "pca") != 0)
        return sl_err_set(err, SL_EINVALID, "the job's model type is unknown");
    if (t->nrows < min_rows)
        return refuse(rule, "min_rows");
    d.nf = json_array_size(feats);
    d.f = calloc(d.nf, sizeof *d.f);
    if (d.f == NULL)
        return sl_err_set(err, SL_ENOMEM, "out of memory");
    for (i = 0; i < d.nf; i++) {
        const json_t *f = json_array_get(feats, i);
        const char *name = json_string_value(json_object_get(f, "column"));
        d.f[i].col = name ? cmp_table_find(t, name) : NULL;
        if (d.f[i].col == NULL) {
            rc = sl_err_set(err, SL_EINVALID, "feature column \"%s\" was not sent",
                            name ? name : "?");
            goto out;
        }
        d.f[i].t = transform_parse(json_string_value(json_object_get(f, "transform")));
        if (d.f[i].t == 0) {
            rc = sl_err_set(err, SL_EINVALID, "feature column \"%s\": no such transform", name);
            goto out;
        }
        if (d.f[i].col->is_string && d.f[i].t != CMP_T_ONE_HOT) {
            rc = sl_err_set(err, SL_EINVALID, "column \"%s\" is text: only one_hot applies",
                            d.f[i].col->name);
            goto out;
        }
    }
    if (label != NULL) {
        ycol = cmp_table_find(t, label);
        if (ycol == NULL || ycol->is_string) {
            rc = sl_err_set(err, SL_EINVALID, "the label must be a numeric column that was sent");
            goto out;
        }
    }
    /* complete rows: no null in a feature or the label */
    rows = malloc((t->nrows + 1) * sizeof *rows);
    mask = calloc(t->nrows + 1, 1);
    if (rows == NULL || mask == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out;
    }
    for (r = 0; r < t->nrows; r++) {
        int ok = ycol == NULL || !isnan(ycol->v[r]);
        for (i = 0; ok && i < d.nf; i++)
            ok = cmp_transform_complete(&d.f[i], r);
        if (ok)
            rows[m_rows++] = r;
    }
    /* the split: exactly `fraction` of the complete rows held out, chosen by seed in one
     * pass in row order (selection sampling, Knuth's algorithm S) */
    seed = (uint64_t)json_integer_value(json_object_get(val, "seed")) ^ 0x5a17ce5eedull;
    d.nvalid = (size_t)floor(json_number_value(json_object_get(val, "fraction")) * (double)m_rows);
    d.ntrain = m_rows - d.nvalid;
    /* metrics over a few held-out rows would be those rows' values: the validation split,
     * when there is one, needs as many rows as the training split does */
    if (d.ntrain < min_rows || (d.nvalid > 0 && d.nvalid < min_rows)) {
        rc = refuse(rule, "min_rows");
        goto out;
    }
    d.valid = malloc((d.nvalid + 1) * sizeof *d.valid);
    d.train = malloc((d.ntrain + 1) * sizeof *d.train);
    if (d.valid == NULL || d.train == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out;
    }
    {
        size_t need = d.nvalid, nv = 0, nt = 0;
        for (i = 0; i < m_rows; i++) {
            if (need > 0 && mix(&seed) % (m_rows - i) < need) {
                d.valid[nv++] = rows[i];
                need--;
            } else {
                d.train[nt++] = rows[i];
            }
        }
    }
    for (i = 0; i < d.ntrain; i++)
        mask[d.train[i]] = 1;
    /* transforms fitted on the training rows only */
    for (i = 0; i < d.nf; i++) {
        if ((rc = cmp_transform_fit(&d.f[i], mask, t->nrows, min_cell, err)) != SL_OK)
            goto out;
        p += d.f[i].nout;
    }
    /* the model's size, before any work: refused when it could not be released */
    {
        size_t k = (size_t)json_integer_value(json_object_get(m, "k"));
        size_t comp = (size_t)json_integer_value(json_object_get(m, "components"));
        size_t need = strcmp(type, "kmeans") == 0 ? k * p
                      : strcmp(type, "pca") == 0  ? comp * p + p + comp
                                                  : p + 1;
        if (p == 0 || need > d.ntrain / 10) {
            rc = refuse(rule, "max_parameters");
            goto out;
        }
        if (strcmp(type, "pca") == 0 && comp > p) {
            rc = sl_err_set(err, SL_EINVALID, "pca: more components than design columns (%zu)", p);
            goto out;
        }
    }
    d.x = alloc_matrix(d.ntrain, p);
    d.xv = alloc_matrix(d.nvalid, p);
    d.y = alloc_matrix(d.ntrain, 1);
    d.yv = alloc_matrix(d.nvalid, 1);
    if (d.x == NULL || d.xv == NULL || d.y == NULL || d.yv == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for the design matrix");
        goto out;
    }
    {
        size_t col = 0;
        for (i = 0; i < d.nf; i++) {
            cmp_transform_apply(&d.f[i], d.train, d.ntrain, d.x, col);
            cmp_transform_apply(&d.f[i], d.valid, d.nvalid, d.xv, col);
            col += d.f[i].nout;
        }
    }
    for (i = 0; ycol != NULL && i < d.ntrain; i++)
        d.y[i] = ycol->v[d.train[i]];
    for (i = 0; ycol != NULL && i < d.nvalid; i++)
        d.yv[i] = ycol->v[d.valid[i]];
    /* the fit */
    mp.type = strcmp(type, "linear_regression") == 0     ? CMP_LINEAR
              : strcmp(type, "logistic_regression") == 0 ? CMP_LOGISTIC
              : strcmp(type, "kmeans") == 0              ? CMP_KMEANS
                                                         : CMP_PCA;
    mp.l2 = json_number_value(json_object_get(m, "l2"));
    mp.max_iter = (int)json_integer_value(json_object_get(m, "max_iter"));
    mp.tol = json_number_value(json_object_get(m, "tol"));
    mp.k = (int)json_integer_value(json_object_get(m, "k"));
    mp.components = (int)json_integer_value(json_object_get(m, "components"));
    mp.seed = (uint64_t)json_integer_value(json_object_get(m, "seed"));
    mp.progress = progress;
    mp.progress_ctx = pctx;
    if (mp.type == CMP_LOGISTIC)
        for (i = 0; i < d.ntrain + d.nvalid; i++) {
            double yy = i < d.ntrain ? d.y[i] : d.yv[i - d.ntrain];
            if (yy != 0 && yy != 1) {
                rc = sl_err_set(err, SL_EINVALID,
                                "logistic_regression: the label \"%s\" must be 0 or 1", label);
                goto out;
            }
        }
    if (mp.type == CMP_KMEANS && (size_t)mp.k > d.ntrain) {
        rc = refuse(rule, "min_rows");
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = cmp_model_fit(&mp, d.x, d.ntrain, p, ycol ? d.y : NULL, &model, err)) != SL_OK)
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* k-means: a centre of fewer than min_cell rows would be close to one row's values */
    if (mp.type == CMP_KMEANS) {
        size_t *cnt = calloc((size_t)model.k, sizeof *cnt);
        int c, best, small = 0;
        if (cnt == NULL) {
            rc = sl_err_set(err, SL_ENOMEM, "out of memory");
            goto out;
        }
        for (r = 0; r < d.ntrain; r++) {
            double bd = INFINITY;
            for (best = 0, c = 0; c < model.k; c++) {
                double s = 0;
                size_t j;
                for (j = 0; j < p; j++) {
                    double df = d.x[j * d.ntrain + r] - model.centroids[(size_t)c * p + j];
                    s += df * df;
                }
                if (s < bd) {
                    bd = s;
                    best = c;
                }
            }
            cnt[best]++;
        }
        for (c = 0; c < model.k; c++)
            small |= cnt[c] < min_cell;
        free(cnt);
        if (small) {
            rc = refuse(rule, "min_cell");
            goto out;
        }
    }
    if (d.nvalid > 0)
        rc = cmp_model_eval(&model, d.xv, d.nvalid, p, ycol ? d.yv : NULL, &met, err);
    else
        rc = cmp_model_eval(&model, d.x, d.ntrain, p, ycol ? d.y : NULL, &met, err);
    if (rc != SL_OK)
        goto out;
    /* what leaves */
    names = json_array();
    for (i = 0; i < d.nf; i++)
        design_names(&d.f[i], names);
    tj = json_array();
    for (i = 0; i < d.nf; i++)
        json_array_append_new(tj, cmp_transform_json(&d.f[i], restricted));
    mj = json_pack("{s:s, s:o, s:o}", "type", type, "features", names, "transforms", tj);
    names = tj = NULL;
    switch (mp.type) {
    case CMP_LINEAR:
    case CMP_LOGISTIC:
        json_object_set_new(mj, "coefficients", jarr(model.coef, p));
        json_object_set_new(mj, "intercept", jnum(model.intercept));
        break;
    case CMP_KMEANS: {
        json_t *cs = json_array();
        int c;
        for (c = 0; c < model.k; c++)
            json_array_append_new(cs, jarr(model.centroids + (size_t)c * p, p));
        json_object_set_new(mj, "centroids", cs);
        break;
    }
    case CMP_PCA: {
        json_t *cs = json_array();
        int c;
        for (c = 0; c < model.ncomp; c++)
            json_array_append_new(cs, jarr(model.components + (size_t)c * p, p));
        json_object_set_new(mj, "components", cs);
        json_object_set_new(mj, "mean", jarr(model.mean, p));
        json_object_set_new(mj, "explained_variance",
                            jarr(model.explained_variance, (size_t)model.ncomp));
        break;
    }
    }
    if (cmp_json_numbers(mj) > d.ntrain / 10) {
        rc = refuse(rule, "max_parameters");
        goto out;
    }
    metrics = json_object();
    json_object_set_new(metrics, "evaluated_on",
                        json_string(d.nvalid > 0 ? "validation" : "training"));
    if (mp.type == CMP_LOGISTIC || mp.type == CMP_KMEANS)
        json_object_set_new(metrics, "iterations", json_integer(model.iterations));
    if (mp.type == CMP_LOGISTIC)
        json_object_set_new(metrics, "gradient_norm", jnum(model.grad_norm));
    /* the fit alone, for comparison with the job's whole time */
    json_object_set_new(
        metrics, "fit_seconds",
        json_real((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
#define METRIC(name, v) \
    if (isfinite(v))    \
    json_object_set_new(metrics, name, json_real(v))
    METRIC("r2", met.r2);
    METRIC("rmse", met.rmse);
    METRIC("accuracy", met.accuracy);
    METRIC("log_loss", met.log_loss);
    METRIC("roc_auc", met.roc_auc);
    METRIC("inertia", met.inertia);
    METRIC("explained_variance", met.explained_variance);
#undef METRIC
    *out = json_pack("{s:o, s:o, s:{s:I, s:I}}", "model", mj, "metrics", metrics, "rows", "train",
                     (json_int_t)d.ntrain, "validation", (json_int_t)d.nvalid);
    mj = metrics = NULL;
out:
    json_decref(names);
    json_decref(tj);
    json_decref(mj);
    json_decref(metrics);
    cmp_model_free(&model);
    design_free(&d);
    free(rows);
    free(mask);
    return rc;
}

static sl_code
run_features(const json_t *spec, const cmp_table *t, json_t **out, char rule[CMP_RULE_MAX],
             sl_err *err)
{
    const json_t *cols = json_object_get(spec, "columns"), *priv = json_object_get(spec, "privacy");
    const json_t *bounds = json_object_get(priv, "bounds");
    size_t n = json_array_size(cols), i;
    const char **names = NULL;
    double *lo = NULL, *hi = NULL;
    cmp_feat_spec fs;
    json_t *stats = NULL;
    sl_code rc;

    memset(&fs, 0, sizeof fs);
    if (n == 0 || n > CMP_MAX_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "the job's spec is not a features job's");
    if ((rc = spec_check(spec, 0, err)) != SL_OK)
        return rc;
    if (t->nrows < (size_t)json_integer_value(json_object_get(spec, "min_rows")))
        return refuse(rule, "min_rows");
    names = calloc(n, sizeof *names);
    lo = calloc(n, sizeof *lo);
    hi = calloc(n, sizeof *hi);
    if (names == NULL || lo == NULL || hi == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        const json_t *b;
        names[i] = json_string_value(json_array_get(cols, i));
        if (names[i] == NULL || cmp_table_find(t, names[i]) == NULL) {
            rc = sl_err_set(err, SL_EINVALID, "a column of the job was not sent");
            goto out;
        }
        b = json_object_get(bounds, names[i]);
        lo[i] = b ? json_number_value(json_array_get(b, 0)) : NAN;
        hi[i] = b ? json_number_value(json_array_get(b, 1)) : NAN;
    }
    fs.columns = names;
    fs.ncolumns = n;
    fs.min_cell = (uint32_t)json_integer_value(json_object_get(spec, "min_cell"));
    fs.restricted = json_is_true(json_object_get(spec, "restricted"));
    fs.epsilon = priv ? json_number_value(json_object_get(priv, "epsilon")) : 0;
    fs.lo = priv ? lo : NULL;
    fs.hi = priv ? hi : NULL;
    fs.bins = (int)json_integer_value(json_object_get(spec, "bins"));
    if (fs.bins <= 0)
        fs.bins = 10;
    {
        const char *hex = json_string_value(json_object_get(spec, "noise_seed"));
        size_t k;
        if (hex == NULL || strlen(hex) != 64) {
            rc = sl_err_set(err, SL_EINVALID, "the job's spec has no noise seed");
            goto out;
        }
        for (k = 0; k < 32; k++) {
            unsigned hv = 0;
            int j;
            for (j = 0; j < 2; j++) {
                char c = hex[2 * k + (size_t)j];
                hv = hv * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c - '0');
            }
            fs.seed[k] = (unsigned char)hv;
        }
    }
    if ((rc = cmp_features_run(t, &fs, &stats, err)) != SL_OK)
        goto out;
    *out = json_pack("{s:o, s:I}", "stats", stats, "rows", (json_int_t)t->nrows);
out:
    free(names);
    free(lo);
    free(hi);
    return rc;
}

sl_code
cmp_job_run(const json_t *spec, const cmp_table *t, cmp_progress_fn progress, void *pctx,
            json_t **out, char rule[CMP_RULE_MAX], sl_err *err)
{
    const char *kind = json_string_value(json_object_get(spec, "kind"));

    *out = NULL;
    rule[0] = '\0';
    if (kind != NULL && strcmp(kind, "train") == 0)
        return run_train(spec, t, progress, pctx, out, rule, err);
    if (kind != NULL && strcmp(kind, "features") == 0)
        return run_features(spec, t, out, rule, err);
    return sl_err_set(err, SL_EINVALID, "the job's kind is unknown");
}

/*
 * compute/cmp_features.c: a features job's aggregates per column, exact (numpy's
 * conventions for quantiles and histograms) with small cells suppressed, or with
 * epsilon-differential privacy: Laplace noise from a ChaCha20 stream the gateway's seed
 * determines, everything released derived from noisy counts and sums of clamped values.
 */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_data.h"

#define NOMEM_MSG    "the job's data does not fit the zone's memory"
#define DEFAULT_BINS 10
#define MAX_BINS     1000 /* a histogram is for reading, and each bin is noised and released */
/* Bounds past this would make the sum of squares' sensitivity overflow. */
#define MAX_BOUND 1e150

static const double quantile_at[5] = {0.05, 0.25, 0.5, 0.75, 0.95};
static const char *const quantile_key[5] = {"0.05", "0.25", "0.5", "0.75", "0.95"};

/* A column name for a message: cut at a character boundary, so msg stays UTF-8. */
static const char *
shown(char out[72], const char *name)
{
    return sl_text_clean(out, name, strlen(name), 64);
}

/* ---- JSON ---- */

static json_t *
jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *
jcount(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* Sets o[k] = v (taking v); -1 when v is NULL or the set fails. */
static int
put(json_t *o, const char *k, json_t *v)
{
    return v == NULL || json_object_set_new(o, k, v) != 0 ? -1 : 0;
}

static int
push(json_t *a, json_t *v)
{
    return a == NULL || v == NULL || json_array_append_new(a, v) != 0 ? -1 : 0;
}

/* ---- the noise ---- */

/* Eight-byte words of one column's ChaCha20 stream, drawn in a fixed order. */
typedef struct {
    unsigned char *buf;
    size_t n, at; /* words */
} stream;

static int
stream_open(stream *s, const unsigned char seed[randombytes_SEEDBYTES], size_t words)
{
    s->n = words;
    s->at = 0;
    if ((s->buf = malloc(words * 8)) == NULL)
        return -1;
    randombytes_buf_deterministic(s->buf, words * 8, seed);
    return 0;
}

static void
stream_close(stream *s)
{
    if (s->buf != NULL)
        sodium_memzero(s->buf, s->n * 8);
    free(s->buf);
    s->buf = NULL;
}

/*
 * Laplace(0, scale) by inversion: a sign bit, and an exponential -log(u) from the other
 * 53 bits as u = (k + 1) / 2^53 in (0, 1]: never log(0), every u exactly representable,
 * u = 1 (a zero draw) is a point of the support. |noise| <= 36.8 scale.
 */
static double
laplace(stream *s, double scale)
{
    uint64_t w;
    double u, e;

    if (s->at == s->n)
        sl_panic("laplace: the noise stream is shorter than its draws");
    memcpy(&w, s->buf + 8 * s->at++, 8);
    u = (double)((w >> 11) + 1) * 0x1p-53;
    e = -log(u) * scale;
    return (w & 1) ? -e : e;
}

/* A noisy count as released: rounded, at least 0, an integer JSON can hold exactly. */
static uint64_t
released(double v)
{
    if (!(v > 0))
        return 0;
    if (v >= 0x1p53)
        return (uint64_t)1 << 53;
    return (uint64_t)llround(v);
}

static double
clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- histograms, numpy's way ---- */

/* np.linspace(first, last, bins + 1). */
static void
edges_fill(double first, double last, int bins, double *e)
{
    double delta = last - first, step = delta / bins;
    int i;

    for (i = 0; i <= bins; i++)
        e[i] = step != 0 ? i * step + first : (i / (double)bins) * delta + first;
    e[bins] = last;
}

/* The bin of v in [e[0], e[bins]] as np.histogram finds it: an estimate, corrected
 * against the edges; the last bin is closed. */
static int
bin_of(double v, const double *e, int bins)
{
    double f = (v - e[0]) / (e[bins] - e[0]) * bins;
    int i = f >= bins ? bins : f <= 0 ? 0 : (int)f;

    if (i == bins)
        i--;
    if (i > 0 && v < e[i])
        i--;
    if (i != bins - 1 && v >= e[i + 1])
        i++;
    return i;
}

/* ---- numeric columns ---- */

static int
by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* numpy's default (linear) quantile of sorted x[0..n), n > 0, with numpy's _lerp. */
static double
quantile(const double *x, size_t n, double q)
{
    double h = (double)(n - 1) * q, lo = floor(h), t = h - lo, a, b, d;
    size_t i = (size_t)lo, j = i + 1 < n ? i + 1 : n - 1;

    a = x[i];
    b = x[j];
    d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

static json_t *
histogram_json(const double *e, int bins, const double *counts, uint32_t min_cell)
{
    json_t *h = json_object(), *ea = json_array(), *ca = json_array();
    int i, bad = h == NULL;

    bad |= put(h, "edges", ea);
    bad |= put(h, "counts", ca);
    for (i = 0; !bad && i <= bins; i++)
        bad |= push(ea, jreal(e[i]));
    for (i = 0; !bad && i < bins; i++)
        bad |= push(ca, counts[i] < min_cell ? json_null() : jcount((uint64_t)counts[i]));
    if (bad) { /* a failed put has dropped its value already */
        json_decref(h);
        return NULL;
    }
    return h;
}

/* Exact aggregates: restricted hides what can be one row's value. */
static sl_code
numeric_exact(const cmp_col *c, const cmp_feat_spec *s, int bins, json_t *o, sl_err *err)
{
    double *x = NULL, *e = NULL, *counts = NULL, mean = 0, m2 = 0;
    size_t n = 0, i;
    json_t *q;
    int bad = 0, k;

    if ((x = malloc((c->n > 0 ? c->n : 1) * sizeof *x)) == NULL ||
        (e = malloc(((size_t)bins + 1) * sizeof *e)) == NULL ||
        (counts = calloc((size_t)bins, sizeof *counts)) == NULL)
        goto nomem;
    for (i = 0; i < c->n; i++) {
        double v = c->v[i], d;

        if (isnan(v))
            continue;
        x[n++] = v;
        d = v - mean;
        mean += d / (double)n;
        m2 += d * (v - mean);
    }
    qsort(x, n, sizeof *x, by_value);
    bad |= put(o, "count", jcount(n));
    bad |= put(o, "nulls", jcount(c->n - n));
    if (s->restricted && n < s->min_cell) { /* a mean of so few rows is nearly one row's */
        bad |= put(o, "mean", json_null());
        bad |= put(o, "std", json_null());
    } else {
        bad |= put(o, "mean", n > 0 ? jreal(mean) : json_null());
        bad |= put(o, "std", n > 1 ? jreal(sqrt(m2 / (double)(n - 1))) : json_null());
    }
    if (s->restricted || n == 0) {
        bad |= put(o, "min", json_null());
        bad |= put(o, "max", json_null());
        bad |= put(o, "quantiles", json_null());
        if (!s->restricted)
            bad |= put(o, "histogram", json_null());
        goto done;
    }
    bad |= put(o, "min", jreal(x[0]));
    bad |= put(o, "max", jreal(x[n - 1]));
    bad |= put(o, "quantiles", q = json_object());
    for (k = 0; !bad && k < 5; k++)
        bad |= put(q, quantile_key[k], jreal(quantile(x, n, quantile_at[k])));
    {
        double first = x[0], last = x[n - 1];

        if (first == last) {
            first -= 0.5;
            last += 0.5;
        }
        if (!(last > first) || !isfinite(last - first)) { /* no equal bins to draw */
            bad |= put(o, "histogram", json_null());
            goto done;
        }
        edges_fill(first, last, bins, e);
        for (i = 0; i < n; i++)
            counts[bin_of(x[i], e, bins)]++;
        bad |= put(o, "histogram", histogram_json(e, bins, counts, s->min_cell));
    }
done:
    sodium_memzero(x, n * sizeof *x);
    free(x);
    free(e);
    free(counts);
    if (bad)
        return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
    return SL_OK;
nomem:
    free(x);
    free(e);
    free(counts);
    return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
}

/*
 * The noisy value at quantile q of the noisy histogram h (negatives already 0, total
 * tot > 0): linear within the bin where the cumulative count reaches q * tot.
 */
static double
noisy_quantile(const double *h, const double *e, int bins, double tot, double q)
{
    double target = q * tot, cum = 0;
    int i, last = -1;

    for (i = 0; i < bins; i++) {
        if (h[i] <= 0)
            continue;
        if (cum + h[i] >= target)
            return e[i] + (target - cum) / h[i] * (e[i + 1] - e[i]);
        cum += h[i];
        last = i;
    }
    return last >= 0 ? e[last + 1] : e[bins];
}

/*
 * With privacy, eps the column's share. The rows are the column's nulls and its clamped
 * values; count, sum and sum of squares take eps / 4 each; the histogram's bins and the
 * nulls (a partition of the rows: parallel composition) take the last eps / 4, each bin
 * with sensitivity 1. Draws, in order: count, sum, sumsq, nulls, bins.
 */
static sl_code
numeric_private(const cmp_col *c, const cmp_feat_spec *s, int bins, double lo, double hi,
                double eps, const unsigned char seed[32], json_t *o, sl_err *err)
{
    double *e = NULL, *h = NULL, *hr = NULL, cnt = 0, sum = 0, sumsq = 0, nulls = 0;
    double share = eps / 4, sens_sum = fmax(fabs(lo), fabs(hi)), sens_sq = fmax(lo * lo, hi * hi);
    double mean, sd, tot = 0, lo_seen = NAN, hi_seen = NAN;
    stream st = {0};
    json_t *q;
    size_t i;
    int bad = 0, k;

    if ((e = malloc(((size_t)bins + 1) * sizeof *e)) == NULL ||
        (h = calloc((size_t)bins, sizeof *h)) == NULL ||
        (hr = calloc((size_t)bins, sizeof *hr)) == NULL ||
        stream_open(&st, seed, 4 + (size_t)bins) != 0) {
        bad = 1;
        goto done;
    }
    edges_fill(lo, hi, bins, e);
    for (i = 0; i < c->n; i++) {
        double v = c->v[i];

        if (isnan(v)) {
            nulls++;
            continue;
        }
        v = clamp(v, lo, hi);
        cnt++;
        sum += v;
        sumsq += v * v;
        h[bin_of(v, e, bins)]++;
    }
    cnt += laplace(&st, 1 / share);
    sum += laplace(&st, sens_sum / share);
    sumsq += laplace(&st, sens_sq / share);
    nulls += laplace(&st, 1 / share);
    for (k = 0; k < bins; k++) {
        h[k] += laplace(&st, 1 / share);
        hr[k] = h[k] > 0 ? h[k] : 0;
        tot += hr[k];
        if (hr[k] > 0 && isnan(lo_seen))
            lo_seen = e[k];
        if (hr[k] > 0)
            hi_seen = e[k + 1];
        h[k] = (double)released(h[k]);
    }
    mean = clamp(sum / fmax(cnt, 1), lo, hi);
    sd = NAN;
    if (cnt >= 2) {
        double var = (sumsq - sum * sum / cnt) / (cnt - 1);
        sd = fmin(sqrt(var > 0 ? var : 0), hi - lo);
    }
    bad |= put(o, "count", jcount(released(cnt)));
    bad |= put(o, "nulls", jcount(released(nulls)));
    bad |= put(o, "mean", isfinite(mean) ? json_real(mean) : json_null());
    bad |= put(o, "std", jreal(sd));
    bad |= put(o, "min", tot > 0 ? jreal(clamp(lo_seen, lo, hi)) : json_null());
    bad |= put(o, "max", tot > 0 ? jreal(clamp(hi_seen, lo, hi)) : json_null());
    if (tot > 0) {
        bad |= put(o, "quantiles", q = json_object());
        for (k = 0; !bad && k < 5; k++)
            bad |= put(q, quantile_key[k],
                       jreal(clamp(noisy_quantile(hr, e, bins, tot, quantile_at[k]), lo, hi)));
    } else {
        bad |= put(o, "quantiles", json_null());
    }
    bad |= put(o, "histogram", histogram_json(e, bins, h, s->min_cell));
done:
    stream_close(&st);
    free(e);
    free(h);
    free(hr);
    return bad ? sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG) : SL_OK;
}

/* ---- string columns ---- */

/*
 * {"count", "nulls", "categories": {value: rows}, "other"}: a value is named when it has
 * at least min_cell rows. With privacy (eps the column's share): the count takes eps / 2;
 * the nulls, each category of at least min_cell rows and the rest (a partition of the
 * rows) take the other eps / 2, each with sensitivity 1; a category is named when its
 * noisy count still reaches min_cell, else its noisy count joins `other`. Draws, in
 * order: count, nulls, the categories by code, the rest.
 */
static sl_code
strings(const cmp_col *c, const cmp_feat_spec *s, double eps, const unsigned char seed[32],
        json_t *o, sl_err *err)
{
    uint32_t thr = s->min_cell > 0 ? s->min_cell : 1, k;
    size_t *rows = NULL, count = cmp_table_overflow_rows(c), rest = count, i;
    double share = eps / 2, other, v;
    stream st = {0};
    json_t *cats;
    int bad = 0;

    if ((rows = calloc(c->ncat > 0 ? c->ncat : 1, sizeof *rows)) == NULL ||
        (eps > 0 && stream_open(&st, seed, 3 + (size_t)c->ncat) != 0)) {
        bad = 1;
        goto done;
    }
    for (i = 0; i < c->n; i++)
        if (c->code[i] != CMP_NULL_CODE) {
            rows[c->code[i]]++;
            count++;
        }
    bad |= put(o, "count",
               jcount(eps > 0 ? released((double)count + laplace(&st, 1 / share)) : count));
    v = (double)(c->n - count);
    bad |= put(o, "nulls", jcount(eps > 0 ? released(v + laplace(&st, 1 / share)) : (uint64_t)v));
    bad |= put(o, "categories", cats = json_object());
    other = 0;
    for (k = 0; !bad && k < c->ncat; k++) {
        if (rows[k] < thr) {
            rest += rows[k];
            continue;
        }
        v = (double)rows[k];
        if (eps > 0) {
            v += laplace(&st, 1 / share);
            if ((double)released(v) < s->min_cell) {
                other += v > 0 ? v : 0;
                continue;
            }
            v = (double)released(v);
        }
        bad |= put(cats, c->cat[k], jcount((uint64_t)v));
    }
    if (eps > 0) {
        v = (double)rest + laplace(&st, 1 / share);
        other += v > 0 ? v : 0;
        bad |= put(o, "other", jcount(released(other)));
    } else {
        bad |= put(o, "other", jcount(rest));
    }
done:
    stream_close(&st);
    free(rows);
    return bad ? sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG) : SL_OK;
}

/* ---- the job ---- */

static sl_code
check_spec(const cmp_table *t, const cmp_feat_spec *s, int *bins, sl_err *err)
{
    char nm[72];
    size_t i, j;

    if (s->ncolumns > CMP_MAX_COLUMNS || (s->ncolumns > 0 && s->columns == NULL))
        return sl_err_set(err, SL_EINVALID, "more than %d columns", CMP_MAX_COLUMNS);
    if (s->epsilon != 0 && !(s->epsilon > 0 && s->epsilon <= 10))
        return sl_err_set(err, SL_EINVALID, "epsilon must be in (0, 10]");
    *bins = s->bins == 0 ? DEFAULT_BINS : s->bins;
    if (*bins < 1 || *bins > MAX_BINS)
        return sl_err_set(err, SL_EINVALID, "bins must be in [1, %d]", MAX_BINS);
    for (i = 0; i < s->ncolumns; i++) {
        const char *name = s->columns[i];
        const cmp_col *c = cmp_table_find(t, name);

        if (c == NULL)
            return sl_err_set(err, SL_EINVALID, "no column \"%s\" in the job's data",
                              name != NULL ? shown(nm, name) : "");
        for (j = 0; j < i; j++)
            if (strcmp(s->columns[j], name) == 0)
                return sl_err_set(err, SL_EINVALID, "column \"%s\" is listed twice",
                                  shown(nm, name));
        if (s->epsilon == 0 || c->is_string)
            continue;
        if (s->lo == NULL || s->hi == NULL)
            return sl_err_set(err, SL_EINVALID,
                              "column \"%s\" needs bounds (lo, hi) for differential privacy",
                              shown(nm, name));
        if (!(s->lo[i] < s->hi[i]) || !(fabs(s->lo[i]) <= MAX_BOUND) ||
            !(fabs(s->hi[i]) <= MAX_BOUND))
            return sl_err_set(err, SL_EINVALID,
                              "the bounds of column \"%s\" must be numbers with lo < hi, "
                              "within 1e150",
                              shown(nm, name));
    }
    return SL_OK;
}

sl_code
cmp_features_run(const cmp_table *t, const cmp_feat_spec *s, json_t **out, sl_err *err)
{
    unsigned char *seeds = NULL;
    double eps = 0;
    json_t *r = NULL;
    size_t i;
    int bins = 0;
    sl_code rc;

    *out = NULL;
    if ((rc = check_spec(t, s, &bins, err)) != SL_OK)
        return rc;
    if ((r = json_object()) == NULL)
        goto nomem;
    if (s->epsilon > 0 && s->ncolumns > 0) {
        /* one independent stream per column: its seed is the column's 32 bytes of the
         * gateway seed's stream, so a column's noise does not depend on the others' sizes */
        eps = s->epsilon / (double)s->ncolumns;
        if ((seeds = malloc(s->ncolumns * 32)) == NULL)
            goto nomem;
        randombytes_buf_deterministic(seeds, s->ncolumns * 32, s->seed);
    }
    for (i = 0; i < s->ncolumns; i++) {
        const cmp_col *c = cmp_table_find(t, s->columns[i]);
        json_t *o = json_object();

        if (o == NULL || json_object_set_new(r, c->name, o) != 0)
            goto nomem;
        if (c->is_string)
            rc = strings(c, s, eps, seeds != NULL ? seeds + 32 * i : NULL, o, err);
        else if (eps > 0)
            rc = numeric_private(c, s, bins, s->lo[i], s->hi[i], eps, seeds + 32 * i, o, err);
        else
            rc = numeric_exact(c, s, bins, o, err);
        if (rc != SL_OK)
            goto out;
    }
    *out = r;
    r = NULL;
    rc = SL_OK;
    goto out;
nomem:
    rc = sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
out:
    if (seeds != NULL) {
        sodium_memzero(seeds, s->ncolumns * 32);
        free(seeds);
    }
    json_decref(r);
    return rc;
}

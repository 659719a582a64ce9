/*
 * tests/unit/test_model.c: compute/cmp_model.c against references computed here another way:
 * ridge against LAPACKE_dgels and a normal-equations solve by Gaussian elimination, logistic
 * regression against an accelerated gradient descent, k-means on clusters it must find,
 * PCA against the SVD of the centred data (LAPACKE_dgesvd), metrics on cases worked by hand,
 * and every bad parameter refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <cmocka.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_model.h"

/* ---- data ---- */

static uint64_t rs;

static double
unif(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return ((double)(rs >> 11) + 0.5) * 0x1.0p-53;
}

static double
gauss(void)
{
    return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
}

/* n x p column-major, correlated columns: x_j = z_j + 0.5 z_{j-1} + shift_j */
static double *
make_x(size_t n, size_t p, double shift, uint64_t seed)
{
    double *x = calloc(n * p, sizeof *x), *prev = calloc(n, sizeof *prev);
    size_t i, j;

    assert_non_null(x);
    assert_non_null(prev);
    rs = seed;
    for (j = 0; j < p; j++)
        for (i = 0; i < n; i++) {
            double z = gauss();

            x[j * n + i] = z + 0.5 * prev[i] + shift * (double)(j + 1);
            prev[i] = z;
        }
    free(prev);
    return x;
}

static double
rel_err(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        num = fmax(num, fabs(a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return num / (den > 0 ? den : 1);
}

static cmp_model_params
params(cmp_model_type t)
{
    cmp_model_params mp;

    memset(&mp, 0, sizeof mp);
    mp.type = t;
    mp.max_iter = 100;
    mp.tol = 1e-10;
    mp.k = 3;
    mp.components = 2;
    mp.seed = 42;
    return mp;
}

/* ---- ridge ---- */

/* coef (p) and intercept by LAPACKE_dgels on [X 1] */
static void
dgels_ref(const double *x, size_t n, size_t p, const double *y, double *coef, double *c)
{
    double *a = calloc(n * (p + 1), sizeof *a), *b = calloc(n, sizeof *b);
    size_t i;

    assert_non_null(a);
    assert_non_null(b);
    memcpy(a, x, n * p * sizeof *a);
    for (i = 0; i < n; i++)
        a[p * n + i] = 1;
    memcpy(b, y, n * sizeof *b);
    assert_int_equal(
        LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', (int)n, (int)p + 1, 1, a, (int)n, b, (int)n), 0);
    memcpy(coef, b, p * sizeof *coef);
    *c = b[p];
    free(a);
    free(b);
}

static double *
linear_target(const double *x, size_t n, size_t p, double noise)
{
    double *y = calloc(n, sizeof *y);
    size_t i, j;

    assert_non_null(y);
    for (i = 0; i < n; i++) {
        y[i] = 3.0 + noise * gauss();
        for (j = 0; j < p; j++)
            y[i] += ((double)j - 2.5) * x[j * n + i];
    }
    return y;
}

static void
check_against_dgels(double shift)
{
    size_t n = 9000, p = 6, i, j; /* more than two blocks of rows */
    double *x = make_x(n, p, shift, 11), *y = linear_target(x, n, p, 0.7), ref[6], c, mse = 0;
    cmp_model_params mp = params(CMP_LINEAR);
    cmp_model m;
    sl_err err;

    dgels_ref(x, n, p, y, ref, &c);
    assert_int_equal(cmp_model_fit(&mp, x, n, p, y, &m, &err), SL_OK);
    assert_true(rel_err(m.coef, ref, p) < 1e-8);
    assert_true(fabs(m.intercept - c) < 1e-8 * fmax(1, fabs(c)));
    for (i = 0; i < n; i++) {
        double r = y[i] - c;

        for (j = 0; j < p; j++)
            r -= ref[j] * x[j * n + i];
        mse += r * r;
    }
    assert_true(fabs(m.loss - mse / (double)n) < 1e-10 * mse / (double)n);
    assert_int_equal(m.rows, n);
    assert_int_equal(m.p, p);
    assert_int_equal(cmp_model_numbers(&m), p + 1);
    cmp_model_free(&m);
    free(x);
    free(y);
}

static void
linear_matches_dgels(void **state)
{
    size_t n = 500, p = 4;
    double *x = make_x(n, p, 1.0, 14), *y = linear_target(x, n, p, 0.0);
    cmp_model_params mp = params(CMP_LINEAR);
    cmp_model m;
    sl_err err;

    (void)state;
    check_against_dgels(0.0);  /* dsyrk on X, then the means' correction */
    check_against_dgels(50.0); /* large means: dsyrk on centred blocks */
    /* an exact fit: the MSE from the residuals, not from the normal equations' cancellation */
    assert_int_equal(cmp_model_fit(&mp, x, n, p, y, &m, &err), SL_OK);
    assert_true(m.loss >= 0 && m.loss < 1e-24);
    cmp_model_free(&m);
    free(x);
    free(y);
}

/* Solves a x = b (m x m, row-major, destroyed) by Gaussian elimination, partial pivoting. */
static void
gauss_solve(double *a, double *b, size_t m)
{
    size_t i, j, k, piv;

    for (k = 0; k < m; k++) {
        for (piv = k, i = k + 1; i < m; i++)
            if (fabs(a[i * m + k]) > fabs(a[piv * m + k]))
                piv = i;
        for (j = 0; j < m; j++) {
            double t = a[k * m + j];

            a[k * m + j] = a[piv * m + j];
            a[piv * m + j] = t;
        }
        {
            double t = b[k];

            b[k] = b[piv];
            b[piv] = t;
        }
        for (i = k + 1; i < m; i++) {
            double f = a[i * m + k] / a[k * m + k];

            for (j = k; j < m; j++)
                a[i * m + j] -= f * a[k * m + j];
            b[i] -= f * b[k];
        }
    }
    for (k = m; k-- > 0;) {
        for (j = k + 1; j < m; j++)
            b[k] -= a[k * m + j] * b[j];
        b[k] /= a[k * m + k];
    }
}

static void
ridge_matches_direct_solve(void **state)
{
    size_t n = 300, p = 5, i, j, l;
    double *x = make_x(n, p, 2.0, 12), *y = linear_target(x, n, p, 1.5), mean[5], ym = 0;
    double a[25], b[5], c;
    cmp_model_params mp = params(CMP_LINEAR);
    cmp_model m;
    sl_err err;

    (void)state;
    mp.l2 = 37.5;
    for (j = 0; j < p; j++) {
        mean[j] = 0;
        for (i = 0; i < n; i++)
            mean[j] += x[j * n + i] / (double)n;
    }
    for (i = 0; i < n; i++)
        ym += y[i] / (double)n;
    for (j = 0; j < p; j++) {
        b[j] = 0;
        for (i = 0; i < n; i++)
            b[j] += (x[j * n + i] - mean[j]) * (y[i] - ym);
        for (l = 0; l < p; l++) {
            a[j * p + l] = j == l ? mp.l2 : 0;
            for (i = 0; i < n; i++)
                a[j * p + l] += (x[j * n + i] - mean[j]) * (x[l * n + i] - mean[l]);
        }
    }
    gauss_solve(a, b, p);
    c = ym;
    for (j = 0; j < p; j++)
        c -= mean[j] * b[j];
    assert_int_equal(cmp_model_fit(&mp, x, n, p, y, &m, &err), SL_OK);
    assert_true(rel_err(m.coef, b, p) < 1e-10);
    assert_true(fabs(m.intercept - c) < 1e-10 * fmax(1, fabs(c)));
    cmp_model_free(&m);
    free(x);
    free(y);
}

/* A column twice and l2 = 0: the normal equations are singular; dgelsd's minimum-norm
 * solution splits the column's coefficient evenly and predicts as the fit without it. */
static void
linear_singular_falls_back_to_least_squares(void **state)
{
    size_t n = 400, p = 4, i;
    double *x = make_x(n, p, 1.0, 13), *y = linear_target(x, n, p, 0.3), ref[4], c;
    double *x2 = calloc(n * (p + 1), sizeof *x2), want[5];
    cmp_model_params mp = params(CMP_LINEAR);
    cmp_model m;
    sl_err err;

    (void)state;
    assert_non_null(x2);
    dgels_ref(x, n, p, y, ref, &c);
    memcpy(x2, x, n * p * sizeof *x2);
    memcpy(x2 + n * p, x + n * 2, n * sizeof *x2); /* column 2 again */
    memcpy(want, ref, sizeof ref);
    want[2] = want[4] = ref[2] / 2;
    assert_int_equal(cmp_model_fit(&mp, x2, n, p + 1, y, &m, &err), SL_OK);
    assert_true(rel_err(m.coef, want, p + 1) < 1e-8);
    assert_true(fabs(m.intercept - c) < 1e-8 * fmax(1, fabs(c)));
    cmp_model_free(&m);
    /* one constant column: its centred column is zero, its coefficient 0 */
    for (i = 0; i < n; i++)
        x2[n * p + i] = 4.0;
    memcpy(want, ref, sizeof ref);
    want[4] = 0;
    assert_int_equal(cmp_model_fit(&mp, x2, n, p + 1, y, &m, &err), SL_OK);
    assert_true(rel_err(m.coef, want, p + 1) < 1e-8);
    cmp_model_free(&m);
    free(x);
    free(x2);
    free(y);
}

/* ---- logistic regression ---- */

static double *
logistic_target(const double *x, size_t n, size_t p)
{
    double *y = calloc(n, sizeof *y);
    size_t i, j;

    assert_non_null(y);
    for (i = 0; i < n; i++) {
        double z = -0.4;

        for (j = 0; j < p; j++)
            z += (j % 2 ? 0.8 : -0.6) * x[j * n + i];
        y[i] = unif() < 1 / (1 + exp(-z)) ? 1 : 0;
    }
    return y;
}

/* f(b, c) = mean log-loss + l2/2 ||b||^2 and its gradient g (p + 1), computed plainly. */
static double
logistic_obj(const double *x, size_t n, size_t p, const double *y, double l2, const double *th,
             double *g)
{
    double f = 0;
    size_t i, j;

    for (j = 0; j <= p; j++)
        g[j] = j < p ? l2 * th[j] : 0;
    for (i = 0; i < n; i++) {
        double z = th[p], s;

        for (j = 0; j < p; j++)
            z += th[j] * x[j * n + i];
        s = 1 / (1 + exp(-z));
        f += (log1p(exp(-fabs(z))) + fmax(z, 0) - y[i] * z) / (double)n;
        for (j = 0; j < p; j++)
            g[j] += (s - y[i]) * x[j * n + i] / (double)n;
        g[p] += (s - y[i]) / (double)n;
    }
    for (j = 0; j < p; j++)
        f += 0.5 * l2 * th[j] * th[j];
    return f;
}

/* Nesterov's accelerated gradient descent, step 1/L with L a bound on the Hessian. */
static double
agd_reference(const double *x, size_t n, size_t p, const double *y, double l2, double *th,
              int iters)
{
    double lip = l2, th_prev[8] = {0}, v[8], g[8];
    size_t i, j;
    int t;

    for (i = 0; i < n; i++) {
        double r2 = 1;

        for (j = 0; j < p; j++)
            r2 += x[j * n + i] * x[j * n + i];
        lip += 0.25 * r2 / (double)n;
    }
    memset(th, 0, (p + 1) * sizeof *th);
    for (t = 1; t <= iters; t++) {
        double mom = (double)(t - 1) / (double)(t + 2);

        for (j = 0; j <= p; j++)
            v[j] = th[j] + mom * (th[j] - th_prev[j]);
        (void)logistic_obj(x, n, p, y, l2, v, g);
        memcpy(th_prev, th, (p + 1) * sizeof *th);
        for (j = 0; j <= p; j++)
            th[j] = v[j] - g[j] / lip;
    }
    return logistic_obj(x, n, p, y, l2, th, g);
}

typedef struct {
    int calls, last;
    double loss, worst_rise;
} progress_log;

static void
on_progress(void *ctx, int it, double loss)
{
    progress_log *l = ctx;

    if (l->calls > 0 && loss - l->loss > l->worst_rise)
        l->worst_rise = loss - l->loss;
    l->calls++;
    l->last = it;
    l->loss = loss;
}

static void
logistic_converges_to_the_reference(void **state)
{
    size_t n = 2000, p = 5, j;
    double *x = make_x(n, p, 0.5, 21), *y = logistic_target(x, n, p), ref[6], th[6], g[6], fref;
    double f, gmax = 0;
    cmp_model_params mp = params(CMP_LOGISTIC);
    progress_log log = {0, 0, 0, 0};
    cmp_model m;
    sl_err err;

    (void)state;
    mp.l2 = 0.01;
    mp.tol = 1e-9;
    mp.progress = on_progress;
    mp.progress_ctx = &log;
    fref = agd_reference(x, n, p, y, mp.l2, ref, 3000);
    assert_int_equal(cmp_model_fit(&mp, x, n, p, y, &m, &err), SL_OK);
    assert_true(m.grad_norm <= mp.tol);
    assert_true(m.iterations >= 1 && m.iterations < 20);
    assert_int_equal(log.calls, m.iterations);
    assert_int_equal(log.last, m.iterations);
    assert_true(log.worst_rise <= 0);
    /* the gradient computed plainly here, at the returned solution */
    memcpy(th, m.coef, p * sizeof *th);
    th[p] = m.intercept;
    f = logistic_obj(x, n, p, y, mp.l2, th, g);
    for (j = 0; j <= p; j++)
        gmax = fmax(gmax, fabs(g[j]));
    assert_true(gmax <= 1e-8);
    assert_true(fabs(m.loss - f) < 1e-12);
    assert_true(fabs(m.loss - fref) < 1e-6);
    assert_true(m.loss <= fref + 1e-12);
    assert_true(rel_err(th, ref, p + 1) < 1e-4);
    assert_int_equal(cmp_model_numbers(&m), p + 1);
    cmp_model_free(&m);
    free(x);
    free(y);
}

/* Enough rows for Hessians from a sample of the rows: the solution is still the optimum
 * (the gradient computed plainly vanishes; f is strictly convex with l2 > 0), and a feature
 * seen in a single run of 60 rows (likely outside the sample) does not stop it. */
static void
logistic_many_rows(void **state)
{
    size_t n = 600000, p = 3, i, j;
    double *x = make_x(n, p, 0.0, 23), *y, th[4], g[4], f, gmax = 0;
    cmp_model_params mp = params(CMP_LOGISTIC);
    cmp_model m;
    sl_err err;

    (void)state;
    y = logistic_target(x, n, p);
    for (i = 0; i < n; i++) /* the last column: 1 on rows 300000..300059 only */
        x[2 * n + i] = i >= 300000 && i < 300060 ? 1 : 0;
    for (i = 300000; i < 300060; i++)
        y[i] = i % 4 != 0;
    mp.l2 = 1.0 / (double)n;
    mp.tol = 1e-9;
    assert_int_equal(cmp_model_fit(&mp, x, n, p, y, &m, &err), SL_OK);
    assert_true(m.grad_norm <= mp.tol);
    assert_true(m.iterations < 30);
    memcpy(th, m.coef, p * sizeof *th);
    th[p] = m.intercept;
    f = logistic_obj(x, n, p, y, mp.l2, th, g);
    for (j = 0; j <= p; j++)
        gmax = fmax(gmax, fabs(g[j]));
    assert_true(gmax <= 1e-8);
    assert_true(fabs(m.loss - f) < 1e-12);
    cmp_model_free(&m);
    free(x);
    free(y);
}

/* l2 = 0 with a column twice: the Hessian is singular and gets a multiple of I; the
 * solution still has a zero gradient and the pair shares its coefficient. */
static void
logistic_singular_hessian_is_damped(void **state)
{
    size_t n = 1500, p = 3;
    double *x = make_x(n, p + 1, 0.0, 22), *y;
    cmp_model_params mp = params(CMP_LOGISTIC);
    cmp_model m;
    sl_err err;

    (void)state;
    memcpy(x + n * p, x, n * sizeof *x); /* the last column is the first */
    y = logistic_target(x, n, p);
    mp.l2 = 0;
    mp.tol = 1e-8;
    assert_int_equal(cmp_model_fit(&mp, x, n, p + 1, y, &m, &err), SL_OK);
    assert_true(m.grad_norm <= mp.tol);
    assert_true(fabs(m.coef[0] - m.coef[p]) < 1e-6);
    cmp_model_free(&m);
    free(x);
    free(y);
}

/* ---- k-means ---- */

static void
kmeans_finds_separated_clusters(void **state)
{
    static const double truth[3][2] = {{0, 0}, {10, 0}, {0, 10}};
    size_t n = 600, p = 2, i, c, d;
    double *x = calloc(n * p, sizeof *x), in = 0;
    cmp_model_params mp = params(CMP_KMEANS);
    progress_log log = {0, 0, 0, 0};
    cmp_model m, m2, m3;
    cmp_metrics mt;
    sl_err err;

    (void)state;
    assert_non_null(x);
    rs = 31;
    for (i = 0; i < n; i++) {
        x[i] = truth[i % 3][0] + 0.5 * gauss();
        x[n + i] = truth[i % 3][1] + 0.5 * gauss();
    }
    mp.tol = 1e-9;
    mp.progress = on_progress;
    mp.progress_ctx = &log;
    assert_int_equal(cmp_model_fit(&mp, x, n, p, NULL, &m, &err), SL_OK);
    assert_int_equal(m.k, 3);
    assert_true(m.iterations >= 1 && m.iterations < mp.max_iter);
    assert_int_equal(log.calls, m.iterations);
    for (c = 0; c < 3; c++) {
        double best = INFINITY;

        for (d = 0; d < 3; d++)
            best = fmin(best, hypot(m.centroids[d * 2] - truth[c][0],
                                    m.centroids[d * 2 + 1] - truth[c][1]));
        assert_true(best < 0.15);
    }
    /* the loss is the inertia of the final centres, computed here directly */
    for (i = 0; i < n; i++) {
        double best = INFINITY;

        for (d = 0; d < 3; d++) {
            double a = x[i] - m.centroids[d * 2], b = x[n + i] - m.centroids[d * 2 + 1];

            best = fmin(best, a * a + b * b);
        }
        in += best;
    }
    assert_true(fabs(m.loss - in) < 1e-9 * in);
    assert_int_equal(cmp_model_eval(&m, x, n, p, NULL, &mt, &err), SL_OK);
    assert_true(fabs(mt.inertia - in) < 1e-9 * in);
    assert_true(isnan(mt.r2) && isnan(mt.roc_auc) && isnan(mt.explained_variance));
    assert_int_equal(cmp_model_numbers(&m), 3 * p);
    /* the same seed, the same centres; another seed finds the same clusters */
    mp.progress = NULL;
    assert_int_equal(cmp_model_fit(&mp, x, n, p, NULL, &m2, &err), SL_OK);
    assert_memory_equal(m.centroids, m2.centroids, 3 * p * sizeof(double));
    assert_int_equal(m.iterations, m2.iterations);
    mp.seed = 43;
    assert_int_equal(cmp_model_fit(&mp, x, n, p, NULL, &m3, &err), SL_OK);
    assert_true(fabs(m3.loss - m.loss) < 1e-9 * m.loss);
    cmp_model_free(&m);
    cmp_model_free(&m2);
    cmp_model_free(&m3);
    free(x);
}

/* 8 clusters in 8 dimensions, each 4 away from the others: plain k-means++ puts two
 * centres in one cluster about a third of the time; the greedy seeding finds all 8. */
static void
kmeans_finds_eight_clusters(void **state)
{
    size_t n = 1600, p = 8, i, j, c, d;
    double *x = calloc(n * p, sizeof *x);
    cmp_model_params mp = params(CMP_KMEANS);
    cmp_model m;
    sl_err err;
    uint64_t sd;

    (void)state;
    assert_non_null(x);
    rs = 51;
    for (j = 0; j < p; j++)
        for (i = 0; i < n; i++)
            x[j * n + i] = 0.5 * gauss() + (i % 8 == j ? 4.0 : 0.0);
    mp.k = 8;
    mp.tol = 1e-9;
    for (sd = 1; sd <= 4; sd++) {
        mp.seed = sd;
        assert_int_equal(cmp_model_fit(&mp, x, n, p, NULL, &m, &err), SL_OK);
        for (c = 0; c < 8; c++) { /* the centre of cluster c: 4 in dimension c */
            double best = INFINITY;

            for (d = 0; d < 8; d++) {
                double e = 0;

                for (j = 0; j < p; j++) {
                    double t = m.centroids[d * p + j] - (j == c ? 4.0 : 0.0);

                    e += t * t;
                }
                best = fmin(best, sqrt(e));
            }
            assert_true(best < 0.15);
        }
        cmp_model_free(&m);
    }
    free(x);
}

/* k = n with repeated rows: every centre a row, empty clusters re-seeded, no crash. */
static void
kmeans_degenerate_rows(void **state)
{
    double x[8] = {1, 1, 1, 2, 5, 5, 5, 6}; /* 4 rows x 2, three of them the same */
    cmp_model_params mp = params(CMP_KMEANS);
    cmp_model m;
    sl_err err;

    (void)state;
    mp.k = 4;
    mp.tol = 1e-12;
    assert_int_equal(cmp_model_fit(&mp, x, 4, 2, NULL, &m, &err), SL_OK);
    assert_true(m.loss == 0);
    cmp_model_free(&m);
}

/* ---- PCA ---- */

static void
check_pca_against_svd(double shift)
{
    size_t n = 500, p = 5, i, j, r, nc = 3;
    double *x = make_x(n, p, shift, 41), *xc = calloc(n * p, sizeof *xc), s[5], vt[25], sup[4];
    double tot = 0, top = 0;
    cmp_model_params mp = params(CMP_PCA);
    cmp_model m;
    cmp_metrics mt;
    sl_err err;

    assert_non_null(xc);
    for (j = 0; j < p; j++) {
        double mean = 0;

        for (i = 0; i < n; i++)
            mean += x[j * n + i] / (double)n;
        for (i = 0; i < n; i++)
            xc[j * n + i] = x[j * n + i] - mean;
    }
    assert_int_equal(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'S', (int)n, (int)p, xc, (int)n, s, NULL,
                                    1, vt, (int)p, sup),
                     0);
    mp.components = (int)nc;
    assert_int_equal(cmp_model_fit(&mp, x, n, p, NULL, &m, &err), SL_OK);
    assert_int_equal(m.ncomp, nc);
    for (r = 0; r < p; r++) {
        double ev = s[r] * s[r] / (double)(n - 1);

        tot += ev;
        if (r < nc) {
            double dot = 0;

            top += ev;
            assert_true(fabs(m.explained_variance[r] - ev) < 1e-10 * ev);
            for (j = 0; j < p; j++) /* row r of vt is v_r (vt is p x p column-major) */
                dot += m.components[r * p + j] * vt[j * p + r];
            assert_true(fabs(fabs(dot) - 1) < 1e-10);
            for (j = 0; j < p; j++)
                assert_true(fabs(m.components[r * p + j] - (dot > 0 ? 1 : -1) * vt[j * p + r]) <
                            1e-8);
        }
    }
    for (r = 0; r < nc; r++) { /* the sign: the largest |entry| positive */
        double big = 0;

        for (j = 0; j < p; j++)
            if (fabs(m.components[r * p + j]) > fabs(big))
                big = m.components[r * p + j];
        assert_true(big > 0);
    }
    assert_true(fabs(m.explained_variance_ratio_total - top / tot) < 1e-10);
    for (j = 0; j < p; j++)
        assert_true(fabs(m.mean[j] - shift * (double)(j + 1)) < 0.2);
    assert_int_equal(cmp_model_eval(&m, x, n, p, NULL, &mt, &err), SL_OK);
    assert_true(fabs(mt.explained_variance - top / tot) < 1e-10);
    assert_int_equal(cmp_model_numbers(&m), nc * p + p);
    cmp_model_free(&m);
    free(x);
    free(xc);
}

static void
pca_matches_svd(void **state)
{
    (void)state;
    check_pca_against_svd(0.0);
    check_pca_against_svd(1000.0);
}

/* ---- metrics worked by hand ---- */

static void
metrics_by_hand(void **state)
{
    double coef1[1] = {2}, xl[4] = {0, 1, 2, 3}, yl[4] = {1, 3, 6, 7}, yc[4] = {5, 5, 5, 5};
    double coef2[1] = {1}, xs[5] = {-1, 0.5, 0.5, 2, 0.5}, ys[5] = {0, 1, 0, 1, 0};
    double cent[4] = {0, 0, 10, 0}, xk[6] = {1, 9, 5, 0, 0, 0}, comp[2] = {1, 0}, mean[2] = {0, 0};
    double xp[8] = {1, -1, 2, -2, 1, -1, 0, 0}, ev[1] = {1}, y0[1] = {0}, x0[1] = {0}, ll = 0;
    cmp_model m;
    cmp_metrics mt;
    sl_err err;
    size_t i;

    (void)state;
    /* linear: predictions 1 3 5 7; SSres 1; mean 4.25, SStot 22.75 */
    memset(&m, 0, sizeof m);
    m.type = CMP_LINEAR;
    m.p = 1;
    m.coef = coef1;
    m.intercept = 1;
    assert_int_equal(cmp_model_eval(&m, xl, 4, 1, yl, &mt, &err), SL_OK);
    assert_true(fabs(mt.r2 - (1 - 1 / 22.75)) < 1e-15);
    assert_true(fabs(mt.rmse - 0.5) < 1e-15);
    assert_true(isnan(mt.accuracy) && isnan(mt.log_loss) && isnan(mt.roc_auc));
    assert_true(isnan(mt.inertia) && isnan(mt.explained_variance));
    assert_int_equal(cmp_model_eval(&m, xl, 4, 1, yc, &mt, &err), SL_OK);
    assert_true(isnan(mt.r2)); /* a constant target: no R^2 */
    /* logistic: scores -1 .5 .5 2 .5, labels 0 1 0 1 0. Pairs: 0.5 beats -1 and ties two
     * 0.5s (1 + 0.5 + 0.5), 2 beats all three: AUC 5/6. Predictions (z > 0) 0 1 1 1 1:
     * 3 right of 5. */
    m.type = CMP_LOGISTIC;
    m.coef = coef2;
    m.intercept = 0;
    assert_int_equal(cmp_model_eval(&m, xs, 5, 1, ys, &mt, &err), SL_OK);
    assert_true(fabs(mt.roc_auc - 5.0 / 6.0) < 1e-15);
    assert_true(fabs(mt.accuracy - 0.6) < 1e-15);
    for (i = 0; i < 5; i++) {
        double q = 1 / (1 + exp(-xs[i]));

        ll -= (ys[i] != 0 ? log(q) : log(1 - q)) / 5;
    }
    assert_true(fabs(mt.log_loss - ll) < 1e-14);
    assert_true(isnan(mt.r2) && isnan(mt.rmse));
    /* probabilities clipped to [1e-15, 1 - 1e-15]: a certain, wrong prediction costs
     * -log(1e-15) rather than infinity (1 - 1e-15 rounds to a double first) */
    m.intercept = 100;
    assert_int_equal(cmp_model_eval(&m, x0, 1, 1, y0, &mt, &err), SL_OK);
    assert_true(fabs(mt.log_loss - (-log1p(-(1 - 1e-15)))) < 1e-12);
    assert_true(fabs(mt.log_loss - 34.538776394910684) < 1e-2);
    assert_true(isnan(mt.roc_auc)); /* one class only */
    assert_true(mt.accuracy == 0);
    /* kmeans: rows (1,0) (9,0) (5,0) to centres (0,0) (10,0): 1 + 1 + 25 */
    memset(&m, 0, sizeof m);
    m.type = CMP_KMEANS;
    m.p = 2;
    m.k = 2;
    m.centroids = cent;
    assert_int_equal(cmp_model_eval(&m, xk, 3, 2, NULL, &mt, &err), SL_OK);
    assert_true(fabs(mt.inertia - 27) < 1e-12);
    /* pca: component (1, 0) at the origin; rows (1,1) (-1,-1) (2,0) (-2,0): 10 of 12 */
    memset(&m, 0, sizeof m);
    m.type = CMP_PCA;
    m.p = 2;
    m.ncomp = 1;
    m.components = comp;
    m.mean = mean;
    m.explained_variance = ev;
    assert_int_equal(cmp_model_eval(&m, xp, 4, 2, NULL, &mt, &err), SL_OK);
    assert_true(fabs(mt.explained_variance - 10.0 / 12.0) < 1e-15);
}

/* ---- bad parameters ---- */

static void
expect_invalid(const cmp_model_params *mp, const double *x, size_t n, size_t p, const double *y)
{
    cmp_model m;
    sl_err err;

    memset(&m, 0xab, sizeof m);
    memset(&err, 0, sizeof err);
    assert_int_equal(cmp_model_fit(mp, x, n, p, y, &m, &err), SL_EINVALID);
    assert_int_equal(err.code, SL_EINVALID);
    assert_true(err.msg[0] != '\0');
    assert_null(m.coef);
    assert_null(m.centroids);
    assert_null(m.components);
    cmp_model_free(&m);
}

static void
bad_parameters_are_refused(void **state)
{
    double x[12] = {1, 2, 3, 4, 5, 6, 1, 0, 1, 0, 2, 2}, y[6] = {0, 1, 0, 1, 1, 0};
    double bad[12], ybad[6], coef[2] = {1, 1};
    cmp_model_params mp;
    cmp_model m;
    cmp_metrics mt;
    sl_err err;

    (void)state;
    mp = params(CMP_LINEAR);
    expect_invalid(&mp, NULL, 6, 2, y);
    expect_invalid(&mp, x, 0, 2, y);
    expect_invalid(&mp, x, 6, 0, y);
    expect_invalid(&mp, x, 6, 2, NULL);
    expect_invalid(&mp, x, (size_t)INT_MAX + 1, 2, y);
    expect_invalid(&mp, x, (size_t)INT_MAX, (size_t)INT_MAX - 1, y); /* n * p * 8 overflows */
    expect_invalid(NULL, x, 6, 2, y);
    assert_int_equal(cmp_model_fit(&mp, x, 6, 2, y, NULL, &err), SL_EINVALID);
    mp.l2 = -1;
    expect_invalid(&mp, x, 6, 2, y);
    mp.l2 = NAN;
    expect_invalid(&mp, x, 6, 2, y);
    mp.l2 = INFINITY;
    expect_invalid(&mp, x, 6, 2, y);
    mp = params(CMP_LINEAR);
    memcpy(bad, x, sizeof x);
    bad[7] = NAN;
    expect_invalid(&mp, bad, 6, 2, y);
    bad[7] = -INFINITY;
    expect_invalid(&mp, bad, 6, 2, y);
    bad[7] = 1e300; /* its square is not finite */
    expect_invalid(&mp, bad, 6, 2, y);
    memcpy(ybad, y, sizeof y);
    ybad[3] = INFINITY;
    expect_invalid(&mp, x, 6, 2, ybad);
    mp.type = (cmp_model_type)99;
    expect_invalid(&mp, x, 6, 2, y);
    /* logistic */
    mp = params(CMP_LOGISTIC);
    ybad[3] = 0.5;
    expect_invalid(&mp, x, 6, 2, ybad);
    ybad[3] = 2;
    expect_invalid(&mp, x, 6, 2, ybad);
    ybad[3] = NAN;
    expect_invalid(&mp, x, 6, 2, ybad);
    mp.max_iter = 0;
    expect_invalid(&mp, x, 6, 2, y);
    mp = params(CMP_LOGISTIC);
    mp.tol = 0;
    expect_invalid(&mp, x, 6, 2, y);
    mp.tol = NAN;
    expect_invalid(&mp, x, 6, 2, y);
    mp.tol = -1;
    expect_invalid(&mp, x, 6, 2, y);
    mp = params(CMP_LOGISTIC);
    mp.l2 = -0.5;
    expect_invalid(&mp, x, 6, 2, y);
    /* kmeans */
    mp = params(CMP_KMEANS);
    mp.k = 0;
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.k = 7; /* more than the rows */
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.k = 1025;
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.k = 2;
    mp.max_iter = 0;
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.max_iter = 10;
    mp.tol = 0;
    expect_invalid(&mp, x, 6, 2, NULL);
    /* pca */
    mp = params(CMP_PCA);
    mp.components = 0;
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.components = 3;
    expect_invalid(&mp, x, 6, 2, NULL);
    mp.components = 1;
    expect_invalid(&mp, x, 1, 2, NULL); /* one row has no sample covariance */
    expect_invalid(&mp, bad, 6, 2, NULL);
    /* eval: no model, an unfitted one, the wrong width, a bad target */
    assert_int_equal(cmp_model_eval(NULL, x, 6, 2, y, &mt, &err), SL_EINVALID);
    memset(&m, 0, sizeof m);
    assert_int_equal(cmp_model_eval(&m, x, 6, 2, y, &mt, &err), SL_EINVALID);
    m.type = CMP_LINEAR;
    assert_int_equal(cmp_model_eval(&m, x, 6, 2, y, &mt, &err), SL_EINVALID);
    m.coef = coef;
    m.p = 2;
    assert_int_equal(cmp_model_eval(&m, x, 6, 1, y, &mt, &err), SL_EINVALID);
    assert_int_equal(cmp_model_eval(&m, x, 0, 2, y, &mt, &err), SL_EINVALID);
    assert_int_equal(cmp_model_eval(&m, bad, 6, 2, y, &mt, &err), SL_EINVALID);
    assert_int_equal(cmp_model_eval(&m, x, 6, 2, NULL, &mt, &err), SL_EINVALID);
    m.type = CMP_LOGISTIC;
    ybad[3] = 0.5;
    assert_int_equal(cmp_model_eval(&m, x, 6, 2, ybad, &mt, &err), SL_EINVALID);
    assert_int_equal(cmp_model_eval(&m, x, 6, 2, y, &mt, &err), SL_OK);
    assert_int_equal(cmp_model_numbers(NULL), 0);
    cmp_model_free(NULL);
}

int
main(void)
{
    sl_err err;
    /* the zone's pool, as sluice-zone starts it: products over 8192 rows or more are shared
     * out (the dgels checks, the many-rows logistic) */
    if (cmp_pool_start(2, &err) != SL_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_matches_dgels),
        cmocka_unit_test(ridge_matches_direct_solve),
        cmocka_unit_test(linear_singular_falls_back_to_least_squares),
        cmocka_unit_test(logistic_converges_to_the_reference),
        cmocka_unit_test(logistic_many_rows),
        cmocka_unit_test(logistic_singular_hessian_is_damped),
        cmocka_unit_test(kmeans_finds_separated_clusters),
        cmocka_unit_test(kmeans_finds_eight_clusters),
        cmocka_unit_test(kmeans_degenerate_rows),
        cmocka_unit_test(pca_matches_svd),
        cmocka_unit_test(metrics_by_hand),
        cmocka_unit_test(bad_parameters_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

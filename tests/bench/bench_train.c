/*
 * tests/bench/bench_train.c: the zone's models in process on synthetic data, next to
 * OpenBLAS's dgemm and scikit-learn on the same data (scripts/bench.sh). Generates
 * x ~ N(0, 1) with neighbouring columns correlated (x_j = 0.5 x_{j-1} + sqrt(0.75) e_j),
 * y ~ Bernoulli(sigmoid(x.w + c)) and ylin = x.v + 1.5 + N(0, 1), all from a fixed seed;
 * writes them to DIR as raw little-endian float64 (x.f64 row-major n x p, y.f64, ylin.f64);
 * then times, each the best of --repeat runs:
 *   (1) cblas_dgemm on the Gram matrix's shape, X^T X (p x n times n x p), 2 p^2 n flops,
 *       and a square 2048 dgemm for reference;
 *   (2) the ridge fit's Gram phase: the cblas_dsyrk call cmp_model_fit makes on this data
 *       (its columns have means far below their deviations: dsyrk on X itself, then the
 *       means' correction), p (p + 1) n flops, and its GFLOP/s over dgemm's (target >= 0.70);
 *   (3) the ridge fit (l2 = 0: ordinary least squares, as LinearRegression), whole;
 *   (4) the logistic fit to max |gradient| <= --tol (1e-6, below the 2.6e-6 scikit-learn's
 *       lbfgs stops at on this data: bench_train.py prints its own) with l2 = 1 / n
 *       (scikit-learn's C = 1), with its training log-loss (unpenalised and penalised);
 * then frees x and runs bench_train.py (scikit-learn LinearRegression and LogisticRegression
 * lbfgs on the files) with /usr/bin/python3, reads its key=value lines and its coefficients,
 * and prints the ratios: logistic sluice / sklearn (target <= 1/3), ridge sklearn / sluice
 * (target >= 20). Output: key=value lines, then `train ...:` summary lines.
 *   bench_train [--rows N] [--cols P] [--out DIR] [--repeat R] [--tol T] [--py SCRIPT]
 *               [--no-sklearn]
 * Without --out the files go to a temporary directory removed at the end.
 */
#include <sys/stat.h>

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmp_model.h"

#define PYTHON "/usr/bin/python3"

static uint64_t st[4];

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
next(void)
{
    uint64_t v = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;

    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return v;
}

static void
seed(uint64_t s)
{
    int i;

    for (i = 0; i < 4; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        st[i] = z ^ (z >> 31);
    }
}

/* uniform in (0, 1) */
static double
unif(void)
{
    return ((double)(next() >> 11) + 0.5) * 0x1.0p-53;
}

/* n standard normals (Box-Muller, both of each pair) */
static void
gauss_fill(double *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i += 2) {
        double r = sqrt(-2 * log(unif())), a = 6.283185307179586 * unif();

        v[i] = r * cos(a);
        if (i + 1 < n)
            v[i + 1] = r * sin(a);
    }
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "bench_train: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static int
write_file(const char *dir, const char *name, const double *v, size_t n)
{
    char path[4096];
    FILE *f;
    int ok;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "bench_train: %s: %s\n", path, strerror(errno));
        return -1;
    }
    ok = fwrite(v, sizeof *v, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok)
        fprintf(stderr, "bench_train: could not write %s\n", path);
    return ok ? 0 : -1;
}

/* x (column-major) as x.f64, row-major, in blocks of rows */
static int
write_x(const char *dir, const double *x, size_t n, size_t p)
{
    enum { ROWS = 8192 };
    double *buf = xmalloc(ROWS * p * sizeof *buf);
    char path[4096];
    size_t i0, i, j, b;
    FILE *f;
    int ok = 1;

    snprintf(path, sizeof path, "%s/x.f64", dir);
    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "bench_train: %s: %s\n", path, strerror(errno));
        free(buf);
        return -1;
    }
    for (i0 = 0; i0 < n && ok; i0 += b) {
        b = n - i0 < ROWS ? n - i0 : ROWS;
        for (j = 0; j < p; j++)
            for (i = 0; i < b; i++)
                buf[i * p + j] = x[j * n + i0 + i];
        ok = fwrite(buf, sizeof *buf, b * p, f) == b * p;
    }
    ok = fclose(f) == 0 && ok;
    if (!ok)
        fprintf(stderr, "bench_train: could not write %s\n", path);
    free(buf);
    return ok ? 0 : -1;
}

static int
read_file(const char *dir, const char *name, double *v, size_t n)
{
    char path[4096];
    FILE *f;
    int ok;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    ok = fread(v, sizeof *v, n, f) == n;
    fclose(f);
    return ok ? 0 : -1;
}

static void
remove_file(const char *dir, const char *name)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

/* max |a - b| / max |b| over coefficients and intercept */
static double
coef_diff(const cmp_model *m, const double *ref)
{
    double num = fabs(m->intercept - ref[m->p]), den = fabs(ref[m->p]);
    size_t j;

    for (j = 0; j < m->p; j++) {
        num = fmax(num, fabs(m->coef[j] - ref[j]));
        den = fmax(den, fabs(ref[j]));
    }
    return num / (den > 0 ? den : 1);
}

typedef struct {
    double ridge_s, logistic_s, logloss, obj, grad_norm;
    int iter, have_ridge, have_logistic;
} sk_result;

/* Runs bench_train.py on dir; its key=value lines pass through to stdout. */
static int
run_sklearn(const char *py, const char *dir, size_t n, size_t p, int repeat, sk_result *r)
{
    char cmd[8192], line[512];
    FILE *f;
    int status;

    memset(r, 0, sizeof *r);
    snprintf(cmd, sizeof cmd, "%s '%s' --dir '%s' --rows %zu --cols %zu --repeat %d", PYTHON, py,
             dir, n, p, repeat);
    fflush(stdout);
    f = popen(cmd, "r");
    if (f == NULL) {
        fprintf(stderr, "bench_train: could not run %s\n", PYTHON);
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        fputs(line, stdout);
        if (sscanf(line, "sklearn_ridge_s=%lf", &r->ridge_s) == 1)
            r->have_ridge = 1;
        else if (sscanf(line, "sklearn_logistic_s=%lf", &r->logistic_s) == 1)
            r->have_logistic = 1;
        else if (sscanf(line, "sklearn_logistic_logloss=%lf", &r->logloss) == 1)
            continue;
        else if (sscanf(line, "sklearn_logistic_obj=%lf", &r->obj) == 1)
            continue;
        else if (sscanf(line, "sklearn_logistic_iter=%d", &r->iter) == 1)
            continue;
        else if (sscanf(line, "sklearn_logistic_grad_norm=%lf", &r->grad_norm) == 1)
            continue;
    }
    status = pclose(f);
    if (status != 0 || !r->have_ridge || !r->have_logistic) {
        fprintf(stderr, "bench_train: %s failed (status %d)\n", py, status);
        return -1;
    }
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_train [--rows N] [--cols P] [--out DIR] [--repeat R] "
                    "[--tol T] [--py SCRIPT] [--no-sklearn]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    size_t n = 1000000, p = 64, i, j;
    int repeat = 3, sklearn = 1, r, keep = 0, fail = 0;
    char dirbuf[] = "/tmp/bench_train.XXXXXX", py[4096];
    const char *dir = NULL, *slash;
    double *x, *y, *ylin, *z, *w, *v, *g, *a, t, best;
    double dgemm_gf, sq_gf, gram_s, gram_gf, ridge_s = INFINITY, ridge_shift_s = INFINITY;
    double logistic_s, logloss_unpen, pen, tol = 1e-6;
    cmp_model_params mp;
    cmp_model lin, lg, tmp;
    cmp_metrics mt;
    sk_result sk;
    sl_err err;

    /* bench_train.py next to this file unless --py says otherwise */
    slash = strrchr(__FILE__, '/');
    snprintf(py, sizeof py, "%.*sbench_train.py", slash ? (int)(slash - __FILE__ + 1) : 0,
             __FILE__);
    for (r = 1; r < argc; r++) {
        if (strcmp(argv[r], "--rows") == 0 && r + 1 < argc)
            n = strtoull(argv[++r], NULL, 10);
        else if (strcmp(argv[r], "--cols") == 0 && r + 1 < argc)
            p = strtoull(argv[++r], NULL, 10);
        else if (strcmp(argv[r], "--out") == 0 && r + 1 < argc)
            dir = argv[++r];
        else if (strcmp(argv[r], "--repeat") == 0 && r + 1 < argc)
            repeat = atoi(argv[++r]);
        else if (strcmp(argv[r], "--tol") == 0 && r + 1 < argc)
            tol = strtod(argv[++r], NULL);
        else if (strcmp(argv[r], "--py") == 0 && r + 1 < argc)
            snprintf(py, sizeof py, "%s", argv[++r]);
        else if (strcmp(argv[r], "--no-sklearn") == 0)
            sklearn = 0;
        else
            usage();
    }
    if (n < 2 || p < 1 || n > 2147483647 || p > 4096 || repeat < 1 || !(tol > 0))
        usage();
    if (dir != NULL) {
        keep = 1;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "bench_train: %s: %s\n", dir, strerror(errno));
            return 1;
        }
    } else if (sklearn) {
        dir = mkdtemp(dirbuf);
        if (dir == NULL) {
            fprintf(stderr, "bench_train: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
    }
    if (sklearn && access(py, R_OK) != 0) {
        fprintf(stderr, "bench_train: %s: %s (--py names it)\n", py, strerror(errno));
        return 1;
    }
    /* the zone's own threads, as sluice-zone starts them: one per BLAS thread */
    sl_err_clear(&err);
    if (cmp_pool_start(openblas_get_num_threads(), &err) != SL_OK) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    printf("rows=%zu\ncols=%zu\nrepeat=%d\nblas_threads=%d\npool_threads=%d\nblas_config=%s\n", n,
           p, repeat, openblas_get_num_threads(), cmp_pool_threads(), openblas_get_config());

    /* ---- data ---- */
    t = now();
    x = xmalloc(n * p * sizeof *x);
    y = xmalloc(n * sizeof *y);
    ylin = xmalloc(n * sizeof *ylin);
    z = xmalloc(n * sizeof *z);
    w = xmalloc(p * sizeof *w);
    v = xmalloc(p * sizeof *v);
    g = xmalloc(p * p * sizeof *g);
    seed(20240611);
    gauss_fill(x, n * p);
    for (j = 1; j < p; j++)
        for (i = 0; i < n; i++)
            x[j * n + i] = 0.5 * x[(j - 1) * n + i] + sqrt(0.75) * x[j * n + i];
    for (j = 0; j < p; j++) {
        w[j] = (j % 2 ? 1.0 : -1.0) * (0.5 + (double)(j % 7) / 6.0) * 1.5 / sqrt((double)p);
        v[j] = (double)((int)(j % 9) - 4) / 4.0;
    }
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, 1.0, x, (int)n, w, 1, 0.0, z, 1);
    for (i = 0; i < n; i++)
        y[i] = unif() < 1 / (1 + exp(-(z[i] - 0.3))) ? 1 : 0;
    gauss_fill(ylin, n);
    for (i = 0; i < n; i++)
        ylin[i] += 1.5;
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, 1.0, x, (int)n, v, 1, 1.0, ylin, 1);
    printf("generate_s=%.3f\n", now() - t);
    if (sklearn) {
        t = now();
        if (write_x(dir, x, n, p) != 0 || write_file(dir, "y.f64", y, n) != 0 ||
            write_file(dir, "ylin.f64", ylin, n) != 0)
            return 1;
        printf("data_dir=%s\nwrite_s=%.3f\n", dir, now() - t);
    }
    fflush(stdout);

    /* ---- (1) dgemm ---- */
    best = INFINITY;
    for (r = 0; r < repeat + 1; r++) { /* the first run warms OpenBLAS's buffers */
        t = now();
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)p, (int)p, (int)n, 1.0, x, (int)n,
                    x, (int)n, 0.0, g, (int)p);
        t = now() - t;
        best = r > 0 && t < best ? t : best;
    }
    dgemm_gf = 2.0 * (double)p * (double)p * (double)n / best / 1e9;
    printf("dgemm_shape=X^T*X (%zux%zu times %zux%zu)\ndgemm_s=%.4f\ndgemm_gflops=%.1f\n", p, n, n,
           p, best, dgemm_gf);
    {
        int sq = 2048;

        a = xmalloc((size_t)sq * sq * 2 * sizeof *a);
        gauss_fill(a, (size_t)sq * sq);
        best = INFINITY;
        for (r = 0; r < repeat; r++) {
            t = now();
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, sq, sq, sq, 1.0, a, sq, a, sq,
                        0.0, a + (size_t)sq * sq, sq);
            t = now() - t;
            best = t < best ? t : best;
        }
        sq_gf = 2.0 * sq * (double)sq * sq / best / 1e9;
        printf("dgemm_square2048_gflops=%.1f\n", sq_gf);
        free(a);
    }

    /* ---- (2) the Gram phase: the fit's X^T X (dsyrk over shares of the rows, one per
     * thread of the zone's pool, as cmp_model_fit runs it) ---- */
    best = INFINITY;
    for (r = 0; r < repeat; r++) {
        t = now();
        if (cmp_model_gram(x, n, p, g, &err) != SL_OK) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
        t = now() - t;
        best = t < best ? t : best;
    }
    gram_s = best;
    gram_gf = (double)p * (double)(p + 1) * (double)n / gram_s / 1e9;
    printf("gram_s=%.4f\ngram_gflops=%.1f\ngram_over_dgemm=%.3f\ngram_over_dgemm_square=%.3f\n"
           "dgemm_s_over_gram_s=%.3f\n",
           gram_s, gram_gf, gram_gf / dgemm_gf, gram_gf / sq_gf,
           2.0 * (double)p * (double)p * (double)n / dgemm_gf / 1e9 / gram_s);

    /* ---- (3) ridge ---- */
    memset(&mp, 0, sizeof mp);
    mp.type = CMP_LINEAR;
    mp.l2 = 0;
    memset(&lin, 0, sizeof lin);
    for (r = 0; r < repeat; r++) {
        cmp_model_free(&lin);
        t = now();
        if (cmp_model_fit(&mp, x, n, p, ylin, &lin, &err) != SL_OK) {
            fprintf(stderr, "bench_train: ridge: %s\n", err.msg);
            return 1;
        }
        t = now() - t;
        ridge_s = t < ridge_s ? t : ridge_s;
    }
    printf("ridge_s=%.4f\nridge_gram_share=%.2f\nridge_mse=%.9f\n", ridge_s, gram_s / ridge_s,
           lin.loss);

    /* ---- (4) logistic ---- */
    memset(&mp, 0, sizeof mp);
    mp.type = CMP_LOGISTIC;
    mp.l2 = 1.0 / (double)n;
    mp.max_iter = 100;
    mp.tol = tol;
    t = now();
    if (cmp_model_fit(&mp, x, n, p, y, &lg, &err) != SL_OK) {
        fprintf(stderr, "bench_train: logistic: %s\n", err.msg);
        return 1;
    }
    logistic_s = now() - t;
    pen = 0;
    for (j = 0; j < p; j++)
        pen += 0.5 * mp.l2 * lg.coef[j] * lg.coef[j];
    logloss_unpen = lg.loss - pen;
    if (cmp_model_eval(&lg, x, n, p, y, &mt, &err) != SL_OK) {
        fprintf(stderr, "bench_train: logistic metrics: %s\n", err.msg);
        return 1;
    }
    printf("logistic_l2=%.3g\nlogistic_tol=%.3g\nlogistic_s=%.4f\nlogistic_iter=%d\n"
           "logistic_grad_norm=%.3g\nlogistic_logloss=%.12f\nlogistic_obj=%.12f\n"
           "logistic_accuracy=%.4f\nlogistic_auc=%.4f\n",
           mp.l2, mp.tol, logistic_s, lg.iterations, lg.grad_norm, logloss_unpen, lg.loss,
           mt.accuracy, mt.roc_auc);

    /* ---- the accurate Gram path: every column shifted by 100, in place, last ---- */
    for (i = 0; i < n * p; i++)
        x[i] += 100;
    mp.type = CMP_LINEAR;
    mp.l2 = 0;
    for (r = 0; r < repeat; r++) {
        t = now();
        if (cmp_model_fit(&mp, x, n, p, ylin, &tmp, &err) != SL_OK) {
            fprintf(stderr, "bench_train: ridge (shifted): %s\n", err.msg);
            return 1;
        }
        t = now() - t;
        ridge_shift_s = t < ridge_shift_s ? t : ridge_shift_s;
        cmp_model_free(&tmp);
    }
    printf("ridge_shifted_s=%.4f\n", ridge_shift_s);
    free(x);
    free(z);
    free(g);
    free(w);
    free(v);
    free(y);
    fflush(stdout);

    /* ---- scikit-learn ---- */
    if (sklearn) {
        if (run_sklearn(py, dir, n, p, repeat, &sk) != 0) {
            fail = 1;
        } else {
            double ref[4097];

            if (read_file(dir, "sk_lin_coef.f64", ref, p + 1) == 0)
                printf("ridge_coef_rel_diff=%.3g\n", coef_diff(&lin, ref));
            if (read_file(dir, "sk_log_coef.f64", ref, p + 1) == 0)
                printf("logistic_coef_rel_diff=%.3g\n", coef_diff(&lg, ref));
            printf("logistic_ratio=%.3f\nridge_speedup=%.1f\n", logistic_s / sk.logistic_s,
                   sk.ridge_s / ridge_s);
        }
        if (!keep) {
            remove_file(dir, "x.f64");
            remove_file(dir, "y.f64");
            remove_file(dir, "ylin.f64");
            remove_file(dir, "sk_lin_coef.f64");
            remove_file(dir, "sk_log_coef.f64");
            rmdir(dir);
        }
    }

    /* ---- summary ---- */
    printf("train data: %zu rows x %zu features, %d BLAS threads\n", n, p,
           openblas_get_num_threads());
    printf("train gram: X^T X %.1f GFLOP/s (%.3f s), %.2f of dgemm's %.1f GFLOP/s on X^T X "
           "(target >= 0.70; %.2f of a square 2048 dgemm's %.1f); the dgemm takes %.2fx as long\n",
           gram_gf, gram_s, gram_gf / dgemm_gf, dgemm_gf, gram_gf / sq_gf, sq_gf,
           2.0 * (double)p * (double)p * (double)n / dgemm_gf / 1e9 / gram_s);
    if (sklearn && !fail) {
        printf("train ridge: sluice %.3f s (%.3f s with means far from 0), scikit-learn "
               "LinearRegression %.3f s: %.1fx faster (target >= 20x)\n",
               ridge_s, ridge_shift_s, sk.ridge_s, sk.ridge_s / ridge_s);
        printf("train logistic: sluice %.3f s (%d newton steps to max |gradient| %.2g, log-loss "
               "%.10f), scikit-learn lbfgs %.3f s (%d iterations to %.2g, log-loss %.10f): "
               "ratio %.3f (target <= 0.33)\n",
               logistic_s, lg.iterations, lg.grad_norm, logloss_unpen, sk.logistic_s, sk.iter,
               sk.grad_norm, sk.logloss, logistic_s / sk.logistic_s);
    } else {
        printf("train ridge: sluice %.3f s (%.3f s with means far from 0), no scikit-learn "
               "comparison\n",
               ridge_s, ridge_shift_s);
        printf("train logistic: sluice %.3f s (%d newton steps, log-loss %.10f), no "
               "scikit-learn comparison\n",
               logistic_s, lg.iterations, logloss_unpen);
    }
    free(ylin);
    cmp_model_free(&lin);
    cmp_model_free(&lg);
    return fail;
}

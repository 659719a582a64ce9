/*
 * compute/cmp_model.c: the models a zone trains, on OpenBLAS (cblas) and LAPACKE. Memory and
 * BLAS only, so they run inside the zone's sandbox: no file, no clock, no getrandom, and no
 * qsort (glibc's asks the kernel for the machine's memory the first time it sorts much).
 *
 * Ridge (CMP_LINEAR) minimises ||y - Xb - c||^2 + l2 ||b||^2. X and y are centred (c then
 * follows from the means), the Gram matrix Xc^T Xc comes from one dsyrk, l2 goes on its
 * diagonal and Cholesky (dpotrf/dpotrs) solves the normal equations. When that system is
 * singular or too ill-conditioned to trust (reciprocal condition under 1e-8, l2 = 0 with
 * collinear features, one-hot columns), the same problem is solved by dgelsd (SVD, the
 * minimum-norm solution) on a centred copy of X, stacked on sqrt(l2) I when l2 > 0: exact
 * where the normal equations are not, at the price of a copy of X. loss: the training MSE.
 *
 * Logistic regression (CMP_LOGISTIC), y in {0, 1}, minimises
 *     f(b, c) = (1/n) sum_i [log(1 + exp(z_i)) - y_i z_i] + (l2 / 2) ||b||^2,  z_i = x_i.b + c,
 * the mean log-loss plus a penalty on the coefficients only. scikit-learn's objective
 * C sum_i loss_i + ||b||^2 / 2 is n C f: its C is 1 / (n l2). Newton's method from b = 0,
 * c = logit(mean y): gradient by dgemv, Hessian [X 1]^T W [X 1] / n + l2 by dsyrk over
 * blocks of rows scaled by sqrt(w_i) (a block, never a copy of X), Cholesky (a multiple of
 * the identity is added when it fails: l2 = 0 with collinear features), then a backtracking
 * line search on f (Armijo, c1 = 1e-4, steps halved; the comparison forgives a few ulps of
 * f, which compensated sums compute to about that). With many rows (HESS_SAMPLE_MIN_ROWS)
 * the Hessian is first the mean over 32 blocks of rows spread evenly through X: a few
 * percent off at a quarter of the cost or less, so the step is still a descent direction
 * and converges linearly at about that rate; the gradient and the stopping rule stay exact.
 * As soon as a step with it is cut by the line search or fails to halve max |gradient|
 * (a feature the sample misses, say), every later step uses every row: Newton's method
 * proper. It stops when max |gradient of f| (coefficients and intercept) <= tol, after
 * max_iter steps, or when no step decreases f any more (rounding): grad_norm says which.
 * loss: f at the solution.
 *
 * k-means (CMP_KMEANS): greedy k-means++ seeding (scikit-learn's: of 2 + ln k rows drawn by
 * squared distance, the one that leaves the least potential), xoshiro256** seeded by
 * splitmix64(seed), then Lloyd iterations; each row's nearest centre from ||c||^2 - 2 x.c
 * with dgemm over blocks of rows (ties to the lower index), its distance then computed
 * directly. A centre left without rows moves to the row farthest from its own centre. It
 * stops when no centre moved more than tol (Euclidean) or after max_iter iterations. loss:
 * the inertia of the final centres. The same seed gives the same centres on the same
 * machine and BLAS threads (dgemm's rounding may differ between BLAS builds).
 *
 * PCA (CMP_PCA): the sample covariance (centred Gram / (n - 1)) and its top eigenpairs by
 * dsyevr. explained_variance_ratio_total is their share of the covariance's trace (0 when
 * the data has no variance).
 *
 * The centred Gram matrix is dsyrk on X itself minus n m m^T when every column's mean is at
 * most its standard deviation (then at most one bit is lost to the subtraction: the fast
 * path, at dsyrk's speed); otherwise dsyrk runs over centred copies of blocks of rows.
 */
#include "cmp_model.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ROWS      4096 /* rows per block copied for dsyrk (4096 x 64 doubles: 2 MiB) */
#define SUM_BLOCK       2048 /* rows summed plainly before a compensated sum takes over */
#define KMEANS_MAX_K    1024
#define KMEANS_SCRATCH  (1u << 19) /* doubles of a block's distances (4 MiB) */
#define KMEANS_TRIALS   8          /* greedy k-means++ candidates at most (2 + ln 1024) */
#define LINEAR_RCOND    1e-8       /* below: dgelsd rather than the normal equations */
#define NEWTON_RCOND    1e-12      /* below: the Newton system gets a multiple of I */
#define ARMIJO_C1       1e-4
#define LINE_SEARCH_MAX 60
/* logistic Hessians from 32 blocks of rows (131072) once the rows are at least 4 times that */
#define HESS_SAMPLE_BLOCKS   32
#define HESS_SAMPLE_MIN_ROWS (4 * HESS_SAMPLE_BLOCKS * BLOCK_ROWS)

/* ---- small helpers ---- */

/* n doubles, zeroed, or NULL (overflow or no memory). */
static double *
dnew(size_t n)
{
    if (n > SIZE_MAX / sizeof(double))
        return NULL;
    return calloc(n ? n : 1, sizeof(double));
}

/* a * b doubles, or NULL. */
static double *
dnew2(size_t a, size_t b)
{
    if (b != 0 && a > SIZE_MAX / b)
        return NULL;
    return dnew(a * b);
}

/* Neumaier's compensated sum. */
typedef struct {
    double s, c;
} ksum;

static void
ksum_add(ksum *k, double v)
{
    double t = k->s + v;

    if (fabs(k->s) >= fabs(v))
        k->c += (k->s - t) + v;
    else
        k->c += (v - t) + k->s;
    k->s = t;
}

static double
ksum_get(const ksum *k)
{
    return k->s + k->c;
}

/*
 * Sums and sums of squares of each column: four plain partial sums over blocks of SUM_BLOCK
 * rows, the blocks' sums compensated. 0 when one is not finite: a value is infinite or NaN
 * (they propagate) or too large to square.
 */
static int
col_sums(const double *x, size_t n, size_t p, double *sum, double *sumsq)
{
    size_t j, i, e, i0;

    for (j = 0; j < p; j++) {
        const double *c = x + j * n;
        ksum s = {0, 0}, q = {0, 0};

        for (i0 = 0; i0 < n; i0 += SUM_BLOCK) {
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;

            e = n - i0 < SUM_BLOCK ? n : i0 + SUM_BLOCK;
            for (i = i0; i + 4 <= e; i += 4) {
                double v0 = c[i], v1 = c[i + 1], v2 = c[i + 2], v3 = c[i + 3];

                a0 += v0;
                a1 += v1;
                a2 += v2;
                a3 += v3;
                b0 += v0 * v0;
                b1 += v1 * v1;
                b2 += v2 * v2;
                b3 += v3 * v3;
            }
            for (; i < e; i++) {
                a0 += c[i];
                b0 += c[i] * c[i];
            }
            ksum_add(&s, (a0 + a1) + (a2 + a3));
            ksum_add(&q, (b0 + b1) + (b2 + b3));
        }
        sum[j] = ksum_get(&s);
        sumsq[j] = ksum_get(&q);
        if (!isfinite(sum[j]) || !isfinite(sumsq[j]))
            return 0;
    }
    return 1;
}

static double
sigmoid(double z)
{
    double e;

    if (z >= 0)
        return 1 / (1 + exp(-z));
    e = exp(z);
    return e / (1 + e);
}

/* The shape every function takes: BLAS counts in int, the matrix's bytes in size_t. */
static sl_code
check_shape(const double *x, size_t n, size_t p, sl_err *err)
{
    if (x == NULL)
        return sl_err_set(err, SL_EINVALID, "the data is required");
    if (n < 1)
        return sl_err_set(err, SL_EINVALID, "the data has no rows");
    if (p < 1)
        return sl_err_set(err, SL_EINVALID, "the data has no features");
    if (n > INT_MAX)
        return sl_err_set(err, SL_EINVALID, "the data has too many rows (at most %d)", INT_MAX);
    if (p > INT_MAX - 1)
        return sl_err_set(err, SL_EINVALID, "the data has too many features");
    if (n > SIZE_MAX / sizeof(double) / p)
        return sl_err_set(err, SL_EINVALID, "the data is too large");
    return SL_OK;
}

/* y finite (linear) or 0/1 (logistic); *mean its mean. */
static sl_code
check_target(cmp_model_type t, const double *y, size_t n, double *mean, sl_err *err)
{
    double s, q;
    size_t i;

    if (y == NULL)
        return sl_err_set(err, SL_EINVALID, "linear and logistic regression need a target");
    if (t == CMP_LOGISTIC)
        for (i = 0; i < n; i++)
            if (y[i] != 0.0 && y[i] != 1.0)
                return sl_err_set(err, SL_EINVALID,
                                  "logistic regression needs a target of 0 and 1 values");
    if (!col_sums(y, n, 1, &s, &q))
        return sl_err_set(err, SL_EINVALID,
                          "the target has a value that is not finite or is too large");
    *mean = s / (double)n;
    return SL_OK;
}

/*
 * Solves a d = rhs in place (d holds rhs on entry) for a symmetric a (upper triangle, m x m,
 * left as it is), by Cholesky into f (m x m). Without damping, 0 only when a is positive
 * definite with a reciprocal condition number of at least min_rcond; with it, a growing
 * multiple of the identity is added until that holds. -1 when it cannot be solved.
 */
static int
spd_solve(const double *a, int m, double *d, double *f, double min_rcond, int damp)
{
    double anorm = LAPACKE_dlansy(LAPACK_COL_MAJOR, '1', 'U', m, a, m), mu = 0, rcond;
    int t, j, info;

    if (!isfinite(anorm))
        return -1;
    for (t = 0; t < (damp ? 12 : 1); t++) {
        memcpy(f, a, (size_t)m * (size_t)m * sizeof *f);
        for (j = 0; j < m; j++)
            f[(size_t)j * (size_t)m + (size_t)j] += mu;
        info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', m, f, m);
        if (info == 0)
            info = LAPACKE_dpocon(LAPACK_COL_MAJOR, 'U', m, f, m, anorm + mu, &rcond);
        if (info == 0 && rcond >= min_rcond)
            return LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', m, 1, f, m, d, m) == 0 ? 0 : -1;
        mu = mu == 0 ? 1e-10 * (anorm > 0 ? anorm : 1) : mu * 100;
    }
    return -1;
}

/* ---- the centred Gram matrix ---- */

/*
 * A product of the form X_w^T X_w over many rows, shared out: each part of the zone's
 * pool takes the blocks k = part, part + parts, ... of BLOCK_ROWS rows (whole ranges of
 * rows when the rows are used as they are), with single-threaded BLAS into its own
 * m x m upper triangle, which the caller then sums (OpenBLAS's dsyrk keeps one thread
 * busy at p = 64; two shares of the rows run at twice its speed).
 */
typedef struct {
    const double *x;   /* n x p, column-major */
    size_t n, p, m;    /* m: the product's order (p, or p + 1 with the weights' column) */
    const double *sum; /* centring: the columns' sums (NULL: none) */
    const double *z;   /* logistic: the linear predictor (weights from it) */
    int direct;        /* the rows as they are, no copy */
    size_t nuse, nblocks;
    double alpha;
    double *out[64]; /* each part's m x m */
    int failed;
} gram_job;

/* Block k's rows: the first and the count. */
static size_t
block_rows(const gram_job *j, size_t k, size_t *i0)
{
    *i0 = (j->nuse == j->nblocks ? k : k * j->nblocks / j->nuse) * BLOCK_ROWS;
    return j->n - *i0 < BLOCK_ROWS ? j->n - *i0 : BLOCK_ROWS;
}

static void
gram_part(void *ctx, int part, int parts)
{
    gram_job *j = ctx;
    double *g = j->out[part], *buf;
    size_t k, i0, i, c, b;
    int first = 1;

    if (j->direct) {
        size_t a = j->n * (size_t)part / (size_t)parts,
               e = j->n * (size_t)(part + 1) / (size_t)parts;
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)j->p, (int)(e - a), j->alpha,
                    j->x + a, (int)j->n, 0.0, g, (int)j->m);
        return;
    }
    buf = dnew2(BLOCK_ROWS, j->m);
    if (buf == NULL) {
        j->failed = 1;
        return;
    }
    memset(g, 0, j->m * j->m * sizeof *g);
    for (k = (size_t)part; k < j->nuse; k += (size_t)parts) {
        b = block_rows(j, k, &i0);
        if (j->z != NULL) {
            /* the logistic Hessian's rows: sqrt(w_i) x_i, and sqrt(w_i) for the intercept */
            double *sw = buf + j->p * b;
            for (i = 0; i < b; i++) {
                double e2 = exp(-0.5 * fabs(j->z[i0 + i]));
                sw[i] = e2 / (1 + e2 * e2);
            }
            for (c = 0; c < j->p; c++) {
                const double *col = j->x + c * j->n + i0;
                double *d = buf + c * b;
                for (i = 0; i < b; i++)
                    d[i] = sw[i] * col[i];
            }
        } else {
            for (c = 0; c < j->p; c++) {
                const double *col = j->x + c * j->n + i0;
                double *d = buf + c * b, mean = j->sum[c] / (double)j->n;
                for (i = 0; i < b; i++)
                    d[i] = col[i] - mean;
            }
        }
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)j->m, (int)b, j->alpha, buf, (int)b,
                    first ? 0.0 : 1.0, g, (int)j->m);
        first = 0;
    }
    free(buf);
}

/* Runs the job on the pool into g (m x m, upper triangle); SL_ENOMEM when a part could
 * not have its block buffer. */
static sl_code
gram_run(gram_job *j, double *g, sl_err *err)
{
    int parts = cmp_pool_threads(), k;
    size_t l, c, mm = j->m * j->m;
    sl_code rc = SL_OK;

    if (parts > 64)
        parts = 64;
    if (parts > 1 && j->n < (size_t)parts * BLOCK_ROWS)
        parts = 1; /* not worth the hand-over */
    j->out[0] = g;
    for (k = 1; k < parts; k++)
        if ((j->out[k] = dnew(mm)) == NULL)
            rc = SL_ENOMEM;
    if (rc == SL_OK) {
        if (parts > 1)
            cmp_pool_run(gram_part, j);
        else
            gram_part(j, 0, 1);
        for (k = 1; k < parts; k++)
            for (l = 0; l < j->m; l++)
                for (c = 0; c <= l; c++)
                    g[l * j->m + c] += j->out[k][l * j->m + c];
    }
    for (k = 1; k < parts; k++)
        free(j->out[k]);
    if (rc != SL_OK || j->failed)
        return sl_err_set(err, SL_ENOMEM, "out of memory for the gram matrix");
    return SL_OK;
}

sl_code
cmp_model_gram(const double *x, size_t n, size_t p, double *g, sl_err *err)
{
    gram_job job;

    memset(&job, 0, sizeof job);
    job.x = x;
    job.n = n;
    job.p = job.m = p;
    job.direct = 1;
    job.alpha = 1.0;
    job.nblocks = job.nuse = (n + BLOCK_ROWS - 1) / BLOCK_ROWS;
    return gram_run(&job, g, err);
}

/*
 * g (p x p, upper triangle, column-major) = (X - 1 m^T)^T (X - 1 m^T), m = sum / n. The
 * subtraction n m m^T after dsyrk on X loses log2(1 + m_j^2 / var_j) bits in column j; it is
 * used when that is at most one bit in every column, blocks of centred rows otherwise.
 */
static sl_code
gram_centred(const double *x, size_t n, size_t p, const double *sum, const double *sumsq, double *g,
             sl_err *err)
{
    gram_job job;
    double dn = (double)n;
    size_t j, l;
    sl_code rc;

    memset(&job, 0, sizeof job);
    job.x = x;
    job.n = n;
    job.p = job.m = p;
    job.sum = sum;
    job.direct = 1;
    job.alpha = 1.0;
    job.nblocks = job.nuse = (n + BLOCK_ROWS - 1) / BLOCK_ROWS;
    for (j = 0; j < p; j++)
        if (2 * (sum[j] / dn) * (sum[j] / dn) > sumsq[j] / dn)
            job.direct = 0;
    if ((rc = gram_run(&job, g, err)) != SL_OK)
        return rc;
    if (job.direct)
        for (l = 0; l < p; l++)
            for (j = 0; j <= l; j++)
                g[l * p + j] -= sum[j] * (sum[l] / dn);
    return SL_OK;
}

/* ---- ridge ---- */

/*
 * The ridge problem by dgelsd: [Xc; sqrt(l2) I] b = [yc; 0] in the least-squares sense,
 * minimum norm. yc: n values.
 */
static sl_code
ridge_lstsq(const double *x, size_t n, size_t p, const double *sum, const double *yc, double l2,
            double *coef, sl_err *err)
{
    size_t rows = n + (l2 > 0 ? p : 0), ldb, i, j;
    double *a = NULL, *rhs = NULL, *s = NULL;
    lapack_int rank, info;
    sl_code rc = SL_ENOMEM;

    if (rows > INT_MAX) {
        rc = sl_err_set(err, SL_EINTERNAL,
                        "the linear system is singular and too large to solve by least squares");
        goto out;
    }
    ldb = rows > p ? rows : p;
    a = dnew2(rows, p);
    rhs = dnew(ldb);
    s = dnew(p);
    if (a == NULL || rhs == NULL || s == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for a least-squares solve");
        goto out;
    }
    for (j = 0; j < p; j++) {
        const double *c = x + j * n;
        double *d = a + j * rows, m = sum[j] / (double)n;

        for (i = 0; i < n; i++)
            d[i] = c[i] - m;
        if (rows > n)
            d[n + j] = sqrt(l2); /* the rest of the column is calloc's zeros */
    }
    memcpy(rhs, yc, n * sizeof *rhs);
    info =
        LAPACKE_dgelsd(LAPACK_COL_MAJOR, (lapack_int)rows, (lapack_int)p, 1, a, (lapack_int)rows,
                       rhs, (lapack_int)ldb, s, DBL_EPSILON * (double)(rows > p ? rows : p), &rank);
    if (info != 0) {
        rc = sl_err_set(err, SL_EINTERNAL, "could not solve the linear regression");
        sl_err_detail(err, "LAPACKE_dgelsd: info %d", (int)info);
        goto out;
    }
    memcpy(coef, rhs, p * sizeof *coef);
    rc = SL_OK;
out:
    free(a);
    free(rhs);
    free(s);
    return rc;
}

static sl_code
fit_linear(const cmp_model_params *mp, const double *x, size_t n, size_t p, const double *y,
           double ym, const double *sum, const double *sumsq, cmp_model *out, sl_err *err)
{
    double *a = NULL, *f = NULL, *r = NULL, *xty = NULL, *b, c, yty, bxy = 0, bb = 0, ss;
    size_t i, j;
    ksum s = {0, 0};
    int normal;
    sl_code rc = SL_ENOMEM;

    a = dnew2(p, p);
    f = dnew2(p, p);
    r = dnew(n);
    xty = dnew(p);
    b = out->coef = dnew(p);
    if (a == NULL || f == NULL || r == NULL || xty == NULL || b == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for a linear regression");
        goto out;
    }
    for (i = 0; i < n; i++) {
        r[i] = y[i] - ym;
        ksum_add(&s, r[i] * r[i]);
    }
    yty = ksum_get(&s);
    rc = gram_centred(x, n, p, sum, sumsq, a, err);
    if (rc != SL_OK)
        goto out;
    /* Xc^T yc = X^T yc: yc sums to zero */
    cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)p, 1.0, x, (int)n, r, 1, 0.0, xty, 1);
    for (j = 0; j < p; j++)
        a[j * p + j] += mp->l2;
    memcpy(b, xty, p * sizeof *b);
    normal = spd_solve(a, (int)p, b, f, LINEAR_RCOND, 0) == 0;
    if (!normal) {
        rc = ridge_lstsq(x, n, p, sum, r, mp->l2, b, err);
        if (rc != SL_OK)
            goto out;
    }
    c = ym;
    for (j = 0; j < p; j++) {
        c -= sum[j] / (double)n * b[j];
        bxy += b[j] * xty[j];
        bb += b[j] * b[j];
    }
    out->intercept = c;
    /* The training MSE. From the normal equations, SSres = yc.yc - b.(Xc^T yc) - l2 ||b||^2,
     * off by about eps yc.yc / SSres relatively: kept when that is under 1e-10; else (and
     * after dgelsd) from the residuals y - c - Xb, a pass over X. */
    ss = yty - bxy - mp->l2 * bb;
    if (!normal || !(ss >= 1e-6 * yty)) {
        for (i = 0; i < n; i++)
            r[i] = y[i] - c;
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, -1.0, x, (int)n, b, 1, 1.0, r, 1);
        s.s = s.c = 0;
        for (i = 0; i < n; i++)
            ksum_add(&s, r[i] * r[i]);
        ss = ksum_get(&s);
    }
    out->loss = ss / (double)n;
    if (!isfinite(out->loss) || !isfinite(c)) {
        rc = sl_err_set(err, SL_EINTERNAL, "the linear regression did not give finite values");
        goto out;
    }
    rc = SL_OK;
out:
    free(a);
    free(f);
    free(r);
    free(xty);
    return rc;
}

/* ---- logistic regression ---- */

/*
 * At z + t u (u NULL: at z), one exp and one log1p a row, without branches on the data:
 * returns (1/n) sum_i loss_i with loss(z) = softplus(z) - y z, that is softplus(-z) for y = 1
 * and softplus(z) for y = 0 (no cancellation); r_i = s(z_i) - y_i, the gradient's residual
 * (for y = 1, -s(-z_i): no cancellation either), and *rsum their sum. Plain sums over chunks
 * of SUM_BLOCK rows, compensated across chunks.
 */
static double
logistic_eval(const double *y, const double *z, const double *u, double t, size_t n, double *r,
              double *rsum)
{
    ksum s = {0, 0}, rs = {0, 0};
    size_t i0, i, e;

    for (i0 = 0; i0 < n; i0 += SUM_BLOCK) {
        double ls = 0, lr = 0;

        e = n - i0 < SUM_BLOCK ? n : i0 + SUM_BLOCK;
        for (i = i0; i < e; i++) {
            double zi = u != NULL ? z[i] + t * u[i] : z[i], ex = exp(-fabs(zi));
            double sign = 1 - 2 * y[i], v = sign * zi; /* y = 1: -z, y = 0: z */
            /* s(z) = (z >= 0 ? 1 : e) / (1 + e); s(-z) = (z >= 0 ? e : 1) / (1 + e) */
            double num = (zi >= 0) != (y[i] != 0) ? 1 : ex;

            ls += (v > 0 ? v : 0) + log1p(ex);
            r[i] = sign * num / (1 + ex);
            lr += r[i];
        }
        ksum_add(&s, ls);
        ksum_add(&rs, lr);
    }
    *rsum = ksum_get(&rs);
    return ksum_get(&s) / (double)n;
}

/* (l2 / 2) ||b + t d||^2 */
static double
penalty(const double *b, const double *d, double t, size_t p, double l2)
{
    double s = 0;
    size_t j;

    for (j = 0; j < p; j++) {
        double v = b[j] + t * d[j];

        s += v * v;
    }
    return 0.5 * l2 * s;
}

/*
 * h ((p+1) x (p+1), upper) = [X 1]^T W [X 1] / rows + l2 on the coefficients' diagonal,
 * w_i = s(z_i) (1 - s(z_i)) = e / (1 + e)^2 with e = exp(-|z_i|), over every row, or over
 * HESS_SAMPLE_BLOCKS blocks of BLOCK_ROWS rows spread evenly when sample is set (the mean
 * over those rows: a Hessian within a few percent at a fraction of the cost). buf:
 * BLOCK_ROWS x (p+1).
 */
static sl_code
logistic_hessian(const double *x, size_t n, size_t p, const double *z, double l2, int sample,
                 double *h, sl_err *err)
{
    gram_job job;
    size_t nblocks = (n + BLOCK_ROWS - 1) / BLOCK_ROWS, k, i0, rows = 0, j, m = p + 1;
    sl_code rc;

    memset(&job, 0, sizeof job);
    job.x = x;
    job.n = n;
    job.p = p;
    job.m = m;
    job.z = z;
    job.nblocks = nblocks;
    job.nuse = sample && nblocks > HESS_SAMPLE_BLOCKS ? HESS_SAMPLE_BLOCKS : nblocks;
    for (k = 0; k < job.nuse; k++)
        rows += block_rows(&job, k, &i0);
    job.alpha = 1.0 / (double)rows;
    if ((rc = gram_run(&job, h, err)) != SL_OK)
        return rc;
    for (j = 0; j < p; j++)
        h[j * m + j] += l2;
    return SL_OK;
}

static sl_code
fit_logistic(const cmp_model_params *mp, const double *x, size_t n, size_t p, const double *y,
             double ym, cmp_model *out, sl_err *err)
{
    size_t m = p + 1, i, j;
    double *th = NULL, *g = NULL, *d = NULL, *h = NULL, *f = NULL, *z = NULL, *u = NULL;
    double *r = NULL, l2 = mp->l2, dn = (double)n, obj, gn = INFINITY, c0, yb;
    double rsum, last_gn = INFINITY, last_t = 1;
    int it = 0, sample = n >= HESS_SAMPLE_MIN_ROWS;
    sl_code rc = SL_ENOMEM;

    th = dnew(m);
    g = dnew(m);
    d = dnew(m);
    h = dnew2(m, m);
    f = dnew2(m, m);
    z = dnew(n);
    u = dnew(n);
    r = dnew(n);
    out->coef = dnew(p);
    if (th == NULL || g == NULL || d == NULL || h == NULL || f == NULL || z == NULL || u == NULL ||
        r == NULL || out->coef == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for a logistic regression");
        goto out;
    }
    /* b = 0, c = logit(mean y): the optimum of the intercept alone when l2 is 0 */
    yb = ym < 1e-10 ? 1e-10 : ym > 1 - 1e-10 ? 1 - 1e-10 : ym;
    c0 = log(yb / (1 - yb));
    th[p] = c0;
    for (i = 0; i < n; i++)
        z[i] = c0;
    obj = logistic_eval(y, z, NULL, 0, n, r, &rsum);
    for (;;) {
        double gd = 0, t = 1, ft = obj;
        int ls;

        /* gradient: (1/n) X^T (s(z) - y) + l2 b, and the intercept's (1/n) sum (s(z) - y) */
        for (j = 0; j < p; j++)
            g[j] = l2 * th[j];
        cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)p, 1.0 / dn, x, (int)n, r, 1, 1.0, g,
                    1);
        g[p] = rsum / dn;
        gn = 0;
        for (j = 0; j < m; j++)
            gn = fabs(g[j]) > gn ? fabs(g[j]) : gn;
        if (!isfinite(gn)) {
            rc = sl_err_set(err, SL_EINTERNAL, "the logistic regression diverged");
            goto out;
        }
        if (gn <= mp->tol || it >= mp->max_iter)
            break;
        /* a sampled Hessian must earn its keep: after a cut step or a gradient not halved,
         * every later step takes the whole one (Newton's own convergence) */
        if (sample && it > 0 && (last_t < 1 || gn > 0.5 * last_gn))
            sample = 0;
        if ((rc = logistic_hessian(x, n, p, z, l2, sample, h, err)) != SL_OK)
            goto out;
        for (j = 0; j < m; j++)
            d[j] = -g[j];
        if (spd_solve(h, (int)m, d, f, NEWTON_RCOND, 1) != 0) {
            rc = sl_err_set(err, SL_EINTERNAL,
                            "could not solve a newton step of the logistic regression");
            goto out;
        }
        for (j = 0; j < m; j++)
            gd += g[j] * d[j];
        if (!(gd < 0) && sample) {
            sample = 0; /* the sample misled: this step again with every row */
            continue;
        }
        if (!(gd < 0))
            break; /* no descent left: rounding */
        /* u = X d_b + d_c: z along the step is z + t u, so no pass over X per trial */
        for (i = 0; i < n; i++)
            u[i] = d[p];
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, 1.0, x, (int)n, d, 1, 1.0, u, 1);
        for (ls = 0; ls < LINE_SEARCH_MAX; ls++, t *= 0.5) {
            ft = logistic_eval(y, z, u, t, n, r, &rsum) + penalty(th, d, t, p, l2);
            if (ft <= obj + ARMIJO_C1 * t * gd + 64 * DBL_EPSILON * obj)
                break;
        }
        if (ls == LINE_SEARCH_MAX && sample) {
            sample = 0; /* as above; r back to this point's */
            (void)logistic_eval(y, z, NULL, 0, n, r, &rsum);
            continue;
        }
        if (ls == LINE_SEARCH_MAX)
            break; /* f cannot decrease any more: rounding (r is spoilt, gn stands) */
        /* r and rsum are those of the accepted step */
        for (j = 0; j < m; j++)
            th[j] += t * d[j];
        for (i = 0; i < n; i++)
            z[i] += t * u[i];
        obj = ft;
        last_gn = gn;
        last_t = t;
        it++;
        if (mp->progress != NULL)
            mp->progress(mp->progress_ctx, it, obj);
    }
    memcpy(out->coef, th, p * sizeof *th);
    out->intercept = th[p];
    out->loss = obj;
    out->grad_norm = gn;
    out->iterations = it;
    rc = SL_OK;
out:
    free(th);
    free(g);
    free(d);
    free(h);
    free(f);
    free(z);
    free(u);
    free(r);
    return rc;
}

/* ---- k-means ---- */

typedef struct {
    uint64_t s[4];
} rng;

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
rng_seed(rng *r, uint64_t seed)
{
    int i;

    for (i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t
rng_next(rng *r)
{
    uint64_t *s = r->s, v = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return v;
}

/* uniform in [0, 1) */
static double
rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static size_t
rng_below(rng *r, size_t n)
{
    size_t i = (size_t)(rng_unit(r) * (double)n);

    return i < n ? i : n - 1;
}

/*
 * Rows [i0, i0 + b): each row's nearest centre (the lower index on ties) from
 * ||c||^2 - 2 x.c, by dgemm into s (b x k, then b more for the best values), into lab; its
 * squared distance to that centre, computed directly, into dist. When sums is not NULL the
 * rows are added to their centre's sums (k x p, row-major) and counts.
 */
static void
assign_block(const double *x, size_t n, size_t p, size_t i0, size_t b, const double *cent, int k,
             const double *cc, double *s, int *lab, double *dist, double *sums, double *counts)
{
    double *best = s + b * (size_t)k;
    size_t i, j;
    int c;

    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)b, k, (int)p, 1.0, x + i0, (int)n,
                cent, (int)p, 0.0, s, (int)b);
    for (i = 0; i < b; i++) {
        best[i] = cc[0] - 2 * s[i];
        lab[i] = 0;
    }
    for (c = 1; c < k; c++) {
        const double *sc = s + (size_t)c * b;

        for (i = 0; i < b; i++) {
            double v = cc[c] - 2 * sc[i];

            if (v < best[i]) {
                best[i] = v;
                lab[i] = c;
            }
        }
    }
    for (j = 0; j < p; j++) {
        const double *col = x + j * n + i0;

        for (i = 0; i < b; i++) {
            double t = col[i] - cent[(size_t)lab[i] * p + j];

            dist[i] = j == 0 ? t * t : dist[i] + t * t;
            if (sums != NULL)
                sums[(size_t)lab[i] * p + j] += col[i];
        }
    }
    if (counts != NULL)
        for (i = 0; i < b; i++)
            counts[lab[i]] += 1;
}

static void
centre_norms(const double *cent, int k, size_t p, double *cc)
{
    size_t j;
    int c;

    for (c = 0; c < k; c++) {
        double v = 0;

        for (j = 0; j < p; j++)
            v += cent[(size_t)c * p + j] * cent[(size_t)c * p + j];
        cc[c] = v;
    }
}

/* Rows per block of distances: s holds rows x k of them. */
static size_t
kmeans_block(int k)
{
    size_t b = KMEANS_SCRATCH / (size_t)k;

    return b > BLOCK_ROWS ? BLOCK_ROWS : b < 64 ? 64 : b;
}

/* The inertia of rows against centres (a pass; label and dist hold each row's). */
static double
kmeans_pass(const double *x, size_t n, size_t p, const double *cent, int k, double *cc, double *s,
            int *label, double *dist, double *sums, double *counts)
{
    size_t bs = kmeans_block(k), i0, i, b;
    ksum in = {0, 0};

    centre_norms(cent, k, p, cc);
    for (i0 = 0; i0 < n; i0 += b) {
        b = n - i0 < bs ? n - i0 : bs;
        assign_block(x, n, p, i0, b, cent, k, cc, s, label + i0, dist + i0, sums, counts);
        for (i = 0; i < b; i++)
            ksum_add(&in, dist[i0 + i]);
    }
    return ksum_get(&in);
}

/* An index drawn with probability proportional to w (total: their sum, > 0); the last
 * positive one when rounding leaves the draw past the end. */
static size_t
draw_weighted(const double *w, size_t n, double total, rng *g)
{
    double target = rng_unit(g) * total, acc = 0;
    size_t i, last = n;

    for (i = 0; i < n; i++)
        if (w[i] > 0) {
            acc += w[i];
            last = i;
            if (acc > target)
                return i;
        }
    return last;
}

/*
 * Greedy k-means++ (scikit-learn's): the first centre a uniform row; each next one the best,
 * by the potential sum_i min(mind_i, ||x_i - c||^2) it leaves, of 2 + floor(ln k) rows drawn
 * with probability proportional to mind_i, the squared distance to the nearest centre so
 * far. Distances from ||x||^2 + ||c||^2 - 2 x.c (dgemv, and dgemm over blocks of rows for
 * the candidates), clamped at 0. mind, xx, tmp: n each; cand: KMEANS_TRIALS x p; s: the
 * distances' scratch (kmeans_block(KMEANS_TRIALS) x KMEANS_TRIALS).
 */
static void
kmeans_seed(const double *x, size_t n, size_t p, int k, rng *g, double *cent, double *mind,
            double *xx, double *tmp, double *cand, double *s)
{
    size_t trials = 2 + (size_t)log((double)k), bs = kmeans_block(KMEANS_TRIALS), i, j, i0, b;
    size_t pick[KMEANS_TRIALS], t, best, nt;
    double pot[KMEANS_TRIALS], cc[KMEANS_TRIALS], c2;
    int c;

    if (trials > KMEANS_TRIALS)
        trials = KMEANS_TRIALS;
    for (j = 0; j < p; j++)
        for (i = 0; i < n; i++)
            xx[i] = j == 0 ? x[i] * x[i] : xx[i] + x[j * n + i] * x[j * n + i];
    for (c = 0; c < k; c++) {
        double total = 0, *ce = cent + (size_t)c * p;

        if (c == 0) {
            pick[0] = rng_below(g, n);
            nt = 1;
        } else {
            for (i = 0; i < n; i++)
                total += mind[i];
            if (total > 0 && isfinite(total)) {
                for (t = 0; t < trials; t++)
                    pick[t] = draw_weighted(mind, n, total, g);
                nt = trials;
            } else {
                pick[0] = rng_below(g, n); /* every row is on a centre already */
                nt = 1;
            }
        }
        best = 0;
        if (nt > 1) {
            for (t = 0; t < nt; t++) {
                cc[t] = 0;
                for (j = 0; j < p; j++) {
                    cand[t * p + j] = x[j * n + pick[t]];
                    cc[t] += cand[t * p + j] * cand[t * p + j];
                }
                pot[t] = 0;
            }
            for (i0 = 0; i0 < n; i0 += b) {
                b = n - i0 < bs ? n - i0 : bs;
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)nt, (int)p, 1.0,
                            x + i0, (int)n, cand, (int)p, 0.0, s, (int)b);
                for (t = 0; t < nt; t++) {
                    double acc = 0;

                    for (i = 0; i < b; i++) {
                        double d = xx[i0 + i] + cc[t] - 2 * s[t * b + i];

                        d = d > 0 ? d : 0;
                        acc += d < mind[i0 + i] ? d : mind[i0 + i];
                    }
                    pot[t] += acc;
                }
            }
            for (t = 1; t < nt; t++)
                if (pot[t] < pot[best])
                    best = t;
        }
        c2 = 0;
        for (j = 0; j < p; j++) {
            ce[j] = x[j * n + pick[best]];
            c2 += ce[j] * ce[j];
        }
        if (c + 1 == k)
            break;
        /* the nearest centre's distance, with this one */
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, 1.0, x, (int)n, ce, 1, 0.0, tmp,
                    1);
        for (i = 0; i < n; i++) {
            double d = xx[i] + c2 - 2 * tmp[i];

            d = d > 0 ? d : 0;
            mind[i] = c == 0 || d < mind[i] ? d : mind[i];
        }
    }
}

static sl_code
fit_kmeans(const cmp_model_params *mp, const double *x, size_t n, size_t p, cmp_model *out,
           sl_err *err)
{
    int k = mp->k, c, it = 0, *label = NULL;
    size_t kp = (size_t)k * p, i, j, ns;
    double *newc = NULL, *sums = NULL, *counts = NULL, *cc = NULL, *dist = NULL, *s = NULL;
    double *cand = NULL;
    rng g;
    sl_code rc = SL_ENOMEM;

    out->centroids = dnew(kp);
    newc = dnew(kp);
    sums = dnew(kp);
    counts = dnew((size_t)k);
    cc = dnew((size_t)k);
    dist = dnew2(n, 3);
    cand = dnew2(KMEANS_TRIALS, p);
    /* the distances of a block of rows: Lloyd's (and their best), the seeding's candidates */
    ns = kmeans_block(k) * ((size_t)k + 1);
    if (ns < kmeans_block(KMEANS_TRIALS) * KMEANS_TRIALS)
        ns = kmeans_block(KMEANS_TRIALS) * KMEANS_TRIALS;
    s = dnew(ns);
    label = n <= SIZE_MAX / sizeof *label ? calloc(n, sizeof *label) : NULL;
    if (out->centroids == NULL || newc == NULL || sums == NULL || counts == NULL || cc == NULL ||
        dist == NULL || cand == NULL || s == NULL || label == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for k-means");
        goto out;
    }
    out->k = k;
    rng_seed(&g, mp->seed);
    kmeans_seed(x, n, p, k, &g, out->centroids, dist, dist + n, dist + 2 * n, cand, s);
    while (it < mp->max_iter) {
        double *cent = out->centroids, inertia, moved = 0;

        memset(sums, 0, kp * sizeof *sums);
        memset(counts, 0, (size_t)k * sizeof *counts);
        inertia = kmeans_pass(x, n, p, cent, k, cc, s, label, dist, sums, counts);
        for (c = 0; c < k; c++) {
            double *nc = newc + (size_t)c * p, d2 = 0;

            if (counts[c] > 0) {
                for (j = 0; j < p; j++)
                    nc[j] = sums[(size_t)c * p + j] / counts[c];
            } else {
                /* empty: the row farthest from its centre (the first of equals), once */
                size_t far = 0;

                for (i = 1; i < n; i++)
                    if (dist[i] > dist[far])
                        far = i;
                dist[far] = -1;
                for (j = 0; j < p; j++)
                    nc[j] = x[j * n + far];
            }
            for (j = 0; j < p; j++)
                d2 += (nc[j] - cent[(size_t)c * p + j]) * (nc[j] - cent[(size_t)c * p + j]);
            moved = d2 > moved ? d2 : moved;
        }
        memcpy(cent, newc, kp * sizeof *cent);
        it++;
        if (mp->progress != NULL)
            mp->progress(mp->progress_ctx, it, inertia);
        if (sqrt(moved) <= mp->tol)
            break;
    }
    out->iterations = it;
    out->loss = kmeans_pass(x, n, p, out->centroids, k, cc, s, label, dist, NULL, NULL);
    if (!isfinite(out->loss)) {
        rc = sl_err_set(err, SL_EINVALID, "the features are too large to cluster");
        goto out;
    }
    rc = SL_OK;
out:
    free(newc);
    free(sums);
    free(counts);
    free(cc);
    free(dist);
    free(cand);
    free(s);
    free(label);
    return rc;
}

/* ---- PCA ---- */

static sl_code
fit_pca(const cmp_model_params *mp, const double *x, size_t n, size_t p, const double *sum,
        const double *sumsq, cmp_model *out, sl_err *err)
{
    int nc = mp->components, r, found = 0;
    double *cov = NULL, *w = NULL, *zv = NULL, trace = 0, kept = 0;
    lapack_int *isuppz = NULL, info;
    size_t j;
    sl_code rc = SL_ENOMEM;

    cov = dnew2(p, p);
    w = dnew(p);
    zv = dnew2(p, (size_t)nc);
    isuppz = calloc(2 * p, sizeof *isuppz);
    out->components = dnew2((size_t)nc, p);
    out->mean = dnew(p);
    out->explained_variance = dnew((size_t)nc);
    if (cov == NULL || w == NULL || zv == NULL || isuppz == NULL || out->components == NULL ||
        out->mean == NULL || out->explained_variance == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for pca");
        goto out;
    }
    rc = gram_centred(x, n, p, sum, sumsq, cov, err);
    if (rc != SL_OK)
        goto out;
    for (j = 0; j < p * p; j++)
        cov[j] /= (double)(n - 1);
    for (j = 0; j < p; j++) {
        trace += cov[j * p + j];
        out->mean[j] = sum[j] / (double)n;
    }
    info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'U', (lapack_int)p, cov, (lapack_int)p, 0, 0,
                          (lapack_int)p - nc + 1, (lapack_int)p, DBL_MIN, &found, w, zv,
                          (lapack_int)p, isuppz);
    if (info != 0 || found != nc) {
        rc = sl_err_set(err, SL_EINTERNAL, "could not find the principal components");
        sl_err_detail(err, "LAPACKE_dsyevr: info %d, %d of %d eigenpairs", (int)info, found, nc);
        goto out;
    }
    /* dsyevr's order is ascending: component r is eigenpair nc - 1 - r */
    for (r = 0; r < nc; r++) {
        const double *v = zv + (size_t)(nc - 1 - r) * p;
        double *o = out->components + (size_t)r * p, big = 0, sign;

        for (j = 0; j < p; j++)
            if (fabs(v[j]) > fabs(big))
                big = v[j];
        sign = big < 0 ? -1 : 1;
        for (j = 0; j < p; j++)
            o[j] = sign * v[j];
        out->explained_variance[r] = w[nc - 1 - r] > 0 ? w[nc - 1 - r] : 0;
        kept += out->explained_variance[r];
    }
    out->ncomp = nc;
    out->explained_variance_ratio_total = trace > 0 ? kept / trace : 0;
    out->loss = 0;
    rc = SL_OK;
out:
    free(cov);
    free(w);
    free(zv);
    free(isuppz);
    return rc;
}

/* ---- the interface ---- */

static sl_code
check_params(const cmp_model_params *mp, size_t n, size_t p, sl_err *err)
{
    switch (mp->type) {
    case CMP_LINEAR:
    case CMP_LOGISTIC:
        if (!isfinite(mp->l2) || mp->l2 < 0)
            return sl_err_set(err, SL_EINVALID, "l2 must be a finite number >= 0");
        if (mp->type == CMP_LINEAR)
            return SL_OK;
        break;
    case CMP_KMEANS:
        if (mp->k < 1 || (size_t)mp->k > n || mp->k > KMEANS_MAX_K)
            return sl_err_set(err, SL_EINVALID, "k must be between 1 and %zu",
                              n < KMEANS_MAX_K ? n : (size_t)KMEANS_MAX_K);
        break;
    case CMP_PCA:
        if (mp->components < 1 || (size_t)mp->components > p)
            return sl_err_set(err, SL_EINVALID, "components must be between 1 and %zu", p);
        if (n < 2)
            return sl_err_set(err, SL_EINVALID, "pca needs at least 2 rows");
        return SL_OK;
    default:
        return sl_err_set(err, SL_EINVALID, "unknown model type");
    }
    if (mp->max_iter < 1)
        return sl_err_set(err, SL_EINVALID, "max_iter must be >= 1");
    if (!isfinite(mp->tol) || mp->tol <= 0)
        return sl_err_set(err, SL_EINVALID, "tol must be a finite number > 0");
    return SL_OK;
}

sl_code
cmp_model_fit(const cmp_model_params *mp, const double *x, size_t n, size_t p, const double *y,
              cmp_model *out, sl_err *err)
{
    double *sum = NULL, *sumsq = NULL, ym = 0;
    sl_code rc;

    if (out == NULL)
        return sl_err_set(err, SL_EINVALID, "a model to fill is required");
    memset(out, 0, sizeof *out);
    if (mp == NULL)
        return sl_err_set(err, SL_EINVALID, "model parameters are required");
    rc = check_shape(x, n, p, err);
    if (rc == SL_OK)
        rc = check_params(mp, n, p, err);
    if (rc == SL_OK && (mp->type == CMP_LINEAR || mp->type == CMP_LOGISTIC))
        rc = check_target(mp->type, y, n, &ym, err);
    if (rc != SL_OK)
        goto out;
    sum = dnew(p);
    sumsq = dnew(p);
    if (sum == NULL || sumsq == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for a model");
        goto out;
    }
    if (!col_sums(x, n, p, sum, sumsq)) {
        rc = sl_err_set(err, SL_EINVALID,
                        "a feature has a value that is not finite or is too large");
        goto out;
    }
    out->type = mp->type;
    out->p = p;
    out->rows = n;
    switch (mp->type) {
    case CMP_LINEAR:
        rc = fit_linear(mp, x, n, p, y, ym, sum, sumsq, out, err);
        break;
    case CMP_LOGISTIC:
        rc = fit_logistic(mp, x, n, p, y, ym, out, err);
        break;
    case CMP_KMEANS:
        rc = fit_kmeans(mp, x, n, p, out, err);
        break;
    case CMP_PCA:
        rc = fit_pca(mp, x, n, p, sum, sumsq, out, err);
        break;
    }
out:
    free(sum);
    free(sumsq);
    if (rc != SL_OK)
        cmp_model_free(out);
    return rc;
}

void
cmp_model_free(cmp_model *m)
{
    if (m == NULL)
        return;
    free(m->coef);
    free(m->centroids);
    free(m->components);
    free(m->mean);
    free(m->explained_variance);
    memset(m, 0, sizeof *m);
}

/* ---- metrics ---- */

/* Stable bottom-up merge sort of idx by key (no qsort: see the top of the file). */
static void
sort_by_key(uint32_t *idx, uint32_t *tmp, const double *key, size_t n)
{
    size_t w, lo, a, b, mid, hi, o;
    uint32_t *src = idx, *dst = tmp, *t;

    for (w = 1; w < n; w *= 2) {
        for (lo = 0; lo < n; lo += 2 * w) {
            mid = lo + w < n ? lo + w : n;
            hi = lo + 2 * w < n ? lo + 2 * w : n;
            for (a = lo, b = mid, o = lo; o < hi; o++)
                dst[o] = a < mid && (b >= hi || key[src[a]] <= key[src[b]]) ? src[a++] : src[b++];
        }
        t = src;
        src = dst;
        dst = t;
    }
    if (src != idx)
        memcpy(idx, src, n * sizeof *idx);
}

/* The area under the ROC curve of scores z for labels y (Mann-Whitney U, tied scores sharing
 * their mean rank); NaN without both classes. */
static sl_code
roc_auc(const double *z, const double *y, size_t n, double *auc, sl_err *err)
{
    uint32_t *idx = calloc(n, sizeof *idx), *tmp = calloc(n, sizeof *tmp);
    double pos = 0, rsum = 0;
    size_t i, a, e;

    if (idx == NULL || tmp == NULL) {
        free(idx);
        free(tmp);
        return sl_err_set(err, SL_ENOMEM, "out of memory for the roc auc");
    }
    for (i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    sort_by_key(idx, tmp, z, n);
    for (a = 0; a < n; a = e) {
        double np = 0;

        for (e = a; e < n && z[idx[e]] == z[idx[a]]; e++)
            np += y[idx[e]];
        if (e == a) /* NaN: a group of one */
            np = y[idx[e++]];
        /* ranks a + 1 .. e, mean (a + 1 + e) / 2 */
        rsum += np * ((double)a + 1 + (double)e) / 2;
        pos += np;
    }
    *auc = pos == 0 || pos == (double)n ? NAN
                                        : (rsum - pos * (pos + 1) / 2) / (pos * ((double)n - pos));
    free(idx);
    free(tmp);
    return SL_OK;
}

static sl_code
eval_regression(const cmp_model *m, const double *x, size_t n, size_t p, const double *y,
                cmp_metrics *o, sl_err *err)
{
    double *z = dnew(n), ym, dn = (double)n;
    ksum a = {0, 0}, b = {0, 0}, l = {0, 0};
    size_t i, hit = 0;
    sl_code rc;

    if (z == NULL)
        return sl_err_set(err, SL_ENOMEM, "out of memory for the metrics");
    rc = check_target(m->type, y, n, &ym, err);
    if (rc != SL_OK)
        goto out;
    for (i = 0; i < n; i++)
        z[i] = m->intercept;
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)p, 1.0, x, (int)n, m->coef, 1, 1.0, z, 1);
    if (m->type == CMP_LINEAR) {
        for (i = 0; i < n; i++) {
            ksum_add(&a, (y[i] - z[i]) * (y[i] - z[i]));
            ksum_add(&b, (y[i] - ym) * (y[i] - ym));
        }
        o->rmse = sqrt(ksum_get(&a) / dn);
        o->r2 = ksum_get(&b) > 0 ? 1 - ksum_get(&a) / ksum_get(&b) : NAN;
        goto out;
    }
    for (i = 0; i < n; i++) {
        double q = sigmoid(z[i]);

        q = q < 1e-15 ? 1e-15 : q > 1 - 1e-15 ? 1 - 1e-15 : q;
        ksum_add(&l, y[i] != 0 ? -log(q) : -log1p(-q));
        hit += (z[i] > 0) == (y[i] != 0);
    }
    o->accuracy = (double)hit / dn;
    o->log_loss = ksum_get(&l) / dn;
    rc = roc_auc(z, y, n, &o->roc_auc, err);
out:
    free(z);
    return rc;
}

static sl_code
eval_kmeans(const cmp_model *m, const double *x, size_t n, size_t p, cmp_metrics *o, sl_err *err)
{
    size_t bs = kmeans_block(m->k), i0, i, b;
    double *s = dnew2(bs, (size_t)m->k + 1), *cc = dnew((size_t)m->k), *dist = dnew(bs);
    int *lab = calloc(bs, sizeof *lab);
    ksum in = {0, 0};
    sl_code rc = SL_OK;

    if (s == NULL || cc == NULL || dist == NULL || lab == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for the metrics");
        goto out;
    }
    centre_norms(m->centroids, m->k, p, cc);
    for (i0 = 0; i0 < n; i0 += b) {
        b = n - i0 < bs ? n - i0 : bs;
        assign_block(x, n, p, i0, b, m->centroids, m->k, cc, s, lab, dist, NULL, NULL);
        for (i = 0; i < b; i++)
            ksum_add(&in, dist[i]);
    }
    o->inertia = ksum_get(&in);
out:
    free(s);
    free(cc);
    free(dist);
    free(lab);
    return rc;
}

/* The share of the rows' squared distance to the model's mean that their projections on the
 * components keep (1 - the reconstruction's residual share); NaN when the rows are all at the
 * mean. On the training rows it is explained_variance_ratio_total. */
static sl_code
eval_pca(const cmp_model *m, const double *x, size_t n, size_t p, cmp_metrics *o, sl_err *err)
{
    size_t i0, i, j, b, nc = (size_t)m->ncomp;
    double *buf = dnew2(BLOCK_ROWS, p), *proj = dnew2(BLOCK_ROWS, nc);
    ksum tot = {0, 0}, kept = {0, 0};
    sl_code rc = SL_OK;

    if (buf == NULL || proj == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for the metrics");
        goto out;
    }
    for (i0 = 0; i0 < n; i0 += b) {
        b = n - i0 < BLOCK_ROWS ? n - i0 : BLOCK_ROWS;
        for (j = 0; j < p; j++) {
            const double *c = x + j * n + i0;
            double *d = buf + j * b, mj = m->mean[j], s = 0;

            for (i = 0; i < b; i++) {
                d[i] = c[i] - mj;
                s += d[i] * d[i];
            }
            ksum_add(&tot, s);
        }
        /* proj (b x nc) = Xc_block (b x p) V^T; V row-major nc x p is V^T column-major */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)nc, (int)p, 1.0, buf,
                    (int)b, m->components, (int)p, 0.0, proj, (int)b);
        for (j = 0; j < b * nc; j++)
            ksum_add(&kept, proj[j] * proj[j]);
    }
    o->explained_variance = ksum_get(&tot) > 0 ? ksum_get(&kept) / ksum_get(&tot) : NAN;
out:
    free(buf);
    free(proj);
    return rc;
}

sl_code
cmp_model_eval(const cmp_model *m, const double *x, size_t n, size_t p, const double *y,
               cmp_metrics *out, sl_err *err)
{
    double *sum = NULL, *sumsq = NULL;
    sl_code rc;

    if (out == NULL)
        return sl_err_set(err, SL_EINVALID, "metrics to fill are required");
    out->r2 = out->rmse = out->accuracy = out->log_loss = out->roc_auc = NAN;
    out->inertia = out->explained_variance = NAN;
    if (m == NULL)
        return sl_err_set(err, SL_EINVALID, "a model is required");
    if (((m->type == CMP_LINEAR || m->type == CMP_LOGISTIC) && m->coef == NULL) ||
        (m->type == CMP_KMEANS && (m->centroids == NULL || m->k < 1)) ||
        (m->type == CMP_PCA && (m->components == NULL || m->mean == NULL || m->ncomp < 1)) ||
        m->type < CMP_LINEAR || m->type > CMP_PCA)
        return sl_err_set(err, SL_EINVALID, "the model is not fitted");
    rc = check_shape(x, n, p, err);
    if (rc != SL_OK)
        return rc;
    if (p != m->p)
        return sl_err_set(err, SL_EINVALID, "the data has %zu features, the model %zu", p, m->p);
    sum = dnew(p);
    sumsq = dnew(p);
    if (sum == NULL || sumsq == NULL) {
        rc = sl_err_set(err, SL_ENOMEM, "out of memory for the metrics");
        goto out;
    }
    if (!col_sums(x, n, p, sum, sumsq)) {
        rc = sl_err_set(err, SL_EINVALID,
                        "a feature has a value that is not finite or is too large");
        goto out;
    }
    switch (m->type) {
    case CMP_LINEAR:
    case CMP_LOGISTIC:
        rc = eval_regression(m, x, n, p, y, out, err);
        break;
    case CMP_KMEANS:
        rc = eval_kmeans(m, x, n, p, out, err);
        break;
    case CMP_PCA:
        rc = eval_pca(m, x, n, p, out, err);
        break;
    }
out:
    free(sum);
    free(sumsq);
    return rc;
}

size_t
cmp_model_numbers(const cmp_model *m)
{
    if (m == NULL)
        return 0;
    switch (m->type) {
    case CMP_LINEAR:
    case CMP_LOGISTIC:
        return m->p + 1;
    case CMP_KMEANS:
        return (size_t)m->k * m->p;
    case CMP_PCA:
        return (size_t)m->ncomp * m->p + m->p;
    }
    return 0;
}

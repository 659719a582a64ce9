/*
 * compute/cmp_model.h: the models a zone trains, on OpenBLAS and LAPACK(E). Pure
 * computation over a design matrix already built (transforms applied, rows with nulls
 * dropped): no I/O, no system calls beyond memory, so they run inside the sandbox.
 *
 * Matrices are column-major: x[j * n + i] is row i of column j (n rows, p columns), the
 * layout BLAS and LAPACK want and the one the zone's columns arrive in.
 */
#ifndef CMP_MODEL_H
#define CMP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "sl.h"

typedef enum {
    CMP_LINEAR = 1, /* ridge: min ||y - Xb - c||^2 + l2 ||b||^2 (intercept not penalised) */
    CMP_LOGISTIC,   /* L2 logistic regression, y in {0,1} */
    CMP_KMEANS,     /* k-means++ then Lloyd */
    CMP_PCA,        /* principal components of the centred data */
} cmp_model_type;

/* Called by a fit after each iteration (never from more than one thread). */
typedef void (*cmp_progress_fn)(void *ctx, int iteration, double loss);

typedef struct {
    cmp_model_type type;
    double l2;      /* linear, logistic: >= 0 */
    int max_iter;   /* logistic, kmeans: >= 1 */
    double tol;     /* logistic: on the gradient's max norm; kmeans: on the centres' shift */
    int k;          /* kmeans: 1..min(n, 1024) */
    int components; /* pca: 1..p */
    uint64_t seed;  /* kmeans++ seeding: the same seed, the same result */
    cmp_progress_fn progress;
    void *progress_ctx;
} cmp_model_params;

typedef struct {
    cmp_model_type type;
    size_t p;          /* features */
    size_t rows;       /* training rows */
    double *coef;      /* linear, logistic: p */
    double intercept;  /* linear, logistic */
    double *centroids; /* kmeans: k * p, row-major (centroid c at centroids[c * p]) */
    int k;
    double *components;         /* pca: components * p, row-major, unit length, sign fixed so the
                                   largest |entry| of each is positive */
    double *mean;               /* pca: p, the centre */
    double *explained_variance; /* pca: components, eigenvalues of the sample covariance */
    double explained_variance_ratio_total;
    int ncomp;
    int iterations;   /* logistic, kmeans */
    double loss;      /* final training loss: linear MSE, logistic mean log-loss + penalty,
                         kmeans inertia, pca 0 */
    double grad_norm; /* logistic: max |gradient| at the solution */
} cmp_model;

/* Fits; SL_EINVALID for bad parameters or shapes (err says which), SL_ENOMEM,
 * SL_EINTERNAL when LAPACK fails (a singular system without l2, ...). out is zeroed
 * first, and freed by cmp_model_free whatever happened. */
sl_code cmp_model_fit(const cmp_model_params *mp, const double *x, size_t n, size_t p,
                      const double *y, cmp_model *out, sl_err *err) SL_WUR;
void cmp_model_free(cmp_model *m);

/* Metrics of a fitted model on rows (x n x p, y); NaN where a metric does not apply. */
typedef struct {
    double r2, rmse;                    /* linear */
    double accuracy, log_loss, roc_auc; /* logistic (threshold 0.5; AUC with ties halved) */
    double inertia;                     /* kmeans: sum of squared distances to the nearest centre */
    double explained_variance;          /* pca: fraction of the rows' total variance the
                                           components explain */
} cmp_metrics;
sl_code cmp_model_eval(const cmp_model *m, const double *x, size_t n, size_t p, const double *y,
                       cmp_metrics *out, sl_err *err) SL_WUR;

/* How many numbers a model releases (coefficients and intercept, centroids, components
 * and means): the release rule compares it to the training rows / 10. */
size_t cmp_model_numbers(const cmp_model *m);

/*
 * The zone's own threads (cmp_pool.c), for products OpenBLAS splits poorly (a Gram matrix
 * of few columns over many rows): threads in all, the caller's included, started before
 * the sandbox; without it (or with 1) everything runs on the caller's thread. run calls
 * fn(ctx, part, parts) once for each part in [0, parts), concurrently, with OpenBLAS
 * single-threaded meanwhile, and returns when all are done.
 */
sl_code cmp_pool_start(int threads, sl_err *err) SL_WUR;
/* g (p x p, upper triangle) = X^T X: the Gram phase of ridge and PCA (before centring),
 * shared out over the pool as the fits do it (for benchmarks). */
sl_code cmp_model_gram(const double *x, size_t n, size_t p, double *g, sl_err *err) SL_WUR;
int cmp_pool_threads(void);
void cmp_pool_run(void (*fn)(void *ctx, int part, int parts), void *ctx);

#endif

/*
 * compute/cmp_data.h: what a zone holds and derives from the rows it is sent. The table
 * of columns (numeric or categorical) built from the gateway's frames, the transforms
 * that turn columns into a design matrix, and the aggregate statistics of a features job,
 * with optional differential privacy. Everything here runs inside the sandbox: memory
 * only, no system calls beyond it. Randomness comes from a seed the gateway sends
 * (libsodium's randombytes_buf_deterministic, a ChaCha20 stream; no syscall).
 */
#ifndef CMP_DATA_H
#define CMP_DATA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cmp.h"
#include "sl.h"

/* ---- the table (cmp_table.c) ---- */

#define CMP_MAX_CATEGORIES 65536u /* distinct strings kept per column; more: overflow */
#define CMP_NULL_CODE      UINT32_MAX

typedef struct {
    char name[CMP_NAME_MAX + 1];
    int is_string;
    double *v;      /* numeric: n values, NaN = null */
    uint32_t *code; /* string: n codes into cat, CMP_NULL_CODE = null */
    char **cat;     /* string: ncat distinct values (NUL-terminated copies), in order of first
                       appearance */
    uint32_t ncat;
    int overflow; /* string: more than CMP_MAX_CATEGORIES distinct values (codes of the
                     ones past the limit are CMP_NULL_CODE) */
    size_t n, cap;
    void *index; /* string: the dictionary's hash index (private) */
} cmp_col;

typedef struct {
    cmp_col *col;
    size_t ncol, cap;
    size_t nrows; /* set by cmp_table_finish */
    size_t hint;  /* rows expected (0: unknown): each column's first allocation */
} cmp_table;

/* Appends one CMP_F_COLUMN or CMP_F_STRCOL frame's values to its column (created at the
 * first frame naming it, at most CMP_MAX_COLUMNS; a column keeps its kind). SL_EINVALID
 * for a malformed payload (lengths that do not add up, a bad name, a kind that changes),
 * SL_ENOMEM. Start from a zeroed table. */
sl_code cmp_table_add(cmp_table *t, const cmp_frame *f, sl_err *err) SL_WUR;
/* Every column must have the same number of rows; sets nrows. */
sl_code cmp_table_finish(cmp_table *t, sl_err *err) SL_WUR;
const cmp_col *cmp_table_find(const cmp_table *t, const char *name);
/* Rows of a string column whose value came after its dictionary was full (their code is
 * CMP_NULL_CODE, yet they are not nulls). */
size_t cmp_table_overflow_rows(const cmp_col *c);
void cmp_table_free(cmp_table *t);

/* ---- transforms (cmp_transform.c) ---- */

typedef enum {
    CMP_T_IDENTITY = 1,
    CMP_T_STANDARDIZE, /* (v - mean) / std, std the population std of the training rows (1 if 0) */
    CMP_T_MINMAX,      /* (v - min) / (max - min) over the training rows (0 if max == min) */
    CMP_T_LOG1P,       /* log1p(v); a value <= -1 fails the job (SL_EINVALID, the column named) */
    CMP_T_ONE_HOT,     /* string or numeric column: one 0/1 column per category with at least
                          min_cell training rows, in order of first appearance, then one
                          `other` column if any category folded into it */
} cmp_transform;

typedef struct {
    const cmp_col *col;
    cmp_transform t;
    /* filled by cmp_transform_fit: */
    double a, b;    /* standardize: mean, std; minmax: min, max */
    uint32_t nout;  /* design columns this feature makes (1, or one_hot's count) */
    uint32_t *keep; /* one_hot, string column: category code -> output index (nout - 1 for
                       `other`; UINT32_MAX: no column, a category never seen in training
                       when there is no `other`, whose row is all zeros) */
    double *levels; /* one_hot, numeric column: the kept distinct values */
    uint32_t nlevels;
    int has_other;
} cmp_feature;

/* Fits a feature's parameters on the rows with train[i] set (rows with a null in it are
 * ignored). min_cell bounds one_hot categories. SL_EINVALID names the column. */
sl_code cmp_transform_fit(cmp_feature *f, const uint8_t *train, size_t n, uint32_t min_cell,
                          sl_err *err) SL_WUR;
/* Writes the feature's nout design columns for the rows listed in rows[0..m) into
 * x + col0 * m (column-major, m rows per column). A null gives NaN (the caller drops
 * such rows first: cmp_transform_complete). */
void cmp_transform_apply(const cmp_feature *f, const size_t *rows, size_t m, double *x,
                         size_t col0);
/* 1 when row i has no null in the feature's column. */
int cmp_transform_complete(const cmp_feature *f, size_t i);
/* The released parameters: {"column","transform", "mean","std" | "min","max" |
 * "categories":[...], "other": bool}; with `withhold` (restricted datasets) without the
 * statistics (mean, std, min, max): one_hot's categories (each of at least min_cell
 * training rows) and `other` stay. */
json_t *cmp_transform_json(const cmp_feature *f, int withhold);
void cmp_transform_free(cmp_feature *f);

/* ---- features jobs (cmp_features.c) ---- */

typedef struct {
    const char *const *columns; /* names (the gateway checked they exist and are not pii) */
    size_t ncolumns;
    uint32_t min_cell;     /* histogram bins and categories under it are suppressed */
    int restricted;        /* one row's values (min, max, quantiles, exact edges) withheld
                              unless private */
    double epsilon;        /* 0: no differential privacy; else 0 < epsilon <= 10 */
    const double *lo, *hi; /* privacy: per column bounds (numeric columns), NULL otherwise */
    unsigned char seed[32];
    int bins; /* histogram bins (default 10) */
} cmp_feat_spec;

/* {"<column>": {"count","mean","std","min","max","quantiles":{"0.05",...,"0.95"},
 * "histogram":{"edges":[bins+1],"counts":[bins] (null when suppressed)}}} for numeric
 * columns; {"count", "categories": {"<value>": count, ...}, "other": count} for string
 * ones (only values with at least min_cell rows named). Without privacy: exact values
 * (quantiles by linear interpolation, as numpy's default), with suppression; restricted
 * without privacy: min, max and quantiles null, no histogram. With privacy (epsilon
 * split evenly across the columns, then across count, sum, sum of squares and the
 * histogram): values clamped to the bounds, Laplace noise on count, sum, sum of squares
 * and each bin, mean and std derived, min/max/quantiles derived from the noisy
 * histogram over [lo, hi]. SL_EINVALID for an unknown column. */
sl_code cmp_features_run(const cmp_table *t, const cmp_feat_spec *s, json_t **out,
                         sl_err *err) SL_WUR;

#endif

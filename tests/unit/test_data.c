/*
 * tests/unit/test_data.c: compute/cmp_data.h. The table built from hand-made frames and
 * refusing malformed ones; the dictionary's growth and overflow; transforms on hand
 * examples; features exact against values computed here and by numpy's rules, suppressed
 * where they should be, and with privacy deterministic by seed, noised at the scale its
 * budget says, within the bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <cmocka.h>
#include <math.h>

#include "cmp_data.h"

/* ---- frames by hand ---- */

static void
put16(sl_buf *b, uint16_t v)
{
    unsigned char c[2] = {(unsigned char)v, (unsigned char)(v >> 8)};

    assert_int_equal(sl_buf_append(b, c, 2), SL_OK);
}

static void
put32(sl_buf *b, uint32_t v)
{
    unsigned char c[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};

    assert_int_equal(sl_buf_append(b, c, 4), SL_OK);
}

static void
head(sl_buf *b, const char *name, uint32_t n)
{
    sl_buf_reset(b);
    put16(b, (uint16_t)strlen(name));
    assert_int_equal(sl_buf_append(b, name, strlen(name)), SL_OK);
    put32(b, n);
}

/* A CMP_F_COLUMN payload. */
static void
numcol(sl_buf *b, const char *name, const double *v, uint32_t n)
{
    head(b, name, n);
    assert_int_equal(sl_buf_append(b, v, (size_t)n * 8), SL_OK);
}

/* A CMP_F_STRCOL payload; a NULL value is a null. */
static void
strcol(sl_buf *b, const char *name, const char *const *v, uint32_t n)
{
    uint32_t i;

    head(b, name, n);
    for (i = 0; i < n; i++) {
        if (v[i] == NULL) {
            put32(b, UINT32_MAX);
            continue;
        }
        put32(b, (uint32_t)strlen(v[i]));
        assert_int_equal(sl_buf_append(b, v[i], strlen(v[i])), SL_OK);
    }
}

static sl_code
add(cmp_table *t, uint8_t type, const sl_buf *b)
{
    cmp_frame f = {type, (const unsigned char *)b->data, (uint32_t)b->len};
    sl_err err;

    return cmp_table_add(t, &f, &err);
}

static void
add_num(cmp_table *t, const char *name, const double *v, uint32_t n)
{
    sl_buf b;

    sl_buf_init(&b, CMP_FRAME_MAX);
    numcol(&b, name, v, n);
    assert_int_equal(add(t, CMP_F_COLUMN, &b), SL_OK);
    sl_buf_free(&b);
}

static void
add_str(cmp_table *t, const char *name, const char *const *v, uint32_t n)
{
    sl_buf b;

    sl_buf_init(&b, CMP_FRAME_MAX);
    strcol(&b, name, v, n);
    assert_int_equal(add(t, CMP_F_STRCOL, &b), SL_OK);
    sl_buf_free(&b);
}

/* ---- the table ---- */

static void
table_holds_columns_across_frames(void **state)
{
    double a1[3] = {1, NAN, 3}, a2[2] = {4, 5};
    const char *s1[3] = {"x", NULL, "y"}, *s2[2] = {"", "x"};
    cmp_table t = {0};
    const cmp_col *c;
    sl_err err;

    (void)state;
    add_num(&t, "a", a1, 3);
    add_str(&t, "s", s1, 3);
    add_num(&t, "a", a2, 2);
    add_str(&t, "s", s2, 2);
    add_num(&t, "empty", NULL, 0);
    assert_int_equal(cmp_table_finish(&t, &err), SL_EINVALID); /* empty has 0 rows */
    cmp_table_free(&t);

    memset(&t, 0, sizeof t);
    add_num(&t, "a", a1, 3);
    add_str(&t, "s", s1, 3);
    add_num(&t, "a", a2, 2);
    add_str(&t, "s", s2, 2);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    assert_int_equal(t.nrows, 5);
    assert_int_equal(t.ncol, 2);
    c = cmp_table_find(&t, "a");
    assert_non_null(c);
    assert_false(c->is_string);
    assert_int_equal(c->n, 5);
    assert_true(c->v[0] == 1 && isnan(c->v[1]) && c->v[4] == 5);
    c = cmp_table_find(&t, "s");
    assert_non_null(c);
    assert_true(c->is_string);
    assert_int_equal(c->ncat, 3); /* x, y, "" in order of first appearance */
    assert_string_equal(c->cat[0], "x");
    assert_string_equal(c->cat[1], "y");
    assert_string_equal(c->cat[2], "");
    assert_int_equal(c->code[0], 0);
    assert_int_equal(c->code[1], CMP_NULL_CODE);
    assert_int_equal(c->code[2], 1);
    assert_int_equal(c->code[3], 2);
    assert_int_equal(c->code[4], 0);
    assert_null(cmp_table_find(&t, "b"));
    assert_null(cmp_table_find(&t, NULL));
    cmp_table_free(&t);
    cmp_table_free(&t); /* freed is zeroed: again is nothing */
    cmp_table_free(NULL);

    memset(&t, 0, sizeof t); /* no columns: no rows */
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    assert_int_equal(t.nrows, 0);
    cmp_table_free(&t);
}

static void
table_refuses_malformed_frames(void **state)
{
    double one[1] = {1}, inf[2] = {1, -INFINITY};
    const char *sv[1] = {"v"};
    char name[300];
    cmp_table t = {0};
    sl_buf b;
    sl_err err;
    int i;

    (void)state;
    sl_buf_init(&b, CMP_FRAME_MAX);
    sl_buf_reset(&b); /* shorter than a name's length */
    assert_int_equal(sl_buf_append(&b, "\x01", 1), SL_OK);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    head(&b, "", 0); /* no name */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    sl_buf_reset(&b); /* a name longer than the payload */
    put16(&b, 200);
    assert_int_equal(sl_buf_append(&b, "abcd", 4), SL_OK);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    memset(name, 'n', sizeof name); /* a name past CMP_NAME_MAX */
    name[CMP_NAME_MAX + 1] = '\0';
    numcol(&b, name, one, 1);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    name[CMP_NAME_MAX] = '\0'; /* exactly CMP_NAME_MAX is fine */
    numcol(&b, name, one, 1);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    numcol(&b, "bad\xff", one, 1); /* not UTF-8 */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    numcol(&b, "\xc0\xaf", one, 1); /* overlong */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    sl_buf_reset(&b); /* a NUL in the name */
    put16(&b, 3);
    assert_int_equal(sl_buf_append(&b, "a\0b", 3), SL_OK);
    put32(&b, 1);
    assert_int_equal(sl_buf_append(&b, one, 8), SL_OK);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    numcol(&b, "x", one, 1); /* a count that does not match the values */
    b.len -= 1;
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    head(&b, "x", UINT32_MAX); /* a count whose size overflows 32 bits */
    assert_int_equal(sl_buf_append(&b, one, 8), SL_OK);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    head(&b, "x", 0x20000001u); /* * 8 wraps to 8 in 32 bits */
    assert_int_equal(sl_buf_append(&b, one, 8), SL_OK);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    numcol(&b, "x", inf, 2); /* infinite values */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    b.len = 0; /* not a column frame */
    assert_int_equal(add(&t, CMP_F_END, &b), SL_EINVALID);

    head(&b, "s", 2); /* string values: count past the payload */
    put32(&b, 1);
    assert_int_equal(sl_buf_append(&b, "v", 1), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    head(&b, "s", 1); /* a value's length past the payload */
    put32(&b, 2);
    assert_int_equal(sl_buf_append(&b, "v", 1), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    head(&b, "s", 1); /* a length near 2^32 */
    put32(&b, UINT32_MAX - 1);
    assert_int_equal(sl_buf_append(&b, "v", 1), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    strcol(&b, "s", sv, 1); /* bytes after the last value */
    assert_int_equal(sl_buf_append(&b, "z", 1), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    head(&b, "s", 1); /* a NUL in a value: refused (values are text) */
    put32(&b, 3);
    assert_int_equal(sl_buf_append(&b, "a\0b", 3), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    head(&b, "s", 1); /* a value that is not UTF-8 */
    put32(&b, 2);
    assert_int_equal(sl_buf_append(&b, "\xed\xa0", 2), SL_OK);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    assert_int_equal(t.ncol, 1); /* only the long name's column so far */
    assert_int_equal(t.col[0].n, 1);

    numcol(&b, "k", one, 1); /* a kind that changes */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    strcol(&b, "k", sv, 1);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_EINVALID);
    strcol(&b, "s", sv, 1);
    assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_OK);
    numcol(&b, "s", one, 1);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    numcol(&b, "k", one, 1); /* unequal lengths */
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    assert_int_equal(cmp_table_finish(&t, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"k\" has 2 rows"));
    cmp_table_free(&t);

    memset(&t, 0, sizeof t); /* at most CMP_MAX_COLUMNS columns */
    for (i = 0; i < CMP_MAX_COLUMNS; i++) {
        snprintf(name, sizeof name, "c%d", i);
        numcol(&b, name, one, 1);
        assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    }
    numcol(&b, "one-more", one, 1);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_EINVALID);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    assert_int_equal(t.nrows, 1);
    cmp_table_free(&t);
    sl_buf_free(&b);
}

/* Many distinct values: the dictionary grows through every size to CMP_MAX_CATEGORIES,
 * then codes the rest as CMP_NULL_CODE and says it overflowed. */
static void
dictionary_grows_then_overflows(void **state)
{
    const uint32_t extra = 100, total = CMP_MAX_CATEGORIES + extra, per = 5000;
    cmp_table t = {0};
    const cmp_col *c;
    sl_buf b;
    sl_err err;
    uint32_t i, k, from;
    char v[16];

    (void)state;
    sl_buf_init(&b, CMP_FRAME_MAX);
    for (from = 0; from < total; from += per) { /* several frames */
        uint32_t n = total - from < per ? total - from : per;

        head(&b, "s", n + 1);
        for (i = from; i < from + n; i++) {
            snprintf(v, sizeof v, "v%u", i);
            put32(&b, (uint32_t)strlen(v));
            assert_int_equal(sl_buf_append(&b, v, strlen(v)), SL_OK);
        }
        put32(&b, 2); /* and an old value again */
        assert_int_equal(sl_buf_append(&b, "v7", 2), SL_OK);
        assert_int_equal(add(&t, CMP_F_STRCOL, &b), SL_OK);
    }
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    c = cmp_table_find(&t, "s");
    assert_int_equal(c->ncat, CMP_MAX_CATEGORIES);
    assert_true(c->overflow);
    for (k = 0, i = 0; i < c->n; i++) {
        if (c->code[i] == CMP_NULL_CODE) {
            k++;
            continue;
        }
        assert_true(c->code[i] < CMP_MAX_CATEGORIES);
    }
    assert_int_equal(k, extra);
    /* each distinct value its own code, in order, and the repeated one found again */
    for (i = 0; i < CMP_MAX_CATEGORIES; i += 997) {
        snprintf(v, sizeof v, "v%u", i);
        assert_string_equal(c->cat[i], v);
    }
    assert_int_equal(c->code[per], 7);
    assert_int_equal(c->code[c->n - 1], 7);
    cmp_table_free(&t);
    sl_buf_free(&b);
}

/* ---- transforms ---- */

static void
fit_ok(cmp_feature *f, const cmp_col *c, cmp_transform tr, const uint8_t *train, size_t n,
       uint32_t min_cell)
{
    sl_err err;

    memset(f, 0, sizeof *f);
    f->col = c;
    f->t = tr;
    assert_int_equal(cmp_transform_fit(f, train, n, min_cell, &err), SL_OK);
}

static sl_code
fit_rc(cmp_feature *f, const cmp_col *c, cmp_transform tr, const uint8_t *train, size_t n,
       uint32_t min_cell, sl_err *err)
{
    memset(f, 0, sizeof *f);
    f->col = c;
    f->t = tr;
    return cmp_transform_fit(f, train, n, min_cell, err);
}

static void
transforms_numeric(void **state)
{
    double v[6] = {1, 2, 3, 4, 100, NAN}, k[6] = {5, 5, 5, 5, 9, 5}, neg[6] = {0, 1, 2, -1, 3, 4};
    uint8_t train[6] = {1, 1, 1, 1, 0, 1};
    size_t rows[6] = {0, 1, 2, 3, 4, 5};
    double x[12], sd = sqrt(1.25);
    cmp_table t = {0};
    cmp_feature f;
    json_t *j;
    sl_err err;
    int i;

    (void)state;
    add_num(&t, "v", v, 6);
    add_num(&t, "k", k, 6);
    add_num(&t, "neg", neg, 6);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);

    /* standardize on rows 0-3 (row 4 is not training, row 5 is null) */
    fit_ok(&f, cmp_table_find(&t, "v"), CMP_T_STANDARDIZE, train, 6, 0);
    assert_int_equal(f.nout, 1);
    assert_true(fabs(f.a - 2.5) < 1e-15 && fabs(f.b - sd) < 1e-15);
    cmp_transform_apply(&f, rows, 6, x, 1);
    for (i = 0; i < 5; i++)
        assert_true(fabs(x[6 + i] - (v[i] - 2.5) / sd) < 1e-12);
    assert_true(isnan(x[11]));
    assert_true(cmp_transform_complete(&f, 4));
    assert_false(cmp_transform_complete(&f, 5));
    j = cmp_transform_json(&f, 0);
    assert_string_equal(json_string_value(json_object_get(j, "column")), "v");
    assert_string_equal(json_string_value(json_object_get(j, "transform")), "standardize");
    assert_true(fabs(json_real_value(json_object_get(j, "mean")) - 2.5) < 1e-15);
    assert_true(fabs(json_real_value(json_object_get(j, "std")) - sd) < 1e-15);
    json_decref(j);
    j = cmp_transform_json(&f, 1); /* withheld: no values */
    assert_int_equal(json_object_size(j), 2);
    assert_null(json_object_get(j, "mean"));
    json_decref(j);
    cmp_transform_free(&f);

    /* a constant training column: std 1, minmax 0 */
    fit_ok(&f, cmp_table_find(&t, "k"), CMP_T_STANDARDIZE, train, 6, 0);
    assert_true(f.a == 5 && f.b == 1);
    cmp_transform_free(&f);
    fit_ok(&f, cmp_table_find(&t, "k"), CMP_T_MINMAX, train, 6, 0);
    cmp_transform_apply(&f, rows, 6, x, 0);
    assert_true(x[0] == 0 && x[4] == 0);
    cmp_transform_free(&f);

    /* minmax on the training rows only: row 4's 100 is past 1 */
    fit_ok(&f, cmp_table_find(&t, "v"), CMP_T_MINMAX, train, 6, 0);
    assert_true(f.a == 1 && f.b == 4);
    cmp_transform_apply(&f, rows, 6, x, 0);
    assert_true(x[0] == 0 && fabs(x[1] - 1.0 / 3) < 1e-15 && x[3] == 1 && x[4] == 33);
    j = cmp_transform_json(&f, 0);
    assert_true(json_real_value(json_object_get(j, "min")) == 1);
    assert_true(json_real_value(json_object_get(j, "max")) == 4);
    json_decref(j);
    cmp_transform_free(&f);
    fit_ok(&f, cmp_table_find(&t, "v"), CMP_T_MINMAX, NULL, 6, 0); /* NULL: every row */
    assert_true(f.a == 1 && f.b == 100);
    cmp_transform_free(&f);

    /* log1p: a value <= -1 anywhere fails, naming the column */
    fit_ok(&f, cmp_table_find(&t, "v"), CMP_T_LOG1P, train, 6, 0);
    cmp_transform_apply(&f, rows, 6, x, 0);
    assert_true(x[0] == log1p(1.0) && x[4] == log1p(100.0) && isnan(x[5]));
    cmp_transform_free(&f);
    assert_int_equal(fit_rc(&f, cmp_table_find(&t, "neg"), CMP_T_LOG1P, train, 6, 0, &err),
                     SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"neg\""));

    /* identity */
    fit_ok(&f, cmp_table_find(&t, "v"), CMP_T_IDENTITY, train, 6, 0);
    cmp_transform_apply(&f, rows + 2, 3, x, 0);
    assert_true(x[0] == 3 && x[1] == 4 && x[2] == 100);
    cmp_transform_free(&f);

    /* no training values */
    memset(train, 0, sizeof train);
    assert_int_equal(fit_rc(&f, cmp_table_find(&t, "v"), CMP_T_STANDARDIZE, train, 6, 0, &err),
                     SL_EINVALID);
    cmp_transform_free(&f);
    cmp_table_free(&t);
}

static void
transforms_one_hot_strings(void **state)
{
    /* a x3, b x2 and c x1 in training; d only outside it (4 rows); e once in training */
    const char *s[12] = {"a", "b", "a", "c", "b", "a", NULL, "d", "d", "d", "d", "e"};
    uint8_t train[12] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1};
    size_t rows[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    double x[12 * 3], num[12] = {3, 1, 3, 1, 2, 5, 7, 1, 1, 1, NAN, -0.0};
    cmp_table t = {0};
    cmp_feature f;
    json_t *j, *cats;
    sl_err err;
    int i;

    (void)state;
    add_str(&t, "s", s, 12);
    add_num(&t, "n", num, 12);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    fit_ok(&f, cmp_table_find(&t, "s"), CMP_T_ONE_HOT, train, 12, 2);
    assert_int_equal(f.nout, 3); /* a, b, other (c, e folded; d is not training) */
    assert_true(f.has_other);
    assert_int_equal(f.keep[0], 0); /* a */
    assert_int_equal(f.keep[1], 1); /* b */
    assert_int_equal(f.keep[2], 2); /* c: other */
    assert_int_equal(f.keep[3], 2); /* d: unseen in training, other */
    cmp_transform_apply(&f, rows, 12, x, 0);
    for (i = 0; i < 12; i++) {
        double want[3] = {0, 0, 0};

        if (s[i] == NULL) {
            assert_true(isnan(x[i]) && isnan(x[12 + i]) && isnan(x[24 + i]));
            continue;
        }
        want[s[i][0] == 'a' ? 0 : s[i][0] == 'b' ? 1 : 2] = 1;
        assert_true(x[i] == want[0] && x[12 + i] == want[1] && x[24 + i] == want[2]);
    }
    j = cmp_transform_json(&f, 1); /* withheld or not, the categories stay */
    cats = json_object_get(j, "categories");
    assert_int_equal(json_array_size(cats), 2);
    assert_string_equal(json_string_value(json_array_get(cats, 0)), "a");
    assert_string_equal(json_string_value(json_array_get(cats, 1)), "b");
    assert_true(json_is_true(json_object_get(j, "other")));
    json_decref(j);
    cmp_transform_free(&f);

    /* min_cell 1: every training category, no other; d (unseen) has no column */
    fit_ok(&f, cmp_table_find(&t, "s"), CMP_T_ONE_HOT, train, 12, 1);
    assert_int_equal(f.nout, 4); /* a b c e */
    assert_false(f.has_other);
    assert_int_equal(f.keep[3], UINT32_MAX);
    assert_int_equal(f.keep[4], 3);
    cmp_transform_apply(&f, rows + 7, 1, x, 0);
    assert_true(x[0] == 0 && x[1] == 0 && x[2] == 0 && x[3] == 0);
    cmp_transform_free(&f);

    /* numeric one_hot: training values 3 (2), 1 (2), 2, 5, 7, -0 fold; 1 and 3 kept in
     * order of first appearance */
    fit_ok(&f, cmp_table_find(&t, "n"), CMP_T_ONE_HOT, train, 12, 2);
    assert_int_equal(f.nlevels, 2);
    assert_true(f.levels[0] == 3 && f.levels[1] == 1);
    assert_int_equal(f.nout, 3);
    cmp_transform_apply(&f, rows, 12, x, 0);
    assert_true(x[0] == 1 && x[12] == 0 && x[24] == 0);  /* 3 */
    assert_true(x[1] == 0 && x[13] == 1 && x[25] == 0);  /* 1 */
    assert_true(x[4] == 0 && x[16] == 0 && x[28] == 1);  /* 2: other */
    assert_true(x[7] == 0 && x[19] == 1 && x[31] == 0);  /* 1 outside training */
    assert_true(isnan(x[10]));                           /* null */
    assert_true(x[11] == 0 && x[23] == 0 && x[35] == 1); /* -0 */
    j = cmp_transform_json(&f, 0);
    cats = json_object_get(j, "categories");
    assert_int_equal(json_array_size(cats), 2);
    assert_true(json_real_value(json_array_get(cats, 0)) == 3);
    json_decref(j);
    cmp_transform_free(&f);

    /* a string column takes one_hot only */
    assert_int_equal(fit_rc(&f, cmp_table_find(&t, "s"), CMP_T_STANDARDIZE, train, 12, 0, &err),
                     SL_EINVALID);
    cmp_transform_free(&f);
    cmp_table_free(&t);
}

static void
one_hot_refuses_too_many_categories(void **state)
{
    const size_t n = CMP_MAX_CATEGORIES + 1;
    double *v = malloc(n * sizeof *v);
    cmp_table t = {0};
    cmp_feature f;
    sl_buf b;
    sl_err err;
    size_t i;

    (void)state;
    assert_non_null(v);
    for (i = 0; i < n; i++)
        v[i] = (double)(i * 7 % n); /* a permutation: all distinct */
    sl_buf_init(&b, CMP_FRAME_MAX);
    numcol(&b, "wide", v, (uint32_t)n);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    assert_int_equal(fit_rc(&f, cmp_table_find(&t, "wide"), CMP_T_ONE_HOT, NULL, n, 1, &err),
                     SL_EINVALID);
    assert_string_equal(err.msg, "too many categories in column \"wide\"");
    cmp_transform_free(&f);
    /* exactly the limit passes, all folded to other at a high min_cell */
    v[n - 1] = v[0];
    numcol(&b, "wide2", v, (uint32_t)n);
    assert_int_equal(add(&t, CMP_F_COLUMN, &b), SL_OK);
    fit_ok(&f, cmp_table_find(&t, "wide2"), CMP_T_ONE_HOT, NULL, n, 3);
    assert_int_equal(f.nout, 1);
    assert_int_equal(f.nlevels, 0);
    assert_true(f.has_other);
    cmp_transform_free(&f);
    cmp_table_free(&t);
    sl_buf_free(&b);
    free(v);
}

/* ---- features ---- */

static json_t *
run(const cmp_table *t, const cmp_feat_spec *s)
{
    json_t *out = NULL;
    sl_err err;

    sl_err_clear(&err);
    if (cmp_features_run(t, s, &out, &err) != SL_OK)
        fail_msg("features: %s", err.msg);
    return out;
}

static double
num(const json_t *o, const char *col, const char *key)
{
    const json_t *v = json_object_get(json_object_get(o, col), key);

    assert_true(json_is_number(v));
    return json_number_value(v);
}

/* numpy.quantile(x, q) for sorted x, computed the plain way. */
static double
ref_quantile(const double *x, size_t n, double q)
{
    double h = (n - 1) * q;
    size_t i = (size_t)floor(h);

    return i + 1 < n ? x[i] + (h - (double)i) * (x[i + 1] - x[i]) : x[n - 1];
}

static int
cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void
features_exact(void **state)
{
    /* 1..10 and 100 shuffled, with a null */
    double v[12] = {7, 1, 3, 10, NAN, 2, 8, 100, 4, 6, 5, 9}, sorted[11];
    double h[12] = {0, 2, 2, 4, 6, 8, 10, 10, 5, 5, 5, 5}; /* bins on the edges */
    double k[12] = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
    const char *s[12] = {"a", "b", "a", NULL, "c", "a", "b", NULL, "a", "d", "e", "a"};
    const char *cols[4] = {"v", "h", "k", "s"};
    cmp_feat_spec spec = {0};
    double mean = 0, ss = 0, q, want[5] = {1.5, 3.5, 6, 8.5, 55};
    cmp_table t = {0};
    json_t *o, *hist, *counts, *cats;
    sl_err err;
    size_t i, n = 0;

    (void)state;
    add_num(&t, "v", v, 12);
    add_num(&t, "h", h, 12);
    add_num(&t, "k", k, 12);
    add_str(&t, "s", s, 12);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    for (i = 0; i < 12; i++)
        if (!isnan(v[i]))
            sorted[n++] = v[i];
    qsort(sorted, n, sizeof *sorted, cmp_dbl);
    for (i = 0; i < n; i++)
        mean += sorted[i] / n;
    for (i = 0; i < n; i++)
        ss += (sorted[i] - mean) * (sorted[i] - mean);

    spec.columns = cols;
    spec.ncolumns = 1;
    spec.min_cell = 2;
    spec.bins = 5;
    o = run(&t, &spec);
    assert_int_equal(num(o, "v", "count"), 11);
    assert_int_equal(num(o, "v", "nulls"), 1);
    assert_true(fabs(num(o, "v", "mean") - 155.0 / 11) < 1e-12);
    assert_true(fabs(num(o, "v", "mean") - mean) < 1e-12);
    assert_true(fabs(num(o, "v", "std") - sqrt(ss / 10)) < 1e-12);
    assert_true(num(o, "v", "min") == 1 && num(o, "v", "max") == 100);
    for (i = 0; i < 5; i++) {
        static const char *key[5] = {"0.05", "0.25", "0.5", "0.75", "0.95"};
        static const double at[5] = {0.05, 0.25, 0.5, 0.75, 0.95};

        q = json_number_value(
            json_object_get(json_object_get(json_object_get(o, "v"), "quantiles"), key[i]));
        assert_true(fabs(q - want[i]) < 1e-12);                        /* numpy's answers */
        assert_true(fabs(q - ref_quantile(sorted, n, at[i])) < 1e-12); /* the formula */
    }
    /* [1, 100] in 5 bins of 19.8: 10 rows, then 1 (suppressed under 2), 0s suppressed */
    hist = json_object_get(json_object_get(o, "v"), "histogram");
    assert_int_equal(json_array_size(json_object_get(hist, "edges")), 6);
    assert_true(json_real_value(json_array_get(json_object_get(hist, "edges"), 0)) == 1);
    assert_true(json_real_value(json_array_get(json_object_get(hist, "edges"), 5)) == 100);
    assert_true(fabs(json_real_value(json_array_get(json_object_get(hist, "edges"), 1)) - 20.8) <
                1e-12);
    counts = json_object_get(hist, "counts");
    assert_int_equal(json_array_size(counts), 5);
    assert_int_equal(json_integer_value(json_array_get(counts, 0)), 10);
    for (i = 1; i < 5; i++)
        assert_true(json_is_null(json_array_get(counts, i)));
    json_decref(o);

    /* numpy's edges: 0 2 4 6 8 10; [0,2) [2,4) [4,6) [6,8) [8,10] */
    spec.columns = cols + 1;
    spec.min_cell = 0;
    o = run(&t, &spec);
    counts = json_object_get(json_object_get(json_object_get(o, "h"), "histogram"), "counts");
    {
        const int want_h[5] = {1, 2, 5, 1, 3};
        for (i = 0; i < 5; i++)
            assert_int_equal(json_integer_value(json_array_get(counts, i)), want_h[i]);
    }
    json_decref(o);

    /* a constant column: numpy's range [v - 0.5, v + 0.5], 10 bins by default */
    spec.columns = cols + 2;
    spec.bins = 0;
    o = run(&t, &spec);
    assert_true(num(o, "k", "std") == 0);
    hist = json_object_get(json_object_get(o, "k"), "histogram");
    assert_int_equal(json_array_size(json_object_get(hist, "counts")), 10);
    assert_true(json_real_value(json_array_get(json_object_get(hist, "edges"), 0)) == 4.5);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(hist, "counts"), 5)), 12);
    json_decref(o);

    /* strings: a x5, b x2, c, d, e; 2 nulls; min_cell 2 names a and b */
    spec.columns = cols + 3;
    spec.min_cell = 2;
    o = run(&t, &spec);
    assert_int_equal(num(o, "s", "count"), 10);
    assert_int_equal(num(o, "s", "nulls"), 2);
    assert_int_equal(num(o, "s", "other"), 3);
    cats = json_object_get(json_object_get(o, "s"), "categories");
    assert_int_equal(json_object_size(cats), 2);
    assert_int_equal(json_integer_value(json_object_get(cats, "a")), 5);
    assert_int_equal(json_integer_value(json_object_get(cats, "b")), 2);
    json_decref(o);

    /* all four together */
    spec.columns = cols;
    spec.ncolumns = 4;
    o = run(&t, &spec);
    assert_int_equal(json_object_size(o), 4);
    json_decref(o);

    /* unknown and repeated columns, bad bins */
    {
        const char *bad[2] = {"v", "nope"}, *twice[2] = {"v", "v"};
        json_t *out = NULL;

        spec.columns = bad;
        spec.ncolumns = 2;
        assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
        assert_null(out);
        assert_non_null(strstr(err.msg, "nope"));
        spec.columns = twice;
        assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
        spec.columns = cols;
        spec.bins = -1;
        assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
        spec.bins = 100000;
        assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    }
    cmp_table_free(&t);
}

static void
features_empty_and_restricted(void **state)
{
    double v[4] = {1, 2, 3, 4}, nul[4] = {NAN, NAN, NAN, NAN};
    const char *cols[2] = {"v", "nul"};
    cmp_feat_spec spec = {0};
    cmp_table t = {0};
    json_t *o, *c;
    sl_err err;
    char *text;

    (void)state;
    add_num(&t, "v", v, 4);
    add_num(&t, "nul", nul, 4);
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    spec.columns = cols;
    spec.ncolumns = 2;
    spec.min_cell = 3;
    o = run(&t, &spec); /* a column of nulls: nothing but counts */
    c = json_object_get(o, "nul");
    assert_int_equal(num(o, "nul", "count"), 0);
    assert_int_equal(num(o, "nul", "nulls"), 4);
    assert_true(json_is_null(json_object_get(c, "mean")));
    assert_true(json_is_null(json_object_get(c, "std")));
    assert_true(json_is_null(json_object_get(c, "min")));
    assert_true(json_is_null(json_object_get(c, "quantiles")));
    assert_true(json_is_null(json_object_get(c, "histogram")));
    text = json_dumps(o, 0); /* valid JSON: no NaN anywhere */
    assert_non_null(text);
    free(text);
    json_decref(o);

    spec.restricted = 1; /* one row's values withheld: extremes, quantiles, histogram */
    o = run(&t, &spec);
    c = json_object_get(o, "v");
    assert_int_equal(num(o, "v", "count"), 4);
    assert_true(fabs(num(o, "v", "mean") - 2.5) < 1e-15);
    assert_true(json_is_number(json_object_get(c, "std")));
    assert_true(json_is_null(json_object_get(c, "min")));
    assert_true(json_is_null(json_object_get(c, "max")));
    assert_true(json_is_null(json_object_get(c, "quantiles")));
    assert_null(json_object_get(c, "histogram"));
    json_decref(o);
    spec.min_cell = 5; /* a mean of fewer rows than min_cell is withheld too */
    o = run(&t, &spec);
    assert_true(json_is_null(json_object_get(json_object_get(o, "v"), "mean")));
    json_decref(o);
    cmp_table_free(&t);
}

/* A table of n rows: "x" uniform-ish in [0, 100) with a few far outside, "s" categories. */
static void
private_table(cmp_table *t, size_t n)
{
    double *x = malloc(n * sizeof *x);
    const char **s = malloc(n * sizeof *s);
    static const char *const cat[4] = {"red", "green", "blue", "rare"};
    sl_err err;
    size_t i;

    assert_non_null(x);
    assert_non_null(s);
    for (i = 0; i < n; i++) {
        x[i] = (double)(i * 37 % 100) + 0.5;
        s[i] = cat[i % 3];
    }
    x[0] = -1e6; /* clamped to the bounds */
    x[1] = 1e6;
    x[2] = NAN;
    s[3] = cat[3];
    s[4] = NULL;
    memset(t, 0, sizeof *t);
    add_num(t, "x", x, (uint32_t)n);
    add_str(t, "s", s, (uint32_t)n);
    assert_int_equal(cmp_table_finish(t, &err), SL_OK);
    free(x);
    free(s);
}

static void
privacy_refuses_bad_specs(void **state)
{
    const char *cols[2] = {"x", "s"};
    double lo[2] = {0, 0}, hi[2] = {100, 0};
    cmp_feat_spec spec = {0};
    cmp_table t;
    json_t *out = NULL;
    sl_err err;

    (void)state;
    private_table(&t, 50);
    spec.columns = cols;
    spec.ncolumns = 2;
    spec.epsilon = 1;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID); /* no bounds */
    assert_non_null(strstr(err.msg, "\"x\" needs bounds"));
    spec.lo = lo;
    spec.hi = hi;
    out = run(&t, &spec); /* a string column's bounds are not looked at */
    json_decref(out);
    out = NULL;
    hi[0] = 0; /* lo == hi */
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    hi[0] = INFINITY;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    hi[0] = NAN;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    hi[0] = 100;
    spec.epsilon = 10.5;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    spec.epsilon = -1;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    spec.epsilon = NAN;
    assert_int_equal(cmp_features_run(&t, &spec, &out, &err), SL_EINVALID);
    assert_null(out);
    cmp_table_free(&t);
}

static void
privacy_deterministic_and_bounded(void **state)
{
    const char *cols[2] = {"x", "s"};
    double lo[2] = {0, 0}, hi[2] = {100, 0};
    cmp_feat_spec spec = {0};
    cmp_table t;
    json_t *a, *b, *x, *hist, *v;
    size_t i, seed;
    int differ = 0;

    (void)state;
    private_table(&t, 300);
    spec.columns = cols;
    spec.ncolumns = 2;
    spec.epsilon = 1;
    spec.lo = lo;
    spec.hi = hi;
    spec.min_cell = 5;
    spec.restricted = 1; /* private: released all the same */
    memset(spec.seed, 7, sizeof spec.seed);
    a = run(&t, &spec);
    b = run(&t, &spec);
    assert_true(json_equal(a, b));
    json_decref(b);
    spec.seed[31] ^= 1;
    b = run(&t, &spec);
    assert_false(json_equal(a, b));
    json_decref(a);
    json_decref(b);

    for (seed = 0; seed < 200; seed++) {
        memcpy(spec.seed, &seed, sizeof seed);
        a = run(&t, &spec);
        x = json_object_get(a, "x");
        assert_true(num(a, "x", "count") >= 0);
        v = json_object_get(x, "mean");
        assert_true(json_number_value(v) >= 0 && json_number_value(v) <= 100);
        v = json_object_get(x, "std");
        assert_true(json_is_null(v) || (json_number_value(v) >= 0 && json_number_value(v) <= 100));
        for (i = 0; i < 5; i++) {
            static const char *key[5] = {"0.05", "0.25", "0.5", "0.75", "0.95"};
            double q = num(x, "quantiles", key[i]);
            assert_true(q >= 0 && q <= 100);
        }
        assert_true(num(a, "x", "min") >= 0 && num(a, "x", "max") <= 100);
        assert_true(num(a, "x", "min") <= num(a, "x", "max"));
        hist = json_object_get(x, "histogram");
        assert_true(json_real_value(json_array_get(json_object_get(hist, "edges"), 0)) == 0);
        assert_true(json_real_value(json_array_get(json_object_get(hist, "edges"), 10)) == 100);
        for (i = 0; i < 10; i++) {
            v = json_array_get(json_object_get(hist, "counts"), i);
            assert_true(json_is_null(v) || json_integer_value(v) >= 5);
            differ |= json_integer_value(v) != 30;
        }
        /* the string column: "rare" (1 row) never named, counts at least min_cell */
        v = json_object_get(json_object_get(a, "s"), "categories");
        assert_null(json_object_get(v, "rare"));
        {
            const char *k;
            json_t *c;
            json_object_foreach(v, k, c) assert_true(json_integer_value(c) >= 5);
        }
        json_decref(a);
    }
    assert_true(differ);
    cmp_table_free(&t);
}

/* Over many seeds the count's mean absolute noise is its scale, 1 / (epsilon / 4) for a
 * lone numeric column and 1 / (epsilon / 2) for a lone string column. */
static void
privacy_noise_at_its_scale(void **state)
{
    const char *colx[1] = {"x"}, *cols[1] = {"s"};
    double lo[1] = {0}, hi[1] = {100}, devx = 0, devs = 0, dsum = 0, mean_x = 0;
    const int runs = 2000;
    cmp_feat_spec spec = {0};
    cmp_table t;
    json_t *o;
    size_t r, i;

    (void)state;
    private_table(&t, 300);
    for (i = 0; i < 300; i++) { /* the true clamped mean */
        double v = t.col[0].v[i];
        if (!isnan(v))
            mean_x += (v < 0 ? 0 : v > 100 ? 100 : v) / 299;
    }
    spec.ncolumns = 1;
    spec.epsilon = 0.4; /* share 0.1: scale 10 */
    spec.lo = lo;
    spec.hi = hi;
    for (r = 0; r < (size_t)runs; r++) {
        memcpy(spec.seed, &r, sizeof r);
        spec.columns = colx;
        o = run(&t, &spec);
        devx += fabs(num(o, "x", "count") - 299);
        dsum += num(o, "x", "mean") - mean_x;
        json_decref(o);
        spec.columns = cols; /* share 0.2: scale 5 */
        o = run(&t, &spec);
        devs += fabs(num(o, "s", "count") - 299);
        json_decref(o);
    }
    devx /= runs;
    devs /= runs;
    assert_true(fabs(devx - 10) < 1.0);
    assert_true(fabs(devs - 5) < 0.5);
    assert_true(fabs(dsum / runs) < 1.0); /* the mean is about unbiased */
    cmp_table_free(&t);
}

/* With a large budget the noisy quantiles come near the exact ones. */
static void
privacy_quantiles_near_exact(void **state)
{
    const char *cols[1] = {"x"};
    double lo[1] = {0}, hi[1] = {100};
    cmp_feat_spec spec = {0};
    cmp_table t;
    json_t *o;

    (void)state;
    private_table(&t, 20000);
    spec.columns = cols;
    spec.ncolumns = 1;
    spec.epsilon = 10;
    spec.lo = lo;
    spec.hi = hi;
    spec.bins = 100;
    o = run(&t, &spec);
    assert_true(fabs(num(json_object_get(o, "x"), "quantiles", "0.5") - 50) < 2);
    assert_true(fabs(num(json_object_get(o, "x"), "quantiles", "0.05") - 5) < 2);
    assert_true(fabs(num(o, "x", "mean") - 50) < 1);
    assert_true(fabs(num(o, "x", "std") - 28.9) < 1);
    assert_true(fabs(num(o, "x", "count") - 19999) < 20);
    json_decref(o);
    cmp_table_free(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_holds_columns_across_frames),
        cmocka_unit_test(table_refuses_malformed_frames),
        cmocka_unit_test(dictionary_grows_then_overflows),
        cmocka_unit_test(transforms_numeric),
        cmocka_unit_test(transforms_one_hot_strings),
        cmocka_unit_test(one_hot_refuses_too_many_categories),
        cmocka_unit_test(features_exact),
        cmocka_unit_test(features_empty_and_restricted),
        cmocka_unit_test(privacy_refuses_bad_specs),
        cmocka_unit_test(privacy_deterministic_and_bounded),
        cmocka_unit_test(privacy_noise_at_its_scale),
        cmocka_unit_test(privacy_quantiles_near_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

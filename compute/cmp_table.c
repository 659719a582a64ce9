/*
 * compute/cmp_table.c: the columns a zone is sent, held whole in memory. Every frame is
 * checked entirely before a value of it is kept; strings are interned in a per-column
 * dictionary (open addressing, keyed SipHash so that crafted values cannot pile up in one
 * probe sequence) of at most CMP_MAX_CATEGORIES values.
 */
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cmp_data.h"

#define NOMEM_MSG "the job's data does not fit the zone's memory"

/* The dictionary of a string column. slot[] holds code + 1 (0: empty) and is never more
 * than half full; hash[] and len[] are per code, beside cmp_col's cat[]. */
typedef struct {
    unsigned char key[crypto_shorthash_KEYBYTES];
    uint32_t *slot;
    uint32_t mask; /* slots - 1, a power of two minus one */
    uint64_t *hash;
    uint32_t *len;
    uint32_t cap; /* entries of hash, len and cat */
    size_t overflow_rows;
} dict;

/* A column name for a message: cut at a character boundary, so msg stays UTF-8. */
static const char *
shown(char out[72], const char *name)
{
    return sl_text_clean(out, name, strlen(name), 64);
}

static uint16_t
rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Moves n elements of size bytes into a block of cap elements; the old block is wiped
 * (the values are the dataset's plaintext) and freed. NULL when out of memory (old kept). */
static void *
regrow(void *old, size_t n, size_t cap, size_t size)
{
    void *p;

    if (cap > SIZE_MAX / size || (p = malloc(cap * size)) == NULL)
        return NULL;
    if (n > 0) {
        memcpy(p, old, n * size);
        sodium_memzero(old, n * size);
    }
    free(old);
    return p;
}

/* The next capacity for at least need elements: doubling, at least 16. 0 on overflow. */
static size_t
next_cap(size_t cap, size_t need)
{
    size_t c = cap < 16 ? 16 : cap;

    while (c < need) {
        if (c > SIZE_MAX / 2)
            return 0;
        c *= 2;
    }
    return c;
}

static dict *
dict_new(void)
{
    dict *d = calloc(1, sizeof *d);
    int64_t ns = sl_mono_ns();
    uintptr_t a = (uintptr_t)d;

    if (d == NULL)
        return NULL;
    /* No random source in the sandbox: the key only has to be unknown to whoever wrote the
     * data in advance, and the monotonic clock in nanoseconds with a heap address is. */
    memcpy(d->key, &ns, sizeof ns);
    memcpy(d->key + 8, &a, sizeof a < 8 ? sizeof a : 8);
    d->slot = calloc(16, sizeof *d->slot);
    if (d->slot == NULL) {
        free(d);
        return NULL;
    }
    d->mask = 15;
    return d;
}

static void
dict_free(dict *d)
{
    if (d == NULL)
        return;
    free(d->slot);
    free(d->hash);
    free(d->len);
    sodium_memzero(d->key, sizeof d->key);
    free(d);
}

static uint64_t
dict_hash(const dict *d, const unsigned char *s, size_t n)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, s, n, d->key);
    memcpy(&v, h, sizeof v);
    return v;
}

/* Doubles the slots and places every code again. -1 when out of memory (d unchanged).
 * Slots stay at most half full, so a probe always ends at an empty one. */
static int
dict_rehash(dict *d, uint32_t ncat)
{
    uint32_t nslots = (d->mask + 1) * 2, m = nslots - 1, c;
    uint32_t *s = calloc(nslots, sizeof *s);

    if (s == NULL)
        return -1;
    for (c = 0; c < ncat; c++) {
        uint32_t i = (uint32_t)d->hash[c] & m;
        while (s[i] != 0)
            i = (i + 1) & m;
        s[i] = c + 1;
    }
    free(d->slot);
    d->slot = s;
    d->mask = m;
    return 0;
}

/* The code of value s[0..n) in column c, added when new; CMP_NULL_CODE once the dictionary
 * is full. -1 when out of memory. */
static int
dict_code(cmp_col *c, const unsigned char *s, uint32_t n, uint32_t *code)
{
    dict *d = c->index;
    uint64_t h = dict_hash(d, s, n);
    uint32_t i = (uint32_t)h & d->mask, k;
    char *copy;

    for (; d->slot[i] != 0; i = (i + 1) & d->mask) {
        k = d->slot[i] - 1;
        if (d->hash[k] == h && d->len[k] == n && memcmp(c->cat[k], s, n) == 0) {
            *code = k;
            return 0;
        }
    }
    if (c->ncat == CMP_MAX_CATEGORIES) {
        c->overflow = 1;
        d->overflow_rows++;
        *code = CMP_NULL_CODE;
        return 0;
    }
    if ((size_t)(c->ncat + 1) * 2 > (size_t)d->mask + 1) {
        if (dict_rehash(d, c->ncat) != 0)
            return -1;
        for (i = (uint32_t)h & d->mask; d->slot[i] != 0; i = (i + 1) & d->mask)
            ;
    }
    if (c->ncat == d->cap) {
        uint32_t cap = d->cap == 0 ? 16 : d->cap * 2;
        char **cat;
        uint64_t *hash;
        uint32_t *len;

        if (cap > CMP_MAX_CATEGORIES)
            cap = CMP_MAX_CATEGORIES;
        if ((cat = realloc(c->cat, cap * sizeof *cat)) == NULL)
            return -1;
        c->cat = cat;
        if ((hash = realloc(d->hash, cap * sizeof *hash)) == NULL)
            return -1;
        d->hash = hash;
        if ((len = realloc(d->len, cap * sizeof *len)) == NULL)
            return -1;
        d->len = len;
        d->cap = cap;
    }
    if ((copy = malloc((size_t)n + 1)) == NULL)
        return -1;
    memcpy(copy, s, n);
    copy[n] = '\0';
    k = c->ncat;
    c->cat[k] = copy;
    d->hash[k] = h;
    d->len[k] = n;
    d->slot[i] = k + 1;
    c->ncat++;
    *code = k;
    return 0;
}

size_t
cmp_table_overflow_rows(const cmp_col *c)
{
    return c->is_string && c->index != NULL ? ((const dict *)c->index)->overflow_rows : 0;
}

/* Room for need rows in c's value or code array. */
static int
col_reserve(cmp_col *c, size_t need)
{
    size_t cap;
    void *p;

    if (need <= c->cap)
        return 0;
    if ((cap = next_cap(c->cap, need)) == 0)
        return -1;
    if (c->is_string) {
        if ((p = regrow(c->code, c->n, cap, sizeof *c->code)) == NULL)
            return -1;
        c->code = p;
    } else {
        if ((p = regrow(c->v, c->n, cap, sizeof *c->v)) == NULL)
            return -1;
        c->v = p;
    }
    c->cap = cap;
    return 0;
}

/* The column named p[0..nl), created with the kind given when new. */
static sl_code
col_get(cmp_table *t, const unsigned char *p, uint16_t nl, int is_string, cmp_col **out,
        sl_err *err)
{
    char name[72];
    size_t k;
    cmp_col *c = NULL;

    for (k = 0; k < t->ncol; k++)
        if (strlen(t->col[k].name) == nl && memcmp(t->col[k].name, p, nl) == 0)
            break;
    if (k < t->ncol) {
        if (t->col[k].is_string != is_string)
            return sl_err_set(err, SL_EINVALID, "column \"%s\" changes kind between frames",
                              sl_text_clean(name, (const char *)p, nl, 64));
        *out = &t->col[k];
        return SL_OK;
    }
    if (t->ncol == CMP_MAX_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "more than %d columns", CMP_MAX_COLUMNS);
    if (t->ncol == t->cap) {
        size_t cap = t->cap == 0 ? 8 : t->cap * 2;
        cmp_col *col;

        if (cap > CMP_MAX_COLUMNS)
            cap = CMP_MAX_COLUMNS;
        if ((col = realloc(t->col, cap * sizeof *col)) == NULL)
            return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
        t->col = col;
        t->cap = cap;
    }
    c = &t->col[t->ncol];
    memset(c, 0, sizeof *c);
    memcpy(c->name, p, nl);
    c->is_string = is_string;
    if (is_string && (c->index = dict_new()) == NULL)
        return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
    t->ncol++;
    /* the rows expected, at once: no doubling, no copies (growth takes over when this
     * cannot be had) */
    if (t->hint > 0)
        (void)col_reserve(c, t->hint);
    *out = c;
    return SL_OK;
}

/* Values p[0..n) of a numeric frame, count of them: finite or NaN (a null). */
static sl_code
check_numbers(const char *nm, const unsigned char *p, uint32_t count, sl_err *err)
{
    uint32_t i;

    for (i = 0; i < count; i++) {
        double v;

        memcpy(&v, p + 8 * (size_t)i, 8);
        if (isinf(v))
            return sl_err_set(err, SL_EINVALID, "an infinite value in column \"%s\"", nm);
    }
    return SL_OK;
}

/* Values p[0..n) of a string frame: count of them, each len u32 (0xffffffff: null) and len
 * bytes, exactly. */
static sl_code
check_strings(const char *nm, const unsigned char *p, size_t n, uint32_t count, sl_err *err)
{
    size_t at = 0;
    uint32_t i, len;

    for (i = 0; i < count; i++) {
        if (n - at < 4)
            return sl_err_set(err, SL_EINVALID, "a string frame of column \"%s\" is short", nm);
        len = rd32(p + at);
        at += 4;
        if (len == UINT32_MAX)
            continue;
        if (len > n - at)
            return sl_err_set(err, SL_EINVALID,
                              "a value's length overruns a string frame of column \"%s\"", nm);
        /* The gateway's CSV reader admits only UTF-8 without NUL, and category names go
         * into JSON: anything else is a corrupt frame. */
        if (memchr(p + at, '\0', len) != NULL || !sl_utf8_valid((const char *)p + at, len))
            return sl_err_set(err, SL_EINVALID,
                              "a value that is not UTF-8 without NUL in column \"%s\"", nm);
        at += len;
    }
    if (at != n)
        return sl_err_set(err, SL_EINVALID,
                          "a string frame of column \"%s\" has bytes past its values", nm);
    return SL_OK;
}

static sl_code
add_numbers(cmp_col *c, const unsigned char *p, uint32_t count, sl_err *err)
{
    if (count == 0)
        return SL_OK;
    if (c->n > SIZE_MAX - count || col_reserve(c, c->n + count) != 0)
        return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
    memcpy(c->v + c->n, p, (size_t)count * 8);
    c->n += count;
    return SL_OK;
}

static sl_code
add_strings(cmp_col *c, const unsigned char *p, uint32_t count, sl_err *err)
{
    size_t at = 0;
    uint32_t i, len, code;

    if (c->n > SIZE_MAX - count || col_reserve(c, c->n + count) != 0)
        return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
    for (i = 0; i < count; i++) {
        len = rd32(p + at);
        at += 4;
        code = CMP_NULL_CODE;
        if (len != UINT32_MAX) {
            if (dict_code(c, p + at, len, &code) != 0)
                return sl_err_set(err, SL_ETOOLARGE, NOMEM_MSG);
            at += len;
        }
        c->code[c->n++] = code;
    }
    return SL_OK;
}

sl_code
cmp_table_add(cmp_table *t, const cmp_frame *f, sl_err *err)
{
    const unsigned char *p = f->payload;
    size_t n = f->len;
    uint16_t nl;
    uint32_t count;
    int is_string;
    char nm[72];
    cmp_col *c = NULL;
    sl_code rc;

    if (f->type != CMP_F_COLUMN && f->type != CMP_F_STRCOL)
        return sl_err_set(err, SL_EINVALID, "a frame of type %u where a column was expected",
                          (unsigned)f->type);
    is_string = f->type == CMP_F_STRCOL;
    if (n < 2 || (nl = rd16(p)) == 0 || nl > CMP_NAME_MAX || n - 2 < (size_t)nl + 4)
        return sl_err_set(err, SL_EINVALID, "a column frame with a bad name or length");
    if (memchr(p + 2, '\0', nl) != NULL || !sl_utf8_valid((const char *)p + 2, nl))
        return sl_err_set(err, SL_EINVALID, "a column name that is not UTF-8 without NUL");
    sl_text_clean(nm, (const char *)p + 2, nl, 64);
    count = rd32(p + 2 + nl);
    n -= 2u + nl + 4u;
    if (!is_string && (uint64_t)count * 8 != (uint64_t)n)
        return sl_err_set(err, SL_EINVALID,
                          "a frame of column \"%s\" whose length is not its "
                          "count's",
                          nm);
    if (is_string && (uint64_t)count * 4 > (uint64_t)n)
        return sl_err_set(err, SL_EINVALID,
                          "a string frame of column \"%s\" shorter than its "
                          "count",
                          nm);
    /* the whole frame is checked before the table changes: a refused frame leaves no trace */
    rc = is_string ? check_strings(nm, p + 2 + nl + 4, n, count, err)
                   : check_numbers(nm, p + 2 + nl + 4, count, err);
    if (rc != SL_OK || (rc = col_get(t, p + 2, nl, is_string, &c, err)) != SL_OK)
        return rc;
    p += 2u + nl + 4u;
    return is_string ? add_strings(c, p, count, err) : add_numbers(c, p, count, err);
}

sl_code
cmp_table_finish(cmp_table *t, sl_err *err)
{
    char a[72];
    size_t k;

    for (k = 1; k < t->ncol; k++)
        if (t->col[k].n != t->col[0].n)
            return sl_err_set(err, SL_EINVALID, "column \"%s\" has %zu rows, the first one %zu",
                              shown(a, t->col[k].name), t->col[k].n, t->col[0].n);
    t->nrows = t->ncol > 0 ? t->col[0].n : 0;
    return SL_OK;
}

const cmp_col *
cmp_table_find(const cmp_table *t, const char *name)
{
    size_t k;

    if (t == NULL || name == NULL)
        return NULL;
    for (k = 0; k < t->ncol; k++)
        if (strcmp(t->col[k].name, name) == 0)
            return &t->col[k];
    return NULL;
}

void
cmp_table_free(cmp_table *t)
{
    size_t k;
    uint32_t i;

    if (t == NULL)
        return;
    for (k = 0; k < t->ncol; k++) {
        cmp_col *c = &t->col[k];

        if (c->v != NULL)
            sodium_memzero(c->v, c->n * sizeof *c->v);
        if (c->code != NULL)
            sodium_memzero(c->code, c->n * sizeof *c->code);
        free(c->v);
        free(c->code);
        for (i = 0; i < c->ncat; i++) {
            sodium_memzero(c->cat[i], strlen(c->cat[i]));
            free(c->cat[i]);
        }
        free(c->cat);
        dict_free(c->index);
    }
    free(t->col);
    memset(t, 0, sizeof *t);
}

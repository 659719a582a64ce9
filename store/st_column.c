/*
 * store/st_column.c: a column of a row group: built field by field during an upload,
 * encoded into the chunk format that is compressed and sealed, and decoded back when a
 * version is read. The decoder is the first thing that sees bytes read from storage
 * after authentication, so it still checks everything.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"
#include "st_int.h"

#define CHUNK_MAGIC "SLC1"
#define HEAD_BYTES  16

void
st_column_init(st_column *c, st_type type)
{
    memset(c, 0, sizeof *c);
    c->type = type;
    c->bytes_max = SL_MAX_CHUNK_BYTES;
}

void
st_column_clear(st_column *c)
{
    free(c->nulls);
    free(c->i64);
    free(c->f64);
    free(c->b);
    free(c->off);
    free(c->str);
    st_column_init(c, c->type);
}

void
st_column_wipe(st_column *c)
{
    size_t cap = c->cap;

    if (c->nulls != NULL)
        sodium_memzero(c->nulls, cap);
    if (c->i64 != NULL)
        sodium_memzero(c->i64, cap * sizeof *c->i64);
    if (c->f64 != NULL)
        sodium_memzero(c->f64, cap * sizeof *c->f64);
    if (c->b != NULL)
        sodium_memzero(c->b, cap);
    if (c->str != NULL)
        sodium_memzero(c->str, c->str_cap);
    st_column_clear(c);
}

void
st_column_reset(st_column *c)
{
    c->rows = 0;
    if (c->off != NULL)
        c->off[0] = 0;
}

/* Room for `need` rows (at least; capacity doubles). */
static void
reserve(st_column *c, size_t need)
{
    size_t cap;

    if (need <= c->cap)
        return;
    cap = c->cap ? c->cap * 2 : 1024;
    if (cap < need)
        cap = need;
    if (cap > SL_ROWS_PER_GROUP)
        cap = SL_ROWS_PER_GROUP;
    c->nulls = sl_xreallocarray(c->nulls, cap, 1);
    switch (c->type) {
    case ST_INT64:
        c->i64 = sl_xreallocarray(c->i64, cap, sizeof *c->i64);
        break;
    case ST_FLOAT64:
        c->f64 = sl_xreallocarray(c->f64, cap, sizeof *c->f64);
        c->off = sl_xreallocarray(c->off, cap + 1, sizeof *c->off);
        if (c->cap == 0)
            c->off[0] = 0;
        break;
    case ST_BOOL:
        c->b = sl_xreallocarray(c->b, cap, 1);
        break;
    case ST_STRING:
        c->off = sl_xreallocarray(c->off, cap + 1, sizeof *c->off);
        if (c->cap == 0)
            c->off[0] = 0;
        break;
    }
    c->cap = cap;
}

static sl_code
add_string(st_column *c, const char *p, size_t n, sl_err *err)
{
    size_t used = c->off[c->rows], cap;

    if (n > c->bytes_max - used || used + n > UINT32_MAX)
        return sl_err_set(err, SL_ETOOLARGE, "a row group's text is larger than the limit");
    if (used + n > c->str_cap) {
        cap = c->str_cap ? c->str_cap : 4096;
        while (cap < used + n)
            cap *= 2;
        if (cap > c->bytes_max)
            cap = c->bytes_max;
        c->str = sl_xreallocarray(c->str, cap, 1);
        c->str_cap = cap;
    }
    if (n > 0)
        memcpy(c->str + used, p, n);
    c->off[c->rows + 1] = (uint32_t)(used + n);
    return SL_OK;
}

sl_code
st_column_add(st_column *c, const st_field *f, sl_err *err)
{
    uint32_t r = c->rows;
    sl_code rc = SL_OK;

    if (r >= SL_ROWS_PER_GROUP)
        return sl_err_set(err, SL_ETOOLARGE, "more rows in a row group than the limit");
    reserve(c, (size_t)r + 1);
    c->nulls[r] = (uint8_t)(f->null != 0);
    switch (c->type) {
    case ST_INT64:
        c->i64[r] = 0;
        if (!f->null && st_parse_int64(f->p, f->n, &c->i64[r]) != SL_OK)
            rc = sl_err_set(err, SL_EINVALID, "not an int64");
        break;
    case ST_FLOAT64:
        c->f64[r] = 0;
        if (!f->null) {
            int canon;
            if (st_parse_float64_text(f->p, f->n, &c->f64[r], c->text ? &canon : NULL) != SL_OK) {
                rc = sl_err_set(err, SL_EINVALID, "not a finite float64");
                break;
            }
            /* the text kept while every value is already in its canonical form */
            if (c->text && !canon)
                c->text = 0;
        }
        if (c->text)
            rc = add_string(c, f->null ? "" : f->p, f->null ? 0 : f->n, err);
        break;
    case ST_BOOL: {
        int v = 0;
        if (!f->null && st_parse_bool(f->p, f->n, &v) != SL_OK)
            rc = sl_err_set(err, SL_EINVALID, "not a bool (true or false)");
        c->b[r] = (uint8_t)v;
        break;
    }
    case ST_STRING:
        rc = add_string(c, f->null ? "" : f->p, f->null ? 0 : f->n, err);
        break;
    }
    if (rc == SL_OK)
        c->rows++;
    return rc;
}

sl_code
st_column_parse_floats(st_column *c, const st_column *text, int *canonical, uint32_t *bad)
{
    uint32_t r, rows = text->rows;
    int all = 1;

    st_column_reset(c);
    c->text = 0;
    if (c->type != ST_FLOAT64 || text->type != ST_STRING || rows > SL_ROWS_PER_GROUP)
        return SL_EINVALID;
    reserve(c, rows);
    for (r = 0; r < rows; r++) {
        int canon;
        c->nulls[r] = text->nulls[r];
        c->f64[r] = 0;
        if (text->nulls[r])
            continue;
        if (st_parse_float64_text(text->str != NULL ? text->str + text->off[r] : "",
                                  text->off[r + 1] - text->off[r], &c->f64[r],
                                  all ? &canon : NULL) != SL_OK) {
            *bad = r;
            return SL_EINVALID;
        }
        if (all)
            all = canon;
    }
    c->rows = rows;
    *canonical = all && rows > 0;
    return SL_OK;
}

/* ---- encoding ---- */

static void
bits(unsigned char *dst, const uint8_t *flags, uint32_t rows)
{
    uint32_t r;

    memset(dst, 0, (rows + 7) / 8);
    for (r = 0; r < rows; r++)
        if (flags[r])
            dst[r / 8] |= (unsigned char)(1u << (r % 8));
}

sl_code
st_column_encode(const st_column *c, sl_buf *out)
{
    uint32_t r, nnull = 0, rows = c->rows;
    size_t nb = ((size_t)rows + 7) / 8, body;
    int text = c->type == ST_FLOAT64 && c->text && rows > 0;
    unsigned char *p;

    if (c->type == ST_FLOAT64 && !text && c->f64 == NULL && rows > 0)
        return SL_EINVALID; /* decoded text not read as floats: cannot happen */
    for (r = 0; r < rows; r++)
        nnull += c->nulls[r] != 0;
    switch (c->type) {
    case ST_INT64:
        body = (size_t)rows * 8;
        break;
    case ST_FLOAT64:
        body = text ? ((size_t)rows + 1) * 4 + (rows ? c->off[rows] : 0) : (size_t)rows * 8;
        break;
    case ST_BOOL:
        body = nb;
        break;
    default:
        body = ((size_t)rows + 1) * 4 + (rows ? c->off[rows] : 0);
        break;
    }
    if (sl_buf_extend(out, HEAD_BYTES + (nnull ? nb : 0) + body, &p) != SL_OK)
        return SL_ETOOLARGE;
    memcpy(p, CHUNK_MAGIC, 4);
    p[4] = (unsigned char)c->type;
    p[5] = (unsigned char)text;
    p[6] = p[7] = 0;
    st_le32(p + 8, rows);
    st_le32(p + 12, nnull);
    p += HEAD_BYTES;
    if (nnull) {
        bits(p, c->nulls, rows);
        p += nb;
    }
    switch (c->type) {
    case ST_INT64:
        for (r = 0; r < rows; r++)
            st_le64(p + 8 * (size_t)r, (uint64_t)c->i64[r]);
        break;
    case ST_BOOL:
        bits(p, c->b, rows);
        break;
    case ST_FLOAT64:
        if (!text) {
            for (r = 0; r < rows; r++) {
                uint64_t u;
                memcpy(&u, &c->f64[r], 8);
                st_le64(p + 8 * (size_t)r, u);
            }
            break;
        }
        /* fall through - the text laid out as a string column's */
    case ST_STRING:
        for (r = 0; r <= rows; r++)
            st_le32(p + 4 * (size_t)r, rows ? c->off[r] : 0);
        if (rows && c->off[rows])
            memcpy(p + 4 * ((size_t)rows + 1), c->str, c->off[rows]);
        break;
    }
    return SL_OK;
}

/* ---- decoding ---- */

/* The bitmap's bits past `rows` must be zero; count the set ones. */
static int
read_bits(const unsigned char *src, uint32_t rows, uint8_t *flags, uint32_t *set)
{
    uint32_t r, n = 0;

    for (r = 0; r < rows; r++) {
        flags[r] = (uint8_t)((src[r / 8] >> (r % 8)) & 1u);
        n += flags[r];
    }
    if (rows % 8 != 0 && (src[rows / 8] >> (rows % 8)) != 0)
        return 0;
    if (set != NULL)
        *set = n;
    return 1;
}

/*
 * The stored text of a float64 column: each null's empty, each value's 1 to 32 bytes,
 * all of them characters the canonical form uses (checked over the whole text at once).
 * Whether each is the canonical form is not checked here (a chunk's bytes are
 * authenticated before they are decoded; this is defence in depth), but
 * st_column_floats refuses anything that does not read as a finite float64.
 */
static int
float_texts(const char *str, const uint32_t *off, const uint8_t *nulls, uint32_t rows)
{
    static const unsigned char ok[256] = {
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
        ['7'] = 1, ['8'] = 1, ['9'] = 1, ['.'] = 1, ['e'] = 1, ['-'] = 1, ['+'] = 1};
    unsigned bad = 0;
    uint32_t r, i;

    for (r = 0; r < rows; r++) {
        uint32_t len = off[r + 1] - off[r];
        if (nulls[r] ? len != 0 : len == 0 || len >= ST_FLOAT_TEXT)
            return 0;
    }
    for (i = 0; i < off[rows]; i++)
        bad |= ok[(unsigned char)str[i]] ^ 1u;
    return bad == 0;
}

sl_code
st_column_floats(st_column *c)
{
    uint32_t r;

    if (c->type != ST_FLOAT64 || c->f64 != NULL || !c->text)
        return SL_OK;
    c->f64 = sl_xcalloc(c->rows ? c->rows : 1, sizeof *c->f64);
    for (r = 0; r < c->rows; r++)
        if (!c->nulls[r] &&
            st_parse_float64(c->str + c->off[r], c->off[r + 1] - c->off[r], &c->f64[r]) != SL_OK)
            return SL_EINVALID;
    return SL_OK;
}

sl_code
st_column_decode(const unsigned char *p, size_t n, st_column *out)
{
    st_column c;
    uint32_t rows, nnull, got, r;
    size_t nb, need;
    int type, text;

    if (n < HEAD_BYTES || memcmp(p, CHUNK_MAGIC, 4) != 0 || p[5] > 1 || p[6] || p[7])
        return SL_EINVALID;
    type = p[4];
    if (type > ST_STRING || (p[5] && (type != ST_FLOAT64 || st_rd32(p + 8) == 0)))
        return SL_EINVALID;
    text = p[5];
    rows = st_rd32(p + 8);
    nnull = st_rd32(p + 12);
    if (rows > SL_ROWS_PER_GROUP || nnull > rows)
        return SL_EINVALID;
    nb = ((size_t)rows + 7) / 8;
    st_column_init(&c, (st_type)type);
    c.cap = rows;
    c.nulls = sl_xcalloc(rows ? rows : 1, 1);
    p += HEAD_BYTES;
    n -= HEAD_BYTES;
    if (nnull > 0) {
        if (n < nb || !read_bits(p, rows, c.nulls, &got) || got != nnull)
            goto bad;
        p += nb;
        n -= nb;
    }
    switch (text ? ST_STRING : c.type) {
    case ST_INT64:
    case ST_FLOAT64:
        if (n != (size_t)rows * 8)
            goto bad;
        if (c.type == ST_INT64) {
            c.i64 = sl_xcalloc(rows ? rows : 1, sizeof *c.i64);
            for (r = 0; r < rows; r++)
                c.i64[r] = (int64_t)st_rd64(p + 8 * (size_t)r);
        } else {
            c.f64 = sl_xcalloc(rows ? rows : 1, sizeof *c.f64);
            for (r = 0; r < rows; r++) {
                uint64_t u = st_rd64(p + 8 * (size_t)r);
                memcpy(&c.f64[r], &u, 8);
                /* only finite numbers are ever stored */
                if ((u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL)
                    goto bad;
            }
        }
        break;
    case ST_BOOL:
        c.b = sl_xcalloc(rows ? rows : 1, 1);
        if (n != nb || !read_bits(p, rows, c.b, NULL))
            goto bad;
        break;
    case ST_STRING:
        need = ((size_t)rows + 1) * 4;
        if (n < need)
            goto bad;
        c.off = sl_xcalloc((size_t)rows + 1, sizeof *c.off);
        for (r = 0; r <= rows; r++) {
            c.off[r] = st_rd32(p + 4 * (size_t)r);
            if ((r == 0 && c.off[0] != 0) || (r > 0 && c.off[r] < c.off[r - 1]))
                goto bad;
        }
        if (n - need != c.off[rows])
            goto bad;
        c.str = sl_xmalloc(c.off[rows] ? c.off[rows] : 1);
        memcpy(c.str, p + need, c.off[rows]);
        c.str_cap = c.off[rows];
        if (text && !float_texts(c.str, c.off, c.nulls, rows))
            goto bad;
        for (r = 0; !text && r < rows; r++) {
            size_t len = c.off[r + 1] - c.off[r];
            if (!sl_utf8_valid(c.str + c.off[r], len) ||
                memchr(c.str + c.off[r], '\0', len) != NULL || (c.nulls[r] && len != 0))
                goto bad;
        }
        c.text = text;
        break;
    }
    /* a null row holds the zero value */
    for (r = 0; r < rows; r++) {
        if (!c.nulls[r])
            continue;
        if ((c.type == ST_INT64 && c.i64[r] != 0) || (c.type == ST_BOOL && c.b[r] != 0))
            goto bad;
        if (c.type == ST_FLOAT64 && !c.text) {
            uint64_t u;
            memcpy(&u, &c.f64[r], 8);
            if (u != 0)
                goto bad;
        }
    }
    c.rows = rows;
    *out = c;
    return SL_OK;
bad:
    st_column_clear(&c);
    return SL_EINVALID;
}

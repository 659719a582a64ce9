/*
 * store/st_column.c: a column of a row group: built field by field during an upload,
 * encoded into the chunk format that is compressed and sealed, and decoded back when a
 * version is read. The decoder is the first thing that sees bytes read from storage
 * after authentication, so it still checks everything.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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
    /* values are plaintext: a block left behind is wiped */
    c->nulls = sl_xreallocarray_wiped(c->nulls, c->cap, cap, 1);
    switch (c->type) {
    case ST_INT64:
        c->i64 = sl_xreallocarray_wiped(c->i64, c->cap, cap, sizeof *c->i64);
        break;
    case ST_FLOAT64:
        c->f64 = sl_xreallocarray_wiped(c->f64, c->cap, cap, sizeof *c->f64);
        c->off = sl_xreallocarray_wiped(c->off, c->cap ? c->cap + 1 : 0, cap + 1, sizeof *c->off);
        if (c->cap == 0)
            c->off[0] = 0;
        break;
    case ST_BOOL:
        c->b = sl_xreallocarray_wiped(c->b, c->cap, cap, 1);
        break;
    case ST_STRING:
        c->off = sl_xreallocarray_wiped(c->off, c->cap ? c->cap + 1 : 0, cap + 1, sizeof *c->off);
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
        c->str = sl_xreallocarray_wiped(c->str, c->str_cap, cap, 1);
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

/* Bytes of room past a decoded column's text: a value (under ST_FLOAT_TEXT bytes) can be
 * copied with a fixed-size move that reads past its end. */
#define TEXT_PAD ST_FLOAT_TEXT

/*
 * The stored text of a float64 column: each null's empty, each value's 1 to 31 bytes,
 * all of them characters the canonical form uses (checked over the whole text at once,
 * branch-free so that the compiler vectorises it). Whether each is the canonical form
 * is not checked here (a chunk's bytes are authenticated before they are decoded; this
 * is defence in depth), but st_column_floats refuses anything that does not read as a
 * finite float64.
 */
static int
float_texts(const char *str, const uint32_t *off, const uint8_t *nulls, uint32_t rows)
{
    unsigned bad = 0;
    uint32_t r, i;

    for (r = 0; r < rows; r++) {
        uint32_t len = off[r + 1] - off[r];
        bad |= nulls[r] ? len != 0 : len - 1 >= ST_FLOAT_TEXT - 1;
    }
    i = 0;
#ifdef __SSE2__
    {
        const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9),
                      point = _mm_set1_epi8('.'), e = _mm_set1_epi8('e'),
                      minus = _mm_set1_epi8('-'), plus = _mm_set1_epi8('+');
        for (; i + 16 <= off[rows]; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(str + i));
            __m128i d = _mm_sub_epi8(v, zero);
            __m128i ok = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(d, nine), d), _mm_cmpeq_epi8(v, point)),
                _mm_or_si128(_mm_cmpeq_epi8(v, e),
                             _mm_or_si128(_mm_cmpeq_epi8(v, minus), _mm_cmpeq_epi8(v, plus))));
            bad |= (unsigned)(_mm_movemask_epi8(ok) != 0xffff);
        }
    }
#endif
    for (; i < off[rows]; i++) {
        unsigned char c = (unsigned char)str[i];
        bad |= (unsigned)((unsigned char)(c - '0') > 9 && c != '.' && c != 'e' && c != '-' &&
                          c != '+');
    }
    return bad == 0;
}

/* The text of a string column: valid UTF-8 as a whole, no NUL, each value starting on a
 * character (so each is valid on its own), nulls empty. */
static int
string_texts(const char *str, const uint32_t *off, const uint8_t *nulls, uint32_t rows)
{
    unsigned bad = 0;
    uint32_t r, total = off[rows];

    if (total > 0 && (!sl_utf8_valid(str, total) || memchr(str, '\0', total) != NULL))
        return 0;
    for (r = 0; r < rows; r++) {
        uint32_t len = off[r + 1] - off[r];
        bad |= (unsigned)(nulls[r] && len != 0);
        if (len > 0)
            bad |= (unsigned)(((unsigned char)str[off[r]] & 0xc0) == 0x80);
    }
    return bad == 0;
}

sl_code
st_column_floats(st_column *c)
{
    uint32_t r;

    if (c->type != ST_FLOAT64 || c->f64 != NULL || !c->text)
        return SL_OK;
    c->f64 = sl_xcalloc(c->cap ? c->cap : 1, sizeof *c->f64);
    for (r = 0; r < c->rows; r++)
        if (!c->nulls[r] &&
            st_parse_float64(c->str + c->off[r], c->off[r + 1] - c->off[r], &c->f64[r]) != SL_OK)
            return SL_EINVALID;
    return SL_OK;
}

uint32_t
st_column_keep(st_column *c, const uint8_t *keep)
{
    uint32_t r, w = 0, at = 0, rows = c->rows;
    int text = c->off != NULL && (c->type == ST_STRING || c->text);
    size_t end = text ? c->off[rows] : 0;

    for (r = 0; r < rows; r++) {
        if (!keep[r])
            continue;
        c->nulls[w] = c->nulls[r];
        if (c->i64 != NULL && c->type == ST_INT64)
            c->i64[w] = c->i64[r];
        if (c->f64 != NULL && c->type == ST_FLOAT64)
            c->f64[w] = c->f64[r];
        if (c->b != NULL && c->type == ST_BOOL)
            c->b[w] = c->b[r];
        if (text) {
            uint32_t len = c->off[r + 1] - c->off[r];
            if (at != c->off[r])
                memmove(c->str + at, c->str + c->off[r], len);
            c->off[w] = at;
            at += len;
        }
        w++;
    }
    if (text) {
        c->off[w] = at;
        /* the bytes freed, and the padding past the new end, are zeros */
        if (c->str != NULL && end > at)
            memset(c->str + at, 0, end - at);
    }
    c->rows = w;
    return w;
}

/* Room for `rows` rows in the arrays a decoded column of its type uses (and keeping
 * those it has: a column is decoded into again and again by a read). */
static void
decode_room(st_column *c, uint32_t rows, int text)
{
    size_t cap = rows ? rows : 1;

    if (c->cap < cap) {
        /* the previous group's values: wiped where they were */
        c->nulls = sl_xreallocarray_wiped(c->nulls, c->cap, cap, 1);
        if (c->i64 != NULL)
            c->i64 = sl_xreallocarray_wiped(c->i64, c->cap, cap, sizeof *c->i64);
        if (c->f64 != NULL)
            c->f64 = sl_xreallocarray_wiped(c->f64, c->cap, cap, sizeof *c->f64);
        if (c->b != NULL)
            c->b = sl_xreallocarray_wiped(c->b, c->cap, cap, 1);
        if (c->off != NULL)
            c->off = sl_xreallocarray_wiped(c->off, c->cap + 1, cap + 1, sizeof *c->off);
        c->cap = cap;
    }
    if (c->nulls == NULL)
        c->nulls = sl_xcalloc(c->cap, 1);
    if (c->type == ST_INT64 && c->i64 == NULL)
        c->i64 = sl_xcalloc(c->cap, sizeof *c->i64);
    if (c->type == ST_FLOAT64 && !text && c->f64 == NULL)
        c->f64 = sl_xcalloc(c->cap, sizeof *c->f64);
    if (c->type == ST_BOOL && c->b == NULL)
        c->b = sl_xcalloc(c->cap, 1);
    if ((c->type == ST_STRING || text) && c->off == NULL)
        c->off = sl_xcalloc(c->cap + 1, sizeof *c->off);
}

sl_code
st_column_decode_into(const unsigned char *p, size_t n, st_column *c)
{
    uint32_t rows, nnull, got, r;
    size_t nb, need;
    int type, text;
    unsigned bad = 0;

    c->rows = 0;
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
    if (c->type != (st_type)type) {
        st_column_wipe(c);
        st_column_init(c, (st_type)type);
    }
    if (c->f64 != NULL && (text || c->text)) { /* floats parsed from an earlier text */
        sodium_memzero(c->f64, c->cap * sizeof *c->f64);
        free(c->f64);
        c->f64 = NULL;
    }
    c->text = 0;
    c->padded = 0;
    decode_room(c, rows, text);
    p += HEAD_BYTES;
    n -= HEAD_BYTES;
    if (nnull > 0) {
        if (n < nb || !read_bits(p, rows, c->nulls, &got) || got != nnull)
            return SL_EINVALID;
        p += nb;
        n -= nb;
    } else {
        memset(c->nulls, 0, rows);
    }
    switch (text ? ST_STRING : c->type) {
    case ST_INT64:
    case ST_FLOAT64:
        if (n != (size_t)rows * 8)
            return SL_EINVALID;
        if (c->type == ST_INT64) {
            for (r = 0; r < rows; r++)
                c->i64[r] = (int64_t)st_rd64(p + 8 * (size_t)r);
        } else {
            for (r = 0; r < rows; r++) {
                uint64_t u = st_rd64(p + 8 * (size_t)r);
                memcpy(&c->f64[r], &u, 8);
                /* only finite numbers are ever stored */
                bad |= (unsigned)((u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL);
            }
        }
        break;
    case ST_BOOL:
        if (n != nb || !read_bits(p, rows, c->b, NULL))
            return SL_EINVALID;
        break;
    case ST_STRING:
        need = ((size_t)rows + 1) * 4;
        if (n < need)
            return SL_EINVALID;
        for (r = 0; r <= rows; r++)
            c->off[r] = st_rd32(p + 4 * (size_t)r);
        bad |= (unsigned)(c->off[0] != 0);
        for (r = 0; r < rows; r++)
            bad |= (unsigned)(c->off[r + 1] < c->off[r]);
        if (bad || n - need != c->off[rows])
            return SL_EINVALID;
        if (c->str_cap < (size_t)c->off[rows] + TEXT_PAD) {
            if (c->str != NULL)
                sodium_memzero(c->str, c->str_cap);
            free(c->str);
            c->str_cap = (size_t)c->off[rows] + TEXT_PAD;
            c->str = sl_xmalloc(c->str_cap);
        }
        memcpy(c->str, p + need, c->off[rows]);
        memset(c->str + c->off[rows], 0, TEXT_PAD);
        c->padded = 1;
        if (text ? !float_texts(c->str, c->off, c->nulls, rows)
                 : !string_texts(c->str, c->off, c->nulls, rows))
            return SL_EINVALID;
        c->text = text;
        break;
    }
    /* a null row holds the zero value */
    for (r = 0; r < rows; r++) {
        unsigned z = 0;
        if (c->type == ST_INT64)
            z = c->i64[r] != 0;
        else if (c->type == ST_BOOL)
            z = c->b[r] != 0;
        else if (c->type == ST_FLOAT64 && !c->text) {
            uint64_t u;
            memcpy(&u, &c->f64[r], 8);
            z = u != 0;
        }
        bad |= c->nulls[r] & z;
    }
    if (bad)
        return SL_EINVALID;
    c->rows = rows;
    return SL_OK;
}

sl_code
st_column_decode(const unsigned char *p, size_t n, st_column *out)
{
    st_column c;

    st_column_init(&c, ST_STRING);
    if (st_column_decode_into(p, n, &c) != SL_OK) {
        st_column_wipe(&c);
        return SL_EINVALID;
    }
    *out = c;
    return SL_OK;
}

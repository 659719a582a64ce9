/*
 * store/st_format.c: the formats rows are served in: CSV, JSON lines and NumPy's .npy.
 * Exact: int64 prints every digit, float64 the shortest text that reads back to the
 * same bits, strings as they were uploaded.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "st.h"

sl_code
st_out_parse(const char *name, st_out *out)
{
    if (strcmp(name, "csv") == 0)
        *out = ST_OUT_CSV;
    else if (strcmp(name, "jsonl") == 0)
        *out = ST_OUT_JSONL;
    else if (strcmp(name, "npy") == 0)
        *out = ST_OUT_NPY;
    else
        return SL_EINVALID;
    return SL_OK;
}

const char *
st_out_ctype(st_out f)
{
    if (f == ST_OUT_CSV)
        return "text/csv";
    return f == ST_OUT_JSONL ? "application/x-ndjson" : "application/octet-stream";
}

static int
needs_quotes(const char *p, size_t n)
{
    size_t i;

    if (n == 0)
        return 1; /* the empty string, told apart from null */
    for (i = 0; i < n; i++)
        if (p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r')
            return 1;
    return 0;
}

/* A text field in CSV at dst (room for 2n + 2 bytes): quoted, quotes doubled, when it
 * needs it. The length written. */
static size_t
put_csv_text(char *dst, const char *s, size_t n)
{
    size_t k, o = 0;

    if (!needs_quotes(s, n)) {
        memcpy(dst, s, n);
        return n;
    }
    dst[o++] = '"';
    for (k = 0; k < n; k++) {
        if (s[k] == '"')
            dst[o++] = '"';
        dst[o++] = s[k];
    }
    dst[o++] = '"';
    return o;
}

static sl_code
csv_text(sl_buf *out, const char *s, size_t n)
{
    char *p;

    if (n > (SIZE_MAX - 2) / 2 || sl_buf_room(out, 2 * n + 2, &p) != SL_OK)
        return SL_ETOOLARGE;
    sl_buf_wrote(out, put_csv_text(p, s, n));
    return SL_OK;
}

/* A string in JSON (the text is valid UTF-8 without NUL, as stored). */
static sl_code
json_text(sl_buf *out, const char *p, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    size_t i, run = 0;
    sl_code rc = sl_buf_append(out, "\"", 1);

    for (i = 0; i < n && rc == SL_OK; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[7];
        size_t elen = 2;
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            elen = 6;
        }
        rc = sl_buf_append(out, p + i - run, run);
        if (rc == SL_OK)
            rc = sl_buf_append(out, esc, elen);
        run = 0;
    }
    if (rc == SL_OK)
        rc = sl_buf_append(out, p + n - run, run);
    if (rc == SL_OK)
        rc = sl_buf_append(out, "\"", 1);
    return rc;
}

/* A value as JSON: numbers exact, bools as true/false, strings escaped. */
static sl_code
value_text(const st_column *c, uint32_t r, st_out f, sl_buf *out)
{
    char num[ST_FLOAT_TEXT];
    size_t n;

    switch (c->type) {
    case ST_INT64:
        n = (size_t)snprintf(num, sizeof num, "%" PRId64, c->i64[r]);
        return sl_buf_append(out, num, n);
    case ST_FLOAT64:
        if (c->text) { /* canonical already: copied as it is */
            const char *t = c->str + c->off[r];
            size_t len = c->off[r + 1] - c->off[r];
            sl_code rc = sl_buf_append(out, t, len);
            if (rc == SL_OK && f == ST_OUT_JSONL && memchr(t, '.', len) == NULL &&
                memchr(t, 'e', len) == NULL)
                rc = sl_buf_append(out, ".0", 2);
            return rc;
        }
        n = st_format_float64(c->f64[r], num);
        /* in JSON a number without a point or exponent reads as an integer (and -0 as 0):
         * a float keeps ".0" there so its type and sign survive */
        if (f == ST_OUT_JSONL && strpbrk(num, ".e") == NULL) {
            memcpy(num + n, ".0", 3);
            n += 2;
        }
        return sl_buf_append(out, num, n);
    case ST_BOOL:
        return sl_buf_puts(out, c->b[r] ? "true" : "false");
    case ST_STRING:
        return json_text(out, c->str + c->off[r], c->off[r + 1] - c->off[r]);
    }
    return SL_EINTERNAL;
}

/* NumPy 1.0 header: magic, version, length, the dict padded so data starts on 64. */
static sl_code
npy_header(size_t ncols, uint64_t rows, sl_buf *out)
{
    char dict[160];
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '<f8', 'fortran_order': False, 'shape': (%llu, %zu), }",
                     (unsigned long long)rows, ncols);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64, hlen = (size_t)n + pad + 1;
    sl_code rc;

    pre[8] = (unsigned char)hlen;
    pre[9] = (unsigned char)(hlen >> 8);
    if ((rc = sl_buf_append(out, pre, sizeof pre)) != SL_OK ||
        (rc = sl_buf_append(out, dict, (size_t)n)) != SL_OK)
        return rc;
    while (pad-- > 0)
        if ((rc = sl_buf_append(out, " ", 1)) != SL_OK)
            return rc;
    return sl_buf_append(out, "\n", 1);
}

sl_code
st_out_begin(st_out f, const char *const *names, const st_type *types, size_t ncols, uint64_t rows,
             sl_buf *out)
{
    sl_code rc = SL_OK;
    size_t i;

    switch (f) {
    case ST_OUT_CSV:
        for (i = 0; i < ncols && rc == SL_OK; i++) {
            if (i > 0)
                rc = sl_buf_append(out, ",", 1);
            if (rc == SL_OK)
                rc = csv_text(out, names[i], strlen(names[i]));
        }
        return rc == SL_OK ? sl_buf_append(out, "\n", 1) : rc;
    case ST_OUT_NPY:
        for (i = 0; i < ncols; i++)
            if (types[i] == ST_STRING)
                return SL_EINVALID;
        return npy_header(ncols, rows, out);
    case ST_OUT_JSONL:
    case ST_OUT_FRAMES:
        return SL_OK;
    }
    return SL_EINTERNAL;
}

static void
le_double(unsigned char *p, double v)
{
    uint64_t u;
    int b;

    memcpy(&u, &v, 8);
    for (b = 0; b < 8; b++)
        p[b] = (unsigned char)(u >> (8 * b));
}

/* An int64's digits at p (at most 20 bytes); the length. */
static size_t
put_i64(char *p, int64_t v)
{
    char t[24];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, o = 0;

    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        p[o++] = '-';
    while (n > 0)
        p[o++] = t[--n];
    return o;
}

/* The longest text a CSV value of c at row r can take: a string at most doubles with its
 * quotes; anything else is under ST_FLOAT_TEXT (and a padded column's text is copied
 * ST_FLOAT_TEXT bytes at a time). */
static size_t
csv_room(const st_column *c, uint32_t r)
{
    if (c->type == ST_STRING && !c->nulls[r])
        return 2 * (size_t)(c->off[r + 1] - c->off[r]) + 2;
    return ST_FLOAT_TEXT;
}

/* Row r's values in CSV at p (room as csv_room says, and a byte per separator); the
 * length written. */
static size_t
csv_row(const st_column *cols, size_t ncols, uint32_t r, char *p)
{
    size_t i, o = 0;

    for (i = 0; i < ncols; i++) {
        const st_column *c = &cols[i];
        if (i > 0)
            p[o++] = ',';
        if (c->nulls[r])
            continue;
        switch (c->type) {
        case ST_INT64:
            o += put_i64(p + o, c->i64[r]);
            break;
        case ST_FLOAT64:
            if (c->text) {
                size_t len = c->off[r + 1] - c->off[r];
                if (c->padded) /* one fixed-size move: the text has room past its end */
                    memcpy(p + o, c->str + c->off[r], ST_FLOAT_TEXT);
                else
                    memcpy(p + o, c->str + c->off[r], len);
                o += len;
            } else {
                o += st_format_float64(c->f64[r], p + o);
            }
            break;
        case ST_BOOL:
            memcpy(p + o, c->b[r] ? "true" : "false", c->b[r] ? 4 : 5);
            o += c->b[r] ? 4 : 5;
            break;
        case ST_STRING:
            o += put_csv_text(p + o, c->str + c->off[r], c->off[r + 1] - c->off[r]);
            break;
        }
    }
    p[o++] = '\n';
    return o;
}

/*
 * CSV rows written straight into out: the longest their text can be is reserved once,
 * then each value is copied or written in place. The same text as the value-by-value
 * path.
 */
static sl_code
csv_rows(const st_column *cols, size_t ncols, uint32_t from, uint32_t to, sl_buf *out)
{
    size_t need = 0, i, o = 0;
    uint32_t r;
    char *p;

    for (r = from; r < to; r++) {
        need += ncols + 1;
        for (i = 0; i < ncols; i++)
            need += csv_room(&cols[i], r);
    }
    if (sl_buf_room(out, need, &p) != SL_OK)
        return SL_ETOOLARGE;
    for (r = from; r < to; r++)
        o += csv_row(cols, ncols, r, p + o);
    sl_buf_wrote(out, o);
    return SL_OK;
}

static void
le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* A frame's head and the column's name and count (the payload is head_room + body bytes). */
static sl_code
frame_head(sl_buf *out, uint8_t type, const char *name, uint32_t count, size_t body)
{
    size_t nlen = strlen(name), len = 2 + nlen + 4 + body;
    unsigned char h[12 + 2 + 4];
    sl_code rc;

    if (nlen > 65535 || len > ST_FRAME_MAX)
        return SL_ETOOLARGE;
    memcpy(h, ST_FRAME_MAGIC, 4);
    h[4] = type;
    h[5] = h[6] = h[7] = 0;
    le32(h + 8, (uint32_t)len);
    h[12] = (unsigned char)nlen;
    h[13] = (unsigned char)(nlen >> 8);
    if ((rc = sl_buf_append(out, h, 14)) != SL_OK || (rc = sl_buf_append(out, name, nlen)) != SL_OK)
        return rc;
    le32(h, count);
    return sl_buf_append(out, h, 4);
}

/* Rows [from, to) of a column as frames: numbers in one, strings in as many as their
 * bytes need. */
static sl_code
frame_column(const char *name, const st_column *c, uint32_t from, uint32_t to, sl_buf *out)
{
    size_t room = ST_FRAME_MAX - 2 - strlen(name) - 4;
    sl_code rc = SL_OK;
    uint32_t r, end;

    if (c->type != ST_STRING) {
        unsigned char *p;
        if (c->type == ST_FLOAT64 && c->f64 == NULL)
            for (r = from; r < to; r++)
                if (!c->nulls[r])
                    return SL_EINVALID; /* st_column_floats first */
        if ((rc = frame_head(out, ST_FRAME_COLUMN, name, to - from, (size_t)(to - from) * 8)) !=
                SL_OK ||
            (rc = sl_buf_room(out, (size_t)(to - from) * 8, (char **)&p)) != SL_OK)
            return rc;
        for (r = from; r < to; r++, p += 8)
            le_double(p, c->nulls[r]             ? NAN
                         : c->type == ST_FLOAT64 ? c->f64[r]
                         : c->type == ST_INT64   ? (double)c->i64[r]
                                                 : (double)c->b[r]);
        sl_buf_wrote(out, (size_t)(to - from) * 8);
        return SL_OK;
    }
    for (r = from; r < to && rc == SL_OK; r = end) {
        size_t body = 0;
        for (end = r; end < to; end++) {
            size_t v = 4 + (c->nulls[end] ? 0 : (size_t)(c->off[end + 1] - c->off[end]));
            if (body + v > room)
                break;
            body += v;
        }
        if (end == r)
            return SL_ETOOLARGE; /* one value over a frame: never, values are bounded */
        rc = frame_head(out, ST_FRAME_STRCOL, name, end - r, body);
        for (uint32_t i = r; i < end && rc == SL_OK; i++) {
            unsigned char l[4];
            uint32_t n = c->nulls[i] ? 0 : c->off[i + 1] - c->off[i];
            le32(l, c->nulls[i] ? 0xffffffffu : n);
            rc = sl_buf_append(out, l, 4);
            if (rc == SL_OK && n > 0)
                rc = sl_buf_append(out, c->str + c->off[i], n);
        }
    }
    return rc;
}

sl_code
st_out_rows(st_out f, const char *const *names, const st_column *cols, size_t ncols, uint32_t from,
            uint32_t to, sl_buf *out)
{
    sl_code rc = SL_OK;
    uint32_t r;
    size_t i;

    if (f == ST_OUT_CSV)
        return csv_rows(cols, ncols, from, to, out);
    if (f == ST_OUT_FRAMES) {
        for (i = 0; i < ncols && rc == SL_OK; i++)
            rc = frame_column(names[i], &cols[i], from, to, out);
        return rc;
    }

    for (r = from; r < to && rc == SL_OK; r++) {
        if (f == ST_OUT_JSONL)
            rc = sl_buf_append(out, "{", 1);
        for (i = 0; i < ncols && rc == SL_OK; i++) {
            const st_column *c = &cols[i];
            if (f == ST_OUT_NPY) {
                unsigned char v[8];
                if (c->type == ST_FLOAT64 && c->f64 == NULL)
                    return SL_EINVALID; /* st_column_floats first */
                double d = c->nulls[r]             ? NAN
                           : c->type == ST_FLOAT64 ? c->f64[r]
                           : c->type == ST_INT64   ? (double)c->i64[r]
                                                   : (double)c->b[r];
                le_double(v, d);
                rc = sl_buf_append(out, v, 8);
                continue;
            }
            if (i > 0)
                rc = sl_buf_append(out, ",", 1);
            if (rc == SL_OK && f == ST_OUT_JSONL) {
                rc = json_text(out, names[i], strlen(names[i]));
                if (rc == SL_OK)
                    rc = sl_buf_append(out, ":", 1);
            }
            if (rc != SL_OK)
                break;
            if (c->nulls[r])
                rc = f == ST_OUT_JSONL ? sl_buf_puts(out, "null") : SL_OK;
            else
                rc = value_text(c, r, f, out);
        }
        if (rc == SL_OK && f != ST_OUT_NPY)
            rc = sl_buf_append(out, f == ST_OUT_JSONL ? "}\n" : "\n", f == ST_OUT_JSONL ? 2 : 1);
    }
    return rc;
}

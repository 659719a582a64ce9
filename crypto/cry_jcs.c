/*
 * crypto/cry_jcs.c: RFC 8785 (JSON Canonicalization Scheme) for the values sluice
 * signs and chains: objects with keys sorted by UTF-16 code units, ES2015 string
 * escaping, integers only (|n| < 2^53). Audit events and checkpoints never carry
 * fractional numbers, so a real is refused rather than printed approximately; what a
 * receipt hashes (a job's spec, a model) has them, printed as ECMAScript prints a number
 * (cry_jcs_reals).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"

#define JCS_MAX_INT 9007199254740991LL /* 2^53 - 1 */

/* Next UTF-16 code unit of a UTF-8 string; *pending holds a low surrogate still owed. */
static unsigned
next_unit(const unsigned char **p, const unsigned char *end, unsigned *pending)
{
    unsigned c;
    const unsigned char *s = *p;

    if (*pending) {
        c = *pending;
        *pending = 0;
        return c;
    }
    if (s[0] < 0x80) {
        c = s[0];
        s += 1;
    } else if (s[0] < 0xe0 && s + 1 < end) {
        c = ((s[0] & 0x1fu) << 6) | (s[1] & 0x3fu);
        s += 2;
    } else if (s[0] < 0xf0 && s + 2 < end) {
        c = ((s[0] & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        s += 3;
    } else if (s + 3 < end) {
        c = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) |
            (s[3] & 0x3fu);
        s += 4;
        c -= 0x10000;
        *pending = 0xdc00 + (c & 0x3ff);
        c = 0xd800 + (c >> 10);
    } else {
        c = s[0]; /* unreachable for validated input */
        s = end;
    }
    *p = s;
    return c;
}

static int
utf16_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    const unsigned char *pa = (const unsigned char *)a, *ea = pa + an;
    const unsigned char *pb = (const unsigned char *)b, *eb = pb + bn;
    unsigned qa = 0, qb = 0, ua, ub;

    while ((pa < ea || qa) && (pb < eb || qb)) {
        ua = next_unit(&pa, ea, &qa);
        ub = next_unit(&pb, eb, &qb);
        if (ua != ub)
            return ua < ub ? -1 : 1;
    }
    if (pa < ea || qa)
        return 1;
    if (pb < eb || qb)
        return -1;
    return 0;
}

/* An object's member, with what sorting needs. */
typedef struct {
    const char *key;
    size_t len;
    int ascii;
    const json_t *val;
} member;

static int
member_cmp(const void *x, const void *y)
{
    const member *a = x, *b = y;
    int c;

    /* ASCII bytes are their own UTF-16 code units: plain byte order is the same order */
    if (a->ascii && b->ascii) {
        c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
        return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
    }
    return utf16_cmp(a->key, a->len, b->key, b->len);
}

static int
is_ascii(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* Decimal digits of |i| <= 2^53 - 1 without a format string. */
static sl_code
put_int(sl_buf *out, long long i)
{
    char d[24], *p = d + sizeof d;
    unsigned long long u = i < 0 ? (unsigned long long)-i : (unsigned long long)i;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (i < 0)
        *--p = '-';
    return sl_buf_append(out, p, (size_t)(d + sizeof d - p));
}

static sl_code
put_string(sl_buf *out, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    size_t i, run = 0;
    char esc[7];

    if (!sl_utf8_valid(s, n))
        return SL_EINVALID;
    if (sl_buf_append(out, "\"", 1) != SL_OK)
        return SL_ETOOLARGE;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        size_t elen = 2;

        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            if (c < 0x20) {
                esc[0] = '\\';
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hexd[c >> 4];
                esc[5] = hexd[c & 15];
                e = esc;
                elen = 6;
            }
        }
        if (e == NULL) {
            run++;
            continue;
        }
        if (sl_buf_append(out, s + i - run, run) != SL_OK || sl_buf_append(out, e, elen) != SL_OK)
            return SL_ETOOLARGE;
        run = 0;
    }
    if (sl_buf_append(out, s + n - run, run) != SL_OK || sl_buf_append(out, "\"", 1) != SL_OK)
        return SL_ETOOLARGE;
    return SL_OK;
}

/*
 * A finite double as ECMAScript's Number.prototype.toString prints it (RFC 8785 3.2.2.3):
 * the shortest digits that read back to the same double, placed by the exponent.
 */
static sl_code
put_real(sl_buf *out, double d)
{
    char buf[48], digits[24], text[64];
    const char *p;
    int prec, k = 0, n, o = 0, i;

    if (!isfinite(d))
        return SL_EINVALID;
    if (d == 0)
        return sl_buf_puts(out, "0"); /* -0 too */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    p = buf;
    if (*p == '-')
        text[o++] = *p++;
    digits[k++] = *p++;
    if (*p == '.')
        for (p++; *p != 'e'; p++)
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    n = atoi(p + 1) + 1; /* the value is 0.digits x 10^n */
    if (k <= n && n <= 21) {
        for (i = 0; i < k; i++)
            text[o++] = digits[i];
        for (; i < n; i++)
            text[o++] = '0';
    } else if (0 < n && n <= 21) {
        for (i = 0; i < k; i++) {
            if (i == n)
                text[o++] = '.';
            text[o++] = digits[i];
        }
    } else if (-6 < n && n <= 0) {
        text[o++] = '0';
        text[o++] = '.';
        for (i = 0; i < -n; i++)
            text[o++] = '0';
        for (i = 0; i < k; i++)
            text[o++] = digits[i];
    } else {
        text[o++] = digits[0];
        if (k > 1) {
            text[o++] = '.';
            for (i = 1; i < k; i++)
                text[o++] = digits[i];
        }
        o += snprintf(text + o, sizeof text - (size_t)o, "e%c%d", n - 1 < 0 ? '-' : '+',
                      n - 1 < 0 ? 1 - n : n - 1);
    }
    return sl_buf_append(out, text, (size_t)o);
}

static sl_code
jcs(const json_t *v, sl_buf *out, int depth, int reals)
{
    sl_code rc;

    if (depth > 64)
        return SL_EINVALID;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return sl_buf_puts(out, "null");
    case JSON_TRUE:
        return sl_buf_puts(out, "true");
    case JSON_FALSE:
        return sl_buf_puts(out, "false");
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i > JCS_MAX_INT || i < -JCS_MAX_INT)
            return SL_EINVALID;
        return put_int(out, (long long)i);
    }
    case JSON_STRING:
        return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        size_t i, n = json_array_size(v);
        if ((rc = sl_buf_append(out, "[", 1)) != SL_OK)
            return rc;
        for (i = 0; i < n; i++) {
            if (i > 0 && (rc = sl_buf_append(out, ",", 1)) != SL_OK)
                return rc;
            if ((rc = jcs(json_array_get(v, i), out, depth + 1, reals)) != SL_OK)
                return rc;
        }
        return sl_buf_append(out, "]", 1);
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        member small[16], *m;
        const char *key;
        json_t *val;

        m = n <= 16 ? small : sl_xcalloc(n, sizeof *m);
        json_object_foreach((json_t *)v, key, val)
        {
            m[i].key = key;
            m[i].len = strlen(key);
            m[i].ascii = is_ascii(key, m[i].len);
            m[i++].val = val;
        }
        qsort(m, n, sizeof *m, member_cmp);
        rc = sl_buf_append(out, "{", 1);
        for (i = 0; i < n && rc == SL_OK; i++) {
            if (i > 0)
                rc = sl_buf_append(out, ",", 1);
            if (rc == SL_OK)
                rc = put_string(out, m[i].key, m[i].len);
            if (rc == SL_OK)
                rc = sl_buf_append(out, ":", 1);
            if (rc == SL_OK)
                rc = jcs(m[i].val, out, depth + 1, reals);
        }
        if (m != small)
            free(m);
        if (rc != SL_OK)
            return rc;
        return sl_buf_append(out, "}", 1);
    }
    case JSON_REAL:
        return reals ? put_real(out, json_real_value(v)) : SL_EINVALID;
    default:
        return SL_EINVALID;
    }
}

static sl_code
canon(const json_t *v, sl_buf *out, int reals)
{
    size_t mark = out->len;
    sl_code rc = jcs(v, out, 0, reals);

    if (rc != SL_OK) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
    }
    return rc;
}

sl_code
cry_jcs(const json_t *v, sl_buf *out)
{
    return canon(v, out, 0);
}

sl_code
cry_jcs_reals(const json_t *v, sl_buf *out)
{
    return canon(v, out, 1);
}

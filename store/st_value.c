/*
 * store/st_value.c: the typed values of a column. Parsers are strict (the text must be
 * exactly a number of the kind, nothing around it) and exact: float64 text goes through
 * glibc's correctly rounded strtod in the C locale, and floats print as the shortest text
 * that reads back to the same bits.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "st.h"
#include "st_pow10.h"

static const char *const type_names[] = {"float64", "int64", "bool", "string"};

const char *
st_type_name(st_type t)
{
    return (unsigned)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

sl_code
st_type_parse(const char *name, st_type *out)
{
    size_t i;

    for (i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *out = (st_type)i;
            return SL_OK;
        }
    }
    return SL_EINVALID;
}

static int
digit(char c)
{
    return c >= '0' && c <= '9';
}

sl_code
st_parse_int64(const char *p, size_t n, int64_t *out)
{
    uint64_t v = 0, limit;
    size_t i = 0;
    int neg = 0;

    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n)
        return SL_EINVALID;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d;
        if (!digit(p[i]))
            return SL_EINVALID;
        d = (unsigned)(p[i] - '0');
        if (v > (limit - d) / 10)
            return SL_EINVALID; /* out of range */
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return SL_OK;
}

/* Exact powers of ten as doubles (10^22 is the last one a double holds exactly). */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * Eisel-Lemire (Lemire, "Number parsing at a gigabyte per second", 2021; Mushtak and
 * Lemire, "Fast number parsing without fallback", 2023): w * 10^q, w at most 19 digits,
 * correctly rounded from one or two 64x64 multiplications by a 128-bit power of five.
 * The bits of the double, or 0 with *ok 0 when q is out of the table's range (the caller
 * falls back to strtod).
 */
static uint64_t
eisel_lemire(uint64_t w, int64_t q, int *ok)
{
    unsigned __int128 first;
    uint64_t hi, lo, mantissa;
    const uint64_t *t;
    int lz, upper, shift;
    int64_t power2;

    *ok = 1;
    if (w == 0 || q < ST_POW5_MIN)
        return 0;
    if (q > ST_POW5_MAX)
        return 0x7ffULL << 52; /* beyond the largest double: refused by the caller */
    lz = __builtin_clzll(w);
    w <<= lz;
    t = st_pow5[q - ST_POW5_MIN];
    first = (unsigned __int128)w * t[0];
    hi = (uint64_t)(first >> 64);
    lo = (uint64_t)first;
    if ((hi & 0x1ff) == 0x1ff) { /* the 55 bits kept may be off by one: the next 64 */
        unsigned __int128 second = (unsigned __int128)w * t[1];
        uint64_t sh = (uint64_t)(second >> 64);
        lo += sh;
        if (sh > lo)
            hi++;
    }
    upper = (int)(hi >> 63);
    shift = upper + 64 - 52 - 3;
    mantissa = hi >> shift;
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upper - lz + 1023;
    if (power2 <= 0) { /* subnormal */
        if (-power2 + 1 >= 64)
            return 0;
        mantissa >>= -power2 + 1;
        mantissa += mantissa & 1;
        mantissa >>= 1;
        power2 = mantissa < (1ULL << 52) ? 0 : 1;
        return ((uint64_t)power2 << 52) | (mantissa & ((1ULL << 52) - 1));
    }
    /* exactly between two doubles: round to even rather than up */
    if (lo <= 1 && q >= -4 && q <= 23 && (mantissa & 3) == 1 && (mantissa << shift) == hi)
        mantissa &= ~1ULL;
    mantissa += mantissa & 1;
    mantissa >>= 1;
    if (mantissa >= (2ULL << 52)) {
        mantissa = 1ULL << 52;
        power2++;
    }
    mantissa &= ~(1ULL << 52);
    if (power2 >= 0x7ff)
        return 0x7ffULL << 52;
    return ((uint64_t)power2 << 52) | mantissa;
}

/* The parts of a number's text (the grammar of st_parse_float64). */
typedef struct {
    uint64_t w;       /* the significant digits' value (wraps past 19 of them) */
    int64_t e;        /* the value is w * 10^e */
    size_t ilen;      /* digits before the point */
    size_t flen;      /* digits after it */
    size_t elen;      /* digits of the exponent */
    int64_t ex;       /* the exponent's magnitude (stops growing at 100000) */
    const char *dig;  /* the first digit (or the point) */
    char sign, esign; /* '+', '-' or 0 */
    char first;       /* the first character of the significand */
    int point, expo;  /* a point; an exponent, and its letter was 'E' */
    int upper;
} num_text;

/* 1 when p[0..8) are eight ASCII digits (Lemire's test, a word at a time). */
static inline int
eight_digits(const char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return ((v & 0xf0f0f0f0f0f0f0f0ULL) |
            (((v + 0x0606060606060606ULL) & 0xf0f0f0f0f0f0f0f0ULL) >> 4)) == 0x3333333333333333ULL;
}

/* The value of eight ASCII digits, in three multiplications (the bytes in memory
 * order, read little-endian). */
static uint64_t
eight_value(const char *p)
{
    uint64_t v = (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[1] << 8 |
                 (uint64_t)(unsigned char)p[2] << 16 | (uint64_t)(unsigned char)p[3] << 24 |
                 (uint64_t)(unsigned char)p[4] << 32 | (uint64_t)(unsigned char)p[5] << 40 |
                 (uint64_t)(unsigned char)p[6] << 48 | (uint64_t)(unsigned char)p[7] << 56;

    v -= 0x3030303030303030ULL;
    v = v * 10 + (v >> 8);
    return (((v & 0x000000ff000000ffULL) * 0x000f424000000064ULL) +
            (((v >> 16) & 0x000000ff000000ffULL) * 0x0000271000000001ULL)) >>
           32;
}

/* A run of digits from p[i]: accumulated into *w; the index after it. */
static inline __attribute__((always_inline)) size_t
digit_run(const char *p, size_t i, size_t n, uint64_t *w)
{
    while (n - i >= 8 && eight_digits(p + i)) {
        *w = *w * 100000000 + eight_value(p + i);
        i += 8;
    }
    for (; i < n && digit(p[i]); i++)
        *w = *w * 10 + (uint64_t)(p[i] - '0');
    return i;
}

/*
 * One pass over the text: the grammar ([+-]digits[.digits][(e|E)[+-]digits], or
 * [+-].digits[...]; decimal only, nothing around it), eight digits at a time where it
 * can. 0 with *t set, -1 when it is not a number of the grammar.
 */
static int
scan_number(const char *p, size_t n, num_text *t)
{
    size_t i = 0, j;

    memset(t, 0, sizeof *t);
    if (i < n && (p[i] == '+' || p[i] == '-'))
        t->sign = p[i++];
    t->dig = p + i;
    t->first = i < n ? p[i] : 0;
    j = digit_run(p, i, n, &t->w);
    t->ilen = j - i;
    i = j;
    if (i < n && p[i] == '.') {
        t->point = 1;
        j = digit_run(p, ++i, n, &t->w);
        t->flen = j - i;
        i = j;
    }
    if (t->ilen + t->flen == 0)
        return -1;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        t->expo = 1;
        t->upper = p[i++] == 'E';
        if (i < n && (p[i] == '+' || p[i] == '-'))
            t->esign = p[i++];
        for (j = i; i < n && digit(p[i]); i++)
            if (t->ex < 100000)
                t->ex = t->ex * 10 + (p[i] - '0');
        t->elen = i - j;
        if (t->elen == 0)
            return -1;
    }
    if (i != n)
        return -1;
    t->e = (t->esign == '-' ? -t->ex : t->ex) - (int64_t)t->flen;
    return 0;
}

/* Significant digits of the text (leading zeros not counted). */
static size_t
significant(const num_text *t)
{
    size_t nd = t->ilen + t->flen, i, z = 0;

    for (i = 0; z < nd && (t->dig[i] == '0' || t->dig[i] == '.'); i++)
        z += t->dig[i] == '0';
    return nd - z;
}

/*
 * The value of a scanned text when it has at most 19 significant digits and a sane
 * exponent: Clinger's fast path when w is at most 2^53 and the power of ten within 22
 * (w and 10^|e| are both exact doubles, and one IEEE multiplication or division rounds
 * correctly), Eisel-Lemire otherwise. 1 with *out set; 0 when strtod must decide (more
 * digits, a huge exponent, out of range).
 */
static int
value_fast(const num_text *t, double *out)
{
    if (t->ex >= 100000 || (t->ilen + t->flen > 19 && significant(t) > 19))
        return 0;
    if (t->w <= (1ULL << 53) && t->e >= -22 && t->e <= 22) {
        *out = t->e < 0 ? (double)t->w / exact_pow10[-t->e] : (double)t->w * exact_pow10[t->e];
    } else {
        int ok;
        uint64_t bits = eisel_lemire(t->w, t->e, &ok);
        if (!ok || (bits >> 52) == 0x7ff)
            return 0; /* out of range: strtod decides (and the caller refuses inf) */
        memcpy(out, &bits, sizeof bits);
    }
    if (t->sign == '-')
        *out = -*out;
    return 1;
}

static void shortest(uint64_t bits, uint64_t *digits, int *exp10);

/* The number of decimal digits of d > 0, from its bit length (floor(log10(2)) * 4096 is
 * 1233) and one comparison. */
static int
decimal_digits(uint64_t d)
{
    static const uint64_t pow10[20] = {1ULL,
                                       10ULL,
                                       100ULL,
                                       1000ULL,
                                       10000ULL,
                                       100000ULL,
                                       1000000ULL,
                                       10000000ULL,
                                       100000000ULL,
                                       1000000000ULL,
                                       10000000000ULL,
                                       100000000000ULL,
                                       1000000000000ULL,
                                       10000000000000ULL,
                                       100000000000000ULL,
                                       1000000000000000ULL,
                                       10000000000000000ULL,
                                       100000000000000000ULL,
                                       1000000000000000000ULL,
                                       10000000000000000000ULL};
    int t = ((64 - __builtin_clzll(d)) * 1233) >> 12;

    return t - (d < pow10[t]) + 1;
}

/*
 * Whether the scanned text p[0..n) of v is the one st_format_float64 writes, without a
 * second walk over it: its digits (trailing zeros dropped) must be v's shortest digits,
 * and its layout the one those digits get. Given the digits' value and the number of
 * digits before and after the point, the text's digits are fixed, so lengths suffice.
 */
static int
canonical(const num_text *t, const char *p, size_t n, double v)
{
    uint64_t bits, d, tw = t->w;
    int64_t te = t->e;
    int exp10, nd, x;

    if (v == 0)
        return signbit(v) ? n == 4 && memcmp(p, "-0.0", 4) == 0
                          : n == 3 && memcmp(p, "0.0", 3) == 0;
    /* at most 17 digits, no '+', no 'E', a digit first */
    if (t->sign == '+' || t->upper || t->ilen == 0 || t->ex >= 100000 || tw == 0 ||
        (t->ilen + t->flen > 17 && significant(t) > 17))
        return 0;
    while (tw % 10 == 0) {
        tw /= 10;
        te++;
    }
    memcpy(&bits, &v, sizeof bits);
    if ((bits >> 52 & 0x7ff) != 0 && tw < 1000000000000000ULL) {
        /* at most 15 digits (DBL_DIG) of a normal double: the only decimal of that many
         * digits that reads as v, so the shortest one: no need to compute it */
        d = tw;
        exp10 = (int)te;
    } else {
        shortest(bits & ~(1ULL << 63), &d, &exp10);
        while (d % 10 == 0) {
            d /= 10;
            exp10++;
        }
        if (d != tw || exp10 != te)
            return 0;
    }
    nd = decimal_digits(d);
    x = exp10 + nd - 1;      /* the power of ten of the first digit */
    if (x < -4 || x >= 16) { /* d.ddde+XX */
        int ax = x < 0 ? -x : x;
        return t->expo && t->esign == (x < 0 ? '-' : '+') && t->elen == (ax >= 100 ? 3u : 2u) &&
               t->ilen == 1 && t->first != '0' &&
               (nd > 1 ? t->point && t->flen == (size_t)nd - 1 : !t->point);
    }
    if (t->expo || !t->point)
        return 0;
    if (x >= 0) /* x + 1 digits, the point, the rest or one zero */
        return t->ilen == (size_t)x + 1 && t->first != '0' &&
               t->flen == (size_t)(nd > x + 1 ? nd - x - 1 : 1);
    /* 0.000ddd */
    return t->ilen == 1 && t->first == '0' && t->flen == (size_t)(nd - x - 1);
}

/* The rare text value_fast leaves to glibc's correctly rounded strtod (kept out of the
 * fast path's frame). */
static __attribute__((noinline)) sl_code
value_strtod(const char *p, size_t n, double *out)
{
    char buf[SL_MAX_NUMBER_TEXT + 1], *end;
    double v;

    memcpy(buf, p, n);
    buf[n] = '\0';
    errno = 0;
    v = strtod(buf, &end);
    if (end != buf + n || isinf(v) || isnan(v))
        return SL_EINVALID; /* beyond the largest double (underflow rounds, as it should) */
    *out = v;
    return SL_OK;
}

sl_code
st_parse_float64_text(const char *p, size_t n, double *out, int *canon)
{
    num_text t;
    double v;

    if (canon != NULL)
        *canon = 0;
    if (n == 0 || n > SL_MAX_NUMBER_TEXT || scan_number(p, n, &t) != 0)
        return SL_EINVALID;
    if (!value_fast(&t, &v) && value_strtod(p, n, &v) != SL_OK)
        return SL_EINVALID;
    *out = v;
    if (canon != NULL)
        *canon = canonical(&t, p, n, v);
    return SL_OK;
}

sl_code
st_parse_float64(const char *p, size_t n, double *out)
{
    return st_parse_float64_text(p, n, out, NULL);
}
sl_code
st_parse_bool(const char *p, size_t n, int *out)
{
    if (n == 4 && strncasecmp(p, "true", 4) == 0) {
        *out = 1;
        return SL_OK;
    }
    if (n == 5 && strncasecmp(p, "false", 5) == 0) {
        *out = 0;
        return SL_OK;
    }
    return SL_EINVALID;
}

/* ---- shortest float64 text: Schubfach (R. Giulietti, "The Schubfach way to render
 * doubles", 2020): the shortest decimal in the rounding interval, the closest to the
 * value when there are several, computed with one 128-bit power of ten. ---- */

/* floor(log2(10^e)), floor(log10(2^e)), floor(log10(3/4 * 2^e)) for the exponents of
 * doubles (arithmetic shifts of negative values, as gcc and clang do them). */
static int
floor_log2_pow10(int e)
{
    return (e * 1741647) >> 19;
}

static int
floor_log10_pow2(int e)
{
    return (e * 1262611) >> 22;
}

static int
floor_log10_three_quarters_pow2(int e)
{
    return (e * 1262611 - 524031) >> 22;
}

/* The upper 64 bits of g * cp (g 128 bits), with the bits below folded into the last
 * bit ("round to odd"): what the paper's proof needs to decide exactly. */
static uint64_t
round_to_odd(const uint64_t g[2], uint64_t cp)
{
    unsigned __int128 x = (unsigned __int128)g[1] * cp;
    unsigned __int128 y = (unsigned __int128)g[0] * cp + (uint64_t)(x >> 64);

    return (uint64_t)(y >> 64) | ((uint64_t)y > 1);
}

/* The shortest digits and power of ten of a positive finite double's bits. */
static void
shortest(uint64_t bits, uint64_t *digits, int *exp10)
{
    uint64_t sig = bits & ((1ULL << 52) - 1), c, cbl, cb, cbr, vbl, vb, vbr, lower, upper, s;
    int bexp = (int)(bits >> 52) & 0x7ff, q, k, h, even, closer;
    const uint64_t *g;

    if (bexp != 0) {
        c = (1ULL << 52) | sig;
        q = bexp - 1075;
        /* a small integer: its digits are the shortest */
        if (q <= 0 && q >= -52 && (c & ((1ULL << -q) - 1)) == 0) {
            *digits = c >> -q;
            *exp10 = 0;
            return;
        }
    } else {
        c = sig;
        q = -1074;
    }
    even = (c & 1) == 0;
    closer = sig == 0 && bexp > 1; /* the lower neighbour is half as far */
    cbl = 4 * c - 2 + (uint64_t)closer;
    cb = 4 * c;
    cbr = 4 * c + 2;
    k = closer ? floor_log10_three_quarters_pow2(q) : floor_log10_pow2(q);
    h = q + floor_log2_pow10(-k) + 1;
    g = st_pow10[-k - ST_POW10_MIN];
    vbl = round_to_odd(g, cbl << h);
    vb = round_to_odd(g, cb << h);
    vbr = round_to_odd(g, cbr << h);
    lower = vbl + !even;
    upper = vbr - !even;
    s = vb / 4;
    if (s >= 10) {
        uint64_t sp = s / 10;
        int up_in = lower <= 40 * sp, wp_in = 40 * sp + 40 <= upper;
        if (up_in != wp_in) {
            *digits = sp + (uint64_t)wp_in;
            *exp10 = k + 1;
            return;
        }
    }
    {
        int u_in = lower <= 4 * s, w_in = 4 * s + 4 <= upper;
        if (u_in != w_in) {
            *digits = s + (uint64_t)w_in;
            *exp10 = k;
            return;
        }
    }
    {
        uint64_t mid = 4 * s + 2;
        *digits = s + (uint64_t)(vb > mid || (vb == mid && (s & 1) != 0));
        *exp10 = k;
    }
}

/*
 * Writes the shortest digits the way Python's repr() does (and so pandas and NumPy when
 * they write CSV): positional from 1e-4 to below 1e16, with at least one digit after the
 * point (100.0, -0.0), else d.ddde+XX (1e-05, 1.2345678901234568e+16). A float column
 * written by Python comes back byte for byte, and a whole number stays a float when the
 * text is read again.
 */
static const char pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

size_t
st_format_float64(double v, char out[ST_FLOAT_TEXT])
{
    char d[24];
    uint64_t bits, digits;
    int exp10, nd = 0, x, i;
    size_t o = 0;

    if (v == 0)
        return (size_t)snprintf(out, ST_FLOAT_TEXT, signbit(v) ? "-0.0" : "0.0");
    if (!isfinite(v))
        return (size_t)snprintf(out, ST_FLOAT_TEXT, isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf"));
    memcpy(&bits, &v, sizeof bits);
    if (v < 0)
        out[o++] = '-';
    shortest(bits & ~(1ULL << 63), &digits, &exp10);
    while (digits % 10 == 0) {
        digits /= 10;
        exp10++;
    }
    /* two digits at a time, from the last */
    while (digits >= 100) {
        const char *two = pairs + 2 * (digits % 100);
        d[nd++] = two[1];
        d[nd++] = two[0];
        digits /= 100;
    }
    if (digits >= 10) {
        d[nd++] = pairs[2 * digits + 1];
        d[nd++] = pairs[2 * digits];
    } else {
        d[nd++] = (char)('0' + digits);
    }
    /* d holds the digits from the last; x is the power of ten of the first */
    x = exp10 + nd - 1;
    if (x < -4 || x >= 16) {
        out[o++] = d[nd - 1];
        if (nd > 1) {
            out[o++] = '.';
            for (i = nd - 2; i >= 0; i--)
                out[o++] = d[i];
        }
        o += (size_t)snprintf(out + o, ST_FLOAT_TEXT - o, "e%c%02d", x < 0 ? '-' : '+',
                              x < 0 ? -x : x);
        return o;
    }
    if (x < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (i = 0; i < -x - 1; i++)
            out[o++] = '0';
        for (i = nd - 1; i >= 0; i--)
            out[o++] = d[i];
    } else {
        for (i = 0; i <= x; i++) {
            out[o++] = i < nd ? d[nd - 1 - i] : '0';
        }
        out[o++] = '.';
        if (nd > x + 1) {
            for (i = nd - 2 - x; i >= 0; i--)
                out[o++] = d[i];
        } else {
            out[o++] = '0'; /* a float keeps its point: 100.0 reads back as a float */
        }
    }
    out[o] = '\0';
    return o;
}

int
st_float64_canonical(const char *p, size_t n, double v)
{
    double got;
    int canon;

    return st_parse_float64_text(p, n, &got, &canon) == SL_OK && canon &&
           memcmp(&got, &v, sizeof v) == 0;
}

void
st_infer_init(st_infer *s)
{
    s->can_int = s->can_float = s->can_bool = 1;
    s->seen = 0;
}

void
st_infer_add(st_infer *s, const char *p, size_t n)
{
    int64_t i;
    double d;
    int b;

    s->seen = 1;
    if (s->can_int && st_parse_int64(p, n, &i) != SL_OK)
        s->can_int = 0;
    if (s->can_float && !s->can_int && st_parse_float64(p, n, &d) != SL_OK)
        s->can_float = 0;
    if (s->can_bool && st_parse_bool(p, n, &b) != SL_OK)
        s->can_bool = 0;
}

st_type
st_infer_type(const st_infer *s)
{
    if (!s->seen)
        return ST_STRING;
    if (s->can_int)
        return ST_INT64;
    if (s->can_float)
        return ST_FLOAT64;
    if (s->can_bool)
        return ST_BOOL;
    return ST_STRING;
}

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

/* [+-]digits[.digits][(e|E)[+-]digits], or [+-].digits[...]: decimal only. */
static int
float_syntax(const char *p, size_t n)
{
    size_t i = 0, int_digits = 0, frac_digits = 0, exp_digits = 0;

    if (i < n && (p[i] == '+' || p[i] == '-'))
        i++;
    while (i < n && digit(p[i])) {
        i++;
        int_digits++;
    }
    if (i < n && p[i] == '.') {
        i++;
        while (i < n && digit(p[i])) {
            i++;
            frac_digits++;
        }
    }
    if (int_digits + frac_digits == 0)
        return 0;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        while (i < n && digit(p[i])) {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0)
            return 0;
    }
    return i == n;
}

sl_code
st_parse_float64(const char *p, size_t n, double *out)
{
    char buf[SL_MAX_NUMBER_TEXT + 1], *end;
    double v;

    if (n == 0 || n > SL_MAX_NUMBER_TEXT || !float_syntax(p, n))
        return SL_EINVALID;
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

size_t
st_format_float64(double v, char out[ST_FLOAT_TEXT])
{
    int prec, len = 0;

    if (v == 0) /* 0 and -0: %g would do, but say it plainly */
        return (size_t)snprintf(out, ST_FLOAT_TEXT, signbit(v) ? "-0" : "0");
    if (!isfinite(v))
        return (size_t)snprintf(out, ST_FLOAT_TEXT, isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf"));
    /*
     * A normal double whose shortest decimal has k <= 15 digits prints as exactly that
     * with %.15g (its error is far below half a unit of the 15th digit); otherwise 16 or
     * 17 digits, the first that reads back to the same bits (17 always does). Subnormals
     * carry fewer bits, so for them every precision is tried from 1.
     */
    for (prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        len = snprintf(out, ST_FLOAT_TEXT, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return (size_t)len;
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

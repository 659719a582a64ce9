/*
 * tests/unit/test_store.c: store/ below HTTP: the CSV parser, typed values, column
 * chunks, compression, fragments, chunks in storage directories, an upload end to end
 * and the served formats. For the parser: every awkward CSV shape (quotes, doubled
 * quotes, commas and newlines in fields, CRLF, UTF-8, BOM, nulls against empty strings,
 * a last line without its break), fed whole and one byte at a time; every refusal with
 * its line and column and without the data; integers at their limits; floats that must
 * read back bit for bit; inference.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <sys/stat.h>

#include <cmocka.h>
#include <float.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>

#include "st.h"

/* What the parser handed over, as text: fields joined by '|', null as <null>, a record
 * per line prefixed by its line number. */
typedef struct {
    sl_buf out;
    uint64_t stop_at; /* the callback refuses this record (0: never) */
} sink;

static sl_code
collect(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    sink *s = ctx;
    size_t i;

    if (s->stop_at != 0 && rec == s->stop_at)
        return sl_err_set(err, SL_EINVALID, "stopped by the caller");
    assert_int_equal(sl_buf_printf(&s->out, "%llu:", (unsigned long long)line), SL_OK);
    for (i = 0; i < n; i++) {
        if (i > 0)
            assert_int_equal(sl_buf_append(&s->out, "|", 1), SL_OK);
        if (f[i].null)
            assert_int_equal(sl_buf_puts(&s->out, "<null>"), SL_OK);
        else
            assert_int_equal(sl_buf_append(&s->out, f[i].p, f[i].n), SL_OK);
    }
    assert_int_equal(sl_buf_append(&s->out, "\n", 1), SL_OK);
    return SL_OK;
}

/* Parses text fed in pieces of `step` bytes (0: whole); returns the code, fills out/err. */
static sl_code
parse(const char *text, size_t len, size_t step, sink *s, sl_err *err)
{
    st_csv *p = st_csv_new(collect, s);
    sl_code rc = SL_OK;
    size_t off = 0;

    sl_err_clear(err);
    while (rc == SL_OK && off < len) {
        size_t k = step == 0 || len - off < step ? len - off : step;
        rc = st_csv_feed(p, text + off, k, err);
        off += k;
    }
    if (rc == SL_OK)
        rc = st_csv_finish(p, err);
    st_csv_free(p);
    return rc;
}

/* The same result whole, byte by byte and in 7-byte pieces. */
static void
expect(const char *text, size_t len, sl_code want, const char *out_or_msg)
{
    static const size_t steps[] = {0, 1, 7};
    size_t i;

    for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        sink s = {.stop_at = 0};
        sl_err err;
        sl_code rc;
        sl_buf_init(&s.out, 1 << 20);
        rc = parse(text, len, steps[i], &s, &err);
        if (rc != want)
            fail_msg("step %zu: code %d, want %d (%s)", steps[i], rc, want, err.msg);
        if (want == SL_OK)
            assert_string_equal(s.out.data ? s.out.data : "", out_or_msg);
        else
            assert_string_equal(err.msg, out_or_msg);
        sl_buf_free(&s.out);
    }
}

#define EXPECT_OK(text, out)        expect(text, sizeof(text) - 1, SL_OK, out)
#define EXPECT_REFUSED(text, msg)   expect(text, sizeof(text) - 1, SL_EINVALID, msg)
#define EXPECT_TOO_LARGE(text, msg) expect(text, sizeof(text) - 1, SL_ETOOLARGE, msg)

static void
csv_shapes(void **state)
{
    (void)state;
    EXPECT_OK("a,b\n1,2\n", "1:a|b\n2:1|2\n");
    EXPECT_OK("a,b\r\n1,2\r\n", "1:a|b\n2:1|2\n");
    EXPECT_OK("a,b\n1,2", "1:a|b\n2:1|2\n"); /* no final line break */
    EXPECT_OK("a,b\n\"x,y\",\"he said \"\"hi\"\"\"\n", "1:a|b\n2:x,y|he said \"hi\"\n");
    /* a quoted line break (LF and CRLF) stays in the field and counts as a line */
    EXPECT_OK("a,b\n\"l1\nl2\",z\n\"c\r\nd\",w\n", "1:a|b\n2:l1\nl2|z\n4:c\r\nd|w\n");
    /* unquoted empty is null, quoted empty is the empty string */
    EXPECT_OK("a,b,c\n,\"\",x\n", "1:a|b|c\n2:<null>||x\n");
    EXPECT_OK("a,b\n,\n", "1:a|b\n2:<null>|<null>\n");
    /* UTF-8 and a byte-order mark */
    EXPECT_OK("\xef\xbb\xbfname,city\nJos\xc3\xa9,\xe6\x9d\xb1\xe4\xba\xac\n",
              "1:name|city\n2:Jos\xc3\xa9|\xe6\x9d\xb1\xe4\xba\xac\n");
    /* bytes that only begin like a BOM are data */
    EXPECT_OK("\xef\xbb\xbev\n1\n", "1:\xef\xbb\xbev\n2:1\n"); /* U+FEFE */
    /* one column: an empty line is a null value */
    EXPECT_OK("v\n1\n\n3\n", "1:v\n2:1\n3:<null>\n4:3\n");
    /* spaces are data */
    EXPECT_OK("a,b\n 1 , 2\n", "1:a|b\n2: 1 | 2\n");
    EXPECT_OK("a\n", "1:a\n"); /* a header and no rows */
}

static void
csv_refusals(void **state)
{
    (void)state;
    EXPECT_REFUSED("a,b\n1,2,3\n", "line 2, column 3: 3 fields where the header has 2");
    EXPECT_REFUSED("a,b,c\n1\n", "line 2, column 2: 1 fields where the header has 3");
    EXPECT_REFUSED("a,b\n1,x\"y\n", "line 2, column 2: quote inside an unquoted field");
    EXPECT_REFUSED("a,b\n\"x\"y,2\n", "line 2, column 1: text after a closing quote");
    EXPECT_REFUSED("a,b\n1\r2,3\n",
                   "line 2, column 1: carriage return not followed by a line feed");
    EXPECT_REFUSED("a,b\n1,\"open\n\nstill\n",
                   "line 2, column 2: quote opened here is never closed");
    EXPECT_REFUSED("a,b\n1,\xff\n", "line 2, column 2: not valid UTF-8");
    EXPECT_REFUSED("a,b\n1,\xc3\n", "line 2, column 2: not valid UTF-8");
    EXPECT_REFUSED("a,b\n1,2\n\n3,4\n", "line 3, column 1: empty line");
    EXPECT_REFUSED("\na,b\n", "line 1, column 1: empty line");
    EXPECT_REFUSED("a,,c\n", "line 1, column 2: empty column name in the header");
    EXPECT_REFUSED("a,b,a\n", "line 1, column 3: column name repeated in the header");
    EXPECT_REFUSED("", "the upload has no header row");
    expect("a,b\n1,x\0y\n", 10, SL_EINVALID, "line 2, column 2: NUL byte in a field");
}

static void
csv_never_echoes_data(void **state)
{
    static const char secret[] = "123-45-6789";
    char text[128];
    sink s = {.stop_at = 0};
    sl_err err;

    (void)state;
    snprintf(text, sizeof text, "ssn,b\n%s\"x,2\n", secret);
    sl_buf_init(&s.out, 1 << 20);
    assert_int_equal(parse(text, strlen(text), 0, &s, &err), SL_EINVALID);
    assert_null(strstr(err.msg, secret));
    assert_null(strstr(err.detail, secret));
    sl_buf_free(&s.out);
}

static void
csv_limits(void **state)
{
    size_t n = SL_MAX_CSV_FIELD + 10, i;
    char *big = malloc(n + 16);
    sink s = {.stop_at = 0};
    sl_err err;

    (void)state;
    memcpy(big, "a\n", 2);
    memset(big + 2, 'x', n);
    big[n + 2] = '\n';
    sl_buf_init(&s.out, 1 << 20);
    assert_int_equal(parse(big, n + 3, 65536, &s, &err), SL_ETOOLARGE);
    assert_string_equal(err.msg, "line 2, column 1: field longer than the limit");
    free(big);
    sl_buf_free(&s.out);
    /* more columns than the limit */
    sl_buf_init(&s.out, 1 << 20);
    {
        sl_buf hdr;
        sl_buf_init(&hdr, 1 << 20);
        for (i = 0; i <= SL_MAX_CSV_COLUMNS; i++)
            assert_int_equal(sl_buf_printf(&hdr, "%sc%zu", i ? "," : "", i), SL_OK);
        assert_int_equal(parse(hdr.data, hdr.len, 0, &s, &err), SL_ETOOLARGE);
        assert_non_null(strstr(err.msg, "more columns than the limit"));
        sl_buf_free(&hdr);
    }
    sl_buf_free(&s.out);
}

static void
csv_caller_stops_and_parser_stays_stopped(void **state)
{
    sink s = {.stop_at = 2};
    st_csv *p = st_csv_new(collect, &s);
    sl_err err;

    (void)state;
    sl_buf_init(&s.out, 1 << 20);
    assert_int_equal(st_csv_feed(p, "a\n1\n2\n3\n", 8, &err), SL_EINVALID);
    assert_string_equal(err.msg, "stopped by the caller");
    assert_int_equal(st_csv_records(p), 1);
    assert_int_equal(st_csv_feed(p, "4\n", 2, &err), SL_EINVALID);
    assert_int_equal(st_csv_finish(p, &err), SL_EINVALID);
    st_csv_free(p);
    sl_buf_free(&s.out);
}

static void
int64_values(void **state)
{
    int64_t v;

    (void)state;
    assert_int_equal(st_parse_int64("0", 1, &v), SL_OK);
    assert_int_equal(v, 0);
    assert_int_equal(st_parse_int64("-42", 3, &v), SL_OK);
    assert_int_equal(v, -42);
    assert_int_equal(st_parse_int64("9223372036854775807", 19, &v), SL_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(st_parse_int64("-9223372036854775808", 20, &v), SL_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(st_parse_int64("9223372036854775808", 19, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("-9223372036854775809", 20, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("+1", 2, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64(" 1", 2, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("1.0", 3, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("-", 1, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("", 0, &v), SL_EINVALID);
    assert_int_equal(st_parse_int64("0x10", 4, &v), SL_EINVALID);
}

static void
float64_values_round_trip(void **state)
{
    static const double cases[] = {0.1,
                                   -0.0,
                                   1.0 / 3.0,
                                   5e-324,
                                   2.2250738585072014e-308,
                                   1.7976931348623157e308,
                                   -1.7976931348623157e308,
                                   123456789012345678.0,
                                   0.30000000000000004,
                                   9007199254740993.0,
                                   1e23,
                                   6.02214076e23};
    char text[ST_FLOAT_TEXT];
    double back;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = st_format_float64(cases[i], text);
        assert_int_equal(n, strlen(text));
        assert_int_equal(st_parse_float64(text, n, &back), SL_OK);
        assert_memory_equal(&back, &cases[i], sizeof back); /* the same bits */
    }
    /* shortest: what was typed comes back */
    st_format_float64(0.1, text);
    assert_string_equal(text, "0.1");
    st_format_float64(0.30000000000000004, text);
    assert_string_equal(text, "0.30000000000000004");
    st_format_float64(-0.0, text);
    assert_string_equal(text, "-0.0");
    st_format_float64(100.0, text);
    assert_string_equal(text, "100.0");
    st_format_float64(5e-324, text); /* subnormal: fewer digits than a normal double's */
    assert_string_equal(text, "5e-324");
    st_format_float64(1.5e-320, text);
    assert_string_equal(text, "1.5e-320");
    /* the grammar */
    assert_int_equal(st_parse_float64("1e5", 3, &back), SL_OK);
    assert_true(back == 1e5);
    assert_int_equal(st_parse_float64(".5", 2, &back), SL_OK);
    assert_int_equal(st_parse_float64("5.", 2, &back), SL_OK);
    assert_int_equal(st_parse_float64("-2.5E-3", 7, &back), SL_OK);
    assert_true(back == -2.5e-3);
    assert_int_equal(st_parse_float64("1e400", 5, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64("1e-400", 6, &back), SL_OK); /* rounds to 0 */
    assert_int_equal(st_parse_float64("nan", 3, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64("inf", 3, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64("0x1p3", 5, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64("1e", 2, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64(".", 1, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64(" 1", 2, &back), SL_EINVALID);
    assert_int_equal(st_parse_float64("1,5", 3, &back), SL_EINVALID);
}

/*
 * The definition the fast formatter must meet, by brute force: the fewest significant
 * digits that read back (glibc's strtod, correctly rounded) to the same bits, and of
 * those the closest to the value. For each length, the candidates are printf's correctly
 * rounded digits and their neighbours one unit away (at a power of two the rounding
 * interval is lopsided, so the closest digits can fall outside it while a neighbour does
 * not). Gives the digits (no trailing zeros) and the power of ten of the first.
 */
static void
reference_digits(double v, char digits[20], int *x)
{
    char buf[64], cand[64];
    int p, e, k;

    for (p = 1; p <= 17; p++) {
        unsigned long long m = 0, c;
        char *q;
        snprintf(buf, sizeof buf, "%.*e", p - 1, fabs(v));
        for (q = buf; *q != 'e'; q++)
            if (*q != '.')
                m = m * 10 + (unsigned long long)(*q - '0');
        e = atoi(q + 1) - (p - 1); /* value = m * 10^e */
        for (k = 0; k < 3; k++) {
            int down = strtod(buf, NULL) < fabs(v); /* rounded down: m + 1 is next closest */
            c = k == 0 ? m : (k == 1) == down ? m + 1 : m - 1;
            snprintf(cand, sizeof cand, "%llue%d", c, e);
            if (c > 0 && strtod(cand, NULL) == fabs(v)) {
                int n;
                while (c % 10 == 0) {
                    c /= 10;
                    e++;
                }
                n = snprintf(digits, 20, "%llu", c);
                *x = e + n - 1;
                return;
            }
        }
    }
    fail_msg("%a: no digits read back", v);
}

/* The digits and first power of ten of printed text ("-1.25e-07", "0.001", "1500"). */
static void
text_digits(const char *t, char digits[20], int *x)
{
    int n = 0, point = -1, first = -1, i, e = 0;

    if (*t == '-')
        t++;
    for (i = 0; t[i] != '\0' && t[i] != 'e'; i++) {
        if (t[i] == '.') {
            point = i;
            continue;
        }
        if (first < 0 && t[i] == '0')
            continue;
        if (first < 0)
            first = i;
        if (n < 19)
            digits[n++] = t[i];
    }
    if (t[i] == 'e')
        e = atoi(t + i + 1);
    digits[n] = '\0';
    while (n > 1 && digits[n - 1] == '0')
        digits[--n] = '\0';
    if (point < 0)
        point = i;
    *x = e + (first < point ? point - first - 1 : point - first);
}

static uint64_t
xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_canonical_spellings(double v);

static void
check_against_reference(double v)
{
    char fast[ST_FLOAT_TEXT], typed[40], want[20], got[20];
    int wx, gx;
    double back;

    if (!isfinite(v) || v == 0)
        return;
    st_format_float64(v, fast);
    reference_digits(v, want, &wx);
    text_digits(fast, got, &gx);
    if (strcmp(want, got) != 0 || wx != gx)
        fail_msg("%a: %s, expected digits %s at 10^%d", v, fast, want, wx);
    /* and the parser reads both the shortest and the full 17 digits back exactly */
    assert_int_equal(st_parse_float64(fast, strlen(fast), &back), SL_OK);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("%s read back as %a, not %a", fast, back, v);
    snprintf(typed, sizeof typed, "%.17g", v);
    assert_int_equal(st_parse_float64(typed, strlen(typed), &back), SL_OK);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("%s read back as %a, not %a", typed, back, v);
    check_canonical_spellings(v);
    check_canonical_spellings(-v);
}

/* st_float64_canonical against its definition (the text st_format_float64 gives), over
 * many ways of writing v that read back to it. */
static void
check_canonical_spellings(double v)
{
    char forms[12][64], canon[ST_FLOAT_TEXT];
    double back;
    int i, nf = 0;

    if (!isfinite(v))
        return;
    st_format_float64(v, canon);
    snprintf(forms[nf++], 64, "%s", canon);
    snprintf(forms[nf++], 64, "%.17g", v);
    snprintf(forms[nf++], 64, "%.16g", v);
    snprintf(forms[nf++], 64, "%.16e", v);
    snprintf(forms[nf++], 64, "%.3f", v);
    snprintf(forms[nf++], 64, "%s0", canon); /* a trailing zero (or exponent digit) */
    snprintf(forms[nf++], 64, "+%s", canon); /* a plus sign */
    snprintf(forms[nf++], 64, "0%s", canon); /* a leading zero */
    snprintf(forms[nf++], 64, "%.17E", v);   /* capital E */
    snprintf(forms[nf++], 64, "%.1f", v);
    snprintf(forms[nf++], 64, "%.0f", v);
    snprintf(forms[nf++], 64, "%ge0", v);
    for (i = 0; i < nf; i++) {
        size_t n = strlen(forms[i]);
        if (st_parse_float64(forms[i], n, &back) != SL_OK || memcmp(&back, &v, 8) != 0)
            continue;
        if (st_float64_canonical(forms[i], n, v) != (strcmp(forms[i], canon) == 0))
            fail_msg("%a: \"%s\" canonical? %d (the canonical text is \"%s\")", v, forms[i],
                     st_float64_canonical(forms[i], n, v), canon);
    }
    /* the parser's own verdict, for texts of any value */
    for (i = 0; i < nf; i++) {
        char again[ST_FLOAT_TEXT];
        int c;
        if (st_parse_float64_text(forms[i], strlen(forms[i]), &back, &c) != SL_OK)
            continue;
        st_format_float64(back, again);
        if (c != (strcmp(forms[i], again) == 0))
            fail_msg("\"%s\": canonical %d, but it prints as \"%s\"", forms[i], c, again);
    }
}

static void
float64_formatting_matches_reference(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL, bits;
    double v;
    int i, e;

    (void)state;
    /* every kind of bit pattern: random, and random within each binary exponent */
    for (i = 0; i < 50000; i++) {
        bits = xorshift(&seed);
        memcpy(&v, &bits, sizeof v);
        check_against_reference(v);
    }
    for (e = 0; e < 2047; e++) {
        for (i = 0; i < 12; i++) {
            bits = ((uint64_t)e << 52) | (xorshift(&seed) & ((1ULL << 52) - 1));
            if (i == 0)
                bits = (uint64_t)e << 52; /* a power of two: the closer lower boundary */
            if (i == 1)
                bits |= (1ULL << 52) - 1;
            memcpy(&v, &bits, sizeof v);
            check_against_reference(v);
        }
    }
    /* values as people type them: short decimals, integers, numpy's repr of uniforms */
    for (i = 0; i < 20000; i++) {
        char text[40];
        double back;
        snprintf(text, sizeof text, "%d.%0*d", (int)(xorshift(&seed) % 1000), 1 + i % 9,
                 (int)(xorshift(&seed) % 1000000000) % (int)pow(10, 1 + i % 9));
        assert_int_equal(st_parse_float64(text, strlen(text), &back), SL_OK);
        assert_true(back == strtod(text, NULL));
        check_against_reference(back);
        check_against_reference((double)(xorshift(&seed) % (1ULL << 53)));
        check_against_reference((double)(xorshift(&seed) >> 11) / (double)(1ULL << 53));
    }
    /* the canonical verdict for texts of 1 to 17 digits over the whole range, written
     * d.ddde+XX, as 0.ddd and as their value prints: canonical exactly when the value
     * prints as the text (up to 15 digits of a normal double skip the shortest search) */
    for (i = 0; i < 200000; i++) {
        char dig[24], text[64], back[ST_FLOAT_TEXT];
        int k = 1 + (int)(xorshift(&seed) % 17), ex = (int)(xorshift(&seed) % 660) - 340, c;
        double d;
        snprintf(dig, sizeof dig, "%017llu",
                 (unsigned long long)(xorshift(&seed) % 100000000000000000ULL));
        dig[k] = '\0';
        if (i % 3 == 0)
            snprintf(text, sizeof text, "%c.%se%c%02d", dig[0], dig + 1, ex < 0 ? '-' : '+',
                     ex < 0 ? -ex : ex);
        else if (i % 3 == 1)
            snprintf(text, sizeof text, "0.%s", dig);
        else if (snprintf(text, sizeof text, "%se%d", dig, ex % 24),
                 st_parse_float64(text, strlen(text), &d) == SL_OK)
            st_format_float64(d, text);
        if (st_parse_float64_text(text, strlen(text), &d, &c) != SL_OK)
            continue;
        st_format_float64(d, back);
        if (c != (strcmp(text, back) == 0))
            fail_msg("\"%s\": canonical %d, but it prints as \"%s\"", text, c, back);
    }
    /* the parser against glibc's strtod: long significands over the whole range */
    for (i = 0; i < 300000; i++) {
        char text[64];
        double a, b;
        int nd = 15 + (int)(xorshift(&seed) % 5), ex = (int)(xorshift(&seed) % 700) - 360, j;
        for (j = 0; j < nd; j++)
            text[j] = (char)('0' + (j == 0 ? 1 + xorshift(&seed) % 9 : xorshift(&seed) % 10));
        snprintf(text + nd, sizeof text - (size_t)nd, "e%d", ex);
        b = strtod(text, NULL);
        if (!isfinite(b)) {
            assert_int_equal(st_parse_float64(text, strlen(text), &a), SL_EINVALID);
            continue;
        }
        assert_int_equal(st_parse_float64(text, strlen(text), &a), SL_OK);
        if (memcmp(&a, &b, sizeof a) != 0)
            fail_msg("%s: %a, strtod says %a", text, a, b);
    }
    {
        /* halfway cases and the edges of the range */
        static const char *const edges[] = {"9007199254740993",
                                            "9007199254740995",
                                            "4.9406564584124654e-324",
                                            "2.4703282292062327e-324",
                                            "2.4703282292062328e-324",
                                            "1.7976931348623157e308",
                                            "1.7976931348623158e308",
                                            "2.2250738585072011e-308",
                                            "2.2250738585072012e-308",
                                            "8.98846567431158e307",
                                            "1e23",
                                            "7.3177701707893310e15",
                                            "9223372036854775807",
                                            "18446744073709551615",
                                            "0.000000000000000000001",
                                            "123456789012345678e-30",
                                            "1e-342",
                                            "1e-343",
                                            "9999999999999999999e-343"};
        for (i = 0; i < (int)(sizeof edges / sizeof edges[0]); i++) {
            double a, b = strtod(edges[i], NULL);
            assert_int_equal(st_parse_float64(edges[i], strlen(edges[i]), &a), SL_OK);
            if (memcmp(&a, &b, sizeof a) != 0)
                fail_msg("%s: %a, strtod says %a", edges[i], a, b);
        }
    }
    /* the canonical check's edges */
    assert_true(st_float64_canonical("0.0", 3, 0.0) && st_float64_canonical("-0.0", 4, -0.0));
    assert_false(st_float64_canonical("0", 1, 0.0) || st_float64_canonical("0.0", 3, -0.0));
    assert_true(st_float64_canonical("100.0", 5, 100.0) && st_float64_canonical("1e+16", 5, 1e16));
    assert_false(st_float64_canonical("100", 3, 100.0) || st_float64_canonical("1e16", 4, 1e16) ||
                 st_float64_canonical("1.0e+16", 7, 1e16) ||
                 st_float64_canonical("100.00", 6, 100.0));
    assert_true(st_float64_canonical("1e-05", 5, 1e-5) && st_float64_canonical("0.0001", 6, 1e-4));
    assert_true(st_float64_canonical("-1.5e-320", 9, -1.5e-320));
    /* 20 digits written, 17 of them significant */
    assert_true(st_float64_canonical("0.0018011237721156093", 21, 0.0018011237721156093));
    assert_false(st_float64_canonical("0.00180112377211560930", 22, 0.0018011237721156093));
    check_against_reference(DBL_MAX);
    check_against_reference(DBL_MIN);
    check_against_reference(DBL_TRUE_MIN);
    check_against_reference(9007199254740992.0);
    check_against_reference(1e22);
    check_against_reference(1e23);
    check_against_reference(1e15);
    check_against_reference(123456789012345680.0);
    {
        /* Python's repr() form: positional from 1e-4 to below 1e16, else scientific */
        static const struct {
            double v;
            const char *text;
        } forms[] = {{1e-5, "1e-05"},
                     {1.25e-4, "0.000125"},
                     {123456789012345.0, "123456789012345.0"},
                     {1e15, "1000000000000000.0"},
                     {1234567890123456.0, "1234567890123456.0"},
                     {12345678901234568.0, "1.2345678901234568e+16"},
                     {123456789012345680.0, "1.2345678901234568e+17"},
                     {1e16, "1e+16"},
                     {-2.5, "-2.5"},
                     {0.0, "0.0"},
                     {0x1p-1017, "7.120236347223045e-307"},
                     {1.7976931348623157e308, "1.7976931348623157e+308"}};
        char text[ST_FLOAT_TEXT];
        for (i = 0; i < (int)(sizeof forms / sizeof forms[0]); i++) {
            st_format_float64(forms[i].v, text);
            assert_string_equal(text, forms[i].text);
        }
    }
}

/* float64 chunks keep canonical text (served by copying it) and fall back to binary
 * as soon as one value is not canonical; the decoder takes both and refuses nonsense. */
static void
float_text_chunks(void **state)
{
    static const char *const canon[] = {"0.1", "-0.0", "5e-324", "1e+22", "123.5", NULL};
    static const char *const other[] = {"0.1", "0.50", NULL};
    st_column c, d;
    sl_buf enc, out;
    sl_err err;
    size_t i;
    const char *const names[] = {"x"};

    (void)state;
    st_column_init(&c, ST_FLOAT64);
    c.text = 1;
    for (i = 0; i < 6; i++) {
        st_field f = {canon[i] ? canon[i] : "", canon[i] ? strlen(canon[i]) : 0, canon[i] == NULL};
        assert_int_equal(st_column_add(&c, &f, &err), SL_OK);
    }
    assert_true(c.text);
    sl_buf_init(&enc, 1 << 20);
    assert_int_equal(st_column_encode(&c, &enc), SL_OK);
    assert_int_equal((unsigned char)enc.data[5], 1); /* the text flag */
    assert_int_equal(st_column_decode((unsigned char *)enc.data, enc.len, &d), SL_OK);
    assert_true(d.text);
    assert_null(d.f64);
    sl_buf_init(&out, 1 << 20);
    assert_int_equal(st_out_rows(ST_OUT_CSV, names, &d, 1, 0, 6, &out), SL_OK);
    assert_string_equal(out.data, "0.1\n-0.0\n5e-324\n1e+22\n123.5\n\n");
    sl_buf_reset(&out);
    assert_int_equal(st_out_rows(ST_OUT_JSONL, names, &d, 1, 1, 2, &out), SL_OK);
    assert_string_equal(out.data, "{\"x\":-0.0}\n");
    /* npy needs the numbers: refused until they are read */
    assert_int_equal(st_out_rows(ST_OUT_NPY, names, &d, 1, 0, 1, &out), SL_EINVALID);
    assert_int_equal(st_column_floats(&d), SL_OK);
    assert_true(d.f64[4] == 123.5 && signbit(d.f64[1]));
    st_column_clear(&d);
    /* the decoder: a text flag on another type, a null with text, a stray character */
    enc.data[4] = ST_INT64;
    assert_int_equal(st_column_decode((unsigned char *)enc.data, enc.len, &d), SL_EINVALID);
    enc.data[4] = ST_FLOAT64;
    enc.data[enc.len - 1] = 'x';
    assert_int_equal(st_column_decode((unsigned char *)enc.data, enc.len, &d), SL_EINVALID);
    sl_buf_free(&enc);
    st_column_clear(&c);
    /* one value typed another way ("0.50" prints as 0.5): binary, and served canonical */
    st_column_init(&c, ST_FLOAT64);
    c.text = 1;
    for (i = 0; other[i] != NULL; i++) {
        st_field f = {other[i], strlen(other[i]), 0};
        assert_int_equal(st_column_add(&c, &f, &err), SL_OK);
    }
    assert_false(c.text);
    sl_buf_init(&enc, 1 << 20);
    assert_int_equal(st_column_encode(&c, &enc), SL_OK);
    assert_int_equal((unsigned char)enc.data[5], 0);
    assert_int_equal(st_column_decode((unsigned char *)enc.data, enc.len, &d), SL_OK);
    sl_buf_reset(&out);
    assert_int_equal(st_out_rows(ST_OUT_CSV, names, &d, 1, 0, 2, &out), SL_OK);
    assert_string_equal(out.data, "0.1\n0.5\n");
    st_column_clear(&d);
    st_column_clear(&c);
    sl_buf_free(&enc);
    sl_buf_free(&out);
}

static void
bools_and_types(void **state)
{
    int b;
    st_type t;

    (void)state;
    assert_int_equal(st_parse_bool("TRUE", 4, &b), SL_OK);
    assert_int_equal(b, 1);
    assert_int_equal(st_parse_bool("false", 5, &b), SL_OK);
    assert_int_equal(b, 0);
    assert_int_equal(st_parse_bool("yes", 3, &b), SL_EINVALID);
    assert_int_equal(st_parse_bool("1", 1, &b), SL_EINVALID);
    assert_int_equal(st_type_parse("int64", &t), SL_OK);
    assert_int_equal(t, ST_INT64);
    assert_string_equal(st_type_name(ST_FLOAT64), "float64");
    assert_int_equal(st_type_parse("double", &t), SL_EINVALID);
}

static st_type
infer(const char *const *values, size_t n)
{
    st_infer s;
    size_t i;

    st_infer_init(&s);
    for (i = 0; i < n; i++)
        st_infer_add(&s, values[i], strlen(values[i]));
    return st_infer_type(&s);
}

static void
inference(void **state)
{
    static const char *const ints[] = {"1", "-2", "30"};
    static const char *const floats[] = {"1", "2.5", "-3"};
    static const char *const bools[] = {"true", "False"};
    static const char *const strings[] = {"1", "x"};
    static const char *const huge[] = {"1", "99999999999999999999"};
    static const char *const mixed_bool[] = {"true", "1"};

    (void)state;
    assert_int_equal(infer(ints, 3), ST_INT64);
    assert_int_equal(infer(floats, 3), ST_FLOAT64);
    assert_int_equal(infer(bools, 2), ST_BOOL);
    assert_int_equal(infer(strings, 2), ST_STRING);
    assert_int_equal(infer(huge, 2), ST_FLOAT64);
    assert_int_equal(infer(mixed_bool, 2), ST_STRING);
    assert_int_equal(infer(NULL, 0), ST_STRING);
    (void)isfinite(1.0);
}

/* ---- column chunks ---- */

static st_field
fld(const char *s)
{
    st_field f = {s ? s : "", s ? strlen(s) : 0, s == NULL};
    return f;
}

static void
fill(st_column *c, st_type t, const char *const *vals, size_t n)
{
    size_t i;
    sl_err err;

    st_column_init(c, t);
    for (i = 0; i < n; i++) {
        st_field f = fld(vals[i]);
        assert_int_equal(st_column_add(c, &f, &err), SL_OK);
    }
}

/* encode, decode, and compare every row; returns the encoding (caller frees) */
static void
round_trip(st_column *c, sl_buf *enc)
{
    st_column d;
    uint32_t r;

    sl_buf_init(enc, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_column_encode(c, enc), SL_OK);
    assert_int_equal(st_column_decode((const unsigned char *)enc->data, enc->len, &d), SL_OK);
    assert_int_equal(st_column_floats(&d), SL_OK);
    assert_int_equal(d.type, c->type);
    assert_int_equal(d.rows, c->rows);
    for (r = 0; r < c->rows; r++) {
        assert_int_equal(d.nulls[r], c->nulls[r]);
        switch (c->type) {
        case ST_INT64:
            assert_true(d.i64[r] == c->i64[r]);
            break;
        case ST_FLOAT64:
            assert_memory_equal(&d.f64[r], &c->f64[r], 8);
            break;
        case ST_BOOL:
            assert_int_equal(d.b[r], c->b[r]);
            break;
        case ST_STRING:
            assert_int_equal(d.off[r + 1] - d.off[r], c->off[r + 1] - c->off[r]);
            assert_memory_equal(d.str + d.off[r], c->str + c->off[r], d.off[r + 1] - d.off[r]);
            break;
        }
    }
    st_column_clear(&d);
}

static void
columns_round_trip(void **state)
{
    static const char *const ints[] = {
        "0", NULL, "-9223372036854775808", "9223372036854775807", "42", NULL, NULL, "7", "8"};
    static const char *const floats[] = {
        "0.1", "-0", NULL, "5e-324", "1.7976931348623157e308", "-2.2250738585072014e-308"};
    static const char *const bools[] = {"true", "false", NULL,    "TRUE", "False",
                                        "true", "true",  "false", "true"};
    static const char *const strings[] = {
        "plain", "", NULL, "comma, and \"quote\"", "line\nbreak", "Jos\xc3\xa9 \xe6\x9d\xb1"};
    st_column c;
    sl_buf enc;

    (void)state;
    fill(&c, ST_INT64, ints, 9);
    round_trip(&c, &enc);
    sl_buf_free(&enc);
    st_column_clear(&c);
    fill(&c, ST_FLOAT64, floats, 6);
    assert_true(signbit(c.f64[1]));
    round_trip(&c, &enc);
    sl_buf_free(&enc);
    st_column_clear(&c);
    fill(&c, ST_BOOL, bools, 9);
    round_trip(&c, &enc);
    sl_buf_free(&enc);
    st_column_clear(&c);
    fill(&c, ST_STRING, strings, 6);
    assert_int_equal(c.nulls[1], 0); /* "" is a value */
    assert_int_equal(c.nulls[2], 1);
    round_trip(&c, &enc);
    sl_buf_free(&enc);
    st_column_clear(&c);
    fill(&c, ST_STRING, NULL, 0); /* no rows */
    round_trip(&c, &enc);
    sl_buf_free(&enc);
    st_column_clear(&c);
}

static void
columns_refuse_values_of_another_type(void **state)
{
    st_column c;
    st_field f = fld("3.5");
    sl_err err;

    (void)state;
    st_column_init(&c, ST_INT64);
    assert_int_equal(st_column_add(&c, &f, &err), SL_EINVALID);
    assert_string_equal(err.msg, "not an int64");
    assert_int_equal(c.rows, 0);
    st_column_clear(&c);
    st_column_init(&c, ST_FLOAT64);
    f = fld("1e999");
    assert_int_equal(st_column_add(&c, &f, &err), SL_EINVALID);
    st_column_clear(&c);
    st_column_init(&c, ST_BOOL);
    f = fld("1");
    assert_int_equal(st_column_add(&c, &f, &err), SL_EINVALID);
    st_column_clear(&c);
}

static void
chunk_decoder_is_strict(void **state)
{
    static const char *const strings[] = {"ab", NULL, "cde"};
    static const char *const floats[] = {"1.5", NULL, "2"};
    st_column c, d;
    sl_buf enc;
    unsigned char *b;
    size_t i;

    (void)state;
    fill(&c, ST_STRING, strings, 3);
    sl_buf_init(&enc, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_column_encode(&c, &enc), SL_OK);
    b = (unsigned char *)enc.data;
    /* every truncation and one byte too many */
    for (i = 0; i < enc.len; i++)
        assert_int_equal(st_column_decode(b, i, &d), SL_EINVALID);
    assert_int_equal(sl_buf_append(&enc, "x", 1), SL_OK);
    b = (unsigned char *)enc.data;
    assert_int_equal(st_column_decode(b, enc.len, &d), SL_EINVALID);
    enc.len--;
    /* a flipped byte anywhere: refused or decoded, never a crash; the magic, type and
     * counts are always caught */
    for (i = 0; i < enc.len; i++) {
        b[i] ^= 0x40;
        if (st_column_decode(b, enc.len, &d) == SL_OK) {
            assert_true(i >= 16); /* only in the data */
            st_column_clear(&d);
        }
        b[i] ^= 0x40;
    }
    /* offsets going back, a null row holding text, invalid UTF-8 */
    b[16 + 1 + 4] = 5; /* offset of row 1: 5 > offset of row 2 (2) */
    assert_int_equal(st_column_decode(b, enc.len, &d), SL_EINVALID);
    sl_buf_free(&enc);
    st_column_clear(&c);
    /* a float that is not finite, a padding bit set */
    fill(&c, ST_FLOAT64, floats, 3);
    sl_buf_init(&enc, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_column_encode(&c, &enc), SL_OK);
    b = (unsigned char *)enc.data;
    assert_int_equal(st_column_decode(b, enc.len, &d), SL_OK);
    st_column_clear(&d);
    b[16] |= 0x80; /* null bitmap: a bit past the 3 rows */
    assert_int_equal(st_column_decode(b, enc.len, &d), SL_EINVALID);
    b[16] &= 0x7f;
    b[16 + 1 + 7] = 0x7f; /* row 0: exponent all ones */
    b[16 + 1 + 6] = 0xf0;
    assert_int_equal(st_column_decode(b, enc.len, &d), SL_EINVALID);
    sl_buf_free(&enc);
    st_column_clear(&c);
}

/* ---- compression ---- */

static void
pack_where_it_pays(void **state)
{
    size_t n = 200000, i;
    unsigned char *digits = malloc(n), *noise = malloc(n);
    sl_buf packed, back;
    int compressed;

    (void)state;
    /* text of random float digits compresses; random bytes do not */
    srand(7);
    for (i = 0; i < n; i++) {
        digits[i] = (unsigned char)(i % 20 == 19 ? ',' : (i % 20 == 1 ? '.' : '0' + rand() % 10));
        noise[i] = (unsigned char)rand();
    }
    sl_buf_init(&packed, SL_MAX_CHUNK_BYTES);
    sl_buf_init(&back, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_pack(digits, n, 1, &packed, &compressed), SL_OK);
    assert_true(compressed);
    assert_true(packed.len < n * 2 / 3);
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n, &back), SL_OK);
    assert_int_equal(back.len, n);
    assert_memory_equal(back.data, digits, n);
    /* strict: one byte short, one too many, a raw length that lies, over the maximum */
    back.len = 0;
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len - 1, n, &back),
                     SL_EINVALID);
    assert_int_equal(back.len, 0);
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n - 1, &back),
                     SL_EINVALID);
    packed.data[1] ^= 1;
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n, &back), SL_EINVALID);
    packed.data[1] ^= 1;
    packed.data[0] = 7;
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n, &back), SL_EINVALID);
    sl_buf_reset(&packed);
    assert_int_equal(st_pack(noise, n, 1, &packed, &compressed), SL_OK);
    assert_false(compressed);
    assert_int_equal(packed.len, n + ST_PACK_HEAD);
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n, &back), SL_OK);
    assert_memory_equal(back.data, noise, n);
    assert_int_equal(sl_buf_append(&packed, "x", 1), SL_OK);
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, n, &back), SL_EINVALID);
    sl_buf_reset(&packed);
    assert_int_equal(st_pack(noise, 0, 1, &packed, &compressed), SL_OK); /* empty */
    sl_buf_reset(&back);
    assert_int_equal(st_unpack((unsigned char *)packed.data, packed.len, 0, &back), SL_OK);
    assert_int_equal(back.len, 0);
    sl_buf_free(&packed);
    sl_buf_free(&back);
    free(digits);
    free(noise);
}

/* ---- fragments ---- */

static void
frag_free(st_frag *f, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(f[i].p);
        f[i].p = NULL;
    }
}

static void
crc32c_standard(void **state)
{
    (void)state;
    assert_int_equal(st_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(st_crc32c("", 0), 0);
}

/* Every way of losing up to m of k + m fragments rebuilds the same bytes. */
static void
fragments_survive_any_m_losses(void **state)
{
    static const int shapes[][2] = {{1, 0}, {1, 1}, {4, 2}, {3, 3}, {5, 1}};
    size_t sizes[] = {0, 1, 7, 1000, 65537};
    size_t si, sh, i;

    (void)state;
    for (sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int k = shapes[sh][0], m = shapes[sh][1], total = k + m;
        for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            unsigned char *chunk = malloc(n ? n : 1);
            st_frag f[ST_MAX_FRAGMENTS], g[ST_MAX_FRAGMENTS];
            uint32_t mask, bad;
            for (i = 0; i < n; i++)
                chunk[i] = (unsigned char)(i * 131 + 7);
            assert_int_equal(st_frag_split(chunk, n, k, m, f), SL_OK);
            for (mask = 0; mask < (1u << total); mask++) {
                sl_buf out;
                int lost = __builtin_popcount(mask);
                sl_buf_init(&out, SL_MAX_CHUNK_BYTES);
                for (i = 0; i < (size_t)total; i++)
                    g[i] = (mask & (1u << i)) ? (st_frag){NULL, 0} : f[i];
                if (lost <= m) {
                    assert_int_equal(st_frag_join(g, k, m, &out, &bad), SL_OK);
                    assert_int_equal(bad, mask);
                    assert_int_equal(out.len, n);
                    if (n > 0)
                        assert_memory_equal(out.data, chunk, n);
                } else {
                    assert_int_equal(st_frag_join(g, k, m, &out, &bad), SL_EINVALID);
                    assert_int_equal(out.len, 0);
                }
                sl_buf_free(&out);
            }
            frag_free(f, total);
            free(chunk);
        }
    }
}

static void
fragments_damaged_are_set_aside(void **state)
{
    unsigned char chunk[5000];
    st_frag f[6], g[6];
    sl_buf out;
    uint32_t bad;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof chunk; i++)
        chunk[i] = (unsigned char)(i ^ (i >> 3));
    assert_int_equal(st_frag_split(chunk, sizeof chunk, 4, 2, f), SL_OK);
    /* a flipped byte in data fragment 1, a truncated parity fragment: rebuilt */
    memcpy(g, f, sizeof g);
    f[1].p[ST_FRAG_HEAD + 10] ^= 1;
    g[4].n -= 1;
    sl_buf_init(&out, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_frag_join(g, 4, 2, &out, &bad), SL_OK);
    assert_int_equal(bad, (1u << 1) | (1u << 4));
    assert_memory_equal(out.data, chunk, sizeof chunk);
    sl_buf_reset(&out);
    /* fragments swapped between places: each is refused at the other's index */
    g[4].n += 1;
    g[0] = f[2];
    g[2] = f[0];
    assert_int_equal(st_frag_join(g, 4, 2, &out, &bad), SL_EINVALID);
    assert_int_equal(bad, (1u << 0) | (1u << 1) | (1u << 2));
    /* a header field changed under an intact payload: the CRC covers the header */
    memcpy(g, f, sizeof g);
    f[1].p[ST_FRAG_HEAD + 10] ^= 1;
    f[3].p[8] ^= 1; /* chunk length */
    assert_int_equal(st_frag_join(g, 4, 2, &out, &bad), SL_OK);
    assert_int_equal(bad, 1u << 3);
    assert_memory_equal(out.data, chunk, sizeof chunk);
    assert_false(st_frag_check(f[3].p, f[3].n, 4, 2, 3));
    assert_true(st_frag_check(f[2].p, f[2].n, 4, 2, 2));
    assert_false(st_frag_check(f[2].p, f[2].n, 4, 2, 1));
    assert_false(st_frag_check(f[2].p, f[2].n, 3, 2, 2));
    sl_buf_free(&out);
    frag_free(f, 6);
    assert_int_equal(st_frag_split(chunk, 10, 0, 1, f), SL_EINVALID);
    assert_int_equal(st_frag_split(chunk, 10, 30, 3, f), SL_EINVALID);
}

/* ---- chunks in storage directories ---- */

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* 1 when the bytes occur in any file under dir */
static int
found_under(const char *dir, const char *needle)
{
    char cmd[PATH_MAX + 128];

    snprintf(cmd, sizeof cmd, "grep -rqF -- '%s' '%s'", needle, dir);
    return system(cmd) == 0;
}

/* Fragments go by direct I/O where the file system has it (whole blocks, then the tail
 * through the cache) and plainly where it does not (tmpfs): every size reads back. */
static void
chunks_with_and_without_direct_io(void **state)
{
    static const size_t sizes[] = {1, 4000, 4075, 4096, 8192 + 77, (1 << 20) + 3};
    const char *bases[] = {"/tmp", "/dev/shm"};
    unsigned char *data = malloc((1 << 20) + 3);
    cry_key *key = cry_key_random(32);
    size_t b, i, j;

    (void)state;
    for (i = 0; i < (1 << 20) + 3; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13); /* does not compress */
    for (b = 0; b < 2; b++) {
        char root[64], d[3][96];
        const char *dp[3];
        st_storage *s;
        int shape;
        snprintf(root, sizeof root, "%s/st-direct-XXXXXX", bases[b]);
        if (mkdtemp(root) == NULL) {
            assert_int_equal(b, 1); /* /tmp is always there */
            continue;
        }
        for (i = 0; i < 3; i++) {
            snprintf(d[i], sizeof d[i], "%s/d%zu", root, i);
            assert_int_equal(mkdir(d[i], 0700), 0);
            dp[i] = d[i];
        }
        for (shape = 0; shape < 2; shape++) {
            sl_err err;
            assert_int_equal(st_storage_new(dp, shape ? 3 : 1, shape, &s, &err), SL_OK);
            for (j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
                st_place pl = {5, 1, (uint32_t)shape, (uint32_t)j, 1};
                st_chunk_info info;
                sl_buf back;
                uint32_t bad;
                assert_int_equal(st_chunk_put(s, &pl, key, data, sizes[j], 1, &info, &err), SL_OK);
                sl_buf_init(&back, SL_MAX_CHUNK_BYTES);
                assert_int_equal(st_chunk_read(s, &pl, key, &back, &bad, &err), SL_OK);
                assert_int_equal(bad, 0);
                assert_int_equal(back.len, sizes[j]);
                assert_memory_equal(back.data, data, sizes[j]);
                sl_buf_free(&back);
            }
            st_storage_free(s);
        }
        assert_int_equal(nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    }
    cry_key_free(key);
    free(data);
}

static void
chunks_in_storage(void **state)
{
    char root[] = "/tmp/st-test-XXXXXX", dirs[6][PATH_MAX], path[PATH_MAX], path2[PATH_MAX];
    const char *dp[6];
    st_storage *s;
    st_place a = {7, 3, 0, 0, 1}, b = {7, 3, 0, 1, 1};
    st_chunk_info info;
    cry_key *key = cry_key_random(32), *wrong = cry_key_random(32);
    unsigned char data[40000];
    sl_buf back;
    uint32_t bad;
    sl_err err;
    size_t i;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(root));
    for (i = 0; i < 6; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/d%zu", root, i);
        assert_int_equal(mkdir(dirs[i], 0700), 0);
        dp[i] = dirs[i];
    }
    /* compressible text holding a planted value, as an encoded chunk would */
    for (i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)("0123456789.,"[(i * 7) % 12]);
    memcpy(data + 1000, "PLANTED-123-45-6789", 19);
    assert_int_equal(st_storage_new(dp, 6, 2, &s, &err), SL_OK);
    assert_int_equal(st_chunk_write(s, &a, key, data, sizeof data, &info, &err), SL_OK);
    assert_true(info.compressed);
    assert_true(info.stored < sizeof data);
    assert_int_equal(st_chunk_write(s, &b, key, data, 5000, &info, &err), SL_OK);
    assert_int_equal(st_storage_sync(s, 7, 3, NULL, &err), SL_OK);
    assert_false(found_under(root, "PLANTED-123-45-6789"));
    /* what an interrupted repair leaves (a .tmp) goes; the fragments stay */
    snprintf(path, sizeof path, "%s/7/3/0.0.frag.tmp", dirs[1]);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(st_version_tidy(s, 7, 3, &err), SL_OK);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/7/3/0.0.frag", dirs[1]);
    assert_int_equal(access(path, F_OK), 0);
    sl_buf_init(&back, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_chunk_read(s, &a, key, &back, &bad, &err), SL_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(back.len, sizeof data);
    assert_memory_equal(back.data, data, sizeof data);
    /* two directories gone: rebuilt from parity */
    for (i = 1; i < 6; i += 3) {
        snprintf(path, sizeof path, "%s/7/3/0.0.frag", dirs[i]);
        assert_int_equal(unlink(path), 0);
    }
    sl_buf_reset(&back);
    assert_int_equal(st_chunk_read(s, &a, key, &back, &bad, &err), SL_OK);
    assert_int_equal(bad, (1u << 1) | (1u << 4));
    assert_memory_equal(back.data, data, sizeof data);
    /* a third one damaged: beyond parity, a clean refusal */
    snprintf(path, sizeof path, "%s/7/3/0.0.frag", dirs[0]);
    f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 100, SEEK_SET);
    fputc('!', f);
    fclose(f);
    sl_buf_reset(&back);
    assert_int_equal(st_chunk_read(s, &a, key, &back, &bad, &err), SL_EUNAVAIL);
    assert_int_equal(back.len, 0);
    /* a chunk moved to another's place in every directory: sound fragments, wrong place */
    assert_int_equal(st_chunk_write(s, &a, key, data, sizeof data, &info, &err), SL_OK);
    for (i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/7/3/0.0.frag", dirs[i]);
        snprintf(path2, sizeof path2, "%s/7/3/0.1.frag", dirs[i]);
        assert_int_equal(rename(path, path2), 0); /* A's fragments now in B's place */
    }
    assert_int_equal(st_chunk_read(s, &b, key, &back, &bad, &err), SL_EUNAVAIL);
    assert_non_null(strstr(err.msg, "does not authenticate"));
    assert_int_equal(back.len, 0);
    /* the wrong key: the same clean refusal */
    assert_int_equal(st_chunk_write(s, &a, key, data, sizeof data, &info, &err), SL_OK);
    assert_int_equal(st_chunk_read(s, &a, wrong, &back, &bad, &err), SL_EUNAVAIL);
    assert_int_equal(st_chunk_read(s, &a, key, &back, &bad, &err), SL_OK);
    sl_buf_free(&back);
    st_storage_free(s);
    assert_int_equal(st_storage_new(dp, 2, 2, &s, &err), SL_EINVALID);
    cry_key_free(key);
    cry_key_free(wrong);
    assert_int_equal(nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* ---- an upload, end to end below HTTP ---- */

typedef struct {
    char root[32];
    char dirs[3][PATH_MAX];
    st_storage *s;
    cry_key *key;
} store_fixture;

static void
fixture_up(store_fixture *fx)
{
    const char *dp[3];
    sl_err err;
    int i;

    snprintf(fx->root, sizeof fx->root, "/tmp/st-ingest-XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    for (i = 0; i < 3; i++) {
        snprintf(fx->dirs[i], sizeof fx->dirs[i], "%s/d%d", fx->root, i);
        assert_int_equal(mkdir(fx->dirs[i], 0700), 0);
        dp[i] = fx->dirs[i];
    }
    assert_int_equal(st_storage_new(dp, 3, 1, &fx->s, &err), SL_OK);
    fx->key = cry_key_random(32);
}

static void
fixture_down(store_fixture *fx)
{
    st_storage_free(fx->s);
    cry_key_free(fx->key);
    assert_int_equal(nftw(fx->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static sl_code
ingest(store_fixture *fx, const char *csv, size_t len, size_t step, const st_colspec *decl,
       size_t ndecl, json_t **manifest, sl_err *err)
{
    st_ingest *g = st_ingest_new(fx->s, fx->key, 11, 2, 1, decl, ndecl);
    sl_code rc = SL_OK;
    size_t off = 0;

    *manifest = NULL;
    while (rc == SL_OK && off < len) {
        size_t k = len - off < step ? len - off : step;
        rc = st_ingest_feed(g, csv + off, k, err);
        off += k;
    }
    if (rc == SL_OK)
        rc = st_ingest_finish(g, manifest, err);
    st_ingest_free(g);
    return rc;
}

static void
read_column(store_fixture *fx, uint32_t group, uint32_t col, st_column *out)
{
    st_place pl = {11, 2, group, col, 1};
    sl_buf raw;
    uint32_t bad;
    sl_err err;

    sl_buf_init(&raw, SL_MAX_CHUNK_BYTES);
    assert_int_equal(st_chunk_read(fx->s, &pl, fx->key, &raw, &bad, &err), SL_OK);
    assert_int_equal(st_column_decode((unsigned char *)raw.data, raw.len, out), SL_OK);
    assert_int_equal(st_column_floats(out), SL_OK);
    sl_buf_free(&raw);
}

static const char *
column_type(json_t *m, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(m, "columns"), i), "type"));
}

static void
ingest_round_trip(void **state)
{
    static const char csv[] =
        "id,score,ok,name,note\r\n"
        "1,0.1,true,ada,\"quoted, with \"\"quotes\"\"\"\r\n"
        "-9223372036854775808,-1.7976931348623157e308,false,Jos\xc3\xa9,\"two\nlines\"\r\n"
        ",5e-324,,,\r\n"
        "9223372036854775807,-0,TRUE,\"\",SSN 123-45-6789\r\n";
    store_fixture fx;
    unsigned char sha[32];
    char hex[65];
    json_t *m;
    st_column c;
    sl_err err;

    (void)state;
    fixture_up(&fx);
    assert_int_equal(ingest(&fx, csv, sizeof csv - 1, 3, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 4);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes_in")), sizeof csv - 1);
    cry_sha256(csv, sizeof csv - 1, sha);
    cry_hex(sha, 32, hex);
    assert_string_equal(json_string_value(json_object_get(m, "sha256")), hex);
    assert_string_equal(column_type(m, 0), "int64");
    assert_string_equal(column_type(m, 1), "float64");
    assert_string_equal(column_type(m, 2), "bool");
    assert_string_equal(column_type(m, 3), "string");
    assert_int_equal(json_array_size(json_object_get(m, "groups")), 1);
    /* every value back, bit for bit */
    read_column(&fx, 0, 0, &c);
    assert_true(c.i64[1] == INT64_MIN && c.i64[3] == INT64_MAX && c.nulls[2]);
    st_column_clear(&c);
    read_column(&fx, 0, 1, &c);
    assert_true(c.f64[1] == -1.7976931348623157e308 && c.f64[2] == 5e-324 && signbit(c.f64[3]));
    st_column_clear(&c);
    read_column(&fx, 0, 2, &c);
    assert_true(c.b[0] == 1 && c.b[1] == 0 && c.nulls[2] && c.b[3] == 1);
    st_column_clear(&c);
    read_column(&fx, 0, 3, &c);
    assert_memory_equal(c.str + c.off[1], "Jos\xc3\xa9", 5);
    assert_true(c.nulls[2] && !c.nulls[3] && c.off[4] == c.off[3]); /* null, then "" */
    st_column_clear(&c);
    read_column(&fx, 0, 4, &c);
    assert_memory_equal(c.str + c.off[0], "quoted, with \"quotes\"", 21);
    assert_memory_equal(c.str + c.off[1], "two\nlines", 9);
    st_column_clear(&c);
    assert_false(found_under(fx.root, "123-45-6789"));
    json_decref(m);
    fixture_down(&fx);
}

static void
ingest_groups_and_refusals(void **state)
{
    static const st_colspec decl[] = {{"a", 1, ST_INT64}, {"b", 0, ST_STRING}};
    store_fixture fx;
    sl_buf big;
    json_t *m;
    st_column c;
    sl_err err;
    uint32_t i, n = SL_ROWS_PER_GROUP + 1000;

    (void)state;
    fixture_up(&fx);
    /* two row groups */
    sl_buf_init(&big, 64 << 20);
    assert_int_equal(sl_buf_puts(&big, "i,x\n"), SL_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(sl_buf_printf(&big, "%u,%u.5\n", i, i), SL_OK);
    assert_int_equal(ingest(&fx, big.data, big.len, 1 << 16, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), n);
    assert_int_equal(json_array_size(json_object_get(m, "groups")), 2);
    read_column(&fx, 1, 0, &c);
    assert_int_equal(c.rows, 1000);
    assert_true(c.i64[999] == (int64_t)n - 1);
    st_column_clear(&c);
    json_decref(m);
    /* a later group's value that does not fit the type inferred from the first */
    assert_int_equal(sl_buf_puts(&big, "oops,1.5\n"), SL_OK);
    assert_int_equal(ingest(&fx, big.data, big.len, 1 << 16, NULL, 0, &m, &err), SL_EINVALID);
    assert_null(m);
    assert_string_equal(err.msg, "line 66538, column 1: not an int64");
    sl_buf_free(&big);
    /* declared columns: the header must name them; declared types hold from line 2 */
    assert_int_equal(ingest(&fx, "a,c\n1,2\n", strlen("a,c\n1,2\n"), 3, decl, 2, &m, &err),
                     SL_EINVALID);
    assert_non_null(strstr(err.msg, "column 2"));
    assert_int_equal(ingest(&fx, "a\n1\n", strlen("a\n1\n"), 3, decl, 2, &m, &err), SL_EINVALID);
    assert_int_equal(
        ingest(&fx, "a,b\n1,x\n2.5,y\n", strlen("a,b\n1,x\n2.5,y\n"), 4, decl, 2, &m, &err),
        SL_EINVALID);
    assert_string_equal(err.msg, "line 3, column 1: not a value of the column's type (int64)");
    assert_int_equal(ingest(&fx, "a,b\n1,x\n,y\n", strlen("a,b\n1,x\n,y\n"), 4, decl, 2, &m, &err),
                     SL_OK);
    json_decref(m);
    /* a header and no rows: a version of no rows */
    assert_int_equal(ingest(&fx, "a,b\n", strlen("a,b\n"), 4, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 0);
    json_decref(m);
    fixture_down(&fx);
}

static sl_code
accept_any(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    (void)ctx, (void)rec, (void)line, (void)f, (void)n, (void)err;
    return SL_OK;
}

/* A body of n records "i,s" (CRLF), every seventh s quoted with a doubled quote, a comma
 * and a line feed in it; the record `bad` (if < n) has `what` instead; *line_of_bad the
 * line it begins on. */
static void
cut_body(sl_buf *b, uint32_t n, uint32_t bad, const char *what, uint64_t *line_of_bad)
{
    uint64_t line = 2;
    uint32_t i;

    sl_buf_reset(b);
    assert_int_equal(sl_buf_puts(b, "i,s\r\n"), SL_OK);
    for (i = 0; i < n; i++) {
        if (i == bad) {
            *line_of_bad = line;
            assert_int_equal(sl_buf_puts(b, what), SL_OK);
        } else if (i % 7 == 0) {
            assert_int_equal(sl_buf_printf(b, "%u,\"a \"\"%u\"\"\nb,\"\r\n", i, i), SL_OK);
            line++;
        } else {
            assert_int_equal(sl_buf_printf(b, "%u,plain%u\r\n", i, i), SL_OK);
        }
        line++;
    }
}

/* Groups are cut from the body at record ends outside quotes and parsed apart; what
 * comes back, and which refusal is given, is what one parser reading the whole body
 * gives. */
static void
ingest_cuts_and_earliest_refusal(void **state)
{
    const uint32_t n = 2 * SL_ROWS_PER_GROUP + 10, g1 = SL_ROWS_PER_GROUP + 5,
                   g2 = 2 * SL_ROWS_PER_GROUP + 3;
    store_fixture fx;
    sl_buf body;
    json_t *m;
    st_column c;
    sl_err err;
    char want[96];
    uint64_t line1 = 0, line2 = 0;
    uint32_t n2;

    (void)state;
    fixture_up(&fx);
    sl_buf_init(&body, 64 << 20);
    cut_body(&body, n, n, NULL, &line1);
    /* an odd piece size: cuts fall anywhere in the pieces */
    assert_int_equal(ingest(&fx, body.data, body.len, 4093, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), n);
    assert_int_equal(json_array_size(json_object_get(m, "groups")), 3);
    read_column(&fx, 1, 1, &c);
    assert_int_equal(c.rows, SL_ROWS_PER_GROUP);
    /* the first row of group 1 is record 65536 = 7 * 9362 + 2; 65534 is quoted */
    assert_memory_equal(c.str + c.off[0], "plain65536", 10);
    snprintf(want, sizeof want, "a \"%u\"\nb,", 65534 + 7);
    assert_memory_equal(c.str + c.off[5], want, strlen(want));
    st_column_clear(&c);
    read_column(&fx, 2, 0, &c);
    assert_int_equal(c.rows, 10);
    assert_true(c.i64[9] == (int64_t)n - 1);
    st_column_clear(&c);
    json_decref(m);

    /* one refusal, in the last group */
    cut_body(&body, n, g2, "1,2,3\r\n", &line2);
    assert_int_equal(ingest(&fx, body.data, body.len, 1 << 16, NULL, 0, &m, &err), SL_EINVALID);
    snprintf(want, sizeof want, "line %llu, column 3: 3 fields where the header has 2",
             (unsigned long long)line2);
    assert_string_equal(err.msg, want);
    /* refusals in groups 1 and 2: group 1's, whichever writer finds its own first */
    cut_body(&body, n, g1, "x,1\r\n", &line1);
    memcpy(strstr(body.data + body.len - 200, "\r\n") + 2, "1,2,3", 5);
    assert_int_equal(ingest(&fx, body.data, body.len, 1 << 16, NULL, 0, &m, &err), SL_EINVALID);
    snprintf(want, sizeof want, "line %llu, column 1: not an int64", (unsigned long long)line1);
    assert_string_equal(err.msg, want);
    /* a quote never closed: every later cut is a guess, the parser's reason stands */
    cut_body(&body, n, g1, "7,\"open\r\n", &line1);
    assert_int_equal(ingest(&fx, body.data, body.len, 1 << 16, NULL, 0, &m, &err), SL_EINVALID);
    assert_null(m);
    {
        st_csv *p = st_csv_new(accept_any, NULL);
        sl_err whole;
        if (st_csv_feed(p, body.data, body.len, &whole) == SL_OK)
            assert_int_equal(st_csv_finish(p, &whole), SL_EINVALID);
        assert_string_equal(err.msg, whole.msg);
        assert_non_null(strstr(err.msg, "quote"));
        st_csv_free(p);
    }
    /* a 16 MB record of 16 fields of 500 000 doubled quotes each, fed whole: the cut
     * finds the line end once (searching it again after each of its 16 million quotes
     * took about an hour), and the record reads back */
    sl_buf_reset(&body);
    for (n2 = 0; n2 < 16; n2++)
        assert_int_equal(sl_buf_printf(&body, "%sc%u", n2 ? "," : "", n2), SL_OK);
    assert_int_equal(sl_buf_puts(&body, "\n"), SL_OK);
    for (n2 = 0; n2 < 16 * 500000; n2++) {
        if (n2 % 500000 == 0)
            assert_int_equal(sl_buf_puts(&body, n2 ? "\",\"" : "\""), SL_OK);
        assert_int_equal(sl_buf_append(&body, "\"\"", 2), SL_OK);
    }
    assert_int_equal(sl_buf_puts(&body, "\"\n"), SL_OK);
    assert_int_equal(ingest(&fx, body.data, body.len, body.len, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_integer_value(json_object_get(m, "rows")), 1);
    read_column(&fx, 0, 15, &c);
    assert_int_equal(c.off[1] - c.off[0], 500000);
    assert_true(c.str[0] == '"' && c.str[499999] == '"');
    st_column_clear(&c);
    json_decref(m);
    sl_buf_free(&body);
    fixture_down(&fx);
}

/* ---- served formats ---- */

static sl_code
collect_csv(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    return collect(ctx, rec, line, f, n, err);
}

static void
formats_exact(void **state)
{
    static const char *const ints[] = {"-9223372036854775808", NULL, "9223372036854775807"};
    static const char *const floats[] = {"0.1", "-0", "5e-324"};
    static const char *const bools[] = {"true", "false", NULL};
    static const char *const strings[] = {"a,\"b\"\nc", "", NULL};
    static const char *const names[] = {"i", "f", "b", "s \"q\""};
    static const st_type types[] = {ST_INT64, ST_FLOAT64, ST_BOOL, ST_STRING};
    st_column c[4];
    sl_buf out;
    sink s = {.stop_at = 0};
    st_csv *p;
    sl_err err;
    json_t *row;
    const char *line;
    double d;
    unsigned char *b;
    int k;

    (void)state;
    fill(&c[0], ST_INT64, ints, 3);
    fill(&c[1], ST_FLOAT64, floats, 3);
    fill(&c[2], ST_BOOL, bools, 3);
    fill(&c[3], ST_STRING, strings, 3);
    /* CSV reads back, through our own parser, to the same fields */
    sl_buf_init(&out, 1 << 20);
    assert_int_equal(st_out_begin(ST_OUT_CSV, names, types, 4, 3, &out), SL_OK);
    assert_int_equal(st_out_rows(ST_OUT_CSV, names, c, 4, 0, 3, &out), SL_OK);
    assert_string_equal(out.data, "i,f,b,\"s \"\"q\"\"\"\n"
                                  "-9223372036854775808,0.1,true,\"a,\"\"b\"\"\nc\"\n"
                                  ",-0.0,false,\"\"\n"
                                  "9223372036854775807,5e-324,,\n");
    sl_buf_init(&s.out, 1 << 20);
    p = st_csv_new(collect_csv, &s);
    assert_int_equal(st_csv_feed(p, out.data, out.len, &err), SL_OK);
    assert_int_equal(st_csv_finish(p, &err), SL_OK);
    st_csv_free(p);
    assert_string_equal(s.out.data, "1:i|f|b|s \"q\"\n"
                                    "2:-9223372036854775808|0.1|true|a,\"b\"\nc\n"
                                    "4:<null>|-0.0|false|\n"
                                    "5:9223372036854775807|5e-324|<null>|<null>\n");
    sl_buf_free(&s.out);
    /* JSON lines: every value exact through a JSON parser */
    sl_buf_reset(&out);
    assert_int_equal(st_out_begin(ST_OUT_JSONL, names, types, 4, 3, &out), SL_OK);
    assert_int_equal(st_out_rows(ST_OUT_JSONL, names, c, 4, 0, 3, &out), SL_OK);
    line = out.data;
    row = json_loadb(line, strcspn(line, "\n"), 0, NULL);
    assert_non_null(row);
    assert_true(json_integer_value(json_object_get(row, "i")) == INT64_MIN);
    assert_true(json_real_value(json_object_get(row, "f")) == 0.1);
    assert_true(json_is_true(json_object_get(row, "b")));
    assert_string_equal(json_string_value(json_object_get(row, "s \"q\"")), "a,\"b\"\nc");
    json_decref(row);
    line = strchr(line, '\n') + 1;
    row = json_loadb(line, strcspn(line, "\n"), 0, NULL);
    assert_true(json_is_null(json_object_get(row, "i")));
    d = json_real_value(json_object_get(row, "f"));
    assert_true(d == 0 && signbit(d));
    assert_string_equal(json_string_value(json_object_get(row, "s \"q\"")), "");
    json_decref(row);
    line = strchr(line, '\n') + 1;
    row = json_loadb(line, strcspn(line, "\n"), 0, NULL);
    assert_true(json_real_value(json_object_get(row, "f")) == 5e-324);
    assert_true(json_is_null(json_object_get(row, "s \"q\"")));
    json_decref(row);
    /* npy: refused with a string column; otherwise a 64-aligned header, then the matrix */
    sl_buf_reset(&out);
    assert_int_equal(st_out_begin(ST_OUT_NPY, names, types, 4, 3, &out), SL_EINVALID);
    assert_int_equal(st_out_begin(ST_OUT_NPY, names, types, 3, 3, &out), SL_OK);
    assert_int_equal(out.len % 64, 0);
    b = (unsigned char *)out.data;
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    assert_int_equal(b[8] | b[9] << 8, out.len - 10);
    assert_non_null(strstr(out.data + 10, "'shape': (3, 3)"));
    assert_int_equal(out.data[out.len - 1], '\n');
    {
        size_t h = out.len;
        double m[9];
        assert_int_equal(st_out_rows(ST_OUT_NPY, names, c, 3, 0, 3, &out), SL_OK);
        assert_int_equal(out.len - h, 9 * 8);
        memcpy(m, out.data + h, sizeof m); /* this machine is little-endian, as npy is */
        assert_true(m[0] == (double)INT64_MIN && m[1] == 0.1 && m[2] == 1);
        assert_true(isnan(m[3]) && m[5] == 0);
        assert_true(m[7] == 5e-324 && isnan(m[8]));
    }
    /* a slice: rows [1, 2) only */
    sl_buf_reset(&out);
    assert_int_equal(st_out_rows(ST_OUT_CSV, names, c, 1, 1, 2, &out), SL_OK);
    assert_string_equal(out.data, "\n");
    sl_buf_free(&out);
    for (k = 0; k < 4; k++)
        st_column_clear(&c[k]);
}

/* ---- reading a version back ---- */

/* The whole output of a read as text. */
static sl_code
read_all(store_fixture *fx, const json_t *m, const size_t *cols, size_t ncols, uint64_t offset,
         int64_t limit, st_out fmt, sl_buf *out, uint64_t *rebuilt, sl_err *err)
{
    st_reader *r;
    sl_code rc;
    int more;

    if ((rc = st_reader_new(fx->s, fx->key, 11, 2, 1, m, cols, ncols, offset, limit, fmt, NULL, &r,
                            err)) != SL_OK)
        return rc;
    while ((more = st_reader_next(r, out, err)) > 0)
        ;
    if (rebuilt != NULL)
        *rebuilt = st_reader_rebuilt(r);
    st_reader_free(r);
    return more == 0 ? SL_OK : err->code;
}

static void
read_slices_and_projection(void **state)
{
    store_fixture fx;
    sl_buf csv, out, want;
    json_t *m;
    sl_err err;
    uint32_t i, n = 2 * SL_ROWS_PER_GROUP + 500;
    const size_t proj[] = {2, 0};
    uint64_t rebuilt;
    char path[PATH_MAX];

    (void)state;
    fixture_up(&fx);
    sl_buf_init(&csv, 64 << 20);
    assert_int_equal(sl_buf_puts(&csv, "i,x,s\n"), SL_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(sl_buf_printf(&csv, "%u,%u.25,\"r%u\"\n", i, i, i), SL_OK);
    assert_int_equal(ingest(&fx, csv.data, csv.len, 1 << 16, NULL, 0, &m, &err), SL_OK);
    assert_int_equal(json_array_size(json_object_get(m, "groups")), 3);
    /* a slice across the first group boundary, projected and reordered */
    sl_buf_init(&out, 64 << 20);
    sl_buf_init(&want, 64 << 20);
    assert_int_equal(
        read_all(&fx, m, proj, 2, SL_ROWS_PER_GROUP - 2, 5, ST_OUT_CSV, &out, NULL, &err), SL_OK);
    assert_int_equal(sl_buf_puts(&want, "s,i\n"), SL_OK);
    for (i = SL_ROWS_PER_GROUP - 2; i < SL_ROWS_PER_GROUP + 3; i++)
        assert_int_equal(sl_buf_printf(&want, "r%u,%u\n", i, i), SL_OK);
    assert_string_equal(out.data, want.data);
    /* everything: the CSV comes back as uploaded, but for the quotes it did not need */
    sl_buf_reset(&out);
    sl_buf_reset(&want);
    assert_int_equal(read_all(&fx, m, NULL, 0, 0, -1, ST_OUT_CSV, &out, &rebuilt, &err), SL_OK);
    assert_int_equal(rebuilt, 0);
    assert_int_equal(sl_buf_puts(&want, "i,x,s\n"), SL_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(sl_buf_printf(&want, "%u,%u.25,r%u\n", i, i, i), SL_OK);
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.data, want.len);
    /* a storage directory lost: the same bytes, rebuilt from parity */
    for (i = 0; i < 3; i++) {
        uint32_t c;
        for (c = 0; c < 3; c++) {
            snprintf(path, sizeof path, "%s/11/2/%u.%u.frag", fx.dirs[1], i, c);
            assert_int_equal(unlink(path), 0);
        }
    }
    sl_buf_reset(&out);
    assert_int_equal(read_all(&fx, m, NULL, 0, 0, -1, ST_OUT_CSV, &out, &rebuilt, &err), SL_OK);
    assert_int_equal(rebuilt, 9);
    assert_memory_equal(out.data, want.data, want.len);
    /* past the end: the header only; npy with a text column: refused */
    sl_buf_reset(&out);
    assert_int_equal(read_all(&fx, m, NULL, 0, n + 10, -1, ST_OUT_CSV, &out, NULL, &err), SL_OK);
    assert_string_equal(out.data, "i,x,s\n");
    assert_int_equal(read_all(&fx, m, NULL, 0, 0, -1, ST_OUT_NPY, &out, NULL, &err), SL_EINVALID);
    /* a second directory lost: beyond parity, the read fails cleanly */
    snprintf(path, sizeof path, "%s/11/2/1.0.frag", fx.dirs[2]);
    assert_int_equal(unlink(path), 0);
    sl_buf_reset(&out);
    assert_int_equal(read_all(&fx, m, NULL, 0, 0, -1, ST_OUT_CSV, &out, NULL, &err), SL_EUNAVAIL);
    sl_buf_free(&out);
    sl_buf_free(&want);
    sl_buf_free(&csv);
    json_decref(m);
    fixture_down(&fx);
}

/* A view like the policy's: rows whose i is a multiple of 3; s served upper-cased. */
static sl_code
keep_thirds(void *ctx, const st_column *const *bycol, uint32_t rows, uint8_t *keep)
{
    uint32_t r;

    (void)ctx;
    if (bycol[0] == NULL || bycol[0]->type != ST_INT64)
        return SL_EINTERNAL; /* the column the view asked for is decoded for it */
    for (r = 0; r < rows; r++)
        keep[r] = bycol[0]->i64[r] % 3 == 0;
    return SL_OK;
}

static sl_code
mask_upper(void *ctx, size_t col, const st_column *in, st_column *out)
{
    uint32_t r;
    sl_err err;

    (void)ctx;
    if (col != 1)
        return SL_EINTERNAL;
    for (r = 0; r < in->rows; r++) {
        char v[32];
        size_t n = in->off[r + 1] - in->off[r], k;
        st_field f = {v, n, 0};

        memcpy(v, in->str + in->off[r], n);
        for (k = 0; k < n; k++)
            v[k] = (char)toupper((unsigned char)v[k]);
        if (st_column_add(out, &f, &err) != SL_OK)
            return SL_EINTERNAL;
    }
    return SL_OK;
}

static void
read_through_a_view(void **state)
{
    store_fixture fx;
    sl_buf csv, out, want;
    json_t *m;
    sl_err err;
    uint32_t i, n = 2 * SL_ROWS_PER_GROUP + 500, kept = 0;
    const size_t proj[] = {1, 2}, extra[] = {0}, xonly[] = {1};
    const uint8_t masked[] = {0, 1};
    const st_type mtypes[] = {ST_FLOAT64, ST_STRING};
    st_view v = {extra, 1, keep_thirds, masked, mtypes, mask_upper, NULL};
    st_reader *r;
    int more;

    (void)state;
    fixture_up(&fx);
    sl_buf_init(&csv, 64 << 20);
    assert_int_equal(sl_buf_puts(&csv, "i,x,s\n"), SL_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(sl_buf_printf(&csv, "%u,%u.25,r%u\n", i, i, i), SL_OK);
    assert_int_equal(ingest(&fx, csv.data, csv.len, 1 << 16, NULL, 0, &m, &err), SL_OK);
    sl_buf_init(&out, 64 << 20);
    sl_buf_init(&want, 64 << 20);
    /* every row that passes, masked; offset and limit count rows that pass (here across
     * the first group boundary) */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t off = pass ? SL_ROWS_PER_GROUP / 3 - 2 : 0;
        int64_t lim = pass ? 5 : -1;
        uint64_t seen = 0, given = 0;

        sl_buf_reset(&out);
        sl_buf_reset(&want);
        assert_int_equal(
            st_reader_new(fx.s, fx.key, 11, 2, 1, m, proj, 2, off, lim, ST_OUT_CSV, &v, &r, &err),
            SL_OK);
        while ((more = st_reader_next(r, &out, &err)) > 0)
            ;
        if (more != 0)
            print_error("read: %s\n", err.msg);
        assert_int_equal(more, 0);
        st_reader_free(r);
        assert_int_equal(sl_buf_puts(&want, "x,s\n"), SL_OK);
        for (i = 0; i < n; i += 3) {
            if (seen++ < off || (lim >= 0 && given >= (uint64_t)lim))
                continue;
            given++;
            assert_int_equal(sl_buf_printf(&want, "%u.25,R%u\n", i, i), SL_OK);
        }
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, want.len);
    }
    /* npy counts the rows that pass first: its header holds them */
    for (i = 0; i < n; i += 3)
        kept++;
    sl_buf_reset(&out);
    assert_int_equal(
        st_reader_new(fx.s, fx.key, 11, 2, 1, m, xonly, 1, 10, -1, ST_OUT_NPY, &v, &r, &err),
        SL_OK);
    while ((more = st_reader_next(r, &out, &err)) > 0)
        ;
    assert_int_equal(more, 0);
    st_reader_free(r);
    {
        char shape[64];
        size_t h = (size_t)((unsigned char)out.data[8] | (unsigned char)out.data[9] << 8) + 10;
        double first;
        snprintf(shape, sizeof shape, "'shape': (%u, 1)", kept - 10);
        assert_non_null(strstr(out.data + 10, shape));
        assert_int_equal(out.len - h, (size_t)(kept - 10) * 8);
        memcpy(&first, out.data + h, 8);
        assert_true(first == 30.25);
    }
    /* a mask that fails fails the read; so does a filter */
    {
        const uint8_t all[] = {1, 1};
        st_view bad = {extra, 1, keep_thirds, all, mtypes, mask_upper, NULL};
        sl_buf_reset(&out);
        assert_int_equal(
            st_reader_new(fx.s, fx.key, 11, 2, 1, m, proj, 2, 0, -1, ST_OUT_CSV, &bad, &r, &err),
            SL_OK);
        while ((more = st_reader_next(r, &out, &err)) > 0)
            ;
        assert_int_equal(more, -1);
        st_reader_free(r);
    }
    sl_buf_free(&out);
    sl_buf_free(&want);
    sl_buf_free(&csv);
    json_decref(m);
    fixture_down(&fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csv_shapes),
        cmocka_unit_test(csv_refusals),
        cmocka_unit_test(csv_never_echoes_data),
        cmocka_unit_test(csv_limits),
        cmocka_unit_test(csv_caller_stops_and_parser_stays_stopped),
        cmocka_unit_test(int64_values),
        cmocka_unit_test(float64_values_round_trip),
        cmocka_unit_test(float64_formatting_matches_reference),
        cmocka_unit_test(float_text_chunks),
        cmocka_unit_test(bools_and_types),
        cmocka_unit_test(inference),
        cmocka_unit_test(columns_round_trip),
        cmocka_unit_test(columns_refuse_values_of_another_type),
        cmocka_unit_test(chunk_decoder_is_strict),
        cmocka_unit_test(pack_where_it_pays),
        cmocka_unit_test(crc32c_standard),
        cmocka_unit_test(fragments_survive_any_m_losses),
        cmocka_unit_test(fragments_damaged_are_set_aside),
        cmocka_unit_test(chunks_in_storage),
        cmocka_unit_test(chunks_with_and_without_direct_io),
        cmocka_unit_test(ingest_round_trip),
        cmocka_unit_test(ingest_groups_and_refusals),
        cmocka_unit_test(ingest_cuts_and_earliest_refusal),
        cmocka_unit_test(formats_exact),
        cmocka_unit_test(read_slices_and_projection),
        cmocka_unit_test(read_through_a_view),
    };

    if (cry_init() != SL_OK)
        return 1;

    return cmocka_run_group_tests(tests, NULL, NULL);
}

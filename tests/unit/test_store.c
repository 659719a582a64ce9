/*
 * tests/unit/test_store.c: the CSV parser and the typed values of store/. Every awkward
 * CSV shape (quotes, doubled quotes, commas and newlines in fields, CRLF, UTF-8, BOM,
 * nulls against empty strings, a last line without its break), fed whole and one byte
 * at a time; every refusal with its line and column and without the data; integers at
 * their limits; floats that must read back bit for bit; inference.
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
    assert_string_equal(text, "-0");
    st_format_float64(100.0, text);
    assert_string_equal(text, "100");
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
        cmocka_unit_test(bools_and_types),
        cmocka_unit_test(inference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

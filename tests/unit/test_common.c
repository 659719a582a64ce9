/*
 * tests/unit/test_common.c: the small parsers and containers of common/: RFC 3339 times,
 * UTF-8 validation and cleaning, names, integers, bounded buffers and the error words.
 * Epoch values were computed independently with python3's datetime (see each comment).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <cmocka.h>

#include "sl.h"

#define US 1000000LL

/* ---- times ---- */

static int64_t
parse_ok(const char *s)
{
    int64_t us = -42;

    if (sl_time_parse(s, &us) != SL_OK)
        fail_msg("sl_time_parse refused \"%s\"", s);
    return us;
}

static void
time_parse_known_epochs(void **state)
{
    (void)state;
    /* python3: int(datetime(2026,11,22,20,46,23,tzinfo=timezone.utc).timestamp()) */
    assert_int_equal(parse_ok("2026-11-22T20:46:23Z"), 1795380383LL * US);
    /* RFC 3339 allows lower-case t and z */
    assert_int_equal(parse_ok("2026-11-22t20:46:23z"), 1795380383LL * US);
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    /* python3: ... datetime(1969,12,31,23,59,59, utc) -> -1 */
    assert_int_equal(parse_ok("1969-12-31T23:59:59Z"), -1 * US);
    /* python3: datetime(1900,1,1, utc) -> -2208988800 */
    assert_int_equal(parse_ok("1900-01-01T00:00:00Z"), -2208988800LL * US);
    /* python3: datetime(9999,12,31,23,59,59, utc) -> 253402300799 */
    assert_int_equal(parse_ok("9999-12-31T23:59:59Z"), 253402300799LL * US);
}

static void
time_parse_offsets(void **state)
{
    (void)state;
    /* python3: datetime.fromisoformat('2026-11-22T22:46:23+02:00').timestamp() -> 1795380383 */
    assert_int_equal(parse_ok("2026-11-22T22:46:23+02:00"), 1795380383LL * US);
    /* python3: datetime(2026,11,22,20,46,23,tzinfo=timezone(-5h30m)) -> 1795400183 */
    assert_int_equal(parse_ok("2026-11-22T20:46:23-05:30"), 1795400183LL * US);
    /* an offset that crosses midnight and the month */
    assert_int_equal(parse_ok("2026-11-23T00:16:23+03:30"), 1795380383LL * US);
    assert_int_equal(parse_ok("2026-11-22T20:46:23+00:00"), 1795380383LL * US);
    assert_int_equal(parse_ok("2026-11-22T20:46:23-00:00"), 1795380383LL * US);
}

static void
time_parse_fractions(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2026-11-22T20:46:23.123456Z"), 1795380383LL * US + 123456);
    assert_int_equal(parse_ok("2026-11-22T20:46:23.5Z"), 1795380383LL * US + 500000);
    assert_int_equal(parse_ok("2026-11-22T20:46:23.000001Z"), 1795380383LL * US + 1);
    /* digits beyond microseconds are dropped (truncated, not rounded) */
    assert_int_equal(parse_ok("2026-11-22T20:46:23.1234569Z"), 1795380383LL * US + 123456);
    assert_int_equal(parse_ok("2026-11-22T22:46:23.25+02:00"), 1795380383LL * US + 250000);
    /* before the epoch the fraction still counts forward from the whole second */
    assert_int_equal(parse_ok("1969-12-31T23:59:59.75Z"), -1 * US + 750000);
}

static void
time_parse_calendar(void **state)
{
    int64_t us = 7;

    (void)state;
    /* python3: datetime(2024,2,29,12, utc) -> 1709208000; datetime(2000,2,29, utc) -> 951782400 */
    assert_int_equal(parse_ok("2024-02-29T12:00:00Z"), 1709208000LL * US);
    assert_int_equal(parse_ok("2000-02-29T00:00:00Z"), 951782400LL * US);
    assert_int_equal(sl_time_parse("2023-02-29T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("1900-02-29T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-02-30T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-04-31T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-11-31T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-00-10T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-13-10T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-01-00T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-01-32T00:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-01-01T24:00:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-01-01T23:60:00Z", &us), SL_EINVALID);
    assert_int_equal(sl_time_parse("2026-01-01T23:59:61Z", &us), SL_EINVALID);
    /* python3: datetime(2016,12,31,23,59,59, utc) -> 1483228799; a leap second maps onto it */
    assert_int_equal(parse_ok("2016-12-31T23:59:60Z"), 1483228799LL * US);
    assert_int_equal(us, 7); /* refusals never wrote the output */
}

static void
time_parse_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "garbage",
        "2026-11-22",
        "2026-11-22T20:46:23",       /* no zone */
        "2026-11-22T20:46:23ZZ",     /* trailing junk */
        "2026-11-22T20:46:23Z ",     /* trailing space */
        " 2026-11-22T20:46:23Z",     /* leading space */
        "2026-11-22 20:46:23Z",      /* space instead of T */
        "2026-11-22T20:46:23.Z",     /* empty fraction */
        "2026-11-22T20:46:23,5Z",    /* comma fraction */
        "2026-11-22T20:46:23+0200",  /* offset without colon */
        "2026-11-22T20:46:23+2:00",  /* short offset */
        "2026-11-22T20:46:23+02",    /* truncated offset */
        "2026-11-22T20:46:23+24:00", /* hour out of range */
        "2026-11-22T20:46:23+02:60", /* minute out of range */
        "2026-11-22T20:46:23+02:00Z",
        "26-11-22T20:46:23Z",
        "2026/11/22T20:46:23Z",
        "2026-11-22T20-46-23Z",
        "2026-1a-22T20:46:23Z",
        "+026-11-22T20:46:23Z",
        "2026-11-22T20:46:2Z",
        "2026-11-22T20:46:23.123456789012345678901234567890Z", /* longer than 40 */
    };
    size_t i;
    int64_t us;

    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        us = 99;
        if (sl_time_parse(bad[i], &us) != SL_EINVALID)
            fail_msg("sl_time_parse accepted \"%s\"", bad[i]);
        assert_int_equal(us, 99);
    }
}

static void
time_format(void **state)
{
    char out[SL_TS_LEN];

    (void)state;
    sl_time_format_s(1795380383, out);
    assert_string_equal(out, "2026-11-22T20:46:23Z");
    sl_time_format_s(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    sl_time_format_s(1709208000, out);
    assert_string_equal(out, "2024-02-29T12:00:00Z");
    sl_time_format_us(1795380383LL * US + 123456, out);
    assert_string_equal(out, "2026-11-22T20:46:23.123456Z");
    sl_time_format_us(1795380383LL * US + 1, out);
    assert_string_equal(out, "2026-11-22T20:46:23.000001Z");
    sl_time_format_us(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
    /* one microsecond before the epoch */
    sl_time_format_us(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
    sl_time_format_us(-1 * US, out);
    assert_string_equal(out, "1969-12-31T23:59:59.000000Z");
    sl_time_format_us(-1 * US + 750000, out);
    assert_string_equal(out, "1969-12-31T23:59:59.750000Z");
}

static void
time_round_trip(void **state)
{
    static const int64_t vals[] = {0,
                                   1,
                                   -1,
                                   999999,
                                   1795380383LL * US + 123456,
                                   951782400LL * US,
                                   -2208988800LL * US + 5,
                                   253402300799LL * US + 999999};
    char out[SL_TS_LEN];
    size_t i;
    int64_t back;

    (void)state;
    for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        sl_time_format_us(vals[i], out);
        assert_int_equal(strlen(out), 27);
        assert_int_equal(sl_time_parse(out, &back), SL_OK);
        assert_int_equal(back, vals[i]);
    }
}

/* ---- UTF-8 ---- */

static int
utf8(const char *s, size_t n)
{
    return sl_utf8_valid(s, n);
}

static void
utf8_valid_sequences(void **state)
{
    (void)state;
    assert_true(utf8("", 0));
    assert_true(utf8("A", 1));
    assert_true(utf8("\x7f", 1));
    assert_true(utf8("a\0b", 3));             /* NUL is a valid character; the length decides */
    assert_true(utf8("\xc2\x80", 2));         /* U+0080 */
    assert_true(utf8("\xc3\xa9", 2));         /* U+00E9 */
    assert_true(utf8("\xdf\xbf", 2));         /* U+07FF */
    assert_true(utf8("\xe0\xa0\x80", 3));     /* U+0800 */
    assert_true(utf8("\xe2\x82\xac", 3));     /* U+20AC */
    assert_true(utf8("\xed\x9f\xbf", 3));     /* U+D7FF, just below the surrogates */
    assert_true(utf8("\xee\x80\x80", 3));     /* U+E000, just above them */
    assert_true(utf8("\xef\xbf\xbf", 3));     /* U+FFFF */
    assert_true(utf8("\xf0\x90\x80\x80", 4)); /* U+10000 */
    assert_true(utf8("\xf0\x9f\x98\x80", 4)); /* U+1F600 */
    assert_true(utf8("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
    assert_true(utf8("z\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!", 11));
}

static void
utf8_invalid_sequences(void **state)
{
    (void)state;
    /* overlongs */
    assert_false(utf8("\xc0\x80", 2));
    assert_false(utf8("\xc1\xbf", 2));
    assert_false(utf8("\xe0\x80\x80", 3));
    assert_false(utf8("\xe0\x9f\xbf", 3));
    assert_false(utf8("\xf0\x80\x80\x80", 4));
    assert_false(utf8("\xf0\x8f\xbf\xbf", 4));
    /* UTF-16 surrogates */
    assert_false(utf8("\xed\xa0\x80", 3));
    assert_false(utf8("\xed\xbf\xbf", 3));
    assert_false(utf8("\xed\xa0\xbd\xed\xb8\x80", 6)); /* CESU-8 form of U+1F600 */
    /* above U+10FFFF and bytes that never occur */
    assert_false(utf8("\xf4\x90\x80\x80", 4));
    assert_false(utf8("\xf5\x80\x80\x80", 4));
    assert_false(utf8("\xf8\x88\x80\x80\x80", 5));
    assert_false(utf8("\xfe", 1));
    assert_false(utf8("\xff", 1));
    /* lone continuation bytes and truncated sequences */
    assert_false(utf8("\x80", 1));
    assert_false(utf8("a\xbf", 2));
    assert_false(utf8("\xc3", 1));
    assert_false(utf8("\xe2\x82", 2));
    assert_false(utf8("\xf0\x9f\x98", 3));
    /* truncated by the length even though the bytes continue in memory */
    assert_false(utf8("\xe2\x82\xac", 2));
    assert_false(utf8("\xf0\x9f\x98\x80", 3));
    /* a continuation byte that is not one */
    assert_false(utf8("\xc3\x28", 2));
    assert_false(utf8("\xe2\x28\xac", 3));
    assert_false(utf8("\xf0\x9f\x28\x80", 4));
    /* one bad byte at the end of good text */
    assert_false(utf8("hello\xc3\xa9\xff", 8));
}

static void
text_clean(void **state)
{
    char out[64];

    (void)state;
    sl_text_clean(out, "plain text", 10, 32);
    assert_string_equal(out, "plain text");
    /* control characters (C0 and DEL) become '?' */
    sl_text_clean(out,
                  "a\x01"
                  "b\x7f"
                  "c\nd\te\x1b",
                  10, 32);
    assert_string_equal(out, "a?b?c?d?e?");
    /* every invalid byte becomes one '?', valid multibyte text is kept */
    sl_text_clean(out, "\xff\xc3\xa9\xe2\x82", 5, 32);
    assert_string_equal(out, "?\xc3\xa9??");
    sl_text_clean(out, "\xed\xa0\x80", 3, 32);
    assert_string_equal(out, "???");
    /* NUL inside the given length is a control character too */
    sl_text_clean(out, "a\0b", 3, 32);
    assert_string_equal(out, "a?b");
    /* cut at max, and never inside a character */
    sl_text_clean(out, "abcdef", 6, 4);
    assert_string_equal(out, "abcd");
    sl_text_clean(out, "h\xc3\xa9llo", 6, 2);
    assert_string_equal(out, "h");
    sl_text_clean(out, "h\xc3\xa9llo", 6, 3);
    assert_string_equal(out, "h\xc3\xa9");
    sl_text_clean(out, "ab\xf0\x9f\x98\x80", 6, 5);
    assert_string_equal(out, "ab");
    sl_text_clean(out, "abc", 3, 0);
    assert_string_equal(out, "");
    /* the source length bounds the read, not a NUL */
    sl_text_clean(out, "abcdef", 3, 32);
    assert_string_equal(out, "abc");
}

static void
text_clean_bounds_dst(void **state)
{
    /* dst is exactly max+1 bytes on the heap so that ASan sees any overrun */
    const char src[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a";
    char *dst = malloc(5);

    (void)state;
    assert_non_null(dst);
    sl_text_clean(dst, src, sizeof src - 1, 4);
    assert_string_equal(dst, "????");
    free(dst);
}

/* ---- names and integers ---- */

static void
name_valid(void **state)
{
    char name[80];

    (void)state;
    assert_true(sl_name_valid("a"));
    assert_true(sl_name_valid("alice"));
    assert_true(sl_name_valid("a0_.-z"));
    assert_true(sl_name_valid("svc.train-01"));
    /* 63 characters: the longest name */
    memset(name, 'x', 63);
    name[0] = 'a';
    name[63] = '\0';
    assert_true(sl_name_valid(name));
    /* 64 characters: one too many */
    name[63] = 'x';
    name[64] = '\0';
    assert_false(sl_name_valid(name));
    memset(name, 'b', 79);
    name[79] = '\0';
    assert_false(sl_name_valid(name));

    assert_false(sl_name_valid(NULL));
    assert_false(sl_name_valid(""));
    assert_false(sl_name_valid("1abc"));
    assert_false(sl_name_valid("_abc"));
    assert_false(sl_name_valid(".abc"));
    assert_false(sl_name_valid("-abc"));
    assert_false(sl_name_valid("Alice"));
    assert_false(sl_name_valid("aLice"));
    assert_false(sl_name_valid("../x"));
    assert_false(sl_name_valid("a/b"));
    assert_false(sl_name_valid("a b"));
    assert_false(sl_name_valid("a\n"));
    assert_false(sl_name_valid("a:b"));
    assert_false(sl_name_valid("caf\xc3\xa9"));
    assert_false(sl_name_valid("a\xff"));
}

static void
parse_i64(void **state)
{
    int64_t v = 0;

    (void)state;
    assert_int_equal(sl_parse_i64("0", 0, 10, &v), SL_OK);
    assert_int_equal(v, 0);
    assert_int_equal(sl_parse_i64("10", 0, 10, &v), SL_OK);
    assert_int_equal(v, 10);
    assert_int_equal(sl_parse_i64("-5", -5, 5, &v), SL_OK);
    assert_int_equal(v, -5);
    assert_int_equal(sl_parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v), SL_OK);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(sl_parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), SL_OK);
    assert_true(v == INT64_MIN);

    v = 77;
    /* bounds are inclusive and enforced */
    assert_int_equal(sl_parse_i64("11", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("-1", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("-6", -5, 5, &v), SL_EINVALID);
    /* overflow of int64 itself */
    assert_int_equal(sl_parse_i64("9223372036854775808", INT64_MIN, INT64_MAX, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("-9223372036854775809", INT64_MIN, INT64_MAX, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("99999999999999999999999", INT64_MIN, INT64_MAX, &v),
                     SL_EINVALID);
    /* the whole string, decimal digits only */
    assert_int_equal(sl_parse_i64(NULL, 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("-", -10, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("+5", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64(" 5", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("5 ", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("5x", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("0x5", 0, 10, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("1e1", 0, 100, &v), SL_EINVALID);
    assert_int_equal(sl_parse_i64("1.0", 0, 10, &v), SL_EINVALID);
    assert_int_equal(v, 77);
}

/* ---- bounded buffers ---- */

static void
buf_max_enforced(void **state)
{
    sl_buf b;

    (void)state;
    sl_buf_init(&b, 8);
    assert_int_equal(sl_buf_append(&b, "abcd", 4), SL_OK);
    assert_int_equal(sl_buf_puts(&b, "efgh"), SL_OK);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    /* one byte past max fails and changes nothing */
    assert_int_equal(sl_buf_append(&b, "i", 1), SL_ETOOLARGE);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    assert_int_equal(sl_buf_puts(&b, "i"), SL_ETOOLARGE);
    assert_int_equal(sl_buf_printf(&b, "%d", 1), SL_ETOOLARGE);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    /* a length that would overflow size_t is refused, not wrapped */
    assert_int_equal(sl_buf_append(&b, "x", SIZE_MAX), SL_ETOOLARGE);
    assert_int_equal(sl_buf_append(&b, "x", SIZE_MAX - 4), SL_ETOOLARGE);
    assert_int_equal(b.len, 8);
    /* appending nothing at the limit is fine */
    assert_int_equal(sl_buf_append(&b, "", 0), SL_OK);
    assert_int_equal(b.len, 8);
    sl_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(sl_buf_printf(&b, "%s-%d", "ab", 12345), SL_OK);
    assert_string_equal(b.data, "ab-12345");
    sl_buf_free(&b);
    assert_null(b.data);
    sl_buf_free(NULL);
}

static void
buf_grows_to_max(void **state)
{
    char chunk[100];
    sl_buf b;
    size_t i;

    (void)state;
    memset(chunk, 'q', sizeof chunk);
    sl_buf_init(&b, 1000);
    for (i = 0; i < 10; i++)
        assert_int_equal(sl_buf_append(&b, chunk, sizeof chunk), SL_OK);
    assert_int_equal(b.len, 1000);
    assert_int_equal(strlen(b.data), 1000);
    assert_true(b.cap <= 1001);
    assert_int_equal(sl_buf_append(&b, chunk, 1), SL_ETOOLARGE);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[999], 'q');
    assert_int_equal(b.data[1000], '\0');
    sl_buf_free(&b);

    /* printf that would cross max in the middle of growth */
    sl_buf_init(&b, 300);
    assert_int_equal(sl_buf_printf(&b, "%0250d", 7), SL_OK);
    assert_int_equal(b.len, 250);
    assert_int_equal(sl_buf_printf(&b, "%051d", 7), SL_ETOOLARGE);
    assert_int_equal(b.len, 250);
    assert_int_equal(b.data[250], '\0');
    assert_int_equal(sl_buf_printf(&b, "%050d", 7), SL_OK);
    assert_int_equal(b.len, 300);
    sl_buf_free(&b);
}

static void
buf_take(void **state)
{
    sl_buf b;
    size_t n = 99;
    char *p;

    (void)state;
    sl_buf_init(&b, 64);
    p = sl_buf_take(&b, &n);
    assert_string_equal(p, "");
    assert_int_equal(n, 0);
    free(p);
    assert_int_equal(sl_buf_puts(&b, "hello"), SL_OK);
    p = sl_buf_take(&b, &n);
    assert_string_equal(p, "hello");
    assert_int_equal(n, 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(p);
    /* usable again after take, with the same max */
    assert_int_equal(sl_buf_puts(&b, "again"), SL_OK);
    assert_string_equal(b.data, "again");
    sl_buf_free(&b);
}

/* ---- error words and statuses ---- */

static void
code_mapping(void **state)
{
    /* The table of docs API.md "Errors are JSON, always". SL_EIO is a local failure: 500. */
    static const struct {
        sl_code code;
        const char *word;
        int status;
    } t[] = {
        {SL_EBADREQ, "bad_request", 400},
        {SL_EAUTH, "unauthenticated", 401},
        {SL_EDENIED, "forbidden", 403},
        {SL_ENOTFOUND, "not_found", 404},
        {SL_EMETHOD, "method_not_allowed", 405},
        {SL_ECONFLICT, "conflict", 409},
        {SL_ETOOLARGE, "too_large", 413},
        {SL_EMEDIA, "unsupported_media_type", 415},
        {SL_EINVALID, "invalid", 422},
        {SL_ELOCKED, "locked", 423},
        {SL_ERATE, "rate_limited", 429},
        {SL_EHEADERS, "headers_too_large", 431},
        {SL_EINTERNAL, "internal", 500},
        {SL_EUNAVAIL, "unavailable", 503},
        {SL_EIO, "internal", 500},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_string_equal(sl_code_word(t[i].code), t[i].word);
        assert_int_equal(sl_code_status(t[i].code), t[i].status);
    }
    assert_int_equal(sl_code_status(SL_OK), 200);
    /* a code outside the enum never reads past the table */
    assert_string_equal(sl_code_word((sl_code)1000), "internal");
    assert_int_equal(sl_code_status((sl_code)1000), 500);
    assert_string_equal(sl_code_word((sl_code)-1), "internal");
    assert_int_equal(sl_code_status((sl_code)-1), 500);
}

static void
err_record(void **state)
{
    char longer[400];
    sl_err err;

    (void)state;
    memset(longer, 'm', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    sl_err_clear(&err);
    assert_int_equal(err.code, SL_OK);
    assert_int_equal(sl_err_set(&err, SL_ENOTFOUND, "dataset \"%s\" not found", "x"), SL_ENOTFOUND);
    sl_err_detail(&err, "row %d", 3);
    assert_int_equal(err.code, SL_ENOTFOUND);
    assert_string_equal(err.msg, "dataset \"x\" not found");
    assert_string_equal(err.detail, "row 3");
    /* setting again clears the old detail */
    assert_int_equal(sl_err_set(&err, SL_EINVALID, "%s", longer), SL_EINVALID);
    assert_string_equal(err.detail, "");
    assert_int_equal(strlen(err.msg), sizeof err.msg - 1);
    sl_err_detail(&err, "%s", longer);
    assert_int_equal(strlen(err.detail), sizeof err.detail - 1);
    /* NULL records are allowed */
    assert_int_equal(sl_err_set(NULL, SL_EAUTH, "x"), SL_EAUTH);
    sl_err_detail(NULL, "x");
    sl_err_clear(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(time_parse_known_epochs),
        cmocka_unit_test(time_parse_offsets),
        cmocka_unit_test(time_parse_fractions),
        cmocka_unit_test(time_parse_calendar),
        cmocka_unit_test(time_parse_garbage),
        cmocka_unit_test(time_format),
        cmocka_unit_test(time_round_trip),
        cmocka_unit_test(utf8_valid_sequences),
        cmocka_unit_test(utf8_invalid_sequences),
        cmocka_unit_test(text_clean),
        cmocka_unit_test(text_clean_bounds_dst),
        cmocka_unit_test(name_valid),
        cmocka_unit_test(parse_i64),
        cmocka_unit_test(buf_max_enforced),
        cmocka_unit_test(buf_grows_to_max),
        cmocka_unit_test(buf_take),
        cmocka_unit_test(code_mapping),
        cmocka_unit_test(err_record),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

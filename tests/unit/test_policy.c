/*
 * tests/unit/test_policy.c: row filters (policy/pol_filter.c). The grammar and its
 * precedence; every operator on every type, literal on either side, column against
 * column; three-valued logic with nulls; exact comparisons of int64 and float64 at the
 * edges (2^53 + 1, INT64_MIN and INT64_MAX against doubles, -0.0); strings with escapes,
 * UTF-8 and backquoted names; in-lists; every refusal with its message and position and
 * without the literal; the limits; and random filters over a 65,536-row group checked
 * against a per-row reference that compares through long double, exact on x86-64.
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
#include <float.h>
#include <math.h>
#include <pthread.h>

#include "pol.h"

/* ---- small tables ---- */

#define MAXR 64

typedef struct {
    uint8_t nulls[MAXR];
    int64_t i64[MAXR];
    double f64[MAXR];
    uint8_t b[MAXR];
    uint32_t off[MAXR + 1];
    char str[4096];
} column;

/* nulls: a string with 'n' at each null row (NULL: none) */
static void
set_nulls(column *c, size_t n, const char *nulls)
{
    size_t r;

    for (r = 0; r < n; r++)
        c->nulls[r] = nulls != NULL && nulls[r] == 'n';
}

static pol_colview
col_i64(column *c, size_t n, const int64_t *v, const char *nulls)
{
    size_t r;

    set_nulls(c, n, nulls);
    for (r = 0; r < n; r++)
        c->i64[r] = c->nulls[r] ? 0 : v[r];
    return (pol_colview){.type = POL_INT64, .nulls = c->nulls, .i64 = c->i64};
}

static pol_colview
col_f64(column *c, size_t n, const double *v, const char *nulls)
{
    size_t r;

    set_nulls(c, n, nulls);
    for (r = 0; r < n; r++)
        c->f64[r] = c->nulls[r] ? 0.0 : v[r];
    return (pol_colview){.type = POL_FLOAT64, .nulls = c->nulls, .f64 = c->f64};
}

/* v: 'T', 'F' or 'n' (null) per row */
static pol_colview
col_bool(column *c, size_t n, const char *v)
{
    size_t r;

    set_nulls(c, n, v);
    for (r = 0; r < n; r++)
        c->b[r] = v[r] == 'T';
    return (pol_colview){.type = POL_BOOL, .nulls = c->nulls, .b = c->b};
}

/* v: NULL for a null row */
static pol_colview
col_str(column *c, size_t n, const char *const *v)
{
    size_t r;
    uint32_t o = 0;

    for (r = 0; r < n; r++) {
        size_t k = v[r] != NULL ? strlen(v[r]) : 0;
        c->nulls[r] = v[r] == NULL;
        c->off[r] = o;
        memcpy(c->str + o, v[r] != NULL ? v[r] : "", k);
        o += (uint32_t)k;
    }
    c->off[n] = o;
    return (pol_colview){.type = POL_STRING, .nulls = c->nulls, .off = c->off, .str = c->str};
}

/* Compiles text (must succeed) and evaluates it: "1" for each row kept, "0" otherwise;
 * the same for the rows where it is FALSE into fls (when not NULL). */
static const char *
eval_text(const char *text, const pol_column *schema, size_t ncols, const pol_colview *v,
          size_t rows, char *out, char *fls)
{
    pol_filter *f = NULL;
    uint8_t keep[MAXR], no[MAXR];
    sl_err err;
    size_t r;
    sl_code rc;

    rc = pol_filter_compile(text, strlen(text), schema, ncols, &f, &err);
    if (rc != SL_OK)
        fail_msg("%s: refused: %s", text, err.msg);
    memset(keep, 0xee, sizeof keep);
    memset(no, 0xee, sizeof no);
    assert_int_equal(pol_filter_eval(f, v, (uint32_t)rows, keep), SL_OK);
    assert_int_equal(pol_filter_eval_false(f, v, (uint32_t)rows, no), SL_OK);
    for (r = 0; r < rows; r++) {
        assert_true(keep[r] <= 1 && no[r] <= 1 && !(keep[r] && no[r]));
        out[r] = (char)('0' + keep[r]);
        if (fls != NULL)
            fls[r] = (char)('0' + no[r]);
    }
    out[rows] = '\0';
    if (fls != NULL)
        fls[rows] = '\0';
    pol_filter_free(f);
    return out;
}

static const char *
keep_text(const char *text, const pol_column *schema, size_t ncols, const pol_colview *v,
          size_t rows, char *out)
{
    return eval_text(text, schema, ncols, v, rows, out, NULL);
}

/* The three-valued outcome per row: T, F or U, from pol_filter_eval and
 * pol_filter_eval_false, which must agree with what `not (text)` keeps. */
static const char *
tvl_text(const char *text, const pol_column *schema, size_t ncols, const pol_colview *v,
         size_t rows, char *out)
{
    char pos[MAXR + 1], neg[MAXR + 1], negated[MAXR + 1], wrapped[512];
    size_t r;

    snprintf(wrapped, sizeof wrapped, "not (%s)", text);
    eval_text(text, schema, ncols, v, rows, pos, neg);
    keep_text(wrapped, schema, ncols, v, rows, negated);
    assert_string_equal(neg, negated);
    for (r = 0; r < rows; r++)
        out[r] = pos[r] == '1' ? 'T' : neg[r] == '1' ? 'F' : 'U';
    out[rows] = '\0';
    return out;
}

/* ---- the fixture most tests use ---- */

#define ROWS 8

static const pol_column people[] = {
    {"age", POL_INT64, NULL, 0},    {"score", POL_FLOAT64, NULL, 0},
    {"consent", POL_BOOL, NULL, 0}, {"region", POL_STRING, NULL, 0},
    {"name", POL_STRING, NULL, 0},  {"in", POL_STRING, NULL, 0},
    {"my col", POL_INT64, NULL, 0}, {"a`b", POL_BOOL, NULL, 0},
};
#define NPEOPLE (sizeof people / sizeof people[0])

static column people_cols[NPEOPLE];
static pol_colview people_v[NPEOPLE];

static void
people_setup(void)
{
    static const int64_t age[ROWS] = {30, 17, 0, 45, 30, -5, 0, INT64_MAX};
    static const double score[ROWS] = {1.5, -0.0, 2.0, 0, 30.0, 0.1, 0.0, 1e300};
    static const char *const region[ROWS] = {"EU", "US", "EU", "APAC", NULL, "E", "EU ", "eu"};
    static const char *const name[ROWS] = {"Ann", "Bob", "",           "Zo\xc3\xab",
                                           "ann", NULL,  "\xc3\x89va", "\xf0\x9f\x98\x80"};
    static const char *const in[ROWS] = {"x", "y", "x", NULL, "", "x", "z", "y"};
    static const int64_t mycol[ROWS] = {30, 20, 5, 0, 31, -5, 0, INT64_MIN};

    people_v[0] = col_i64(&people_cols[0], ROWS, age, "..n.....");
    people_v[1] = col_f64(&people_cols[1], ROWS, score, "...n....");
    people_v[2] = col_bool(&people_cols[2], ROWS, "TFTnTFTF");
    people_v[3] = col_str(&people_cols[3], ROWS, region);
    people_v[4] = col_str(&people_cols[4], ROWS, name);
    people_v[5] = col_str(&people_cols[5], ROWS, in);
    people_v[6] = col_i64(&people_cols[6], ROWS, mycol, "...n....");
    people_v[7] = col_bool(&people_cols[7], ROWS, "TTFTnFTT");
}

#define EXPECT_KEEP(text, want)                                 \
    do {                                                        \
        char got_[MAXR + 1];                                    \
        keep_text(text, people, NPEOPLE, people_v, ROWS, got_); \
        if (strcmp(got_, want) != 0)                            \
            fail_msg("%s: kept %s, want %s", text, got_, want); \
    } while (0)

static void
operators_on_each_type(void **state)
{
    (void)state;
    people_setup();
    /* int64: 30 17 null 45 30 -5 0 MAX */
    EXPECT_KEEP("age == 30", "10001000");
    EXPECT_KEEP("age != 30", "01010111");
    EXPECT_KEEP("age < 30", "01000110");
    EXPECT_KEEP("age <= 30", "11001110");
    EXPECT_KEEP("age > 30", "00010001");
    EXPECT_KEEP("age >= 30", "10011001");
    /* the literal on the left: the operator read the other way */
    EXPECT_KEEP("30 > age", "01000110");
    EXPECT_KEEP("30 <= age", "10011001");
    EXPECT_KEEP("30 == age", "10001000");
    EXPECT_KEEP("-5 == age", "00000100");
    /* float64: 1.5 -0.0 2.0 null 30.0 0.1 0.0 1e300 */
    EXPECT_KEEP("score == 0", "01000010");
    EXPECT_KEEP("score == -0.0", "01000010");
    EXPECT_KEEP("score != 0", "10101101");
    EXPECT_KEEP("score < 1.5", "01000110");
    EXPECT_KEEP("score <= 1.5", "11000110");
    EXPECT_KEEP("score > 1.5", "00101001");
    EXPECT_KEEP("score >= 2", "00101001");
    EXPECT_KEEP("score == 0.1", "00000100");
    EXPECT_KEEP("score == 1e300", "00000001");
    EXPECT_KEEP("1.5 >= score", "11000110");
    /* bool: T F T null T F T F */
    EXPECT_KEEP("consent == true", "10101010");
    EXPECT_KEEP("consent != true", "01000101");
    EXPECT_KEEP("consent == false", "01000101");
    EXPECT_KEEP("consent != false", "10101010");
    EXPECT_KEEP("false == consent", "01000101");
    /* strings in byte order, a prefix first: EU US EU APAC null E "EU " eu */
    EXPECT_KEEP("region == \"EU\"", "10100000");
    EXPECT_KEEP("region != \"EU\"", "01010111");
    EXPECT_KEEP("region < \"EU\"", "00010100");
    EXPECT_KEEP("region <= \"EU\"", "10110100");
    EXPECT_KEEP("region > \"EU\"", "01000011");
    EXPECT_KEEP("region >= \"EU\"", "11100011");
    EXPECT_KEEP("\"EU\" < region", "01000011");
    /* UTF-8 byte order is code point order: Ann Bob "" Zoë ann null Éva 😀 */
    EXPECT_KEEP("name > \"Z\"", "00011011");
    EXPECT_KEEP("name > \"\\u00ff\"", "00000001");
    EXPECT_KEEP("name >= \"\\uffff\"", "00000001");
    EXPECT_KEEP("name == \"\"", "00100000");
    EXPECT_KEEP("name < \"\"", "00000000");
    EXPECT_KEEP("name == \"Zo\\u00eb\"", "00010000");
    EXPECT_KEEP("name == \"Zo\xc3\xab\"", "00010000");
    EXPECT_KEEP("name == \"\\ud83d\\ude00\"", "00000001");
    EXPECT_KEEP("name == \"\xf0\x9f\x98\x80\"", "00000001");
    EXPECT_KEEP("name == \"\\u00c9va\" or name == \"\\u00C9va\"", "00000010");
}

static void
columns_against_columns(void **state)
{
    (void)state;
    people_setup();
    /* int64 and int64: age 30 17 null 45 30 -5 0 MAX; `my col` 30 20 5 null 31 -5 0 MIN */
    EXPECT_KEEP("age == `my col`", "10000110");
    EXPECT_KEEP("age != `my col`", "01001001");
    EXPECT_KEEP("age < `my col`", "01001000");
    EXPECT_KEEP("age <= `my col`", "11001110");
    EXPECT_KEEP("age > `my col`", "00000001");
    EXPECT_KEEP("age >= `my col`", "10000111");
    /* int64 and float64: score 1.5 -0.0 2.0 null 30.0 0.1 0.0 1e300 */
    EXPECT_KEEP("age == score", "00001010");
    EXPECT_KEEP("age < score", "00000101");
    EXPECT_KEEP("age > score", "11000000");
    EXPECT_KEEP("score > age", "00000101");
    EXPECT_KEEP("score <= age", "11001010");
    EXPECT_KEEP("score == score", "11101111");
    EXPECT_KEEP("score < score", "00000000");
    /* strings: region EU US EU APAC null E "EU " eu; name Ann Bob "" Zoë ann null Éva 😀 */
    EXPECT_KEEP("region == name", "00000000");
    EXPECT_KEEP("region < name", "00010011");
    EXPECT_KEEP("region > name", "11100000");
    EXPECT_KEEP("region == region", "11110111");
    /* bools: consent T F T null T F T F; a`b T T F T null F T T */
    EXPECT_KEEP("consent == `a``b`", "10000110");
    EXPECT_KEEP("consent != `a``b`", "01100001");
    /* backquotes: a keyword as a name, a space, a doubled backquote */
    EXPECT_KEEP("`in` == \"x\"", "10100100");
    EXPECT_KEEP("`my col` >= 20", "11001000");
    EXPECT_KEEP("`a``b` == true and `age` > 0", "11010001");
}

static void
in_lists(void **state)
{
    (void)state;
    people_setup();
    EXPECT_KEEP("age in [30]", "10001000");
    EXPECT_KEEP("age in [30, 45, 45, 1e300, 30.0, 30.5, 9223372036854775808]", "10011000");
    EXPECT_KEEP("age not in [30, 45]", "01000111");
    EXPECT_KEEP("age not in [0.5]", "11011111"); /* equal to no int64: every known row */
    EXPECT_KEEP("age in [9223372036854775807, -5, 17]", "01000101");
    EXPECT_KEEP("score in [0, 2]", "01100010");
    EXPECT_KEEP("score in [-0.0]", "01000010");
    EXPECT_KEEP("score in [0.1, 9007199254740993]", "00000100");
    EXPECT_KEEP("score not in [0.1, 1.5]", "01101011");
    EXPECT_KEEP("region in [\"EU\", \"eu\", \"EU\"]", "10100001");
    EXPECT_KEEP("region not in [\"EU\"]", "01010111");
    EXPECT_KEEP("region in [\"\"]", "00000000");
    EXPECT_KEEP("name in [\"\", \"Zo\\u00eb\", \"\\ud83d\\ude00\"]", "00110001");
    EXPECT_KEEP("consent in [true]", "10101010");
    EXPECT_KEEP("consent in [true, false]", "11101111");
    EXPECT_KEEP("consent not in [false, false]", "10101010");
    EXPECT_KEEP("consent not in [true, false]", "00000000");
    /* long lists: searched, not scanned */
    {
        char text[8192];
        size_t o = 0;
        int k;
        o += (size_t)snprintf(text + o, sizeof text - o, "age in [");
        for (k = 1000; k > -1000; k -= 3)
            o += (size_t)snprintf(text + o, sizeof text - o, "%d, ", k);
        snprintf(text + o, sizeof text - o, "9223372036854775807]");
        /* the items are 1 mod 3: of the ages only -5, and MAX listed on its own */
        EXPECT_KEEP(text, "00000101");
        o = 0;
        o += (size_t)snprintf(text + o, sizeof text - o, "region in [");
        for (k = 0; k < 300; k++)
            o += (size_t)snprintf(text + o, sizeof text - o, "\"r%d\", ", k);
        snprintf(text + o, sizeof text - o, "\"EU \", \"APAC\"]");
        EXPECT_KEEP(text, "00010010");
        o = 0;
        o += (size_t)snprintf(text + o, sizeof text - o, "score in [");
        for (k = 0; k < 300; k++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%d.25, ", k);
        snprintf(text + o, sizeof text - o, "1e300, 0.1, 0]");
        EXPECT_KEEP(text, "01000111");
    }
}

static void
null_tests(void **state)
{
    (void)state;
    people_setup();
    EXPECT_KEEP("age == null", "00100000");
    EXPECT_KEEP("age != null", "11011111");
    EXPECT_KEEP("null == region", "00001000");
    EXPECT_KEEP("null != region", "11110111");
    EXPECT_KEEP("not age == null", "11011111");
    EXPECT_KEEP("consent == null or consent == true", "10111010");
    /* a comparison with a null value is UNKNOWN: neither it nor its negation passes */
    EXPECT_KEEP("not (age == 30)", "01010111");
    EXPECT_KEEP("not (age != 30)", "10001000");
    EXPECT_KEEP("age == 30 or age != 30", "11011111");
}

/* ---- three-valued logic ---- */

enum { F3 = 0, T3 = 1, U3 = 2 };

static int
and3(int a, int b)
{
    if (a == F3 || b == F3)
        return F3;
    return a == T3 && b == T3 ? T3 : U3;
}

static int
or3(int a, int b)
{
    if (a == T3 || b == T3)
        return T3;
    return a == F3 && b == F3 ? F3 : U3;
}

static int
not3(int a)
{
    return a == U3 ? U3 : !a;
}

static const pol_column abc[] = {
    {"a", POL_BOOL, NULL, 0}, {"b", POL_BOOL, NULL, 0}, {"c", POL_BOOL, NULL, 0}};

static void
kleene_truth_tables(void **state)
{
    static const char *const name = "FTU"; /* by F3, T3, U3 */
    column cols[3];
    pol_colview v[3];
    char a[28], b[28], c[28], got[MAXR + 1], want[28];
    int r;

    (void)state;
    /* every combination of three values: a varies slowest */
    for (r = 0; r < 27; r++) {
        a[r] = "TFn"[r / 9];
        b[r] = "TFn"[r / 3 % 3];
        c[r] = "TFn"[r % 3];
    }
    a[27] = b[27] = c[27] = '\0';
    v[0] = col_bool(&cols[0], 27, a);
    v[1] = col_bool(&cols[1], 27, b);
    v[2] = col_bool(&cols[2], 27, c);
#define TV(x) ((x) == 'T' ? T3 : (x) == 'F' ? F3 : U3)
#define CHECK_TVL(text, expr)                             \
    do {                                                  \
        for (r = 0; r < 27; r++) {                        \
            int A = TV(a[r]), B = TV(b[r]), C = TV(c[r]); \
            (void)A;                                      \
            (void)B;                                      \
            (void)C;                                      \
            want[r] = name[expr];                         \
        }                                                 \
        want[27] = '\0';                                  \
        tvl_text(text, abc, 3, v, 27, got);               \
        if (strcmp(got, want) != 0)                       \
            fail_msg("%s: %s, want %s", text, got, want); \
    } while (0)

    CHECK_TVL("a == true", A);
    CHECK_TVL("a != true", not3(A));
    CHECK_TVL("a == false", not3(A));
    CHECK_TVL("a == null", a[r] == 'n' ? T3 : F3);
    CHECK_TVL("a != null", a[r] == 'n' ? F3 : T3);
    CHECK_TVL("a in [true]", A);
    CHECK_TVL("a not in [true]", not3(A));
    CHECK_TVL("a == b", A == U3 || B == U3 ? U3 : A == B ? T3 : F3);
    CHECK_TVL("not a == true", not3(A));
    CHECK_TVL("not not a == true", A);
    CHECK_TVL("not not not a == true", not3(A));
    CHECK_TVL("a == true and b == true", and3(A, B));
    CHECK_TVL("a == true or b == true", or3(A, B));
    CHECK_TVL("not (a == true and b == true)", not3(and3(A, B)));
    CHECK_TVL("not (a == true or b == true)", not3(or3(A, B)));
    /* precedence: or < and < not < comparison */
    CHECK_TVL("a == true or b == true and not c == true", or3(A, and3(B, not3(C))));
    CHECK_TVL("(a == true or b == true) and not c == true", and3(or3(A, B), not3(C)));
    CHECK_TVL("a == true and b == true or c == true", or3(and3(A, B), C));
    CHECK_TVL("a == true and (b == true or c == true)", and3(A, or3(B, C)));
    CHECK_TVL("not a == true or b == true", or3(not3(A), B));
    CHECK_TVL("not (a == true or b == true) and c == true", and3(not3(or3(A, B)), C));
    CHECK_TVL("a == true and b == true and c == true", and3(and3(A, B), C));
    CHECK_TVL("a == true or b == true or c == true", or3(or3(A, B), C));
    CHECK_TVL("a == true and not (b == true and not (c == true or a == false))",
              and3(A, not3(and3(B, not3(or3(C, not3(A)))))));
    CHECK_TVL("((a == true)) or ((not ((b == false))))", or3(A, B));
    CHECK_TVL("a == null or b == null and c != null",
              or3(a[r] == 'n' ? T3 : F3, and3(b[r] == 'n' ? T3 : F3, c[r] == 'n' ? F3 : T3)));
#undef CHECK_TVL
#undef TV
}

/* ---- exact numbers ---- */

static const pol_column nums[] = {{"i", POL_INT64, NULL, 0}, {"f", POL_FLOAT64, NULL, 0}};

static void
exact_numbers(void **state)
{
    static const int64_t iv[8] = {9007199254740993LL,  9007199254740992LL, INT64_MAX, INT64_MIN, 0,
                                  -9007199254740993LL, INT64_MAX - 1,      1};
    static const double fv[8] = {9007199254740992.0,
                                 9007199254740994.0,
                                 0x1p63,
                                 -0x1p63,
                                 -0.0,
                                 -9007199254740992.0,
                                 1e300,
                                 0.5};
    static const struct {
        const char *text, *want;
    } cases[] = {
        /* int64 against doubles, by value */
        {"i > 9007199254740992.0", "10100010"},
        {"i == 9007199254740992.0", "01000000"},
        {"i == 9007199254740993", "10000000"},
        {"i >= 9007199254740993", "10100010"},
        {"i < 9223372036854775808.0", "11111111"},
        {"i == 9223372036854775808.0", "00000000"},
        {"i == 9223372036854775807", "00100000"},
        {"i >= 9223372036854775807", "00100000"},
        {"i < 9223372036854775807", "11011111"},
        {"i == 9223372036854775808", "00000000"},
        {"i < 9223372036854775808", "11111111"},
        {"i < 99999999999999999999999999999", "11111111"},
        {"i == -9223372036854775808.0", "00010000"},
        {"i == -9223372036854775808", "00010000"},
        {"i > -9223372036854775809", "11111111"},
        {"i == -9223372036854775809", "00000000"}, /* an integer, exact: not INT64_MIN */
        {"i <= -9223372036854775809", "00000000"},
        /* with a fraction, the literal is its nearest double: this one is -2^63 */
        {"i == -9223372036854775808.5", "00010000"},
        {"i < 1e300", "11111111"},
        {"i > -1e300", "11111111"},
        {"i == 1e300", "00000000"},
        {"i == -0.0", "00001000"},
        {"i == 0e5", "00001000"},
        {"i > 0.5", "11100011"},
        {"i >= 0.5", "11100011"},
        {"i < 0.5", "00011100"},
        {"i <= -0.5", "00010100"},
        {"i >= -0.5", "11101011"},
        {"i == 1.0", "00000001"},
        {"i == 1e0", "00000001"},
        {"i == 10e-1", "00000001"},
        {"i == 0.5", "00000000"},
        {"i != 0.5", "11111111"},
        {"i in [9007199254740992.0, 1.0, 0.5, 1e300]", "01000001"},
        /* float64 against integers, by value */
        {"f == 9007199254740993", "00000000"},
        {"f != 9007199254740993", "11111111"},
        {"f < 9007199254740993", "10011101"},
        {"f <= 9007199254740993", "10011101"},
        {"f > 9007199254740993", "01100010"},
        {"f >= 9007199254740993", "01100010"},
        {"f == 9007199254740992", "10000000"},
        {"f > -9007199254740993", "11101111"},
        {"f == 9223372036854775807", "00000000"},
        {"f > 9223372036854775807", "00100010"},
        {"f == 9223372036854775808", "00100000"},
        {"f == 9223372036854775809", "00000000"},
        {"f < 9223372036854775809", "11111101"},
        {"f >= 9223372036854775809", "00000010"},
        {"f == -9223372036854775808", "00010000"},
        {"f < -9223372036854775807", "00010000"},
        {"f > -9223372036854775809", "11111111"},
        {"f == -9223372036854775809", "00000000"},
        {"f == 0", "00001000"},
        {"f == -0.0", "00001000"},
        {"f == 0.0", "00001000"},
        {"f < 0", "00010100"},
        {"f in [0, 9007199254740993, 9223372036854775808]", "00101000"},
        {"f in [9223372036854775809, 9223372036854775807]", "00000000"},
        {"f in [-0.0]", "00001000"},
        /* float literals round like strtod: the nearest double */
        {"f == 9007199254740993.0", "10000000"},
        {"f == 4.9e-324", "00000000"},
        {"f > 1e-400", "11100011"}, /* 1e-400 is 0 */
        /* columns against each other, exactly */
        {"i > f", "10000001"},
        {"i == f", "00011000"},
        {"i < f", "01100110"},
        {"i <= f", "01111110"},
        {"f < i", "10000001"},
        {"f >= i", "01111110"},
    };
    column cols[2];
    pol_colview v[2];
    char got[MAXR + 1];
    size_t k;

    (void)state;
    v[0] = col_i64(&cols[0], 8, iv, NULL);
    v[1] = col_f64(&cols[1], 8, fv, NULL);
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        keep_text(cases[k].text, nums, 2, v, 8, got);
        if (strcmp(got, cases[k].want) != 0)
            fail_msg("%s: kept %s, want %s", cases[k].text, got, cases[k].want);
    }
}

/* ---- strings ---- */

static void
strings_and_escapes(void **state)
{
    static const pol_column one[] = {{"s", POL_STRING, NULL, 0},
                                     {"\xc3\xa9t\xc3\xa9", POL_STRING, NULL, 0}};
    static const char *const sv[8] = {"\"quoted\"",  "back\\slash",      "tab\there",
                                      "\xc3\xa9",    "\xf0\x9f\x98\x80", "a/b",
                                      "line\nbreak", "\xe2\x82\xac"};
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"s == \"\\\"quoted\\\"\"", "10000000"},
        {"s == \"back\\\\slash\"", "01000000"},
        {"s == \"tab\\there\"", "00100000"},
        {"s == \"\\u00e9\"", "00010000"},
        {"s == \"\\u00E9\"", "00010000"},
        {"s == \"\xc3\xa9\"", "00010000"},
        {"s == \"\\ud83d\\ude00\"", "00001000"},
        {"s == \"\\uD83D\\uDE00\"", "00001000"},
        {"s == \"a\\/b\"", "00000100"},
        {"s == \"a/b\"", "00000100"},
        {"s == \"line\\nbreak\"", "00000010"},
        {"s == \"line\\u000abreak\"", "00000010"},
        {"s == \"\\u20ac\"", "00000001"},
        {"s in [\"\\u00E9\", \"\\uD83D\\uDE00\", \"\\u00e9\"]", "00011000"},
        {"s > \"\\u00e9\"", "00001001"},
        {"s < \"\\\\\"", "10000000"},
        /* a column named in UTF-8, in backquotes */
        {"`\xc3\xa9t\xc3\xa9` == \"x\"", "10000000"},
        {"`\xc3\xa9t\xc3\xa9` != s", "11111111"},
        /* the escapes JSON has that carry control characters */
        {"s == \"\\b\\f\\r\"", "00000000"},
    };
    static const char *const other[8] = {"x", "y", "z", "w", "v", "u", "t", "q"};
    column cols[2];
    pol_colview v[2];
    char got[MAXR + 1];
    size_t k;

    (void)state;
    v[0] = col_str(&cols[0], 8, sv);
    v[1] = col_str(&cols[1], 8, other);
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        keep_text(cases[k].text, one, 2, v, 8, got);
        if (strcmp(got, cases[k].want) != 0)
            fail_msg("%s: kept %s, want %s", cases[k].text, got, cases[k].want);
    }
}

static void
grammar_and_whitespace(void **state)
{
    (void)state;
    people_setup();
    EXPECT_KEEP("region == \"EU\" and consent == true", "10100000");
    EXPECT_KEEP("region==\"EU\"and consent==true", "10100000");
    EXPECT_KEEP("\t\r\n region\n==\n\"EU\"\r\nand\tconsent == true \n", "10100000");
    EXPECT_KEEP("age>=30", "10011001");
    EXPECT_KEEP("age<-1", "00000100");
    EXPECT_KEEP("(age == 30)", "10001000");
    EXPECT_KEEP("((((age == 30))))", "10001000");
    EXPECT_KEEP("age in[30]", "10001000");
    EXPECT_KEEP("age not in[30]", "01010111");
    EXPECT_KEEP("not(age==30)", "01010111");
    EXPECT_KEEP("age == 30 or age == 45 or age == -5", "10011100");
    EXPECT_KEEP("age > 0 and age < 40 and consent == true", "10001000");
    /* an `and` chain of `or`s and the other way round, mixed with not */
    EXPECT_KEEP("(age == 30 or age == 17) and (consent == true or region == \"US\")", "11001000");
    EXPECT_KEEP("(age == 30 or age == 17) and not (consent == true or region == \"US\")",
                "00000000");
    EXPECT_KEEP("not (age == 30 and consent == true) and age != null", "01010111");
    EXPECT_KEEP("age == 30 and consent == true or age == 17 and region == \"US\"", "11001000");
}

/* ---- refusals ---- */

static void
expect_refused(const char *text, size_t n, sl_code code, const char *msg)
{
    pol_filter *f = (pol_filter *)&f;
    sl_err err;
    sl_code rc;

    people_setup();
    rc = pol_filter_compile(text, n, people, NPEOPLE, &f, &err);
    if (rc != code)
        fail_msg("%.60s: code %d (%s), want %d", text, rc, rc ? err.msg : "", code);
    assert_null(f);
    if (strcmp(err.msg, msg) != 0)
        fail_msg("%.60s:\n  got  %s\n  want %s", text, err.msg, msg);
}

#define REFUSED(text, msg)   expect_refused(text, strlen(text), SL_EINVALID, msg)
#define TOO_LARGE(text, msg) expect_refused(text, strlen(text), SL_ETOOLARGE, msg)

static void
refusals_with_positions(void **state)
{
    (void)state;
    REFUSED("", "row filter is empty");
    REFUSED(" \n\t ", "row filter is empty");
    /* unknown columns, named; positions count characters, not bytes */
    REFUSED("regoin == \"EU\"", "row filter, character 1: unknown column \"regoin\"");
    REFUSED("name == \"Zo\xc3\xab\" and foo == 1",
            "row filter, character 19: unknown column \"foo\"");
    REFUSED("`r\xc3\xa9gion` == \"EU\"",
            "row filter, character 1: unknown column \"r\xc3\xa9gion\"");
    REFUSED("`a\tb` == 1", "row filter, character 1: unknown column \"a?b\"");
    REFUSED(
        "consent == TRUE",
        "row filter, character 12: unknown column \"TRUE\" (keywords are written in lower case)");
    REFUSED("Age == 1", "row filter, character 1: unknown column \"Age\"");
    /* keywords as bare column names */
    REFUSED("in == \"x\"",
            "row filter, character 1: 'in' is a keyword (a column of that name is written in "
            "backquotes)");
    REFUSED("age == 1 and or == 2",
            "row filter, character 14: 'or' is a keyword (a column of that name is written in "
            "backquotes)");
    REFUSED("not == 1", "row filter, character 5: expected a comparison, 'not' or '(', found '=='");
    /* types */
    REFUSED("age == \"x\"",
            "row filter, character 8: column \"age\" is int64, not comparable with a string");
    REFUSED("\"x\" == age",
            "row filter, character 1: column \"age\" is int64, not comparable with a string");
    REFUSED("region > 3",
            "row filter, character 10: column \"region\" is string, not comparable with a number");
    REFUSED("consent == 1",
            "row filter, character 12: column \"consent\" is bool, not comparable with a number");
    REFUSED("score == true",
            "row filter, character 10: column \"score\" is float64, not comparable with a bool");
    REFUSED("consent < true",
            "row filter, character 9: column \"consent\" is bool: only ==, != and in apply");
    REFUSED("consent >= `a``b`",
            "row filter, character 9: column \"consent\" is bool: only ==, != and in apply");
    REFUSED(
        "age < region",
        "row filter, character 7: column \"age\" is int64, not comparable with column \"region\" "
        "(string)");
    REFUSED("consent == score",
            "row filter, character 12: column \"consent\" is bool, not comparable with column "
            "\"score\" (float64)");
    REFUSED("age in [1, \"x\"]",
            "row filter, character 12: column \"age\" is int64, not comparable with a string");
    REFUSED("consent in [true, 0]",
            "row filter, character 19: column \"consent\" is bool, not comparable with a number");
    REFUSED("1 == 2", "row filter, character 1: a comparison needs a column on at least one side");
    REFUSED("null == null",
            "row filter, character 1: a comparison needs a column on at least one side");
    REFUSED("age < null", "row filter, character 5: null can only be tested with == or !=");
    REFUSED("null >= age", "row filter, character 6: null can only be tested with == or !=");
    /* structure */
    REFUSED("age", "row filter, character 4: expected a comparison operator or 'in' after column "
                   "\"age\", found the end of the filter");
    REFUSED("consent and age == 1", "row filter, character 9: expected a comparison operator or "
                                    "'in' after column \"consent\", found 'and'");
    REFUSED("\"EU\"", "row filter, character 5: expected a comparison operator after a string, "
                      "found the end of the filter");
    REFUSED(
        "age == 1 2",
        "row filter, character 10: expected 'and', 'or' or the end of the filter, found a number");
    REFUSED("age == 1 AND age == 2", "row filter, character 10: expected 'and', 'or' or the end of "
                                     "the filter, found a column name");
    REFUSED("age == 1 )", "row filter, character 10: ')' without a matching '('");
    REFUSED("(age == 1", "row filter, character 10: expected ')' to close the '(' at character 1, "
                         "found the end of the filter");
    REFUSED("((age == 1) or (age == 2)", "row filter, character 26: expected ')' to close the '(' "
                                         "at character 1, found the end of the filter");
    REFUSED("age < 1 < 2",
            "row filter, character 9: expected 'and', 'or' or the end of the filter, found '<'");
    REFUSED("age ==",
            "row filter, character 7: expected a column or a literal, found the end of the filter");
    REFUSED("age == (1)", "row filter, character 8: expected a column or a literal, found '('");
    REFUSED("()", "row filter, character 2: expected a comparison, 'not' or '(', found ')'");
    REFUSED("not", "row filter, character 4: expected a comparison, 'not' or '(', found the end of "
                   "the filter");
    REFUSED("age == 1 and", "row filter, character 13: expected a comparison, 'not' or '(', found "
                            "the end of the filter");
    REFUSED("age = 1", "row filter, character 5: '=' is not an operator (equality is '==')");
    REFUSED("!(age == 1)", "row filter, character 1: '!' is not an operator (write 'not' or '!=')");
    REFUSED("age == 1 && age == 2", "row filter, character 10: unexpected character");
    REFUSED("age == 1 or r\xc3\xa9gion == 2", "row filter, character 13: unknown column \"r\"");
    REFUSED("\xc3\xa9 == 1", "row filter, character 1: unexpected character (a column name that is "
                             "not an identifier goes in backquotes)");
    REFUSED("`` == 1", "row filter, character 1: empty column name");
    REFUSED("`age == 1", "row filter, character 1: backquoted name never closed");
    /* lists */
    REFUSED("age in []", "row filter, character 9: empty list");
    REFUSED("age in [1,]", "row filter, character 11: expected a literal in the list, found ']'");
    REFUSED("age in [1 2]",
            "row filter, character 11: expected ',' or ']' in the list, found a number");
    REFUSED(
        "age in [1",
        "row filter, character 10: expected ',' or ']' in the list, found the end of the filter");
    REFUSED("age in [null]",
            "row filter, character 9: null is not allowed in a list (use == null)");
    REFUSED("age in [age]",
            "row filter, character 9: expected a literal in the list, found a column name");
    REFUSED("age in 1", "row filter, character 8: expected '[' after 'in', found a number");
    REFUSED("1 in [1]", "row filter, character 1: the left side of 'in' must be a column");
    REFUSED("age not 1", "row filter, character 9: expected 'in' after 'not', found a number");
    REFUSED("age not == 1", "row filter, character 9: expected 'in' after 'not', found '=='");
    /* strings */
    REFUSED("region == \"EU", "row filter, character 11: string never closed");
    REFUSED("region == \"EU\\", "row filter, character 11: string never closed");
    REFUSED("region == \"E\\x\"", "row filter, character 13: unknown escape in a string");
    REFUSED("region == \"E\\'\"", "row filter, character 13: unknown escape in a string");
    REFUSED(
        "region == \"\\u12\"",
        "row filter, character 12: \\u in a string must be followed by four hexadecimal digits");
    REFUSED(
        "region == \"\\u12g4\"",
        "row filter, character 12: \\u in a string must be followed by four hexadecimal digits");
    REFUSED("region == \"\\ud800\"", "row filter, character 12: lone surrogate in a \\u escape");
    REFUSED("region == \"\\ud800\\u0041\"",
            "row filter, character 12: lone surrogate in a \\u escape");
    REFUSED("region == \"\\ud800\\ud800\"",
            "row filter, character 12: lone surrogate in a \\u escape");
    REFUSED("region == \"x\\udc00\"", "row filter, character 13: lone surrogate in a \\u escape");
    REFUSED("region == \"\\u0000\"",
            "row filter, character 12: \\u0000 is not allowed in a string");
    REFUSED("region == \"a\tb\"",
            "row filter, character 13: control character in a string (write it escaped)");
    REFUSED("region == \"a\nb\"",
            "row filter, character 13: control character in a string (write it escaped)");
    REFUSED("region == \"a\x7f\"",
            "row filter, character 13: control character in a string (write it escaped)");
    expect_refused("region == \"a\0b\"", 15, SL_EINVALID,
                   "row filter, character 13: control character in a string (write it escaped)");
    expect_refused("age == 1\0", 9, SL_EINVALID, "row filter, character 9: unexpected character");
    /* numbers */
    REFUSED("score < 1e400", "row filter, character 9: number out of range");
    REFUSED("score > -1e309", "row filter, character 9: number out of range");
    REFUSED("age == 01", "row filter, character 8: malformed number");
    REFUSED("age == -01", "row filter, character 8: malformed number");
    REFUSED("age == 1.", "row filter, character 8: malformed number");
    REFUSED("age == 1.e5", "row filter, character 8: malformed number");
    REFUSED("age == .5", "row filter, character 8: unexpected character");
    REFUSED("age == +1", "row filter, character 8: unexpected character");
    REFUSED("age == 1e", "row filter, character 8: malformed number");
    REFUSED("age == 1e+", "row filter, character 8: malformed number");
    REFUSED("age == -", "row filter, character 8: malformed number");
    REFUSED("age == - 1", "row filter, character 8: malformed number");
    REFUSED("age == 1x", "row filter, character 8: malformed number");
    REFUSED("age == 1_000", "row filter, character 8: malformed number");
    REFUSED("age == 1.5.2", "row filter, character 8: malformed number");
    REFUSED("age == 0x10", "row filter, character 8: malformed number");
    REFUSED("age == 1and age == 2", "row filter, character 8: malformed number");
    REFUSED("score == NaN", "row filter, character 10: unknown column \"NaN\"");
    REFUSED("score == inf", "row filter, character 10: unknown column \"inf\"");
    {
        char big[512];
        memset(big, '9', 400);
        memcpy(big, "age < ", 6);
        big[400] = '\0';
        REFUSED(big, "row filter, character 7: number out of range");
    }
    /* invalid UTF-8, with the position of the first bad byte */
    REFUSED("region == \"\xff\"", "row filter, character 12: not valid UTF-8");
    REFUSED("name == \"Zo\xc3\xab\" or name == \"\xc3\"",
            "row filter, character 27: not valid UTF-8");
    REFUSED("region == \"\xc0\x80\"", "row filter, character 12: not valid UTF-8");
    REFUSED("region == \"\xed\xa0\x80\"", "row filter, character 12: not valid UTF-8");
    REFUSED("region == \"\xf4\x90\x80\x80\"", "row filter, character 12: not valid UTF-8");
    REFUSED("\x80", "row filter, character 1: not valid UTF-8");
}

static void
refusals_never_echo_literals(void **state)
{
    static const char *const texts[] = {
        "age == \"123-45-6789\"",          "region == \"123-45-6789",
        "region == \"123-45-6789\\q\"",    "region == \"123-45-6789\\ud800\"",
        "region in [\"123-45-6789\", 1]",  "\"123-45-6789\" == 123456789",
        "region == \"123-45-6789\" extra", "region == \"123-45-6789\" and 1234567890 == 1",
    };
    size_t k;

    (void)state;
    people_setup();
    for (k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        pol_filter *f = NULL;
        sl_err err;
        assert_int_not_equal(
            pol_filter_compile(texts[k], strlen(texts[k]), people, NPEOPLE, &f, &err), SL_OK);
        assert_null(strstr(err.msg, "6789"));
        assert_null(strstr(err.detail, "6789"));
    }
}

static void
limits(void **state)
{
    const size_t cap = 16384;
    char *text = malloc(cap);
    pol_filter *f = NULL;
    sl_err err;
    size_t o;
    int k;

    (void)state;
    people_setup();
    /* length: 4096 bytes pass, 4097 do not */
    memset(text, ' ', POL_FILTER_MAX_BYTES + 1);
    memcpy(text, "age == 1", 8);
    assert_int_equal(pol_filter_compile(text, POL_FILTER_MAX_BYTES, people, NPEOPLE, &f, &err),
                     SL_OK);
    pol_filter_free(f);
    expect_refused(text, POL_FILTER_MAX_BYTES + 1, SL_ETOOLARGE,
                   "row filter longer than the limit of 4096 bytes");

    /* depth: 32 parentheses pass, 33 do not */
    for (k = 0; k < 32; k++)
        text[k] = '(';
    memcpy(text + 32, "age == 1", 8);
    o = 32 + 8;
    for (k = 0; k < 32; k++)
        text[o++] = ')';
    text[o] = '\0';
    assert_int_equal(pol_filter_compile(text, o, people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    memmove(text + 1, text, o + 1);
    text[0] = '(';
    text[o + 1] = ')';
    text[o + 2] = '\0';
    TOO_LARGE(text, "row filter, character 33: nested deeper than the limit of 32");
    /* 32 `not`s pass, 33 do not */
    for (o = 0, k = 0; k < 32; k++, o += 4)
        memcpy(text + o, "not ", 4);
    memcpy(text + o, "age == 1", sizeof "age == 1");
    assert_int_equal(pol_filter_compile(text, strlen(text), people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    memmove(text + 4, text, strlen(text) + 1);
    memcpy(text, "not ", 4);
    TOO_LARGE(text, "row filter, character 129: nested deeper than the limit of 32");
    /* and/or count: `age == 1 and (age == 1 and (...))`: each level a chain and a
     * parenthesis, 2 deep; 15 levels inside the outer chain are 31 deep, 16 are 33 */
    for (o = 0, k = 0; k < 15; k++)
        o += (size_t)snprintf(text + o, cap - o, "age == 1 and (");
    o += (size_t)snprintf(text + o, cap - o, "age == 1 or age == 2");
    for (k = 0; k < 15; k++)
        text[o++] = ')';
    text[o] = '\0';
    assert_int_equal(pol_filter_compile(text, o, people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    for (o = 0, k = 0; k < 16; k++)
        o += (size_t)snprintf(text + o, cap - o, "age == 1 and (");
    o += (size_t)snprintf(text + o, cap - o, "age == 1 or age == 2");
    for (k = 0; k < 16; k++)
        text[o++] = ')';
    text[o] = '\0';
    TOO_LARGE(text, "row filter, character 10: nested deeper than the limit of 32");
    /* hostile nesting far past the limit stops at it, without recursing further */
    memset(text, '(', 16000);
    expect_refused(text, 4000, SL_ETOOLARGE,
                   "row filter, character 33: nested deeper than the limit of 32");
    for (o = 0; o + 4 <= 4000; o += 4)
        memcpy(text + o, "not ", 4);
    expect_refused(text, 4000, SL_ETOOLARGE,
                   "row filter, character 129: nested deeper than the limit of 32");

    /* nodes: 256 comparisons and 255 `or`s pass, one more comparison does not */
    for (o = 0, k = 0; k < 256; k++)
        o += (size_t)snprintf(text + o, cap - o, "%sage<%d", k ? " or " : "", k);
    assert_int_equal(pol_filter_compile(text, o, people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    o += (size_t)snprintf(text + o, cap - o, " or age<%d", k);
    TOO_LARGE(text, "row filter, character 2707: more than 512 comparisons and operators");

    /* a list of 1024 items passes, 1025 do not */
    o = (size_t)snprintf(text, cap, "age in [");
    for (k = 0; k < POL_FILTER_MAX_LIST; k++)
        o += (size_t)snprintf(text + o, cap - o, "%s%d", k ? "," : "", k % 10);
    snprintf(text + o, cap - o, "]");
    assert_int_equal(pol_filter_compile(text, strlen(text), people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    snprintf(text + o, cap - o, ",1]");
    TOO_LARGE(text, "row filter, character 2057: list longer than the limit of 1024 items");

    /* a string of 1024 bytes passes, 1025 do not (decoded bytes count) */
    o = (size_t)snprintf(text, cap, "region == \"");
    memset(text + o, 'x', 1024);
    snprintf(text + o + 1024, cap - o - 1024, "\"");
    assert_int_equal(pol_filter_compile(text, strlen(text), people, NPEOPLE, &f, &err), SL_OK);
    pol_filter_free(f);
    snprintf(text + o + 1024, cap - o - 1024, "y\"");
    TOO_LARGE(text, "row filter, character 11: string longer than the limit of 1024 bytes");
    o = (size_t)snprintf(text, cap, "region == \"");
    for (k = 0; k < 342; k++)
        o += (size_t)snprintf(text + o, cap - o, "\\u20ac");
    snprintf(text + o, cap - o, "\"");
    TOO_LARGE(text, "row filter, character 11: string longer than the limit of 1024 bytes");
    free(text);
}

static void
columns_read_and_eval_contract(void **state)
{
    pol_filter *f = NULL;
    uint32_t idx[8];
    uint8_t *keep = malloc(SL_ROWS_PER_GROUP + 1);
    pol_colview bad[NPEOPLE];
    sl_err err;
    const char *text = "region == \"EU\" and age > 3 or age < score or `a``b` == null";

    (void)state;
    people_setup();
    assert_int_equal(pol_filter_compile(text, strlen(text), people, NPEOPLE, &f, &err), SL_OK);
    assert_int_equal(pol_filter_columns(f, idx, 8), 4);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 3);
    assert_int_equal(idx[3], 7);
    assert_int_equal(pol_filter_columns(f, idx, 2), 4);
    assert_int_equal(pol_filter_columns(f, NULL, 0), 4);
    /* the columns not read may be zeroed */
    memset(bad, 0, sizeof bad);
    bad[0] = people_v[0];
    bad[1] = people_v[1];
    bad[3] = people_v[3];
    bad[7] = people_v[7];
    assert_int_equal(pol_filter_eval(f, bad, ROWS, keep), SL_OK);
    /* a column read of another type, or without its values: nothing passes */
    bad[1].type = POL_INT64;
    memset(keep, 1, ROWS);
    assert_int_equal(pol_filter_eval(f, bad, ROWS, keep), SL_EINTERNAL);
    assert_null(memchr(keep, 1, ROWS));
    bad[1] = people_v[1];
    bad[3].off = NULL;
    memset(keep, 1, ROWS);
    assert_int_equal(pol_filter_eval(f, bad, ROWS, keep), SL_EINTERNAL);
    assert_null(memchr(keep, 1, ROWS));
    /* more rows than a group holds */
    memset(keep, 1, SL_ROWS_PER_GROUP + 1);
    assert_int_equal(pol_filter_eval(f, people_v, SL_ROWS_PER_GROUP + 1, keep), SL_ETOOLARGE);
    assert_null(memchr(keep, 1, SL_ROWS_PER_GROUP + 1));
    memset(keep, 1, SL_ROWS_PER_GROUP + 1);
    assert_int_equal(pol_filter_eval_false(f, people_v, SL_ROWS_PER_GROUP + 1, keep), SL_ETOOLARGE);
    assert_null(memchr(keep, 1, SL_ROWS_PER_GROUP + 1));
    bad[1].type = POL_INT64;
    memset(keep, 1, ROWS);
    assert_int_equal(pol_filter_eval_false(f, bad, ROWS, keep), SL_EINTERNAL);
    assert_null(memchr(keep, 1, ROWS));
    assert_int_equal(pol_filter_eval(f, people_v, 0, keep), SL_OK);
    pol_filter_free(f);
    pol_filter_free(NULL);
    free(keep);
}

/* ---- random filters over a whole row group, against a per-row reference ---- */

#define GROUP SL_ROWS_PER_GROUP

/* columns: i j int64, f g float64, b c bool, s t string */
static const pol_column gschema[] = {{"i", POL_INT64, NULL, 0},   {"j", POL_INT64, NULL, 0},
                                     {"f", POL_FLOAT64, NULL, 0}, {"g", POL_FLOAT64, NULL, 0},
                                     {"b", POL_BOOL, NULL, 0},    {"c", POL_BOOL, NULL, 0},
                                     {"s", POL_STRING, NULL, 0},  {"t", POL_STRING, NULL, 0}};
#define NG 8

typedef struct {
    uint8_t *nulls[NG];
    int64_t *i64[NG];
    double *f64[NG];
    uint8_t *b[NG];
    uint32_t *off[NG];
    char *str[NG];
    char **cstr[NG]; /* NUL-terminated copies for the reference */
    pol_colview v[NG];
} group;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint32_t
rndn(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static const int64_t int_pool[] = {0,
                                   1,
                                   -1,
                                   2,
                                   42,
                                   -42,
                                   9007199254740992LL,
                                   9007199254740993LL,
                                   9007199254740991LL,
                                   -9007199254740993LL,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MAX - 1,
                                   INT64_MIN + 1,
                                   1000,
                                   4611686018427387904LL,
                                   4611686018427387905LL};
static const double flt_pool[] = {
    0.0,    -0.0,    0.5,   -0.5,   1.5, 42.0,   9007199254740992.0, 9007199254740994.0,
    0x1p63, -0x1p63, 1e300, -1e300, 0.1, 1e-300, 4.9e-324,           4611686018427387904.0,
    1.0,    -1.0,    2.0};
static const char *const str_pool[] = {"",
                                       "EU",
                                       "US",
                                       "eu",
                                       "E",
                                       "EU ",
                                       "APAC",
                                       "\xc3\xa9",
                                       "\xf0\x9f\x98\x80",
                                       "Zo\xc3\xab",
                                       "a\"b",
                                       "tab\t",
                                       "a`b",
                                       "\xe2\x82\xac",
                                       "\x7f",
                                       "a\\b",
                                       "EUR",
                                       "\xef\xbf\xbf",
                                       "0",
                                       "null"};
#define NPOOL(p) (sizeof p / sizeof p[0])

static int64_t
rnd_int(void)
{
    return rndn(3) == 0 ? (int64_t)rndn(101) - 50 : int_pool[rndn(NPOOL(int_pool))];
}

static double
rnd_flt(void)
{
    return rndn(3) == 0 ? ((double)rndn(401) - 200) / 4 : flt_pool[rndn(NPOOL(flt_pool))];
}

static void
group_make(group *g)
{
    size_t c, r;

    for (c = 0; c < NG; c++) {
        pol_type t = gschema[c].type;
        g->nulls[c] = malloc(GROUP);
        for (r = 0; r < GROUP; r++)
            g->nulls[c][r] = rndn(10) == 0;
        g->v[c] = (pol_colview){.type = t, .nulls = g->nulls[c]};
        if (t == POL_INT64) {
            g->i64[c] = malloc(GROUP * sizeof(int64_t));
            for (r = 0; r < GROUP; r++)
                g->i64[c][r] = g->nulls[c][r] ? 0 : rnd_int();
            g->v[c].i64 = g->i64[c];
        } else if (t == POL_FLOAT64) {
            g->f64[c] = malloc(GROUP * sizeof(double));
            for (r = 0; r < GROUP; r++)
                g->f64[c][r] = g->nulls[c][r] ? 0.0 : rnd_flt();
            g->v[c].f64 = g->f64[c];
        } else if (t == POL_BOOL) {
            g->b[c] = malloc(GROUP);
            for (r = 0; r < GROUP; r++)
                g->b[c][r] = g->nulls[c][r] ? 0 : (uint8_t)rndn(2);
            g->v[c].b = g->b[c];
        } else {
            uint32_t o = 0;
            g->off[c] = malloc((GROUP + 1) * sizeof(uint32_t));
            g->str[c] = malloc(GROUP * 8);
            g->cstr[c] = malloc(GROUP * sizeof(char *));
            for (r = 0; r < GROUP; r++) {
                const char *s = g->nulls[c][r] ? "" : str_pool[rndn(NPOOL(str_pool))];
                size_t k = strlen(s);
                g->off[c][r] = o;
                memcpy(g->str[c] + o, s, k);
                o += (uint32_t)k;
                g->cstr[c][r] = (char *)s;
            }
            g->off[c][GROUP] = o;
            g->v[c].off = g->off[c];
            g->v[c].str = g->str[c];
        }
    }
}

static void
group_free(group *g)
{
    size_t c;

    for (c = 0; c < NG; c++) {
        free(g->nulls[c]);
        free(g->i64[c]);
        free(g->f64[c]);
        free(g->b[c]);
        free(g->off[c]);
        free(g->str[c]);
        free(g->cstr[c]);
    }
}

/* A generated filter: the tree the reference walks, printed as text. */
enum { G_AND, G_OR, G_NOT, G_CMP, G_IN, G_ISNULL };

#define MAXITEMS 24

typedef struct gnode {
    int kind;
    int neg; /* G_IN: not in; G_ISNULL: != null */
    struct gnode *kid[4];
    int nkid;
    int a, b; /* columns; b < 0: a literal */
    int op;   /* 0 == 1 != 2 < 3 <= 4 > 5 >= */
    long double num[MAXITEMS];
    const char *str[MAXITEMS];
    int bools[MAXITEMS];
    int nitems;
} gnode;

static const char *const gops[] = {"==", "!=", "<", "<=", ">", ">="};

static int
holds(int op, int d)
{
    switch (op) {
    case 0:
        return d == 0;
    case 1:
        return d != 0;
    case 2:
        return d < 0;
    case 3:
        return d <= 0;
    case 4:
        return d > 0;
    default:
        return d >= 0;
    }
}

static long double
num_at(const group *g, int c, size_t r)
{
    return gschema[c].type == POL_INT64 ? (long double)g->i64[c][r] : (long double)g->f64[c][r];
}

static int
ldcmp(long double x, long double y)
{
    return (x > y) - (x < y);
}

static int
ref_eval(const gnode *x, const group *g, size_t r)
{
    int k, v;

    switch (x->kind) {
    case G_AND:
        v = T3;
        for (k = 0; k < x->nkid; k++)
            v = and3(v, ref_eval(x->kid[k], g, r));
        return v;
    case G_OR:
        v = F3;
        for (k = 0; k < x->nkid; k++)
            v = or3(v, ref_eval(x->kid[k], g, r));
        return v;
    case G_NOT:
        return not3(ref_eval(x->kid[0], g, r));
    case G_ISNULL:
        return g->nulls[x->a][r] ? !x->neg : x->neg;
    default:
        break;
    }
    if (g->nulls[x->a][r] || (x->kind == G_CMP && x->b >= 0 && g->nulls[x->b][r]))
        return U3;
    if (x->kind == G_IN) {
        int found = 0;
        for (k = 0; k < x->nitems && !found; k++) {
            switch (gschema[x->a].type) {
            case POL_STRING:
                found = strcmp(g->cstr[x->a][r], x->str[k]) == 0;
                break;
            case POL_BOOL:
                found = g->b[x->a][r] == x->bools[k];
                break;
            default:
                found = num_at(g, x->a, r) == x->num[0 + k];
            }
        }
        return found != x->neg;
    }
    switch (gschema[x->a].type) {
    case POL_STRING:
        return holds(x->op, strcmp(g->cstr[x->a][r], x->b >= 0 ? g->cstr[x->b][r] : x->str[0]));
    case POL_BOOL:
        return holds(x->op, (x->b >= 0 ? g->b[x->b][r] : x->bools[0]) != g->b[x->a][r]);
    default:
        return holds(x->op, ldcmp(num_at(g, x->a, r), x->b >= 0 ? num_at(g, x->b, r) : x->num[0]));
    }
}

/* A JSON string literal of s, escaping some characters at random. */
static void
put_string(sl_buf *out, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    assert_int_equal(sl_buf_puts(out, "\""), SL_OK);
    while (u[i] != '\0') {
        unsigned cp;
        size_t k;
        if (u[i] == '"' || u[i] == '\\') {
            assert_int_equal(sl_buf_printf(out, "\\%c", u[i]), SL_OK);
            i++;
            continue;
        }
        if (u[i] < 0x80) {
            if (u[i] < 0x20 || u[i] == 0x7f || rndn(4) == 0)
                assert_int_equal(sl_buf_printf(out, "\\u%04x", u[i]), SL_OK);
            else
                assert_int_equal(sl_buf_append(out, s + i, 1), SL_OK);
            i++;
            continue;
        }
        k = u[i] >= 0xf0 ? 4 : u[i] >= 0xe0 ? 3 : 2;
        if (rndn(2) == 0) {
            assert_int_equal(sl_buf_append(out, s + i, k), SL_OK);
            i += k;
            continue;
        }
        cp = k == 2   ? (u[i] & 0x1fu) << 6 | (u[i + 1] & 0x3fu)
             : k == 3 ? (u[i] & 0x0fu) << 12 | (u[i + 1] & 0x3fu) << 6 | (u[i + 2] & 0x3fu)
                      : (u[i] & 0x07u) << 18 | (u[i + 1] & 0x3fu) << 12 | (u[i + 2] & 0x3fu) << 6 |
                            (u[i + 3] & 0x3fu);
        if (cp >= 0x10000)
            assert_int_equal(sl_buf_printf(out, "\\u%04X\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                                           0xdc00 + ((cp - 0x10000) & 0x3ff)),
                             SL_OK);
        else
            assert_int_equal(sl_buf_printf(out, "\\u%04x", cp), SL_OK);
        i += k;
    }
    assert_int_equal(sl_buf_puts(out, "\""), SL_OK);
}

/* A number literal: an int64 or a double, printed so that it reads back exactly. */
static long double
put_number(sl_buf *out)
{
    if (rndn(2) == 0) {
        int64_t v = rnd_int();
        assert_int_equal(sl_buf_printf(out, "%lld", (long long)v), SL_OK);
        return (long double)v;
    } else {
        double v = rnd_flt();
        char text[40];
        snprintf(text, sizeof text, "%.17g", v);
        if (strchr(text, '.') == NULL && strchr(text, 'e') == NULL && rndn(2) == 0)
            snprintf(text + strlen(text), sizeof text - strlen(text), ".0"); /* as a float */
        assert_int_equal(sl_buf_puts(out, text), SL_OK);
        return (long double)strtod(text, NULL);
    }
}

static int
col_of(pol_type t)
{
    static const int cols[][2] = {{2, 3}, {0, 1}, {4, 5}, {6, 7}};
    return cols[t][rndn(2)];
}

static gnode *gen(sl_buf *out, int depth);

static gnode *
gen_leaf(sl_buf *out)
{
    gnode *x = calloc(1, sizeof *x);
    pol_type t = (pol_type)rndn(4);
    int k, lit_left;

    x->a = col_of(t);
    x->b = -1;
    switch (rndn(8)) {
    case 0: /* null test */
        x->kind = G_ISNULL;
        x->neg = (int)rndn(2);
        if (rndn(2))
            assert_int_equal(
                sl_buf_printf(out, "%s %s null", gschema[x->a].name, x->neg ? "!=" : "=="), SL_OK);
        else
            assert_int_equal(
                sl_buf_printf(out, "null %s %s", x->neg ? "!=" : "==", gschema[x->a].name), SL_OK);
        return x;
    case 1:
    case 2: /* in-list */
        x->kind = G_IN;
        x->neg = (int)rndn(2);
        x->nitems = 1 + (int)rndn(rndn(2) ? 4 : MAXITEMS);
        assert_int_equal(sl_buf_printf(out, "%s %sin [", gschema[x->a].name, x->neg ? "not " : ""),
                         SL_OK);
        for (k = 0; k < x->nitems; k++) {
            if (k > 0)
                assert_int_equal(sl_buf_puts(out, ", "), SL_OK);
            if (t == POL_STRING) {
                x->str[k] = str_pool[rndn(NPOOL(str_pool))];
                put_string(out, x->str[k]);
            } else if (t == POL_BOOL) {
                x->bools[k] = (int)rndn(2);
                assert_int_equal(sl_buf_puts(out, x->bools[k] ? "true" : "false"), SL_OK);
            } else {
                x->num[k] = put_number(out);
            }
        }
        assert_int_equal(sl_buf_puts(out, "]"), SL_OK);
        return x;
    case 3: /* column against column */
        x->kind = G_CMP;
        x->b = t == POL_INT64 || t == POL_FLOAT64 ? col_of(rndn(2) ? POL_INT64 : POL_FLOAT64)
                                                  : col_of(t);
        x->op = t == POL_BOOL ? (int)rndn(2) : (int)rndn(6);
        assert_int_equal(
            sl_buf_printf(out, "%s %s %s", gschema[x->a].name, gops[x->op], gschema[x->b].name),
            SL_OK);
        return x;
    default:
        break;
    }
    /* column against a literal, the literal on either side */
    x->kind = G_CMP;
    x->op = t == POL_BOOL ? (int)rndn(2) : (int)rndn(6);
    lit_left = (int)rndn(3) == 0;
    if (!lit_left)
        assert_int_equal(sl_buf_printf(out, "%s %s ", gschema[x->a].name, gops[x->op]), SL_OK);
    if (t == POL_STRING) {
        x->str[0] = str_pool[rndn(NPOOL(str_pool))];
        put_string(out, x->str[0]);
    } else if (t == POL_BOOL) {
        x->bools[0] = (int)rndn(2);
        assert_int_equal(sl_buf_puts(out, x->bools[0] ? "true" : "false"), SL_OK);
    } else {
        x->num[0] = put_number(out);
    }
    if (lit_left) {
        static const int flipped[] = {0, 1, 4, 5, 2, 3};
        assert_int_equal(sl_buf_printf(out, " %s %s", gops[x->op], gschema[x->a].name), SL_OK);
        x->op = flipped[x->op];
    }
    return x;
}

/* Prints a child: parentheses where the grammar needs them, at random elsewhere. */
static gnode *
gen_child(sl_buf *out, int depth, int parent)
{
    size_t mark = out->len;
    gnode *x;
    int need;

    assert_int_equal(sl_buf_puts(out, "("), SL_OK);
    x = gen(out, depth);
    need = (x->kind == G_OR && parent != G_OR) || (x->kind == G_AND && parent == G_NOT);
    if (!need && rndn(2) == 0) { /* without them: the same tree */
        memmove(out->data + mark, out->data + mark + 1, out->len - mark - 1);
        out->len--;
        out->data[out->len] = '\0';
    } else {
        assert_int_equal(sl_buf_puts(out, ")"), SL_OK);
    }
    return x;
}

static gnode *
gen(sl_buf *out, int depth)
{
    gnode *x;
    int k;

    if (depth == 0 || rndn(3) == 0)
        return gen_leaf(out);
    x = calloc(1, sizeof *x);
    switch (rndn(3)) {
    case 0:
        x->kind = G_NOT;
        x->nkid = 1;
        assert_int_equal(sl_buf_puts(out, "not "), SL_OK);
        x->kid[0] = gen_child(out, depth - 1, G_NOT);
        return x;
    case 1:
        x->kind = G_AND;
        break;
    default:
        x->kind = G_OR;
    }
    x->nkid = 2 + (int)rndn(2);
    for (k = 0; k < x->nkid; k++) {
        if (k > 0)
            assert_int_equal(sl_buf_puts(out, x->kind == G_AND ? " and " : " or "), SL_OK);
        x->kid[k] = gen_child(out, depth - 1, x->kind);
    }
    return x;
}

static void
gfree(gnode *x)
{
    int k;

    for (k = 0; k < x->nkid; k++)
        gfree(x->kid[k]);
    free(x);
}

static void
random_filters_against_reference(void **state)
{
    group g;
    uint8_t *keep = malloc(GROUP), *no = malloc(GROUP);
    int n, refused = 0;
    size_t r;

    (void)state;
    assert_true(LDBL_MANT_DIG >= 64); /* long double holds every int64 and double exactly */
    memset(&g, 0, sizeof g);
    group_make(&g);
    for (n = 0; n < 120; n++) {
        sl_buf text;
        pol_filter *f = NULL;
        sl_err err;
        gnode *x;
        sl_code rc;
        sl_buf_init(&text, 1 << 20);
        x = gen(&text, 4);
        rc = pol_filter_compile(text.data, text.len, gschema, NG, &f, &err);
        if (rc == SL_ETOOLARGE && text.len > POL_FILTER_MAX_BYTES) {
            refused++;
            gfree(x);
            sl_buf_free(&text);
            continue;
        }
        if (rc != SL_OK)
            fail_msg("%s: refused: %s", text.data, err.msg);
        assert_int_equal(pol_filter_eval(f, g.v, GROUP, keep), SL_OK);
        assert_int_equal(pol_filter_eval_false(f, g.v, GROUP, no), SL_OK);
        for (r = 0; r < GROUP; r++) {
            int want = ref_eval(x, &g, r);
            if (keep[r] != (want == T3) || no[r] != (want == F3))
                fail_msg("%s: row %zu TRUE %d FALSE %d, want %s", text.data, r, keep[r], no[r],
                         want == T3   ? "TRUE"
                         : want == F3 ? "FALSE"
                                      : "UNKNOWN");
        }
        pol_filter_free(f);
        gfree(x);
        sl_buf_free(&text);
    }
    assert_true(refused < 12);
    group_free(&g);
    free(keep);
    free(no);
}

/* ---- one filter, many threads ---- */

typedef struct {
    const pol_filter *f;
    const group *g;
    uint8_t *keep;
    int rc;
} job;

static void *
eval_thread(void *arg)
{
    job *j = arg;
    int k;

    for (k = 0; k < 20 && j->rc == SL_OK; k++)
        j->rc = pol_filter_eval(j->f, j->g->v, GROUP, j->keep);
    return NULL;
}

static void
one_filter_many_threads(void **state)
{
    static const char text[] =
        "(i > 3 or f <= 0.5) and not (s in [\"EU\", \"US\", \"APAC\", \"E\", \"eu\", \"0\", "
        "\"null\", \"a\", \"b\", \"c\"] or b == c) or t < s and g != null";
    pol_filter *f = NULL;
    pthread_t th[4];
    job jobs[4];
    uint8_t *want = malloc(GROUP);
    group g;
    sl_err err;
    int k;

    (void)state;
    memset(&g, 0, sizeof g);
    group_make(&g);
    assert_int_equal(pol_filter_compile(text, sizeof text - 1, gschema, NG, &f, &err), SL_OK);
    assert_int_equal(pol_filter_eval(f, g.v, GROUP, want), SL_OK);
    for (k = 0; k < 4; k++) {
        jobs[k] = (job){f, &g, malloc(GROUP), SL_OK};
        assert_int_equal(pthread_create(&th[k], NULL, eval_thread, &jobs[k]), 0);
    }
    for (k = 0; k < 4; k++) {
        assert_int_equal(pthread_join(th[k], NULL), 0);
        assert_int_equal(jobs[k].rc, SL_OK);
        assert_memory_equal(jobs[k].keep, want, GROUP);
        free(jobs[k].keep);
    }
    pol_filter_free(f);
    group_free(&g);
    free(want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(operators_on_each_type),
        cmocka_unit_test(columns_against_columns),
        cmocka_unit_test(in_lists),
        cmocka_unit_test(null_tests),
        cmocka_unit_test(kleene_truth_tables),
        cmocka_unit_test(exact_numbers),
        cmocka_unit_test(strings_and_escapes),
        cmocka_unit_test(grammar_and_whitespace),
        cmocka_unit_test(refusals_with_positions),
        cmocka_unit_test(refusals_never_echo_literals),
        cmocka_unit_test(limits),
        cmocka_unit_test(columns_read_and_eval_contract),
        cmocka_unit_test(random_filters_against_reference),
        cmocka_unit_test(one_filter_many_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

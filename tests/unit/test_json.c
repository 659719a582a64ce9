/*
 * tests/unit/test_json.c: the strict request-body parser of gateway/gw_json.c and the
 * validation of the principal and token bodies (docs API.md: unknown fields are 422,
 * names match ^[a-z][a-z0-9_.-]{0,62}$, a malformed body is 400).
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

#include "gw.h"

#define MAX_TTL (365LL * 86400)

/* ---- gw_json_parse_object ---- */

static void
assert_parse_refused_n(const char *body, size_t len)
{
    json_t *out = (json_t *)(uintptr_t)1; /* must be reset to NULL */
    sl_err err;

    sl_err_clear(&err);
    if (gw_json_parse_object(body, len, &out, &err) != SL_EBADREQ)
        fail_msg("body accepted: %.*s", (int)(len > 200 ? 200 : len), body);
    assert_null(out);
    assert_int_equal(err.code, SL_EBADREQ);
    assert_true(strlen(err.msg) > 0);
}

static void
assert_parse_refused(const char *body)
{
    assert_parse_refused_n(body, strlen(body));
}

static json_t *
parse_ok(const char *body)
{
    json_t *out = NULL;
    sl_err err;

    sl_err_clear(&err);
    if (gw_json_parse_object(body, strlen(body), &out, &err) != SL_OK)
        fail_msg("body refused: %s (%s)", body, err.msg);
    assert_non_null(out);
    assert_true(json_is_object(out));
    return out;
}

static void
parse_valid(void **state)
{
    json_t *o;

    (void)state;
    o = parse_ok("{}");
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
    o = parse_ok(
        " {\"name\":\"alice\",\"roles\":[\"admin\"],\"attributes\":{\"dept\":\"r\\u00e9d\"}}\n");
    assert_string_equal(json_string_value(json_object_get(o, "name")), "alice");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "attributes"), "dept")), "r\303\251d");
    json_decref(o);
    /* valid UTF-8 outside ASCII, literally and as a surrogate pair */
    o = parse_ok("{\"k\":\"\xe2\x82\xac \\ud83d\\ude00\"}");
    assert_string_equal(json_string_value(json_object_get(o, "k")),
                        "\xe2\x82\xac \xf0\x9f\x98\x80");
    json_decref(o);
    /* brackets and escaped quotes inside strings do not count as nesting */
    o = parse_ok("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\","
                 "\"b\":\"\\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\\\\\"}");
    json_decref(o);
}

static void
parse_refusals(void **state)
{
    (void)state;
    assert_parse_refused_n("", 0);
    assert_parse_refused_n("{}", 0); /* the length decides, not the text */
    assert_parse_refused("   ");
    /* not an object */
    assert_parse_refused("[]");
    assert_parse_refused("[{}]");
    assert_parse_refused("1");
    assert_parse_refused("\"object\"");
    assert_parse_refused("null");
    assert_parse_refused("true");
    /* not JSON, or more than one value */
    assert_parse_refused("{");
    assert_parse_refused("{\"a\":}");
    assert_parse_refused("{'a':1}");
    assert_parse_refused("{\"a\":1,}");
    assert_parse_refused("{}{}");
    assert_parse_refused("{} x");
    assert_parse_refused_n("{}\0", 3);
    /* duplicate keys, at the top and nested */
    assert_parse_refused("{\"a\":1,\"a\":2}");
    assert_parse_refused("{\"a\":1,\"a\":1}");
    assert_parse_refused("{\"x\":{\"b\":1,\"b\":2}}");
    assert_parse_refused("{\"x\":[{\"b\":1,\"b\":2}]}");
    /* invalid UTF-8: raw bytes in a string, in a key, outside strings; overlong; surrogate */
    assert_parse_refused("{\"a\":\"\xff\"}");
    assert_parse_refused("{\"\xc3\":1}");
    assert_parse_refused("{\"a\":\"\xc0\xaf\"}");
    assert_parse_refused("{\"a\":\"\xed\xa0\x80\"}");
    assert_parse_refused("{\"a\":\"\xf4\x90\x80\x80\"}");
    /* lone surrogate escapes are not characters */
    assert_parse_refused("{\"a\":\"\\ud83d\"}");
    /* NUL in a string or a key */
    assert_parse_refused("{\"a\":\"x\\u0000y\"}");
    assert_parse_refused("{\"a\\u0000b\":1}");
    {
        static const char with_nul[] = "{\"a\":\"x\0y\"}";
        assert_parse_refused_n(with_nul, sizeof with_nul - 1);
    }
}

/* {"a": ... } with `containers` nested containers in all, innermost at depth `containers`. */
static char *
nested(int containers, const char *innermost)
{
    size_t cap = (size_t)containers * 8 + 64, o = 0;
    char *s = malloc(cap);
    int i;

    assert_non_null(s);
    o += (size_t)snprintf(s + o, cap - o, "{\"a\":");
    for (i = 1; i < containers; i++)
        o += (size_t)snprintf(s + o, cap - o, i % 2 ? "[" : "{\"a\":");
    o += (size_t)snprintf(s + o, cap - o, "%s", innermost);
    for (i = containers - 1; i >= 1; i--)
        o += (size_t)snprintf(s + o, cap - o, i % 2 ? "]" : "}");
    snprintf(s + o, cap - o, "}");
    return s;
}

static void
parse_depth(void **state)
{
    json_t *o;
    char *s;

    (void)state;
    /*
     * Depth as gw_json.c measures it: the top object is depth 0 and each value one deeper
     * than its container; the deepest value may be at depth SL_MAX_JSON_DEPTH. nested(c, x)
     * puts x at depth c.
     */
    s = nested(SL_MAX_JSON_DEPTH, "1");
    o = parse_ok(s);
    json_decref(o);
    free(s);
    s = nested(SL_MAX_JSON_DEPTH, "[]");
    o = parse_ok(s);
    json_decref(o);
    free(s);
    /* one level deeper is refused, whatever sits there */
    s = nested(SL_MAX_JSON_DEPTH + 1, "1");
    assert_parse_refused(s);
    free(s);
    s = nested(SL_MAX_JSON_DEPTH + 1, "{}");
    assert_parse_refused(s);
    free(s);
    s = nested(SL_MAX_JSON_DEPTH + 1, "\"x\"");
    assert_parse_refused(s);
    free(s);
    s = nested(SL_MAX_JSON_DEPTH + 2, "1");
    assert_parse_refused(s);
    free(s);
    /* far deeper than any recursion should go: refused before parsing */
    s = nested(100000, "1");
    assert_parse_refused(s);
    free(s);
    /* a deep array-only document */
    s = malloc(2 * 5000 + 3);
    assert_non_null(s);
    s[0] = '{';
    memset(s + 1, '[', 5000);
    memset(s + 1 + 5000, ']', 5000);
    s[1 + 10000] = '}';
    s[2 + 10000] = '\0';
    assert_parse_refused(s);
    free(s);
}

/* ---- gw_json_principal_create ---- */

static json_t *
obj(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &je);

    if (v == NULL)
        fail_msg("test body does not parse: %s: %s", text, je.text);
    return v;
}

/*
 * The body of the last create()/patch() call stays alive until the next call (or the
 * test's teardown), because the gw_principal_body fields borrow from it.
 */
static json_t *held;

static int
release_held(void **state)
{
    (void)state;
    json_decref(held);
    held = NULL;
    return 0;
}

static sl_code
create(const char *text, gw_principal_body *b, sl_err *err)
{
    release_held(NULL);
    held = obj(text);
    sl_err_clear(err);
    memset(b, 0x5a, sizeof *b);
    return gw_json_principal_create(held, MAX_TTL, b, err);
}

/* Refused with 422 and a message; when `mention` is set the message names it. */
static void
assert_create_invalid(const char *text, const char *mention)
{
    gw_principal_body b;
    sl_err err;

    if (create(text, &b, &err) != SL_EINVALID)
        fail_msg("principal body accepted: %s", text);
    assert_int_equal(err.code, SL_EINVALID);
    assert_true(strlen(err.msg) > 0);
    if (mention != NULL && strstr(err.msg, mention) == NULL)
        fail_msg("message \"%s\" does not mention %s", err.msg, mention);
}

static void
principal_create_valid(void **state)
{
    gw_principal_body b;
    char body[256];
    json_t *o;
    sl_err err;

    (void)state;
    /* defaults: kind user, no roles, no attributes, default ttl */
    o = obj("{\"name\":\"alice\"}");
    memset(&b, 0x5a, sizeof b);
    assert_int_equal(gw_json_principal_create(o, MAX_TTL, &b, &err), SL_OK);
    assert_string_equal(b.name, "alice");
    assert_string_equal(b.kind, "user");
    assert_null(b.roles);
    assert_null(b.attributes);
    assert_int_equal(b.ttl_s, 0);
    assert_int_equal(b.has_disabled, 0);
    json_decref(o);
    /* everything given */
    o = obj("{\"name\":\"svc.train-01\",\"kind\":\"service\",\"roles\":[\"trainer\",\"monitor\"],"
            "\"attributes\":{\"dept\":\"research\",\"region\":\"eu\"},\"ttl_seconds\":3600}");
    assert_int_equal(gw_json_principal_create(o, MAX_TTL, &b, &err), SL_OK);
    assert_string_equal(b.name, "svc.train-01");
    assert_string_equal(b.kind, "service");
    assert_int_equal(json_array_size(b.roles), 2);
    assert_string_equal(json_string_value(json_object_get(b.attributes, "region")), "eu");
    assert_int_equal(b.ttl_s, 3600);
    json_decref(o);
    /* kind user explicitly, empty role list and attribute object, ttl at both bounds */
    snprintf(body, sizeof body,
             "{\"name\":\"bob\",\"kind\":\"user\",\"roles\":[],\"attributes\":{},"
             "\"ttl_seconds\":%d}",
             SL_MIN_TOKEN_TTL_S);
    assert_int_equal(create(body, &b, &err), SL_OK);
    assert_string_equal(b.kind, "user");
    assert_int_equal(b.ttl_s, SL_MIN_TOKEN_TTL_S);
    assert_int_equal(create("{\"name\":\"bob\",\"ttl_seconds\":31536000}", &b, &err), SL_OK);
    assert_int_equal(b.ttl_s, MAX_TTL);
    /* null ttl is the default */
    assert_int_equal(create("{\"name\":\"bob\",\"ttl_seconds\":null}", &b, &err), SL_OK);
    assert_int_equal(b.ttl_s, 0);
}

static void
principal_create_unknown_field(void **state)
{
    gw_principal_body b;
    sl_err err;

    (void)state;
    assert_create_invalid("{\"name\":\"alice\",\"colour\":\"blue\"}", "\"colour\"");
    assert_create_invalid("{\"colour\":\"blue\",\"name\":\"alice\"}", "\"colour\"");
    /* a typo of a known field */
    assert_create_invalid("{\"name\":\"alice\",\"role\":[\"admin\"]}", "\"role\"");
    /* disabled belongs to PATCH only */
    assert_create_invalid("{\"name\":\"alice\",\"disabled\":true}", "\"disabled\"");
    /* an unknown field with control characters is named, cleaned */
    assert_int_equal(create("{\"name\":\"alice\",\"a\\nb\":1}", &b, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"a?b\""));
    assert_null(strchr(err.msg, '\n'));
}

static void
principal_create_bad_name(void **state)
{
    char body[256];

    (void)state;
    assert_create_invalid("{}", "name");
    assert_create_invalid("{\"name\":null}", "name");
    assert_create_invalid("{\"name\":7}", "name");
    assert_create_invalid("{\"name\":[\"alice\"]}", "name");
    assert_create_invalid("{\"name\":\"\"}", "name");
    assert_create_invalid("{\"name\":\"Alice\"}", "name");
    assert_create_invalid("{\"name\":\"1alice\"}", "name");
    assert_create_invalid("{\"name\":\"../etc\"}", "name");
    assert_create_invalid("{\"name\":\"al ice\"}", "name");
    /* 64 characters */
    snprintf(body, sizeof body, "{\"name\":\"a%s\"}",
             "123456789012345678901234567890123456789012345678901234567890123");
    assert_create_invalid(body, "name");
}

static void
principal_create_bad_kind(void **state)
{
    (void)state;
    assert_create_invalid("{\"name\":\"alice\",\"kind\":\"admin\"}", "kind");
    assert_create_invalid("{\"name\":\"alice\",\"kind\":\"User\"}", "kind");
    assert_create_invalid("{\"name\":\"alice\",\"kind\":\"\"}", "kind");
    assert_create_invalid("{\"name\":\"alice\",\"kind\":1}", "kind");
    assert_create_invalid("{\"name\":\"alice\",\"kind\":null}", "kind");
    assert_create_invalid("{\"name\":\"alice\",\"kind\":[\"user\"]}", "kind");
}

static void
principal_create_bad_roles(void **state)
{
    gw_principal_body b;
    sl_err err;
    char body[2048];
    size_t o;
    int i;

    (void)state;
    assert_create_invalid("{\"name\":\"alice\",\"roles\":\"admin\"}", "roles");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":{\"admin\":true}}", "roles");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":null}", "roles");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":[\"Admin\"]}", "roles[0]");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":[\"ok\",\"bad role\"]}", "roles[1]");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":[\"ok\",1]}", "roles[1]");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":[[\"admin\"]]}", "roles[0]");
    assert_create_invalid("{\"name\":\"alice\",\"roles\":[\"admin\",\"owner\",\"admin\"]}",
                          "roles[2]");
    /* SL_MAX_ROLES distinct roles are fine; one more is not */
    o = (size_t)snprintf(body, sizeof body, "{\"name\":\"alice\",\"roles\":[");
    for (i = 0; i < SL_MAX_ROLES; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"r%d\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "]}");
    assert_int_equal(create(body, &b, &err), SL_OK);
    assert_int_equal(json_array_size(b.roles), SL_MAX_ROLES);
    o = (size_t)snprintf(body, sizeof body, "{\"name\":\"alice\",\"roles\":[");
    for (i = 0; i < SL_MAX_ROLES + 1; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"r%d\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "]}");
    assert_create_invalid(body, "roles");
}

static void
principal_create_bad_attributes(void **state)
{
    gw_principal_body b;
    sl_err err;
    char body[4096], value[SL_MAX_ATTR_VALUE + 2];
    size_t o;
    int i;

    (void)state;
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":1}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":true}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":null}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":[\"x\"]}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":{\"x\":\"y\"}}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"dept\":\"\"}}", "dept");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":[\"dept\"]}", "attributes");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":\"dept=r\"}", "attributes");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"Dept\":\"r\"}}", "attribute");
    assert_create_invalid("{\"name\":\"alice\",\"attributes\":{\"a b\":\"r\"}}", "attribute");
    /* value length: SL_MAX_ATTR_VALUE bytes fine, one more refused */
    memset(value, 'v', SL_MAX_ATTR_VALUE);
    value[SL_MAX_ATTR_VALUE] = '\0';
    snprintf(body, sizeof body, "{\"name\":\"alice\",\"attributes\":{\"k\":\"%s\"}}", value);
    assert_int_equal(create(body, &b, &err), SL_OK);
    assert_int_equal(json_string_length(json_object_get(b.attributes, "k")), SL_MAX_ATTR_VALUE);
    value[SL_MAX_ATTR_VALUE] = 'v';
    value[SL_MAX_ATTR_VALUE + 1] = '\0';
    snprintf(body, sizeof body, "{\"name\":\"alice\",\"attributes\":{\"k\":\"%s\"}}", value);
    assert_create_invalid(body, "\"k\"");
    /* count: SL_MAX_ATTRIBUTES fine, one more refused */
    o = (size_t)snprintf(body, sizeof body, "{\"name\":\"alice\",\"attributes\":{");
    for (i = 0; i < SL_MAX_ATTRIBUTES; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "}}");
    assert_int_equal(create(body, &b, &err), SL_OK);
    assert_int_equal(json_object_size(b.attributes), SL_MAX_ATTRIBUTES);
    o = (size_t)snprintf(body, sizeof body, "{\"name\":\"alice\",\"attributes\":{");
    for (i = 0; i < SL_MAX_ATTRIBUTES + 1; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(body + o, sizeof body - o, "}}");
    assert_create_invalid(body, "attributes");
}

static void
principal_create_bad_ttl(void **state)
{
    char body[128];

    (void)state;
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":0}", "ttl_seconds");
    snprintf(body, sizeof body, "{\"name\":\"alice\",\"ttl_seconds\":%d}", SL_MIN_TOKEN_TTL_S - 1);
    assert_create_invalid(body, "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":-1}", "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":-3600}", "ttl_seconds");
    snprintf(body, sizeof body, "{\"name\":\"alice\",\"ttl_seconds\":%lld}", MAX_TTL + 1);
    assert_create_invalid(body, "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":9223372036854775807}",
                          "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":\"3600\"}", "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":3600.0}", "ttl_seconds");
    assert_create_invalid("{\"name\":\"alice\",\"ttl_seconds\":true}", "ttl_seconds");
}

/* ---- gw_json_principal_patch ---- */

static sl_code
patch(const char *text, gw_principal_body *b, sl_err *err)
{
    release_held(NULL);
    held = obj(text);
    sl_err_clear(err);
    memset(b, 0x5a, sizeof *b);
    return gw_json_principal_patch(held, b, err);
}

static void
principal_patch(void **state)
{
    gw_principal_body b;
    sl_err err;

    (void)state;
    /* nothing to change */
    assert_int_equal(patch("{}", &b, &err), SL_EINVALID);
    assert_int_equal(err.code, SL_EINVALID);
    /* disabled must be a boolean */
    assert_int_equal(patch("{\"disabled\":\"yes\"}", &b, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "disabled"));
    assert_int_equal(patch("{\"disabled\":1}", &b, &err), SL_EINVALID);
    assert_int_equal(patch("{\"disabled\":0}", &b, &err), SL_EINVALID);
    assert_int_equal(patch("{\"disabled\":null}", &b, &err), SL_EINVALID);
    assert_int_equal(patch("{\"disabled\":\"true\"}", &b, &err), SL_EINVALID);
    /* unknown fields, including ones only create knows */
    assert_int_equal(patch("{\"name\":\"bob\"}", &b, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"name\""));
    assert_int_equal(patch("{\"disabled\":true,\"ttl_seconds\":60}", &b, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"ttl_seconds\""));
    /* roles and attributes are checked as in create */
    assert_int_equal(patch("{\"roles\":[\"a\",\"a\"]}", &b, &err), SL_EINVALID);
    assert_int_equal(patch("{\"roles\":\"a\"}", &b, &err), SL_EINVALID);
    assert_int_equal(patch("{\"attributes\":{\"k\":2}}", &b, &err), SL_EINVALID);

    assert_int_equal(patch("{\"disabled\":true}", &b, &err), SL_OK);
    assert_int_equal(b.has_disabled, 1);
    assert_int_equal(b.disabled, 1);
    assert_null(b.roles);
    assert_null(b.attributes);
    assert_int_equal(patch("{\"disabled\":false}", &b, &err), SL_OK);
    assert_int_equal(b.has_disabled, 1);
    assert_int_equal(b.disabled, 0);
    assert_int_equal(patch("{\"roles\":[\"auditor\"]}", &b, &err), SL_OK);
    assert_int_equal(b.has_disabled, 0);
    assert_non_null(b.roles);
    assert_null(b.attributes);
    assert_int_equal(patch("{\"attributes\":{\"dept\":\"r\"},\"roles\":[]}", &b, &err), SL_OK);
    assert_non_null(b.attributes);
    assert_non_null(b.roles);
    assert_int_equal(b.has_disabled, 0);
}

/* ---- gw_json_token_create ---- */

static sl_code
token(const char *text, int64_t *ttl, sl_err *err)
{
    json_t *o = obj(text);
    sl_code rc;

    sl_err_clear(err);
    rc = gw_json_token_create(o, MAX_TTL, ttl, err);
    json_decref(o);
    return rc;
}

static void
token_create(void **state)
{
    char body[128];
    int64_t ttl;
    sl_err err;

    (void)state;
    ttl = -5;
    assert_int_equal(token("{}", &ttl, &err), SL_OK);
    assert_int_equal(ttl, 0);
    ttl = -5;
    assert_int_equal(token("{\"ttl_seconds\":null}", &ttl, &err), SL_OK);
    assert_int_equal(ttl, 0);
    assert_int_equal(token("{\"ttl_seconds\":3600}", &ttl, &err), SL_OK);
    assert_int_equal(ttl, 3600);
    snprintf(body, sizeof body, "{\"ttl_seconds\":%d}", SL_MIN_TOKEN_TTL_S);
    assert_int_equal(token(body, &ttl, &err), SL_OK);
    assert_int_equal(ttl, SL_MIN_TOKEN_TTL_S);
    snprintf(body, sizeof body, "{\"ttl_seconds\":%d}", SL_MIN_TOKEN_TTL_S - 1);
    assert_int_equal(token(body, &ttl, &err), SL_EINVALID);
    snprintf(body, sizeof body, "{\"ttl_seconds\":%lld}", MAX_TTL);
    assert_int_equal(token(body, &ttl, &err), SL_OK);
    assert_int_equal(ttl, MAX_TTL);

    snprintf(body, sizeof body, "{\"ttl_seconds\":%lld}", MAX_TTL + 1);
    assert_int_equal(token(body, &ttl, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "ttl_seconds"));
    assert_int_equal(token("{\"ttl_seconds\":0}", &ttl, &err), SL_EINVALID);
    assert_int_equal(token("{\"ttl_seconds\":-60}", &ttl, &err), SL_EINVALID);
    assert_int_equal(token("{\"ttl_seconds\":\"60\"}", &ttl, &err), SL_EINVALID);
    assert_int_equal(token("{\"ttl_seconds\":60.5}", &ttl, &err), SL_EINVALID);
    assert_int_equal(token("{\"ttl\":60}", &ttl, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"ttl\""));
    assert_int_equal(token("{\"ttl_seconds\":60,\"name\":\"x\"}", &ttl, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"name\""));
    assert_int_equal(err.code, SL_EINVALID);
}

static void
only_fields(void **state)
{
    static const char *const allowed[] = {"a", "b", NULL};
    json_t *o;
    sl_err err;

    (void)state;
    o = obj("{\"a\":1,\"b\":2}");
    assert_int_equal(gw_json_only(o, allowed, &err), SL_OK);
    json_decref(o);
    o = obj("{}");
    assert_int_equal(gw_json_only(o, allowed, &err), SL_OK);
    json_decref(o);
    /* prefix and case are not matches */
    o = obj("{\"ab\":1}");
    assert_int_equal(gw_json_only(o, allowed, &err), SL_EINVALID);
    assert_non_null(strstr(err.msg, "\"ab\""));
    json_decref(o);
    o = obj("{\"A\":1}");
    assert_int_equal(gw_json_only(o, allowed, &err), SL_EINVALID);
    json_decref(o);
    /* a very long unknown key is named, cut, and the message stays bounded */
    o = obj("{\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":1}");
    assert_int_equal(gw_json_only(o, allowed, &err), SL_EINVALID);
    assert_true(strlen(err.msg) < sizeof err.msg);
    assert_non_null(strstr(err.msg, "xxxxxxxx"));
    json_decref(o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_valid),
        cmocka_unit_test(parse_refusals),
        cmocka_unit_test(parse_depth),
        cmocka_unit_test_teardown(principal_create_valid, release_held),
        cmocka_unit_test_teardown(principal_create_unknown_field, release_held),
        cmocka_unit_test_teardown(principal_create_bad_name, release_held),
        cmocka_unit_test_teardown(principal_create_bad_kind, release_held),
        cmocka_unit_test_teardown(principal_create_bad_roles, release_held),
        cmocka_unit_test_teardown(principal_create_bad_attributes, release_held),
        cmocka_unit_test_teardown(principal_create_bad_ttl, release_held),
        cmocka_unit_test_teardown(principal_patch, release_held),
        cmocka_unit_test(token_create),
        cmocka_unit_test(only_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * gateway/gw_json.c: strict parsing of request bodies. Every JSON body a client sends
 * passes here first: one object, valid UTF-8, bounded depth, no duplicate keys, and
 * only the fields each endpoint knows (a typo is a 422, never silently ignored).
 */
#include <string.h>

#include "gw.h"

static int
depth_ok(const json_t *v, int depth)
{
    const char *k;
    json_t *x;
    size_t i;

    if (depth > SL_MAX_JSON_DEPTH)
        return 0;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x)
        {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            if (!depth_ok(x, depth + 1))
                return 0;
        }
    }
    return 1;
}

/* What went wrong, in our words: jansson's own text quotes the input, which may be a
 * secret or a dataset value, and must never reach an answer or the trail. */
static const char *
parse_error(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_premature_end_of_input:
        return "premature end of input";
    case json_error_end_of_input_expected:
        return "unexpected data after the document";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
        return "NUL character in a string";
    case json_error_null_byte_in_key:
        return "NUL character in a key";
    case json_error_duplicate_key:
        return "duplicate key";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_invalid_format:
        return "not a JSON value";
    default:
        return "invalid syntax";
    }
}

sl_code
gw_json_parse_object(const char *body, size_t len, json_t **out, sl_err *err)
{
    json_error_t je;
    json_t *v;
    size_t i;

    *out = NULL;
    if (len == 0)
        return sl_err_set(err, SL_EBADREQ, "request body is empty; a JSON object is required");
    if (!sl_utf8_valid(body, len))
        return sl_err_set(err, SL_EBADREQ, "request body is not valid UTF-8");
    /* Depth is checked before jansson recurses: count brackets outside strings. */
    {
        int d = 0, in_str = 0, esc = 0, max = 0;
        for (i = 0; i < len; i++) {
            char c = body[i];
            if (in_str) {
                if (esc)
                    esc = 0;
                else if (c == '\\')
                    esc = 1;
                else if (c == '"')
                    in_str = 0;
            } else if (c == '"') {
                in_str = 1;
            } else if (c == '{' || c == '[') {
                if (++d > max)
                    max = d;
            } else if (c == '}' || c == ']') {
                d--;
            }
        }
        if (max > SL_MAX_JSON_DEPTH + 1)
            return sl_err_set(err, SL_EBADREQ, "request body nests deeper than %d levels",
                              SL_MAX_JSON_DEPTH);
    }
    v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL)
        return sl_err_set(err, SL_EBADREQ,
                          "request body is not valid JSON: %s at line %d, column %d",
                          parse_error(&je), je.line, je.column);
    if (!json_is_object(v)) {
        json_decref(v);
        return sl_err_set(err, SL_EBADREQ, "request body must be a JSON object");
    }
    if (!depth_ok(v, 0)) {
        json_decref(v);
        return sl_err_set(err, SL_EBADREQ, "request body nests deeper than %d levels",
                          SL_MAX_JSON_DEPTH);
    }
    *out = v;
    return SL_OK;
}

sl_code
gw_json_only(const json_t *obj, const char *const *allowed, sl_err *err)
{
    const char *k;
    json_t *x;
    size_t i;
    char clean[65];

    json_object_foreach((json_t *)obj, k, x)
    {
        int found = 0;
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(k, allowed[i]) == 0)
                found = 1;
        if (!found)
            return sl_err_set(err, SL_EINVALID, "unknown field \"%s\"",
                              sl_text_clean(clean, k, strlen(k), 64));
    }
    (void)x;
    return SL_OK;
}

static sl_code
check_roles(const json_t *roles, sl_err *err)
{
    size_t i, j;
    json_t *r;

    if (!json_is_array(roles))
        return sl_err_set(err, SL_EINVALID, "field \"roles\" must be an array of role names");
    if (json_array_size(roles) > SL_MAX_ROLES)
        return sl_err_set(err, SL_EINVALID, "field \"roles\" holds more than %d roles",
                          SL_MAX_ROLES);
    json_array_foreach(roles, i, r)
    {
        if (!json_is_string(r) || !sl_name_valid(json_string_value(r)))
            return sl_err_set(err, SL_EINVALID,
                              "roles[%zu] must be a name matching ^[a-z][a-z0-9_.-]{0,62}$", i);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(roles, j)), json_string_value(r)) == 0)
                return sl_err_set(err, SL_EINVALID, "roles[%zu] repeats a role", i);
    }
    return SL_OK;
}

static sl_code
check_attributes(const json_t *attrs, sl_err *err)
{
    const char *k;
    json_t *v;

    if (!json_is_object(attrs))
        return sl_err_set(err, SL_EINVALID, "field \"attributes\" must be an object of strings");
    if (json_object_size(attrs) > SL_MAX_ATTRIBUTES)
        return sl_err_set(err, SL_EINVALID, "field \"attributes\" holds more than %d entries",
                          SL_MAX_ATTRIBUTES);
    json_object_foreach((json_t *)attrs, k, v)
    {
        if (!sl_name_valid(k))
            return sl_err_set(err, SL_EINVALID,
                              "attribute names must match ^[a-z][a-z0-9_.-]{0,62}$");
        if (!json_is_string(v) || json_string_length(v) > SL_MAX_ATTR_VALUE ||
            json_string_length(v) == 0)
            return sl_err_set(err, SL_EINVALID,
                              "attribute \"%s\" must be a string of 1 to %d bytes", k,
                              SL_MAX_ATTR_VALUE);
    }
    return SL_OK;
}

static sl_code
check_ttl(const json_t *v, int64_t max_ttl_s, int64_t *ttl, sl_err *err)
{
    if (v == NULL || json_is_null(v)) {
        *ttl = 0;
        return SL_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < SL_MIN_TOKEN_TTL_S ||
        json_integer_value(v) > max_ttl_s)
        return sl_err_set(err, SL_EINVALID,
                          "field \"ttl_seconds\" must be an integer from %d to %lld",
                          SL_MIN_TOKEN_TTL_S, (long long)max_ttl_s);
    *ttl = json_integer_value(v);
    return SL_OK;
}

sl_code
gw_json_principal_create(const json_t *obj, int64_t max_ttl_s, gw_principal_body *out, sl_err *err)
{
    static const char *const allowed[] = {"name",       "kind",        "roles",
                                          "attributes", "ttl_seconds", NULL};
    const json_t *name = json_object_get(obj, "name"), *kind = json_object_get(obj, "kind");
    sl_code rc;

    memset(out, 0, sizeof *out);
    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    if (!json_is_string(name) || !sl_name_valid(json_string_value(name)))
        return sl_err_set(err, SL_EINVALID,
                          "field \"name\" must be a name matching ^[a-z][a-z0-9_.-]{0,62}$");
    out->name = json_string_value(name);
    if (kind == NULL) {
        out->kind = "user";
    } else if (json_is_string(kind) && (strcmp(json_string_value(kind), "user") == 0 ||
                                        strcmp(json_string_value(kind), "service") == 0)) {
        out->kind = json_string_value(kind);
    } else {
        return sl_err_set(err, SL_EINVALID, "field \"kind\" must be \"user\" or \"service\"");
    }
    out->roles = json_object_get(obj, "roles");
    if (out->roles != NULL && (rc = check_roles(out->roles, err)) != SL_OK)
        return rc;
    out->attributes = json_object_get(obj, "attributes");
    if (out->attributes != NULL && (rc = check_attributes(out->attributes, err)) != SL_OK)
        return rc;
    return check_ttl(json_object_get(obj, "ttl_seconds"), max_ttl_s, &out->ttl_s, err);
}

sl_code
gw_json_principal_patch(const json_t *obj, gw_principal_body *out, sl_err *err)
{
    static const char *const allowed[] = {"roles", "attributes", "disabled", NULL};
    const json_t *dis = json_object_get(obj, "disabled");
    sl_code rc;

    memset(out, 0, sizeof *out);
    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    if (json_object_size(obj) == 0)
        return sl_err_set(err, SL_EINVALID,
                          "nothing to change: give \"roles\", \"attributes\" or \"disabled\"");
    out->roles = json_object_get(obj, "roles");
    if (out->roles != NULL && (rc = check_roles(out->roles, err)) != SL_OK)
        return rc;
    out->attributes = json_object_get(obj, "attributes");
    if (out->attributes != NULL && (rc = check_attributes(out->attributes, err)) != SL_OK)
        return rc;
    if (dis != NULL) {
        if (!json_is_boolean(dis))
            return sl_err_set(err, SL_EINVALID, "field \"disabled\" must be true or false");
        out->has_disabled = 1;
        out->disabled = json_is_true(dis);
    }
    return SL_OK;
}

sl_code
gw_json_token_create(const json_t *obj, int64_t max_ttl_s, int64_t *ttl_s, sl_err *err)
{
    static const char *const allowed[] = {"ttl_seconds", NULL};
    sl_code rc;

    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    return check_ttl(json_object_get(obj, "ttl_seconds"), max_ttl_s, ttl_s, err);
}

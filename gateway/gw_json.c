/*
 * gateway/gw_json.c: strict parsing of request bodies. Every JSON body a client sends
 * passes here first: one object, valid UTF-8, bounded depth, no duplicate keys, and
 * only the fields each endpoint knows (a typo is a 422, never silently ignored).
 */
#include <string.h>

#include "gw.h"
#include "st.h"

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
check_name(const json_t *v, sl_err *err)
{
    if (!json_is_string(v) || !sl_name_valid(json_string_value(v)))
        return sl_err_set(err, SL_EINVALID,
                          "field \"name\" must be a name matching ^[a-z][a-z0-9_.-]{0,62}$");
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
    if ((rc = check_name(name, err)) != SL_OK)
        return rc;
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

/* A column name as a CSV header may hold it: 1 to 128 bytes of UTF-8, printable. */
static int
column_name_valid(const char *s, size_t n)
{
    size_t i;

    if (n < 1 || n > 128 || !sl_utf8_valid(s, n))
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static sl_code
check_tags(const json_t *tags, size_t col, sl_err *err)
{
    size_t i, j;
    json_t *t;

    if (!json_is_array(tags) || json_array_size(tags) > 16)
        return sl_err_set(err, SL_EINVALID, "columns[%zu].tags must be an array of at most 16 tags",
                          col);
    json_array_foreach(tags, i, t)
    {
        if (!json_is_string(t) || !sl_tag_valid(json_string_value(t)))
            return sl_err_set(err, SL_EINVALID,
                              "columns[%zu].tags[%zu] must match ^[a-z][a-z0-9_-]{0,31}$", col, i);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(tags, j)), json_string_value(t)) == 0)
                return sl_err_set(err, SL_EINVALID, "columns[%zu].tags[%zu] repeats a tag", col, i);
    }
    return SL_OK;
}

/* columns: [{"name", "type"?, "tags"?}]; with_types 0 refuses "type" (PATCH). */
static sl_code
check_columns(const json_t *cols, int with_types, sl_err *err)
{
    static const char *const create_keys[] = {"name", "type", "tags", NULL};
    static const char *const patch_keys[] = {"name", "tags", NULL};
    size_t i, j;
    json_t *c;

    if (!json_is_array(cols) || json_array_size(cols) < 1 ||
        json_array_size(cols) > SL_MAX_CSV_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "field \"columns\" must be an array of 1 to %d columns",
                          SL_MAX_CSV_COLUMNS);
    json_array_foreach(cols, i, c)
    {
        const json_t *name = json_object_get(c, "name"), *type = json_object_get(c, "type");
        const json_t *tags = json_object_get(c, "tags");
        if (!json_is_object(c))
            return sl_err_set(err, SL_EINVALID, "columns[%zu] must be an object", i);
        if (gw_json_only(c, with_types ? create_keys : patch_keys, err) != SL_OK)
            return sl_err_set(err, SL_EINVALID, "columns[%zu]: %s", i, err->msg);
        if (!json_is_string(name) ||
            !column_name_valid(json_string_value(name), json_string_length(name)))
            return sl_err_set(err, SL_EINVALID,
                              "columns[%zu].name must be 1 to 128 bytes of printable UTF-8", i);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_object_get(json_array_get(cols, j), "name")),
                       json_string_value(name)) == 0)
                return sl_err_set(err, SL_EINVALID, "columns[%zu] repeats a column name", i);
        if (type != NULL) {
            st_type t;
            if (!json_is_string(type) || st_type_parse(json_string_value(type), &t) != SL_OK)
                return sl_err_set(err, SL_EINVALID,
                                  "columns[%zu].type must be float64, int64, bool or string", i);
        }
        if (tags != NULL && check_tags(tags, i, err) != SL_OK)
            return err->code;
    }
    return SL_OK;
}

static const char *const classifications[] = {"public", "internal", "confidential", "restricted",
                                              NULL};

int
gw_classification_rank(const char *c)
{
    int i;

    for (i = 0; classifications[i] != NULL; i++)
        if (strcmp(c, classifications[i]) == 0)
            return i;
    return -1;
}

static sl_code
check_classification(const json_t *v, sl_err *err)
{
    if (!json_is_string(v) || gw_classification_rank(json_string_value(v)) < 0)
        return sl_err_set(err, SL_EINVALID,
                          "field \"classification\" must be public, internal, confidential or "
                          "restricted");
    return SL_OK;
}

static sl_code
check_text(const json_t *v, const char *field, size_t max, sl_err *err)
{
    if (!json_is_string(v) || json_string_length(v) > max)
        return sl_err_set(err, SL_EINVALID, "field \"%s\" must be a string of at most %zu bytes",
                          field, max);
    return SL_OK;
}

/* A day count: a JSON number (fractional allowed) in [lo, 36500]. */
static sl_code
days(const json_t *v, const char *field, double lo, int lo_open, double *out, sl_err *err)
{
    double d;

    *out = -1;
    if (v == NULL || json_is_null(v))
        return SL_OK;
    if (!json_is_number(v))
        return sl_err_set(err, SL_EINVALID, "field \"%s\" must be a number of days", field);
    d = json_number_value(v);
    if (!(d == d) || d > 36500 || d < lo || (lo_open && d == lo))
        return sl_err_set(err, SL_EINVALID, "field \"%s\" must be %s %g and at most 36500 days",
                          field, lo_open ? "more than" : "at least", lo);
    *out = d;
    return SL_OK;
}

sl_code
gw_json_retention(const json_t *obj, gw_retention *out, sl_err *err)
{
    static const char *const allowed[] = {"min_days", "max_days", "mode", NULL};
    const json_t *mode = json_object_get(obj, "mode");
    sl_code rc;

    memset(out, 0, sizeof *out);
    if (!json_is_object(obj))
        return sl_err_set(err, SL_EINVALID,
                          "retention is an object {\"min_days\", \"max_days\", "
                          "\"mode\"}");
    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK ||
        (rc = days(json_object_get(obj, "min_days"), "min_days", 0, 0, &out->min_days, err)) !=
            SL_OK ||
        (rc = days(json_object_get(obj, "max_days"), "max_days", 0, 1, &out->max_days, err)) !=
            SL_OK)
        return rc;
    if (out->min_days < 0 && out->max_days < 0)
        return sl_err_set(err, SL_EINVALID, "give min_days, max_days or both");
    if (out->min_days >= 0 && out->max_days >= 0 && out->max_days < out->min_days)
        return sl_err_set(err, SL_EINVALID, "max_days is less than min_days");
    if (mode == NULL || !json_is_string(mode) ||
        (strcmp(json_string_value(mode), "governance") != 0 &&
         strcmp(json_string_value(mode), "compliance") != 0))
        return sl_err_set(err, SL_EINVALID,
                          "field \"mode\" is required: \"governance\" or \"compliance\"");
    out->mode = json_string_value(mode);
    return SL_OK;
}

sl_code
gw_json_legal_hold(const json_t *obj, int *hold, const char **reason, sl_err *err)
{
    static const char *const allowed[] = {"hold", "reason", NULL};
    const json_t *h = json_object_get(obj, "hold"), *why = json_object_get(obj, "reason");
    sl_code rc;

    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    if (!json_is_boolean(h))
        return sl_err_set(err, SL_EINVALID, "field \"hold\" is required: true or false");
    *hold = json_is_true(h);
    *reason = "";
    if (why != NULL && !json_is_null(why)) {
        if (!json_is_string(why) || json_string_length(why) > 1024 ||
            !sl_utf8_valid(json_string_value(why), json_string_length(why)))
            return sl_err_set(err, SL_EINVALID,
                              "field \"reason\" must be text of at most 1024 "
                              "bytes");
        *reason = json_string_value(why);
    }
    if (*hold && **reason == '\0')
        return sl_err_set(err, SL_EINVALID, "a legal hold needs a \"reason\"");
    return SL_OK;
}

sl_code
gw_json_dataset_create(const json_t *obj, gw_dataset_body *out, sl_err *err)
{
    static const char *const allowed[] = {"name",    "classification", "description",
                                          "columns", "retention",      NULL};
    const json_t *name = json_object_get(obj, "name"),
                 *cls = json_object_get(obj, "classification");
    const json_t *desc = json_object_get(obj, "description"),
                 *ret = json_object_get(obj, "retention");
    sl_code rc;

    memset(out, 0, sizeof *out);
    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    if ((rc = check_name(name, err)) != SL_OK)
        return rc;
    out->name = json_string_value(name);
    if ((rc = check_classification(cls, err)) != SL_OK)
        return rc;
    out->classification = json_string_value(cls);
    out->description = "";
    if (desc != NULL) {
        if ((rc = check_text(desc, "description", 4096, err)) != SL_OK)
            return rc;
        out->description = json_string_value(desc);
    }
    out->columns = json_object_get(obj, "columns");
    if (out->columns != NULL && (rc = check_columns(out->columns, 1, err)) != SL_OK)
        return rc;
    if (ret != NULL && !json_is_null(ret)) {
        if ((rc = gw_json_retention(ret, &out->retention, err)) != SL_OK)
            return rc;
        out->has_retention = 1;
    }
    return SL_OK;
}

sl_code
gw_json_dataset_patch(const json_t *obj, gw_dataset_body *out, sl_err *err)
{
    static const char *const allowed[] = {"description", "classification", "columns", NULL};
    const json_t *cls = json_object_get(obj, "classification");
    const json_t *desc = json_object_get(obj, "description");
    sl_code rc;

    memset(out, 0, sizeof *out);
    if ((rc = gw_json_only(obj, allowed, err)) != SL_OK)
        return rc;
    if (json_object_size(obj) == 0)
        return sl_err_set(err, SL_EINVALID,
                          "nothing to change: give \"description\", \"classification\" or "
                          "\"columns\"");
    if (cls != NULL) {
        if ((rc = check_classification(cls, err)) != SL_OK)
            return rc;
        out->classification = json_string_value(cls);
    }
    if (desc != NULL) {
        if ((rc = check_text(desc, "description", 4096, err)) != SL_OK)
            return rc;
        out->description = json_string_value(desc);
    }
    out->columns = json_object_get(obj, "columns");
    if (out->columns != NULL && (rc = check_columns(out->columns, 0, err)) != SL_OK)
        return rc;
    return SL_OK;
}

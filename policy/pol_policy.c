/*
 * policy/pol_policy.c: policy documents (a dataset's own and global ones), validated
 * statement by statement, compiled for one dataset into a form that decides a request by
 * one pass over its statements, and the decision with what decided it.
 *
 * The order of evaluation is fixed (pol.h): an applying deny without restrictions wins;
 * then the restricted-dataset rule; then an allow (or the owner's implicit right); else
 * deny. Every applying statement's restrictions (denied columns, masks, row filters)
 * hold together, so adding a statement never widens what a grant shows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol.h"

/* ---- names ---- */

static const char *const action_names[] = {
    "dataset.describe", "dataset.read",     "dataset.write", "dataset.delete",
    "dataset.manage",   "compute.features", "compute.train", "audit.read",
};
#define NACTIONS (sizeof action_names / sizeof action_names[0])

static const char *const mask_names[] = {"none", "partial", "year", "hash", "redact", "null"};

static const char *const classification_names[] = {"public", "internal", "confidential",
                                                   "restricted"};

const char *
pol_type_name(pol_type t)
{
    static const char *const names[] = {"float64", "int64", "bool", "string"};

    return (unsigned)t < 4 ? names[t] : "?";
}

sl_code
pol_action_parse(const char *s, uint32_t *out)
{
    size_t i;

    for (i = 0; i < NACTIONS; i++)
        if (strcmp(s, action_names[i]) == 0) {
            *out = 1u << i;
            return SL_OK;
        }
    return SL_EINVALID;
}

const char *
pol_action_name(uint32_t action)
{
    size_t i;

    for (i = 0; i < NACTIONS; i++)
        if (action == 1u << i)
            return action_names[i];
    return "?";
}

const char *
pol_mask_name(pol_mask m)
{
    return (unsigned)m < sizeof mask_names / sizeof mask_names[0] ? mask_names[m] : "?";
}

sl_code
pol_mask_parse(const char *s, pol_mask *out)
{
    size_t i;

    for (i = 1; i < sizeof mask_names / sizeof mask_names[0]; i++)
        if (strcmp(s, mask_names[i]) == 0) {
            *out = (pol_mask)i;
            return SL_OK;
        }
    return SL_EINVALID;
}

int
pol_mask_fits(pol_mask m, pol_type t)
{
    switch (m) {
    case POL_MASK_PARTIAL:
        return t == POL_STRING || t == POL_INT64;
    case POL_MASK_YEAR:
        return t == POL_STRING;
    case POL_MASK_NONE:
    case POL_MASK_HASH:
    case POL_MASK_REDACT:
    case POL_MASK_NULL:
        return 1;
    }
    return 0;
}

static int
classification_valid(const char *s)
{
    size_t i;

    for (i = 0; i < sizeof classification_names / sizeof classification_names[0]; i++)
        if (strcmp(s, classification_names[i]) == 0)
            return 1;
    return 0;
}

/* A statement id: 1 to 64 of [A-Za-z0-9_.-], a letter or digit first. */
static int
id_valid(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > POL_MAX_ID)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return 0;
    }
    return 1;
}

/* FNV-1a: a quick first test before strcmp when matching principals. */
static uint64_t
hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ULL;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static uint64_t
hash_pair(const char *k, const char *v)
{
    return hash_str(k) * 31 + hash_str(v);
}

/* ---- validation ---- */

/*
 * Where a message points: `statement "id", field "f"`, or `statement N` while the id is
 * not known yet. Values from the document are shown cleaned and cut short.
 */
typedef struct {
    char where[96];
    sl_err *err;
} ctx;

static sl_code bad(ctx *c, const char *field, const char *fmt, ...) SL_PRINTF(3, 4);

static sl_code
bad(ctx *c, const char *field, const char *fmt, ...)
{
    char why[112];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (field != NULL)
        return sl_err_set(c->err, SL_EINVALID, "%s, field \"%s\": %s", c->where, field, why);
    return sl_err_set(c->err, SL_EINVALID, "%s: %s", c->where, why);
}

static const char *
shown(const char *s, char buf[40])
{
    return sl_text_clean(buf, s, strlen(s), 32);
}

static sl_code
only_fields(ctx *c, const json_t *obj, const char *const *known, const char *field)
{
    const char *k;
    json_t *v;
    char buf[40];

    json_object_foreach((json_t *)obj, k, v)
    {
        size_t i;
        int ok = 0;

        (void)v;
        for (i = 0; known[i] != NULL; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            return bad(c, field, "unknown field \"%s\"", shown(k, buf));
    }
    return SL_OK;
}

/* An array of at most max distinct strings, each passing valid(). */
static sl_code
string_list(ctx *c, const json_t *a, const char *field, size_t max, int (*valid)(const char *),
            const char *what)
{
    size_t i, j;
    json_t *x;
    char buf[40];

    if (!json_is_array(a))
        return bad(c, field, "must be an array of %s", what);
    if (json_array_size(a) > max)
        return bad(c, field, "holds more than %zu entries", max);
    json_array_foreach(a, i, x)
    {
        if (!json_is_string(x) || !valid(json_string_value(x)))
            return bad(c, field, "entry %zu is not %s", i + 1, what);
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(a, j)), json_string_value(x)) == 0)
                return bad(c, field, "\"%s\" is listed twice", shown(json_string_value(x), buf));
    }
    return SL_OK;
}

static int
name_ok(const char *s)
{
    return sl_name_valid(s);
}

static int
action_ok(const char *s)
{
    uint32_t a;

    return strcmp(s, "*") == 0 || pol_action_parse(s, &a) == SL_OK;
}

static int
attr_value_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= SL_MAX_ATTR_VALUE && sl_utf8_valid(s, n);
}

static sl_code
check_principals(ctx *c, const json_t *p)
{
    static const char *const known[] = {"roles", "names", "attributes", NULL};
    const json_t *roles, *names, *attrs;
    const char *k;
    json_t *v;
    size_t given = 0;
    sl_code rc;

    if (!json_is_object(p))
        return bad(c, "principals", "must be an object");
    if ((rc = only_fields(c, p, known, "principals")) != SL_OK)
        return rc;
    roles = json_object_get(p, "roles");
    names = json_object_get(p, "names");
    attrs = json_object_get(p, "attributes");
    if (roles != NULL) {
        if ((rc = string_list(c, roles, "principals.roles", SL_MAX_ROLES, name_ok,
                              "a role name")) != SL_OK)
            return rc;
        given += json_array_size(roles) > 0;
    }
    if (names != NULL) {
        if ((rc = string_list(c, names, "principals.names", POL_MAX_LIST, name_ok,
                              "a principal name")) != SL_OK)
            return rc;
        given += json_array_size(names) > 0;
    }
    if (attrs != NULL) {
        if (!json_is_object(attrs) || json_object_size(attrs) > SL_MAX_ATTRIBUTES)
            return bad(c, "principals.attributes", "must be an object of at most %d strings",
                       SL_MAX_ATTRIBUTES);
        json_object_foreach((json_t *)attrs, k, v)
        {
            if (!sl_name_valid(k))
                return bad(c, "principals.attributes",
                           "attribute names must match ^[a-z][a-z0-9_.-]{0,62}$");
            if (!json_is_string(v) || !attr_value_ok(json_string_value(v)))
                return bad(c, "principals.attributes",
                           "each attribute must be a string of 1 to %d bytes", SL_MAX_ATTR_VALUE);
        }
        given += json_object_size(attrs) > 0;
    }
    if (given == 0)
        return bad(c, "principals", "give at least one of roles, names or attributes");
    return SL_OK;
}

static sl_code
check_time(ctx *c, const json_t *v, const char *field, int64_t *us)
{
    if (v == NULL || json_is_null(v))
        return SL_OK;
    if (!json_is_string(v) || sl_time_parse(json_string_value(v), us) != SL_OK)
        return bad(c, field, "must be an RFC 3339 time or null");
    return SL_OK;
}

/* "tag:<tag>" names every column with that tag; otherwise a column's name. */
static int
tag_ref(const char *s, const char **tag)
{
    if (strncmp(s, "tag:", 4) != 0)
        return 0;
    *tag = s + 4;
    return 1;
}

static int
has_tag(const pol_column *col, const char *tag)
{
    size_t i;

    for (i = 0; i < col->ntags; i++)
        if (strcmp(col->tags[i], tag) == 0)
            return 1;
    return 0;
}

static long
column_index(const pol_dataset *ds, const char *name)
{
    size_t i;

    for (i = 0; i < ds->ncols; i++)
        if (strcmp(ds->cols[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* A column reference of a statement: a known column of ds (when ds is given) or a tag. */
static sl_code
check_column_ref(ctx *c, const char *field, const char *s, const pol_dataset *ds)
{
    const char *tag;
    char buf[40];

    if (tag_ref(s, &tag)) {
        if (!sl_tag_valid(tag))
            return bad(c, field, "a tag must match ^[a-z][a-z0-9_-]{0,31}$ after \"tag:\"");
        return SL_OK;
    }
    if (*s == '\0' || strlen(s) > POL_MAX_COLUMN_NAME || !sl_utf8_valid(s, strlen(s)))
        return bad(c, field, "a column name or \"tag:<tag>\" is expected");
    if (ds != NULL && column_index(ds, s) < 0)
        return bad(c, field, "unknown column \"%s\"", shown(s, buf));
    return SL_OK;
}

static sl_code
check_columns(ctx *c, const json_t *cols, const pol_dataset *ds)
{
    static const char *const known[] = {"deny", "mask", NULL};
    const json_t *deny, *mask;
    const char *k;
    json_t *v;
    size_t i, j;
    sl_code rc;
    char buf[40];

    if (!json_is_object(cols))
        return bad(c, "columns", "must be an object with \"deny\" and/or \"mask\"");
    if ((rc = only_fields(c, cols, known, "columns")) != SL_OK)
        return rc;
    deny = json_object_get(cols, "deny");
    mask = json_object_get(cols, "mask");
    if (deny != NULL) {
        if (!json_is_array(deny) || json_array_size(deny) > POL_MAX_LIST)
            return bad(c, "columns.deny", "must be an array of at most %d column names",
                       POL_MAX_LIST);
        json_array_foreach(deny, i, v)
        {
            if (!json_is_string(v))
                return bad(c, "columns.deny", "entry %zu is not a column name", i + 1);
            if ((rc = check_column_ref(c, "columns.deny", json_string_value(v), ds)) != SL_OK)
                return rc;
            for (j = 0; j < i; j++)
                if (strcmp(json_string_value(json_array_get(deny, j)), json_string_value(v)) == 0)
                    return bad(c, "columns.deny", "\"%s\" is listed twice",
                               shown(json_string_value(v), buf));
        }
    }
    if (mask != NULL) {
        if (!json_is_object(mask) || json_object_size(mask) > POL_MAX_LIST)
            return bad(c, "columns.mask", "must be an object of at most %d columns", POL_MAX_LIST);
        json_object_foreach((json_t *)mask, k, v)
        {
            pol_mask m;
            const char *tag;
            char field[96];

            snprintf(field, sizeof field, "columns.mask.%s", shown(k, buf));
            if ((rc = check_column_ref(c, field, k, ds)) != SL_OK)
                return rc;
            if (!json_is_string(v) || pol_mask_parse(json_string_value(v), &m) != SL_OK)
                return bad(c, field, "the mask must be one of hash, redact, null, partial, year");
            if (ds != NULL && !tag_ref(k, &tag) &&
                !pol_mask_fits(m, ds->cols[column_index(ds, k)].type))
                return bad(c, field, "mask %s does not fit type %s", mask_names[m],
                           pol_type_name(ds->cols[column_index(ds, k)].type));
            if (deny != NULL)
                json_array_foreach(deny, i, v)
                {
                    if (strcmp(json_string_value(v), k) == 0)
                        return bad(c, field, "the column is also denied; give one or the other");
                }
        }
    }
    return SL_OK;
}

/*
 * One statement. ds is the dataset for a dataset's policy (its columns, its
 * classification), NULL for a global one. no_read: naming dataset.read is refused.
 */
static sl_code
check_statement(ctx *c, const json_t *s, size_t n, const pol_dataset *ds, int no_read)
{
    static const char *const known[] = {"id",         "effect",      "principals", "actions",
                                        "purposes",   "not_before",  "not_after",  "columns",
                                        "row_filter", "description", NULL};
    const json_t *id, *effect, *actions, *purposes, *filter, *desc, *cols;
    int64_t nb = INT64_MIN, na = INT64_MAX;
    size_t i;
    json_t *a;
    sl_code rc;

    snprintf(c->where, sizeof c->where, "statement %zu", n + 1);
    if (!json_is_object(s))
        return bad(c, NULL, "must be an object");
    id = json_object_get(s, "id");
    if (id == NULL || !json_is_string(id) || !id_valid(json_string_value(id)))
        return bad(c, "id", "required: 1 to %d of [A-Za-z0-9_.-], a letter or digit first",
                   POL_MAX_ID);
    snprintf(c->where, sizeof c->where, "statement \"%s\"", json_string_value(id));
    if ((rc = only_fields(c, s, known, NULL)) != SL_OK)
        return rc;
    effect = json_object_get(s, "effect");
    if (effect == NULL || !json_is_string(effect) ||
        (strcmp(json_string_value(effect), "allow") != 0 &&
         strcmp(json_string_value(effect), "deny") != 0))
        return bad(c, "effect", "required: \"allow\" or \"deny\"");
    if (json_object_get(s, "principals") == NULL)
        return bad(c, "principals", "required");
    if ((rc = check_principals(c, json_object_get(s, "principals"))) != SL_OK)
        return rc;
    actions = json_object_get(s, "actions");
    if (actions == NULL)
        return bad(c, "actions", "required");
    if ((rc = string_list(c, actions, "actions", NACTIONS + 1, action_ok,
                          "an action (dataset.describe, dataset.read, dataset.write, "
                          "dataset.delete, dataset.manage, compute.features, compute.train, "
                          "audit.read or *)")) != SL_OK)
        return rc;
    if (json_array_size(actions) == 0)
        return bad(c, "actions", "name at least one action");
    json_array_foreach(actions, i, a)
    {
        if (no_read && strcmp(json_string_value(a), "dataset.read") == 0)
            return bad(c, "actions",
                       "dataset.read cannot be granted on a restricted dataset: its rows never "
                       "leave the gateway (compute only)");
    }
    purposes = json_object_get(s, "purposes");
    if (purposes != NULL && (rc = string_list(c, purposes, "purposes", POL_MAX_LIST, name_ok,
                                              "a purpose word")) != SL_OK)
        return rc;
    if ((rc = check_time(c, json_object_get(s, "not_before"), "not_before", &nb)) != SL_OK ||
        (rc = check_time(c, json_object_get(s, "not_after"), "not_after", &na)) != SL_OK)
        return rc;
    if (nb > na)
        return bad(c, "not_after", "is before not_before");
    cols = json_object_get(s, "columns");
    if (cols != NULL && !json_is_null(cols) && (rc = check_columns(c, cols, ds)) != SL_OK)
        return rc;
    filter = json_object_get(s, "row_filter");
    if (filter != NULL && !json_is_null(filter)) {
        if (!json_is_string(filter))
            return bad(c, "row_filter", "must be a string or null");
        if (ds != NULL) {
            pol_filter *f = NULL;
            sl_err ferr;

            sl_err_clear(&ferr);
            rc = pol_filter_compile(json_string_value(filter), json_string_length(filter), ds->cols,
                                    ds->ncols, &f, &ferr);
            pol_filter_free(f);
            if (rc != SL_OK)
                return sl_err_set(c->err, SL_EINVALID, "%s, field \"row_filter\": %s", c->where,
                                  ferr.msg);
        } else if (json_string_length(filter) > POL_FILTER_MAX_BYTES) {
            return bad(c, "row_filter", "longer than %d bytes", POL_FILTER_MAX_BYTES);
        }
    }
    desc = json_object_get(s, "description");
    if (desc != NULL && (!json_is_string(desc) || json_string_length(desc) > 1024))
        return bad(c, "description", "must be a string of at most 1024 bytes");
    return SL_OK;
}

static sl_code
check_statements(ctx *c, const json_t *doc, const pol_dataset *ds, int no_read)
{
    const json_t *st = json_object_get(doc, "statements");
    size_t i, j;
    json_t *s;
    sl_code rc;

    snprintf(c->where, sizeof c->where, "policy");
    if (st == NULL || !json_is_array(st))
        return bad(c, "statements", "required: an array of statements");
    if (json_array_size(st) > POL_MAX_STATEMENTS)
        return bad(c, "statements", "more than %d statements", POL_MAX_STATEMENTS);
    json_array_foreach(st, i, s)
    {
        if ((rc = check_statement(c, s, i, ds, no_read)) != SL_OK)
            return rc;
        for (j = 0; j < i; j++)
            if (strcmp(json_string_value(json_object_get(json_array_get(st, j), "id")),
                       json_string_value(json_object_get(s, "id"))) == 0)
                return bad(c, "id", "another statement has the same id");
    }
    return SL_OK;
}

/* no_read: refuse statements naming dataset.read (a restricted dataset's new policy). */
static sl_code
doc_check(const json_t *doc, const pol_dataset *ds, int no_read, sl_err *err)
{
    static const char *const known[] = {"statements", NULL};
    ctx c = {"policy", err};
    sl_code rc;

    if (!json_is_object(doc))
        return bad(&c, NULL, "a policy document is an object {\"statements\": [...]}");
    if ((rc = only_fields(&c, doc, known, NULL)) != SL_OK)
        return rc;
    return check_statements(&c, doc, ds, no_read);
}

sl_code
pol_doc_check(const json_t *doc, const pol_dataset *ds, sl_err *err)
{
    return doc_check(doc, ds, strcmp(ds->classification, "restricted") == 0, err);
}

static int
classification_ok(const char *s)
{
    return classification_valid(s);
}

static int
tag_ok(const char *s)
{
    return sl_tag_valid(s);
}

sl_code
pol_global_check(const json_t *doc, sl_err *err)
{
    static const char *const known[] = {"applies_to", "statements", NULL};
    static const char *const applies_known[] = {"classifications", "tags", NULL};
    ctx c = {"global policy", err};
    const json_t *applies, *cls, *tags;
    int only_restricted;
    sl_code rc;

    if (!json_is_object(doc))
        return bad(&c, NULL, "a global policy is an object {\"applies_to\", \"statements\"}");
    if ((rc = only_fields(&c, doc, known, NULL)) != SL_OK)
        return rc;
    applies = json_object_get(doc, "applies_to");
    if (applies == NULL || !json_is_object(applies))
        return bad(&c, "applies_to", "required: {\"classifications\": [...], \"tags\": [...]}");
    if ((rc = only_fields(&c, applies, applies_known, "applies_to")) != SL_OK)
        return rc;
    cls = json_object_get(applies, "classifications");
    tags = json_object_get(applies, "tags");
    if (cls != NULL && (rc = string_list(&c, cls, "applies_to.classifications", 4,
                                         classification_ok, "a classification")) != SL_OK)
        return rc;
    if (tags != NULL && (rc = string_list(&c, tags, "applies_to.tags", POL_MAX_LIST, tag_ok,
                                          "a column tag")) != SL_OK)
        return rc;
    if ((cls == NULL || json_array_size(cls) == 0) && (tags == NULL || json_array_size(tags) == 0))
        return bad(&c, "applies_to", "give at least one classification or tag");
    /* a grant of dataset.read that could only ever reach restricted datasets */
    only_restricted = (tags == NULL || json_array_size(tags) == 0) && json_array_size(cls) == 1 &&
                      strcmp(json_string_value(json_array_get(cls, 0)), "restricted") == 0;
    return check_statements(&c, doc, NULL, only_restricted);
}

/* ---- compiled form ---- */

typedef struct {
    char id[POL_MAX_ID + SL_MAX_NAME + 16]; /* "s1" or "global:name/s1" */
    int deny, restricts, broken;
    uint32_t actions;
    size_t source;
    char **roles, **names, **akeys, **avals, **purposes;
    uint64_t *role_h, *name_h, *attr_h, *purpose_h;
    size_t nroles, nnames, nattrs, npurposes;
    int64_t nb, na;
    uint32_t *deny_cols;
    size_t ndeny;
    uint32_t *mask_cols;
    uint8_t *mask_kinds;
    size_t nmask;
    pol_filter *filter;
    char *filter_text;
} stmt;

struct pol_compiled {
    int restricted;
    size_t ncols;
    stmt *st;
    size_t nst;
    struct {
        char name[SL_MAX_NAME + 8]; /* "dataset" or "global:<name>" */
        int64_t version;
    } * src;
    size_t nsrc;
};

static char **
strings_of(const json_t *a, size_t *n, uint64_t **h)
{
    char **out;
    size_t i;

    *n = a != NULL ? json_array_size(a) : 0;
    out = sl_xcalloc(*n + 1, sizeof *out);
    *h = sl_xcalloc(*n + 1, sizeof **h);
    for (i = 0; i < *n; i++) {
        out[i] = sl_xstrdup(json_string_value(json_array_get(a, i)));
        (*h)[i] = hash_str(out[i]);
    }
    return out;
}

static void
free_strings(char **s, size_t n)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static void
stmt_clear(stmt *s)
{
    free_strings(s->roles, s->nroles);
    free_strings(s->names, s->nnames);
    free_strings(s->akeys, s->nattrs);
    free_strings(s->avals, s->nattrs);
    free_strings(s->purposes, s->npurposes);
    free(s->role_h);
    free(s->name_h);
    free(s->attr_h);
    free(s->purpose_h);
    free(s->deny_cols);
    free(s->mask_cols);
    free(s->mask_kinds);
    pol_filter_free(s->filter);
    free(s->filter_text);
}

void
pol_compiled_free(pol_compiled *p)
{
    size_t i;

    if (p == NULL)
        return;
    for (i = 0; i < p->nst; i++)
        stmt_clear(&p->st[i]);
    free(p->st);
    free(p->src);
    free(p);
}

/* Adds col to a statement's denied columns (once). */
static void
add_deny(stmt *s, uint32_t col)
{
    size_t i;

    for (i = 0; i < s->ndeny; i++)
        if (s->deny_cols[i] == col)
            return;
    s->deny_cols[s->ndeny++] = col;
}

/*
 * Two masks on one column combined: the stricter of null > redact > the rest; hash, year
 * and partial each show something the others hide (equality, the year, the last
 * characters), so two different ones of them make redact.
 */
static pol_mask
combine(pol_mask a, pol_mask b)
{
    if (a == b || b == POL_MASK_NONE)
        return a;
    if (a == POL_MASK_NONE)
        return b;
    if (a >= POL_MASK_REDACT || b >= POL_MASK_REDACT)
        return a > b ? a : b;
    return POL_MASK_REDACT;
}

/* Sets a column's mask in a statement; a column named twice (by name and by a tag) gets
 * both masks combined. */
static void
add_mask(stmt *s, uint32_t col, pol_mask m)
{
    size_t i;

    for (i = 0; i < s->nmask; i++)
        if (s->mask_cols[i] == col) {
            s->mask_kinds[i] = (uint8_t)combine((pol_mask)s->mask_kinds[i], m);
            return;
        }
    s->mask_cols[s->nmask] = col;
    s->mask_kinds[s->nmask++] = (uint8_t)m;
}

/* Whether column c of ds is the one a reference names: by its name, or by "tag:x". */
static int
names_column(const pol_dataset *ds, size_t c, const char *ref)
{
    const char *tag;

    return tag_ref(ref, &tag) ? has_tag(&ds->cols[c], tag) : strcmp(ds->cols[c].name, ref) == 0;
}

/* One statement (already validated) compiled for ds. */
static void
compile_statement(const json_t *j, const pol_dataset *ds, const char *global, size_t source,
                  stmt *s)
{
    const json_t *p = json_object_get(j, "principals"), *cols = json_object_get(j, "columns");
    const json_t *attrs = json_object_get(p, "attributes"), *a, *filter;
    const char *k;
    json_t *v;
    size_t i;

    memset(s, 0, sizeof *s);
    if (global != NULL)
        snprintf(s->id, sizeof s->id, "global:%s/%s", global,
                 json_string_value(json_object_get(j, "id")));
    else
        snprintf(s->id, sizeof s->id, "%s", json_string_value(json_object_get(j, "id")));
    s->source = source;
    s->deny = strcmp(json_string_value(json_object_get(j, "effect")), "deny") == 0;
    json_array_foreach(json_object_get(j, "actions"), i, a)
    {
        uint32_t bit;

        if (strcmp(json_string_value(a), "*") == 0)
            s->actions |= POL_ACT_ALL;
        else if (pol_action_parse(json_string_value(a), &bit) == SL_OK)
            s->actions |= bit;
    }
    s->roles = strings_of(json_object_get(p, "roles"), &s->nroles, &s->role_h);
    s->names = strings_of(json_object_get(p, "names"), &s->nnames, &s->name_h);
    s->purposes = strings_of(json_object_get(j, "purposes"), &s->npurposes, &s->purpose_h);
    s->nattrs = attrs != NULL ? json_object_size(attrs) : 0;
    s->akeys = sl_xcalloc(s->nattrs + 1, sizeof *s->akeys);
    s->avals = sl_xcalloc(s->nattrs + 1, sizeof *s->avals);
    s->attr_h = sl_xcalloc(s->nattrs + 1, sizeof *s->attr_h);
    i = 0;
    if (attrs != NULL)
        json_object_foreach((json_t *)attrs, k, v)
        {
            s->akeys[i] = sl_xstrdup(k);
            s->avals[i] = sl_xstrdup(json_string_value(v));
            s->attr_h[i] = hash_pair(k, s->avals[i]);
            i++;
        }
    s->nb = INT64_MIN;
    s->na = INT64_MAX;
    if (json_is_string(json_object_get(j, "not_before")) &&
        sl_time_parse(json_string_value(json_object_get(j, "not_before")), &s->nb) != SL_OK)
        s->broken = 1;
    if (json_is_string(json_object_get(j, "not_after")) &&
        sl_time_parse(json_string_value(json_object_get(j, "not_after")), &s->na) != SL_OK)
        s->broken = 1;
    s->deny_cols = sl_xcalloc(ds->ncols + 1, sizeof *s->deny_cols);
    s->mask_cols = sl_xcalloc(ds->ncols + 1, sizeof *s->mask_cols);
    s->mask_kinds = sl_xcalloc(ds->ncols + 1, 1);
    if (cols != NULL && json_is_object(cols)) {
        const json_t *deny = json_object_get(cols, "deny"), *mask = json_object_get(cols, "mask");

        s->restricts |= json_array_size(deny) > 0 || json_object_size(mask) > 0;
        json_array_foreach(deny, i, a)
        {
            size_t c;

            for (c = 0; c < ds->ncols; c++)
                if (names_column(ds, c, json_string_value(a)))
                    add_deny(s, (uint32_t)c);
        }
        json_object_foreach((json_t *)mask, k, v)
        {
            pol_mask m = POL_MASK_NULL;
            size_t c;

            if (pol_mask_parse(json_string_value(v), &m) != SL_OK)
                m = POL_MASK_NULL;
            for (c = 0; c < ds->ncols; c++) {
                if (!names_column(ds, c, k))
                    continue;
                /* a mask the column's type cannot take (a global policy's, reaching a
                 * column by its tag) becomes null: stricter, never weaker */
                add_mask(s, (uint32_t)c, pol_mask_fits(m, ds->cols[c].type) ? m : POL_MASK_NULL);
            }
        }
    }
    filter = json_object_get(j, "row_filter");
    if (filter != NULL && json_is_string(filter)) {
        sl_err ferr;

        s->restricts = 1;
        s->filter_text = sl_xstrdup(json_string_value(filter));
        sl_err_clear(&ferr);
        if (pol_filter_compile(s->filter_text, strlen(s->filter_text), ds->cols, ds->ncols,
                               &s->filter, &ferr) != SL_OK)
            s->broken = 1; /* a global filter naming a column this dataset lacks */
    }
}

static int
applies_to(const json_t *global, const pol_dataset *ds)
{
    const json_t *applies = json_object_get(global, "applies_to");
    json_t *x;
    size_t i, c;

    json_array_foreach(json_object_get(applies, "classifications"), i, x)
    {
        if (strcmp(json_string_value(x), ds->classification) == 0)
            return 1;
    }
    json_array_foreach(json_object_get(applies, "tags"), i, x)
    {
        for (c = 0; c < ds->ncols; c++)
            if (has_tag(&ds->cols[c], json_string_value(x)))
                return 1;
    }
    return 0;
}

sl_code
pol_compile(const pol_dataset *ds, const json_t *doc, int64_t doc_version,
            const pol_global *globals, size_t nglobals, pol_compiled **out, sl_err *err)
{
    pol_compiled *p;
    size_t g, i, total = 0;
    sl_code rc;

    *out = NULL;
    if (ds->ncols > POL_MAX_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "more than %d columns", POL_MAX_COLUMNS);
    if (nglobals > POL_MAX_GLOBALS)
        return sl_err_set(err, SL_ETOOLARGE, "more than %d global policies", POL_MAX_GLOBALS);
    /* everything is checked again here: a stored document is trusted no more than a new one */
    /* ... but a policy put before its dataset was raised to restricted still compiles:
     * the decision never grants dataset.read there anyway */
    if (doc != NULL && (rc = doc_check(doc, ds, 0, err)) != SL_OK)
        return rc;
    for (g = 0; g < nglobals; g++) {
        if ((rc = pol_global_check(globals[g].doc, err)) != SL_OK)
            return rc;
        if (applies_to(globals[g].doc, ds))
            total += json_array_size(json_object_get(globals[g].doc, "statements"));
    }
    if (doc != NULL)
        total += json_array_size(json_object_get(doc, "statements"));
    if (total > POL_MAX_COMPILED)
        return sl_err_set(err, SL_ETOOLARGE, "more than %d statements apply to the dataset",
                          POL_MAX_COMPILED);
    p = sl_xcalloc(1, sizeof *p);
    p->restricted = strcmp(ds->classification, "restricted") == 0;
    p->ncols = ds->ncols;
    p->st = sl_xcalloc(total + 1, sizeof *p->st);
    p->src = sl_xcalloc(nglobals + 1, sizeof *p->src);
    snprintf(p->src[0].name, sizeof p->src[0].name, "dataset");
    p->src[0].version = doc != NULL ? doc_version : 0;
    p->nsrc = 1;
    if (doc != NULL) {
        json_t *s;
        json_array_foreach(json_object_get(doc, "statements"), i, s)
        {
            compile_statement(s, ds, NULL, 0, &p->st[p->nst++]);
        }
    }
    for (g = 0; g < nglobals; g++) {
        json_t *s;

        if (!applies_to(globals[g].doc, ds))
            continue;
        snprintf(p->src[p->nsrc].name, sizeof p->src[p->nsrc].name, "global:%s", globals[g].name);
        p->src[p->nsrc].version = globals[g].version;
        json_array_foreach(json_object_get(globals[g].doc, "statements"), i, s)
        {
            compile_statement(s, ds, globals[g].name, p->nsrc, &p->st[p->nst++]);
        }
        p->nsrc++;
    }
    *out = p;
    return SL_OK;
}

/* ---- subjects and decisions ---- */

void
pol_subject_init(pol_subject *s, const char *name, const char *const *roles, size_t nroles,
                 const char *const *akeys, const char *const *avals, size_t nattrs, int is_owner)
{
    size_t i;

    memset(s, 0, sizeof *s);
    s->name = name;
    s->name_h = hash_str(name);
    s->is_owner = is_owner;
    s->nroles = nroles < POL_SUBJECT_MAX ? nroles : POL_SUBJECT_MAX;
    s->nattrs = nattrs < POL_SUBJECT_MAX ? nattrs : POL_SUBJECT_MAX;
    s->truncated = nroles > POL_SUBJECT_MAX || nattrs > POL_SUBJECT_MAX;
    for (i = 0; i < s->nroles; i++) {
        s->roles[i] = roles[i];
        s->role_h[i] = hash_str(roles[i]);
    }
    for (i = 0; i < s->nattrs; i++) {
        s->akeys[i] = akeys[i];
        s->avals[i] = avals[i];
        s->attr_h[i] = hash_pair(akeys[i], avals[i]);
    }
}

/* One of a statement's strings among the subject's (hash first, then the text). */
static int
any_of(char *const *want, const uint64_t *want_h, size_t nwant, const char *const *have,
       const uint64_t *have_h, size_t nhave)
{
    size_t i, j;

    for (i = 0; i < nwant; i++)
        for (j = 0; j < nhave; j++)
            if (want_h[i] == have_h[j] && strcmp(want[i], have[j]) == 0)
                return 1;
    return 0;
}

static int
principal_matches(const stmt *s, const pol_subject *who)
{
    size_t i, j;

    if (s->nroles > 0 &&
        !any_of(s->roles, s->role_h, s->nroles, who->roles, who->role_h, who->nroles))
        return 0;
    if (s->nnames > 0 && !any_of(s->names, s->name_h, s->nnames, &who->name, &who->name_h, 1))
        return 0;
    for (i = 0; i < s->nattrs; i++) {
        int found = 0;

        for (j = 0; j < who->nattrs && !found; j++)
            found = s->attr_h[i] == who->attr_h[j] && strcmp(s->akeys[i], who->akeys[j]) == 0 &&
                    strcmp(s->avals[i], who->avals[j]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

static int
purpose_matches(const stmt *s, const pol_request *req)
{
    size_t i;

    if (s->npurposes == 0)
        return 1;
    if (req->purpose == NULL)
        return 0;
    for (i = 0; i < s->npurposes; i++)
        if (s->purpose_h[i] == req->purpose_h && strcmp(s->purposes[i], req->purpose) == 0)
            return 1;
    return 0;
}

void
pol_request_init(pol_request *r, uint32_t action, const char *purpose, int64_t now_us)
{
    memset(r, 0, sizeof *r);
    r->action = action;
    r->purpose = purpose;
    r->purpose_h = purpose != NULL ? hash_str(purpose) : 0;
    r->now_us = now_us;
}

static void
refuse(pol_decision *d, const char *why)
{
    d->allow = 0;
    snprintf(d->reason, sizeof d->reason, "%s", why);
}

void
pol_decide(const pol_compiled *p, const pol_subject *who, const pol_request *req, pol_decision *d)
{
    size_t i;
    int owner_right;

    d->policy = p;
    d->allow = 0;
    d->owner_right = 0;
    d->ndeciding = d->napplied = 0;
    d->reason[0] = '\0';
    if (who->truncated) {
        refuse(d, "the principal has more roles or attributes than a decision considers");
        return;
    }
    if (req->action == 0 || (req->action & (req->action - 1)) != 0 ||
        (req->action & ~(uint32_t)POL_ACT_ALL) != 0) {
        refuse(d, "not one action");
        return;
    }
    /* pass 1: deny statements without restrictions decide alone */
    for (i = 0; i < p->nst; i++) {
        const stmt *s = &p->st[i];

        if (!(s->actions & req->action) || req->now_us < s->nb || req->now_us > s->na ||
            !purpose_matches(s, req) || !principal_matches(s, who))
            continue;
        /* a statement whose row filter cannot apply to this dataset (a global one naming a
         * column it lacks) cannot restrict the view as it should: it denies, allow or deny */
        if ((s->deny && !s->restricts) || s->broken) {
            if (d->ndeciding < POL_MAX_DECIDING)
                d->deciding[d->ndeciding++] = (uint32_t)i;
            continue;
        }
        if (d->napplied == POL_MAX_APPLIED) {
            d->ndeciding = 0;
            refuse(d, "more statements apply than a decision considers");
            return;
        }
        d->applied[d->napplied++] = (uint32_t)i;
    }
    if (d->ndeciding > 0) {
        d->napplied = 0;
        snprintf(d->reason, sizeof d->reason, "denied by statement \"%.120s\"",
                 p->st[d->deciding[0]].id);
        return;
    }
    if (req->action == POL_ACT_READ && p->restricted) {
        d->napplied = 0;
        refuse(d, "restricted dataset: its rows never leave the gateway (compute only)");
        return;
    }
    for (i = 0; i < d->napplied; i++)
        if (!p->st[d->applied[i]].deny && d->ndeciding < POL_MAX_DECIDING)
            d->deciding[d->ndeciding++] = d->applied[i];
    owner_right = who->is_owner && (req->action & (POL_ACT_DESCRIBE | POL_ACT_READ | POL_ACT_WRITE |
                                                   POL_ACT_DELETE | POL_ACT_MANAGE)) != 0;
    if (d->ndeciding == 0 && !owner_right) {
        d->napplied = 0;
        snprintf(d->reason, sizeof d->reason, "no statement allows %s",
                 pol_action_name(req->action));
        return;
    }
    d->allow = 1;
    d->owner_right = owner_right;
    if (d->ndeciding > 0)
        snprintf(d->reason, sizeof d->reason, "allowed by statement \"%.120s\"",
                 p->st[d->deciding[0]].id);
    else
        snprintf(d->reason, sizeof d->reason, "the dataset's owner");
}

/* ---- the view of an allowed decision ---- */

void
pol_decision_view(const pol_decision *d, uint8_t *denied, uint8_t *mask)
{
    const pol_compiled *p = d->policy;
    size_t i, j;

    memset(denied, 0, p->ncols);
    memset(mask, 0, p->ncols);
    for (i = 0; i < d->napplied; i++) {
        const stmt *s = &p->st[d->applied[i]];

        for (j = 0; j < s->ndeny; j++)
            denied[s->deny_cols[j]] = 1;
        for (j = 0; j < s->nmask; j++)
            mask[s->mask_cols[j]] =
                (uint8_t)combine((pol_mask)mask[s->mask_cols[j]], (pol_mask)s->mask_kinds[j]);
    }
    for (i = 0; i < p->ncols; i++)
        if (denied[i])
            mask[i] = POL_MASK_NONE;
}

size_t
pol_decision_filters(const pol_decision *d, const pol_filter **f, int *negate, size_t max)
{
    const pol_compiled *p = d->policy;
    size_t i, n = 0;

    for (i = 0; i < d->napplied; i++) {
        const stmt *s = &p->st[d->applied[i]];

        if (s->filter == NULL)
            continue;
        if (n < max) {
            f[n] = s->filter;
            negate[n] = s->deny;
        }
        n++;
    }
    return n;
}

sl_code
pol_decision_filter_text(const pol_decision *d, sl_buf *out)
{
    const pol_compiled *p = d->policy;
    size_t i, n = 0;
    sl_code rc = SL_OK;

    for (i = 0; i < d->napplied && rc == SL_OK; i++) {
        const stmt *s = &p->st[d->applied[i]];

        if (s->filter_text == NULL)
            continue;
        if (n++ > 0)
            rc = sl_buf_puts(out, " and ");
        if (rc == SL_OK)
            rc = sl_buf_printf(out, "%s(%s)", s->deny ? "not " : "", s->filter_text);
    }
    return rc;
}

const char *
pol_decision_statement(const pol_decision *d, size_t i)
{
    return i < d->ndeciding ? d->policy->st[d->deciding[i]].id : NULL;
}

size_t
pol_compiled_sources(const pol_compiled *p, const char **names, int64_t *versions, size_t max)
{
    size_t i;

    for (i = 0; i < p->nsrc && i < max; i++) {
        names[i] = p->src[i].name;
        versions[i] = p->src[i].version;
    }
    return p->nsrc;
}

size_t
pol_compiled_statements(const pol_compiled *p)
{
    return p->nst;
}

json_t *
pol_decision_json(const pol_decision *d, const pol_dataset *ds, int show_filter)
{
    const pol_compiled *p = d->policy;
    json_t *o = json_object(), *ids = json_array(), *masked = json_object(), *denied = json_array(),
           *versions = json_object();
    uint8_t *den = sl_xcalloc(p->ncols + 1, 1), *mask = sl_xcalloc(p->ncols + 1, 1);
    size_t i;

    for (i = 0; i < d->ndeciding; i++)
        json_array_append_new(ids, json_string(p->st[d->deciding[i]].id));
    if (d->allow && d->owner_right)
        json_array_append_new(ids, json_string(POL_OWNER_ID));
    if (d->allow) {
        pol_decision_view(d, den, mask);
        for (i = 0; i < p->ncols && i < ds->ncols; i++) {
            if (den[i])
                json_array_append_new(denied, json_string(ds->cols[i].name));
            else if (mask[i] != POL_MASK_NONE)
                json_object_set_new(masked, ds->cols[i].name,
                                    json_string(pol_mask_name((pol_mask)mask[i])));
        }
    }
    for (i = 0; i < p->nsrc; i++)
        json_object_set_new(versions, p->src[i].name, json_integer(p->src[i].version));
    json_object_set_new(o, "decision", json_string(d->allow ? "allow" : "deny"));
    json_object_set_new(o, "statements", ids);
    json_object_set_new(o, "masked_columns", masked);
    json_object_set_new(o, "denied_columns", denied);
    json_object_set_new(o, "reason", json_string(d->reason));
    json_object_set_new(o, "policy_versions", versions);
    if (d->allow && pol_decision_filters(d, NULL, NULL, 0) > 0) {
        sl_buf b;

        sl_buf_init(&b, (size_t)POL_MAX_APPLIED * (POL_FILTER_MAX_BYTES + 16));
        if (!show_filter)
            json_object_set_new(o, "row_filter", json_string(POL_FILTER_WITHHELD));
        else if (pol_decision_filter_text(d, &b) == SL_OK)
            json_object_set_new(o, "row_filter", json_string(b.data));
        else
            json_object_set_new(o, "row_filter", json_string(POL_FILTER_WITHHELD));
        sl_buf_free(&b);
    } else {
        json_object_set_new(o, "row_filter", json_null());
    }
    free(den);
    free(mask);
    return o;
}

/*
 * gateway/gw_policy.c: the one place where requests on datasets are decided. A decision
 * compiles the dataset's policy with the global policies that apply to it (policy/) and
 * decides for the request's principal, action and purpose; the audit event records what
 * decided it. Also the policy endpoints: a dataset's policy, global policies, and
 * /v1/authorize, which explains a decision without performing the request.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_http.h"

/* The dataset's columns as policy/ sees them; a column whose type is not known yet (no
 * upload, none declared) counts as a string: no filter or mask can have been accepted
 * on it (gw_h_policy_put), and no data exists to apply them to. */
static void
load_columns(gw_decision *g, const db_dataset *ds)
{
    const json_t *cols = json_object_get(ds->doc, "columns");
    size_t i, k, ntags = 0;
    json_t *c, *t;

    g->columns = json_incref((json_t *)cols);
    g->ncols = json_array_size(cols);
    json_array_foreach(cols, i, c)
    {
        ntags += json_array_size(json_object_get(c, "tags"));
    }
    g->cols = sl_xcalloc(g->ncols + 1, sizeof *g->cols);
    g->tags = sl_xcalloc(ntags + 1, sizeof *g->tags);
    ntags = 0;
    json_array_foreach(cols, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        st_type st;

        g->cols[i].name = json_string_value(json_object_get(c, "name"));
        g->cols[i].type = POL_STRING;
        if (type != NULL && st_type_parse(type, &st) == SL_OK)
            g->cols[i].type = (pol_type)st;
        g->cols[i].tags = &g->tags[ntags];
        json_array_foreach(json_object_get(c, "tags"), k, t)
        {
            g->tags[ntags++] = json_string_value(t);
        }
        g->cols[i].ntags = json_array_size(json_object_get(c, "tags"));
        if (g->cols[i].name == NULL)
            g->cols[i].name = "";
    }
    g->ds.classification = ds->classification;
    g->ds.cols = g->cols;
    g->ds.ncols = g->ncols;
}

void
gw_decision_free(gw_decision *g)
{
    if (g == NULL)
        return;
    pol_compiled_free(g->policy);
    free(g->cols);
    free(g->tags);
    json_decref(g->columns);
    json_decref(g->doc);
    db_globals_free(g->globals, g->nglobals);
    free(g);
}

/* The principal a decision is for. */
static void
subject(gw_decision *g, const db_principal *p, int is_owner)
{
    const char *k;
    size_t i, n = 0;
    json_t *v;

    json_array_foreach(p->roles, i, v)
    {
        if (n < POL_SUBJECT_MAX + 1 && json_is_string(v))
            g->roles[n++] = json_string_value(v);
    }
    g->nroles = n;
    n = 0;
    json_object_foreach(p->attributes, k, v)
    {
        if (n < POL_SUBJECT_MAX + 1 && json_is_string(v)) {
            g->akeys[n] = k;
            g->avals[n++] = json_string_value(v);
        }
    }
    g->nattrs = n;
    pol_subject_init(&g->who, p->name, g->roles, g->nroles, g->akeys, g->avals, g->nattrs,
                     is_owner);
}

sl_code
gw_decide_with(gw_req *r, PGconn *c, const db_dataset *ds, const db_principal *who, uint32_t action,
               const char *purpose, const db_global *shared, size_t nshared, gw_decision **out,
               sl_err *err)
{
    gw_decision *g = sl_xcalloc(1, sizeof *g);
    pol_global globals[POL_MAX_GLOBALS];
    const db_global *gl = shared;
    size_t i, n = nshared;
    pol_request req;
    sl_code rc;

    (void)r;
    *out = NULL;
    load_columns(g, ds);
    if ((rc = db_policy_get(c, ds->id, &g->doc, &g->policy_version, err)) != SL_OK)
        goto fail;
    if (shared == NULL) { /* read now, owned by the decision */
        if ((rc = db_globals_current(c, &g->globals, &g->nglobals, err)) != SL_OK)
            goto fail;
        gl = g->globals;
        n = g->nglobals;
    }
    if (n > POL_MAX_GLOBALS) {
        rc = sl_err_set(err, SL_EINTERNAL, "more global policies than a decision considers");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        globals[i].name = gl[i].name;
        globals[i].doc = gl[i].doc;
        globals[i].version = gl[i].version;
    }
    if ((rc = pol_compile(&g->ds, g->doc, g->policy_version, globals, n, &g->policy, err)) !=
        SL_OK) {
        /* what was accepted once no longer compiles: refuse everything (fail closed) */
        sl_err_detail(err, "dataset %s: stored policy does not compile: %s", ds->name, err->msg);
        rc = sl_err_set(err, SL_EINTERNAL, "the policy of dataset \"%s\" cannot be applied",
                        ds->name);
        goto fail;
    }
    subject(g, who, who->id == ds->owner_id);
    pol_request_init(&req, action, purpose, sl_now_us());
    pol_decide(g->policy, &g->who, &req, &g->d);
    *out = g;
    return SL_OK;
fail:
    gw_decision_free(g);
    return rc;
}

sl_code
gw_decide_for(gw_req *r, PGconn *c, const db_dataset *ds, const db_principal *who, uint32_t action,
              const char *purpose, gw_decision **out, sl_err *err)
{
    return gw_decide_with(r, c, ds, who, action, purpose, NULL, 0, out, err);
}

/* Records the decision in the request's audit event: the trail shows the filter text. */
static void
record(gw_req *r, const gw_decision *g)
{
    if (r->detail == NULL)
        r->detail = json_object();
    json_object_set_new(r->detail, "policy", pol_decision_json(&g->d, &g->ds, 1));
}

int
gw_allowed(gw_req *r, PGconn *c, const db_dataset *ds, const char *action, gw_decision **out)
{
    gw_decision *g = NULL;
    uint32_t bit;
    sl_err err;

    if (out != NULL)
        *out = NULL;
    sl_err_clear(&err);
    if (pol_action_parse(action, &bit) != SL_OK)
        sl_panic("gw_allowed: unknown action %s", action);
    if (gw_decide_for(r, c, ds, &r->who, bit, r->purpose[0] ? r->purpose : NULL, &g, &err) !=
        SL_OK) {
        gw_reason(r, "no decision: %s", err.msg);
        gw_reply_err(r, &err);
        return 0;
    }
    record(r, g);
    gw_reason(r, "%s", g->d.reason);
    if (!g->d.allow) {
        gw_reply_error(r, SL_EDENIED, "%s on dataset \"%s\" is not allowed: %s", action, ds->name,
                       g->d.reason);
        gw_decision_free(g);
        return 0;
    }
    if (out != NULL)
        *out = g;
    else
        gw_decision_free(g);
    return 1;
}

/* ---- a dataset's policy ---- */

/* 1 when some statement masks a column or filters rows (they need the columns' types). */
static int
needs_types(const json_t *doc)
{
    json_t *s;
    size_t i;

    json_array_foreach(json_object_get(doc, "statements"), i, s)
    {
        const json_t *f = json_object_get(s, "row_filter");
        if (json_object_size(json_object_get(json_object_get(s, "columns"), "mask")) > 0 ||
            (f != NULL && !json_is_null(f)))
            return 1;
    }
    return 0;
}

static int
types_known(const db_dataset *ds)
{
    json_t *c;
    size_t i;

    json_array_foreach(json_object_get(ds->doc, "columns"), i, c)
    {
        if (json_object_get(c, "type") == NULL)
            return 0;
    }
    return 1;
}

void
gw_h_policy_put(gw_req *r)
{
    gw_decision *g = NULL;
    db_dataset ds;
    json_t *doc;
    PGconn *c = NULL;
    int version = 0;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((doc = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (!gw_path_dataset(r, c, 1, &ds) || !gw_allowed(r, c, &ds, "dataset.manage", &g))
        goto out;
    if (pol_doc_check(doc, &g->ds, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (needs_types(doc) && !types_known(&ds)) {
        gw_reply_error(r, SL_ECONFLICT,
                       "the dataset's column types are not known yet: declare them or upload a "
                       "version before masking columns or filtering rows");
        goto out;
    }
    if (db_policy_put(c, ds.id, doc, r->who.id, &version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    json_object_set_new(r->detail, "policy_version", json_integer(version));
    json_object_set_new(
        r->detail, "statements",
        json_integer((json_int_t)json_array_size(json_object_get(doc, "statements"))));
    gw_reply_json(r, 200, json_pack("{s:i}", "policy_version", version));
out:
    gw_decision_free(g);
    db_dataset_clear(&ds);
    json_decref(doc);
}

void
gw_h_policy_get(gw_req *r)
{
    gw_decision *g = NULL;
    db_dataset ds;
    json_t *doc = NULL;
    PGconn *c;
    int version = 0, ok;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (!gw_path_dataset(r, c, 0, &ds))
        goto out;
    /* dataset.manage, or audit.read: an auditor's or admin's role, or a statement's grant */
    ok = gw_has_role(r, "auditor") || gw_has_role(r, "admin");
    if (ok) {
        gw_reason(r, "role %s", gw_has_role(r, "auditor") ? "auditor" : "admin");
    } else {
        if (gw_decide_for(r, c, &ds, &r->who, POL_ACT_MANAGE, r->purpose[0] ? r->purpose : NULL, &g,
                          &err) != SL_OK) {
            gw_reply_err(r, &err);
            goto out;
        }
        if (!(ok = g->d.allow)) {
            gw_decision_free(g);
            g = NULL;
            if (gw_decide_for(r, c, &ds, &r->who, POL_ACT_AUDIT, r->purpose[0] ? r->purpose : NULL,
                              &g, &err) != SL_OK) {
                gw_reply_err(r, &err);
                goto out;
            }
            ok = g->d.allow;
        }
        record(r, g);
        gw_reason(r, "%s", g->d.reason);
        if (!ok) {
            gw_reply_error(r, SL_EDENIED,
                           "reading the policy of dataset \"%s\" needs dataset.manage or "
                           "audit.read: %s",
                           ds.name, g->d.reason);
            goto out;
        }
    }
    if (db_policy_get(c, ds.id, &doc, &version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    json_object_set_new(r->detail, "policy_version", json_integer(version));
    /* row filters are shown to the owner, admin and auditor only */
    if (doc != NULL &&
        !(r->who.id == ds.owner_id || gw_has_role(r, "admin") || gw_has_role(r, "auditor"))) {
        json_t *st;
        size_t i;
        json_array_foreach(json_object_get(doc, "statements"), i, st)
        {
            const json_t *f = json_object_get(st, "row_filter");
            if (f != NULL && !json_is_null(f))
                json_object_set_new(st, "row_filter", json_string(POL_FILTER_WITHHELD));
        }
    }
    gw_reply_json(r, 200,
                  json_pack("{s:i, s:o}", "policy_version", version, "document",
                            doc != NULL ? doc : json_pack("{s:[]}", "statements")));
    doc = NULL;
out:
    gw_db_put(r, c, SL_OK);
    gw_decision_free(g);
    db_dataset_clear(&ds);
}

/* ---- global policies ---- */

static int
policy_name(gw_req *r)
{
    if (!sl_name_valid(r->params[0])) {
        snprintf(r->resource, sizeof r->resource, "policies/?");
        gw_reply_error(r, SL_EBADREQ, "a policy name must match ^[a-z][a-z0-9_.-]{0,62}$");
        return 0;
    }
    snprintf(r->resource, sizeof r->resource, "policies/%.63s", r->params[0]);
    r->detail = json_pack("{s:s}", "policy", r->params[0]);
    return 1;
}

/*
 * Whether the global policies, with name's replaced by doc, stay within what a decision
 * compiles: POL_MAX_GLOBALS of them, and room for a dataset's own POL_MAX_STATEMENTS
 * next to all of their statements (checked under a lock: two puts do not both fit).
 */
static sl_code
globals_fit(PGconn *c, const char *name, const json_t *doc, sl_err *err)
{
    db_global *g = NULL;
    size_t n = 0, i, count = 1, st = json_array_size(json_object_get(doc, "statements"));
    sl_code rc;

    if ((rc = db_globals_current(c, &g, &n, err)) != SL_OK)
        return rc;
    for (i = 0; i < n; i++) {
        if (strcmp(g[i].name, name) == 0)
            continue;
        count++;
        st += json_array_size(json_object_get(g[i].doc, "statements"));
    }
    db_globals_free(g, n);
    if (count > POL_MAX_GLOBALS)
        return sl_err_set(err, SL_EINVALID, "at most %d global policies", POL_MAX_GLOBALS);
    if (st > POL_MAX_COMPILED - POL_MAX_STATEMENTS)
        return sl_err_set(err, SL_EINVALID,
                          "the global policies would hold more than %d statements together",
                          POL_MAX_COMPILED - POL_MAX_STATEMENTS);
    return SL_OK;
}

void
gw_h_global_put(gw_req *r)
{
    json_t *doc;
    PGconn *c = NULL;
    int version = 0;
    sl_err err;

    sl_err_clear(&err);
    if (!policy_name(r) || (doc = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (pol_global_check(doc, &err) != SL_OK || gw_txn_begin(r, &c, &err) != SL_OK ||
        db_exec(c, "SELECT pg_advisory_xact_lock(7560302)", &err) != SL_OK ||
        globals_fit(c, r->params[0], doc, &err) != SL_OK ||
        db_global_put(c, r->params[0], doc, r->who.id, &version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        json_decref(doc);
        return;
    }
    json_object_set_new(r->detail, "policy_version", json_integer(version));
    gw_reply_json(r, 200, json_pack("{s:s, s:i}", "name", r->params[0], "policy_version", version));
    json_decref(doc);
}

void
gw_h_global_delete(gw_req *r)
{
    PGconn *c = NULL;
    int version = 0;
    sl_err err;

    sl_err_clear(&err);
    if (!policy_name(r))
        return;
    if (gw_txn_begin(r, &c, &err) != SL_OK ||
        db_global_put(c, r->params[0], NULL, r->who.id, &version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    json_object_set_new(r->detail, "policy_version", json_integer(version));
    gw_reply_status(r, 204);
}

void
gw_h_global_list(gw_req *r)
{
    db_global *g = NULL;
    const char *after, *next = NULL;
    json_t *items;
    size_t i, n = 0;
    int limit;
    PGconn *c;
    sl_err err;

    sl_err_clear(&err);
    if (!gw_list_args(r, &limit, &after))
        return;
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (db_globals_current(c, &g, &n, &err) != SL_OK) {
        gw_db_put(r, c, err.code);
        gw_reply_err(r, &err);
        return;
    }
    gw_db_put(r, c, SL_OK);
    items = json_array();
    for (i = 0; i < n; i++) {
        if (after != NULL && strcmp(g[i].name, after) <= 0)
            continue;
        if ((int)json_array_size(items) == limit) {
            next = g[i - 1].name;
            break;
        }
        json_array_append_new(
            items, json_pack("{s:s, s:i, s:O, s:O, s:s}", "name", g[i].name, "policy_version",
                             g[i].version, "applies_to", json_object_get(g[i].doc, "applies_to"),
                             "statements", json_object_get(g[i].doc, "statements"), "created_at",
                             g[i].created_at));
    }
    gw_reply_json(r, 200, json_pack("{s:o, s:s?}", "items", items, "next", next));
    db_globals_free(g, n);
}

/* ---- explaining a decision ---- */

void
gw_h_authorize(gw_req *r)
{
    static const char *const fields[] = {"principal", "action",  "dataset",
                                         "purpose",   "columns", NULL};
    const char *pname, *aname, *dname, *purpose = NULL;
    const json_t *cols;
    gw_decision *g = NULL;
    db_principal who;
    db_dataset ds;
    json_t *body, *ans = NULL, *x;
    uint32_t action;
    PGconn *c = NULL;
    size_t i, k;
    int show;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&who, 0, sizeof who);
    memset(&ds, 0, sizeof ds);
    if ((body = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_json_only(body, fields, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    pname = json_string_value(json_object_get(body, "principal"));
    aname = json_string_value(json_object_get(body, "action"));
    dname = json_string_value(json_object_get(body, "dataset"));
    cols = json_object_get(body, "columns");
    if (json_object_get(body, "purpose") != NULL &&
        !json_is_null(json_object_get(body, "purpose"))) {
        purpose = json_string_value(json_object_get(body, "purpose"));
        if (purpose == NULL || !sl_name_valid(purpose)) {
            gw_reply_error(r, SL_EINVALID,
                           "field \"purpose\" must be a word matching "
                           "^[a-z][a-z0-9_.-]{0,62}$");
            goto out;
        }
    }
    if (pname == NULL || !sl_name_valid(pname) || dname == NULL || !sl_name_valid(dname)) {
        gw_reply_error(r, SL_EINVALID, "fields \"principal\" and \"dataset\" are required names");
        goto out;
    }
    if (aname == NULL || pol_action_parse(aname, &action) != SL_OK) {
        gw_reply_error(r, SL_EINVALID,
                       "field \"action\" must be one of dataset.describe, dataset.read, "
                       "dataset.write, dataset.delete, dataset.manage, compute.features, "
                       "compute.train, audit.read");
        goto out;
    }
    if (cols != NULL && !json_is_null(cols)) {
        if (!json_is_array(cols) || json_array_size(cols) > POL_MAX_COLUMNS) {
            gw_reply_error(r, SL_EINVALID, "field \"columns\" must be an array of column names");
            goto out;
        }
        json_array_foreach(cols, i, x)
        {
            if (!json_is_string(x)) {
                gw_reply_error(r, SL_EINVALID,
                               "field \"columns\" must be an array of column names");
                goto out;
            }
        }
    } else {
        cols = NULL;
    }
    r->detail = json_pack("{s:s, s:s, s:s, s:s?}", "principal", pname, "dataset", dname, "action",
                          aname, "purpose", purpose);
    if ((c = gw_db_or_reply(r)) == NULL)
        goto out;
    /* an owner explains decisions on the datasets they own; admin and auditor on any.
     * The authority is checked before anything else is looked up: an owner learns nothing
     * of other datasets or principals from the answer */
    show = gw_has_role(r, "admin") || gw_has_role(r, "auditor");
    rc = db_dataset_get(c, dname, 0, &ds, &err);
    if (!show && (rc == SL_ENOTFOUND || (rc == SL_OK && r->who.id != ds.owner_id))) {
        gw_reason(r, "not the owner of dataset %s", dname);
        gw_reply_error(r, SL_EDENIED, "an owner explains decisions on their own datasets only");
        goto out;
    }
    if (rc != SL_OK || db_principal_get(c, pname, &who, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (gw_decide_for(r, c, &ds, &who, action, purpose, &g, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    ans = pol_decision_json(&g->d, &g->ds, 1);
    if (cols != NULL) {
        /* the view of those columns only; a read naming a denied column is refused */
        json_t *den = json_array(), *mask = json_object();
        const char *refused = NULL;

        json_array_foreach(cols, i, x)
        {
            const char *name = json_string_value(x);
            int found = 0;
            json_t *d;

            for (k = 0; k < g->ncols; k++)
                found |= strcmp(g->cols[k].name, name) == 0;
            if (!found) {
                json_decref(den);
                json_decref(mask);
                gw_reply_error(r, SL_EINVALID,
                               "field \"columns\": dataset \"%s\" has no column "
                               "\"%s\"",
                               ds.name, name);
                goto out;
            }
            json_array_foreach(json_object_get(ans, "denied_columns"), k, d)
            {
                if (strcmp(json_string_value(d), name) == 0) {
                    json_array_append_new(den, json_string(name));
                    if (refused == NULL)
                        refused = name;
                }
            }
            if (json_object_get(json_object_get(ans, "masked_columns"), name) != NULL)
                json_object_set(mask, name,
                                json_object_get(json_object_get(ans, "masked_columns"), name));
        }
        json_object_set_new(ans, "denied_columns", den);
        json_object_set_new(ans, "masked_columns", mask);
        if (refused != NULL && g->d.allow) {
            char why[160];

            snprintf(why, sizeof why, "column \"%s\" is denied", refused);
            json_object_set_new(ans, "decision", json_string("deny"));
            json_object_set_new(ans, "reason", json_string(why));
        }
    }
    gw_reason(r, "explained: %s", json_string_value(json_object_get(ans, "decision")));
    json_object_set(r->detail, "explained", ans);
    gw_reply_json(r, 200, ans);
    ans = NULL;
out:
    if (c != NULL)
        gw_db_put(r, c, SL_OK);
    gw_decision_free(g);
    db_principal_clear(&who);
    db_dataset_clear(&ds);
    json_decref(ans);
    json_decref(body);
}

/* ---- a dataset's mask key ---- */

void
gw_mask_key_names(int64_t dataset, char purpose[48], char aad[64])
{
    snprintf(purpose, 48, "mask:%lld", (long long)dataset);
    snprintf(aad, 64, "sluice:wrapped-key:mask:%lld", (long long)dataset);
}

sl_code
gw_mask_key_create(gw_keys *keys, PGconn *c, int64_t dataset, sl_err *err)
{
    unsigned char w[CRY_KEY_BYTES + CRY_WRAP_OVERHEAD];
    char purpose[48], aad[64];
    cry_key *k = cry_key_random(CRY_KEY_BYTES);
    int mv;

    gw_mask_key_names(dataset, purpose, aad);
    gw_master_wrap(keys, aad, k->p, k->n, w, &mv);
    cry_key_free(k);
    return db_wrapped_key_put(c, purpose, mv, w, sizeof w, err);
}

/* The HMAC state of the dataset's mask key: made the first time a dataset older than
 * mask keys needs one (it commits at once: a key nobody used yet reveals nothing). */
static sl_code
mask_key(gw_keys *keys, PGconn *c, int64_t dataset, cry_mac **out, sl_err *err)
{
    char purpose[48], aad[64];
    unsigned char *blob = NULL;
    cry_key *k = NULL;
    size_t len = 0;
    int mv;
    sl_code rc = SL_OK;

    *out = NULL;
    gw_mask_key_names(dataset, purpose, aad);
    rc = db_wrapped_key_get(c, purpose, &mv, &blob, &len, err);
    if (rc == SL_ENOTFOUND) {
        /* under the key lock, as an upload's data key: a rotation cannot retire the master
         * version it is wrapped with meanwhile; another request making it too is a
         * conflict, after which theirs is read */
        sl_err_clear(err);
        if ((rc = db_exec(c, "BEGIN", err)) != SL_OK)
            return rc;
        if ((rc = db_lock_keys(c, 0, err)) == SL_OK)
            rc = gw_mask_key_create(keys, c, dataset, err);
        if (rc == SL_OK)
            rc = db_exec(c, "COMMIT", err);
        else
            db_rollback(c);
        if (rc != SL_OK && rc != SL_ECONFLICT)
            return rc;
        sl_err_clear(err);
        rc = db_wrapped_key_get(c, purpose, &mv, &blob, &len, err);
    }
    if (rc != SL_OK)
        return rc;
    if (gw_master_unwrap(keys, mv, aad, blob, len, &k) != SL_OK) {
        free(blob);
        sl_err_detail(err, "mask key of dataset %lld: master key version %d missing or wrong",
                      (long long)dataset, mv);
        return sl_err_set(err, SL_EUNAVAIL, "the dataset's mask key cannot be unwrapped");
    }
    free(blob);
    *out = cry_mac_new(k);
    cry_key_free(k);
    return SL_OK;
}

/* ---- the view of a read ---- */

struct gw_view {
    const gw_decision *g;
    cry_mac *mac;
    const pol_filter *f[POL_MAX_APPLIED];
    int neg[POL_MAX_APPLIED];
    size_t nf;
    size_t extra[POL_MAX_COLUMNS];
    size_t nextra;
    uint8_t *masked;   /* per projected column */
    st_type *mtypes;   /* per projected column, the type served */
    uint8_t *kinds;    /* per projected column, its pol_mask */
    const st_type *in; /* per projected column, as stored */
    st_view view;
};

/* The decoded columns as a filter reads them. */
static void
colview(const st_column *c, pol_colview *v)
{
    memset(v, 0, sizeof *v);
    v->type = (pol_type)c->type;
    v->nulls = c->nulls;
    v->i64 = c->i64;
    v->f64 = c->f64;
    v->b = c->b;
    v->off = c->off;
    v->str = c->str;
}

static sl_code
view_keep(void *ctx, const st_column *const *bycol, uint32_t rows, uint8_t *keep)
{
    gw_view *v = ctx;
    size_t ncols = v->g->ncols, i, k;
    pol_colview *cv = sl_xcalloc(ncols + 1, sizeof *cv);
    uint8_t *one = sl_xmalloc((size_t)rows + 1);
    sl_code rc = SL_OK;

    memset(keep, 1, rows);
    for (i = 0; i < ncols; i++)
        if (bycol[i] != NULL)
            colview(bycol[i], &cv[i]);
    for (i = 0; i < v->nf && rc == SL_OK; i++) {
        rc = v->neg[i] ? pol_filter_eval_false(v->f[i], cv, rows, one)
                       : pol_filter_eval(v->f[i], cv, rows, one);
        for (k = 0; k < rows; k++)
            keep[k] &= one[k];
    }
    if (rc != SL_OK)
        memset(keep, 0, rows);
    free(cv);
    free(one);
    return rc;
}

static sl_code
view_mask(void *ctx, size_t col, const st_column *in, st_column *out)
{
    gw_view *v = ctx;
    pol_mask m = (pol_mask)v->kinds[col];
    char num[ST_FLOAT_TEXT + 8];
    sl_buf b;
    sl_err err;
    uint32_t r;
    sl_code rc = SL_OK;

    sl_buf_init_wiped(&b, SL_MAX_CSV_FIELD + 1);
    sl_err_clear(&err);
    for (r = 0; r < in->rows && rc == SL_OK; r++) {
        st_field f = {"", 0, 1};
        const char *p = NULL;
        size_t n = 0;
        int is_null = 1;

        if (!in->nulls[r]) {
            switch (in->type) {
            case ST_STRING:
                p = in->str + in->off[r];
                n = in->off[r + 1] - in->off[r];
                break;
            case ST_INT64:
                n = (size_t)snprintf(num, sizeof num, "%lld", (long long)in->i64[r]);
                p = num;
                break;
            case ST_FLOAT64:
                if (in->text) {
                    p = in->str + in->off[r];
                    n = in->off[r + 1] - in->off[r];
                } else {
                    n = st_format_float64(in->f64[r], num);
                    p = num;
                }
                break;
            case ST_BOOL:
                p = in->b[r] ? "true" : "false";
                n = strlen(p);
                break;
            }
            sl_buf_reset(&b);
            if ((rc = pol_mask_value(m, v->mac, p, n, &b, &is_null)) != SL_OK)
                break;
        }
        if (!is_null) {
            f.p = b.data;
            f.n = b.len;
            f.null = 0;
        }
        rc = st_column_add(out, &f, &err);
    }
    if (b.data != NULL)
        sodium_memzero(b.data, b.cap);
    sl_buf_free(&b);
    return rc;
}

void
gw_view_free(gw_view *v)
{
    if (v == NULL)
        return;
    cry_mac_free(v->mac);
    free(v->masked);
    free(v->mtypes);
    free(v->kinds);
    free(v);
}

/* The type a masked column is served as: null keeps the column's; the others are text. */
static st_type
masked_type(pol_mask m, st_type t)
{
    return m == POL_MASK_NULL || m == POL_MASK_NONE ? t : ST_STRING;
}

sl_code
gw_view_new(gw_keys *keys, PGconn *c, const gw_decision *g, int64_t dataset, const size_t *proj,
            const st_type *types, size_t nproj, gw_view **out, sl_err *err)
{
    gw_view *v = sl_xcalloc(1, sizeof *v);
    uint8_t *denied = sl_xcalloc(g->ncols + 1, 1), *mask = sl_xcalloc(g->ncols + 1, 1);
    size_t i, k, any_hash = 0;
    sl_code rc = SL_OK;

    *out = NULL;
    v->g = g;
    pol_decision_view(&g->d, denied, mask);
    v->masked = sl_xcalloc(nproj + 1, 1);
    v->mtypes = sl_xcalloc(nproj + 1, sizeof *v->mtypes);
    v->kinds = sl_xcalloc(nproj + 1, 1);
    for (i = 0; i < nproj; i++) {
        if (proj[i] >= g->ncols || denied[proj[i]]) {
            rc = sl_err_set(err, SL_EINTERNAL, "a denied column was projected");
            goto out;
        }
        v->kinds[i] = mask[proj[i]];
        v->masked[i] = mask[proj[i]] != POL_MASK_NONE;
        v->mtypes[i] = masked_type((pol_mask)mask[proj[i]], types[i]);
        any_hash |= mask[proj[i]] == POL_MASK_HASH;
    }
    v->nf = pol_decision_filters(&g->d, v->f, v->neg, POL_MAX_APPLIED);
    if (v->nf > POL_MAX_APPLIED) {
        rc = sl_err_set(err, SL_EINTERNAL, "more row filters than a read applies");
        goto out;
    }
    for (i = 0; i < v->nf; i++) {
        uint32_t idx[POL_MAX_COLUMNS];
        size_t n = pol_filter_columns(v->f[i], idx, POL_MAX_COLUMNS);

        for (k = 0; k < n && k < POL_MAX_COLUMNS; k++) {
            size_t j;
            for (j = 0; j < v->nextra && v->extra[j] != idx[k]; j++)
                ;
            if (j == v->nextra)
                v->extra[v->nextra++] = idx[k];
        }
    }
    if (any_hash && (rc = mask_key(keys, c, dataset, &v->mac, err)) != SL_OK)
        goto out;
    v->view.extra = v->extra;
    v->view.nextra = v->nextra;
    v->view.keep = v->nf > 0 ? view_keep : NULL;
    v->view.masked = v->masked;
    v->view.masked_types = v->mtypes;
    v->view.mask = view_mask;
    v->view.ctx = v;
out:
    free(denied);
    free(mask);
    if (rc != SL_OK) {
        gw_view_free(v);
        return rc;
    }
    *out = v;
    return SL_OK;
}

const st_view *
gw_view_get(const gw_view *v)
{
    return &v->view;
}

/*
 * gateway/gw_datasets.c: datasets, versions (streamed uploads, streamed reads, deletion
 * by crypto-shredding), master key rotation, the store's scrub and its recovery at start.
 *
 * Every request is decided by gw_allowed (gw_policy.c): the dataset's policy with the
 * global ones, for the request's principal, action and purpose. A read's decision
 * carries the view it applies (columns denied, masks, row filters), the same for every
 * output format and for compute.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_http.h"

int
gw_path_dataset(gw_req *r, PGconn *c, int for_update, db_dataset *ds)
{
    sl_err err;

    sl_err_clear(&err);
    if (!sl_name_valid(r->params[0])) {
        gw_reply_error(r, SL_EBADREQ, "invalid dataset name");
        return 0;
    }
    if (db_dataset_get(c, r->params[0], for_update, ds, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return 0;
    }
    if (r->detail == NULL)
        r->detail = json_object();
    json_object_set_new(r->detail, "dataset", json_string(ds->name));
    return 1;
}

/* The version in the path (params[1]): "latest" is 0; -1 with the answer set when bad. */
static int
path_version(gw_req *r)
{
    int64_t v;

    if (strcmp(r->params[1], "latest") == 0)
        return 0;
    if (sl_parse_i64(r->params[1], 1, INT32_MAX, &v) != SL_OK) {
        gw_reply_error(r, SL_EBADREQ, "a version is a positive integer or \"latest\"");
        return -1;
    }
    return (int)v;
}

static void
data_key_aad(int64_t dataset, int version, char out[80])
{
    snprintf(out, 80, "sluice:data-key:%lld:%d", (long long)dataset, version);
}

/* The data key of a live version, unwrapped; SL_EUNAVAIL (logged) when it cannot be. */
sl_code
gw_version_key(gw_keys *keys, const db_version *v, cry_key **key, sl_err *err)
{
    char aad[80];

    data_key_aad(v->dataset_id, v->version, aad);
    if (gw_master_unwrap(keys, v->master_version, aad, v->wrapped, DB_WRAPPED_DATA_KEY, key) !=
        SL_OK) {
        sl_err_set(err, SL_EUNAVAIL, "the version's data key cannot be unwrapped");
        sl_err_detail(err, "dataset %lld version %d: master key version %d missing or wrong",
                      (long long)v->dataset_id, v->version, v->master_version);
        return SL_EUNAVAIL;
    }
    return SL_OK;
}

/* ---- datasets ---- */

/* The stored form of declared columns: every column with its tags (an empty list when
 * none), its type only when declared. */
static json_t *
columns_stored(const json_t *cols)
{
    json_t *out = json_array(), *c;
    size_t i;

    json_array_foreach(cols, i, c)
    {
        const json_t *tags = json_object_get(c, "tags"), *type = json_object_get(c, "type");
        json_t *o = json_pack("{s:O, s:o}", "name", json_object_get(c, "name"), "tags",
                              tags ? json_deep_copy(tags) : json_array());
        if (type != NULL)
            json_object_set(o, "type", (json_t *)type);
        json_array_append_new(out, o);
    }
    return out;
}

/* The API's document of a dataset: what the database gives, and what policy will add. */
static json_t *
dataset_doc(const db_dataset *ds)
{
    return json_deep_copy(ds->doc);
}

void
gw_h_dataset_create(gw_req *r)
{
    gw_dataset_body b;
    db_dataset ds;
    json_t *obj, *cols = NULL;
    PGconn *c = NULL;
    int64_t id = 0;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_json_dataset_create(obj, &b, &err) != SL_OK)
        goto fail;
    snprintf(r->resource, sizeof r->resource, "datasets/%s", b.name);
    r->detail = json_pack("{s:s, s:s}", "dataset", b.name, "classification", b.classification);
    cols = b.columns ? columns_stored(b.columns) : json_array();
    if (gw_txn_begin(r, &c, &err) != SL_OK ||
        db_dataset_insert(c, b.name, r->who.id, b.classification, b.description, cols, &id, &err) !=
            SL_OK ||
        db_lock_keys(c, 0, &err) != SL_OK ||
        gw_mask_key_create(r->srv->keys, c, id, &err) != SL_OK ||
        (b.has_retention && gw_retention_create(c, id, &b.retention, &err) != SL_OK) ||
        db_dataset_get(c, b.name, 0, &ds, &err) != SL_OK)
        goto fail;
    snprintf(r->location, sizeof r->location, "/v1/datasets/%s", b.name);
    gw_reply_json(r, 201, dataset_doc(&ds));
    goto out;
fail:
    gw_reply_err(r, &err);
out:
    db_dataset_clear(&ds);
    json_decref(cols);
    json_decref(obj);
}

/* Pages of datasets scanned for one list answer (the caller may see few of them). */
#define LIST_SCAN_PAGES 8

void
gw_h_dataset_list(gw_req *r)
{
    const char *after;
    char cursor[SL_MAX_NAME + 1] = "";
    json_t *items = NULL, *out, *it;
    db_global *gl = NULL;
    size_t ngl = 0;
    PGconn *c = NULL;
    int limit, more = 1, page;
    size_t i;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    if (!gw_list_args(r, &limit, &after))
        return;
    if (after != NULL)
        snprintf(cursor, sizeof cursor, "%s", after);
    out = json_array();
    /* the datasets the caller may describe, as their policies decide (the global
     * policies read once for all of them) */
    rc = gw_db_get(r, &c, &err);
    if (rc == SL_OK)
        rc = db_globals_current(c, &gl, &ngl, &err);
    for (page = 0;
         rc == SL_OK && more && page < LIST_SCAN_PAGES && (int)json_array_size(out) < limit;
         page++) {
        rc = db_dataset_list(c, 0, cursor[0] ? cursor : NULL, limit, &items, &more, &err);
        json_array_foreach(items, i, it)
        {
            const char *name = json_string_value(json_object_get(it, "name"));
            gw_decision *g = NULL;
            db_dataset ds;

            if (rc != SL_OK || (int)json_array_size(out) == limit)
                break;
            snprintf(cursor, sizeof cursor, "%s", name);
            memset(&ds, 0, sizeof ds);
            if ((rc = db_dataset_get(c, name, 0, &ds, &err)) == SL_ENOTFOUND) {
                rc = SL_OK; /* deleted meanwhile */
                continue;
            }
            if (rc == SL_OK) {
                sl_code drc = gw_decide_with(r, c, &ds, &r->who, POL_ACT_DESCRIBE,
                                             r->purpose[0] ? r->purpose : NULL, gl, ngl, &g, &err);
                if (drc == SL_OK && g->d.allow)
                    json_array_append(out, it);
                else if (drc == SL_EUNAVAIL)
                    rc = drc;
                else if (drc != SL_OK) /* one dataset's policy broken: left out, logged */
                    sl_warn("request %s: dataset %s left out of a list: %s", r->request_id, name,
                            err.msg);
                sl_err_clear(&err);
            }
            gw_decision_free(g);
            db_dataset_clear(&ds);
        }
        if ((int)json_array_size(out) == limit && i < json_array_size(items))
            more = 1;
        json_decref(items);
        items = NULL;
    }
    gw_db_put(r, c, rc);
    db_globals_free(gl, ngl);
    if (rc != SL_OK) {
        json_decref(out);
        gw_reply_err(r, &err);
        return;
    }
    gw_reply_json(r, 200, json_pack("{s:o, s:s?}", "items", out, "next", more ? cursor : NULL));
}

void
gw_h_dataset_show(gw_req *r)
{
    db_dataset ds;
    PGconn *c;

    memset(&ds, 0, sizeof ds);
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (gw_path_dataset(r, c, 0, &ds) && gw_allowed(r, c, &ds, "dataset.describe", NULL))
        gw_reply_json(r, 200, dataset_doc(&ds));
    gw_db_put(r, c, SL_OK);
    db_dataset_clear(&ds);
}

static int
has_tag(const json_t *tags, const char *tag)
{
    size_t i;
    json_t *t;

    json_array_foreach(tags, i, t)
    {
        if (json_is_string(t) && strcmp(json_string_value(t), tag) == 0)
            return 1;
    }
    return 0;
}

void
gw_h_dataset_patch(gw_req *r)
{
    gw_dataset_body b;
    db_dataset ds;
    json_t *obj, *cols = NULL, *c2;
    PGconn *c = NULL;
    size_t i, j;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_json_dataset_patch(obj, &b, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (!gw_path_dataset(r, c, 1, &ds) || !gw_allowed(r, c, &ds, "dataset.manage", NULL))
        goto out;
    if (b.classification != NULL) {
        if (gw_classification_rank(b.classification) < gw_classification_rank(ds.classification)) {
            gw_reply_error(r, SL_ECONFLICT, "classification may only be raised (it is %s)",
                           ds.classification);
            goto out;
        }
        json_object_set_new(r->detail, "classification", json_string(b.classification));
    }
    if (b.columns != NULL) {
        cols = json_deep_copy(json_object_get(ds.doc, "columns"));
        json_array_foreach(b.columns, i, c2)
        {
            const char *name = json_string_value(json_object_get(c2, "name"));
            const json_t *tags = json_object_get(c2, "tags");
            json_t *have = NULL, *col;
            json_array_foreach(cols, j, col)
            {
                if (strcmp(json_string_value(json_object_get(col, "name")), name) == 0)
                    have = col;
            }
            if (have == NULL) {
                gw_reply_error(r, SL_EINVALID, "columns[%zu]: the dataset has no such column", i);
                goto out;
            }
            if (tags == NULL)
                continue;
            if ((has_tag(json_object_get(have, "tags"), "pii") && !has_tag(tags, "pii")) ||
                (has_tag(json_object_get(have, "tags"), "id") && !has_tag(tags, "id"))) {
                gw_reply_error(r, SL_ECONFLICT,
                               "columns[%zu]: the tags pii and id may only be added, never "
                               "removed",
                               i);
                goto out;
            }
            json_object_set_new(have, "tags", json_deep_copy(tags));
        }
        json_object_set_new(r->detail, "columns_changed", json_true());
    }
    if (db_dataset_update(c, ds.id, b.description, b.classification, cols, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    db_dataset_clear(&ds);
    if (db_dataset_get(c, r->params[0], 0, &ds, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    gw_reply_json(r, 200, dataset_doc(&ds));
out:
    json_decref(cols);
    json_decref(obj);
    db_dataset_clear(&ds);
}

/* ---- uploads ---- */

typedef struct {
    gw_server *srv;
    int64_t dataset_id;
    char dataset[SL_MAX_NAME + 1];
    int version;
    cry_key *key;
    st_ingest *ingest;
    st_colspec *spec;
    size_t nspec;
    json_t *columns; /* the dataset's columns when the upload began (owns spec's names) */
} upload;

static void
upload_release(gw_req *r)
{
    upload *u = r->up;
    PGconn *c = NULL;
    int64_t gone = 0;
    sl_err err;

    if (u == NULL)
        return;
    r->up = NULL;
    /* first: the writer thread may still be writing a group */
    st_ingest_free(u->ingest);
    u->ingest = NULL;
    if (!r->committed && u->version > 0) {
        /* Not visible: its fragments go, then its row, in one transaction that holds the
         * row while it is still an upload in progress (a COMMIT whose reply was lost may
         * have made it live: then nothing is removed). A crash or a database that cannot
         * answer leaves both to the recovery at the next start. */
        sl_code rc;
        int held = 0;
        sl_err_clear(&err);
        if (db_acquire(u->srv->pool, SL_DB_ACQUIRE_MS, &c, &err) == SL_OK) {
            rc = db_exec(c, "BEGIN", &err);
            if (rc == SL_OK)
                rc = db_version_hold_upload(c, u->dataset_id, u->version, &held, &err);
            if (rc == SL_OK && held) {
                if (st_version_remove(u->srv->storage, u->dataset_id, u->version, &err) != SL_OK)
                    sl_warn("upload %s: %s", r->request_id, err.msg);
                rc = db_version_discard(c, u->dataset_id, u->version, &gone, &err);
            }
            if (rc == SL_OK)
                rc = db_exec(c, "COMMIT", &err);
            else
                db_rollback(c);
            db_release(u->srv->pool, c, rc != SL_OK);
        }
    }
    cry_key_free(u->key);
    free(u->spec);
    json_decref(u->columns);
    free(u);
}

static sl_code
upload_feed(gw_req *r, const char *p, size_t n, sl_err *err)
{
    upload *u = r->up;

    return st_ingest_feed(u->ingest, p, n, err);
}

/*
 * The columns an upload's manifest gives, checked against what the dataset has: the
 * same names in the same order, and the same types where the dataset has them. Returns
 * the dataset's columns completed with the types (new reference), or NULL with the
 * answer set.
 */
static json_t *
columns_after_upload(gw_req *r, const json_t *have, const json_t *got)
{
    json_t *out, *g;
    size_t i;

    if (json_array_size(have) == 0) {
        out = json_array();
        json_array_foreach(got, i, g) json_array_append_new(
            out, json_pack("{s:O, s:O, s:[]}", "name", json_object_get(g, "name"), "type",
                           json_object_get(g, "type"), "tags"));
        return out;
    }
    if (json_array_size(have) != json_array_size(got)) {
        gw_reply_error(r, SL_ECONFLICT, "the dataset's columns changed during this upload");
        return NULL;
    }
    out = json_deep_copy(have);
    json_array_foreach(got, i, g)
    {
        json_t *h = json_array_get(out, i);
        const json_t *ht = json_object_get(h, "type");
        if (!json_equal(json_object_get(h, "name"), json_object_get(g, "name")) ||
            (ht != NULL && !json_equal(ht, json_object_get(g, "type")))) {
            json_decref(out);
            gw_reply_error(r, SL_ECONFLICT, "the dataset's columns changed during this upload");
            return NULL;
        }
        json_object_set(h, "type", json_object_get(g, "type"));
    }
    return out;
}

static void
upload_committed(gw_req *r)
{
    json_t *bytes = json_object_get(r->detail, "bytes_in");

    atomic_fetch_add(&gw_stats.store_bytes_in, (long)json_integer_value(bytes));
}

static void
upload_end(gw_req *r)
{
    upload *u = r->up;
    json_t *manifest = NULL, *cols = NULL;
    db_dataset ds;
    PGconn *c = NULL;
    int lock;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if (st_ingest_finish(u->ingest, &manifest, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    json_object_set(r->detail, "rows", json_object_get(manifest, "rows"));
    json_object_set(r->detail, "bytes_in", json_object_get(manifest, "bytes_in"));
    json_object_set(r->detail, "bytes_stored", json_object_get(manifest, "bytes_stored"));
    json_object_set(r->detail, "sha256", json_object_get(manifest, "sha256"));
    /* The version, its manifest and (on a first upload) the dataset's columns: one
     * transaction, committed once the upload's event is. The dataset's row is locked only
     * when its columns change: a later upload's columns already match, and concurrent
     * uploads to one dataset need not wait for each other's audit events. */
    for (lock = 0; lock < 2; lock++) {
        if ((lock == 0 && gw_txn_begin(r, &c, &err) != SL_OK) ||
            db_dataset_get(c, u->dataset, lock, &ds, &err) != SL_OK || ds.id != u->dataset_id) {
            if (err.code == SL_OK)
                sl_err_set(&err, SL_ENOTFOUND, "dataset \"%s\" not found", u->dataset);
            gw_reply_err(r, &err);
            goto out;
        }
        cols = columns_after_upload(r, json_object_get(ds.doc, "columns"),
                                    json_object_get(manifest, "columns"));
        if (cols == NULL)
            goto out;
        if (json_equal(cols, json_object_get(ds.doc, "columns"))) {
            json_decref(cols);
            cols = NULL;
            break;
        }
        if (lock == 0) { /* again, holding the row */
            json_decref(cols);
            cols = NULL;
            db_dataset_clear(&ds);
        }
    }
    if (db_version_publish(c, u->dataset_id, u->version, manifest, &err) != SL_OK ||
        (cols != NULL && db_dataset_update(c, u->dataset_id, NULL, NULL, cols, &err) != SL_OK)) {
        gw_reply_err(r, &err);
        goto out;
    }
    r->after_commit = upload_committed;
    snprintf(r->location, sizeof r->location, "/v1/datasets/%s/versions/%d", u->dataset,
             u->version);
    gw_reply_json(r, 201,
                  json_pack("{s:i, s:O, s:O, s:O, s:O, s:O}", "version", u->version, "rows",
                            json_object_get(manifest, "rows"), "columns",
                            json_object_get(manifest, "columns"), "bytes_in",
                            json_object_get(manifest, "bytes_in"), "bytes_stored",
                            json_object_get(manifest, "bytes_stored"), "sha256",
                            json_object_get(manifest, "sha256")));
out:
    json_decref(cols);
    json_decref(manifest);
    db_dataset_clear(&ds);
}

/* The column specification of an upload from the dataset's columns (names always; types
 * where known). */
static sl_code
upload_spec(upload *u, sl_err *err)
{
    json_t *c;
    size_t i;

    u->nspec = json_array_size(u->columns);
    u->spec = sl_xcalloc(u->nspec + 1, sizeof *u->spec);
    json_array_foreach(u->columns, i, c)
    {
        const json_t *type = json_object_get(c, "type");
        u->spec[i].name = json_string_value(json_object_get(c, "name"));
        if (u->spec[i].name == NULL)
            return sl_err_set(err, SL_EUNAVAIL, "a dataset's columns are malformed");
        if (type != NULL) {
            if (!json_is_string(type) ||
                st_type_parse(json_string_value(type), &u->spec[i].type) != SL_OK)
                return sl_err_set(err, SL_EUNAVAIL, "a dataset's columns are malformed");
            u->spec[i].has_type = 1;
        }
    }
    return SL_OK;
}

/*
 * The beginning of an upload, once its headers are in: the dataset, the right to write,
 * a new data key wrapped under the current master key and a version number reserved
 * with it (not visible), and the ingest the body's pieces go to.
 */
void
gw_h_version_upload(gw_req *r)
{
    unsigned char wrapped[DB_WRAPPED_DATA_KEY];
    char aad[80];
    db_dataset ds;
    PGconn *c = NULL;
    upload *u;
    int mv = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (!gw_path_dataset(r, c, 0, &ds) || !gw_allowed(r, c, &ds, "dataset.write", NULL)) {
        gw_db_put(r, c, SL_OK);
        db_dataset_clear(&ds);
        return;
    }
    u = sl_xcalloc(1, sizeof *u);
    u->srv = r->srv;
    u->dataset_id = ds.id;
    snprintf(u->dataset, sizeof u->dataset, "%s", ds.name);
    u->columns = json_incref(json_object_get(ds.doc, "columns"));
    r->up = u;
    r->up_release = upload_release;
    if ((rc = upload_spec(u, &err)) != SL_OK)
        goto fail;
    u->key = cry_key_random(CRY_KEY_BYTES);
    /* the number and the wrapped key under the key lock (shared): a rotation waits for
     * this to commit and then rewraps it too */
    if ((rc = db_exec(c, "BEGIN", &err)) != SL_OK)
        goto fail;
    if ((rc = db_lock_keys(c, 0, &err)) != SL_OK ||
        (rc = db_version_next(c, ds.id, &u->version, &err)) != SL_OK) {
        db_rollback(c);
        u->version = 0;
        goto fail;
    }
    data_key_aad(ds.id, u->version, aad);
    gw_master_wrap(r->srv->keys, aad, u->key->p, u->key->n, wrapped, &mv);
    if ((rc = db_version_insert(c, ds.id, u->version, r->who.id, mv, wrapped, sizeof wrapped,
                                &err)) != SL_OK ||
        (rc = db_exec(c, "COMMIT", &err)) != SL_OK) {
        db_rollback(c);
        u->version = 0;
        goto fail;
    }
    json_object_set_new(r->detail, "version", json_integer(u->version));
    snprintf(r->resource, sizeof r->resource, "datasets/%s/versions/%d", ds.name, u->version);
    u->ingest = st_ingest_new(r->srv->storage, u->key, ds.id, u->version, 1,
                              u->nspec ? u->spec : NULL, u->nspec);
    r->up_feed = upload_feed;
    r->up_end = upload_end;
    gw_db_put(r, c, SL_OK);
    db_dataset_clear(&ds);
    return;
fail:
    gw_db_put(r, c, rc);
    db_dataset_clear(&ds);
    gw_reply_err(r, &err);
}

/* ---- versions ---- */

/* The dataset and live version of the path, with the action checked; 0 with the answer
 * set otherwise. */
static int
path_ds_version(gw_req *r, PGconn *c, int for_update, const char *action, db_dataset *ds,
                db_version *v, gw_decision **decision)
{
    int want = path_version(r);
    sl_err err;

    sl_err_clear(&err);
    if (want < 0 || !gw_path_dataset(r, c, for_update, ds) ||
        !gw_allowed(r, c, ds, action, decision))
        return 0;
    if (db_version_get(c, ds->id, want, for_update, v, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return 0;
    }
    json_object_set_new(r->detail, "version", json_integer(v->version));
    return 1;
}

/* The manifest's columns with the dataset's tags. */
static json_t *
version_columns(const db_dataset *ds, const db_version *v)
{
    json_t *out = json_array(), *c;
    const json_t *have = json_object_get(ds->doc, "columns");
    size_t i;

    json_array_foreach(json_object_get(v->manifest, "columns"), i, c)
    {
        const json_t *h = json_array_get(have, i);
        const json_t *tags = h ? json_object_get(h, "tags") : NULL;
        json_array_append_new(out, json_pack("{s:O, s:O, s:o}", "name", json_object_get(c, "name"),
                                             "type", json_object_get(c, "type"), "tags",
                                             tags ? json_deep_copy(tags) : json_array()));
    }
    return out;
}

void
gw_h_version_show(gw_req *r)
{
    db_dataset ds;
    db_version v;
    PGconn *c;

    memset(&ds, 0, sizeof ds);
    memset(&v, 0, sizeof v);
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (path_ds_version(r, c, 0, "dataset.describe", &ds, &v, NULL)) {
        json_t *doc = json_deep_copy(v.doc);
        json_object_set_new(doc, "dataset", json_string(ds.name));
        json_object_set_new(doc, "columns", version_columns(&ds, &v));
        gw_reply_json(r, 200, doc);
    }
    gw_db_put(r, c, SL_OK);
    db_version_clear(&v);
    db_dataset_clear(&ds);
}

/* A read's stream: the first piece was produced before the answer (so that a chunk
 * that cannot be read at the start is a clean 503); the rest as the client takes it. */
typedef struct {
    st_reader *rd;
    gw_decision *decision; /* the view borrows from it */
    gw_view *view;         /* the reader borrows it */
    json_t *manifest;      /* the reader borrows its names */
    cry_key *key;
    sl_buf first;
    int first_sent, done;
    uint64_t rebuilt_seen;
    gw_audit *audit;
    json_t *event; /* the request's event, for a failure midway */
} read_stream;

static void
note_rebuilt(read_stream *s)
{
    uint64_t now = st_reader_rebuilt(s->rd);

    if (now > s->rebuilt_seen) {
        atomic_fetch_add(&gw_stats.store_rebuilt, (long)(now - s->rebuilt_seen));
        s->rebuilt_seen = now;
    }
}

static int
read_produce(void *state, sl_buf *out)
{
    read_stream *s = state;
    sl_err err;
    int rc;

    if (!s->first_sent) {
        s->first_sent = 1;
        if (sl_buf_append(out, s->first.data, s->first.len) != SL_OK)
            return -1;
        return s->done ? 0 : 1;
    }
    sl_err_clear(&err);
    rc = st_reader_next(s->rd, out, &err);
    note_rebuilt(s);
    if (rc < 0) {
        /* the answer began as 200: it ends without its last chunk (the client sees a
         * truncated body), and the trail says why */
        atomic_fetch_add(&gw_stats.store_read_failures, 1);
        json_object_set_new(s->event, "status", json_integer(503));
        json_object_set_new(s->event, "decision", json_string("error"));
        json_object_set_new(s->event, "reason",
                            json_string("the answer stopped midway: a chunk "
                                        "could not be read back intact"));
        gw_audit_post(s->audit, s->event);
        s->event = NULL;
        return -1;
    }
    return rc;
}

static void
read_release(void *state)
{
    read_stream *s = state;

    st_reader_free(s->rd);
    gw_view_free(s->view);
    gw_decision_free(s->decision);
    json_decref(s->manifest);
    cry_key_free(s->key);
    if (s->first.data != NULL)
        sodium_memzero(s->first.data, s->first.len);
    sl_buf_free(&s->first);
    json_decref(s->event);
    free(s);
}

/* Whether a mask serves a column as text (all but null). */
static int
masks_to_text(uint8_t m)
{
    return m != POL_MASK_NONE && m != POL_MASK_NULL;
}

/*
 * The projection of ?columns= (indexes into the manifest's columns), less the columns the
 * decision denies; for npy by default the numeric and bool columns (a column masked into
 * text is not one). 0 with the answer set when a name is unknown or denied (403: a read
 * never silently drops a column it named), or npy is asked a text column.
 */
static int
projection(gw_req *r, const json_t *mcols, st_out fmt, const uint8_t *denied, const uint8_t *mask,
           size_t **idx, size_t *n)
{
    const char *arg = gw_arg(r, "columns");
    size_t ncols = json_array_size(mcols), i;
    json_t *c;

    *idx = sl_xcalloc(ncols + 1, sizeof **idx);
    *n = 0;
    if (arg == NULL) {
        json_array_foreach(mcols, i, c)
        {
            if (denied[i])
                continue;
            if (fmt == ST_OUT_NPY &&
                (strcmp(json_string_value(json_object_get(c, "type")), "string") == 0 ||
                 masks_to_text(mask[i])))
                continue;
            (*idx)[(*n)++] = i;
        }
        if (*n == 0) {
            gw_reply_error(r, fmt == ST_OUT_NPY ? SL_EINVALID : SL_EDENIED,
                           fmt == ST_OUT_NPY ? "no numeric column may be read"
                                             : "every column is denied");
            return 0;
        }
        return 1;
    }
    {
        const char *p = arg;
        while (1) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p), j, found = ncols;
            json_array_foreach(mcols, i, c)
            {
                const char *name = json_string_value(json_object_get(c, "name"));
                if (strlen(name) == len && memcmp(name, p, len) == 0)
                    found = i;
            }
            if (found == ncols) {
                gw_reply_error(r, SL_EINVALID, "columns: no such column in this version");
                return 0;
            }
            if (denied[found]) {
                const char *name =
                    json_string_value(json_object_get(json_array_get(mcols, found), "name"));
                gw_reason(r, "column %s is denied", name);
                gw_reply_error(r, SL_EDENIED, "columns: column \"%s\" is denied by policy", name);
                return 0;
            }
            if (fmt == ST_OUT_NPY && masks_to_text(mask[found])) {
                gw_reply_error(r, SL_EINVALID,
                               "columns: a masked column is served as text, which npy cannot "
                               "hold");
                return 0;
            }
            for (j = 0; j < *n; j++)
                if ((*idx)[j] == found) {
                    gw_reply_error(r, SL_EINVALID, "columns: a column is named twice");
                    return 0;
                }
            if (*n == ncols) {
                gw_reply_error(r, SL_EINVALID, "columns: too many");
                return 0;
            }
            (*idx)[(*n)++] = found;
            if (end == NULL)
                break;
            p = end + 1;
        }
    }
    return 1;
}

int
gw_same_columns(const json_t *mcols, const gw_decision *g)
{
    json_t *c;
    size_t i;

    if (json_array_size(mcols) != g->ncols)
        return 0;
    json_array_foreach(mcols, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (name == NULL || strcmp(name, g->cols[i].name) != 0)
            return 0;
    }
    return 1;
}

/* A column name in a header: letters, digits, '_', '.' and '-' as they are, any other
 * byte as %XX (so ',' and '=' never split it, and nothing breaks the header line). */
static size_t
header_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;

    for (; *name != '\0' && n + 4 < cap; name++) {
        unsigned char b = (unsigned char)*name;
        if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
            b == '_' || b == '.' || b == '-') {
            out[n++] = (char)b;
        } else {
            out[n++] = '%';
            out[n++] = "0123456789ABCDEF"[b >> 4];
            out[n++] = "0123456789ABCDEF"[b & 15];
        }
    }
    out[n] = '\0';
    return *name == '\0' ? n : SIZE_MAX;
}

/* X-Sluice-Masked-Columns: "email=hash,dob=year" for the projected columns. */
static void
masked_header(gw_req *r, const json_t *mcols, const size_t *cols, size_t ncols, const uint8_t *mask)
{
    size_t i, at = 0;

    r->x_masked[0] = '\0';
    for (i = 0; i < ncols; i++) {
        char name[3 * 128 + 4];
        int w;

        if (mask[cols[i]] == POL_MASK_NONE)
            continue;
        if (header_name(json_string_value(json_object_get(json_array_get(mcols, cols[i]), "name")),
                        name, sizeof name) == SIZE_MAX)
            w = -1;
        else
            w = snprintf(r->x_masked + at, sizeof r->x_masked - at, "%s%s=%s", at ? "," : "", name,
                         pol_mask_name((pol_mask)mask[cols[i]]));
        if (w < 0 || (size_t)w >= sizeof r->x_masked - at) {
            /* too many to list in a header: the audit event lists them all */
            snprintf(r->x_masked, sizeof r->x_masked, "(many; see the audit trail)");
            return;
        }
        at += (size_t)w;
    }
}

void
gw_h_version_rows(gw_req *r)
{
    const char *fmt_arg = gw_arg(r, "format"), *lim_arg = gw_arg(r, "limit");
    const char *off_arg = gw_arg(r, "offset");
    int64_t limit = -1, offset = 0;
    size_t *cols = NULL, ncols = 0, i;
    read_stream *s = NULL;
    gw_decision *g = NULL;
    uint8_t *denied = NULL, *mask = NULL;
    st_type *types = NULL;
    db_dataset ds;
    db_version v;
    PGconn *c = NULL;
    st_out fmt = ST_OUT_CSV;
    sl_err err;
    sl_code rc;
    int more;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    memset(&v, 0, sizeof v);
    if (fmt_arg != NULL && st_out_parse(fmt_arg, &fmt) != SL_OK) {
        gw_reply_error(r, SL_EINVALID, "format must be csv, jsonl or npy");
        return;
    }
    if ((lim_arg != NULL && sl_parse_i64(lim_arg, 0, INT64_MAX / 2, &limit) != SL_OK) ||
        (off_arg != NULL && sl_parse_i64(off_arg, 0, INT64_MAX / 2, &offset) != SL_OK)) {
        gw_reply_error(r, SL_EINVALID, "limit and offset must be non-negative integers");
        return;
    }
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (!path_ds_version(r, c, 0, "dataset.read", &ds, &v, &g)) {
        gw_db_put(r, c, SL_OK);
        goto out;
    }
    if (!gw_same_columns(json_object_get(v.manifest, "columns"), g)) {
        gw_db_put(r, c, SL_OK);
        gw_reply_error(r, SL_EINTERNAL, "the version's columns are not the dataset's");
        goto out;
    }
    /* the decision's view: columns denied (never projected), masks, row filters */
    denied = sl_xcalloc(g->ncols + 1, 1);
    mask = sl_xcalloc(g->ncols + 1, 1);
    pol_decision_view(&g->d, denied, mask);
    if (!projection(r, json_object_get(v.manifest, "columns"), fmt, denied, mask, &cols, &ncols)) {
        gw_db_put(r, c, SL_OK);
        goto out;
    }
    types = sl_xcalloc(ncols + 1, sizeof *types);
    for (i = 0; i < ncols; i++)
        types[i] = (st_type)g->cols[cols[i]].type;
    s = sl_xcalloc(1, sizeof *s);
    sl_buf_init_wiped(&s->first, (size_t)SL_MAX_CHUNK_BYTES * 2);
    s->audit = r->srv->audit;
    s->decision = g;
    g = NULL;
    rc = gw_view_new(r->srv->keys, c, s->decision, ds.id, cols, types, ncols, &s->view, &err);
    gw_db_put(r, c, rc == SL_EUNAVAIL ? rc : SL_OK);
    if (rc != SL_OK)
        goto fail;
    if ((rc = gw_version_key(r->srv->keys, &v, &s->key, &err)) != SL_OK)
        goto fail;
    s->manifest = json_incref(v.manifest);
    if ((rc = st_reader_new(r->srv->storage, s->key, v.dataset_id, v.version,
                            (uint32_t)v.key_version, s->manifest, cols, ncols, (uint64_t)offset,
                            limit, fmt, gw_view_get(s->view), &s->rd, &err)) != SL_OK)
        goto fail;
    /* the beginning and the first row group, before the answer */
    more = st_reader_next(s->rd, &s->first, &err);
    if (more == 1)
        more = st_reader_next(s->rd, &s->first, &err);
    note_rebuilt(s);
    if (more < 0) {
        if (err.code == SL_EUNAVAIL)
            atomic_fetch_add(&gw_stats.store_read_failures, 1);
        rc = err.code;
        goto fail;
    }
    s->done = more == 0;
    json_object_set_new(r->detail, "format", json_string(st_out_ctype(fmt)));
    json_object_set_new(r->detail, "columns", json_integer((json_int_t)ncols));
    snprintf(r->x_policy_version, sizeof r->x_policy_version, "%d", s->decision->policy_version);
    masked_header(r, json_object_get(v.manifest, "columns"), cols, ncols, mask);
    gw_reply_stream(r, st_out_ctype(fmt), (gw_stream){read_produce, read_release, s});
    s->event = gw_event_now(r);
    s = NULL;
    goto out;
fail:
    gw_reply_err(r, &err);
out:
    if (s != NULL)
        read_release(s);
    gw_decision_free(g);
    free(cols);
    free(types);
    free(denied);
    free(mask);
    db_version_clear(&v);
    db_dataset_clear(&ds);
}

typedef struct {
    int64_t dataset_id;
    int version;
} shred_done;

static void
remove_shredded(gw_req *r)
{
    shred_done *d = r->up;
    sl_err err;

    sl_err_clear(&err);
    if (st_version_remove(r->srv->storage, d->dataset_id, d->version, &err) != SL_OK)
        sl_warn("request %s: %s (removed at the next start)", r->request_id, err.msg);
}

static void
free_up(gw_req *r)
{
    free(r->up);
    r->up = NULL;
}

/*
 * Deletion is crypto-shredding: the transaction that destroys the version's wrapped key
 * commits once the event recording it is durable; then the fragments go (what is left
 * of them after a crash is removed at the next start, and could not be read anyway).
 */
void
gw_h_version_delete(gw_req *r)
{
    db_dataset ds;
    db_version v;
    PGconn *c = NULL;
    shred_done *d;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    memset(&v, 0, sizeof v);
    if (strcmp(r->params[1], "latest") == 0) {
        gw_reply_error(r, SL_EBADREQ, "name the version to delete: \"latest\" moves");
        return;
    }
    if (gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    if (!path_ds_version(r, c, 1, "dataset.delete", &ds, &v, NULL) ||
        !gw_retention_may_delete(r, &ds, &v))
        goto out;
    /* the database's own guard (0007_retention_guard.sql) lets an admin's bypass through
     * only when this transaction says so */
    if (json_is_true(json_object_get(r->detail, "bypass_governance")) &&
        db_exec(c, "SET LOCAL sluice.bypass_governance = 'on'", &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (db_version_shred(c, ds.id, v.version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    json_object_set_new(r->detail, "shred",
                        json_pack("{s:b, s:i, s:s}", "key_destroyed", 1, "master_key_version",
                                  v.master_version, "sha256",
                                  json_string_value(json_object_get(v.doc, "sha256"))));
    snprintf(r->resource, sizeof r->resource, "datasets/%s/versions/%d", ds.name, v.version);
    d = sl_xcalloc(1, sizeof *d);
    d->dataset_id = ds.id;
    d->version = v.version;
    r->up = d;
    r->up_release = free_up;
    r->after_commit = remove_shredded;
    gw_reply_status(r, 204);
out:
    db_version_clear(&v);
    db_dataset_clear(&ds);
}

/* ---- master key rotation ---- */

typedef struct {
    int old[GW_MAX_MASTERS];
    int nold;
} rotation;

/* A master key version the rotation leaves behind, to retire once nothing uses it. */
static void
note_old(rotation *rot, int version)
{
    int j;

    for (j = 0; j < rot->nold && rot->old[j] != version; j++)
        ;
    if (j == rot->nold && rot->nold < GW_MAX_MASTERS)
        rot->old[rot->nold++] = version;
}

/* A wrapped key (aad, under master key version `from`) wrapped again under `to` into w. */
static sl_code
rewrap(gw_req *r, rotation *rot, int from, int to, const char *aad, const unsigned char *wrapped,
       size_t len, unsigned char *w)
{
    cry_key *k = NULL;

    if (gw_master_unwrap(r->srv->keys, from, aad, wrapped, len, &k) != SL_OK)
        return SL_EUNAVAIL;
    note_old(rot, from);
    gw_master_wrap_with(r->srv->keys, to, aad, k->p, k->n, w);
    cry_key_free(k);
    return SL_OK;
}

static void
retire_old(gw_req *r)
{
    rotation *rot = r->up;
    PGconn *c = NULL;
    sl_err err;
    int i, in_use = 1;

    sl_err_clear(&err);
    if (db_acquire(r->srv->pool, SL_DB_ACQUIRE_MS, &c, &err) != SL_OK) {
        sl_warn("rotation: old master keys kept for now: %s", err.msg);
        return;
    }
    for (i = 0; i < rot->nold; i++) {
        if (db_master_in_use(c, rot->old[i], &in_use, &err) != SL_OK || in_use)
            continue;
        if (gw_master_retire(r->srv->keys, rot->old[i], &err) != SL_OK)
            sl_warn("rotation: %s", err.msg);
        else
            sl_info("master key version %d retired", rot->old[i]);
    }
    db_release(r->srv->pool, c, err.code == SL_EUNAVAIL);
}

/*
 * A new master key version: made (its file written by the key helper), every wrapped
 * key rewrapped under it in one transaction that holds the key lock, so no upload wraps
 * under the old one meanwhile. The data itself is not touched. Old versions are retired
 * (forgotten and their files removed) once the transaction committed.
 */
void
gw_h_keys_rotate(gw_req *r)
{
    unsigned char w[DB_WRAPPED_DATA_KEY], *blob = NULL;
    db_wrapped *list = NULL;
    rotation *rot;
    PGconn *c = NULL;
    size_t n = 0, i, len = 0, ndata = 0;
    int version = 0, prev = gw_master_current(r->srv->keys), ver = 0;
    sl_err err;

    sl_err_clear(&err);
    if (gw_master_create(r->srv->keys, &version, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    if (gw_txn_begin(r, &c, &err) != SL_OK || db_lock_keys(c, 1, &err) != SL_OK ||
        db_keys_wrapped(c, &list, &n, &err) != SL_OK)
        goto fail;
    rot = sl_xcalloc(1, sizeof *rot);
    r->up = rot;
    r->up_release = free_up;
    for (i = 0; i < n; i++) {
        char aad[80];
        data_key_aad(list[i].dataset_id, list[i].version, aad);
        if (rewrap(r, rot, list[i].master_version, version, aad, list[i].wrapped,
                   DB_WRAPPED_DATA_KEY, w) != SL_OK) {
            sl_err_set(&err, SL_EUNAVAIL, "a data key cannot be unwrapped; nothing rotated");
            sl_err_detail(&err, "dataset %lld version %d, master key version %d",
                          (long long)list[i].dataset_id, list[i].version, list[i].master_version);
            goto fail;
        }
        if (db_key_rewrap(c, list[i].dataset_id, list[i].version, version, w, sizeof w, &err) !=
            SL_OK)
            goto fail;
    }
    /* the datasets' mask keys */
    ndata = n;
    free(list);
    list = NULL;
    if (db_mask_keys(c, &list, &n, &err) != SL_OK)
        goto fail;
    for (i = 0; i < n; i++) {
        char purpose[48], aad[64];
        gw_mask_key_names(list[i].dataset_id, purpose, aad);
        if (rewrap(r, rot, list[i].master_version, version, aad, list[i].wrapped,
                   DB_WRAPPED_DATA_KEY, w) != SL_OK) {
            sl_err_set(&err, SL_EUNAVAIL, "a mask key cannot be unwrapped; nothing rotated");
            sl_err_detail(&err, "dataset %lld, master key version %d",
                          (long long)list[i].dataset_id, list[i].master_version);
            goto fail;
        }
        if (db_wrapped_key_update(c, purpose, version, w, sizeof w, &err) != SL_OK)
            goto fail;
    }
    /* the token key too */
    if (db_wrapped_key_get(c, "token-hmac", &ver, &blob, &len, &err) != SL_OK)
        goto fail;
    {
        unsigned char tw[CRY_KEY_BYTES + CRY_WRAP_OVERHEAD];
        if (len != sizeof tw ||
            rewrap(r, rot, ver, version, GW_AAD_TOKEN_KEY, blob, len, tw) != SL_OK) {
            sl_err_set(&err, SL_EUNAVAIL, "the token key cannot be unwrapped; nothing rotated");
            goto fail;
        }
        if (db_wrapped_key_update(c, "token-hmac", version, tw, sizeof tw, &err) != SL_OK)
            goto fail;
    }
    if (prev != version)
        note_old(rot, prev);
    /* current before the commit, while the key lock is held: an upload that takes the
     * lock after this transaction wraps under the new version */
    gw_master_activate(r->srv->keys, version);
    r->after_commit = retire_old;
    r->detail = json_pack("{s:i, s:i, s:i}", "master_key_version", version, "previous", prev,
                          "rewrapped", (int)ndata);
    gw_reply_json(r, 200,
                  json_pack("{s:i, s:i}", "master_key_version", version, "rewrapped", (int)ndata));
    goto out;
fail:
    gw_reply_err(r, &err);
    {
        /* nothing is wrapped by the new version: forget it and its file */
        sl_err e2;
        sl_err_clear(&e2);
        if (gw_master_retire(r->srv->keys, version, &e2) != SL_OK)
            sl_warn("rotation: %s", e2.msg);
    }
out:
    free(blob);
    free(list);
}

/* ---- recovery and scrub ---- */

typedef struct {
    const db_version_ref *known;
    size_t nknown;
    const st_storage *storage;
    long removed, unknown;
} orphans;

/*
 * A version directory found in storage: kept when its version is live; removed when the
 * database says it is an upload a crash interrupted or a shredded version (its key is
 * gone); left in place, with a warning, when the database does not know it at all (a
 * database restored from an older backup, the wrong database): never deleted on a guess.
 */
static int
remove_orphan(void *ctx, int64_t dataset, int64_t version)
{
    orphans *o = ctx;
    size_t i;
    sl_err err;

    for (i = 0; i < o->nknown; i++)
        if (o->known[i].dataset_id == dataset && o->known[i].version == version)
            break;
    if (i == o->nknown) {
        sl_warn("storage holds dataset %lld version %lld, which the database does not know: "
                "left in place",
                (long long)dataset, (long long)version);
        o->unknown++;
        return 1;
    }
    if (o->known[i].state == 'l') {
        sl_err_clear(&err);
        if (st_version_tidy(o->storage, dataset, version, &err) != SL_OK)
            sl_warn("recovery: %s", err.msg);
        return 1;
    }
    sl_err_clear(&err);
    if (st_version_remove(o->storage, dataset, version, &err) == SL_OK)
        o->removed++;
    else
        sl_warn("recovery: %s", err.msg);
    return 1;
}

sl_code
gw_store_recover(gw_server *s, sl_err *err)
{
    db_version_ref *known = NULL;
    PGconn *c = NULL;
    int64_t dropped = 0;
    orphans o;
    sl_code rc;

    memset(&o, 0, sizeof o);
    if ((rc = db_acquire(s->pool, SL_DB_ACQUIRE_MS, &c, err)) != SL_OK)
        return rc;
    /* what is known first (uploads in progress included), then those uploads forgotten:
     * a crash interrupted them and they were never visible */
    if ((rc = db_versions_all(c, &known, &o.nknown, err)) == SL_OK)
        rc = db_versions_drop_uploading(c, &dropped, err);
    db_release(s->pool, c, rc != SL_OK);
    if (rc != SL_OK) {
        free(known);
        return rc;
    }
    o.known = known;
    o.storage = s->storage;
    rc = st_versions_each(s->storage, remove_orphan, &o, err);
    free(known);
    if (dropped > 0 || o.removed > 0)
        sl_info("recovery: %lld unfinished upload(s) forgotten, %ld version director(ies) of "
                "unfinished or shredded versions removed",
                (long long)dropped, o.removed);
    return rc;
}

void
gw_h_store_scrub(gw_req *r)
{
    db_version_ref *live = NULL;
    json_t *items = json_array();
    PGconn *c = NULL;
    size_t n = 0, i;
    long chunks = 0, repaired = 0, lost = 0, versions = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    if ((rc = st_storage_prepare(r->srv->storage, &err)) != SL_OK ||
        (rc = gw_db_get(r, &c, &err)) != SL_OK) {
        json_decref(items);
        gw_reply_err(r, &err);
        return;
    }
    if ((rc = db_versions_all(c, &live, &n, &err)) != SL_OK)
        goto fail;
    for (i = 0; i < n; i++) {
        db_version v;
        cry_key *key = NULL;
        json_t *g;
        size_t gi;
        if (live[i].state != 'l')
            continue;
        if ((rc = db_version_get(c, live[i].dataset_id, live[i].version, 0, &v, &err)) != SL_OK) {
            if (rc == SL_ENOTFOUND)
                continue; /* shredded meanwhile */
            goto fail;
        }
        versions++;
        if ((rc = gw_version_key(r->srv->keys, &v, &key, &err)) != SL_OK) {
            db_version_clear(&v);
            goto fail;
        }
        json_array_foreach(json_object_get(v.manifest, "groups"), gi, g)
        {
            size_t ci, nc = json_array_size(json_object_get(v.manifest, "columns"));
            for (ci = 0; ci < nc; ci++) {
                st_place pl = {v.dataset_id, v.version, (uint32_t)gi, (uint32_t)ci,
                               (uint32_t)v.key_version};
                uint32_t fixed = 0;
                sl_err e2;
                chunks++;
                sl_err_clear(&e2);
                if (st_chunk_scrub(r->srv->storage, &pl, key, &fixed, &e2) != SL_OK) {
                    lost++;
                    if (json_array_size(items) < 100)
                        json_array_append_new(items,
                                              json_pack("{s:I, s:i, s:i, s:i, s:s}", "dataset_id",
                                                        (json_int_t)v.dataset_id, "version",
                                                        v.version, "row_group", (int)gi, "column",
                                                        (int)ci, "error", e2.msg));
                    continue;
                }
                if (fixed != 0) {
                    json_t *dirs = json_array();
                    int d;
                    for (d = 0; d < ST_MAX_FRAGMENTS; d++)
                        if (fixed & (1u << d)) {
                            json_array_append_new(dirs, json_integer(d));
                            repaired++;
                        }
                    if (json_array_size(items) < 100)
                        json_array_append_new(items,
                                              json_pack("{s:I, s:i, s:i, s:i, s:o}", "dataset_id",
                                                        (json_int_t)v.dataset_id, "version",
                                                        v.version, "row_group", (int)gi, "column",
                                                        (int)ci, "repaired_directories", dirs));
                    else
                        json_decref(dirs);
                }
            }
        }
        cry_key_free(key);
        db_version_clear(&v);
    }
    gw_db_put(r, c, SL_OK);
    free(live);
    r->detail = json_pack("{s:i, s:i, s:i, s:i}", "versions", (int)versions, "chunks", (int)chunks,
                          "fragments_repaired", (int)repaired, "chunks_unrecoverable", (int)lost);
    gw_reply_json(r, 200,
                  json_pack("{s:i, s:i, s:i, s:i, s:o}", "versions", (int)versions, "chunks",
                            (int)chunks, "fragments_repaired", (int)repaired,
                            "chunks_unrecoverable", (int)lost, "items", items));
    return;
fail:
    gw_db_put(r, c, rc);
    free(live);
    json_decref(items);
    gw_reply_err(r, &err);
}

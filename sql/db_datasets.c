/*
 * sql/db_datasets.c: datasets, their versions, and the versions' wrapped data keys.
 * Answers meant for clients are built as JSON by PostgreSQL itself (jsonb_build_object),
 * so the shapes live next to the columns they come from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

#define TS_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The JSON text of a cell (PostgreSQL's own output): parsed, or NULL with err set. */
static json_t *
cell_json(PGresult *r, int row, int col, sl_err *err)
{
    json_error_t je;
    json_t *v = json_loadb(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col),
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);

    if (v == NULL)
        sl_err_set(err, SL_EUNAVAIL, "the database returned JSON that does not parse");
    return v;
}

static void
i64_text(int64_t v, char out[24])
{
    snprintf(out, 24, "%lld", (long long)v);
}

/* A statement about one version: $1 the dataset, $2 the version. */
static PGresult *
version_query(PGconn *c, const char *sql, int64_t dataset_id, int version, ExecStatusType want,
              sl_err *err)
{
    char ds[24], ver[16];
    const char *params[2] = {ds, ver};

    i64_text(dataset_id, ds);
    snprintf(ver, sizeof ver, "%d", version);
    return db_query(c, sql, 2, params, NULL, NULL, want, err);
}

void
db_dataset_clear(db_dataset *d)
{
    if (d == NULL)
        return;
    json_decref(d->doc);
    d->doc = NULL;
}

sl_code
db_dataset_insert(PGconn *c, const char *name, int64_t owner_id, const char *classification,
                  const char *description, const json_t *columns, int64_t *id, sl_err *err)
{
    char owner[24], *cols = db_dumps(columns);
    const char *params[5] = {name, owner, classification, description, cols};
    PGresult *r;

    i64_text(owner_id, owner);
    r = db_query(c,
                 "INSERT INTO datasets (name, owner_id, classification, description, columns) "
                 "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
                 5, params, NULL, NULL, PGRES_TUPLES_OK, err);
    free(cols);
    if (r == NULL) {
        if (err->code == SL_ECONFLICT)
            sl_err_set(err, SL_ECONFLICT, "dataset \"%s\" already exists", name);
        return err->code;
    }
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return SL_OK;
}

/* The live versions of a dataset, newest last. */
#define VERSIONS_JSON                                                                            \
    "coalesce((SELECT jsonb_agg(jsonb_build_object('version', v.version, 'rows', v.rows, "       \
    "'sha256', v.sha256, 'created_at', " TS_SQL(                                                 \
        "v.live_at") ") ORDER BY v.version) "                                                    \
                     "FROM dataset_versions v WHERE v.dataset_id = d.id AND v.state = 'live'), " \
                     "'[]')"

/* A dataset's document as GET /v1/datasets/{ds} shows it. */
#define DATASET_JSON                                                                         \
    "jsonb_build_object('name', d.name, 'classification', d.classification, 'owner', "       \
    "p.name, 'description', d.description, 'columns', d.columns, 'versions', " VERSIONS_JSON \
    ", 'latest', (SELECT max(v.version) FROM dataset_versions v WHERE v.dataset_id = d.id "  \
    "AND v.state = 'live'), 'policy_version', d.policy_version, 'retention', CASE WHEN "     \
    "d.retention_mode IS NULL THEN NULL ELSE jsonb_build_object('min_days', "                \
    "d.retention_min_days, 'max_days', d.retention_max_days, 'mode', d.retention_mode) "     \
    "END, 'legal_hold', d.legal_hold, 'legal_hold_reason', CASE WHEN d.legal_hold THEN "     \
    "d.legal_hold_reason END, 'created_at', " TS_SQL("d.created_at") ")"

#define DATASET_SQL                                                                  \
    "SELECT d.id, d.owner_id, d.classification, " DATASET_JSON                       \
    ", coalesce(d.retention_mode, ''), d.retention_min_days, d.retention_max_days, " \
    "d.legal_hold FROM datasets d JOIN principals p ON p.id = d.owner_id WHERE d.name = $1"

sl_code
db_dataset_get(PGconn *c, const char *name, int for_update, db_dataset *out, sl_err *err)
{
    const char *params[1] = {name};
    PGresult *r;

    memset(out, 0, sizeof *out);
    r = db_query(c, for_update ? DATASET_SQL " FOR UPDATE OF d" : DATASET_SQL, 1, params, NULL,
                 NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "dataset \"%s\" not found", name);
    }
    out->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    out->owner_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->classification, sizeof out->classification, "%s", PQgetvalue(r, 0, 2));
    out->doc = cell_json(r, 0, 3, err);
    snprintf(out->retention_mode, sizeof out->retention_mode, "%s", PQgetvalue(r, 0, 4));
    out->min_days = PQgetisnull(r, 0, 5) ? -1 : strtod(PQgetvalue(r, 0, 5), NULL);
    out->max_days = PQgetisnull(r, 0, 6) ? -1 : strtod(PQgetvalue(r, 0, 6), NULL);
    out->legal_hold = PQgetvalue(r, 0, 7)[0] == 't';
    PQclear(r);
    return out->doc ? SL_OK : SL_EUNAVAIL;
}

sl_code
db_dataset_list(PGconn *c, int64_t owner_id, const char *after, int limit, json_t **items,
                int *more, sl_err *err)
{
    char lim[16], owner[24];
    const char *params[3] = {after ? after : "", lim, owner};
    PGresult *r;
    int i, rows;

    *items = NULL;
    *more = 0;
    snprintf(lim, sizeof lim, "%d", limit + 1);
    i64_text(owner_id, owner);
    r = db_query(c,
                 "SELECT jsonb_build_object('name', d.name, 'classification', d.classification, "
                 "'owner', p.name, 'description', d.description, 'latest', (SELECT "
                 "max(v.version) FROM dataset_versions v WHERE v.dataset_id = d.id AND v.state = "
                 "'live'), 'created_at', " TS_SQL(
                     "d.created_at") ") FROM datasets d JOIN "
                                     "principals p ON p.id = d.owner_id WHERE d.name > $1 AND "
                                     "($3::bigint = 0 OR "
                                     "d.owner_id = $3::bigint) ORDER BY d.name LIMIT $2",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    rows = PQntuples(r);
    if (rows > limit) {
        *more = 1;
        rows = limit;
    }
    *items = json_array();
    for (i = 0; i < rows; i++) {
        json_t *v = cell_json(r, i, 0, err);
        if (v == NULL) {
            json_decref(*items);
            *items = NULL;
            PQclear(r);
            return SL_EUNAVAIL;
        }
        json_array_append_new(*items, v);
    }
    PQclear(r);
    return SL_OK;
}

sl_code
db_dataset_update(PGconn *c, int64_t id, const char *description, const char *classification,
                  const json_t *columns, sl_err *err)
{
    char ids[24], *cols = columns ? db_dumps(columns) : NULL;
    const char *params[4] = {ids, description, classification, cols};
    PGresult *r;

    i64_text(id, ids);
    r = db_query(c,
                 "UPDATE datasets SET description = coalesce($2, description), classification = "
                 "coalesce($3, classification), columns = coalesce($4::jsonb, columns), "
                 "updated_at = now() WHERE id = $1",
                 4, params, NULL, NULL, PGRES_COMMAND_OK, err);
    free(cols);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_version_next(PGconn *c, int64_t dataset_id, int *version, sl_err *err)
{
    char ds[24];
    const char *params[1] = {ds};
    PGresult *r;

    i64_text(dataset_id, ds);
    r = db_query(c,
                 "UPDATE datasets SET next_version = next_version + 1 WHERE id = $1 RETURNING "
                 "next_version - 1",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "dataset not found");
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return SL_OK;
}

sl_code
db_version_insert(PGconn *c, int64_t dataset_id, int version, int64_t created_by,
                  int master_version, const unsigned char *wrapped, size_t wrapped_len, sl_err *err)
{
    char ds[24], ver[16], by[24], mv[16];
    const char *params[5] = {ds, ver, by, mv, (const char *)wrapped};
    const int lengths[5] = {0, 0, 0, 0, (int)wrapped_len}, formats[5] = {0, 0, 0, 0, 1};
    PGresult *r;

    i64_text(dataset_id, ds);
    snprintf(ver, sizeof ver, "%d", version);
    i64_text(created_by, by);
    snprintf(mv, sizeof mv, "%d", master_version);
    r = db_query(c,
                 "INSERT INTO dataset_versions (dataset_id, version, state, master_version, "
                 "wrapped_key, created_by) VALUES ($1, $2, 'uploading', $4, $5, $3)",
                 5, params, lengths, formats, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_lock_keys(PGconn *c, int exclusive, sl_err *err)
{
    PGresult *r = db_query(c,
                           exclusive ? "SELECT pg_advisory_xact_lock(1936485241)"
                                     : "SELECT pg_advisory_xact_lock_shared(1936485241)",
                           0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);

    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_versions_drop_uploading(PGconn *c, int64_t *n, sl_err *err)
{
    PGresult *r = db_query(c, "DELETE FROM dataset_versions WHERE state = 'uploading'", 0, NULL,
                           NULL, NULL, PGRES_COMMAND_OK, err);

    if (r == NULL)
        return err->code;
    *n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return SL_OK;
}

sl_code
db_versions_all(PGconn *c, db_version_ref **out, size_t *n, sl_err *err)
{
    PGresult *r;
    int i;

    *out = NULL;
    *n = 0;
    r = db_query(c,
                 "SELECT dataset_id, version, left(state, 1) FROM dataset_versions ORDER BY "
                 "dataset_id, version",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    *out = sl_xcalloc((size_t)PQntuples(r) + 1, sizeof **out);
    for (i = 0; i < PQntuples(r); i++) {
        (*out)[i].dataset_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        (*out)[i].version = atoi(PQgetvalue(r, i, 1));
        (*out)[i].state = PQgetvalue(r, i, 2)[0];
    }
    *n = (size_t)PQntuples(r);
    PQclear(r);
    return SL_OK;
}

sl_code
db_version_publish(PGconn *c, int64_t dataset_id, int version, const json_t *manifest, sl_err *err)
{
    char ds[24], ver[16], *m = db_dumps(manifest);
    const char *params[3] = {ds, ver, m};
    PGresult *r;
    int n;

    i64_text(dataset_id, ds);
    snprintf(ver, sizeof ver, "%d", version);
    r = db_query(c,
                 "UPDATE dataset_versions SET state = 'live', live_at = now(), manifest = "
                 "$3::jsonb, rows = ($3::jsonb->>'rows')::bigint, bytes_in = "
                 "($3::jsonb->>'bytes_in')::bigint, bytes_stored = "
                 "($3::jsonb->>'bytes_stored')::bigint, sha256 = $3::jsonb->>'sha256' WHERE "
                 "dataset_id = $1 AND version = $2 AND state = 'uploading'",
                 3, params, NULL, NULL, PGRES_COMMAND_OK, err);
    free(m);
    if (r == NULL)
        return err->code;
    n = atoi(PQcmdTuples(r));
    PQclear(r);
    if (n != 1)
        return sl_err_set(err, SL_ECONFLICT, "the upload's version was removed meanwhile");
    return SL_OK;
}

sl_code
db_version_discard(PGconn *c, int64_t dataset_id, int version, int64_t *gone, sl_err *err)
{
    PGresult *r = version_query(c,
                                "DELETE FROM dataset_versions WHERE dataset_id = $1 AND version = "
                                "$2 AND state = 'uploading'",
                                dataset_id, version, PGRES_COMMAND_OK, err);

    *gone = 0;
    if (r == NULL)
        return err->code;
    *gone = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return SL_OK;
}

sl_code
db_version_hold_upload(PGconn *c, int64_t dataset_id, int version, int *found, sl_err *err)
{
    PGresult *r = version_query(c,
                                "SELECT 1 FROM dataset_versions WHERE dataset_id = $1 AND version "
                                "= $2 AND state = 'uploading' FOR UPDATE",
                                dataset_id, version, PGRES_TUPLES_OK, err);

    *found = 0;
    if (r == NULL)
        return err->code;
    *found = PQntuples(r) == 1;
    PQclear(r);
    return SL_OK;
}

void
db_version_clear(db_version *v)
{
    if (v == NULL)
        return;
    json_decref(v->manifest);
    json_decref(v->doc);
    v->manifest = v->doc = NULL;
}

/* A live version (0 = the latest) with its key, manifest and summary. */
#define VERSION_SQL                                                                          \
    "SELECT v.version, v.master_version, v.key_version, encode(v.wrapped_key, 'hex'), "      \
    "v.manifest, jsonb_build_object('version', v.version, 'rows', v.rows, 'bytes_in', "      \
    "v.bytes_in, 'bytes_stored', v.bytes_stored, 'sha256', v.sha256, 'row_groups', "         \
    "jsonb_array_length(v.manifest->'groups'), 'created_by', p.name, 'created_at', " TS_SQL( \
        "v.live_at") "), (extract(epoch FROM v.live_at) * 1000000)::bigint, "                \
                     "(extract(epoch FROM now() - v.live_at) * 1000000)::bigint FROM "       \
                     "dataset_versions v JOIN principals p ON p.id = v.created_by "          \
                     "WHERE v.dataset_id = $1 AND v.state = 'live' AND ($2::int = 0 OR "     \
                     "v.version = $2::int) ORDER BY v.version DESC LIMIT 1"

sl_code
db_version_get(PGconn *c, int64_t dataset_id, int version, int for_update, db_version *out,
               sl_err *err)
{
    PGresult *r;

    memset(out, 0, sizeof *out);
    /* version 0: the latest live one */
    r = version_query(c, for_update ? VERSION_SQL " FOR UPDATE OF v" : VERSION_SQL, dataset_id,
                      version, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        if (version == 0)
            return sl_err_set(err, SL_ENOTFOUND, "the dataset has no version yet");
        return sl_err_set(err, SL_ENOTFOUND, "version %d not found", version);
    }
    out->dataset_id = dataset_id;
    out->version = atoi(PQgetvalue(r, 0, 0));
    out->master_version = atoi(PQgetvalue(r, 0, 1));
    out->key_version = atoi(PQgetvalue(r, 0, 2));
    if (!db_unhex(PQgetvalue(r, 0, 3), (size_t)PQgetlength(r, 0, 3), out->wrapped,
                  DB_WRAPPED_DATA_KEY)) {
        PQclear(r);
        return sl_err_set(err, SL_EUNAVAIL, "a live version has no wrapped key");
    }
    out->manifest = cell_json(r, 0, 4, err);
    out->doc = out->manifest ? cell_json(r, 0, 5, err) : NULL;
    out->live_us = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
    out->age_us = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
    PQclear(r);
    if (out->doc == NULL) {
        db_version_clear(out);
        return SL_EUNAVAIL;
    }
    return SL_OK;
}

sl_code
db_version_shred(PGconn *c, int64_t dataset_id, int version, sl_err *err)
{
    PGresult *r = version_query(c,
                                "UPDATE dataset_versions SET state = 'shredded', wrapped_key = "
                                "NULL, shredded_at = now() WHERE dataset_id = $1 AND version = $2 "
                                "AND state = 'live'",
                                dataset_id, version, PGRES_COMMAND_OK, err);
    int n;

    if (r == NULL)
        return err->code;
    n = atoi(PQcmdTuples(r));
    PQclear(r);
    if (n != 1)
        return sl_err_set(err, SL_ENOTFOUND, "version %d not found", version);
    return SL_OK;
}

/* Rows of (dataset, [version,] master version, hex of the wrapped key) into *out. */
static sl_code
wrapped_rows(PGresult *r, int with_version, db_wrapped **out, size_t *n, sl_err *err)
{
    int i, c;

    *out = sl_xcalloc((size_t)PQntuples(r) + 1, sizeof **out);
    for (i = 0; i < PQntuples(r); i++) {
        db_wrapped *w = &(*out)[i];

        c = 0;
        w->dataset_id = strtoll(PQgetvalue(r, i, c++), NULL, 10);
        w->version = with_version ? atoi(PQgetvalue(r, i, c++)) : 0;
        w->master_version = atoi(PQgetvalue(r, i, c++));
        if (!db_unhex(PQgetvalue(r, i, c), (size_t)PQgetlength(r, i, c), w->wrapped,
                      DB_WRAPPED_DATA_KEY)) {
            free(*out);
            *out = NULL;
            PQclear(r);
            return sl_err_set(err, SL_EUNAVAIL, "a wrapped key has the wrong length");
        }
    }
    *n = (size_t)PQntuples(r);
    PQclear(r);
    return SL_OK;
}

sl_code
db_keys_wrapped(PGconn *c, db_wrapped **out, size_t *n, sl_err *err)
{
    PGresult *r;

    *out = NULL;
    *n = 0;
    /* locked until the caller's transaction ends: the rotation's */
    r = db_query(c,
                 "SELECT dataset_id, version, master_version, encode(wrapped_key, 'hex') FROM "
                 "dataset_versions WHERE wrapped_key IS NOT NULL ORDER BY dataset_id, version "
                 "FOR UPDATE",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    return wrapped_rows(r, 1, out, n, err);
}

sl_code
db_mask_keys(PGconn *c, db_wrapped **out, size_t *n, sl_err *err)
{
    PGresult *r;

    *out = NULL;
    *n = 0;
    r = db_query(c,
                 "SELECT substr(purpose, 6)::bigint, master_version, encode(wrapped, 'hex') FROM "
                 "wrapped_keys WHERE purpose ~ '^mask:[0-9]{1,18}$' ORDER BY purpose FOR UPDATE",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    return wrapped_rows(r, 0, out, n, err);
}

sl_code
db_key_rewrap(PGconn *c, int64_t dataset_id, int version, int master_version,
              const unsigned char *wrapped, size_t len, sl_err *err)
{
    char ds[24], ver[16], mv[16];
    const char *params[4] = {ds, ver, mv, (const char *)wrapped};
    const int lengths[4] = {0, 0, 0, (int)len}, formats[4] = {0, 0, 0, 1};
    PGresult *r;

    i64_text(dataset_id, ds);
    snprintf(ver, sizeof ver, "%d", version);
    snprintf(mv, sizeof mv, "%d", master_version);
    r = db_query(c,
                 "UPDATE dataset_versions SET master_version = $3, wrapped_key = $4 WHERE "
                 "dataset_id = $1 AND version = $2 AND wrapped_key IS NOT NULL",
                 4, params, lengths, formats, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_wrapped_key_update(PGconn *c, const char *purpose, int master_version, const unsigned char *blob,
                      size_t len, sl_err *err)
{
    char mv[16];
    const char *params[3] = {purpose, mv, (const char *)blob};
    const int lengths[3] = {0, 0, (int)len}, formats[3] = {0, 0, 1};
    PGresult *r;

    snprintf(mv, sizeof mv, "%d", master_version);
    r = db_query(c, "UPDATE wrapped_keys SET master_version = $2, wrapped = $3 WHERE purpose = $1",
                 3, params, lengths, formats, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_master_in_use(PGconn *c, int master_version, int *in_use, sl_err *err)
{
    char mv[16];
    const char *params[1] = {mv};
    PGresult *r;

    snprintf(mv, sizeof mv, "%d", master_version);
    r = db_query(c,
                 "SELECT EXISTS (SELECT FROM dataset_versions WHERE master_version = $1 AND "
                 "wrapped_key IS NOT NULL) OR EXISTS (SELECT FROM wrapped_keys WHERE "
                 "master_version = $1)",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    *in_use = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return SL_OK;
}

/* ---- policies ---- */

sl_code
db_policy_get(PGconn *c, int64_t dataset_id, json_t **doc, int *version, sl_err *err)
{
    char ds[24];
    const char *params[1] = {ds};
    PGresult *r;

    *doc = NULL;
    *version = 0;
    i64_text(dataset_id, ds);
    r = db_query(c,
                 "SELECT d.policy_version, p.document FROM datasets d LEFT JOIN dataset_policies p "
                 "ON p.dataset_id = d.id AND p.version = d.policy_version WHERE d.id = $1",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "dataset not found");
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    if (*version > 0 && (PQgetisnull(r, 0, 1) || (*doc = cell_json(r, 0, 1, err)) == NULL)) {
        PQclear(r);
        *version = 0;
        return sl_err_set(err, SL_EUNAVAIL, "a dataset's policy version has no document");
    }
    PQclear(r);
    return SL_OK;
}

sl_code
db_policy_put(PGconn *c, int64_t dataset_id, const json_t *doc, int64_t created_by, int *version,
              sl_err *err)
{
    char ds[24], by[24], *text = db_dumps(doc);
    const char *params[3] = {ds, text, by};
    PGresult *r;

    i64_text(dataset_id, ds);
    i64_text(created_by, by);
    r = db_query(c,
                 "WITH v AS (UPDATE datasets SET policy_version = policy_version + 1, updated_at = "
                 "now() WHERE id = $1 RETURNING policy_version) INSERT INTO dataset_policies "
                 "(dataset_id, version, document, created_by) SELECT $1, v.policy_version, "
                 "$2::jsonb, $3 FROM v RETURNING version",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    free(text);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "dataset not found");
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return SL_OK;
}

void
db_globals_free(db_global *g, size_t n)
{
    size_t i;

    if (g == NULL)
        return;
    for (i = 0; i < n; i++)
        json_decref(g[i].doc);
    free(g);
}

sl_code
db_globals_current(PGconn *c, db_global **out, size_t *n, sl_err *err)
{
    PGresult *r;
    int i, rows;

    *out = NULL;
    *n = 0;
    r = db_query(c,
                 "SELECT name, version, document, " TS_SQL(
                     "created_at") " FROM (SELECT DISTINCT "
                                   "ON (name) name, version, document, created_at FROM "
                                   "global_policies ORDER BY "
                                   "name, version DESC) g WHERE document IS NOT NULL ORDER BY name",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    rows = PQntuples(r);
    *out = sl_xcalloc((size_t)rows + 1, sizeof **out);
    for (i = 0; i < rows; i++) {
        db_global *g = &(*out)[i];

        snprintf(g->name, sizeof g->name, "%s", PQgetvalue(r, i, 0));
        g->version = atoi(PQgetvalue(r, i, 1));
        snprintf(g->created_at, sizeof g->created_at, "%s", PQgetvalue(r, i, 3));
        if ((g->doc = cell_json(r, i, 2, err)) == NULL) {
            db_globals_free(*out, (size_t)i);
            *out = NULL;
            PQclear(r);
            return SL_EUNAVAIL;
        }
    }
    *n = (size_t)rows;
    PQclear(r);
    return SL_OK;
}

sl_code
db_global_put(PGconn *c, const char *name, const json_t *doc, int64_t created_by, int *version,
              sl_err *err)
{
    char by[24], *text = doc != NULL ? db_dumps(doc) : NULL;
    const char *params[3] = {name, text, by};
    PGresult *r;

    i64_text(created_by, by);
    /* a deletion needs a current document; two changes at once: the second is a
     * unique violation on (name, version), a conflict */
    r = db_query(c,
                 "WITH cur AS (SELECT version, document FROM global_policies WHERE name = $1 "
                 "ORDER BY version DESC LIMIT 1) INSERT INTO global_policies (name, version, "
                 "document, created_by) SELECT $1, coalesce((SELECT version FROM cur), 0) + 1, "
                 "$2::jsonb, $3 WHERE $2::jsonb IS NOT NULL OR (SELECT document FROM cur) IS NOT "
                 "NULL RETURNING version",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    free(text);
    if (r == NULL) {
        if (err->code == SL_ECONFLICT)
            sl_err_set(err, SL_ECONFLICT, "global policy \"%s\" changed meanwhile: try again",
                       name);
        return err->code;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "global policy \"%s\" not found", name);
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return SL_OK;
}

/* ---- retention and legal holds ---- */

static void
days_text(double d, char out[32])
{
    if (d < 0)
        out[0] = '\0';
    else
        snprintf(out, 32, "%.17g", d);
}

sl_code
db_retention_set(PGconn *c, int64_t dataset_id, double min_days, double max_days, const char *mode,
                 sl_err *err)
{
    char ds[24], mn[32], mx[32];
    const char *params[4] = {ds, min_days >= 0 ? mn : NULL, max_days >= 0 ? mx : NULL, mode};
    PGresult *r;

    i64_text(dataset_id, ds);
    days_text(min_days, mn);
    days_text(max_days, mx);
    r = db_query(c,
                 "UPDATE datasets SET retention_min_days = $2::float8, retention_max_days = "
                 "$3::float8, retention_mode = $4, updated_at = now() WHERE id = $1",
                 4, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_legal_hold_set(PGconn *c, int64_t dataset_id, int hold, const char *reason, sl_err *err)
{
    char ds[24];
    const char *params[3] = {ds, hold ? "true" : "false", reason};
    PGresult *r;

    i64_text(dataset_id, ds);
    r = db_query(c,
                 "UPDATE datasets SET legal_hold = $2::boolean, legal_hold_reason = $3, "
                 "updated_at = now() WHERE id = $1",
                 3, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_version_expired(PGconn *c, db_expired *out, int *found, sl_err *err)
{
    PGresult *r;

    *found = 0;
    memset(out, 0, sizeof *out);
    /* one at a time, in the caller's transaction; another gateway's sweeper skips it, a
     * legal hold being set waits for this transaction (the dataset row is shared), and a
     * dataset row a request holds is skipped (not shredded now: always safe) */
    r = db_query(c,
                 "SELECT v.dataset_id, v.version, d.name, v.master_version, v.sha256, "
                 "d.retention_max_days, (extract(epoch FROM v.live_at) * 1000000)::bigint FROM "
                 "dataset_versions v JOIN datasets d ON d.id = v.dataset_id WHERE v.state = "
                 "'live' AND d.retention_max_days IS NOT NULL AND NOT d.legal_hold AND "
                 "v.live_at + d.retention_max_days * interval '1 day' <= now() ORDER BY "
                 "v.live_at LIMIT 1 FOR UPDATE OF v SKIP LOCKED FOR SHARE OF d SKIP LOCKED",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) == 1) {
        out->dataset_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        out->version = atoi(PQgetvalue(r, 0, 1));
        snprintf(out->name, sizeof out->name, "%s", PQgetvalue(r, 0, 2));
        out->master_version = atoi(PQgetvalue(r, 0, 3));
        snprintf(out->sha256, sizeof out->sha256, "%s", PQgetvalue(r, 0, 4));
        out->max_days = strtod(PQgetvalue(r, 0, 5), NULL);
        out->live_us = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
        *found = 1;
    }
    PQclear(r);
    return SL_OK;
}

/*
 * sql/db_principals.c: principals, tokens and wrapped keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

#define TS_SQL(col)   "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define EPOCH_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

PGresult *
db_query(PGconn *c, const char *sql, int n, const char *const *params, const int *lengths,
         const int *formats, ExecStatusType want, sl_err *err)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, lengths, formats, 0);
    const char *state;

    if (PQresultStatus(r) == want)
        return r;
    state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state != NULL && strcmp(state, "23505") == 0) {
        sl_err_set(err, SL_ECONFLICT, "already exists");
    } else {
        sl_err_set(err, SL_EUNAVAIL, "database unavailable");
    }
    sl_err_detail(err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return NULL;
}

char *
db_dumps(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s == NULL)
        sl_panic("json_dumps failed");
    return s;
}

void
db_principal_clear(db_principal *p)
{
    if (p == NULL)
        return;
    json_decref(p->roles);
    json_decref(p->attributes);
    p->roles = p->attributes = NULL;
}

sl_code
db_principal_insert(PGconn *c, const char *name, const char *kind, const json_t *roles,
                    const json_t *attributes, int64_t *id, sl_err *err)
{
    char *r = db_dumps(roles), *a = db_dumps(attributes);
    const char *params[4] = {name, kind, r, a};
    PGresult *res;
    sl_code rc = SL_OK;

    res = db_query(c,
                   "INSERT INTO principals (name, kind, roles, attributes)"
                   " VALUES ($1, $2, $3::jsonb, $4::jsonb) RETURNING id",
                   4, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (res == NULL) {
        rc = err ? err->code : SL_EUNAVAIL;
        if (rc == SL_ECONFLICT)
            sl_err_set(err, SL_ECONFLICT, "principal \"%s\" already exists", name);
    } else {
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    free(r);
    free(a);
    return rc;
}

#define PRINCIPAL_COLS \
    "id, name, kind, roles::text, attributes::text, disabled, " EPOCH_US("created_at") ", version"

static void
principal_from_row(PGresult *r, int row, db_principal *p)
{
    memset(p, 0, sizeof *p);
    p->id = strtoll(PQgetvalue(r, row, 0), NULL, 10);
    snprintf(p->name, sizeof p->name, "%s", PQgetvalue(r, row, 1));
    snprintf(p->kind, sizeof p->kind, "%s", PQgetvalue(r, row, 2));
    p->roles = json_loads(PQgetvalue(r, row, 3), 0, NULL);
    p->attributes = json_loads(PQgetvalue(r, row, 4), 0, NULL);
    if (p->roles == NULL)
        p->roles = json_array();
    if (p->attributes == NULL)
        p->attributes = json_object();
    p->disabled = PQgetvalue(r, row, 5)[0] == 't';
    p->created_us = strtoll(PQgetvalue(r, row, 6), NULL, 10);
    p->version = strtoll(PQgetvalue(r, row, 7), NULL, 10);
}

sl_code
db_principal_get(PGconn *c, const char *name, db_principal *out, sl_err *err)
{
    const char *params[1] = {name};
    PGresult *r;

    r = db_query(c, "SELECT " PRINCIPAL_COLS " FROM principals WHERE name = $1", 1, params, NULL,
                 NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "principal \"%s\" not found", name);
    }
    principal_from_row(r, 0, out);
    PQclear(r);
    return SL_OK;
}

sl_code
db_principal_list(PGconn *c, const char *after, int limit, db_principal **out, int *n, int *more,
                  sl_err *err)
{
    char lim[16];
    const char *params[2] = {after ? after : "", lim};
    PGresult *r;
    int i, rows;

    *out = NULL;
    *n = *more = 0;
    snprintf(lim, sizeof lim, "%d", limit + 1);
    r = db_query(c,
                 "SELECT " PRINCIPAL_COLS " FROM principals WHERE name > $1 ORDER BY name LIMIT $2",
                 2, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    rows = PQntuples(r);
    if (rows > limit) {
        *more = 1;
        rows = limit;
    }
    *out = sl_xcalloc((size_t)(rows ? rows : 1), sizeof(db_principal));
    for (i = 0; i < rows; i++)
        principal_from_row(r, i, &(*out)[i]);
    *n = rows;
    PQclear(r);
    return SL_OK;
}

void
db_principal_list_free(db_principal *list, int n)
{
    int i;

    if (list == NULL)
        return;
    for (i = 0; i < n; i++)
        db_principal_clear(&list[i]);
    free(list);
}

sl_code
db_principal_update(PGconn *c, int64_t id, const json_t *roles, const json_t *attributes,
                    int disabled, sl_err *err)
{
    char ids[24], *r = roles ? db_dumps(roles) : NULL,
                  *a = attributes ? db_dumps(attributes) : NULL;
    const char *params[4] = {ids, r, a, disabled < 0 ? NULL : (disabled ? "true" : "false")};
    PGresult *res;

    snprintf(ids, sizeof ids, "%lld", (long long)id);
    res = db_query(c,
                   "UPDATE principals SET roles = coalesce($2::jsonb, roles),"
                   " attributes = coalesce($3::jsonb, attributes),"
                   " disabled = coalesce($4::boolean, disabled), updated_at = now()"
                   " WHERE id = $1", /* the version moves on by trigger */
                   4, params, NULL, NULL, PGRES_COMMAND_OK, err);
    free(r);
    free(a);
    if (res == NULL)
        return SL_EUNAVAIL;
    PQclear(res);
    return SL_OK;
}

sl_code
db_lock_admins(PGconn *c, sl_err *err)
{
    PGresult *r = db_query(c, "SELECT pg_advisory_xact_lock(1936482660)", 0, NULL, NULL, NULL,
                           PGRES_TUPLES_OK, err);

    if (r == NULL)
        return SL_EUNAVAIL;
    PQclear(r);
    return SL_OK;
}

sl_code
db_admin_count_except(PGconn *c, int64_t except_id, int64_t *n, sl_err *err)
{
    char ids[24];
    const char *params[1] = {ids};
    PGresult *r;

    snprintf(ids, sizeof ids, "%lld", (long long)except_id);
    r = db_query(c,
                 "SELECT count(*) FROM principals WHERE id <> $1 AND NOT disabled"
                 " AND roles ? 'admin'",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    *n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return SL_OK;
}

sl_code
db_token_insert(PGconn *c, const char *token_id, int64_t principal_id, const unsigned char hash[32],
                int64_t expires_us, sl_err *err)
{
    char pid[24], exp[32];
    const char *params[4] = {token_id, pid, (const char *)hash, exp};
    const int lengths[4] = {0, 0, 32, 0}, formats[4] = {0, 0, 1, 0};
    PGresult *r;

    snprintf(pid, sizeof pid, "%lld", (long long)principal_id);
    snprintf(exp, sizeof exp, "%lld", (long long)expires_us);
    r = db_query(c,
                 "INSERT INTO tokens (token_id, principal_id, hash, expires_at)"
                 " VALUES ($1, $2, $3, to_timestamp($4::bigint / 1000000.0))",
                 4, params, lengths, formats, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err ? err->code : SL_EUNAVAIL;
    PQclear(r);
    return SL_OK;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes the 64 hex digits PostgreSQL's encode() gave; a bad digit gives zeros there,
 * which can never match a real hash. */
void
db_unhex32(const char *hex, unsigned char out[32])
{
    if (!db_unhex(hex, strlen(hex), out, 32))
        memset(out, 0, 32);
}

int
db_unhex(const char *hex, size_t len, unsigned char *out, size_t n)
{
    size_t i;

    if (len != 2 * n)
        return 0;
    for (i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

static const char auth_sql[] =
    "SELECT p.id, p.name, p.kind, p.roles::text, p.attributes::text, p.disabled, "
    "(extract(epoch FROM p.created_at) * 1000000)::bigint, p.version, encode(t.hash, 'hex'), "
    "(extract(epoch FROM t.expires_at) * 1000000)::bigint, t.revoked_at IS NOT NULL"
    " FROM tokens t JOIN principals p ON p.id = t.principal_id WHERE t.token_id = $1";

/* The lookup of every authenticated request: prepared once per connection. */
static PGresult *
auth_query(PGconn *c, const char *token_id)
{
    const char *params[1] = {token_id};
    PGresult *r = PQexecPrepared(c, "sl_auth", 1, params, NULL, NULL, 0);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    if (PQresultStatus(r) == PGRES_FATAL_ERROR && state != NULL && strcmp(state, "26000") == 0) {
        PQclear(r);
        r = PQprepare(c, "sl_auth", auth_sql, 1, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r;
        PQclear(r);
        r = PQexecPrepared(c, "sl_auth", 1, params, NULL, NULL, 0);
    }
    return r;
}

sl_code
db_auth_lookup(PGconn *c, const char *token_id, db_token *tok, db_principal *p, sl_err *err)
{
    PGresult *r = auth_query(c, token_id);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sl_err_set(err, SL_EUNAVAIL, "database unavailable");
        sl_err_detail(err, "auth lookup: %s", PQresultErrorMessage(r));
        PQclear(r);
        return SL_EUNAVAIL;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "no such token");
    }
    principal_from_row(r, 0, p);
    memset(tok, 0, sizeof *tok);
    tok->principal_id = p->id;
    db_unhex32(PQgetvalue(r, 0, 8), tok->hash);
    tok->expires_us = strtoll(PQgetvalue(r, 0, 9), NULL, 10);
    tok->revoked = PQgetvalue(r, 0, 10)[0] == 't';
    PQclear(r);
    return SL_OK;
}

sl_code
db_token_owner(PGconn *c, const char *token_id, int64_t *principal_id, sl_err *err)
{
    const char *params[1] = {token_id};
    PGresult *r;

    r = db_query(c, "SELECT principal_id FROM tokens WHERE token_id = $1", 1, params, NULL, NULL,
                 PGRES_TUPLES_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "token \"%s\" not found", token_id);
    }
    *principal_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return SL_OK;
}

sl_code
db_token_revoke(PGconn *c, const char *token_id, sl_err *err)
{
    const char *params[1] = {token_id};
    PGresult *r;
    int n;

    r = db_query(c,
                 "UPDATE tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
                 1, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    n = atoi(PQcmdTuples(r));
    PQclear(r);
    if (n != 1)
        return sl_err_set(err, SL_ENOTFOUND, "token \"%s\" not found", token_id);
    return SL_OK;
}

sl_code
db_tokens_json(PGconn *c, int64_t principal_id, json_t **out, sl_err *err)
{
    char pid[24];
    const char *params[1] = {pid};
    PGresult *r;
    int i;

    snprintf(pid, sizeof pid, "%lld", (long long)principal_id);
    r = db_query(c,
                 "SELECT token_id, " TS_SQL("created_at") ", " TS_SQL(
                     "expires_at") ", revoked_at IS NOT NULL FROM tokens WHERE principal_id = $1 "
                                   "ORDER BY created_at",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return SL_EUNAVAIL;
    *out = json_array();
    for (i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            *out, json_pack("{s:s, s:s, s:s, s:b}", "token_id", PQgetvalue(r, i, 0), "created_at",
                            PQgetvalue(r, i, 1), "expires_at", PQgetvalue(r, i, 2), "revoked",
                            PQgetvalue(r, i, 3)[0] == 't'));
    PQclear(r);
    return SL_OK;
}

sl_code
db_wrapped_key_get(PGconn *c, const char *purpose, int *master_version, unsigned char **blob,
                   size_t *len, sl_err *err)
{
    const char *params[1] = {purpose};
    PGresult *r;

    *blob = NULL;
    *len = 0;
    /* binary results: column 1 is the raw bytea */
    r = PQexecParams(c, "SELECT master_version, wrapped FROM wrapped_keys WHERE purpose = $1", 1,
                     NULL, params, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sl_err_set(err, SL_EUNAVAIL, "database unavailable");
        sl_err_detail(err, "%s", PQresultErrorMessage(r));
        PQclear(r);
        return SL_EUNAVAIL;
    }
    if (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != 4) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "no wrapped key \"%s\"", purpose);
    }
    {
        const unsigned char *v = (const unsigned char *)PQgetvalue(r, 0, 0);
        *master_version =
            (int)((uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3]);
    }
    *len = (size_t)PQgetlength(r, 0, 1);
    *blob = sl_xmalloc(*len);
    memcpy(*blob, PQgetvalue(r, 0, 1), *len);
    PQclear(r);
    return SL_OK;
}

sl_code
db_wrapped_key_put(PGconn *c, const char *purpose, int master_version, const unsigned char *blob,
                   size_t len, sl_err *err)
{
    char ver[16];
    const char *params[3] = {purpose, ver, (const char *)blob};
    const int lengths[3] = {0, 0, (int)len}, formats[3] = {0, 0, 1};
    PGresult *r;

    snprintf(ver, sizeof ver, "%d", master_version);
    r = db_query(c,
                 "INSERT INTO wrapped_keys (purpose, master_version, wrapped) VALUES ($1, $2, $3)",
                 3, params, lengths, formats, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err ? err->code : SL_EUNAVAIL;
    PQclear(r);
    return SL_OK;
}

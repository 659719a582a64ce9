/*
 * gateway/gw_handlers.c: whoami, public keys, principals and tokens.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_http.h"

sl_code
gw_db_get(gw_req *r, PGconn **c, sl_err *err)
{
    return db_acquire(r->srv->pool, SL_DB_ACQUIRE_MS, c, err);
}

PGconn *
gw_db_or_reply(gw_req *r)
{
    PGconn *c = NULL;
    sl_err err;

    sl_err_clear(&err);
    if (gw_db_get(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return NULL;
    }
    return c;
}

void
gw_db_put(gw_req *r, PGconn *c, sl_code rc)
{
    if (c != NULL)
        db_release(r->srv->pool, c, rc == SL_EUNAVAIL);
}

sl_code
gw_txn_begin(gw_req *r, PGconn **c, sl_err *err)
{
    sl_code rc;

    *c = NULL;
    if ((rc = gw_db_get(r, c, err)) != SL_OK)
        return rc;
    if ((rc = db_exec(*c, "BEGIN", err)) != SL_OK) {
        gw_db_put(r, *c, SL_EUNAVAIL);
        *c = NULL;
        return rc;
    }
    r->txn = *c;
    return SL_OK;
}

json_t *
gw_principal_json(const db_principal *p)
{
    char ts[SL_TS_LEN];

    sl_time_format_s(p->created_us / 1000000, ts);
    return json_pack("{s:s, s:s, s:O, s:O, s:b, s:s}", "name", p->name, "kind", p->kind, "roles",
                     p->roles, "attributes", p->attributes, "disabled", p->disabled, "created_at",
                     ts);
}

void
gw_h_whoami(gw_req *r)
{
    char ts[SL_TS_LEN];

    sl_time_format_s(r->token_expires_us / 1000000, ts);
    gw_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:O, s:O, s:s, s:s}", "name", r->who.name, "kind",
                            r->who.kind, "roles", r->who.roles, "attributes", r->who.attributes,
                            "token_id", r->token_id, "token_expires_at", ts));
}

void
gw_h_keys_public(gw_req *r)
{
    const gw_keys *k = r->srv->keys;
    json_t *arr = json_array();
    char b64[64];
    int i;

    for (i = 0; i < k->npub; i++) {
        cry_b64(k->pub[i].pk, CRY_SIGN_PK_BYTES, b64);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "id", k->pub[i].id, "alg",
                                             "ed25519", "public_key", b64, "status",
                                             k->pub[i].active ? "active" : "retired"));
    }
    gw_reply_json(r, 200, json_pack("{s:o}", "keys", arr));
}

sl_code
gw_token_issue(gw_req *r, PGconn *c, int64_t principal_id, int64_t ttl_s, json_t *answer,
               sl_err *err)
{
    char id[CRY_TOKEN_ID_HEX + 1], secret[CRY_TOKEN_SECRET_HEX + 1], token[CRY_TOKEN_LEN + 1];
    char ts[SL_TS_LEN];
    unsigned char hash[CRY_HASH_BYTES];
    int64_t expires = sl_now_us() + (ttl_s > 0 ? ttl_s : SL_DEFAULT_TOKEN_TTL_S) * 1000000;
    sl_code rc;

    if (ttl_s == 0 && SL_DEFAULT_TOKEN_TTL_S > r->srv->cfg->max_token_ttl_s)
        expires = sl_now_us() + r->srv->cfg->max_token_ttl_s * 1000000;
    cry_token_new(id, secret, token);
    cry_token_hash(r->srv->keys->token, id, secret, hash);
    rc = db_token_insert(c, id, principal_id, hash, expires, err);
    if (rc == SL_OK) {
        sl_time_format_s(expires / 1000000, ts);
        json_object_set_new(answer, "token", json_string(token));
        json_object_set_new(answer, "token_id", json_string(id));
        json_object_set_new(answer, "expires_at", json_string(ts));
        if (r->detail == NULL)
            r->detail = json_object();
        json_object_set_new(r->detail, "token_id", json_string(id));
        json_object_set_new(r->detail, "expires_at", json_string(ts));
    }
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(token, sizeof token);
    return rc;
}

json_t *
gw_body_or_reply(gw_req *r, int allow_empty)
{
    json_t *obj = NULL;
    sl_err err;

    sl_err_clear(&err);
    if (gw_body_object(r, allow_empty, &obj, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return NULL;
    }
    return obj;
}

void
gw_h_principal_create(gw_req *r)
{
    gw_principal_body b;
    json_t *obj, *answer = NULL, *roles = NULL, *attrs = NULL;
    db_principal p;
    PGconn *c = NULL;
    int64_t id = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&p, 0, sizeof p);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if ((rc = gw_json_principal_create(obj, r->srv->cfg->max_token_ttl_s, &b, &err)) != SL_OK)
        goto fail;
    roles = b.roles ? json_incref((json_t *)b.roles) : json_array();
    attrs = b.attributes ? json_incref((json_t *)b.attributes) : json_object();
    r->detail = json_pack("{s:s, s:s, s:O}", "name", b.name, "kind", b.kind, "roles", roles);
    snprintf(r->resource, sizeof r->resource, "principals/%s", b.name);
    if ((rc = gw_txn_begin(r, &c, &err)) != SL_OK)
        goto fail;
    if ((rc = db_principal_insert(c, b.name, b.kind, roles, attrs, &id, &err)) != SL_OK)
        goto fail;
    if ((rc = db_principal_get(c, b.name, &p, &err)) != SL_OK)
        goto fail;
    answer = gw_principal_json(&p);
    if ((rc = gw_token_issue(r, c, id, b.ttl_s, answer, &err)) != SL_OK)
        goto fail;
    snprintf(r->location, sizeof r->location, "/v1/principals/%s", b.name);
    gw_reply_json(r, 201, answer);
    answer = NULL;
    goto out;
fail:
    gw_reply_err(r, &err);
out:
    json_decref(answer);
    json_decref(roles);
    json_decref(attrs);
    json_decref(obj);
    db_principal_clear(&p);
}

void
gw_h_principal_list(gw_req *r)
{
    db_principal *list = NULL;
    const char *after;
    json_t *items;
    PGconn *c = NULL;
    int limit, n = 0, more = 0, i;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    if (!gw_list_args(r, &limit, &after))
        return;
    if ((rc = gw_db_get(r, &c, &err)) == SL_OK)
        rc = db_principal_list(c, after, limit, &list, &n, &more, &err);
    gw_db_put(r, c, rc);
    if (rc != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    items = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(items, gw_principal_json(&list[i]));
    gw_reply_json(
        r, 200,
        json_pack("{s:o, s:s?}", "items", items, "next", more && n > 0 ? list[n - 1].name : NULL));
    db_principal_list_free(list, n);
}

/* The principal named in the path, or an answer. */
static int
path_principal(gw_req *r, PGconn *c, db_principal *p, sl_err *err)
{
    if (!sl_name_valid(r->params[0])) {
        gw_reply_error(r, SL_EBADREQ, "invalid principal name");
        return 0;
    }
    if (db_principal_get(c, r->params[0], p, err) != SL_OK) {
        gw_reply_err(r, err);
        return 0;
    }
    return 1;
}

void
gw_h_principal_show(gw_req *r)
{
    db_principal p;
    json_t *answer, *tokens = NULL;
    PGconn *c = NULL;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&p, 0, sizeof p);
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (path_principal(r, c, &p, &err)) {
        if ((rc = db_tokens_json(c, p.id, &tokens, &err)) != SL_OK) {
            gw_reply_err(r, &err);
        } else {
            answer = gw_principal_json(&p);
            json_object_set_new(answer, "tokens", tokens);
            gw_reply_json(r, 200, answer);
        }
    } else {
        rc = err.code;
    }
    gw_db_put(r, c, rc);
    db_principal_clear(&p);
}

static int
has_admin(const json_t *roles)
{
    size_t i;
    json_t *v;

    json_array_foreach(roles, i, v)
    {
        if (strcmp(json_string_value(v), "admin") == 0)
            return 1;
    }
    return 0;
}

void
gw_h_principal_patch(gw_req *r)
{
    gw_principal_body b;
    db_principal p;
    json_t *obj = NULL;
    PGconn *c = NULL;
    int64_t others = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&p, 0, sizeof p);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if ((rc = gw_json_principal_patch(obj, &b, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    r->detail = json_pack("{s:O?, s:O?}", "roles", b.roles, "attributes_changed",
                          b.attributes ? json_true() : NULL);
    if (b.has_disabled)
        json_object_set_new(r->detail, "disabled", json_boolean(b.disabled));
    if ((rc = gw_txn_begin(r, &c, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    /* changes to admins one at a time, so two cannot each leave the other as the last */
    if ((rc = db_lock_admins(c, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (!path_principal(r, c, &p, &err))
        goto out;
    /* never leave the gateway without an enabled admin */
    if (has_admin(p.roles) && !p.disabled &&
        ((b.roles != NULL && !has_admin(b.roles)) || (b.has_disabled && b.disabled))) {
        if ((rc = db_admin_count_except(c, p.id, &others, &err)) != SL_OK) {
            gw_reply_err(r, &err);
            goto out;
        }
        if (others == 0) {
            gw_reply_error(r, SL_ECONFLICT,
                           "\"%s\" is the last enabled admin; make another admin first", p.name);
            goto out;
        }
    }
    if ((rc = db_principal_update(c, p.id, b.roles, b.attributes, b.has_disabled ? b.disabled : -1,
                                  &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    /* this gateway's cached authentications of it are stale now (others' are checked) */
    gw_authcache_forget_principal(r->srv->auth_cache, p.id);
    db_principal_clear(&p);
    if ((rc = db_principal_get(c, r->params[0], &p, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    gw_reply_json(r, 200, gw_principal_json(&p));
out:
    json_decref(obj);
    db_principal_clear(&p);
}

void
gw_h_token_create(gw_req *r)
{
    db_principal p;
    json_t *obj = NULL, *answer;
    PGconn *c = NULL;
    int64_t ttl = 0;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&p, 0, sizeof p);
    if ((obj = gw_body_or_reply(r, 1)) == NULL)
        return;
    if ((rc = gw_json_token_create(obj, r->srv->cfg->max_token_ttl_s, &ttl, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if ((rc = gw_txn_begin(r, &c, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (!path_principal(r, c, &p, &err))
        goto out;
    answer = json_object();
    if ((rc = gw_token_issue(r, c, p.id, ttl, answer, &err)) != SL_OK) {
        json_decref(answer);
        gw_reply_err(r, &err);
        goto out;
    }
    gw_reply_json(r, 201, answer);
out:
    json_decref(obj);
    db_principal_clear(&p);
}

void
gw_h_token_revoke(gw_req *r)
{
    const char *id = r->params[0];
    PGconn *c = NULL;
    int64_t owner = 0;
    sl_err err;
    sl_code rc;
    size_t i;

    sl_err_clear(&err);
    for (i = 0; id[i] != '\0'; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            break;
    if (i != CRY_TOKEN_ID_HEX || id[i] != '\0') {
        gw_reply_error(r, SL_EBADREQ, "invalid token id");
        return;
    }
    if ((rc = gw_txn_begin(r, &c, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    if ((rc = db_token_owner(c, id, &owner, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    /* admin revokes any token; a principal may revoke its own */
    if (!gw_has_role(r, "admin") && owner != r->who.id) {
        gw_reason(r, "requires role admin or the token's own principal");
        gw_reply_error(r, SL_EDENIED, "only an admin or the token's principal may revoke it");
        return;
    }
    if ((rc = db_token_revoke(c, id, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    gw_authcache_forget(r->srv->auth_cache, id);
    gw_reply_status(r, 204);
}

/*
 * gateway/gw_authcache.c: authentications a gateway has already looked up, so a busy
 * client's requests need no database round trip each. A fixed, direct-mapped table keyed
 * by token id; an entry holds what the database said (the token's keyed hash, its expiry,
 * the principal and its version) and is used only to skip the lookup: the presented
 * secret is still checked against the hash in constant time, and expiry against the
 * clock.
 *
 * Revocation stays immediate because a cache hit is only a claim: the request's audit
 * event carries (token id, principal version), and the transaction that commits it first
 * checks the claim against the database (sluice_auth_check). If it no longer holds
 * (revoked, expired, disabled or changed, by this gateway or any other), nothing is
 * written, the entry is dropped and the request is authenticated again from the database
 * and made anew; its answer was never sent. Memory is fixed whatever the number of tokens.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

typedef struct {
    char token_id[CRY_TOKEN_ID_HEX + 1]; /* "" when empty */
    unsigned char hash[CRY_HASH_BYTES];
    int64_t expires_us;
    int64_t cached_ns;
    db_principal p; /* roles and attributes owned by the entry */
} entry;

struct gw_authcache {
    pthread_mutex_t lock;
    int64_t ttl_ns;
    entry table[SL_AUTH_CACHE];
};

gw_authcache *
gw_authcache_new(int ttl_s)
{
    gw_authcache *c = sl_xcalloc(1, sizeof *c);

    pthread_mutex_init(&c->lock, NULL);
    c->ttl_ns = (int64_t)ttl_s * 1000000000LL;
    return c;
}

static void
clear(entry *e)
{
    db_principal_clear(&e->p);
    sodium_memzero(e, sizeof *e);
}

void
gw_authcache_free(gw_authcache *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < SL_AUTH_CACHE; i++)
        clear(&c->table[i]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Token ids are 16 random hex digits chosen by the gateway: their first 8 index well. */
static entry *
slot_of(gw_authcache *c, const char *token_id)
{
    uint32_t h = 0;
    int i;

    for (i = 0; i < 8 && token_id[i] != '\0'; i++) {
        char ch = token_id[i];
        h = h << 4 | ((uint32_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10) & 15u);
    }
    return &c->table[h % SL_AUTH_CACHE];
}

static int
copy_principal(const db_principal *from, db_principal *to)
{
    *to = *from;
    to->roles = json_deep_copy(from->roles);
    to->attributes = json_deep_copy(from->attributes);
    if (to->roles == NULL || to->attributes == NULL) {
        db_principal_clear(to);
        memset(to, 0, sizeof *to);
        return 0;
    }
    return 1;
}

int
gw_authcache_get(gw_authcache *c, const char *token_id, db_token *tok, db_principal *p)
{
    entry *e;
    int hit = 0;

    pthread_mutex_lock(&c->lock);
    e = slot_of(c, token_id);
    if (e->token_id[0] != '\0' && strcmp(e->token_id, token_id) == 0) {
        if (sl_mono_ns() - e->cached_ns > c->ttl_ns) {
            clear(e);
        } else if (copy_principal(&e->p, p)) {
            memset(tok, 0, sizeof *tok);
            tok->principal_id = e->p.id;
            memcpy(tok->hash, e->hash, sizeof tok->hash);
            tok->expires_us = e->expires_us;
            hit = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void
gw_authcache_put(gw_authcache *c, const char *token_id, const db_token *tok, const db_principal *p)
{
    entry *e, fresh;

    memset(&fresh, 0, sizeof fresh);
    if (tok->revoked || p->disabled || !copy_principal(p, &fresh.p))
        return;
    snprintf(fresh.token_id, sizeof fresh.token_id, "%s", token_id);
    memcpy(fresh.hash, tok->hash, sizeof fresh.hash);
    fresh.expires_us = tok->expires_us;
    fresh.cached_ns = sl_mono_ns();
    pthread_mutex_lock(&c->lock);
    e = slot_of(c, token_id);
    clear(e);
    *e = fresh;
    pthread_mutex_unlock(&c->lock);
    sodium_memzero(&fresh, sizeof fresh);
}

void
gw_authcache_forget(gw_authcache *c, const char *token_id)
{
    entry *e;

    pthread_mutex_lock(&c->lock);
    e = slot_of(c, token_id);
    if (strcmp(e->token_id, token_id) == 0)
        clear(e);
    pthread_mutex_unlock(&c->lock);
}

void
gw_authcache_forget_principal(gw_authcache *c, int64_t principal_id)
{
    size_t i;

    pthread_mutex_lock(&c->lock);
    for (i = 0; i < SL_AUTH_CACHE; i++)
        if (c->table[i].token_id[0] != '\0' && c->table[i].p.id == principal_id)
            clear(&c->table[i]);
    pthread_mutex_unlock(&c->lock);
}

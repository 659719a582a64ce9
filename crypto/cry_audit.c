/*
 * crypto/cry_audit.c: signed checkpoints of the audit hash chain and the streaming
 * verifier that the server and the offline CLI share, so both judge a trail alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"

#define MAX_KEYS 64
#define RING     4096
#define MAX_SEQ  9007199254740991LL /* 2^53 - 1: event values are below 2^53 */

static sl_code
checkpoint_canon(const json_t *cp, sl_buf *out)
{
    json_t *body = json_deep_copy(cp);
    sl_code rc;

    if (body == NULL)
        return SL_EINVALID;
    json_object_del(body, "signature");
    rc = cry_jcs(body, out);
    json_decref(body);
    return rc;
}

json_t *
cry_checkpoint_new(const cry_key *sk, const char *key_id, int64_t seq, const char *hash_hex,
                   const char *ts)
{
    unsigned char sig[CRY_SIG_BYTES];
    char sig64[128];
    json_t *cp;
    sl_buf canon;

    cp = json_pack("{s:I, s:s, s:s, s:s}", "seq", (json_int_t)seq, "hash", hash_hex, "ts", ts,
                   "key_id", key_id);
    if (cp == NULL)
        sl_panic("cry_checkpoint_new: could not build the checkpoint");
    sl_buf_init(&canon, 4096);
    if (cry_jcs(cp, &canon) != SL_OK)
        sl_panic("cry_checkpoint_new: checkpoint not canonicalisable");
    cry_sign(sk, canon.data, canon.len, sig);
    cry_b64(sig, sizeof sig, sig64);
    json_object_set_new(cp, "signature", json_string(sig64));
    sl_buf_free(&canon);
    return cp;
}

int
cry_checkpoint_check(const json_t *cp, const unsigned char (*pks)[CRY_SIGN_PK_BYTES], size_t n)
{
    const char *key_id = json_string_value(json_object_get(cp, "key_id"));
    const char *sig64 = json_string_value(json_object_get(cp, "signature"));
    unsigned char sig[CRY_SIG_BYTES];
    char id[CRY_KEY_ID_HEX + 1];
    size_t i, siglen = 0;
    sl_buf canon;
    int good = 0;

    if (key_id == NULL || sig64 == NULL ||
        cry_unb64(sig64, strlen(sig64), sig, sizeof sig, &siglen) != SL_OK || siglen != sizeof sig)
        return 0;
    for (i = 0; i < n; i++) {
        cry_key_id(pks[i], id);
        if (strcmp(id, key_id) != 0)
            continue;
        sl_buf_init(&canon, 4096);
        if (checkpoint_canon(cp, &canon) == SL_OK)
            good = cry_sign_verify(pks[i], canon.data, canon.len, sig);
        sl_buf_free(&canon);
        break;
    }
    return good;
}

struct cry_verifier {
    unsigned char keys[MAX_KEYS][CRY_SIGN_PK_BYTES];
    char key_ids[MAX_KEYS][CRY_KEY_ID_HEX + 1];
    size_t nkeys;
    int genesis;
    int started;
    int64_t last_seq; /* seq of the last event fed */
    unsigned char last_hash[CRY_HASH_BYTES];
    int64_t signed_seq; /* last seq covered by a good checkpoint */
    int64_t events, checkpoints;
    int64_t bad_seq;
    char error[160];
    json_t *last_cp;
    sl_buf canon;
    /* recent (seq, hash) pairs, to tell an insertion from an alteration */
    int64_t ring_seq[RING];
    unsigned char ring_hash[RING][CRY_HASH_BYTES];
    size_t ring_n;
};

cry_verifier *
cry_verifier_new(void)
{
    cry_verifier *v = sl_xcalloc(1, sizeof *v);

    sl_buf_init(&v->canon, 16 * 1024 * 1024);
    return v;
}

void
cry_verifier_free(cry_verifier *v)
{
    if (v == NULL)
        return;
    json_decref(v->last_cp);
    sl_buf_free(&v->canon);
    free(v);
}

void
cry_verifier_add_key(cry_verifier *v, const unsigned char pk[CRY_SIGN_PK_BYTES])
{
    if (v->nkeys == MAX_KEYS)
        return;
    memcpy(v->keys[v->nkeys], pk, CRY_SIGN_PK_BYTES);
    cry_key_id(pk, v->key_ids[v->nkeys]);
    v->nkeys++;
}

void
cry_verifier_require_genesis(cry_verifier *v)
{
    v->genesis = 1;
}

static void
bad(cry_verifier *v, int64_t seq, const char *why)
{
    if (v->bad_seq != 0)
        return;
    v->bad_seq = seq > 0 ? seq : 1;
    snprintf(v->error, sizeof v->error, "%s", why);
}

void
cry_verifier_fail(cry_verifier *v, int64_t seq, const char *why)
{
    bad(v, seq, why);
}

static int
get_hash(const json_t *obj, const char *field, unsigned char out[CRY_HASH_BYTES])
{
    const char *s = json_string_value(json_object_get(obj, field));

    return s != NULL && cry_unhex(s, strlen(s), out, CRY_HASH_BYTES) == SL_OK;
}

void
cry_verifier_event(cry_verifier *v, const json_t *event, const char *canon, size_t n)
{
    static const unsigned char zero[CRY_HASH_BYTES];
    unsigned char prev[CRY_HASH_BYTES], stored[CRY_HASH_BYTES], computed[CRY_HASH_BYTES];
    json_t *seqj = json_object_get(event, "seq");
    int64_t seq;

    v->events++;
    if (!json_is_integer(seqj) || json_integer_value(seqj) < 1 ||
        json_integer_value(seqj) > MAX_SEQ) {
        bad(v, v->last_seq + 1, "event without a valid seq");
        v->last_seq++;
        return;
    }
    seq = json_integer_value(seqj);
    if (!get_hash(event, "prev_hash", prev) || !get_hash(event, "hash", stored)) {
        bad(v, seq, "event without prev_hash or hash");
        v->last_seq = seq;
        return;
    }
    if (!v->started) {
        v->signed_seq = seq - 1; /* nothing before the first event is ours to judge */
        if (v->genesis && seq != 1)
            bad(v, 1, "trail does not start at seq 1 (events missing)");
        if (seq == 1 && memcmp(prev, zero, CRY_HASH_BYTES) != 0)
            bad(v, seq, "first event's prev_hash is not zero");
    } else if (seq != v->last_seq + 1) {
        bad(v, v->last_seq + 1,
            seq > v->last_seq + 1 ? "event missing (gap in seq)" : "events out of order");
    } else if (memcmp(prev, v->last_hash, CRY_HASH_BYTES) != 0) {
        /* chaining to an earlier event: the ones in between were inserted */
        size_t k, cnt = v->ring_n < RING ? v->ring_n : RING;
        int64_t from = 0;
        for (k = 0; k < cnt; k++)
            if (memcmp(v->ring_hash[k], prev, CRY_HASH_BYTES) == 0 && v->ring_seq[k] < seq - 1)
                from = v->ring_seq[k];
        if (from > 0)
            bad(v, from + 1, "events inserted into the chain (not covered by its signatures)");
        else
            bad(v, seq, "prev_hash does not match the previous event's hash");
    }
    if (canon == NULL) {
        json_t *body = json_deep_copy(event);
        sl_buf_reset(&v->canon);
        json_object_del(body, "hash");
        if (cry_jcs(body, &v->canon) != SL_OK) {
            bad(v, seq, "event is not canonicalisable");
            sl_buf_reset(&v->canon);
        }
        json_decref(body);
        canon = v->canon.data != NULL ? v->canon.data : "";
        n = v->canon.len;
    }
    cry_chain_hash(prev, canon, n, computed);
    if (memcmp(computed, stored, CRY_HASH_BYTES) != 0)
        bad(v, seq, "hash mismatch (event altered)");
    v->started = 1;
    v->last_seq = seq;
    memcpy(v->last_hash, stored, CRY_HASH_BYTES);
    v->ring_seq[v->ring_n % RING] = seq;
    memcpy(v->ring_hash[v->ring_n % RING], stored, CRY_HASH_BYTES);
    v->ring_n++;
}

void
cry_verifier_checkpoint(cry_verifier *v, const json_t *cp)
{
    unsigned char h[CRY_HASH_BYTES];
    const char *key_id = json_string_value(json_object_get(cp, "key_id"));
    const char *sig64 = json_string_value(json_object_get(cp, "signature"));
    json_t *seqj = json_object_get(cp, "seq");
    int64_t seq = json_is_integer(seqj) ? json_integer_value(seqj) : 0;
    size_t i;

    if (seq > MAX_SEQ)
        seq = 0;

    v->checkpoints++;
    if (seq < 1 || key_id == NULL || sig64 == NULL || !get_hash(cp, "hash", h) ||
        !json_is_string(json_object_get(cp, "ts"))) {
        bad(v, v->signed_seq + 1, "malformed checkpoint");
        return;
    }
    for (i = 0; i < v->nkeys; i++)
        if (strcmp(v->key_ids[i], key_id) == 0)
            break;
    if (i == v->nkeys) {
        bad(v, v->signed_seq + 1, "checkpoint signed by an unknown key");
        return;
    }
    if (!cry_checkpoint_check(cp, (const unsigned char(*)[CRY_SIGN_PK_BYTES])v->keys, v->nkeys)) {
        bad(v, v->signed_seq + 1, "bad checkpoint signature");
        return;
    }
    if (!v->started || seq != v->last_seq) {
        /* a signed head beyond the events we have: the tail was cut */
        if (seq > v->last_seq)
            bad(v, v->last_seq + 1, "signed events missing (deleted, or the tail truncated)");
        else
            bad(v, v->signed_seq + 1, "checkpoint out of place");
        return;
    }
    if (memcmp(h, v->last_hash, CRY_HASH_BYTES) != 0) {
        bad(v, v->signed_seq + 1, "signed checkpoint does not match the chain");
        return;
    }
    v->signed_seq = seq;
    json_decref(v->last_cp);
    v->last_cp = json_deep_copy(cp);
}

void
cry_verifier_finish(cry_verifier *v, cry_verify_result *res)
{
    if (v->started && v->last_seq > v->signed_seq)
        bad(v, v->signed_seq + 1, "events after the last signed checkpoint (unsigned tail)");
    if (v->genesis && !v->started && v->checkpoints > 0)
        bad(v, 1, "checkpoints without events (trail truncated)");
    res->ok = v->bad_seq == 0;
    res->events = v->events;
    res->checkpoints = v->checkpoints;
    res->first_bad_seq = v->bad_seq;
    snprintf(res->error, sizeof res->error, "%s", v->error);
    res->last_checkpoint = v->last_cp;
}

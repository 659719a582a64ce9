/*
 * crypto/cry_mac.c: HMAC-SHA-256 of many short messages under one key (column masks hash
 * every value of a column). The key's inner and outer SHA-256 states are computed once;
 * each message then costs two compressions. OpenSSL's SHA256_* functions are used for
 * that: deprecated in 3.0 in favour of EVP, but EVP's per-call context handling costs
 * more than the hash of a short message, and OpenSSL's SHA-256 uses the CPU's SHA
 * extensions where libsodium's portable code does not (about 110 ns against 365 ns a
 * value on the development machine).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"

struct cry_mac {
    SHA256_CTX *st; /* sodium_malloc'd: [0] inner, [1] outer, after the padded key */
};

cry_mac *
cry_mac_new(const cry_key *key)
{
    cry_mac *m = sl_xcalloc(1, sizeof *m);
    unsigned char pad[SHA256_CBLOCK], k[CRY_HASH_BYTES];
    const unsigned char *kp = key->p;
    size_t kn = key->n, i;

    m->st = sodium_malloc(2 * sizeof *m->st);
    if (m->st == NULL)
        sl_panic("out of memory for a key");
    if (kn > sizeof pad) { /* RFC 2104: a long key is hashed first */
        SHA256(key->p, key->n, k);
        kp = k;
        kn = sizeof k;
    }
    memset(pad, 0x36, sizeof pad);
    for (i = 0; i < kn; i++)
        pad[i] ^= kp[i];
    SHA256_Init(&m->st[0]);
    SHA256_Update(&m->st[0], pad, sizeof pad);
    memset(pad, 0x5c, sizeof pad);
    for (i = 0; i < kn; i++)
        pad[i] ^= kp[i];
    SHA256_Init(&m->st[1]);
    SHA256_Update(&m->st[1], pad, sizeof pad);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(k, sizeof k);
    return m;
}

void
cry_mac_sha256(const cry_mac *m, const void *p, size_t n, unsigned char out[CRY_HASH_BYTES])
{
    SHA256_CTX c[2];
    unsigned char inner[CRY_HASH_BYTES];

    memcpy(c, m->st, sizeof c);
    SHA256_Update(&c[0], p, n);
    SHA256_Final(inner, &c[0]);
    SHA256_Update(&c[1], inner, sizeof inner);
    SHA256_Final(out, &c[1]);
    sodium_memzero(c, sizeof c);
    sodium_memzero(inner, sizeof inner);
}

void
cry_mac_free(cry_mac *m)
{
    if (m == NULL)
        return;
    sodium_free(m->st);
    free(m);
}

/*
 * crypto/cry_base.c: keys in guarded memory, encodings, SHA-256, tokens and their
 * keyed hashes, key wrapping and Ed25519, all on libsodium.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"

sl_code
cry_init(void)
{
    return sodium_init() < 0 ? SL_EINTERNAL : SL_OK;
}

cry_key *
cry_key_new(size_t n)
{
    cry_key *k = sl_xmalloc(sizeof *k);

    k->p = sodium_malloc(n ? n : 1);
    if (k->p == NULL)
        sl_panic("sodium_malloc of %zu bytes failed", n);
    k->n = n;
    return k;
}

cry_key *
cry_key_random(size_t n)
{
    cry_key *k = cry_key_new(n);

    randombytes_buf(k->p, n);
    return k;
}

cry_key *
cry_key_dup(const void *p, size_t n)
{
    cry_key *k = cry_key_new(n);

    memcpy(k->p, p, n);
    return k;
}

void
cry_key_free(cry_key *k)
{
    if (k == NULL)
        return;
    sodium_free(k->p); /* sodium_free wipes before freeing */
    free(k);
}

void
cry_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

void
cry_hex(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, in, n);
}

sl_code
cry_unhex(const char *hex, size_t hexlen, unsigned char *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;

    if (hexlen != n * 2)
        return SL_EINVALID;
    if (sodium_hex2bin(out, n, hex, hexlen, NULL, &got, &end) != 0 || got != n ||
        end != hex + hexlen)
        return SL_EINVALID;
    return SL_OK;
}

size_t
cry_b64_len(size_t n)
{
    return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
}

void
cry_b64(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2base64(out, cry_b64_len(n), in, n, sodium_base64_VARIANT_ORIGINAL);
}

sl_code
cry_unb64(const char *b64, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    const char *end = NULL;

    if (sodium_base642bin(out, cap, b64, len, NULL, outlen, &end, sodium_base64_VARIANT_ORIGINAL) !=
            0 ||
        end != b64 + len)
        return SL_EINVALID;
    return SL_OK;
}

void
cry_sha256(const void *p, size_t n, unsigned char out[CRY_HASH_BYTES])
{
    crypto_hash_sha256(out, p, n);
}

static int
is_lower_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

void
cry_token_new(char id[CRY_TOKEN_ID_HEX + 1], char secret[CRY_TOKEN_SECRET_HEX + 1],
              char token[CRY_TOKEN_LEN + 1])
{
    unsigned char raw[CRY_TOKEN_SECRET_HEX / 2];

    randombytes_buf(raw, CRY_TOKEN_ID_HEX / 2);
    cry_hex(raw, CRY_TOKEN_ID_HEX / 2, id);
    randombytes_buf(raw, sizeof raw);
    cry_hex(raw, sizeof raw, secret);
    sodium_memzero(raw, sizeof raw);
    memcpy(token, "slc_", 4);
    memcpy(token + 4, id, CRY_TOKEN_ID_HEX);
    token[4 + CRY_TOKEN_ID_HEX] = '_';
    memcpy(token + 5 + CRY_TOKEN_ID_HEX, secret, CRY_TOKEN_SECRET_HEX + 1);
}

sl_code
cry_token_parse(const char *token, size_t len, char id[CRY_TOKEN_ID_HEX + 1],
                char secret[CRY_TOKEN_SECRET_HEX + 1])
{
    /* Shape only; the checks do not depend on the secret's value. */
    if (len != CRY_TOKEN_LEN || memcmp(token, "slc_", 4) != 0 ||
        token[4 + CRY_TOKEN_ID_HEX] != '_' || !is_lower_hex(token + 4, CRY_TOKEN_ID_HEX) ||
        !is_lower_hex(token + 5 + CRY_TOKEN_ID_HEX, CRY_TOKEN_SECRET_HEX))
        return SL_EAUTH;
    memcpy(id, token + 4, CRY_TOKEN_ID_HEX);
    id[CRY_TOKEN_ID_HEX] = '\0';
    memcpy(secret, token + 5 + CRY_TOKEN_ID_HEX, CRY_TOKEN_SECRET_HEX);
    secret[CRY_TOKEN_SECRET_HEX] = '\0';
    return SL_OK;
}

void
cry_token_hash(const cry_key *key, const char *id, const char *secret,
               unsigned char out[CRY_HASH_BYTES])
{
    static const char domain[] = "sluice-token-v1"; /* hashed with its NUL */
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, key->p, key->n);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)domain, sizeof domain);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)id, strlen(id) + 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int
cry_hash_equal(const unsigned char a[CRY_HASH_BYTES], const unsigned char b[CRY_HASH_BYTES])
{
    return sodium_memcmp(a, b, CRY_HASH_BYTES) == 0;
}

void
cry_wrap(const cry_key *kek, const char *aad, const unsigned char *plain, size_t n,
         unsigned char *out)
{
    unsigned char *nonce = out;
    unsigned long long clen = 0;

    if (kek->n != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
        sl_panic("cry_wrap: key of %zu bytes", kek->n);
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               &clen, plain, n, (const unsigned char *)aad,
                                               strlen(aad), NULL, nonce, kek->p);
}

sl_code
cry_unwrap(const cry_key *kek, const char *aad, const unsigned char *in, size_t n, cry_key **out)
{
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    unsigned long long plen = 0;
    cry_key *k;

    *out = NULL;
    if (kek->n != crypto_aead_xchacha20poly1305_ietf_KEYBYTES || n < CRY_WRAP_OVERHEAD)
        return SL_EINVALID;
    k = cry_key_new(n - CRY_WRAP_OVERHEAD);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(k->p, &plen, NULL, in + nb, n - nb,
                                                   (const unsigned char *)aad, strlen(aad), in,
                                                   kek->p) != 0) {
        cry_key_free(k);
        return SL_EINVALID;
    }
    *out = k;
    return SL_OK;
}

/*
 * The chain hashes every event the writer commits and every event a verifier reads, so
 * it uses OpenSSL's SHA-256 (SHA-NI / AVX2 where the CPU has them, several times
 * libsodium's portable code). The algorithm is fetched once: an implicit fetch per call
 * costs more than hashing an event.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (sha256_md == NULL)
        sl_panic("OpenSSL has no SHA-256");
}

void
cry_chain_hash(const unsigned char prev[CRY_HASH_BYTES], const char *canon, size_t n,
               unsigned char out[CRY_HASH_BYTES])
{
    EVP_MD_CTX *ctx;
    unsigned len = 0;

    pthread_once(&sha256_once, sha256_fetch);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, prev, CRY_HASH_BYTES) != 1 || EVP_DigestUpdate(ctx, canon, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != CRY_HASH_BYTES)
        sl_panic("SHA-256 failed");
    EVP_MD_CTX_free(ctx);
}

cry_sha256_ctx *
cry_sha256_new(void)
{
    EVP_MD_CTX *ctx;

    pthread_once(&sha256_once, sha256_fetch);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1)
        sl_panic("SHA-256 failed");
    return (cry_sha256_ctx *)ctx;
}

void
cry_sha256_update(cry_sha256_ctx *c, const void *p, size_t n)
{
    if (n > 0 && EVP_DigestUpdate((EVP_MD_CTX *)c, p, n) != 1)
        sl_panic("SHA-256 failed");
}

void
cry_sha256_final(cry_sha256_ctx *c, unsigned char out[CRY_HASH_BYTES])
{
    unsigned len = 0;

    if (EVP_DigestFinal_ex((EVP_MD_CTX *)c, out, &len) != 1 || len != CRY_HASH_BYTES)
        sl_panic("SHA-256 failed");
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

void
cry_sha256_free(cry_sha256_ctx *c)
{
    EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

void
cry_sign_keypair(unsigned char pk[CRY_SIGN_PK_BYTES], cry_key **sk)
{
    *sk = cry_key_new(CRY_SIGN_SK_BYTES);
    crypto_sign_keypair(pk, (*sk)->p);
}

void
cry_sign_pk(const cry_key *sk, unsigned char pk[CRY_SIGN_PK_BYTES])
{
    crypto_sign_ed25519_sk_to_pk(pk, sk->p);
}

void
cry_sign(const cry_key *sk, const void *msg, size_t n, unsigned char sig[CRY_SIG_BYTES])
{
    if (sk->n != CRY_SIGN_SK_BYTES)
        sl_panic("cry_sign: key of %zu bytes", sk->n);
    crypto_sign_detached(sig, NULL, msg, n, sk->p);
}

int
cry_sign_verify(const unsigned char pk[CRY_SIGN_PK_BYTES], const void *msg, size_t n,
                const unsigned char sig[CRY_SIG_BYTES])
{
    return crypto_sign_verify_detached(sig, msg, n, pk) == 0;
}

void
cry_key_id(const unsigned char pk[CRY_SIGN_PK_BYTES], char out[CRY_KEY_ID_HEX + 1])
{
    unsigned char h[CRY_HASH_BYTES];

    cry_sha256(pk, CRY_SIGN_PK_BYTES, h);
    cry_hex(h, CRY_KEY_ID_HEX / 2, out);
}

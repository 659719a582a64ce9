/*
 * crypto/cry_seal.c: AES-256-GCM sealing of dataset chunks through OpenSSL's EVP
 * interface (the one that uses AES-NI and carry-less multiplication when present).
 */
#include <limits.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#include "cry.h"

sl_code
cry_seal(const cry_key *key, const void *aad, size_t aad_len, const unsigned char *plain, size_t n,
         unsigned char *out)
{
    EVP_CIPHER_CTX *ctx;
    int len = 0, fin = 0;
    sl_code rc = SL_EINTERNAL;

    if (key->n != 32 || n > INT_MAX - CRY_SEAL_OVERHEAD || aad_len > INT_MAX)
        return SL_EINVALID;
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
        return SL_EINTERNAL;
    randombytes_buf(out, CRY_SEAL_NONCE);
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRY_SEAL_NONCE, NULL) == 1 &&
        EVP_EncryptInit_ex(ctx, NULL, NULL, key->p, out) == 1 &&
        (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1) &&
        EVP_EncryptUpdate(ctx, out + CRY_SEAL_NONCE, &len, plain, (int)n) == 1 &&
        EVP_EncryptFinal_ex(ctx, out + CRY_SEAL_NONCE + len, &fin) == 1 &&
        (size_t)(len + fin) == n &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRY_SEAL_TAG, out + CRY_SEAL_NONCE + n) == 1)
        rc = SL_OK;
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

sl_code
cry_open(const cry_key *key, const void *aad, size_t aad_len, const unsigned char *in, size_t n,
         unsigned char *out)
{
    EVP_CIPHER_CTX *ctx;
    unsigned char tag[CRY_SEAL_TAG];
    size_t m;
    int len = 0, fin = 0;
    sl_code rc = SL_EINVALID;

    if (key->n != 32 || n < CRY_SEAL_OVERHEAD || n > INT_MAX || aad_len > INT_MAX)
        return SL_EINVALID;
    m = n - CRY_SEAL_OVERHEAD;
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
        return SL_EINTERNAL;
    memcpy(tag, in + CRY_SEAL_NONCE + m, CRY_SEAL_TAG);
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CRY_SEAL_NONCE, NULL) == 1 &&
        EVP_DecryptInit_ex(ctx, NULL, NULL, key->p, in) == 1 &&
        (aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1) &&
        EVP_DecryptUpdate(ctx, out, &len, in + CRY_SEAL_NONCE, (int)m) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRY_SEAL_TAG, tag) == 1 &&
        EVP_DecryptFinal_ex(ctx, out + len, &fin) == 1 && (size_t)(len + fin) == m)
        rc = SL_OK;
    EVP_CIPHER_CTX_free(ctx);
    if (rc != SL_OK && m > 0)
        sodium_memzero(out, m); /* no unauthenticated plaintext left behind */
    return rc;
}

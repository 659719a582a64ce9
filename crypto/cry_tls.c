/*
 * crypto/cry_tls.c: a self-signed ECDSA P-256 certificate for `sluice init`, made with
 * OpenSSL and returned as PEM text; the caller decides where it is written.
 */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"

static char *
bio_text(BIO *b)
{
    char *data = NULL, *out;
    long n = BIO_get_mem_data(b, &data);

    if (n <= 0)
        return NULL;
    out = sl_xmalloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

void
cry_pem_free(char *pem)
{
    if (pem == NULL)
        return;
    sodium_memzero(pem, strlen(pem));
    free(pem);
}

sl_code
cry_tls_selfsigned(const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
                   int days, char **cert_pem, char **key_pem, sl_err *err)
{
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    X509_EXTENSION *ext = NULL;
    X509V3_CTX ctx;
    BIO *cb = NULL, *kb = NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    char san[1024];
    size_t i, off = 0;
    sl_code rc = SL_EINTERNAL;

    *cert_pem = *key_pem = NULL;
    for (i = 0; i < ndns + nips; i++) {
        int n = snprintf(san + off, sizeof san - off, "%s%s:%s", i ? "," : "",
                         i < ndns ? "DNS" : "IP", i < ndns ? dns[i] : ips[i - ndns]);
        if (n < 0 || (size_t)n >= sizeof san - off) {
            return sl_err_set(err, SL_EINVALID, "too many certificate names");
        }
        off += (size_t)n;
    }
    pkey = EVP_EC_gen("P-256");
    x = X509_new();
    if (pkey == NULL || x == NULL)
        goto out;
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out;
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -300);
    X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC,
                               (const unsigned char *)"sluice", -1, -1, 0);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)(ndns ? dns[0] : "sluice"), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san)) == NULL ||
        !X509_add_ext(x, ext, -1))
        goto out;
    X509_EXTENSION_free(ext);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE")) ==
            NULL ||
        !X509_add_ext(x, ext, -1))
        goto out;
    X509_EXTENSION_free(ext);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
                                   "critical,digitalSignature,keyCertSign")) == NULL ||
        !X509_add_ext(x, ext, -1))
        goto out;
    X509_EXTENSION_free(ext);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "serverAuth")) == NULL ||
        !X509_add_ext(x, ext, -1))
        goto out;
    X509_EXTENSION_free(ext);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash")) == NULL ||
        !X509_add_ext(x, ext, -1))
        goto out;
    X509_EXTENSION_free(ext);
    ext = NULL;
    if (X509_sign(x, pkey, EVP_sha256()) == 0)
        goto out;
    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_mem());
    if (cb == NULL || kb == NULL || !PEM_write_bio_X509(cb, x) ||
        !PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL))
        goto out;
    *cert_pem = bio_text(cb);
    *key_pem = bio_text(kb);
    if (*cert_pem == NULL || *key_pem == NULL) {
        free(*cert_pem);
        cry_pem_free(*key_pem);
        *cert_pem = *key_pem = NULL;
        goto out;
    }
    rc = SL_OK;
out:
    if (rc != SL_OK) {
        unsigned long e = ERR_get_error();
        sl_err_set(err, rc, "could not create the TLS certificate");
        sl_err_detail(err, "openssl: %s", e ? ERR_error_string(e, NULL) : "unknown");
    }
    X509_EXTENSION_free(ext);
    BN_free(bn);
    BIO_free(cb);
    BIO_free(kb); /* BIO_s_mem frees its buffer; OpenSSL does not wipe it */
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

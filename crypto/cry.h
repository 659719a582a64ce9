/*
 * crypto/cry.h: sluice's cryptographic contract. Token hashing, key wrapping, the
 * audit hash chain, RFC 8785 canonical JSON, Ed25519 signatures of checkpoints and the
 * streaming audit verifier shared by the server and the offline CLI, and self-signed
 * TLS certificates. No function here does I/O; all are thread-safe unless noted.
 * Secrets are passed in caller-owned memory that the caller wipes; keys that live long
 * are held in cry_key (sodium_malloc'd, guarded, wiped on free).
 */
#ifndef CRY_H
#define CRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sl.h"

#define CRY_HASH_BYTES    32
#define CRY_HASH_HEX      (CRY_HASH_BYTES * 2)
#define CRY_KEY_BYTES     32
#define CRY_SIGN_PK_BYTES 32
#define CRY_SIGN_SK_BYTES 64
#define CRY_SIG_BYTES     64
#define CRY_KEY_ID_HEX    16
/* Tokens: "slc_" + 16 hex id + "_" + 64 hex secret (256 bits). */
#define CRY_TOKEN_ID_HEX     16
#define CRY_TOKEN_SECRET_HEX 64
#define CRY_TOKEN_LEN        (4 + CRY_TOKEN_ID_HEX + 1 + CRY_TOKEN_SECRET_HEX)
/* Wrapped key: 24-byte nonce, ciphertext, 16-byte tag (XChaCha20-Poly1305-IETF). */
#define CRY_WRAP_OVERHEAD (24 + 16)

/* Must be called once, first thing in main; fails only when libsodium cannot start. */
sl_code cry_init(void) SL_WUR;

/* A secret held in sodium_malloc'd memory (guard pages, locked, wiped on free). */
typedef struct {
    unsigned char *p;
    size_t n;
} cry_key;

/* Allocates a key of n bytes (contents undefined); aborts on exhaustion. */
cry_key *cry_key_new(size_t n);
/* Allocates and fills with n random bytes. */
cry_key *cry_key_random(size_t n);
/* Copies n bytes into a new key. */
cry_key *cry_key_dup(const void *p, size_t n);
/* Wipes and frees; NULL does nothing. */
void cry_key_free(cry_key *k);

void cry_random(void *buf, size_t n);

/* Lowercase hex of n bytes into out (2n+1). */
void cry_hex(const unsigned char *in, size_t n, char *out);
/* Decodes exactly n bytes from 2n hex chars (any case); SL_EINVALID otherwise. */
sl_code cry_unhex(const char *hex, size_t hexlen, unsigned char *out, size_t n) SL_WUR;
/* Standard base64 with padding; out must hold cry_b64_len(n) bytes (with NUL). */
size_t cry_b64_len(size_t n);
void cry_b64(const unsigned char *in, size_t n, char *out);
/* Decodes standard base64 (padding required, no spaces) into out (cap bytes). */
sl_code cry_unb64(const char *b64, size_t len, unsigned char *out, size_t cap,
                  size_t *outlen) SL_WUR;

/* SHA-256. */
void cry_sha256(const void *p, size_t n, unsigned char out[CRY_HASH_BYTES]);
/* SHA-256 of a stream (OpenSSL): new, update any number of times, final (which frees). */
typedef struct cry_sha256_ctx cry_sha256_ctx;
cry_sha256_ctx *cry_sha256_new(void);
void cry_sha256_update(cry_sha256_ctx *c, const void *p, size_t n);
void cry_sha256_final(cry_sha256_ctx *c, unsigned char out[CRY_HASH_BYTES]);
/* Frees without a result (NULL allowed). */
void cry_sha256_free(cry_sha256_ctx *c);

/*
 * HMAC-SHA-256 under one key for many short messages: the key's inner and outer states
 * are computed once (and held in sodium_malloc'd memory); each call copies them on the
 * stack and wipes the copy. Thread-safe once made.
 */
typedef struct cry_mac cry_mac;
cry_mac *cry_mac_new(const cry_key *key);
void cry_mac_sha256(const cry_mac *m, const void *p, size_t n, unsigned char out[CRY_HASH_BYTES]);
void cry_mac_free(cry_mac *m); /* NULL allowed */

/*
 * Tokens. cry_token_new writes a fresh id and secret (NUL-terminated hex) and the full
 * token (CRY_TOKEN_LEN + 1); the caller wipes secret and token after use.
 * cry_token_parse splits a presented token, checking only its shape (never its value);
 * SL_EAUTH for anything malformed.
 */
void cry_token_new(char id[CRY_TOKEN_ID_HEX + 1], char secret[CRY_TOKEN_SECRET_HEX + 1],
                   char token[CRY_TOKEN_LEN + 1]);
sl_code cry_token_parse(const char *token, size_t len, char id[CRY_TOKEN_ID_HEX + 1],
                        char secret[CRY_TOKEN_SECRET_HEX + 1]) SL_WUR;
/* The stored form: HMAC-SHA-256 under key over "sluice-token-v1\0" id "\0" secret. */
void cry_token_hash(const cry_key *key, const char *id, const char *secret,
                    unsigned char out[CRY_HASH_BYTES]);
/* Constant-time equality of two hashes. */
int cry_hash_equal(const unsigned char a[CRY_HASH_BYTES], const unsigned char b[CRY_HASH_BYTES]);

/*
 * Key wrapping under a 32-byte key: out = nonce || ciphertext || tag, outlen = n +
 * CRY_WRAP_OVERHEAD. The AAD binds the wrapped key to its purpose. Unwrap writes
 * n - CRY_WRAP_OVERHEAD bytes into a new cry_key, or fails with SL_EINVALID and
 * leaves nothing behind.
 */
void cry_wrap(const cry_key *kek, const char *aad, const unsigned char *plain, size_t n,
              unsigned char *out);
sl_code cry_unwrap(const cry_key *kek, const char *aad, const unsigned char *in, size_t n,
                   cry_key **out) SL_WUR;

/*
 * Sealing of dataset chunks: AES-256-GCM (OpenSSL; AES-NI where the CPU has it) under a
 * version's 32-byte data key, with a random 96-bit nonce per chunk (a key seals at most
 * a version's chunks, far below the 2^32 that random nonces allow). out = nonce ||
 * ciphertext || tag, n + CRY_SEAL_OVERHEAD bytes. The AAD binds the chunk to its place
 * (dataset, version, row group, column, key version): a chunk moved, swapped or replayed
 * elsewhere fails to open. Open writes n - CRY_SEAL_OVERHEAD bytes, or fails with
 * SL_EINVALID (wrong key, place or any changed byte) and leaves out zeroed. Thread-safe.
 */
#define CRY_SEAL_NONCE    12
#define CRY_SEAL_TAG      16
#define CRY_SEAL_OVERHEAD (CRY_SEAL_NONCE + CRY_SEAL_TAG)
sl_code cry_seal(const cry_key *key, const void *aad, size_t aad_len, const unsigned char *plain,
                 size_t n, unsigned char *out) SL_WUR;
sl_code cry_open(const cry_key *key, const void *aad, size_t aad_len, const unsigned char *in,
                 size_t n, unsigned char *out) SL_WUR;

/*
 * RFC 8785 canonical JSON of v appended to out. Accepted values: objects (keys sorted
 * by UTF-16 code units), arrays, strings (valid UTF-8), integers of magnitude below
 * 2^53, true, false, null. Reals and anything else: SL_EINVALID, out unchanged.
 */
sl_code cry_jcs(const json_t *v, sl_buf *out) SL_WUR;
/* The same accepting finite reals too, printed as ECMAScript prints numbers (RFC 8785
 * 3.2.2.3): what receipts hash (job specs, models, statistics). */
sl_code cry_jcs_reals(const json_t *v, sl_buf *out) SL_WUR;

/* hash = SHA-256(prev_hash (32 raw bytes) || canonical event). */
void cry_chain_hash(const unsigned char prev[CRY_HASH_BYTES], const char *canon, size_t n,
                    unsigned char out[CRY_HASH_BYTES]);

/* Ed25519. */
void cry_sign_keypair(unsigned char pk[CRY_SIGN_PK_BYTES], cry_key **sk);
/* Derives the public key of a 64-byte secret key (libsodium layout: seed || pk). */
void cry_sign_pk(const cry_key *sk, unsigned char pk[CRY_SIGN_PK_BYTES]);
void cry_sign(const cry_key *sk, const void *msg, size_t n, unsigned char sig[CRY_SIG_BYTES]);
int cry_sign_verify(const unsigned char pk[CRY_SIGN_PK_BYTES], const void *msg, size_t n,
                    const unsigned char sig[CRY_SIG_BYTES]);
/* Key id: lowercase hex of the first 8 bytes of SHA-256(pk). */
void cry_key_id(const unsigned char pk[CRY_SIGN_PK_BYTES], char out[CRY_KEY_ID_HEX + 1]);

/*
 * Audit checkpoints. The signed text is the JCS of {"hash","key_id","seq","ts"}.
 * cry_checkpoint_new signs and returns a new object {"seq","hash","ts","key_id",
 * "signature"} (caller owns it).
 */
json_t *cry_checkpoint_new(const cry_key *sk, const char *key_id, int64_t seq, const char *hash_hex,
                           const char *ts);

/* 1 when cp is well-formed and its signature verifies under the key among pks[0..n) whose
 * id it names. */
int cry_checkpoint_check(const json_t *cp, const unsigned char (*pks)[CRY_SIGN_PK_BYTES], size_t n);

/*
 * Streaming verifier of an audit trail: feed events in seq order, each checkpoint after
 * the event it covers, then finish. Used by GET /v1/audit/verify and by the offline
 * `sluice audit verify`. A trail is good when every event chains to the one before,
 * every event's hash recomputes, every checkpoint's signature verifies under a known
 * key and names the hash of its event, and no event lies after the last checkpoint.
 * `first_bad_seq` is the first seq that fails (0 when none). Not thread-safe.
 */
typedef struct cry_verifier cry_verifier;

typedef struct {
    int ok;
    int64_t events;
    int64_t checkpoints;
    int64_t first_bad_seq;   /* 0 = none */
    char error[160];         /* what failed, empty when ok */
    json_t *last_checkpoint; /* borrowed from the verifier; NULL when none */
} cry_verify_result;

cry_verifier *cry_verifier_new(void);
void cry_verifier_free(cry_verifier *v);
/* Adds a public key the checkpoints may be signed with. */
void cry_verifier_add_key(cry_verifier *v, const unsigned char pk[CRY_SIGN_PK_BYTES]);
/* Requires the first event to be seq 1 with a zero prev_hash (whole-trail checks). */
void cry_verifier_require_genesis(cry_verifier *v);
/*
 * An event: a JSON object with every event field and "hash". `canon`, when not NULL, is
 * the exact text that was hashed (the server's stored form); otherwise the JCS of the
 * event without "hash" is used.
 */
void cry_verifier_event(cry_verifier *v, const json_t *event, const char *canon, size_t n);
/* Marks the event that should come next as missing or altered at seq (server cross-checks). */
void cry_verifier_fail(cry_verifier *v, int64_t seq, const char *why);
void cry_verifier_checkpoint(cry_verifier *v, const json_t *cp);
void cry_verifier_finish(cry_verifier *v, cry_verify_result *res);

/*
 * Self-signed ECDSA P-256 certificate for the given DNS names and IP addresses, valid
 * `days` days; returns PEM texts (caller frees with free(); key_pem is wiped by
 * cry_pem_free).
 */
sl_code cry_tls_selfsigned(const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
                           int days, char **cert_pem, char **key_pem, sl_err *err) SL_WUR;
void cry_pem_free(char *pem);

#endif

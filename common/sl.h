/*
 * common/sl.h: the contract shared by every sluice module: error codes and the
 * error record, logging, bounded buffers, names, UTF-8 and time helpers.
 * Nothing here allocates secrets; nothing here depends on anything but libc.
 */
#ifndef SL_H
#define SL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sl_limits.h"

#define SL_WUR          __attribute__((warn_unused_result))
#define SL_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Error codes. Each maps to one HTTP status and one API error word (gw maps them). */
typedef enum {
    SL_OK = 0,
    SL_EBADREQ,   /* 400 bad_request */
    SL_EAUTH,     /* 401 unauthenticated */
    SL_EDENIED,   /* 403 forbidden */
    SL_ENOTFOUND, /* 404 not_found */
    SL_EMETHOD,   /* 405 method_not_allowed */
    SL_ECONFLICT, /* 409 conflict */
    SL_ETOOLARGE, /* 413 too_large */
    SL_EMEDIA,    /* 415 unsupported_media_type */
    SL_EINVALID,  /* 422 invalid */
    SL_ELOCKED,   /* 423 locked */
    SL_ERATE,     /* 429 rate_limited */
    SL_EHEADERS,  /* 431 headers_too_large */
    SL_EINTERNAL, /* 500 internal: a bug or an unexpected local failure */
    SL_EUNAVAIL,  /* 503 unavailable: database or audit trail down; fail closed */
    SL_EIO,       /* local I/O failure (files, processes); 500 if it reaches a client */
    SL_ENOMEM     /* memory refused (a compute zone's limit); 500 if it reaches a client */
} sl_code;

/*
 * The error record. `msg` is safe to show a client (never a secret, never a dataset
 * value); `detail` goes to the log only. Both are always NUL-terminated.
 */
typedef struct {
    sl_code code;
    char msg[160];
    char detail[256];
} sl_err;

/* Sets code and the client-safe message; returns code so `return sl_err_set(...)` works. */
sl_code sl_err_set(sl_err *err, sl_code code, const char *fmt, ...) SL_PRINTF(3, 4);
/* Sets the log-only detail; keeps code and message. NULL err is allowed (no-op). */
void sl_err_detail(sl_err *err, const char *fmt, ...) SL_PRINTF(2, 3);
void sl_err_clear(sl_err *err);
/* The API error word for a code ("bad_request", ...). Never NULL. */
const char *sl_code_word(sl_code code);
/* The HTTP status for a code. */
int sl_code_status(sl_code code);

/* Logging to stderr, one line per call, with a UTC timestamp and the level. Thread-safe. */
typedef enum { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;
void sl_log_set_level(sl_log_level level);
void sl_log(sl_log_level level, const char *fmt, ...) SL_PRINTF(2, 3);
#define sl_debug(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define sl_info(...)  sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_warn(...)  sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
/* A bug in our own code: log and abort. Never for input from outside. */
_Noreturn void sl_panic(const char *fmt, ...) SL_PRINTF(1, 2);

/*
 * Bounded growable byte buffer. `max` is fixed at creation; appends past it fail with
 * SL_ETOOLARGE and leave the buffer unchanged. The data is always NUL-terminated
 * (the terminator is not counted in len). sl_buf_free(NULL) does nothing.
 */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
    int wiped; /* growing wipes the block it leaves (sl_buf_init_wiped) */
} sl_buf;

void sl_buf_init(sl_buf *b, size_t max);
/* The same for a buffer of plaintext: a block left behind by growing is wiped first
 * (emptying and freeing remain the owner's to wipe). */
void sl_buf_init_wiped(sl_buf *b, size_t max);
void sl_buf_free(sl_buf *b);
void sl_buf_reset(sl_buf *b);
sl_code sl_buf_append(sl_buf *b, const void *p, size_t n) SL_WUR;
sl_code sl_buf_puts(sl_buf *b, const char *s) SL_WUR;
/* Grows the data by n zero bytes and points *at to them (valid until the next change). */
sl_code sl_buf_extend(sl_buf *b, size_t n, unsigned char **at) SL_WUR;
/* Room for n more bytes at *at without changing the length; then sl_buf_wrote(b, m),
 * m <= n, once m bytes are written there. For writers that know a bound per item. */
sl_code sl_buf_room(sl_buf *b, size_t n, char **at) SL_WUR;
void sl_buf_wrote(sl_buf *b, size_t m);
sl_code sl_buf_printf(sl_buf *b, const char *fmt, ...) SL_PRINTF(2, 3) SL_WUR;
/* Transfers the data to the caller (malloc'd, NUL-terminated); the buffer is emptied. */
char *sl_buf_take(sl_buf *b, size_t *len);

/* Allocation that aborts on exhaustion. */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);
/* Resizes p to n elements of size bytes (overflow-checked). */
void *sl_xreallocarray(void *p, size_t n, size_t size);
/* The same for plaintext: p (old elements) moves to a new block and the old one is wiped
 * before it is freed, so no copy of the data stays in freed memory. */
void *sl_xreallocarray_wiped(void *p, size_t old, size_t n, size_t size);
char *sl_xstrdup(const char *s);

/* Names of principals, datasets, policies: ^[a-z][a-z0-9_.-]{0,62}$ */
int sl_name_valid(const char *s);
/* Column tags: ^[a-z][a-z0-9_-]{0,31}$ (SL_MAX_TAG bytes at most). */
int sl_tag_valid(const char *t);
/* 1 when [p, p+n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int sl_utf8_valid(const char *p, size_t n);
/*
 * Copies at most `max` bytes of untrusted text into dst (size max+1): invalid UTF-8
 * and control characters become '?', cut at a character boundary. Returns dst.
 */
char *sl_text_clean(char *dst, const char *src, size_t n, size_t max);

/* RFC 3339 UTC with microseconds: "2026-11-22T20:46:23.123456Z" (27 chars + NUL). */
#define SL_TS_LEN 64
void sl_time_format_us(int64_t unix_us, char out[SL_TS_LEN]);
/* Seconds precision: "2026-11-22T20:46:23Z". */
void sl_time_format_s(int64_t unix_s, char out[SL_TS_LEN]);
/* Parses RFC 3339 (Z or +hh:mm offset, optional fraction). Returns SL_OK or SL_EINVALID. */
sl_code sl_time_parse(const char *s, int64_t *unix_us) SL_WUR;
int64_t sl_now_us(void);
/* Monotonic clock, nanoseconds. */
int64_t sl_mono_ns(void);
/* The CLOCK_REALTIME instant ms milliseconds from now, for pthread_cond_timedwait. */
void sl_deadline_ms(struct timespec *ts, int64_t ms);

/* Parses a decimal int64 in [lo, hi], the whole string. */
sl_code sl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) SL_WUR;

#endif

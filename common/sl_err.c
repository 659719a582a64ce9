/*
 * common/sl_err.c: the error record and its mapping to API words and HTTP statuses,
 * and process-wide logging.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl.h"

static const struct {
    const char *word;
    int status;
} codes[] = {
    [SL_OK] = {"ok", 200},
    [SL_EBADREQ] = {"bad_request", 400},
    [SL_EAUTH] = {"unauthenticated", 401},
    [SL_EDENIED] = {"forbidden", 403},
    [SL_ENOTFOUND] = {"not_found", 404},
    [SL_EMETHOD] = {"method_not_allowed", 405},
    [SL_ECONFLICT] = {"conflict", 409},
    [SL_ETOOLARGE] = {"too_large", 413},
    [SL_EMEDIA] = {"unsupported_media_type", 415},
    [SL_EINVALID] = {"invalid", 422},
    [SL_ELOCKED] = {"locked", 423},
    [SL_ERATE] = {"rate_limited", 429},
    [SL_EHEADERS] = {"headers_too_large", 431},
    [SL_EINTERNAL] = {"internal", 500},
    [SL_EUNAVAIL] = {"unavailable", 503},
    [SL_EIO] = {"internal", 500},
    [SL_ENOMEM] = {"internal", 500},
};

const char *
sl_code_word(sl_code code)
{
    if ((unsigned)code >= sizeof codes / sizeof codes[0])
        return "internal";
    return codes[code].word;
}

int
sl_code_status(sl_code code)
{
    if ((unsigned)code >= sizeof codes / sizeof codes[0])
        return 500;
    return codes[code].status;
}

sl_code
sl_err_set(sl_err *err, sl_code code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->detail[0] = '\0';
    return code;
}

void
sl_err_detail(sl_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
}

void
sl_err_clear(sl_err *err)
{
    if (err == NULL)
        return;
    err->code = SL_OK;
    err->msg[0] = '\0';
    err->detail[0] = '\0';
}

static sl_log_level log_level = SL_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
sl_log_set_level(sl_log_level level)
{
    log_level = level;
}

static void log_v(sl_log_level level, const char *fmt, va_list ap) SL_PRINTF(2, 0);

static void
log_v(sl_log_level level, const char *fmt, va_list ap)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    char ts[SL_TS_LEN];
    char line[1024];

    if (level < log_level)
        return;
    sl_time_format_us(sl_now_us(), ts);
    vsnprintf(line, sizeof line, fmt, ap);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s sluice %s: %s\n", ts, names[level], line);
    pthread_mutex_unlock(&log_lock);
}

void
sl_log(sl_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_v(level, fmt, ap);
    va_end(ap);
}

void
sl_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_v(SL_LOG_ERROR, fmt, ap);
    va_end(ap);
    abort();
}

void *
sl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        sl_panic("out of memory allocating %zu bytes", n);
    return p;
}

void *
sl_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL)
        sl_panic("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *
sl_xreallocarray(void *p, size_t n, size_t size)
{
    void *q;

    if (size != 0 && n > SIZE_MAX / size)
        sl_panic("allocation of %zu x %zu bytes overflows", n, size);
    q = realloc(p, n * size > 0 ? n * size : 1);
    if (q == NULL)
        sl_panic("out of memory allocating %zu x %zu bytes", n, size);
    return q;
}

void *
sl_xreallocarray_wiped(void *p, size_t old, size_t n, size_t size)
{
    void *q;
    size_t keep;

    if (size != 0 && (n > SIZE_MAX / size || old > SIZE_MAX / size))
        sl_panic("allocation of %zu x %zu bytes overflows", n, size);
    q = sl_xmalloc(n * size > 0 ? n * size : 1);
    keep = (old < n ? old : n) * size;
    if (p != NULL) {
        if (keep > 0)
            memcpy(q, p, keep);
        explicit_bzero(p, old * size);
        free(p);
    }
    return q;
}

char *
sl_xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = sl_xmalloc(n + 1);

    memcpy(p, s, n + 1);
    return p;
}

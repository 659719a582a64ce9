/*
 * common/sl_buf.c: bounded growable buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl.h"

void
sl_buf_init(sl_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->wiped = 0;
}

void
sl_buf_init_wiped(sl_buf *b, size_t max)
{
    sl_buf_init(b, max);
    b->wiped = 1;
}

void
sl_buf_free(sl_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void
sl_buf_reset(sl_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

static sl_code
reserve(sl_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > b->max || b->len > b->max - extra)
        return SL_ETOOLARGE;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return SL_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    if (b->wiped) {
        p = sl_xreallocarray_wiped(b->data, b->cap, cap, 1);
    } else {
        p = realloc(b->data, cap);
        if (p == NULL)
            sl_panic("out of memory growing a buffer to %zu bytes", cap);
    }
    b->data = p;
    b->cap = cap;
    return SL_OK;
}

sl_code
sl_buf_append(sl_buf *b, const void *p, size_t n)
{
    if (reserve(b, n) != SL_OK)
        return SL_ETOOLARGE;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SL_OK;
}

sl_code
sl_buf_extend(sl_buf *b, size_t n, unsigned char **at)
{
    if (reserve(b, n) != SL_OK)
        return SL_ETOOLARGE;
    *at = (unsigned char *)b->data + b->len;
    memset(*at, 0, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SL_OK;
}

sl_code
sl_buf_room(sl_buf *b, size_t n, char **at)
{
    if (reserve(b, n) != SL_OK)
        return SL_ETOOLARGE;
    *at = b->data + b->len;
    return SL_OK;
}

void
sl_buf_wrote(sl_buf *b, size_t m)
{
    b->len += m;
    b->data[b->len] = '\0';
}

sl_code
sl_buf_puts(sl_buf *b, const char *s)
{
    return sl_buf_append(b, s, strlen(s));
}

sl_code
sl_buf_printf(sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SL_EINTERNAL;
    if (reserve(b, (size_t)n) != SL_OK)
        return SL_ETOOLARGE;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SL_OK;
}

char *
sl_buf_take(sl_buf *b, size_t *len)
{
    char *p = b->data;

    if (p == NULL)
        p = sl_xstrdup("");
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

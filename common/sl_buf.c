/*
 * common/sl_buf.c: bounded growable buffers and the per-request arena.
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
    p = realloc(b->data, cap);
    if (p == NULL)
        sl_panic("out of memory growing a buffer to %zu bytes", cap);
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

/* Arena: a list of blocks; in debug builds one block per allocation. */
struct block {
    struct block *next;
    size_t used, size;
    max_align_t data[];
};

struct sl_arena {
    struct block *head;
};

#define ARENA_BLOCK 8192

sl_arena *
sl_arena_new(void)
{
    return sl_xcalloc(1, sizeof(sl_arena));
}

void
sl_arena_free(sl_arena *a)
{
    struct block *b, *next;

    if (a == NULL)
        return;
    for (b = a->head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void *
sl_arena_alloc(sl_arena *a, size_t n)
{
    const size_t align = sizeof(max_align_t);
    struct block *b;
    size_t rounded;

    if (n > SIZE_MAX / 2)
        sl_panic("arena allocation of %zu bytes", n);
    rounded = (n + align - 1) / align * align;
#ifndef SL_ARENA_DEBUG
    b = a->head;
    if (b != NULL && b->size - b->used >= rounded) {
        void *p = (char *)b->data + b->used;
        b->used += rounded;
        return p;
    }
    if (rounded < ARENA_BLOCK) {
        b = sl_xmalloc(sizeof *b + ARENA_BLOCK);
        b->size = ARENA_BLOCK;
        b->used = rounded;
        b->next = a->head;
        a->head = b;
        return b->data;
    }
#endif
    b = sl_xmalloc(sizeof *b + rounded);
    b->size = b->used = rounded;
    if (a->head != NULL) {
        /* keep the partly used head block first */
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = NULL;
        a->head = b;
    }
    return b->data;
}

char *
sl_arena_strndup(sl_arena *a, const char *s, size_t n)
{
    char *p = sl_arena_alloc(a, n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *
sl_arena_strdup(sl_arena *a, const char *s)
{
    return sl_arena_strndup(a, s, strlen(s));
}

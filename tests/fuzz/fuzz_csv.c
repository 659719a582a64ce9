/*
 * tests/fuzz/fuzz_csv.c: the CSV parser of uploads, fed the input whole and again in
 * pieces whose sizes come from the input itself: both must agree on the outcome, the
 * records and every field (a piece boundary must never change what is parsed), fields
 * must be valid UTF-8 without NUL, and every record must have the header's width. Each
 * field also goes through the typed parsers, and a float that parses must print and
 * read back to the same bits, and be called canonical exactly when it is that print.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint64_t h; /* a running hash of everything handed over */
    uint64_t records;
    size_t width;
} digest;

static void
mix(digest *d, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++)
        d->h = (d->h ^ b[i]) * 1099511628211ULL;
}

static sl_code
on_record(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    digest *d = ctx;
    size_t i;

    (void)err;
    if (rec == 0)
        d->width = n;
    else if (n != d->width)
        __builtin_trap();
    mix(d, &rec, sizeof rec);
    mix(d, &line, sizeof line);
    for (i = 0; i < n; i++) {
        int64_t iv;
        double dv, back;
        int bv, canon;
        char text[ST_FLOAT_TEXT];
        if (!sl_utf8_valid(f[i].p, f[i].n) || memchr(f[i].p, '\0', f[i].n) != NULL)
            __builtin_trap();
        if (f[i].null && f[i].n != 0)
            __builtin_trap();
        mix(d, &f[i].null, sizeof f[i].null);
        mix(d, &f[i].n, sizeof f[i].n);
        mix(d, f[i].p, f[i].n);
        (void)st_parse_int64(f[i].p, f[i].n, &iv);
        (void)st_parse_bool(f[i].p, f[i].n, &bv);
        if (st_parse_float64_text(f[i].p, f[i].n, &dv, &canon) == SL_OK) {
            size_t k = st_format_float64(dv, text);
            if (!isfinite(dv) || st_parse_float64(text, k, &back) != SL_OK ||
                memcmp(&back, &dv, sizeof dv) != 0)
                __builtin_trap();
            /* canonical exactly when the text is what the value prints as */
            if (canon != (k == f[i].n && memcmp(text, f[i].p, k) == 0))
                __builtin_trap();
        }
    }
    d->records++;
    return SL_OK;
}

static sl_code
run(const uint8_t *data, size_t size, size_t step, digest *d, sl_err *err)
{
    st_csv *p = st_csv_new(on_record, d);
    sl_code rc = SL_OK;
    size_t off = 0;

    while (rc == SL_OK && off < size) {
        size_t k = size - off < step ? size - off : step;
        rc = st_csv_feed(p, (const char *)data + off, k, err);
        off += k;
    }
    if (rc == SL_OK)
        rc = st_csv_finish(p, err);
    st_csv_free(p);
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    digest whole = {14695981039346656037ULL, 0, 0}, pieces = whole;
    sl_err e1, e2;
    sl_code r1, r2;
    size_t step = size > 0 ? (size_t)data[0] % 13 + 1 : 1;

    r1 = run(data, size, size > 0 ? size : 1, &whole, &e1);
    r2 = run(data, size, step, &pieces, &e2);
    if (r1 != r2 || whole.h != pieces.h || whole.records != pieces.records)
        __builtin_trap();
    if (r1 != SL_OK && strcmp(e1.msg, e2.msg) != 0)
        __builtin_trap();
    return 0;
}

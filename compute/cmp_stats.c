/*
 * compute/cmp_stats.c: per-column aggregates in a zone (count, mean, standard deviation,
 * minimum, maximum) over the columns streamed to it, by Welford's method. Column frames
 * are hostile: every length is checked, and a value that is neither finite nor a null
 * (NaN) refuses the frame.
 */
#include <math.h>
#include <string.h>

#include "cmp.h"

static uint16_t
rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

sl_code
cmp_stats_add(cmp_stats *st, const cmp_frame *f)
{
    const unsigned char *p = f->payload;
    size_t n = f->len, i, k;
    cmp_stat *c;
    uint16_t nl;
    uint32_t count;

    if (f->type != CMP_F_COLUMN || n < 2 || (nl = rd16(p)) == 0 || nl > CMP_NAME_MAX ||
        n < 2u + nl + 4u)
        return SL_EINVALID;
    count = rd32(p + 2 + nl);
    if ((uint64_t)count * 8 != (uint64_t)(n - 2 - nl - 4) || memchr(p + 2, '\0', nl) != NULL)
        return SL_EINVALID;
    for (k = 0; k < st->n; k++)
        if (strlen(st->col[k].name) == nl && memcmp(st->col[k].name, p + 2, nl) == 0)
            break;
    if (k == st->n) {
        if (st->n == CMP_MAX_COLUMNS)
            return SL_EINVALID;
        c = &st->col[st->n++];
        memset(c, 0, sizeof *c);
        memcpy(c->name, p + 2, nl);
        c->min = INFINITY;
        c->max = -INFINITY;
    }
    c = &st->col[k];
    p += 2 + nl + 4;
    for (i = 0; i < count; i++) {
        double v, d;

        memcpy(&v, p + 8 * i, 8);
        if (isnan(v))
            continue; /* a null */
        if (!isfinite(v))
            return SL_EINVALID;
        c->count++;
        d = v - c->mean;
        c->mean += d / (double)c->count;
        c->m2 += d * (v - c->mean);
        if (v < c->min)
            c->min = v;
        if (v > c->max)
            c->max = v;
        /* squares of values near the largest doubles overflow: refused, never answered
         * as infinite or NaN */
        if (!isfinite(c->mean) || !isfinite(c->m2))
            return SL_EINVALID;
    }
    return SL_OK;
}

sl_code
cmp_stats_encode(const cmp_stats *st, sl_buf *out)
{
    size_t i;
    sl_code rc = SL_OK;

    for (i = 0; i < st->n && rc == SL_OK; i++) {
        const cmp_stat *c = &st->col[i];
        uint16_t nl = (uint16_t)strlen(c->name);
        unsigned char h[2] = {(unsigned char)nl, (unsigned char)(nl >> 8)};
        double v[4] = {c->mean, c->count > 1 ? sqrt(c->m2 / (double)(c->count - 1)) : 0,
                       c->count ? c->min : 0, c->count ? c->max : 0};

        rc = sl_buf_append(out, h, 2);
        if (rc == SL_OK)
            rc = sl_buf_append(out, c->name, nl);
        if (rc == SL_OK)
            rc = sl_buf_append(out, &c->count, 8);
        if (rc == SL_OK)
            rc = sl_buf_append(out, v, sizeof v);
    }
    return rc;
}

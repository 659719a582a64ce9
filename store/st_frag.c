/*
 * store/st_frag.c: Reed-Solomon fragments of a sealed chunk with ISA-L: split into k
 * data + m parity fragments, each under a CRC32C, and rebuilt from any k intact ones.
 */
#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"
#include "st_int.h"

#define FRAG_MAGIC "SLF1"

uint32_t
st_crc32c(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint32_t crc = 0xffffffffu;

    while (n > 0) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        crc = crc32_iscsi((unsigned char *)(uintptr_t)b, k, crc);
        b += k;
        n -= (size_t)k;
    }
    return crc ^ 0xffffffffu;
}

static uint32_t
frag_crc(const unsigned char *f, size_t payload)
{
    uint32_t crc = 0xffffffffu;

    crc = crc32_iscsi((unsigned char *)(uintptr_t)f, 20, crc);
    crc = crc32_iscsi((unsigned char *)(uintptr_t)(f + ST_FRAG_HEAD), (int)payload, crc);
    return crc ^ 0xffffffffu;
}

static int
shape_ok(int k, int m)
{
    return k >= 1 && m >= 0 && k + m <= ST_MAX_FRAGMENTS;
}

sl_code
st_frag_split(const unsigned char *chunk, size_t n, int k, int m, st_frag *out)
{
    unsigned char *data[ST_MAX_FRAGMENTS], *coding[ST_MAX_FRAGMENTS];
    unsigned char matrix[ST_MAX_FRAGMENTS * ST_MAX_FRAGMENTS], *tables = NULL;
    size_t len;
    int i;

    if (!shape_ok(k, m) || n > UINT32_MAX)
        return SL_EINVALID;
    len = (n + (size_t)k - 1) / (size_t)k;
    if (len > (size_t)INT_MAX)
        return SL_ETOOLARGE;
    for (i = 0; i < k + m; i++) {
        unsigned char *f = st_io_alloc(ST_FRAG_HEAD + (len ? len : 1));
        memset(f, 0, ST_FRAG_HEAD);
        memcpy(f, FRAG_MAGIC, 4);
        f[4] = (unsigned char)k;
        f[5] = (unsigned char)m;
        f[6] = (unsigned char)i;
        st_le32(f + 8, (uint32_t)n);
        st_le32(f + 12, (uint32_t)len);
        if (i < k) {
            size_t at = (size_t)i * len, take = at < n ? (n - at < len ? n - at : len) : 0;
            if (take > 0)
                memcpy(f + ST_FRAG_HEAD, chunk + at, take);
            memset(f + ST_FRAG_HEAD + take, 0, len - take); /* the last one's padding */
            data[i] = f + ST_FRAG_HEAD;
        } else {
            coding[i - k] = f + ST_FRAG_HEAD;
        }
        out[i].p = f;
        out[i].n = ST_FRAG_HEAD + len;
    }
    if (m > 0 && len > 0) {
        tables = sl_xmalloc((size_t)32 * (size_t)k * (size_t)m);
        gf_gen_cauchy1_matrix(matrix, k + m, k);
        ec_init_tables(k, m, matrix + k * k, tables);
        ec_encode_data((int)len, k, m, tables, data, coding);
        free(tables);
    }
    for (i = 0; i < k + m; i++)
        st_le32(out[i].p + 20, frag_crc(out[i].p, len));
    return SL_OK;
}

int
st_frag_check(const unsigned char *p, size_t n, int k, int m, int i)
{
    size_t len;

    if (p == NULL || n < ST_FRAG_HEAD || memcmp(p, FRAG_MAGIC, 4) != 0 || p[4] != k || p[5] != m ||
        p[6] != i || p[7] != 0)
        return 0;
    len = st_rd32(p + 12);
    if (n - ST_FRAG_HEAD != len || len > (size_t)INT_MAX)
        return 0;
    return frag_crc(p, len) == st_rd32(p + 20);
}

sl_code
st_frag_join(const st_frag *frags, int k, int m, sl_buf *out, uint32_t *bad)
{
    unsigned char matrix[ST_MAX_FRAGMENTS * ST_MAX_FRAGMENTS],
        b[ST_MAX_FRAGMENTS * ST_MAX_FRAGMENTS];
    unsigned char inv[ST_MAX_FRAGMENTS * ST_MAX_FRAGMENTS], dm[ST_MAX_FRAGMENTS * ST_MAX_FRAGMENTS];
    unsigned char *src[ST_MAX_FRAGMENTS], *rec[ST_MAX_FRAGMENTS], *tables;
    int use[ST_MAX_FRAGMENTS], lost[ST_MAX_FRAGMENTS];
    uint32_t n = 0, len = 0;
    int i, j, nuse = 0, nlost = 0, have_shape = 0;
    unsigned char *dst;
    sl_code rc = SL_OK;

    *bad = 0;
    if (!shape_ok(k, m))
        return SL_EINVALID;
    for (i = 0; i < k + m; i++) {
        if (!st_frag_check(frags[i].p, frags[i].n, k, m, i)) {
            *bad |= 1u << i;
            continue;
        }
        if (!have_shape) {
            n = st_rd32(frags[i].p + 8);
            len = st_rd32(frags[i].p + 12);
            have_shape = 1;
        } else if (st_rd32(frags[i].p + 8) != n || st_rd32(frags[i].p + 12) != len) {
            *bad |= 1u << i; /* a fragment of another chunk: not this one's */
            continue;
        }
        if (nuse < k)
            use[nuse++] = i;
    }
    if (nuse < k || (uint64_t)len * (uint64_t)k < n || (k > 0 && n > 0 && (n + k - 1) / k != len))
        return SL_EINVALID;
    for (i = 0; i < k; i++)
        if (*bad & (1u << i))
            lost[nlost++] = i;
    if (sl_buf_extend(out, n, &dst) != SL_OK)
        return SL_ETOOLARGE;
    for (i = 0; i < nlost; i++)
        rec[i] = sl_xcalloc(len ? len : 1, 1);
    if (nlost > 0 && len > 0) {
        /* rows of the encoding matrix for the fragments used; invert; the rows of the
         * inverse for the lost data fragments give them from the ones used */
        gf_gen_cauchy1_matrix(matrix, k + m, k);
        for (i = 0; i < k; i++) {
            memcpy(b + k * i, matrix + k * use[i], (size_t)k);
            src[i] = frags[use[i]].p + ST_FRAG_HEAD;
        }
        if (gf_invert_matrix(b, inv, k) != 0) {
            rc = SL_EINVALID;
            goto out;
        }
        for (i = 0; i < nlost; i++)
            memcpy(dm + k * i, inv + k * lost[i], (size_t)k);
        tables = sl_xmalloc((size_t)32 * (size_t)k * (size_t)nlost);
        ec_init_tables(k, nlost, dm, tables);
        ec_encode_data((int)len, k, nlost, tables, src, rec);
        free(tables);
    }
    for (i = 0, j = 0; i < k; i++) {
        size_t at = (size_t)i * len, take = at < n ? (n - at < len ? n - at : len) : 0;
        const unsigned char *from = (*bad & (1u << i)) ? rec[j++] : frags[i].p + ST_FRAG_HEAD;
        if (take > 0)
            memcpy(dst + at, from, take);
    }
out:
    for (i = 0; i < nlost; i++)
        free(rec[i]);
    if (rc != SL_OK) {
        out->len -= n;
        out->data[out->len] = '\0';
    }
    return rc;
}

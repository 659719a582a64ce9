/*
 * store/st_codec.c: per-chunk compression with ISA-L's igzip (raw deflate, level 1:
 * about 0.3 GB/s per core on this kind of data), kept only where it pays.
 */
#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"
#include "st_int.h"

enum { CODEC_STORED = 0, CODEC_DEFLATE = 1 };

static void
put_head(unsigned char *p, int codec, uint32_t n)
{
    p[0] = (unsigned char)codec;
    st_le32(p + 1, n);
}

sl_code
st_pack(const unsigned char *raw, size_t n, int try_compress, sl_buf *out, int *compressed)
{
    struct isal_zstream zs;
    unsigned char *head, *level_buf;
    size_t mark = out->len, room = n - n / 8;
    int r;

    *compressed = 0;
    if (n > UINT32_MAX)
        return SL_ETOOLARGE;
    if (sl_buf_extend(out, ST_PACK_HEAD + n, &head) != SL_OK)
        return SL_ETOOLARGE;
    if (try_compress && n >= 64) {
        level_buf = sl_xmalloc(ISAL_DEF_LVL1_DEFAULT);
        isal_deflate_stateless_init(&zs);
        zs.level = 1;
        zs.level_buf = level_buf;
        zs.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
        zs.gzip_flag = IGZIP_DEFLATE;
        zs.end_of_stream = 1;
        zs.flush = NO_FLUSH;
        zs.next_in = (uint8_t *)(uintptr_t)raw;
        zs.avail_in = (uint32_t)n;
        zs.next_out = head + ST_PACK_HEAD;
        zs.avail_out = (uint32_t)room; /* less than this saving: not worth it */
        r = isal_deflate_stateless(&zs);
        free(level_buf);
        if (r == COMP_OK && zs.avail_in == 0) {
            put_head(head, CODEC_DEFLATE, (uint32_t)n);
            out->len = mark + ST_PACK_HEAD + zs.total_out;
            out->data[out->len] = '\0';
            *compressed = 1;
            return SL_OK;
        }
    }
    put_head(head, CODEC_STORED, (uint32_t)n);
    if (n > 0)
        memcpy(head + ST_PACK_HEAD, raw, n);
    return SL_OK;
}

sl_code
st_unpack_view(const unsigned char *p, size_t n, size_t max, sl_buf *scratch,
               const unsigned char **raw, size_t *len)
{
    if (n < ST_PACK_HEAD)
        return SL_EINVALID;
    if (p[0] == CODEC_STORED) { /* the bytes themselves, where they are */
        if (st_rd32(p + 1) > max || n - ST_PACK_HEAD != st_rd32(p + 1))
            return SL_EINVALID;
        *raw = p + ST_PACK_HEAD;
        *len = n - ST_PACK_HEAD;
        return SL_OK;
    }
    sl_buf_reset(scratch);
    if (st_unpack(p, n, max, scratch) != SL_OK)
        return SL_EINVALID;
    *raw = (const unsigned char *)scratch->data;
    *len = scratch->len;
    return SL_OK;
}

sl_code
st_unpack(const unsigned char *p, size_t n, size_t max, sl_buf *out)
{
    struct inflate_state st;
    unsigned char *dst;
    size_t mark = out->len;
    uint32_t raw;

    if (n < ST_PACK_HEAD)
        return SL_EINVALID;
    raw = st_rd32(p + 1);
    if (raw > max || (p[0] != CODEC_STORED && p[0] != CODEC_DEFLATE))
        return SL_EINVALID;
    if (p[0] == CODEC_STORED && n - ST_PACK_HEAD != raw)
        return SL_EINVALID;
    if (sl_buf_extend(out, raw, &dst) != SL_OK)
        return SL_ETOOLARGE;
    if (p[0] == CODEC_STORED) {
        if (raw > 0)
            memcpy(dst, p + ST_PACK_HEAD, raw);
        return SL_OK;
    }
    isal_inflate_init(&st);
    st.crc_flag = ISAL_DEFLATE;
    st.next_in = (uint8_t *)(uintptr_t)(p + ST_PACK_HEAD);
    st.avail_in = (uint32_t)(n - ST_PACK_HEAD);
    st.next_out = dst;
    st.avail_out = raw;
    if (isal_inflate_stateless(&st) != ISAL_DECOMP_OK || st.avail_out != 0 || st.avail_in != 0 ||
        st.block_state != ISAL_BLOCK_FINISH) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
        return SL_EINVALID;
    }
    return SL_OK;
}

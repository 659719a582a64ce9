/*
 * compute/cmp_frame.c: the zone's framing. Everything read is hostile: a frame is
 * accepted only whole, with its magic, a known type, zero reserved bytes and a bounded
 * length. Also what both sides of the pipe check of a released result.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cmp.h"

static uint32_t
rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

sl_code
cmp_frame_parse(const unsigned char *p, size_t n, cmp_frame *f, size_t *used)
{
    uint32_t len;

    *used = 0;
    if (n < CMP_FRAME_HEAD)
        return SL_EBADREQ;
    if (memcmp(p, CMP_FRAME_MAGIC, 4) != 0 || p[4] < CMP_F_COLUMN || p[4] > CMP_F_REFUSED ||
        p[5] != 0 || p[6] != 0 || p[7] != 0)
        return SL_EINVALID;
    len = rd32(p + 8);
    if (len > CMP_FRAME_MAX)
        return SL_EINVALID;
    if (n - CMP_FRAME_HEAD < len)
        return SL_EBADREQ;
    f->type = p[4];
    f->len = len;
    f->payload = p + CMP_FRAME_HEAD;
    *used = CMP_FRAME_HEAD + (size_t)len;
    return SL_OK;
}

/* Exactly n bytes from fd; 0, or -1 at an error or the end of input. */
static int
read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

sl_code
cmp_frame_read(int fd, sl_buf *buf, cmp_frame *f, sl_err *err)
{
    unsigned char *at;
    size_t used;
    sl_code rc;

    sl_buf_reset(buf);
    if (sl_buf_extend(buf, CMP_FRAME_HEAD, &at) != SL_OK || read_all(fd, at, CMP_FRAME_HEAD))
        return sl_err_set(err, SL_EIO, "the frame's head could not be read");
    rc = cmp_frame_parse((const unsigned char *)buf->data, buf->len, f, &used);
    if (rc == SL_EINVALID)
        return sl_err_set(err, SL_EINVALID, "a malformed frame");
    if (rc == SL_EBADREQ) {
        size_t len = rd32((const unsigned char *)buf->data + 8);
        if (sl_buf_extend(buf, len, &at) != SL_OK || read_all(fd, at, len))
            return sl_err_set(err, SL_EIO, "the frame's payload could not be read");
        if (cmp_frame_parse((const unsigned char *)buf->data, buf->len, f, &used) != SL_OK)
            return sl_err_set(err, SL_EINVALID, "a malformed frame");
    }
    return SL_OK;
}

void
cmp_frame_head(unsigned char head[CMP_FRAME_HEAD], uint8_t type, size_t n)
{
    memcpy(head, CMP_FRAME_MAGIC, 4);
    head[4] = type;
    head[5] = head[6] = head[7] = 0;
    head[8] = (unsigned char)n;
    head[9] = (unsigned char)(n >> 8);
    head[10] = (unsigned char)(n >> 16);
    head[11] = (unsigned char)(n >> 24);
}

size_t
cmp_json_numbers(const json_t *v)
{
    const char *k;
    json_t *e;
    size_t i, n = 0;

    if (json_is_number(v))
        return 1;
    if (json_is_array(v))
        json_array_foreach(v, i, e) n += cmp_json_numbers(e);
    else if (json_is_object(v))
        json_object_foreach((json_t *)v, k, e) n += cmp_json_numbers(e);
    return n;
}

sl_code
cmp_frame_write(int fd, uint8_t type, const void *p, size_t n, sl_err *err)
{
    unsigned char head[CMP_FRAME_HEAD];
    const unsigned char *parts[2] = {head, p};
    size_t lens[2] = {sizeof head, n}, i;

    if (n > CMP_FRAME_MAX)
        return sl_err_set(err, SL_ETOOLARGE, "a frame's payload over the limit");
    cmp_frame_head(head, type, n);
    for (i = 0; i < 2; i++) {
        const unsigned char *q = parts[i];
        size_t left = lens[i];
        while (left > 0) {
            ssize_t k = write(fd, q, left);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return sl_err_set(err, SL_EIO, "a frame could not be written");
            q += k;
            left -= (size_t)k;
        }
    }
    return SL_OK;
}

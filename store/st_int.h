/*
 * store/st_int.h: helpers private to store/: the little-endian integers of the on-disk
 * formats (chunks, packing, fragments).
 */
#ifndef ST_INT_H
#define ST_INT_H

#include <stdint.h>

static inline void
st_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t
st_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
st_le64(unsigned char *p, uint64_t v)
{
    st_le32(p, (uint32_t)v);
    st_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t
st_rd64(const unsigned char *p)
{
    return (uint64_t)st_rd32(p) | (uint64_t)st_rd32(p + 4) << 32;
}

#endif

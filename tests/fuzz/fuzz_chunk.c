/*
 * tests/fuzz/fuzz_chunk.c: what reads storage's bytes back: a fragment's header and CRC
 * (as the only fragment of a chunk), the unpacker (codec and length, ISA-L inflate) and
 * the column-chunk decoder. Whatever the bytes: no crash, no
 * leak; an unpacked chunk is never longer than allowed; and what the decoder accepts is
 * canonical: encoding the decoded column gives back exactly the same bytes.
 */
#include <stdint.h>
#include <string.h>

#include "st.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_column c;
    sl_buf again, raw;

    st_frag one = {(unsigned char *)(uintptr_t)data, size};
    uint32_t bad;

    sl_buf_init(&raw, SL_MAX_CHUNK_BYTES);
    if (st_frag_join(&one, 1, 0, &raw, &bad) == SL_OK &&
        (bad != 0 || size < ST_FRAG_HEAD || raw.len > size - ST_FRAG_HEAD ||
         memcmp(raw.data, data + ST_FRAG_HEAD, raw.len) != 0))
        __builtin_trap();
    sl_buf_reset(&raw);
    /* the unpacker bounded, and its copy-free form agreeing with it */
    {
        sl_buf scratch;
        const unsigned char *view = NULL;
        size_t vlen = 0;
        int ok = st_unpack(data, size, 1 << 20, &raw) == SL_OK;
        sl_buf_init(&scratch, 1 << 20);
        if ((ok && raw.len > (1 << 20)) ||
            ok != (st_unpack_view(data, size, 1 << 20, &scratch, &view, &vlen) == SL_OK) ||
            (ok && (vlen != raw.len || (vlen > 0 && memcmp(view, raw.data, vlen) != 0))))
            __builtin_trap();
        sl_buf_free(&scratch);
    }
    sl_buf_free(&raw);
    if (st_column_decode(data, size, &c) != SL_OK)
        return 0;
    sl_buf_init(&again, SL_MAX_CHUNK_BYTES);
    if (st_column_encode(&c, &again) != SL_OK || again.len != size ||
        memcmp(again.data, data, size) != 0)
        __builtin_trap();
    /* decoded again into the same memory (as a read does, group after group): the same */
    if (st_column_decode_into(data, size, &c) != SL_OK)
        __builtin_trap();
    sl_buf_reset(&again);
    if (st_column_encode(&c, &again) != SL_OK || again.len != size ||
        memcmp(again.data, data, size) != 0)
        __builtin_trap();
    sl_buf_free(&again);
    st_column_wipe(&c);
    return 0;
}

/*
 * tests/fuzz/fuzz_frame.c: what a zone reads: a stream of frames, each parsed strictly,
 * column frames added to the aggregates, which are then encoded. Nothing may crash, read
 * out of bounds or loop; a refused frame ends the stream as it ends the zone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cmp_stats st;
    size_t at = 0, used;
    cmp_frame f;
    sl_buf out;

    memset(&st, 0, sizeof st);
    while (at < size) {
        if (cmp_frame_parse(data + at, size - at, &f, &used) != SL_OK)
            break;
        if (used < CMP_FRAME_HEAD || used > size - at)
            abort();
        at += used;
        if (f.type == CMP_F_END)
            break;
        if (f.type != CMP_F_COLUMN || cmp_stats_add(&st, &f) != SL_OK)
            break;
    }
    sl_buf_init(&out, (size_t)CMP_MAX_COLUMNS * (2 + CMP_NAME_MAX + 40) + 1);
    if (cmp_stats_encode(&st, &out) != SL_OK)
        abort();
    sl_buf_free(&out);
    return 0;
}

/*
 * tests/fuzz/fuzz_frame.c: what a zone reads, as the zone reads it: a stream of frames,
 * each parsed strictly; the first a spec (JSON), then column frames into the table, then
 * the job run over whatever arrived. Nothing may crash, read out of bounds, leak or loop;
 * a refused frame ends the stream as it ends the zone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmp.h"
#include "cmp_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cmp_table t;
    json_t *spec = NULL, *out = NULL;
    char rule[CMP_RULE_MAX];
    size_t at = 0, used;
    int ended = 0;
    cmp_frame f;
    sl_err err;

    memset(&t, 0, sizeof t);
    sl_err_clear(&err);
    while (at < size) {
        if (cmp_frame_parse(data + at, size - at, &f, &used) != SL_OK)
            break;
        if (used < CMP_FRAME_HEAD || used > size - at)
            abort();
        at += used;
        if (spec == NULL) {
            json_error_t je;
            if (f.type != CMP_F_SPEC)
                break;
            spec = json_loadb((const char *)f.payload, f.len, JSON_REJECT_DUPLICATES, &je);
            if (!json_is_object(spec))
                break;
            continue;
        }
        if (f.type == CMP_F_END) {
            ended = 1;
            break;
        }
        if ((f.type != CMP_F_COLUMN && f.type != CMP_F_STRCOL) ||
            cmp_table_add(&t, &f, &err) != SL_OK)
            break;
    }
    /* a job over a small table: bounded work whatever the spec asks */
    if (ended && json_is_object(spec) && cmp_table_finish(&t, &err) == SL_OK && t.nrows <= 4096) {
        json_t *m = json_object_get(spec, "model");
        json_int_t it = json_integer_value(json_object_get(m, "max_iter"));
        if (it <= 50 && cmp_job_run(spec, &t, NULL, NULL, &out, rule, &err) == SL_OK && out == NULL)
            abort();
    }
    json_decref(out);
    json_decref(spec);
    cmp_table_free(&t);
    return 0;
}

/*
 * tests/fuzz/fuzz_text.c: the small parsers of untrusted text: RFC 3339 times, tokens,
 * names, UTF-8, integers, and RFC 8785 canonical JSON of parsed documents.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cry.h"
#include "sl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), clean[65], id[CRY_TOKEN_ID_HEX + 1],
         secret[CRY_TOKEN_SECRET_HEX + 1], ts[SL_TS_LEN];
    int64_t v;
    json_t *j;

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (sl_time_parse(s, &v) == SL_OK) {
        int64_t again;
        /* what parses formats and parses back to the same instant */
        if (v > -62135596800LL * 1000000 && v < 253402300799LL * 1000000) {
            sl_time_format_us(v, ts);
            if (sl_time_parse(ts, &again) != SL_OK || again != v)
                __builtin_trap();
        }
    }
    if (cry_token_parse(s, size, id, secret) == SL_OK && (strlen(id) != 16 || strlen(secret) != 64))
        __builtin_trap();
    (void)sl_name_valid(s);
    (void)sl_parse_i64(s, INT64_MIN, INT64_MAX, &v);
    sl_text_clean(clean, s, size, 64);
    if (!sl_utf8_valid(clean, strlen(clean)))
        __builtin_trap();
    j = json_loadb(s, size, JSON_DECODE_ANY, NULL);
    if (j != NULL) {
        sl_buf b;
        sl_buf_init(&b, 1 << 20);
        if (cry_jcs(j, &b) == SL_OK) {
            /* canonical output is valid JSON that canonicalises to itself */
            json_t *k = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
            sl_buf b2;
            sl_buf_init(&b2, 1 << 20);
            if (k == NULL || cry_jcs(k, &b2) != SL_OK || b2.len != b.len ||
                memcmp(b.data, b2.data, b.len) != 0)
                __builtin_trap();
            json_decref(k);
            sl_buf_free(&b2);
        }
        sl_buf_free(&b);
        json_decref(j);
    }
    free(s);
    return 0;
}

/*
 * tests/fuzz/fuzz_request_json.c: every request body goes through gw_json_parse_object
 * and then an endpoint's validator; none may crash, leak or accept what it should not.
 */
#include <stdint.h>
#include <string.h>

#include "gw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_principal_body b;
    gw_dataset_body d;
    json_t *obj = NULL;
    int64_t ttl = 0;
    sl_err err;

    if (size > SL_MAX_JSON_BODY)
        return 0;
    if (gw_json_parse_object((const char *)data, size, &obj, &err) != SL_OK) {
        if (obj != NULL)
            __builtin_trap(); /* an error leaves nothing behind */
        return 0;
    }
    if (gw_json_principal_create(obj, 86400, &b, &err) == SL_OK) {
        /* what was accepted is what the contract allows */
        if (!sl_name_valid(b.name) ||
            (strcmp(b.kind, "user") != 0 && strcmp(b.kind, "service") != 0))
            __builtin_trap();
    }
    (void)gw_json_principal_patch(obj, &b, &err);
    (void)gw_json_token_create(obj, 86400, &ttl, &err);
    if (gw_json_dataset_create(obj, &d, &err) == SL_OK) {
        if (!sl_name_valid(d.name) || gw_classification_rank(d.classification) < 0)
            __builtin_trap();
    }
    if (gw_json_dataset_patch(obj, &d, &err) == SL_OK) {
        if (d.classification != NULL && gw_classification_rank(d.classification) < 0)
            __builtin_trap();
    }
    json_decref(obj);
    return 0;
}

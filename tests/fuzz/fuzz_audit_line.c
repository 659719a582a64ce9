/*
 * tests/fuzz/fuzz_audit_line.c: the offline verifier reads an export that may have been
 * tampered with: arbitrary lines of JSON events and checkpoints, in any order. It must
 * never crash and never call an altered trail good.
 */
#include <stdint.h>
#include <string.h>

#include "cry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char pk[CRY_SIGN_PK_BYTES] = {1, 2, 3};
    cry_verifier *v = cry_verifier_new();
    cry_verify_result res;
    size_t start = 0, i;

    cry_verifier_add_key(v, pk);
    for (i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        if (i > start) {
            json_t *j =
                json_loadb((const char *)data + start, i - start, JSON_REJECT_DUPLICATES, NULL);
            if (json_is_object(j)) {
                json_t *cp = json_object_get(j, "checkpoint");
                if (cp != NULL && json_object_size(j) == 1)
                    cry_verifier_checkpoint(v, cp);
                else
                    cry_verifier_event(v, j, NULL, 0);
            } else {
                cry_verifier_fail(v, 0, "not JSON");
            }
            json_decref(j);
        }
        start = i + 1;
    }
    cry_verifier_finish(v, &res);
    /* no checkpoint can verify under a key whose secret nobody has: never ok with events */
    if (res.ok && res.events > 0)
        __builtin_trap();
    cry_verifier_free(v);
    return 0;
}

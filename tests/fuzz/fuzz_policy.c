/*
 * tests/fuzz/fuzz_policy.c: policy documents as a client sends them. The input is parsed
 * as JSON (bounded like a request body) and checked as a dataset's policy against a fixed
 * dataset, and as a global policy. A refusal must be SL_EINVALID with a message; a
 * document accepted must compile with itself as a global policy too, and decide for a
 * few principals without failing: a decision is allow or deny, lists only statements of
 * the document, and its view never both denies and masks a column.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const pii[] = {"pii"}, *const idt[] = {"id", "pii"};
static const pol_column cols[] = {{"id", POL_INT64, idt, 2},   {"email", POL_STRING, pii, 1},
                                  {"age", POL_INT64, NULL, 0}, {"score", POL_FLOAT64, NULL, 0},
                                  {"ok", POL_BOOL, NULL, 0},   {"region", POL_STRING, NULL, 0}};
#define NCOLS (sizeof cols / sizeof cols[0])

static void
decide_all(const pol_compiled *p)
{
    static const char *const roles[][2] = {{"trainer", "x"}, {"admin", "owner"}, {"a", "b"}};
    static const char *const ak[] = {"department", "employment"}, *const av[] = {"research",
                                                                                 "contractor"};
    static const char *const purposes[] = {NULL, "model-training", "marketing"};
    uint8_t denied[NCOLS], mask[NCOLS];
    size_t w, a, u, i;

    for (w = 0; w < 3; w++)
        for (a = 0; a < 8; a++)
            for (u = 0; u < 3; u++) {
                pol_subject s;
                pol_request r;
                pol_decision d;
                sl_buf b;

                pol_subject_init(&s, w == 0 ? "tom" : "olga", roles[w], 2, ak, av, w, w == 1);
                pol_request_init(&r, 1u << a, purposes[u], (int64_t)1767225600 * 1000000);
                pol_decide(p, &s, &r, &d);
                if (d.allow != 0 && d.allow != 1)
                    abort();
                for (i = 0; i < d.ndeciding; i++)
                    if (pol_decision_statement(&d, i) == NULL)
                        abort();
                if (!d.allow)
                    continue;
                pol_decision_view(&d, denied, mask);
                for (i = 0; i < NCOLS; i++)
                    if ((denied[i] && mask[i] != POL_MASK_NONE) || mask[i] > POL_MASK_NULL)
                        abort();
                sl_buf_init(&b, 1 << 20);
                if (pol_decision_filter_text(&d, &b) != SL_OK)
                    abort();
                sl_buf_free(&b);
                json_decref(pol_decision_json(&d, &(pol_dataset){"confidential", cols, NCOLS}, 1));
            }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pol_dataset ds = {"confidential", cols, NCOLS};
    json_error_t je;
    json_t *doc;
    pol_compiled *p = NULL;
    pol_global g;
    sl_err err;
    sl_code rc;

    if (size > SL_MAX_JSON_BODY)
        return 0;
    doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL)
        return 0;
    sl_err_clear(&err);
    rc = pol_doc_check(doc, &ds, &err);
    if (rc != SL_OK && (rc != SL_EINVALID || err.msg[0] == '\0'))
        abort();
    if (rc == SL_OK) {
        if (pol_compile(&ds, doc, 3, NULL, 0, &p, &err) != SL_OK)
            abort();
        decide_all(p);
        pol_compiled_free(p);
        p = NULL;
    }
    sl_err_clear(&err);
    rc = pol_global_check(doc, &err);
    if (rc != SL_OK && (rc != SL_EINVALID || err.msg[0] == '\0'))
        abort();
    if (rc == SL_OK) {
        g.name = "g";
        g.doc = doc;
        g.version = 1;
        if (pol_compile(&ds, NULL, 0, &g, 1, &p, &err) != SL_OK && err.code != SL_ETOOLARGE)
            abort();
        if (p != NULL)
            decide_all(p);
        pol_compiled_free(p);
    }
    json_decref(doc);
    return 0;
}

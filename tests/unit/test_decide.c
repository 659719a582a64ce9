/*
 * tests/unit/test_decide.c: policy decisions against the JSON fixtures of
 * tests/unit/fixtures/policy (Ranger's policy-engine fixtures are the model): each file
 * gives a dataset, its policy, global policies, principals and cases with the expected
 * decision, deciding statements and view; and documents that must be refused, with the
 * words the refusal must hold.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */

#include <cmocka.h>
#include <jansson.h>

#include "pol.h"

#ifndef POLICY_FIXTURES
#error "POLICY_FIXTURES must name the fixtures directory"
#endif

#define DEFAULT_TIME "2026-03-01T00:00:00Z"

typedef struct {
    pol_column cols[64];
    const char *tags[64][8];
    size_t ncols;
    pol_dataset ds;
} dataset;

static int cases_run;

static pol_type
type_of(const char *t)
{
    if (strcmp(t, "float64") == 0)
        return POL_FLOAT64;
    if (strcmp(t, "int64") == 0)
        return POL_INT64;
    if (strcmp(t, "bool") == 0)
        return POL_BOOL;
    assert_string_equal(t, "string");
    return POL_STRING;
}

static void
load_dataset(const json_t *j, dataset *d)
{
    const json_t *cols = json_object_get(j, "columns");
    json_t *c, *t;
    size_t i, k;

    memset(d, 0, sizeof *d);
    assert_true(json_array_size(cols) <= 64);
    json_array_foreach(cols, i, c)
    {
        d->cols[i].name = json_string_value(json_object_get(c, "name"));
        d->cols[i].type = type_of(json_string_value(json_object_get(c, "type")));
        json_array_foreach(json_object_get(c, "tags"), k, t)
        {
            assert_true(k < 8);
            d->tags[i][k] = json_string_value(t);
        }
        d->cols[i].tags = d->tags[i];
        d->cols[i].ntags = json_array_size(json_object_get(c, "tags"));
    }
    d->ncols = json_array_size(cols);
    d->ds.classification = json_string_value(json_object_get(j, "classification"));
    d->ds.cols = d->cols;
    d->ds.ncols = d->ncols;
}

static void
check_refused(const char *file, const json_t *list, const pol_dataset *ds, int global)
{
    json_t *x;
    size_t i;

    json_array_foreach(list, i, x)
    {
        const char *want = json_string_value(json_object_get(x, "message"));
        sl_err err;
        sl_code rc;

        sl_err_clear(&err);
        rc = global ? pol_global_check(json_object_get(x, "doc"), &err)
                    : pol_doc_check(json_object_get(x, "doc"), ds, &err);
        if (rc != SL_EINVALID || strstr(err.msg, want) == NULL) {
            print_error("%s: refusal %zu: code %d, message \"%s\", expected one holding \"%s\"\n",
                        file, i + 1, (int)rc, err.msg, want);
            fail();
        }
    }
}

static void
run_case(const char *file, const json_t *fx, const json_t *cs, const pol_compiled *p,
         const dataset *d)
{
    const char *name = json_string_value(json_object_get(cs, "name"));
    const char *who = json_string_value(json_object_get(cs, "principal"));
    const json_t *pj = json_object_get(json_object_get(fx, "principals"), who);
    const json_t *expect = json_object_get(cs, "expect"), *owner = json_object_get(cs, "owner");
    const char *roles[32], *akeys[32], *avals[32], *k, *when;
    size_t i, nroles = 0, nattrs = 0;
    json_t *v, *got;
    uint32_t action;
    int64_t now;
    pol_subject s;
    pol_request r;
    pol_decision dec;

    if (pj == NULL) {
        print_error("%s: case \"%s\": no principal \"%s\" in the fixture\n", file, name, who);
        fail();
    }
    json_array_foreach(json_object_get(pj, "roles"), i, v)
    {
        roles[nroles++] = json_string_value(v);
    }
    json_object_foreach((json_t *)json_object_get(pj, "attributes"), k, v)
    {
        akeys[nattrs] = k;
        avals[nattrs++] = json_string_value(v);
    }
    assert_int_equal(pol_action_parse(json_string_value(json_object_get(cs, "action")), &action),
                     SL_OK);
    when = json_string_value(json_object_get(cs, "time"));
    assert_int_equal(sl_time_parse(when != NULL ? when : DEFAULT_TIME, &now), SL_OK);
    pol_subject_init(&s, who, roles, nroles, akeys, avals, nattrs,
                     owner != NULL
                         ? json_is_true(owner)
                         : strcmp(who, json_string_value(json_object_get(
                                           json_object_get(fx, "dataset"), "owner"))) == 0);
    pol_request_init(&r, action, json_string_value(json_object_get(cs, "purpose")), now);
    pol_decide(p, &s, &r, &dec);
    got = pol_decision_json(&dec, &d->ds, 1);
    json_object_foreach((json_t *)expect, k, v)
    {
        if (!json_equal(json_object_get(got, k), v)) {
            char *g = json_dumps(got, JSON_SORT_KEYS), *e = json_dumps(expect, JSON_SORT_KEYS);
            print_error("%s: case \"%s\": field \"%s\" differs\n  got      %s\n  expected %s\n",
                        file, name, k, g, e);
            free(g);
            free(e);
            json_decref(got);
            fail();
        }
    }
    json_decref(got);
    cases_run++;
}

static void
run_file(const char *path, const char *file)
{
    json_error_t je;
    json_t *fx = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *cs, *g;
    pol_global globals[16];
    pol_compiled *p = NULL;
    const json_t *pv;
    size_t i, ng = 0;
    dataset d;
    sl_err err;

    if (fx == NULL) {
        print_error("%s: %s (line %d)\n", file, je.text, je.line);
        fail();
    }
    load_dataset(json_object_get(fx, "dataset"), &d);
    json_array_foreach(json_object_get(fx, "globals"), i, g)
    {
        assert_true(ng < 16);
        globals[ng].name = json_string_value(json_object_get(g, "name"));
        globals[ng].doc = json_object_get(g, "doc");
        globals[ng].version = json_integer_value(json_object_get(g, "version"));
        ng++;
    }
    check_refused(file, json_object_get(fx, "invalid"), &d.ds, 0);
    check_refused(file, json_object_get(fx, "invalid_global"), &d.ds, 1);
    if (json_object_get(fx, "invalid_restricted") != NULL) {
        dataset r = d;

        r.ds.classification = "restricted";
        r.ds.cols = r.cols;
        check_refused(file, json_object_get(fx, "invalid_restricted"), &r.ds, 0);
    }
    if (json_object_get(fx, "cases") != NULL) {
        pv = json_object_get(json_object_get(fx, "dataset"), "policy_version");
        sl_err_clear(&err);
        if (pol_compile(&d.ds, json_object_get(fx, "policy"), pv ? json_integer_value(pv) : 1,
                        globals, ng, &p, &err) != SL_OK) {
            print_error("%s: does not compile: %s\n", file, err.msg);
            fail();
        }
        json_array_foreach(json_object_get(fx, "cases"), i, cs)
        {
            run_case(file, fx, cs, p, &d);
        }
        pol_compiled_free(p);
    }
    json_decref(fx);
}

static void
test_fixtures(void **state)
{
    struct dirent **names;
    int i, n;

    (void)state;
    n = scandir(POLICY_FIXTURES, &names, NULL, alphasort);
    assert_true(n > 0);
    for (i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        char path[4096];

        if (len > 5 && strcmp(names[i]->d_name + len - 5, ".json") == 0) {
            snprintf(path, sizeof path, "%s/%s", POLICY_FIXTURES, names[i]->d_name);
            run_file(path, names[i]->d_name);
        }
        free(names[i]);
    }
    free(names);
    /* the issue asks for at least 60 decision cases */
    assert_true(cases_run >= 60);
}

/* Masks one value at a time: every kind, nulls, UTF-8 for partial, dates for year, and
 * hash pseudonyms equal for equal values under one key, different under another. */
static const char *
masked(pol_mask m, const cry_mac *key, const char *v, int *is_null)
{
    static char out[128];
    sl_buf b;

    sl_buf_init(&b, 1024);
    assert_int_equal(pol_mask_value(m, key, v, strlen(v), &b, is_null), SL_OK);
    snprintf(out, sizeof out, "%s", b.data != NULL ? b.data : "");
    sl_buf_free(&b);
    return out;
}

static void
test_masks(void **state)
{
    unsigned char k1[32] = {1}, k2[32] = {2};
    cry_key *a = cry_key_dup(k1, 32), *b = cry_key_dup(k2, 32);
    cry_mac *ma = cry_mac_new(a), *mb = cry_mac_new(b);
    char h1[80], h2[80], h3[80];
    int null;

    (void)state;
    assert_string_equal(masked(POL_MASK_PARTIAL, NULL, "123-45-6789", &null), "*******6789");
    assert_false(null);
    assert_string_equal(masked(POL_MASK_PARTIAL, NULL, "Chlo\xc3\xa9 Dupont", &null),
                        "********pont");
    /* 7 characters, 10 bytes: the last 4 characters kept whole */
    assert_string_equal(
        masked(POL_MASK_PARTIAL, NULL, "\xc3\xa9t\xc3\xa9 \xc3\xa9t\xc3\xa9", &null),
        "*** \xc3\xa9t\xc3\xa9");
    assert_string_equal(masked(POL_MASK_PARTIAL, NULL, "Dan", &null), "***");
    assert_string_equal(masked(POL_MASK_PARTIAL, NULL, "abcd", &null), "****");
    assert_string_equal(masked(POL_MASK_YEAR, NULL, "1990-01-02", &null), "1990");
    assert_false(null);
    assert_string_equal(masked(POL_MASK_YEAR, NULL, "1999", &null), "1999");
    masked(POL_MASK_YEAR, NULL, "not a date", &null);
    assert_true(null);
    masked(POL_MASK_YEAR, NULL, "19990", &null);
    assert_true(null);
    assert_string_equal(masked(POL_MASK_REDACT, NULL, "secret", &null), "[redacted]");
    masked(POL_MASK_NULL, NULL, "secret", &null);
    assert_true(null);
    snprintf(h1, sizeof h1, "%s", masked(POL_MASK_HASH, ma, "ann@example.org", &null));
    snprintf(h2, sizeof h2, "%s", masked(POL_MASK_HASH, ma, "ann@example.org", &null));
    snprintf(h3, sizeof h3, "%s", masked(POL_MASK_HASH, mb, "ann@example.org", &null));
    assert_int_equal(strlen(h1), 64);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);
    assert_string_not_equal(h1, masked(POL_MASK_HASH, ma, "bob@example.org", &null));
    {
        sl_buf x;
        sl_buf_init(&x, 1024);
        assert_int_equal(pol_mask_value(POL_MASK_HASH, NULL, "v", 1, &x, &null), SL_EINTERNAL);
        sl_buf_free(&x);
    }
    cry_mac_free(ma);
    cry_mac_free(mb);
    cry_key_free(a);
    cry_key_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_masks),
    };

    if (cry_init() != SL_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

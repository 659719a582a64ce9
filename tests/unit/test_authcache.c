/*
 * tests/unit/test_authcache.c: the gateway's authentication cache. A hit gives back
 * exactly what was cached (an independent copy), never a revoked token or a disabled
 * principal; entries go when forgotten, by token or by principal, when their time is up,
 * and when another token takes their slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <cmocka.h>

#include "gw.h"

static db_principal
principal(int64_t id, const char *name, int64_t version)
{
    db_principal p;

    memset(&p, 0, sizeof p);
    p.id = id;
    snprintf(p.name, sizeof p.name, "%s", name);
    snprintf(p.kind, sizeof p.kind, "user");
    p.roles = json_pack("[s]", "trainer");
    p.attributes = json_pack("{s:s}", "team", "vision");
    p.version = version;
    return p;
}

static db_token
token(int64_t principal_id, unsigned char fill)
{
    db_token t;

    memset(&t, 0, sizeof t);
    t.principal_id = principal_id;
    memset(t.hash, fill, sizeof t.hash);
    t.expires_us = 4102444800000000LL; /* 2100 */
    return t;
}

static void
hit_is_a_copy(void **state)
{
    gw_authcache *c = gw_authcache_new(300);
    db_principal p = principal(7, "ana", 3), got;
    db_token t = token(7, 0xab), gt;

    (void)state;
    assert_false(gw_authcache_get(c, "0123456789abcdef", &gt, &got));
    gw_authcache_put(c, "0123456789abcdef", &t, &p);
    db_principal_clear(&p);
    assert_true(gw_authcache_get(c, "0123456789abcdef", &gt, &got));
    assert_int_equal(got.id, 7);
    assert_string_equal(got.name, "ana");
    assert_int_equal(got.version, 3);
    assert_int_equal(gt.principal_id, 7);
    assert_memory_equal(gt.hash, t.hash, sizeof t.hash);
    assert_int_equal(gt.expires_us, t.expires_us);
    assert_string_equal(json_string_value(json_array_get(got.roles, 0)), "trainer");
    /* the caller's copy is its own: changing it leaves the cache as it was */
    json_array_clear(got.roles);
    db_principal_clear(&got);
    assert_true(gw_authcache_get(c, "0123456789abcdef", &gt, &got));
    assert_int_equal(json_array_size(got.roles), 1);
    db_principal_clear(&got);
    /* another id is a miss */
    assert_false(gw_authcache_get(c, "0123456789abcdee", &gt, &got));
    gw_authcache_free(c);
}

static void
never_revoked_or_disabled(void **state)
{
    gw_authcache *c = gw_authcache_new(300);
    db_principal p = principal(1, "bo", 1), got;
    db_token t = token(1, 1), gt;

    (void)state;
    t.revoked = 1;
    gw_authcache_put(c, "00000000000000a1", &t, &p);
    assert_false(gw_authcache_get(c, "00000000000000a1", &gt, &got));
    t.revoked = 0;
    p.disabled = 1;
    gw_authcache_put(c, "00000000000000a1", &t, &p);
    assert_false(gw_authcache_get(c, "00000000000000a1", &gt, &got));
    db_principal_clear(&p);
    gw_authcache_free(c);
}

static void
forgotten_by_token_and_principal(void **state)
{
    gw_authcache *c = gw_authcache_new(300);
    db_principal a = principal(1, "a", 1), b = principal(2, "b", 1), got;
    db_token ta = token(1, 1), ta2 = token(1, 2), tb = token(2, 3), gt;

    (void)state;
    gw_authcache_put(c, "0000000100000001", &ta, &a);
    gw_authcache_put(c, "0000000200000002", &ta2, &a);
    gw_authcache_put(c, "0000000300000003", &tb, &b);
    gw_authcache_forget(c, "0000000100000001");
    assert_false(gw_authcache_get(c, "0000000100000001", &gt, &got));
    assert_true(gw_authcache_get(c, "0000000200000002", &gt, &got));
    db_principal_clear(&got);
    /* forgetting an id whose slot holds another token leaves that token */
    gw_authcache_forget(c, "0000000300000004");
    assert_true(gw_authcache_get(c, "0000000300000003", &gt, &got));
    db_principal_clear(&got);
    gw_authcache_forget_principal(c, 1);
    assert_false(gw_authcache_get(c, "0000000200000002", &gt, &got));
    assert_true(gw_authcache_get(c, "0000000300000003", &gt, &got));
    db_principal_clear(&got);
    db_principal_clear(&a);
    db_principal_clear(&b);
    gw_authcache_free(c);
}

static void
slot_taken_by_another_and_time_up(void **state)
{
    gw_authcache *c = gw_authcache_new(300), *quick = gw_authcache_new(1);
    db_principal p = principal(5, "c", 1), got;
    db_token t = token(5, 9), gt;
    char other[17];
    struct timespec ts = {1, 200000000L};

    (void)state;
    /* ids with the same first 8 hex digits share a slot: the newer one takes it */
    snprintf(other, sizeof other, "%s", "abcdef0100000000");
    gw_authcache_put(c, "abcdef0100000001", &t, &p);
    gw_authcache_put(c, other, &t, &p);
    assert_false(gw_authcache_get(c, "abcdef0100000001", &gt, &got));
    assert_true(gw_authcache_get(c, other, &gt, &got));
    db_principal_clear(&got);
    gw_authcache_put(quick, other, &t, &p);
    assert_true(gw_authcache_get(quick, other, &gt, &got));
    db_principal_clear(&got);
    nanosleep(&ts, NULL);
    assert_false(gw_authcache_get(quick, other, &gt, &got));
    db_principal_clear(&p);
    gw_authcache_free(c);
    gw_authcache_free(quick);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hit_is_a_copy),
        cmocka_unit_test(never_revoked_or_disabled),
        cmocka_unit_test(forgotten_by_token_and_principal),
        cmocka_unit_test(slot_taken_by_another_and_time_up),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_compute.c: compute/ and the sluice-zone executable. Frames parsed
 * strictly; the store's frames (what a gateway sends) read back exactly by the zone's
 * table; the sandbox proven: a zone that tries open, socket, execve, an executable mapping
 * or protection, a mapping of a descriptor or a signal to its parent after entering it is
 * killed by SIGSYS, a malformed frame ends only that zone (exit 3), and a well-formed job
 * answers over the pipes: statistics, or a model with its progress.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it */
#include <sys/wait.h>

#include <cmocka.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>

#include "cmp.h"
#include "cmp_data.h"
#include "st.h"

#ifndef ZONE_BIN
#error "ZONE_BIN must name the sluice-zone executable"
#endif

static void
column_frame(sl_buf *b, const char *name, const double *v, uint32_t n)
{
    unsigned char h[2] = {(unsigned char)strlen(name), 0}, c[4];

    c[0] = (unsigned char)n;
    c[1] = (unsigned char)(n >> 8);
    c[2] = (unsigned char)(n >> 16);
    c[3] = (unsigned char)(n >> 24);
    sl_buf_reset(b);
    assert_int_equal(sl_buf_append(b, h, 2), SL_OK);
    assert_int_equal(sl_buf_append(b, name, strlen(name)), SL_OK);
    assert_int_equal(sl_buf_append(b, c, 4), SL_OK);
    assert_int_equal(sl_buf_append(b, v, (size_t)n * 8), SL_OK);
}

static void
frames_parse_strictly(void **state)
{
    unsigned char f[CMP_FRAME_HEAD + 3] = {'S', 'L', 'Z', '1', CMP_F_END, 0,   0,  0,
                                           3,   0,   0,   0,   'a',       'b', 'c'};
    unsigned char bad[sizeof f];
    cmp_frame fr;
    size_t used;

    (void)state;
    assert_int_equal(cmp_frame_parse(f, sizeof f, &fr, &used), SL_OK);
    assert_int_equal(used, sizeof f);
    assert_int_equal(fr.type, CMP_F_END);
    assert_int_equal(fr.len, 3);
    assert_int_equal(cmp_frame_parse(f, sizeof f - 1, &fr, &used), SL_EBADREQ); /* not whole */
    assert_int_equal(cmp_frame_parse(f, 5, &fr, &used), SL_EBADREQ);
    memcpy(bad, f, sizeof f);
    bad[0] = 'X';
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
    memcpy(bad, f, sizeof f);
    bad[4] = 10;
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
    memcpy(bad, f, sizeof f);
    bad[6] = 1;
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
    memcpy(bad, f, sizeof f);
    bad[11] = 0x7f; /* far over CMP_FRAME_MAX */
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
}

static void
add_field(st_column *c, const char *text)
{
    st_field f = {text, text ? strlen(text) : 0, text == NULL};
    sl_err err;

    sl_err_clear(&err);
    assert_int_equal(st_column_add(c, &f, &err), SL_OK);
}

/* What the store writes for a compute read (ST_OUT_FRAMES) is what the zone's table
 * reads: every type, nulls, and a slice that starts midway. */
static void
store_frames_read_back_in_the_zone(void **state)
{
    static const char *const names[] = {"f", "i", "b", "s"};
    st_column cols[4];
    const st_type types[4] = {ST_FLOAT64, ST_INT64, ST_BOOL, ST_STRING};
    const char *fv[5] = {"1.5", NULL, "-2e-300", "7", "0.1"};
    const char *iv[5] = {"3", "-9007199254740993", NULL, "0", "42"};
    const char *bv[5] = {"true", "false", NULL, "true", "false"};
    const char *sv[5] = {"a", "", NULL, "caf\xc3\xa9", "a"};
    cmp_table t;
    sl_buf out;
    size_t at = 0, used, k;
    sl_err err;
    int i;

    (void)state;
    memset(&t, 0, sizeof t);
    sl_err_clear(&err);
    sl_buf_init(&out, 1 << 20);
    for (k = 0; k < 4; k++)
        st_column_init(&cols[k], types[k]);
    for (i = 0; i < 5; i++) {
        add_field(&cols[0], fv[i]);
        add_field(&cols[1], iv[i]);
        add_field(&cols[2], bv[i]);
        add_field(&cols[3], sv[i]);
    }
    assert_int_equal(st_column_floats(&cols[0]), SL_OK);
    assert_int_equal(st_out_rows(ST_OUT_FRAMES, names, cols, 4, 1, 5, &out), SL_OK);
    while (at < out.len) {
        cmp_frame f;
        assert_int_equal(cmp_frame_parse((unsigned char *)out.data + at, out.len - at, &f, &used),
                         SL_OK);
        assert_int_equal(cmp_table_add(&t, &f, &err), SL_OK);
        at += used;
    }
    assert_int_equal(cmp_table_finish(&t, &err), SL_OK);
    assert_int_equal(t.nrows, 4);
    {
        const cmp_col *f = cmp_table_find(&t, "f"), *iv_ = cmp_table_find(&t, "i");
        const cmp_col *b = cmp_table_find(&t, "b"), *s_ = cmp_table_find(&t, "s");
        assert_non_null(f);
        assert_true(isnan(f->v[0]) && f->v[1] == -2e-300 && f->v[2] == 7 && f->v[3] == 0.1);
        assert_true(iv_->v[0] == -9007199254740992.0 && isnan(iv_->v[1]) && iv_->v[3] == 42);
        assert_true(b->v[0] == 0 && isnan(b->v[1]) && b->v[2] == 1);
        assert_true(s_->is_string);
        assert_int_equal(s_->code[1], CMP_NULL_CODE);
        assert_string_equal(s_->cat[s_->code[0]], "");
        assert_string_equal(s_->cat[s_->code[2]], "caf\xc3\xa9");
        assert_string_equal(s_->cat[s_->code[3]], "a");
    }
    cmp_table_free(&t);
    for (k = 0; k < 4; k++)
        st_column_clear(&cols[k]);
    sl_buf_free(&out);
}

static void
frame_into(sl_buf *in, uint8_t type, const void *p, size_t n)
{
    unsigned char h[CMP_FRAME_HEAD] = {'S', 'L', 'Z', '1', type, 0, 0, 0};

    h[8] = (unsigned char)n;
    h[9] = (unsigned char)(n >> 8);
    h[10] = (unsigned char)(n >> 16);
    h[11] = (unsigned char)(n >> 24);
    assert_int_equal(sl_buf_append(in, h, sizeof h), SL_OK);
    if (n > 0)
        assert_int_equal(sl_buf_append(in, p, n), SL_OK);
}

/* Runs the zone with args, feeding it `in` and collecting its standard output. Returns its
 * wait status. The environment holds only what a sanitizer build needs. */
static int
run_zone(const char *const *args, const void *in, size_t n, sl_buf *out)
{
    int to[2], from[2], status;
    pid_t pid;

    assert_int_equal(pipe(to), 0);
    assert_int_equal(pipe(from), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[8] = {ZONE_BIN};
        char *env[] = {"ASAN_OPTIONS=detect_leaks=0:symbolize=0", NULL};
        int i;
        for (i = 0; args[i] != NULL && i < 6; i++)
            argv[i + 1] = (char *)args[i];
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        execve(ZONE_BIN, argv, env);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    signal(SIGPIPE, SIG_IGN);
    if (n > 0 && write(to[1], in, n) < 0) {
        /* the zone may be gone already (a refused frame): its status says why */
    }
    close(to[1]);
    for (;;) {
        char buf[4096];
        ssize_t k = read(from[0], buf, sizeof buf);
        if (k <= 0)
            break;
        assert_int_equal(sl_buf_append(out, buf, (size_t)k), SL_OK);
    }
    close(from[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void
sandbox_kills_what_it_forbids(void **state)
{
    static const char *const tries[] = {"open",    "socket",        "execve",     "mmap-exec",
                                        "mmap-fd", "mprotect-exec", "kill-parent"};
    sl_buf out;
    size_t i;
    int st;

    (void)state;
    sl_buf_init(&out, 1 << 20);
    {
        const char *args[] = {"--selftest", "none", NULL};
        st = run_zone(args, NULL, 0, &out);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        const char *args[] = {"--selftest", tries[i], NULL};
        st = run_zone(args, NULL, 0, &out);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS))
            fail_msg("the zone's %s was not killed by SIGSYS (status %d)", tries[i], st);
    }
    sl_buf_free(&out);
}

/* A job through the pipes, as a gateway sends it: a spec, columns, the end. */
static void
job_input(sl_buf *in, const char *spec, uint32_t n)
{
    sl_buf col;
    double *x = calloc(n, sizeof *x), *y = calloc(n, sizeof *y);
    uint32_t i;

    assert_non_null(x);
    assert_non_null(y);
    for (i = 0; i < n; i++) {
        x[i] = (double)(i % 17) / 4.0 - 2;
        y[i] = (i * 7919u) % 10 < 3 + (x[i] > 0 ? 5 : 0) ? 1 : 0;
    }
    sl_buf_init(&col, 1 << 20);
    sl_buf_reset(in);
    frame_into(in, CMP_F_SPEC, spec, strlen(spec));
    column_frame(&col, "x", x, n);
    frame_into(in, CMP_F_COLUMN, col.data, col.len);
    column_frame(&col, "y", y, n);
    frame_into(in, CMP_F_COLUMN, col.data, col.len);
    frame_into(in, CMP_F_END, NULL, 0);
    sl_buf_free(&col);
    free(x);
    free(y);
}

#define SEED "\"noise_seed\":\"0000000000000000000000000000000000000000000000000000000000000000\""

static void
zone_answers_jobs_and_dies_alone_on_bad_frames(void **state)
{
    const char *args[] = {"--cpu-s", "30", "--threads", "2", NULL};
    const char *features = "{\"kind\":\"features\",\"columns\":[\"x\"],\"min_rows\":100,"
                           "\"min_cell\":10,\"restricted\":false,\"bins\":4," SEED "}";
    const char *train = "{\"kind\":\"train\",\"features\":[{\"column\":\"x\",\"transform\":"
                        "\"standardize\"}],\"label\":\"y\",\"model\":{\"type\":"
                        "\"logistic_regression\",\"l2\":0.001,\"max_iter\":50,\"tol\":1e-9,"
                        "\"seed\":0},\"validation\":{\"fraction\":0.2,\"seed\":3},\"min_rows\":100,"
                        "\"min_cell\":10,\"restricted\":false," SEED "}";
    sl_buf in, out;
    cmp_frame f;
    size_t used, at = 0;
    json_t *res;
    int st, progress = 0;

    (void)state;
    sl_buf_init(&in, 1 << 22);
    sl_buf_init(&out, 1 << 22);
    /* statistics */
    job_input(&in, features, 1000);
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(cmp_frame_parse((unsigned char *)out.data, out.len, &f, &used), SL_OK);
    assert_int_equal(f.type, CMP_F_RESULT);
    res = json_loadb((const char *)f.payload, f.len, 0, NULL);
    assert_non_null(res);
    assert_int_equal(json_integer_value(json_object_get(res, "rows")), 1000);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(res, "stats"), "x"), "count")),
                     1000);
    json_decref(res);
    /* too few rows: refused by its rule, nothing else said */
    sl_buf_reset(&out);
    job_input(&in, features, 99);
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(cmp_frame_parse((unsigned char *)out.data, out.len, &f, &used), SL_OK);
    assert_int_equal(f.type, CMP_F_REFUSED);
    assert_int_equal(f.len, strlen("min_rows"));
    assert_memory_equal(f.payload, "min_rows", f.len);
    /* a model: progress frames, then the result (OpenBLAS's threads inside the filter) */
    sl_buf_reset(&out);
    job_input(&in, train, 2000);
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (;;) {
        assert_int_equal(cmp_frame_parse((unsigned char *)out.data + at, out.len - at, &f, &used),
                         SL_OK);
        at += used;
        if (f.type != CMP_F_PROGRESS)
            break;
        assert_int_equal(f.len, 12);
        progress++;
    }
    assert_int_equal(f.type, CMP_F_RESULT);
    assert_true(progress > 0);
    assert_int_equal(at, out.len);
    res = json_loadb((const char *)f.payload, f.len, 0, NULL);
    assert_non_null(res);
    assert_true(json_number_value(
                    json_object_get(json_object_get(res, "metrics"), "gradient_norm")) <= 1e-9);
    json_decref(res);
    /* a malformed frame: this zone ends (3), nothing is answered */
    sl_buf_reset(&out);
    job_input(&in, features, 1000);
    in.data[CMP_FRAME_HEAD + strlen(features)] = 'X'; /* the first column frame's magic */
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    assert_int_equal(out.len, 0);
    /* input that stops midway, and a spec that is not JSON: the same */
    job_input(&in, features, 1000);
    st = run_zone(args, in.data, in.len - 5, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    job_input(&in, "{\"kind\":", 1000);
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    assert_int_equal(out.len, 0);
    sl_buf_free(&in);
    sl_buf_free(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_parse_strictly),
        cmocka_unit_test(store_frames_read_back_in_the_zone),
        cmocka_unit_test(sandbox_kills_what_it_forbids),
        cmocka_unit_test(zone_answers_jobs_and_dies_alone_on_bad_frames),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

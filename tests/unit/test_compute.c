/*
 * tests/unit/test_compute.c: compute/ and the sluice-zone executable. Frames parsed
 * strictly; aggregates exact against a direct computation; the sandbox proven: a zone that
 * tries open, socket, execve, an executable mapping or protection, a mapping of a
 * descriptor or a signal to its parent after entering it is killed by SIGSYS, a malformed frame
 * ends only that zone (exit 3), and a well-formed job answers its statistics over the pipes.
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
    bad[4] = 9;
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
    memcpy(bad, f, sizeof f);
    bad[6] = 1;
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
    memcpy(bad, f, sizeof f);
    bad[11] = 0x7f; /* far over CMP_FRAME_MAX */
    assert_int_equal(cmp_frame_parse(bad, sizeof bad, &fr, &used), SL_EINVALID);
}

static void
stats_are_exact_and_refuse_bad_columns(void **state)
{
    static cmp_stats st;
    double x[5] = {1.5, NAN, -2.0, 10.0, 0.25}, y[2] = {3, 4}, inf[1] = {INFINITY};
    sl_buf b, out;
    cmp_frame f;
    double mean = (1.5 - 2.0 + 10.0 + 0.25) / 4, m2 = 0, v[4];
    uint64_t count;
    int i;

    (void)state;
    sl_buf_init(&b, 1 << 20);
    sl_buf_init(&out, 1 << 20);
    memset(&st, 0, sizeof st);
    column_frame(&b, "x", x, 3);
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len};
    assert_int_equal(cmp_stats_add(&st, &f), SL_OK);
    column_frame(&b, "y", y, 2);
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len};
    assert_int_equal(cmp_stats_add(&st, &f), SL_OK);
    column_frame(&b, "x", x + 3, 2); /* the same column, a later row group */
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len};
    assert_int_equal(cmp_stats_add(&st, &f), SL_OK);
    assert_int_equal(st.n, 2);
    assert_int_equal(st.col[0].count, 4);
    assert_true(fabs(st.col[0].mean - mean) < 1e-15);
    for (i = 0; i < 5; i++)
        if (!isnan(x[i]))
            m2 += (x[i] - mean) * (x[i] - mean);
    assert_int_equal(cmp_stats_encode(&st, &out), SL_OK);
    assert_int_equal(out.len, 2 * (2 + 1 + 8 + 32));
    memcpy(&count, out.data + 3, 8);
    memcpy(v, out.data + 11, sizeof v);
    assert_int_equal(count, 4);
    assert_true(fabs(v[1] - sqrt(m2 / 3)) < 1e-12);
    assert_true(v[2] == -2.0 && v[3] == 10.0);
    /* refused: an infinite value, a length that does not add up, a NUL in a name */
    column_frame(&b, "z", inf, 1);
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len};
    assert_int_equal(cmp_stats_add(&st, &f), SL_EINVALID);
    column_frame(&b, "z", y, 2);
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len - 1};
    assert_int_equal(cmp_stats_add(&st, &f), SL_EINVALID);
    column_frame(&b, "z", y, 2);
    b.data[2] = '\0';
    f = (cmp_frame){CMP_F_COLUMN, (const unsigned char *)b.data, (uint32_t)b.len};
    assert_int_equal(cmp_stats_add(&st, &f), SL_EINVALID);
    sl_buf_free(&b);
    sl_buf_free(&out);
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

static void
zone_answers_statistics_and_dies_alone_on_bad_frames(void **state)
{
    const char *args[] = {"--cpu-s", "30", NULL};
    double x[3] = {1, 2, 4};
    sl_buf col, in, out;
    cmp_frame f;
    size_t used;
    uint64_t count;
    double v[4];
    int st;

    (void)state;
    sl_buf_init(&col, 1 << 20);
    sl_buf_init(&in, 1 << 20);
    sl_buf_init(&out, 1 << 20);
    column_frame(&col, "age", x, 3);
    {
        unsigned char h[CMP_FRAME_HEAD] = {'S',
                                           'L',
                                           'Z',
                                           '1',
                                           CMP_F_COLUMN,
                                           0,
                                           0,
                                           0,
                                           (unsigned char)col.len,
                                           (unsigned char)(col.len >> 8),
                                           0,
                                           0};
        unsigned char end[CMP_FRAME_HEAD] = {'S', 'L', 'Z', '1', CMP_F_END, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(sl_buf_append(&in, h, sizeof h), SL_OK);
        assert_int_equal(sl_buf_append(&in, col.data, col.len), SL_OK);
        assert_int_equal(sl_buf_append(&in, end, sizeof end), SL_OK);
    }
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(cmp_frame_parse((unsigned char *)out.data, out.len, &f, &used), SL_OK);
    assert_int_equal(f.type, CMP_F_STATS);
    assert_int_equal(f.len, 2 + 3 + 8 + 32);
    memcpy(&count, f.payload + 5, 8);
    memcpy(v, f.payload + 13, sizeof v);
    assert_int_equal(count, 3);
    assert_true(v[0] == 7.0 / 3 && v[2] == 1 && v[3] == 4);
    /* a malformed frame: this zone ends (3), nothing is answered */
    sl_buf_reset(&out);
    in.data[0] = 'X';
    st = run_zone(args, in.data, in.len, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    assert_int_equal(out.len, 0);
    /* input that stops midway: the same */
    in.data[0] = 'S';
    st = run_zone(args, in.data, in.len - 5, &out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    sl_buf_free(&col);
    sl_buf_free(&in);
    sl_buf_free(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_parse_strictly),
        cmocka_unit_test(stats_are_exact_and_refuse_bad_columns),
        cmocka_unit_test(sandbox_kills_what_it_forbids),
        cmocka_unit_test(zone_answers_statistics_and_dies_alone_on_bad_frames),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * compute/zone_main.c: sluice-zone, the worker a gateway starts per job with a clean
 * environment and only two pipes (standard input: frames in; standard output: frames
 * out). It enters its sandbox before reading anything, then computes from the columns it
 * is sent and answers with aggregates only. Any malformed frame ends this zone (exit 3),
 * never the gateway. It has one thread (the filter would cover any other); how BLAS runs
 * in it is decided with the models.
 *
 *   sluice-zone [--as-mib N] [--cpu-s S] [--selftest WHAT]
 *
 * --selftest enters the sandbox, then tries what it names (the test of the filter: none,
 * open, socket, execve, mmap-exec, mmap-fd, mprotect-exec, kill-parent; every one but
 * `none` must be killed by SIGSYS).
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmp.h"

static int
selftest(const char *what)
{
    static char *const argv[] = {"/bin/true", NULL};
    void *m;

    if (strcmp(what, "none") == 0)
        return 0;
    if (strcmp(what, "open") == 0)
        return open("/etc/hostname", O_RDONLY) >= 0 ? 10 : 11;
    if (strcmp(what, "socket") == 0)
        return socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 10 : 11;
    if (strcmp(what, "execve") == 0)
        return execve(argv[0], argv, NULL) == 0 ? 10 : 11;
    if (strcmp(what, "mmap-exec") == 0) {
        m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m != MAP_FAILED ? 10 : 11;
    }
    if (strcmp(what, "mmap-fd") == 0) { /* a shared mapping of its own stderr */
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 2, 0);
        return m != MAP_FAILED ? 10 : 11;
    }
    if (strcmp(what, "mprotect-exec") == 0) {
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m != MAP_FAILED && mprotect(m, 4096, PROT_READ | PROT_EXEC) == 0 ? 10 : 11;
    }
    if (strcmp(what, "kill-parent") == 0) /* another process of the same user */
        return kill(getppid(), 0) == 0 ? 10 : 11;
    return 2;
}

int
main(int argc, char **argv)
{
    cmp_limits lim = {(uint64_t)1024 << 20, 3600};
    const char *test = NULL;
    static cmp_stats st;
    sl_buf in, out;
    sl_err err;
    int a;

    for (a = 1; a < argc; a++) {
        int64_t v;
        if (a + 1 < argc && strcmp(argv[a], "--as-mib") == 0 &&
            sl_parse_i64(argv[a + 1], 64, 1 << 20, &v) == SL_OK) {
            lim.as_bytes = (uint64_t)v << 20;
            a++;
        } else if (a + 1 < argc && strcmp(argv[a], "--cpu-s") == 0 &&
                   sl_parse_i64(argv[a + 1], 1, 7 * 86400, &v) == SL_OK) {
            lim.cpu_s = (uint64_t)v;
            a++;
        } else if (a + 1 < argc && strcmp(argv[a], "--selftest") == 0) {
            test = argv[++a];
        } else {
            fprintf(stderr, "usage: sluice-zone [--as-mib N] [--cpu-s S] [--selftest WHAT]\n");
            return 2;
        }
    }
    sl_err_clear(&err);
    sl_buf_init(&in, CMP_FRAME_HEAD + CMP_FRAME_MAX);
    sl_buf_init(&out, 1 << 20);
    if (cmp_sandbox_enter(&lim, &err) != SL_OK) {
        fprintf(stderr, "sluice-zone: %s\n", err.msg);
        return 5;
    }
    if (test != NULL)
        return selftest(test);
    for (;;) {
        cmp_frame f;

        if (cmp_frame_read(0, &in, &f, &err) != SL_OK)
            return 3;
        if (f.type == CMP_F_END && f.len == 0)
            break;
        if (f.type != CMP_F_COLUMN || cmp_stats_add(&st, &f) != SL_OK)
            return 3; /* hostile or broken input ends this zone only */
    }
    if (cmp_stats_encode(&st, &out) != SL_OK ||
        cmp_frame_write(1, CMP_F_STATS, out.data, out.len, &err) != SL_OK)
        return 4;
    return 0;
}

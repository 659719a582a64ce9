/*
 * compute/zone_main.c: sluice-zone, the worker a gateway starts per job with a clean
 * environment and only two pipes (standard input: frames in; standard output: frames
 * out). It enters its sandbox before reading anything, then computes from the columns it
 * is sent and answers with aggregates only. Any malformed frame ends this zone (exit 3),
 * never the gateway. Runs single-threaded: several zones run side by side instead.
 *
 *   sluice-zone [--as-mib N] [--cpu-s S] [--selftest none|open|socket|execve|mmap-exec]
 *
 * --selftest enters the sandbox, then tries what it names (the test of the filter: every
 * one but `none` must be killed by SIGSYS).
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include <fcntl.h>
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
        if (a + 1 < argc && strcmp(argv[a], "--as-mib") == 0)
            lim.as_bytes = (uint64_t)strtoull(argv[++a], NULL, 10) << 20;
        else if (a + 1 < argc && strcmp(argv[a], "--cpu-s") == 0)
            lim.cpu_s = strtoull(argv[++a], NULL, 10);
        else if (a + 1 < argc && strcmp(argv[a], "--selftest") == 0)
            test = argv[++a];
        else {
            fprintf(stderr, "usage: sluice-zone [--as-mib N] [--cpu-s S] [--selftest WHAT]\n");
            return 2;
        }
    }
    sl_err_clear(&err);
    /* buffers first: nothing after the sandbox needs a new mapping it could not make */
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
        if (f.type == CMP_F_END)
            break;
        if (f.type != CMP_F_COLUMN || cmp_stats_add(&st, &f) != SL_OK)
            return 3; /* hostile or broken input ends this zone only */
    }
    if (cmp_stats_encode(&st, &out) != SL_OK ||
        cmp_frame_write(1, CMP_F_STATS, out.data, out.len, &err) != SL_OK)
        return 4;
    return 0;
}

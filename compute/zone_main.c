/*
 * compute/zone_main.c: sluice-zone, the worker a gateway starts per job with a clean
 * environment and only two pipes (standard input: frames in; standard output: frames
 * out). It enters its sandbox before reading anything, then computes from the columns it
 * is sent and answers with aggregates only. Any malformed frame ends this zone (exit 3),
 * never the gateway.
 *
 * Input: one CMP_F_SPEC frame (the job as the gateway normalised it), the rows as
 * CMP_F_COLUMN and CMP_F_STRCOL frames, CMP_F_END. Output: CMP_F_PROGRESS frames while
 * a model trains, then one CMP_F_RESULT, CMP_F_REFUSED (a release rule) or CMP_F_ERROR.
 *
 * OpenBLAS's threads are started before the filter: the pool is sized (--threads) and
 * woken by a small product while the zone may still make threads; the filter then lets
 * them run (futex, sched_yield) and makes no new one possible. One zone per job uses
 * every core for its BLAS-3 work; the gateway runs --job-workers zones at once. The
 * zone's own pool (as many threads) is started then too: it shares a Gram product's rows
 * out, each thread with single-threaded BLAS, where OpenBLAS's dsyrk keeps one busy.
 *
 *   sluice-zone [--as-mib N] [--cpu-s S] [--threads N] [--selftest WHAT]
 *
 * --selftest enters the sandbox, then tries what it names (the test of the filter: none,
 * open, socket, execve, mmap-exec, mmap-fd, mprotect-exec, kill-parent; every one but
 * `none` must be killed by SIGSYS).
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include <cblas.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmp.h"
#include "cmp_job.h"

/* the largest first allocation a hint may ask of a column (rows) */
#define CMP_ROWS_HINT_MAX ((size_t)1 << 27)

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

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
/* A sanitizer build's zone: LeakSanitizer's exit check would trace the process, which
 * the filter forbids (the zone's memory ends with it anyway). */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "detect_leaks=0:symbolize=0";
}
#endif
#endif

/* A model's progress, as a frame to the gateway (a failed write ends nothing here: the
 * result's write will fail too). */
static void
progress(void *ctx, int iteration, double loss)
{
    unsigned char p[12];
    uint32_t it = iteration < 0 ? 0 : (uint32_t)iteration;
    sl_err err;

    (void)ctx;
    memcpy(p, &it, 4);
    memcpy(p + 4, &loss, 8);
    sl_err_clear(&err);
    if (cmp_frame_write(1, CMP_F_PROGRESS, p, sizeof p, &err) != SL_OK)
        return; /* the gateway is gone: the result's write fails too */
}

/* Starts OpenBLAS's pool of n threads now, before the filter forbids making threads: a
 * product large enough to be split across them, so that each has started (and finished
 * what a thread does once, at its start) before the filter comes. */
#define WARM 384
static void
blas_warm(int n)
{
    double *a = calloc((size_t)WARM * WARM * 3, sizeof *a);
    int i;

    if (a == NULL)
        return;
    openblas_set_num_threads(n);
    for (i = 0; i < WARM * WARM * 2; i++)
        a[i] = 1.0 / (i + 1);
    for (i = 0; i < 2; i++)
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, WARM, WARM, WARM, 1.0, a, WARM,
                    a + WARM * WARM, WARM, 0.0, a + 2 * WARM * WARM, WARM);
    free(a);
}

static int
answer(uint8_t type, const char *text)
{
    sl_err err;

    sl_err_clear(&err);
    return cmp_frame_write(1, type, text, strlen(text), &err) == SL_OK ? 0 : 4;
}

/* The job, inside the sandbox: its spec, its rows, its answer. The exit status. */
static int
zone_run(sl_buf *in)
{
    static cmp_table table;
    json_t *spec = NULL, *result = NULL;
    char rule[CMP_RULE_MAX];
    cmp_frame f;
    json_error_t je;
    sl_err err;
    sl_code rc;
    char *text;
    int bad;

    sl_err_clear(&err);
    /* the spec first */
    if (cmp_frame_read(0, in, &f, &err) != SL_OK || f.type != CMP_F_SPEC || f.len > 65536)
        return 3;
    spec = json_loadb((const char *)f.payload, f.len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(spec))
        return 3;
    /* the version's rows (before filters), bounded: the columns' first allocation */
    if (json_integer_value(json_object_get(spec, "rows_hint")) > 0)
        table.hint =
            (size_t)json_integer_value(json_object_get(spec, "rows_hint")) > CMP_ROWS_HINT_MAX
                ? CMP_ROWS_HINT_MAX
                : (size_t)json_integer_value(json_object_get(spec, "rows_hint"));
    for (;;) {
        if (cmp_frame_read(0, in, &f, &err) != SL_OK)
            return 3;
        if (f.type == CMP_F_END && f.len == 0)
            break;
        if ((f.type != CMP_F_COLUMN && f.type != CMP_F_STRCOL) ||
            cmp_table_add(&table, &f, &err) != SL_OK)
            return 3; /* hostile or broken input ends this zone only */
    }
    if (cmp_table_finish(&table, &err) != SL_OK)
        return 3;
    sl_buf_free(in);
    rc = cmp_job_run(spec, &table, progress, NULL, &result, rule, &err);
    if (rc == SL_EDENIED)
        return answer(CMP_F_REFUSED, rule);
    if (rc != SL_OK)
        return answer(CMP_F_ERROR, err.msg);
    text = json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (text == NULL || strlen(text) > CMP_FRAME_MAX) {
        free(text);
        return answer(CMP_F_ERROR, "the result is larger than a frame");
    }
    bad = cmp_frame_write(1, CMP_F_RESULT, text, strlen(text), &err) != SL_OK;
    free(text);
    return bad ? 4 : 0;
}

int
main(int argc, char **argv)
{
    cmp_limits lim = {(uint64_t)1024 << 20, 3600};
    const char *test = NULL;
    int threads = 1, a;
    sl_buf in;
    sl_err err;

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
        } else if (a + 1 < argc && strcmp(argv[a], "--threads") == 0 &&
                   sl_parse_i64(argv[a + 1], 1, 256, &v) == SL_OK) {
            threads = (int)v;
            a++;
        } else if (a + 1 < argc && strcmp(argv[a], "--selftest") == 0) {
            test = argv[++a];
        } else {
            fprintf(stderr, "usage: sluice-zone [--as-mib N] [--cpu-s S] [--threads N] "
                            "[--selftest WHAT]\n");
            return 2;
        }
    }
    sl_err_clear(&err);
    sl_buf_init(&in, CMP_FRAME_HEAD + CMP_FRAME_MAX);
    blas_warm(threads);
    /* the zone's own threads for the Gram products (cmp_pool.c), made while it may */
    if (cmp_pool_start(threads, &err) != SL_OK) {
        fprintf(stderr, "sluice-zone: %s\n", err.msg);
        return 5;
    }
    /* jansson seeds its hash tables from /dev/urandom at first use: now, while it may */
    json_object_seed(0);
    if (cmp_sandbox_enter(&lim, &err) != SL_OK) {
        fprintf(stderr, "sluice-zone: %s\n", err.msg);
        return 5;
    }
    /* from here the zone ends with _exit: no destructor runs (OpenBLAS's would stop its
     * threads with calls the filter forbids, for nothing: the process ends anyway) */
    if (test != NULL)
        _exit(selftest(test));
    _exit(zone_run(&in));
}

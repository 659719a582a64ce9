/*
 * compute/cmp_sandbox.c: what a zone gives up before it reads any data (OpenSSH's seccomp
 * sandbox is the model): descriptors beyond its pipes, privileges, resources, and every
 * system call but the few its computation needs. The filter ends in killing the process.
 */
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"

/* AddressSanitizer reserves terabytes of address space for its shadow: a test build's
 * zone cannot have an address-space limit (the others hold). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int
limit(int res, rlim_t v)
{
    struct rlimit rl = {v, v};

    return setrlimit(res, &rl);
}

sl_code
cmp_sandbox_enter(const cmp_limits *l, sl_err *err)
{
    static const int plain[] = {
        SCMP_SYS(read),
        SCMP_SYS(write),
        SCMP_SYS(close),
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(brk),
        SCMP_SYS(munmap),
        SCMP_SYS(mremap),
        SCMP_SYS(madvise),
        SCMP_SYS(futex),
        SCMP_SYS(clock_gettime),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(getpid),
        SCMP_SYS(gettid),
        SCMP_SYS(sched_yield),
        /* OpenBLAS places a buffer it allocates lazily on the NUMA node it runs on */
        SCMP_SYS(mbind),
        /* glibc's qsort asks the memory's size before it sorts */
        SCMP_SYS(sysinfo),
    };
    scmp_filter_ctx ctx = NULL;
    size_t i;
    int rc = 0;

    /* what would need a file later: the time zone (a panic's timestamp) */
    tzset();
    /* a personality passed down that makes readable memory executable is taken back */
    if (personality(0xffffffff) == -1 || personality((unsigned long)personality(0xffffffff) &
                                                     ~(unsigned long)READ_IMPLIES_EXEC) == -1)
        return sl_err_set(err, SL_EINTERNAL, "could not reset the zone's personality");
    /* only the two pipes and stderr stay */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
        return sl_err_set(err, SL_EINTERNAL, "could not close the zone's other descriptors");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return sl_err_set(err, SL_EINTERNAL, "could not drop the zone's privileges");
    if ((!SANITIZED && limit(RLIMIT_AS, (rlim_t)l->as_bytes) != 0) ||
        limit(RLIMIT_CPU, (rlim_t)l->cpu_s) != 0 || limit(RLIMIT_FSIZE, 0) != 0 ||
        limit(RLIMIT_NOFILE, 0) != 0 || limit(RLIMIT_NPROC, 0) != 0 || limit(RLIMIT_CORE, 0) != 0)
        return sl_err_set(err, SL_EINTERNAL, "could not set the zone's limits");
    ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL)
        return sl_err_set(err, SL_EINTERNAL, "could not start a seccomp filter");
    /* every thread, and a call of another architecture's ABI, kills the whole process */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    for (i = 0; i < sizeof plain / sizeof plain[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain[i], 0);
    /* a signal to itself only (abort); never to another process of the same user */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0));
    /* memory: anonymous, never executable (a mapping of a descriptor could write a file) */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 2,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0),
                              SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, MAP_ANONYMOUS));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    /* a sanitizer build's runtime sets and clears a thread's signal stack as it exits */
    if (rc == 0 && SANITIZED)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sigaltstack), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0)
        return sl_err_set(err, SL_EINTERNAL, "could not load the zone's seccomp filter (%d)", rc);
    return SL_OK;
}

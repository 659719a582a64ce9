/*
 * gateway/gw_keys.c: the master key versions a gateway holds, and the key helper.
 *
 * The gateway runs unprivileged; DIR/keys belongs to the user that started it (root),
 * so that neither the gateway's user nor PostgreSQL (run by the same user) can read or
 * replace a master key file. Rotation still has to write one: before dropping
 * privileges, serve forks a helper that keeps them and does exactly two things on
 * request over a socket pair: make master.N.key (new random bytes, O_EXCL, fsynced),
 * answering with the key; and remove master.N.key. Privilege separation in the manner
 * of OpenBSD's daemons: the part that keeps privileges is small enough to read whole.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"

/* Requests and answers of the key helper: fixed-size records. */
typedef struct {
    char op; /* 'N' make, 'R' remove */
    int version;
} keyd_req;

typedef struct {
    int ok;
    unsigned char key[SL_MASTER_KEY_BYTES];
} keyd_ans;

void
gw_master_wrap(gw_keys *k, const char *aad, const unsigned char *plain, size_t n,
               unsigned char *out, int *version)
{
    pthread_mutex_lock(&k->lock);
    cry_wrap(k->master, aad, plain, n, out);
    *version = k->master_version;
    pthread_mutex_unlock(&k->lock);
}

void
gw_master_wrap_with(gw_keys *k, int version, const char *aad, const unsigned char *plain, size_t n,
                    unsigned char *out)
{
    int i;

    pthread_mutex_lock(&k->lock);
    for (i = 0; i < k->nmasters && k->masters[i].version != version; i++)
        ;
    if (i == k->nmasters)
        sl_panic("master key version %d is not held", version);
    cry_wrap(k->masters[i].key, aad, plain, n, out);
    pthread_mutex_unlock(&k->lock);
}

sl_code
gw_master_unwrap(gw_keys *k, int version, const char *aad, const unsigned char *in, size_t n,
                 cry_key **out)
{
    sl_code rc = SL_EINVALID;
    int i;

    *out = NULL;
    pthread_mutex_lock(&k->lock);
    for (i = 0; i < k->nmasters; i++)
        if (k->masters[i].version == version) {
            rc = cry_unwrap(k->masters[i].key, aad, in, n, out);
            break;
        }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

static int
full_io(int fd, void *p, size_t n, int writing)
{
    size_t off = 0;

    while (off < n) {
        ssize_t r =
            writing ? write(fd, (char *)p + off, n - off) : read(fd, (char *)p + off, n - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        off += (size_t)r;
    }
    return 1;
}

static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ok = fd >= 0 && fsync(fd) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

/* The helper's loop: runs until the gateway closes its end or dies. */
static void
keyd_main(int fd, const char *data_dir)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    keyd_req q;
    keyd_ans a;

    snprintf(dir, sizeof dir, "%s/keys", data_dir);
    while (full_io(fd, &q, sizeof q, 0)) {
        memset(&a, 0, sizeof a);
        if (q.version >= 1 && q.version <= 1000000) {
            snprintf(path, sizeof path, "%s/master.%d.key", dir, q.version);
            if (q.op == 'N') {
                int kf = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (kf >= 0) {
                    randombytes_buf(a.key, sizeof a.key);
                    a.ok = full_io(kf, a.key, sizeof a.key, 1) && fsync(kf) == 0;
                    a.ok = close(kf) == 0 && a.ok && fsync_dir(dir);
                    if (!a.ok)
                        unlink(path);
                }
            } else if (q.op == 'R') {
                a.ok = unlink(path) == 0 && fsync_dir(dir);
            }
        }
        if (!a.ok)
            sodium_memzero(a.key, sizeof a.key);
        if (!full_io(fd, &a, sizeof a, 1))
            break;
        sodium_memzero(&a, sizeof a);
    }
    _exit(0);
}

sl_code
gw_keyd_start(const gw_config *cfg, gw_keys *k, sl_err *err)
{
    int sv[2];
    pid_t pid, parent;

    k->keyd_fd = -1;
    if (k->master_from_env)
        return SL_OK; /* nothing on disk to rotate */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return sl_err_set(err, SL_EIO, "could not start the key helper: %s", strerror(errno));
    parent = getpid();
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return sl_err_set(err, SL_EIO, "could not start the key helper: %s", strerror(errno));
    }
    if (pid == 0) {
        /* the helper: only its socket stays open; it dies with the gateway */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "sluice-keyd");
        if (getppid() != parent) /* the gateway died before the line above */
            _exit(0);
        if (dup2(sv[1], 3) < 0)
            _exit(1);
        close_range(4, ~0U, 0);
        signal(SIGINT, SIG_IGN); /* the gateway stops it by closing the socket */
        signal(SIGTERM, SIG_IGN);
        keyd_main(3, cfg->data_dir);
    }
    close(sv[1]);
    k->keyd_fd = sv[0];
    return SL_OK;
}

void
gw_keyd_stop(gw_keys *k)
{
    if (k->keyd_fd >= 0) {
        close(k->keyd_fd); /* the helper reads end of file and exits */
        k->keyd_fd = -1;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}

/* One request to the helper, under the ring's lock (one at a time). */
static int
keyd_call(gw_keys *k, char op, int version, keyd_ans *a)
{
    keyd_req q;

    memset(&q, 0, sizeof q);
    q.op = op;
    q.version = version;
    return k->keyd_fd >= 0 && full_io(k->keyd_fd, &q, sizeof q, 1) &&
           full_io(k->keyd_fd, a, sizeof *a, 0) && a->ok;
}

sl_code
gw_master_create(gw_keys *k, int *version, sl_err *err)
{
    keyd_ans a;
    sl_code rc = SL_OK;
    int i, v = 0;

    pthread_mutex_lock(&k->lock);
    if (k->master_from_env) {
        rc = sl_err_set(err, SL_ECONFLICT,
                        "the master key comes from SLUICE_MASTER_KEY; rotate it outside sluice");
    } else if (k->nmasters == GW_MAX_MASTERS) {
        rc = sl_err_set(err, SL_ECONFLICT, "%d master key versions are still in use",
                        GW_MAX_MASTERS);
    } else {
        for (i = 0; i < k->nmasters; i++)
            v = k->masters[i].version > v ? k->masters[i].version : v;
        v++;
        memset(&a, 0, sizeof a);
        if (!keyd_call(k, 'N', v, &a)) {
            rc = sl_err_set(err, SL_EUNAVAIL, "the new master key could not be written");
        } else {
            k->masters[k->nmasters].version = v;
            k->masters[k->nmasters].key = cry_key_dup(a.key, sizeof a.key);
            k->nmasters++;
            *version = v;
        }
        sodium_memzero(&a, sizeof a);
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

int
gw_master_current(gw_keys *k)
{
    int v;

    pthread_mutex_lock(&k->lock);
    v = k->master_version;
    pthread_mutex_unlock(&k->lock);
    return v;
}

void
gw_master_activate(gw_keys *k, int version)
{
    int i;

    pthread_mutex_lock(&k->lock);
    for (i = 0; i < k->nmasters; i++)
        if (k->masters[i].version == version) {
            k->master = k->masters[i].key;
            k->master_version = version;
        }
    pthread_mutex_unlock(&k->lock);
}

sl_code
gw_master_retire(gw_keys *k, int version, sl_err *err)
{
    keyd_ans a;
    sl_code rc = SL_OK;
    int i;

    pthread_mutex_lock(&k->lock);
    for (i = 0; i < k->nmasters; i++)
        if (k->masters[i].version == version && version != k->master_version)
            break;
    if (i == k->nmasters) {
        pthread_mutex_unlock(&k->lock);
        return SL_OK;
    }
    memset(&a, 0, sizeof a);
    if (!keyd_call(k, 'R', version, &a))
        rc = sl_err_set(err, SL_EUNAVAIL, "master key version %d could not be removed", version);
    cry_key_free(k->masters[i].key);
    k->masters[i] = k->masters[k->nmasters - 1];
    k->nmasters--;
    pthread_mutex_unlock(&k->lock);
    return rc;
}

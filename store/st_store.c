/*
 * store/st_store.c: chunks in the storage directories. Write: pack (igzip where it
 * pays), seal (AES-256-GCM, the place as AAD), split (Reed-Solomon) and write one
 * fragment per directory, fsynced. Read: gather, rebuild past missing or damaged
 * fragments, open, unpack. Layout: DIR/<dataset>/<version>/<group>.<column>.frag.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "st.h"
#include "st_int.h"

/* Sealed chunks never exceed this (the encoded limit plus packing and sealing). */
#define MAX_SEALED (SL_MAX_CHUNK_BYTES + ST_PACK_HEAD + CRY_SEAL_OVERHEAD)

struct st_storage {
    char **dirs;
    int n, parity;
};

sl_code
st_storage_new(const char *const *dirs, int ndirs, int parity, st_storage **out, sl_err *err)
{
    st_storage *s;
    int i;

    *out = NULL;
    if (ndirs < 1 || ndirs > ST_MAX_FRAGMENTS || parity < 0 || parity >= ndirs)
        return sl_err_set(err, SL_EINVALID,
                          "storage needs 1 to %d directories and fewer parity fragments than "
                          "directories",
                          ST_MAX_FRAGMENTS);
    for (i = 0; i < ndirs; i++)
        if (dirs[i][0] != '/' || strlen(dirs[i]) > PATH_MAX - 128)
            return sl_err_set(err, SL_EINVALID, "storage directories must be absolute paths");
    s = sl_xcalloc(1, sizeof *s);
    s->dirs = sl_xcalloc((size_t)ndirs, sizeof *s->dirs);
    for (i = 0; i < ndirs; i++)
        s->dirs[i] = sl_xstrdup(dirs[i]);
    s->n = ndirs;
    s->parity = parity;
    *out = s;
    return SL_OK;
}

void
st_storage_free(st_storage *s)
{
    int i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++)
        free(s->dirs[i]);
    free(s->dirs);
    free(s);
}

/* AAD: a domain string, then the place's fields little-endian. */
#define AAD_BYTES (16 + 8 + 8 + 4 + 4 + 4)
static void
aad_of(const st_place *pl, unsigned char out[AAD_BYTES])
{
    static const char domain[16] = "sluice-chunk-v1";
    uint64_t f[2] = {(uint64_t)pl->dataset, (uint64_t)pl->version};
    uint32_t g[3] = {pl->group, pl->column, pl->key_version};
    size_t o = 16, i, b;

    memcpy(out, domain, 16);
    for (i = 0; i < 2; i++)
        for (b = 0; b < 8; b++)
            out[o++] = (unsigned char)(f[i] >> (8 * b));
    for (i = 0; i < 3; i++)
        for (b = 0; b < 4; b++)
            out[o++] = (unsigned char)(g[i] >> (8 * b));
}

static void
version_dir(const st_storage *s, int i, int64_t ds, int64_t ver, char *out, size_t n)
{
    snprintf(out, n, "%s/%lld/%lld", s->dirs[i], (long long)ds, (long long)ver);
}

static void
chunk_path(const st_storage *s, int i, const st_place *pl, char *out, size_t n)
{
    snprintf(out, n, "%s/%lld/%lld/%u.%u.frag", s->dirs[i], (long long)pl->dataset,
             (long long)pl->version, pl->group, pl->column);
}

static sl_code
mkdirs(const char *base, int64_t ds, int64_t ver, sl_err *err)
{
    char p[PATH_MAX];

    snprintf(p, sizeof p, "%s/%lld", base, (long long)ds);
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return sl_err_set(err, SL_EIO, "could not create a storage directory: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/%lld/%lld", base, (long long)ds, (long long)ver);
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return sl_err_set(err, SL_EIO, "could not create a storage directory: %s", strerror(errno));
    return SL_OK;
}

void *
st_io_alloc(size_t n)
{
    void *p = NULL;
    size_t size = n > 0 ? n : 1;

    if (size > SIZE_MAX - ST_IO_ALIGN)
        sl_panic("an I/O buffer of %zu bytes", n);
    size = (size + ST_IO_ALIGN - 1) & ~(size_t)(ST_IO_ALIGN - 1);
    if (posix_memalign(&p, ST_IO_ALIGN, size) != 0)
        sl_panic("out of memory for an I/O buffer of %zu bytes", size);
    return p;
}

/* Opens with direct I/O where the file system has it (*direct 1), else without. */
static int
open_direct(const char *path, int flags, int *direct)
{
    int fd = open(path, flags | O_DIRECT, 0600);

    *direct = fd >= 0;
    if (fd < 0 && errno == EINVAL) /* no direct I/O here (tmpfs) */
        fd = open(path, flags, 0600);
    return fd;
}

/* Turns direct I/O off for the rest of a file (its unaligned tail). */
static int
direct_off(int fd, int *direct)
{
    int fl = fcntl(fd, F_GETFL);

    if (!*direct)
        return 0;
    *direct = 0;
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_DIRECT);
}

/*
 * Writes a fragment file. durable: to a temporary name, fsynced, then renamed over the
 * path (a live version's fragment being repaired is never seen half written). Not
 * durable: straight to the path, for an upload, whose fragments nobody reads before
 * st_storage_sync has made them all durable at once and the version is committed.
 *
 * The whole blocks of an aligned buffer go by direct I/O: fragments are written once
 * and read rarely, and copying them into the page cache cost more than everything else
 * an upload's writer does on a virtual machine (fresh page-cache pages are slow to
 * get); the tail is written through the cache. Durability is unchanged: a direct write
 * may sit in the device's cache until the fsync or syncfs that follows flushes it.
 */
static sl_code
write_file(const char *path, const unsigned char *p, size_t n, int durable, sl_err *err)
{
    char tmp[PATH_MAX + 8];
    size_t off = 0;
    int fd, direct;

    if (durable)
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
    else
        snprintf(tmp, sizeof tmp, "%s", path);
    fd = open_direct(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, &direct);
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(errno));
    if (direct && ((uintptr_t)p % ST_IO_ALIGN != 0 || n < ST_IO_ALIGN) && direct_off(fd, &direct))
        goto fail;
    while (off < n) {
        size_t want = n - off;
        ssize_t w;
        if (direct && want < ST_IO_ALIGN && direct_off(fd, &direct) != 0)
            goto fail;
        if (direct)
            want &= ~(size_t)(ST_IO_ALIGN - 1);
        w = write(fd, p + off, want);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && direct) { /* the device wants other alignment */
            if (direct_off(fd, &direct) != 0)
                goto fail;
            continue;
        }
        if (w == 0)
            errno = EIO;
        if (w <= 0)
            goto fail;
        off += (size_t)w;
    }
    if (!durable) {
        if (close(fd) != 0) {
            int e = errno;
            unlink(tmp);
            return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(e));
        }
        return SL_OK;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(e));
    }
    return SL_OK;
fail : {
    int e = errno;
    close(fd);
    unlink(tmp);
    return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(e));
}
}

static sl_code chunk_write(const st_storage *s, const st_place *pl, const cry_key *key,
                           const unsigned char *raw, size_t n, int durable, int try_compress,
                           st_chunk_info *info, sl_err *err);

sl_code
st_chunk_write(const st_storage *s, const st_place *pl, const cry_key *key,
               const unsigned char *raw, size_t n, st_chunk_info *info, sl_err *err)
{
    return chunk_write(s, pl, key, raw, n, 1, 1, info, err);
}

sl_code
st_chunk_put(const st_storage *s, const st_place *pl, const cry_key *key, const unsigned char *raw,
             size_t n, int try_compress, st_chunk_info *info, sl_err *err)
{
    return chunk_write(s, pl, key, raw, n, 0, try_compress, info, err);
}

static sl_code
chunk_write(const st_storage *s, const st_place *pl, const cry_key *key, const unsigned char *raw,
            size_t n, int durable, int try_compress, st_chunk_info *info, sl_err *err)
{
    unsigned char aad[AAD_BYTES], *sealed = NULL;
    st_frag frags[ST_MAX_FRAGMENTS];
    char path[PATH_MAX];
    sl_buf packed;
    sl_code rc;
    int i, k = s->n - s->parity;

    memset(info, 0, sizeof *info);
    memset(frags, 0, sizeof frags);
    if (n > SL_MAX_CHUNK_BYTES)
        return sl_err_set(err, SL_ETOOLARGE, "a column chunk is larger than the limit");
    sl_buf_init_wiped(&packed, (size_t)SL_MAX_CHUNK_BYTES + ST_PACK_HEAD);
    if ((rc = st_pack(raw, n, try_compress, &packed, &info->compressed)) != SL_OK) {
        sl_err_set(err, rc, "a column chunk is larger than the limit");
        goto out;
    }
    /* the plaintext stays in memory: only the sealed form is split and written */
    sealed = sl_xmalloc(packed.len + CRY_SEAL_OVERHEAD);
    aad_of(pl, aad);
    if ((rc = cry_seal(key, aad, sizeof aad, (unsigned char *)packed.data, packed.len, sealed)) !=
        SL_OK) {
        sl_err_set(err, SL_EINTERNAL, "could not seal a chunk");
        goto out;
    }
    if ((rc = st_frag_split(sealed, packed.len + CRY_SEAL_OVERHEAD, k, s->parity, frags)) !=
        SL_OK) {
        sl_err_set(err, rc, "could not split a chunk");
        goto out;
    }
    for (i = 0; i < s->n; i++) {
        if ((rc = mkdirs(s->dirs[i], pl->dataset, pl->version, err)) != SL_OK)
            goto out;
        chunk_path(s, i, pl, path, sizeof path);
        if ((rc = write_file(path, frags[i].p, frags[i].n, durable, err)) != SL_OK)
            goto out;
        info->stored += frags[i].n;
    }
    info->raw = n;
    rc = SL_OK;
out:
    for (i = 0; i < s->n; i++)
        free(frags[i].p);
    if (packed.data != NULL)
        sodium_memzero(packed.data, packed.len);
    sl_buf_free(&packed);
    free(sealed);
    return rc;
}

sl_code
st_storage_watch(const st_storage *s, int *fds, sl_err *err)
{
    int i;

    for (i = 0; i < ST_MAX_FRAGMENTS; i++)
        fds[i] = -1;
    for (i = 0; i < s->n; i++)
        if ((fds[i] = open(s->dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            int e = errno;
            st_storage_unwatch(fds);
            return sl_err_set(err, SL_EIO, "could not open storage directory %s: %s", s->dirs[i],
                              strerror(e));
        }
    return SL_OK;
}

void
st_storage_unwatch(int *fds)
{
    int i;

    for (i = 0; i < ST_MAX_FRAGMENTS; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* fsyncs a directory by path. */
static sl_code
sync_dir(const char *p, sl_err *err)
{
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return sl_err_set(err, SL_EIO, "could not sync a storage directory: %s", strerror(e));
    }
    close(fd);
    return SL_OK;
}

sl_code
st_storage_sync(const st_storage *s, int64_t dataset, int64_t version, const int *watch,
                sl_err *err)
{
    char p[PATH_MAX];
    sl_code rc;
    int i;

    for (i = 0; i < s->n; i++) {
        /* the file system's whole writeback at once, through a descriptor opened before
         * the fragments were written: syncfs reports a write error that happened since
         * that descriptor was opened (Linux 5.8+), even if something else saw it first */
        if (watch != NULL && syncfs(watch[i]) != 0)
            return sl_err_set(err, SL_EIO, "could not sync storage directory %s: %s", s->dirs[i],
                              strerror(errno));
        /* then the entries: the version's files, its directory, the dataset's */
        version_dir(s, i, dataset, version, p, sizeof p);
        if ((rc = sync_dir(p, err)) != SL_OK)
            return rc;
        snprintf(p, sizeof p, "%s/%lld", s->dirs[i], (long long)dataset);
        if ((rc = sync_dir(p, err)) != SL_OK || (rc = sync_dir(s->dirs[i], err)) != SL_OK)
            return rc;
    }
    return SL_OK;
}

/* A fragment file, whole, at most max bytes, in an st_io_alloc'd buffer; NULL when absent
 * or unreadable. By direct I/O where it works (whole blocks: a read past the end stops
 * there), so that reading a version does not fill the page cache with fragments. */
static unsigned char *
read_file(const char *path, size_t max, size_t *len)
{
    struct stat st;
    unsigned char *p;
    size_t off = 0, size;
    int direct, fd = open_direct(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, &direct);

    *len = 0;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return NULL;
    }
    size = (size_t)st.st_size;
    p = st_io_alloc(size + 1); /* room for a whole last block, and one byte to see the end */
    while (off < size) {
        size_t want = size - off;
        ssize_t r;
        if (direct) /* whole blocks, the last one past the end */
            want = (want + ST_IO_ALIGN - 1) & ~(size_t)(ST_IO_ALIGN - 1);
        r = read(fd, p + off, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EINVAL && direct) {
            if (direct_off(fd, &direct) != 0)
                break;
            continue;
        }
        if (r <= 0)
            break;
        off += (size_t)r;
        if (direct && (size_t)r % ST_IO_ALIGN != 0 && off < size && direct_off(fd, &direct) != 0)
            break;
    }
    close(fd);
    if (off != size) { /* shorter than it said, or longer (changed while read) */
        free(p);
        return NULL;
    }
    *len = off;
    return p;
}

/* Empties a plaintext buffer, wiping what it held. */
static void
plain_wipe(sl_buf *plain)
{
    if (plain->data != NULL)
        sodium_memzero(plain->data, plain->len);
    sl_buf_reset(plain);
}

/* Opens a sealed chunk of n bytes into plain (its packed plaintext); 0 or -1. */
static int
open_into(const cry_key *key, const unsigned char *aad, const unsigned char *in, size_t n,
          sl_buf *plain)
{
    unsigned char *dst;

    plain_wipe(plain);
    if (n < CRY_SEAL_OVERHEAD || sl_buf_extend(plain, n - CRY_SEAL_OVERHEAD, &dst) != SL_OK)
        return -1;
    if (cry_open(key, aad, AAD_BYTES, in, n, dst) != SL_OK) {
        plain_wipe(plain); /* what was opened before the tag failed */
        return -1;
    }
    return 0;
}

/*
 * Gathers a chunk's fragments, rebuilds and opens it: the packed plaintext in plain
 * (reset first; the caller wipes it), and the sealed form in sealed unless the chunk is
 * one intact fragment (opened where it was read; nothing to rebuild). Fragments that are
 * missing or fail their CRC are set aside by the join; fragments that pass their CRC
 * but make a chunk that does not authenticate (swapped or replayed files) are found by
 * leaving out one, then two, at a time, as parity allows. *bad gets a bit per fragment
 * set aside.
 */
static sl_code
gather_open(const st_storage *s, const st_place *pl, const cry_key *key, sl_buf *sealed,
            sl_buf *plain, uint32_t *bad, sl_err *err)
{
    unsigned char aad[AAD_BYTES];
    st_frag frags[ST_MAX_FRAGMENTS];
    char path[PATH_MAX];
    size_t max_frag = MAX_SEALED / (size_t)(s->n - s->parity) + 1 + ST_FRAG_HEAD;
    int i, a, b, k = s->n - s->parity, joined = 0;
    sl_code rc = SL_EUNAVAIL;

    *bad = 0;
    sl_buf_reset(sealed);
    memset(frags, 0, sizeof frags);
    for (i = 0; i < s->n; i++) {
        chunk_path(s, i, pl, path, sizeof path);
        frags[i].p = read_file(path, max_frag, &frags[i].n);
    }
    aad_of(pl, aad);
    /* one fragment, no parity: the sealed chunk is its payload */
    if (s->n == 1 && st_frag_check(frags[0].p, frags[0].n, 1, 0, 0) &&
        st_rd32(frags[0].p + 8) == frags[0].n - ST_FRAG_HEAD &&
        open_into(key, aad, frags[0].p + ST_FRAG_HEAD, frags[0].n - ST_FRAG_HEAD, plain) == 0)
        rc = SL_OK;
    /* a = b = -1: all fragments; then each one left out; then each pair (parity >= 2) */
    for (a = -1; a < s->n && rc != SL_OK; a++) {
        /* b = -1: a alone; then a with each b after it */
        for (b = -1; b < (a < 0 ? 0 : s->n) && rc != SL_OK; b = b < 0 && a >= 0 ? a + 1 : b + 1) {
            st_frag use[ST_MAX_FRAGMENTS];
            uint32_t set_aside = 0;
            if ((a >= 0 && (frags[a].p == NULL || s->parity < 1)) ||
                (b >= 0 && (frags[b].p == NULL || s->parity < 2)))
                continue;
            memcpy(use, frags, sizeof use);
            if (a >= 0)
                use[a].p = NULL;
            if (b >= 0)
                use[b].p = NULL;
            sl_buf_reset(sealed);
            if (st_frag_join(use, k, s->parity, sealed, &set_aside) != SL_OK)
                continue;
            joined = 1;
            if (open_into(key, aad, (unsigned char *)sealed->data, sealed->len, plain) != 0)
                continue;
            *bad = set_aside | (a >= 0 ? 1u << a : 0) | (b >= 0 ? 1u << b : 0);
            rc = SL_OK;
        }
    }
    for (i = 0; i < s->n; i++)
        free(frags[i].p);
    if (rc != SL_OK) {
        if (!joined)
            sl_err_set(err, SL_EUNAVAIL,
                       "a chunk cannot be read: too many of its fragments are missing or "
                       "damaged");
        else
            sl_err_set(err, SL_EUNAVAIL,
                       "a chunk does not authenticate (changed, moved or from another version)");
    }
    return rc;
}

void
st_chunkbuf_init(st_chunkbuf *b)
{
    sl_buf_init(&b->sealed, MAX_SEALED);
    sl_buf_init_wiped(&b->plain, MAX_SEALED);
    sl_buf_init_wiped(&b->raw, SL_MAX_CHUNK_BYTES);
}

void
st_chunkbuf_free(st_chunkbuf *b)
{
    plain_wipe(&b->plain);
    plain_wipe(&b->raw);
    sl_buf_free(&b->sealed);
    sl_buf_free(&b->plain);
    sl_buf_free(&b->raw);
}

sl_code
st_chunk_load(const st_storage *s, const st_place *pl, const cry_key *key, st_chunkbuf *b,
              const unsigned char **raw, size_t *n, uint32_t *bad, sl_err *err)
{
    sl_code rc;

    *raw = NULL;
    *n = 0;
    plain_wipe(&b->raw);
    if ((rc = gather_open(s, pl, key, &b->sealed, &b->plain, bad, err)) != SL_OK)
        return rc;
    if (st_unpack_view((unsigned char *)b->plain.data, b->plain.len, SL_MAX_CHUNK_BYTES, &b->raw,
                       raw, n) != SL_OK)
        return sl_err_set(err, SL_EUNAVAIL, "a chunk authenticates but does not unpack");
    return SL_OK;
}

sl_code
st_chunk_read(const st_storage *s, const st_place *pl, const cry_key *key, sl_buf *raw,
              uint32_t *bad, sl_err *err)
{
    const unsigned char *p;
    size_t n;
    st_chunkbuf b;
    sl_code rc;

    /* the read path's own load, then one copy out of its buffers */
    st_chunkbuf_init(&b);
    rc = st_chunk_load(s, pl, key, &b, &p, &n, bad, err);
    if (rc == SL_OK && sl_buf_append(raw, p, n) != SL_OK)
        rc = sl_err_set(err, SL_ETOOLARGE, "a chunk is larger than the buffer given");
    st_chunkbuf_free(&b);
    return rc;
}

sl_code
st_chunk_scrub(const st_storage *s, const st_place *pl, const cry_key *key, uint32_t *repaired,
               sl_err *err)
{
    st_frag frags[ST_MAX_FRAGMENTS];
    char path[PATH_MAX];
    uint32_t bad = 0;
    sl_buf sealed, plain;
    sl_code rc;
    int i;

    *repaired = 0;
    memset(frags, 0, sizeof frags);
    sl_buf_init(&sealed, MAX_SEALED);
    sl_buf_init_wiped(&plain, MAX_SEALED);
    rc = gather_open(s, pl, key, &sealed, &plain, &bad, err);
    plain_wipe(&plain);
    sl_buf_free(&plain);
    if (rc != SL_OK || bad == 0)
        goto out;
    /* the same sealed bytes split the same way: the set-aside fragments made anew */
    if ((rc = st_frag_split((unsigned char *)sealed.data, sealed.len, s->n - s->parity, s->parity,
                            frags)) != SL_OK) {
        sl_err_set(err, rc, "could not split a chunk");
        goto out;
    }
    for (i = 0; i < s->n; i++) {
        if (!(bad & (1u << i)))
            continue;
        if ((rc = mkdirs(s->dirs[i], pl->dataset, pl->version, err)) != SL_OK)
            goto out;
        chunk_path(s, i, pl, path, sizeof path);
        if ((rc = write_file(path, frags[i].p, frags[i].n, 1, err)) != SL_OK)
            goto out;
        *repaired |= 1u << i;
    }
    rc = st_storage_sync(s, pl->dataset, pl->version, NULL, err); /* fragments fsynced */
out:
    for (i = 0; i < s->n; i++)
        free(frags[i].p);
    sl_buf_free(&sealed);
    return rc;
}

/* Removes a directory's regular files and then the directory (one level). */
static int
remove_dir(const char *path)
{
    char p[PATH_MAX + 300];
    struct dirent *d;
    DIR *dh = opendir(path);
    int ok = 1;

    if (dh == NULL)
        return errno == ENOENT;
    while ((d = readdir(dh)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", path, d->d_name);
        if (unlink(p) != 0 && errno != ENOENT)
            ok = 0;
    }
    closedir(dh);
    if (rmdir(path) != 0 && errno != ENOENT)
        ok = 0;
    return ok;
}

sl_code
st_version_remove(const st_storage *s, int64_t dataset, int64_t version, sl_err *err)
{
    char p[PATH_MAX];
    int i, ok = 1;

    for (i = 0; i < s->n; i++) {
        version_dir(s, i, dataset, version, p, sizeof p);
        ok &= remove_dir(p);
        /* the dataset's directory goes when it is empty (ENOTEMPTY otherwise: kept) */
        snprintf(p, sizeof p, "%s/%lld", s->dirs[i], (long long)dataset);
        (void)rmdir(p);
    }
    if (!ok)
        return sl_err_set(err, SL_EIO, "some fragments of a removed version could not be deleted");
    return SL_OK;
}

sl_code
st_version_tidy(const st_storage *s, int64_t dataset, int64_t version, sl_err *err)
{
    char dir[PATH_MAX], p[PATH_MAX + 300];
    struct dirent *d;
    int i, ok = 1;

    for (i = 0; i < s->n; i++) {
        DIR *dh;
        version_dir(s, i, dataset, version, dir, sizeof dir);
        if ((dh = opendir(dir)) == NULL)
            continue;
        while ((d = readdir(dh)) != NULL) {
            size_t n = strlen(d->d_name);
            if (n < 4 || strcmp(d->d_name + n - 4, ".tmp") != 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, d->d_name);
            if (unlink(p) != 0 && errno != ENOENT)
                ok = 0;
        }
        closedir(dh);
    }
    if (!ok)
        return sl_err_set(err, SL_EIO, "a temporary fragment could not be removed");
    return SL_OK;
}

/* A directory entry that is a decimal number >= 1 (a dataset or version id). */
static int
entry_id(const char *name, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (name[0] < '1' || name[0] > '9' || strlen(name) > 18)
        return 0;
    for (i = 0; name[i] != '\0'; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (name[i] - '0');
    }
    *out = v;
    return 1;
}

sl_code
st_versions_each(const st_storage *s, int (*fn)(void *ctx, int64_t dataset, int64_t version),
                 void *ctx, sl_err *err)
{
    char p[PATH_MAX + 300];
    struct dirent *d, *e;
    int i;

    for (i = 0; i < s->n; i++) {
        DIR *top = opendir(s->dirs[i]);
        if (top == NULL) {
            if (errno == ENOENT)
                continue; /* a lost directory: reads rebuild, scrub restores */
            return sl_err_set(err, SL_EIO, "could not read storage directory %s: %s", s->dirs[i],
                              strerror(errno));
        }
        while ((d = readdir(top)) != NULL) {
            int64_t ds, ver;
            DIR *sub;
            if (!entry_id(d->d_name, &ds))
                continue;
            snprintf(p, sizeof p, "%s/%s", s->dirs[i], d->d_name);
            if ((sub = opendir(p)) == NULL)
                continue;
            while ((e = readdir(sub)) != NULL)
                if (entry_id(e->d_name, &ver) && !fn(ctx, ds, ver))
                    break;
            closedir(sub);
        }
        closedir(top);
    }
    return SL_OK;
}

sl_code
st_storage_prepare(const st_storage *s, sl_err *err)
{
    int i;

    for (i = 0; i < s->n; i++)
        if (mkdir(s->dirs[i], 0700) != 0 && errno != EEXIST)
            return sl_err_set(err, SL_EIO, "could not create storage directory %s: %s", s->dirs[i],
                              strerror(errno));
    return SL_OK;
}

/*
 * store/st_store.c: chunks in the storage directories. Write: pack (igzip where it
 * pays), seal (AES-256-GCM, the place as AAD), split (Reed-Solomon) and write one
 * fragment per directory, fsynced. Read: gather, rebuild past missing or damaged
 * fragments, open, unpack. Layout: DIR/<dataset>/<version>/<group>.<column>.frag.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "st.h"

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

static sl_code
write_file(const char *path, const unsigned char *p, size_t n, sl_err *err)
{
    char tmp[PATH_MAX + 8];
    size_t off = 0;
    int fd;

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(errno));
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sl_err_set(err, SL_EIO, "could not write a fragment: %s", strerror(e));
    }
    return SL_OK;
}

sl_code
st_chunk_write(const st_storage *s, const st_place *pl, const cry_key *key,
               const unsigned char *raw, size_t n, st_chunk_info *info, sl_err *err)
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
    sl_buf_init(&packed, (size_t)SL_MAX_CHUNK_BYTES + ST_PACK_HEAD);
    if ((rc = st_pack(raw, n, &packed, &info->compressed)) != SL_OK) {
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
        if ((rc = write_file(path, frags[i].p, frags[i].n, err)) != SL_OK)
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
st_storage_sync(const st_storage *s, int64_t dataset, int64_t version, sl_err *err)
{
    char p[PATH_MAX];
    int i, fd;

    for (i = 0; i < s->n; i++) {
        version_dir(s, i, dataset, version, p, sizeof p);
        fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return sl_err_set(err, SL_EIO, "could not sync a storage directory: %s", strerror(e));
        }
        close(fd);
        /* and the dataset's directory, which holds the version's entry */
        snprintf(p, sizeof p, "%s/%lld", s->dirs[i], (long long)dataset);
        fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return sl_err_set(err, SL_EIO, "could not sync a storage directory: %s", strerror(e));
        }
        close(fd);
    }
    return SL_OK;
}

/* A fragment file, whole, at most max bytes; NULL when absent or unreadable. */
static unsigned char *
read_file(const char *path, size_t max, size_t *len)
{
    struct stat st;
    unsigned char *p;
    size_t off = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    *len = 0;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return NULL;
    }
    p = sl_xmalloc((size_t)st.st_size ? (size_t)st.st_size : 1);
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, p + off, (size_t)st.st_size - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    close(fd);
    if (off != (size_t)st.st_size) {
        free(p);
        return NULL;
    }
    *len = off;
    return p;
}

sl_code
st_chunk_read(const st_storage *s, const st_place *pl, const cry_key *key, sl_buf *raw,
              uint32_t *bad, sl_err *err)
{
    unsigned char aad[AAD_BYTES], *packed = NULL;
    st_frag frags[ST_MAX_FRAGMENTS];
    char path[PATH_MAX];
    sl_buf sealed;
    size_t max_frag = MAX_SEALED / (size_t)(s->n - s->parity) + 1 + ST_FRAG_HEAD;
    sl_code rc = SL_EUNAVAIL;
    int i;

    *bad = 0;
    memset(frags, 0, sizeof frags);
    for (i = 0; i < s->n; i++) {
        chunk_path(s, i, pl, path, sizeof path);
        frags[i].p = read_file(path, max_frag, &frags[i].n);
    }
    sl_buf_init(&sealed, MAX_SEALED);
    if (st_frag_join(frags, s->n - s->parity, s->parity, &sealed, bad) != SL_OK) {
        sl_err_set(err, SL_EUNAVAIL,
                   "a chunk cannot be read: too many of its fragments are "
                   "missing or damaged");
        goto out;
    }
    if (sealed.len < CRY_SEAL_OVERHEAD)
        goto corrupt;
    packed = sl_xmalloc(sealed.len - CRY_SEAL_OVERHEAD + 1);
    aad_of(pl, aad);
    if (cry_open(key, aad, sizeof aad, (unsigned char *)sealed.data, sealed.len, packed) != SL_OK)
        goto corrupt;
    if (st_unpack(packed, sealed.len - CRY_SEAL_OVERHEAD, SL_MAX_CHUNK_BYTES, raw) != SL_OK)
        goto corrupt;
    rc = SL_OK;
    goto out;
corrupt:
    sl_err_set(err, SL_EUNAVAIL,
               "a chunk does not authenticate (changed, moved or from another version)");
out:
    if (packed != NULL) {
        sodium_memzero(packed,
                       sealed.len >= CRY_SEAL_OVERHEAD ? sealed.len - CRY_SEAL_OVERHEAD : 0);
        free(packed);
    }
    for (i = 0; i < s->n; i++)
        free(frags[i].p);
    sl_buf_free(&sealed);
    return rc;
}

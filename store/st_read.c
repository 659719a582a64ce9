/*
 * store/st_read.c: a version read back, a row group at a time: the projected columns'
 * chunks are read (rebuilt from parity where needed), decoded, sliced to the requested
 * rows and formatted. While one group is formatted and sent, a second thread reads and
 * decodes the next, so at most two groups of the projected columns are in memory.
 */
#include <malloc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"

struct st_reader {
    const st_storage *s;
    const cry_key *key;
    int64_t dataset, version;
    uint32_t key_version;
    st_out fmt;
    size_t ncols;
    size_t *cols;       /* manifest column index of each projected column */
    const char **names; /* borrowed from the manifest */
    st_type *types;
    st_column *data; /* the current group's projected columns */
    uint32_t *group_rows;
    size_t ngroups, group;
    uint64_t offset, remaining, seen; /* rows before the group about to be read */
    int begun;
    int loaded;   /* data holds group `group` */
    uint32_t pos; /* its next row to give */
    uint64_t rebuilt;
    /* the next group, read ahead by the prefetch thread into pre */
    pthread_t thread;
    int started, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t want;  /* the group asked for (SIZE_MAX: none) */
    size_t ready; /* the group pre holds (SIZE_MAX: none) */
    int pre_failed;
    sl_err pre_err;
    uint64_t pre_rebuilt;
    st_column *pre;
    /* each thread's buffers for reading chunks */
    st_chunkbuf io_main, io_pre;
};

static void
stop_prefetch(st_reader *r)
{
    if (!r->started)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    r->started = 0;
}

void
st_reader_free(st_reader *r)
{
    size_t i;
    int big;

    if (r == NULL)
        return;
    stop_prefetch(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    for (i = 0; i < r->ncols; i++) {
        st_column_wipe(&r->data[i]);
        st_column_wipe(&r->pre[i]);
    }
    st_chunkbuf_free(&r->io_main);
    st_chunkbuf_free(&r->io_pre);
    free(r->pre);
    free(r->cols);
    free(r->names);
    free(r->types);
    big = r->ngroups >= 4;
    free(r->data);
    free(r->group_rows);
    free(r);
    if (big)
        malloc_trim(0); /* a large read's groups, most from the read-ahead thread's arena */
}

uint64_t
st_reader_rebuilt(const st_reader *r)
{
    return r->rebuilt;
}

static sl_code
bad_manifest(sl_err *err)
{
    return sl_err_set(err, SL_EINTERNAL, "a version's manifest is malformed");
}

sl_code
st_reader_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
              uint32_t key_version, const json_t *manifest, const size_t *cols, size_t ncols,
              uint64_t offset, int64_t limit, st_out fmt, st_reader **out, sl_err *err)
{
    const json_t *mcols = json_object_get(manifest, "columns");
    const json_t *groups = json_object_get(manifest, "groups");
    uint64_t total = 0;
    st_reader *r;
    size_t i, all;

    *out = NULL;
    if (!json_is_array(mcols) || !json_is_array(groups) || json_array_size(mcols) == 0)
        return bad_manifest(err);
    all = json_array_size(mcols);
    r = sl_xcalloc(1, sizeof *r);
    r->s = s;
    r->key = key;
    r->dataset = dataset;
    r->version = version;
    r->key_version = key_version;
    r->fmt = fmt;
    r->ncols = ncols > 0 ? ncols : all;
    r->cols = sl_xcalloc(r->ncols, sizeof *r->cols);
    r->names = sl_xcalloc(r->ncols, sizeof *r->names);
    r->types = sl_xcalloc(r->ncols, sizeof *r->types);
    r->data = sl_xcalloc(r->ncols, sizeof *r->data);
    r->pre = sl_xcalloc(r->ncols, sizeof *r->pre);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    st_chunkbuf_init(&r->io_main);
    st_chunkbuf_init(&r->io_pre);
    r->want = r->ready = SIZE_MAX;
    for (i = 0; i < r->ncols; i++) {
        const json_t *c;
        const char *type;
        r->cols[i] = ncols > 0 ? cols[i] : i;
        if (r->cols[i] >= all)
            goto bad;
        c = json_array_get(mcols, r->cols[i]);
        r->names[i] = json_string_value(json_object_get(c, "name"));
        type = json_string_value(json_object_get(c, "type"));
        if (r->names[i] == NULL || type == NULL || st_type_parse(type, &r->types[i]) != SL_OK)
            goto bad;
        st_column_init(&r->data[i], r->types[i]);
        st_column_init(&r->pre[i], r->types[i]);
    }
    r->ngroups = json_array_size(groups);
    r->group_rows = sl_xcalloc(r->ngroups ? r->ngroups : 1, sizeof *r->group_rows);
    for (i = 0; i < r->ngroups; i++) {
        json_int_t n = json_integer_value(json_object_get(json_array_get(groups, i), "rows"));
        if (n < 0 || n > SL_ROWS_PER_GROUP)
            goto bad;
        r->group_rows[i] = (uint32_t)n;
        total += (uint64_t)n;
    }
    r->offset = offset;
    r->remaining = offset >= total ? 0 : total - offset;
    if (limit >= 0 && (uint64_t)limit < r->remaining)
        r->remaining = (uint64_t)limit;
    if (fmt == ST_OUT_NPY)
        for (i = 0; i < r->ncols; i++)
            if (r->types[i] == ST_STRING) {
                st_reader_free(r);
                return sl_err_set(err, SL_EINVALID,
                                  "npy holds numeric and bool columns only; choose them with "
                                  "columns=");
            }
    *out = r;
    return SL_OK;
bad:
    st_reader_free(r);
    return bad_manifest(err);
}

/* Reads a group's projected columns into cols (either thread; storage, key and the
 * reader's fixed fields are only read). 0, or -1 with err set. */
static int
read_group(const st_reader *r, size_t group, st_column *cols, st_chunkbuf *io, uint64_t *rebuilt,
           sl_err *err)
{
    uint32_t rows = r->group_rows[group];
    size_t i;

    for (i = 0; i < r->ncols; i++) {
        st_place pl = {r->dataset, r->version, (uint32_t)group, (uint32_t)r->cols[i],
                       r->key_version};
        const unsigned char *raw;
        size_t n;
        uint32_t bad;
        sl_code rc;
        /* decoded over the previous group's rows, in the same memory (wiped at the end) */
        rc = st_chunk_load(r->s, &pl, r->key, io, &raw, &n, &bad, err);
        *rebuilt += (uint64_t)__builtin_popcount(bad);
        if (rc == SL_OK && (st_column_decode_into(raw, n, &cols[i]) != SL_OK ||
                            cols[i].rows != rows || cols[i].type != r->types[i] ||
                            (r->fmt == ST_OUT_NPY && st_column_floats(&cols[i]) != SL_OK)))
            rc = sl_err_set(err, SL_EUNAVAIL, "a chunk does not decode as its manifest says");
        if (rc != SL_OK)
            return -1;
    }
    return 0;
}

static void *
prefetch_main(void *arg)
{
    st_reader *r = arg;
    st_column *dst;
    size_t g;
    sl_err err;
    uint64_t rebuilt;
    int rc;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && (r->want == SIZE_MAX || r->want == r->ready))
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop)
            break;
        g = r->want;
        dst = r->pre; /* not swapped while a group is being read into it */
        pthread_mutex_unlock(&r->mu);
        sl_err_clear(&err);
        rebuilt = 0;
        rc = read_group(r, g, dst, &r->io_pre, &rebuilt, &err);
        pthread_mutex_lock(&r->mu);
        r->ready = g;
        r->pre_failed = rc != 0;
        r->pre_err = err;
        r->pre_rebuilt = rebuilt;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Asks the prefetch thread for a group (started on first use; without it, nothing). */
static void
prefetch(st_reader *r, size_t group)
{
    if (!r->started) {
        if (pthread_create(&r->thread, NULL, prefetch_main, r) != 0)
            return; /* read it when it is needed instead */
        r->started = 1;
    }
    pthread_mutex_lock(&r->mu);
    r->want = group;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Makes r->data hold group r->group: the prefetched one when it is that, else read now;
 * then asks for the next group the read will need. */
static int
load_group(st_reader *r, sl_err *err)
{
    int taken = 0, rc = 0;
    uint32_t rows = r->group_rows[r->group];
    uint64_t left;

    if (r->started) {
        pthread_mutex_lock(&r->mu);
        while (r->want == r->group && r->ready != r->group)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->ready == r->group) {
            st_column *t = r->data;
            r->data = r->pre;
            r->pre = t;
            r->rebuilt += r->pre_rebuilt;
            if (r->pre_failed) {
                *err = r->pre_err;
                rc = -1;
            }
            r->ready = r->want = SIZE_MAX;
            taken = 1;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (!taken)
        rc = read_group(r, r->group, r->data, &r->io_main, &r->rebuilt, err);
    if (rc != 0)
        return -1;
    r->loaded = 1;
    r->pos = r->offset > r->seen ? (uint32_t)(r->offset - r->seen) : 0;
    left = rows - r->pos;
    if (r->group + 1 < r->ngroups && r->remaining > left)
        prefetch(r, r->group + 1);
    return 0;
}

int
st_reader_next(st_reader *r, sl_buf *out, sl_err *err)
{
    uint32_t rows, to, end;
    size_t start;

    if (!r->begun) {
        r->begun = 1;
        if (st_out_begin(r->fmt, r->names, r->types, r->ncols, r->remaining, out) != SL_OK) {
            sl_err_set(err, SL_EINTERNAL, "could not start the output");
            return -1;
        }
        return 1;
    }
    if (!r->loaded) {
        /* skip whole groups before the offset without reading them */
        while (r->group < r->ngroups && r->seen + r->group_rows[r->group] <= r->offset) {
            r->seen += r->group_rows[r->group];
            r->group++;
        }
        if (r->remaining == 0 || r->group >= r->ngroups)
            return 0;
        if (load_group(r, err) != 0)
            return -1;
    }
    if (r->remaining == 0)
        return 0;
    /* a slice of the loaded group, ST_READ_SLICE rows or ST_READ_BYTES of output, a few
     * rows at a time: the output stays small whatever a group holds */
    rows = r->group_rows[r->group];
    start = out->len;
    end = rows - r->pos > ST_READ_SLICE ? r->pos + ST_READ_SLICE : rows;
    if ((uint64_t)(end - r->pos) > r->remaining)
        end = r->pos + (uint32_t)r->remaining;
    while (r->pos < end && out->len - start < ST_READ_BYTES) {
        to = end - r->pos > 16 ? r->pos + 16 : end;
        if (st_out_rows(r->fmt, r->names, r->data, r->ncols, r->pos, to, out) != SL_OK) {
            sl_err_set(err, SL_ETOOLARGE, "a slice of rows is larger than the output's limit");
            return -1;
        }
        r->remaining -= to - r->pos;
        r->pos = to;
    }
    if (r->pos == rows || r->remaining == 0) {
        r->seen += rows;
        r->group++;
        r->loaded = 0;
    }
    return 1;
}

/*
 * store/st_read.c: a version read back, a row group at a time: the chunks of the columns
 * needed are read (rebuilt from parity where needed), decoded, passed through the view
 * (rows filtered, columns masked), sliced to the requested rows and formatted. While one
 * group is formatted and sent, a second thread reads the next, so at most two groups of
 * the columns read are in memory.
 */
#include <malloc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "st.h"

/* A group as read: the decoded columns (the projected ones first, then the view's extra
 * ones), the masked ones, and the projected columns as formatted (shallow copies of
 * either). rows: those that passed the view. */
typedef struct {
    st_column *dec;
    st_column *msk;
    st_column *out;
    uint8_t *keep;
    uint32_t rows;
} group;

struct st_reader {
    const st_storage *s;
    const cry_key *key;
    int64_t dataset, version;
    uint32_t key_version;
    st_out fmt;
    size_t ncols;       /* projected */
    size_t ndec;        /* decoded: projected, then extra */
    size_t nall;        /* in the manifest */
    size_t *cols;       /* manifest column index of each decoded column */
    const char **names; /* borrowed from the manifest */
    st_type *types;     /* of each decoded column, as stored */
    st_type *out_types; /* of each projected column, as formatted */
    st_view view;
    int has_view, filtered;
    group *data; /* the current group */
    uint32_t *group_rows;
    size_t ngroups, group;
    uint64_t offset, remaining, seen; /* rows before the group about to be read */
    int begun;
    int loaded;   /* data holds group `group` */
    uint32_t pos; /* its next row to give */
    uint64_t rebuilt;
    uint64_t emitted; /* rows output so far */
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
    group *pre;
    group groups[2];
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

uint64_t
st_reader_rows(const st_reader *r)
{
    return r->emitted;
}

void
st_reader_free(st_reader *r)
{
    size_t i, k;
    int big;

    if (r == NULL)
        return;
    stop_prefetch(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    for (k = 0; k < 2; k++) {
        group *g = &r->groups[k];
        for (i = 0; g->dec != NULL && i < r->ndec; i++)
            st_column_wipe(&g->dec[i]);
        for (i = 0; g->msk != NULL && i < r->ncols; i++)
            st_column_wipe(&g->msk[i]);
        free(g->dec);
        free(g->msk);
        free(g->out);
        free(g->keep);
    }
    st_chunkbuf_free(&r->io_main);
    st_chunkbuf_free(&r->io_pre);
    free(r->cols);
    free(r->names);
    free(r->types);
    free(r->out_types);
    big = r->ngroups >= 4;
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

/* The decoded column holding manifest column m, or -1. */
static long
decoded_at(const st_reader *r, size_t m)
{
    size_t i;

    for (i = 0; i < r->ndec; i++)
        if (r->cols[i] == m)
            return (long)i;
    return -1;
}

sl_code
st_reader_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
              uint32_t key_version, const json_t *manifest, const size_t *cols, size_t ncols,
              uint64_t offset, int64_t limit, st_out fmt, const st_view *view, st_reader **out,
              sl_err *err)
{
    const json_t *mcols = json_object_get(manifest, "columns");
    const json_t *groups = json_object_get(manifest, "groups");
    uint64_t total = 0;
    st_reader *r;
    size_t i, k, all;

    *out = NULL;
    if (!json_is_array(mcols) || !json_is_array(groups) || json_array_size(mcols) == 0)
        return bad_manifest(err);
    /* "all columns" would pass over a view's masks and the columns it leaves out */
    if (view != NULL && ncols == 0)
        return sl_err_set(err, SL_EINTERNAL, "a read through a view names its columns");
    all = json_array_size(mcols);
    r = sl_xcalloc(1, sizeof *r);
    r->s = s;
    r->key = key;
    r->dataset = dataset;
    r->version = version;
    r->key_version = key_version;
    r->fmt = fmt;
    r->nall = all;
    r->ncols = ncols > 0 ? ncols : all;
    if (view != NULL) {
        r->view = *view;
        r->has_view = 1;
        r->filtered = view->keep != NULL;
    }
    /* the projected columns, then the view's extra ones not projected */
    r->cols = sl_xcalloc(r->ncols + r->view.nextra + 1, sizeof *r->cols);
    for (i = 0; i < r->ncols; i++) {
        r->cols[i] = ncols > 0 ? cols[i] : i;
        if (r->cols[i] >= all)
            goto bad;
    }
    r->ndec = r->ncols;
    for (i = 0; i < r->view.nextra; i++) {
        if (r->view.extra[i] >= all)
            goto bad;
        if (decoded_at(r, r->view.extra[i]) < 0)
            r->cols[r->ndec++] = r->view.extra[i];
    }
    r->names = sl_xcalloc(r->ndec, sizeof *r->names);
    r->types = sl_xcalloc(r->ndec, sizeof *r->types);
    r->out_types = sl_xcalloc(r->ncols + 1, sizeof *r->out_types);
    for (k = 0; k < 2; k++) {
        r->groups[k].dec = sl_xcalloc(r->ndec, sizeof *r->groups[k].dec);
        r->groups[k].msk = sl_xcalloc(r->ncols, sizeof *r->groups[k].msk);
        r->groups[k].out = sl_xcalloc(r->ncols, sizeof *r->groups[k].out);
        r->groups[k].keep = sl_xcalloc(SL_ROWS_PER_GROUP, 1);
    }
    r->data = &r->groups[0];
    r->pre = &r->groups[1];
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    st_chunkbuf_init(&r->io_main);
    st_chunkbuf_init(&r->io_pre);
    r->want = r->ready = SIZE_MAX;
    for (i = 0; i < r->ndec; i++) {
        const json_t *c = json_array_get(mcols, r->cols[i]);
        const char *type;

        r->names[i] = json_string_value(json_object_get(c, "name"));
        type = json_string_value(json_object_get(c, "type"));
        if (r->names[i] == NULL || type == NULL || st_type_parse(type, &r->types[i]) != SL_OK)
            goto bad;
        for (k = 0; k < 2; k++)
            st_column_init(&r->groups[k].dec[i], r->types[i]);
    }
    for (i = 0; i < r->ncols; i++) {
        int m = r->view.masked != NULL && r->view.masked[i] && r->view.mask != NULL;
        r->out_types[i] = m ? r->view.masked_types[i] : r->types[i];
        for (k = 0; k < 2; k++)
            st_column_init(&r->groups[k].msk[i], r->out_types[i]);
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
    if (r->filtered) {
        /* rows that pass are known once read (npy counts them first) */
        r->remaining = limit >= 0 ? (uint64_t)limit : UINT64_MAX;
    } else {
        r->remaining = offset >= total ? 0 : total - offset;
        if (limit >= 0 && (uint64_t)limit < r->remaining)
            r->remaining = (uint64_t)limit;
    }
    if (fmt == ST_OUT_NPY)
        for (i = 0; i < r->ncols; i++)
            if (r->out_types[i] == ST_STRING) {
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

/* Reads decoded columns [0, n) of a group into g->dec (either thread; storage, key and
 * the reader's fixed fields are only read). 0, or -1 with err set. */
static int
read_chunks(const st_reader *r, size_t grp, group *g, size_t from, size_t n, st_chunkbuf *io,
            uint64_t *rebuilt, sl_err *err)
{
    uint32_t rows = r->group_rows[grp];
    size_t i;

    for (i = from; i < from + n; i++) {
        st_place pl = {r->dataset, r->version, (uint32_t)grp, (uint32_t)r->cols[i], r->key_version};
        const unsigned char *raw;
        size_t len;
        uint32_t bad;
        sl_code rc;
        /* float values are parsed for npy and for a filter reading the column */
        int floats = (r->fmt == ST_OUT_NPY || r->fmt == ST_OUT_FRAMES) && i < r->ncols;
        size_t k;

        for (k = 0; r->filtered && k < r->view.nextra; k++)
            floats |= r->view.extra[k] == r->cols[i];
        /* decoded over the previous group's rows, in the same memory (wiped at the end) */
        rc = st_chunk_load(r->s, &pl, r->key, io, &raw, &len, &bad, err);
        *rebuilt += (uint64_t)__builtin_popcount(bad);
        if (rc == SL_OK &&
            (st_column_decode_into(raw, len, &g->dec[i]) != SL_OK || g->dec[i].rows != rows ||
             g->dec[i].type != r->types[i] || (floats && st_column_floats(&g->dec[i]) != SL_OK)))
            rc = sl_err_set(err, SL_EUNAVAIL, "a chunk does not decode as its manifest says");
        if (rc != SL_OK)
            return -1;
    }
    return 0;
}

/* The view's row filter over a group's decoded columns: g->keep. */
static int
filter_rows(const st_reader *r, group *g, uint32_t rows, sl_err *err)
{
    const st_column **bycol = sl_xcalloc(r->nall, sizeof *bycol);
    size_t i;
    sl_code rc;

    for (i = 0; i < r->ndec; i++)
        bycol[r->cols[i]] = &g->dec[i];
    memset(g->keep, 0, rows);
    rc = r->view.keep(r->view.ctx, bycol, rows, g->keep);
    free(bycol);
    if (rc != SL_OK) {
        memset(g->keep, 0, rows);
        sl_err_set(err, rc, "the view's row filter could not be applied");
        return -1;
    }
    return 0;
}

/* Reads a group: its columns, the rows that pass, the masked columns. */
static int
read_group(const st_reader *r, size_t grp, group *g, st_chunkbuf *io, uint64_t *rebuilt,
           sl_err *err)
{
    uint32_t rows = r->group_rows[grp];
    size_t i;

    if (read_chunks(r, grp, g, 0, r->ndec, io, rebuilt, err) != 0)
        return -1;
    g->rows = rows;
    if (r->filtered) {
        if (filter_rows(r, g, rows, err) != 0)
            return -1;
        for (i = 0; i < r->ndec; i++)
            g->rows = st_column_keep(&g->dec[i], g->keep);
    }
    for (i = 0; i < r->ncols; i++) {
        g->out[i] = g->dec[i];
        if (r->view.masked == NULL || !r->view.masked[i] || r->view.mask == NULL)
            continue;
        if (g->msk[i].type != r->out_types[i]) {
            st_column_wipe(&g->msk[i]);
            st_column_init(&g->msk[i], r->out_types[i]);
        }
        st_column_reset(&g->msk[i]);
        if (r->view.mask(r->view.ctx, i, &g->dec[i], &g->msk[i]) != SL_OK ||
            g->msk[i].rows != g->rows || g->msk[i].type != r->out_types[i]) {
            sl_err_set(err, SL_EINTERNAL, "a column's mask could not be applied");
            return -1;
        }
        g->out[i] = g->msk[i];
    }
    return 0;
}

/* The rows of every group that pass the filter (for npy's header): a pass over the
 * columns the filter reads. */
static int
count_rows(st_reader *r, uint64_t *kept, sl_err *err)
{
    size_t grp, i;
    uint64_t n = 0;

    for (grp = 0; grp < r->ngroups; grp++) {
        group *g = r->data;
        uint32_t rows = r->group_rows[grp];

        for (i = 0; i < r->view.nextra; i++) {
            long at = decoded_at(r, r->view.extra[i]);
            if (at < 0 || read_chunks(r, grp, g, (size_t)at, 1, &r->io_main, &r->rebuilt, err))
                return -1;
        }
        if (filter_rows(r, g, rows, err) != 0)
            return -1;
        for (i = 0; i < rows; i++)
            n += g->keep[i] != 0;
    }
    *kept = n;
    return 0;
}

static void *
prefetch_main(void *arg)
{
    st_reader *r = arg;
    group *dst;
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
prefetch(st_reader *r, size_t g)
{
    if (!r->started) {
        if (pthread_create(&r->thread, NULL, prefetch_main, r) != 0)
            return; /* read it when it is needed instead */
        r->started = 1;
    }
    pthread_mutex_lock(&r->mu);
    r->want = g;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Makes r->data hold group r->group: the prefetched one when it is that, else read now;
 * then asks for the next group the read will need. */
static int
load_group(st_reader *r, sl_err *err)
{
    int taken = 0, rc = 0;
    uint32_t rows;
    uint64_t left;

    if (r->started) {
        pthread_mutex_lock(&r->mu);
        while (r->want == r->group && r->ready != r->group)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->ready == r->group) {
            group *t = r->data;
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
    rows = r->data->rows;
    r->pos = r->offset > r->seen
                 ? (r->offset - r->seen < rows ? (uint32_t)(r->offset - r->seen) : rows)
                 : 0;
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
        if (r->filtered && r->fmt == ST_OUT_NPY) {
            uint64_t kept, left;
            if (count_rows(r, &kept, err) != 0)
                return -1;
            left = kept > r->offset ? kept - r->offset : 0;
            if (left < r->remaining)
                r->remaining = left;
        }
        if (st_out_begin(r->fmt, r->names, r->out_types, r->ncols, r->remaining, out) != SL_OK) {
            sl_err_set(err, SL_EINTERNAL, "could not start the output");
            return -1;
        }
        return 1;
    }
    while (!r->loaded) {
        /* without a filter, whole groups before the offset are skipped unread */
        while (!r->filtered && r->group < r->ngroups &&
               r->seen + r->group_rows[r->group] <= r->offset) {
            r->seen += r->group_rows[r->group];
            r->group++;
        }
        if (r->remaining == 0 || r->group >= r->ngroups)
            return 0;
        if (load_group(r, err) != 0)
            return -1;
        if (r->pos == r->data->rows) { /* every row passing is before the offset */
            r->seen += r->data->rows;
            r->group++;
            r->loaded = 0;
        }
    }
    if (r->remaining == 0)
        return 0;
    /* a slice of the loaded group, ST_READ_SLICE rows or ST_READ_BYTES of output, a few
     * rows at a time: the output stays small whatever a group holds */
    rows = r->data->rows;
    start = out->len;
    end = rows - r->pos > ST_READ_SLICE ? r->pos + ST_READ_SLICE : rows;
    if ((uint64_t)(end - r->pos) > r->remaining)
        end = r->pos + (uint32_t)r->remaining;
    while (r->pos < end && out->len - start < ST_READ_BYTES) {
        /* frames: 256 rows' columns at once (a frame per column; 256 rows of the widest
         * text stay far under the piece's limit) */
        uint32_t step = r->fmt == ST_OUT_FRAMES ? 256 : 16;
        to = end - r->pos > step ? r->pos + step : end;
        if (st_out_rows(r->fmt, r->names, r->data->out, r->ncols, r->pos, to, out) != SL_OK) {
            sl_err_set(err, SL_ETOOLARGE, "a slice of rows is larger than the output's limit");
            return -1;
        }
        r->remaining -= to - r->pos;
        r->emitted += to - r->pos;
        r->pos = to;
    }
    if (r->pos == rows || r->remaining == 0) {
        r->seen += rows;
        r->group++;
        r->loaded = 0;
    }
    return 1;
}

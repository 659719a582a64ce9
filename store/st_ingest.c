/*
 * store/st_ingest.c: an upload, from CSV bytes to stored row groups, on several threads.
 * The caller's thread parses the CSV and keeps each row group's fields as text (with the
 * line each row began on); when a group is full it hands it to the writer threads and
 * fills a free one meanwhile. A writer converts a group's text to the columns' types,
 * encodes, packs, seals, splits and writes each chunk; groups are written in any order
 * and recorded in theirs. Types not declared are inferred from the first group; later
 * rows must fit, and a value that does not is refused with its line and column (by a
 * writer: the refusal reaches the caller at its next call). Memory: ST_WRITERS + 1
 * groups of text and ST_WRITERS of typed columns.
 */
#include "st.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writer threads per upload: converting text to typed values is most of an upload's
 * work, more than parsing the CSV, so two keep the parser busy on two cores. */
#define ST_WRITERS 2

/* A row group as text: one string column per CSV column, and each row's line. */
typedef enum { GROUP_FREE, GROUP_FILLING, GROUP_QUEUED, GROUP_WRITING } group_state;
typedef struct {
    st_column *cols;
    uint64_t *lines;
    uint32_t rows;
    size_t bytes;   /* of field text */
    uint32_t index; /* its place in the version, given when handed over */
    group_state state;
} text_group;

struct st_ingest;
/* A writer thread and what only it touches. */
typedef struct {
    struct st_ingest *g;
    pthread_t thread;
    st_column *typed;
    sl_buf enc;
} writer;

/* A record's field bytes. */
static size_t
rec_bytes(const st_field *f, size_t n)
{
    size_t i, b = 0;

    for (i = 0; i < n; i++)
        b += f[i].n;
    return b;
}

struct st_ingest {
    const st_storage *s;
    const cry_key *key;
    int64_t dataset, version;
    uint32_t key_version;
    const st_colspec *declared;
    size_t ndeclared;
    st_csv *csv;
    size_t ncols;
    char **names;
    st_type *types;
    int typed; /* types are known (from the first group on) */
    text_group bufs[ST_WRITERS + 1];
    text_group *fill; /* the group the parser fills */
    uint64_t rows, bytes_in;
    cry_sha256_ctx *sha;
    /* the writers; everything below `mu` is shared with them under it */
    writer writers[ST_WRITERS];
    int writers_started;
    int watch[ST_MAX_FRAGMENTS]; /* the storage directories, open before any write */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    sl_code werr; /* the first refusal of a writer */
    sl_err werr_msg;
    unsigned char *incompressible; /* per column: a chunk did not compress; not tried again */
    uint32_t groups_given;         /* groups handed over */
    uint32_t groups_written;
    uint64_t stored;
    json_t *groups; /* by index; null until written */
};

st_ingest *
st_ingest_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
              uint32_t key_version, const st_colspec *declared, size_t n)
{
    st_ingest *g = sl_xcalloc(1, sizeof *g);
    size_t i;

    g->s = s;
    g->key = key;
    g->dataset = dataset;
    g->version = version;
    g->key_version = key_version;
    g->declared = declared;
    g->ndeclared = n;
    g->sha = cry_sha256_new();
    g->groups = json_array();
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    for (i = 0; i < ST_MAX_FRAGMENTS; i++)
        g->watch[i] = -1;
    for (i = 0; i < ST_WRITERS; i++) {
        g->writers[i].g = g;
        sl_buf_init(&g->writers[i].enc, SL_MAX_CHUNK_BYTES);
    }
    return g;
}

static void
stop_writers(st_ingest *g)
{
    int i;

    if (!g->writers_started)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (i = 0; i < g->writers_started; i++)
        pthread_join(g->writers[i].thread, NULL);
    g->writers_started = 0;
}

static void
group_clear(text_group *t, size_t ncols)
{
    size_t i;

    for (i = 0; t->cols != NULL && i < ncols; i++)
        st_column_wipe(&t->cols[i]);
    free(t->cols);
    free(t->lines);
}

void
st_ingest_free(st_ingest *g)
{
    size_t i, w;

    if (g == NULL)
        return;
    stop_writers(g);
    st_storage_unwatch(g->watch);
    st_csv_free(g->csv);
    for (w = 0; w < ST_WRITERS; w++) {
        for (i = 0; g->writers[w].typed != NULL && i < g->ncols; i++)
            st_column_wipe(&g->writers[w].typed[i]);
        free(g->writers[w].typed);
        if (g->writers[w].enc.data != NULL)
            sodium_memzero(g->writers[w].enc.data, g->writers[w].enc.len);
        sl_buf_free(&g->writers[w].enc);
    }
    for (i = 0; i < g->ncols; i++)
        free(g->names[i]);
    for (i = 0; i < ST_WRITERS + 1; i++)
        group_clear(&g->bufs[i], g->ncols);
    free(g->names);
    free(g->types);
    free(g->incompressible);
    cry_sha256_free(g->sha);
    json_decref(g->groups);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static sl_code
header(st_ingest *g, const st_field *f, size_t n, sl_err *err)
{
    size_t i, b;

    if (g->ndeclared > 0 && n != g->ndeclared)
        return sl_err_set(err, SL_EINVALID,
                          "line 1: the header has %zu columns, the dataset declares %zu", n,
                          g->ndeclared);
    g->ncols = n;
    g->names = sl_xcalloc(n, sizeof *g->names);
    g->types = sl_xcalloc(n, sizeof *g->types);
    for (b = 0; b < ST_WRITERS + 1; b++) {
        g->bufs[b].cols = sl_xcalloc(n ? n : 1, sizeof(st_column));
        g->bufs[b].lines = sl_xcalloc(SL_ROWS_PER_GROUP, sizeof(uint64_t));
        for (i = 0; i < n; i++)
            st_column_init(&g->bufs[b].cols[i], ST_STRING);
    }
    g->incompressible = sl_xcalloc(n ? n : 1, 1);
    g->fill = &g->bufs[0];
    g->fill->state = GROUP_FILLING;
    for (i = 0; i < n; i++) {
        g->names[i] = sl_xmalloc(f[i].n + 1);
        memcpy(g->names[i], f[i].p, f[i].n);
        g->names[i][f[i].n] = '\0';
        if (g->ndeclared > 0 && strcmp(g->names[i], g->declared[i].name) != 0)
            return sl_err_set(err, SL_EINVALID,
                              "line 1, column %zu: the header does not name the dataset's "
                              "column there",
                              i + 1);
    }
    return SL_OK;
}

/* The types, from the declaration or inferred from the first group's text. */
static void
settle_types(st_ingest *g, const text_group *t)
{
    size_t i;
    uint32_t r;

    for (i = 0; i < g->ncols; i++) {
        const st_column *text = &t->cols[i];
        st_infer inf;
        if (g->ndeclared > 0 && g->declared[i].has_type) {
            g->types[i] = g->declared[i].type;
            continue;
        }
        st_infer_init(&inf);
        for (r = 0; r < text->rows; r++)
            if (!text->nulls[r])
                st_infer_add(&inf, text->str + text->off[r], text->off[r + 1] - text->off[r]);
        g->types[i] = st_infer_type(&inf);
    }
    g->typed = 1;
}

/*
 * Whether a chunk is worth igzip's time (about 0.3 GB/s a core): a float64 column kept as
 * canonical text would halve, but compressing it would bound uploads (and inflating it,
 * reads), so it is stored as it is; float64 bits hardly compress; any other column is
 * tried until one of its chunks does not save an eighth, then stored as well.
 */
static int
try_compress(st_ingest *g, size_t i, const st_column *c)
{
    int no;

    if (c->type == ST_FLOAT64)
        return 0;
    pthread_mutex_lock(&g->mu);
    no = g->incompressible[i];
    pthread_mutex_unlock(&g->mu);
    return !no;
}

/* Column i of a group's text into c, typed (refusing what does not fit, with its line and
 * column); *canonical 1 for a float64 column whose text is all canonical already (the
 * text is then what is stored). */
static sl_code
convert(const st_ingest *g, const text_group *t, size_t i, st_column *c, int *canonical,
        sl_err *err)
{
    const st_column *text = &t->cols[i];
    uint32_t r;

    if (c->type == ST_FLOAT64) {
        if (st_column_parse_floats(c, text, canonical, &r) == SL_OK)
            return SL_OK;
        if (g->ndeclared > 0 && g->declared[i].has_type)
            return sl_err_set(err, SL_EINVALID,
                              "line %llu, column %zu: not a value of the column's type (%s)",
                              (unsigned long long)t->lines[r], i + 1, st_type_name(g->types[i]));
        return sl_err_set(err, SL_EINVALID, "line %llu, column %zu: not a finite float64",
                          (unsigned long long)t->lines[r], i + 1);
    }
    *canonical = 0;
    st_column_reset(c);
    for (r = 0; r < text->rows; r++) {
        st_field f = {text->str != NULL ? text->str + text->off[r] : "",
                      text->off[r + 1] - text->off[r], text->nulls[r]};
        char why[sizeof err->msg];
        if (st_column_add(c, &f, err) == SL_OK)
            continue;
        if (g->ndeclared > 0 && g->declared[i].has_type)
            return sl_err_set(err, SL_EINVALID,
                              "line %llu, column %zu: not a value of the column's type (%s)",
                              (unsigned long long)t->lines[r], i + 1, st_type_name(g->types[i]));
        snprintf(why, sizeof why, "%s", err->msg);
        return sl_err_set(err, err->code, "line %llu, column %zu: %s",
                          (unsigned long long)t->lines[r], i + 1, why);
    }
    return SL_OK;
}

/* A writer: a group's columns converted, then each chunk written; the group's manifest
 * entry in *entry. */
static sl_code
write_group(st_ingest *g, writer *w, text_group *t, json_t **entry, uint64_t *stored, sl_err *err)
{
    json_t *chunks = json_array();
    sl_code rc = SL_OK;
    size_t i;

    *entry = NULL;
    if (w->typed == NULL) {
        w->typed = sl_xcalloc(g->ncols ? g->ncols : 1, sizeof(st_column));
        for (i = 0; i < g->ncols; i++)
            st_column_init(&w->typed[i], g->types[i]);
    }
    for (i = 0; i < g->ncols && rc == SL_OK; i++) {
        const st_column *text = &t->cols[i];
        st_column *c = &w->typed[i];
        /* a string column's text is the column: nothing to convert; nor is a float64
         * column's text when every value is written canonically (kept as text) */
        const st_column *out = g->types[i] == ST_STRING ? text : c;
        st_column as_text;
        st_place pl = {g->dataset, g->version, t->index, (uint32_t)i, g->key_version};
        st_chunk_info info;
        int canonical = 0;
        if (out == c)
            rc = convert(g, t, i, c, &canonical, err);
        if (rc != SL_OK)
            break;
        if (canonical) {
            as_text = *text;
            as_text.type = ST_FLOAT64;
            as_text.text = 1;
            out = &as_text;
        }
        sl_buf_reset(&w->enc);
        if ((rc = st_column_encode(out, &w->enc)) != SL_OK) {
            sl_err_set(err, rc, "a column chunk is larger than the limit");
            break;
        }
        rc = st_chunk_put(g->s, &pl, g->key, (unsigned char *)w->enc.data, w->enc.len,
                          try_compress(g, i, out), &info, err);
        sodium_memzero(w->enc.data, w->enc.len);
        if (rc != SL_OK)
            break;
        *stored += info.stored;
        if (!info.compressed && out->type != ST_FLOAT64) {
            pthread_mutex_lock(&g->mu);
            g->incompressible[i] = 1;
            pthread_mutex_unlock(&g->mu);
        }
        json_array_append_new(chunks,
                              json_pack("{s:I, s:I, s:b}", "raw", (json_int_t)info.raw, "stored",
                                        (json_int_t)info.stored, "compressed", info.compressed));
    }
    if (rc != SL_OK) {
        json_decref(chunks);
        return rc;
    }
    *entry = json_pack("{s:I, s:o}", "rows", (json_int_t)t->rows, "chunks", chunks);
    return SL_OK;
}

/* The queued group handed over first, or NULL. */
static text_group *
next_queued(st_ingest *g)
{
    text_group *best = NULL;
    int i;

    for (i = 0; i < ST_WRITERS + 1; i++)
        if (g->bufs[i].state == GROUP_QUEUED && (best == NULL || g->bufs[i].index < best->index))
            best = &g->bufs[i];
    return best;
}

static void *
writer_main(void *arg)
{
    writer *w = arg;
    st_ingest *g = w->g;
    text_group *t;
    json_t *entry;
    uint64_t stored;
    sl_err err;
    sl_code rc;
    size_t i;

    pthread_mutex_lock(&g->mu);
    for (;;) {
        while ((t = next_queued(g)) == NULL && !g->stop)
            pthread_cond_wait(&g->cv, &g->mu);
        if (t == NULL)
            break;
        t->state = GROUP_WRITING;
        rc = g->werr; /* after a refusal, nothing more is written */
        pthread_mutex_unlock(&g->mu);
        sl_err_clear(&err);
        entry = NULL;
        stored = 0;
        if (rc == SL_OK)
            rc = write_group(g, w, t, &entry, &stored, &err);
        for (i = 0; i < g->ncols; i++)
            st_column_reset(&t->cols[i]);
        t->rows = 0;
        t->bytes = 0;
        pthread_mutex_lock(&g->mu);
        if (rc != SL_OK && g->werr == SL_OK) {
            g->werr = rc;
            g->werr_msg = err;
        }
        if (entry != NULL) {
            while (json_array_size(g->groups) <= t->index)
                json_array_append_new(g->groups, json_null());
            json_array_set_new(g->groups, t->index, entry);
            g->stored += stored;
            g->groups_written++;
        }
        t->state = GROUP_FREE;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Waits until every group handed over is written (or refused); the refusal, if any. */
static sl_code
writers_idle(st_ingest *g, sl_err *err)
{
    sl_code rc;
    int i, busy;

    pthread_mutex_lock(&g->mu);
    do {
        for (i = busy = 0; i < ST_WRITERS + 1; i++)
            busy |= g->bufs[i].state == GROUP_QUEUED || g->bufs[i].state == GROUP_WRITING;
        if (busy)
            pthread_cond_wait(&g->cv, &g->mu);
    } while (busy);
    rc = g->werr;
    if (rc != SL_OK)
        *err = g->werr_msg;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Hands the filled group to the writers and takes a free one to fill (waiting for one). */
static sl_code
hand_over(st_ingest *g, sl_err *err)
{
    text_group *next = NULL;
    sl_code rc;
    int i;

    if (!g->typed)
        settle_types(g, g->fill);
    if (!g->writers_started) {
        if ((rc = st_storage_watch(g->s, g->watch, err)) != SL_OK)
            return rc;
        for (i = 0; i < ST_WRITERS; i++) {
            if (pthread_create(&g->writers[i].thread, NULL, writer_main, &g->writers[i]) != 0)
                break;
            g->writers_started++;
        }
        if (g->writers_started == 0)
            return sl_err_set(err, SL_EINTERNAL, "could not start the upload's writers");
    }
    pthread_mutex_lock(&g->mu);
    g->fill->index = g->groups_given++;
    g->fill->state = GROUP_QUEUED;
    pthread_cond_broadcast(&g->cv);
    while (g->werr == SL_OK && next == NULL) {
        for (i = 0; i < ST_WRITERS + 1 && next == NULL; i++)
            if (g->bufs[i].state == GROUP_FREE)
                next = &g->bufs[i];
        if (next == NULL)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    rc = g->werr;
    if (rc != SL_OK)
        *err = g->werr_msg;
    else
        next->state = GROUP_FILLING;
    pthread_mutex_unlock(&g->mu);
    if (rc == SL_OK)
        g->fill = next;
    return rc;
}

static sl_code
on_record(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    st_ingest *g = ctx;
    text_group *t;
    sl_code rc;
    size_t i;

    if (rec == 0)
        return header(g, f, n, err);
    t = g->fill;
    for (i = 0; i < n; i++) {
        if ((rc = st_column_add(&t->cols[i], &f[i], err)) != SL_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return sl_err_set(err, rc, "line %llu, column %zu: %s", (unsigned long long)line, i + 1,
                              why);
        }
    }
    t->lines[t->rows++] = line;
    g->rows++;
    t->bytes += rec_bytes(f, n);
    if (t->rows == SL_ROWS_PER_GROUP || t->bytes >= ST_GROUP_BYTES)
        return hand_over(g, err);
    return SL_OK;
}

sl_code
st_ingest_feed(st_ingest *g, const char *data, size_t n, sl_err *err)
{
    sl_code rc;

    if (g->csv == NULL)
        g->csv = st_csv_new(on_record, g);
    /* a refusal by a writer since the last piece */
    if (g->writers_started) {
        pthread_mutex_lock(&g->mu);
        rc = g->werr;
        if (rc != SL_OK)
            *err = g->werr_msg;
        pthread_mutex_unlock(&g->mu);
        if (rc != SL_OK)
            return rc;
    }
    g->bytes_in += n;
    cry_sha256_update(g->sha, data, n);
    return st_csv_feed(g->csv, data, n, err);
}

sl_code
st_ingest_finish(st_ingest *g, json_t **manifest, sl_err *err)
{
    unsigned char sha[CRY_HASH_BYTES];
    char hex[CRY_HASH_HEX + 1];
    json_t *cols;
    sl_code rc;
    size_t i;

    *manifest = NULL;
    if (g->csv == NULL)
        g->csv = st_csv_new(on_record, g);
    if ((rc = st_csv_finish(g->csv, err)) != SL_OK)
        return rc;
    /* the last group (a header alone makes one group of no rows, so types settle) */
    if ((g->fill != NULL && g->fill->rows > 0) || !g->typed) {
        if (g->fill == NULL) { /* no header at all: st_csv_finish refused it */
            return sl_err_set(err, SL_EINVALID, "line 1: no header");
        }
        if ((rc = hand_over(g, err)) != SL_OK)
            return rc;
    }
    if (g->writers_started && (rc = writers_idle(g, err)) != SL_OK)
        return rc;
    stop_writers(g);
    if (g->groups_written != g->groups_given)
        return sl_err_set(err, SL_EINTERNAL, "a row group was not written");
    if (g->groups_written > 0 &&
        (rc = st_storage_sync(g->s, g->dataset, g->version, g->watch, err)) != SL_OK)
        return rc;
    cry_sha256_final(g->sha, sha);
    g->sha = NULL;
    cry_hex(sha, sizeof sha, hex);
    cols = json_array();
    for (i = 0; i < g->ncols; i++)
        json_array_append_new(
            cols, json_pack("{s:s, s:s}", "name", g->names[i], "type", st_type_name(g->types[i])));
    *manifest = json_pack("{s:I, s:I, s:I, s:s, s:o, s:O}", "rows", (json_int_t)g->rows, "bytes_in",
                          (json_int_t)g->bytes_in, "bytes_stored", (json_int_t)g->stored, "sha256",
                          hex, "columns", cols, "groups", g->groups);
    return *manifest != NULL ? SL_OK : sl_err_set(err, SL_EINTERNAL, "manifest not encodable");
}

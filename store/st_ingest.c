/*
 * store/st_ingest.c: an upload, from CSV bytes to stored row groups, on several threads.
 * The caller's thread only hashes the body and cuts it into row groups of whole records:
 * at a line feed outside quotes (an even number of quotes before it: a quote inside an
 * unquoted field is refused by the parser, so quotes pair up in any CSV it accepts),
 * after SL_ROWS_PER_GROUP records or once ST_GROUP_BYTES are passed. A writer thread
 * parses a group's CSV from the line it begins on, converts its text to the columns'
 * types, encodes, packs, seals, splits and writes each chunk; groups are parsed and
 * written in any order and recorded in theirs.
 *
 * The first group holds the header: the others wait for it before they parse, and for
 * the types (declared, or inferred from the first group) before they convert. A refusal
 * names line and column; when several groups are refused, the earliest one's reason is
 * given, so the answer is the one a parser reading the body from its start would give:
 * every cut before the first thing wrong is a true record boundary, and the group that
 * holds it is parsed from one. Memory: ST_WRITERS + 1 groups of body bytes, and per
 * writer one group of text and one of typed columns.
 */
#include "st.h"

#include <malloc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writer threads per upload: parsing and converting text to typed values is most of an
 * upload's work, so two keep both cores busy. */
#define ST_WRITERS 2

/* The most body bytes a record can take: a field at most doubles with its quotes, plus
 * two quotes and a comma per field and a CRLF. A group's bytes past ST_GROUP_BYTES
 * without the end of a record mean a record a parser refuses within them. */
#define RAW_SLACK (2 * (size_t)SL_MAX_CSV_RECORD + 3 * (size_t)SL_MAX_CSV_COLUMNS + 2)

/* A row group as body bytes: whole records, the first one beginning on `line`. */
typedef enum { RAW_FREE, RAW_FILLING, RAW_QUEUED, RAW_WORKING } raw_state;
typedef struct {
    sl_buf bytes;
    uint64_t line;
    uint32_t index; /* its place in the version, given when handed over */
    int last;       /* the body ends with it: its parser finishes */
    raw_state state;
} raw_group;

struct st_ingest;
/* A writer thread and what only it touches: the group's fields as text (one string
 * column per CSV column, each row's line), its typed columns, the encoding buffer. */
typedef struct {
    struct st_ingest *g;
    pthread_t thread;
    const raw_group *raw; /* the group being parsed */
    st_column *text;
    uint64_t *lines;
    uint32_t rows;
    st_column *typed;
    sl_buf enc;
} writer;

struct st_ingest {
    const st_storage *s;
    const cry_key *key;
    int64_t dataset, version;
    uint32_t key_version;
    const st_colspec *declared;
    size_t ndeclared;
    cry_sha256_ctx *sha;
    uint64_t bytes_in;
    /* the caller's thread: the group being filled and where the cutting stands */
    raw_group raws[ST_WRITERS + 1];
    raw_group *fill;
    int quoted;       /* an odd number of quotes so far */
    uint64_t line;    /* the line the next byte is on */
    uint32_t records; /* records ended in the group being filled */
    /* the writers; everything below `mu` is shared with them under it */
    writer writers[ST_WRITERS];
    int writers_started;
    int watch[ST_MAX_FRAGMENTS]; /* the storage directories, open before any write */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int header_read; /* by the first group's writer: ncols, names (then types) known */
    int typed;       /* types settled */
    size_t ncols;
    char **names;
    st_type *types;
    sl_code werr;        /* the refusal of the earliest group refused */
    uint32_t werr_group; /* that group */
    sl_err werr_msg;
    unsigned char *incompressible; /* per column: a chunk did not compress; not tried again */
    uint32_t groups_given;         /* groups handed over */
    uint32_t groups_done;          /* written or refused */
    uint64_t rows;
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
        sl_buf_init_wiped(&g->writers[i].enc, SL_MAX_CHUNK_BYTES);
    }
    for (i = 0; i < ST_WRITERS + 1; i++) /* the first group holds the header too */
        sl_buf_init_wiped(&g->raws[i].bytes, ST_GROUP_BYTES + (i == 0 ? 2 : 1) * RAW_SLACK);
    g->fill = &g->raws[0];
    g->fill->state = RAW_FILLING;
    g->fill->line = g->line = 1;
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
columns_wipe(st_column *cols, size_t n)
{
    size_t i;

    for (i = 0; cols != NULL && i < n; i++)
        st_column_wipe(&cols[i]);
    free(cols);
}

void
st_ingest_free(st_ingest *g)
{
    size_t i;
    int big;

    if (g == NULL)
        return;
    stop_writers(g);
    st_storage_unwatch(g->watch);
    for (i = 0; i < ST_WRITERS; i++) {
        writer *w = &g->writers[i];
        columns_wipe(w->text, g->ncols);
        columns_wipe(w->typed, g->ncols);
        free(w->lines);
        if (w->enc.data != NULL)
            sodium_memzero(w->enc.data, w->enc.cap);
        sl_buf_free(&w->enc);
    }
    for (i = 0; i < ST_WRITERS + 1; i++) {
        if (g->raws[i].bytes.data != NULL)
            sodium_memzero(g->raws[i].bytes.data, g->raws[i].bytes.cap);
        sl_buf_free(&g->raws[i].bytes);
    }
    for (i = 0; g->names != NULL && i < g->ncols; i++)
        free(g->names[i]);
    free(g->names);
    free(g->types);
    free(g->incompressible);
    cry_sha256_free(g->sha);
    json_decref(g->groups);
    big = g->groups_given >= 4;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    /* a large upload's buffers came from its writers' malloc arenas: give them back, or
     * the process keeps the largest upload's memory for good (small ones: not worth the
     * walk over every arena) */
    if (big)
        malloc_trim(0);
}

/* The header, read by the first group's writer: the columns named, checked against the
 * declaration. The other writers read what it sets once header_read is set. */
static sl_code
header(st_ingest *g, const st_field *f, size_t n, sl_err *err)
{
    size_t i;

    if (g->ndeclared > 0 && n != g->ndeclared)
        return sl_err_set(err, SL_EINVALID,
                          "line 1: the header has %zu columns, the dataset declares %zu", n,
                          g->ndeclared);
    g->names = sl_xcalloc(n ? n : 1, sizeof *g->names);
    g->types = sl_xcalloc(n ? n : 1, sizeof *g->types);
    g->incompressible = sl_xcalloc(n ? n : 1, 1);
    g->ncols = n;
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
    pthread_mutex_lock(&g->mu);
    g->header_read = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return SL_OK;
}

/* A record of a writer's group: its fields kept as text. */
static sl_code
on_record(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    writer *w = ctx;
    st_ingest *g = w->g;
    sl_code rc;
    size_t i;

    if (rec == 0)
        return header(g, f, n, err);
    if (w->text == NULL) {
        w->text = sl_xcalloc(g->ncols ? g->ncols : 1, sizeof(st_column));
        w->lines = sl_xcalloc(SL_ROWS_PER_GROUP, sizeof(uint64_t));
        for (i = 0; i < g->ncols; i++)
            st_column_init(&w->text[i], ST_STRING);
    }
    if (w->rows >= SL_ROWS_PER_GROUP)
        return sl_err_set(err, SL_ETOOLARGE, "line %llu: more rows in a row group than the limit",
                          (unsigned long long)line);
    for (i = 0; i < n; i++) {
        if ((rc = st_column_add(&w->text[i], &f[i], err)) != SL_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return sl_err_set(err, rc, "line %llu, column %zu: %s", (unsigned long long)line, i + 1,
                              why);
        }
    }
    w->lines[w->rows++] = line;
    return SL_OK;
}

/* The types, from the declaration or inferred from the first group's text. */
static void
settle_types(st_ingest *g, const writer *w)
{
    size_t i;
    uint32_t r;

    for (i = 0; i < g->ncols; i++) {
        const st_column *text = w->text != NULL ? &w->text[i] : NULL;
        st_infer inf;
        if (g->ndeclared > 0 && g->declared[i].has_type) {
            g->types[i] = g->declared[i].type;
            continue;
        }
        st_infer_init(&inf);
        for (r = 0; text != NULL && r < w->rows; r++)
            if (!text->nulls[r])
                st_infer_add(&inf, text->str + text->off[r], text->off[r + 1] - text->off[r]);
        g->types[i] = st_infer_type(&inf);
    }
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

/* Column i of the writer's text into c, typed (refusing what does not fit, with its line
 * and column); *canonical 1 for a float64 column whose text is all canonical already (the
 * text is then what is stored). */
static sl_code
convert(const st_ingest *g, const writer *w, size_t i, st_column *c, int *canonical, sl_err *err)
{
    const st_column *text = &w->text[i];
    uint32_t r;

    if (c->type == ST_FLOAT64) {
        if (st_column_parse_floats(c, text, canonical, &r) == SL_OK)
            return SL_OK;
        if (g->ndeclared > 0 && g->declared[i].has_type)
            return sl_err_set(err, SL_EINVALID,
                              "line %llu, column %zu: not a value of the column's type (%s)",
                              (unsigned long long)w->lines[r], i + 1, st_type_name(g->types[i]));
        return sl_err_set(err, SL_EINVALID, "line %llu, column %zu: not a finite float64",
                          (unsigned long long)w->lines[r], i + 1);
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
                              (unsigned long long)w->lines[r], i + 1, st_type_name(g->types[i]));
        snprintf(why, sizeof why, "%s", err->msg);
        return sl_err_set(err, err->code, "line %llu, column %zu: %s",
                          (unsigned long long)w->lines[r], i + 1, why);
    }
    return SL_OK;
}

/* The writer's group converted, then each chunk written; its manifest entry in *entry. */
static sl_code
write_group(st_ingest *g, writer *w, uint32_t index, json_t **entry, uint64_t *stored, sl_err *err)
{
    json_t *chunks = json_array();
    sl_code rc = SL_OK;
    st_column none;
    size_t i;

    *entry = NULL;
    st_column_init(&none, ST_STRING);
    if (w->typed == NULL) {
        w->typed = sl_xcalloc(g->ncols ? g->ncols : 1, sizeof(st_column));
        for (i = 0; i < g->ncols; i++)
            st_column_init(&w->typed[i], g->types[i]);
    }
    for (i = 0; i < g->ncols && rc == SL_OK; i++) {
        /* a group of no rows (a header alone) has no text columns */
        const st_column *text = w->text != NULL ? &w->text[i] : &none;
        st_column *c = &w->typed[i];
        /* a string column's text is the column: nothing to convert; nor is a float64
         * column's text when every value is written canonically (kept as text) */
        const st_column *out = g->types[i] == ST_STRING ? text : c;
        st_column as_text;
        st_place pl = {g->dataset, g->version, index, (uint32_t)i, g->key_version};
        st_chunk_info info;
        int canonical = 0;
        if (out == c) {
            if (w->text != NULL)
                rc = convert(g, w, i, c, &canonical, err);
            else
                st_column_reset(c);
        }
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
    *entry = json_pack("{s:I, s:o}", "rows", (json_int_t)w->rows, "chunks", chunks);
    return SL_OK;
}

/* Waits until *flag is set (1), or the first group is refused or the writers stop (0). */
static int
wait_for(st_ingest *g, const int *flag)
{
    int set;

    pthread_mutex_lock(&g->mu);
    while (!*flag && !(g->werr != SL_OK && g->werr_group == 0) && !g->stop)
        pthread_cond_wait(&g->cv, &g->mu);
    set = *flag;
    pthread_mutex_unlock(&g->mu);
    return set;
}

/* A writer's group: parsed from its first line, its text kept. */
static sl_code
parse_group(st_ingest *g, writer *w, const raw_group *raw, sl_err *err)
{
    st_csv *p = st_csv_new(on_record, w);
    sl_code rc;
    size_t i;

    for (i = 0; w->text != NULL && i < g->ncols; i++)
        st_column_reset(&w->text[i]);
    w->rows = 0;
    if (raw->index > 0)
        st_csv_resume(p, g->ncols, raw->line);
    rc = st_csv_feed(p, raw->bytes.len > 0 ? raw->bytes.data : "", raw->bytes.len, err);
    if (rc == SL_OK && raw->last)
        rc = st_csv_finish(p, err);
    else if (rc == SL_OK && !st_csv_between(p))
        rc = sl_err_set(err, SL_EINTERNAL, "row group %u does not end where a record does",
                        raw->index);
    st_csv_free(p);
    return rc;
}

/* A group from body bytes to written chunks. *skipped when it waited for the first
 * group and that one was refused. */
static sl_code
process(st_ingest *g, writer *w, const raw_group *raw, json_t **entry, uint64_t *stored,
        int *skipped, sl_err *err)
{
    sl_code rc;

    *skipped = 0;
    if (raw->index > 0 && !wait_for(g, &g->header_read)) {
        *skipped = 1;
        return SL_OK;
    }
    if ((rc = parse_group(g, w, raw, err)) != SL_OK)
        return rc;
    if (raw->index == 0) {
        settle_types(g, w);
        pthread_mutex_lock(&g->mu);
        g->typed = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    } else if (!wait_for(g, &g->typed)) {
        *skipped = 1;
        return SL_OK;
    }
    return write_group(g, w, raw->index, entry, stored, err);
}

/* The queued group handed over first, or NULL. */
static raw_group *
next_queued(st_ingest *g)
{
    raw_group *best = NULL;
    int i;

    for (i = 0; i < ST_WRITERS + 1; i++)
        if (g->raws[i].state == RAW_QUEUED && (best == NULL || g->raws[i].index < best->index))
            best = &g->raws[i];
    return best;
}

static void *
writer_main(void *arg)
{
    writer *w = arg;
    st_ingest *g = w->g;
    raw_group *t;
    json_t *entry;
    uint64_t stored;
    sl_err err;
    sl_code rc;
    int skipped;

    pthread_mutex_lock(&g->mu);
    for (;;) {
        while ((t = next_queued(g)) == NULL && !g->stop)
            pthread_cond_wait(&g->cv, &g->mu);
        if (t == NULL)
            break;
        t->state = RAW_WORKING;
        /* after a refusal, nothing later is written */
        skipped = g->werr != SL_OK && g->werr_group < t->index;
        pthread_mutex_unlock(&g->mu);
        sl_err_clear(&err);
        entry = NULL;
        stored = 0;
        rc = SL_OK;
        if (!skipped)
            rc = process(g, w, t, &entry, &stored, &skipped, &err);
        pthread_mutex_lock(&g->mu);
        if (rc != SL_OK && (g->werr == SL_OK || t->index < g->werr_group)) {
            g->werr = rc;
            g->werr_group = t->index;
            g->werr_msg = err;
        }
        if (entry != NULL) {
            while (json_array_size(g->groups) <= t->index)
                json_array_append_new(g->groups, json_null());
            json_array_set_new(g->groups, t->index, entry);
            g->stored += stored;
            g->rows += w->rows;
        }
        g->groups_done++;
        t->state = RAW_FREE;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Waits until every group handed over is written or refused; the earliest refusal. */
static sl_code
writers_idle(st_ingest *g, sl_err *err)
{
    sl_code rc;

    pthread_mutex_lock(&g->mu);
    while (g->groups_done != g->groups_given)
        pthread_cond_wait(&g->cv, &g->mu);
    rc = g->werr;
    if (rc != SL_OK)
        *err = g->werr_msg;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* A refusal so far: once the groups before the refused one are done too, the earliest. */
static sl_code
refused(st_ingest *g, sl_err *err)
{
    sl_code rc;

    if (!g->writers_started)
        return SL_OK;
    pthread_mutex_lock(&g->mu);
    rc = g->werr;
    pthread_mutex_unlock(&g->mu);
    return rc == SL_OK ? SL_OK : writers_idle(g, err);
}

/* Hands the group being filled to the writers (the body's last when last) and, unless
 * last, takes a free one to fill, waiting for one. */
static sl_code
hand_over(st_ingest *g, int last, sl_err *err)
{
    raw_group *next = NULL;
    sl_code rc;
    int i;

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
    g->fill->last = last;
    g->fill->state = RAW_QUEUED;
    pthread_cond_broadcast(&g->cv);
    while (!last && next == NULL) {
        for (i = 0; i < ST_WRITERS + 1 && next == NULL; i++)
            if (g->raws[i].state == RAW_FREE)
                next = &g->raws[i];
        if (next == NULL)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    if (next != NULL)
        next->state = RAW_FILLING;
    pthread_mutex_unlock(&g->mu);
    g->fill = next;
    if (next != NULL) {
        sl_buf_reset(&next->bytes);
        next->line = g->line;
    }
    g->records = 0;
    return SL_OK;
}

/* The most bytes the group being filled may hold: ST_GROUP_BYTES, then one record (the
 * first group: the header and one record). */
static size_t
group_limit(const st_ingest *g)
{
    return ST_GROUP_BYTES + (g->groups_given == 0 ? 2 : 1) * RAW_SLACK;
}

/* The number of line feeds in p[0..n). */
static uint64_t
line_feeds(const char *p, size_t n)
{
    uint64_t k = 0;
    const char *end = p + n;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

/*
 * How much of data[0..n) goes into the group being filled: up to a cut (*how 1: the end
 * of its last record), or all of it (*how 0). A cut comes after SL_ROWS_PER_GROUP
 * records or at the first record's end past ST_GROUP_BYTES (never before the first data
 * record); and, forced (*how 2), at group_limit without a record's end.
 */
static size_t
cut(st_ingest *g, const char *data, size_t n, int *how)
{
    uint32_t header = g->groups_given == 0; /* the first group's first record */
    size_t have = g->fill->bytes.len, room = group_limit(g) - have;
    size_t lim = n < room ? n : room, i = 0, nl_at = 0;
    int nl_known = 0; /* nl_at: the first line feed at or after i, or lim for none */

    *how = 0;
    while (i < lim) {
        const char *q;
        size_t end;
        if (g->quoted) { /* inside quotes: to the next quote, line feeds counted */
            q = memchr(data + i, '"', lim - i);
            end = q != NULL ? (size_t)(q - data) : lim;
            g->line += line_feeds(data + i, end - i);
            if (q == NULL) {
                i = lim;
                break;
            }
            g->quoted = 0;
            i = end + 1;
            continue;
        }
        /* searched again only once passed: a line of many quotes costs its length once */
        if (!nl_known || nl_at < i) {
            const char *nl = memchr(data + i, '\n', lim - i);
            nl_at = nl != NULL ? (size_t)(nl - data) : lim;
            nl_known = 1;
        }
        end = nl_at;
        q = memchr(data + i, '"', end - i);
        if (q != NULL) {
            g->quoted = 1;
            i = (size_t)(q - data) + 1;
            continue;
        }
        if (end == lim) {
            i = lim;
            break;
        }
        g->line++;
        g->records++;
        i = end + 1;
        if (g->records > header &&
            (g->records - header >= SL_ROWS_PER_GROUP || have + i >= ST_GROUP_BYTES)) {
            *how = 1;
            return i;
        }
    }
    if (lim == room) /* no record ends in a group's most bytes: a parser refuses it */
        *how = 2;
    return lim;
}

sl_code
st_ingest_feed(st_ingest *g, const char *data, size_t n, sl_err *err)
{
    sl_code rc;

    if ((rc = refused(g, err)) != SL_OK)
        return rc;
    if (g->fill == NULL)
        return sl_err_set(err, SL_EINTERNAL, "the upload's body already ended");
    g->bytes_in += n;
    cry_sha256_update(g->sha, data, n);
    while (n > 0) {
        int at_cut;
        size_t take = cut(g, data, n, &at_cut);
        if (sl_buf_append(&g->fill->bytes, data, take) != SL_OK)
            return sl_err_set(err, SL_EINTERNAL, "a row group outgrew its buffer");
        data += take;
        n -= take;
        if (at_cut) {
            if ((rc = hand_over(g, 0, err)) != SL_OK)
                return rc;
            if (at_cut == 2) { /* the writer refuses that group: wait for its reason */
                if ((rc = writers_idle(g, err)) != SL_OK)
                    return rc;
                return sl_err_set(err, SL_EINTERNAL, "a record without an end was not refused");
            }
        }
    }
    return SL_OK;
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
    if ((rc = refused(g, err)) != SL_OK)
        return rc;
    if (g->fill == NULL)
        return sl_err_set(err, SL_EINTERNAL, "the upload's body already ended");
    /* the last group: what follows the last cut, or the whole body (even empty: its
     * parser says what is missing) */
    if (g->groups_given == 0 || g->fill->bytes.len > 0) {
        if ((rc = hand_over(g, 1, err)) != SL_OK)
            return rc;
    } else {
        pthread_mutex_lock(&g->mu);
        g->fill->state = RAW_FREE;
        pthread_mutex_unlock(&g->mu);
        g->fill = NULL;
    }
    if ((rc = writers_idle(g, err)) != SL_OK)
        return rc;
    stop_writers(g);
    if (json_array_size(g->groups) != g->groups_given)
        return sl_err_set(err, SL_EINTERNAL, "a row group was not written");
    for (i = 0; i < g->groups_given; i++)
        if (!json_is_object(json_array_get(g->groups, i)))
            return sl_err_set(err, SL_EINTERNAL, "a row group was not written");
    if ((rc = st_storage_sync(g->s, g->dataset, g->version, g->watch, err)) != SL_OK)
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

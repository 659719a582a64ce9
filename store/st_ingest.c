/*
 * store/st_ingest.c: an upload, from CSV bytes to stored row groups. Records fill one
 * column builder per column; every SL_ROWS_PER_GROUP rows the group is encoded and each
 * column chunk written (packed, sealed, split, fsynced). Types not declared are inferred
 * from the first group, which is held as text until then; later rows must fit.
 */
#include "st.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int typed;       /* types are known (after the first group) */
    st_column *cols; /* as text while !typed */
    uint32_t group;  /* groups written */
    uint64_t rows, bytes_in, stored;
    cry_sha256_ctx *sha;
    json_t *groups;
    sl_buf enc;
};

st_ingest *
st_ingest_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
              uint32_t key_version, const st_colspec *declared, size_t n)
{
    st_ingest *g = sl_xcalloc(1, sizeof *g);

    g->s = s;
    g->key = key;
    g->dataset = dataset;
    g->version = version;
    g->key_version = key_version;
    g->declared = declared;
    g->ndeclared = n;
    g->sha = cry_sha256_new();
    g->groups = json_array();
    sl_buf_init(&g->enc, SL_MAX_CHUNK_BYTES);
    return g;
}

void
st_ingest_free(st_ingest *g)
{
    size_t i;

    if (g == NULL)
        return;
    st_csv_free(g->csv);
    for (i = 0; i < g->ncols; i++) {
        free(g->names[i]);
        st_column_clear(&g->cols[i]);
    }
    free(g->names);
    free(g->types);
    free(g->cols);
    cry_sha256_free(g->sha);
    json_decref(g->groups);
    sl_buf_free(&g->enc);
    free(g);
}

static sl_code
header(st_ingest *g, const st_field *f, size_t n, sl_err *err)
{
    size_t i;

    if (g->ndeclared > 0 && n != g->ndeclared)
        return sl_err_set(err, SL_EINVALID,
                          "line 1: the header has %zu columns, the dataset declares %zu", n,
                          g->ndeclared);
    g->ncols = n;
    g->names = sl_xcalloc(n, sizeof *g->names);
    g->types = sl_xcalloc(n, sizeof *g->types);
    g->cols = sl_xcalloc(n, sizeof *g->cols);
    for (i = 0; i < n; i++) {
        g->names[i] = sl_xmalloc(f[i].n + 1);
        memcpy(g->names[i], f[i].p, f[i].n);
        g->names[i][f[i].n] = '\0';
        if (g->ndeclared > 0 && strcmp(g->names[i], g->declared[i].name) != 0)
            return sl_err_set(err, SL_EINVALID,
                              "line 1, column %zu: the header does not name the dataset's "
                              "column there",
                              i + 1);
        st_column_init(&g->cols[i], ST_STRING);
    }
    return SL_OK;
}

/* Ends the first group's text: each column gets its type, and its values are parsed. */
static sl_code
settle_types(st_ingest *g, sl_err *err)
{
    size_t i;
    uint32_t r;

    for (i = 0; i < g->ncols; i++) {
        st_column text = g->cols[i], typed;
        st_infer inf;
        if (g->ndeclared > 0 && g->declared[i].has_type) {
            g->types[i] = g->declared[i].type;
        } else {
            st_infer_init(&inf);
            for (r = 0; r < text.rows; r++)
                if (!text.nulls[r])
                    st_infer_add(&inf, text.str + text.off[r], text.off[r + 1] - text.off[r]);
            g->types[i] = st_infer_type(&inf);
        }
        st_column_init(&typed, g->types[i]);
        for (r = 0; r < text.rows; r++) {
            st_field f = {text.str != NULL ? text.str + text.off[r] : "",
                          text.off[r + 1] - text.off[r], text.nulls[r]};
            if (st_column_add(&typed, &f, err) != SL_OK) {
                /* only a declared type can refuse a first-group value */
                sl_code rc = err->code;
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                st_column_clear(&typed);
                return sl_err_set(err, rc, "row %u, column %zu: %s (the column is declared %s)",
                                  r + 1, i + 1, why, st_type_name(g->types[i]));
            }
        }
        st_column_clear(&g->cols[i]);
        g->cols[i] = typed;
    }
    g->typed = 1;
    return SL_OK;
}

static sl_code
write_group(st_ingest *g, sl_err *err)
{
    json_t *chunks = json_array();
    uint32_t rows = g->ncols ? g->cols[0].rows : 0;
    sl_code rc;
    size_t i;

    if (!g->typed && (rc = settle_types(g, err)) != SL_OK) {
        json_decref(chunks);
        return rc;
    }
    for (i = 0; i < g->ncols; i++) {
        st_place pl = {g->dataset, g->version, g->group, (uint32_t)i, g->key_version};
        st_chunk_info info;
        sl_buf_reset(&g->enc);
        if ((rc = st_column_encode(&g->cols[i], &g->enc)) != SL_OK) {
            json_decref(chunks);
            return sl_err_set(err, rc, "a column chunk is larger than the limit");
        }
        rc =
            st_chunk_write(g->s, &pl, g->key, (unsigned char *)g->enc.data, g->enc.len, &info, err);
        sodium_memzero(g->enc.data, g->enc.len);
        if (rc != SL_OK) {
            json_decref(chunks);
            return rc;
        }
        g->stored += info.stored;
        json_array_append_new(chunks,
                              json_pack("{s:I, s:I, s:b}", "raw", (json_int_t)info.raw, "stored",
                                        (json_int_t)info.stored, "compressed", info.compressed));
        st_column_reset(&g->cols[i]);
    }
    json_array_append_new(g->groups,
                          json_pack("{s:I, s:o}", "rows", (json_int_t)rows, "chunks", chunks));
    g->group++;
    return SL_OK;
}

/* 1 when a non-null field is a value of the type. */
static int
fits(st_type t, const st_field *f)
{
    int64_t i;
    double d;
    int b;

    switch (t) {
    case ST_INT64:
        return st_parse_int64(f->p, f->n, &i) == SL_OK;
    case ST_FLOAT64:
        return st_parse_float64(f->p, f->n, &d) == SL_OK;
    case ST_BOOL:
        return st_parse_bool(f->p, f->n, &b) == SL_OK;
    default:
        return 1;
    }
}

static sl_code
on_record(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n, sl_err *err)
{
    st_ingest *g = ctx;
    sl_code rc;
    size_t i;

    if (rec == 0)
        return header(g, f, n, err);
    for (i = 0; i < n; i++) {
        /* while the first group is text, declared types are still checked here, where
         * the line is known */
        if (!g->typed && g->ndeclared > 0 && g->declared[i].has_type && !f[i].null &&
            !fits(g->declared[i].type, &f[i]))
            return sl_err_set(err, SL_EINVALID,
                              "line %llu, column %zu: not a value of the column's type (%s)",
                              (unsigned long long)line, i + 1, st_type_name(g->declared[i].type));
        if ((rc = st_column_add(&g->cols[i], &f[i], err)) != SL_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return sl_err_set(err, rc, "line %llu, column %zu: %s", (unsigned long long)line, i + 1,
                              why);
        }
    }
    g->rows++;
    if (g->cols[0].rows == SL_ROWS_PER_GROUP)
        return write_group(g, err);
    return SL_OK;
}

sl_code
st_ingest_feed(st_ingest *g, const char *data, size_t n, sl_err *err)
{
    if (g->csv == NULL)
        g->csv = st_csv_new(on_record, g);
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
    if ((g->ncols > 0 && g->cols[0].rows > 0) || !g->typed) {
        if ((rc = write_group(g, err)) != SL_OK)
            return rc;
    }
    if (g->group > 0 && (rc = st_storage_sync(g->s, g->dataset, g->version, err)) != SL_OK)
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

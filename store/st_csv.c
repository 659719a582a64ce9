/*
 * store/st_csv.c: a streaming RFC 4180 parser. Bytes arrive in pieces of any size; a
 * record is unescaped into one bounded buffer and handed to the caller whole, so memory
 * is at most a record whatever the file. Plain runs of bytes are copied in bulk; only
 * the four special bytes (comma, quote, CR, LF) go through the state machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "st.h"

enum state {
    FIELD_START, /* nothing of the field yet */
    UNQUOTED,    /* inside an unquoted field */
    QUOTED,      /* inside quotes */
    QUOTE_SEEN,  /* a quote inside quotes: a doubled one or the closing one */
    CR_SEEN,     /* a CR outside quotes: only LF may follow */
};

typedef struct {
    size_t off, len;
    int null;
} span;

struct st_csv {
    st_record_fn fn;
    void *ctx;
    enum state state;
    sl_buf rec;     /* the record's unescaped bytes */
    span *fields;   /* SL_MAX_CSV_COLUMNS + 1 */
    st_field *view; /* what the callback sees */
    size_t nfields, field_start, ncols;
    uint64_t line, rec_line, quote_line, nrec;
    int field_quoted; /* the current field began with a quote */
    int bom_checked;
    size_t bom_seen; /* bytes of a possible BOM held back */
    sl_code failed;
};

st_csv *
st_csv_new(st_record_fn fn, void *ctx)
{
    st_csv *p = sl_xcalloc(1, sizeof *p);

    p->fn = fn;
    p->ctx = ctx;
    p->state = FIELD_START;
    sl_buf_init_wiped(&p->rec, SL_MAX_CSV_RECORD);
    p->fields = sl_xcalloc(SL_MAX_CSV_COLUMNS + 1, sizeof *p->fields);
    p->view = sl_xcalloc(SL_MAX_CSV_COLUMNS + 1, sizeof *p->view);
    p->line = p->rec_line = 1;
    return p;
}

void
st_csv_free(st_csv *p)
{
    if (p == NULL)
        return;
    sl_buf_free(&p->rec);
    free(p->fields);
    free(p->view);
    free(p);
}

void
st_csv_resume(st_csv *p, size_t ncols, uint64_t line)
{
    p->bom_checked = 1;
    p->nrec = 1;
    p->ncols = ncols;
    p->line = p->rec_line = line;
}

int
st_csv_between(const st_csv *p)
{
    return p->failed == SL_OK && p->state == FIELD_START && p->nfields == 0 && p->rec.len == 0;
}

uint64_t
st_csv_records(const st_csv *p)
{
    return p->nrec > 0 ? p->nrec - 1 : 0;
}

/* Refuses the upload at (line, column), 1-based; the message never holds data. */
static sl_code
fail_at(st_csv *p, sl_err *err, sl_code code, uint64_t line, size_t column, const char *what)
{
    sl_err_set(err, code, "line %llu, column %zu: %s", (unsigned long long)line, column, what);
    p->failed = code;
    return code;
}

/* ... at the field being parsed. */
static sl_code
fail(st_csv *p, sl_err *err, sl_code code, uint64_t line, const char *what)
{
    return fail_at(p, err, code, line, p->nfields + 1, what);
}

static sl_code
append(st_csv *p, const char *s, size_t n, sl_err *err)
{
    if (p->rec.len - p->field_start + n > SL_MAX_CSV_FIELD)
        return fail(p, err, SL_ETOOLARGE, p->line, "field longer than the limit");
    if (sl_buf_append(&p->rec, s, n) != SL_OK)
        return fail(p, err, SL_ETOOLARGE, p->rec_line, "record longer than the limit");
    return SL_OK;
}

/* 1 when every byte is ASCII and none is NUL (valid UTF-8 without a NUL), eight bytes
 * at a time: most fields of most uploads, which then need no decoding. */
static int
ascii_text(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;
    uint64_t w;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        if ((w & highs) != 0 || ((w - ones) & ~w & highs) != 0)
            return 0;
    }
    for (; i < n; i++)
        if ((unsigned char)s[i] >= 0x80 || s[i] == '\0')
            return 0;
    return 1;
}

/* Ends the current field: checks it and records where it lies. */
static sl_code
end_field(st_csv *p, sl_err *err)
{
    size_t len = p->rec.len - p->field_start;
    const char *s = len > 0 ? p->rec.data + p->field_start : "";

    if (p->nfields >= SL_MAX_CSV_COLUMNS)
        return fail(p, err, SL_ETOOLARGE, p->line, "more columns than the limit");
    if (!ascii_text(s, len)) {
        if (len > 0 && memchr(s, '\0', len) != NULL)
            return fail(p, err, SL_EINVALID, p->line, "NUL byte in a field");
        if (!sl_utf8_valid(s, len))
            return fail(p, err, SL_EINVALID, p->line, "not valid UTF-8");
    }
    p->fields[p->nfields].off = p->field_start;
    p->fields[p->nfields].len = len;
    p->fields[p->nfields].null = len == 0 && !p->field_quoted;
    p->nfields++;
    p->field_start = p->rec.len;
    p->field_quoted = 0;
    p->state = FIELD_START;
    return SL_OK;
}

static sl_code
check_header(st_csv *p, sl_err *err)
{
    size_t i, j;

    for (i = 0; i < p->nfields; i++) {
        if (p->view[i].n == 0)
            return fail_at(p, err, SL_EINVALID, p->rec_line, i + 1,
                           "empty column name in the header");
        for (j = 0; j < i; j++)
            if (p->view[j].n == p->view[i].n &&
                memcmp(p->view[j].p, p->view[i].p, p->view[i].n) == 0)
                return fail_at(p, err, SL_EINVALID, p->rec_line, i + 1,
                               "column name repeated in the header");
    }
    return SL_OK;
}

/* A complete record of p->nfields fields in p->view (at a line break when newline):
 * checked against the header, handed over, and the next one started. */
static sl_code
deliver(st_csv *p, int newline, sl_err *err)
{
    sl_code rc;

    if (p->nfields == 1 && p->view[0].null && (p->nrec == 0 || p->ncols > 1))
        return fail_at(p, err, SL_EINVALID, p->rec_line, 1, "empty line");
    if (p->nrec > 0 && p->nfields != p->ncols) {
        char what[96];
        snprintf(what, sizeof what, "%zu fields where the header has %zu", p->nfields, p->ncols);
        /* the first column missing, or the first one too many */
        return fail_at(p, err, SL_EINVALID, p->rec_line,
                       p->nfields < p->ncols ? p->nfields + 1 : p->ncols + 1, what);
    }
    if (p->nrec == 0) {
        if ((rc = check_header(p, err)) != SL_OK)
            return rc;
        p->ncols = p->nfields;
    }
    sl_err_clear(err);
    rc = p->fn(p->ctx, p->nrec, p->rec_line, p->view, p->nfields, err);
    if (rc != SL_OK) {
        p->failed = rc;
        return rc;
    }
    p->nrec++;
    p->nfields = 0;
    p->rec.len = 0;
    if (p->rec.data != NULL)
        p->rec.data[0] = '\0';
    p->field_start = 0;
    if (newline)
        p->line++;
    p->rec_line = p->line;
    return SL_OK;
}

/* Ends the record the state machine built (at a line break when newline). */
static sl_code
end_record(st_csv *p, int newline, sl_err *err)
{
    sl_code rc;
    size_t i;

    if ((rc = end_field(p, err)) != SL_OK)
        return rc;
    for (i = 0; i < p->nfields; i++) {
        p->view[i].p = p->fields[i].len > 0 ? p->rec.data + p->fields[i].off : "";
        p->view[i].n = p->fields[i].len;
        p->view[i].null = p->fields[i].null;
    }
    return deliver(p, newline, err);
}

/*
 * The common record, a line of plain fields: no quote, no CR but a last one before the
 * LF, every field within the limits, valid UTF-8 without NUL. Its fields are handed over
 * where they lie in the input, without the state machine or a copy. 1 when s[0..len)
 * (the line without its LF) was such a record and went through deliver (*rc its
 * result), 0 when the state machine must read it (it then finds what is wrong with it,
 * or reads it the same way).
 */
static int
plain_line(st_csv *p, const char *s, size_t len, sl_code *rc, sl_err *err)
{
    size_t end = len > 0 && s[len - 1] == '\r' ? len - 1 : len, i = 0, start = 0, nf = 0;
    int high = 0;

#define FIELD_AT(k)                                             \
    do {                                                        \
        size_t fl_ = (k)-start;                                 \
        if (nf >= SL_MAX_CSV_COLUMNS || fl_ > SL_MAX_CSV_FIELD) \
            return 0;                                           \
        p->view[nf].p = fl_ > 0 ? s + start : "";               \
        p->view[nf].n = fl_;                                    \
        p->view[nf].null = fl_ == 0;                            \
        nf++;                                                   \
        start = (k) + 1;                                        \
    } while (0)

    if (len + 1 >= SL_MAX_CSV_RECORD) /* the state machine's limit, its NUL counted */
        return 0;
#ifdef __SSE2__
    {
        const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"'),
                      cr = _mm_set1_epi8('\r'), nul = _mm_setzero_si128();
        for (; i + 16 <= end; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            unsigned bad = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, cr)),
                             _mm_cmpeq_epi8(v, nul)));
            unsigned commas = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma));
            if (bad != 0)
                return 0;
            high |= _mm_movemask_epi8(v);
            while (commas != 0) {
                FIELD_AT(i + (size_t)__builtin_ctz(commas));
                commas &= commas - 1;
            }
        }
    }
#endif
    for (; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\r' || c == '\0')
            return 0;
        high |= c >= 0x80;
        if (c == ',')
            FIELD_AT(i);
    }
    FIELD_AT(end);
#undef FIELD_AT
    if (high && !sl_utf8_valid(s, end))
        return 0;
    p->nfields = nf;
    *rc = deliver(p, 1, err);
    return 1;
}

/* A byte that is not , " CR or LF: the run of such bytes can be copied at once. */
static const unsigned char special[256] = {[','] = 1, ['"'] = 1, ['\r'] = 1, ['\n'] = 1};

static int
plain(unsigned char c)
{
    return !special[c];
}

sl_code
st_csv_feed(st_csv *p, const char *data, size_t n, sl_err *err)
{
    static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
    size_t i = 0;
    sl_code rc;

    if (p->failed != SL_OK)
        return sl_err_set(err, p->failed, "the upload was already refused");
    /* a byte-order mark, possibly split across pieces, only at the very start */
    while (!p->bom_checked && i < n) {
        if ((unsigned char)data[i] != bom[p->bom_seen]) {
            p->bom_checked = 1;
            if (p->bom_seen > 0 &&
                (rc = st_csv_feed(p, (const char *)bom, p->bom_seen, err)) != SL_OK)
                return rc;
            break;
        }
        p->bom_seen++;
        i++;
        if (p->bom_seen == sizeof bom)
            p->bom_checked = 1;
    }
    while (i < n) {
        unsigned char c = (unsigned char)data[i];
        switch (p->state) {
        case FIELD_START:
            if (p->nfields == 0 && p->rec.len == 0) {
                const char *nl = memchr(data + i, '\n', n - i);
                if (nl != NULL && plain_line(p, data + i, (size_t)(nl - (data + i)), &rc, err)) {
                    if (rc != SL_OK)
                        return rc;
                    i = (size_t)(nl - data) + 1;
                    continue;
                }
            }
            if (c == '"') {
                p->state = QUOTED;
                p->field_quoted = 1;
                p->quote_line = p->line;
                i++;
                continue;
            }
            p->state = UNQUOTED;
            /* fall through */
        case UNQUOTED:
            if (plain(c)) {
                size_t j = i;
                while (j < n && plain((unsigned char)data[j]))
                    j++;
                if ((rc = append(p, data + i, j - i, err)) != SL_OK)
                    return rc;
                i = j;
                continue;
            }
            if (c == ',') {
                rc = end_field(p, err);
            } else if (c == '\n') {
                rc = end_record(p, 1, err);
            } else if (c == '\r') {
                p->state = CR_SEEN;
                rc = SL_OK;
            } else {
                rc = fail(p, err, SL_EINVALID, p->line, "quote inside an unquoted field");
            }
            if (rc != SL_OK)
                return rc;
            i++;
            continue;
        case QUOTED: {
            size_t j = i;
            while (j < n && data[j] != '"') {
                if (data[j] == '\n')
                    p->line++;
                j++;
            }
            if ((rc = append(p, data + i, j - i, err)) != SL_OK)
                return rc;
            i = j;
            if (i < n) {
                p->state = QUOTE_SEEN;
                i++;
            }
            continue;
        }
        case QUOTE_SEEN:
            if (c == '"') {
                if ((rc = append(p, "\"", 1, err)) != SL_OK)
                    return rc;
                p->state = QUOTED;
            } else if (c == ',') {
                if ((rc = end_field(p, err)) != SL_OK)
                    return rc;
            } else if (c == '\n') {
                if ((rc = end_record(p, 1, err)) != SL_OK)
                    return rc;
            } else if (c == '\r') {
                p->state = CR_SEEN;
            } else {
                return fail(p, err, SL_EINVALID, p->line, "text after a closing quote");
            }
            i++;
            continue;
        case CR_SEEN:
            if (c != '\n')
                return fail(p, err, SL_EINVALID, p->line,
                            "carriage return not followed by a line feed");
            if ((rc = end_record(p, 1, err)) != SL_OK)
                return rc;
            i++;
            continue;
        }
    }
    return SL_OK;
}

sl_code
st_csv_finish(st_csv *p, sl_err *err)
{
    static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
    sl_code rc;

    if (p->failed != SL_OK)
        return sl_err_set(err, p->failed, "the upload was already refused");
    if (!p->bom_checked && p->bom_seen > 0) {
        /* fewer bytes than a BOM, all of them its beginning: they are data */
        p->bom_checked = 1;
        if ((rc = st_csv_feed(p, (const char *)bom, p->bom_seen, err)) != SL_OK)
            return rc;
    }
    switch (p->state) {
    case QUOTED:
        return fail(p, err, SL_EINVALID, p->quote_line, "quote opened here is never closed");
    case CR_SEEN:
        return fail(p, err, SL_EINVALID, p->line, "carriage return not followed by a line feed");
    case FIELD_START:
        if (p->nfields == 0 && p->rec.len == 0)
            break; /* the input ended with a line break (or was empty) */
        /* fall through - a last record without its line break */
    case UNQUOTED:
    case QUOTE_SEEN:
        if ((rc = end_record(p, 0, err)) != SL_OK)
            return rc;
        break;
    }
    if (p->nrec == 0) {
        p->failed = SL_EINVALID;
        return sl_err_set(err, SL_EINVALID, "the upload has no header row");
    }
    return SL_OK;
}

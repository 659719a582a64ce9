/*
 * store/st.h: dataset versions. So far: the streaming CSV parser uploads go through, and
 * the typed values of a column (parsing, inference, exact formatting). Row groups,
 * sealing, erasure coding and reads follow (issue "Encrypted, erasure-coded dataset
 * store").
 */
#ifndef ST_H
#define ST_H

#include <stddef.h>
#include <stdint.h>

#include "cry.h"
#include "sl.h"

/* ---- the CSV parser (st_csv.c) ---- */

/*
 * One field of a record. `p` is not NUL-terminated and stays valid only during the
 * callback. An unquoted empty field is a null (`null` set); a quoted empty one ("") is
 * an empty string. Every field is valid UTF-8 without NUL bytes.
 */
typedef struct {
    const char *p;
    size_t n;
    int null;
} st_field;

/*
 * Called once per record, the header first (rec 0). `line` is the physical line the
 * record starts on (1-based; quoted newlines count). Returning anything but SL_OK stops
 * the parser with that code; the callback fills err.
 */
typedef sl_code (*st_record_fn)(void *ctx, uint64_t rec, uint64_t line, const st_field *f, size_t n,
                                sl_err *err);

typedef struct st_csv st_csv;

/*
 * A parser for RFC 4180 text fed in pieces of any size: fields separated by commas,
 * records by CRLF or LF, double quotes around fields that hold commas, quotes (doubled)
 * or line breaks. A UTF-8 byte-order mark at the very start is skipped. Refused, with
 * SL_EINVALID and a message naming the line and column but never the data: a record
 * whose field count differs from the header's, a quote inside an unquoted field, text
 * after a closing quote, a carriage return not followed by a line feed, invalid UTF-8, a
 * NUL byte, an empty line, an unterminated quote, a header with an empty or repeated
 * name. Over SL_MAX_CSV_COLUMNS columns, SL_MAX_CSV_FIELD bytes in a field or
 * SL_MAX_CSV_RECORD in a record: SL_ETOOLARGE. Memory is bounded by those limits.
 * Not thread-safe; one parser per upload.
 */
st_csv *st_csv_new(st_record_fn fn, void *ctx);
void st_csv_free(st_csv *p);
/* Parses the next piece; calls fn for each record completed. After an error the parser
 * refuses everything (the same code). */
sl_code st_csv_feed(st_csv *p, const char *data, size_t n, sl_err *err) SL_WUR;
/* The end of the input: completes a last record without a line break; refuses an
 * unterminated quote and an input without a header. */
sl_code st_csv_finish(st_csv *p, sl_err *err) SL_WUR;
/* Data records parsed so far (the header not counted). */
uint64_t st_csv_records(const st_csv *p);
/* A fresh parser continues a CSV whose header (ncols columns) was read by another, at a
 * record that begins on line `line`: no BOM, no header expected. */
void st_csv_resume(st_csv *p, size_t ncols, uint64_t line);
/* 1 when the parser stands between two records (nothing of one read yet, no error). */
int st_csv_between(const st_csv *p);

/* ---- typed values (st_value.c) ---- */

typedef enum { ST_FLOAT64, ST_INT64, ST_BOOL, ST_STRING } st_type;

/* "float64", "int64", "bool", "string"; st_type_parse gives SL_EINVALID for others. */
const char *st_type_name(st_type t);
sl_code st_type_parse(const char *name, st_type *out) SL_WUR;

/*
 * Strict parsers of a field's text; SL_EINVALID when it is not one (no spaces, no
 * leading '+' for integers, no hex, no "nan" or "inf": only finite numbers).
 * int64: [-]digits within range. float64: [+-]digits[.digits][(e|E)[+-]digits] (or
 * .digits), correctly rounded (round-trip exact for any double printed in full); a value
 * beyond the largest double is refused. bool: true/false in any letter case.
 */
sl_code st_parse_int64(const char *p, size_t n, int64_t *out) SL_WUR;
sl_code st_parse_float64(const char *p, size_t n, double *out) SL_WUR;
/* The same, and *canonical (when not NULL) 1 when the text is exactly the one
 * st_format_float64 writes for the value: one walk over the text for both. */
sl_code st_parse_float64_text(const char *p, size_t n, double *out, int *canonical) SL_WUR;
sl_code st_parse_bool(const char *p, size_t n, int *out) SL_WUR;

/* The shortest digits that read back to the same double, written as Python's repr()
 * writes them (100.0, -0.0, 0.0001, 1e-05, 1e+16; at most 25 bytes, NUL-terminated).
 * Returns the length. */
#define ST_FLOAT_TEXT 32
size_t st_format_float64(double v, char out[ST_FLOAT_TEXT]);
/* 1 when p[0..n) is exactly the text st_format_float64 gives for v. */
int st_float64_canonical(const char *p, size_t n, double v);

/*
 * Type inference over a column's values: each value seen narrows what the column can be
 * (int64 → float64 → string; bool → string). Nulls do not count; a column of nulls only
 * is a string column.
 */
typedef struct {
    int can_int, can_float, can_bool, seen;
} st_infer;
void st_infer_init(st_infer *s);
void st_infer_add(st_infer *s, const char *p, size_t n);
st_type st_infer_type(const st_infer *s);

/* ---- column chunks (st_column.c) ---- */

/*
 * One column of a row group, in memory. Values of null rows are zero (0, 0.0, false, "").
 * bool values are one byte each (0 or 1) in memory, bits when encoded.
 */
typedef struct {
    st_type type;
    uint32_t rows;
    uint8_t *nulls; /* rows bytes, 1 = null */
    int64_t *i64;   /* ST_INT64 */
    double *f64;    /* ST_FLOAT64 */
    uint8_t *b;     /* ST_BOOL */
    uint32_t *off;  /* ST_STRING (and ST_FLOAT64 with text): rows + 1 offsets into str */
    char *str;      /* ST_STRING: the bytes, off[rows] of them */
    /* ST_FLOAT64: off/str also hold every value as its canonical text (what
     * st_format_float64 prints; "" for a null). Set by a builder that wants it before
     * adding rows (kept only while every value is canonical) and by the decoder, which
     * then leaves f64 NULL until st_column_floats. Served text is then copied, not
     * formatted again. */
    int text;
    int padded; /* str has ST_FLOAT_TEXT readable bytes past its end (decoded columns) */
    size_t cap, str_cap;
    size_t bytes_max; /* the limit on str (SL_MAX_CHUNK_BYTES) */
} st_column;

void st_column_init(st_column *c, st_type type);
void st_column_clear(st_column *c); /* frees; the column can be reused after init */
void st_column_wipe(st_column *c);  /* zeroes its values, then clears */
void st_column_reset(st_column *c); /* keeps the memory, drops the rows */
/* The float64 values of a string column's text into c, a float64 column (binary: c->text
 * 0); *canonical 1 when every value's text is already canonical, so that the text
 * column, typed float64 with text set, encodes the same values as their text. A value
 * that is not a finite float64: SL_EINVALID with *bad its row. */
sl_code st_column_parse_floats(st_column *c, const st_column *text, int *canonical,
                               uint32_t *bad) SL_WUR;
/*
 * Appends a field, parsed as the column's type. SL_EINVALID (message without the value)
 * when it does not fit; SL_ETOOLARGE past SL_ROWS_PER_GROUP rows or the byte limit.
 */
sl_code st_column_add(st_column *c, const st_field *f, sl_err *err) SL_WUR;

/* Fills f64 from the text of a decoded float64 column (nothing to do otherwise);
 * SL_EINVALID when a value does not read as a float64. */
sl_code st_column_floats(st_column *c) SL_WUR;

/* Keeps the rows r with keep[r] non-zero, in order, in place; the others are gone (their
 * bytes stay in the column's memory until it is reused or wiped). Returns the rows kept. */
uint32_t st_column_keep(st_column *c, const uint8_t *keep);

/*
 * The encoded form of a chunk, before compression and sealing (little-endian):
 *   "SLC1", type u8, flags u8, 2 zero bytes, rows u32, null count u32,
 *   null bitmap (ceil(rows/8) bytes, bit set = null) when null count > 0,
 *   values: int64/float64 rows x 8 bytes; bool a bitmap; string rows + 1 u32 offsets
 *   then the bytes. flags bit 0 (float64 only): the values as canonical text, laid out
 *   like a string column's (a null's text empty).
 * Encoding appends to out (bounded by its max). Decoding treats the bytes as hostile:
 * everything must agree exactly (sizes, counts, offsets in order, unused bits zero,
 * strings valid UTF-8) or SL_EINVALID; out is initialised and filled on SL_OK only.
 */
sl_code st_column_encode(const st_column *c, sl_buf *out) SL_WUR;
sl_code st_column_decode(const unsigned char *p, size_t n, st_column *out) SL_WUR;
/* The same into an initialised column whose memory is reused (a read decodes group after
 * group into the same columns); on failure it holds no rows. A decoded column's text has
 * ST_FLOAT_TEXT readable bytes past its end. */
sl_code st_column_decode_into(const unsigned char *p, size_t n, st_column *c) SL_WUR;

/* ---- compression (st_codec.c) ---- */

/*
 * A chunk's form before sealing: codec (1 byte: 0 stored, 1 raw deflate), the raw length
 * (4 bytes little-endian), then the payload. st_pack compresses with ISA-L igzip (level
 * 1) and keeps the result only when it saves at least an eighth: random float digits
 * compress about 2:1, bytes of float64 bits hardly at all, so each chunk decides for
 * itself (try_compress 0: stored without trying). st_unpack takes back exactly what was packed: the
 * stated length, all input consumed, at most max raw bytes; SL_EINVALID otherwise. Both append to
 * out.
 */
#define ST_PACK_HEAD 5
sl_code st_pack(const unsigned char *raw, size_t n, int try_compress, sl_buf *out,
                int *compressed) SL_WUR;
sl_code st_unpack(const unsigned char *p, size_t n, size_t max, sl_buf *out) SL_WUR;
/* The same without a copy: *raw points into p when the bytes were stored, into scratch
 * (reset) when they were compressed. */
sl_code st_unpack_view(const unsigned char *p, size_t n, size_t max, sl_buf *scratch,
                       const unsigned char **raw, size_t *len) SL_WUR;

/* ---- erasure coding (st_frag.c) ---- */

/*
 * A sealed chunk is cut into k data fragments and m parity fragments, one per storage
 * directory (Reed-Solomon over GF(2^8) with a Cauchy matrix, ISA-L): any k of the k + m
 * rebuild it. Each fragment carries a header and a CRC32C (Castagnoli) over header and
 * payload, so a damaged fragment is known and set aside rather than decoded:
 *   "SLF1", k u8, m u8, index u8, 0 u8, chunk length u32, payload length u32, CRC u32
 * (little-endian; the CRC covers the 20 bytes before it and the payload).
 * k >= 1, k + m <= ST_MAX_FRAGMENTS.
 */
#define ST_MAX_FRAGMENTS 32
#define ST_FRAG_HEAD     24
/* A buffer for file I/O (st_io_alloc): aligned for direct I/O, its size rounded up to a
 * multiple of the alignment so that whole blocks can be read into it. Freed by free(). */
#define ST_IO_ALIGN 4096
void *st_io_alloc(size_t n);

typedef struct {
    unsigned char *p; /* st_io_alloc'd; NULL when absent */
    size_t n;
} st_frag;

/* Fills out[0..k+m) with new fragments (the caller frees each p). */
sl_code st_frag_split(const unsigned char *chunk, size_t n, int k, int m, st_frag *out) SL_WUR;
/*
 * Rebuilds the chunk (appended to out) from the fragments given (absent ones NULL);
 * *bad gets a bit per fragment absent or damaged. SL_EINVALID when fewer than k intact
 * ones agree, or when they disagree on k, m or the length.
 */
sl_code st_frag_join(const st_frag *frags, int k, int m, sl_buf *out, uint32_t *bad) SL_WUR;
/* 1 when a fragment is well-formed with its CRC right, for index i of (k, m). */
int st_frag_check(const unsigned char *p, size_t n, int k, int m, int i);
/* CRC32C (Castagnoli), the standard one: "123456789" gives e3069283. */
uint32_t st_crc32c(const void *p, size_t n);

/* ---- chunks in the storage directories (st_store.c) ---- */

/* Where a chunk belongs; sealed into it as AAD, so a chunk moved, swapped or replayed
 * anywhere else does not open. */
typedef struct {
    int64_t dataset;
    int64_t version;
    uint32_t group;
    uint32_t column;
    uint32_t key_version;
} st_place;

/* The storage directories of a gateway: one fragment of every chunk in each; the last
 * `parity` of them hold parity fragments. Immutable after creation; thread-safe. */
typedef struct st_storage st_storage;
sl_code st_storage_new(const char *const *dirs, int ndirs, int parity, st_storage **out,
                       sl_err *err) SL_WUR;
void st_storage_free(st_storage *s);

typedef struct {
    size_t raw;     /* encoded chunk bytes */
    size_t stored;  /* bytes written over all directories */
    int compressed; /* igzip kept */
} st_chunk_info;

/*
 * Packs, seals under key (the version's data key) with the place as AAD, splits and
 * writes a chunk: one file per directory, written to a temporary name, fsynced and
 * renamed. The version's directories are made as needed (0700); st_storage_sync makes
 * their entries durable. Nothing in plaintext reaches the disk. SL_EIO on failure.
 */
sl_code st_chunk_write(const st_storage *s, const st_place *pl, const cry_key *key,
                       const unsigned char *raw, size_t n, st_chunk_info *info, sl_err *err) SL_WUR;
/* st_chunk_write without making each fragment durable on its own: for an upload, whose
 * fragments st_storage_sync then makes durable together before the version commits;
 * try_compress 0 stores the chunk without trying igzip (the caller knows it does not pay,
 * or that the time is better spent otherwise). */
sl_code st_chunk_put(const st_storage *s, const st_place *pl, const cry_key *key,
                     const unsigned char *raw, size_t n, int try_compress, st_chunk_info *info,
                     sl_err *err) SL_WUR;
/* Descriptors of the storage directories (ST_MAX_FRAGMENTS entries, -1 past the last),
 * opened before an upload writes anything, for st_storage_sync; closed by unwatch. */
sl_code st_storage_watch(const st_storage *s, int *fds, sl_err *err) SL_WUR;
void st_storage_unwatch(int *fds);
/* Makes a version's entries durable in every storage directory (its directory, the
 * dataset's, the storage root); with watch, first every file system's writeback, with
 * any write error since the watch began. */
sl_code st_storage_sync(const st_storage *s, int64_t dataset, int64_t version, const int *watch,
                        sl_err *err) SL_WUR;
/* Buffers a read reuses from chunk to chunk (st_chunkbuf_free wipes what they hold). */
typedef struct {
    sl_buf sealed, plain, raw;
} st_chunkbuf;
void st_chunkbuf_init(st_chunkbuf *b);
void st_chunkbuf_free(st_chunkbuf *b);
/*
 * Reads a chunk back: fragments from every directory, rebuilt from parity past any that
 * are missing or damaged (*bad gets a bit per such directory), opened and unpacked; its
 * raw bytes at *raw (n of them), inside b and valid until b's next use (a chunk of one
 * fragment is opened where it was read, a stored one left where it was opened).
 * SL_EUNAVAIL when too few fragments are left or what they make does not authenticate:
 * never wrong bytes.
 */
sl_code st_chunk_load(const st_storage *s, const st_place *pl, const cry_key *key, st_chunkbuf *b,
                      const unsigned char **raw, size_t *n, uint32_t *bad, sl_err *err) SL_WUR;
/* The same, the raw bytes appended to raw (a copy, with buffers of its own). */
sl_code st_chunk_read(const st_storage *s, const st_place *pl, const cry_key *key, sl_buf *raw,
                      uint32_t *bad, sl_err *err) SL_WUR;

/*
 * Checks a chunk (every fragment, and that they make a chunk that authenticates) and
 * writes anew, from parity, each fragment that is missing or damaged: *repaired gets a
 * bit per fragment rewritten. SL_EUNAVAIL when too few are left to rebuild it.
 */
sl_code st_chunk_scrub(const st_storage *s, const st_place *pl, const cry_key *key,
                       uint32_t *repaired, sl_err *err) SL_WUR;
/* Removes what a repair interrupted by a crash left of a live version (*.tmp). */
sl_code st_version_tidy(const st_storage *s, int64_t dataset, int64_t version, sl_err *err) SL_WUR;
/* Removes a version's fragments from every directory. */
sl_code st_version_remove(const st_storage *s, int64_t dataset, int64_t version,
                          sl_err *err) SL_WUR;
/* Calls fn for each version directory found (once per storage directory holding it);
 * fn returns 0 to skip the rest of that dataset. Missing storage directories are skipped. */
sl_code st_versions_each(const st_storage *s,
                         int (*fn)(void *ctx, int64_t dataset, int64_t version), void *ctx,
                         sl_err *err) SL_WUR;
/* Makes missing storage directories (a lost disk replaced by an empty one). */
sl_code st_storage_prepare(const st_storage *s, sl_err *err) SL_WUR;

/* ---- an upload: CSV to stored row groups (st_ingest.c) ---- */

/* A column as the dataset declares it; name only (has_type 0) lets the upload infer. */
typedef struct {
    const char *name;
    int has_type;
    st_type type;
} st_colspec;

/* A row group ends at SL_ROWS_PER_GROUP rows or once its fields hold this many bytes,
 * whichever comes first: an upload's memory is a few groups, whatever its rows. */
#define ST_GROUP_BYTES (8 * 1024 * 1024)
typedef struct st_ingest st_ingest;
/*
 * An upload of version `version` of dataset `dataset`, its chunks sealed under key
 * (key_version recorded in each chunk's place). With declared columns (n > 0) the CSV
 * header must name exactly those, in that order; their declared types are enforced and
 * the others inferred from the first row group (SL_ROWS_PER_GROUP rows). Nothing is
 * visible until the caller commits the manifest; a failed upload leaves fragments the
 * caller removes (or recovery does). Borrowed arguments must outlive the ingest.
 */
st_ingest *st_ingest_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
                         uint32_t key_version, const st_colspec *declared, size_t n);
void st_ingest_free(st_ingest *g);
/* The next piece of the CSV body; SL_EINVALID/SL_ETOOLARGE name line and column. */
sl_code st_ingest_feed(st_ingest *g, const char *data, size_t n, sl_err *err) SL_WUR;
/*
 * The end of the body: writes the last row group, syncs the directories and gives the
 * manifest (new reference): {"rows", "bytes_in", "bytes_stored", "sha256" (of the body),
 * "columns": [{"name","type"}], "groups": [{"rows", "chunks": [{"raw","stored",
 * "compressed"}]}]}.
 */
sl_code st_ingest_finish(st_ingest *g, json_t **manifest, sl_err *err) SL_WUR;

/* ---- served formats (st_format.c) ---- */

/*
 * What a read streams, a row group at a time. csv: a header row, RFC 4180 quoting where a
 * field needs it, LF line ends, null as an empty field and the empty string as "".
 * jsonl: one object per row in column order, null as null, int64 as all its digits, a
 * float64 always with a point or an exponent (100.0, -0.0) so JSON reads it as a float.
 * npy: NumPy's format 1.0, a little-endian float64 C-order matrix of numeric and bool
 * columns (bool 0/1, null NaN); its header holds the row count, so it must be known.
 * float64 prints as the shortest text that reads back to the same bits.
 */
/* ST_OUT_FRAMES: the compute zone's frames (compute/cmp.h), never served over HTTP: per
 * slice of rows, per column, a CMP_F_COLUMN frame (float64 values, NaN for null; int64 and
 * bool converted) or a CMP_F_STRCOL frame (strings), split so no payload passes
 * ST_FRAME_MAX. */
typedef enum { ST_OUT_CSV, ST_OUT_JSONL, ST_OUT_NPY, ST_OUT_FRAMES } st_out;
#define ST_FRAME_MAGIC  "SLZ1"
#define ST_FRAME_COLUMN 1
#define ST_FRAME_STRCOL 6
#define ST_FRAME_MAX    (4u << 20)
sl_code st_out_parse(const char *name, st_out *out) SL_WUR;
const char *st_out_ctype(st_out f);
/* The beginning of the output (csv's header row, npy's header); nothing for jsonl. For
 * npy every column must be numeric or bool (SL_EINVALID otherwise). */
sl_code st_out_begin(st_out f, const char *const *names, const st_type *types, size_t ncols,
                     uint64_t rows, sl_buf *out) SL_WUR;
/* Rows [from, to) of a row group's columns (the projected ones, in order). */
sl_code st_out_rows(st_out f, const char *const *names, const st_column *cols, size_t ncols,
                    uint32_t from, uint32_t to, sl_buf *out) SL_WUR;

/* ---- reading a version (st_read.c) ---- */

/*
 * A view every row group of a read passes through before it is formatted: the policy's,
 * which the gateway builds (the store knows nothing of policies). keep (NULL: every row)
 * marks the rows that pass, keep[r] 1, given the group's decoded columns by manifest
 * index (bycol[i] NULL for a column not decoded; float64 ones with their values); it
 * reads only the columns `extra` lists (manifest indexes), which the reader decodes
 * whether projected or not. mask (NULL: none), for each projected column i with
 * masked[i] set, fills out (a column of masked_types[i], reset) with in's rows masked.
 * Both may run on two threads at once (the read-ahead's and the caller's) and fail the
 * read by returning an error. Everything is borrowed for the reader's lifetime.
 * With keep, offset and limit count the rows that pass; and an npy read counts them
 * first (a pass over the extra columns), because its header holds the row count.
 */
typedef struct {
    const size_t *extra;
    size_t nextra;
    sl_code (*keep)(void *ctx, const st_column *const *bycol, uint32_t rows, uint8_t *keep);
    const uint8_t *masked;
    const st_type *masked_types;
    sl_code (*mask)(void *ctx, size_t col, const st_column *in, st_column *out);
    void *ctx;
} st_view;

/*
 * A read of a stored version, a row group at a time: the projected columns (indexes into
 * the manifest's columns, in the order wanted; NULL and 0 = all), rows [offset, offset +
 * limit) (limit < 0: to the end), in a format, through a view (NULL: none). Without a
 * row filter, groups before the offset are skipped without being read. Memory: two row
 * groups of the columns read. The manifest is borrowed (as st_ingest_finish made it) and
 * checked for shape.
 */
typedef struct st_reader st_reader;
sl_code st_reader_new(const st_storage *s, const cry_key *key, int64_t dataset, int64_t version,
                      uint32_t key_version, const json_t *manifest, const size_t *cols,
                      size_t ncols, uint64_t offset, int64_t limit, st_out fmt, const st_view *view,
                      st_reader **out, sl_err *err) SL_WUR;
/* A piece holds at most ST_READ_SLICE rows, and stops growing past ST_READ_BYTES (16 rows
 * at most after it): a group is read whole, then given a slice at a time. */
#define ST_READ_SLICE 2048
#define ST_READ_BYTES (1024 * 1024)
/* Appends the next piece (the beginning, then a slice of a group's rows): 1 more to
 * come, 0 done, -1 on failure (err: SL_EUNAVAIL when storage cannot give a chunk back
 * intact). */
int st_reader_next(st_reader *r, sl_buf *out, sl_err *err);
/* Fragments rebuilt from parity so far (missing or damaged ones read around). */
uint64_t st_reader_rebuilt(const st_reader *r);
/* Rows output so far (after the view's filter). */
uint64_t st_reader_rows(const st_reader *r);
void st_reader_free(st_reader *r);

#endif

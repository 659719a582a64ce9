/*
 * policy/pol.h: policies over datasets: row filters, the expressions a policy statement's
 * `row_filter` holds (`region == "EU" and consent == true`), compiled once against a
 * dataset's schema and evaluated over whole row groups on every read; policy documents,
 * validated and compiled; and decisions, with what decided them and the view (denied
 * columns, masks, row filters) a read applies. No I/O.
 */
#ifndef POL_H
#define POL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cry.h"
#include "sl.h"

/*
 * Row filters: the language.
 *
 * The text is UTF-8 (any invalid byte is refused). Tokens may be separated by spaces,
 * tabs, carriage returns and line feeds. Grammar, lowest precedence first:
 *
 *   filter     := or
 *   or         := and ('or' and)*
 *   and        := unary ('and' unary)*
 *   unary      := 'not' unary | '(' or ')' | comparison
 *   comparison := operand op operand                  op: == != < <= > >=
 *               | column 'in' '[' literal (',' literal)* ']'
 *               | column 'not' 'in' '[' literal (',' literal)* ']'
 *   operand    := column | literal
 *   literal    := string | number | 'true' | 'false' | 'null'
 *
 * So `a or b and not c` is `a or (b and (not c))`, and `not x == 1` is `not (x == 1)`.
 * A comparison needs a column on at least one side (`1 < age` is `age > 1`); nothing
 * chains (`a < b < c` is refused), and a column alone is not a condition (write
 * `consent == true`). A list is not empty and holds literals only, never null.
 *
 * Keywords, lower case only and reserved: and or not in true false null.
 * Columns: an identifier [A-Za-z_][A-Za-z0-9_]* that is not a keyword, or any name in
 * backquotes (`my column`, `in`; a doubled backquote stands for one), matched exactly
 * (bytes, case-sensitive) against the schema.
 * Strings: double quotes, with JSON's escapes \" \\ \/ \b \f \n \r \t \uXXXX (a UTF-16
 * surrogate pair is one character; a lone surrogate and \u0000 are refused); no raw
 * control character (U+0000-U+001F, U+007F) inside.
 * Numbers: JSON's grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, directly
 * followed by neither a letter, a digit, '_' nor '.'. Without fraction and exponent a
 * number is an integer and exact whatever its size; with either it is the double nearest
 * to it (so `score == 0.1` finds the float64 0.1, and -0.0 is 0). A number whose value
 * is beyond the largest double is refused.
 *
 * Types, checked when the filter is compiled (each mismatch refused, naming the column):
 *   int64 and float64 columns compare with numbers and with each other, by their exact
 *     mathematical values (never through a rounding conversion: the int64
 *     9007199254740993 is greater than the float64 9007199254740992.0);
 *   string columns with strings and string columns, in byte order (UTF-8's byte order is
 *     code point order; a prefix sorts first);
 *   bool columns with true, false and bool columns, by ==, != and in only;
 *   null only in `column == null` and `column != null`, the tests of nullness.
 *
 * Meaning: SQL's three-valued logic. A comparison reading a null value is UNKNOWN (the
 * null tests excepted: they are TRUE or FALSE); `not` UNKNOWN is UNKNOWN; `and` is FALSE
 * when either side is FALSE, `or` TRUE when either side is TRUE, otherwise UNKNOWN wins
 * over TRUE (and) or FALSE (or). `in` is TRUE when the value equals an item, FALSE when it
 * equals none. A row passes only when the whole filter is TRUE: `not (age == 30)` passes
 * no row whose age is null. A filter fails closed.
 *
 * Limits: the ones below, each SL_ETOOLARGE.
 */

/* The text of one filter: a condition written by a data owner is a line or a paragraph,
 * not a program; 4 KiB bounds compile time and memory whatever is sent. */
#define POL_FILTER_MAX_BYTES 4096
/* Nesting: a comparison sits under at most this many parentheses, `not`s, `and`s and
 * `or`s (a chain `a and b and c` counts once). Bounds the parser's and the evaluator's
 * recursion and the evaluator's scratch memory. */
#define POL_FILTER_MAX_DEPTH 32
/* Comparisons plus `and`, `or` and `not` operators in one filter: each costs a pass over
 * the row group, so this bounds the work a filter adds to every read. */
#define POL_FILTER_MAX_NODES 512
/* Items of one `in` list (duplicates count): enough for a list of countries or ids. */
#define POL_FILTER_MAX_LIST 1024
/* Bytes of one decoded string literal: a key to compare with, not a document. */
#define POL_FILTER_MAX_STRING 1024

/* The column types, in the store's order (st_type). */
typedef enum { POL_FLOAT64, POL_INT64, POL_BOOL, POL_STRING } pol_type;

/* "float64", "int64", "bool", "string". */
const char *pol_type_name(pol_type t);

/* One column of a dataset's schema: its NUL-terminated name, its type, and its tags
 * (which only policies read; filters need name and type). Borrowed. */
typedef struct {
    const char *name;
    pol_type type;
    const char *const *tags;
    size_t ntags;
} pol_column;

typedef struct pol_filter pol_filter;

/*
 * Parses `text` (n bytes, not NUL-terminated; NULL when n is 0) and type-checks it
 * against the schema (ncols columns, names unique). On SL_OK *out owns the compiled
 * filter (pol_filter_free), which keeps no pointer to text or cols. Otherwise *out is
 * NULL and err (NULL allowed) says why, with the 1-based position of the character
 * (a code point, not a byte) where the mistake is:
 *   `row filter, character 12: column "age" is int64, not comparable with a string`.
 * Messages may name a column but never repeat a literal.
 * SL_EINVALID: anything the language above refuses, an empty text, invalid UTF-8, an
 * unknown column, a column named twice in the schema;
 * SL_ETOOLARGE: past one of the POL_FILTER_MAX_* limits;
 * SL_EINTERNAL: out of memory.
 * Time and memory are linear in n (names are looked up among ncols). Thread-safe.
 * A caller's bug aborts (sl_panic): out NULL, text or cols NULL with a length, a schema
 * name NULL or a type out of range.
 */
sl_code pol_filter_compile(const char *text, size_t n, const pol_column *cols, size_t ncols,
                           pol_filter **out, sl_err *err) SL_WUR;

/* Frees a compiled filter; NULL does nothing. */
void pol_filter_free(pol_filter *f);

/*
 * The schema indexes of the columns the filter reads, ascending, each once: the caller
 * decodes them for evaluation even when they are not projected. Writes at most max of
 * them to idx (NULL allowed when max is 0) and returns how many there are.
 */
size_t pol_filter_columns(const pol_filter *f, uint32_t *idx, size_t max);

/*
 * One column of a row group as the caller holds it (the store's in-memory column):
 * nulls[rows], 1 = null (NULL: no nulls); then by type int64 i64[rows], float64 f64[rows]
 * (finite), bool b[rows] (0 or 1 bytes; any non-zero is true), or string off[rows + 1]
 * ascending offsets into str (valid UTF-8; str may be NULL when off[rows] is 0).
 * Null rows must hold some value (the store has zeros there): it is read, not used.
 */
typedef struct {
    pol_type type;
    const uint8_t *nulls;
    const int64_t *i64;
    const double *f64;
    const uint8_t *b;
    const uint32_t *off;
    const char *str;
} pol_colview;

/*
 * Evaluates the filter over `rows` rows of a row group: keep[r] = 1 when the filter is
 * TRUE for row r, else 0 (FALSE or UNKNOWN). cols is indexed like the schema the filter
 * was compiled against; only the columns pol_filter_columns names are read (their type
 * must be the schema's, their value array present), the others may be zeroed.
 * keep is zeroed first, so on failure no row passes: SL_ETOOLARGE when rows is over
 * SL_ROWS_PER_GROUP, SL_EINTERNAL when a column read is missing or of another type, or
 * when memory runs out (scratch, allocated per call: 8 KiB and 4 KiB per nesting level).
 * The filter is not modified: one filter may be evaluated by many threads at once.
 * f NULL, or cols or keep NULL with rows, aborts (sl_panic).
 */
sl_code pol_filter_eval(const pol_filter *f, const pol_colview *cols, uint32_t rows,
                        uint8_t *keep) SL_WUR;

/*
 * The same with out[r] = 1 where the filter is FALSE, 0 where it is TRUE or UNKNOWN: what
 * `not (filter)` keeps, e.g. the rows a deny statement's filter leaves visible. Never use
 * 1 - keep[r] for that: it would also show the rows where the filter is UNKNOWN (reads a
 * null). Same contract, errors and thread-safety as pol_filter_eval.
 */
sl_code pol_filter_eval_false(const pol_filter *f, const pol_colview *cols, uint32_t rows,
                              uint8_t *out) SL_WUR;

/* ---- policy documents and decisions (pol_policy.c) ---- */

/*
 * Actions, one bit each; a statement's "*" is every bit (but see restricted datasets:
 * dataset.read is never granted on one, whatever a statement says).
 */
#define POL_ACT_DESCRIBE 0x01u
#define POL_ACT_READ     0x02u
#define POL_ACT_WRITE    0x04u
#define POL_ACT_DELETE   0x08u
#define POL_ACT_MANAGE   0x10u
#define POL_ACT_FEATURES 0x20u
#define POL_ACT_TRAIN    0x40u
#define POL_ACT_AUDIT    0x80u
#define POL_ACT_ALL      0xffu
/* "dataset.read" → POL_ACT_READ; SL_EINVALID for anything else ("*" included). */
sl_code pol_action_parse(const char *s, uint32_t *out) SL_WUR;
const char *pol_action_name(uint32_t action); /* one bit; "?" otherwise */

/*
 * Masks. When several statements mask one column they combine: null (no value at all)
 * wins over everything, then redact (a constant); hash (a keyed pseudonym: equal values
 * stay equal within a dataset, so it links rows), year (keeps a date's year) and partial
 * (keeps the last 4 characters) each reveal something the others hide, so two different
 * ones of those three make redact. Which types each takes: pol_mask_fits.
 */
typedef enum {
    POL_MASK_NONE = 0,
    POL_MASK_PARTIAL,
    POL_MASK_YEAR,
    POL_MASK_HASH,
    POL_MASK_REDACT,
    POL_MASK_NULL
} pol_mask;
const char *pol_mask_name(pol_mask m);
sl_code pol_mask_parse(const char *s, pol_mask *out) SL_WUR; /* not "none" */
/* partial: string and int64 columns; year: string columns; hash, redact, null: any. */
int pol_mask_fits(pol_mask m, pol_type t);

/* Limits of documents: far above what an owner writes by hand, small enough that a
 * decision stays one short pass. */
#define POL_MAX_ID          64   /* a statement id */
#define POL_MAX_STATEMENTS  256  /* statements in one document */
#define POL_MAX_LIST        256  /* entries in one list (names, purposes, columns) */
#define POL_MAX_GLOBALS     256  /* global policies */
#define POL_MAX_COMPILED    4096 /* statements applying to one dataset, globals included */
#define POL_MAX_COLUMNS     4096 /* SL_MAX_CSV_COLUMNS */
#define POL_MAX_COLUMN_NAME 128
#define POL_MAX_APPLIED     256 /* statements applying to one request (more: refused) */
#define POL_MAX_DECIDING    256
#define POL_SUBJECT_MAX     32 /* SL_MAX_ROLES, SL_MAX_ATTRIBUTES */

/*
 * The dataset a policy is about: its classification ("public", "internal",
 * "confidential", "restricted") and its columns with their tags. Borrowed.
 */
typedef struct {
    const char *classification;
    const pol_column *cols;
    size_t ncols;
} pol_dataset;

/*
 * Validation of a dataset's policy document, {"statements": [...]}, as a client sent it
 * (jansson value, borrowed). Each statement: "id" (1 to 64 of [A-Za-z0-9_.-], unique),
 * "effect" ("allow" | "deny"), "principals" ({"roles"?, "names"?, "attributes"?}, at
 * least one non-empty; it applies to a principal when every given one matches: one of
 * the roles, one of the names, all the attributes), "actions" (non-empty; names or "*"),
 * "purposes"? (the request's purpose must be one of them when non-empty), "not_before"?,
 * "not_after"? (RFC 3339 or null), "columns"? ({"deny": [...], "mask": {col: kind}}),
 * "row_filter"? (text of the row-filter language, or null), "description"?. Columns are
 * named as in the dataset or "tag:<tag>" (every column with that tag). Unknown fields,
 * unknown columns, a mask a column's type cannot take, a column both denied and masked,
 * a filter that does not compile, and on a restricted dataset any statement naming
 * dataset.read: SL_EINVALID with a message naming the statement and the field.
 */
sl_code pol_doc_check(const json_t *doc, const pol_dataset *ds, sl_err *err) SL_WUR;
/*
 * A global policy, {"applies_to": {"classifications"?, "tags"?}, "statements": [...]}:
 * it applies to the datasets of a listed classification and to those with a column
 * carrying a listed tag. Statements as above, checked without a dataset: column names
 * and filters are resolved per dataset when compiled.
 */
sl_code pol_global_check(const json_t *doc, sl_err *err) SL_WUR;

typedef struct {
    const char *name;  /* the global policy's name */
    const json_t *doc; /* borrowed */
    int64_t version;
} pol_global;

/*
 * A dataset's policy compiled with the global policies that apply to it: what decides
 * its requests. doc (NULL: the dataset has none) and the globals are checked again
 * (except that a statement naming dataset.read compiles on a dataset raised to
 * restricted since: the decision never grants that read).
 * A global statement reaching a column by name that this dataset lacks restricts
 * nothing there; one whose mask the column's type cannot take masks it null; one whose
 * row filter names a column the dataset lacks cannot restrict the view as it should, so
 * it denies the requests it applies to, allow or deny (never served unfiltered).
 * Immutable once made: any number of threads may decide with it at once.
 */
typedef struct pol_compiled pol_compiled;
sl_code pol_compile(const pol_dataset *ds, const json_t *doc, int64_t doc_version,
                    const pol_global *globals, size_t nglobals, pol_compiled **out,
                    sl_err *err) SL_WUR;
void pol_compiled_free(pol_compiled *p);
/* The documents it was made from ("dataset", then "global:<name>" for each that applies)
 * with their versions; returns how many (fills at most max). */
size_t pol_compiled_sources(const pol_compiled *p, const char **names, int64_t *versions,
                            size_t max);
size_t pol_compiled_statements(const pol_compiled *p);

/* Who asks: strings borrowed for the decision's lifetime. is_owner: the dataset's owner. */
typedef struct {
    const char *name;
    uint64_t name_h;
    const char *roles[POL_SUBJECT_MAX];
    uint64_t role_h[POL_SUBJECT_MAX];
    size_t nroles;
    const char *akeys[POL_SUBJECT_MAX], *avals[POL_SUBJECT_MAX];
    uint64_t attr_h[POL_SUBJECT_MAX];
    size_t nattrs;
    int is_owner, truncated;
} pol_subject;
void pol_subject_init(pol_subject *s, const char *name, const char *const *roles, size_t nroles,
                      const char *const *akeys, const char *const *avals, size_t nattrs,
                      int is_owner);

typedef struct {
    uint32_t action;     /* one POL_ACT_ bit */
    const char *purpose; /* X-Sluice-Purpose, or NULL */
    uint64_t purpose_h;
    int64_t now_us;
} pol_request;
void pol_request_init(pol_request *r, uint32_t action, const char *purpose, int64_t now_us);

/*
 * A decision. The statements that apply to a request are those whose action, validity
 * window, purposes and principals all match. In this order:
 *  1. an applying deny statement without restrictions (no columns, no row filter), or an
 *     applying statement whose row filter cannot apply to the dataset, denies;
 *  2. dataset.read on a restricted dataset is denied, whatever allows it;
 *  3. an applying allow statement, or the owner's implicit right (describe, read, write,
 *     delete, manage), allows;
 *  4. otherwise deny.
 * An allowed request's view is restricted by every applying statement, allow or deny:
 * denied columns are the union, masks combine (see pol_mask), and the row filters
 * all hold (an allow's filter keeps the rows it matches; a deny's drops them). A row
 * whose filter is unknown (a null compared) is dropped.
 * `deciding` holds the deny statements (denied in 1) or the allow statements (allowed);
 * `applied` every statement whose restrictions hold. Refers to p, which must outlive it.
 */
typedef struct {
    int allow;
    int owner_right; /* allowed (also) by the owner's implicit right */
    const pol_compiled *policy;
    uint32_t deciding[POL_MAX_DECIDING];
    size_t ndeciding;
    uint32_t applied[POL_MAX_APPLIED];
    size_t napplied;
    char reason[160]; /* for the trail and the client: ids, never values */
} pol_decision;
void pol_decide(const pol_compiled *p, const pol_subject *who, const pol_request *req,
                pol_decision *d);
/* The id of deciding statement i ("s1", "global:<name>/s1"), NULL past the end. */
const char *pol_decision_statement(const pol_decision *d, size_t i);
/* Per column of the dataset (arrays of ncols): denied 1/0, and the mask (pol_mask). */
void pol_decision_view(const pol_decision *d, uint8_t *denied, uint8_t *mask);
/* The row filters that hold, with negate[i] 1 for a deny's (rows it matches dropped).
 * Returns how many there are; fills at most max. */
size_t pol_decision_filters(const pol_decision *d, const pol_filter **f, int *negate, size_t max);
/* Their text, "(a) and not (b)", appended to out (nothing when none). */
sl_code pol_decision_filter_text(const pol_decision *d, sl_buf *out) SL_WUR;
/* The id listed for the owner's implicit right (not a valid statement id). */
#define POL_OWNER_ID "(owner)"
/* What stands for a row filter's text where it may not be shown. */
#define POL_FILTER_WITHHELD "(withheld)"
/*
 * The decision as /v1/authorize and the audit trail show it: {"decision", "statements"
 * (deciding ids, then POL_OWNER_ID when the owner's right allowed), "masked_columns"
 * {name: kind}, "denied_columns" [names], "reason", "row_filter" (the text when
 * show_filter, else POL_FILTER_WITHHELD; null when none), "policy_versions" {source:
 * version}}. ds is the dataset p was compiled for. A new reference.
 */
json_t *pol_decision_json(const pol_decision *d, const pol_dataset *ds, int show_filter);

/* ---- masks (pol_mask.c) ---- */

/*
 * Appends value p[0..n) (valid UTF-8: the value as served, a float64's shortest text, an
 * int64's digits, a bool's true/false) masked by m to out, or sets *is_null when the
 * masked value is null. hash: 64 lowercase hex digits of HMAC-SHA-256 under key (the
 * dataset's mask key; SL_EINTERNAL when NULL); redact: "[redacted]"; null: null;
 * partial: every character but the last 4 becomes '*' (a value of at most 4 characters:
 * all of them); year: the first 4 digits of a value that begins YYYY and then ends or
 * goes on with '-', else null. A null value is never passed (it stays null).
 */
sl_code pol_mask_value(pol_mask m, const cry_mac *key, const char *p, size_t n, sl_buf *out,
                       int *is_null) SL_WUR;

#endif

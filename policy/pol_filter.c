/*
 * policy/pol_filter.c: row filters. A recursive-descent parser of bounded depth reads the
 * text once, type-checks each comparison as it reads it and compiles it into a leaf
 * specialised for its types; the evaluator runs the tree over blocks of rows, one tight
 * loop per leaf, in three-valued logic.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pol.h"

/* ---- the compiled form ---- */

/* Comparisons are kept as ==, < or <= and a negation: on non-null values != is not ==,
 * > is not <=, >= is not <; on null values both sides are UNKNOWN, which negation keeps. */
enum { OP_EQ, OP_LT, OP_LE };

enum {
    N_AND, /* children: first `child`, then each one's `next` */
    N_OR,
    L_CONST,   /* i (0 or 1) for every non-null value of column a */
    L_ISNULL,  /* column a is null: TRUE or FALSE, never UNKNOWN */
    L_I64,     /* a op i */
    L_F64,     /* a op d */
    L_BOOL,    /* a == i */
    L_STR,     /* a op the literal pool[first, first + count) */
    L_I64_I64, /* a op b, columns */
    L_F64_F64,
    L_I64_F64, /* int64 a op float64 b, exactly */
    L_BOOL_BOOL,
    L_STR_STR,
    L_IN_I64, /* a in ints[first, first + count), sorted, unique */
    L_IN_F64, /* a in dbls[...] */
    L_IN_STR, /* a in strs[...], sorted by length then bytes */
    L_IN_BOOL /* i: bit 0 when false is listed, bit 1 when true is */
};

#define NONE UINT32_MAX

typedef struct {
    uint8_t kind, op;
    uint8_t neg; /* the outcome negated (pushed down to the leaves once parsed) */
    uint32_t a, b;
    uint32_t child, next;
    uint32_t first, count;
    int64_t i;
    double d;
} node;

typedef struct {
    uint32_t off, len;
} strref;

struct pol_filter {
    node *nodes;
    uint32_t nnodes, root;
    uint32_t levels; /* scratch levels the evaluation needs */
    int64_t *ints;
    double *dbls;
    strref *strs;
    uint32_t nints, ndbls, nstrs;
    char *pool; /* string literals, decoded */
    size_t npool;
    uint32_t *used; /* the columns read, ascending */
    uint8_t *used_type;
    size_t nused;
};

/* ---- the parser ---- */

typedef enum {
    T_END,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_OP,
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_NAME,
    T_STRING,
    T_NUMBER
} tkind;

/* The operators as written; flip[] is the operator with its sides swapped. */
enum { W_EQ, W_NE, W_LT, W_LE, W_GT, W_GE };
static const char *const op_quoted[] = {"'=='", "'!='", "'<'", "'<='", "'>'", "'>='"};
static const int flip[] = {W_EQ, W_NE, W_GT, W_GE, W_LT, W_LE};
static const uint8_t norm_op[] = {OP_EQ, OP_EQ, OP_LT, OP_LE, OP_LE, OP_LT};
static const uint8_t norm_neg[] = {0, 1, 0, 0, 1, 1};

/* A number literal. */
typedef enum {
    NUM_INT, /* an integer within int64: i */
    NUM_BIG, /* an integer beyond int64: d is the nearest double, side the exact value's
              * place (-1 below d, 0 equal, +1 above) */
    NUM_DBL  /* written with a fraction or an exponent: the double d */
} numkind;

typedef struct {
    numkind kind;
    int side;
    int64_t i;
    double d;
} num;

typedef struct {
    tkind kind;
    size_t at;        /* the token's first byte */
    int op;           /* T_OP */
    const char *name; /* T_NAME: the name (into the text or the scratch), nlen bytes */
    size_t nlen;
    uint32_t soff, slen; /* T_STRING: decoded into the pool */
    num v;               /* T_NUMBER */
} token;

typedef enum { O_COL, O_NUM, O_STR, O_BOOL, O_NULL } okind;

typedef struct {
    okind kind;
    size_t at;
    uint32_t col;
    num v;
    uint32_t soff, slen;
    int b;
} operand;

typedef struct {
    const char *p;
    size_t n, i;
    const pol_column *cols;
    size_t ncols;
    sl_err *err;
    token t;
    pol_filter *f;
    uint32_t cap_nodes, cap_ints, cap_dbls, cap_strs;
    unsigned count;    /* comparisons and operators so far */
    char *scratch;     /* n + 1 bytes: a backquoted name or a number's text */
    char shown[2][64]; /* column names cleaned for messages */
} parser;

static const char *const type_names[] = {"float64", "int64", "bool", "string"};

/* The 1-based character (code point) at byte `at` of valid UTF-8 text. */
static size_t
char_pos(const char *p, size_t at)
{
    size_t i, k = 1;

    for (i = 0; i < at; i++)
        k += ((unsigned char)p[i] & 0xc0) != 0x80;
    return k;
}

static sl_code fail(parser *ps, sl_code code, size_t at, const char *fmt, ...) SL_PRINTF(4, 5);

static sl_code
fail(parser *ps, sl_code code, size_t at, const char *fmt, ...)
{
    char why[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return sl_err_set(ps->err, code, "row filter, character %zu: %s", char_pos(ps->p, at), why);
}

/* A column name for a message: control characters as '?', cut at 40 bytes. */
static const char *
shown(parser *ps, int slot, const char *name, size_t n)
{
    char *out = ps->shown[slot];

    sl_text_clean(out, name, n, 40);
    if (strlen(out) < n)
        memcpy(out + strlen(out), "...", 4);
    return out;
}

static const char *
col_shown(parser *ps, int slot, uint32_t col)
{
    const char *name = ps->cols[col].name;
    return shown(ps, slot, name, strlen(name));
}

static const char *
found(const token *t)
{
    switch (t->kind) {
    case T_END:
        return "the end of the filter";
    case T_LPAREN:
        return "'('";
    case T_RPAREN:
        return "')'";
    case T_LBRACK:
        return "'['";
    case T_RBRACK:
        return "']'";
    case T_COMMA:
        return "','";
    case T_OP:
        return op_quoted[t->op];
    case T_AND:
        return "'and'";
    case T_OR:
        return "'or'";
    case T_NOT:
        return "'not'";
    case T_IN:
        return "'in'";
    case T_TRUE:
        return "'true'";
    case T_FALSE:
        return "'false'";
    case T_NULL:
        return "'null'";
    case T_NAME:
        return "a column name";
    case T_STRING:
        return "a string";
    case T_NUMBER:
        return "a number";
    }
    return "?";
}

/* Room for `need` elements in *arr (capacity doubling). */
static sl_code
reserve(void **arr, uint32_t *cap, uint32_t need, size_t size)
{
    uint32_t c = *cap ? *cap : 8;
    void *p;

    if (need <= *cap)
        return SL_OK;
    while (c < need)
        c *= 2;
    p = reallocarray(*arr, c, size);
    if (p == NULL)
        return SL_EINTERNAL;
    *arr = p;
    *cap = c;
    return SL_OK;
}

static sl_code
oom(parser *ps)
{
    return sl_err_set(ps->err, SL_EINTERNAL, "row filter: out of memory");
}

/* The byte offset of the first invalid UTF-8 sequence, or n. */
static size_t
utf8_bad(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 2;
        else if (c >= 0xe0 && c <= 0xef)
            k = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 4;
        else
            return i;
        if (n - i < k || (p[i + 1] & 0xc0) != 0x80)
            return i;
        if ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) ||
            (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90))
            return i; /* overlong, surrogate, above U+10FFFF */
        if (k >= 3 && (p[i + 2] & 0xc0) != 0x80)
            return i;
        if (k == 4 && (p[i + 3] & 0xc0) != 0x80)
            return i;
        i += k;
    }
    return n;
}

static int
is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int
ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
ident_char(int c)
{
    return ident_start(c) || is_digit(c);
}

static int
hex4(const unsigned char *p, size_t i, size_t n, unsigned *out)
{
    unsigned v = 0;
    size_t k;

    if (i > n || n - i < 4)
        return 0;
    for (k = 0; k < 4; k++) {
        int c = p[i + k], d;
        if (is_digit(c))
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

/* A string literal from the opening quote at ps->i, decoded onto the end of the pool
 * (never longer than its text, so the pool of n bytes always has room). */
static sl_code
lex_string(parser *ps)
{
    const unsigned char *p = (const unsigned char *)ps->p;
    size_t n = ps->n, start = ps->i, i = start + 1, len = 0;
    char *out = ps->f->pool + ps->f->npool;

    for (;;) {
        unsigned c, cp;
        unsigned char enc[4];
        size_t k;

        if (i >= n)
            return fail(ps, SL_EINVALID, start, "string never closed");
        c = p[i];
        if (c == '"') {
            i++;
            break;
        }
        if (c < 0x20 || c == 0x7f)
            return fail(ps, SL_EINVALID, i, "control character in a string (write it escaped)");
        if (c != '\\') {
            enc[0] = (unsigned char)c;
            k = 1;
            i++;
        } else {
            size_t esc = i;
            if (i + 1 >= n)
                return fail(ps, SL_EINVALID, start, "string never closed");
            k = 1;
            switch (p[i + 1]) {
            case '"':
            case '\\':
            case '/':
                enc[0] = p[i + 1];
                break;
            case 'b':
                enc[0] = '\b';
                break;
            case 'f':
                enc[0] = '\f';
                break;
            case 'n':
                enc[0] = '\n';
                break;
            case 'r':
                enc[0] = '\r';
                break;
            case 't':
                enc[0] = '\t';
                break;
            case 'u':
                k = 0;
                break;
            default:
                return fail(ps, SL_EINVALID, esc, "unknown escape in a string");
            }
            i += 2;
            if (k == 0) {
                if (!hex4(p, i, n, &cp))
                    return fail(ps, SL_EINVALID, esc,
                                "\\u in a string must be followed by four hexadecimal digits");
                i += 4;
                if (cp == 0)
                    return fail(ps, SL_EINVALID, esc, "\\u0000 is not allowed in a string");
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return fail(ps, SL_EINVALID, esc, "lone surrogate in a \\u escape");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (i + 1 >= n || p[i] != '\\' || p[i + 1] != 'u' || !hex4(p, i + 2, n, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff)
                        return fail(ps, SL_EINVALID, esc, "lone surrogate in a \\u escape");
                    i += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp < 0x80) {
                    enc[0] = (unsigned char)cp;
                    k = 1;
                } else if (cp < 0x800) {
                    enc[0] = (unsigned char)(0xc0 | cp >> 6);
                    enc[1] = (unsigned char)(0x80 | (cp & 0x3f));
                    k = 2;
                } else if (cp < 0x10000) {
                    enc[0] = (unsigned char)(0xe0 | cp >> 12);
                    enc[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                    enc[2] = (unsigned char)(0x80 | (cp & 0x3f));
                    k = 3;
                } else {
                    enc[0] = (unsigned char)(0xf0 | cp >> 18);
                    enc[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
                    enc[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
                    enc[3] = (unsigned char)(0x80 | (cp & 0x3f));
                    k = 4;
                }
            }
        }
        if (len + k > POL_FILTER_MAX_STRING)
            return fail(ps, SL_ETOOLARGE, start, "string longer than the limit of %d bytes",
                        POL_FILTER_MAX_STRING);
        memcpy(out + len, enc, k);
        len += k;
    }
    ps->t.kind = T_STRING;
    ps->t.soff = (uint32_t)ps->f->npool;
    ps->t.slen = (uint32_t)len;
    ps->f->npool += len;
    ps->i = i;
    return SL_OK;
}

/* A backquoted name from the backquote at ps->i, decoded into the scratch. */
static sl_code
lex_name(parser *ps)
{
    const char *p = ps->p;
    size_t n = ps->n, start = ps->i, i = start + 1, len = 0;

    for (;;) {
        if (i >= n)
            return fail(ps, SL_EINVALID, start, "backquoted name never closed");
        if (p[i] == '`') {
            if (i + 1 < n && p[i + 1] == '`') {
                ps->scratch[len++] = '`';
                i += 2;
                continue;
            }
            i++;
            break;
        }
        ps->scratch[len++] = p[i++];
    }
    if (len == 0)
        return fail(ps, SL_EINVALID, start, "empty column name");
    ps->t.kind = T_NAME;
    ps->t.name = ps->scratch;
    ps->t.nlen = len;
    ps->i = i;
    return SL_OK;
}

/* -1, 0 or 1 as the integer written in decimal digits dig[0..n) (no leading zero) is below,
 * equal to or above |d|, an integral double (printed exactly by glibc's %.0f). */
static int
digits_vs_double(const char *dig, size_t n, double d)
{
    char buf[400];
    size_t m;
    int c;

    snprintf(buf, sizeof buf, "%.0f", fabs(d));
    m = strlen(buf);
    if (n != m)
        return n < m ? -1 : 1;
    c = memcmp(dig, buf, n);
    return (c > 0) - (c < 0);
}

/* A number from ps->i: JSON's grammar, then its exact value. */
static sl_code
lex_number(parser *ps)
{
    const char *p = ps->p;
    size_t n = ps->n, start = ps->i, i = start, dig;
    int is_int = 1, neg = 0;
    num *v = &ps->t.v;
    char *end;

    if (p[i] == '-') {
        neg = 1;
        i++;
    }
    dig = i;
    if (i < n && p[i] == '0')
        i++;
    else if (i < n && p[i] >= '1' && p[i] <= '9')
        while (i < n && is_digit(p[i]))
            i++;
    else
        return fail(ps, SL_EINVALID, start, "malformed number");
    if (i < n && p[i] == '.') {
        is_int = 0;
        if (++i >= n || !is_digit(p[i]))
            return fail(ps, SL_EINVALID, start, "malformed number");
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        is_int = 0;
        if (++i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return fail(ps, SL_EINVALID, start, "malformed number");
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (ident_char((unsigned char)p[i]) || p[i] == '.'))
        return fail(ps, SL_EINVALID, start, "malformed number");
    ps->t.kind = T_NUMBER;
    ps->i = i;
    if (is_int) {
        uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        size_t k;
        for (k = dig; k < i; k++) {
            unsigned d = (unsigned)(p[k] - '0');
            if (acc > (limit - d) / 10)
                break;
            acc = acc * 10 + d;
        }
        if (k == i) {
            v->kind = NUM_INT;
            v->i =
                neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
            return SL_OK;
        }
    }
    memcpy(ps->scratch, p + start, i - start);
    ps->scratch[i - start] = '\0';
    v->d = strtod(ps->scratch, &end); /* the C locale: sluice never calls setlocale */
    if (end != ps->scratch + (i - start) || isinf(v->d) || isnan(v->d))
        return fail(ps, SL_EINVALID, start, "number out of range");
    if (is_int) {
        int mag = digits_vs_double(p + dig, i - dig, v->d);
        v->kind = NUM_BIG;
        v->side = neg ? -mag : mag;
    } else {
        v->kind = NUM_DBL;
        v->d += 0.0; /* -0.0 is 0 */
    }
    return SL_OK;
}

/* Reads the next token into ps->t. */
static sl_code
next(parser *ps)
{
    const char *p = ps->p;
    size_t n = ps->n, i = ps->i;
    token *t = &ps->t;
    int c;

    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    t->at = ps->i = i;
    if (i == n) {
        t->kind = T_END;
        return SL_OK;
    }
    c = (unsigned char)p[i];
    ps->i = i + 1;
    switch (c) {
    case '(':
        t->kind = T_LPAREN;
        return SL_OK;
    case ')':
        t->kind = T_RPAREN;
        return SL_OK;
    case '[':
        t->kind = T_LBRACK;
        return SL_OK;
    case ']':
        t->kind = T_RBRACK;
        return SL_OK;
    case ',':
        t->kind = T_COMMA;
        return SL_OK;
    case '=':
    case '!':
    case '<':
    case '>':
        t->kind = T_OP;
        if (i + 1 < n && p[i + 1] == '=') {
            ps->i = i + 2;
            t->op = c == '=' ? W_EQ : c == '!' ? W_NE : c == '<' ? W_LE : W_GE;
            return SL_OK;
        }
        if (c == '=')
            return fail(ps, SL_EINVALID, i, "'=' is not an operator (equality is '==')");
        if (c == '!')
            return fail(ps, SL_EINVALID, i, "'!' is not an operator (write 'not' or '!=')");
        t->op = c == '<' ? W_LT : W_GT;
        return SL_OK;
    case '"':
        ps->i = i;
        return lex_string(ps);
    case '`':
        ps->i = i;
        return lex_name(ps);
    default:
        break;
    }
    if (c == '-' || is_digit(c)) {
        ps->i = i;
        return lex_number(ps);
    }
    if (ident_start(c)) {
        static const struct {
            const char *word;
            tkind kind;
        } keywords[] = {{"and", T_AND},   {"or", T_OR},       {"not", T_NOT},  {"in", T_IN},
                        {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL}};
        size_t e = i + 1, k;
        while (e < n && ident_char((unsigned char)p[e]))
            e++;
        ps->i = e;
        t->kind = T_NAME;
        t->name = p + i;
        t->nlen = e - i;
        for (k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
            if (strlen(keywords[k].word) == e - i && memcmp(keywords[k].word, p + i, e - i) == 0)
                t->kind = keywords[k].kind;
        return SL_OK;
    }
    if (c >= 0x80)
        return fail(ps, SL_EINVALID, i,
                    "unexpected character (a column name that is not an identifier goes in "
                    "backquotes)");
    return fail(ps, SL_EINVALID, i, "unexpected character");
}

/* The schema index of the name in the current token. */
static sl_code
resolve(parser *ps, uint32_t *col)
{
    static const char *const words[] = {"and", "or", "not", "in", "true", "false", "null"};
    const char *name = ps->t.name;
    size_t len = ps->t.nlen, i, k, found_at = SIZE_MAX;

    if (memchr(name, '\0', len) == NULL) {
        for (i = 0; i < ps->ncols; i++) {
            /* no NUL in name: equal first len bytes mean the schema name is that long */
            if (strncmp(ps->cols[i].name, name, len) != 0 || ps->cols[i].name[len] != '\0')
                continue;
            if (found_at != SIZE_MAX)
                return fail(ps, SL_EINVALID, ps->t.at, "column \"%s\" appears twice in the schema",
                            shown(ps, 0, name, len));
            found_at = i;
        }
    }
    if (found_at != SIZE_MAX) {
        *col = (uint32_t)found_at;
        return SL_OK;
    }
    for (k = 0; k < sizeof words / sizeof words[0]; k++)
        if (strlen(words[k]) == len && strncasecmp(words[k], name, len) == 0)
            return fail(ps, SL_EINVALID, ps->t.at,
                        "unknown column \"%s\" (keywords are written in lower case)",
                        shown(ps, 0, name, len));
    return fail(ps, SL_EINVALID, ps->t.at, "unknown column \"%s\"", shown(ps, 0, name, len));
}

/* One more comparison or operator. */
static sl_code
count(parser *ps, size_t at)
{
    if (++ps->count > POL_FILTER_MAX_NODES)
        return fail(ps, SL_ETOOLARGE, at, "more than %d comparisons and operators",
                    POL_FILTER_MAX_NODES);
    return SL_OK;
}

static sl_code
new_node(parser *ps, int kind, uint32_t *out)
{
    pol_filter *f = ps->f;
    node *x;

    if (reserve((void **)&f->nodes, &ps->cap_nodes, f->nnodes + 1, sizeof *f->nodes) != SL_OK)
        return oom(ps);
    x = &f->nodes[f->nnodes];
    memset(x, 0, sizeof *x);
    x->kind = (uint8_t)kind;
    x->child = x->next = x->a = x->b = NONE;
    *out = f->nnodes++;
    return SL_OK;
}

/* A column or a literal; `what` says what was expected, for the message. */
static sl_code
parse_operand(parser *ps, operand *o, const char *what)
{
    token *t = &ps->t;
    sl_code rc;

    memset(o, 0, sizeof *o);
    o->at = t->at;
    switch (t->kind) {
    case T_NAME:
        o->kind = O_COL;
        if ((rc = resolve(ps, &o->col)) != SL_OK)
            return rc;
        break;
    case T_STRING:
        o->kind = O_STR;
        o->soff = t->soff;
        o->slen = t->slen;
        break;
    case T_NUMBER:
        o->kind = O_NUM;
        o->v = t->v;
        break;
    case T_TRUE:
    case T_FALSE:
        o->kind = O_BOOL;
        o->b = t->kind == T_TRUE;
        break;
    case T_NULL:
        o->kind = O_NULL;
        break;
    case T_AND:
    case T_OR:
    case T_IN:
        return fail(ps, SL_EINVALID, t->at,
                    "%s is a keyword (a column of that name is written in backquotes)", found(t));
    default:
        return fail(ps, SL_EINVALID, t->at, "expected %s, found %s", what, found(t));
    }
    return next(ps);
}

static const char *
literal_kind(const operand *o)
{
    switch (o->kind) {
    case O_NUM:
        return "a number";
    case O_STR:
        return "a string";
    case O_BOOL:
        return "a bool";
    default:
        return "null";
    }
}

/* Whether the int64 i is a double, exactly. */
static int
i64_double(int64_t i, double *out)
{
    double d = (double)i;

    if (d >= 0x1p63 || (int64_t)d != i)
        return 0;
    *out = d;
    return 1;
}

/* -1, 0 or 1 as i is below, equal to or above d, exactly (d finite). */
static int
cmp_i64_f64(int64_t i, double d)
{
    int64_t t;
    double frac;

    if (!(d >= -0x1p63)) /* below every int64 (and NaN, outside the contract) */
        return 1;
    if (d >= 0x1p63)
        return -1;
    t = (int64_t)d; /* d truncated, exactly */
    if (i != t)
        return i < t ? -1 : 1;
    frac = d - (double)t; /* exact (Sterbenz) */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* Sets leaf x to compare int64 column values with the double d, exactly, as an int64
 * comparison or a constant. */
static void
leaf_i64_vs_double(node *x, int op, double d)
{
    int64_t t;

    if (d >= 0x1p63 || d < -0x1p63) { /* beyond every int64 */
        x->kind = L_CONST;
        x->i = op != OP_EQ && d > 0;
        return;
    }
    t = (int64_t)d;
    if ((double)t == d) {
        x->kind = L_I64;
        x->op = (uint8_t)op;
        x->i = t;
        return;
    }
    /* between two integers: v < d and v <= d are v <= floor(d); v == d never */
    if (op == OP_EQ) {
        x->kind = L_CONST;
        x->i = 0;
        return;
    }
    x->kind = L_I64;
    x->op = OP_LE;
    x->i = (int64_t)floor(d);
}

/* Sets leaf x to compare float64 column values with a number strictly between the
 * double lo and the next one up: v < it and v <= it are v <= lo; v == it never. */
static void
leaf_f64_between(node *x, int op, double lo)
{
    if (op == OP_EQ) {
        x->kind = L_CONST;
        x->i = 0;
        return;
    }
    x->kind = L_F64;
    x->op = OP_LE;
    x->d = lo;
}

/* A number as a float64 list item: 0 when no double equals it. */
static int
num_as_double(const num *v, double *out)
{
    switch (v->kind) {
    case NUM_INT:
        return i64_double(v->i, out);
    case NUM_BIG:
        *out = v->d;
        return v->side == 0;
    case NUM_DBL:
        *out = v->d;
        return 1;
    }
    return 0;
}

/* A number as an int64 list item: 0 when no int64 equals it. */
static int
num_as_i64(const num *v, int64_t *out)
{
    switch (v->kind) {
    case NUM_INT:
        *out = v->i;
        return 1;
    case NUM_BIG:
        return 0;
    case NUM_DBL:
        if (v->d >= 0x1p63 || v->d < -0x1p63 || (double)(int64_t)v->d != v->d)
            return 0;
        *out = (int64_t)v->d;
        return 1;
    }
    return 0;
}

static sl_code
type_mismatch(parser *ps, uint32_t col, const operand *lit)
{
    return fail(ps, SL_EINVALID, lit->at, "column \"%s\" is %s, not comparable with %s",
                col_shown(ps, 0, col), type_names[ps->cols[col].type], literal_kind(lit));
}

/* The leaf for `l op r`, one of them a column. */
static sl_code
leaf_compare(parser *ps, operand *l, int wop, size_t op_at, operand *r, uint32_t *out)
{
    const pol_column *cols = ps->cols;
    sl_code rc;
    node *x;
    pol_type ta, tb = POL_STRING; /* set with the right column; gcc cannot tell */
    int op, neg;

    if (l->kind != O_COL && r->kind != O_COL)
        return fail(ps, SL_EINVALID, l->at, "a comparison needs a column on at least one side");
    if (l->kind != O_COL) {
        operand tmp = *l;
        *l = *r;
        *r = tmp;
        wop = flip[wop];
    }
    ta = cols[l->col].type;
    if (r->kind == O_COL) {
        tb = cols[r->col].type;
        if (ta == POL_FLOAT64 && tb == POL_INT64) { /* int64 on the left */
            operand tmp = *l;
            *l = *r;
            *r = tmp;
            wop = flip[wop];
            ta = POL_INT64;
            tb = POL_FLOAT64;
        }
        if (!(ta == tb || (ta == POL_INT64 && tb == POL_FLOAT64)))
            return fail(ps, SL_EINVALID, r->at,
                        "column \"%s\" is %s, not comparable with column \"%s\" (%s)",
                        col_shown(ps, 0, l->col), type_names[ta], col_shown(ps, 1, r->col),
                        type_names[tb]);
    } else if (r->kind == O_NULL) {
        if (wop != W_EQ && wop != W_NE)
            return fail(ps, SL_EINVALID, op_at, "null can only be tested with == or !=");
    } else if (!((r->kind == O_NUM && (ta == POL_INT64 || ta == POL_FLOAT64)) ||
                 (r->kind == O_STR && ta == POL_STRING) || (r->kind == O_BOOL && ta == POL_BOOL))) {
        return type_mismatch(ps, l->col, r);
    }
    if (ta == POL_BOOL && r->kind != O_NULL && wop != W_EQ && wop != W_NE)
        return fail(ps, SL_EINVALID, op_at, "column \"%s\" is bool: only ==, != and in apply",
                    col_shown(ps, 0, l->col));
    if ((rc = new_node(ps, L_CONST, out)) != SL_OK)
        return rc;
    x = &ps->f->nodes[*out];
    op = norm_op[wop];
    neg = norm_neg[wop];
    x->a = l->col;
    x->neg = (uint8_t)neg;
    x->op = (uint8_t)op;
    if (r->kind == O_NULL) {
        x->kind = L_ISNULL;
        return SL_OK;
    }
    if (r->kind == O_COL) {
        static const uint8_t kinds[] = {[POL_FLOAT64] = L_F64_F64,
                                        [POL_INT64] = L_I64_I64,
                                        [POL_BOOL] = L_BOOL_BOOL,
                                        [POL_STRING] = L_STR_STR};
        x->b = r->col;
        x->kind = ta == tb ? kinds[ta] : L_I64_F64;
        return SL_OK;
    }
    switch (ta) {
    case POL_BOOL:
        x->kind = L_BOOL;
        x->i = r->b;
        break;
    case POL_STRING:
        x->kind = L_STR;
        x->first = r->soff;
        x->count = r->slen;
        break;
    case POL_INT64:
        if (r->v.kind == NUM_INT) {
            x->kind = L_I64;
            x->i = r->v.i;
        } else if (r->v.kind == NUM_BIG) { /* beyond every int64 (its double may not be) */
            x->kind = L_CONST;
            x->i = op != OP_EQ && r->v.d > 0;
        } else {
            leaf_i64_vs_double(x, op, r->v.d);
        }
        break;
    case POL_FLOAT64: {
        double d = 0;
        if (r->v.kind == NUM_INT && !i64_double(r->v.i, &d)) {
            d = (double)r->v.i;
            leaf_f64_between(x, op, cmp_i64_f64(r->v.i, d) < 0 ? nextafter(d, -INFINITY) : d);
        } else if (r->v.kind == NUM_BIG && r->v.side != 0) {
            leaf_f64_between(x, op, r->v.side > 0 ? r->v.d : nextafter(r->v.d, -INFINITY));
        } else {
            x->kind = L_F64;
            x->d = r->v.kind == NUM_INT ? d : r->v.d;
        }
        break;
    }
    }
    return SL_OK;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int
cmp_f64(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Strings in lists are ordered by length, then bytes: equality is all a list needs. */
static int
cmp_strref(const void *a, const void *b, void *pool)
{
    const strref *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->len ? memcmp((const char *)pool + x->off, (const char *)pool + y->off, x->len) : 0;
}

/* `column [not] in [...]` from the '[' on; col is the column operand. */
static sl_code
parse_list(parser *ps, const operand *col, int neg, uint32_t *out)
{
    pol_filter *f = ps->f;
    pol_type ta = ps->cols[col->col].type;
    uint32_t first, items = 0, m = 0, k;
    unsigned mask = 0;
    sl_code rc;
    node *x;

    if (ps->t.kind != T_LBRACK)
        return fail(ps, SL_EINVALID, ps->t.at, "expected '[' after 'in', found %s", found(&ps->t));
    if ((rc = next(ps)) != SL_OK)
        return rc;
    if (ps->t.kind == T_RBRACK)
        return fail(ps, SL_EINVALID, ps->t.at, "empty list");
    first = ta == POL_INT64 ? f->nints : ta == POL_FLOAT64 ? f->ndbls : f->nstrs;
    for (;;) {
        operand it;
        if (ps->t.kind == T_NULL)
            return fail(ps, SL_EINVALID, ps->t.at, "null is not allowed in a list (use == null)");
        if (ps->t.kind == T_NAME)
            return fail(ps, SL_EINVALID, ps->t.at, "expected a literal in the list, found %s",
                        found(&ps->t));
        if (++items > POL_FILTER_MAX_LIST)
            return fail(ps, SL_ETOOLARGE, ps->t.at, "list longer than the limit of %d items",
                        POL_FILTER_MAX_LIST);
        if ((rc = parse_operand(ps, &it, "a literal in the list")) != SL_OK)
            return rc;
        if (!((it.kind == O_NUM && (ta == POL_INT64 || ta == POL_FLOAT64)) ||
              (it.kind == O_STR && ta == POL_STRING) || (it.kind == O_BOOL && ta == POL_BOOL)))
            return type_mismatch(ps, col->col, &it);
        switch (ta) {
        case POL_INT64: {
            int64_t v;
            if (!num_as_i64(&it.v, &v))
                break; /* equal to no int64 */
            if (reserve((void **)&f->ints, &ps->cap_ints, f->nints + 1, sizeof *f->ints) != SL_OK)
                return oom(ps);
            f->ints[f->nints++] = v;
            break;
        }
        case POL_FLOAT64: {
            double v;
            if (!num_as_double(&it.v, &v))
                break; /* equal to no double */
            if (reserve((void **)&f->dbls, &ps->cap_dbls, f->ndbls + 1, sizeof *f->dbls) != SL_OK)
                return oom(ps);
            f->dbls[f->ndbls++] = v + 0.0;
            break;
        }
        case POL_STRING:
            if (reserve((void **)&f->strs, &ps->cap_strs, f->nstrs + 1, sizeof *f->strs) != SL_OK)
                return oom(ps);
            f->strs[f->nstrs].off = it.soff;
            f->strs[f->nstrs++].len = it.slen;
            break;
        case POL_BOOL:
            mask |= 1u << it.b;
            break;
        }
        if (ps->t.kind == T_RBRACK)
            break;
        if (ps->t.kind != T_COMMA)
            return fail(ps, SL_EINVALID, ps->t.at, "expected ',' or ']' in the list, found %s",
                        found(&ps->t));
        if ((rc = next(ps)) != SL_OK)
            return rc;
    }
    if ((rc = next(ps)) != SL_OK) /* the ']' */
        return rc;
    /* sorted, each item once (items equal to no value of the column were left out; an
     * array may be empty, even NULL) */
    switch (ta) {
    case POL_INT64:
        if (f->nints == first)
            break;
        qsort(f->ints + first, f->nints - first, sizeof *f->ints, cmp_i64);
        for (k = first; k < f->nints; k++)
            if (m == 0 || f->ints[first + m - 1] != f->ints[k])
                f->ints[first + m++] = f->ints[k];
        f->nints = first + m;
        break;
    case POL_FLOAT64:
        if (f->ndbls == first)
            break;
        qsort(f->dbls + first, f->ndbls - first, sizeof *f->dbls, cmp_f64);
        for (k = first; k < f->ndbls; k++)
            if (m == 0 || f->dbls[first + m - 1] != f->dbls[k])
                f->dbls[first + m++] = f->dbls[k];
        f->ndbls = first + m;
        break;
    case POL_STRING:
        qsort_r(f->strs + first, f->nstrs - first, sizeof *f->strs, cmp_strref, f->pool);
        for (k = first; k < f->nstrs; k++)
            if (m == 0 || cmp_strref(&f->strs[first + m - 1], &f->strs[k], f->pool) != 0)
                f->strs[first + m++] = f->strs[k];
        f->nstrs = first + m;
        break;
    case POL_BOOL:
        break;
    }
    if ((rc = new_node(ps, L_CONST, out)) != SL_OK)
        return rc;
    x = &f->nodes[*out];
    x->a = col->col;
    x->neg = (uint8_t)neg;
    x->first = first;
    x->count = m;
    if (ta == POL_BOOL) {
        x->kind = L_IN_BOOL;
        x->i = mask;
    } else if (m > 0) {
        x->kind = ta == POL_INT64 ? L_IN_I64 : ta == POL_FLOAT64 ? L_IN_F64 : L_IN_STR;
    } /* else no value can be in it: L_CONST 0 */
    return SL_OK;
}

static sl_code
parse_comparison(parser *ps, uint32_t *out)
{
    operand l, r;
    size_t op_at;
    sl_code rc;
    int wop;

    if ((rc = count(ps, ps->t.at)) != SL_OK)
        return rc;
    if ((rc = parse_operand(ps, &l, "a comparison, 'not' or '('")) != SL_OK)
        return rc;
    op_at = ps->t.at;
    if (ps->t.kind == T_IN || ps->t.kind == T_NOT) {
        int neg = ps->t.kind == T_NOT;
        if (l.kind != O_COL)
            return fail(ps, SL_EINVALID, l.at, "the left side of 'in' must be a column");
        if ((rc = next(ps)) != SL_OK)
            return rc;
        if (neg) {
            if (ps->t.kind != T_IN)
                return fail(ps, SL_EINVALID, ps->t.at, "expected 'in' after 'not', found %s",
                            found(&ps->t));
            if ((rc = next(ps)) != SL_OK)
                return rc;
        }
        return parse_list(ps, &l, neg, out);
    }
    if (ps->t.kind != T_OP) {
        if (l.kind == O_COL)
            return fail(ps, SL_EINVALID, op_at,
                        "expected a comparison operator or 'in' after column \"%s\", found %s",
                        col_shown(ps, 0, l.col), found(&ps->t));
        return fail(ps, SL_EINVALID, op_at, "expected a comparison operator after %s, found %s",
                    literal_kind(&l), found(&ps->t));
    }
    wop = ps->t.op;
    if ((rc = next(ps)) != SL_OK)
        return rc;
    if ((rc = parse_operand(ps, &r, "a column or a literal")) != SL_OK)
        return rc;
    return leaf_compare(ps, &l, wop, op_at, &r, out);
}

static sl_code parse_or(parser *ps, unsigned d, uint32_t *out, unsigned *h);

static sl_code
too_deep(parser *ps, size_t at)
{
    return fail(ps, SL_ETOOLARGE, at, "nested deeper than the limit of %d", POL_FILTER_MAX_DEPTH);
}

/* d: the parentheses and `not`s around (bounds the recursion); *h: the height below. */
static sl_code
parse_unary(parser *ps, unsigned d, uint32_t *out, unsigned *h)
{
    size_t first_at = ps->t.at;
    unsigned k = 0;
    sl_code rc;

    while (ps->t.kind == T_NOT) {
        if ((rc = count(ps, ps->t.at)) != SL_OK)
            return rc;
        if (d + k + 1 > POL_FILTER_MAX_DEPTH)
            return too_deep(ps, ps->t.at);
        k++;
        if ((rc = next(ps)) != SL_OK)
            return rc;
    }
    if (ps->t.kind == T_LPAREN) {
        size_t at = ps->t.at;
        if (d + k + 1 > POL_FILTER_MAX_DEPTH)
            return too_deep(ps, at);
        if ((rc = next(ps)) != SL_OK)
            return rc;
        if ((rc = parse_or(ps, d + k + 1, out, h)) != SL_OK)
            return rc;
        if (ps->t.kind != T_RPAREN)
            return fail(ps, SL_EINVALID, ps->t.at,
                        "expected ')' to close the '(' at character %zu, found %s",
                        char_pos(ps->p, at), found(&ps->t));
        if ((rc = next(ps)) != SL_OK)
            return rc;
        if (++*h > POL_FILTER_MAX_DEPTH)
            return too_deep(ps, at);
    } else {
        if ((rc = parse_comparison(ps, out)) != SL_OK)
            return rc;
        *h = 0;
    }
    if (*h + k > POL_FILTER_MAX_DEPTH)
        return too_deep(ps, first_at);
    *h += k;
    ps->f->nodes[*out].neg ^= (uint8_t)(k & 1);
    return SL_OK;
}

/* `x and y and ...` (kind N_AND, operands parse_unary) or `x or y or ...` (N_OR,
 * operands chains of and). */
static sl_code
parse_chain(parser *ps, int kind, unsigned d, uint32_t *out, unsigned *h)
{
    tkind word = kind == N_AND ? T_AND : T_OR;
    uint32_t chain = NONE, last = NONE, x;
    unsigned hx, hmax;
    sl_code rc;

    rc = kind == N_AND ? parse_unary(ps, d, &x, &hx) : parse_chain(ps, N_AND, d, &x, &hx);
    if (rc != SL_OK)
        return rc;
    hmax = hx;
    while (ps->t.kind == word) {
        size_t at = ps->t.at;
        if ((rc = count(ps, at)) != SL_OK)
            return rc;
        if (chain == NONE) {
            if ((rc = new_node(ps, kind, &chain)) != SL_OK)
                return rc;
            ps->f->nodes[chain].child = last = x;
        }
        if ((rc = next(ps)) != SL_OK)
            return rc;
        rc = kind == N_AND ? parse_unary(ps, d, &x, &hx) : parse_chain(ps, N_AND, d, &x, &hx);
        if (rc != SL_OK)
            return rc;
        ps->f->nodes[last].next = x;
        last = x;
        if (hx > hmax)
            hmax = hx;
        if (hmax + 1 > POL_FILTER_MAX_DEPTH)
            return too_deep(ps, at);
    }
    *out = chain == NONE ? x : chain;
    *h = chain == NONE ? hmax : hmax + 1;
    return SL_OK;
}

static sl_code
parse_or(parser *ps, unsigned d, uint32_t *out, unsigned *h)
{
    return parse_chain(ps, N_OR, d, out, h);
}

/* ---- after parsing: negations down to the leaves, scratch levels, columns read ---- */

enum { M_SET, M_AND, M_OR };

/* De Morgan: `not (a and b)` is `not a or not b`; each leaf keeps its negation. */
static void
push_not(pol_filter *f, uint32_t x, int neg)
{
    node *nd = &f->nodes[x];
    uint32_t c;

    neg ^= nd->neg;
    if (nd->kind != N_AND && nd->kind != N_OR) {
        nd->neg = (uint8_t)neg;
        return;
    }
    nd->neg = 0;
    if (neg)
        nd->kind = nd->kind == N_AND ? N_OR : N_AND;
    for (c = nd->child; c != NONE; c = f->nodes[c].next)
        push_not(f, c, neg);
}

/* Scratch levels node x needs when combined into its output by `mode`: a node whose
 * kind is not the mode computes into a level of its own first. */
static uint32_t
levels_needed(const pol_filter *f, uint32_t x, int mode)
{
    const node *nd = &f->nodes[x];
    uint32_t c, base = 0, l;
    int own, child_mode = mode;

    if (nd->kind != N_AND && nd->kind != N_OR)
        return 0;
    own = nd->kind == N_AND ? M_AND : M_OR;
    if (mode != M_SET && mode != own)
        return 1 + levels_needed(f, x, M_SET);
    for (c = nd->child; c != NONE; c = f->nodes[c].next) {
        l = levels_needed(f, c, child_mode);
        if (l > base)
            base = l;
        child_mode = own;
    }
    return base;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static sl_code
finish(parser *ps)
{
    pol_filter *f = ps->f;
    uint32_t i, n = 0;

    push_not(f, f->root, 0);
    f->levels = levels_needed(f, f->root, M_SET);
    f->used = malloc(2 * (size_t)f->nnodes * sizeof *f->used);
    if (f->used == NULL)
        return oom(ps);
    for (i = 0; i < f->nnodes; i++) {
        if (f->nodes[i].a != NONE)
            f->used[n++] = f->nodes[i].a;
        if (f->nodes[i].b != NONE)
            f->used[n++] = f->nodes[i].b;
    }
    qsort(f->used, n, sizeof *f->used, cmp_u32);
    f->nused = 0;
    for (i = 0; i < n; i++)
        if (f->nused == 0 || f->used[f->nused - 1] != f->used[i])
            f->used[f->nused++] = f->used[i];
    f->used_type = malloc(f->nused + 1);
    if (f->used_type == NULL)
        return oom(ps);
    for (i = 0; i < f->nused; i++)
        f->used_type[i] = (uint8_t)ps->cols[f->used[i]].type;
    return SL_OK;
}

void
pol_filter_free(pol_filter *f)
{
    if (f == NULL)
        return;
    free(f->nodes);
    free(f->ints);
    free(f->dbls);
    free(f->strs);
    free(f->pool);
    free(f->used);
    free(f->used_type);
    free(f);
}

sl_code
pol_filter_compile(const char *text, size_t n, const pol_column *cols, size_t ncols,
                   pol_filter **out, sl_err *err)
{
    parser ps;
    size_t i, bad;
    unsigned h;
    sl_code rc;

    if (out == NULL || (text == NULL && n > 0) || (cols == NULL && ncols > 0) || ncols >= NONE)
        sl_panic("pol_filter_compile: bad arguments");
    for (i = 0; i < ncols; i++)
        if (cols[i].name == NULL || (unsigned)cols[i].type > POL_STRING)
            sl_panic("pol_filter_compile: bad schema column %zu", i);
    *out = NULL;
    if (n > POL_FILTER_MAX_BYTES)
        return sl_err_set(err, SL_ETOOLARGE, "row filter longer than the limit of %d bytes",
                          POL_FILTER_MAX_BYTES);
    memset(&ps, 0, sizeof ps);
    ps.p = text;
    ps.n = n;
    ps.cols = cols;
    ps.ncols = ncols;
    ps.err = err;
    if ((bad = utf8_bad((const unsigned char *)text, n)) < n)
        return fail(&ps, SL_EINVALID, bad, "not valid UTF-8");
    ps.f = calloc(1, sizeof *ps.f);
    ps.scratch = malloc(n + 1);
    if (ps.f == NULL || ps.scratch == NULL || (ps.f->pool = malloc(n + 1)) == NULL) {
        rc = oom(&ps);
        goto out;
    }
    if ((rc = next(&ps)) != SL_OK)
        goto out;
    if (ps.t.kind == T_END) {
        rc = sl_err_set(err, SL_EINVALID, "row filter is empty");
        goto out;
    }
    if ((rc = parse_or(&ps, 0, &ps.f->root, &h)) != SL_OK)
        goto out;
    if (ps.t.kind == T_RPAREN) {
        rc = fail(&ps, SL_EINVALID, ps.t.at, "')' without a matching '('");
        goto out;
    }
    if (ps.t.kind != T_END) {
        rc = fail(&ps, SL_EINVALID, ps.t.at,
                  "expected 'and', 'or' or the end of the filter, found %s", found(&ps.t));
        goto out;
    }
    if ((rc = finish(&ps)) != SL_OK)
        goto out;
    *out = ps.f;
    ps.f = NULL;
    rc = SL_OK;
out:
    pol_filter_free(ps.f);
    free(ps.scratch);
    return rc;
}

size_t
pol_filter_columns(const pol_filter *f, uint32_t *idx, size_t max)
{
    size_t i;

    for (i = 0; i < f->nused && i < max; i++)
        idx[i] = f->used[i];
    return f->nused;
}

/* ---- evaluation ---- */

/* Rows per block: a block's vectors (a few per nesting level) stay in the L1/L2 cache
 * while the tree is walked once per block. */
#define BLOCK 4096

typedef struct {
    const pol_filter *f;
    const pol_colview *cols;
    uint32_t base, n; /* the block: rows [base, base + n) */
    uint8_t *c;       /* a leaf's comparison outcomes, one byte a row */
    uint8_t *m;       /* two columns' nulls merged */
    uint8_t flip;     /* 1: the rows where the filter is FALSE */
} run;

static void
cmp_i64_kernel(const int64_t *restrict v, int64_t k, int op, uint8_t *restrict c, uint32_t n)
{
    uint32_t r;

    if (op == OP_EQ)
        for (r = 0; r < n; r++)
            c[r] = v[r] == k;
    else if (op == OP_LT)
        for (r = 0; r < n; r++)
            c[r] = v[r] < k;
    else
        for (r = 0; r < n; r++)
            c[r] = v[r] <= k;
}

static void
cmp_f64_kernel(const double *restrict v, double k, int op, uint8_t *restrict c, uint32_t n)
{
    uint32_t r;

    if (op == OP_EQ)
        for (r = 0; r < n; r++)
            c[r] = v[r] == k;
    else if (op == OP_LT)
        for (r = 0; r < n; r++)
            c[r] = v[r] < k;
    else
        for (r = 0; r < n; r++)
            c[r] = v[r] <= k;
}

static void
cmp_i64_cols(const int64_t *restrict v, const int64_t *restrict w, int op, uint8_t *restrict c,
             uint32_t n)
{
    uint32_t r;

    if (op == OP_EQ)
        for (r = 0; r < n; r++)
            c[r] = v[r] == w[r];
    else if (op == OP_LT)
        for (r = 0; r < n; r++)
            c[r] = v[r] < w[r];
    else
        for (r = 0; r < n; r++)
            c[r] = v[r] <= w[r];
}

static void
cmp_f64_cols(const double *restrict v, const double *restrict w, int op, uint8_t *restrict c,
             uint32_t n)
{
    uint32_t r;

    if (op == OP_EQ)
        for (r = 0; r < n; r++)
            c[r] = v[r] == w[r];
    else if (op == OP_LT)
        for (r = 0; r < n; r++)
            c[r] = v[r] < w[r];
    else
        for (r = 0; r < n; r++)
            c[r] = v[r] <= w[r];
}

/* Byte order, then length (a prefix first). */
static int
str_order(const char *a, size_t la, const char *b, size_t lb)
{
    size_t m = la < lb ? la : lb;
    int d = m ? memcmp(a, b, m) : 0;

    if (d != 0)
        return d;
    return (la > lb) - (la < lb);
}

static uint8_t
op_holds(int op, int d)
{
    return op == OP_EQ ? d == 0 : op == OP_LT ? d < 0 : d <= 0;
}

static int
has_i64(const int64_t *a, uint32_t n, int64_t v)
{
    uint32_t lo = 0, hi = n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == v;
}

static int
has_f64(const double *a, uint32_t n, double v)
{
    uint32_t lo = 0, hi = n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == v;
}

static int
has_str(const strref *a, uint32_t n, const char *pool, const char *s, uint32_t len)
{
    uint32_t lo = 0, hi = n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int d = a[mid].len != len ? (a[mid].len < len ? -1 : 1)
                                  : (len ? memcmp(pool + a[mid].off, s, len) : 0);
        if (d < 0)
            lo = mid + 1;
        else if (d > 0)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

/* Lists up to this long are searched by one vectorised pass per item. */
#define SHORT_LIST 8

/* A leaf's outcomes for the block into r->c (as if no value were null), and the nulls that
 * make them UNKNOWN (NULL: none). */
static const uint8_t *
leaf_values(const run *r, const node *x)
{
    const pol_filter *f = r->f;
    const pol_colview *a = &r->cols[x->a], *b = x->b != NONE ? &r->cols[x->b] : NULL;
    const uint32_t base = r->base, n = r->n;
    const uint8_t *nulls = a->nulls ? a->nulls + base : NULL;
    const char *sa = a->str ? a->str : "", *sb = b != NULL && b->str ? b->str : "";
    uint8_t *restrict c = r->c;
    uint32_t i, k;

    switch (x->kind) {
    case L_CONST:
        memset(c, (int)x->i, n);
        break;
    case L_ISNULL:
        if (nulls == NULL)
            memset(c, 0, n);
        else
            for (i = 0; i < n; i++)
                c[i] = nulls[i] != 0;
        return NULL;
    case L_I64:
        cmp_i64_kernel(a->i64 + base, x->i, x->op, c, n);
        break;
    case L_F64:
        cmp_f64_kernel(a->f64 + base, x->d, x->op, c, n);
        break;
    case L_BOOL: {
        const uint8_t *restrict v = a->b + base;
        uint8_t want = (uint8_t)x->i;
        for (i = 0; i < n; i++)
            c[i] = (v[i] != 0) == want;
        break;
    }
    case L_STR: {
        const uint32_t *off = a->off + base;
        const char *lit = f->pool + x->first;
        uint32_t len = x->count;
        if (x->op == OP_EQ) {
            for (i = 0; i < n; i++)
                c[i] =
                    off[i + 1] - off[i] == len && (len == 0 || memcmp(sa + off[i], lit, len) == 0);
        } else {
            for (i = 0; i < n; i++)
                c[i] = op_holds(x->op, str_order(sa + off[i], off[i + 1] - off[i], lit, len));
        }
        break;
    }
    case L_I64_I64:
        cmp_i64_cols(a->i64 + base, b->i64 + base, x->op, c, n);
        break;
    case L_F64_F64:
        cmp_f64_cols(a->f64 + base, b->f64 + base, x->op, c, n);
        break;
    case L_I64_F64: {
        const int64_t *v = a->i64 + base;
        const double *w = b->f64 + base;
        for (i = 0; i < n; i++)
            c[i] = op_holds(x->op, cmp_i64_f64(v[i], w[i]));
        break;
    }
    case L_BOOL_BOOL: {
        const uint8_t *restrict v = a->b + base, *restrict w = b->b + base;
        for (i = 0; i < n; i++)
            c[i] = (v[i] != 0) == (w[i] != 0);
        break;
    }
    case L_STR_STR: {
        const uint32_t *o1 = a->off + base, *o2 = b->off + base;
        for (i = 0; i < n; i++)
            c[i] = op_holds(
                x->op, str_order(sa + o1[i], o1[i + 1] - o1[i], sb + o2[i], o2[i + 1] - o2[i]));
        break;
    }
    case L_IN_I64: {
        const int64_t *restrict v = a->i64 + base, *items = f->ints + x->first;
        if (x->count <= SHORT_LIST) {
            memset(c, 0, n);
            for (k = 0; k < x->count; k++) {
                int64_t item = items[k];
                for (i = 0; i < n; i++)
                    c[i] |= v[i] == item;
            }
        } else {
            for (i = 0; i < n; i++)
                c[i] = (uint8_t)has_i64(items, x->count, v[i]);
        }
        break;
    }
    case L_IN_F64: {
        const double *restrict v = a->f64 + base, *items = f->dbls + x->first;
        if (x->count <= SHORT_LIST) {
            memset(c, 0, n);
            for (k = 0; k < x->count; k++) {
                double item = items[k];
                for (i = 0; i < n; i++)
                    c[i] |= v[i] == item;
            }
        } else {
            for (i = 0; i < n; i++)
                c[i] = (uint8_t)has_f64(items, x->count, v[i]);
        }
        break;
    }
    case L_IN_STR: {
        const uint32_t *off = a->off + base;
        for (i = 0; i < n; i++)
            c[i] = (uint8_t)has_str(f->strs + x->first, x->count, f->pool, sa + off[i],
                                    off[i + 1] - off[i]);
        break;
    }
    case L_IN_BOOL: {
        const uint8_t *restrict v = a->b + base;
        unsigned mask = (unsigned)x->i;
        for (i = 0; i < n; i++)
            c[i] = (uint8_t)(mask >> (v[i] != 0) & 1);
        break;
    }
    default:
        sl_panic("pol_filter_eval: node kind %d", x->kind);
    }
    if (b != NULL && b->nulls != NULL) {
        const uint8_t *bn = b->nulls + base;
        if (nulls == NULL)
            return bn;
        for (i = 0; i < n; i++)
            r->m[i] = nulls[i] | bn[i];
        return r->m;
    }
    return nulls;
}

/*
 * Folds a leaf into T, the rows where the filter so far is TRUE: the leaf is TRUE where its
 * value is known (not null) and its outcome, negated or not, holds. M_SET stores, M_AND
 * and M_OR combine. Only TRUE is ever needed: with the negations at the leaves, an `and`
 * is TRUE exactly when all its operands are, an `or` when one is, whatever the others'
 * FALSE or UNKNOWN; the three values live on in each leaf (a negated comparison on a null
 * is not TRUE either).
 */
static void
fold_leaf(const uint8_t *restrict c, const uint8_t *restrict nulls, uint8_t neg, int mode,
          uint8_t *restrict T, uint32_t n)
{
    uint32_t i;

#define FOLD(known)                             \
    do {                                        \
        if (mode == M_SET)                      \
            for (i = 0; i < n; i++)             \
                T[i] = (c[i] ^ neg) & (known);  \
        else if (mode == M_AND)                 \
            for (i = 0; i < n; i++)             \
                T[i] &= (c[i] ^ neg) & (known); \
        else                                    \
            for (i = 0; i < n; i++)             \
                T[i] |= (c[i] ^ neg) & (known); \
    } while (0)

    if (nulls != NULL)
        FOLD(nulls[i] == 0);
    else
        FOLD(1);
#undef FOLD
}

/* Evaluates node x over the block into T by `mode`; lvl: the free scratch levels, one
 * vector each. r->flip evaluates the negation of the tree instead (De Morgan again). */
static void
eval_node(const run *r, uint32_t x, int mode, uint8_t *T, uint8_t *lvl)
{
    const node *nd = &r->f->nodes[x];
    uint32_t c, i, n = r->n;
    int own, child_mode;

    if (nd->kind != N_AND && nd->kind != N_OR) {
        const uint8_t *nulls = leaf_values(r, nd);
        fold_leaf(r->c, nulls, nd->neg ^ r->flip, mode, T, n);
        return;
    }
    own = (nd->kind == N_AND) != r->flip ? M_AND : M_OR;
    if (mode != M_SET && mode != own) {
        /* the other kind: computed on a level of its own, then folded in */
        uint8_t *restrict T2 = lvl;
        eval_node(r, x, M_SET, T2, lvl + BLOCK);
        if (mode == M_AND)
            for (i = 0; i < n; i++)
                T[i] &= T2[i];
        else
            for (i = 0; i < n; i++)
                T[i] |= T2[i];
        return;
    }
    child_mode = mode;
    for (c = nd->child; c != NONE; c = r->f->nodes[c].next) {
        eval_node(r, c, child_mode, T, lvl);
        child_mode = own;
    }
}

/* Whether the caller's view of each column read is there and of the compiled type. */
static int
views_ok(const pol_filter *f, const pol_colview *cols, uint32_t rows)
{
    size_t j;

    for (j = 0; j < f->nused; j++) {
        const pol_colview *v = &cols[f->used[j]];
        if ((unsigned)v->type != f->used_type[j])
            return 0;
        switch (v->type) {
        case POL_INT64:
            if (v->i64 == NULL)
                return 0;
            break;
        case POL_FLOAT64:
            if (v->f64 == NULL)
                return 0;
            break;
        case POL_BOOL:
            if (v->b == NULL)
                return 0;
            break;
        case POL_STRING:
            if (v->off == NULL || (v->str == NULL && v->off[rows] != 0))
                return 0;
            break;
        }
    }
    return 1;
}

static sl_code
eval_rows(const pol_filter *f, const pol_colview *cols, uint32_t rows, uint8_t negate,
          uint8_t *keep)
{
    run r;
    uint8_t *scratch;
    size_t size;

    if (f == NULL || (rows > 0 && (cols == NULL || keep == NULL)))
        sl_panic("pol_filter_eval: bad arguments");
    if (rows == 0)
        return SL_OK;
    memset(keep, 0, rows);
    if (rows > SL_ROWS_PER_GROUP)
        return SL_ETOOLARGE;
    if (!views_ok(f, cols, rows))
        return SL_EINTERNAL;
    /* c, m, then a vector per level */
    size = (size_t)BLOCK * (2 + (size_t)f->levels);
    scratch = malloc(size);
    if (scratch == NULL)
        return SL_EINTERNAL;
    r.f = f;
    r.cols = cols;
    r.flip = negate; /* the levels needed are the same: negation swaps and/or throughout */
    r.c = scratch;
    r.m = scratch + BLOCK;
    for (r.base = 0; r.base < rows; r.base += BLOCK) {
        r.n = rows - r.base < BLOCK ? rows - r.base : BLOCK;
        eval_node(&r, f->root, M_SET, keep + r.base, scratch + 2 * BLOCK);
    }
    /* the vectors tell which rows hold which values: not left in freed memory */
    explicit_bzero(scratch, size);
    free(scratch);
    return SL_OK;
}

sl_code
pol_filter_eval(const pol_filter *f, const pol_colview *cols, uint32_t rows, uint8_t *keep)
{
    return eval_rows(f, cols, rows, 0, keep);
}

sl_code
pol_filter_eval_false(const pol_filter *f, const pol_colview *cols, uint32_t rows, uint8_t *out)
{
    return eval_rows(f, cols, rows, 1, out);
}

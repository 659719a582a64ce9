/*
 * gateway/gw_cli.c: the client commands, over libcurl: whoami, principals, tokens,
 * datasets (uploads and fetches streamed, never held in memory), the audit trail (export,
 * and verify on the server or offline), keys, the store's scrub. Settings come from
 * SLUICE_ADDR, SLUICE_TOKEN and SLUICE_CACERT like other tools of the kind.
 */
#include <sys/stat.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"

#define CLI_MAX_ANSWER (64 * 1024 * 1024)

typedef struct {
    const char *cmd;
    int json_out;
    const char *purpose; /* --purpose or SLUICE_PURPOSE: X-Sluice-Purpose */
    int bypass;          /* --bypass-governance: X-Sluice-Bypass-Governance: true */
} cli;

typedef struct {
    sl_buf body;
    FILE *sink; /* when streaming to a file or stdout */
    long status;
    int too_large;
    int sink_errno; /* why writing to sink failed */
} answer;

/*
 * What a request may carry besides a JSON body: a body streamed from a file as libcurl
 * asks for it (an upload is never held in memory), and a progress bar on stderr.
 */
typedef struct {
    FILE *in;            /* the request body, or NULL */
    curl_off_t in_size;  /* its size; -1 when not known (a pipe): sent chunked */
    const char *in_type; /* its media type */
    int in_errno;        /* why reading it failed */
    int bar;             /* draw a progress bar */
    int drawn;           /* a bar is on the screen: it needs its final line */
    int64_t t0, last;    /* monotonic ns: start, last redraw */
    curl_off_t done, total;
} xfer;

#define BAR_EVERY_NS 100000000 /* redraw at most ten times a second */

/*
 * Set by SIGINT or SIGTERM while a fetch writes a file, so that the transfer stops
 * through libcurl and the partial file is removed; the one mutable global here, because
 * a signal handler can reach nothing else.
 */
static volatile sig_atomic_t stop_signal;

static void
on_stop_signal(int sig)
{
    stop_signal = sig;
}

static size_t
on_read(char *p, size_t size, size_t n, void *cls)
{
    xfer *x = cls;
    size_t got = fread(p, size, n, x->in);

    if (got == 0 && ferror(x->in)) {
        x->in_errno = errno ? errno : EIO;
        return CURL_READFUNC_ABORT;
    }
    return got;
}

/* 12.3 MB: decimal units, like transfer rates */
static void
human(double bytes, char out[32])
{
    if (bytes < 1e3)
        snprintf(out, 32, "%.0f B", bytes);
    else if (bytes < 1e6)
        snprintf(out, 32, "%.1f kB", bytes / 1e3);
    else if (bytes < 1e9)
        snprintf(out, 32, "%.1f MB", bytes / 1e6);
    else
        snprintf(out, 32, "%.2f GB", bytes / 1e9);
}

static void
bar_draw(const xfer *x, int64_t now)
{
    static const char full[] = "########################", empty[] = "------------------------";
    double secs = (double)(now - x->t0) / 1e9;
    double rate = secs > 0 ? (double)x->done / secs / 1e6 : 0;
    char done[32], total[32];

    human((double)x->done, done);
    if (x->total > 0) {
        int pct = x->done >= x->total ? 100 : (int)(x->done * 100 / x->total);
        int fill = pct * 24 / 100;
        human((double)x->total, total);
        fprintf(stderr, "\r[%.*s%.*s] %10s / %-10s %3d%%  %6.1f MB/s ", fill, full, 24 - fill,
                empty, done, total, pct, rate);
    } else {
        fprintf(stderr, "\r%10s  %6.1f MB/s ", done, rate);
    }
}

/* libcurl's progress callback: draws the bar, and stops the transfer on a signal. */
static int
on_progress(void *cls, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    xfer *x = cls;
    int64_t now;

    if (stop_signal)
        return 1;
    if (!x->bar)
        return 0;
    x->done = x->in != NULL ? ulnow : dlnow;
    x->total = x->in != NULL ? ultotal : dltotal;
    now = sl_mono_ns();
    if (now - x->last < BAR_EVERY_NS)
        return 0;
    x->last = now;
    x->drawn = 1;
    bar_draw(x, now);
    return 0;
}

/* The last state of the bar and its newline; a transfer quicker than a redraw shows none. */
static void
bar_end(xfer *x)
{
    if (x == NULL || !x->drawn)
        return;
    bar_draw(x, sl_mono_ns());
    fputc('\n', stderr);
    x->drawn = 0;
}

/* Sets up the upload and the progress callback of x; returns the header list. */
static struct curl_slist *
setup_xfer(CURL *curl, xfer *x, struct curl_slist *h)
{
    char ct[128];

    if (x->in != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", x->in_type);
        h = curl_slist_append(h, ct);
        if (x->in_size < 0)
            h = curl_slist_append(h, "Transfer-Encoding: chunked");
        else
            curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, x->in_size);
        /* UPLOAD streams the body through on_read; the method stays the one asked */
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, x);
    }
    x->t0 = x->last = sl_mono_ns();
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, x);
    return h;
}

static size_t
on_data(char *p, size_t size, size_t n, void *cls)
{
    answer *a = cls;
    size_t len = size * n;

    if (a->sink != NULL && a->status >= 200 && a->status < 300) {
        if (fwrite(p, 1, len, a->sink) == len)
            return len;
        a->sink_errno = errno ? errno : EIO;
        return 0;
    }
    if (sl_buf_append(&a->body, p, len) != SL_OK) {
        a->too_large = 1;
        return 0;
    }
    return len;
}

static size_t
on_header(char *p, size_t size, size_t n, void *cls)
{
    answer *a = cls;
    size_t len = size * n;
    int code;

    if (len > 9 && strncmp(p, "HTTP/", 5) == 0 && sscanf(p, "HTTP/%*s %d", &code) == 1)
        a->status = code;
    return len;
}

static void fail(const cli *c, const char *fmt, ...) SL_PRINTF(2, 3);

static void
fail(const cli *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * One request. body may be NULL; sink, when given, receives a 2xx body as it streams; x,
 * when given, streams the request body from a file and draws a progress bar. Returns the
 * HTTP status, or -1 when the request could not be made or ended early (message printed;
 * a->status then still says whether an answer had begun).
 */
static long
request(const cli *c, const char *method, const char *path, const json_t *body, FILE *sink, xfer *x,
        answer *a)
{
    const char *addr = getenv("SLUICE_ADDR"), *token = getenv("SLUICE_TOKEN");
    const char *cacert = getenv("SLUICE_CACERT");
    char url[4096], errbuf[CURL_ERROR_SIZE] = "", *text = NULL, *auth = NULL;
    struct curl_slist *h = NULL;
    CURL *curl;
    CURLcode cc;

    memset(a, 0, sizeof *a);
    sl_buf_init(&a->body, CLI_MAX_ANSWER);
    a->sink = sink;
    if (addr == NULL || *addr == '\0')
        addr = "https://127.0.0.1:8443";
    if (strncmp(addr, "https://", 8) != 0) {
        fail(c, "SLUICE_ADDR must be an https:// address (got %s)", addr);
        return -1;
    }
    if (token == NULL || *token == '\0') {
        fail(c, "%s", "SLUICE_TOKEN is not set (the admin token is in DATA_DIR/admin.token)");
        return -1;
    }
    snprintf(url, sizeof url, "%s%s", addr, path);
    curl = curl_easy_init();
    if (curl == NULL) {
        fail(c, "%s", "could not start libcurl");
        return -1;
    }
    auth = sl_xmalloc(strlen(token) + 32);
    snprintf(auth, strlen(token) + 32, "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    if (c->bypass)
        h = curl_slist_append(h, "X-Sluice-Bypass-Governance: true");
    if (c->purpose != NULL) {
        char ph[128];
        snprintf(ph, sizeof ph, "X-Sluice-Purpose: %s", c->purpose);
        h = curl_slist_append(h, ph);
    }
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    }
    if (x != NULL)
        h = setup_xfer(curl, x, h);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (cacert != NULL && *cacert != '\0')
        curl_easy_setopt(curl, CURLOPT_CAINFO, cacert);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    cc = curl_easy_perform(curl);
    bar_end(x);
    curl_slist_free_all(h);
    sodium_memzero(auth, strlen(auth));
    free(auth);
    free(text);
    curl_easy_cleanup(curl);
    /* a refusal sent before the whole upload was read (a bad CSV line, say) ends the
     * sending side; the answer, when it came, says why better than libcurl can */
    if (cc != CURLE_OK && sink == NULL && a->status >= 400 && a->body.len > 0)
        return a->status;
    if (cc != CURLE_OK) {
        /* after a signal, who caught it says what was left undone */
        if (x != NULL && x->in_errno != 0)
            fail(c, "could not read the upload: %s", strerror(x->in_errno));
        else if (a->sink_errno != 0)
            fail(c, "could not write the answer: %s", strerror(a->sink_errno));
        else if (!stop_signal)
            fail(c, "request failed: %s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
            fprintf(stderr, "  (set SLUICE_CACERT to the server's certificate, "
                            "DATA_DIR/tls/cert.pem for a self-signed one)\n");
        sl_buf_free(&a->body);
        return -1;
    }
    return a->status;
}

/* Prints the API error of a non-2xx answer and returns the exit status. */
static int
report_error(const cli *c, answer *a)
{
    json_t *j = json_loadb(a->body.data ? a->body.data : "", a->body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));

    fprintf(stderr, "sluice %s: %s (HTTP %ld%s%s)\n", c->cmd, msg ? msg : "request refused",
            a->status, code ? ", " : "", code ? code : "");
    json_decref(j);
    sl_buf_free(&a->body);
    return 1;
}

/* Runs a request whose answer is JSON; *out is the parsed answer (NULL for 204). x as for
 * request(). */
static int
call_x(const cli *c, const char *method, const char *path, const json_t *body, xfer *x,
       json_t **out)
{
    answer a;
    long st = request(c, method, path, body, NULL, x, &a);

    *out = NULL;
    if (st < 0)
        return 1;
    if (st < 200 || st >= 300)
        return report_error(c, &a);
    if (a.body.len > 0) {
        *out = json_loadb(a.body.data, a.body.len, 0, NULL);
        if (*out == NULL) {
            fail(c, "%s", "the server's answer is not JSON");
            sl_buf_free(&a.body);
            return 1;
        }
    }
    if (c->json_out) {
        if (a.body.len > 0)
            printf("%s\n", a.body.data);
    }
    sodium_memzero(a.body.data, a.body.len);
    sl_buf_free(&a.body);
    return 0;
}

static int
call(const cli *c, const char *method, const char *path, const json_t *body, json_t **out)
{
    return call_x(c, method, path, body, NULL, out);
}

static void
print_strings(const char *label, const json_t *arr)
{
    size_t i;
    json_t *v;

    printf("%s", label);
    json_array_foreach(arr, i, v) printf("%s%s", i ? ", " : "", json_string_value(v));
    printf("%s\n", json_array_size(arr) ? "" : "(none)");
}

static void
print_attrs(const json_t *obj)
{
    const char *k;
    json_t *v;
    int first = 1;

    printf("attributes: ");
    json_object_foreach((json_t *)obj, k, v)
    {
        printf("%s%s=%s", first ? "" : ", ", k, json_string_value(v));
        first = 0;
    }
    printf("%s\n", first ? "(none)" : "");
}

static void
print_principal(const json_t *p)
{
    printf("name:       %s\n", json_string_value(json_object_get(p, "name")));
    printf("kind:       %s\n", json_string_value(json_object_get(p, "kind")));
    print_strings("roles:      ", json_object_get(p, "roles"));
    print_attrs(json_object_get(p, "attributes"));
    if (json_is_true(json_object_get(p, "disabled")))
        printf("disabled:   yes\n");
}

static int
cmd_whoami(cli *c, int argc, char **argv)
{
    json_t *a;
    int rc;

    (void)argv;
    if (argc > 0)
        return fprintf(stderr, "sluice whoami: takes no arguments\n"), 2;
    if ((rc = call(c, "GET", "/v1/whoami", NULL, &a)) != 0 || c->json_out) {
        json_decref(a);
        return rc;
    }
    print_principal(a);
    printf("token:      %s, expires %s\n", json_string_value(json_object_get(a, "token_id")),
           json_string_value(json_object_get(a, "token_expires_at")));
    json_decref(a);
    return 0;
}

/* --role R (repeatable), --attr K=V (repeatable), --kind, --ttl, --disable/--enable. */
typedef struct {
    json_t *roles, *attrs;
    const char *kind;
    int64_t ttl;
    int disabled; /* -1 unset */
    const char *positional;
    int64_t limit;
    const char *after;
} popts;

static int
parse_popts(cli *c, int argc, char **argv, popts *o)
{
    int i;

    memset(o, 0, sizeof *o);
    o->disabled = -1;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--role") == 0 && v) {
            if (o->roles == NULL)
                o->roles = json_array();
            json_array_append_new(o->roles, json_string(v));
            i++;
        } else if (strcmp(a, "--attr") == 0 && v) {
            const char *eq = strchr(v, '=');
            char key[128];
            if (eq == NULL || eq == v || (size_t)(eq - v) >= sizeof key)
                return fprintf(stderr, "sluice %s: --attr takes KEY=VALUE\n", c->cmd), 2;
            memcpy(key, v, (size_t)(eq - v));
            key[eq - v] = '\0';
            if (o->attrs == NULL)
                o->attrs = json_object();
            json_object_set_new(o->attrs, key, json_string(eq + 1));
            i++;
        } else if (strcmp(a, "--kind") == 0 && v) {
            o->kind = v;
            i++;
        } else if (strcmp(a, "--ttl") == 0 && v) {
            if (sl_parse_i64(v, 1, INT64_MAX / 1000000, &o->ttl) != SL_OK)
                return fprintf(stderr, "sluice %s: --ttl takes seconds\n", c->cmd), 2;
            i++;
        } else if (strcmp(a, "--limit") == 0 && v) {
            if (sl_parse_i64(v, 1, SL_LIST_MAX, &o->limit) != SL_OK)
                return fprintf(stderr, "sluice %s: --limit takes 1..%d\n", c->cmd, SL_LIST_MAX), 2;
            i++;
        } else if (strcmp(a, "--after") == 0 && v) {
            o->after = v;
            i++;
        } else if (strcmp(a, "--disable") == 0) {
            o->disabled = 1;
        } else if (strcmp(a, "--enable") == 0) {
            o->disabled = 0;
        } else if (a[0] != '-' && o->positional == NULL) {
            o->positional = a;
        } else {
            return fprintf(stderr, "sluice %s: unexpected argument %s (see --help)\n", c->cmd, a),
                   2;
        }
    }
    return 0;
}

static void
popts_free(popts *o)
{
    json_decref(o->roles);
    json_decref(o->attrs);
}

/* Percent-encodes one path segment or query value; -1 when it did not fit in out. */
static int
enc(const char *s, char *out, size_t cap)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s != '\0' && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hexd[ch >> 4];
            out[o++] = hexd[ch & 15];
        }
    }
    out[o] = '\0';
    return *s == '\0' ? 0 : -1;
}

static void
print_token(const json_t *a)
{
    printf("token:      %s\n", json_string_value(json_object_get(a, "token")));
    printf("token id:   %s, expires %s\n", json_string_value(json_object_get(a, "token_id")),
           json_string_value(json_object_get(a, "expires_at")));
    fprintf(stderr, "(the token is shown once: store it now)\n");
}

static int
cmd_principal(cli *c, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    char path[1024], name[512];
    json_t *a = NULL, *body = NULL;
    popts o;
    int rc;

    if ((rc = parse_popts(c, argc - 1, argv + 1, &o)) != 0)
        return rc;
    enc(o.positional ? o.positional : "", name, sizeof name);
    if (strcmp(sub, "create") == 0 && o.positional) {
        body = json_pack("{s:s, s:s}", "name", o.positional, "kind", o.kind ? o.kind : "user");
        json_object_set_new(body, "roles", o.roles ? json_incref(o.roles) : json_array());
        json_object_set_new(body, "attributes", o.attrs ? json_incref(o.attrs) : json_object());
        if (o.ttl > 0)
            json_object_set_new(body, "ttl_seconds", json_integer(o.ttl));
        rc = call(c, "POST", "/v1/principals", body, &a);
        if (rc == 0 && !c->json_out) {
            print_principal(a);
            print_token(a);
        }
    } else if (strcmp(sub, "list") == 0 && !o.positional) {
        char after[512];
        enc(o.after ? o.after : "", after, sizeof after);
        snprintf(path, sizeof path, "/v1/principals?limit=%lld%s%s",
                 (long long)(o.limit ? o.limit : SL_LIST_DEFAULT), o.after ? "&after=" : "",
                 o.after ? after : "");
        rc = call(c, "GET", path, NULL, &a);
        if (rc == 0 && !c->json_out) {
            size_t i;
            json_t *p;
            printf("%-24s %-8s %-9s %s\n", "NAME", "KIND", "DISABLED", "ROLES");
            json_array_foreach(json_object_get(a, "items"), i, p)
            {
                size_t k;
                json_t *r;
                printf("%-24s %-8s %-9s ", json_string_value(json_object_get(p, "name")),
                       json_string_value(json_object_get(p, "kind")),
                       json_is_true(json_object_get(p, "disabled")) ? "yes" : "no");
                json_array_foreach(json_object_get(p, "roles"), k, r)
                    printf("%s%s", k ? "," : "", json_string_value(r));
                printf("\n");
            }
            if (json_is_string(json_object_get(a, "next")))
                printf("(more: --after %s)\n", json_string_value(json_object_get(a, "next")));
        }
    } else if (strcmp(sub, "show") == 0 && o.positional) {
        snprintf(path, sizeof path, "/v1/principals/%s", name);
        rc = call(c, "GET", path, NULL, &a);
        if (rc == 0 && !c->json_out) {
            size_t i;
            json_t *t;
            print_principal(a);
            printf("created:    %s\ntokens:\n",
                   json_string_value(json_object_get(a, "created_at")));
            json_array_foreach(json_object_get(a, "tokens"), i, t)
                printf("  %s  expires %s%s\n", json_string_value(json_object_get(t, "token_id")),
                       json_string_value(json_object_get(t, "expires_at")),
                       json_is_true(json_object_get(t, "revoked")) ? "  (revoked)" : "");
        }
    } else if (strcmp(sub, "update") == 0 && o.positional) {
        body = json_object();
        if (o.roles)
            json_object_set(body, "roles", o.roles);
        if (o.attrs)
            json_object_set(body, "attributes", o.attrs);
        if (o.disabled >= 0)
            json_object_set_new(body, "disabled", json_boolean(o.disabled));
        snprintf(path, sizeof path, "/v1/principals/%s", name);
        rc = call(c, "PATCH", path, body, &a);
        if (rc == 0 && !c->json_out)
            print_principal(a);
    } else if (strcmp(sub, "token") == 0 && o.positional) {
        body = json_object();
        if (o.ttl > 0)
            json_object_set_new(body, "ttl_seconds", json_integer(o.ttl));
        snprintf(path, sizeof path, "/v1/principals/%s/tokens", name);
        rc = call(c, "POST", path, body, &a);
        if (rc == 0 && !c->json_out)
            print_token(a);
    } else if (strcmp(sub, "revoke") == 0 && o.positional) {
        snprintf(path, sizeof path, "/v1/tokens/%s", name);
        rc = call(c, "DELETE", path, NULL, &a);
        if (rc == 0 && !c->json_out)
            printf("token %s revoked\n", o.positional);
    } else {
        rc = 2;
        fprintf(stderr, "sluice principal: expected create|list|show|update|token|revoke with "
                        "its arguments (see sluice principal --help)\n");
    }
    if (a != NULL && json_object_get(a, "token") != NULL) {
        /* wipe the token from the parsed answer */
        json_t *t = json_object_get(a, "token");
        sodium_memzero((void *)json_string_value(t), json_string_length(t));
    }
    json_decref(a);
    json_decref(body);
    popts_free(&o);
    return rc;
}

/* The Ed25519 public keys of --public-key: a base64 key, the JSON of /v1/keys/public, or a
 * file holding either. How many (at most max), or -1 (said on stderr). */
static int
parse_keys(const char *cmd, const char *key, unsigned char pks[][CRY_SIGN_PK_BYTES], int max)
{
    unsigned char pk[CRY_SIGN_PK_BYTES];
    char *text = NULL;
    size_t len = 0, got = 0;
    struct stat st;
    json_t *j;
    sl_err err;
    int n = 0;

    if (stat(key, &st) == 0) {
        if (gw_file_read(key, 1 << 20, &text, &len, &err) != SL_OK) {
            fprintf(stderr, "sluice %s: %s\n", cmd, err.msg);
            return -1;
        }
    } else {
        text = sl_xstrdup(key);
        len = strlen(text);
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        text[--len] = '\0';
    j = json_loadb(text, len, 0, NULL);
    if (json_is_object(j) && json_is_array(json_object_get(j, "keys"))) {
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(j, "keys"), i, k)
        {
            const char *b = json_string_value(json_object_get(k, "public_key"));
            if (n < max && b && cry_unb64(b, strlen(b), pk, sizeof pk, &got) == SL_OK &&
                got == sizeof pk)
                memcpy(pks[n++], pk, sizeof pk);
        }
    } else if (cry_unb64(text, len, pk, sizeof pk, &got) == SL_OK && got == sizeof pk) {
        memcpy(pks[n++], pk, sizeof pk);
    }
    json_decref(j);
    free(text);
    if (n == 0) {
        fprintf(stderr,
                "sluice %s: --public-key is neither a base64 Ed25519 key nor "
                "the JSON of /v1/keys/public (nor a file holding one)\n",
                cmd);
        return -1;
    }
    return n;
}

/* Offline verification of an exported trail. */
static int
load_keys(cry_verifier *v, const char *key)
{
    unsigned char pks[GW_MAX_KEYS][CRY_SIGN_PK_BYTES];
    int i, n = parse_keys("audit verify", key, pks, GW_MAX_KEYS);

    for (i = 0; i < n; i++)
        cry_verifier_add_key(v, pks[i]);
    return n;
}

int
gw_cli_audit_verify_file(const char *file, const char *key, int json_out, int partial)
{
    cry_verifier *v = cry_verifier_new();
    cry_verify_result res;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0, bad_lines = 0;
    int rc = 1;

    if (load_keys(v, key) <= 0)
        goto out;
    if (!partial)
        cry_verifier_require_genesis(v);
    f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "sluice audit verify: cannot open %s\n", file);
        goto out;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        json_t *j, *cp;
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        j = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
            /* an unreadable line is an altered line: it breaks the chain where it stands */
            bad_lines++;
            cry_verifier_fail(v, 0, "a line of the export is not JSON (altered)");
            json_decref(j);
            continue;
        }
        cp = json_object_get(j, "checkpoint");
        if (cp != NULL && json_object_size(j) == 1)
            cry_verifier_checkpoint(v, cp);
        else
            cry_verifier_event(v, j, NULL, 0);
        json_decref(j);
    }
    cry_verifier_finish(v, &res);
    if (json_out) {
        json_t *o = json_pack(
            "{s:b, s:I, s:I, s:o, s:O?, s:s?}", "ok", res.ok, "events", (json_int_t)res.events,
            "checkpoints", (json_int_t)res.checkpoints, "first_bad_seq",
            res.first_bad_seq ? json_integer(res.first_bad_seq) : json_null(), "last_checkpoint",
            res.last_checkpoint, "error", res.ok ? NULL : res.error);
        char *t = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", t);
        free(t);
        json_decref(o);
    } else if (res.ok) {
        printf("trail verified: %lld events, %lld signed checkpoints, last signed seq %lld\n",
               (long long)res.events, (long long)res.checkpoints,
               (long long)json_integer_value(json_object_get(res.last_checkpoint, "seq")));
    } else {
        printf("trail NOT verified: first bad seq %lld: %s\n", (long long)res.first_bad_seq,
               res.error);
    }
    rc = res.ok ? 0 : 1;
out:
    free(line);
    if (f != NULL && f != stdin)
        fclose(f);
    cry_verifier_free(v);
    return rc;
}

static int
cmd_audit(cli *c, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    static const char *const filters[] = {"since",    "until",  "principal", "dataset", "action",
                                          "decision", "format", "limit",     NULL};
    char path[4096], val[1024];
    const char *file = NULL, *key = NULL, *out = NULL;
    int i, k, partial = 0;
    size_t off;

    if (strcmp(sub, "verify") == 0) {
        json_t *a = NULL;
        int rc;
        for (i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
                file = argv[++i];
            else if (strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
                key = argv[++i];
            else if (strcmp(argv[i], "--partial") == 0)
                partial = 1;
            else
                return fprintf(stderr, "sluice audit verify: unexpected %s\n", argv[i]), 2;
        }
        if (file != NULL || key != NULL) {
            if (file == NULL || key == NULL)
                return fprintf(stderr, "sluice audit verify: --file and --public-key go "
                                       "together\n"),
                       2;
            return gw_cli_audit_verify_file(file, key, c->json_out, partial);
        }
        if ((rc = call(c, "GET", "/v1/audit/verify", NULL, &a)) != 0 || c->json_out) {
            json_decref(a);
            return rc;
        }
        if (json_is_true(json_object_get(a, "ok")))
            printf("trail verified: %lld events, %lld signed checkpoints\n",
                   (long long)json_integer_value(json_object_get(a, "events")),
                   (long long)json_integer_value(json_object_get(a, "checkpoints")));
        else
            printf("trail NOT verified: first bad seq %lld: %s\n",
                   (long long)json_integer_value(json_object_get(a, "first_bad_seq")),
                   json_string_value(json_object_get(a, "error")));
        rc = json_is_true(json_object_get(a, "ok")) ? 0 : 1;
        json_decref(a);
        return rc;
    }
    if (strcmp(sub, "export") != 0)
        return fprintf(stderr, "sluice audit: expected export or verify (see sluice audit "
                               "--help)\n"),
               2;
    off = (size_t)snprintf(path, sizeof path, "/v1/audit");
    for (i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
            continue;
        }
        for (k = 0; filters[k] != NULL; k++)
            if (strncmp(o, "--", 2) == 0 && strcmp(o + 2, filters[k]) == 0)
                break;
        if (filters[k] == NULL || i + 1 >= argc)
            return fprintf(stderr, "sluice audit export: unexpected %s\n", o), 2;
        enc(argv[++i], val, sizeof val);
        off += (size_t)snprintf(path + off, sizeof path - off, "%c%s=%s",
                                off == strlen("/v1/audit") ? '?' : '&', filters[k], val);
        if (off >= sizeof path)
            return fprintf(stderr, "sluice audit export: arguments too long\n"), 2;
    }
    {
        FILE *sink = out ? fopen(out, "w") : stdout;
        answer a;
        long st;
        int rc = 0;
        if (sink == NULL)
            return fprintf(stderr, "sluice audit export: cannot write %s\n", out), 1;
        st = request(c, "GET", path, NULL, sink, NULL, &a);
        if (st < 0)
            rc = 1;
        else if (st < 200 || st >= 300)
            rc = report_error(c, &a);
        else
            sl_buf_free(&a.body);
        if (fflush(sink) != 0)
            rc = 1;
        if (out)
            fclose(sink);
        return rc;
    }
}

/* ---- datasets ---- */

static int usage(const cli *c, const char *fmt, ...) SL_PRINTF(2, 3);

/* A usage error: the reason, where to look, exit status 2. */
static int
usage(const cli *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see sluice %s --help)\n", c->cmd);
    return 2;
}

/*
 * Text another principal wrote (descriptions, column names, tags) goes to a terminal:
 * control characters, C1 ones included, become spaces so that none can move the cursor or
 * rewrite the screen; cut at a character boundary to fit cap. "-" when not a string.
 */
static const char *
clean(const json_t *v, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t o = 0;

    if (s == NULL)
        return "-";
    /* room kept for one more character, "..." and the terminator */
    while (*s != '\0' && o + 8 < cap) {
        size_t len = *s < 0x80 ? 1 : *s < 0xe0 ? 2 : *s < 0xf0 ? 3 : 4, k;
        if (*s < 0x20 || *s == 0x7f || (*s == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)) {
            out[o++] = ' ';
            s += len;
            continue;
        }
        for (k = 0; k < len && s[k] != '\0'; k++)
            out[o++] = (char)s[k];
        s += k;
    }
    if (*s != '\0') {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* An integer field as text; "-" when it is null or missing. */
static const char *
num(const json_t *v, char out[32])
{
    if (!json_is_integer(v))
        return "-";
    snprintf(out, 32, "%lld", (long long)json_integer_value(v));
    return out;
}

/* A version in a path: a positive number, or "latest" when allowed. */
static int
version_ok(const char *v, int latest_ok)
{
    int64_t n;

    if (latest_ok && strcmp(v, "latest") == 0)
        return 1;
    return sl_parse_i64(v, 1, INT32_MAX, &n) == SL_OK;
}

/*
 * /v1/datasets/NAME[/versions/V]SUFFIX. The name and the version are checked here, so
 * that nothing but a valid segment reaches the path; encoding them is then a second guard.
 */
static int
ds_path(const cli *c, const char *name, const char *version, const char *suffix, char *path,
        size_t cap)
{
    char n[SL_MAX_NAME * 3 + 8], v[64];
    int len;

    if (!sl_name_valid(name))
        return usage(c, "\"%.80s\" is not a dataset name (^[a-z][a-z0-9_.-]{0,62}$)", name);
    if (version != NULL && !version_ok(version, 1))
        return usage(c, "a version is a positive integer or latest, not \"%.40s\"", version);
    if (enc(name, n, sizeof n) != 0 || enc(version ? version : "", v, sizeof v) != 0)
        return usage(c, "%s", "a name or version is too long");
    len = snprintf(path, cap, "/v1/datasets/%s%s%s%s", n, version ? "/versions/" : "", v, suffix);
    if (len < 0 || (size_t)len >= cap)
        return usage(c, "%s", "the request path is too long");
    return 0;
}

/* Appends ?key=value or &key=value, the value percent-encoded; 2 when it does not fit. */
static int
query_add(const cli *c, char *path, size_t cap, const char *key, const char *val)
{
    char v[2048];
    size_t len = strlen(path);
    int n;

    if (enc(val, v, sizeof v) != 0)
        return usage(c, "the value of --%s is too long", key);
    n = snprintf(path + len, cap - len, "%c%s=%s", strchr(path, '?') ? '&' : '?', key, v);
    if (n < 0 || (size_t)n >= cap - len)
        return usage(c, "%s", "the arguments are too long for one request");
    return 0;
}

/* The options of `sluice dataset`; each subcommand says which it takes. */
enum {
    D_CLASS = 1 << 0,
    D_DESC = 1 << 1,
    D_COLUMN = 1 << 2,
    D_LIMIT = 1 << 3,
    D_AFTER = 1 << 4,
    D_VERSION = 1 << 5,
    D_FORMAT = 1 << 6,
    D_COLUMNS = 1 << 7,
    D_OFFSET = 1 << 8,
    D_OUT = 1 << 9,
};

static const struct {
    const char *name;
    unsigned flag;
} dflags[] = {
    {"--classification", D_CLASS}, {"--description", D_DESC},
    {"--column", D_COLUMN},        {"--limit", D_LIMIT},
    {"--after", D_AFTER},          {"--version", D_VERSION},
    {"--format", D_FORMAT},        {"--columns", D_COLUMNS},
    {"--offset", D_OFFSET},        {"--out", D_OUT},
};

typedef struct {
    const char *pos[2];
    int npos;
    const char *classification, *description, *after, *version, *format, *columns, *out;
    json_t *cols;          /* --column, as the API's objects */
    int64_t limit, offset; /* -1 unset */
} dopts;

static const char *const col_types[] = {"float64", "int64", "bool", "string", NULL};

static int
is_type(const char *s)
{
    int i;

    for (i = 0; col_types[i] != NULL; i++)
        if (strcmp(s, col_types[i]) == 0)
            return 1;
    return 0;
}

/*
 * --column NAME[:TYPE][:TAG,TAG...]. A second part is always the type, so that a typo
 * (int for int64) is refused rather than kept as a tag: tags without a type are NAME::TAGS.
 * The server checks names and tags.
 */
static int
parse_column(const cli *c, const char *spec, json_t **cols)
{
    char buf[1024], *type = NULL, *tags = NULL, *p;
    json_t *col, *list;

    if (strlen(spec) >= sizeof buf)
        return usage(c, "%s", "--column is too long");
    snprintf(buf, sizeof buf, "%s", spec);
    if ((p = strchr(buf, ':')) != NULL) {
        *p++ = '\0';
        type = p;
        if ((p = strchr(p, ':')) != NULL) {
            *p++ = '\0';
            tags = p;
        }
    }
    if (buf[0] == '\0')
        return usage(c, "%s", "--column needs a NAME");
    if (type != NULL && *type != '\0' && !is_type(type))
        return usage(c,
                     "column type \"%.40s\" is not float64, int64, bool or string (tags "
                     "without a type: NAME::TAGS)",
                     type);
    col = json_pack("{s:s}", "name", buf);
    if (type != NULL && *type != '\0')
        json_object_set_new(col, "type", json_string(type));
    if (tags != NULL && *tags != '\0') {
        list = json_array();
        json_object_set_new(col, "tags", list);
        for (p = strtok(tags, ","); p != NULL; p = strtok(NULL, ","))
            json_array_append_new(list, json_string(p));
    }
    if (*cols == NULL)
        *cols = json_array();
    json_array_append_new(*cols, col);
    return 0;
}

static int
dopt_set(const cli *c, dopts *o, unsigned flag, const char *name, const char *v)
{
    switch (flag) {
    case D_CLASS:
        o->classification = v;
        return 0;
    case D_DESC:
        o->description = v;
        return 0;
    case D_COLUMN:
        return parse_column(c, v, &o->cols);
    case D_AFTER:
        o->after = v;
        return 0;
    case D_COLUMNS:
        o->columns = v;
        return 0;
    case D_OUT:
        o->out = v;
        return 0;
    case D_VERSION:
        if (!version_ok(v, 1))
            return usage(c, "%s", "--version takes a positive integer or latest");
        o->version = v;
        return 0;
    case D_FORMAT:
        if (strcmp(v, "csv") != 0 && strcmp(v, "jsonl") != 0 && strcmp(v, "npy") != 0)
            return usage(c, "%s", "--format takes csv, jsonl or npy");
        o->format = v;
        return 0;
    default: /* D_LIMIT, D_OFFSET */
        if (sl_parse_i64(v, 0, INT64_MAX / 2, flag == D_LIMIT ? &o->limit : &o->offset) != SL_OK)
            return usage(c, "%s takes a non-negative integer", name);
        return 0;
    }
}

/* Options and exactly npos positional arguments, named by want (a lone "-" is one:
 * standard input). */
static int
parse_dopts(const cli *c, int argc, char **argv, unsigned takes, int npos, const char *want,
            dopts *o)
{
    int i, k, rc;

    memset(o, 0, sizeof *o);
    o->limit = o->offset = -1;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || a[1] == '\0') {
            if (o->npos == npos)
                return usage(c, "unexpected argument \"%.80s\"", a);
            o->pos[o->npos++] = a;
            continue;
        }
        for (k = 0; k < (int)(sizeof dflags / sizeof dflags[0]); k++)
            if (strcmp(a, dflags[k].name) == 0 && (takes & dflags[k].flag))
                break;
        if (k == (int)(sizeof dflags / sizeof dflags[0]))
            return usage(c, "unexpected option %.80s", a);
        if (v == NULL)
            return usage(c, "%s needs a value", a);
        /* everything goes into JSON or a URL: text that is not UTF-8 is refused here */
        if (!sl_utf8_valid(v, strlen(v)))
            return usage(c, "%s takes UTF-8 text", a);
        if ((rc = dopt_set(c, o, dflags[k].flag, a, v)) != 0)
            return rc;
        i++;
    }
    return o->npos == npos ? 0 : usage(c, "expected %s", want);
}

static int
ds_create(cli *c, dopts *o)
{
    json_t *body = NULL, *a = NULL;
    char buf[160];
    int rc;

    if (!sl_name_valid(o->pos[0]))
        return usage(c, "\"%.80s\" is not a dataset name (^[a-z][a-z0-9_.-]{0,62}$)", o->pos[0]);
    if (o->classification == NULL)
        return usage(c, "%s",
                     "--classification is required: public, internal, "
                     "confidential or restricted");
    body = json_pack("{s:s, s:s}", "name", o->pos[0], "classification", o->classification);
    if (o->description != NULL)
        json_object_set_new(body, "description", json_string(o->description));
    if (o->cols != NULL)
        json_object_set(body, "columns", o->cols);
    rc = call(c, "POST", "/v1/datasets", body, &a);
    if (rc == 0 && !c->json_out)
        printf("dataset %s created: %s, owner %s, %zu column%s declared\n", o->pos[0],
               json_string_value(json_object_get(a, "classification")),
               clean(json_object_get(a, "owner"), buf, sizeof buf),
               json_array_size(json_object_get(a, "columns")),
               json_array_size(json_object_get(a, "columns")) == 1 ? "" : "s");
    json_decref(a);
    json_decref(body);
    return rc;
}

static int
ds_list(cli *c, dopts *o)
{
    char path[1024], n[32], d[80], ow[80];
    json_t *a = NULL, *p;
    size_t i;
    int rc;

    if (o->limit == 0 || o->limit > SL_LIST_MAX)
        return usage(c, "--limit takes 1 to %d", SL_LIST_MAX);
    snprintf(path, sizeof path, "/v1/datasets?limit=%lld",
             (long long)(o->limit > 0 ? o->limit : SL_LIST_DEFAULT));
    if (o->after != NULL && (rc = query_add(c, path, sizeof path, "after", o->after)) != 0)
        return rc;
    if ((rc = call(c, "GET", path, NULL, &a)) != 0 || c->json_out) {
        json_decref(a);
        return rc;
    }
    printf("%-24s %-14s %-16s %-7s %s\n", "NAME", "CLASSIFICATION", "OWNER", "LATEST",
           "DESCRIPTION");
    json_array_foreach(json_object_get(a, "items"), i, p) printf(
        "%-24s %-13s %-16s %-7s %s\n", json_string_value(json_object_get(p, "name")),
        json_string_value(json_object_get(p, "classification")),
        clean(json_object_get(p, "owner"), ow, sizeof ow), num(json_object_get(p, "latest"), n),
        clean(json_object_get(p, "description"), d, sizeof d));
    if (json_is_string(json_object_get(a, "next")))
        printf("(more: --after %s)\n", json_string_value(json_object_get(a, "next")));
    json_decref(a);
    return 0;
}

static void
print_columns(const json_t *cols)
{
    char name[160], type[32], tag[160];
    json_t *col, *t;
    size_t i, k;

    printf("columns:\n");
    if (json_array_size(cols) == 0)
        printf("  (none declared: the first upload's header gives them)\n");
    json_array_foreach(cols, i, col)
    {
        printf("  %-24s %-8s ", clean(json_object_get(col, "name"), name, sizeof name),
               clean(json_object_get(col, "type"), type, sizeof type));
        json_array_foreach(json_object_get(col, "tags"), k, t)
            printf("%s%s", k ? "," : "", clean(t, tag, sizeof tag));
        printf("\n");
    }
}

static void
print_dataset(const json_t *d)
{
    char buf[4200], r[32], v[32];
    const json_t *ret = json_object_get(d, "retention");
    json_t *ver;
    size_t i;

    printf("name:           %s\n", json_string_value(json_object_get(d, "name")));
    printf("classification: %s\n", json_string_value(json_object_get(d, "classification")));
    printf("owner:          %s\n", clean(json_object_get(d, "owner"), buf, sizeof buf));
    printf("description:    %s\n", clean(json_object_get(d, "description"), buf, sizeof buf));
    printf("created:        %s\n", clean(json_object_get(d, "created_at"), buf, sizeof buf));
    printf("policy version: %s\n", num(json_object_get(d, "policy_version"), v));
    printf("legal hold:     %s\n", json_is_true(json_object_get(d, "legal_hold")) ? "yes" : "no");
    if (ret == NULL || json_is_null(ret)) {
        printf("retention:      (none)\n");
    } else {
        char *t = json_dumps(ret, JSON_COMPACT | JSON_ENSURE_ASCII);
        printf("retention:      %s\n", t ? t : "?");
        free(t);
    }
    print_columns(json_object_get(d, "columns"));
    printf("versions:\n");
    if (json_array_size(json_object_get(d, "versions")) == 0)
        printf("  (none yet)\n");
    else
        printf("  %-8s %-12s %-25s %s\n", "VERSION", "ROWS", "CREATED", "SHA256");
    json_array_foreach(json_object_get(d, "versions"), i, ver) printf(
        "  %-8s %-12s %-25s %s\n", num(json_object_get(ver, "version"), v),
        num(json_object_get(ver, "rows"), r), clean(json_object_get(ver, "created_at"), buf, 64),
        json_string_value(json_object_get(ver, "sha256")));
}

static void
print_version(const json_t *d)
{
    char a[32], b[160];

    printf("dataset:        %s\n", json_string_value(json_object_get(d, "dataset")));
    printf("version:        %s\n", num(json_object_get(d, "version"), a));
    printf("rows:           %s\n", num(json_object_get(d, "rows"), a));
    printf("row groups:     %s\n", num(json_object_get(d, "row_groups"), a));
    printf("bytes in:       %s\n", num(json_object_get(d, "bytes_in"), a));
    printf("bytes stored:   %s\n", num(json_object_get(d, "bytes_stored"), a));
    printf("sha256:         %s\n", clean(json_object_get(d, "sha256"), b, sizeof b));
    printf("created:        %s", clean(json_object_get(d, "created_at"), b, sizeof b));
    printf(" by %s\n", clean(json_object_get(d, "created_by"), b, sizeof b));
    print_columns(json_object_get(d, "columns"));
}

static int
ds_show(cli *c, dopts *o)
{
    char path[512];
    json_t *a = NULL;
    int rc;

    if ((rc = ds_path(c, o->pos[0], o->version, "", path, sizeof path)) != 0)
        return rc;
    if ((rc = call(c, "GET", path, NULL, &a)) == 0 && !c->json_out) {
        if (o->version != NULL)
            print_version(a);
        else
            print_dataset(a);
    }
    json_decref(a);
    return rc;
}

static int
ds_upload(cli *c, dopts *o)
{
    const char *file = o->pos[1];
    char path[512], sha[80];
    struct stat st;
    json_t *a = NULL;
    xfer x;
    int rc;

    if ((rc = ds_path(c, o->pos[0], NULL, "/versions", path, sizeof path)) != 0)
        return rc;
    memset(&x, 0, sizeof x);
    x.in = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (x.in == NULL)
        return fail(c, "could not open %s: %s", file, strerror(errno)), 1;
    x.in_size = -1;
    x.in_type = "text/csv";
    x.bar = isatty(2) && !c->json_out;
    rc = 1;
    if (fstat(fileno(x.in), &st) != 0) {
        fail(c, "could not read %s: %s", file, strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        fail(c, "could not read %s: it is a directory", file);
        goto out;
    }
    if (S_ISREG(st.st_mode)) {
        /* stdin may be a file already partly read: only the rest is sent */
        off_t at = ftello(x.in);
        x.in_size = (curl_off_t)(st.st_size - (at > 0 ? at : 0));
    }
    if ((rc = call_x(c, "POST", path, NULL, &x, &a)) == 0 && !c->json_out)
        printf("version %lld: %lld rows, %lld bytes in, %lld bytes stored, sha256 %s\n",
               (long long)json_integer_value(json_object_get(a, "version")),
               (long long)json_integer_value(json_object_get(a, "rows")),
               (long long)json_integer_value(json_object_get(a, "bytes_in")),
               (long long)json_integer_value(json_object_get(a, "bytes_stored")),
               clean(json_object_get(a, "sha256"), sha, sizeof sha));
out:
    if (x.in != stdin)
        fclose(x.in);
    json_decref(a);
    return rc;
}

/* GET .../versions/V/rows with the query of the options. */
static int
fetch_path(const cli *c, const dopts *o, char *path, size_t cap)
{
    char n[32];
    int rc;

    if ((rc = ds_path(c, o->pos[0], o->version ? o->version : "latest", "/rows", path, cap)) != 0)
        return rc;
    if (o->format != NULL && (rc = query_add(c, path, cap, "format", o->format)) != 0)
        return rc;
    if (o->columns != NULL && (rc = query_add(c, path, cap, "columns", o->columns)) != 0)
        return rc;
    if (o->limit >= 0) {
        snprintf(n, sizeof n, "%lld", (long long)o->limit);
        if ((rc = query_add(c, path, cap, "limit", n)) != 0)
            return rc;
    }
    if (o->offset >= 0) {
        snprintf(n, sizeof n, "%lld", (long long)o->offset);
        if ((rc = query_add(c, path, cap, "offset", n)) != 0)
            return rc;
    }
    return 0;
}

/* The rows into sink; 0, or 1 with the reason printed. */
static int
fetch_into(cli *c, const char *path, FILE *sink, const char *out)
{
    answer a;
    xfer x;
    long st;

    memset(&x, 0, sizeof x);
    /* no bar over rows that go to the same terminal */
    x.bar = isatty(2) && !c->json_out && (out != NULL || !isatty(1));
    st = request(c, "GET", path, NULL, sink, &x, &a);
    if (st >= 200 && st < 300) {
        sl_buf_free(&a.body);
        return 0;
    }
    if (st >= 0)
        return report_error(c, &a);
    /* the server aborts a stream when storage fails midway: the rows are incomplete */
    if (a.status >= 200 && a.status < 300 && !stop_signal && a.sink_errno == 0)
        fail(c, "the rows stopped midway: the server could not send the rest; %s",
             out ? "no file written" : "the output is incomplete");
    return 1;
}

/*
 * The rows go to FILE.tmp, renamed to FILE only once the whole answer has arrived and is
 * on disk: an interrupted or truncated fetch never leaves a FILE that looks complete.
 */
static int
fetch_to_file(cli *c, const char *path, const char *out)
{
    struct sigaction sa, old_int, old_term;
    char tmp[4096];
    FILE *f;
    int fd, rc;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp)
        return usage(c, "%s", "--out path too long");
    /* rows may be personal data: readable by their owner only, whatever the umask */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        (f = fdopen(fd, "wb")) == NULL) {
        fail(c, "could not create %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    rc = fetch_into(c, path, f, out);
    if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
        fail(c, "could not write %s: %s", tmp, strerror(errno));
        rc = 1;
    }
    if (fclose(f) != 0 && rc == 0) {
        fail(c, "could not write %s: %s", tmp, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && rename(tmp, out) != 0) {
        fail(c, "could not rename %s to %s: %s", tmp, out, strerror(errno));
        rc = 1;
    }
    if (rc != 0)
        unlink(tmp);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_signal)
        fail(c, "interrupted by signal %d; no file written", (int)stop_signal);
    return rc;
}

static int
ds_fetch(cli *c, dopts *o)
{
    char path[4096];
    int rc;

    if ((rc = fetch_path(c, o, path, sizeof path)) != 0)
        return rc;
    if (o->out != NULL)
        return fetch_to_file(c, path, o->out);
    rc = fetch_into(c, path, stdout, NULL);
    if (fflush(stdout) != 0 && rc == 0) {
        fail(c, "could not write the rows: %s", strerror(errno));
        rc = 1;
    }
    return rc;
}

static int
ds_delete(cli *c, dopts *o)
{
    char path[512];
    json_t *a = NULL;
    int rc;

    /* the version's key is destroyed: the version is named, never `latest` */
    if (!version_ok(o->pos[1], 0))
        return usage(c, "VERSION is a version number, not \"%.40s\"", o->pos[1]);
    if ((rc = ds_path(c, o->pos[0], o->pos[1], "", path, sizeof path)) != 0)
        return rc;
    if ((rc = call(c, "DELETE", path, NULL, &a)) == 0 && !c->json_out)
        printf("version %s of %s deleted (its key destroyed)\n", o->pos[1], o->pos[0]);
    json_decref(a);
    return rc;
}

static const struct {
    const char *sub;
    unsigned takes;
    int npos;
    const char *want;
    int (*run)(cli *, dopts *);
} dataset_cmds[] = {
    {"create", D_CLASS | D_DESC | D_COLUMN, 1, "NAME", ds_create},
    {"list", D_LIMIT | D_AFTER, 0, "no arguments", ds_list},
    {"show", D_VERSION, 1, "NAME", ds_show},
    {"upload", 0, 2, "NAME FILE (- for standard input)", ds_upload},
    {"fetch", D_VERSION | D_FORMAT | D_COLUMNS | D_LIMIT | D_OFFSET | D_OUT, 1, "NAME", ds_fetch},
    {"delete", 0, 2, "NAME VERSION", ds_delete},
};

static int
cmd_dataset(cli *c, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    size_t i;
    dopts o;
    int rc;

    for (i = 0; i < sizeof dataset_cmds / sizeof dataset_cmds[0]; i++)
        if (strcmp(sub, dataset_cmds[i].sub) == 0)
            break;
    if (i == sizeof dataset_cmds / sizeof dataset_cmds[0])
        return usage(c, "%s", "expected create, list, show, upload, fetch or delete");
    rc = parse_dopts(c, argc - 1, argv + 1, dataset_cmds[i].takes, dataset_cmds[i].npos,
                     dataset_cmds[i].want, &o);
    if (rc == 0)
        rc = dataset_cmds[i].run(c, &o);
    json_decref(o.cols);
    return rc;
}

/* ---- the store ---- */

static void
print_scrub_item(const json_t *it)
{
    char err[200];
    json_t *d;
    size_t i;

    printf("  dataset %lld version %lld row group %lld column %lld: ",
           (long long)json_integer_value(json_object_get(it, "dataset_id")),
           (long long)json_integer_value(json_object_get(it, "version")),
           (long long)json_integer_value(json_object_get(it, "row_group")),
           (long long)json_integer_value(json_object_get(it, "column")));
    if (json_object_get(it, "error") != NULL) {
        printf("UNRECOVERABLE: %s\n", clean(json_object_get(it, "error"), err, sizeof err));
        return;
    }
    printf("repaired in directories ");
    json_array_foreach(json_object_get(it, "repaired_directories"), i, d)
        printf("%s%lld", i ? "," : "", (long long)json_integer_value(d));
    printf("\n");
}

static int
cmd_store(cli *c, int argc, char **argv)
{
    json_t *a = NULL, *it;
    size_t i;
    int rc;

    if (argc != 1 || strcmp(argv[0], "scrub") != 0)
        return usage(c, "%s", "expected `sluice store scrub`");
    if ((rc = call(c, "POST", "/v1/store/scrub", NULL, &a)) != 0) {
        json_decref(a);
        return rc;
    }
    if (!c->json_out) {
        printf("versions checked:     %lld\n",
               (long long)json_integer_value(json_object_get(a, "versions")));
        printf("chunks checked:       %lld\n",
               (long long)json_integer_value(json_object_get(a, "chunks")));
        printf("fragments repaired:   %lld\n",
               (long long)json_integer_value(json_object_get(a, "fragments_repaired")));
        printf("chunks unrecoverable: %lld\n",
               (long long)json_integer_value(json_object_get(a, "chunks_unrecoverable")));
        json_array_foreach(json_object_get(a, "items"), i, it) print_scrub_item(it);
    }
    rc = json_integer_value(json_object_get(a, "chunks_unrecoverable")) > 0 ? 1 : 0;
    json_decref(a);
    return rc;
}

static int
cmd_keys(cli *c, int argc, char **argv)
{
    json_t *a = NULL, *k;
    size_t i;
    int rc;

    if (argc == 1 && strcmp(argv[0], "rotate") == 0) {
        if ((rc = call(c, "POST", "/v1/keys/rotate", NULL, &a)) == 0 && !c->json_out)
            printf("master key version %lld; %lld data keys rewrapped\n",
                   (long long)json_integer_value(json_object_get(a, "master_key_version")),
                   (long long)json_integer_value(json_object_get(a, "rewrapped")));
        json_decref(a);
        return rc;
    }
    if (argc != 1 || strcmp(argv[0], "public") != 0)
        return usage(c, "%s", "expected `sluice keys public` or `sluice keys rotate`");
    if ((rc = call(c, "GET", "/v1/keys/public", NULL, &a)) != 0 || c->json_out) {
        json_decref(a);
        return rc;
    }
    json_array_foreach(json_object_get(a, "keys"), i, k)
        printf("%s  %s  %s  %s\n", json_string_value(json_object_get(k, "id")),
               json_string_value(json_object_get(k, "alg")),
               json_string_value(json_object_get(k, "public_key")),
               json_string_value(json_object_get(k, "status")));
    json_decref(a);
    return 0;
}

/* ---- policies ---- */

/* A JSON document from FILE (- for standard input); NULL after a usage message. */
static json_t *
load_doc(const cli *c, const char *file)
{
    json_error_t je;
    json_t *d;

    if (strcmp(file, "-") == 0)
        d = json_loadf(stdin, JSON_REJECT_DUPLICATES, &je);
    else
        d = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (d == NULL)
        fail(c, "%.200s: not a JSON document (line %d: %.100s)", file, je.line, je.text);
    return d;
}

static void
print_decision(const json_t *a)
{
    const char *k;
    char buf[200];
    json_t *v;
    size_t i;

    printf("decision:        %s\n", json_string_value(json_object_get(a, "decision")));
    printf("reason:          %s\n", clean(json_object_get(a, "reason"), buf, sizeof buf));
    print_strings("statements:      ", json_object_get(a, "statements"));
    print_strings("denied columns:  ", json_object_get(a, "denied_columns"));
    printf("masked columns:  ");
    i = 0;
    json_object_foreach((json_t *)json_object_get(a, "masked_columns"), k, v)
        printf("%s%s=%s", i++ ? ", " : "", k, json_string_value(v));
    printf("%s\n", i ? "" : "(none)");
    printf("row filter:      %s\n", json_is_string(json_object_get(a, "row_filter"))
                                        ? clean(json_object_get(a, "row_filter"), buf, sizeof buf)
                                        : "(none)");
    printf("policy versions: ");
    i = 0;
    json_object_foreach((json_t *)json_object_get(a, "policy_versions"), k, v)
        printf("%s%s=%lld", i++ ? ", " : "", k, (long long)json_integer_value(v));
    printf("\n");
}

static int
policy_explain(cli *c, int argc, char **argv)
{
    static const char *const opts[] = {"--principal", "--action",  "--dataset",
                                       "--purpose",   "--columns", NULL};
    const char *val[5] = {NULL, NULL, NULL, NULL, NULL};
    json_t *body, *a = NULL;
    int i, k, rc;

    for (i = 0; i < argc; i++) {
        for (k = 0; opts[k] != NULL && strcmp(argv[i], opts[k]) != 0; k++)
            ;
        if (opts[k] == NULL)
            return usage(c, "unexpected argument %.80s", argv[i]);
        if (i + 1 >= argc || !sl_utf8_valid(argv[i + 1], strlen(argv[i + 1])))
            return usage(c, "%s needs a value", argv[i]);
        val[k] = argv[++i];
    }
    if (val[0] == NULL || val[1] == NULL || val[2] == NULL)
        return usage(c, "%s", "explain needs --principal, --action and --dataset");
    body = json_pack("{s:s, s:s, s:s}", "principal", val[0], "action", val[1], "dataset", val[2]);
    if (val[3] == NULL) /* --purpose anywhere is the request's purpose: the one asked about */
        val[3] = c->purpose;
    if (val[3] != NULL)
        json_object_set_new(body, "purpose", json_string(val[3]));
    if (val[4] != NULL) {
        json_t *cols = json_array();
        const char *p = val[4];
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            json_array_append_new(cols, json_stringn(p, n));
            if (e == NULL)
                break;
            p = e + 1;
        }
        json_object_set_new(body, "columns", cols);
    }
    rc = call(c, "POST", "/v1/authorize", body, &a);
    if (rc == 0 && !c->json_out)
        print_decision(a);
    json_decref(a);
    json_decref(body);
    return rc;
}

static int
cmd_policy(cli *c, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    char path[512];
    json_t *doc = NULL, *a = NULL;
    int global = argc > 1 && strcmp(argv[1], "--global") == 0, rc;
    char **rest = argv + 1 + global;
    int nrest = argc - 1 - global;

    if (strcmp(sub, "explain") == 0)
        return policy_explain(c, argc - 1, argv + 1);
    if (strcmp(sub, "put") == 0 && nrest == 2) {
        if (!sl_name_valid(rest[0]))
            return usage(c, "\"%.80s\" is not a name (^[a-z][a-z0-9_.-]{0,62}$)", rest[0]);
        if ((doc = load_doc(c, rest[1])) == NULL)
            return 1;
        snprintf(path, sizeof path, global ? "/v1/policies/%s" : "/v1/datasets/%s/policy", rest[0]);
        rc = call(c, "PUT", path, doc, &a);
        if (rc == 0 && !c->json_out)
            printf("%s %s: policy version %lld\n", global ? "global policy" : "dataset", rest[0],
                   (long long)json_integer_value(json_object_get(a, "policy_version")));
    } else if (strcmp(sub, "get") == 0 && (nrest == 1 || (global && nrest == 0))) {
        if (nrest == 1 && !sl_name_valid(rest[0]))
            return usage(c, "\"%.80s\" is not a name (^[a-z][a-z0-9_.-]{0,62}$)", rest[0]);
        if (global) {
            snprintf(path, sizeof path, "/v1/policies?limit=%d", SL_LIST_MAX);
        } else {
            snprintf(path, sizeof path, "/v1/datasets/%s/policy", rest[0]);
        }
        rc = call(c, "GET", path, NULL, &a);
        if (rc == 0 && !c->json_out) {
            json_t *show = a;
            if (global && nrest == 1) { /* one of them */
                json_t *it;
                size_t i;
                show = NULL;
                json_array_foreach(json_object_get(a, "items"), i, it)
                {
                    if (strcmp(json_string_value(json_object_get(it, "name")), rest[0]) == 0)
                        show = it;
                }
                if (show == NULL) {
                    fail(c, "no global policy \"%s\"", rest[0]);
                    rc = 1;
                }
            }
            if (show != NULL) {
                char *t = json_dumps(show, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", t != NULL ? t : "");
                free(t);
            }
        }
    } else if (strcmp(sub, "delete") == 0 && global && nrest == 1) {
        if (!sl_name_valid(rest[0]))
            return usage(c, "\"%.80s\" is not a name (^[a-z][a-z0-9_.-]{0,62}$)", rest[0]);
        snprintf(path, sizeof path, "/v1/policies/%s", rest[0]);
        rc = call(c, "DELETE", path, NULL, &a);
        if (rc == 0 && !c->json_out)
            printf("global policy %s deleted\n", rest[0]);
    } else {
        return usage(c, "%s",
                     "expected policy put [--global] NAME FILE, policy get DATASET, "
                     "policy get --global [NAME], policy delete --global NAME or policy explain");
    }
    json_decref(doc);
    json_decref(a);
    return rc;
}

/* ---- retention and legal holds ---- */

/* A day count for --min-days / --max-days: a non-negative decimal number. */
static int
days_opt(const cli *c, const char *opt, const char *v, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(*out >= 0) || *out > 36500)
        return usage(c, "%s takes a number of days from 0 to 36500", opt);
    return 0;
}

/* A retention rule as the server answers it: {"min_days", "max_days", "mode"}. */
static void
print_rule(const json_t *rt)
{
    const json_t *mn = json_object_get(rt, "min_days"), *mx = json_object_get(rt, "max_days");

    printf("retention:  %s, min_days ", json_string_value(json_object_get(rt, "mode")));
    if (json_is_number(mn))
        printf("%g", json_number_value(mn));
    else
        printf("none");
    printf(", max_days ");
    if (json_is_number(mx))
        printf("%g\n", json_number_value(mx));
    else
        printf("none\n");
}

static int
cmd_retention(cli *c, int argc, char **argv)
{
    const char *mode = NULL;
    double mn = -1, mx = -1;
    json_t *body, *a = NULL;
    char path[256];
    int i, rc;

    if (argc < 2 || strcmp(argv[0], "set") != 0)
        return usage(c, "%s",
                     "expected retention set DATASET [--min-days N] [--max-days M] "
                     "--mode governance|compliance");
    if (!sl_name_valid(argv[1]))
        return usage(c, "\"%.80s\" is not a dataset name", argv[1]);
    for (i = 2; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage(c, "%.40s needs a value", argv[i]);
        if (strcmp(argv[i], "--min-days") == 0) {
            if ((rc = days_opt(c, argv[i], argv[i + 1], &mn)) != 0)
                return rc;
        } else if (strcmp(argv[i], "--max-days") == 0) {
            if ((rc = days_opt(c, argv[i], argv[i + 1], &mx)) != 0)
                return rc;
        } else if (strcmp(argv[i], "--mode") == 0) {
            mode = argv[i + 1];
        } else {
            return usage(c, "unexpected argument %.80s", argv[i]);
        }
    }
    if (mode == NULL || (strcmp(mode, "governance") != 0 && strcmp(mode, "compliance") != 0))
        return usage(c, "%s", "--mode governance or --mode compliance is required");
    body = json_pack("{s:s}", "mode", mode);
    if (mn >= 0)
        json_object_set_new(body, "min_days", json_real(mn));
    if (mx >= 0)
        json_object_set_new(body, "max_days", json_real(mx));
    snprintf(path, sizeof path, "/v1/datasets/%s/retention", argv[1]);
    rc = call(c, "PUT", path, body, &a);
    if (rc == 0 && !c->json_out) {
        printf("dataset:    %s\n", argv[1]);
        print_rule(a);
    }
    json_decref(a);
    json_decref(body);
    return rc;
}

static int
cmd_hold(cli *c, int argc, char **argv)
{
    const char *reason = NULL;
    json_t *body, *a = NULL;
    char path[256];
    int set, rc;

    if (argc < 2 || (strcmp(argv[0], "set") != 0 && strcmp(argv[0], "clear") != 0))
        return usage(c, "%s", "expected hold set DATASET --reason TEXT or hold clear DATASET");
    set = strcmp(argv[0], "set") == 0;
    if (!sl_name_valid(argv[1]))
        return usage(c, "\"%.80s\" is not a dataset name", argv[1]);
    if (argc == 4 && strcmp(argv[2], "--reason") == 0 && sl_utf8_valid(argv[3], strlen(argv[3])))
        reason = argv[3];
    else if (argc != 2)
        return usage(c, "%s", "expected --reason TEXT (UTF-8) after the dataset");
    if (set && reason == NULL)
        return usage(c, "%s", "a legal hold needs --reason TEXT");
    body = json_pack("{s:b}", "hold", set);
    if (reason != NULL)
        json_object_set_new(body, "reason", json_string(reason));
    snprintf(path, sizeof path, "/v1/datasets/%s/legal-hold", argv[1]);
    rc = call(c, "PUT", path, body, &a);
    if (rc == 0 && !c->json_out) {
        char buf[200];
        printf("dataset:    %s\n", argv[1]);
        printf("legal hold: %s\n", json_is_true(json_object_get(a, "hold"))
                                       ? clean(json_object_get(a, "reason"), buf, sizeof buf)
                                       : "no");
    }
    json_decref(a);
    json_decref(body);
    return rc;
}

/* ---- jobs and receipts ---- */

static void
print_job(const json_t *a)
{
    const json_t *pr = json_object_get(a, "progress");
    char buf[300];

    printf("job:        %s\n", json_string_value(json_object_get(a, "job_id")));
    printf("status:     %s\n", json_string_value(json_object_get(a, "status")));
    printf("kind:       %s\n", clean(json_object_get(a, "kind"), buf, sizeof buf));
    printf("dataset:    %s version %lld\n", clean(json_object_get(a, "dataset"), buf, sizeof buf),
           (long long)json_integer_value(json_object_get(a, "version")));
    if (json_is_integer(json_object_get(pr, "iteration")))
        printf("progress:   iteration %lld, loss %.6g\n",
               (long long)json_integer_value(json_object_get(pr, "iteration")),
               json_number_value(json_object_get(pr, "loss")));
    if (json_is_string(json_object_get(a, "error")))
        printf("error:      %s\n", clean(json_object_get(a, "error"), buf, sizeof buf));
}

static int
job_path(const cli *c, const char *id, const char *tail, char *path, size_t cap)
{
    size_t i;

    for (i = 0; id[i] != '\0'; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            break;
    if (i != 32 || id[i] != '\0')
        return usage(c, "\"%.40s\" is not a job id (32 hex digits)", id);
    snprintf(path, cap, "/v1/jobs/%s%s", id, tail);
    return 0;
}

static int
terminal_status(const char *st)
{
    return st != NULL && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0;
}

/* Polls the job until it ends (a line of progress on a terminal); 0 when it succeeded. */
static int
job_wait(cli *c, const char *id, int64_t timeout_s)
{
    char path[128];
    int64_t t0 = sl_mono_ns();
    int bar = isatty(2) && !c->json_out, json_out = c->json_out, rc;
    json_t *a = NULL;

    if ((rc = job_path(c, id, "", path, sizeof path)) != 0)
        return rc;
    c->json_out = 0;
    for (;;) {
        const char *st;
        json_decref(a);
        if ((rc = call(c, "GET", path, NULL, &a)) != 0)
            break;
        st = json_string_value(json_object_get(a, "status"));
        if (bar) {
            const json_t *pr = json_object_get(a, "progress");
            fprintf(stderr, "\r\033[Kjob %.8s: %-9s", id, st ? st : "?");
            if (json_is_integer(json_object_get(pr, "iteration")))
                fprintf(stderr, " iteration %lld  loss %.6g",
                        (long long)json_integer_value(json_object_get(pr, "iteration")),
                        json_number_value(json_object_get(pr, "loss")));
            fprintf(stderr, "  %llds", (long long)((sl_mono_ns() - t0) / 1000000000));
        }
        if (terminal_status(st))
            break;
        if (timeout_s > 0 && sl_mono_ns() - t0 > timeout_s * 1000000000) {
            if (bar)
                fprintf(stderr, "\n");
            fprintf(stderr, "sluice job wait: still %s after %llds\n", st ? st : "?",
                    (long long)timeout_s);
            json_decref(a);
            c->json_out = json_out;
            return 1;
        }
        {
            struct timespec ts = {0, 250 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    if (bar)
        fprintf(stderr, "\n");
    c->json_out = json_out;
    if (rc == 0) {
        if (json_out) {
            char *t = json_dumps(a, JSON_COMPACT);
            printf("%s\n", t);
            free(t);
        } else {
            print_job(a);
        }
        rc = strcmp(json_string_value(json_object_get(a, "status")), "succeeded") == 0 ? 0 : 1;
    }
    json_decref(a);
    return rc;
}

static int
cmd_job(cli *c, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    char path[128];
    json_t *a = NULL;
    int rc;

    if (strcmp(sub, "submit") == 0) {
        const char *file = NULL;
        int wait = 0, i;
        json_t *spec;
        for (i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
                file = argv[++i];
            else if (strcmp(argv[i], "--wait") == 0)
                wait = 1;
            else
                return usage(c, "unexpected argument %.80s", argv[i]);
        }
        if (file == NULL)
            return usage(c, "%s", "job submit needs --file SPEC.json (or - for standard input)");
        if ((spec = load_doc(c, file)) == NULL)
            return 1;
        rc = call(c, "POST", "/v1/jobs", spec, &a);
        json_decref(spec);
        if (rc == 0 && !c->json_out)
            printf("job %s %s\n", json_string_value(json_object_get(a, "job_id")),
                   json_string_value(json_object_get(a, "status")));
        if (rc == 0 && wait) {
            char id[33];
            snprintf(id, sizeof id, "%s", json_string_value(json_object_get(a, "job_id")));
            json_decref(a);
            return job_wait(c, id, 0);
        }
        json_decref(a);
        return rc;
    }
    if (strcmp(sub, "list") == 0 && argc == 1) {
        size_t i;
        json_t *it;
        if ((rc = call(c, "GET", "/v1/jobs", NULL, &a)) == 0 && !c->json_out) {
            char buf[200];
            json_array_foreach(json_object_get(a, "items"), i, it) printf(
                "%s  %-9s  %-8s  %s v%lld  %s\n", json_string_value(json_object_get(it, "job_id")),
                json_string_value(json_object_get(it, "status")),
                json_string_value(json_object_get(it, "kind")),
                clean(json_object_get(it, "dataset"), buf, sizeof buf),
                (long long)json_integer_value(json_object_get(it, "version")),
                json_string_value(json_object_get(it, "created_at")));
        }
        json_decref(a);
        return rc;
    }
    if (argc < 2)
        return usage(c, "%s", "expected job submit|list|status|result|wait|cancel");
    if (strcmp(sub, "wait") == 0) {
        int64_t timeout = 0;
        if (argc == 4 && strcmp(argv[2], "--timeout") == 0) {
            if (sl_parse_i64(argv[3], 1, 7 * 86400, &timeout) != SL_OK)
                return usage(c, "%s", "--timeout takes seconds");
        } else if (argc != 2) {
            return usage(c, "%s", "expected job wait ID [--timeout S]");
        }
        return job_wait(c, argv[1], timeout);
    }
    if (strcmp(sub, "status") == 0 && argc == 2) {
        if ((rc = job_path(c, argv[1], "", path, sizeof path)) != 0)
            return rc;
        if ((rc = call(c, "GET", path, NULL, &a)) == 0 && !c->json_out)
            print_job(a);
        json_decref(a);
        return rc;
    }
    if (strcmp(sub, "cancel") == 0 && argc == 2) {
        if ((rc = job_path(c, argv[1], "", path, sizeof path)) != 0)
            return rc;
        if ((rc = call(c, "DELETE", path, NULL, &a)) == 0 && !c->json_out)
            printf("job %s cancelled\n", argv[1]);
        json_decref(a);
        return rc;
    }
    if (strcmp(sub, "result") == 0 && (argc == 2 || (argc == 4 && strcmp(argv[2], "--out") == 0))) {
        int json_out = c->json_out;
        char *t;
        if ((rc = job_path(c, argv[1], "/result", path, sizeof path)) != 0)
            return rc;
        c->json_out = 0;
        rc = call(c, "GET", path, NULL, &a);
        c->json_out = json_out;
        if (rc != 0)
            return rc;
        /* the result is JSON whatever --output says: the receipt in it is what is verified */
        t = json_dumps(a, JSON_INDENT(2));
        if (argc == 4) {
            sl_err err;
            sl_err_clear(&err);
            if (gw_file_write(argv[3], t, strlen(t), 0644, &err) != SL_OK) {
                fail(c, "%s", err.msg);
                rc = 1;
            } else {
                fprintf(stderr, "result written to %s\n", argv[3]);
            }
        } else {
            printf("%s\n", t);
        }
        free(t);
        json_decref(a);
        return rc;
    }
    return usage(c, "%s", "expected job submit|list|status|result|wait|cancel");
}

static int
cmd_receipt(cli *c, int argc, char **argv)
{
    const char *file = NULL, *key = NULL;
    json_t *doc, *rc_obj;
    int i, valid = 0, rc = 0;

    if (argc < 1 || strcmp(argv[0], "verify") != 0)
        return usage(c, "%s", "expected receipt verify --file R.json [--public-key KEY]");
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
            key = argv[++i];
        else
            return usage(c, "unexpected argument %.80s", argv[i]);
    }
    if (file == NULL)
        return usage(c, "%s", "receipt verify needs --file R.json");
    if ((doc = load_doc(c, file)) == NULL)
        return 1;
    /* a job's result holds its receipt; a receipt alone is accepted too */
    rc_obj = json_object_get(doc, "receipt") ? json_object_get(doc, "receipt") : doc;
    if (key != NULL) {
        unsigned char pks[GW_MAX_KEYS][CRY_SIGN_PK_BYTES];
        int n = parse_keys("receipt verify", key, pks, GW_MAX_KEYS);
        if (n < 0) {
            json_decref(doc);
            return 1;
        }
        for (i = 0; i < n && !valid; i++)
            valid = gw_receipt_verify(rc_obj, pks[i]);
    } else {
        json_t *body = json_pack("{s:O}", "receipt", rc_obj), *a = NULL;
        int json_out = c->json_out;
        c->json_out = 0;
        rc = call(c, "POST", "/v1/receipts/verify", body, &a);
        c->json_out = json_out;
        valid = rc == 0 && json_is_true(json_object_get(a, "valid"));
        json_decref(body);
        json_decref(a);
        if (rc != 0) {
            json_decref(doc);
            return rc;
        }
    }
    if (c->json_out)
        printf("{\"valid\":%s}\n", valid ? "true" : "false");
    else if (valid)
        printf("receipt verified: job %s, %s %s\n",
               json_string_value(json_object_get(rc_obj, "job_id")),
               json_object_get(rc_obj, "model_sha256") ? "model" : "result",
               json_string_value(json_object_get(rc_obj, "model_sha256")
                                     ? json_object_get(rc_obj, "model_sha256")
                                     : json_object_get(rc_obj, "result_sha256")));
    else
        printf("receipt NOT verified\n");
    json_decref(doc);
    return valid ? 0 : 1;
}

int
gw_cli_main(const char *cmd, int argc, char **argv)
{
    cli c = {cmd, 0, NULL, 0};
    char **args = sl_xcalloc((size_t)argc + 1, sizeof *args);
    int i, n = 0, rc;

    c.purpose = getenv("SLUICE_PURPOSE");
    if (c.purpose != NULL && *c.purpose == '\0')
        c.purpose = NULL;
    /* --output json and --purpose anywhere */
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--purpose") == 0 && i + 1 < argc) {
            c.purpose = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--bypass-governance") == 0) {
            c.bypass = 1;
            continue;
        }
        if (strcmp(argv[i], "--output") == 0 && i + 1 < argc) {
            if (strcmp(argv[i + 1], "json") != 0) {
                free(args);
                return fprintf(stderr, "sluice %s: --output takes json\n", cmd), 2;
            }
            c.json_out = 1;
            i++;
            continue;
        }
        args[n++] = argv[i];
    }
    if (c.purpose != NULL && !sl_name_valid(c.purpose)) {
        free(args);
        return fprintf(stderr,
                       "sluice %s: --purpose (or SLUICE_PURPOSE) takes a word matching "
                       "^[a-z][a-z0-9_.-]{0,62}$\n",
                       cmd),
               2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "whoami") == 0)
        rc = cmd_whoami(&c, n, args);
    else if (strcmp(cmd, "principal") == 0)
        rc = cmd_principal(&c, n, args);
    else if (strcmp(cmd, "audit") == 0)
        rc = cmd_audit(&c, n, args);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(&c, n, args);
    else if (strcmp(cmd, "dataset") == 0)
        rc = cmd_dataset(&c, n, args);
    else if (strcmp(cmd, "store") == 0)
        rc = cmd_store(&c, n, args);
    else if (strcmp(cmd, "policy") == 0)
        rc = cmd_policy(&c, n, args);
    else if (strcmp(cmd, "retention") == 0)
        rc = cmd_retention(&c, n, args);
    else if (strcmp(cmd, "hold") == 0)
        rc = cmd_hold(&c, n, args);
    else if (strcmp(cmd, "job") == 0)
        rc = cmd_job(&c, n, args);
    else if (strcmp(cmd, "receipt") == 0)
        rc = cmd_receipt(&c, n, args);
    else {
        fprintf(stderr, "sluice: unknown command %s (see sluice --help)\n", cmd);
        rc = 2;
    }
    curl_global_cleanup();
    free(args);
    return rc;
}

/*
 * gateway/gw_cli.c: the client commands, over libcurl: whoami, principals, tokens, the
 * audit trail (export, and verify on the server or offline), public keys. Settings come
 * from SLUICE_ADDR, SLUICE_TOKEN and SLUICE_CACERT like other tools of the kind.
 */
#include <sys/stat.h>

#include <curl/curl.h>
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
} cli;

typedef struct {
    sl_buf body;
    FILE *sink; /* when streaming to a file or stdout */
    long status;
    int too_large;
} answer;

static size_t
on_data(char *p, size_t size, size_t n, void *cls)
{
    answer *a = cls;
    size_t len = size * n;

    if (a->sink != NULL && a->status >= 200 && a->status < 300)
        return fwrite(p, 1, len, a->sink) == len ? len : 0;
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
 * One request. body may be NULL; sink, when given, receives a 2xx body as it streams.
 * Returns the HTTP status, or -1 when the request could not be made (message printed).
 */
static long
request(const cli *c, const char *method, const char *path, const json_t *body, FILE *sink,
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
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    }
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
    curl_slist_free_all(h);
    sodium_memzero(auth, strlen(auth));
    free(auth);
    free(text);
    curl_easy_cleanup(curl);
    if (cc != CURLE_OK) {
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

/* Runs a request whose answer is JSON; *out is the parsed answer (NULL for 204). */
static int
call(const cli *c, const char *method, const char *path, const json_t *body, json_t **out)
{
    answer a;
    long st = request(c, method, path, body, NULL, &a);

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

/* Percent-encodes one path segment or query value. */
static void
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
        json_object_set(body, "roles", o.roles ? o.roles : json_array());
        json_object_set(body, "attributes", o.attrs ? o.attrs : json_object());
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

/* Offline verification of an exported trail. */
static int
load_keys(cry_verifier *v, const char *key)
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
            fprintf(stderr, "sluice audit verify: %s\n", err.msg);
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
            if (b && cry_unb64(b, strlen(b), pk, sizeof pk, &got) == SL_OK && got == sizeof pk) {
                cry_verifier_add_key(v, pk);
                n++;
            }
        }
    } else if (cry_unb64(text, len, pk, sizeof pk, &got) == SL_OK && got == sizeof pk) {
        cry_verifier_add_key(v, pk);
        n++;
    }
    json_decref(j);
    free(text);
    if (n == 0)
        fprintf(stderr, "sluice audit verify: --public-key is neither a base64 Ed25519 key nor "
                        "a file holding one\n");
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
        st = request(c, "GET", path, NULL, sink, &a);
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

static int
cmd_keys(cli *c, int argc, char **argv)
{
    json_t *a = NULL, *k;
    size_t i;
    int rc;

    if (argc != 1 || strcmp(argv[0], "public") != 0)
        return fprintf(stderr, "sluice keys: expected `sluice keys public`\n"), 2;
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

int
gw_cli_main(const char *cmd, int argc, char **argv)
{
    cli c = {cmd, 0};
    char **args = sl_xcalloc((size_t)argc + 1, sizeof *args);
    int i, n = 0, rc;

    /* --output json anywhere */
    for (i = 0; i < argc; i++) {
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
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "whoami") == 0)
        rc = cmd_whoami(&c, n, args);
    else if (strcmp(cmd, "principal") == 0)
        rc = cmd_principal(&c, n, args);
    else if (strcmp(cmd, "audit") == 0)
        rc = cmd_audit(&c, n, args);
    else if (strcmp(cmd, "keys") == 0)
        rc = cmd_keys(&c, n, args);
    else {
        fprintf(stderr, "sluice: unknown command %s (see sluice --help)\n", cmd);
        rc = 2;
    }
    curl_global_cleanup();
    free(args);
    return rc;
}

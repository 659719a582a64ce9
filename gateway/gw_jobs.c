/*
 * gateway/gw_jobs.c: governed compute. A job is checked (policy, its columns, the release
 * rules that can be checked before it runs, the privacy budget) and queued in
 * PostgreSQL; any gateway's workers claim it (FOR UPDATE SKIP LOCKED), decide again, and
 * stream the version's rows through the same view as a read (denied columns, masks, row
 * filters) into a fresh sluice-zone process over a pipe. The zone answers with
 * aggregates only; the gateway checks them against the release rules again, signs a
 * receipt binding the result to the data, the policy and the job, and keeps both.
 *
 * What leaves: model parameters, metrics and aggregate statistics, each through the
 * rules of API.md; never a row. The zone's words (an error, a refused rule) are bounded,
 * printable text.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmp.h"
#include "gw_http.h"

#define JOB_MIN_ROWS        100
#define JOB_MIN_CELL        10
#define JOB_BUDGET_TOTAL    10.0
#define JOB_MAX_COLUMNS     256
#define JOB_DEFAULT_LIMIT_S 3600
#define JOB_BEAT_MS         1000
#define JOB_STALE_S         60
#define JOB_SPEC_MAX        65536
#define JOB_ERROR_MAX       256
/* the longest category a result may name (one_hot's design columns, a features job's
 * counts): longer values are not released */
#define JOB_MAX_CATEGORY_TEXT 1024
/* a restricted dataset's validation split, whatever the job asks */
#define JOB_RESTRICTED_FRACTION 0.2

/* ---- the spec ---- */

/* Compact JSON text (malloc'd); panics only when out of memory. */
static char *
dumps(const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17));

    if (t == NULL)
        sl_panic("out of memory");
    return t;
}

static int
word(const json_t *v)
{
    return json_is_string(v) && sl_name_valid(json_string_value(v));
}

/* A number (integer or real) in [lo, hi]; def when absent. */
static sl_code
num(const json_t *o, const char *key, double lo, double hi, double def, double *out, sl_err *err)
{
    const json_t *v = json_object_get(o, key);

    *out = def;
    if (v == NULL)
        return SL_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < lo ||
        json_number_value(v) > hi)
        return sl_err_set(err, SL_EINVALID, "%s must be a number in [%g, %g]", key, lo, hi);
    *out = json_number_value(v);
    return SL_OK;
}

static sl_code
integer(const json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t def,
        json_int_t *out, sl_err *err)
{
    const json_t *v = json_object_get(o, key);

    *out = def;
    if (v == NULL)
        return SL_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return sl_err_set(err, SL_EINVALID, "%s must be an integer in [%lld, %lld]", key,
                          (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return SL_OK;
}

/* A list of unique column names (1..JOB_MAX_COLUMNS) into out (the same names, new). */
static sl_code
names_unique(const json_t *arr, const char *what, sl_err *err)
{
    size_t i, j, n = json_array_size(arr);

    if (!json_is_array(arr) || n == 0 || n > JOB_MAX_COLUMNS)
        return sl_err_set(err, SL_EINVALID, "%s must list 1 to %d columns", what, JOB_MAX_COLUMNS);
    for (i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        if (!json_is_string(a) || json_string_length(a) == 0 || json_string_length(a) > 255)
            return sl_err_set(err, SL_EINVALID, "%s: a column is a name of 1 to 255 bytes", what);
        for (j = 0; j < i; j++)
            if (json_equal(a, json_array_get(arr, j)))
                return sl_err_set(err, SL_EINVALID, "%s: column \"%s\" is named twice", what,
                                  json_string_value(a));
    }
    return SL_OK;
}

static const char *const transforms[] = {"identity", "standardize", "minmax",
                                         "log1p",    "one_hot",     NULL};
static const char *const models[] = {"linear_regression", "logistic_regression", "kmeans", "pca",
                                     NULL};

static int
one_of(const char *s, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

/*
 * The spec as the job keeps it: every field checked and every default made explicit
 * (the version is resolved later). purpose is the header's (or ""), which a spec's own
 * must equal when both are given.
 */
static sl_code
spec_normalise(const json_t *in, const char *hdr_purpose, json_t **out, sl_err *err)
{
    static const char *const top[] = {
        "dataset",    "version", "purpose", "kind", "features",     "label", "model",
        "validation", "columns", "privacy", "bins", "time_limit_s", NULL};
    const json_t *v;
    const char *kind, *purpose = hdr_purpose;
    json_int_t lim;
    json_t *o;
    sl_code rc;

    *out = NULL;
    if ((rc = gw_json_only(in, top, err)) != SL_OK)
        return rc;
    v = json_object_get(in, "dataset");
    if (!json_is_string(v) || !sl_name_valid(json_string_value(v)))
        return sl_err_set(err, SL_EINVALID, "dataset must be a dataset's name");
    v = json_object_get(in, "purpose");
    if (v != NULL) {
        if (!word(v))
            return sl_err_set(err, SL_EINVALID,
                              "purpose must be a word matching "
                              "^[a-z][a-z0-9_.-]{0,62}$");
        if (purpose[0] != '\0' && strcmp(purpose, json_string_value(v)) != 0)
            return sl_err_set(err, SL_EINVALID, "purpose differs from the X-Sluice-Purpose header");
        purpose = json_string_value(v);
    }
    v = json_object_get(in, "kind");
    if (!json_is_string(v) ||
        (strcmp(json_string_value(v), "train") != 0 && strcmp(json_string_value(v), "features")))
        return sl_err_set(err, SL_EINVALID, "kind must be \"train\" or \"features\"");
    kind = json_string_value(v);
    if ((rc = integer(in, "time_limit_s", 1, 86400, JOB_DEFAULT_LIMIT_S, &lim, err)) != SL_OK)
        return rc;
    v = json_object_get(in, "version");
    if (v != NULL && !(json_is_string(v) && strcmp(json_string_value(v), "latest") == 0) &&
        !(json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= INT32_MAX))
        return sl_err_set(err, SL_EINVALID, "version must be a positive integer or \"latest\"");
    o = json_pack("{s:O, s:o, s:s, s:s, s:I}", "dataset", json_object_get(in, "dataset"), "version",
                  v ? json_incref((json_t *)v) : json_string("latest"), "purpose", purpose, "kind",
                  kind, "time_limit_s", (json_int_t)lim);

    if (strcmp(kind, "train") == 0) {
        const json_t *feats = json_object_get(in, "features"), *m = json_object_get(in, "model");
        const json_t *val = json_object_get(in, "validation"), *f;
        static const char *const mkeys[] = {"type", "l2",         "max_iter", "tol",
                                            "k",    "components", "seed",     NULL};
        static const char *const fkeys[] = {"column", "transform", NULL};
        static const char *const vkeys[] = {"fraction", "seed", NULL};
        const char *type;
        json_t *nf = json_array(), *names = json_array(), *nm;
        double l2, tol, frac;
        json_int_t it, k, comp, seed, vseed;
        size_t i;

        if (json_object_get(in, "columns") || json_object_get(in, "privacy") ||
            json_object_get(in, "bins")) {
            rc = sl_err_set(err, SL_EINVALID, "columns, privacy and bins are for features jobs");
            goto train_out;
        }
        if (!json_is_array(feats) || json_array_size(feats) == 0 ||
            json_array_size(feats) > JOB_MAX_COLUMNS) {
            rc =
                sl_err_set(err, SL_EINVALID, "features must list 1 to %d columns", JOB_MAX_COLUMNS);
            goto train_out;
        }
        json_array_foreach(feats, i, f)
        {
            const json_t *t = json_object_get(f, "transform");
            if (!json_is_object(f) || gw_json_only(f, fkeys, err) != SL_OK ||
                !json_is_string(json_object_get(f, "column"))) {
                rc = sl_err_set(err, SL_EINVALID,
                                "features[%zu] must be {\"column\", \"transform\"}", i);
                goto train_out;
            }
            if (t != NULL && (!json_is_string(t) || !one_of(json_string_value(t), transforms))) {
                rc = sl_err_set(err, SL_EINVALID,
                                "features[%zu].transform must be identity, standardize, minmax, "
                                "log1p or one_hot",
                                i);
                goto train_out;
            }
            json_array_append(names, json_object_get(f, "column"));
            json_array_append_new(nf,
                                  json_pack("{s:O, s:s}", "column", json_object_get(f, "column"),
                                            "transform", t ? json_string_value(t) : "identity"));
        }
        if (!json_is_object(m) || gw_json_only(m, mkeys, err) != SL_OK ||
            !json_is_string(json_object_get(m, "type")) ||
            !one_of(json_string_value(json_object_get(m, "type")), models)) {
            rc = sl_err_set(err, SL_EINVALID,
                            "model must be {\"type\": linear_regression, logistic_regression, "
                            "kmeans or pca, ...}");
            goto train_out;
        }
        type = json_string_value(json_object_get(m, "type"));
        if ((rc = num(m, "l2", 0, 1e6, strcmp(type, "logistic_regression") == 0 ? 1e-4 : 0, &l2,
                      err)) != SL_OK ||
            (rc = integer(m, "max_iter", 1, 10000, 100, &it, err)) != SL_OK ||
            (rc = num(m, "tol", 1e-15, 1, 1e-6, &tol, err)) != SL_OK ||
            (rc = integer(m, "k", 1, 1024, 0, &k, err)) != SL_OK ||
            (rc = integer(m, "components", 1, 4096, 0, &comp, err)) != SL_OK ||
            (rc = integer(m, "seed", 0, INT32_MAX, 0, &seed, err)) != SL_OK)
            goto train_out;
        if (strcmp(type, "kmeans") == 0 && k == 0) {
            rc = sl_err_set(err, SL_EINVALID, "model.k is required for kmeans");
            goto train_out;
        }
        if (strcmp(type, "pca") == 0 && comp == 0) {
            rc = sl_err_set(err, SL_EINVALID, "model.components is required for pca");
            goto train_out;
        }
        v = json_object_get(in, "label");
        if (strcmp(type, "linear_regression") == 0 || strcmp(type, "logistic_regression") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0) {
                rc = sl_err_set(err, SL_EINVALID, "label is required for %s", type);
                goto train_out;
            }
            json_array_append(names, (json_t *)v);
        } else if (v != NULL) {
            rc = sl_err_set(err, SL_EINVALID, "%s takes no label", type);
            goto train_out;
        }
        if ((rc = names_unique(names, "features and label", err)) != SL_OK)
            goto train_out;
        if (val != NULL && (!json_is_object(val) || gw_json_only(val, vkeys, err) != SL_OK)) {
            rc = sl_err_set(err, SL_EINVALID, "validation must be {\"fraction\", \"seed\"}");
            goto train_out;
        }
        if ((rc = num(val, "fraction", 0, 0.9, 0.2, &frac, err)) != SL_OK ||
            (rc = integer(val, "seed", 0, INT32_MAX, 0, &vseed, err)) != SL_OK)
            goto train_out;
        nm = json_pack("{s:s, s:f, s:I, s:f}", "type", type, "l2", l2, "max_iter", (json_int_t)it,
                       "tol", tol);
        if (k > 0)
            json_object_set_new(nm, "k", json_integer(k));
        if (comp > 0)
            json_object_set_new(nm, "components", json_integer(comp));
        json_object_set_new(nm, "seed", json_integer(seed));
        json_object_set(o, "features", nf);
        if (v != NULL)
            json_object_set(o, "label", (json_t *)v);
        json_object_set_new(o, "model", nm);
        json_object_set_new(o, "validation",
                            json_pack("{s:f, s:I}", "fraction", frac, "seed", (json_int_t)vseed));
    train_out:
        json_decref(nf);
        json_decref(names);
        if (rc != SL_OK) {
            json_decref(o);
            return rc;
        }
    } else {
        const json_t *cols = json_object_get(in, "columns"), *p = json_object_get(in, "privacy");
        static const char *const pkeys[] = {"epsilon", "bounds", NULL};
        json_int_t bins;

        if (json_object_get(in, "features") || json_object_get(in, "label") ||
            json_object_get(in, "model") || json_object_get(in, "validation")) {
            json_decref(o);
            return sl_err_set(err, SL_EINVALID,
                              "features, label, model and validation are for train jobs");
        }
        if ((rc = names_unique(cols, "columns", err)) != SL_OK ||
            (rc = integer(in, "bins", 1, 100, 10, &bins, err)) != SL_OK) {
            json_decref(o);
            return rc;
        }
        json_object_set(o, "columns", (json_t *)cols);
        json_object_set_new(o, "bins", json_integer(bins));
        if (p != NULL) {
            const json_t *b = json_object_get(p, "bounds"), *e = json_object_get(p, "epsilon"), *lh;
            const char *name;
            if (!json_is_object(p) || gw_json_only(p, pkeys, err) != SL_OK || !json_is_number(e) ||
                !(json_number_value(e) > 0 && json_number_value(e) <= 10) ||
                (b != NULL && !json_is_object(b))) {
                json_decref(o);
                return sl_err_set(err, SL_EINVALID,
                                  "privacy must be {\"epsilon\": 0 < e <= 10, \"bounds\": "
                                  "{\"<column>\": [lo, hi]}}");
            }
            json_object_foreach((json_t *)b, name, lh)
            {
                const json_t *lo = json_array_get(lh, 0), *hi = json_array_get(lh, 1);
                size_t i, found = 0;
                json_t *c;
                json_array_foreach(cols, i, c) found |= strcmp(json_string_value(c), name) == 0;
                if (!found || json_array_size(lh) != 2 || !json_is_number(lo) ||
                    !json_is_number(hi) || !isfinite(json_number_value(lo)) ||
                    !isfinite(json_number_value(hi)) ||
                    !(json_number_value(lo) < json_number_value(hi))) {
                    json_decref(o);
                    return sl_err_set(err, SL_EINVALID,
                                      "privacy.bounds: each is a listed column's [lo, hi] with "
                                      "lo < hi");
                }
            }
            json_object_set_new(o, "privacy",
                                json_pack("{s:f, s:o}", "epsilon", json_number_value(e), "bounds",
                                          b ? json_deep_copy(b) : json_object()));
        }
    }
    *out = o;
    return SL_OK;
}

/* ---- checks against the dataset ---- */

/* The manifest index of a column, or -1. */
static long
column_index(const gw_decision *g, const char *name)
{
    size_t i;

    for (i = 0; i < g->ncols; i++)
        if (strcmp(g->cols[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int
tagged(const pol_column *c, const char *tag)
{
    size_t i;

    for (i = 0; i < c->ntags; i++)
        if (strcmp(c->tags[i], tag) == 0)
            return 1;
    return 0;
}

/* What a job reads: the columns it names, in order (features then label, or columns). */
static json_t *
job_columns(const json_t *spec)
{
    json_t *out = json_array(), *f;
    size_t i;

    if (strcmp(json_string_value(json_object_get(spec, "kind")), "train") == 0) {
        json_array_foreach(json_object_get(spec, "features"), i, f)
            json_array_append(out, json_object_get(f, "column"));
        if (json_object_get(spec, "label") != NULL)
            json_array_append(out, json_object_get(spec, "label"));
    } else {
        json_array_foreach(json_object_get(spec, "columns"), i, f) json_array_append(out, f);
    }
    return out;
}

/*
 * The job's columns against the decision: they exist, none is denied, a masked column
 * served as text is only one_hot's or a features job's; the release rules that need no
 * data (one_hot never on id or pii columns, features never on pii ones, privacy bounds
 * for numeric columns). SL_OK, or the refusal: SL_EINVALID (the spec does not fit the
 * data) or SL_EDENIED with rule set (a policy or a release rule).
 */
static sl_code
job_fits(const json_t *spec, const gw_decision *g, size_t **idx, size_t *n, const char **rule,
         sl_err *err)
{
    uint8_t *denied = sl_xcalloc(g->ncols + 1, 1), *mask = sl_xcalloc(g->ncols + 1, 1);
    json_t *cols = job_columns(spec), *c;
    int train = strcmp(json_string_value(json_object_get(spec, "kind")), "train") == 0;
    const json_t *bounds = json_object_get(json_object_get(spec, "privacy"), "bounds");
    const json_t *label = json_object_get(spec, "label");
    sl_code rc = SL_OK;
    size_t i;

    *rule = NULL;
    *idx = sl_xcalloc(json_array_size(cols) + 1, sizeof **idx);
    *n = 0;
    pol_decision_view(&g->d, denied, mask);
    json_array_foreach(cols, i, c)
    {
        const char *name = json_string_value(c), *transform = NULL;
        long at = column_index(g, name);
        int text;

        if (at < 0) {
            rc = sl_err_set(err, SL_EINVALID, "no column \"%s\" in the dataset", name);
            break;
        }
        if (denied[at]) {
            *rule = "policy";
            rc = sl_err_set(err, SL_EDENIED, "column \"%s\" is denied by policy", name);
            break;
        }
        text = g->cols[at].type == POL_STRING ||
               (mask[at] != POL_MASK_NONE && mask[at] != POL_MASK_NULL);
        if (train && i < json_array_size(json_object_get(spec, "features")))
            transform = json_string_value(
                json_object_get(json_array_get(json_object_get(spec, "features"), i), "transform"));
        if (transform != NULL && strcmp(transform, "one_hot") == 0 &&
            (tagged(&g->cols[at], "id") || tagged(&g->cols[at], "pii"))) {
            *rule = "one_hot_id_pii";
            rc = sl_err_set(err, SL_EDENIED,
                            "release rule one_hot_id_pii: one_hot is refused on column \"%s\", "
                            "tagged id or pii",
                            name);
            break;
        }
        if (!train && tagged(&g->cols[at], "pii")) {
            *rule = "features_pii";
            rc = sl_err_set(err, SL_EDENIED,
                            "release rule features_pii: features jobs refuse column \"%s\", "
                            "tagged pii",
                            name);
            break;
        }
        if (train && text && (transform == NULL || strcmp(transform, "one_hot") != 0)) {
            rc = sl_err_set(err, SL_EINVALID,
                            "column \"%s\" is %s: only one_hot applies to it (and it cannot be a "
                            "label)",
                            name, g->cols[at].type == POL_STRING ? "text" : "masked into text");
            break;
        }
        if (train && label != NULL && strcmp(name, json_string_value(label)) == 0 &&
            mask[at] != POL_MASK_NONE) {
            rc = sl_err_set(err, SL_EINVALID, "the label \"%s\" is masked by policy", name);
            break;
        }
        if (!train && json_object_get(spec, "privacy") != NULL && !text &&
            json_object_get(bounds, name) == NULL) {
            rc = sl_err_set(err, SL_EINVALID,
                            "privacy.bounds must give [lo, hi] for numeric column \"%s\"", name);
            break;
        }
        (*idx)[(*n)++] = (size_t)at;
    }
    json_decref(cols);
    free(denied);
    free(mask);
    return rc;
}

/* ---- receipts ---- */

static sl_code
sha256_jcs(const json_t *v, char hex[65], sl_err *err)
{
    unsigned char h[CRY_HASH_BYTES];
    sl_buf b;

    sl_buf_init(&b, (size_t)64 << 20);
    if (cry_jcs_reals(v, &b) != SL_OK) {
        sl_buf_free(&b);
        return sl_err_set(err, SL_EINTERNAL, "a value has no canonical JSON");
    }
    cry_sha256(b.data, b.len, h);
    cry_hex(h, sizeof h, hex);
    sl_buf_free(&b);
    return SL_OK;
}

int
gw_receipt_verify(const json_t *receipt, const unsigned char pk[CRY_SIGN_PK_BYTES])
{
    const json_t *sig = json_object_get(receipt, "signature");
    unsigned char raw[CRY_SIG_BYTES];
    size_t n = 0;
    json_t *body;
    sl_buf b;
    int ok = 0;

    if (!json_is_object(receipt) || !json_is_string(sig) ||
        cry_unb64(json_string_value(sig), json_string_length(sig), raw, sizeof raw, &n) != SL_OK ||
        n != sizeof raw)
        return 0;
    body = json_deep_copy(receipt);
    json_object_del(body, "signature");
    sl_buf_init(&b, (size_t)64 << 20);
    if (cry_jcs_reals(body, &b) == SL_OK)
        ok = cry_sign_verify(pk, b.data, b.len, raw);
    sl_buf_free(&b);
    json_decref(body);
    return ok;
}

/* Signs r (the receipt without its signature) with the gateway's active key. */
static sl_code
receipt_sign(const gw_keys *k, json_t *r, sl_err *err)
{
    unsigned char sig[CRY_SIG_BYTES];
    char b64[128];
    sl_buf b;

    json_object_set_new(r, "key_id", json_string(k->signing_id));
    sl_buf_init(&b, (size_t)64 << 20);
    if (cry_jcs_reals(r, &b) != SL_OK) {
        sl_buf_free(&b);
        return sl_err_set(err, SL_EINTERNAL, "the receipt has no canonical JSON");
    }
    cry_sign(k->signing, b.data, b.len, sig);
    sl_buf_free(&b);
    cry_b64(sig, sizeof sig, b64);
    json_object_set_new(r, "signature", json_string(b64));
    return SL_OK;
}

/* ---- handlers ---- */

static void
job_id_new(char out[33])
{
    unsigned char raw[16];

    cry_random(raw, sizeof raw);
    cry_hex(raw, sizeof raw, out);
}

static int
job_id_valid(const char *s)
{
    size_t i;

    for (i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[32] == '\0';
}

static void
wake_workers(gw_req *r)
{
    gw_server *s = r->srv;

    pthread_mutex_lock(&s->jobs_mu);
    pthread_cond_broadcast(&s->jobs_cv);
    pthread_mutex_unlock(&s->jobs_mu);
}

void
gw_h_job_submit(gw_req *r)
{
    json_t *body = gw_body_or_reply(r, 0), *spec = NULL;
    const char *rule = NULL, *kind;
    gw_decision *g = NULL;
    size_t *idx = NULL, n = 0;
    db_dataset ds;
    db_version v;
    db_job j;
    PGconn *c = NULL;
    json_int_t want;
    sl_err err;
    sl_code rc;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    memset(&v, 0, sizeof v);
    memset(&j, 0, sizeof j);
    snprintf(r->resource, sizeof r->resource, "jobs");
    if (body == NULL)
        return;
    if ((rc = spec_normalise(body, r->purpose, &spec, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    kind = json_string_value(json_object_get(spec, "kind"));
    /* the job's purpose is the one its decisions and receipt name */
    snprintf(r->purpose, sizeof r->purpose, "%s",
             json_string_value(json_object_get(spec, "purpose")));
    r->detail = json_pack("{s:O, s:s}", "dataset", json_object_get(spec, "dataset"), "kind", kind);
    if (gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if ((rc = db_dataset_get(c, json_string_value(json_object_get(spec, "dataset")), 0, &ds,
                             &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    snprintf(r->resource, sizeof r->resource, "datasets/%s", ds.name);
    if (!gw_allowed(r, c, &ds, strcmp(kind, "train") == 0 ? "compute.train" : "compute.features",
                    &g))
        goto out;
    want = json_is_integer(json_object_get(spec, "version"))
               ? json_integer_value(json_object_get(spec, "version"))
               : 0;
    if (db_version_get(c, ds.id, (int)want, 0, &v, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    json_object_set_new(spec, "version", json_integer(v.version));
    json_object_set_new(r->detail, "version", json_integer(v.version));
    if (!gw_same_columns(json_object_get(v.manifest, "columns"), g)) {
        gw_reply_error(r, SL_EINTERNAL, "the version's columns are not the dataset's");
        goto out;
    }
    if ((rc = job_fits(spec, g, &idx, &n, &rule, &err)) != SL_OK) {
        if (rule != NULL) {
            json_object_set_new(r->detail, "rule", json_string(rule));
            gw_reason(r, "refused: %s", rule);
        }
        gw_reply_err(r, &err);
        goto out;
    }
    if (json_object_get(spec, "privacy") != NULL) {
        double eps =
                   json_number_value(json_object_get(json_object_get(spec, "privacy"), "epsilon")),
               left = 0;
        int ok = 0;
        if ((rc = db_budget_charge(c, ds.id, r->who.id, eps, JOB_BUDGET_TOTAL, &ok, &left, &err)) !=
            SL_OK) {
            gw_reply_err(r, &err);
            goto out;
        }
        if (!ok) {
            json_object_set_new(r->detail, "rule", json_string("privacy_budget"));
            gw_reason(r, "refused: privacy_budget");
            gw_reply_error(r, SL_EDENIED,
                           "release rule privacy_budget: this job's epsilon would pass your "
                           "privacy budget on dataset \"%s\"",
                           ds.name);
            goto out;
        }
        j.epsilon = eps;
    }
    job_id_new(j.id);
    j.principal_id = r->who.id;
    j.dataset_id = ds.id;
    j.version = v.version;
    snprintf(j.kind, sizeof j.kind, "%s", kind);
    snprintf(j.purpose, sizeof j.purpose, "%s", r->purpose);
    j.time_limit_s = (int)json_integer_value(json_object_get(spec, "time_limit_s"));
    j.spec = dumps(spec);
    if (strlen(j.spec) > JOB_SPEC_MAX) {
        gw_reply_error(r, SL_ETOOLARGE, "the job's spec is too large");
        goto out;
    }
    if ((rc = db_job_insert(c, &j, &err)) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    json_object_set_new(r->detail, "job_id", json_string(j.id));
    snprintf(r->resource, sizeof r->resource, "jobs/%s", j.id);
    gw_reason(r, "queued");
    r->after_commit = wake_workers;
    gw_reply_json(r, 202, json_pack("{s:s, s:s}", "job_id", j.id, "status", "queued"));
out:
    free(j.spec);
    free(idx);
    gw_decision_free(g);
    db_version_clear(&v);
    db_dataset_clear(&ds);
    json_decref(spec);
    json_decref(body);
}

/* The job of the path, for the principal, an admin or (when staff) an auditor; 0 with
 * the answer set (404 for a job the caller may not see: its existence is not told). */
static int
path_job(gw_req *r, PGconn *c, int staff, db_job *j)
{
    sl_err err;

    sl_err_clear(&err);
    snprintf(r->resource, sizeof r->resource, "jobs/%.32s", r->params[0]);
    if (!job_id_valid(r->params[0])) {
        gw_reply_error(r, SL_ENOTFOUND, "no such job");
        return 0;
    }
    if (db_job_get(c, r->params[0], j, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return 0;
    }
    if (j->principal_id != r->who.id &&
        !(staff && (gw_has_role(r, "admin") || (staff > 1 && gw_has_role(r, "auditor"))))) {
        gw_reason(r, "not the job's principal");
        gw_reply_error(r, SL_ENOTFOUND, "no such job");
        return 0;
    }
    return 1;
}

static json_t *
job_status_json(const db_job *j)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "job_id", j->id, "status", j->status,
                  "kind", j->kind, "dataset", j->dataset, "version", j->version, "purpose",
                  j->purpose, "principal", j->principal, "created_at", j->created_at);

    if (j->started_at[0])
        json_object_set_new(o, "started_at", json_string(j->started_at));
    if (j->finished_at[0])
        json_object_set_new(o, "finished_at", json_string(j->finished_at));
    if (j->has_progress)
        json_object_set_new(o, "progress",
                            json_pack("{s:i, s:f}", "iteration", j->iteration, "loss",
                                      isfinite(j->loss) ? j->loss : 0.0));
    else
        json_object_set_new(o, "progress", json_null());
    if (j->error[0])
        json_object_set_new(o, "error", json_string(j->error));
    return o;
}

void
gw_h_job_status(gw_req *r)
{
    PGconn *c = gw_db_or_reply(r);
    db_job j;

    memset(&j, 0, sizeof j);
    if (c == NULL)
        return;
    if (path_job(r, c, 2, &j))
        gw_reply_json(r, 200, job_status_json(&j));
    gw_db_put(r, c, SL_OK);
    db_job_clear(&j);
}

void
gw_h_job_list(gw_req *r)
{
    const char *after = NULL;
    json_t *items = NULL;
    PGconn *c;
    int limit, more = 0;
    sl_err err;

    sl_err_clear(&err);
    if (!gw_list_args(r, &limit, &after))
        return;
    if ((c = gw_db_or_reply(r)) == NULL)
        return;
    if (db_job_list(c, r->who.id, after, limit, &items, &more, &err) != SL_OK) {
        gw_db_put(r, c, err.code);
        gw_reply_err(r, &err);
        return;
    }
    gw_db_put(r, c, SL_OK);
    {
        size_t n = json_array_size(items);
        json_t *last = n ? json_object_get(json_array_get(items, n - 1), "job_id") : NULL;
        gw_reply_json(
            r, 200,
            json_pack("{s:o, s:O}", "items", items, "next", more && last ? last : json_null()));
    }
}

void
gw_h_job_result(gw_req *r)
{
    PGconn *c = gw_db_or_reply(r);
    json_error_t je;
    db_job j;

    memset(&j, 0, sizeof j);
    if (c == NULL)
        return;
    if (!path_job(r, c, 0, &j))
        goto out;
    if (strcmp(j.status, "succeeded") == 0 && j.result != NULL) {
        json_t *res = json_loads(j.result, JSON_REJECT_DUPLICATES, &je);
        if (res == NULL)
            gw_reply_error(r, SL_EINTERNAL, "the job's stored result does not parse");
        else
            gw_reply_json(r, 200, res);
    } else if (strcmp(j.status, "cancelled") == 0) {
        gw_reply_error(r, SL_ENOTFOUND, "the job was cancelled: it has no result");
    } else if (strcmp(j.status, "queued") == 0 || strcmp(j.status, "running") == 0) {
        gw_reply_error(r, SL_ENOTFOUND, "the job is %s: no result yet", j.status);
    } else {
        gw_reply_error(r, SL_ENOTFOUND, "the job ended %s: it has no result", j.status);
    }
out:
    gw_db_put(r, c, SL_OK);
    db_job_clear(&j);
}

void
gw_h_job_cancel(gw_req *r)
{
    PGconn *c = NULL;
    db_job j;
    sl_err err;

    sl_err_clear(&err);
    memset(&j, 0, sizeof j);
    if (gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        return;
    }
    if (!path_job(r, c, 1, &j))
        goto out;
    if (db_job_cancel(c, j.id, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    r->detail = json_pack("{s:s, s:s}", "job_id", j.id, "was", j.status);
    gw_reason(r, "cancelled");
    gw_reply_json(r, 200, json_pack("{s:s, s:s}", "job_id", j.id, "status", "cancelled"));
out:
    db_job_clear(&j);
}

void
gw_h_receipt_verify(gw_req *r)
{
    json_t *body = gw_body_or_reply(r, 0);
    const json_t *rc, *kid;
    const gw_keys *k = r->srv->keys;
    int i, valid = 0;

    if (body == NULL)
        return;
    rc = json_object_get(body, "receipt");
    if (!json_is_object(rc)) {
        gw_reply_error(r, SL_EINVALID, "the body must be {\"receipt\": {...}}");
        json_decref(body);
        return;
    }
    kid = json_object_get(rc, "key_id");
    for (i = 0; json_is_string(kid) && i < k->npub && !valid; i++)
        if (strcmp(k->pub[i].id, json_string_value(kid)) == 0)
            valid = gw_receipt_verify(rc, k->pub[i].pk);
    if (json_is_string(json_object_get(rc, "job_id")))
        r->detail = json_pack("{s:O}", "job_id", json_object_get(rc, "job_id"));
    gw_reason(r, valid ? "valid" : "not valid");
    gw_reply_json(r, 200, json_pack("{s:b}", "valid", valid));
    json_decref(body);
}

/* ---- the workers ---- */

typedef struct {
    gw_server *s;
    db_job *j;
    PGconn *c;
    json_t *spec;
    int64_t deadline_ns, beat_ns;
    pid_t pid;
    int in_fd, out_fd; /* the zone's standard input (we write) and output (we read) */
    int err_fd;        /* its standard error (we read, into the log) */
    size_t err_logged; /* bytes of it logged so far (bounded) */
    /* the outcome */
    char status[16];
    char error[JOB_ERROR_MAX + 64];
    const char *rule;
    char rule_buf[64]; /* a rule the zone named */
    json_t *result;
    int final; /* the zone gave its last frame */
    int has_progress, iteration;
    double loss;
    int cancelled;
    int ended; /* ended elsewhere (reaped): the row is not ours to write */
} job_run;

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void outcome(job_run *x, const char *status, const char *fmt, ...) SL_PRINTF(3, 4);
static void
outcome(job_run *x, const char *status, const char *fmt, ...)
{
    va_list ap;

    if (x->status[0] != '\0')
        return; /* the first says what happened */
    snprintf(x->status, sizeof x->status, "%s", status);
    va_start(ap, fmt);
    vsnprintf(x->error, sizeof x->error, fmt, ap);
    va_end(ap);
}

/* Beats the job's heart (with its progress) at most once a JOB_BEAT_MS; notes a
 * cancellation. 1 while the job should go on. */
static int
beat(job_run *x, int force)
{
    int64_t now = mono_ns();
    char st[16];
    sl_err err;

    if (now > x->deadline_ns) {
        outcome(x, "failed", "the job's time limit (%d s) passed", x->j->time_limit_s);
        return 0;
    }
    if (atomic_load(&x->s->stopping)) {
        outcome(x, "failed", "the gateway running the job stopped");
        return 0;
    }
    if (!force && now - x->beat_ns < (int64_t)JOB_BEAT_MS * 1000000)
        return 1;
    x->beat_ns = now;
    sl_err_clear(&err);
    if (db_job_heartbeat(x->c, x->j->id, x->has_progress, x->iteration, x->loss, st, &err) !=
        SL_OK) {
        outcome(x, "failed", "the database could not be reached while running");
        return 0;
    }
    if (strcmp(st, "cancelled") == 0) {
        x->cancelled = 1;
        outcome(x, "cancelled", "cancelled");
        return 0;
    }
    if (strcmp(st, "running") != 0) {
        /* another gateway ended it (no heartbeat seen in time): it stays as they said */
        x->ended = 1;
        outcome(x, "failed", "the job was ended elsewhere (%s)", st);
        return 0;
    }
    return 1;
}

/* The zone executable: configured, or sluice-zone beside this binary. */
static void
zone_path(const gw_config *cfg, char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t k;
    char *slash;

    if (cfg->zone_bin[0] != '\0') {
        snprintf(out, n, "%s", cfg->zone_bin);
        return;
    }
    k = readlink("/proc/self/exe", self, sizeof self - 1);
    self[k > 0 ? k : 0] = '\0';
    slash = strrchr(self, '/');
    if (slash != NULL)
        *slash = '\0';
    if (strlen(self) + sizeof "/sluice-zone" > n)
        self[0] = '\0'; /* never: out is PATH_MAX + 16; the spawn then fails cleanly */
    memcpy(out, self, strlen(self));
    memcpy(out + strlen(self), "/sluice-zone", sizeof "/sluice-zone");
}

extern char **environ;

/* Starts a zone with a clean environment and only its two pipes (and stderr). */
static sl_code
zone_start(job_run *x, sl_err *err)
{
    const gw_config *cfg = x->s->cfg;
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    char path[PATH_MAX + 16], mem[24], cpu[24], thr[24], envthr[48], envcore[96];
    const char *core = getenv("OPENBLAS_CORETYPE");
    char *argv[10], *envp[4];
    posix_spawn_file_actions_t fa;
    long threads = cfg->zone_threads > 0 ? cfg->zone_threads : sysconf(_SC_NPROCESSORS_ONLN);
    long long cpu_s;
    int in_err[2] = {-1, -1};
    int e, ne = 0;

    /* within what the zone accepts (--threads 1..256, --cpu-s 1..7 days) */
    threads = threads < 1 ? 1 : threads > 256 ? 256 : threads;
    cpu_s = (long long)x->j->time_limit_s * threads + 5;
    cpu_s = cpu_s > 7 * 86400 ? 7 * 86400 : cpu_s;
    zone_path(cfg, path, sizeof path);
    snprintf(mem, sizeof mem, "%d", cfg->zone_mem_mib);
    snprintf(cpu, sizeof cpu, "%lld", cpu_s);
    snprintf(thr, sizeof thr, "%ld", threads);
    snprintf(envthr, sizeof envthr, "OPENBLAS_NUM_THREADS=%s", thr);
    envp[ne++] = envthr;
    /* the zone's large arrays on transparent huge pages: fewer faults filling them */
    envp[ne++] = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1";
    /* the machine's choice of kernels, when it made one (nothing else is passed on) */
    if (core != NULL && strlen(core) < 64 &&
        strspn(core, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(core)) {
        snprintf(envcore, sizeof envcore, "OPENBLAS_CORETYPE=%s", core);
        envp[ne++] = envcore;
    }
    envp[ne] = NULL;
    argv[0] = path;
    argv[1] = "--as-mib";
    argv[2] = mem;
    argv[3] = "--cpu-s";
    argv[4] = cpu;
    argv[5] = "--threads";
    argv[6] = thr;
    argv[7] = NULL;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(in_err, O_CLOEXEC) != 0) {
        e = errno;
        goto fail;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    /* its stderr is a pipe of ours (drained, cleaned and bounded into the log), never the
     * gateway's own descriptor */
    posix_spawn_file_actions_adddup2(&fa, in_err[1], 2);
    e = posix_spawn(&x->pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    close(in_err[1]);
    in[0] = out[1] = in_err[1] = -1;
    if (e != 0)
        goto fail;
    x->in_fd = in[1];
    x->out_fd = out[0];
    x->err_fd = in_err[0];
    /* a larger pipe: fewer switches between the gateway's writes and the zone's reads */
    (void)fcntl(x->in_fd, F_SETPIPE_SZ, 1 << 20);
    /* never blocked on a zone that stops reading: the time limit and a cancel hold */
    fcntl(x->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(x->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(x->err_fd, F_SETFL, O_NONBLOCK);
    return SL_OK;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (in_err[i] >= 0)
            close(in_err[i]);
    }
    x->pid = -1;
    sl_err_detail(err, "%s: %s", path, strerror(e));
    return sl_err_set(err, SL_EINTERNAL, "the compute zone could not be started");
}

/* What the zone says on its stderr (a sanitizer's report, say): into the log, cleaned,
 * at most 4 KiB a job; the rest read and dropped. */
static void
zone_stderr(job_run *x)
{
    char buf[1024], clean[1024];
    ssize_t k;

    while (x->err_fd >= 0 && (k = read(x->err_fd, buf, sizeof buf)) > 0) {
        if (x->err_logged < 4096) {
            sl_text_clean(clean, buf, (size_t)k, sizeof clean - 1);
            sl_warn("jobs %s: the zone said: %s", x->j->id, clean);
        }
        x->err_logged += (size_t)k;
    }
}

/* Waits at most 200 ms for fd (the zone's stdin or stdout) to be ready for events,
 * draining its stderr meanwhile: 1 ready, 0 not yet, -1 when the job must stop (beaten
 * first: its time limit, a cancel). */
static int
zone_wait(job_run *x, int fd, short events)
{
    struct pollfd pf[2] = {{fd, events, 0}, {x->err_fd, POLLIN, 0}};

    if (!beat(x, 0))
        return -1;
    if (poll(pf, 2, 200) <= 0)
        return 0;
    if (pf[1].revents != 0)
        zone_stderr(x);
    return pf[0].revents != 0;
}

/* Writes all of p to the zone, beating between waits; -1 when the job must stop. */
static int
zone_write(job_run *x, const void *p, size_t n)
{
    const unsigned char *q = p;

    while (n > 0) {
        ssize_t k;
        int ready = zone_wait(x, x->in_fd, POLLOUT);
        if (ready < 0)
            return -1;
        if (ready == 0)
            continue;
        k = write(x->in_fd, q, n > 65536 ? 65536 : n);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0) {
            outcome(x, "failed", "the compute zone stopped reading its input");
            return -1;
        }
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

static int
frame_out(job_run *x, uint8_t type, const void *p, size_t n)
{
    unsigned char head[CMP_FRAME_HEAD];

    cmp_frame_head(head, type, n);
    return zone_write(x, head, sizeof head) == 0 && (n == 0 || zone_write(x, p, n) == 0) ? 0 : -1;
}

/* Printable ASCII of the zone's text (bounded): what it says is relayed, never raw. */
static void
zone_text(const cmp_frame *f, char *out, size_t cap)
{
    size_t i, n = f->len < cap - 1 ? f->len : cap - 1;

    for (i = 0; i < n; i++)
        out[i] = f->payload[i] >= 0x20 && f->payload[i] < 0x7f ? (char)f->payload[i] : '?';
    out[n] = '\0';
}

/* Reads the zone's answer: progress, then one result, refusal or error. */
static void
zone_answer(job_run *x)
{
    sl_buf in;
    int done = 0;

    sl_buf_init(&in, CMP_FRAME_HEAD + CMP_FRAME_MAX);
    while (!done) {
        size_t room = in.max - in.len;
        int ready = zone_wait(x, x->out_fd, POLLIN);
        unsigned char *at;
        ssize_t k;

        if (ready < 0)
            break;
        if (ready == 0)
            continue;
        room = room > 65536 ? 65536 : room;
        if (room == 0 || sl_buf_room(&in, room, (char **)&at) != SL_OK) {
            outcome(x, "failed", "the compute zone's answer is too large");
            break;
        }
        k = read(x->out_fd, at, room);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0) {
            outcome(x, "failed", "the compute zone ended without an answer");
            break;
        }
        sl_buf_wrote(&in, (size_t)k);
        for (;;) {
            cmp_frame f;
            size_t used;
            sl_code rc = cmp_frame_parse((const unsigned char *)in.data, in.len, &f, &used);
            char text[JOB_ERROR_MAX];
            if (rc == SL_EBADREQ)
                break;
            if (rc != SL_OK) {
                outcome(x, "failed", "the compute zone answered a malformed frame");
                goto out;
            }
            if (f.type == CMP_F_PROGRESS && f.len == 12) {
                uint32_t it;
                double loss;
                memcpy(&it, f.payload, 4);
                memcpy(&loss, f.payload + 4, 8);
                x->has_progress = 1;
                x->iteration = it > INT32_MAX ? INT32_MAX : (int)it;
                x->loss = isfinite(loss) ? loss : 0;
            } else if (f.type == CMP_F_RESULT) {
                json_error_t je;
                x->result = json_loadb((const char *)f.payload, f.len, JSON_REJECT_DUPLICATES, &je);
                if (!json_is_object(x->result))
                    outcome(x, "failed", "the compute zone's result does not parse");
                done = 1;
            } else if (f.type == CMP_F_REFUSED) {
                zone_text(&f, x->rule_buf, sizeof x->rule_buf);
                x->rule = x->rule_buf;
                outcome(x, "refused", "release rule %s", x->rule_buf);
                done = 1;
            } else if (f.type == CMP_F_ERROR) {
                zone_text(&f, text, sizeof text);
                outcome(x, "failed", "%s", text);
                done = 1;
            } else {
                outcome(x, "failed", "the compute zone answered an unexpected frame");
                done = 1;
            }
            memmove(in.data, in.data + used, in.len - used);
            in.len -= used;
            if (done) {
                x->final = 1;
                break;
            }
        }
    }
out:
    sl_buf_free(&in);
}

/* Ends the zone: waited for (a few seconds when it answered, then killed), its end
 * explained. */
static void
zone_reap(job_run *x)
{
    int st = 0, waited = 0;
    pid_t got = 0;

    if (x->in_fd >= 0)
        close(x->in_fd);
    if (x->out_fd >= 0)
        close(x->out_fd);
    x->in_fd = x->out_fd = -1;
    zone_stderr(x);
    if (x->err_fd >= 0)
        close(x->err_fd);
    x->err_fd = -1;
    if (x->pid <= 0)
        return;
    while (x->final && waited < 5000 && (got = waitpid(x->pid, &st, WNOHANG)) == 0) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
        waited += 10;
    }
    if (got != x->pid) {
        kill(x->pid, SIGKILL);
        while (waitpid(x->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    x->pid = -1;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) {
        x->status[0] = '\0';
        json_decref(x->result);
        x->result = NULL;
        outcome(x, "failed",
                "the compute zone was killed by its sandbox (SIGSYS): it tried a system call it "
                "may not make");
    } else if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL) {
        outcome(x, "failed", "the compute zone was killed by signal %d", WTERMSIG(st));
    } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        outcome(x, "failed", "the compute zone failed (exit status %d)", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st) && !x->cancelled) {
        outcome(x, "failed", "the compute zone was stopped (time or memory limit)");
    }
}

/* ---- what may leave: the zone's answer checked against the job ---- */

/* Every key of o is one of keys. */
static int
keys_in(const json_t *o, const char *const *keys)
{
    const char *k;
    json_t *v;

    if (!json_is_object(o))
        return 0;
    json_object_foreach((json_t *)o, k, v)
    {
        if (!one_of(k, keys))
            return 0;
    }
    return 1;
}

static int
num_or_null(const json_t *v)
{
    return v == NULL || json_is_number(v) || json_is_null(v);
}

/* An array of n numbers (null allowed when nulls). */
static int
numbers_n(const json_t *a, size_t n, int nulls)
{
    size_t i;
    json_t *v;

    if (!json_is_array(a) || json_array_size(a) != n)
        return 0;
    json_array_foreach(a, i, v) if (!json_is_number(v) && !(nulls && json_is_null(v))) return 0;
    return 1;
}

/* A string a design column may be named: a feature's column, or a one_hot feature's
 * "column=..." (bounded). */
static int
design_name_ok(const json_t *spec, const json_t *name)
{
    const json_t *f;
    size_t i, cl;

    if (!json_is_string(name) ||
        json_string_length(name) > CMP_NAME_MAX + 1 + JOB_MAX_CATEGORY_TEXT)
        return 0;
    json_array_foreach(json_object_get(spec, "features"), i, f)
    {
        const char *col = json_string_value(json_object_get(f, "column"));
        const char *t = json_string_value(json_object_get(f, "transform"));
        cl = strlen(col);
        if (strcmp(json_string_value(name), col) == 0 && strcmp(t, "one_hot") != 0)
            return 1;
        if (strcmp(t, "one_hot") == 0 && strncmp(json_string_value(name), col, cl) == 0 &&
            json_string_value(name)[cl] == '=')
            return 1;
    }
    return 0;
}

/* A train job's model and metrics: the keys, types and sizes the spec implies. */
static int
model_shape_ok(const json_t *spec, const json_t *m, const json_t *met)
{
    static const char *const mkeys[] = {
        "type",      "features",   "transforms", "coefficients",       "intercept",
        "centroids", "components", "mean",       "explained_variance", NULL};
    static const char *const metkeys[] = {"evaluated_on",  "r2",          "rmse",
                                          "accuracy",      "log_loss",    "roc_auc",
                                          "inertia",       "iterations",  "explained_variance",
                                          "gradient_norm", "fit_seconds", NULL};
    static const char *const tkeys[] = {"column", "transform",  "mean",  "std", "min",
                                        "max",    "categories", "other", NULL};
    const json_t *feats = json_object_get(m, "features"), *ts = json_object_get(m, "transforms");
    const json_t *sf = json_object_get(spec, "features"), *sm = json_object_get(spec, "model");
    const char *type = json_string_value(json_object_get(sm, "type"));
    const char *k;
    json_t *v;
    size_t p, i, j;

    if (!keys_in(m, mkeys) || !keys_in(met, metkeys) || !json_is_array(feats) ||
        !json_equal(json_object_get(m, "type"), json_object_get(sm, "type")))
        return 0;
    json_object_foreach((json_t *)met, k, v)
    {
        if (strcmp(k, "evaluated_on") == 0 ? !json_is_string(v) : !num_or_null(v))
            return 0;
    }
    p = json_array_size(feats);
    json_array_foreach(feats, i, v) if (!design_name_ok(spec, v)) return 0;
    if (!json_is_array(ts) || json_array_size(ts) != json_array_size(sf))
        return 0;
    json_array_foreach(ts, i, v)
    {
        const json_t *f = json_array_get(sf, i), *cats = json_object_get(v, "categories");
        if (!keys_in(v, tkeys) ||
            !json_equal(json_object_get(v, "column"), json_object_get(f, "column")) ||
            !json_equal(json_object_get(v, "transform"), json_object_get(f, "transform")) ||
            !num_or_null(json_object_get(v, "mean")) || !num_or_null(json_object_get(v, "std")) ||
            !num_or_null(json_object_get(v, "min")) || !num_or_null(json_object_get(v, "max")))
            return 0;
        if (cats != NULL) {
            const json_t *c;
            if (!json_is_array(cats) || json_array_size(cats) > p)
                return 0;
            json_array_foreach(cats, j, c) if (!json_is_string(c) && !json_is_number(c)) return 0;
        }
    }
    if (strcmp(type, "kmeans") == 0) {
        const json_t *cs = json_object_get(m, "centroids");
        if (!json_is_array(cs) ||
            json_array_size(cs) != (size_t)json_integer_value(json_object_get(sm, "k")))
            return 0;
        json_array_foreach(cs, i, v) if (!numbers_n(v, p, 1)) return 0;
    } else if (strcmp(type, "pca") == 0) {
        const json_t *cs = json_object_get(m, "components");
        size_t nc = json_array_size(cs);
        if (!json_is_array(cs) ||
            nc != (size_t)json_integer_value(json_object_get(sm, "components")) ||
            !numbers_n(json_object_get(m, "mean"), p, 1) ||
            !numbers_n(json_object_get(m, "explained_variance"), nc, 1))
            return 0;
        json_array_foreach(cs, i, v) if (!numbers_n(v, p, 1)) return 0;
    } else if (!numbers_n(json_object_get(m, "coefficients"), p, 1) ||
               !num_or_null(json_object_get(m, "intercept"))) {
        return 0;
    }
    return 1;
}

/* A features job's statistics: exactly the spec's columns, each with the fields and sizes
 * the spec implies; categories at most rows / 10 of them (each of at least 10 rows). */
static int
stats_shape_ok(const json_t *spec, const json_t *st, json_int_t rows)
{
    static const char *const skeys[] = {"count",      "nulls", "mean",      "std",
                                        "min",        "max",   "quantiles", "histogram",
                                        "categories", "other", NULL};
    static const char *const qkeys[] = {"0.05", "0.25", "0.5", "0.75", "0.95", NULL};
    static const char *const hkeys[] = {"edges", "counts", NULL};
    const json_t *cols = json_object_get(spec, "columns"), *c;
    size_t bins = (size_t)json_integer_value(json_object_get(spec, "bins")), i;

    if (!json_is_object(st) || json_object_size(st) != json_array_size(cols))
        return 0;
    json_array_foreach(cols, i, c)
    {
        const json_t *o = json_object_get(st, json_string_value(c));
        const json_t *q = json_object_get(o, "quantiles"), *h = json_object_get(o, "histogram");
        const json_t *cats = json_object_get(o, "categories"), *v;
        const char *k;

        if (!keys_in(o, skeys) || !num_or_null(json_object_get(o, "count")) ||
            !num_or_null(json_object_get(o, "nulls")) || !num_or_null(json_object_get(o, "mean")) ||
            !num_or_null(json_object_get(o, "std")) || !num_or_null(json_object_get(o, "min")) ||
            !num_or_null(json_object_get(o, "max")) || !num_or_null(json_object_get(o, "other")))
            return 0;
        if (q != NULL && !json_is_null(q)) {
            if (!keys_in(q, qkeys))
                return 0;
            json_object_foreach((json_t *)q, k, v) if (!num_or_null(v)) return 0;
        }
        if (h != NULL && !json_is_null(h) &&
            (!keys_in(h, hkeys) || !numbers_n(json_object_get(h, "edges"), bins + 1, 0) ||
             !numbers_n(json_object_get(h, "counts"), bins, 1)))
            return 0;
        if (cats != NULL) {
            if (!json_is_object(cats) || (json_int_t)json_object_size(cats) > rows / 10)
                return 0;
            json_object_foreach((json_t *)cats, k, v)
            {
                if (!json_is_integer(v) || strlen(k) > JOB_MAX_CATEGORY_TEXT)
                    return 0;
            }
        }
    }
    return 1;
}

/*
 * The release rules again, on what the zone answered, which is not trusted: its shape
 * against the spec (the keys, types and sizes the job implies, so nothing else can ride
 * along); the rows it claims within what it was sent, and the rows sent at least
 * JOB_MIN_ROWS; a model's numbers at most its training rows / 10. 1 when it may leave.
 */
static int
release_ok(job_run *x, uint64_t sent)
{
    static const char *const tkeys[] = {"model", "metrics", "rows", NULL};
    static const char *const fkeys[] = {"stats", "rows", NULL};
    static const char *const rkeys[] = {"train", "validation", NULL};
    const json_t *rows = json_object_get(x->result, "rows");
    int train = strcmp(x->j->kind, "train") == 0;
    json_int_t n, nv = 0;

    if (sent < JOB_MIN_ROWS) {
        x->rule = "min_rows";
        outcome(x, "refused", "release rule min_rows: fewer rows than the rules require");
        return 0;
    }
    if (!keys_in(x->result, train ? tkeys : fkeys) || (train && !keys_in(rows, rkeys))) {
        outcome(x, "failed", "the compute zone's result is not what the job asked");
        return 0;
    }
    n = json_integer_value(train ? json_object_get(rows, "train") : rows);
    if (train)
        nv = json_integer_value(json_object_get(rows, "validation"));
    if (!json_is_integer(train ? json_object_get(rows, "train") : rows) || n < 0 || nv < 0 ||
        (uint64_t)n + (uint64_t)nv > sent) {
        outcome(x, "failed", "the compute zone's result does not account for its rows");
        return 0;
    }
    if (n < JOB_MIN_ROWS || (nv > 0 && nv < JOB_MIN_ROWS)) {
        x->rule = "min_rows";
        outcome(x, "refused", "release rule min_rows: fewer rows than the rules require");
        return 0;
    }
    if (train) {
        const json_t *m = json_object_get(x->result, "model");
        if (!json_is_object(m) ||
            !model_shape_ok(x->spec, m, json_object_get(x->result, "metrics"))) {
            outcome(x, "failed", "the compute zone's result is not what the job asked");
            return 0;
        }
        if (cmp_json_numbers(m) > (size_t)n / 10) {
            x->rule = "max_parameters";
            outcome(x, "refused",
                    "release rule max_parameters: the model would release more numbers than "
                    "the training rows / 10");
            return 0;
        }
    } else if (!stats_shape_ok(x->spec, json_object_get(x->result, "stats"), n)) {
        outcome(x, "failed", "the compute zone's result is not what the job asked");
        return 0;
    }
    return 1;
}

/* An event of a job's life (no request carries it): committed when w is given. */
static sl_code
job_event(gw_server *s, const db_job *j, const char *action, const char *decision,
          const char *reason, int status, json_t *detail, gw_audit_wait *w)
{
    char rid[33], resource[64];
    json_t *ev;

    job_id_new(rid);
    snprintf(resource, sizeof resource, "jobs/%s", j->id);
    ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:i, s:i, s:s, s:o}", "request_id", rid,
                   "principal", j->principal, "action", action, "resource", resource, "decision",
                   decision, "reason", reason, "purpose", j->purpose[0] ? j->purpose : NULL,
                   "status", status, "bytes", 0, "client", "sluice:jobs", "detail",
                   detail ? detail : json_object());
    if (ev == NULL)
        return SL_EINTERNAL;
    if (w == NULL) {
        gw_audit_post(s->audit, ev);
        return SL_OK;
    }
    memset(w, 0, sizeof *w);
    return gw_audit_commit(s->audit, ev, w);
}

/* The zone's spec: the job's, with what the gateway decides for it. */
static json_t *
zone_spec(const job_run *x, const db_dataset *ds, const db_version *v)
{
    json_t *z = json_deep_copy(x->spec);
    int restricted = strcmp(ds->classification, "restricted") == 0;
    unsigned char seed[32], h[CRY_HASH_BYTES];
    char hex[65];

    json_object_set_new(z, "restricted", json_boolean(restricted));
    json_object_set_new(z, "min_rows", json_integer(JOB_MIN_ROWS));
    json_object_set_new(z, "min_cell", json_integer(JOB_MIN_CELL));
    /* the rows the zone may expect (before the policy's filter): its first allocation */
    if (json_is_integer(json_object_get(v->doc, "rows")))
        json_object_set(z, "rows_hint", json_object_get(v->doc, "rows"));
    cry_random(seed, sizeof seed);
    cry_hex(seed, sizeof seed, hex);
    json_object_set_new(z, "noise_seed", json_string(hex));
    sodium_memzero(seed, sizeof seed);
    if (restricted && json_object_get(z, "validation") != NULL) {
        /* fixed per version, the fraction and the seed: repeated jobs cannot be differenced
         * over subsets that differ by a row */
        json_object_set_new(json_object_get(z, "validation"), "fraction",
                            json_real(JOB_RESTRICTED_FRACTION));
        const char *sha = json_string_value(json_object_get(v->doc, "sha256"));
        cry_sha256(sha ? sha : "", sha ? strlen(sha) : 0, h);
        json_object_set_new(
            json_object_get(z, "validation"), "seed",
            json_integer((json_int_t)(((uint32_t)h[0] << 23) | ((uint32_t)h[1] << 15) |
                                      ((uint32_t)h[2] << 7) | (h[3] >> 1))));
    }
    return z;
}

/* Runs a claimed job to its end; the job's row says how it ended. */
static void
run_job(gw_server *s, PGconn *c, db_job *j)
{
    job_run x;
    db_dataset ds;
    db_version v;
    db_principal who;
    gw_decision *g = NULL;
    gw_view *view = NULL;
    cry_key *key = NULL;
    st_reader *rd = NULL;
    size_t *idx = NULL, n = 0, i;
    st_type *types = NULL;
    json_t *zspec = NULL, *receipt = NULL, *doc = NULL;
    const char *rule = NULL;
    char started[SL_TS_LEN], finished[SL_TS_LEN];
    gw_audit_wait w;
    sl_buf piece;
    uint32_t bit;
    sl_err err;
    json_error_t je;
    int64_t t0_ns = 0, streamed_ns = 0;

    memset(&x, 0, sizeof x);
    memset(&ds, 0, sizeof ds);
    memset(&v, 0, sizeof v);
    memset(&who, 0, sizeof who);
    sl_err_clear(&err);
    x.s = s;
    x.j = j;
    x.c = c;
    x.pid = -1;
    x.in_fd = x.out_fd = x.err_fd = -1;
    x.beat_ns = mono_ns();
    x.deadline_ns = x.beat_ns + (int64_t)j->time_limit_s * 1000000000;
    sl_buf_init_wiped(&piece, (size_t)SL_MAX_CHUNK_BYTES * 2);
    sl_time_format_us(sl_now_us(), started);
    x.spec = json_loads(j->spec, JSON_REJECT_DUPLICATES, &je);
    if (x.spec == NULL) {
        outcome(&x, "failed", "the job's spec does not parse");
        goto end;
    }
    (void)job_event(s, j, "job.start", "allow", "claimed", 200,
                    json_pack("{s:s, s:i}", "dataset", j->dataset, "version", j->version), NULL);
    /* decided again now: the policy, the principal or the version may have changed */
    if (db_dataset_get(c, j->dataset, 0, &ds, &err) != SL_OK ||
        db_principal_get(c, j->principal, &who, &err) != SL_OK) {
        outcome(&x, "failed", "the job's dataset or principal is gone");
        goto end;
    }
    if (who.disabled) {
        outcome(&x, "refused", "the job's principal is disabled");
        goto end;
    }
    if (pol_action_parse(strcmp(j->kind, "train") == 0 ? "compute.train" : "compute.features",
                         &bit) != SL_OK ||
        gw_decide_for(NULL, c, &ds, &who, bit, j->purpose[0] ? j->purpose : NULL, &g, &err) !=
            SL_OK) {
        outcome(&x, "failed", "no decision: %s", err.msg);
        goto end;
    }
    if (!g->d.allow) {
        x.rule = "policy";
        outcome(&x, "refused", "the policy no longer allows this job: %s", g->d.reason);
        goto end;
    }
    if (db_version_get(c, ds.id, j->version, 0, &v, &err) != SL_OK) {
        outcome(&x, "failed", "version %d of dataset \"%s\" is no longer readable", j->version,
                ds.name);
        goto end;
    }
    if (!gw_same_columns(json_object_get(v.manifest, "columns"), g) ||
        job_fits(x.spec, g, &idx, &n, &rule, &err) != SL_OK) {
        x.rule = rule;
        outcome(&x, rule ? "refused" : "failed", "%s", err.msg);
        goto end;
    }
    types = sl_xcalloc(n + 1, sizeof *types);
    for (i = 0; i < n; i++)
        types[i] = (st_type)g->cols[idx[i]].type;
    if (gw_view_new(s->keys, c, g, ds.id, idx, types, n, &view, &err) != SL_OK ||
        gw_version_key(s->keys, &v, &key, &err) != SL_OK ||
        st_reader_new(s->storage, key, v.dataset_id, v.version, (uint32_t)v.key_version, v.manifest,
                      idx, n, 0, -1, ST_OUT_FRAMES, gw_view_get(view), &rd, &err) != SL_OK) {
        outcome(&x, "failed", "the version could not be read: %s", err.msg);
        goto end;
    }
    zspec = zone_spec(&x, &ds, &v);
    t0_ns = mono_ns();
    if (zone_start(&x, &err) != SL_OK) {
        sl_error("jobs %s: %s: %s", j->id, err.msg, err.detail);
        outcome(&x, "failed", "%s", err.msg);
        goto end;
    }
    {
        char *text = dumps(zspec);
        int bad = frame_out(&x, CMP_F_SPEC, text, strlen(text));
        free(text);
        if (bad)
            goto reap;
    }
    for (;;) {
        int more;
        sl_buf_reset(&piece);
        more = st_reader_next(rd, &piece, &err);
        if (more < 0) {
            outcome(&x, "failed", "the version could not be read: %s", err.msg);
            goto reap;
        }
        if (piece.len > 0 && zone_write(&x, piece.data, piece.len) != 0)
            goto reap;
        if (more == 0)
            break;
    }
    if (frame_out(&x, CMP_F_END, NULL, 0) != 0)
        goto reap;
    close(x.in_fd);
    x.in_fd = -1;
    streamed_ns = mono_ns();
    zone_answer(&x);
    sl_info("jobs %s: %llu rows streamed to the zone in %.2f s; its answer %.2f s later", j->id,
            (unsigned long long)st_reader_rows(rd), (double)(streamed_ns - t0_ns) / 1e9,
            (double)(mono_ns() - streamed_ns) / 1e9);
reap:
    zone_reap(&x);
    if (x.status[0] == '\0' && x.result != NULL && release_ok(&x, st_reader_rows(rd))) {
        const char *what = strcmp(j->kind, "train") == 0 ? "model" : "stats";
        char spec_sha[65], res_sha[65], ds_sha[65];
        json_t *dj = pol_decision_json(&g->d, &g->ds, 0);
        json_t *cps = NULL;
        int more = 0;

        snprintf(ds_sha, sizeof ds_sha, "%s",
                 json_string_value(json_object_get(v.doc, "sha256"))
                     ? json_string_value(json_object_get(v.doc, "sha256"))
                     : "");
        if (sha256_jcs(x.spec, spec_sha, &err) != SL_OK ||
            sha256_jcs(json_object_get(x.result, what), res_sha, &err) != SL_OK) {
            json_decref(dj);
            outcome(&x, "failed", "%s", err.msg);
            goto end;
        }
        /* the job's events so far, committed: the checkpoint covering them is in the receipt */
        if (job_event(s, j, "job.release", "allow", "released", 200,
                      json_pack("{s:s, s:s, s:s}", "result", what, "sha256", res_sha, "spec_sha256",
                                spec_sha),
                      &w) != SL_OK ||
            db_checkpoints_json(c, w.seq, 1, &cps, &more, &err) != SL_OK ||
            json_array_size(cps) != 1) {
            json_decref(dj);
            json_decref(cps);
            outcome(&x, "failed", "the audit trail could not record the job's release");
            goto end;
        }
        sl_time_format_us(sl_now_us(), finished);
        receipt = json_pack(
            "{s:s, s:s, s:s, s:s, s:i, s:s, s:O, s:O, s:s, s:s, s:O, s:s, s:s, s:s}", "job_id",
            j->id, "principal", j->principal, "purpose", j->purpose, "dataset", ds.name,
            "dataset_version", v.version, "dataset_sha256", ds_sha, "policy_versions",
            json_object_get(dj, "policy_versions"), "statements", json_object_get(dj, "statements"),
            "spec_sha256", spec_sha, strcmp(what, "model") == 0 ? "model_sha256" : "result_sha256",
            res_sha, "audit_checkpoint", json_array_get(cps, 0), "started", started, "finished",
            finished, "sluice_version", SLUICE_VERSION);
        json_decref(dj);
        json_decref(cps);
        if (receipt != NULL && json_object_get(x.result, "metrics") != NULL) {
            /* the metrics are signed too */
            char met_sha[65];
            if (sha256_jcs(json_object_get(x.result, "metrics"), met_sha, &err) == SL_OK)
                json_object_set_new(receipt, "metrics_sha256", json_string(met_sha));
            else
                json_decref(receipt), receipt = NULL;
        }
        if (receipt == NULL || receipt_sign(s->keys, receipt, &err) != SL_OK) {
            outcome(&x, "failed", "the receipt could not be signed");
            goto end;
        }
        doc = json_deep_copy(x.result);
        json_object_del(doc, "rows");
        json_object_set(doc, "receipt", receipt);
        outcome(&x, "succeeded", "%s", "");
    }
end:
    if (x.pid > 0)
        zone_reap(&x);
    if (x.status[0] == '\0')
        outcome(&x, "failed", "the job ended without a result");
    {
        char *text = doc ? dumps(doc) : NULL, st[16];
        int ok = strcmp(x.status, "succeeded") == 0;
        json_t *detail =
            json_pack("{s:s, s:s, s:s?}", "status", x.status, "kind", j->kind, "rule", x.rule);

        if (x.cancelled) {
            (void)job_event(s, j, "job.cancelled", "allow", "cancelled while running", 200, detail,
                            NULL);
        } else if (x.ended) {
            json_decref(detail); /* the gateway that ended it said so in the trail */
        } else {
            sl_code rc;
            /* the last progress the zone gave (beats are at most once a second) */
            if (x.has_progress &&
                db_job_heartbeat(c, j->id, 1, x.iteration, x.loss, st, &err) != SL_OK)
                sl_warn("jobs %s: its last progress was not recorded: %s", j->id, err.msg);
            /* the row first, then the event that says what the row says */
            rc = db_job_finish(c, j->id, x.status, ok ? NULL : x.error, text, &err);
            if (rc == SL_OK) {
                (void)job_event(s, j, "job.finish",
                                ok                                 ? "allow"
                                : strcmp(x.status, "refused") == 0 ? "deny"
                                                                   : "error",
                                ok ? "succeeded" : x.error,
                                ok                                 ? 200
                                : strcmp(x.status, "refused") == 0 ? 403
                                                                   : 500,
                                detail, NULL);
            } else {
                /* cancelled or ended elsewhere meanwhile: what it came to is discarded */
                db_job now;
                memset(&now, 0, sizeof now);
                sl_err_clear(&err);
                if (rc == SL_ECONFLICT && db_job_get(c, j->id, &now, &err) == SL_OK)
                    snprintf(x.error, sizeof x.error,
                             "the job was %s meanwhile: its %s was "
                             "discarded",
                             now.status, x.status);
                else
                    snprintf(x.error, sizeof x.error, "the job's end could not be recorded");
                json_object_set_new(detail, "discarded", json_true());
                (void)job_event(
                    s, j, strcmp(now.status, "cancelled") == 0 ? "job.cancelled" : "job.finish",
                    "error", x.error, 500, detail, NULL);
                sl_warn("jobs %s: %s", j->id, x.error);
                db_job_clear(&now);
                ok = 0;
            }
        }
        sl_info("jobs %s: %s%s%s", j->id, x.status, ok ? "" : ": ", ok ? "" : x.error);
        free(text);
    }
    st_reader_free(rd);
    gw_view_free(view);
    cry_key_free(key);
    gw_decision_free(g);
    free(idx);
    free(types);
    json_decref(zspec);
    json_decref(receipt);
    json_decref(doc);
    json_decref(x.result);
    json_decref(x.spec);
    sl_buf_free(&piece);
    db_principal_clear(&who);
    db_version_clear(&v);
    db_dataset_clear(&ds);
}

static void *
worker_main(void *arg)
{
    gw_server *s = arg;
    char me[96];
    struct timespec ts;

    snprintf(me, sizeof me, "gateway pid %d", (int)getpid());
    pthread_mutex_lock(&s->jobs_mu);
    while (!atomic_load(&s->stopping)) {
        PGconn *c = NULL;
        db_job j;
        json_t *reaped = NULL;
        int found = 0;
        sl_err err;

        pthread_mutex_unlock(&s->jobs_mu);
        sl_err_clear(&err);
        memset(&j, 0, sizeof j);
        if (db_acquire(s->pool, SL_DB_ACQUIRE_MS, &c, &err) == SL_OK) {
            if (db_jobs_reap(c, JOB_STALE_S, &reaped, &err) == SL_OK) {
                size_t i;
                json_t *id;
                json_array_foreach(reaped, i, id)
                {
                    db_job r;
                    memset(&r, 0, sizeof r);
                    if (db_job_get(c, json_string_value(id), &r, &err) == SL_OK)
                        (void)job_event(s, &r, "job.finish", "error",
                                        "the gateway running the job stopped", 500,
                                        json_pack("{s:s}", "status", "failed"), NULL);
                    db_job_clear(&r);
                }
                json_decref(reaped);
            }
            if (db_job_claim(c, me, &j, &found, &err) == SL_OK && found)
                run_job(s, c, &j);
            db_job_clear(&j);
            db_release(s->pool, c, err.code == SL_EUNAVAIL);
        }
        pthread_mutex_lock(&s->jobs_mu);
        if (found)
            continue; /* another may be waiting */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s->jobs_cv, &s->jobs_mu, &ts);
    }
    pthread_mutex_unlock(&s->jobs_mu);
    return NULL;
}

void
gw_jobs_start(gw_server *s)
{
    pthread_condattr_t ca;
    int i;

    pthread_mutex_init(&s->jobs_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->jobs_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->njob_workers = 0;
    for (i = 0; i < s->cfg->job_workers && i < GW_MAX_JOB_WORKERS; i++) {
        if (pthread_create(&s->job_workers[i], NULL, worker_main, s) != 0) {
            sl_error("jobs: a worker could not start");
            break;
        }
        s->njob_workers++;
    }
}

void
gw_jobs_stop(gw_server *s)
{
    int i;

    pthread_mutex_lock(&s->jobs_mu);
    atomic_store(&s->stopping, 1);
    pthread_cond_broadcast(&s->jobs_cv);
    pthread_mutex_unlock(&s->jobs_mu);
    for (i = 0; i < s->njob_workers; i++)
        pthread_join(s->job_workers[i], NULL);
    s->njob_workers = 0;
}

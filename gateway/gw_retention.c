/*
 * gateway/gw_retention.c: retention and legal holds, with S3 Object Lock's meaning.
 * min_days: no deletion before (in governance mode an admin may, with the bypass header,
 * audited); max_days: the sweeper crypto-shreds the version after, each shred its own
 * audit event committed before the key is destroyed; compliance retention is only ever
 * lengthened; a legal hold blocks every deletion, expiry included, until cleared.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_http.h"

#define DAY_US 86400000000.0

/* 1 when the request carries X-Sluice-Bypass-Governance: true. */
static int
bypass_asked(gw_req *r)
{
    const char *h =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sluice-Bypass-Governance");

    return h != NULL && strcasecmp(h, "true") == 0;
}

/* A day count for an audit event, whose numbers are integers only: its decimal text. */
static json_t *
days_json(double d)
{
    char t[32];

    if (d < 0)
        return json_null();
    snprintf(t, sizeof t, "%.17g", d);
    return json_string(t);
}

static json_t *
rule_json(double min_days, double max_days, const char *mode)
{
    return json_pack("{s:o, s:o, s:s}", "min_days", days_json(min_days), "max_days",
                     days_json(max_days), "mode", mode);
}

/*
 * 1 when rule n keeps every version at least as long as ds's rule: min_days not lower,
 * no expiry added or brought forward, compliance not turned into governance.
 */
static int
not_shorter(const db_dataset *ds, const gw_retention *n)
{
    double omin = ds->min_days < 0 ? 0 : ds->min_days, nmin = n->min_days < 0 ? 0 : n->min_days;

    if (ds->retention_mode[0] == '\0')
        return 1;
    if (nmin < omin)
        return 0;
    if (n->max_days >= 0 && (ds->max_days < 0 || n->max_days < ds->max_days))
        return 0;
    return !(strcmp(ds->retention_mode, "compliance") == 0 && strcmp(n->mode, "compliance") != 0);
}

sl_code
gw_retention_create(PGconn *c, int64_t dataset, const gw_retention *rt, sl_err *err)
{
    return db_retention_set(c, dataset, rt->min_days, rt->max_days, rt->mode, err);
}

void
gw_h_retention_put(gw_req *r)
{
    gw_retention rt;
    db_dataset ds;
    json_t *obj;
    PGconn *c = NULL;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_json_retention(obj, &rt, &err) != SL_OK || gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    if (!gw_path_dataset(r, c, 1, &ds) || !gw_allowed(r, c, &ds, "dataset.manage", NULL))
        goto out;
    json_object_set_new(r->detail, "retention", rule_json(rt.min_days, rt.max_days, rt.mode));
    if (ds.retention_mode[0] != '\0')
        json_object_set_new(r->detail, "previous",
                            rule_json(ds.min_days, ds.max_days, ds.retention_mode));
    if (!not_shorter(&ds, &rt)) {
        if (strcmp(ds.retention_mode, "compliance") == 0) {
            gw_reason(r, "compliance retention cannot be shortened");
            gw_reply_error(r, SL_ECONFLICT,
                           "dataset \"%s\" is under compliance retention: it can be lengthened, "
                           "never shortened or removed",
                           ds.name);
            goto out;
        }
        if (!(gw_has_role(r, "admin") && bypass_asked(r))) {
            gw_reason(r, "governance retention shortened without the bypass");
            gw_reply_error(r, SL_ECONFLICT,
                           "shortening the governance retention of dataset \"%s\" needs role "
                           "admin and X-Sluice-Bypass-Governance: true",
                           ds.name);
            goto out;
        }
        json_object_set_new(r->detail, "bypass_governance", json_true());
        gw_reason(r, "governance retention shortened by an admin's bypass");
    }
    if (db_retention_set(c, ds.id, rt.min_days, rt.max_days, rt.mode, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    db_dataset_clear(&ds);
    if (db_dataset_get(c, r->params[0], 0, &ds, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    /* the rule in force, as the database holds it */
    gw_reply_json(r, 200, json_deep_copy(json_object_get(ds.doc, "retention")));
out:
    db_dataset_clear(&ds);
    json_decref(obj);
}

void
gw_h_legal_hold_put(gw_req *r)
{
    const char *reason = "";
    db_dataset ds;
    json_t *obj;
    PGconn *c = NULL;
    int hold = 0;
    sl_err err;

    sl_err_clear(&err);
    memset(&ds, 0, sizeof ds);
    if ((obj = gw_body_or_reply(r, 0)) == NULL)
        return;
    if (gw_json_legal_hold(obj, &hold, &reason, &err) != SL_OK ||
        gw_txn_begin(r, &c, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    /* the route's roles (auditor, admin) decide: a hold is not the owner's to refuse */
    if (!gw_path_dataset(r, c, 1, &ds))
        goto out;
    json_object_set_new(r->detail, "legal_hold", json_boolean(hold));
    json_object_set_new(r->detail, "reason", json_string(reason));
    json_object_set_new(r->detail, "was", json_boolean(ds.legal_hold));
    gw_reason(r, "legal hold %s", hold ? "set" : "cleared");
    if (db_legal_hold_set(c, ds.id, hold, reason, &err) != SL_OK) {
        gw_reply_err(r, &err);
        goto out;
    }
    gw_reply_json(r, 200, json_pack("{s:b, s:s}", "hold", hold, "reason", reason));
out:
    db_dataset_clear(&ds);
    json_decref(obj);
}

/* The end of a retention as RFC 3339 seconds, rounded up: never a moment before it. */
static void
until_text(int64_t live_us, double days, char out[SL_TS_LEN])
{
    int64_t end_us = live_us + (int64_t)(days * DAY_US);

    sl_time_format_s(end_us / 1000000 + (end_us % 1000000 != 0), out);
}

int
gw_retention_may_delete(gw_req *r, const db_dataset *ds, const db_version *v)
{
    /* the database's clock, which stamped the version and runs the sweeper */
    double age_us = (double)v->age_us;
    char until[SL_TS_LEN];

    if (ds->legal_hold) {
        gw_reason(r, "legal hold");
        gw_reply_error(r, SL_ELOCKED,
                       "dataset \"%s\" is under a legal hold: no version can be deleted until "
                       "it is cleared",
                       ds->name);
        return 0;
    }
    if (ds->min_days < 0 || age_us >= ds->min_days * DAY_US)
        return 1;
    until_text(v->live_us, ds->min_days, until);
    if (strcmp(ds->retention_mode, "governance") == 0 && gw_has_role(r, "admin") &&
        bypass_asked(r)) {
        json_object_set_new(r->detail, "bypass_governance", json_true());
        json_object_set_new(r->detail, "retained_until", json_string(until));
        gw_reason(r, "governance retention bypassed by an admin");
        return 1;
    }
    json_object_set_new(r->detail, "retained_until", json_string(until));
    gw_reason(r, "%s retention until %s", ds->retention_mode, until);
    gw_reply_error(r, SL_ELOCKED, "version %d of dataset \"%s\" is under %s retention until %s%s",
                   v->version, ds->name, ds->retention_mode, until,
                   strcmp(ds->retention_mode, "governance") == 0
                       ? " (an admin may bypass it with X-Sluice-Bypass-Governance: true)"
                       : "");
    return 0;
}

/* ---- the sweeper ---- */

/* One expired version shredded: its event committed first, then its key destroyed (one
 * transaction), then its fragments removed. 1 done, 0 none left, -1 failed. */
static int
sweep_one(gw_server *s, PGconn *c)
{
    unsigned char raw[16];
    char rid[33], resource[SL_MAX_AUDIT_TEXT + 1], until[SL_TS_LEN];
    gw_audit_wait w;
    db_expired x;
    json_t *ev;
    int found = 0;
    sl_err err;

    sl_err_clear(&err);
    if (db_exec(c, "BEGIN", &err) != SL_OK)
        return -1;
    if (db_version_expired(c, &x, &found, &err) != SL_OK || !found) {
        db_rollback(c);
        return found ? -1 : (err.code == SL_OK ? 0 : -1);
    }
    if (db_version_shred(c, x.dataset_id, x.version, &err) != SL_OK) {
        db_rollback(c);
        return -1;
    }
    cry_random(raw, sizeof raw);
    cry_hex(raw, sizeof raw, rid);
    snprintf(resource, sizeof resource, "datasets/%s/versions/%d", x.name, x.version);
    until_text(x.live_us, x.max_days, until);
    ev = json_pack("{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:n, s:s, s:{s:s, s:i, s:{s:b, s:i, "
                   "s:s}, s:o, s:s}}",
                   "request_id", rid, "principal", "action", "dataset.expire", "resource", resource,
                   "decision", "allow", "reason", "retention: max_days reached", "purpose",
                   "status", 204, "bytes", "client", "sluice:retention", "detail", "dataset",
                   x.name, "version", x.version, "shred", "key_destroyed", 1, "master_key_version",
                   x.master_version, "sha256", x.sha256, "max_days", days_json(x.max_days),
                   "expired_at", until);
    memset(&w, 0, sizeof w);
    if (ev == NULL || gw_audit_commit(s->audit, ev, &w) != SL_OK) {
        /* no event, no shred: the next sweep tries again */
        db_rollback(c);
        sl_warn("retention: %s not shredded now: the audit trail is unavailable", resource);
        return -1;
    }
    if (db_exec(c, "COMMIT", &err) != SL_OK) {
        /* the event says shredded and the key is still there: the trail is corrected now
         * (the next sweep shreds it with an event of its own, unless a hold came first) */
        sl_error("retention: %s: the shred's commit failed after its event: %s", resource, err.msg);
        gw_audit_post(s->audit,
                      json_pack("{s:s, s:n, s:s, s:s, s:s, s:s, s:n, s:i, s:i, s:s, s:{s:I}}",
                                "request_id", rid, "principal", "action", "audit.correction",
                                "resource", resource, "decision", "error", "reason",
                                "the shred this event records did not commit: the key is kept",
                                "purpose", "status", 500, "bytes", 0, "client", "sluice:retention",
                                "detail", "corrects_seq", (json_int_t)w.seq));
        return -1;
    }
    sl_info("retention: %s expired: key destroyed (event seq %lld)", resource, (long long)w.seq);
    if (st_version_remove(s->storage, x.dataset_id, x.version, &err) != SL_OK)
        sl_warn("retention: %s: %s (removed at the next start)", resource, err.msg);
    return 1;
}

static void *
sweeper_main(void *arg)
{
    gw_server *s = arg;
    struct timespec ts;
    int n;

    pthread_mutex_lock(&s->sweep_mu);
    while (!atomic_load(&s->stopping)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += s->cfg->retention_sweep_s;
        pthread_cond_timedwait(&s->sweep_cv, &s->sweep_mu, &ts);
        if (atomic_load(&s->stopping))
            break;
        pthread_mutex_unlock(&s->sweep_mu);
        {
            PGconn *c = NULL;
            sl_err err;
            int rc = 0, broken = 0;

            sl_err_clear(&err);
            if (db_acquire(s->pool, SL_DB_ACQUIRE_MS, &c, &err) != SL_OK) {
                sl_warn("retention: no database connection for the sweep: %s", err.msg);
            } else {
                for (n = 0; n < SL_RETENTION_SWEEP_MAX && !atomic_load(&s->stopping); n++)
                    if ((rc = sweep_one(s, c)) != 1)
                        break;
                broken = rc < 0;
                db_release(s->pool, c, broken);
            }
        }
        pthread_mutex_lock(&s->sweep_mu);
    }
    pthread_mutex_unlock(&s->sweep_mu);
    return NULL;
}

void
gw_sweeper_start(gw_server *s)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&s->sweep_mu, NULL);
    /* the wait between sweeps on the monotonic clock: a wall-clock jump moves no sweep */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->sweep_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) != 0) {
        sl_error("retention: the sweeper could not start: versions past max_days stay");
        return;
    }
    s->sweeper_started = 1;
}

void
gw_sweeper_stop(gw_server *s)
{
    if (!s->sweeper_started)
        return;
    pthread_mutex_lock(&s->sweep_mu);
    atomic_store(&s->stopping, 1);
    pthread_cond_broadcast(&s->sweep_cv);
    pthread_mutex_unlock(&s->sweep_mu);
    pthread_join(s->sweeper, NULL);
    s->sweeper_started = 0;
}

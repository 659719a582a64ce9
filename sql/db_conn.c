/*
 * sql/db_conn.c: connections, the runtime pool and migrations.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

static sl_code
fail(sl_err *err, PGconn *c, const char *what)
{
    sl_err_set(err, SL_EUNAVAIL, "database unavailable");
    sl_err_detail(err, "%s: %s", what, c ? PQerrorMessage(c) : "no connection");
    return SL_EUNAVAIL;
}

sl_code
db_exec(PGconn *c, const char *sql, sl_err *err)
{
    PGresult *r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    sl_code rc = SL_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        sl_err_set(err, SL_EUNAVAIL, "database unavailable");
        sl_err_detail(err, "%s: %s", sql, PQresultErrorMessage(r));
        rc = SL_EUNAVAIL;
    }
    PQclear(r);
    return rc;
}

/* Server notices (NOTICE, WARNING) go to the log at debug level, not to stderr. */
static void
notice(void *arg, const char *message)
{
    (void)arg;
    sl_debug("postgresql: %.*s", (int)strcspn(message, "\n"), message);
}

sl_code
db_connect(const char *conninfo, int as_gateway, PGconn **out, sl_err *err)
{
    PGconn *c;

    /* the caller's connection string, then bounds on a dead peer (TCP only; libpq
     * ignores them on a Unix socket): a vanished server must turn into an error */
    static const char *const keys[] = {"dbname",
                                       "keepalives",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "tcp_user_timeout",
                                       NULL};
    const char *vals[] = {conninfo, "1", "10", "5", "3", "10000", NULL};

    *out = NULL;
    c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        sl_code rc = fail(err, c, "connect");
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, notice, NULL);
    if (db_exec(c, "SET application_name = 'sluice'", err) != SL_OK ||
        db_exec(c, "SET TIME ZONE 'UTC'", err) != SL_OK ||
        (as_gateway && db_exec(c, "SET ROLE " DB_GW_ROLE, err) != SL_OK) ||
        (as_gateway && db_exec(c, "SET statement_timeout = " DB_STATEMENT_TIMEOUT, err) != SL_OK) ||
        (as_gateway && db_exec(c, "SET lock_timeout = " DB_LOCK_TIMEOUT, err) != SL_OK) ||
        (as_gateway &&
         db_exec(c, "SET idle_in_transaction_session_timeout = '30s'", err) != SL_OK)) {
        PQfinish(c);
        return SL_EUNAVAIL;
    }
    *out = c;
    return SL_OK;
}

void
db_rollback(PGconn *c)
{
    PGresult *r = PQexecParams(c, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);

    PQclear(r);
}

static sl_code
schema_version(PGconn *c, int *version, sl_err *err)
{
    PGresult *r = PQexecParams(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
                               NULL, NULL, NULL, NULL, 0);
    sl_code rc = SL_OK;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = fail(err, c, "schema version");
    } else {
        *version = atoi(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

static sl_code
apply(PGconn *c, const db_migration *m, sl_err *err)
{
    char ver[16];
    const char *params[2] = {ver, m->name};
    PGresult *r;
    sl_code rc = SL_OK;

    if (db_exec(c, "BEGIN", err) != SL_OK)
        return SL_EUNAVAIL;
    /* A migration file is several statements; only the simple protocol runs those. Its
     * text is compiled into the binary, never built from input. */
    r = PQexec(c, m->sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        sl_err_set(err, SL_EUNAVAIL, "could not apply migration %04d_%s", m->version, m->name);
        sl_err_detail(err, "%s", PQresultErrorMessage(r));
        rc = SL_EUNAVAIL;
    }
    PQclear(r);
    if (rc == SL_OK) {
        snprintf(ver, sizeof ver, "%d", m->version);
        r = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                         NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = fail(err, c, "record migration");
        PQclear(r);
    }
    if (rc == SL_OK)
        rc = db_exec(c, "COMMIT", err);
    else
        db_rollback(c);
    return rc;
}

sl_code
db_migrate(const char *conninfo, int *applied, sl_err *err)
{
    PGconn *c = NULL;
    int version = 0, i, known = 0;
    sl_code rc;

    if (applied != NULL)
        *applied = 0;
    if ((rc = db_connect(conninfo, 0, &c, err)) != SL_OK)
        return rc;
    for (i = 0; i < db_migration_count; i++)
        if (db_migrations[i].version > known)
            known = db_migrations[i].version;
    if ((rc = db_exec(c, "SELECT pg_advisory_lock(1936485735)", err)) != SL_OK)
        goto out;
    rc = db_exec(c,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version integer PRIMARY KEY, name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 err);
    if (rc != SL_OK || (rc = schema_version(c, &version, err)) != SL_OK)
        goto out;
    if (version > known) {
        rc = sl_err_set(err, SL_ECONFLICT,
                        "database schema version %d is newer than this sluice knows (%d)", version,
                        known);
        goto out;
    }
    for (i = 0; i < db_migration_count; i++) {
        if (db_migrations[i].version <= version)
            continue;
        if ((rc = apply(c, &db_migrations[i], err)) != SL_OK)
            goto out;
        sl_info("applied migration %04d_%s", db_migrations[i].version, db_migrations[i].name);
        if (applied != NULL)
            (*applied)++;
    }
out:
    PQfinish(c); /* ends the session and with it the advisory lock */
    return rc;
}

struct db_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *conninfo;
    int size;
    int nfree;     /* connections in free[] */
    int nout;      /* connections handed out */
    PGconn **free; /* idle connections, possibly NULL slots to be made */
};

db_pool *
db_pool_new(const char *conninfo, int size)
{
    db_pool *p = sl_xcalloc(1, sizeof *p);

    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->conninfo = sl_xstrdup(conninfo);
    p->size = size;
    p->free = sl_xcalloc((size_t)size, sizeof(PGconn *));
    return p;
}

void
db_pool_free(db_pool *p)
{
    int i;

    if (p == NULL)
        return;
    for (i = 0; i < p->nfree; i++)
        PQfinish(p->free[i]);
    free(p->free);
    free(p->conninfo);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}

sl_code
db_acquire(db_pool *p, int timeout_ms, PGconn **out, sl_err *err)
{
    struct timespec until;
    PGconn *c = NULL;
    int make = 0;

    *out = NULL;
    sl_deadline_ms(&until, timeout_ms);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->nfree > 0) {
            c = p->free[--p->nfree];
            p->nout++;
            break;
        }
        if (p->nout + p->nfree < p->size) {
            p->nout++;
            make = 1;
            break;
        }
        if (pthread_cond_timedwait(&p->cond, &p->lock, &until) != 0) {
            pthread_mutex_unlock(&p->lock);
            return sl_err_set(err, SL_EUNAVAIL, "database unavailable: all connections busy");
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (c != NULL && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
        make = 1;
    }
    if (make && db_connect(p->conninfo, 1, &c, err) != SL_OK) {
        pthread_mutex_lock(&p->lock);
        p->nout--;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return SL_EUNAVAIL;
    }
    *out = c;
    return SL_OK;
}

void
db_release(db_pool *p, PGconn *c, int broken)
{
    if (c != NULL &&
        (broken || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE)) {
        PQfinish(c);
        c = NULL;
    }
    pthread_mutex_lock(&p->lock);
    p->nout--;
    if (c != NULL)
        p->free[p->nfree++] = c;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int
db_pool_ping(db_pool *p)
{
    PGconn *c;
    PGresult *r;
    int ok;

    if (db_acquire(p, 500, &c, NULL) != SL_OK)
        return 0;
    r = PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    db_release(p, c, !ok);
    return ok;
}

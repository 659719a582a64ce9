/*
 * sql/db_jobs.c: compute jobs and privacy budgets (0008_jobs.sql). A job is claimed by
 * one gateway at a time (FOR UPDATE SKIP LOCKED); a running job's gateway beats a heart,
 * and a job whose gateway stopped beating ends failed. A budget is charged only while
 * what it adds stays within its total, in one statement.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

#define TS_SQL(col) \
    "coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

#define JOB_COLUMNS                                                                              \
    "j.id, j.principal_id, p.name, j.dataset_id, d.name, j.version, j.kind, j.purpose, "         \
    "j.status, j.spec, j.result, j.progress_iteration, j.progress_loss, coalesce(j.error, ''), " \
    "j.time_limit_s, coalesce(j.epsilon, 0), " TS_SQL("j.created_at") ", " TS_SQL(               \
        "j.started_at") ", " TS_SQL("j.finished_at")
#define JOB_FROM                                                                         \
    " FROM jobs j JOIN principals p ON p.id = j.principal_id JOIN datasets d ON d.id = " \
    "j.dataset_id"

void
db_job_clear(db_job *j)
{
    free(j->spec);
    free(j->result);
    memset(j, 0, sizeof *j);
}

static void
job_row(PGresult *r, int i, db_job *j)
{
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", PQgetvalue(r, i, 0));
    j->principal_id = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    snprintf(j->principal, sizeof j->principal, "%s", PQgetvalue(r, i, 2));
    j->dataset_id = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    snprintf(j->dataset, sizeof j->dataset, "%s", PQgetvalue(r, i, 4));
    j->version = atoi(PQgetvalue(r, i, 5));
    snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(r, i, 6));
    snprintf(j->purpose, sizeof j->purpose, "%s", PQgetvalue(r, i, 7));
    snprintf(j->status, sizeof j->status, "%s", PQgetvalue(r, i, 8));
    j->spec = sl_xstrdup(PQgetvalue(r, i, 9));
    j->result = PQgetisnull(r, i, 10) ? NULL : sl_xstrdup(PQgetvalue(r, i, 10));
    if (!PQgetisnull(r, i, 11)) {
        j->has_progress = 1;
        j->iteration = atoi(PQgetvalue(r, i, 11));
        j->loss = PQgetisnull(r, i, 12) ? 0 : strtod(PQgetvalue(r, i, 12), NULL);
    }
    snprintf(j->error, sizeof j->error, "%s", PQgetvalue(r, i, 13));
    j->time_limit_s = atoi(PQgetvalue(r, i, 14));
    j->epsilon = strtod(PQgetvalue(r, i, 15), NULL);
    snprintf(j->created_at, sizeof j->created_at, "%s", PQgetvalue(r, i, 16));
    snprintf(j->started_at, sizeof j->started_at, "%s", PQgetvalue(r, i, 17));
    snprintf(j->finished_at, sizeof j->finished_at, "%s", PQgetvalue(r, i, 18));
}

sl_code
db_job_insert(PGconn *c, const db_job *j, sl_err *err)
{
    char pid[24], did[24], ver[16], lim[16], eps[32];
    const char *params[10] = {
        j->id, pid, did, ver, j->kind, j->purpose, j->spec, lim, j->epsilon > 0 ? eps : NULL, NULL};
    PGresult *r;

    snprintf(pid, sizeof pid, "%lld", (long long)j->principal_id);
    snprintf(did, sizeof did, "%lld", (long long)j->dataset_id);
    snprintf(ver, sizeof ver, "%d", j->version);
    snprintf(lim, sizeof lim, "%d", j->time_limit_s);
    snprintf(eps, sizeof eps, "%.17g", j->epsilon);
    r = db_query(c,
                 "INSERT INTO jobs (id, principal_id, dataset_id, version, kind, purpose, spec, "
                 "time_limit_s, epsilon) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                 9, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    PQclear(r);
    return SL_OK;
}

sl_code
db_job_get(PGconn *c, const char *id, db_job *out, sl_err *err)
{
    const char *params[1] = {id};
    PGresult *r;

    memset(out, 0, sizeof *out);
    r = db_query(c, "SELECT " JOB_COLUMNS JOB_FROM " WHERE j.id = $1", 1, params, NULL, NULL,
                 PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sl_err_set(err, SL_ENOTFOUND, "no such job");
    }
    job_row(r, 0, out);
    PQclear(r);
    return SL_OK;
}

sl_code
db_job_list(PGconn *c, int64_t principal_id, const char *after, int limit, json_t **items,
            int *more, sl_err *err)
{
    char pid[24], lim[16];
    const char *params[3] = {pid, after ? after : "", lim};
    PGresult *r;
    int i, rows;

    *items = NULL;
    *more = 0;
    snprintf(pid, sizeof pid, "%lld", (long long)principal_id);
    snprintf(lim, sizeof lim, "%d", limit + 1);
    r = db_query(c,
                 "SELECT j.id, d.name, j.version, j.kind, j.status, " TS_SQL(
                     "j.created_at") " FROM jobs j JOIN datasets d ON d.id = j.dataset_id WHERE "
                                     "j.principal_id = $1 AND j.id > $2 ORDER BY j.id LIMIT $3",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    rows = PQntuples(r);
    if (rows > limit) {
        *more = 1;
        rows = limit;
    }
    *items = json_array();
    for (i = 0; i < rows; i++)
        json_array_append_new(*items, json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "job_id",
                                                PQgetvalue(r, i, 0), "dataset", PQgetvalue(r, i, 1),
                                                "version", atoi(PQgetvalue(r, i, 2)), "kind",
                                                PQgetvalue(r, i, 3), "status", PQgetvalue(r, i, 4),
                                                "created_at", PQgetvalue(r, i, 5)));
    PQclear(r);
    return SL_OK;
}

sl_code
db_job_claim(PGconn *c, const char *by, db_job *out, int *found, sl_err *err)
{
    const char *params[1] = {by};
    PGresult *r;

    *found = 0;
    memset(out, 0, sizeof *out);
    r = db_query(c,
                 "WITH next AS (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at "
                 "LIMIT 1 FOR UPDATE SKIP LOCKED) UPDATE jobs j SET status = 'running', "
                 "started_at = now(), heartbeat_at = now(), claimed_by = $1 FROM next WHERE j.id "
                 "= next.id RETURNING j.id",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) == 1) {
        char id[33];
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        if (db_job_get(c, id, out, err) != SL_OK)
            return err->code;
        *found = 1;
        return SL_OK;
    }
    PQclear(r);
    return SL_OK;
}

sl_code
db_job_heartbeat(PGconn *c, const char *id, int has_progress, int iteration, double loss,
                 char status[16], sl_err *err)
{
    char it[16], lo[32];
    const char *params[3] = {id, has_progress ? it : NULL, has_progress ? lo : NULL};
    PGresult *r;

    snprintf(it, sizeof it, "%d", iteration);
    snprintf(lo, sizeof lo, "%.17g", loss);
    r = db_query(c,
                 "UPDATE jobs SET heartbeat_at = now(), progress_iteration = "
                 "coalesce($2::integer, progress_iteration), progress_loss = "
                 "coalesce($3::double precision, progress_loss) WHERE id = $1 RETURNING status",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    snprintf(status, 16, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "cancelled");
    PQclear(r);
    return SL_OK;
}

sl_code
db_job_finish(PGconn *c, const char *id, const char *status, const char *error, const char *result,
              sl_err *err)
{
    const char *params[4] = {id, status, error, result};
    PGresult *r;
    int n;

    r = db_query(c,
                 "UPDATE jobs SET status = $2, error = $3, result = $4, finished_at = now() "
                 "WHERE id = $1 AND status = 'running'",
                 4, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n == 1 ? SL_OK : sl_err_set(err, SL_ECONFLICT, "the job is no longer running");
}

sl_code
db_job_cancel(PGconn *c, const char *id, sl_err *err)
{
    const char *params[1] = {id};
    PGresult *r;
    int n;

    r = db_query(c,
                 "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = $1 AND "
                 "status IN ('queued', 'running')",
                 1, params, NULL, NULL, PGRES_COMMAND_OK, err);
    if (r == NULL)
        return err->code;
    n = atoi(PQcmdTuples(r));
    PQclear(r);
    return n == 1 ? SL_OK : sl_err_set(err, SL_ECONFLICT, "the job has already ended");
}

sl_code
db_jobs_reap(PGconn *c, int stale_s, json_t **ids, sl_err *err)
{
    char st[16];
    const char *params[1] = {st};
    PGresult *r;
    int i;

    *ids = NULL;
    snprintf(st, sizeof st, "%d", stale_s);
    r = db_query(c,
                 "UPDATE jobs SET status = 'failed', finished_at = now(), error = 'the gateway "
                 "running the job stopped' WHERE status = 'running' AND heartbeat_at < now() - "
                 "$1::integer * interval '1 second' RETURNING id",
                 1, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    *ids = json_array();
    for (i = 0; i < PQntuples(r); i++)
        json_array_append_new(*ids, json_string(PQgetvalue(r, i, 0)));
    PQclear(r);
    return SL_OK;
}

sl_code
db_budget_charge(PGconn *c, int64_t dataset_id, int64_t principal_id, double epsilon, double total,
                 int *ok, double *left, sl_err *err)
{
    char did[24], pid[24], eps[32], tot[32];
    const char *params[4] = {did, pid, eps, tot};
    PGresult *r;

    *ok = 0;
    *left = 0;
    snprintf(did, sizeof did, "%lld", (long long)dataset_id);
    snprintf(pid, sizeof pid, "%lld", (long long)principal_id);
    snprintf(eps, sizeof eps, "%.17g", epsilon);
    snprintf(tot, sizeof tot, "%.17g", total);
    {
        const char *ins[3] = {did, pid, tot};
        r = db_query(c,
                     "INSERT INTO privacy_budgets (dataset_id, principal_id, total) VALUES ($1, "
                     "$2, $3) ON CONFLICT DO NOTHING",
                     3, ins, NULL, NULL, PGRES_COMMAND_OK, err);
    }
    if (r == NULL)
        return err->code;
    PQclear(r);
    r = db_query(c,
                 "UPDATE privacy_budgets SET spent = spent + $3 WHERE dataset_id = $1 AND "
                 "principal_id = $2 AND spent + $3 <= total RETURNING total - spent",
                 3, params, NULL, NULL, PGRES_TUPLES_OK, err);
    if (r == NULL)
        return err->code;
    if (PQntuples(r) == 1) {
        *ok = 1;
        *left = strtod(PQgetvalue(r, 0, 0), NULL);
    }
    PQclear(r);
    return SL_OK;
}

/*
 * compute/cmp_job.h: a job as the zone runs it (cmp_job.c): the gateway's spec and the
 * table of the rows it was sent give a result (JSON) or a release rule's refusal.
 */
#ifndef CMP_JOB_H
#define CMP_JOB_H

#include <jansson.h>

#include "cmp_data.h"
#include "cmp_model.h"

#define CMP_RULE_MAX 64

/*
 * Runs the job: SL_OK with *out the result ({"model", "metrics", "rows": {"train",
 * "validation"}} or {"stats", "rows"}); SL_EDENIED with rule naming the release rule
 * that refuses (min_rows, max_parameters, min_cell); another code with err for a job
 * that cannot run (its message names columns, never values).
 */
sl_code cmp_job_run(const json_t *spec, const cmp_table *t, cmp_progress_fn progress, void *pctx,
                    json_t **out, char rule[CMP_RULE_MAX], sl_err *err) SL_WUR;

#endif

/*
 * sql/db_int.h: helpers private to sql/.
 */
#ifndef DB_INT_H
#define DB_INT_H

#include "db.h"

/* Decodes the 64 lowercase hex digits of PostgreSQL's encode(..., 'hex'); anything else
 * gives 32 zero bytes, which never match a real hash. */
void db_unhex32(const char *hex, unsigned char out[32]);
/* Decodes exactly 2n lowercase hex digits into n bytes; 0 when they are not that. */
int db_unhex(const char *hex, size_t len, unsigned char *out, size_t n);

/* Runs a parameterised query; returns the result or NULL with err set (the result
 * cleared): SL_ECONFLICT for a unique violation, SL_EUNAVAIL otherwise. */
PGresult *db_query(PGconn *c, const char *sql, int n, const char *const *params, const int *lengths,
                   const int *formats, ExecStatusType want, sl_err *err);
/* Compact JSON text of v (malloc'd); panics only when out of memory. */
char *db_dumps(const json_t *v);

#endif

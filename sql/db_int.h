/*
 * sql/db_int.h: helpers private to sql/.
 */
#ifndef DB_INT_H
#define DB_INT_H

#include "db.h"

/* Decodes the 64 lowercase hex digits of PostgreSQL's encode(..., 'hex'); anything else
 * gives 32 zero bytes, which never match a real hash. */
void db_unhex32(const char *hex, unsigned char out[32]);

#endif

/*
 * common/sl_limits.h: every bound sluice enforces, with the reason for it.
 * Changing one here changes it everywhere; tests read them from here too.
 */
#ifndef SL_LIMITS_H
#define SL_LIMITS_H

/* JSON request bodies: principals and policies are small documents; 1 MiB is far above
 * any legitimate one and keeps a request's memory bounded. */
#define SL_MAX_JSON_BODY (1024 * 1024)
/* Nesting depth accepted in request JSON: our documents nest at most 5 deep. */
#define SL_MAX_JSON_DEPTH 16
/* Bytes of an oversized body read and dropped before the 413 is sent anyway: enough for
 * a client that sends first and reads after to see the answer, no more. */
#define SL_MAX_DISCARD (4 * 1024 * 1024)
/* A refused upload's body is read to its end (so the client reads the 422) up to this. */
#define SL_MAX_UPLOAD_DISCARD ((size_t)64 << 30)
/* All request headers together (libmicrohttpd's per-connection pool); above: 431. */
#define SL_MAX_HEADER_BYTES (32 * 1024)
/* Request line path length kept for routing and audit; longer paths are refused (414-ish 400). */
#define SL_MAX_PATH 1024
/* Text of an untrusted value kept in an audit event (resource, user agent, reason). */
#define SL_MAX_AUDIT_TEXT 256
/* X-Request-Id accepted from a client: 1..64 of [A-Za-z0-9._-]; otherwise generated. */
#define SL_MAX_REQUEST_ID 64
/* Roles per principal and attributes per principal, with their lengths. */
#define SL_MAX_ROLES      32
#define SL_MAX_ATTRIBUTES 32
#define SL_MAX_ATTR_VALUE 256
#define SL_MAX_NAME       63
/* A column tag is a short word (pii, label, id, ...). */
#define SL_MAX_TAG 32
/* Token TTL: at least a second (short-lived tokens for jobs and tests), at most the server's
 * --max-token-ttl-days (<= 10 years). */
#define SL_MIN_TOKEN_TTL_S            1
#define SL_DEFAULT_TOKEN_TTL_S        (90LL * 86400)
#define SL_DEFAULT_MAX_TOKEN_TTL_DAYS 365
#define SL_HARD_MAX_TOKEN_TTL_DAYS    3650
/* List pages. */
#define SL_LIST_DEFAULT 100
#define SL_LIST_MAX     1000
/* Concurrent connections (event-loop threads serve them; each holds its buffers and a
 * descriptor); memory and the descriptor limit bound it. */
#define SL_DEFAULT_MAX_CONNECTIONS 512
/* Idle seconds before a connection is closed (slow clients, slowloris). */
#define SL_DEFAULT_CONN_TIMEOUT_S 30
/* How long a response waits for its audit event to commit before it becomes 503. */
#define SL_DEFAULT_AUDIT_BOUND_MS 2000
/* Events the audit queue holds while the database is away; beyond it the overflow is
 * counted and itself written as an event when the trail comes back (never silent). */
#define SL_AUDIT_QUEUE_MAX 100000
/* Events per group commit: large enough to amortise the commit, small enough that one
 * transaction stays short. */
#define SL_AUDIT_BATCH_MAX 2048
/* Failed-authentication rate limit per client address: a burst, then a refill rate. */
#define SL_DEFAULT_AUTH_FAIL_BURST   20
#define SL_DEFAULT_AUTH_FAIL_PER_MIN 30
/* Client addresses tracked by the rate limiter (fixed table; oldest entry evicted). */
#define SL_RATE_TABLE 4096
/* Authentications cached per gateway (direct-mapped by token id), and for how long. The
 * audit writer checks each cached one when the request's event commits. */
#define SL_AUTH_CACHE       4096
#define SL_AUTH_CACHE_TTL_S 300
/* Seconds between two looks for versions past their retention's max_days: expiry is
 * within this of its time (tests set 1). */
#define SL_DEFAULT_RETENTION_SWEEP_S 60
/* Versions one sweep shreds at most (the next sweep goes on). */
#define SL_RETENTION_SWEEP_MAX 1000
/* Database connections each gateway keeps for request handlers. */
#define SL_DEFAULT_DB_POOL 8
/* How long a handler waits for a pooled database connection. */
#define SL_DB_ACQUIRE_MS 2000
/* Audit export rows fetched per round trip. */
#define SL_AUDIT_FETCH_ROWS 1000
/* Signing key file, master key file sizes. */
#define SL_MASTER_KEY_BYTES 32

/* CSV uploads (store/st_csv.c). Columns per dataset: wide enough for feature tables,
 * small enough that a row's bookkeeping stays trivial. A field and a record (a row, its
 * quoted newlines included) are held whole while parsed: 1 MiB and 16 MiB bound the
 * parser's memory per upload whatever the file. */
#define SL_MAX_CSV_COLUMNS 4096
#define SL_MAX_CSV_FIELD   (1024 * 1024)
#define SL_MAX_CSV_RECORD  (16 * 1024 * 1024)
/* A number's text (int64, float64): longer is not a number we accept (a float64 needs at
 * most 17 significant digits; 767 covers the longest exact decimal of a subnormal). */
#define SL_MAX_NUMBER_TEXT 800
/* Rows per row group: a group is encoded, compressed and sealed whole and read back one
 * at a time, so this with the column count bounds the memory of an upload and a read;
 * 64 Ki rows of a 20-column float table is 10 MiB. */
#define SL_ROWS_PER_GROUP (64 * 1024)
/* A column chunk's encoded size (a string column of long fields can be large). */
#define SL_MAX_CHUNK_BYTES (256 * 1024 * 1024)

#endif

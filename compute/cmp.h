/*
 * compute/cmp.h: the governed compute zone's own side. The frames a gateway and a zone
 * exchange over the zone's two pipes (small, versioned, and treated as hostile by the
 * zone), and the sandbox a zone enters before it reads any data. Links sl only: the zone
 * never links keys, the database or the network.
 */
#ifndef CMP_H
#define CMP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sl.h"

/*
 * A frame: "SLZ1", type u8, 3 zero bytes, payload length u32 (little-endian), payload.
 * Payloads are at most CMP_FRAME_MAX bytes: one column of one row group (65536 float64
 * values) with room to spare.
 */
#define CMP_FRAME_MAGIC "SLZ1"
#define CMP_FRAME_HEAD  12
#define CMP_FRAME_MAX   (4u << 20)

typedef enum {
    CMP_F_COLUMN = 1,   /* gateway -> zone: name_len u16, name, count u32, count float64 (NaN:
                           null); int64 and bool columns arrive as float64 */
    CMP_F_END = 2,      /* gateway -> zone: no more data (empty payload) */
    CMP_F_STATS = 3,    /* unused (reserved: the first zone's per-column statistics) */
    CMP_F_ERROR = 4,    /* zone -> gateway: a reason (UTF-8 text) */
    CMP_F_SPEC = 5,     /* gateway -> zone, first: the job as the gateway normalised it (JSON) */
    CMP_F_STRCOL = 6,   /* gateway -> zone: name_len u16, name, count u32, then count values,
                           each len u32 (0xffffffff: null) and len bytes */
    CMP_F_PROGRESS = 7, /* zone -> gateway: iteration u32, loss float64 */
    CMP_F_RESULT = 8,   /* zone -> gateway, last: the result (JSON) */
    CMP_F_REFUSED = 9,  /* zone -> gateway, last: the release rule that refused (text) */
} cmp_ftype;

typedef struct {
    uint8_t type;
    const unsigned char *payload; /* into the caller's buffer */
    uint32_t len;
} cmp_frame;

/*
 * One frame from p[0..n): SL_OK with *used its whole size; SL_EAGAIN-like SL_ETOOLARGE is
 * never used: SL_EINVALID for a bad magic, type, reserved byte or a length over
 * CMP_FRAME_MAX; SL_EBADREQ when n does not hold the whole frame yet.
 */
sl_code cmp_frame_parse(const unsigned char *p, size_t n, cmp_frame *f, size_t *used) SL_WUR;
/* Reads exactly one frame from fd into buf (reset first; bounded by CMP_FRAME_MAX).
 * SL_EIO on a read error or an end of input before the frame's end. */
sl_code cmp_frame_read(int fd, sl_buf *buf, cmp_frame *f, sl_err *err) SL_WUR;
/* A frame's head for a payload of n bytes (n <= CMP_FRAME_MAX). */
void cmp_frame_head(unsigned char head[CMP_FRAME_HEAD], uint8_t type, size_t n);
/* Writes one frame (all of it, retrying short writes); SL_EIO on failure. */
sl_code cmp_frame_write(int fd, uint8_t type, const void *p, size_t n, sl_err *err) SL_WUR;

/* What a zone may use: address space (bytes) and CPU time (seconds). */
typedef struct {
    uint64_t as_bytes;
    uint64_t cpu_s;
} cmp_limits;

/*
 * Enters the sandbox, for good: descriptors other than 0, 1 and 2 closed; no new
 * privileges; rlimits (address space, CPU time, no file growth, no new descriptors, no
 * processes, no core); then a seccomp allow-list ending in kill of the process: read,
 * write, close, anonymous memory calls without executable mappings, futex,
 * clock_gettime, signals to itself, rt_sigreturn, exit; for every thread (TSYNC), and a
 * call of another ABI kills too. Everything else (open, socket, connect, execve, ptrace,
 * clone, ...) kills the zone with SIGSYS. SL_EINTERNAL when a step cannot be taken (the
 * zone must not go on). Values in frames are in the host's byte order, little-endian on
 * the platforms sluice builds for.
 */
sl_code cmp_sandbox_enter(const cmp_limits *l, sl_err *err) SL_WUR;

/* The numbers in a JSON value (a released model's size, which the release rules bound by
 * the training rows / 10): what the zone checks before it answers and the gateway after. */
size_t cmp_json_numbers(const json_t *v);

/* Bounds on what a zone holds (cmp_data.h). */
#define CMP_MAX_COLUMNS 256
#define CMP_NAME_MAX    255

#endif

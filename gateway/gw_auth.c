/*
 * gateway/gw_auth.c: the per-address limit on failed authentication. A token bucket
 * per client address in a fixed, 4-way set-associative table: each failure takes a
 * token; with none left, the address gets 429 without its token being looked at, until
 * the bucket refills. Memory is fixed whatever the number of addresses.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

#define WAYS 4

typedef struct {
    char addr[64];
    double tokens;
    int64_t stamp_ns;
} slot;

struct gw_ratelimit {
    pthread_mutex_t lock;
    double burst, per_ns;
    slot table[SL_RATE_TABLE];
};

gw_ratelimit *
gw_ratelimit_new(int burst, double per_min)
{
    gw_ratelimit *rl = sl_xcalloc(1, sizeof *rl);

    pthread_mutex_init(&rl->lock, NULL);
    rl->burst = burst;
    rl->per_ns = per_min / 60e9;
    return rl;
}

void
gw_ratelimit_free(gw_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static uint32_t
fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void
refill(gw_ratelimit *rl, slot *s, int64_t now)
{
    s->tokens += (double)(now - s->stamp_ns) * rl->per_ns;
    if (s->tokens > rl->burst)
        s->tokens = rl->burst;
    s->stamp_ns = now;
}

/* The slot for addr; with create, takes over the least useful slot of its set. */
static slot *
find(gw_ratelimit *rl, const char *addr, int create, int64_t now)
{
    size_t set = (fnv1a(addr) % (SL_RATE_TABLE / WAYS)) * WAYS, i, victim = set;
    double best = -1;

    for (i = set; i < set + WAYS; i++)
        if (strcmp(rl->table[i].addr, addr) == 0)
            return &rl->table[i];
    if (!create)
        return NULL;
    for (i = set; i < set + WAYS; i++) {
        slot *s = &rl->table[i];
        double t;
        if (s->addr[0] == '\0') {
            victim = i;
            break;
        }
        refill(rl, s, now);
        t = s->tokens; /* the fullest bucket is the least penalised: evict it */
        if (t > best) {
            best = t;
            victim = i;
        }
    }
    memset(&rl->table[victim], 0, sizeof(slot));
    snprintf(rl->table[victim].addr, sizeof rl->table[victim].addr, "%s", addr);
    rl->table[victim].tokens = rl->burst;
    rl->table[victim].stamp_ns = now;
    return &rl->table[victim];
}

/* The key of an address: IPv4 as it is, IPv6 cut to its /64. */
static void
key_of(const char *addr, char key[64])
{
    struct in6_addr a6;

    if (strchr(addr, ':') != NULL && inet_pton(AF_INET6, addr, &a6) == 1) {
        memset(a6.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &a6, key, 64) != NULL) {
            strncat(key, "/64", 63 - strlen(key));
            return;
        }
    }
    snprintf(key, 64, "%s", addr);
}

int
gw_ratelimit_allow(gw_ratelimit *rl, const char *addr)
{
    int64_t now = sl_mono_ns();
    char key[64];
    slot *s;
    int ok = 1;

    key_of(addr, key);
    pthread_mutex_lock(&rl->lock);
    s = find(rl, key, 0, now);
    if (s != NULL) {
        refill(rl, s, now);
        ok = s->tokens >= 1.0;
    }
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

void
gw_ratelimit_fail(gw_ratelimit *rl, const char *addr)
{
    int64_t now = sl_mono_ns();
    char key[64];
    slot *s;

    key_of(addr, key);
    pthread_mutex_lock(&rl->lock);
    s = find(rl, key, 1, now);
    refill(rl, s, now);
    s->tokens -= 1.0;
    if (s->tokens < 0)
        s->tokens = 0;
    pthread_mutex_unlock(&rl->lock);
}

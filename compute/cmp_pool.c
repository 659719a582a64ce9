/*
 * compute/cmp_pool.c: the zone's own threads, for the one product OpenBLAS does not split
 * well: a Gram matrix of few columns and many rows (OpenBLAS's dsyrk keeps one thread
 * busy at p = 64). Each thread takes a share of the rows with single-threaded BLAS; the
 * shares are summed. The threads are made before the sandbox (the filter allows no
 * clone) and wait on a condition variable (futex) between products.
 */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

#include "cmp_model.h"

#define POOL_MAX 64

static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int threads; /* the caller's included; 1: no pool */
    unsigned long generation;
    int pending; /* parts not finished in this generation */
    void (*fn)(void *ctx, int part, int parts);
    void *ctx;
} pool = {PTHREAD_MUTEX_INITIALIZER,
          PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER,
          1,
          0,
          0,
          NULL,
          NULL};

static void *
worker(void *arg)
{
    int part = (int)(intptr_t)arg;
    unsigned long seen = 0;

    pthread_mutex_lock(&pool.mu);
    pool.pending--; /* started */
    pthread_cond_signal(&pool.done);
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.generation;
        pthread_mutex_unlock(&pool.mu);
        pool.fn(pool.ctx, part, pool.threads);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.done);
    }
    return NULL;
}

sl_code
cmp_pool_start(int threads, sl_err *err)
{
    pthread_attr_t at;
    int i;

    if (pool.threads > 1 || threads <= 1)
        return SL_OK;
    if (threads > POOL_MAX)
        threads = POOL_MAX;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&pool.mu);
    for (i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, &at, worker, (void *)(intptr_t)i) != 0)
            break;
        pool.pending++;
    }
    /* every thread has started (and done what a thread does once, at its start) */
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pool.threads = i;
    pthread_mutex_unlock(&pool.mu);
    pthread_attr_destroy(&at);
    if (i < threads)
        return sl_err_set(err, SL_EINTERNAL, "only %d of %d compute threads could start", i,
                          threads);
    return SL_OK;
}

int
cmp_pool_threads(void)
{
    return pool.threads;
}

void
cmp_pool_run(void (*fn)(void *ctx, int part, int parts), void *ctx)
{
    int blas;

    if (pool.threads <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* OpenBLAS's own threads rest meanwhile (lowering the count makes none; raising it
     * back to what it was makes none either) */
    blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.pending = pool.threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    fn(ctx, 0, pool.threads);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    openblas_set_num_threads(blas);
}

/* pool.c — fork-join thread pool (see pool.h).
 *
 * Workers sleep on a condition variable and wake on a generation counter; each job is
 * described by (fn, ctx, n, align) in the pool struct and completion is counted under the
 * same mutex. Simple rather than fast to wake: a job is a whole matmul or attention call,
 * which dwarfs the wake-up cost for the model sizes the CPU path targets.
 */
#include "cpu/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct tpool {
    int n;                 /* threads including the caller */
    pthread_t *th;         /* n - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;          /* bumped per job */
    int pending;           /* workers still running the current job */
    int quit;
    tpool_fn fn;
    void *ctx;
    int64_t total, align;
};

typedef struct { tpool *p; int tid; } worker_arg;

static void range_of(const tpool *p, int tid, int64_t *s, int64_t *e) {
    int64_t units = (p->total + p->align - 1) / p->align;
    int64_t per = units / p->n, rem = units % p->n;
    int64_t us = tid * per + (tid < rem ? tid : rem);
    int64_t ue = us + per + (tid < rem ? 1 : 0);
    *s = us * p->align;
    *e = ue * p->align;
    if (*s > p->total) *s = p->total;
    if (*e > p->total) *e = p->total;
}

static void *worker(void *arg) {
    worker_arg *wa = arg;
    tpool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        int64_t s, e;
        range_of(p, tid, &s, &e);
        if (s < e) p->fn(p->ctx, s, e, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tpool *tpool_new(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256) n_threads = 256;
    tpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)n_threads, sizeof *p->th);
    if (!p->th) { tpool_free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { p->n = i; tpool_free(p); return NULL; }
        wa->p = p;
        wa->tid = i;
        if (pthread_create(&p->th[i - 1], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i;
            tpool_free(p);
            return NULL;
        }
    }
    return p;
}

void tpool_free(tpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int tpool_size(const tpool *p) { return p->n; }

void tpool_run(tpool *p, int64_t n, int64_t align, tpool_fn fn, void *ctx) {
    if (n <= 0) return;
    if (align < 1) align = 1;
    if (p->n == 1 || n <= align) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->total = n;
    p->align = align;
    p->pending = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    int64_t s, e;
    range_of(p, 0, &s, &e);
    if (s < e) fn(ctx, s, e, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

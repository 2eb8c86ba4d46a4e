/* pool.c — fork-join thread pool (see pool.h).
 *
 * A decode step of a small model is ~100 fork-joins of 20-100 µs each, so waking the workers
 * must cost far less than a futex round trip (measured: with a condition variable per job,
 * two threads decoded the 125M Q8_0 shape at 0.6× the speed of one). Jobs are therefore
 * published with a generation counter that idle workers spin on for a while (TPOOL_SPIN
 * rounds of `pause`, yielding now and then) before they go to sleep on a condition variable; the
 * caller counts completions with an atomic and spins (yielding now and then) until they are
 * all in. A pool kept busy never touches the mutex; one left idle costs nothing after the
 * spin runs out.
 *
 * Sleeping is a Dekker handshake between `gen` and `sleepers` (both sequentially consistent):
 * a worker increments `sleepers` under the mutex and re-reads `gen` before waiting; the caller
 * bumps `gen` and then reads `sleepers`, broadcasting under the mutex only when someone may be
 * asleep. Either the worker sees the new generation or the caller sees the sleeper.
 */
#include "cpu/pool.h"

#include "util.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum {
    TPOOL_SPIN = 1 << 12,  /* rounds a worker polls for work before sleeping (~55 µs here:
                            * `pause` measured 13 ns on the dev VM; 10-40 ns on current x86) */
    TPOOL_YIELD = 1 << 8,  /* rounds between sched_yield calls while spinning: on a machine
                            * with more runnable threads than cores the thread that has the
                            * work gets the core */
    TPOOL_CHUNKS = 4,      /* chunks per thread a job is cut into (taken first come, first served) */
};

struct tpool {
    int n;                 /* threads including the caller */
    pthread_t *th;         /* n - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t go;
    _Atomic uint64_t gen;  /* bumped per job (and at quit) */
    _Atomic int sleepers;  /* workers inside the condition-variable wait */
    _Atomic int pending;   /* workers still running the current job */
    _Atomic int quit;
    /* the current job: written before gen is bumped, read after it is seen */
    tpool_fn fn;
    void *ctx;
    int64_t total, align;
    int64_t units, chunk;  /* align-sized units in the job; units per grab */
    _Atomic int64_t next;  /* the next unit not yet taken */
};

typedef struct { tpool *p; int tid; } worker_arg;

/* Runs chunks of the current job until none is left. Chunk boundaries depend only on the
 * job, not on which thread takes a chunk, so results are the same whatever the timing; a
 * thread that is preempted (a busy machine) simply takes fewer chunks. */
static void run_chunks(tpool *p, int tid) {
    for (;;) {
        int64_t u = atomic_fetch_add_explicit(&p->next, p->chunk, memory_order_relaxed);
        if (u >= p->units) return;
        int64_t s = u * p->align, e = TOME_MIN(p->total, (u + p->chunk) * p->align);
        p->fn(p->ctx, s, e, tid);
    }
}

/* Waits until gen differs from `seen`; returns the new generation. */
static uint64_t wait_job(tpool *p, uint64_t seen) {
    for (int i = 1; i <= TPOOL_SPIN; i++) {
        uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        CPU_RELAX();
        if (i % TPOOL_YIELD == 0) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->go, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker(void *arg) {
    worker_arg *wa = arg;
    tpool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        run_chunks(p, tid);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

/* Publishes a new generation and wakes sleepers if there may be any. */
static void publish(tpool *p) {
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
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
    atomic_store(&p->quit, 1);
    publish(p);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
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
    p->fn = fn;
    p->ctx = ctx;
    p->total = n;
    p->align = align;
    p->units = (n + align - 1) / align;
    p->chunk = TOME_MAX((int64_t)1, p->units / ((int64_t)p->n * TPOOL_CHUNKS));
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    publish(p);
    run_chunks(p, 0);
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        CPU_RELAX();
        if (i % TPOOL_YIELD == 0) sched_yield();
    }
}

/* pool.h — a tiny fork-join thread pool for the CPU backend.
 *
 * tpool_run cuts [0, n) into a few contiguous chunks per thread (boundaries fixed by n, align
 * and the thread count) that the caller and the workers take first come, first served, and
 * returns when all are done: a thread slowed by the rest of the machine takes fewer chunks.
 * No nesting: ops split the dimension that is large and even (matmul rows, attention heads).
 * A pool with one thread runs everything on the caller.
 */
#ifndef TOME_CPU_POOL_H
#define TOME_CPU_POOL_H

#include <stdint.h>

typedef struct tpool tpool;

/* fn(ctx, start, end, thread index in [0, n_threads)). */
typedef void (*tpool_fn)(void *ctx, int64_t start, int64_t end, int tid);

/* n_threads <= 0 means all online cores. Returns NULL when out of memory or threads. */
tpool *tpool_new(int n_threads);
void tpool_free(tpool *p);
int tpool_size(const tpool *p);
/* Runs fn over [0, n) split into contiguous chunks, each a multiple of `align` items (the
 * last takes the remainder); fn may be called several times per thread (tid tells which
 * thread). Blocks until done. Not reentrant. */
void tpool_run(tpool *p, int64_t n, int64_t align, tpool_fn fn, void *ctx);

#endif

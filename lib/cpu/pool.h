/* pool.h — a tiny fork-join thread pool for the CPU backend.
 *
 * pool_run splits [0, n) into one contiguous range per thread and calls fn on each from the
 * pool's workers (the calling thread takes range 0), returning when all are done. No work
 * stealing, no nesting: ops split the dimension that is large and even (matmul rows,
 * attention heads). A pool with one thread runs everything on the caller.
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
/* Runs fn over [0, n) split into contiguous ranges, each a multiple of `align` items (the
 * last takes the remainder). Blocks until done. Not reentrant. */
void tpool_run(tpool *p, int64_t n, int64_t align, tpool_fn fn, void *ctx);

#endif

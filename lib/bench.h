/* bench.h — what `tome bench` measures: the machine's read bandwidth, the weight bytes one
 * decode token streams, and timed prefill / decode runs of an engine.
 *
 * The numbers are meant to be compared with llama.cpp's llama-bench on the same machine, so
 * the runs follow its method: prefill ("pp") evaluates n_prompt random tokens into an empty
 * cache, decode ("tg") generates n_gen tokens one forward at a time, also from an empty cache
 * (llama-bench runs the two as separate tests). Each is repeated and both the best and the
 * mean repetition are kept. Limits: one sequence, wall-clock timing (a loaded machine reads
 * slower; the caller reports the load average alongside).
 */
#ifndef TOME_BENCH_H
#define TOME_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "model.h"
#include "util.h"

/* Read bandwidth in bytes/s: n_threads threads each sum a private slice of a buffer of
 * `bytes` bytes (rounded down to a multiple of 4 KiB * n_threads), timed from a common start
 * to the last finisher; the best of reps passes is returned in *bps. The buffer is filled
 * before timing so no page faults are counted. TOME_ERESOURCE when it cannot be allocated,
 * TOME_EFLAGS for bytes < 1 MiB, n_threads < 1 or reps < 1. */
int bench_read_bandwidth(size_t bytes, int n_threads, int reps, double *bps, terr *e);

/* Bytes of weights one decode token reads in forward(): every 2-D matmul weight of every
 * layer (q, k, v, o, gate, up, down; fused tensors counted once), the output matrix, the
 * norms and biases, and the single token_embd row it looks up. */
uint64_t bench_weight_bytes(const tome_model *m);

typedef struct bench_result {
    int n_prompt, n_gen, depth, reps;
    double pp_best_s, pp_mean_s;   /* seconds for the n_prompt-token prefill */
    double tg_best_s, tg_mean_s;   /* seconds for the n_gen decode forwards */
    /* tok/s averaged over the repetitions (the mean of each repetition's rate, which is the
     * statistic llama-bench reports as avg_ts; n / mean seconds is lower when runs vary) */
    double pp_rate_mean, tg_rate_mean;
} bench_result;

/* Runs reps repetitions of the prefill test (if n_prompt > 0) and the decode test (if
 * n_gen > 0) on en, after one untimed warm-up forward of each kind. Each repetition starts
 * from an empty cache and first evaluates `depth` context tokens untimed (llama-bench's -d),
 * so the timed prompt or decode steps attend to depth earlier positions. Token ids are drawn
 * from a seeded RNG. The engine's context must hold depth + TOME_MAX(n_prompt, n_gen)
 * positions. TOME_EINPUT when logits come out non-finite (naming which test), or
 * engine_eval's error. */
int bench_run(engine *en, int n_prompt, int n_gen, int depth, int reps, bench_result *r, terr *e);

#endif

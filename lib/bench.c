/* bench.c — read bandwidth, weight bytes per token, and timed prefill/decode runs (bench.h).
 *
 * The bandwidth probe is deliberately plain: 16-byte integer vector sums with independent
 * accumulators, one thread per requested core, timed from the first thread's start to the
 * last one's end: the rate at which those threads can stream memory, the ceiling for a
 * matrix-vector product over weights read once per token. Huge pages are requested (advice
 * only) so TLB misses do not understate it. Limits: wall-clock, so a loaded machine reads low;
 * a buffer larger than the last-level cache measures DRAM, while a small model's weights may
 * be served from cache (then the fraction tome bench reports can exceed 1).
 */
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- read bandwidth ---------------------------------------------------------------------- */

typedef uint64_t v2u64 __attribute__((vector_size(16)));

typedef struct bw_job {
    const uint64_t *p;
    size_t n;                  /* uint64 words in this thread's slice */
    const atomic_int *go;      /* spun on, so every thread starts reading at once */
    double t_start, t_end;
    uint64_t sum;              /* stored where main can see it, so the reads are not optimised away */
} bw_job;

static void *bw_thread(void *arg) {
    bw_job *j = arg;
    while (!atomic_load_explicit(j->go, memory_order_acquire)) {
    }
    j->t_start = tnow();
    /* 16-byte vectors (SSE2, the x86-64 baseline): four independent accumulators keep two
     * loads per cycle in flight without needing a run-time CPU check */
    const v2u64 *p = (const v2u64 *)j->p;
    const size_t nv = j->n / 2;
    v2u64 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 4 <= nv; i += 4) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
    }
    for (; i < nv; i++) a0 += p[i];
    a0 += a1 + a2 + a3;
    j->sum = a0[0] + a0[1];
    j->t_end = tnow();
    return NULL;
}

int bench_read_bandwidth(size_t bytes, int n_threads, int reps, double *bps, terr *e) {
    if (bytes < ((size_t)1 << 20) || n_threads < 1 || reps < 1)
        return terr_set(e, TOME_EFLAGS, "bandwidth: need >= 1 MiB, >= 1 thread, >= 1 pass (got %zu bytes, %d, %d)",
                        bytes, n_threads, reps);
    const size_t slice = bytes / (size_t)n_threads / 4096 * 4096;
    if (slice == 0) return terr_set(e, TOME_EFLAGS, "bandwidth: %zu bytes is too small for %d threads", bytes, n_threads);
    const size_t total = slice * (size_t)n_threads;
    void *buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return terr_set(e, TOME_ERESOURCE, "bandwidth: cannot allocate a %.0f MiB buffer", (double)total / 1048576.0);
#ifdef MADV_HUGEPAGE
    madvise(buf, total, MADV_HUGEPAGE);
#endif
    /* non-zero and non-uniform, so no page is shared with the zero page */
    uint64_t *w = buf;
    for (size_t i = 0; i < total / 8; i++) w[i] = i * 0x9E3779B97F4A7C15ull;

    bw_job *jobs = tcalloc((size_t)n_threads, sizeof *jobs);
    pthread_t *th = tcalloc((size_t)n_threads, sizeof *th);
    int rc = 0;
    double best = 0;
    if (!jobs || !th) { rc = terr_set(e, TOME_ERESOURCE, "bandwidth: out of memory"); goto out; }
    for (int r = 0; r < reps && !rc; r++) {
        atomic_int go;
        atomic_init(&go, 0);
        int started = 0;
        for (int t = 0; t < n_threads; t++) {
            jobs[t] = (bw_job){(const uint64_t *)((const char *)buf + (size_t)t * slice), slice / 8, &go, 0, 0, 0};
            if (pthread_create(&th[t], NULL, bw_thread, &jobs[t])) break;
            started++;
        }
        atomic_store_explicit(&go, 1, memory_order_release);
        double t0 = 1e300, t1 = 0;
        for (int t = 0; t < started; t++) {
            pthread_join(th[t], NULL);
            t0 = TOME_MIN(t0, jobs[t].t_start);
            t1 = TOME_MAX(t1, jobs[t].t_end);
        }
        if (started < n_threads) {
            rc = terr_set(e, TOME_ERESOURCE, "bandwidth: cannot start %d threads", n_threads);
            break;
        }
        if (t1 > t0 && (double)total / (t1 - t0) > best) best = (double)total / (t1 - t0);
    }
    if (!rc) *bps = best;
out:
    free(jobs);
    free(th);
    munmap(buf, total);
    return rc;
}

/* ---- weight bytes -------------------------------------------------------------------------- */

static uint64_t wbytes(const tome_weight *w) {
    return w->data ? (uint64_t)w->rows * w->row_bytes : 0;
}

uint64_t bench_weight_bytes(const tome_model *m) {
    uint64_t b = wbytes(&m->output) + wbytes(&m->output_norm) + m->tok_embd.row_bytes;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const tome_layer *L = &m->layers[l];
        const tome_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv, &L->q_norm,
                                   &L->k_norm, &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < TOME_ARRAY_LEN(ws); i++) b += wbytes(ws[i]);
    }
    return b;
}

/* ---- timed runs ------------------------------------------------------------------------------ */

static int logits_finite(const engine *en) {
    for (int i = 0; i < en->m->hp.n_vocab; i++)
        if (!isfinite(en->logits[i])) return 0;
    return 1;
}

/* An empty cache holding n_depth context tokens (untimed). */
static int reset_to_depth(engine *en, const int32_t *ctx_ids, int n_depth, terr *e) {
    engine_reset(en);
    return n_depth > 0 ? engine_eval(en, ctx_ids, n_depth, NULL, e) : 0;
}

int bench_run(engine *en, int n_prompt, int n_gen, int depth, int reps, bench_result *r, terr *e) {
    memset(r, 0, sizeof *r);
    r->n_prompt = n_prompt;
    r->n_gen = n_gen;
    r->depth = depth;
    r->reps = reps;
    if (reps < 1 || n_prompt < 0 || n_gen < 0 || depth < 0)
        return terr_set(e, TOME_EFLAGS, "bench: bad sizes (prompt %d, gen %d, depth %d, reps %d)", n_prompt, n_gen,
                        depth, reps);
    const int n_vocab = en->m->hp.n_vocab;
    const int n_ids = TOME_MAX(n_prompt, 1) + depth;
    int32_t *ids = tmalloc_array((size_t)n_ids, sizeof *ids);
    if (!ids) return terr_set(e, TOME_ERESOURCE, "bench: out of memory");
    trng rng;
    trng_seed(&rng, 1234);
    int rc = 0;
    int32_t *ctx = ids + TOME_MAX(n_prompt, 1); /* the depth tokens */
    for (int i = 0; i < n_ids; i++) ids[i] = (int32_t)(trng_u64(&rng) % (uint64_t)n_vocab);
    if (n_prompt > 0) {
        /* warm-up: faults the weights in and lets the thread pool start */
        engine_reset(en);
        if ((rc = engine_eval(en, ids, TOME_MIN(n_prompt, en->n_batch), NULL, e))) goto out;
        double sum = 0, best = 1e30;
        for (int k = 0; k < reps; k++) {
            if ((rc = reset_to_depth(en, ctx, depth, e))) goto out;
            const double t0 = tnow();
            if ((rc = engine_eval(en, ids, n_prompt, NULL, e))) goto out;
            const double dt = tnow() - t0;
            sum += dt;
            r->pp_rate_mean += n_prompt / dt / reps;
            if (dt < best) best = dt;
            if (!logits_finite(en)) {
                rc = terr_set(e, TOME_EINPUT, "%s: non-finite logits after the %d-token prefill",
                              en->m->tok_embd.name, n_prompt);
                goto out;
            }
        }
        r->pp_best_s = best;
        r->pp_mean_s = sum / reps;
    }
    if (n_gen > 0) {
        int32_t id = (int32_t)(trng_u64(&rng) % (uint64_t)n_vocab);
        engine_reset(en);
        if ((rc = engine_eval(en, &id, 1, NULL, e))) goto out;
        double sum = 0, best = 1e30;
        for (int k = 0; k < reps; k++) {
            if ((rc = reset_to_depth(en, ctx, depth, e))) goto out;
            const double t0 = tnow();
            for (int i = 0; i < n_gen; i++) {
                /* the next id depends on nothing the forward computes: decode cost does not
                 * depend on the token, and llama-bench does the same */
                id = (int32_t)(trng_u64(&rng) % (uint64_t)n_vocab);
                if ((rc = engine_eval(en, &id, 1, NULL, e))) goto out;
            }
            const double dt = tnow() - t0;
            sum += dt;
            r->tg_rate_mean += n_gen / dt / reps;
            if (dt < best) best = dt;
            if (!logits_finite(en)) {
                rc = terr_set(e, TOME_EINPUT, "%s: non-finite logits after %d decode steps", en->m->tok_embd.name,
                              n_gen);
                goto out;
            }
        }
        r->tg_best_s = best;
        r->tg_mean_s = sum / reps;
    }
out:
    free(ids);
    return rc;
}

/* backend.h — the seam between forward() (lib/model.c) and the hardware that runs it.
 *
 * forward() is written once over the ops below; each backend (lib/cpu/, later lib/cuda/)
 * fills a backend_ops table. The ops are deliberately coarse (a whole matmul over a batch,
 * RoPE + KV write in one call, attention over the whole cached context) so that a GPU
 * backend can fuse inside them without forward() changing.
 *
 * Activations are float buffers obtained from the backend (`alloc`): host memory on the CPU,
 * device memory on a GPU. forward() never dereferences them; it only passes them to ops and
 * copies the logits back with `logits`. Their contents change only through ops: the CPU backend
 * relies on it to quantise a matmul input once for the Q/K/V (gate/up) matmuls that share it.
 * A row offset into a buffer (x + i * width) is a valid buffer argument too (on a GPU, the same
 * arithmetic on the device address). Weights are tome_weight views into the mmap'd GGUF
 * (used in place, never copied); a row range of a fused tensor (phi3's attn_qkv, ffn_up) is
 * itself a tome_weight.
 *
 * KV cache seam: the backend owns the cache for ONE sequence. `rope_kv_store` writes
 * positions [pos0, pos0+n) of a layer and `attention` reads what each query may see (causal,
 * sliding window, StreamingLLM sinks). On the CPU the cache is the paged, quantised one of
 * lib/kvcache.h (f16/q8/q4 pages read in place), or, with kv_type KV_TYPE_F32, the plain
 * contiguous float arrays (the reference the paged path is measured against). A call with
 * pos0 == 0 starts a new sequence (the old one is forgotten). With streaming (sinks > 0 and
 * window > 0) positions may grow past n_ctx: pages that fall wholly between the sinks and the
 * window are released before each store; keys are stored after RoPE at their true position,
 * so nothing is ever re-rotated or shifted.
 */
#ifndef TOME_BACKEND_H
#define TOME_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "rope.h"
#include "util.h"

/* A weight matrix (or vector: rows == 1) inside the GGUF mapping. */
typedef struct tome_weight {
    const char *name;  /* tensor name, for messages (owned by the gguf) */
    uint32_t type;     /* GGML_TYPE_* */
    int64_t cols;      /* elements per row = input width of a matmul (ne[0]) */
    int64_t rows;      /* output width of a matmul (ne[1]); 1 for vectors */
    uint64_t row_bytes;/* bytes per row */
    const void *data;  /* rows * row_bytes bytes, in the mapping */
} tome_weight;

typedef struct tome_backend tome_backend;

/* What a backend needs to know once, at creation. */
typedef struct backend_config {
    const tome_hparams *hp;        /* shapes, eps, RoPE parameters, sliding window */
    const rope_table *rope;        /* built by the model for n_ctx (copied by the backend) */
    int n_ctx;                     /* KV capacity in positions */
    int n_batch;                   /* largest n passed to any op */
    int n_threads;                 /* CPU worker threads (0 = all cores) */
    int exact;                     /* 1: float activations in matmul (no activation quantization) */
    const char *cpu_kernels;       /* CPU dot-product kernels: NULL = best, "scalar", "avx2", "avx512" */
    int kv_type;                   /* KV_TYPE_F32 (contiguous float) or a kv_dtype (KV_F16/Q8/Q4) */
    int page_tokens;               /* paged cache page size; 0 = KV_DEFAULT_PAGE_TOKENS */
    int window;                    /* attention window W (0 = plain causal) */
    int sinks;                     /* StreamingLLM sink tokens (with window > 0: streaming) */
    int no_graphs;                 /* GPU: 1 = plain launches for decode steps (no CUDA graph) */
} backend_config;

#define KV_TYPE_F32 (-1) /* backend_config.kv_type: contiguous float cache (reference path) */

typedef struct backend_ops {
    const char *name;
    /* An activation buffer of n floats, zeroed; NULL when out of memory. */
    float *(*alloc)(tome_backend *be, size_t n);
    void (*release)(tome_backend *be, float *buf);
    /* x[i, :] = row ids[i] of emb, dequantized. x: [n, emb->cols]. */
    void (*embed)(tome_backend *be, float *x, const tome_weight *emb, const int32_t *ids, int n);
    /* y[r, :] = x[r, :] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of w->cols values.
     * y may equal x. Used for layer norms and for qwen3's per-head Q/K norms. */
    void (*rmsnorm)(tome_backend *be, float *y, const float *x, const tome_weight *w, int n_rows, float eps);
    /* y[i, :] = w · x[i, :] (+ bias). x: [n, w->cols], y: [n, w->rows]; bias NULL or F32 [w->rows]. */
    void (*matmul)(tome_backend *be, float *y, const tome_weight *w, const tome_weight *bias,
                   const float *x, int n);
    /* Rotates q [n, n_head*head_dim] in place and k [n, n_head_kv*head_dim] in place for
     * positions pos0..pos0+n-1, then stores k and v [n, n_head_kv*head_dim_v] of `layer` at
     * those positions. */
    void (*rope_kv_store)(tome_backend *be, int layer, float *q, float *k, const float *v, int n, int pos0);
    /* out[i, h, :] = softmax(q[i,h]·K[j]^T * scale) V over the cached positions j visible to
     * the query at position pos0+i (causal; window/sinks as configured). out: [n, n_head*head_dim_v]. */
    void (*attention)(tome_backend *be, int layer, float *out, const float *q, int n, int pos0);
    /* y = silu(gate) * up, n values. y may equal gate. */
    void (*swiglu)(tome_backend *be, float *y, const float *gate, const float *up, int64_t n);
    /* y += x, n values. */
    void (*add)(tome_backend *be, float *y, const float *x, int64_t n);
    /* host[r, :] = out · rmsnorm(x[r], norm) for n rows: the final norm and the output
     * projection, results copied to host memory [n, out->rows]. x may be clobbered. */
    void (*logits)(tome_backend *be, float *host, float *x, const tome_weight *norm, float eps,
                   const tome_weight *out, int n);
    void (*destroy)(tome_backend *be);
    /* Optional (NULL: never called; the CPU backend leaves them NULL). forward() calls
     * step_begin(n, pos0) before its first op and step_end after its last (logits included).
     * Between the two a backend may defer the ops and run them all in step_end, so the ops'
     * results (logits included) are defined only once step_end has returned. The CUDA backend
     * uses it to run a decode step (n == 1) as one replayed CUDA graph. */
    void (*step_begin)(tome_backend *be, int n, int pos0);
    void (*step_end)(tome_backend *be);
    /* Optional (NULL: forward() calls matmul once per weight). y[i] = w[i] · x (+ bias[i]) for
     * n_w <= BACKEND_GROUP_MAX weights of the same input width, each y[i] exactly what matmul
     * would write; no y[i] may overlap x. The CPU backend runs the group as one fork-join (Q/K/V
     * and gate/up: three fewer thread handoffs per layer). */
    void (*matmul_group)(tome_backend *be, int n_w, float *const y[], const tome_weight *const w[],
                         const tome_weight *const bias[], const float *x, int n);
} backend_ops;

#define BACKEND_GROUP_MAX 4

struct tome_backend {
    const backend_ops *ops;
    void *impl; /* the backend's own state */
};

#endif

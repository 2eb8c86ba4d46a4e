/* cpu.h — the reference CPU backend (plain C + a thread pool).
 *
 * Every op is written to be obviously right and to match llama.cpp's CPU numerics: RMSNorm
 * sums squares in double and scales by 1.0f/sqrtf(mean + eps); matmuls quantize each row of
 * activations into the weight type's vec_dot_type and use the reference block dot products
 * (or float activations with cfg->exact); softmax in float after subtracting the max; SiLU is
 * x/(1+expf(-x)). Dot products run through cpu/simd.h's kernels (cfg->cpu_kernels picks
 * them; "scalar" is the reference). The KV cache is lib/kvcache.h's paged one (f16/q8/q4),
 * or with kv_type KV_TYPE_F32 two float arrays per layer, [n_ctx][n_head_kv*head_dim].
 * Matmul rows and attention (token, head) pairs are split over the pool's threads.
 */
#ifndef TOME_CPU_H
#define TOME_CPU_H

#include "backend.h"

/* Creates a CPU backend for cfg (copied). TOME_ERESOURCE when the KV cache or scratch does
 * not fit in memory (naming the bytes). On success *out is freed by (*out)->ops->destroy. */
int cpu_backend_new(tome_backend **out, const backend_config *cfg, terr *e);

/* Bytes the CPU backend's KV cache takes for n_ctx positions of this model. */
uint64_t cpu_kv_bytes(const tome_hparams *hp, int n_ctx);

/* Bytes one position costs in a cache of kv_type (KV_TYPE_F32 or a kv_dtype), all layers, K
 * and V, scales included (kv_bytes_per_token's figure: 128 KiB for 32 x 8 x 128 in f16). */
uint64_t cpu_kv_token_bytes(const tome_hparams *hp, int kv_type);

/* Pages the paged pool holds for these settings: ceil(n_ctx / P), or with streaming (sinks > 0
 * and window > 0) the sink pages plus one chunk's span of the window, whatever n_ctx. */
int64_t cpu_kv_pages(int n_ctx, int n_batch, int window, int sinks, int page_tokens);

/* Bytes the backend's KV cache allocates for these settings (whole pages, padding included). */
uint64_t cpu_kv_total_bytes(const tome_hparams *hp, int kv_type, int n_ctx, int n_batch, int window, int sinks,
                            int page_tokens);

/* 1 when a KV page allocation or store failed (then attention outputs were zeroed). The engine
 * sizes the pool so that this cannot happen; it checks after each forward all the same. */
int cpu_backend_failed(tome_backend *be);

#endif

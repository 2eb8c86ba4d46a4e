/* ops.h — launchers for the PTX kernels: one small function per kernel that checks its
 * preconditions, computes the grid, launches on the device's stream and checks the launch.
 * Pointers are device addresses (CUdeviceptr). Errors come back as TOME_ERESOURCE in e. */
#ifndef TOME_CUDA_OPS_H
#define TOME_CUDA_OPS_H

#include "cuda/driver.h"

/* Device memory helpers (checked; bytes > 0). */
int cuda_alloc(cuda_dev *d, CUdeviceptr *p, size_t bytes, terr *e);
void cuda_free(cuda_dev *d, CUdeviceptr p);
int cuda_upload(cuda_dev *d, CUdeviceptr dst, const void *src, size_t bytes, terr *e);
int cuda_download(cuda_dev *d, void *dst, CUdeviceptr src, size_t bytes, terr *e); /* synchronises */
int cuda_sync(cuda_dev *d, terr *e);

/* out[i] = a[i] + b[i], i < n (ptx/elementwise.ptx). */
int cuda_add_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b, int64_t n, terr *e);
/* out[i] = silu(g[i]) * u[i] (ptx/elementwise.ptx). */
int cuda_swiglu_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr g, CUdeviceptr u, int64_t n, terr *e);
/* out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w, rows of n_cols (ptx/rmsnorm.ptx). */
int cuda_rmsnorm_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, CUdeviceptr w, int n_rows,
                     int n_cols, float eps, terr *e);

/* ---- model ops (issue #8): declared here so the backend (lib/cuda/backend.c) and the
 * kernels (PTX files in ptx/, launchers in ops.c) are written against one contract. -----
 * Weight matrices keep their GGUF bytes (type, row_bytes per row of `cols` values); they may
 * be repacked at upload for aligned loads only if the launcher knows (flag in cuda_weight). */

typedef struct cuda_weight {
    CUdeviceptr data;    /* rows * row_bytes bytes on the device */
    uint32_t type;       /* GGML_TYPE_* */
    int64_t rows, cols;  /* output width, input width (ne[1], ne[0]) */
    uint64_t row_bytes;
} cuda_weight;

/* y[t, r] = W[r, :] . x[t, :] (+ bias[r]) for t < n_tok, r < rows. x: [n_tok][cols] f32,
 * y: [n_tok][rows] f32, bias: 0 or [rows] f32. Types F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K,
 * Q6_K; n_tok == 1 is the decode GEMV (memory bound), larger n_tok a plain correct batched
 * product (issue #11 makes it fast). Float activations (no activation quantisation). */
int cuda_matmul(cuda_dev *d, CUdeviceptr y, const cuda_weight *w, CUdeviceptr bias, CUdeviceptr x,
                int n_tok, terr *e);

/* out[i, :] = dequantized row ids[i] of table (same types as cuda_matmul). ids: int32 [n] on
 * the device; out: [n][table->cols] f32. */
int cuda_embed(cuda_dev *d, CUdeviceptr out, const cuda_weight *table, CUdeviceptr ids, int n, terr *e);

/* Rotates x [n][n_heads][head_dim] in place: token i uses cs[i][rope_dim] (cos, sin pairs as
 * lib/rope.h's rope_cos_sin writes them, mscale included); dims >= rope_dim pass through;
 * neox selects halves (i, i + rope_dim/2) instead of adjacent pairs (2i, 2i+1). */
int cuda_rope(cuda_dev *d, CUdeviceptr x, int n, int n_heads, int head_dim, int rope_dim, int neox,
              CUdeviceptr cs, terr *e);

/* One layer's paged cache on the device, in lib/kvcache.h's byte layout (f16 pages here). */
typedef struct cuda_kv_layer {
    CUdeviceptr k, v;              /* page 0 of this layer; page p at + p * page_bytes_* */
    uint64_t page_bytes_k, page_bytes_v;
    int page_tokens, n_kv_head, head_dim, head_dim_v;
} cuda_kv_layer;

/* Stores k [n][n_kv_head][head_dim] and v [n][n_kv_head][head_dim_v] (f32) as f16 rows of
 * positions pos0 .. pos0+n-1; block_table: int32 page ids on the device (position j lives in
 * page block_table[j / P], slot j % P). */
int cuda_kv_store_f16(cuda_dev *d, const cuda_kv_layer *L, CUdeviceptr block_table, int64_t pos0,
                      int n, CUdeviceptr k, CUdeviceptr v, terr *e);

/* Attention of n_q queries q [n_q][n_head][head_dim] at positions pos0 .. pos0+n_q-1 over the
 * cached f16 keys/values of positions visible to each (causal; window > 0: the last `window`
 * positions; sinks > 0 with a window: also positions [0, sinks)); GQA: q head h uses kv head
 * h / (n_head / n_kv_head). out: [n_q][n_head][head_dim_v] f32. Simple and right: the fast
 * flash-decoding and FlashAttention prefill are issues #9 and #10. */
int cuda_attention_f16(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_q, int n_head,
                       const cuda_kv_layer *L, CUdeviceptr block_table, int64_t pos0, float scale,
                       int window, int sinks, terr *e);

/* *out (int32 on the device) = the index of the largest of x[0..n) (lowest index on ties). */
int cuda_argmax_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, int64_t n, terr *e);

#endif

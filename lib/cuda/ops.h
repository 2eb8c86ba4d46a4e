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
 * be repacked at upload for aligned loads only if the launcher knows (flag in cuda_weight).
 * The model kernels read their inputs through the non-coherent cache (ld.global.nc): an
 * output must never overlap an input of the same call. */

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

/* ---- quantised KV pages and flash-decoding (issue #9) ------------------------------------
 * These take the page dtype separately (cuda_kv_layer stays as it is): the pages are
 * lib/kvcache.h's layout for that dtype, page_bytes_* = kv_page_bytes(dtype, ...). */

#include "kvcache.h" /* kv_dtype, kv_page_bytes, kv_scales_offset */

/* RoPE + quantise + page write in one kernel (ptx/kv_quant.ptx), for positions pos0 ..
 * pos0+n-1: q [n][n_head][head_dim] f32 is rotated in place (q = 0 or n_head = 0: no q);
 * k [n][n_kv_head][head_dim] is rotated on the way (k itself is not written) and stored with
 * v [n][n_kv_head][head_dim_v] as dtype rows of the pages block_table names (int32 on the
 * device; a negative id is skipped). cs: [n][rope_dim] f32, rope_cos_sin of each token's
 * position (the host table is what keeps positions past 1M exact); cs = 0: no rotation.
 * neox as in cuda_rope. The page bytes equal kv_store's for the same rotated rows (f16, q8,
 * q4: the same operations in the same order). */
int cuda_rope_kv_store(cuda_dev *d, const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                       int64_t pos0, int n, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v,
                       CUdeviceptr cs, int n_head, int rope_dim, int neox, terr *e);

/* cuda_rope_kv_store for one token (n = 1) whose position is read from the device when the
 * kernel runs: pos_dev holds it as a u64 (8-byte aligned). A decode step captured in a CUDA
 * graph uses it, so that the replayed graph stores each step's row at that step's position. */
int cuda_rope_kv_store_step(cuda_dev *d, const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                            CUdeviceptr pos_dev, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v,
                            CUdeviceptr cs, int n_head, int rope_dim, int neox, terr *e);

/* Bytes of scratch cuda_flash_decode needs: m, l [n_splits][n_head] and acc
 * [n_splits][n_head][head_dim_v], f32. */
size_t cuda_flash_decode_scratch_bytes(int n_head, int head_dim_v, int n_splits);

/* A split count for n_keys visible keys that gives every SM several blocks even for one
 * sequence (about 4 blocks per SM over the kv heads, at least 64 keys per split). */
int cuda_flash_decode_splits(const cuda_dev *d, const cuda_kv_layer *L, int64_t n_keys);

/* Flash-decoding for one query position (ptx/flash_decode.ptx): q [n_head][head_dim] f32 at
 * position q_pos (0 <= q_pos < kv_len) over the keys kvcache.c's kv_attend sees (causal;
 * window > 0: (q_pos - window, q_pos] plus sinks [0, sinks)); out [n_head][head_dim_v] f32.
 * The visible keys are split into n_splits ranges (1 .. 65535), each a block per kv head
 * that reads every K/V row once for all the q heads of its GQA group and dequantises in
 * registers; the partials go to scratch (scratch_bytes >= cuda_flash_decode_scratch_bytes)
 * and tome_lse_merge combines them into out. Limits: head dims multiples of 8 and <= 256,
 * rep = n_head / n_kv_head <= 32 with rep * head_dim(_v) <= 1024. out must not overlap q or
 * scratch. */
int cuda_flash_decode(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_head,
                      const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table, int64_t kv_len,
                      int64_t q_pos, float scale, int64_t window, int64_t sinks, int n_splits,
                      CUdeviceptr scratch, size_t scratch_bytes, terr *e);

/* cuda_flash_decode with the key range read from the device when the kernel runs (for a
 * decode step captured in a CUDA graph): step holds u64 {n_sink, win_lo, n_visible} as
 * ptx/flash_decode.ptx defines them (8-byte aligned); the grid is always n_splits (the split
 * count of the longest context; splits past the keys write empty partials the merge skips),
 * each split taking ceil(n_visible / n_splits) keys, at least 64, rounded up to 32. */
int cuda_flash_decode_step(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_head,
                           const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                           CUdeviceptr step, float scale, int n_splits, CUdeviceptr scratch,
                           size_t scratch_bytes, terr *e);

/* out [n_head][dv] = log-sum-exp merge of n_parts partials laid out as cuda_flash_decode's
 * scratch (m, l [n_parts][n_head], acc [n_parts][n_head][dv], kv_attend_partial's meaning),
 * divided by the merged l; 0 for a head no part saw. Ring attention reuses it. */
int cuda_lse_merge(cuda_dev *d, CUdeviceptr out, CUdeviceptr part_m, CUdeviceptr part_l,
                   CUdeviceptr part_acc, int n_parts, int n_head, int dv, terr *e);

/* ---- FlashAttention prefill (issue #10; lib/cuda/flash_prefill.c, ptx/flash_prefill.ptx) ---- */

/* 1 when cuda_flash_prefill takes this shape: head dims multiples of 16 in 16 .. 128, n_head a
 * multiple of n_kv_head (any group size), n_kv_head <= 65535. */
int cuda_flash_prefill_ok(const cuda_kv_layer *L, int n_head);

/* Dynamic shared memory the kernel takes per block (two K/V stages of 64 padded rows). */
#define CUDA_FLASH_PREFILL_SMEM 69632

/* FlashAttention-2 forward on the tensor cores for a prefill chunk: n_q queries q
 * [n_q][n_head][head_dim] f32 at positions pos0 .. pos0+n_q-1 over the dtype pages of L
 * (every key 0 .. pos0+n_q-1 already stored: rope_kv_store runs first), each query seeing
 * what kvcache.c's kv_attend sees (causal; window > 0: (p - window, p] plus sinks [0,
 * sinks)). out: [n_q][n_head][head_dim_v] f32, must not overlap q. A block handles 64 (query,
 * head) rows of one GQA group, so every K/V tile is read once per group. Q (pre-scaled by
 * scale * log2 e), K, V and the softmax weights are rounded to f16 for mma.sync with f32
 * accumulation: expect ~1e-3 relative error of the output's scale against the f32 CPU
 * reference. Limits: cuda_flash_prefill_ok(L, n_head); pos0 + n_q <= INT32_MAX, n_q * rep <=
 * INT32_MAX; window, sinks >= 0. */
int cuda_flash_prefill(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_q, int n_head,
                       const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table, int64_t pos0,
                       float scale, int64_t window, int64_t sinks, terr *e);

/* ---- tensor-core GEMM for prefill (issue #11; lib/cuda/gemm.c, ptx/gemm.ptx) -------------- */

/* 1 when cuda_gemm takes w: F16, BF16, Q8_0 (cols % 32 == 0), Q4_K, Q6_K (cols % 256 == 0),
 * rows and cols below 2^31, data 16-byte aligned (GGUF tensors are 32-byte aligned). */
int cuda_gemm_supported(const cuda_weight *w);

/* Bytes of scratch cuda_gemm needs for n_tok tokens of cols activations (f16 / bf16). */
size_t cuda_gemm_scratch_bytes(int n_tok, int64_t cols);

/* cuda_matmul on the tensor cores: y[t, r] = W[r, :] . x[t, :] (+ bias[r]) (+ res[t, r]) for
 * t < n_tok, r < rows, added in that order in f32. x: [n_tok][cols] f32, converted first to
 * f16 (bf16 for BF16 weights) in scratch (>= cuda_gemm_scratch_bytes; not overlapping y);
 * bias: 0 or [rows] f32; res: 0 or [n_tok][rows] f32, which may be y itself (y += W x) but
 * must not partly overlap it. y must not overlap x, w or bias. Weights are dequantised in
 * shared memory and rounded to f16 (Q8_0/Q4_K/Q6_K; F16/BF16 are used as stored): expect
 * ~1e-3 (f16) / ~4e-3 (bf16) of sum_k |W[r,k] x[t,k]| as the error against the f32 product.
 * Limits: cuda_gemm_supported(w); ceil(n_tok / 128) <= 65535. */
int cuda_gemm(cuda_dev *d, CUdeviceptr y, const cuda_weight *w, CUdeviceptr bias, CUdeviceptr res, CUdeviceptr x,
              int n_tok, CUdeviceptr scratch, size_t scratch_bytes, terr *e);

#endif

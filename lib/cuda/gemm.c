/* gemm.c — launcher of the tensor-core prefill GEMM (ptx/gemm.ptx, issue #11).
 *
 * cuda_gemm is cuda_matmul's fast path for a batch of tokens: the activations are converted
 * once to f16 (bf16 for BF16 weights) into a caller-owned scratch buffer by tome_gemm_cvt,
 * then tome_gemm multiplies them with the weights on the tensor cores, reading the GGUF bytes
 * directly (F16/BF16) or dequantising Q8_0/Q4_K/Q6_K blocks in shared memory. The result is
 * f32 with bias and an optional residual added in the epilogue.
 *
 * Limits: the weight types and shapes cuda_gemm_supported accepts; everything else (and any
 * batch where tensor-core tiles of 128 tokens would be mostly idle) stays on cuda_matmul —
 * the backend decides (GPU_GEMM_MIN_TOKENS in backend.c). Numerics differ from cuda_matmul:
 * activations and dequantised weights are rounded to f16/bf16 (relative 2^-11 / 2^-8 per
 * value) and summed in f32 in the tensor cores' order (tests/test_cuda_gemm.c gives bounds).
 */
#include "cuda/ops.h"

#include "quant.h"

#define GEMM_TILE 128         /* CTA tile: 128 tokens x 128 weight rows (gemm.ptx) */
#define GEMM_THREADS 256
#define GEMM_SMEM 90112u      /* dynamic shared memory of tome_gemm (gemm.ptx's layout) */

int cuda_gemm_supported(const cuda_weight *w) {
    if (!w || !w->data || w->data % 16 || w->rows <= 0 || w->cols <= 0 || w->rows > INT32_MAX ||
        w->cols > INT32_MAX || w->cols % 32)
        return 0;
    switch (w->type) {
    case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0: return 1;
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q6_K: return w->cols % 256 == 0;
    default: return 0;
    }
}

size_t cuda_gemm_scratch_bytes(int n_tok, int64_t cols) {
    return n_tok > 0 && cols > 0 ? (size_t)n_tok * (size_t)cols * 2u : 0;
}

int cuda_gemm(cuda_dev *d, CUdeviceptr y, const cuda_weight *w, CUdeviceptr bias, CUdeviceptr res, CUdeviceptr x,
              int n_tok, CUdeviceptr scratch, size_t scratch_bytes, terr *e) {
    if (!cuda_gemm_supported(w))
        return terr_set(e, TOME_ERESOURCE, "gemm: weight type %u, %lld x %lld, is not one the GEMM takes", w ? w->type : 0,
                        w ? (long long)w->rows : 0, w ? (long long)w->cols : 0);
    if (w->row_bytes != ggml_row_size(w->type, w->cols))
        return terr_set(e, TOME_ERESOURCE, "gemm: row_bytes %llu != %llu for %lld values of type %u",
                        (unsigned long long)w->row_bytes, (unsigned long long)ggml_row_size(w->type, w->cols),
                        (long long)w->cols, w->type);
    if (n_tok <= 0 || !y || !x || !scratch)
        return terr_set(e, TOME_ERESOURCE, "gemm: n_tok = %d (or null y / x / scratch)", n_tok);
    const size_t need = cuda_gemm_scratch_bytes(n_tok, w->cols);
    if (scratch_bytes < need)
        return terr_set(e, TOME_ERESOURCE, "gemm: scratch of %zu bytes, %d x %lld activations need %zu", scratch_bytes,
                        n_tok, (long long)w->cols, need);
    /* the grid's y dimension counts 128-token tiles; the kernel forms t * rows in 64 bits */
    if ((n_tok + GEMM_TILE - 1) / GEMM_TILE > 65535 || (uint64_t)n_tok * (uint64_t)w->cols / 2 > UINT32_MAX)
        return terr_set(e, TOME_ERESOURCE, "gemm: %d tokens is beyond the launcher's limits", n_tok);

    /* 1. activations f32 -> f16 (bf16 for BF16 weights), one pass */
    uint32_t n2 = (uint32_t)((uint64_t)n_tok * (uint64_t)w->cols / 2), bf = w->type == GGML_TYPE_BF16;
    int64_t want = ((int64_t)n2 + GEMM_THREADS - 1) / GEMM_THREADS, cap = (int64_t)(d->n_sm > 0 ? d->n_sm : 1) * 16;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    void *pc[] = {&scratch, &x, &n2, &bf};
    int rc = cuda_launch(d, K_GEMM_CVT, blocks, 1, 1, GEMM_THREADS, 1, 1, 0, pc, e);
    if (rc) return rc;

    /* 2. the GEMM: one CTA per 128 x 128 tile of y, 90 KB of dynamic shared memory (above the
     * 48 KB default, so the function's limit is raised; cheap, and per device state stays in
     * the driver) */
    CU_TRY(d, e, d->api.cuFuncSetAttribute(d->kernels[K_GEMM], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                           (int)GEMM_SMEM));
    uint32_t type = w->type, m = (uint32_t)n_tok, n = (uint32_t)w->rows, k = (uint32_t)w->cols;
    uint64_t rb = w->row_bytes;
    CUdeviceptr data = w->data;
    void *pg[] = {&y, &scratch, &data, &bias, &res, &rb, &type, &m, &n, &k};
    return cuda_launch(d, K_GEMM, (unsigned)((n + GEMM_TILE - 1) / GEMM_TILE), (unsigned)((m + GEMM_TILE - 1) / GEMM_TILE),
                       1, GEMM_THREADS, 1, 1, GEMM_SMEM, pg, e);
}

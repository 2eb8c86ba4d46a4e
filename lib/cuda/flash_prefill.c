/* flash_prefill.c — launcher of the FlashAttention-2 prefill kernel (ptx/flash_prefill.ptx).
 *
 * The kernel's design (tiling, fragment layouts, shared-memory layout, pipeline) is written
 * down at the top of the PTX file; this file checks the shape and the page layout, derives
 * the parameters (softmax scale folded with log2 e, the window clipped to what matters) and
 * launches one block per 64 (query, head) rows of each GQA group. Limits: head dims that are
 * multiples of 16 up to 128 (64, 80, 96, 128 are the model shapes; more needs more registers
 * than one warp's 16-row tile can hold), positions below 2^31.
 */
#include "cuda/ops.h"

#include <math.h>

int cuda_flash_prefill_ok(const cuda_kv_layer *L, int n_head) {
    return L && L->n_kv_head > 0 && L->n_kv_head <= 65535 && n_head > 0 && n_head % L->n_kv_head == 0 &&
           L->head_dim >= 16 && L->head_dim <= 128 && L->head_dim % 16 == 0 && L->head_dim_v >= 16 &&
           L->head_dim_v <= 128 && L->head_dim_v % 16 == 0;
}

int cuda_flash_prefill(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_q, int n_head,
                       const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table, int64_t pos0,
                       float scale, int64_t window, int64_t sinks, terr *e) {
    if (dt != KV_F16 && dt != KV_Q8 && dt != KV_Q4)
        return terr_set(e, TOME_ERESOURCE, "flash_prefill: unknown kv dtype %d", (int)dt);
    if (!cuda_flash_prefill_ok(L, n_head))
        return terr_set(e, TOME_ERESOURCE,
                        "flash_prefill: unsupported shape: n_head %d over %d kv heads, dims %d/%d "
                        "(multiples of 16 up to 128)",
                        n_head, L ? L->n_kv_head : 0, L ? L->head_dim : 0, L ? L->head_dim_v : 0);
    const int64_t rep = n_head / L->n_kv_head;
    /* q is read with 16-byte vector loads, out written with 8-byte stores */
    if (!out || !q || !block_table || q % 16 || out % 8 || n_q <= 0 || pos0 < 0 || pos0 + n_q > INT32_MAX ||
        (int64_t)n_q * rep > INT32_MAX || window < 0 || sinks < 0 || !(scale > 0) || !isfinite(scale))
        return terr_set(e, TOME_ERESOURCE,
                        "flash_prefill: n_q %d, pos0 %lld, n_head %d, window %lld, sinks %lld, scale %g (q, out "
                        "16 / 8-byte aligned)",
                        n_q, (long long)pos0, n_head, (long long)window, (long long)sinks, (double)scale);
    /* the pages: kvcache.h's size for the dtype, 16-byte aligned for cp.async / vector loads */
    size_t need_k = kv_page_bytes(dt, L->n_kv_head, L->head_dim, L->page_tokens);
    size_t need_v = kv_page_bytes(dt, L->n_kv_head, L->head_dim_v, L->page_tokens);
    if (!L->k || !L->v || L->page_tokens < 1 || L->page_tokens > 1024 || L->page_bytes_k < need_k ||
        L->page_bytes_v < need_v || L->page_bytes_k % 16 || L->page_bytes_v % 16 || L->k % 16 || L->v % 16 ||
        L->page_bytes_k > UINT32_MAX || L->page_bytes_v > UINT32_MAX) /* in-page offsets are 32-bit */
        return terr_set(e, TOME_ERESOURCE,
                        "flash_prefill: bad kv layer (P=%d, page bytes %llu/%llu, need %zu/%zu, 16-byte "
                        "aligned) for dtype %d",
                        L->page_tokens, (unsigned long long)L->page_bytes_k,
                        (unsigned long long)L->page_bytes_v, need_k, need_v, (int)dt);
    if (!d->kernels[K_FLASH_PREFILL])
        return terr_set(e, TOME_ERESOURCE, "flash_prefill: kernel %s not loaded", cuda_kernel_name(K_FLASH_PREFILL));
    /* a window reaching back past position 0 for every query is plain causal attention (and
     * keeps the kernel's 32-bit position arithmetic in range) */
    const int64_t kv_len = pos0 + n_q;
    if (window >= kv_len) window = 0, sinks = 0;
    if (window == 0) sinks = 0;
    if (sinks > kv_len) sinks = kv_len;
    uint64_t pbk = L->page_bytes_k, pbv = L->page_bytes_v;
    uint64_t sok = kv_scales_offset(dt, L->n_kv_head, L->head_dim, L->page_tokens);
    uint64_t sov = kv_scales_offset(dt, L->n_kv_head, L->head_dim_v, L->page_tokens);
    uint32_t p0 = (uint32_t)pos0, nq = (uint32_t)n_q, nh = (uint32_t)n_head, r32 = (uint32_t)rep;
    uint32_t P = (uint32_t)L->page_tokens, dk = (uint32_t)L->head_dim, dv = (uint32_t)L->head_dim_v;
    uint32_t win = (uint32_t)window, snk = (uint32_t)sinks, dtype = (uint32_t)dt;
    float qscale = scale * 1.44269504088896340736f; /* log2 e: the kernel's exponentials are ex2 */
    CUdeviceptr kd = L->k, vd = L->v;
    void *params[] = {&out, &q, &kd, &vd, &block_table, &pbk, &pbv, &sok, &sov, &p0, &nq,
                      &qscale, &nh, &r32, &P, &dk, &dv, &win, &snk, &dtype};
    /* over the 48 KiB a block gets by default: opt in (idempotent, cheap) */
    CU_TRY(d, e, d->api.cuFuncSetAttribute(d->kernels[K_FLASH_PREFILL], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                           CUDA_FLASH_PREFILL_SMEM));
    const uint64_t rows = (uint64_t)n_q * (uint64_t)rep;
    return cuda_launch(d, K_FLASH_PREFILL, (unsigned)((rows + 63) / 64), (unsigned)L->n_kv_head, 1, 128, 1, 1,
                       CUDA_FLASH_PREFILL_SMEM, params, e);
}

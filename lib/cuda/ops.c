/* ops.c — kernel launchers and device-memory helpers (see ops.h). */
#include "cuda/ops.h"

#include "quant.h" /* ggml_row_size, GGML_TYPE_* */

int cuda_alloc(cuda_dev *d, CUdeviceptr *p, size_t bytes, terr *e) {
    *p = 0;
    if (!bytes) return terr_set(e, TOME_ERESOURCE, "cuda_alloc: zero bytes");
    CUresult r = d->api.cuMemAlloc(p, bytes);
    if (r != 0) {
        size_t free_b = 0, total_b = 0;
        d->api.cuMemGetInfo(&free_b, &total_b);
        return terr_set(e, TOME_ERESOURCE, "out of GPU memory on GPU %d (%s): %zu bytes requested, %zu of %zu free",
                        d->ordinal, d->name, bytes, free_b, total_b);
    }
    return 0;
}

void cuda_free(cuda_dev *d, CUdeviceptr p) {
    if (p) d->api.cuMemFree(p);
}

int cuda_upload(cuda_dev *d, CUdeviceptr dst, const void *src, size_t bytes, terr *e) {
    CU_TRY(d, e, d->api.cuMemcpyHtoDAsync(dst, src, bytes, d->stream));
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

int cuda_download(cuda_dev *d, void *dst, CUdeviceptr src, size_t bytes, terr *e) {
    CU_TRY(d, e, d->api.cuMemcpyDtoHAsync(dst, src, bytes, d->stream));
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

int cuda_sync(cuda_dev *d, terr *e) {
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

/* Blocks for a 1-D grid-stride kernel: enough to fill the GPU a few times over. */
static unsigned stride_blocks(const cuda_dev *d, int64_t n, unsigned threads) {
    int64_t want = (n + threads - 1) / threads, cap = (int64_t)(d->n_sm > 0 ? d->n_sm : 1) * 16;
    if (want < 1) want = 1;
    return (unsigned)(want < cap ? want : cap);
}

static int elementwise(cuda_dev *d, cuda_kernel_id k, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b,
                       int64_t n, terr *e) {
    if (n <= 0 || n >= (int64_t)1 << 31)
        return terr_set(e, TOME_ERESOURCE, "elementwise kernel: n = %lld out of range", (long long)n);
    uint32_t n32 = (uint32_t)n;
    void *params[] = {&out, &a, &b, &n32};
    return cuda_launch(d, k, stride_blocks(d, n, 256), 1, 1, 256, 1, 1, 0, params, e);
}

int cuda_add_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b, int64_t n, terr *e) {
    return elementwise(d, K_ADD_F32, out, a, b, n, e);
}

int cuda_swiglu_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr g, CUdeviceptr u, int64_t n, terr *e) {
    return elementwise(d, K_SWIGLU_F32, out, g, u, n, e);
}

int cuda_rmsnorm_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, CUdeviceptr w, int n_rows, int n_cols,
                     float eps, terr *e) {
    if (n_rows <= 0 || n_cols <= 0 || n_rows > 0x7fffffff / 1)
        return terr_set(e, TOME_ERESOURCE, "rmsnorm: bad shape %d x %d", n_rows, n_cols);
    uint32_t n = (uint32_t)n_cols;
    void *params[] = {&out, &x, &w, &n, &eps};
    return cuda_launch(d, K_RMSNORM_F32, (unsigned)n_rows, 1, 1, 256, 1, 1, 0, params, e);
}

/* ---- model ops (issue #8): simple, correct kernels; the fast ones are issues #9-#11 ------ */

/* Block size of a type cuda_matmul / cuda_embed handle, 0 for any other type. */
static int64_t mm_block(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: return 1;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: return 32;
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: return 256;
    default: return 0;
    }
}

/* The weight's shape fits the kernels' 32-bit indices and row_bytes is the GGUF row size. */
static int check_weight(const char *op, const cuda_weight *w, terr *e) {
    int64_t blk = mm_block(w->type);
    if (!w->data || !blk)
        return terr_set(e, TOME_ERESOURCE, "%s: unsupported weight type %u (or no data)", op, w->type);
    if (w->rows <= 0 || w->cols <= 0 || w->rows > INT32_MAX || w->cols > INT32_MAX || w->cols % blk)
        return terr_set(e, TOME_ERESOURCE, "%s: bad weight shape %lld x %lld (type %u)", op,
                        (long long)w->rows, (long long)w->cols, w->type);
    if (w->row_bytes != ggml_row_size(w->type, w->cols))
        return terr_set(e, TOME_ERESOURCE, "%s: row_bytes %llu != %llu for %lld values of type %u", op,
                        (unsigned long long)w->row_bytes,
                        (unsigned long long)ggml_row_size(w->type, w->cols), (long long)w->cols, w->type);
    return 0;
}

/* One warp per output row, dequantising single elements from the GGUF bytes (ptx/matmul.ptx).
 * y must not overlap x, w or bias (they are read through the non-coherent cache). */
int cuda_matmul(cuda_dev *d, CUdeviceptr y, const cuda_weight *w, CUdeviceptr bias, CUdeviceptr x,
                int n_tok, terr *e) {
    int rc = check_weight("matmul", w, e);
    if (rc) return rc;
    if (n_tok <= 0 || !y || !x)
        return terr_set(e, TOME_ERESOURCE, "matmul: n_tok = %d (or null y/x)", n_tok);
    /* y and x offsets are formed as t * rows and t * cols in 64 bits; the grid's y stride
     * covers any n_tok */
    uint32_t type = w->type, rows = (uint32_t)w->rows, cols = (uint32_t)w->cols, nt = (uint32_t)n_tok;
    uint64_t rb = w->row_bytes;
    CUdeviceptr data = w->data;
    void *params[] = {&y, &data, &bias, &x, &rb, &type, &rows, &cols, &nt};
    unsigned gy = (unsigned)(n_tok < 65535 ? n_tok : 65535);
    return cuda_launch(d, K_MATMUL, rows, gy, 1, 32, 1, 1, 0, params, e);
}

/* Ids are checked on the device (an id outside the table gives a NaN row): they live there. */
int cuda_embed(cuda_dev *d, CUdeviceptr out, const cuda_weight *table, CUdeviceptr ids, int n, terr *e) {
    int rc = check_weight("embed", table, e);
    if (rc) return rc;
    if (n <= 0 || !out || !ids) return terr_set(e, TOME_ERESOURCE, "embed: n = %d (or null out/ids)", n);
    uint32_t type = table->type, rows = (uint32_t)table->rows, cols = (uint32_t)table->cols;
    uint64_t rb = table->row_bytes;
    CUdeviceptr data = table->data;
    void *params[] = {&out, &data, &ids, &rb, &type, &rows, &cols};
    return cuda_launch(d, K_EMBED, (unsigned)n, 1, 1, 256, 1, 1, 0, params, e);
}

int cuda_rope(cuda_dev *d, CUdeviceptr x, int n, int n_heads, int head_dim, int rope_dim, int neox,
              CUdeviceptr cs, terr *e) {
    if (n <= 0 || n_heads <= 0 || head_dim <= 0 || rope_dim <= 0 || rope_dim % 2 ||
        rope_dim > head_dim || (int64_t)n_heads * head_dim > INT32_MAX || !x || !cs)
        return terr_set(e, TOME_ERESOURCE, "rope: bad shape n=%d heads=%d head_dim=%d rope_dim=%d", n,
                        n_heads, head_dim, rope_dim);
    uint32_t nh = (uint32_t)n_heads, hd = (uint32_t)head_dim, rd = (uint32_t)rope_dim, nx = neox != 0;
    void *params[] = {&x, &cs, &nh, &hd, &rd, &nx};
    return cuda_launch(d, K_ROPE, (unsigned)n, 1, 1, 128, 1, 1, 0, params, e);
}

/* The layer descriptor is usable by the f16 kernels (dims even and <= 512, pages big enough). */
static int check_kv_layer(const char *op, const cuda_kv_layer *L, terr *e) {
    if (!L->k || !L->v || L->page_tokens < 1 || L->page_tokens > 1024 || L->n_kv_head <= 0 ||
        L->head_dim <= 0 || L->head_dim > 512 || L->head_dim % 2 || L->head_dim_v <= 0 ||
        L->head_dim_v > 512 || L->head_dim_v % 2)
        return terr_set(e, TOME_ERESOURCE, "%s: bad kv layer (P=%d, kv heads=%d, dims %d/%d)", op,
                        L->page_tokens, L->n_kv_head, L->head_dim, L->head_dim_v);
    if (L->page_bytes_k < (uint64_t)L->n_kv_head * L->page_tokens * L->head_dim * 2 ||
        L->page_bytes_v < (uint64_t)L->n_kv_head * L->page_tokens * L->head_dim_v * 2)
        return terr_set(e, TOME_ERESOURCE, "%s: page bytes %llu/%llu too small for f16 pages", op,
                        (unsigned long long)L->page_bytes_k, (unsigned long long)L->page_bytes_v);
    return 0;
}

int cuda_kv_store_f16(cuda_dev *d, const cuda_kv_layer *L, CUdeviceptr block_table, int64_t pos0,
                      int n, CUdeviceptr k, CUdeviceptr v, terr *e) {
    int rc = check_kv_layer("kv_store_f16", L, e);
    if (rc) return rc;
    /* the kernel forms token * n_kv_head + head in 32 bits */
    if (n <= 0 || pos0 < 0 || !block_table || !k || !v || L->n_kv_head > 65535 ||
        (int64_t)n * L->n_kv_head > INT32_MAX)
        return terr_set(e, TOME_ERESOURCE, "kv_store_f16: n = %d, pos0 = %lld", n, (long long)pos0);
    uint64_t p0 = (uint64_t)pos0;
    uint32_t nkv = (uint32_t)L->n_kv_head, P = (uint32_t)L->page_tokens;
    uint32_t dk = (uint32_t)L->head_dim, dv = (uint32_t)L->head_dim_v;
    CUdeviceptr kd = L->k, vd = L->v;
    uint64_t pbk = L->page_bytes_k, pbv = L->page_bytes_v;
    void *pk[] = {&kd, &k, &block_table, &pbk, &p0, &nkv, &dk, &P};
    rc = cuda_launch(d, K_KV_STORE_F16, (unsigned)n, nkv, 1, 128, 1, 1, 0, pk, e);
    if (rc) return rc;
    void *pv[] = {&vd, &v, &block_table, &pbv, &p0, &nkv, &dv, &P};
    return cuda_launch(d, K_KV_STORE_F16, (unsigned)n, nkv, 1, 128, 1, 1, 0, pv, e);
}

/* One warp per (head, query) walking the visible keys one by one (ptx/attention.ptx); keys
 * in dropped pages (id -1) are skipped. out must not overlap q (read through the nc cache). */
int cuda_attention_f16(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_q, int n_head,
                       const cuda_kv_layer *L, CUdeviceptr block_table, int64_t pos0, float scale,
                       int window, int sinks, terr *e) {
    int rc = check_kv_layer("attention_f16", L, e);
    if (rc) return rc;
    /* grid y holds the query (<= 65535); the kernel forms query * n_head + head in 32 bits */
    if (n_q <= 0 || n_q > 65535 || n_head <= 0 || n_head > 65535 || n_head % L->n_kv_head ||
        pos0 < 0 || window < 0 || sinks < 0 || !out || !q || !block_table)
        return terr_set(e, TOME_ERESOURCE,
                        "attention_f16: n_q=%d n_head=%d (kv heads %d) pos0=%lld window=%d sinks=%d", n_q,
                        n_head, L->n_kv_head, (long long)pos0, window, sinks);
    uint64_t p0 = (uint64_t)pos0, pbk = L->page_bytes_k, pbv = L->page_bytes_v;
    uint32_t nh = (uint32_t)n_head, rep = (uint32_t)(n_head / L->n_kv_head), P = (uint32_t)L->page_tokens;
    uint32_t dk = (uint32_t)L->head_dim, dv = (uint32_t)L->head_dim_v;
    uint32_t win = (uint32_t)window, snk = (uint32_t)sinks;
    CUdeviceptr kd = L->k, vd = L->v;
    void *params[] = {&out, &q, &kd, &vd, &block_table, &pbk, &pbv, &p0, &scale,
                      &nh, &rep, &P, &dk, &dv, &win, &snk};
    return cuda_launch(d, K_ATTENTION_F16, nh, (unsigned)n_q, 1, 32, 1, 1, 0, params, e);
}

int cuda_argmax_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, int64_t n, terr *e) {
    if (n <= 0 || n > INT32_MAX || !out || !x)
        return terr_set(e, TOME_ERESOURCE, "argmax: n = %lld out of range", (long long)n);
    uint32_t n32 = (uint32_t)n;
    void *params[] = {&out, &x, &n32};
    return cuda_launch(d, K_ARGMAX_F32, 1, 1, 1, 256, 1, 1, 0, params, e);
}

/* ---- quantised KV pages and flash-decoding (issue #9) ------------------------------------ */

/* The layer holds dtype pages of kvcache.h's size, aligned for the kernels' vector loads. */
static int check_kv_pages(const char *op, const cuda_kv_layer *L, kv_dtype dt, terr *e) {
    if (dt != KV_F16 && dt != KV_Q8 && dt != KV_Q4)
        return terr_set(e, TOME_ERESOURCE, "%s: unknown kv dtype %d", op, (int)dt);
    if (!L->k || !L->v || L->page_tokens < 1 || L->page_tokens > 1024 || L->n_kv_head <= 0 ||
        L->n_kv_head > 4096 || L->head_dim <= 0 || L->head_dim > KV_MAX_HEAD_DIM ||
        L->head_dim % 2 || L->head_dim_v <= 0 || L->head_dim_v > KV_MAX_HEAD_DIM ||
        L->head_dim_v % 2)
        return terr_set(e, TOME_ERESOURCE, "%s: bad kv layer (P=%d, kv heads=%d, dims %d/%d)", op,
                        L->page_tokens, L->n_kv_head, L->head_dim, L->head_dim_v);
    size_t need_k = kv_page_bytes(dt, L->n_kv_head, L->head_dim, L->page_tokens);
    size_t need_v = kv_page_bytes(dt, L->n_kv_head, L->head_dim_v, L->page_tokens);
    if (L->page_bytes_k < need_k || L->page_bytes_v < need_v || L->page_bytes_k % 16 ||
        L->page_bytes_v % 16 || L->k % 16 || L->v % 16)
        return terr_set(e, TOME_ERESOURCE,
                        "%s: page bytes %llu/%llu (need %zu/%zu, multiples of 16, 16-byte aligned "
                        "storage) for dtype %d",
                        op, (unsigned long long)L->page_bytes_k, (unsigned long long)L->page_bytes_v,
                        need_k, need_v, (int)dt);
    return 0;
}

/* One warp per (token, kv head) row pair and per (token, q head); see ptx/kv_quant.ptx.
 * pos_dev: 0, or a device u64 the kernel adds to pos0 (cuda_rope_kv_store_step). */
static int rope_kv_store(cuda_dev *d, const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                         int64_t pos0, CUdeviceptr pos_dev, int n, CUdeviceptr q, CUdeviceptr k,
                         CUdeviceptr v, CUdeviceptr cs, int n_head, int rope_dim, int neox, terr *e) {
    int rc = check_kv_pages("rope_kv_store", L, dt, e);
    if (rc) return rc;
    if (!q || !cs) n_head = 0; /* nothing to rotate */
    /* grid y = kv heads + q heads; the kernel forms token * heads + head in 32 bits */
    if (n <= 0 || pos0 < 0 || !block_table || !k || !v || n_head < 0 ||
        L->n_kv_head + n_head > 65535 || (int64_t)n * (L->n_kv_head + n_head) > INT32_MAX ||
        (cs && (rope_dim <= 0 || rope_dim % 2 || rope_dim > L->head_dim)))
        return terr_set(e, TOME_ERESOURCE,
                        "rope_kv_store: n = %d, pos0 = %lld, n_head = %d, rope_dim = %d", n,
                        (long long)pos0, n_head, rope_dim);
    uint64_t pbk = L->page_bytes_k, pbv = L->page_bytes_v, p0 = (uint64_t)pos0;
    uint64_t sok = kv_scales_offset(dt, L->n_kv_head, L->head_dim, L->page_tokens);
    uint64_t sov = kv_scales_offset(dt, L->n_kv_head, L->head_dim_v, L->page_tokens);
    uint32_t nkv = (uint32_t)L->n_kv_head, nh = (uint32_t)n_head, dk = (uint32_t)L->head_dim;
    uint32_t dv = (uint32_t)L->head_dim_v, P = (uint32_t)L->page_tokens;
    uint32_t rd = cs ? (uint32_t)rope_dim : 0, nx = neox != 0, dtype = (uint32_t)dt;
    CUdeviceptr kd = L->k, vd = L->v;
    void *params[] = {&kd, &vd, &q, &k, &v, &block_table, &cs, &pbk, &pbv, &sok, &sov, &p0,
                      &nkv, &nh, &dk, &dv, &P, &rd, &nx, &dtype, &pos_dev};
    return cuda_launch(d, K_ROPE_KV_STORE, (unsigned)n, nkv + nh, 1, 32, 1, 1, 0, params, e);
}

int cuda_rope_kv_store(cuda_dev *d, const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                       int64_t pos0, int n, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v,
                       CUdeviceptr cs, int n_head, int rope_dim, int neox, terr *e) {
    return rope_kv_store(d, L, dt, block_table, pos0, 0, n, q, k, v, cs, n_head, rope_dim, neox, e);
}

int cuda_rope_kv_store_step(cuda_dev *d, const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                            CUdeviceptr pos_dev, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v,
                            CUdeviceptr cs, int n_head, int rope_dim, int neox, terr *e) {
    if (!pos_dev || pos_dev % 8)
        return terr_set(e, TOME_ERESOURCE, "rope_kv_store_step: position address 0x%llx (8-byte aligned needed)",
                        pos_dev);
    return rope_kv_store(d, L, dt, block_table, 0, pos_dev, 1, q, k, v, cs, n_head, rope_dim, neox, e);
}

size_t cuda_flash_decode_scratch_bytes(int n_head, int head_dim_v, int n_splits) {
    if (n_head <= 0 || head_dim_v <= 0 || n_splits <= 0) return 0;
    return (size_t)n_splits * n_head * (2 + (size_t)head_dim_v) * sizeof(float);
}

/* Memory-bound kernel: several resident blocks per SM hide the load latency (45 KiB of shared
 * memory each allows 5 per H100/H200 SM); splits below 64 keys cost more in merge traffic
 * and per-block setup than they hide. */
int cuda_flash_decode_splits(const cuda_dev *d, const cuda_kv_layer *L, int64_t n_keys) {
    int64_t blocks = (int64_t)(d && d->n_sm > 0 ? d->n_sm : 1) * 4;
    int64_t s = (blocks + L->n_kv_head - 1) / L->n_kv_head;
    int64_t cap = (n_keys + 63) / 64;
    if (s > cap) s = cap;
    if (s < 1) s = 1;
    return (int)(s < 65535 ? s : 65535);
}

/* The shape checks both flash-decode launchers share; *rep gets the GQA group size. */
static int check_flash(const cuda_kv_layer *L, kv_dtype dt, int n_head, int *rep, terr *e) {
    int rc = check_kv_pages("flash_decode", L, dt, e);
    if (rc) return rc;
    *rep = n_head > 0 && n_head % L->n_kv_head == 0 ? n_head / L->n_kv_head : 0;
    if (L->head_dim % 8 || L->head_dim > 256 || L->head_dim_v % 8 || L->head_dim_v > 256 ||
        *rep < 1 || *rep > 32 || *rep * L->head_dim > 1024 || *rep * L->head_dim_v > 1024)
        return terr_set(e, TOME_ERESOURCE,
                        "flash_decode: unsupported shape: n_head %d over %d kv heads, dims %d/%d "
                        "(multiples of 8, <= 256, group size x dim <= 1024)",
                        n_head, L->n_kv_head, L->head_dim, L->head_dim_v);
    return 0;
}

/* Launches tome_flash_decode over S splits (by-value key ranges, or step != 0: read from the
 * device) and the merge. */
static int flash_launch(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_head, int rep,
                        const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                        uint64_t nsink, uint64_t winlo, uint64_t nv, uint64_t ch, CUdeviceptr step,
                        float scale, unsigned S, CUdeviceptr scratch, terr *e) {
    uint64_t pbk = L->page_bytes_k, pbv = L->page_bytes_v;
    uint64_t sok = kv_scales_offset(dt, L->n_kv_head, L->head_dim, L->page_tokens);
    uint64_t sov = kv_scales_offset(dt, L->n_kv_head, L->head_dim_v, L->page_tokens);
    uint32_t nh = (uint32_t)n_head, r32 = (uint32_t)rep, P = (uint32_t)L->page_tokens;
    uint32_t dk = (uint32_t)L->head_dim, dv = (uint32_t)L->head_dim_v, dtype = (uint32_t)dt;
    CUdeviceptr pm = scratch, pl = scratch + (CUdeviceptr)S * n_head * 4;
    CUdeviceptr pacc = scratch + (CUdeviceptr)2 * S * n_head * 4;
    CUdeviceptr kd = L->k, vd = L->v;
    void *params[] = {&pm, &pl, &pacc, &q, &kd, &vd, &block_table, &pbk, &pbv, &sok, &sov,
                      &nsink, &winlo, &nv, &ch, &scale, &nh, &r32, &P, &dk, &dv, &dtype, &step};
    int rc = cuda_launch(d, d->flash_v1 ? K_FLASH_DECODE_V1 : K_FLASH_DECODE, (unsigned)L->n_kv_head, S, 1, 128, 1,
                         1, 0, params, e);
    if (rc) return rc;
    return cuda_lse_merge(d, out, pm, pl, pacc, (int)S, n_head, L->head_dim_v, e);
}

int cuda_flash_decode_step(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_head,
                           const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table,
                           CUdeviceptr step, float scale, int n_splits, CUdeviceptr scratch,
                           size_t scratch_bytes, terr *e) {
    int rep = 0, rc = check_flash(L, dt, n_head, &rep, e);
    if (rc) return rc;
    if (!out || !q || !block_table || !scratch || !step || step % 8 || n_splits < 1 ||
        n_splits > 65535 || (int64_t)n_splits * n_head > INT32_MAX / 2)
        return terr_set(e, TOME_ERESOURCE, "flash_decode_step: %d splits, step at 0x%llx", n_splits, step);
    size_t need = cuda_flash_decode_scratch_bytes(n_head, L->head_dim_v, n_splits);
    if (scratch_bytes < need)
        return terr_set(e, TOME_ERESOURCE, "flash_decode: scratch of %zu bytes, %zu needed",
                        scratch_bytes, need);
    return flash_launch(d, out, q, n_head, rep, L, dt, block_table, 0, 0, 0, 0, step, scale,
                        (unsigned)n_splits, scratch, e);
}

int cuda_flash_decode(cuda_dev *d, CUdeviceptr out, CUdeviceptr q, int n_head,
                      const cuda_kv_layer *L, kv_dtype dt, CUdeviceptr block_table, int64_t kv_len,
                      int64_t q_pos, float scale, int64_t window, int64_t sinks, int n_splits,
                      CUdeviceptr scratch, size_t scratch_bytes, terr *e) {
    int rep = 0, rc = check_flash(L, dt, n_head, &rep, e);
    if (rc) return rc;
    if (!out || !q || !block_table || !scratch || kv_len < 1 || q_pos < 0 || q_pos >= kv_len ||
        window < 0 || sinks < 0 || n_splits < 1 || n_splits > 65535 ||
        (int64_t)n_splits * n_head > INT32_MAX / 2)
        return terr_set(e, TOME_ERESOURCE,
                        "flash_decode: kv_len %lld, q_pos %lld, window %lld, sinks %lld, %d splits",
                        (long long)kv_len, (long long)q_pos, (long long)window, (long long)sinks,
                        n_splits);
    size_t need = cuda_flash_decode_scratch_bytes(n_head, L->head_dim_v, n_splits);
    if (scratch_bytes < need)
        return terr_set(e, TOME_ERESOURCE, "flash_decode: scratch of %zu bytes, %zu needed",
                        scratch_bytes, need);
    /* the visible keys, as kvcache.c's `visible`: sinks [0, se) and the window [lo, hi) */
    int64_t hi = q_pos + 1, lo = 0, se = 0;
    if (window > 0) {
        lo = q_pos - window + 1 > 0 ? q_pos - window + 1 : 0;
        se = sinks < lo ? sinks : lo;
    }
    int64_t nvis = se + (hi - lo);
    /* chunks of whole 32-key tiles; trailing splits past the keys are not launched */
    int64_t chunk = (nvis + n_splits - 1) / n_splits;
    chunk = (chunk + 31) / 32 * 32;
    unsigned S = (unsigned)((nvis + chunk - 1) / chunk);
    return flash_launch(d, out, q, n_head, rep, L, dt, block_table, (uint64_t)se, (uint64_t)lo,
                        (uint64_t)nvis, (uint64_t)chunk, 0, scale, S, scratch, e);
}

int cuda_lse_merge(cuda_dev *d, CUdeviceptr out, CUdeviceptr part_m, CUdeviceptr part_l,
                   CUdeviceptr part_acc, int n_parts, int n_head, int dv, terr *e) {
    /* the kernel forms (part * n_head + head) * dv + d in 32 bits before widening */
    if (!out || !part_m || !part_l || !part_acc || n_parts < 1 || n_head < 1 || dv < 1 ||
        (int64_t)n_parts * n_head > INT32_MAX || (int64_t)n_head * dv > INT32_MAX)
        return terr_set(e, TOME_ERESOURCE, "lse_merge: %d parts, %d heads, dv %d", n_parts,
                        n_head, dv);
    uint32_t np = (uint32_t)n_parts, nh = (uint32_t)n_head, d32 = (uint32_t)dv;
    void *params[] = {&out, &part_m, &part_l, &part_acc, &np, &nh, &d32};
    return cuda_launch(d, K_LSE_MERGE, nh, 1, 1, 128, 1, 1, 0, params, e);
}

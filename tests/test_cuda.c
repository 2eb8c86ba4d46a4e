/* test_cuda.c — the CUDA backend's plumbing. Without a GPU (every CI machine) these check
 * that the PTX is embedded, that every kernel the driver layer resolves at start-up exists
 * in it, and that a missing driver is a clean TOME_ERESOURCE; the GPU-vs-CPU op checks run
 * when a GPU is present (tests/gpu.sh). */
#include "test.h"

#include "cuda/driver.h"
#include "cuda/ptx_blobs.h"

TEST(cuda_ptx_embedded_and_kernels_present) {
    REQUIREF(tome_ptx_blob_count >= 2, "only %d PTX modules embedded", tome_ptx_blob_count);
    for (int i = 0; i < tome_ptx_blob_count; i++) {
        const tome_ptx_blob *b = &tome_ptx_blobs[i];
        CHECKF(strstr(b->ptx, ".entry") != NULL, "ptx/%s.ptx has no entry", b->name);
        CHECKF(strstr(b->ptx, ".version") != NULL, "ptx/%s.ptx has no .version", b->name);
        if (tome_ptx_assembled)
            CHECKF(b->cubin_sm80_len > 0 && b->cubin_sm90_len > 0, "ptx/%s.ptx has no cubins", b->name);
    }
    /* every kernel of the table is a .visible .entry of some module */
    for (int k = 0; k < K_COUNT; k++) {
        char pat[128];
        snprintf(pat, sizeof pat, ".visible .entry %s(", cuda_kernel_name((cuda_kernel_id)k));
        int found = 0;
        for (int i = 0; i < tome_ptx_blob_count; i++) found |= strstr(tome_ptx_blobs[i].ptx, pat) != NULL;
        CHECKF(found, "kernel %s is in no PTX module", cuda_kernel_name((cuda_kernel_id)k));
    }
}

TEST(cuda_absent_driver_is_a_clean_error) {
    char why[256] = "";
    int n = cuda_device_count(why, sizeof why);
    if (n > 0) SKIP("a GPU is present (%d); this test is for machines without one", n);
    CHECK(why[0] != 0);
    cuda_dev *d = (cuda_dev *)1;
    terr e = {0};
    CHECK(cuda_open(&d, 0, &e) == TOME_ERESOURCE);
    CHECK(d == NULL);
    CHECK(e.msg[0] != 0);
}

/* ---- GPU vs CPU op checks (run by tests/gpu.sh on a machine with a GPU) ------------------ */

#include "cuda/ops.h"
#include "gpu_test.h"

/* Device buffer of n floats, poisoned with 0xFF bytes (NaN) so unwritten outputs show. */
static CUdeviceptr dev_floats(cuda_dev *d, const float *host, int64_t n, terr *e) {
    CUdeviceptr p = 0;
    if (cuda_alloc(d, &p, (size_t)n * 4, e)) return 0;
    if (host) cuda_upload(d, p, host, (size_t)n * 4, e);
    else d->api.cuMemsetD8Async(p, 0xFF, (size_t)n * 4, d->stream);
    return p;
}

/* Relative error max |a-b| / max(|b|, floor) over n values; NaN counts as infinite. */
static double max_rel_err(const float *a, const float *b, int64_t n, double floor_) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double den = fabs((double)b[i]) > floor_ ? fabs((double)b[i]) : floor_;
        double err = fabs((double)a[i] - (double)b[i]) / den;
        if (!(err == err)) return INFINITY;
        if (err > worst) worst = err;
    }
    return worst;
}

TEST(gpu_op_add_swiglu) {
    GPU_OR_SKIP(d);
    const int64_t sizes[] = {1, 1000, 4097, 65539};
    for (size_t s = 0; s < TOME_ARRAY_LEN(sizes); s++) {
        int64_t n = sizes[s];
        float *a = malloc(n * 4), *b = malloc(n * 4), *got = malloc(n * 4), *want = malloc(n * 4);
        gpu_fill_random(a, n, 1 + s, 8.0f);
        gpu_fill_random(b, n, 100 + s, 3.0f);
        terr e = {0};
        CUdeviceptr da = dev_floats(d, a, n, &e), db = dev_floats(d, b, n, &e), dout = dev_floats(d, NULL, n, &e);
        REQUIREF(da && db && dout, "%s", e.msg);
        /* add: correctly rounded on both sides, so exact */
        REQUIREF(cuda_add_f32(d, dout, da, db, n, &e) == 0, "%s", e.msg);
        REQUIREF(cuda_download(d, got, dout, n * 4, &e) == 0, "%s", e.msg);
        for (int64_t i = 0; i < n; i++) want[i] = a[i] + b[i];
        CHECKF(max_rel_err(got, want, n, 1e-30) == 0, "add n=%lld differs", (long long)n);
        /* swiglu: the exponent argument -x*log2(e) is rounded (|x| <= 8: ~7e-7 relative in
         * e^-x), ex2.approx adds 2 ulp, the division and product 1 ulp each: 3e-6 relative,
         * with a 1e-6 absolute floor */
        REQUIREF(cuda_swiglu_f32(d, dout, da, db, n, &e) == 0, "%s", e.msg);
        REQUIREF(cuda_download(d, got, dout, n * 4, &e) == 0, "%s", e.msg);
        for (int64_t i = 0; i < n; i++) want[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
        double err = max_rel_err(got, want, n, 1e-6);
        CHECKF(err <= 3e-6, "swiglu n=%lld max rel err %.3g > 3e-6", (long long)n, err);
        cuda_free(d, da); cuda_free(d, db); cuda_free(d, dout);
        free(a); free(b); free(got); free(want);
    }
    cuda_close(d);
}

TEST(gpu_op_rmsnorm) {
    GPU_OR_SKIP(d);
    const int shapes[][2] = {{1, 13}, {3, 4096}, {7, 14336}, {5, 100}};
    for (size_t s = 0; s < TOME_ARRAY_LEN(shapes); s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        int64_t n = (int64_t)rows * cols;
        float *x = malloc(n * 4), *w = malloc(cols * 4), *got = malloc(n * 4), *want = malloc(n * 4);
        gpu_fill_random(x, n, 7 + s, 2.0f);
        gpu_fill_random(w, cols, 70 + s, 1.0f);
        /* the CPU reference's numerics: squares summed in double, 1/sqrtf(mean + eps) */
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int c = 0; c < cols; c++) ss += (double)x[r * cols + c] * x[r * cols + c];
            float scale = 1.0f / sqrtf((float)(ss / cols) + 1e-5f);
            for (int c = 0; c < cols; c++) want[r * cols + c] = x[r * cols + c] * scale * w[c];
        }
        terr e = {0};
        CUdeviceptr dx = dev_floats(d, x, n, &e), dw = dev_floats(d, w, cols, &e), dout = dev_floats(d, NULL, n, &e);
        REQUIREF(dx && dw && dout, "%s", e.msg);
        REQUIREF(cuda_rmsnorm_f32(d, dout, dx, dw, rows, cols, 1e-5f, &e) == 0, "%s", e.msg);
        REQUIREF(cuda_download(d, got, dout, n * 4, &e) == 0, "%s", e.msg);
        /* f32 tree sum vs double sum: the mean differs by ~cols * 2^-24 relative at worst */
        double tol = 4e-7 * (1 + cols / 256.0);
        double err = max_rel_err(got, want, n, 1e-6);
        CHECKF(err <= tol, "rmsnorm %dx%d max rel err %.3g > %.3g", rows, cols, err, tol);
        cuda_free(d, dx); cuda_free(d, dw); cuda_free(d, dout);
        free(x); free(w); free(got); free(want);
    }
    cuda_close(d);
}

/* ---- model ops (issue #8): matmul, embed, rope, kv store, attention, argmax --------------- */

#include "kvcache.h"
#include "quant.h"
#include "rope.h"

/* Device copy of n bytes (NULL host: poisoned with 0xFF). 0 on failure (e filled). */
static CUdeviceptr dev_bytes(cuda_dev *d, const void *host, size_t n, terr *e) {
    CUdeviceptr p = 0;
    if (cuda_alloc(d, &p, n, e)) return 0;
    if (host ? cuda_upload(d, p, host, n, e) != 0
             : d->api.cuMemsetD8Async(p, 0xFF, n, d->stream) != 0) {
        cuda_free(d, p);
        return 0;
    }
    return p;
}

static const uint32_t k_mm_types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                                      GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};

/* A random rows x cols weight of `type` (tq_quantize of U(-1,1) rows) and its dequantised
 * floats. Returns the GGUF bytes (malloc'd); *deq gets rows*cols floats. */
static uint8_t *make_weight(uint32_t type, int64_t rows, int64_t cols, uint64_t seed, float **deq) {
    size_t rb = ggml_row_size(type, cols);
    uint8_t *w = malloc(rb * rows);
    float *f = malloc(sizeof(float) * rows * cols);
    gpu_fill_random(f, rows * cols, seed, 1.0f);
    for (int64_t r = 0; r < rows; r++) tq_quantize(type, f + r * cols, w + r * rb, cols);
    for (int64_t r = 0; r < rows; r++) tq_dequantize(type, w + r * rb, f + r * cols, cols);
    *deq = f;
    return w;
}

/* Columns per test shape: one block, three blocks, 4096 + 256 (float types: 7, 99, 4352). */
static void mm_cols(uint32_t type, int64_t cols[3]) {
    int64_t blk = ggml_type_get(type)->blck;
    if (blk == 1) cols[0] = 7, cols[1] = 99;
    else cols[0] = blk, cols[1] = 3 * blk;
    cols[2] = 4096 + 256;
}

TEST(gpu_op_matmul) {
    GPU_OR_SKIP(d);
    const int64_t rows_list[] = {1, 3, 257};
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(k_mm_types); ti++) {
        uint32_t type = k_mm_types[ti];
        int64_t cols_list[3];
        mm_cols(type, cols_list);
        for (int ri = 0; ri < 3; ri++)
            for (int ci = 0; ci < 3; ci++) {
                int64_t rows = rows_list[ri], cols = cols_list[ci];
                int n_tok = ci == 1 ? 3 : 1; /* the batched path on the middle shape */
                int use_bias = ri == 1;
                float *wf;
                uint8_t *wq = make_weight(type, rows, cols, 1000 + ti * 16 + ri * 4 + ci, &wf);
                float *x = malloc(sizeof(float) * n_tok * cols), *bias = malloc(sizeof(float) * rows);
                float *got = malloc(sizeof(float) * n_tok * rows);
                gpu_fill_random(x, n_tok * cols, 2000 + ti * 16 + ri * 4 + ci, 2.0f);
                gpu_fill_random(bias, rows, 3000 + ri, 1.0f);
                terr e = {0};
                cuda_weight w = {.type = type, .rows = rows, .cols = cols,
                                 .row_bytes = ggml_row_size(type, cols)};
                w.data = dev_bytes(d, wq, w.row_bytes * rows, &e);
                CUdeviceptr dx = dev_floats(d, x, n_tok * cols, &e), dy = dev_floats(d, NULL, n_tok * rows, &e);
                CUdeviceptr db = use_bias ? dev_floats(d, bias, rows, &e) : 0;
                REQUIREF(w.data && dx && dy && (db || !use_bias), "%s", e.msg);
                REQUIREF(cuda_matmul(d, dy, &w, db, dx, n_tok, &e) == 0, "%s", e.msg);
                REQUIREF(cuda_download(d, got, dy, sizeof(float) * n_tok * rows, &e) == 0, "%s", e.msg);
                /* Reference: the dequantised row (bit-identical to the kernel's weights) dotted
                 * with x in double. The kernel sums in f32: each lane ceil(cols/32) fma terms,
                 * then 5 butterfly adds and the bias add, so |err| <= (cols/32 + 8) 2^-24
                 * (sum |w x| + |bias|). 4352 columns: 8.6e-6 relative to sum |w x|. */
                double tol = ((double)(cols + 31) / 32 + 8) * 0x1p-24, worst = 0;
                for (int t = 0; t < n_tok; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double s = use_bias ? bias[r] : 0, mag = use_bias ? fabs(bias[r]) : 0;
                        for (int64_t c = 0; c < cols; c++) {
                            double p = (double)wf[r * cols + c] * x[t * cols + c];
                            s += p, mag += fabs(p);
                        }
                        double err = fabs(got[t * rows + r] - s) / (mag > 1e-30 ? mag : 1e-30);
                        if (!(err == err)) err = INFINITY;
                        if (err > worst) worst = err;
                    }
                CHECKF(worst <= tol, "matmul type %u %lldx%lld n_tok %d: err %.3g > %.3g of sum|wx|", type,
                       (long long)rows, (long long)cols, n_tok, worst, tol);
                cuda_free(d, w.data); cuda_free(d, dx); cuda_free(d, dy); cuda_free(d, db);
                free(wq); free(wf); free(x); free(bias); free(got);
            }
    }
    cuda_close(d);
}

TEST(gpu_op_embed) {
    GPU_OR_SKIP(d);
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(k_mm_types); ti++) {
        uint32_t type = k_mm_types[ti];
        int64_t cols_list[3];
        mm_cols(type, cols_list);
        for (int ci = 0; ci < 3; ci += 2) {
            int64_t rows = 37, cols = cols_list[ci];
            float *wf;
            uint8_t *wq = make_weight(type, rows, cols, 5000 + ti * 4 + ci, &wf);
            const int32_t ids[] = {36, 0, 5, 5, 17, 37, -1}; /* the last two are out of range */
            const int n = (int)TOME_ARRAY_LEN(ids);
            float *got = malloc(sizeof(float) * n * cols);
            terr e = {0};
            cuda_weight w = {.type = type, .rows = rows, .cols = cols, .row_bytes = ggml_row_size(type, cols)};
            w.data = dev_bytes(d, wq, w.row_bytes * rows, &e);
            CUdeviceptr dids = dev_bytes(d, ids, sizeof ids, &e), dout = dev_floats(d, NULL, n * cols, &e);
            REQUIREF(w.data && dids && dout, "%s", e.msg);
            REQUIREF(cuda_embed(d, dout, &w, dids, n, &e) == 0, "%s", e.msg);
            REQUIREF(cuda_download(d, got, dout, sizeof(float) * n * cols, &e) == 0, "%s", e.msg);
            /* the kernel dequantises with tq_dequantize's exact float operations: bit-identical */
            int64_t bad = 0, nan_ok = 0;
            for (int i = 0; i < n; i++)
                for (int64_t c = 0; c < cols; c++) {
                    float g = got[i * cols + c];
                    if (ids[i] < 0 || ids[i] >= rows) nan_ok += g != g;
                    else bad += memcmp(&g, &wf[ids[i] * cols + c], 4) != 0;
                }
            CHECKF(bad == 0, "embed type %u cols %lld: %lld values differ from tq_dequantize", type,
                   (long long)cols, (long long)bad);
            CHECKF(nan_ok == 2 * cols, "embed type %u: out-of-range ids gave %lld NaN of %lld", type,
                   (long long)nan_ok, (long long)(2 * cols));
            cuda_free(d, w.data); cuda_free(d, dids); cuda_free(d, dout);
            free(wq); free(wf); free(got);
        }
    }
    cuda_close(d);
}

TEST(gpu_op_rope) {
    GPU_OR_SKIP(d);
    const int64_t pos[] = {0, 1, 1000, 70001, 1048576};
    const int n = (int)TOME_ARRAY_LEN(pos), n_heads = 5, head_dim = 128;
    for (int rd = 64; rd <= 128; rd += 64)
        for (int neox = 0; neox <= 1; neox++) {
            rope_config cfg;
            rope_config_init(&cfg, rd, 500000.0);
            rope_table tab;
            terr e = {0};
            REQUIREF(rope_table_build(&tab, &cfg, 4096, &e) == 0, "%s", e.msg);
            int64_t nx = (int64_t)n * n_heads * head_dim;
            float *x = malloc(sizeof(float) * nx), *want = malloc(sizeof(float) * nx);
            float *got = malloc(sizeof(float) * nx), *cs = malloc(sizeof(float) * n * rd);
            gpu_fill_random(x, nx, 77 + rd + neox, 3.0f);
            memcpy(want, x, sizeof(float) * nx);
            for (int i = 0; i < n; i++) {
                rope_cos_sin(&tab, pos[i], cs + (size_t)i * rd);
                rope_apply_cs(cs + (size_t)i * rd, rd, want + (size_t)i * n_heads * head_dim, n_heads,
                              head_dim, neox);
            }
            CUdeviceptr dx = dev_floats(d, x, nx, &e), dcs = dev_floats(d, cs, (int64_t)n * rd, &e);
            REQUIREF(dx && dcs, "%s", e.msg);
            REQUIREF(cuda_rope(d, dx, n, n_heads, head_dim, rd, neox, dcs, &e) == 0, "%s", e.msg);
            REQUIREF(cuda_download(d, got, dx, sizeof(float) * nx, &e) == 0, "%s", e.msg);
            /* The kernel does rope_apply_cs's operations (two products, one difference or sum,
             * none fused), so the results should be identical; the 2^-20 absolute allowance
             * (|a| + |b| <= 6.02: about one ulp of the result) only covers a CPU build that
             * fuses a product into the sum. A wrong pair or cos/sin index errs by ~1. */
            double err = 0;
            for (int64_t i = 0; i < nx; i++) err = fmax(err, fabs((double)got[i] - want[i]));
            if (err != err) err = INFINITY;
            CHECKF(err <= 0x1p-20, "rope rd %d neox %d: max abs err %.3g", rd, neox, err);
            /* dims past rope_dim pass through untouched */
            int64_t touched = 0;
            for (int64_t i = 0; i < nx; i++) touched += i % head_dim >= rd && got[i] != x[i];
            CHECKF(touched == 0, "rope rd %d changed %lld values past rope_dim", rd, (long long)touched);
            cuda_free(d, dx); cuda_free(d, dcs);
            free(x); free(want); free(got); free(cs);
        }
    cuda_close(d);
}

/* A CPU f16 cache with one sequence of len tokens (after a freed decoy sequence, so its page
 * ids are not 0, 1, 2 ...), random K/V stored in layer `layer`. */
static int kv_fixture(kv_cache *c, int *seq, int H, int D, int Dv, int P, int64_t len, uint64_t seed,
                      float **k, float **v) {
    kv_config cfg = {.n_layer = 2, .n_kv_head = H, .head_dim = D, .head_dim_v = Dv, .page_tokens = P,
                     .dtype = KV_F16, .n_pages = (len + P - 1) / P + 3};
    terr e = {0};
    int decoy;
    if (kv_open(c, &cfg, &e) || kv_seq_new(c, &decoy, &e) || kv_seq_append(c, decoy, 2 * P, &e) ||
        kv_seq_new(c, seq, &e) || kv_seq_append(c, *seq, len, &e))
        return 0;
    kv_seq_free(c, decoy);
    *k = malloc(sizeof(float) * len * H * D);
    *v = malloc(sizeof(float) * len * H * Dv);
    gpu_fill_random(*k, len * H * D, seed, 1.0f);
    gpu_fill_random(*v, len * H * Dv, seed + 1, 1.0f);
    return kv_store(c, *seq, 1, 0, len, *k, *v) == 0;
}

TEST(gpu_op_kv_store_f16) {
    GPU_OR_SKIP(d);
    const int H = 3, D = 128, Dv = 64, P = 16;
    const int64_t len = 37; /* ragged last page */
    kv_cache c;
    int seq;
    float *k, *v;
    REQUIRE(kv_fixture(&c, &seq, H, D, Dv, P, len, 11, &k, &v));
    /* rounding corner cases in K: ties to even (1 + 2^-11 -> 1, 1 + 3*2^-11 -> 1 + 2^-9), the
     * overflow threshold (65519.99 -> 65504, 65520 -> inf), subnormals, -0 */
    const float corner[] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.99f, 65520.0f, -1e-6f,
                            0x1p-25f, 0x1.8p-24f, -0.0f, 3e-8f, -70000.0f};
    memcpy(k + 5 * H * D + 7, corner, sizeof corner);
    REQUIRE(kv_store(&c, seq, 1, 0, len, k, v) == 0);
    int64_t np;
    const int32_t *pages = kv_seq_pages(&c, seq, &np);
    size_t bytes_k = c.page_bytes_k * c.cfg.n_pages, bytes_v = c.page_bytes_v * c.cfg.n_pages;
    terr e = {0};
    CUdeviceptr dk = 0, dv = 0;
    REQUIREF(cuda_alloc(d, &dk, bytes_k, &e) == 0 && cuda_alloc(d, &dv, bytes_v, &e) == 0, "%s", e.msg);
    d->api.cuMemsetD8Async(dk, 0, bytes_k, d->stream); /* the CPU pool starts zeroed too */
    d->api.cuMemsetD8Async(dv, 0, bytes_v, d->stream);
    CUdeviceptr dbt = dev_bytes(d, pages, sizeof(int32_t) * np, &e);
    CUdeviceptr dsk = dev_floats(d, k, len * H * D, &e), dsv = dev_floats(d, v, len * H * Dv, &e);
    REQUIREF(dbt && dsk && dsv, "%s", e.msg);
    cuda_kv_layer L = {.k = dk, .v = dv, .page_bytes_k = c.page_bytes_k, .page_bytes_v = c.page_bytes_v,
                       .page_tokens = P, .n_kv_head = H, .head_dim = D, .head_dim_v = Dv};
    /* two calls, the second starting mid-page */
    REQUIREF(cuda_kv_store_f16(d, &L, dbt, 0, 20, dsk, dsv, &e) == 0, "%s", e.msg);
    REQUIREF(cuda_kv_store_f16(d, &L, dbt, 20, (int)len - 20, dsk + (CUdeviceptr)20 * H * D * 4,
                               dsv + (CUdeviceptr)20 * H * Dv * 4, &e) == 0, "%s", e.msg);
    uint8_t *gk = malloc(bytes_k), *gv = malloc(bytes_v);
    REQUIREF(cuda_download(d, gk, dk, bytes_k, &e) == 0 && cuda_download(d, gv, dv, bytes_v, &e) == 0, "%s", e.msg);
    /* byte-identical pools: cvt.rn.f16.f32 and tf32_to_f16 both round to nearest even */
    size_t diff_k = 0, diff_v = 0;
    for (size_t i = 0; i < bytes_k; i++) diff_k += gk[i] != c.k[1][i];
    for (size_t i = 0; i < bytes_v; i++) diff_v += gv[i] != c.v[1][i];
    CHECKF(diff_k == 0 && diff_v == 0, "kv pages differ: %zu K bytes, %zu V bytes", diff_k, diff_v);
    cuda_free(d, dk); cuda_free(d, dv); cuda_free(d, dbt); cuda_free(d, dsk); cuda_free(d, dsv);
    free(gk); free(gv); free(k); free(v);
    kv_close(&c);
    cuda_close(d);
}

TEST(gpu_op_attention_f16) {
    GPU_OR_SKIP(d);
    const int H = 2, D = 128, P = 16;
    const int64_t lens[] = {1, 113, 4097}; /* 113 = 7 pages + 1, 4097 = 256 pages + 1 */
    const int reps[] = {1, 4, 8};
    for (int li = 0; li < 3; li++) {
        int64_t len = lens[li];
        kv_cache c;
        int seq;
        float *k, *v;
        REQUIRE(kv_fixture(&c, &seq, H, D, D, P, len, 300 + li, &k, &v));
        int64_t np;
        const int32_t *pages = kv_seq_pages(&c, seq, &np);
        size_t bytes_k = c.page_bytes_k * c.cfg.n_pages, bytes_v = c.page_bytes_v * c.cfg.n_pages;
        terr e = {0};
        CUdeviceptr dk = dev_bytes(d, c.k[1], bytes_k, &e), dv = dev_bytes(d, c.v[1], bytes_v, &e);
        CUdeviceptr dbt = dev_bytes(d, pages, sizeof(int32_t) * np, &e);
        REQUIREF(dk && dv && dbt, "%s", e.msg);
        cuda_kv_layer L = {.k = dk, .v = dv, .page_bytes_k = c.page_bytes_k, .page_bytes_v = c.page_bytes_v,
                           .page_tokens = P, .n_kv_head = H, .head_dim = D, .head_dim_v = D};
        /* masks: plain causal; a window with sinks (only meaningful past the window) */
        const int64_t masks[][2] = {{0, 0}, {50, 3}};
        for (int ri = 0; ri < 3; ri++)
            for (int mi = 0; mi < 2; mi++) {
                int n_head = H * reps[ri], n_q = len < 3 ? (int)len : 3;
                int64_t pos0 = len - n_q;
                size_t nq = (size_t)n_q * n_head * D;
                float *q = malloc(sizeof(float) * nq), *want = malloc(sizeof(float) * nq);
                float *got = malloc(sizeof(float) * nq);
                gpu_fill_random(q, nq, 400 + li * 8 + ri * 2 + mi, 4.0f); /* logits spread over ~+-10 */
                kv_attn a = {.n_head = n_head, .scale = 1.0f / sqrtf((float)D), .window = masks[mi][0],
                             .sinks = masks[mi][1]};
                REQUIRE(kv_attend_block(&c, seq, 1, &a, q, n_q, pos0, want) == 0);
                CUdeviceptr dq = dev_floats(d, q, nq, &e), dout = dev_floats(d, NULL, nq, &e);
                REQUIREF(dq && dout, "%s", e.msg);
                REQUIREF(cuda_attention_f16(d, dout, dq, n_q, n_head, &L, dbt, pos0, a.scale,
                                            (int)a.window, (int)a.sinks, &e) == 0, "%s", e.msg);
                REQUIREF(cuda_download(d, got, dout, sizeof(float) * nq, &e) == 0, "%s", e.msg);
                /* Outputs are convex combinations of |v| <= 1.01. Both sides sum in f32 (the
                 * GPU in key order, the CPU in tiles) and exponentiate differently (expf vs
                 * ex2.approx of x log2 e, ~1e-6 relative for |x| <= 20): observed errors
                 * should be ~1e-6; 2e-5 absolute still flags one key dropped out of 4097
                 * (~2.4e-4 typical change). */
                double err = 0;
                for (size_t i = 0; i < nq; i++) err = fmax(err, fabs((double)got[i] - want[i]));
                if (err != err) err = INFINITY;
                CHECKF(err <= 2e-5, "attention len %lld rep %d window %lld sinks %lld: max abs err %.3g",
                       (long long)len, reps[ri], (long long)a.window, (long long)a.sinks, err);
                cuda_free(d, dq); cuda_free(d, dout);
                free(q); free(want); free(got);
            }
        cuda_free(d, dk); cuda_free(d, dv); cuda_free(d, dbt);
        free(k); free(v);
        kv_close(&c);
    }
    cuda_close(d);
}

TEST(gpu_op_argmax) {
    GPU_OR_SKIP(d);
    const int64_t sizes[] = {1, 255, 1000, 151936};
    for (size_t s = 0; s < TOME_ARRAY_LEN(sizes); s++) {
        int64_t n = sizes[s];
        float *x = malloc(sizeof(float) * n);
        gpu_fill_random(x, n, 900 + s, 10.0f);
        if (n > 100) { /* a tie for the maximum (the lower index must win) and a NaN */
            x[n - 3] = 20.0f;
            x[n / 3] = 20.0f;
            x[n / 2] = NAN;
        }
        int64_t want = 0;
        for (int64_t i = 1; i < n; i++)
            if (x[i] > x[want]) want = i; /* NaN never compares greater */
        terr e = {0};
        CUdeviceptr dx = dev_floats(d, x, n, &e), dout = dev_bytes(d, NULL, 4, &e);
        REQUIREF(dx && dout, "%s", e.msg);
        REQUIREF(cuda_argmax_f32(d, dout, dx, n, &e) == 0, "%s", e.msg);
        int32_t got = -1;
        REQUIREF(cuda_download(d, &got, dout, 4, &e) == 0, "%s", e.msg);
        CHECKF(got == want, "argmax n=%lld: got %d, want %lld", (long long)n, got, (long long)want);
        cuda_free(d, dx); cuda_free(d, dout);
        free(x);
    }
    cuda_close(d);
}

/* The launchers' precondition checks run before any driver call, so they are testable without
 * a GPU: a zeroed cuda_dev (no kernels loaded) must give TOME_ERESOURCE naming the op for bad
 * arguments, and "kernel not loaded" (never a crash) for good ones. */
TEST(cuda_model_op_preconditions) {
    cuda_dev *d = calloc(1, sizeof *d);
    REQUIRE(d);
    terr e = {0};
    const CUdeviceptr P = 0x10000; /* never dereferenced */
    cuda_weight w = {.data = P, .type = GGML_TYPE_Q4_K, .rows = 3, .cols = 512,
                     .row_bytes = ggml_row_size(GGML_TYPE_Q4_K, 512)};
#define EXPECT_FAIL(call, word)                                                                \
    do {                                                                                       \
        e.msg[0] = 0;                                                                          \
        CHECKF((call) == TOME_ERESOURCE && strstr(e.msg, word), "%s: '%s'", #call, e.msg);     \
    } while (0)
    /* good arguments reach the launch, which finds no kernel */
    EXPECT_FAIL(cuda_matmul(d, P, &w, 0, P, 2, &e), "not loaded");
    cuda_weight bad = w;
    bad.cols = 500; /* not a multiple of 256 */
    EXPECT_FAIL(cuda_matmul(d, P, &bad, 0, P, 1, &e), "matmul");
    bad = w, bad.row_bytes += 2;
    EXPECT_FAIL(cuda_matmul(d, P, &bad, 0, P, 1, &e), "row_bytes");
    bad = w, bad.type = GGML_TYPE_Q4_1; /* supported on the CPU, not by these kernels */
    EXPECT_FAIL(cuda_embed(d, P, &bad, P, 4, &e), "unsupported");
    EXPECT_FAIL(cuda_matmul(d, P, &w, 0, P, 0, &e), "n_tok");
    EXPECT_FAIL(cuda_embed(d, P, &w, P, 4, &e), "not loaded");
    EXPECT_FAIL(cuda_rope(d, P, 2, 8, 128, 64, 1, P, &e), "not loaded");
    EXPECT_FAIL(cuda_rope(d, P, 2, 8, 64, 128, 0, P, &e), "rope");  /* rope_dim > head_dim */
    EXPECT_FAIL(cuda_rope(d, P, 2, 8, 128, 63, 0, P, &e), "rope");  /* odd rope_dim */
    cuda_kv_layer L = {.k = P, .v = P, .page_bytes_k = 4 * 16 * 128 * 2, .page_bytes_v = 4 * 16 * 128 * 2,
                       .page_tokens = 16, .n_kv_head = 4, .head_dim = 128, .head_dim_v = 128};
    EXPECT_FAIL(cuda_kv_store_f16(d, &L, P, 5, 3, P, P, &e), "not loaded");
    EXPECT_FAIL(cuda_attention_f16(d, P, P, 2, 32, &L, P, 7, 0.1f, 0, 0, &e), "not loaded");
    EXPECT_FAIL(cuda_attention_f16(d, P, P, 2, 30, &L, P, 7, 0.1f, 0, 0, &e), "attention"); /* 30 % 4 */
    EXPECT_FAIL(cuda_attention_f16(d, P, P, 2, 32, &L, P, 7, 0.1f, -1, 0, &e), "attention");
    cuda_kv_layer badL = L;
    badL.page_bytes_v = 100;
    EXPECT_FAIL(cuda_kv_store_f16(d, &badL, P, 0, 1, P, P, &e), "page bytes");
    badL = L, badL.head_dim = 1024;
    EXPECT_FAIL(cuda_attention_f16(d, P, P, 1, 32, &badL, P, 0, 0.1f, 0, 0, &e), "kv layer");
    EXPECT_FAIL(cuda_kv_store_f16(d, &L, P, -1, 1, P, P, &e), "kv_store");
    EXPECT_FAIL(cuda_argmax_f32(d, P, P, 1000, &e), "not loaded");
    EXPECT_FAIL(cuda_argmax_f32(d, P, P, 0, &e), "argmax");
#undef EXPECT_FAIL
    free(d);
}

/* ---- issue #9: quantised page write and flash-decoding -------------------------------------- */

/* A CPU cache of dtype dt with one sequence of len tokens in layer 1 (after a freed decoy, so
 * page ids are not 0, 1, 2 ...), nothing stored yet. */
static int kvq_open(kv_cache *c, int *seq, kv_dtype dt, int H, int D, int Dv, int P, int64_t len) {
    kv_config cfg = {.n_layer = 2, .n_kv_head = H, .head_dim = D, .head_dim_v = Dv, .page_tokens = P,
                     .dtype = dt, .n_pages = (len + P - 1) / P + 3};
    terr e = {0};
    int decoy;
    if (kv_open(c, &cfg, &e) || kv_seq_new(c, &decoy, &e) || kv_seq_append(c, decoy, 2 * P, &e) ||
        kv_seq_new(c, seq, &e) || kv_seq_append(c, *seq, len, &e))
        return 0;
    kv_seq_free(c, decoy);
    return 1;
}

/* rope_apply_cs's arithmetic with each product its own statement, so no compiler contracts it
 * into an fma (the kernel rounds every product, as an uncontracted C build does). */
static void rope_ref(const float *cs, int rd, float *x, int n_heads, int hd, int neox) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < rd / 2; i++) {
            int ia = neox ? i : 2 * i, ib = neox ? i + rd / 2 : 2 * i + 1;
            float *v = x + (size_t)h * hd, a = v[ia], b = v[ib], c = cs[2 * i], s = cs[2 * i + 1];
            float t1 = a * c, t2 = b * s, t3 = a * s, t4 = b * c;
            v[ia] = t1 - t2;
            v[ib] = t3 + t4;
        }
}

TEST(gpu_op_rope_kv_store_quant) {
    GPU_OR_SKIP(d);
    /* (D, Dv, rope_dim): 80 gives q4 a short last group (16 values), 16 a single short group */
    const int shapes[][3] = {{128, 128, 64}, {80, 16, 80}};
    const int H = 3, n_head = 6, P = 16;
    const int64_t len = 37; /* ragged last page */
    for (int dt = KV_F16; dt <= KV_Q4; dt++)
        for (int si = 0; si < 2; si++)
            for (int neox = 0; neox <= 1; neox++) {
                const int D = shapes[si][0], Dv = shapes[si][1], rd = shapes[si][2];
                kv_cache c;
                int seq;
                REQUIRE(kvq_open(&c, &seq, (kv_dtype)dt, H, D, Dv, P, len));
                float *k = malloc(sizeof(float) * len * H * D), *v = malloc(sizeof(float) * len * H * Dv);
                float *q = malloc(sizeof(float) * len * n_head * D), *cs = malloc(sizeof(float) * len * rd);
                float *kr = malloc(sizeof(float) * len * H * D), *qr = malloc(sizeof(float) * len * n_head * D);
                float *gq = malloc(sizeof(float) * len * n_head * D);
                uint64_t seed = 1000 + dt * 8 + si * 2 + neox;
                gpu_fill_random(k, len * H * D, seed, 3.0f);
                gpu_fill_random(v, len * H * Dv, seed + 1, 0.5f);
                gpu_fill_random(q, len * n_head * D, seed + 2, 2.0f);
                /* rows where one value dominates (q8 scale from an outlier), a constant row (q4
                 * d = 0), and values past the f16 range (the scale clamps at 65504) */
                for (int i = 0; i < D; i++) k[(size_t)4 * H * D + i] = i == 3 ? 40.0f : 0.001f * i;
                for (int i = 0; i < Dv; i++) v[(size_t)5 * H * Dv + i] = 0.25f;
                k[(size_t)9 * H * D + 1] = 70000.0f;
                /* rope positions past 1M: the host table keeps them exact */
                rope_config cfg;
                rope_config_init(&cfg, rd, 500000.0);
                rope_table tab;
                terr e = {0};
                REQUIREF(rope_table_build(&tab, &cfg, 4096, &e) == 0, "%s", e.msg);
                memcpy(kr, k, sizeof(float) * len * H * D);
                memcpy(qr, q, sizeof(float) * len * n_head * D);
                for (int64_t j = 0; j < len; j++) {
                    rope_cos_sin(&tab, 1048576 + 4093 * j, cs + j * rd);
                    rope_ref(cs + j * rd, rd, kr + j * H * D, H, D, neox);
                    rope_ref(cs + j * rd, rd, qr + j * n_head * D, n_head, D, neox);
                }
                REQUIRE(kv_store(&c, seq, 1, 0, len, kr, v) == 0);
                int64_t np;
                const int32_t *pages = kv_seq_pages(&c, seq, &np);
                size_t bytes_k = c.page_bytes_k * c.cfg.n_pages, bytes_v = c.page_bytes_v * c.cfg.n_pages;
                CUdeviceptr dk = 0, dv = 0;
                REQUIREF(cuda_alloc(d, &dk, bytes_k, &e) == 0 && cuda_alloc(d, &dv, bytes_v, &e) == 0, "%s", e.msg);
                d->api.cuMemsetD8Async(dk, 0, bytes_k, d->stream); /* the CPU pool starts zeroed */
                d->api.cuMemsetD8Async(dv, 0, bytes_v, d->stream);
                CUdeviceptr dbt = dev_bytes(d, pages, sizeof(int32_t) * np, &e);
                CUdeviceptr dsk = dev_floats(d, k, len * H * D, &e), dsv = dev_floats(d, v, len * H * Dv, &e);
                CUdeviceptr dq = dev_floats(d, q, len * n_head * D, &e), dcs = dev_floats(d, cs, len * rd, &e);
                REQUIREF(dbt && dsk && dsv && dq && dcs, "%s", e.msg);
                cuda_kv_layer L = {.k = dk, .v = dv, .page_bytes_k = c.page_bytes_k,
                                   .page_bytes_v = c.page_bytes_v, .page_tokens = P, .n_kv_head = H,
                                   .head_dim = D, .head_dim_v = Dv};
                /* two calls, the second starting mid-page */
                REQUIREF(cuda_rope_kv_store(d, &L, (kv_dtype)dt, dbt, 0, 20, dq, dsk, dsv, dcs, n_head, rd,
                                            neox, &e) == 0, "%s", e.msg);
                REQUIREF(cuda_rope_kv_store(d, &L, (kv_dtype)dt, dbt, 20, (int)len - 20,
                                            dq + (CUdeviceptr)20 * n_head * D * 4, dsk + (CUdeviceptr)20 * H * D * 4,
                                            dsv + (CUdeviceptr)20 * H * Dv * 4, dcs + (CUdeviceptr)20 * rd * 4,
                                            n_head, rd, neox, &e) == 0, "%s", e.msg);
                uint8_t *gk = malloc(bytes_k), *gv = malloc(bytes_v);
                REQUIREF(cuda_download(d, gk, dk, bytes_k, &e) == 0 && cuda_download(d, gv, dv, bytes_v, &e) == 0 &&
                         cuda_download(d, gq, dq, sizeof(float) * len * n_head * D, &e) == 0, "%s", e.msg);
                /* Byte-identical pages: the kernel does quant_row's operations in the same order
                 * (f32 max/min are exact, division and rint are IEEE, cvt.rn.f16 = tf32_to_f16
                 * with the same one-ulp nudge), and the rotation is uncontracted on both sides. */
                size_t diff_k = 0, diff_v = 0;
                for (size_t i = 0; i < bytes_k; i++) diff_k += gk[i] != c.k[1][i];
                for (size_t i = 0; i < bytes_v; i++) diff_v += gv[i] != c.v[1][i];
                CHECKF(diff_k == 0 && diff_v == 0, "dtype %d D %d neox %d: pages differ: %zu K bytes, %zu V bytes",
                       dt, D, neox, diff_k, diff_v);
                size_t diff_q = 0;
                for (int64_t i = 0; i < len * n_head * D; i++) diff_q += memcmp(&gq[i], &qr[i], 4) != 0;
                CHECKF(diff_q == 0, "dtype %d D %d neox %d: %zu rotated q values differ", dt, D, neox, diff_q);
                cuda_free(d, dk); cuda_free(d, dv); cuda_free(d, dbt); cuda_free(d, dsk); cuda_free(d, dsv);
                cuda_free(d, dq); cuda_free(d, dcs);
                free(gk); free(gv); free(k); free(v); free(q); free(cs); free(kr); free(qr); free(gq);
                kv_close(&c);
            }
    cuda_close(d);
}

TEST(gpu_op_flash_decode) {
    GPU_OR_SKIP(d);
    /* P = 48: ragged last pages at every length (113, 4097, 131072 are not multiples of 48) and
     * pages that do not end on 16-key tile boundaries */
    const int H = 2, D = 128, P = 48;
    const int64_t lens[] = {1, 113, 4097, 131072};
    const int reps[] = {1, 4, 8};
    const int64_t masks[][2] = {{0, 0}, {50, 3}, {1000, 100}}; /* causal; window + sinks */
    for (int dt = KV_F16; dt <= KV_Q4; dt++)
        for (int li = 0; li < 4; li++) {
            int64_t len = lens[li];
            kv_cache c;
            int seq;
            REQUIRE(kvq_open(&c, &seq, (kv_dtype)dt, H, D, D, P, len));
            float *k = malloc(sizeof(float) * len * H * D), *v = malloc(sizeof(float) * len * H * D);
            gpu_fill_random(k, len * H * D, 500 + dt * 4 + li, 1.0f);
            gpu_fill_random(v, len * H * D, 600 + dt * 4 + li, 1.0f);
            REQUIRE(kv_store(&c, seq, 1, 0, len, k, v) == 0);
            int64_t np;
            const int32_t *pages = kv_seq_pages(&c, seq, &np);
            size_t bytes_k = c.page_bytes_k * c.cfg.n_pages, bytes_v = c.page_bytes_v * c.cfg.n_pages;
            terr e = {0};
            CUdeviceptr dk = dev_bytes(d, c.k[1], bytes_k, &e), dv = dev_bytes(d, c.v[1], bytes_v, &e);
            CUdeviceptr dbt = dev_bytes(d, pages, sizeof(int32_t) * np, &e);
            REQUIREF(dk && dv && dbt, "%s", e.msg);
            cuda_kv_layer L = {.k = dk, .v = dv, .page_bytes_k = c.page_bytes_k, .page_bytes_v = c.page_bytes_v,
                               .page_tokens = P, .n_kv_head = H, .head_dim = D, .head_dim_v = D};
            for (int ri = 0; ri < 3; ri++)
                for (int mi = 0; mi < 3; mi++) {
                    if (li == 3 && ri != 2) continue; /* the long case once per mask, GQA 8 */
                    int n_head = H * reps[ri];
                    size_t nq = (size_t)n_head * D;
                    float *q = malloc(sizeof(float) * nq), *want = malloc(sizeof(float) * nq);
                    float *got = malloc(sizeof(float) * nq);
                    gpu_fill_random(q, nq, 700 + dt * 64 + li * 16 + ri * 4 + mi, 4.0f);
                    kv_attn a = {.n_head = n_head, .scale = 1.0f / sqrtf((float)D), .window = masks[mi][0],
                                 .sinks = masks[mi][1]};
                    /* the last position, and one mid-sequence (keys after it stay invisible) */
                    int64_t qps[2] = {len - 1, len / 2};
                    for (int pi = 0; pi < 2; pi++) {
                        int64_t qp = qps[pi];
                        REQUIRE(kv_attend(&c, seq, 1, &a, q, qp, want) == 0);
                        /* splits: the automatic count, one block per head, and an odd count; then
                         * (s = 3) the decode-step form: the key range read from a device header
                         * ({n_sink, win_lo, n_visible}) over the split count of a 1M context, most
                         * splits empty; each with the current kernel and with tome_flash_decode_v1 */
                        const int maxs = cuda_flash_decode_splits(d, &L, (int64_t)1 << 20);
                        int splits[4] = {cuda_flash_decode_splits(d, &L, qp + 1), 1, 7, maxs};
                        int64_t lo = 0, se = 0;
                        if (a.window > 0) {
                            lo = qp - a.window + 1 > 0 ? qp - a.window + 1 : 0;
                            se = a.sinks < lo ? a.sinks : lo;
                        }
                        const uint64_t hdr[3] = {(uint64_t)se, (uint64_t)lo, (uint64_t)(se + qp + 1 - lo)};
                        for (int s = 0; s < 8; s++) {
                            d->flash_v1 = s & 1;
                            const int si = s / 2;
                            size_t sb = cuda_flash_decode_scratch_bytes(n_head, D, splits[si]);
                            CUdeviceptr dq = dev_floats(d, q, nq, &e), dout = dev_floats(d, NULL, nq, &e);
                            CUdeviceptr dscr = dev_bytes(d, NULL, sb, &e), dhdr = dev_bytes(d, hdr, sizeof hdr, &e);
                            REQUIREF(dq && dout && dscr && dhdr, "%s", e.msg);
                            if (si == 3)
                                REQUIREF(cuda_flash_decode_step(d, dout, dq, n_head, &L, (kv_dtype)dt, dbt, dhdr, a.scale,
                                                                splits[si], dscr, sb, &e) == 0, "%s", e.msg);
                            else
                                REQUIREF(cuda_flash_decode(d, dout, dq, n_head, &L, (kv_dtype)dt, dbt, len, qp, a.scale,
                                                           a.window, a.sinks, splits[si], dscr, sb, &e) == 0, "%s", e.msg);
                            cuda_free(d, dhdr);
                            REQUIREF(cuda_download(d, got, dout, sizeof(float) * nq, &e) == 0, "%s", e.msg);
                            /* Both sides dequantise the same page bytes and sum in f32 in
                             * different orders; e^x differs (ex2.approx vs expf, ~2e-7
                             * relative). Outputs are convex combinations of |v| <= 1.01; a C
                             * mirror of the kernel's arithmetic measured <= 3.6e-7 against
                             * kv_attend. 2e-5 flags one dropped page (48 keys) at every
                             * length, one dropped key up to 4097. */
                            double err = 0;
                            for (size_t i = 0; i < nq; i++) err = fmax(err, fabs((double)got[i] - want[i]));
                            if (err != err) err = INFINITY;
                            CHECKF(err <= 2e-5,
                                   "flash%s%s dtype %d len %lld q_pos %lld rep %d window %lld sinks %lld splits %d: "
                                   "max abs err %.3g", d->flash_v1 ? " (v1)" : "", si == 3 ? " step" : "",
                                   dt, (long long)len, (long long)qp, reps[ri], (long long)a.window,
                                   (long long)a.sinks, splits[si], err);
                            cuda_free(d, dq); cuda_free(d, dout); cuda_free(d, dscr);
                        }
                    }
                    free(q); free(want); free(got);
                }
            cuda_free(d, dk); cuda_free(d, dv); cuda_free(d, dbt);
            free(k); free(v);
            kv_close(&c);
        }
    cuda_close(d);
}

/* The new launchers check before any driver call (a zeroed cuda_dev: "not loaded" for good
 * arguments, the op's name for bad ones); runs without a GPU. */
TEST(cuda_kv_quant_op_preconditions) {
    cuda_dev *d = calloc(1, sizeof *d);
    REQUIRE(d);
    terr e = {0};
    const CUdeviceptr P = 0x10000; /* never dereferenced */
#define EXPECT_FAIL(call, word)                                                                \
    do {                                                                                       \
        e.msg[0] = 0;                                                                          \
        CHECKF((call) == TOME_ERESOURCE && strstr(e.msg, word), "%s: '%s'", #call, e.msg);     \
    } while (0)
    cuda_kv_layer L = {.k = P, .v = P, .page_tokens = 64, .n_kv_head = 8, .head_dim = 128, .head_dim_v = 128};
    L.page_bytes_k = L.page_bytes_v = kv_page_bytes(KV_Q8, 8, 128, 64);
    EXPECT_FAIL(cuda_rope_kv_store(d, &L, KV_Q8, P, 5, 3, P, P, P, P, 32, 128, 1, &e), "not loaded");
    EXPECT_FAIL(cuda_rope_kv_store(d, &L, KV_Q4, P, 5, 3, P, P, P, 0, 32, 0, 0, &e), "not loaded");
    EXPECT_FAIL(cuda_rope_kv_store(d, &L, KV_F16, P, 5, 3, P, P, P, P, 32, 128, 1, &e), "page bytes");
    EXPECT_FAIL(cuda_rope_kv_store(d, &L, KV_Q8, P, 5, 3, P, P, P, P, 32, 130, 1, &e), "rope_kv_store");
    EXPECT_FAIL(cuda_rope_kv_store(d, &L, (kv_dtype)7, P, 5, 3, P, P, P, P, 32, 128, 1, &e), "dtype");
    size_t sb = cuda_flash_decode_scratch_bytes(32, 128, 4);
    CHECK(sb == (size_t)4 * 32 * 130 * 4);
    d->n_sm = 132;
    CHECK(cuda_flash_decode_splits(d, &L, 1) == 1);
    CHECK(cuda_flash_decode_splits(d, &L, 1 << 20) == 66); /* 4 blocks per SM over 8 kv heads */
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 32, &L, KV_Q8, P, 1000, 999, 0.1f, 0, 0, 4, P, sb, &e), "not loaded");
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 32, &L, KV_Q8, P, 1000, 1000, 0.1f, 0, 0, 4, P, sb, &e), "flash_decode");
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 32, &L, KV_Q8, P, 1000, 999, 0.1f, 0, 0, 5, P, sb, &e), "scratch");
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 30, &L, KV_Q8, P, 1000, 999, 0.1f, 0, 0, 4, P, sb, &e), "unsupported");
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 8 * 16, &L, KV_Q8, P, 1000, 999, 0.1f, 0, 0, 1, P, 1 << 20, &e),
                "unsupported"); /* group of 16 x 128 dims > 1024 */
    cuda_kv_layer bad = L;
    bad.k = P + 8; /* f16 rows are read 16 bytes at a time */
    EXPECT_FAIL(cuda_flash_decode(d, P, P, 32, &bad, KV_Q8, P, 1000, 999, 0.1f, 0, 0, 4, P, sb, &e), "aligned");
    EXPECT_FAIL(cuda_lse_merge(d, P, P, P, P, 4, 32, 128, &e), "not loaded");
    EXPECT_FAIL(cuda_lse_merge(d, P, P, P, P, 0, 32, 128, &e), "lse_merge");
#undef EXPECT_FAIL
    free(d);
}

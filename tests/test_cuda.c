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

/* Opens GPU 0 or skips. */
#define GPU_OR_SKIP(d)                                                                   \
    cuda_dev *d = NULL;                                                                  \
    do {                                                                                 \
        char why_[256] = "";                                                             \
        if (cuda_device_count(why_, sizeof why_) == 0) SKIP("no GPU: %s", why_);        \
        terr e_ = {0};                                                                   \
        REQUIREF(cuda_open(&d, 0, &e_) == 0, "%s", e_.msg);                             \
    } while (0)

static void fill_random(float *x, int64_t n, uint64_t seed, float scale) {
    trng r;
    trng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (trng_f32(&r) * 2 - 1) * scale + 0.01f; /* never all zero */
}

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
        fill_random(a, n, 1 + s, 8.0f);
        fill_random(b, n, 100 + s, 3.0f);
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
        fill_random(x, n, 7 + s, 2.0f);
        fill_random(w, cols, 70 + s, 1.0f);
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

/* test_cuda_gemm.c — cuda_gemm (ptx/gemm.ptx, lib/cuda/gemm.c) against the CPU reference.
 *
 * The gpu_op_gemm_* tests need a device: a real GPU (tests/gpu.sh's ops group) or the
 * stand-in driver of the gpu-emu CI stage (tests/fake_cuda.c), whose emu_gemm runs the
 * kernel's design lane by lane (staging windows, swizzles, ldmatrix, mma fragments); without
 * either they skip. The reference is lib/quant.c's dequantisation and a double dot product.
 *
 * Tolerances, per output y[t][r] with A = sum_k |W[r][k] x[t][k]|:
 *  - tight, against the reference computed from the values the kernel multiplies (x and the
 *    dequantised W rounded to f16, or bf16 for BF16 weights, exactly as tome_gemm_cvt and the
 *    dequantiser round them): the products are exact in f32, only the summation differs. A
 *    tensor-core k16 step adds 16 products to the accumulator with an error of a few ulp of
 *    the magnitudes involved (<= A), so the bound is (K/16 + 2) * 2^-22 * A, plus 2^-22 of
 *    |bias| + |res| + |y| for the f32 epilogue adds. A misplaced 8-value chunk of k moves the
 *    result by ~sqrt(8) * A / K, several times this bound even at K = 4096.
 *  - loose, against the exact f32 product (the "~1e-3 of the row norm"): rounding each
 *    factor to f16 moves each product by at most 2 * 2^-11 relative, so 2^-10 * A (bf16:
 *    2^-8 * A, x only: BF16 weights are exact) plus the tight bound.
 */
#include "test.h"

#include "cuda/ops.h"
#include "gpu_test.h"
#include "quant.h"

/* f32 -> the 16-bit type the kernel multiplies, and back */
static float round16(float v, int bf) { return bf ? tbf16_to_f32(tf32_to_bf16(v)) : tf16_to_f32(tf32_to_f16(v)); }

typedef struct gemm_case {
    uint32_t type;
    int M, N, K;
    int bias;   /* add a bias */
    int res;    /* 0 none, 1 separate residual buffer, 2 in place (res == y) */
    int offset; /* weight bytes at this offset inside a larger allocation */
} gemm_case;

/* Runs one case on the device and checks every output against both references. Returns the
 * worst error / tight-tolerance ratio seen (for the message), or -1 when a step failed. */
static double gemm_run(tctx *T, cuda_dev *d, const gemm_case *gc, uint64_t seed) {
    const int M = gc->M, N = gc->N, K = gc->K, bf = gc->type == GGML_TYPE_BF16;
    const size_t rb = ggml_row_size(gc->type, K);
    uint8_t *wq = malloc(rb * (size_t)N + 64);
    float *wf = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)M * K);
    float *bias = malloc(sizeof(float) * (size_t)N), *res = malloc(sizeof(float) * (size_t)M * N);
    float *got = malloc(sizeof(float) * ((size_t)M * N + 64));
    double worst = -1;
    if (!wq || !wf || !x || !bias || !res || !got) goto out;
    gpu_fill_random(wf, (int64_t)N * K, seed, 1.0f);
    for (int r = 0; r < N; r++) tq_quantize(gc->type, wf + (size_t)r * K, wq + gc->offset + (size_t)r * rb, K);
    for (int r = 0; r < N; r++) tq_dequantize(gc->type, wq + gc->offset + (size_t)r * rb, wf + (size_t)r * K, K);
    gpu_fill_random(x, (int64_t)M * K, seed + 1, 2.0f);
    gpu_fill_random(bias, N, seed + 2, 0.5f);
    gpu_fill_random(res, (int64_t)M * N, seed + 3, 4.0f);

    terr e = {0};
    CUdeviceptr dw = 0, dx = 0, dy = 0, db = 0, dr = 0, ds = 0;
    const size_t wbytes = rb * (size_t)N + (gc->offset ? 64 : 0), ybytes = sizeof(float) * ((size_t)M * N + 64);
    const size_t sbytes = cuda_gemm_scratch_bytes(M, K);
    int ok = cuda_alloc(d, &dw, wbytes, &e) == 0 && cuda_upload(d, dw, wq, wbytes, &e) == 0 &&
             cuda_alloc(d, &dx, sizeof(float) * (size_t)M * K, &e) == 0 &&
             cuda_upload(d, dx, x, sizeof(float) * (size_t)M * K, &e) == 0 && cuda_alloc(d, &dy, ybytes, &e) == 0 &&
             cuda_alloc(d, &ds, sbytes, &e) == 0;
    if (ok) { /* y poisoned with NaN, 64 guard floats after it */
        memset(got, 0xFF, ybytes);
        if (gc->res == 2) memcpy(got, res, sizeof(float) * (size_t)M * N);
        ok = cuda_upload(d, dy, got, ybytes, &e) == 0;
    }
    if (ok && gc->bias)
        ok = cuda_alloc(d, &db, sizeof(float) * N, &e) == 0 && cuda_upload(d, db, bias, sizeof(float) * N, &e) == 0;
    if (ok && gc->res == 1)
        ok = cuda_alloc(d, &dr, sizeof(float) * (size_t)M * N, &e) == 0 &&
             cuda_upload(d, dr, res, sizeof(float) * (size_t)M * N, &e) == 0;
    cuda_weight cwt = {dw + (CUdeviceptr)gc->offset, gc->type, N, K, rb};
    if (ok) ok = cuda_gemm(d, dy, &cwt, db, gc->res == 2 ? dy : dr, dx, M, ds, sbytes, &e) == 0;
    if (ok) ok = cuda_download(d, got, dy, ybytes, &e) == 0;
    CHECKF(ok, "type %u M=%d N=%d K=%d: %s", gc->type, M, N, K, e.msg);
    if (ok) {
        worst = 0;
        int bad = 0;
        for (int i = 0; i < 64; i++) {
            uint32_t u;
            memcpy(&u, &got[(size_t)M * N + i], 4);
            if (u != 0xFFFFFFFFu) bad = 1;
        }
        CHECKF(!bad, "type %u M=%d N=%d K=%d: the guard after y was written", gc->type, M, N, K);
        float *xr = malloc(sizeof(float) * (size_t)K), *wr16 = malloc(sizeof(float) * (size_t)N * K);
        for (int64_t i = 0; wr16 && i < (int64_t)N * K; i++) wr16[i] = round16(wf[i], bf);
        for (int t = 0; t < M && xr && wr16; t++) {
            for (int k = 0; k < K; k++) xr[k] = round16(x[(size_t)t * K + k], bf);
            for (int r = 0; r < N; r++) {
                const float *wr = wf + (size_t)r * K, *xt = x + (size_t)t * K;
                double exact = 0, rounded = 0, absum = 0;
                for (int k = 0; k < K; k++) {
                    exact += (double)wr[k] * xt[k];
                    rounded += (double)wr16[(size_t)r * K + k] * xr[k];
                    absum += fabs((double)wr[k] * xt[k]);
                }
                double add = (gc->bias ? bias[r] : 0.0) + (gc->res ? res[(size_t)t * N + r] : 0.0);
                double g = got[(size_t)t * N + r];
                double tight = (K / 16.0 + 2) * 0x1p-22 * absum +
                               0x1p-22 * (fabs(add) + fabs(rounded) + fabs(g) + (gc->bias ? fabs(bias[r]) : 0));
                double loose = (bf ? 0x1p-8 : 0x1p-10) * absum + tight;
                double et = fabs(g - (rounded + add)), el = fabs(g - (exact + add));
                if (!(et <= tight) || !(el <= loose)) {
                    if (bad++ < 5)
                        CHECKF(0, "type %u M=%d N=%d K=%d y[%d][%d] = %.9g, want %.9g (rounded inputs, tol %.3g) / %.9g "
                               "(exact, tol %.3g)", gc->type, M, N, K, t, r, g, rounded + add, tight, exact + add, loose);
                }
                if (et / tight > worst) worst = et / tight;
            }
        }
        CHECKF(xr && wr16, "out of host memory");
        free(xr), free(wr16);
        if (bad) worst = -1;
    }
    CUdeviceptr all[] = {dw, dx, dy, db, dr, ds};
    for (size_t i = 0; i < TOME_ARRAY_LEN(all); i++) cuda_free(d, all[i]);
out:
    free(wq), free(wf), free(x), free(bias), free(res), free(got);
    return worst;
}

/* Every case of one weight type: awkward M (1..3, 17, 129, 1000), N off the 128 tile, K of
 * one block up to 4096, with and without bias and residual. */
static void gemm_type_cases(tctx *T, uint32_t type) {
    GPU_OR_SKIP(d);
    const int blk = type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K ? 256 : 32;
    const gemm_case cases[] = {
        {type, 1, 72, blk, 0, 0, 0},
        {type, 2, 130, 3 * blk, 1, 0, 0},
        {type, 3, 200, 512, 0, 1, 0},
        {type, 17, 129, 4096, 1, 0, 0},
        {type, 129, 300, 2 * blk, 1, 2, 0},
        {type, 1000, 136, 512, 1, 1, 32},
    };
    for (size_t i = 0; i < TOME_ARRAY_LEN(cases); i++) {
        double w = gemm_run(T, d, &cases[i], 7000 + 97 * type + 13 * i);
        if (w < 0) break; /* the failure is reported */
        if (getenv("TOME_GEMM_VERBOSE"))
            printf("  gemm type %u M=%d N=%d K=%d: worst error %.3f of the tight bound\n", type, cases[i].M,
                   cases[i].N, cases[i].K, w);
    }
    cuda_close(d);
}

TEST(gpu_op_gemm_f16) { gemm_type_cases(T, GGML_TYPE_F16); }
TEST(gpu_op_gemm_bf16) { gemm_type_cases(T, GGML_TYPE_BF16); }
TEST(gpu_op_gemm_q8_0) { gemm_type_cases(T, GGML_TYPE_Q8_0); }
TEST(gpu_op_gemm_q4_k) { gemm_type_cases(T, GGML_TYPE_Q4_K); }
TEST(gpu_op_gemm_q6_k) { gemm_type_cases(T, GGML_TYPE_Q6_K); }

/* The launcher's refusals: types and shapes the kernel does not take, short scratch. No
 * device is needed for cuda_gemm_supported; the launch checks run on the stand-in or a GPU. */
TEST(cuda_gemm_supported_types) {
    cuda_weight w = {256, GGML_TYPE_F16, 10, 64, 128};
    CHECK(cuda_gemm_supported(&w));
    w.type = GGML_TYPE_BF16;
    CHECK(cuda_gemm_supported(&w));
    w.type = GGML_TYPE_Q8_0;
    CHECK(cuda_gemm_supported(&w));
    w.type = GGML_TYPE_Q4_K; /* 64 columns: not a whole block */
    CHECK(!cuda_gemm_supported(&w));
    w.cols = 512;
    CHECK(cuda_gemm_supported(&w));
    w.type = GGML_TYPE_Q6_K;
    CHECK(cuda_gemm_supported(&w));
    w.type = GGML_TYPE_Q4_0;
    CHECK(!cuda_gemm_supported(&w));
    w.type = GGML_TYPE_F32;
    CHECK(!cuda_gemm_supported(&w));
    w.type = GGML_TYPE_F16, w.cols = 48; /* not a multiple of the 32-wide K step */
    CHECK(!cuda_gemm_supported(&w));
    w.cols = 64, w.data = 256 + 8; /* misaligned weight bytes */
    CHECK(!cuda_gemm_supported(&w));
    CHECK(cuda_gemm_scratch_bytes(3, 64) == 3 * 64 * 2);
}

TEST(gpu_op_gemm_refuses_short_scratch) {
    GPU_OR_SKIP(d);
    terr e = {0};
    CUdeviceptr dw = 0, dx = 0, dy = 0, ds = 0;
    const int M = 20, N = 8, K = 64;
    REQUIRE(cuda_alloc(d, &dw, ggml_row_size(GGML_TYPE_F16, K) * N, &e) == 0);
    REQUIRE(cuda_alloc(d, &dx, sizeof(float) * M * K, &e) == 0);
    REQUIRE(cuda_alloc(d, &dy, sizeof(float) * M * N, &e) == 0);
    REQUIRE(cuda_alloc(d, &ds, cuda_gemm_scratch_bytes(M, K) - 2, &e) == 0);
    cuda_weight w = {dw, GGML_TYPE_F16, N, K, ggml_row_size(GGML_TYPE_F16, K)};
    CHECK(cuda_gemm(d, dy, &w, 0, 0, dx, M, ds, cuda_gemm_scratch_bytes(M, K) - 2, &e) == TOME_ERESOURCE);
    CHECK(strstr(e.msg, "scratch") != NULL);
    w.type = GGML_TYPE_Q4_0, w.row_bytes = ggml_row_size(GGML_TYPE_Q4_0, K);
    CHECK(cuda_gemm(d, dy, &w, 0, 0, dx, M, ds, cuda_gemm_scratch_bytes(M, K), &e) == TOME_ERESOURCE);
    cuda_free(d, dw), cuda_free(d, dx), cuda_free(d, dy), cuda_free(d, ds);
    cuda_close(d);
}

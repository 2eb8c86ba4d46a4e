/* lab_gemm.c — the kernel lab of the tensor-core prefill GEMM (cuda_gemm, ptx/gemm.ptx).
 *
 *   build/lab_gemm [--budget SECONDS] [--quick]
 *
 * Opens GPU 0 (exit 4 with one line when there is none), validates cuda_gemm against the CPU
 * reference (lib/quant.c dequantisation, double dot products; the tolerances of
 * tests/test_cuda_gemm.c) on a few shapes per weight type, then times it on the 8B-class
 * projection shapes N x K = 4096x4096 (q, o), 1024x4096 (k, v), 14336x4096 (gate, up),
 * 4096x14336 (down), 128256x4096 (output) at M = 4096, 16384 and 512 tokens for F16, BF16,
 * Q8_0 and Q4_K weights. A time is the whole cuda_gemm call (f32 -> f16 conversion of the
 * activations + GEMM), averaged over enough calls to fill ~100 ms, after one warm-up call;
 * TFLOP/s = 2 M N K / t. Prints one line per measurement, a markdown table with each
 * quantised type's ratio to F16, and a last `lab_gemm: summary:` line (tests/gpu.sh's bench
 * group puts it in its table). Timing stops when --budget (default 60 s) is spent; the rest
 * is reported as not run. --quick: M = 4096 only.
 *
 * Exit: 0 all validations passed, 1 a validation failed (or bad flags), 4 no GPU / no memory.
 * Weights for timing are a block of 64 quantised random rows repeated down the matrix (the
 * kernel's speed does not depend on the values; this keeps the set-up to seconds).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/ops.h"
#include "quant.h"
#include "util.h"

static const uint32_t k_types[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K};
#define N_TYPES 4
static const int64_t k_shapes[][2] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
#define N_SHAPES 5
static const int k_ms[] = {4096, 16384, 512};
#define N_MS 3

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    trng r;
    trng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (trng_f32(&r) * 2 - 1) * scale + 0.01f;
}

static float round16(float v, int bf) { return bf ? tbf16_to_f32(tf32_to_bf16(v)) : tf16_to_f32(tf32_to_f16(v)); }

/* Validates one shape: every output of up to 24 sampled token rows against the reference.
 * Returns 1 ok, 0 wrong, -1 a device error (message printed). */
static int validate(cuda_dev *d, uint32_t type, int M, int N, int K) {
    const int bf = type == GGML_TYPE_BF16;
    const size_t rb = ggml_row_size(type, K);
    uint8_t *wq = malloc(rb * (size_t)N);
    float *wf = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)M * K);
    float *y = malloc(sizeof(float) * (size_t)M * N), *bias = malloc(sizeof(float) * (size_t)N);
    float *wq16 = malloc(sizeof(float) * (size_t)N * K), *xr16 = malloc(sizeof(float) * (size_t)K);
    int ok = -1;
    terr e = {0};
    CUdeviceptr dw = 0, dx = 0, dy = 0, db = 0, ds = 0;
    if (!wq || !wf || !x || !y || !bias || !wq16 || !xr16) {
        fprintf(stderr, "lab_gemm: out of host memory\n");
        goto out;
    }
    fill(wf, (int64_t)N * K, 11 + type, 1.0f);
    for (int r = 0; r < N; r++) tq_quantize(type, wf + (size_t)r * K, wq + (size_t)r * rb, K);
    for (int r = 0; r < N; r++) tq_dequantize(type, wq + (size_t)r * rb, wf + (size_t)r * K, K);
    fill(x, (int64_t)M * K, 12 + type, 2.0f);
    fill(bias, N, 13 + type, 0.5f);
    const size_t sb = cuda_gemm_scratch_bytes(M, K);
    cuda_weight w = {0, type, N, K, rb};
    if (cuda_alloc(d, &dw, rb * N, &e) || cuda_upload(d, dw, wq, rb * N, &e) ||
        cuda_alloc(d, &dx, sizeof(float) * (size_t)M * K, &e) ||
        cuda_upload(d, dx, x, sizeof(float) * (size_t)M * K, &e) ||
        cuda_alloc(d, &dy, sizeof(float) * (size_t)M * N, &e) || cuda_alloc(d, &db, sizeof(float) * N, &e) ||
        cuda_upload(d, db, bias, sizeof(float) * N, &e) || cuda_alloc(d, &ds, sb, &e) ||
        (w.data = dw, cuda_gemm(d, dy, &w, db, 0, dx, M, ds, sb, &e)) ||
        cuda_download(d, y, dy, sizeof(float) * (size_t)M * N, &e)) {
        fprintf(stderr, "lab_gemm: %s\n", e.msg);
        goto out;
    }
    double worst = 0;
    int bad = 0;
    const int step = M > 24 ? M / 24 : 1;
    for (int64_t i = 0; i < (int64_t)N * K; i++) wq16[i] = round16(wf[i], bf); /* what the kernel multiplies */
    for (int t = 0; t < M; t += step) {
        const float *xt = x + (size_t)t * K;
        for (int k = 0; k < K; k++) xr16[k] = round16(xt[k], bf);
        for (int r = 0; r < N; r++) {
            const float *wr = wf + (size_t)r * K;
            double exact = 0, rounded = 0, absum = 0;
            for (int k = 0; k < K; k++) {
                exact += (double)wr[k] * xt[k];
                rounded += (double)wq16[(size_t)r * K + k] * xr16[k];
                absum += fabs((double)wr[k] * xt[k]);
            }
            double g = y[(size_t)t * N + r];
            double tight = (K / 16.0 + 2) * 0x1p-22 * absum + 0x1p-22 * (2 * fabs(bias[r]) + fabs(rounded) + fabs(g));
            double loose = (bf ? 0x1p-8 : 0x1p-10) * absum + tight;
            double et = fabs(g - (rounded + bias[r])), el = fabs(g - (exact + bias[r]));
            if (!(et <= tight) || !(el <= loose)) {
                if (bad++ < 3)
                    printf("lab_gemm:   %s M=%d N=%d K=%d y[%d][%d] = %.9g, want %.9g (tol %.3g)\n", ggml_type_get(type)->name,
                           M, N, K, t, r, g, rounded + bias[r], tight);
            }
            if (et / tight > worst) worst = et / tight;
        }
    }
    printf("lab_gemm: validate %s M=%d N=%d K=%d: %s (worst error %.3f of the tight bound)\n", ggml_type_get(type)->name,
           M, N, K, bad ? "FAIL" : "ok", worst);
    ok = !bad;
out:
    cuda_free(d, dw), cuda_free(d, dx), cuda_free(d, dy), cuda_free(d, db), cuda_free(d, ds);
    free(wq), free(wf), free(x), free(y), free(bias), free(wq16), free(xr16);
    return ok;
}

/* Fills n_rows rows of type/K at dev with a block of 64 quantised random rows, repeated. */
static int fill_weights(cuda_dev *d, CUdeviceptr dev, uint32_t type, int64_t n_rows, int64_t K, terr *e) {
    const int64_t P = 64;
    const size_t rb = ggml_row_size(type, K);
    float *f = malloc(sizeof(float) * (size_t)(P * K));
    uint8_t *q = malloc(rb * (size_t)P);
    if (!f || !q) {
        free(f), free(q);
        return terr_set(e, TOME_ERESOURCE, "out of host memory");
    }
    fill(f, P * K, 99 + type, 1.0f);
    for (int64_t r = 0; r < P; r++) tq_quantize(type, f + r * K, q + r * rb, K);
    int rc = 0;
    for (int64_t r = 0; r < n_rows && !rc; r += P) {
        int64_t n = n_rows - r < P ? n_rows - r : P;
        rc = cuda_upload(d, dev + (CUdeviceptr)r * rb, q, rb * (size_t)n, e);
    }
    free(f), free(q);
    return rc;
}

int main(int argc, char **argv) {
    double budget = 60;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--budget") && i + 1 < argc) budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: lab_gemm [--budget SECONDS] [--quick]\n");
            return 1;
        }
    }
    char why[256] = "";
    if (cuda_device_count(why, sizeof why) == 0) {
        printf("lab_gemm: no GPU: %s\n", why);
        return 4;
    }
    cuda_dev *d = NULL;
    terr e = {0};
    if (cuda_open(&d, 0, &e)) {
        printf("lab_gemm: %s\n", e.msg);
        return 4;
    }
    printf("lab_gemm: %s, sm_%d%d, %d SMs, %s\n", d->name, d->cc_major, d->cc_minor, d->n_sm,
           d->from_cubin ? "build-time cubins" : "driver JIT of the PTX");

    /* ---- validation ---- */
    int n_val = 0, n_ok = 0, dev_err = 0;
    for (int ti = 0; ti < N_TYPES && !dev_err; ti++) {
        const int shapes[][3] = {{512, 1024, 4096}, {17, 200, 512}, {130, 4096, 256}};
        for (int s = 0; s < 3; s++) {
            int r = validate(d, k_types[ti], shapes[s][0], shapes[s][1], shapes[s][2]);
            if (r < 0) { dev_err = 1; break; }
            n_val++, n_ok += r;
        }
    }

    /* ---- timing ---- */
    double tflops[N_MS][N_SHAPES][N_TYPES];
    for (int a = 0; a < N_MS; a++)
        for (int b = 0; b < N_SHAPES; b++)
            for (int c = 0; c < N_TYPES; c++) tflops[a][b][c] = -1;
    const int64_t Mmax = 16384, Kmax = 14336;
    CUdeviceptr dx = 0, dy = 0, dw = 0, ds = 0;
    CUevent e0 = NULL, e1 = NULL;
    size_t wmax = ggml_row_size(GGML_TYPE_F16, 4096) * 128256;
    if (!dev_err &&
        (cuda_alloc(d, &dx, sizeof(float) * Mmax * Kmax, &e) || cuda_alloc(d, &ds, cuda_gemm_scratch_bytes(Mmax, Kmax), &e) ||
         cuda_alloc(d, &dy, sizeof(float) * (size_t)Mmax * 128256, &e) || cuda_alloc(d, &dw, wmax, &e))) {
        printf("lab_gemm: %s\n", e.msg);
        dev_err = 1;
    }
    if (!dev_err) { /* activations: a 16 MiB random block repeated */
        const size_t blk = 4u << 20;
        float *h = malloc(blk * sizeof(float));
        if (!h) dev_err = 1;
        else {
            fill(h, (int64_t)blk, 5, 2.0f);
            for (size_t o = 0; o < (size_t)(Mmax * Kmax) && !dev_err; o += blk) {
                size_t n = (size_t)(Mmax * Kmax) - o < blk ? (size_t)(Mmax * Kmax) - o : blk;
                if (cuda_upload(d, dx + o * sizeof(float), h, n * sizeof(float), &e)) dev_err = 1;
            }
            free(h);
        }
        if (d->api.cuEventCreate(&e0, 0) || d->api.cuEventCreate(&e1, 0)) dev_err = 1;
    }
    const double t_start = now_s();
    int skipped = 0;
    for (int ti = 0; ti < N_TYPES && !dev_err; ti++) {
        for (int si = 0; si < N_SHAPES && !dev_err; si++) {
            const int64_t N = k_shapes[si][0], K = k_shapes[si][1];
            if (now_s() - t_start > budget) { skipped++; continue; }
            if (fill_weights(d, dw, k_types[ti], N, K, &e)) { printf("lab_gemm: %s\n", e.msg); dev_err = 1; break; }
            cuda_weight w = {dw, k_types[ti], N, K, ggml_row_size(k_types[ti], K)};
            for (int mi = 0; mi < N_MS && !dev_err; mi++) {
                const int M = k_ms[mi];
                if (quick && M != 4096) continue;
                if (now_s() - t_start > budget) { skipped++; continue; }
                const size_t sb = cuda_gemm_scratch_bytes(M, (int)K);
                float ms = 0;
                int reps = 1;
                for (int pass = 0; pass < 2 && !dev_err; pass++) { /* pass 0: warm-up, sizes reps */
                    if (d->api.cuEventRecord(e0, d->stream)) dev_err = 1;
                    for (int r = 0; r < reps && !dev_err; r++)
                        if (cuda_gemm(d, dy, &w, 0, 0, dx, M, ds, sb, &e)) { printf("lab_gemm: %s\n", e.msg); dev_err = 1; }
                    if (dev_err || d->api.cuEventRecord(e1, d->stream) || d->api.cuEventSynchronize(e1) ||
                        d->api.cuEventElapsedTime(&ms, e0, e1)) { dev_err = 1; break; }
                    if (pass == 0) reps = ms > 0 ? (int)fmin(50, fmax(2, 100.0 / ms)) : 2;
                }
                if (dev_err) { printf("lab_gemm: timing failed (%s)\n", e.msg[0] ? e.msg : "event error"); break; }
                double t = ms / 1e3 / reps, tf = 2.0 * M * (double)N * (double)K / t / 1e12;
                tflops[mi][si][ti] = tf;
                printf("lab_gemm: %s M=%d N=%lld K=%lld: %.3f ms, %.1f TFLOP/s\n", ggml_type_get(k_types[ti])->name, M,
                       (long long)N, (long long)K, t * 1e3, tf);
                fflush(stdout);
            }
        }
    }

    /* ---- table and summary ---- */
    printf("\n| M | N x K | F16 TFLOP/s | BF16 | Q8_0 | Q4_K | Q8_0 / F16 | Q4_K / F16 |\n|---|---|---|---|---|---|---|---|\n");
    double sum[N_TYPES] = {0}, sum_r[N_TYPES] = {0};
    int cnt[N_TYPES] = {0}, cnt_r[N_TYPES] = {0};
    for (int mi = 0; mi < N_MS; mi++)
        for (int si = 0; si < N_SHAPES; si++) {
            const double *v = tflops[mi][si];
            if (v[0] < 0 && v[1] < 0 && v[2] < 0 && v[3] < 0) continue;
            printf("| %d | %lldx%lld |", k_ms[mi], (long long)k_shapes[si][0], (long long)k_shapes[si][1]);
            for (int ti = 0; ti < N_TYPES; ti++) {
                if (v[ti] >= 0) printf(" %.1f |", v[ti]);
                else printf(" - |");
                if (v[ti] >= 0 && k_ms[mi] >= 4096) sum[ti] += v[ti], cnt[ti]++;
            }
            for (int ti = 2; ti < N_TYPES; ti++) {
                if (v[ti] >= 0 && v[0] > 0) {
                    printf(" %.0f%% |", 100 * v[ti] / v[0]);
                    if (k_ms[mi] >= 4096) sum_r[ti] += v[ti] / v[0], cnt_r[ti]++;
                } else printf(" - |");
            }
            printf("\n");
        }
    printf("\nlab_gemm: summary: validation %d/%d ok; mean TFLOP/s at M >= 4096: F16 %.1f, BF16 %.1f, Q8_0 %.1f "
           "(%.0f%% of F16), Q4_K %.1f (%.0f%% of F16)%s%s\n", n_ok, n_val,
           cnt[0] ? sum[0] / cnt[0] : 0, cnt[1] ? sum[1] / cnt[1] : 0, cnt[2] ? sum[2] / cnt[2] : 0,
           cnt_r[2] ? 100 * sum_r[2] / cnt_r[2] : 0, cnt[3] ? sum[3] / cnt[3] : 0,
           cnt_r[3] ? 100 * sum_r[3] / cnt_r[3] : 0, skipped ? "; some shapes not run (time budget)" : "",
           dev_err ? "; STOPPED by a device error" : "");
    if (e0) d->api.cuEventDestroy(e0);
    if (e1) d->api.cuEventDestroy(e1);
    cuda_free(d, dx), cuda_free(d, dy), cuda_free(d, dw), cuda_free(d, ds);
    cuda_close(d);
    if (dev_err) return 4;
    return n_ok == n_val ? 0 : 1;
}

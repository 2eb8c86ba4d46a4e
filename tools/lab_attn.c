/* lab_attn.c — the FlashAttention prefill kernel lab (issue #10): checks ptx/flash_prefill.ptx
 * (through cuda_flash_prefill) against the CPU reference, then times it.
 *
 *   build/lab_attn [-s LENGTHS] [-k KVTYPES] [-r REPS] [--no-check]
 *
 * Check: f16 and q8 pages, 8 q / 2 kv heads of 128 (GQA 4) and 4 q / 4 kv heads of 64, prefill
 * chunks at pos0 = 0 and after an earlier chunk, causal and window + sinks; the GPU output
 * against kvcache.c's kv_attend_block on the same page bytes (max abs error <= 2e-3 with
 * |v| <= 1.01: tests/test_cuda_fa.c explains the bound). Timing: for each S in LENGTHS
 * (default 4096,16384,65536) and each page type in KVTYPES (default f16,q8): one causal
 * prefill of S queries over S keys, 32 q / 8 kv heads, head dim 128, pages of 64 tokens
 * written by the GPU's own rope_kv_store from seeded random rows; one warm-up launch, then the
 * best of REPS (default 3) timed with CUDA events. Prints one line per run:
 *   lab_attn: time kv f16 S 16384: 1.234 ms, 356.4 TFLOP/s
 * with causal FLOPs = 4 S^2 H D / 2 (the QK^T and PV products over the visible half).
 *
 * Exit: 0 done (the check passed), 2 the kernel disagrees with the CPU reference, 4 no GPU or
 * not enough GPU memory (one line: "lab_attn: SKIP: ..."), 1 bad flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ops.h"
#include "kvcache.h"
#include "util.h"

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    trng r;
    trng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (trng_f32(&r) * 2 - 1) * scale + 0.01f;
}

static CUdeviceptr upload_new(cuda_dev *d, const void *host, size_t bytes, terr *e) {
    CUdeviceptr p = 0;
    if (cuda_alloc(d, &p, bytes, e)) return 0;
    if (host && cuda_upload(d, p, host, bytes, e)) {
        cuda_free(d, p);
        return 0;
    }
    return p;
}

/* One check: returns the max abs error, or -1 with e set. */
static double check_one(cuda_dev *d, kv_dtype dt, int H, int rep, int D, int64_t pos0, int64_t n, int64_t window,
                        int64_t sinks, terr *e) {
    const int P = 48, n_head = H * rep; /* 48: key tiles straddle pages */
    const int64_t len = pos0 + n;
    kv_config cfg = {.n_layer = 1, .n_kv_head = H, .head_dim = D, .head_dim_v = D, .page_tokens = P,
                     .dtype = dt, .n_pages = (len + P - 1) / P + 1};
    kv_cache c;
    int seq;
    double err = -1;
    float *k = NULL, *v = NULL, *q = NULL, *want = NULL, *got = NULL;
    CUdeviceptr dk = 0, dv = 0, dbt = 0, dq = 0, dout = 0;
    if (kv_open(&c, &cfg, e) || kv_seq_new(&c, &seq, e) || kv_seq_append(&c, seq, len, e)) goto out;
    size_t nk = (size_t)len * H * D, nq = (size_t)n * n_head * D;
    k = tmalloc_array(nk, sizeof(float)), v = tmalloc_array(nk, sizeof(float));
    q = tmalloc_array(nq, sizeof(float)), want = tmalloc_array(nq, sizeof(float));
    got = tmalloc_array(nq, sizeof(float));
    if (!k || !v || !q || !want || !got) {
        terr_set(e, TOME_ERESOURCE, "out of memory");
        goto out;
    }
    fill(k, nk, 11 + (uint64_t)len, 1.0f);
    fill(v, nk, 12 + (uint64_t)len, 1.0f);
    fill(q, nq, 13 + (uint64_t)len, 2.0f);
    kv_store(&c, seq, 0, 0, len, k, v);
    kv_attn a = {.n_head = n_head, .scale = 1.0f / sqrtf((float)D), .window = window, .sinks = sinks};
    if (kv_attend_block(&c, seq, 0, &a, q, n, pos0, want)) {
        terr_set(e, TOME_EINPUT, "kv_attend_block failed");
        goto out;
    }
    int64_t np;
    const int32_t *pages = kv_seq_pages(&c, seq, &np);
    if (!(dk = upload_new(d, c.k[0], c.page_bytes_k * c.cfg.n_pages, e)) ||
        !(dv = upload_new(d, c.v[0], c.page_bytes_v * c.cfg.n_pages, e)) ||
        !(dbt = upload_new(d, pages, sizeof(int32_t) * np, e)) || !(dq = upload_new(d, q, sizeof(float) * nq, e)) ||
        !(dout = upload_new(d, NULL, sizeof(float) * nq, e)))
        goto out;
    cuda_kv_layer L = {dk, dv, c.page_bytes_k, c.page_bytes_v, P, H, D, D};
    if (cuda_flash_prefill(d, dout, dq, (int)n, n_head, &L, dt, dbt, pos0, a.scale, window, sinks, e) ||
        cuda_download(d, got, dout, sizeof(float) * nq, e))
        goto out;
    err = 0;
    for (size_t i = 0; i < nq; i++) {
        double x = fabs((double)got[i] - want[i]);
        if (!(x == x)) x = INFINITY;
        if (x > err) err = x;
    }
out:
    cuda_free(d, dk), cuda_free(d, dv), cuda_free(d, dbt), cuda_free(d, dq), cuda_free(d, dout);
    free(k), free(v), free(q), free(want), free(got);
    kv_close(&c);
    return err;
}

/* Times one causal prefill of S tokens; returns 0 and the best ms, or an error code. */
static int time_one(cuda_dev *d, kv_dtype dt, int64_t S, int reps, double *best_ms, terr *e) {
    const int H = 8, rep = 4, D = 128, P = 64, n_head = H * rep;
    const int64_t np = (S + P - 1) / P;
    const size_t pbk = kv_page_bytes(dt, H, D, P), nkv = (size_t)S * H * D, nq = (size_t)S * n_head * D;
    CUdeviceptr kp = 0, vp = 0, bt = 0, kf = 0, vf = 0, q = 0, out = 0;
    CUevent a = NULL, b = NULL;
    int rc = 0;
    float *h = tmalloc_array(nkv, sizeof(float));
    int32_t *ids = tmalloc_array((size_t)np, sizeof(int32_t));
    if (!h || !ids) {
        rc = terr_set(e, TOME_ERESOURCE, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < np; i++) ids[i] = (int32_t)((i * 7919) % np); /* scattered pages */
    if (!(kp = upload_new(d, NULL, pbk * (size_t)np, e)) || !(vp = upload_new(d, NULL, pbk * (size_t)np, e)) ||
        !(bt = upload_new(d, ids, sizeof(int32_t) * (size_t)np, e)) || !(q = upload_new(d, NULL, nq * 4, e)) ||
        !(out = upload_new(d, NULL, nq * 4, e))) {
        rc = e->code;
        goto out;
    }
    cuda_kv_layer L = {kp, vp, pbk, pbk, P, H, D, D};
    /* K, V rows through the GPU's own page writer (no rotation), Q random */
    fill(h, nkv, 21, 1.0f);
    if (!(kf = upload_new(d, h, nkv * 4, e))) { rc = e->code; goto out; }
    fill(h, nkv, 22, 1.0f);
    if (!(vf = upload_new(d, h, nkv * 4, e))) { rc = e->code; goto out; }
    if ((rc = cuda_rope_kv_store(d, &L, dt, bt, 0, (int)S, 0, kf, vf, 0, 0, 0, 0, e))) goto out;
    cuda_free(d, kf), cuda_free(d, vf);
    kf = vf = 0;
    for (int64_t part = 0; part < 4; part++) { /* Q in four slices of the host buffer */
        size_t n = nq / 4;
        fill(h, n, 23 + (uint64_t)part, 2.0f);
        if ((rc = cuda_upload(d, q + part * n * 4, h, n * 4, e))) goto out;
    }
    const float scale = 1.0f / sqrtf((float)D);
    if ((rc = cuda_flash_prefill(d, out, q, (int)S, n_head, &L, dt, bt, 0, scale, 0, 0, e)) || (rc = cuda_sync(d, e)))
        goto out;
    if (d->api.cuEventCreate(&a, 0) || d->api.cuEventCreate(&b, 0)) {
        rc = terr_set(e, TOME_ERESOURCE, "cuEventCreate failed");
        goto out;
    }
    *best_ms = INFINITY;
    for (int r = 0; r < reps && !rc; r++) {
        float ms = 0;
        if (d->api.cuEventRecord(a, d->stream) ||
            (rc = cuda_flash_prefill(d, out, q, (int)S, n_head, &L, dt, bt, 0, scale, 0, 0, e)) ||
            d->api.cuEventRecord(b, d->stream) || d->api.cuEventSynchronize(b) || d->api.cuEventElapsedTime(&ms, a, b)) {
            if (!rc) rc = terr_set(e, TOME_ERESOURCE, "timing S=%lld: a CUDA event call failed", (long long)S);
            break;
        }
        if (ms < *best_ms) *best_ms = ms;
    }
out:
    if (a) d->api.cuEventDestroy(a);
    if (b) d->api.cuEventDestroy(b);
    CUdeviceptr bufs[] = {kp, vp, bt, kf, vf, q, out};
    for (size_t i = 0; i < TOME_ARRAY_LEN(bufs); i++) cuda_free(d, bufs[i]);
    free(h), free(ids);
    return rc;
}

int main(int argc, char **argv) {
    const char *lens = "4096,16384,65536", *kvs = "f16,q8";
    int reps = 3, check = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) lens = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) kvs = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-check")) check = 0;
        else {
            fprintf(stderr, "usage: lab_attn [-s LENGTHS] [-k f16,q8,q4] [-r REPS] [--no-check]\n");
            return TOME_EFLAGS;
        }
    }
    if (reps < 1 || reps > 100) {
        fprintf(stderr, "lab_attn: -r %d: 1 .. 100\n", reps);
        return TOME_EFLAGS;
    }
    char why[256] = "";
    if (cuda_device_count(why, sizeof why) == 0) {
        printf("lab_attn: SKIP: no GPU (%s)\n", why);
        return TOME_ERESOURCE;
    }
    cuda_dev *d = NULL;
    terr e = {0};
    if (cuda_open(&d, 0, &e)) {
        printf("lab_attn: SKIP: %s\n", e.msg);
        return TOME_ERESOURCE;
    }
    printf("lab_attn: GPU 0: %s (sm_%d%d, %d SMs), modules from %s\n", d->name, d->cc_major, d->cc_minor, d->n_sm,
           d->from_cubin ? "build-time cubins" : "the driver's JIT");
    int rc = 0;
    if (check) {
        static const struct { kv_dtype dt; int H, rep, D; int64_t pos0, n, window, sinks; } cs[] = {
            {KV_F16, 2, 4, 128, 0, 1000, 0, 0},  {KV_F16, 2, 4, 128, 700, 1337, 0, 0},
            {KV_Q8, 2, 4, 128, 0, 2048, 0, 0},   {KV_Q8, 2, 4, 128, 100, 777, 256, 4},
            {KV_F16, 4, 1, 64, 64, 300, 0, 0},   {KV_Q4, 4, 1, 64, 0, 513, 100, 8},
        };
        for (size_t i = 0; i < TOME_ARRAY_LEN(cs); i++) {
            double err = check_one(d, cs[i].dt, cs[i].H, cs[i].rep, cs[i].D, cs[i].pos0, cs[i].n, cs[i].window,
                                   cs[i].sinks, &e);
            const char *tn = cs[i].dt == KV_F16 ? "f16" : cs[i].dt == KV_Q8 ? "q8" : "q4";
            if (err < 0) {
                printf("lab_attn: check %s: error: %s\n", tn, e.msg);
                rc = TOME_EINPUT;
                break;
            }
            int ok = err <= 2e-3;
            printf("lab_attn: check kv %s, %d/%d heads of %d, pos0 %lld, n %lld, window %lld, sinks %lld: max abs err "
                   "%.3g %s\n",
                   tn, cs[i].H * cs[i].rep, cs[i].H, cs[i].D, (long long)cs[i].pos0, (long long)cs[i].n,
                   (long long)cs[i].window, (long long)cs[i].sinks, err, ok ? "ok" : "FAIL");
            if (!ok) rc = TOME_EINPUT;
        }
        printf("lab_attn: check %s\n", rc ? "FAILED" : "ok");
    }
    for (const char *s = lens; rc == 0 && *s;) {
        int64_t S = strtoll(s, NULL, 10);
        for (const char *k = kvs; rc == 0 && *k;) {
            kv_dtype dt = !strncmp(k, "q8", 2) ? KV_Q8 : !strncmp(k, "q4", 2) ? KV_Q4 : KV_F16;
            double ms = 0;
            memset(&e, 0, sizeof e);
            if (S < 1 || S > INT32_MAX / 32) {
                printf("lab_attn: time S %lld: out of range\n", (long long)S);
                rc = TOME_EFLAGS;
            } else if (time_one(d, dt, S, reps, &ms, &e)) {
                printf("lab_attn: time kv %s S %lld: %s\n", dt == KV_F16 ? "f16" : dt == KV_Q8 ? "q8" : "q4",
                       (long long)S, e.msg);
                rc = e.code ? e.code : TOME_ERESOURCE;
            } else {
                double flops = 2.0 * (double)S * (double)S * 32 * 128; /* 4 S^2 H D / 2 */
                printf("lab_attn: time kv %s S %lld: %.3f ms, %.1f TFLOP/s\n",
                       dt == KV_F16 ? "f16" : dt == KV_Q8 ? "q8" : "q4", (long long)S, ms, flops / (ms * 1e-3) / 1e12);
            }
            fflush(stdout);
            k = strchr(k, ',');
            k = k ? k + 1 : "";
        }
        s = strchr(s, ',');
        s = s ? s + 1 : "";
    }
    cuda_close(d);
    return rc;
}

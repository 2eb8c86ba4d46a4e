/* test_cuda_fa.c — the FlashAttention-2 prefill kernel (ptx/flash_prefill.ptx through
 * cuda_flash_prefill) against kvcache.c's f32 attention (kv_attend_block) on the same page
 * bytes: f16, q8 and q4 pages, GQA groups of 1 / 2 / 4 / 8, head dims 64, 80, 96, 128 (and a V
 * dim unlike K's), chunk lengths 1, 17, 64, 113, 1000, 4097 at pos0 = 0 and after earlier
 * chunks (pos0 > 0), page sizes 16, 48 (ragged last pages; key tiles straddle pages) and 64,
 * causal and window + sinks (including a chunk whose tiles fall in the gap between them).
 *
 * On a GPU (tests/gpu.sh ops) this checks the PTX. Without one these SKIP, except in the
 * gpu-emu stage, where tests/fake_cuda.c's emu_flash_prefill follows the kernel's design
 * (fragment layouts, f16 roundings, tile loop, online softmax) and so checks the design
 * against the f32 reference; the launcher checks run everywhere.
 *
 * Tolerance: max |gpu - cpu| <= 2e-3 with every V value in [-0.99, 1.01]. The kernel rounds
 * Q * scale * log2(e), the softmax weights and (q8/q4 pages) the dequantised K/V values to
 * f16, each a relative error <= 2^-11 = 4.9e-4; outputs are convex combinations of V rows, so
 * a weight error shifts an output by at most that relative error times max |v| (a row that
 * sees one key gets its V row rounded to f16: 4.9e-4), and the Q rounding perturbs logits
 * of magnitude <= ~6 (log2 units) by ~1e-3 absolute worst case, i.e. weights by ~7e-4
 * relative. The sum stays under 2e-3; a mask off by one key, a wrong page or a wrong head is
 * >= 1/(keys seen) ~ 1e-2 on the short rows and windows every case has. */
#include "test.h"

#include <math.h>

#include "cuda/ops.h"
#include "gpu_test.h"
#include "kvcache.h"

static CUdeviceptr fa_dev(cuda_dev *d, const void *host, size_t bytes, terr *e) {
    CUdeviceptr p = 0;
    if (cuda_alloc(d, &p, bytes, e)) return 0;
    if (host && cuda_upload(d, p, host, bytes, e)) return 0;
    if (!host) d->api.cuMemsetD8Async(p, 0xFF, bytes, d->stream); /* NaN: unwritten outputs show */
    return p;
}

typedef struct fa_case {
    kv_dtype dt;
    int H, rep, D, Dv, P; /* kv heads, q heads per kv head, K / V head dims, page tokens */
    int64_t pos0, n;      /* the chunk: queries pos0 .. pos0+n-1 (keys 0 .. pos0+n-1 stored) */
    int64_t window, sinks;
    int drop0, drop1;     /* block-table slots [drop0, drop1) uploaded as -1 (dropped pages) */
} fa_case;

/* Runs one case; returns the max abs error (INFINITY for NaN) or -1 with msg on a setup failure. */
static double fa_run(cuda_dev *d, const fa_case *k, uint64_t seed, char *msg, size_t cap) {
    const int64_t len = k->pos0 + k->n;
    const int n_head = k->H * k->rep;
    kv_config cfg = {.n_layer = 2, .n_kv_head = k->H, .head_dim = k->D, .head_dim_v = k->Dv,
                     .page_tokens = k->P, .dtype = k->dt, .n_pages = (len + k->P - 1) / k->P + 3};
    kv_cache c;
    terr e = {0};
    int seq, decoy;
    /* a decoy sequence takes the first pages and is freed: the block table is not 0, 1, 2 ... */
    if (kv_open(&c, &cfg, &e) || kv_seq_new(&c, &decoy, &e) || kv_seq_append(&c, decoy, 2 * k->P, &e) ||
        kv_seq_new(&c, &seq, &e) || kv_seq_append(&c, seq, len, &e)) {
        snprintf(msg, cap, "kv cache: %s", e.msg);
        return -1;
    }
    kv_seq_free(&c, decoy);
    float *kk = malloc(sizeof(float) * len * k->H * k->D), *vv = malloc(sizeof(float) * len * k->H * k->Dv);
    size_t nq = (size_t)k->n * n_head * k->D, no = (size_t)k->n * n_head * k->Dv;
    float *q = malloc(sizeof(float) * nq), *want = malloc(sizeof(float) * no), *got = malloc(sizeof(float) * no);
    double err = -1;
    if (!kk || !vv || !q || !want || !got) {
        snprintf(msg, cap, "out of memory");
        goto done;
    }
    gpu_fill_random(kk, len * k->H * k->D, seed, 1.0f);
    gpu_fill_random(vv, len * k->H * k->Dv, seed + 1, 1.0f);
    gpu_fill_random(q, (int64_t)nq, seed + 2, 2.0f);
    if (kv_store(&c, seq, 1, 0, len, kk, vv)) {
        snprintf(msg, cap, "kv_store failed");
        goto done;
    }
    kv_attn a = {.n_head = n_head, .scale = 1.0f / sqrtf((float)k->D), .window = k->window, .sinks = k->sinks};
    if (kv_attend_block(&c, seq, 1, &a, q, k->n, k->pos0, want)) {
        snprintf(msg, cap, "kv_attend_block failed");
        goto done;
    }
    int64_t np;
    const int32_t *pages = kv_seq_pages(&c, seq, &np);
    /* streaming eviction's holes: the kernel must not read them (the mask hides their keys) */
    int32_t *table = malloc(sizeof(int32_t) * np);
    if (!table) {
        snprintf(msg, cap, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < np; i++) table[i] = i >= k->drop0 && i < k->drop1 ? -1 : pages[i];
    CUdeviceptr dk = fa_dev(d, c.k[1], c.page_bytes_k * c.cfg.n_pages, &e);
    CUdeviceptr dv = dk ? fa_dev(d, c.v[1], c.page_bytes_v * c.cfg.n_pages, &e) : 0;
    CUdeviceptr dbt = dv ? fa_dev(d, table, sizeof(int32_t) * np, &e) : 0;
    free(table);
    CUdeviceptr dq = dbt ? fa_dev(d, q, sizeof(float) * nq, &e) : 0;
    CUdeviceptr dout = dq ? fa_dev(d, NULL, sizeof(float) * no, &e) : 0;
    cuda_kv_layer L = {.k = dk, .v = dv, .page_bytes_k = c.page_bytes_k, .page_bytes_v = c.page_bytes_v,
                       .page_tokens = k->P, .n_kv_head = k->H, .head_dim = k->D, .head_dim_v = k->Dv};
    if (!dout || cuda_flash_prefill(d, dout, dq, (int)k->n, n_head, &L, k->dt, dbt, k->pos0, a.scale, k->window,
                                    k->sinks, &e) ||
        cuda_download(d, got, dout, sizeof(float) * no, &e)) {
        snprintf(msg, cap, "%s", e.msg);
    } else {
        err = 0;
        for (size_t i = 0; i < no; i++) {
            double x = fabs((double)got[i] - want[i]);
            if (!(x == x)) x = INFINITY;
            if (x > err) err = x;
        }
    }
    cuda_free(d, dk), cuda_free(d, dv), cuda_free(d, dbt), cuda_free(d, dq), cuda_free(d, dout);
done:
    free(kk), free(vv), free(q), free(want), free(got);
    kv_close(&c);
    return err;
}

#define FA_TOL 2e-3

static void fa_cases(tctx *T, const fa_case *cs, int n, uint64_t seed) {
    GPU_OR_SKIP(d);
    for (int i = 0; i < n; i++) {
        const fa_case *k = &cs[i];
        char msg[1200] = "";
        double err = fa_run(d, k, seed + 16 * (uint64_t)i, msg, sizeof msg);
        CHECKF(err >= 0 && err <= FA_TOL,
               "dtype %d, %d kv heads x %d, dims %d/%d, P %d, pos0 %lld, n %lld, window %lld, sinks %lld: "
               "max abs err %.3g %s",
               (int)k->dt, k->H, k->rep, k->D, k->Dv, k->P, (long long)k->pos0, (long long)k->n,
               (long long)k->window, (long long)k->sinks, err, msg);
    }
    cuda_close(d);
}

TEST(gpu_op_flash_prefill_f16) {
    static const fa_case cs[] = {
        {KV_F16, 2, 1, 64, 64, 48, 0, 1, 0, 0, 0, 0},     /* one query */
        {KV_F16, 2, 4, 128, 128, 48, 0, 17, 0, 0, 0, 0},  /* a partial tile, GQA 4 */
        {KV_F16, 1, 8, 128, 128, 64, 0, 64, 0, 0, 0, 0},  /* GQA 8: 64 rows = 8 queries per block */
        {KV_F16, 2, 1, 128, 128, 48, 30, 113, 0, 0, 0, 0}, /* a chunk after an earlier one */
        {KV_F16, 1, 8, 64, 64, 48, 37, 1000, 0, 0, 0, 0},
        {KV_F16, 1, 2, 96, 96, 16, 5, 113, 0, 0, 0, 0},  /* head dim 96, small pages */
        {KV_F16, 2, 1, 128, 64, 48, 0, 64, 0, 0, 0, 0},  /* V dim unlike K's */
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 1000);
}

TEST(gpu_op_flash_prefill_q8) {
    static const fa_case cs[] = {
        {KV_Q8, 2, 1, 64, 64, 48, 0, 1, 0, 0, 0, 0},
        {KV_Q8, 1, 8, 128, 128, 64, 5, 64, 0, 0, 0, 0},
        {KV_Q8, 2, 4, 128, 128, 48, 100, 113, 0, 0, 0, 0},
        {KV_Q8, 1, 4, 80, 80, 48, 0, 113, 0, 0, 0, 0},  /* head dim 80 */
        {KV_Q8, 1, 1, 128, 128, 16, 0, 1000, 0, 0, 0, 0},
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 2000);
}

TEST(gpu_op_flash_prefill_q4) {
    static const fa_case cs[] = {
        {KV_Q4, 2, 1, 64, 64, 48, 0, 17, 0, 0, 0, 0},
        {KV_Q4, 2, 4, 64, 64, 48, 100, 113, 0, 0, 0, 0},
        {KV_Q4, 1, 8, 128, 128, 64, 0, 64, 0, 0, 0, 0},
        {KV_Q4, 1, 2, 96, 96, 48, 3, 1000, 0, 0, 0, 0}, /* 96 = three q4 groups */
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 3000);
}

TEST(gpu_op_flash_prefill_window_sinks) {
    static const fa_case cs[] = {
        {KV_F16, 1, 4, 128, 128, 48, 300, 113, 50, 3, 0, 0},   /* window inside one tile's span */
        {KV_Q8, 2, 1, 128, 128, 16, 0, 1000, 200, 4, 0, 0},    /* the window slides over the chunk */
        {KV_Q4, 1, 4, 128, 128, 64, 2000, 64, 1000, 16, 0, 0}, /* tiles between sinks and window skipped */
        {KV_F16, 2, 8, 64, 64, 48, 0, 113, 1, 0, 0, 0},        /* window 1: each query sees itself */
        {KV_F16, 1, 1, 64, 64, 48, 500, 17, 100, 200, 0, 0},   /* sinks reaching into the window */
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 4000);
}

/* Pages a window has left behind, dropped from the block table (-1): one inside the first key
 * tile (keys 50 .. 99 beside the sinks 0 .. 15), the rest in skipped tiles. */
TEST(gpu_op_flash_prefill_dropped_pages) {
    static const fa_case cs[] = {
        {KV_Q8, 1, 4, 64, 64, 50, 400, 10, 64, 16, 1, 4},
        {KV_F16, 2, 2, 128, 128, 50, 380, 113, 64, 16, 1, 5},
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 6000);
}

TEST(gpu_op_flash_prefill_long) {
    static const fa_case cs[] = {
        {KV_F16, 1, 1, 64, 64, 48, 0, 4097, 0, 0, 0, 0},     /* 65 row blocks, ragged last page */
        {KV_Q8, 1, 1, 128, 128, 48, 0, 4097, 300, 4, 0, 0},  /* long with window + sinks */
    };
    fa_cases(T, cs, (int)TOME_ARRAY_LEN(cs), 5000);
}

/* The launcher refuses shapes and arguments before any driver call (a zeroed cuda_dev: good
 * arguments reach "not loaded"); runs without a GPU. */
TEST(cuda_flash_prefill_preconditions) {
    cuda_dev d;
    memset(&d, 0, sizeof d);
    terr e = {0};
    const size_t pb = kv_page_bytes(KV_F16, 2, 128, 64);
    cuda_kv_layer L = {.k = 4096, .v = 8192, .page_bytes_k = pb, .page_bytes_v = pb, .page_tokens = 64,
                       .n_kv_head = 2, .head_dim = 128, .head_dim_v = 128};
    CHECK(cuda_flash_prefill_ok(&L, 8));
    CHECK(!cuda_flash_prefill_ok(&L, 7)); /* not a multiple of the kv heads */
    cuda_kv_layer odd = L;
    odd.head_dim = 72;
    CHECK(!cuda_flash_prefill_ok(&odd, 8));
    odd.head_dim = 256;
    CHECK(!cuda_flash_prefill_ok(&odd, 8));
    odd = L;
    odd.head_dim_v = 8;
    CHECK(!cuda_flash_prefill_ok(&odd, 8));
    /* good arguments: only the missing kernel stops it */
    CHECK(cuda_flash_prefill(&d, 256, 512, 10, 8, &L, KV_F16, 1024, 0, 0.1f, 0, 0, &e) == TOME_ERESOURCE);
    CHECKF(strstr(e.msg, "not loaded") != NULL, "%s", e.msg);
    struct {
        int n_q, n_head;
        kv_dtype dt;
        int64_t pos0, window;
        float scale;
        size_t pbk;
    } bad[] = {
        {0, 8, KV_F16, 0, 0, 0.1f, pb},           /* no queries */
        {10, 8, (kv_dtype)7, 0, 0, 0.1f, pb},     /* unknown dtype */
        {10, 6, KV_F16, 0, 0, 0.1f, pb},          /* 6 heads over 2 kv heads is fine ... */
        {10, 8, KV_F16, -1, 0, 0.1f, pb},         /* negative position */
        {10, 8, KV_F16, INT32_MAX, 0, 0.1f, pb},  /* positions past 2^31 */
        {10, 8, KV_F16, 0, -5, 0.1f, pb},         /* negative window */
        {10, 8, KV_F16, 0, 0, NAN, pb},           /* no scale */
        {10, 8, KV_Q8, 0, 0, 0.1f, pb / 4},       /* pages smaller than kvcache.h's */
    };
    /* q must allow 16-byte loads */
    memset(&e, 0, sizeof e);
    CHECK(cuda_flash_prefill(&d, 256, 520, 10, 8, &L, KV_F16, 1024, 0, 0.1f, 0, 0, &e) == TOME_ERESOURCE);
    CHECKF(strstr(e.msg, "aligned") != NULL, "%s", e.msg);
    for (size_t i = 0; i < TOME_ARRAY_LEN(bad); i++) {
        cuda_kv_layer l2 = L;
        l2.page_bytes_k = bad[i].pbk;
        memset(&e, 0, sizeof e);
        int rc = cuda_flash_prefill(&d, 256, 512, bad[i].n_q, bad[i].n_head, &l2, bad[i].dt, 1024, bad[i].pos0,
                                    bad[i].scale, bad[i].window, 0, &e);
        CHECKF(rc == TOME_ERESOURCE, "case %zu: rc %d", i, rc);
        if (i == 2) CHECKF(strstr(e.msg, "not loaded") != NULL, "case %zu: %s", i, e.msg);
        else CHECKF(strstr(e.msg, "flash_prefill") != NULL && strstr(e.msg, "not loaded") == NULL,
                    "case %zu: %s", i, e.msg);
    }
}

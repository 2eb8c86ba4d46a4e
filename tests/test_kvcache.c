/* test_kvcache.c — the paged KV cache: byte layout decoded from kvcache.h's description,
 * quantisation error bounds per row, paged attention (decode, prefill block, window, sinks,
 * partial + merge, GQA 1/4/8, KV lengths 1/113/4097 with ragged last pages) against a float64
 * dense reference, prefix sharing with copy on write, refcounts, pool exhaustion, threads. */
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "kvcache.h"
#include "util.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef struct fx {
    kv_cache c;
    int seq, H, D, Dv, len;
    float *k, *v;     /* [len][H][D] originals as stored */
    float *kq, *vq;   /* [len][H][D] read back (dequantised) */
} fx;

/* Rows of mixed magnitude (scale 0.05 .. 4, some offset), seeded, never all zero. */
static void fill_rows(trng *r, float *x, int64_t rows, int d) {
    for (int64_t i = 0; i < rows; i++) {
        float s = 0.05f + 4.0f * trng_f32(r);
        float off = trng_f32(r) < 0.3f ? 2.0f * (trng_f32(r) - 0.5f) : 0.0f; /* q4 min matters */
        /* sum of three uniforms: bell-shaped, and much cheaper than trng_normal's log/cos
         * (filling 4097-token caches dominated the test's time under ASan) */
        for (int j = 0; j < d; j++)
            x[i * d + j] = s * 2.0f * (trng_f32(r) + trng_f32(r) + trng_f32(r) - 1.5f) + off;
    }
}

static int fx_open_ex(tctx *T, fx *f, kv_dtype dt, int P, int H, int D, int len, uint64_t seed,
                      int force_scalar) {
    memset(f, 0, sizeof *f);
    kv_config cfg = {.n_layer = 2, .n_kv_head = H, .head_dim = D, .page_tokens = P,
                     .dtype = dt, .n_pages = (len + P - 1) / P + 4, .force_scalar = force_scalar};
    terr e = {0};
    if (kv_open(&f->c, &cfg, &e) != 0) { tt_fail(T, __FILE__, __LINE__, "%s", e.msg); return 0; }
    f->H = H, f->D = D, f->Dv = D, f->len = len;
    size_t n = (size_t)len * H * D;
    f->k = malloc(n * 4), f->v = malloc(n * 4), f->kq = malloc(n * 4), f->vq = malloc(n * 4);
    trng r;
    trng_seed(&r, seed);
    fill_rows(&r, f->k, (int64_t)len * H, D);
    fill_rows(&r, f->v, (int64_t)len * H, D);
    if (kv_seq_new(&f->c, &f->seq, &e) || kv_seq_append(&f->c, f->seq, len, &e)) {
        tt_fail(T, __FILE__, __LINE__, "%s", e.msg);
        return 0;
    }
    /* layer 1 holds the data (layer 0 gets other values, so a layer mix-up shows) */
    for (int64_t i = 0; i < len; i += 97) {
        int64_t n1 = TOME_MIN(97, len - i);
        size_t off = (size_t)i * H * D;
        if (kv_store(&f->c, f->seq, 1, i, n1, f->k + off, f->v + off) ||
            kv_store(&f->c, f->seq, 0, i, n1, f->v + off, f->k + off)) {
            tt_fail(T, __FILE__, __LINE__, "kv_store failed at %lld", (long long)i);
            return 0;
        }
    }
    for (int64_t j = 0; j < len; j++)
        for (int h = 0; h < H; h++)
            if (kv_load_row(&f->c, f->seq, 1, j, h, f->kq + ((size_t)j * H + h) * D,
                            f->vq + ((size_t)j * H + h) * D)) {
                tt_fail(T, __FILE__, __LINE__, "kv_load_row failed");
                return 0;
            }
    return 1;
}

static int fx_open(tctx *T, fx *f, kv_dtype dt, int P, int H, int D, int len, uint64_t seed) {
    return fx_open_ex(T, f, dt, P, H, D, len, seed, 0);
}

static void fx_close(fx *f) {
    kv_close(&f->c);
    free(f->k), free(f->v), free(f->kq), free(f->vq);
}

static int sees(int64_t j, int64_t p, int64_t window, int64_t sinks) {
    if (j > p) return 0;
    if (window <= 0) return 1;
    return j > p - window || j < sinks;
}

/* Dense float64 attention of one query head over K/V [len][H][D] rows of kv head g. */
static void ref_attend(const float *K, const float *V, int H, int D, int g, const float *q,
                       double scale, int64_t p, int64_t window, int64_t sinks, double *out) {
    double mx = -INFINITY, l = 0, *sc = malloc(sizeof(double) * (size_t)(p + 1));
    for (int64_t j = 0; j <= p; j++) {
        if (!sees(j, p, window, sinks)) continue;
        const float *kj = K + ((size_t)j * H + g) * D;
        double s = 0;
        for (int i = 0; i < D; i++) s += (double)q[i] * kj[i];
        sc[j] = s * scale;
        mx = fmax(mx, sc[j]);
    }
    for (int i = 0; i < D; i++) out[i] = 0;
    for (int64_t j = 0; j <= p; j++) {
        if (!sees(j, p, window, sinks)) continue;
        const float *vj = V + ((size_t)j * H + g) * D;
        double w = exp(sc[j] - mx);
        l += w;
        for (int i = 0; i < D; i++) out[i] += w * vj[i];
    }
    for (int i = 0; i < D; i++) out[i] /= l;
    free(sc);
}

/* ---- layout and quantisation ---------------------------------------------------------------- */

static float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return tf16_to_f32(h);
}

/* Decodes row (token t, head h) of page bytes following kvcache.h's text, not kvcache.c. */
static void decode_doc(kv_dtype dt, const uint8_t *page, int H, int P, int D, int h, int t,
                       float *out, float *d_out, float *m_out) {
    size_t rb = dt == KV_F16 ? 2 * D : dt == KV_Q8 ? D : D / 2;
    size_t vals = (size_t)H * P * rb, soff = (vals + 15) / 16 * 16;
    const uint8_t *row = page + ((size_t)h * P + t) * rb;
    int G = (D + 31) / 32;
    for (int i = 0; i < D; i++) {
        if (dt == KV_F16) out[i] = half(row + 2 * i);
        else if (dt == KV_Q8) {
            float d = half(page + soff + ((size_t)h * P + t) * 2);
            out[i] = d * (float)(int8_t)row[i];
            d_out[0] = d;
        } else {
            int g = i / 32;
            const uint8_t *dm = page + soff + (((size_t)h * P + t) * G + g) * 4;
            int q = (row[i / 2] >> (4 * (i % 2))) & 15;
            out[i] = half(dm) * (float)q + half(dm + 2);
            d_out[g] = half(dm), m_out[g] = half(dm + 2);
        }
    }
}

TEST(kv_layout_and_sizes) {
    /* the memory plan of DESIGN.md: 32 layers, 8 kv heads x 128 */
    CHECK(kv_bytes_per_token(32, 8, 128, KV_F16) == 131072);
    CHECK(kv_bytes_per_token(32, 8, 128, KV_Q8) == 66560);  /* 65 KiB */
    CHECK(kv_bytes_per_token(32, 8, 128, KV_Q4) == 40960);  /* 40 KiB */
    /* no padding at the real shapes: a page is exactly P tokens' worth */
    for (int P = 16; P <= 256; P *= 2)
        for (int dt = 0; dt < 3; dt++)
            CHECK(kv_page_bytes((kv_dtype)dt, 8, 128, P) * 2 * 32 ==
                  kv_bytes_per_token(32, 8, 128, (kv_dtype)dt) * (size_t)P);
    /* an awkward shape: 3 heads, d = 48 (q4 groups of 32 + 16), P = 5 */
    CHECK(kv_page_bytes(KV_Q4, 3, 48, 5) == 512);    /* 360 values, 368 + 3*5*2*4 = 488 -> 512 */
    CHECK(kv_scales_offset(KV_Q4, 3, 48, 5) == 368);
    CHECK(kv_page_bytes(KV_Q8, 3, 48, 5) == 768);    /* 720 + 30 = 750 -> 768 */
    CHECK(kv_page_bytes(KV_F16, 3, 48, 5) == 1536);  /* 1440 -> 1536 */

    for (int dt = 0; dt < 3; dt++) {
        fx f;
        REQUIRE(fx_open(T, &f, (kv_dtype)dt, 5, 3, 48, 23, 11 + dt));
        int64_t np;
        const int32_t *pages = kv_seq_pages(&f.c, f.seq, &np);
        CHECK(np == 5);
        int bad = 0;
        for (int j = 0; j < 23; j++)
            for (int h = 0; h < 3; h++) {
                float dec[48], d[2], m[2];
                const uint8_t *page = f.c.k[1] + (size_t)pages[j / 5] * f.c.page_bytes_k;
                decode_doc((kv_dtype)dt, page, 3, 5, 48, h, j % 5, dec, d, m);
                if (memcmp(dec, f.kq + ((size_t)j * 3 + h) * 48, sizeof dec) && bad++ < 3)
                    tt_fail(T, __FILE__, __LINE__, "dtype %d token %d head %d: bytes differ from "
                            "the documented layout", dt, j, h);
            }
        fx_close(&f);
    }
}

TEST(kv_quant_error_bounds) {
    const int dims[] = {16, 48, 128}; /* q4: whole-head group, ragged groups, 4 groups */
    trng r;
    trng_seed(&r, 99);
    for (size_t di = 0; di < TOME_ARRAY_LEN(dims); di++) {
        int D = dims[di];
        for (int dt = 0; dt < 3; dt++) {
            kv_config cfg = {.n_layer = 1, .n_kv_head = 1, .head_dim = D, .page_tokens = 8,
                             .dtype = (kv_dtype)dt, .n_pages = 8};
            kv_cache c;
            int seq;
            REQUIRE(kv_open(&c, &cfg, NULL) == 0);
            REQUIRE(kv_seq_new(&c, &seq, NULL) == 0);
            REQUIRE(kv_seq_append(&c, seq, 64, NULL) == 0);
            float x[64][128], y[128];
            fill_rows(&r, &x[0][0], 64, 128);
            for (int i = 0; i < D; i++) {
                x[0][i] = 1.5f;                   /* constant row */
                x[1][i] = 1e-6f * (float)(i + 1); /* tiny: subnormal f16 scales */
                x[2][i] = (i % 7) * 0.25f - 0.5f; /* exactly representable */
            }
            float xs[64 * 128];
            for (int t = 0; t < 64; t++) memcpy(xs + t * D, x[t], sizeof(float) * D);
            REQUIRE(kv_store(&c, seq, 0, 0, 64, xs, xs) == 0);
            int64_t np;
            const int32_t *pages = kv_seq_pages(&c, seq, &np);
            int bad = 0;
            for (int t = 0; t < 64; t++) {
                const float *xt = xs + t * D;
                REQUIRE(kv_load_row(&c, seq, 0, t, 0, y, NULL) == 0);
                float dec[128], d[4] = {0}, m[4] = {0};
                decode_doc((kv_dtype)dt, c.k[0] + (size_t)pages[t / 8] * c.page_bytes_k, 1, 8, D,
                           0, t % 8, dec, d, m);
                for (int g = 0; g * 32 < D; g++) {
                    int a = g * 32, b = TOME_MIN(D, a + 32);
                    double mn = xt[a], mxv = xt[a], amax = 0;
                    for (int i = a; i < b; i++) {
                        mn = fmin(mn, xt[i]), mxv = fmax(mxv, xt[i]);
                        amax = fmax(amax, fabs(xt[i]));
                    }
                    for (int i = 0; i < D; i++) amax = fmax(amax, fabs(xt[i]));
                    double dd = dt == KV_Q8 ? d[0] : d[g], bound;
                    if (dt == KV_Q8)
                        CHECKF(dd <= amax / 127 * (1 + 0x1p-10) + 0x1p-24, "q8 scale %.9g", dd);
                    if (dt == KV_Q4) {
                        CHECKF(m[g] <= mn && m[g] >= mn - fabs(mn) * 0x1p-10 - 0x1p-24,
                               "q4 min %.9g vs %.9g", m[g], mn);
                        CHECKF(dd <= (mxv - m[g]) / 15 * (1 + 0x1p-10) + 0x1p-24,
                               "q4 scale %.9g", dd);
                    }
                    for (int i = a; i < b; i++) {
                        double err = fabs((double)y[i] - xt[i]);
                        bound = dt == KV_F16 ? fabs(xt[i]) * 0x1p-11 + 0x1p-25
                                             : dd / 2 + fabs(xt[i]) * 0x1p-22 + 0x1p-30;
                        if (!(err <= bound) && bad++ < 4)
                            tt_fail(T, __FILE__, __LINE__, "D %d dtype %d row %d [%d]: x %.9g "
                                    "-> %.9g, err %.3g > %.3g", D, dt, t, i, xt[i], y[i], err,
                                    bound);
                    }
                }
                if (t == 2) /* exactly representable values come back exactly in f16 */
                    for (int i = 0; i < D && dt == KV_F16; i++) CHECK(y[i] == xt[i]);
            }
            kv_close(&c);
        }
    }
}

/* ---- attention against the dense reference --------------------------------------------------- */

/* Checks out (n_head x D, from the cache) against (a) float64 over the dequantised rows, within
 * float32 accumulation error, and (b) float64 over the original rows, within the bound derived
 * from the row errors: with D_max = max_j scale*|q.(k'_j - k_j)| over visible keys, the softmax
 * weights move by at most a factor exp(+-2 D_max), so
 *   |o' - o| <= (exp(2 D_max) - 1) * max|v'| + max|v' - v|.                                 */
static void check_query(tctx *T, fx *f, const char *what, const float *q, int n_head,
                        float scale, int64_t p, int64_t window, int64_t sinks, const float *out) {
    int rep = n_head / f->H, D = f->D, bad = 0;
    double ref[KV_MAX_HEAD_DIM], refo[KV_MAX_HEAD_DIM];
    /* every head is computed; the first and last of the first two groups and the last head
     * are checked (float64 references dominate the test's time, under ASan most of all) */
    int hs[5] = {0, rep - 1, rep, TOME_MIN(n_head - 1, 2 * rep - 1), n_head - 1};
    for (int hi = 0; hi < 5; hi++) {
        int h = hs[hi], g = h / rep;
        if (h >= n_head || (hi > 0 && h <= hs[hi - 1])) continue;
        const float *qh = q + (size_t)h * D;
        ref_attend(f->kq, f->vq, f->H, D, g, qh, scale, p, window, sinks, ref);
        ref_attend(f->k, f->v, f->H, D, g, qh, scale, p, window, sinks, refo);
        double dmax = 0, vmax = 0, dv = 0;
        for (int64_t j = 0; j <= p; j++) {
            if (!sees(j, p, window, sinks)) continue;
            size_t o = ((size_t)j * f->H + g) * D;
            const float *kj = f->k + o, *kqj = f->kq + o, *vj = f->v + o, *vqj = f->vq + o;
            double s = 0;
            for (int i = 0; i < D; i++) {
                s += (double)qh[i] * ((double)kqj[i] - kj[i]);
                vmax = fmax(vmax, fabs(vqj[i]));
                dv = fmax(dv, fabs((double)vqj[i] - vj[i]));
            }
            dmax = fmax(dmax, fabs(s) * scale);
        }
        double tol_a = 2e-5 * vmax + 1e-7;
        double tol_b = (exp(2 * dmax) - 1) * vmax + dv + tol_a;
#ifdef KV_TEST_VERBOSE /* -DKV_TEST_VERBOSE prints how close each check comes to its bound */
        double ea = 0, eb = 0;
        for (int i = 0; i < D; i++) {
            ea = fmax(ea, fabs(out[(size_t)h * D + i] - ref[i]));
            eb = fmax(eb, fabs(out[(size_t)h * D + i] - refo[i]));
        }
        printf("  %s p %lld h %d: vs dequantised %.2e (tol %.2e), vs original %.2e (bound %.2e)\n",
               what, (long long)p, h, ea, tol_a, eb, tol_b);
#endif
        for (int i = 0; i < D; i++) {
            double o = out[(size_t)h * D + i];
            if (!(fabs(o - ref[i]) <= tol_a) && bad++ < 3)
                tt_fail(T, __FILE__, __LINE__, "%s p %lld head %d [%d]: %.9g vs dequantised "
                        "ref %.9g (tol %.3g)", what, (long long)p, h, i, o, ref[i], tol_a);
            if (!(fabs(o - refo[i]) <= tol_b) && bad++ < 3)
                tt_fail(T, __FILE__, __LINE__, "%s p %lld head %d [%d]: %.9g vs original ref "
                        "%.9g (bound %.3g)", what, (long long)p, h, i, o, refo[i], tol_b);
        }
    }
}

static void rand_q(trng *r, float *q, int n) {
    for (int i = 0; i < n; i++) q[i] = trng_normal(r);
}

TEST(kv_attend_dtypes_lengths_gqa) {
    /* every group size 1..8: the AVX2 decode kernel has a code path per heads-per-pass count */
    const int lens[] = {1, 113, 4097}, gqa[] = {1, 2, 3, 4, 5, 6, 7, 8}, H = 2, D = 64;
    const char *names[] = {"f16", "q8", "q4"};
    trng r;
    trng_seed(&r, 5);
    float q[16 * 64], out[16 * 64];
    for (int dt = 0; dt < 3; dt++)
        for (size_t li = 0; li < TOME_ARRAY_LEN(lens); li++) {
            fx f;
            /* P = 64: 113 and 4097 both end on a ragged page; f16 also runs P = 16 */
            int P = dt == KV_F16 && li == 1 ? 16 : 64;
            REQUIRE(fx_open(T, &f, (kv_dtype)dt, P, H, D, lens[li], 100 + li));
            for (size_t gi = 0; gi < TOME_ARRAY_LEN(gqa); gi++) {
                int nh = H * gqa[gi];
                kv_attn a = {.n_head = nh, .scale = 1.0f / sqrtf((float)D)};
                /* the last position, and one earlier (mid-page) for the first ratio */
                int64_t ps[] = {lens[li] - 1, lens[li] / 3};
                for (size_t pi = 0; pi < (gi == 0 ? 2u : 1u); pi++) {
                    rand_q(&r, q, nh * D);
                    memset(out, 0xff, sizeof out);
                    REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, ps[pi], out) == 0);
                    char what[64];
                    snprintf(what, sizeof what, "%s len %d gqa %d", names[dt], lens[li], gqa[gi]);
                    check_query(T, &f, what, q, nh, a.scale, ps[pi], 0, 0, out);
                }
            }
            fx_close(&f);
        }
}

/* The portable kernels (the reference) and the AVX2 ones (where the CPU has them), with head
 * sizes that leave SIMD tails: d = 20 (q4: one short group), 48 (32 + 16), 136. */
TEST(kv_attend_scalar_and_simd_paths) {
    const int dims[] = {20, 48, 136};
    /* (d = 128 runs through the SIMD path in the other tests) */
    trng r;
    trng_seed(&r, 77);
    float q[8 * 136], out[8 * 136], out2[8 * 136];
    for (int dt = 0; dt < 3; dt++)
        for (size_t di = 0; di < TOME_ARRAY_LEN(dims); di++) {
            fx f, g;
            int D = dims[di];
            REQUIRE(fx_open_ex(T, &f, (kv_dtype)dt, 16, 2, D, 300, 50 + di, 1));
            REQUIRE(fx_open_ex(T, &g, (kv_dtype)dt, 16, 2, D, 300, 50 + di, 0));
            CHECK(f.c.simd == 0);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
            __builtin_cpu_init(); /* gcc's; kvcache.c reads cpuid itself */
            CHECK(g.c.simd == (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                               __builtin_cpu_supports("f16c")));
#endif
            kv_attn a = {.n_head = 8, .scale = 1.0f / sqrtf((float)D), .window = 200, .sinks = 3};
            rand_q(&r, q, 8 * D);
            REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, 299, out) == 0);
            REQUIRE(kv_attend(&g.c, g.seq, 1, &a, q, 299, out2) == 0);
            check_query(T, &f, "scalar", q, 8, a.scale, 299, 200, 3, out);
            check_query(T, &g, g.c.simd ? "simd" : "scalar (no AVX2 here)", q, 8, a.scale, 299,
                        200, 3, out2);
            fx_close(&f);
            fx_close(&g);
        }
}

TEST(kv_attend_window_sinks) {
    fx f;
    const int H = 2, D = 64, nh = 8;
    REQUIRE(fx_open(T, &f, KV_Q8, 16, H, D, 1000, 7));
    trng r;
    trng_seed(&r, 8);
    float q[8 * 64], out[8 * 64];
    struct { int64_t w, s; } m[] = {{100, 0}, {100, 4}, {1, 0}, {1, 3}, {37, 200}, {5000, 2}};
    int64_t ps[] = {0, 3, 50, 103, 500, 999};
    for (size_t mi = 0; mi < TOME_ARRAY_LEN(m); mi++)
        for (size_t pi = 0; pi < TOME_ARRAY_LEN(ps); pi++) {
            kv_attn a = {.n_head = nh, .scale = 0.125f, .window = m[mi].w, .sinks = m[mi].s};
            rand_q(&r, q, nh * D);
            REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, ps[pi], out) == 0);
            char what[64];
            snprintf(what, sizeof what, "window %lld sinks %lld", (long long)m[mi].w,
                     (long long)m[mi].s);
            check_query(T, &f, what, q, nh, a.scale, ps[pi], m[mi].w, m[mi].s, out);
        }
    /* window 1 without sinks: the output is exactly the query position's own V row */
    kv_attn a = {.n_head = nh, .scale = 0.125f, .window = 1};
    rand_q(&r, q, nh * D);
    REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, 321, out) == 0);
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < D; i++)
            CHECK_NEAR(out[h * D + i], f.vq[((size_t)321 * H + h / 4) * D + i], 1e-6);
    fx_close(&f);
}

TEST(kv_attend_block_and_partials) {
    fx f;
    const int H = 2, D = 64, nh = 8, n = 150;
    REQUIRE(fx_open(T, &f, KV_F16, 32, H, D, n, 21));
    trng r;
    trng_seed(&r, 22);
    float *q = malloc(sizeof(float) * n * nh * D), *out = malloc(sizeof(float) * n * nh * D);
    rand_q(&r, q, n * nh * D);
    /* prefill: positions 40..149 in one call, causal; and with a window */
    for (int w = 0; w <= 33; w += 33) {
        kv_attn a = {.n_head = nh, .scale = 0.125f, .window = w, .sinks = w ? 2 : 0};
        REQUIRE(kv_attend_block(&f.c, f.seq, 1, &a, q + 40 * nh * D, n - 40, 40, out) == 0);
        for (int i = 0; i < n - 40; i += 7)
            check_query(T, &f, "block", q + (size_t)(40 + i) * nh * D, nh, a.scale, 40 + i, w,
                        w ? 2 : 0, out + (size_t)i * nh * D);
    }
    /* partials over three key ranges merged == one call (flash-decoding / ring merge) */
    kv_attn a = {.n_head = nh, .scale = 0.125f};
    float m[8], l[8], acc[8 * 64], mb[8], lb[8], accb[8 * 64], whole[8 * 64];
    REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, 149, whole) == 0);
    REQUIRE(kv_attend_partial(&f.c, f.seq, 1, &a, q, 149, 0, 50, m, l, acc) == 0);
    int64_t cuts[][2] = {{50, 51}, {51, 150}, {150, 400}}; /* the last one sees no key */
    for (int k = 0; k < 3; k++) {
        REQUIRE(kv_attend_partial(&f.c, f.seq, 1, &a, q, 149, cuts[k][0], cuts[k][1], mb, lb,
                                  accb) == 0);
        if (k == 2) CHECK(lb[0] == 0 && mb[0] == -INFINITY);
        kv_partial_merge(nh, D, m, l, acc, mb, lb, accb);
    }
    for (int i = 0; i < nh * D; i++) CHECK_NEAR(acc[i] / l[i / D], whole[i], 1e-5);
    /* a head range computes only those heads */
    float part[8 * 64];
    memset(part, 0, sizeof part);
    kv_attn a2 = {.n_head = nh, .head0 = 3, .head1 = 6, .scale = 0.125f};
    REQUIRE(kv_attend(&f.c, f.seq, 1, &a2, q, 149, part) == 0);
    for (int i = 0; i < nh * D; i++)
        CHECK(i / D >= 3 && i / D < 6 ? part[i] == whole[i] : part[i] == 0.0f);
    free(q), free(out);
    fx_close(&f);
}

/* The prefill block (kv_attend_block: queries share each K/V tile, exp vectorised) against the
 * decode path (kv_attend, one query at a time) on the same pages: f16/q8/q4, GQA 1 and 4, head
 * dims 64 and 128, pages of 32 (tiles split at page ends), a chunk starting mid-page, plain
 * causal, a window with sinks (the block's rows see different key sets) and a head range.
 * Both compute the same dequantised scores; only float summation order and the exp
 * polynomial (~2 ulp) differ, so 2e-5 of the output scale. */
TEST(kv_attend_block_tiled_vs_decode) {
    const kv_dtype dts[] = {KV_F16, KV_Q8, KV_Q4};
    const int cfgs[][3] = {{2, 64, 2}, {2, 128, 8}, {4, 8, 8}}; /* kv heads, head dim, query heads */
    int bad = 0, checked = 0;
    for (size_t di = 0; di < TOME_ARRAY_LEN(dts); di++)
        for (size_t ci = 0; ci < TOME_ARRAY_LEN(cfgs); ci++) {
            const int H = cfgs[ci][0], D = cfgs[ci][1], nh = cfgs[ci][2], n = 131, p0 = 45;
            fx f;
            REQUIRE(fx_open(T, &f, dts[di], 32, H, D, n, 31 + di * 7 + ci));
            trng r;
            trng_seed(&r, 32 + di);
            float *q = malloc(sizeof(float) * n * nh * D), *out = malloc(sizeof(float) * n * nh * D);
            float *one = malloc(sizeof(float) * nh * D);
            REQUIRE(q && out && one);
            rand_q(&r, q, n * nh * D);
            const int64_t ws[][2] = {{0, 0}, {40, 3}, {17, 0}};
            for (size_t wi = 0; wi < TOME_ARRAY_LEN(ws); wi++)
                for (int hr = 0; hr < (nh > 2 ? 2 : 1); hr++) {
                    kv_attn a = {.n_head = nh, .head0 = hr ? 1 : 0, .head1 = hr ? nh - 1 : 0, .scale = 1.0f / sqrtf((float)D),
                                 .window = ws[wi][0], .sinks = ws[wi][1]};
                    for (int i = 0; i < (n - p0) * nh * D; i++) out[i] = 777.0f;
                    REQUIRE(kv_attend_block(&f.c, f.seq, 1, &a, q + (size_t)p0 * nh * D, n - p0, p0, out) == 0);
                    for (int i = 0; i < n - p0; i++) {
                        memset(one, 0, sizeof(float) * nh * D);
                        REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q + (size_t)(p0 + i) * nh * D, p0 + i, one) == 0);
                        for (int h = 0; h < nh; h++)
                            for (int k = 0; k < D; k++) {
                                float got = out[((size_t)i * nh + h) * D + k], want = one[h * D + k];
                                int in = h >= (hr ? 1 : 0) && h < (hr ? nh - 1 : nh);
                                int ok = in ? fabsf(got - want) <= 2e-5f * (1.0f + fabsf(want)) : got == 777.0f;
                                checked++;
                                if (!ok && bad++ < 5)
                                    CHECKF(0, "dt %d D %d nh %d window %lld: query %d head %d dim %d: %.8g vs %.8g",
                                           (int)dts[di], D, nh, (long long)a.window, p0 + i, h, k, got, want);
                            }
                    }
                }
            free(q), free(out), free(one);
            fx_close(&f);
        }
    CHECK(bad == 0);
    CHECK(checked > 0);
}

/* ---- pages: sharing, copy on write, refcounts --------------------------------------------- */

TEST(kv_prefix_sharing_cow) {
    const int H = 2, D = 32, P = 16;
    kv_config cfg = {.n_layer = 3, .n_kv_head = H, .head_dim = D, .page_tokens = P,
                     .dtype = KV_Q4, .n_pages = 32};
    kv_cache c;
    terr e = {0};
    REQUIRE(kv_open(&c, &cfg, &e) == 0);
    int doc, a, b;
    REQUIRE(kv_seq_new(&c, &doc, &e) == 0);
    REQUIRE(kv_seq_append(&c, doc, 100, &e) == 0); /* 7 pages, the last holds 4 tokens */
    trng r;
    trng_seed(&r, 31);
    float *kv = malloc(sizeof(float) * 101 * H * D);
    fill_rows(&r, kv, 101 * H, D);
    for (int l = 0; l < 3; l++) REQUIRE(kv_store(&c, doc, l, 0, 100, kv, kv) == 0);
    CHECK(c.n_free == 25);

    /* two questions over the document share all of its pages */
    REQUIRE(kv_seq_fork(&c, doc, -1, &a, &e) == 0);
    REQUIRE(kv_seq_fork(&c, doc, -1, &b, &e) == 0);
    int64_t nd, na, nb;
    const int32_t *pd = kv_seq_pages(&c, doc, &nd);
    int32_t doc_pages[7];
    memcpy(doc_pages, pd, sizeof doc_pages);
    const int32_t *pa = kv_seq_pages(&c, a, &na);
    CHECK(na == 7 && memcmp(pa, doc_pages, sizeof doc_pages) == 0);
    for (int i = 0; i < 7; i++) CHECK(c.refcount[doc_pages[i]] == 3);
    CHECK(c.n_free == 25);
    kv_seq_free(&c, doc); /* the document's own handle can go; the questions keep the pages */
    for (int i = 0; i < 7; i++) CHECK(c.refcount[doc_pages[i]] == 2);

    float before[3][4][32], row[32];
    for (int l = 0; l < 3; l++)
        for (int t = 0; t < 4; t++)
            REQUIRE(kv_load_row(&c, b, l, 96 + t, 1, before[l][t], NULL) == 0);

    /* appending to a copies the partial last page (all layers), b is untouched */
    REQUIRE(kv_seq_append(&c, a, 1, &e) == 0);
    pa = kv_seq_pages(&c, a, &na);
    CHECK(na == 7 && memcmp(pa, doc_pages, 6 * sizeof(int32_t)) == 0 && pa[6] != doc_pages[6]);
    CHECK(c.refcount[doc_pages[6]] == 1 && c.refcount[pa[6]] == 1);
    CHECK(c.n_free == 24);
    float other[32 * 2];
    for (int i = 0; i < 2 * D; i++) other[i] = -3.0f + 0.01f * i;
    for (int l = 0; l < 3; l++) REQUIRE(kv_store(&c, a, l, 100, 1, other, other) == 0);
    for (int l = 0; l < 3; l++)
        for (int t = 0; t < 4; t++) {
            REQUIRE(kv_load_row(&c, a, l, 96 + t, 1, row, NULL) == 0); /* copied content */
            CHECK(memcmp(row, before[l][t], sizeof row) == 0);
            REQUIRE(kv_load_row(&c, b, l, 96 + t, 1, row, NULL) == 0); /* sibling intact */
            CHECK(memcmp(row, before[l][t], sizeof row) == 0);
        }
    /* writing into a still-shared page is refused */
    CHECK(kv_store(&c, b, 0, 50, 1, other, other) == TOME_EINPUT);
    /* b is now the only holder of the old last page: appending writes in place, no copy */
    REQUIRE(kv_seq_append(&c, b, 1, &e) == 0);
    const int32_t *pb = kv_seq_pages(&c, b, &nb);
    CHECK(nb == 7 && pb[6] == doc_pages[6]);
    CHECK(c.n_free == 24);

    /* a prefix fork that ends mid-page, then growth past it */
    int f2;
    REQUIRE(kv_seq_fork(&c, a, 40, &f2, &e) == 0);
    CHECK(kv_seq_len(&c, f2) == 40);
    REQUIRE(kv_seq_append(&c, f2, 30, &e) == 0); /* copies page 2 (8 of 16 used), adds 2 */
    CHECK(c.n_free == 21);
    REQUIRE(kv_load_row(&c, f2, 2, 39, 0, row, NULL) == 0);
    float ra[32];
    REQUIRE(kv_load_row(&c, a, 2, 39, 0, ra, NULL) == 0);
    CHECK(memcmp(row, ra, sizeof row) == 0);

    /* truncate releases whole pages only */
    REQUIRE(kv_seq_truncate(&c, f2, 33, &e) == 0); /* 5 pages -> 3 */
    CHECK(c.n_free == 23);

    /* every page returns to the pool */
    kv_seq_free(&c, a);
    kv_seq_free(&c, b);
    kv_seq_free(&c, f2);
    CHECK(c.n_free == 32);
    for (int i = 0; i < 32; i++) CHECK(c.refcount[i] == 0);
    free(kv);
    kv_close(&c);
}

TEST(kv_pool_exhaustion_and_bad_calls) {
    kv_config cfg = {.n_layer = 1, .n_kv_head = 1, .head_dim = 8, .page_tokens = 4,
                     .dtype = KV_F16, .n_pages = 3};
    kv_cache c;
    terr e = {0};
    REQUIRE(kv_open(&c, &cfg, &e) == 0);
    int s, t;
    REQUIRE(kv_seq_new(&c, &s, &e) == 0);
    REQUIRE(kv_seq_append(&c, s, 10, &e) == 0); /* 3 pages */
    REQUIRE(kv_seq_fork(&c, s, -1, &t, &e) == 0);
    CHECK(kv_seq_append(&c, t, 1, &e) == TOME_ERESOURCE); /* needs a copy, none free */
    CHECK(strstr(e.msg, "free") != NULL);
    CHECK(kv_seq_len(&c, t) == 10 && c.n_free == 0); /* unchanged */
    CHECK(kv_seq_append(&c, s, 3, &e) == TOME_ERESOURCE);
    float x[24], o[24];
    for (int i = 0; i < 24; i++) x[i] = 0.5f + 0.1f * i;
    CHECK(kv_store(&c, s, 0, 10, 1, x, x) == TOME_EINPUT); /* past the length */
    CHECK(kv_store(&c, s, 1, 0, 1, x, x) == TOME_EINPUT);  /* no such layer */
    kv_attn a = {.n_head = 3, .scale = 1};
    CHECK(kv_attend(&c, s, 0, &a, x, 0, o) == 0); /* 3 heads over 1 kv head: fine */
    a.n_head = 0;
    CHECK(kv_attend(&c, s, 0, &a, x, 0, o) == TOME_EINPUT);
    a.n_head = 1;
    CHECK(kv_attend(&c, s, 0, &a, x, 10, o) == TOME_EINPUT); /* query past the length */
    CHECK(kv_attend(&c, 7, 0, &a, x, 0, o) == TOME_EINPUT);  /* no such sequence */
    kv_seq_free(&c, s);
    kv_seq_free(&c, t);
    CHECK(c.n_free == 3);
    kv_close(&c);
    kv_close(&c); /* twice is harmless */

    kv_config bad = cfg;
    bad.head_dim = 7;
    CHECK(kv_open(&c, &bad, &e) == TOME_EINPUT);
    bad = cfg;
    bad.page_tokens = 0;
    CHECK(kv_open(&c, &bad, &e) == TOME_EINPUT);
    bad = cfg;
    bad.n_pages = (int64_t)1 << 40;
    CHECK(kv_open(&c, &bad, &e) == TOME_EINPUT);
    kv_close(&c);
}

/* ---- threads ------------------------------------------------------------------------------- */

typedef struct job {
    fx *f;
    const float *q;
    float *out;
    int h0, h1, reps;
} job;

static void *run_job(void *p) {
    job *j = p;
    kv_attn a = {.n_head = 16, .head0 = j->h0, .head1 = j->h1, .scale = 0.1f, .window = 300,
                 .sinks = 4};
    for (int i = 0; i < j->reps; i++)
        if (kv_attend(&j->f->c, j->f->seq, 1, &a, j->q, 999, j->out)) return p;
    return NULL;
}

TEST(kv_attend_threads) {
    fx f;
    REQUIRE(fx_open(T, &f, KV_Q4, 32, 4, 64, 1000, 41));
    trng r;
    trng_seed(&r, 42);
    float q[16 * 64], serial[16 * 64], par[16 * 64];
    rand_q(&r, q, 16 * 64);
    kv_attn a = {.n_head = 16, .scale = 0.1f, .window = 300, .sinks = 4};
    REQUIRE(kv_attend(&f.c, f.seq, 1, &a, q, 999, serial) == 0);
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        /* ranges that split GQA groups (4 q heads per kv head) on purpose */
        int cut[5] = {0, 3, 8, 13, 16};
        jobs[i] = (job){&f, q, par, cut[i], cut[i + 1], 5};
        REQUIRE(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    CHECK(memcmp(serial, par, sizeof par) == 0);
    fx_close(&f);
}

/* K and V rows of different lengths (head_dim_v != head_dim), q8. */
TEST(kv_attend_distinct_v_dim) {
    const int H = 2, D = 32, Dv = 16, n = 70, nh = 4;
    kv_config cfg = {.n_layer = 1, .n_kv_head = H, .head_dim = D, .head_dim_v = Dv,
                     .page_tokens = 16, .dtype = KV_Q8, .n_pages = 5};
    kv_cache c;
    int s;
    REQUIRE(kv_open(&c, &cfg, NULL) == 0);
    REQUIRE(kv_seq_new(&c, &s, NULL) == 0 && kv_seq_append(&c, s, n, NULL) == 0);
    trng r;
    trng_seed(&r, 61);
    float k[70 * 2 * 32], v[70 * 2 * 16], q[4 * 32], out[4 * 16];
    fill_rows(&r, k, n * H, D);
    fill_rows(&r, v, n * H, Dv);
    rand_q(&r, q, nh * D);
    REQUIRE(kv_store(&c, s, 0, 0, n, k, v) == 0);
    kv_attn a = {.n_head = nh, .scale = 0.2f};
    REQUIRE(kv_attend(&c, s, 0, &a, q, n - 1, out) == 0);
    for (int h = 0; h < nh; h++) {
        int g = h / 2;
        double mx = -INFINITY, sc[70], l = 0, o[16] = {0};
        float kr[32], vr[16];
        for (int j = 0; j < n; j++) {
            REQUIRE(kv_load_row(&c, s, 0, j, g, kr, NULL) == 0);
            double d = 0;
            for (int i = 0; i < D; i++) d += (double)q[h * D + i] * kr[i];
            sc[j] = d * 0.2;
            mx = fmax(mx, sc[j]);
        }
        for (int j = 0; j < n; j++) {
            REQUIRE(kv_load_row(&c, s, 0, j, g, NULL, vr) == 0);
            double w = exp(sc[j] - mx);
            l += w;
            for (int i = 0; i < Dv; i++) o[i] += w * vr[i];
        }
        for (int i = 0; i < Dv; i++) CHECK_NEAR(out[h * Dv + i], o[i] / l, 2e-5 * 8);
    }
    kv_close(&c);
}

/* Streaming eviction: dropping a page leaves a hole, returns the page to the pool once, and
 * the sequence's later free/truncate skip the hole. */
TEST(kv_drop_page_holes) {
    kv_config cfg = {.n_layer = 1, .n_kv_head = 1, .head_dim = 8, .page_tokens = 4,
                     .dtype = KV_F16, .n_pages = 6};
    kv_cache c = {0};
    terr e = {0};
    REQUIRE(kv_open(&c, &cfg, &e) == 0);
    int seq = -1, other = -1;
    REQUIRE(kv_seq_new(&c, &seq, &e) == 0);
    REQUIRE(kv_seq_append(&c, seq, 14, &e) == 0); /* 4 pages, the last one partial */
    CHECK(c.n_free == 2);
    REQUIRE(kv_seq_fork(&c, seq, 8, &other, &e) == 0); /* shares pages 0 and 1 */
    CHECK(kv_seq_drop_page(&c, seq, 1) == 1);
    CHECK(c.n_free == 2);                             /* still held by the fork */
    CHECK(kv_seq_drop_page(&c, seq, 2) == 1);
    CHECK(c.n_free == 3);                             /* page 2 was seq's alone */
    CHECK(kv_seq_drop_page(&c, seq, 2) == 0);         /* already a hole */
    CHECK(kv_seq_drop_page(&c, seq, 9) == 0);         /* out of range */
    int64_t np = 0;
    const int32_t *pages = kv_seq_pages(&c, seq, &np);
    REQUIRE(np == 4);
    CHECK(pages[1] == -1 && pages[2] == -1 && pages[0] >= 0 && pages[3] >= 0);
    CHECK(kv_seq_len(&c, seq) == 14);                 /* positions keep their numbers */
    REQUIRE(kv_seq_truncate(&c, seq, 5, &e) == 0);    /* releases slots 2 (hole) and 3 */
    CHECK(c.n_free == 4);
    kv_seq_free(&c, seq);
    kv_seq_free(&c, other);
    CHECK(c.n_free == 6);
    for (int p = 0; p < 6; p++) CHECK(c.refcount[p] == 0);
    kv_close(&c);
}

/* Regression: forking a sequence with holes incremented refcount[-1] (a write before the
 * array), and appending to a sequence whose partially filled last page was dropped left the
 * new tokens' page a hole (and read refcount[-1]). A fork now keeps the holes as holes, and
 * an append gives a dropped partial last page a fresh page. */
TEST(kv_holes_fork_and_append) {
    kv_config cfg = {.n_layer = 1, .n_kv_head = 1, .head_dim = 8, .page_tokens = 4,
                     .dtype = KV_F16, .n_pages = 6};
    kv_cache c = {0};
    terr e = {0};
    REQUIRE(kv_open(&c, &cfg, &e) == 0);
    int seq = -1, other = -1;
    REQUIRE(kv_seq_new(&c, &seq, &e) == 0);
    REQUIRE(kv_seq_append(&c, seq, 10, &e) == 0); /* pages in slots 0, 1, 2 (partial) */
    CHECK(kv_seq_drop_page(&c, seq, 0) == 1);
    CHECK(c.n_free == 4);
    REQUIRE(kv_seq_fork(&c, seq, -1, &other, &e) == 0);
    int64_t np = 0;
    const int32_t *pages = kv_seq_pages(&c, other, &np);
    REQUIRE(np == 3);
    CHECK(pages[0] == -1 && pages[1] >= 0 && pages[2] >= 0);
    kv_seq_free(&c, other);
    CHECK(c.n_free == 4);
    CHECK(kv_seq_drop_page(&c, seq, 2) == 1);     /* the partial last page */
    CHECK(c.n_free == 5);
    REQUIRE(kv_seq_append(&c, seq, 1, &e) == 0); /* token 10 lives in slot 2 */
    pages = kv_seq_pages(&c, seq, &np);
    REQUIRE(np == 3);
    CHECK(pages[0] == -1 && pages[1] >= 0 && pages[2] >= 0 && pages[2] != pages[1]);
    CHECK(c.n_free == 4);
    CHECK(kv_seq_len(&c, seq) == 11);
    kv_seq_free(&c, seq);
    CHECK(c.n_free == 6);
    for (int p = 0; p < 6; p++) CHECK(c.refcount[p] == 0);
    kv_close(&c);
}

/* Regression: kv_store and kv_load_row on a position whose page was dropped indexed page -1
 * (refcount[-1], and storage before the pool); they now refuse it like any bad position. */
TEST(kv_hole_rows_refused) {
    kv_config cfg = {.n_layer = 1, .n_kv_head = 1, .head_dim = 8, .page_tokens = 4,
                     .dtype = KV_Q8, .n_pages = 4};
    kv_cache c = {0};
    terr e = {0};
    REQUIRE(kv_open(&c, &cfg, &e) == 0);
    int seq = -1;
    REQUIRE(kv_seq_new(&c, &seq, &e) == 0);
    REQUIRE(kv_seq_append(&c, seq, 8, &e) == 0);
    float k[8], v[8];
    for (int i = 0; i < 8; i++) k[i] = 0.25f * (float)(i + 1), v[i] = -k[i];
    CHECK(kv_store(&c, seq, 0, 5, 1, k, v) == 0);
    CHECK(kv_seq_drop_page(&c, seq, 0) == 1);
    CHECK(kv_store(&c, seq, 0, 1, 1, k, v) == TOME_EINPUT);
    CHECK(kv_load_row(&c, seq, 0, 2, 0, k, v) == TOME_EINPUT);
    float k2[8], v2[8];
    CHECK(kv_load_row(&c, seq, 0, 5, 0, k2, v2) == 0); /* the live page still reads */
    CHECK_NEAR(k2[7], 2.0f, 0.01f);
    CHECK_NEAR(v2[0], -0.25f, 0.01f);
    kv_close(&c);
}

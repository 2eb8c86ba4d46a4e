/* test_quant.c — block formats (lib/quant.c): round trips, dot products, llama.cpp files.
 *
 * The compatibility test decodes every tensor of four files written by llama.cpp's
 * llama-quantize twice: with tq_dequantize and with a deliberately naive decoder below that
 * works element by element from raw byte offsets (its own half-float decoding, no quant.h
 * structs) — both must agree bit for bit. The expectations in the hand-made block tests were
 * worked out by hand from the layouts (see the comments next to them).
 */
#include "test.h"

#include <stdint.h>

#include "gguf.h"
#include "quant.h"
#include "util.h"

/* ==== helpers ======================================================================= */

/* Seeded inputs, never zero: normal values whose scale changes every 256 (so blocks see
 * different magnitudes), with (outliers = 1) an occasional 6x outlier as real weights have. */
static float *rand_input_o(int64_t n, uint64_t seed, int outliers) {
    float *x = malloc((size_t)n * sizeof *x);
    trng r;
    trng_seed(&r, seed);
    float s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 256 == 0) s = expf(trng_normal(&r));
        x[i] = trng_normal(&r) * s;
        if (outliers && trng_u64(&r) % 97 == 0) x[i] *= 6;
        if (x[i] == 0) x[i] = 1e-3f;
    }
    return x;
}

static float *rand_input(int64_t n, uint64_t seed) { return rand_input_o(n, seed, 1); }

static void *qalloc(uint32_t type, int64_t n) {
    return calloc(1, (size_t)ggml_row_size(type, n) + 64);
}

static const uint32_t weight_types[] = {
    GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
    GGML_TYPE_Q6_K,
};

/* ==== round trips ==================================================================== */

/* Largest error a single element may have, from the format alone (x: the block's inputs).
 * Legacy formats: half a step, plus the clamp of the symmetric ones (the value opposite the
 * signed max may need code 2^(b-1), which does not exist: a whole step), plus fp16 rounding of
 * the scale (2^-11 relative, times the largest code) and of the min. Returns -1 where the format
 * has no simple per-element bound (the K-quants: checked by RMS only). */
static double elem_bound(uint32_t type, const float *x, int64_t j) {
    const float *b = x + (j / 32) * 32;
    double amax = 0, lo = b[0], hi = b[0];
    for (int k = 0; k < 32; k++) {
        amax = fmax(amax, fabs(b[k]));
        lo = fmin(lo, b[k]);
        hi = fmax(hi, b[k]);
    }
    const double h = 1.0 / 2048; /* fp16 relative rounding */
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return fmax(fabs(x[j]) * h, ldexp(1, -25)); /* subnormals: fixed step 2^-24 */
    case GGML_TYPE_BF16: return fabs(x[j]) / 256;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1: return amax * (0.5 / 127 + h);
    case GGML_TYPE_Q4_0: return amax * (1.0 / 8 + h);
    case GGML_TYPE_Q5_0: return amax * (1.0 / 16 + h);
    case GGML_TYPE_Q4_1: return (hi - lo) / 15 * (0.5 + 15 * h) + fabs(lo) * h;
    case GGML_TYPE_Q5_1: return (hi - lo) / 31 * (0.5 + 31 * h) + fabs(lo) * h;
    case GGML_TYPE_Q8_K: {
        double a = 0;
        const float *s = x + (j / 256) * 256;
        for (int k = 0; k < 256; k++) a = fmax(a, fabs(s[k]));
        return a * (0.5 / 127 + 1e-6);
    }
    default: return -1;
    }
}

/* RMS(x - dequant(quant(x))) / RMS(x) for Gaussian-like inputs must stay below these. Derived:
 * a uniform quantizer with step D has RMS error D/sqrt(12). Per 32-block of the inputs above,
 * amax ≈ 2.4 sigma, range ≈ 4.2 sigma: Q8_0 D = amax/127 -> 0.0055 (Q8_K: amax over 256 ≈
 * 2.9 sigma -> 0.0066); Q4_0 D = amax/8 -> 0.087;
 * Q5_0 -> 0.043; Q4_1 D = range/15 -> 0.081; Q5_1 -> 0.039. K-quants fit scale and min per
 * 32 (Q4_K/Q5_K, ~ the _1 formats, a bit better from the fit, a bit worse from 6-bit scales) or
 * a symmetric scale per 16 (Q6_K, amax ≈ 2 sigma, D = amax/32 -> 0.018). The bounds below are
 * those estimates with ~30% headroom. Measured (seed 11): F16 2.1e-4, BF16 1.6e-3, Q8_0 0.0053,
 * Q8_K 0.0068, Q4_0 0.086, Q4_1 0.078, Q5_0 0.042, Q5_1 0.038, Q4_K 0.072, Q5_K 0.036,
 * Q6_K 0.0175. F16/BF16: relative rounding 2^-11 / 2^-8, RMS about a third of that. */
static double rms_bound(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return 3e-4;
    case GGML_TYPE_BF16: return 2.5e-3;
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1: return 0.0075;
    case GGML_TYPE_Q8_K: return 0.009;
    case GGML_TYPE_Q4_0: return 0.115;
    case GGML_TYPE_Q5_0: return 0.057;
    case GGML_TYPE_Q4_1: return 0.105;
    case GGML_TYPE_Q5_1: return 0.052;
    case GGML_TYPE_Q4_K: return 0.105;
    case GGML_TYPE_Q5_K: return 0.052;
    case GGML_TYPE_Q6_K: return 0.025;
    default: return 0;
    }
}

TEST(quant_roundtrip_error_bounds) {
    const int64_t n = 256 * 64;
    float *y = malloc((size_t)n * sizeof *y);
    const uint32_t types[] = {
        GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q8_1,
        GGML_TYPE_Q8_K, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
        GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
    };
    /* pass 0: Gaussian (RMS bounds apply); pass 1: with outliers (per-element bounds only) */
    for (int pass = 0; pass < 2; pass++) {
        float *x = rand_input_o(n, 11 + pass, pass);
        for (size_t t = 0; t < TOME_ARRAY_LEN(types); t++) {
            uint32_t type = types[t];
            const char *name = ggml_type_get(type)->name;
            void *q = qalloc(type, n);
            REQUIRE(q);
            CHECKF(tq_quantize(type, x, q, n) == ggml_row_size(type, n), "%s: bytes written", name);
            tq_dequantize(type, q, y, n);
            double se = 0, sx = 0;
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < n; i++) {
                double e = (double)y[i] - x[i];
                se += e * e;
                sx += (double)x[i] * x[i];
                double b = elem_bound(type, x, i);
                if (b >= 0 && !(fabs(e) <= b * 1.0001 + 1e-30)) {
                    if (first < 0) first = i;
                    bad++;
                }
            }
            double rel = sqrt(se / sx);
            CHECKF(bad == 0, "%s pass %d: %lld elements beyond the per-element bound (first %lld: x %g y %g)",
                   name, pass, (long long)bad, (long long)first, first >= 0 ? x[first] : 0.0,
                   first >= 0 ? y[first] : 0.0);
            if (pass == 0)
                CHECKF(rel <= rms_bound(type), "%s: relative RMS error %.5g > %.5g", name, rel,
                       rms_bound(type));
            if (getenv("TQ_VERBOSE"))
                fprintf(stderr, "roundtrip %-5s %s rel RMS %.5f\n", name, pass ? "outliers" : "gaussian", rel);
            free(q);
        }
        free(x);
    }
    free(y);
}

/* Quantizing what was just dequantized must not drift: for the formats whose codes sit on the
 * grid they came from, requantizing gives the same values back (legacy + Q8 formats). */
TEST(quant_requantize_is_stable) {
    const int64_t n = 32 * 40;
    float *x = rand_input(n, 12), *y = malloc((size_t)n * sizeof *y), *z = malloc((size_t)n * sizeof *z);
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_F16, GGML_TYPE_BF16};
    for (size_t t = 0; t < TOME_ARRAY_LEN(types); t++) {
        void *q = qalloc(types[t], n);
        tq_quantize(types[t], x, q, n);
        tq_dequantize(types[t], q, y, n);
        tq_quantize(types[t], y, q, n);
        tq_dequantize(types[t], q, z, n);
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++) diff += y[i] != z[i];
        CHECKF(diff == 0, "%s: %lld values moved", ggml_type_get(types[t])->name, (long long)diff);
        free(q);
    }
    free(x); free(y); free(z);
}

/* ==== dot products ==================================================================== */

TEST(quant_vec_dot_types) {
    CHECK(tq_vec_dot_type(GGML_TYPE_F32) == GGML_TYPE_F32);
    CHECK(tq_vec_dot_type(GGML_TYPE_F16) == GGML_TYPE_F16);
    CHECK(tq_vec_dot_type(GGML_TYPE_BF16) == GGML_TYPE_BF16);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q4_0) == GGML_TYPE_Q8_0);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q5_0) == GGML_TYPE_Q8_0);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q8_0) == GGML_TYPE_Q8_0);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q4_1) == GGML_TYPE_Q8_1);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q5_1) == GGML_TYPE_Q8_1);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q4_K) == GGML_TYPE_Q8_K);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q5_K) == GGML_TYPE_Q8_K);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q6_K) == GGML_TYPE_Q8_K);
    CHECK(tq_vec_dot_type(GGML_TYPE_Q2_K) == GGML_TYPE_COUNT);
    CHECK(!tq_supported(GGML_TYPE_Q2_K) && tq_supported(GGML_TYPE_Q6_K));
    CHECK(isnan(tq_vec_dot(GGML_TYPE_Q2_K, 256, NULL, NULL)));
    CHECK(tq_quantize(GGML_TYPE_Q8_0, NULL, NULL, 33) == 0); /* not a whole block */
}

/* tq_vec_dot is integer-exact inside blocks, so it must equal the float64 dot of the
 * dequantized weights and dequantized activations up to float rounding of a few block sums
 * (1e-6 of sum |w a|). Q4_1/Q5_1 use the activation block's stored s = fp16(d*sum q) for the
 * min term: that adds up to |m|*|s|*2^-11 per block. Against float activations (tq_dot_f32)
 * the difference is the activation quantization: at most sum |w_i| * (its element bound). */
static void check_dot(tctx *T, uint32_t type, int64_t n, uint64_t seed) {
    const char *name = ggml_type_get(type)->name;
    uint32_t at = tq_vec_dot_type(type);
    float *xw = rand_input(n, seed), *xa = rand_input(n, seed + 1000);
    float *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a);
    void *qw = qalloc(type, n), *qa = qalloc(at, n);
    tq_quantize(type, xw, qw, n);
    REQUIRE(tq_quantize(at, xa, qa, n) == ggml_row_size(at, n));
    tq_dequantize(type, qw, w, n);
    tq_dequantize(at, qa, a, n);
    double ref = 0, l1 = 0, stol = 0, actol = 0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)w[i] * a[i];
        l1 += fabs((double)w[i] * a[i]);
        actol += fabs(w[i]) * elem_bound(at, xa, i);
    }
    if (at == GGML_TYPE_Q8_1) {
        for (int64_t b = 0; b < n / 32; b++) {
            double m = type == GGML_TYPE_Q4_1 ? tf16_to_f32(((const block_q4_1 *)qw)[b].m)
                                              : tf16_to_f32(((const block_q5_1 *)qw)[b].m);
            stol += fabs(m) * fabs(tf16_to_f32(((const block_q8_1 *)qa)[b].s)) / 2048;
        }
    }
    float vd = tq_vec_dot(type, n, qw, qa);
    CHECKF(fabs(vd - ref) <= 1e-6 * l1 + stol, "%s n=%lld: vec_dot %.9g vs float64 %.9g (tol %.3g)",
           name, (long long)n, vd, ref, 1e-6 * l1 + stol);
    float fd = tq_dot_f32(type, n, qw, xa);
    double exact = 0;
    for (int64_t i = 0; i < n; i++) exact += (double)w[i] * xa[i];
    CHECKF(fabs(fd - exact) <= 1e-6 * l1, "%s: dot_f32 %.9g vs %.9g", name, fd, exact);
    CHECKF(fabs(vd - fd) <= actol + stol + 2e-6 * l1, "%s n=%lld: vec_dot %.9g vs dot_f32 %.9g (tol %.3g)",
           name, (long long)n, vd, fd, actol + stol);
    if (getenv("TQ_VERBOSE"))
        fprintf(stderr, "dot %-5s n=%-5lld |vd-ref|/l1 %.2e  |vd-f32| %.3g (bound %.3g)\n", name,
                (long long)n, fabs(vd - ref) / l1, fabs(vd - fd), actol + stol);
    free(xw); free(xa); free(w); free(a); free(qw); free(qa);
}

TEST(quant_vec_dot_matches_float64) {
    for (size_t t = 0; t < TOME_ARRAY_LEN(weight_types); t++) {
        check_dot(T, weight_types[t], 256 * 12, 100 + t);
        if (ggml_type_get(weight_types[t])->blck <= 32) check_dot(T, weight_types[t], 32 * 7, 200 + t);
    }
}

/* ==== activation quantization by hand ================================================ */

/* Q8_0 (and Q8_1): d = amax/127. Inputs built on a grid with amax = 127/16, so d = 1/16 exactly
 * and codes = round(16 x). Off-grid offsets of a third of a step leave no doubt, except two
 * exact ties (2.5 and -2.5 steps): the reference rounds them away from zero (3, -3), llama.cpp's
 * AVX2 path to even (2, -2). */
TEST(quant_q8_0_by_hand) {
    static const int codes[32] = {127, -1, 0, 5, -64, 100, -127, 33, 7, -7, 3, 2, 1, -2, 0, 90,
                                  -90, 12, -12, 60, 61, 62, -63, 4, 8, 16, 32, 64, -100, 9, 99, 126};
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = codes[j] / 16.0f + (j % 3 == 1 ? 0.02f : j % 3 == 2 ? -0.02f : 0);
    x[0] = 127 / 16.0f; /* the max: exactly on the grid */
    x[10] = 2.5f / 16;  /* ties */
    x[13] = -2.5f / 16;
    block_q8_0 b;
    block_q8_1 b1;
    REQUIRE(tq_quantize(GGML_TYPE_Q8_0, x, &b, 32) == sizeof b);
    CHECK(tf16_to_f32(b.d) == 1.0f / 16);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int want = j == 10 ? 3 : j == 13 ? -3 : codes[j];
        CHECKF(b.qs[j] == want, "q8_0 code %d: %d, want %d", j, b.qs[j], want);
        sum += want;
    }
    REQUIRE(tq_quantize(GGML_TYPE_Q8_1, x, &b1, 32) == sizeof b1);
    CHECK(tf16_to_f32(b1.d) == 1.0f / 16);
    CHECK(memcmp(b1.qs, b.qs, 32) == 0);
    CHECKF(tf16_to_f32(b1.s) == tf16_to_f32(tf32_to_f16(sum / 16.0f)), "q8_1 s %g, want %g",
           tf16_to_f32(b1.s), sum / 16.0);
    REQUIRE(tq_quantize_x86(GGML_TYPE_Q8_0, x, &b, 32) == sizeof b);
    CHECK(b.qs[10] == 2 && b.qs[13] == -2 && b.qs[0] == 127 && b.qs[4] == -64);
}

/* Q8_K: the signed max sets iscale = -127/max (here max = -127/8 so iscale = 8 exactly, d =
 * 1/8), codes = nearest_int(8x) with ties to even (2.5 -> 2, 3.5 -> 4), bsums per 16. With
 * the inputs negated the max is positive, d = -1/8 and every code keeps its sign. */
TEST(quant_q8_K_by_hand) {
    float x[256];
    int want[256];
    for (int j = 0; j < 256; j++) {
        want[j] = (j * 37) % 255 - 127; /* -127..127 */
        x[j] = want[j] / 8.0f + ((j & 1) ? 0.01f : -0.01f);
    }
    want[7] = -127, x[7] = -127 / 8.0f; /* the max-abs element, negative, on the grid */
    for (int j = 0; j < 256; j++)
        if (j != 7 && abs(want[j]) == 127) want[j] = 126, x[j] = 126 / 8.0f;
    x[20] = 2.5f / 8, want[20] = 2;
    x[21] = 3.5f / 8, want[21] = 4;
    x[22] = -2.5f / 8, want[22] = -2;
    block_q8_K b;
    REQUIRE(tq_quantize(GGML_TYPE_Q8_K, x, &b, 256) == sizeof b);
    CHECK(b.d == 0.125f);
    int bad = 0;
    for (int j = 0; j < 256; j++) bad += b.qs[j] != want[j];
    CHECKF(bad == 0, "%d codes differ", bad);
    for (int s = 0; s < 16; s++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += want[16 * s + l];
        CHECKF(b.bsums[s] == sum, "bsum %d: %d, want %d", s, b.bsums[s], sum);
    }
    for (int j = 0; j < 256; j++) x[j] = -x[j];
    REQUIRE(tq_quantize(GGML_TYPE_Q8_K, x, &b, 256) == sizeof b);
    CHECK(b.d == -0.125f);
    bad = 0;
    for (int j = 0; j < 256; j++) bad += b.qs[j] != want[j];
    CHECKF(bad == 0, "negated: %d codes differ", bad);
}

/* ==== scale decoding on hand-made blocks ============================================= */

/* Q4_K scales bytes b0..b11 = C1 42 83 04 45 86 C7 08 9A BC DE F0. Unpacked by hand:
 *   sc0..3 = b0..b3 & 63            = 1 2 3 4
 *   mn0..3 = b4..b7 & 63            = 5 6 7 8
 *   sc4..7 = (b8..b11 & 15) | (b0..b3 >> 6) << 4 = 10|48=58, 12|16=28, 14|32=46, 0|0=0
 *   mn4..7 = (b8..b11 >> 4) | (b4..b7 >> 6) << 4 =  9|16=25, 11|32=43, 13|48=61, 15|0=15
 * With d = 1, dmin = 0 and every 4-bit code 1, sub-block s decodes to sc_s; with d = 0,
 * dmin = 1 to -mn_s. Q5_K shares the packing; its fifth bit adds 16 to the code. */
TEST(quant_k_scales_by_hand) {
    static const uint8_t sb[12] = {0xC1, 0x42, 0x83, 0x04, 0x45, 0x86, 0xC7, 0x08, 0x9A, 0xBC, 0xDE, 0xF0};
    static const int sc[8] = {1, 2, 3, 4, 58, 28, 46, 0}, mn[8] = {5, 6, 7, 8, 25, 43, 61, 15};
    block_q4_K b;
    memcpy(b.scales, sb, 12);
    memset(b.qs, 0x11, sizeof b.qs);
    b.d = tf32_to_f16(1.0f), b.dmin = 0;
    float y[256];
    tq_dequantize(GGML_TYPE_Q4_K, &b, y, 256);
    for (int j = 0; j < 256; j++) CHECKF(y[j] == sc[j / 32], "q4_K scale: y[%d] = %g, want %d", j, y[j], sc[j / 32]);
    b.d = 0, b.dmin = tf32_to_f16(1.0f);
    tq_dequantize(GGML_TYPE_Q4_K, &b, y, 256);
    for (int j = 0; j < 256; j++) CHECKF(y[j] == -mn[j / 32], "q4_K min: y[%d] = %g, want %d", j, y[j], -mn[j / 32]);

    block_q5_K b5;
    memcpy(b5.scales, sb, 12);
    memset(b5.qs, 0x11, sizeof b5.qs);
    memset(b5.qh, 0, sizeof b5.qh);
    b5.qh[3] = 0x04; /* bit 2: values 64..95 (low nibbles of the second 32 bytes), byte 3 -> value 67 */
    b5.d = tf32_to_f16(1.0f), b5.dmin = tf32_to_f16(0.5f);
    tq_dequantize(GGML_TYPE_Q5_K, &b5, y, 256);
    CHECK(y[67] == 17 * sc[2] - 0.5f * mn[2]);
    CHECK(y[66] == 1 * sc[2] - 0.5f * mn[2]);
    CHECK(y[200] == 1 * sc[6] - 0.5f * mn[6]);
}

/* Q6_K: d = 0.5, scales s_i, ql/qh zero except: ql[0] = 0x3A, qh[0] = 0xE4 (bits 00 01 10 11
 * from the bottom), ql[97] = 0xF5. By hand:
 *   value 0:   low nibble of ql[0] = 10, qh[0] bits 0-1 = 0 -> code 10 - 32 = -22, scale s0
 *   value 32:  low nibble of ql[32] = 0, bits 2-3 = 1 -> 16 - 32 = -16, scale s2
 *   value 64:  high nibble of ql[0] = 3, bits 4-5 = 2 -> 35 - 32 = 3, scale s4
 *   value 96:  high nibble of ql[32] = 0, bits 6-7 = 3 -> 48 - 32 = 16, scale s6
 *   value 161: second half, l = 33 -> ql[64+33] low nibble 5, qh[32+1] = 0 -> -27, scale s10
 *   value 225: high nibble of ql[97] = 15 -> -17, scale s14
 *   value 1:   everything zero -> -32, scale s0 */
TEST(quant_q6_K_by_hand) {
    static const int8_t s[16] = {-128, 127, -1, 5, 7, -9, 11, 13, 15, 17, 19, -21, 23, 25, 27, 29};
    block_q6_K b;
    memset(&b, 0, sizeof b);
    memcpy(b.scales, s, 16);
    b.d = tf32_to_f16(0.5f);
    b.ql[0] = 0x3A, b.qh[0] = 0xE4, b.ql[97] = 0xF5;
    float y[256];
    tq_dequantize(GGML_TYPE_Q6_K, &b, y, 256);
    CHECK(y[0] == 0.5f * s[0] * -22);
    CHECK(y[32] == 0.5f * s[2] * -16);
    CHECK(y[64] == 0.5f * s[4] * 3);
    CHECK(y[96] == 0.5f * s[6] * 16);
    CHECK(y[161] == 0.5f * s[10] * -27);
    CHECK(y[225] == 0.5f * s[14] * -17);
    CHECK(y[1] == 0.5f * s[0] * -32);
    CHECK(y[255] == 0.5f * s[15] * -32);
}

/* ==== llama.cpp files ================================================================= */

/* IEEE half from its bits, by the definition (independent of util.c). */
static float naive_half(const uint8_t *p) {
    unsigned h = p[0] | p[1] << 8, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(1024 + m), (int)e - 25);
    return (h & 0x8000) ? -v : v;
}

static unsigned bits(unsigned byte, int lo, int n) { return (byte >> lo) & ((1u << n) - 1); }

/* 6-bit scale (what = 0) or min (what = 1) of sub-block s of a Q4_K/Q5_K block: the 12 bytes
 * are 4 bytes "scale s<4 + top bits of scale s+4", 4 bytes the same for mins, 4 bytes of
 * nibbles (scale low | min high) for s >= 4. */
static int naive_k6(const uint8_t *sc, int s, int what) {
    if (s < 4) return (int)bits(sc[s + 4 * what], 0, 6);
    return (int)(bits(sc[8 + s - 4], 4 * what, 4) | bits(sc[s - 4 + 4 * what], 6, 2) << 4);
}

/* Element j of one block of `type` at raw bytes p, computed from the byte layout (with ggml's
 * float evaluation order: (d*scale)*q - dmin*m). */
static float naive_value(uint32_t type, const uint8_t *p, int j) {
    switch (type) {
    case GGML_TYPE_F32: { float f; memcpy(&f, p, 4); return f; }
    case GGML_TYPE_F16: return naive_half(p);
    case GGML_TYPE_Q8_0: return (float)(int8_t)p[2 + j] * naive_half(p);
    case GGML_TYPE_Q4_0: { /* 2 bytes d, 16 bytes: value j<16 low nibble of byte j, else high of j-16 */
        int q = j < 16 ? (int)bits(p[2 + j], 0, 4) : (int)bits(p[2 + j - 16], 4, 4);
        return (float)(q - 8) * naive_half(p);
    }
    case GGML_TYPE_Q4_K: { /* d, dmin, 12 scale bytes, 128 bytes: 64-value chunks of 32 bytes */
        int s = j / 32, chunk = j / 64, hi = (j / 32) % 2;
        int q = (int)bits(p[16 + 32 * chunk + j % 32], 4 * hi, 4);
        float d = naive_half(p) * (float)naive_k6(p + 4, s, 0);
        float m = naive_half(p + 2) * (float)naive_k6(p + 4, s, 1);
        return d * (float)q - m;
    }
    case GGML_TYPE_Q6_K: { /* ql[128], qh[64], scales[16], d: 128-value halves */
        int half = j / 128, r = j % 128, quarter = r / 32, l = r % 32;
        const uint8_t *ql = p + 64 * half, *qh = p + 128 + 32 * half;
        int lo = (int)bits(ql[l + 32 * (quarter % 2)], 4 * (quarter / 2), 4);
        int up = (int)bits(qh[l], 2 * quarter, 2);
        float d = naive_half(p + 208) * (float)(int8_t)p[192 + j / 16];
        return d * (float)(lo + 16 * up - 32);
    }
    default: return NAN;
    }
}

TEST(quant_llamacpp_files_bit_exact) {
    static const char *files[] = {"Q8_0", "Q4_0", "Q4_K_M", "Q6_K"};
    DATA_OR_SKIP(dir, "models/llamacpp/tiny-gqa768-Q8_0.gguf");
    free(dir);
    int seen[GGML_TYPE_COUNT] = {0};
    for (size_t f = 0; f < TOME_ARRAY_LEN(files); f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/llamacpp/tiny-gqa768-%s.gguf", files[f]);
        DATA_OR_SKIP(path, rel);
        gguf *g = NULL;
        terr e = {0};
        REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
        free(path);
        int64_t checked = 0;
        for (uint64_t t = 0; t < g->n_tensors; t++) {
            const gguf_tensor *gt = &g->tensors[t];
            const ggml_type_info *ti = ggml_type_get(gt->type);
            REQUIREF(ti && tq_supported(gt->type), "%s: %s type %u", files[f], gt->name, gt->type);
            int64_t row = gt->ne[0], nrows = gt->nelem / row;
            uint64_t rb = ggml_row_size(gt->type, row);
            REQUIRE(rb && rb * (uint64_t)nrows == gt->nbytes);
            float *y = malloc((size_t)row * sizeof *y);
            int64_t bad = 0;
            /* every row of tensors up to 1M values; of the two 8M ones (token_embd, output) a
             * stride of rows and the last (keeps this in seconds under ASan; the by-hand check
             * against gguf-py covered every value) */
            int64_t stride = (gt->nelem + (1 << 20) - 1) >> 20;
            for (int64_t r = 0; r < nrows; r = (r + stride < nrows || r == nrows - 1) ? r + stride : nrows - 1) {
                const uint8_t *rp = (const uint8_t *)gt->data + rb * (uint64_t)r;
                tq_dequantize(gt->type, rp, y, row);
                for (int64_t j = 0; j < row; j++) {
                    float v = naive_value(gt->type, rp + (j / ti->blck) * ti->size, (int)(j % ti->blck));
                    if (memcmp(&v, &y[j], 4) != 0) {
                        if (!bad)
                            tt_fail(T, __FILE__, __LINE__, "%s %s row %lld col %lld: %.9g vs naive %.9g",
                                    files[f], gt->name, (long long)r, (long long)j, y[j], v);
                        bad++;
                    }
                }
            }
            checked += gt->nelem / stride;
            seen[gt->type] = 1;
            CHECKF(bad == 0, "%s %s: %lld values differ", files[f], gt->name, (long long)bad);
            free(y);
        }
        CHECKF(checked > 1000000, "%s: only %lld values", files[f], (long long)checked);
        gguf_close(g);
    }
    CHECK(seen[GGML_TYPE_Q8_0] && seen[GGML_TYPE_Q4_0] && seen[GGML_TYPE_Q4_K] && seen[GGML_TYPE_Q6_K] &&
          seen[GGML_TYPE_F32]);
}

/* ==== byte equality with ggml's own code ============================================== */

/* tests/data/quant_ggml_ref.bin was made by hand (not in CI) by compiling ggml's ggml-quants.c,
 * ggml-cpu/quants.c and ggml-cpu/arch/x86/quants.c (-mavx2; ggml-org/ggml commit d99724f) into
 * a small C program that wrote, little-endian:
 *   "TQREF1\0\0", int32 n = 2048, float x[n] (weights input), float xa[n] (activations input),
 *   quantize_row_*_ref(x) for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q8_K Q4_K Q5_K Q6_K (row bytes each),
 *   float ggml_vec_dot_*_generic(quantized x, xa quantized to the vec_dot type) for Q4_0 Q4_1
 *     Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K,
 *   the AVX2 quantize_row_q8_0(xa) and quantize_row_q8_1(xa).
 * The inputs are 8 chunks of 256: plain normal, 5% 10x outliers, zero blocks, 1e-5 sub-blocks,
 * exact grid values with ties, constant blocks, all positive, x100. */
static const uint32_t ref_qtypes[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                      GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K, GGML_TYPE_Q4_K,
                                      GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
static const uint32_t ref_dtypes[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                      GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};

TEST(quant_matches_ggml_reference_bytes) {
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*sdata/quant_ggml_ref.bin", slash ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
    size_t len = 0;
    terr e = {0};
    uint8_t *buf = (uint8_t *)tread_file(path, &len, &e);
    REQUIREF(buf, "%s", e.msg);
    REQUIRE(len > 12 && memcmp(buf, "TQREF1\0\0", 8) == 0);
    int32_t n;
    memcpy(&n, buf + 8, 4);
    REQUIRE(n == 2048);
    size_t off = 12;
    float *x = malloc((size_t)n * 4), *xa = malloc((size_t)n * 4);
    memcpy(x, buf + off, (size_t)n * 4), off += (size_t)n * 4;
    memcpy(xa, buf + off, (size_t)n * 4), off += (size_t)n * 4;
    uint8_t *q = malloc(1 << 16), *qa = malloc(1 << 16);
    for (size_t k = 0; k < TOME_ARRAY_LEN(ref_qtypes); k++) {
        size_t sz = (size_t)ggml_row_size(ref_qtypes[k], n);
        REQUIRE(off + sz <= len);
        memset(q, 0, sz);
        tq_quantize(ref_qtypes[k], x, q, n);
        size_t first = sz;
        for (size_t i = 0; i < sz && first == sz; i++)
            if (q[i] != buf[off + i]) first = i;
        CHECKF(first == sz, "%s: first byte differing from ggml at %zu (block %zu)",
               ggml_type_get(ref_qtypes[k])->name, first, first / (size_t)ggml_type_get(ref_qtypes[k])->size);
        off += sz;
    }
    for (size_t k = 0; k < TOME_ARRAY_LEN(ref_dtypes); k++) {
        uint32_t t = ref_dtypes[k], at = tq_vec_dot_type(t);
        float want;
        REQUIRE(off + 4 <= len);
        memcpy(&want, buf + off, 4), off += 4;
        tq_quantize(t, x, q, n);
        tq_quantize(at, xa, qa, n);
        float got = tq_vec_dot(t, n, q, qa);
        CHECKF(memcmp(&got, &want, 4) == 0, "%s vec_dot: %.9g, ggml %.9g", ggml_type_get(t)->name, got, want);
    }
    /* llama.cpp's AVX2 activation quantizers, and proof that they differ from the reference here */
    const uint32_t act[2] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_1};
    for (int k = 0; k < 2; k++) {
        size_t sz = (size_t)ggml_row_size(act[k], n);
        REQUIRE(off + sz <= len);
        tq_quantize_x86(act[k], xa, q, n);
        CHECKF(memcmp(q, buf + off, sz) == 0, "%s: tq_quantize_x86 differs from ggml's AVX2 code",
               ggml_type_get(act[k])->name);
        tq_quantize(act[k], xa, qa, n);
        int diff = 0;
        for (size_t i = 0; i < sz; i++) diff += q[i] != qa[i];
        CHECKF(diff > 0, "%s: reference and AVX2 rounding agree on every code (ties missing?)",
               ggml_type_get(act[k])->name);
        off += sz;
    }
    CHECK(off == len);
    free(buf); free(x); free(xa); free(q); free(qa);
}

/* test_simd.c — the run-time-selected CPU kernels (lib/cpu/simd*.c) against the reference.
 *
 * Every path this CPU can run (scalar, avx2, avx512) is checked against quant.c's scalar
 * tq_vec_dot / tq_quantize, never against another SIMD path:
 *  - dot products of every SIMD weight type on awkward lengths (one block, three blocks,
 *    4096+256, 14336), with weights from the reference quantiser (realistic), from raw random
 *    bytes (every bit pattern of codes and 6-bit scales, Q8_0 codes of -128), and with extreme
 *    codes (all nibbles -8 or 7, scales at their limits);
 *  - gemv (several rows, strided) equal, row by row and bit for bit, to the path's own dot;
 *  - gemm (the prefill tiles: rows x columns, strided) equal, element by element and bit for
 *    bit, to the path's own dot;
 *  - activation quantisation byte-identical to tq_quantize (and the x86 variant to
 *    tq_quantize_x86), ties and zero blocks included;
 *  - the forced scalar path is the reference bit for bit;
 *  - cpu_kernels_select(NULL) takes the best path /proc/cpuinfo says this CPU has.
 *
 * Tolerance of a SIMD dot product. Integer sums inside a block are exact on both sides and the
 * per-block scales are the same floats, so the two results differ only in how m float terms
 * t_b (one per block, or per block and lane) are added: in any order the error of such a sum
 * is at most (m-1)·u·Σ|t_b| with u = 2^-24, for each side. Σ|t_b| <= S = Σ_i |w_i|·|a_i| over
 * the dequantised values (for Q4_K/Q5_K, S adds the min part |dmin·m·a| separately, because
 * the scale and min parts are summed apart and may cancel within w_i). So we allow
 *     |simd - ref| <= 2·(m + 16)·u·S,   m = n/32 (quantised types) or n (F32/F16/BF16),
 * the +16 covering the final lane reductions. That is 5e-5·S at n = 14336 for Q8_0; a single
 * wrong block moves the result by about S/(n/32) = 2e-3·S and a wrong element in F16 by ~S/n,
 * still above the bound (which, for F16, assumes the worst case of n chained additions).
 */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include "cpu/simd.h"
#include "gguf.h"
#include "quant.h"
#include "util.h"

static const uint32_t simd_types[] = {
    GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};
static const uint32_t act_types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q8_K, GGML_TYPE_F16, GGML_TYPE_BF16};
static const char *const path_names[] = {"scalar", "avx2", "avx512"};

/* Normal values whose scale changes every 256 (exp of a normal), with outliers; never zero. */
static void fill_normal(float *x, int64_t n, uint64_t seed, float scale) {
    trng r;
    trng_seed(&r, seed);
    float s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (i % 256 == 0) s = expf(trng_normal(&r)) * scale;
        x[i] = trng_normal(&r) * s;
        if (trng_u64(&r) % 97 == 0) x[i] *= 8;
        if (x[i] == 0) x[i] = 1e-3f * scale;
    }
}

static int blck(uint32_t type) { return ggml_type_get(type)->blck; }

static void *row_alloc(uint32_t type, int64_t n) {
    return calloc(1, (size_t)ggml_row_size(type, n) + 64);
}

/* A realistic fp16 scale: ±U(lo, hi). */
static tq_half rand_scale(trng *r, float lo, float hi, int allow_neg) {
    float v = lo + (hi - lo) * trng_f32(r);
    if (allow_neg && (trng_u64(r) & 1)) v = -v;
    return tf32_to_f16(v);
}

enum { W_QUANTISED, W_RAW, W_LOW, W_HIGH, W_KINDS };
static const char *const wkind_names[] = {"quantised", "raw bytes", "lowest codes", "highest codes"};

/* Weight row of `type`, n values, of the given kind. Raw: random bytes for codes and packed
 * scales, realistic fp16 d/dmin. Low/high: every code (and 6-bit scale/min) at its minimum or
 * maximum, d realistic. */
static void make_weights(uint32_t type, int64_t n, int kind, uint64_t seed, void *dst) {
    size_t bytes = (size_t)ggml_row_size(type, n);
    float *x = malloc((size_t)n * sizeof *x);
    fill_normal(x, n, seed, 0.02f);
    tq_quantize(type, x, dst, n);
    free(x);
    if (kind == W_QUANTISED) return;
    trng r;
    trng_seed(&r, seed ^ 0xABCDEF);
    uint8_t *b = dst;
    if (type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
        /* no codes: use random finite values of both signs over a wide range */
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) {
            float v = (trng_f32(&r) * 2 - 1) * (kind == W_LOW ? 1e-3f : kind == W_HIGH ? 100.f : 1.f);
            if (type == GGML_TYPE_F32) ((float *)dst)[i] = v;
            else h[i] = type == GGML_TYPE_F16 ? tf32_to_f16(v) : tf32_to_bf16(v);
        }
        return;
    }
    uint8_t fillb = kind == W_LOW ? 0x00 : 0xFF;
    int64_t nb = n / blck(type);
    for (int64_t i = 0; i < nb; i++) {
        switch (type) {
        case GGML_TYPE_Q8_0: {
            block_q8_0 *q = (block_q8_0 *)b + i;
            for (int j = 0; j < QK8_0; j++)
                q->qs[j] = kind == W_RAW ? (int8_t)trng_u64(&r) : kind == W_LOW ? -128 : 127;
            q->d = rand_scale(&r, 1e-4f, 1e-2f, 1);
            break;
        }
        case GGML_TYPE_Q4_0: {
            block_q4_0 *q = (block_q4_0 *)b + i;
            for (int j = 0; j < QK4_0 / 2; j++) q->qs[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            q->d = rand_scale(&r, 1e-4f, 1e-2f, 1);
            break;
        }
        case GGML_TYPE_Q4_K: {
            block_q4_K *q = (block_q4_K *)b + i;
            for (int j = 0; j < K_SCALE_SIZE; j++) q->scales[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : 0xFF;
            for (int j = 0; j < QK_K / 2; j++) q->qs[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            q->d = rand_scale(&r, 1e-5f, 1e-3f, 0);
            q->dmin = rand_scale(&r, 1e-5f, 1e-3f, 0);
            break;
        }
        case GGML_TYPE_Q5_K: {
            block_q5_K *q = (block_q5_K *)b + i;
            for (int j = 0; j < K_SCALE_SIZE; j++) q->scales[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : 0xFF;
            for (int j = 0; j < QK_K / 2; j++) q->qs[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            for (int j = 0; j < QK_K / 8; j++) q->qh[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            q->d = rand_scale(&r, 1e-5f, 1e-3f, 0);
            q->dmin = rand_scale(&r, 1e-5f, 1e-3f, 0);
            break;
        }
        case GGML_TYPE_Q6_K: {
            block_q6_K *q = (block_q6_K *)b + i;
            for (int j = 0; j < QK_K / 2; j++) q->ql[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            for (int j = 0; j < QK_K / 4; j++) q->qh[j] = kind == W_RAW ? (uint8_t)trng_u64(&r) : fillb;
            for (int j = 0; j < QK_K / 16; j++)
                q->scales[j] = kind == W_RAW ? (int8_t)trng_u64(&r) : kind == W_LOW ? -128 : 127;
            q->d = rand_scale(&r, 1e-5f, 1e-3f, 1);
            break;
        }
        default:
            break;
        }
    }
    (void)bytes;
}

/* S of the tolerance (see the top of this file): Σ|w_i||a_i| from the dequantised rows; for
 * Q4_K/Q5_K the scale part and the min part are dequantised separately (d or dmin zeroed). */
static double abs_dot(uint32_t type, int64_t n, const void *w, const void *a) {
    uint32_t vt = tq_vec_dot_type(type);
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    tq_dequantize(vt, a, af, n);
    double s = 0;
    if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K) {
        size_t bytes = (size_t)ggml_row_size(type, n), bs = (size_t)ggml_type_get(type)->size;
        uint8_t *c = malloc(bytes);
        for (int part = 0; part < 2; part++) {
            memcpy(c, w, bytes);
            for (size_t off = 0; off < bytes; off += bs) {
                /* d at offset 0, dmin at offset 2 in both layouts */
                memset(c + off + (part ? 0 : 2), 0, 2);
            }
            tq_dequantize(type, c, wf, n);
            for (int64_t i = 0; i < n; i++) s += fabs((double)wf[i]) * fabs((double)af[i]);
        }
        free(c);
    } else {
        tq_dequantize(type, w, wf, n);
        for (int64_t i = 0; i < n; i++) s += fabs((double)wf[i]) * fabs((double)af[i]);
    }
    free(wf);
    free(af);
    return s;
}

static double dot_tol(uint32_t type, int64_t n, double S) {
    int64_t m = ggml_type_get(type)->blck == 1 ? n : n / 32;
    return 2.0 * (double)(m + 16) * ldexp(1.0, -24) * S + 1e-30;
}

/* Fills k with `path` if this CPU can run it; 0 if it cannot. */
static int get_path(cpu_kernels *k, int path) {
    return cpu_kernels_select(k, path_names[path]) == 0 && k->path == path;
}

TEST(simd_select_best_for_this_cpu) {
    cpu_kernels k;
    REQUIRE(cpu_kernels_select(&k, NULL) == 0);
    REQUIRE(k.name != NULL);
    /* independent evidence: the kernel's own flag list */
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) SKIP("no /proc/cpuinfo to compare cpuid with");
    char flags[8192] = "";
    while (fgets(flags, sizeof flags - 1, f))
        if (!strncmp(flags, "flags", 5)) break;
    if (strncmp(flags, "flags", 5)) flags[0] = 0;
    char *nl = strchr(flags, '\n');
    if (nl) *nl = ' '; /* so the last flag also has a space after it */
    fclose(f);
    REQUIRE(flags[0]);
#define HAS(s) (strstr(flags, " " s " ") != NULL)
    int avx2 = HAS("avx2") && HAS("fma") && HAS("f16c");
    int avx512 = avx2 && HAS("avx512f") && HAS("avx512bw") && HAS("avx512vl") &&
                 HAS("avx512dq") && HAS("avx512_vnni");
    CHECK(k.feat.avx2 == HAS("avx2"));
    CHECK(k.feat.avx512f == HAS("avx512f"));
    CHECK(k.feat.avx512vnni == HAS("avx512_vnni"));
    CHECK(k.feat.avx512bf16 == HAS("avx512_bf16"));
#undef HAS
    int want = avx512 ? CPU_PATH_AVX512 : avx2 ? CPU_PATH_AVX2 : CPU_PATH_SCALAR;
    CHECKF(k.path == want, "picked %s, cpuinfo says %s", k.name, path_names[want]);
    CHECK(!strcmp(k.name, path_names[k.path]));
    /* This project's development and CI machines have AVX-512: the point of the exercise. */
    if (avx2) CHECK(k.path != CPU_PATH_SCALAR);
}

TEST(simd_force_flags) {
    cpu_kernels k;
    CHECK(cpu_kernels_select(&k, "scalar") == 0);
    CHECK(k.path == CPU_PATH_SCALAR && !strcmp(k.name, "scalar"));
    CHECK(cpu_kernels_select(&k, "sse9") == TOME_EFLAGS);
    CHECK(k.dot[GGML_TYPE_Q8_0] != NULL); /* still usable: the best path */
    cpu_kernels best;
    cpu_kernels_select(&best, NULL);
    for (int p = best.path + 1; p <= CPU_PATH_AVX512; p++) {
        CHECK(cpu_kernels_select(&k, path_names[p]) == TOME_ERESOURCE);
        CHECK(k.path == best.path);
    }
    /* every supported type has an entry in every path; unsupported ones have none */
    for (int p = 0; p <= best.path; p++) {
        REQUIRE(cpu_kernels_select(&k, path_names[p]) == 0);
        for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
            CHECKF((k.dot[t] != NULL) == (tq_supported(t) != 0), "%s type %u dot", k.name, t);
            CHECKF((k.gemv[t] != NULL) == (k.dot[t] != NULL), "%s type %u gemv", k.name, t);
        }
        for (size_t j = 0; j < TOME_ARRAY_LEN(act_types); j++)
            CHECK(k.quant[act_types[j]] != NULL && k.quant_x86[act_types[j]] != NULL);
        CHECK(k.quant[GGML_TYPE_Q8_1] != NULL && k.quant_x86[GGML_TYPE_Q8_1] != NULL);
    }
}

/* Activations for a weight type: the reference quantiser of realistic floats. */
static void *make_acts(uint32_t type, int64_t n, uint64_t seed) {
    uint32_t vt = tq_vec_dot_type(type);
    float *x = malloc((size_t)n * sizeof *x);
    fill_normal(x, n, seed, 1.0f);
    void *a = row_alloc(vt, n);
    tq_quantize(vt, x, a, n);
    free(x);
    return a;
}

TEST(simd_scalar_path_is_reference) {
    cpu_kernels k;
    REQUIRE(cpu_kernels_select(&k, "scalar") == 0);
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        if (!tq_supported(t)) continue;
        int64_t n = 4 * (blck(t) == 1 ? 256 : blck(t));
        void *w = row_alloc(t, n), *a = make_acts(t, n, 7 + t);
        float *x = malloc((size_t)n * sizeof *x);
        fill_normal(x, n, 100 + t, 0.02f);
        tq_quantize(t, x, w, n);
        float r = tq_vec_dot(t, n, w, a), s = k.dot[t](n, w, a);
        CHECKF(memcmp(&r, &s, sizeof r) == 0, "type %u: %.9g vs %.9g", t, r, s);
        float y[1];
        k.gemv[t](n, 1, w, 0, a, y);
        CHECK(memcmp(&r, y, sizeof r) == 0);
        free(w), free(a), free(x);
    }
}

/* All SIMD dot products of one path against the reference. */
static void check_dots(tctx *T, int path) {
    cpu_kernels k;
    if (!get_path(&k, path)) SKIP("this CPU cannot run the %s path", path_names[path]);
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(simd_types); ti++) {
        uint32_t t = simd_types[ti];
        int b = blck(t);
        int64_t ns[8] = {b, 3 * b, 4096 + 256, 14336, 0};
        if (b == 1) { ns[0] = 1; ns[1] = 17; ns[4] = 100; ns[5] = 255; ns[6] = 0; }
        for (int ni = 0; ns[ni]; ni++) {
            int64_t n = ns[ni];
            void *a = make_acts(t, n, 1000 + (uint64_t)n + t);
            void *w = row_alloc(t, n);
            for (int kind = 0; kind < W_KINDS; kind++) {
                make_weights(t, n, kind, 77 * t + (uint64_t)n + (uint64_t)kind, w);
                float ref = tq_vec_dot(t, n, w, a);
                float got = k.dot[t](n, w, a);
                double S = abs_dot(t, n, w, a);
                double tol = dot_tol(t, n, S);
                CHECKF(isfinite(got) && fabs((double)got - ref) <= tol,
                       "%s %s n=%lld %s: simd %.9g ref %.9g |diff| %.3g > tol %.3g (S %.6g)",
                       k.name, ggml_type_get(t)->name, (long long)n, wkind_names[kind], got, ref,
                       fabs((double)got - ref), tol, S);
            }
            free(a), free(w);
        }
    }
}

TEST(simd_dot_avx2) { check_dots(T, CPU_PATH_AVX2); }
TEST(simd_dot_avx512) { check_dots(T, CPU_PATH_AVX512); }

/* gemv: 1..9 rows (covers the 4-row blocking and its remainder), rows padded apart. */
static void check_gemv(tctx *T, int path) {
    cpu_kernels k;
    if (!get_path(&k, path)) SKIP("this CPU cannot run the %s path", path_names[path]);
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(simd_types); ti++) {
        uint32_t t = simd_types[ti];
        /* 45 blocks of 32: two 16-block steps of the AVX-512 loop, its 8-block step, 5 more */
        int64_t n = blck(t) == 1 ? 300 : blck(t) == 32 ? 45 * 32 : 5 * blck(t);
        size_t rb = (size_t)ggml_row_size(t, n), stride = rb + 40;
        const int R = 9;
        uint8_t *w = calloc((size_t)R, stride);
        for (int r = 0; r < R; r++) make_weights(t, n, r % W_KINDS, 500 + (uint64_t)r, w + (size_t)r * stride);
        void *a = make_acts(t, n, 4242);
        for (int nr = 1; nr <= R; nr++) {
            float y[9 + 1];
            y[nr] = 12345.0f; /* guard */
            k.gemv[t](n, nr, w, stride, a, y);
            for (int r = 0; r < nr; r++) {
                float d = k.dot[t](n, w + (size_t)r * stride, a);
                CHECKF(memcmp(&d, &y[r], sizeof d) == 0, "%s %s gemv rows=%d row %d: %.9g vs dot %.9g",
                       k.name, ggml_type_get(t)->name, nr, r, y[r], d);
            }
            CHECK(y[nr] == 12345.0f);
        }
        free(w), free(a);
    }
}

TEST(simd_gemv_avx2) { check_gemv(T, CPU_PATH_AVX2); }
TEST(simd_gemv_scalar) { check_gemv(T, CPU_PATH_SCALAR); }
TEST(simd_gemv_avx512) { check_gemv(T, CPU_PATH_AVX512); }

/* Activation quantisers: byte-identical to tq_quantize on realistic data of several scales,
 * exact ties (x·id = k + 1/2), an all-zero block, a block whose largest magnitude appears
 * twice with both signs, NaN/inf/denormals (F16/BF16) and odd lengths (F16/BF16). */
static void check_quant(tctx *T, int path) {
    cpu_kernels k;
    if (!get_path(&k, path)) SKIP("this CPU cannot run the %s path", path_names[path]);
    const int64_t n = 4096 + 512;
    float *x = malloc((size_t)n * sizeof *x);
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(act_types); ti++) {
        uint32_t t = act_types[ti];
        for (int v = 0; v < 6; v++) {
            fill_normal(x, n, 31 + (uint64_t)v, v == 0 ? 1.0f : v == 1 ? 1e-3f : v == 2 ? 1e3f : 1.0f);
            if (v == 3) { /* ties: block max 127 (scale 1), values k + 0.5 of both signs */
                for (int64_t i = 0; i < n; i++) {
                    int64_t j = i % 256;
                    x[i] = j == 0 ? 127.0f : j == 1 ? -127.0f
                         : (float)((int)(i * 37 % 253) - 126) + ((i & 1) ? 0.5f : -0.5f);
                    if (i % 32 == 0) x[i] = (i % 256 == 0) ? -127.0f : 127.0f;
                }
            }
            if (v == 4) { /* zero blocks, and ± the same maximum in one block */
                for (int64_t i = 0; i < 256; i++) x[i] = 0;
                x[300] = 5.0f, x[301] = -5.0f, x[600] = -5.0f, x[601] = 5.0f;
            }
            if (v == 5) { /* specials for F16/BF16; others still finite */
                x[3] = 1e-40f, x[4] = -1e-40f, x[5] = 70000.f, x[6] = -65519.f, x[7] = 65520.f;
                x[8] = 5.96e-8f, x[9] = 2.98e-8f, x[10] = 1e-30f;
                if (t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) {
                    x[11] = NAN, x[12] = -NAN, x[13] = INFINITY, x[14] = -INFINITY;
                    uint32_t u = 0x7FA00001u; /* signalling NaN with a payload */
                    memcpy(&x[15], &u, 4);
                }
            }
            int64_t lens[3] = {n, n - (int64_t)blck(t) * 3, 0};
            if (t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) lens[1] = 4095 + 7;
            for (int li = 0; lens[li]; li++) {
                int64_t m = lens[li];
                size_t bytes = (size_t)ggml_row_size(t, m);
                uint8_t *r = calloc(1, bytes + 16), *s = calloc(1, bytes + 16);
                for (int x86 = 0; x86 < 2; x86++) {
                    memset(s, 0xA5, bytes + 16);
                    if (x86) tq_quantize_x86(t, x, r, m);
                    else tq_quantize(t, x, r, m);
                    memset(r + bytes, 0xA5, 16);
                    (x86 ? k.quant_x86 : k.quant)[t](x, s, m);
                    size_t bad = 0;
                    while (bad < bytes + 16 && r[bad] == s[bad]) bad++;
                    CHECKF(bad == bytes + 16,
                           "%s quant%s %s variant %d n=%lld: first differing byte %zu of %zu",
                           k.name, x86 ? "_x86" : "", ggml_type_get(t)->name, v, (long long)m, bad,
                           bytes);
                }
                free(r), free(s);
            }
        }
    }
    free(x);
}

TEST(simd_quant_avx2) { check_quant(T, CPU_PATH_AVX2); }
TEST(simd_quant_avx512) { check_quant(T, CPU_PATH_AVX512); }

/* cpu_matmul: a row range that is not a multiple of anything, several columns, strided output;
 * every element equals the path's dot, untouched outputs stay untouched. */
TEST(simd_matmul_tiles) {
    cpu_kernels k;
    REQUIRE(cpu_kernels_select(&k, NULL) == 0);
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K};
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(types); ti++) {
        uint32_t t = types[ti], vt = tq_vec_dot_type(t);
        const int64_t n = 1024, rows = 150, r0 = 3, r1 = 141, ncols = 3, ys = rows + 5;
        size_t rb = (size_t)ggml_row_size(t, n), ab = (size_t)ggml_row_size(vt, n) + 8;
        uint8_t *w = malloc(rb * rows), *a = malloc(ab * ncols);
        for (int64_t r = 0; r < rows; r++) make_weights(t, n, W_QUANTISED, 900 + (uint64_t)r, w + r * rb);
        float *x = malloc(n * sizeof *x);
        for (int64_t c = 0; c < ncols; c++) {
            fill_normal(x, n, 77 + (uint64_t)c, 1.0f);
            tq_quantize(vt, x, a + c * ab, n);
        }
        float *y = malloc(ys * ncols * sizeof *y);
        for (int64_t i = 0; i < ys * ncols; i++) y[i] = -999.0f;
        cpu_matmul(&k, t, n, w, rb, r0, r1, a, ab, ncols, y, ys);
        int bad = 0;
        for (int64_t c = 0; c < ncols; c++)
            for (int64_t r = 0; r < ys; r++) {
                float got = y[c * ys + r];
                float want = (r >= r0 && r < r1) ? k.dot[t](n, w + r * rb, a + c * ab) : -999.0f;
                if (memcmp(&got, &want, sizeof got) && bad++ < 5)
                    CHECKF(0, "%s col %lld row %lld: %.9g, want %.9g", ggml_type_get(t)->name,
                           (long long)c, (long long)r, got, want);
            }
        CHECK(bad == 0);
        free(w), free(a), free(x), free(y);
    }
}

/* gemm (the multi-column tile kernels cpu_matmul uses for prefill): every (row, column) equals
 * the path's own dot bit for bit: rows 1..9 (tiles of 4 and the remainder), columns 1..9 (pairs
 * and an odd one), n of one block, of 45 blocks (the 16- and 8-block steps and single blocks)
 * and 14336; weights of every kind (Q8_0 codes of -128 included), strided activations and
 * output, guards around the output untouched. Types without a gemm entry are skipped. */
static void check_gemm(tctx *T, int path) {
    cpu_kernels k;
    if (!get_path(&k, path)) SKIP("this CPU cannot run the %s path", path_names[path]);
    int tested = 0;
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(simd_types); ti++) {
        uint32_t t = simd_types[ti], vt = tq_vec_dot_type(t);
        if (!k.gemm[t]) continue;
        const int64_t ns[] = {blck(t), 45 * (int64_t)blck(t), 14336};
        for (size_t ni = 0; ni < TOME_ARRAY_LEN(ns); ni++) {
            int64_t n = ns[ni];
            int maxr = n > 4096 ? 5 : 9, maxc = n > 4096 ? 3 : 9; /* keep the big n quick */
            size_t ws = (size_t)ggml_row_size(t, n) + 24, as = (size_t)ggml_row_size(vt, n) + 8;
            uint8_t *w = calloc((size_t)maxr, ws), *a = calloc((size_t)maxc, as);
            for (int r = 0; r < maxr; r++)
                make_weights(t, n, r % W_KINDS, 700 + (uint64_t)r, w + (size_t)r * ws);
            for (int c = 0; c < maxc; c++) {
                void *ac = make_acts(t, n, 4300 + (uint64_t)c);
                memcpy(a + (size_t)c * as, ac, (size_t)ggml_row_size(vt, n));
                free(ac);
            }
            const size_t ys = 11; /* > maxr: a guard after each column */
            float *y = malloc(ys * (size_t)maxc * sizeof *y);
            int bad = 0;
            for (int nr = 1; nr <= maxr; nr++)
                for (int nc = 1; nc <= maxc; nc++) {
                    for (size_t i = 0; i < ys * (size_t)maxc; i++) y[i] = 12345.0f;
                    k.gemm[t](n, nr, w, ws, a, as, nc, y, ys);
                    for (int c = 0; c < maxc; c++)
                        for (int r = 0; r < (int)ys; r++) {
                            float got = y[(size_t)c * ys + (size_t)r], want = 12345.0f;
                            if (c < nc && r < nr)
                                want = k.dot[t](n, w + (size_t)r * ws, a + (size_t)c * as);
                            if (memcmp(&got, &want, sizeof got) && bad++ < 5)
                                CHECKF(0, "%s %s gemm n=%lld %dx%d: row %d col %d %.9g, dot %.9g",
                                       k.name, ggml_type_get(t)->name, (long long)n, nr, nc, r, c,
                                       got, want);
                        }
                }
            CHECK(bad == 0);
            tested++;
            free(w), free(a), free(y);
        }
    }
    if (!tested) SKIP("the %s path has no gemm kernel", path_names[path]);
}

/* Σ|per-block terms| of one row against one activation, and their exact sum (double): the
 * scale of float-summation-order differences between two correct kernels. Q8_0: S_b·dw·da per
 * block; Q6_K: da·d·sc_j·Σ(q-32)·a per 16 values; Q4_K: da·dw·sc_j·S_j and da·dmin·m_j·bsum_j per sub-block (kernels group these
 * per lane and super-block in different ways), the scales unpacked here from the GGUF bit
 * layout. */
static double abs_terms(uint32_t t, int64_t n, const void *wv, const void *av, double *exact) {
    double s = 0, e = 0;
    if (t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) { /* the products w_i·a_i of the halves */
        const uint16_t *w = wv, *a = av;
        for (int64_t i = 0; i < n; i++) {
            double x = t == GGML_TYPE_F16 ? (double)tf16_to_f32(w[i]) * (double)tf16_to_f32(a[i])
                                          : (double)tbf16_to_f32(w[i]) * (double)tbf16_to_f32(a[i]);
            s += fabs(x), e += x;
        }
    } else if (t == GGML_TYPE_Q8_0) {
        const block_q8_0 *w = wv, *a = av;
        for (int64_t b = 0; b < n / 32; b++) {
            int64_t S = 0;
            for (int i = 0; i < 32; i++) S += (int64_t)w[b].qs[i] * a[b].qs[i];
            double x = (double)S * (double)tf16_to_f32(w[b].d) * (double)tf16_to_f32(a[b].d);
            s += fabs(x), e += x;
        }
    } else if (t == GGML_TYPE_Q6_K) {
        const block_q6_K *w = wv;
        const block_q8_K *a = av;
        for (int64_t b = 0; b < n / 256; b++) {
            int64_t tot = 0, mag = 0;
            for (int j = 0; j < 16; j++) {
                int64_t S = 0, bs = 0;
                for (int v = 16 * j; v < 16 * j + 16; v++) {
                    int h = v / 128, l = v % 32, k = (v % 128) / 32; /* value 128h + 32k + l */
                    int lo = w[b].ql[64 * h + l + (k & 1) * 32], hi2 = (w[b].qh[32 * h + l] >> (2 * k)) & 3;
                    int q = ((k < 2 ? lo & 0xF : lo >> 4) | hi2 << 4);
                    S += (int64_t)q * a[b].qs[v];
                    bs += a[b].qs[v];
                }
                tot += w[b].scales[j] * (S - 32 * bs);
                mag += llabs(w[b].scales[j]) * (llabs(S) + 32 * llabs(bs));
            }
            double dd = (double)a[b].d * (double)tf16_to_f32(w[b].d);
            s += fabs(dd) * (double)mag, e += dd * (double)tot;
        }
    } else { /* Q4_K */
        const block_q4_K *w = wv;
        const block_q8_K *a = av;
        for (int64_t b = 0; b < n / 256; b++) {
            const uint8_t *q = w[b].scales;
            int64_t ssum = 0, msum = 0, sabs = 0, mabs = 0;
            for (int j = 0; j < 8; j++) {
                int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
                int m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
                int64_t S = 0, bs = 0;
                for (int v = 32 * j; v < 32 * j + 32; v++) {
                    int byte = w[b].qs[32 * (v / 64) + v % 32];
                    int nib = (v % 64) < 32 ? byte & 0xF : byte >> 4;
                    S += (int64_t)nib * a[b].qs[v];
                    bs += a[b].qs[v];
                }
                ssum += sc * S, msum += m * bs;
                sabs += llabs(sc * S), mabs += llabs(m * bs);
            }
            double dw = (double)a[b].d * (double)tf16_to_f32(w[b].d);
            double dm = (double)a[b].d * (double)tf16_to_f32(w[b].dmin);
            s += fabs(dw) * (double)sabs + fabs(dm) * (double)mabs, e += dw * (double)ssum - dm * (double)msum;
        }
    }
    *exact = e;
    return s;
}

/* The AVX-512 prefill paths for >= 16 rows and >= 4 columns (Q8_0, Q4_K, Q6_K: rows transposed
 * into lanes, integer sums exact, blocks added in row order): every element within
 * (blocks + 4)·2^-24·Σ|terms| of the exact sum of the per-block terms, and twice that of
 * dot(). F16 and BF16 (rows transposed into float lanes, exact products w_i·a_i summed in
 * order from zero in chunks of at most 128 values, the chunk sums then added in order):
 * within (128 + chunks + 4)·2^-24·Σ|w_i·a_i|; n = 777 leaves a last chunk of 9 values (the
 * pairwise and odd tails of the packing). Rows 16, 53 (three
 * groups: a pair and a single one, and a tail of 5 through the tiles) and 64; columns 4, 9
 * and 17 (groups of 8 and remainders); a short row and one of 14336 (several packed chunks:
 * the output accumulates across them); every kind of weight; guards untouched. */
TEST(simd_gemm16_avx512) {
    cpu_kernels k;
    if (!get_path(&k, CPU_PATH_AVX512)) SKIP("this CPU cannot run the avx512 path");
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_F16, GGML_TYPE_BF16};
    const int rs[] = {16, 53, 64}, cs[] = {4, 9, 17};
    int bad = 0, checked = 0;
    for (size_t ti = 0; ti < TOME_ARRAY_LEN(types); ti++) {
        const uint32_t t = types[ti], vt = tq_vec_dot_type(t);
        const int64_t ns[] = {t == GGML_TYPE_Q8_0 ? 45 * 32 : blck(t) == 1 ? 777 : 3 * 256, 14336};
        for (size_t ni = 0; ni < TOME_ARRAY_LEN(ns); ni++) {
            const int64_t n = ns[ni], nblk = n / blck(t);
            size_t ws = (size_t)ggml_row_size(t, n) + 36, as = (size_t)ggml_row_size(vt, n) + 4;
            uint8_t *w = calloc(64, ws), *a = calloc(17, as);
            REQUIRE(w && a);
            for (int r = 0; r < 64; r++) make_weights(t, n, r % W_KINDS, 5100 + (uint64_t)r, w + (size_t)r * ws);
            for (int c = 0; c < 17; c++) {
                void *ac = make_acts(t, n, 5300 + (uint64_t)c);
                memcpy(a + (size_t)c * as, ac, (size_t)ggml_row_size(vt, n));
                free(ac);
            }
            const size_t ys = 70;
            float *y = malloc(ys * 17 * sizeof *y);
            REQUIRE(y);
            for (size_t ri = 0; ri < TOME_ARRAY_LEN(rs); ri++)
                for (size_t ci = 0; ci < TOME_ARRAY_LEN(cs); ci++) {
                    const int nr = rs[ri], nc = cs[ci];
                    for (size_t i = 0; i < ys * 17; i++) y[i] = 12345.0f;
                    k.gemm[t](n, nr, w, ws, a, as, nc, y, ys);
                    for (int c = 0; c < 17; c++)
                        for (int r = 0; r < (int)ys; r++) {
                            float got = y[(size_t)c * ys + (size_t)r];
                            if (c >= nc || r >= nr) {
                                if (got != 12345.0f && bad++ < 5) CHECKF(0, "guard row %d col %d written", r, c);
                                continue;
                            }
                            const void *wr = w + (size_t)r * ws, *ar = a + (size_t)c * as;
                            double exact, mag = abs_terms(t, n, wr, ar, &exact);
                            double steps = blck(t) == 1 ? (double)(128 + (n + 127) / 128) : (double)nblk;
                            double tol = (steps + 4) * 0x1p-24 * mag + 1e-30;
                            float d = k.dot[t](n, wr, ar);
                            checked++;
                            if ((fabs(got - exact) > tol || fabs((double)got - d) > 2 * tol) && bad++ < 5)
                                CHECKF(0, "%s n=%lld %dx%d row %d col %d: %.9g, exact %.9g, dot %.9g (tol %.3g)",
                                       ggml_type_get(t)->name, (long long)n, nr, nc, r, c, got, exact, d, tol);
                        }
                }
            free(w), free(a), free(y);
        }
    }
    CHECK(bad == 0);
    CHECK(checked > 0);
}

TEST(simd_gemm_avx2) { check_gemm(T, CPU_PATH_AVX2); }
TEST(simd_gemm_avx512) { check_gemm(T, CPU_PATH_AVX512); }

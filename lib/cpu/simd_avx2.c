/* simd_avx2.c — AVX2+FMA+F16C dot products and activation quantisers (see simd.h).
 *
 * Every function here carries target("avx2,fma,f16c") instead of the file being compiled with
 * -mavx2, so this object links into a binary that also runs on older CPUs: simd.c calls
 * cpu_simd_fill_avx2() only after cpuid said these instructions exist.
 *
 * Integer products follow the usual pattern for int8 x int8 without VNNI: vpmaddubsw wants
 * one unsigned operand, so the weights' signs move onto the activations (|w| * sign(a, w)).
 * This cannot saturate: |w| <= 128, |a| <= 127 (activation quantisers never emit -128), so a
 * pair sums to at most 2*128*127 = 32512. Every integer sum of a block is exact; only the
 * per-block float terms are added in a different order from the reference.
 */
#include "cpu/simd.h"

#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "cpu/simd_x86.h"

/* Loops over registers (rows, sub-blocks, vectors) must unroll fully so that their arrays
 * live in registers; -O2 alone keeps such loops and spills the arrays to the stack. */
#define UNROLL _Pragma("GCC unroll 16")
#define TGT __attribute__((target("avx2,fma,f16c")))

/* ---- helpers --------------------------------------------------------------------------- */

static inline TGT float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline TGT int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static inline TGT float h2f(tq_half h) { return _cvtsh_ss(h); }

/* 8 int32 partial sums of x[i]*y[i] over 32 int8 pairs; y must not contain -128. */
static inline TGT __m256i dot_i8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* roundf() on 8 lanes: round half away from zero, exactly (x - trunc(x) is exact). */
static inline TGT __m256 round_away(__m256 x) {
    __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 frac = _mm256_and_ps(_mm256_sub_ps(x, t), absmask);
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_andnot_ps(absmask, x)); /* ±1 */
    return _mm256_add_ps(t, _mm256_and_ps(ge, one));
}

/* Packs 32 int32 (four vectors, in order) into 32 int8 in order, saturating. */
static inline TGT __m256i pack_i32_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ---- dot products ------------------------------------------------------------------------ */

static TGT float dot_q8_0(int64_t n, const void *vw, const void *va) {
    const block_q8_0 *w = vw;
    const block_q8_0 *a = va;
    int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)w[i].qs),
                            _mm256_loadu_si256((const __m256i *)a[i].qs));
        __m256i p1 = dot_i8(_mm256_loadu_si256((const __m256i *)w[i + 1].qs),
                            _mm256_loadu_si256((const __m256i *)a[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i + 1].d) * h2f(a[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)w[i].qs),
                            _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* 32 weights of a Q4_0 block as int8 in -8..7, in element order (low nibbles first). */
static inline TGT __m256i unpack_q4_0(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    b = _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi8(b, _mm256_set1_epi8(8));
}

static TGT float dot_q4_0(int64_t n, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8_0 *a = va;
    int64_t nb = n / QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256i p0 = dot_i8(unpack_q4_0(w[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs));
        __m256i p1 =
            dot_i8(unpack_q4_0(w[i + 1].qs), _mm256_loadu_si256((const __m256i *)a[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i + 1].d) * h2f(a[i + 1].d)),
                               _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p0 = dot_i8(unpack_q4_0(w[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p0),
                               acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* One Q4_K row against C (1..MAXC) Q8_K columns; dot_q4_K is C = 1, so the prefill tiles
 * equal dot() bit for bit. The nibbles and scale words of each chunk are unpacked once for all
 * columns; the mins come off the one float accumulator by an fnmadd per super-block (one
 * reduction per row). Measured against the earlier kernel (separate min accumulator, dot
 * apart from the tile): see docs/perf.md. */
#define Q4K_TILE_MAXC 4 /* 4 beat 2 by ~10% (some spills, fewer unpacks per column) */
static inline __attribute__((always_inline)) TGT void tile_k45(
    int five, int C, int64_t nb, const void *vw, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m256 acc[Q4K_TILE_MAXC];
    UNROLL for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nb; i++) {
        /* the fields of super-block i (Q5_K adds qh between the scales and the codes) */
        const block_q4_K *w4 = (const block_q4_K *)vw + i;
        const block_q5_K *w5 = (const block_q5_K *)vw + i;
        const uint8_t *scales = five ? w5->scales : w4->scales, *qs = five ? w5->qs : w4->qs;
        tq_half hd = five ? w5->d : w4->d, hdmin = five ? w5->dmin : w4->dmin;
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)w5->qh) : _mm256_setzero_si256();
        __m128i scm = unpack_k4_scales(scales);
        /* the 8 scales as 16-bit words in both halves; word 2c is picked by a byte shuffle */
        __m256i scv = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm)); /* m0 m0 m1 m1 ... */
        float wd = h2f(hd), wdmin = h2f(hdmin);
        __m256i sumi[Q4K_TILE_MAXC];
        UNROLL for (int c = 0; c < C; c++) sumi[c] = _mm256_setzero_si256();
        UNROLL for (int ch = 0; ch < 4; ch++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * ch));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) { /* qh bit 2ch -> bit 4 of the low codes, bit 2ch+1 -> bit 4 of the high codes */
                __m256i h0 = ch < 2 ? _mm256_slli_epi16(qh, 4 - 2 * ch) : _mm256_srli_epi16(qh, 2 * ch - 4);
                __m256i h1 = ch < 2 ? _mm256_slli_epi16(qh, 3 - 2 * ch) : _mm256_srli_epi16(qh, 2 * ch - 3);
                lo = _mm256_or_si256(lo, _mm256_and_si256(h0, b4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(h1, b4));
            }
            __m256i slo = _mm256_shuffle_epi8(scv, _mm256_set1_epi16((short)(0x0100 + 0x0404 * ch)));
            __m256i shi = _mm256_shuffle_epi8(scv, _mm256_set1_epi16((short)(0x0302 + 0x0404 * ch)));
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *q8 = a[c][i].qs + 64 * ch;
                __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
                __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
                plo = _mm256_madd_epi16(plo, slo);
                phi = _mm256_madd_epi16(phi, shi);
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(plo, phi));
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            float da = a[c][i].d;
            __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[c][i].bsums), m16);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(wd * da), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_set1_ps(wdmin * da), _mm256_cvtepi32_ps(ms), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) y[(size_t)c * y_stride] = hsum_ps(acc[c]);
}

static inline __attribute__((always_inline)) TGT void tile_q4_K(
    int C, int64_t nb, const block_q4_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    tile_k45(0, C, nb, w, a, y, y_stride);
}

KQ_DOT_GEMV(q4_K, tile_q4_K)

/* The prefill entry of a K-quant: Q4K_TILE_MAXC columns at a time through TILE, one row after
 * another (a narrower last group column by column). */
#define KQ_GEMM(name, WT, TILE)                                                                    \
    static TGT void name(int64_t n, int64_t nrows, const void *vw, size_t w_stride, const void *va, \
                         size_t a_stride, int64_t ncols, float *y, size_t y_stride) {              \
        int64_t nb = n / QK_K;                                                                     \
        for (int64_t c = 0; c < ncols; c += Q4K_TILE_MAXC) {                                       \
            int C = (int)TOME_MIN(Q4K_TILE_MAXC, ncols - c);                                       \
            const block_q8_K *a[Q4K_TILE_MAXC];                                                    \
            for (int j = 0; j < C; j++) a[j] = (const void *)((const char *)va + (size_t)(c + j) * a_stride); \
            float *yc = y + (size_t)c * y_stride;                                                  \
            for (int64_t r = 0; r < nrows; r++) {                                                  \
                const WT *w = (const void *)((const char *)vw + (size_t)r * w_stride);             \
                if (C == Q4K_TILE_MAXC) TILE(Q4K_TILE_MAXC, nb, w, a, yc + r, y_stride);           \
                else                                                                               \
                    for (int j = 0; j < C; j++) TILE(1, nb, w, a + j, yc + (size_t)j * y_stride + r, y_stride); \
            }                                                                                      \
        }                                                                                          \
    }
KQ_GEMM(gemm_q4_K, block_q4_K, tile_q4_K)

/* Q5_K: tile_k45 with the fifth bit. qh bit 2c of byte j tops value j of chunk c's low
 * nibbles, bit 2c+1 its high nibbles; a 16-bit shift brings it to bit 4 (shifts of at most 4
 * left or 3 right, so the masked bit never comes from the neighbouring byte). Codes 0..31:
 * vpmaddubsw pairs <= 2*31*127. */
static inline __attribute__((always_inline)) TGT void tile_q5_K(
    int C, int64_t nb, const block_q5_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    tile_k45(1, C, nb, w, a, y, y_stride);
}

KQ_DOT_GEMV(q5_K, tile_q5_K)

KQ_GEMM(gemm_q5_K, block_q5_K, tile_q5_K)

/* One Q6_K row against C (1..Q4K_TILE_MAXC) Q8_K columns; dot_q6_K is C = 1 (see tile_q4_K).
 * q in 0..63 stands for q-32: Σ sc*(q-32)*a = Σ sc*q*a - 32 Σ_j sc_j*bsums_j, and the bsums of
 * Q8_K are exactly the per-16 activation sums, so the offset costs one madd per column. In
 * each half of 128 values, code vector k (ql's low nibbles of bytes 0..31 / 32..63, then their
 * high nibbles, with qh's bit pairs 0-1, 2-3, 4-5, 6-7 moved to bits 4-5) covers the 16-value
 * groups 2k and 2k+1: the low 128-bit lane takes scale word 2k, the high one 2k+1, picked by
 * one in-lane vpshufb from the half's 8 scale words. */
static inline __attribute__((always_inline)) TGT void tile_q6_K(
    int C, int64_t nb, const block_q6_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m256 acc[Q4K_TILE_MAXC];
    UNROLL for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < nb; i++) {
        float wd = h2f(w[i].d);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m256i sumi[Q4K_TILE_MAXC];
        UNROLL for (int c = 0; c < C; c++) {
            __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a[c][i].bsums));
            sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
        }
        UNROLL for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h;
            __m256i scv = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            UNROLL for (int k = 0; k < 4; k++) {
                __m256i ctl = _mm256_set_m128i(_mm_set1_epi16((short)(0x0302 + 0x0404 * k)),
                                               _mm_set1_epi16((short)(0x0100 + 0x0404 * k)));
                __m256i s = _mm256_shuffle_epi8(scv, ctl);
                UNROLL for (int c = 0; c < C; c++) {
                    const int8_t *q8 = a[c][i].qs + 128 * h + 32 * k;
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)q8));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(p, s));
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(wd * a[c][i].d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
    UNROLL for (int c = 0; c < C; c++) y[(size_t)c * y_stride] = hsum_ps(acc[c]);
}

KQ_DOT_GEMV(q6_K, tile_q6_K)

KQ_GEMM(gemm_q6_K, block_q6_K, tile_q6_K)

static TGT float dot_f16(int64_t n, const void *vw, const void *va) {
    const tq_half *w = vw, *a = va;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8 * k))),
                                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8 * k))),
                                     acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))), acc[0]);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += h2f(w[i]) * h2f(a[i]);
    return s;
}

static TGT float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * k), _mm256_loadu_ps(a + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc[0]);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += w[i] * a[i];
    return s;
}

static inline TGT __m256 load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static TGT float dot_bf16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(load_bf16(w + i + 8 * k), load_bf16(a + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load_bf16(w + i), load_bf16(a + i), acc[0]);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) s += tbf16_to_f32(w[i]) * tbf16_to_f32(a[i]);
    return s;
}

/* ---- activation quantisers (byte-identical to tq_quantize) ------------------------------ */

/* Q8_0 activations. x86 = 0: the reference (d = amax/127, codes roundf(x * (1/d))), as
 * tq_quantize; x86 = 1: llama.cpp's AVX2 activation quantiser (codes x * (127/amax) rounded to
 * nearest even), as tq_quantize_x86. Either way d is stored as amax/127. */
static inline __attribute__((always_inline)) TGT void q8_0_rows(const float *x, block_q8_0 *y,
                                                                 int64_t nb, int x86) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        __m256 v[4], mx = _mm256_setzero_ps();
        UNROLL for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[k], absmask));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        /* the reference's arithmetic, operation for operation */
        float d = amax / 127.0f;
        float id = x86 ? (amax != 0.0f ? 127.0f / amax : 0.0f) : (d != 0.0f ? 1.0f / d : 0.0f);
        y[i].d = tf32_to_f16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        UNROLL for (int k = 0; k < 4; k++) {
            __m256 s = _mm256_mul_ps(v[k], vid);
            s = x86 ? _mm256_round_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                    : round_away(s);
            q[k] = _mm256_cvttps_epi32(s);
        }
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_i32_i8(q[0], q[1], q[2], q[3]));
    }
}

static TGT void quant_q8_0(const float *x, void *dst, int64_t n) { q8_0_rows(x, dst, n / QK8_0, 0); }
static TGT void quant_q8_0_x86(const float *x, void *dst, int64_t n) {
    q8_0_rows(x, dst, n / QK8_0, 1);
}

static TGT void quant_q8_K(const float *x, void *vdst, int64_t n) {
    block_q8_K *y = vdst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + k), absmask));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the reference keeps the first element of largest magnitude, with its sign */
        float max = 0.0f;
        __m256 vamax = _mm256_set1_ps(amax);
        for (int k = 0; k < QK_K; k += 8) {
            __m256 xv = _mm256_loadu_ps(x + k);
            int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(xv, absmask), vamax, _CMP_EQ_OQ));
            if (bits) {
                max = x[k + __builtin_ctz((unsigned)bits)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 vis = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 32) {
            __m256i q[4];
            UNROLL for (int j = 0; j < 4; j++) {
                __m256 r = _mm256_round_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + k + 8 * j)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[j] = _mm256_min_epi32(_mm256_cvttps_epi32(r), lim);
            }
            y[i].bsums[k / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            y[i].bsums[k / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + k), pack_i32_i8(q[0], q[1], q[2], q[3]));
        }
        y[i].d = 1.0f / iscale;
    }
}

static TGT void quant_f16(const float *x, void *vdst, int64_t n) {
    tq_half *y = vdst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            /* NaN payloads: the reference writes a canonical quiet NaN, F16C keeps bits */
            for (int k = 0; k < 8; k++) y[i + k] = tf32_to_f16(x[i + k]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) y[i] = tf32_to_f16(x[i]);
}

static TGT void quant_bf16(const float *x, void *vdst, int64_t n) {
    uint16_t *y = vdst;
    int64_t i = 0;
    const __m256i absm = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
    const __m256i one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7FFF);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        UNROLL for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(x + i + 8 * k));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            __m256i rn = _mm256_add_epi32(u, _mm256_add_epi32(half, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
            rn = _mm256_srli_epi32(rn, 16);
            __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            r[k] = _mm256_blendv_epi8(rn, qn, nan);
        }
        __m256i p = _mm256_packus_epi32(r[0], r[1]);
        p = _mm256_permute4x64_epi64(p, 0xD8);
        _mm256_storeu_si256((__m256i *)(y + i), p);
    }
    for (; i < n; i++) y[i] = tf32_to_bf16(x[i]);
}

/* ---- rows (GEMV_OF and KQ_DOT_GEMV: simd_x86.h) -------------------------------------------- */

GEMV_OF(q8_0) GEMV_OF(q4_0) GEMV_OF(f16) GEMV_OF(bf16) GEMV_OF(f32)

void cpu_simd_fill_avx2(cpu_kernels *k) {
    k->dot[GGML_TYPE_Q8_0] = dot_q8_0;  k->gemv[GGML_TYPE_Q8_0] = gemv_q8_0;
    k->dot[GGML_TYPE_Q4_0] = dot_q4_0;  k->gemv[GGML_TYPE_Q4_0] = gemv_q4_0;
    k->dot[GGML_TYPE_Q4_K] = dot_q4_K;  k->gemv[GGML_TYPE_Q4_K] = gemv_q4_K;
    k->gemm[GGML_TYPE_Q4_K] = gemm_q4_K;
    k->gemm[GGML_TYPE_Q6_K] = gemm_q6_K;
    k->dot[GGML_TYPE_Q5_K] = dot_q5_K;  k->gemv[GGML_TYPE_Q5_K] = gemv_q5_K;
    k->gemm[GGML_TYPE_Q5_K] = gemm_q5_K;
    k->dot[GGML_TYPE_Q6_K] = dot_q6_K;  k->gemv[GGML_TYPE_Q6_K] = gemv_q6_K;
    k->dot[GGML_TYPE_F16] = dot_f16;    k->gemv[GGML_TYPE_F16] = gemv_f16;
    k->dot[GGML_TYPE_F32] = dot_f32;    k->gemv[GGML_TYPE_F32] = gemv_f32;
    k->dot[GGML_TYPE_BF16] = dot_bf16;  k->gemv[GGML_TYPE_BF16] = gemv_bf16;
    k->quant[GGML_TYPE_Q8_0] = quant_q8_0;
    k->quant_x86[GGML_TYPE_Q8_0] = quant_q8_0_x86;
    k->quant[GGML_TYPE_Q8_K] = quant_q8_K;
    k->quant[GGML_TYPE_F16] = quant_f16;
    k->quant[GGML_TYPE_BF16] = quant_bf16;
    k->quant_x86[GGML_TYPE_Q8_K] = quant_q8_K; /* llama.cpp's x86 build uses the reference */
    k->quant_x86[GGML_TYPE_F16] = quant_f16;
    k->quant_x86[GGML_TYPE_BF16] = quant_bf16;
}

#else
void cpu_simd_fill_avx2(cpu_kernels *k) { (void)k; }
#endif

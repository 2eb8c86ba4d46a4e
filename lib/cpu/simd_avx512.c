/* simd_avx512.c — AVX-512 (F, BW, VL, DQ, VNNI; BF16 where present) dot products (see simd.h).
 *
 * Functions carry target attributes rather than the file being built with -mavx512*, so the
 * object is harmless on CPUs without AVX-512: simd.c calls cpu_simd_fill_avx512() only when
 * cpuid/xgetbv say the instructions and the ZMM state are there. The activation quantisers
 * of simd_avx2.c stay in place on this path (they run once per vector, not per row).
 *
 * Layout of the work: one ZMM holds 64 int8 values: two Q8_0/Q4_0 blocks, or 64 consecutive
 * values of a K-quant super-block, so the matching activations are one contiguous 64-byte
 * load. Integer dot products use VNNI: vpdpbusd (u8 x s8 -> s32) where one side can be made
 * unsigned, and vpmaddubsw + vpdpwssd (the 16-bit scale multiply fused with the add) in the
 * K-quants. All integer sums are exact (bounds noted at each kernel); only per-block float
 * terms are summed in an order different from the reference.
 */
#include "cpu/simd.h"

#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Loops over registers (rows, sub-blocks, vectors) must unroll fully so that their arrays
 * live in registers; -O2 alone keeps such loops and spills the arrays to the stack. */
#define UNROLL _Pragma("GCC unroll 16")
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define TGT_BF16                                                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")))

static inline TGT float h2f(tq_half h) { return _cvtsh_ss(h); }

static inline TGT float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 bytes at p0 then 32 at p1. The upper half comes by a merge-masked load (a load and a
 * blend) rather than vinserti64x4, which needs the shuffle port. Masked-off bytes are not
 * read, so p1 - 32 may point before the buffer. */
static inline TGT __m512i load2x256(const void *p0, const void *p1) {
    __m512i x = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0));
    return _mm512_mask_loadu_epi8(x, (__mmask64)0xFFFFFFFF00000000ull, (const char *)p1 - 32);
}

/* ---- Q8_0 · Q8_0 ------------------------------------------------------------------------
 * |w| (u8, <= 128) · sign(a, w) (s8; a is never -128) with vpdpbusd: 4 products per lane,
 * at most 4*128*127, exact. */
static inline TGT __m512i dot2_q8_0(const block_q8_0 *w, const block_q8_0 *a) {
    __m512i x = load2x256(w[0].qs, w[1].qs);
    __m512i y = load2x256(a[0].qs, a[1].qs);
    __mmask64 neg = _mm512_movepi8_mask(x);
    __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sy);
}

static inline TGT __m256i dot1_q8_0(const block_q8_0 *w, const block_q8_0 *a) {
    __m256i x = _mm256_loadu_si256((const __m256i *)w->qs);
    __m256i y = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), sy);
}

/* ---- Q4_0 · Q8_0 ------------------------------------------------------------------------
 * Nibbles are unsigned 0..15 standing for q-8: Σ(q-8)a = dpbusd(q, a) - dpbusd(8, a). */
static inline TGT __m512i dot2_q4_0(const block_q4_0 *w, const block_q8_0 *a) {
    __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)w[1].qs),
                                 _mm_loadu_si128((const __m128i *)w[0].qs));
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    /* z's 128-bit lanes: lo0 lo1 hi0 hi1 -> lo0 hi0 lo1 hi1 (element order of two blocks) */
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    z = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    __m512i y = load2x256(a[0].qs, a[1].qs);
    __m512i corr = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), y);
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), z, y), corr);
}

static inline TGT __m256i dot1_q4_0(const block_q4_0 *w, const block_q8_0 *a) {
    __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
    __m256i z = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
    __m256i y = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i corr = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), y);
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), z, y), corr);
}

/* ---- the 32-value block types, 16 blocks at a time --------------------------------------
 * Eight ZMMs of dot2 results (two blocks x eight int32 lanes each) are reduced by a transpose-
 * and-add tree to one ZMM of 16 block sums, so the int->float conversion, the scale multiply
 * and the accumulate happen once per 16 blocks, and the 16 fp16 scales of weights and
 * activations each come in with one gather. The tree leaves the block sums in the order
 * block_order(); the gathers use the same order. Then one step of 8 blocks if 8 remain, and
 * single blocks. */

/* Software prefetch distance (bytes ahead in each weight row) of the 16-block loop. On the
 * development VM it gained ~5-10% for rows streamed from DRAM (measured under heavy load, so
 * roughly); it costs a few uops per 16 blocks when rows are cache-resident. */
#define PF_DIST 1024
static inline TGT __m512i block_order(void) {
    return _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
}

static inline TGT __m512i reduce16(const __m512i v[8]) {
    __m512i s[4];
    UNROLL for (int j = 0; j < 4; j++)
        s[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * j], v[2 * j + 1]),
                                _mm512_unpackhi_epi32(v[2 * j], v[2 * j + 1]));
    /* q0's 128-bit lane L holds the lane-L sums of v[0..3]; q1 those of v[4..7] */
    __m512i q0 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[0], s[1]), _mm512_unpackhi_epi64(s[0], s[1]));
    __m512i q1 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2], s[3]), _mm512_unpackhi_epi64(s[2], s[3]));
    /* a block is lanes 0+1 (first of the pair) or 2+3 (second) */
    return _mm512_add_epi32(_mm512_shuffle_i64x2(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i64x2(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The same for 4 vectors (8 blocks): 8 block sums in the order 0,2,4,6,1,3,5,7 (the first half
 * of block_order()). */
static inline TGT __m256i reduce8(const __m512i v[4]) {
    __m512i s0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
    __m512i s1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
    __m512i q = _mm512_add_epi32(_mm512_unpacklo_epi64(s0, s1), _mm512_unpackhi_epi64(s0, s1));
    __m512i r = _mm512_add_epi32(_mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_castsi512_si256(r);
}

static inline TGT __m256 gather_scales8(const void *base, __m256i idx) {
    __m256i g = _mm256_i32gather_epi32((const int *)base, idx, 1);
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(g));
}

/* The fp16 at the start of 16 blocks (byte offsets idx from base) as floats. Each gather
 * reads 4 bytes at a block start: the scale and two code bytes, all inside the row. */
static inline TGT __m512 gather_scales(const void *base, __m512i idx) {
    __m512i g = _mm512_i32gather_epi32(idx, base, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* R rows (R = 1 or 4, a constant after inlining) of a 32-block type against one Q8_0
 * activation row. The arithmetic of each row does not depend on R, so gemv equals dot bit for
 * bit. */
#define BLOCK32_ROWS(NAME, WT, DOT2, DOT1)                                                         \
    static inline __attribute__((always_inline)) TGT void NAME(                                    \
        int R, int64_t nb, const WT *const *w, const block_q8_0 *a, float *y) {                    \
        const __m512i order = block_order();                                                       \
        const __m512i iw = _mm512_mullo_epi32(order, _mm512_set1_epi32((int)sizeof(WT)));          \
        const __m512i ia = _mm512_mullo_epi32(order, _mm512_set1_epi32((int)sizeof(block_q8_0)));  \
        __m512 acc[4];                                                                             \
        __m256 acc1[4];                                                                            \
        UNROLL for (int k = 0; k < R; k++)                                                         \
            acc[k] = _mm512_setzero_ps(), acc1[k] = _mm256_setzero_ps();                           \
        int64_t i = 0;                                                                             \
        for (; i + 15 < nb; i += 16) {                                                             \
            __m512 da = gather_scales(a + i, ia);                                                  \
            UNROLL for (int k = 0; k < R; k++) {                                                   \
                const char *pf = (const char *)(w[k] + i) + PF_DIST;                               \
                UNROLL for (int o = 0; o < 16 * (int)sizeof(WT); o += 64)                          \
                    _mm_prefetch(pf + o, _MM_HINT_T0);                                             \
                __m512i v[8];                                                                      \
                UNROLL for (int j = 0; j < 8; j++) v[j] = DOT2(w[k] + i + 2 * j, a + i + 2 * j);   \
                __m512 d = _mm512_mul_ps(gather_scales(w[k] + i, iw), da);                         \
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(reduce16(v)), d, acc[k]);              \
            }                                                                                      \
        }                                                                                          \
        if (i + 7 < nb) { /* 8 more: 768-wide rows are 16 + 8 blocks */                            \
            __m256 da = gather_scales8(a + i, _mm512_castsi512_si256(ia));                         \
            UNROLL for (int k = 0; k < R; k++) {                                                   \
                __m512i v[4];                                                                      \
                UNROLL for (int j = 0; j < 4; j++) v[j] = DOT2(w[k] + i + 2 * j, a + i + 2 * j);   \
                __m256 d = _mm256_mul_ps(gather_scales8(w[k] + i, _mm512_castsi512_si256(iw)), da); \
                acc1[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8(v)), d, acc1[k]);             \
            }                                                                                      \
            i += 8;                                                                                \
        }                                                                                          \
        for (; i < nb; i++) {                                                                      \
            float da = h2f(a[i].d);                                                                \
            UNROLL for (int k = 0; k < R; k++)                                                     \
                acc1[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(DOT1(w[k] + i, a + i)),               \
                                          _mm256_set1_ps(h2f(w[k][i].d) * da), acc1[k]);           \
        }                                                                                          \
        UNROLL for (int k = 0; k < R; k++)                                                         \
            y[k] = _mm512_reduce_add_ps(acc[k]) + hsum256_ps(acc1[k]);                             \
    }                                                                                              \
    static TGT float dot_##WT(int64_t n, const void *vw, const void *va) {                         \
        const WT *w[1] = {vw};                                                                     \
        float y;                                                                                   \
        NAME(1, n / 32, w, va, &y);                                                                \
        return y;                                                                                  \
    }                                                                                              \
    static TGT void gemv_##WT(int64_t n, int64_t nrows, const void *vw, size_t w_stride,           \
                              const void *va, float *y) {                                          \
        int64_t r = 0;                                                                             \
        for (; r + 3 < nrows; r += 4) {                                                            \
            const WT *w[4];                                                                        \
            UNROLL for (int k = 0; k < 4; k++)                                                     \
                w[k] = (const WT *)((const char *)vw + (size_t)(r + k) * w_stride);                \
            NAME(4, n / 32, w, va, y + r);                                                         \
        }                                                                                          \
        for (; r < nrows; r++) y[r] = dot_##WT(n, (const char *)vw + (size_t)r * w_stride, va);    \
    }

BLOCK32_ROWS(rows_q8_0, block_q8_0, dot2_q8_0, dot1_q8_0)
BLOCK32_ROWS(rows_q4_0, block_q4_0, dot2_q4_0, dot1_q4_0)

/* ---- Q8_0 tiles: R weight rows x C activation columns, for prefill ---------------------
 * The sign trick of dot2_q8_0 costs three operations per weight block pair and column; here
 * the activations are made unsigned instead, once per column: u = a + 128 (1..255, repacked
 * contiguously, 64 bytes per block pair), and Σ a·w = Σ u·w - 128·Σ w, where 128·Σ w per
 * lane comes from one vpdpbusd per weight block pair shared by all C columns. The per-column
 * work per block pair is then one load and one vpdpbusd (started from -128·Σ w). Bounds:
 * 4·255·128 + 4·128·128 per lane, exact. The integer block sums are therefore the same as
 * dot2_q8_0's, and the float part (scale gathers, products, accumulation order, tail) is
 * that of rows_q8_0, so every result equals dot() bit for bit. */
#define TILE_Q8_0_MAX_N 16384 /* repacked columns live on the stack: 2 x 16 KiB */

static inline __attribute__((always_inline)) TGT void tile_q8_0(
    int R, int C, int64_t nb, const block_q8_0 *const *w, const block_q8_0 *const *a,
    const uint8_t *const *u, float *y, size_t y_stride) {
    const __m512i order = block_order();
    const __m512i ib = _mm512_mullo_epi32(order, _mm512_set1_epi32((int)sizeof(block_q8_0)));
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4][2];
    UNROLL for (int k = 0; k < R; k++) UNROLL for (int c = 0; c < C; c++) acc[k][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 15 < nb; i += 16) {
        __m512 da[2];
        UNROLL for (int c = 0; c < C; c++) da[c] = gather_scales(a[c] + i, ib);
        UNROLL for (int k = 0; k < R; k++) {
            const char *pf = (const char *)(w[k] + i) + PF_DIST;
            UNROLL for (int o = 0; o < 16 * (int)sizeof(block_q8_0); o += 64)
                _mm_prefetch(pf + o, _MM_HINT_T0);
            __m512i v[2][8];
            UNROLL for (int j = 0; j < 8; j++) {
                __m512i x = load2x256(w[k][i + 2 * j].qs, w[k][i + 2 * j + 1].qs);
                __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, x));
                UNROLL for (int c = 0; c < C; c++)
                    v[c][j] = _mm512_dpbusd_epi32(corr, _mm512_loadu_si512(u[c] + 32 * (i + 2 * j)), x);
            }
            __m512 dw = gather_scales(w[k] + i, ib);
            UNROLL for (int c = 0; c < C; c++)
                acc[k][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(reduce16(v[c])),
                                            _mm512_mul_ps(dw, da[c]), acc[k][c]);
        }
    }
    /* the tail (fewer than 16 blocks) is that of rows_q8_0: one 8-block step, then blocks */
    __m256 acc1[4][2];
    UNROLL for (int k = 0; k < R; k++) UNROLL for (int c = 0; c < C; c++) acc1[k][c] = _mm256_setzero_ps();
    if (i + 7 < nb) {
        __m256 da[2];
        UNROLL for (int c = 0; c < C; c++) da[c] = gather_scales8(a[c] + i, _mm512_castsi512_si256(ib));
        UNROLL for (int k = 0; k < R; k++) {
            __m512i v[2][4];
            UNROLL for (int j = 0; j < 4; j++) {
                __m512i x = load2x256(w[k][i + 2 * j].qs, w[k][i + 2 * j + 1].qs);
                __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, x));
                UNROLL for (int c = 0; c < C; c++)
                    v[c][j] = _mm512_dpbusd_epi32(corr, _mm512_loadu_si512(u[c] + 32 * (i + 2 * j)), x);
            }
            __m256 dw = gather_scales8(w[k] + i, _mm512_castsi512_si256(ib));
            UNROLL for (int c = 0; c < C; c++)
                acc1[k][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce8(v[c])), _mm256_mul_ps(dw, da[c]),
                                             acc1[k][c]);
        }
        i += 8;
    }
    for (; i < nb; i++)
        UNROLL for (int c = 0; c < C; c++) {
            float da = h2f(a[c][i].d);
            UNROLL for (int k = 0; k < R; k++)
                acc1[k][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot1_q8_0(w[k] + i, a[c] + i)),
                                             _mm256_set1_ps(h2f(w[k][i].d) * da), acc1[k][c]);
        }
    UNROLL for (int c = 0; c < C; c++)
        UNROLL for (int k = 0; k < R; k++)
            y[(size_t)c * y_stride + (size_t)k] =
                _mm512_reduce_add_ps(acc[k][c]) + hsum256_ps(acc1[k][c]);
}

/* codes of the first nb8 (a multiple of 8) blocks of a, plus 128, contiguous */
static inline TGT void unsign_q8_0(const block_q8_0 *a, int64_t nb8, uint8_t *u) {
    const __m256i k128 = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb8; b++)
        _mm256_storeu_si256((__m256i *)(u + 32 * b),
                            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)a[b].qs), k128));
}

static TGT void gemm_block_q8_0(int64_t n, int64_t nrows, const void *vw, size_t w_stride,
                                const void *va, size_t a_stride, int64_t ncols, float *y,
                                size_t y_stride) {
    int64_t nb = n / 32, c = 0;
    if (n <= TILE_Q8_0_MAX_N) {
        _Alignas(64) uint8_t ubuf[2][TILE_Q8_0_MAX_N];
        for (; c + 1 < ncols; c += 2) {
            const block_q8_0 *a[2];
            UNROLL for (int j = 0; j < 2; j++) {
                a[j] = (const void *)((const char *)va + (size_t)(c + j) * a_stride);
                unsign_q8_0(a[j], nb & ~(int64_t)7, ubuf[j]);
            }
            const uint8_t *u[2] = {ubuf[0], ubuf[1]};
            float *yc = y + (size_t)c * y_stride;
            int64_t r = 0;
            for (; r + 3 < nrows; r += 4) {
                const block_q8_0 *w[4];
                UNROLL for (int k = 0; k < 4; k++)
                    w[k] = (const void *)((const char *)vw + (size_t)(r + k) * w_stride);
                tile_q8_0(4, 2, nb, w, a, u, yc + r, y_stride);
            }
            for (; r < nrows; r++) {
                const block_q8_0 *w[1] = {(const void *)((const char *)vw + (size_t)r * w_stride)};
                tile_q8_0(1, 2, nb, w, a, u, yc + r, y_stride);
            }
        }
    }
    for (; c < ncols; c++)
        gemv_block_q8_0(n, nrows, vw, w_stride, (const char *)va + (size_t)c * a_stride,
                        y + (size_t)c * y_stride);
}

/* ---- K-quants · Q8_K ----------------------------------------------------------------------
 * 64 weights (two 32-value sub-blocks) per ZMM against 64 contiguous activations; the 6-bit
 * (Q4_K/Q5_K) or int8 (Q6_K) sub-block scales are spread over the 16-bit lanes with vpermw and
 * applied by vpdpwssd. Bounds: vpmaddubsw pairs <= 2*63*127 (Q6_K, before the -32 offset),
 * the super-block sum <= 256*32*127*128 < 2^31. */

/* The 12 packed bytes of Q4_K/Q5_K scales -> bytes 0..7: the eight 6-bit scales, bytes 8..15:
 * the eight 6-bit mins. Done in 32-bit words, in registers: building the bytes in memory and
 * reloading them as a vector stalls on store forwarding. */
static inline TGT __m128i unpack_k4_scales(const uint8_t q[K_SCALE_SIZE]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4), memcpy(&u1, q + 4, 4), memcpy(&u2, q + 8, 4);
    uint32_t sc_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* Σ_j m[j] * (bsums[2j] + bsums[2j+1]) as 8 int32 lanes (to be summed); m in bytes 8..15. */
static inline TGT __m256i k4_min_sums(__m128i scm, const int16_t bsums[16]) {
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm));
    return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bsums), m16);
}

/* 32 16-bit lanes: scale index `lo` in lanes 0..15 and `lo+1` in 16..31. */
static inline TGT __m512i idx_pair(int lo) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)(lo + 1)), 1);
}

/* 32 16-bit lanes: scale index base+k in lanes 8k..8k+7 (k = 0..3). */
static inline TGT __m512i idx_quad(int base) {
    __m128i a = _mm_set1_epi16((short)base), b = _mm_set1_epi16((short)(base + 1));
    __m128i c = _mm_set1_epi16((short)(base + 2)), d = _mm_set1_epi16((short)(base + 3));
    __m512i z = _mm512_castsi128_si512(a);
    z = _mm512_inserti32x4(z, b, 1);
    z = _mm512_inserti32x4(z, c, 2);
    return _mm512_inserti32x4(z, d, 3);
}

/* 64 Q4_K/Q5_K nibbles of chunk c (32 bytes): low nibbles then high nibbles. The bytes come
 * in by a broadcast load and the upper half is shifted under a mask: no cross-lane shuffle,
 * which would compete for the one shuffle port with the scale permutes. */
static inline TGT __m512i nibbles64(const uint8_t *p) {
    __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    q = _mm512_mask_srli_epi16(q, (__mmask32)0xFFFF0000u, q, 4);
    return _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
}

static TGT float dot_q4_K(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8_K *a = va;
    int64_t nb = n / QK_K;
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    const __m512i ix0 = idx_pair(0), ix1 = idx_pair(2), ix2 = idx_pair(4), ix3 = idx_pair(6);
    for (int64_t i = 0; i < nb; i++) {
        __m128i scm = unpack_k4_scales(w[i].scales);
        float d = h2f(w[i].d) * a[i].d, dmin = h2f(w[i].dmin) * a[i].d;
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_min_sums(scm, a[i].bsums)),
                               accm);
        __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scm));
        const int8_t *q8 = a[i].qs;
        /* two chains: vpdpwssd's latency would otherwise serialise the four chunks */
        __m512i p0 = _mm512_maddubs_epi16(nibbles64(w[i].qs), _mm512_loadu_si512(q8));
        __m512i p1 = _mm512_maddubs_epi16(nibbles64(w[i].qs + 32), _mm512_loadu_si512(q8 + 64));
        __m512i p2 = _mm512_maddubs_epi16(nibbles64(w[i].qs + 64), _mm512_loadu_si512(q8 + 128));
        __m512i p3 = _mm512_maddubs_epi16(nibbles64(w[i].qs + 96), _mm512_loadu_si512(q8 + 192));
        __m512i s0 = _mm512_madd_epi16(p0, _mm512_permutexvar_epi16(ix0, s16));
        __m512i s1 = _mm512_madd_epi16(p1, _mm512_permutexvar_epi16(ix1, s16));
        s0 = _mm512_dpwssd_epi32(s0, p2, _mm512_permutexvar_epi16(ix2, s16));
        s1 = _mm512_dpwssd_epi32(s1, p3, _mm512_permutexvar_epi16(ix3, s16));
        __m512i sumi = _mm512_add_epi32(s0, s1);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) - hsum256_ps(accm);
}

/* One Q4_K row against C (1..4) Q8_K columns, for prefill. The nibbles and the spread scales
 * of each chunk and the unpacked scales/mins of each super-block are computed once for all
 * columns; per column remain the vpmaddubsw and vpdpwssd. Every integer lane holds the same
 * sum as in dot_q4_K and the float accumulation is the same, so results equal dot() bit for
 * bit. */
static inline __attribute__((always_inline)) TGT void tile_q4_K(
    int C, int64_t nb, const block_q4_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m512 acc[4];
    __m256 accm[4];
    UNROLL for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps(), accm[c] = _mm256_setzero_ps();
    const __m512i ix[4] = {idx_pair(0), idx_pair(2), idx_pair(4), idx_pair(6)};
    for (int64_t i = 0; i < nb; i++) {
        __m128i scm = unpack_k4_scales(w[i].scales);
        float wd = h2f(w[i].d), wdmin = h2f(w[i].dmin);
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm));
        __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scm));
        __m512i sumi[4];
        UNROLL for (int ch = 0; ch < 4; ch++) {
            __m512i q = nibbles64(w[i].qs + 32 * ch);
            __m512i sc = _mm512_permutexvar_epi16(ix[ch], s16);
            UNROLL for (int c = 0; c < C; c++) {
                __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[c][i].qs + 64 * ch));
                sumi[c] = ch == 0 ? _mm512_madd_epi16(p, sc) : _mm512_dpwssd_epi32(sumi[c], p, sc);
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            float d = wd * a[c][i].d, dmin = wdmin * a[c][i].d;
            __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[c][i].bsums), m16);
            accm[c] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(ms), accm[c]);
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++)
        y[(size_t)c * y_stride] = _mm512_reduce_add_ps(acc[c]) - hsum256_ps(accm[c]);
}

static TGT void gemm_q4_K(int64_t n, int64_t nrows, const void *vw, size_t w_stride,
                          const void *va, size_t a_stride, int64_t ncols, float *y,
                          size_t y_stride) {
    int64_t nb = n / QK_K;
    for (int64_t c = 0; c < ncols; c += 4) {
        int C = (int)TOME_MIN(4, ncols - c);
        const block_q8_K *a[4];
        for (int j = 0; j < C; j++) a[j] = (const void *)((const char *)va + (size_t)(c + j) * a_stride);
        float *yc = y + (size_t)c * y_stride;
        for (int64_t r = 0; r < nrows; r++) {
            const block_q4_K *w = (const void *)((const char *)vw + (size_t)r * w_stride);
            switch (C) {
            case 4: tile_q4_K(4, nb, w, a, yc + r, y_stride); break;
            case 3: tile_q4_K(3, nb, w, a, yc + r, y_stride); break;
            case 2: tile_q4_K(2, nb, w, a, yc + r, y_stride); break;
            default: tile_q4_K(1, nb, w, a, yc + r, y_stride); break;
            }
        }
    }
}

static TGT float dot_q5_K(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8_K *a = va;
    int64_t nb = n / QK_K;
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    const __m512i ix[4] = {idx_pair(0), idx_pair(2), idx_pair(4), idx_pair(6)};
    const __m512i one = _mm512_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++) {
        __m128i scm = unpack_k4_scales(w[i].scales);
        float d = h2f(w[i].d) * a[i].d, dmin = h2f(w[i].dmin) * a[i].d;
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_min_sums(scm, a[i].bsums)),
                               accm);
        __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(scm));
        /* qh bit 2c is the 5th bit of chunk c's low nibbles, bit 2c+1 of its high nibbles:
         * with hb = [qh, qh >> 1], chunk c takes (hb >> 2c) & 1 */
        __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
        __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 1), 1);
        const int8_t *q8 = a[i].qs;
        __m512i sumi = _mm512_setzero_si512();
        UNROLL for (int c = 0; c < 4; c++) {
            __m512i h = _mm512_and_si512(_mm512_srli_epi16(hb, (unsigned)(2 * c)), one);
            __m512i q = _mm512_or_si512(nibbles64(w[i].qs + 32 * c), _mm512_slli_epi16(h, 4));
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(q8 + 64 * c));
            sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(ix[c], s16));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc) - hsum256_ps(accm);
}

/* Q6_K: q in 0..63 stands for q-32; the offset is taken out once per super-block through the
 * activation sums: Σ sc*(q-32)*a = Σ sc*q*a - 32 Σ_j sc_j*bsums_j. */
static TGT float dot_q6_K(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8_K *a = va;
    int64_t nb = n / QK_K;
    __m512 acc = _mm512_setzero_ps();
    const __m512i ix[4] = {idx_quad(0), idx_quad(4), idx_quad(8), idx_quad(12)};
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(w[i].d) * a[i].d;
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a[i].bsums));
        __m512i sumi = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(),
                                                               _mm256_slli_epi32(corr, 5)));
        sumi = _mm512_inserti64x4(sumi, _mm256_setzero_si256(), 1);
        __m512i s16 = _mm512_castsi256_si512(sc16);
        UNROLL for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(w[i].ql + 64 * h);
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(hb, m2), 4));
            __m512i q23 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 4), m2), 4));
            const int8_t *q8 = a[i].qs + 128 * h;
            __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512(q8));
            __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512(q8 + 64));
            sumi = _mm512_dpwssd_epi32(sumi, p01, _mm512_permutexvar_epi16(ix[2 * h], s16));
            sumi = _mm512_dpwssd_epi32(sumi, p23, _mm512_permutexvar_epi16(ix[2 * h + 1], s16));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* One Q6_K row against C (1..4) Q8_K columns (see tile_q4_K): the 6-bit codes and spread
 * scales are built once per super-block for all columns; the offset correction uses each
 * column's bsums. Same integer lanes and float order as dot_q6_K: bit for bit. */
static inline __attribute__((always_inline)) TGT void tile_q6_K(
    int C, int64_t nb, const block_q6_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m512 acc[4];
    UNROLL for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
    const __m512i ix[4] = {idx_quad(0), idx_quad(4), idx_quad(8), idx_quad(12)};
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++) {
        float wd = h2f(w[i].d);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m512i s16 = _mm512_castsi256_si512(sc16);
        __m512i sumi[4];
        UNROLL for (int c = 0; c < C; c++) {
            __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a[c][i].bsums));
            sumi[c] = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(),
                                                              _mm256_slli_epi32(corr, 5)));
            sumi[c] = _mm512_inserti64x4(sumi[c], _mm256_setzero_si256(), 1);
        }
        UNROLL for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(w[i].ql + 64 * h);
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(hb, m2), 4));
            __m512i q23 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 4), m2), 4));
            __m512i sc01 = _mm512_permutexvar_epi16(ix[2 * h], s16);
            __m512i sc23 = _mm512_permutexvar_epi16(ix[2 * h + 1], s16);
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *q8 = a[c][i].qs + 128 * h;
                __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512(q8));
                __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512(q8 + 64));
                sumi[c] = _mm512_dpwssd_epi32(sumi[c], p01, sc01);
                sumi[c] = _mm512_dpwssd_epi32(sumi[c], p23, sc23);
            }
        }
        UNROLL for (int c = 0; c < C; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(wd * a[c][i].d), _mm512_cvtepi32_ps(sumi[c]), acc[c]);
    }
    UNROLL for (int c = 0; c < C; c++) y[(size_t)c * y_stride] = _mm512_reduce_add_ps(acc[c]);
}

static TGT void gemm_q6_K(int64_t n, int64_t nrows, const void *vw, size_t w_stride,
                          const void *va, size_t a_stride, int64_t ncols, float *y,
                          size_t y_stride) {
    int64_t nb = n / QK_K;
    for (int64_t c = 0; c < ncols; c += 4) {
        int C = (int)TOME_MIN(4, ncols - c);
        const block_q8_K *a[4];
        for (int j = 0; j < C; j++) a[j] = (const void *)((const char *)va + (size_t)(c + j) * a_stride);
        float *yc = y + (size_t)c * y_stride;
        for (int64_t r = 0; r < nrows; r++) {
            const block_q6_K *w = (const void *)((const char *)vw + (size_t)r * w_stride);
            switch (C) {
            case 4: tile_q6_K(4, nb, w, a, yc + r, y_stride); break;
            case 3: tile_q6_K(3, nb, w, a, yc + r, y_stride); break;
            case 2: tile_q6_K(2, nb, w, a, yc + r, y_stride); break;
            default: tile_q6_K(1, nb, w, a, yc + r, y_stride); break;
            }
        }
    }
}

/* ---- F16 / BF16 ------------------------------------------------------------------------- */

static TGT float dot_f16(int64_t n, const void *vw, const void *va) {
    const tq_half *w = vw, *a = va;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16 * k))),
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16 * k))), acc[k]);
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc[0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i)),
                                 _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i)), acc[0]);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

static TGT float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16 * k), _mm512_loadu_ps(a + i + 16 * k),
                                     acc[k]);
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, a + i), acc[0]);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

static inline TGT __m512 bf16x16(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

static TGT float dot_bf16(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *)(w + i + 16 * k))),
                                     bf16x16(_mm256_loadu_si256((const __m256i *)(a + i + 16 * k))),
                                     acc[k]);
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        acc[0] = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, w + i)),
                                 bf16x16(_mm256_maskz_loadu_epi16(m, a + i)), acc[0]);
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

/* vdpbf16ps: pairs of bf16 products (exact in fp32) added into fp32 lanes. It treats
 * denormal inputs and results as zero, which only matters for values below ~1e-38. */
static TGT_BF16 float dot_bf16_dp(int64_t n, const void *vw, const void *va) {
    const uint16_t *w = vw, *a = va;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 128 <= n; i += 128)
        UNROLL for (int k = 0; k < 4; k++)
            acc[k] = _mm512_dpbf16_ps(acc[k], (__m512bh)_mm512_loadu_si512(w + i + 32 * k),
                                      (__m512bh)_mm512_loadu_si512(a + i + 32 * k));
    for (; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (n - i)) - 1);
        acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)_mm512_maskz_loadu_epi16(m, w + i),
                                  (__m512bh)_mm512_maskz_loadu_epi16(m, a + i));
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

/* ---- rows ---------------------------------------------------------------------------------- */

#define GEMV_OF(fn)                                                                                \
    static TGT void gemv_##fn(int64_t n, int64_t nrows, const void *w, size_t w_stride,            \
                              const void *a, float *y) {                                           \
        for (int64_t r = 0; r < nrows; r++)                                                        \
            y[r] = dot_##fn(n, (const char *)w + (size_t)r * w_stride, a);                         \
    }
GEMV_OF(q4_K) GEMV_OF(q5_K) GEMV_OF(q6_K) GEMV_OF(f16) GEMV_OF(bf16) GEMV_OF(f32)

static TGT_BF16 void gemv_bf16_dp(int64_t n, int64_t nrows, const void *w, size_t w_stride,
                                  const void *a, float *y) {
    for (int64_t r = 0; r < nrows; r++) y[r] = dot_bf16_dp(n, (const char *)w + (size_t)r * w_stride, a);
}

void cpu_simd_fill_avx512(cpu_kernels *k) {
    k->dot[GGML_TYPE_Q8_0] = dot_block_q8_0;  k->gemv[GGML_TYPE_Q8_0] = gemv_block_q8_0;
    k->gemm[GGML_TYPE_Q8_0] = gemm_block_q8_0;
    k->dot[GGML_TYPE_Q4_0] = dot_block_q4_0;  k->gemv[GGML_TYPE_Q4_0] = gemv_block_q4_0;
    k->dot[GGML_TYPE_Q4_K] = dot_q4_K;  k->gemv[GGML_TYPE_Q4_K] = gemv_q4_K;
    k->gemm[GGML_TYPE_Q4_K] = gemm_q4_K;
    k->dot[GGML_TYPE_Q5_K] = dot_q5_K;  k->gemv[GGML_TYPE_Q5_K] = gemv_q5_K;
    k->dot[GGML_TYPE_Q6_K] = dot_q6_K;  k->gemv[GGML_TYPE_Q6_K] = gemv_q6_K;
    k->gemm[GGML_TYPE_Q6_K] = gemm_q6_K;
    k->dot[GGML_TYPE_F16] = dot_f16;    k->gemv[GGML_TYPE_F16] = gemv_f16;
    k->dot[GGML_TYPE_F32] = dot_f32;    k->gemv[GGML_TYPE_F32] = gemv_f32;
    if (k->feat.avx512bf16) {
        k->dot[GGML_TYPE_BF16] = dot_bf16_dp;
        k->gemv[GGML_TYPE_BF16] = gemv_bf16_dp;
    } else {
        k->dot[GGML_TYPE_BF16] = dot_bf16;
        k->gemv[GGML_TYPE_BF16] = gemv_bf16;
    }
}

#else
void cpu_simd_fill_avx512(cpu_kernels *k) { (void)k; }
#endif

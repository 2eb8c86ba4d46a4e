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

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "cpu/simd_x86.h"

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

/* ---- Q8_0 prefill, 16 rows per vector ------------------------------------------------------
 * The tiles above keep each row's blocks along the vector (two blocks per ZMM) and so must
 * fold 16 lanes into one sum per block: ~21 shuffles and adds on the shuffle port per 8
 * vpdpbusd, which made that port, not VNNI, the limit (~32 GMAC/s per core measured). With
 * enough columns to pay for it, 16 weight rows are instead transposed once per call into
 * "lane = row" order: vector q of block b holds bytes 4q..4q+3 of block b of each of the 16
 * rows. A column's four activation bytes are then broadcast (a load, no shuffle) and 8
 * vpdpbusd leave the 16 rows' block sums in the 16 lanes — no reduction at all. The weights
 * are stored +128 (unsigned operand); the activations stay signed, and 128·Σa of each block,
 * computed once per call and column, is subtracted: the block sums are the exact integers
 * dot2_q8_0 forms. Each term float(S)·(dw·da) is the one dot() adds, but rows now add their
 * blocks in order, so results equal dot() to float-summation order (not bit for bit); the
 * test bounds the difference by the terms' magnitudes. Scratch on the stack: G16_GROUPS x 16
 * rows x G16_MAX_NB blocks packed (128 KiB + 16 KiB); longer rows go in chunks of blocks, the
 * output accumulating. Measured (build/bench_simd -c 64, one thread, 768..2048 wide): 135
 * GMAC/s against 40 for the tiles. */
/* CALL(k) with k = C as a compile-time constant (1..8), so the always-inline column kernels
 * keep their per-column arrays in registers. */
#define G16_BY_C(C, CALL)                                                                          \
    switch (C) {                                                                                   \
    case 8: CALL(8); break;                                                                        \
    case 7: CALL(7); break;                                                                        \
    case 6: CALL(6); break;                                                                        \
    case 5: CALL(5); break;                                                                        \
    case 4: CALL(4); break;                                                                        \
    case 3: CALL(3); break;                                                                        \
    case 2: CALL(2); break;                                                                        \
    default: CALL(1); break;                                                                       \
    }
#define G16_MAX_NB 64
#define G16_GROUPS 4 /* 64 rows: cpu_matmul's tiles are at most 64 rows */
#define G16_MIN_COLS 4 /* below this the transposition costs more than the tiles lose */

/* A 16-rows-per-vector kernel over rows [0, nrows16); returns 0 when it could not run (no
 * memory for its scratch, or a shape it does not take), having written nothing. */
typedef int (*g16_fn)(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                      size_t a_stride, int64_t ncols, float *y, size_t y_stride);

/* The front of every prefill entry: with G16_MIN_COLS columns or more, g16 takes the rows in
 * whole groups of 16 and *vw, *y, *nrows are moved past them, leaving the last rows (fewer
 * than 16) to the entry's own tiles. Returns 1 when no row is left. */
static inline TGT int g16_front(g16_fn g16, int64_t n, int64_t *nrows, const void **vw, size_t w_stride,
                                const void *va, size_t a_stride, int64_t ncols, float **y, size_t y_stride) {
    if (ncols < G16_MIN_COLS || *nrows < 16) return 0;
    const int64_t r0 = *nrows & ~(int64_t)15;
    if (!g16(n, r0, *vw, w_stride, va, a_stride, ncols, *y, y_stride)) return 0;
    *vw = (const char *)*vw + (size_t)r0 * w_stride;
    *y += r0;
    *nrows -= r0;
    return *nrows == 0;
}

/* the transposed, +128 weights of 16 rows (row pointers w[16]) for blocks [b0, b0 + nbc) and
 * their scales as floats */
static TGT void g16_pack(const char *w0, size_t w_stride, int64_t b0, int64_t nbc,
                         int32_t (*wq)[8][16], float (*ws)[16]) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)w_stride));
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nbc; b++) {
        const char *blk = w0 + (size_t)(b0 + b) * sizeof(block_q8_0);
        UNROLL for (int q = 0; q < 8; q++) {
            __m512i g = _mm512_i32gather_epi32(rows, blk + offsetof(block_q8_0, qs) + 4 * q, 1);
            _mm512_store_si512(wq[b][q], _mm512_xor_si512(g, k128));
        }
        _mm512_store_ps(ws[b], gather_scales(blk, rows));
    }
}

/* C columns (a constant after inlining) of 16 rows over the packed blocks [0, nbc): y columns
 * at yc[c * y_stride], 16 rows each; acc_in: add to what y holds (a later chunk). ca: the
 * columns' -128·Σa per block, da: their scales (column c at + c * nb, block b0 first). */
static inline __attribute__((always_inline)) TGT void g16_cols(
    int C, int64_t nbc, const int32_t (*wq)[8][16], const float (*ws)[16], const block_q8_0 *const *a,
    const int32_t *ca, const float *da, int64_t nb, float *yc, size_t y_stride, int acc_in) {
    __m512 acc[8];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = acc_in ? _mm512_loadu_ps(yc + (size_t)c * y_stride) : _mm512_setzero_ps();
    for (int64_t b = 0; b < nbc; b++) {
        __m512i wv[8];
        UNROLL for (int q = 0; q < 8; q++) wv[q] = _mm512_load_si512(wq[b][q]);
        const __m512 dw = _mm512_load_ps(ws[b]);
        UNROLL for (int c = 0; c < C; c++) {
            const int32_t *qs = (const int32_t *)a[c][b].qs;
            __m512i s = _mm512_set1_epi32(ca[c * nb + b]);
            UNROLL for (int q = 0; q < 8; q++) {
                int32_t v;
                memcpy(&v, qs + q, 4);
                s = _mm512_dpbusd_epi32(s, wv[q], _mm512_set1_epi32(v));
            }
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(da[c * nb + b])), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) _mm512_storeu_ps(yc + (size_t)c * y_stride, acc[c]);
}

/* The 16-row path over rows [0, nrows16) (a multiple of 16); returns 0 when out of memory
 * (the caller falls back to the tiles). */
static TGT int gemm16_q8_0(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                           size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    const int64_t nb = n / 32;
    int32_t *ca = malloc((size_t)(ncols * nb) * sizeof *ca);
    float *da = malloc((size_t)(ncols * nb) * sizeof *da);
    if (!ca || !da) {
        free(ca), free(da);
        return 0;
    }
    const __m256i k128 = _mm256_set1_epi8((char)0x80);
    for (int64_t c = 0; c < ncols; c++) {
        const block_q8_0 *ac = (const void *)((const char *)va + (size_t)c * a_stride);
        for (int64_t b = 0; b < nb; b++) {
            /* Σ(a + 128) by vpsadbw, then -128·Σa = 128·(32·128 - Σ(a + 128)) */
            __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)ac[b].qs), k128);
            __m256i sad = _mm256_sad_epu8(u, _mm256_setzero_si256());
            __m128i h = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
            int32_t su = (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1));
            ca[c * nb + b] = 128 * (32 * 128 - su);
            da[c * nb + b] = h2f(ac[b].d);
        }
    }
    /* up to G16_GROUPS groups of 16 rows are packed at once, then every column runs over
     * them: a column group's activations stay in L1 while the packed rows come from L2 */
    _Alignas(64) int32_t wq[G16_GROUPS][G16_MAX_NB][8][16];
    _Alignas(64) float ws[G16_GROUPS][G16_MAX_NB][16];
    for (int64_t r = 0; r < nrows16; r += 16 * G16_GROUPS) {
        const int ng = (int)TOME_MIN(G16_GROUPS, (nrows16 - r) / 16);
        for (int64_t b0 = 0; b0 < nb; b0 += G16_MAX_NB) {
            const int64_t nbc = TOME_MIN(G16_MAX_NB, nb - b0);
            for (int g = 0; g < ng; g++)
                g16_pack((const char *)vw + (size_t)(r + 16 * g) * w_stride, w_stride, b0, nbc, wq[g], ws[g]);
            for (int64_t c = 0; c < ncols; c += 8) {
                const block_q8_0 *a[8];
                const int C = (int)TOME_MIN(8, ncols - c);
                for (int j = 0; j < C; j++)
                    a[j] = (const block_q8_0 *)((const char *)va + (size_t)(c + j) * a_stride) + b0;
                const int32_t *cac = ca + c * nb + b0;
                const float *dac = da + c * nb + b0;
                for (int g = 0; g < ng; g++) {
                    float *yc = y + (size_t)c * y_stride + (size_t)(r + 16 * g);
                    const int32_t(*wg)[8][16] = wq[g];
                    const float(*sg)[16] = ws[g];
                    #define CALL(k) g16_cols(k, nbc, wg, sg, a, cac, dac, nb, yc, y_stride, b0 > 0)
                    G16_BY_C(C, CALL)
                    #undef CALL
                }
            }
        }
    }
    free(ca), free(da);
    return 1;
}

static TGT void gemm_block_q8_0(int64_t n, int64_t nrows, const void *vw, size_t w_stride,
                                const void *va, size_t a_stride, int64_t ncols, float *y,
                                size_t y_stride) {
    int64_t nb = n / 32, c = 0;
    if (g16_front(gemm16_q8_0, n, &nrows, &vw, w_stride, va, a_stride, ncols, &y, y_stride)) return;
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
 * Decode (dot, gemv) and the small prefill tiles of Q4_K, Q5_K and Q6_K work in YMMs (see
 * tile_q4_K for why); the 16-row prefill kernels of Q4_K and Q6_K (below) in ZMMs. Scales are
 * applied by vpdpwssd. Bounds: vpmaddubsw pairs <= 2*63*127 (Q6_K, before the -32 offset), the
 * super-block sum <= 256*32*127*128 < 2^31. */

/* Q4_K against C (1..4) Q8_K columns; dot_q4_K is C = 1, so the prefill tile equals dot() bit
 * for bit. 256-bit vectors, although this file is about ZMMs: one chunk of 32 code bytes holds
 * sub-block 2c in its low nibbles and 2c+1 in its high ones, so a YMM needs no cross-lane work,
 * and 256-bit vpmaddubsw/vpdpwssd issue on two ports where their 512-bit forms have one. The
 * scales are spread by an in-lane vpshufb, the mins come off the float accumulator by one
 * fnmadd per super-block (a single accumulator, one reduction per row). Measured on the
 * development VM (2048 x 768 rows, one thread, GB/s of weights): 17.6 against 13.5 for the
 * 512-bit kernel this replaced (two vpmaddubsw per chunk pair, vpermw-spread scales, separate
 * min accumulator); two or four rows per call gained nothing more. Per column the nibbles and
 * spread scales are shared; what remains per column is the vpmaddubsw/vpdpwssd pair. */
static inline __attribute__((always_inline)) TGT void tile_k45(
    int five, int C, int64_t nb, const void *vw, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m256 acc[4];
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
        __m256i scv = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm)); /* scales, both halves */
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm));   /* m0 m0 m1 m1 ... */
        float wd = h2f(hd), wdmin = h2f(hdmin);
        __m256i s0[4], s1[4];
        UNROLL for (int ch = 0; ch < 4; ch++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * ch));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) { /* qh bit 2ch -> bit 4 of the low codes, bit 2ch+1 -> bit 4 of the high codes */
                __m256i h0 = ch < 2 ? _mm256_slli_epi16(qh, 4 - 2 * ch) : _mm256_srli_epi16(qh, 2 * ch - 4);
                __m256i h1 = ch < 2 ? _mm256_slli_epi16(qh, 3 - 2 * ch) : _mm256_srli_epi16(qh, 2 * ch - 3);
                lo = _mm256_or_si256(lo, _mm256_and_si256(h0, b4));
                hi = _mm256_or_si256(hi, _mm256_and_si256(h1, b4));
            }
            __m256i sl = _mm256_shuffle_epi8(scv, _mm256_set1_epi16((short)(0x0100 + 0x0404 * ch)));
            __m256i sh = _mm256_shuffle_epi8(scv, _mm256_set1_epi16((short)(0x0302 + 0x0404 * ch)));
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *q8 = a[c][i].qs + 64 * ch;
                __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
                __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
                s0[c] = ch == 0 ? _mm256_madd_epi16(plo, sl) : _mm256_dpwssd_epi32(s0[c], plo, sl);
                s1[c] = ch == 0 ? _mm256_madd_epi16(phi, sh) : _mm256_dpwssd_epi32(s1[c], phi, sh);
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            float da = a[c][i].d;
            __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[c][i].bsums), m16);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(wd * da), _mm256_cvtepi32_ps(_mm256_add_epi32(s0[c], s1[c])),
                                     acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_set1_ps(wdmin * da), _mm256_cvtepi32_ps(ms), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) y[(size_t)c * y_stride] = hsum256_ps(acc[c]);
}

static inline __attribute__((always_inline)) TGT void tile_q4_K(
    int C, int64_t nb, const block_q4_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    tile_k45(0, C, nb, w, a, y, y_stride);
}

KQ_DOT_GEMV(q4_K, tile_q4_K)

/* Q4_K prefill, 16 rows per vector: the Q8_0 scheme above for super-blocks. Packed per 16 rows
 * and super-block: the nibbles of sub-block j as 8 vectors (lane = row, 4 values each,
 * unsigned 0..15 as they are), the 6-bit scales as int32 lanes, the mins as int16 pairs
 * (m[2i], m[2i+1]) and d, dmin as floats. Per column and super-block: 8 vpdpbusd per
 * sub-block give its 16 row sums S_j exactly; Σ_j sc_j·S_j by vpmulld (< 2^31: 8·63·61440);
 * Σ_j m_j·(bsums[2j] + bsums[2j+1]) by 4 vpdpwssd against the column's pairs (prepared once
 * per call); then acc += float(Σ sc·S)·(d·da) - float(Σ m·b)·(dmin·da): the per-super-block
 * terms of dot_q4_K, added in row order. */
#define G16K_MAX_SB 8 /* super-blocks per packed chunk: 4 groups x 8 x 4.6 KiB on the stack */

typedef struct g16k_pack {
    int32_t q[8][8][16];   /* [sub-block][4-value group][row] */
    int32_t sc[8][16];     /* [sub-block][row] */
    int32_t mp[4][16];     /* [sub-block pair][row]: m[2i] | m[2i+1] << 16 */
    float d[16], dmin[16];
} g16k_pack;

static TGT void g16k_pack_rows(const char *w0, size_t w_stride, int64_t s0, int64_t nsb, g16k_pack *pk) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)w_stride));
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nsb; b++) {
        const char *blk = w0 + (size_t)(s0 + b) * sizeof(block_q4_K);
        g16k_pack *p = pk + b;
        UNROLL for (int j2 = 0; j2 < 4; j2++) UNROLL for (int q = 0; q < 8; q++) {
            __m512i g = _mm512_i32gather_epi32(rows, blk + offsetof(block_q4_K, qs) + 32 * j2 + 4 * q, 1);
            _mm512_store_si512(p->q[2 * j2][q], _mm512_and_si512(g, lo4));
            _mm512_store_si512(p->q[2 * j2 + 1][q], _mm512_and_si512(_mm512_srli_epi32(g, 4), lo4));
        }
        __m512i dd = _mm512_i32gather_epi32(rows, blk, 1); /* d | dmin << 16 */
        _mm512_store_ps(p->d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
        _mm512_store_ps(p->dmin, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
        /* the 6-bit scales and mins of the 16 rows, unpacked lane-wise (unpack_k4_scales' bit
         * layout): one row per lane, so no per-row scalar work */
        const char *sp = blk + offsetof(block_q4_K, scales);
        const __m512i u0 = _mm512_i32gather_epi32(rows, sp, 1), u1 = _mm512_i32gather_epi32(rows, sp + 4, 1);
        const __m512i u2 = _mm512_i32gather_epi32(rows, sp + 8, 1);
        const __m512i k3f = _mm512_set1_epi32(0x3F3F3F3F), k0f = _mm512_set1_epi32(0x0F0F0F0F);
        const __m512i k03 = _mm512_set1_epi32(0x03030303), kff = _mm512_set1_epi32(0xFF);
        const __m512i sc4[2] = {_mm512_and_si512(u0, k3f),
                                _mm512_or_si512(_mm512_and_si512(u2, k0f),
                                                _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), k03), 4))};
        const __m512i m4[2] = {_mm512_and_si512(u1, k3f),
                               _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), k0f),
                                               _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), k03), 4))};
        UNROLL for (int j = 0; j < 8; j++)
            _mm512_store_si512(p->sc[j], _mm512_and_si512(_mm512_srli_epi32(sc4[j / 4], 8 * (j % 4)), kff));
        UNROLL for (int i = 0; i < 4; i++) { /* bytes 2i, 2i+1 of the mins -> m[2i] | m[2i+1] << 16 */
            __m512i v = _mm512_srli_epi32(m4[i / 2], 16 * (i % 2));
            _mm512_store_si512(p->mp[i], _mm512_or_si512(_mm512_and_si512(v, kff),
                                                         _mm512_and_si512(_mm512_slli_epi32(v, 8),
                                                                          _mm512_set1_epi32(0xFF0000))));
        }
    }
}

/* C columns of 16 rows over packed super-blocks [0, nsb); bp: each column's 4 bsum pairs per
 * super-block (column c at + c * nb * 4), a[c] at the chunk's first super-block. */
static inline __attribute__((always_inline)) TGT void g16k_cols(
    int C, int64_t nsb, const g16k_pack *pk, const block_q8_K *const *a, const int32_t *bp, int64_t nb,
    float *yc, size_t y_stride, int acc_in) {
    __m512 acc[8];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = acc_in ? _mm512_loadu_ps(yc + (size_t)c * y_stride) : _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b++) {
        const g16k_pack *p = pk + b;
        __m512i isum[8];
        UNROLL for (int j = 0; j < 8; j++) {
            __m512i wv[8];
            UNROLL for (int q = 0; q < 8; q++) wv[q] = _mm512_load_si512(p->q[j][q]);
            const __m512i sc = _mm512_load_si512(p->sc[j]);
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *qs = a[c][b].qs + 32 * j;
                __m512i s = _mm512_setzero_si512();
                UNROLL for (int q = 0; q < 8; q++) {
                    int32_t v;
                    memcpy(&v, qs + 4 * q, 4);
                    s = _mm512_dpbusd_epi32(s, wv[q], _mm512_set1_epi32(v));
                }
                s = _mm512_mullo_epi32(s, sc);
                isum[c] = j == 0 ? s : _mm512_add_epi32(isum[c], s);
            }
        }
        const __m512 d = _mm512_load_ps(p->d), dmin = _mm512_load_ps(p->dmin);
        UNROLL for (int c = 0; c < C; c++) {
            const int32_t *bpc = bp + (c * nb + b) * 4;
            __m512i ms = _mm512_setzero_si512();
            UNROLL for (int i = 0; i < 4; i++)
                ms = _mm512_dpwssd_epi32(ms, _mm512_load_si512(p->mp[i]), _mm512_set1_epi32(bpc[i]));
            const __m512 da = _mm512_set1_ps(a[c][b].d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, da), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmin, da), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) _mm512_storeu_ps(yc + (size_t)c * y_stride, acc[c]);
}

static TGT int gemm16_q4_K(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                           size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    const int64_t nb = n / QK_K;
    int32_t *bp = malloc((size_t)(ncols * nb * 4) * sizeof *bp);
    if (!bp) return 0;
    for (int64_t c = 0; c < ncols; c++) {
        const block_q8_K *ac = (const void *)((const char *)va + (size_t)c * a_stride);
        for (int64_t b = 0; b < nb; b++)
            for (int i = 0; i < 4; i++) {
                const int16_t *bs = ac[b].bsums + 4 * i; /* sub-blocks 2i, 2i+1: bsums 4i..4i+3 */
                int32_t lo = bs[0] + bs[1], hi = bs[2] + bs[3];
                bp[(c * nb + b) * 4 + i] = (int32_t)(((uint32_t)lo & 0xFFFFu) | (uint32_t)hi << 16);
            }
    }
    _Alignas(64) g16k_pack pk[G16_GROUPS][G16K_MAX_SB];
    for (int64_t r = 0; r < nrows16; r += 16 * G16_GROUPS) {
        const int ng = (int)TOME_MIN(G16_GROUPS, (nrows16 - r) / 16);
        for (int64_t s0 = 0; s0 < nb; s0 += G16K_MAX_SB) {
            const int64_t nsb = TOME_MIN(G16K_MAX_SB, nb - s0);
            for (int g = 0; g < ng; g++)
                g16k_pack_rows((const char *)vw + (size_t)(r + 16 * g) * w_stride, w_stride, s0, nsb, pk[g]);
            for (int64_t c = 0; c < ncols; c += 8) {
                const block_q8_K *a[8];
                const int C = (int)TOME_MIN(8, ncols - c);
                for (int j = 0; j < C; j++)
                    a[j] = (const block_q8_K *)((const char *)va + (size_t)(c + j) * a_stride) + s0;
                const int32_t *bpc = bp + (c * nb + s0) * 4;
                for (int g = 0; g < ng; g++) {
                    float *yc = y + (size_t)c * y_stride + (size_t)(r + 16 * g);
                    #define CALL(k) g16k_cols(k, nsb, pk[g], a, bpc, nb, yc, y_stride, s0 > 0)
                    G16_BY_C(C, CALL)
                    #undef CALL
                }
            }
        }
    }
    free(bp);
    return 1;
}

/* The prefill entry of a K-quant: the 16-row kernel G16 on whole groups of 16 rows, then the
 * rest row by row through TILE, up to 4 columns at a time. */
#define KQ_GEMM(name, WT, TILE, G16)                                                               \
    static TGT void name(int64_t n, int64_t nrows, const void *vw, size_t w_stride, const void *va, \
                         size_t a_stride, int64_t ncols, float *y, size_t y_stride) {              \
        int64_t nb = n / QK_K;                                                                     \
        if (g16_front(G16, n, &nrows, &vw, w_stride, va, a_stride, ncols, &y, y_stride)) return;   \
        for (int64_t c = 0; c < ncols; c += 4) {                                                   \
            int C = (int)TOME_MIN(4, ncols - c);                                                   \
            const block_q8_K *a[4];                                                                \
            for (int j = 0; j < C; j++) a[j] = (const void *)((const char *)va + (size_t)(c + j) * a_stride); \
            float *yc = y + (size_t)c * y_stride;                                                  \
            for (int64_t r = 0; r < nrows; r++) {                                                  \
                const WT *w = (const void *)((const char *)vw + (size_t)r * w_stride);             \
                switch (C) {                                                                       \
                case 4: TILE(4, nb, w, a, yc + r, y_stride); break;                                \
                case 3: TILE(3, nb, w, a, yc + r, y_stride); break;                                \
                case 2: TILE(2, nb, w, a, yc + r, y_stride); break;                                \
                default: TILE(1, nb, w, a, yc + r, y_stride); break;                               \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
KQ_GEMM(gemm_q4_K, block_q4_K, tile_q4_K, gemm16_q4_K)

/* Q5_K: tile_k45 with the fifth bit. qh bit 2c of byte j tops value j of chunk c's low
 * nibbles, bit 2c+1 its high nibbles; a 16-bit shift brings it to bit 4 (shifts of at most 4
 * left or 3 right, so the masked bit never comes from the neighbouring byte). Codes 0..31:
 * vpmaddubsw pairs <= 2*31*127. */
static inline __attribute__((always_inline)) TGT void tile_q5_K(
    int C, int64_t nb, const block_q5_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    tile_k45(1, C, nb, w, a, y, y_stride);
}

KQ_DOT_GEMV(q5_K, tile_q5_K)

/* no 16-row kernel for Q5_K: every row goes through tile_q5_K */
static TGT int gemm16_none(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                           size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    (void)n, (void)nrows16, (void)vw, (void)w_stride, (void)va, (void)a_stride, (void)ncols, (void)y, (void)y_stride;
    return 0;
}
KQ_GEMM(gemm_q5_K, block_q5_K, tile_q5_K, gemm16_none)

/* Q6_K against C (1..4) Q8_K columns; dot_q6_K is C = 1 (see tile_q4_K: YMMs, in-lane scale
 * spread, shared codes and scales per column). q in 0..63 stands for q-32; the offset is taken
 * out once per super-block through the activation sums: Σ sc*(q-32)*a = Σ sc*q*a -
 * 32 Σ_j sc_j*bsums_j (Q8_K's bsums are the sums of each 16 values). In each half of 128 values,
 * code vector k (32 values: ql's low nibbles of bytes 0..31 / 32..63, then their high nibbles,
 * with qh's bit pairs 0-1, 2-3, 4-5, 6-7 on top) covers the 16-value groups 2k and 2k+1 of the
 * half: the low 128-bit lane takes scale 2k, the high one 2k+1. Measured as tile_q4_K: 24-26
 * GB/s against 17.7 for the 512-bit kernel this replaced (vpermw-spread scales). */
static inline __attribute__((always_inline)) TGT void tile_q6_K(
    int C, int64_t nb, const block_q6_K *w, const block_q8_K *const *a, float *y, size_t y_stride) {
    __m256 acc[4];
    UNROLL for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int64_t i = 0; i < nb; i++) {
        float wd = h2f(w[i].d);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m256i s0[4], s1[4];
        UNROLL for (int c = 0; c < C; c++) {
            __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a[c][i].bsums));
            s0[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
            s1[c] = _mm256_setzero_si256();
        }
        UNROLL for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h;
            __m256i scv = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * h));
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            UNROLL for (int k = 0; k < 4; k++) {
                /* words 2k (low lane) and 2k+1 (high lane) of this half's 8 scales */
                __m256i ctl = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(0x0100 + 0x0404 * k))),
                                                      _mm_set1_epi16((short)(0x0302 + 0x0404 * k)), 1);
                __m256i sc = _mm256_shuffle_epi8(scv, ctl);
                UNROLL for (int c = 0; c < C; c++) {
                    __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(a[c][i].qs + 128 * h + 32 * k)));
                    if (k & 1) s1[c] = _mm256_dpwssd_epi32(s1[c], p, sc);
                    else s0[c] = _mm256_dpwssd_epi32(s0[c], p, sc);
                }
            }
        }
        UNROLL for (int c = 0; c < C; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(wd * a[c][i].d), _mm256_cvtepi32_ps(_mm256_add_epi32(s0[c], s1[c])),
                                     acc[c]);
    }
    UNROLL for (int c = 0; c < C; c++) y[(size_t)c * y_stride] = hsum256_ps(acc[c]);
}

KQ_DOT_GEMV(q6_K, tile_q6_K)

/* Q6_K prefill, 16 rows per vector (the scheme of the Q8_0 and Q4_K paths above). Packed per
 * 16 rows and super-block: the 6-bit codes q (0..63, unsigned as stored) of each of the 16
 * sub-blocks of 16 values as 4 vectors (lane = row), the int8 scales as int32 lanes and as
 * int16 pairs (sc[2i], sc[2i+1]), d as floats. Per column and super-block: 4 vpdpbusd per
 * sub-block give its 16 row sums of q·a; Σ sc·(q·a) by vpmulld; the code offset of 32 is
 * 32·Σ_j sc_j·bsums[j] (Q8_K's bsums are per 16 values), 8 vpdpwssd against the bsums read as
 * int16 pairs; all exact in int32 (|Σ sc·q·a| <= 16·16·63·128·128 < 2^31). Then acc +=
 * float(total)·(d·da): dot_q6_K's per-super-block term, added in row order. */
typedef struct g16q6_pack {
    int32_t q[16][4][16];  /* [sub-block][4-value group][row] */
    int32_t sc[16][16];    /* [sub-block][row] */
    int32_t sp[8][16];     /* [sub-block pair][row]: (int16)sc[2i] | sc[2i+1] << 16 */
    float d[16];
} g16q6_pack;

static TGT void g16q6_pack_rows(const char *w0, size_t w_stride, int64_t s0, int64_t nsb, g16q6_pack *pk) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)w_stride));
    const __m512i lo4 = _mm512_set1_epi8(0x0F), lo2 = _mm512_set1_epi8(0x03);
    for (int64_t b = 0; b < nsb; b++) {
        const char *blk = w0 + (size_t)(s0 + b) * sizeof(block_q6_K);
        g16q6_pack *p = pk + b;
        UNROLL for (int h = 0; h < 2; h++) UNROLL for (int g = 0; g < 8; g++) {
            const char *ql = blk + offsetof(block_q6_K, ql) + 64 * h + 4 * g;
            const char *qh = blk + offsetof(block_q6_K, qh) + 32 * h + 4 * g;
            __m512i l0 = _mm512_i32gather_epi32(rows, ql, 1), l1 = _mm512_i32gather_epi32(rows, ql + 32, 1);
            __m512i hh = _mm512_i32gather_epi32(rows, qh, 1);
            /* values 128h + 4g + {0, 32, 64, 96} + 0..3: sub-blocks 8h + g/4 + {0, 2, 4, 6} */
            const int sb = 8 * h + g / 4, q = g % 4;
            _mm512_store_si512(p->q[sb][q], _mm512_or_si512(_mm512_and_si512(l0, lo4),
                                                            _mm512_slli_epi32(_mm512_and_si512(hh, lo2), 4)));
            _mm512_store_si512(p->q[sb + 2][q],
                               _mm512_or_si512(_mm512_and_si512(l1, lo4),
                                               _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hh, 2), lo2), 4)));
            _mm512_store_si512(p->q[sb + 4][q],
                               _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(l0, 4), lo4),
                                               _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hh, 4), lo2), 4)));
            _mm512_store_si512(p->q[sb + 6][q],
                               _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(l1, 4), lo4),
                                               _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hh, 6), lo2), 4)));
        }
        __m512i dd = _mm512_i32gather_epi32(rows, blk + offsetof(block_q6_K, d) - 2, 1); /* d in the high half */
        _mm512_store_ps(p->d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
        /* the int8 scales of the 16 rows, one row per lane: sign-extended bytes */
        UNROLL for (int w4 = 0; w4 < 4; w4++) {
            const __m512i u = _mm512_i32gather_epi32(rows, blk + offsetof(block_q6_K, scales) + 4 * w4, 1);
            __m512i b[4];
            UNROLL for (int k = 0; k < 4; k++) {
                b[k] = _mm512_srai_epi32(_mm512_slli_epi32(u, 24 - 8 * k), 24);
                _mm512_store_si512(p->sc[4 * w4 + k], b[k]);
            }
            UNROLL for (int k = 0; k < 2; k++) /* (int16)sc[2i] | sc[2i+1] << 16 */
                _mm512_store_si512(p->sp[2 * w4 + k],
                                   _mm512_or_si512(_mm512_and_si512(b[2 * k], _mm512_set1_epi32(0xFFFF)),
                                                   _mm512_slli_epi32(b[2 * k + 1], 16)));
        }
    }
}

static inline __attribute__((always_inline)) TGT void g16q6_cols(
    int C, int64_t nsb, const g16q6_pack *pk, const block_q8_K *const *a, float *yc, size_t y_stride, int acc_in) {
    __m512 acc[8];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = acc_in ? _mm512_loadu_ps(yc + (size_t)c * y_stride) : _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b++) {
        const g16q6_pack *p = pk + b;
        __m512i isum[8];
        UNROLL for (int j = 0; j < 16; j++) {
            __m512i wv[4];
            UNROLL for (int q = 0; q < 4; q++) wv[q] = _mm512_load_si512(p->q[j][q]);
            const __m512i sc = _mm512_load_si512(p->sc[j]);
            UNROLL for (int c = 0; c < C; c++) {
                const int8_t *qs = a[c][b].qs + 16 * j;
                __m512i s = _mm512_setzero_si512();
                UNROLL for (int q = 0; q < 4; q++) {
                    int32_t v;
                    memcpy(&v, qs + 4 * q, 4);
                    s = _mm512_dpbusd_epi32(s, wv[q], _mm512_set1_epi32(v));
                }
                s = _mm512_mullo_epi32(s, sc);
                isum[c] = j == 0 ? s : _mm512_add_epi32(isum[c], s);
            }
        }
        const __m512 d = _mm512_load_ps(p->d);
        UNROLL for (int c = 0; c < C; c++) {
            __m512i ms = _mm512_setzero_si512();
            UNROLL for (int i = 0; i < 8; i++) {
                int32_t v;
                memcpy(&v, a[c][b].bsums + 2 * i, 4);
                ms = _mm512_dpwssd_epi32(ms, _mm512_load_si512(p->sp[i]), _mm512_set1_epi32(v));
            }
            __m512i tot = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(ms, 5));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), _mm512_mul_ps(d, _mm512_set1_ps(a[c][b].d)), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) _mm512_storeu_ps(yc + (size_t)c * y_stride, acc[c]);
}

static TGT int gemm16_q6_K(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                            size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    const int64_t nb = n / QK_K;
    _Alignas(64) g16q6_pack pk[G16_GROUPS][G16K_MAX_SB];
    for (int64_t r = 0; r < nrows16; r += 16 * G16_GROUPS) {
        const int ng = (int)TOME_MIN(G16_GROUPS, (nrows16 - r) / 16);
        for (int64_t s0 = 0; s0 < nb; s0 += G16K_MAX_SB) {
            const int64_t nsb = TOME_MIN(G16K_MAX_SB, nb - s0);
            for (int g = 0; g < ng; g++)
                g16q6_pack_rows((const char *)vw + (size_t)(r + 16 * g) * w_stride, w_stride, s0, nsb, pk[g]);
            for (int64_t c = 0; c < ncols; c += 8) {
                const block_q8_K *a[8];
                const int C = (int)TOME_MIN(8, ncols - c);
                for (int j = 0; j < C; j++)
                    a[j] = (const block_q8_K *)((const char *)va + (size_t)(c + j) * a_stride) + s0;
                for (int g = 0; g < ng; g++) {
                    float *yc = y + (size_t)c * y_stride + (size_t)(r + 16 * g);
                    #define CALL(k) g16q6_cols(k, nsb, pk[g], a, yc, y_stride, s0 > 0)
                    G16_BY_C(C, CALL)
                    #undef CALL
                }
            }
        }
    }
    return 1;
}

KQ_GEMM(gemm_q6_K, block_q6_K, tile_q6_K, gemm16_q6_K)

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

/* ---- rows (GEMV_OF and KQ_DOT_GEMV: simd_x86.h) -------------------------------------------- */

GEMV_OF(f16) GEMV_OF(bf16) GEMV_OF(f32)

/* ---- F16 / BF16 prefill, 16 rows per vector ----------------------------------------------
 * Without a gemm, cpu_matmul ran dot_f16 per row and column: every product converts both
 * halves again and every row ends in a 16-lane reduction (~16 GMAC/s per core measured).
 * Here, as for Q8_0 above, 16 rows are transposed once per call into lane = row order, now
 * as floats: vector k of a group holds value k of each of the 16 rows (a 16-bit transposition
 * in registers, then vcvtph2ps, or a shift for bf16). The activations (f16 or bf16, as
 * tq_vec_dot_type says) of up to 8 columns are widened once per chunk into a small buffer, so
 * a column's value k is one broadcast, and two groups x up to 8 columns keep 16 accumulators:
 * per value k, 2 weight loads and <= 8 broadcasts feed 16 FMAs. Products of two halves are
 * exact in float, so the only difference from dot() is the summation order: each row sums
 * its values in order, from zero in every chunk of G16F_KC, and the chunk sums are added into
 * y in order — within (KC + chunks)·2^-24·Σ|w·a| of the exact sum. Scratch on the stack:
 * G16_GROUPS x 16 rows x G16F_KC floats (32 KiB) and 8 x G16F_KC floats, L1-resident.
 * Measured (build/bench_simd -c 64, one thread, 2048 x 768): 68 GMAC/s against 16 (F16) and
 * 28 (BF16) for a gemv per column; the FMA peak of the core is ~84. */
#define G16F_KC 128

/* f16 or bf16 (a constant after inlining) halves to floats */
static inline __attribute__((always_inline)) TGT __m512 h16x16(__m256i v, int bf16) {
    return bf16 ? bf16x16(v) : _mm512_cvtph_ps(v);
}

/* 32 values of 16 rows (x[r]: row r's values k..k+31) as floats, lane = row: wp[0..31].
 * A 16-bit transposition in registers: words, dwords and qwords interleave within 128-bit
 * lanes (after them lane j of c[o][m] holds rows 8o..8o+7 of value 8j + m), vpermt2q pairs
 * the two row halves, vcvtph2ps widens. 64 shuffles and 32 conversions per 512 values, where
 * dword gathers cost about three times as much. */
static inline __attribute__((always_inline)) TGT void g16f_pack32(const __m512i x[16], float (*wp)[16], int bf16) {
    __m512i a[16], b[16], c[2][8];
    UNROLL for (int p = 0; p < 8; p++) { /* a[2p + h], dword d: rows 2p, 2p+1 of value 8j + 4h + d */
        a[2 * p] = _mm512_unpacklo_epi16(x[2 * p], x[2 * p + 1]);
        a[2 * p + 1] = _mm512_unpackhi_epi16(x[2 * p], x[2 * p + 1]);
    }
    UNROLL for (int q = 0; q < 4; q++) /* b[4q + 2h + s], qword e: rows 4q..4q+3 of 8j + 4h + 2s + e */
        UNROLL for (int h = 0; h < 2; h++) {
            b[4 * q + 2 * h] = _mm512_unpacklo_epi32(a[4 * q + h], a[4 * q + 2 + h]);
            b[4 * q + 2 * h + 1] = _mm512_unpackhi_epi32(a[4 * q + h], a[4 * q + 2 + h]);
        }
    UNROLL for (int o = 0; o < 2; o++) /* c[o][2(2h + s) + t]: rows 8o..8o+7 of 8j + 4h + 2s + t */
        UNROLL for (int hs = 0; hs < 4; hs++) {
            c[o][2 * hs] = _mm512_unpacklo_epi64(b[8 * o + hs], b[8 * o + 4 + hs]);
            c[o][2 * hs + 1] = _mm512_unpackhi_epi64(b[8 * o + hs], b[8 * o + 4 + hs]);
        }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    UNROLL for (int m = 0; m < 8; m++) {
        __m512i z0 = _mm512_permutex2var_epi64(c[0][m], lo, c[1][m]); /* values m, 8 + m */
        __m512i z1 = _mm512_permutex2var_epi64(c[0][m], hi, c[1][m]); /* 16 + m, 24 + m */
        _mm512_store_ps(wp[m], h16x16(_mm512_castsi512_si256(z0), bf16));
        _mm512_store_ps(wp[8 + m], h16x16(_mm512_extracti64x4_epi64(z0, 1), bf16));
        _mm512_store_ps(wp[16 + m], h16x16(_mm512_castsi512_si256(z1), bf16));
        _mm512_store_ps(wp[24 + m], h16x16(_mm512_extracti64x4_epi64(z1, 1), bf16));
    }
}

/* 16 rows (row 0 at w0) of f16 values [k0, k0 + kc) as floats, lane = row: wp[k][row].
 * Needs k0 + kc >= 2: past the groups of 32, a dword gather takes pairs of values, and an
 * odd last value comes from the pair that ends at it. */
static inline __attribute__((always_inline)) TGT void g16f_pack(const char *w0, size_t w_stride, int64_t k0,
                                                                int64_t kc, float (*wp)[16], int bf16) {
    const char *p = w0 + (size_t)k0 * sizeof(tq_half);
    int64_t k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512i x[16];
        UNROLL for (int r = 0; r < 16; r++) x[r] = _mm512_loadu_si512(p + (size_t)r * w_stride + 2 * k);
        g16f_pack32(x, wp + k, bf16);
    }
    if (k == kc) return;
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)w_stride));
    /* even halves (value k of each row) to the low 256 bits, odd (k + 1) to the high */
    static const uint16_t order[32] = {0, 2,  4,  6,  8,  10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
                                       1, 3,  5,  7,  9,  11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    const __m512i split = _mm512_loadu_si512(order);
    for (; k + 2 <= kc; k += 2) {
        __m512i g = _mm512_permutexvar_epi16(split, _mm512_i32gather_epi32(rows, p + 2 * k, 1));
        _mm512_store_ps(wp[k], h16x16(_mm512_castsi512_si256(g), bf16));
        _mm512_store_ps(wp[k + 1], h16x16(_mm512_extracti64x4_epi64(g, 1), bf16));
    }
    if (k < kc) {
        __m512i g = _mm512_permutexvar_epi16(split, _mm512_i32gather_epi32(rows, p + 2 * k - 2, 1));
        _mm512_store_ps(wp[k], h16x16(_mm512_extracti64x4_epi64(g, 1), bf16));
    }
}

/* R groups of 16 rows (packed at wp[g], G16F_KC values apart) x C columns (activations as
 * floats at af + c * G16F_KC) over kc values; y columns at yc[c * y_stride], rows
 * yc[16g..16g+15]; acc_in: add to what y holds (a later chunk). R, C: constants after
 * inlining, so the 2 x 8 accumulators live in registers. */
static inline __attribute__((always_inline)) TGT void g16f_cols(int R, int C, int64_t kc, const float (*wp)[16],
                                                                const float *af, float *yc, size_t y_stride,
                                                                int acc_in) {
    __m512 acc[2][8];
    UNROLL for (int g = 0; g < R; g++) UNROLL for (int c = 0; c < C; c++) acc[g][c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 w[2];
        UNROLL for (int g = 0; g < R; g++) w[g] = _mm512_load_ps(wp[(size_t)g * G16F_KC + (size_t)k]);
        UNROLL for (int c = 0; c < C; c++) {
            const __m512 b = _mm512_set1_ps(af[c * G16F_KC + k]);
            UNROLL for (int g = 0; g < R; g++) acc[g][c] = _mm512_fmadd_ps(w[g], b, acc[g][c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++) UNROLL for (int g = 0; g < R; g++) {
        float *yp = yc + (size_t)c * y_stride + 16 * g;
        _mm512_storeu_ps(yp, acc_in ? _mm512_add_ps(_mm512_loadu_ps(yp), acc[g][c]) : acc[g][c]);
    }
}

/* rows [0, nrows16) (a multiple of 16) x ncols columns, n >= 2; bf16: the halves are bf16
 * (weights and activations) rather than f16 */
static inline __attribute__((always_inline)) TGT void gemm16_h(int bf16, int64_t n, int64_t nrows16, const void *vw,
                                                               size_t w_stride, const void *va, size_t a_stride,
                                                               int64_t ncols, float *y, size_t y_stride) {
    _Alignas(64) float wp[G16_GROUPS * G16F_KC][16];
    _Alignas(64) float af[8 * G16F_KC];
    for (int64_t r = 0; r < nrows16; r += 16 * G16_GROUPS) {
        const int ng = (int)TOME_MIN(G16_GROUPS, (nrows16 - r) / 16);
        for (int64_t k0 = 0; k0 < n; k0 += G16F_KC) {
            const int64_t kc = TOME_MIN(G16F_KC, n - k0);
            for (int g = 0; g < ng; g++)
                g16f_pack((const char *)vw + (size_t)(r + 16 * g) * w_stride, w_stride, k0, kc,
                          wp + (size_t)g * G16F_KC, bf16);
            for (int64_t c = 0; c < ncols; c += 8) {
                const int C = (int)TOME_MIN(8, ncols - c);
                for (int j = 0; j < C; j++) {
                    const tq_half *ac = (const tq_half *)((const char *)va + (size_t)(c + j) * a_stride) + k0;
                    for (int64_t k = 0; k < kc; k += 16) {
                        __mmask16 m = kc - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (kc - k)) - 1);
                        _mm512_mask_storeu_ps(af + j * G16F_KC + k, m,
                                              h16x16(_mm256_maskz_loadu_epi16(m, ac + k), bf16));
                    }
                }
                for (int g = 0; g < ng; g += 2) {
                    float *yc = y + (size_t)c * y_stride + (size_t)(r + 16 * g);
                    const float(*wg)[16] = wp + (size_t)g * G16F_KC;
                    const int acc_in = k0 > 0;
#define G16F_CASE(R, C) \
    case (R) * 8 + (C): g16f_cols(R, C, kc, wg, af, yc, y_stride, acc_in); break;
                    switch ((ng - g >= 2 ? 2 : 1) * 8 + C) {
                        G16F_CASE(2, 8) G16F_CASE(2, 7) G16F_CASE(2, 6) G16F_CASE(2, 5)
                        G16F_CASE(2, 4) G16F_CASE(2, 3) G16F_CASE(2, 2) G16F_CASE(2, 1)
                        G16F_CASE(1, 8) G16F_CASE(1, 7) G16F_CASE(1, 6) G16F_CASE(1, 5)
                        G16F_CASE(1, 4) G16F_CASE(1, 3) G16F_CASE(1, 2)
                        default: g16f_cols(1, 1, kc, wg, af, yc, y_stride, acc_in); break;
                    }
#undef G16F_CASE
                }
            }
        }
    }
}

/* (rows shorter than 16 values: not taken) */
static TGT int gemm16_f16(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                          size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    if (n < 16) return 0;
    gemm16_h(0, n, nrows16, vw, w_stride, va, a_stride, ncols, y, y_stride);
    return 1;
}

static TGT int gemm16_bf16(int64_t n, int64_t nrows16, const void *vw, size_t w_stride, const void *va,
                           size_t a_stride, int64_t ncols, float *y, size_t y_stride) {
    if (n < 16) return 0;
    gemm16_h(1, n, nrows16, vw, w_stride, va, a_stride, ncols, y, y_stride);
    return 1;
}

/* Prefill entries: the 16-row path for whole groups of 16 rows, gemv for the rest (and for
 * calls too small to repay the transposition). */
#define G16H_ENTRY(name, tgt, g16, gemv)                                                           \
    static tgt void name(int64_t n, int64_t nrows, const void *vw, size_t w_stride, const void *va, \
                         size_t a_stride, int64_t ncols, float *y, size_t y_stride) {              \
        if (g16_front(g16, n, &nrows, &vw, w_stride, va, a_stride, ncols, &y, y_stride)) return;   \
        for (int64_t c = 0; c < ncols; c++)                                                        \
            gemv(n, nrows, vw, w_stride, (const char *)va + (size_t)c * a_stride, y + (size_t)c * y_stride); \
    }
G16H_ENTRY(gemm_f16, TGT, gemm16_f16, gemv_f16)
G16H_ENTRY(gemm_bf16, TGT, gemm16_bf16, gemv_bf16)

static TGT_BF16 void gemv_bf16_dp(int64_t n, int64_t nrows, const void *w, size_t w_stride,
                                  const void *a, float *y) {
    for (int64_t r = 0; r < nrows; r++) y[r] = dot_bf16_dp(n, (const char *)w + (size_t)r * w_stride, a);
}

/* BF16 prefill with avx512bf16: the widened values of gemm16_bf16, tails through
 * gemv_bf16_dp so that they equal dot() exactly. A vdpbf16ps version (16 rows transposed as
 * dwords, i.e. pairs of values, a column's pair broadcast, 32 MACs per instruction) was
 * measured at 41 GMAC/s against 68 for the widened values (build/bench_simd -r 2048 -n 768
 * -c 64, one thread, Xeon with avx512_bf16): vdpbf16ps issues at half the FMA rate there. */
G16H_ENTRY(gemm_bf16_dp, TGT_BF16, gemm16_bf16, gemv_bf16_dp)

void cpu_simd_fill_avx512(cpu_kernels *k) {
    k->dot[GGML_TYPE_Q8_0] = dot_block_q8_0;  k->gemv[GGML_TYPE_Q8_0] = gemv_block_q8_0;
    k->gemm[GGML_TYPE_Q8_0] = gemm_block_q8_0;
    k->dot[GGML_TYPE_Q4_0] = dot_block_q4_0;  k->gemv[GGML_TYPE_Q4_0] = gemv_block_q4_0;
    k->dot[GGML_TYPE_Q4_K] = dot_q4_K;  k->gemv[GGML_TYPE_Q4_K] = gemv_q4_K;
    k->gemm[GGML_TYPE_Q4_K] = gemm_q4_K;
    k->dot[GGML_TYPE_Q5_K] = dot_q5_K;  k->gemv[GGML_TYPE_Q5_K] = gemv_q5_K;
    k->gemm[GGML_TYPE_Q5_K] = gemm_q5_K;
    k->dot[GGML_TYPE_Q6_K] = dot_q6_K;  k->gemv[GGML_TYPE_Q6_K] = gemv_q6_K;
    k->gemm[GGML_TYPE_Q6_K] = gemm_q6_K;
    k->dot[GGML_TYPE_F16] = dot_f16;    k->gemv[GGML_TYPE_F16] = gemv_f16;
    k->gemm[GGML_TYPE_F16] = gemm_f16;
    k->dot[GGML_TYPE_F32] = dot_f32;    k->gemv[GGML_TYPE_F32] = gemv_f32;
    if (k->feat.avx512bf16) {
        k->dot[GGML_TYPE_BF16] = dot_bf16_dp;
        k->gemv[GGML_TYPE_BF16] = gemv_bf16_dp;
        k->gemm[GGML_TYPE_BF16] = gemm_bf16_dp;
    } else {
        k->dot[GGML_TYPE_BF16] = dot_bf16;
        k->gemv[GGML_TYPE_BF16] = gemv_bf16;
        k->gemm[GGML_TYPE_BF16] = gemm_bf16;
    }
}

#else
void cpu_simd_fill_avx512(cpu_kernels *k) { (void)k; }
#endif

/* simd_x86.h — helpers shared by the AVX2 and AVX-512 kernel files (include after
 * <immintrin.h>, inside their x86 guard). Baseline SSE2 only, so they inline into functions of
 * either target. */
#ifndef TOME_CPU_SIMD_X86_H
#define TOME_CPU_SIMD_X86_H

#include <stdint.h>
#include <string.h>

#include "quant.h"

/* The 12 packed bytes of Q4_K/Q5_K scales -> bytes 0..7: the eight 6-bit scales, bytes 8..15:
 * the eight 6-bit mins. Done in 32-bit words, in registers: building the bytes in memory and
 * reloading them as a vector stalls on store forwarding (and a vector unpack measured slower). */
static inline __m128i unpack_k4_scales(const uint8_t q[K_SCALE_SIZE]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4), memcpy(&u1, q + 4, 4), memcpy(&u2, q + 8, 4);
    uint32_t sc_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
    return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* A gemv prefetches, before each weight row, the bytes ROW_PF_DIST ahead of it (prefetches do
 * not fault, so running past the matrix is harmless). One thread, GB/s, matrices in L2 / L3 /
 * DRAM: F16 27.9 -> 31.2 / 21.7 -> 25.3 / 8.7 -> 11.2 (768-wide rows; 4096 and 8192 ahead
 * measured the same as 2048); Q4_K the same in L2, 15.5 -> 16.5 at 14 MB and 14.1 -> 16.2 at
 * 56 MB. */
#define ROW_PF_DIST 2048
static inline void row_prefetch(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + ROW_PF_DIST + o, _MM_HINT_T0);
}

/* The macros below expand in the including file, with its TGT target attribute. */

/* gemv as dot row after row, each row prefetching ahead (row_prefetch). */
#define GEMV_OF(fn)                                                                                \
    static TGT void gemv_##fn(int64_t n, int64_t nrows, const void *w, size_t w_stride,            \
                              const void *a, float *y) {                                           \
        for (int64_t r = 0; r < nrows; r++) {                                                      \
            const char *row = (const char *)w + (size_t)r * w_stride;                              \
            row_prefetch(row, w_stride);                                                           \
            y[r] = dot_##fn(n, row, a);                                                            \
        }                                                                                          \
    }

/* dot and gemv of a K-quant from its tile TILE(C, nb, w, a, y, y_stride) with C = 1, so both
 * equal the prefill tile bit for bit. gemv inlines the tile, so its constants stay in
 * registers across rows (a call per 768-wide row of three super-blocks cost ~8%). */
#define KQ_DOT_GEMV(WT, TILE)                                                                      \
    static TGT float dot_##WT(int64_t n, const void *vw, const void *va) {                         \
        const block_q8_K *a[1] = {va};                                                             \
        float y;                                                                                   \
        TILE(1, n / QK_K, (const block_##WT *)vw, a, &y, 1);                                       \
        return y;                                                                                  \
    }                                                                                              \
    static TGT void gemv_##WT(int64_t n, int64_t nrows, const void *w, size_t w_stride, const void *va, \
                              float *y) {                                                          \
        const block_q8_K *a[1] = {va};                                                             \
        for (int64_t r = 0; r < nrows; r++) {                                                      \
            const char *row = (const char *)w + (size_t)r * w_stride;                              \
            row_prefetch(row, w_stride);                                                           \
            TILE(1, n / QK_K, (const block_##WT *)row, a, y + r, 1);                               \
        }                                                                                          \
    }

#endif

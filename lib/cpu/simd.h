/* simd.h — CPU dot-product kernels chosen at run time: AVX-512 (VNNI, BF16), AVX2+FMA, scalar.
 *
 * One binary runs everywhere: nothing is compiled with -march; the SIMD functions carry
 * function-level target attributes and cpu_kernels_select() looks at cpuid/xgetbv to decide
 * which of them may run. The scalar path is the reference in quant.c itself (tq_vec_dot,
 * tq_quantize), so forcing "scalar" reproduces the reference bit for bit.
 *
 * Semantics are those of quant.h: a weight row of `type` is dotted with activations that were
 * quantised into tq_vec_dot_type(type). The SIMD dot products give the reference's result up to
 * the order of float additions (integer block sums are exact; only the per-block float terms are
 * summed in another order); see tests/test_simd.c for the tolerance and its derivation.
 * The activation quantisers (Q8_0, Q8_K, F16, BF16) produce exactly the bytes tq_quantize does.
 *
 * Limits: n must be a multiple of the type's block size (the caller checked the model).
 * Weight rows and activations need no alignment. Activations must come from a quantiser of
 * this table or tq_quantize: the kernels rely on int8 activation codes never being -128 and
 * (Q6_K) on Q8_K's bsums matching its codes; weight codes may be anything, -128 included.
 * Types without a SIMD kernel (Q4_1, Q5_0, Q5_1) fall back to the reference in every path,
 * so every supported type has a non-NULL entry. Denormal BF16 products on the AVX-512 BF16 path
 * flush to zero (vdpbf16ps), far below anything a model computes.
 */
#ifndef TOME_CPU_SIMD_H
#define TOME_CPU_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* x86 features that matter to the kernels, as reported by cpuid and enabled by the OS (xgetbv). */
typedef struct cpu_features {
    int avx2, fma, f16c;                       /* the AVX2 path needs all three */
    int avx512f, avx512bw, avx512vl, avx512dq; /* the AVX-512 path needs these four ... */
    int avx512vnni;                            /* ... and VNNI (vpdpbusd / vpdpwssd) */
    int avx512bf16;                            /* vdpbf16ps: used for BF16 weights when present */
    int avxvnni;                               /* VEX-encoded VNNI (not used yet; reported) */
} cpu_features;

/* Fills *f from cpuid/xgetbv; all zero on non-x86 machines. */
void cpu_features_detect(cpu_features *f);

/* Dot product of one weight row (n values) with activations in the type's vec_dot_type. */
typedef float (*cpu_dot_fn)(int64_t n, const void *w, const void *a);

/* y[r] = dot(row r, a) for r in [0, nrows): rows are w_stride bytes apart. Kernels may read
 * several rows at once to share activation loads; the result for each row equals dot(). */
typedef void (*cpu_gemv_fn)(int64_t n, int64_t nrows, const void *w, size_t w_stride,
                            const void *a, float *y);

/* Several columns: y[c * y_stride + r] = dot(row r, activation c) for r in [0, nrows),
 * c in [0, ncols); activation vectors a_stride bytes apart. Register-blocked over rows and
 * columns; each result equals dot() bit for bit, except the AVX-512 kernels' "16 rows per
 * vector" path (Q8_0, Q4_K, Q6_K, F16, BF16 on 16 rows or more and 4 columns or more), which
 * adds the same per-block terms in another order (simd_avx512.c). */
typedef void (*cpu_gemm_fn)(int64_t n, int64_t nrows, const void *w, size_t w_stride,
                            const void *a, size_t a_stride, int64_t ncols, float *y,
                            size_t y_stride);

/* Quantises n floats into dst in vec_dot_type (bytes: ggml_row_size(vec_dot_type, n)). */
typedef void (*cpu_quant_fn)(const float *x, void *dst, int64_t n);

enum { CPU_PATH_SCALAR = 0, CPU_PATH_AVX2 = 1, CPU_PATH_AVX512 = 2 };

/* The kernel table. Filled by cpu_kernels_select; read-only afterwards and safe to share
 * between threads (it holds only function pointers). Index by GGML_TYPE_*. */
typedef struct cpu_kernels {
    const char *name;                  /* "scalar", "avx2", "avx512" */
    int path;                          /* CPU_PATH_* */
    cpu_features feat;                 /* what the CPU has (not only what the path uses) */
    cpu_dot_fn dot[GGML_TYPE_COUNT];   /* by weight type; NULL where tq_supported() is 0 */
    cpu_gemv_fn gemv[GGML_TYPE_COUNT]; /* by weight type; NULL where dot is NULL */
    cpu_gemm_fn gemm[GGML_TYPE_COUNT]; /* by weight type; NULL: cpu_matmul loops gemv */
    cpu_quant_fn quant[GGML_TYPE_COUNT]; /* by activation (vec_dot) type: F16, BF16, Q8_0,
                                          * Q8_1, Q8_K, F32 (a copy); bytes of tq_quantize */
    cpu_quant_fn quant_x86[GGML_TYPE_COUNT]; /* the same, bytes of tq_quantize_x86: what
                                              * llama.cpp's x86 build feeds its Q8_0/Q8_1
                                              * dot products (to reproduce its logits) */
} cpu_kernels;

/* Detects the CPU and fills *k with the best path it can run: AVX-512 (F+BW+VL+DQ+VNNI),
 * else AVX2+FMA+F16C, else scalar. `force` may be NULL (best), "scalar", "avx2" or "avx512".
 * Returns 0, or TOME_EFLAGS when `force` names an unknown path, or TOME_ERESOURCE when the
 * forced path needs features this CPU lacks; then *k holds the best available path anyway. */
int cpu_kernels_select(cpu_kernels *k, const char *force);

/* Convenience: weight row `type` · activations, through the table. */
static inline float cpu_vec_dot(const cpu_kernels *k, uint32_t type, int64_t n, const void *w,
                                const void *a) {
    return k->dot[type](n, w, a);
}

/* Convenience: quantises activations x (n floats) into vec_dot_type. */
static inline void cpu_quantize_act(const cpu_kernels *k, uint32_t vec_dot_type, const float *x,
                                    void *dst, int64_t n) {
    k->quant[vec_dot_type](x, dst, n);
}

/* A block of a matrix product, for prefill and for threads that split output rows:
 *   y[c * y_stride + r] = dot(weight row r, activation vector c)
 * for r in [r0, r1) and c in [0, ncols). Weight rows (type, n values) are w_stride bytes apart,
 * row 0 at w; activation vectors (already in tq_vec_dot_type(type)) are a_stride bytes apart;
 * y_stride floats separate output columns. Rows go in tiles of ~256 KiB of weights, each tile
 * against every column, so weights come from memory once and from cache for the other columns.
 * Where the path has a gemm kernel for the type (AVX-512: Q8_0, Q4_K, Q6_K, F16, BF16; AVX2: Q4_K, Q6_K)
 * a tile goes through it, register-blocked over rows and columns; otherwise through gemv once
 * per column. Each element equals k->dot[type] bit for bit (but for the kernels named at
 * cpu_gemm_fn, to float summation order). Threads may run disjoint row ranges at once. */
void cpu_matmul(const cpu_kernels *k, uint32_t type, int64_t n, const void *w, size_t w_stride,
                int64_t r0, int64_t r1, const void *a, size_t a_stride, int64_t ncols, float *y,
                size_t y_stride);

/* ---- internals shared by simd.c and the per-ISA files (not for other callers) ---------- */
/* Each fills the entries it implements and leaves the rest untouched. */
void cpu_simd_fill_avx2(cpu_kernels *k);
void cpu_simd_fill_avx512(cpu_kernels *k);

#endif

/* simd.c — CPU feature detection and the choice of dot-product kernels (see simd.h).
 *
 * The scalar entries wrap the reference functions of quant.c one type at a time, so a table
 * filled here alone is the reference; the per-ISA files (simd_avx2.c, simd_avx512.c) then
 * overwrite the entries they have faster kernels for. Detection asks cpuid for the feature
 * bits and xgetbv for whether the OS saves the wider registers: a CPU with AVX-512 under an
 * OS (or hypervisor) that does not enable ZMM state must not take the AVX-512 path.
 */
#include "cpu/simd.h"

#include <string.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 via xgetbv, written as raw asm so this file needs no target attribute. */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

void cpu_features_detect(cpu_features *f) {
    memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = read_xcr0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;     /* SSE and AVX state */
    int zmm_ok = (xcr0 & 0xE6) == 0xE6;   /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok) return;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->fma = fma;
    f->f16c = f16c;
    f->avx2 = (b >> 5) & 1;
    if (zmm_ok) {
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vnni = (c >> 11) & 1;
    }
    unsigned a1 = 0, b1, c1, d1;
    if (a >= 1) __cpuid_count(7, 1, a1, b1, c1, d1);
    f->avxvnni = (a1 >> 4) & 1;
    if (zmm_ok) f->avx512bf16 = (a1 >> 5) & 1;
#endif
}

/* ---- scalar entries: the reference, one wrapper per type -------------------------------- */

#define TOME_SIMD_TYPES(X) \
    X(F32) X(F16) X(BF16) X(Q8_0) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q4_K) X(Q5_K) X(Q6_K)

#define SCALAR_DOT(T)                                                                          \
    static float scalar_dot_##T(int64_t n, const void *w, const void *a) {                   \
        return tq_vec_dot(GGML_TYPE_##T, n, w, a);                                             \
    }                                                                                          \
    static void scalar_gemv_##T(int64_t n, int64_t nrows, const void *w, size_t w_stride,    \
                                const void *a, float *y) {                                     \
        for (int64_t r = 0; r < nrows; r++)                                                    \
            y[r] = tq_vec_dot(GGML_TYPE_##T, n, (const char *)w + (size_t)r * w_stride, a);    \
    }
TOME_SIMD_TYPES(SCALAR_DOT)

#define SCALAR_QUANT(T)                                                                        \
    static void scalar_quant_##T(const float *x, void *dst, int64_t n) {                      \
        tq_quantize(GGML_TYPE_##T, x, dst, n);                                                 \
    }
SCALAR_QUANT(F32) SCALAR_QUANT(F16) SCALAR_QUANT(BF16) SCALAR_QUANT(Q8_0) SCALAR_QUANT(Q8_1)
SCALAR_QUANT(Q8_K)

#define SCALAR_QUANT_X86(T)                                                                    \
    static void scalar_quant_x86_##T(const float *x, void *dst, int64_t n) {                  \
        tq_quantize_x86(GGML_TYPE_##T, x, dst, n);                                             \
    }
SCALAR_QUANT_X86(F32) SCALAR_QUANT_X86(F16) SCALAR_QUANT_X86(BF16) SCALAR_QUANT_X86(Q8_0)
SCALAR_QUANT_X86(Q8_1) SCALAR_QUANT_X86(Q8_K)

static void fill_scalar(cpu_kernels *k) {
    memset(k->dot, 0, sizeof k->dot);
    memset(k->gemv, 0, sizeof k->gemv);
    memset(k->quant, 0, sizeof k->quant);
    memset(k->quant_x86, 0, sizeof k->quant_x86);
#define FILL_DOT(T) k->dot[GGML_TYPE_##T] = scalar_dot_##T; k->gemv[GGML_TYPE_##T] = scalar_gemv_##T;
    TOME_SIMD_TYPES(FILL_DOT)
#undef FILL_DOT
#define FILL_QUANT(T) \
    k->quant[GGML_TYPE_##T] = scalar_quant_##T, k->quant_x86[GGML_TYPE_##T] = scalar_quant_x86_##T;
    FILL_QUANT(F32) FILL_QUANT(F16) FILL_QUANT(BF16) FILL_QUANT(Q8_0) FILL_QUANT(Q8_1)
    FILL_QUANT(Q8_K)
#undef FILL_QUANT
    k->name = "scalar";
    k->path = CPU_PATH_SCALAR;
}

static int can_avx2(const cpu_features *f) { return f->avx2 && f->fma && f->f16c; }
static int can_avx512(const cpu_features *f) {
    return can_avx2(f) && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq &&
           f->avx512vnni;
}

static void fill_path(cpu_kernels *k, int path) {
    fill_scalar(k);
    if (path >= CPU_PATH_AVX2) {
        cpu_simd_fill_avx2(k);
        k->name = "avx2";
        k->path = CPU_PATH_AVX2;
    }
    if (path >= CPU_PATH_AVX512) {
        cpu_simd_fill_avx512(k);
        k->name = "avx512";
        k->path = CPU_PATH_AVX512;
    }
}

int cpu_kernels_select(cpu_kernels *k, const char *force) {
    memset(k, 0, sizeof *k);
    cpu_features_detect(&k->feat);
    int best = can_avx512(&k->feat) ? CPU_PATH_AVX512
             : can_avx2(&k->feat)   ? CPU_PATH_AVX2
                                    : CPU_PATH_SCALAR;
    int want = best;
    int rc = TOME_OK;
    if (force) {
        if (!strcmp(force, "scalar")) want = CPU_PATH_SCALAR;
        else if (!strcmp(force, "avx2")) want = CPU_PATH_AVX2;
        else if (!strcmp(force, "avx512")) want = CPU_PATH_AVX512;
        else rc = TOME_EFLAGS;
        if (rc == TOME_OK && want > best) {
            rc = TOME_ERESOURCE;
            want = best;
        }
        if (rc != TOME_OK) want = best;
    }
    fill_path(k, want);
    return rc;
}

void cpu_matmul(const cpu_kernels *k, uint32_t type, int64_t n, const void *w, size_t w_stride,
                int64_t r0, int64_t r1, const void *a, size_t a_stride, int64_t ncols, float *y,
                size_t y_stride) {
    if (r1 <= r0 || ncols <= 0) return;
    if (ncols == 1) {
        k->gemv[type](n, r1 - r0, (const char *)w + (size_t)r0 * w_stride, w_stride, a, y + r0);
        return;
    }
    /* tile height: ~256 KiB of weights (a fraction of L2), a multiple of 4 rows, 4..64 */
    size_t rb = w_stride ? w_stride : 1;
    int64_t tile = (int64_t)((256u << 10) / rb);
    tile = tile < 4 ? 4 : tile > 64 ? 64 : tile & ~(int64_t)3;
    for (int64_t t0 = r0; t0 < r1; t0 += tile) {
        int64_t rows = TOME_MIN(tile, r1 - t0);
        const char *wt = (const char *)w + (size_t)t0 * w_stride;
        if (k->gemm[type]) {
            k->gemm[type](n, rows, wt, w_stride, a, a_stride, ncols, y + t0, y_stride);
            continue;
        }
        for (int64_t c = 0; c < ncols; c++)
            k->gemv[type](n, rows, wt, w_stride, (const char *)a + (size_t)c * a_stride,
                          y + (size_t)c * y_stride + t0);
    }
}

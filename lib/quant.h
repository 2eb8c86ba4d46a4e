/* quant.h — tensor block formats, byte-compatible with llama.cpp's GGUF files.
 *
 * Each quantised type stores a row of n values (n a multiple of the block size) as n/blck
 * consecutive blocks. The structs below are the exact on-disk layouts (little-endian, no
 * padding; `_Static_assert`s pin their sizes) — the CPU code and the PTX read these bytes.
 *
 * Dot products follow llama.cpp: the activation vector is first quantised into the type's
 * "vec_dot_type" (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F16
 * for F16, BF16 for BF16, F32 for F32), then the dot product runs block by block. Doing the
 * same is what makes tome's logits agree with llama.cpp's to ~1e-5 rather than ~1e-2.
 * `tq_dot_f32` is the exact alternative: weights dequantised, float activations.
 */
#ifndef TOME_QUANT_H
#define TOME_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h" /* enum ggml_type, ggml_type_get, ggml_row_size */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t tq_half; /* IEEE binary16 bits */

typedef struct { tq_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;                 /* x = d*(q-8) */
typedef struct { tq_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;              /* x = d*q + m */
typedef struct { tq_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;   /* x = d*(q-16) */
typedef struct { tq_half d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;/* x = d*q + m */
typedef struct { tq_half d; int8_t qs[QK8_0]; } block_q8_0;                      /* x = d*q */
typedef struct { tq_half d, s; int8_t qs[QK8_1]; } block_q8_1;                   /* s = d*sum(q) */
/* K-quants: super-blocks of 256 split into sub-blocks with 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K)
 * scales; Q8_K is the activation format for their dot products. */
typedef struct { tq_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { tq_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; tq_half d; } block_q6_K;
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* 1 if tome can compute with weights of this type (dequantize + dot product). */
int tq_supported(uint32_t type);

/* Dequantizes n values (a multiple of the block size) from src into dst, bit-identical to
 * ggml's dequantize_row_*. Also accepts the activation formats Q8_1 and Q8_K. For a type it
 * cannot decode (or n not a multiple of the block) it fills dst with NaN. */
void tq_dequantize(uint32_t type, const void *src, float *dst, int64_t n);

/* Quantizes n floats into dst (ggml_row_size(type, n) bytes), rounding as llama.cpp's
 * reference quantizers do (quantize_row_*_ref; for Q8_0/Q8_1/Q8_K these are also the
 * activation quantizers). Returns the bytes written, 0 for an unsupported type or an n that
 * is not a multiple of the block size. */
size_t tq_quantize(uint32_t type, const float *src, void *dst, int64_t n);

/* Same as tq_quantize, except Q8_0 and Q8_1 are quantized as llama.cpp's x86 AVX/AVX2 build
 * quantizes activations (inverse scale 127/amax instead of 1/(amax/127), ties rounded to even
 * instead of away from zero): a code now and then differs by one from the reference. Use it to
 * reproduce logits computed by llama.cpp on x86. Q8_K (and every other type) is unchanged:
 * that build quantizes Q8_K with the reference code. */
size_t tq_quantize_x86(uint32_t type, const float *src, void *dst, int64_t n);

/* The activation format for dot products with weights of `type` (see the top of this file);
 * GGML_TYPE_COUNT for a type tq_vec_dot does not handle. */
uint32_t tq_vec_dot_type(uint32_t type);

/* Reference dot product: weight row w (type, n values) · activations a already quantized
 * into tq_vec_dot_type(type). Scalar and obviously right; the SIMD paths test against it.
 * Computed as ggml's scalar kernels do (integer sums per block, then float scaling in their
 * order; F32/F16/BF16: float products summed in double). NaN for an unsupported type. */
float tq_vec_dot(uint32_t type, int64_t n, const void *w, const void *a);

/* Exact dot product: weight row dequantized, float activations, summed in double. NaN for a
 * type tq_supported rejects. */
float tq_dot_f32(uint32_t type, int64_t n, const void *w, const float *x);

#endif

/* quant.c — llama.cpp's tensor block formats: dequantize, quantize, reference dot products.
 *
 * Purpose: read the bytes of llama.cpp's GGUF files exactly (every dequantized value is
 * bit-identical to ggml's dequantize_row_*), quantize exactly as ggml's `quantize_row_*_ref`
 * do (including the iterative scale search of the K-quants), and compute the dot products the
 * way ggml's scalar (`_generic`) kernels do: integer sums inside a block, float scaling
 * outside, in the same order, so the rounding of the result matches too.
 *
 * Limits: this is the scalar reference — plain loops, no SIMD, no threads; the fast kernels are
 * tested against it. Inputs are assumed finite (NaN/inf quantize to unspecified codes, as in
 * ggml). Block pointers must be aligned like the block structs (2 bytes, 4 for Q8_K), which
 * GGUF tensor data and malloc'd buffers are. The float expressions below keep ggml's
 * evaluation order on purpose and must stay unfused (no FMA contraction: GCC's -std=c11 turns
 * it off; baseline x86-64 has no FMA anyway). tests/test_quant.c checks all of this byte for
 * byte against output of ggml's own code (tests/data/quant_ggml_ref.bin).
 *
 * Activation quantization on x86: llama.cpp's AVX/AVX2 build does not run quantize_row_q8_0_ref
 * for activations. Its SIMD version computes the inverse scale as 127/amax (not 1/(amax/127))
 * and rounds half to even (not half away from zero), so a few codes per million differ by
 * one (2 in 655k on Gaussian inputs; more on inputs with exact ties). tq_quantize follows
 * the reference; tq_quantize_x86 follows the AVX2 build.
 */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "util.h"

int tq_supported(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* ---- helpers ------------------------------------------------------------------------- */

static inline float h2f(tq_half h) { return tf16_to_f32(h); }
static inline tq_half f2h(float f) { return tf32_to_f16(f); }

/* Round to nearest, ties to even, for |v| <= 2^22: adding 1.5*2^23 leaves the integer part in
 * the low mantissa bits. The K-quants round this way (not with roundf), and so must we. */
static inline int round_even(float v) {
    float t = v + 12582912.f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Largest |x| in v[0..n) and the signed value that has it (the first one on ties). */
static float signed_absmax(const float *v, int n, float *amax_out) {
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < n; i++) {
        if (fabsf(v[i]) > amax) { amax = fabsf(v[i]); max = v[i]; }
    }
    if (amax_out) *amax_out = amax;
    return max;
}

/* Q4_K / Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: bytes 0-3 hold
 * scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 hold mins 0-3 and the top
 * bits of mins 4-7; bytes 8-11 hold the low nibbles of scale (low) and min (high) 4-7. */
static inline void kscale_get(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void kscale_set(uint8_t *s, const uint8_t *sc, const uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
}

/* 5-bit codes of a Q5_0/Q5_1 block: low nibbles in qs (first half in the low nibble, second in
 * the high one), bit 4 of code j in bit j of the 32-bit little-endian qh. */
static void q5_codes(const uint8_t qh4[4], const uint8_t *qs, int *q) {
    uint32_t qh = (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 |
                  (uint32_t)qh4[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

static void q5_pack(const int *q, uint8_t qh4[4], uint8_t *qs) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh4[k] = (uint8_t)(qh >> (8 * k));
}

/* Q5_K codes 0..31 of one super-block, in order: per 64 values, 32 low nibbles then 32 high
 * nibbles of qs, the fifth bit from qh bit 2*(j/64) (first 32) or 2*(j/64)+1 (second 32). */
static void q5k_codes(const block_q5_K *b, int *q) {
    for (int c = 0; c < 4; c++) {
        const uint8_t *qs = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (qs[l] & 0x0F) + (((b->qh[l] >> (2 * c)) & 1) << 4);
            q[64 * c + 32 + l] = (qs[l] >> 4) + (((b->qh[l] >> (2 * c + 1)) & 1) << 4);
        }
    }
}

static void q4k_codes(const block_q4_K *b, int *q) {
    for (int c = 0; c < 4; c++) {
        const uint8_t *qs = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = qs[l] & 0x0F;
            q[64 * c + 32 + l] = qs[l] >> 4;
        }
    }
}

/* Q6_K codes -32..31 of one super-block: per 128 values, ql holds low nibbles of values
 * l, l+32 (bytes 0-31 / 32-63, low nibble) and l+64, l+96 (high nibbles); qh byte l holds the
 * top 2 bits of l, l+32, l+64, l+96 at bits 0, 2, 4, 6. */
static void q6k_codes(const block_q6_K *b, int *q) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            o[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        }
    }
}

/* ---- dequantize ---------------------------------------------------------------------- */

void tq_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti || ti->blck <= 0 || n % ti->blck) {
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    int64_t nb = n / ti->blck;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case GGML_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = tf16_to_f32(s[i]);
        return;
    }
    case GGML_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = tbf16_to_f32(s[i]);
        return;
    }
    case GGML_TYPE_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < nb; i++, dst += QK4_0) {
            float d = h2f(b[i].d);
            for (int j = 0; j < 16; j++) {
                dst[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
                dst[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
    case GGML_TYPE_Q4_1: {
        const block_q4_1 *b = src;
        for (int64_t i = 0; i < nb; i++, dst += QK4_1) {
            float d = h2f(b[i].d), m = h2f(b[i].m);
            for (int j = 0; j < 16; j++) {
                dst[j] = (b[i].qs[j] & 0x0F) * d + m;
                dst[j + 16] = (b[i].qs[j] >> 4) * d + m;
            }
        }
        return;
    }
    case GGML_TYPE_Q5_0: {
        const block_q5_0 *b = src;
        int q[32];
        for (int64_t i = 0; i < nb; i++, dst += QK5_0) {
            float d = h2f(b[i].d);
            q5_codes(b[i].qh, b[i].qs, q);
            for (int j = 0; j < 32; j++) dst[j] = (q[j] - 16) * d;
        }
        return;
    }
    case GGML_TYPE_Q5_1: {
        const block_q5_1 *b = src;
        int q[32];
        for (int64_t i = 0; i < nb; i++, dst += QK5_1) {
            float d = h2f(b[i].d), m = h2f(b[i].m);
            q5_codes(b[i].qh, b[i].qs, q);
            for (int j = 0; j < 32; j++) dst[j] = q[j] * d + m;
        }
        return;
    }
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < nb; i++, dst += QK8_0) {
            float d = h2f(b[i].d);
            for (int j = 0; j < 32; j++) dst[j] = b[i].qs[j] * d;
        }
        return;
    }
    case GGML_TYPE_Q8_1: {
        const block_q8_1 *b = src;
        for (int64_t i = 0; i < nb; i++, dst += QK8_1) {
            float d = h2f(b[i].d);
            for (int j = 0; j < 32; j++) dst[j] = b[i].qs[j] * d;
        }
        return;
    }
    case GGML_TYPE_Q8_K: {
        const block_q8_K *b = src;
        for (int64_t i = 0; i < nb; i++, dst += QK_K)
            for (int j = 0; j < QK_K; j++) dst[j] = b[i].d * b[i].qs[j];
        return;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K: {
        int q[QK_K];
        for (int64_t i = 0; i < nb; i++, dst += QK_K) {
            const uint8_t *scales;
            float d, dmin;
            if (type == GGML_TYPE_Q4_K) {
                const block_q4_K *b = (const block_q4_K *)src + i;
                q4k_codes(b, q);
                scales = b->scales, d = h2f(b->d), dmin = h2f(b->dmin);
            } else {
                const block_q5_K *b = (const block_q5_K *)src + i;
                q5k_codes(b, q);
                scales = b->scales, d = h2f(b->d), dmin = h2f(b->dmin);
            }
            for (int s = 0; s < 8; s++) {
                int sc, mn;
                kscale_get(scales, s, &sc, &mn);
                float ds = d * sc, ms = dmin * mn; /* x = (d*sc)*q - dmin*m, as ggml */
                for (int l = 0; l < 32; l++) dst[32 * s + l] = ds * q[32 * s + l] - ms;
            }
        }
        return;
    }
    case GGML_TYPE_Q6_K: {
        const block_q6_K *b = src;
        int q[QK_K];
        for (int64_t i = 0; i < nb; i++, dst += QK_K) {
            float d = h2f(b[i].d);
            q6k_codes(&b[i], q);
            for (int j = 0; j < QK_K; j++) dst[j] = d * b[i].scales[j / 16] * q[j];
        }
        return;
    }
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
}

/* ---- K-quant scale search (facts from ggml-quants.c, written anew) --------------------- */

/* Codes L[i] in 0..nmax and (scale, min) so that x ≈ scale*L + min with min <= 0, minimising
 * the weighted squared error: start from the plain min/max grid, then try nstep+1 slightly
 * different grid spacings, refit scale and min by weighted least squares for each, keep the
 * best. As in ggml, once a refit wins, its min also shifts the grid of the later tries (both
 * the origin x - min and the spacing over max - min); matching that matters for byte
 * equality. Returns the scale; *neg_min gets -min (>= 0). Laux is scratch of n bytes. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sw = w[0], sx = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float inv = nmax / (max - min);
    float scale = 1 / inv;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(round_even(inv * (x[i] - min)), 0, nmax);
        float e = scale * L[i] + min - x[i];
        best += w[i] * (e * e);
    }
    for (int step = 0; step <= nstep; step++) {
        inv = (rmin + rdelta * step + nmax) / (max - min);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_even(inv * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sxl += w[i] * l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (!(det > 0)) continue;
        float s = (sw * sxl - sx * sl) / det;
        float m = (sl2 * sx - sl * sxl) / det;
        if (m > 0) { /* the format has no positive min: refit the scale alone */
            m = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = s * Laux[i] + m - x[i];
            err += w[i] * (e * e);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = s;
            min = m;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric codes in -nmax..nmax-1 (stored in L offset by nmax) with a scale chosen by
 * weighted (w = x^2) least squares over 19 grid spacings around nmax/max. Returns the scale
 * (negative when the signed max is positive, as in ggml: the extreme value lands on -nmax). */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    float max = signed_absmax(x, n, &amax);
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float inv = -nmax / max;
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(round_even(inv * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    float scale = sl2 ? slx / sl2 : 0.0f;
    float best = scale * slx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        inv = -(nmax + 0.1f * step) / max;
        slx = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(round_even(inv * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            slx += w * x[i] * l;
            sl2 += w * l * l;
        }
        if (sl2 > 0 && slx * slx > best * sl2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(round_even(inv * x[i]), -nmax, nmax - 1));
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    return scale;
}

/* Q4_K (nmax 15) and Q5_K (nmax 31) share everything but the code width and search range. */
static void quantize_kq45(const float *x, uint8_t scales_out[K_SCALE_SIZE], tq_half *d_out,
                          tq_half *dmin_out, uint8_t L[QK_K], int nmax) {
    float scales[8], mins[8], w[32];
    uint8_t Laux[32], ls[8], lm[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sx2 = 0;
        for (int l = 0; l < 32; l++) sx2 += xs[l] * xs[l];
        float av = sqrtf(sx2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        if (nmax == 15)
            scales[j] = fit_scale_min(32, 15, xs, w, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
        else
            scales[j] = fit_scale_min(32, 31, xs, w, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        /* ggml stores the rounded value in a uint8_t before clamping to 63 */
        ls[j] = (uint8_t)TOME_MIN(63, (uint8_t)round_even(inv_scale * scales[j]));
        lm[j] = (uint8_t)TOME_MIN(63, (uint8_t)round_even(inv_min * mins[j]));
    }
    kscale_set(scales_out, ls, lm);
    *d_out = f2h(max_scale / 63.f);
    *dmin_out = f2h(max_min / 63.f);
    /* requantize against the scales as stored (6-bit, fp16) so codes match the decoder */
    float d = h2f(*d_out), dmin = h2f(*dmin_out);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        kscale_get(scales_out, j, &sc, &mn);
        float ds = d * sc;
        if (!ds) continue; /* codes stay as the search left them, as in ggml */
        float dm = dmin * mn;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(round_even((x[32 * j + l] + dm) / ds), 0, nmax);
    }
}

static void quantize_q6k_block(const float *x, block_q6_K *y) {
    float scales[16];
    int8_t L[QK_K]; /* codes 0..63 (value + 32) */
    float max_scale = 0, max_abs = 0;
    for (int s = 0; s < 16; s++) {
        scales[s] = fit_scale_sym(16, 32, x + 16 * s, L + 16 * s);
        if (fabsf(scales[s]) > max_abs) { max_abs = fabsf(scales[s]); max_scale = scales[s]; }
    }
    memset(y, 0, sizeof *y);
    if (max_abs < 1e-15f) return; /* all (near) zero: d = 0 */
    float inv = -128.f / max_scale;
    y->d = f2h(1 / inv);
    for (int s = 0; s < 16; s++) y->scales[s] = (int8_t)TOME_MIN(127, round_even(inv * scales[s]));
    /* codes against the stored scales; a sub-block whose scale rounds to 0 keeps the codes of
     * its own search, as in ggml (they decode to 0 either way, but the bytes match) */
    float d = h2f(y->d);
    for (int s = 0; s < 16; s++) {
        float ds = d * y->scales[s];
        if (!ds) continue;
        for (int l = 0; l < 16; l++)
            L[16 * s + l] = (int8_t)(clampi(round_even(x[16 * s + l] / ds), -32, 31) + 32);
    }
    for (int h = 0; h < 2; h++) {
        const int8_t *c = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            int q0 = c[l], q1 = c[l + 32], q2 = c[l + 64], q3 = c[l + 96];
            ql[l] = (uint8_t)((q0 & 0x0F) | ((q2 & 0x0F) << 4));
            ql[l + 32] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
            qh[l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
        }
    }
}

/* ---- quantize ------------------------------------------------------------------------ */

/* Q8_0 / Q8_1 block: d = amax/127 and codes round(x*id). `x86` selects llama.cpp's AVX2
 * activation path (id = 127/amax, ties to even) instead of the reference (id = 1/d, roundf). */
static int8_t q8_code(float v, int x86) {
    return (int8_t)(x86 ? nearbyintf(v) : roundf(v)); /* nearbyintf: default mode, ties even */
}

static void quantize_q8_0_block(const float *x, block_q8_0 *y, int x86) {
    float amax = 0.f;
    for (int j = 0; j < 32; j++) amax = TOME_MAX(amax, fabsf(x[j]));
    float d = amax / 127;
    float id = x86 ? (amax != 0.f ? 127.f / amax : 0.f) : (d ? 1.0f / d : 0.0f);
    y->d = f2h(d);
    for (int j = 0; j < 32; j++) y->qs[j] = q8_code(x[j] * id, x86);
}

static void quantize_q8_1_block(const float *x, block_q8_1 *y, int x86) {
    float amax = 0.f;
    for (int j = 0; j < 32; j++) amax = TOME_MAX(amax, fabsf(x[j]));
    float d = amax / 127;
    float id = x86 ? (amax != 0.f ? 127.f / amax : 0.f) : (d ? 1.0f / d : 0.0f);
    y->d = f2h(d);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        y->qs[j] = q8_code(x[j] * id, x86);
        sum += y->qs[j];
    }
    y->s = f2h(sum * d);
}

static void quantize_q8_k_block(const float *x, block_q8_K *y) {
    float amax;
    float max = signed_absmax(x, QK_K, &amax);
    memset(y, 0, sizeof *y); /* ggml leaves bsums unset for an all-zero block; we zero them */
    if (!amax) return;
    float inv = -127.f / max;
    for (int j = 0; j < QK_K; j++) y->qs[j] = (int8_t)TOME_MIN(127, round_even(inv * x[j]));
    for (int s = 0; s < QK_K / 16; s++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += y->qs[16 * s + l];
        y->bsums[s] = (int16_t)sum;
    }
    y->d = 1 / inv;
}

static size_t quantize_impl(uint32_t type, const float *x, void *dst, int64_t n, int x86) {
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti || ti->blck <= 0 || n % ti->blck) return 0;
    int64_t nb = n / ti->blck;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    case GGML_TYPE_F16: {
        uint16_t *o = dst;
        for (int64_t i = 0; i < n; i++) o[i] = tf32_to_f16(x[i]);
        break;
    }
    case GGML_TYPE_BF16: {
        uint16_t *o = dst;
        for (int64_t i = 0; i < n; i++) o[i] = tf32_to_bf16(x[i]);
        break;
    }
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q5_0: {
        /* d = signed max / -2^(bits-1): the extreme value maps to code 0 exactly */
        int half = type == GGML_TYPE_Q4_0 ? 8 : 16, top = 2 * half - 1;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            float max = signed_absmax(x, 32, NULL);
            float d = max / -half;
            float id = d ? 1.0f / d : 0.0f;
            int q[32];
            /* truncation of x*id + half + 0.5 (never negative here) rounds half up */
            for (int j = 0; j < 32; j++) q[j] = TOME_MIN(top, (int)(x[j] * id + (half + 0.5f)));
            if (type == GGML_TYPE_Q4_0) {
                block_q4_0 *y = (block_q4_0 *)dst + i;
                y->d = f2h(d);
                for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
            } else {
                block_q5_0 *y = (block_q5_0 *)dst + i;
                y->d = f2h(d);
                q5_pack(q, y->qh, y->qs);
            }
        }
        break;
    }
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_1: {
        int top = type == GGML_TYPE_Q4_1 ? 15 : 31;
        for (int64_t i = 0; i < nb; i++, x += 32) {
            float lo = FLT_MAX, hi = -FLT_MAX;
            for (int j = 0; j < 32; j++) {
                if (x[j] < lo) lo = x[j];
                if (x[j] > hi) hi = x[j];
            }
            float d = (hi - lo) / top;
            float id = d ? 1.0f / d : 0.0f;
            int q[32];
            for (int j = 0; j < 32; j++) q[j] = TOME_MIN(top, (int)((x[j] - lo) * id + 0.5f));
            if (type == GGML_TYPE_Q4_1) {
                block_q4_1 *y = (block_q4_1 *)dst + i;
                y->d = f2h(d), y->m = f2h(lo);
                for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
            } else {
                block_q5_1 *y = (block_q5_1 *)dst + i;
                y->d = f2h(d), y->m = f2h(lo);
                q5_pack(q, y->qh, y->qs);
            }
        }
        break;
    }
    case GGML_TYPE_Q8_0:
        for (int64_t i = 0; i < nb; i++)
            quantize_q8_0_block(x + 32 * i, (block_q8_0 *)dst + i, x86);
        break;
    case GGML_TYPE_Q8_1:
        for (int64_t i = 0; i < nb; i++)
            quantize_q8_1_block(x + 32 * i, (block_q8_1 *)dst + i, x86);
        break;
    case GGML_TYPE_Q8_K:
        for (int64_t i = 0; i < nb; i++) quantize_q8_k_block(x + QK_K * i, (block_q8_K *)dst + i);
        break;
    case GGML_TYPE_Q4_K:
        for (int64_t i = 0; i < nb; i++, x += QK_K) {
            block_q4_K *y = (block_q4_K *)dst + i;
            uint8_t L[QK_K];
            quantize_kq45(x, y->scales, &y->d, &y->dmin, L, 15);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                    y->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        }
        break;
    case GGML_TYPE_Q5_K:
        for (int64_t i = 0; i < nb; i++, x += QK_K) {
            block_q5_K *y = (block_q5_K *)dst + i;
            uint8_t L[QK_K];
            quantize_kq45(x, y->scales, &y->d, &y->dmin, L, 31);
            memset(y->qh, 0, sizeof y->qh);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    int a = L[64 * c + l], b = L[64 * c + 32 + l];
                    y->qs[32 * c + l] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
                    y->qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
                }
        }
        break;
    case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < nb; i++) quantize_q6k_block(x + QK_K * i, (block_q6_K *)dst + i);
        break;
    default:
        return 0;
    }
    return (size_t)ggml_row_size(type, n);
}

size_t tq_quantize(uint32_t type, const float *src, void *dst, int64_t n) {
    return quantize_impl(type, src, dst, n, 0);
}

size_t tq_quantize_x86(uint32_t type, const float *src, void *dst, int64_t n) {
    return quantize_impl(type, src, dst, n, 1);
}

/* ---- dot products -------------------------------------------------------------------- */

uint32_t tq_vec_dot_type(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: return GGML_TYPE_F32;
    case GGML_TYPE_F16: return GGML_TYPE_F16;
    case GGML_TYPE_BF16: return GGML_TYPE_BF16;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: return GGML_TYPE_Q8_0;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: return GGML_TYPE_Q8_1;
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_K;
    default: return GGML_TYPE_COUNT;
    }
}

/* Sub-blocked K-quant dot of one super-block: codes q (weights, 0..63 or -32..31), q8 the
 * activations, scale[s] per group of `sub` values. Accumulated into 8 int32 lanes exactly as
 * ggml's generic kernel does, so the float rounding that follows matches too. */
static void kdot_lanes(const int *q, const int8_t *q8, const int *scale, int sub,
                       int32_t lanes[8]) {
    memset(lanes, 0, 8 * sizeof lanes[0]);
    for (int j = 0; j < QK_K; j++) lanes[j % 8] += scale[j / sub] * (q8[j] * q[j]);
}

float tq_vec_dot(uint32_t type, int64_t n, const void *w, const void *a) {
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti || ti->blck <= 0 || n % ti->blck || tq_vec_dot_type(type) == GGML_TYPE_COUNT)
        return NAN;
    int64_t nb = n / ti->blck;
    switch (type) {
    case GGML_TYPE_F32: { /* float products, double sum: ggml's scalar vec_dot_f32 */
        const float *x = w, *y = a;
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)(x[i] * y[i]);
        return (float)s;
    }
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: { /* products of two halves are exact in float */
        const uint16_t *x = w, *y = a;
        double s = 0;
        if (type == GGML_TYPE_F16)
            for (int64_t i = 0; i < n; i++) s += (double)(tf16_to_f32(x[i]) * tf16_to_f32(y[i]));
        else
            for (int64_t i = 0; i < n; i++) s += (double)(tbf16_to_f32(x[i]) * tbf16_to_f32(y[i]));
        return (float)s;
    }
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *y = a;
        float sumf = 0;
        for (int64_t i = 0; i < nb; i++) {
            int q[32], sumi = 0;
            float dx;
            if (type == GGML_TYPE_Q4_0) {
                const block_q4_0 *x = (const block_q4_0 *)w + i;
                for (int j = 0; j < 16; j++)
                    q[j] = (x->qs[j] & 0x0F) - 8, q[j + 16] = (x->qs[j] >> 4) - 8;
                dx = h2f(x->d);
            } else if (type == GGML_TYPE_Q5_0) {
                const block_q5_0 *x = (const block_q5_0 *)w + i;
                q5_codes(x->qh, x->qs, q);
                for (int j = 0; j < 32; j++) q[j] -= 16;
                dx = h2f(x->d);
            } else {
                const block_q8_0 *x = (const block_q8_0 *)w + i;
                for (int j = 0; j < 32; j++) q[j] = x->qs[j];
                dx = h2f(x->d);
            }
            for (int j = 0; j < 32; j++) sumi += q[j] * y[i].qs[j];
            /* ggml's association differs per type; float rounding follows it */
            if (type == GGML_TYPE_Q4_0) sumf += sumi * dx * h2f(y[i].d);
            else if (type == GGML_TYPE_Q5_0) sumf += (dx * h2f(y[i].d)) * sumi;
            else sumf += sumi * (dx * h2f(y[i].d));
        }
        return sumf;
    }
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_1: {
        const block_q8_1 *y = a;
        float sumf = 0;
        for (int64_t i = 0; i < nb; i++) {
            int q[32], sumi = 0;
            float dx, mx;
            if (type == GGML_TYPE_Q4_1) {
                const block_q4_1 *x = (const block_q4_1 *)w + i;
                for (int j = 0; j < 16; j++) q[j] = x->qs[j] & 0x0F, q[j + 16] = x->qs[j] >> 4;
                dx = h2f(x->d), mx = h2f(x->m);
            } else {
                const block_q5_1 *x = (const block_q5_1 *)w + i;
                q5_codes(x->qh, x->qs, q);
                dx = h2f(x->d), mx = h2f(x->m);
            }
            for (int j = 0; j < 32; j++) sumi += q[j] * y[i].qs[j];
            /* the min term uses s = d*sum(q8) stored (in fp16) with the activations */
            sumf += (dx * h2f(y[i].d)) * sumi + mx * h2f(y[i].s);
        }
        return sumf;
    }
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: {
        const block_q8_K *y = a;
        float sums[8] = {0}, sumf = 0;
        int q[QK_K], scale[16];
        int32_t lanes[8];
        for (int64_t i = 0; i < nb; i++) {
            float dx, dmin = 0;
            int summ = 0;
            if (type == GGML_TYPE_Q6_K) {
                const block_q6_K *x = (const block_q6_K *)w + i;
                q6k_codes(x, q);
                for (int s = 0; s < 16; s++) scale[s] = x->scales[s];
                kdot_lanes(q, y[i].qs, scale, 16, lanes);
                dx = h2f(x->d);
            } else {
                const uint8_t *sc8;
                if (type == GGML_TYPE_Q4_K) {
                    const block_q4_K *x = (const block_q4_K *)w + i;
                    q4k_codes(x, q);
                    sc8 = x->scales, dx = h2f(x->d), dmin = h2f(x->dmin);
                } else {
                    const block_q5_K *x = (const block_q5_K *)w + i;
                    q5k_codes(x, q);
                    sc8 = x->scales, dx = h2f(x->d), dmin = h2f(x->dmin);
                }
                for (int s = 0; s < 8; s++) {
                    int mn;
                    kscale_get(sc8, s, &scale[s], &mn);
                    /* the min's contribution comes from the precomputed 16-value sums */
                    summ += mn * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
                }
                kdot_lanes(q, y[i].qs, scale, 32, lanes);
            }
            float d = dx * y[i].d;
            for (int l = 0; l < 8; l++) sums[l] += d * lanes[l];
            if (type != GGML_TYPE_Q6_K) sumf -= (dmin * y[i].d) * summ;
        }
        for (int l = 0; l < 8; l++) sumf += sums[l];
        return sumf;
    }
    default:
        return NAN;
    }
}

float tq_dot_f32(uint32_t type, int64_t n, const void *w, const float *x) {
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti || ti->blck <= 0 || n % ti->blck || !tq_supported(type)) return NAN;
    /* dequantize a block at a time (a row may be long; no allocation) */
    float buf[QK_K];
    int64_t step = ti->blck == 1 ? QK_K : ti->blck;
    double s = 0;
    for (int64_t i = 0; i < n; i += step) {
        int64_t m = TOME_MIN(step, n - i);
        const void *src = (const uint8_t *)w + ggml_row_size(type, i);
        tq_dequantize(type, src, buf, m);
        for (int64_t j = 0; j < m; j++) s += (double)buf[j] * x[i + j];
    }
    return (float)s;
}

/* rope.c — see rope.h. Tables are built in double from the formulas of each method; the only
 * per-token work is one double sincos per pair (shared by every head of q and k) and the
 * float rotation.
 *
 * Sources for the formulas (facts only): llama.cpp's ggml rope (rope_yarn, rope_yarn_ramp,
 * ggml_rope_yarn_corr_dims) for YaRN and for how freq_factors and attn_factor enter; Hugging
 * Face's rope init functions for dynamic NTK, LongRoPE and llama3 (_compute_llama3_parameters).
 */
#include "rope.h"

#include <math.h>
#include <string.h>

void rope_config_init(rope_config *c, int dim, double base) {
    memset(c, 0, sizeof *c);
    c->method = ROPE_SCALING_NONE;
    c->dim = dim;
    c->base = base;
    c->factor = 1.0;
    c->ext_factor = -1.0;
    c->beta_fast = 32.0;
    c->beta_slow = 1.0;
    c->low_freq_factor = 1.0;
    c->high_freq_factor = 4.0;
    c->attn_factor = 1.0;
}

void rope_config_from_hparams(rope_config *c, const tome_hparams *hp, const float *rope_freqs,
                              const float *factors_long, const float *factors_short) {
    rope_config_init(c, hp->rope_dim, hp->rope_base);
    c->method = hp->rope_scaling;
    c->neox = hp->rope_neox;
    c->factor = hp->rope_factor > 0 ? hp->rope_factor : 1.0;
    c->orig_ctx = hp->rope_orig_ctx > 0 ? hp->rope_orig_ctx : hp->n_ctx_train;
    c->ctx_train = hp->n_ctx_train;
    c->ext_factor = hp->yarn_ext_factor;
    if (hp->yarn_beta_fast > 0) c->beta_fast = hp->yarn_beta_fast;
    if (hp->yarn_beta_slow > 0) c->beta_slow = hp->yarn_beta_slow;
    /* llama.cpp multiplies the two: yarn_attn_factor (context) * rope.scaling.attn_factor */
    double af = (hp->rope_attn_factor > 0 ? hp->rope_attn_factor : 1.0) *
                (hp->yarn_attn_factor > 0 ? hp->yarn_attn_factor : 1.0);
    c->attn_factor = af;
    c->freq_factors = rope_freqs;
    c->factors_long = factors_long;
    c->factors_short = factors_short;
}

/* Pair index at which a frequency makes n_rot full turns over orig_ctx positions (YaRN). */
static double yarn_corr_dim(int d, int orig_ctx, double n_rot, double base) {
    return d * log(orig_ctx / (n_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

int rope_table_build(rope_table *t, const rope_config *c, int64_t ctx_len, terr *e) {
    memset(t, 0, sizeof *t);
    const int d = c->dim, half = c->dim / 2;
    if (d <= 0 || d % 2 || d > ROPE_MAX_DIM)
        return terr_set(e, TOME_EINPUT, "rope: dim %d must be even and in [2, %d]", d,
                        ROPE_MAX_DIM);
    if (!(c->base > 1.0)) return terr_set(e, TOME_EINPUT, "rope: base %g must be > 1", c->base);
    if (!(c->factor > 0.0))
        return terr_set(e, TOME_EINPUT, "rope: scaling factor %g must be > 0", c->factor);
    int needs_orig = c->method == ROPE_SCALING_DYNAMIC || c->method == ROPE_SCALING_YARN ||
                     c->method == ROPE_SCALING_LONGROPE ||
                     (c->method == ROPE_SCALING_LLAMA3 && !c->freq_factors);
    if (needs_orig && c->orig_ctx <= 0)
        return terr_set(e, TOME_EINPUT, "rope: %s scaling needs an original context length",
                        rope_scaling_name(c->method));
    t->dim = d;
    t->neox = c->neox;

    double base = c->base, mscale = c->attn_factor > 0 ? c->attn_factor : 1.0;
    if (c->method == ROPE_SCALING_NTK) {
        base *= pow(c->factor, (double)d / (d - 2));
    } else if (c->method == ROPE_SCALING_DYNAMIC && ctx_len > c->orig_ctx) {
        double s = c->factor;
        base *= pow(s * (double)ctx_len / c->orig_ctx - (s - 1.0), (double)d / (d - 2));
    }

    /* Per-pair divisor of the frequency: GGUF's freq_factors, LongRoPE's long/short set, or
     * llama3's computed factors. */
    const float *ff = c->freq_factors;
    if (c->method == ROPE_SCALING_LONGROPE) {
        int use_long = ctx_len > c->orig_ctx;
        ff = use_long ? c->factors_long : c->factors_short;
        if (!ff)
            return terr_set(e, TOME_EINPUT, "rope: LongRoPE needs rope_factors_%s",
                            use_long ? "long" : "short");
        double s = c->factor > 1.0 ? c->factor
                   : c->ctx_train > c->orig_ctx ? (double)c->ctx_train / c->orig_ctx : 1.0;
        int given = c->attn_factor > 0 && c->attn_factor != 1.0;
        if (!given) mscale = s > 1.0 ? sqrt(1.0 + log(s) / log((double)c->orig_ctx)) : 1.0;
    }

    double low = 0, high = 0, ext = 0, fscale = 1.0 / c->factor;
    if (c->method == ROPE_SCALING_YARN) {
        ext = c->ext_factor < 0 ? 1.0 : c->ext_factor;
        low = fmax(0.0, floor(yarn_corr_dim(d, c->orig_ctx, c->beta_fast, base)));
        high = fmin(d - 1.0, ceil(yarn_corr_dim(d, c->orig_ctx, c->beta_slow, base)));
        if (ext != 0.0) mscale *= 1.0 + 0.1 * log(c->factor);
    }

    for (int i = 0; i < half; i++) {
        double f = pow(base, -2.0 * i / d);
        if (ff) {
            f /= ff[i];
        } else if (c->method == ROPE_SCALING_LLAMA3) {
            double wl = 2.0 * M_PI / f;
            double low_wl = c->orig_ctx / c->low_freq_factor;
            double high_wl = c->orig_ctx / c->high_freq_factor;
            if (wl > low_wl) {
                f /= c->factor;
            } else if (wl >= high_wl) {
                double sm = (c->orig_ctx / wl - c->low_freq_factor) /
                            (c->high_freq_factor - c->low_freq_factor);
                f = (1.0 - sm) * f / c->factor + sm * f;
            }
        }
        switch (c->method) {
        case ROPE_SCALING_LINEAR: f *= fscale; break;
        case ROPE_SCALING_YARN: {
            /* ramp = 1 for high-frequency pairs (i <= low: keep extrapolated frequency), 0 for
             * low-frequency pairs (i >= high: interpolate by 1/s), linear between. */
            double y = (i - low) / fmax(0.001, high - low);
            double ramp = 1.0 - fmin(1.0, fmax(0.0, y));
            double mix = ramp * ext;
            f = f * fscale * (1.0 - mix) + f * mix;
            break;
        }
        default: break;
        }
        t->freq[i] = f;
    }
    t->mscale = (float)mscale;
    return 0;
}

void rope_cos_sin(const rope_table *t, int64_t pos, float *cs) {
    const int half = t->dim / 2;
    const double m = t->mscale;
    for (int i = 0; i < half; i++) {
        /* pos * freq is exact to ~1e-16 relative in double: at pos 1e7 the absolute error is
         * ~1e-9 rad; glibc's sin/cos reduce the argument exactly. */
        double a = (double)pos * t->freq[i], s, c;
        sincos(a, &s, &c);
        cs[2 * i] = (float)(c * m);
        cs[2 * i + 1] = (float)(s * m);
    }
}

void rope_apply_cs(const float *cs, int dim, float *x, int n_heads, int head_dim, int neox) {
    const int half = dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (neox) {
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1], a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = a * s + b * c;
            }
        } else {
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = cs[2 * i + 1], a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
}

void rope_apply(const rope_table *t, float *x, int n_heads, int head_dim, int64_t pos, int neox) {
    float cs[ROPE_MAX_DIM];
    rope_cos_sin(t, pos, cs);
    rope_apply_cs(cs, t->dim, x, n_heads, head_dim, neox);
}

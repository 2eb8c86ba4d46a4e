/* rope.h — rotary position embeddings: per-dimension frequency tables and their application.
 *
 * Every RoPE scaling method tome knows (none, linear, NTK-aware, dynamic NTK, YaRN, LongRoPE,
 * llama3) reduces to the same two things once the model and the context length are fixed:
 * one effective angular frequency per rotated pair (radians per position) and one magnitude
 * factor `mscale` that multiplies cos and sin (llama.cpp's `attn_factor` semantics: q and k are
 * both scaled, so attention logits grow by mscale^2). rope_table_build computes them in double;
 * kernels only ever see the table.
 *
 * Positions up to ~10M keep full accuracy: the angle pos * freq is formed and reduced in double
 * before sin/cos (float32 loses whole radians past ~1M). A GPU kernel that wants to stay in
 * float can split pos = hi * 2^k + lo and use rope_table's double freq to precompute
 * (hi * 2^k * freq) mod 2pi on the host; the table carries the doubles for that reason.
 *
 * Limits: rope_dim <= ROPE_MAX_DIM and even; dims [rope_dim, head_dim) pass through unchanged.
 * The table is a plain value (no heap): copy it, share it between threads read-only.
 */
#ifndef TOME_ROPE_H
#define TOME_ROPE_H

#include <stdint.h>

#include "arch.h"
#include "util.h"

#define ROPE_MAX_DIM 512 /* rotated dims; pairs = ROPE_MAX_DIM / 2 */

/* Everything that determines a table. Fill with rope_config_init, then change what differs,
 * or take it from a model with rope_config_from_hparams. */
typedef struct rope_config {
    rope_scaling_type method;
    int dim;                 /* rotated dims d (rope_dim), even, <= ROPE_MAX_DIM */
    int neox;                /* 0: pairs (x[2i], x[2i+1]); 1: pairs (x[i], x[i + d/2]) */
    double base;             /* theta base, e.g. 10000, 500000 */
    double factor;           /* s: context extension factor (linear, NTK, dynamic, YaRN, llama3) */
    int orig_ctx;            /* original (pre-extension) training context */
    int ctx_train;           /* extended training context (LongRoPE: s = ctx_train / orig_ctx) */
    double ext_factor;       /* YaRN ramp mix; < 0 = derive (1 for YaRN, else 0), as llama.cpp */
    double beta_fast;        /* YaRN: rotations where extrapolation ends, default 32 */
    double beta_slow;        /* YaRN: rotations where interpolation starts, default 1 */
    double low_freq_factor;  /* llama3: default 1 */
    double high_freq_factor; /* llama3: default 4 */
    double attn_factor;      /* base magnitude multiplier (GGUF rope.scaling.attn_factor), default
                                1; for LongRoPE <= 0 or 1 means derive sqrt(1 + ln s / ln orig) */
    const float *freq_factors;  /* [d/2] or NULL: divides each frequency (GGUF rope_freqs.weight;
                                   for llama3 NULL means compute from the constants above) */
    const float *factors_long;  /* [d/2] LongRoPE factors used past orig_ctx */
    const float *factors_short; /* [d/2] LongRoPE factors used up to orig_ctx */
} rope_config;

/* A built table: what rope_apply needs. */
typedef struct rope_table {
    int dim;                        /* rotated dims d */
    int neox;
    float mscale;                   /* multiplies cos and sin */
    double freq[ROPE_MAX_DIM / 2];  /* [d/2] effective radians per position of pair i */
} rope_table;

/* Defaults: method NONE, the given dim and base, factor 1, YaRN betas 32/1, llama3 factors
 * 1/4, attn_factor 1, ext_factor -1, orig_ctx = ctx_train = 0 (set them for scaled methods). */
void rope_config_init(rope_config *c, int dim, double base);

/* Config for a loaded model. The optional per-dimension arrays ([rope_dim/2] floats each, NULL
 * when the tensor is absent) are GGUF rope_freqs.weight and rope_factors_{long,short}.weight;
 * the pointers are kept, so they must outlive the config and any rope_table_build call. */
void rope_config_from_hparams(rope_config *c, const tome_hparams *hp, const float *rope_freqs,
                              const float *factors_long, const float *factors_short);

/* Builds the table for a context of ctx_len tokens. ctx_len matters only for dynamic NTK (base
 * grows once ctx_len > orig_ctx) and LongRoPE (long factors once ctx_len > orig_ctx); pass the
 * context size the engine runs with (llama.cpp semantics: the table then stays fixed for the
 * whole run, so cached keys stay consistent). Returns 0, or TOME_EINPUT naming the bad field
 * (odd or too large dim, base <= 1, factor <= 0, LongRoPE without factors, ...). */
int rope_table_build(rope_table *t, const rope_config *c, int64_t ctx_len, terr *e);

/* cs[2i] = cos(pos * freq[i]) * mscale, cs[2i+1] = sin(...) * mscale for i < d/2; the angle is
 * formed and reduced in double. cs holds d floats. Compute once per position, apply to every
 * q and k head with rope_apply_cs. */
void rope_cos_sin(const rope_table *t, int64_t pos, float *cs);

/* Rotates x[n_heads][head_dim] in place with precomputed cs (from rope_cos_sin), pairs chosen
 * by neox (see rope_config). head_dim >= t->dim; trailing dims are left alone. */
void rope_apply_cs(const float *cs, int dim, float *x, int n_heads, int head_dim, int neox);

/* rope_cos_sin + rope_apply_cs for one position. neox overrides t->neox (the model decides). */
void rope_apply(const rope_table *t, float *x, int n_heads, int head_dim, int64_t pos, int neox);

#endif

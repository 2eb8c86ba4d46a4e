/* sampler.h — picks the next token from a row of logits: greedy, or temperature with top-k,
 * top-p, min-p and a repetition penalty, drawn with a seeded RNG.
 *
 * Order (as llama.cpp's default chain): repetition penalty → top-k → softmax with temperature
 * → top-p → min-p → draw. Deterministic for a given seed and sequence of calls. A sampler holds
 * scratch space for n_vocab candidates and the recent-token history, so one sampler serves one
 * sequence; it is not thread-safe.
 */
#ifndef TOME_SAMPLER_H
#define TOME_SAMPLER_H

#include <stdint.h>

#include "util.h"

typedef struct sampler_params {
    float temp;         /* <= 0: greedy (argmax, lowest id on ties); default 0.8 */
    int top_k;          /* keep the k most likely; <= 0 or >= n_vocab: off; default 40 */
    float top_p;        /* keep the smallest prefix with mass >= top_p (0: the best token only);
                           1: off; default 0.95 */
    float min_p;        /* drop p < min_p * p_max; <= 0: off; default 0.05 */
    float rep_penalty;  /* divide positive / multiply negative logits of recent tokens; 1: off */
    int rep_last_n;     /* how many recent tokens the penalty looks at; default 64; 0: off */
    uint64_t seed;      /* RNG seed; default 0 (callers usually pass --seed or the time) */
} sampler_params;

typedef struct sampler sampler;

/* llama.cpp-like defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, rep_penalty 1.0,
 * rep_last_n 64, seed 0. */
sampler_params sampler_defaults(void);

/* Checks the parameters for values that make no sense (NaN, negative temperature is fine and
 * means greedy, top_p or min_p outside [0, 1], rep_penalty <= 0 or infinite, negative
 * rep_last_n). Returns 0 or TOME_EFLAGS with e naming the field. */
int sampler_params_check(const sampler_params *p, terr *e);

/* A sampler for a vocabulary of n_vocab tokens (the parameters are copied). NULL when out of
 * memory or n_vocab <= 0. Free with sampler_free. */
sampler *sampler_new(const sampler_params *p, int n_vocab);

/* Picks a token id in [0, n_vocab) from logits[n_vocab] (not modified). NaN logits are never
 * picked unless every logit is NaN (then 0). Does not record the token: call sampler_accept. */
int32_t sampler_sample(sampler *s, const float *logits);

/* Records a token (prompt or generated) in the history the repetition penalty looks at. */
void sampler_accept(sampler *s, int32_t id);

/* Clears the history and reseeds the RNG with the original seed. */
void sampler_reset(sampler *s);

void sampler_free(sampler *s);

#endif

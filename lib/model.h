/* model.h — a loaded model: hyper-parameters, weights bound by name, and forward().
 *
 * model_load maps the GGUF, reads the hyper-parameters (arch.h) and binds every tensor the
 * architecture needs, checking each one's name, type and shape (expected vs actual in the
 * error). Weights stay in the mapping: tome_weight views, never copies. forward() is the one
 * implementation of the transformer block for llama (Llama 2/3, Mistral), qwen2 (Q/K/V
 * biases), qwen3 (per-head Q/K RMSNorm) and phi3 (fused QKV and gate-up), written over the
 * backend ops of backend.h. It processes a batch of consecutive positions of one sequence.
 */
#ifndef TOME_MODEL_H
#define TOME_MODEL_H

#include <stdint.h>

#include "arch.h"
#include "backend.h"
#include "gguf.h"
#include "rope.h"
#include "util.h"

/* One transformer block. Shapes are [rows][cols] = [output width][input width]. */
typedef struct tome_layer {
    tome_weight attn_norm;        /* F32 [n_embd] */
    tome_weight wq;               /* [n_head*head_dim][n_embd] (phi3: rows 0.. of attn_qkv) */
    tome_weight wk;               /* [n_head_kv*head_dim][n_embd] */
    tome_weight wv;               /* [n_head_kv*head_dim_v][n_embd] */
    tome_weight bq, bk, bv;       /* F32 biases [rows of wq/wk/wv] (qwen2); data NULL if absent */
    tome_weight q_norm, k_norm;   /* F32 [head_dim] per-head norms (qwen3); data NULL if absent */
    tome_weight wo;               /* [n_embd][n_head*head_dim_v] */
    tome_weight ffn_norm;         /* F32 [n_embd] */
    tome_weight w_gate;           /* [n_ff][n_embd] (phi3: rows 0..n_ff of ffn_up) */
    tome_weight w_up;             /* [n_ff][n_embd] (phi3: rows n_ff..2n_ff of ffn_up) */
    tome_weight w_down;           /* [n_embd][n_ff] */
} tome_layer;

typedef struct tome_model {
    gguf *g;                 /* the mapping the weights point into (owned) */
    tome_hparams hp;
    tome_weight tok_embd;    /* [n_vocab][n_embd] */
    tome_weight output_norm; /* F32 [n_embd] */
    tome_weight output;      /* [n_vocab][n_embd]; token_embd when tied */
    const float *rope_freqs; /* [rope_dim/2] llama3 factors (rope_freqs.weight), or NULL */
    const float *rope_long, *rope_short; /* [rope_dim/2] LongRoPE factors, or NULL */
    tome_layer *layers;      /* [n_layer] */
} tome_model;

/* Opens path and binds its weights. Errors: TOME_EINPUT (missing/malformed file, a missing
 * tensor or one of the wrong shape: expected vs actual), TOME_EUNSUPPORTED (an architecture
 * other than the supported ones, listed; a tensor type tome cannot compute, named).
 * On success *out is freed with model_free. */
int model_load(tome_model **out, const char *path, terr *e);

/* Binds the weights of an already open GGUF (takes ownership of g, also on failure). */
int model_from_gguf(tome_model **out, gguf *g, terr *e);

void model_free(tome_model *m);

/* The RoPE table this model uses for a context of n_ctx positions. */
int model_rope_table(const tome_model *m, int n_ctx, rope_table *t, terr *e);

/* Activation buffers for forward() on one backend, sized for batches of up to n_batch. */
typedef struct tome_fwd {
    tome_backend *be;
    int n_batch;
    float *x;     /* [n_batch][n_embd] residual stream */
    float *xb;    /* [n_batch][n_embd] normed input / block output */
    float *q;     /* [n_batch][n_head*head_dim] */
    float *k;     /* [n_batch][n_head_kv*head_dim] */
    float *v;     /* [n_batch][n_head_kv*head_dim_v] */
    float *att;   /* [n_batch][n_head*head_dim_v] */
    float *hg;    /* [n_batch][n_ff] gate, then swiglu output */
    float *hu;    /* [n_batch][n_ff] up */
} tome_fwd;

/* Allocates the buffers on be; TOME_ERESOURCE when out of memory. */
int fwd_init(tome_fwd *f, const tome_model *m, tome_backend *be, int n_batch, terr *e);
void fwd_free(tome_fwd *f);

/* Runs tokens ids[0..n) at positions pos0..pos0+n-1 of the backend's sequence (their K/V
 * are stored; earlier positions must already be there). 1 <= n <= f->n_batch; ids must be
 * in [0, n_vocab) and pos0 + n <= the backend's n_ctx (the caller checks both).
 * logits: NULL, or host memory for n_vocab floats (the last position) or, with all_logits,
 * n * n_vocab floats (every position). */
void forward(const tome_model *m, tome_fwd *f, const int32_t *ids, int n, int pos0, float *logits,
             int all_logits);

#endif

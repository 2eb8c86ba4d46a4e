/* arch.h — model hyper-parameters read from GGUF metadata, and whether tome can run a file.
 *
 * One struct, filled once per model by hparams_load from llama.cpp's metadata keys
 * (`general.architecture`, then `<arch>.block_count`, `<arch>.attention.head_count`, ...).
 * The CPU engine (model.c), the RoPE tables (rope.c) and `tome info` all read it; nobody
 * else parses these keys. Defaults follow llama.cpp where a key is optional (head_dim =
 * n_embd / n_head, rope_dim = head_dim, rope_base = 10000, norm_eps = 1e-5).
 *
 * Limits: architectures llama, qwen2, qwen3 and phi3 are known (mistral files say "llama").
 * Any other architecture still loads its common keys when they exist, with arch ARCH_UNKNOWN,
 * so `tome info` can describe it; hparams_load then returns TOME_EUNSUPPORTED.
 */
#ifndef TOME_ARCH_H
#define TOME_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

typedef enum { ARCH_UNKNOWN, ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_PHI3 } tome_arch_id;

typedef enum {
    ROPE_SCALING_NONE,
    ROPE_SCALING_LINEAR,   /* positions divided by rope_factor */
    ROPE_SCALING_NTK,      /* base raised by factor^(d/(d-2)) ("NTK-aware"; not in GGUF files) */
    ROPE_SCALING_DYNAMIC,  /* dynamic NTK (not in GGUF files; selectable by flag) */
    ROPE_SCALING_YARN,
    ROPE_SCALING_LONGROPE, /* per-dimension factors from rope_factors_{long,short}.weight */
    ROPE_SCALING_LLAMA3,   /* per-dimension factors from rope_freqs.weight (llama 3.1+) */
} rope_scaling_type;

typedef struct tome_hparams {
    char arch_name[64];    /* general.architecture as written (truncated to 63 bytes) */
    tome_arch_id arch;

    int n_layer;           /* block_count */
    int n_embd;            /* embedding_length */
    int n_head;            /* attention.head_count (layer 0 if it is an array) */
    int n_head_kv;         /* attention.head_count_kv, default n_head */
    int head_dim;          /* attention.key_length, default n_embd / n_head */
    int head_dim_v;        /* attention.value_length, default head_dim */
    int n_ff;              /* feed_forward_length (layer 0 if it is an array) */
    int n_vocab;           /* vocab_size, else len(tokenizer.ggml.tokens), else token_embd rows */
    int n_ctx_train;       /* context_length */
    float norm_eps;        /* attention.layer_norm_rms_epsilon */

    float rope_base;       /* rope.freq_base, default 10000 */
    int rope_dim;          /* rope.dimension_count, default head_dim: dims [0, rope_dim) rotate */
    int rope_neox;         /* 0: adjacent pairs (x[2i], x[2i+1]) — llama;
                              1: halves (x[i], x[i + rope_dim/2]) — qwen2, qwen3, phi3 */

    rope_scaling_type rope_scaling;
    float rope_factor;     /* rope.scaling.factor (or legacy rope.scale_linear), 1 if none */
    int rope_orig_ctx;     /* rope.scaling.original_context_length, default n_ctx_train */
    float rope_attn_factor;/* rope.scaling.attn_factor, default 1 */
    float yarn_ext_factor; /* rope.scaling.yarn_ext_factor, default 1 for YaRN, else 0 */
    float yarn_attn_factor;/* rope.scaling.yarn_attn_factor, default 1 */
    float yarn_beta_fast;  /* rope.scaling.yarn_beta_fast, default 32 */
    float yarn_beta_slow;  /* rope.scaling.yarn_beta_slow, default 1 */
    int has_rope_freqs;    /* rope_freqs.weight present (llama3 per-dimension factors) */
    int has_rope_long;     /* rope_factors_long.weight / _short.weight present (LongRoPE) */

    int sliding_window;    /* attention.sliding_window; 0 = none */
    int tied_output;       /* no output.weight: logits use token_embd.weight */
    int has_weights;       /* token_embd.weight present (0: a vocabulary-only file) */
} tome_hparams;

/* Fills *hp from g's metadata. Returns 0; TOME_EINPUT when a required key (block_count,
 * embedding_length, attention.head_count, ...) is missing or out of range, naming the key;
 * TOME_EUNSUPPORTED for an architecture other than the four above (hp still holds what could
 * be read, arch_name included, so callers may describe the file). A vocabulary-only file of a
 * known architecture loads with has_weights = 0 (model_check_runnable says no). */
int hparams_load(tome_hparams *hp, const gguf *g, terr *e);

/* 1 if tome can run this file, else 0 with the exact reason in why (one line, truncated to
 * cap): the architecture (and the supported list), a vocabulary-only file (no weights), a
 * tensor with an unsupported type ("tensor 'blk.0.attn_q.weight' has unsupported type
 * IQ2_XXS"), a missing tensor, or a tensor whose shape disagrees with the hyper-parameters
 * (expected vs actual). hp is what hparams_load filled (its return code is ignored here). */
int model_check_runnable(const gguf *g, const tome_hparams *hp, char *why, size_t cap);

const char *rope_scaling_name(rope_scaling_type t); /* "none", "linear", "yarn", ... */
const char *arch_name(tome_arch_id a);               /* "llama", ..., "unknown" */
/* Supported architectures, comma-separated, for messages: "llama, qwen2, qwen3, phi3". */
const char *arch_supported_list(void);

#endif

/* engine.h — runs one sequence through a model: chunked prefill, the decode loop, sampling,
 * stopping, and the timings that `tome run` reports.
 *
 * An engine owns a model, a backend (the CPU's, or one GPU's: engine_lc.gpu) with its KV
 * cache of n_ctx positions, and forward()'s activation buffers. Prefill processes the prompt in chunks of
 * n_batch positions (buffers are per chunk: nothing grows with the prompt but the paged KV);
 * decode runs one token per forward. One sequence at a time. The cache is lib/kvcache.h's
 * paged one (engine_lc.kv: f16 default, q8, q4; f32 = the contiguous float reference). With
 * sinks and a window the engine streams: positions run past n_ctx, whole pages outside the
 * sinks and the window are released, and generation continues; otherwise a full context ends
 * generation (FINISH_CONTEXT). engine_from_model* checks the memory plan (engine_plan) before
 * allocating anything.
 */
#ifndef TOME_ENGINE_H
#define TOME_ENGINE_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "cuda/backend.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"
#include "util.h"

typedef struct engine_params {
    int n_ctx;     /* KV capacity; 0 = engine_default_ctx(model) */
    int n_batch;   /* prefill chunk; 0 = 64 */
    int n_threads; /* 0 = all online cores */
    int exact;     /* 1: float activations in every matmul (no llama.cpp-style quantization) */
    const char *cpu_kernels; /* NULL = the best this CPU runs; "scalar" = the reference code */
} engine_params;

/* Long-context settings and placement (engine_from_model_lc); all zero = the model's own, f16
 * KV, on the CPU. */
typedef struct engine_lc {
    const char *kv;          /* KV cache type: NULL = "f16" ("f32" with exact), "q8", "q4", "f32"
                                (f32 = the contiguous float reference path) */
    int window;              /* attention window: 0 = the model's (attention.sliding_window), < 0 none */
    int sinks;               /* StreamingLLM sinks: with a window (and a paged cache) the cache
                                holds the sinks + the window + one chunk and positions run past
                                n_ctx, which then only sizes the RoPE table (dynamic, LongRoPE) */
    const char *rope_scaling;/* NULL = the model's; none|linear|ntk|dynamic|yarn|longrope|llama3 */
    double rope_scale;       /* > 0 overrides the scaling factor */
    double rope_base;        /* > 0 overrides the theta base */
    int rope_orig_ctx;       /* > 0 overrides the original training context */
    int page_tokens;         /* KV page size; 0 = KV_DEFAULT_PAGE_TOKENS */
    /* Placement (here rather than in engine_params, whose callers initialise it positionally): */
    cuda_dev *gpu;           /* NULL = the CPU; else the GPU to run on (lib/device.h; borrowed:
                                close it after engine_close). The plan then counts its memory;
                                f16/q8/q4 KV (f32: TOME_EFLAGS); a tensor type the GPU kernels
                                lack is TOME_EUNSUPPORTED (cuda_check_weights). */
    int no_graphs;           /* GPU: 1 = decode steps as plain launches, no CUDA graph (bench --no-graphs) */
    cuda_upload_fn on_upload;/* GPU: weight upload progress (may be NULL) */
    void *upload_ud;
} engine_lc;

/* What a run of these settings needs in memory (tome plan; engine_open checks it first). */
typedef struct engine_plan {
    int kv_type;             /* KV_TYPE_F32 or a kv_dtype */
    int n_ctx, n_batch, window, sinks, streaming;
    uint64_t weight_bytes;   /* the GGUF's tensor data (mapped, resident once touched) */
    uint64_t kv_token_bytes; /* one position, all layers, K and V */
    uint64_t kv_bytes;       /* the whole cache as allocated (whole pages) */
    uint64_t scratch_bytes;  /* activations and per-chunk scratch (nothing grows with n_ctx
                                on the paged path) */
    uint64_t total_bytes;    /* weights + kv + scratch */
    uint64_t mem_available;  /* /proc/meminfo MemAvailable (0 when unknown); on a GPU its free memory */
    int gpu;                 /* 1: planned for p->gpu (paged KV, everything in device memory) */
    uint64_t mem_total;      /* GPU: its total memory (0 on the CPU) */
    int fits;                /* total <= available (1 when unknown) */
} engine_plan;

/* Parses a KV type name ("f16", "q8", "q4", "f32") into KV_TYPE_F32 or a kv_dtype; -2 if unknown. */
int engine_kv_type(const char *name);
const char *engine_kv_name(int kv_type);

/* Applies lc's RoPE and window overrides to m->hp. TOME_EFLAGS for an unknown scaling name. */
int engine_apply_overrides(tome_model *m, const engine_lc *lc, terr *e);

/* Fills *pl for model m (overrides already applied), p and lc (NULL = defaults); n_ctx 0 =
 * default, -1 = the largest context that fits in MemAvailable (at least 1). */
int engine_make_plan(const tome_model *m, const engine_params *p, const engine_lc *lc, engine_plan *pl,
                     terr *e);

/* MemAvailable from /proc/meminfo in bytes, 0 when unknown. */
uint64_t engine_mem_available(void);

typedef struct engine {
    tome_model *m;     /* owned */
    tome_backend *be;  /* owned */
    tome_fwd fwd;
    int n_ctx;         /* positions the KV cache holds */
    int n_batch;
    int n_past;        /* positions already in the cache (the next position) */
    int kv_type;       /* KV_TYPE_F32 or a kv_dtype */
    int window, sinks; /* attention mask in use */
    int streaming;     /* sinks and window: positions may pass n_ctx (old pages evicted) */
    int on_gpu;        /* the backend is lib/cuda/backend.h's */
    float *logits;     /* [n_vocab] the last position's logits after engine_eval */
} engine;

/* The default context: the trained context, capped at 32768 positions and so that the
 * float KV cache takes at most a quarter of physical memory (at least 256 positions). */
int engine_default_ctx(const tome_model *m);

/* Opens path (model_load) and builds the engine. Errors as model_load, plus TOME_EFLAGS for
 * a bad n_ctx / n_batch / kv / rope flag and TOME_ERESOURCE when the plan (weights + KV +
 * scratch) exceeds MemAvailable — checked before anything is allocated, numbers in the
 * message. */
int engine_open(engine **out, const char *path, const engine_params *p, terr *e);
/* Same over a loaded model; takes ownership of m (also on failure). */
int engine_from_model(engine **out, tome_model *m, const engine_params *p, terr *e);
/* Same with long-context settings (lc NULL = defaults). */
int engine_from_model_lc(engine **out, tome_model *m, const engine_params *p, const engine_lc *lc, terr *e);
void engine_close(engine *en);

/* Forgets the cached positions (n_past = 0). */
void engine_reset(engine *en);

/* Appends ids[0..n) at positions n_past.. (in chunks of n_batch) and leaves the last
 * position's logits in en->logits. all_logits: NULL, or host memory for n * n_vocab floats
 * that receives every position's logits. TOME_EINPUT when an id is out of the vocabulary or
 * the positions would pass n_ctx (naming both numbers); nothing is run then. */
int engine_eval(engine *en, const int32_t *ids, int n, float *all_logits, terr *e);

/* ---- generation ---------------------------------------------------------------------- */

typedef enum { FINISH_STOP, FINISH_LENGTH, FINISH_CONTEXT, FINISH_INTERRUPTED } finish_reason;
/* "stop", "length" (both -n and a full context), "interrupted". */
const char *finish_name(finish_reason r);

typedef struct gen_params {
    int n_predict;                 /* most tokens to generate (< 0: until stop or context end) */
    sampler_params sp;
    const tokenizer *tok;          /* tok_is_eog stops generation; may be NULL */
    const int32_t *stop_ids;       /* extra stop ids (the chat template's end-of-turn), or NULL */
    int n_stop;
    volatile sig_atomic_t *interrupt; /* checked between chunks and tokens; NULL = never */
    /* Called with each generated id (stop tokens are not passed); nonzero return stops. */
    int (*on_token)(void *ud, int32_t id);
    void *ud;
    float *prompt_logits;          /* NULL, or [n_vocab]: the last prompt position's logits */
    /* Called after each prefill chunk with positions done and the total; may be NULL. */
    void (*on_progress)(void *ud, int done, int total);
} gen_params;

typedef struct gen_result {
    int n_prompt, n_gen;           /* prompt tokens evaluated, tokens generated */
    finish_reason finish;
    double t_prefill;              /* seconds in prefill forwards */
    double t_decode;               /* seconds in decode forwards */
    int n_decode;                  /* decode forwards run (n_gen - 1 or n_gen) */
    double t_first;                /* seconds from the start to the first sampled token */
} gen_result;

/* Resets the sequence, prefills prompt[0..n_prompt), then samples until a stop id, n_predict
 * tokens, the context end (not with streaming: the window slides on), or *interrupt.
 * TOME_EINPUT (nothing run) when the prompt is longer than the context without streaming
 * (both numbers named) or an id is out of range; TOME_ERESOURCE for memory.
 * An interruption is not an error: r->finish says so. */
int engine_generate(engine *en, const int32_t *prompt, int n_prompt, const gen_params *gp,
                    gen_result *r, terr *e);

#endif

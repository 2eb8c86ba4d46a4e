/* backend.c (cuda) — backend_ops on one GPU (see cuda/backend.h).
 *
 * Memory. Weights: one device block holding the GGUF's tensor data section byte for byte, so
 * a host tome_weight (a pointer into the mapping) becomes a device address by its offset from
 * the section start; uploaded once, in 64 MiB slices (the mapping is read in order, once). Activations: device buffers from `alloc`
 * (forward() only does pointer arithmetic on them). KV: lib/kvcache.h keeps the block tables
 * and refcounts (cfg.no_storage), the pages live in two device blocks [n_layer][n_pages] of
 * kvcache's page layout for the chosen dtype (f16, q8 or q4: kv_page_bytes); copy on write
 * becomes a device-to-device copy (copy_page hook).
 *
 * Attention (issue #9). f16 pages: RoPE then cuda_kv_store_f16, prefill through
 * cuda_attention_f16. q8/q4 pages: cuda_rope_kv_store (RoPE of q and k, quantise, page write
 * in one kernel). A decode step (one query) of any dtype whose shape flash-decoding takes
 * uses cuda_flash_decode (+ its lse merge). A prefill chunk (n > 1) of any dtype goes through
 * cuda_flash_prefill (FlashAttention-2 on the tensor cores, issue #10) when its head dims are
 * multiples of 16 up to 128; other shapes keep cuda_attention_f16 (f16) or one flash-decode
 * per query (q8/q4: correct but slow).
 * A decode step (forward with n == 1 of such a shape) is deferred and run as one CUDA graph
 * replay: see "decode steps and CUDA graphs" below.
 *
 * Per forward (at layer 0 of rope_kv_store): the cache bookkeeping runs on the host exactly as
 * on the CPU (new sequence, rewind, streaming eviction, append), then the block table and the
 * RoPE cos/sin rows of the chunk (rope_cos_sin, the CPU's own numbers) are uploaded once and
 * serve every layer. Host-to-device copies are asynchronous from pageable memory, which the
 * driver stages before returning, so host buffers may be reused at once.
 *
 * Kernel contracts relied on (cuda/ops.h): matmul's y and attention's out never alias their
 * inputs (forward() passes distinct buffers; logits go to their own buffer); rmsnorm, add and
 * swiglu may run in place.
 */
#include "cuda/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "cpu/cpu.h"
#include "cuda/ops.h"
#include "kvcache.h"
#include "quant.h"

typedef struct gpu_state {
    cuda_dev *d;               /* borrowed */
    tome_hparams hp;
    rope_table rope;
    int n_ctx, n_batch;
    int window, sinks, streaming;
    const uint8_t *host;       /* the mapping's tensor data section ... */
    uint64_t host_bytes;       /* ... and its size */
    CUdeviceptr w;             /* its copy on the device: host[i] is at w + i */
    kv_cache kv;               /* bookkeeping only (no_storage) */
    int seq;
    int64_t evict_next;        /* streaming: slots below this are evicted or sinks */
    int64_t n_pages;
    kv_dtype dt;               /* page dtype of kpool / vpool */
    int flash;                 /* the shape fits cuda_flash_decode's limits */
    CUdeviceptr kpool, vpool;  /* [n_layer][n_pages] pages of kv.page_bytes_k / _v */
    CUdeviceptr fd_scratch;    /* flash-decode partials for fd_splits splits */
    size_t fd_bytes;
    int fd_splits;
    CUdeviceptr bt;            /* int32 [bt_cap] the sequence's block table */
    int64_t bt_cap;
    CUdeviceptr ids;           /* int32 [n_batch] token ids of a chunk */
    CUdeviceptr cs;            /* [n_batch][rope.dim] cos/sin rows of a chunk */
    float *cs_host;            /* [n_batch][rope.dim] */
    CUdeviceptr logits;        /* [n_batch][n_vocab] */
    CUdeviceptr gemm_x;        /* [n_batch][gemm_cols] f16/bf16: cuda_gemm's activations (0: none) */
    size_t gemm_x_bytes;
    int32_t *bt_host;          /* stb_ds: the device block table's entries as last uploaded */
    /* decode steps (see "decode steps and CUDA graphs") */
    int use_graphs;            /* wanted and the driver has them; 0 after any graph failure */
    const char *graphs_off;    /* why use_graphs is 0 (a static string) */
    int deferring;             /* between step_begin and step_end of a deferred decode step */
    int step_pos0;
    int32_t step_token;
    float *step_logits;        /* host destination of the step's logits (NULL: none) ... */
    size_t step_logits_n;      /* ... and its float count */
    struct op_rec *log, *prev_log; /* stb_ds: this step's ops; the previous decode step's */
    CUgraphExec gexec;         /* the captured decode step, or NULL */
    CUdeviceptr gbt;           /* the block table address it was captured with */
    CUdeviceptr step;          /* the step header (STEP_*), read by the decode-step kernels */
    uint8_t *step_host;        /* its host image */
    uint64_t n_steps, n_replays; /* decode steps run, and how many as a graph launch */
    terr err;                  /* the first failure; every op is a no-op after it */
} gpu_state;

static gpu_state *ST(tome_backend *be) { return (gpu_state *)be->impl; }
static CUdeviceptr DP(const void *p) { return (CUdeviceptr)(uintptr_t)p; }
static int failed(const gpu_state *s) { return s->err.code != 0; }

/* The device address of host weight bytes p (inside the mapping's data section), or 0 with
 * the error set. */
static CUdeviceptr wdev(gpu_state *s, const tome_weight *w) {
    const uint8_t *p = w->data;
    if (p < s->host || (uint64_t)(p - s->host) + w->rows * w->row_bytes > s->host_bytes) {
        terr_set(&s->err, TOME_ERESOURCE, "GPU: weight '%s' is outside the uploaded tensor data",
                 w->name ? w->name : "?");
        return 0;
    }
    return s->w + (uint64_t)(p - s->host);
}

static cuda_weight cw(gpu_state *s, const tome_weight *w) {
    cuda_weight c = {wdev(s, w), w->type, w->rows, w->cols, w->row_bytes};
    return c;
}

static int upload_async(gpu_state *s, CUdeviceptr dst, const void *src, size_t bytes, terr *e) {
    CU_TRY(s->d, e, s->d->api.cuMemcpyHtoDAsync(dst, src, bytes, s->d->stream));
    return 0;
}

/* ---- buffers ---------------------------------------------------------------------------- */

static int dev_zalloc(gpu_state *s, CUdeviceptr *p, size_t bytes, terr *e) {
    int rc = cuda_alloc(s->d, p, bytes ? bytes : 4, e);
    if (rc) return rc;
    CU_TRY(s->d, e, s->d->api.cuMemsetD8Async(*p, 0, bytes ? bytes : 4, s->d->stream));
    return 0;
}

static float *gpu_alloc(tome_backend *be, size_t n) {
    gpu_state *s = ST(be);
    CUdeviceptr p = 0;
    terr e = {0};
    if (dev_zalloc(s, &p, n * sizeof(float), &e)) return NULL; /* the caller reports out of memory */
    return (float *)(uintptr_t)p;
}

static void gpu_release(tome_backend *be, float *buf) { cuda_free(ST(be)->d, DP(buf)); }

/* ---- ops ---------------------------------------------------------------------------------- */

static void gpu_embed(tome_backend *be, float *x, const tome_weight *emb, const int32_t *ids, int n) {
    gpu_state *s = ST(be);
    if (failed(s)) return;
    cuda_weight t = cw(s, emb);
    if (failed(s) || upload_async(s, s->ids, ids, (size_t)n * sizeof(int32_t), &s->err)) return;
    cuda_embed(s->d, DP(x), &t, s->ids, n, &s->err);
}

static void gpu_rmsnorm(tome_backend *be, float *y, const float *x, const tome_weight *w, int n_rows, float eps) {
    gpu_state *s = ST(be);
    if (failed(s)) return;
    CUdeviceptr g = wdev(s, w);
    if (!failed(s)) cuda_rmsnorm_f32(s->d, DP(y), DP(x), g, n_rows, (int)w->cols, eps, &s->err);
}

/* Batches of at least this many tokens go to the tensor-core GEMM (cuda_gemm, 128-token
 * tiles), smaller ones to cuda_matmul. A first guess: the crossover is to be measured on a GPU
 * (build/lab_gemm; tests/gpu.sh bench). */
#define GPU_GEMM_MIN_TOKENS 16

/* The widest matmul input of the model: x (n_embd), the attention output (n_head * head_dim_v)
 * and the FFN hidden state (n_ff). A wider one (a per-layer n_ff) falls back to cuda_matmul. */
static int64_t gemm_cols(const tome_hparams *hp) {
    return TOME_MAX(TOME_MAX((int64_t)hp->n_embd, (int64_t)hp->n_ff), (int64_t)hp->n_head * hp->head_dim_v);
}

static void gpu_matmul(tome_backend *be, float *y, const tome_weight *w, const tome_weight *bias, const float *x,
                       int n) {
    gpu_state *s = ST(be);
    if (failed(s)) return;
    cuda_weight c = cw(s, w);
    CUdeviceptr b = bias ? wdev(s, bias) : 0;
    if (failed(s)) return;
    if (n >= GPU_GEMM_MIN_TOKENS && s->gemm_x && cuda_gemm_supported(&c) &&
        cuda_gemm_scratch_bytes(n, c.cols) <= s->gemm_x_bytes)
        cuda_gemm(s->d, DP(y), &c, b, 0, DP(x), n, s->gemm_x, s->gemm_x_bytes, &s->err);
    else
        cuda_matmul(s->d, DP(y), &c, b, DP(x), n, &s->err);
}

static void gpu_swiglu(tome_backend *be, float *y, const float *gate, const float *up, int64_t n) {
    gpu_state *s = ST(be);
    if (!failed(s)) cuda_swiglu_f32(s->d, DP(y), DP(gate), DP(up), n, &s->err);
}

static void gpu_add(tome_backend *be, float *y, const float *x, int64_t n) {
    gpu_state *s = ST(be);
    if (!failed(s)) cuda_add_f32(s->d, DP(y), DP(y), DP(x), n, &s->err);
}

/* The cache bookkeeping of one forward, as cpu_backend.c's kv_prepare: pos0 == 0 starts a new
 * sequence, pos0 below the length rewinds (unless evicted pages would be needed again),
 * streaming releases whole pages no query of the chunk can see, then the chunk is appended. */
static void kv_prepare(gpu_state *s, int n, int pos0) {
    kv_cache *c = &s->kv;
    terr e = {0};
    kv_seq *sq = &c->seqs[s->seq];
    const int64_t P = c->cfg.page_tokens;
    if (pos0 == 0) s->evict_next = ((int64_t)s->sinks + P - 1) / P;
    if (pos0 == 0 && sq->len > 0) {
        kv_seq_free(c, s->seq);
        if (kv_seq_new(c, &s->seq, &e)) { terr_set(&s->err, TOME_ERESOURCE, "GPU KV cache: %s", e.msg); return; }
        sq = &c->seqs[s->seq];
    } else if (pos0 < sq->len) {
        for (ptrdiff_t i = 0; i < arrlen(sq->pages); i++)
            if (sq->pages[i] < 0) {
                terr_set(&s->err, TOME_ERESOURCE, "GPU KV cache: a rewind to position %d needs pages already evicted", pos0);
                return;
            }
        if (kv_seq_truncate(c, s->seq, pos0, &e)) { terr_set(&s->err, TOME_ERESOURCE, "GPU KV cache: %s", e.msg); return; }
    }
    if (s->streaming) {
        const int64_t lo = (int64_t)pos0 - s->window + 1;
        for (; (s->evict_next + 1) * P <= lo && s->evict_next < arrlen(sq->pages); s->evict_next++)
            kv_seq_drop_page(c, s->seq, s->evict_next);
    }
    if (kv_seq_append(c, s->seq, n, &e)) {
        terr_set(&s->err, TOME_ERESOURCE, "GPU KV cache: positions up to %d: %s", pos0 + n, e.msg);
        return;
    }
    /* the block table (it grows with the positions when streaming: holes are -1) */
    int64_t np = 0;
    const int32_t *pages = kv_seq_pages(c, s->seq, &np);
    if (np > s->bt_cap) {
        int64_t cap = TOME_MAX(np, s->bt_cap * 2);
        CUdeviceptr nb = 0;
        if (cuda_alloc(s->d, &nb, (size_t)cap * sizeof(int32_t), &s->err)) return;
        cuda_free(s->d, s->bt);
        s->bt = nb;
        s->bt_cap = cap;
        arrsetlen(s->bt_host, 0); /* the new table holds nothing yet */
    }
    /* only the entries that changed since the last upload: a decode step adds one page id
     * every P positions (and streaming turns one into -1), so the copy is usually empty and a
     * captured decode graph sees new pages because this runs before each launch */
    const int64_t had = arrlen(s->bt_host);
    int64_t lo = -1, hi = -1;
    for (int64_t i = 0; i < np; i++)
        if (i >= had || s->bt_host[i] != pages[i]) {
            if (lo < 0) lo = i;
            hi = i + 1;
        }
    if (lo < 0) return;
    if (hi > had) arrsetlen(s->bt_host, hi);
    memcpy(s->bt_host + lo, pages + lo, (size_t)(hi - lo) * sizeof(int32_t));
    upload_async(s, s->bt + (CUdeviceptr)lo * sizeof(int32_t), pages + lo, (size_t)(hi - lo) * sizeof(int32_t),
                 &s->err);
}

static cuda_kv_layer kv_layer(const gpu_state *s, int layer) {
    const kv_cache *c = &s->kv;
    cuda_kv_layer L = {s->kpool + (uint64_t)layer * (uint64_t)s->n_pages * c->page_bytes_k,
                       s->vpool + (uint64_t)layer * (uint64_t)s->n_pages * c->page_bytes_v,
                       c->page_bytes_k, c->page_bytes_v, c->cfg.page_tokens, s->hp.n_head_kv, s->hp.head_dim,
                       s->hp.head_dim_v};
    return L;
}

static void gpu_rope_kv_store(tome_backend *be, int layer, float *q, float *k, const float *v, int n, int pos0) {
    gpu_state *s = ST(be);
    const tome_hparams *hp = &s->hp;
    if (layer == 0 && pos0 == 0 && s->err.code == TOME_ERESOURCE && !strncmp(s->err.msg, "GPU KV cache:", 13))
        memset(&s->err, 0, sizeof s->err); /* as on the CPU: a new sequence forgets a cache failure */
    if (failed(s)) return;
    if (layer == 0) {
        for (int i = 0; i < n; i++) rope_cos_sin(&s->rope, (int64_t)pos0 + i, s->cs_host + (size_t)i * s->rope.dim);
        if (s->rope.dim > 0 && upload_async(s, s->cs, s->cs_host, (size_t)n * s->rope.dim * sizeof(float), &s->err))
            return;
        kv_prepare(s, n, pos0);
        if (failed(s)) return;
    }
    cuda_kv_layer L = kv_layer(s, layer);
    if (s->dt != KV_F16) { /* RoPE + quantise + write in one kernel */
        cuda_rope_kv_store(s->d, &L, s->dt, s->bt, pos0, n, DP(q), DP(k), DP(v), s->rope.dim > 0 ? s->cs : 0,
                           hp->n_head, s->rope.dim, hp->rope_neox, &s->err);
        return;
    }
    if (s->rope.dim > 0 &&
        (cuda_rope(s->d, DP(q), n, hp->n_head, hp->head_dim, s->rope.dim, hp->rope_neox, s->cs, &s->err) ||
         cuda_rope(s->d, DP(k), n, hp->n_head_kv, hp->head_dim, s->rope.dim, hp->rope_neox, s->cs, &s->err)))
        return;
    cuda_kv_store_f16(s->d, &L, s->bt, pos0, n, DP(k), DP(v), &s->err);
}

/* Whether cuda_flash_decode takes this shape (its limits in cuda/ops.h). */
static int flash_shape_ok(const tome_hparams *hp) {
    const int rep = hp->n_head_kv > 0 && hp->n_head % hp->n_head_kv == 0 ? hp->n_head / hp->n_head_kv : 0;
    return hp->head_dim % 8 == 0 && hp->head_dim <= 256 && hp->head_dim_v % 8 == 0 && hp->head_dim_v <= 256 &&
           rep >= 1 && rep <= 32 && rep * hp->head_dim <= 1024 && rep * hp->head_dim_v <= 1024;
}

/* One flash-decode of query i of a chunk at pos0 (position pos0 + i sees keys 0 .. pos0 + i). */
static int flash_one(gpu_state *s, const cuda_kv_layer *L, float *out, const float *q, int i, int pos0) {
    const tome_hparams *hp = &s->hp;
    const int64_t qp = (int64_t)pos0 + i;
    int64_t nk = qp + 1; /* keys visible to qp: the whole prefix, or the window plus the sinks */
    if (s->window > 0 && nk > s->window) nk = s->window + TOME_MIN((int64_t)s->sinks, qp + 1 - s->window);
    int S = cuda_flash_decode_splits(s->d, L, nk);
    if (S > s->fd_splits) S = s->fd_splits;
    return cuda_flash_decode(s->d, DP(out + (size_t)i * hp->n_head * hp->head_dim_v),
                             DP(q + (size_t)i * hp->n_head * hp->head_dim), hp->n_head, L, s->dt, s->bt, qp + 1, qp,
                             1.0f / sqrtf((float)hp->head_dim), s->window, s->window > 0 ? s->sinks : 0, S,
                             s->fd_scratch, s->fd_bytes, &s->err);
}

static void gpu_attention(tome_backend *be, int layer, float *out, const float *q, int n, int pos0) {
    gpu_state *s = ST(be);
    if (failed(s)) return;
    cuda_kv_layer L = kv_layer(s, layer);
    /* prefill (issue #10): FlashAttention-2 on the tensor cores for every page dtype, when
     * the head dims are ones it takes (multiples of 16 up to 128); else the paths below */
    if (n > 1 && cuda_flash_prefill_ok(&L, s->hp.n_head)) {
        cuda_flash_prefill(s->d, DP(out), DP(q), n, s->hp.n_head, &L, s->dt, s->bt, pos0,
                           1.0f / sqrtf((float)s->hp.head_dim), s->window, s->window > 0 ? s->sinks : 0, &s->err);
        return;
    }
    /* (a decode step of a flash shape never comes here: it is deferred, see step_end) */
    if (s->dt != KV_F16 || (n == 1 && s->flash)) {
        for (int i = 0; i < n && !failed(s); i++) flash_one(s, &L, out, q, i, pos0);
        return;
    }
    cuda_attention_f16(s->d, DP(out), DP(q), n, s->hp.n_head, &L, s->bt, pos0, 1.0f / sqrtf((float)s->hp.head_dim),
                       s->window, s->window > 0 ? s->sinks : 0, &s->err);
}

static void gpu_logits(tome_backend *be, float *host, float *x, const tome_weight *norm, float eps,
                       const tome_weight *out, int n) {
    gpu_state *s = ST(be);
    gpu_rmsnorm(be, x, x, norm, n, eps);
    gpu_matmul(be, (float *)(uintptr_t)s->logits, out, NULL, x, n);
    if (failed(s)) {
        memset(host, 0, (size_t)n * (size_t)out->rows * sizeof(float)); /* never uninitialised */
        return;
    }
    cuda_download(s->d, host, s->logits, (size_t)n * (size_t)out->rows * sizeof(float), &s->err);
}

/* ---- decode steps and CUDA graphs ----------------------------------------------------------
 * forward() brackets each call with step_begin / step_end (lib/backend.h). Why a hook rather
 * than the backend guessing where a step starts: the host work of a step (cache bookkeeping,
 * block-table and position uploads) must all be issued BEFORE a capture begins (a stream being
 * captured refuses copies from pageable memory and any synchronisation), yet the position only
 * arrives with rope_kv_store, halfway through the ops. So a decode step (n == 1, a shape
 * flash-decoding takes) is deferred: each op is recorded (op_rec) and nothing is launched; in
 * step_end the host work runs, ONE copy writes the step header (position, flash-decode key
 * range, token id, RoPE cos/sin row) to the device, and then the recorded ops run, either as
 * the launch of a graph captured from an identical op list or as plain launches (the first
 * decode steps, --no-graphs / TOME_NO_GRAPHS=1, a driver without the graph entry points, any
 * capture failure). Both run the same kernels with the same parameters, so the outputs are the
 * same. The decode-step kernels read every per-step value from the header
 * (cuda_rope_kv_store_step, cuda_flash_decode_step over the fixed split count of the longest
 * context, embed's id), so one graph serves every later step; new pages reach the device block
 * table through kv_prepare's upload, which runs before the launch. The graph is captured on
 * the first decode step whose op list equals the previous step's (that previous, plain step
 * also warms anything an op sets up lazily), and dropped when the list or the block table's
 * address changes. The alternative, capturing while the ops run on the first step, could not
 * recover a step whose capture fails half-way; a deferred list is simply run again plainly. */

enum { OP_EMBED, OP_RMSNORM, OP_MATMUL, OP_ROPE_KV, OP_ATTN, OP_SWIGLU, OP_ADD, OP_LOGITS };

/* One recorded op of a deferred step. Lists compare by memcmp: records are zeroed before they
 * are filled, and the fields are ordered so that the struct has no padding bytes. */
typedef struct op_rec {
    int64_t n64;
    float *y;                  /* output (q for rope_kv_store, x for logits) */
    const float *a, *b;        /* inputs */
    const tome_weight *w, *w2; /* weights (w2: bias, or the output matrix of logits) */
    int kind, layer, n;
    float eps;
} op_rec;
_Static_assert(sizeof(op_rec) == sizeof(int64_t) + 5 * sizeof(void *) + 4 * 4, "op_rec has padding");

/* The step header in device memory (s->step), 64 bytes then the RoPE row. */
enum {
    STEP_POS = 0,    /* u64: the position (cuda_rope_kv_store_step) */
    STEP_NSINK = 8,  /* u64 n_sink, win_lo, n_visible (cuda_flash_decode_step) */
    STEP_TOKEN = 32, /* s32: the token id (embed) */
    STEP_CS = 64,    /* f32 [rope.dim]: rope_cos_sin of the position */
};

static size_t step_bytes(const gpu_state *s) { return STEP_CS + (size_t)TOME_MAX(s->rope.dim, 2) * sizeof(float); }

static op_rec rec(int kind) {
    op_rec r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    return r;
}

/* Records r when a decode step is being deferred: 1 (the op does nothing now), else 0. */
static int defer(gpu_state *s, const op_rec *r) {
    if (!s->deferring) return 0;
    arrput(s->log, *r);
    return 1;
}

static void st_embed(tome_backend *be, float *x, const tome_weight *emb, const int32_t *ids, int n) {
    gpu_state *s = ST(be);
    op_rec r = rec(OP_EMBED);
    r.y = x, r.w = emb, r.n = n;
    if (defer(s, &r)) { s->step_token = ids[0]; return; }
    gpu_embed(be, x, emb, ids, n);
}

static void st_rmsnorm(tome_backend *be, float *y, const float *x, const tome_weight *w, int n_rows, float eps) {
    op_rec r = rec(OP_RMSNORM);
    r.y = y, r.a = x, r.w = w, r.n = n_rows, r.eps = eps;
    if (!defer(ST(be), &r)) gpu_rmsnorm(be, y, x, w, n_rows, eps);
}

static void st_matmul(tome_backend *be, float *y, const tome_weight *w, const tome_weight *bias, const float *x,
                      int n) {
    op_rec r = rec(OP_MATMUL);
    r.y = y, r.w = w, r.w2 = bias, r.a = x, r.n = n;
    if (!defer(ST(be), &r)) gpu_matmul(be, y, w, bias, x, n);
}

static void st_rope_kv_store(tome_backend *be, int layer, float *q, float *k, const float *v, int n, int pos0) {
    op_rec r = rec(OP_ROPE_KV);
    r.layer = layer, r.y = q, r.a = k, r.b = v, r.n = n; /* the position lives in the header */
    if (!defer(ST(be), &r)) gpu_rope_kv_store(be, layer, q, k, v, n, pos0);
}

static void st_attention(tome_backend *be, int layer, float *out, const float *q, int n, int pos0) {
    op_rec r = rec(OP_ATTN);
    r.layer = layer, r.y = out, r.a = q, r.n = n;
    if (!defer(ST(be), &r)) gpu_attention(be, layer, out, q, n, pos0);
}

static void st_swiglu(tome_backend *be, float *y, const float *gate, const float *up, int64_t n) {
    op_rec r = rec(OP_SWIGLU);
    r.y = y, r.a = gate, r.b = up, r.n64 = n;
    if (!defer(ST(be), &r)) gpu_swiglu(be, y, gate, up, n);
}

static void st_add(tome_backend *be, float *y, const float *x, int64_t n) {
    op_rec r = rec(OP_ADD);
    r.y = y, r.a = x, r.n64 = n;
    if (!defer(ST(be), &r)) gpu_add(be, y, x, n);
}

static void st_logits(tome_backend *be, float *host, float *x, const tome_weight *norm, float eps,
                      const tome_weight *out, int n) {
    gpu_state *s = ST(be);
    op_rec r = rec(OP_LOGITS);
    r.y = x, r.w = norm, r.eps = eps, r.w2 = out, r.n = n;
    if (defer(s, &r)) { /* the download waits for step_end */
        s->step_logits = host;
        s->step_logits_n = (size_t)n * (size_t)out->rows;
        return;
    }
    gpu_logits(be, host, x, norm, eps, out, n);
}

/* Launches recorded op r of a decode step (plainly, or into a capture). */
static void run_op(tome_backend *be, const op_rec *r) {
    gpu_state *s = ST(be);
    const tome_hparams *hp = &s->hp;
    if (failed(s)) return;
    switch (r->kind) {
    case OP_EMBED: {
        cuda_weight t = cw(s, r->w);
        if (!failed(s)) cuda_embed(s->d, DP(r->y), &t, s->step + STEP_TOKEN, 1, &s->err);
        break;
    }
    case OP_RMSNORM: gpu_rmsnorm(be, r->y, r->a, r->w, r->n, r->eps); break;
    case OP_MATMUL: gpu_matmul(be, r->y, r->w, r->w2, r->a, r->n); break;
    case OP_ROPE_KV: {
        cuda_kv_layer L = kv_layer(s, r->layer);
        cuda_rope_kv_store_step(s->d, &L, s->dt, s->bt, s->step + STEP_POS, DP(r->y), DP(r->a), DP(r->b),
                                s->rope.dim > 0 ? s->step + STEP_CS : 0, hp->n_head, s->rope.dim, hp->rope_neox,
                                &s->err);
        break;
    }
    case OP_ATTN: {
        cuda_kv_layer L = kv_layer(s, r->layer);
        cuda_flash_decode_step(s->d, DP(r->y), DP(r->a), hp->n_head, &L, s->dt, s->bt, s->step + STEP_NSINK,
                               1.0f / sqrtf((float)hp->head_dim), s->fd_splits, s->fd_scratch, s->fd_bytes, &s->err);
        break;
    }
    case OP_SWIGLU: gpu_swiglu(be, r->y, r->a, r->b, r->n64); break;
    case OP_ADD: gpu_add(be, r->y, r->a, r->n64); break;
    case OP_LOGITS:
        gpu_rmsnorm(be, r->y, r->y, r->w, r->n, r->eps);
        gpu_matmul(be, (float *)(uintptr_t)s->logits, r->w2, NULL, r->y, r->n);
        break;
    default: terr_set(&s->err, TOME_ERESOURCE, "GPU: unknown recorded op %d (internal)", r->kind);
    }
}

static void run_all(tome_backend *be) {
    gpu_state *s = ST(be);
    for (size_t i = 0; i < arrlenu(s->log) && !failed(s); i++) run_op(be, &s->log[i]);
}

static void drop_graph(gpu_state *s) {
    if (s->gexec) s->d->api.cuGraphExecDestroy(s->gexec);
    s->gexec = NULL;
    s->gbt = 0;
}

static void graphs_off(gpu_state *s, const char *why) {
    drop_graph(s);
    s->use_graphs = 0;
    s->graphs_off = why;
}

/* Captures the recorded step into s->gexec (nothing runs); 0, or -1 with the state as before
 * (the caller then runs the step plainly). */
static int capture(tome_backend *be) {
    gpu_state *s = ST(be);
    cuda_dev *d = s->d;
    CUgraph g = NULL;
    CUgraphExec x = NULL;
    if (d->api.cuStreamBeginCapture(d->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) != 0) return -1;
    run_all(be); /* the launches are recorded, not run */
    CUresult r = d->api.cuStreamEndCapture(d->stream, &g);
    if (failed(s) || r != 0 || !g) {
        if (g) d->api.cuGraphDestroy(g);
        memset(&s->err, 0, sizeof s->err); /* clean before the capture; a real fault recurs plainly */
        return -1;
    }
    r = d->api.cuGraphInstantiateWithFlags(&x, g, 0);
    d->api.cuGraphDestroy(g); /* the executable graph keeps what it needs */
    if (r != 0 || !x) return -1;
    s->gexec = x;
    s->gbt = s->bt;
    return 0;
}

/* Runs the recorded step as one graph launch when it can: 1, else 0 (run it plainly). */
static int step_graph(tome_backend *be) {
    gpu_state *s = ST(be);
    const size_t n = arrlenu(s->log);
    const int same = n > 0 && arrlenu(s->prev_log) == n && !memcmp(s->log, s->prev_log, n * sizeof *s->log);
    if (!s->use_graphs || !same || (s->gexec && s->gbt != s->bt)) drop_graph(s);
    if (!s->use_graphs || !same) return 0;
    if (!s->gexec && capture(be)) {
        graphs_off(s, "the capture failed");
        return 0;
    }
    if (s->d->api.cuGraphLaunch(s->gexec, s->d->stream) != 0) {
        graphs_off(s, "cuGraphLaunch failed");
        return 0;
    }
    s->n_replays++;
    return 1;
}

/* The host half of a decode step at pos0: cache bookkeeping (block-table upload included)
 * and the step header, uploaded in one copy. */
static void step_prepare(gpu_state *s, int pos0) {
    kv_prepare(s, 1, pos0);
    if (failed(s)) return;
    /* the keys position pos0 sees, as cuda_flash_decode derives them (kvcache.c's `visible`) */
    const int64_t qp = pos0;
    int64_t lo = 0, se = 0;
    if (s->window > 0) {
        lo = TOME_MAX((int64_t)0, qp - s->window + 1);
        se = TOME_MIN((int64_t)s->sinks, lo);
    }
    const uint64_t v[4] = {(uint64_t)qp, (uint64_t)se, (uint64_t)lo, (uint64_t)(se + qp + 1 - lo)};
    memset(s->step_host, 0, STEP_CS);
    memcpy(s->step_host + STEP_POS, v, sizeof v);
    memcpy(s->step_host + STEP_TOKEN, &s->step_token, sizeof s->step_token);
    if (s->rope.dim > 0) {
        float cs[ROPE_MAX_DIM];
        rope_cos_sin(&s->rope, qp, cs);
        memcpy(s->step_host + STEP_CS, cs, (size_t)s->rope.dim * sizeof(float));
    }
    upload_async(s, s->step, s->step_host, step_bytes(s), &s->err);
}

static void gpu_step_begin(tome_backend *be, int n, int pos0) {
    gpu_state *s = ST(be);
    s->deferring = n == 1 && s->flash && pos0 >= 0;
    s->step_pos0 = pos0;
    s->step_token = 0;
    s->step_logits = NULL;
    s->step_logits_n = 0;
    arrsetlen(s->log, 0);
}

static void gpu_step_end(tome_backend *be) {
    gpu_state *s = ST(be);
    if (!s->deferring) return;
    s->deferring = 0;
    if (s->step_pos0 == 0 && s->err.code == TOME_ERESOURCE && !strncmp(s->err.msg, "GPU KV cache:", 13))
        memset(&s->err, 0, sizeof s->err); /* as on the CPU: a new sequence forgets a cache failure */
    if (!failed(s)) step_prepare(s, s->step_pos0);
    if (!failed(s)) {
        s->n_steps++;
        if (!step_graph(be)) run_all(be);
    }
    /* this step's list is the next one's reference */
    op_rec *t = s->prev_log;
    s->prev_log = s->log;
    s->log = t;
    arrsetlen(s->log, 0);
    if (!s->step_logits) return;
    if (failed(s)) memset(s->step_logits, 0, s->step_logits_n * sizeof(float)); /* never uninitialised */
    else cuda_download(s->d, s->step_logits, s->logits, s->step_logits_n * sizeof(float), &s->err);
}

void cuda_backend_graph_stats(tome_backend *be, uint64_t *steps, uint64_t *replays, const char **off) {
    const gpu_state *s = ST(be);
    *steps = s->n_steps;
    *replays = s->n_replays;
    *off = s->use_graphs ? NULL : s->graphs_off;
}

/* ---- synthetic fill (benchmarks) ---------------------------------------------------------- */

int cuda_backend_fill_kv(tome_backend *be, int64_t n, uint64_t seed, terr *e) {
    gpu_state *s = ST(be);
    const tome_hparams *hp = &s->hp;
    if (failed(s)) { *e = s->err; return s->err.code; }
    if (n < 1 || n > s->n_ctx) return terr_set(e, TOME_EFLAGS, "fill-kv: %lld positions, the cache holds %d", (long long)n, s->n_ctx);
    /* the synthetic rows live in the logits buffer ([n_batch][n_vocab] f32, idle between forwards):
     * nothing more is allocated, so a cache planned to the last byte still fills */
    const size_t kd = (size_t)hp->n_head_kv * hp->head_dim, vd = (size_t)hp->n_head_kv * hp->head_dim_v;
    if (kd + vd > (size_t)hp->n_vocab)
        return terr_set(e, TOME_EUNSUPPORTED, "fill-kv: kv rows of %zu values exceed the vocabulary (%d)", kd + vd,
                        hp->n_vocab);
    const int B = s->n_batch;
    float *h = tmalloc_array((size_t)B * (kd + vd), sizeof(float));
    if (!h) return terr_set(e, TOME_ERESOURCE, "fill-kv: out of memory");
    uint64_t x = seed | 1;
    for (size_t i = 0; i < (size_t)B * (kd + vd); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        h[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    const CUdeviceptr k = s->logits, v = s->logits + (CUdeviceptr)B * kd * sizeof(float);
    int rc = cuda_upload(s->d, k, h, (size_t)B * (kd + vd) * sizeof(float), e);
    free(h);
    if (rc) return rc;
    for (int64_t p0 = 0; p0 < n && !failed(s); p0 += B) {
        const int c = (int)TOME_MIN((int64_t)B, n - p0);
        for (int i = 0; i < c; i++) rope_cos_sin(&s->rope, p0 + i, s->cs_host + (size_t)i * s->rope.dim);
        if (s->rope.dim > 0 && upload_async(s, s->cs, s->cs_host, (size_t)c * s->rope.dim * sizeof(float), &s->err))
            break;
        kv_prepare(s, c, (int)p0); /* p0 == 0: a new sequence */
        for (int l = 0; l < hp->n_layer && !failed(s); l++) {
            cuda_kv_layer L = kv_layer(s, l);
            cuda_rope_kv_store(s->d, &L, s->dt, s->bt, p0, c, 0, k, v, s->rope.dim > 0 ? s->cs : 0, 0, s->rope.dim,
                               hp->rope_neox, &s->err);
        }
    }
    return cuda_backend_error(be, e);
}

int cuda_backend_time_attention(tome_backend *be, int64_t n_past, int reps, double *ms, double *bytes, terr *e) {
    gpu_state *s = ST(be);
    const tome_hparams *hp = &s->hp;
    cuda_dev *d = s->d;
    if (failed(s)) { *e = s->err; return s->err.code; }
    if (!s->flash || n_past < 1 || n_past > arrlen(s->bt_host) * (int64_t)s->kv.cfg.page_tokens || reps < 1)
        return terr_set(e, TOME_EFLAGS, "time-attention: %lld positions (flash-decode shape: %d)", (long long)n_past,
                        s->flash);
    const size_t qn = (size_t)hp->n_head * hp->head_dim, on = (size_t)hp->n_head * hp->head_dim_v;
    if (qn + on > (size_t)s->n_batch * (size_t)hp->n_vocab)
        return terr_set(e, TOME_EUNSUPPORTED, "time-attention: q and out exceed the logits buffer");
    const CUdeviceptr q = s->logits, out = s->logits + qn * sizeof(float);
    /* the header of a step at n_past - 1, without touching the cache */
    const int64_t qp = n_past - 1;
    int64_t lo = 0, se = 0;
    if (s->window > 0) {
        lo = TOME_MAX((int64_t)0, qp - s->window + 1);
        se = TOME_MIN((int64_t)s->sinks, lo);
    }
    const uint64_t v[4] = {(uint64_t)qp, (uint64_t)se, (uint64_t)lo, (uint64_t)(se + qp + 1 - lo)};
    memcpy(s->step_host + STEP_POS, v, sizeof v);
    int rc = cuda_upload(d, s->step, s->step_host, step_bytes(s), e);
    if (rc) return rc;
    CUevent a = NULL, b = NULL;
    float el = 0;
    CU_TRY(d, e, d->api.cuEventCreate(&a, 0));
    CUresult r = d->api.cuEventCreate(&b, 0);
    if (r == 0) r = d->api.cuEventRecord(a, d->stream);
    for (int i = 0; r == 0 && i < reps && !failed(s); i++)
        for (int l = 0; l < hp->n_layer && !failed(s); l++) {
            cuda_kv_layer L = kv_layer(s, l);
            cuda_flash_decode_step(d, out, q, hp->n_head, &L, s->dt, s->bt, s->step + STEP_NSINK,
                                   1.0f / sqrtf((float)hp->head_dim), s->fd_splits, s->fd_scratch, s->fd_bytes, &s->err);
        }
    if (r == 0) r = d->api.cuEventRecord(b, d->stream);
    if (r == 0) r = d->api.cuEventSynchronize(b);
    if (r == 0) r = d->api.cuEventElapsedTime(&el, a, b);
    d->api.cuEventDestroy(a);
    if (b) d->api.cuEventDestroy(b);
    if (r != 0) return cuda_fail(d, r, "cuEvent* (time-attention)", __FILE__, __LINE__, e);
    if ((rc = cuda_backend_error(be, e))) return rc;
    *ms = el / reps;
    *bytes = (double)v[3] * hp->n_layer * (double)(s->kv.page_bytes_k + s->kv.page_bytes_v) / s->kv.cfg.page_tokens;
    return 0;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void gpu_destroy(tome_backend *be) {
    if (!be) return;
    gpu_state *s = ST(be);
    if (s) {
        if (s->d) {
            s->d->api.cuStreamSynchronize(s->d->stream);
            drop_graph(s);
            CUdeviceptr bufs[] = {s->w, s->kpool, s->vpool, s->bt, s->ids, s->cs, s->logits, s->fd_scratch, s->step,
                                  s->gemm_x};
            for (size_t i = 0; i < TOME_ARRAY_LEN(bufs); i++) cuda_free(s->d, bufs[i]);
        }
        kv_close(&s->kv);
        arrfree(s->bt_host);
        arrfree(s->log);
        arrfree(s->prev_log);
        free(s->step_host);
        free(s->cs_host);
        free(s);
    }
    free(be);
}

/* The st_* entries record the op during a deferred decode step, else call the gpu_* op. */
static const backend_ops k_gpu_ops = {
    .name = "cuda",
    .alloc = gpu_alloc,
    .release = gpu_release,
    .embed = st_embed,
    .rmsnorm = st_rmsnorm,
    .matmul = st_matmul,
    .rope_kv_store = st_rope_kv_store,
    .attention = st_attention,
    .swiglu = st_swiglu,
    .add = st_add,
    .logits = st_logits,
    .destroy = gpu_destroy,
    .step_begin = gpu_step_begin,
    .step_end = gpu_step_end,
};

static int copy_pages(gpu_state *s, int32_t dst, int32_t src, terr *e) {
    const kv_cache *c = &s->kv;
    for (int l = 0; l < s->hp.n_layer; l++) {
        cuda_kv_layer L = kv_layer(s, l);
        CU_TRY(s->d, e, s->d->api.cuMemcpyDtoDAsync(L.k + (uint64_t)dst * c->page_bytes_k,
                                                     L.k + (uint64_t)src * c->page_bytes_k, c->page_bytes_k,
                                                     s->d->stream));
        CU_TRY(s->d, e, s->d->api.cuMemcpyDtoDAsync(L.v + (uint64_t)dst * c->page_bytes_v,
                                                     L.v + (uint64_t)src * c->page_bytes_v, c->page_bytes_v,
                                                     s->d->stream));
    }
    return 0;
}

/* kvcache's copy-on-write hook: page src of every layer into page dst, on the device. */
static void copy_page_hook(void *user, int32_t dst, int32_t src) {
    gpu_state *s = user;
    if (!failed(s)) copy_pages(s, dst, src, &s->err);
}

/* Uploads [host, host + bytes) tensor by tensor in slices of at most 64 MiB, reporting progress. */
static int upload_weights(gpu_state *s, cuda_upload_fn progress, void *ud, terr *e) {
    const uint64_t slice = 64ull << 20;
    uint64_t done = 0, last = 0;
    while (done < s->host_bytes) {
        const uint64_t n = TOME_MIN(slice, s->host_bytes - done);
        CU_TRY(s->d, e, s->d->api.cuMemcpyHtoD(s->w + done, s->host + done, (size_t)n));
        done += n;
        if (progress && (done - last >= (256ull << 20) || done == s->host_bytes)) {
            progress(ud, done, s->host_bytes);
            last = done;
        }
    }
    return 0;
}

uint64_t cuda_backend_scratch_bytes(const tome_hparams *hp, int n_batch) {
    const uint64_t B = (uint64_t)(n_batch > 0 ? n_batch : 1);
    /* flash-decode partials: at most 4 blocks per SM over the kv heads, taking 256 SMs */
    const uint64_t splits = (1024u + (uint64_t)TOME_MAX(hp->n_head_kv, 1) - 1) / (uint64_t)TOME_MAX(hp->n_head_kv, 1);
    return B * sizeof(int32_t) + B * (uint64_t)TOME_MAX(hp->rope_dim, 2) * sizeof(float) +
           B * (uint64_t)hp->n_vocab * sizeof(float) + 4096u /* a block table to start with */ +
           STEP_CS + (uint64_t)TOME_MAX(hp->rope_dim, 2) * sizeof(float) /* the decode-step header */ +
           (B >= GPU_GEMM_MIN_TOKENS ? cuda_gemm_scratch_bytes((int)B, gemm_cols(hp)) : 0) +
           cuda_flash_decode_scratch_bytes(TOME_MAX(hp->n_head, 1), TOME_MAX(hp->head_dim_v, 1), (int)splits);
}

int cuda_check_weights(const gguf *g, terr *e) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        switch (t->type) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
            continue;
        default: {
            const ggml_type_info *ti = ggml_type_get(t->type);
            return terr_set(e, TOME_EUNSUPPORTED, "%s: tensor '%s' has type %s, which the GPU does not run yet (F32, "
                            "F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K); the CPU does (--cpu)", g->path, t->name,
                            ti ? ti->name : "unknown");
        }
        }
    }
    return 0;
}

int cuda_mem_info(cuda_dev *d, uint64_t *free_b, uint64_t *total_b, terr *e) {
    size_t f = 0, t = 0;
    CU_TRY(d, e, d->api.cuCtxSetCurrent(d->ctx));
    CU_TRY(d, e, d->api.cuMemGetInfo(&f, &t));
    *free_b = f;
    *total_b = t;
    return 0;
}

int cuda_backend_error(tome_backend *be, terr *e) {
    gpu_state *s = ST(be);
    if (!failed(s)) {
        CUresult r = s->d->api.cuStreamSynchronize(s->d->stream);
        if (r != 0) cuda_fail(s->d, r, "cuStreamSynchronize(stream)", __FILE__, __LINE__, &s->err);
    }
    if (!failed(s)) return 0;
    *e = s->err;
    return s->err.code;
}

int cuda_backend_new(tome_backend **out, const backend_config *cfg, cuda_dev *d, const void *data, uint64_t bytes,
                     cuda_upload_fn progress, void *ud, terr *e) {
    *out = NULL;
    const tome_hparams *hp = cfg->hp;
    if (cfg->kv_type != KV_F16 && cfg->kv_type != KV_Q8 && cfg->kv_type != KV_Q4)
        return terr_set(e, TOME_EFLAGS, "--kv f32: the GPU keeps its KV cache in f16, q8 or q4 pages; use one of "
                        "those, or --cpu");
    if (cfg->kv_type != KV_F16 && !flash_shape_ok(hp))
        return terr_set(e, TOME_EUNSUPPORTED, "--kv %s: the GPU's quantised KV attention needs head dims that are "
                        "multiples of 8 up to 256 and at most 32 query heads per kv head (this model: %d heads over "
                        "%d, dims %d/%d); use --kv f16, or --cpu", cfg->kv_type == KV_Q8 ? "q8" : "q4", hp->n_head,
                        hp->n_head_kv, hp->head_dim, hp->head_dim_v);
    if (!bytes) return terr_set(e, TOME_EINPUT, "GPU: the model has no tensor data to upload");
    tome_backend *be = calloc(1, sizeof *be);
    gpu_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return terr_set(e, TOME_ERESOURCE, "cuda backend: out of memory");
    }
    be->ops = &k_gpu_ops;
    be->impl = s;
    s->d = d;
    s->hp = *hp;
    s->rope = *cfg->rope;
    s->n_ctx = cfg->n_ctx;
    s->n_batch = cfg->n_batch > 0 ? cfg->n_batch : 1;
    s->window = cfg->window > 0 ? cfg->window : 0;
    s->sinks = cfg->sinks > 0 ? cfg->sinks : 0;
    s->streaming = s->window > 0 && s->sinks > 0;
    s->host = data;
    s->host_bytes = bytes;
    s->dt = (kv_dtype)cfg->kv_type;
    s->flash = flash_shape_ok(hp);
    int rc = 0;
    const int P = cfg->page_tokens > 0 ? cfg->page_tokens : KV_DEFAULT_PAGE_TOKENS;
    s->n_pages = cpu_kv_pages(s->n_ctx, s->n_batch, s->window, s->sinks, P);
    kv_config kc = {hp->n_layer, hp->n_head_kv, hp->head_dim, hp->head_dim_v, P, s->dt, s->n_pages, 1,
                    copy_page_hook, s, 0};
    const size_t rd = (size_t)TOME_MAX(s->rope.dim, 2);
    s->cs_host = tmalloc_array((size_t)s->n_batch * rd, sizeof(float));
    if (!s->cs_host) rc = terr_set(e, TOME_ERESOURCE, "cuda backend: out of memory");
    if (!rc) rc = cuda_mem_info(d, &(uint64_t){0}, &(uint64_t){0}, e); /* makes the context current */
    if (!rc) rc = kv_open(&s->kv, &kc, e);
    if (!rc) rc = kv_seq_new(&s->kv, &s->seq, e);
    /* the largest first: weights, then the pool, so an out-of-memory names the big one */
    if (!rc) rc = cuda_alloc(d, &s->w, (size_t)bytes, e);
    if (!rc) rc = cuda_alloc(d, &s->kpool, (size_t)hp->n_layer * (size_t)s->n_pages * s->kv.page_bytes_k, e);
    if (!rc) rc = cuda_alloc(d, &s->vpool, (size_t)hp->n_layer * (size_t)s->n_pages * s->kv.page_bytes_v, e);
    if (!rc) rc = dev_zalloc(s, &s->ids, (size_t)s->n_batch * sizeof(int32_t), e);
    if (!rc) rc = dev_zalloc(s, &s->cs, (size_t)s->n_batch * rd * sizeof(float), e);
    if (!rc) rc = dev_zalloc(s, &s->logits, (size_t)s->n_batch * (size_t)hp->n_vocab * sizeof(float), e);
    if (!rc && s->n_batch >= GPU_GEMM_MIN_TOKENS) { /* prefill chunks through cuda_gemm */
        s->gemm_x_bytes = cuda_gemm_scratch_bytes(s->n_batch, gemm_cols(hp));
        rc = dev_zalloc(s, &s->gemm_x, s->gemm_x_bytes, e);
    }
    if (!rc && s->flash) { /* the most splits any key count gets (cuda_flash_decode_splits) */
        cuda_kv_layer L0 = kv_layer(s, 0);
        s->fd_splits = cuda_flash_decode_splits(d, &L0, (int64_t)s->n_ctx);
        s->fd_bytes = cuda_flash_decode_scratch_bytes(hp->n_head, hp->head_dim_v, s->fd_splits);
        rc = dev_zalloc(s, &s->fd_scratch, s->fd_bytes, e);
    }
    if (!rc) {
        s->bt_cap = 1024;
        rc = dev_zalloc(s, &s->bt, (size_t)s->bt_cap * sizeof(int32_t), e);
    }
    if (!rc) rc = dev_zalloc(s, &s->step, step_bytes(s), e);
    if (!rc && !(s->step_host = calloc(1, step_bytes(s)))) rc = terr_set(e, TOME_ERESOURCE, "cuda backend: out of memory");
    /* CUDA graphs for decode steps: unless asked not to, or the driver lacks the entry points */
    const char *ng = getenv("TOME_NO_GRAPHS");
    s->use_graphs = 0;
    if (cfg->no_graphs) s->graphs_off = "--no-graphs";
    else if (ng && *ng && strcmp(ng, "0")) s->graphs_off = "TOME_NO_GRAPHS";
    else if (!cuda_has_graphs(d)) s->graphs_off = "the driver lacks the CUDA graph entry points";
    else if (!s->flash) s->graphs_off = "this shape has no flash-decode path";
    else s->use_graphs = 1;
    if (!rc) rc = upload_weights(s, progress, ud, e);
    if (!rc) rc = cuda_sync(d, e);
    if (rc) {
        gpu_destroy(be);
        return rc;
    }
    *out = be;
    return 0;
}

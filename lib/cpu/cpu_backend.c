/* cpu_backend.c — reference CPU implementation of backend_ops (see cpu.h).
 *
 * Layout: activations are row-major [n tokens][width] float arrays; weights are tome_weight
 * views into the GGUF mapping. Quantized activations for one matmul live in `qbuf`
 * (n_batch rows of the widest activation in its vec_dot_type, sized for F32 which is the
 * largest). The KV cache is lib/kvcache.h's paged one (one sequence, id `seq`): attention
 * calls kv_attend per (token, kv-head group), which reads the pages in place with an online
 * softmax, so no scratch grows with the context. The contiguous float cache (kv_type
 * KV_TYPE_F32) remains as the reference: it uses one score row of n_ctx floats per thread.
 *
 * Streaming (sinks > 0, window > 0): before a chunk is stored, every page wholly inside
 * [sinks, first query's window start) is released and its block-table slot set to -1;
 * kvcache's attention never reads such a slot (its mask skips those keys). The pool then
 * needs only the sink pages plus the window and one chunk, whatever the position.
 *
 * Matmuls go through the kernel table of cpu/simd.h (AVX-512 / AVX2 / scalar, chosen at run
 * time; "scalar" is quant.c's reference bit for bit). The --exact path stays plain C:
 * tq_dot_f32 on float activations, the yardstick the other paths are measured against.
 */
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "cpu/pool.h"
#include "kvcache.h"
#include "cpu/simd.h"
#include "quant.h"

typedef struct cpu_state {
    tome_hparams hp;
    rope_table rope;
    int n_ctx, n_batch, exact;
    int window, sinks, streaming; /* attention mask; streaming = sinks > 0 && window > 0 */
    int paged;              /* 1: kv (paged cache); 0: k_cache / v_cache (contiguous float) */
    kv_cache kv;            /* paged cache, one sequence */
    int seq;                /* its sequence id */
    int kv_failed;          /* a page allocation failed (the engine sizes the pool so it cannot) */
    int64_t evict_next;     /* streaming: block-table slots below this are evicted or sinks */
    tpool *pool;
    cpu_kernels kern;       /* dot / quantize kernels for this CPU (scalar = the reference) */
    int kv_dim, kv_dim_v;   /* n_head_kv * head_dim, n_head_kv * head_dim_v */
    float **k_cache;        /* [n_layer] -> [n_ctx][kv_dim] (keys after RoPE; float path only) */
    float **v_cache;        /* [n_layer] -> [n_ctx][kv_dim_v] */
    uint8_t *qbuf;          /* n_batch quantized activation rows */
    size_t qbuf_row;        /* bytes reserved per row in qbuf */
    /* what qbuf holds: the quantisation of qc_x [qc_n][qc_cols] as qc_vdt, so that the Q, K, V
     * (and gate, up) projections of one input quantise it once; NULL = nothing. Every op that
     * writes an activation buffer forgets it (qc_forget), a matmul whose output overlaps it too. */
    const float *qc_x;
    int qc_n;
    int64_t qc_cols;
    uint32_t qc_vdt;
    float *scores;          /* [n_threads][n_ctx] attention scratch (float path only) */
    float *rowbuf;          /* [n_threads][widest] a dequantized weight row (--exact) */
    int64_t widest;         /* widest activation row */
    float *cs;              /* [n_batch][rope dim] cos/sin per position */
} cpu_state;

static cpu_state *ST(tome_backend *be) { return (cpu_state *)be->impl; }
static void qc_forget(tome_backend *be) { ST(be)->qc_x = NULL; }

uint64_t cpu_kv_bytes(const tome_hparams *hp, int n_ctx) {
    return (uint64_t)hp->n_layer * (uint64_t)n_ctx * (uint64_t)hp->n_head_kv *
           (uint64_t)(hp->head_dim + hp->head_dim_v) * sizeof(float);
}

uint64_t cpu_kv_token_bytes(const tome_hparams *hp, int kv_type) {
    if (kv_type == KV_TYPE_F32) return cpu_kv_bytes(hp, 1);
    /* K and V rows may differ in length: count each half with its own head dim */
    return (uint64_t)(kv_bytes_per_token(hp->n_layer, hp->n_head_kv, hp->head_dim, (kv_dtype)kv_type) +
                      kv_bytes_per_token(hp->n_layer, hp->n_head_kv, hp->head_dim_v, (kv_dtype)kv_type)) / 2;
}

int64_t cpu_kv_pages(int n_ctx, int n_batch, int window, int sinks, int page_tokens) {
    const int64_t P = page_tokens > 0 ? page_tokens : KV_DEFAULT_PAGE_TOKENS;
    if (sinks > 0 && window > 0) /* streaming: sink pages + a chunk's span of the window
                                    (W + n_batch - 1 keys over page boundaries), whatever n_ctx */
        return ((int64_t)sinks + P - 1) / P + ((int64_t)window + n_batch - 1 + P - 1) / P + 1;
    return ((int64_t)n_ctx + P - 1) / P;
}

uint64_t cpu_kv_total_bytes(const tome_hparams *hp, int kv_type, int n_ctx, int n_batch, int window, int sinks,
                            int page_tokens) {
    if (kv_type == KV_TYPE_F32) return cpu_kv_bytes(hp, n_ctx);
    const int P = page_tokens > 0 ? page_tokens : KV_DEFAULT_PAGE_TOKENS;
    const uint64_t page = (uint64_t)hp->n_layer *
                          (kv_page_bytes((kv_dtype)kv_type, hp->n_head_kv, hp->head_dim, P) +
                           kv_page_bytes((kv_dtype)kv_type, hp->n_head_kv, hp->head_dim_v, P));
    return page * (uint64_t)cpu_kv_pages(n_ctx, n_batch, window, sinks, P);
}

/* ---- buffers ---------------------------------------------------------------------------- */

static float *cpu_alloc(tome_backend *be, size_t n) {
    (void)be;
    return tcalloc(n ? n : 1, sizeof(float));
}

static void cpu_release(tome_backend *be, float *buf) {
    (void)be;
    free(buf);
}

/* ---- embed / norms / elementwise ------------------------------------------------------- */

static void cpu_embed(tome_backend *be, float *x, const tome_weight *emb, const int32_t *ids, int n) {
    qc_forget(be);
    for (int i = 0; i < n; i++)
        tq_dequantize(emb->type, (const uint8_t *)emb->data + (uint64_t)ids[i] * emb->row_bytes,
                      x + (int64_t)i * emb->cols, emb->cols);
}

/* The elementwise ops run on the pool when a prefill chunk makes them worth a fork-join
 * (one row of a few thousand values is ~1 µs: the caller does it alone). */
enum { EW_CHUNK = 4096 }; /* values per work item of swiglu / add */

typedef struct ew_job {
    float *y;
    const float *x, *u;
    const float *g;
    int64_t d;
    float eps;
} ew_job;

static void rms_rows(void *ctx, int64_t s, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    const int64_t d = j->d;
    for (int64_t r = s; r < e; r++) {
        const float *xr = j->x + r * d;
        float *yr = j->y + r * d;
        double sum = 0.0; /* as ggml: squares summed in double */
        for (int64_t i = 0; i < d; i++) sum += (double)xr[i] * (double)xr[i];
        const float mean = (float)(sum / (double)d);
        const float scale = 1.0f / sqrtf(mean + j->eps);
        for (int64_t i = 0; i < d; i++) yr[i] = (xr[i] * scale) * j->g[i];
    }
}

static void cpu_rmsnorm(tome_backend *be, float *y, const float *x, const tome_weight *w, int n_rows,
                        float eps) {
    qc_forget(be);
    ew_job j = {y, x, NULL, w->data, w->cols, eps};
    if (n_rows >= 4 && ST(be)->pool) tpool_run(ST(be)->pool, n_rows, 1, rms_rows, &j);
    else rms_rows(&j, 0, n_rows, 0);
}

static void swiglu_range(void *ctx, int64_t s, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    for (int64_t i = s; i < e; i++) {
        const float g = j->x[i];
        j->y[i] = (g / (1.0f + expf(-g))) * j->u[i];
    }
}

static void cpu_swiglu(tome_backend *be, float *y, const float *gate, const float *up, int64_t n) {
    qc_forget(be);
    ew_job j = {y, gate, up, NULL, 0, 0};
    if (n >= 4 * EW_CHUNK && ST(be)->pool) tpool_run(ST(be)->pool, n, EW_CHUNK, swiglu_range, &j);
    else swiglu_range(&j, 0, n, 0);
}

static void add_range(void *ctx, int64_t s, int64_t e, int tid) {
    (void)tid;
    const ew_job *j = ctx;
    for (int64_t i = s; i < e; i++) j->y[i] += j->x[i];
}

static void cpu_add(tome_backend *be, float *y, const float *x, int64_t n) {
    qc_forget(be);
    ew_job j = {y, x, NULL, NULL, 0, 0};
    if (n >= 4 * EW_CHUNK && ST(be)->pool) tpool_run(ST(be)->pool, n, EW_CHUNK, add_range, &j);
    else add_range(&j, 0, n, 0);
}

/* ---- matmul ----------------------------------------------------------------------------- */

typedef struct mm_job {
    cpu_state *s;
    float *y;
    const tome_weight *w;
    const float *bias;
    const float *x;
    int n;
    uint32_t vdt;        /* activation type for the dot products */
    size_t a_row;        /* bytes per quantized activation row */
} mm_job;

/* Activations into the weight type's vec_dot_type: the kernels' quantizers write exactly the
 * bytes tq_quantize does (simd.h), so this is llama.cpp's rounding on every path. */
static void mm_quantize(void *ctx, int64_t s, int64_t e, int tid) {
    (void)tid;
    mm_job *j = ctx;
    for (int64_t i = s; i < e; i++)
        cpu_quantize_act(&j->s->kern, j->vdt, j->x + i * j->w->cols, j->s->qbuf + i * j->s->qbuf_row, j->w->cols);
}

/* Rows per unit of a matmul job: the 16-row groups of the prefill kernels (simd.h). */
#define MM_ROWS_ALIGN 16

static void mm_rows(void *ctx, int64_t s, int64_t e, int tid) {
    mm_job *j = ctx;
    const tome_weight *w = j->w;
    const int64_t cols = w->cols, rows = w->rows;
    if (j->s->exact) {
        /* each row dequantized once for all n tokens; the sum is tq_dot_f32's (double, in order) */
        float *buf = j->s->rowbuf + (size_t)tid * (size_t)j->s->widest;
        for (int64_t r = s; r < e; r++) {
            tq_dequantize(w->type, (const uint8_t *)w->data + r * w->row_bytes, buf, cols);
            for (int i = 0; i < j->n; i++) {
                const float *x = j->x + i * cols;
                double acc = 0;
                for (int64_t c = 0; c < cols; c++) acc += (double)buf[c] * x[c];
                j->y[i * rows + r] = (float)acc;
            }
        }
    } else if (j->vdt == GGML_TYPE_F32) {
        cpu_matmul(&j->s->kern, w->type, cols, w->data, w->row_bytes, s, e, j->x, (size_t)cols * sizeof(float), j->n,
                   j->y, (size_t)rows);
    } else {
        cpu_matmul(&j->s->kern, w->type, cols, w->data, w->row_bytes, s, e, j->s->qbuf, j->s->qbuf_row, j->n, j->y,
                   (size_t)rows);
    }
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int64_t r = s; r < e; r++) j->y[i * rows + r] += j->bias[r];
}

/* Quantises x for weight w unless the cache already holds it (see qc_x). */
static void mm_prepare(cpu_state *s, mm_job *j) {
    if (s->exact || j->vdt == GGML_TYPE_F32) return;
    if (s->qc_x == j->x && s->qc_n == j->n && s->qc_cols == j->w->cols && s->qc_vdt == j->vdt) return;
    j->a_row = ggml_row_size(j->vdt, j->w->cols);
    tpool_run(s->pool, j->n, 1, mm_quantize, j);
    s->qc_x = j->x, s->qc_n = j->n, s->qc_cols = j->w->cols, s->qc_vdt = j->vdt;
}

/* An output overlapping the quantised input makes it stale. */
static void mm_done(cpu_state *s, const float *y, int n, int64_t rows) {
    if (!s->qc_x) return;
    uintptr_t y0 = (uintptr_t)y, y1 = (uintptr_t)(y + (size_t)n * (size_t)rows);
    uintptr_t x0 = (uintptr_t)s->qc_x, x1 = (uintptr_t)(s->qc_x + (size_t)s->qc_n * (size_t)s->qc_cols);
    if (y0 < x1 && x0 < y1) s->qc_x = NULL;
}

static void op_matmul(tome_backend *be, float *y, const tome_weight *w, const tome_weight *bias,
                       const float *x, int n) {
    cpu_state *s = ST(be);
    mm_job j = {s, y, w, bias ? (const float *)bias->data : NULL, x, n, tq_vec_dot_type(w->type), 0};
    mm_prepare(s, &j);
    tpool_run(s->pool, w->rows, MM_ROWS_ALIGN, mm_rows, &j);
    mm_done(s, y, n, w->rows);
}

/* A group of matmuls of one input as one job: the rows of all weights in a row, cut into
 * MM_ROWS_ALIGN-row units (each weight starts a unit of its own), so the prefill kernels see
 * the same 16-row groups as in op_matmul and every output is bit for bit op_matmul's. */
typedef struct mm_group {
    int k;
    mm_job j[BACKEND_GROUP_MAX];
    int64_t u0[BACKEND_GROUP_MAX + 1]; /* first unit of each weight; u0[k] = all units */
} mm_group;

static void mg_units(void *ctx, int64_t s, int64_t e, int tid) {
    mm_group *g = ctx;
    for (int i = 0; i < g->k; i++) {
        int64_t a = TOME_MAX(s, g->u0[i]), b = TOME_MIN(e, g->u0[i + 1]);
        if (a >= b) continue;
        int64_t r0 = (a - g->u0[i]) * MM_ROWS_ALIGN, r1 = TOME_MIN(g->j[i].w->rows, (b - g->u0[i]) * MM_ROWS_ALIGN);
        mm_rows(&g->j[i], r0, r1, tid);
    }
}

static void op_matmul_group(tome_backend *be, int k, float *const y[], const tome_weight *const w[],
                            const tome_weight *const bias[], const float *x, int n) {
    cpu_state *s = ST(be);
    mm_group g = {.k = k};
    int same = k >= 1 && k <= BACKEND_GROUP_MAX;
    for (int i = 0; same && i < k; i++) {
        g.j[i] = (mm_job){s, y[i], w[i], bias[i] ? (const float *)bias[i]->data : NULL, x, n,
                          tq_vec_dot_type(w[i]->type), 0};
        same = w[i]->cols == w[0]->cols && g.j[i].vdt == g.j[0].vdt;
        g.u0[i + 1] = g.u0[i] + (w[i]->rows + MM_ROWS_ALIGN - 1) / MM_ROWS_ALIGN;
    }
    if (!same) { /* activations of different types or widths: the quantisation cache holds one */
        for (int i = 0; i < k; i++) op_matmul(be, y[i], w[i], bias[i], x, n);
        return;
    }
    mm_prepare(s, &g.j[0]);
    tpool_run(s->pool, g.u0[k], 1, mg_units, &g);
    for (int i = 0; i < k; i++) mm_done(s, y[i], n, w[i]->rows);
}

/* ---- RoPE + KV store ------------------------------------------------------------------ */

/* Paged cache: make positions [pos0, pos0+n) exist in the sequence. Runs once per forward
 * (layer 0): pos0 == 0 starts afresh, pos0 below the length truncates (re-evaluation), and in
 * streaming mode whole pages no query of this chunk can see are released first. */
static void kv_prepare(cpu_state *s, int n, int pos0) {
    kv_cache *c = &s->kv;
    terr e = {0};
    kv_seq *sq = &c->seqs[s->seq];
    const int64_t P = c->cfg.page_tokens;
    if (pos0 == 0) {
        s->kv_failed = 0; /* a new sequence: earlier failures are forgotten */
        s->evict_next = ((int64_t)s->sinks + P - 1) / P; /* pages holding sinks stay */
    }
    if (pos0 == 0 && sq->len > 0) {
        kv_seq_free(c, s->seq);
        if (kv_seq_new(c, &s->seq, &e)) {
            s->kv_failed = 1;
            return;
        }
        sq = &c->seqs[s->seq];
    } else if (pos0 < sq->len) {
        /* a rewind: fine unless pages it would need again were evicted */
        for (ptrdiff_t i = 0; i < arrlen(sq->pages); i++)
            if (sq->pages[i] < 0) {
                s->kv_failed = 1;
                return;
            }
        if (kv_seq_truncate(c, s->seq, pos0, &e)) s->kv_failed = 1;
    }
    if (s->kv_failed) return;
    if (s->streaming) {
        /* a cursor keeps this O(pages evicted), not O(pages so far), per forward */
        const int64_t lo = (int64_t)pos0 - s->window + 1; /* first query's window start */
        for (; (s->evict_next + 1) * P <= lo && s->evict_next < arrlen(sq->pages); s->evict_next++)
            kv_seq_drop_page(c, s->seq, s->evict_next);
    }
    if (kv_seq_append(c, s->seq, n, &e)) s->kv_failed = 1;
}

static void cpu_rope_kv_store(tome_backend *be, int layer, float *q, float *k, const float *v, int n,
                              int pos0) {
    qc_forget(be);
    cpu_state *s = ST(be);
    const tome_hparams *hp = &s->hp;
    const int qd = hp->n_head * hp->head_dim;
    for (int i = 0; i < n; i++) {
        float *cs = s->cs + (size_t)i * s->rope.dim;
        rope_cos_sin(&s->rope, (int64_t)pos0 + i, cs);
        rope_apply_cs(cs, s->rope.dim, q + (int64_t)i * qd, hp->n_head, hp->head_dim, hp->rope_neox);
        rope_apply_cs(cs, s->rope.dim, k + (int64_t)i * s->kv_dim, hp->n_head_kv, hp->head_dim,
                      hp->rope_neox);
        if (!s->paged) {
            memcpy(s->k_cache[layer] + (int64_t)(pos0 + i) * s->kv_dim, k + (int64_t)i * s->kv_dim,
                   (size_t)s->kv_dim * sizeof(float));
            memcpy(s->v_cache[layer] + (int64_t)(pos0 + i) * s->kv_dim_v, v + (int64_t)i * s->kv_dim_v,
                   (size_t)s->kv_dim_v * sizeof(float));
        }
    }
    if (s->paged) {
        if (layer == 0 && (pos0 == 0 || !s->kv_failed)) kv_prepare(s, n, pos0);
        if (!s->kv_failed && kv_store(&s->kv, s->seq, layer, pos0, n, k, v)) s->kv_failed = 1;
    }
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct att_job {
    cpu_state *s;
    int layer, pos0;
    float *out;
    const float *q;
    int n; /* query positions */
} att_job;

static void att_items(void *ctx, int64_t st, int64_t en, int tid) {
    att_job *j = ctx;
    cpu_state *s = j->s;
    const tome_hparams *hp = &s->hp;
    const int hd = hp->head_dim, hdv = hp->head_dim_v, nh = hp->n_head;
    const int group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *sc = s->scores + (size_t)tid * s->n_ctx;
    for (int64_t it = st; it < en; it++) {
        const int i = (int)(it / nh), h = (int)(it % nh), kvh = h / group;
        const int pos = j->pos0 + i;
        /* llama.cpp's sliding-window rule: key p0 is hidden from query p1 when p1 - p0 >= window;
         * sinks [0, sinks) stay visible (the float path keeps every position, so no eviction) */
        const int lo = s->window > 0 && pos - s->window + 1 > 0 ? pos - s->window + 1 : 0;
        const int ns = TOME_MIN(s->sinks, lo);
        const float *qh = j->q + ((int64_t)i * nh + h) * hd;
        const float *K = s->k_cache[j->layer] + (int64_t)kvh * hd;
        const float *V = s->v_cache[j->layer] + (int64_t)kvh * hdv;
        float mx = -INFINITY;
        for (int p = 0; p <= pos; p++) {
            if (p == ns && p < lo) p = lo;
            const float *kp = K + (int64_t)p * s->kv_dim;
            float d = 0.0f;
            for (int t = 0; t < hd; t++) d += qh[t] * kp[t];
            d *= scale;
            sc[p] = d;
            if (d > mx) mx = d;
        }
        double sum = 0.0;
        for (int p = 0; p <= pos; p++) {
            if (p == ns && p < lo) p = lo;
            sc[p] = expf(sc[p] - mx);
            sum += sc[p];
        }
        const float inv = (float)(1.0 / sum);
        float *o = j->out + ((int64_t)i * nh + h) * hdv;
        for (int t = 0; t < hdv; t++) o[t] = 0.0f;
        for (int p = 0; p <= pos; p++) {
            if (p == ns && p < lo) p = lo;
            const float w = sc[p] * inv;
            const float *vp = V + (int64_t)p * s->kv_dim_v;
            for (int t = 0; t < hdv; t++) o[t] += w * vp[t];
        }
    }
}

/* Paged: one item = (token, kv head group); kv_attend reads that group's pages in place. */
/* Work items: (block of ATT_QB query positions, kv head). A block shares each K/V tile among
 * its queries (kv_attend_block); decode is one block of one query per kv head. */
enum { ATT_QB = 16 };

static void att_paged(void *ctx, int64_t st, int64_t en, int tid) {
    (void)tid;
    att_job *j = ctx;
    cpu_state *s = j->s;
    const tome_hparams *hp = &s->hp;
    const int G = hp->n_head_kv, rep = hp->n_head / hp->n_head_kv;
    for (int64_t it = st; it < en; it++) {
        const int i = (int)(it / G) * ATT_QB, g = (int)(it % G);
        const int nq = TOME_MIN(ATT_QB, j->n - i);
        kv_attn a = {hp->n_head, g * rep, (g + 1) * rep, 1.0f / sqrtf((float)hp->head_dim), s->window,
                     s->window > 0 ? s->sinks : 0};
        const float *q = j->q + (int64_t)i * hp->n_head * hp->head_dim;
        float *out = j->out + (int64_t)i * hp->n_head * hp->head_dim_v;
        int rc = nq == 1 ? kv_attend(&s->kv, s->seq, j->layer, &a, q, (int64_t)j->pos0 + i, out)
                         : kv_attend_block(&s->kv, s->seq, j->layer, &a, q, nq, (int64_t)j->pos0 + i, out);
        if (rc) s->kv_failed = 1; /* benign race: every writer stores 1 */
    }
}

static void cpu_attention(tome_backend *be, int layer, float *out, const float *q, int n, int pos0) {
    qc_forget(be);
    cpu_state *s = ST(be);
    att_job j = {s, layer, pos0, out, q, n};
    if (s->paged) {
        if (s->kv_failed) {
            memset(out, 0, (size_t)n * s->hp.n_head * s->hp.head_dim_v * sizeof(float));
            return;
        }
        tpool_run(s->pool, (int64_t)((n + ATT_QB - 1) / ATT_QB) * s->hp.n_head_kv, 1, att_paged, &j);
    } else {
        tpool_run(s->pool, (int64_t)n * s->hp.n_head, 1, att_items, &j);
    }
}

int cpu_backend_failed(tome_backend *be) { return ST(be)->kv_failed; }

/* ---- logits ------------------------------------------------------------------------------ */

static void cpu_logits(tome_backend *be, float *host, float *x, const tome_weight *norm, float eps,
                       const tome_weight *out, int n) {
    cpu_rmsnorm(be, x, x, norm, n, eps);
    op_matmul(be, host, out, NULL, x, n);
    qc_forget(be); /* host is not a backend buffer, and x is the caller's to clobber */
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static void cpu_destroy(tome_backend *be) {
    if (!be) return;
    cpu_state *s = ST(be);
    if (s) {
        for (int l = 0; s->k_cache && l < s->hp.n_layer; l++) free(s->k_cache[l]);
        for (int l = 0; s->v_cache && l < s->hp.n_layer; l++) free(s->v_cache[l]);
        free(s->k_cache);
        free(s->v_cache);
        free(s->qbuf);
        free(s->scores);
        free(s->rowbuf);
        free(s->cs);
        kv_close(&s->kv);
        if (s->pool) tpool_free(s->pool);
        free(s);
    }
    free(be);
}

static const backend_ops k_cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = op_matmul,
    .rope_kv_store = cpu_rope_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .logits = cpu_logits,
    .destroy = cpu_destroy,
    .matmul_group = op_matmul_group,
};

int cpu_backend_new(tome_backend **out, const backend_config *cfg, terr *e) {
    *out = NULL;
    const tome_hparams *hp = cfg->hp;
    tome_backend *be = calloc(1, sizeof *be);
    cpu_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return terr_set(e, TOME_ERESOURCE, "cpu backend: out of memory");
    }
    be->ops = &k_cpu_ops;
    be->impl = s;
    s->hp = *hp;
    s->rope = *cfg->rope;
    s->n_ctx = cfg->n_ctx;
    s->n_batch = cfg->n_batch > 0 ? cfg->n_batch : 1;
    s->exact = cfg->exact;
    s->window = cfg->window > 0 ? cfg->window : 0;
    s->sinks = cfg->sinks > 0 ? cfg->sinks : 0;
    s->streaming = s->window > 0 && s->sinks > 0;
    s->paged = cfg->kv_type != KV_TYPE_F32;
    s->kv_dim = hp->n_head_kv * hp->head_dim;
    s->kv_dim_v = hp->n_head_kv * hp->head_dim_v;
    s->pool = tpool_new(cfg->n_threads);
    int krc = cpu_kernels_select(&s->kern, cfg->cpu_kernels);
    if (krc) {
        cpu_destroy(be);
        return terr_set(e, krc, "cpu kernels '%s': %s", cfg->cpu_kernels,
                        krc == TOME_EFLAGS ? "unknown (scalar, avx2, avx512)" : "this CPU lacks the instructions");
    }
    int64_t widest = TOME_MAX(TOME_MAX(hp->n_embd, hp->n_ff), hp->n_head * TOME_MAX(hp->head_dim, hp->head_dim_v));
    s->widest = widest;
    s->qbuf_row = (size_t)widest * sizeof(float) + 64; /* F32 is the widest activation format */
    s->qbuf = tmalloc_array((size_t)s->n_batch, s->qbuf_row);
    s->k_cache = tcalloc((size_t)hp->n_layer, sizeof(float *));
    s->v_cache = tcalloc((size_t)hp->n_layer, sizeof(float *));
    int threads = s->pool ? tpool_size(s->pool) : 1;
    s->scores = tmalloc_array((size_t)threads * (size_t)(s->paged ? 1 : s->n_ctx), sizeof(float));
    s->rowbuf = tmalloc_array((size_t)threads * (size_t)widest, sizeof(float));
    s->cs = tmalloc_array((size_t)s->n_batch * (size_t)(s->rope.dim ? s->rope.dim : 2), sizeof(float));
    int ok = s->pool && s->qbuf && s->k_cache && s->v_cache && s->scores && s->rowbuf && s->cs;
    /* calloc'd KV pages are only committed when written, so a large n_ctx costs address
     * space, not RAM, until the context actually fills. */
    if (ok && s->paged) {
        const int P = cfg->page_tokens > 0 ? cfg->page_tokens : KV_DEFAULT_PAGE_TOKENS;
        kv_config kc = {hp->n_layer, hp->n_head_kv, hp->head_dim, hp->head_dim_v, P, (kv_dtype)cfg->kv_type,
                        cpu_kv_pages(s->n_ctx, s->n_batch, s->window, s->sinks, P), 0, NULL, NULL, 0};
        int rc = kv_open(&s->kv, &kc, e);
        if (!rc) rc = kv_seq_new(&s->kv, &s->seq, e);
        if (rc) {
            cpu_destroy(be);
            return rc;
        }
    }
    for (int l = 0; ok && !s->paged && l < hp->n_layer; l++) {
        s->k_cache[l] = tcalloc((size_t)s->n_ctx * (size_t)s->kv_dim, sizeof(float));
        s->v_cache[l] = tcalloc((size_t)s->n_ctx * (size_t)s->kv_dim_v, sizeof(float));
        ok = s->k_cache[l] && s->v_cache[l];
    }
    if (!ok) {
        cpu_destroy(be);
        return terr_set(e, TOME_ERESOURCE, "cpu backend: cannot allocate the KV cache (%.1f MiB for %d positions) and scratch",
                        (double)cpu_kv_bytes(hp, cfg->n_ctx) / 1048576.0, cfg->n_ctx);
    }
    *out = be;
    return 0;
}

/* model.c — weight binding and forward() (see model.h).
 *
 * Binding is strict: every tensor the architecture needs is looked up by its llama.cpp name
 * and checked for type (a type quant.c can compute with; F32 for norm vectors and biases)
 * and shape ([cols, rows] as ggml writes ne[0], ne[1]); the first mismatch is the error.
 * Fused tensors are split by row ranges, which are contiguous in the mapping:
 *   phi3 attn_qkv  rows [0, q) = Q, [q, q+kv) = K, [q+kv, q+2kv) = V   (llama.cpp's order)
 *   phi3 ffn_up    rows [0, n_ff) = gate, [n_ff, 2 n_ff) = up             (ggml_swiglu halves)
 *
 * forward() per block: x += Wo·attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x)); then
 * x += Wd·(silu(Wg·n(x)) * Wu·n(x)); logits = Wout·n(x). qwen3 RMS-normalises each Q and K
 * head before RoPE; biases are added where the file has them (qwen2).
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* ---- binding ----------------------------------------------------------------------------- */

enum { W_MATRIX = 0, W_VECTOR = 1, W_OPTIONAL = 2 };

static void shape_str(const gguf_tensor *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "[%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && n < (int)cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, ", %lld", (long long)t->ne[d]);
    if (n < (int)cap) snprintf(buf + n, cap - (size_t)n, "]");
}

/* Binds tensor `name` as [cols] (vector) or [cols, rows] (matrix) into *w. Absent optional
 * tensors leave w->data NULL and return 0. */
static int bind(const gguf *g, const char *name, int64_t cols, int64_t rows, int flags, tome_weight *w,
                terr *e) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        if (flags & W_OPTIONAL) return 0;
        return terr_set(e, TOME_EINPUT, "%s: missing tensor '%s' (expected shape [%lld, %lld])", g->path, name,
                        (long long)cols, (long long)rows);
    }
    const ggml_type_info *ti = ggml_type_get(t->type);
    const char *tname = ti ? ti->name : "unknown";
    if (flags & W_VECTOR) {
        if (t->type != GGML_TYPE_F32)
            return terr_set(e, TOME_EUNSUPPORTED, "%s: tensor '%s' has type %s; tome needs F32 for norm and bias vectors",
                            g->path, name, tname);
    } else if (!tq_supported(t->type)) {
        return terr_set(e, TOME_EUNSUPPORTED, "%s: tensor '%s' has unsupported type %s", g->path, name, tname);
    }
    int ok = t->ne[0] == cols && t->ne[1] == rows && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok) {
        char got[96];
        shape_str(t, got, sizeof got);
        if (flags & W_VECTOR)
            return terr_set(e, TOME_EINPUT, "%s: tensor '%s' has shape %s, expected [%lld]", g->path, name, got,
                            (long long)cols);
        return terr_set(e, TOME_EINPUT, "%s: tensor '%s' has shape %s, expected [%lld, %lld]", g->path, name, got,
                        (long long)cols, (long long)rows);
    }
    w->name = t->name;
    w->type = t->type;
    w->cols = cols;
    w->rows = rows;
    w->row_bytes = ggml_row_size(t->type, cols);
    if (w->row_bytes == 0)
        return terr_set(e, TOME_EINPUT, "%s: tensor '%s': row of %lld is not a whole number of %s blocks", g->path,
                        name, (long long)cols, tname);
    w->data = t->data;
    return 0;
}

/* Rows [r0, r0 + n) of a bound matrix, as a weight of its own. */
static tome_weight row_range(const tome_weight *w, int64_t r0, int64_t n) {
    tome_weight v = *w;
    v.rows = n;
    v.data = (const uint8_t *)w->data + (uint64_t)r0 * w->row_bytes;
    return v;
}

static int bind_layer(const tome_model *m, int il, tome_layer *L, terr *e) {
    const gguf *g = m->g;
    const tome_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim,
                  VD = (int64_t)hp->n_head_kv * hp->head_dim_v, OD = (int64_t)hp->n_head * hp->head_dim_v;
    char n[96];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
    if ((rc = bind(g, NAME("attn_norm.weight"), E, 1, W_VECTOR, &L->attn_norm, e))) return rc;
    if (gguf_find_tensor(g, NAME("attn_qkv.weight"))) {
        tome_weight qkv;
        if ((rc = bind(g, n, E, QD + KD + VD, W_MATRIX, &qkv, e))) return rc;
        L->wq = row_range(&qkv, 0, QD);
        L->wk = row_range(&qkv, QD, KD);
        L->wv = row_range(&qkv, QD + KD, VD);
    } else {
        if ((rc = bind(g, NAME("attn_q.weight"), E, QD, W_MATRIX, &L->wq, e)) ||
            (rc = bind(g, NAME("attn_k.weight"), E, KD, W_MATRIX, &L->wk, e)) ||
            (rc = bind(g, NAME("attn_v.weight"), E, VD, W_MATRIX, &L->wv, e)))
            return rc;
        if ((rc = bind(g, NAME("attn_q.bias"), QD, 1, W_VECTOR | W_OPTIONAL, &L->bq, e)) ||
            (rc = bind(g, NAME("attn_k.bias"), KD, 1, W_VECTOR | W_OPTIONAL, &L->bk, e)) ||
            (rc = bind(g, NAME("attn_v.bias"), VD, 1, W_VECTOR | W_OPTIONAL, &L->bv, e)))
            return rc;
    }
    if (hp->arch == ARCH_QWEN2 && !(L->bq.data && L->bk.data && L->bv.data))
        return terr_set(e, TOME_EINPUT, "%s: qwen2 needs biases blk.%d.attn_{q,k,v}.bias", g->path, il);
    if (hp->arch == ARCH_QWEN3) {
        if ((rc = bind(g, NAME("attn_q_norm.weight"), hp->head_dim, 1, W_VECTOR, &L->q_norm, e)) ||
            (rc = bind(g, NAME("attn_k_norm.weight"), hp->head_dim, 1, W_VECTOR, &L->k_norm, e)))
            return rc;
    }
    if ((rc = bind(g, NAME("attn_output.weight"), OD, E, W_MATRIX, &L->wo, e)) ||
        (rc = bind(g, NAME("ffn_norm.weight"), E, 1, W_VECTOR, &L->ffn_norm, e)))
        return rc;
    if (!gguf_find_tensor(g, NAME("ffn_gate.weight")) && hp->arch == ARCH_PHI3) {
        tome_weight up;
        if ((rc = bind(g, NAME("ffn_up.weight"), E, 2 * F, W_MATRIX, &up, e))) return rc;
        L->w_gate = row_range(&up, 0, F);
        L->w_up = row_range(&up, F, F);
    } else {
        if ((rc = bind(g, NAME("ffn_gate.weight"), E, F, W_MATRIX, &L->w_gate, e)) ||
            (rc = bind(g, NAME("ffn_up.weight"), E, F, W_MATRIX, &L->w_up, e)))
            return rc;
    }
    if ((rc = bind(g, NAME("ffn_down.weight"), F, E, W_MATRIX, &L->w_down, e))) return rc;
#undef NAME
    return 0;
}

void model_free(tome_model *m) {
    if (!m) return;
    free(m->layers);
    gguf_close(m->g);
    free(m);
}

int model_from_gguf(tome_model **out, gguf *g, terr *e) {
    *out = NULL;
    tome_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(g);
        return terr_set(e, TOME_ERESOURCE, "out of memory");
    }
    m->g = g;
    int rc = hparams_load(&m->hp, g, e);
    if (rc) goto fail;
    tome_hparams *hp = &m->hp;
    if (!hp->has_weights) {
        rc = terr_set(e, TOME_EINPUT, "%s: a vocabulary-only file (no token_embd.weight): it has no weights to run", g->path);
        goto fail;
    }
    if (hp->n_head % hp->n_head_kv) {
        rc = terr_set(e, TOME_EINPUT, "%s: %d attention heads are not a multiple of %d KV heads", g->path, hp->n_head,
                      hp->n_head_kv);
        goto fail;
    }
    if (hp->rope_dim > ROPE_MAX_DIM) {
        rc = terr_set(e, TOME_EUNSUPPORTED, "%s: RoPE dimension %d exceeds tome's limit %d", g->path, hp->rope_dim,
                      ROPE_MAX_DIM);
        goto fail;
    }
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    if ((rc = bind(g, "token_embd.weight", E, V, W_MATRIX, &m->tok_embd, e)) ||
        (rc = bind(g, "output_norm.weight", E, 1, W_VECTOR, &m->output_norm, e)))
        goto fail;
    if (gguf_find_tensor(g, "output.weight")) {
        if ((rc = bind(g, "output.weight", E, V, W_MATRIX, &m->output, e))) goto fail;
    } else {
        m->output = m->tok_embd;
    }
    tome_weight rf;
    const int64_t half = hp->rope_dim / 2;
    if ((rc = bind(g, "rope_freqs.weight", half, 1, W_VECTOR | W_OPTIONAL, &rf, e))) goto fail;
    m->rope_freqs = rf.data;
    if ((rc = bind(g, "rope_factors_long.weight", half, 1, W_VECTOR | W_OPTIONAL, &rf, e))) goto fail;
    m->rope_long = rf.data;
    if ((rc = bind(g, "rope_factors_short.weight", half, 1, W_VECTOR | W_OPTIONAL, &rf, e))) goto fail;
    m->rope_short = rf.data;
    m->layers = tcalloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = terr_set(e, TOME_ERESOURCE, "out of memory");
        goto fail;
    }
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(m, il, &m->layers[il], e))) goto fail;
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

int model_load(tome_model **out, const char *path, terr *e) {
    *out = NULL;
    gguf *g = NULL;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    return model_from_gguf(out, g, e);
}

int model_rope_table(const tome_model *m, int n_ctx, rope_table *t, terr *e) {
    rope_config c;
    rope_config_from_hparams(&c, &m->hp, m->rope_freqs, m->rope_long, m->rope_short);
    return rope_table_build(t, &c, n_ctx, e);
}

/* ---- forward --------------------------------------------------------------------------- */

int fwd_init(tome_fwd *f, const tome_model *m, tome_backend *be, int n_batch, terr *e) {
    memset(f, 0, sizeof *f);
    const tome_hparams *hp = &m->hp;
    const size_t B = (size_t)n_batch;
    f->be = be;
    f->n_batch = n_batch;
    const backend_ops *o = be->ops;
    f->x = o->alloc(be, B * hp->n_embd);
    f->xb = o->alloc(be, B * hp->n_embd);
    f->q = o->alloc(be, B * hp->n_head * hp->head_dim);
    f->k = o->alloc(be, B * hp->n_head_kv * hp->head_dim);
    f->v = o->alloc(be, B * hp->n_head_kv * hp->head_dim_v);
    f->att = o->alloc(be, B * hp->n_head * hp->head_dim_v);
    f->hg = o->alloc(be, B * hp->n_ff);
    f->hu = o->alloc(be, B * hp->n_ff);
    if (!f->x || !f->xb || !f->q || !f->k || !f->v || !f->att || !f->hg || !f->hu) {
        fwd_free(f);
        return terr_set(e, TOME_ERESOURCE, "out of memory for activations (batch %d)", n_batch);
    }
    return 0;
}

void fwd_free(tome_fwd *f) {
    if (!f->be) return;
    float **bufs[] = {&f->x, &f->xb, &f->q, &f->k, &f->v, &f->att, &f->hg, &f->hu};
    for (size_t i = 0; i < TOME_ARRAY_LEN(bufs); i++) {
        if (*bufs[i]) f->be->ops->release(f->be, *bufs[i]);
        *bufs[i] = NULL;
    }
    f->be = NULL;
}

static const tome_weight *opt(const tome_weight *w) { return w->data ? w : NULL; }

/* Matmuls of one input: as a group where the backend has one, else one by one. */
static void matmuls(tome_backend *be, int k, float *const y[], const tome_weight *const w[],
                    const tome_weight *const b[], const float *x, int n) {
    if (be->ops->matmul_group) {
        be->ops->matmul_group(be, k, y, w, b, x, n);
        return;
    }
    for (int i = 0; i < k; i++) be->ops->matmul(be, y[i], w[i], b[i], x, n);
}

void forward(const tome_model *m, tome_fwd *f, const int32_t *ids, int n, int pos0, float *logits,
             int all_logits) {
    const tome_hparams *hp = &m->hp;
    tome_backend *be = f->be;
    const backend_ops *o = be->ops;
    const int64_t E = hp->n_embd;
    const float eps = hp->norm_eps;

    if (o->step_begin) o->step_begin(be, n, pos0);
    o->embed(be, f->x, &m->tok_embd, ids, n);
    for (int il = 0; il < hp->n_layer; il++) {
        const tome_layer *L = &m->layers[il];
        /* attention */
        o->rmsnorm(be, f->xb, f->x, &L->attn_norm, n, eps);
        {
            float *const ys[] = {f->q, f->k, f->v};
            const tome_weight *const ws[] = {&L->wq, &L->wk, &L->wv};
            const tome_weight *const bs[] = {opt(&L->bq), opt(&L->bk), opt(&L->bv)};
            matmuls(be, 3, ys, ws, bs, f->xb, n);
        }
        if (L->q_norm.data) {
            o->rmsnorm(be, f->q, f->q, &L->q_norm, n * hp->n_head, eps);
            o->rmsnorm(be, f->k, f->k, &L->k_norm, n * hp->n_head_kv, eps);
        }
        o->rope_kv_store(be, il, f->q, f->k, f->v, n, pos0);
        o->attention(be, il, f->att, f->q, n, pos0);
        o->matmul(be, f->xb, &L->wo, NULL, f->att, n);
        o->add(be, f->x, f->xb, (int64_t)n * E);
        /* feed-forward */
        o->rmsnorm(be, f->xb, f->x, &L->ffn_norm, n, eps);
        {
            float *const ys[] = {f->hg, f->hu};
            const tome_weight *const ws[] = {&L->w_gate, &L->w_up};
            const tome_weight *const bs[] = {NULL, NULL};
            matmuls(be, 2, ys, ws, bs, f->xb, n);
        }
        o->swiglu(be, f->hg, f->hg, f->hu, (int64_t)n * hp->n_ff);
        o->matmul(be, f->xb, &L->w_down, NULL, f->hg, n);
        o->add(be, f->x, f->xb, (int64_t)n * E);
    }
    if (logits) {
        if (all_logits) o->logits(be, logits, f->x, &m->output_norm, eps, &m->output, n);
        else o->logits(be, logits, f->x + (int64_t)(n - 1) * E, &m->output_norm, eps, &m->output, 1);
    }
    if (o->step_end) o->step_end(be); /* the logits are defined from here on */
}

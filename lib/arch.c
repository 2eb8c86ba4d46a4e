/* arch.c — hyper-parameters from GGUF metadata and the "can tome run this file" check.
 *
 * Key names and defaults are llama.cpp's (src/llama-arch.cpp, src/llama-model.cpp), so any
 * file llama.cpp converts reads the same here. Every value that sizes an allocation or a loop
 * elsewhere (layers, widths, heads) is range-checked here once, so model.c and rope.c can
 * trust the struct. Tensor shapes are checked in model_check_runnable against these values:
 * a file whose metadata and tensors disagree is refused before any weight is touched.
 */
#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant.h"

static const struct { const char *name; tome_arch_id id; int neox; } k_archs[] = {
    {"llama", ARCH_LLAMA, 0},
    {"qwen2", ARCH_QWEN2, 1},
    {"qwen3", ARCH_QWEN3, 1},
    {"phi3", ARCH_PHI3, 1},
};

const char *arch_name(tome_arch_id a) {
    for (size_t i = 0; i < TOME_ARRAY_LEN(k_archs); i++)
        if (k_archs[i].id == a) return k_archs[i].name;
    return "unknown";
}

const char *arch_supported_list(void) { return "llama, qwen2, qwen3, phi3"; }

const char *rope_scaling_name(rope_scaling_type t) {
    switch (t) {
    case ROPE_SCALING_NONE: return "none";
    case ROPE_SCALING_LINEAR: return "linear";
    case ROPE_SCALING_NTK: return "ntk";
    case ROPE_SCALING_DYNAMIC: return "dynamic";
    case ROPE_SCALING_YARN: return "yarn";
    case ROPE_SCALING_LONGROPE: return "longrope";
    case ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "?";
}

/* ---- typed key access with the file's name and the key in every message ------------- */

typedef struct kctx {
    const gguf *g;
    const char *arch; /* prefix for "<arch>.suffix" keys */
    terr *e;
} kctx;

static void full_key(const kctx *k, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", k->arch, suffix);
}

static int is_int(uint32_t t) {
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static int is_num(uint32_t t) {
    return is_int(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64;
}

static const char *key_at(const kctx *k, const char *key, char *buf, size_t cap) {
    /* The key's byte offset makes "which entry" unambiguous in a file with many keys. */
    for (uint64_t i = 0; i < k->g->n_kv; i++)
        if (strcmp(k->g->kv[i].key, key) == 0) {
            snprintf(buf, cap, "offset %llu: ", (unsigned long long)k->g->kv[i].offset);
            return buf;
        }
    buf[0] = 0;
    return buf;
}

/* Reads integer key <arch>.suffix into *out. An array value (per-layer counts) gives its
 * first element. Missing: *out = def, or TOME_EINPUT when required. Out of [lo, hi]: error. */
static int get_int(const kctx *k, const char *suffix, int required, int64_t def, int64_t lo,
                   int64_t hi, int *out) {
    char key[160], at[48];
    full_key(k, suffix, key, sizeof key);
    const gguf_value *v = gguf_get(k->g, key);
    int64_t x;
    if (!v) {
        if (required)
            return terr_set(k->e, TOME_EINPUT, "%s: missing required key '%s'", k->g->path, key);
        *out = (int)def;
        return 0;
    }
    if (v->type == GGUF_TYPE_ARRAY && is_int(v->elem_type) && v->n > 0) {
        x = gguf_arr_int(v, 0);
    } else if (is_int(v->type)) {
        x = gguf_get_int(k->g, key, INT64_MIN);
        if (x == INT64_MIN) x = hi + (hi < INT64_MAX); /* u64 beyond int64: out of range */
    } else {
        return terr_set(k->e, TOME_EINPUT, "%s: %skey '%s' has type %s, expected an integer",
                        k->g->path, key_at(k, key, at, sizeof at), key, gguf_type_name(v->type));
    }
    if (x < lo || x > hi)
        return terr_set(k->e, TOME_EINPUT, "%s: %skey '%s' = %lld is outside [%lld, %lld]",
                        k->g->path, key_at(k, key, at, sizeof at), key, (long long)x,
                        (long long)lo, (long long)hi);
    *out = (int)x;
    return 0;
}

/* Float key <arch>.suffix; must be finite and within [lo, hi]. */
static int get_float(const kctx *k, const char *suffix, int required, double def, double lo,
                     double hi, float *out) {
    char key[160], at[48];
    full_key(k, suffix, key, sizeof key);
    const gguf_value *v = gguf_get(k->g, key);
    if (!v) {
        if (required)
            return terr_set(k->e, TOME_EINPUT, "%s: missing required key '%s'", k->g->path, key);
        *out = (float)def;
        return 0;
    }
    if (!is_num(v->type))
        return terr_set(k->e, TOME_EINPUT, "%s: %skey '%s' has type %s, expected a number",
                        k->g->path, key_at(k, key, at, sizeof at), key, gguf_type_name(v->type));
    double x = gguf_get_float(k->g, key, NAN);
    if (!(x >= lo && x <= hi))
        return terr_set(k->e, TOME_EINPUT, "%s: %skey '%s' = %g is outside [%g, %g]", k->g->path,
                        key_at(k, key, at, sizeof at), key, x, lo, hi);
    *out = (float)x;
    return 0;
}

/* ---- hparams_load -------------------------------------------------------------------- */

#define MAX_DIM (1 << 20) /* widths, FF sizes: far above any real model, far below overflow */

int hparams_load(tome_hparams *hp, const gguf *g, terr *e) {
    memset(hp, 0, sizeof *hp);
    hp->rope_base = 10000.0f;
    hp->rope_factor = 1.0f;
    hp->rope_attn_factor = 1.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->norm_eps = 1e-5f;
    hp->has_weights = gguf_find_tensor(g, "token_embd.weight") != NULL;
    hp->tied_output = hp->has_weights && gguf_find_tensor(g, "output.weight") == NULL;
    hp->has_rope_freqs = gguf_find_tensor(g, "rope_freqs.weight") != NULL;
    hp->has_rope_long = gguf_find_tensor(g, "rope_factors_long.weight") != NULL ||
                        gguf_find_tensor(g, "rope_factors_short.weight") != NULL;

    const gguf_value *av = gguf_get(g, "general.architecture");
    if (!av) return terr_set(e, TOME_EINPUT, "%s: missing required key 'general.architecture'", g->path);
    if (av->type != GGUF_TYPE_STRING)
        return terr_set(e, TOME_EINPUT, "%s: key 'general.architecture' has type %s, expected a string",
                        g->path, gguf_type_name(av->type));
    gguf_get_str_buf(g, "general.architecture", hp->arch_name, sizeof hp->arch_name);
    hp->arch = ARCH_UNKNOWN;
    for (size_t i = 0; i < TOME_ARRAY_LEN(k_archs); i++)
        if (gguf_str_eq(av->v.str, k_archs[i].name)) {
            hp->arch = k_archs[i].id;
            hp->rope_neox = k_archs[i].neox;
        }
    /* An unknown architecture: read what is there for description, require nothing. */
    const int req = hp->arch != ARCH_UNKNOWN;
    kctx k = {g, hp->arch_name, e};
    int rc;
    if ((rc = get_int(&k, "block_count", req, 0, req, 65536, &hp->n_layer)) ||
        (rc = get_int(&k, "embedding_length", req, 0, req, MAX_DIM, &hp->n_embd)) ||
        (rc = get_int(&k, "attention.head_count", req, 0, req, 65536, &hp->n_head)) ||
        (rc = get_int(&k, "attention.head_count_kv", 0, hp->n_head, req, 65536, &hp->n_head_kv)) ||
        (rc = get_int(&k, "feed_forward_length", req, 0, req, MAX_DIM, &hp->n_ff)) ||
        (rc = get_int(&k, "context_length", req, 0, req, INT32_MAX, &hp->n_ctx_train)))
        return rc;
    if (req && hp->n_head_kv > hp->n_head)
        return terr_set(e, TOME_EINPUT, "%s: %s.attention.head_count_kv %d exceeds head_count %d",
                        g->path, hp->arch_name, hp->n_head_kv, hp->n_head);
    if (req && hp->n_head % hp->n_head_kv)
        return terr_set(e, TOME_EINPUT, "%s: %s.attention.head_count %d is not a multiple of head_count_kv %d",
                        g->path, hp->arch_name, hp->n_head, hp->n_head_kv);
    int def_hd = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    if (req && hp->n_embd % hp->n_head) {
        char key[160];
        full_key(&k, "attention.key_length", key, sizeof key);
        if (!gguf_get(g, key))
            return terr_set(e, TOME_EINPUT, "%s: embedding_length %d is not a multiple of head_count %d and '%s' is missing",
                            g->path, hp->n_embd, hp->n_head, key);
    }
    if ((rc = get_int(&k, "attention.key_length", 0, def_hd, req, 65536, &hp->head_dim)) ||
        (rc = get_int(&k, "attention.value_length", 0, hp->head_dim, req, 65536, &hp->head_dim_v)) ||
        (rc = get_int(&k, "rope.dimension_count", 0, hp->head_dim, req ? 2 : 0, 65536, &hp->rope_dim)) ||
        (rc = get_int(&k, "attention.sliding_window", 0, 0, 0, INT32_MAX, &hp->sliding_window)))
        return rc;
    if (req && (hp->rope_dim > hp->head_dim || hp->rope_dim % 2))
        return terr_set(e, TOME_EINPUT, "%s: %s.rope.dimension_count %d must be even and <= the head dimension %d",
                        g->path, hp->arch_name, hp->rope_dim, hp->head_dim);
    if ((rc = get_float(&k, "attention.layer_norm_rms_epsilon", req, 1e-5, 1e-30, 1.0, &hp->norm_eps)) ||
        (rc = get_float(&k, "rope.freq_base", 0, 10000.0, 1e-3, 1e30, &hp->rope_base)))
        return rc;

    /* n_vocab: the explicit key, else the tokenizer's list, else the embedding's rows. */
    if ((rc = get_int(&k, "vocab_size", 0, 0, 1, INT32_MAX, &hp->n_vocab))) return rc;
    if (!hp->n_vocab) {
        const gguf_value *tv = gguf_get(g, "tokenizer.ggml.tokens");
        if (tv && tv->type == GGUF_TYPE_ARRAY && tv->n <= INT32_MAX) hp->n_vocab = (int)tv->n;
        const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
        if (!hp->n_vocab && te && te->ne[1] <= INT32_MAX) hp->n_vocab = (int)te->ne[1];
    }

    /* RoPE scaling. As in llama.cpp: no type string + factor > 1 means linear; the legacy
     * rope.scale_linear stands in for a missing rope.scaling.factor; llama3 and LongRoPE are
     * signalled by their per-dimension factor tensors. */
    float factor = 0;
    if ((rc = get_float(&k, "rope.scaling.factor", 0, 0.0, 0.0, 1e6, &factor))) return rc;
    if (factor == 0 && (rc = get_float(&k, "rope.scale_linear", 0, 0.0, 0.0, 1e6, &factor))) return rc;
    hp->rope_factor = factor > 0 ? factor : 1.0f;
    char tkey[160], tname[32] = "";
    full_key(&k, "rope.scaling.type", tkey, sizeof tkey);
    const gguf_value *tv = gguf_get(g, tkey);
    if (tv && tv->type != GGUF_TYPE_STRING)
        return terr_set(e, TOME_EINPUT, "%s: key '%s' has type %s, expected a string", g->path, tkey,
                        gguf_type_name(tv->type));
    if (tv) gguf_get_str_buf(g, tkey, tname, sizeof tname);
    if (!tv) hp->rope_scaling = hp->rope_factor != 1.0f ? ROPE_SCALING_LINEAR : ROPE_SCALING_NONE;
    else if (!strcmp(tname, "none")) hp->rope_scaling = ROPE_SCALING_NONE;
    else if (!strcmp(tname, "linear")) hp->rope_scaling = hp->rope_factor != 1.0f ? ROPE_SCALING_LINEAR : ROPE_SCALING_NONE;
    else if (!strcmp(tname, "yarn")) hp->rope_scaling = ROPE_SCALING_YARN;
    else if (!strcmp(tname, "longrope")) hp->rope_scaling = ROPE_SCALING_LONGROPE;
    else if (!strcmp(tname, "llama3")) hp->rope_scaling = ROPE_SCALING_LLAMA3;
    else if (!strcmp(tname, "ntk")) hp->rope_scaling = ROPE_SCALING_NTK;
    else if (!strcmp(tname, "dynamic")) hp->rope_scaling = ROPE_SCALING_DYNAMIC;
    else if (req)
        return terr_set(e, TOME_EUNSUPPORTED, "%s: %s = '%s' is not a RoPE scaling tome knows "
                        "(none, linear, yarn, longrope, llama3)", g->path, tkey, tname);
    if (hp->has_rope_long) hp->rope_scaling = ROPE_SCALING_LONGROPE;
    else if (hp->has_rope_freqs && hp->rope_scaling == ROPE_SCALING_NONE) hp->rope_scaling = ROPE_SCALING_LLAMA3;
    if ((rc = get_int(&k, "rope.scaling.original_context_length", 0, hp->n_ctx_train, req, INT32_MAX,
                      &hp->rope_orig_ctx)) ||
        (rc = get_float(&k, "rope.scaling.attn_factor", 0, 1.0, 0.0, 1e6, &hp->rope_attn_factor)) ||
        (rc = get_float(&k, "rope.scaling.yarn_ext_factor", 0,
                        hp->rope_scaling == ROPE_SCALING_YARN ? 1.0 : 0.0, 0.0, 1e6, &hp->yarn_ext_factor)) ||
        (rc = get_float(&k, "rope.scaling.yarn_attn_factor", 0, 1.0, 0.0, 1e6, &hp->yarn_attn_factor)) ||
        (rc = get_float(&k, "rope.scaling.yarn_beta_fast", 0, 32.0, 0.0, 1e6, &hp->yarn_beta_fast)) ||
        (rc = get_float(&k, "rope.scaling.yarn_beta_slow", 0, 1.0, 0.0, 1e6, &hp->yarn_beta_slow)))
        return rc;

    if (!req)
        return terr_set(e, TOME_EUNSUPPORTED, "%s: architecture '%s' is not supported (tome runs %s)",
                        g->path, hp->arch_name, arch_supported_list());
    return 0;
}

/* ---- model_check_runnable ------------------------------------------------------------ */

/* Checks one tensor: present (unless optional), shape [ne0, ne1] (ne1 = 0: a vector).
 * Returns 1 when fine (or optional and absent), else 0 with why filled. */
static int want(const gguf *g, const char *name, int64_t ne0, int64_t ne1, int optional, char *why,
                size_t cap) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        if (optional) return 1;
        snprintf(why, cap, "missing tensor '%s'", name);
        return 0;
    }
    uint32_t nd = ne1 ? 2 : 1;
    int ok = t->ne[0] == ne0 && (ne1 ? t->ne[1] == ne1 : 1) && t->ne[2] == 1 && t->ne[3] == 1 &&
             (t->n_dims == nd || (nd == 2 && t->n_dims == 1 && ne1 == 1));
    if (!ok) {
        char got[96], exp[64];
        int n = snprintf(got, sizeof got, "[%lld", (long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && n < (int)sizeof got; d++)
            n += snprintf(got + n, sizeof got - (size_t)n, ", %lld", (long long)t->ne[d]);
        if (n < (int)sizeof got) snprintf(got + n, sizeof got - (size_t)n, "]");
        if (ne1) snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)ne0, (long long)ne1);
        else snprintf(exp, sizeof exp, "[%lld]", (long long)ne0);
        snprintf(why, cap, "tensor '%s' has shape %s, expected %s", name, got, exp);
        return 0;
    }
    return 1;
}

int model_check_runnable(const gguf *g, const tome_hparams *hp, char *why, size_t cap) {
    char buf[512];
    if (cap == 0) { why = buf; cap = sizeof buf; }
    why[0] = 0;
    int vocab_only = g->n_tensors == 0;
    if (hp->arch == ARCH_UNKNOWN && !hp->arch_name[0]) {
        snprintf(why, cap, "no 'general.architecture' key%s", vocab_only ? "; no tensors" : "");
        return 0;
    }
    if (hp->arch == ARCH_UNKNOWN) {
        snprintf(why, cap, "architecture '%s' is not supported (tome runs %s)%s", hp->arch_name,
                 arch_supported_list(), vocab_only ? "; vocabulary-only file (no weights)" : "");
        return 0;
    }
    {
        /* Metadata faults hparams_load reports (a missing key, an unknown RoPE scaling) are
         * reasons too, whatever hp the caller holds; the file name prefix is dropped. */
        tome_hparams chk;
        terr he = {0};
        if (hparams_load(&chk, g, &he)) {
            size_t n = strlen(g->path);
            const char *m = strncmp(he.msg, g->path, n) == 0 && he.msg[n] == ':' && he.msg[n + 1] == ' ' ? he.msg + n + 2 : he.msg;
            snprintf(why, cap, "%s", m);
            return 0;
        }
    }
    if (vocab_only) {
        snprintf(why, cap, "vocabulary-only file (no weights)");
        return 0;
    }
    if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_vocab <= 0) {
        snprintf(why, cap, "hyper-parameters incomplete (layers %d, width %d, heads %d/%d, head dim %d, FF %d, vocab %d)",
                 hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab);
        return 0;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (!tq_supported(t->type)) {
            const ggml_type_info *ti = ggml_type_get(t->type);
            snprintf(why, cap, "tensor '%s' has unsupported type %s", t->name, ti ? ti->name : "?");
            return 0;
        }
    }
    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    const int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vv = (int64_t)hp->n_head_kv * hp->head_dim_v, o = (int64_t)hp->n_head * hp->head_dim_v;
    if (!want(g, "token_embd.weight", E, V, 0, why, cap) || !want(g, "output_norm.weight", E, 0, 0, why, cap) ||
        !want(g, "output.weight", E, V, 1, why, cap))
        return 0;
    if (hp->has_rope_freqs && !want(g, "rope_freqs.weight", hp->rope_dim / 2, 0, 0, why, cap)) return 0;
    if (hp->has_rope_long && (!want(g, "rope_factors_long.weight", hp->rope_dim / 2, 0, 0, why, cap) ||
                              !want(g, "rope_factors_short.weight", hp->rope_dim / 2, 0, 0, why, cap)))
        return 0;
    char n[96];
#define W(suffix, a, b, opt) (snprintf(n, sizeof n, "blk.%d." suffix, l), want(g, n, a, b, opt, why, cap))
    for (int l = 0; l < hp->n_layer; l++) {
        if (!W("attn_norm.weight", E, 0, 0) || !W("attn_output.weight", o, E, 0) || !W("ffn_norm.weight", E, 0, 0) ||
            !W("ffn_down.weight", F, E, 0))
            return 0;
        snprintf(n, sizeof n, "blk.%d.attn_qkv.weight", l);
        int fused = hp->arch == ARCH_PHI3 && gguf_find_tensor(g, n);
        if (fused) {
            if (!W("attn_qkv.weight", E, q + kv + vv, 0)) return 0;
        } else if (!W("attn_q.weight", E, q, 0) || !W("attn_k.weight", E, kv, 0) || !W("attn_v.weight", E, vv, 0)) {
            return 0;
        }
        if (hp->arch == ARCH_PHI3) {
            /* phi3 packs gate and up into one [E, 2F] matrix */
            if (!W("ffn_up.weight", E, 2 * F, 0)) return 0;
        } else if (!W("ffn_gate.weight", E, F, 0) || !W("ffn_up.weight", E, F, 0)) {
            return 0;
        }
        if (hp->arch == ARCH_QWEN2 &&
            (!W("attn_q.bias", q, 0, 1) || !W("attn_k.bias", kv, 0, 1) || !W("attn_v.bias", vv, 0, 1)))
            return 0;
        if (hp->arch == ARCH_QWEN3 &&
            (!W("attn_q_norm.weight", hp->head_dim, 0, 0) || !W("attn_k_norm.weight", hp->head_dim, 0, 0)))
            return 0;
    }
#undef W
    return 1;
}

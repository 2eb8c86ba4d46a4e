/* info.c — facts about a GGUF file for `tome info` (text and JSON). See info.h.
 *
 * Strings from the file (names, tokenizer kinds) are untrusted: they are truncated to fixed
 * buffers, control characters are shown as '?' in text, and invalid UTF-8 is replaced before
 * it reaches jansson (which refuses it).
 */
#include "info.h"

#include <math.h>
#include <string.h>

#include <jansson.h>

#include "rope.h"
#include "util.h"

/* Replaces control bytes and invalid UTF-8 in a NUL-terminated buffer with '?'. */
static void sanitize(char *buf) {
    size_t n = strlen(buf);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) buf[i] = '?';
    int64_t bad;
    while ((bad = tutf8_invalid_offset(buf, n)) >= 0) buf[bad] = '?';
}

/* Copies a string value into buf (truncated, sanitized); "" when absent. */
static void clean_str(const gguf *g, const char *key, char *buf, size_t cap) {
    buf[0] = 0;
    if (gguf_get_str_buf(g, key, buf, cap)) sanitize(buf);
}

void info_gather(tome_info *in, const gguf *g) {
    memset(in, 0, sizeof *in);
    in->g = g;
    terr e = {0};
    in->hp_rc = hparams_load(&in->hp, g, &e);
    clean_str(g, "general.name", in->name, sizeof in->name);
    clean_str(g, "tokenizer.ggml.model", in->tok_model, sizeof in->tok_model);
    clean_str(g, "tokenizer.ggml.pre", in->tok_pre, sizeof in->tok_pre);
    sanitize(in->hp.arch_name); /* straight from the file too */
    const gguf_value *tv = gguf_get(g, "tokenizer.ggml.tokens");
    in->n_tokens = tv && tv->type == GGUF_TYPE_ARRAY ? (int64_t)tv->n : -1;
    in->bos = gguf_get_int(g, "tokenizer.ggml.bos_token_id", -1);
    in->eos = gguf_get_int(g, "tokenizer.ggml.eos_token_id", -1);
    in->chat_template = gguf_get(g, "tokenizer.chat_template") != NULL;
    tome_info_type all[GGML_TYPE_COUNT] = {{0}};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        all[t->type].count++; /* the reader only accepts known type ids (< GGML_TYPE_COUNT) */
        all[t->type].elems += (uint64_t)t->nelem;
        all[t->type].bytes += t->nbytes;
        in->weight_bytes += t->nbytes;
    }
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++)
        if (all[t].count) {
            all[t].type = t;
            in->types[in->n_types++] = all[t];
        }
    in->runnable = model_check_runnable(g, &in->hp, in->why, sizeof in->why);
    sanitize(in->why); /* may quote a tensor name or a key's string value */
}

static const char *type_name(uint32_t t) {
    const ggml_type_info *ti = ggml_type_get(t);
    return ti ? ti->name : "?";
}

/* The RoPE the engine would build at the trained context (rope.c over the metadata and the
 * per-dimension factor tensors): the magnitude on cos/sin and the wavelength range. */
static void write_rope_effective(FILE *f, const gguf *g, const tome_hparams *hp) {
    static const char *const names[3] = {"rope_freqs.weight", "rope_factors_long.weight",
                                         "rope_factors_short.weight"};
    const float *arr[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        const gguf_tensor *t = gguf_find_tensor(g, names[i]);
        if (t && t->type == GGML_TYPE_F32 && t->ne[0] >= hp->rope_dim / 2) arr[i] = t->data;
    }
    rope_config c;
    rope_config_from_hparams(&c, hp, arr[0], arr[1], arr[2]);
    rope_table t;
    terr e = {0};
    if (rope_table_build(&t, &c, hp->n_ctx_train, &e)) {
        fprintf(f, "%-14s(cannot build: %s)\n", "rope eff.:", e.msg);
        return;
    }
    const int half = t.dim / 2;
    fprintf(f, "%-14smagnitude %g, wavelengths %.4g..%.4g positions (at context %d)\n", "rope eff.:",
            (double)t.mscale, 2.0 * M_PI / t.freq[0], 2.0 * M_PI / t.freq[half - 1], hp->n_ctx_train);
}

/* Text: one "label: value" line per fact; a dash where a value is unknown (0). */
static void write_text(FILE *f, const tome_info *in) {
    const gguf *g = in->g;
    const tome_hparams *hp = &in->hp;
#define INT_OR_DASH(label, v)                                                            \
    do {                                                                                 \
        if (v) fprintf(f, "%-14s%d\n", label, (int)(v));                                 \
        else fprintf(f, "%-14s-\n", label);                                              \
    } while (0)
    fprintf(f, "%-14s%s (%llu bytes)\n", "file:", g->path, (unsigned long long)g->size);
    fprintf(f, "%-14s%u (alignment %llu, %llu metadata keys)\n", "gguf version:", g->version,
            (unsigned long long)g->alignment, (unsigned long long)g->n_kv);
    fprintf(f, "%-14s%s%s%s%s\n", "architecture:", hp->arch_name[0] ? hp->arch_name : "(none)",
            in->name[0] ? " (" : "", in->name, in->name[0] ? ")" : "");
    INT_OR_DASH("layers:", hp->n_layer);
    INT_OR_DASH("width:", hp->n_embd);
    INT_OR_DASH("heads:", hp->n_head);
    INT_OR_DASH("kv heads:", hp->n_head_kv);
    INT_OR_DASH("head dim:", hp->head_dim);
    if (hp->head_dim_v != hp->head_dim) INT_OR_DASH("value dim:", hp->head_dim_v);
    INT_OR_DASH("ff:", hp->n_ff);
    INT_OR_DASH("vocab:", hp->n_vocab);
    INT_OR_DASH("context:", hp->n_ctx_train);
    if (hp->arch == ARCH_UNKNOWN) goto tokenizer; /* norm and RoPE would be mere defaults */
    fprintf(f, "%-14s%g\n", "norm eps:", (double)hp->norm_eps);
    fprintf(f, "%-14sbase %g, %d dims, %s", "rope:", (double)hp->rope_base, hp->rope_dim,
            hp->rope_neox ? "halves (neox)" : "adjacent pairs");
    fprintf(f, ", scaling %s", rope_scaling_name(hp->rope_scaling));
    if (hp->rope_scaling != ROPE_SCALING_NONE)
        fprintf(f, " (factor %g, original context %d)", (double)hp->rope_factor, hp->rope_orig_ctx);
    fprintf(f, "\n");
    if (hp->rope_dim >= 2 && (hp->rope_scaling != ROPE_SCALING_NONE || hp->has_rope_freqs))
        write_rope_effective(f, g, hp);
    if (hp->sliding_window) fprintf(f, "%-14s%d\n", "window:", hp->sliding_window);
tokenizer:
    fprintf(f, "%-14s%s", "tokenizer:", in->tok_model[0] ? in->tok_model : "(none)");
    if (in->tok_pre[0]) fprintf(f, " / %s", in->tok_pre);
    if (in->n_tokens >= 0) fprintf(f, ", %lld tokens", (long long)in->n_tokens);
    fprintf(f, ", chat template: %s\n", in->chat_template ? "yes" : "no");
    fprintf(f, "%-14s%llu%s\n", "tensors:", (unsigned long long)g->n_tensors,
            hp->tied_output ? " (output tied to token_embd)" : "");
    if (in->n_types) {
        fprintf(f, "  %-8s %7s %14s %14s\n", "type", "count", "elements", "bytes");
        for (int i = 0; i < in->n_types; i++)
            fprintf(f, "  %-8s %7llu %14llu %14llu\n", type_name(in->types[i].type),
                    (unsigned long long)in->types[i].count, (unsigned long long)in->types[i].elems,
                    (unsigned long long)in->types[i].bytes);
    }
    fprintf(f, "%-14s%llu (%.2f MiB)\n", "weights:", (unsigned long long)in->weight_bytes,
            (double)in->weight_bytes / (1024.0 * 1024.0));
    if (in->runnable) fprintf(f, "runnable: yes\n");
    else fprintf(f, "runnable: no \xe2\x80\x94 %s\n", in->why);
#undef INT_OR_DASH
}

/* A JSON string from bytes that may not be valid UTF-8 (a path given on the command line). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    size_t n = strlen(buf);
    int64_t bad;
    while ((bad = tutf8_invalid_offset(buf, n)) >= 0) buf[bad] = '?';
    return json_string(buf);
}

static json_t *build_json(const tome_info *in) {
    const gguf *g = in->g;
    const tome_hparams *hp = &in->hp;
    json_t *hpj = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:i, s:s, s:s, s:f, s:i, s:f, s:i, s:b}",
        "n_layer", hp->n_layer, "n_embd", hp->n_embd, "n_head", hp->n_head, "n_head_kv", hp->n_head_kv,
        "head_dim", hp->head_dim, "head_dim_v", hp->head_dim_v, "n_ff", hp->n_ff, "n_vocab", hp->n_vocab,
        "n_ctx_train", hp->n_ctx_train, "norm_eps", (double)hp->norm_eps, "rope_base", (double)hp->rope_base,
        "rope_dim", hp->rope_dim, "rope_style", hp->rope_neox ? "neox" : "normal",
        "rope_scaling", rope_scaling_name(hp->rope_scaling), "rope_factor", (double)hp->rope_factor,
        "rope_orig_ctx", hp->rope_orig_ctx, "rope_attn_factor", (double)hp->rope_attn_factor,
        "sliding_window", hp->sliding_window, "tied_output", hp->tied_output);
    json_t *tok = json_pack("{s:o, s:o, s:I, s:I, s:I, s:b}",
        "model", in->tok_model[0] ? jstr(in->tok_model) : json_null(),
        "pre", in->tok_pre[0] ? jstr(in->tok_pre) : json_null(),
        "n_tokens", (json_int_t)in->n_tokens, "bos", (json_int_t)in->bos, "eos", (json_int_t)in->eos,
        "chat_template", in->chat_template);
    json_t *types = json_array();
    for (int i = 0; types && i < in->n_types; i++)
        json_array_append_new(types, json_pack("{s:s, s:I, s:I, s:I}", "type", type_name(in->types[i].type),
                                               "count", (json_int_t)in->types[i].count,
                                               "elements", (json_int_t)in->types[i].elems,
                                               "bytes", (json_int_t)in->types[i].bytes));
    /* "o" steals references and fails (returning NULL, freeing them) if any is NULL */
    return json_pack("{s:o, s:I, s:i, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:b, s:o}",
        "file", jstr(g->path), "size", (json_int_t)g->size, "gguf_version", (int)g->version,
        "alignment", (json_int_t)g->alignment, "n_kv", (json_int_t)g->n_kv,
        "architecture", hp->arch_name[0] ? jstr(hp->arch_name) : json_null(),
        "name", in->name[0] ? jstr(in->name) : json_null(),
        "hparams", hpj, "tokenizer", tok, "n_tensors", (json_int_t)g->n_tensors,
        "tensor_types", types, "weight_bytes", (json_int_t)in->weight_bytes,
        "runnable", in->runnable, "reason", in->runnable ? json_null() : jstr(in->why));
}

int info_write(FILE *f, const tome_info *in, int json) {
    if (!json) {
        write_text(f, in);
        return 0;
    }
    json_t *j = build_json(in);
    if (!j) return TOME_ERESOURCE;
    int rc = json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(j);
    return rc ? TOME_ERESOURCE : 0;
}

/* tok_hf.c — loads a Hugging Face byte-level BPE tokenizer (tokenizer.json +
 * tokenizer_config.json) into the shared representation (tok_impl.h).
 *
 * Supported: model.type "BPE" with a ByteLevel pre-tokenizer or decoder; merges as "a b"
 * strings (Llama 3) or [a, b] pairs (Qwen2/3); added_tokens (special -> control, else
 * user-defined, with lstrip/rstrip); pre_tokenizer Split(Regex, Isolated) and/or
 * ByteLevel(use_regex) possibly inside a Sequence; normalizer null or NFC (or a Sequence of
 * NFC). Anything else is refused with TOME_EUNSUPPORTED rather than tokenized wrongly.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tok_impl.h"

/* Content of a token field that is a string or {"content": ...}; NULL otherwise. */
static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

/* Looks at one pre-tokenizer; sets *regex (borrowed) and *bytelevel. */
static int pre_one(json_t *p, const char **regex, int *bytelevel, const char *path, terr *e) {
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return terr_set(e, TOME_EINPUT, "%s: pre_tokenizer without a type", path);
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        if (!re || (beh && strcmp(beh, "Isolated")) || json_is_true(json_object_get(p, "invert")))
            return terr_set(e, TOME_EUNSUPPORTED, "%s: only Split pre-tokenizers with a Regex pattern, Isolated, not inverted, are supported", path);
        *regex = re;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        *bytelevel = 1;
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return terr_set(e, TOME_EUNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", path);
        json_t *ur = json_object_get(p, "use_regex");
        if ((!ur || json_is_true(ur)) && !*regex) *regex = TOK_RE_GPT2;
        return 0;
    }
    return terr_set(e, TOME_EUNSUPPORTED, "%s: pre-tokenizer type '%s' is not supported", path, type);
}

static int normalizer(json_t *n, int *nfc, const char *path, terr *e) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (type && !strcmp(type, "NFC")) { *nfc = 1; return 0; }
    if (type && !strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "normalizers");
        size_t i;
        json_t *x;
        json_array_foreach(a, i, x) {
            int rc = normalizer(x, nfc, path, e);
            if (rc) return rc;
        }
        return 0;
    }
    return terr_set(e, TOME_EUNSUPPORTED, "%s: normalizer '%s' is not supported (NFC only)", path, type ? type : "?");
}

/* Parses path into *out. An optional file may be absent (*out stays NULL); one that exists
 * must parse, or its settings would be silently lost. */
static int load_json(const char *path, int optional, json_t **out, terr *e) {
    json_error_t je;
    *out = NULL;
    if (optional && access(path, F_OK) != 0 && errno == ENOENT) return 0;
    *out = json_load_file(path, 0, &je);
    if (!*out) return terr_set(e, TOME_EINPUT, "%s: line %d: %s", path, je.line, je.text);
    return 0;
}

int tok_load_hf(tokenizer **out, const char *dir, terr *e) {
    *out = NULL;
    char path[4096], cpath[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    json_t *j, *cfg;
    int rc = load_json(path, 0, &j, e);
    if (rc) return rc;
    if ((rc = load_json(cpath, 1, &cfg, e))) {
        json_decref(j);
        return rc;
    }
    tokenizer *t = NULL;

    json_t *model = json_object_get(j, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(model) || !json_is_object(vocab) || !json_is_array(merges)) {
        rc = terr_set(e, TOME_EINPUT, "%s: model.vocab / model.merges missing", path);
        goto done;
    }
    if (!mtype || strcmp(mtype, "BPE")) {
        rc = terr_set(e, TOME_EUNSUPPORTED, "%s: model type '%s' is not supported (BPE only)", path, mtype ? mtype : "?");
        goto done;
    }
    /* pre-tokenizer */
    const char *regex = NULL;
    int bytelevel = 0, nfc = 0;
    json_t *pre = json_object_get(j, "pre_tokenizer");
    const char *ptype = json_string_value(json_object_get(pre, "type"));
    if (ptype && !strcmp(ptype, "Sequence")) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(pre, "pretokenizers"), i, x)
            if ((rc = pre_one(x, &regex, &bytelevel, path, e))) goto done;
    } else if (ptype && (rc = pre_one(pre, &regex, &bytelevel, path, e))) {
        goto done;
    }
    const char *dtype = json_string_value(json_object_get(json_object_get(j, "decoder"), "type"));
    if (!bytelevel && !(dtype && !strcmp(dtype, "ByteLevel"))) {
        rc = terr_set(e, TOME_EUNSUPPORTED, "%s: only byte-level BPE tokenizers are supported", path);
        goto done;
    }
    if (!regex) regex = TOK_RE_GPT2;
    if ((rc = normalizer(json_object_get(j, "normalizer"), &nfc, path, e))) goto done;

    /* vocabulary size: the largest id in vocab or added_tokens, plus one */
    json_t *added = json_object_get(j, "added_tokens");
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 30)) {
            rc = terr_set(e, TOME_EINPUT, "%s: model.vocab['%s'] is not a valid id", path, key);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    size_t ai;
    json_t *at;
    json_array_foreach(added, ai, at) {
        json_int_t id = json_integer_value(json_object_get(at, "id"));
        if (!token_content(at) || id < 0 || id >= (1 << 30)) {
            rc = terr_set(e, TOME_EINPUT, "%s: added_tokens[%zu] has no valid id / content", path, ai);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    /* ids must be (nearly) dense: a few bytes of JSON must not make tome allocate a table of a
     * billion entries */
    size_t n_entries = json_object_size(vocab) + json_array_size(added);
    if ((size_t)max_id + 1 > 2 * n_entries + 1024) {
        rc = terr_set(e, TOME_EINPUT, "%s: token ids are sparse (largest id %lld for %zu tokens)", path,
                      (long long)max_id, n_entries);
        goto done;
    }
    t = tok_alloc(TOK_BPE, dir);
    if (!t) { rc = terr_set(e, TOME_ERESOURCE, "%s: out of memory", path); goto done; }
    if ((rc = tok_build_vocab(t, (int)max_id + 1, e))) goto done;
    json_object_foreach(vocab, key, val) {
        if ((rc = tok_set_token(t, (int)json_integer_value(val), key, strlen(key), 0.0f, TA_NORMAL, e))) goto done;
    }
    json_array_foreach(added, ai, at) {
        const char *c = token_content(at);
        int attr = json_is_true(json_object_get(at, "special")) ? TA_CONTROL : TA_USER;
        if (json_is_true(json_object_get(at, "lstrip"))) attr |= TA_LSTRIP;
        if (json_is_true(json_object_get(at, "rstrip"))) attr |= TA_RSTRIP;
        if ((rc = tok_set_token(t, (int)json_integer_value(json_object_get(at, "id")), c, strlen(c), 0.0f, attr, e))) goto done;
    }
    if ((rc = tok_index(t, e))) goto done;
    size_t mi;
    json_t *m;
    json_array_foreach(merges, mi, m) {
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
            if (!sp) continue;
            if ((rc = tok_add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, (uint32_t)mi, e))) goto done;
        } else if (json_is_array(m) && json_array_size(m) == 2) {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            if (!json_is_string(a) || !json_is_string(b)) continue;
            if ((rc = tok_add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                                    json_string_length(b), (uint32_t)mi, e)))
                goto done;
        } else {
            rc = terr_set(e, TOME_EINPUT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", path, mi);
            goto done;
        }
    }
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    t->nfc = nfc;
    if (!(t->regex_src = strdup(regex))) { rc = terr_set(e, TOME_ERESOURCE, "%s: out of memory", path); goto done; }

    /* BOS / EOS / add_bos: tokenizer_config.json, else the post-processor template */
    const char *bos = cfg ? token_content(json_object_get(cfg, "bos_token")) : NULL;
    const char *eos = cfg ? token_content(json_object_get(cfg, "eos_token")) : NULL;
    const char *pad = cfg ? token_content(json_object_get(cfg, "pad_token")) : NULL;
    const char *tmpl_bos = NULL;
    json_t *post = json_object_get(j, "post_processor");
    json_t *procs = json_object_get(post, "processors");
    if (!procs) { procs = json_array(); json_array_append(procs, post); }
    else json_incref(procs);
    size_t pi;
    json_t *pp;
    json_array_foreach(procs, pi, pp) {
        const char *ty = json_string_value(json_object_get(pp, "type"));
        if (!ty || strcmp(ty, "TemplateProcessing")) continue;
        json_t *first = json_array_get(json_object_get(pp, "single"), 0);
        tmpl_bos = json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
    }
    if (bos) t->bos = tok_lookup(t, bos, strlen(bos));
    else if (tmpl_bos) t->bos = tok_lookup(t, tmpl_bos, strlen(tmpl_bos));
    if (eos) t->eos = tok_lookup(t, eos, strlen(eos));
    if (pad) t->pad = tok_lookup(t, pad, strlen(pad));
    json_t *abt = cfg ? json_object_get(cfg, "add_bos_token") : NULL;
    if (json_is_boolean(abt)) t->add_bos = json_is_true(abt);
    else t->add_bos = tmpl_bos != NULL && t->bos >= 0;
    json_decref(procs);

    json_t *ct = cfg ? json_object_get(cfg, "chat_template") : NULL;
    const char *tmpl = json_string_value(ct);
    if (json_is_array(ct)) { /* [{name, template}, ...]: the "default" one, else the first */
        size_t ci;
        json_t *c;
        json_array_foreach(ct, ci, c) {
            const char *nm = json_string_value(json_object_get(c, "name"));
            if (!tmpl || (nm && !strcmp(nm, "default"))) tmpl = json_string_value(json_object_get(c, "template"));
        }
    }
    if (tmpl && !(t->chat_template = strdup(tmpl))) { rc = terr_set(e, TOME_ERESOURCE, "%s: out of memory", path); goto done; }
    if ((rc = tok_finish(t, e))) goto done;
    *out = t;
    t = NULL;
done:
    tok_free(t);
    json_decref(j);
    if (cfg) json_decref(cfg);
    return rc;
}

/* tokenizer.c — vocabulary, GGUF loader, encoder and decoder (see tokenizer.h).
 *
 * Behaviour follows llama.cpp's llama-vocab.cpp (the reference for GGUF files) and HF
 * tokenizers (for tokenizer.json), written from their documented/observed behaviour:
 *   - Special tokens are split out of the text first, longest text first; control and
 *     unknown tokens only with TOK_PARSE_SPECIAL, user-defined ones always. LSTRIP/RSTRIP
 *     tokens swallow neighbouring ASCII whitespace.
 *   - SPM: each text fragment gets a leading space when add_space_prefix is set and it
 *     starts the text or follows a special token; spaces become U+2581; characters are
 *     merged pairwise, best score first (ties: leftmost), over a linked list with a binary
 *     heap; leftover symbols that are not tokens become <0xNN> byte tokens.
 *   - BPE: optional NFC, PCRE2 pre-tokenizer splits words (unmatched gaps are words too);
 *     each word's bytes start as GPT-2 byte tokens and merge lowest rank first (ties:
 *     leftmost). With ignore_merges (Llama 3) a word that is itself a token is taken whole.
 *     A per-call cache maps repeated words to their ids.
 * Limits: texts are capped at 2^31 - 1 bytes; merges whose result is not a token are ignored.
 */
#include "tok_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

const char *const TOK_RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_LLAMA3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_QWEN2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- small helpers ------------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint64_t hash_bytes64(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* The growth step of the push-only arrays below: p reallocated to twice *cap elements (first
 * when empty), *cap updated. NULL when out of memory (p and *cap are then unchanged). */
static void *grow_double(void *p, size_t *cap, size_t elsz, size_t first) {
    size_t c = *cap ? *cap * 2 : first;
    if (c > SIZE_MAX / elsz) return NULL;
    void *np = realloc(p, c * elsz);
    if (np) *cap = c;
    return np;
}

typedef struct ivec { int32_t *v; size_t n, cap; } ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int32_t *v = grow_double(a->v, &a->cap, sizeof *v, 256);
        if (!v) return -1;
        a->v = v;
    }
    a->v[a->n++] = x;
    return 0;
}

static int ivec_append(ivec *a, const int32_t *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ivec_push(a, x[i])) return -1;
    return 0;
}

/* ---- GPT-2 byte <-> unicode ---------------------------------------------------------- */

/* Printable Latin-1 bytes map to themselves; the other 68 to U+0100.. in byte order. */
static int gpt2_printable(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tok_gpt2_byte_cp(int b) {
    if (gpt2_printable(b)) return (uint32_t)b;
    int n = 0;
    for (int k = 0; k < b; k++) n += !gpt2_printable(k);
    return 256u + (uint32_t)n;
}

int tok_gpt2_cp_byte(uint32_t cp) {
    if (cp < 256) return gpt2_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    int n = (int)(cp - 256);
    for (int b = 0; b < 256; b++)
        if (!gpt2_printable(b) && n-- == 0) return b;
    return -1;
}

/* ---- building ------------------------------------------------------------------------ */

tokenizer *tok_alloc(int kind, const char *name) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = -1;
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    for (int c = 0; c < 324; c++) t->cp_byte[c] = (int16_t)tok_gpt2_cp_byte((uint32_t)c);
    for (int b = 0; b < 256; b++) {
        char u[4];
        t->byte_cp[b] = tok_gpt2_byte_cp(b);
        t->byte_utf8_len[b] = (uint8_t)uni_encode(t->byte_cp[b], u);
        memcpy(t->byte_utf8[b], u, 2);
    }
    t->name = strdup(name ? name : "tokenizer");
    if (!t->name) { free(t); return NULL; }
    return t;
}

int tok_build_vocab(tokenizer *t, int n, terr *e) {
    if (n <= 0 || n > (1 << 30)) return terr_set(e, TOME_EINPUT, "%s: bad vocabulary size %d", t->name, n);
    t->n_vocab = n;
    t->text_off = tcalloc((size_t)n, sizeof *t->text_off);
    t->text_len = tcalloc((size_t)n, sizeof *t->text_len);
    t->score = tcalloc((size_t)n, sizeof *t->score);
    t->attr = tcalloc((size_t)n, sizeof *t->attr);
    t->text_pool_cap = (size_t)n * 8 + 64;
    t->text_pool = malloc(t->text_pool_cap);
    if (!t->text_off || !t->text_len || !t->score || !t->attr || !t->text_pool)
        return terr_set(e, TOME_ERESOURCE, "%s: out of memory for the vocabulary", t->name);
    t->text_pool[0] = 0;
    t->text_pool_len = 1; /* offset 0 is the shared empty string */
    for (int i = 0; i < n; i++) t->attr[i] = TA_UNUSED;
    return 0;
}

int tok_set_token(tokenizer *t, int id, const char *text, size_t len, float score, int attr,
                  terr *e) {
    if (id < 0 || id >= t->n_vocab) return terr_set(e, TOME_EINPUT, "%s: token id %d out of range", t->name, id);
    if (len > 0xFFFFFF) return terr_set(e, TOME_EINPUT, "%s: token %d is too long", t->name, id);
    if (t->text_pool_len + len + 1 > t->text_pool_cap) {
        size_t cap = (t->text_pool_cap + len + 1) * 2;
        char *p = realloc(t->text_pool, cap);
        if (!p) return terr_set(e, TOME_ERESOURCE, "%s: out of memory for the vocabulary", t->name);
        t->text_pool = p;
        t->text_pool_cap = cap;
    }
    if (t->text_pool_len + len + 1 > UINT32_MAX) return terr_set(e, TOME_EINPUT, "%s: vocabulary text too large", t->name);
    t->text_off[id] = (uint32_t)t->text_pool_len;
    t->text_len[id] = (uint32_t)len;
    memcpy(t->text_pool + t->text_pool_len, text, len);
    t->text_pool[t->text_pool_len + len] = 0;
    t->text_pool_len += len + 1;
    t->score[id] = score;
    t->attr[id] = (uint16_t)attr;
    return 0;
}

static const char *ttext(const tokenizer *t, int32_t id) { return t->text_pool + t->text_off[id]; }

int tok_index(tokenizer *t, terr *e) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2) cap *= 2;
    free(t->index);
    t->index = tcalloc(cap, sizeof *t->index);
    if (!t->index) return terr_set(e, TOME_ERESOURCE, "%s: out of memory for the vocabulary index", t->name);
    t->index_mask = cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (t->text_len[id] == 0) continue;
        const char *s = ttext(t, id);
        uint32_t h = hash_bytes(s, t->text_len[id]);
        size_t i = h & t->index_mask;
        for (;; i = (i + 1) & t->index_mask) {
            uint64_t slot = t->index[i];
            if (!slot) break;
            int32_t o = (int32_t)(uint32_t)slot - 1;
            if ((uint32_t)(slot >> 32) == h && t->text_len[o] == t->text_len[id] &&
                memcmp(ttext(t, o), s, t->text_len[id]) == 0)
                break; /* duplicate text: the later id wins */
        }
        t->index[i] = ((uint64_t)h << 32) | (uint32_t)(id + 1);
    }
    return 0;
}

int32_t tok_lookup(const tokenizer *t, const char *s, size_t n) {
    if (!t->index || n == 0) return -1;
    uint32_t h = hash_bytes(s, n);
    for (size_t i = h & t->index_mask;; i = (i + 1) & t->index_mask) {
        uint64_t slot = t->index[i];
        if (!slot) return -1;
        if ((uint32_t)(slot >> 32) != h) continue;
        int32_t id = (int32_t)(uint32_t)slot - 1;
        if (t->text_len[id] == n && memcmp(ttext(t, id), s, n) == 0) return id;
    }
}

static int merges_grow(tok_merge_map *m) {
    size_t cap = m->mask ? (m->mask + 1) * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *rank = malloc(cap * sizeof *rank);
    int32_t *result = malloc(cap * sizeof *result);
    if (!keys || !rank || !result) { free(keys); free(rank); free(result); return -1; }
    memset(keys, 0xFF, cap * sizeof *keys);
    for (size_t i = 0; m->mask && i <= m->mask; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (keys[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        rank[j] = m->rank[i];
        result[j] = m->result[i];
    }
    free(m->keys); free(m->rank); free(m->result);
    m->keys = keys; m->rank = rank; m->result = result;
    m->mask = cap - 1;
    return 0;
}

int tok_add_merge(tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                  uint32_t rank, terr *e) {
    int32_t ia = tok_lookup(t, a, na), ib = tok_lookup(t, b, nb);
    if (ia < 0 || ib < 0) return 0;
    char stackbuf[256];
    char *buf = na + nb <= sizeof stackbuf ? stackbuf : malloc(na + nb);
    if (!buf) return terr_set(e, TOME_ERESOURCE, "%s: out of memory for merges", t->name);
    memcpy(buf, a, na);
    memcpy(buf + na, b, nb);
    int32_t r = tok_lookup(t, buf, na + nb);
    if (buf != stackbuf) free(buf);
    if (r < 0) return 0;
    tok_merge_map *m = &t->merges;
    if ((m->n + 1) * 2 > (m->mask ? m->mask + 1 : 0) && merges_grow(m))
        return terr_set(e, TOME_ERESOURCE, "%s: out of memory for merges", t->name);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    size_t j = mix64(key) & m->mask;
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key) j = (j + 1) & m->mask;
    if (m->keys[j] == key) return 0; /* first listing (lowest rank) wins */
    m->keys[j] = key;
    m->rank[j] = rank;
    m->result[j] = r;
    m->n++;
    return 0;
}

/* Rank and result of merging (a, b); 0 when there is no such merge. */
static int merge_find(const tok_merge_map *m, int32_t a, int32_t b, uint32_t *rank, int32_t *result) {
    if (!m->mask) return 0;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t j = mix64(key) & m->mask;; j = (j + 1) & m->mask) {
        if (m->keys[j] == UINT64_MAX) return 0;
        if (m->keys[j] == key) { *rank = m->rank[j]; *result = m->result[j]; return 1; }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xNN>" token text, or -1. */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Decoded bytes of token id into out (room for 2 * text_len + 8); returns the count. */
static size_t decode_piece(const tokenizer *t, int32_t id, char *out) {
    const char *s = ttext(t, id);
    size_t n = t->text_len[id];
    int a = t->attr[id];
    if (a & TA_BYTE) {
        int b = byte_token_value(s, n);
        if (b >= 0) { out[0] = (char)b; return 1; }
    }
    if (a & (TA_CONTROL | TA_USER | TA_UNKNOWN)) { memcpy(out, s, n); return n; }
    if (!(a & TA_NORMAL)) return 0; /* unused / undefined: nothing, as llama.cpp */
    size_t w = 0;
    if (t->kind == TOK_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) { out[w++] = ' '; i += 3; }
            else out[w++] = s[i++];
        }
        return w;
    }
    for (size_t i = 0; i < n;) {
        size_t i0 = i;
        uint32_t cp = uni_decode(s, n, &i);
        int b = cp < 324 ? t->cp_byte[cp] : -1;
        if (b >= 0) out[w++] = (char)b;
        else { memcpy(out + w, s + i0, i - i0); w += i - i0; } /* not a byte char: keep it */
    }
    return w;
}

static int cmp_special(const void *pa, const void *pb, void *ctx) {
    const tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (t->text_len[a] != t->text_len[b]) return t->text_len[a] > t->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int eog_add(tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 0;
    int32_t *v = realloc(t->eog, (t->n_eog + 1) * sizeof *v);
    if (!v) return -1;
    t->eog = v;
    t->eog[t->n_eog++] = id;
    return 0;
}

int tok_finish(tokenizer *t, terr *e) {
    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        if (t->kind == TOK_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t id = tok_lookup(t, buf, 6);
            if (id < 0) { buf[0] = (char)b; id = tok_lookup(t, buf, 1); }
            t->byte_tok[b] = id;
        } else {
            size_t n = uni_encode(tok_gpt2_byte_cp(b), buf);
            t->byte_tok[b] = tok_lookup(t, buf, n);
        }
    }
    /* end of generation: the ids named in metadata plus the usual end-of-turn texts, which
     * (as in llama.cpp) become control tokens whatever their declared type */
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>", "<|end_of_text|>", "<|return|>", "<|call|>",
    };
    if (eog_add(t, t->eos) || eog_add(t, t->eot) || eog_add(t, t->eom)) goto oom;
    for (size_t k = 0; k < TOME_ARRAY_LEN(eog_texts); k++) {
        int32_t id = tok_lookup(t, eog_texts[k], strlen(eog_texts[k]));
        if (id >= 0) {
            if (eog_add(t, id)) goto oom;
            t->attr[id] = (uint16_t)((t->attr[id] | TA_CONTROL) & ~TA_NORMAL);
        }
    }
    /* decoded pieces */
    size_t cap = t->text_pool_len * 2 + 64, len = 0;
    t->dec_pool = malloc(cap);
    t->dec_off = tcalloc((size_t)t->n_vocab, sizeof *t->dec_off);
    t->dec_len = tcalloc((size_t)t->n_vocab, sizeof *t->dec_len);
    if (!t->dec_pool || !t->dec_off || !t->dec_len) goto oom;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = decode_piece(t, id, t->dec_pool + len);
        t->dec_off[id] = (uint32_t)len;
        t->dec_len[id] = (uint32_t)n;
        len += n;
        if (n > t->max_dec_len) t->max_dec_len = n;
    }
    /* SPM text can be cut into words before each U+2581 that follows another character when
     * no token has U+2581 after a non-U+2581 character: no merge can then cross such a cut,
     * merges on either side never interact, and the (score, position) order within a word is
     * unchanged, so words can be tokenized separately (and cached) with identical results. */
    if (t->kind == TOK_SPM) {
        t->spm_split = 1;
        for (int32_t id = 0; id < t->n_vocab && t->spm_split; id++) {
            const char *p = ttext(t, id);
            size_t n = t->text_len[id], i = 0;
            while (i + 3 <= n && !memcmp(p + i, "\xE2\x96\x81", 3)) i += 3;
            if (i < n && memmem(p + i, n - i, "\xE2\x96\x81", 3)) t->spm_split = 0;
        }
    }
    /* specials, longest text first */
    t->specials = tmalloc_array((size_t)t->n_vocab, sizeof *t->specials);
    if (!t->specials) goto oom;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] & (TA_CONTROL | TA_USER | TA_UNKNOWN)) && t->text_len[id] > 0)
            t->specials[t->n_specials++] = id;
    qsort_r(t->specials, t->n_specials, sizeof *t->specials, cmp_special, t);
    /* regex */
    if (t->kind == TOK_BPE) {
        if (!t->regex_src && !(t->regex_src = strdup(TOK_RE_GPT2))) goto oom;
        int err;
        PCRE2_SIZE erroff;
        t->re = pcre2_compile((PCRE2_SPTR)t->regex_src, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP, &err, &erroff, NULL);
        if (!t->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return terr_set(e, TOME_EUNSUPPORTED, "%s: pre-tokenizer regex: %s at offset %zu",
                            t->name, (const char *)msg, (size_t)erroff);
        }
        pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    }
    return 0;
oom:
    return terr_set(e, TOME_ERESOURCE, "%s: out of memory building the tokenizer", t->name);
}

void tok_free(tokenizer *t) {
    if (!t) return;
    free(t->text_pool); free(t->text_off); free(t->text_len); free(t->score); free(t->attr);
    free(t->dec_pool); free(t->dec_off); free(t->dec_len); free(t->index);
    free(t->merges.keys); free(t->merges.rank); free(t->merges.result);
    free(t->eog); free(t->specials); free(t->regex_src);
    if (t->re) pcre2_code_free(t->re);
    free(t->chat_template); free(t->name);
    free(t);
}

/* ---- GGUF loader --------------------------------------------------------------------- */

/* The id under key, else def; -1 when that is not a token of the vocabulary (a small
 * vocabulary may not reach llama.cpp's default ids). */
static int gguf_id(const gguf *g, const char *key, int n_vocab, int32_t def) {
    int64_t v = gguf_get_int(g, key, -1);
    if (v >= 0 && v < n_vocab) return (int32_t)v;
    return def < n_vocab ? def : -1;
}

int tok_load_gguf(tokenizer **out, const gguf *g, terr *e) {
    *out = NULL;
    const char *path = g->path ? g->path : "model";
    char model[64] = "", pre[64] = "", name[256] = "";
    if (!gguf_get_str_buf(g, "tokenizer.ggml.model", model, sizeof model))
        return terr_set(e, TOME_EINPUT, "%s: no tokenizer (tokenizer.ggml.model missing)", path);
    gguf_get_str_buf(g, "tokenizer.ggml.pre", pre, sizeof pre);
    gguf_get_str_buf(g, "general.name", name, sizeof name);
    int kind;
    if (!strcmp(model, "llama")) kind = TOK_SPM;
    else if (!strcmp(model, "gpt2")) kind = TOK_BPE;
    else return terr_set(e, TOME_EUNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported (llama, gpt2)", path, model);

    const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_TYPE_ARRAY || toks->elem_type != GGUF_TYPE_STRING || toks->n == 0)
        return terr_set(e, TOME_EINPUT, "%s: tokenizer.ggml.tokens missing or not an array of strings", path);
    if (toks->n > (1u << 30)) return terr_set(e, TOME_EINPUT, "%s: tokenizer.ggml.tokens: too many tokens", path);
    const gguf_value *scores = gguf_get(g, "tokenizer.ggml.scores");
    const gguf_value *types = gguf_get(g, "tokenizer.ggml.token_type");
    if (scores && (scores->type != GGUF_TYPE_ARRAY || scores->n < toks->n))
        return terr_set(e, TOME_EINPUT, "%s: tokenizer.ggml.scores has fewer entries than tokens", path);
    if (types && (types->type != GGUF_TYPE_ARRAY || types->n < toks->n))
        return terr_set(e, TOME_EINPUT, "%s: tokenizer.ggml.token_type has fewer entries than tokens", path);

    tokenizer *t = tok_alloc(kind, path);
    if (!t) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", path);
    int rc, n = (int)toks->n;
    if ((rc = tok_build_vocab(t, n, e))) goto fail;
    for (int i = 0; i < n; i++) {
        int attr = TA_NORMAL;
        if (types) {
            switch (gguf_arr_int(types, (uint64_t)i)) {
            case 1: attr = TA_NORMAL; break;
            case 2: attr = TA_UNKNOWN; break;
            case 3: attr = TA_CONTROL; break;
            case 4: attr = TA_USER; break;
            case 5: attr = TA_UNUSED; break;
            case 6: attr = TA_BYTE; break;
            default: attr = 0; break;
            }
        }
        float sc = scores ? (float)gguf_arr_float(scores, (uint64_t)i) : 0.0f;
        gguf_str s = toks->v.strs[i];
        if ((rc = tok_set_token(t, i, s.ptr, s.len, sc, attr, e))) goto fail;
    }
    if ((rc = tok_index(t, e))) goto fail;

    if (kind == TOK_SPM) {
        t->bos = 1; t->eos = 2; t->unk = 0;
        t->add_bos = 1;
        t->add_space_prefix = 1;
    } else {
        t->bos = t->eos = 11; /* llama.cpp's defaults for gpt2 vocabularies */
        t->add_bos = 0;
        const char *re = TOK_RE_GPT2;
        if (!pre[0] || !strcmp(pre, "default") || !strcmp(pre, "gpt-2") || !strcmp(pre, "gpt2") ||
            !strcmp(pre, "mpt") || !strcmp(pre, "olmo") || !strcmp(pre, "jais")) {
            re = TOK_RE_GPT2;
        } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3") ||
                   !strcmp(pre, "dbrx") || !strcmp(pre, "smaug-bpe")) {
            re = TOK_RE_LLAMA3;
            t->ignore_merges = 1;
            t->add_bos = 1;
        } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "stablelm2") || !strcmp(pre, "deepseek-r1-qwen")) {
            re = TOK_RE_QWEN2;
            t->nfc = !strcmp(pre, "stablelm2") ? 0 : 1; /* Qwen's tokenizer.json normalizes to NFC */
        } else {
            rc = terr_set(e, TOME_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported (gpt-2, llama-bpe, qwen2)", path, pre);
            goto fail;
        }
        if (!(t->regex_src = strdup(re))) { rc = terr_set(e, TOME_ERESOURCE, "%s: out of memory", path); goto fail; }
        const gguf_value *merges = gguf_get(g, "tokenizer.ggml.merges");
        if (!merges || merges->type != GGUF_TYPE_ARRAY || merges->elem_type != GGUF_TYPE_STRING) {
            rc = terr_set(e, TOME_EINPUT, "%s: tokenizer.ggml.merges missing or not an array of strings", path);
            goto fail;
        }
        for (uint64_t i = 0; i < merges->n && i < UINT32_MAX; i++) {
            gguf_str s = merges->v.strs[i];
            /* "a b": split at the first space after the first byte (a may itself be a space) */
            const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
            if (!sp) continue;
            size_t na = (size_t)(sp - s.ptr);
            if ((rc = tok_add_merge(t, s.ptr, na, sp + 1, s.len - na - 1, (uint32_t)i, e))) goto fail;
        }
    }
    t->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", n, t->bos);
    t->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", n, t->eos);
    t->eot = gguf_id(g, "tokenizer.ggml.eot_token_id", n, -1);
    t->eom = gguf_id(g, "tokenizer.ggml.eom_token_id", n, -1);
    t->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", n, t->unk);
    t->pad = gguf_id(g, "tokenizer.ggml.padding_token_id", n, -1);
    t->add_bos = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", t->add_bos);
    t->add_space_prefix = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    if (kind == TOK_BPE) t->add_space_prefix = 0; /* only SPM uses it */
    gguf_str ct;
    if (gguf_get_str(g, "tokenizer.chat_template", &ct)) {
        t->chat_template = strndup(ct.ptr, ct.len);
        if (!t->chat_template) { rc = terr_set(e, TOME_ERESOURCE, "%s: out of memory", path); goto fail; }
    }
    if ((rc = tok_finish(t, e))) goto fail;
    /* llama.cpp marks Phi-3's special tokens RSTRIP (they swallow the whitespace after them),
     * except <unk>, <s> and <|endoftext|>; it knows the model only by general.name. */
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (size_t i = 0; i < t->n_specials; i++) t->attr[t->specials[i]] |= TA_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < TOME_ARRAY_LEN(keep); k++) {
            int32_t id = tok_lookup(t, keep[k], strlen(keep[k]));
            if (id >= 0) t->attr[id] &= (uint16_t)~TA_RSTRIP;
        }
    }
    *out = t;
    return 0;
fail:
    tok_free(t);
    return rc;
}

/* ---- queries ------------------------------------------------------------------------- */

int tok_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t tok_bos(const tokenizer *t) { return t->bos; }
int32_t tok_eos(const tokenizer *t) { return t->eos; }
int tok_add_bos_default(const tokenizer *t) { return t->add_bos && t->bos >= 0; }
int tok_is_control(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & TA_CONTROL);
}
int tok_is_eog(const tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return 1;
    return 0;
}
int32_t tok_find(const tokenizer *t, const char *piece) { return tok_lookup(t, piece, strlen(piece)); }
const char *tok_piece(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? ttext(t, id) : NULL;
}
size_t tok_max_token_len(const tokenizer *t) { return t->max_dec_len; }
const char *tok_chat_template(const tokenizer *t) { return t->chat_template; }

/* ---- encoding: shared pieces --------------------------------------------------------- */

typedef struct sym {
    int32_t id;      /* BPE: token id of the symbol */
    int32_t prev, next;
    uint32_t start;  /* byte offset in the word / text */
    uint32_t len;    /* bytes; 0 = merged away */
} sym;

/* A binary min-heap of candidate merges. key = (priority << 32) | left index, so equal
 * priorities pop leftmost first. */
typedef struct cand { uint64_t key; int32_t right; uint32_t size; } cand;
typedef struct heap { cand *v; size_t n, cap; } heap;

static int heap_push(heap *h, cand c) {
    if (h->n == h->cap) {
        cand *v = grow_double(h->v, &h->cap, sizeof *v, 64);
        if (!v) return -1;
        h->v = v;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p].key <= c.key) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mk = last.key;
        if (l < h->n && h->v[l].key < mk) { m = l; mk = h->v[l].key; }
        if (r < h->n && h->v[r].key < mk) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* Per-call scratch: symbol list, heap, and the BPE word cache. */
typedef struct work {
    sym *syms; size_t syms_cap;
    heap h;
    char *buf; size_t buf_cap;         /* escaped SPM text / byte-level word */
    /* word cache: open addressing over (hash, word) -> ids */
    struct wslot { uint64_t hash; uint32_t woff, wlen, ioff, ilen; } *wc;
    size_t wc_mask, wc_n;
    char *wbytes; size_t wbytes_len, wbytes_cap;
    ivec wids;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} work;

static void work_free(work *w) {
    free(w->syms); free(w->h.v); free(w->buf); free(w->wc); free(w->wbytes); free(w->wids.v);
    if (w->md) pcre2_match_data_free(w->md);
    if (w->mctx) pcre2_match_context_free(w->mctx);
    if (w->jit) pcre2_jit_stack_free(w->jit);
}

static int work_syms(work *w, size_t n) {
    if (n <= w->syms_cap) return 0;
    size_t cap = n + n / 2 + 16;
    sym *s = realloc(w->syms, cap * sizeof *s);
    if (!s) return -1;
    w->syms = s;
    w->syms_cap = cap;
    return 0;
}

static int work_buf(work *w, size_t n) {
    if (n <= w->buf_cap) return 0;
    size_t cap = n + n / 2 + 64;
    char *b = realloc(w->buf, cap);
    if (!b) return -1;
    w->buf = b;
    w->buf_cap = cap;
    return 0;
}

/* Orders floats so that a higher score gives a smaller key (min-heap pops the best). */
static uint32_t score_key(float f) {
    if (f == 0.0f) f = 0.0f; /* -0 ties with +0, as a float comparison has it */
    uint32_t b;
    memcpy(&b, &f, 4);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u); /* monotone in f */
    return ~b;
}

/* ---- SPM ----------------------------------------------------------------------------- */

static int spm_try_pair(const tokenizer *t, work *w, const char *text, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const sym *a = &w->syms[l], *b = &w->syms[r];
    uint32_t size = a->len + b->len;
    int32_t id = tok_lookup(t, text + a->start, size);
    if (id < 0) return 0;
    cand c = {((uint64_t)score_key(t->score[id]) << 32) | (uint32_t)l, r, size};
    return heap_push(&w->h, c);
}

/* Tokenizes one escaped SPM fragment (spaces already U+2581). */
static int spm_encode(const tokenizer *t, work *w, const char *text, size_t n, ivec *out) {
    if (n == 0) return 0;
    if (work_syms(w, n)) return -1;
    size_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t len = uni_len_utf8((unsigned char)text[i]);
        if (len > n - i) len = n - i;
        sym *s = &w->syms[ns];
        s->start = (uint32_t)i;
        s->len = (uint32_t)len;
        s->prev = (int32_t)ns - 1;
        i += len;
        s->next = i == n ? -1 : (int32_t)ns + 1;
        ns++;
    }
    w->h.n = 0;
    for (size_t i = 1; i < ns; i++)
        if (spm_try_pair(t, w, text, (int32_t)i - 1, (int32_t)i)) return -1;
    while (w->h.n) {
        cand c = heap_pop(&w->h);
        int32_t l = (int32_t)(uint32_t)c.key;
        sym *a = &w->syms[l], *b = &w->syms[c.right];
        if (a->len == 0 || b->len == 0 || a->len + b->len != c.size) continue; /* stale */
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) w->syms[b->next].prev = l;
        if (spm_try_pair(t, w, text, a->prev, l) || spm_try_pair(t, w, text, l, a->next)) return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next) {
        const sym *s = &w->syms[i];
        int32_t id = tok_lookup(t, text + s->start, s->len);
        if (id >= 0) {
            if (ivec_push(out, id)) return -1;
            continue;
        }
        for (uint32_t k = 0; k < s->len; k++) { /* byte fallback */
            int32_t bid = t->byte_tok[(unsigned char)text[s->start + k]];
            if (bid < 0) bid = t->unk;
            if (bid >= 0 && ivec_push(out, bid)) return -1;
        }
    }
    return 0;
}

static int word_cached(const tokenizer *t, work *w, const char *s, size_t n, ivec *out);

static int spm_fragment(const tokenizer *t, work *w, const char *s, size_t n, int prefix, ivec *out) {
    size_t spaces = prefix;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    if (work_buf(w, n + spaces * 2 + 3)) return -1;
    size_t m = 0;
    if (prefix) { memcpy(w->buf, "\xE2\x96\x81", 3); m = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(w->buf + m, "\xE2\x96\x81", 3); m += 3; }
        else w->buf[m++] = s[i];
    }
    if (!t->spm_split) return spm_encode(t, w, w->buf, m, out);
    size_t start = 0;
    for (size_t i = 1; i + 3 <= m; i++) {
        if (memcmp(w->buf + i, "\xE2\x96\x81", 3) != 0) continue;
        if (i >= 3 && memcmp(w->buf + i - 3, "\xE2\x96\x81", 3) == 0) continue; /* inside a run */
        if (word_cached(t, w, w->buf + start, i - start, out)) return -1;
        start = i;
        i += 2;
    }
    return word_cached(t, w, w->buf + start, m - start, out);
}

/* ---- byte-level BPE ------------------------------------------------------------------ */

static int bpe_try_pair(const tokenizer *t, work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const sym *a = &w->syms[l], *b = &w->syms[r];
    uint32_t rank;
    int32_t res;
    if (!merge_find(&t->merges, a->id, b->id, &rank, &res)) return 0;
    cand c = {((uint64_t)rank << 32) | (uint32_t)l, r, a->len + b->len};
    return heap_push(&w->h, c);
}

/* BPE over one pre-token's raw bytes; appends ids to out. */
static int bpe_word(const tokenizer *t, work *w, const char *s, size_t n, ivec *out) {
    if (t->ignore_merges) {
        /* the word's byte-level text, looked up whole */
        if (work_buf(w, n * 2 + 1)) return -1;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            memcpy(w->buf + m, t->byte_utf8[c], 2);
            m += t->byte_utf8_len[c];
        }
        int32_t id = tok_lookup(t, w->buf, m);
        if (id >= 0) return ivec_push(out, id);
    }
    if (work_syms(w, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        sym *y = &w->syms[i];
        y->id = t->byte_tok[(unsigned char)s[i]];
        y->start = (uint32_t)i;
        y->len = 1;
        y->prev = (int32_t)i - 1;
        y->next = i + 1 == n ? -1 : (int32_t)i + 1;
    }
    w->h.n = 0;
    for (size_t i = 1; i < n; i++)
        if (bpe_try_pair(t, w, (int32_t)i - 1, (int32_t)i)) return -1;
    while (w->h.n) {
        cand c = heap_pop(&w->h);
        int32_t l = (int32_t)(uint32_t)c.key;
        sym *a = &w->syms[l], *b = &w->syms[c.right];
        if (a->len == 0 || b->len == 0 || a->next != c.right || a->len + b->len != c.size) continue;
        uint32_t rank;
        int32_t res;
        if (!merge_find(&t->merges, a->id, b->id, &rank, &res)) continue;
        a->id = res;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) w->syms[b->next].prev = l;
        if (bpe_try_pair(t, w, a->prev, l) || bpe_try_pair(t, w, l, a->next)) return -1;
    }
    for (int32_t i = 0; n && i >= 0; i = w->syms[i].next)
        if (w->syms[i].id >= 0 && ivec_push(out, w->syms[i].id)) return -1;
    return 0;
}

static int spm_encode(const tokenizer *t, work *w, const char *text, size_t n, ivec *out);

static int word_uncached(const tokenizer *t, work *w, const char *s, size_t n, ivec *out) {
    return t->kind == TOK_SPM ? spm_encode(t, w, s, n, out) : bpe_word(t, w, s, n, out);
}

/* One word (BPE pre-token or SPM word) through the per-call cache. */
static int word_cached(const tokenizer *t, work *w, const char *s, size_t n, ivec *out) {
    if (n > 256) return word_uncached(t, w, s, n, out); /* long words rarely repeat */
    if ((w->wc_n + 1) * 2 > (w->wc ? w->wc_mask + 1 : 0)) {
        /* grow (or start over past 1M words, keeping memory bounded) */
        size_t cap = w->wc ? (w->wc_mask + 1) * 2 : 4096;
        if (cap > (1u << 21)) {
            cap = 4096;
            w->wc_n = 0; w->wbytes_len = 0; w->wids.n = 0;
            free(w->wc); w->wc = NULL;
        }
        struct wslot *nw = calloc(cap, sizeof *nw);
        if (!nw) return -1;
        for (size_t i = 0; w->wc && i <= w->wc_mask; i++) {
            if (!w->wc[i].wlen) continue;
            size_t j = w->wc[i].hash & (cap - 1);
            while (nw[j].wlen) j = (j + 1) & (cap - 1);
            nw[j] = w->wc[i];
        }
        free(w->wc);
        w->wc = nw;
        w->wc_mask = cap - 1;
    }
    uint64_t h = hash_bytes64(s, n);
    size_t j = h & w->wc_mask;
    for (; w->wc[j].wlen; j = (j + 1) & w->wc_mask) {
        struct wslot *ws = &w->wc[j];
        if (ws->hash == h && ws->wlen == n && memcmp(w->wbytes + ws->woff, s, n) == 0)
            return ivec_append(out, w->wids.v + ws->ioff, ws->ilen);
    }
    size_t before = out->n;
    if (word_uncached(t, w, s, n, out)) return -1;
    if (w->wbytes_len + n > w->wbytes_cap) {
        size_t cap = (w->wbytes_cap + n) * 2;
        char *b = realloc(w->wbytes, cap);
        if (!b) return -1;
        w->wbytes = b;
        w->wbytes_cap = cap;
    }
    if (w->wbytes_len + n > UINT32_MAX || w->wids.n + (out->n - before) > UINT32_MAX) return 0;
    struct wslot ws = {h, (uint32_t)w->wbytes_len, (uint32_t)n, (uint32_t)w->wids.n, (uint32_t)(out->n - before)};
    memcpy(w->wbytes + w->wbytes_len, s, n);
    w->wbytes_len += n;
    if (ivec_append(&w->wids, out->v + before, out->n - before)) return -1;
    w->wc[j] = ws;
    w->wc_n++;
    return 0;
}

static int bpe_fragment(const tokenizer *t, work *w, const char *s, size_t n, ivec *out, terr *e) {
    char *norm = NULL;
    size_t norm_len = 0;
    if (t->nfc) {
        if (uni_nfc(s, n, &norm, &norm_len)) return terr_set(e, TOME_ERESOURCE, "tokenize: out of memory");
        if (norm) { s = norm; n = norm_len; }
    }
    if (!w->md) {
        w->md = pcre2_match_data_create_from_pattern(t->re, NULL);
        w->mctx = pcre2_match_context_create(NULL);
        w->jit = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
        if (!w->md || !w->mctx || !w->jit) { free(norm); return terr_set(e, TOME_ERESOURCE, "tokenize: out of memory"); }
        pcre2_jit_stack_assign(w->mctx, NULL, w->jit);
    }
    int rc = 0;
    size_t off = 0;
    while (off < n) {
        int m = pcre2_match(t->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
        size_t ms, me;
        if (m < 0) {
            if (m != PCRE2_ERROR_NOMATCH) {
                PCRE2_UCHAR msg[200];
                pcre2_get_error_message(m, msg, sizeof msg);
                rc = terr_set(e, TOME_ERESOURCE, "tokenize: pre-tokenizer failed at byte %zu: %s", off, (const char *)msg);
                break;
            }
            ms = me = n;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
            ms = ov[0];
            me = ov[1];
            if (me <= ms) { /* an empty match: step over one character as an unmatched gap */
                ms = me = ms + uni_len_utf8((unsigned char)s[ms]);
                if (me > n) ms = me = n;
            }
        }
        if (ms > off && word_cached(t, w, s + off, ms - off, out)) goto oom;
        if (me > ms && word_cached(t, w, s + ms, me - ms, out)) goto oom;
        off = me;
    }
    free(norm);
    return rc;
oom:
    free(norm);
    return terr_set(e, TOME_ERESOURCE, "tokenize: out of memory");
}

/* ---- special-token partition ---------------------------------------------------------- */

typedef struct frag { size_t off, len; int32_t tok; } frag; /* tok -1: text [off, off+len) */
typedef struct fvec { frag *v; size_t n, cap; } fvec;

static int fvec_push(fvec *a, frag f) {
    if (a->n == a->cap) {
        frag *v = grow_double(a->v, &a->cap, sizeof *v, 16);
        if (!v) return -1;
        a->v = v;
    }
    a->v[a->n++] = f;
    return 0;
}

/* Splits the text fragments around every occurrence of each special token, longest token
 * first, exactly as llama.cpp's partition does. */
static int partition(const tokenizer *t, const char *text, int parse_special, fvec *fr) {
    fvec tmp = {0};
    for (size_t k = 0; k < t->n_specials; k++) {
        int32_t id = t->specials[k];
        int a = t->attr[id];
        if (!parse_special && (a & (TA_CONTROL | TA_UNKNOWN))) continue;
        const char *p = ttext(t, id);
        size_t pl = t->text_len[id];
        int found = 0;
        for (size_t i = 0; i < fr->n && !found; i++)
            if (fr->v[i].tok < 0 && memmem(text + fr->v[i].off, fr->v[i].len, p, pl)) found = 1;
        if (!found) continue;
        tmp.n = 0;
        for (size_t i = 0; i < fr->n; i++) {
            frag f = fr->v[i];
            if (f.tok >= 0) { if (fvec_push(&tmp, f)) goto oom; continue; }
            size_t off = f.off, end = f.off + f.len;
            while (off < end) {
                const char *hit = memmem(text + off, end - off, p, pl);
                if (!hit) { if (fvec_push(&tmp, (frag){off, end - off, -1})) goto oom; break; }
                size_t ms = (size_t)(hit - text), le = ms;
                if (a & TA_LSTRIP)
                    while (le > off && isspace((unsigned char)text[le - 1])) le--;
                if (le > off && fvec_push(&tmp, (frag){off, le - off, -1})) goto oom;
                if (fvec_push(&tmp, (frag){ms, pl, id})) goto oom;
                off = ms + pl;
                if (a & TA_RSTRIP)
                    while (off < end && isspace((unsigned char)text[off])) off++;
            }
        }
        fvec sw = *fr; *fr = tmp; tmp = sw;
    }
    free(tmp.v);
    return 0;
oom:
    free(tmp.v);
    return -1;
}

/* ---- encode -------------------------------------------------------------------------- */

int tok_encode(const tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
               size_t *n_ids, terr *e) {
    *ids = NULL;
    *n_ids = 0;
    int64_t bad = tutf8_invalid_offset(text, len);
    if (bad >= 0) return terr_set(e, TOME_EINPUT, "invalid UTF-8 at byte offset %lld", (long long)bad);
    if (len > 0x7FFFFFFF) return terr_set(e, TOME_EINPUT, "text of %zu bytes is too long to tokenize (2 GiB at most)", len);
    ivec out = {0};
    fvec fr = {0};
    work w = {0};
    int rc = 0;
    if ((flags & TOK_ADD_BOS) && t->bos >= 0 && ivec_push(&out, t->bos)) goto oom;
    if (len > 0 && fvec_push(&fr, (frag){0, len, -1})) goto oom;
    if (partition(t, text, (flags & TOK_PARSE_SPECIAL) != 0, &fr)) goto oom;
    int prev_special = 1;
    for (size_t i = 0; i < fr.n; i++) {
        frag f = fr.v[i];
        if (f.tok >= 0) {
            if (ivec_push(&out, f.tok)) goto oom;
            prev_special = 1;
            continue;
        }
        if (t->kind == TOK_SPM) {
            if (spm_fragment(t, &w, text + f.off, f.len, t->add_space_prefix && prev_special, &out)) goto oom;
        } else if ((rc = bpe_fragment(t, &w, text + f.off, f.len, &out, e))) {
            goto done;
        }
        prev_special = 0;
    }
    *ids = out.v ? out.v : malloc(sizeof(int32_t));
    if (!*ids) goto oom;
    *n_ids = out.n;
    out.v = NULL;
    goto done;
oom:
    rc = terr_set(e, TOME_ERESOURCE, "tokenize: out of memory");
done:
    free(out.v);
    free(fr.v);
    work_free(&w);
    return rc;
}

/* ---- decode -------------------------------------------------------------------------- */

static int hidden(const tokenizer *t, int32_t id) {
    return (t->attr[id] & (TA_CONTROL | TA_UNKNOWN)) != 0;
}

size_t tok_decode_token(const tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    size_t n = t->dec_len[id];
    memcpy(buf, t->dec_pool + t->dec_off[id], n < cap ? n : cap);
    return n;
}

char *tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_vocab) total += t->dec_len[ids[i]];
    char *s = malloc(total + 1);
    if (!s) return NULL;
    size_t w = 0;
    int strip = t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        if (hidden(t, id) && skip_special) continue;
        const char *p = t->dec_pool + t->dec_off[id];
        size_t pl = t->dec_len[id];
        if (strip && pl && !hidden(t, id)) {
            if (p[0] == ' ') { p++; pl--; }
            strip = 0;
        }
        memcpy(s + w, p, pl);
        w += pl;
    }
    s[w] = 0;
    *len = w;
    return s;
}

void tok_stream_init(tok_stream *s, const tokenizer *t) {
    memset(s, 0, sizeof *s);
    s->t = t;
}

/* Appends b to out if room remains; returns the new length. */
static size_t put(char *out, size_t cap, size_t w, const char *b, size_t n) {
    for (size_t i = 0; i < n && w < cap; i++) out[w++] = b[i];
    return w;
}

static const char k_replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Feeds bytes through the UTF-8 assembler: complete valid sequences go out, broken ones
 * become U+FFFD, an incomplete tail stays in s->pend. */
static size_t stream_bytes(tok_stream *s, const char *p, size_t n, char *out, size_t cap, size_t w) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (s->n_pend == 0) {
            if (c < 0x80) { w = put(out, cap, w, (const char *)&c, 1); continue; }
            if (c >= 0xC2 && c <= 0xF4) { s->pend[s->n_pend++] = c; continue; }
            w = put(out, cap, w, k_replacement, 3);
            continue;
        }
        if ((c & 0xC0) != 0x80) { /* sequence cut short: replace it, reprocess c */
            w = put(out, cap, w, k_replacement, 3);
            s->n_pend = 0;
            i--;
            continue;
        }
        s->pend[s->n_pend++] = c;
        unsigned char l = s->pend[0];
        int need = l < 0xE0 ? 2 : l < 0xF0 ? 3 : 4;
        if (s->n_pend < need) continue;
        if (tutf8_invalid_offset((const char *)s->pend, (size_t)need) >= 0)
            w = put(out, cap, w, k_replacement, 3);
        else
            w = put(out, cap, w, (const char *)s->pend, (size_t)need);
        s->n_pend = 0;
    }
    return w;
}

size_t tok_stream_push(tok_stream *s, int32_t id, char *out, size_t cap) {
    const tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab || hidden(t, id)) return 0;
    const char *p = t->dec_pool + t->dec_off[id];
    size_t n = t->dec_len[id];
    if (!n) return 0;
    if (!s->started) {
        s->started = 1;
        if (t->add_space_prefix && p[0] == ' ') { p++; n--; }
    }
    return stream_bytes(s, p, n, out, cap, 0);
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap) {
    size_t w = 0;
    if (s->n_pend) w = put(out, cap, w, k_replacement, 3);
    s->n_pend = 0;
    return w;
}

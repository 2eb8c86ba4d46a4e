/* chat.c — prompt templates for a handful of instruction-tuned model families.
 *
 * Each family's layout is transcribed by hand from its official Jinja template for the one
 * conversation tome needs: an optional system message, one user message, and the generation
 * prompt. Whitespace matters (a stray "\n" changes the tokens the model was trained on), so each
 * renderer below names the template it follows; tests/test_chat.c holds the exact strings.
 *
 * Segments: the renderers emit pieces tagged special or plain; the builder merges neighbours of
 * the same kind. Only special-token markers are tagged special. Template literal text ("user\n")
 * is plain like the user's text, so plain segments are exactly the stretches between two
 * markers — the same chunks an HF tokenizer BPE-encodes after splitting out added tokens.
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

/* ---- segment builder ----------------------------------------------------------------------- */

typedef struct seg_builder {
    chat_segment *segs;
    size_t n, cap;
    int oom;
} seg_builder;

/* Appends text[0..len) as special or plain, merging with the previous segment when it has the
 * same kind. Remembers an allocation failure in b->oom (checked once at the end). */
static void put(seg_builder *b, const char *text, size_t len, int special) {
    if (b->oom || len == 0) return;
    if (b->n > 0 && b->segs[b->n - 1].special == special) {
        chat_segment *s = &b->segs[b->n - 1];
        char *t = realloc(s->text, s->len + len + 1);
        if (!t) { b->oom = 1; return; }
        memcpy(t + s->len, text, len);
        s->len += len;
        t[s->len] = '\0';
        s->text = t;
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        chat_segment *ns = realloc(b->segs, cap * sizeof *ns);
        if (!ns) { b->oom = 1; return; }
        b->segs = ns;
        b->cap = cap;
    }
    char *t = malloc(len + 1);
    if (!t) { b->oom = 1; return; }
    memcpy(t, text, len);
    t[len] = '\0';
    b->segs[b->n++] = (chat_segment){t, len, special};
}

static void special(seg_builder *b, const char *marker) { put(b, marker, strlen(marker), 1); }
static void plain(seg_builder *b, const char *text) { put(b, text, strlen(text), 0); }
static void plain_n(seg_builder *b, const char *text, size_t len) { put(b, text, len, 0); }

/* ---- Jinja's `trim` --------------------------------------------------------------------------- */

/* Byte length of the whitespace character starting at s[0..len), or 0 if there is none there.
 * The set is Python's str.isspace() (Jinja's trim is str.strip()): ASCII \t\n\v\f\r, space,
 * \x1c-\x1f, and U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
static size_t ws_len_at(const unsigned char *s, size_t len) {
    if (len == 0) return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && len >= 2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (len >= 3) {
        unsigned cp = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        if ((c & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
             cp == 0x202f || cp == 0x205f || cp == 0x3000))
            return 3;
    }
    return 0;
}

/* Narrows [*p, *p + *len) to drop leading and trailing whitespace as Jinja's trim does. */
static void trim(const char **p, size_t *len) {
    const unsigned char *s = (const unsigned char *)*p;
    size_t n = *len, k;
    while ((k = ws_len_at(s, n)) > 0) { s += k; n -= k; }
    /* From the end: a whitespace character is 1, 2 or 3 bytes long; try each ending at n. */
    for (;;) {
        if (n >= 1 && ws_len_at(s + n - 1, 1) == 1) { n -= 1; continue; }
        if (n >= 2 && ws_len_at(s + n - 2, 2) == 2) { n -= 2; continue; }
        if (n >= 3 && ws_len_at(s + n - 3, 3) == 3) { n -= 3; continue; }
        break;
    }
    *p = (const char *)s;
    *len = n;
}

/* ---- detection and names -------------------------------------------------------------------- */

chat_kind chat_detect(const char *src) {
    if (!src || !*src) return CHAT_NONE;
    /* Most specific markers first: a chatml template may mention other families' tokens in
     * comments far less often than it uses its own. */
    if (strstr(src, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (strstr(src, "<|im_start|>")) return strstr(src, "<think>") ? CHAT_QWEN3 : CHAT_CHATML;
    if (strstr(src, "<start_of_turn>")) return CHAT_GEMMA;
    if (strstr(src, "<|user|>") && strstr(src, "<|end|>")) return CHAT_PHI3;
    if (strstr(src, "[INST]")) return CHAT_MISTRAL;
    return CHAT_NONE;
}

static const char *const kind_names[] = {"none", "llama3", "chatml", "qwen3", "mistral", "phi3",
                                         "gemma"};

chat_kind chat_from_name(const char *name) {
    if (!name) return CHAT_INVALID;
    for (size_t i = 0; i < TOME_ARRAY_LEN(kind_names); i++)
        if (strcmp(name, kind_names[i]) == 0) return (chat_kind)i;
    return CHAT_INVALID;
}

const char *chat_name(chat_kind k) {
    return (k >= 0 && (size_t)k < TOME_ARRAY_LEN(kind_names)) ? kind_names[k] : "?";
}

const char *chat_eot(chat_kind k) {
    switch (k) {
    case CHAT_LLAMA3: return "<|eot_id|>";
    case CHAT_CHATML:
    case CHAT_QWEN3: return "<|im_end|>";
    case CHAT_MISTRAL: return "</s>";
    case CHAT_PHI3: return "<|end|>";
    case CHAT_GEMMA: return "<end_of_turn>";
    default: return NULL;
    }
}

/* ---- the renderers --------------------------------------------------------------------------- */

/* BOS text when the template starts with bos_token (NULL when it does not or none is known). */
static const char *bos_for(chat_kind k, const chat_opts *o) {
    if (!o->add_bos) return NULL;
    if (o->bos_text) {
        if (k == CHAT_CHATML || k == CHAT_QWEN3 || k == CHAT_PHI3) return NULL;
        return o->bos_text;
    }
    switch (k) {
    case CHAT_LLAMA3: return "<|begin_of_text|>";
    case CHAT_MISTRAL: return "<s>";
    case CHAT_GEMMA: return "<bos>";
    default: return NULL;
    }
}

/* Llama 3.0 (meta-llama/Meta-Llama-3-8B-Instruct; shared/tokenizers/llama3_1):
 *   bos_token, then per message '<|start_header_id|>' + role + '<|end_header_id|>\n\n' +
 *   content|trim + '<|eot_id|>', then '<|start_header_id|>assistant<|end_header_id|>\n\n'. */
static void render_llama3(seg_builder *b, const chat_opts *o, const char *user, size_t ulen) {
    if (o->system) {
        const char *s = o->system;
        size_t slen = strlen(s);
        trim(&s, &slen);
        special(b, "<|start_header_id|>");
        plain(b, "system");
        special(b, "<|end_header_id|>");
        plain(b, "\n\n");
        plain_n(b, s, slen);
        special(b, "<|eot_id|>");
    }
    trim(&user, &ulen);
    special(b, "<|start_header_id|>");
    plain(b, "user");
    special(b, "<|end_header_id|>");
    plain(b, "\n\n");
    plain_n(b, user, ulen);
    special(b, "<|eot_id|>");
    special(b, "<|start_header_id|>");
    plain(b, "assistant");
    special(b, "<|end_header_id|>");
    plain(b, "\n\n");
}

/* ChatML as Qwen2.5 / Qwen3 render it (shared/tokenizers/qwen3), no default system text:
 *   '<|im_start|>system\n' + system + '<|im_end|>\n' '<|im_start|>user\n' + user +
 *   '<|im_end|>\n' '<|im_start|>assistant\n'; Qwen3 with enable_thinking=false then adds
 *   '<think>\n\n</think>\n\n'. No trimming. */
static void render_chatml(seg_builder *b, const chat_opts *o, const char *user, size_t ulen,
                          int qwen3) {
    if (o->system) {
        special(b, "<|im_start|>");
        plain(b, "system\n");
        plain(b, o->system);
        special(b, "<|im_end|>");
        plain(b, "\n");
    }
    special(b, "<|im_start|>");
    plain(b, "user\n");
    plain_n(b, user, ulen);
    special(b, "<|im_end|>");
    plain(b, "\n");
    special(b, "<|im_start|>");
    plain(b, "assistant\n");
    if (qwen3 && !o->think) {
        special(b, "<think>");
        plain(b, "\n\n");
        special(b, "</think>");
        plain(b, "\n\n");
    }
}

/* Mistral-7B-Instruct-v0.3's template: bos_token, then for the last user message with a system
 * message '[INST] ' + system + '\n\n' + content + '[/INST]', else '[INST] ' + content +
 * '[/INST]'. No generation-prompt suffix, no trimming. */
static void render_mistral(seg_builder *b, const chat_opts *o, const char *user, size_t ulen) {
    special(b, "[INST]");
    plain(b, " ");
    if (o->system) {
        plain(b, o->system);
        plain(b, "\n\n");
    }
    plain_n(b, user, ulen);
    special(b, "[/INST]");
}

/* Phi-3.5 mini instruct's template (Phi-3-mini's current one is the same but keeps an empty
 * system message; no bos_token, no trimming):
 *   '<|system|>\n' + system + '<|end|>\n' '<|user|>\n' + user + '<|end|>\n' '<|assistant|>\n'.
 * An empty system message is skipped, as Phi-3.5's `message['content']` test does. */
static void render_phi3(seg_builder *b, const chat_opts *o, const char *user, size_t ulen) {
    if (o->system && o->system[0]) {
        special(b, "<|system|>");
        plain(b, "\n");
        plain(b, o->system);
        special(b, "<|end|>");
        plain(b, "\n");
    }
    special(b, "<|user|>");
    plain(b, "\n");
    plain_n(b, user, ulen);
    special(b, "<|end|>");
    plain(b, "\n");
    special(b, "<|assistant|>");
    plain(b, "\n");
}

/* Gemma 3 instruct's template (Gemma 1/2 are the same without a system message): bos_token,
 *   '<start_of_turn>user\n' + (system + '\n\n' if any) + content|trim + '<end_of_turn>\n'
 *   '<start_of_turn>model\n'. The system text itself is not trimmed. */
static void render_gemma(seg_builder *b, const chat_opts *o, const char *user, size_t ulen) {
    trim(&user, &ulen);
    special(b, "<start_of_turn>");
    plain(b, "user\n");
    if (o->system) {
        plain(b, o->system);
        plain(b, "\n\n");
    }
    plain_n(b, user, ulen);
    special(b, "<end_of_turn>");
    plain(b, "\n");
    special(b, "<start_of_turn>");
    plain(b, "model\n");
}

/* No template: [BOS] then the system text and a blank line when there is one, then the user
 * content (DEVELOPERS.md's plain layout). */
static void render_none(seg_builder *b, const chat_opts *o, const char *user, size_t ulen) {
    if (o->system) {
        plain(b, o->system);
        plain(b, "\n\n");
    }
    plain_n(b, user, ulen);
}

int chat_render(chat_kind k, const chat_opts *o, chat_segment **segs, size_t *n, terr *e) {
    *segs = NULL;
    *n = 0;
    if (k < CHAT_NONE || k > CHAT_GEMMA)
        return terr_set(e, TOME_EFLAGS, "chat template: invalid kind %d", (int)k);
    seg_builder b = {0};
    const char *user = o->user ? o->user : "";
    size_t ulen = o->user ? o->user_len : 0;
    const char *bos = bos_for(k, o);
    if (bos) special(&b, bos);
    switch (k) {
    case CHAT_LLAMA3: render_llama3(&b, o, user, ulen); break;
    case CHAT_CHATML: render_chatml(&b, o, user, ulen, 0); break;
    case CHAT_QWEN3: render_chatml(&b, o, user, ulen, 1); break;
    case CHAT_MISTRAL: render_mistral(&b, o, user, ulen); break;
    case CHAT_PHI3: render_phi3(&b, o, user, ulen); break;
    case CHAT_GEMMA: render_gemma(&b, o, user, ulen); break;
    default: render_none(&b, o, user, ulen); break;
    }
    if (b.oom) {
        chat_segments_free(b.segs, b.n);
        return terr_set(e, TOME_ERESOURCE, "chat template %s: out of memory", chat_name(k));
    }
    *segs = b.segs;
    *n = b.n;
    return 0;
}

void chat_segments_free(chat_segment *segs, size_t n) {
    if (!segs) return;
    for (size_t i = 0; i < n; i++) free(segs[i].text);
    free(segs);
}

char *chat_render_string(chat_kind k, const chat_opts *o, size_t *len, terr *e) {
    chat_segment *segs;
    size_t n;
    if (chat_render(k, o, &segs, &n, e) != 0) return NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += segs[i].len;
    char *out = malloc(total + 1);
    if (!out) {
        chat_segments_free(segs, n);
        terr_set(e, TOME_ERESOURCE, "chat template %s: out of memory", chat_name(k));
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + at, segs[i].text, segs[i].len);
        at += segs[i].len;
    }
    out[at] = '\0';
    if (len) *len = at;
    chat_segments_free(segs, n);
    return out;
}

/* ---- documents + question --------------------------------------------------------------------- */

char *chat_join_user(const char *const *docs, const size_t *doc_lens, size_t n_docs,
                     const char *question, size_t *len) {
    static const char sep[] = "\n\n";
    size_t qlen = question ? strlen(question) : 0, total = 0;
    for (size_t i = 0; i < n_docs; i++) {
        size_t dl = doc_lens ? doc_lens[i] : strlen(docs[i]);
        if (total + dl + 2 < total) return NULL; /* size_t overflow */
        total += dl + (i > 0 ? 2 : 0);
    }
    if (question) total += qlen + (n_docs > 0 ? 2 : 0);
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n_docs; i++) {
        size_t dl = doc_lens ? doc_lens[i] : strlen(docs[i]);
        if (i > 0) { memcpy(out + at, sep, 2); at += 2; }
        memcpy(out + at, docs[i], dl);
        at += dl;
    }
    if (question) {
        if (n_docs > 0) { memcpy(out + at, sep, 2); at += 2; }
        memcpy(out + at, question, qlen);
        at += qlen;
    }
    out[at] = '\0';
    if (len) *len = at;
    return out;
}

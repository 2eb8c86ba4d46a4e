/* chat.h — prompt templates: how documents, a question and an optional system text become the
 * token-ready prompt of an instruction-tuned model.
 *
 * tome does not run Jinja. The GGUF's `tokenizer.chat_template` source is only inspected for
 * the markers of a few well-known families (chat_detect); each family's layout is then written
 * out by hand here, matching what its official Jinja template renders for one optional system
 * message + one user message + the generation prompt. Multi-turn chats, tools and images are
 * out of scope.
 *
 * The output is a list of SEGMENTS rather than one string, so that text from the user can never
 * become a control token: special=1 segments hold nothing but special-token markers and are
 * tokenized with special tokens parsed; special=0 segments hold everything else (the template's
 * own literal text such as "user\n", and the system / user text) and are tokenized as plain
 * text. Splitting exactly at the markers is also what HF tokenizers do before BPE, so the ids
 * equal the reference tokenization of the rendered string — except where the user's text spells
 * a marker, which HF would turn into a control token and tome keeps as text (on purpose).
 */
#ifndef TOME_CHAT_H
#define TOME_CHAT_H

#include <stddef.h>

#include "util.h"

typedef enum chat_kind {
    CHAT_INVALID = -1, /* only returned by chat_from_name for an unknown name */
    CHAT_NONE = 0,     /* no template: [BOS] text */
    CHAT_LLAMA3,       /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_CHATML,       /* <|im_start|>role\n...<|im_end|>\n (Qwen2/2.5 and many others) */
    CHAT_QWEN3,        /* chatml + Qwen3's <think> block */
    CHAT_MISTRAL,      /* [INST] ...[/INST] (Mistral-7B-Instruct-v0.3 layout) */
    CHAT_PHI3,         /* <|user|>\n...<|end|>\n */
    CHAT_GEMMA,        /* <start_of_turn>user\n...<end_of_turn>\n */
} chat_kind;

/* One piece of a rendered prompt. text is heap-owned (NUL-terminated too, for convenience),
 * len its length in bytes. special=1: only special-token markers, tokenize with specials
 * parsed. special=0: plain text, tokenize with specials NOT parsed. */
typedef struct chat_segment {
    char *text;
    size_t len;
    int special;
} chat_segment;

typedef struct chat_opts {
    const char *system;    /* NUL-terminated system text, or NULL for no system turn */
    const char *user;      /* user content (chat_join_user's output); may be NULL when user_len 0 */
    size_t user_len;       /* bytes of user (may contain any bytes, NUL included) */
    int think;             /* Qwen3 only: 0 renders the empty <think>\n\n</think>\n\n block */
    int add_bos;           /* 1: start with the BOS marker where the family's template has one */
    const char *bos_text;  /* BOS marker text; NULL = the family's usual one ("<|begin_of_text|>",
                              "<s>", "<bos>"); CHAT_NONE has no usual one, so NULL means none */
} chat_opts;

/* Picks the template family from the Jinja source of tokenizer.chat_template by its markers.
 * NULL, empty or unrecognised source gives CHAT_NONE (the caller warns and uses the plain
 * layout). */
chat_kind chat_detect(const char *template_src);

/* The family for a --chat-template NAME: "llama3", "chatml", "qwen3", "mistral", "phi3",
 * "gemma", "none". Unknown names give CHAT_INVALID (the caller reports a flag error). */
chat_kind chat_from_name(const char *name);

/* The canonical name of a family (as accepted by chat_from_name); "?" for invalid values. */
const char *chat_name(chat_kind k);

/* Text of the token that ends the assistant's turn for a family ("<|eot_id|>", "<|im_end|>",
 * "<|end|>", "<end_of_turn>", "</s>"), or NULL for CHAT_NONE. The engine stops on it in
 * addition to the model's EOS. Static string, not to be freed. */
const char *chat_eot(chat_kind k);

/* Renders system + user + the opened assistant turn (generation prompt) as segments.
 * On success *segs (heap array of *n segments, free with chat_segments_free) and returns 0.
 * On failure returns TOME_EFLAGS (invalid kind) or TOME_ERESOURCE (out of memory), fills e,
 * and leaves *segs NULL, *n 0. Empty segments are never produced; adjacent segments of the
 * same kind are merged. */
int chat_render(chat_kind k, const chat_opts *o, chat_segment **segs, size_t *n, terr *e);

/* Frees the segments returned by chat_render (NULL is fine). */
void chat_segments_free(chat_segment *segs, size_t n);

/* The concatenation of chat_render's segments as one NUL-terminated heap string (for tests
 * and --verbose output); *len (may be NULL) gets its length. NULL on failure, e filled. */
char *chat_render_string(chat_kind k, const chat_opts *o, size_t *len, terr *e);

/* The user content from documents and a question (DEVELOPERS.md layout): the documents in
 * order joined by a blank line ("\n\n"), then "\n\n" and the question. No documents: just the
 * question. No question (NULL): just the documents. doc_lens may be NULL when every doc is
 * NUL-terminated. Returns a NUL-terminated heap string (length in *len, which may be NULL),
 * or NULL when out of memory. */
char *chat_join_user(const char *const *docs, const size_t *doc_lens, size_t n_docs,
                     const char *question, size_t *len);

#endif

/* tokenizer.h — text <-> token ids, matching llama.cpp / HF tokenizers id for id.
 *
 * Two families:
 *   - SentencePiece-style BPE with scores (GGUF tokenizer.ggml.model = "llama": Llama 2,
 *     Mistral, Phi-3): characters merged by best score, byte fallback <0xNN>, '▁' for spaces,
 *     an optional leading space (tokenizer.ggml.add_space_prefix).
 *   - Byte-level BPE with merge ranks (model = "gpt2": GPT-2, Llama 3, Qwen2/3): a PCRE2
 *     pre-tokenizer regex chosen by tokenizer.ggml.pre (or taken from tokenizer.json), the
 *     GPT-2 byte -> unicode mapping, merges by rank, optional NFC normalization (Qwen).
 * A tokenizer is immutable after loading; every function taking a const tokenizer* may be
 * called from several threads at once (the word cache is per call, not shared).
 *
 * Special (control) tokens are recognised inside the text only with TOK_PARSE_SPECIAL;
 * otherwise they are ordinary text (as llama.cpp; HF's encode always parses them).
 * User-defined added tokens are always matched, as llama.cpp and HF do.
 * Known deliberate differences from llama.cpp: GGUF vocabularies with pre = "qwen2" get HF's
 * NFC normalization (llama.cpp skips it); see tok_decode for the leading-space rule.
 */
#ifndef TOME_TOKENIZER_H
#define TOME_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

typedef struct tokenizer tokenizer;

/* Builds a tokenizer from the tokenizer.ggml.* metadata of an open GGUF (a vocab-only file
 * is fine). Everything needed is copied: g may be closed afterwards. On failure returns
 * TOME_EINPUT (malformed metadata) or TOME_EUNSUPPORTED (unknown tokenizer model / pre),
 * naming the file and key in e, and leaves *out NULL. */
int tok_load_gguf(tokenizer **out, const gguf *g, terr *e);

/* Builds a tokenizer from a Hugging Face directory: DIR/tokenizer.json (BPE model, vocab,
 * merges as "a b" strings or [a, b] pairs, added_tokens, Split pre-tokenizer regex, NFC
 * normalizer) and DIR/tokenizer_config.json (bos/eos, add_bos_token, chat_template; may be
 * absent, but one that exists must parse). Errors as tok_load_gguf. */
int tok_load_hf(tokenizer **out, const char *dir, terr *e);

/* Frees everything; NULL is fine. */
void tok_free(tokenizer *t);

enum {
    TOK_ADD_BOS = 1,       /* prepend BOS (when the vocabulary has one) */
    TOK_PARSE_SPECIAL = 2, /* recognise control tokens (<|eot_id|>, <s>, ...) in the text */
};

/* Encodes text[0..len) (must be valid UTF-8, else TOME_EINPUT naming the byte offset).
 * On success *ids is a heap array of *n_ids ids (caller frees; may be non-NULL with 0 ids).
 * On failure *ids is NULL and *n_ids 0. */
int tok_encode(const tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
               size_t *n_ids, terr *e);

/* Number of ids (the largest id + 1). */
int tok_n_vocab(const tokenizer *t);
/* BOS / EOS ids, or -1 when the vocabulary has none. */
int32_t tok_bos(const tokenizer *t);
int32_t tok_eos(const tokenizer *t);
/* Whether BOS is added by default (tokenizer.ggml.add_bos_token / add_bos_token). */
int tok_add_bos_default(const tokenizer *t);
/* Whether id ends a generation: eos, eot, eom, <|im_end|>, <|eot_id|>, <|end|>, ... */
int tok_is_eog(const tokenizer *t, int32_t id);
/* Whether id is a control / special token (not text). */
int tok_is_control(const tokenizer *t, int32_t id);
/* Exact token text (as stored in the vocabulary) -> id, or -1 if none. For chat templates. */
int32_t tok_find(const tokenizer *t, const char *piece);
/* The token's text as stored in the vocabulary ('▁' and 'Ġ' forms, <0x0A>), NUL-terminated,
 * owned by t; NULL for an out-of-range id. For --pieces and debugging. */
const char *tok_piece(const tokenizer *t, int32_t id);
/* The longest tok_decode_token output over all ids (for sizing buffers). */
size_t tok_max_token_len(const tokenizer *t);
/* The chat template string (GGUF tokenizer.chat_template or tokenizer_config.json's), owned
 * by t, or NULL when there is none. */
const char *tok_chat_template(const tokenizer *t);

/* The raw bytes id decodes to: byte tokens <0xNN> -> that byte, '▁' -> ' ', GPT-2 byte-level
 * characters -> their bytes, control tokens -> their text. Writes at most cap bytes (no NUL)
 * and returns the full length (so a return > cap means it was truncated); 0 for a bad id.
 * Does not strip the SPM leading space (see tok_stream / tok_decode). */
size_t tok_decode_token(const tokenizer *t, int32_t id, char *buf, size_t cap);

/* Decodes a whole id sequence into a heap NUL-terminated string (*len bytes, without the NUL).
 * With skip_special, control and unknown tokens (BOS, EOS, ...) produce nothing; without, they
 * produce their text. The leading-space rule (SPM with add_space_prefix only): one ' ' is
 * dropped from the start of the first token that is not a control/unknown token, so
 * tok_decode(tok_encode(x)) == x with or without BOS (for text without special tokens and,
 * in SPM vocabularies, without a literal U+2581, which SPM encodes as a space). Unlike
 * llama.cpp, which keeps that space when the sequence starts with BOS. Bytes are returned as
 * they are (no U+FFFD replacement). Returns NULL only when out of memory. */
char *tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len);

/* Streaming decoder: push ids one at a time; only complete UTF-8 sequences come out (a
 * token that ends mid-character is held until the rest arrives). Control tokens are
 * skipped. Applies the same leading-space rule as tok_decode. Concatenating every push and
 * the final flush gives tok_decode(ids, skip_special = 1) (invalid bytes as U+FFFD). */
typedef struct tok_stream {
    const tokenizer *t;
    unsigned char pend[4]; /* bytes of an incomplete UTF-8 sequence */
    int n_pend;
    int started;           /* a text token has been emitted (leading-space rule done) */
} tok_stream;

void tok_stream_init(tok_stream *s, const tokenizer *t);
/* Writes the newly complete text of id into out and returns the number of bytes written.
 * cap >= 3 * tok_max_token_len(t) + 16 always suffices (broken sequences grow into U+FFFD);
 * with less, output is truncated. */
size_t tok_stream_push(tok_stream *s, int32_t id, char *out, size_t cap);
/* Emits what is still held (an incomplete sequence becomes U+FFFD; cap >= 3 suffices) and
 * returns the bytes written. The stream can then be reused for a new sequence only after
 * tok_stream_init. */
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);

#endif

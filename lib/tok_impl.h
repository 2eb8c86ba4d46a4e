/* tok_impl.h — the tokenizer's internal representation, shared by the loaders
 * (tokenizer.c for GGUF, tok_hf.c for tokenizer.json) and the encoder. Not a public API.
 *
 * A loader fills the vocabulary with tok_build_vocab / tok_set_token, builds the lookup
 * table with tok_index, adds merges with tok_add_merge (byte-level BPE), sets the scalar
 * fields, and finally calls tok_finish, which derives everything else (byte tokens,
 * decoded pieces, the special-token list, end-of-generation ids, the regex).
 */
#ifndef TOME_TOK_IMPL_H
#define TOME_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

/* Token attributes (a bit set, as llama.cpp's llama_token_attr). */
enum {
    TA_NORMAL = 1 << 0,
    TA_UNKNOWN = 1 << 1,
    TA_CONTROL = 1 << 2,
    TA_USER = 1 << 3,   /* user-defined: always split out of the text */
    TA_UNUSED = 1 << 4,
    TA_BYTE = 1 << 5,   /* <0xNN> */
    TA_LSTRIP = 1 << 6, /* swallow whitespace to the left when split out */
    TA_RSTRIP = 1 << 7, /* ... to the right */
};

enum { TOK_SPM = 1, TOK_BPE = 2 };

typedef struct tok_merge_map {
    uint64_t *keys;  /* (left id << 32) | right id; UINT64_MAX = empty */
    uint32_t *rank;
    int32_t *result; /* id of the merged token */
    size_t mask;     /* capacity - 1 (a power of two) */
    size_t n;
} tok_merge_map;

struct tokenizer {
    int kind;       /* TOK_SPM or TOK_BPE */
    int n_vocab;
    /* token i's text: text_pool[text_off[i] .. + text_len[i]), NUL-terminated in the pool */
    char *text_pool;
    size_t text_pool_len, text_pool_cap;
    uint32_t *text_off, *text_len; /* [n_vocab] */
    float *score;                  /* [n_vocab] SPM merge scores */
    uint16_t *attr;                /* [n_vocab] TA_* */
    /* token i's decoded bytes: dec_pool[dec_off[i] .. + dec_len[i]) */
    char *dec_pool;
    uint32_t *dec_off, *dec_len;   /* [n_vocab] */
    size_t max_dec_len;
    /* text -> id: open addressing; slot = (hash32 << 32) | (id + 1), 0 = empty */
    uint64_t *index;
    size_t index_mask;
    tok_merge_map merges;
    uint32_t byte_cp[256];       /* GPT-2 byte -> code point */
    char byte_utf8[256][2];      /* ... as UTF-8 (1 or 2 bytes, byte_utf8_len) */
    uint8_t byte_utf8_len[256];
    int16_t cp_byte[324];        /* code point (< 324) -> byte, -1 if none */
    int spm_split;               /* SPM text may be cut before each word's U+2581 (see tokenizer.c) */
    int32_t byte_tok[256]; /* BPE: token of the byte's GPT-2 character; SPM: <0xNN>; -1 none */
    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_space_prefix, ignore_merges, nfc;
    int32_t *eog; size_t n_eog;           /* end-of-generation ids */
    int32_t *specials; size_t n_specials; /* control/user/unknown ids, longest text first */
    char *regex_src;                      /* BPE pre-tokenizer (PCRE2 syntax) */
    pcre2_code *re;
    char *chat_template;
    char *name;                           /* file or directory, for messages */
};

/* Allocates an empty tokenizer (all ids -1). NULL when out of memory. */
tokenizer *tok_alloc(int kind, const char *name);
/* Sizes the vocabulary to n ids, all empty texts with attribute TA_UNUSED. */
int tok_build_vocab(tokenizer *t, int n, terr *e);
/* Sets token id's text (copied), score and attributes. */
int tok_set_token(tokenizer *t, int id, const char *text, size_t len, float score, int attr,
                  terr *e);
/* Builds the text -> id table (a later id wins on duplicate texts, as in llama.cpp). */
int tok_index(tokenizer *t, terr *e);
/* Exact text lookup (any attribute); -1 if absent. Needs tok_index. */
int32_t tok_lookup(const tokenizer *t, const char *s, size_t n);
/* Adds merge (a, b) with the given rank. Silently ignores merges whose parts or result are
 * not tokens (they can never apply in vocabularies where every merge result is a token). */
int tok_add_merge(tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                  uint32_t rank, terr *e);
/* Derives byte tokens, decoded pieces, specials, EOG ids; compiles regex_src. */
int tok_finish(tokenizer *t, terr *e);

/* The GPT-2 byte <-> unicode mapping: code point for byte b; byte for code point (or -1). */
uint32_t tok_gpt2_byte_cp(int b);
int tok_gpt2_cp_byte(uint32_t cp);

/* Pre-tokenizer regexes (PCRE2 syntax), as in the reference tokenizers. */
extern const char *const TOK_RE_GPT2;
extern const char *const TOK_RE_LLAMA3;
extern const char *const TOK_RE_QWEN2;

#endif

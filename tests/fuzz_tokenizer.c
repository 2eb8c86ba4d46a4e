/* fuzz_tokenizer.c — libFuzzer target: any bytes given to the encoder are either rejected as
 * invalid UTF-8 (TOME_EINPUT) or encoded into in-range ids that decode back to the input
 * (byte-level BPE and SPM both, special tokens parsed or not), and the streaming decoder's
 * output concatenates to the whole decode and stays valid UTF-8.
 * Vocabularies: $TOME_DATA/vocab/ggml-vocab-{gpt-2,llama-spm}.gguf (default ../shared), loaded
 * once — the one place a static is acceptable, as libFuzzer calls the target per input.
 * Without them every input is a no-op. Seeds: tests/fuzz_tokenizer.seeds.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

typedef struct vocabs { tokenizer *t[2]; int loaded; } vocabs;

static void load(vocabs *v) {
    const char *data = getenv("TOME_DATA");
    if (!data) data = "../shared";
    const char *names[2] = {"gpt-2", "llama-spm"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", data, names[i]);
        gguf *g;
        terr e;
        if (gguf_open(&g, path, &e)) continue;
        tok_load_gguf(&v->t[i], g, &e);
        gguf_close(g);
    }
    v->loaded = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static vocabs v;
    if (!v.loaded) load(&v);
    const char *text = (const char *)data;
    int valid = tutf8_invalid_offset(text, size) < 0;
    for (int i = 0; i < 2; i++) {
        const tokenizer *t = v.t[i];
        if (!t) continue;
        for (int flags = 0; flags < 4; flags++) {
            int32_t *ids;
            size_t n;
            terr e;
            int rc = tok_encode(t, text, size, flags, &ids, &n, &e);
            if (!valid) {
                if (rc != TOME_EINPUT || ids) __builtin_trap();
                break;
            }
            if (rc) __builtin_trap();
            for (size_t k = 0; k < n; k++)
                if (ids[k] < 0 || ids[k] >= tok_n_vocab(t)) __builtin_trap();
            size_t dl;
            char *d = tok_decode(t, ids, n, 1, &dl);
            if (!d) __builtin_trap();
            /* Without special parsing the text round-trips exactly, except that SPM turns a
             * literal U+2581 into a space. */
            int exact = !(flags & TOK_PARSE_SPECIAL) && (i == 0 || !memmem(text, size, "\xE2\x96\x81", 3));
            if (exact && (dl != size || memcmp(d, text, size) != 0)) __builtin_trap();
            size_t cap = 3 * tok_max_token_len(t) + 16, sn = 0;
            char *piece = malloc(cap), *st = malloc(dl * 3 + 16);
            tok_stream s;
            tok_stream_init(&s, t);
            for (size_t k = 0; k < n; k++) {
                size_t m = tok_stream_push(&s, ids[k], piece, cap);
                if (m > cap) __builtin_trap();
                memcpy(st + sn, piece, m);
                sn += m;
            }
            sn += tok_stream_flush(&s, st + sn, 16);
            if (tutf8_invalid_offset(st, sn) >= 0) __builtin_trap();
            if (tutf8_invalid_offset(d, dl) < 0 && (sn != dl || memcmp(st, d, dl) != 0)) __builtin_trap();
            free(piece);
            free(st);
            free(d);
            free(ids);
        }
    }
    return 0;
}

/* test_tokenizer.c — tokenizer ids against reference outputs, decode round trips, streaming,
 * special tokens, invalid UTF-8, NFC, and inputs that would expose quadratic behaviour.
 *
 * Reference ids: $TOME_DATA/vocab/ggml-vocab-NAME.gguf.out (llama.cpp's test-tokenizer-0 expectations) and
 * $TOME_DATA/tokenizers/{llama3_1,qwen3}/cases.out (HF tokenizers); see the READMEs there.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "tok_impl.h" /* internals, for the SPM word-split check */
#include "tokenizer.h"
#include "unicode.h"

#define SEP "\n__ggml_vocab_test__\n"

typedef struct cases {
    char *inp, *out;    /* file contents (owned) */
    const char *text[256];
    size_t len[256];
    const char *expect[256]; /* one line of the .out file, NUL-terminated in place */
    int n;
} cases;

static void cases_free(cases *c) { free(c->inp); free(c->out); }

/* Splits .inp at the separator (which also ends the file) and .out into lines. */
static int cases_load(cases *c, const char *inp_path, const char *out_path) {
    memset(c, 0, sizeof *c);
    terr e = {0};
    size_t il, ol;
    c->inp = tread_file(inp_path, &il, &e);
    c->out = tread_file(out_path, &ol, &e);
    if (!c->inp || !c->out) return -1;
    size_t sl = strlen(SEP);
    char *p = c->inp, *end = c->inp + il;
    while (p < end && c->n < 256) {
        char *s = memmem(p, (size_t)(end - p), SEP, sl);
        if (!s) break;
        c->text[c->n] = p;
        c->len[c->n] = (size_t)(s - p);
        c->n++;
        p = s + sl;
    }
    int k = 0;
    for (char *q = c->out; q < c->out + ol && k < c->n;) {
        char *nl = memchr(q, '\n', (size_t)(c->out + ol - q));
        if (nl) *nl = 0;
        c->expect[k++] = q;
        if (!nl) break;
        q = nl + 1;
    }
    return k == c->n ? 0 : -2;
}

/* " 1 2 3" -> ids; returns the count. */
static size_t parse_ids(const char *s, int32_t *ids, size_t cap) {
    size_t n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n == cap) break;
        ids[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

/* Every case must give exactly the reference ids, decode back to its text (with special
 * parsing: showing control tokens), and stream-decode (one id at a time, then flush) to the
 * text decoded without control tokens. */
static void check_cases_n(tctx *T, const tokenizer *tk, const char *inp, const char *out,
                          int n_cases, int flags) {
    cases c;
    REQUIREF(cases_load(&c, inp, out) == 0, "cannot load %s / %s", inp, out);
    CHECKF(c.n == n_cases, "%d cases in %s", c.n, inp);
    int bad = 0;
    for (int i = 0; i < c.n; i++) {
        int32_t want[512];
        size_t nw = parse_ids(c.expect[i], want, 512);
        int32_t *ids;
        size_t n;
        terr e = {0};
        int rc = tok_encode(tk, c.text[i], c.len[i], flags, &ids, &n, &e);
        CHECKF(rc == 0, "case %d: %s", i, e.msg);
        if (rc) continue;
        int same = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
        if (!same && bad++ < 5) {
            char got[2048] = "";
            for (size_t k = 0; k < n && strlen(got) < 2000; k++) snprintf(got + strlen(got), 16, " %d", ids[k]);
            tt_fail(T, __FILE__, __LINE__, "case %d '%.*s': got%s want%s", i, (int)c.len[i], c.text[i], got, c.expect[i]);
        }
        size_t dl;
        char *d = tok_decode(tk, ids, n, !(flags & TOK_PARSE_SPECIAL), &dl);
        REQUIRE(d);
        /* a normalizing tokenizer (Qwen: NFC) gives back the normalized text */
        const char *want_text = c.text[i];
        size_t want_len = c.len[i];
        char *nfc = NULL;
        if (tk->nfc) {
            REQUIRE(uni_nfc(c.text[i], c.len[i], &nfc, &want_len) == 0);
            if (nfc) want_text = nfc;
            else want_len = c.len[i];
        }
        CHECKF(dl == want_len && memcmp(d, want_text, dl) == 0, "case %d: decode gives '%s'", i, d);
        free(nfc);
        if (flags & TOK_PARSE_SPECIAL) {
            free(d);
            d = tok_decode(tk, ids, n, 1, &dl);
            REQUIRE(d);
        }
        /* streaming: every prefix of the ids, pushed one by one */
        char *st = malloc(c.len[i] * 3 + 64);
        char piece[4096];
        size_t sn = 0;
        tok_stream s;
        tok_stream_init(&s, tk);
        for (size_t k = 0; k < n; k++) {
            size_t m = tok_stream_push(&s, ids[k], piece, sizeof piece);
            CHECK(m <= sizeof piece);
            memcpy(st + sn, piece, m);
            sn += m;
            /* what is out so far is a prefix of the text and is complete UTF-8 */
            CHECKF(sn <= dl && memcmp(st, d, sn) == 0, "case %d: stream prefix diverges at id %zu", i, k);
            CHECK(tutf8_invalid_offset(st, sn) < 0);
        }
        sn += tok_stream_flush(&s, st + sn, 64);
        CHECKF(sn == dl && memcmp(st, d, dl) == 0, "case %d: stream gives %zu bytes, decode %zu", i, sn, dl);
        free(st);
        free(d);
        free(ids);
    }
    CHECKF(bad == 0, "%d of %d cases differ", bad, c.n);
    cases_free(&c);
}

static void check_cases(tctx *T, const tokenizer *tk, const char *inp, const char *out) {
    check_cases_n(T, tk, inp, out, 46, 0);
}

static tokenizer *load_gguf_tok(tctx *T, const char *path) {
    gguf *g;
    terr e = {0};
    if (gguf_open(&g, path, &e)) { tt_fail(T, __FILE__, __LINE__, "%s", e.msg); return NULL; }
    tokenizer *tk = NULL;
    if (tok_load_gguf(&tk, g, &e)) tt_fail(T, __FILE__, __LINE__, "%s", e.msg);
    gguf_close(g);
    return tk;
}

static void vocab_test(tctx *T, const char *name) {
    char rel[256], inp[512], out[512];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    DATA_OR_SKIP(path, rel);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(out, sizeof out, "%s.out", path);
    tokenizer *tk = load_gguf_tok(T, path);
    if (tk) check_cases(T, tk, inp, out);
    tok_free(tk);
    free(path);
}

TEST(tok_vocab_llama_spm) { vocab_test(T, "llama-spm"); }
TEST(tok_vocab_phi3) { vocab_test(T, "phi-3"); }
TEST(tok_vocab_gpt2) { vocab_test(T, "gpt-2"); }

/* The shared cases against HF's ids, then 200 seeded random texts of awkward atoms against
 * HF tokenizers' ids (which parse special-token texts): tests/data/tok_random.* were written by
 * tools/gen_tok_reference.py (tokenizers 0.23.3). */
static void hf_test(tctx *T, const char *name) {
    char rel[256], out[512], rinp[512], rout[512];
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", name);
    DATA_OR_SKIP(json, rel);
    DATA_OR_SKIP(inp, "tokenizers/cases.inp");
    snprintf(out, sizeof out, "%s", json);
    strcpy(strrchr(out, '/'), "/cases.out");
    *strrchr(json, '/') = 0;
    const char *slash = strrchr(__FILE__, '/');
    int dl = slash ? (int)(slash - __FILE__ + 1) : 0;
    snprintf(rinp, sizeof rinp, "%.*sdata/tok_random.inp", dl, __FILE__);
    snprintf(rout, sizeof rout, "%.*sdata/tok_random.%s.out", dl, __FILE__, name);
    tokenizer *tk = NULL;
    terr e = {0};
    CHECKF(tok_load_hf(&tk, json, &e) == 0, "%s", e.msg);
    if (tk) {
        check_cases(T, tk, inp, out);
        check_cases_n(T, tk, rinp, rout, 200, TOK_PARSE_SPECIAL);
    }
    tok_free(tk);
    free(json);
    free(inp);
}

TEST(tok_hf_llama3) { hf_test(T, "llama3_1"); }
TEST(tok_hf_qwen3) { hf_test(T, "qwen3"); }

static tokenizer *load_hf_tok(tctx *T, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", name);
    char *p = tdata_path(rel);
    if (!p) return NULL;
    *strrchr(p, '/') = 0;
    tokenizer *tk = NULL;
    terr e = {0};
    if (tok_load_hf(&tk, p, &e)) tt_fail(T, __FILE__, __LINE__, "%s", e.msg);
    free(p);
    return tk;
}

static size_t enc(const tokenizer *tk, const char *s, int flags, int32_t *ids, size_t cap) {
    int32_t *v;
    size_t n;
    terr e = {0};
    if (tok_encode(tk, s, strlen(s), flags, &v, &n, &e)) return (size_t)-1;
    if (n > cap) n = cap;
    memcpy(ids, v, n * sizeof *v);
    free(v);
    return n;
}

/* Metadata facts from tokenizer.json / tokenizer_config.json; special tokens parsed only on
 * request; BOS. */
TEST(tok_hf_specials) {
    tokenizer *tk = load_hf_tok(T, "llama3_1");
    if (!tk) SKIP("tokenizers/llama3_1 not found under TOME_DATA");
    CHECK(tok_n_vocab(tk) == 128256);
    CHECK(tok_bos(tk) == 128000);
    CHECK(tok_eos(tk) == 128009); /* <|eot_id|> per tokenizer_config.json */
    CHECK(tok_add_bos_default(tk));
    CHECK(tok_find(tk, "<|eot_id|>") == 128009);
    CHECK(tok_is_eog(tk, 128009) && tok_is_eog(tk, 128001) && !tok_is_eog(tk, 128000));
    CHECK(tok_chat_template(tk) != NULL);
    int32_t ids[64];
    size_t n = enc(tk, "<|start_header_id|>user<|end_header_id|>", TOK_PARSE_SPECIAL, ids, 64);
    REQUIRE(n == 3);
    CHECK(ids[0] == 128006 && ids[2] == 128007);
    n = enc(tk, "<|start_header_id|>", 0, ids, 64);
    CHECK(n > 1); /* plain text: several ordinary tokens */
    for (size_t i = 0; i < n && n != (size_t)-1; i++) CHECK(ids[i] < 128000);
    n = enc(tk, "hi", TOK_ADD_BOS, ids, 64);
    CHECK(n == 2 && ids[0] == 128000);
    /* decoding: control tokens vanish with skip_special, show their text without */
    int32_t seq[3] = {128000, ids[1], 128009};
    size_t dl;
    char *d = tok_decode(tk, seq, 3, 1, &dl);
    CHECK(d && !strcmp(d, "hi"));
    free(d);
    d = tok_decode(tk, seq, 3, 0, &dl);
    CHECK(d && !strcmp(d, "<|begin_of_text|>hi<|eot_id|>"));
    free(d);
    tok_free(tk);

    tk = load_hf_tok(T, "qwen3");
    REQUIRE(tk);
    CHECK(!tok_add_bos_default(tk));
    CHECK(tok_eos(tk) == tok_find(tk, "<|im_end|>") && tok_eos(tk) >= 0);
    /* non-special added tokens (<think>) are always split out, as HF does */
    int32_t think = tok_find(tk, "<think>");
    REQUIRE(think >= 0);
    n = enc(tk, "a<think>b", 0, ids, 64);
    CHECK(n == 3 && ids[1] == think);
    /* NFC: a decomposed é encodes like the precomposed one */
    int32_t a[16], b[16];
    size_t na = enc(tk, "caf\xC3\xA9", 0, a, 16), nb = enc(tk, "cafe\xCC\x81", 0, b, 16);
    CHECK(na == nb && na != (size_t)-1 && memcmp(a, b, na * sizeof *a) == 0);
    tok_free(tk);
}

/* SPM: BOS, the leading-space rule in decoding, special tokens and Phi-3's RSTRIP. */
TEST(tok_spm_specials) {
    DATA_OR_SKIP(path, "vocab/ggml-vocab-phi-3.gguf");
    tokenizer *tk = load_gguf_tok(T, path);
    free(path);
    REQUIRE(tk);
    CHECK(tok_bos(tk) == 1 && tok_eos(tk) == 32000 && tok_add_bos_default(tk));
    CHECK(tok_is_eog(tk, 32007) && tok_is_eog(tk, 32000)); /* <|end|>, <|endoftext|> */
    int32_t ids[64], ids2[64];
    size_t n = enc(tk, "Hello", TOK_ADD_BOS, ids, 64);
    size_t n2 = enc(tk, "Hello", 0, ids2, 64);
    REQUIRE(n == n2 + 1 && n2 >= 1);
    CHECK(ids[0] == 1 && !memcmp(ids + 1, ids2, n2 * sizeof *ids));
    size_t dl;
    char *d = tok_decode(tk, ids, n, 1, &dl);
    CHECK(d && !strcmp(d, "Hello")); /* BOS skipped; the added space prefix dropped */
    free(d);
    /* <|user|> is split out only with TOK_PARSE_SPECIAL; Phi-3 specials swallow the
     * whitespace after them, and the text after a special token gets a space prefix again */
    n = enc(tk, "<|user|>\nHi", TOK_PARSE_SPECIAL, ids, 64);
    n2 = enc(tk, "Hi", 0, ids2, 64);
    REQUIRE(n == n2 + 1);
    CHECK(ids[0] == 32010 && !memcmp(ids + 1, ids2, n2 * sizeof *ids));
    n = enc(tk, "<|user|>", 0, ids, 64);
    CHECK(n > 1);
    tok_free(tk);
}

TEST(tok_invalid_utf8) {
    DATA_OR_SKIP(path, "vocab/ggml-vocab-gpt-2.gguf");
    tokenizer *tk = load_gguf_tok(T, path);
    free(path);
    REQUIRE(tk);
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    terr e = {0};
    CHECK(tok_encode(tk, "ab\xff", 3, 0, &ids, &n, &e) == TOME_EINPUT);
    CHECK(ids == NULL && n == 0);
    CHECKF(strstr(e.msg, "offset 2") != NULL, "%s", e.msg);
    CHECK(tok_encode(tk, "\xe2\x82", 2, 0, &ids, &n, &e) == TOME_EINPUT);
    CHECKF(strstr(e.msg, "offset 0") != NULL, "%s", e.msg);
    /* an empty text is fine: no ids */
    CHECK(tok_encode(tk, "", 0, 0, &ids, &n, &e) == 0 && n == 0);
    free(ids);
    tok_free(tk);
}

/* Streaming holds incomplete UTF-8 and replaces broken sequences. */
TEST(tok_stream_partial) {
    DATA_OR_SKIP(path, "vocab/ggml-vocab-llama-spm.gguf");
    tokenizer *tk = load_gguf_tok(T, path);
    free(path);
    REQUIRE(tk);
    int32_t f0 = tok_find(tk, "<0xF0>"), f9f = tok_find(tk, "<0x9F>"), x98 = tok_find(tk, "<0x98>"),
            x80 = tok_find(tk, "<0x80>"), a = tok_find(tk, "a");
    REQUIRE(f0 >= 0 && f9f >= 0 && x98 >= 0 && x80 >= 0 && a >= 0);
    tok_stream s;
    tok_stream_init(&s, tk);
    char out[64];
    CHECK(tok_stream_push(&s, f0, out, sizeof out) == 0);
    CHECK(tok_stream_push(&s, f9f, out, sizeof out) == 0);
    CHECK(tok_stream_push(&s, x98, out, sizeof out) == 0);
    size_t n = tok_stream_push(&s, x80, out, sizeof out);
    CHECK(n == 4 && !memcmp(out, "\xF0\x9F\x98\x80", 4)); /* U+1F600 */
    CHECK(tok_stream_push(&s, f0, out, sizeof out) == 0);
    n = tok_stream_push(&s, a, out, sizeof out); /* broken sequence, then "a" */
    CHECK(n == 4 && !memcmp(out, "\xEF\xBF\xBD" "a", 4));
    CHECK(tok_stream_push(&s, f0, out, sizeof out) == 0);
    n = tok_stream_flush(&s, out, sizeof out);
    CHECK(n == 3 && !memcmp(out, "\xEF\xBF\xBD", 3));
    tok_free(tk);
}

/* Inputs that are quadratic for naive merge loops: 1 MB of one character and 1 MB without
 * spaces. The bound is generous (this is not a performance assertion); the time is printed. */
static void long_input(tctx *T, const tokenizer *tk, const char *label) {
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    REQUIRE(s);
    const char *kinds[2] = {"one repeated character", "no spaces"};
    for (int k = 0; k < 2; k++) {
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < n; i++) {
            if (k == 0) s[i] = 'a';
            else {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                s[i] = "abcdefghijklmnopqrstuvwxyz0123456789.,;-"[x % 40];
            }
        }
        double t0 = tnow();
        int32_t *ids;
        size_t nid;
        terr e = {0};
        CHECKF(tok_encode(tk, s, n, 0, &ids, &nid, &e) == 0, "%s", e.msg);
        double dt = tnow() - t0;
        printf("    %s, 1 MiB of %s: %zu ids in %.3f s\n", label, kinds[k], nid, dt);
        CHECKF(dt < 60, "%s took %.1f s", kinds[k], dt);
        size_t dl;
        char *d = tok_decode(tk, ids, nid, 1, &dl);
        CHECK(d && dl == n && memcmp(d, s, n) == 0);
        free(d);
        free(ids);
    }
    free(s);
}

TEST(tok_long_inputs) {
    DATA_OR_SKIP(path, "vocab/ggml-vocab-llama-spm.gguf");
    tokenizer *tk = load_gguf_tok(T, path);
    free(path);
    REQUIRE(tk);
    long_input(T, tk, "llama-spm");
    tok_free(tk);
    tk = load_hf_tok(T, "llama3_1");
    if (tk) long_input(T, tk, "llama3");
    tok_free(tk);
}

/* NFC against the Unicode standard's own examples (UAX #15 and the UCD). */
TEST(tok_nfc) {
    struct { const char *in, *want; } c[] = {
        {"e\xCC\x81", "\xC3\xA9"},                          /* e + acute -> é */
        {"A\xCC\x8A", "\xC3\x85"},                          /* A + ring -> Å */
        {"\xE2\x84\xAB", "\xC3\x85"},                       /* ANGSTROM SIGN (singleton) -> Å */
        {"d\xCC\xA3\xCC\x87", "\xE1\xB8\x8D\xCC\x87"},      /* d + dot below + dot above */
        {"d\xCC\x87\xCC\xA3", "\xE1\xB8\x8D\xCC\x87"},      /* same after canonical reordering */
        {"\xE1\x84\x80\xE1\x85\xA1", "\xEA\xB0\x80"},       /* Hangul L + V -> GA */
        {"\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81"},       /* GA + T -> GAG */
        {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC"},       /* U+0958 is excluded from composition */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *o;
        size_t ol;
        REQUIRE(uni_nfc(c[i].in, strlen(c[i].in), &o, &ol) == 0);
        const char *got = o ? o : c[i].in;
        size_t gl = o ? ol : strlen(c[i].in);
        CHECKF(gl == strlen(c[i].want) && !memcmp(got, c[i].want, gl), "case %zu", i);
        free(o);
    }
    char *o;
    size_t ol;
    const char *plain = "plain ascii and caf\xC3\xA9";
    CHECK(uni_nfc(plain, strlen(plain), &o, &ol) == 0 && o == NULL);
}

/* Seeded random UTF-8 (mixed scripts, whitespace, digits, punctuation) round-trips through
 * every tokenizer. */
TEST(tok_random_roundtrip) {
    static const char *const atoms[] = {"a", "Z", " ", "  ", "\n", "\t", "7", "42", "'s", ".", "!!",
                                        "\xC3\xA9", "e\xCC\x81", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80",
                                        "\xD0\xBF", "\xE0\xA4\x95", "\xE2\x96\x81", "<0x41>", "<s>"};
    tokenizer *tks[4] = {0};
    char *p = tdata_path("vocab/ggml-vocab-llama-spm.gguf");
    if (p) { tks[0] = load_gguf_tok(T, p); free(p); }
    p = tdata_path("vocab/ggml-vocab-gpt-2.gguf");
    if (p) { tks[1] = load_gguf_tok(T, p); free(p); }
    tks[2] = load_hf_tok(T, "llama3_1");
    if (!tks[0] && !tks[1] && !tks[2]) SKIP("no vocabularies under TOME_DATA");
    trng r;
    trng_seed(&r, 1234);
    char s[1024];
    for (int it = 0; it < 200; it++) {
        size_t n = 0;
        int atoms_n = 1 + (int)(trng_u64(&r) % 40);
        for (int k = 0; k < atoms_n; k++) {
            const char *a = atoms[trng_u64(&r) % (sizeof atoms / sizeof atoms[0])];
            memcpy(s + n, a, strlen(a));
            n += strlen(a);
        }
        for (int k = 0; k < 3; k++) {
            /* SPM cannot round-trip a literal U+2581: it is the vocabulary's space */
            if (!tks[k] || (k == 0 && memmem(s, n, "\xE2\x96\x81", 3))) continue;
            int32_t *ids;
            size_t nid;
            terr e = {0};
            REQUIRE(tok_encode(tks[k], s, n, 0, &ids, &nid, &e) == 0);
            size_t dl;
            char *d = tok_decode(tks[k], ids, nid, 1, &dl);
            CHECKF(d && dl == n && !memcmp(d, s, n), "tokenizer %d, iteration %d: '%.*s'", k, it, (int)n, s);
            free(d);
            free(ids);
        }
    }
    for (int k = 0; k < 3; k++) tok_free(tks[k]);
}

/* SPM words are tokenized separately (and cached) when the vocabulary allows it; the result
 * must be exactly that of one merge pass over the whole text. */
TEST(tok_spm_split_equivalence) {
    DATA_OR_SKIP(path, "vocab/ggml-vocab-llama-spm.gguf");
    tokenizer *tk = load_gguf_tok(T, path);
    free(path);
    REQUIRE(tk);
    REQUIRE(tk->spm_split); /* Llama 2's vocabulary has no U+2581 after another character */
    static const char *const atoms[] = {"the", " ", "  ", "   ", "\n", "ing", "Hello", "7", "42",
                                        ".", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "'s",
                                        "x", "q", "\t", "Z"};
    trng r;
    trng_seed(&r, 99);
    size_t cap = 200000, n = 0;
    char *s = malloc(cap + 16);
    REQUIRE(s);
    while (n < cap) {
        const char *a = atoms[trng_u64(&r) % (sizeof atoms / sizeof atoms[0])];
        memcpy(s + n, a, strlen(a));
        n += strlen(a);
    }
    int32_t *a, *b;
    size_t na, nb;
    terr e = {0};
    REQUIRE(tok_encode(tk, s, n, 0, &a, &na, &e) == 0);
    tk->spm_split = 0;
    REQUIRE(tok_encode(tk, s, n, 0, &b, &nb, &e) == 0);
    CHECKF(na == nb && !memcmp(a, b, na * sizeof *a), "split: %zu ids, whole: %zu ids", na, nb);
    free(a);
    free(b);
    free(s);
    tok_free(tk);
}

/* Writes a GGUF holding only a vocabulary (model "llama" or "gpt2", no BOS/EOS ids) and loads it. */
static tokenizer *tiny_gguf_tok(tctx *T, const char *model, const char *const *toks, uint64_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-%s.gguf", ttmpdir(), model);
    gguf_writer *w = gguf_w_new();
    if (!w) return NULL;
    gguf_w_str(w, "tokenizer.ggml.model", model);
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, n);
    if (!strcmp(model, "gpt2")) gguf_w_arr_str(w, "tokenizer.ggml.merges", toks, NULL, 0);
    terr e = {0};
    int rc = gguf_w_save(w, path, &e);
    gguf_w_free(w);
    if (rc) { tt_fail(T, __FILE__, __LINE__, "%s", e.msg); return NULL; }
    return load_gguf_tok(T, path);
}

/* Regression: a vocabulary smaller than llama.cpp's default special ids (SPM BOS 1 / EOS 2,
 * gpt2 BOS = EOS = 11) and without explicit ids kept those defaults, so BOS/EOS pointed past
 * the vocabulary and tok_encode(TOK_ADD_BOS) emitted an id >= n_vocab. */
TEST(tok_gguf_default_ids_in_range) {
    static const char *const spm[] = {"<unk>", "<s>"};
    static const char *const bpe[] = {"a", "b", "c"};
    const char *const *vocabs[] = {spm, bpe};
    const char *models[] = {"llama", "gpt2"};
    const uint64_t sizes[] = {2, 3};
    for (int k = 0; k < 2; k++) {
        tokenizer *tk = tiny_gguf_tok(T, models[k], vocabs[k], sizes[k]);
        REQUIRE(tk);
        int nv = tok_n_vocab(tk);
        CHECKF(tok_bos(tk) < nv && tok_eos(tk) < nv, "%s: bos %d eos %d, n_vocab %d", models[k],
               tok_bos(tk), tok_eos(tk), nv);
        int32_t *ids = NULL;
        size_t n = 0;
        terr e = {0};
        REQUIREF(tok_encode(tk, "", 0, TOK_ADD_BOS, &ids, &n, &e) == 0, "%s", e.msg);
        for (size_t i = 0; i < n; i++) CHECKF(ids[i] >= 0 && ids[i] < nv, "%s: id %d", models[k], ids[i]);
        free(ids);
        tok_free(tk);
    }
}

/* Writes DIR/NAME = text under the test's scratch folder (DIR created); 0 on success. */
static int write_hf_file(const char *dir, const char *name, const char *text) {
    char path[600];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -1;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int bad = fputs(text, f) < 0;
    return fclose(f) != 0 || bad ? -1 : 0;
}

/* A minimal byte-level BPE tokenizer.json with the given "model.vocab" object. */
static int write_hf_vocab(const char *dir, const char *vocab_json) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []},\n"
             " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}\n",
             vocab_json);
    return write_hf_file(dir, "tokenizer.json", text);
}

/* Regression: a tokenizer_config.json that exists but is not valid JSON was silently ignored
 * (its BOS / chat template lost); it is invalid input like a broken tokenizer.json. */
TEST(tok_hf_bad_config_rejected) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf-badcfg", ttmpdir());
    REQUIRE(write_hf_vocab(dir, "{\"a\": 0, \"b\": 1}") == 0);
    tokenizer *tk = NULL;
    terr e = {0};
    REQUIREF(tok_load_hf(&tk, dir, &e) == 0, "without a config: %s", e.msg); /* the config is optional */
    tok_free(tk);
    tk = NULL;
    REQUIRE(write_hf_file(dir, "tokenizer_config.json", "{\"bos_token\": \"a\",\n  oops\n") == 0);
    int rc = tok_load_hf(&tk, dir, &e);
    CHECKF(rc == TOME_EINPUT && strstr(e.msg, "tokenizer_config.json") && strstr(e.msg, "line 2"),
           "rc %d: %s", rc, e.msg);
    tok_free(tk);
}

/* A tiny tokenizer.json whose ids are sparse must not make tome allocate a huge table. */
TEST(tok_hf_sparse_ids_rejected) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf-sparse", ttmpdir());
    REQUIRE(write_hf_vocab(dir, "{\"a\": 0, \"b\": 1000000000}") == 0);
    tokenizer *tk = NULL;
    terr e = {0};
    int rc = tok_load_hf(&tk, dir, &e);
    CHECKF(rc == TOME_EINPUT && strstr(e.msg, "sparse") && strstr(e.msg, "tokenizer.json"), "rc %d: %s", rc, e.msg);
    CHECK(tk == NULL);
    tok_free(tk);
}

/* test_tools.c — tools/mkgguf and tools/llama2c2gguf, run as built (build/NAME) and read back
 * with lib/gguf.
 *
 * The tools are separate programs, so these tests call them through system() from the repo
 * root (where the runner runs) and skip when they have not been built. Expectations come
 * from outside the tools: llama.cpp's tensor naming and quantisation-mix rules (and its own
 * Q4_K_M/Q4_0/Q6_K/Q8_0 files under $TOME_DATA), and the raw float32 arrays of the llama2.c
 * checkpoint, located by llama2.c run.c's layout.
 */
#include "test.h"

#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "gguf.h"
#include "quant.h"

/* ---- helpers --------------------------------------------------------------------------- */

#define SKIP_UNLESS_TOOL(t) \
    if (access("build/" t, X_OK) != 0) SKIP("build/" t " not built (run ./build.sh)")

/* Runs a shell command (printf-style) with stdout and stderr into files in ttmpdir(); returns
 * its exit status (-1 if it did not exit normally). The stderr text goes to err (may be NULL). */
static int run_cmd(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run_cmd(char *err, size_t cap, const char *fmt, ...) {
    char cmd[4096], full[5200], ep[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(ep, sizeof ep, "%s/stderr.txt", ttmpdir());
    snprintf(full, sizeof full, "%s >%s/stdout.txt 2>%s", cmd, ttmpdir(), ep);
    int st = system(full);
    if (err && cap) {
        err[0] = 0;
        FILE *f = fopen(ep, "rb");
        if (f) {
            size_t n = fread(err, 1, cap - 1, f);
            err[n] = 0;
            fclose(f);
        }
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* A tensor's values as floats (heap), or NULL. */
static float *tensor_floats(const gguf_tensor *t) {
    float *x = malloc(sizeof(float) * (size_t)t->nelem);
    if (x) tq_dequantize(t->type, t->data, x, t->nelem);
    return x;
}

/* Mean and standard deviation of a tensor's values; *bad counts NaN/inf. */
static void tensor_stats(const gguf_tensor *t, double *mean, double *sd, int64_t *bad) {
    float *x = tensor_floats(t);
    double s = 0, s2 = 0;
    *bad = 0;
    for (int64_t i = 0; x && i < t->nelem; i++) {
        if (!isfinite(x[i])) { (*bad)++; continue; }
        s += x[i], s2 += (double)x[i] * x[i];
    }
    *mean = s / (double)t->nelem;
    *sd = sqrt(fmax(0, s2 / (double)t->nelem - *mean * *mean));
    if (!x) *bad = -1;
    free(x);
}

static int str_is(gguf_str s, const char *lit) { return gguf_str_eq(s, lit); }

/* Checks that tensor `tn` exists with the given shape (ne1 0: a vector) and type. */
static void check_tensor(tctx *T, int line, const gguf *g, const char *tn, int64_t ne0, int64_t ne1, uint32_t ty) {
    const gguf_tensor *t = gguf_find_tensor(g, tn);
    if (!t) {
        tt_fail(T, __FILE__, line, "missing tensor %s", tn);
        return;
    }
    if (t->ne[0] != ne0 || t->ne[1] != (ne1 ? ne1 : 1) || t->n_dims != (ne1 ? 2u : 1u))
        tt_fail(T, __FILE__, line, "%s: shape [%lld, %lld] (%u dims), expected [%lld, %lld]", tn,
                (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)ne0, (long long)ne1);
    if (t->type != ty)
        tt_fail(T, __FILE__, line, "%s: type %s, expected %s", tn, ggml_type_get(t->type)->name,
                ggml_type_get(ty)->name);
}
#define CHECK_TENSOR(g, tn, ne0, ne1, ty) check_tensor(T, __LINE__, g, tn, ne0, ne1, ty)

/* ---- mkgguf: shapes, metadata, vocabulary per architecture ----------------------------- */

static void check_arch(tctx *T, const char *arch) {
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/%s.gguf", ttmpdir(), arch);
    int rc = run_cmd(err, sizeof err,
                     "build/mkgguf -o %s --arch %s --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 "
                     "--n-ff 96 --vocab 512 --type f16 --seed 7", out, arch);
    REQUIREF(rc == 0, "mkgguf --arch %s: exit %d: %s", arch, rc, err);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    char key[128];
    gguf_str s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && str_is(s, arch));
#define KI(k) (snprintf(key, sizeof key, "%s." k, arch), gguf_get_int(g, key, -1))
    CHECK(KI("embedding_length") == 64);
    CHECK(KI("block_count") == 2);
    CHECK(KI("feed_forward_length") == 96);
    CHECK(KI("attention.head_count") == 4);
    CHECK(KI("attention.head_count_kv") == 2);
    CHECK(KI("attention.key_length") == 16);
    CHECK(KI("attention.value_length") == 16);
    CHECK(KI("rope.dimension_count") == 16);
    CHECK(KI("context_length") == 4096);
    CHECK(KI("vocab_size") == 512);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    CHECK_NEAR(gguf_get_float(g, key, 0), 1e-5, 1e-12);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    CHECK(gguf_get_float(g, key, 0) > 0);
    CHECK(gguf_get_int(g, "general.file_type", -1) == 1); /* MOSTLY_F16 */
#undef KI

    /* vocabulary: SentencePiece layout */
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &s) && str_is(s, "llama"));
    const gguf_value *tok = gguf_get(g, "tokenizer.ggml.tokens");
    const gguf_value *typ = gguf_get(g, "tokenizer.ggml.token_type");
    const gguf_value *sc = gguf_get(g, "tokenizer.ggml.scores");
    REQUIRE(tok && tok->type == GGUF_TYPE_ARRAY && tok->n == 512 && typ && typ->n == 512 && sc && sc->n == 512);
    CHECK(str_is(tok->v.strs[0], "<unk>") && str_is(tok->v.strs[1], "<s>") && str_is(tok->v.strs[2], "</s>"));
    CHECK(str_is(tok->v.strs[3], "<0x00>") && str_is(tok->v.strs[258], "<0xFF>") && str_is(tok->v.strs[13], "<0x0A>"));
    CHECK(gguf_arr_int(typ, 0) == 2 && gguf_arr_int(typ, 1) == 3 && gguf_arr_int(typ, 2) == 3);
    for (int i = 3; i < 259; i++) CHECKF(gguf_arr_int(typ, (uint64_t)i) == 6, "token %d type", i);
    for (int i = 259; i < 512; i++) CHECKF(gguf_arr_int(typ, (uint64_t)i) == 1, "token %d type", i);
    CHECK(gguf_get_int(g, "tokenizer.ggml.bos_token_id", -1) == 1);
    CHECK(gguf_get_int(g, "tokenizer.ggml.eos_token_id", -1) == 2);
    CHECK(gguf_get_int(g, "tokenizer.ggml.unknown_token_id", -1) == 0);
    CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 0) == 1);
    /* pieces are distinct, non-empty, and scores do not increase after the byte tokens */
    int dup = 0, sp = 0;
    for (int i = 259; i < 512; i++) {
        CHECK(tok->v.strs[i].len > 0);
        sp += tok->v.strs[i].len >= 3 && !memcmp(tok->v.strs[i].ptr, "\xE2\x96\x81", 3);
        if (i > 259) CHECK(gguf_arr_float(sc, (uint64_t)i) <= gguf_arr_float(sc, (uint64_t)i - 1));
        for (int j = 259; j < i; j++)
            dup += tok->v.strs[i].len == tok->v.strs[j].len &&
                   !memcmp(tok->v.strs[i].ptr, tok->v.strs[j].ptr, tok->v.strs[i].len);
    }
    CHECK(dup == 0);
    CHECK(sp > 50); /* word-initial pieces carry U+2581 */

    /* tensors: llama.cpp's names and shapes (ne[0] is the input dimension) */
    const int phi3 = !strcmp(arch, "phi3"), qwen2 = !strcmp(arch, "qwen2"), qwen3 = !strcmp(arch, "qwen3");
    uint64_t want_n = 3 + 2 * (uint64_t)(phi3 ? 6 : 9 + (qwen2 ? 3 : 0) + (qwen3 ? 2 : 0));
    CHECKF(g->n_tensors == want_n, "%llu tensors, expected %llu", (unsigned long long)g->n_tensors,
           (unsigned long long)want_n);
    CHECK_TENSOR(g, "token_embd.weight", 64, 512, GGML_TYPE_F16);
    CHECK_TENSOR(g, "output_norm.weight", 64, 0, GGML_TYPE_F32);
    CHECK_TENSOR(g, "output.weight", 64, 512, GGML_TYPE_F16);
    char n[64];
    for (int l = 0; l < 2; l++) {
#define NM(x) (snprintf(n, sizeof n, "blk.%d." x, l), n)
        CHECK_TENSOR(g, NM("attn_norm.weight"), 64, 0, GGML_TYPE_F32);
        CHECK_TENSOR(g, NM("ffn_norm.weight"), 64, 0, GGML_TYPE_F32);
        CHECK_TENSOR(g, NM("attn_output.weight"), 64, 64, GGML_TYPE_F16);
        CHECK_TENSOR(g, NM("ffn_down.weight"), 96, 64, GGML_TYPE_F16);
        if (phi3) {
            CHECK_TENSOR(g, NM("attn_qkv.weight"), 64, 64 + 2 * 32, GGML_TYPE_F16);
            CHECK_TENSOR(g, NM("ffn_up.weight"), 64, 2 * 96, GGML_TYPE_F16);
            CHECK(gguf_find_tensor(g, NM("ffn_gate.weight")) == NULL);
            CHECK(gguf_find_tensor(g, NM("attn_q.weight")) == NULL);
        } else {
            CHECK_TENSOR(g, NM("attn_q.weight"), 64, 64, GGML_TYPE_F16);
            CHECK_TENSOR(g, NM("attn_k.weight"), 64, 32, GGML_TYPE_F16);
            CHECK_TENSOR(g, NM("attn_v.weight"), 64, 32, GGML_TYPE_F16);
            CHECK_TENSOR(g, NM("ffn_gate.weight"), 64, 96, GGML_TYPE_F16);
            CHECK_TENSOR(g, NM("ffn_up.weight"), 64, 96, GGML_TYPE_F16);
        }
        if (qwen2) {
            CHECK_TENSOR(g, NM("attn_q.bias"), 64, 0, GGML_TYPE_F32);
            CHECK_TENSOR(g, NM("attn_k.bias"), 32, 0, GGML_TYPE_F32);
            CHECK_TENSOR(g, NM("attn_v.bias"), 32, 0, GGML_TYPE_F32);
        }
        if (qwen3) {
            CHECK_TENSOR(g, NM("attn_q_norm.weight"), 16, 0, GGML_TYPE_F32);
            CHECK_TENSOR(g, NM("attn_k_norm.weight"), 16, 0, GGML_TYPE_F32);
        }
#undef NM
    }
    /* lib/arch agrees that tome can run it */
    tome_hparams hp;
    REQUIREF(hparams_load(&hp, g, &e) == 0, "hparams_load: %s", e.msg);
    char why[512];
    CHECKF(model_check_runnable(g, &hp, why, sizeof why), "not runnable: %s", why);
    gguf_close(g);
}

TEST(mkgguf_llama) { SKIP_UNLESS_TOOL("mkgguf"); check_arch(T, "llama"); }
TEST(mkgguf_qwen2) { SKIP_UNLESS_TOOL("mkgguf"); check_arch(T, "qwen2"); }
TEST(mkgguf_qwen3) { SKIP_UNLESS_TOOL("mkgguf"); check_arch(T, "qwen3"); }
TEST(mkgguf_phi3) { SKIP_UNLESS_TOOL("mkgguf"); check_arch(T, "phi3"); }

/* ---- mkgguf: types and value spread ---------------------------------------------------- */

/* Every 2-D weight has type `ty`; projections dequantise to mean ~0, sd ~1/sqrt(fan_in);
 * embeddings to sd ~0.5; norms to ~1 ± 0.1. */
static void check_type(tctx *T, const char *flag, uint32_t ty, int file_type) {
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/t.gguf", ttmpdir());
    int rc = run_cmd(err, sizeof err,
                     "build/mkgguf -o %s --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 128 "
                     "--vocab 512 %s", out, flag);
    REQUIREF(rc == 0, "mkgguf %s: exit %d: %s", flag, rc, err);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    CHECKF(gguf_get_int(g, "general.file_type", -1) == file_type, "file_type %lld, expected %d",
           (long long)gguf_get_int(g, "general.file_type", -1), file_type);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        uint32_t want = t->n_dims == 2 ? ty : GGML_TYPE_F32;
        CHECKF(t->type == want, "%s: %s %s, expected %s", flag, t->name, ggml_type_get(t->type)->name,
               ggml_type_get(want)->name);
        double mean, sd;
        int64_t bad;
        tensor_stats(t, &mean, &sd, &bad);
        CHECKF(bad == 0, "%s: %lld non-finite values", t->name, (long long)bad);
        double want_sd = strstr(t->name, "norm") ? 0.1 / sqrt(3.0)
                         : !strcmp(t->name, "token_embd.weight") ? 0.5
                                                                  : 1.0 / sqrt((double)t->ne[0]);
        double want_mean = strstr(t->name, "norm") ? 1.0 : 0.0;
        /* tolerance: sampling (>= 64 values) plus the type's rounding */
        CHECKF(fabs(mean - want_mean) < 0.35 * want_sd + 1e-3, "%s %s: mean %g, expected %g", flag, t->name, mean,
               want_mean);
        CHECKF(sd > 0.75 * want_sd && sd < 1.25 * want_sd, "%s %s: sd %g, expected ~%g", flag, t->name, sd,
               want_sd);
    }
    gguf_close(g);
}

TEST(mkgguf_type_f32) { SKIP_UNLESS_TOOL("mkgguf"); check_type(T, "--type f32", GGML_TYPE_F32, 0); }
TEST(mkgguf_type_f16) { SKIP_UNLESS_TOOL("mkgguf"); check_type(T, "--type f16", GGML_TYPE_F16, 1); }
TEST(mkgguf_type_bf16) { SKIP_UNLESS_TOOL("mkgguf"); check_type(T, "--type bf16", GGML_TYPE_BF16, 32); }
TEST(mkgguf_type_q8_0) { SKIP_UNLESS_TOOL("mkgguf"); check_type(T, "--type q8_0", GGML_TYPE_Q8_0, 7); }
TEST(mkgguf_type_q4_0) { SKIP_UNLESS_TOOL("mkgguf"); check_type(T, "--type q4_0", GGML_TYPE_Q4_0, 2); }
TEST(mkgguf_type_q6_k_falls_back) {
    /* 64-wide rows are not a whole Q6_K super-block: llama.cpp falls back to Q8_0 */
    SKIP_UNLESS_TOOL("mkgguf");
    check_type(T, "--type q6_k", GGML_TYPE_Q8_0, 18);
}

/* Q4_K_M on a 256-wide, 8-layer model: llama.cpp (llama_tensor_get_type) puts Q6_K on the
 * output and on attn_v / ffn_down of the "use_more_bits" layers — the first and last eighth
 * and every third layer between: 0, 3, 6, 7 of 8 — and Q4_K everywhere else. */
TEST(mkgguf_preset_q4_k_m_rules) {
    SKIP_UNLESS_TOOL("mkgguf");
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/q.gguf", ttmpdir());
    int rc = run_cmd(err, sizeof err,
                     "build/mkgguf -o %s --n-embd 256 --n-layer 8 --n-head 4 --n-head-kv 1 --n-ff 512 "
                     "--vocab 300 --preset q4_k_m", out);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    CHECK(gguf_get_int(g, "general.file_type", -1) == 15);
    CHECK(gguf_get_int(g, "general.quantization_version", -1) == 2);
    CHECK_TENSOR(g, "output.weight", 256, 300, GGML_TYPE_Q6_K);
    CHECK_TENSOR(g, "token_embd.weight", 256, 300, GGML_TYPE_Q4_K);
    char n[64];
    for (int l = 0; l < 8; l++) {
        int more = l == 0 || l == 3 || l == 6 || l == 7;
        uint32_t hi = more ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
        snprintf(n, sizeof n, "blk.%d.attn_v.weight", l);
        CHECK_TENSOR(g, n, 256, 64, hi);
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l);
        CHECK_TENSOR(g, n, 512, 256, hi);
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        CHECK_TENSOR(g, n, 256, 256, GGML_TYPE_Q4_K);
        snprintf(n, sizeof n, "blk.%d.ffn_up.weight", l);
        CHECK_TENSOR(g, n, 256, 512, GGML_TYPE_Q4_K);
        snprintf(n, sizeof n, "blk.%d.ffn_norm.weight", l);
        CHECK_TENSOR(g, n, 256, 0, GGML_TYPE_F32);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        double mean, sd;
        int64_t bad;
        tensor_stats(&g->tensors[i], &mean, &sd, &bad);
        CHECKF(bad == 0 && sd > 0, "%s: %lld bad, sd %g", g->tensors[i].name, (long long)bad, sd);
    }
    gguf_close(g);
}

/* The same rules, checked against llama.cpp's own quantisations of a model of this shape:
 * every tensor's type in mkgguf's file equals the one llama-quantize chose. */
static void check_preset_vs_llamacpp(tctx *T, const char *preset, const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/llamacpp/%s", file);
    DATA_OR_SKIP(ref, rel);
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/p.gguf", ttmpdir());
    /* tiny-gqa768: 256 wide, 4 layers, 8 heads of 32, 2 KV heads, FF 768 (vocab need not match) */
    int rc = run_cmd(err, sizeof err,
                     "build/mkgguf -o %s --n-embd 256 --n-layer 4 --n-head 8 --n-head-kv 2 --n-ff 768 "
                     "--vocab 512 --preset %s", out, preset);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);
    gguf *g = NULL, *r = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    if (gguf_open(&r, ref, &e)) { gguf_close(g); free(ref); REQUIREF(0, "%s", e.msg); }
    CHECK(g->n_tensors == r->n_tensors);
    CHECK(gguf_get_int(g, "general.file_type", -1) == gguf_get_int(r, "general.file_type", -2));
    for (uint64_t i = 0; i < r->n_tensors; i++) {
        const gguf_tensor *rt = &r->tensors[i], *mt = gguf_find_tensor(g, rt->name);
        CHECKF(mt != NULL, "%s missing", rt->name);
        if (!mt) continue;
        CHECKF(mt->type == rt->type, "%s %s: mkgguf %s, llama.cpp %s", preset, rt->name,
               ggml_type_get(mt->type)->name, ggml_type_get(rt->type)->name);
        CHECK(mt->ne[0] == rt->ne[0] && (mt->ne[1] == rt->ne[1] || strstr(rt->name, "token_embd") ||
                                         !strcmp(rt->name, "output.weight")));
    }
    gguf_close(g);
    gguf_close(r);
    free(ref);
}

TEST(mkgguf_preset_q4_k_m_vs_llamacpp) { SKIP_UNLESS_TOOL("mkgguf"); check_preset_vs_llamacpp(T, "q4_k_m", "tiny-gqa768-Q4_K_M.gguf"); }
TEST(mkgguf_preset_q4_0_vs_llamacpp) { SKIP_UNLESS_TOOL("mkgguf"); check_preset_vs_llamacpp(T, "q4_0", "tiny-gqa768-Q4_0.gguf"); }
TEST(mkgguf_preset_q6_k_vs_llamacpp) { SKIP_UNLESS_TOOL("mkgguf"); check_preset_vs_llamacpp(T, "q6_k", "tiny-gqa768-Q6_K.gguf"); }
TEST(mkgguf_preset_q8_0_vs_llamacpp) { SKIP_UNLESS_TOOL("mkgguf"); check_preset_vs_llamacpp(T, "q8_0", "tiny-gqa768-Q8_0.gguf"); }

/* Rows that are not whole blocks: Q4_K -> Q5_0, Q6_K -> Q8_0, and F16 where even 32 does not
 * divide (ffn_down rows of 100); a tied embedding takes the output's type; phi3's fused QKV
 * gets Q5_K under Q4_K_M. Per-class overrides win over the preset. */
TEST(mkgguf_fallbacks_and_overrides) {
    SKIP_UNLESS_TOOL("mkgguf");
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/f.gguf", ttmpdir());
    int rc = run_cmd(err, sizeof err,
                     "build/mkgguf -o %s --n-embd 64 --n-layer 2 --n-head 4 --n-ff 100 --vocab 300 "
                     "--preset q4_k_m --tied", out);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    CHECK(gguf_find_tensor(g, "output.weight") == NULL);
    CHECK_TENSOR(g, "token_embd.weight", 64, 300, GGML_TYPE_Q8_0); /* output rule: 64 % 256 -> Q8_0 */
    CHECK_TENSOR(g, "blk.1.attn_q.weight", 64, 64, GGML_TYPE_Q5_0);
    CHECK_TENSOR(g, "blk.0.attn_v.weight", 64, 64, GGML_TYPE_Q5_0); /* layer 0 of 2: Q4_K -> Q5_0 */
    CHECK_TENSOR(g, "blk.1.attn_v.weight", 64, 64, GGML_TYPE_Q8_0); /* last layer: Q6_K -> Q8_0 */
    CHECK_TENSOR(g, "blk.0.ffn_down.weight", 100, 64, GGML_TYPE_F16);
    gguf_close(g);

    rc = run_cmd(err, sizeof err,
                 "build/mkgguf -o %s --arch phi3 --n-embd 256 --n-layer 2 --n-head 4 --n-ff 256 --vocab 300 "
                 "--preset q4_k_m --type-ffn q8_0 --type-output f16", out);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);
    REQUIREF(gguf_open(&g, out, &e) == 0, "%s", e.msg);
    CHECK_TENSOR(g, "blk.0.attn_qkv.weight", 256, 768, GGML_TYPE_Q5_K);
    CHECK_TENSOR(g, "blk.1.attn_output.weight", 256, 256, GGML_TYPE_Q4_K);
    CHECK_TENSOR(g, "blk.0.ffn_up.weight", 256, 512, GGML_TYPE_Q8_0);
    CHECK_TENSOR(g, "blk.0.ffn_down.weight", 256, 256, GGML_TYPE_Q8_0);
    CHECK_TENSOR(g, "output.weight", 256, 300, GGML_TYPE_F16);
    CHECK_TENSOR(g, "token_embd.weight", 256, 300, GGML_TYPE_Q4_K);
    gguf_close(g);

    /* a legacy type that does not divide the rows is refused, naming the tensor */
    rc = run_cmd(err, sizeof err, "build/mkgguf -o %s --n-embd 64 --n-head 4 --n-ff 100 --type q8_0", out);
    CHECK(rc == 1);
    CHECK(strstr(err, "ffn_down") != NULL && count_lines(err) == 1);
}

/* ---- mkgguf: determinism --------------------------------------------------------------- */

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = tread_file(a, &na, NULL), *y = tread_file(b, &nb, NULL);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return eq;
}

TEST(mkgguf_deterministic_across_threads) {
    SKIP_UNLESS_TOOL("mkgguf");
    char a[512], b[512], c[512], err[2048];
    snprintf(a, sizeof a, "%s/a.gguf", ttmpdir());
    snprintf(b, sizeof b, "%s/b.gguf", ttmpdir());
    snprintf(c, sizeof c, "%s/c.gguf", ttmpdir());
    /* big enough (64K+ values per matrix) that the tool really splits rows between threads */
    const char *shape = "--n-embd 256 --n-layer 2 --n-head 4 --n-ff 512 --vocab 600 --type q8_0";
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s %s --seed 42 -t 1", a, shape) == 0);
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s %s --seed 42 -t 3", b, shape) == 0);
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s %s --seed 43 -t 3", c, shape) == 0);
    CHECK(files_equal(a, b));
    CHECK(!files_equal(a, c));
    /* different seeds change the weights, not the layout */
    gguf *ga = NULL, *gc = NULL;
    terr e = {0};
    REQUIRE(gguf_open(&ga, a, &e) == 0);
    if (gguf_open(&gc, c, &e)) { gguf_close(ga); REQUIRE(0); }
    CHECK(ga->n_tensors == gc->n_tensors && ga->size == gc->size);
    const gguf_tensor *ta = gguf_find_tensor(ga, "blk.1.ffn_up.weight"), *tc = gguf_find_tensor(gc, "blk.1.ffn_up.weight");
    CHECK(ta && tc && memcmp(ta->data, tc->data, ta->nbytes) != 0);
    /* rows differ from each other within a tensor too (per-row streams are not repeated) */
    CHECK(ta && memcmp(ta->data, (const char *)ta->data + ggml_row_size(ta->type, ta->ne[0]),
                       ggml_row_size(ta->type, ta->ne[0])) != 0);
    gguf_close(ga);
    gguf_close(gc);
}

/* ---- mkgguf: RoPE scaling, sliding window, vocab-from ----------------------------------- */

TEST(mkgguf_rope_scaling) {
    SKIP_UNLESS_TOOL("mkgguf");
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/r.gguf", ttmpdir());
    gguf *g = NULL;
    terr e = {0};

    /* llama3: rope_freqs [head_dim/2] from llama.cpp's converter formula (factor 8, low 1,
     * high 4, original context 8192): 1 for wavelengths under 2048, 8 over 8192, between
     * 1 / ((1 - s)/8 + s) with s = (8192/wavelen - 1)/3. */
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s --n-embd 128 --n-head 2 --rope-base 500000 "
                    "--rope-scaling llama3 --ctx 131072 --type f32", out) == 0);
    REQUIRE(gguf_open(&g, out, &e) == 0);
    const gguf_tensor *t = gguf_find_tensor(g, "rope_freqs.weight");
    REQUIRE(t && t->ne[0] == 32 && t->n_dims == 1 && t->type == GGML_TYPE_F32);
    const float *rf = t->data;
    for (int i = 0; i < 32; i++) {
        double freq = pow(500000.0, -2.0 * i / 64.0), wl = 2 * M_PI / freq, want;
        if (wl < 2048) want = 1;
        else if (wl > 8192) want = 8;
        else {
            double s = (8192 / wl - 1) / 3;
            want = 1 / ((1 - s) / 8 + s);
        }
        CHECK_NEAR(rf[i], want, 1e-4 * want);
    }
    CHECK(gguf_get(g, "llama.rope.scaling.type") == NULL); /* as llama.cpp writes llama3 files */
    tome_hparams hp;
    REQUIREF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
    CHECK(hp.rope_scaling == ROPE_SCALING_LLAMA3);
    gguf_close(g);

    /* yarn: type, factor, original context in metadata */
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s --arch qwen2 --rope-scaling yarn --rope-factor 4 "
                    "--ctx 32768 --sliding-window 1024", out) == 0);
    REQUIRE(gguf_open(&g, out, &e) == 0);
    gguf_str s;
    CHECK(gguf_get_str(g, "qwen2.rope.scaling.type", &s) && str_is(s, "yarn"));
    CHECK_NEAR(gguf_get_float(g, "qwen2.rope.scaling.factor", 0), 4, 0);
    CHECK(gguf_get_int(g, "qwen2.rope.scaling.original_context_length", 0) == 8192);
    CHECK(gguf_get_int(g, "qwen2.attention.sliding_window", 0) == 1024);
    CHECK_NEAR(gguf_get_float(g, "qwen2.rope.freq_base", 0), 1e6, 0);
    gguf_close(g);

    /* longrope (phi3): two factor tensors, original context and attention factor */
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s --arch phi3 --rope-scaling longrope --ctx 131072 "
                    "--rope-orig-ctx 4096", out) == 0);
    REQUIRE(gguf_open(&g, out, &e) == 0);
    const gguf_tensor *tl = gguf_find_tensor(g, "rope_factors_long.weight");
    const gguf_tensor *ts = gguf_find_tensor(g, "rope_factors_short.weight");
    REQUIRE(tl && ts && tl->ne[0] == 8 && ts->ne[0] == 8 && tl->type == GGML_TYPE_F32);
    CHECK(((const float *)tl->data)[7] > ((const float *)tl->data)[0]);
    CHECK(gguf_get_int(g, "phi3.rope.scaling.original_context_length", 0) == 4096);
    CHECK_NEAR(gguf_get_float(g, "phi3.rope.scaling.attn_factor", 0), sqrt(1 + log(32.0) / log(4096.0)), 1e-6);
    REQUIREF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
    CHECK(hp.rope_scaling == ROPE_SCALING_LONGROPE);
    char why[512];
    CHECKF(model_check_runnable(g, &hp, why, sizeof why), "%s", why);
    gguf_close(g);

    /* linear */
    REQUIRE(run_cmd(err, sizeof err, "build/mkgguf -o %s --rope-scaling linear --rope-factor 2", out) == 0);
    REQUIRE(gguf_open(&g, out, &e) == 0);
    CHECK(gguf_get_str(g, "llama.rope.scaling.type", &s) && str_is(s, "linear"));
    CHECK_NEAR(gguf_get_float(g, "llama.rope.scaling.factor", 0), 2, 0);
    gguf_close(g);
}

TEST(mkgguf_vocab_from) {
    SKIP_UNLESS_TOOL("mkgguf");
    DATA_OR_SKIP(voc, "vocab/ggml-vocab-llama-spm.gguf");
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/v.gguf", ttmpdir());
    int rc = run_cmd(err, sizeof err, "build/mkgguf -o %s --n-embd 32 --n-head 2 --n-layer 1 --n-ff 64 "
                     "--vocab-from %s --tied", out, voc);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);
    gguf *g = NULL, *v = NULL;
    terr e = {0};
    REQUIRE(gguf_open(&g, out, &e) == 0);
    if (gguf_open(&v, voc, &e)) { gguf_close(g); free(voc); REQUIRE(0); }
    CHECK_TENSOR(g, "token_embd.weight", 32, 32000, GGML_TYPE_F16);
    CHECK(gguf_get_int(g, "llama.vocab_size", 0) == 32000);
    int n_tok_keys = 0;
    for (uint64_t i = 0; i < v->n_kv; i++) {
        if (strncmp(v->kv[i].key, "tokenizer.", 10)) continue;
        n_tok_keys++;
        const gguf_value *a = &v->kv[i].val, *b = gguf_get(g, v->kv[i].key);
        CHECKF(b && b->type == a->type && b->n == a->n, "%s not copied", v->kv[i].key);
    }
    CHECK(n_tok_keys >= 8);
    const gguf_value *a = gguf_get(v, "tokenizer.ggml.tokens"), *b = gguf_get(g, "tokenizer.ggml.tokens");
    REQUIRE(a && b && a->n == b->n);
    int same = 1;
    for (uint64_t i = 0; i < a->n; i++)
        same &= a->v.strs[i].len == b->v.strs[i].len && !memcmp(a->v.strs[i].ptr, b->v.strs[i].ptr, a->v.strs[i].len);
    CHECK(same);
    const gguf_value *sa = gguf_get(v, "tokenizer.ggml.scores"), *sb = gguf_get(g, "tokenizer.ggml.scores");
    CHECK(sa && sb && gguf_arr_float(sa, 1000) == gguf_arr_float(sb, 1000));
    gguf_close(g);
    gguf_close(v);
    free(voc);
}

TEST(mkgguf_bad_flags) {
    SKIP_UNLESS_TOOL("mkgguf");
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/x.gguf", ttmpdir());
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --frobnicate", out) == 1);
    CHECK(strstr(err, "--frobnicate") && count_lines(err) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf --n-embd 64") == 1); /* no -o */
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --type q3_k", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --n-head 6 --n-head-kv 4", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --n-embd 60 --n-head 8", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --n-embd abc", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --preset q4_k_m --type q8_0", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --vocab 100", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --arch gpt2", out) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --n-layer", out) == 1);
    CHECK(!file_exists(out));
    /* input problems are exit 2 */
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s --vocab-from %s/missing.gguf", out, ttmpdir()) == 2);
    CHECK(strstr(err, "missing.gguf") && count_lines(err) == 1);
    CHECK(run_cmd(err, sizeof err, "build/mkgguf -o %s/no/such/dir/x.gguf", ttmpdir()) == 2);
    CHECK(!file_exists(out));
    CHECK(run_cmd(err, sizeof err, "build/mkgguf --help") == 0);
}

/* ---- llama2c2gguf ----------------------------------------------------------------------- */

/* llama2.c's run.c layout: 7 int32, then float32 arrays (see tools/llama2c2gguf.c). Offsets
 * are in floats from the end of the header. */
typedef struct l2c { int dim, hidden, layers, heads, kv_heads, vocab, seq; } l2c;

TEST(llama2c2gguf_stories260k) {
    SKIP_UNLESS_TOOL("llama2c2gguf");
    DATA_OR_SKIP(bin, "models/stories260K.bin");
    char *tok = tdata_path("models/tok512.bin");
    if (!tok) { free(bin); SKIP("test data models/tok512.bin not found under TOME_DATA"); }
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/s.gguf", ttmpdir());
    int rc = run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", bin, tok, out);
    REQUIREF(rc == 0, "exit %d: %s", rc, err);

    size_t nraw;
    char *raw = tread_file(bin, &nraw, NULL);
    REQUIRE(raw && nraw > 28);
    l2c c;
    memcpy(&c, raw, sizeof c);
    const float *f = (const float *)(raw + 28);
    gguf *g = NULL;
    terr e = {0};
    if (gguf_open(&g, out, &e)) { free(raw); REQUIREF(0, "%s", e.msg); }

    gguf_str s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && str_is(s, "llama"));
    CHECK(gguf_get_int(g, "llama.block_count", 0) == 5);
    CHECK(gguf_get_int(g, "llama.attention.head_count", 0) == 8);
    CHECK(gguf_get_int(g, "llama.attention.head_count_kv", 0) == 4);
    CHECK(gguf_get_int(g, "llama.embedding_length", 0) == 64);
    CHECK(gguf_get_int(g, "llama.feed_forward_length", 0) == 172);
    CHECK(gguf_get_int(g, "llama.context_length", 0) == 512);
    CHECK(gguf_get_int(g, "llama.rope.dimension_count", 0) == 8); /* head dim 64/8 */
    CHECK_NEAR(gguf_get_float(g, "llama.rope.freq_base", 0), 10000, 0);
    CHECK_NEAR(gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", 0), 1e-5, 1e-12);
    tome_hparams hp;
    CHECKF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
    CHECK(hp.n_vocab == 512 && hp.head_dim == 8 && hp.rope_neox == 0 && hp.tied_output);
    char why[512];
    CHECKF(model_check_runnable(g, &hp, why, sizeof why), "%s", why);

    /* vocabulary: the exporter's changes undone */
    const gguf_value *tv = gguf_get(g, "tokenizer.ggml.tokens"), *ty = gguf_get(g, "tokenizer.ggml.token_type");
    const gguf_value *sc = gguf_get(g, "tokenizer.ggml.scores");
    REQUIRE(tv && tv->n == 512 && ty && ty->n == 512 && sc && sc->n == 512);
    CHECK(str_is(tv->v.strs[0], "<unk>") && gguf_arr_int(ty, 0) == 2);
    CHECK(str_is(tv->v.strs[1], "<s>") && gguf_arr_int(ty, 1) == 3);
    CHECK(str_is(tv->v.strs[2], "</s>") && gguf_arr_int(ty, 2) == 3);
    CHECK(str_is(tv->v.strs[3], "<0x00>") && gguf_arr_int(ty, 3) == 6);
    CHECK(str_is(tv->v.strs[13], "<0x0A>") && gguf_arr_int(ty, 13) == 6);
    CHECK(str_is(tv->v.strs[262], "\xE2\x96\x81" "a") && gguf_arr_int(ty, 262) == 1); /* was " a" */
    CHECK(str_is(tv->v.strs[259], "in") && gguf_arr_int(ty, 259) == 1);
    CHECK_NEAR(gguf_arr_float(sc, 260), -1.0, 0);
    for (uint64_t i = 0; i < tv->n; i++)
        CHECKF(!memchr(tv->v.strs[i].ptr, ' ', tv->v.strs[i].len), "token %llu still has a space", (unsigned long long)i);
    CHECK(gguf_get_int(g, "tokenizer.ggml.bos_token_id", -1) == 1);
    CHECK(gguf_get_int(g, "tokenizer.ggml.eos_token_id", -1) == 2);
    CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 0) == 1);
    CHECK(gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", 0) == 1);
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &s) && str_is(s, "llama"));

    /* weights: bit-exact copies of the float32 arrays, located independently here */
    REQUIRE(c.dim == 64 && c.layers == 5 && c.vocab == 512);
    const int64_t D = c.dim, H = c.hidden, L = c.layers, V = c.vocab, kv = D / c.heads * c.kv_heads;
    const int64_t o_tok = 0, o_att = o_tok + V * D, o_wq = o_att + L * D, o_wk = o_wq + L * D * D;
    const int64_t o_wv = o_wk + L * D * kv, o_wo = o_wv + L * D * kv, o_ffn = o_wo + L * D * D;
    const int64_t o_w1 = o_ffn + L * D, o_w2 = o_w1 + L * D * H, o_w3 = o_w2 + L * H * D, o_fin = o_w3 + L * D * H;
    struct { const char *name; int64_t off, n, ne0, ne1; } want[] = {
        {"token_embd.weight", o_tok, V * D, D, V},
        {"output_norm.weight", o_fin, D, D, 0},
        {"blk.0.attn_norm.weight", o_att, D, D, 0},
        {"blk.4.attn_norm.weight", o_att + 4 * D, D, D, 0},
        {"blk.0.attn_q.weight", o_wq, D * D, D, D},
        {"blk.3.attn_q.weight", o_wq + 3 * D * D, D * D, D, D},
        {"blk.2.attn_k.weight", o_wk + 2 * D * kv, D * kv, D, kv},
        {"blk.4.attn_v.weight", o_wv + 4 * D * kv, D * kv, D, kv},
        {"blk.1.attn_output.weight", o_wo + 1 * D * D, D * D, D, D},
        {"blk.3.ffn_norm.weight", o_ffn + 3 * D, D, D, 0},
        {"blk.0.ffn_gate.weight", o_w1, D * H, D, H},           /* w1 */
        {"blk.4.ffn_down.weight", o_w2 + 4 * H * D, H * D, H, D}, /* w2 */
        {"blk.2.ffn_up.weight", o_w3 + 2 * D * H, D * H, D, H},   /* w3 */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gguf_tensor *t = gguf_find_tensor(g, want[i].name);
        CHECK_TENSOR(g, want[i].name, want[i].ne0, want[i].ne1, GGML_TYPE_F32);
        if (t && t->nelem == want[i].n)
            CHECKF(!memcmp(t->data, f + want[i].off, (size_t)want[i].n * 4), "%s differs from the checkpoint",
                   want[i].name);
    }
    /* and a few single values, by (row, column) as run.c's matmul reads them: W[i*n + j] */
    const gguf_tensor *tq = gguf_find_tensor(g, "blk.1.attn_q.weight");
    if (tq) CHECK(((const float *)tq->data)[5 * D + 7] == f[o_wq + 1 * D * D + 5 * D + 7]);
    const gguf_tensor *td = gguf_find_tensor(g, "blk.0.ffn_down.weight");
    if (td) CHECK(((const float *)td->data)[63 * H + 171] == f[o_w2 + 63 * H + 171]);
    CHECK(gguf_find_tensor(g, "output.weight") == NULL); /* vocab_size > 0: shared classifier */
    CHECK(g->n_tensors == 2 + 9 * 5);
    gguf_close(g);
    free(raw);
    free(bin);
    free(tok);
}

/* An untied checkpoint (negative vocab_size) gets output.weight from the trailing wcls. */
TEST(llama2c2gguf_untied) {
    SKIP_UNLESS_TOOL("llama2c2gguf");
    DATA_OR_SKIP(bin, "models/stories260K.bin");
    char *tok = tdata_path("models/tok512.bin");
    if (!tok) { free(bin); SKIP("test data models/tok512.bin not found under TOME_DATA"); }
    size_t n;
    char *raw = tread_file(bin, &n, NULL);
    REQUIRE(raw);
    int32_t vocab;
    memcpy(&vocab, raw + 20, 4);
    vocab = -vocab;
    memcpy(raw + 20, &vocab, 4);
    char in[512], out[512], err[2048];
    snprintf(in, sizeof in, "%s/untied.bin", ttmpdir());
    snprintf(out, sizeof out, "%s/untied.gguf", ttmpdir());
    FILE *fp = fopen(in, "wb");
    REQUIRE(fp);
    fwrite(raw, 1, n, fp);
    float wcls[512 * 64];
    trng r;
    trng_seed(&r, 5);
    for (int i = 0; i < 512 * 64; i++) wcls[i] = trng_normal(&r);
    fwrite(wcls, sizeof wcls, 1, fp);
    fclose(fp);
    int rc = run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", in, tok, out);
    CHECKF(rc == 0, "exit %d: %s", rc, err);
    gguf *g = NULL;
    terr e = {0};
    if (rc == 0 && gguf_open(&g, out, &e) == 0) {
        const gguf_tensor *t = gguf_find_tensor(g, "output.weight");
        CHECK(t && t->ne[0] == 64 && t->ne[1] == 512 && !memcmp(t->data, wcls, sizeof wcls));
        gguf_close(g);
    }
    free(raw), free(bin), free(tok);
}

TEST(llama2c2gguf_bad_inputs) {
    SKIP_UNLESS_TOOL("llama2c2gguf");
    char out[512], err[2048], p[512];
    snprintf(out, sizeof out, "%s/o.gguf", ttmpdir());
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf") == 1);
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf a b") == 1);
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf %s/none.bin %s/none.bin %s", ttmpdir(), ttmpdir(), out) == 2);
    CHECK(strstr(err, "none.bin") && count_lines(err) == 1);
    CHECK(!file_exists(out));

    DATA_OR_SKIP(bin, "models/stories260K.bin");
    char *tok = tdata_path("models/tok512.bin");
    if (!tok) { free(bin); SKIP("test data models/tok512.bin not found under TOME_DATA"); }
    size_t n, nt;
    char *raw = tread_file(bin, &n, NULL), *traw = tread_file(tok, &nt, NULL);
    REQUIRE(raw && traw);
    /* checkpoint cut short by one float, by half, and down to a partial header */
    size_t cuts[] = {n - 4, n / 2, 20};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/cut.bin", ttmpdir());
        FILE *fp = fopen(p, "wb");
        REQUIRE(fp);
        fwrite(raw, 1, cuts[i], fp);
        fclose(fp);
        int rc = run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", p, tok, out);
        CHECKF(rc == 2, "cut at %zu: exit %d", cuts[i], rc);
        CHECKF(strstr(err, "truncated") && count_lines(err) == 1, "cut at %zu: %s", cuts[i], err);
        CHECK(!file_exists(out));
    }
    /* a header that makes no sense */
    snprintf(p, sizeof p, "%s/bad.bin", ttmpdir());
    FILE *fp = fopen(p, "wb");
    REQUIRE(fp);
    int32_t h[7] = {64, 172, 5, 7, 4, 512, 512}; /* 64 is not a multiple of 7 heads */
    fwrite(h, sizeof h, 1, fp);
    fwrite(raw + 28, 1, n - 28, fp);
    fclose(fp);
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", p, tok, out) == 2);
    CHECK(count_lines(err) == 1);
    /* vocab_size INT32_MIN: negating it (the untied-classifier flag) would overflow */
    fp = fopen(p, "wb");
    REQUIRE(fp);
    int32_t h2[7] = {64, 172, 5, 8, 4, INT32_MIN, 512};
    fwrite(h2, sizeof h2, 1, fp);
    fwrite(raw + 28, 1, n - 28, fp);
    fclose(fp);
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", p, tok, out) == 2);
    CHECKF(strstr(err, "implausible header") && count_lines(err) == 1, "%s", err);
    /* tokenizer cut in the middle of its pieces */
    snprintf(p, sizeof p, "%s/cut_tok.bin", ttmpdir());
    fp = fopen(p, "wb");
    REQUIRE(fp);
    fwrite(traw, 1, nt / 2, fp);
    fclose(fp);
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s", bin, p, out) == 2);
    CHECK(strstr(err, "cut_tok.bin") && count_lines(err) == 1);
    CHECK(!file_exists(out));
    /* an output that cannot be created */
    CHECK(run_cmd(err, sizeof err, "build/llama2c2gguf %s %s %s/no/dir/o.gguf", bin, tok, ttmpdir()) == 2);
    free(raw), free(traw), free(bin), free(tok);
}

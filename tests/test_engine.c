/* test_engine.c — the engine's contracts: batched prefill equals token-by-token, thread count
 * does not change results, stop rules (stop ids, -n, context end, interrupt), errors with
 * both numbers, and strict weight binding (wrong shape, unsupported type, unsupported arch).
 */
#include "test.h"

#include <stdint.h>
#include <unistd.h>

#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"

/* A small model file: build/mkgguf when present, else the llama.cpp Q4_K_M test model. */
static char *small_model(tctx *T, const char *extra) {
    if (access("build/mkgguf", X_OK) == 0) {
        char *p = malloc(600), cmd[1200];
        snprintf(p, 600, "%s/m.gguf", ttmpdir());
        snprintf(cmd, sizeof cmd, "build/mkgguf -o '%s' -t 1 %s >/dev/null 2>&1", p, extra);
        if (system(cmd) == 0) return p;
        free(p);
        tt_fail(T, __FILE__, __LINE__, "%s failed", cmd);
        return NULL;
    }
    return tdata_path("models/llamacpp/tiny-gqa768-Q4_K_M.gguf");
}

static engine *open_engine(tctx *T, const char *path, int n_ctx, int n_batch, int threads, int exact) {
    engine_params ep = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = threads, .exact = exact};
    engine *en = NULL;
    terr e = {0};
    if (engine_open(&en, path, &ep, &e)) tt_fail(T, __FILE__, __LINE__, "%s", e.msg);
    return en;
}

/* Batches of 5 and of 1, 1 and 2 threads, both activation paths: the same logits. */
TEST(engine_batched_equals_token_by_token) {
    char *path = small_model(T, "--arch qwen2 --preset q4_k_m --n-embd 256 --n-head 4 --n-head-kv 2 --vocab 300 --seed 5");
    if (!path) SKIP("no mkgguf and no test data");
    for (int exact = 0; exact <= 1; exact++) {
        engine *a = open_engine(T, path, 32, 5, 2, exact), *b = open_engine(T, path, 32, 1, 1, exact);
        REQUIRE(a && b);
        const int V = a->m->hp.n_vocab, n = 13;
        int32_t ids[13];
        trng r;
        trng_seed(&r, 11);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)(trng_u64(&r) % (uint64_t)V);
        float *all = malloc(sizeof(float) * (size_t)V * n);
        terr e = {0};
        REQUIREF(engine_eval(a, ids, n, all, &e) == 0, "%s", e.msg);
        double worst = 0, mag = 1;
        for (int i = 0; i < n; i++) {
            REQUIREF(engine_eval(b, ids + i, 1, NULL, &e) == 0, "%s", e.msg);
            for (int v = 0; v < V; v++) {
                double d = fabs((double)b->logits[v] - all[(size_t)i * V + v]);
                if (!(d <= worst)) worst = d;
                mag = fmax(mag, fabs((double)b->logits[v]));
            }
        }
        /* exact: float matmuls and the f32 cache, the same arithmetic either way. Otherwise the
         * batch runs the prefill kernels (16-row matmul tiles, K/V tiles shared by queries) in
         * another float order than decode's, and quantised activations and KV turn a last-bit
         * difference into a rounding step now and then. Measured 1.5e-2 of the logit scale on this
         * random q4_k_m model (each of the two kernel changes alone: < 1e-5, together one int8
         * step moves); a wrong kernel moves logits by the scale itself. */
        double tol = exact ? 1e-5 : 3e-2 * mag;
        CHECKF(worst <= tol, "exact=%d: batched vs one-by-one differ by %.3g (tolerance %.3g)", exact, worst, tol);
        /* the last row of all_logits is also left in en->logits */
        CHECK(memcmp(a->logits, all + (size_t)(n - 1) * V, sizeof(float) * V) == 0);
        free(all);
        engine_close(a);
        engine_close(b);
    }
    free(path);
}

TEST(engine_eval_errors) {
    char *path = small_model(T, "--arch llama --type q8_0 --vocab 300 --seed 2");
    if (!path) SKIP("no mkgguf and no test data");
    engine *en = open_engine(T, path, 6, 4, 1, 0);
    REQUIRE(en);
    terr e = {0};
    int32_t bad = en->m->hp.n_vocab;
    CHECK(engine_eval(en, &bad, 1, NULL, &e) == TOME_EINPUT);
    CHECKF(strstr(e.msg, "outside the vocabulary") != NULL, "%s", e.msg);
    int32_t ids[7] = {1, 2, 3, 4, 5, 6, 7};
    CHECK(engine_eval(en, ids, 4, NULL, &e) == 0);
    CHECK(engine_eval(en, ids, 3, NULL, &e) == TOME_EINPUT);
    CHECKF(strstr(e.msg, "3 positions") && strstr(e.msg, "context of 6"), "%s", e.msg);
    CHECK(en->n_past == 4);
    engine_close(en);
    free(path);
}

static int count_tokens(void *ud, int32_t id) {
    (void)id;
    (*(int *)ud)++;
    return 0;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

TEST(engine_generate_stop_rules) {
    char *path = small_model(T, "--arch phi3 --type f16 --vocab 280 --seed 9");
    if (!path) SKIP("no mkgguf and no test data");
    engine *en = open_engine(T, path, 16, 4, 0, 0);
    REQUIRE(en);
    const int V = en->m->hp.n_vocab;
    int32_t prompt[5] = {1, 20, 30, 40, 50};
    float *pl = malloc(sizeof(float) * V);
    int cnt = 0;
    gen_params gp = {.n_predict = 3, .sp = sampler_defaults(), .on_token = count_tokens, .ud = &cnt, .prompt_logits = pl};
    gp.sp.temp = 0;
    gen_result r;
    terr e = {0};
    /* -n */
    REQUIREF(engine_generate(en, prompt, 5, &gp, &r, &e) == 0, "%s", e.msg);
    CHECK(r.finish == FINISH_LENGTH && r.n_gen == 3 && cnt == 3 && r.n_prompt == 5);
    CHECK(!strcmp(finish_name(r.finish), "length"));
    /* prompt logits = a plain eval of the prompt */
    engine_reset(en);
    REQUIRE(engine_eval(en, prompt, 5, NULL, &e) == 0);
    CHECK(memcmp(pl, en->logits, sizeof(float) * V) == 0);
    /* a stop id: the greedy first token itself -> nothing generated, "stop" */
    int32_t first = argmax(pl, V);
    gp.stop_ids = &first;
    gp.n_stop = 1;
    cnt = 0;
    REQUIRE(engine_generate(en, prompt, 5, &gp, &r, &e) == 0);
    CHECK(r.finish == FINISH_STOP && r.n_gen == 0 && cnt == 0);
    CHECK(!strcmp(finish_name(r.finish), "stop"));
    gp.n_stop = 0;
    /* the context end: 16 positions, 5 prompt -> 12 tokens (the last one needs no forward) */
    gp.n_predict = -1;
    REQUIRE(engine_generate(en, prompt, 5, &gp, &r, &e) == 0);
    CHECK(r.finish == FINISH_CONTEXT && r.n_gen == 12);
    CHECK(!strcmp(finish_name(r.finish), "length"));
    /* interrupted before anything ran */
    volatile sig_atomic_t stop = 1;
    gp.interrupt = &stop;
    REQUIRE(engine_generate(en, prompt, 5, &gp, &r, &e) == 0);
    CHECK(r.finish == FINISH_INTERRUPTED && r.n_gen == 0);
    gp.interrupt = NULL;
    /* a prompt longer than the context: an error naming both numbers, nothing run */
    int32_t longp[17] = {0};
    CHECK(engine_generate(en, longp, 17, &gp, &r, &e) == TOME_EINPUT);
    CHECKF(strstr(e.msg, "17 tokens") && strstr(e.msg, "context of 16"), "%s", e.msg);
    free(pl);
    engine_close(en);
    free(path);
}

/* ---- binding errors on hand-written files ------------------------------------------------ */

/* Writes a 1-layer llama (width 32, 2 heads, FF 64, vocab 40) with F32 weights; `bad` selects
 * one defect: 0 none, 1 attn_q has 16 rows, 2 token_embd is IQ4_NL, 3 arch gpt2, 4 no
 * ffn_down. */
static char *write_model(int bad) {
    static float buf[40 * 64];
    for (size_t i = 0; i < TOME_ARRAY_LEN(buf); i++) buf[i] = (float)((i * 7919) % 113) / 113.0f - 0.5f;
    static uint8_t iq[40 * 18];
    memset(iq, 1, sizeof iq);
    gguf_writer *w = gguf_w_new();
    const char *arch = bad == 3 ? "gpt2" : "llama";
    char k[64];
    gguf_w_str(w, "general.architecture", arch);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    gguf_w_u32(w, KEY("block_count"), 1);
    gguf_w_u32(w, KEY("embedding_length"), 32);
    gguf_w_u32(w, KEY("attention.head_count"), 2);
    gguf_w_u32(w, KEY("feed_forward_length"), 64);
    gguf_w_u32(w, KEY("context_length"), 128);
    gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
#undef KEY
    struct { const char *n; int64_t a, b; } t[] = {
        {"token_embd.weight", 32, 40}, {"output_norm.weight", 32, 1}, {"blk.0.attn_norm.weight", 32, 1},
        {"blk.0.attn_q.weight", 32, bad == 1 ? 16 : 32}, {"blk.0.attn_k.weight", 32, 32},
        {"blk.0.attn_v.weight", 32, 32}, {"blk.0.attn_output.weight", 32, 32}, {"blk.0.ffn_norm.weight", 32, 1},
        {"blk.0.ffn_gate.weight", 32, 64}, {"blk.0.ffn_up.weight", 32, 64}, {"blk.0.ffn_down.weight", 64, 32},
    };
    for (size_t i = 0; i < TOME_ARRAY_LEN(t); i++) {
        if (bad == 4 && strstr(t[i].n, "ffn_down")) continue;
        int64_t ne[2] = {t[i].a, t[i].b};
        if (bad == 2 && i == 0) gguf_w_tensor(w, t[i].n, GGML_TYPE_IQ4_NL, 2, ne, iq);
        else gguf_w_tensor(w, t[i].n, GGML_TYPE_F32, t[i].b == 1 ? 1 : 2, ne, buf);
    }
    char *p = malloc(600);
    snprintf(p, 600, "%s/bad%d.gguf", ttmpdir(), bad);
    terr e;
    int rc = gguf_w_save(w, p, &e);
    gguf_w_free(w);
    if (rc) { free(p); return NULL; }
    return p;
}

TEST(engine_model_binding_errors) {
    struct { int bad, code; const char *msg; } cases[] = {
        {0, 0, ""},
        {1, TOME_EINPUT, "'blk.0.attn_q.weight' has shape [32, 16], expected [32, 32]"},
        {2, TOME_EUNSUPPORTED, "'token_embd.weight' has unsupported type IQ4_NL"},
        {3, TOME_EUNSUPPORTED, "llama, qwen2, qwen3, phi3"},
        {4, TOME_EINPUT, "missing tensor 'blk.0.ffn_down.weight'"},
    };
    for (size_t i = 0; i < TOME_ARRAY_LEN(cases); i++) {
        char *p = write_model(cases[i].bad);
        REQUIRE(p);
        tome_model *m = NULL;
        terr e = {0};
        int rc = model_load(&m, p, &e);
        CHECKF(rc == cases[i].code, "case %d: rc %d, want %d (%s)", cases[i].bad, rc, cases[i].code, e.msg);
        CHECKF(strstr(e.msg, cases[i].msg) != NULL, "case %d: message '%s' lacks '%s'", cases[i].bad, e.msg, cases[i].msg);
        if (rc == 0) {
            /* the good file runs and produces finite logits */
            engine *en = NULL;
            engine_params ep = {.n_ctx = 8, .n_batch = 2, .n_threads = 1};
            REQUIREF(engine_from_model(&en, m, &ep, &e) == 0, "%s", e.msg);
            int32_t ids[3] = {1, 5, 39};
            REQUIRE(engine_eval(en, ids, 3, NULL, &e) == 0);
            int finite = 1;
            for (int v = 0; v < 40; v++) finite &= isfinite(en->logits[v]);
            CHECK(finite);
            engine_close(en);
        }
        free(p);
    }
}

/* The SIMD kernels the CPU picks and the scalar reference give the same logits up to the
 * order of float additions (simd.h), on a mix of Q4_K, Q6_K and Q8_0-activation types. */
TEST(engine_kernel_paths_agree) {
    char *path = small_model(T, "--arch llama --preset q4_k_m --n-embd 256 --n-head 4 --vocab 300 --seed 13");
    if (!path) SKIP("no mkgguf and no test data");
    engine_params ep = {.n_ctx = 16, .n_batch = 8, .n_threads = 0, .cpu_kernels = "scalar"};
    engine *ref = NULL, *best = NULL;
    terr e = {0};
    REQUIREF(engine_open(&ref, path, &ep, &e) == 0, "%s", e.msg);
    ep.cpu_kernels = NULL;
    REQUIREF(engine_open(&best, path, &ep, &e) == 0, "%s", e.msg);
    int32_t ids[9] = {1, 7, 99, 250, 3, 17, 42, 280, 5};
    REQUIRE(engine_eval(ref, ids, 9, NULL, &e) == 0 && engine_eval(best, ids, 9, NULL, &e) == 0);
    double worst = 0, mag = 1;
    for (int v = 0; v < ref->m->hp.n_vocab; v++) {
        double d = fabs((double)ref->logits[v] - best->logits[v]);
        if (!(d <= worst)) worst = d;
        if (fabs(ref->logits[v]) > mag) mag = fabs(ref->logits[v]);
    }
    CHECKF(worst / mag <= 1e-5, "scalar vs best kernels: %.3g relative", worst / mag);
    engine_close(ref);
    engine_close(best);
    free(path);
}

/* ---- the CPU backend's matmul group ---------------------------------------------------------- */

#include <string.h>

#include "backend.h"
#include "cpu/cpu.h"
#include "kvcache.h"

typedef struct { tome_weight w; void *buf; } test_weight;

static int make_weight(test_weight *t, uint32_t type, int64_t rows, int64_t cols, uint64_t seed) {
    float *f = malloc((size_t)(rows * cols) * sizeof *f);
    t->w = (tome_weight){"w", type, cols, rows, ggml_row_size(type, cols), NULL};
    t->buf = malloc((size_t)(rows * t->w.row_bytes));
    if (!f || !t->buf) { free(f); return 0; }
    trng r;
    trng_seed(&r, seed);
    for (int64_t i = 0; i < rows * cols; i++) f[i] = trng_normal(&r) * 0.05f + 0.01f;
    for (int64_t i = 0; i < rows; i++) tq_quantize(type, f + i * cols, (char *)t->buf + i * t->w.row_bytes, cols);
    t->w.data = t->buf;
    free(f);
    return 1;
}

/* matmul_group writes, bit for bit, what one matmul per weight writes: weights of 16-row
 * multiples and not, mixed K-quant types sharing Q8_K activations, a bias, batches of 1, 5
 * and 16 (the prefill kernels), 2 threads; and a group whose activation types differ (Q8_0
 * and Q4_K: run one by one). Every output element is compared. */
TEST(cpu_matmul_group_equals_matmuls) {
    tome_hparams hp = {0};
    const int C = 512, NB = 16;
    hp.n_layer = 1, hp.n_head = hp.n_head_kv = 1, hp.head_dim = hp.head_dim_v = 8;
    hp.n_embd = hp.n_ff = C; /* the widest activation: sizes the quantisation buffer */
    rope_table rt = {0};
    backend_config cfg = {&hp, &rt, 16, NB, 2, 0, NULL, KV_F16, 0, 0, 0, 0};
    tome_backend *be = NULL;
    terr e = {0};
    REQUIREF(cpu_backend_new(&be, &cfg, &e) == 0, "%s", e.msg);
    REQUIRE(be->ops->matmul_group != NULL);
    const uint32_t types[2][3] = {{GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K},
                                  {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q8_0}};
    const int64_t rows[3] = {96, 40, 17};
    float *x = be->ops->alloc(be, (size_t)NB * C), *bias = malloc(40 * sizeof *bias);
    REQUIRE(x && bias);
    trng r;
    trng_seed(&r, 5);
    for (int i = 0; i < NB * C; i++) x[i] = trng_normal(&r);
    for (int i = 0; i < 40; i++) bias[i] = trng_normal(&r);
    tome_weight bw = {"b", GGML_TYPE_F32, 40, 1, 40 * sizeof(float), bias};
    for (int set = 0; set < 2; set++) {
        test_weight tw[3];
        memset(tw, 0, sizeof tw);
        for (int i = 0; i < 3; i++) REQUIRE(make_weight(&tw[i], types[set][i], rows[i], C, 100 + 10 * set + i));
        const int ns[] = {1, 5, 16};
        for (int t = 0; t < 3; t++) {
            const int n = ns[t];
            float *yg[3], *ym[3];
            const tome_weight *ws[3] = {&tw[0].w, &tw[1].w, &tw[2].w}, *bs[3] = {NULL, &bw, NULL};
            for (int i = 0; i < 3; i++) {
                yg[i] = be->ops->alloc(be, (size_t)NB * rows[i]);
                ym[i] = be->ops->alloc(be, (size_t)NB * rows[i]);
                REQUIRE(yg[i] && ym[i]);
            }
            be->ops->matmul_group(be, 3, yg, ws, bs, x, n);
            for (int i = 0; i < 3; i++) be->ops->matmul(be, ym[i], ws[i], bs[i], x, n);
            for (int i = 0; i < 3; i++) {
                int bad = 0;
                double mag = 0;
                for (int64_t k = 0; k < n * rows[i]; k++) {
                    bad += memcmp(&yg[i][k], &ym[i][k], sizeof(float)) != 0;
                    mag = fmax(mag, fabs(ym[i][k]));
                }
                CHECKF(bad == 0 && mag > 0, "set %d n %d weight %d (%s): %d of %lld differ (max |y| %g)", set, n, i,
                       ggml_type_get(types[set][i])->name, bad, (long long)(n * rows[i]), mag);
            }
            for (int i = 0; i < 3; i++) be->ops->release(be, yg[i]), be->ops->release(be, ym[i]);
        }
        for (int i = 0; i < 3; i++) free(tw[i].buf);
    }
    be->ops->release(be, x);
    free(bias);
    be->ops->destroy(be);
}

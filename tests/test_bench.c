/* test_bench.c — lib/bench: the bandwidth probe, the weight bytes per decode token, and the
 * timed prefill/decode runs, on small synthetic models made by build/mkgguf.
 *
 * The weight-byte count is checked against the GGUF's own tensor table (every tensor's bytes,
 * with token_embd counted as the one row a token looks up), not against model.c's bindings.
 */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"

/* Makes a model with build/mkgguf in the test's tmpdir; NULL when that fails. */
static const char *bench_model(const char *name, const char *flags) {
    static char path[600];
    char cmd[1400];
    snprintf(path, sizeof path, "%s/%s.gguf", ttmpdir(), name);
    snprintf(cmd, sizeof cmd, "build/mkgguf -o '%s' -t 1 %s >/dev/null 2>&1", path, flags);
    return system(cmd) == 0 ? path : NULL;
}

TEST(bench_read_bandwidth_measures_and_checks_args) {
    terr e = {0};
    double bps = -1;
    REQUIRE(bench_read_bandwidth((size_t)16 << 20, 2, 2, &bps, &e) == 0);
    /* any real machine reads 16 MiB faster than 100 MB/s and slower than 10 TB/s */
    CHECK(bps > 1e8 && bps < 1e13);
    CHECK(bench_read_bandwidth(1000, 1, 1, &bps, &e) == TOME_EFLAGS);
    CHECK(bench_read_bandwidth((size_t)16 << 20, 0, 1, &bps, &e) == TOME_EFLAGS);
    CHECK(bench_read_bandwidth((size_t)16 << 20, 1, 0, &bps, &e) == TOME_EFLAGS);
}

TEST(bench_weight_bytes_match_the_tensor_table) {
    if (access("build/mkgguf", X_OK) != 0) SKIP("build/mkgguf not built (run ./build.sh)");
    const char *variants[][2] = {
        {"untied_q8", "--n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 96 --vocab 300 --type q8_0"},
        {"tied_f16", "--n-embd 64 --n-layer 3 --n-ff 128 --vocab 260 --tied"},
        {"qwen2_mix", "--arch qwen2 --n-embd 64 --n-layer 2 --n-head 4 --n-head-kv 2 --vocab 300 --preset q4_k_m"},
    };
    for (size_t v = 0; v < TOME_ARRAY_LEN(variants); v++) {
        const char *p = bench_model(variants[v][0], variants[v][1]);
        REQUIREF(p, "mkgguf %s failed", variants[v][1]);
        terr e = {0};
        tome_model *m = NULL;
        REQUIREF(model_load(&m, p, &e) == 0, "%s", e.msg);
        uint64_t want = 0, embd = 0, embd_row = 0;
        int tied = 1;
        for (uint64_t i = 0; i < m->g->n_tensors; i++) {
            const gguf_tensor *t = &m->g->tensors[i];
            if (!strcmp(t->name, "token_embd.weight")) {
                embd = t->nbytes;
                embd_row = t->nbytes / (uint64_t)t->ne[1];
            } else {
                want += t->nbytes;
            }
            if (!strcmp(t->name, "output.weight")) tied = 0;
        }
        want += embd_row + (tied ? embd : 0);
        CHECKF(bench_weight_bytes(m) == want, "%s: %llu vs %llu", variants[v][0],
               (unsigned long long)bench_weight_bytes(m), (unsigned long long)want);
        model_free(m);
    }
}

TEST(bench_run_times_prefill_and_decode) {
    if (access("build/mkgguf", X_OK) != 0) SKIP("build/mkgguf not built (run ./build.sh)");
    const char *p = bench_model("run", "--n-embd 64 --n-layer 2 --vocab 300 --type q8_0 --seed 7");
    REQUIRE(p);
    terr e = {0};
    engine *en = NULL;
    engine_params ep = {32, 8, 2, 0, NULL};
    REQUIREF(engine_open(&en, p, &ep, &e) == 0, "%s", e.msg);
    bench_result r;
    REQUIREF(bench_run(en, 20, 6, 0, 2, &r, &e) == 0, "%s", e.msg);
    CHECK(r.pp_best_s > 0 && r.pp_best_s <= r.pp_mean_s);
    CHECK(r.tg_best_s > 0 && r.tg_best_s <= r.tg_mean_s);
    /* the mean of the repetitions' rates lies between the rate of the mean time (AM >= HM)
     * and the best rate */
    CHECK(r.pp_rate_mean >= 20 / r.pp_mean_s * (1 - 1e-9) && r.pp_rate_mean <= 20 / r.pp_best_s * (1 + 1e-9));
    CHECK(r.tg_rate_mean >= 6 / r.tg_mean_s * (1 - 1e-9) && r.tg_rate_mean <= 6 / r.tg_best_s * (1 + 1e-9));
    CHECK(r.n_prompt == 20 && r.n_gen == 6 && r.reps == 2);
    /* the context holds max(prompt, gen) positions: both tests start from an empty cache */
    CHECK(bench_run(en, 32, 32, 0, 1, &r, &e) == 0);
    CHECK(bench_run(en, 33, 0, 0, 1, &r, &e) == TOME_EINPUT);
    CHECK(bench_run(en, 4, 4, 0, 0, &r, &e) == TOME_EFLAGS);
    /* with a depth the context must hold depth + the longer test; each repetition refills it */
    CHECK(bench_run(en, 20, 6, 12, 2, &r, &e) == 0 && r.depth == 12 && r.tg_best_s > 0 && r.pp_best_s > 0);
    CHECK(bench_run(en, 20, 6, 13, 1, &r, &e) == TOME_EINPUT);
    CHECK(bench_run(en, 0, 6, 26, 1, &r, &e) == 0);
    CHECK(bench_run(en, 4, 4, -1, 1, &r, &e) == TOME_EFLAGS);
    engine_close(en);
}

/* test_rope.c — RoPE tables for every scaling method against closed-form float64 formulas
 * written out here (independently of rope.c's code paths), and rotations at positions up to
 * 1e7 against a long-double reference. */
#include "test.h"

#include <string.h>

#include "rope.h"
#include "util.h"

#define PI_L 3.141592653589793238462643383279502884L

/* |got - want| <= rel * |want| for every pair. */
static int table_close(tctx *T, const rope_table *t, const double *want, int n, double rel,
                       const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!(fabs(t->freq[i] - want[i]) <= rel * fabs(want[i]))) {
            if (bad++ < 4)
                tt_fail(T, __FILE__, __LINE__, "%s: freq[%d] = %.17g, want %.17g", what, i,
                        t->freq[i], want[i]);
        }
    }
    return bad == 0;
}

static double plain_freq(double base, int i, int d) { return exp(-(2.0 * i / d) * log(base)); }

TEST(rope_none_linear_ntk) {
    rope_config c;
    rope_table t;
    double want[64];
    rope_config_init(&c, 128, 10000.0);
    REQUIRE(rope_table_build(&t, &c, 4096, NULL) == 0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(10000.0, i, 128);
    table_close(T, &t, want, 64, 1e-14, "none");
    CHECK(t.mscale == 1.0f);
    CHECK(t.freq[0] == 1.0);

    c.method = ROPE_SCALING_LINEAR;
    c.factor = 4.0;
    REQUIRE(rope_table_build(&t, &c, 4096, NULL) == 0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(10000.0, i, 128) / 4.0;
    table_close(T, &t, want, 64, 1e-14, "linear");

    /* NTK-aware: base' = base * s^(d/(d-2)) */
    c.method = ROPE_SCALING_NTK;
    REQUIRE(rope_table_build(&t, &c, 4096, NULL) == 0);
    double nb = 10000.0 * pow(4.0, 128.0 / 126.0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(nb, i, 128);
    table_close(T, &t, want, 64, 1e-13, "ntk");
    CHECK(t.freq[0] == 1.0); /* the highest frequency never moves */
    CHECK(t.freq[63] < plain_freq(10000.0, 63, 128) / 3.0); /* the lowest is stretched ~s */
}

TEST(rope_dynamic_ntk_grows) {
    rope_config c;
    rope_table t;
    double want[64];
    rope_config_init(&c, 128, 10000.0);
    c.method = ROPE_SCALING_DYNAMIC;
    c.factor = 2.0;
    c.orig_ctx = 4096;
    /* up to the original context nothing changes */
    REQUIRE(rope_table_build(&t, &c, 4096, NULL) == 0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(10000.0, i, 128);
    table_close(T, &t, want, 64, 1e-14, "dynamic at orig");
    /* base' = base * (s*L/orig - (s-1))^(d/(d-2)); at L = 2*orig with s = 2: 3^(128/126) */
    REQUIRE(rope_table_build(&t, &c, 8192, NULL) == 0);
    double nb = 10000.0 * pow(3.0, 128.0 / 126.0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(nb, i, 128);
    table_close(T, &t, want, 64, 1e-13, "dynamic at 2x");
    /* strictly growing base: every non-zero pair's frequency falls as the length grows */
    double prev = t.freq[40];
    for (int64_t L = 16384; L <= 1 << 20; L *= 4) {
        REQUIRE(rope_table_build(&t, &c, L, NULL) == 0);
        CHECKF(t.freq[40] < prev, "L=%lld freq %.9g !< %.9g", (long long)L, t.freq[40], prev);
        prev = t.freq[40];
        CHECK(t.freq[0] == 1.0);
    }
}

TEST(rope_yarn_table_and_mscale) {
    rope_config c;
    rope_table t;
    double want[64];
    rope_config_init(&c, 128, 10000.0);
    c.method = ROPE_SCALING_YARN;
    c.factor = 8.0;
    c.orig_ctx = 4096;
    REQUIRE(rope_table_build(&t, &c, 32768, NULL) == 0);
    /* correction dims d*ln(orig/(2*pi*beta))/(2 ln base): beta 32 -> 20.9 -> floor 20;
     * beta 1 -> 45.03 -> ceil 46 (worked by hand, checked against the formula below) */
    double lo = floor(128.0 * log(4096.0 / (32.0 * 2.0 * M_PI)) / (2.0 * log(10000.0)));
    double hi = ceil(128.0 * log(4096.0 / (1.0 * 2.0 * M_PI)) / (2.0 * log(10000.0)));
    CHECK(lo == 20.0 && hi == 46.0);
    for (int i = 0; i < 64; i++) {
        double f = plain_freq(10000.0, i, 128);
        double ramp = i <= lo ? 1.0 : i >= hi ? 0.0 : 1.0 - (i - lo) / (hi - lo);
        want[i] = ramp * f + (1.0 - ramp) * f / 8.0;
    }
    table_close(T, &t, want, 64, 1e-13, "yarn");
    CHECK_NEAR(t.freq[5] / plain_freq(10000.0, 5, 128), 1.0, 1e-14); /* below lo: unscaled */
    CHECK_NEAR(t.freq[63] * 8.0, plain_freq(10000.0, 63, 128), 1e-18);
    /* mscale = 0.1 ln s + 1 times the configured attn_factor */
    CHECK_NEAR(t.mscale, 1.0 + 0.1 * log(8.0), 1e-6);
    c.attn_factor = 0.5;
    REQUIRE(rope_table_build(&t, &c, 32768, NULL) == 0);
    CHECK_NEAR(t.mscale, 0.5 * (1.0 + 0.1 * log(8.0)), 1e-6);
    /* ext_factor 0 turns YaRN into plain linear interpolation with no magnitude change */
    c.attn_factor = 1.0;
    c.ext_factor = 0.0;
    REQUIRE(rope_table_build(&t, &c, 32768, NULL) == 0);
    for (int i = 0; i < 64; i++) want[i] = plain_freq(10000.0, i, 128) / 8.0;
    table_close(T, &t, want, 64, 1e-13, "yarn ext 0");
    CHECK(t.mscale == 1.0f);
}

/* A Phi-3-style LongRoPE setup: d = 96, orig 4096, extended to 131072 (s = 32); factors grow
 * from ~1 at high frequency to large values at low frequency, long > short. */
TEST(rope_longrope_switch_and_attn) {
    float lf[48], sf[48];
    for (int i = 0; i < 48; i++) {
        sf[i] = 1.0f + 0.02f * i * (i > 20);            /* short: mild, 1 .. 1.94 */
        lf[i] = 1.0f + (float)pow(i / 47.0, 3.0) * 63.0f; /* long: 1 .. 64 */
    }
    rope_config c;
    rope_table t;
    double want[48];
    rope_config_init(&c, 96, 10000.0);
    c.method = ROPE_SCALING_LONGROPE;
    c.neox = 1;
    c.orig_ctx = 4096;
    c.ctx_train = 131072;
    c.factors_long = lf;
    c.factors_short = sf;
    double ms = sqrt(1.0 + log(32.0) / log(4096.0)); /* 1.19023807... */
    CHECK_NEAR(ms, 1.1902380714238083, 1e-12);

    REQUIRE(rope_table_build(&t, &c, 4096, NULL) == 0);
    for (int i = 0; i < 48; i++) want[i] = plain_freq(10000.0, i, 96) / sf[i];
    table_close(T, &t, want, 48, 1e-14, "longrope short");
    CHECK_NEAR(t.mscale, ms, 1e-6);

    REQUIRE(rope_table_build(&t, &c, 4097, NULL) == 0);
    for (int i = 0; i < 48; i++) want[i] = plain_freq(10000.0, i, 96) / lf[i];
    table_close(T, &t, want, 48, 1e-14, "longrope long");
    CHECK_NEAR(t.mscale, ms, 1e-6);

    /* a GGUF attn_factor overrides the derived one */
    c.attn_factor = 1.25;
    REQUIRE(rope_table_build(&t, &c, 4097, NULL) == 0);
    CHECK_NEAR(t.mscale, 1.25, 1e-7);
    /* missing factors are an input error, not a crash */
    c.factors_long = NULL;
    terr e = {0};
    CHECK(rope_table_build(&t, &c, 100000, &e) == TOME_EINPUT);
    CHECK(strstr(e.msg, "rope_factors_long") != NULL);
}

/* Llama 3.1: factor 8, low 1, high 4, original 8192, base 500000, d = 128 (HF's
 * _compute_llama3_parameters, written out). Wavelength 2*pi/f < 8192/4 keeps f; > 8192/1
 * divides by 8; between, f' = (1 - sm) f / 8 + sm f with sm = (8192/wl - 1) / (4 - 1). */
TEST(rope_llama3_constants) {
    rope_config c;
    rope_table t;
    double want[64];
    float ff[64];
    int n_keep = 0, n_div = 0, n_mid = 0;
    for (int i = 0; i < 64; i++) {
        double f = plain_freq(500000.0, i, 128), wl = 2.0 * M_PI / f;
        if (wl < 2048.0) { want[i] = f; n_keep++; }
        else if (wl > 8192.0) { want[i] = f / 8.0; n_div++; }
        else {
            double sm = (8192.0 / wl - 1.0) / 3.0;
            want[i] = (1.0 - sm) * f / 8.0 + sm * f;
            n_mid++;
        }
        ff[i] = (float)(f / want[i]); /* what a GGUF rope_freqs.weight holds */
    }
    /* by hand: wl < 2048 <=> i < 64*ln(2048/2pi)/ln(5e5) = 28.2; wl > 8192 <=> i > 34.98 */
    CHECK(n_keep == 29 && n_mid == 6 && n_div == 29);

    rope_config_init(&c, 128, 500000.0);
    c.method = ROPE_SCALING_LLAMA3;
    c.factor = 8.0;
    c.orig_ctx = 8192;
    REQUIRE(rope_table_build(&t, &c, 131072, NULL) == 0);
    table_close(T, &t, want, 64, 1e-13, "llama3 computed");
    CHECK(t.mscale == 1.0f);

    /* the same table from a rope_freqs tensor (float32 factors: ~6e-8 relative) */
    c.freq_factors = ff;
    REQUIRE(rope_table_build(&t, &c, 131072, NULL) == 0);
    table_close(T, &t, want, 64, 1e-7, "llama3 rope_freqs");
}

/* Rotation of x at pos against long double: angle = pos * f formed in long double, reduced
 * mod 2*pi by sinl/cosl. Bound per pair: |err| <= 1e-5 * |pair|. */
static void check_rotation(tctx *T, const rope_table *t, int64_t pos, int neox, int head_dim,
                           int n_heads, double rel) {
    float x[4 * 256];
    trng r;
    trng_seed(&r, 1234 + (uint64_t)pos);
    for (int k = 0; k < n_heads * head_dim; k++) x[k] = trng_normal(&r);
    float y[4 * 256];
    memcpy(y, x, sizeof(float) * n_heads * head_dim);
    rope_apply(t, y, n_heads, head_dim, pos, neox);
    int half = t->dim / 2, bad = 0;
    for (int h = 0; h < n_heads; h++) {
        const float *xh = x + h * head_dim, *yh = y + h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            long double ang = (long double)pos * (long double)t->freq[i];
            long double c = cosl(ang) * t->mscale, s = sinl(ang) * t->mscale;
            long double ra = xh[a] * c - xh[b] * s, rb = xh[a] * s + xh[b] * c;
            double mag = hypot(xh[a], xh[b]) * t->mscale;
            double err = fmax(fabs((double)(yh[a] - ra)), fabs((double)(yh[b] - rb)));
            if (!(err <= rel * mag) && bad++ < 4)
                tt_fail(T, __FILE__, __LINE__, "pos %lld neox %d head %d pair %d: err %.3g > %.3g",
                        (long long)pos, neox, h, i, err, rel * mag);
        }
        for (int k = t->dim; k < head_dim; k++) CHECK(yh[k] == xh[k]); /* pass-through dims */
    }
}

TEST(rope_apply_far_positions) {
    rope_config c;
    rope_table t;
    rope_config_init(&c, 128, 500000.0);
    REQUIRE(rope_table_build(&t, &c, 0, NULL) == 0);
    int64_t pos[] = {0, 1, 1000000, 10000000};
    for (size_t k = 0; k < TOME_ARRAY_LEN(pos); k++)
        for (int neox = 0; neox < 2; neox++) check_rotation(T, &t, pos[k], neox, 128, 4, 1e-5);
    /* with a magnitude factor (YaRN) and partial rotation (dim 64 of head 96) */
    rope_config_init(&c, 64, 10000.0);
    c.method = ROPE_SCALING_YARN;
    c.factor = 16.0;
    c.orig_ctx = 8192;
    REQUIRE(rope_table_build(&t, &c, 131072, NULL) == 0);
    for (size_t k = 0; k < TOME_ARRAY_LEN(pos); k++)
        for (int neox = 0; neox < 2; neox++) check_rotation(T, &t, pos[k], neox, 96, 3, 1e-5);

    /* The test can fail: the naive float32 angle (float)pos * (float)freq is off by far more
     * than the bound at 1e7 for the highest frequencies. */
    rope_config_init(&c, 128, 500000.0);
    REQUIRE(rope_table_build(&t, &c, 0, NULL) == 0);
    double worst = 0;
    for (int i = 0; i < 8; i++) {
        float a = (float)10000001 * (float)t.freq[i];
        long double ref = 10000001.0L * (long double)t.freq[i];
        worst = fmax(worst, fabs((double)(cosf(a) - cosl(ref))));
    }
    CHECKF(worst > 1e-3, "float32 angles unexpectedly accurate (%.3g)", worst);
}

TEST(rope_apply_cs_matches_rope_apply) {
    rope_config c;
    rope_table t;
    rope_config_init(&c, 128, 10000.0);
    REQUIRE(rope_table_build(&t, &c, 0, NULL) == 0);
    float a[2 * 128], b[2 * 128], cs[128];
    trng r;
    trng_seed(&r, 7);
    for (int k = 0; k < 256; k++) a[k] = b[k] = trng_normal(&r);
    rope_apply(&t, a, 2, 128, 777, 1);
    rope_cos_sin(&t, 777, cs);
    rope_apply_cs(cs, t.dim, b, 2, 128, 1);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* a rotation preserves the norm of each pair */
    for (int i = 0; i < 64; i++)
        CHECK_NEAR(cs[2 * i] * cs[2 * i] + cs[2 * i + 1] * cs[2 * i + 1], 1.0, 1e-6);
}

TEST(rope_bad_config) {
    rope_config c;
    rope_table t;
    terr e = {0};
    rope_config_init(&c, 127, 10000.0);
    CHECK(rope_table_build(&t, &c, 0, &e) == TOME_EINPUT);
    rope_config_init(&c, 2 * ROPE_MAX_DIM, 10000.0);
    CHECK(rope_table_build(&t, &c, 0, &e) == TOME_EINPUT);
    rope_config_init(&c, 64, 1.0);
    CHECK(rope_table_build(&t, &c, 0, &e) == TOME_EINPUT);
    rope_config_init(&c, 64, 10000.0);
    c.method = ROPE_SCALING_YARN;
    c.factor = 4;
    CHECK(rope_table_build(&t, &c, 0, &e) == TOME_EINPUT); /* no orig_ctx */
    CHECK(strstr(e.msg, "yarn") != NULL || strstr(e.msg, "original") != NULL);
}

TEST(rope_config_from_hparams_fields) {
    tome_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.rope_dim = 96;
    hp.rope_base = 10000.0f;
    hp.rope_neox = 1;
    hp.rope_scaling = ROPE_SCALING_LONGROPE;
    hp.rope_factor = 1.0f;
    hp.rope_orig_ctx = 4096;
    hp.n_ctx_train = 131072;
    hp.rope_attn_factor = 1.0f;
    hp.yarn_attn_factor = 1.0f;
    hp.yarn_ext_factor = -1.0f;
    hp.yarn_beta_fast = 32.0f;
    hp.yarn_beta_slow = 1.0f;
    float lf[48], sf[48];
    for (int i = 0; i < 48; i++) lf[i] = sf[i] = 1.0f + i;
    rope_config c;
    rope_config_from_hparams(&c, &hp, NULL, lf, sf);
    CHECK(c.dim == 96 && c.neox == 1 && c.orig_ctx == 4096 && c.ctx_train == 131072);
    CHECK(c.factors_long == lf && c.factors_short == sf && c.freq_factors == NULL);
    rope_table t;
    REQUIRE(rope_table_build(&t, &c, 131072, NULL) == 0);
    CHECK_NEAR(t.mscale, sqrt(1.0 + log(32.0) / log(4096.0)), 1e-6);
    CHECK_NEAR(t.freq[3], plain_freq(10000.0, 3, 96) / 4.0, 1e-15);
}

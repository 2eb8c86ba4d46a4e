/* test_sampler.c — greedy, determinism, top-k / top-p / min-p sets, empirical frequencies
 * against the softmax of the kept set, and the repetition penalty.
 *
 * Every random draw is seeded, so the statistical tests give the same answer on every run; their
 * thresholds sit far in the tail (chi-square p < 1e-4 for a correct sampler), so a correct
 * sampler does not sit near the edge for some other seed either.
 */
#include "test.h"

#include "sampler.h"

static sampler_params plain_params(float temp, uint64_t seed) {
    sampler_params p = sampler_defaults();
    p.temp = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

/* Draws `draws` tokens and counts them per id (counts[n] zeroed by the caller). */
static void tally(sampler *s, const float *logits, int n, int draws, int *counts) {
    for (int d = 0; d < draws; d++) {
        int32_t id = sampler_sample(s, logits);
        if (id >= 0 && id < n) counts[id]++;
        else counts[n]++; /* out of range: the tests check counts[n] == 0 */
    }
}

/* Pearson chi-square of counts against probabilities p (cells with p == 0 must be empty). */
static double chi_square(const int *counts, const double *p, int n, int draws, int *bad_zero) {
    double x2 = 0.0;
    *bad_zero = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0.0) {
            if (counts[i]) *bad_zero = 1;
            continue;
        }
        double e = p[i] * draws;
        x2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    return x2;
}

TEST(sampler_defaults_and_check) {
    sampler_params p = sampler_defaults();
    CHECK_NEAR(p.temp, 0.8, 1e-7);
    CHECK(p.top_k == 40);
    CHECK_NEAR(p.top_p, 0.95, 1e-7);
    CHECK_NEAR(p.min_p, 0.05, 1e-7);
    CHECK_NEAR(p.rep_penalty, 1.0, 0);
    CHECK(p.rep_last_n == 64);
    terr e = {0};
    CHECK(sampler_params_check(&p, &e) == 0);
    p.top_p = 1.01f;
    CHECK(sampler_params_check(&p, &e) == TOME_EFLAGS && strstr(e.msg, "top-p"));
    p.top_p = 0.0f; /* keeps the best token only */
    CHECK(sampler_params_check(&p, &e) == 0);
    p = sampler_defaults();
    p.min_p = 1.5f;
    CHECK(sampler_params_check(&p, &e) == TOME_EFLAGS && strstr(e.msg, "min-p"));
    p = sampler_defaults();
    p.rep_penalty = 0.0f;
    CHECK(sampler_params_check(&p, &e) == TOME_EFLAGS);
    p = sampler_defaults();
    p.temp = NAN;
    CHECK(sampler_params_check(&p, &e) == TOME_EFLAGS);
    p = sampler_defaults();
    p.temp = -1.0f; /* greedy */
    CHECK(sampler_params_check(&p, &e) == 0);
    CHECK(sampler_new(&p, 0) == NULL);
}

TEST(sampler_greedy) {
    enum { N = 1000 };
    float l[N];
    trng r;
    trng_seed(&r, 7);
    for (int i = 0; i < N; i++) l[i] = trng_normal(&r) * 3.0f;
    l[613] = 20.0f;
    sampler_params p = plain_params(0.0f, 1);
    sampler *s = sampler_new(&p, N);
    REQUIRE(s);
    CHECK(sampler_sample(s, l) == 613);
    l[200] = 20.0f; /* a tie: the lower id wins */
    CHECK(sampler_sample(s, l) == 200);
    l[100] = NAN; /* NaN is never the argmax */
    l[50] = INFINITY;
    CHECK(sampler_sample(s, l) == 50);
    sampler_free(s);
    /* Negative temperature is greedy too. */
    p.temp = -0.5f;
    s = sampler_new(&p, N);
    REQUIRE(s);
    CHECK(sampler_sample(s, l) == 50);
    sampler_free(s);
}

/* Same seed: same sequence; another seed: another sequence; reset replays the first. */
TEST(sampler_deterministic) {
    enum { N = 5000, DRAWS = 200 };
    float *l = malloc(N * sizeof *l);
    REQUIRE(l);
    trng r;
    trng_seed(&r, 11);
    for (int i = 0; i < N; i++) l[i] = trng_normal(&r);
    sampler_params p = sampler_defaults();
    p.temp = 1.5f;
    p.top_k = 200;
    p.min_p = 0.0f;
    p.seed = 1234;
    int32_t a[DRAWS], b[DRAWS], c[DRAWS], d[DRAWS];
    sampler *s1 = sampler_new(&p, N), *s2 = sampler_new(&p, N);
    p.seed = 1235;
    sampler *s3 = sampler_new(&p, N);
    REQUIRE(s1 && s2 && s3);
    for (int i = 0; i < DRAWS; i++) {
        a[i] = sampler_sample(s1, l);
        b[i] = sampler_sample(s2, l);
        c[i] = sampler_sample(s3, l);
    }
    sampler_reset(s1);
    for (int i = 0; i < DRAWS; i++) d[i] = sampler_sample(s1, l);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, d, sizeof a) == 0);
    int same = 0, distinct = 0;
    for (int i = 0; i < DRAWS; i++) {
        same += a[i] == c[i];
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= a[j] == a[i];
        distinct += !seen;
    }
    CHECKF(same < DRAWS / 4, "%d of %d draws equal across seeds", same, DRAWS);
    CHECKF(distinct > 20, "only %d distinct tokens in %d draws", distinct, DRAWS);
    sampler_free(s1);
    sampler_free(s2);
    sampler_free(s3);
    free(l);
}

TEST(sampler_top_k1_is_greedy) {
    enum { N = 3000 };
    float *l = malloc(N * sizeof *l);
    REQUIRE(l);
    trng r;
    trng_seed(&r, 5);
    sampler_params p = sampler_defaults();
    p.temp = 2.0f;
    p.top_k = 1;
    p.seed = 9;
    sampler *s = sampler_new(&p, N);
    sampler_params g = plain_params(0.0f, 0);
    sampler *sg = sampler_new(&g, N);
    REQUIRE(s && sg);
    for (int row = 0; row < 50; row++) {
        for (int i = 0; i < N; i++) l[i] = trng_normal(&r);
        if (row % 5 == 0) l[N - 1] = l[row] = 10.0f; /* ties resolve to the lower id */
        int32_t want = sampler_sample(sg, l);
        CHECKF(sampler_sample(s, l) == want, "row %d", row);
    }
    sampler_free(s);
    sampler_free(sg);
    free(l);
}

/* top-k + temperature: frequencies follow softmax(l / T) over the k best, nothing else drawn.
 * Also runs the full-vocabulary path (top-k off) against softmax over all tokens. */
TEST(sampler_frequencies_chi_square) {
    enum { N = 12, DRAWS = 40000 };
    const float l[N] = {1.0f, -0.5f, 2.0f, 0.3f, 1.7f, -2.0f, 0.9f, 1.2f, -1.0f, 0.0f, 1.9f, 0.5f};
    struct { int top_k; float temp; uint64_t seed; } cases[] = {{6, 0.7f, 42}, {0, 1.3f, 43}};
    for (size_t c = 0; c < TOME_ARRAY_LEN(cases); c++) {
        sampler_params p = plain_params(cases[c].temp, cases[c].seed);
        p.top_k = cases[c].top_k;
        sampler *s = sampler_new(&p, N);
        REQUIRE(s);
        /* Expected: rank by logit, keep the k best, softmax at temperature T. */
        double prob[N], z = 0.0;
        int kept = 0;
        for (int i = 0; i < N; i++) {
            int rank = 0;
            for (int j = 0; j < N; j++) rank += l[j] > l[i];
            int in = p.top_k <= 0 || rank < p.top_k;
            prob[i] = in ? exp(l[i] / p.temp) : 0.0;
            z += prob[i];
            kept += in;
        }
        for (int i = 0; i < N; i++) prob[i] /= z;
        int counts[N + 1] = {0};
        tally(s, l, N, DRAWS, counts);
        int bad_zero;
        double x2 = chi_square(counts, prob, N, DRAWS, &bad_zero);
        /* dof = kept - 1 (5 or 11); 1e-4 tail: 25.7 (5 dof), 35.7 (11 dof). */
        double limit = kept == 6 ? 25.7 : 35.7;
        CHECKF(x2 < limit, "case %zu: chi-square %.2f >= %.1f", c, x2, limit);
        CHECK(!bad_zero);
        CHECK(counts[N] == 0);
        /* Sanity that the statistic can fail: against uniform over the kept set it must. */
        double uni[N];
        for (int i = 0; i < N; i++) uni[i] = prob[i] > 0 ? 1.0 / kept : 0.0;
        CHECK(chi_square(counts, uni, N, DRAWS, &bad_zero) > 10 * limit);
        sampler_free(s);
    }
}

/* Probabilities p (temperature 1: logits = log p) and which prefix each top_p keeps. */
TEST(sampler_top_p_prefix) {
    enum { N = 6, DRAWS = 4000 };
    const double pr[N] = {0.05, 0.35, 0.25, 0.2, 0.1, 0.05}; /* sorted: 1, 2, 3, 4, 0|5 */
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)log(pr[i]);
    struct { float top_p; int kept_mask; } cases[] = {
        {0.0f, 1 << 1},                                    /* at least one token */
        {0.20f, 1 << 1},                                   /* 0.35 >= 0.20 */
        {0.34f, 1 << 1},
        {0.36f, 1 << 1 | 1 << 2},                          /* 0.35 falls just short */
        {0.50f, 1 << 1 | 1 << 2},                          /* 0.60 */
        {0.75f, 1 << 1 | 1 << 2 | 1 << 3},                 /* 0.80 */
        {0.85f, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4},        /* 0.90 */
        {0.97f, 0x3f},                                     /* needs both 0.05 tokens */
    };
    for (size_t c = 0; c < TOME_ARRAY_LEN(cases); c++) {
        sampler_params p = plain_params(1.0f, 100 + c);
        p.top_p = cases[c].top_p;
        sampler *s = sampler_new(&p, N);
        REQUIRE(s);
        int counts[N + 1] = {0};
        tally(s, l, N, DRAWS, counts);
        int mask = 0;
        for (int i = 0; i < N; i++) mask |= (counts[i] > 0) << i;
        CHECKF(mask == cases[c].kept_mask, "top_p %.2f: drew mask 0x%x, want 0x%x",
               (double)cases[c].top_p, mask, cases[c].kept_mask);
        CHECK(counts[N] == 0);
        sampler_free(s);
    }
}

TEST(sampler_min_p) {
    enum { N = 5, DRAWS = 4000 };
    const double pr[N] = {0.08, 0.5, 0.3, 0.11, 0.01};
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)log(pr[i]);
    /* min_p 0.2: cut at 0.1 keeps 0.5, 0.3, 0.11; drops 0.08 and 0.01. Through both the top-k
     * path and the pruned full-vocabulary path. */
    for (int topk = 0; topk <= 4; topk += 4) {
        sampler_params p = plain_params(1.0f, 77 + topk);
        p.min_p = 0.2f;
        p.top_k = topk;
        sampler *s = sampler_new(&p, N);
        REQUIRE(s);
        int counts[N + 1] = {0};
        tally(s, l, N, DRAWS, counts);
        CHECKF(counts[0] == 0 && counts[4] == 0 && counts[N] == 0, "top_k %d: %d %d", topk,
               counts[0], counts[4]);
        CHECKF(counts[1] > 0 && counts[2] > 0 && counts[3] > 0, "top_k %d", topk);
        /* Kept tokens in proportion 0.5 : 0.3 : 0.11 (renormalised). */
        double pk[N] = {0, 0.5 / 0.91, 0.3 / 0.91, 0.11 / 0.91, 0};
        int bad_zero;
        CHECK(chi_square(counts, pk, N, DRAWS, &bad_zero) < 18.4); /* 2 dof, 1e-4 tail */
        sampler_free(s);
    }
    /* min_p with temperature: p_i / p_max = exp((l_i - l_max) / T) at T = 2 is sqrt of the
     * T = 1 ratio: 0.08/0.5 = 0.16 -> 0.4 survives a 0.3 cut, 0.01/0.5 -> 0.141 does not. */
    sampler_params p = plain_params(2.0f, 5);
    p.min_p = 0.3f;
    sampler *s = sampler_new(&p, N);
    REQUIRE(s);
    int counts[N + 1] = {0};
    tally(s, l, N, DRAWS, counts);
    CHECK(counts[0] > 0 && counts[4] == 0);
    sampler_free(s);
}

TEST(sampler_repetition_penalty) {
    enum { N = 4 };
    const float l[N] = {2.0f, 1.9f, -1.0f, -1.2f};
    const float lcopy[N] = {2.0f, 1.9f, -1.0f, -1.2f};
    sampler_params p = plain_params(0.0f, 3);
    p.rep_penalty = 1.5f;
    p.rep_last_n = 4;
    sampler *s = sampler_new(&p, N);
    REQUIRE(s);
    CHECK(sampler_sample(s, l) == 0);
    sampler_accept(s, 0);
    sampler_accept(s, 0); /* counted once: 2 / 1.5 = 1.33 either way */
    CHECK(sampler_sample(s, l) == 1);
    CHECK(memcmp(l, lcopy, sizeof l) == 0); /* the caller's logits are untouched */
    /* Four newer tokens push token 0 out of the last-4 window. */
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    sampler_accept(s, 3);
    sampler_accept(s, 1);
    CHECK(sampler_sample(s, l) == 0);
    sampler_free(s);

    /* Negative logits get more negative: of the two negative ones, -1.0 * 1.5 < -1.2. */
    const float neg[N] = {-3.0f, -5.0f, -1.0f, -1.2f};
    s = sampler_new(&p, N);
    REQUIRE(s);
    CHECK(sampler_sample(s, neg) == 2);
    sampler_accept(s, 2);
    CHECK(sampler_sample(s, neg) == 3);
    sampler_free(s);

    /* Sampling: the repeated token's frequency drops to its penalised softmax share. */
    const float two[2] = {1.0f, 1.0f};
    p = plain_params(1.0f, 8);
    p.rep_penalty = 2.0f;
    s = sampler_new(&p, 2);
    REQUIRE(s);
    sampler_accept(s, 0);
    int counts[3] = {0};
    tally(s, two, 2, 20000, counts);
    double p0 = exp(0.5) / (exp(0.5) + exp(1.0)); /* 0.3775 */
    CHECK_NEAR(counts[0] / 20000.0, p0, 0.015);    /* sd 0.0034: > 4 sigma */
    sampler_free(s);
    /* Off (1.0) leaves it at one half. */
    p.rep_penalty = 1.0f;
    s = sampler_new(&p, 2);
    REQUIRE(s);
    sampler_accept(s, 0);
    memset(counts, 0, sizeof counts);
    tally(s, two, 2, 20000, counts);
    CHECK_NEAR(counts[0] / 20000.0, 0.5, 0.015);
    sampler_free(s);
}

/* Default chain on a Qwen-sized vocabulary: valid ids, NaN / -inf rows handled. */
TEST(sampler_large_vocab) {
    enum { N = 151936 };
    float *l = malloc((size_t)N * sizeof *l);
    REQUIRE(l);
    trng r;
    trng_seed(&r, 99);
    for (int i = 0; i < N; i++) l[i] = trng_normal(&r) * 2.0f;
    sampler_params p = sampler_defaults();
    p.seed = 1;
    p.rep_penalty = 1.1f;
    sampler *s = sampler_new(&p, N);
    REQUIRE(s);
    for (int t = 0; t < 20; t++) {
        int32_t id = sampler_sample(s, l);
        CHECK(id >= 0 && id < N);
        sampler_accept(s, id);
    }
    /* Top-k off, top-p on, min-p off: the full-sort path. */
    sampler_params q = p;
    q.top_k = 0;
    q.min_p = 0.0f;
    sampler *s2 = sampler_new(&q, N);
    REQUIRE(s2);
    int32_t id = sampler_sample(s2, l);
    CHECK(id >= 0 && id < N);
    sampler_free(s2);
    for (int i = 0; i < N; i++) l[i] = -INFINITY;
    l[777] = NAN;
    l[5000] = -1.0f;
    CHECK(sampler_sample(s, l) == 5000);
    for (int i = 0; i < N; i++) l[i] = NAN;
    int32_t any = sampler_sample(s, l);
    CHECK(any >= 0 && any < N);
    sampler_free(s);
    free(l);
}

/* Large vocabulary, top-k off: top-p's staged search (best 64, 512, ... first) against a
 * brute-force reference set, and against the top-k path that heap-sorts everything. */
TEST(sampler_top_p_large_vocab) {
    enum { N = 8000, DRAWS = 100 };
    float *l = malloc(N * sizeof *l);
    double *w = malloc(N * sizeof *w);
    int *order = malloc(N * sizeof *order);
    char *in = calloc(N, 1);
    REQUIRE(l && w && order && in);
    trng r;
    trng_seed(&r, 21);
    for (int i = 0; i < N; i++) l[i] = trng_normal(&r);
    for (int j = 0; j < 20; j++) l[(j * 7919 + 13) % N] = 6.0f + 0.1f * (float)j;
    l[N - 1] = -INFINITY; /* weight 0: lets top_k = N - 1 see the same distribution */
    /* Reference: every token ordered by logit (ties: lower id first) with a Shell sort, an
     * algorithm the sampler does not use; weights in double exp. */
    double z = 0.0;
    for (int i = 0; i < N; i++) z += (w[i] = exp((double)l[i]));
    for (int i = 0; i < N; i++) order[i] = i;
    for (int gap = N / 2; gap > 0; gap /= 2)
        for (int i = gap; i < N; i++)
            for (int j = i; j >= gap && (l[order[j - gap]] < l[order[j]] ||
                                         (l[order[j - gap]] == l[order[j]] &&
                                          order[j - gap] > order[j]));
                 j -= gap) {
                int t = order[j];
                order[j] = order[j - gap];
                order[j - gap] = t;
            }
    const float tps[] = {0.3f, 0.95f}; /* inside the best 64; beyond 4096 (full sort) */
    for (size_t c = 0; c < TOME_ARRAY_LEN(tps); c++) {
        memset(in, 0, N);
        double cum = 0.0;
        int kept = 0;
        while (cum < tps[c]) {
            cum += w[order[kept]] / z;
            in[order[kept++]] = 1;
        }
        /* Not on a rounding edge: the last kept token matters, the one before falls short. */
        REQUIRE(cum - tps[c] > 1e-6 && tps[c] - (cum - w[order[kept - 1]] / z) > 1e-6);
        CHECKF(c == 0 ? kept <= 64 : kept > 4096, "kept %d", kept);
        sampler_params p = plain_params(1.0f, 500 + c);
        p.top_p = tps[c];
        sampler *s = sampler_new(&p, N);
        p.top_k = N - 1;
        sampler *sk = sampler_new(&p, N);
        REQUIRE(s && sk);
        int outside = 0, differ = 0, top_seen = 0;
        for (int d = 0; d < DRAWS; d++) {
            int32_t a = sampler_sample(s, l), b = sampler_sample(sk, l);
            outside += !in[a];
            differ += a != b;
            top_seen += a == order[0];
        }
        CHECKF(outside == 0, "top_p %.1f: %d draws outside the reference set", (double)tps[c],
               outside);
        CHECKF(differ == 0, "top_p %.1f: %d draws differ between the two paths", (double)tps[c],
               differ);
        CHECK(top_seen > 0);
        sampler_free(s);
        sampler_free(sk);
    }
    free(l);
    free(w);
    free(order);
    free(in);
}

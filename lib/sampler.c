/* sampler.c — next-token selection: greedy, or repetition penalty → top-k → softmax with
 * temperature → top-p → min-p → a seeded draw.
 *
 * Cost per token is dominated by one pass over the vocabulary (~0.2-0.5 ms at 150K). Top-k
 * keeps its k candidates in a bounded heap (O(n log k)), so the common small-k case never sorts
 * 150K entries. Without top-k, min-p (when on) prunes with a logit threshold, and top-p first
 * tries the best 64, 512, ... tokens and sorts the whole remainder only when even 32768 of them
 * do not hold top_p of the mass (a near-flat distribution). Pruning by min-p before top-p gives
 * the same set as the stated order: both keep a prefix of the sorted candidates, top-p's prefix
 * is measured with probabilities normalised over the full (top-k) set, and the intersection of
 * two prefixes is the shorter one. Softmax weights use expf, accumulated in double.
 *
 * Ties are broken by the lower token id everywhere, so results do not depend on sort stability.
 * NaN logits are never candidates.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A candidate token: its (penalised) logit and id. */
typedef struct cand {
    float l;
    int32_t id;
} cand;

struct sampler {
    sampler_params p;
    int n_vocab;
    trng rng;
    int32_t *hist;     /* [rep_last_n] ring of recent tokens */
    int hist_n;        /* tokens in the ring (<= rep_last_n) */
    int hist_pos;      /* next slot to write */
    int32_t *hist_tmp; /* [rep_last_n] scratch for de-duplication */
    float *work;       /* [n_vocab] penalised copy of the logits */
    cand *c;           /* [n_vocab] candidates, best first after selection */
    double *prob;      /* [n_vocab] their probabilities, same order */
};

sampler_params sampler_defaults(void) {
    sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                        .rep_penalty = 1.0f, .rep_last_n = 64, .seed = 0};
    return p;
}

int sampler_params_check(const sampler_params *p, terr *e) {
    if (isnan(p->temp)) return terr_set(e, TOME_EFLAGS, "--temp: not a number");
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return terr_set(e, TOME_EFLAGS, "--top-p %g: must be in [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return terr_set(e, TOME_EFLAGS, "--min-p %g: must be in [0, 1]", (double)p->min_p);
    if (!(p->rep_penalty > 0.0f) || isinf(p->rep_penalty))
        return terr_set(e, TOME_EFLAGS, "--repeat-penalty %g: must be > 0",
                        (double)p->rep_penalty);
    if (p->rep_last_n < 0)
        return terr_set(e, TOME_EFLAGS, "--repeat-last-n %d: must be >= 0", p->rep_last_n);
    return 0;
}

sampler *sampler_new(const sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    if (s->p.rep_last_n < 0) s->p.rep_last_n = 0;
    s->n_vocab = n_vocab;
    size_t nh = s->p.rep_last_n > 0 ? (size_t)s->p.rep_last_n : 1;
    s->hist = tmalloc_array(nh, sizeof *s->hist);
    s->hist_tmp = tmalloc_array(nh, sizeof *s->hist_tmp);
    s->work = tmalloc_array((size_t)n_vocab, sizeof *s->work);
    s->c = tmalloc_array((size_t)n_vocab, sizeof *s->c);
    s->prob = tmalloc_array((size_t)n_vocab, sizeof *s->prob);
    if (!s->hist || !s->hist_tmp || !s->work || !s->c || !s->prob) {
        sampler_free(s);
        return NULL;
    }
    trng_seed(&s->rng, s->p.seed);
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->hist_tmp);
    free(s->work);
    free(s->c);
    free(s->prob);
    free(s);
}

void sampler_accept(sampler *s, int32_t id) {
    if (s->p.rep_last_n <= 0) return;
    s->hist[s->hist_pos] = id;
    s->hist_pos = (s->hist_pos + 1) % s->p.rep_last_n;
    if (s->hist_n < s->p.rep_last_n) s->hist_n++;
}

void sampler_reset(sampler *s) {
    s->hist_n = 0;
    s->hist_pos = 0;
    trng_seed(&s->rng, s->p.seed);
}

/* ---- repetition penalty ------------------------------------------------------------------ */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The logits the rest of the chain sees: the caller's array when the penalty is off, else a
 * copy in which each distinct recent token's logit is divided by the penalty when positive and
 * multiplied when negative (llama.cpp's rule: a token repeated twice is penalised once). */
static const float *penalised(sampler *s, const float *logits) {
    float pen = s->p.rep_penalty;
    if (pen == 1.0f || s->hist_n == 0) return logits;
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    memcpy(s->hist_tmp, s->hist, (size_t)s->hist_n * sizeof *s->hist_tmp);
    qsort(s->hist_tmp, (size_t)s->hist_n, sizeof *s->hist_tmp, cmp_i32);
    for (int i = 0; i < s->hist_n; i++) {
        int32_t id = s->hist_tmp[i];
        if ((i > 0 && id == s->hist_tmp[i - 1]) || id < 0 || id >= s->n_vocab) continue;
        float *l = &s->work[id];
        *l = *l > 0.0f ? *l / pen : *l * pen;
    }
    return s->work;
}

/* ---- candidate selection ------------------------------------------------------------------- */

/* a ranks before b: higher logit, or the same logit and a lower id. */
static inline int better(cand a, cand b) { return a.l > b.l || (a.l == b.l && a.id < b.id); }

static int cmp_best_first(const void *a, const void *b) {
    cand x = *(const cand *)a, y = *(const cand *)b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

/* Restores the heap property below i in a heap c[0..n) whose top is the WORST entry. */
static void sift_down_worst(cand *c, int n, int i) {
    for (;;) {
        int w = i, a = 2 * i + 1, b = a + 1;
        if (a < n && better(c[w], c[a])) w = a;
        if (b < n && better(c[w], c[b])) w = b;
        if (w == i) return;
        cand t = c[i];
        c[i] = c[w];
        c[w] = t;
        i = w;
    }
}

/* The k best non-NaN entries of v[0..n) into c, best first; returns how many (< k only when
 * fewer than k logits are not NaN). A bounded worst-on-top heap: after the first few thousand
 * tokens almost every logit loses its single comparison with the top, so this is one pass. */
static int select_top_k(cand *c, const float *v, int n, int k) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        cand x = {v[i], i};
        if (isnan(x.l)) continue;
        if (m < k) {
            int j = m++;
            while (j > 0 && better(c[(j - 1) / 2], x)) {
                c[j] = c[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            c[j] = x;
        } else if (better(x, c[0])) {
            c[0] = x;
            sift_down_worst(c, m, 0);
        }
    }
    /* Heap sort in place: repeatedly moving the worst to the end leaves best first. */
    for (int end = m - 1; end > 0; end--) {
        cand t = c[0];
        c[0] = c[end];
        c[end] = t;
        sift_down_worst(c, end, 0);
    }
    return m;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static int32_t argmax(const float *v, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]) && (best < 0 || v[i] > v[best])) best = i;
    return best < 0 ? 0 : best;
}

/* A uniform double in [0, 1) with 53 random bits. */
static double uniform(trng *r) { return (double)(trng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Unnormalised softmax weight of logit l, given the maximum mx and 1/temperature. */
static inline double weight(float l, float mx, float inv_t) { return (double)expf((l - mx) * inv_t); }

/* Candidates when top-k is off: every token at or above the logit threshold thr, best first
 * when `sorted` (top-p needs the order). To spare sorting 150K entries, first tries the best
 * 64, 512, 4096, 32768 tokens: once such a prefix holds top_p of the mass (normalised by z) it
 * contains top-p's whole prefix. Returns the count. */
static int gather(sampler *s, const float *v, float thr, int sorted, float mx, float inv_t,
                  double z) {
    const int n = s->n_vocab;
    if (sorted) {
        for (int kk = 64; kk < n && kk <= 32768; kk *= 8) {
            int m = select_top_k(s->c, v, n, kk);
            int cut = 0;
            while (cut < m && s->c[cut].l >= thr) cut++;
            if (cut < kk) return cut; /* every token at or above thr is in hand */
            double mass = 0.0;
            for (int i = 0; i < m; i++) mass += weight(s->c[i].l, mx, inv_t) / z;
            if (mass >= (double)s->p.top_p) return m;
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (v[i] >= thr) s->c[m++] = (cand){v[i], i}; /* NaN fails the comparison */
    if (sorted) qsort(s->c, (size_t)m, sizeof *s->c, cmp_best_first);
    return m;
}

int32_t sampler_sample(sampler *s, const float *logits) {
    const int n = s->n_vocab;
    const float *v = penalised(s, logits);
    if (!(s->p.temp > 0.0f)) return argmax(v, n);
    const float inv_t = 1.0f / s->p.temp;
    const int top_p_on = s->p.top_p < 1.0f;

    /* 1. Candidates and the normaliser z of the temperature softmax over the top-k set. */
    int m;
    float mx;
    double z = 0.0;
    const int k = s->p.top_k;
    if (k > 0 && k < n) {
        m = select_top_k(s->c, v, n, k);
        if (m == 0) return 0;
        mx = s->c[0].l;
        if (mx == -INFINITY) return s->c[0].id;
        for (int i = 0; i < m; i++) z += weight(s->c[i].l, mx, inv_t);
    } else {
        int32_t best = argmax(v, n);
        mx = v[best];
        if (isnan(mx) || mx == -INFINITY) return best; /* all NaN or -inf */
        for (int i = 0; i < n; i++)
            if (!isnan(v[i])) z += weight(v[i], mx, inv_t);
        /* min-p keeps p_i >= min_p * p_max, i.e. l_i >= mx + temp * ln(min_p); prune with a
         * slightly looser bound, the exact test runs on the probabilities below. */
        float thr = s->p.min_p > 0.0f ? mx + s->p.temp * (logf(s->p.min_p) - 1e-3f) : -INFINITY;
        m = gather(s, v, thr, top_p_on, mx, inv_t, z);
    }

    /* 2. Probabilities. */
    for (int i = 0; i < m; i++) s->prob[i] = weight(s->c[i].l, mx, inv_t) / z;

    /* 3. top-p: the smallest prefix whose mass reaches top_p (at least one token). */
    if (top_p_on) {
        double cum = 0.0;
        for (int i = 0; i < m; i++) {
            cum += s->prob[i];
            if (cum >= (double)s->p.top_p) {
                m = i + 1;
                break;
            }
        }
    }

    /* 4. min-p: drop tokens below min_p times the most likely one. Order is kept, so a sorted
     * list stays sorted, and the most likely token always survives. */
    if (s->p.min_p > 0.0f) {
        double pmax = 0.0;
        for (int i = 0; i < m; i++)
            if (s->prob[i] > pmax) pmax = s->prob[i];
        double cut = (double)s->p.min_p * pmax;
        int keep = 0;
        for (int i = 0; i < m; i++) {
            if (s->prob[i] < cut) continue;
            s->prob[keep] = s->prob[i];
            s->c[keep++] = s->c[i];
        }
        m = keep;
    }

    /* 5. Draw from the kept tokens, renormalised. */
    double total = 0.0;
    for (int i = 0; i < m; i++) total += s->prob[i];
    double u = uniform(&s->rng) * total, cum = 0.0;
    int last = 0;
    for (int i = 0; i < m; i++) {
        if (s->prob[i] <= 0.0) continue;
        cum += s->prob[i];
        last = i;
        if (u < cum) return s->c[i].id;
    }
    return s->c[last].id; /* rounding left u at the very top */
}

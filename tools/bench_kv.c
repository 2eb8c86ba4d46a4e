/* bench_kv.c — single-thread time of one decode attention over the paged KV cache (kv_attend).
 *
 *   build/bench_kv [-L TOKENS] [-d HEAD_DIM] [-k KV_HEADS] [-g GQA] [-r REPS] [-s]
 *
 * Fills one layer of a cache with TOKENS positions of seeded random K/V rows (default 16384
 * tokens, head_dim 128, 2 kv heads, 4 query heads per kv head: two GQA groups of an 8B-shaped
 * layer), then times kv_attend for the last position, REPS times (default 10), for each of the
 * f16, q8 and q4 pages, and prints the best time and the KV bytes read per second. -s uses the
 * portable scalar kernels instead of the AVX2 ones (kv_config.force_scalar). One thread, no
 * pinning: on a busy machine take the best of several runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvcache.h"
#include "util.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_kv [-L TOKENS] [-d HEAD_DIM] [-k KV_HEADS] [-g GQA] [-r REPS] [-s]\n");
    exit(1);
}

int main(int argc, char **argv) {
    int L = 16384, hd = 128, nkv = 2, gqa = 4, reps = 10, scalar = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-s")) { scalar = 1; continue; }
        if (i + 1 >= argc) usage();
        int v = atoi(argv[++i]);
        if (v < 1) usage();
        if (!strcmp(f, "-L")) L = v;
        else if (!strcmp(f, "-d")) hd = v;
        else if (!strcmp(f, "-k")) nkv = v;
        else if (!strcmp(f, "-g")) gqa = v;
        else if (!strcmp(f, "-r")) reps = v;
        else usage();
    }
    if (hd > KV_MAX_HEAD_DIM) usage();
    const int nh = nkv * gqa;
    const char *names[] = {"f16", "q8", "q4"};
    printf("# kv_attend, one thread, %s kernels: %d tokens, head_dim %d, %d kv heads x %d query heads each, best of %d\n",
           scalar ? "scalar" : "best", L, hd, nkv, gqa, reps);
    float *k = malloc(sizeof(float) * (size_t)nkv * hd), *v = malloc(sizeof(float) * (size_t)nkv * hd);
    float *q = malloc(sizeof(float) * (size_t)nh * hd), *out = malloc(sizeof(float) * (size_t)nh * hd);
    if (!k || !v || !q || !out) return 4;
    for (int dt = KV_F16; dt <= KV_Q4; dt++) {
        kv_config cfg = {.n_layer = 1, .n_kv_head = nkv, .head_dim = hd, .head_dim_v = hd, .page_tokens = 64,
                         .dtype = (kv_dtype)dt, .n_pages = (L + 63) / 64, .force_scalar = scalar};
        kv_cache c;
        terr e = {0};
        int seq;
        if (kv_open(&c, &cfg, &e) || kv_seq_new(&c, &seq, &e) || kv_seq_append(&c, seq, L, &e)) {
            fprintf(stderr, "bench_kv: %s\n", e.msg);
            return 4;
        }
        trng r;
        trng_seed(&r, 1);
        for (int p = 0; p < L; p++) {
            for (int i = 0; i < nkv * hd; i++) k[i] = trng_normal(&r), v[i] = trng_normal(&r);
            kv_store(&c, seq, 0, p, 1, k, v);
        }
        for (int i = 0; i < nh * hd; i++) q[i] = trng_normal(&r);
        kv_attn a = {.n_head = nh, .scale = 1.0f / sqrtf((float)hd)};
        double best = 1e30;
        for (int it = 0; it < reps; it++) {
            double t = now_s();
            if (kv_attend(&c, seq, 0, &a, q, L - 1, out)) return 2;
            t = now_s() - t;
            if (t < best) best = t;
        }
        const double bytes = (double)L * nkv * (double)(c.row_bytes_k + c.row_bytes_v);
        printf("%-4s %8.3f ms  %6.2f GB/s of KV  (%.1f MB)\n", names[dt], best * 1e3, bytes / best / 1e9, bytes / 1e6);
        kv_close(&c);
    }
    free(k), free(v), free(q), free(out);
    return 0;
}

/* bench_simd.c — single-thread GB/s of the CPU dot-product kernels (lib/cpu/simd*.c).
 *
 *   build/bench_simd [-r ROWS] [-n COLS] [-i REPS] [-t TYPE[,TYPE..]] [-p PATH[,PATH..]] [-c TOKENS]
 *
 * With -c TOKENS it times the prefill product instead: cpu_matmul over TOKENS activation rows
 * (the gemm tile kernels where the path has them, else a gemv per token), one thread, and
 * prints GMAC/s (ROWS x COLS x TOKENS multiply-adds per call).
 *
 * For each weight type and each path this CPU can run (scalar, avx2, avx512) it times a
 * matrix-vector product ROWS x COLS (default 4096 x 4096) through the table's gemv entry, and
 * through a loop over the dot entry, REPS times (default 20), and prints the best time as GB/s
 * of weight bytes read. The matrix is quantised from seeded random data once per type, so
 * it stays in whatever cache level its size fits (a 4096 x 4096 Q8_0 matrix is 17.8 MB:
 * L2/L3-resident on most servers; pass more rows for a DRAM-resident run). Activation
 * quantisation time is reported separately. Measures one thread only: no pinning, no warm-up
 * beyond the first repetition. Each GB/s is given by the best wall time and by the best
 * thread CPU time (the latter ignores time spent preempted on a busy machine; both still see
 * cache and memory contention). Results go to stdout, one line per type and path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/simd.h"
#include "gguf.h"
#include "quant.h"
#include "util.h"

static const char *const paths[] = {"scalar", "avx2", "avx512"};

/* CPU time of this thread: on a shared machine the wall clock also counts time the thread
 * sat preempted, so the best CPU time is the better estimate of what the kernel costs. */
static double thread_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int want(const char *list, const char *name) {
    if (!list) return 1;
    size_t l = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += l)
        if ((p == list || p[-1] == ',') && (p[l] == 0 || p[l] == ',')) return 1;
    return 0;
}

/* -c: ntok tokens through cpu_matmul per type and path; GMAC/s by wall and thread CPU time. */
static int bench_gemm(int64_t rows, int64_t cols, int64_t ntok, int reps, const char *types, const char *plist) {
    if (rows <= 0 || cols <= 0 || cols % 256 || reps <= 0) {
        fprintf(stderr, "bench_simd: need ROWS > 0, COLS a multiple of 256, REPS > 0\n");
        return 1;
    }
    printf("# prefill product: %lld rows x %lld cols x %lld tokens, best of %d, one thread\n", (long long)rows,
           (long long)cols, (long long)ntok, reps);
    printf("%-6s %-7s %10s %10s\n", "type", "path", "GMAC/s", "GMAC/s cpu");
    trng r;
    trng_seed(&r, 2);
    float *x = malloc((size_t)(cols * ntok) * sizeof *x), *y = malloc((size_t)(rows * ntok) * sizeof *y);
    float *tmp = malloc((size_t)cols * sizeof *tmp);
    if (!x || !y || !tmp) return 4;
    for (int64_t i = 0; i < cols * ntok; i++) x[i] = trng_normal(&r);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = ggml_type_from_name(tok);
        if (t < 0 || !tq_supported((uint32_t)t)) continue;
        uint32_t vt = tq_vec_dot_type((uint32_t)t);
        size_t rb = (size_t)ggml_row_size((uint32_t)t, cols), ab = (size_t)ggml_row_size(vt, cols);
        uint8_t *w = malloc(rb * (size_t)rows), *a = malloc(ab * (size_t)ntok + 64);
        if (!w || !a) return 4;
        for (int64_t i = 0; i < rows; i++) {
            for (int64_t j = 0; j < cols; j++) tmp[j] = trng_normal(&r) * 0.02f;
            if (i < 16) tq_quantize((uint32_t)t, tmp, w + (size_t)i * rb, cols);
            else memcpy(w + (size_t)i * rb, w + (size_t)(i % 16) * rb, rb);
        }
        for (int p = 0; p < 3; p++) {
            if (!want(plist, paths[p])) continue;
            cpu_kernels k;
            if (cpu_kernels_select(&k, paths[p]) != 0) continue;
            for (int64_t c = 0; c < ntok; c++) k.quant[vt](x + c * cols, a + (size_t)c * ab, cols);
            double tw = 1e9, tc = 1e9;
            for (int it = 0; it < (p == 0 ? 1 : reps); it++) {
                double t0 = tnow(), c0 = thread_time();
                cpu_matmul(&k, (uint32_t)t, cols, w, rb, 0, rows, a, ab, ntok, y, (size_t)rows);
                tw = TOME_MIN(tw, tnow() - t0), tc = TOME_MIN(tc, thread_time() - c0);
            }
            double macs = (double)rows * (double)cols * (double)ntok;
            printf("%-6s %-7s %10.2f %10.2f\n", tok, k.name, macs / tw / 1e9, macs / tc / 1e9);
            fflush(stdout);
        }
        free(w), free(a);
    }
    free(x), free(y), free(tmp);
    return 0;
}

int main(int argc, char **argv) {
    int64_t rows = 4096, cols = 4096;
    int reps = 20;
    int64_t ntok = 0;
    const char *types = "Q8_0,Q4_0,Q4_K,Q5_K,Q6_K,F16,BF16,F32", *plist = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) plist = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) ntok = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_simd [-r ROWS] [-n COLS] [-i REPS] [-t TYPES] [-p PATHS] [-c TOKENS]\n");
            return 1;
        }
    }
    if (ntok > 0) return bench_gemm(rows, cols, ntok, reps, types, plist);
    if (rows <= 0 || cols <= 0 || cols % 256 || reps <= 0) {
        fprintf(stderr, "bench_simd: need ROWS > 0, COLS a multiple of 256, REPS > 0\n");
        return 1;
    }
    cpu_kernels best;
    cpu_kernels_select(&best, NULL);
    printf("# %lld x %lld, best of %d, one thread; this CPU: best path %s%s%s\n", (long long)rows,
           (long long)cols, reps, best.name, best.feat.avx512vnni ? ", avx512_vnni" : "",
           best.feat.avx512bf16 ? ", avx512_bf16" : "");
    printf("%-6s %-7s %8s %10s %10s %10s %10s %12s\n", "type", "path", "MB", "gemv wall", "gemv cpu",
           "dot wall", "dot cpu", "quant_act us");

    float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    trng r;
    trng_seed(&r, 1);
    for (int64_t i = 0; i < cols; i++) x[i] = trng_normal(&r);
    float *tmp = malloc((size_t)cols * sizeof *tmp);

    char buf[256];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = ggml_type_from_name(tok);
        if (t < 0 || !tq_supported((uint32_t)t)) {
            fprintf(stderr, "bench_simd: unknown or unsupported type %s\n", tok);
            continue;
        }
        uint32_t vt = tq_vec_dot_type((uint32_t)t);
        size_t rb = (size_t)ggml_row_size((uint32_t)t, cols);
        uint8_t *w = malloc(rb * (size_t)rows);
        void *a = malloc((size_t)ggml_row_size(vt, cols) + 64);
        if (!w || !a) {
            fprintf(stderr, "bench_simd: out of memory\n");
            return 4;
        }
        /* quantising every row from fresh floats is slow for the K-quants: quantise 16 rows
         * and tile them (the kernels do not care, the caches see distinct addresses) */
        int64_t uniq = rows < 16 ? rows : 16;
        for (int64_t i = 0; i < uniq; i++) {
            for (int64_t j = 0; j < cols; j++) tmp[j] = trng_normal(&r) * 0.02f;
            tq_quantize((uint32_t)t, tmp, w + (size_t)i * rb, cols);
        }
        for (int64_t i = uniq; i < rows; i++) memcpy(w + (size_t)i * rb, w + (size_t)(i % uniq) * rb, rb);

        for (int p = 0; p < 3; p++) {
            if (!want(plist, paths[p])) continue;
            cpu_kernels k;
            if (cpu_kernels_select(&k, paths[p]) != 0) continue;
            double tq = 1e9, tg = 1e9, td = 1e9, cg = 1e9, cd = 1e9;
            int preps = p == 0 ? (reps + 3) / 4 : reps; /* the scalar path is slow */
            for (int it = 0; it < preps; it++) {
                double t0 = tnow();
                k.quant[vt](x, a, cols);
                double t1 = tnow(), c1 = thread_time();
                k.gemv[t](cols, rows, w, rb, a, y);
                double t2 = tnow(), c2 = thread_time();
                for (int64_t i = 0; i < rows; i++) y[i] = k.dot[t](cols, w + (size_t)i * rb, a);
                double t3 = tnow(), c3 = thread_time();
                tq = TOME_MIN(tq, t1 - t0), tg = TOME_MIN(tg, t2 - t1), td = TOME_MIN(td, t3 - t2);
                cg = TOME_MIN(cg, c2 - c1), cd = TOME_MIN(cd, c3 - c2);
            }
            double bytes = (double)rb * (double)rows;
            printf("%-6s %-7s %8.1f %10.2f %10.2f %10.2f %10.2f %12.1f\n", tok, k.name, bytes / 1e6,
                   bytes / tg / 1e9, bytes / cg / 1e9, bytes / td / 1e9, bytes / cd / 1e9, tq * 1e6);
            fflush(stdout);
        }
        free(w);
        free(a);
    }
    free(x), free(y), free(tmp);
    return 0;
}

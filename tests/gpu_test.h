/* gpu_test.h — helpers shared by the GPU-vs-CPU test files (test_cuda*.c): open GPU 0 (or the
 * stand-in driver of the gpu-emu stage) or skip with the reason, and seeded never-zero inputs. */
#ifndef TOME_GPU_TEST_H
#define TOME_GPU_TEST_H

#include "test.h"

#include "cuda/driver.h"
#include "util.h"

/* Declares `cuda_dev *d` and opens GPU 0 into it, or skips the test with the reason. */
#define GPU_OR_SKIP(d)                                                                   \
    cuda_dev *d = NULL;                                                                  \
    do {                                                                                 \
        char why_[256] = "";                                                             \
        if (cuda_device_count(why_, sizeof why_) == 0) SKIP("no GPU: %s", why_);        \
        terr e_ = {0};                                                                   \
        REQUIREF(cuda_open(&d, 0, &e_) == 0, "%s", e_.msg);                             \
    } while (0)

/* x[i] uniform in (-scale, scale) + 0.01, seeded: never all zero. */
static inline void gpu_fill_random(float *x, int64_t n, uint64_t seed, float scale) {
    trng r;
    trng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (trng_f32(&r) * 2 - 1) * scale + 0.01f;
}

#endif

/* test_cuda.c — the CUDA backend's plumbing. Without a GPU (every CI machine) these check
 * that the PTX is embedded, that every kernel the driver layer resolves at start-up exists
 * in it, and that a missing driver is a clean TOME_ERESOURCE; the GPU-vs-CPU op checks run
 * when a GPU is present (tests/gpu.sh). */
#include "test.h"

#include "cuda/driver.h"
#include "cuda/ptx_blobs.h"

TEST(cuda_ptx_embedded_and_kernels_present) {
    REQUIREF(tome_ptx_blob_count >= 2, "only %d PTX modules embedded", tome_ptx_blob_count);
    for (int i = 0; i < tome_ptx_blob_count; i++) {
        const tome_ptx_blob *b = &tome_ptx_blobs[i];
        CHECKF(strstr(b->ptx, ".entry") != NULL, "ptx/%s.ptx has no entry", b->name);
        CHECKF(strstr(b->ptx, ".version") != NULL, "ptx/%s.ptx has no .version", b->name);
        if (tome_ptx_assembled)
            CHECKF(b->cubin_sm80_len > 0 && b->cubin_sm90_len > 0, "ptx/%s.ptx has no cubins", b->name);
    }
    /* every kernel of the table is a .visible .entry of some module */
    for (int k = 0; k < K_COUNT; k++) {
        char pat[128];
        snprintf(pat, sizeof pat, ".visible .entry %s(", cuda_kernel_name((cuda_kernel_id)k));
        int found = 0;
        for (int i = 0; i < tome_ptx_blob_count; i++) found |= strstr(tome_ptx_blobs[i].ptx, pat) != NULL;
        CHECKF(found, "kernel %s is in no PTX module", cuda_kernel_name((cuda_kernel_id)k));
    }
}

TEST(cuda_absent_driver_is_a_clean_error) {
    char why[256] = "";
    int n = cuda_device_count(why, sizeof why);
    if (n > 0) SKIP("a GPU is present (%d); this test is for machines without one", n);
    CHECK(why[0] != 0);
    cuda_dev *d = (cuda_dev *)1;
    terr e = {0};
    CHECK(cuda_open(&d, 0, &e) == TOME_ERESOURCE);
    CHECK(d == NULL);
    CHECK(e.msg[0] != 0);
}

/* ops.c — kernel launchers and device-memory helpers (see ops.h). */
#include "cuda/ops.h"

int cuda_alloc(cuda_dev *d, CUdeviceptr *p, size_t bytes, terr *e) {
    *p = 0;
    if (!bytes) return terr_set(e, TOME_ERESOURCE, "cuda_alloc: zero bytes");
    CUresult r = d->api.cuMemAlloc(p, bytes);
    if (r != 0) {
        size_t free_b = 0, total_b = 0;
        d->api.cuMemGetInfo(&free_b, &total_b);
        return terr_set(e, TOME_ERESOURCE, "out of GPU memory on GPU %d (%s): %zu bytes requested, %zu of %zu free",
                        d->ordinal, d->name, bytes, free_b, total_b);
    }
    return 0;
}

void cuda_free(cuda_dev *d, CUdeviceptr p) {
    if (p) d->api.cuMemFree(p);
}

int cuda_upload(cuda_dev *d, CUdeviceptr dst, const void *src, size_t bytes, terr *e) {
    CU_TRY(d, e, d->api.cuMemcpyHtoDAsync(dst, src, bytes, d->stream));
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

int cuda_download(cuda_dev *d, void *dst, CUdeviceptr src, size_t bytes, terr *e) {
    CU_TRY(d, e, d->api.cuMemcpyDtoHAsync(dst, src, bytes, d->stream));
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

int cuda_sync(cuda_dev *d, terr *e) {
    CU_TRY(d, e, d->api.cuStreamSynchronize(d->stream));
    return 0;
}

/* Blocks for a 1-D grid-stride kernel: enough to fill the GPU a few times over. */
static unsigned stride_blocks(const cuda_dev *d, int64_t n, unsigned threads) {
    int64_t want = (n + threads - 1) / threads, cap = (int64_t)(d->n_sm > 0 ? d->n_sm : 1) * 16;
    if (want < 1) want = 1;
    return (unsigned)(want < cap ? want : cap);
}

static int elementwise(cuda_dev *d, cuda_kernel_id k, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b,
                       int64_t n, terr *e) {
    if (n <= 0 || n >= (int64_t)1 << 31)
        return terr_set(e, TOME_ERESOURCE, "elementwise kernel: n = %lld out of range", (long long)n);
    uint32_t n32 = (uint32_t)n;
    void *params[] = {&out, &a, &b, &n32};
    return cuda_launch(d, k, stride_blocks(d, n, 256), 1, 1, 256, 1, 1, 0, params, e);
}

int cuda_add_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b, int64_t n, terr *e) {
    return elementwise(d, K_ADD_F32, out, a, b, n, e);
}

int cuda_swiglu_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr g, CUdeviceptr u, int64_t n, terr *e) {
    return elementwise(d, K_SWIGLU_F32, out, g, u, n, e);
}

int cuda_rmsnorm_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, CUdeviceptr w, int n_rows, int n_cols,
                     float eps, terr *e) {
    if (n_rows <= 0 || n_cols <= 0 || n_rows > 0x7fffffff / 1)
        return terr_set(e, TOME_ERESOURCE, "rmsnorm: bad shape %d x %d", n_rows, n_cols);
    uint32_t n = (uint32_t)n_cols;
    void *params[] = {&out, &x, &w, &n, &eps};
    return cuda_launch(d, K_RMSNORM_F32, (unsigned)n_rows, 1, 1, 256, 1, 1, 0, params, e);
}

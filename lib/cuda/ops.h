/* ops.h — launchers for the PTX kernels: one small function per kernel that checks its
 * preconditions, computes the grid, launches on the device's stream and checks the launch.
 * Pointers are device addresses (CUdeviceptr). Errors come back as TOME_ERESOURCE in e. */
#ifndef TOME_CUDA_OPS_H
#define TOME_CUDA_OPS_H

#include "cuda/driver.h"

/* Device memory helpers (checked; bytes > 0). */
int cuda_alloc(cuda_dev *d, CUdeviceptr *p, size_t bytes, terr *e);
void cuda_free(cuda_dev *d, CUdeviceptr p);
int cuda_upload(cuda_dev *d, CUdeviceptr dst, const void *src, size_t bytes, terr *e);
int cuda_download(cuda_dev *d, void *dst, CUdeviceptr src, size_t bytes, terr *e); /* synchronises */
int cuda_sync(cuda_dev *d, terr *e);

/* out[i] = a[i] + b[i], i < n (ptx/elementwise.ptx). */
int cuda_add_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr a, CUdeviceptr b, int64_t n, terr *e);
/* out[i] = silu(g[i]) * u[i] (ptx/elementwise.ptx). */
int cuda_swiglu_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr g, CUdeviceptr u, int64_t n, terr *e);
/* out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w, rows of n_cols (ptx/rmsnorm.ptx). */
int cuda_rmsnorm_f32(cuda_dev *d, CUdeviceptr out, CUdeviceptr x, CUdeviceptr w, int n_rows,
                     int n_cols, float eps, terr *e);

#endif

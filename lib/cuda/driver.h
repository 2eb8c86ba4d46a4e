/* driver.h — the CUDA Driver API, loaded at run time with dlopen("libcuda.so.1").
 *
 * tome builds and runs without CUDA: nothing here includes cuda.h or links libcuda. The few
 * types and constants used are declared below with the driver's values; every entry point
 * is resolved by name (the `_v2` names where the driver has them) when a device is opened.
 *
 * All device state lives in a `cuda_dev` (one per GPU; ring mode holds several side by side):
 * library handle, resolved entry points, context, stream, the loaded PTX modules and the
 * kernel table. Every driver call goes through CU_TRY, which turns a failure into one line:
 * the call as written, the driver's error name, the device and the source location.
 */
#ifndef TOME_CUDA_DRIVER_H
#define TOME_CUDA_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef int CUresult; /* 0 = CUDA_SUCCESS */
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

/* Constants with the driver's numeric values (cuda.h). */
enum {
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    CU_JIT_INFO_LOG_BUFFER = 3,
    CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
    CU_JIT_ERROR_LOG_BUFFER = 5,
    CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    CU_JIT_LOG_VERBOSE = 12,
    CU_STREAM_NON_BLOCKING = 1,
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
};

/* The driver entry points tome uses; X(name, symbol, return, params). */
#define CUDA_API_LIST(X)                                                                        \
    X(cuInit, "cuInit", (unsigned flags))                                                       \
    X(cuDriverGetVersion, "cuDriverGetVersion", (int *v))                                       \
    X(cuGetErrorName, "cuGetErrorName", (CUresult r, const char **s))                           \
    X(cuDeviceGetCount, "cuDeviceGetCount", (int *n))                                           \
    X(cuDeviceGet, "cuDeviceGet", (CUdevice *d, int ordinal))                                   \
    X(cuDeviceGetName, "cuDeviceGetName", (char *name, int len, CUdevice d))                    \
    X(cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *v, int attr, CUdevice d))            \
    X(cuDeviceTotalMem, "cuDeviceTotalMem_v2", (size_t *bytes, CUdevice d))                     \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *c, CUdevice d))         \
    X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice d))                  \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", (CUcontext c))                                        \
    X(cuCtxSynchronize, "cuCtxSynchronize", (void))                                             \
    X(cuMemGetInfo, "cuMemGetInfo_v2", (size_t *free_b, size_t *total_b))                       \
    X(cuMemAlloc, "cuMemAlloc_v2", (CUdeviceptr *p, size_t bytes))                              \
    X(cuMemFree, "cuMemFree_v2", (CUdeviceptr p))                                               \
    X(cuMemAllocHost, "cuMemAllocHost_v2", (void **p, size_t bytes))                            \
    X(cuMemFreeHost, "cuMemFreeHost", (void *p))                                                \
    X(cuMemcpyHtoD, "cuMemcpyHtoD_v2", (CUdeviceptr dst, const void *src, size_t n))            \
    X(cuMemcpyDtoH, "cuMemcpyDtoH_v2", (void *dst, CUdeviceptr src, size_t n))                  \
    X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (CUdeviceptr dst, const void *src, size_t n, CUstream s)) \
    X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *dst, CUdeviceptr src, size_t n, CUstream s)) \
    X(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)) \
    X(cuMemsetD8Async, "cuMemsetD8Async", (CUdeviceptr p, unsigned char v, size_t n, CUstream s)) \
    X(cuModuleLoadDataEx, "cuModuleLoadDataEx",                                                 \
      (CUmodule * m, const void *image, unsigned n_opt, int *opts, void **vals))                \
    X(cuModuleUnload, "cuModuleUnload", (CUmodule m))                                           \
    X(cuModuleGetFunction, "cuModuleGetFunction", (CUfunction * f, CUmodule m, const char *name)) \
    X(cuFuncSetAttribute, "cuFuncSetAttribute", (CUfunction f, int attr, int value))            \
    X(cuLaunchKernel, "cuLaunchKernel",                                                         \
      (CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,           \
       unsigned bz, unsigned smem, CUstream s, void **params, void **extra))                    \
    X(cuStreamCreate, "cuStreamCreate", (CUstream * s, unsigned flags))                         \
    X(cuStreamDestroy, "cuStreamDestroy_v2", (CUstream s))                                      \
    X(cuStreamSynchronize, "cuStreamSynchronize", (CUstream s))                                 \
    X(cuEventCreate, "cuEventCreate", (CUevent * e, unsigned flags))                            \
    X(cuEventDestroy, "cuEventDestroy_v2", (CUevent e))                                         \
    X(cuEventRecord, "cuEventRecord", (CUevent e, CUstream s))                                  \
    X(cuEventSynchronize, "cuEventSynchronize", (CUevent e))                                    \
    X(cuEventElapsedTime, "cuEventElapsedTime", (float *ms, CUevent a, CUevent b))

/* Optional entry points (CUDA graphs, issue #9): resolved when present, NULL otherwise; the
 * backend falls back to plain launches without them (cuda_has_graphs). */
#define CUDA_API_OPT_LIST(X)                                                                    \
    X(cuStreamBeginCapture, "cuStreamBeginCapture_v2", (CUstream s, int mode))                  \
    X(cuStreamEndCapture, "cuStreamEndCapture", (CUstream s, CUgraph * g))                      \
    X(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags",                               \
      (CUgraphExec * x, CUgraph g, unsigned long long flags))                                   \
    X(cuGraphLaunch, "cuGraphLaunch", (CUgraphExec x, CUstream s))                              \
    X(cuGraphExecDestroy, "cuGraphExecDestroy", (CUgraphExec x))                                \
    X(cuGraphDestroy, "cuGraphDestroy", (CUgraph g))

typedef struct cuda_api {
#define CUDA_API_FIELD(field, sym, params) CUresult (*field) params;
    CUDA_API_LIST(CUDA_API_FIELD)
    CUDA_API_OPT_LIST(CUDA_API_FIELD)
#undef CUDA_API_FIELD
} cuda_api;


/* Kernels resolved at start-up by their plain entry names, indexed by cuda_kernel_id. The
 * table lives in driver.c next to the names; a missing entry is a start-up error. */
typedef enum cuda_kernel_id {
    K_ADD_F32,
    K_SWIGLU_F32,
    K_RMSNORM_F32,
    K_MATMUL,         /* ptx/matmul.ptx */
    K_EMBED,
    K_ROPE,           /* ptx/rope.ptx */
    K_KV_STORE_F16,   /* ptx/kv.ptx */
    K_ATTENTION_F16,  /* ptx/attention.ptx */
    K_ARGMAX_F32,     /* ptx/argmax.ptx */
    K_ROPE_KV_STORE,  /* ptx/kv_quant.ptx */
    K_FLASH_DECODE,   /* ptx/flash_decode.ptx */
    K_LSE_MERGE,
    K_FLASH_DECODE_V1, /* ptx/flash_decode.ptx: the first, simpler flash-decode (TOME_FLASH_DECODE=v1) */
    K_FLASH_PREFILL,  /* ptx/flash_prefill.ptx */
    K_GEMM_CVT,       /* ptx/gemm.ptx */
    K_GEMM,
    K_COUNT
} cuda_kernel_id;

typedef struct cuda_dev {
    void *lib;               /* dlopen handle of libcuda.so.1 */
    cuda_api api;
    int ordinal;
    CUdevice dev;
    CUcontext ctx;           /* the device's primary context */
    CUstream stream;
    char name[128];
    int cc_major, cc_minor;  /* compute capability */
    int n_sm;
    size_t total_mem;
    int driver_version;
    CUmodule *modules;       /* one per embedded PTX module (tome_ptx_blob_count) */
    int n_modules;
    CUfunction kernels[K_COUNT];
    int from_cubin;          /* modules came from build-time cubins (else driver JIT of PTX) */
    int flash_v1;            /* 1: flash-decoding uses tome_flash_decode_v1 (env TOME_FLASH_DECODE=v1) */
} cuda_dev;

/* Opens GPU `ordinal`: loads libcuda, resolves every entry point, retains the primary context,
 * creates a stream, loads every embedded module and resolves every kernel. Returns
 * TOME_ERESOURCE with the reason (no libcuda, no such device, JIT log ...) on failure. */
int cuda_open(cuda_dev **out, int ordinal, terr *e);
void cuda_close(cuda_dev *d);

/* 1 when every CUDA_API_OPT_LIST entry point resolved (the driver can capture and replay
 * graphs). */
int cuda_has_graphs(const cuda_dev *d);

/* Number of GPUs (0 when libcuda is absent or cuInit fails; *why gets the reason). */
int cuda_device_count(char *why, size_t cap);

/* The PTX entry name of kernel k (for messages and tests). */
const char *cuda_kernel_name(cuda_kernel_id k);

/* Records a failed driver call in e; used by CU_TRY. */
int cuda_fail(const cuda_dev *d, CUresult r, const char *call, const char *file, int line, terr *e);

/* CU_TRY(d, e, call-expression) — returns from the enclosing function on failure, e.g.
 *   CU_TRY(d, e, d->api.cuMemAlloc(&p, bytes)); */
#define CU_TRY(d, e, call)                                                        \
    do {                                                                          \
        CUresult cu_r_ = (call);                                                  \
        if (cu_r_ != 0) return cuda_fail((d), cu_r_, #call, __FILE__, __LINE__, (e)); \
    } while (0)

/* Launch helper: grid/block sizes and the kernel's parameter pointers; checks the launch. */
int cuda_launch(cuda_dev *d, cuda_kernel_id k, unsigned gx, unsigned gy, unsigned gz,
                unsigned bx, unsigned by, unsigned bz, unsigned smem, void **params, terr *e);

#endif

/* driver.c — dlopen'd CUDA driver, per-device state, module loading, kernel table.
 *
 * Start-up order: dlopen libcuda.so.1 → dlsym every entry point (a missing one is an error
 * naming it) → cuInit → device → primary context → stream → one module per embedded PTX file
 * (the build-time cubin for sm_80/sm_90 when the GPU matches, otherwise the PTX text, JIT-
 * compiled by the driver with its error log captured) → every kernel by its plain name.
 * Nothing is loaded lazily: a broken kernel fails at start-up, not mid-generation.
 */
#include "cuda/driver.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ptx_blobs.h"

/* Entry names of the kernels, indexed by cuda_kernel_id. */
static const char *const k_kernel_names[K_COUNT] = {
    [K_ADD_F32] = "tome_add_f32",
    [K_SWIGLU_F32] = "tome_swiglu_f32",
    [K_RMSNORM_F32] = "tome_rmsnorm_f32",
    [K_MATMUL] = "tome_matmul",
    [K_EMBED] = "tome_embed",
    [K_ROPE] = "tome_rope",
    [K_KV_STORE_F16] = "tome_kv_store_f16",
    [K_ATTENTION_F16] = "tome_attention_f16",
    [K_ARGMAX_F32] = "tome_argmax_f32",
    [K_ROPE_KV_STORE] = "tome_rope_kv_store",
    [K_FLASH_DECODE] = "tome_flash_decode",
    [K_LSE_MERGE] = "tome_lse_merge",
    [K_FLASH_DECODE_V1] = "tome_flash_decode_v1",
    [K_FLASH_PREFILL] = "tome_flash_prefill",
    [K_GEMM_CVT] = "tome_gemm_cvt",
    [K_GEMM] = "tome_gemm",
};

const char *cuda_kernel_name(cuda_kernel_id k) {
    return k >= 0 && k < K_COUNT ? k_kernel_names[k] : "?";
}

static const char *err_name(const cuda_dev *d, CUresult r) {
    const char *s = NULL;
    if (d && d->api.cuGetErrorName && d->api.cuGetErrorName(r, &s) == 0 && s) return s;
    return "unknown CUDA error";
}

int cuda_fail(const cuda_dev *d, CUresult r, const char *call, const char *file, int line, terr *e) {
    return terr_set(e, TOME_ERESOURCE, "%s failed: %s (%d) on GPU %d (%s) at %s:%d", call,
                    err_name(d, r), r, d ? d->ordinal : -1, d && d->name[0] ? d->name : "?", file, line);
}

/* Loads libcuda and resolves the API table. Returns 0 or TOME_ERESOURCE. */
static int load_api(void **lib, cuda_api *api, terr *e) {
    *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!*lib) return terr_set(e, TOME_ERESOURCE, "no CUDA driver: cannot load libcuda.so.1 (%s)", dlerror());
    memset(api, 0, sizeof *api);
#define CUDA_API_RESOLVE(field, sym, params)                                                  \
    *(void **)(&api->field) = dlsym(*lib, sym);                                                \
    if (!api->field) {                                                                         \
        dlclose(*lib);                                                                         \
        *lib = NULL;                                                                           \
        return terr_set(e, TOME_ERESOURCE, "CUDA driver too old: libcuda.so.1 lacks %s", sym); \
    }
    CUDA_API_LIST(CUDA_API_RESOLVE)
#undef CUDA_API_RESOLVE
    /* optional ones: a missing entry stays NULL (cuda_has_graphs) */
#define CUDA_API_RESOLVE_OPT(field, sym, params) *(void **)(&api->field) = dlsym(*lib, sym);
    CUDA_API_OPT_LIST(CUDA_API_RESOLVE_OPT)
#undef CUDA_API_RESOLVE_OPT
    return 0;
}

int cuda_has_graphs(const cuda_dev *d) {
    int ok = d != NULL;
#define CUDA_API_HAVE(field, sym, params) ok = ok && d->api.field != NULL;
    if (ok) { CUDA_API_OPT_LIST(CUDA_API_HAVE) }
#undef CUDA_API_HAVE
    return ok;
}

int cuda_device_count(char *why, size_t cap) {
    void *lib;
    cuda_api api;
    terr e = {0};
    int n = 0;
    if (load_api(&lib, &api, &e)) {
        if (why) snprintf(why, cap, "%s", e.msg);
        return 0;
    }
    CUresult r = api.cuInit(0);
    if (r != 0) {
        const char *s = NULL;
        api.cuGetErrorName(r, &s);
        if (why) snprintf(why, cap, "cuInit failed: %s", s ? s : "unknown error");
    } else if (api.cuDeviceGetCount(&n) != 0) {
        n = 0;
        if (why) snprintf(why, cap, "cuDeviceGetCount failed");
    } else if (n == 0 && why) {
        snprintf(why, cap, "the CUDA driver reports no GPU");
    }
    dlclose(lib);
    return n;
}

static int load_modules(cuda_dev *d, terr *e) {
    d->modules = tcalloc((size_t)(tome_ptx_blob_count ? tome_ptx_blob_count : 1), sizeof(CUmodule));
    if (!d->modules) return terr_set(e, TOME_ERESOURCE, "out of memory");
    int cc = d->cc_major * 10 + d->cc_minor;
    d->from_cubin = 1;
    for (int i = 0; i < tome_ptx_blob_count; i++) {
        const tome_ptx_blob *b = &tome_ptx_blobs[i];
        /* A cubin runs on its own major version at an equal or higher minor (sm_80 on 8.x);
         * sm_90 code is for 9.0 exactly here. Anything else: the driver JITs the PTX. */
        const void *image = b->ptx;
        if (cc == 90 && b->cubin_sm90) image = b->cubin_sm90;
        else if (d->cc_major == 8 && b->cubin_sm80) image = b->cubin_sm80;
        else d->from_cubin = 0;
        char info[4096] = "", errlog[8192] = "";
        int opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                      CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE};
        void *vals[] = {info, (void *)(uintptr_t)sizeof info, errlog, (void *)(uintptr_t)sizeof errlog,
                        (void *)(uintptr_t)1};
        CUresult r = d->api.cuModuleLoadDataEx(&d->modules[i], image, 5, opts, vals);
        if (r != 0) {
            /* the JIT log is the useful part: keep its first line in the one-line error, the
             * whole log on stderr for whoever debugs the kernel */
            fprintf(stderr, "tome: JIT log of ptx/%s.ptx:\n%s\n", b->name, errlog);
            char first[256];
            size_t len = strcspn(errlog, "\n");
            if (len >= sizeof first) len = sizeof first - 1;
            memcpy(first, errlog, len);
            first[len] = 0;
            return terr_set(e, TOME_ERESOURCE, "loading ptx/%s.ptx on GPU %d (%s, sm_%d) failed: %s: %s",
                            b->name, d->ordinal, d->name, cc, err_name(d, r), first);
        }
        d->n_modules = i + 1;
    }
    for (int k = 0; k < K_COUNT; k++) {
        for (int i = 0; i < d->n_modules && !d->kernels[k]; i++) {
            CUfunction f = NULL;
            if (d->api.cuModuleGetFunction(&f, d->modules[i], k_kernel_names[k]) == 0) d->kernels[k] = f;
        }
        if (!d->kernels[k])
            return terr_set(e, TOME_ERESOURCE, "kernel %s not found in any embedded PTX module", k_kernel_names[k]);
    }
    return 0;
}

static int open_dev(cuda_dev *d, int ordinal, terr *e) {
    d->ordinal = ordinal;
    int rc = load_api(&d->lib, &d->api, e);
    if (rc) return rc;
    CU_TRY(d, e, d->api.cuInit(0));
    CU_TRY(d, e, d->api.cuDriverGetVersion(&d->driver_version));
    int n = 0;
    CU_TRY(d, e, d->api.cuDeviceGetCount(&n));
    if (ordinal < 0 || ordinal >= n)
        return terr_set(e, TOME_ERESOURCE, "GPU %d requested but the driver reports %d GPU%s", ordinal, n,
                        n == 1 ? "" : "s");
    CU_TRY(d, e, d->api.cuDeviceGet(&d->dev, ordinal));
    CU_TRY(d, e, d->api.cuDeviceGetName(d->name, (int)sizeof d->name, d->dev));
    CU_TRY(d, e, d->api.cuDeviceGetAttribute(&d->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d->dev));
    CU_TRY(d, e, d->api.cuDeviceGetAttribute(&d->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d->dev));
    CU_TRY(d, e, d->api.cuDeviceGetAttribute(&d->n_sm, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d->dev));
    CU_TRY(d, e, d->api.cuDeviceTotalMem(&d->total_mem, d->dev));
    if (d->cc_major < 8)
        return terr_set(e, TOME_ERESOURCE, "GPU %d (%s) is sm_%d%d; tome needs sm_80 or newer", ordinal, d->name,
                        d->cc_major, d->cc_minor);
    CU_TRY(d, e, d->api.cuDevicePrimaryCtxRetain(&d->ctx, d->dev));
    CU_TRY(d, e, d->api.cuCtxSetCurrent(d->ctx));
    CU_TRY(d, e, d->api.cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING));
    /* the earlier flash-decode kernel, kept selectable while the new one awaits its first GPU run */
    const char *fd = getenv("TOME_FLASH_DECODE");
    d->flash_v1 = fd && !strcmp(fd, "v1");
    return load_modules(d, e);
}

int cuda_open(cuda_dev **out, int ordinal, terr *e) {
    *out = NULL;
    cuda_dev *d = calloc(1, sizeof *d);
    if (!d) return terr_set(e, TOME_ERESOURCE, "out of memory");
    int rc = open_dev(d, ordinal, e);
    if (rc) {
        cuda_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void cuda_close(cuda_dev *d) {
    if (!d) return;
    if (d->lib) {
        if (d->ctx) d->api.cuCtxSetCurrent(d->ctx);
        for (int i = 0; i < d->n_modules; i++) d->api.cuModuleUnload(d->modules[i]);
        if (d->stream) d->api.cuStreamDestroy(d->stream);
        if (d->ctx) d->api.cuDevicePrimaryCtxRelease(d->dev);
        dlclose(d->lib);
    }
    free(d->modules);
    free(d);
}

int cuda_launch(cuda_dev *d, cuda_kernel_id k, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                unsigned by, unsigned bz, unsigned smem, void **params, terr *e) {
    if (k < 0 || k >= K_COUNT || !d->kernels[k])
        return terr_set(e, TOME_ERESOURCE, "kernel %d not loaded", (int)k);
    if (!gx || !gy || !gz || !bx || !by || !bz || bx * by * bz > 1024)
        return terr_set(e, TOME_ERESOURCE, "%s: bad launch geometry grid %u×%u×%u block %u×%u×%u",
                        k_kernel_names[k], gx, gy, gz, bx, by, bz);
    CU_TRY(d, e, d->api.cuLaunchKernel(d->kernels[k], gx, gy, gz, bx, by, bz, smem, d->stream, params, NULL));
    return 0;
}

/* fake_cuda.c — a stand-in libcuda.so.1 so CI can run tome's CUDA host code without a GPU.
 *
 * What it is: a test double. build.sh compiles it (with lib/'s quant, rope, util code) into
 * build/fake/libcuda.so.1, and the `gpu-emu` stage runs the device / gpu_e2e_* unit tests and
 * the GPU branch of tests/cli.d/70-device.sh with LD_LIBRARY_PATH=build/fake, so the dlopen in
 * lib/cuda/driver.c finds this library instead of a real driver. "Device" memory is host
 * memory; each kernel is emulated in plain C, by its .entry name, from the ABI header at the
 * top of its ptx/NAME.ptx file, computing what the CPU reference computes.
 *
 * What it checks: the HOST code — buffer sizes (every kernel argument and copy must lie inside
 * one live allocation), launch geometry (the grid and block each ABI header demands),
 * parameter order and types (read exactly as the headers list them), block tables and page
 * layout, and the error paths (FAKE_CUDA_MEM caps "device" memory; an unknown kernel name, a
 * bad geometry or an out-of-bounds pointer fails the call with a CUDA error code and a line on
 * stderr, never silently). What it does NOT check: the PTX itself — its arithmetic, barriers,
 * shared memory and speed — which only a real GPU run (tests/gpu.sh) does; the gpu_op_* tests
 * are not run against it, since they would compare this emulation with itself - except
 * gpu_op_gemm_*: emu_gemm models the GEMM kernel's design lane by lane, not its answer,
 * and tests/test_cuda_fa.c's: emu_flash_prefill models the FlashAttention kernel the same way.
 *
 * Limits: one device (compute capability 9.0, 4 SMs), one stream, everything synchronous; the
 * driver's state (allocations, used bytes) is process-global, as a real driver's is.
 *
 * build.sh's test_sources links every tests/NAME.c into the unit-test runner; without
 * TOME_FAKE_CUDA (which only the fake's own build defines) this file is empty, so the runner
 * never carries driver symbols. */
#ifdef TOME_FAKE_CUDA
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcache.h" /* KV_Q4_GROUP, kv_row_bytes, kv_quantize_row, kv_dequantize_row */
#include "quant.h"   /* tq_dequantize */
#include "rope.h"    /* rope_apply_cs */
#include "util.h"    /* tf16_to_f32, tf32_to_f16 */

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

/* the CUDA error codes this stand-in returns */
enum {
    E_OK = 0,
    E_INVALID_VALUE = 1,
    E_OUT_OF_MEMORY = 2,
    E_INVALID_HANDLE = 400,
    E_NOT_FOUND = 500,
    E_ILLEGAL_ADDRESS = 700,
    E_LAUNCH_OUT_OF_RESOURCES = 701,
    E_BAD_GEOMETRY = 9, /* no driver-API twin: a launch whose grid/block breaks the kernel's ABI */
};

/* ---- device memory: host blocks, registered so every access can be bounds-checked --------- */

typedef struct alloc {
    uintptr_t base;
    size_t bytes;
} alloc;

static alloc *g_allocs; /* live allocations (a driver's state is process-wide) */
static size_t g_n_allocs, g_cap_allocs, g_used;

/* Stream capture (CUDA graphs, see the section at the end): while g_capturing, launches,
 * device-to-device copies and memsets are recorded instead of run; anything a real driver
 * refuses during capture (copies from or to pageable host memory, synchronisation,
 * allocation) fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture. */
enum { E_CAPTURE_UNSUPPORTED = 900, E_CAPTURE_INVALIDATED = 901, E_NOT_SUPPORTED = 801 };
static int g_capturing, g_capture_bad;
static int capture_refuses(const char *call) {
    if (!g_capturing) return 0;
    fprintf(stderr, "fake_cuda: %s during stream capture (a real driver refuses it too)\n", call);
    g_capture_bad = 1;
    return 1;
}
static CUresult capture_node_copy(unsigned long long dst, unsigned long long src, size_t n, int is_set,
                                  unsigned char v);

static size_t mem_limit(void) {
    const char *s = getenv("FAKE_CUDA_MEM");
    return s && *s ? (size_t)strtoull(s, NULL, 10) : (size_t)16 << 30;
}

static int fail(CUresult r, const char *fmt, const char *what) {
    fprintf(stderr, "fake_cuda: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    return r;
}

/* The host address of device range [p, p + bytes) if it lies inside one live allocation, else
 * NULL with a message naming `what`. bytes = 0 only checks that p is inside. */
static void *dev_span(CUdeviceptr p, uint64_t bytes, const char *what) {
    for (size_t i = 0; i < g_n_allocs; i++) {
        const alloc *a = &g_allocs[i];
        if (p >= a->base && p - a->base <= a->bytes && bytes <= a->bytes - (p - a->base) &&
            (bytes > 0 || p < a->base + a->bytes))
            return (void *)(uintptr_t)p;
    }
    fprintf(stderr, "fake_cuda: %s: device range 0x%llx + %llu bytes is outside every allocation\n", what,
            p, (unsigned long long)bytes);
    return NULL;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
    *p = 0;
    if (capture_refuses("cuMemAlloc")) return E_CAPTURE_UNSUPPORTED;
    if (n == 0) return E_INVALID_VALUE;
    if (g_used + n > mem_limit() || g_used + n < g_used) return E_OUT_OF_MEMORY;
    if (g_n_allocs == g_cap_allocs) {
        size_t cap = g_cap_allocs ? 2 * g_cap_allocs : 64;
        alloc *na = realloc(g_allocs, cap * sizeof *na);
        if (!na) return E_OUT_OF_MEMORY;
        g_allocs = na, g_cap_allocs = cap;
    }
    /* 256-byte aligned like cudaMalloc; filled with garbage, like real device memory */
    void *b = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!b) return E_OUT_OF_MEMORY;
    memset(b, 0xA5, n);
    g_allocs[g_n_allocs++] = (alloc){(uintptr_t)b, n};
    g_used += n;
    *p = (CUdeviceptr)(uintptr_t)b;
    return E_OK;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
    if (capture_refuses("cuMemFree")) return E_CAPTURE_UNSUPPORTED;
    if (!p) return E_OK;
    for (size_t i = 0; i < g_n_allocs; i++)
        if (g_allocs[i].base == p) {
            g_used -= g_allocs[i].bytes;
            free((void *)(uintptr_t)p);
            g_allocs[i] = g_allocs[--g_n_allocs];
            return E_OK;
        }
    return fail(E_INVALID_VALUE, "cuMemFree of %s", "a pointer that is not a live allocation");
}

CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total_b) {
    *total_b = mem_limit();
    *free_b = mem_limit() - g_used;
    return E_OK;
}
CUresult cuMemAllocHost_v2(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? E_OK : E_OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void *p) {
    free(p);
    return E_OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) {
    if (capture_refuses("a host-to-device copy from pageable memory")) return E_CAPTURE_UNSUPPORTED;
    void *dst = dev_span(d, n, "cuMemcpyHtoD");
    if (!dst) return E_INVALID_VALUE;
    if (n) memcpy(dst, s, n);
    return E_OK;
}
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) {
    if (capture_refuses("a device-to-host copy to pageable memory")) return E_CAPTURE_UNSUPPORTED;
    void *src = dev_span(s, n, "cuMemcpyDtoH");
    if (!src) return E_INVALID_VALUE;
    if (n) memcpy(d, src, n);
    return E_OK;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) {
    (void)st;
    return cuMemcpyHtoD_v2(d, s, n);
}
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) {
    (void)st;
    return cuMemcpyDtoH_v2(d, s, n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st) {
    (void)st;
    if (g_capturing) return capture_node_copy(d, s, n, 0, 0);
    void *dst = dev_span(d, n, "cuMemcpyDtoD dst"), *src = dev_span(s, n, "cuMemcpyDtoD src");
    if (!dst || !src) return E_INVALID_VALUE;
    if (n) memmove(dst, src, n);
    return E_OK;
}
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void *st) {
    (void)st;
    if (g_capturing) return capture_node_copy(p, 0, n, 1, v);
    void *dst = dev_span(p, n, "cuMemsetD8");
    if (!dst) return E_INVALID_VALUE;
    if (n) memset(dst, v, n);
    return E_OK;
}

/* ---- driver, device, context, stream, event: one always-present device ------------------- */

CUresult cuInit(unsigned f) { return f ? E_INVALID_VALUE : E_OK; }
CUresult cuDriverGetVersion(int *v) {
    *v = 12040;
    return E_OK;
}
CUresult cuGetErrorName(CUresult r, const char **s) {
    switch (r) {
    case E_OK: *s = "CUDA_SUCCESS"; break;
    case E_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
    case E_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case E_INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
    case E_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
    case E_ILLEGAL_ADDRESS: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
    case E_LAUNCH_OUT_OF_RESOURCES: *s = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"; break;
    case E_BAD_GEOMETRY: *s = "FAKE_CUDA_ERROR_BAD_GEOMETRY"; break;
    default: *s = "CUDA_ERROR_UNKNOWN"; return E_INVALID_VALUE;
    }
    return E_OK;
}
CUresult cuDeviceGetCount(int *n) {
    *n = 1;
    return E_OK;
}
CUresult cuDeviceGet(int *d, int ordinal) {
    if (ordinal != 0) return E_INVALID_VALUE;
    *d = ordinal;
    return E_OK;
}
CUresult cuDeviceGetName(char *name, int len, int d) {
    if (d != 0 || len <= 0) return E_INVALID_VALUE;
    snprintf(name, (size_t)len, "Fake GPU (tests/fake_cuda.c)");
    return E_OK;
}
/* 75/76: compute capability major/minor; 16: multiprocessor count */
CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
    if (d != 0) return E_INVALID_VALUE;
    *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 16 ? 4 : 0;
    return E_OK;
}
CUresult cuDeviceTotalMem_v2(size_t *b, int d) {
    if (d != 0) return E_INVALID_VALUE;
    *b = mem_limit();
    return E_OK;
}
CUresult cuDevicePrimaryCtxRetain(void **c, int d) {
    if (d != 0) return E_INVALID_VALUE;
    *c = (void *)&g_used; /* any stable non-null handle */
    return E_OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(int d) { return d == 0 ? E_OK : E_INVALID_VALUE; }
CUresult cuCtxSetCurrent(void *c) { return c ? E_OK : E_INVALID_VALUE; }
CUresult cuCtxSynchronize(void) { return capture_refuses("cuCtxSynchronize") ? E_CAPTURE_UNSUPPORTED : E_OK; }
CUresult cuStreamCreate(void **s, unsigned f) {
    (void)f;
    *s = (void *)&g_n_allocs;
    return E_OK;
}
CUresult cuStreamDestroy_v2(void *s) { return s ? E_OK : E_INVALID_HANDLE; }
CUresult cuStreamSynchronize(void *s) {
    (void)s;
    return capture_refuses("cuStreamSynchronize") ? E_CAPTURE_UNSUPPORTED : E_OK;
}
CUresult cuEventCreate(void **e, unsigned f) {
    (void)f;
    *e = (void *)&g_cap_allocs;
    return E_OK;
}
CUresult cuEventDestroy_v2(void *e) { return e ? E_OK : E_INVALID_HANDLE; }
CUresult cuEventRecord(void *e, void *s) {
    (void)s;
    return e ? E_OK : E_INVALID_HANDLE;
}
CUresult cuEventSynchronize(void *e) { return e ? E_OK : E_INVALID_HANDLE; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) {
    if (!a || !b) return E_INVALID_HANDLE;
    *ms = 0;
    return E_OK;
}

/* ---- kernels: one emulator per ptx .entry ------------------------------------------------ */

typedef struct geom {
    unsigned gx, gy, gz, bx, by, bz, smem;
} geom;

typedef CUresult (*emu_fn)(const geom *g, void **params);

/* Parameter i of a launch, read as the type the ABI header gives it (.u64 / .u32 / .f32). */
#define U64(i) (*(const uint64_t *)params[i])
#define U32(i) (*(const uint32_t *)params[i])
#define F32(i) (*(const float *)params[i])

#define SPAN(var, T, ptr, bytes, what)                         \
    T var = (T)dev_span((ptr), (uint64_t)(bytes), (what));     \
    if (!var) return E_ILLEGAL_ADDRESS

static CUresult bad_geom(const char *kernel, const geom *g) {
    fprintf(stderr, "fake_cuda: %s: launch geometry grid (%u,%u,%u) block (%u,%u,%u) smem %u breaks its ABI\n",
            kernel, g->gx, g->gy, g->gz, g->bx, g->by, g->bz, g->smem);
    return E_BAD_GEOMETRY;
}

/* grid and block are 1-D-or-2-D as given, no dynamic shared memory (every kernel's is static) */
static int geom_ok(const geom *g, int grid_2d, unsigned block_exact, unsigned block_multiple) {
    if (!g->gx || !g->gy || g->gz != 1 || (!grid_2d && g->gy != 1)) return 0;
    if (g->by != 1 || g->bz != 1 || !g->bx || g->bx > 1024 || g->smem) return 0;
    if (block_exact && g->bx != block_exact) return 0;
    if (block_multiple && g->bx % block_multiple) return 0;
    return 1;
}

/* ptx/elementwise.ptx tome_add_f32(out, a, b, n): out[i] = a[i] + b[i] */
static CUresult emu_add_f32(const geom *g, void **params) {
    if (!geom_ok(g, 0, 0, 0)) return bad_geom("tome_add_f32", g);
    uint32_t n = U32(3);
    SPAN(o, float *, U64(0), 4ull * n, "tome_add_f32 out");
    SPAN(a, const float *, U64(1), 4ull * n, "tome_add_f32 a");
    SPAN(b, const float *, U64(2), 4ull * n, "tome_add_f32 b");
    for (uint32_t i = 0; i < n; i++) o[i] = a[i] + b[i];
    return E_OK;
}

/* ptx/elementwise.ptx tome_swiglu_f32(out, g, u, n): out[i] = silu(g[i]) * u[i] */
static CUresult emu_swiglu_f32(const geom *g, void **params) {
    if (!geom_ok(g, 0, 0, 0)) return bad_geom("tome_swiglu_f32", g);
    uint32_t n = U32(3);
    SPAN(o, float *, U64(0), 4ull * n, "tome_swiglu_f32 out");
    SPAN(gt, const float *, U64(1), 4ull * n, "tome_swiglu_f32 g");
    SPAN(u, const float *, U64(2), 4ull * n, "tome_swiglu_f32 u");
    for (uint32_t i = 0; i < n; i++) o[i] = gt[i] / (1.0f + expf(-gt[i])) * u[i];
    return E_OK;
}

/* ptx/rmsnorm.ptx tome_rmsnorm_f32(out, x, w, n_cols, eps); grid (n_rows), block 256 */
static CUresult emu_rmsnorm_f32(const geom *g, void **params) {
    if (!geom_ok(g, 0, 256, 0)) return bad_geom("tome_rmsnorm_f32", g);
    uint32_t n = U32(3), rows = g->gx;
    float eps = F32(4);
    SPAN(o, float *, U64(0), 4ull * n * rows, "tome_rmsnorm_f32 out");
    SPAN(x, const float *, U64(1), 4ull * n * rows, "tome_rmsnorm_f32 x");
    SPAN(w, const float *, U64(2), 4ull * n, "tome_rmsnorm_f32 w");
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + (uint64_t)r * n;
        double ss = 0;
        for (uint32_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float sc = 1.0f / sqrtf((float)(ss / n) + eps);
        for (uint32_t i = 0; i < n; i++) o[(uint64_t)r * n + i] = xr[i] * sc * w[i];
    }
    return E_OK;
}

/* ptx/matmul.ptx tome_matmul(y, w, bias, x, row_bytes, type, rows, cols, n_tok);
 * grid (rows, min(n_tok, 65535)), block 32 */
static CUresult emu_matmul(const geom *g, void **params) {
    uint64_t rb = U64(4);
    uint32_t type = U32(5), rows = U32(6), cols = U32(7), nt = U32(8);
    if (!geom_ok(g, 1, 32, 0) || g->gx != rows || g->gy != (nt < 65535 ? nt : 65535) || !nt)
        return bad_geom("tome_matmul", g);
    if (rb != ggml_row_size((enum ggml_type)type, cols)) {
        fprintf(stderr, "fake_cuda: tome_matmul: row_bytes %llu for type %u x %u cols\n",
                (unsigned long long)rb, type, cols);
        return E_INVALID_VALUE;
    }
    SPAN(y, float *, U64(0), 4ull * nt * rows, "tome_matmul y");
    SPAN(w, const uint8_t *, U64(1), rb * rows, "tome_matmul w");
    const float *b = NULL;
    if (U64(2)) {
        SPAN(bb, const float *, U64(2), 4ull * rows, "tome_matmul bias");
        b = bb;
    }
    SPAN(x, const float *, U64(3), 4ull * nt * cols, "tome_matmul x");
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row) return E_OUT_OF_MEMORY;
    for (uint32_t r = 0; r < rows; r++) {
        tq_dequantize(type, w + (uint64_t)r * rb, row, cols);
        for (uint32_t t = 0; t < nt; t++) {
            float acc = 0;
            for (uint32_t c = 0; c < cols; c++) acc = fmaf(row[c], x[(uint64_t)t * cols + c], acc);
            y[(uint64_t)t * rows + r] = acc + (b ? b[r] : 0.0f);
        }
    }
    free(row);
    return E_OK;
}

/* ptx/matmul.ptx tome_embed(out, table, ids, row_bytes, type, rows, cols); grid (n), block 32k */
static CUresult emu_embed(const geom *g, void **params) {
    if (!geom_ok(g, 0, 0, 32)) return bad_geom("tome_embed", g);
    uint64_t rb = U64(3);
    uint32_t type = U32(4), rows = U32(5), cols = U32(6), n = g->gx;
    SPAN(o, float *, U64(0), 4ull * n * cols, "tome_embed out");
    SPAN(w, const uint8_t *, U64(1), rb * rows, "tome_embed table");
    SPAN(ids, const int32_t *, U64(2), 4ull * n, "tome_embed ids");
    for (uint32_t i = 0; i < n; i++) {
        float *oi = o + (uint64_t)i * cols;
        if (ids[i] < 0 || (uint32_t)ids[i] >= rows)
            for (uint32_t c = 0; c < cols; c++) oi[c] = NAN;
        else
            tq_dequantize(type, w + (uint64_t)ids[i] * rb, oi, cols);
    }
    return E_OK;
}

/* ptx/rope.ptx tome_rope(x, cs, n_heads, head_dim, rope_dim, neox); grid (n) */
static CUresult emu_rope(const geom *g, void **params) {
    if (!geom_ok(g, 0, 0, 0)) return bad_geom("tome_rope", g);
    uint32_t nh = U32(2), hd = U32(3), rd = U32(4), nx = U32(5), n = g->gx;
    if (rd % 2 || rd > hd) return fail(E_INVALID_VALUE, "tome_rope: %s", "rope_dim odd or > head_dim");
    SPAN(x, float *, U64(0), 4ull * n * nh * hd, "tome_rope x");
    SPAN(cs, const float *, U64(1), 4ull * n * rd, "tome_rope cs");
    for (uint32_t i = 0; i < n; i++)
        rope_apply_cs(cs + (uint64_t)i * rd, (int)rd, x + (uint64_t)i * nh * hd, (int)nh, (int)hd, (int)nx);
    return E_OK;
}

/* Pages a block table names for positions [0, n_pos): the table must hold n_pos / P entries. */
static const int32_t *block_table(CUdeviceptr p, uint64_t n_pos, uint32_t P, const char *what) {
    return dev_span(p, 4 * ((n_pos + P - 1) / P), what);
}

/* ptx/kv.ptx tome_kv_store_f16(dst, src, block_table, page_bytes, pos0, n_kv_head, dim,
 * page_tokens); grid (n, n_kv_head) */
static CUresult emu_kv_store_f16(const geom *g, void **params) {
    uint64_t pb = U64(3), p0 = U64(4);
    uint32_t nkv = U32(5), dim = U32(6), P = U32(7), n = g->gx;
    if (!geom_ok(g, 1, 0, 0) || g->gy != nkv) return bad_geom("tome_kv_store_f16", g);
    if (!P || pb < 2ull * nkv * P * dim) return fail(E_INVALID_VALUE, "tome_kv_store_f16: %s", "page_bytes < one page");
    SPAN(src, const float *, U64(1), 4ull * n * nkv * dim, "tome_kv_store_f16 src");
    const int32_t *bt = block_table(U64(2), p0 + n, P, "tome_kv_store_f16 block_table");
    if (!bt) return E_ILLEGAL_ADDRESS;
    for (uint32_t j = 0; j < n; j++)
        for (uint32_t h = 0; h < nkv; h++) {
            uint64_t p = p0 + j;
            int32_t pg = bt[p / P];
            if (pg < 0) continue;
            SPAN(row, uint16_t *, U64(0) + (uint64_t)pg * pb + ((uint64_t)h * P + p % P) * dim * 2, 2ull * dim,
                 "tome_kv_store_f16 page row");
            for (uint32_t t = 0; t < dim; t++) row[t] = tf32_to_f16(src[((uint64_t)j * nkv + h) * dim + t]);
        }
    return E_OK;
}

/* kvcache.c's `visible`: does the query at pos see key j? */
static int visible(int64_t pos, int64_t j, uint32_t window, uint32_t sinks) {
    if (j > pos) return 0;
    if (!window) return 1;
    int64_t lo = pos - (int64_t)window + 1, ns = (int64_t)sinks < lo ? (int64_t)sinks : lo;
    return j >= lo || j < ns;
}

/* ptx/attention.ptx tome_attention_f16(out, q, k, v, block_table, page_bytes_k, page_bytes_v,
 * pos0, scale, n_head, rep, page_tokens, head_dim, head_dim_v, window, sinks);
 * grid (n_head, n_q), block 32 */
static CUresult emu_attention_f16(const geom *g, void **params) {
    uint64_t pbk = U64(5), pbv = U64(6), p0 = U64(7);
    float scale = F32(8);
    uint32_t nh = U32(9), rep = U32(10), P = U32(11), dk = U32(12), dv = U32(13), win = U32(14), snk = U32(15);
    uint32_t nq = g->gy;
    if (!geom_ok(g, 1, 32, 0) || g->gx != nh) return bad_geom("tome_attention_f16", g);
    if (!rep || nh % rep || !P || !dk || !dv || dk > 512 || dv > 512)
        return fail(E_INVALID_VALUE, "tome_attention_f16: %s", "bad rep / page_tokens / head dims");
    uint32_t nkv = nh / rep;
    if (pbk < 2ull * nkv * P * dk || pbv < 2ull * nkv * P * dv)
        return fail(E_INVALID_VALUE, "tome_attention_f16: %s", "page bytes smaller than a page");
    SPAN(out, float *, U64(0), 4ull * nq * nh * dv, "tome_attention_f16 out");
    SPAN(q, const float *, U64(1), 4ull * nq * nh * dk, "tome_attention_f16 q");
    const int32_t *bt = block_table(U64(4), p0 + nq, P, "tome_attention_f16 block_table");
    if (!bt) return E_ILLEGAL_ADDRESS;
    double *acc = malloc((size_t)dv * sizeof *acc);
    if (!acc) return E_OUT_OF_MEMORY;
    CUresult rc = E_OK;
    for (uint32_t i = 0; i < nq && !rc; i++)
        for (uint32_t h = 0; h < nh && !rc; h++) {
            int64_t pos = (int64_t)(p0 + i);
            const float *qh = q + ((uint64_t)i * nh + h) * dk;
            double m = -INFINITY, l = 0;
            for (uint32_t t = 0; t < dv; t++) acc[t] = 0;
            for (int64_t j = 0; j <= pos; j++) {
                int32_t pg = bt[j / P];
                if (!visible(pos, j, win, snk) || pg < 0) continue;
                uint64_t slot = (uint64_t)(h / rep) * P + (uint64_t)j % P;
                const uint16_t *kr = dev_span(U64(2) + (uint64_t)pg * pbk + slot * dk * 2, 2ull * dk, "attention k row");
                const uint16_t *vr = dev_span(U64(3) + (uint64_t)pg * pbv + slot * dv * 2, 2ull * dv, "attention v row");
                if (!kr || !vr) { rc = E_ILLEGAL_ADDRESS; break; }
                double s = 0;
                for (uint32_t t = 0; t < dk; t++) s += (double)qh[t] * tf16_to_f32(kr[t]);
                s *= scale;
                double mn = s > m ? s : m, c = exp(m - mn), p = exp(s - mn);
                l = l * c + p;
                for (uint32_t t = 0; t < dv; t++) acc[t] = acc[t] * c + p * tf16_to_f32(vr[t]);
                m = mn;
            }
            float *o = out + ((uint64_t)i * nh + h) * dv;
            for (uint32_t t = 0; t < dv; t++) o[t] = l > 0 ? (float)(acc[t] / l) : 0.0f;
        }
    free(acc);
    return rc;
}

/* ptx/argmax.ptx tome_argmax_f32(out, x, n); grid 1, block 256; NaN counts as -inf */
static CUresult emu_argmax_f32(const geom *g, void **params) {
    if (!geom_ok(g, 0, 256, 0) || g->gx != 1) return bad_geom("tome_argmax_f32", g);
    uint32_t n = U32(2);
    if (!n) return fail(E_INVALID_VALUE, "tome_argmax_f32: %s", "n = 0");
    SPAN(o, int32_t *, U64(0), 4, "tome_argmax_f32 out");
    SPAN(x, const float *, U64(1), 4ull * n, "tome_argmax_f32 x");
    uint32_t best = 0;
    float bv = isnan(x[0]) ? -INFINITY : x[0];
    for (uint32_t i = 1; i < n; i++)
        if (!isnan(x[i]) && x[i] > bv) bv = x[i], best = i;
    *o = (int32_t)best;
    return E_OK;
}

/* ---- quantised KV rows (lib/kvcache.h layout; the row codec is kvcache.c's own
 * kv_quantize_row / kv_dequantize_row, the reference the kernels match byte for byte) ------- */

static uint64_t scale_row_bytes(uint32_t dt, uint32_t d) {
    return dt == 1 ? 2 : dt == 2 ? 4ull * ((d + KV_Q4_GROUP - 1) / KV_Q4_GROUP) : 0;
}

/* the value and scale bytes of row (kv head h, slot t) of a page */
typedef struct kvrow {
    uint8_t *vals;
    uint16_t *sc;
} kvrow;

static int kv_row(kvrow *r, CUdeviceptr page, uint64_t scales_off, uint32_t dt, uint32_t P, uint32_t h, uint32_t t,
                  uint32_t d, const char *what) {
    uint64_t idx = (uint64_t)h * P + t, rb = kv_row_bytes((kv_dtype)dt, (int)d), sb = scale_row_bytes(dt, d);
    r->vals = dev_span(page + idx * rb, rb, what);
    r->sc = sb ? dev_span(page + scales_off + idx * sb, sb, what) : NULL;
    return r->vals && (!sb || r->sc);
}


/* ptx/kv_quant.ptx tome_rope_kv_store(kdst, vdst, q, k, v, block_table, cs, page_bytes_k,
 * page_bytes_v, scales_off_k, scales_off_v, pos0, n_kv_head, n_head, head_dim, head_dim_v,
 * page_tokens, rope_dim, neox, dtype, pos_dev); grid (n, n_kv_head + n_head), block 32;
 * pos_dev != 0: the u64 there is added to pos0, read now (at replay for a graph) */
static CUresult emu_rope_kv_store(const geom *g, void **params) {
    uint64_t pbk = U64(7), pbv = U64(8), sok = U64(9), sov = U64(10), p0 = U64(11);
    if (U64(20)) {
        SPAN(pd, const uint64_t *, U64(20), 8, "tome_rope_kv_store pos_dev");
        p0 += *pd;
    }
    uint32_t nkv = U32(12), nh = U32(13), dk = U32(14), dv = U32(15), P = U32(16), rd = U32(17), nx = U32(18),
             dt = U32(19), n = g->gx;
    if (!geom_ok(g, 1, 32, 0) || g->gy != nkv + nh) return bad_geom("tome_rope_kv_store", g);
    if (dt > 2 || !P || !dk || !dv || dk > 512 || dv > 512 || dk % 2 || dv % 2 || rd % 2 || rd > dk)
        return fail(E_INVALID_VALUE, "tome_rope_kv_store: %s", "bad dtype / dims / rope_dim");
    if (sok != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dk, (int)P) ||
        sov != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dv, (int)P) ||
        pbk < kv_page_bytes((kv_dtype)dt, (int)nkv, (int)dk, (int)P) ||
        pbv < kv_page_bytes((kv_dtype)dt, (int)nkv, (int)dv, (int)P))
        return fail(E_INVALID_VALUE, "tome_rope_kv_store: %s", "scales offsets / page bytes disagree with kvcache.h");
    const float *cs = NULL;
    if (U64(6)) {
        SPAN(c, const float *, U64(6), 4ull * n * rd, "tome_rope_kv_store cs");
        cs = c;
    }
    SPAN(k, const float *, U64(3), 4ull * n * nkv * dk, "tome_rope_kv_store k");
    SPAN(v, const float *, U64(4), 4ull * n * nkv * dv, "tome_rope_kv_store v");
    const int32_t *bt = block_table(U64(5), p0 + n, P, "tome_rope_kv_store block_table");
    if (!bt) return E_ILLEGAL_ADDRESS;
    float *q = NULL;
    if (nh) {
        SPAN(qq, float *, U64(2), 4ull * n * nh * dk, "tome_rope_kv_store q");
        q = qq;
    }
    for (uint32_t j = 0; j < n; j++) {
        uint64_t p = p0 + j;
        if (q && cs) rope_apply_cs(cs + (uint64_t)j * rd, (int)rd, q + (uint64_t)j * nh * dk, (int)nh, (int)dk, (int)nx);
        int32_t pg = bt[p / P];
        if (pg < 0) continue;
        for (uint32_t h = 0; h < nkv; h++) {
            float *kr = malloc((size_t)dk * sizeof *kr);
            if (!kr) return E_OUT_OF_MEMORY;
            memcpy(kr, k + ((uint64_t)j * nkv + h) * dk, (size_t)dk * sizeof *kr);
            if (cs) rope_apply_cs(cs + (uint64_t)j * rd, (int)rd, kr, 1, (int)dk, (int)nx);
            kvrow rk, rv;
            int ok = kv_row(&rk, U64(0) + (uint64_t)pg * pbk, sok, dt, P, h, (uint32_t)(p % P), dk, "rope_kv_store k row") &&
                     kv_row(&rv, U64(1) + (uint64_t)pg * pbv, sov, dt, P, h, (uint32_t)(p % P), dv, "rope_kv_store v row");
            if (ok) {
                kv_quantize_row((kv_dtype)dt, kr, (int)dk, rk.vals, rk.sc);
                kv_quantize_row((kv_dtype)dt, v + ((uint64_t)j * nkv + h) * dv, (int)dv, rv.vals, rv.sc);
            }
            free(kr);
            if (!ok) return E_ILLEGAL_ADDRESS;
        }
    }
    return E_OK;
}

/* ptx/flash_decode.ptx tome_flash_decode(part_m, part_l, part_acc, q, k, v, block_table,
 * page_bytes_k, page_bytes_v, scales_off_k, scales_off_v, n_sink, win_lo, n_visible, chunk,
 * scale, n_head, rep, page_tokens, head_dim, head_dim_v, dtype, step); grid (n_kv_head,
 * n_splits); step != 0: {n_sink, win_lo, n_visible} read there now (at replay for a graph), the
 * chunk derived from them and the grid as the kernel does, trailing splits may be empty */
static CUresult emu_flash_decode(const geom *g, void **params) {
    uint64_t pbk = U64(7), pbv = U64(8), sok = U64(9), sov = U64(10), nsink = U64(11), winlo = U64(12),
             nvis = U64(13), chunk = U64(14);
    float scale = F32(15);
    uint32_t nh = U32(16), rep = U32(17), P = U32(18), dk = U32(19), dv = U32(20), dt = U32(21);
    uint32_t nkv = g->gx, S = g->gy;
    const int from_dev = U64(22) != 0;
    if (from_dev) {
        SPAN(st, const uint64_t *, U64(22), 24, "tome_flash_decode step");
        nsink = st[0], winlo = st[1], nvis = st[2];
        chunk = (nvis + S - 1) / S;
        chunk = (chunk < 64 ? 64 : chunk + 31) / 32 * 32;
    }
    if (!geom_ok(g, 1, 0, 32) || !rep || nkv * rep != nh) return bad_geom("tome_flash_decode", g);
    if (dt > 2 || !P || dk % 8 || dv % 8 || !dk || !dv || dk > 256 || dv > 256 || rep > 32 || rep * dk > 1024 ||
        rep * dv > 1024 || !chunk || (uint64_t)S * chunk < nvis || (!from_dev && (uint64_t)(S - 1) * chunk >= nvis))
        return fail(E_INVALID_VALUE, "tome_flash_decode: %s", "bad dtype / dims / chunking");
    if (sok != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dk, (int)P) ||
        sov != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dv, (int)P))
        return fail(E_INVALID_VALUE, "tome_flash_decode: %s", "scales offsets disagree with kvcache.h");
    SPAN(pm, float *, U64(0), 4ull * S * nh, "tome_flash_decode part_m");
    SPAN(pl, float *, U64(1), 4ull * S * nh, "tome_flash_decode part_l");
    SPAN(pacc, float *, U64(2), 4ull * S * nh * dv, "tome_flash_decode part_acc");
    SPAN(q, const float *, U64(3), 4ull * nh * dk, "tome_flash_decode q");
    uint64_t last_key = nvis > nsink ? winlo + nvis - nsink : nsink;
    const int32_t *bt = block_table(U64(6), last_key, P, "tome_flash_decode block_table");
    if (!bt) return E_ILLEGAL_ADDRESS;
    float *kf = malloc((size_t)(dk + dv) * sizeof *kf), *vf = kf + dk;
    if (!kf) return E_OUT_OF_MEMORY;
    for (uint32_t s = 0; s < S; s++)
        for (uint32_t h = 0; h < nh; h++) {
            float m = -INFINITY, l = 0, *acc = pacc + ((uint64_t)s * nh + h) * dv;
            for (uint32_t t = 0; t < dv; t++) acc[t] = 0;
            uint64_t end = (s + 1) * chunk < nvis ? (s + 1) * chunk : nvis;
            for (uint64_t i = (uint64_t)s * chunk; i < end; i++) {
                uint64_t key = i < nsink ? i : winlo + i - nsink;
                int32_t pg = bt[key / P];
                if (pg < 0) continue;
                kvrow rk, rv;
                if (!kv_row(&rk, U64(4) + (uint64_t)pg * pbk, sok, dt, P, h / rep, (uint32_t)(key % P), dk, "flash_decode k row") ||
                    !kv_row(&rv, U64(5) + (uint64_t)pg * pbv, sov, dt, P, h / rep, (uint32_t)(key % P), dv, "flash_decode v row")) {
                    free(kf);
                    return E_ILLEGAL_ADDRESS;
                }
                kv_dequantize_row((kv_dtype)dt, rk.vals, rk.sc, (int)dk, kf);
                kv_dequantize_row((kv_dtype)dt, rv.vals, rv.sc, (int)dv, vf);
                float dot = 0;
                for (uint32_t t = 0; t < dk; t++) dot += q[(uint64_t)h * dk + t] * kf[t];
                float x = scale * dot, mn = x > m ? x : m, c = expf(m - mn), p = expf(x - mn);
                l = l * c + p;
                for (uint32_t t = 0; t < dv; t++) acc[t] = acc[t] * c + p * vf[t];
                m = mn;
            }
            pm[(uint64_t)s * nh + h] = m;
            pl[(uint64_t)s * nh + h] = l;
        }
    free(kf);
    return E_OK;
}

/* ptx/flash_decode.ptx tome_lse_merge(out, part_m, part_l, part_acc, n_parts, n_head, dv);
 * grid (n_head), block 32k */
static CUresult emu_lse_merge(const geom *g, void **params) {
    uint32_t np = U32(4), nh = U32(5), dv = U32(6);
    if (!geom_ok(g, 0, 0, 32) || g->gx != nh) return bad_geom("tome_lse_merge", g);
    if (!np || !dv) return fail(E_INVALID_VALUE, "tome_lse_merge: %s", "no parts or dv = 0");
    SPAN(out, float *, U64(0), 4ull * nh * dv, "tome_lse_merge out");
    SPAN(pm, const float *, U64(1), 4ull * np * nh, "tome_lse_merge part_m");
    SPAN(pl, const float *, U64(2), 4ull * np * nh, "tome_lse_merge part_l");
    SPAN(pacc, const float *, U64(3), 4ull * np * nh * dv, "tome_lse_merge part_acc");
    for (uint32_t h = 0; h < nh; h++) {
        float M = -INFINITY, L = 0, *o = out + (uint64_t)h * dv;
        for (uint32_t s = 0; s < np; s++)
            if (pl[(uint64_t)s * nh + h] > 0 && pm[(uint64_t)s * nh + h] > M) M = pm[(uint64_t)s * nh + h];
        for (uint32_t t = 0; t < dv; t++) o[t] = 0;
        for (uint32_t s = 0; s < np; s++) {
            uint64_t i = (uint64_t)s * nh + h;
            if (!(pl[i] > 0)) continue;
            float w = expf(pm[i] - M);
            L += w * pl[i];
            for (uint32_t t = 0; t < dv; t++) o[t] += w * pacc[i * dv + t];
        }
        for (uint32_t t = 0; t < dv; t++) o[t] = L > 0 ? o[t] / L : 0.0f;
    }
    return E_OK;
}

/* ---- ptx/gemm.ptx: the tensor-core GEMM, emulated at the level the PTX works ---------------
 * Unlike the other emulators this one does not compute the CPU's answer directly: it runs the
 * kernel's design - per CTA, the cp.async producers of each thread (the weight windows, the
 * zero-fill at the end of the matrix, the XOR-swizzled shared-memory layout, the 3-stage
 * ring with wait_group 1), the dequantisation by each thread from the staged bytes, per warp
 * the ldmatrix.x4 addresses of each lane and the mma.m16n8k16 fragment ownership of the PTX
 * ISA, and the epilogue - so that the gpu_op_gemm_* tests (tests/test_cuda_gemm.c), which
 * compare with the CPU reference, check that design end to end without a GPU. Async copies
 * land only when the emulated wait_group says so: reading a stage too early reads stale
 * bytes. Warps whose rows or columns lie wholly outside the matrix are skipped (nothing they
 * compute is stored). */

#define GEMM_SMEM 90112u  /* A 3 x 8192, W raw 3 x 16384, W dequantised 16384 (gemm.ptx) */
#define GEMM_A_OFF 0u
#define GEMM_W_OFF 24576u
#define GEMM_WT_OFF 73728u

/* tome_gemm_cvt(dst, src, n2, bf16): dst[i] = f16/bf16 of src[i], i < 2 n2; block 256 */
static CUresult emu_gemm_cvt(const geom *g, void **params) {
    if (!geom_ok(g, 0, 256, 0)) return bad_geom("tome_gemm_cvt", g);
    uint32_t n2 = U32(2), bf = U32(3);
    if (!n2) return fail(E_INVALID_VALUE, "tome_gemm_cvt: %s", "n2 = 0");
    SPAN(dst, uint16_t *, U64(0), 4ull * n2, "tome_gemm_cvt dst");
    SPAN(src, const float *, U64(1), 8ull * n2, "tome_gemm_cvt src");
    for (uint64_t i = 0; i < 2ull * n2; i++) dst[i] = bf ? tf32_to_bf16(src[i]) : tf32_to_f16(src[i]);
    return E_OK;
}

typedef struct gemm_copy {
    uint32_t dst;        /* shared-memory offset */
    uint8_t bytes[16];   /* what the copy brings (global memory does not change during a kernel) */
} gemm_copy;

typedef struct gemm_cta {
    uint8_t smem[GEMM_SMEM];
    gemm_copy *q;        /* issued cp.async copies not yet landed, oldest first */
    size_t nq, capq;
    size_t *group_end;   /* nq at each commit_group, oldest first */
    size_t ng, capg;
    float acc[8][32][64];/* %c of each lane of each warp */
} gemm_cta;

static int gemm_push(gemm_cta *c, uint32_t dst, const uint8_t *src, uint32_t n) {
    if (dst % 16 || dst + 16 > GEMM_SMEM) return 0;
    if (c->nq == c->capq) {
        size_t cap = c->capq ? 2 * c->capq : 4096;
        gemm_copy *nq = realloc(c->q, cap * sizeof *nq);
        if (!nq) return 0;
        c->q = nq, c->capq = cap;
    }
    gemm_copy *p = &c->q[c->nq++];
    p->dst = dst;
    memset(p->bytes, 0, 16); /* cp.async zero-fills past src-size */
    if (n) memcpy(p->bytes, src, n);
    return 1;
}

static int gemm_commit(gemm_cta *c) {
    if (c->ng == c->capg) {
        size_t cap = c->capg ? 2 * c->capg : 16;
        size_t *ng = realloc(c->group_end, cap * sizeof *ng);
        if (!ng) return 0;
        c->group_end = ng, c->capg = cap;
    }
    c->group_end[c->ng++] = c->nq;
    return 1;
}

/* cp.async.wait_group n: every group but the n newest lands (in issue order). */
static void gemm_wait(gemm_cta *c, size_t n) {
    if (c->ng <= n) return;
    size_t upto = c->group_end[c->ng - n - 1];
    for (size_t i = 0; i < upto; i++) memcpy(c->smem + c->q[i].dst, c->q[i].bytes, 16);
    memmove(c->q, c->q + upto, (c->nq - upto) * sizeof *c->q);
    c->nq -= upto;
    memmove(c->group_end, c->group_end + c->ng - n, n * sizeof *c->group_end);
    c->ng = n;
    for (size_t i = 0; i < n; i++) c->group_end[i] -= upto;
}

typedef struct gemm_args {
    float *y;
    const uint16_t *a;
    const uint8_t *w;
    const float *bias, *res;
    uint64_t rb, wbytes;
    uint32_t type, M, N, K;
} gemm_args;

/* logical byte o of raw row r of the staged weights (chunk o >> 4 lives at chunk ^ (r & 7)) */
static uint32_t gemm_raw(uint32_t base, uint32_t r, uint32_t o) {
    return base + r * 128 + ((((o >> 4) ^ (r & 7)) << 4) | (o & 15));
}

/* The W producer of thread th for tile lk: cp.async of chunks j = (th & 1) + 2i. */
static int gemm_load_w(gemm_cta *c, const gemm_args *A, uint32_t n0, uint32_t th, uint32_t lk, uint32_t stage) {
    const uint32_t row = th >> 1, jpar = th & 1, t = A->type;
    uint32_t n = n0 + row < A->N ? n0 + row : A->N - 1;
    uint64_t R = (uint64_t)n * A->rb; /* offsets from w: the PTX's addresses minus the base */
    uint32_t nch = 4, e0 = 8, e1 = 8;
    uint64_t g0 = 0, g1 = 0, g2 = 0;
    const uint64_t wa = (uint64_t)(uintptr_t)A->w; /* 16-aligned: floor16 of an offset = of an address */
    switch (t) {
    case GGML_TYPE_Q8_0: nch = 3; g0 = ((wa + R + 34ull * lk) & ~15ull) - wa; break;
    case GGML_TYPE_Q4_K:
        nch = 3, e0 = 1;
        g0 = R + (uint64_t)(lk >> 3) * 144;
        g1 = g0 + 32ull * ((lk & 7) >> 1);
        break;
    case GGML_TYPE_Q6_K: {
        nch = 8, e0 = 3, e1 = 6;
        uint64_t B = wa + R + (uint64_t)(lk >> 3) * 210;
        uint32_t h = (lk & 7) >> 2, q = lk & 3;
        g0 = ((B + 64 * h + 32 * (q & 1)) & ~15ull) - wa;
        g1 = ((B + 128 + 32 * h) & ~15ull) - wa - 48;
        g2 = ((B + 192) & ~15ull) - wa - 96;
        break;
    }
    default: g0 = R + 64ull * lk; break; /* F16, BF16 */
    }
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t j = jpar + 2 * i;
        if (j >= nch) continue;
        uint64_t src = (j < e0 ? g0 : j < e1 ? g1 : g2) + 16ull * j;
        int64_t left = (int64_t)A->wbytes - (int64_t)src;
        uint32_t sz = left <= 0 ? 0 : left >= 16 ? 16 : (uint32_t)left;
        if (sz && src + sz > A->wbytes) return 0;
        if (!gemm_push(c, GEMM_W_OFF + stage * 16384 + row * 128 + ((j ^ (row & 7)) << 4), A->w + src, sz))
            return 0;
    }
    return 1;
}

/* Thread th dequantises values 16 (th & 1) .. +15 of row th >> 1 of tile kt (stage) into the W
 * tile, with the PTX's arithmetic (lib/quant.c's, then one f16 rounding). */
static void gemm_dequant(gemm_cta *c, const gemm_args *A, uint32_t n0, uint32_t th, uint32_t kt, uint32_t stage) {
    const uint32_t row = th >> 1, half = th & 1, base = GEMM_W_OFF + stage * 16384;
    const uint8_t *s = c->smem;
    uint32_t n = n0 + row < A->N ? n0 + row : A->N - 1;
    const uint64_t wa = (uint64_t)(uintptr_t)A->w + (uint64_t)n * A->rb;
    float v[16];
#define RAWB(o) s[gemm_raw(base, row, (o))]
#define RAWH(o) (uint16_t)(RAWB(o) | RAWB((o) + 1) << 8)
    if (A->type == GGML_TYPE_Q8_0) {
        uint32_t m = (uint32_t)((wa + 34ull * kt) & 15);
        float d = tf16_to_f32(RAWH(m));
        for (int i = 0; i < 16; i++) v[i] = (float)(int8_t)RAWB(m + 2 + 16 * half + i) * d;
    } else if (A->type == GGML_TYPE_Q4_K) {
        uint32_t sb = kt & 7, sc, mn;
        float d = tf16_to_f32(RAWH(0)), dmin = tf16_to_f32(RAWH(2));
        if (sb < 4) sc = RAWB(4 + sb) & 63, mn = RAWB(8 + sb) & 63;
        else {
            sc = (RAWB(8 + sb) & 15) | (uint32_t)(RAWB(sb) >> 6) << 4;
            mn = (RAWB(8 + sb) >> 4) | (uint32_t)(RAWB(4 + sb) >> 6) << 4;
        }
        float ds = d * (float)sc, ms = dmin * (float)mn;
        for (int i = 0; i < 16; i++) v[i] = ds * (float)((RAWB(16 + 16 * half + i) >> (4 * (sb & 1))) & 15) - ms;
    } else { /* Q6_K */
        uint64_t B = wa + (uint64_t)(kt >> 3) * 210;
        uint32_t h = (kt & 7) >> 2, q = kt & 3;
        uint32_t m0 = (uint32_t)((B + 64 * h + 32 * (q & 1)) & 15), m1 = (uint32_t)((B + 128 + 32 * h) & 15),
                 m2 = (uint32_t)((B + 192) & 15);
        float ds = tf16_to_f32(RAWH(96 + m2 + 16)) * (float)(int8_t)RAWB(96 + m2 + 8 * h + 2 * q + half);
        for (int i = 0; i < 16; i++) {
            uint32_t l = 16 * half + i;
            int code = (int)(((RAWB(m0 + l) >> (4 * (q >> 1))) & 15) | ((RAWB(48 + m1 + l) >> (2 * q)) & 3) << 4);
            v[i] = ds * (float)(code - 32);
        }
    }
#undef RAWB
#undef RAWH
    for (int i = 0; i < 16; i++) {
        uint32_t k = 16 * half + i, o = GEMM_WT_OFF + row * 128 + ((((k >> 3) ^ (row & 7)) << 4) | ((k & 7) * 2));
        uint16_t h16 = tf32_to_f16(v[i]);
        memcpy(c->smem + o, &h16, 2);
    }
}

/* ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 address the rows of matrix j; lane
 * L gets in register j the b32 at row (L >> 2) of matrix j, bytes 4 (L & 3). */
static int gemm_ldmatrix(const gemm_cta *c, const uint32_t addr[32], uint32_t reg[32][4]) {
    for (int l = 0; l < 32; l++)
        if (addr[l] % 16 || addr[l] + 16 > GEMM_SMEM) return 0;
    for (int l = 0; l < 32; l++)
        for (int j = 0; j < 4; j++) memcpy(&reg[l][j], c->smem + addr[8 * j + (l >> 2)] + 4 * (l & 3), 4);
    return 1;
}

static float gemm_half(uint32_t reg, int hi, int bf) {
    uint16_t h = (uint16_t)(hi ? reg >> 16 : reg & 0xFFFF);
    return bf ? tbf16_to_f32(h) : tf16_to_f32(h);
}

/* mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: D = A B + C from the lanes' fragments
 * (g = lane >> 2, q = lane & 3): A reg r half h = (row g + 8 (r & 1), k 2q + h + 8 (r >> 1)),
 * B reg r half h = (k 2q + h + 8 r, col g), C/D reg i = (row g + 8 (i >> 1), col 2q + (i & 1)).
 * Products of f16/bf16 values are exact in f32; the 16 are summed exactly (double), then added
 * to C with one rounding - the hardware's internal order differs in the last bits. */
static void gemm_mma(uint32_t a[32][4], uint32_t b[32][4], int bsel, float acc[32][64], int ci, int bf) {
    float Am[16][16], Bm[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, q = l & 3;
        for (int r = 0; r < 4; r++)
            for (int h = 0; h < 2; h++) Am[g + 8 * (r & 1)][2 * q + h + 8 * (r >> 1)] = gemm_half(a[l][r], h, bf);
        for (int r = 0; r < 2; r++)
            for (int h = 0; h < 2; h++) Bm[2 * q + h + 8 * r][g] = gemm_half(b[l][bsel + r], h, bf);
    }
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, q = l & 3;
        for (int i = 0; i < 4; i++) {
            int row = g + 8 * (i >> 1), col = 2 * q + (i & 1);
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)Am[row][k] * Bm[k][col];
            acc[l][ci + i] = (float)((double)acc[l][ci + i] + s);
        }
    }
}

static int gemm_overlap(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) { return a < b + bn && b < a + an; }

/* tome_gemm(y, a, w, bias, res, row_bytes, type, m, n, k); grid (ceil(n/128), ceil(m/128)),
 * block 256, 90112 bytes of dynamic shared memory */
static CUresult emu_gemm(const geom *g, void **params) {
    gemm_args A = {0};
    A.rb = U64(5);
    A.type = U32(6), A.M = U32(7), A.N = U32(8), A.K = U32(9);
    const uint32_t t = A.type;
    if (!A.M || !A.N || g->gx != (A.N + 127) / 128 || g->gy != (A.M + 127) / 128 || g->gz != 1 || g->bx != 256 ||
        g->by != 1 || g->bz != 1 || g->smem != GEMM_SMEM)
        return bad_geom("tome_gemm", g);
    if (t != GGML_TYPE_F16 && t != GGML_TYPE_BF16 && t != GGML_TYPE_Q8_0 && t != GGML_TYPE_Q4_K && t != GGML_TYPE_Q6_K)
        return fail(E_INVALID_VALUE, "tome_gemm: %s", "unsupported weight type");
    if (!A.K || A.K % 32 || ((t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K) && A.K % 256) ||
        A.rb != ggml_row_size((enum ggml_type)t, A.K) || U64(2) % 16)
        return fail(E_INVALID_VALUE, "tome_gemm: %s", "k, row_bytes or weight alignment breaks the ABI");
    A.wbytes = (uint64_t)A.N * A.rb;
    const uint64_t ybytes = 4ull * A.M * A.N;
    SPAN(y, float *, U64(0), ybytes, "tome_gemm y");
    SPAN(a, const uint16_t *, U64(1), 2ull * A.M * A.K, "tome_gemm a");
    SPAN(w, const uint8_t *, U64(2), A.wbytes, "tome_gemm w");
    A.y = y, A.a = a, A.w = w;
    if (U64(3)) {
        SPAN(b, const float *, U64(3), 4ull * A.N, "tome_gemm bias");
        A.bias = b;
    }
    if (U64(4)) {
        SPAN(r, const float *, U64(4), ybytes, "tome_gemm res");
        A.res = r;
        if (U64(4) != U64(0) && gemm_overlap(U64(4), ybytes, U64(0), ybytes))
            return fail(E_INVALID_VALUE, "tome_gemm: %s", "res partly overlaps y");
    }
    if (gemm_overlap(U64(0), ybytes, U64(1), 2ull * A.M * A.K) || gemm_overlap(U64(0), ybytes, U64(2), A.wbytes) ||
        (A.bias && gemm_overlap(U64(0), ybytes, U64(3), 4ull * A.N)))
        return fail(E_INVALID_VALUE, "tome_gemm: %s", "y overlaps an input read through the non-coherent path");
    const int bf = t == GGML_TYPE_BF16, quant = t != GGML_TYPE_F16 && !bf;
    const uint32_t KT = A.K / 32;
    gemm_cta *c = calloc(1, sizeof *c);
    if (!c) return E_OUT_OF_MEMORY;
    CUresult rc = E_OK;
    uint32_t areg[32][4], breg[2][32][4], addr[32];
    for (uint32_t by = 0; by < g->gy && !rc; by++)
        for (uint32_t bx = 0; bx < g->gx && !rc; bx++) {
            const uint32_t m0 = by * 128, n0 = bx * 128;
            memset(c->smem, 0xA5, sizeof c->smem); /* shared memory starts as garbage */
            c->nq = c->ng = 0;
            memset(c->acc, 0, sizeof c->acc);
            uint32_t sl = 0, sc = 0;
            for (int kt = -2; kt < (int)KT && !rc; kt++) {
                if (kt >= 0) gemm_wait(c, 1); /* + bar.sync: the loop below is every thread in turn */
                const int lk = kt + 2;
                if (lk < (int)KT) {
                    for (uint32_t th = 0; th < 256 && !rc; th++) {
                        uint32_t r = th >> 2, ch = th & 3, dA = r * 64 + ((ch ^ ((r >> 1) & 3)) << 4);
                        for (uint32_t hh = 0; hh < 2; hh++) {
                            uint32_t m = m0 + r + 64 * hh < A.M ? m0 + r + 64 * hh : A.M - 1;
                            const uint8_t *src = (const uint8_t *)(A.a + (uint64_t)m * A.K) + 64ull * lk + 16 * ch;
                            if (src + 16 > (const uint8_t *)(A.a + (uint64_t)A.M * A.K)) rc = E_ILLEGAL_ADDRESS;
                            if (!gemm_push(c, GEMM_A_OFF + sl * 8192 + dA + 4096 * hh, src, 16)) rc = E_OUT_OF_MEMORY;
                        }
                        if (!rc && !gemm_load_w(c, &A, n0, th, (uint32_t)lk, sl)) {
                            fprintf(stderr, "fake_cuda: tome_gemm: a weight window leaves the matrix\n");
                            rc = E_ILLEGAL_ADDRESS;
                        }
                    }
                    sl = sl == 2 ? 0 : sl + 1;
                }
                if (!gemm_commit(c)) rc = E_OUT_OF_MEMORY;
                if (kt < 0 || rc) continue;
                uint32_t aA = GEMM_A_OFF + sc * 8192, aB = GEMM_W_OFF + sc * 16384;
                if (quant) {
                    for (uint32_t th = 0; th < 256; th++) gemm_dequant(c, &A, n0, th, (uint32_t)kt, sc);
                    aB = GEMM_WT_OFF;
                }
                for (uint32_t wp = 0; wp < 8 && !rc; wp++) {
                    const uint32_t wm = wp >> 2, wn = wp & 3;
                    if (m0 + wm * 64 >= A.M || n0 + wn * 32 >= A.N) continue;
                    for (uint32_t ks = 0; ks < 2 && !rc; ks++) {
                        for (int p = 0; p < 2; p++) {
                            for (uint32_t l = 0; l < 32; l++) {
                                uint32_t row = wn * 32 + (l & 7) + 8 * (l >> 4) + 16 * p, ch = 2 * ks + ((l >> 3) & 1);
                                addr[l] = aB + row * 128 + ((ch ^ (row & 7)) << 4);
                            }
                            if (!gemm_ldmatrix(c, addr, breg[p])) rc = E_ILLEGAL_ADDRESS;
                        }
                        for (int mt = 0; mt < 4 && !rc; mt++) {
                            for (uint32_t l = 0; l < 32; l++) {
                                uint32_t row = wm * 64 + 16 * mt + (l & 15), ch = 2 * ks + (l >> 4);
                                addr[l] = aA + row * 64 + ((ch ^ ((row >> 1) & 3)) << 4);
                            }
                            if (!gemm_ldmatrix(c, addr, areg)) rc = E_ILLEGAL_ADDRESS;
                            for (int nt = 0; nt < 4 && !rc; nt++)
                                gemm_mma(areg, breg[nt >> 1], 2 * (nt & 1), c->acc[wp], 16 * mt + 4 * nt, bf);
                        }
                    }
                }
                sc = sc == 2 ? 0 : sc + 1;
            }
            gemm_wait(c, 0);
            /* epilogue: lane (g, q) of warp (wm, wn) owns rows m0 + 64 wm + 16 mt + g (+8) and
             * columns n0 + 32 wn + 8 nt + 2q (+1) */
            for (uint32_t wp = 0; wp < 8 && !rc; wp++)
                for (uint32_t l = 0; l < 32; l++)
                    for (uint32_t ci = 0; ci < 64; ci++) {
                        uint32_t mt = ci >> 4, nt = (ci >> 2) & 3, i = ci & 3;
                        uint32_t m = m0 + (wp >> 2) * 64 + 16 * mt + (l >> 2) + 8 * (i >> 1);
                        uint32_t n = n0 + (wp & 3) * 32 + 8 * nt + 2 * (l & 3) + (i & 1);
                        if (m >= A.M || n >= A.N) continue;
                        float v = c->acc[wp][l][ci];
                        if (A.bias) v += A.bias[n];
                        if (A.res) v += A.res[(uint64_t)m * A.N + n];
                        A.y[(uint64_t)m * A.N + n] = v;
                    }
        }
    free(c->q);
    free(c->group_end);
    free(c);
    return rc;
}

/* ---- ptx/flash_prefill.ptx: FlashAttention-2 on the tensor cores, emulated as the PTX runs it.
 * Unlike the emulators above (which compute what the CPU reference computes), this one follows
 * the kernel's design step by step so that comparing it with kvcache.c's f32 attention tests
 * the design: per CTA the Q tile staged as f16 in shared memory and read into each lane's
 * registers with ldmatrix, K/V tiles copied into the two shared stages (f16 bytes as they are,
 * q8/q4 rows dequantised as the PTX does and rounded to f16), per warp and lane the
 * m16n8k16 fragments in the PTX ISA's layouts (ldmatrix .x4 with and without .trans gathering
 * from the lanes' row addresses, the MMA itself rebuilt from and scattered to the fragments),
 * the mask, the online softmax with the butterfly shuffles, P rounded to f16 in the
 * registers, and the final O / l. Shared-memory addresses are checked (16-byte aligned, inside
 * the 69632 bytes, the 8 rows of each ldmatrix phase on distinct bank groups) as are the page
 * bytes read (inside an allocation, aligned as cp.async needs). ex2.approx is exp2f here and the MMA sums in
 * float: only last-bit differences separate this from the GPU if the PTX matches its design. */

#define FP_SMEM 69632u   /* dynamic shared memory: 2 stages x (K | V) x 64 rows x 272 bytes */
#define FP_ROW 272u      /* bytes per shared row (128 f16 + 16 padding) */
#define FP_STAGE 34816u
#define FP_VOFF 17408u

typedef struct fp_cta {
    uint8_t sm[FP_SMEM];
    uint32_t qf[4][32][8][4]; /* [warp][lane][k-step][a0..a3] */
    float o[4][32][64], s[4][32][32], m[4][32][2], l[4][32][2];
} fp_cta;

static uint32_t fp_pack(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }
static float fp_lo(uint32_t x) { return tf16_to_f32((uint16_t)(x & 0xFFFF)); }
static float fp_hi(uint32_t x) { return tf16_to_f32((uint16_t)(x >> 16)); }
/* cvt.rn.f16x2.f32 d, hi, lo */
static uint32_t fp_cvt2(float hi, float lo) { return fp_pack(tf32_to_f16(lo), tf32_to_f16(hi)); }

/* ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane 8i + r gives the byte address of row r
 * of matrix i; result i of lane t is (row t/4, columns 2(t%4), +1) of matrix i, or with .trans
 * (rows 2(t%4), +1, column t/4). Returns 0 on a misaligned or out-of-range address. */
static int fp_ldmatrix(const fp_cta *c, const uint32_t addr[32], int trans, uint32_t r[32][4]) {
    for (int i = 0; i < 4; i++) {
        uint16_t mt[8][8];
        unsigned groups = 0; /* 16-byte bank groups (of 8) the matrix's rows hit */
        for (int row = 0; row < 8; row++) {
            uint32_t a = addr[8 * i + row];
            if (a % 16 || a + 16 > FP_SMEM) {
                fprintf(stderr, "fake_cuda: tome_flash_prefill: ldmatrix row address %u\n", a);
                return 0;
            }
            groups |= 1u << (a / 16 % 8);
            memcpy(mt[row], c->sm + a, 16);
        }
        if (groups != 0xFF) { /* the design promises conflict-free ldmatrix phases */
            fprintf(stderr, "fake_cuda: tome_flash_prefill: ldmatrix bank conflict (rows at %u, %u, ...)\n",
                    addr[8 * i], addr[8 * i + 1]);
            return 0;
        }
        for (int t = 0; t < 32; t++)
            r[t][i] = trans ? fp_pack(mt[2 * (t % 4)][t / 4], mt[2 * (t % 4) + 1][t / 4])
                            : fp_pack(mt[t / 4][2 * (t % 4)], mt[t / 4][2 * (t % 4) + 1]);
    }
    return 1;
}

/* mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 d = a b + d; a[lane][4], b[lane][2] are
 * the lanes' fragment registers, d[lane * dstride + 0..3] the accumulators. */
static void fp_mma(float *d, int dstride, const uint32_t a[32][4], uint32_t b0[32], uint32_t b1[32]) {
    float A[16][16], B[16][8], C[16][8];
    for (int t = 0; t < 32; t++) {
        int g = t >> 2, q = t & 3;
        A[g][2 * q] = fp_lo(a[t][0]), A[g][2 * q + 1] = fp_hi(a[t][0]);
        A[g + 8][2 * q] = fp_lo(a[t][1]), A[g + 8][2 * q + 1] = fp_hi(a[t][1]);
        A[g][2 * q + 8] = fp_lo(a[t][2]), A[g][2 * q + 9] = fp_hi(a[t][2]);
        A[g + 8][2 * q + 8] = fp_lo(a[t][3]), A[g + 8][2 * q + 9] = fp_hi(a[t][3]);
        B[2 * q][g] = fp_lo(b0[t]), B[2 * q + 1][g] = fp_hi(b0[t]);
        B[2 * q + 8][g] = fp_lo(b1[t]), B[2 * q + 9][g] = fp_hi(b1[t]);
        const float *dt = d + (size_t)t * dstride;
        C[g][2 * q] = dt[0], C[g][2 * q + 1] = dt[1], C[g + 8][2 * q] = dt[2], C[g + 8][2 * q + 1] = dt[3];
    }
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 8; n++) {
            float acc = 0; /* f16 x f16 products are exact in f32 */
            for (int k = 0; k < 16; k++) acc += A[r][k] * B[k][n];
            C[r][n] += acc;
        }
    for (int t = 0; t < 32; t++) {
        int g = t >> 2, q = t & 3;
        float *dt = d + (size_t)t * dstride;
        dt[0] = C[g][2 * q], dt[1] = C[g][2 * q + 1], dt[2] = C[g + 8][2 * q], dt[3] = C[g + 8][2 * q + 1];
    }
}

typedef struct fp_args {
    CUdeviceptr kb, vb;
    const int32_t *bt;
    uint64_t pbk, pbv, sok, sov;
    uint32_t P, dk, dv, dt, gkv, kvlen;
} fp_args;

#define FP_RAW FP_STAGE           /* q8/q4 staging area: raw values K [64][128], V at +8192 */
#define FP_RAWSC (FP_STAGE + 16384u) /* raw scales K [64][16], V at +1024 */

/* Copies `bytes` from device address src (which must be `align`-aligned and inside an
 * allocation) to shared offset dst, or zeros when !valid: one cp.async (src-size 0 fills). */
static int fp_cp(fp_cta *c, uint32_t dst, CUdeviceptr src, uint32_t bytes, uint32_t align, int valid) {
    if (dst % bytes || dst + bytes > FP_SMEM) {
        fprintf(stderr, "fake_cuda: tome_flash_prefill: cp.async to shared offset %u\n", dst);
        return 0;
    }
    if (!valid) {
        memset(c->sm + dst, 0, bytes);
        return 1;
    }
    if (src % align) {
        fprintf(stderr, "fake_cuda: tome_flash_prefill: cp.async source 0x%llx not %u-byte aligned\n", src, align);
        return 0;
    }
    const void *p = dev_span(src, bytes, "tome_flash_prefill page bytes");
    if (!p) return 0;
    memcpy(c->sm + dst, p, bytes);
    return 1;
}

/* The LOAD block: starts the copies of key tile t. Row r of the tile (thread (r % 8) * 16 + ch,
 * iteration r / 8) is key 64t + r; it is valid when the key is stored and its page is live,
 * else zero-filled. f16: chunk ch (8 values, 16 bytes) of K when 8 ch < dk, of V when
 * 8 ch < dv, to the stage at byte offset so. q8 / q4: the raw value bytes (8 / 4 per chunk) to
 * the staging area, plus the scales: q8 the aligned 4-byte word holding d (chunk 0's thread),
 * q4 the (d, m) word of group g < ceil(D / 32) (thread ch = g). */
static int fp_load(fp_cta *c, const fp_args *A, uint32_t t, uint32_t so) {
    for (uint32_t r = 0; r < 64; r++) {
        uint32_t key = 64 * t + r;
        int32_t page = key < A->kvlen ? A->bt[key / A->P] : -1;
        int ok = page >= 0;
        uint32_t ridx = A->gkv * A->P + key % A->P; /* row of (kv head, slot) in the page */
        for (int wh = 0; wh < 2; wh++) {
            uint32_t D = wh ? A->dv : A->dk, G = (D + 31) / 32;
            CUdeviceptr pg = (wh ? A->vb : A->kb) + (uint64_t)(ok ? page : 0) * (wh ? A->pbv : A->pbk);
            uint64_t sc = wh ? A->sov : A->sok;
            for (uint32_t ch = 0; ch < 16; ch++) {
                if (8 * ch >= D) continue;
                int good;
                if (A->dt == 0)
                    good = fp_cp(c, so + r * FP_ROW + (wh ? FP_VOFF : 0) + 16 * ch, pg + ((uint64_t)ridx * D + 8 * ch) * 2,
                                 16, 16, ok);
                else if (A->dt == 1)
                    good = fp_cp(c, FP_RAW + (wh ? 8192 : 0) + r * 128 + 8 * ch, pg + (uint64_t)ridx * D + 8 * ch, 8, 8, ok);
                else
                    good = fp_cp(c, FP_RAW + (wh ? 8192 : 0) + r * 128 + 4 * ch, pg + (uint64_t)ridx * D / 2 + 4 * ch, 4, 4,
                                 ok);
                if (!good) return 0;
            }
            if (A->dt == 1 && !fp_cp(c, FP_RAWSC + (wh ? 1024 : 0) + r * 16, pg + sc + ((uint64_t)ridx * 2 & ~3ull), 4, 4, ok))
                return 0;
            for (uint32_t gi = 0; A->dt == 2 && gi < G; gi++)
                if (!fp_cp(c, FP_RAWSC + (wh ? 1024 : 0) + r * 16 + 4 * gi, pg + sc + ((uint64_t)ridx * G + gi) * 4, 4, 4, ok))
                    return 0;
        }
    }
    return 1;
}

/* The DEQ block: the staged q8 / q4 tile t -> f16 rows of stage 0: q8 x = d * q with d the
 * half of the scale word that ridx's parity picks, q4 x = d * q + m with the (d, m) of group
 * ch / 4; in f32, then cvt.rn to f16 (kvcache.c's arithmetic). */
static void fp_deq(fp_cta *c, const fp_args *A, uint32_t t) {
    for (uint32_t r = 0; r < 64; r++) {
        uint32_t ridx = A->gkv * A->P + (64 * t + r) % A->P;
        for (int wh = 0; wh < 2; wh++) {
            uint32_t D = wh ? A->dv : A->dk;
            const uint8_t *raw = c->sm + FP_RAW + (wh ? 8192 : 0) + r * 128;
            const uint8_t *scw = c->sm + FP_RAWSC + (wh ? 1024 : 0) + r * 16;
            uint8_t *dst = c->sm + r * FP_ROW + (wh ? FP_VOFF : 0);
            for (uint32_t ch = 0; 8 * ch < D; ch++) {
                float x[8];
                if (A->dt == 1) {
                    uint16_t h[2];
                    memcpy(h, scw, 4);
                    float d = tf16_to_f32(h[ridx & 1]);
                    for (int i = 0; i < 8; i++) x[i] = d * (float)(int8_t)raw[8 * ch + i];
                } else {
                    uint16_t h[2];
                    memcpy(h, scw + 4 * (ch / 4), 4);
                    float d = tf16_to_f32(h[0]), m = tf16_to_f32(h[1]);
                    for (int i = 0; i < 8; i++) {
                        uint8_t b = raw[4 * ch + i / 2];
                        x[i] = d * (float)(i % 2 ? b >> 4 : b & 15) + m;
                    }
                }
                for (int i = 0; i < 8; i++) {
                    uint16_t hv = tf32_to_f16(x[i]);
                    memcpy(dst + 16 * ch + 2 * i, &hv, 2);
                }
            }
        }
    }
}

/* ptx/flash_prefill.ptx tome_flash_prefill(out, q, k, v, block_table, page_bytes_k,
 * page_bytes_v, scales_off_k, scales_off_v, pos0, n_q, qscale, n_head, rep, page_tokens,
 * head_dim, head_dim_v, window, sinks, dtype); grid (ceil(n_q rep / 64), n_kv_head), block
 * 128, dynamic shared memory 69632 */
static CUresult emu_flash_prefill(const geom *g, void **params) {
    uint64_t pbk = U64(5), pbv = U64(6), sok = U64(7), sov = U64(8);
    uint32_t pos0 = U32(9), nq = U32(10), nh = U32(12), rep = U32(13), P = U32(14), dk = U32(15), dv = U32(16),
             W = U32(17), S = U32(18), dt = U32(19);
    float qscale = F32(11);
    if (!rep || !nq || nh % rep || (uint64_t)nq * rep > INT32_MAX || (uint64_t)pos0 + nq > INT32_MAX)
        return fail(E_INVALID_VALUE, "tome_flash_prefill: %s", "bad n_q / n_head / rep / pos0");
    uint32_t nkv = nh / rep, nrows = nq * rep;
    if (g->gx != (nrows + 63) / 64 || g->gy != nkv || g->gz != 1 || g->bx != 128 || g->by != 1 || g->bz != 1 ||
        g->smem != FP_SMEM)
        return bad_geom("tome_flash_prefill", g);
    if (dt > 2 || !P || P > 1024 || dk % 16 || dv % 16 || !dk || !dv || dk > 128 || dv > 128)
        return fail(E_INVALID_VALUE, "tome_flash_prefill: %s", "bad dtype / page_tokens / head dims");
    if (sok != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dk, (int)P) ||
        sov != kv_scales_offset((kv_dtype)dt, (int)nkv, (int)dv, (int)P) ||
        pbk < kv_page_bytes((kv_dtype)dt, (int)nkv, (int)dk, (int)P) ||
        pbv < kv_page_bytes((kv_dtype)dt, (int)nkv, (int)dv, (int)P) || pbk % 16 || pbv % 16 || U64(2) % 16 ||
        U64(3) % 16)
        return fail(E_INVALID_VALUE, "tome_flash_prefill: %s", "scales offsets / page bytes / alignment disagree with kvcache.h");
    SPAN(out, float *, U64(0), 4ull * nq * nh * dv, "tome_flash_prefill out");
    SPAN(q, const float *, U64(1), 4ull * nq * nh * dk, "tome_flash_prefill q");
    if (U64(1) % 16) return fail(E_INVALID_VALUE, "tome_flash_prefill: %s", "q not 16-byte aligned (ld.v4)");
    uint32_t kvlen = pos0 + nq;
    const int32_t *bt = block_table(U64(4), kvlen, P, "tome_flash_prefill block_table");
    if (!bt) return E_ILLEGAL_ADDRESS;
    fp_cta *c = malloc(sizeof *c);
    if (!c) return E_OUT_OF_MEMORY;
    CUresult rc = E_OK;
    const uint32_t nks = dk / 16, nvs = dv / 16;
    for (uint32_t gkv = 0; gkv < nkv && !rc; gkv++)
        for (uint32_t cx = 0; cx < g->gx && !rc; cx++) {
            fp_args A = {U64(2), U64(3), bt, pbk, pbv, sok, sov, P, dk, dv, dt, gkv, kvlen};
            memset(c->sm, 0xA5, sizeof c->sm); /* shared memory starts as garbage */
            uint32_t R0 = cx * 64, R1 = (R0 + 64 < nrows ? R0 + 64 : nrows) - 1;
            uint32_t qlo = pos0 + R0 / rep, qhi = pos0 + R1 / rep;
            int32_t g0 = 0, g1 = 0;
            if (W) {
                int32_t lo = (int32_t)qlo - (int32_t)W + 1, hi = (int32_t)qhi - (int32_t)W + 1;
                lo = lo > 0 ? lo : 0, hi = hi > 0 ? hi : 0;
                g1 = lo >> 6;
                g0 = (int32_t)(((uint32_t)hi < S ? (uint32_t)hi : S) + 63) >> 6;
            }
            const uint32_t tlast = qhi >> 6;
#define FP_ADV(x) ((int32_t)(x) >= g0 && (int32_t)(x) < g1 ? (uint32_t)g1 : (x))
            uint32_t tcur = FP_ADV(0u), stg = 0;
            if (!fp_load(c, &A, tcur, 0)) { rc = E_ILLEGAL_ADDRESS; break; }
            /* Q tile -> f16 (q * qscale rounded), zero rows past the end / dims past dk; staged in
             * stage 1 for f16 pages (tile tcur is in stage 0), stage 0 for q8/q4 (their raw tile
             * is in stage 1's region) */
            const uint32_t qst = dt == 0 ? FP_STAGE : 0;
            for (uint32_t r = 0; r < 64; r++)
                for (uint32_t ch = 0; ch < 16; ch++) {
                    uint16_t h[8] = {0};
                    uint32_t R = R0 + r;
                    if (R < nrows && 8 * ch < dk) {
                        const float *src = q + ((uint64_t)(R / rep) * nh + gkv * rep + R % rep) * dk + 8 * ch;
                        for (int i = 0; i < 8; i++) h[i] = tf32_to_f16(src[i] * qscale);
                    }
                    memcpy(c->sm + qst + r * FP_ROW + 16 * ch, h, 16);
                }
            for (int w = 0; w < 4; w++) {
                uint32_t addr[32], frag[32][4];
                for (uint32_t ks = 0; ks < nks && !rc; ks++) {
                    for (int l = 0; l < 32; l++)
                        addr[l] = qst + (16 * w + (l & 7) + 8 * ((l >> 3) & 1)) * FP_ROW + 16 * (l >> 4) + 32 * ks;
                    if (!fp_ldmatrix(c, addr, 0, frag)) rc = E_ILLEGAL_ADDRESS;
                    for (int l = 0; l < 32; l++) memcpy(c->qf[w][l][ks], frag[l], sizeof frag[l]);
                }
                for (int l = 0; l < 32; l++) {
                    for (int i = 0; i < 64; i++) c->o[w][l][i] = 0;
                    c->m[w][l][0] = c->m[w][l][1] = -INFINITY;
                    c->l[w][l][0] = c->l[w][l][1] = 0;
                }
            }
            for (;;) {
                if (rc) break;
                if (dt) fp_deq(c, &A, tcur); /* after the loop-top barrier: raw bytes -> stage 0 */
                uint32_t tnxt = FP_ADV(tcur + 1);
                int more = tnxt <= tlast;
                /* the next tile's copies start (f16: into the other stage; q8/q4: into the
                 * staging area, free again after DEQ's barrier) while this one is computed */
                if (more && !fp_load(c, &A, tnxt, stg ^ FP_STAGE)) { rc = E_ILLEGAL_ADDRESS; break; }
                const uint32_t kb = 64 * tcur;
                for (int w = 0; w < 4 && !rc; w++) {
                    float (*s)[32] = c->s[w];
                    uint32_t addr[32], b[32][4], b0[32], b1[32], b2[32], b3[32], a[32][4];
                    memset(c->s[w], 0, sizeof c->s[w]);
                    /* S = Q K^T */
                    for (uint32_t ks = 0; ks < nks && !rc; ks++)
                        for (int j = 0; j < 4; j++) {
                            for (int l = 0; l < 32; l++)
                                addr[l] = stg + (16 * j + (l & 7) + 8 * (l >> 4)) * FP_ROW + 16 * ((l >> 3) & 1) + 32 * ks;
                            if (!fp_ldmatrix(c, addr, 0, b)) { rc = E_ILLEGAL_ADDRESS; break; }
                            for (int l = 0; l < 32; l++) {
                                memcpy(a[l], c->qf[w][l][ks], sizeof a[l]);
                                b0[l] = b[l][0], b1[l] = b[l][1], b2[l] = b[l][2], b3[l] = b[l][3];
                            }
                            fp_mma(&s[0][8 * j], 32, a, b0, b1);
                            fp_mma(&s[0][8 * j + 4], 32, a, b2, b3);
                        }
                    /* mask, per lane: rows A (g) and B (g + 8) of the warp */
                    float mx[32][2];
                    for (int l = 0; l < 32; l++) {
                        uint32_t RA = R0 + 16 * w + (l >> 2), RB = RA + 8, last = nrows - 1;
                        int32_t pos[2] = {(int32_t)(pos0 + (RA < last ? RA : last) / rep),
                                          (int32_t)(pos0 + (RB < last ? RB : last) / rep)};
                        int32_t u = (int32_t)kb + 2 * (l & 3);
                        if (kb + 63 > qlo || W)
                            for (int half = 0; half < 2; half++) {
                                int32_t lo = 0, ns = 0;
                                if (W) {
                                    lo = pos[half] - (int32_t)W + 1;
                                    lo = lo > 0 ? lo : 0;
                                    ns = (int32_t)S < lo ? (int32_t)S : lo;
                                }
                                for (int nt = 0; nt < 8; nt++)
                                    for (int e = 0; e < 2; e++) {
                                        int32_t idx = 8 * nt + e;
                                        float *x = &s[l][4 * nt + 2 * half + e];
                                        if (pos[half] - u < idx) *x = -INFINITY;
                                        if (W && lo - u > idx && ns - u <= idx) *x = -INFINITY;
                                    }
                            }
                        mx[l][0] = mx[l][1] = -INFINITY;
                        for (int nt = 0; nt < 8; nt++)
                            for (int e = 0; e < 2; e++) {
                                mx[l][0] = fmaxf(mx[l][0], s[l][4 * nt + e]);
                                mx[l][1] = fmaxf(mx[l][1], s[l][4 * nt + 2 + e]);
                            }
                    }
                    /* shfl.sync.bfly 1 then 2: the four lanes of a row agree on its max */
                    for (int x = 1; x <= 2; x *= 2) {
                        float t2[32][2];
                        for (int l = 0; l < 32; l++)
                            for (int h = 0; h < 2; h++) t2[l][h] = fmaxf(mx[l][h], mx[l ^ x][h]);
                        memcpy(mx, t2, sizeof mx);
                    }
                    for (int l = 0; l < 32; l++)
                        for (int h = 0; h < 2; h++) {
                            float mn = fmaxf(mx[l][h], c->m[w][l][h]);
                            float mu = mn == -INFINITY ? 0.0f : mn;
                            float cr = exp2f(c->m[w][l][h] - mu);
                            c->m[w][l][h] = mn;
                            float lsum = c->l[w][l][h] * cr;
                            for (int nt = 0; nt < 8; nt++)
                                for (int e = 0; e < 2; e++) {
                                    float *x = &s[l][4 * nt + 2 * h + e];
                                    *x = exp2f(*x - mu);
                                }
                            for (int nt = 0; nt < 8; nt++)
                                for (int e = 0; e < 2; e++) lsum += s[l][4 * nt + 2 * h + e];
                            c->l[w][l][h] = lsum;
                            for (int nt = 0; nt < 16; nt++)
                                for (int e = 0; e < 2; e++) c->o[w][l][4 * nt + 2 * h + e] *= cr;
                        }
                    /* O += P V: P from the S registers as f16 pairs, V through ldmatrix.trans */
                    for (int kk = 0; kk < 4 && !rc; kk++) {
                        for (int l = 0; l < 32; l++)
                            for (int r = 0; r < 4; r++) a[l][r] = fp_cvt2(s[l][8 * kk + 2 * r + 1], s[l][8 * kk + 2 * r]);
                        for (uint32_t cc = 0; cc < nvs; cc++) {
                            for (int l = 0; l < 32; l++)
                                addr[l] = stg + FP_VOFF + (16 * kk + (l & 7) + 8 * ((l >> 3) & 1)) * FP_ROW + 16 * (l >> 4) +
                                          32 * cc;
                            if (!fp_ldmatrix(c, addr, 1, b)) { rc = E_ILLEGAL_ADDRESS; break; }
                            for (int l = 0; l < 32; l++) b0[l] = b[l][0], b1[l] = b[l][1], b2[l] = b[l][2], b3[l] = b[l][3];
                            fp_mma(&c->o[w][0][8 * cc], 64, a, b0, b1);
                            fp_mma(&c->o[w][0][8 * cc + 4], 64, a, b2, b3);
                        }
                    }
                }
                if (!more) break;
                tcur = tnxt;
                if (!dt) stg ^= FP_STAGE; /* q8/q4 always compute from stage 0 */
            }
#undef FP_ADV
            if (rc) break;
            /* l summed over the row's four lanes (bfly 1, 2); out = O * (1 / l) */
            for (int w = 0; w < 4; w++) {
                float lt[32][2];
                memcpy(lt, c->l[w], sizeof lt);
                for (int x = 1; x <= 2; x *= 2) {
                    float t2[32][2];
                    for (int l = 0; l < 32; l++)
                        for (int h = 0; h < 2; h++) t2[l][h] = lt[l][h] + lt[l ^ x][h];
                    memcpy(lt, t2, sizeof lt);
                }
                for (int l = 0; l < 32; l++)
                    for (int h = 0; h < 2; h++) {
                        uint32_t R = R0 + 16 * w + (l >> 2) + 8 * h;
                        if (R >= nrows) continue;
                        float inv = lt[l][h] > 0 ? 1.0f / lt[l][h] : 0.0f;
                        float *o = out + ((uint64_t)(R / rep) * nh + gkv * rep + R % rep) * dv + 2 * (l & 3);
                        for (uint32_t nt = 0; nt < dv / 8; nt++) {
                            o[8 * nt] = c->o[w][l][4 * nt + 2 * h] * inv;
                            o[8 * nt + 1] = c->o[w][l][4 * nt + 2 * h + 1] * inv;
                        }
                    }
            }
        }
    free(c);
    return rc;
}

/* ---- modules and launches ---------------------------------------------------------------- */

typedef struct kernel {
    const char *name;
    emu_fn run;
} kernel;

static const kernel k_kernels[] = {
    {"tome_add_f32", emu_add_f32},
    {"tome_swiglu_f32", emu_swiglu_f32},
    {"tome_rmsnorm_f32", emu_rmsnorm_f32},
    {"tome_matmul", emu_matmul},
    {"tome_embed", emu_embed},
    {"tome_rope", emu_rope},
    {"tome_kv_store_f16", emu_kv_store_f16},
    {"tome_attention_f16", emu_attention_f16},
    {"tome_argmax_f32", emu_argmax_f32},
    {"tome_rope_kv_store", emu_rope_kv_store},
    {"tome_flash_decode", emu_flash_decode},
    {"tome_flash_decode_v1", emu_flash_decode}, /* the same ABI and results */
    {"tome_lse_merge", emu_lse_merge},
    {"tome_flash_prefill", emu_flash_prefill},
    {"tome_gemm_cvt", emu_gemm_cvt},
    {"tome_gemm", emu_gemm},
};
#define N_KERNELS (sizeof k_kernels / sizeof *k_kernels)

/* A module is its image: PTX text is searched for ".entry NAME(" so the host must ask the
 * module that really holds a kernel; a cubin (ELF) image is taken on trust. */
CUresult cuModuleLoadDataEx(void **m, const void *image, unsigned n, int *opts, void **vals) {
    (void)n, (void)opts, (void)vals;
    if (!image) return E_INVALID_VALUE;
    *m = (void *)image;
    return E_OK;
}
CUresult cuModuleUnload(void *m) { return m ? E_OK : E_INVALID_HANDLE; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
    *f = NULL;
    if (!m) return E_INVALID_HANDLE;
    const char *img = m;
    int elf = memcmp(img, "\x7f" "ELF", 4) == 0;
    for (size_t i = 0; i < N_KERNELS; i++) {
        if (strcmp(name, k_kernels[i].name)) continue;
        char pat[96];
        snprintf(pat, sizeof pat, ".entry %s(", name);
        if (!elf && !strstr(img, pat)) return E_NOT_FOUND;
        *f = (void *)&k_kernels[i];
        return E_OK;
    }
    return E_NOT_FOUND;
}
CUresult cuFuncSetAttribute(void *f, int attr, int value) {
    (void)attr, (void)value;
    return f ? E_OK : E_INVALID_HANDLE;
}

static CUresult capture_node_launch(const kernel *k, const geom *g, void **params);

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
    (void)stream;
    const kernel *k = f;
    if (!k || k < k_kernels || k >= k_kernels + N_KERNELS)
        return fail(E_INVALID_HANDLE, "cuLaunchKernel: %s", "not a function from cuModuleGetFunction");
    if (!params || extra) return fail(E_INVALID_VALUE, "%s: params missing or extra given", k->name);
    if (gy > 65535 || gz > 65535 || (uint64_t)bx * by * bz > 1024)
        return fail(E_INVALID_VALUE, "%s: grid or block beyond the hardware limits", k->name);
    geom g = {gx, gy, gz, bx, by, bz, smem};
    if (g_capturing) return capture_node_launch(k, &g, params);
    CUresult r = k->run(&g, params);
    if (r) fprintf(stderr, "fake_cuda: launch of %s failed (error %d)\n", k->name, r);
    return r;
}

/* ---- CUDA graphs: stream capture, instantiation, replay ----------------------------------
 * A captured launch keeps copies of its parameter VALUES (as the driver's kernel nodes do), so
 * a graph replays the scalars it was captured with and reads device memory when it runs: a
 * host that baked a per-step value into a captured parameter gets stale results here as on a
 * GPU. Copying a parameter needs its size: k_param_sigs lists each kernel's ABI (Q = 8 bytes,
 * U / F = 4, in the order of its ptx/NAME.ptx header); a kernel missing there cannot be
 * captured (the capture fails and says so, and the host falls back to plain launches). */

static const struct {
    const char *name, *sig;
} k_param_sigs[] = {
    {"tome_add_f32", "QQQU"},
    {"tome_swiglu_f32", "QQQU"},
    {"tome_rmsnorm_f32", "QQQUF"},
    {"tome_matmul", "QQQQQUUUU"},
    {"tome_embed", "QQQQUUU"},
    {"tome_rope", "QQUUUU"},
    {"tome_kv_store_f16", "QQQQQUUU"},
    {"tome_attention_f16", "QQQQQQQQFUUUUUUU"},
    {"tome_argmax_f32", "QQU"},
    {"tome_rope_kv_store", "QQQQQQQQQQQQUUUUUUUUQ"},
    {"tome_flash_decode", "QQQQQQQQQQQQQQQFUUUUUUQ"},
    {"tome_flash_decode_v1", "QQQQQQQQQQQQQQQFUUUUUUQ"},
    {"tome_lse_merge", "QQQQUUU"},
};

enum { MAX_NODE_PARAMS = 40 };

typedef struct gnode {
    const kernel *k; /* NULL: a copy (src != 0) or memset */
    geom g;
    int n_params;
    uint64_t vals[MAX_NODE_PARAMS]; /* each parameter's bytes, low bytes first */
    CUdeviceptr dst, src;
    size_t bytes;
    int is_set;
    unsigned char v;
} gnode;

typedef struct fgraph {
    gnode *nodes;
    size_t n, cap;
} fgraph;

static fgraph *g_cap; /* the graph being captured */

static CUresult capture_push(const gnode *nd) {
    if (g_cap->n == g_cap->cap) {
        size_t cap = g_cap->cap ? 2 * g_cap->cap : 256;
        gnode *nn = realloc(g_cap->nodes, cap * sizeof *nn);
        if (!nn) return E_OUT_OF_MEMORY;
        g_cap->nodes = nn, g_cap->cap = cap;
    }
    g_cap->nodes[g_cap->n++] = *nd;
    return E_OK;
}

static CUresult capture_node_launch(const kernel *k, const geom *g, void **params) {
    const char *sig = NULL;
    for (size_t i = 0; i < sizeof k_param_sigs / sizeof *k_param_sigs; i++)
        if (!strcmp(k_param_sigs[i].name, k->name)) sig = k_param_sigs[i].sig;
    if (!sig || strlen(sig) > MAX_NODE_PARAMS) {
        fprintf(stderr, "fake_cuda: %s has no parameter signature in k_param_sigs: it cannot be captured\n", k->name);
        g_capture_bad = 1;
        return E_CAPTURE_UNSUPPORTED;
    }
    gnode nd;
    memset(&nd, 0, sizeof nd);
    nd.k = k, nd.g = *g, nd.n_params = (int)strlen(sig);
    for (int i = 0; i < nd.n_params; i++) memcpy(&nd.vals[i], params[i], sig[i] == 'Q' ? 8 : 4);
    CUresult r = capture_push(&nd);
    if (r) g_capture_bad = 1;
    return r;
}

static CUresult capture_node_copy(CUdeviceptr dst, CUdeviceptr src, size_t n, int is_set, unsigned char v) {
    /* checked now, as the real driver validates a node's addresses when it is added */
    if (!dev_span(dst, n, "captured copy dst") || (!is_set && !dev_span(src, n, "captured copy src"))) {
        g_capture_bad = 1;
        return E_INVALID_VALUE;
    }
    gnode nd;
    memset(&nd, 0, sizeof nd);
    nd.dst = dst, nd.src = src, nd.bytes = n, nd.is_set = is_set, nd.v = v;
    CUresult r = capture_push(&nd);
    if (r) g_capture_bad = 1;
    return r;
}

/* FAKE_CUDA_GRAPHS=fail makes every capture fail (the host's fallback path is tested with it). */
CUresult cuStreamBeginCapture_v2(void *stream, int mode) {
    (void)stream;
    const char *f = getenv("FAKE_CUDA_GRAPHS");
    if (f && !strcmp(f, "fail")) return E_NOT_SUPPORTED;
    if (g_capturing || (mode != 0 && mode != 1 && mode != 2)) return E_INVALID_VALUE;
    g_cap = calloc(1, sizeof *g_cap);
    if (!g_cap) return E_OUT_OF_MEMORY;
    g_capturing = 1, g_capture_bad = 0;
    return E_OK;
}

CUresult cuStreamEndCapture(void *stream, void **graph) {
    (void)stream;
    *graph = NULL;
    if (!g_capturing) return E_INVALID_VALUE;
    g_capturing = 0;
    if (g_capture_bad) {
        free(g_cap->nodes);
        free(g_cap);
        g_cap = NULL;
        return E_CAPTURE_INVALIDATED;
    }
    *graph = g_cap;
    g_cap = NULL;
    return E_OK;
}

static fgraph *graph_copy(const fgraph *gr) {
    fgraph *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->nodes = malloc((gr->n ? gr->n : 1) * sizeof *x->nodes);
    if (!x->nodes) { free(x); return NULL; }
    if (gr->n) memcpy(x->nodes, gr->nodes, gr->n * sizeof *x->nodes);
    x->n = x->cap = gr->n;
    return x;
}

static void graph_free(fgraph *gr) {
    if (!gr) return;
    free(gr->nodes);
    free(gr);
}

CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
    *exec = NULL;
    if (!graph || flags) return E_INVALID_VALUE;
    *exec = graph_copy(graph);
    return *exec ? E_OK : E_OUT_OF_MEMORY;
}

CUresult cuGraphLaunch(void *exec, void *stream) {
    (void)stream;
    const fgraph *x = exec;
    if (!x) return E_INVALID_HANDLE;
    if (capture_refuses("cuGraphLaunch")) return E_CAPTURE_UNSUPPORTED;
    for (size_t i = 0; i < x->n; i++) {
        const gnode *nd = &x->nodes[i];
        CUresult r;
        if (nd->k) {
            void *params[MAX_NODE_PARAMS];
            uint64_t vals[MAX_NODE_PARAMS];
            memcpy(vals, nd->vals, sizeof vals); /* a kernel emulator only reads its parameters */
            for (int j = 0; j < nd->n_params; j++) params[j] = &vals[j];
            r = nd->k->run(&nd->g, params);
            if (r) fprintf(stderr, "fake_cuda: graph node %zu (%s) failed (error %d)\n", i, nd->k->name, r);
        } else if (nd->is_set) {
            r = cuMemsetD8Async(nd->dst, nd->v, nd->bytes, stream);
        } else {
            r = cuMemcpyDtoDAsync_v2(nd->dst, nd->src, nd->bytes, stream);
        }
        if (r) return r;
    }
    return E_OK;
}

CUresult cuGraphExecDestroy(void *exec) {
    if (!exec) return E_INVALID_HANDLE;
    graph_free(exec);
    return E_OK;
}

CUresult cuGraphDestroy(void *graph) {
    if (!graph) return E_INVALID_HANDLE;
    graph_free(graph);
    return E_OK;
}

#else
typedef int fake_cuda_not_built_here; /* an empty translation unit is not ISO C */
#endif

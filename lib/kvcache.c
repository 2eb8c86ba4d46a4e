/* kvcache.c — see kvcache.h for the page layout, the error bounds and the threading rules.
 *
 * Attention walks a sequence's block table page by page; inside a page it takes a tile of up
 * to KV_TILE keys of one kv head (contiguous bytes, thanks to the head-major layout),
 * dequantises each K row once for all the query heads of its GQA group, updates their online
 * softmax (running max m, sum l, unnormalised acc) once per tile, then streams the V rows.
 * Nothing is gathered into a contiguous copy. With AVX2 the tile is dequantised once into a
 * float buffer on the stack (up to 64 KiB; see "decode: one query position" below); the
 * portable path dequantises row by row. Prefill (kv_attend_block) does the same for blocks of
 * queries sharing each tile, with the tile dequantised into heap scratch (see "prefill: a
 * block of queries" below).
 *
 * Page size (KV_DEFAULT_PAGE_TOKENS = 64): decode attention for one query over 65536 keys,
 * 8B-class shape (32 q / 8 kv heads, d 128), one thread, AVX2 path, thread CPU time, best of 9,
 * on the 2-core shared dev VM (noise ~10%), ms per call for P = 16 / 32 / 64 / 128 / 256:
 *   f16  97 / 91 / 92 / 86 / 84     q8  123 / 102 / 78 / 74 / 75     q4  131 / 109 / 96 / 97 / 100
 * (shuffled block tables: the same within noise). Small pages pay a softmax update and row
 * setup per page (a tile never spans pages): 16 is ~1.3-1.6x slower, 32 ~1.2x; from 64 up it
 * is flat. 64 is the smallest page on the plateau, which keeps copy on write cheap (a shared
 * partial page costs P tokens x all layers: 4.1 MiB in q8 for an 8B model) and the slack per
 * sequence at most 63 tokens; a 64-key page is also one tile of a GPU decode block.
 */
#include "kvcache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define KV_HAVE_AVX2 1 /* kernels carry target attributes; kv_open checks the CPU */
#define KV_TGT __attribute__((target("avx2,fma,f16c")))

/* cpuid + xgetbv by hand: clang's __builtin_cpu_supports does not know "f16c". */
static int cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned xlo, xhi;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6) != 6) return 0; /* the OS saves XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
}
#else
#define KV_HAVE_AVX2 0
#endif

#define KV_TILE 64      /* keys per softmax update: bounds the stack scores buffer */
_Static_assert(KV_TILE % 16 == 0, "score rows pad to whole vectors (softmax_tile) and 16-key blocks (qb_scores)");
#define KV_MAX_GQA 128  /* query heads per kv head handled in one pass */

/* ---- f16 helpers --------------------------------------------------------------------------- */

/* Branchless binary16 -> float (exact, subnormals included): the vectoriser can use it. */
static inline float h2f(uint16_t h) {
    uint32_t em = (uint32_t)(h & 0x7FFFu) << 13, bits;
    float f;
    memcpy(&f, &em, 4);
    f *= 0x1p112f; /* rebias the exponent; subnormal halves become normal floats exactly */
    memcpy(&bits, &f, 4);
    if ((h & 0x7C00u) == 0x7C00u) bits |= 0x7F800000u; /* inf / nan stay inf / nan */
    bits |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &bits, 4);
    return f;
}

/* Smallest half >= x, for x >= 0 (x <= 65504). */
static uint16_t f16_up(float x) {
    uint16_t h = tf32_to_f16(x);
    if (tf16_to_f32(h) < x) h++;
    return h;
}

/* Largest half <= x (|x| <= 65504). */
static uint16_t f16_down(float x) {
    uint16_t h = tf32_to_f16(x);
    if (tf16_to_f32(h) > x) h = (h & 0x8000u) ? (uint16_t)(h + 1) : (uint16_t)(h - 1);
    return h;
}

/* ---- sizes ------------------------------------------------------------------------------- */

static int n_groups(int d) { return (d + KV_Q4_GROUP - 1) / KV_Q4_GROUP; }

size_t kv_row_bytes(kv_dtype dt, int d) {
    switch (dt) {
    case KV_F16: return (size_t)d * 2;
    case KV_Q8: return (size_t)d;
    case KV_Q4: return (size_t)d / 2;
    }
    return 0;
}

/* Scale bytes per row: q8 one f16, q4 a (d, m) f16 pair per group. */
static size_t scale_row_bytes(kv_dtype dt, int d) {
    return dt == KV_Q8 ? 2 : dt == KV_Q4 ? (size_t)n_groups(d) * 4 : 0;
}

size_t kv_scales_offset(kv_dtype dt, int n_kv_head, int d, int P) {
    size_t v = (size_t)n_kv_head * P * kv_row_bytes(dt, d);
    return (v + 15) & ~(size_t)15;
}

size_t kv_page_bytes(kv_dtype dt, int n_kv_head, int d, int P) {
    size_t b = kv_scales_offset(dt, n_kv_head, d, P) +
               (size_t)n_kv_head * P * scale_row_bytes(dt, d);
    return (b + KV_PAGE_ALIGN - 1) / KV_PAGE_ALIGN * KV_PAGE_ALIGN;
}

size_t kv_bytes_per_token(int n_layer, int n_kv_head, int d, kv_dtype dt) {
    return (size_t)n_layer * 2 * n_kv_head * (kv_row_bytes(dt, d) + scale_row_bytes(dt, d));
}

/* ---- pool and sequences --------------------------------------------------------------------- */

int kv_open(kv_cache *c, const kv_config *cfg, terr *e) {
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    kv_config *k = &c->cfg;
    if (k->head_dim_v == 0) k->head_dim_v = k->head_dim;
    if (k->n_layer <= 0 || k->n_kv_head <= 0)
        return terr_set(e, TOME_EINPUT, "kv cache: n_layer %d and n_kv_head %d must be > 0",
                        k->n_layer, k->n_kv_head);
    if (k->head_dim <= 0 || k->head_dim % 2 || k->head_dim > KV_MAX_HEAD_DIM ||
        k->head_dim_v <= 0 || k->head_dim_v % 2 || k->head_dim_v > KV_MAX_HEAD_DIM)
        return terr_set(e, TOME_EINPUT, "kv cache: head dims %d/%d must be even and <= %d",
                        k->head_dim, k->head_dim_v, KV_MAX_HEAD_DIM);
    if (k->page_tokens < 1 || k->page_tokens > 1024)
        return terr_set(e, TOME_EINPUT, "kv cache: page size %d tokens not in [1, 1024]",
                        k->page_tokens);
    if (k->dtype != KV_F16 && k->dtype != KV_Q8 && k->dtype != KV_Q4)
        return terr_set(e, TOME_EINPUT, "kv cache: unknown dtype %d", (int)k->dtype);
    if (k->n_pages <= 0 || k->n_pages > INT32_MAX)
        return terr_set(e, TOME_EINPUT, "kv cache: %lld pages not in [1, 2^31)",
                        (long long)k->n_pages);
    c->row_bytes_k = kv_row_bytes(k->dtype, k->head_dim);
    c->row_bytes_v = kv_row_bytes(k->dtype, k->head_dim_v);
    c->page_bytes_k = kv_page_bytes(k->dtype, k->n_kv_head, k->head_dim, k->page_tokens);
    c->page_bytes_v = kv_page_bytes(k->dtype, k->n_kv_head, k->head_dim_v, k->page_tokens);
    c->scales_off_k = kv_scales_offset(k->dtype, k->n_kv_head, k->head_dim, k->page_tokens);
    c->scales_off_v = kv_scales_offset(k->dtype, k->n_kv_head, k->head_dim_v, k->page_tokens);

#if KV_HAVE_AVX2
    c->simd = !k->force_scalar && cpu_has_avx2_fma_f16c();
#endif
    size_t np = (size_t)k->n_pages;
    c->refcount = tcalloc(np, sizeof(int32_t));
    c->free_ids = tmalloc_array(np, sizeof(int32_t));
    if (!c->refcount || !c->free_ids) goto oom;
    for (size_t i = 0; i < np; i++) c->free_ids[i] = (int32_t)(np - 1 - i); /* pop 0 first */
    c->n_free = k->n_pages;
    if (!k->no_storage) {
        c->k = tcalloc((size_t)k->n_layer, sizeof(uint8_t *));
        c->v = tcalloc((size_t)k->n_layer, sizeof(uint8_t *));
        if (!c->k || !c->v) goto oom;
        for (int l = 0; l < k->n_layer; l++) {
            c->k[l] = tcalloc(np, c->page_bytes_k);
            c->v[l] = tcalloc(np, c->page_bytes_v);
            if (!c->k[l] || !c->v[l]) goto oom;
        }
    }
    return 0;
oom:;
    double total = (double)np * (double)(c->page_bytes_k + c->page_bytes_v) * k->n_layer;
    kv_close(c);
    return terr_set(e, TOME_ERESOURCE,
                    "kv cache: cannot allocate %lld pages x %d layers (%.1f MiB)",
                    (long long)np, cfg->n_layer, total / 1048576.0);
}

void kv_close(kv_cache *c) {
    if (c->k || c->v) {
        for (int l = 0; l < c->cfg.n_layer; l++) {
            if (c->k) free(c->k[l]);
            if (c->v) free(c->v[l]);
        }
    }
    free(c->k);
    free(c->v);
    free(c->refcount);
    free(c->free_ids);
    for (ptrdiff_t i = 0; i < arrlen(c->seqs); i++) arrfree(c->seqs[i].pages);
    arrfree(c->seqs);
    memset(c, 0, sizeof *c);
}

static kv_seq *get_seq(const kv_cache *c, int seq) {
    if (seq < 0 || seq >= arrlen(c->seqs) || !c->seqs[seq].live) return NULL;
    return &c->seqs[seq];
}

static int new_slot(kv_cache *c) {
    for (ptrdiff_t i = 0; i < arrlen(c->seqs); i++)
        if (!c->seqs[i].live) return (int)i;
    kv_seq z = {0};
    arrput(c->seqs, z);
    return (int)arrlen(c->seqs) - 1;
}

int kv_seq_new(kv_cache *c, int *seq, terr *e) {
    (void)e;
    int id = new_slot(c);
    c->seqs[id].live = 1;
    c->seqs[id].len = 0;
    *seq = id;
    return 0;
}

int kv_seq_fork(kv_cache *c, int src, int64_t n_tokens, int *dst, terr *e) {
    const kv_seq *s = get_seq(c, src);
    if (!s) return terr_set(e, TOME_EINPUT, "kv cache: fork of unknown sequence %d", src);
    if (n_tokens < 0) n_tokens = s->len;
    if (n_tokens > s->len)
        return terr_set(e, TOME_EINPUT, "kv cache: fork of %lld tokens from a sequence of %lld",
                        (long long)n_tokens, (long long)s->len);
    int id = new_slot(c); /* may move c->seqs: index it afresh below */
    kv_seq *d = &c->seqs[id];
    int64_t np = (n_tokens + c->cfg.page_tokens - 1) / c->cfg.page_tokens;
    for (int64_t i = 0; i < np; i++) {
        int32_t p = c->seqs[src].pages[i];
        arrput(d->pages, p);
        if (p >= 0) c->refcount[p]++; /* a hole stays a hole */
    }
    d->len = n_tokens;
    d->live = 1;
    *dst = id;
    return 0;
}

static void release_page(kv_cache *c, int32_t p) {
    if (p < 0) return; /* a hole left by kv_seq_drop_page */
    if (--c->refcount[p] == 0) c->free_ids[c->n_free++] = p;
}

int kv_seq_drop_page(kv_cache *c, int seq, int64_t slot) {
    kv_seq *s = get_seq(c, seq);
    if (!s || slot < 0 || slot >= arrlen(s->pages) || s->pages[slot] < 0) return 0;
    release_page(c, s->pages[slot]);
    s->pages[slot] = -1;
    return 1;
}

void kv_seq_free(kv_cache *c, int seq) {
    kv_seq *s = get_seq(c, seq);
    if (!s) return;
    for (ptrdiff_t i = 0; i < arrlen(s->pages); i++) release_page(c, s->pages[i]);
    arrfree(s->pages);
    s->len = 0;
    s->live = 0;
}

static void copy_page(kv_cache *c, int32_t dst, int32_t src) {
    if (c->cfg.no_storage) {
        if (c->cfg.copy_page) c->cfg.copy_page(c->cfg.copy_user, dst, src);
        return;
    }
    for (int l = 0; l < c->cfg.n_layer; l++) {
        memcpy(c->k[l] + (size_t)dst * c->page_bytes_k, c->k[l] + (size_t)src * c->page_bytes_k,
               c->page_bytes_k);
        memcpy(c->v[l] + (size_t)dst * c->page_bytes_v, c->v[l] + (size_t)src * c->page_bytes_v,
               c->page_bytes_v);
    }
}

int kv_seq_append(kv_cache *c, int seq, int64_t n, terr *e) {
    kv_seq *s = get_seq(c, seq);
    if (!s) return terr_set(e, TOME_EINPUT, "kv cache: append to unknown sequence %d", seq);
    if (n < 0) return terr_set(e, TOME_EINPUT, "kv cache: append of %lld tokens", (long long)n);
    if (n == 0) return 0;
    const int64_t P = c->cfg.page_tokens;
    int64_t have = arrlen(s->pages), need = (s->len + n + P - 1) / P;
    /* A shared partial last page is copied first; a dropped one (a hole) gets a fresh page. */
    int cow = s->len % P != 0 && (s->pages[have - 1] < 0 || c->refcount[s->pages[have - 1]] > 1);
    int64_t want = need - have + cow;
    if (want > c->n_free)
        return terr_set(e, TOME_ERESOURCE,
                        "kv cache full: %lld more tokens need %lld pages of %d tokens, %lld free "
                        "of %lld",
                        (long long)n, (long long)want, c->cfg.page_tokens, (long long)c->n_free,
                        (long long)c->cfg.n_pages);
    if (cow) {
        int32_t old = s->pages[have - 1], p = c->free_ids[--c->n_free];
        if (old >= 0) {
            copy_page(c, p, old);
            c->refcount[old]--; /* was > 1: never reaches 0 here */
        }
        c->refcount[p] = 1;
        s->pages[have - 1] = p;
    }
    for (int64_t i = have; i < need; i++) {
        int32_t p = c->free_ids[--c->n_free];
        c->refcount[p] = 1;
        arrput(s->pages, p);
    }
    s->len += n;
    return 0;
}

int kv_seq_truncate(kv_cache *c, int seq, int64_t n, terr *e) {
    kv_seq *s = get_seq(c, seq);
    if (!s) return terr_set(e, TOME_EINPUT, "kv cache: truncate of unknown sequence %d", seq);
    if (n < 0 || n > s->len)
        return terr_set(e, TOME_EINPUT, "kv cache: truncate to %lld of a sequence of %lld",
                        (long long)n, (long long)s->len);
    int64_t keep = (n + c->cfg.page_tokens - 1) / c->cfg.page_tokens;
    while (arrlen(s->pages) > keep) release_page(c, arrpop(s->pages));
    s->len = n;
    return 0;
}

int64_t kv_seq_len(const kv_cache *c, int seq) {
    const kv_seq *s = get_seq(c, seq);
    return s ? s->len : -1;
}

const int32_t *kv_seq_pages(const kv_cache *c, int seq, int64_t *n_pages) {
    const kv_seq *s = get_seq(c, seq);
    *n_pages = s ? arrlen(s->pages) : 0;
    return s ? s->pages : NULL;
}

/* ---- rows: quantise, dequantise -------------------------------------------------------------- */

/* Row (head h, slot t) of one page: values and scale pointers. */
typedef struct rowref {
    uint8_t *vals;
    uint16_t *sc;
} rowref;

static rowref row_at(uint8_t *page, size_t row_bytes, size_t scales_off, size_t sc_row, int P,
                     int h, int t) {
    rowref r;
    size_t idx = (size_t)h * P + t;
    r.vals = page + idx * row_bytes;
    r.sc = (uint16_t *)(page + scales_off + idx * sc_row);
    return r;
}

void kv_quantize_row(kv_dtype dt, const float *x, int d, uint8_t *vals, uint16_t *sc) {
    rowref r = {vals, sc};
    if (dt == KV_F16) {
        uint16_t *o = (uint16_t *)r.vals;
        for (int i = 0; i < d; i++) o[i] = tf32_to_f16(x[i]);
    } else if (dt == KV_Q8) {
        float amax = 0;
        for (int i = 0; i < d; i++) amax = fmaxf(amax, fabsf(x[i]));
        uint16_t dh = f16_up(fminf(amax / 127.0f, 65504.0f));
        float dd = tf16_to_f32(dh);
        int8_t *o = (int8_t *)r.vals;
        for (int i = 0; i < d; i++) {
            float q = dd > 0 ? rintf(x[i] / dd) : 0.0f;
            o[i] = (int8_t)fminf(127.0f, fmaxf(-127.0f, q));
        }
        r.sc[0] = dh;
    } else {
        int G = n_groups(d);
        memset(r.vals, 0, (size_t)d / 2);
        for (int g = 0; g < G; g++) {
            int a = g * KV_Q4_GROUP, b = TOME_MIN(d, a + KV_Q4_GROUP);
            float mn = x[a], mx = x[a];
            for (int i = a; i < b; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
            uint16_t mh = f16_down(fmaxf(mn, -65504.0f));
            float mm = tf16_to_f32(mh);
            uint16_t dh = f16_up(fminf((mx - mm) / 15.0f, 65504.0f));
            float dd = tf16_to_f32(dh);
            for (int i = a; i < b; i++) {
                float q = dd > 0 ? rintf((x[i] - mm) / dd) : 0.0f;
                int qi = (int)fminf(15.0f, fmaxf(0.0f, q));
                r.vals[i >> 1] |= (uint8_t)(qi << ((i & 1) * 4));
            }
            r.sc[2 * g] = dh;
            r.sc[2 * g + 1] = mh;
        }
    }
}

void kv_dequantize_row(kv_dtype dt, const uint8_t *vals, const uint16_t *sc, int d, float *out) {
    if (dt == KV_F16) {
        const uint16_t *h = (const uint16_t *)vals;
        for (int i = 0; i < d; i++) out[i] = h2f(h[i]);
    } else if (dt == KV_Q8) {
        const int8_t *q = (const int8_t *)vals;
        float dd = h2f(sc[0]);
        for (int i = 0; i < d; i++) out[i] = dd * (float)q[i];
    } else {
        for (int a = 0, g = 0; a < d; a += KV_Q4_GROUP, g++) {
            float dd = h2f(sc[2 * g]), mm = h2f(sc[2 * g + 1]);
            int b = TOME_MIN(d, a + KV_Q4_GROUP);
            for (int i = a; i < b; i += 2) {
                uint8_t byte = vals[i >> 1];
                out[i] = dd * (float)(byte & 15) + mm;
                out[i + 1] = dd * (float)(byte >> 4) + mm;
            }
        }
    }
}

int kv_store(kv_cache *c, int seq, int layer, int64_t pos0, int64_t n, const float *k,
             const float *v) {
    const kv_seq *s = get_seq(c, seq);
    if (!s || layer < 0 || layer >= c->cfg.n_layer || pos0 < 0 || n < 0 || pos0 + n > s->len ||
        c->cfg.no_storage)
        return TOME_EINPUT;
    const int P = c->cfg.page_tokens, H = c->cfg.n_kv_head, dk = c->cfg.head_dim,
              dv = c->cfg.head_dim_v;
    const kv_dtype dt = c->cfg.dtype;
    const size_t sk = scale_row_bytes(dt, dk), sv = scale_row_bytes(dt, dv);
    for (int64_t j = 0; j < n; j++) {
        int64_t pos = pos0 + j;
        int32_t page = s->pages[pos / P];
        if (page < 0 || c->refcount[page] != 1) return TOME_EINPUT; /* hole, or shared: would change a sibling */
        int t = (int)(pos % P);
        uint8_t *kp = c->k[layer] + (size_t)page * c->page_bytes_k;
        uint8_t *vp = c->v[layer] + (size_t)page * c->page_bytes_v;
        for (int h = 0; h < H; h++) {
            rowref rk = row_at(kp, c->row_bytes_k, c->scales_off_k, sk, P, h, t);
            rowref rv = row_at(vp, c->row_bytes_v, c->scales_off_v, sv, P, h, t);
            kv_quantize_row(dt, k + ((size_t)j * H + h) * dk, dk, rk.vals, rk.sc);
            kv_quantize_row(dt, v + ((size_t)j * H + h) * dv, dv, rv.vals, rv.sc);
        }
    }
    return 0;
}

int kv_load_row(const kv_cache *c, int seq, int layer, int64_t pos, int kv_head, float *k,
                float *v) {
    const kv_seq *s = get_seq(c, seq);
    if (!s || layer < 0 || layer >= c->cfg.n_layer || pos < 0 || pos >= s->len || kv_head < 0 ||
        kv_head >= c->cfg.n_kv_head || c->cfg.no_storage)
        return TOME_EINPUT;
    const int P = c->cfg.page_tokens;
    const kv_dtype dt = c->cfg.dtype;
    int32_t page = s->pages[pos / P];
    if (page < 0) return TOME_EINPUT; /* a dropped page */
    int t = (int)(pos % P);
    if (k) {
        rowref r = row_at(c->k[layer] + (size_t)page * c->page_bytes_k, c->row_bytes_k,
                          c->scales_off_k, scale_row_bytes(dt, c->cfg.head_dim), P, kv_head, t);
        kv_dequantize_row(dt, r.vals, r.sc, c->cfg.head_dim, k);
    }
    if (v) {
        rowref r = row_at(c->v[layer] + (size_t)page * c->page_bytes_v, c->row_bytes_v,
                          c->scales_off_v, scale_row_bytes(dt, c->cfg.head_dim_v), P, kv_head, t);
        kv_dequantize_row(dt, r.vals, r.sc, c->cfg.head_dim_v, v);
    }
    return 0;
}

/* ---- attention ------------------------------------------------------------------------------ */

/* The three primitives attention needs, scalar (the reference) and AVX2+FMA+F16C. The AVX2
 * versions give the same values up to the order of float additions. kv_open picks one per
 * cache (cfg.force_scalar or a CPU without AVX2/FMA/F16C: scalar). */
typedef struct kv_ops {
    void (*deq)(kv_dtype dt, const uint8_t *vals, const uint16_t *sc, int d, float *out);
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n); /* y += a * x */
} kv_ops;

static float dot_scalar(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float t = 0;
    for (; i < n; i++) t += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

static void axpy_scalar(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static const kv_ops ops_scalar = {kv_dequantize_row, dot_scalar, axpy_scalar};

#if KV_HAVE_AVX2

static KV_TGT void deq_avx2(kv_dtype dt, const uint8_t *vals, const uint16_t *sc, int d,
                            float *out) {
    int i = 0;
    if (dt == KV_F16) {
        for (; i + 8 <= d; i += 8)
            _mm256_storeu_ps(out + i,
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vals + 2 * i))));
    } else if (dt == KV_Q8) {
        __m256 dd = _mm256_set1_ps(h2f(sc[0]));
        for (; i + 8 <= d; i += 8) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(vals + i));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(dd, q));
        }
    } else {
        const __m128i lo4 = _mm_set1_epi8(15);
        for (; i + KV_Q4_GROUP <= d; i += KV_Q4_GROUP) {
            int g = i / KV_Q4_GROUP;
            __m256 dd = _mm256_set1_ps(h2f(sc[2 * g])), mm = _mm256_set1_ps(h2f(sc[2 * g + 1]));
            __m128i x = _mm_loadu_si128((const __m128i *)(vals + i / 2));
            __m128i lo = _mm_and_si128(x, lo4), hi = _mm_and_si128(_mm_srli_epi16(x, 4), lo4);
            __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi); /* in order */
            __m128i parts[4] = {a, _mm_srli_si128(a, 8), b, _mm_srli_si128(b, 8)};
            for (int k = 0; k < 4; k++) {
                __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
                _mm256_storeu_ps(out + i + 8 * k, _mm256_fmadd_ps(dd, q, mm));
            }
        }
    }
    if (i < d) { /* a ragged tail (head_dim not a multiple of 8 / 32): the reference does it */
        float tmp[KV_MAX_HEAD_DIM];
        kv_dequantize_row(dt, vals, sc, d, tmp);
        memcpy(out + i, tmp + i, sizeof(float) * (d - i));
    }
}

static KV_TGT float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float t = _mm_cvtss_f32(h);
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

static KV_TGT void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static const kv_ops ops_avx2 = {deq_avx2, dot_avx2, axpy_avx2};
#endif

static const kv_ops *cache_ops(const kv_cache *c) {
#if KV_HAVE_AVX2
    if (c->simd) return &ops_avx2;
#endif
    return &ops_scalar;
}

/* The tile of keys [j, min(k1, j + KV_TILE)) that lies in j's page: its first slot in the page,
 * its length, and the page's K and V bytes of `layer`. */
typedef struct kv_tile {
    int t0, n;
    uint8_t *kp, *vp;
} kv_tile;

static kv_tile tile_at(const kv_cache *c, const kv_seq *s, int layer, int64_t j, int64_t k1) {
    const int P = c->cfg.page_tokens;
    const int64_t pi = j / P;
    kv_tile t;
    t.t0 = (int)(j - pi * P);
    int t1 = (int)TOME_MIN((int64_t)P, k1 - pi * P);
    if (t1 - t.t0 > KV_TILE) t1 = t.t0 + KV_TILE;
    t.n = t1 - t.t0;
    const int32_t page = s->pages[pi];
    t.kp = c->k[layer] + (size_t)page * c->page_bytes_k;
    t.vp = c->v[layer] + (size_t)page * c->page_bytes_v;
    return t;
}

#if KV_HAVE_AVX2
static void range_avx2(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a, const float *q,
                       int g, int ha, int hb, int64_t k0, int64_t k1, float *m, float *l, int mbase,
                       float *acc);
#define DR_MAX_DIM 256
#endif

/* Online softmax over keys [k0, k1) of kv head g for query heads [ha, hb) (all of group g).
 * m and l are indexed by head - mbase, acc by absolute head; they carry state in and out. */
static void attend_range(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a,
                         const float *q, int g, int ha, int hb, int64_t k0, int64_t k1, float *m,
                         float *l, int mbase, float *acc) {
#if KV_HAVE_AVX2
    if (c->simd && c->cfg.head_dim % 8 == 0 && c->cfg.head_dim_v % 8 == 0 && c->cfg.head_dim <= DR_MAX_DIM &&
        c->cfg.head_dim_v <= DR_MAX_DIM) {
        range_avx2(c, s, layer, a, q, g, ha, hb, k0, k1, m, l, mbase, acc);
        return;
    }
#endif
    const int P = c->cfg.page_tokens, dk = c->cfg.head_dim, dv = c->cfg.head_dim_v;
    const kv_dtype dt = c->cfg.dtype;
    const size_t sk = scale_row_bytes(dt, dk), sv = scale_row_bytes(dt, dv);
    const kv_ops *ops = cache_ops(c);
    float kf[KV_MAX_HEAD_DIM], vf[KV_MAX_HEAD_DIM];
    float sc[KV_MAX_GQA][KV_TILE];
    for (int hc = ha; hc < hb; hc += KV_MAX_GQA) {
        const int hd = TOME_MIN(hb, hc + KV_MAX_GQA), nr = hd - hc;
        for (int64_t j = k0; j < k1;) {
            const kv_tile tl = tile_at(c, s, layer, j, k1);
            const int t0 = tl.t0, n = tl.n;
            uint8_t *kp = tl.kp, *vp = tl.vp;
            for (int t = 0; t < n; t++) {
                rowref r = row_at(kp, c->row_bytes_k, c->scales_off_k, sk, P, g, t0 + t);
                ops->deq(dt, r.vals, r.sc, dk, kf);
                for (int h = 0; h < nr; h++)
                    sc[h][t] = ops->dot(q + (size_t)(hc + h) * dk, kf, dk) * a->scale;
            }
            for (int h = 0; h < nr; h++) {
                float mt = sc[h][0];
                for (int t = 1; t < n; t++) mt = fmaxf(mt, sc[h][t]);
                float *mh = &m[hc + h - mbase], *ah = acc + (size_t)(hc + h) * dv;
                if (mt > *mh) {
                    float corr = expf(*mh - mt); /* 0 when *mh = -inf */
                    l[hc + h - mbase] *= corr;
                    for (int i = 0; i < dv; i++) ah[i] *= corr;
                    *mh = mt;
                }
                float sum = 0;
                for (int t = 0; t < n; t++) sum += (sc[h][t] = expf(sc[h][t] - *mh));
                l[hc + h - mbase] += sum;
            }
            for (int t = 0; t < n; t++) {
                rowref r = row_at(vp, c->row_bytes_v, c->scales_off_v, sv, P, g, t0 + t);
                ops->deq(dt, r.vals, r.sc, dv, vf);
                for (int h = 0; h < nr; h++)
                    ops->axpy(acc + (size_t)(hc + h) * dv, sc[h][t], vf, dv);
            }
            j += n;
        }
    }
}

static int check_attn(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a, int *h0,
                      int *h1) {
    if (!s || layer < 0 || layer >= c->cfg.n_layer || c->cfg.no_storage) return TOME_EINPUT;
    if (a->n_head <= 0 || a->n_head % c->cfg.n_kv_head || a->window < 0 || a->sinks < 0)
        return TOME_EINPUT;
    *h0 = a->head0, *h1 = a->head1;
    if (*h0 == 0 && *h1 == 0) *h1 = a->n_head;
    if (*h0 < 0 || *h1 > a->n_head || *h0 >= *h1) return TOME_EINPUT;
    return 0;
}

/* Keys visible to q_pos under the mask, clipped to [k0, k1): up to two disjoint ranges, the
 * sinks [0, min(sinks, lo)) and the causal window [lo, q_pos]. */
static int visible(const kv_attn *a, int64_t q_pos, int64_t k0, int64_t k1, int64_t r[2][2]) {
    int n = 0;
    int64_t hi = TOME_MIN(q_pos + 1, k1), lo = 0;
    k0 = TOME_MAX(k0, 0);
    if (a->window > 0) {
        lo = TOME_MAX(0, q_pos - a->window + 1);
        int64_t se = TOME_MIN(TOME_MIN(a->sinks, lo), hi);
        if (k0 < se) r[n][0] = k0, r[n][1] = se, n++;
    }
    int64_t wa = TOME_MAX(lo, k0);
    if (wa < hi) r[n][0] = wa, r[n][1] = hi, n++;
    return n;
}

static void partial_heads(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a,
                          const float *q, int64_t q_pos, int64_t k0, int64_t k1, int h0, int h1,
                          float *m, float *l, int mbase, float *acc) {
    const int rep = a->n_head / c->cfg.n_kv_head, dv = c->cfg.head_dim_v;
    for (int h = h0; h < h1; h++) {
        m[h - mbase] = -INFINITY;
        l[h - mbase] = 0;
        memset(acc + (size_t)h * dv, 0, sizeof(float) * dv);
    }
    int64_t r[2][2];
    int nr = visible(a, q_pos, k0, TOME_MIN(k1, s->len), r);
    for (int g = h0 / rep; g * rep < h1; g++) {
        int ha = TOME_MAX(h0, g * rep), hb = TOME_MIN(h1, (g + 1) * rep);
        for (int i = 0; i < nr; i++)
            attend_range(c, s, layer, a, q, g, ha, hb, r[i][0], r[i][1], m, l, mbase, acc);
    }
}

int kv_attend_partial(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
                      int64_t q_pos, int64_t k0, int64_t k1, float *m, float *l, float *acc) {
    const kv_seq *s = get_seq(c, seq);
    int h0, h1;
    if (check_attn(c, s, layer, a, &h0, &h1) || q_pos < 0 || q_pos >= s->len) return TOME_EINPUT;
    partial_heads(c, s, layer, a, q, q_pos, k0, k1, h0, h1, m, l, 0, acc);
    return 0;
}

void kv_partial_merge(int n_head, int dv, float *ma, float *la, float *acca, const float *mb,
                      const float *lb, const float *accb) {
    for (int h = 0; h < n_head; h++) {
        if (lb[h] == 0) continue;
        float mn = fmaxf(ma[h], mb[h]);
        float ca = la[h] > 0 ? expf(ma[h] - mn) : 0.0f, cb = expf(mb[h] - mn);
        float *x = acca + (size_t)h * dv;
        const float *y = accb + (size_t)h * dv;
        for (int i = 0; i < dv; i++) x[i] = x[i] * ca + y[i] * cb;
        la[h] = la[h] * ca + lb[h] * cb;
        ma[h] = mn;
    }
}

/* One query position: partial over everything, then normalise. m and l live on the stack. */
static void attend_one(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a,
                       const float *q, int64_t q_pos, int h0, int h1, float *out) {
    const int dv = c->cfg.head_dim_v;
    float m[KV_MAX_GQA], l[KV_MAX_GQA];
    /* out doubles as acc; heads are done in chunks so m, l fit on the stack */
    for (int hc = h0; hc < h1; hc += KV_MAX_GQA) {
        int hd = TOME_MIN(h1, hc + KV_MAX_GQA);
        partial_heads(c, s, layer, a, q, q_pos, 0, s->len, hc, hd, m, l, hc, out);
        for (int h = hc; h < hd; h++) {
            float inv = l[h - hc] > 0 ? 1.0f / l[h - hc] : 0.0f;
            float *o = out + (size_t)h * dv;
            for (int i = 0; i < dv; i++) o[i] *= inv;
        }
    }
}

int kv_attend(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
              int64_t q_pos, float *out) {
    const kv_seq *s = get_seq(c, seq);
    int h0, h1;
    if (check_attn(c, s, layer, a, &h0, &h1) || q_pos < 0 || q_pos >= s->len) return TOME_EINPUT;
    attend_one(c, s, layer, a, q, q_pos, h0, h1, out);
    return 0;
}

#if KV_HAVE_AVX2
/* ---- prefill: a block of queries against each K/V tile ----------------------------------
 * attend_one re-reads and re-dequantises every key for every query, and its per-key dot and
 * axpy calls leave the FMA units half idle: at a 512-token prompt that was half of the
 * CPU's prefill time. Here the rows of a block — QB_MAX query positions x the query heads of
 * one kv head — share each tile: K is dequantised once and transposed (kt[d][t]) so scores
 * come out 4 rows x 16 keys per register block with no horizontal sums; exp is vectorised;
 * V is dequantised once and P·V accumulates 4 rows x 32 dims at a time. The same online
 * softmax as attend_range (max per tile, rescale, exp), in a different float order. */
#define QB_MAX 16      /* query positions per block */
#define QB_ROWS 64     /* rows (positions x heads) per pass */

/* e^x for x <= 0 (scores minus the running max); -inf and anything below -87 give 0. Range
 * reduction by ln 2 and a degree-6 Taylor polynomial: ~2 ulp. */
static KV_TGT __m256 exp_neg256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* ---- decode: one query position against each K/V tile ----------------------------------
 * attend_range's per-key calls (dequantise a row, one dot per query head, one axpy per head)
 * reload the row and the accumulators for every head and leave the FMA units mostly idle. Here
 * a tile of up to KV_TILE keys is dequantised once into a float buffer; the scores of two keys
 * at a time share the query loads across all heads of the group (one horizontal sum per head
 * and key); exp is vectorised (exp_neg256); P·V keeps 4 heads x 32 dims of the accumulators in
 * registers across the whole tile. Same online softmax as attend_range, in a different float
 * order. For head dims that are multiples of 8, up to DR_MAX_DIM. */
#define DR_HEADS 8 /* query heads per pass */
/* loops over heads and vectors must unroll so their arrays stay in registers (-O2 alone keeps
 * the loops and the accumulators on the stack) */
#define DR_UNROLL _Pragma("GCC unroll 8")

static inline KV_TGT float dr_hsum(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* One row's online-softmax step over a tile of n scores (the row holds at least n rounded up
 * to 8 floats): pads the scores to whole vectors with -inf, takes their max, rescales *l and
 * the row's unnormalised output o (dv floats, a multiple of 8) when the running max *m grows,
 * replaces the scores by exp(score - *m) and adds their sum to *l. Returns 0, with the scores
 * zeroed, when nothing in the tile is visible to the row. */
static KV_TGT int softmax_tile(float *sc, int n, float *m, float *l, float *o, int dv) {
    const int n8 = (n + 7) & ~7;
    for (int t = n; t < n8; t++) sc[t] = -INFINITY;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int t = 0; t < n8; t += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(sc + t));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float mt = _mm_cvtss_f32(m4);
    if (mt == -INFINITY) {
        memset(sc, 0, sizeof(float) * (size_t)n8);
        return 0;
    }
    if (mt > *m) {
        const float corr = expf(*m - mt); /* 0 when *m = -inf */
        *l *= corr;
        const __m256 cv = _mm256_set1_ps(corr);
        for (int i = 0; i < dv; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(cv, _mm256_loadu_ps(o + i)));
        *m = mt;
    }
    const __m256 mb = _mm256_set1_ps(*m);
    __m256 sum = _mm256_setzero_ps();
    for (int t = 0; t < n8; t += 8) {
        __m256 e = exp_neg256(_mm256_sub_ps(_mm256_loadu_ps(sc + t), mb));
        _mm256_storeu_ps(sc + t, e);
        sum = _mm256_add_ps(sum, e);
    }
    *l += dr_hsum(sum);
    return 1;
}

/* sc[h][t] = scale * q_h · k_t for NR heads and n keys of kb ([n][dk]) */
static inline __attribute__((always_inline)) KV_TGT void dr_scores(int NR, int dk, const float *const *qh,
                                                                   const float *kb, int n, float scale,
                                                                   float (*sc)[KV_TILE]) {
    int t = 0;
    for (; t + 1 < n; t += 2) {
        const float *k0 = kb + (size_t)t * dk, *k1 = k0 + dk;
        __m256 s0[DR_HEADS], s1[DR_HEADS];
        DR_UNROLL for (int h = 0; h < NR; h++) s0[h] = _mm256_setzero_ps(), s1[h] = _mm256_setzero_ps();
        for (int d = 0; d < dk; d += 8) {
            __m256 a0 = _mm256_loadu_ps(k0 + d), a1 = _mm256_loadu_ps(k1 + d);
            DR_UNROLL for (int h = 0; h < NR; h++) {
                __m256 qv = _mm256_loadu_ps(qh[h] + d);
                s0[h] = _mm256_fmadd_ps(qv, a0, s0[h]);
                s1[h] = _mm256_fmadd_ps(qv, a1, s1[h]);
            }
        }
        DR_UNROLL for (int h = 0; h < NR; h++) sc[h][t] = dr_hsum(s0[h]) * scale, sc[h][t + 1] = dr_hsum(s1[h]) * scale;
    }
    if (t < n) {
        const float *k0 = kb + (size_t)t * dk;
        __m256 s0[DR_HEADS];
        DR_UNROLL for (int h = 0; h < NR; h++) s0[h] = _mm256_setzero_ps();
        for (int d = 0; d < dk; d += 8) {
            __m256 a0 = _mm256_loadu_ps(k0 + d);
            DR_UNROLL for (int h = 0; h < NR; h++) s0[h] = _mm256_fmadd_ps(_mm256_loadu_ps(qh[h] + d), a0, s0[h]);
        }
        DR_UNROLL for (int h = 0; h < NR; h++) sc[h][t] = dr_hsum(s0[h]) * scale;
    }
}

/* acc_h[d0 .. d0 + 8 NV) += Σ_t p_h[t] v_t for NR (<= 4) rows (heads, or positions x heads in
 * prefill) over n rows v_t of vb ([n][dv]): the accumulators stay in registers */
static inline __attribute__((always_inline)) KV_TGT void dr_pv(int NR, int NV, int dv, int d0, const float *vb,
                                                               int n, const float *const *p,
                                                               float *const *acch) {
    __m256 o[4][4];
    DR_UNROLL for (int h = 0; h < NR; h++)
        DR_UNROLL for (int v = 0; v < NV; v++) o[h][v] = _mm256_loadu_ps(acch[h] + d0 + 8 * v);
    for (int t = 0; t < n; t++) {
        const float *vr = vb + (size_t)t * dv + d0;
        __m256 x[4];
        DR_UNROLL for (int v = 0; v < NV; v++) x[v] = _mm256_loadu_ps(vr + 8 * v);
        DR_UNROLL for (int h = 0; h < NR; h++) {
            __m256 w = _mm256_broadcast_ss(&p[h][t]);
            DR_UNROLL for (int v = 0; v < NV; v++) o[h][v] = _mm256_fmadd_ps(w, x[v], o[h][v]);
        }
    }
    DR_UNROLL for (int h = 0; h < NR; h++)
        DR_UNROLL for (int v = 0; v < NV; v++) _mm256_storeu_ps(acch[h] + d0 + 8 * v, o[h][v]);
}

/* dr_pv with NR (1..4) and NV (1..4) chosen at run time */
static KV_TGT void dr_pv_any(int nr, int nv, int dv, int d0, const float *vb, int n, const float *const *p,
                             float *const *acch) {
#define DR_PV1(NR, NV) dr_pv(NR, NV, dv, d0, vb, n, p, acch)
#define DR_PV_NV(NR)                                                                               \
    switch (nv) {                                                                                  \
    case 4: DR_PV1(NR, 4); break;                                                                  \
    case 3: DR_PV1(NR, 3); break;                                                                  \
    case 2: DR_PV1(NR, 2); break;                                                                  \
    default: DR_PV1(NR, 1); break;                                                                 \
    }
    switch (nr) {
    case 4: DR_PV_NV(4) break;
    case 3: DR_PV_NV(3) break;
    case 2: DR_PV_NV(2) break;
    default: DR_PV_NV(1) break;
    }
#undef DR_PV_NV
#undef DR_PV1
}

#define DR_CASE_NR(NR, CALL) case NR: CALL(NR); break;
#define DR_BY_NR8(nr, CALL)                                                                        \
    switch (nr) {                                                                                  \
        DR_CASE_NR(8, CALL) DR_CASE_NR(7, CALL) DR_CASE_NR(6, CALL) DR_CASE_NR(5, CALL)            \
        DR_CASE_NR(4, CALL) DR_CASE_NR(3, CALL) DR_CASE_NR(2, CALL) default: CALL(1); break;       \
    }

static KV_TGT void range_avx2(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a, const float *q,
                              int g, int ha, int hb, int64_t k0, int64_t k1, float *m, float *l, int mbase,
                              float *acc) {
    const int P = c->cfg.page_tokens, dk = c->cfg.head_dim, dv = c->cfg.head_dim_v;
    const kv_dtype dt = c->cfg.dtype;
    const size_t sk = scale_row_bytes(dt, dk), sv = scale_row_bytes(dt, dv);
    float buf[KV_TILE * DR_MAX_DIM];
    float sc[DR_HEADS][KV_TILE];
    for (int hc = ha; hc < hb; hc += DR_HEADS) {
        const int nr = TOME_MIN(hb - hc, DR_HEADS);
        const float *qh[DR_HEADS];
        float *acch[DR_HEADS];
        for (int h = 0; h < nr; h++) qh[h] = q + (size_t)(hc + h) * dk, acch[h] = acc + (size_t)(hc + h) * dv;
        for (int64_t j = k0; j < k1;) {
            const kv_tile tl = tile_at(c, s, layer, j, k1);
            const int t0 = tl.t0, n = tl.n;
            uint8_t *kp = tl.kp, *vp = tl.vp;
            for (int t = 0; t < n; t++) {
                rowref r = row_at(kp, c->row_bytes_k, c->scales_off_k, sk, P, g, t0 + t);
                deq_avx2(dt, r.vals, r.sc, dk, buf + (size_t)t * dk);
            }
#define DR_SCORES(NR) dr_scores(NR, dk, qh, buf, n, a->scale, sc)
            DR_BY_NR8(nr, DR_SCORES)
#undef DR_SCORES
            for (int h = 0; h < nr; h++) softmax_tile(sc[h], n, &m[hc + h - mbase], &l[hc + h - mbase], acch[h], dv);
            for (int t = 0; t < n; t++) {
                rowref r = row_at(vp, c->row_bytes_v, c->scales_off_v, sv, P, g, t0 + t);
                deq_avx2(dt, r.vals, r.sc, dv, buf + (size_t)t * dv);
            }
            for (int h4 = 0; h4 < nr; h4 += 4) {
                const int r4 = TOME_MIN(4, nr - h4);
                const float *pr[4];
                for (int h = 0; h < r4; h++) pr[h] = sc[h4 + h];
                for (int d0 = 0; d0 < dv; d0 += 32) {
                    const int nv = TOME_MIN(4, (dv - d0) / 8);
                    dr_pv_any(r4, nv, dv, d0, buf, n, pr, acch + h4);
                }
            }
            j += n;
        }
    }
}

typedef struct qblock {
    const float *q[QB_ROWS];  /* each row's query vector */
    float *o[QB_ROWS];        /* each row's output (the unnormalised acc until the end) */
    int64_t pos[QB_ROWS];     /* each row's query position */
    float m[QB_ROWS], l[QB_ROWS];
    int n;
} qblock;

/* NR (1..4) rows x 16 keys of scores from the transposed tile: accumulators in registers */
static inline __attribute__((always_inline)) KV_TGT void qb_scores16(int NR, const float *const *q, const float *kt,
                                                                     int d, int t, float scale, float *const *out) {
    __m256 acc[4][2];
    DR_UNROLL for (int i = 0; i < NR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < d; k++) {
        __m256 k0 = _mm256_load_ps(kt + (size_t)k * KV_TILE + t), k1 = _mm256_load_ps(kt + (size_t)k * KV_TILE + t + 8);
        DR_UNROLL for (int i = 0; i < NR; i++) {
            __m256 qv = _mm256_broadcast_ss(q[i] + k);
            acc[i][0] = _mm256_fmadd_ps(qv, k0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(qv, k1, acc[i][1]);
        }
    }
    DR_UNROLL for (int i = 0; i < NR; i++) {
        _mm256_storeu_ps(out[i] + t, _mm256_mul_ps(acc[i][0], _mm256_set1_ps(scale)));
        _mm256_storeu_ps(out[i] + t + 8, _mm256_mul_ps(acc[i][1], _mm256_set1_ps(scale)));
    }
}

/* scores sc[r][t] = scale·q_r·k_t for keys t < nt (kt: [d][KV_TILE]), -inf where masked */
static KV_TGT void qb_scores(const qblock *b, const float *kt, int d, int nt, int64_t key0, const kv_attn *a,
                             float (*sc)[KV_TILE]) {
    const int ntp = (nt + 15) & ~15;
    for (int r0 = 0; r0 < b->n; r0 += 4) {
        const int nr = TOME_MIN(4, b->n - r0);
        float *out[4];
        for (int i = 0; i < nr; i++) out[i] = sc[r0 + i];
        for (int t = 0; t < ntp; t += 16) {
#define QB_S(NR) qb_scores16(NR, b->q + r0, kt, d, t, a->scale, out)
            switch (nr) {
            case 4: QB_S(4); break;
            case 3: QB_S(3); break;
            case 2: QB_S(2); break;
            default: QB_S(1); break;
            }
#undef QB_S
        }
    }
    for (int r = 0; r < b->n; r++) { /* the mask, as ranges of t: causal, window and sinks */
        const int64_t qp = b->pos[r];
        /* keys after the query: t >= qp + 1 - key0 */
        for (int64_t t = TOME_MAX((int64_t)0, qp + 1 - key0); t < nt; t++) sc[r][t] = -INFINITY;
        if (a->window > 0) { /* keys j in [sinks, qp - window]: left of the window, not sinks */
            const int64_t ta = TOME_MAX((int64_t)0, a->sinks - key0);
            const int64_t tb = TOME_MIN((int64_t)nt, qp - a->window + 1 - key0);
            for (int64_t t = ta; t < tb; t++) sc[r][t] = -INFINITY;
        }
    }
}

/* One tile of nt keys starting at key0 (all in one page) for every row of b. */
static KV_TGT void qb_tile(const kv_cache *c, const kv_seq *s, int layer, int g, const kv_attn *a, qblock *b,
                           int64_t key0, int nt, float *kt, float *vt, float (*sc)[KV_TILE]) {
    const int P = c->cfg.page_tokens, dk = c->cfg.head_dim, dv = c->cfg.head_dim_v;
    const kv_dtype dt = c->cfg.dtype;
    const int64_t pi = key0 / P;
    const int t0 = (int)(key0 - pi * P);
    const int32_t page = s->pages[pi];
    uint8_t *kp = c->k[layer] + (size_t)page * c->page_bytes_k, *vp = c->v[layer] + (size_t)page * c->page_bytes_v;
    const size_t sk = scale_row_bytes(dt, dk), sv = scale_row_bytes(dt, dv);
    /* K, transposed 8 keys x 8 dims at a time (keys past nt, up to whole 16s, as zeros) */
    _Alignas(32) float rows[8][KV_MAX_HEAD_DIM];
    for (int tb = 0; tb < ((nt + 15) & ~15); tb += 8) {
        for (int i = 0; i < 8; i++) {
            if (tb + i < nt) {
                rowref rr = row_at(kp, c->row_bytes_k, c->scales_off_k, sk, P, g, t0 + tb + i);
                deq_avx2(dt, rr.vals, rr.sc, dk, rows[i]);
            } else {
                memset(rows[i], 0, sizeof(float) * (size_t)dk);
            }
        }
        for (int k = 0; k < dk; k += 8) {
            __m256 r[8], u[8], v[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_load_ps(rows[i] + k);
            for (int i = 0; i < 8; i += 2)
                u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            for (int i = 0; i < 8; i += 4) {
                v[i] = _mm256_shuffle_ps(u[i], u[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
                v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
                v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
                v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
            }
            /* v[0..3]: dims k+{0,1,2,3} (and +4..7 in the high lanes) of keys 0..3; v[4..7] of keys 4..7 */
            for (int j = 0; j < 4; j++) {
                _mm256_store_ps(kt + (size_t)(k + j) * KV_TILE + tb, _mm256_permute2f128_ps(v[j], v[j + 4], 0x20));
                _mm256_store_ps(kt + (size_t)(k + j + 4) * KV_TILE + tb, _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
            }
        }
    }
    qb_scores(b, kt, dk, nt, key0, a, sc);
    int any = 0;
    for (int r = 0; r < b->n; r++) /* online softmax, as attend_range */
        any |= softmax_tile(sc[r], nt, &b->m[r], &b->l[r], b->o[r], dv);
    if (!any) return;
    for (int t = 0; t < nt; t++) { /* V rows */
        rowref rr = row_at(vp, c->row_bytes_v, c->scales_off_v, sv, P, g, t0 + t);
        deq_avx2(dt, rr.vals, rr.sc, dv, vt + (size_t)t * dv);
    }
    for (int r0 = 0; r0 < b->n; r0 += 4) { /* o[r] += Σ_t p[r][t] v[t]: 4 rows x 32 dims */
        const int nr = TOME_MIN(4, b->n - r0);
        const float *pr[4];
        for (int i = 0; i < nr; i++) pr[i] = sc[r0 + i];
        for (int i0 = 0; i0 < dv; i0 += 32) dr_pv_any(nr, TOME_MIN(32, dv - i0) / 8, dv, i0, vt, nt, pr, b->o + r0);
    }
}

/* Keys [k0, k1) for the rows of b, tile by tile (tiles never span pages). */
static void qb_range(const kv_cache *c, const kv_seq *s, int layer, int g, const kv_attn *a, qblock *b,
                     int64_t k0, int64_t k1, float *kt, float *vt, float (*sc)[KV_TILE]) {
    const int64_t P = c->cfg.page_tokens;
    for (int64_t j = k0; j < k1;) {
        int64_t end = TOME_MIN(k1, (j / P + 1) * P);
        int nt = (int)TOME_MIN((int64_t)KV_TILE, end - j);
        qb_tile(c, s, layer, g, a, b, j, nt, kt, vt, sc);
        j += nt;
    }
}

/* Query positions pos0 .. pos0+n_q-1 (n_q <= QB_MAX), heads [h0, h1): rows grouped by kv
 * head, QB_ROWS at a time. Returns 0, or TOME_ERESOURCE when scratch cannot be had. */
static int attend_block_tiled(const kv_cache *c, const kv_seq *s, int layer, const kv_attn *a, const float *q,
                              int64_t n_q, int64_t pos0, int h0, int h1, float *out) {
    const int dk = c->cfg.head_dim, dv = c->cfg.head_dim_v, rep = a->n_head / c->cfg.n_kv_head;
    const size_t qs = (size_t)a->n_head * dk, os = (size_t)a->n_head * dv;
    float *kt = aligned_alloc(32, sizeof(float) * (size_t)dk * KV_TILE);
    float *vt = malloc(sizeof(float) * (size_t)dv * KV_TILE);
    qblock *b = malloc(sizeof *b);
    float(*sc)[KV_TILE] = malloc(sizeof(float) * QB_ROWS * KV_TILE);
    if (!kt || !vt || !b || !sc) {
        free(kt), free(vt), free(b), free(sc);
        return TOME_ERESOURCE;
    }
    for (int g = h0 / rep; g * rep < h1; g++) {
        const int ha = TOME_MAX(h0, g * rep), hb = TOME_MIN(h1, (g + 1) * rep);
        /* rows in (position, head) order, QB_ROWS per pass */
        int64_t total = n_q * (hb - ha);
        for (int64_t r0 = 0; r0 < total; r0 += QB_ROWS) {
            b->n = (int)TOME_MIN((int64_t)QB_ROWS, total - r0);
            int64_t pmin = INT64_MAX, pmax = -1;
            for (int r = 0; r < b->n; r++) {
                int64_t i = (r0 + r) / (hb - ha);
                int h = ha + (int)((r0 + r) % (hb - ha));
                b->q[r] = q + (size_t)i * qs + (size_t)h * dk;
                b->o[r] = out + (size_t)i * os + (size_t)h * dv;
                b->pos[r] = pos0 + i;
                b->m[r] = -INFINITY, b->l[r] = 0;
                memset(b->o[r], 0, sizeof(float) * (size_t)dv);
                pmin = TOME_MIN(pmin, pos0 + i), pmax = TOME_MAX(pmax, pos0 + i);
            }
            /* keys someone in the block sees: the sinks, then from the first row's window on */
            int64_t lo = a->window > 0 ? TOME_MAX(0, pmin - a->window + 1) : 0;
            if (a->window > 0 && a->sinks > 0) qb_range(c, s, layer, g, a, b, 0, TOME_MIN(a->sinks, lo), kt, vt, sc);
            qb_range(c, s, layer, g, a, b, lo, pmax + 1, kt, vt, sc);
            for (int r = 0; r < b->n; r++) {
                float inv = b->l[r] > 0 ? 1.0f / b->l[r] : 0.0f;
                for (int i = 0; i < dv; i++) b->o[r][i] *= inv;
            }
        }
    }
    free(kt), free(vt), free(b), free(sc);
    return 0;
}
#endif

int kv_attend_block(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
                    int64_t n_q, int64_t pos0, float *out) {
    const kv_seq *s = get_seq(c, seq);
    int h0, h1;
    if (check_attn(c, s, layer, a, &h0, &h1) || n_q < 0 || pos0 < 0 || pos0 + n_q > s->len)
        return TOME_EINPUT;
    const size_t qs = (size_t)a->n_head * c->cfg.head_dim;
    const size_t os = (size_t)a->n_head * c->cfg.head_dim_v;
#if KV_HAVE_AVX2
    if (c->simd && n_q > 1 && c->cfg.head_dim % 8 == 0 && c->cfg.head_dim_v % 8 == 0) {
        for (int64_t i = 0; i < n_q; i += QB_MAX) {
            int64_t nb = TOME_MIN((int64_t)QB_MAX, n_q - i);
            int rc = attend_block_tiled(c, s, layer, a, q + i * qs, nb, pos0 + i, h0, h1, out + i * os);
            if (rc) return rc;
        }
        return 0;
    }
#endif
    for (int64_t i = 0; i < n_q; i++)
        attend_one(c, s, layer, a, q + i * qs, pos0 + i, h0, h1, out + i * os);
    return 0;
}

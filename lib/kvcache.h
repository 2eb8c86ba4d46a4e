/* kvcache.h — the paged, quantised KV cache and the CPU attention that reads it in place.
 *
 * Pages. The pool holds n_pages pages of P tokens. A page id is valid in every layer: each
 * layer has its own K storage and V storage, both indexed by page id, so one allocation
 * decision (per token, not per layer) serves the whole model. A sequence is a block table:
 * page i holds its tokens [i*P, (i+1)*P), and the token at index j has position j. Pages are
 * refcounted; kv_seq_fork shares pages (a document prefilled once serves many questions) and
 * the first append into a shared, partially filled last page copies it (copy on write).
 *
 * Byte layout (the GPU kernels read exactly these bytes). One page of one layer, for K (and the
 * same for V with head_dim_v), with H = n_kv_head, D = head_dim, P = page_tokens:
 *
 *   values  [H][P][row_bytes]        row = one (kv head, token): D values, head-major so that
 *                                    one head's P rows are contiguous (attention streams them)
 *     f16:  row_bytes = 2*D          IEEE binary16, little endian
 *     q8:   row_bytes = D            int8 q;          x = d * q
 *     q4:   row_bytes = D/2          byte b holds value 2b in its low nibble and 2b+1 in its
 *                                    high nibble, q in [0,15];  x = d * q + m
 *   then, at offset S = H*P*row_bytes rounded up to a multiple of 16 (kv_scales_offset):
 *     f16:  nothing
 *     q8:   uint16 d[H][P]           f16 scale per (head, token)
 *     q4:   uint16 dm[H][P][G][2]    f16 (d, m) per group of KV_Q4_GROUP values along D, G =
 *                                    ceil(D / 32) groups (the last may be shorter; one group
 *                                    of D when D < 32)
 *   then zero padding to a multiple of KV_PAGE_ALIGN bytes: kv_page_bytes().
 *
 * Page p of layer l starts at cache->k[l] + p * cache->page_bytes_k (V: v, page_bytes_v).
 * Keys are stored after RoPE. Quantisation is round-to-nearest with the f16 scale rounded up
 * (and q4's min rounded down), so no value ever clamps and the error bounds below hold:
 *   f16: |x' - x| <= 2^-11 |x|            (|x| >= 2^-14; absolute 2^-25 below)
 *   q8:  |x' - x| <= d/2,  d <= amax/127 * (1 + 2^-10) + 2^-24,  amax = max |x| of the row
 *   q4:  |x' - x| <= d/2,  d <= (max - m)/15 * (1 + 2^-10) + 2^-24 per group, m <= min
 * for |x| <= 60000 (larger values clamp the scale at the f16 maximum).
 *
 * Threads. kv_store, kv_attend*, kv_load_row touch only the rows they name and keep their
 * scratch on the stack: any number of threads may call them at once on different (sequence,
 * layer, head) targets, and readers may share targets. The structural calls (open, close,
 * seq_new, fork, append, truncate, free) change the pool and block tables: one thread at a
 * time, with no data call in flight.
 *
 * Limits: head_dim <= KV_MAX_HEAD_DIM and even; n_head a multiple of n_kv_head; positions are
 * 0..len-1 of each sequence (no holes, no shifting).
 */
#ifndef TOME_KVCACHE_H
#define TOME_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum { KV_F16 = 0, KV_Q8 = 1, KV_Q4 = 2 } kv_dtype;

#define KV_Q4_GROUP 32
#define KV_MAX_HEAD_DIM 512
#define KV_PAGE_ALIGN 256
#define KV_DEFAULT_PAGE_TOKENS 64 /* measured: kvcache.c's header comment */

_Static_assert(sizeof(uint16_t) == 2, "f16 scales are 2 bytes");
_Static_assert(KV_MAX_HEAD_DIM % KV_Q4_GROUP == 0, "q4 groups tile the largest head");
_Static_assert(KV_PAGE_ALIGN % 16 == 0, "pages start on 16-byte vector boundaries");

typedef struct kv_config {
    int n_layer;
    int n_kv_head;
    int head_dim;       /* K row length */
    int head_dim_v;     /* V row length; 0 = head_dim */
    int page_tokens;    /* P, 1..1024; KV_DEFAULT_PAGE_TOKENS is the measured choice */
    kv_dtype dtype;
    int64_t n_pages;    /* pool capacity in pages (tokens = n_pages * P, shared by all sequences) */
    int no_storage;     /* 1: block tables and refcounts only (storage lives elsewhere, e.g. on a
                           GPU); copy_page is then called for every copy on write */
    void (*copy_page)(void *user, int32_t dst, int32_t src); /* with no_storage; may be NULL */
    void *copy_user;
    int force_scalar;   /* 1: the portable reference kernels even where AVX2 exists (tests) */
} kv_config;

typedef struct kv_seq {
    int32_t *pages;     /* stb_ds array: block table, page ids, arrlen = ceil(len / P) */
    int64_t len;        /* tokens stored (positions 0..len-1) */
    int live;
} kv_seq;

typedef struct kv_cache {
    kv_config cfg;
    size_t row_bytes_k, row_bytes_v;   /* bytes of one (head, token) row of values */
    size_t page_bytes_k, page_bytes_v; /* bytes of one page of one layer (kv_page_bytes) */
    size_t scales_off_k, scales_off_v; /* offset of the scale arrays in a page (kv_scales_offset) */
    uint8_t **k, **v;   /* [n_layer] -> [n_pages * page_bytes_*] (NULL with no_storage) */
    int32_t *refcount;  /* [n_pages]: sequences holding each page; 0 = free */
    int32_t *free_ids;  /* [n_pages] stack of free page ids, n_free on it */
    int64_t n_free;
    kv_seq *seqs;       /* stb_ds array indexed by sequence id; freed ids are reused */
    int simd;           /* 1: attention uses the AVX2+FMA+F16C kernels (chosen by kv_open) */
} kv_cache;

/* Bytes of one (kv head, token) row of values, and of one page of one layer of K (or V). */
size_t kv_row_bytes(kv_dtype dt, int head_dim);
size_t kv_page_bytes(kv_dtype dt, int n_kv_head, int head_dim, int page_tokens);
/* Offset of the scale arrays (q8 d, q4 dm) inside a page: values bytes rounded up to 16. */
size_t kv_scales_offset(kv_dtype dt, int n_kv_head, int head_dim, int page_tokens);

/* Memory plan: bytes one token costs across all layers, K and V, values and scales, excluding
 * page padding (exact when P * row sizes are multiples of KV_PAGE_ALIGN, as for P >= 16 and
 * head_dim 128). 32 layers x 8 heads x 128: f16 131072 (128 KiB), q8 66560 (65 KiB), q4 40960
 * (40 KiB). */
size_t kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, kv_dtype dt);

/* Allocates the pool (zeroed) unless cfg->no_storage. Returns 0; TOME_EINPUT naming a bad
 * field; TOME_ERESOURCE when the memory is not there (with the byte count). kv_close frees
 * everything, and is safe on a zeroed or failed cache. */
int kv_open(kv_cache *c, const kv_config *cfg, terr *e);
void kv_close(kv_cache *c);

/* A new empty sequence; its id in *seq. */
int kv_seq_new(kv_cache *c, int *seq, terr *e);
/* A new sequence sharing the first n_tokens of src (-1: all of it): its block table references
 * src's pages (refcount + 1), nothing is copied. */
int kv_seq_fork(kv_cache *c, int src, int64_t n_tokens, int *dst, terr *e);
/* Releases the sequence's pages (those reaching refcount 0 return to the pool) and its id. */
void kv_seq_free(kv_cache *c, int seq);
/* Grows the sequence by n tokens (positions len .. len+n-1, to be written with kv_store):
 * allocates pages, and copies a shared partially filled last page first. All or nothing:
 * TOME_ERESOURCE (pages needed vs free) leaves the sequence unchanged. */
int kv_seq_append(kv_cache *c, int seq, int64_t n, terr *e);
/* Shrinks the sequence to n tokens, releasing whole pages past the end. */
int kv_seq_truncate(kv_cache *c, int seq, int64_t n, terr *e);
/* Streaming attention (sinks + window): releases the page in block-table slot `slot` and
 * leaves a hole (id -1) there; the sequence keeps its length and positions. Nothing may read
 * the positions of a hole again (attention windows must exclude them); kv_seq_free and
 * kv_seq_truncate skip holes, kv_seq_fork copies them as holes, and kv_seq_append gives a
 * dropped partial last page a fresh (uninitialised) page. Returns 1 if a page was released, 0 if the slot was already a
 * hole or out of range. */
int kv_seq_drop_page(kv_cache *c, int seq, int64_t slot);
int64_t kv_seq_len(const kv_cache *c, int seq);
/* The block table: *n_pages ids (-1 for a dropped page), valid until the next structural
 * call on this sequence. */
const int32_t *kv_seq_pages(const kv_cache *c, int seq, int64_t *n_pages);

/* Writes K and V for tokens pos0 .. pos0+n-1 of seq in one layer, quantising to the page
 * dtype. k is [n][n_kv_head][head_dim] (after RoPE), v [n][n_kv_head][head_dim_v]. The tokens
 * must be inside the sequence (kv_seq_append first) and in pages it owns alone (true for every
 * position at or past the length before the last append). Returns 0 or TOME_EINPUT. */
int kv_store(kv_cache *c, int seq, int layer, int64_t pos0, int64_t n, const float *k,
             const float *v);

/* One (kv head, token) row in the page layout above: kv_quantize_row writes d values of x as
 * row bytes `vals` and scales `sc` (q8: one half; q4: a (d, m) pair per group; unused for
 * f16); kv_dequantize_row reads them back. These are the reference the GPU page writes match
 * byte for byte (and the stand-in driver of tests/fake_cuda.c calls). */
void kv_quantize_row(kv_dtype dt, const float *x, int d, uint8_t *vals, uint16_t *sc);
void kv_dequantize_row(kv_dtype dt, const uint8_t *vals, const uint16_t *sc, int d, float *out);

/* Reads back one token's K and V row of one kv head, dequantised (k: head_dim floats, v:
 * head_dim_v; either may be NULL). For tests and for comparing GPU pages with the CPU. */
int kv_load_row(const kv_cache *c, int seq, int layer, int64_t pos, int kv_head, float *k,
                float *v);

/* Attention parameters shared by the calls below. */
typedef struct kv_attn {
    int n_head;      /* query heads; a multiple of n_kv_head (q head h reads kv head
                        h / (n_head / n_kv_head)) */
    int head0, head1; /* compute query heads [head0, head1) only (0, 0: all): threads split
                         the heads of one call this way */
    float scale;     /* logit scale, usually 1/sqrt(head_dim) */
    int64_t window;  /* 0: plain causal; W > 0: a query at p sees keys (p - W, p] ... */
    int64_t sinks;   /* ... plus keys [0, sinks) (StreamingLLM sinks; 0 for none) */
} kv_attn;

/* One query position (decode): q is [n_head][head_dim] at position q_pos (keys 0..q_pos of
 * seq, masked by a; q_pos < len). out is [n_head][head_dim_v]; only heads [head0, head1) are
 * written. Pages are read in place with an online softmax. Returns 0 or TOME_EINPUT. */
int kv_attend(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
              int64_t q_pos, float *out);

/* A block of n_q query positions pos0 .. pos0+n_q-1 (prefill, causal): q is
 * [n_q][n_head][head_dim], out [n_q][n_head][head_dim_v]. Their keys must already be stored
 * (kv_store the chunk first). With the AVX2 kernels and head dims that are multiples of 8,
 * groups of 16 positions share each dequantised K/V tile (the decode loop's results to float
 * summation order); otherwise each query runs the decode loop. Returns 0, TOME_EINPUT, or
 * TOME_ERESOURCE when the tile scratch (a few hundred KiB at most) cannot be allocated. */
int kv_attend_block(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
                    int64_t n_q, int64_t pos0, float *out);

/* Partial attention over key indices [k0, k1) intersected with what q_pos may see (for
 * flash-decoding splits and ring attention). m and l are [n_head], acc [n_head][head_dim_v],
 * indexed by absolute head; for h in [head0, head1): m[h] = max logit, l[h] = sum exp(logit -
 * m), acc[h] = sum exp(logit - m) * v (not normalised). A head that sees no key gets
 * m = -INFINITY, l = 0, acc = 0. */
int kv_attend_partial(const kv_cache *c, int seq, int layer, const kv_attn *a, const float *q,
                      int64_t q_pos, int64_t k0, int64_t k1, float *m, float *l, float *acc);

/* Merges partial b into a (log-sum-exp) for n_head heads of dv values each: after merging
 * every part, out = acc / l. */
void kv_partial_merge(int n_head, int dv, float *ma, float *la, float *acca, const float *mb,
                      const float *lb, const float *accb);

#endif

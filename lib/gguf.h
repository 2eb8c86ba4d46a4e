/* gguf.h — read-only, validating GGUF (v2/v3) reader over an mmap, and a streaming writer.
 *
 * The reader distrusts its file: every count, length and offset is checked in 64-bit
 * arithmetic against the bytes that exist before it is used, allocations are bounded by the
 * file size, and each fault becomes one line naming the file, the byte offset and the
 * problem (TOME_EINPUT). Nothing returned points outside the mapping.
 *
 * Strings inside the file are not NUL-terminated: they are (ptr, len) views into the
 * mapping. Keys and tensor names are additionally copied as C strings for lookups.
 */
#ifndef TOME_GGUF_H
#define TOME_GGUF_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

/* Metadata value types, numbered as in the GGUF specification. */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

/* Tensor element types, numbered as ggml numbers them (ids 4, 5, 31-33, 36-38 are retired). */
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_IQ2_XXS = 16, GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_IQ1_S = 19, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22, GGML_TYPE_IQ4_XS = 23, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28, GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30, GGML_TYPE_TQ1_0 = 34, GGML_TYPE_TQ2_0 = 35, GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
};

/* Name ("Q4_K"), elements per block and bytes per block of a ggml type; blck == 0 means the
 * id is unknown or retired. */
typedef struct ggml_type_info {
    const char *name;
    int blck;
    int size;
} ggml_type_info;
const ggml_type_info *ggml_type_get(uint32_t type); /* NULL for unknown ids */
int ggml_type_from_name(const char *name);          /* -1 when unknown; case-insensitive */
/* Bytes of a row of n elements (n must be a multiple of the block size); 0 if not. */
uint64_t ggml_row_size(uint32_t type, int64_t n);

typedef struct gguf_str {
    const char *ptr; /* into the mapping; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    uint32_t type;      /* GGUF_TYPE_* */
    uint32_t elem_type; /* arrays: the element type */
    uint64_t n;         /* arrays: element count */
    union {
        uint64_t u64;   /* UINT8..UINT64, BOOL (zero-extended) */
        int64_t i64;    /* INT8..INT64 (sign-extended) */
        double f64;     /* FLOAT32, FLOAT64 */
        gguf_str str;   /* STRING */
        const void *raw;          /* array of fixed-size scalars: little-endian, unaligned */
        gguf_str *strs;           /* array of strings: n views (heap, owned by the gguf) */
        struct gguf_value *vals;  /* array of arrays: n values (heap, owned by the gguf) */
    } v;
} gguf_value;

typedef struct gguf_kv {
    char *key;       /* NUL-terminated copy */
    gguf_value val;
    uint64_t offset; /* byte offset of the key in the file */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;         /* NUL-terminated copy */
    uint32_t n_dims;    /* 1..4 */
    int64_t ne[4];      /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint32_t type;      /* GGML_TYPE_* */
    uint64_t offset;    /* from the start of the data section */
    uint64_t nbytes;
    int64_t nelem;
    const void *data;   /* into the mapping; aligned for its type (4 for F32, 2 for blocks) */
    uint64_t info_offset; /* byte offset of this tensor's entry in the file (for messages) */
} gguf_tensor;

typedef struct gguf {
    char *path;
    const uint8_t *base; /* the whole file */
    uint64_t size;
    int mapped;          /* base is an mmap (else borrowed memory) */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    struct { char *key; int64_t value; } *kv_index;     /* stb_ds string hash: key -> kv index */
    struct { char *key; int64_t value; } *tensor_index; /* name -> tensor index */
} gguf;

/* Maps and validates a file. On success *out owns the mapping; gguf_close frees it. */
int gguf_open(gguf **out, const char *path, terr *e);
/* Same over memory the caller keeps alive (fuzzing, tests). name is used in messages. */
int gguf_open_memory(gguf **out, const void *buf, uint64_t size, const char *name, terr *e);
void gguf_close(gguf *g);

/* Lookups. Typed getters convert between integer widths (and int -> float) and return def
 * when the key is absent or of an incompatible type. */
const gguf_value *gguf_get(const gguf *g, const char *key);
int64_t gguf_get_int(const gguf *g, const char *key, int64_t def);
double gguf_get_float(const gguf *g, const char *key, double def);
int gguf_get_bool(const gguf *g, const char *key, int def);
/* A string value: returns 1 and fills *out, or 0. */
int gguf_get_str(const gguf *g, const char *key, gguf_str *out);
/* Copies a string value into buf (NUL-terminated, truncated to cap-1); returns 1 if found. */
int gguf_get_str_buf(const gguf *g, const char *key, char *buf, size_t cap);
/* Array element i as integer / float (any numeric element type); 0 when out of range. */
int64_t gguf_arr_int(const gguf_value *v, uint64_t i);
double gguf_arr_float(const gguf_value *v, uint64_t i);
int gguf_str_eq(gguf_str s, const char *lit);
const char *gguf_type_name(uint32_t gguf_type);

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name);

/* ---- writer ------------------------------------------------------------------------
 * Collects metadata and tensor descriptions, then writes header and data. Tensor data is
 * either given up front (gguf_w_tensor with data) and written by gguf_w_save, or streamed:
 * gguf_w_tensor with data NULL, gguf_w_begin, then gguf_w_data once per tensor in order.
 * The writer copies keys, strings and array contents; tensor data pointers are borrowed. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_w_new(void);
void gguf_w_free(gguf_writer *w);
void gguf_w_set_version(gguf_writer *w, uint32_t version); /* default 3 */
void gguf_w_set_alignment(gguf_writer *w, uint32_t alignment); /* also writes general.alignment */
void gguf_w_u8(gguf_writer *w, const char *key, uint8_t v);
void gguf_w_i8(gguf_writer *w, const char *key, int8_t v);
void gguf_w_u16(gguf_writer *w, const char *key, uint16_t v);
void gguf_w_i16(gguf_writer *w, const char *key, int16_t v);
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_w_i64(gguf_writer *w, const char *key, int64_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_f64(gguf_writer *w, const char *key, double v);
void gguf_w_bool(gguf_writer *w, const char *key, int v);
void gguf_w_str(gguf_writer *w, const char *key, const char *s);
void gguf_w_strn(gguf_writer *w, const char *key, const char *s, uint64_t len);
/* An array of fixed-size scalars (elem_type not STRING/ARRAY), n elements at data. */
void gguf_w_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
/* An array of n strings; lens may be NULL (then strlen is used). */
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, const uint64_t *lens,
                    uint64_t n);
/* Copies a value read from another file (any type, nested arrays included). */
void gguf_w_value(gguf_writer *w, const char *key, const gguf_value *v);
/* Describes a tensor; ne[0] is the row length. data may be NULL for streaming. */
void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                   const int64_t *ne, const void *data);
/* Writes everything to path (all tensors must have data). */
int gguf_w_save(gguf_writer *w, const char *path, terr *e);
/* Streaming: header now, then each tensor's bytes in the order they were described. */
int gguf_w_begin(gguf_writer *w, FILE *f, terr *e);
int gguf_w_data(gguf_writer *w, FILE *f, const void *data, uint64_t nbytes, terr *e);
/* Bytes of tensor i's data as described (for producers that stream). */
uint64_t gguf_w_tensor_nbytes(const gguf_writer *w, uint64_t i);

#endif

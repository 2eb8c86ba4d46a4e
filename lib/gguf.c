/* gguf.c — GGUF reader (validating) and writer. See gguf.h for the contract.
 *
 * Layout of a GGUF file (little-endian):
 *   u32 magic "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv,
 *   n_kv × { string key, u32 value_type, value },
 *   n_tensors × { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to general.alignment (default 32), then the data section; each tensor's offset
 *   is relative to the data section and a multiple of the alignment.
 * A string is u64 length + bytes; an array is u32 element type + u64 count + elements.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_ds.h>

/* ---- ggml types -------------------------------------------------------------------- */

static const ggml_type_info k_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},         [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},     [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},     [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},     [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},    [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},   [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},   [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18}, [GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},  [GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGML_TYPE_I8] = {"I8", 1, 1},           [GGML_TYPE_I16] = {"I16", 1, 2},
    [GGML_TYPE_I32] = {"I32", 1, 4},         [GGML_TYPE_I64] = {"I64", 1, 8},
    [GGML_TYPE_F64] = {"F64", 1, 8},         [GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [GGML_TYPE_BF16] = {"BF16", 1, 2},       [GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},  [GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const ggml_type_info *ggml_type_get(uint32_t type) {
    if (type >= GGML_TYPE_COUNT || k_types[type].blck == 0) return NULL;
    return &k_types[type];
}

int ggml_type_from_name(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (k_types[t].name && strcasecmp(k_types[t].name, name) == 0) return t;
    return -1;
}

uint64_t ggml_row_size(uint32_t type, int64_t n) {
    const ggml_type_info *ti = ggml_type_get(type);
    if (!ti || n < 0 || n % ti->blck) return 0;
    return (uint64_t)(n / ti->blck) * (uint64_t)ti->size;
}

static const char *k_vtype_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

const char *gguf_type_name(uint32_t t) { return t < GGUF_TYPE_COUNT ? k_vtype_names[t] : "?"; }

static int vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0; /* string, array: variable */
    }
}

/* ---- reader ------------------------------------------------------------------------ */

/* A cursor over the file; every read checks the remaining length first. */
typedef struct cur {
    const gguf *g;
    uint64_t pos;
    terr *e;
} cur;

static int fail(cur *c, uint64_t off, const char *what) {
    return terr_set(c->e, TOME_EINPUT, "%s: offset %llu: %s", c->g->path,
                    (unsigned long long)off, what);
}

static int need(cur *c, uint64_t n, const char *what) {
    if (n > c->g->size || c->pos > c->g->size - n) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s runs past the end of the file (%llu bytes needed, %llu left)",
                 what, (unsigned long long)n, (unsigned long long)(c->g->size - c->pos));
        return fail(c, c->pos, msg);
    }
    return 0;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int rd_u32(cur *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return TOME_EINPUT;
    *v = (uint32_t)rd_le(c->g->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cur *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return TOME_EINPUT;
    *v = rd_le(c->g->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(cur *c, gguf_str *s, const char *what) {
    uint64_t len;
    uint64_t at = c->pos;
    if (rd_u64(c, &len, what)) return TOME_EINPUT;
    if (len > c->g->size - c->pos) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s length %llu runs past the end of the file", what,
                 (unsigned long long)len);
        return fail(c, at, msg);
    }
    s->ptr = (const char *)c->g->base + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

static char *str_dup(gguf_str s) {
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

/* Makes room for element i of a table the file says holds n entries. Capacity doubles with
 * what has actually been parsed, so a header that claims millions of entries costs nothing
 * until the bytes behind them have been read: memory stays within a small multiple of the
 * bytes consumed. New room is zeroed. Returns the (possibly moved) array, or NULL when out
 * of memory (p is then still valid and still the caller's). */
static void *grow(void *p, uint64_t *cap, uint64_t i, uint64_t n, size_t elsz) {
    if (i < *cap) return p;
    uint64_t nc = *cap ? *cap * 2 : 16;
    if (nc > n) nc = n;
    if (nc <= i || nc > SIZE_MAX / elsz) return NULL;
    uint8_t *np = realloc(p, (size_t)nc * elsz);
    if (!np) return NULL;
    memset(np + *cap * elsz, 0, (size_t)(nc - *cap) * elsz);
    *cap = nc;
    return np;
}

/* Reads a value of type t at the cursor. depth bounds array nesting. */
static int rd_value(cur *c, uint32_t t, gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = t;
    uint64_t at = c->pos;
    int sz = vtype_size(t);
    if (sz) {
        if (need(c, (uint64_t)sz, "value")) return TOME_EINPUT;
        uint64_t raw = rd_le(c->g->base + c->pos, sz);
        c->pos += (uint64_t)sz;
        switch (t) {
        case GGUF_TYPE_INT8: v->v.i64 = (int8_t)raw; break;
        case GGUF_TYPE_INT16: v->v.i64 = (int16_t)raw; break;
        case GGUF_TYPE_INT32: v->v.i64 = (int32_t)raw; break;
        case GGUF_TYPE_INT64: v->v.i64 = (int64_t)raw; break;
        case GGUF_TYPE_FLOAT32: { uint32_t b = (uint32_t)raw; float f; memcpy(&f, &b, 4); v->v.f64 = f; break; }
        case GGUF_TYPE_FLOAT64: memcpy(&v->v.f64, &raw, 8); break;
        case GGUF_TYPE_BOOL:
            if (raw > 1) return fail(c, at, "bool value is neither 0 nor 1");
            v->v.u64 = raw;
            break;
        default: v->v.u64 = raw; break;
        }
        return 0;
    }
    if (t == GGUF_TYPE_STRING) return rd_str(c, &v->v.str, "string");
    if (t != GGUF_TYPE_ARRAY) {
        char msg[64];
        snprintf(msg, sizeof msg, "unknown value type %u", t);
        return fail(c, at - 4, msg);
    }
    if (depth > 8) return fail(c, at, "arrays nested more than 8 deep");
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length")) return TOME_EINPUT;
    if (et >= GGUF_TYPE_COUNT) {
        char msg[64];
        snprintf(msg, sizeof msg, "unknown array element type %u", et);
        return fail(c, at, msg);
    }
    v->elem_type = et;
    v->n = n;
    uint64_t left = c->g->size - c->pos;
    int esz = vtype_size(et);
    /* Every element takes at least esz bytes (8 for a string length, 12 for an array header):
     * a count that cannot fit in what is left is rejected before anything is allocated. */
    uint64_t min_el = esz ? (uint64_t)esz : (et == GGUF_TYPE_STRING ? 8 : 12);
    if (n > left / min_el) {
        char msg[160];
        snprintf(msg, sizeof msg, "array of %llu %s elements runs past the end of the file",
                 (unsigned long long)n, gguf_type_name(et));
        return fail(c, at, msg);
    }
    if (esz) {
        v->v.raw = c->g->base + c->pos;
        c->pos += n * (uint64_t)esz;
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (((const uint8_t *)v->v.raw)[i] > 1) return fail(c, at, "bool array element is neither 0 nor 1");
        return 0;
    }
    if (et == GGUF_TYPE_STRING) {
        uint64_t cap = 0;
        for (uint64_t i = 0; i < n; i++) {
            gguf_str *np = grow(v->v.strs, &cap, i, n, sizeof(gguf_str));
            if (!np) return terr_set(c->e, TOME_ERESOURCE, "%s: out of memory", c->g->path);
            v->v.strs = np;
            if (rd_str(c, &v->v.strs[i], "array string")) return TOME_EINPUT;
        }
        return 0;
    }
    uint64_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_value *np = grow(v->v.vals, &cap, i, n, sizeof(gguf_value));
        if (!np) {
            v->n = i; /* free only what was filled */
            return terr_set(c->e, TOME_ERESOURCE, "%s: out of memory", c->g->path);
        }
        v->v.vals = np;
        int rc = rd_value(c, GGUF_TYPE_ARRAY, &v->v.vals[i], depth + 1);
        if (rc) {
            v->n = i + 1; /* free only what was filled */
            return rc;
        }
    }
    return 0;
}

static void free_value(gguf_value *v) {
    if (v->type != GGUF_TYPE_ARRAY) return;
    if (v->elem_type == GGUF_TYPE_STRING) free(v->v.strs);
    else if (v->elem_type == GGUF_TYPE_ARRAY && v->v.vals) {
        for (uint64_t i = 0; i < v->n; i++) free_value(&v->v.vals[i]);
        free(v->v.vals);
    }
    v->v.raw = NULL;
}

/* The address alignment tome's readers need for a tensor of type t: the element size of the
 * plain types, 4 for Q8_K (a float scale), 2 for the other blocks (an f16 scale), 1 for bytes.
 * general.alignment may be as small as 1, so this is checked per tensor. */
static uint64_t type_align(uint32_t t) {
    switch (t) {
    case GGML_TYPE_I8: case GGML_TYPE_MXFP4: return 1;
    case GGML_TYPE_F32: case GGML_TYPE_I32: case GGML_TYPE_Q8_K: return 4;
    case GGML_TYPE_F64: case GGML_TYPE_I64: return 8;
    default: return 2;
    }
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(gguf *g, terr *e) {
    cur c = {g, 0, e};
    char msg[256];
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
        if (g->size < 4) return fail(&c, 0, "file too short for a GGUF header");
        return fail(&c, 0, "bad magic (not a GGUF file)");
    }
    c.pos = 4;
    if (rd_u32(&c, &g->version, "version")) return TOME_EINPUT;
    if (g->version != 2 && g->version != 3) {
        snprintf(msg, sizeof msg, "unsupported GGUF version %u (tome reads 2 and 3)", g->version);
        return fail(&c, 4, msg);
    }
    uint64_t nt_at = c.pos;
    if (rd_u64(&c, &g->n_tensors, "tensor count") || rd_u64(&c, &g->n_kv, "metadata count"))
        return TOME_EINPUT;
    /* A kv takes >= 8+4 bytes, a tensor info >= 8+4+8+4+8 bytes. */
    if (g->n_kv > (g->size - c.pos) / 12) {
        snprintf(msg, sizeof msg, "metadata count %llu cannot fit in the file", (unsigned long long)g->n_kv);
        return fail(&c, nt_at + 8, msg);
    }
    if (g->n_tensors > (g->size - c.pos) / 32) {
        snprintf(msg, sizeof msg, "tensor count %llu cannot fit in the file", (unsigned long long)g->n_tensors);
        return fail(&c, nt_at, msg);
    }
    /* The tables grow as entries are parsed; n_kv / n_tensors count the entries started so
     * far, so gguf_close frees exactly those when the parse stops early. */
    const uint64_t n_kv = g->n_kv, n_tensors = g->n_tensors;
    uint64_t kv_cap = 0, t_cap = 0;
    g->n_kv = g->n_tensors = 0;
    sh_new_strdup(g->kv_index);
    sh_new_strdup(g->tensor_index);

    g->alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *nkv = grow(g->kv, &kv_cap, i, n_kv, sizeof(gguf_kv));
        if (!nkv) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", g->path);
        g->kv = nkv;
        g->n_kv = i + 1;
        gguf_kv *kv = &g->kv[i];
        gguf_str key;
        kv->offset = c.pos;
        if (rd_str(&c, &key, "metadata key")) return TOME_EINPUT;
        kv->key = str_dup(key);
        if (!kv->key) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", g->path);
        if (strlen(kv->key) != key.len) return fail(&c, kv->offset, "metadata key contains a NUL byte");
        if (shgeti(g->kv_index, kv->key) >= 0) {
            snprintf(msg, sizeof msg, "duplicate metadata key '%.100s'", kv->key);
            return fail(&c, kv->offset, msg);
        }
        uint32_t t;
        if (rd_u32(&c, &t, "value type")) return TOME_EINPUT;
        if (t >= GGUF_TYPE_COUNT) {
            snprintf(msg, sizeof msg, "unknown value type %u for key '%.100s'", t, kv->key);
            return fail(&c, c.pos - 4, msg);
        }
        int rc = rd_value(&c, t, &kv->val, 0);
        if (rc) return rc;
        shput(g->kv_index, kv->key, (int64_t)i);
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (t != GGUF_TYPE_UINT32 && t != GGUF_TYPE_UINT64 && t != GGUF_TYPE_INT32)
                return fail(&c, kv->offset, "general.alignment is not an integer");
            uint64_t a = kv->val.v.u64;
            if (t == GGUF_TYPE_INT32 && kv->val.v.i64 < 0) a = 0;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                snprintf(msg, sizeof msg, "general.alignment %llu is not a power of two <= 1 MiB",
                         (unsigned long long)a);
                return fail(&c, kv->offset, msg);
            }
            g->alignment = a;
        }
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *nt = grow(g->tensors, &t_cap, i, n_tensors, sizeof(gguf_tensor));
        if (!nt) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", g->path);
        g->tensors = nt;
        g->n_tensors = i + 1;
        gguf_tensor *t = &g->tensors[i];
        uint64_t at = c.pos;
        gguf_str name;
        if (rd_str(&c, &name, "tensor name")) return TOME_EINPUT;
        t->name = str_dup(name);
        if (!t->name) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", g->path);
        if (strlen(t->name) != name.len) return fail(&c, at, "tensor name contains a NUL byte");
        if (shgeti(g->tensor_index, t->name) >= 0) {
            snprintf(msg, sizeof msg, "duplicate tensor name '%.100s'", t->name);
            return fail(&c, at, msg);
        }
        uint64_t dims_at = c.pos;
        if (rd_u32(&c, &t->n_dims, "tensor dimension count")) return TOME_EINPUT;
        if (t->n_dims < 1 || t->n_dims > 4) {
            snprintf(msg, sizeof msg, "tensor '%.100s' has %u dimensions (1..4 allowed)", t->name, t->n_dims);
            return fail(&c, dims_at, msg);
        }
        int64_t nelem = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne, ne_at = c.pos;
            if (rd_u64(&c, &ne, "tensor dimension")) return TOME_EINPUT;
            if (ne == 0 || ne > (uint64_t)INT64_MAX || (uint64_t)nelem > (uint64_t)INT64_MAX / ne) {
                snprintf(msg, sizeof msg, "tensor '%.100s' dimension %u = %llu is zero or makes the element count overflow",
                         t->name, d, (unsigned long long)ne);
                return fail(&c, ne_at, msg);
            }
            t->ne[d] = (int64_t)ne;
            nelem *= (int64_t)ne;
        }
        t->nelem = nelem;
        uint64_t type_at = c.pos;
        if (rd_u32(&c, &t->type, "tensor type")) return TOME_EINPUT;
        const ggml_type_info *ti = ggml_type_get(t->type);
        if (!ti) {
            snprintf(msg, sizeof msg, "tensor '%.100s' has unknown type %u", t->name, t->type);
            return fail(&c, type_at, msg);
        }
        if (t->ne[0] % ti->blck) {
            snprintf(msg, sizeof msg, "tensor '%.100s' row length %lld is not a multiple of the %s block size %d",
                     t->name, (long long)t->ne[0], ti->name, ti->blck);
            return fail(&c, dims_at, msg);
        }
        uint64_t nblocks = (uint64_t)nelem / (uint64_t)ti->blck;
        if (nblocks > UINT64_MAX / (uint64_t)ti->size) return fail(&c, dims_at, "tensor byte size overflows");
        t->nbytes = nblocks * (uint64_t)ti->size;
        uint64_t off_at = c.pos;
        if (rd_u64(&c, &t->offset, "tensor offset")) return TOME_EINPUT;
        if (t->offset % g->alignment) {
            snprintf(msg, sizeof msg, "tensor '%.100s' data offset %llu is not a multiple of the alignment %llu",
                     t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
            return fail(&c, off_at, msg);
        }
        t->info_offset = at;
        shput(g->tensor_index, t->name, (int64_t)i);
    }

    /* Data section: aligned after the tensor infos. */
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = c.pos + pad;
    if (g->n_tensors == 0) return 0;
    if (g->data_offset > g->size) return fail(&c, c.pos, "data section starts past the end of the file");
    uint64_t data_size = g->size - g->data_offset;

    gguf_tensor **order = tcalloc(g->n_tensors, sizeof *order);
    if (!order) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, cmp_tensor_offset);
    int rc = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        gguf_tensor *t = order[i];
        uint64_t info_at = t->info_offset;
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            snprintf(msg, sizeof msg, "tensor '%.100s' data [%llu, +%llu) lies outside the file's data section (%llu bytes)",
                     t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                     (unsigned long long)data_size);
            rc = fail(&c, info_at, msg);
        } else if (i + 1 < g->n_tensors && t->offset + t->nbytes > order[i + 1]->offset) {
            snprintf(msg, sizeof msg, "tensor '%.100s' data overlaps tensor '%.100s'", t->name, order[i + 1]->name);
            rc = fail(&c, info_at, msg);
        } else if ((uintptr_t)(g->base + g->data_offset + t->offset) % type_align(t->type)) {
            snprintf(msg, sizeof msg, "tensor '%.100s' data at file offset %llu is not aligned to %llu bytes "
                     "(general.alignment %llu)", t->name, (unsigned long long)(g->data_offset + t->offset),
                     (unsigned long long)type_align(t->type), (unsigned long long)g->alignment);
            rc = fail(&c, info_at, msg);
        }
    }
    free(order);
    if (rc) return rc;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].data = g->base + g->data_offset + g->tensors[i].offset;
    return 0;
}

static int open_common(gguf **out, gguf *g, terr *e) {
    int rc = parse(g, e);
    if (rc) {
        gguf_close(g);
        *out = NULL;
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open_memory(gguf **out, const void *buf, uint64_t size, const char *name, terr *e) {
    *out = NULL;
    gguf *g = calloc(1, sizeof *g);
    if (!g) return terr_set(e, TOME_ERESOURCE, "%s: out of memory", name);
    g->path = strdup(name);
    if (!g->path) {
        free(g);
        return terr_set(e, TOME_ERESOURCE, "%s: out of memory", name);
    }
    g->base = buf;
    g->size = size;
    return open_common(out, g, e);
}

int gguf_open(gguf **out, const char *path, terr *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return terr_set(e, TOME_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return terr_set(e, TOME_EINPUT, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return terr_set(e, TOME_EINPUT, "%s: offset 0: empty file (not a GGUF file)", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return terr_set(e, TOME_EINPUT, "%s: cannot mmap: %s", path, strerror(errno));
    gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(p, (size_t)st.st_size);
        return terr_set(e, TOME_ERESOURCE, "%s: out of memory", path);
    }
    g->path = strdup(path);
    if (!g->path) {
        munmap(p, (size_t)st.st_size);
        free(g);
        return terr_set(e, TOME_ERESOURCE, "%s: out of memory", path);
    }
    g->base = p;
    g->size = (uint64_t)st.st_size;
    g->mapped = 1;
    return open_common(out, g, e);
}

void gguf_close(gguf *g) {
    if (!g) return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free_value(&g->kv[i].val);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
        free(g->tensors);
    }
    shfree(g->kv_index);
    shfree(g->tensor_index);
    if (g->mapped) munmap((void *)g->base, (size_t)g->size);
    free(g->path);
    free(g);
}

/* ---- lookups ----------------------------------------------------------------------- */

const gguf_value *gguf_get(const gguf *g, const char *key) {
    if (!g || !g->kv_index) return NULL;
    ptrdiff_t i = shgeti(((gguf *)g)->kv_index, key);
    return i < 0 ? NULL : &g->kv[g->kv_index[i].value].val;
}

static int is_int_type(uint32_t t) {
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64 || t == GGUF_TYPE_BOOL;
}
static int is_signed_type(uint32_t t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

int64_t gguf_get_int(const gguf *g, const char *key, int64_t def) {
    const gguf_value *v = gguf_get(g, key);
    if (!v || !is_int_type(v->type) || v->type == GGUF_TYPE_FLOAT32) return def;
    if (is_signed_type(v->type)) return v->v.i64;
    return v->v.u64 > (uint64_t)INT64_MAX ? def : (int64_t)v->v.u64;
}

double gguf_get_float(const gguf *g, const char *key, double def) {
    const gguf_value *v = gguf_get(g, key);
    if (!v) return def;
    if (v->type == GGUF_TYPE_FLOAT32 || v->type == GGUF_TYPE_FLOAT64) return v->v.f64;
    if (is_int_type(v->type)) return is_signed_type(v->type) ? (double)v->v.i64 : (double)v->v.u64;
    return def;
}

int gguf_get_bool(const gguf *g, const char *key, int def) {
    const gguf_value *v = gguf_get(g, key);
    if (!v || !is_int_type(v->type)) return def;
    return v->v.u64 != 0;
}

int gguf_get_str(const gguf *g, const char *key, gguf_str *out) {
    const gguf_value *v = gguf_get(g, key);
    if (!v || v->type != GGUF_TYPE_STRING) return 0;
    *out = v->v.str;
    return 1;
}

int gguf_get_str_buf(const gguf *g, const char *key, char *buf, size_t cap) {
    gguf_str s;
    if (!gguf_get_str(g, key, &s) || cap == 0) return 0;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return 1;
}

/* A float element read as an integer: truncated toward zero, saturated, NaN -> 0 (a file
 * may hold any bit pattern; converting an out-of-range double is undefined behaviour). */
static int64_t f64_to_i64(double d) {
    if (d != d) return 0;
    if (d >= 9223372036854775807.0) return INT64_MAX;
    if (d <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)d;
}

int64_t gguf_arr_int(const gguf_value *v, uint64_t i) {
    if (!v || v->type != GGUF_TYPE_ARRAY || i >= v->n) return 0;
    int sz = vtype_size(v->elem_type);
    if (!sz) return 0;
    const uint8_t *p = (const uint8_t *)v->v.raw + i * (uint64_t)sz;
    uint64_t raw = rd_le(p, sz);
    switch (v->elem_type) {
    case GGUF_TYPE_INT8: return (int8_t)raw;
    case GGUF_TYPE_INT16: return (int16_t)raw;
    case GGUF_TYPE_INT32: return (int32_t)raw;
    case GGUF_TYPE_FLOAT32: { uint32_t b = (uint32_t)raw; float f; memcpy(&f, &b, 4); return f64_to_i64(f); }
    case GGUF_TYPE_FLOAT64: { double d; memcpy(&d, &raw, 8); return f64_to_i64(d); }
    default: return (int64_t)raw;
    }
}

double gguf_arr_float(const gguf_value *v, uint64_t i) {
    if (!v || v->type != GGUF_TYPE_ARRAY || i >= v->n) return 0;
    int sz = vtype_size(v->elem_type);
    if (!sz) return 0;
    const uint8_t *p = (const uint8_t *)v->v.raw + i * (uint64_t)sz;
    uint64_t raw = rd_le(p, sz);
    if (v->elem_type == GGUF_TYPE_FLOAT32) { uint32_t b = (uint32_t)raw; float f; memcpy(&f, &b, 4); return f; }
    if (v->elem_type == GGUF_TYPE_FLOAT64) { double d; memcpy(&d, &raw, 8); return d; }
    return (double)gguf_arr_int(v, i);
}

int gguf_str_eq(gguf_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name) {
    if (!g || !g->tensor_index) return NULL;
    ptrdiff_t i = shgeti(((gguf *)g)->tensor_index, name);
    return i < 0 ? NULL : &g->tensors[g->tensor_index[i].value];
}

/* ---- writer ------------------------------------------------------------------------ */

typedef struct wkv {
    char *key;
    uint8_t *bytes; /* the serialized value type + value */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
    const void *data;
} wtensor;

struct gguf_writer {
    uint32_t version, alignment;
    wkv *kvs;          /* stb_ds array */
    wtensor *tensors;  /* stb_ds array */
    uint64_t next_data; /* streaming: index of the next tensor to write */
    int oom;
};

typedef struct buf { uint8_t *p; size_t len, cap; int oom; } buf;

static void b_put(buf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return; /* n == 0: src may be NULL (an empty array) */
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void b_le(buf *b, uint64_t v, int n) {
    uint8_t tmp[8];
    for (int i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    b_put(b, tmp, (size_t)n);
}
static void b_str(buf *b, const char *s, uint64_t len) {
    b_le(b, len, 8);
    b_put(b, s, (size_t)len);
}

gguf_writer *gguf_w_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) { w->version = 3; w->alignment = 32; }
    return w;
}

void gguf_w_free(gguf_writer *w) {
    if (!w) return;
    for (ptrdiff_t i = 0; i < arrlen(w->kvs); i++) { free(w->kvs[i].key); free(w->kvs[i].bytes); }
    for (ptrdiff_t i = 0; i < arrlen(w->tensors); i++) free(w->tensors[i].name);
    arrfree(w->kvs);
    arrfree(w->tensors);
    free(w);
}

void gguf_w_set_version(gguf_writer *w, uint32_t version) { w->version = version; }

static void add_kv(gguf_writer *w, const char *key, buf *b) {
    if (b->oom) { w->oom = 1; free(b->p); return; }
    /* replace an existing key of the same name */
    for (ptrdiff_t i = 0; i < arrlen(w->kvs); i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].bytes);
            w->kvs[i].bytes = b->p;
            w->kvs[i].len = b->len;
            return;
        }
    }
    wkv kv = {strdup(key), b->p, b->len};
    if (!kv.key) { w->oom = 1; free(b->p); return; }
    arrput(w->kvs, kv);
}

static void put_scalar(gguf_writer *w, const char *key, uint32_t t, uint64_t bits) {
    buf b = {0};
    b_le(&b, t, 4);
    b_le(&b, bits, vtype_size(t));
    add_kv(w, key, &b);
}

void gguf_w_set_alignment(gguf_writer *w, uint32_t a) {
    w->alignment = a;
    put_scalar(w, "general.alignment", GGUF_TYPE_UINT32, a);
}
void gguf_w_u8(gguf_writer *w, const char *k, uint8_t v) { put_scalar(w, k, GGUF_TYPE_UINT8, v); }
void gguf_w_i8(gguf_writer *w, const char *k, int8_t v) { put_scalar(w, k, GGUF_TYPE_INT8, (uint8_t)v); }
void gguf_w_u16(gguf_writer *w, const char *k, uint16_t v) { put_scalar(w, k, GGUF_TYPE_UINT16, v); }
void gguf_w_i16(gguf_writer *w, const char *k, int16_t v) { put_scalar(w, k, GGUF_TYPE_INT16, (uint16_t)v); }
void gguf_w_u32(gguf_writer *w, const char *k, uint32_t v) { put_scalar(w, k, GGUF_TYPE_UINT32, v); }
void gguf_w_i32(gguf_writer *w, const char *k, int32_t v) { put_scalar(w, k, GGUF_TYPE_INT32, (uint32_t)v); }
void gguf_w_u64(gguf_writer *w, const char *k, uint64_t v) { put_scalar(w, k, GGUF_TYPE_UINT64, v); }
void gguf_w_i64(gguf_writer *w, const char *k, int64_t v) { put_scalar(w, k, GGUF_TYPE_INT64, (uint64_t)v); }
void gguf_w_bool(gguf_writer *w, const char *k, int v) { put_scalar(w, k, GGUF_TYPE_BOOL, v ? 1 : 0); }
void gguf_w_f32(gguf_writer *w, const char *k, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_scalar(w, k, GGUF_TYPE_FLOAT32, bits);
}
void gguf_w_f64(gguf_writer *w, const char *k, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_scalar(w, k, GGUF_TYPE_FLOAT64, bits);
}
void gguf_w_strn(gguf_writer *w, const char *k, const char *s, uint64_t len) {
    buf b = {0};
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_str(&b, s, len);
    add_kv(w, k, &b);
}
void gguf_w_str(gguf_writer *w, const char *k, const char *s) { gguf_w_strn(w, k, s, strlen(s)); }

void gguf_w_arr(gguf_writer *w, const char *k, uint32_t et, const void *data, uint64_t n) {
    buf b = {0};
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, et, 4);
    b_le(&b, n, 8);
    b_put(&b, data, (size_t)(n * (uint64_t)vtype_size(et))); /* host is little-endian */
    add_kv(w, k, &b);
}

void gguf_w_arr_str(gguf_writer *w, const char *k, const char *const *s, const uint64_t *lens, uint64_t n) {
    buf b = {0};
    b_le(&b, GGUF_TYPE_ARRAY, 4);
    b_le(&b, GGUF_TYPE_STRING, 4);
    b_le(&b, n, 8);
    for (uint64_t i = 0; i < n; i++) b_str(&b, s[i], lens ? lens[i] : strlen(s[i]));
    add_kv(w, k, &b);
}

static void ser_value(buf *b, const gguf_value *v, int with_type) {
    if (with_type) b_le(b, v->type, 4);
    int sz = vtype_size(v->type);
    if (sz) {
        uint64_t bits = v->v.u64;
        if (v->type == GGUF_TYPE_FLOAT32) { float f = (float)v->v.f64; uint32_t u; memcpy(&u, &f, 4); bits = u; }
        b_le(b, bits, sz);
    } else if (v->type == GGUF_TYPE_STRING) {
        b_str(b, v->v.str.ptr, v->v.str.len);
    } else {
        b_le(b, v->elem_type, 4);
        b_le(b, v->n, 8);
        int esz = vtype_size(v->elem_type);
        if (esz) b_put(b, v->v.raw, (size_t)(v->n * (uint64_t)esz));
        else if (v->elem_type == GGUF_TYPE_STRING)
            for (uint64_t i = 0; i < v->n; i++) b_str(b, v->v.strs[i].ptr, v->v.strs[i].len);
        else
            for (uint64_t i = 0; i < v->n; i++) ser_value(b, &v->v.vals[i], 0);
    }
}

void gguf_w_value(gguf_writer *w, const char *k, const gguf_value *v) {
    buf b = {0};
    ser_value(&b, v, 1);
    add_kv(w, k, &b);
}

void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                   const int64_t *ne, const void *data) {
    wtensor t = {0};
    t.name = strdup(name);
    t.type = type;
    t.n_dims = n_dims;
    int64_t nelem = 1;
    for (int d = 0; d < 4; d++) t.ne[d] = d < (int)n_dims ? ne[d] : 1;
    for (int d = 0; d < 4; d++) nelem *= t.ne[d];
    t.nbytes = ggml_row_size(type, t.ne[0]) * (uint64_t)(nelem / t.ne[0]);
    t.data = data;
    uint64_t off = 0;
    if (arrlen(w->tensors)) {
        wtensor *p = &w->tensors[arrlen(w->tensors) - 1];
        off = p->offset + p->nbytes;
        off += (w->alignment - off % w->alignment) % w->alignment;
    }
    t.offset = off;
    if (!t.name) w->oom = 1;
    else arrput(w->tensors, t);
}

uint64_t gguf_w_tensor_nbytes(const gguf_writer *w, uint64_t i) {
    return i < (uint64_t)arrlen(w->tensors) ? w->tensors[i].nbytes : 0;
}

static int w_pad(FILE *f, uint64_t pos, uint32_t align) {
    static const uint8_t zeros[256];
    uint64_t pad = (align - pos % align) % align;
    while (pad) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        if (fwrite(zeros, 1, n, f) != n) return -1;
        pad -= n;
    }
    return 0;
}

int gguf_w_begin(gguf_writer *w, FILE *f, terr *e) {
    if (w->oom) return terr_set(e, TOME_ERESOURCE, "gguf writer: out of memory");
    /* Offsets were computed with the alignment current when each tensor was added; recompute
     * in case gguf_w_set_alignment came later. */
    uint64_t off = 0;
    for (ptrdiff_t i = 0; i < arrlen(w->tensors); i++) {
        off += (w->alignment - off % w->alignment) % w->alignment;
        w->tensors[i].offset = off;
        off += w->tensors[i].nbytes;
    }
    buf b = {0};
    b_put(&b, "GGUF", 4);
    b_le(&b, w->version, 4);
    b_le(&b, (uint64_t)arrlen(w->tensors), 8);
    b_le(&b, (uint64_t)arrlen(w->kvs), 8);
    for (ptrdiff_t i = 0; i < arrlen(w->kvs); i++) {
        b_str(&b, w->kvs[i].key, strlen(w->kvs[i].key));
        b_put(&b, w->kvs[i].bytes, w->kvs[i].len);
    }
    for (ptrdiff_t i = 0; i < arrlen(w->tensors); i++) {
        wtensor *t = &w->tensors[i];
        b_str(&b, t->name, strlen(t->name));
        b_le(&b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) b_le(&b, (uint64_t)t->ne[d], 8);
        b_le(&b, t->type, 4);
        b_le(&b, t->offset, 8);
    }
    if (b.oom) { free(b.p); return terr_set(e, TOME_ERESOURCE, "gguf writer: out of memory"); }
    int bad = fwrite(b.p, 1, b.len, f) != b.len || w_pad(f, b.len, w->alignment);
    free(b.p);
    w->next_data = 0;
    if (bad) return terr_set(e, TOME_EINPUT, "gguf writer: write failed: %s", strerror(errno));
    return 0;
}

int gguf_w_data(gguf_writer *w, FILE *f, const void *data, uint64_t nbytes, terr *e) {
    if (w->next_data >= (uint64_t)arrlen(w->tensors))
        return terr_set(e, TOME_EINPUT, "gguf writer: more tensor data than tensors described");
    wtensor *t = &w->tensors[w->next_data];
    if (nbytes != t->nbytes)
        return terr_set(e, TOME_EINPUT, "gguf writer: tensor '%s' needs %llu bytes, got %llu", t->name,
                        (unsigned long long)t->nbytes, (unsigned long long)nbytes);
    if (fwrite(data, 1, (size_t)nbytes, f) != nbytes || w_pad(f, t->offset + nbytes, w->alignment))
        return terr_set(e, TOME_EINPUT, "gguf writer: write failed: %s", strerror(errno));
    w->next_data++;
    return 0;
}

int gguf_w_save(gguf_writer *w, const char *path, terr *e) {
    for (ptrdiff_t i = 0; i < arrlen(w->tensors); i++)
        if (!w->tensors[i].data)
            return terr_set(e, TOME_EINPUT, "gguf writer: tensor '%s' has no data", w->tensors[i].name);
    FILE *f = fopen(path, "wb");
    if (!f) return terr_set(e, TOME_EINPUT, "%s: cannot create: %s", path, strerror(errno));
    int rc = gguf_w_begin(w, f, e);
    for (ptrdiff_t i = 0; i < arrlen(w->tensors) && !rc; i++)
        rc = gguf_w_data(w, f, w->tensors[i].data, w->tensors[i].nbytes, e);
    if (fclose(f) != 0 && !rc) rc = terr_set(e, TOME_EINPUT, "%s: write failed: %s", path, strerror(errno));
    return rc;
}

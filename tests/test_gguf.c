/* test_gguf.c — GGUF reader and writer. */
#include "test.h"

#include "gguf.h"

/* Writes a small GGUF with every metadata type and two tensors, reads it back key by key. */
TEST(gguf_write_read_roundtrip) {
    char path[512];
    snprintf(path, sizeof path, "%s/a.gguf", ttmpdir());
    gguf_writer *w = gguf_w_new();
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_u32(w, "llama.block_count", 7);
    gguf_w_i8(w, "t.i8", -5);
    gguf_w_u64(w, "t.u64", 1ull << 40);
    gguf_w_f32(w, "t.f32", 0.5f);
    gguf_w_f64(w, "t.f64", -2.25);
    gguf_w_bool(w, "t.bool", 1);
    const char *strs[] = {"a", "", "ccc"};
    gguf_w_arr_str(w, "t.strs", strs, NULL, 3);
    int32_t ints[] = {1, -2, 3};
    gguf_w_arr(w, "t.ints", GGUF_TYPE_INT32, ints, 3);
    float t0[64];
    for (int i = 0; i < 64; i++) t0[i] = (float)i * 0.25f;
    int64_t ne0[2] = {16, 4};
    gguf_w_tensor(w, "w0", GGML_TYPE_F32, 2, ne0, t0);
    int64_t ne1[1] = {8};
    gguf_w_tensor(w, "w1", GGML_TYPE_F32, 1, ne1, t0 + 8);
    terr e = {0};
    REQUIREF(gguf_w_save(w, path, &e) == 0, "%s", e.msg);
    gguf_w_free(w);

    gguf *g = NULL;
    REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
    gguf_str s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && gguf_str_eq(s, "llama"));
    CHECK(gguf_get_int(g, "llama.block_count", 0) == 7);
    CHECK(gguf_get_int(g, "t.i8", 0) == -5);
    CHECK(gguf_get_int(g, "t.u64", 0) == (int64_t)(1ull << 40));
    CHECK_NEAR(gguf_get_float(g, "t.f32", 0), 0.5, 0);
    CHECK_NEAR(gguf_get_float(g, "t.f64", 0), -2.25, 0);
    CHECK(gguf_get_bool(g, "t.bool", 0) == 1);
    CHECK(gguf_get_int(g, "missing", 42) == 42);
    const gguf_value *v = gguf_get(g, "t.strs");
    REQUIRE(v && v->type == GGUF_TYPE_ARRAY && v->elem_type == GGUF_TYPE_STRING && v->n == 3);
    CHECK(gguf_str_eq(v->v.strs[0], "a") && gguf_str_eq(v->v.strs[1], "") && gguf_str_eq(v->v.strs[2], "ccc"));
    v = gguf_get(g, "t.ints");
    REQUIRE(v && v->n == 3);
    CHECK(gguf_arr_int(v, 1) == -2);
    const gguf_tensor *t = gguf_find_tensor(g, "w0");
    REQUIRE(t);
    CHECK(t->ne[0] == 16 && t->ne[1] == 4 && t->nbytes == 256);
    CHECK(((const float *)t->data)[63] == 63 * 0.25f);
    CHECK((uintptr_t)t->data % 32 == 0);
    t = gguf_find_tensor(g, "w1");
    REQUIRE(t);
    CHECK(((const float *)t->data)[0] == 2.0f);
    gguf_close(g);
}

/* ==== helpers for malformed files ================================================== */

#include <stdint.h>
#include <sys/stat.h>

#include "arch.h"
#include "util.h"

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int write_bytes(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, len, f);
    return (fclose(f) != 0 || w != len) ? -1 : 0;
}

/* Reads a file into a heap buffer (caller frees); NULL on failure. */
static uint8_t *slurp(const char *path, size_t *len) {
    terr e = {0};
    return (uint8_t *)tread_file(path, len, &e);
}

/* buf[0..len) must be rejected both from a file and from memory: TOME_EINPUT, a message that
 * names the file, says "offset OFF:" (OFF < 0: any offset) and contains want (if not NULL).
 * The memory copy is exactly len bytes on the heap so ASan sees any read past the end. */
static void expect_bad_(tctx *T, int line, const uint8_t *buf, size_t len, long long off, const char *want) {
    static int seq;
    char path[600], offs[64];
    snprintf(path, sizeof path, "%s/bad-%d.gguf", ttmpdir(), seq++);
    if (off >= 0) snprintf(offs, sizeof offs, ": offset %lld: ", off);
    else snprintf(offs, sizeof offs, ": offset ");
    /* Big inputs (the real models) go through memory only: writing 20 MB per case is slow
     * and the file path adds nothing the small cases do not cover. */
    int from_file = len < (4u << 20);
    if (from_file && write_bytes(path, buf, len) != 0) { tt_fail(T, __FILE__, line, "cannot write %s", path); return; }
    for (int mem = !from_file; mem < 2; mem++) {
        gguf *g = NULL;
        terr e = {0};
        int rc;
        const char *name = mem ? "membuf" : path;
        if (mem) {
            uint8_t *copy = malloc(len ? len : 1);
            memcpy(copy, buf, len);
            rc = gguf_open_memory(&g, copy, len, name, &e);
            gguf_close(g);
            free(copy);
        } else {
            rc = gguf_open(&g, path, &e);
            gguf_close(g);
        }
        if (rc != TOME_EINPUT) {
            tt_fail(T, __FILE__, line, "%s: rc %d, expected %d (msg '%s')", mem ? "memory" : "file", rc,
                    TOME_EINPUT, e.msg);
            continue;
        }
        if (strncmp(e.msg, name, strlen(name)) != 0 || !strstr(e.msg, offs))
            tt_fail(T, __FILE__, line, "message '%s' lacks '%s%s'", e.msg, name, offs);
        if (want && !strstr(e.msg, want)) tt_fail(T, __FILE__, line, "message '%s' lacks '%s'", e.msg, want);
        if (strchr(e.msg, '\n')) tt_fail(T, __FILE__, line, "message has a newline: '%s'", e.msg);
    }
}
#define EXPECT_BAD(buf, len, off, want) expect_bad_(T, __LINE__, buf, len, off, want)

/* Finds a key in a parsed file: its kv (for offsets) or NULL. */
static const gguf_kv *find_kv(const gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

/* Offset of a kv's value-type field: after the u64 key length and the key bytes. */
static uint64_t kv_type_at(const gguf_kv *kv) { return kv->offset + 8 + strlen(kv->key); }

/* Byte offsets inside a tensor's info entry. */
static uint64_t ti_dims_at(const gguf_tensor *t) { return t->info_offset + 8 + strlen(t->name); }
static uint64_t ti_ne_at(const gguf_tensor *t, int d) { return ti_dims_at(t) + 4 + 8 * (uint64_t)d; }
static uint64_t ti_type_at(const gguf_tensor *t) { return ti_ne_at(t, (int)t->n_dims); }
static uint64_t ti_off_at(const gguf_tensor *t) { return ti_type_at(t) + 4; }

/* A small but complete file: scalars, a string, arrays (of u8, of strings, of arrays of
 * strings) and three F32 tensors. The last tensor ends on an alignment boundary, so every
 * strict prefix of the file is invalid. Returns the path (static buffer per tag). */
static const char *write_small(tctx *T, const char *tag, uint32_t version) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s.gguf", ttmpdir(), tag);
    gguf_writer *w = gguf_w_new();
    gguf_w_set_version(w, version);
    gguf_w_set_alignment(w, 32);
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_u32(w, "llama.block_count", 2);
    gguf_w_f32(w, "x.f", 1.5f);
    uint8_t bytes[5] = {1, 2, 3, 250, 255};
    gguf_w_arr(w, "x.u8s", GGUF_TYPE_UINT8, bytes, 5);
    const char *strs[] = {"alpha", "", "\xc3\xa9t\xc3\xa9"};
    gguf_w_arr_str(w, "x.strs", strs, NULL, 3);
    gguf_str in0[2] = {{"a", 1}, {"bc", 2}}, in1[1] = {{"def", 3}};
    gguf_value inner[2] = {{.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_STRING, .n = 2, .v.strs = in0},
                           {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_STRING, .n = 1, .v.strs = in1}};
    gguf_value outer = {.type = GGUF_TYPE_ARRAY, .elem_type = GGUF_TYPE_ARRAY, .n = 2, .v.vals = inner};
    gguf_w_value(w, "x.nested", &outer);
    static float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)(i + 1);
    int64_t ne_a[2] = {4, 3}, ne_b[1] = {5}, ne_c[1] = {8};
    gguf_w_tensor(w, "a", GGML_TYPE_F32, 2, ne_a, data);
    gguf_w_tensor(w, "b", GGML_TYPE_F32, 1, ne_b, data + 16);
    gguf_w_tensor(w, "c", GGML_TYPE_F32, 1, ne_c, data + 32); /* 32 bytes: ends aligned */
    terr e = {0};
    int rc = gguf_w_save(w, path, &e);
    gguf_w_free(w);
    if (rc) { tt_fail(T, __FILE__, __LINE__, "%s", e.msg); return NULL; }
    return path;
}

/* ==== malformed headers and metadata (a real vocabulary file, patched) ============== */

TEST(gguf_bad_header_and_metadata) {
    DATA_OR_SKIP(src, "vocab/ggml-vocab-llama-spm.gguf");
    size_t len;
    uint8_t *orig = slurp(src, &len);
    REQUIRE(orig && len > 4096);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, src, &e) == 0, "%s", e.msg);
    const gguf_kv *arch = find_kv(g, "general.architecture");
    const gguf_kv *toks = find_kv(g, "tokenizer.ggml.tokens");
    const gguf_kv *bcnt = find_kv(g, "llama.block_count");
    REQUIRE(arch && toks && bcnt);
    REQUIRE(arch == &g->kv[0]); /* the file's first key; its offset is 24 */
    CHECK(arch->offset == 24);
    uint8_t *b = malloc(len);

#define RESET() memcpy(b, orig, len)
    RESET(); memcpy(b, "GGUE", 4);                    EXPECT_BAD(b, len, 0, "bad magic");
    RESET(); put_le(b + 4, 1, 4);                     EXPECT_BAD(b, len, 4, "unsupported GGUF version 1");
    RESET(); put_le(b + 4, 4, 4);                     EXPECT_BAD(b, len, 4, "unsupported GGUF version 4");
    RESET(); put_le(b + 8, 1ull << 62, 8);            EXPECT_BAD(b, len, 8, "tensor count");
    RESET(); put_le(b + 16, UINT64_MAX, 8);           EXPECT_BAD(b, len, 16, "metadata count");
    /* one key more than there is: the reader walks into the end of the file */
    RESET(); put_le(b + 16, g->n_kv + 1, 8);          EXPECT_BAD(b, len, -1, "past the end");
    /* string lengths past the end: a key, a string value, a string inside an array */
    RESET(); put_le(b + 24, len, 8);                  EXPECT_BAD(b, len, 24, "runs past the end");
    RESET(); put_le(b + 24, UINT64_MAX, 8);           EXPECT_BAD(b, len, 24, "runs past the end");
    uint64_t sv = kv_type_at(arch) + 4;
    RESET(); put_le(b + sv, UINT64_MAX - 3, 8);       EXPECT_BAD(b, len, (long long)sv, "string length");
    uint64_t arr = kv_type_at(toks) + 4;              /* u32 element type, u64 count, strings */
    uint64_t s0 = arr + 12;
    RESET(); put_le(b + s0, 1ull << 40, 8);           EXPECT_BAD(b, len, (long long)s0, "array string");
    RESET(); put_le(b + arr + 4, 1ull << 61, 8);      EXPECT_BAD(b, len, (long long)arr, "array of");
    RESET(); put_le(b + arr + 4, UINT64_MAX, 8);      EXPECT_BAD(b, len, (long long)arr, "array of");
    /* unknown value type, unknown array element type */
    RESET(); put_le(b + kv_type_at(bcnt), 13, 4);     EXPECT_BAD(b, len, (long long)kv_type_at(bcnt), "unknown value type 13");
    RESET(); put_le(b + kv_type_at(bcnt), 0x80000000u, 4); EXPECT_BAD(b, len, (long long)kv_type_at(bcnt), "unknown value type");
    RESET(); put_le(b + arr, 99, 4);                  EXPECT_BAD(b, len, (long long)arr, "unknown array element type 99");
    /* a bool that is neither 0 nor 1 */
    const gguf_kv *abos = find_kv(g, "tokenizer.ggml.add_bos_token");
    REQUIRE(abos && abos->val.type == GGUF_TYPE_BOOL);
    RESET(); b[kv_type_at(abos) + 4] = 2;             EXPECT_BAD(b, len, (long long)kv_type_at(abos) + 4, "bool");
    /* duplicate key: a later key of the same length renamed to llama.block_count */
    {
        const char *dup = "llama.block_count";
        const gguf_kv *k20 = NULL;
        for (uint64_t i = 0; i < g->n_kv; i++)
            if (strlen(g->kv[i].key) == strlen(dup) && strcmp(g->kv[i].key, dup) && g->kv[i].offset > bcnt->offset)
                k20 = &g->kv[i];
        if (k20) {
            RESET(); memcpy(b + k20->offset + 8, dup, strlen(dup));
            EXPECT_BAD(b, len, (long long)k20->offset, "duplicate metadata key 'llama.block_count'");
        } else {
            tt_fail(T, __FILE__, __LINE__, "no key of length %zu after llama.block_count", strlen(dup));
        }
    }
    /* a key with a NUL inside */
    RESET(); b[24 + 8 + 3] = 0;                       EXPECT_BAD(b, len, 24, "NUL");
    /* truncated right after the header, and in the middle of the token list */
    EXPECT_BAD(orig, 24, 16, "metadata count 22 cannot fit");
    EXPECT_BAD(orig, (size_t)(s0 + 20), -1, "past the end");
    EXPECT_BAD(orig, 3, 0, "too short");
#undef RESET
    free(b);
    gguf_close(g);
    free(orig);
    free(src);
}

/* ==== malformed tensor tables (a real model, patched) ================================ */

TEST(gguf_bad_tensors) {
    DATA_OR_SKIP(src, "models/llamacpp/tiny-gqa768-Q8_0.gguf");
    size_t len;
    uint8_t *orig = slurp(src, &len);
    REQUIRE(orig);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, src, &e) == 0, "%s", e.msg);
    REQUIRE(g->n_tensors == 39);
    /* t0 is the first tensor in the table, t1 the one whose data follows it */
    const gguf_tensor *t0 = &g->tensors[0], *t1 = NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].offset > t0->offset && (!t1 || g->tensors[i].offset < t1->offset)) t1 = &g->tensors[i];
    REQUIRE(t1 && t0->n_dims == 2);
    CHECK(get_le(orig + ti_off_at(t0), 8) == t0->offset);
    CHECK(get_le(orig + ti_type_at(t0), 4) == t0->type);
    uint8_t *b = malloc(len);
    char want[160];
#define RESET() memcpy(b, orig, len)
    /* data outside the file: past the end, and straddling the end */
    RESET(); put_le(b + ti_off_at(t0), (len / 32 + 1) * 32, 8);
    EXPECT_BAD(b, len, (long long)t0->info_offset, "lies outside the file");
    const gguf_tensor *last = t0;
    for (uint64_t i = 0; i < g->n_tensors; i++) if (g->tensors[i].offset > last->offset) last = &g->tensors[i];
    EXPECT_BAD(orig, len - 1, (long long)last->info_offset, "lies outside the file");
    EXPECT_BAD(orig, (size_t)g->data_offset - 1, -1, "data section starts past the end");
    /* two tensors overlapping: t1 moved onto t0's data */
    RESET(); put_le(b + ti_off_at(t1), t0->offset + 32, 8);
    snprintf(want, sizeof want, "tensor '%s' data overlaps tensor '%s'", t0->name, t1->name);
    EXPECT_BAD(b, len, (long long)t0->info_offset, want);
    /* misaligned offset */
    RESET(); put_le(b + ti_off_at(t1), t1->offset + 8, 8);
    EXPECT_BAD(b, len, (long long)ti_off_at(t1), "not a multiple of the alignment 32");
    /* unknown tensor types: retired id 4, out of range */
    RESET(); put_le(b + ti_type_at(t0), 4, 4);
    EXPECT_BAD(b, len, (long long)ti_type_at(t0), "unknown type 4");
    RESET(); put_le(b + ti_type_at(t0), 0xffffffffu, 4);
    EXPECT_BAD(b, len, (long long)ti_type_at(t0), "unknown type 4294967295");
    /* a row length that is not a multiple of the Q8_0 block */
    RESET(); put_le(b + ti_ne_at(t0, 0), 250, 8);
    EXPECT_BAD(b, len, (long long)ti_dims_at(t0), "not a multiple of the Q8_0 block size 32");
    /* dims whose product overflows, zero dim, dimension counts 0 and 5 */
    RESET(); put_le(b + ti_ne_at(t0, 0), 1ull << 40, 8); put_le(b + ti_ne_at(t0, 1), 1ull << 40, 8);
    EXPECT_BAD(b, len, (long long)ti_ne_at(t0, 1), "overflow");
    RESET(); put_le(b + ti_ne_at(t0, 0), UINT64_MAX, 8);
    EXPECT_BAD(b, len, (long long)ti_ne_at(t0, 0), "overflow");
    RESET(); put_le(b + ti_ne_at(t0, 1), 0, 8);
    EXPECT_BAD(b, len, (long long)ti_ne_at(t0, 1), "is zero");
    RESET(); put_le(b + ti_dims_at(t0), 0, 4);
    EXPECT_BAD(b, len, (long long)ti_dims_at(t0), "0 dimensions");
    RESET(); put_le(b + ti_dims_at(t0), 5, 4);
    EXPECT_BAD(b, len, (long long)ti_dims_at(t0), "5 dimensions");
    /* a tensor name length past the end, a duplicate tensor name (same-length rename) */
    RESET(); put_le(b + t1->info_offset, len, 8);
    EXPECT_BAD(b, len, (long long)t1->info_offset, "tensor name length");
    const gguf_tensor *a = NULL, *c = NULL;
    for (uint64_t i = 0; i < g->n_tensors && !c; i++)
        for (uint64_t j = i + 1; j < g->n_tensors && !c; j++)
            if (strlen(g->tensors[i].name) == strlen(g->tensors[j].name)) { a = &g->tensors[i]; c = &g->tensors[j]; }
    REQUIRE(c);
    RESET(); memcpy(b + c->info_offset + 8, a->name, strlen(a->name));
    snprintf(want, sizeof want, "duplicate tensor name '%s'", a->name);
    EXPECT_BAD(b, len, (long long)c->info_offset, want);
    /* tensor count larger than the table: the next "name" is garbage from the padding/data */
    RESET(); put_le(b + 8, g->n_tensors + 1, 8);
    EXPECT_BAD(b, len, -1, NULL);
#undef RESET
    free(b);
    gguf_close(g);
    free(orig);
    free(src);
}

/* ==== general.alignment ============================================================== */

TEST(gguf_bad_alignment) {
    const char *p = write_small(T, "align", 3);
    REQUIRE(p);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    REQUIRE(orig);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
    const gguf_kv *al = find_kv(g, "general.alignment");
    REQUIRE(al && al->val.type == GGUF_TYPE_UINT32 && al->val.v.u64 == 32);
    uint64_t v = kv_type_at(al) + 4;
    uint8_t *b = malloc(len);
    static const uint32_t bad[] = {0, 3, 48, 1u << 31};
    for (size_t i = 0; i < TOME_ARRAY_LEN(bad); i++) {
        char want[96];
        snprintf(want, sizeof want, "general.alignment %u is not a power of two", bad[i]);
        memcpy(b, orig, len);
        put_le(b + v, bad[i], 4);
        EXPECT_BAD(b, len, (long long)al->offset, want);
    }
    /* the wrong type: a string where an integer belongs */
    memcpy(b, orig, len);
    put_le(b + kv_type_at(al), GGUF_TYPE_FLOAT32, 4);
    EXPECT_BAD(b, len, (long long)al->offset, "general.alignment is not an integer");
    /* alignment 64 (valid), but the tensors were laid out for 32: "b" lands misaligned */
    memcpy(b, orig, len);
    put_le(b + v, 64, 4);
    EXPECT_BAD(b, len, -1, "not a multiple of the alignment 64");
    free(b);
    gguf_close(g);
    free(orig);
}

/* ==== truncation at every byte position ============================================== */

TEST(gguf_truncated_everywhere) {
    const char *p = write_small(T, "trunc", 3);
    REQUIRE(p);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    REQUIRE(orig && len > 200 && len % 32 == 0);
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open_memory(&g, orig, len, "full", &e) == 0, "%s", e.msg);
    const gguf_tensor *c = gguf_find_tensor(g, "c");
    REQUIRE(c && g->data_offset + c->offset + c->nbytes == len); /* no trailing padding */
    long long c_info = (long long)c->info_offset;
    gguf_close(g);
    int bad_rc = 0, bad_msg = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan flags any read past n */
        memcpy(copy, orig, n);
        e.msg[0] = 0;
        int rc = gguf_open_memory(&g, copy, n, "cut", &e);
        if (rc != TOME_EINPUT && bad_rc++ < 5) tt_fail(T, __FILE__, __LINE__, "cut at %zu: rc %d (%s)", n, rc, e.msg);
        if (rc == TOME_EINPUT && (strncmp(e.msg, "cut: offset ", 12) || strchr(e.msg, '\n')) && bad_msg++ < 5)
            tt_fail(T, __FILE__, __LINE__, "cut at %zu: message '%s'", n, e.msg);
        if (rc == 0) gguf_close(g);
        free(copy);
    }
    /* and from a file: the empty file, and one byte short */
    char q[600];
    snprintf(q, sizeof q, "%s/empty.gguf", ttmpdir());
    REQUIRE(write_bytes(q, "", 0) == 0);
    CHECK(gguf_open(&g, q, &e) == TOME_EINPUT && strstr(e.msg, "offset 0: empty file"));
    EXPECT_BAD(orig, len - 1, c_info, "tensor 'c' data [96, +32) lies outside");
    free(orig);
}

/* ==== absurd counts are refused before anything is allocated ========================= */

/* A header, one array kv "k" of elem type et claiming n elements, then `extra` bytes. */
static size_t make_array_file(uint8_t *b, uint32_t et, uint64_t n, size_t extra) {
    size_t o = 0;
    memcpy(b, "GGUF", 4); o = 4;
    put_le(b + o, 3, 4); o += 4;
    put_le(b + o, 0, 8); o += 8;
    put_le(b + o, 1, 8); o += 8;
    put_le(b + o, 1, 8); o += 8;
    b[o++] = 'k';
    put_le(b + o, GGUF_TYPE_ARRAY, 4); o += 4;
    put_le(b + o, et, 4); o += 4;
    put_le(b + o, n, 8); o += 8;
    memset(b + o, 0, extra);
    return o + extra;
}

TEST(gguf_absurd_counts) {
    uint8_t b[256];
    /* every element type, with a count that would need terabytes: EINPUT (not ERESOURCE,
     * which is what a failed allocation would give) and the array's offset (37) */
    for (uint32_t et = 0; et < GGUF_TYPE_COUNT; et++) {
        uint64_t counts[] = {1ull << 40, UINT64_MAX, UINT64_MAX / 8 + 1, 200};
        for (size_t i = 0; i < TOME_ARRAY_LEN(counts); i++) {
            size_t len = make_array_file(b, et, counts[i], 64);
            EXPECT_BAD(b, len, 37, "array of");
        }
    }
    /* an array of arrays nested 9 deep */
    size_t o = make_array_file(b, GGUF_TYPE_ARRAY, 1, 0);
    for (int d = 0; d < 9; d++) { put_le(b + o, GGUF_TYPE_ARRAY, 4); put_le(b + o + 4, 1, 8); o += 12; }
    memset(b + o, 0, 24); o += 24;
    EXPECT_BAD(b, o, -1, "nested more than 8 deep");
    /* counts of kvs and tensors that would allocate gigabytes */
    size_t len = make_array_file(b, GGUF_TYPE_UINT8, 0, 0);
    put_le(b + 8, 1ull << 33, 8);
    EXPECT_BAD(b, len, 8, "tensor count 8589934592 cannot fit");
    put_le(b + 8, 0, 8);
    put_le(b + 16, 1ull << 33, 8);
    EXPECT_BAD(b, len, 16, "metadata count 8589934592 cannot fit");
}

/* ==== valid files: v2, nested arrays, every scalar array type, typed lookups ========= */

TEST(gguf_v2_and_nested_arrays) {
    for (uint32_t ver = 2; ver <= 3; ver++) {
        const char *p = write_small(T, ver == 2 ? "v2" : "v3", ver);
        REQUIRE(p);
        gguf *g = NULL;
        terr e = {0};
        REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
        CHECK(g->version == ver);
        CHECK(g->alignment == 32 && g->n_tensors == 3);
        const gguf_value *v = gguf_get(g, "x.nested");
        REQUIRE(v && v->type == GGUF_TYPE_ARRAY && v->elem_type == GGUF_TYPE_ARRAY && v->n == 2);
        REQUIRE(v->v.vals[0].type == GGUF_TYPE_ARRAY && v->v.vals[0].elem_type == GGUF_TYPE_STRING);
        REQUIRE(v->v.vals[0].n == 2 && v->v.vals[1].n == 1);
        CHECK(gguf_str_eq(v->v.vals[0].v.strs[0], "a") && gguf_str_eq(v->v.vals[0].v.strs[1], "bc"));
        CHECK(gguf_str_eq(v->v.vals[1].v.strs[0], "def"));
        v = gguf_get(g, "x.strs");
        REQUIRE(v && v->n == 3);
        CHECK(gguf_str_eq(v->v.strs[2], "\xc3\xa9t\xc3\xa9") && v->v.strs[1].len == 0);
        v = gguf_get(g, "x.u8s");
        REQUIRE(v && v->elem_type == GGUF_TYPE_UINT8 && v->n == 5);
        CHECK(gguf_arr_int(v, 4) == 255 && gguf_arr_int(v, 3) == 250 && gguf_arr_int(v, 5) == 0);
        const gguf_tensor *t = gguf_find_tensor(g, "b");
        REQUIRE(t && t->n_dims == 1 && t->ne[0] == 5 && t->ne[1] == 1 && t->nbytes == 20);
        CHECK(((const float *)t->data)[4] == 21.0f);
        t = gguf_find_tensor(g, "a");
        REQUIRE(t && t->nelem == 12);
        CHECK(((const float *)t->data)[11] == 12.0f);
        CHECK(gguf_find_tensor(g, "d") == NULL);
        /* a copy through gguf_w_value keeps every value bit for bit */
        gguf_writer *w = gguf_w_new();
        gguf_w_set_version(w, ver);
        for (uint64_t i = 0; i < g->n_kv; i++) gguf_w_value(w, g->kv[i].key, &g->kv[i].val);
        char q[600];
        snprintf(q, sizeof q, "%s/copy%u.gguf", ttmpdir(), ver);
        REQUIREF(gguf_w_save(w, q, &e) == 0, "%s", e.msg);
        gguf_w_free(w);
        gguf *h = NULL;
        REQUIREF(gguf_open(&h, q, &e) == 0, "%s", e.msg);
        CHECK(h->n_kv == g->n_kv && h->n_tensors == 0);
        size_t la, lb;
        uint8_t *fa = slurp(p, &la), *fb = slurp(q, &lb);
        /* the kv section is identical: from byte 24 up to the first tensor info */
        uint64_t kv_end = g->tensors[0].info_offset;
        CHECK(fa && fb && lb >= kv_end && memcmp(fa + 24, fb + 24, kv_end - 24) == 0);
        free(fa);
        free(fb);
        gguf_close(h);
        gguf_close(g);
    }
}

TEST(gguf_arrays_of_every_scalar_type) {
    char path[600];
    snprintf(path, sizeof path, "%s/arrays.gguf", ttmpdir());
    gguf_writer *w = gguf_w_new();
    uint8_t u8[3] = {0, 7, 255};
    int8_t i8[3] = {-128, -1, 127};
    uint16_t u16[3] = {0, 300, 65535};
    int16_t i16[3] = {-32768, -2, 32767};
    uint32_t u32[3] = {0, 70000, 4294967295u};
    int32_t i32[3] = {INT32_MIN, -3, INT32_MAX};
    uint64_t u64[3] = {0, 1ull << 40, 1ull << 62};
    int64_t i64[3] = {INT64_MIN, -4, INT64_MAX};
    float f32[3] = {-1.5f, 0.25f, 1e30f};
    double f64[3] = {-2.5, 1e-300, 1e300};
    uint8_t bl[3] = {1, 0, 1};
    gguf_w_arr(w, "a.u8", GGUF_TYPE_UINT8, u8, 3);
    gguf_w_arr(w, "a.i8", GGUF_TYPE_INT8, i8, 3);
    gguf_w_arr(w, "a.u16", GGUF_TYPE_UINT16, u16, 3);
    gguf_w_arr(w, "a.i16", GGUF_TYPE_INT16, i16, 3);
    gguf_w_arr(w, "a.u32", GGUF_TYPE_UINT32, u32, 3);
    gguf_w_arr(w, "a.i32", GGUF_TYPE_INT32, i32, 3);
    gguf_w_arr(w, "a.u64", GGUF_TYPE_UINT64, u64, 3);
    gguf_w_arr(w, "a.i64", GGUF_TYPE_INT64, i64, 3);
    gguf_w_arr(w, "a.f32", GGUF_TYPE_FLOAT32, f32, 3);
    gguf_w_arr(w, "a.f64", GGUF_TYPE_FLOAT64, f64, 3);
    gguf_w_arr(w, "a.bool", GGUF_TYPE_BOOL, bl, 3);
    gguf_w_arr(w, "a.empty", GGUF_TYPE_INT32, NULL, 0);
    terr e = {0};
    REQUIREF(gguf_w_save(w, path, &e) == 0, "%s", e.msg);
    gguf_w_free(w);
    gguf *g = NULL;
    REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
    static const struct { const char *k; uint32_t et; } want[] = {
        {"a.u8", GGUF_TYPE_UINT8}, {"a.i8", GGUF_TYPE_INT8}, {"a.u16", GGUF_TYPE_UINT16},
        {"a.i16", GGUF_TYPE_INT16}, {"a.u32", GGUF_TYPE_UINT32}, {"a.i32", GGUF_TYPE_INT32},
        {"a.u64", GGUF_TYPE_UINT64}, {"a.i64", GGUF_TYPE_INT64}, {"a.f32", GGUF_TYPE_FLOAT32},
        {"a.f64", GGUF_TYPE_FLOAT64}, {"a.bool", GGUF_TYPE_BOOL}};
    const gguf_value *v[TOME_ARRAY_LEN(want)];
    for (size_t i = 0; i < TOME_ARRAY_LEN(want); i++) {
        v[i] = gguf_get(g, want[i].k);
        REQUIREF(v[i] && v[i]->type == GGUF_TYPE_ARRAY && v[i]->elem_type == want[i].et && v[i]->n == 3,
                 "%s", want[i].k);
    }
    for (int j = 0; j < 3; j++) {
        CHECK(gguf_arr_int(v[0], j) == u8[j]);
        CHECK(gguf_arr_int(v[1], j) == i8[j]);
        CHECK(gguf_arr_int(v[2], j) == u16[j]);
        CHECK(gguf_arr_int(v[3], j) == i16[j]);
        CHECK(gguf_arr_int(v[4], j) == (int64_t)u32[j]);
        CHECK(gguf_arr_int(v[5], j) == i32[j]);
        CHECK(gguf_arr_int(v[6], j) == (int64_t)u64[j]);
        CHECK(gguf_arr_int(v[7], j) == i64[j]);
        CHECK(gguf_arr_float(v[8], j) == (double)f32[j]);
        CHECK(gguf_arr_float(v[9], j) == f64[j]);
        CHECK(gguf_arr_int(v[10], j) == bl[j]);
        CHECK(gguf_arr_float(v[5], j) == (double)i32[j]);
    }
    CHECK(gguf_arr_int(v[8], 2) == (int64_t)1e30f || gguf_arr_int(v[8], 2) == INT64_MAX); /* saturates */
    CHECK(gguf_arr_int(v[9], 2) == INT64_MAX && gguf_arr_int(v[9], 0) == -2);
    const gguf_value *em = gguf_get(g, "a.empty");
    CHECK(em && em->n == 0 && gguf_arr_int(em, 0) == 0);
    CHECK(gguf_arr_int(NULL, 0) == 0 && gguf_arr_float(v[0], 3) == 0);
    gguf_close(g);
}

TEST(gguf_typed_lookups_with_defaults) {
    char path[600];
    snprintf(path, sizeof path, "%s/typed.gguf", ttmpdir());
    gguf_writer *w = gguf_w_new();
    gguf_w_u8(w, "u8", 200);
    gguf_w_i16(w, "i16", -300);
    gguf_w_u32(w, "u32", 4000000000u);
    gguf_w_u64(w, "u64.big", UINT64_MAX);
    gguf_w_i64(w, "i64", -5);
    gguf_w_f32(w, "f32", 2.5f);
    gguf_w_f64(w, "f64", 1e-3);
    gguf_w_bool(w, "b0", 0);
    gguf_w_bool(w, "b1", 1);
    gguf_w_str(w, "s", "hello world");
    gguf_w_strn(w, "s.nul", "a\0b", 3);
    gguf_w_u32(w, "dup", 1);
    gguf_w_u32(w, "dup", 2); /* the writer replaces, so the file holds one "dup" */
    terr e = {0};
    REQUIREF(gguf_w_save(w, path, &e) == 0, "%s", e.msg);
    gguf_w_free(w);
    gguf *g = NULL;
    REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
    CHECK(g->n_kv == 12);
    CHECK(gguf_get_int(g, "u8", -1) == 200);
    CHECK(gguf_get_int(g, "i16", 0) == -300);
    CHECK(gguf_get_int(g, "u32", 0) == 4000000000ll);
    CHECK(gguf_get_int(g, "u64.big", -7) == -7); /* does not fit an int64: the default */
    CHECK(gguf_get_int(g, "i64", 0) == -5);
    CHECK(gguf_get_int(g, "f32", -9) == -9);     /* a float is not an integer */
    CHECK(gguf_get_int(g, "s", -9) == -9);
    CHECK(gguf_get_int(g, "nope", 17) == 17);
    CHECK(gguf_get_int(g, "dup", 0) == 2);
    CHECK_NEAR(gguf_get_float(g, "f32", 0), 2.5, 0);
    CHECK_NEAR(gguf_get_float(g, "f64", 0), 1e-3, 0);
    CHECK_NEAR(gguf_get_float(g, "i16", 0), -300, 0); /* integers widen to float */
    CHECK_NEAR(gguf_get_float(g, "s", 4.5), 4.5, 0);
    CHECK_NEAR(gguf_get_float(g, "nope", -1.25), -1.25, 0);
    CHECK(gguf_get_bool(g, "b0", 1) == 0 && gguf_get_bool(g, "b1", 0) == 1);
    CHECK(gguf_get_bool(g, "s", 1) == 1 && gguf_get_bool(g, "nope", 0) == 0);
    gguf_str s;
    CHECK(gguf_get_str(g, "s", &s) && gguf_str_eq(s, "hello world"));
    CHECK(!gguf_get_str(g, "u8", &s) && !gguf_get_str(g, "nope", &s));
    CHECK(gguf_get_str(g, "s.nul", &s) && s.len == 3 && s.ptr[1] == 0);
    char buf[6];
    CHECK(gguf_get_str_buf(g, "s", buf, sizeof buf) && !strcmp(buf, "hello")); /* truncated */
    CHECK(!gguf_get_str_buf(g, "u32", buf, sizeof buf));
    CHECK(!strcmp(gguf_type_name(GGUF_TYPE_FLOAT64), "f64") && !strcmp(gguf_type_name(99), "?"));
    CHECK(ggml_type_from_name("q4_k") == GGML_TYPE_Q4_K && ggml_type_from_name("Q4_2") == -1);
    CHECK(ggml_row_size(GGML_TYPE_Q8_0, 64) == 68 && ggml_row_size(GGML_TYPE_Q8_0, 65) == 0);
    CHECK(ggml_type_get(4) == NULL && ggml_type_get(GGML_TYPE_COUNT) == NULL);
    gguf_close(g);
}

/* ==== the real files, key by key ===================================================== */

static const char *k_real[] = {
    "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf",
    "models/llamacpp/tiny-gqa768-Q4_0.gguf", "models/llamacpp/tiny-gqa768-Q4_K_M.gguf",
    "models/llamacpp/tiny-gqa768-Q6_K.gguf", "models/llamacpp/tiny-gqa768-Q8_0.gguf",
};

TEST(gguf_real_files_key_by_key) {
    int found = 0;
    for (size_t f = 0; f < TOME_ARRAY_LEN(k_real); f++) {
        char *p = tdata_path(k_real[f]);
        if (!p) continue;
        found++;
        gguf *g = NULL;
        terr e = {0};
        REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
        CHECK(g->version == 3 && g->alignment == 32);
        uint64_t prev_end = 24;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const gguf_kv *kv = &g->kv[i];
            CHECKF(gguf_get(g, kv->key) == &kv->val, "%s: lookup of '%s'", p, kv->key);
            CHECKF(kv->offset >= prev_end, "%s: key '%s' offset %llu", p, kv->key, (unsigned long long)kv->offset);
            prev_end = kv->offset + 8 + strlen(kv->key) + 4;
            if (kv->val.type == GGUF_TYPE_ARRAY && kv->val.elem_type == GGUF_TYPE_STRING)
                for (uint64_t j = 0; j < kv->val.n; j++) {
                    const gguf_str *s = &kv->val.v.strs[j];
                    if (!((const uint8_t *)s->ptr >= g->base && (const uint8_t *)s->ptr + s->len <= g->base + g->size)) {
                        tt_fail(T, __FILE__, __LINE__, "%s: '%s'[%llu] outside the mapping", p, kv->key, (unsigned long long)j);
                        break;
                    }
                }
        }
        const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
        REQUIREF(toks && toks->elem_type == GGUF_TYPE_STRING, "%s: tokens", p);
        const gguf_value *types = gguf_get(g, "tokenizer.ggml.token_type");
        CHECK(types && types->n == toks->n && types->elem_type == GGUF_TYPE_INT32);
        gguf_str arch;
        REQUIRE(gguf_get_str(g, "general.architecture", &arch));
        uint64_t sum = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            CHECK(gguf_find_tensor(g, t->name) == t);
            CHECK(t->nbytes == ggml_row_size(t->type, t->ne[0]) * (uint64_t)(t->nelem / t->ne[0]));
            CHECK((const uint8_t *)t->data + t->nbytes <= g->base + g->size);
            CHECK(((uintptr_t)t->data) % 32 == 0);
            sum += t->nbytes;
        }
        CHECK(sum <= g->size - g->data_offset);
        if (strstr(p, "gpt-2")) {
            CHECK(gguf_str_eq(arch, "gpt2") && g->n_tensors == 0 && toks->n == 50257);
            const gguf_value *m = gguf_get(g, "tokenizer.ggml.merges");
            CHECK(m && m->n == 50000 && gguf_str_eq(m->v.strs[0], "\xc4\xa0 t"));
            CHECK(gguf_get_int(g, "gpt2.context_length", 0) == 1024);
            CHECK(gguf_get_int(g, "tokenizer.ggml.bos_token_id", 0) == 50256);
        } else if (strstr(p, "phi-3")) {
            CHECK(gguf_str_eq(arch, "phi3") && toks->n == 32064);
            CHECK(gguf_get_int(g, "phi3.embedding_length", 0) == 3072 && gguf_get_int(g, "phi3.rope.dimension_count", 0) == 96);
            gguf_str ct;
            CHECK(gguf_get_str(g, "tokenizer.chat_template", &ct) && ct.len > 20);
        } else {
            CHECK(gguf_str_eq(arch, "llama") && toks->n == 32000);
            CHECK(gguf_str_eq(toks->v.strs[1], "<s>") && gguf_str_eq(toks->v.strs[2], "</s>"));
            CHECK(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 0) == 1);
            const gguf_value *sc = gguf_get(g, "tokenizer.ggml.scores");
            CHECK(sc && sc->n == 32000 && sc->elem_type == GGUF_TYPE_FLOAT32);
        }
        if (strstr(p, "tiny-gqa768")) {
            CHECK(g->n_tensors == 3 + 4 * 9);
            CHECK(gguf_get_int(g, "llama.block_count", 0) == 4 && gguf_get_int(g, "llama.embedding_length", 0) == 256);
            CHECK(gguf_get_int(g, "llama.attention.head_count_kv", 0) == 2);
            const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
            CHECK(te && te->ne[0] == 256 && te->ne[1] == 32000);
            const gguf_tensor *k = gguf_find_tensor(g, "blk.3.attn_k.weight");
            CHECK(k && k->ne[0] == 256 && k->ne[1] == 64);
            const gguf_tensor *on = gguf_find_tensor(g, "output_norm.weight");
            CHECK(on && on->type == GGML_TYPE_F32 && on->n_dims == 1);
        }
        gguf_close(g);
        free(p);
    }
    if (!found) SKIP("no GGUF files under TOME_DATA");
}

/* ==== hyper-parameters and the runnable check (arch.c) ================================ */

TEST(arch_hparams_real_model) {
    DATA_OR_SKIP(p, "models/llamacpp/tiny-gqa768-Q4_K_M.gguf");
    gguf *g = NULL;
    terr e = {0};
    REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
    tome_hparams hp;
    REQUIREF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
    /* the shape the data set documents: 256 wide, 4 layers, 8 heads, 2 KV heads, FF 768 */
    CHECK(hp.arch == ARCH_LLAMA && !strcmp(hp.arch_name, "llama"));
    CHECK(hp.n_layer == 4 && hp.n_embd == 256 && hp.n_head == 8 && hp.n_head_kv == 2);
    CHECK(hp.head_dim == 32 && hp.head_dim_v == 32 && hp.n_ff == 768 && hp.n_vocab == 32000);
    CHECK(hp.n_ctx_train == 4096 && hp.rope_dim == 32 && hp.rope_neox == 0);
    CHECK_NEAR(hp.rope_base, 10000, 0);
    CHECK_NEAR(hp.norm_eps, 1e-5, 1e-12);
    CHECK(hp.rope_scaling == ROPE_SCALING_NONE && hp.rope_factor == 1.0f && hp.rope_orig_ctx == 4096);
    CHECK(hp.has_weights && !hp.tied_output && hp.sliding_window == 0);
    char why[256];
    CHECKF(model_check_runnable(g, &hp, why, sizeof why) == 1, "%s", why);
    gguf_close(g);
    free(p);
}

TEST(arch_vocab_only_files) {
    char why[512];
    gguf *g = NULL;
    terr e = {0};
    tome_hparams hp;
    char *p = tdata_path("vocab/ggml-vocab-gpt-2.gguf");
    if (p) {
        REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
        CHECK(hparams_load(&hp, g, &e) == TOME_EUNSUPPORTED);
        CHECK(strstr(e.msg, "architecture 'gpt2' is not supported") && strstr(e.msg, "llama, qwen2, qwen3, phi3"));
        CHECK(hp.arch == ARCH_UNKNOWN && !strcmp(hp.arch_name, "gpt2"));
        CHECK(hp.n_layer == 12 && hp.n_embd == 768 && hp.n_head == 12 && hp.n_vocab == 50257);
        CHECK(model_check_runnable(g, &hp, why, sizeof why) == 0);
        CHECKF(strstr(why, "'gpt2' is not supported") && strstr(why, "vocabulary-only"), "%s", why);
        gguf_close(g);
        free(p);
    }
    p = tdata_path("vocab/ggml-vocab-phi-3.gguf");
    if (p) {
        REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
        REQUIREF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
        CHECK(hp.arch == ARCH_PHI3 && hp.rope_neox == 1 && hp.head_dim == 96 && hp.rope_dim == 96);
        CHECK(hp.n_vocab == 32064 && hp.n_layer == 32 && !hp.has_weights);
        CHECK(model_check_runnable(g, &hp, why, sizeof why) == 0);
        CHECKF(!strcmp(why, "vocabulary-only file (no weights)"), "%s", why);
        gguf_close(g);
        free(p);
    }
    p = tdata_path("vocab/ggml-vocab-llama-spm.gguf");
    if (!p) SKIP("vocab files not found under TOME_DATA");
    REQUIREF(gguf_open(&g, p, &e) == 0, "%s", e.msg);
    REQUIREF(hparams_load(&hp, g, &e) == 0, "%s", e.msg);
    CHECK(hp.arch == ARCH_LLAMA && hp.head_dim == 128 && hp.n_head_kv == 32 && hp.n_vocab == 32000);
    CHECK(model_check_runnable(g, &hp, why, sizeof why) == 0 && strstr(why, "vocabulary-only"));
    gguf_close(g);
    free(p);
}

/* A synthetic model: E=256 wide, 4 heads of 64, 2 KV heads, FF 64, vocab 32, 2 layers, all F32
 * (zeros) except what `mutate` changes. Returns the opened file or NULL. */
enum { M_OK, M_IQ2, M_MISSING, M_SHAPE, M_NOKEY, M_BADKEY, M_YARN, M_LLAMA3, M_QWEN3, M_PHI3, M_NOOUT, M_KV3 };

static gguf *synth(tctx *T, int mutate, terr *e) {
    char path[600];
    snprintf(path, sizeof path, "%s/synth%d.gguf", ttmpdir(), mutate);
    const char *arch = mutate == M_QWEN3 ? "qwen3" : mutate == M_PHI3 ? "phi3" : "llama";
    char k[128];
    gguf_writer *w = gguf_w_new();
    gguf_w_str(w, "general.architecture", arch);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    gguf_w_u32(w, KEY("block_count"), 2);
    if (mutate != M_NOKEY) gguf_w_u32(w, KEY("embedding_length"), 256);
    gguf_w_u32(w, KEY("feed_forward_length"), 64);
    gguf_w_u32(w, KEY("attention.head_count"), 4);
    gguf_w_u32(w, KEY("attention.head_count_kv"), mutate == M_KV3 ? 3 : 2);
    gguf_w_u32(w, KEY("context_length"), 2048);
    if (mutate == M_BADKEY) gguf_w_str(w, KEY("attention.layer_norm_rms_epsilon"), "tiny");
    else gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    gguf_w_f32(w, KEY("rope.freq_base"), 500000.0f);
    gguf_w_u32(w, KEY("vocab_size"), 32);
    if (mutate == M_YARN) {
        gguf_w_str(w, KEY("rope.scaling.type"), "yarn");
        gguf_w_f32(w, KEY("rope.scaling.factor"), 4.0f);
        gguf_w_u32(w, KEY("rope.scaling.original_context_length"), 512);
        gguf_w_f32(w, KEY("rope.scaling.yarn_beta_fast"), 16.0f);
        gguf_w_u32(w, KEY("attention.sliding_window"), 128);
    }
#undef KEY
    static float zeros[256 * 256 * 2];
    const int64_t E = 256, F = 64, V = 32, Q = 256, KV = 128;
    int64_t ne[2];
#define T2(name, a, b, type) (ne[0] = a, ne[1] = b, gguf_w_tensor(w, name, type, 2, ne, zeros))
#define T1(name, a) (ne[0] = a, gguf_w_tensor(w, name, GGML_TYPE_F32, 1, ne, zeros))
    T2("token_embd.weight", E, V, GGML_TYPE_F32);
    T1("output_norm.weight", E);
    if (mutate != M_NOOUT) T2("output.weight", E, V, GGML_TYPE_F16);
    if (mutate == M_LLAMA3) T1("rope_freqs.weight", 32);
    for (int l = 0; l < 2; l++) {
        char n[64];
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        T1(NM("attn_norm.weight"), E);
        T1(NM("ffn_norm.weight"), E);
        if (mutate == M_PHI3) {
            T2(NM("attn_qkv.weight"), E, Q + 2 * KV, GGML_TYPE_F32);
            T2(NM("ffn_up.weight"), E, 2 * F, GGML_TYPE_F32);
        } else {
            T2(NM("attn_q.weight"), E, Q, (mutate == M_IQ2 && l == 1) ? GGML_TYPE_IQ2_XXS : GGML_TYPE_F32);
            T2(NM("attn_k.weight"), E, mutate == M_SHAPE && l == 1 ? KV + 64 : KV, GGML_TYPE_F32);
            T2(NM("attn_v.weight"), E, KV, GGML_TYPE_F32);
            T2(NM("ffn_gate.weight"), E, F, GGML_TYPE_F32);
            if (!(mutate == M_MISSING && l == 1)) T2(NM("ffn_up.weight"), E, F, GGML_TYPE_F32);
        }
        T2(NM("attn_output.weight"), Q, E, GGML_TYPE_Q8_0);
        T2(NM("ffn_down.weight"), F, E, GGML_TYPE_F32);
        if (mutate == M_QWEN3) { T1(NM("attn_q_norm.weight"), 64); T1(NM("attn_k_norm.weight"), 64); }
#undef NM
    }
#undef T1
#undef T2
    int rc = gguf_w_save(w, path, e);
    gguf_w_free(w);
    if (rc) { tt_fail(T, __FILE__, __LINE__, "%s", e->msg); return NULL; }
    gguf *g = NULL;
    if (gguf_open(&g, path, e)) { tt_fail(T, __FILE__, __LINE__, "%s", e->msg); return NULL; }
    return g;
}

TEST(arch_runnable_and_reasons) {
    static const struct { int m; int load_rc; int runnable; const char *why; } cases[] = {
        {M_OK, 0, 1, ""},
        {M_IQ2, 0, 0, "tensor 'blk.1.attn_q.weight' has unsupported type IQ2_XXS"},
        {M_MISSING, 0, 0, "missing tensor 'blk.1.ffn_up.weight'"},
        {M_SHAPE, 0, 0, "tensor 'blk.1.attn_k.weight' has shape [256, 192], expected [256, 128]"},
        {M_QWEN3, 0, 1, ""},
        {M_PHI3, 0, 1, ""},
        {M_NOOUT, 0, 1, ""},
        {M_YARN, 0, 1, ""},
        {M_LLAMA3, 0, 1, ""},
    };
    for (size_t i = 0; i < TOME_ARRAY_LEN(cases); i++) {
        terr e = {0};
        gguf *g = synth(T, cases[i].m, &e);
        REQUIRE(g);
        tome_hparams hp;
        int rc = hparams_load(&hp, g, &e);
        CHECKF(rc == cases[i].load_rc, "case %d: rc %d (%s)", cases[i].m, rc, e.msg);
        char why[256] = "junk";
        int ok = model_check_runnable(g, &hp, why, sizeof why);
        CHECKF(ok == cases[i].runnable && !strcmp(why, cases[i].why), "case %d: %d '%s'", cases[i].m, ok, why);
        CHECK(hp.head_dim == 64 && hp.n_head_kv == 2 && hp.n_vocab == 32);
        CHECK_NEAR(hp.rope_base, 500000, 0);
        CHECK_NEAR(hp.norm_eps, 1e-6, 1e-12);
        CHECK(hp.tied_output == (cases[i].m == M_NOOUT));
        CHECK(hp.rope_neox == (cases[i].m == M_QWEN3 || cases[i].m == M_PHI3));
        if (cases[i].m == M_YARN) {
            CHECK(hp.rope_scaling == ROPE_SCALING_YARN && hp.rope_factor == 4.0f && hp.rope_orig_ctx == 512);
            CHECK(hp.yarn_beta_fast == 16.0f && hp.yarn_beta_slow == 1.0f && hp.yarn_ext_factor == 1.0f);
            CHECK(hp.sliding_window == 128 && !strcmp(rope_scaling_name(hp.rope_scaling), "yarn"));
        } else if (cases[i].m == M_LLAMA3) {
            CHECK(hp.rope_scaling == ROPE_SCALING_LLAMA3 && hp.has_rope_freqs);
        } else {
            CHECK(hp.rope_scaling == ROPE_SCALING_NONE && hp.rope_orig_ctx == 2048 && hp.yarn_ext_factor == 0);
        }
        gguf_close(g);
    }
    /* metadata faults: TOME_EINPUT naming the key */
    terr e = {0};
    tome_hparams hp;
    gguf *g = synth(T, M_NOKEY, &e);
    REQUIRE(g);
    CHECK(hparams_load(&hp, g, &e) == TOME_EINPUT && strstr(e.msg, "missing required key 'llama.embedding_length'"));
    gguf_close(g);
    g = synth(T, M_BADKEY, &e);
    REQUIRE(g);
    CHECK(hparams_load(&hp, g, &e) == TOME_EINPUT &&
          strstr(e.msg, "key 'llama.attention.layer_norm_rms_epsilon' has type string, expected a number") &&
          strstr(e.msg, ": offset "));
    gguf_close(g);
    g = synth(T, M_KV3, &e);
    REQUIRE(g);
    CHECK(hparams_load(&hp, g, &e) == TOME_EINPUT && strstr(e.msg, "head_count 4 is not a multiple of head_count_kv 3"));
    gguf_close(g);
}

/* ==== tome info on hostile strings =================================================== */

#include "info.h"

TEST(info_survives_bad_utf8_and_control_bytes) {
    char path[600], out[600];
    snprintf(path, sizeof path, "%s/utf8.gguf", ttmpdir());
    snprintf(out, sizeof out, "%s/utf8.out", ttmpdir());
    gguf_writer *w = gguf_w_new();
    gguf_w_str(w, "general.architecture", "ll\xff" "ama\n");
    gguf_w_str(w, "general.name", "n\xc3\x28" "\x01" "me");
    gguf_w_str(w, "tokenizer.ggml.model", "\xe2\x82");
    static float z[32];
    int64_t ne[1] = {32};
    gguf_w_tensor(w, "bad\xfename", GGML_TYPE_F32, 1, ne, z);
    gguf_w_str(w, "ll\xff" "ama\n.rope.scaling.type", "\x1b[2J");
    terr e = {0};
    REQUIREF(gguf_w_save(w, path, &e) == 0, "%s", e.msg);
    gguf_w_free(w);
    gguf *g = NULL;
    REQUIREF(gguf_open(&g, path, &e) == 0, "%s", e.msg);
    tome_info in;
    info_gather(&in, g);
    CHECK(in.runnable == 0 && in.hp_rc == TOME_EUNSUPPORTED);
    CHECK(!strcmp(in.hp.arch_name, "ll?ama?") && !strcmp(in.name, "n?(?me") && !strcmp(in.tok_model, "??"));
    FILE *f = fopen(out, "w");
    REQUIRE(f);
    CHECK(info_write(f, &in, 1) == 0);
    CHECK(info_write(f, &in, 0) == 0);
    fclose(f);
    size_t len;
    char *txt = tread_file(out, &len, &e);
    REQUIRE(txt);
    CHECK(tutf8_invalid_offset(txt, len) < 0);
    CHECK(strstr(txt, "\"architecture\": \"ll?ama?\"") && strstr(txt, "\"runnable\": false"));
    CHECK(strstr(txt, "runnable: no \xe2\x80\x94 architecture 'll?ama?' is not supported"));
    free(txt);
    gguf_close(g);
}

/* Regression: with general.alignment 1 a tensor could start at any byte, and the CPU code reads
 * F32 tensors through float pointers (misaligned access, undefined behaviour). The reader must
 * reject data that is not aligned to its element type. With a 1- or 2-byte I8 tensor first, the
 * F32 tensor after it cannot be 4-aligned in both files, so at least one must be refused. */
TEST(gguf_misaligned_tensor_data_rejected) {
    int rejected = 0;
    for (int n = 1; n <= 2; n++) {
        char path[512];
        snprintf(path, sizeof path, "%s/misaligned%d.gguf", ttmpdir(), n);
        gguf_writer *w = gguf_w_new();
        REQUIRE(w);
        gguf_w_set_alignment(w, 1);
        int8_t i8[2] = {1, 2};
        float f[4] = {1.0f, 2.0f, 3.0f, 4.0f};
        int64_t ne_a[1] = {n}, ne_b[1] = {4};
        gguf_w_tensor(w, "a", GGML_TYPE_I8, 1, ne_a, i8);
        gguf_w_tensor(w, "b", GGML_TYPE_F32, 1, ne_b, f);
        terr e = {0};
        REQUIREF(gguf_w_save(w, path, &e) == 0, "%s", e.msg);
        gguf_w_free(w);
        gguf *g = NULL;
        int rc = gguf_open(&g, path, &e);
        if (rc == 0) {
            const gguf_tensor *t = gguf_find_tensor(g, "b");
            REQUIRE(t);
            CHECKF((uintptr_t)t->data % 4 == 0, "F32 tensor at misaligned address %p accepted", t->data);
            gguf_close(g);
        } else {
            rejected++;
            CHECKF(rc == TOME_EINPUT && strstr(e.msg, path) && strstr(e.msg, "'b'") && strstr(e.msg, "aligned"),
                   "rc %d: %s", rc, e.msg);
        }
    }
    CHECK(rejected >= 1);
}

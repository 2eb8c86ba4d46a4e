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

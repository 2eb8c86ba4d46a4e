/* fuzz_gguf.c — libFuzzer target: the GGUF reader must reject or accept any bytes without
 * reading out of bounds, and everything it accepts must be consistent. */
#include <stdint.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf *g = NULL;
    terr e = {0};
    if (gguf_open_memory(&g, data, size, "fuzz", &e) == 0) {
        volatile uint64_t sum = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            if (t->nbytes) sum += ((const uint8_t *)t->data)[t->nbytes - 1];
            if (gguf_find_tensor(g, t->name) != t) __builtin_trap();
        }
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const gguf_value *v = &g->kv[i].val;
            if (v->type == GGUF_TYPE_STRING && v->v.str.len) sum += (uint8_t)v->v.str.ptr[v->v.str.len - 1];
            if (v->type == GGUF_TYPE_ARRAY && v->n) sum += (uint64_t)gguf_arr_int(v, v->n - 1);
        }
        (void)sum;
        gguf_close(g);
    } else if (e.msg[0] == 0) {
        __builtin_trap(); /* every rejection must say why */
    }
    return 0;
}

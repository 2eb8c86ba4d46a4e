/* fuzz_gguf.c — libFuzzer target: the GGUF reader must reject or accept any bytes without
 * reading out of bounds, and everything it accepts must be consistent: every string, array
 * element and tensor byte it hands out lies inside the input, every lookup finds what the
 * table holds, and the hyper-parameter code (arch.c) copes with whatever metadata got through.
 * Seeds: the first 64 KiB of the real files plus tests/fuzz_gguf.seeds.sh (whole small files).
 */
#include <stdint.h>
#include <string.h>

#include <stdio.h>

#include "arch.h"
#include "gguf.h"
#include "info.h"

static int inside(const uint8_t *base, size_t size, const void *p, uint64_t len) {
    const uint8_t *q = p;
    return q >= base && len <= size && (uint64_t)(q - base) <= size - len;
}

/* Touches every byte a value points at (ASan checks the reads); traps on a view outside. */
static uint64_t walk(const gguf_value *v, const uint8_t *base, size_t size, int depth) {
    uint64_t sum = 0;
    if (depth > 9) __builtin_trap();
    if (v->type == GGUF_TYPE_STRING) {
        if (!inside(base, size, v->v.str.ptr, v->v.str.len)) __builtin_trap();
        for (uint64_t i = 0; i < v->v.str.len; i++) sum += (uint8_t)v->v.str.ptr[i];
    } else if (v->type == GGUF_TYPE_ARRAY) {
        if (v->elem_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < v->n; i++) {
                gguf_value s = {.type = GGUF_TYPE_STRING, .v.str = v->v.strs[i]};
                sum += walk(&s, base, size, depth + 1);
            }
        } else if (v->elem_type == GGUF_TYPE_ARRAY) {
            for (uint64_t i = 0; i < v->n; i++) sum += walk(&v->v.vals[i], base, size, depth + 1);
        } else {
            for (uint64_t i = 0; i < v->n; i++) {
                double d = gguf_arr_float(v, i);
                sum += (uint64_t)gguf_arr_int(v, i) + (d > 0) + (d != d);
            }
            if (gguf_arr_int(v, v->n) != 0) __builtin_trap(); /* out of range reads as 0 */
        }
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf *g = NULL;
    terr e = {0};
    if (gguf_open_memory(&g, data, size, "fuzz", &e) == 0) {
        volatile uint64_t sum = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            if (!inside(data, size, t->data, t->nbytes)) __builtin_trap();
            if (t->nbytes) sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
            if (gguf_find_tensor(g, t->name) != t) __builtin_trap();
        }
        for (uint64_t i = 0; i < g->n_kv; i++) {
            if (gguf_get(g, g->kv[i].key) != &g->kv[i].val) __builtin_trap();
            sum += walk(&g->kv[i].val, data, size, 0);
        }
        tome_hparams hp;
        terr he = {0};
        int rc = hparams_load(&hp, g, &he);
        if (rc && (he.msg[0] == 0 || (rc != TOME_EINPUT && rc != TOME_EUNSUPPORTED))) __builtin_trap();
        char why[256];
        int ok = model_check_runnable(g, &hp, why, sizeof why);
        if (ok && rc) __builtin_trap();          /* never runnable with bad hyper-parameters */
        if (!ok && why[0] == 0) __builtin_trap(); /* every refusal says why */
        sum += (uint64_t)ok;
        (void)sum;
        /* `tome info` on whatever got through: text and JSON (jansson refuses invalid UTF-8,
         * so a failure here means info.c let raw file bytes reach it) */
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            tome_info in;
            info_gather(&in, g);
            if (in.runnable != ok) __builtin_trap();
            if (info_write(null, &in, 0) || info_write(null, &in, 1)) __builtin_trap();
            fclose(null);
        }
        gguf_close(g);
    } else if (e.msg[0] == 0) {
        __builtin_trap(); /* every rejection must say why */
    }
    return 0;
}

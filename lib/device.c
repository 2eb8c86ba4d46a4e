/* device.c — the CPU / GPU choice (device.h). Probing costs a dlopen and cuInit; opening a
 * GPU also loads the PTX modules, so it is done once per run and the open device is handed
 * to the engine. */
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/backend.h"

int device_flag(const char *arg, device_request *rq, int *matched, terr *e) {
    *matched = 0;
    if (!strcmp(arg, "--cpu")) {
        *matched = 1;
        if (rq->kind == DEVICE_GPU) return terr_set(e, TOME_EFLAGS, "--cpu and --gpu exclude each other");
        rq->kind = DEVICE_CPU;
        return 0;
    }
    if (strncmp(arg, "--gpu", 5) || (arg[5] && arg[5] != '=')) return 0;
    *matched = 1;
    if (rq->kind == DEVICE_CPU) return terr_set(e, TOME_EFLAGS, "--cpu and --gpu exclude each other");
    long long n = 0;
    if (arg[5] == '=') {
        const char *v = arg + 6;
        char *end;
        n = strtoll(v, &end, 10);
        if (!*v || *end || n < 0 || n > 1023 || *v == '-' || *v == '+')
            return terr_set(e, TOME_EFLAGS, "flag --gpu: '%s' is not a GPU number (0, 1, ...)", v);
    }
    rq->kind = DEVICE_GPU;
    rq->ordinal = (int)n;
    return 0;
}

int device_decide(const device_request *rq, int n_gpus, const char *why, device_choice *out, terr *e) {
    memset(out, 0, sizeof *out);
    if (!why || !*why) why = "no GPU found";
    switch (rq->kind) {
    case DEVICE_CPU:
        return 0;
    case DEVICE_GPU:
        if (n_gpus <= 0) return terr_set(e, TOME_ERESOURCE, "--gpu: no GPU (%s)", why);
        if (rq->ordinal >= n_gpus)
            return terr_set(e, TOME_ERESOURCE, "--gpu=%d: no such GPU (the driver reports %d: 0..%d)", rq->ordinal,
                            n_gpus, n_gpus - 1);
        out->gpu = 1;
        out->ordinal = rq->ordinal;
        return 0;
    case DEVICE_AUTO:
    default:
        if (n_gpus > 0) {
            out->gpu = 1;
            return 0;
        }
        snprintf(out->reason, sizeof out->reason, "no GPU (%s)", why);
        return 0;
    }
}

int device_choose(const device_request *rq, device_choice *out, terr *e) {
    char why[256] = "";
    /* --cpu never touches the driver */
    int n = rq->kind == DEVICE_CPU ? 0 : cuda_device_count(why, sizeof why);
    int rc = device_decide(rq, n, why, out, e);
    if (rc || !out->gpu) return rc;
    terr oe = {0};
    if (cuda_open(&out->dev, out->ordinal, &oe)) {
        out->dev = NULL;
        if (rq->kind == DEVICE_GPU) return terr_set(e, TOME_ERESOURCE, "--gpu: %s", oe.msg);
        out->gpu = 0;
        snprintf(out->reason, sizeof out->reason, "GPU %d unusable (%s)", out->ordinal, oe.msg);
        out->ordinal = 0;
    }
    return 0;
}

int device_need_cpu(const device_request *rq, device_choice *c, int code, const char *why, terr *e) {
    if (!c->gpu) return 0;
    if (rq->kind == DEVICE_GPU) return terr_set(e, code, "%s", why);
    snprintf(c->reason, sizeof c->reason, "GPU %d cannot run this (%s)", c->ordinal, why);
    device_release(c);
    c->gpu = 0;
    c->ordinal = 0;
    return 0;
}

int device_fit_model(const device_request *rq, device_choice *c, const gguf *g, terr *e) {
    if (!c->gpu) return 0;
    terr we = {0};
    if (!cuda_check_weights(g, &we)) return 0;
    return device_need_cpu(rq, c, we.code, we.msg, e);
}

void device_release(device_choice *c) {
    if (!c) return;
    if (c->dev) cuda_close(c->dev);
    c->dev = NULL;
}

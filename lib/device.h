/* device.h — which processor a run uses: the CPU or one GPU (issue #8).
 *
 * The rule (DEVELOPERS conventions): by default the GPU when one is usable, else the CPU with a
 * one-line reason that main.c prints as a notice; `--gpu[=N]` requires GPU N (absent: the
 * reason, exit 4); `--cpu` forces the CPU. lib/ decides and explains, main.c prints. The
 * decision is split in two so it can be tested on any machine: device_decide is pure (given
 * the GPU count and the driver's reason) and device_choose probes the driver and opens the GPU.
 */
#ifndef TOME_DEVICE_H
#define TOME_DEVICE_H

#include "cuda/driver.h"
#include "gguf.h"
#include "util.h"

typedef enum { DEVICE_AUTO = 0, DEVICE_CPU = 1, DEVICE_GPU = 2 } device_kind;

/* What the flags asked for. Zeroed = default (auto). */
typedef struct device_request {
    device_kind kind;
    int ordinal;       /* DEVICE_GPU: the GPU (0 unless --gpu=N) */
} device_request;

typedef struct device_choice {
    int gpu;           /* 1: run on GPU `ordinal` (dev open); 0: on the CPU */
    int ordinal;
    cuda_dev *dev;     /* owned; device_release closes it */
    char reason[1280]; /* auto and the CPU chosen: why no GPU (the notice); else empty */
} device_choice;

/* Parses one argument if it is a device flag: "--cpu", "--gpu" or "--gpu=N" (N a
 * non-negative integer). *matched = 1 when arg was one (rq updated). TOME_EFLAGS (naming the
 * flag) for a bad N or for --cpu together with --gpu. */
int device_flag(const char *arg, device_request *rq, int *matched, terr *e);

/* The decision, without touching a driver: n_gpus GPUs present (why = the driver's reason
 * when 0). Fills out->gpu / ordinal / reason (dev stays NULL). TOME_ERESOURCE with the reason
 * when a GPU is required (DEVICE_GPU) and absent, or its ordinal is out of range. */
int device_decide(const device_request *rq, int n_gpus, const char *why, device_choice *out, terr *e);

/* device_decide over the driver's real count, then opens the chosen GPU (cuda_open). When
 * opening fails: a required GPU is TOME_ERESOURCE with the driver's message; the default falls
 * back to the CPU with that message as the reason. */
int device_choose(const device_request *rq, device_choice *out, terr *e);

/* The run's settings need the CPU (why: one line, e.g. a KV type the GPU lacks): a required
 * GPU is TOME_E `code` with why; the default closes the GPU and falls back to the CPU with why
 * as the reason. 0 when already on the CPU. */
int device_need_cpu(const device_request *rq, device_choice *c, int code, const char *why, terr *e);

/* After the model is known: when the chosen GPU cannot run one of its tensor types
 * (cuda_check_weights), a required GPU (rq DEVICE_GPU) is that TOME_EUNSUPPORTED error; the
 * default closes the GPU and falls back to the CPU with the reason. 0 otherwise. */
int device_fit_model(const device_request *rq, device_choice *c, const gguf *g, terr *e);

/* Closes the GPU of a choice (safe on a zeroed or CPU choice). */
void device_release(device_choice *c);

#endif

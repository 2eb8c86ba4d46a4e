/* backend.h (cuda) — backend_ops on one GPU (issue #8): the same semantics as the CPU backend
 * (lib/cpu/cpu_backend.c), with weights, activations and the paged f16/q8/q4 KV cache in device
 * memory.
 *
 * Errors: the ops of backend_ops return nothing, so the first failure (a driver error as
 * CU_TRY words it, a KV page shortage, a rewind past evicted pages) is kept in the backend and
 * every later op does nothing; cuda_backend_error reports it (the engine checks after each
 * forward). Limits: f16, q8 or q4 KV pages (no f32 cache); one sequence.
 */
#ifndef TOME_CUDA_BACKEND_H
#define TOME_CUDA_BACKEND_H

#include <stdint.h>

#include "../backend.h" /* lib/backend.h: a plain "backend.h" here would name this file */
#include "cuda/driver.h"
#include "gguf.h"

/* Called while the weights upload: bytes done of total (at least once at the end). */
typedef void (*cuda_upload_fn)(void *ud, uint64_t done, uint64_t total);

/* Creates a backend on d (borrowed: it must outlive the backend) for cfg (kv_type must be
 * KV_F16). Uploads the weights once: the whole tensor data section [data, data + bytes) of the
 * mapping, byte for byte in 64 MiB slices (progress after each 256 MiB and at the end), so any
 * tome_weight inside it (row ranges of fused tensors included) maps to the device by its
 * offset. TOME_EFLAGS for another KV type,
 * TOME_ERESOURCE for a driver failure or device memory that runs out (bytes asked vs free). */
int cuda_backend_new(tome_backend **out, const backend_config *cfg, cuda_dev *d, const void *data, uint64_t bytes,
                     cuda_upload_fn progress, void *ud, terr *e);

/* The backend's first error (code and message into e), or 0. Synchronises the stream first
 * so that a failed kernel is seen. */
int cuda_backend_error(tome_backend *be, terr *e);

/* 0 when the GPU kernels take every tensor type of the model (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_K, Q5_K, Q6_K: cuda_matmul's list); else TOME_EUNSUPPORTED naming the first tensor that
 * has another type (e.g. Q5_0 from a small model's q4_k_m mix), which the CPU still runs. */
int cuda_check_weights(const gguf *g, terr *e);

/* Free and total device memory of d, in bytes. */
int cuda_mem_info(cuda_dev *d, uint64_t *free_b, uint64_t *total_b, terr *e);

/* Device bytes the backend allocates besides the weights and the KV pool, for n_batch-token
 * chunks (ids, RoPE tables, logits, flash-decode partials, the decode-step header; the
 * activations themselves are counted by the engine). */
uint64_t cuda_backend_scratch_bytes(const tome_hparams *hp, int n_batch);

/* Benchmark hook (tests/test_device.c gpu_longctx_*, tests/gpu.sh longctx): restarts the
 * sequence and fills positions 0 .. n-1 of every layer with synthetic K/V (seeded values in
 * [-1, 1), the same rows for every chunk), rotated, converted to the page dtype and written by
 * cuda_rope_kv_store in chunks of n_batch, as a prefill would store them but without running
 * the model. The caller then sets its engine's n_past to n. Synchronises; returns 0 or the
 * first error (TOME_EFLAGS: n outside 1 .. n_ctx). */
int cuda_backend_fill_kv(tome_backend *be, int64_t n, uint64_t seed, terr *e);

/* CUDA graphs of decode steps (see "decode steps and CUDA graphs" in backend.c): decode
 * steps run so far, how many of them were one graph launch, and why graphs are off (NULL
 * while they are on: "--no-graphs", "TOME_NO_GRAPHS", a driver without them, a failure). */
void cuda_backend_graph_stats(tome_backend *be, uint64_t *steps, uint64_t *replays, const char **off);

/* Benchmark hook (tests/gpu.sh longctx): times the decode attention alone, i.e. the
 * flash-decode and merge of every layer (cuda_flash_decode_step, the kernels a decode step
 * runs) for one query at position n_past - 1 over the cache as cuda_backend_fill_kv left it,
 * reps times between two events. *ms gets the mean time of one pass over all layers, *bytes
 * the K/V page bytes (scales included) that pass reads. The query is whatever the logits
 * buffer holds (finite). Synchronises; 0 or the first error. */
int cuda_backend_time_attention(tome_backend *be, int64_t n_past, int reps, double *ms, double *bytes, terr *e);

#endif

/* engine.c — one sequence: chunked prefill, decode loop, sampling, stop rules (engine.h).
 *
 * Timings use tnow() around forwards only, so prefill and decode rates are the model's
 * speed, not the terminal's. The memory plan counts the mapped weights (they become
 * resident), the KV pool in whole pages, and the per-chunk scratch; it is compared with
 * MemAvailable, which is what the kernel can give without swapping. The interrupt flag is read between prefill chunks and between
 * tokens: a forward is never abandoned half-way, so the cache stays consistent.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cpu/cpu.h"
#include "kvcache.h"

int engine_default_ctx(const tome_model *m) {
    int64_t n = m->hp.n_ctx_train > 0 ? m->hp.n_ctx_train : 4096;
    if (n > 32768) n = 32768;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0) {
        uint64_t quarter = (uint64_t)pages * (uint64_t)psz / 4;
        uint64_t per = cpu_kv_token_bytes(&m->hp, KV_F16);
        if (per && (uint64_t)n * per > quarter) n = (int64_t)(quarter / per);
    }
    if (n < 256) n = 256;
    return (int)n;
}

int engine_kv_type(const char *name) {
    if (!name || !strcmp(name, "f16")) return KV_F16;
    if (!strcmp(name, "q8")) return KV_Q8;
    if (!strcmp(name, "q4")) return KV_Q4;
    if (!strcmp(name, "f32")) return KV_TYPE_F32;
    return -2;
}

const char *engine_kv_name(int t) {
    return t == KV_TYPE_F32 ? "f32" : t == KV_Q8 ? "q8" : t == KV_Q4 ? "q4" : "f16";
}

int engine_apply_overrides(tome_model *m, const engine_lc *p, terr *e) {
    tome_hparams *hp = &m->hp;
    if (p->rope_scaling) {
        static const struct { const char *n; rope_scaling_type t; } k[] = {
            {"none", ROPE_SCALING_NONE}, {"linear", ROPE_SCALING_LINEAR}, {"ntk", ROPE_SCALING_NTK},
            {"dynamic", ROPE_SCALING_DYNAMIC}, {"yarn", ROPE_SCALING_YARN}, {"longrope", ROPE_SCALING_LONGROPE},
            {"llama3", ROPE_SCALING_LLAMA3}};
        size_t i = 0;
        while (i < TOME_ARRAY_LEN(k) && strcmp(k[i].n, p->rope_scaling)) i++;
        if (i == TOME_ARRAY_LEN(k))
            return terr_set(e, TOME_EFLAGS, "--rope-scaling: unknown method '%s' (none, linear, ntk, dynamic, yarn, "
                            "longrope, llama3)", p->rope_scaling);
        if (hp->rope_scaling != k[i].t) {
            hp->rope_scaling = k[i].t;
            /* the file's YaRN mix belonged to its own method: let rope.c derive it afresh */
            hp->yarn_ext_factor = -1.0f;
        }
    }
    if (p->rope_scale > 0) hp->rope_factor = (float)p->rope_scale;
    if (p->rope_base > 0) hp->rope_base = (float)p->rope_base;
    if (p->rope_orig_ctx > 0) hp->rope_orig_ctx = p->rope_orig_ctx;
    if (p->window > 0) hp->sliding_window = p->window;
    else if (p->window < 0) hp->sliding_window = 0;
    return 0;
}

uint64_t engine_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* Activation buffers (fwd_init), matmul scratch and logits: per chunk, never per position. */
static uint64_t scratch_bytes(const tome_hparams *hp, int n_batch, int threads, int kv_type, int n_ctx) {
    const uint64_t B = (uint64_t)n_batch, F = sizeof(float);
    const uint64_t widest = (uint64_t)TOME_MAX(TOME_MAX(hp->n_embd, hp->n_ff),
                                               hp->n_head * TOME_MAX(hp->head_dim, hp->head_dim_v));
    uint64_t b = B * F * (2u * (uint64_t)hp->n_embd + (uint64_t)hp->n_head * hp->head_dim +
                          (uint64_t)hp->n_head_kv * (hp->head_dim + hp->head_dim_v) +
                          (uint64_t)hp->n_head * hp->head_dim_v + 2u * (uint64_t)hp->n_ff);
    b += B * (widest * F + 64) + (uint64_t)threads * widest * F + B * (uint64_t)hp->rope_dim * F;
    b += (uint64_t)hp->n_vocab * F;
    if (kv_type == KV_TYPE_F32) b += (uint64_t)threads * (uint64_t)n_ctx * F; /* score rows */
    return b;
}

int engine_make_plan(const tome_model *m, const engine_params *p, const engine_lc *lc, engine_plan *pl,
                     terr *e) {
    memset(pl, 0, sizeof *pl);
    static const engine_lc none = {0};
    if (!lc) lc = &none;
    const tome_hparams *hp = &m->hp;
    pl->kv_type = engine_kv_type(lc->kv);
    if (!lc->kv && p->exact && !lc->gpu) pl->kv_type = KV_TYPE_F32;
    if (pl->kv_type == -2) return terr_set(e, TOME_EFLAGS, "--kv: unknown type '%s' (f16, q8, q4, f32)", lc->kv);
    if (lc->gpu && pl->kv_type == KV_TYPE_F32)
        return terr_set(e, TOME_EFLAGS, "--kv %s: the GPU keeps its KV cache in f16, q8 or q4 pages; use one of "
                        "those, or --cpu", lc->kv);
    pl->window = hp->sliding_window;
    pl->sinks = lc->sinks > 0 ? lc->sinks : 0;
    /* the f32 reference path applies the sink mask but keeps every position: no streaming */
    pl->streaming = pl->window > 0 && pl->sinks > 0 && pl->kv_type != KV_TYPE_F32;
    int threads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    pl->weight_bytes = m->g->size > m->g->data_offset ? m->g->size - m->g->data_offset : 0;
    pl->kv_token_bytes = cpu_kv_token_bytes(hp, pl->kv_type);
    if (lc->gpu) {
        /* everything lives in device memory: weights, KV pool, activations (no CPU threads) */
        int rc = cuda_mem_info(lc->gpu, &pl->mem_available, &pl->mem_total, e);
        if (rc) return rc;
        pl->gpu = 1;
        threads = 0;
    } else {
        pl->mem_available = engine_mem_available();
    }
    const int nb0 = p->n_batch > 0 ? p->n_batch : 64;
    int64_t n_ctx = p->n_ctx;
    if (n_ctx < 0) {
        /* largest context: whole pages (or positions, for f32) that fit next to the weights and
         * the scratch, so that one more position would not fit */
        const int64_t P = lc->page_tokens > 0 ? lc->page_tokens : KV_DEFAULT_PAGE_TOKENS;
        const uint64_t fixed = pl->weight_bytes + scratch_bytes(hp, nb0, threads, pl->kv_type, 0) +
                               (lc->gpu ? cuda_backend_scratch_bytes(hp, nb0) : 0);
        const uint64_t unit = pl->kv_type == KV_TYPE_F32
                                  ? pl->kv_token_bytes + (uint64_t)threads * sizeof(float)
                                  : cpu_kv_total_bytes(hp, pl->kv_type, (int)P, nb0, 0, 0, (int)P);
        const int64_t per_unit = pl->kv_type == KV_TYPE_F32 ? 1 : P;
        int64_t units = pl->mem_available > fixed ? (int64_t)((pl->mem_available - fixed) / unit) : 0;
        if (!pl->mem_available) units = (1LL << 30) / per_unit;
        n_ctx = units * per_unit;
        if (n_ctx > (1LL << 30)) n_ctx = (1LL << 30) / per_unit * per_unit;
        if (n_ctx < 1) n_ctx = 1;
    } else if (n_ctx == 0) {
        n_ctx = engine_default_ctx(m);
    }
    pl->n_ctx = (int)n_ctx;
    pl->n_batch = (int)TOME_MIN((int64_t)nb0, n_ctx);
    pl->kv_bytes = cpu_kv_total_bytes(hp, pl->kv_type, pl->n_ctx, pl->n_batch, pl->window, pl->sinks, lc->page_tokens);
    pl->scratch_bytes = scratch_bytes(hp, pl->n_batch, threads, pl->kv_type, pl->n_ctx) +
                        (lc->gpu ? cuda_backend_scratch_bytes(hp, pl->n_batch) : 0);
    pl->total_bytes = pl->weight_bytes + pl->kv_bytes + pl->scratch_bytes;
    pl->fits = !pl->mem_available || pl->total_bytes <= pl->mem_available;
    return 0;
}

void engine_close(engine *en) {
    if (!en) return;
    fwd_free(&en->fwd);
    if (en->be) en->be->ops->destroy(en->be);
    model_free(en->m);
    free(en->logits);
    free(en);
}

int engine_from_model(engine **out, tome_model *m, const engine_params *p, terr *e) {
    return engine_from_model_lc(out, m, p, NULL, e);
}

int engine_from_model_lc(engine **out, tome_model *m, const engine_params *p, const engine_lc *lc, terr *e) {
    *out = NULL;
    static const engine_lc none = {0};
    if (!lc) lc = &none;
    engine *en = calloc(1, sizeof *en);
    if (!en) {
        model_free(m);
        return terr_set(e, TOME_ERESOURCE, "out of memory");
    }
    en->m = m;
    int rc;
    if (p->n_ctx < 0 || p->n_batch < 0) {
        rc = terr_set(e, TOME_EFLAGS, "context %d and batch %d must be positive", p->n_ctx, p->n_batch);
        goto fail;
    }
    if ((rc = engine_apply_overrides(m, lc, e))) goto fail;
    if (lc->gpu && (rc = cuda_check_weights(m->g, e))) goto fail;
    engine_plan pl;
    if ((rc = engine_make_plan(m, p, lc, &pl, e))) goto fail;
    if (!pl.fits && pl.gpu) {
        rc = terr_set(e, TOME_ERESOURCE,
                      "context %d with %s KV does not fit in memory: weights %.1f MiB + KV %.1f MiB (%llu bytes/token) "
                      "+ scratch %.1f MiB = %.1f MiB needed > %.1f MiB available on GPU %d (%s, %.1f MiB total; see "
                      "tome plan --gpu -c max)",
                      pl.n_ctx, engine_kv_name(pl.kv_type), pl.weight_bytes / 1048576.0, pl.kv_bytes / 1048576.0,
                      (unsigned long long)pl.kv_token_bytes, pl.scratch_bytes / 1048576.0, pl.total_bytes / 1048576.0,
                      pl.mem_available / 1048576.0, lc->gpu->ordinal, lc->gpu->name, pl.mem_total / 1048576.0);
        goto fail;
    }
    if (!pl.fits) {
        rc = terr_set(e, TOME_ERESOURCE,
                      "context %d with %s KV does not fit in memory: weights %.1f MiB + KV %.1f MiB (%llu bytes/token) "
                      "+ scratch %.1f MiB = %.1f MiB > %.1f MiB available (see tome plan -c max)",
                      pl.n_ctx, engine_kv_name(pl.kv_type), pl.weight_bytes / 1048576.0, pl.kv_bytes / 1048576.0,
                      (unsigned long long)pl.kv_token_bytes, pl.scratch_bytes / 1048576.0,
                      pl.total_bytes / 1048576.0, pl.mem_available / 1048576.0);
        goto fail;
    }
    en->n_ctx = pl.n_ctx;
    en->n_batch = pl.n_batch;
    en->kv_type = pl.kv_type;
    en->window = pl.window;
    en->sinks = pl.sinks;
    en->streaming = pl.streaming;
    rope_table rt;
    if ((rc = model_rope_table(m, en->n_ctx, &rt, e))) goto fail;
    backend_config cfg = {&m->hp, &rt, en->n_ctx, en->n_batch, p->n_threads, p->exact, p->cpu_kernels,
                          en->kv_type, lc->page_tokens, en->window, en->window > 0 ? en->sinks : 0, lc->no_graphs};
    if (lc->gpu) {
        en->on_gpu = 1;
        rc = cuda_backend_new(&en->be, &cfg, lc->gpu, m->g->base + m->g->data_offset, pl.weight_bytes, lc->on_upload,
                              lc->upload_ud, e);
    } else {
        rc = cpu_backend_new(&en->be, &cfg, e);
    }
    if (rc) goto fail;
    if ((rc = fwd_init(&en->fwd, m, en->be, en->n_batch, e))) goto fail;
    en->logits = tmalloc_array((size_t)m->hp.n_vocab, sizeof(float));
    if (!en->logits) {
        rc = terr_set(e, TOME_ERESOURCE, "out of memory");
        goto fail;
    }
    *out = en;
    return 0;
fail:
    engine_close(en);
    return rc;
}

int engine_open(engine **out, const char *path, const engine_params *p, terr *e) {
    *out = NULL;
    tome_model *m;
    int rc = model_load(&m, path, e);
    if (rc) return rc;
    return engine_from_model(out, m, p, e);
}

void engine_reset(engine *en) { en->n_past = 0; }

/* engine_eval's body; want_last 0 skips the output projection when no logits are needed
 * (the non-final chunks of a prefill). */
static int eval_ids(engine *en, const int32_t *ids, int n, float *all_logits, int want_last, terr *e) {
    const int V = en->m->hp.n_vocab;
    if (n <= 0) return 0;
    if (!en->streaming && (int64_t)en->n_past + n > en->n_ctx)
        return terr_set(e, TOME_EINPUT, "%d positions do not fit the context of %d (%d already used)", n, en->n_ctx,
                        en->n_past);
    if ((int64_t)en->n_past + n > INT32_MAX - 1)
        return terr_set(e, TOME_EINPUT, "position %lld is past the largest position tome supports",
                        (long long)en->n_past + n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return terr_set(e, TOME_EINPUT, "token id %d (position %d) is outside the vocabulary of %d", ids[i],
                            en->n_past + i, V);
    for (int s = 0; s < n; s += en->n_batch) {
        const int c = TOME_MIN(en->n_batch, n - s);
        float *dst = all_logits ? all_logits + (size_t)s * V : (want_last && s + c == n ? en->logits : NULL);
        forward(en->m, &en->fwd, ids + s, c, en->n_past, dst, all_logits != NULL);
        en->n_past += c;
        if (en->on_gpu) {
            int grc = cuda_backend_error(en->be, e);
            if (grc) return grc;
        } else if (cpu_backend_failed(en->be))
            return terr_set(e, TOME_ERESOURCE, "the KV cache could not store positions up to %d (out of pages, or a rewind "
                            "past evicted pages)", en->n_past);
    }
    if (all_logits) memcpy(en->logits, all_logits + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    return 0;
}

int engine_eval(engine *en, const int32_t *ids, int n, float *all_logits, terr *e) {
    return eval_ids(en, ids, n, all_logits, 1, e);
}

const char *finish_name(finish_reason r) {
    switch (r) {
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_CONTEXT: return "length";
    case FINISH_INTERRUPTED: return "interrupted";
    }
    return "?";
}

static int is_stop(const gen_params *gp, int32_t id) {
    if (gp->tok && tok_is_eog(gp->tok, id)) return 1;
    for (int i = 0; i < gp->n_stop; i++)
        if (gp->stop_ids[i] == id) return 1;
    return 0;
}

static int interrupted(const gen_params *gp) { return gp->interrupt && *gp->interrupt; }

int engine_generate(engine *en, const int32_t *prompt, int n_prompt, const gen_params *gp, gen_result *r,
                    terr *e) {
    memset(r, 0, sizeof *r);
    const int V = en->m->hp.n_vocab;
    if (n_prompt <= 0) return terr_set(e, TOME_EINPUT, "the prompt is empty (no tokens)");
    if (n_prompt > en->n_ctx && !en->streaming)
        return terr_set(e, TOME_EINPUT, "the prompt is %d tokens, longer than the context of %d (raise -c)", n_prompt,
                        en->n_ctx);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return terr_set(e, TOME_EINPUT, "prompt token %d (id %d) is outside the vocabulary of %d", i, prompt[i], V);
    sampler *smp = sampler_new(&gp->sp, V);
    if (!smp) return terr_set(e, TOME_ERESOURCE, "out of memory for the sampler");
    engine_reset(en);
    for (int i = 0; i < n_prompt; i++) sampler_accept(smp, prompt[i]);

    int rc = 0;
    const double t0 = tnow();
    /* prefill, chunk by chunk so Ctrl-C is honoured on long prompts */
    for (int s = 0; s < n_prompt; s += en->n_batch) {
        if (interrupted(gp)) {
            r->finish = FINISH_INTERRUPTED;
            r->t_prefill = tnow() - t0;
            goto done;
        }
        const int c = TOME_MIN(en->n_batch, n_prompt - s);
        if ((rc = eval_ids(en, prompt + s, c, NULL, s + c == n_prompt, e))) goto done;
        r->n_prompt += c;
        if (gp->on_progress) gp->on_progress(gp->ud, r->n_prompt, n_prompt);
    }
    r->t_prefill = tnow() - t0;
    if (gp->prompt_logits) memcpy(gp->prompt_logits, en->logits, (size_t)V * sizeof(float));

    for (;;) {
        if (interrupted(gp)) { r->finish = FINISH_INTERRUPTED; break; }
        if (gp->n_predict >= 0 && r->n_gen >= gp->n_predict) { r->finish = FINISH_LENGTH; break; }
        const int32_t id = sampler_sample(smp, en->logits);
        if (r->n_gen == 0) r->t_first = tnow() - t0;
        if (is_stop(gp, id)) { r->finish = FINISH_STOP; break; }
        sampler_accept(smp, id);
        r->n_gen++;
        if (gp->on_token && gp->on_token(gp->ud, id)) { r->finish = FINISH_STOP; break; }
        if (gp->n_predict >= 0 && r->n_gen >= gp->n_predict) { r->finish = FINISH_LENGTH; break; }
        if (!en->streaming && en->n_past >= en->n_ctx) { r->finish = FINISH_CONTEXT; break; }
        if (interrupted(gp)) { r->finish = FINISH_INTERRUPTED; break; }
        const double td = tnow();
        if ((rc = engine_eval(en, &id, 1, NULL, e))) break;
        r->t_decode += tnow() - td;
        r->n_decode++;
    }
done:
    sampler_free(smp);
    return rc;
}

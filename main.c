/* main.c — tome's command line: parses flags, calls into lib/, turns errors into exit codes.
 *
 * Nothing below lib/ exits; every command here returns TOME_OK or a TOME_E* code and has
 * printed the one-line error by then. Each command has its own cmd_* function with its
 * flag parsing; shared flag helpers are at the top.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>  /* run: SIGINT */
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <stb/stb_ds.h>

#include "util.h"
#include "chat.h"      /* run */
#include "bench.h"     /* bench */
#include "engine.h"
#include "sampler.h"
#include "tokenizer.h"
#include "info.h"      /* info */
#include "device.h"    /* run, plan, bench: --gpu / --cpu */

/* ---- flag helpers -------------------------------------------------------------------- */

/* Prints "tome: MSG" and returns code: the way every command reports a failure. */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tome: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return code;
}

/* Prints "tome: warning: MSG": a problem that does not stop the command. */
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tome: warning: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static int fail_err(const terr *e) { return fail(e->code ? e->code : TOME_EINPUT, "%s", e->msg); }

/* Flag iteration: `--name VALUE`, `--name=VALUE` and short `-x VALUE` forms.
 * is_flag(a, "--temp", "-T") matches; take_val then returns the value or NULL (and complains). */
typedef struct args {
    int argc;
    char **argv;
    int i;          /* index of the current argument */
    const char *eq; /* value after '=' in the current argument, if any */
} args;

__attribute__((unused)) static int is_flag(args *a, const char *lng, const char *shrt) {
    const char *s = a->argv[a->i];
    a->eq = NULL;
    if (shrt && strcmp(s, shrt) == 0) return 1;
    if (!lng) return 0;
    size_t n = strlen(lng);
    if (strncmp(s, lng, n) != 0) return 0;
    if (s[n] == 0) return 1;
    if (s[n] == '=') { a->eq = s + n + 1; return 1; }
    return 0;
}

__attribute__((unused)) static const char *take_val(args *a) {
    if (a->eq) return a->eq;
    if (a->i + 1 >= a->argc) {
        fail(TOME_EFLAGS, "flag %s needs a value", a->argv[a->i]);
        return NULL;
    }
    return a->argv[++a->i];
}

/* Parses an integer flag value in [lo, hi]; returns 0 or TOME_EFLAGS (message printed). */
__attribute__((unused)) static int parse_int(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    if (!v) return TOME_EFLAGS;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return fail(TOME_EFLAGS, "flag %s: '%s' is not an integer in [%lld, %lld]", flag, v, lo, hi);
    *out = x;
    return 0;
}

__attribute__((unused)) static int parse_float(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    if (!v) return TOME_EFLAGS;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi))
        return fail(TOME_EFLAGS, "flag %s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
    *out = x;
    return 0;
}

__attribute__((unused)) static int unknown_flag(const char *cmd, const char *s) {
    return fail(TOME_EFLAGS, "%s: unknown flag '%s' (see tome --help)", cmd, s);
}

/* ---- device choice (run, plan, bench) ------------------------------------------------ */

/* Handles --cpu / --gpu[=N] at argv[a->i]: returns 1 when it was one (*rc = 0, or the exit
 * code with the message printed), 0 otherwise. */
static int device_arg(args *a, device_request *rq, int *rc) {
    terr e = {0};
    int matched = 0;
    *rc = device_flag(a->argv[a->i], rq, &matched, &e) ? fail_err(&e) : 0;
    return matched;
}

/* Handles the long-context flags run and plan share (--kv, --window, --sinks, --rope-*) at
 * argv[a->i]: returns 1 when it was one (*rc = 0, or TOME_EFLAGS with the message printed), 0
 * otherwise. */
static int lc_arg(args *a, engine_lc *lc, int *rc) {
    static const struct { const char *name; long long lo, hi; } ints[] = {
        {"--window", 1, 1 << 30}, {"--sinks", 0, 1 << 30}, {"--rope-orig-ctx", 1, 1 << 30}};
    static const struct { const char *name; double lo, hi; } flts[] = {
        {"--rope-scale", 1e-6, 1e6}, {"--rope-base", 1.0001, 1e12}};
    int *const ivars[] = {&lc->window, &lc->sinks, &lc->rope_orig_ctx};
    double *const fvars[] = {&lc->rope_scale, &lc->rope_base};
    const char **const svar = is_flag(a, "--kv", NULL) ? &lc->kv
                            : is_flag(a, "--rope-scaling", NULL) ? &lc->rope_scaling : NULL;
    const char *v;
    *rc = 0;
    if (svar) {
        if (!(v = take_val(a))) *rc = TOME_EFLAGS;
        else *svar = v;
        return 1;
    }
    for (size_t k = 0; k < TOME_ARRAY_LEN(ints); k++) {
        if (!is_flag(a, ints[k].name, NULL)) continue;
        long long t;
        if (!(v = take_val(a))) *rc = TOME_EFLAGS;
        else if (!(*rc = parse_int(a->argv[a->i - (a->eq ? 0 : 1)], v, ints[k].lo, ints[k].hi, &t))) *ivars[k] = (int)t;
        return 1;
    }
    for (size_t k = 0; k < TOME_ARRAY_LEN(flts); k++) {
        if (!is_flag(a, flts[k].name, NULL)) continue;
        double t;
        if (!(v = take_val(a))) *rc = TOME_EFLAGS;
        else if (!(*rc = parse_float(a->argv[a->i - (a->eq ? 0 : 1)], v, flts[k].lo, flts[k].hi, &t))) *fvars[k] = t;
        return 1;
    }
    return 0;
}

/* Picks the device for model g (lib/device.h); prints the one-line notice when the default
 * falls back to the CPU (not with quiet). Returns 0 or the exit code (message printed). */
static int choose_device(const device_request *rq, const gguf *g, const char *kv, const char *cpu_setting,
                         int quiet, device_choice *dc) {
    terr e = {0};
    char why[256] = "";
    /* settings only the CPU has: the default runs there, --gpu refuses them */
    if (kv && engine_kv_type(kv) == KV_TYPE_F32)
        snprintf(why, sizeof why, "--kv %s: the GPU keeps its KV cache in f16, q8 or q4 pages; use one of those, "
                 "or --cpu", kv);
    else if (cpu_setting)
        snprintf(why, sizeof why, "%s is a CPU setting", cpu_setting);
    if (device_choose(rq, dc, &e) || (why[0] && device_need_cpu(rq, dc, TOME_EFLAGS, why, &e)) ||
        device_fit_model(rq, dc, g, &e))
        return fail_err(&e);
    if (!dc->gpu && dc->reason[0] && !quiet) fprintf(stderr, "tome: %s; running on the CPU\n", dc->reason);
    return 0;
}

/* Weight upload progress on a terminal: one redrawn line, cleared at the end. */
static void upload_bar(void *ud, uint64_t done, uint64_t total) {
    const device_choice *dc = ud;
    const int w = 30, f = total ? (int)((double)done / (double)total * w) : w;
    fprintf(stderr, "\rtome: uploading weights to GPU %d [%.*s%*s] %5.1f%% of %.2f GiB", dc->ordinal, f,
            "##############################", w - f, "", total ? 100.0 * (double)done / (double)total : 100.0,
            (double)total / 1073741824.0);
    if (done >= total) fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

/* ---- commands ------------------------------------------------------------------------- */

/* tome info FILE.gguf [--json]: 0 for any valid GGUF (runnable or not), 2 if it is invalid. */
static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return unknown_flag("info", argv[i]);
        else if (path) return fail(TOME_EFLAGS, "info: one file at a time ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return fail(TOME_EFLAGS, "info: usage: tome info MODEL.gguf [--json]");
    gguf *g = NULL;
    terr e = {0};
    if (gguf_open(&g, path, &e)) return fail_err(&e);
    tome_info in;
    info_gather(&in, g);
    int rc = info_write(stdout, &in, json);
    gguf_close(g);
    return rc ? fail(rc, "info: out of memory") : TOME_OK;
}

/* ---- tome run ------------------------------------------------------------------------ *
 * Documents (-f files in order, then piped stdin) and the question (-p) become one prompt:
 * with a chat template, one user turn; without, BOS + documents joined by "\n\n" + "\n\n" +
 * question. Text streams to stdout as it is generated; stats go to stderr. The SIGINT flag
 * below is the one mutable global the conventions allow: the handler can reach nothing else. */

static volatile sig_atomic_t g_run_interrupted;

static void run_on_sigint(int sig) {
    (void)sig;
    g_run_interrupted = 1;
}

typedef struct run_out {
    const tokenizer *tok;
    tok_stream ts;
    int print_ids, json, n_ids;
    char *text;         /* --json: the generated text so far (heap) */
    size_t len, cap;
    int32_t *ids;       /* generated ids (stb_ds array) */
    int quiet, tty;     /* prefill progress: none; a redrawn bar (stderr a terminal) */
    double t0, t_last;  /* prefill start, last progress line */
} run_out;

/* Prefill progress on stderr: a bar redrawn in place on a terminal, otherwise a plain line
 * every ~5 s (so short prompts print nothing). */
static void run_on_progress(void *ud, int done, int total) {
    run_out *o = ud;
    if (o->quiet) return;
    const double now = tnow(), dt = now - o->t0;
    const double tps = dt > 0 ? done / dt : 0, eta = tps > 0 ? (total - done) / tps : 0;
    if (o->tty) {
        if (now - o->t_last < 0.1 && done < total) return;
        o->t_last = now;
        const int w = 30, fill = total > 0 ? (int)((int64_t)w * done / total) : w;
        char bar[32];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\rprefill [%s] %d/%d tokens, %.1f tok/s, ETA %.0f s ", bar, done, total, tps, eta);
        if (done >= total) fputs("\r\033[K", stderr);
    } else if (now - o->t_last >= 5.0 && done < total) {
        o->t_last = now;
        fprintf(stderr, "tome: prefill %d/%d tokens, %.1f tok/s, ETA %.0f s\n", done, total, tps, eta);
    }
    fflush(stderr);
}

static int run_append(run_out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *p = realloc(o->text, cap);
        if (!p) return -1;
        o->text = p;
        o->cap = cap;
    }
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->text[o->len] = 0;
    return 0;
}

static int run_emit(run_out *o, const char *s, size_t n) {
    if (!n) return 0;
    if (o->json) return run_append(o, s, n);
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static int run_on_token(void *ud, int32_t id) {
    run_out *o = ud;
    arrput(o->ids, id);
    char buf[512];
    size_t n = tok_stream_push(&o->ts, id, buf, sizeof buf);
    if (o->json) return run_append(o, buf, n) ? 1 : 0;
    if (o->print_ids) {
        printf(o->n_ids++ ? " %d" : "%d", (int)id);
        fflush(stdout);
        return 0;
    }
    return run_emit(o, buf, n);
}

/* Tokenizes the prompt; *ids is an stb_ds array. */
static int run_tokenize(const tokenizer *tok, chat_kind kind, const char *system, const char *user,
                        size_t user_len, int think, int add_bos, int32_t **ids, terr *e) {
    int32_t *part = NULL;
    size_t n = 0;
    int rc;
    if (kind == CHAT_NONE) {
        char *joined = NULL;
        size_t jl = user_len;
        if (system && *system) {
            size_t sl = strlen(system);
            joined = malloc(sl + 2 + user_len + 1);
            if (!joined) return terr_set(e, TOME_ERESOURCE, "out of memory");
            memcpy(joined, system, sl);
            memcpy(joined + sl, "\n\n", 2);
            memcpy(joined + sl + 2, user, user_len);
            jl = sl + 2 + user_len;
        }
        rc = tok_encode(tok, joined ? joined : user, jl, add_bos ? TOK_ADD_BOS : 0, &part, &n, e);
        free(joined);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++) arrput(*ids, part[i]);
        free(part);
        return 0;
    }
    chat_segment *segs = NULL;
    size_t ns = 0;
    int32_t bos = tok_bos(tok);
    chat_opts co = {system, user, user_len, think, add_bos, bos >= 0 ? tok_piece(tok, bos) : NULL};
    if ((rc = chat_render(kind, &co, &segs, &ns, e))) return rc;
    for (size_t s = 0; s < ns && !rc; s++) {
        rc = tok_encode(tok, segs[s].text, segs[s].len, segs[s].special ? TOK_PARSE_SPECIAL : 0, &part, &n, e);
        for (size_t i = 0; !rc && i < n; i++) arrput(*ids, part[i]);
        free(part);
        part = NULL;
    }
    chat_segments_free(segs, ns);
    return rc;
}

/* Writes the logits into f (opened before the run, so a bad path fails before a long prefill)
 * and closes it. */
static int run_write_logits(const char *path, FILE *f, const float *l, int n) {
    size_t w = fwrite(l, sizeof(float), (size_t)n, f);
    if (fclose(f) != 0 || w != (size_t)n) return fail(TOME_EINPUT, "--logits %s: write failed", path);
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const char *model = NULL, *question = NULL, *system = NULL, *tmpl = NULL, *logits_path = NULL;
    const char *cpu_kern = NULL;
    engine_lc lc = {0};
    const char **files = NULL; /* stb_ds */
    long long n_predict = 256, n_ctx = 0, n_threads = 0, n_batch = 64, seed = -1, top_k = 40, last_n = 64;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    int chat = -1, think = 0, json = 0, quiet = 0, print_ids = 0, exact = 0, bos = -1, dump = 0, ignore_eos = 0;
    int rc = 0;
    device_request drq = {0};
    device_choice dc = {0};
    args a = {argc, argv, 1, NULL};
    for (; a.i < argc; a.i++) {
        const char *v;
#define VAL() do { if (!(v = take_val(&a))) { rc = TOME_EFLAGS; goto out; } } while (0)
#define INTF(var, lo, hi) do { long long t_; VAL(); if ((rc = parse_int(argv[a.i - (a.eq ? 0 : 1)], v, lo, hi, &t_))) goto out; var = t_; } while (0)
#define FLTF(var, lo, hi) do { double t_; VAL(); if ((rc = parse_float(argv[a.i - (a.eq ? 0 : 1)], v, lo, hi, &t_))) goto out; var = t_; } while (0)
        if (is_flag(&a, "--model", "-m")) { VAL(); model = v; }
        else if (is_flag(&a, "--prompt", "-p")) { VAL(); question = v; }
        else if (is_flag(&a, "--file", "-f")) { VAL(); arrput(files, v); }
        else if (is_flag(&a, "--n-predict", "-n")) INTF(n_predict, -1, 1LL << 30);
        else if (is_flag(&a, "--ctx-size", "-c")) INTF(n_ctx, 1, 1LL << 30);
        else if (is_flag(&a, "--threads", "-t")) INTF(n_threads, 1, 1024);
        else if (is_flag(&a, "--batch-size", "-b")) INTF(n_batch, 1, 1 << 16);
        else if (is_flag(&a, "--chunk", NULL)) INTF(n_batch, 1, 1 << 16);
        else if (lc_arg(&a, &lc, &rc)) { if (rc) goto out; }
        else if (is_flag(&a, "--temp", NULL)) FLTF(temp, 0, 100);
        else if (is_flag(&a, "--top-k", NULL)) INTF(top_k, 0, INT32_MAX);
        else if (is_flag(&a, "--top-p", NULL)) FLTF(top_p, 0, 1);
        else if (is_flag(&a, "--min-p", NULL)) FLTF(min_p, 0, 1);
        else if (is_flag(&a, "--repeat-penalty", NULL)) FLTF(rep, 0, 100);
        else if (is_flag(&a, "--repeat-last-n", NULL)) INTF(last_n, 0, 1 << 30);
        else if (is_flag(&a, "--seed", NULL)) INTF(seed, 0, INT64_MAX);
        else if (is_flag(&a, "--system", NULL)) { VAL(); system = v; }
        else if (is_flag(&a, "--chat-template", NULL)) { VAL(); tmpl = v; chat = 1; }
        else if (is_flag(&a, "--logits", NULL)) { VAL(); logits_path = v; }
        else if (is_flag(&a, "--cpu-kernels", NULL)) { VAL(); cpu_kern = v; }
        else if (!strcmp(argv[a.i], "--chat")) chat = 1;
        else if (!strcmp(argv[a.i], "--no-chat")) chat = 0;
        else if (!strcmp(argv[a.i], "--think")) think = 1;
        else if (!strcmp(argv[a.i], "--json")) json = 1;
        else if (!strcmp(argv[a.i], "-q") || !strcmp(argv[a.i], "--quiet")) quiet = 1;
        else if (!strcmp(argv[a.i], "--print-ids")) print_ids = 1;
        else if (!strcmp(argv[a.i], "--exact")) exact = 1;
        else if (!strcmp(argv[a.i], "--bos")) bos = 1;
        else if (!strcmp(argv[a.i], "--no-bos")) bos = 0;
        else if (!strcmp(argv[a.i], "--dump-prompt")) dump = 1;
        else if (!strcmp(argv[a.i], "--ignore-eos")) ignore_eos = 1;
        else if (device_arg(&a, &drq, &rc)) { if (rc) goto out; }
        else { rc = unknown_flag("run", argv[a.i]); goto out; }
#undef VAL
#undef INTF
#undef FLTF
    }
    if (!model) { rc = fail(TOME_EFLAGS, "run: -m MODEL is required"); goto out; }
    if (lc.kv && engine_kv_type(lc.kv) == -2) { rc = fail(TOME_EFLAGS, "run: --kv: unknown type '%s' (f16, q8, q4, f32)", lc.kv); goto out; }
    if (lc.sinks > 0 && lc.window <= 0) { rc = fail(TOME_EFLAGS, "run: --sinks K needs --window W"); goto out; }
    chat_kind forced = CHAT_NONE;
    if (tmpl && (forced = chat_from_name(tmpl)) == CHAT_INVALID) {
        rc = fail(TOME_EFLAGS, "run: unknown --chat-template '%s' (llama3, chatml, qwen3, mistral, phi3, gemma, none)", tmpl);
        goto out;
    }
    sampler_params sp = sampler_defaults();
    sp.temp = (float)temp;
    sp.top_k = (int)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.rep_penalty = (float)rep;
    sp.rep_last_n = (int)last_n;
    sp.seed = seed >= 0 ? (uint64_t)seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    terr e = {0};
    if (sampler_params_check(&sp, &e)) { rc = fail_err(&e); goto out; }

    /* ---- documents: -f files in order, then stdin when it is not a terminal ---- */
    char **docs = NULL;   /* stb_ds */
    size_t *lens = NULL;  /* stb_ds */
    tome_model *m = NULL;
    tokenizer *tok = NULL;
    engine *en = NULL;
    int32_t *ids = NULL;
    float *plog = NULL;
    FILE *logf = NULL; /* --logits, open from before the model loads until written */
    run_out ro = {0};
    for (size_t i = 0; i < (size_t)arrlen(files) + 1; i++) {
        const char *path = i < (size_t)arrlen(files) ? files[i] : NULL;
        if (!path) {
            if (isatty(0)) break;
            path = "-";
        }
        size_t n;
        char *buf = tread_file(path, &n, &e);
        if (!buf) { rc = fail_err(&e); goto done; }
        int64_t bad = tutf8_invalid_offset(buf, n);
        if (bad >= 0) {
            free(buf);
            rc = fail(TOME_EINPUT, "%s: invalid UTF-8 at byte offset %lld", strcmp(path, "-") ? path : "<stdin>",
                      (long long)bad);
            goto done;
        }
        if (!strcmp(path, "-") && n == 0) { free(buf); break; } /* nothing piped */
        arrput(docs, buf);
        arrput(lens, n);
    }
    if (!question && arrlen(docs) == 0) {
        rc = fail(TOME_EFLAGS, "run: nothing to answer: give -p QUESTION, -f FILE or pipe text on stdin");
        goto done;
    }
    if (question) {
        int64_t bad = tutf8_invalid_offset(question, strlen(question));
        if (bad >= 0) { rc = fail(TOME_EINPUT, "-p: invalid UTF-8 at byte offset %lld", (long long)bad); goto done; }
    }
    if (system) {
        int64_t bad = tutf8_invalid_offset(system, strlen(system));
        if (bad >= 0) { rc = fail(TOME_EINPUT, "--system: invalid UTF-8 at byte offset %lld", (long long)bad); goto done; }
    }
    /* with no -p and no -f, stdin is the prompt itself: it is the only "document" */
    size_t user_len = 0;
    char *user = chat_join_user((const char *const *)docs, lens, (size_t)arrlen(docs), question, &user_len);
    if (!user) { rc = fail(TOME_ERESOURCE, "out of memory"); goto done; }

    if (logits_path && !dump && !(logf = fopen(logits_path, "wb"))) {
        rc = fail(TOME_EINPUT, "--logits %s: cannot open for writing: %s", logits_path, strerror(errno));
        goto done_user;
    }

    /* ---- model and tokenizer ---- */
    if ((rc = model_load(&m, model, &e))) { fail_err(&e); goto done_user; }
    if ((rc = tok_load_gguf(&tok, m->g, &e))) { fail_err(&e); goto done_user; }
    chat_kind kind = CHAT_NONE;
    const char *src = tok_chat_template(tok);
    if (chat == -1) chat = src != NULL;
    if (chat == 1) {
        if (tmpl) kind = forced;
        else if ((kind = chat_detect(src)) == CHAT_NONE)
            warn("%s: %s; using the plain layout", model,
                 src ? "chat template not recognised" : "no chat template in the file");
    }
    /* BOS as the file asks (tokenizer.ggml.add_bos_token, as llama.cpp does): Llama and Mistral
     * vocabularies say yes, Qwen's say no */
    int add_bos = bos >= 0 ? bos : tok_add_bos_default(tok);
    if ((rc = run_tokenize(tok, kind, system, user, user_len, think, add_bos, &ids, &e))) { fail_err(&e); goto done_user; }
    if (dump) {
        for (ptrdiff_t i = 0; i < arrlen(ids); i++) printf(i ? " %d" : "%d", (int)ids[i]);
        printf("\n");
        size_t tl;
        char *t = tok_decode(tok, ids, (size_t)arrlen(ids), 0, &tl);
        if (t) fwrite(t, 1, tl, stdout);
        free(t);
        printf("\n");
        goto done_user;
    }

    /* ---- engine ---- */
    engine_params ep = {(int)n_ctx, (int)n_batch, (int)n_threads, exact, cpu_kern};
    char cks[96];
    snprintf(cks, sizeof cks, "--cpu-kernels %.80s", cpu_kern ? cpu_kern : "");
    if ((rc = choose_device(&drq, m->g, lc.kv, cpu_kern ? cks : NULL, quiet, &dc))) goto done_user;
    lc.gpu = dc.dev;
    if (dc.gpu && !quiet && isatty(2)) { lc.on_upload = upload_bar; lc.upload_ud = &dc; }
    tome_model *mm = m;
    m = NULL; /* the engine owns it now */
    if ((rc = engine_from_model_lc(&en, mm, &ep, &lc, &e))) { fail_err(&e); goto done_user; }
    if (arrlen(ids) > en->n_ctx && !en->streaming) {
        rc = fail(TOME_EINPUT, "the prompt is %d tokens, longer than the context of %d (raise -c)", (int)arrlen(ids),
                  en->n_ctx);
        goto done_user;
    }
    int32_t stop[1];
    int n_stop = 0;
    const char *eot = chat_eot(kind);
    if (eot && (stop[0] = tok_find(tok, eot)) >= 0) n_stop = 1;
    if (logits_path && !(plog = tmalloc_array((size_t)en->m->hp.n_vocab, sizeof(float)))) {
        rc = fail(TOME_ERESOURCE, "out of memory");
        goto done_user;
    }
    ro.tok = tok;
    ro.print_ids = print_ids;
    ro.json = json;
    ro.quiet = quiet;
    ro.tty = isatty(2);
    ro.t0 = ro.t_last = tnow();
    tok_stream_init(&ro.ts, tok);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_on_sigint;
    sa.sa_flags = SA_RESTART; /* a write to stdout in progress finishes instead of failing EINTR */
    sigemptyset(&sa.sa_mask);
    g_run_interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    gen_params gp = {(int)n_predict, sp, ignore_eos ? NULL : tok, stop, ignore_eos ? 0 : n_stop, &g_run_interrupted,
                     run_on_token, &ro, plog, run_on_progress};
    gen_result r;
    rc = engine_generate(en, ids, (int)arrlen(ids), &gp, &r, &e);
    sigaction(SIGINT, &old, NULL);
    if (rc) { fail_err(&e); goto done_user; }
    {
        char buf[64];
        size_t n = tok_stream_flush(&ro.ts, buf, sizeof buf);
        if (!print_ids) run_emit(&ro, buf, n);
        else if (json) run_append(&ro, buf, n);
    }
    if (logf && r.n_prompt == (int)arrlen(ids)) {
        FILE *f = logf;
        logf = NULL;
        if ((rc = run_write_logits(logits_path, f, plog, en->m->hp.n_vocab))) goto done_user;
    }
    const double pre_tps = r.t_prefill > 0 ? r.n_prompt / r.t_prefill : 0;
    const double dec_tps = r.t_decode > 0 ? r.n_decode / r.t_decode : 0;
    if (json) {
        json_t *ja = json_array();
        for (ptrdiff_t i = 0; i < arrlen(ro.ids); i++) json_array_append_new(ja, json_integer(ro.ids[i]));
        json_t *o = json_pack("{s:s%, s:i, s:i, s:s, s:o, s:{s:f, s:f, s:f, s:f, s:i}}", "text",
                              ro.text ? ro.text : "", ro.len, "prompt_tokens", r.n_prompt, "generated_tokens",
                              r.n_gen, "finish_reason", finish_name(r.finish), "ids", ja, "stats", "prefill_s",
                              r.t_prefill, "prefill_tok_s", pre_tps, "decode_tok_s", dec_tps, "time_to_first_token_s",
                              r.t_first, "n_ctx", en->n_ctx);
        char *js = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (js) puts(js);
        else rc = fail(TOME_ERESOURCE, "out of memory writing the --json result");
        free(js);
        json_decref(o);
    } else if (!print_ids || ro.n_ids) {
        printf("\n");
    }
    fflush(stdout);
    if (r.finish == FINISH_CONTEXT)
        fprintf(stderr, "tome: generation stopped at the end of the context (%d positions; raise -c, or slide with "
                "--sinks K --window W)\n", en->n_ctx);
    if (!quiet)
        fprintf(stderr,
                "tome: prompt %d tokens, prefill %.1f tok/s (%.3f s), decode %.1f tok/s (%d tokens), "
                "first token %.3f s, finish %s\n",
                r.n_prompt, pre_tps, r.t_prefill, dec_tps, r.n_gen, r.t_first, finish_name(r.finish));
    if (r.finish == FINISH_INTERRUPTED && rc == 0) rc = TOME_EINTR;
done_user:
    free(user);
done:
    for (ptrdiff_t i = 0; i < arrlen(docs); i++) free(docs[i]);
    arrfree(docs);
    arrfree(lens);
    arrfree(ids);
    arrfree(ro.ids);
    free(ro.text);
    free(plog);
    if (logf) { /* opened but never written (an error, or Ctrl-C during the prefill): no empty file left */
        fclose(logf);
        remove(logits_path);
    }
    engine_close(en);
    device_release(&dc);
    model_free(m);
    tok_free(tok);
out:
    arrfree(files);
    return rc;
}

/* tome plan: the memory a run would need (engine_make_plan), without allocating it. */
static int cmd_plan(int argc, char **argv) {
    const char *model = NULL, *ctx = NULL;
    long long n_batch = 64, n_threads = 0;
    int json = 0, rc = 0, quiet = 0;
    engine_lc lc = {0};
    device_request drq = {0};
    args a = {argc, argv, 1, NULL};
    for (; a.i < argc; a.i++) {
        const char *v;
#define VAL() do { if (!(v = take_val(&a))) return TOME_EFLAGS; } while (0)
#define INTF(var, lo, hi) do { long long t_; VAL(); if ((rc = parse_int(argv[a.i - (a.eq ? 0 : 1)], v, lo, hi, &t_))) return rc; var = t_; } while (0)
#define FLTF(var, lo, hi) do { double t_; VAL(); if ((rc = parse_float(argv[a.i - (a.eq ? 0 : 1)], v, lo, hi, &t_))) return rc; var = t_; } while (0)
        if (is_flag(&a, "--model", "-m")) { VAL(); model = v; }
        else if (is_flag(&a, "--ctx-size", "-c")) { VAL(); ctx = v; }
        else if (is_flag(&a, "--batch-size", "-b") || is_flag(&a, "--chunk", NULL)) INTF(n_batch, 1, 1 << 16);
        else if (is_flag(&a, "--threads", "-t")) INTF(n_threads, 1, 1024);
        else if (lc_arg(&a, &lc, &rc)) { if (rc) return rc; }
        else if (!strcmp(argv[a.i], "--json")) json = 1;
        else if (!strcmp(argv[a.i], "-q") || !strcmp(argv[a.i], "--quiet")) quiet = 1;
        else if (device_arg(&a, &drq, &rc)) { if (rc) return rc; }
        else return unknown_flag("plan", argv[a.i]);
#undef VAL
#undef INTF
#undef FLTF
    }
    if (!model) return fail(TOME_EFLAGS, "plan: -m MODEL is required");
    long long n_ctx = 0;
    if (ctx && !strcmp(ctx, "max")) n_ctx = -1;
    else if (ctx && (rc = parse_int("-c", ctx, 1, 1LL << 30, &n_ctx))) return rc;
    if (lc.kv && engine_kv_type(lc.kv) == -2) return fail(TOME_EFLAGS, "plan: --kv: unknown type '%s' (f16, q8, q4, f32)", lc.kv);
    if (lc.sinks > 0 && lc.window <= 0) return fail(TOME_EFLAGS, "plan: --sinks K needs --window W");
    terr e = {0};
    tome_model *m = NULL;
    if ((rc = model_load(&m, model, &e))) return fail_err(&e);
    device_choice dc = {0};
    if ((rc = choose_device(&drq, m->g, lc.kv, NULL, quiet, &dc))) {
        model_free(m);
        return rc;
    }
    lc.gpu = dc.dev;
    engine_params ep = {0};
    ep.n_ctx = (int)n_ctx;
    ep.n_batch = (int)n_batch;
    ep.n_threads = (int)n_threads;
    engine_plan pl;
    if ((rc = engine_apply_overrides(m, &lc, &e)) || (rc = engine_make_plan(m, &ep, &lc, &pl, &e))) {
        model_free(m);
        device_release(&dc);
        return fail_err(&e);
    }
    rope_config rc_;
    rope_config_from_hparams(&rc_, &m->hp, m->rope_freqs, m->rope_long, m->rope_short);
    const char *kvn = engine_kv_name(pl.kv_type);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:i, s:i, s:s, s:f, s:f, s:i}",
                              "model", model, "device", pl.gpu ? "gpu" : "cpu", "mem_total", (json_int_t)pl.mem_total,
                              "n_ctx", pl.n_ctx, "kv", kvn, "weight_bytes", (json_int_t)pl.weight_bytes,
                              "kv_bytes_per_token", (json_int_t)pl.kv_token_bytes, "kv_bytes", (json_int_t)pl.kv_bytes,
                              "scratch_bytes", (json_int_t)pl.scratch_bytes, "total_bytes", (json_int_t)pl.total_bytes,
                              "mem_available", (json_int_t)pl.mem_available, "fits", pl.fits, "window", pl.window,
                              "sinks", pl.sinks, "rope_scaling", rope_scaling_name(m->hp.rope_scaling), "rope_factor",
                              (double)rc_.factor, "rope_base", rc_.base, "rope_orig_ctx", rc_.orig_ctx);
        char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (js) puts(js);
        free(js);
        json_decref(o);
    } else {
        const double Mi = 1048576.0;
        printf("model:          %s\n", model);
        printf("context:        %d positions%s, chunk %d\n", pl.n_ctx, n_ctx < 0 ? " (largest that fits)" : "",
               pl.n_batch);
        printf("rope:           %s, base %g, factor %g, original context %d\n", rope_scaling_name(m->hp.rope_scaling),
               rc_.base, rc_.factor, rc_.orig_ctx);
        if (pl.window) printf("attention:      window %d, sinks %d%s\n", pl.window, pl.sinks, pl.streaming ? " (streaming)" : "");
        printf("weights:        %llu bytes (%.1f MiB)\n", (unsigned long long)pl.weight_bytes, pl.weight_bytes / Mi);
        printf("kv per token:   %llu bytes (%.2f KiB, %s)\n", (unsigned long long)pl.kv_token_bytes,
               pl.kv_token_bytes / 1024.0, kvn);
        printf("kv total:       %llu bytes (%.1f MiB)\n", (unsigned long long)pl.kv_bytes, pl.kv_bytes / Mi);
        printf("scratch:        %llu bytes (%.1f MiB)\n", (unsigned long long)pl.scratch_bytes, pl.scratch_bytes / Mi);
        printf("total:          %llu bytes (%.1f MiB)\n", (unsigned long long)pl.total_bytes, pl.total_bytes / Mi);
        if (pl.gpu)
            printf("available:      %llu bytes (%.1f MiB free of %.1f MiB on GPU %d, %s)\n",
                   (unsigned long long)pl.mem_available, pl.mem_available / Mi, pl.mem_total / Mi, dc.ordinal,
                   dc.dev->name);
        else if (pl.mem_available)
            printf("available:      %llu bytes (%.1f MiB, MemAvailable)\n", (unsigned long long)pl.mem_available,
                   pl.mem_available / Mi);
        else
            printf("available:      unknown (no /proc/meminfo)\n");
        printf("fits:           %s\n", pl.fits ? "yes" : "no");
    }
    model_free(m);
    device_release(&dc);
    return fflush(stdout) == 0 ? TOME_OK : fail(TOME_EINPUT, "plan: cannot write the output");
}

/* Loads the tokenizer named by -m MODEL.gguf or --tokenizer DIR (exactly one of them);
 * returns 0 or the exit code (message printed). */
static int tokenize_load(const char *cmd, const char *model, const char *dir, tokenizer **tok) {
    terr e = {0};
    *tok = NULL;
    if (!!model == !!dir) return fail(TOME_EFLAGS, "%s: give exactly one of -m MODEL and --tokenizer DIR", cmd);
    if (dir) return tok_load_hf(tok, dir, &e) ? fail_err(&e) : 0;
    gguf *g;
    if (gguf_open(&g, model, &e)) return fail_err(&e);
    int rc = tok_load_gguf(tok, g, &e);
    gguf_close(g);
    return rc ? fail_err(&e) : 0;
}

/* Writes bytes with C-style escapes for backslash, control bytes and invalid UTF-8 (so each
 * piece stays on one line and shows exactly what it holds). */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') { fputs("\\\\", stdout); i++; continue; }
        if (c == '\n') { fputs("\\n", stdout); i++; continue; }
        if (c == '\t') { fputs("\\t", stdout); i++; continue; }
        if (c == '\r') { fputs("\\r", stdout); i++; continue; }
        if (c < 0x20 || c == 0x7F) { printf("\\x%02x", c); i++; continue; }
        if (c < 0x80) { putchar(c); i++; continue; }
        size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (i + len <= n && tutf8_invalid_offset(s + i, len) < 0) { fwrite(s + i, 1, len, stdout); i += len; }
        else { printf("\\x%02x", c); i++; }
    }
}

static int cmd_tokenize(int argc, char **argv) {
    args a = {argc, argv, 1, NULL};
    const char *model = NULL, *dir = NULL, *prompt = NULL, *file = NULL;
    int pieces = 0, flags = 0;
    for (; a.i < argc; a.i++) {
        if (is_flag(&a, "--model", "-m")) { if (!(model = take_val(&a))) return TOME_EFLAGS; }
        else if (is_flag(&a, "--tokenizer", NULL)) { if (!(dir = take_val(&a))) return TOME_EFLAGS; }
        else if (is_flag(&a, "--prompt", "-p")) { if (!(prompt = take_val(&a))) return TOME_EFLAGS; }
        else if (is_flag(&a, "--file", "-f")) { if (!(file = take_val(&a))) return TOME_EFLAGS; }
        else if (!strcmp(argv[a.i], "--ids")) pieces = 0;
        else if (!strcmp(argv[a.i], "--pieces")) pieces = 1;
        else if (!strcmp(argv[a.i], "--special")) flags |= TOK_PARSE_SPECIAL;
        else if (!strcmp(argv[a.i], "--bos")) flags |= TOK_ADD_BOS;
        else if (!strcmp(argv[a.i], "--no-bos")) flags &= ~TOK_ADD_BOS;
        else return unknown_flag("tokenize", argv[a.i]);
    }
    if (prompt && file) return fail(TOME_EFLAGS, "tokenize: give -p TEXT or -f FILE, not both");
    if (!model && !dir) return fail(TOME_EFLAGS, "tokenize: needs -m MODEL.gguf or --tokenizer DIR");
    tokenizer *tok;
    int rc = tokenize_load("tokenize", model, dir, &tok);
    if (rc) return rc;
    terr e = {0};
    char *owned = NULL;
    size_t len;
    const char *src = prompt ? "-p" : file ? file : "stdin";
    if (prompt) len = strlen(prompt);
    else if (!(owned = tread_file(file ? file : "-", &len, &e))) { tok_free(tok); return fail_err(&e); }
    int32_t *ids;
    size_t n;
    rc = tok_encode(tok, prompt ? prompt : owned, len, flags, &ids, &n, &e);
    free(owned);
    if (rc) {
        tok_free(tok);
        return fail(rc, "%s: %s", src, e.msg);
    }
    if (!pieces) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        size_t cap = tok_max_token_len(tok) + 1;
        char *buf = malloc(cap);
        for (size_t i = 0; buf && i < n; i++) {
            size_t m = tok_decode_token(tok, ids[i], buf, cap);
            printf("%d\t", ids[i]);
            print_escaped(buf, m < cap ? m : cap);
            putchar('\n');
        }
        free(buf);
    }
    free(ids);
    tok_free(tok);
    return fflush(stdout) == 0 ? TOME_OK : fail(TOME_EINPUT, "tokenize: cannot write the output");
}

/* Seconds of CPU time used by this thread (a fairer "one core" clock than wall time on a
 * shared machine). */
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* tome bench --tokenize FILE (-m MODEL | --tokenizer DIR) [--special]: encoding speed on
 * one core. Encodes the whole file repeatedly for about two seconds and reports the best run,
 * by thread CPU time and by wall time. */
static int bench_tokenize(int argc, char **argv) {
    args a = {argc, argv, 1, NULL};
    const char *model = NULL, *dir = NULL, *file = NULL;
    int flags = 0;
    for (; a.i < argc; a.i++) {
        if (is_flag(&a, "--tokenize", NULL)) { if (!(file = take_val(&a))) return TOME_EFLAGS; }
        else if (is_flag(&a, "--model", "-m")) { if (!(model = take_val(&a))) return TOME_EFLAGS; }
        else if (is_flag(&a, "--tokenizer", NULL)) { if (!(dir = take_val(&a))) return TOME_EFLAGS; }
        else if (!strcmp(argv[a.i], "--special")) flags |= TOK_PARSE_SPECIAL;
        else return unknown_flag("bench --tokenize", argv[a.i]);
    }
    tokenizer *tok;
    double t0 = tnow();
    int rc = tokenize_load("bench", model, dir, &tok);
    if (rc) return rc;
    double t_load = tnow() - t0;
    terr e = {0};
    size_t len;
    char *text = tread_file(file, &len, &e);
    if (!text) { tok_free(tok); return fail_err(&e); }
    double best_cpu = 1e30, best_wall = 1e30, spent = 0;
    size_t n = 0;
    for (int rep = 0; rep < 50 && (rep < 2 || spent < 2.0); rep++) {
        int32_t *ids;
        double w1 = tnow(), c1 = thread_cpu_s();
        rc = tok_encode(tok, text, len, flags, &ids, &n, &e);
        double cpu = thread_cpu_s() - c1, wall = tnow() - w1;
        if (rc) { free(text); tok_free(tok); return fail(rc, "%s: %s", file, e.msg); }
        free(ids);
        spent += wall;
        if (cpu < best_cpu) best_cpu = cpu;
        if (wall < best_wall) best_wall = wall;
    }
    if (best_cpu <= 0) best_cpu = 1e-9;
    printf("tokenize: %s: %zu bytes -> %zu tokens (%.2f bytes/token); best run %.3f s CPU = %.1f MB/s "
           "on one core (wall %.3f s = %.1f MB/s; tokenizer load %.2f s)\n",
           file, len, n, n ? (double)len / (double)n : 0.0, best_cpu, (double)len / best_cpu / 1e6,
           best_wall, (double)len / best_wall / 1e6, t_load);
    free(text);
    tok_free(tok);
    return TOME_OK;
}

static int cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--tokenize", 10) && (!argv[i][10] || argv[i][10] == '=')) return bench_tokenize(argc, argv);
    const char *model = NULL, *cpu_kern = NULL;
    long long n_prompt = 512, n_gen = 128, n_threads = 0, reps = 3, n_batch = 64, bw_mib = 1024, depth = 0;
    int json = 0, exact = 0, quiet = 0, rc = 0, no_graphs = 0;
    device_request drq = {0};
    args a = {argc, argv, 1, NULL};
    for (; a.i < argc; a.i++) {
        const char *v;
#define VAL() do { if (!(v = take_val(&a))) return TOME_EFLAGS; } while (0)
#define INTF(var, lo, hi) do { long long t_; VAL(); if (parse_int(argv[a.i - (a.eq ? 0 : 1)], v, lo, hi, &t_)) return TOME_EFLAGS; var = t_; } while (0)
        if (is_flag(&a, "--model", "-m")) { VAL(); model = v; }
        else if (is_flag(&a, "--n-prompt", "-p")) INTF(n_prompt, 0, 1 << 20);
        else if (is_flag(&a, "--n-gen", "-n")) INTF(n_gen, 0, 1 << 20);
        else if (is_flag(&a, "--n-depth", "-d")) INTF(depth, 0, 1 << 24);
        else if (is_flag(&a, "--threads", "-t")) INTF(n_threads, 1, 1024);
        else if (is_flag(&a, "--repetitions", "-r")) INTF(reps, 1, 1000);
        else if (is_flag(&a, "--batch-size", "-b")) INTF(n_batch, 1, 1 << 16);
        else if (is_flag(&a, "--bw-mib", NULL)) INTF(bw_mib, 0, 1 << 20);
        else if (is_flag(&a, "--cpu-kernels", NULL)) { VAL(); cpu_kern = v; }
        else if (!strcmp(argv[a.i], "--json")) json = 1;
        else if (!strcmp(argv[a.i], "--exact")) exact = 1;
        else if (!strcmp(argv[a.i], "--no-graphs")) no_graphs = 1;
        else if (!strcmp(argv[a.i], "-q") || !strcmp(argv[a.i], "--quiet")) quiet = 1;
        else if (device_arg(&a, &drq, &rc)) { if (rc) return rc; }
        else return unknown_flag("bench", argv[a.i]);
#undef VAL
#undef INTF
    }
    if (!model) return fail(TOME_EFLAGS, "bench: -m MODEL is required");
    if (n_prompt == 0 && n_gen == 0) return fail(TOME_EFLAGS, "bench: nothing to measure (-p 0 and -n 0)");
    const int threads = n_threads > 0 ? (int)n_threads : (int)TOME_MAX(1, sysconf(_SC_NPROCESSORS_ONLN));
    terr e = {0};
    engine *en = NULL;
    /* one sequence of the longer test after `depth` context tokens: both tests start from an
     * empty cache and fill it to the depth first, as in llama-bench */
    engine_params ep = {(int)(depth + TOME_MAX(n_prompt, n_gen)), (int)n_batch, threads, exact, cpu_kern};
    device_choice dc = {0};
    tome_model *bm = NULL;
    if ((rc = model_load(&bm, model, &e))) return fail_err(&e);
    /* a CPU measurement asked for (kernels, or threads without --gpu) keeps the default on the CPU */
    char cset[96] = "";
    if (cpu_kern) snprintf(cset, sizeof cset, "--cpu-kernels %.80s", cpu_kern);
    else if (n_threads > 0 && drq.kind == DEVICE_AUTO) snprintf(cset, sizeof cset, "-t %lld", n_threads);
    if ((rc = choose_device(&drq, bm->g, NULL, cset[0] ? cset : NULL, quiet, &dc))) { model_free(bm); return rc; }
    engine_lc blc = {0};
    blc.gpu = dc.dev;
    blc.no_graphs = no_graphs;
    if (dc.gpu && !quiet && isatty(2)) { blc.on_upload = upload_bar; blc.upload_ud = &dc; }
    if (engine_from_model_lc(&en, bm, &ep, &blc, &e)) { device_release(&dc); return fail_err(&e); }
    bench_result r;
    rc = bench_run(en, (int)n_prompt, (int)n_gen, (int)depth, (int)reps, &r, &e);
    if (rc) { engine_close(en); device_release(&dc); return fail_err(&e); }
    const uint64_t wb = bench_weight_bytes(en->m);
    const int nb = en->n_batch;
    char graphs[160] = ""; /* GPU: whether decode steps ran as CUDA graph replays */
    if (dc.gpu) {
        uint64_t gsteps = 0, greps = 0;
        const char *goff = NULL;
        cuda_backend_graph_stats(en->be, &gsteps, &greps, &goff);
        if (goff) snprintf(graphs, sizeof graphs, "off (%s)", goff);
        else snprintf(graphs, sizeof graphs, "on (%llu of %llu decode steps replayed as one CUDA graph)",
                      (unsigned long long)greps, (unsigned long long)gsteps);
    }
    engine_close(en);
    char where[192];
    if (dc.gpu) snprintf(where, sizeof where, "GPU %d (%s)", dc.ordinal, dc.dev->name);
    else snprintf(where, sizeof where, "%d threads", threads);
    device_release(&dc);
    /* measured after the runs (not before), so its 1 GiB does not push the weights out of the
     * cache ahead of the timed forwards; --bw-mib 0 skips it (and a GPU run: host RAM is not
     * what it reads) */
    double bps = 0;
    if (dc.gpu) bw_mib = 0;
    if (bw_mib > 0 && bench_read_bandwidth((size_t)bw_mib << 20, threads, 5, &bps, &e)) return fail_err(&e);
    /* the means are llama-bench's statistic (mean of the repetitions' rates), so that
     * tools/compare_llamacpp.sh compares like with like */
    const double pp = r.pp_best_s > 0 ? n_prompt / r.pp_best_s : 0, pp_mean = r.pp_rate_mean;
    const double tg = r.tg_best_s > 0 ? n_gen / r.tg_best_s : 0, tg_mean = r.tg_rate_mean;
    const double wgbs = (double)wb * tg / 1e9;      /* weight GB/s while decoding */
    const double frac = bps > 0 ? wgbs * 1e9 / bps : 0;
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f}", "model",
                              model, "device", dc.gpu ? where : "cpu", "threads", threads, "n_prompt", (int)n_prompt,
                              "n_gen", (int)n_gen, "reps",
                              (int)reps, "n_batch", nb, "prefill_tok_s", pp, "prefill_tok_s_mean", pp_mean,
                              "decode_tok_s", tg, "decode_tok_s_mean", tg_mean, "decode_ms_per_token",
                              tg > 0 ? 1000.0 / tg : 0.0, "weight_bytes_per_token", (json_int_t)wb,
                              "decode_weight_gb_s", wgbs, "read_bw_gb_s", bps / 1e9, "read_bw_fraction", frac);
        if (o) json_object_set_new(o, "n_depth", json_integer((json_int_t)depth));
        if (o && graphs[0]) json_object_set_new(o, "cuda_graphs", json_string(graphs));
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s) puts(s);
        free(s);
        json_decref(o);
        if (!s) return fail(TOME_ERESOURCE, "out of memory");
    } else {
        printf("bench: %s, %s, prefill batch %d, best of %d (mean in brackets), both tests from an empty cache", model,
               where, nb, (int)reps);
        if (depth > 0) printf(" filled with %lld context tokens first (untimed)", depth);
        printf("\n");
        if (n_prompt > 0)
            printf("prefill: %d tokens: %.1f tok/s (%.1f)\n", (int)n_prompt, pp, pp_mean);
        if (n_gen > 0) {
            printf("decode:  %d tokens: %.1f tok/s (%.1f), %.2f ms/token\n", (int)n_gen, tg, tg_mean,
                   tg > 0 ? 1000.0 / tg : 0.0);
            if (graphs[0]) printf("graphs:  %s\n", graphs);
            printf("weights: %.1f MB read per decode token = %.1f GB/s", (double)wb / 1e6, wgbs);
            if (bps > 0)
                printf(" = %.0f%% of the measured read bandwidth %.1f GB/s (%d threads, %lld MiB, best of 5)", 100 * frac,
                       bps / 1e9, threads, bw_mib);
            printf("\n");
        }
    }
    return fflush(stdout) == 0 ? TOME_OK : fail(TOME_EINPUT, "bench: cannot write the output");
}

static const char *k_help =
    "tome — long-context inference for Llama-family GGUF models\n"
    "\n"
    "usage: tome COMMAND [flags]\n"
    "\n"
    "commands:\n"
    "  run       -m MODEL [-p QUESTION] [-f FILE]...   answer a question about documents\n"
    "            documents: -f files in order, then piped stdin (no -p/-f: stdin is the prompt)\n"
    "            -n N (256; -1 = to the context end)  -c CTX (model's, capped)  -t THREADS (all)\n"
    "            -b | --chunk N (prefill chunk, 64)  --temp F (0.8; 0 = greedy)  --top-k N (40)\n"
    "            --top-p F (0.95)  --min-p F (0.05)  --repeat-penalty F (1)  --repeat-last-n N (64)\n"
    "            --seed N  --system TEXT  --chat | --no-chat  --chat-template NAME  --think\n"
    "            --json  -q  --logits FILE (f32 of the last prompt position)  --print-ids\n"
    "            --exact (float activations; f32 KV unless --kv)  --bos | --no-bos  --dump-prompt\n"
    "            --ignore-eos\n"
    "            --cpu-kernels scalar|avx2|avx512 (default: the best this CPU runs)\n"
    "            --kv f16|q8|q4|f32 (paged KV cache type, f16; f32 = contiguous float reference)\n"
    "            --window W (attention window; default the model's)  --sinks K (with --window:\n"
    "            keep K sink tokens + the last W and generate past -c, StreamingLLM)\n"
    "            --rope-scaling none|linear|ntk|dynamic|yarn|longrope|llama3  --rope-scale F\n"
    "            --rope-base F  --rope-orig-ctx N   (override the model's RoPE metadata)\n"
    "            --gpu[=N] (require GPU N, default 0)  --cpu (force the CPU); run, plan and bench\n"
    "            use the GPU when one is usable, else the CPU with a one-line notice (-q: none)\n"
    "  plan      -m MODEL [-c CTX|max] [--kv TYPE] [-b N] [-t N] [--window W --sinks K] [--rope-* ...] [--json]\n"
    "            [--gpu[=N] | --cpu] [-q]\n"
    "            memory plan: weights, KV per token and in total, scratch, fits in MemAvailable\n"
    "            (on a GPU: in its free memory, total shown)\n"
    "  info      MODEL.gguf [--json]                   what a GGUF file holds, whether tome runs it\n"
    "  tokenize  (-m MODEL | --tokenizer DIR) [-p TEXT | -f FILE]   (stdin without -p/-f)\n"
    "            [--ids | --pieces] [--special] [--bos | --no-bos]  ids on one line, no BOS by default\n"
    "            bench --tokenize FILE (-m MODEL | --tokenizer DIR): tokenizer MB/s on one core\n"
    "  bench     -m MODEL [-p 512] [-n 128] [-d 0] [-t N] [-r 3] [-b 64] [--json] [--bw-mib 1024]\n"
    "            [--exact] [--cpu-kernels scalar|avx2|avx512] [--gpu[=N] | --cpu] [--no-graphs] [-q]\n"
    "                                      prefill / decode tok/s, weight GB/s vs read bandwidth\n"
    "                                      (--no-graphs: GPU decode steps as plain launches;\n"
    "                                      -d D: both tests after D context tokens, llama-bench's -d)\n"
    "\n"
    "exit codes: 0 ok; 1 bad flags; 2 invalid input (missing, unreadable or malformed file,\n"
    "  bad UTF-8, prompt longer than the context, bad JSONL line); 3 a valid model tome cannot\n"
    "  run (unsupported arch or tensor type); 4 resources (RAM/VRAM, requested GPU absent);\n"
    "  130 interrupted.\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(k_help, stderr);
        return TOME_EFLAGS;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(k_help, stdout);
        return TOME_OK;
    }
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        {"info", cmd_info}, {"run", cmd_run}, {"plan", cmd_plan}, {"tokenize", cmd_tokenize}, {"bench", cmd_bench},
    };
    /* values that may be any text (a prompt "-h", a file named "--help") are not help requests */
    static const char *const k_text_flags[] = {"-p", "--prompt", "--system", "-f", "--file", "-m", "--model",
                                               "--tokenizer", "--tokenize", "--logits"};
    for (size_t i = 0; i < TOME_ARRAY_LEN(cmds); i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        /* tome CMD --help: the one help page (it covers every command), as tome --help */
        for (int j = 2; j < argc; j++) {
            if (strcmp(argv[j], "--help") && strcmp(argv[j], "-h")) continue;
            int is_value = 0;
            for (size_t k = 0; k < TOME_ARRAY_LEN(k_text_flags); k++) is_value |= !strcmp(argv[j - 1], k_text_flags[k]);
            if (!is_value) {
                fputs(k_help, stdout);
                return TOME_OK;
            }
        }
        return cmds[i].fn(argc - 1, argv + 1);
    }
    return fail(TOME_EFLAGS, "unknown command '%s' (see tome --help)", cmd);
}

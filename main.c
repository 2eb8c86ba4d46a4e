/* main.c — tome's command line: parses flags, calls into lib/, turns errors into exit codes.
 *
 * Nothing below lib/ exits; every command here returns TOME_OK or a TOME_E* code and has
 * printed the one-line error by then. Each command has its own cmd_* function with its
 * flag parsing; shared flag helpers are at the top.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

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

__attribute__((unused)) static int fail_err(const terr *e) { return fail(e->code ? e->code : TOME_EINPUT, "%s", e->msg); }

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

/* ---- commands ------------------------------------------------------------------------- */

static int cmd_info(int argc, char **argv) {
    (void)argc; (void)argv;
    return fail(TOME_EFLAGS, "info: not implemented yet");
}

static int cmd_run(int argc, char **argv) {
    (void)argc; (void)argv;
    return fail(TOME_EFLAGS, "run: not implemented yet");
}

static int cmd_tokenize(int argc, char **argv) {
    (void)argc; (void)argv;
    return fail(TOME_EFLAGS, "tokenize: not implemented yet");
}

static int cmd_bench(int argc, char **argv) {
    (void)argc; (void)argv;
    return fail(TOME_EFLAGS, "bench: not implemented yet");
}

static const char *k_help =
    "tome — long-context inference for Llama-family GGUF models\n"
    "\n"
    "usage: tome COMMAND [flags]\n"
    "\n"
    "commands:\n"
    "  run       -m MODEL [-p QUESTION] [-f FILE]...   answer a question about documents\n"
    "  info      MODEL.gguf [--json]                   what a GGUF file holds, whether tome runs it\n"
    "  tokenize  (-m MODEL | --tokenizer DIR) [-p TEXT | -f FILE]\n"
    "  bench     -m MODEL [-p 512] [-n 128] [-t N]     prefill / decode speed\n"
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
        {"info", cmd_info}, {"run", cmd_run}, {"tokenize", cmd_tokenize}, {"bench", cmd_bench},
    };
    for (size_t i = 0; i < TOME_ARRAY_LEN(cmds); i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    return fail(TOME_EFLAGS, "unknown command '%s' (see tome --help)", cmd);
}

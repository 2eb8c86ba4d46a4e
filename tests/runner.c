/* runner.c — runs the registered tests: `tests [-l] [-j N] [FILTER...]`.
 *
 * A FILTER is a substring of a test name (or of its file name); with none, every test runs.
 * Each test is forked so that a crash or abort counts as that test failing. The last line
 * is `N passed, N failed, N skipped`; the exit status is 1 if anything failed.
 */
#include "test.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static ttest *g_tests; /* registration list: the runner's own state, filled before main */
static char g_tmpdir[256];

void tt_register(ttest *t) {
    t->next = g_tests;
    g_tests = t;
}

void tt_fail(tctx *T, const char *file, int line, const char *fmt, ...) {
    T->failures++;
    if (T->failures > 20) return; /* keep logs readable */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
}

void tt_skip(tctx *T, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(T->skip_reason, sizeof T->skip_reason, fmt, ap);
    va_end(ap);
    T->skipped = 1;
}

char *tdata_path(const char *rel) {
    const char *root = getenv("TOME_DATA");
    if (!root || !*root) root = "../shared";
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", root, rel);
    struct stat st;
    if (stat(p, &st) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

const char *ttmpdir(void) { return g_tmpdir; }

static int matches(const ttest *t, int argc, char **argv, int first) {
    if (first >= argc) return 1;
    for (int i = first; i < argc; i++)
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i])) return 1;
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Runs one test in a child; returns 0 pass, 1 fail, 2 skip (reason copied to skip_reason). */
static int run_one(ttest *t, char *skip_reason, size_t cap) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    fflush(stdout);
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/tome-test-%d-%s", (int)getpid(), t->name);
    mkdir(g_tmpdir, 0700);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        tctx T = {.name = t->name};
        t->fn(&T);
        fflush(stdout);
        int r = T.failures ? 1 : T.skipped ? 2 : 0;
        char msg[300];
        int n = snprintf(msg, sizeof msg, "%d%s", r, T.skip_reason);
        if (write(pipefd[1], msg, (size_t)n) < 0) _exit(3);
        _exit(0);
    }
    close(pipefd[1]);
    char msg[300] = {0};
    ssize_t got = 0, k;
    while ((k = read(pipefd[0], msg + got, sizeof msg - 1 - (size_t)got)) > 0) got += k;
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) { /* best effort */ }
    if (got <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status)) printf("  crashed: signal %d\n", WTERMSIG(status));
        else printf("  exited abnormally (status %d)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 1;
    }
    if (msg[0] == '2') snprintf(skip_reason, cap, "%s", msg + 1);
    return msg[0] - '0';
}

int main(int argc, char **argv) {
    int list = 0, first = 1;
    if (argc > 1 && strcmp(argv[1], "-l") == 0) { list = 1; first = 2; }
    /* registration order is reversed; restore file order for readable logs */
    ttest *rev = NULL;
    while (g_tests) { ttest *n = g_tests->next; g_tests->next = rev; rev = g_tests; g_tests = n; }
    g_tests = rev;
    int pass = 0, fail = 0, skip = 0;
    for (ttest *t = g_tests; t; t = t->next) {
        if (!matches(t, argc, argv, first)) continue;
        if (list) { printf("%s\t%s\n", t->name, t->file); continue; }
        double t0 = now();
        char reason[300] = "";
        int r = run_one(t, reason, sizeof reason);
        double dt = now() - t0;
        if (r == 0) { pass++; printf("PASS %s (%.2fs)\n", t->name, dt); }
        else if (r == 2) { skip++; printf("SKIP %s: %s\n", t->name, reason); }
        else { fail++; printf("FAIL %s (%.2fs)\n", t->name, dt); }
        fflush(stdout);
    }
    if (!list) printf("%d passed, %d failed, %d skipped\n", pass, fail, skip);
    return fail ? 1 : 0;
}

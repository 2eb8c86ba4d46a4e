/* test.h — the unit-test harness: tests register themselves, one runner binary runs them.
 *
 *   TEST(gguf_roundtrip) { ... CHECK(x == 1); REQUIRE(p != NULL); ... }
 *
 * CHECK records a failure and goes on; REQUIRE records one and ends the test. SKIP ends the
 * test as skipped with a reason (missing test data, no GPU). Each test runs in its own
 * forked process, so a crash fails that test alone. Test data comes from $TOME_DATA
 * (default ../shared); tests never write there.
 */
#ifndef TOME_TEST_H
#define TOME_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tctx {
    const char *name;
    int failures;
    int skipped;
    char skip_reason[256];
} tctx;

typedef struct ttest {
    const char *name;
    const char *file;
    void (*fn)(tctx *T);
    struct ttest *next;
} ttest;

void tt_register(ttest *t);
void tt_fail(tctx *T, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void tt_skip(tctx *T, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Path of a file under $TOME_DATA (heap, caller frees), or NULL if it does not exist. */
char *tdata_path(const char *rel);
/* A fresh temporary directory for this test (removed by the runner afterwards). */
const char *ttmpdir(void);

#define TEST(fname)                                                                     \
    static void fname(tctx *T);                                                         \
    __attribute__((constructor)) static void tt_reg_##fname(void) {                     \
        static ttest t = {#fname, __FILE__, fname, NULL};                               \
        tt_register(&t);                                                                \
    }                                                                                   \
    static void fname(tctx *T)

#define CHECK(c)                                                                        \
    do { if (!(c)) tt_fail(T, __FILE__, __LINE__, "%s", #c); } while (0)
#define CHECKF(c, ...)                                                                  \
    do { if (!(c)) tt_fail(T, __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(c)                                                                      \
    do { if (!(c)) { tt_fail(T, __FILE__, __LINE__, "%s", #c); return; } } while (0)
#define REQUIREF(c, ...)                                                                \
    do { if (!(c)) { tt_fail(T, __FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
/* |a - b| <= tol, with NaN failing. */
#define CHECK_NEAR(a, b, tol)                                                           \
    do {                                                                                \
        double tt_a = (double)(a), tt_b = (double)(b);                                  \
        if (!(fabs(tt_a - tt_b) <= (double)(tol)))                                      \
            tt_fail(T, __FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g",  \
                    #a, tt_a, #b, tt_b, fabs(tt_a - tt_b), (double)(tol));              \
    } while (0)
#define SKIP(...) do { tt_skip(T, __VA_ARGS__); return; } while (0)
/* Sets `var` to the data file's path, or skips the test naming what is missing. */
#define DATA_OR_SKIP(var, rel)                                                          \
    char *var = tdata_path(rel);                                                        \
    if (!var) SKIP("test data %s not found under TOME_DATA", rel)

#endif

/* util.h — errors, exit codes, logging, timers, small helpers shared by all of lib/.
 *
 * Error model: library functions never exit. They return 0 on success or one of the
 * TOME_E* exit codes below, and describe the failure in a caller-owned `terr` (one line,
 * naming the file / offset / flag at fault). Only main.c turns that into an exit status.
 */
#ifndef TOME_UTIL_H
#define TOME_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes (DEVELOPERS.md conventions). */
enum {
    TOME_OK = 0,
    TOME_EFLAGS = 1,       /* bad command-line flags */
    TOME_EINPUT = 2,       /* missing / unreadable / malformed input, bad UTF-8, prompt too long */
    TOME_EUNSUPPORTED = 3, /* a valid model tome cannot run (arch, tensor type) */
    TOME_ERESOURCE = 4,    /* does not fit in RAM/VRAM, requested GPU absent */
    TOME_EINTR = 130,      /* interrupted by the user (after stats were printed) */
};

/* A caller-owned error record: code is one of TOME_E*, msg one line without a newline. */
typedef struct terr {
    int code;
    char msg[1024];
} terr;

/* Records code + printf-style message in *e (which may be NULL) and returns code, so
 * `return terr_set(e, TOME_EINPUT, "%s: bad magic", path);` reads naturally. */
int terr_set(terr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic wall-clock time in seconds. */
double tnow(void);

/* malloc/calloc/realloc that return NULL on failure like the originals, but refuse sizes
 * whose computation overflowed (n * size). Callers check the result. */
void *tcalloc(size_t n, size_t size);
void *tmalloc_array(size_t n, size_t size);

/* Reads a whole file (or "-" for stdin) into a NUL-terminated heap buffer; *len gets the size
 * without the NUL. Returns NULL and fills e (TOME_EINPUT, naming the path) on failure. */
char *tread_file(const char *path, size_t *len, terr *e);

/* Checks that buf[0..len) is valid UTF-8. Returns -1 when valid, else the byte offset of the
 * first invalid sequence. */
int64_t tutf8_invalid_offset(const char *buf, size_t len);

/* IEEE half / bfloat16 <-> float, exact (round to nearest even on the way down). */
float tf16_to_f32(uint16_t h);
uint16_t tf32_to_f16(float f);
float tbf16_to_f32(uint16_t h);
uint16_t tf32_to_bf16(float f);

/* Small deterministic RNG (xorshift64*), for tests, tools and the sampler. */
typedef struct trng { uint64_t s; } trng;
void trng_seed(trng *r, uint64_t seed);
uint64_t trng_u64(trng *r);
float trng_f32(trng *r);                /* uniform in [0, 1) */
float trng_normal(trng *r);             /* standard normal */

#define TOME_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TOME_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TOME_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif

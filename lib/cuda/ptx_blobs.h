/* ptx_blobs.h — the PTX modules embedded into the binary by tools/ptx_embed.sh.
 *
 * One entry per ptx/NAME.ptx: the PTX text (NUL-terminated; the driver JITs it on GPUs with
 * no matching cubin) and, when ptxas was present at build time, cubins for sm_80 and sm_90.
 * The table ends with an entry whose name is NULL. */
#ifndef TOME_PTX_BLOBS_H
#define TOME_PTX_BLOBS_H

#include <stddef.h>

typedef struct tome_ptx_blob {
    const char *name;
    const char *ptx;
    const unsigned char *cubin_sm80;
    size_t cubin_sm80_len;
    const unsigned char *cubin_sm90;
    size_t cubin_sm90_len;
} tome_ptx_blob;

extern const tome_ptx_blob tome_ptx_blobs[];
extern const int tome_ptx_blob_count;
extern const int tome_ptx_assembled; /* 1 if ptxas assembled the cubins at build time */

#endif

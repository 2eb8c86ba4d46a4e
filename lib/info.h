/* info.h — `tome info`: what a GGUF file holds and whether tome can run it.
 *
 * The facts (version, architecture, hyper-parameters, tokenizer, bytes per tensor type,
 * runnable or why not) are gathered once into a tome_info and then written either as aligned
 * text or as one JSON object with the same facts. Works for every file gguf_open accepts:
 * unknown architectures and vocabulary-only files are described, not refused.
 */
#ifndef TOME_INFO_H
#define TOME_INFO_H

#include <stdint.h>
#include <stdio.h>

#include "arch.h"
#include "gguf.h"

typedef struct tome_info_type {
    uint32_t type;  /* GGML_TYPE_* */
    uint64_t count; /* tensors of this type */
    uint64_t elems; /* their elements */
    uint64_t bytes; /* their bytes in the file */
} tome_info_type;

typedef struct tome_info {
    const gguf *g;            /* borrowed */
    tome_hparams hp;          /* whatever hparams_load could read */
    int hp_rc;                /* its return code (0, TOME_EINPUT, TOME_EUNSUPPORTED) */
    char name[128];           /* general.name, "" if absent */
    char tok_model[64];       /* tokenizer.ggml.model, "" if absent */
    char tok_pre[64];         /* tokenizer.ggml.pre, "" if absent */
    int64_t n_tokens;         /* len(tokenizer.ggml.tokens), -1 if absent */
    int64_t bos, eos;         /* token ids, -1 if absent */
    int chat_template;        /* tokenizer.chat_template present */
    tome_info_type types[GGML_TYPE_COUNT]; /* first n_types used, in ggml type order */
    int n_types;
    uint64_t weight_bytes;    /* all tensor data */
    int runnable;
    char why[512];            /* reason when !runnable */
} tome_info;

/* Gathers the facts about an open file. Never fails (faults in metadata become why). */
void info_gather(tome_info *in, const gguf *g);

/* Writes the facts to f as text (json = 0) or as one JSON object and a newline (json = 1).
 * Returns 0, or TOME_ERESOURCE if the JSON could not be built (out of memory). */
int info_write(FILE *f, const tome_info *in, int json);

#endif

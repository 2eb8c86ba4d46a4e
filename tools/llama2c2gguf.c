/* llama2c2gguf.c — converts a llama2.c checkpoint and its tokenizer to a GGUF file.
 *
 *   build/llama2c2gguf MODEL.bin TOKENIZER.bin OUT.gguf
 *
 * Input (llama2.c's "legacy" export, read by its run.c):
 *   header   7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
 *            vocab_size < 0 means the classifier is stored separately (untied)
 *   float32 arrays, in order, each row-major with the input dimension contiguous (run.c's
 *   matmul computes W (d,n) @ x (n,), W[i*n + j]) — which is GGUF's layout, ne[0] = n:
 *     token_embedding [vocab][dim], rms_att [L][dim], wq [L][dim][dim], wk [L][kv_dim][dim],
 *     wv [L][kv_dim][dim], wo [L][dim][dim], rms_ffn [L][dim], w1 [L][hidden][dim],
 *     w2 [L][dim][hidden], w3 [L][hidden][dim], rms_final [dim],
 *     freq_cis_real [seq_len][head_size/2], freq_cis_imag (same; skipped), then wcls
 *     [vocab][dim] when untied.
 *   Tokenizer: int32 max_token_length, then per token: float32 score, int32 length, bytes.
 *
 * Output: arch "llama", F32 weights copied bit for bit (w1 -> ffn_gate, w3 -> ffn_up,
 * w2 -> ffn_down). llama2.c rotates adjacent pairs (x[2i], x[2i+1]) in RoPE, which is what
 * llama.cpp's arch "llama" does, so Q and K need no permutation. The tokenizer gets back what
 * llama2.c's exporter changed: ' ' becomes SentencePiece's U+2581 again, and "\n<s>\n" /
 * "\n</s>\n" become "<s>" / "</s>".
 *
 * Limits: little-endian hosts (as llama2.c). The checkpoint is mapped, not read, and its
 * tensors are written straight from the mapping, so any size converts in little memory.
 * Exit codes: 0 ok, 1 bad usage, 2 missing, unreadable, truncated or inconsistent input or an
 * unwritable output.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "util.h"

typedef struct l2c_config {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_config;

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llama2c2gguf: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return code;
}

/* A read-only mapping of a whole file (empty files map to NULL with size 0). */
typedef struct mapped {
    const uint8_t *p;
    uint64_t size;
} mapped;

static int map_file(const char *path, mapped *m) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(TOME_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(TOME_EINPUT, "%s: not a regular file", path);
    }
    m->size = (uint64_t)st.st_size;
    m->p = NULL;
    if (m->size) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return fail(TOME_EINPUT, "%s: cannot map: %s", path, strerror(errno));
        }
        m->p = p;
    }
    close(fd);
    return 0;
}

static void unmap_file(mapped *m) {
    if (m->p) munmap((void *)m->p, (size_t)m->size);
    m->p = NULL;
}

/* The tokenizer, with llama2.c's exporter's changes undone. */
typedef struct vocab {
    int n;
    char **text;      /* n NUL-terminated pieces (heap) */
    uint64_t *len;
    float *score;
    int32_t *type;    /* llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte */
    int bos, eos;
} vocab;

static void vocab_free(vocab *v) {
    for (int i = 0; v->text && i < v->n; i++) free(v->text[i]);
    free(v->text), free(v->len), free(v->score), free(v->type);
}

/* "<0xNN>" with two upper-case hex digits: SentencePiece's byte-fallback pieces. */
static int is_byte_piece(const uint8_t *s, uint64_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    for (int k = 3; k < 5; k++)
        if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'A' && s[k] <= 'F'))) return 0;
    return 1;
}

static int read_vocab(const char *path, const mapped *m, int n, vocab *v) {
    memset(v, 0, sizeof *v);
    v->bos = 1, v->eos = 2;
    v->text = calloc((size_t)n, sizeof *v->text);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->type = calloc((size_t)n, sizeof *v->type);
    v->n = n;
    if (!v->text || !v->len || !v->score || !v->type) return fail(TOME_ERESOURCE, "out of memory");
    uint64_t off = 4;
    if (m->size < 4) return fail(TOME_EINPUT, "%s: truncated: no max_token_length header", path);
    int32_t maxlen;
    memcpy(&maxlen, m->p, 4);
    if (maxlen <= 0) return fail(TOME_EINPUT, "%s: offset 0: max_token_length %d is not positive", path, maxlen);
    for (int i = 0; i < n; i++) {
        if (m->size - off < 8)
            return fail(TOME_EINPUT, "%s: offset %llu: truncated at token %d of %d (the model's vocab_size)", path,
                        (unsigned long long)off, i, n);
        float score;
        int32_t len;
        memcpy(&score, m->p + off, 4);
        memcpy(&len, m->p + off + 4, 4);
        if (len < 0 || len > maxlen)
            return fail(TOME_EINPUT, "%s: offset %llu: token %d has length %d (max_token_length %d)", path,
                        (unsigned long long)(off + 4), i, len, maxlen);
        off += 8;
        if (m->size - off < (uint64_t)len)
            return fail(TOME_EINPUT, "%s: offset %llu: token %d needs %d bytes, the file ends first", path,
                        (unsigned long long)off, i, len);
        const uint8_t *s = m->p + off;
        off += (uint64_t)len;
        v->score[i] = score;
        /* each ' ' becomes 3 bytes of U+2581 */
        char *t = malloc((size_t)len * 3 + 1);
        if (!t) return fail(TOME_ERESOURCE, "out of memory");
        uint64_t k = 0;
        if (len == 5 && !memcmp(s, "\n<s>\n", 5)) {
            strcpy(t, "<s>"), k = 3, v->bos = i, v->type[i] = 3;
        } else if (len == 6 && !memcmp(s, "\n</s>\n", 6)) {
            strcpy(t, "</s>"), k = 4, v->eos = i, v->type[i] = 3;
        } else {
            for (int32_t j = 0; j < len; j++) {
                if (s[j] == ' ') t[k++] = (char)0xE2, t[k++] = (char)0x96, t[k++] = (char)0x81;
                else t[k++] = (char)s[j];
            }
            t[k] = 0;
            if (i == 0 && !strcmp(t, "<unk>")) v->type[i] = 2;
            else if (is_byte_piece(s, (uint64_t)len)) v->type[i] = 6;
            else v->type[i] = 1;
        }
        v->text[i] = t;
        v->len[i] = k;
    }
    return 0;
}

/* Checks the header and that the file holds exactly the arrays it announces. */
static int check_config(const char *path, const mapped *m, l2c_config *c, int *shared) {
    if (m->size < sizeof *c)
        return fail(TOME_EINPUT, "%s: truncated: %llu bytes, the header alone is 28", path, (unsigned long long)m->size);
    memcpy(c, m->p, sizeof *c);
    *shared = c->vocab_size > 0;
    if (c->vocab_size < 0) c->vocab_size = c->vocab_size == INT32_MIN ? 0 : -c->vocab_size; /* no overflow */
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->seq_len <= 0 || c->dim > (1 << 20) || c->hidden_dim > (1 << 22) ||
        c->n_layers > 4096 || c->vocab_size > (1 << 24))
        return fail(TOME_EINPUT,
                    "%s: offset 0: implausible header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, "
                    "vocab %d, seq_len %d): not a llama2.c checkpoint?",
                    path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
        return fail(TOME_EINPUT, "%s: offset 0: dim %d, heads %d, kv heads %d do not divide into even heads", path,
                    c->dim, c->n_heads, c->n_kv_heads);
    const uint64_t D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    const uint64_t V = (uint64_t)c->vocab_size, hs = D / (uint64_t)c->n_heads;
    const uint64_t kv = hs * (uint64_t)c->n_kv_heads;
    uint64_t floats = V * D + L * D + L * D * D + 2 * L * D * kv + L * D * D + L * D + 3 * L * D * H + D +
                      (uint64_t)c->seq_len * hs + (*shared ? 0 : V * D);
    uint64_t want = sizeof *c + floats * 4;
    if (m->size < want)
        return fail(TOME_EINPUT, "%s: truncated: %llu bytes, the header announces %llu", path,
                    (unsigned long long)m->size, (unsigned long long)want);
    if (m->size > want)
        return fail(TOME_EINPUT, "%s: %llu bytes, the header announces %llu: not a legacy llama2.c checkpoint?",
                    path, (unsigned long long)m->size, (unsigned long long)want);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: llama2c2gguf MODEL.bin TOKENIZER.bin OUT.gguf\n"
               "Converts a llama2.c (legacy format) checkpoint and tokenizer to a GGUF file (arch llama, F32).\n"
               "Exit codes: 0 ok, 1 bad usage, 2 missing, malformed or truncated input, unwritable output.\n");
        return 0;
    }
    if (argc != 4) return fail(TOME_EFLAGS, "usage: llama2c2gguf MODEL.bin TOKENIZER.bin OUT.gguf");
    const char *mpath = argv[1], *tpath = argv[2], *out = argv[3];
    mapped mm = {0}, tm = {0};
    vocab voc = {0};
    gguf_writer *w = NULL;
    const float **tensor_data = NULL; /* per tensor, in the order described: into the mapping */
    l2c_config c;
    int shared = 1, rc;
    if ((rc = map_file(mpath, &mm)) || (rc = check_config(mpath, &mm, &c, &shared)) || (rc = map_file(tpath, &tm)) ||
        (rc = read_vocab(tpath, &tm, c.vocab_size, &voc)))
        goto done;

    const int64_t D = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
    const int64_t hs = D / c.n_heads, kv = hs * c.n_kv_heads;
    const float *p = (const float *)(mm.p + sizeof c);
    const float *tok = p;              p += V * D;
    const float *rms_att = p;          p += L * D;
    const float *wq = p;               p += L * D * D;
    const float *wk = p;               p += L * D * kv;
    const float *wv = p;               p += L * D * kv;
    const float *wo = p;               p += L * D * D;
    const float *rms_ffn = p;          p += L * D;
    const float *w1 = p;               p += L * D * H;
    const float *w2 = p;               p += L * H * D;
    const float *w3 = p;               p += L * D * H;
    const float *rms_final = p;        p += D;
    p += (int64_t)c.seq_len * hs;      /* freq_cis_real and freq_cis_imag: run.c recomputes RoPE */
    const float *wcls = shared ? NULL : p;

    w = gguf_w_new();
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_str(w, "general.name", "llama2.c");
    gguf_w_u32(w, "general.file_type", 0); /* all F32 */
    gguf_w_u32(w, "llama.context_length", (uint32_t)c.seq_len);
    gguf_w_u32(w, "llama.embedding_length", (uint32_t)D);
    gguf_w_u32(w, "llama.block_count", (uint32_t)L);
    gguf_w_u32(w, "llama.feed_forward_length", (uint32_t)H);
    gguf_w_u32(w, "llama.attention.head_count", (uint32_t)c.n_heads);
    gguf_w_u32(w, "llama.attention.head_count_kv", (uint32_t)c.n_kv_heads);
    gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_w_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_w_u32(w, "llama.rope.dimension_count", (uint32_t)hs);
    gguf_w_u32(w, "llama.vocab_size", (uint32_t)V);
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_str(w, "tokenizer.ggml.pre", "default");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)voc.text, voc.len, (uint64_t)V);
    gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, voc.score, (uint64_t)V);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, voc.type, (uint64_t)V);
    gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)voc.bos);
    gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)voc.eos);
    gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
    gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", 1);

    /* Tensors are described here and streamed straight from the mapping below. */
    int64_t ne[2];
    tensor_data = tmalloc_array(3 + 9 * (size_t)L, sizeof *tensor_data);
    int nt = 0;
    if (!tensor_data) { rc = fail(TOME_ERESOURCE, "out of memory"); goto done; }
#define T2(name, a, b, data) \
    (ne[0] = (a), ne[1] = (b), tensor_data[nt++] = (data), gguf_w_tensor(w, name, GGML_TYPE_F32, 2, ne, NULL))
#define T1(name, a, data) (ne[0] = (a), tensor_data[nt++] = (data), gguf_w_tensor(w, name, GGML_TYPE_F32, 1, ne, NULL))
    T2("token_embd.weight", D, V, tok);
    char n[64];
    for (int64_t l = 0; l < L; l++) {
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s, (int)l), n)
        T1(NM("attn_norm.weight"), D, rms_att + l * D);
        T2(NM("attn_q.weight"), D, D, wq + l * D * D);
        T2(NM("attn_k.weight"), D, kv, wk + l * D * kv);
        T2(NM("attn_v.weight"), D, kv, wv + l * D * kv);
        T2(NM("attn_output.weight"), D, D, wo + l * D * D);
        T1(NM("ffn_norm.weight"), D, rms_ffn + l * D);
        T2(NM("ffn_gate.weight"), D, H, w1 + l * D * H);
        T2(NM("ffn_down.weight"), H, D, w2 + l * H * D);
        T2(NM("ffn_up.weight"), D, H, w3 + l * D * H);
#undef NM
    }
    T1("output_norm.weight", D, rms_final);
    if (wcls) T2("output.weight", D, V, wcls);
#undef T1
#undef T2
    FILE *f = fopen(out, "wb");
    if (!f) { rc = fail(TOME_EINPUT, "%s: cannot create: %s", out, strerror(errno)); goto done; }
    terr e = {0};
    rc = gguf_w_begin(w, f, &e);
    for (int i = 0; !rc && i < nt; i++)
        rc = gguf_w_data(w, f, tensor_data[i], gguf_w_tensor_nbytes(w, (uint64_t)i), &e);
    if (fclose(f) != 0 && !rc) rc = terr_set(&e, TOME_EINPUT, "write failed: %s", strerror(errno));
    if (rc) {
        fail(rc, "%s: %s", out, e.msg);
        struct stat st; /* no half-written model left behind (but never remove a device) */
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) remove(out);
    }
done:
    free(tensor_data);
    gguf_w_free(w);
    vocab_free(&voc);
    unmap_file(&mm);
    unmap_file(&tm);
    return rc;
}

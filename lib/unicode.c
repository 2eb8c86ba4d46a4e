/* unicode.c — UTF-8 helpers and NFC normalization (see unicode.h).
 *
 * NFC = canonical decomposition, canonical ordering of combining marks, canonical
 * composition (UAX #15). The tables hold full decompositions, non-zero combining classes and
 * the primary composite pairs; Hangul is arithmetic. A quick check skips text in which no
 * code point can change or interact, so ordinary text costs one pass and no allocation.
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
       S_COUNT = L_COUNT * N_COUNT };

uint32_t uni_decode(const char *s, size_t n, size_t *i) {
    const unsigned char *p = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = p[0];
    if (c < 0x80) { *i += 1; return c; }
    size_t len = uni_len_utf8((unsigned char)c);
    if (len == 1 || len > left) { *i += 1; return 0xFFFD; }
    uint32_t cp = c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xC0) != 0x80) { *i += 1; return 0xFFFD; }
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    *i += len;
    return cp;
}

size_t uni_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = 0xC0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3F); o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F); o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

int uni_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = sizeof uni_ccc_table / sizeof uni_ccc_table[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = uni_ccc_table[mid] >> 8;
        if (c == cp) return (int)(uni_ccc_table[mid] & 0xFF);
        if (c < cp) lo = mid + 1; else hi = mid;
    }
    return 0;
}

static int nfc_slow_cp(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = sizeof uni_nfc_slow / sizeof uni_nfc_slow[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < uni_nfc_slow[mid][0]) hi = mid;
        else if (cp > uni_nfc_slow[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Full canonical decomposition of cp written to out (at most 4 code points); returns the
 * count. */
static size_t decompose(uint32_t cp, uint32_t *out) {
    if (cp < 0xC0) { out[0] = cp; return 1; } /* nothing below U+00C0 decomposes */
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    size_t lo = 0, hi = sizeof uni_decomp / sizeof uni_decomp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uni_decomp[mid][0] == cp) {
            uint32_t off = uni_decomp[mid][1] >> 8, len = uni_decomp[mid][1] & 0xFF;
            memcpy(out, uni_decomp_pool + off, len * sizeof *out);
            return len;
        }
        if (uni_decomp[mid][0] < cp) lo = mid + 1; else hi = mid;
    }
    out[0] = cp;
    return 1;
}

/* The primary composite of (a, b), or 0 when they do not compose. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (b < 0x300) return 0; /* every second element of a pair is >= U+0300 */
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = sizeof uni_comp / sizeof uni_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *p = uni_comp[mid];
        if (p[0] == a && p[1] == b) return p[2];
        if (p[0] < a || (p[0] == a && p[1] < b)) lo = mid + 1; else hi = mid;
    }
    return 0;
}

/* Stable sort of a run of combining marks by class. Short runs use insertion sort; long
 * (adversarial) runs a counting sort, so the whole pass stays linear. */
static void order_run(uint32_t *cp, uint8_t *cc, size_t n, uint32_t *tmp_cp, uint8_t *tmp_cc) {
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t c = cp[i];
            uint8_t k = cc[i];
            size_t j = i;
            while (j > 0 && cc[j - 1] > k) { cp[j] = cp[j - 1]; cc[j] = cc[j - 1]; j--; }
            cp[j] = c; cc[j] = k;
        }
        return;
    }
    size_t count[257] = {0};
    for (size_t i = 0; i < n; i++) count[cc[i] + 1]++;
    for (int k = 1; k < 257; k++) count[k] += count[k - 1];
    for (size_t i = 0; i < n; i++) {
        size_t at = count[cc[i]]++;
        tmp_cp[at] = cp[i];
        tmp_cc[at] = cc[i];
    }
    memcpy(cp, tmp_cp, n * sizeof *cp);
    memcpy(cc, tmp_cc, n);
}

int uni_nfc(const char *s, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    size_t i = 0;
    int slow = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0xCC) { i++; continue; } /* below U+0300 or continuation */
        size_t j = i;
        uint32_t cp = uni_decode(s, n, &j);
        if (nfc_slow_cp(cp)) { slow = 1; break; }
        i = j;
    }
    if (!slow) return 0;

    /* A code point decomposes canonically into at most 4 (Unicode 14), and takes >= 1 byte. */
    size_t cap = n * 4 + 4;
    uint32_t *cp = malloc(cap * sizeof *cp);
    uint8_t *cc = malloc(cap);
    uint32_t *tmp_cp = malloc(cap * sizeof *tmp_cp);
    uint8_t *tmp_cc = malloc(cap);
    char *buf = NULL;
    if (!cp || !cc || !tmp_cp || !tmp_cc) goto oom;
    size_t m = 0;
    for (i = 0; i < n;) {
        uint32_t c = uni_decode(s, n, &i);
        m += decompose(c, cp + m);
    }
    for (size_t k = 0; k < m; k++) cc[k] = (uint8_t)uni_ccc(cp[k]);
    for (size_t k = 0; k < m;) {
        if (cc[k] == 0) { k++; continue; }
        size_t e = k;
        while (e < m && cc[e] != 0) e++;
        order_run(cp + k, cc + k, e - k, tmp_cp, tmp_cc);
        k = e;
    }
    /* Canonical composition: each mark joins the last starter unless blocked by a mark of
     * the same or higher class in between (or, for a starter, by anything in between). */
    size_t w = 0;
    long starter = -1;
    int last_cc = -1; /* class of the last character written after the starter */
    for (size_t k = 0; k < m; k++) {
        uint32_t c = cp[k];
        int k_cc = cc[k];
        if (starter >= 0) {
            int blocked = last_cc != -1 && (last_cc == 0 || last_cc >= k_cc);
            if (!blocked) {
                uint32_t comp = compose(cp[starter], c);
                if (comp) { cp[starter] = comp; continue; }
            }
        }
        if (k_cc == 0) { starter = (long)w; last_cc = -1; }
        else last_cc = k_cc;
        cp[w] = c;
        cc[w] = (uint8_t)k_cc;
        w++;
    }
    buf = malloc(w * 4 + 1);
    if (!buf) goto oom;
    size_t len = 0;
    for (size_t k = 0; k < w; k++) len += uni_encode(cp[k], buf + len);
    buf[len] = 0;
    free(cp); free(cc); free(tmp_cp); free(tmp_cc);
    *out = buf;
    *out_len = len;
    return 0;
oom:
    free(cp); free(cc); free(tmp_cp); free(tmp_cc); free(buf);
    return -1;
}

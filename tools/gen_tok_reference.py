#!/usr/bin/env python3
"""gen_tok_reference.py — writes the random-text tokenizer references under tests/data/.

Usage (needs `pip install tokenizers`; run from the repo root):
    python3 tools/gen_tok_reference.py ../shared/tokenizers

Writes tests/data/tok_random.inp: 200 seeded random strings built from awkward atoms (Unicode
whitespace, combining marks and NFC cases, Hangul jamo, contractions in odd cases, emoji ZWJ
sequences, digits, special-token texts), in llama.cpp's vocab-test format (each case followed by
"\\n__ggml_vocab_test__\\n"), and tests/data/tok_random.{llama3_1,qwen3}.out: the ids HF
`tokenizers` gives for each (add_special_tokens=False, which still parses special-token texts
in the input, so tome compares with TOK_PARSE_SPECIAL), one line per case, each id preceded by a
space. The generated files are references for tests/test_tokenizer.c, not inputs to edit.
"""
import os
import random
import sys

from tokenizers import Tokenizer

SEP = "\n__ggml_vocab_test__\n"
ATOMS = ["a", "Z", "the", " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", " \t ", "7", "42", "12345",
         "1,000", "'s", "'S", "'ll", "'LL", "'Re", "\u017f", "\u212a", "\u0130", "\u00df", ".", "!!",
         "...", "?!", "\u00e9", "e\u0301", "\u4e2d\u6587", "\U0001F600", "\U0001F468\u200D\U0001F469",
         "\u043f\u0440\u0438\u0432\u0435\u0442", "\u0915\u093f", "\u00a0", "\u2003", "\u3000",
         "\u2028", "\u0085", "<|endoftext|>", "<think>", "<|im_start|>", "<|eot_id|>", "\u2581",
         "\u0120", "\u1e9e", "x\u0323\u0307", "\u1100\u1161\u11a8", "\uac00", "\ufb01", "\u212b",
         "\u0958", "\u00c5", "$", "\u20ac", "@", "#hash", "http://x.y/z?q=1", "CamelCase",
         "snake_case", "don't", "I'M", "\u0663\u0664", "\u2167", "\u00bd", "\U0001d400",
         "\u0301\u0301", " \u0301"]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/tokenizers"
    rng = random.Random(20261130)
    texts = ["".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 24))) for _ in range(200)]
    assert all(SEP not in t for t in texts)
    os.makedirs("tests/data", exist_ok=True)
    with open("tests/data/tok_random.inp", "w", encoding="utf-8", newline="") as f:
        f.write("".join(t + SEP for t in texts))
    for name in ("llama3_1", "qwen3"):
        tok = Tokenizer.from_file(os.path.join(root, name, "tokenizer.json"))
        with open("tests/data/tok_random.%s.out" % name, "w") as f:
            for t in texts:
                ids = tok.encode(t, add_special_tokens=False).ids
                f.write("".join(" %d" % i for i in ids) + "\n")


if __name__ == "__main__":
    main()
